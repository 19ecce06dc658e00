//! Hostile input, each case on its own: refused with an error that names the problem and the
//! state root unchanged, or contained inside the image.

use std::path::{Path, PathBuf};

use ketch_tests::{Root, TarBuilder, digest, gzip, legacy_docker_archive, oci_archive};
use tar::EntryType as T;

/// A root holding one image, and a directory outside it that no layer may touch.
fn setup() -> (Root, PathBuf) {
    let r = Root::new();
    r.busybox("base");
    let outside = r.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    (r, outside)
}

/// Runs `args` with `input` on stdin, requires failure with `needle` in the message and the
/// state unchanged.
fn refused(r: &Root, args: &[&str], input: &[u8], needle: &str) {
    let before = r.state();
    let o = r.run_stdin(args, input);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{args:?} succeeded");
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert_eq!(r.state(), before, "the state root changed");
    assert!(r.mounts().is_empty());
}

fn untouched(outside: &Path) {
    assert_eq!(
        std::fs::read_dir(outside).unwrap().count(),
        0,
        "a layer wrote outside the root"
    );
}

/// Files of all snapshots, as paths relative to each snapshot's root.
fn snapshot_files(r: &Root) -> Vec<String> {
    let mut out = Vec::new();
    for id in r.entries("snapshots") {
        let fs = r.path().join("snapshots").join(&id).join("fs");
        let mut stack = vec![fs.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten() {
                let e = e.unwrap();
                let p = e.path();
                out.push(p.strip_prefix(&fs).unwrap().display().to_string());
                if e.file_type().unwrap().is_dir() {
                    stack.push(p);
                }
            }
        }
    }
    out
}

#[test]
fn dot_dot_entries_are_refused() {
    let (r, outside) = setup();
    let layer = TarBuilder::new()
        .file("ok", b"1")
        .file("../outside/evil", b"x")
        .finish();
    refused(
        &r,
        &["import", "-", "evil"],
        &layer,
        "\"../outside/evil\": path escapes the layer root",
    );
    let archive = oci_archive("evil:1", &[(layer.clone(), layer)]);
    refused(&r, &["load"], &archive, "path escapes the layer root");
    untouched(&outside);
}

#[test]
fn absolute_paths_are_contained() {
    let (r, outside) = setup();
    let abs = format!("{}/abs", outside.display());
    let layer = TarBuilder::new().file(&abs, b"x").finish();
    let o = r.run_stdin(&["import", "-", "abs"], &layer);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    untouched(&outside);
    let inside = abs.trim_start_matches('/').to_string();
    assert!(
        snapshot_files(&r).contains(&inside),
        "{inside} not inside the image"
    );
}

