//! Writing the difference between two trees as a layer tar.

use std::collections::{BTreeSet, HashMap};
use std::ffi::{CStr, CString, OsStr, OsString};
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

use super::DiffError;
use crate::fsutil::at::{self, Meta, Node};
use crate::mount::{Mount, TempMount};

/// Mounts `lower` and `upper` read-only under `scratch` and writes their difference.
pub fn compare_mounts(
    lower: &[Mount],
    upper: &[Mount],
    scratch: &Path,
    out: &mut dyn Write,
) -> Result<(), DiffError> {
    compare_mounts_skipping(lower, upper, scratch, out, &BTreeSet::new())
}

/// [`compare_mounts`], leaving out the paths in `skip` (relative, as `etc/hosts`) where
/// `lower` does not have them: the mount points a container's runtime made.
pub fn compare_mounts_skipping(
    lower: &[Mount],
    upper: &[Mount],
    scratch: &Path,
    out: &mut dyn Write,
    skip: &BTreeSet<PathBuf>,
) -> Result<(), DiffError> {
    let io_err = |source| DiffError::Io {
        path: scratch.to_path_buf(),
        source,
    };
    let lower_mnt = if lower.is_empty() {
        None
    } else {
        Some(TempMount::new(&read_only_view(lower), scratch).map_err(io_err)?)
    };
    let upper_mnt = TempMount::new(&read_only_view(upper), scratch).map_err(io_err)?;
    let empty;
    let lower_path = match &lower_mnt {
        Some(m) => m.path(),
        None => {
            empty = tempdir_in(scratch).map_err(io_err)?;
            empty.0.as_path()
        }
    };
    compare_skipping(lower_path, upper_mnt.path(), out, skip)
}

/// The mounts of a snapshot as a read-only view of it. A writable bind becomes read-only.
/// A writable overlay (a running container's, say) is looked at without its work
/// directory, which its own mount holds: its upper directory becomes the top lower one of
/// a read-only overlay, or a read-only bind where it has no lower ones.
fn read_only_view(ms: &[Mount]) -> Vec<Mount> {
    ms.iter()
        .map(|m| {
            let mut m = m.clone();
            if m.kind == "bind" && !m.is_readonly() {
                m.options.retain(|o| o != "rw");
                m.options.push("ro".into());
            }
            if m.kind == "overlay"
                && let Some(upper) = m.option("upperdir").map(str::to_string)
            {
                let lowers = m.option("lowerdir").unwrap_or_default().to_string();
                m.options.retain(|o| {
                    !o.starts_with("upperdir=")
                        && !o.starts_with("workdir=")
                        && !o.starts_with("lowerdir=")
                });
                if lowers.is_empty() {
                    m = Mount::bind(Path::new(&upper), true);
                } else {
                    m.options.push(format!("lowerdir={upper}:{lowers}"));
                }
            }
            m
        })
        .collect()
}

struct EmptyDir(PathBuf);

impl Drop for EmptyDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.0);
    }
}

fn tempdir_in(parent: &Path) -> io::Result<EmptyDir> {
    let p = parent.join(format!("empty-{}", crate::util::random_hex(6)));
    fs::create_dir_all(&p)?;
    Ok(EmptyDir(p))
}

/// Writes the changes that turn the tree `lower` into the tree `upper` as a layer tar:
/// added and changed entries in full, removed ones as `.wh.` whiteouts. Entries are sorted,
/// so the same trees always give the same bytes.
///
/// `upper` may be a running container's, changing under the walk: every step is one name
/// in a directory already open, no symlink followed, so what is written comes from inside
/// the trees, and an entry replaced between two steps fails the walk rather than be
/// written as something else.
pub fn compare(lower: &Path, upper: &Path, out: &mut dyn Write) -> Result<(), DiffError> {
    compare_skipping(lower, upper, out, &BTreeSet::new())
}

fn compare_skipping(
    lower: &Path,
    upper: &Path,
    out: &mut dyn Write,
    skip: &BTreeSet<PathBuf>,
) -> Result<(), DiffError> {
    let open = |path: &Path| {
        rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
    };
    let lower_fd = match open(lower) {
        Ok(fd) => Some(fd),
        // Nothing below: every entry of upper is added.
        Err(Errno::NOENT | Errno::NOTDIR) => None,
        Err(e) => {
            return Err(DiffError::Io {
                path: lower.to_path_buf(),
                source: e.into(),
            });
        }
    };
    let upper_fd = open(upper).map_err(|e| DiffError::Io {
        path: upper.to_path_buf(),
        source: e.into(),
    })?;
    let mut w = Walker {
        builder: tar::Builder::new(out),
        links: HashMap::new(),
        skip,
        lower,
        upper,
    };
    w.dir(
        lower_fd.as_ref().map(AsFd::as_fd),
        upper_fd.as_fd(),
        Path::new(""),
    )?;
    w.builder.finish().map_err(|source| DiffError::Io {
        path: upper.to_path_buf(),
        source,
    })?;
    Ok(())
}

