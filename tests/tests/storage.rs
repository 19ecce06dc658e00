//! Layered storage seen from outside: shared layers, both drivers, several processes at once,
//! and crashes.

use std::path::Path;
use std::process::{Command, Stdio};

use ketch_tests::hostile::Reaped;
use ketch_tests::{Root, TarBuilder, busybox_rootfs, digest, oci_archive, wait_until};

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
    // Without the flag, the recorded driver is used: what is stored reads back through it,
    // and what is made now is made by it.
    assert_eq!(
        r.ok_bare(&["images", "-q", "--no-trunc", "busybox"]).trim(),
        id
    );
    r.ok_bare(&["tag", "busybox", "again"]);
    assert_eq!(
        r.ok_bare(&["inspect", "--format", "{{.GraphDriver.Name}}", "again"])
            .trim(),
        "copy"
    );
    let o = r
        .cmd_bare()
        .args(["import", "-", "later"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let o = feed(o, &TarBuilder::new().file("later", b"x").finish());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        r.ok_bare(&["inspect", "--format", "{{.GraphDriver.Name}}", "later"])
            .trim(),
        "copy"
    );
    assert_eq!(meta(&r, "storage_driver"), "copy");
}

/// Writes `input` to a spawned child's stdin, closes it and collects the child.
fn feed(mut child: std::process::Child, input: &[u8]) -> std::process::Output {
    let mut stdin = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, input).unwrap();
    drop(stdin);
    child.wait_with_output().unwrap()
}

/// A value of the root's `meta` table.
fn meta(r: &Root, key: &str) -> String {
    let conn = rusqlite::Connection::open(r.path().join("ketch.db")).unwrap();
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
        row.get(0)
    })
    .unwrap()
}

/// An integer the root's database answers to `sql`.
fn query(r: &Root, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(r.path().join("ketch.db")).unwrap();
    conn.query_row(sql, [], |row| row.get(0)).unwrap()
}

trait Bare {
    /// Runs without the root's extra flags and requires success; returns stdout.
    fn ok_bare(&self, args: &[&str]) -> String;
}

impl Bare for Root {
    fn ok_bare(&self, args: &[&str]) -> String {
        let o = self.cmd_bare().args(args).output().unwrap();
        assert!(
            o.status.success(),
            "ketch {args:?} failed ({}):\n{}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }
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

/// After a crash the one outcome allowed: the killed operation's lease outlived it, the next
/// open collects everything it held (no image, layer, snapshot, blob, temporary file or
/// mount is left), and the next load of the whole archive works.
fn assert_collected_after_crash(r: &Root, archive: &[u8]) {
    assert!(
        r.count("leases") > 0,
        "the killed operation's lease should still be recorded"
    );
    assert_eq!(r.ok(&["images", "-q"]), "", "a half-made image is listed");
    for table in ["leases", "lease_resources", "images", "layers", "snapshots"] {
        assert_eq!(r.count(table), 0, "rows of {table} left after the open");
    }
    for dir in ["blobs/sha256", "snapshots", "ingest", "tmp"] {
        assert!(r.entries(dir).is_empty(), "{dir}: {:?}", r.entries(dir));
    }
    assert!(r.mounts().is_empty(), "{:?}", r.mounts());
    let o = r.run_stdin(&["load"], archive);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "Loaded image: big:1"
    );
    assert_eq!(r.count("layers"), 3);
    let out = r.dir.path().join("check.tar");
    r.ok(&["save", "-o", out.to_str().unwrap(), "big:1"]);
}

/// A layer of 400 files of 20 kB: `d{seed}/f{i}`.
fn big_layer(seed: u8) -> Vec<u8> {
    let mut t = TarBuilder::new();
    for i in 0..400 {
        let data: Vec<u8> = (0..20_000u32)
            .map(|j| (j as u8).wrapping_mul(seed).wrapping_add(i as u8))
            .collect();
        t = t.file(&format!("d{seed}/f{i}"), &data);
    }
    t.finish()
}

/// An OCI archive of three big layers (8 MB each), and the layers.
fn big_archive() -> (Vec<u8>, Vec<Vec<u8>>) {
    let layers: Vec<Vec<u8>> = (1..=3).map(big_layer).collect();
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = layers.iter().map(|l| (l.clone(), l.clone())).collect();
    (oci_archive("big:1", &pairs), layers)
}

/// Where the data of entry `name` lies in the tarball `archive`.
fn entry_data(archive: &[u8], name: &str) -> std::ops::Range<usize> {
    let mut a = tar::Archive::new(archive);
    for e in a.entries().unwrap() {
        let e = e.unwrap();
        if e.path().unwrap().to_str() == Some(name) {
            let start = e.raw_file_position() as usize;
            return start..start + e.size() as usize;
        }
    }
    panic!("{name} is not in the archive");
}

/// Whether process `pid` holds a file below `dir` open (an anonymous ingest file reads
/// `DIR/#N (deleted)`).
fn has_open_file_below(pid: u32, dir: &Path) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten()
        .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t.starts_with(dir)))
}

