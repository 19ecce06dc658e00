//! File-tree helpers: copying a tree with everything that makes up a layer (owners, modes,
//! times, xattrs, hard links, devices), measuring disk use, and opening paths inside a root.
//!
//! The trees walked here may belong to a running container (its writable layer, a volume
//! it mounts) while this code runs as root on the host, so every walk is anchored on
//! directory descriptors: see [`at`].

pub(crate) mod at;
mod copy;

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::{Component, Path};
use std::sync::atomic::Ordering;

use rustix::fs::{AtFlags, Dir, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// Disk use of a tree: allocated bytes and inodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub size: u64,
    pub inodes: u64,
}

pub use copy::{copy_tree, copy_tree_at};

/// Opens the directory at `path` (the caller's own path, symlinks followed) to start a walk.
pub(crate) fn open_root(path: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Disk use of the tree at `root`: see [`disk_usage_at`].
pub fn disk_usage(root: &Path) -> io::Result<Usage> {
    disk_usage_at(std::os::fd::AsFd::as_fd(&open_root(root)?))
}

/// Disk use of the tree below the directory `root`: allocated bytes and inodes, hard links
/// counted once. Entries that go away during the count are left out: a volume in use
/// changes under it, and the figure is an estimate anyway.
pub fn disk_usage_at(root: BorrowedFd<'_>) -> io::Result<Usage> {
    let mut seen = HashSet::new();
    let mut usage = Usage::default();
    // One open directory per level of the descent, never one per directory seen.
    let mut stack = vec![Dir::new(at::open_dir(root, c".")?)?];
    while let Some(dir) = stack.last_mut() {
        let Some(entry) = dir.next() else {
            stack.pop();
            continue;
        };
        let entry = entry?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        let fd = dir.fd()?;
        let md = match at::stat_at(fd, name) {
            Ok(md) => md,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if md.nlink > 1 && !md.is_dir() && !seen.insert(md.inode()) {
            continue;
        }
        usage.inodes += 1;
        usage.size += md.blocks * 512;
        if md.is_dir() {
            match at::open_dir(fd, name) {
                Ok(sub) => stack.push(Dir::new(sub)?),
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(usage)
}

/// Whether `rel` exists below the directory `root`, symlinks included but none followed:
/// a path that runs through a symlink does not exist here, wherever the link leads. For
/// asking about a path in a tree the caller does not trust.
pub fn exists_beneath(root: BorrowedFd<'_>, rel: &Path) -> io::Result<bool> {
    let Ok(parts) = components(rel) else {
        return Ok(false);
    };
    let Some((last, parents)) = parts.split_last() else {
        return Ok(true);
    };
    let dir = match open_beneath_parts(root, parents) {
        Ok(fd) => fd,
        Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP | Errno::XDEV) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    match rustix::fs::statat(&dir, *last, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(_) => Ok(true),
        Err(Errno::NOENT) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The names along `rel`; `..` is refused (`EXDEV`, as `RESOLVE_BENEATH` says it).
fn components(rel: &Path) -> Result<Vec<&OsStr>, Errno> {
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => parts.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return Err(Errno::XDEV),
        }
    }
    Ok(parts)
}

/// Opens the directory `rel` below `root` as `O_PATH`, following no symlink at all, not
/// even one that would stay inside: for paths the engine itself recorded in a tree someone
/// else can change, where a symlink on the way means the tree changed.
pub(crate) fn open_beneath(root: BorrowedFd<'_>, rel: &Path) -> Result<OwnedFd, Errno> {
    open_beneath_parts(root, &components(rel)?)
}

fn open_beneath_parts(root: BorrowedFd<'_>, parts: &[&OsStr]) -> Result<OwnedFd, Errno> {
    if !NO_OPENAT2.load(Ordering::Relaxed) {
        let rel: std::path::PathBuf = if parts.is_empty() {
            ".".into()
        } else {
            parts.iter().collect()
        };
        match rustix::fs::openat2(
            root,
            &rel,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        ) {
            Err(Errno::NOSYS) | Err(Errno::PERM) => NO_OPENAT2.store(true, Ordering::Relaxed),
            r => return r,
        }
    }
    walk_beneath(root, parts)
}

/// [`open_beneath`] without `openat2`: one name at a time, each with `O_NOFOLLOW`.
fn walk_beneath(root: BorrowedFd<'_>, parts: &[&OsStr]) -> Result<OwnedFd, Errno> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut cur = rustix::fs::openat(root, c".", flags, Mode::empty())?;
    for part in parts {
        cur = rustix::fs::openat(&cur, *part, flags, Mode::empty())?;
    }
    Ok(cur)
}

/// Opens the directory `path` below `root`, resolving every component (symlinks included)
/// as if `root` were `/`: nothing outside `root` can be reached.
pub fn open_dir_in_root(root: &Path, path: &str) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::AsFd;
    let root = fs::File::open(root)?;
    Ok(open_in_root(root.as_fd(), path.as_bytes(), true)?)
}

/// Whether the kernel has `openat2` (Linux 5.6+, and not hidden by a seccomp filter or a
/// tool like valgrind); learnt at the first call.
static NO_OPENAT2: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Opens `path` below the directory `root` as `O_PATH` (a directory when `dir`), resolving
/// every component, symlinks included, as if `root` were `/`: nothing outside it can be
/// reached. `openat2(RESOLVE_IN_ROOT)` where the kernel has it, else the same walk done
/// here a component at a time, never following a link the kernel resolves itself.
pub fn open_in_root(
    root: std::os::fd::BorrowedFd<'_>,
    path: &[u8],
    dir: bool,
) -> Result<std::os::fd::OwnedFd, rustix::io::Errno> {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    use std::sync::atomic::Ordering;

    use rustix::fs::{OFlags, ResolveFlags};
    use rustix::io::Errno;
    let rel: &[u8] = {
        let t = &path[path.iter().take_while(|b| **b == b'/').count()..];
        if t.is_empty() { b"." } else { t }
    };
    let flags = OFlags::PATH
        | OFlags::CLOEXEC
        | if dir {
            OFlags::DIRECTORY
        } else {
            OFlags::empty()
        };
    if !NO_OPENAT2.load(Ordering::Relaxed) {
        let rel_os = OsStr::from_bytes(rel);
        match rustix::fs::openat2(
            root,
            rel_os,
            flags,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            Err(Errno::NOSYS) | Err(Errno::PERM) => NO_OPENAT2.store(true, Ordering::Relaxed),
            r => return r,
        }
    }
    walk_in_root(root, rel, dir)
}

/// [`open_in_root`] without `openat2`.
fn walk_in_root(
    root: std::os::fd::BorrowedFd<'_>,
    rel: &[u8],
    dir: bool,
) -> Result<std::os::fd::OwnedFd, rustix::io::Errno> {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    use rustix::fs::OFlags;
    use rustix::io::Errno;
    // The walk: a stack of open directories from the root down, so `..` pops (never above
    // the root) and each step opens one name with O_NOFOLLOW.
    let mut stack = vec![rustix::fs::openat(
        root,
        c".",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?];
    let mut todo: std::collections::VecDeque<Vec<u8>> = rel
        .split(|b| *b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(<[u8]>::to_vec)
        .collect();
    let mut links = 0;
    let mut last: Option<std::os::fd::OwnedFd> = None;
    while let Some(c) = todo.pop_front() {
        if let Some(fd) = last.take() {
            stack.push(fd);
        }
        if c == b".." {
            if stack.len() > 1 {
                stack.pop();
            }
            continue;
        }
        let cur = stack.last().expect("the root stays");
        let fd = rustix::fs::openat(
            cur,
            OsStr::from_bytes(&c),
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let st = rustix::fs::fstat(&fd)?;
        let kind = rustix::fs::FileType::from_raw_mode(st.st_mode);
        if kind == rustix::fs::FileType::Symlink {
            links += 1;
            if links > 40 {
                return Err(Errno::LOOP);
            }
            let target = rustix::fs::readlinkat(cur, OsStr::from_bytes(&c), Vec::new())?;
            let target = target.as_bytes();
            if target.starts_with(b"/") {
                stack.truncate(1);
            }
            for part in target
                .split(|b| *b == b'/')
                .filter(|p| !p.is_empty() && *p != b".")
                .rev()
            {
                todo.push_front(part.to_vec());
            }
            continue;
        }
        if !todo.is_empty() && kind != rustix::fs::FileType::Directory {
            return Err(Errno::NOTDIR);
        }
        last = Some(fd);
    }
    let fd = match last {
        Some(fd) => fd,
        None => stack.pop().expect("the root stays"),
    };
    if dir {
        let kind = rustix::fs::FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode);
        if kind != rustix::fs::FileType::Directory {
            return Err(Errno::NOTDIR);
        }
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;
    use std::os::unix::fs::{MetadataExt, symlink};

    use super::*;

    /// The walk without openat2 stays below the root whatever the links say, as the kernel's
    /// RESOLVE_IN_ROOT does.
    #[test]
    fn the_walk_stays_in_the_root() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::create_dir_all(t.path().join("a")).unwrap();
        symlink("/a", root.join("abs")).unwrap();
        symlink("../../../../a", root.join("a/up")).unwrap();
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();
        fs::write(root.join("file"), b"").unwrap();
        let r = fs::File::open(&root).unwrap();
        let ino = |fd: &std::os::fd::OwnedFd| rustix::fs::fstat(fd).unwrap().st_ino;
        let md = |p: &Path| fs::metadata(p).unwrap().ino();
        for (path, expect) in [
            ("a/b", root.join("a/b")),
            ("/abs/b", root.join("a/b")),
            ("../../a", root.join("a")),
            // Up as far as it can (the root), then down: not the outside's `a`.
            ("a/up", root.join("a")),
            ("", root.clone()),
        ] {
            let walked = walk_in_root(r.as_fd(), path.as_bytes(), true).unwrap();
            assert_eq!(ino(&walked), md(&expect), "{path}");
            let kernel = open_in_root(r.as_fd(), path.as_bytes(), true).unwrap();
            assert_eq!(ino(&kernel), md(&expect), "{path} (openat2)");
        }
        assert_eq!(
            walk_in_root(r.as_fd(), b"loop1", true).unwrap_err(),
            rustix::io::Errno::LOOP
        );
        assert_eq!(
            walk_in_root(r.as_fd(), b"file/x", true).unwrap_err(),
            rustix::io::Errno::NOTDIR
        );
        assert_eq!(
            walk_in_root(r.as_fd(), b"file", true).unwrap_err(),
            rustix::io::Errno::NOTDIR
        );
        assert!(walk_in_root(r.as_fd(), b"nope/x", true).is_err());
    }

    /// A path through a symlink does not exist below the root, wherever the link leads
    /// (here: out of the root, to a directory that has the file).
    #[test]
    fn existence_follows_no_symlink() {
        let t = tempfile::tempdir().unwrap();
        let (root, outside) = (t.path().join("root"), t.path().join("outside"));
        fs::create_dir_all(root.join("real")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(root.join("real/file"), b"").unwrap();
        fs::write(outside.join("file"), b"").unwrap();
        symlink(&outside, root.join("link")).unwrap();
        symlink("../outside", root.join("up")).unwrap();
        symlink("real", root.join("inside")).unwrap();
        let r = fs::File::open(&root).unwrap();
        for (path, expect) in [
            ("real/file", true),
            ("/real/file", true),
            ("real/./file", true),
            ("", true),
            ("link", true),
            ("link/file", false),
            ("up/file", false),
            ("inside/file", false),
            ("real/file/x", false),
            ("real/nope", false),
            ("nope/file", false),
            ("../outside/file", false),
            ("real/../real/file", false),
        ] {
            let got = exists_beneath(r.as_fd(), Path::new(path)).unwrap();
            assert_eq!(got, expect, "{path}");
        }
        // The walk without openat2 refuses the same.
        let parts = |p: &'static str| components(Path::new(p)).unwrap();
        assert!(walk_beneath(r.as_fd(), &parts("real")).is_ok());
        for path in ["link", "up", "inside", "real/file"] {
            assert!(walk_beneath(r.as_fd(), &parts(path)).is_err(), "{path}");
            assert!(open_beneath(r.as_fd(), Path::new(path)).is_err(), "{path}");
        }
    }

    /// Hard links count once; symlinks are not followed, not even out of the tree.
    #[test]
    fn disk_usage_counts_inodes_once() {
        let t = tempfile::tempdir().unwrap();
        let (root, outside) = (t.path().join("root"), t.path().join("outside"));
        fs::create_dir_all(root.join("d")).unwrap();
        fs::create_dir_all(outside.join("big")).unwrap();
        fs::write(root.join("a"), vec![1u8; 8192]).unwrap();
        fs::hard_link(root.join("a"), root.join("d/b")).unwrap();
        symlink(&outside, root.join("out")).unwrap();
        for i in 0..10 {
            fs::write(outside.join(format!("big/{i}")), vec![1u8; 8192]).unwrap();
        }
        let u = disk_usage(&root).unwrap();
        // a (= d/b), d, out.
        assert_eq!(u.inodes, 3);
        assert!(u.size >= 8192 && u.size < 8192 * 4, "{}", u.size);
    }
}