struct Walker<'a> {
    builder: tar::Builder<&'a mut dyn Write>,
    /// First path written for each multiply-linked inode of the upper tree.
    links: HashMap<(u64, u64), PathBuf>,
    /// Paths left out where the lower tree does not have them.
    skip: &'a BTreeSet<PathBuf>,
    /// The roots, for naming paths in errors only.
    lower: &'a Path,
    upper: &'a Path,
}

fn names(dir: BorrowedFd<'_>) -> io::Result<BTreeSet<CString>> {
    Ok(at::read_names(dir)?.into_iter().collect())
}

fn os(name: &CStr) -> &OsStr {
    OsStr::from_bytes(name.to_bytes())
}

/// Whether the entry `name`, `l` in the directory `ld` and `u` in `ud`, is the same in both.
fn same(
    l: &Meta,
    u: &Meta,
    ld: BorrowedFd<'_>,
    ud: BorrowedFd<'_>,
    name: &CStr,
) -> io::Result<bool> {
    if l.mode != u.mode || l.uid != u.uid || l.gid != u.gid || l.rdev != u.rdev {
        return Ok(false);
    }
    let kind = u.kind();
    if kind == FileType::Directory {
        return Ok(true);
    }
    if kind == FileType::Symlink {
        let target = |d| rustix::fs::readlinkat(d, name, Vec::new());
        return Ok(target(ld)? == target(ud)?);
    }
    if l.size != u.size || l.mtime != u.mtime {
        return Ok(false);
    }
    // Same size and time. Without sub-second times a same-second rewrite is possible;
    // compare the bytes then.
    if kind == FileType::RegularFile && u.mtime.tv_nsec == 0 {
        let read = |d, md| -> io::Result<Vec<u8>> {
            let mut data = Vec::new();
            Exact::new(at::open_file_checked(d, name, md)?, md.size).read_to_end(&mut data)?;
            Ok(data)
        };
        return Ok(read(ld, l)? == read(ud, u)?);
    }
    Ok(true)
}

