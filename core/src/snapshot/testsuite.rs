//! Conformance suite every driver passes, after containerd's `snapshots/testsuite`. Each case
//! gets a fresh database and root in its own temp directory and mounts only under it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::db::Db;
use crate::mount::TempMount;

pub(crate) struct Env<S> {
    pub dir: tempfile::TempDir,
    pub sn: S,
}

impl<S: Snapshotter> Env<S> {
    pub fn new(make: fn(PathBuf, Arc<Db>) -> S) -> Env<S> {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(&dir.path().join("ketch.db")).unwrap());
        let sn = make(dir.path().join("snapshots"), db);
        Env { dir, sn }
    }

    fn mnt(&self, mounts: &[Mount]) -> TempMount {
        TempMount::new(mounts, &self.dir.path().join("mnt")).unwrap()
    }

    /// prepare → write with `f` → commit; returns nothing, panics on failure.
    pub fn layer(&self, name: &str, parent: Option<&str>, f: impl FnOnce(&Path)) {
        let key = format!("{name}-active");
        let mounts = self.sn.prepare(&key, parent).unwrap();
        {
            let m = self.mnt(&mounts);
            f(m.path());
        }
        self.sn.commit(name, &key).unwrap();
    }

    /// Runs `f` on a read-only view of `parent`.
    pub fn with_view(&self, parent: &str, f: impl FnOnce(&Path)) {
        let key = format!("view-{}", crate::util::random_hex(4));
        let mounts = self.sn.view(&key, Some(parent)).unwrap();
        {
            let m = self.mnt(&mounts);
            f(m.path());
        }
        self.sn.remove(&key).unwrap();
    }
}

fn write(p: &Path, data: &str) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap()
}

