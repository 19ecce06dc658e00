//! Leases: what an operation in progress has made and not yet recorded in an image.
//!
//! A lease is a row naming its process (PID and start time, so a reused PID is not mistaken
//! for it) and the blobs, layers and snapshots it holds. The collector never removes a held
//! resource. Releasing a lease collects those of its resources that nothing references; a
//! lease whose process is gone is released by the next process that opens the state root.

use rusqlite::{Transaction, params};

use crate::db::{Db, DbError};
use crate::digest::Digest;
use crate::engine::Local;
use crate::snapshot::{SnapshotError, Snapshotter};

#[derive(Debug, Clone)]
pub(crate) enum Resource {
    Blob(Digest),
    /// A committed layer snapshot, named by its chain ID, with its `layers` row.
    Layer(Digest),
    /// An active snapshot being unpacked into.
    Snapshot(String),
}

impl Resource {
    fn parts(&self) -> (&'static str, String) {
        match self {
            Resource::Blob(d) => ("blob", d.to_string()),
            Resource::Layer(d) => ("layer", d.to_string()),
            Resource::Snapshot(k) => ("snapshot", k.clone()),
        }
    }
}

pub(crate) struct Lease {
    id: String,
}

impl Lease {
    pub fn new(db: &Db) -> Result<Lease, DbError> {
        let id = crate::util::random_hex(8);
        let pid = std::process::id();
        let start = crate::util::process_start_time(pid).unwrap_or(0);
        db.write(|tx| {
            tx.execute(
                "INSERT INTO leases (id, pid, start_time, created) VALUES (?1, ?2, ?3, ?4)",
                params![id, pid, start as i64, crate::db::now()],
            )?;
            Ok::<_, DbError>(())
        })?;
        Ok(Lease { id })
    }

    /// Holds `r` until release. Call before creating it, so no moment exists in which it is
    /// on disk but unheld.
    pub fn add(&self, db: &Db, r: Resource) -> Result<(), DbError> {
        db.write(|tx| self.add_in(tx, r))
    }

    pub fn add_in(&self, tx: &Transaction<'_>, r: Resource) -> Result<(), DbError> {
        let (kind, key) = r.parts();
        tx.execute(
            "INSERT OR IGNORE INTO lease_resources (lease_id, kind, key) VALUES (?1, ?2, ?3)",
            params![self.id, kind, key],
        )?;
        Ok(())
    }

    /// Ends a lease known to hold nothing.
    pub fn release_empty(self, db: &Db) -> Result<(), DbError> {
        db.write(|tx| {
            tx.execute("DELETE FROM leases WHERE id = ?1", params![self.id])?;
            Ok(())
        })
    }
}

fn exists(tx: &Transaction<'_>, sql: &str, key: &str) -> crate::Result<bool> {
    Ok(tx.query_row(sql, params![key], |r| r.get::<_, i64>(0))? > 0)
}

impl Local {
    /// Ends a lease and collects what it held that nothing else uses. Returns the bytes freed.
    pub(crate) fn release(&self, lease: Lease) -> crate::Result<u64> {
        self.collect(&lease.id)
    }

    fn collect(&self, lease_id: &str) -> crate::Result<u64> {
        let content = &self.content;
        let (freed, doomed) = self.db.write(|tx| {
            let resources = {
                let mut stmt = tx.prepare("SELECT kind, key FROM lease_resources WHERE lease_id = ?1")?;
                stmt.query_map(params![lease_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
                    .collect::<rusqlite::Result<Vec<_>>>()?
            };
            tx.execute("DELETE FROM leases WHERE id = ?1", params![lease_id])?;
            let held = |tx: &Transaction<'_>, kind: &str, key: &str| -> crate::Result<bool> {
                Ok(tx.query_row(
                    "SELECT COUNT(*) FROM lease_resources WHERE kind = ?1 AND key = ?2",
                    params![kind, key],
                    |r| r.get::<_, i64>(0),
                )? > 0)
            };
            let mut freed = 0u64;
            let mut doomed: Vec<String> = Vec::new();
            for (kind, key) in &resources {
                match kind.as_str() {
                    "blob" => {
                        let used = exists(
                            tx,
                            "SELECT (SELECT COUNT(*) FROM images WHERE id = ?1 OR manifest_digest = ?1)
                                  + (SELECT COUNT(*) FROM image_layers WHERE blob_digest = ?1)",
                            key,
                        )?;
                        if !used && !held(tx, kind, key)? {
                            if let Ok(d) = key.parse::<Digest>() {
                                freed += content.size(&d).unwrap_or(0);
                                // Inside the transaction: no other process can lease it between
                                // our check and the unlink.
                                content.delete(&d)?;
                            }
                        }
                    }
                    // Unpack snapshots, or a container's that its record never claimed.
                    "snapshot"
                        if !held(tx, kind, key)?
                            && !exists(tx, "SELECT COUNT(*) FROM containers WHERE snapshot_key = ?1", key)? =>
                    {
                        doomed.push(key.clone())
                    }
                    _ => {}
                }
            }
            // Layers, children before parents: removing a child can free its parent.
            let mut layers: Vec<&String> = resources.iter().filter(|(k, _)| k == "layer").map(|(_, v)| v).collect();
            loop {
                let before = layers.len();
                let mut kept = Vec::new();
                for key in layers {
                    let used = exists(
                        tx,
                        "SELECT (SELECT COUNT(*) FROM image_layers WHERE chain_id = ?1)
                              + (SELECT COUNT(*) FROM layers WHERE parent = ?1)",
                        key,
                    )? || held(tx, "layer", key)?;
                    if used {
                        kept.push(key);
                    } else {
                        freed += tx
                            .query_row("SELECT size FROM layers WHERE chain_id = ?1", params![key], |r| r.get::<_, i64>(0))
                            .unwrap_or(0) as u64;
                        tx.execute("DELETE FROM layers WHERE chain_id = ?1", params![key])?;
                        doomed.push(key.clone());
                    }
                }
                layers = kept;
                if layers.len() == before {
                    break;
                }
            }
            Ok::<_, crate::Error>((freed, doomed))
        })?;
        for key in doomed {
            match self.snapshots.remove(&key) {
                Ok(()) | Err(SnapshotError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(freed)
    }

    /// Releases the leases of processes that are gone and removes what a crash can leave
    /// behind. Cheap when there is nothing to do: one query.
    pub(crate) fn recover(&self) -> crate::Result<()> {
        let leases = self.db.read(|tx| {
            let mut stmt = tx.prepare("SELECT id, pid, start_time FROM leases")?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok::<_, DbError>(rows)
        })?;
        let dead: Vec<String> = leases
            .into_iter()
            .filter(|(_, pid, start)| !crate::util::process_alive(*pid as u32, *start as u64))
            .map(|(id, _, _)| id)
            .collect();
        if dead.is_empty() {
            return Ok(());
        }
        crate::mount::cleanup_temp_mounts(&self.scratch).map_err(|e| crate::Error::Io {
            context: format!("clean up {}", self.scratch.display()),
            source: e,
        })?;
        for id in dead {
            self.collect(&id)?;
        }
        self.snapshots.cleanup()?;
        self.cleanup_bundles()?;
        Ok(())
    }
}
