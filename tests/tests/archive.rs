//! save and load, in both formats and both directions, and with tools no one here wrote:
//! skopeo and umoci.

use std::process::Command;

use ketch_tests::{
    Root, TarBuilder, busybox_rootfs, gzip, legacy_docker_archive, oci_archive, require_tool,
};

fn sh(cmd: &str) -> String {
    let o = Command::new("sh").args(["-c", cmd]).output().unwrap();
    assert!(
        o.status.success(),
        "{cmd} failed:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn docker_archive_round_trips_and_skopeo_reads_it() {
    require_tool("skopeo");
    let a = Root::new();
    let id = a.busybox("busybox:1.0");
    let tar = a.dir.path().join("busybox.tar");
    a.ok(&["save", "-o", tar.to_str().unwrap(), "busybox:1.0"]);

    let info: serde_json::Value = serde_json::from_str(&sh(&format!(
        "skopeo inspect docker-archive:{}",
        tar.display()
    )))
    .unwrap();
    let layers = a.ok(&[
        "inspect",
        "--format",
        "{{json .RootFS.Layers}}",
        "busybox:1.0",
    ]);
    assert_eq!(
        info["Layers"],
        serde_json::from_str::<serde_json::Value>(&layers).unwrap(),
        "{info}"
    );
    assert_eq!(info["Os"], "linux");
    // It is an OCI layout too, as Docker's own archives are.
    let oci: serde_json::Value = serde_json::from_str(&sh(&format!(
        "skopeo inspect oci-archive:{}",
        tar.display()
    )))
    .unwrap();
    assert_eq!(oci["Layers"], info["Layers"]);

    let b = Root::new();
    assert_eq!(
        b.ok(&["load", "-i", tar.to_str().unwrap()]).trim(),
        "Loaded image: busybox:1.0"
    );
    assert_eq!(
        b.ok(&["inspect", "--format", "{{.Id}}", "busybox:1.0"])
            .trim(),
        id
    );
    // Loading from stdin, and a second time, changes nothing.
    let bytes = std::fs::read(&tar).unwrap();
    let o = b.run_stdin(&["load"], &bytes);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(b.ok(&["images", "-q"]).lines().count(), 1);
    assert_eq!(b.count("layers"), 1);
    // A gzipped archive loads too.
    let c = Root::new();
    let o = c.run_stdin(&["load", "-q"], &gzip(&bytes));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "");
    assert_eq!(
        c.ok(&["inspect", "--format", "{{.Id}}", "busybox:1.0"])
            .trim(),
        id
    );
}

#[test]
fn oci_dir_is_read_by_skopeo_and_umoci() {
    require_tool("skopeo");
    require_tool("umoci");
    let r = Root::new();
    r.busybox("busybox");
    let layout = r.dir.path().join("layout");
    r.ok(&[
        "save",
        "--format",
        "oci-dir",
        "-o",
        layout.to_str().unwrap(),
        "busybox",
    ]);
    let info: serde_json::Value = serde_json::from_str(&sh(&format!(
        "skopeo inspect oci:{}:latest",
        layout.display()
    )))
    .unwrap();
    assert_eq!(info["Layers"].as_array().unwrap().len(), 1, "{info}");

    let bundle = r.dir.path().join("bundle");
    sh(&format!(
        "umoci unpack --image {}:latest {}",
        layout.display(),
        bundle.display()
    ));
    let sh_link = std::fs::read_link(bundle.join("rootfs/bin/sh")).unwrap();
    assert_eq!(sh_link.to_str().unwrap(), "/bin/busybox");
    assert!(bundle.join("rootfs/bin/busybox").is_file());
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/etc/motd")).unwrap(),
        "ketch busybox fixture\n"
    );

    // The layout loads back, and an oci-archive is a tarball of the same.
    let b = Root::new();
    b.ok(&["load", "-i", layout.to_str().unwrap()]);
    assert!(b.ok(&["images"]).contains("busybox"));
    let oa = r.dir.path().join("oci.tar");
    r.ok(&[
        "save",
        "--format",
        "oci-archive",
        "-o",
        oa.to_str().unwrap(),
        "busybox",
    ]);
    sh(&format!("skopeo inspect oci-archive:{}", oa.display()));
    assert!(!sh(&format!("tar tf {}", oa.display())).contains("manifest.json"));
}

