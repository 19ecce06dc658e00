//! Writing the difference between two trees as a layer tar.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsString;
use std::fs::{self, Metadata};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::DiffError;
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
    let ro = |ms: &[Mount]| -> Vec<Mount> {
        ms.iter()
            .map(|m| {
                let mut m = m.clone();
                if m.kind == "bind" && !m.is_readonly() {
                    m.options.retain(|o| o != "rw");
                    m.options.push("ro".into());
                }
                // A writable overlay (a running container's, say) is looked at without its
                // work directory, which its own mount holds: the upper directory becomes the
                // top lower one of a read-only overlay.
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
    };
    let lower_mnt = if lower.is_empty() {
        None
    } else {
        Some(TempMount::new(&ro(lower), scratch).map_err(io_err)?)
    };
    let upper_mnt = TempMount::new(&ro(upper), scratch).map_err(io_err)?;
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
pub fn compare(lower: &Path, upper: &Path, out: &mut dyn Write) -> Result<(), DiffError> {
    compare_skipping(lower, upper, out, &BTreeSet::new())
}

fn compare_skipping(
    lower: &Path,
    upper: &Path,
    out: &mut dyn Write,
    skip: &BTreeSet<PathBuf>,
) -> Result<(), DiffError> {
    let mut w = Walker {
        builder: tar::Builder::new(out),
        links: HashMap::new(),
        skip,
    };
    w.dir(lower, upper, Path::new(""), true)?;
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
}

fn names(dir: &Path) -> io::Result<BTreeSet<OsString>> {
    match fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.map(|e| e.file_name())).collect(),
        Err(e)
            if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) =>
        {
            Ok(BTreeSet::new())
        }
        Err(e) => Err(e),
    }
}

fn same(l: &Metadata, u: &Metadata, lp: &Path, up: &Path) -> io::Result<bool> {
    let lt = l.file_type();
    let ut = u.file_type();
    if lt.is_dir() != ut.is_dir()
        || lt.is_file() != ut.is_file()
        || lt.is_symlink() != ut.is_symlink()
        || l.mode() != u.mode()
        || l.uid() != u.uid()
        || l.gid() != u.gid()
        || l.rdev() != u.rdev()
    {
        return Ok(false);
    }
    if ut.is_dir() {
        return Ok(true);
    }
    if ut.is_symlink() {
        return Ok(fs::read_link(lp)? == fs::read_link(up)?);
    }
    if l.size() != u.size() || l.mtime() != u.mtime() || l.mtime_nsec() != u.mtime_nsec() {
        return Ok(false);
    }
    // Same size and time. Without sub-second times a same-second rewrite is possible;
    // compare the bytes then.
    if ut.is_file() && u.mtime_nsec() == 0 {
        return Ok(fs::read(lp)? == fs::read(up)?);
    }
    Ok(true)
}

impl Walker<'_> {
    fn dir(
        &mut self,
        lower: &Path,
        upper: &Path,
        rel: &Path,
        lower_exists: bool,
    ) -> Result<(), DiffError> {
        let err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| DiffError::Io { path, source }
        };
        let lnames = if lower_exists {
            names(&lower.join(rel)).map_err(err(&lower.join(rel)))?
        } else {
            BTreeSet::new()
        };
        let unames = names(&upper.join(rel)).map_err(err(&upper.join(rel)))?;
        for name in lnames.difference(&unames) {
            let mut wh = OsString::from(".wh.");
            wh.push(name);
            self.whiteout(&rel.join(wh))?;
        }
        for name in &unames {
            let r = rel.join(name);
            let up = upper.join(&r);
            let lp = lower.join(&r);
            let umd = fs::symlink_metadata(&up).map_err(err(&up))?;
            let lmd = if lnames.contains(name) {
                Some(fs::symlink_metadata(&lp).map_err(err(&lp))?)
            } else {
                None
            };
            if lmd.is_none() && self.skip.contains(&r) {
                continue;
            }
            let unchanged = match &lmd {
                Some(l) => same(l, &umd, &lp, &up).map_err(err(&up))?,
                None => false,
            };
            if !unchanged {
                self.entry(&up, &r, &umd)?;
            }
            if umd.is_dir() {
                let lower_is_dir = lmd.as_ref().is_some_and(|l| l.is_dir());
                self.dir(lower, upper, &r, lower_is_dir)?;
            }
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

    fn entry(&mut self, full: &Path, rel: &Path, md: &Metadata) -> Result<(), DiffError> {
        let err = |source| DiffError::Io {
            path: full.to_path_buf(),
            source,
        };
        let mut h = tar::Header::new_gnu();
        h.set_mode(md.mode() & 0o7777);
        h.set_uid(md.uid() as u64);
        h.set_gid(md.gid() as u64);
        h.set_mtime(md.mtime().max(0) as u64);
        h.set_size(0);
        let xattrs = read_xattrs(full).map_err(err)?;
        if !xattrs.is_empty() {
            let exts: Vec<(String, Vec<u8>)> = xattrs
                .into_iter()
                .map(|(k, v)| (format!("SCHILY.xattr.{}", String::from_utf8_lossy(&k)), v))
                .collect();
            self.builder
                .append_pax_extensions(exts.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                .map_err(err)?;
        }
        let ft = md.file_type();
        if !ft.is_dir() && md.nlink() > 1 {
            let key = (md.dev(), md.ino());
            if let Some(first) = self.links.get(&key) {
                h.set_entry_type(tar::EntryType::Link);
                return self.builder.append_link(&mut h, rel, first).map_err(err);
            }
            self.links.insert(key, rel.to_path_buf());
        }
        if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            self.builder
                .append_data(&mut h, rel, io::empty())
                .map_err(err)
        } else if ft.is_file() {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(md.size());
            let f = fs::File::open(full).map_err(err)?;
            self.builder.append_data(&mut h, rel, f).map_err(err)
        } else if ft.is_symlink() {
            h.set_entry_type(tar::EntryType::Symlink);
            let target = fs::read_link(full).map_err(err)?;
            self.builder.append_link(&mut h, rel, target).map_err(err)
        } else {
            let kind = if ft.is_char_device() {
                // Overlay records deletions as 0/0 character devices; a mounted view never
                // shows them, so one here is a real device.
                tar::EntryType::Char
            } else if ft.is_block_device() {
                tar::EntryType::Block
            } else if ft.is_fifo() {
                tar::EntryType::Fifo
            } else {
                return Ok(());
            };
            h.set_entry_type(kind);
            let rdev = md.rdev();
            h.set_device_major(libc::major(rdev)).map_err(err)?;
            h.set_device_minor(libc::minor(rdev)).map_err(err)?;
            self.builder
                .append_data(&mut h, rel, io::empty())
                .map_err(err)
        }
    }
}

fn read_xattrs(path: &Path) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut names = vec![0u8; 65536];
    let n = match rustix::fs::llistxattr(path, &mut names) {
        Ok(n) => n,
        Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    let mut value = vec![0u8; 65536];
    for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        if !(name.starts_with(b"user.") || name == b"security.capability") {
            continue;
        }
        let os = std::ffi::OsStr::from_bytes(name);
        match rustix::fs::lgetxattr(path, os, &mut value) {
            Ok(len) => out.push((name.to_vec(), value[..len].to_vec())),
            Err(rustix::io::Errno::NODATA) => {}
            Err(e) => return Err(e.into()),
        }
    }
    out.sort();
    Ok(out)
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
}