pub(crate) fn basic<S: Snapshotter>(e: Env<S>) {
    e.layer("l1", None, |r| {
        write(&r.join("a"), "a1");
        write(&r.join("dir/b"), "b1");
        fs::set_permissions(r.join("dir"), fs::Permissions::from_mode(0o700)).unwrap();
    });
    let info = e.sn.stat("l1").unwrap();
    assert_eq!(info.kind, Kind::Committed);
    assert_eq!(info.parent, None);
    assert!(matches!(
        e.sn.stat("l1-active"),
        Err(SnapshotError::NotFound { .. })
    ));

    e.layer("l2", Some("l1"), |r| {
        assert_eq!(read(&r.join("a")), "a1");
        write(&r.join("a"), "a2");
        write(&r.join("dir/c"), "c2");
    });
    assert_eq!(e.sn.stat("l2").unwrap().parent.as_deref(), Some("l1"));
    e.with_view("l2", |r| {
        assert_eq!(read(&r.join("a")), "a2");
        assert_eq!(read(&r.join("dir/b")), "b1");
        assert_eq!(read(&r.join("dir/c")), "c2");
        let mode = fs::metadata(r.join("dir")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    });
    // The lower layer is untouched by the upper one's writes.
    e.with_view("l1", |r| {
        assert_eq!(read(&r.join("a")), "a1");
        assert!(!r.join("dir/c").exists());
    });
}

pub(crate) fn transitivity<S: Snapshotter>(e: Env<S>) {
    e.layer("l1", None, |r| write(&r.join("f1"), "1"));
    e.layer("l2", Some("l1"), |r| write(&r.join("f2"), "2"));
    e.layer("l3", Some("l2"), |r| {
        write(&r.join("f3"), "3");
        fs::remove_file(r.join("f1")).unwrap();
    });
    e.with_view("l3", |r| {
        assert!(!r.join("f1").exists());
        assert_eq!(read(&r.join("f2")), "2");
        assert_eq!(read(&r.join("f3")), "3");
    });
    e.with_view("l2", |r| assert_eq!(read(&r.join("f1")), "1"));
}

pub(crate) fn view_readonly<S: Snapshotter>(e: Env<S>) {
    e.layer("l1", None, |r| write(&r.join("f"), "x"));
    let mounts = e.sn.view("v", Some("l1")).unwrap();
    assert!(
        mounts
            .iter()
            .all(|m| m.is_readonly() || m.option("upperdir").is_none())
    );
    {
        let m = e.mnt(&mounts);
        let err = fs::write(m.path().join("new"), "y").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    }
    assert_eq!(e.sn.stat("v").unwrap().kind, Kind::View);
    // A view cannot be committed.
    assert!(matches!(
        e.sn.commit("c", "v"),
        Err(SnapshotError::FailedPrecondition { .. })
    ));
    e.sn.remove("v").unwrap();
}

pub(crate) fn remove_directory_in_lower_layer<S: Snapshotter>(e: Env<S>) {
    e.layer("l1", None, |r| {
        write(&r.join("lib/deep/x/file"), "x");
        write(&r.join("keep"), "k");
    });
    e.layer("l2", Some("l1"), |r| {
        fs::remove_dir_all(r.join("lib")).unwrap()
    });
    e.with_view("l2", |r| {
        assert!(!r.join("lib").exists());
        assert_eq!(read(&r.join("keep")), "k");
    });
}

pub(crate) fn whiteouts_and_opaque_directories<S: Snapshotter>(e: Env<S>) {
    e.layer("l1", None, |r| {
        write(&r.join("d/old1"), "1");
        write(&r.join("d/old2"), "2");
        write(&r.join("gone"), "g");
    });
    e.layer("l2", Some("l1"), |r| {
        // Replace a directory wholesale, and delete a file.
        fs::remove_dir_all(r.join("d")).unwrap();
        write(&r.join("d/new"), "n");
        fs::remove_file(r.join("gone")).unwrap();
    });
    e.layer("l3", Some("l2"), |r| write(&r.join("gone"), "back"));
    e.with_view("l2", |r| {
        let names: Vec<_> = fs::read_dir(r.join("d"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("new")]);
        assert!(!r.join("gone").exists());
    });
    e.with_view("l3", |r| assert_eq!(read(&r.join("gone")), "back"));
}

pub(crate) fn layers_128<S: Snapshotter>(e: Env<S>) {
    let mut parent: Option<String> = None;
    for i in 0..128 {
        let name = format!("layer-{i}");
        e.layer(&name, parent.as_deref(), |r| {
            write(&r.join(format!("f{i}")), &i.to_string())
        });
        parent = Some(name);
    }
    e.with_view("layer-127", |r| {
        for i in 0..128 {
            assert_eq!(read(&r.join(format!("f{i}"))), i.to_string());
        }
    });
    // A container on top of all of them mounts too.
    let mounts = e.sn.prepare("top", Some("layer-127")).unwrap();
    let m = e.mnt(&mounts);
    write(&m.path().join("f0"), "changed");
    assert_eq!(read(&m.path().join("f0")), "changed");
}

pub(crate) fn keys_are_unique<S: Snapshotter>(e: Env<S>) {
    e.sn.prepare("k", None).unwrap();
    assert!(matches!(
        e.sn.prepare("k", None),
        Err(SnapshotError::AlreadyExists { .. })
    ));
    assert!(matches!(
        e.sn.view("k", None),
        Err(SnapshotError::AlreadyExists { .. })
    ));
    e.sn.prepare("k2", None).unwrap();
    e.sn.commit("c", "k").unwrap();
    assert!(matches!(
        e.sn.commit("c", "k2"),
        Err(SnapshotError::AlreadyExists { .. })
    ));
    assert!(matches!(
        e.sn.commit("c2", "missing"),
        Err(SnapshotError::NotFound { .. })
    ));
}

pub(crate) fn parent_must_be_committed<S: Snapshotter>(e: Env<S>) {
    e.sn.prepare("active", None).unwrap();
    assert!(matches!(
        e.sn.prepare("child", Some("active")),
        Err(SnapshotError::FailedPrecondition { .. })
    ));
    assert!(matches!(
        e.sn.prepare("child", Some("nope")),
        Err(SnapshotError::NotFound { .. })
    ));
    // Nothing half-made is left behind by the refusals.
    let mut n = 0;
    e.sn.walk(&mut |_| n += 1).unwrap();
    assert_eq!(n, 1);
    assert_eq!(
        fs::read_dir(e.dir.path().join("snapshots"))
            .unwrap()
            .count(),
        1
    );
}

pub(crate) fn remove_refuses_parents<S: Snapshotter>(e: Env<S>) {
    e.layer("l1", None, |r| write(&r.join("f"), "x"));
    e.sn.prepare("c", Some("l1")).unwrap();
    assert!(matches!(
        e.sn.remove("l1"),
        Err(SnapshotError::FailedPrecondition { .. })
    ));
    e.sn.remove("c").unwrap();
    e.sn.remove("l1").unwrap();
    assert!(matches!(
        e.sn.remove("l1"),
        Err(SnapshotError::NotFound { .. })
    ));
    assert_eq!(
        fs::read_dir(e.dir.path().join("snapshots"))
            .unwrap()
            .count(),
        0
    );
}

pub(crate) fn usage_counts_own_changes<S: Snapshotter>(e: Env<S>) {
    e.layer("l1", None, |r| write(&r.join("big"), &"x".repeat(1 << 20)));
    let u = e.sn.usage("l1").unwrap();
    assert!(u.size >= 1 << 20, "{u:?}");
    assert!(u.inodes >= 1, "{u:?}");
    let mounts = e.sn.prepare("a", Some("l1")).unwrap();
    {
        let m = e.mnt(&mounts);
        write(&m.path().join("small"), "s");
    }
    assert!(e.sn.usage("a").unwrap().inodes >= 1);
}

pub(crate) fn walk_lists_everything<S: Snapshotter>(e: Env<S>) {
    e.layer("l1", None, |_| {});
    e.sn.prepare("a", Some("l1")).unwrap();
    e.sn.view("v", Some("l1")).unwrap();
    let mut seen = Vec::new();
    e.sn.walk(&mut |i| seen.push((i.name.clone(), i.kind)))
        .unwrap();
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        seen,
        vec![
            ("a".into(), Kind::Active),
            ("l1".into(), Kind::Committed),
            ("v".into(), Kind::View)
        ]
    );
}

