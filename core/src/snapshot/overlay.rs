//! The overlay driver: each snapshot is a directory `fs` (its own changes, the overlay upper
//! directory) plus `work`; its mounts stack the parents' `fs` directories as lower layers.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::meta::MetaStore;
use super::{Info, Kind, Mount, Result, SnapshotError, Snapshotter, Usage};
use crate::db::Db;

/// Names a probe directory: `overlay-probe-PID-START-RANDOM`, so a later process can tell
/// whether its maker still runs.
const PROBE_PREFIX: &str = "overlay-probe-";

pub struct Overlay {
    meta: MetaStore,
}

impl Overlay {
    pub fn new(root: PathBuf, db: Arc<Db>) -> Result<Overlay> {
        Ok(Overlay {
            meta: MetaStore::open(root, db)?,
        })
    }

    /// Whether overlayfs works with an upper directory on the file system under `dir`: the
    /// kernel has it and the file system can hold an upper layer (not overlay itself, say).
    pub fn supported(dir: &Path) -> bool {
        let pid = std::process::id();
        let start = crate::util::process_start_time(pid).unwrap_or(0);
        let probe = dir.join(format!(
            "{PROBE_PREFIX}{pid}-{start}-{}",
            crate::util::random_hex(6)
        ));
        let ok = (|| -> std::io::Result<()> {
            for d in ["lower", "upper", "work", "merged"] {
                fs::create_dir_all(probe.join(d))?;
            }
            let m = Mount {
                kind: "overlay".into(),
                source: "overlay".into(),
                options: vec![
                    format!("lowerdir={}", probe.join("lower").display()),
                    format!("upperdir={}", probe.join("upper").display()),
                    format!("workdir={}", probe.join("work").display()),
                ],
            };
            m.mount(&probe.join("merged"))?;
            crate::mount::unmount(&probe.join("merged"))
        })()
        .is_ok();
        let _ = fs::remove_dir_all(&probe);
        ok
    }

    /// Removes the probes of processes that died while probing (a kill between the mount and
    /// the unmount leaves a mount behind too). Probes of live processes are left alone.
    pub fn cleanup_probes(dir: &Path) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(PROBE_PREFIX)) else {
                continue;
            };
            if crate::util::maker_alive(rest) {
                continue;
            }
            let probe = entry.path();
            while crate::mount::unmount(&probe.join("merged")).is_ok() {}
            let _ = fs::remove_dir_all(&probe);
        }
    }

    fn fs_dir(&self, id: i64) -> PathBuf {
        self.meta.dir(id).join("fs")
    }

    fn mounts_for(&self, id: i64, kind: Kind, parents: &[i64]) -> Vec<Mount> {
        let lowers = || {
            parents
                .iter()
                .map(|p| self.fs_dir(*p).display().to_string())
                .collect::<Vec<_>>()
                .join(":")
        };
        match (kind, parents.len()) {
            (Kind::View, 0) => vec![Mount::bind(&self.fs_dir(id), true)],
            (Kind::View, 1) => vec![Mount::bind(&self.fs_dir(parents[0]), true)],
            // Overlay without an upper directory is read-only by construction.
            (Kind::View, _) => vec![Mount {
                kind: "overlay".into(),
                source: "overlay".into(),
                options: vec![format!("lowerdir={}", lowers())],
            }],
            (_, 0) => vec![Mount::bind(&self.fs_dir(id), false)],
            _ => vec![Mount {
                kind: "overlay".into(),
                source: "overlay".into(),
                options: vec![
                    "index=off".into(),
                    format!("workdir={}", self.meta.dir(id).join("work").display()),
                    format!("upperdir={}", self.fs_dir(id).display()),
                    format!("lowerdir={}", lowers()),
                ],
            }],
        }
    }

    fn create(&self, key: &str, parent: Option<&str>, kind: Kind) -> Result<Vec<Mount>> {
        let (id, parents) = self.meta.create(key, parent, kind, |dir, _| {
            fs::create_dir(dir.join("fs"))?;
            fs::create_dir(dir.join("work"))
        })?;
        Ok(self.mounts_for(id, kind, &parents))
    }
}

impl Snapshotter for Overlay {
    fn stat(&self, key: &str) -> Result<Info> {
        self.meta.info(key)
    }

    fn usage(&self, key: &str) -> Result<Usage> {
        self.meta.usage(key)
    }

    fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let (row, parents) = self.meta.get(key)?;
        if row.kind == Kind::Committed {
            return Err(SnapshotError::FailedPrecondition {
                key: key.to_string(),
                reason: "a committed snapshot has no mounts; make a view of it",
            });
        }
        Ok(self.mounts_for(row.id, row.kind, &parents))
    }

    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>> {
        self.create(key, parent, Kind::Active)
    }

    fn view(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>> {
        self.create(key, parent, Kind::View)
    }

    fn commit(&self, name: &str, key: &str) -> Result<()> {
        let id = self.meta.commit(name, key)?;
        // The work directory only matters to a mounted overlay; a committed layer is never
        // an upper directory again.
        let _ = fs::remove_dir_all(self.meta.dir(id).join("work"));
        let _ = fs::create_dir(self.meta.dir(id).join("work"));
        Ok(())
    }

    fn remove(&self, key: &str) -> Result<()> {
        self.meta.remove(key)
    }

    fn walk(&self, f: &mut dyn FnMut(&Info)) -> Result<()> {
        self.meta.walk(f)
    }

    fn cleanup(&self) -> Result<()> {
        self.meta.cleanup()
    }
}