/// Blobs the leases hold.
fn leased_blobs(r: &Root) -> i64 {
    query(
        r,
        "SELECT COUNT(*) FROM lease_resources WHERE kind = 'blob'",
    )
}

/// `ketch load` reading from a pipe the test holds.
fn load_from_pipe(r: &Root) -> (Reaped, std::process::ChildStdin) {
    let mut child = r
        .cmd()
        .arg("load")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    (Reaped(child), stdin)
}

/// A load killed while it ingests the second layer's blob: half of that blob sent, the
/// manifest, config and first layer stored, the second one's ingest file open.
#[test]
fn kill_while_a_blob_is_ingested_leaves_nothing_behind() {
    let (archive, layers) = big_archive();
    let second = entry_data(
        &archive,
        &format!("blobs/sha256/{}", digest(&layers[1]).hex()),
    );
    let r = Root::new();
    r.ok(&["images"]);
    let (mut child, mut stdin) = load_from_pipe(&r);
    let cut = second.start + second.len() / 2;
    std::io::Write::write_all(&mut stdin, &archive[..cut]).unwrap();
    let pid = child.0.id();
    wait_until(
        "the load to store three blobs and open the fourth one's ingest file",
        60,
        || leased_blobs(&r) == 3 && has_open_file_below(pid, &r.path().join("ingest")),
    );
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    drop(stdin);
    assert_eq!(r.count("snapshots"), 0);
    assert_collected_after_crash(&r, &archive);
}

/// A load killed with every blob stored and the stream still open: it cannot have begun to
/// unpack, it waits for the end of its input.
#[test]
fn kill_with_every_blob_stored_leaves_nothing_behind() {
    let (archive, _) = big_archive();
    let r = Root::new();
    r.ok(&["images"]);
    let (mut child, mut stdin) = load_from_pipe(&r);
    std::io::Write::write_all(&mut stdin, &archive).unwrap();
    let pid = child.0.id();
    // Manifest, config and three layers.
    wait_until("the load to store all five blobs", 60, || {
        leased_blobs(&r) == 5 && !has_open_file_below(pid, &r.path().join("ingest"))
    });
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    drop(stdin);
    assert_eq!(r.count("snapshots"), 0);
    assert_eq!(r.entries("blobs/sha256").len(), 5);
    assert_collected_after_crash(&r, &archive);
}

/// The state field of `/proc/PID/stat` (`T`: stopped).
fn proc_state(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat[stat.rfind(')').unwrap() + 2..].chars().next().unwrap()
}

