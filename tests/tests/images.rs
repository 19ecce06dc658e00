//! Image verbs through the CLI: import, images, inspect, tag, rmi, history, prune.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use ketch_tests::{Root, TarBuilder, busybox_rootfs, gzip, random_hex, require_tool};

#[test]
fn import_lists_and_inspects() {
    let r = Root::new();
    let id = r.busybox("busybox");
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");

    let out = r.ok(&["images"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let header: Vec<&str> = lines[0]
        .split("  ")
        .filter(|s| !s.trim().is_empty())
        .map(str::trim)
        .collect();
    assert_eq!(header, ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]);
    assert!(lines[1].starts_with("busybox "), "{out}");
    assert!(lines[1].contains(&id[7..19]), "{out}");
    assert!(lines[1].contains("MB"), "{out}");

    assert_eq!(r.ok(&["images", "-q"]).trim(), &id[7..19]);
    assert_eq!(r.ok(&["images", "-q", "--no-trunc"]).trim(), id);

    let json: serde_json::Value =
        serde_json::from_str(r.ok(&["images", "--format", "json"]).trim()).unwrap();
    assert_eq!(json["Repository"], "busybox");
    assert_eq!(json["Tag"], "latest");
    assert_eq!(json["ID"], &id[7..19]);
    assert!(r.ok(&["images", "--digests"]).contains("sha256:"));
    assert_eq!(
        r.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"])
            .trim(),
        "busybox:latest"
    );

    let inspect: serde_json::Value =
        serde_json::from_str(&r.ok(&["image", "inspect", "busybox"])).unwrap();
    let i = &inspect[0];
    assert_eq!(i["Id"], id.as_str());
    assert_eq!(i["RepoTags"][0], "busybox:latest");
    assert_eq!(i["Os"], "linux");
    assert_eq!(i["RootFS"]["Type"], "layers");
    assert_eq!(i["RootFS"]["Layers"].as_array().unwrap().len(), 1);
    assert!(i["Size"].as_i64().unwrap() > 1_000_000);
    // By ID, by ID prefix and by full reference too.
    for name in [&id[..], &id[7..19], "docker.io/library/busybox:latest"] {
        assert_eq!(r.ok(&["inspect", "--format", "{{.Id}}", name]).trim(), id);
    }
}

#[test]
fn import_compressed_and_from_stdin_give_the_same_layer() {
    let r = Root::new();
    let plain = std::fs::read(busybox_rootfs()).unwrap();
    let gz = gzip(&plain);
    let id1 = r.busybox("plain");
    let o = r.run_stdin(&["import", "-", "gz"], &gz);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let zst = std::process::Command::new("zstd")
        .args(["-q", "-c"])
        .arg(busybox_rootfs())
        .output()
        .unwrap()
        .stdout;
    let o = r.run_stdin(&["import", "-", "zst"], &zst);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let layers = |name: &str| r.ok(&["inspect", "--format", "{{json .RootFS.Layers}}", name]);
    assert_eq!(layers("plain"), layers("gz"));
    assert_eq!(layers("plain"), layers("zst"));
    // One layer on disk for all three.
    assert_eq!(r.count("layers"), 1);
    assert_ne!(id1, r.ok(&["inspect", "--format", "{{.Id}}", "gz"]).trim());
}

#[test]
fn import_applies_changes_and_message() {
    let r = Root::new();
    let rootfs = busybox_rootfs();
    r.ok(&[
        "import",
        "-c",
        "CMD [\"/bin/sh\", \"-c\", \"echo hi\"]",
        "--change",
        "ENV A=1 B=\"two words\"",
        "-c",
        "WORKDIR /srv",
        "-c",
        "EXPOSE 80/udp 443",
        "-c",
        "LABEL org.example=yes",
        "-c",
        "USER nobody",
        "-c",
        "ENV OLD form=with spaces",
        "-m",
        "from the fixture",
        rootfs.to_str().unwrap(),
        "changed:v1",
    ]);
    let cfg: serde_json::Value =
        serde_json::from_str(&r.ok(&["inspect", "--format", "{{json .Config}}", "changed:v1"]))
            .unwrap();
    assert_eq!(cfg["Cmd"], serde_json::json!(["/bin/sh", "-c", "echo hi"]));
    assert_eq!(
        cfg["Env"],
        serde_json::json!(["A=1", "B=two words", "OLD=form=with spaces"])
    );
    assert_eq!(cfg["WorkingDir"], "/srv");
    assert_eq!(cfg["User"], "nobody");
    assert_eq!(cfg["Labels"]["org.example"], "yes");
    assert!(
        cfg["ExposedPorts"].get("80/udp").is_some() && cfg["ExposedPorts"].get("443/tcp").is_some(),
        "{cfg}"
    );
    assert_eq!(
        r.ok(&["inspect", "--format", "{{.Comment}}", "changed:v1"])
            .trim(),
        "from the fixture"
    );

    let (code, err) = r.fails(&["import", "-c", "FROBNICATE x", rootfs.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("FROBNICATE") && err.contains("unknown"),
        "{err}"
    );
}

#[test]
fn tag_and_rmi_follow_docker() {
    let r = Root::new();
    let id = r.busybox("busybox");
    r.ok(&["tag", "busybox", "example.com/team/app:1.0"]);
    r.ok(&["tag", &id[7..19], "busybox:second"]);
    let tags = r.ok(&["inspect", "--format", "{{json .RepoTags}}", "busybox"]);
    assert!(
        tags.contains("example.com/team/app:1.0") && tags.contains("busybox:second"),
        "{tags}"
    );

    // By ID with tags in two repositories: refused without -f.
    let (code, err) = r.fails(&["rmi", &id[7..19]]);
    assert_eq!(code, 1);
    assert!(
        err.contains("must be forced") && err.contains("multiple repositories"),
        "{err}"
    );

    // By name: that tag only.
    assert_eq!(
        r.ok(&["rmi", "busybox:second"]).trim(),
        "Untagged: busybox:second"
    );
    assert_eq!(
        r.ok(&["rmi", "example.com/team/app:1.0"]).trim(),
        "Untagged: example.com/team/app:1.0"
    );
    // The last tag takes the image, its layer and its blobs with it.
    let out = r.ok(&["rmi", "busybox"]);
    assert_eq!(out, format!("Untagged: busybox:latest\nDeleted: {id}\n"));
    assert_eq!(r.ok(&["images", "-q"]), "");
    assert_eq!(r.count("layers"), 0);
    assert_eq!(r.count("snapshots"), 0);
    assert!(
        r.entries("blobs/sha256").is_empty(),
        "{:?}",
        r.entries("blobs/sha256")
    );
    assert!(
        r.entries("snapshots").is_empty(),
        "{:?}",
        r.entries("snapshots")
    );

    let (code, err) = r.fails(&["rmi", "busybox"]);
    assert_eq!(code, 1);
    assert!(err.contains("No such image: busybox:latest"), "{err}");
}

#[test]
fn rmi_force_removes_an_image_with_many_tags() {
    let r = Root::new();
    let id = r.busybox("a");
    r.ok(&["tag", "a", "b"]);
    let out = r.ok(&["rmi", "-f", &id]);
    assert!(
        out.contains("Untagged: a:latest")
            && out.contains("Untagged: b:latest")
            && out.contains(&format!("Deleted: {id}")),
        "{out}"
    );
    assert_eq!(r.ok(&["images", "-q"]), "");
}

#[test]
fn history_shows_layers_newest_first() {
    let r = Root::new();
    let id = r.busybox("busybox");
    let out = r.ok(&["history", "busybox"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("IMAGE")
            && lines[0].contains("CREATED BY")
            && lines[0].contains("COMMENT"),
        "{out}"
    );
    assert!(lines[1].starts_with(&id[7..19]), "{out}");
    assert!(lines[1].contains("Imported from"), "{out}");
    assert_eq!(r.ok(&["history", "-q", "busybox"]).trim(), &id[7..19]);
    let json: serde_json::Value = serde_json::from_str(
        r.ok(&["history", "--format", "json", "busybox"])
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert!(json["Size"].as_str().unwrap().ends_with("MB"), "{json}");
}

#[test]
fn prune_removes_dangling_then_all() {
    let r = Root::new();
    let id1 = r.busybox("keep");
    // Retagging leaves the first image dangling.
    let layer = TarBuilder::new().file("extra", b"x").finish();
    let o = r.run_stdin(&["import", "-", "keep"], &layer);
    assert!(o.status.success());
    assert!(r.ok(&["images"]).contains("<none>"));
    assert_eq!(
        r.ok(&["images", "-f", "dangling=true", "-q", "--no-trunc"])
            .trim(),
        id1
    );

    let out = r.ok(&["image", "prune", "-f"]);
    assert!(out.contains(&format!("deleted: {id1}")), "{out}");
    assert!(
        out.contains("Total reclaimed space: ") && !out.contains("reclaimed space: 0B"),
        "{out}"
    );
    assert_eq!(r.ok(&["images", "-q"]).lines().count(), 1);

    let out = r.ok(&["image", "prune", "-a", "-f"]);
    assert!(out.contains("untagged: keep:latest"), "{out}");
    assert_eq!(r.ok(&["images", "-q"]), "");
    assert!(r.entries("blobs/sha256").is_empty());
    assert_eq!(
        r.ok(&["image", "prune", "-f"]).trim(),
        "Total reclaimed space: 0B"
    );
}

#[test]
fn bad_names_and_missing_images_are_clear_errors() {
    let r = Root::new();
    r.busybox("busybox");
    let (code, err) = r.fails(&["image", "inspect", "nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("No such image: nope:latest"), "{err}");
    let (_, err) = r.fails(&["tag", "busybox", "Bad:Name"]);
    assert!(err.contains("invalid reference format"), "{err}");
    let (_, err) = r.fails(&["tag", "busybox", "a:b:c"]);
    assert!(err.contains("invalid reference format"), "{err}");
    let (_, err) = r.fails(&["import", "/does/not/exist", "x"]);
    assert!(err.contains("/does/not/exist"), "{err}");
    let (code, err) = r.fails(&["images", "--bogus"]);
    assert_eq!(code, 125, "{err}");
    let (_, err) = r.fails(&["history", "nope"]);
    assert!(err.contains("No such image"), "{err}");
}

#[test]
fn images_filters_by_reference() {
    let r = Root::new();
    r.busybox("one:a");
    r.ok(&["tag", "one:a", "one:b"]);
    r.ok(&["tag", "one:a", "two:a"]);
    let out = r.ok(&["images", "one", "--format", "{{.Repository}}:{{.Tag}}"]);
    let mut got: Vec<&str> = out.lines().collect();
    got.sort();
    assert_eq!(got, ["one:a", "one:b"]);
    assert_eq!(
        r.ok(&["images", "one:b", "--format", "{{.Tag}}"]).trim(),
        "b"
    );
}

/// `ketch ARGS` with `KETCH_ROOT=root` and no `--root`, in a mount namespace of its own
/// where `/var/lib` (the default root's parent) is an empty tmpfs: were the variable ignored,
/// the default root would be made there, reported and thrown away, never on the host.
fn with_ketch_root(root: &Path, args: &[&str]) -> Output {
    require_tool("unshare");
    let script = r#"mount -t tmpfs ketch-test-default /var/lib || exit 90
"$@"; rc=$?
left=$(ls -A /var/lib)
if [ -n "$left" ]; then echo "the default root was opened: /var/lib holds $left" >&2; exit 91; fi
exit $rc"#;
    Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .arg(ketch_tests::ketch_bin())
        .args(args)
        .env("KETCH_ROOT", root)
        .env_remove("KETCH_STORAGE_DRIVER")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn ketch_root_from_the_environment() {
    let r = Root::new();
    let name = format!("envroot-{}:t{}", random_hex(4), random_hex(3));
    let rootfs = busybox_rootfs();
    let o = with_ketch_root(&r.path(), &["import", rootfs.to_str().unwrap(), &name]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let id = String::from_utf8(o.stdout).unwrap().trim().to_string();
    // The state is under KETCH_ROOT: its database, blobs and snapshots, read with --root.
    assert!(r.path().join("ketch.db").is_file());
    assert_eq!(r.count("images"), 1);
    assert_eq!(r.count("layers"), 1);
    assert!(!r.entries("blobs/sha256").is_empty());
    assert_eq!(r.entries("snapshots").len(), 1);
    assert_eq!(
        r.ok(&[
            "images",
            "--no-trunc",
            "--format",
            "{{.ID}} {{.Repository}}:{{.Tag}}"
        ]),
        format!("{id} {name}\n")
    );
    // The variable finds it again.
    let o = with_ketch_root(
        &r.path(),
        &[
            "images",
            "--no-trunc",
            "--format",
            "{{.ID}} {{.Repository}}:{{.Tag}}",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), format!("{id} {name}\n"));
    // --root wins over it.
    let other = Root::new();
    let o = with_ketch_root(
        &r.path(),
        &["--root", other.path().to_str().unwrap(), "images", "-q"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "");
    assert!(other.path().join("ketch.db").is_file());
    assert_eq!(r.count("images"), 1);
}

/// `images -a`: Docker adds the intermediate images a build leaves (untagged parents of
/// other images). ketch records no parent images (it has no builder yet; import, load and
/// commit make none), so there is nothing for `-a` to add: it lists the same images as
/// `images`, tagged and dangling, and is accepted as Docker's scripts use it.
#[test]
fn images_all_lists_every_image() {
    let r = Root::new();
    let old = r.busybox("keep");
    let layer = TarBuilder::new().file("extra", b"x").finish();
    let o = r.run_stdin(&["import", "-", "keep"], &layer);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let new = String::from_utf8(o.stdout).unwrap().trim().to_string();
    r.ok(&["tag", "keep", "other:1"]);
    let list = |args: &[&str]| {
        let mut a = vec![
            "images",
            "--no-trunc",
            "--format",
            "{{.ID}} {{.Repository}}:{{.Tag}}",
        ];
        a.extend_from_slice(args);
        let mut v: Vec<String> = r.ok(&a).lines().map(str::to_string).collect();
        v.sort();
        v
    };
    let mut want = vec![
        format!("{old} <none>:<none>"),
        format!("{new} keep:latest"),
        format!("{new} other:1"),
    ];
    want.sort();
    assert_eq!(list(&["-a"]), want);
    assert_eq!(list(&["--all"]), want);
    assert_eq!(list(&[]), want);
    let mut q: Vec<String> = r
        .ok(&["images", "-a", "-q", "--no-trunc"])
        .lines()
        .map(str::to_string)
        .collect();
    q.sort();
    let mut ids = vec![old, new];
    ids.sort();
    assert_eq!(q, ids);
}
