//! The opened state root: its paths, database, content store, snapshotter and settings,
//! and its ID. What every resource service works on; it has no operations of its own
//! beyond opening, and knows nothing of images, containers or networks.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::content::ContentStore;
use crate::db::{Db, DbError};
use crate::diff::ApplyOptions;
use crate::error::{Error, ErrorKind, Result};
use crate::snapshot::{AnySnapshotter, Copy, Overlay};

pub const DEFAULT_ROOT: &str = "/var/lib/ketch";

/// Which snapshotter a state root uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageDriver {
    Overlay,
    Copy,
}

impl StorageDriver {
    pub fn as_str(self) -> &'static str {
        match self {
            StorageDriver::Overlay => "overlay",
            StorageDriver::Copy => "copy",
        }
    }
}

impl std::str::FromStr for StorageDriver {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "overlay" | "overlay2" | "overlayfs" => Ok(StorageDriver::Overlay),
            "copy" | "vfs" | "native" => Ok(StorageDriver::Copy),
            _ => Err(StateError::UnknownDriver {
                name: s.to_string(),
            }
            .into()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("unknown storage driver {name:?} (overlay, copy)")]
    UnknownDriver { name: String },
    #[error(
        "state root {root} uses the {recorded} storage driver; it cannot be opened with {asked}"
    )]
    DriverMismatch {
        root: PathBuf,
        recorded: String,
        asked: String,
    },
    #[error("overlayfs does not work under {root}; use --storage-driver copy")]
    OverlayUnsupported { root: PathBuf },
    #[error("{reason}")]
    Invalid { reason: String },
}

crate::error::from_module_error!(StateError);

impl StateError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            StateError::UnknownDriver { .. } | StateError::Invalid { .. } => {
                ErrorKind::InvalidArgument
            }
            StateError::DriverMismatch { .. } | StateError::OverlayUnsupported { .. } => {
                ErrorKind::FailedPrecondition
            }
        }
    }
}

/// How to open a state root.
#[derive(Debug, Clone)]
pub struct Options {
    pub root: PathBuf,
    /// `None`: what the root already uses, or for a new root overlay where it works, else copy.
    pub storage_driver: Option<StorageDriver>,
    /// Largest uncompressed layer accepted.
    pub max_layer_size: u64,
    /// The bridge device of the default network `bridge`, fixed when the root makes that
    /// network. `None`: `ketch0` for the default root, `kt` and a hash of its ID for
    /// another (two roots never share a bridge).
    pub default_bridge: Option<String>,
    /// Turn on the host's IPv4 forwarding when a bridge network with a way out is made, as
    /// Docker does, so that containers reach beyond the host. Off: left as it is.
    pub ip_forward: bool,
    /// Where subnets of new networks come from: (pool, prefix length of each subnet).
    /// Empty: Docker's defaults (the /16s of 172.17.0.0/12, the /20s of 192.168.0.0/16).
    pub address_pools: Vec<(crate::ipnet::Subnet, u8)>,
    /// The `ketch-shim` executable to run, before anything else (`KETCH_SHIM` next).
    pub shim: Option<PathBuf>,
    /// A `ketch-shim` built into the program (a package's native module carries one), tried
    /// after `KETCH_SHIM` and before the executable's directory and `PATH`: written once
    /// into the root's `bin/` under its digest, and run from there.
    pub embedded_shim: Option<&'static [u8]>,
    /// How registries are reached: mirrors of `docker.io`, registries spoken to over plain
    /// HTTP or unverified TLS, where their certificates are.
    pub registry: RegistrySettings,
}

/// How registries are reached, as dockerd's `registry-mirrors` and `insecure-registries`.
#[derive(Debug, Clone)]
pub struct RegistrySettings {
    /// Base URLs (`https://mirror.example`, `http://127.0.0.1:5000`) tried in order before
    /// `docker.io` itself for images of `docker.io`.
    pub mirrors: Vec<String>,
    /// Registries (`host[:port]`) or networks (`CIDR`) that may be spoken to over plain HTTP,
    /// or over TLS without verifying the certificate. `localhost` and `127.0.0.0/8` always
    /// may, as with Docker.
    pub insecure: Vec<String>,
    /// Where per-registry certificates are (`DIR/HOST[:PORT]/ca.crt`, `*.cert` with
    /// `*.key` for a client certificate). `None`: `/etc/ketch/certs.d`, then
    /// `/etc/docker/certs.d`.
    pub certs_dir: Option<PathBuf>,
    /// Blobs larger than this are pushed in chunks of this size; 0: in one request always.
    pub push_chunk_size: u64,
}

impl Default for RegistrySettings {
    fn default() -> Self {
        RegistrySettings {
            mirrors: Vec::new(),
            insecure: Vec::new(),
            certs_dir: None,
            push_chunk_size: 64 << 20,
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            root: PathBuf::from(DEFAULT_ROOT),
            storage_driver: None,
            max_layer_size: ApplyOptions::default().max_size,
            default_bridge: None,
            ip_forward: true,
            address_pools: Vec::new(),
            shim: None,
            embedded_shim: None,
            registry: RegistrySettings::default(),
        }
    }
}

