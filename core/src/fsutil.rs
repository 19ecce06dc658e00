//! File-tree helpers: copying a tree with everything that makes up a layer (owners, modes,
//! times, xattrs, hard links, devices), and measuring disk use.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use rustix::fs::{AtFlags, CWD, Mode, Timespec, Timestamps};

use crate::snapshot::Usage;

/// Disk use of a tree: allocated bytes and inodes, hard links counted once.
pub fn disk_usage(root: &Path) -> io::Result<Usage> {
    let mut seen = HashSet::new();
    let mut usage = Usage::default();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let md = entry.metadata()?;
            if md.nlink() > 1 && !md.is_dir() && !seen.insert((md.dev(), md.ino())) {
                continue;
            }
            usage.inodes += 1;
            usage.size += md.blocks() * 512;
            if md.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Ok(usage)
}

fn times(md: &fs::Metadata) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: md.atime(),
            tv_nsec: md.atime_nsec() as _,
        },
        last_modification: Timespec {
            tv_sec: md.mtime(),
            tv_nsec: md.mtime_nsec() as _,
        },
    }
}

/// Copies the extended attributes of `src` to `dst`, neither followed if a symlink.
pub fn copy_xattrs(src: &Path, dst: &Path) -> io::Result<()> {
    let mut names = vec![0u8; 4096];
    let n = match rustix::fs::llistxattr(src, &mut names) {
        Ok(n) => n,
        Err(rustix::io::Errno::NOTSUP) => return Ok(()),
        Err(rustix::io::Errno::RANGE) => {
            names = vec![0u8; 65536];
            rustix::fs::llistxattr(src, &mut names)?
        }
        Err(e) => return Err(e.into()),
    };
    let mut value = vec![0u8; 65536];
    for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name);
        let len = match rustix::fs::lgetxattr(src, name, &mut value) {
            Ok(l) => l,
            Err(rustix::io::Errno::NODATA) => continue,
            Err(e) => return Err(e.into()),
        };
        match rustix::fs::lsetxattr(dst, name, &value[..len], rustix::fs::XattrFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOTSUP) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Applies owner, mode, xattrs and times of `md` (the source) to `dst`.
fn copy_meta(src: &Path, md: &fs::Metadata, dst: &Path) -> io::Result<()> {
    let ft = md.file_type();
    rustix::fs::chownat(
        CWD,
        dst,
        Some(rustix::fs::Uid::from_raw(md.uid())),
        Some(rustix::fs::Gid::from_raw(md.gid())),
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    if !ft.is_symlink() {
        // After chown, which clears set-id bits.
        fs::set_permissions(dst, fs::Permissions::from_mode(md.mode() & 0o7777))?;
    }
    copy_xattrs(src, dst)?;
    rustix::fs::utimensat(CWD, dst, &times(md), AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

/// Copies the tree `src` into the existing directory `dst`, preserving everything a layer
/// holds. Hard links inside the tree stay hard links.
pub fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    let mut links: HashMap<(u64, u64), std::path::PathBuf> = HashMap::new();
    copy_dir(src, dst, &mut links)?;
    let md = fs::symlink_metadata(src)?;
    copy_meta(src, &md, dst)
}

fn copy_dir(
    src: &Path,
    dst: &Path,
    links: &mut HashMap<(u64, u64), std::path::PathBuf>,
) -> io::Result<()> {
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let md = fs::symlink_metadata(&from)?;
        let ft = md.file_type();
        if !ft.is_dir() && md.nlink() > 1 {
            if let Some(first) = links.get(&(md.dev(), md.ino())) {
                fs::hard_link(first, &to)?;
                continue;
            }
            links.insert((md.dev(), md.ino()), to.clone());
        }
        if ft.is_dir() {
            fs::create_dir(&to)?;
            copy_dir(&from, &to, links)?;
        } else if ft.is_file() {
            fs::copy(&from, &to)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&from)?, &to)?;
        } else {
            let kind = if ft.is_char_device() {
                rustix::fs::FileType::CharacterDevice
            } else if ft.is_block_device() {
                rustix::fs::FileType::BlockDevice
            } else if ft.is_fifo() {
                rustix::fs::FileType::Fifo
            } else {
                // Sockets are only meaningful to the process that bound them.
                continue;
            };
            rustix::fs::mknodat(CWD, &to, kind, Mode::from_raw_mode(0o600), md.rdev())?;
        }
        copy_meta(&from, &md, &to)?;
    }
    Ok(())
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
    use std::os::unix::fs::symlink;

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
}
