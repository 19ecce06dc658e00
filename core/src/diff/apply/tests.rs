//! Layer application, including every kind of hostile layer. Each test unpacks into its own
//! temp directory and checks that nothing reached outside it.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::*;
use crate::diff::compare;

/// Appends an entry whose name and link name are written verbatim, as a hostile archiver would.
pub(super) fn raw(
    b: &mut tar::Builder<Vec<u8>>,
    name: &str,
    kind: tar::EntryType,
    link: &str,
    data: &[u8],
) {
    let mut h = tar::Header::new_gnu();
    {
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(if kind == tar::EntryType::Directory {
        0o755
    } else {
        0o644
    });
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_000_000);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

pub(super) fn tar_of(f: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    f(&mut b);
    b.into_inner().unwrap()
}

pub(super) use tar::EntryType as T;

pub(super) struct Case {
    pub(super) dir: tempfile::TempDir,
    pub(super) root: std::path::PathBuf,
    pub(super) outside: std::path::PathBuf,
}

pub(super) fn case() -> Case {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let outside = dir.path().join("outside");
    fs::create_dir_all(&root).unwrap();
    fs::create_dir_all(&outside).unwrap();
    Case { dir, root, outside }
}

pub(super) fn run(c: &Case, layer: &[u8]) -> Result<Applied, DiffError> {
    apply(&mut &layer[..], &c.root, &ApplyOptions::default())
}

pub(super) fn outside_untouched(c: &Case) {
    assert_eq!(
        fs::read_dir(&c.outside).unwrap().count(),
        0,
        "something was written outside the root"
    );
}

#[test]
fn unpacks_files_dirs_links_and_metadata() {
    let c = case();
    let layer = tar_of(|b| {
        raw(b, "etc/", T::Directory, "", b"");
        raw(b, "etc/hostname", T::Regular, "", b"ketch\n");
        raw(b, "etc/alias", T::Link, "etc/hostname", b"");
        raw(b, "bin/sh", T::Symlink, "busybox", b"");
        raw(b, "run/fifo", T::Fifo, "", b"");
    });
    let applied = run(&c, &layer).unwrap();
    assert_eq!(applied.diff_id, Digest::of(&layer));
    assert_eq!(applied.compression, Compression::None);
    assert_eq!(applied.content_size, 6);
    assert_eq!(
        fs::read_to_string(c.root.join("etc/hostname")).unwrap(),
        "ketch\n"
    );
    let a = fs::metadata(c.root.join("etc/hostname")).unwrap();
    let b = fs::metadata(c.root.join("etc/alias")).unwrap();
    assert_eq!(a.ino(), b.ino());
    assert_eq!(a.mode() & 0o7777, 0o644);
    assert_eq!(a.mtime(), 1_000_000);
    assert_eq!(fs::metadata(c.root.join("etc")).unwrap().mtime(), 1_000_000);
    assert_eq!(
        fs::read_link(c.root.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert!(
        fs::symlink_metadata(c.root.join("run/fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
}

use std::os::unix::fs::FileTypeExt;

#[test]
fn gzip_and_zstd_give_the_plain_diff_id() {
    let layer = tar_of(|b| raw(b, "f", T::Regular, "", b"data"));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&layer).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(&layer[..], 1).unwrap();
    for (bytes, kind) in [(gz, Compression::Gzip), (zst, Compression::Zstd)] {
        let c = case();
        let a = run(&c, &bytes).unwrap();
        assert_eq!(a.compression, kind);
        assert_eq!(a.diff_id, Digest::of(&layer));
        assert_eq!(fs::read(c.root.join("f")).unwrap(), b"data");
    }
}

#[test]
fn whiteouts_hide_lower_files_and_opaque_dirs_hide_lower_children() {
    let c = case();
    fs::create_dir_all(c.root.join("d/sub")).unwrap();
    fs::write(c.root.join("d/old"), "x").unwrap();
    fs::write(c.root.join("gone"), "x").unwrap();
    fs::create_dir_all(c.root.join("gonedir/x")).unwrap();
    let layer = tar_of(|b| {
        raw(b, "d/", T::Directory, "", b"");
        raw(b, "d/new", T::Regular, "", b"n");
        raw(b, "d/.wh..wh..opq", T::Regular, "", b"");
        raw(b, ".wh.gone", T::Regular, "", b"");
        raw(b, ".wh.gonedir", T::Regular, "", b"");
        raw(b, ".wh.never-existed", T::Regular, "", b"");
    });
    run(&c, &layer).unwrap();
    let names: Vec<_> = fs::read_dir(c.root.join("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("new")]);
    assert!(!c.root.join("gone").exists());
    assert!(!c.root.join("gonedir").exists());
    assert!(!c.root.join(".wh.gone").exists());
}

#[test]
fn compare_then_apply_round_trips() {
    let d = tempfile::tempdir().unwrap();
    let (lower, upper, out) = (
        d.path().join("lower"),
        d.path().join("upper"),
        d.path().join("out"),
    );
    for p in [&lower, &upper, &out] {
        fs::create_dir_all(p).unwrap();
    }
    // lower: a b/c d/e ; upper: a (changed) b/c f (new) and a hard link, d removed.
    fs::write(lower.join("a"), "old").unwrap();
    fs::create_dir_all(lower.join("b")).unwrap();
    fs::write(lower.join("b/c"), "same").unwrap();
    fs::create_dir_all(lower.join("d")).unwrap();
    fs::write(lower.join("d/e"), "e").unwrap();
    crate::fsutil::copy_tree(&lower, &upper).unwrap();
    crate::fsutil::copy_tree(&lower, &out).unwrap();
    fs::write(upper.join("a"), "new!").unwrap();
    fs::remove_dir_all(upper.join("d")).unwrap();
    fs::write(upper.join("f"), "f").unwrap();
    fs::set_permissions(upper.join("f"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::hard_link(upper.join("f"), upper.join("f2")).unwrap();

    let mut layer = Vec::new();
    compare(&lower, &upper, &mut layer).unwrap();
    let names: Vec<String> = tar::Archive::new(&layer[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert_eq!(names, vec![".wh.d", "a", "f", "f2"]);

    apply(&mut &layer[..], &out, &ApplyOptions::default()).unwrap();
    assert_eq!(fs::read_to_string(out.join("a")).unwrap(), "new!");
    assert_eq!(fs::read_to_string(out.join("b/c")).unwrap(), "same");
    assert!(!out.join("d").exists());
    let f = fs::metadata(out.join("f")).unwrap();
    assert_eq!(f.mode() & 0o7777, 0o4755);
    assert_eq!(f.ino(), fs::metadata(out.join("f2")).unwrap().ino());
}

#[test]
fn pax_times_keep_nanoseconds() {
    assert_eq!(
        parse_pax_time("1700000000.5"),
        Some((1700000000, 500_000_000))
    );
    assert_eq!(parse_pax_time("12"), Some((12, 0)));
    assert_eq!(parse_pax_time("12."), Some((12, 0)));
    assert_eq!(parse_pax_time("1.000000001"), Some((1, 1)));
    // Past nanoseconds, digits are dropped, not rounded.
    assert_eq!(parse_pax_time("1.1234567899"), Some((1, 123_456_789)));
    assert_eq!(parse_pax_time("-3.25"), Some((-3, 250_000_000)));
    for bad in ["", "x", "1.x", "1.5.5", ".5"] {
        assert_eq!(parse_pax_time(bad), None, "{bad:?}");
    }
}

#[test]
fn only_user_xattrs_and_file_capabilities_are_kept() {
    for ok in [&b"user.mime_type"[..], b"user.", b"security.capability"] {
        assert!(allowed_xattr(ok), "{}", String::from_utf8_lossy(ok));
    }
    for no in [
        &b"trusted.overlay.opaque"[..],
        b"security.selinux",
        b"security.capability2",
        b"system.posix_acl_access",
        b"user",
        b"",
    ] {
        assert!(!allowed_xattr(no), "{}", String::from_utf8_lossy(no));
    }
}

#[test]
fn entry_paths_are_split_and_never_climb() {
    assert_eq!(clean(b"./a//b/./c/").unwrap(), [&b"a"[..], b"b", b"c"]);
    assert_eq!(clean(b"/etc/passwd").unwrap(), [&b"etc"[..], b"passwd"]);
    assert!(clean(b".").unwrap().is_empty());
    assert_eq!(
        clean(b"a/../b"),
        Err("path escapes the layer root (\"..\")")
    );
    assert!(clean(b"..").is_err());
    assert_eq!(clean(b"a/..b").unwrap(), [&b"a"[..], b"..b"]);
}

/// A single bind mount is written in place only when it is writable: a read-only one is
/// mounted (read-only) and the layer refused, leaving its directory as it was.
#[test]
fn a_read_only_bind_is_not_written_through() {
    let c = case();
    let layer = tar_of(|b| raw(b, "f", tar::EntryType::Regular, "", b"data"));
    let scratch = c.dir.path().join("scratch");
    fs::create_dir(&scratch).unwrap();
    let bind = |ro: bool| {
        vec![Mount {
            kind: "bind".into(),
            source: c.root.display().to_string(),
            options: if ro {
                vec!["rbind".into(), "ro".into()]
            } else {
                vec!["rbind".into()]
            },
        }]
    };
    let err = apply_to_mounts(
        &mut &layer[..],
        &bind(true),
        &scratch,
        &ApplyOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("Read-only file system"), "{err}");
    assert!(!c.root.join("f").exists());
    apply_to_mounts(
        &mut &layer[..],
        &bind(false),
        &scratch,
        &ApplyOptions::default(),
    )
    .unwrap();
    assert_eq!(fs::read(c.root.join("f")).unwrap(), b"data");
    outside_untouched(&c);
}

/// A reader that fails partway: an uncompressed layer's read error is the reader's, named
/// as the layer's; a compressed one's is the decompressor's.
#[test]
fn a_failing_reader_is_reported_as_a_read_error() {
    struct Failing(Vec<u8>);
    impl std::io::Read for Failing {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            if self.0.is_empty() {
                return Err(std::io::Error::other("the disk went away"));
            }
            let n = out.len().min(self.0.len());
            out[..n].copy_from_slice(&self.0[..n]);
            self.0.drain(..n);
            Ok(n)
        }
    }
    let c = case();
    let layer = tar_of(|b| raw(b, "f", T::Regular, "", b"data"));
    // Failing at once (while the compression is told) or partway.
    for head in [vec![], layer[..600].to_vec()] {
        let err = apply(&mut Failing(head), &c.root, &ApplyOptions::default()).unwrap_err();
        assert!(matches!(err, DiffError::Io { .. }), "{err:?}");
        assert_eq!(err.to_string(), "layer: the disk went away");
    }

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&layer).unwrap();
    let gz = gz.finish().unwrap();
    let err = apply(
        &mut Failing(gz[..gz.len() / 2].to_vec()),
        &c.root,
        &ApplyOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(err, DiffError::Decompress { format: "gzip", .. }),
        "{err:?}"
    );
    outside_untouched(&c);
}

/// The root must be a directory: anything else is an error that names it.
#[test]
fn a_root_that_is_not_a_directory_is_refused() {
    let c = case();
    let file = c.dir.path().join("file");
    fs::write(&file, "x").unwrap();
    let layer = tar_of(|b| raw(b, "f", T::Regular, "", b"data"));
    let err = apply(&mut &layer[..], &file, &ApplyOptions::default()).unwrap_err();
    assert!(
        matches!(&err, DiffError::Io { path, .. } if *path == file),
        "{err:?}"
    );
    assert_eq!(fs::read(&file).unwrap(), b"x");
}

/// The size limit is a bound, not a ceiling to stay under: a layer of exactly the limit
/// applies, one byte less is too large.
#[test]
fn the_size_limit_is_inclusive() {
    let layer = tar_of(|b| raw(b, "f", T::Regular, "", b"data"));
    let exact = ApplyOptions {
        max_size: layer.len() as u64,
    };
    run_with(&layer, &exact).unwrap();
    let under = ApplyOptions {
        max_size: layer.len() as u64 - 1,
    };
    let err = run_with(&layer, &under).unwrap_err();
    assert!(matches!(err, DiffError::TooLarge { .. }), "{err}");
}

pub(super) fn run_with(layer: &[u8], opts: &ApplyOptions) -> Result<Applied, DiffError> {
    let c = case();
    apply(&mut &layer[..], &c.root, opts)
}

/// A bad header is a malformed layer, not a truncated one.
#[test]
fn a_bad_checksum_is_malformed() {
    let mut layer = tar_of(|b| raw(b, "f", T::Regular, "", b"data"));
    layer[148] ^= 0x01; // the header's checksum
    let c = case();
    let err = run(&c, &layer).unwrap_err();
    assert!(matches!(err, DiffError::Malformed { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with("malformed layer archive"),
        "{err}"
    );
    outside_untouched(&c);
}

/// PAX records carry owners too large for the header's octal fields, and times with
/// nanoseconds.
#[test]
fn pax_owners_and_times_are_applied() {
    let layer = tar_of(|b| {
        b.append_pax_extensions([
            ("uid", &b"3000000"[..]),
            ("gid", b"3000001"),
            ("mtime", b"1700000000.25"),
        ])
        .unwrap();
        raw(b, "f", T::Regular, "", b"data");
    });
    let c = case();
    run(&c, &layer).unwrap();
    let m = fs::symlink_metadata(c.root.join("f")).unwrap();
    assert_eq!((m.uid(), m.gid()), (3_000_000, 3_000_001));
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_700_000_000, 250_000_000));
}

/// Entries of one directory after another's land in their own; a directory the layer
/// replaces is not written into afterwards through a descriptor kept from before.
#[test]
fn parents_are_never_stale() {
    let layer = tar_of(|b| {
        raw(b, "a/x", T::Regular, "", b"x");
        raw(b, "b/y", T::Regular, "", b"y");
        raw(b, "a/z", T::Regular, "", b"z");
        raw(b, "b/c/w", T::Regular, "", b"w");
    });
    let c = case();
    run(&c, &layer).unwrap();
    for (p, data) in [("a/x", "x"), ("b/y", "y"), ("a/z", "z"), ("b/c/w", "w")] {
        assert_eq!(fs::read_to_string(c.root.join(p)).unwrap(), data, "{p}");
    }
    assert_eq!(fs::read_dir(&c.root).unwrap().count(), 2);

    // "d" becomes a file: a later "d/…" has no directory to go to.
    for (cached, later) in [("d/a", "d/b"), ("d/e/a", "d/e/b")] {
        let layer = tar_of(|b| {
            raw(b, cached, T::Regular, "", b"a");
            raw(b, "d", T::Regular, "", b"file");
            raw(b, later, T::Regular, "", b"b");
        });
        let c = case();
        let err = run(&c, &layer).unwrap_err();
        assert!(
            matches!(&err, DiffError::UnsafeEntry { entry, reason }
                if entry == later && reason.contains("not a directory")),
            "{err:?}"
        );
        assert_eq!(fs::read_to_string(c.root.join("d")).unwrap(), "file");
    }

    // A lower layer's directory this layer writes into, then hides (by name, or by making
    // its parent opaque), then writes into again: the second file is in the new directory.
    for hide in ["d/.wh.sub", "d/.wh..wh..opq"] {
        let c = case();
        fs::create_dir_all(c.root.join("d/sub")).unwrap();
        fs::write(c.root.join("d/sub/old"), "old").unwrap();
        let layer = tar_of(|b| {
            raw(b, "d/sub/a", T::Regular, "", b"a");
            raw(b, hide, T::Regular, "", b"");
            raw(b, "d/sub/b", T::Regular, "", b"b");
        });
        run(&c, &layer).unwrap();
        let mut names: Vec<_> = fs::read_dir(c.root.join("d/sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["b"], "{hide}");
    }
}

/// A parent that is a symlink leading nowhere inside the root: the entry is refused as
/// not found, and nothing is made where the link points.
#[test]
fn a_dangling_symlink_parent_is_not_found() {
    let layer = tar_of(|b| {
        raw(b, "d", T::Symlink, "/nowhere", b"");
        raw(b, "d/f", T::Regular, "", b"f");
    });
    let c = case();
    let err = run(&c, &layer).unwrap_err();
    assert!(
        matches!(&err, DiffError::Entry { entry, source }
            if entry == "d/f" && source.kind() == std::io::ErrorKind::NotFound),
        "{err:?}"
    );
    assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);
    assert!(!c.root.join("nowhere").exists());
    outside_untouched(&c);
}

/// Whiteouts that name nothing a layer may hide (".", "..", an empty name, AUFS's own
/// ".wh..wh." files) hide nothing: above all, "..", which would reach past the root.
#[test]
fn nonsense_whiteouts_hide_nothing() {
    let c = case();
    let sentinel = c.dir.path().join("beside-the-root");
    fs::write(&sentinel, "keep").unwrap();
    fs::create_dir_all(c.root.join("d/e")).unwrap();
    fs::write(c.root.join("d/e/f"), "f").unwrap();
    fs::write(c.root.join("top"), "t").unwrap();
    fs::write(c.root.join("d/.wh.plnk"), "aufs").unwrap();
    let layer = tar_of(|b| {
        for w in [
            ".wh..",
            ".wh...",
            "d/.wh...",
            "d/e/.wh...",
            ".wh.",
            "d/.wh.",
            "d/.wh..wh.plnk",
        ] {
            raw(b, w, T::Regular, "", b"");
        }
    });
    run(&c, &layer).unwrap();
    assert_eq!(fs::read_to_string(&sentinel).unwrap(), "keep");
    assert_eq!(fs::read_to_string(c.root.join("top")).unwrap(), "t");
    assert_eq!(fs::read_to_string(c.root.join("d/e/f")).unwrap(), "f");
    assert_eq!(
        fs::read_to_string(c.root.join("d/.wh.plnk")).unwrap(),
        "aufs"
    );
    outside_untouched(&c);
}

/// Symlinks and FIFOs get their owner and times without following anything.
#[test]
fn links_and_fifos_get_their_owner_and_time() {
    let c = case();
    let entry = |b: &mut tar::Builder<Vec<u8>>, name: &str, kind: tar::EntryType| {
        let mut h = tar::Header::new_gnu();
        h.set_path(name).unwrap();
        h.set_entry_type(kind);
        if kind == T::Symlink {
            h.set_link_name("top").unwrap();
        }
        h.set_size(0);
        h.set_mode(0o640);
        h.set_uid(1234);
        h.set_gid(5678);
        h.set_mtime(1_234_567);
        h.set_cksum();
        b.append(&h, &[][..]).unwrap();
    };
    let layer = tar_of(|b| {
        raw(b, "top", T::Regular, "", b"t");
        entry(b, "link", T::Symlink);
        entry(b, "fifo", T::Fifo);
    });
    run(&c, &layer).unwrap();
    for name in ["link", "fifo"] {
        let m = fs::symlink_metadata(c.root.join(name)).unwrap();
        assert_eq!(
            (m.uid(), m.gid(), m.mtime()),
            (1234, 5678, 1_234_567),
            "{name}"
        );
    }
    // The link's target keeps its own.
    let t = fs::symlink_metadata(c.root.join("top")).unwrap();
    assert_eq!((t.uid(), t.mtime()), (0, 1_000_000));
    assert_eq!(
        fs::symlink_metadata(c.root.join("fifo")).unwrap().mode() & 0o777,
        0o640
    );
}

/// A whiteout in the layer that made the same path hides nothing of it: at the top and
/// below.
#[test]
fn whiteouts_never_hide_what_their_own_layer_made() {
    let c = case();
    let layer = tar_of(|b| {
        raw(b, "f", T::Regular, "", b"f");
        raw(b, ".wh.f", T::Regular, "", b"");
        raw(b, "d/g", T::Regular, "", b"g");
        raw(b, "d/.wh.g", T::Regular, "", b"");
    });
    run(&c, &layer).unwrap();
    assert_eq!(fs::read(c.root.join("f")).unwrap(), b"f");
    assert_eq!(fs::read(c.root.join("d/g")).unwrap(), b"g");
}

/// A directory entry where a directory is keeps what is in it; where a file or a link is,
/// it replaces it.
#[test]
fn a_directory_entry_keeps_a_directory_and_replaces_anything_else() {
    let c = case();
    fs::create_dir_all(c.root.join("d")).unwrap();
    fs::write(c.root.join("d/keep"), "k").unwrap();
    fs::write(c.root.join("f"), "file").unwrap();
    std::os::unix::fs::symlink(&c.outside, c.root.join("l")).unwrap();
    let layer = tar_of(|b| {
        raw(b, "d", T::Directory, "", b"");
        raw(b, "f", T::Directory, "", b"");
        raw(b, "l", T::Directory, "", b"");
        raw(b, "l/new", T::Regular, "", b"n");
    });
    run(&c, &layer).unwrap();
    assert_eq!(fs::read(c.root.join("d/keep")).unwrap(), b"k");
    for d in ["f", "l"] {
        let m = fs::symlink_metadata(c.root.join(d)).unwrap();
        assert!(m.is_dir(), "{d}");
    }
    assert_eq!(fs::read(c.root.join("l/new")).unwrap(), b"n");
    outside_untouched(&c);
}