impl Options {
    /// The defaults with what the environment says, as every front door reads it:
    /// `KETCH_ROOT`, `KETCH_STORAGE_DRIVER`, `KETCH_MAX_LAYER_SIZE`, `KETCH_BRIDGE`,
    /// `KETCH_IP_FORWARD` (`false`/`0`: leave the host's forwarding alone),
    /// `KETCH_DEFAULT_ADDRESS_POOL` (`base=CIDR,size=N`, `;`-separated),
    /// `KETCH_REGISTRY_MIRRORS` and `KETCH_INSECURE_REGISTRIES` (`,`-separated),
    /// `KETCH_CERTS_D` and `KETCH_PUSH_CHUNK_SIZE`.
    pub fn from_env() -> Result<Options> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let mut o = Options::default();
        if let Some(r) = var("KETCH_ROOT") {
            o.root = PathBuf::from(r);
        }
        if let Some(d) = var("KETCH_STORAGE_DRIVER") {
            o.storage_driver = Some(d.parse()?);
        }
        if let Some(m) = var("KETCH_MAX_LAYER_SIZE") {
            o.max_layer_size =
                crate::model::parse_bytes(&m).map_err(|reason| StateError::Invalid {
                    reason: format!("KETCH_MAX_LAYER_SIZE: {reason}"),
                })?;
        }
        o.default_bridge = var("KETCH_BRIDGE");
        if let Some(f) = var("KETCH_IP_FORWARD") {
            o.ip_forward = !matches!(
                f.to_ascii_lowercase().as_str(),
                "false" | "0" | "no" | "off"
            );
        }
        if let Some(pools) = var("KETCH_DEFAULT_ADDRESS_POOL") {
            for p in pools.split(';').filter(|p| !p.is_empty()) {
                o.address_pools
                    .push(
                        crate::ipnet::parse_pool(p).map_err(|reason| StateError::Invalid {
                            reason: format!("KETCH_DEFAULT_ADDRESS_POOL: {reason}"),
                        })?,
                    );
            }
        }
        let list = |k: &str| -> Vec<String> {
            var(k)
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default()
        };
        o.registry.mirrors = list("KETCH_REGISTRY_MIRRORS");
        o.registry.insecure = list("KETCH_INSECURE_REGISTRIES");
        o.registry.certs_dir = var("KETCH_CERTS_D").map(PathBuf::from);
        if let Some(c) = var("KETCH_PUSH_CHUNK_SIZE") {
            o.registry.push_chunk_size =
                crate::model::parse_bytes(&c).map_err(|reason| StateError::Invalid {
                    reason: format!("KETCH_PUSH_CHUNK_SIZE: {reason}"),
                })?;
        }
        Ok(o)
    }
}

/// A state root, opened.
pub struct State {
    pub(crate) root: PathBuf,
    pub(crate) db: Arc<Db>,
    pub(crate) content: ContentStore,
    pub(crate) snapshots: AnySnapshotter,
    /// Where temporary mounts go.
    pub(crate) scratch: PathBuf,
    pub(crate) apply: ApplyOptions,
    /// The default network's bridge asked for (`None`: the network module's default).
    pub(crate) default_bridge: Option<String>,
    pub(crate) ip_forward: bool,
    pub(crate) address_pools: Vec<(crate::ipnet::Subnet, u8)>,
    pub(crate) shim: Option<PathBuf>,
    pub(crate) embedded_shim: Option<&'static [u8]>,
    /// The root's ID (its `engine-id` file), which marks the host devices it makes.
    pub(crate) engine_id: String,
    pub(crate) registry: RegistrySettings,
    /// The root's path with every link resolved, as the marks name it.
    pub(crate) real_root: PathBuf,
}

fn io(context: &str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let context = format!("{context} {}", path.display());
    move |source| Error::io(context, source)
}