#[test]
fn writes_through_a_symlink_pointing_outside_are_contained() {
    let (r, outside) = setup();
    let target = outside.display().to_string();
    // In one layer.
    let layer = TarBuilder::new()
        .entry("etc/", T::Directory, "", b"")
        .entry("link", T::Symlink, "/etc", b"")
        .file("link/through", b"x")
        .entry("escape", T::Symlink, &target, b"")
        .file("escape/evil", b"x")
        .finish();
    // Writing through "escape" is resolved inside the root, where there is no such
    // directory: the import is refused by the entry's name and nothing reaches the real one.
    refused(
        &r,
        &["import", "-", "sym"],
        &layer,
        "layer entry \"escape/evil\": No such file or directory",
    );
    untouched(&outside);
    // Across layers: the link in a lower layer, the write in an upper one (applied through an
    // overlay mount).
    let lower = TarBuilder::new()
        .entry("etc/", T::Directory, "", b"")
        .entry("link", T::Symlink, "/etc", b"")
        .entry("up", T::Symlink, "../../../../../../../../..", b"")
        .finish();
    let upper = TarBuilder::new()
        .file("link/through", b"x")
        .file("up/climbed", b"y")
        .finish();
    let o = r.run_stdin(
        &["load"],
        &oci_archive("sym:2", &[(lower.clone(), lower), (upper.clone(), upper)]),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    untouched(&outside);
    let files = snapshot_files(&r);
    assert!(files.contains(&"etc/through".to_string()), "{files:?}");
    assert!(files.contains(&"climbed".to_string()), "{files:?}");
    assert!(!Path::new("/climbed").exists());
}

#[test]
fn hardlinks_outside_the_layer_are_refused() {
    let (r, outside) = setup();
    std::fs::write(outside.join("secret"), "s").unwrap();
    let layer = TarBuilder::new()
        .entry("h", T::Link, "../outside/secret", b"")
        .finish();
    refused(
        &r,
        &["import", "-", "hl"],
        &layer,
        "hard link target escapes the layer root",
    );
    // Absolute, or through a symlink: looked up inside the root, where there is no such file.
    let abs = format!("{}/secret", outside.display());
    let layer = TarBuilder::new().entry("h", T::Link, &abs, b"").finish();
    refused(&r, &["import", "-", "hl"], &layer, "not found in the layer");
    let layer = TarBuilder::new()
        .entry("l", T::Symlink, &outside.display().to_string(), b"")
        .entry("h", T::Link, "l/secret", b"")
        .finish();
    refused(&r, &["import", "-", "hl"], &layer, "not found in the layer");
    assert_eq!(
        std::fs::metadata(outside.join("secret"))
            .map(|m| std::os::unix::fs::MetadataExt::nlink(&m))
            .unwrap(),
        1
    );
}

#[test]
fn device_nodes_are_not_created() {
    let (r, _outside) = setup();
    let mut t = tar::Builder::new(Vec::new());
    for (name, kind, major, minor) in [
        ("dev/sda", T::Block, 8, 0),
        ("dev/mem", T::Char, 1, 1),
        ("dev/kmsg", T::Char, 1, 11),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_path(name).unwrap();
        h.set_entry_type(kind);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        h.set_mode(0o666);
        h.set_size(0);
        h.set_cksum();
        t.append(&h, &b""[..]).unwrap();
    }
    let layer = t.into_inner().unwrap();
    let o = r.run_stdin(&["import", "-", "dev"], &layer);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for id in r.entries("snapshots") {
        let dev = r.path().join("snapshots").join(id).join("fs/dev");
        for name in ["sda", "mem", "kmsg"] {
            assert!(!dev.join(name).exists(), "device node {name} was created");
        }
    }
}

fn gzip_bomb(size: u64) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    {
        let mut b = tar::Builder::new(&mut gz);
        let mut h = tar::Header::new_gnu();
        h.set_path("zeros").unwrap();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, std::io::Read::take(std::io::repeat(0), size))
            .unwrap();
        b.finish().unwrap();
    }
    gz.finish().unwrap()
}

#[test]
fn gzip_bomb_is_bounded() {
    let (r, _outside) = setup();
    let bomb = gzip_bomb(256 << 20);
    assert!(bomb.len() < 2 << 20, "{}", bomb.len());
    refused(
        &r,
        &["--max-layer-size", "32m", "import", "-", "bomb"],
        &bomb,
        "layer expands past the limit of 33554432 bytes",
    );
    let archive = oci_archive("bomb:1", &[(bomb, Vec::new())]);
    refused(
        &r,
        &["--max-layer-size", "32m", "load"],
        &archive,
        "layer expands past the limit",
    );
}

