//! Unpacking layer blobs into committed snapshots named by chain ID.

use std::io::Read;

use rusqlite::{OptionalExtension, params};

use super::Images;
use super::lease::{Lease, Resource};
use super::{ImageError, chain_id};
use crate::diff::{self, Applied};
use crate::digest::Digest;
use crate::snapshot::{Kind, SnapshotError, Snapshotter};

impl Images<'_> {
    /// Whether the layer `chain` is unpacked; holds it under `lease` either way, so that
    /// it cannot be collected from under the caller.
    pub(crate) fn have_layer(&self, lease: &Lease, chain: &Digest) -> crate::Result<bool> {
        lease.add(&self.st.db, Resource::Layer(chain.clone()))?;
        let row: Option<i64> = self.st.db.read(|tx| {
            Ok::<_, crate::Error>(
                tx.query_row(
                    "SELECT size FROM layers WHERE chain_id = ?1",
                    params![chain.to_string()],
                    |r| r.get(0),
                )
                .optional()?,
            )
        })?;
        Ok(row.is_some()
            && matches!(self.st.snapshots.stat(&chain.to_string()), Ok(i) if i.kind == Kind::Committed))
    }

    /// Unpacks one layer on top of `parent` into a new snapshot and commits it under its
    /// chain ID. `check` sees the result before the commit and may refuse it.
    pub(crate) fn unpack_layer(
        &self,
        lease: &Lease,
        parent: Option<&Digest>,
        layer: &mut (dyn Read + Send),
        check: impl FnOnce(&Applied) -> crate::Result<()>,
    ) -> crate::Result<(Digest, Applied)> {
        let key = format!("extract-{}", crate::util::random_hex(8));
        lease.add(&self.st.db, Resource::Snapshot(key.clone()))?;
        let parent_key = parent.map(|p| p.to_string());
        let mounts = self.st.snapshots.prepare(&key, parent_key.as_deref())?;
        let applied = match diff::apply_to_mounts(layer, &mounts, &self.st.scratch, &self.st.apply)
            .map_err(crate::Error::from)
            .and_then(|a| check(&a).map(|()| a))
        {
            Ok(a) => a,
            Err(e) => {
                let _ = self.st.snapshots.remove(&key);
                return Err(e);
            }
        };
        let chain = chain_id(parent, &applied.diff_id);
        lease.add(&self.st.db, Resource::Layer(chain.clone()))?;
        match self.st.snapshots.commit(&chain.to_string(), &key) {
            Ok(()) => {}
            // Another process unpacked the same layer first: use theirs.
            Err(SnapshotError::AlreadyExists { .. }) => {
                self.st.snapshots.remove(&key)?;
            }
            Err(e) => {
                let _ = self.st.snapshots.remove(&key);
                return Err(e.into());
            }
        }
        self.st.db.write(|tx| {
            tx.execute(
                "INSERT OR IGNORE INTO layers (chain_id, parent, diff_id, size) VALUES (?1, ?2, ?3, ?4)",
                params![chain.to_string(), parent_key, applied.diff_id.to_string(), applied.content_size as i64],
            )?;
            Ok::<_, crate::Error>(())
        })?;
        Ok((chain, applied))
    }

    /// Unpacks layer `index` of `image` on `parent`, refusing it unless it is the layer the
    /// image's config names (`diff_id`). Its chain ID.
    pub(crate) fn unpack_expected(
        &self,
        lease: &Lease,
        parent: Option<&Digest>,
        layer: &mut (dyn Read + Send),
        image: &str,
        index: usize,
        diff_id: &Digest,
    ) -> crate::Result<Digest> {
        let (chain, _) = self.unpack_layer(lease, parent, layer, |a| {
            if &a.diff_id != diff_id {
                return Err(ImageError::LayerMismatch {
                    image: image.to_string(),
                    index,
                    expected: diff_id.clone(),
                    actual: a.diff_id.clone(),
                }
                .into());
            }
            Ok(())
        })?;
        Ok(chain)
    }

    /// Unpacks an image's layers from the content store, skipping those already unpacked.
    /// `layers` holds (blob digest, diff ID) pairs, base first. Returns the chain IDs.
    pub(crate) fn unpack_image(
        &self,
        lease: &Lease,
        image: &str,
        layers: &[(Digest, Digest)],
    ) -> crate::Result<Vec<Digest>> {
        let mut chains: Vec<Digest> = Vec::with_capacity(layers.len());
        for (index, (blob, diff_id)) in layers.iter().enumerate() {
            let parent = chains.last().cloned();
            let chain = chain_id(parent.as_ref(), diff_id);
            if self.have_layer(lease, &chain)? {
                chains.push(chain);
                continue;
            }
            let mut reader = self.st.content.open_blob(blob)?;
            let got =
                self.unpack_expected(lease, parent.as_ref(), &mut reader, image, index, diff_id)?;
            debug_assert_eq!(got, chain);
            chains.push(got);
        }
        Ok(chains)
    }
}
