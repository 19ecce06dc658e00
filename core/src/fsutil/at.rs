//! One step of a walk over a tree that someone else may be changing: every call names one
//! entry of a directory that is already open, and never follows a symlink. A path built from
//! the tree's contents is never handed to the kernel to resolve, so swapping a directory for
//! a symlink between two calls cannot lead the walk out of the tree.

use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{AtFlags, CWD, Dir, FileType, Mode, OFlags, Stat, Timespec, Timestamps};
use rustix::io::Errno;

/// What the walks need of a `stat`, in the same types on every architecture.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Meta {
    pub dev: u64,
    pub ino: u64,
    /// Type and permission bits, as `st_mode`.
    pub mode: u32,
    pub nlink: u64,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
    pub size: u64,
    pub blocks: u64,
    pub atime: Timespec,
    pub mtime: Timespec,
}

impl Meta {
    // The kernel's field types differ between architectures; some casts are no-ops here.
    #[allow(clippy::unnecessary_cast)]
    pub fn from_stat(st: &Stat) -> Meta {
        Meta {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            mode: st.st_mode as u32,
            nlink: st.st_nlink as u64,
            uid: st.st_uid as u32,
            gid: st.st_gid as u32,
            rdev: st.st_rdev as u64,
            size: st.st_size.max(0) as u64,
            blocks: st.st_blocks.max(0) as u64,
            atime: Timespec {
                tv_sec: st.st_atime as _,
                tv_nsec: st.st_atime_nsec as _,
            },
            mtime: Timespec {
                tv_sec: st.st_mtime as _,
                tv_nsec: st.st_mtime_nsec as _,
            },
        }
    }

    pub fn kind(&self) -> FileType {
        FileType::from_raw_mode(self.mode)
    }

    pub fn is_dir(&self) -> bool {
        self.kind() == FileType::Directory
    }

    /// The inode's identity: equal for two names of one file, and for a name before and
    /// after it is opened unless something was renamed over it in between.
    pub fn inode(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }

    pub fn times(&self) -> Timestamps {
        Timestamps {
            last_access: self.atime,
            last_modification: self.mtime,
        }
    }
}

/// The error for an entry that is no longer what an earlier call saw: someone renamed
/// something over it. The walk stops rather than read or write what took its place.
pub(crate) fn changed() -> io::Error {
    io::Error::other("changed while being walked")
}

/// `lstat` of `name` in `dir`.
pub(crate) fn stat_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Meta> {
    Ok(Meta::from_stat(&rustix::fs::statat(
        dir,
        name,
        AtFlags::SYMLINK_NOFOLLOW,
    )?))
}

pub(crate) fn fstat(fd: BorrowedFd<'_>) -> io::Result<Meta> {
    Ok(Meta::from_stat(&rustix::fs::fstat(fd)?))
}

/// The names in the directory `dir` (which may be an `O_PATH` descriptor), without `.` and
/// `..`, in the order the file system gives them.
pub(crate) fn read_names(dir: BorrowedFd<'_>) -> io::Result<Vec<CString>> {
    names(dir)?.collect()
}

/// Whether the directory `dir` holds nothing: read only as far as its first entry.
pub(crate) fn is_empty(dir: BorrowedFd<'_>) -> io::Result<bool> {
    Ok(names(dir)?.next().transpose()?.is_none())
}

/// The names of `dir`, without `.` and `..`, as they are read.
fn names(dir: BorrowedFd<'_>) -> io::Result<impl Iterator<Item = io::Result<CString>>> {
    // A descriptor of its own, so the caller's (perhaps O_PATH) one needs no read position.
    let fd = rustix::fs::openat(
        dir,
        c".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok(Dir::new(fd)?.filter_map(|entry| match entry {
        Ok(e) if e.file_name() == c"." || e.file_name() == c".." => None,
        Ok(e) => Some(Ok(e.file_name().to_owned())),
        Err(e) => Some(Err(e.into())),
    }))
}

/// Opens the directory `name` in `dir` for reading, refusing a symlink.
pub(crate) fn open_dir(
    dir: BorrowedFd<'_>,
    name: impl rustix::path::Arg,
) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// [`open_dir`], and the directory must be the one `want` describes.
pub(crate) fn open_dir_checked(
    dir: BorrowedFd<'_>,
    name: &CStr,
    want: &Meta,
) -> io::Result<OwnedFd> {
    let fd = open_dir(dir, name)?;
    if fstat(fd.as_fd())?.inode() != want.inode() {
        return Err(changed());
    }
    Ok(fd)
}

