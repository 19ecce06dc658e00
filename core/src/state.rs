//! The opened state root: its paths, database, content store, snapshotter and settings,
//! and its ID. What every resource service works on; it has no operations of its own
//! beyond opening, and knows nothing of images, containers or networks.

use std::collections::BTreeMap;
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

/// The start of the names of the directories in the scratch directory where a daemon keeps
/// the TLS text of a move's destination for the move's length, then `PID-START-...` of the
/// process that made it: those of a dead daemon are removed at open.
pub(crate) const MOVE_TLS_PREFIX: &str = "move-tls-";

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
    /// The cluster this engine's overlay networks span, if any.
    pub cluster: ClusterSettings,
}

/// The cluster overlay networks span, as dockerd's pre-swarm `--cluster-store` and
/// `--cluster-advertise` set it: where the shared store is, and this host's address on the
/// network between the hosts (the underlay), which its VXLAN tunnels start from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterSettings {
    /// `None`: no cluster; overlay networks are refused.
    pub store: Option<crate::etcd::StoreSettings>,
    /// An IP address or an interface's name (its first IPv4 address), with `:PORT` or
    /// without (the port is the daemon's, which dockerd advertised; VXLAN takes none).
    pub advertise: Option<String>,
}

impl ClusterSettings {
    /// `--cluster-store-opt KEY=VALUE`, taken in turn (a store given later keeps them).
    fn set_options(&mut self, opts: &[String]) -> Result<()> {
        if opts.is_empty() {
            return Ok(());
        }
        let store = self
            .store
            .get_or_insert_with(crate::etcd::StoreSettings::default);
        for o in opts {
            store.set_option(o)?;
        }
        Ok(())
    }

    /// Checks that a store comes with an address to advertise, as dockerd does.
    fn check(&self) -> Result<()> {
        match (&self.store, &self.advertise) {
            (Some(s), _) if s.endpoints.is_empty() => Err(StateError::Invalid {
                reason: "cluster store options were given without a cluster store (--cluster-store etcd://HOST:PORT)".into(),
            }
            .into()),
            (Some(_), None) => Err(StateError::Invalid {
                reason: "a cluster store needs this host's address on it (--cluster-advertise IP or interface)".into(),
            }
            .into()),
            (None, Some(_)) => Err(StateError::Invalid {
                reason: "--cluster-advertise needs a cluster store (--cluster-store etcd://HOST:PORT)".into(),
            }
            .into()),
            _ => Ok(()),
        }
    }

    /// Sets the store from dockerd's `etcd://HOST:PORT[,...]`, keeping options set before.
    pub fn set_store(&mut self, url: &str) -> Result<()> {
        let parsed = crate::etcd::StoreSettings::parse(url)?;
        let store = self
            .store
            .get_or_insert_with(crate::etcd::StoreSettings::default);
        store.endpoints = parsed.endpoints;
        Ok(())
    }

    /// Applies `--cluster-store-opt`s given on a command line.
    pub fn apply_options(&mut self, opts: &[String]) -> Result<()> {
        self.set_options(opts)
    }
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
            cluster: ClusterSettings::default(),
        }
    }
}

/// The engine's config file, when `KETCH_CONFIG_FILE` names none and this one exists.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/ketch/daemon.json";

/// The engine's config file: dockerd's `daemon.json` in shape, for the settings ketch has.
/// A key ketch does not know is an error that names it, never silently dropped.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ConfigFile {
    registry_mirrors: Option<Vec<String>>,
    insecure_registries: Option<Vec<String>>,
    storage_driver: Option<String>,
    bridge: Option<String>,
    ip_forward: Option<bool>,
    default_address_pools: Option<Vec<ConfigPool>>,
    cluster_store: Option<String>,
    cluster_advertise: Option<String>,
    cluster_store_opts: Option<BTreeMap<String, String>>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigPool {
    base: String,
    size: u8,
}