/// A load killed while it unpacks: caught stopped with its first layer committed and the
/// next one half-applied in an active snapshot, then killed.
#[test]
fn kill_while_unpacking_leaves_nothing_behind() {
    let (archive, _) = big_archive();
    let path = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(path.path(), &archive).unwrap();
    let r = Root::new();
    r.ok(&["images"]);
    let mut child = Reaped(
        r.cmd()
            .args(["load", "-i"])
            .arg(path.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = child.0.id();
    let active = "SELECT COUNT(*) FROM snapshots WHERE kind = 'active' AND key LIKE 'extract-%'";
    wait_until("the load to be caught between two layers", 120, || {
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "the load finished before it was caught unpacking"
        );
        unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
        wait_until("the load to stop", 20, || proc_state(pid) == 'T');
        // A process stopped in the middle of a write may leave the database unreadable for
        // the moment (SQLITE_PROTOCOL): then it is let go on and caught again.
        let caught = (|| {
            let conn = rusqlite::Connection::open_with_flags(
                r.path().join("ketch.db"),
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .ok()?;
            let n = |sql: &str| conn.query_row(sql, [], |row| row.get::<_, i64>(0)).ok();
            Some(
                n("SELECT COUNT(*) FROM layers")? >= 1
                    && n(active)? == 1
                    && n("SELECT COUNT(*) FROM images")? == 0,
            )
        })()
        .unwrap_or(false);
        if !caught {
            unsafe { libc::kill(pid as i32, libc::SIGCONT) };
        }
        caught
    });
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    assert_collected_after_crash(&r, &archive);
}

/// An import killed half-way through its layer, read from a pipe: the files of the half it
/// was sent are in its active snapshot when it dies.
#[test]
fn kill_while_importing_leaves_nothing_behind() {
    let (archive, layers) = big_archive();
    let r = Root::new();
    r.ok(&["images"]);
    let mut child = r
        .cmd()
        .args(["import", "-", "half"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut child = Reaped(child);
    std::io::Write::write_all(&mut stdin, &layers[0][..layers[0].len() / 2]).unwrap();
    // f100 of the 200 files sent.
    let applied = |r: &Root| {
        r.entries("snapshots").iter().any(|id| {
            r.path()
                .join("snapshots")
                .join(id)
                .join("fs/d1/f100")
                .exists()
        })
    };
    wait_until(
        "the import to apply the first half of its layer",
        60,
        || applied(&r),
    );
    assert_eq!(
        query(&r, "SELECT COUNT(*) FROM snapshots WHERE kind = 'active'"),
        1
    );
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    drop(stdin);
    assert!(
        applied(&r),
        "the half-applied snapshot should be on disk until the next open"
    );
    assert_collected_after_crash(&r, &archive);
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

/// A tmpfs of the test's own, unmounted (with whatever is mounted on it) when dropped.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn new() -> Tmpfs {
        let dir = tempfile::Builder::new()
            .prefix("ketch-test-fs-")
            .tempdir()
            .unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256m", "ketch-test-fs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs");
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let c = std::ffi::CString::new(self.0.path().as_os_str().as_encoded_bytes()).unwrap();
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// Mounts an overlay (its layers on `under`) at `at`: a file system overlayfs refuses as
/// an upper layer.
fn mount_overlay(under: &Path, at: &Path) {
    for d in ["lower", "upper", "work"] {
        std::fs::create_dir_all(under.join(d)).unwrap();
    }
    std::fs::create_dir_all(at).unwrap();
    let o = Command::new("mount")
        .args(["-t", "overlay", "ketch-test-overlay", "-o"])
        .arg(format!(
            "lowerdir={},upperdir={},workdir={}",
            under.join("lower").display(),
            under.join("upper").display(),
            under.join("work").display()
        ))
        .arg(at)
        .output()
        .unwrap();
    assert!(o.status.success(), "mount overlay: {o:?}");
}

/// A new root on a file system that cannot be an overlay upper layer (an overlay mount:
/// the kernel says "not supported as upperdir") gets the copy driver, records it, and
/// images and containers work on it; overlay asked for there is refused by name.
#[test]
fn a_root_where_overlay_cannot_work_falls_back_to_copy() {
    let fs = Tmpfs::new();
    let r = Root::new();
    mount_overlay(fs.0.path(), &r.path());
    let id = r.busybox("busybox");
    assert_eq!(meta(&r, "storage_driver"), "copy");
    assert_eq!(
        r.ok(&["inspect", "--format", "{{.GraphDriver.Name}}", "busybox"])
            .trim(),
        "copy"
    );
    assert_eq!(r.ok(&["images", "-q", "--no-trunc"]).trim(), id);
    // A container's changes stay in its own copy; the image is unchanged.
    r.ok(&[
        "run",
        "--name",
        "c",
        "busybox",
        "sh",
        "-c",
        "echo changed > /etc/motd && rm /bin/ls",
    ]);
    assert_eq!(
        r.ok(&["inspect", "--format", "{{.Driver}}", "c"]).trim(),
        "copy"
    );
    assert_eq!(
        r.ok(&["diff", "c"]),
        "C /bin\nD /bin/ls\nC /etc\nC /etc/motd\n"
    );
    assert_eq!(
        r.ok(&[
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "ls /bin/ls; grep -q changed /etc/motd || echo unchanged",
        ]),
        "/bin/ls\nunchanged\n"
    );
    r.ok(&["rm", "c"]);
    r.ok(&["rmi", "busybox"]);
    assert!(
        r.entries("snapshots").is_empty(),
        "{:?}",
        r.entries("snapshots")
    );

    // Overlay asked for on such a file system: refused, naming the root.
    let other = Root::with_flags(&["--storage-driver", "overlay"]);
    mount_overlay(&fs.0.path().join("other"), &other.path());
    let (code, err) = other.fails(&["images"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "overlayfs does not work under {}; use --storage-driver copy",
            other.path().display()
        )),
        "{err}"
    );
}