/// Opens the regular file `name` in `dir` for reading, which must be the one `want`
/// describes.
///
/// First as `O_PATH`, which opens nothing: were the file swapped for a FIFO it would not
/// block, and for a device its driver would never see an open (some act on it: a watchdog
/// starts, a tape rewinds). Only once `fstat` shows the same regular file is it reopened
/// for reading through `/proc/self/fd`, which leads to that very inode.
pub(crate) fn open_file_checked(dir: BorrowedFd<'_>, name: &CStr, want: &Meta) -> io::Result<File> {
    let path = rustix::fs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let got = fstat(path.as_fd())?;
    if got.kind() != FileType::RegularFile || got.inode() != want.inode() {
        return Err(changed());
    }
    let fd = rustix::fs::openat(
        CWD,
        proc_fd(path.as_fd()).as_os_str(),
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok(File::from(fd))
}

/// `/proc/self/fd/N`: the kernel resolves it to the descriptor's own inode, not by name.
pub(crate) fn proc_fd(fd: BorrowedFd<'_>) -> std::ffi::OsString {
    format!("/proc/self/fd/{}", fd.as_raw_fd()).into()
}

/// How an entry's extended attributes are reached without a path walk.
#[derive(Clone, Copy)]
pub(crate) enum Node<'a> {
    /// A descriptor open for I/O: a regular file or a directory.
    Fd(BorrowedFd<'a>),
    /// An `O_PATH` descriptor, through [`proc_fd`] (the xattr calls refuse the descriptor
    /// itself). It lands on a symlink's own inode too.
    Path(BorrowedFd<'a>),
    /// One name in an open directory, not followed: the l-calls on
    /// `/proc/self/fd/<dir>/<name>`, where only the last component is looked up. For what
    /// is not opened for I/O: symlinks, devices, FIFOs.
    Name(BorrowedFd<'a>, &'a CStr),
}

impl Node<'_> {
    fn name_path(dir: BorrowedFd<'_>, name: &CStr) -> std::ffi::OsString {
        let mut p = proc_fd(dir);
        p.push("/");
        p.push(OsStr::from_bytes(name.to_bytes()));
        p
    }

    fn list(&self, buf: &mut [u8]) -> Result<usize, Errno> {
        match *self {
            Node::Fd(fd) => rustix::fs::flistxattr(fd, buf),
            Node::Path(fd) => rustix::fs::listxattr(proc_fd(fd).as_os_str(), buf),
            Node::Name(dir, name) => {
                rustix::fs::llistxattr(Self::name_path(dir, name).as_os_str(), buf)
            }
        }
    }

    fn get(&self, key: &[u8], buf: &mut [u8]) -> Result<usize, Errno> {
        match *self {
            Node::Fd(fd) => rustix::fs::fgetxattr(fd, key, buf),
            Node::Path(fd) => rustix::fs::getxattr(proc_fd(fd).as_os_str(), key, buf),
            Node::Name(dir, name) => {
                rustix::fs::lgetxattr(Self::name_path(dir, name).as_os_str(), key, buf)
            }
        }
    }

    pub fn set(&self, key: &[u8], value: &[u8]) -> Result<(), Errno> {
        let flags = rustix::fs::XattrFlags::empty();
        match *self {
            Node::Fd(fd) => rustix::fs::fsetxattr(fd, key, value, flags),
            Node::Path(fd) => rustix::fs::setxattr(proc_fd(fd).as_os_str(), key, value, flags),
            Node::Name(dir, name) => {
                rustix::fs::lsetxattr(Self::name_path(dir, name).as_os_str(), key, value, flags)
            }
        }
    }
}

/// The extended attributes of `node` whose names `keep` accepts, sorted by name. None
/// where the file system has no xattrs.
pub(crate) fn read_xattrs(
    node: Node<'_>,
    keep: impl Fn(&[u8]) -> bool,
) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut names = vec![0u8; 4096];
    let n = match node.list(&mut names) {
        Ok(n) => n,
        Err(Errno::NOTSUP) => return Ok(Vec::new()),
        Err(Errno::RANGE) => {
            // The kernel's limit for the list, and then for one value.
            names = vec![0u8; 65536];
            node.list(&mut names)?
        }
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    let mut value = Vec::new();
    for key in names[..n]
        .split(|b| *b == 0)
        .filter(|k| !k.is_empty() && keep(k))
    {
        if value.is_empty() {
            value = vec![0u8; 65536];
        }
        match node.get(key, &mut value) {
            Ok(len) => out.push((key.to_vec(), value[..len].to_vec())),
            // Removed since the list was read.
            Err(Errno::NODATA) => {}
            Err(e) => return Err(e.into()),
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::io::Read;
    use std::os::unix::fs::symlink;
    use std::path::Path;

    use super::*;

    /// What was stat'ed is replaced before it is opened: by another file, a FIFO (which
    /// would block a plain open), a symlink out of the tree. Each open fails, at once.
    #[test]
    fn a_replaced_entry_is_not_opened() {
        let t = tempfile::tempdir().unwrap();
        let (d, outside) = (t.path().join("d"), t.path().join("outside"));
        fs::create_dir_all(d.join("sub")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("secret"), "host").unwrap();
        let dir = fs::File::open(&d).unwrap();
        let dir = dir.as_fd();
        let replace = |name: &str, with: &dyn Fn(&Path)| {
            fs::write(d.join(name), "x").unwrap();
            let md = stat_at(dir, &CString::new(name).unwrap()).unwrap();
            // Made before the old one goes, so it cannot get its inode number.
            let tmp = d.join(format!("{name}.new"));
            with(&tmp);
            fs::rename(&tmp, d.join(name)).unwrap();
            md
        };
        let mut data = String::new();
        let md = replace("f", &|p| fs::write(p, "other").unwrap());
        let e = open_file_checked(dir, c"f", &md).unwrap_err();
        assert_eq!(e.to_string(), changed().to_string());
        let md = replace("fifo", &|p| {
            rustix::fs::mknodat(CWD, p, FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap()
        });
        assert!(open_file_checked(dir, c"fifo", &md).is_err());
        let md = replace("link", &|p| symlink(outside.join("secret"), p).unwrap());
        assert!(open_file_checked(dir, c"link", &md).is_err());
        // Unchanged, it opens.
        let md = replace("same", &|p| fs::write(p, "").unwrap());
        let md2 = stat_at(dir, c"same").unwrap();
        assert!(open_file_checked(dir, c"same", &md).is_err());
        open_file_checked(dir, c"same", &md2)
            .unwrap()
            .read_to_string(&mut data)
            .unwrap();

        // A directory swapped for a symlink to one outside.
        let md = stat_at(dir, c"sub").unwrap();
        fs::remove_dir(d.join("sub")).unwrap();
        symlink(&outside, d.join("sub")).unwrap();
        assert!(open_dir_checked(dir, c"sub", &md).is_err());
        assert!(open_dir(dir, c"sub").is_err());
    }
}
