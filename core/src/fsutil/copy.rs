//! Copying a tree with everything a layer holds, from one open directory into another.

use std::collections::HashMap;
use std::ffi::{CStr, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, CWD, FileType, Gid, Mode, OFlags, Uid};
use rustix::io::Errno;

use super::at::{self, Meta, Node};

/// Copies the tree at `src` into the existing directory `dst`, both the caller's own paths
/// (followed): see [`copy_tree_at`].
pub fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    let src = super::open_root(src)?;
    let dst = super::open_root(dst)?;
    copy_tree_at(src.as_fd(), dst.as_fd())
}

/// Copies what the directory `src` holds into the directory `dst`, and `src`'s own owner,
/// mode, xattrs and times onto `dst`: everything a layer holds. Hard links inside the tree
/// stay hard links; sockets are left out.
///
/// Either tree may be changed by someone else meanwhile (a container's layer, a volume a
/// container mounts). Nothing outside `src` is read and nothing outside `dst` is written:
/// an entry replaced during the copy, or a name `dst` already holds, fails the copy with
/// an error naming the entry.
pub fn copy_tree_at(src: BorrowedFd<'_>, dst: BorrowedFd<'_>) -> io::Result<()> {
    // Descriptors that can be read and carry xattrs: the caller's may be O_PATH ones.
    let src = at::open_dir(src, c".")?;
    let dst = at::open_dir(dst, c".")?;
    let mut copier = Copier {
        root: dst.as_fd(),
        links: HashMap::new(),
    };
    copier.dir(src.as_fd(), dst.as_fd(), Path::new(""))?;
    let md = at::fstat(src.as_fd())?;
    set_meta(dst.as_fd(), Node::Fd(src.as_fd()), &md)
}

/// The error `e` about the entry at `rel` (relative to the copy's root).
fn at_path(rel: &Path) -> impl Fn(io::Error) -> io::Error + '_ {
    move |e| io::Error::new(e.kind(), format!("{}: {e}", rel.display()))
}

struct Copier<'a> {
    /// The destination's root, below which hard links find their first copy again.
    root: BorrowedFd<'a>,
    /// For each multiply-linked source inode: its first copy, relative to the root, and
    /// that copy's own inode.
    links: HashMap<(u64, u64), (PathBuf, (u64, u64))>,
}

