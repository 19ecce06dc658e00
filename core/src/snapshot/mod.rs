//! Snapshots: the file-system trees that image layers and containers live in.
//!
//! The vocabulary is containerd's. A *key* names an **active** snapshot (writable) or a
//! **view** (read-only); a *name* names a **committed** snapshot (immutable, usable as a
//! parent). The life of a layer:
//!
//! 1. `prepare(key, parent)` creates an active snapshot on top of the committed `parent` and
//!    returns the mounts that show it;
//! 2. the caller mounts them (or hands them to the differ) and writes the layer's changes;
//! 3. `commit(name, key)` freezes it under `name`; the active `key` is gone.
//!
//! A container's root file system is `prepare(container_key, image_top_layer)`, removed with
//! the container. Contract, for every driver:
//! - keys and names share one namespace: a second `prepare`, `view` or `commit` with a key or
//!   name in use fails with `AlreadyExists`;
//! - a parent must be committed; a snapshot with children cannot be removed;
//! - views and committed snapshots are read-only; their mounts say so;
//! - a snapshotter returns mounts and never mounts anything itself;
//! - every metadata change is one database transaction, and the directory it concerns is
//!   renamed into place inside that transaction, so a crash leaves either the old or the new
//!   state; [`Snapshotter::cleanup`] removes the directories a crash left without metadata.

mod copy;
mod meta;
mod overlay;
#[cfg(test)]
pub(crate) mod testsuite;

use std::path::PathBuf;

pub use copy::Copy;
pub use overlay::Overlay;

use crate::error::ErrorKind;
pub use crate::mount::Mount;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot {key:?} not found")]
    NotFound { key: String },
    #[error("snapshot {key:?} already exists")]
    AlreadyExists { key: String },
    #[error("snapshot {key:?}: {reason}")]
    FailedPrecondition { key: String, reason: &'static str },
    #[error("snapshot {key:?}: {path}: {source}")]
    Io {
        key: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
}

crate::error::from_module_error!(SnapshotError);

impl SnapshotError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            SnapshotError::NotFound { .. } => ErrorKind::NotFound,
            SnapshotError::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            SnapshotError::FailedPrecondition { .. } => ErrorKind::FailedPrecondition,
            SnapshotError::Io { source, .. } => crate::error::io_kind(source),
            SnapshotError::Db(e) => e.kind(),
        }
    }
}

impl From<rusqlite::Error> for SnapshotError {
    fn from(e: rusqlite::Error) -> Self {
        SnapshotError::Db(e.into())
    }
}

pub type Result<T, E = SnapshotError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Active,
    View,
    Committed,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Active => "active",
            Kind::View => "view",
            Kind::Committed => "committed",
        }
    }

    fn parse(s: &str) -> Kind {
        match s {
            "view" => Kind::View,
            "committed" => Kind::Committed,
            _ => Kind::Active,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub kind: Kind,
    /// The key (active, view) or name (committed).
    pub name: String,
    pub parent: Option<String>,
    pub created: String,
}

/// Disk use of a snapshot's own changes (not its parents').
pub use crate::fsutil::Usage;

pub trait Snapshotter: Send + Sync {
    /// Metadata of the snapshot with this key or name.
    fn stat(&self, key: &str) -> Result<Info>;
    /// Disk use of the snapshot's own changes; cached once committed.
    fn usage(&self, key: &str) -> Result<Usage>;
    /// The mounts of an active snapshot or a view.
    fn mounts(&self, key: &str) -> Result<Vec<Mount>>;
    /// Creates an active snapshot on top of the committed `parent`.
    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>>;
    /// Creates a read-only view of the committed `parent`.
    fn view(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>>;
    /// Freezes the active snapshot `key` as the committed snapshot `name`.
    fn commit(&self, name: &str, key: &str) -> Result<()>;
    /// Removes a snapshot that has no children.
    fn remove(&self, key: &str) -> Result<()>;
    /// Calls `f` with every snapshot.
    fn walk(&self, f: &mut dyn FnMut(&Info)) -> Result<()>;
    /// Removes directories that no metadata refers to: leftovers of a crash.
    fn cleanup(&self) -> Result<()>;
}

/// The drivers this engine has, dispatched without a trait object.
pub enum AnySnapshotter {
    Overlay(Overlay),
    Copy(Copy),
}

impl AnySnapshotter {
    pub fn driver_name(&self) -> &'static str {
        match self {
            AnySnapshotter::Overlay(_) => "overlay",
            AnySnapshotter::Copy(_) => "copy",
        }
    }

    fn inner(&self) -> &dyn Snapshotter {
        match self {
            AnySnapshotter::Overlay(s) => s,
            AnySnapshotter::Copy(s) => s,
        }
    }
}

impl Snapshotter for AnySnapshotter {
    fn stat(&self, key: &str) -> Result<Info> {
        self.inner().stat(key)
    }
    fn usage(&self, key: &str) -> Result<Usage> {
        self.inner().usage(key)
    }
    fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        self.inner().mounts(key)
    }
    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>> {
        self.inner().prepare(key, parent)
    }
    fn view(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>> {
        self.inner().view(key, parent)
    }
    fn commit(&self, name: &str, key: &str) -> Result<()> {
        self.inner().commit(name, key)
    }
    fn remove(&self, key: &str) -> Result<()> {
        self.inner().remove(key)
    }
    fn walk(&self, f: &mut dyn FnMut(&Info)) -> Result<()> {
        self.inner().walk(f)
    }
    fn cleanup(&self) -> Result<()> {
        self.inner().cleanup()
    }
}
