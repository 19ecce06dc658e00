//! Hostile layers: entries that climb out, write through links, make devices, bomb,
//! truncate, or are not tars at all. Each unpacks into its own temp directory and checks
//! that nothing reached outside it.

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;

use super::tests::*;
use super::*;

#[test]
fn dot_dot_entry_is_refused() {
    let c = case();
    let layer = tar_of(|b| raw(b, "../outside/evil", T::Regular, "", b"x"));
    let err = run(&c, &layer).unwrap_err();
    assert!(matches!(err, DiffError::UnsafeEntry { .. }), "{err}");
    assert!(err.to_string().contains("../outside/evil"), "{err}");
    assert!(err.to_string().contains("escapes"), "{err}");
    outside_untouched(&c);
}

#[test]
fn absolute_paths_are_contained() {
    let c = case();
    let abs = format!("{}/abs", c.outside.display());
    let layer = tar_of(|b| raw(b, &abs, T::Regular, "", b"x"));
    run(&c, &layer).unwrap();
    outside_untouched(&c);
    let inside = c.root.join(abs.trim_start_matches('/'));
    assert_eq!(fs::read(inside).unwrap(), b"x");
}

#[test]
fn write_through_symlink_pointing_outside_is_contained() {
    let c = case();
    fs::create_dir_all(c.root.join("etc")).unwrap();
    let target = c.outside.display().to_string();
    // Symlinks resolve as if the root were "/": an absolute target and a climb of ".." both
    // stay inside.
    let layer = tar_of(|b| {
        raw(b, "abs", T::Symlink, "/etc", b"");
        raw(b, "abs/passwd", T::Regular, "", b"owned");
        raw(b, "rel", T::Symlink, "../../../../../../..", b"");
        raw(b, "rel/x", T::Regular, "", b"owned");
    });
    run(&c, &layer).unwrap();
    assert_eq!(fs::read(c.root.join("etc/passwd")).unwrap(), b"owned");
    assert_eq!(fs::read(c.root.join("x")).unwrap(), b"owned");
    // A symlink to the real host directory: the write either lands inside or is refused,
    // never in the host directory.
    let layer = tar_of(|b| {
        raw(b, "host", T::Symlink, &target, b"");
        raw(b, "host/passwd", T::Regular, "", b"owned");
    });
    let _ = run(&c, &layer);
    outside_untouched(&c);
}

#[test]
fn hardlink_outside_the_layer_is_refused() {
    let c = case();
    fs::write(c.outside.join("secret"), "s").unwrap();
    let layer = tar_of(|b| raw(b, "h", T::Link, "../outside/secret", b""));
    let err = run(&c, &layer).unwrap_err();
    assert!(
        err.to_string().contains("hard link target escapes"),
        "{err}"
    );

    // An absolute target, or one through a symlink, resolves inside the root: no such file.
    let secret = format!("{}/secret", c.outside.display());
    for layer in [
        tar_of(|b| raw(b, "h2", T::Link, &secret, b"")),
        tar_of(|b| {
            raw(b, "l", T::Symlink, &c.outside.display().to_string(), b"");
            raw(b, "h3", T::Link, "l/secret", b"");
        }),
    ] {
        let err = run(&c, &layer).unwrap_err();
        assert!(err.to_string().contains("not found"), "{err}");
        // A fault of the layer, not a missing object of the API's.
        assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument, "{err}");
    }
    assert_eq!(fs::metadata(c.outside.join("secret")).unwrap().nlink(), 1);
    assert_eq!(fs::read_dir(&c.outside).unwrap().count(), 1);
}

#[test]
fn device_nodes_are_not_created() {
    let c = case();
    let layer = tar_of(|b| {
        let mut h = tar::Header::new_gnu();
        h.set_path("dev/sda").unwrap();
        h.set_entry_type(T::Block);
        h.set_device_major(8).unwrap();
        h.set_device_minor(0).unwrap();
        h.set_mode(0o666);
        h.set_size(0);
        h.set_cksum();
        b.append(&h, &b""[..]).unwrap();
        raw(b, "dev/mem", T::Char, "", b"");
    });
    let a = run(&c, &layer).unwrap();
    assert_eq!(a.skipped_devices, 2);
    assert!(!c.root.join("dev/sda").exists());
    assert!(!c.root.join("dev/mem").exists());
}