impl Copier<'_> {
    fn dir(&mut self, src: BorrowedFd<'_>, dst: BorrowedFd<'_>, rel: &Path) -> io::Result<()> {
        for name in at::read_names(src).map_err(at_path(rel))? {
            let r = rel.join(OsStr::from_bytes(name.to_bytes()));
            self.entry(src, dst, &name, &r)?;
        }
        Ok(())
    }

    /// Copies `name` of the directory `src` to the same name in `dst`, which must not
    /// exist: every entry is made by one call that fails on an existing name, and opened
    /// again without following, so a symlink planted in `dst` is never written through.
    fn entry(
        &mut self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        name: &CStr,
        rel: &Path,
    ) -> io::Result<()> {
        let err = at_path(rel);
        let md = at::stat_at(src, name).map_err(&err)?;
        let linked = !md.is_dir() && md.nlink > 1;
        if linked && let Some((first, inode)) = self.links.get(&md.inode()) {
            return self.link(first, *inode, dst, name).map_err(&err);
        }
        let made: OwnedFd = match md.kind() {
            FileType::Directory => {
                let from = at::open_dir_checked(src, name, &md).map_err(&err)?;
                rustix::fs::mkdirat(dst, name, Mode::from_raw_mode(0o700))
                    .map_err(|e| err(e.into()))?;
                let to = at::open_dir(dst, name).map_err(|e| err(e.into()))?;
                self.dir(from.as_fd(), to.as_fd(), rel)?;
                // After the contents, which change the directory's times.
                set_meta(to.as_fd(), Node::Fd(from.as_fd()), &md).map_err(&err)?;
                return Ok(());
            }
            FileType::RegularFile => {
                let mut from = at::open_file_checked(src, name, &md).map_err(&err)?;
                let mut to = File::from(
                    rustix::fs::openat(
                        dst,
                        name,
                        OFlags::WRONLY
                            | OFlags::CREATE
                            | OFlags::EXCL
                            | OFlags::NOFOLLOW
                            | OFlags::CLOEXEC,
                        Mode::from_raw_mode(0o600),
                    )
                    .map_err(|e| err(e.into()))?,
                );
                io::copy(&mut from, &mut to).map_err(&err)?;
                set_meta(to.as_fd(), Node::Fd(from.as_fd()), &md).map_err(&err)?;
                to.into()
            }
            FileType::Symlink => {
                let target =
                    rustix::fs::readlinkat(src, name, Vec::new()).map_err(|e| err(e.into()))?;
                rustix::fs::symlinkat(&target, dst, name).map_err(|e| err(e.into()))?;
                let to = open_made(dst, name, FileType::Symlink).map_err(&err)?;
                set_meta(to.as_fd(), Node::Name(src, name), &md).map_err(&err)?;
                to
            }
            kind @ (FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo) => {
                rustix::fs::mknodat(dst, name, kind, Mode::from_raw_mode(0o600), md.rdev)
                    .map_err(|e| err(e.into()))?;
                let to = open_made(dst, name, kind).map_err(&err)?;
                set_meta(to.as_fd(), Node::Name(src, name), &md).map_err(&err)?;
                to
            }
            // Sockets are only meaningful to the process that bound them.
            _ => return Ok(()),
        };
        if linked {
            let inode = at::fstat(made.as_fd()).map_err(&err)?.inode();
            self.links.insert(md.inode(), (rel.to_path_buf(), inode));
        }
        Ok(())
    }

    /// Links `name` in `dst` to the first copy at `first`, found again from the root one
    /// name at a time without following a symlink, and checked to be that copy.
    fn link(
        &self,
        first: &Path,
        inode: (u64, u64),
        dst: BorrowedFd<'_>,
        name: &CStr,
    ) -> io::Result<()> {
        let (Some(parent), Some(file)) = (first.parent(), first.file_name()) else {
            return Err(at::changed());
        };
        let from = super::open_beneath(self.root, parent)?;
        rustix::fs::linkat(&from, file, dst, name, AtFlags::empty())?;
        if at::stat_at(dst, name)?.inode() != inode {
            return Err(at::changed());
        }
        Ok(())
    }
}

