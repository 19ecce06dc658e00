//! The layer writer against real snapshots: what changed between two trees, as a tar.

use std::sync::Arc;

use super::*;
use crate::diff::{ApplyOptions, apply_to_mounts};
use crate::snapshot::{Copy, Overlay, Snapshotter};

/// A layer made by comparing snapshots, applied onto the parent in another snapshotter,
/// gives the same tree: for overlay (whose mounts stack lower layers) and copy alike.
fn round_trip<S: Snapshotter>(make: fn(PathBuf, Arc<crate::db::Db>) -> S) {
    let d = tempfile::tempdir().unwrap();
    let db = Arc::new(crate::db::Db::open(&d.path().join("db")).unwrap());
    let sn = make(d.path().join("snapshots"), db);
    let scratch = d.path().join("tmp");
    let base = {
        let mut b = tar::Builder::new(Vec::new());
        for (p, data) in [
            ("keep", "k"),
            ("gone", "g"),
            ("dir/old", "o"),
            ("change", "before"),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_path(p).unwrap();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(1_000);
            h.set_cksum();
            b.append(&h, data.as_bytes()).unwrap();
        }
        b.into_inner().unwrap()
    };
    let m = sn.prepare("base-a", None).unwrap();
    apply_to_mounts(&mut &base[..], &m, &scratch, &ApplyOptions::default()).unwrap();
    sn.commit("base", "base-a").unwrap();

    let child = sn.prepare("child", Some("base")).unwrap();
    {
        let tm = TempMount::new(&child, &scratch).unwrap();
        let r = tm.path();
        fs::remove_file(r.join("gone")).unwrap();
        fs::remove_dir_all(r.join("dir")).unwrap();
        fs::create_dir(r.join("dir")).unwrap();
        fs::write(r.join("dir/new"), "n").unwrap();
        fs::write(r.join("change"), "after!").unwrap();
        fs::write(r.join("added"), "a").unwrap();
    }
    let lower = sn.view("base-view", Some("base")).unwrap();
    let mut layer = Vec::new();
    compare_mounts(&lower, &child, &scratch, &mut layer).unwrap();
    sn.remove("base-view").unwrap();

    let names: Vec<String> = tar::Archive::new(&layer[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(names.contains(&".wh.gone".to_string()), "{names:?}");
    assert!(
        names.contains(&"added".to_string()) && names.contains(&"change".to_string()),
        "{names:?}"
    );
    assert!(
        !names.contains(&"keep".to_string()),
        "unchanged file in the diff: {names:?}"
    );

    let again = sn.prepare("again", Some("base")).unwrap();
    apply_to_mounts(&mut &layer[..], &again, &scratch, &ApplyOptions::default()).unwrap();
    let tm = TempMount::new(&again, &scratch).unwrap();
    let r = tm.path();
    assert_eq!(fs::read_to_string(r.join("keep")).unwrap(), "k");
    assert_eq!(fs::read_to_string(r.join("change")).unwrap(), "after!");
    assert_eq!(fs::read_to_string(r.join("added")).unwrap(), "a");
    assert!(!r.join("gone").exists());
    assert!(
        !r.join("dir/old").exists(),
        "the old directory's content is still visible"
    );
    assert_eq!(fs::read_to_string(r.join("dir/new")).unwrap(), "n");
}

#[test]
fn overlay_snapshots_round_trip() {
    round_trip(|root, db| Overlay::new(root, db).unwrap());
}

#[test]
fn copy_snapshots_round_trip() {
    round_trip(|root, db| Copy::new(root, db).unwrap());
}

fn entries(layer: &[u8]) -> Vec<(String, tar::EntryType, Option<PathBuf>)> {
    tar::Archive::new(layer)
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let link = e.link_name().unwrap().map(|l| l.into_owned());
            (
                e.path().unwrap().display().to_string(),
                e.header().entry_type(),
                link,
            )
        })
        .collect()
}

