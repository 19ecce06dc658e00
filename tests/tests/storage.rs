//! Layered storage seen from outside: shared layers, both drivers, several processes at once,
//! and crashes.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ketch_tests::{Root, TarBuilder, busybox_rootfs, oci_archive};

/// Disk use of a directory tree in bytes, hard links once (`du -s -B1`).
fn du(path: &std::path::Path) -> u64 {
    let o = std::process::Command::new("du")
        .args(["-s", "-B1"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Loads two images on one base. With overlay, the base is stored once; the copy driver
/// (every snapshot a full copy, by design) still shares the base layer's own snapshot and
/// blob, but each child snapshot holds a copy of it.
fn two_images_share_their_base(r: &Root, driver: &str) {
    let base = std::fs::read(busybox_rootfs()).unwrap();
    let a = TarBuilder::new().file("app-a", b"a").finish();
    let b = TarBuilder::new().file("app-b", &[b'b'; 100]).finish();
    let o = r.run_stdin(
        &["load"],
        &oci_archive("a:1", &[(base.clone(), base.clone()), (a.clone(), a)]),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let one = du(&r.path().join("snapshots"));
    let blobs_one = du(&r.path().join("blobs"));
    let o = r.run_stdin(
        &["load"],
        &oci_archive("b:1", &[(base.clone(), base.clone()), (b.clone(), b)]),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let two = du(&r.path().join("snapshots"));
    let blobs_two = du(&r.path().join("blobs"));
    assert_eq!(
        r.ok(&["inspect", "--format", "{{.GraphDriver.Name}}", "b:1"])
            .trim(),
        driver
    );
    assert_eq!(r.count("layers"), 3);
    assert!(
        blobs_two - blobs_one < 200_000,
        "second image added {} bytes of blobs",
        blobs_two - blobs_one
    );
    let base_size = std::fs::metadata(busybox_rootfs()).unwrap().len();
    assert!(one > base_size / 2, "{one}");
    let added = two - one;
    if driver == "overlay" {
        // The second image adds only its own small layer.
        assert!(
            added < 200_000,
            "second image added {added} bytes of snapshots"
        );
    } else {
        // One copy of the base in the new child, not a second base snapshot as well.
        assert!(
            added < base_size * 3 / 2,
            "second image added {added} bytes of snapshots"
        );
    }
    // Removing one image keeps the base for the other.
    r.ok(&["rmi", "a:1"]);
    assert_eq!(r.count("layers"), 2);
    r.ok(&["rmi", "b:1"]);
    assert_eq!(r.count("layers"), 0);
    assert!(r.entries("snapshots").is_empty());
    assert!(r.entries("blobs/sha256").is_empty());
}

#[test]
fn layers_are_shared_overlay() {
    let r = Root::new();
    two_images_share_their_base(&r, "overlay");
}

#[test]
fn layers_are_shared_copy_driver() {
    let r = Root::with_flags(&["--storage-driver", "copy"]);
    two_images_share_their_base(&r, "copy");
}

#[test]
fn copy_driver_round_trips_and_the_driver_is_fixed_per_root() {
    let r = Root::with_flags(&["--storage-driver", "copy"]);
    let id = r.busybox("busybox");
    assert_eq!(
        r.ok(&["inspect", "--format", "{{.GraphDriver.Name}}", "busybox"])
            .trim(),
        "copy"
    );
    let top = TarBuilder::new()
        .file("etc/motd", b"changed\n")
        .file(".wh.linuxrc", b"")
        .finish();
    let o = r.run_stdin(&["import", "-", "top"], &top);
    assert!(o.status.success());
    let tar = r.dir.path().join("b.tar");
    r.ok(&["save", "-o", tar.to_str().unwrap(), "busybox"]);
    let other = Root::new();
    other.ok(&["load", "-i", tar.to_str().unwrap()]);
    assert_eq!(
        other
            .ok(&["inspect", "--format", "{{.Id}}", "busybox"])
            .trim(),
        id
    );
    // The root remembers its driver.
    let o = r
        .cmd_bare()
        .args(["--storage-driver", "overlay", "images"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("uses the copy storage driver"),
        "{err}"
    );
    let o = r
        .cmd_bare()
        .args(["--storage-driver", "zfs", "images"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("unknown storage driver"),
        "{err}"
    );
    // Without the flag, the recorded driver is used.
    assert!(
        r.cmd_bare()
            .arg("images")
            .output()
            .unwrap()
            .status
            .success()
    );
}

#[test]
fn several_processes_share_one_root() {
    let r = Root::new();
    let rootfs = busybox_rootfs();
    let children: Vec<_> = (0..6)
        .map(|i| {
            let mut c = r.cmd();
            if i % 2 == 0 {
                c.args(["import", rootfs.to_str().unwrap(), &format!("img{i}")]);
            } else {
                let layer = r.dir.path().join(format!("layer{i}.tar"));
                std::fs::write(
                    &layer,
                    TarBuilder::new().file(&format!("f{i}"), b"x").finish(),
                )
                .unwrap();
                c.args(["import", layer.to_str().unwrap(), &format!("img{i}")]);
            }
            c.stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let listed = r.ok(&["images", "--format", "{{.Repository}}"]);
    let mut names: Vec<&str> = listed.lines().collect();
    names.sort();
    assert_eq!(names, ["img0", "img1", "img2", "img3", "img4", "img5"]);
    // Three imports of the same tarball: one layer.
    assert_eq!(r.count("layers"), 4);
    assert_eq!(r.count("leases"), 0);
}

/// After a crash: nothing half-made is listed, and the next open removes every orphan.
fn assert_consistent_after_crash(r: &Root, complete: &str) {
    let listed = r.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    // The image is either all there or not there.
    let present = listed.lines().any(|l| l == complete);
    assert_eq!(r.count("leases"), 0, "a dead lease survived the open");
    assert!(r.entries("ingest").is_empty(), "{:?}", r.entries("ingest"));
    assert!(r.entries("tmp").is_empty(), "{:?}", r.entries("tmp"));
    assert!(r.mounts().is_empty(), "{:?}", r.mounts());
    if present {
        let out = r.dir.path().join("check.tar");
        r.ok(&["save", "-o", out.to_str().unwrap(), complete]);
    } else {
        assert_eq!(r.count("images"), 0);
        assert_eq!(r.count("layers"), 0);
        assert_eq!(r.count("snapshots"), 0);
        assert!(
            r.entries("blobs/sha256").is_empty(),
            "orphan blobs: {:?}",
            r.entries("blobs/sha256")
        );
        assert!(
            r.entries("snapshots").is_empty(),
            "orphan snapshots: {:?}",
            r.entries("snapshots")
        );
    }
}

/// A load with three big layers, fed through a pipe that the test controls.
fn big_archive() -> Vec<u8> {
    let layer = |seed: u8| {
        let mut t = TarBuilder::new();
        for i in 0..400 {
            let data: Vec<u8> = (0..20_000u32)
                .map(|j| (j as u8).wrapping_mul(seed).wrapping_add(i as u8))
                .collect();
            t = t.file(&format!("d{seed}/f{i}"), &data);
        }
        t.finish()
    };
    let layers: Vec<(Vec<u8>, Vec<u8>)> = (1..=3).map(|s| (layer(s), layer(s))).collect();
    oci_archive("big:1", &layers)
}

#[test]
fn kill_during_load_leaves_nothing_behind() {
    let archive = big_archive();
    // Killed while the archive streams in: after part of it, and after all of it with the
    // stream still open (every blob stored, no image yet).
    for fed in [archive.len() / 3, archive.len()] {
        let r = Root::new();
        r.ok(&["images"]);
        let mut child = r
            .cmd()
            .arg("load")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        std::io::Write::write_all(&mut stdin, &archive[..fed]).unwrap();
        // Wait until the load holds its lease and has stored something.
        let start = Instant::now();
        while r.count("lease_resources") == 0 && start.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(r.count("lease_resources") > 0, "the load never started");
        std::thread::sleep(Duration::from_millis(200));
        child.kill().unwrap();
        child.wait().unwrap();
        drop(stdin);
        assert!(
            r.count("leases") > 0,
            "the killed load's lease should still be recorded"
        );
        assert_consistent_after_crash(&r, "big:1");
        assert_eq!(r.count("images"), 0);
    }
}

#[test]
fn kill_at_any_point_of_unpacking_leaves_a_consistent_root() {
    let archive = big_archive();
    let path = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(path.path(), &archive).unwrap();
    for delay_ms in [30u64, 120, 300, 600] {
        let r = Root::new();
        let mut child = r
            .cmd()
            .args(["load", "-i"])
            .arg(path.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        child.wait().unwrap();
        assert_consistent_after_crash(&r, "big:1");
    }
}

/// A process killed while probing for overlayfs leaves its probe (and maybe its mount); the
/// next open removes both, and leaves a live process's probe alone.
#[test]
fn a_dead_process_overlay_probe_is_removed_at_open() {
    let r = Root::new();
    r.ok(&["images"]);
    let dead = r.path().join("tmp/overlay-probe-999999999-1-abcdef");
    let merged = dead.join("merged");
    std::fs::create_dir_all(&merged).unwrap();
    std::fs::create_dir_all(dead.join("upper/etc")).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "probe", merged.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(st.success());
    let me = std::process::id();
    let start = std::fs::read_to_string(format!("/proc/{me}/stat")).unwrap();
    let start = start[start.rfind(')').unwrap() + 2..]
        .split(' ')
        .nth(19)
        .unwrap()
        .to_string();
    let live = format!("overlay-probe-{me}-{start}-012345");
    std::fs::create_dir_all(r.path().join("tmp").join(&live)).unwrap();

    r.ok(&["images"]);
    assert!(r.mounts().is_empty(), "{:?}", r.mounts());
    assert_eq!(r.entries("tmp"), [live]);
}