#[test]
fn umoci_layout_loads_and_inspects() {
    require_tool("umoci");
    let r = Root::new();
    let d = r.dir.path();
    let layout = d.join("umoci-layout");
    let bundle = d.join("bundle");
    sh(&format!(
        "umoci init --layout {l} && umoci new --image {l}:base && umoci unpack --image {l}:base {b} \
         && tar -C {b}/rootfs -xf {fx} && umoci repack --image {l}:base {b} \
         && umoci config --image {l}:base --config.cmd /bin/sh --config.env K=v --config.workingdir /root",
        l = layout.display(),
        b = bundle.display(),
        fx = busybox_rootfs().display()
    ));
    let out = r.ok(&["load", "-i", layout.to_str().unwrap()]);
    // umoci names the image by tag only ("base"): loaded untagged, as Docker does.
    let id = out
        .trim()
        .strip_prefix("Loaded image ID: ")
        .unwrap_or_else(|| panic!("{out}"))
        .to_string();
    let i: serde_json::Value = serde_json::from_str(&r.ok(&["image", "inspect", &id])).unwrap();
    assert_eq!(i[0]["Config"]["Cmd"], serde_json::json!(["/bin/sh"]));
    assert_eq!(i[0]["Config"]["WorkingDir"], "/root");
    assert_eq!(i[0]["Config"]["Env"], serde_json::json!(["K=v"]));
    assert_eq!(i[0]["RootFS"]["Layers"].as_array().unwrap().len(), 1);
    r.ok(&["tag", &id, "from-umoci"]);
    assert!(r.ok(&["images"]).contains("from-umoci"));
}

#[test]
fn legacy_docker_archive_and_multi_layer_oci_load() {
    let r = Root::new();
    let base = TarBuilder::new()
        .file("etc/os", b"base")
        .file("bin/tool", b"v1")
        .finish();
    let top = TarBuilder::new()
        .file("bin/tool", b"v2")
        .file(".wh.etc", b"")
        .finish();
    let archive = legacy_docker_archive("legacy:1", &[base.clone(), top.clone()], None);
    let o = r.run_stdin(&["load"], &archive);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "Loaded image: legacy:1"
    );
    assert_eq!(r.count("layers"), 2);

    // The same layers and config as an OCI layout with a gzipped base: the same image (its ID
    // is its config's digest) under a second tag, the same layers on disk.
    let oci = oci_archive(
        "docker.io/library/oci:2",
        &[(gzip(&base), base.clone()), (top.clone(), top.clone())],
    );
    let o = r.run_stdin(&["load"], &oci);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "Loaded image: oci:2"
    );
    assert_eq!(r.count("layers"), 2);
    assert_eq!(r.count("images"), 1);
    assert_eq!(r.count("tags"), 2);

    // A saved legacy image is read back with the same layers and ID.
    let out = r.dir.path().join("legacy.tar");
    r.ok(&["save", "-o", out.to_str().unwrap(), "legacy:1", "oci:2"]);
    let b = Root::new();
    let loaded = b.ok(&["load", "-i", out.to_str().unwrap()]);
    assert!(
        loaded.contains("legacy:1") && loaded.contains("oci:2"),
        "{loaded}"
    );
    for name in ["legacy:1", "oci:2"] {
        assert_eq!(
            r.ok(&["inspect", "--format", "{{.Id}}", name]),
            b.ok(&["inspect", "--format", "{{.Id}}", name])
        );
    }
}