/// An upper tree with a symlink to a directory outside, named like a directory of the
/// lower tree (what a container does to make the walk read the host): the symlink is an
/// entry of its own and nothing it leads to is read.
#[test]
fn a_symlink_to_outside_is_not_followed() {
    let t = tempfile::tempdir().unwrap();
    let (lower, upper, outside) = (
        t.path().join("lower"),
        t.path().join("upper"),
        t.path().join("outside"),
    );
    fs::create_dir_all(lower.join("d")).unwrap();
    fs::write(lower.join("d/x"), "x").unwrap();
    fs::create_dir_all(&upper).unwrap();
    fs::create_dir_all(outside.join("sub")).unwrap();
    fs::write(outside.join("secret"), "host secret").unwrap();
    fs::write(outside.join("sub/x"), "host x").unwrap();
    std::os::unix::fs::symlink(&outside, upper.join("d")).unwrap();
    std::os::unix::fs::symlink(&outside, upper.join("e")).unwrap();

    let mut layer = Vec::new();
    compare(&lower, &upper, &mut layer).unwrap();
    assert_eq!(
        entries(&layer),
        vec![
            ("d".into(), tar::EntryType::Symlink, Some(outside.clone())),
            ("e".into(), tar::EntryType::Symlink, Some(outside.clone())),
        ]
    );
    let host = b"host ";
    assert!(!layer.windows(host.len()).any(|w| w == host));
}

/// FIFOs, in one tree or both, are entries; none is opened, so none blocks the walk.
#[test]
fn a_fifo_does_not_block() {
    let t = tempfile::tempdir().unwrap();
    let (lower, upper) = (t.path().join("lower"), t.path().join("upper"));
    for d in [&lower, &upper] {
        fs::create_dir_all(d).unwrap();
        let fifo = d.join("both");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let zero = rustix::fs::Timestamps {
            last_access: Default::default(),
            last_modification: Default::default(),
        };
        rustix::fs::utimensat(rustix::fs::CWD, &fifo, &zero, rustix::fs::AtFlags::empty()).unwrap();
    }
    rustix::fs::mknodat(
        rustix::fs::CWD,
        upper.join("p"),
        FileType::Fifo,
        Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    fs::write(upper.join("f"), "f").unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut layer = Vec::new();
        compare(&lower, &upper, &mut layer).unwrap();
        let _ = tx.send(layer);
    });
    let layer = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("the walk blocked");
    let got: Vec<_> = entries(&layer)
        .into_iter()
        .map(|(p, k, _)| (p, k))
        .collect();
    assert_eq!(
        got,
        vec![
            ("f".into(), tar::EntryType::Regular),
            ("p".into(), tar::EntryType::Fifo),
        ]
    );
}