pub(crate) fn cleanup_removes_orphans<S: Snapshotter>(e: Env<S>) {
    e.layer("l1", None, |r| write(&r.join("f"), "x"));
    let root = e.dir.path().join("snapshots");
    // What a crash can leave: a directory renamed into place whose transaction never
    // committed, a temp directory of a dead process, a half-removed directory.
    fs::create_dir_all(root.join("999/fs")).unwrap();
    fs::create_dir_all(root.join("tmp-1-1-abcdef/fs")).unwrap();
    fs::create_dir_all(root.join("rm-5-abcd/fs")).unwrap();
    // An orphan that cannot go (a mount in it) is an error that names it, and stays for
    // the next cleanup.
    let stuck = root.join("998/fs");
    fs::create_dir_all(&stuck).unwrap();
    crate::testutil::mount_tmpfs(&stuck);
    let res = e.sn.cleanup();
    crate::mount::unmount(&stuck).unwrap();
    let err = res.unwrap_err().to_string();
    assert!(
        err.contains(&root.join("998").display().to_string()),
        "{err}"
    );
    assert!(root.join("998").exists());
    e.sn.cleanup().unwrap();
    let left: Vec<_> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
    e.with_view("l1", |r| assert_eq!(read(&r.join("f")), "x"));
}

/// The numbered directories below the snapshots root: one per snapshot.
fn snapshot_dirs<S>(e: &Env<S>) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(e.dir.path().join("snapshots"))
        .unwrap()
        .map(|d| d.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    v.sort();
    v
}

