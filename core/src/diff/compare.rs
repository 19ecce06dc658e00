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
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::diff::{ApplyOptions, apply_to_mounts};
    use crate::snapshot::{Copy, Overlay, Snapshotter};

    /// A layer made by comparing snapshots, applied onto the parent in another snapshotter,
    /// gives the same tree: for overlay (whose mounts stack lower layers) and copy alike.
    fn round_trip<S: Snapshotter>(make: fn(PathBuf, Arc<crate::db::Db>) -> S) {
        let d = tempfile::tempdir().unwrap();
        let db = Arc::new(crate::db::Db::open(&d.path().join("db")).unwrap());
        let sn = make(d.path().join("snapshots"), db);
        let scratch = d.path().join("tmp");
        let base = {
            let mut b = tar::Builder::new(Vec::new());
            for (p, data) in [
                ("keep", "k"),
                ("gone", "g"),
                ("dir/old", "o"),
                ("change", "before"),
            ] {
                let mut h = tar::Header::new_gnu();
                h.set_path(p).unwrap();
                h.set_size(data.len() as u64);
                h.set_mode(0o644);
                h.set_mtime(1_000);
                h.set_cksum();
                b.append(&h, data.as_bytes()).unwrap();
            }
            b.into_inner().unwrap()
        };
        let m = sn.prepare("base-a", None).unwrap();
        apply_to_mounts(&mut &base[..], &m, &scratch, &ApplyOptions::default()).unwrap();
        sn.commit("base", "base-a").unwrap();

        let child = sn.prepare("child", Some("base")).unwrap();
        {
            let tm = TempMount::new(&child, &scratch).unwrap();
            let r = tm.path();
            fs::remove_file(r.join("gone")).unwrap();
            fs::remove_dir_all(r.join("dir")).unwrap();
            fs::create_dir(r.join("dir")).unwrap();
            fs::write(r.join("dir/new"), "n").unwrap();
            fs::write(r.join("change"), "after!").unwrap();
            fs::write(r.join("added"), "a").unwrap();
        }
        let lower = sn.view("base-view", Some("base")).unwrap();
        let mut layer = Vec::new();
        compare_mounts(&lower, &child, &scratch, &mut layer).unwrap();
        sn.remove("base-view").unwrap();

        let names: Vec<String> = tar::Archive::new(&layer[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert!(names.contains(&".wh.gone".to_string()), "{names:?}");
        assert!(
            names.contains(&"added".to_string()) && names.contains(&"change".to_string()),
            "{names:?}"
        );
        assert!(
            !names.contains(&"keep".to_string()),
            "unchanged file in the diff: {names:?}"
        );

        let again = sn.prepare("again", Some("base")).unwrap();
        apply_to_mounts(&mut &layer[..], &again, &scratch, &ApplyOptions::default()).unwrap();
        let tm = TempMount::new(&again, &scratch).unwrap();
        let r = tm.path();
        assert_eq!(fs::read_to_string(r.join("keep")).unwrap(), "k");
        assert_eq!(fs::read_to_string(r.join("change")).unwrap(), "after!");
        assert_eq!(fs::read_to_string(r.join("added")).unwrap(), "a");
        assert!(!r.join("gone").exists());
        assert!(
            !r.join("dir/old").exists(),
            "the old directory's content is still visible"
        );
        assert_eq!(fs::read_to_string(r.join("dir/new")).unwrap(), "n");
    }

    #[test]
    fn overlay_snapshots_round_trip() {
        round_trip(|root, db| Overlay::new(root, db).unwrap());
    }

    #[test]
    fn copy_snapshots_round_trip() {
        round_trip(|root, db| Copy::new(root, db).unwrap());
    }

    fn entries(layer: &[u8]) -> Vec<(String, tar::EntryType, Option<PathBuf>)> {
        tar::Archive::new(layer)
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let link = e.link_name().unwrap().map(|l| l.into_owned());
                (
                    e.path().unwrap().display().to_string(),
                    e.header().entry_type(),
                    link,
                )
            })
            .collect()
    }

    /// An upper tree with a symlink to a directory outside, named like a directory of the
    /// lower tree (what a container does to make the walk read the host): the symlink is an
    /// entry of its own and nothing it leads to is read.
    #[test]
    fn a_symlink_to_outside_is_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let (lower, upper, outside) = (
            t.path().join("lower"),
            t.path().join("upper"),
            t.path().join("outside"),
        );
        fs::create_dir_all(lower.join("d")).unwrap();
        fs::write(lower.join("d/x"), "x").unwrap();
        fs::create_dir_all(&upper).unwrap();
        fs::create_dir_all(outside.join("sub")).unwrap();
        fs::write(outside.join("secret"), "host secret").unwrap();
        fs::write(outside.join("sub/x"), "host x").unwrap();
        std::os::unix::fs::symlink(&outside, upper.join("d")).unwrap();
        std::os::unix::fs::symlink(&outside, upper.join("e")).unwrap();

        let mut layer = Vec::new();
        compare(&lower, &upper, &mut layer).unwrap();
        assert_eq!(
            entries(&layer),
            vec![
                ("d".into(), tar::EntryType::Symlink, Some(outside.clone())),
                ("e".into(), tar::EntryType::Symlink, Some(outside.clone())),
            ]
        );
        let host = b"host ";
        assert!(!layer.windows(host.len()).any(|w| w == host));
    }

    /// FIFOs, in one tree or both, are entries; none is opened, so none blocks the walk.
    #[test]
    fn a_fifo_does_not_block() {
        let t = tempfile::tempdir().unwrap();
        let (lower, upper) = (t.path().join("lower"), t.path().join("upper"));
        for d in [&lower, &upper] {
            fs::create_dir_all(d).unwrap();
            let fifo = d.join("both");
            rustix::fs::mknodat(
                rustix::fs::CWD,
                &fifo,
                FileType::Fifo,
                Mode::from_raw_mode(0o600),
                0,
            )
            .unwrap();
            let zero = rustix::fs::Timestamps {
                last_access: Default::default(),
                last_modification: Default::default(),
            };
            rustix::fs::utimensat(rustix::fs::CWD, &fifo, &zero, rustix::fs::AtFlags::empty())
                .unwrap();
        }
        rustix::fs::mknodat(
            rustix::fs::CWD,
            upper.join("p"),
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        fs::write(upper.join("f"), "f").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut layer = Vec::new();
            compare(&lower, &upper, &mut layer).unwrap();
            let _ = tx.send(layer);
        });
        let layer = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("the walk blocked");
        let got: Vec<_> = entries(&layer)
            .into_iter()
            .map(|(p, k, _)| (p, k))
            .collect();
        assert_eq!(
            got,
            vec![
                ("f".into(), tar::EntryType::Regular),
                ("p".into(), tar::EntryType::Fifo),
            ]
        );
    }

    /// Only what differs is in the layer: owner, mode, size, time, link target, and the
    /// bytes of a file whose time has no sub-second part (a same-second rewrite).
    #[test]
    fn only_what_differs_is_in_the_layer() {
        let t = tempfile::tempdir().unwrap();
        let (lower, upper) = (t.path().join("lower"), t.path().join("upper"));
        let at = |p: &Path, secs: i64, nanos: i64| {
            let ts = rustix::fs::Timespec {
                tv_sec: secs,
                tv_nsec: nanos as _,
            };
            let times = rustix::fs::Timestamps {
                last_access: ts,
                last_modification: ts,
            };
            rustix::fs::utimensat(
                rustix::fs::CWD,
                p,
                &times,
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            )
            .unwrap();
        };
        for (root, second) in [(&lower, false), (&upper, true)] {
            fs::create_dir_all(root.join("dir")).unwrap();
            fs::create_dir_all(root.join("dir_mode")).unwrap();
            let files = [
                ("same", "aaaa", "aaaa", 0),
                ("rewrite", "aaaa", "bbbb", 0),
                ("trusted", "aaaa", "bbbb", 500),
                ("mode", "aaaa", "aaaa", 0),
                ("owner", "aaaa", "aaaa", 0),
                ("group", "aaaa", "aaaa", 0),
                ("size", "aaaa", "aaaaa", 0),
                ("dir/inner", "x", "y", 0),
            ];
            for (name, before, after, nanos) in files {
                let p = root.join(name);
                fs::write(&p, if second { after } else { before }).unwrap();
                at(&p, 1000, nanos);
            }
            let p = root.join("mtime");
            fs::write(&p, "same").unwrap();
            at(&p, if second { 2000 } else { 1000 }, 0);
            std::os::unix::fs::symlink("target", root.join("link_same")).unwrap();
            std::os::unix::fs::symlink(if second { "b" } else { "a" }, root.join("link_changed"))
                .unwrap();
            if second {
                fs::set_permissions(
                    root.join("mode"),
                    std::os::unix::fs::PermissionsExt::from_mode(0o600),
                )
                .unwrap();
                fs::set_permissions(
                    root.join("dir_mode"),
                    std::os::unix::fs::PermissionsExt::from_mode(0o700),
                )
                .unwrap();
                std::os::unix::fs::chown(root.join("owner"), Some(1), None).unwrap();
                std::os::unix::fs::chown(root.join("group"), None, Some(1)).unwrap();
                at(&root.join("owner"), 1000, 0);
                at(&root.join("group"), 1000, 0);
                at(&root.join("mode"), 1000, 0);
            }
            // Device nodes alike but for their number.
            for (name, minor) in [("dev_same", 3), ("dev", if second { 5 } else { 3 })] {
                rustix::fs::mknodat(
                    rustix::fs::CWD,
                    root.join(name),
                    FileType::CharacterDevice,
                    Mode::from_raw_mode(0o600),
                    rustix::fs::makedev(1, minor),
                )
                .unwrap();
                at(&root.join(name), 1000, 0);
            }
            at(&root.join("dir"), 1000, 0);
        }
        let mut layer = Vec::new();
        compare(&lower, &upper, &mut layer).unwrap();
        let mut got: Vec<String> = entries(&layer).into_iter().map(|(p, _, _)| p).collect();
        got.sort();
        assert_eq!(
            got,
            [
                "dev",
                "dir/inner",
                "dir_mode",
                "group",
                "link_changed",
                "mode",
                "mtime",
                "owner",
                "rewrite",
                "size"
            ]
        );
    }

    #[test]
    fn exact_reads_what_the_header_said() {
        let mut out = Vec::new();
        Exact::new(&b"abcdef"[..], 4).read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abcd", "a file that grew is cut");
        let mut out = Vec::new();
        let e = Exact::new(&b"ab"[..], 4).read_to_end(&mut out).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(e.to_string(), "file shrank while being read");
        let mut out = Vec::new();
        Exact::new(&b"ab"[..], 0).read_to_end(&mut out).unwrap();
        assert!(out.is_empty());
        let mut one = [0u8; 1];
        let mut r = Exact::new(&b"abc"[..], 3);
        assert_eq!(r.read(&mut one).unwrap(), 1);
        assert_eq!(r.read(&mut []).unwrap(), 0);
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"bc");
    }

    /// Where the lower tree is missing, or not a directory, every entry of the upper one is
    /// added; comparing mounts with no lower leaves nothing behind in the scratch directory.
    #[test]
    fn no_lower_tree_means_everything_is_added() {
        let t = tempfile::tempdir().unwrap();
        let upper = t.path().join("upper");
        fs::create_dir_all(upper.join("d")).unwrap();
        fs::write(upper.join("d/f"), "f").unwrap();
        let file = t.path().join("file");
        fs::write(&file, "not a directory").unwrap();
        let names = |layer: &[u8]| -> Vec<String> {
            let mut v: Vec<String> = entries(layer).into_iter().map(|(p, _, _)| p).collect();
            v.sort();
            v
        };
        for lower in [t.path().join("missing"), file] {
            let mut layer = Vec::new();
            compare(&lower, &upper, &mut layer).unwrap();
            assert_eq!(names(&layer), ["d", "d/f"], "{}", lower.display());
        }
        let scratch = t.path().join("scratch");
        fs::create_dir(&scratch).unwrap();
        let mut layer = Vec::new();
        compare_mounts(&[], &[Mount::bind(&upper, true)], &scratch, &mut layer).unwrap();
        assert_eq!(names(&layer), ["d", "d/f"]);
        assert_eq!(
            fs::read_dir(&scratch).unwrap().count(),
            0,
            "left in scratch"
        );
    }

    /// User xattrs and file capabilities go into the layer as PAX records; others stay out.
    /// Device nodes are entries with their numbers.
    #[test]
    fn xattrs_and_device_nodes_are_written() {
        let t = tempfile::tempdir().unwrap();
        let (lower, upper) = (t.path().join("lower"), t.path().join("upper"));
        fs::create_dir_all(&lower).unwrap();
        fs::create_dir_all(&upper).unwrap();
        let f = upper.join("f");
        fs::write(&f, "f").unwrap();
        rustix::fs::setxattr(&f, "user.colour", b"blue", rustix::fs::XattrFlags::empty()).unwrap();
        rustix::fs::setxattr(&f, "trusted.secret", b"no", rustix::fs::XattrFlags::empty()).unwrap();
        fs::write(upper.join("plain"), "p").unwrap();
        for (name, kind, minor) in [
            ("c", FileType::CharacterDevice, 3),
            ("b", FileType::BlockDevice, 7),
        ] {
            rustix::fs::mknodat(
                rustix::fs::CWD,
                upper.join(name),
                kind,
                Mode::from_raw_mode(0o600),
                rustix::fs::makedev(1, minor),
            )
            .unwrap();
        }
        let mut layer = Vec::new();
        compare(&lower, &upper, &mut layer).unwrap();
        let mut seen = Vec::new();
        let mut archive = tar::Archive::new(&layer[..]);
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().display().to_string();
            let pax: Vec<(String, Vec<u8>)> = match e.pax_extensions().unwrap() {
                Some(exts) => exts
                    .map(|x| {
                        let x = x.unwrap();
                        (x.key().unwrap().to_string(), x.value_bytes().to_vec())
                    })
                    .collect(),
                None => vec![],
            };
            let h = e.header();
            let dev = (
                h.device_major().ok().flatten(),
                h.device_minor().ok().flatten(),
            );
            seen.push((path, h.entry_type(), dev, pax));
        }
        seen.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            seen,
            vec![
                (
                    "b".into(),
                    tar::EntryType::Block,
                    (Some(1), Some(7)),
                    vec![]
                ),
                ("c".into(), tar::EntryType::Char, (Some(1), Some(3)), vec![]),
                (
                    "f".into(),
                    tar::EntryType::Regular,
                    (None, None),
                    vec![("SCHILY.xattr.user.colour".into(), b"blue".to_vec())]
                ),
                (
                    "plain".into(),
                    tar::EntryType::Regular,
                    (None, None),
                    vec![]
                ),
            ]
        );
    }

    #[test]
    fn snapshots_are_compared_through_read_only_views() {
        let m = |kind: &str, source: &str, options: &[&str]| Mount {
            kind: kind.into(),
            source: source.into(),
            options: options.iter().map(|o| o.to_string()).collect(),
        };
        let view = read_only_view(&[
            m("bind", "/s/1", &["rbind", "rw"]),
            m("bind", "/s/2", &["rbind", "ro"]),
            m(
                "overlay",
                "overlay",
                &[
                    "index=off",
                    "workdir=/s/w",
                    "upperdir=/s/u",
                    "lowerdir=/s/a:/s/b",
                ],
            ),
            m("overlay", "overlay", &["lowerdir=/s/a:/s/b"]),
            m("overlay", "overlay", &["workdir=/s/w", "upperdir=/s/u"]),
            m("tmpfs", "tmpfs", &["rw"]),
        ]);
        assert_eq!(
            view,
            [
                m("bind", "/s/1", &["rbind", "ro"]),
                m("bind", "/s/2", &["rbind", "ro"]),
                m(
                    "overlay",
                    "overlay",
                    &["index=off", "lowerdir=/s/u:/s/a:/s/b"]
                ),
                m("overlay", "overlay", &["lowerdir=/s/a:/s/b"]),
                Mount::bind(Path::new("/s/u"), true),
                m("tmpfs", "tmpfs", &["rw"]),
            ]
        );
    }
}