impl Options {
    /// Applies an engine config file (dockerd's `daemon.json` keys `registry-mirrors`,
    /// `insecure-registries`, `storage-driver`, `bridge`, `ip-forward`,
    /// `default-address-pools`, `cluster-store`, `cluster-advertise`, `cluster-store-opts`)
    /// over these options.
    pub fn apply_config_file(&mut self, path: &Path) -> Result<()> {
        let invalid = |reason: String| StateError::Invalid {
            reason: format!("config file {}: {reason}", path.display()),
        };
        let text = std::fs::read(path)
            .map_err(|e| Error::io(format!("read config file {}", path.display()), e))?;
        let c: ConfigFile = serde_json::from_slice(&text).map_err(|e| invalid(e.to_string()))?;
        if let Some(m) = c.registry_mirrors {
            self.registry.mirrors = m;
        }
        if let Some(i) = c.insecure_registries {
            self.registry.insecure = i;
        }
        if let Some(d) = c.storage_driver {
            self.storage_driver = Some(d.parse()?);
        }
        if let Some(b) = c.bridge {
            self.default_bridge = Some(b);
        }
        if let Some(f) = c.ip_forward {
            self.ip_forward = f;
        }
        if let Some(url) = c.cluster_store {
            self.cluster
                .set_store(&url)
                .map_err(|e| invalid(e.to_string()))?;
        }
        if let Some(a) = c.cluster_advertise {
            self.cluster.advertise = Some(a);
        }
        if let Some(opts) = c.cluster_store_opts {
            let opts: Vec<String> = opts.iter().map(|(k, v)| format!("{k}={v}")).collect();
            self.cluster
                .set_options(&opts)
                .map_err(|e| invalid(e.to_string()))?;
        }
        if let Some(pools) = c.default_address_pools {
            self.address_pools = pools
                .iter()
                .map(|p| {
                    crate::ipnet::parse_pool(&format!("base={},size={}", p.base, p.size))
                        .map_err(|r| invalid(format!("default-address-pools: {r}")))
                })
                .collect::<std::result::Result<_, _>>()?;
        }
        Ok(())
    }