/// A view is read-only whatever its depth: of nothing, of one layer, of a chain.
pub(crate) fn views_of_any_depth_are_readonly<S: Snapshotter>(e: Env<S>) {
    e.layer("l1", None, |r| write(&r.join("one"), "1"));
    e.layer("l2", Some("l1"), |r| write(&r.join("two"), "2"));
    for (key, parent, seen) in [
        ("v0", None, vec![]),
        ("v1", Some("l1"), vec!["one"]),
        ("v2", Some("l2"), vec!["one", "two"]),
    ] {
        let mounts = e.sn.view(key, parent).unwrap();
        {
            let m = e.mnt(&mounts);
            let mut names: Vec<String> = fs::read_dir(m.path())
                .unwrap()
                .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            assert_eq!(names, seen, "{key}");
            let err = fs::write(m.path().join("new"), "y").unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{key}: {err}");
        }
        e.sn.remove(key).unwrap();
    }
}

/// `mounts` gives again what `prepare` and `view` gave; a committed snapshot has none.
pub(crate) fn mounts_are_those_made<S: Snapshotter>(e: Env<S>) {
    e.layer("l1", None, |r| write(&r.join("f"), "x"));
    let active = e.sn.prepare("a", Some("l1")).unwrap();
    assert!(!active.is_empty());
    assert_eq!(e.sn.mounts("a").unwrap(), active);
    let view = e.sn.view("v", Some("l1")).unwrap();
    assert_eq!(e.sn.mounts("v").unwrap(), view);
    assert!(matches!(
        e.sn.mounts("l1"),
        Err(SnapshotError::FailedPrecondition { .. })
    ));
    assert!(matches!(
        e.sn.mounts("nosuch"),
        Err(SnapshotError::NotFound { .. })
    ));
}

/// A committed snapshot's disk use is counted once and kept; an active one's follows its
/// writes.
pub(crate) fn usage_is_kept_once_committed<S: Snapshotter>(e: Env<S>) {
    e.layer("l1", None, |r| write(&r.join("big"), &"x".repeat(1 << 20)));
    let before = e.sn.usage("l1").unwrap();
    // Written behind the driver's back (nothing does this but the test): not counted.
    let dir = snapshot_dirs(&e).pop().unwrap();
    write(&dir.join("fs/more"), &"y".repeat(1 << 20));
    assert_eq!(e.sn.usage("l1").unwrap(), before);
    let mounts = e.sn.prepare("a", Some("l1")).unwrap();
    let m = e.mnt(&mounts);
    write(&m.path().join("small"), "s");
    let small = e.sn.usage("a").unwrap();
    write(&m.path().join("big2"), &"z".repeat(1 << 20));
    let big = e.sn.usage("a").unwrap();
    assert!(big.size >= small.size + (1 << 20), "{small:?} then {big:?}");
}

/// A snapshot whose directory is already gone (a crash between the two) is removed all the
/// same; one whose directory cannot be moved aside stays recorded, and the error says why.
pub(crate) fn remove_keeps_the_record_unless_the_directory_goes<S: Snapshotter>(e: Env<S>) {
    e.sn.prepare("gone", None).unwrap();
    let gone = snapshot_dirs(&e).pop().unwrap();
    fs::remove_dir_all(&gone).unwrap();
    e.sn.remove("gone").unwrap();
    assert!(matches!(
        e.sn.stat("gone"),
        Err(SnapshotError::NotFound { .. })
    ));
    e.sn.prepare("held", None).unwrap();
    let held = snapshot_dirs(&e).pop().unwrap();
    // A mount point cannot be renamed (EBUSY): the directory bound onto itself.
    Mount::bind(&held, false).mount(&held).unwrap();
    let err = e.sn.remove("held");
    let _ = rustix::mount::unmount(&held, rustix::mount::UnmountFlags::DETACH);
    let err = err.unwrap_err();
    assert!(err.to_string().contains("held"), "{err}");
    assert_eq!(e.sn.stat("held").unwrap().kind, Kind::Active);
    e.sn.remove("held").unwrap();
    assert!(!held.exists());
}