#[test]
fn save_refuses_unknown_images_and_leaves_no_file() {
    let r = Root::new();
    r.busybox("busybox");
    let out = r.dir.path().join("out.tar");
    let (code, err) = r.fails(&["save", "-o", out.to_str().unwrap(), "busybox", "missing"]);
    assert_eq!(code, 1);
    assert!(err.contains("No such image: missing"), "{err}");
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(r.dir.path()).unwrap().count(),
        1,
        "a temp file was left"
    );
}

#[test]
fn save_to_a_pipe_writes_through_it() {
    let r = Root::new();
    r.busybox("busybox");
    // A FIFO stands in for /dev/stdout or a device: it must stay what it is.
    let fifo = r.dir.path().join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    r.ok(&["save", "-o", fifo.to_str().unwrap(), "busybox"]);
    let bytes = reader.join().unwrap();
    assert!(bytes.len() > 1_000_000);
    use std::os::unix::fs::FileTypeExt;
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo(),
        "the FIFO was replaced"
    );
    let b = Root::new();
    let o = b.run_stdin(&["load"], &bytes);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// `data` compressed by the `zstd` tool.
fn zstd(data: &[u8]) -> Vec<u8> {
    require_tool("zstd");
    let mut child = Command::new("zstd")
        .args(["-q", "-c", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &data));
    let o = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(o.status.success(), "zstd failed");
    assert!(o.stdout.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]), "not zstd");
    o.stdout
}

/// `load` of zstd: a whole docker-archive compressed with zstd (from a file and from
/// stdin), and an OCI archive whose layers are zstd blobs (`tar+zstd`); each gives the image
/// the plain archive gives, and it runs.
#[test]
fn zstd_archives_and_zstd_layers_load() {
    let a = Root::new();
    let id = a.busybox("busybox:z");
    let tar = a.dir.path().join("busybox.tar");
    a.ok(&["save", "-o", tar.to_str().unwrap(), "busybox:z"]);
    let plain = std::fs::read(&tar).unwrap();
    let zst = a.dir.path().join("busybox.tar.zst");
    std::fs::write(&zst, zstd(&plain)).unwrap();

    let b = Root::new();
    assert_eq!(
        b.ok(&["load", "-i", zst.to_str().unwrap()]),
        "Loaded image: busybox:z\n"
    );
    assert_eq!(
        b.ok(&["inspect", "--format", "{{.Id}}", "busybox:z"]),
        format!("{id}\n")
    );
    assert_eq!(
        b.ok(&["run", "--rm", "busybox:z", "echo", "from zstd"]),
        "from zstd\n"
    );
    let c = Root::new();
    let o = c.run_stdin(&["load"], &std::fs::read(&zst).unwrap());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        c.ok(&["inspect", "--format", "{{.Id}}", "busybox:z"]),
        format!("{id}\n")
    );

    // Layers stored as zstd blobs, named as such in the manifest.
    let base = std::fs::read(busybox_rootfs()).unwrap();
    let top = TarBuilder::new().file("etc/zstd-layer", b"yes\n").finish();
    let oci = ketch_tests::oci_archive_with(
        "zl:1",
        &[(zstd(&base), base.clone()), (zstd(&top), top.clone())],
        |m| {
            for l in m["layers"].as_array_mut().unwrap() {
                l["mediaType"] = "application/vnd.oci.image.layer.v1.tar+zstd".into();
            }
        },
    );
    let d = Root::new();
    let o = d.run_stdin(&["load"], &oci);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "Loaded image: zl:1\n");
    let layers: serde_json::Value =
        serde_json::from_str(&d.ok(&["inspect", "--format", "{{json .RootFS.Layers}}", "zl:1"]))
            .unwrap();
    assert_eq!(
        layers,
        serde_json::json!([
            ketch_tests::digest(&base).to_string(),
            ketch_tests::digest(&top).to_string()
        ])
    );
    assert_eq!(
        d.ok(&["run", "--rm", "zl:1", "cat", "/etc/zstd-layer"]),
        "yes\n"
    );
}
