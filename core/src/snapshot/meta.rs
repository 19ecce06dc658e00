//! Snapshot metadata in the database and the directories it describes; shared by the drivers.
//!
//! Directory names under the snapshotter's root:
//! - `<id>`: the snapshot with that database id;
//! - `tmp-<pid>-<start>-<rand>`: being populated by a live (or dead) process, not yet recorded;
//! - `rm-<id>-<rand>`: metadata already deleted, files being removed.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::{OptionalExtension, Transaction, params};

use super::{Info, Kind, Result, SnapshotError, Usage};
use crate::db::Db;

pub(super) struct Row {
    pub id: i64,
    pub kind: Kind,
    pub parent: Option<String>,
    pub created: String,
    pub usage: Option<Usage>,
}

pub(super) struct MetaStore {
    root: PathBuf,
    db: Arc<Db>,
}

fn io_err(key: &str, path: &Path) -> impl FnOnce(io::Error) -> SnapshotError {
    let (key, path) = (key.to_string(), path.to_path_buf());
    move |source| SnapshotError::Io { key, path, source }
}

fn get(tx: &Transaction<'_>, key: &str) -> Result<Option<Row>> {
    Ok(tx
        .query_row(
            "SELECT id, kind, parent, created, usage_size, usage_inodes FROM snapshots WHERE key = ?1",
            params![key],
            |r| {
                let size: Option<i64> = r.get(4)?;
                let inodes: Option<i64> = r.get(5)?;
                Ok(Row {
                    id: r.get(0)?,
                    kind: Kind::parse(&r.get::<_, String>(1)?),
                    parent: r.get(2)?,
                    created: r.get(3)?,
                    usage: size.zip(inodes).map(|(s, i)| Usage {
                        size: s as u64,
                        inodes: i as u64,
                    }),
                })
            },
        )
        .optional()?)
}

fn require(tx: &Transaction<'_>, key: &str) -> Result<Row> {
    get(tx, key)?.ok_or_else(|| SnapshotError::NotFound {
        key: key.to_string(),
    })
}

/// Ids of `parent` and its ancestors, nearest first.
fn chain(tx: &Transaction<'_>, parent: Option<&str>) -> Result<Vec<i64>> {
    let mut ids = Vec::new();
    let mut next = parent.map(str::to_string);
    while let Some(key) = next {
        let row = require(tx, &key)?;
        ids.push(row.id);
        next = row.parent;
    }
    Ok(ids)
}

impl MetaStore {
    pub fn open(root: PathBuf, db: Arc<Db>) -> Result<MetaStore> {
        fs::create_dir_all(&root).map_err(io_err("", &root))?;
        Ok(MetaStore { root, db })
    }

    pub fn dir(&self, id: i64) -> PathBuf {
        self.root.join(id.to_string())
    }