#[test]
fn gzip_bomb_is_bounded() {
    let c = case();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    {
        let mut b = tar::Builder::new(&mut gz);
        let mut h = tar::Header::new_gnu();
        h.set_path("zeros").unwrap();
        h.set_size(32 << 20);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, std::io::Read::take(std::io::repeat(0), 32 << 20))
            .unwrap();
        b.finish().unwrap();
    }
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 1 << 20);
    let opts = ApplyOptions { max_size: 8 << 20 };
    let err = apply(&mut &bomb[..], &c.root, &opts).unwrap_err();
    assert!(matches!(err, DiffError::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("limit"), "{err}");
}

#[test]
fn truncated_layer_is_refused() {
    let layer = tar_of(|b| raw(b, "big", T::Regular, "", &[1u8; 10_000]));
    let c = case();
    let err = run(&c, &layer[..5000]).unwrap_err();
    assert!(matches!(err, DiffError::Truncated), "{err}");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&layer).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(&layer[..], 3).unwrap();
    // A compressed stream cut short is truncated too, whichever the compression.
    for cut in [&gz[..gz.len() / 2], &zst[..zst.len() / 2]] {
        let c = case();
        let err = run(&c, cut).unwrap_err();
        assert!(matches!(err, DiffError::Truncated), "{err:?}");
        assert_eq!(err.to_string(), "layer archive is truncated");
    }
}

/// A read interrupted by a signal is retried, not an error.
#[test]
fn interrupted_reads_are_retried() {
    struct Interrupting(Vec<u8>, bool);
    impl std::io::Read for Interrupting {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            self.1 = !self.1;
            if self.1 {
                return Err(std::io::ErrorKind::Interrupted.into());
            }
            let n = out.len().min(self.0.len()).min(100);
            out[..n].copy_from_slice(&self.0[..n]);
            self.0.drain(..n);
            Ok(n)
        }
    }
    let layer = tar_of(|b| raw(b, "f", T::Regular, "", b"data"));
    let c = case();
    let applied = apply(
        &mut Interrupting(layer.clone(), false),
        &c.root,
        &ApplyOptions::default(),
    )
    .unwrap();
    assert_eq!(applied.diff_id, Digest::of(&layer));
    assert_eq!(fs::read(c.root.join("f")).unwrap(), b"data");
}

/// Found by the layer fuzzer: a PAX `uid` of 4294967295 (-1 to the kernel) panicked inside
/// `fchown`'s id type, and a GNU binary uid of 2^32 was cut to 0 (root).
#[test]
fn owner_ids_out_of_range_are_refused() {
    let file = |uid: u64, gid: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_path("f").unwrap();
        h.set_entry_type(T::Regular);
        h.set_size(0);
        h.set_mode(0o644);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_cksum();
        h
    };
    for (uid, gid) in [(u64::from(u32::MAX), 0), (0, 1 << 32), (1 << 32, 0)] {
        let layer = tar_of(|b| b.append(&file(uid, gid), &[][..]).unwrap());
        let c = case();
        let err = run(&c, &layer).unwrap_err();
        assert!(
            err.to_string().contains("owner uid or gid out of range"),
            "{err}"
        );
        assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);
    }
    for (key, value) in [("uid", "4294967295"), ("gid", "99999999999")] {
        let layer = tar_of(|b| {
            b.append_pax_extensions([(key, value.as_bytes())]).unwrap();
            b.append(&file(0, 0), &[][..]).unwrap();
        });
        let c = case();
        let err = run(&c, &layer).unwrap_err();
        assert!(err.to_string().contains("\"f\""), "{err}");
        outside_untouched(&c);
    }
    // The largest id a file can have still works.
    let layer = tar_of(|b| {
        b.append(&file(u64::from(u32::MAX) - 1, 7), &[][..])
            .unwrap()
    });
    let c = case();
    run(&c, &layer).unwrap();
    let m = fs::symlink_metadata(c.root.join("f")).unwrap();
    assert_eq!((m.uid(), m.gid()), (u32::MAX - 1, 7));
}

#[test]
fn garbage_is_refused() {
    let c = case();
    let err = run(&c, &[0x55u8; 4096]).unwrap_err();
    assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument, "{err}");
}