impl State {
    /// Opens (creating if needed) the root `opts` names. What the resources left to
    /// recover (a killed process's leases, abandoned bridges) is theirs to do: the engine
    /// asks them at its open.
    pub fn open(opts: &Options) -> Result<State> {
        let root = &opts.root;
        std::fs::create_dir_all(root).map_err(io("create state root", root))?;
        let scratch = root.join("tmp");
        std::fs::create_dir_all(&scratch).map_err(io("create", &scratch))?;
        Overlay::cleanup_probes(&scratch);
        let db = Arc::new(Db::open(&root.join("ketch.db"))?);
        let driver = Self::driver(&db, root, &scratch, opts.storage_driver)?;
        let snapshots_root = root.join("snapshots");
        let snapshots = match driver {
            StorageDriver::Overlay => {
                AnySnapshotter::Overlay(Overlay::new(snapshots_root, db.clone())?)
            }
            StorageDriver::Copy => AnySnapshotter::Copy(Copy::new(snapshots_root, db.clone())?),
        };
        let content = ContentStore::open(root)?;
        let real_root = std::fs::canonicalize(root).map_err(io("resolve state root", root))?;
        let engine_id = engine_id(root)?;
        let local = State {
            root: root.clone(),
            db,
            content,
            snapshots,
            scratch,
            apply: ApplyOptions {
                max_size: opts.max_layer_size,
            },
            default_bridge: opts.default_bridge.clone(),
            ip_forward: opts.ip_forward,
            address_pools: if opts.address_pools.is_empty() {
                crate::ipnet::default_pools()
            } else {
                opts.address_pools.clone()
            },
            shim: opts.shim.clone(),
            embedded_shim: opts.embedded_shim,
            engine_id,
            registry: opts.registry.clone(),
            real_root,
        };
        Ok(local)
    }

    /// The driver recorded for this root; a new root records the one asked for or detected.
    fn driver(
        db: &Db,
        root: &Path,
        scratch: &Path,
        asked: Option<StorageDriver>,
    ) -> Result<StorageDriver> {
        let recorded: Option<String> = db.read(|tx| {
            use rusqlite::OptionalExtension;
            Ok::<_, DbError>(
                tx.query_row(
                    "SELECT value FROM meta WHERE key = 'storage_driver'",
                    [],
                    |r| r.get(0),
                )
                .optional()?,
            )
        })?;
        if let Some(r) = recorded {
            let recorded: StorageDriver = r.parse()?;
            if let Some(a) = asked
                && a != recorded
            {
                return Err(StateError::DriverMismatch {
                    root: root.to_path_buf(),
                    recorded: recorded.as_str().into(),
                    asked: a.as_str().into(),
                }
                .into());
            }
            return Ok(recorded);
        }
        let chosen = match asked {
            Some(StorageDriver::Overlay) => {
                if !Overlay::supported(scratch) {
                    return Err(StateError::OverlayUnsupported {
                        root: root.to_path_buf(),
                    }
                    .into());
                }
                StorageDriver::Overlay
            }
            Some(StorageDriver::Copy) => StorageDriver::Copy,
            None if Overlay::supported(scratch) => StorageDriver::Overlay,
            None => StorageDriver::Copy,
        };
        db.write(|tx| {
            // Another process may have recorded one meanwhile; the first one stands.
            tx.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('storage_driver', ?1)",
                [chosen.as_str()],
            )?;
            let v: String = tx.query_row(
                "SELECT value FROM meta WHERE key = 'storage_driver'",
                [],
                |r| r.get(0),
            )?;
            v.parse::<StorageDriver>()
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn storage_driver(&self) -> &'static str {
        self.snapshots.driver_name()
    }

    /// The root's ID, made at its first open (`GET /info`'s `ID`).
    pub fn engine_id(&self) -> &str {
        &self.engine_id
    }
}

/// The root's ID: its `engine-id` file, made at its first open (as Docker's daemon keeps
/// one in its root). Written under a temporary name and linked into place, so two first
/// opens at once agree on one.
pub(crate) fn engine_id(root: &Path) -> crate::Result<String> {
    let path = root.join("engine-id");
    let read = || -> crate::Result<Option<String>> {
        match std::fs::read_to_string(&path) {
            Ok(s) => {
                let id = s.trim();
                if id.is_empty() || id.len() > 64 || id.contains(char::is_whitespace) {
                    return Err(StateError::Invalid {
                        reason: format!("{}: not an engine ID: {id:?}", path.display()),
                    }
                    .into());
                }
                Ok(Some(id.to_string()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("read {}", path.display()), e)),
        }
    };
    if let Some(id) = read()? {
        return Ok(id);
    }
    let h = crate::util::random_hex(16);
    let id = format!(
        "{}-{}-4{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[13..16],
        &h[16..20],
        &h[20..32]
    );
    let tmp = root.join(format!(".engine-id.{}", crate::util::random_hex(8)));
    let linked = std::fs::write(&tmp, format!("{id}\n")).and_then(|()| {
        match std::fs::hard_link(&tmp, &path) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
            _ => Ok(()),
        }
    });
    let _ = std::fs::remove_file(&tmp);
    linked.map_err(|e| Error::io(format!("write {}", path.display()), e))?;
    read()?.ok_or_else(|| {
        StateError::Invalid {
            reason: format!("{} vanished as it was written", path.display()),
        }
        .into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_engine_id_is_made_once_and_a_bad_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let id = engine_id(dir.path()).unwrap();
        assert_eq!(id.len(), 36, "{id}");
        assert_eq!(engine_id(dir.path()).unwrap(), id);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["engine-id"]);
        std::fs::write(dir.path().join("engine-id"), "two words\n").unwrap();
        let err = engine_id(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not an engine ID"), "{err}");
    }
}