/// Only what differs is in the layer: owner, mode, size, time, link target, and the
/// bytes of a file whose time has no sub-second part (a same-second rewrite).
#[test]
fn only_what_differs_is_in_the_layer() {
    let t = tempfile::tempdir().unwrap();
    let (lower, upper) = (t.path().join("lower"), t.path().join("upper"));
    let at = |p: &Path, secs: i64, nanos: i64| {
        let ts = rustix::fs::Timespec {
            tv_sec: secs,
            tv_nsec: nanos as _,
        };
        let times = rustix::fs::Timestamps {
            last_access: ts,
            last_modification: ts,
        };
        rustix::fs::utimensat(
            rustix::fs::CWD,
            p,
            &times,
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
    };
    for (root, second) in [(&lower, false), (&upper, true)] {
        fs::create_dir_all(root.join("dir")).unwrap();
        fs::create_dir_all(root.join("dir_mode")).unwrap();
        let files = [
            ("same", "aaaa", "aaaa", 0),
            ("rewrite", "aaaa", "bbbb", 0),
            ("trusted", "aaaa", "bbbb", 500),
            ("mode", "aaaa", "aaaa", 0),
            ("owner", "aaaa", "aaaa", 0),
            ("group", "aaaa", "aaaa", 0),
            ("size", "aaaa", "aaaaa", 0),
            ("dir/inner", "x", "y", 0),
        ];
        for (name, before, after, nanos) in files {
            let p = root.join(name);
            fs::write(&p, if second { after } else { before }).unwrap();
            at(&p, 1000, nanos);
        }
        let p = root.join("mtime");
        fs::write(&p, "same").unwrap();
        at(&p, if second { 2000 } else { 1000 }, 0);
        std::os::unix::fs::symlink("target", root.join("link_same")).unwrap();
        std::os::unix::fs::symlink(if second { "b" } else { "a" }, root.join("link_changed"))
            .unwrap();
        if second {
            fs::set_permissions(
                root.join("mode"),
                std::os::unix::fs::PermissionsExt::from_mode(0o600),
            )
            .unwrap();
            fs::set_permissions(
                root.join("dir_mode"),
                std::os::unix::fs::PermissionsExt::from_mode(0o700),
            )
            .unwrap();
            std::os::unix::fs::chown(root.join("owner"), Some(1), None).unwrap();
            std::os::unix::fs::chown(root.join("group"), None, Some(1)).unwrap();
            at(&root.join("owner"), 1000, 0);
            at(&root.join("group"), 1000, 0);
            at(&root.join("mode"), 1000, 0);
        }
        // Device nodes alike but for their number.
        for (name, minor) in [("dev_same", 3), ("dev", if second { 5 } else { 3 })] {
            rustix::fs::mknodat(
                rustix::fs::CWD,
                root.join(name),
                FileType::CharacterDevice,
                Mode::from_raw_mode(0o600),
                rustix::fs::makedev(1, minor),
            )
            .unwrap();
            at(&root.join(name), 1000, 0);
        }
        at(&root.join("dir"), 1000, 0);
    }
    let mut layer = Vec::new();
    compare(&lower, &upper, &mut layer).unwrap();
    let mut got: Vec<String> = entries(&layer).into_iter().map(|(p, _, _)| p).collect();
    got.sort();
    assert_eq!(
        got,
        [
            "dev",
            "dir/inner",
            "dir_mode",
            "group",
            "link_changed",
            "mode",
            "mtime",
            "owner",
            "rewrite",
            "size"
        ]
    );
}

#[test]
fn exact_reads_what_the_header_said() {
    let mut out = Vec::new();
    Exact::new(&b"abcdef"[..], 4).read_to_end(&mut out).unwrap();
    assert_eq!(out, b"abcd", "a file that grew is cut");
    let mut out = Vec::new();
    let e = Exact::new(&b"ab"[..], 4).read_to_end(&mut out).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    assert_eq!(e.to_string(), "file shrank while being read");
    let mut out = Vec::new();
    Exact::new(&b"ab"[..], 0).read_to_end(&mut out).unwrap();
    assert!(out.is_empty());
    let mut one = [0u8; 1];
    let mut r = Exact::new(&b"abc"[..], 3);
    assert_eq!(r.read(&mut one).unwrap(), 1);
    assert_eq!(r.read(&mut []).unwrap(), 0);
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"bc");
}

/// Where the lower tree is missing, or not a directory, every entry of the upper one is
/// added; comparing mounts with no lower leaves nothing behind in the scratch directory.
#[test]
fn no_lower_tree_means_everything_is_added() {
    let t = tempfile::tempdir().unwrap();
    let upper = t.path().join("upper");
    fs::create_dir_all(upper.join("d")).unwrap();
    fs::write(upper.join("d/f"), "f").unwrap();
    let file = t.path().join("file");
    fs::write(&file, "not a directory").unwrap();
    let names = |layer: &[u8]| -> Vec<String> {
        let mut v: Vec<String> = entries(layer).into_iter().map(|(p, _, _)| p).collect();
        v.sort();
        v
    };
    for lower in [t.path().join("missing"), file] {
        let mut layer = Vec::new();
        compare(&lower, &upper, &mut layer).unwrap();
        assert_eq!(names(&layer), ["d", "d/f"], "{}", lower.display());
    }
    let scratch = t.path().join("scratch");
    fs::create_dir(&scratch).unwrap();
    let mut layer = Vec::new();
    compare_mounts(&[], &[Mount::bind(&upper, true)], &scratch, &mut layer).unwrap();
    assert_eq!(names(&layer), ["d", "d/f"]);
    assert_eq!(
        fs::read_dir(&scratch).unwrap().count(),
        0,
        "left in scratch"
    );
}