/// Instantiates every case for one driver.
macro_rules! suite {
    ($make:expr) => {
        use crate::snapshot::testsuite::{self, Env};
        #[test]
        fn basic() {
            testsuite::basic(Env::new($make))
        }
        #[test]
        fn transitivity() {
            testsuite::transitivity(Env::new($make))
        }
        #[test]
        fn view_readonly() {
            testsuite::view_readonly(Env::new($make))
        }
        #[test]
        fn remove_directory_in_lower_layer() {
            testsuite::remove_directory_in_lower_layer(Env::new($make))
        }
        #[test]
        fn whiteouts_and_opaque_directories() {
            testsuite::whiteouts_and_opaque_directories(Env::new($make))
        }
        #[test]
        fn layers_128() {
            testsuite::layers_128(Env::new($make))
        }
        #[test]
        fn keys_are_unique() {
            testsuite::keys_are_unique(Env::new($make))
        }
        #[test]
        fn parent_must_be_committed() {
            testsuite::parent_must_be_committed(Env::new($make))
        }
        #[test]
        fn remove_refuses_parents() {
            testsuite::remove_refuses_parents(Env::new($make))
        }
        #[test]
        fn usage_counts_own_changes() {
            testsuite::usage_counts_own_changes(Env::new($make))
        }
        #[test]
        fn walk_lists_everything() {
            testsuite::walk_lists_everything(Env::new($make))
        }
        #[test]
        fn cleanup_removes_orphans() {
            testsuite::cleanup_removes_orphans(Env::new($make))
        }
        #[test]
        fn views_of_any_depth_are_readonly() {
            testsuite::views_of_any_depth_are_readonly(Env::new($make))
        }
        #[test]
        fn mounts_are_those_made() {
            testsuite::mounts_are_those_made(Env::new($make))
        }
        #[test]
        fn usage_is_kept_once_committed() {
            testsuite::usage_is_kept_once_committed(Env::new($make))
        }
        #[test]
        fn remove_keeps_the_record_unless_the_directory_goes() {
            testsuite::remove_keeps_the_record_unless_the_directory_goes(Env::new($make))
        }
    };
}
pub(crate) use suite;

mod overlay {
    super::suite!(|root, db| crate::snapshot::Overlay::new(root, db).unwrap());
}

mod copy {
    super::suite!(|root, db| crate::snapshot::Copy::new(root, db).unwrap());
}

/// The engine uses the drivers through `AnySnapshotter`: every case again through it (but the
/// long one), for each driver.
macro_rules! through_any {
    ($name:ident, $variant:ident, $driver:literal) => {
        mod $name {
            use crate::snapshot::testsuite::{self, Env};
            use crate::snapshot::{AnySnapshotter, Copy, Overlay};
            fn make(root: std::path::PathBuf, db: std::sync::Arc<crate::db::Db>) -> AnySnapshotter {
                AnySnapshotter::$variant($variant::new(root, db).unwrap())
            }
            #[test]
            fn cases() {
                let _ = (Copy::new, Overlay::new);
                assert_eq!(Env::new(make).sn.driver_name(), $driver);
                testsuite::basic(Env::new(make));
                testsuite::view_readonly(Env::new(make));
                testsuite::views_of_any_depth_are_readonly(Env::new(make));
                testsuite::remove_refuses_parents(Env::new(make));
                testsuite::usage_counts_own_changes(Env::new(make));
                testsuite::usage_is_kept_once_committed(Env::new(make));
                testsuite::walk_lists_everything(Env::new(make));
                testsuite::cleanup_removes_orphans(Env::new(make));
                testsuite::mounts_are_those_made(Env::new(make));
                testsuite::remove_keeps_the_record_unless_the_directory_goes(Env::new(make));
            }
        }
    };
}

through_any!(any_overlay, Overlay, "overlay");
through_any!(any_copy, Copy, "copy");