/// Opens what was just made at `name` in `dst` as `O_PATH`, checking it is still a `kind`.
fn open_made(dst: BorrowedFd<'_>, name: &CStr, kind: FileType) -> io::Result<OwnedFd> {
    let fd = rustix::fs::openat(
        dst,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    if at::fstat(fd.as_fd())?.kind() != kind {
        return Err(at::changed());
    }
    Ok(fd)
}

/// Gives the copy `to` the owner, mode, xattrs (read from `from`) and times of the source
/// `md`. `to` is open for I/O for a directory or a regular file, else an `O_PATH`
/// descriptor, which the fd calls refuse: those go through `/proc/self/fd`, which leads to
/// the same inode. Mode after owner, as chown clears set-id bits; times last.
fn set_meta(to: BorrowedFd<'_>, from: Node<'_>, md: &Meta) -> io::Result<()> {
    let uid = Some(Uid::from_raw(md.uid));
    let gid = Some(Gid::from_raw(md.gid));
    let mode = Mode::from_raw_mode(md.mode & 0o7777);
    let kind = md.kind();
    let opened = matches!(kind, FileType::Directory | FileType::RegularFile);
    let node = if opened {
        rustix::fs::fchown(to, uid, gid)?;
        rustix::fs::fchmod(to, mode)?;
        Node::Fd(to)
    } else {
        rustix::fs::chownat(
            to,
            c"",
            uid,
            gid,
            AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
        )?;
        if kind != FileType::Symlink {
            rustix::fs::chmodat(CWD, at::proc_fd(to).as_os_str(), mode, AtFlags::empty())?;
        }
        Node::Path(to)
    };
    for (key, value) in at::read_xattrs(from, |_| true)? {
        match node.set(&key, &value) {
            Ok(()) | Err(Errno::NOTSUP) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if opened {
        rustix::fs::futimens(to, &md.times())?;
    } else {
        // `utimensat` takes AT_EMPTY_PATH only since Linux 5.8; the magic link reaches a
        // symlink's own inode too.
        rustix::fs::utimensat(
            CWD,
            at::proc_fd(to).as_os_str(),
            &md.times(),
            AtFlags::empty(),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::{MetadataExt, symlink};

    use super::*;

    fn lxattrs(p: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut names = vec![0u8; 4096];
        let n = rustix::fs::llistxattr(p, &mut names).unwrap();
        let mut out: Vec<_> = names[..n]
            .split(|b| *b == 0)
            .filter(|k| !k.is_empty())
            .map(|k| {
                let mut v = vec![0u8; 4096];
                let len = rustix::fs::lgetxattr(p, k, &mut v).unwrap();
                (k.to_vec(), v[..len].to_vec())
            })
            .collect();
        out.sort();
        out
    }

    fn set_owner_times(p: &Path, uid: u32, gid: u32, mtime: i64) {
        rustix::fs::chownat(
            CWD,
            p,
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
        let t = rustix::fs::Timespec {
            tv_sec: mtime,
            tv_nsec: 123_456_789,
        };
        let times = rustix::fs::Timestamps {
            last_access: t,
            last_modification: t,
        };
        rustix::fs::utimensat(CWD, p, &times, AtFlags::SYMLINK_NOFOLLOW).unwrap();
    }

    fn chmod(p: &Path, mode: u32) {
        rustix::fs::chmodat(CWD, p, Mode::from_raw_mode(mode), AtFlags::empty()).unwrap();
    }

    /// Every entry below `a` and `b` (and the roots) alike, as lstat and the bytes see them.
    fn assert_same_tree(a: &Path, b: &Path, rel: &Path) {
        let (pa, pb) = (a.join(rel), b.join(rel));
        let (ma, mb) = (
            fs::symlink_metadata(&pa).unwrap(),
            fs::symlink_metadata(&pb).unwrap(),
        );
        let what = rel.display();
        assert_eq!(ma.mode(), mb.mode(), "mode of {what}");
        assert_eq!(
            (ma.uid(), ma.gid()),
            (mb.uid(), mb.gid()),
            "owner of {what}"
        );
        assert_eq!(ma.rdev(), mb.rdev(), "device of {what}");
        assert_eq!(
            (ma.mtime(), ma.mtime_nsec()),
            (mb.mtime(), mb.mtime_nsec()),
            "mtime of {what}"
        );
        assert_eq!(lxattrs(&pa), lxattrs(&pb), "xattrs of {what}");
        let ft = ma.file_type();
        if ft.is_file() {
            assert_eq!(fs::read(&pa).unwrap(), fs::read(&pb).unwrap(), "{what}");
        } else if ft.is_symlink() {
            assert_eq!(fs::read_link(&pa).unwrap(), fs::read_link(&pb).unwrap());
        } else if ft.is_dir() {
            let names = |p: &Path| {
                let mut n: Vec<_> = fs::read_dir(p)
                    .unwrap()
                    .map(|e| e.unwrap().file_name())
                    .collect();
                n.sort();
                n
            };
            let na = names(&pa);
            // Sockets are left out.
            let na: Vec<_> = na.into_iter().filter(|n| n != "sock").collect();
            assert_eq!(na, names(&pb), "entries of {what}");
            for n in na {
                assert_same_tree(a, b, &rel.join(n));
            }
        }
    }

    #[test]
    fn a_copy_is_identical() {
        let t = tempfile::tempdir().unwrap();
        let (src, dst) = (t.path().join("src"), t.path().join("dst"));
        fs::create_dir_all(src.join("d/e")).unwrap();
        fs::create_dir_all(src.join("a/b")).unwrap();
        fs::create_dir(&dst).unwrap();
        fs::write(src.join("f"), "file").unwrap();
        fs::write(src.join("d/e/g"), "deep").unwrap();
        fs::hard_link(src.join("f"), src.join("d/h")).unwrap();
        fs::write(src.join("a/b/x"), "linked").unwrap();
        fs::hard_link(src.join("a/b/x"), src.join("y")).unwrap();
        symlink("/etc/passwd", src.join("abs")).unwrap();
        symlink("../../outside", src.join("d/rel")).unwrap();
        rustix::fs::mknodat(
            CWD,
            src.join("p"),
            FileType::Fifo,
            Mode::from_raw_mode(0o640),
            0,
        )
        .unwrap();
        rustix::fs::mknodat(
            CWD,
            src.join("null"),
            FileType::CharacterDevice,
            Mode::from_raw_mode(0o666),
            rustix::fs::makedev(1, 3),
        )
        .unwrap();
        let _sock = std::os::unix::net::UnixListener::bind(src.join("sock")).unwrap();
        for (p, k, v) in [
            ("f", "user.k", "v"),
            ("d", "user.dir", "1"),
            ("", "user.root", "r"),
            ("abs", "trusted.link", "l"),
            ("p", "trusted.fifo", "p"),
            ("null", "trusted.dev", "n"),
        ] {
            rustix::fs::lsetxattr(
                src.join(p),
                k,
                v.as_bytes(),
                rustix::fs::XattrFlags::empty(),
            )
            .unwrap();
        }
        for (p, uid, gid) in [
            ("f", 1234, 5678),
            ("d", 42, 43),
            ("abs", 7, 8),
            ("d/rel", 9, 10),
            ("p", 11, 12),
            ("null", 0, 5),
            ("a/b/x", 65534, 65534),
            ("", 100, 101),
        ] {
            set_owner_times(&src.join(p), uid, gid, 1_000_000 + uid as i64);
        }
        // After chown, which clears them.
        chmod(&src.join("f"), 0o4755);
        chmod(&src.join("d"), 0o2775);
        chmod(&src.join("a/b/x"), 0o6711);
        // Directory times last: adding entries changes them.
        for p in ["d/e", "a/b", "a", "d", ""] {
            set_owner_times(&src.join(p), 100, 101, 2_000_000);
        }
        chmod(&src.join("d"), 0o2775);

        copy_tree(&src, &dst).unwrap();
        assert_same_tree(&src, &dst, Path::new(""));
        let ino = |p: &str| fs::symlink_metadata(dst.join(p)).unwrap().ino();
        assert_eq!(ino("f"), ino("d/h"));
        assert_eq!(ino("a/b/x"), ino("y"));
        assert_ne!(ino("f"), ino("y"));
        assert!(!dst.join("sock").exists());
    }

    /// A destination that already holds a symlink where the source has an entry: the copy
    /// fails on that name and writes nothing where the symlink points.
    #[test]
    fn a_symlink_in_the_destination_is_not_written_through() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("f"), "host").unwrap();
        for (entry, link_to) in [
            ("d", outside.clone()),
            ("f", outside.join("f")),
            ("g", outside.join("new")),
        ] {
            let (src, dst) = (t.path().join("src"), t.path().join("dst"));
            fs::create_dir(&src).unwrap();
            fs::create_dir(&dst).unwrap();
            if entry == "d" {
                fs::create_dir(src.join("d")).unwrap();
                fs::write(src.join("d/cron"), "image").unwrap();
            } else {
                fs::write(src.join(entry), "image").unwrap();
            }
            symlink(&link_to, dst.join(entry)).unwrap();
            let err = copy_tree(&src, &dst).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
            assert!(err.to_string().starts_with(&format!("{entry}: ")), "{err}");
            let mut left: Vec<_> = fs::read_dir(&outside)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            left.sort();
            assert_eq!(left, ["f"], "written outside for {entry}");
            assert_eq!(fs::read_to_string(outside.join("f")).unwrap(), "host");
            fs::remove_dir_all(&src).unwrap();
            fs::remove_dir_all(&dst).unwrap();
        }
    }

    /// A source given as an O_PATH descriptor (what `open_in_root` returns) is copied too.
    #[test]
    fn an_o_path_source_is_copied() {
        let t = tempfile::tempdir().unwrap();
        let (src, dst) = (t.path().join("src"), t.path().join("dst"));
        fs::create_dir_all(src.join("x")).unwrap();
        fs::create_dir(&dst).unwrap();
        fs::write(src.join("x/f"), "f").unwrap();
        let root = super::super::open_root(t.path()).unwrap();
        let s = super::super::open_in_root(root.as_fd(), b"src", true).unwrap();
        let d = super::super::open_root(&dst).unwrap();
        copy_tree_at(s.as_fd(), d.as_fd()).unwrap();
        assert_eq!(fs::read_to_string(dst.join("x/f")).unwrap(), "f");
    }
}