    /// Creates a snapshot. `populate` fills a fresh directory, given the directories of the
    /// parent chain (nearest first), before the snapshot becomes visible.
    pub fn create(
        &self,
        key: &str,
        parent: Option<&str>,
        kind: Kind,
        populate: impl FnOnce(&Path, &[PathBuf]) -> io::Result<()>,
    ) -> Result<(i64, Vec<i64>)> {
        let check = |tx: &Transaction<'_>| -> Result<Vec<i64>> {
            if get(tx, key)?.is_some() {
                return Err(SnapshotError::AlreadyExists {
                    key: key.to_string(),
                });
            }
            if let Some(p) = parent {
                let row = require(tx, p)?;
                if row.kind != Kind::Committed {
                    return Err(SnapshotError::FailedPrecondition {
                        key: p.to_string(),
                        reason: "parent is not committed",
                    });
                }
            }
            chain(tx, parent)
        };
        let parents = self.db.read(|tx| check(tx))?;
        let pid = std::process::id();
        let start = crate::util::process_start_time(pid).unwrap_or(0);
        let tmp = self
            .root
            .join(format!("tmp-{pid}-{start}-{}", crate::util::random_hex(6)));
        let populated = fs::create_dir(&tmp).and_then(|()| {
            let dirs: Vec<PathBuf> = parents.iter().map(|id| self.dir(*id)).collect();
            populate(&tmp, &dirs)
        });
        if let Err(e) = populated {
            let _ = fs::remove_dir_all(&tmp);
            return Err(io_err(key, &tmp)(e));
        }
        let res = self.db.write(|tx| {
            let parents = check(tx)?;
            tx.execute(
                "INSERT INTO snapshots (key, kind, parent, created) VALUES (?1, ?2, ?3, ?4)",
                params![key, kind.as_str(), parent, crate::db::now()],
            )?;
            let id = tx.last_insert_rowid();
            let dir = self.dir(id);
            fs::rename(&tmp, &dir).map_err(io_err(key, &dir))?;
            Ok((id, parents))
        });
        if res.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        res
    }

    pub fn get(&self, key: &str) -> Result<(Row, Vec<i64>)> {
        self.db.read(|tx| {
            let row = require(tx, key)?;
            let parents = chain(tx, row.parent.as_deref())?;
            Ok((row, parents))
        })
    }

    pub fn info(&self, key: &str) -> Result<Info> {
        let (row, _) = self.get(key)?;
        Ok(Info {
            kind: row.kind,
            name: key.to_string(),
            parent: row.parent,
            created: row.created,
        })
    }

    pub fn commit(&self, name: &str, key: &str) -> Result<i64> {
        self.db.write(|tx| {
            let row = require(tx, key)?;
            if row.kind != Kind::Active {
                return Err(SnapshotError::FailedPrecondition {
                    key: key.to_string(),
                    reason: "only an active snapshot can be committed",
                });
            }
            if get(tx, name)?.is_some() {
                return Err(SnapshotError::AlreadyExists {
                    key: name.to_string(),
                });
            }
            tx.execute(
                "UPDATE snapshots SET key = ?1, kind = 'committed' WHERE id = ?2",
                params![name, row.id],
            )?;
            Ok(row.id)
        })
    }

    pub fn remove(&self, key: &str) -> Result<()> {
        let doomed = self.db.write(|tx| {
            let row = require(tx, key)?;
            let children: i64 = tx.query_row(
                "SELECT COUNT(*) FROM snapshots WHERE parent = ?1",
                params![key],
                |r| r.get(0),
            )?;
            if children > 0 {
                return Err(SnapshotError::FailedPrecondition {
                    key: key.to_string(),
                    reason: "snapshot has children",
                });
            }
            tx.execute("DELETE FROM snapshots WHERE id = ?1", params![row.id])?;
            let dir = self.dir(row.id);
            let doomed = self
                .root
                .join(format!("rm-{}-{}", row.id, crate::util::random_hex(4)));
            match fs::rename(&dir, &doomed) {
                Ok(()) => Ok(Some(doomed)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(io_err(key, &dir)(e)),
            }
        })?;
        if let Some(d) = doomed {
            fs::remove_dir_all(&d).map_err(io_err(key, &d))?;
        }
        Ok(())
    }

    /// Disk use of the snapshot's `fs` directory, cached once committed.
    pub fn usage(&self, key: &str) -> Result<Usage> {
        let (row, _) = self.get(key)?;
        if let Some(u) = row.usage {
            return Ok(u);
        }
        let dir = self.dir(row.id).join("fs");
        let usage = crate::fsutil::disk_usage(&dir).map_err(io_err(key, &dir))?;
        if row.kind == Kind::Committed {
            self.set_usage(row.id, usage)?;
        }
        Ok(usage)
    }

    fn set_usage(&self, id: i64, usage: Usage) -> Result<()> {
        self.db.write(|tx| {
            tx.execute(
                "UPDATE snapshots SET usage_size = ?1, usage_inodes = ?2 WHERE id = ?3",
                params![usage.size as i64, usage.inodes as i64, id],
            )?;
            Ok::<_, SnapshotError>(())
        })
    }

    pub fn walk(&self, f: &mut dyn FnMut(&Info)) -> Result<()> {
        let infos = self.db.read(|tx| {
            let mut stmt =
                tx.prepare("SELECT key, kind, parent, created FROM snapshots ORDER BY id")?;
            let rows = stmt.query_map([], |r| {
                Ok(Info {
                    name: r.get(0)?,
                    kind: Kind::parse(&r.get::<_, String>(1)?),
                    parent: r.get(2)?,
                    created: r.get(3)?,
                })
            })?;
            Ok::<_, SnapshotError>(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })?;
        for i in &infos {
            f(i);
        }
        Ok(())
    }

    /// Removes directories without metadata. Runs under the write lock, so a directory that
    /// another process is renaming into place is either already recorded or still `tmp-`.
    pub fn cleanup(&self) -> Result<()> {
        let doomed = self.db.write(|tx| {
            let mut doomed = Vec::new();
            let entries = fs::read_dir(&self.root).map_err(io_err("", &self.root))?;
            for entry in entries {
                let entry = entry.map_err(io_err("", &self.root))?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                let orphan = if let Ok(id) = name.parse::<i64>() {
                    let known: Option<i64> = tx
                        .query_row("SELECT id FROM snapshots WHERE id = ?1", params![id], |r| {
                            r.get(0)
                        })
                        .optional()?;
                    known.is_none()
                } else if let Some(rest) = name.strip_prefix("tmp-") {
                    !crate::util::maker_alive(rest)
                } else {
                    name.starts_with("rm-")
                };
                if orphan {
                    doomed.push(entry.path());
                }
            }
            Ok::<_, SnapshotError>(doomed)
        })?;
        for d in doomed {
            match fs::remove_dir_all(&d) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("", &d)(e)),
            }
        }
        Ok(())
    }
}
