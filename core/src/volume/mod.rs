//! Volumes: data that outlives containers. A volume is a record in the database and a
//! directory `volumes/<name>/_data`; the `local` driver's options (`type`, `device`, `o`, as
//! Docker's) mount something else there instead (a tmpfs, a bind of a host directory), on
//! first use. Containers name the volumes they mount in their configuration, which is what
//! "in use" means: a volume any container (running or not) names is not removed.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

mod parse;
pub use parse::{parse_tmpfs, parse_volume, volume_option};

use crate::error::ErrorKind;
use crate::state::State;

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("get {name}: no such volume")]
    NotFound { name: String },
    #[error("remove {name}: volume is in use - [{containers}]")]
    InUse { name: String, containers: String },
    #[error("{reason}")]
    Invalid { reason: String },
    /// A driver there is not (only `local` is): not found, as Docker answers for a plugin.
    #[error(
        "create {name}: error looking up volume plugin {driver}: plugin \"{driver}\" not found"
    )]
    NoDriver { name: String, driver: String },
    /// A volume made only if new ([`Volumes::create_new`]) that exists.
    #[error("create {name}: volume {name} already exists")]
    Exists { name: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

crate::error::from_module_error!(VolumeError);

impl VolumeError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            VolumeError::NotFound { .. } | VolumeError::NoDriver { .. } => ErrorKind::NotFound,
            VolumeError::InUse { .. } => ErrorKind::Conflict,
            VolumeError::Exists { .. } => ErrorKind::AlreadyExists,
            VolumeError::Invalid { .. } => ErrorKind::InvalidArgument,
            VolumeError::Io { source, .. } => crate::error::io_kind(source),
        }
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> crate::Error {
    let what = what.into();
    move |source| VolumeError::Io { what, source }.into()
}

fn invalid(reason: impl Into<String>) -> crate::Error {
    VolumeError::Invalid {
        reason: reason.into(),
    }
    .into()
}

/// What `volume create` takes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct VolumeCreate {
    /// Empty: a random name (an anonymous volume).
    pub name: String,
    pub driver: Option<String>,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// A stored volume, in the Docker Engine API's shape (`GET /volumes/{name}`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Volume {
    pub name: String,
    pub driver: String,
    pub mountpoint: String,
    pub created_at: String,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    pub scope: String,
    /// Made for one container (`-v /path`, an image's VOLUME); `rm -v` removes it with it.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub anonymous: bool,
}

/// What a container mounts (`-v`, `--mount`, `--tmpfs`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct MountSpec {
    /// `volume`, `bind` or `tmpfs`.
    pub kind: String,
    /// A volume's name (empty: anonymous) or a host path.
    pub source: String,
    pub target: String,
    pub readonly: bool,
    /// `rprivate` (the default), `private`, `rshared`, `shared`, `rslave`, `slave`.
    pub propagation: Option<String>,
    /// Do not copy the image's files at the target into a new volume.
    pub nocopy: bool,
    pub tmpfs_size: Option<u64>,
    pub tmpfs_mode: Option<u32>,
    /// `-v` makes a missing host directory; `--mount type=bind` refuses it.
    pub create_host_path: bool,
    /// A `--tmpfs` mount's options as given (`size=3M,mode=1777`), shown as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tmpfs_options: Option<String>,
}

/// The volumes of an opened root.
#[derive(Clone, Copy)]
pub struct Volumes<'s> {
    pub(crate) st: &'s State,
}

