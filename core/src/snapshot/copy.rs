//! The copy driver: every snapshot is a full copy of its parent, mounted by bind mount. Slow
//! and disk-hungry, but it works on any file system, including where overlayfs cannot (an
//! overlay upper directory on overlay, say).

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;

use super::meta::MetaStore;
use super::{Info, Kind, Mount, Result, SnapshotError, Snapshotter, Usage};
use crate::db::Db;

pub struct Copy {
    meta: MetaStore,
}

impl Copy {
    pub fn new(root: PathBuf, db: Arc<Db>) -> Result<Copy> {
        Ok(Copy {
            meta: MetaStore::open(root, db)?,
        })
    }

    fn fs_dir(&self, id: i64) -> PathBuf {
        self.meta.dir(id).join("fs")
    }

    fn create(&self, key: &str, parent: Option<&str>, kind: Kind) -> Result<Vec<Mount>> {
        let (id, _) = self.meta.create(key, parent, kind, |dir, parents| {
            let fs_dir = dir.join("fs");
            fs::create_dir(&fs_dir)?;
            match parents.first() {
                Some(p) => crate::fsutil::copy_tree(&p.join("fs"), &fs_dir),
                None => Ok(()),
            }
        })?;
        Ok(vec![Mount::bind(&self.fs_dir(id), kind == Kind::View)])
    }
}

impl Snapshotter for Copy {
    fn stat(&self, key: &str) -> Result<Info> {
        self.meta.info(key)
    }

    fn usage(&self, key: &str) -> Result<Usage> {
        self.meta.usage(key)
    }

    fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let (row, _) = self.meta.get(key)?;
        if row.kind == Kind::Committed {
            return Err(SnapshotError::FailedPrecondition {
                key: key.to_string(),
                reason: "a committed snapshot has no mounts; make a view of it",
            });
        }
        Ok(vec![Mount::bind(
            &self.fs_dir(row.id),
            row.kind == Kind::View,
        )])
    }

    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>> {
        self.create(key, parent, Kind::Active)
    }

    fn view(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>> {
        self.create(key, parent, Kind::View)
    }

    fn commit(&self, name: &str, key: &str) -> Result<()> {
        self.meta.commit(name, key).map(|_| ())
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