/// Reads exactly `left` bytes, the size a tar header has already announced: a file that
/// grows meanwhile is cut there, one that shrinks is an error (the header cannot be taken
/// back, and short data would shift every later entry of the archive).
struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Exact<R> {
    fn new(inner: R, size: u64) -> Self {
        Exact { inner, left: size }
    }
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let max = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while being read",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

impl Walker<'_> {
    /// Compares the directory `rel`, open as `upper` and (where the lower tree has a
    /// directory there) as `lower`.
    fn dir(
        &mut self,
        lower: Option<BorrowedFd<'_>>,
        upper: BorrowedFd<'_>,
        rel: &Path,
    ) -> Result<(), DiffError> {
        let err = |path: PathBuf| move |source| DiffError::Io { path, source };
        let lnames = match lower {
            Some(l) => names(l).map_err(err(self.lower.join(rel)))?,
            None => BTreeSet::new(),
        };
        let unames = names(upper).map_err(err(self.upper.join(rel)))?;
        for name in lnames.difference(&unames) {
            let mut wh = OsString::from(".wh.");
            wh.push(os(name));
            self.whiteout(&rel.join(wh))?;
        }
        for name in &unames {
            let r = rel.join(os(name));
            let up = || self.upper.join(&r);
            let umd = at::stat_at(upper, name).map_err(err(up()))?;
            let lmd = match lower {
                Some(l) if lnames.contains(name) => {
                    Some(at::stat_at(l, name).map_err(err(self.lower.join(&r)))?)
                }
                _ => None,
            };
            if lmd.is_none() && self.skip.contains(&r) {
                continue;
            }
            let unchanged = match (&lmd, lower) {
                (Some(l), Some(ld)) => same(l, &umd, ld, upper, name).map_err(err(up()))?,
                _ => false,
            };
            // Opened once, for its xattrs and its listing alike.
            let udir = if umd.is_dir() {
                Some(at::open_dir_checked(upper, name, &umd).map_err(err(up()))?)
            } else {
                None
            };
            if !unchanged {
                self.entry(upper, name, udir.as_ref().map(AsFd::as_fd), &r, &umd)?;
            }
            let Some(udir) = udir else { continue };
            let ldir = match (&lmd, lower) {
                // A lower entry that is no directory is refused as one (NOTDIR).
                (Some(_), Some(ld)) => match at::open_dir(ld, name) {
                    Ok(fd) => Some(fd),
                    Err(Errno::NOENT | Errno::NOTDIR) => None,
                    Err(e) => return Err(err(self.lower.join(&r))(e.into())),
                },
                _ => None,
            };
            self.dir(ldir.as_ref().map(AsFd::as_fd), udir.as_fd(), &r)?;
        }
        Ok(())
    }

    fn whiteout(&mut self, rel: &Path) -> Result<(), DiffError> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(0);
        h.set_mode(0o644);
        h.set_mtime(0);
        self.builder
            .append_data(&mut h, rel, io::empty())
            .map_err(|source| DiffError::Io {
                path: rel.to_path_buf(),
                source,
            })
    }

    /// Writes the entry `name` of the directory `dir` (`opened` when a directory) as `rel`.
    fn entry(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        opened: Option<BorrowedFd<'_>>,
        rel: &Path,
        md: &Meta,
    ) -> Result<(), DiffError> {
        let full = self.upper.join(rel);
        let err = |source| DiffError::Io {
            path: full.clone(),
            source,
        };
        let mut h = tar::Header::new_gnu();
        h.set_mode(md.mode & 0o7777);
        h.set_uid(md.uid as u64);
        h.set_gid(md.gid as u64);
        h.set_mtime(md.mtime.tv_sec.max(0) as u64);
        h.set_size(0);
        let kind = md.kind();
        // The file is opened before its xattrs are read, so both come from the inode
        // that was stat'ed.
        let file = if kind == FileType::RegularFile {
            Some(at::open_file_checked(dir, name, md).map_err(err)?)
        } else {
            None
        };
        let node = match (opened, &file) {
            (Some(fd), _) => Node::Fd(fd),
            (None, Some(f)) => Node::Fd(f.as_fd()),
            (None, None) => Node::Name(dir, name),
        };
        let xattrs = at::read_xattrs(node, super::apply::allowed_xattr).map_err(err)?;
        if !xattrs.is_empty() {
            let exts: Vec<(String, Vec<u8>)> = xattrs
                .into_iter()
                .map(|(k, v)| (format!("SCHILY.xattr.{}", String::from_utf8_lossy(&k)), v))
                .collect();
            self.builder
                .append_pax_extensions(exts.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                .map_err(err)?;
        }
        if kind != FileType::Directory && md.nlink > 1 {
            let key = md.inode();
            if let Some(first) = self.links.get(&key) {
                h.set_entry_type(tar::EntryType::Link);
                return self.builder.append_link(&mut h, rel, first).map_err(err);
            }
            self.links.insert(key, rel.to_path_buf());
        }
        if let Some(f) = file {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(md.size);
            return self
                .builder
                .append_data(&mut h, rel, Exact::new(f, md.size))
                .map_err(err);
        }
        let kind = match kind {
            FileType::Directory => {
                h.set_entry_type(tar::EntryType::Directory);
                return self
                    .builder
                    .append_data(&mut h, rel, io::empty())
                    .map_err(err);
            }
            FileType::Symlink => {
                h.set_entry_type(tar::EntryType::Symlink);
                let target =
                    rustix::fs::readlinkat(dir, name, Vec::new()).map_err(|e| err(e.into()))?;
                let target = Path::new(OsStr::from_bytes(target.as_bytes()));
                return self.builder.append_link(&mut h, rel, target).map_err(err);
            }
            // Overlay records deletions as 0/0 character devices; a mounted view never
            // shows them, so one here is a real device.
            FileType::CharacterDevice => tar::EntryType::Char,
            FileType::BlockDevice => tar::EntryType::Block,
            FileType::Fifo => tar::EntryType::Fifo,
            _ => return Ok(()),
        };
        h.set_entry_type(kind);
        h.set_device_major(libc::major(md.rdev)).map_err(err)?;
        h.set_device_minor(libc::minor(md.rdev)).map_err(err)?;
        self.builder
            .append_data(&mut h, rel, io::empty())
            .map_err(err)
    }
}

#[cfg(test)]
mod tests;