impl<'s> Volumes<'s> {
    pub fn new(st: &'s State) -> Volumes<'s> {
        Volumes { st }
    }

    fn event(&self, action: &str, name: &str) {
        crate::events::record(self.st, "volume", action, name, &[("driver", "local")]);
    }

    fn volumes_dir(&self) -> PathBuf {
        self.st.root.join("volumes")
    }

    fn data(&self, name: &str) -> PathBuf {
        self.volumes_dir().join(name).join("_data")
    }

    fn load_volume(&self, name: &str) -> crate::Result<Option<Volume>> {
        let json: Option<String> = self.st.db.read(|tx| {
            Ok::<_, crate::Error>(
                tx.query_row(
                    "SELECT config FROM volumes WHERE name = ?1",
                    params![name],
                    |r| r.get(0),
                )
                .optional()?,
            )
        })?;
        json.map(|j| serde_json::from_str(&j).map_err(|e| invalid(format!("volume {name}: {e}"))))
            .transpose()
    }

    pub fn inspect(&self, name: &str) -> crate::Result<Volume> {
        self.load_volume(name)?.ok_or_else(|| {
            VolumeError::NotFound {
                name: name.to_string(),
            }
            .into()
        })
    }

    pub fn list(&self) -> crate::Result<Vec<Volume>> {
        let rows: Vec<String> = self.st.db.read(|tx| {
            let mut stmt = tx.prepare("SELECT config FROM volumes ORDER BY name")?;
            let rows = stmt
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            Ok::<_, crate::Error>(rows)
        })?;
        rows.iter()
            .map(|j| serde_json::from_str(j).map_err(|e| invalid(format!("volume record: {e}"))))
            .collect()
    }

    /// `volume create`: idempotent for a name that exists with the same driver, as Docker.
    pub fn create(&self, opts: &VolumeCreate) -> crate::Result<Volume> {
        self.create_with(opts, false)
    }

    /// A new volume, never one that exists (which is refused): a volume whose data its
    /// maker may take back.
    pub(crate) fn create_new(&self, opts: &VolumeCreate) -> crate::Result<Volume> {
        self.create_with(opts, true)
    }

    fn create_with(&self, opts: &VolumeCreate, new: bool) -> crate::Result<Volume> {
        let exists = |name: &str| -> crate::Error {
            VolumeError::Exists {
                name: name.to_string(),
            }
            .into()
        };
        let anonymous = opts.name.is_empty();
        let name = if anonymous {
            crate::util::random_hex(32)
        } else {
            opts.name.clone()
        };
        if !crate::util::valid_name(&name) {
            return Err(invalid(format!(
                "create {name}: \"{name}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed"
            )));
        }
        let driver = opts.driver.clone().unwrap_or_else(|| "local".into());
        if driver != "local" {
            return Err(VolumeError::NoDriver {
                name: name.to_string(),
                driver,
            }
            .into());
        }
        for k in opts.options.keys() {
            if !matches!(k.as_str(), "type" | "device" | "o" | "size") {
                return Err(invalid(format!("create {name}: invalid option: {k:?}")));
            }
        }
        if let Some(existing) = self.load_volume(&name)? {
            return if new {
                Err(exists(&name))
            } else {
                Ok(existing)
            };
        }
        let v = Volume {
            name: name.clone(),
            driver,
            mountpoint: self.data(&name).display().to_string(),
            created_at: crate::db::now(),
            labels: opts.labels.clone(),
            options: opts.options.clone(),
            scope: "local".into(),
            anonymous,
        };
        let data = self.data(&name);
        fs::create_dir_all(&data).map_err(io_err(format!("create {}", data.display())))?;
        let inserted = self.st.db.write(|tx| {
            let n = tx.execute(
                "INSERT OR IGNORE INTO volumes (name, config) VALUES (?1, ?2)",
                params![name, serde_json::to_string(&v).unwrap_or_default()],
            )?;
            Ok::<_, crate::Error>(n)
        })?;
        if inserted == 0 {
            // Another process made it meanwhile: theirs stands.
            return if new {
                Err(exists(&name))
            } else {
                self.inspect(&name)
            };
        }
        self.event("create", &name);
        Ok(v)
    }

    /// The containers whose configuration names the volume, each with whether it runs:
    /// read from their records, whose `running` the containers keep (the engine has them
    /// look at their monitors first).
    pub(crate) fn users(&self, name: &str) -> crate::Result<Vec<(String, bool)>> {
        /// What a container's record says of its mounts.
        #[derive(Deserialize)]
        struct Record {
            config: Mounts,
        }
        #[derive(Deserialize)]
        struct Mounts {
            #[serde(default)]
            mounts: Vec<MountSpec>,
        }
        let rows: Vec<(String, bool, String)> = self.st.db.read(|tx| {
            let mut stmt =
                tx.prepare("SELECT id, running, config FROM containers ORDER BY created DESC")?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? != 0, r.get(2)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok::<_, crate::Error>(rows)
        })?;
        Ok(rows
            .into_iter()
            .filter(|(_, _, config)| {
                serde_json::from_str::<Record>(config).is_ok_and(|r| {
                    r.config
                        .mounts
                        .iter()
                        .any(|m| m.kind == "volume" && m.source == name)
                })
            })
            .map(|(id, running, _)| (id, running))
            .collect())
    }

    /// `volume rm`: refused while a container uses it; with `force`, a volume only stopped
    /// containers use goes (and they lose it).
    pub fn remove(&self, name: &str, force: bool) -> crate::Result<()> {
        self.remove_volume(name, force).map(drop)
    }

    /// [`Volumes::remove`], returning the disk space its data took (measured once the
    /// volume is known to go, so a volume in use is never walked).
    fn remove_volume(&self, name: &str, force: bool) -> crate::Result<u64> {
        let v = self.inspect(name)?;
        let users = self.users(name)?;
        if !users.is_empty() && (!force || users.iter().any(|(_, running)| *running)) {
            return Err(VolumeError::InUse {
                name: name.to_string(),
                containers: users
                    .iter()
                    .map(|(id, _)| id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }
            .into());
        }
        // Forget it first, then its files: a crash in between leaves a directory no record
        // names, which the next removal of the same name or a prune tidies.
        self.st.db.write(|tx| {
            tx.execute("DELETE FROM volumes WHERE name = ?1", params![v.name])?;
            Ok::<_, crate::Error>(())
        })?;
        let dir = self.volumes_dir().join(&v.name);
        let data = dir.join("_data");
        let size = crate::fsutil::disk_usage(&data).map_or(0, |u| u.size);
        while crate::mount::unmount(&data).is_ok() {}
        self.event("destroy", &v.name);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(size),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(size),
            Err(e) => Err(io_err(format!("remove {}", dir.display()))(e)),
        }
    }

    /// `volume prune`: unused anonymous volumes, or with `all` every unused one.
    pub fn prune(&self, all: bool) -> crate::Result<(Vec<String>, u64)> {
        let mut removed = Vec::new();
        let mut space = 0;
        for v in self.list()? {
            if !(all || v.anonymous) {
                continue;
            }
            // A volume a container names is refused (Conflict) and passed by, as is one
            // another process removed meanwhile.
            match self.remove_volume(&v.name, false) {
                Ok(size) => {
                    removed.push(v.name);
                    space += size;
                }
                Err(e) if e.kind() == ErrorKind::Conflict || e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok((removed, space))
    }

    /// Whether any container names the volume.
    pub fn in_use(&self, name: &str) -> crate::Result<bool> {
        Ok(!self.users(name)?.is_empty())
    }

    /// Where a container mounts the volume from: its `_data`, with the driver's own mount
    /// (a tmpfs, a host directory) put there on first use.
    pub(crate) fn source(&self, name: &str) -> crate::Result<PathBuf> {
        let v = self.inspect(name)?;
        let data = self.data(name);
        let kind = v.options.get("type").map(String::as_str).unwrap_or("");
        let device = v.options.get("device").cloned().unwrap_or_default();
        let o = v.options.get("o").cloned().unwrap_or_default();
        let bind = o.split(',').any(|x| x == "bind");
        if bind {
            // A host directory under the volume's name: mounted straight from there.
            if device.is_empty() {
                return Err(invalid(format!("volume {name}: o=bind needs device=")));
            }
            return Ok(PathBuf::from(device));
        }
        if kind.is_empty() || kind == "none" {
            return Ok(data);
        }
        if crate::mount::is_mountpoint(&data) {
            return Ok(data);
        }
        let m = crate::mount::Mount {
            kind: kind.to_string(),
            source: if device.is_empty() {
                kind.to_string()
            } else {
                device
            },
            options: o
                .split(',')
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect(),
        };
        m.mount(&data)
            .map_err(io_err(format!("mount volume {name} ({kind})")))?;
        Ok(data)
    }

    /// Copies what the image has at `target` into a volume that is empty (Docker's
    /// copy-up for a volume mounted where the image has files). `rootfs` is the container's
    /// root file system, mounted.
    pub(crate) fn copy_up(&self, name: &str, rootfs: &Path, target: &str) -> crate::Result<()> {
        let data = self.source(name)?;
        // The volume may already be mounted by a running container: it is written only
        // through this descriptor, one name at a time, so no symlink planted there leads
        // the copy out.
        let Ok(dst) = crate::fsutil::open_root(&data) else {
            return Ok(());
        };
        let empty = crate::fsutil::at::is_empty(std::os::fd::AsFd::as_fd(&dst)).unwrap_or(false);
        if !empty {
            return Ok(());
        }
        // Resolved inside the root file system, so a symlink in the image cannot point the
        // copy at the host.
        let Ok(src) = crate::fsutil::open_dir_in_root(rootfs, target) else {
            return Ok(());
        };
        crate::fsutil::copy_tree_at(
            std::os::fd::AsFd::as_fd(&src),
            std::os::fd::AsFd::as_fd(&dst),
        )
        .map_err(io_err(format!(
            "copy {target} of the image into volume {name}"
        )))
    }
}

#[cfg(test)]
mod tests;
