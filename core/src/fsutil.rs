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
    let root = fs::File::open(root)?;
    let rel = path.trim_start_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    Ok(rustix::fs::openat2(
        &root,
        rel,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        Mode::empty(),
        rustix::fs::ResolveFlags::IN_ROOT | rustix::fs::ResolveFlags::NO_MAGICLINKS,
    )?)
}