/// User xattrs and file capabilities go into the layer as PAX records; others stay out.
/// Device nodes are entries with their numbers.
#[test]
fn xattrs_and_device_nodes_are_written() {
    let t = tempfile::tempdir().unwrap();
    let (lower, upper) = (t.path().join("lower"), t.path().join("upper"));
    fs::create_dir_all(&lower).unwrap();
    fs::create_dir_all(&upper).unwrap();
    let f = upper.join("f");
    fs::write(&f, "f").unwrap();
    rustix::fs::setxattr(&f, "user.colour", b"blue", rustix::fs::XattrFlags::empty()).unwrap();
    rustix::fs::setxattr(&f, "trusted.secret", b"no", rustix::fs::XattrFlags::empty()).unwrap();
    fs::write(upper.join("plain"), "p").unwrap();
    for (name, kind, minor) in [
        ("c", FileType::CharacterDevice, 3),
        ("b", FileType::BlockDevice, 7),
    ] {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            upper.join(name),
            kind,
            Mode::from_raw_mode(0o600),
            rustix::fs::makedev(1, minor),
        )
        .unwrap();
    }
    let mut layer = Vec::new();
    compare(&lower, &upper, &mut layer).unwrap();
    let mut seen = Vec::new();
    let mut archive = tar::Archive::new(&layer[..]);
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().display().to_string();
        let pax: Vec<(String, Vec<u8>)> = match e.pax_extensions().unwrap() {
            Some(exts) => exts
                .map(|x| {
                    let x = x.unwrap();
                    (x.key().unwrap().to_string(), x.value_bytes().to_vec())
                })
                .collect(),
            None => vec![],
        };
        let h = e.header();
        let dev = (
            h.device_major().ok().flatten(),
            h.device_minor().ok().flatten(),
        );
        seen.push((path, h.entry_type(), dev, pax));
    }
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        seen,
        vec![
            (
                "b".into(),
                tar::EntryType::Block,
                (Some(1), Some(7)),
                vec![]
            ),
            ("c".into(), tar::EntryType::Char, (Some(1), Some(3)), vec![]),
            (
                "f".into(),
                tar::EntryType::Regular,
                (None, None),
                vec![("SCHILY.xattr.user.colour".into(), b"blue".to_vec())]
            ),
            (
                "plain".into(),
                tar::EntryType::Regular,
                (None, None),
                vec![]
            ),
        ]
    );
}

#[test]
fn snapshots_are_compared_through_read_only_views() {
    let m = |kind: &str, source: &str, options: &[&str]| Mount {
        kind: kind.into(),
        source: source.into(),
        options: options.iter().map(|o| o.to_string()).collect(),
    };
    let view = read_only_view(&[
        m("bind", "/s/1", &["rbind", "rw"]),
        m("bind", "/s/2", &["rbind", "ro"]),
        m(
            "overlay",
            "overlay",
            &[
                "index=off",
                "workdir=/s/w",
                "upperdir=/s/u",
                "lowerdir=/s/a:/s/b",
            ],
        ),
        m("overlay", "overlay", &["lowerdir=/s/a:/s/b"]),
        m("overlay", "overlay", &["workdir=/s/w", "upperdir=/s/u"]),
        m("tmpfs", "tmpfs", &["rw"]),
    ]);
    assert_eq!(
        view,
        [
            m("bind", "/s/1", &["rbind", "ro"]),
            m("bind", "/s/2", &["rbind", "ro"]),
            m(
                "overlay",
                "overlay",
                &["index=off", "lowerdir=/s/u:/s/a:/s/b"]
            ),
            m("overlay", "overlay", &["lowerdir=/s/a:/s/b"]),
            Mount::bind(Path::new("/s/u"), true),
            m("tmpfs", "tmpfs", &["rw"]),
        ]
    );
}
