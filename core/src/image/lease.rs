//! Leases: what an operation in progress has made and not yet recorded in an image.
//!
//! A lease is a row naming its process (PID and start time, so a reused PID is not mistaken
//! for it) and the blobs, layers and snapshots it holds. The collector never removes a held
//! resource. Releasing a lease collects those of its resources that nothing references; a
//! lease whose process is gone is released by the next process that opens the state root.

use rusqlite::{OptionalExtension, Transaction, params};

use super::Images;
use crate::db::{Db, DbError};
use crate::digest::Digest;
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

impl Images<'_> {
    /// Ends a lease and collects what it held that nothing else uses. Returns the bytes freed.
    pub(crate) fn release(&self, lease: Lease) -> crate::Result<u64> {
        self.collect(&lease.id)
    }

    fn collect(&self, lease_id: &str) -> crate::Result<u64> {
        let content = &self.st.content;
        let (freed, doomed) = self.st.db.write(|tx| {
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
                                  + (SELECT COUNT(*) FROM image_layers WHERE blob_digest = ?1)
                                  + (SELECT COUNT(*) FROM repo_digests WHERE digest = ?1)",
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
            // Layers, children before parents: removing a child can free its parent, which
            // is then a candidate too, whoever held it (a layer no lease holds, no image
            // names and no layer builds on is garbage).
            let mut layers: Vec<String> = resources
                .iter()
                .filter(|(k, _)| k == "layer")
                .map(|(_, v)| v.clone())
                .collect();
            loop {
                let mut progress = false;
                let mut kept = Vec::new();
                for key in layers {
                    let used = exists(
                        tx,
                        "SELECT (SELECT COUNT(*) FROM image_layers WHERE chain_id = ?1)
                              + (SELECT COUNT(*) FROM layers WHERE parent = ?1)",
                        &key,
                    )? || held(tx, "layer", &key)?;
                    if used {
                        kept.push(key);
                        continue;
                    }
                    let row: Option<(i64, Option<String>)> = tx
                        .query_row(
                            "SELECT size, parent FROM layers WHERE chain_id = ?1",
                            params![key],
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )
                        .optional()?;
                    if let Some((size, parent)) = row {
                        freed += size as u64;
                        tx.execute("DELETE FROM layers WHERE chain_id = ?1", params![key])?;
                        if let Some(p) = parent.filter(|p| !kept.contains(p)) {
                            kept.push(p);
                        }
                    }
                    doomed.push(key);
                    progress = true;
                }
                layers = kept;
                if !progress {
                    break;
                }
            }
            Ok::<_, crate::Error>((freed, doomed))
        })?;
        for key in doomed {
            match self.st.snapshots.remove(&key) {
                Ok(()) | Err(SnapshotError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(freed)
    }

    /// Releases the leases of processes that are gone and removes what a crash can leave
    /// behind. Cheap when there is nothing to do: one query. Says whether a process had
    /// crashed, for the containers to tidy theirs.
    pub(crate) fn recover(&self) -> crate::Result<bool> {
        let leases = self.st.db.read(|tx| {
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
            return Ok(false);
        }
        crate::mount::cleanup_temp_mounts(&self.st.scratch)
            .map_err(|e| crate::Error::io(format!("clean up {}", self.st.scratch.display()), e))?;
        for id in dead {
            self.collect(&id)?;
        }
        self.st.snapshots.cleanup()?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{one_file_layer, scratch_state};

    fn leases(e: &Images) -> i64 {
        e.st.db
            .read(|tx| {
                Ok::<_, DbError>(tx.query_row(
                    "SELECT (SELECT COUNT(*) FROM leases) + (SELECT COUNT(*) FROM lease_resources)",
                    [],
                    |r| r.get(0),
                )?)
            })
            .unwrap()
    }

    fn snapshots(e: &Images) -> Vec<String> {
        let mut v = Vec::new();
        e.st.snapshots
            .walk(&mut |i| v.push(i.name.clone()))
            .unwrap();
        v.sort();
        v
    }

    #[test]
    fn a_blob_goes_with_the_last_lease_that_holds_it() {
        let e_root = scratch_state();
        let e = Images::new(&e_root);
        let one = Lease::new(&e.st.db).unwrap();
        let two = Lease::new(&e.st.db).unwrap();
        let shared = Digest::of(b"shared");
        let own = Digest::of(b"own");
        one.add(&e.st.db, Resource::Blob(shared.clone())).unwrap();
        one.add(&e.st.db, Resource::Blob(own.clone())).unwrap();
        two.add(&e.st.db, Resource::Blob(shared.clone())).unwrap();
        e.st.content.write_all(b"shared", Some(&shared)).unwrap();
        e.st.content.write_all(b"own", Some(&own)).unwrap();

        assert_eq!(e.release(one).unwrap(), 3);
        assert!(!e.st.content.contains(&own));
        assert!(e.st.content.contains(&shared));
        assert_eq!(e.release(two).unwrap(), 6);
        assert!(!e.st.content.contains(&shared));
        assert_eq!(leases(&e), 0);

        // Nothing held: released all the same.
        Lease::new(&e.st.db)
            .unwrap()
            .release_empty(&e.st.db)
            .unwrap();
        assert_eq!(leases(&e), 0);
    }

    #[test]
    fn blobs_layers_and_snapshots_an_image_or_container_uses_stay() {
        let e_root = scratch_state();
        let e = Images::new(&e_root);
        let layer = one_file_layer("f", b"f");
        let image = e
            .import(
                &mut &layer[..],
                &crate::image::ImportOptions {
                    reference: Some("kept:1".into()),
                    source: "-".into(),
                    ..Default::default()
                },
            )
            .unwrap();
        let inspect = e.inspect("kept:1").unwrap();
        let chain = inspect.root_fs.layers[0].clone();
        e.st.snapshots.prepare("claimed", Some(&chain)).unwrap();
        e.st.db.write(|tx| {
            tx.execute(
                "INSERT INTO containers (id, name, image_id, snapshot_key, created) VALUES ('c', 'c', ?1, 'claimed', ?2)",
                params![image.to_string(), crate::db::now()],
            )?;
            Ok::<_, DbError>(())
        })
        .unwrap();
        let before = snapshots(&e);

        let lease = Lease::new(&e.st.db).unwrap();
        lease.add(&e.st.db, Resource::Blob(image.clone())).unwrap();
        lease
            .add(&e.st.db, Resource::Layer(chain.parse().unwrap()))
            .unwrap();
        lease
            .add(&e.st.db, Resource::Snapshot("claimed".into()))
            .unwrap();
        assert_eq!(e.release(lease).unwrap(), 0);
        assert!(e.st.content.contains(&image));
        assert_eq!(snapshots(&e), before);
    }

    #[test]
    fn layers_go_children_first_and_snapshots_with_them() {
        let e_root = scratch_state();
        let e = Images::new(&e_root);
        let (l1, l2) = (Digest::of(b"l1"), Digest::of(b"l2"));
        let lease = Lease::new(&e.st.db).unwrap();
        // Held parent first: the child must go before the parent can.
        for (l, parent, size) in [(&l1, None, 10i64), (&l2, Some(&l1), 20)] {
            lease.add(&e.st.db, Resource::Layer(l.clone())).unwrap();
            let key = format!("unpack-{l}");
            e.st.snapshots
                .prepare(&key, parent.map(|p| p.to_string()).as_deref())
                .unwrap();
            e.st.snapshots.commit(&l.to_string(), &key).unwrap();
            e.st.db
                .write(|tx| {
                    tx.execute(
                    "INSERT INTO layers (chain_id, parent, diff_id, size) VALUES (?1, ?2, ?1, ?3)",
                    params![l.to_string(), parent.map(|p| p.to_string()), size],
                )?;
                    Ok::<_, DbError>(())
                })
                .unwrap();
        }
        lease
            .add(&e.st.db, Resource::Snapshot("active".into()))
            .unwrap();
        e.st.snapshots
            .prepare("active", Some(&l2.to_string()))
            .unwrap();
        assert_eq!(snapshots(&e).len(), 3);

        // Another lease holding the child keeps both, and once it lets go the parent goes
        // too, though no lease holds it any more.
        let other = Lease::new(&e.st.db).unwrap();
        other.add(&e.st.db, Resource::Layer(l2.clone())).unwrap();
        assert_eq!(e.release(lease).unwrap(), 0);
        assert_eq!(snapshots(&e), [l1.to_string(), l2.to_string()]);
        assert_eq!(e.release(other).unwrap(), 30);
        assert!(snapshots(&e).is_empty());
        let rows: i64 =
            e.st.db
                .read(|tx| {
                    Ok::<_, DbError>(tx.query_row("SELECT COUNT(*) FROM layers", [], |r| r.get(0))?)
                })
                .unwrap();
        assert_eq!(rows, 0);
    }

    #[test]
    fn a_lease_of_a_process_gone_is_released_at_recovery() {
        let e_root = scratch_state();
        let e = Images::new(&e_root);
        let blob = Digest::of(b"orphan");
        let lease = Lease::new(&e.st.db).unwrap();
        lease.add(&e.st.db, Resource::Blob(blob.clone())).unwrap();
        e.st.content.write_all(b"orphan", Some(&blob)).unwrap();
        // Ours, while this process runs: kept.
        e.recover().unwrap();
        assert!(e.st.content.contains(&blob));
        // The same PID started at another time is another process, gone.
        e.st.db
            .write(|tx| {
                tx.execute("UPDATE leases SET start_time = start_time + 1", [])?;
                Ok::<_, DbError>(())
            })
            .unwrap();
        e.recover().unwrap();
        assert!(!e.st.content.contains(&blob));
        assert_eq!(leases(&e), 0);
    }
}