    /// The defaults, then the engine config file (`KETCH_CONFIG_FILE`, else
    /// [`DEFAULT_CONFIG_FILE`] where it exists), then what the environment says, as every
    /// front door reads it:
    /// `KETCH_ROOT`, `KETCH_STORAGE_DRIVER`, `KETCH_MAX_LAYER_SIZE`, `KETCH_BRIDGE`,
    /// `KETCH_IP_FORWARD` (`false`/`0`: leave the host's forwarding alone),
    /// `KETCH_DEFAULT_ADDRESS_POOL` (`base=CIDR,size=N`, `;`-separated),
    /// `KETCH_REGISTRY_MIRRORS` and `KETCH_INSECURE_REGISTRIES` (`,`-separated),
    /// `KETCH_CERTS_D`, `KETCH_PUSH_CHUNK_SIZE`, `KETCH_CLUSTER_STORE`,
    /// `KETCH_CLUSTER_ADVERTISE` and `KETCH_CLUSTER_STORE_OPTS` (`,`-separated KEY=VALUE).
    pub fn from_env() -> Result<Options> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let mut o = Options::default();
        match var("KETCH_CONFIG_FILE") {
            Some(f) => o.apply_config_file(Path::new(&f))?,
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                o.apply_config_file(Path::new(DEFAULT_CONFIG_FILE))?
            }
            None => {}
        }
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
        if let Some(b) = var("KETCH_BRIDGE") {
            o.default_bridge = Some(b);
        }
        if let Some(f) = var("KETCH_IP_FORWARD") {
            o.ip_forward = !matches!(
                f.to_ascii_lowercase().as_str(),
                "false" | "0" | "no" | "off"
            );
        }
        if let Some(pools) = var("KETCH_DEFAULT_ADDRESS_POOL") {
            o.address_pools.clear();
            for p in pools.split(';').filter(|p| !p.is_empty()) {
                o.address_pools
                    .push(
                        crate::ipnet::parse_pool(p).map_err(|reason| StateError::Invalid {
                            reason: format!("KETCH_DEFAULT_ADDRESS_POOL: {reason}"),
                        })?,
                    );
            }
        }
        let list = |k: &str| -> Option<Vec<String>> {
            var(k).map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
        };
        if let Some(m) = list("KETCH_REGISTRY_MIRRORS") {
            o.registry.mirrors = m;
        }
        if let Some(i) = list("KETCH_INSECURE_REGISTRIES") {
            o.registry.insecure = i;
        }
        if let Some(url) = var("KETCH_CLUSTER_STORE") {
            o.cluster.set_store(&url)?;
        }
        if let Some(a) = var("KETCH_CLUSTER_ADVERTISE") {
            o.cluster.advertise = Some(a);
        }
        if let Some(opts) = list("KETCH_CLUSTER_STORE_OPTS") {
            o.cluster.set_options(&opts)?;
        }
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
    pub(crate) cluster: ClusterSettings,
    /// Whether this process keeps the host's cluster state current (`ketch daemon`).
    pub(crate) cluster_kept: std::sync::atomic::AtomicBool,
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
        opts.cluster.check()?;
        let root = &opts.root;
        std::fs::create_dir_all(root).map_err(io("create state root", root))?;
        let scratch = root.join("tmp");
        std::fs::create_dir_all(&scratch).map_err(io("create", &scratch))?;
        Overlay::cleanup_probes(&scratch);
        crate::util::remove_dead_makers(&scratch, MOVE_TLS_PREFIX);
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
            cluster: opts.cluster.clone(),
            cluster_kept: std::sync::atomic::AtomicBool::new(false),
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
    fn the_config_file_sets_what_it_names_and_refuses_what_it_does_not_know() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("daemon.json");
        std::fs::write(
            &f,
            r#"{"registry-mirrors": ["http://127.0.0.1:5000"], "insecure-registries": ["10.0.0.0/8"],
                "storage-driver": "overlay2", "bridge": "kb0", "ip-forward": false,
                "default-address-pools": [{"base": "10.99.0.0/16", "size": 24}]}"#,
        )
        .unwrap();
        let mut o = Options::default();
        o.apply_config_file(&f).unwrap();
        assert_eq!(o.registry.mirrors, ["http://127.0.0.1:5000"]);
        assert_eq!(o.registry.insecure, ["10.0.0.0/8"]);
        assert_eq!(o.storage_driver, Some(StorageDriver::Overlay));
        assert_eq!(o.default_bridge.as_deref(), Some("kb0"));
        assert!(!o.ip_forward);
        assert_eq!(o.address_pools.len(), 1);
        assert_eq!(o.address_pools[0].1, 24);
        for (text, says) in [
            (
                r#"{"log-driver": "journald"}"#,
                "unknown field `log-driver`",
            ),
            (r#"{"storage-driver": "zfs"}"#, "zfs"),
            (
                r#"{"default-address-pools": [{"base": "nope", "size": 24}]}"#,
                "default-address-pools",
            ),
            ("{", "EOF"),
        ] {
            std::fs::write(&f, text).unwrap();
            let e = Options::default().apply_config_file(&f).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
            assert!(e.to_string().contains(says), "{e}");
        }
        let e = Options::default()
            .apply_config_file(&dir.path().join("missing.json"))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    }

    #[test]
    fn the_cluster_is_set_as_dockerd_sets_it_and_checked_whole() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("daemon.json");
        std::fs::write(
            &f,
            r#"{"cluster-store": "etcd://10.0.0.1:2379,10.0.0.2:2379", "cluster-advertise": "eth0:2376",
                "cluster-store-opts": {"kv.cacertfile": "/ca.pem", "kv.certfile": "/c.pem", "kv.keyfile": "/k.pem"}}"#,
        )
        .unwrap();
        let mut o = Options::default();
        o.apply_config_file(&f).unwrap();
        let store = o.cluster.store.clone().unwrap();
        assert_eq!(store.endpoints, ["10.0.0.1:2379", "10.0.0.2:2379"]);
        assert_eq!(store.ca, Some(PathBuf::from("/ca.pem")));
        assert_eq!(store.key, Some(PathBuf::from("/k.pem")));
        assert_eq!(o.cluster.advertise.as_deref(), Some("eth0:2376"));
        o.cluster.check().unwrap();
        for (cluster, says) in [
            (
                ClusterSettings {
                    store: Some(crate::etcd::StoreSettings::parse("etcd://h:1").unwrap()),
                    advertise: None,
                },
                "--cluster-advertise",
            ),
            (
                ClusterSettings {
                    store: None,
                    advertise: Some("10.0.0.1".into()),
                },
                "needs a cluster store",
            ),
            (
                {
                    let mut c = ClusterSettings::default();
                    c.apply_options(&["kv.cacertfile=/ca.pem".into()]).unwrap();
                    c.advertise = Some("10.0.0.1".into());
                    c
                },
                "without a cluster store",
            ),
        ] {
            let e = cluster.check().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
            assert!(e.to_string().contains(says), "{e}");
        }
        std::fs::write(&f, r#"{"cluster-store": "consul://h:8500"}"#).unwrap();
        let e = Options::default().apply_config_file(&f).unwrap_err();
        assert!(e.to_string().contains("etcd://"), "{e}");
    }

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