/// `KETCH_MAX_LAYER_SIZE` from the environment: a layer that expands past it is refused by
/// name and nothing is stored; one under it is taken; a value that is not a size is a usage
/// error that names the variable.
#[test]
fn the_layer_size_limit_comes_from_the_environment() {
    let (r, _outside) = setup();
    // 2 MB of files, under 1 MB compressed.
    let layer = TarBuilder::new()
        .file("a", &vec![1u8; 1 << 20])
        .file("b", &vec![2u8; 1 << 20])
        .finish();
    let gz = gzip(&layer);
    assert!(gz.len() < 1 << 20, "{}", gz.len());
    let with_limit = |limit: &str, args: &[&str], input: &[u8]| {
        let mut child = r
            .cmd()
            .env("KETCH_MAX_LAYER_SIZE", limit)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        std::io::Write::write_all(&mut stdin, input).unwrap();
        drop(stdin);
        child.wait_with_output().unwrap()
    };
    let before = r.state();
    let o = with_limit("1m", &["import", "-", "big"], &gz);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("layer expands past the limit of 1048576 bytes"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(r.state(), before, "the state root changed");
    // The same in an archive.
    let archive = oci_archive("big:1", &[(gz.clone(), layer.clone())]);
    let o = with_limit("1m", &["load"], &archive);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("layer expands past the limit of 1048576"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(r.state(), before, "the state root changed");
    // Under the limit: taken.
    let o = with_limit("3m", &["import", "-", "big"], &gz);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let id = String::from_utf8(o.stdout).unwrap().trim().to_string();
    assert_eq!(
        r.ok(&["inspect", "--format", "{{.Id}} {{.Size}}", "big"]),
        format!("{id} {}\n", 2 << 20)
    );
    // Not a size: a usage error.
    let o = with_limit("lots", &["images"], b"");
    assert_eq!(o.status.code(), Some(125));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("invalid size: \"lots\""),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn layer_not_matching_its_manifest_is_refused() {
    let (r, _outside) = setup();
    let layer = TarBuilder::new().file("f", b"real").finish();
    let other = TarBuilder::new().file("f", b"fake").finish();
    // OCI: a blob whose content is not what its name says.
    let good = oci_archive("x:1", &[(layer.clone(), layer.clone())]);
    let swapped = swap_blob(&good, digest(&layer).hex(), &other);
    refused(&r, &["load"], &swapped, "does not match its name");
    // docker-archive: a layer whose content is not the config's diff ID.
    let config = ketch_tests::config_for(&[&other]);
    let archive = legacy_docker_archive("x:2", std::slice::from_ref(&layer), Some(config));
    refused(&r, &["load"], &archive, "does not match diff ID");
    // A descriptor whose size is not the blob's.
    let wrong_size = ketch_tests::oci_archive_with("x:3", &[(layer.clone(), layer.clone())], |m| {
        let n = m["layers"][0]["size"].as_u64().unwrap();
        m["layers"][0]["size"] = (n + 1).into();
    });
    refused(&r, &["load"], &wrong_size, "but its descriptor says");
    // A manifest naming a layer the archive does not hold.
    let missing = ketch_tests::oci_archive_with("x:4", &[(layer.clone(), layer.clone())], |m| {
        m["layers"][0]["digest"] = digest(b"elsewhere").to_string().into();
    });
    refused(&r, &["load"], &missing, "is missing from the archive");
}

/// Replaces the content of `blobs/sha256/<hex>` in a tarball, keeping the name.
fn swap_blob(archive: &[u8], hex: &str, content: &[u8]) -> Vec<u8> {
    let mut out = tar::Builder::new(Vec::new());
    let mut a = tar::Archive::new(archive);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().display().to_string();
        let mut h = e.header().clone();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        if path == format!("blobs/sha256/{hex}") {
            data = content.to_vec();
        }
        h.set_size(data.len() as u64);
        h.set_cksum();
        out.append(&h, &data[..]).unwrap();
    }
    out.into_inner().unwrap()
}

#[test]
fn truncated_archives_are_refused() {
    let (r, _outside) = setup();
    let layer = TarBuilder::new().file("big", &vec![7u8; 200_000]).finish();
    let archive = oci_archive("t:1", &[(layer.clone(), layer.clone())]);
    for cut in [archive.len() / 2, archive.len() - 700] {
        refused(&r, &["load"], &archive[..cut], "truncated");
    }
    refused(
        &r,
        &["import", "-", "t"],
        &layer[..layer.len() / 2],
        "truncated",
    );
    let gz = gzip(&layer);
    refused(
        &r,
        &["import", "-", "t"],
        &gz[..gz.len() / 2],
        "layer archive is truncated",
    );
}

#[test]
fn malformed_manifests_are_refused() {
    let (r, _outside) = setup();
    let bad_index = TarBuilder::new()
        .file("oci-layout", b"{}")
        .file("index.json", b"{\"manifests\": [")
        .finish();
    refused(&r, &["load"], &bad_index, "malformed index.json");
    let bad_manifest_json = TarBuilder::new()
        .file("manifest.json", b"[{\"Config\": 7}]")
        .finish();
    refused(&r, &["load"], &bad_manifest_json, "malformed manifest.json");

    // An index naming a manifest blob that is not a manifest.
    let garbage = b"this is not json".to_vec();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest(&garbage).to_string(), "size": garbage.len()}],
    }))
    .unwrap();
    let archive = TarBuilder::new()
        .file("oci-layout", b"{}")
        .file("index.json", &index)
        .file(
            &format!("blobs/sha256/{}", digest(&garbage).hex()),
            &garbage,
        )
        .finish();
    refused(&r, &["load"], &archive, "malformed manifest");
    refused(&r, &["load"], b"not an archive at all, just some bytes that are long enough to look at. .............................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................", "invalid archive");
    refused(
        &r,
        &["load"],
        &TarBuilder::new().file("hello", b"x").finish(),
        "neither manifest.json nor index.json",
    );
    refused(&r, &["load"], b"", "empty input");
}
