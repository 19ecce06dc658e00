//! Containers: a record in the database, a bundle directory, and a per-container shim.
//!
//! The stored container (its configuration, in the database) is kept apart from the running
//! task (what `ketch-shim` records in the bundle's `state.json`). Every operation goes
//! refresh → guard → act → persist: the state is read and reconciled first (a shim that
//! died is noticed here, and its container marked exited), then the operation checks that
//! it may act, acts, and records the result.
//!
//! Isolation is never set up in this process: a front door may have threads. The engine
//! execs `ketch-shim`, a fresh single-threaded process of this workspace, which clones the
//! container and stays as its monitor.

mod changes;
mod inspect;
mod network;
mod security;
mod spec;
pub use security::SecurityOpts;

pub use changes::{Change, CommitOptions};
pub use inspect::Filters;

use std::fs;
use std::io::{self, BufRead, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::error::ErrorKind;
use crate::image::Images;
use crate::image::lease::{Lease, Resource};
use crate::network::Networks;
use crate::snapshot::Snapshotter;
use crate::state::State;
use crate::volume::Volumes;

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("No such container: {name}")]
    NotFound { name: String },
    #[error(
        "Conflict. The container name \"/{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name."
    )]
    NameInUse { name: String, id: String },
    #[error("Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    BadName { name: String },
    #[error("{reason}")]
    Invalid { reason: String },
    #[error("{reason}")]
    Conflict { reason: String },
    #[error("{message}")]
    Start { code: i32, message: String },
    #[error("{message}")]
    CopyNotFound { message: String },
    #[error("cannot find ketch-shim: set KETCH_SHIM, or install it beside ketch or on PATH")]
    NoShim,
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

crate::error::from_module_error!(ContainerError);

impl ContainerError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ContainerError::NotFound { .. } | ContainerError::CopyNotFound { .. } => {
                ErrorKind::NotFound
            }
            ContainerError::NameInUse { .. } | ContainerError::Conflict { .. } => {
                ErrorKind::Conflict
            }
            ContainerError::BadName { .. } | ContainerError::Invalid { .. } => {
                ErrorKind::InvalidArgument
            }
            ContainerError::Start { .. } => ErrorKind::FailedPrecondition,
            ContainerError::NoShim => ErrorKind::Unavailable,
            ContainerError::Io { source, .. } => crate::error::io_kind(source),
        }
    }

    /// The exit status Docker's CLI gives this error: 126/127 for a command that cannot run
    /// or is not found, 125 for the engine's own failures.
    pub fn exit_code(&self) -> i32 {
        match self {
            ContainerError::Start { code, .. } if *code == 126 || *code == 127 => *code,
            _ => 125,
        }
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> crate::Error {
    let what = what.into();
    move |source| ContainerError::Io { what, source }.into()
}

/// What `create` and `run` take: Docker's flags.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CreateOptions {
    pub image: String,
    pub name: Option<String>,
    pub cmd: Vec<String>,
    pub entrypoint: Option<Vec<String>>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub labels: Vec<(String, String)>,
    pub init: bool,
    pub tty: bool,
    /// The terminal's size at the start (rows, columns), with `tty`.
    pub console_size: Option<(u16, u16)>,
    pub open_stdin: bool,
    pub memory: Option<u64>,
    pub cpus: Option<f64>,
    pub cpu_shares: Option<u64>,
    pub pids_limit: Option<i64>,
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub no_new_privileges: bool,
    /// `--security-opt seccomp=unconfined`.
    pub seccomp_unconfined: bool,
    /// `--security-opt seccomp=PROFILE`: the profile's JSON (Docker's format), instead of
    /// the built-in one.
    pub seccomp_profile: Option<String>,
    pub read_only: bool,
    /// `bridge` (the default when `None`), `none`, `host`, `container:<name|id>`, or the
    /// name of a network.
    pub network: Option<String>,
    /// `--ip`: the address on the network, instead of the next free one.
    pub ip: Option<String>,
    /// `--network-alias`: more names the container answers to on its network.
    pub network_aliases: Vec<String>,
    /// `--dns`: name servers (the embedded server's upstream on user-defined networks).
    pub dns: Vec<String>,
    /// `--add-host`: `HOST:IP` lines for /etc/hosts.
    pub extra_hosts: Vec<String>,
    /// `-p`: ports to publish; a host port of 0 is chosen at each start.
    pub publish: Vec<crate::network::firewall::PortMap>,
    /// `-P`: publish every port the image exposes, on host ports chosen at start.
    pub publish_all: bool,
    /// Networks beyond the first (`network connect`), joined at each start in order.
    pub extra_networks: Vec<crate::network::NetworkAttachment>,
    /// The container left the network its mode names (`network disconnect`): it keeps the
    /// mode, as Docker keeps `NetworkMode`, and is on `extra_networks` only (none: loopback
    /// only) until it connects to that network again.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub network_detached: bool,
    /// Volumes, host directories and tmpfs mounts (`-v`, `--mount`, `--tmpfs`); volume
    /// names are resolved at create (anonymous ones made then).
    pub mounts: Vec<crate::volume::MountSpec>,
    /// `--volumes-from`: containers whose mounts this one mounts too (`NAME[:ro|rw]`).
    pub volumes_from: Vec<String>,
    pub restart: Option<String>,
    pub auto_remove: bool,
    pub log_max_size: Option<u64>,
    pub log_max_file: Option<u32>,
    /// `--device`: host devices the container gets, at a path of its own.
    pub devices: Vec<DeviceMapping>,
    /// `--device-cgroup-rule`: more devices the container may use (`c 1:3 rwm`).
    pub device_cgroup_rules: Vec<String>,
}

impl CreateOptions {
    /// The networks the container is on, in the order it joins them (`eth0`, `eth1`, ...):
    /// its mode's network (unless it left it), then those it was connected to.
    pub fn attachments(&self) -> Vec<crate::network::NetworkAttachment> {
        let mut all = Vec::new();
        if let NetMode::Bridge(n) = NetMode::of(self)
            && !self.network_detached
        {
            all.push(crate::network::NetworkAttachment {
                network: n,
                ip: self.ip.clone(),
                aliases: self.network_aliases.clone(),
            });
        }
        all.extend(self.extra_networks.iter().cloned());
        all
    }
}

/// A host device given to a container, as the API's `HostConfig.Devices` has it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct DeviceMapping {
    pub path_on_host: String,
    pub path_in_container: String,
    pub cgroup_permissions: String,
}

impl DeviceMapping {
    /// `--device HOST[:CONTAINER][:PERMISSIONS]`, as Docker reads it.
    pub fn parse(s: &str) -> Result<DeviceMapping, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let is_perms = |p: &str| !p.is_empty() && p.chars().all(|c| "rwm".contains(c));
        let (host, container, perms) = match parts.as_slice() {
            [h] => (*h, *h, "rwm"),
            [h, p] if is_perms(p) => (*h, *h, *p),
            [h, c] => (*h, *c, "rwm"),
            [h, c, p] => (*h, *c, *p),
            _ => return Err(format!("invalid device specification: {s}")),
        };
        let m = DeviceMapping {
            path_on_host: host.to_string(),
            path_in_container: container.to_string(),
            cgroup_permissions: perms.to_string(),
        };
        m.validate()?;
        Ok(m)
    }

    pub fn validate(&self) -> Result<(), String> {
        let c = if self.path_in_container.is_empty() {
            &self.path_on_host
        } else {
            &self.path_in_container
        };
        if !self.path_on_host.starts_with('/') || !c.starts_with('/') {
            return Err(format!(
                "invalid device specification: {}: device paths must be absolute",
                self.path_on_host
            ));
        }
        let p = &self.cgroup_permissions;
        if !p.is_empty() && !p.chars().all(|c| "rwm".contains(c)) {
            return Err(format!(
                "invalid device permissions {p:?} (a subset of rwm)"
            ));
        }
        Ok(())
    }
}

/// How a container is networked, from its `--network`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetMode {
    /// A bridge network, by name or ID (`bridge` is the default one).
    Bridge(String),
    Host,
    None,
    /// Another container's network namespace.
    Container(String),
}

impl NetMode {
    pub fn of(opts: &CreateOptions) -> NetMode {
        match opts.network.as_deref() {
            None | Some("" | "default") => NetMode::Bridge("bridge".into()),
            Some("host") => NetMode::Host,
            Some("none") => NetMode::None,
            Some(n) => match n.strip_prefix("container:") {
                Some(c) => NetMode::Container(c.to_string()),
                None => NetMode::Bridge(n.to_string()),
            },
        }
    }

    pub fn is_bridge(&self) -> bool {
        matches!(self, NetMode::Bridge(_))
    }

    /// The name `inspect` shows as the network mode.
    pub fn name(&self) -> String {
        match self {
            NetMode::Bridge(n) => n.clone(),
            NetMode::Host => "host".into(),
            NetMode::None => "none".into(),
            NetMode::Container(c) => format!("container:{c}"),
        }
    }
}

/// A stored container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub name: String,
    pub image_id: String,
    pub created: String,
    pub config: CreateOptions,
    /// The command as resolved at create time (entrypoint + cmd).
    pub path: String,
    pub args: Vec<String>,
}

/// What the shim records about the running task.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct TaskState {
    pub status: String,
    pub pid: i32,
    /// Start time of `pid` (clock ticks since boot); 0 in states written before it was kept.
    pub pid_start: u64,
    pub shim_pid: u32,
    pub shim_start: u64,
    pub started_at: String,
    pub finished_at: String,
    pub exit_code: i32,
    #[serde(rename = "OOMKilled")]
    pub oom_killed: bool,
    pub error: String,
    pub restart_count: u32,
    pub cgroups: Vec<PathBuf>,
}

/// A container's status, as `ps` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    Paused,
    Restarting,
    Exited,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Exited => "exited",
        }
    }
}

/// Sleeps until the container's monitor exits (it records the end of the container's run
/// first, then exits unless it restarts the container), or at most `max`. A run ends
/// within a poll's latency instead of a polling interval's.
pub(crate) fn wait_for_monitor(c: &Container, max: Duration) {
    let pidfd = (c.task.shim_pid > 0 && c.is_running())
        .then(|| crate::util::pidfd_checked(c.task.shim_pid as i32, c.task.shim_start, None).ok())
        .flatten();
    match pidfd {
        Some(fd) => {
            crate::util::pidfd_wait(fd.as_fd(), max);
        }
        None => std::thread::sleep(Duration::from_millis(20).min(max)),
    }
}

/// A signal by name (`KILL`, `SIGTERM`, any case) or number.
pub fn signal_number(name: &str) -> Option<i32> {
    if let Ok(n) = name.parse::<i32>() {
        return Some(n);
    }
    let upper = name.to_ascii_uppercase();
    Some(match upper.trim_start_matches("SIG") {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "TERM" => libc::SIGTERM,
        "STOP" => libc::SIGSTOP,
        "CONT" => libc::SIGCONT,
        "WINCH" => libc::SIGWINCH,
        "ALRM" => libc::SIGALRM,
        _ => return None,
    })
}

/// One record of a container's log: stream (`stdout`, `stderr`), time (RFC 3339), text.
pub type LogRecord = (String, String, String);

/// A sample of a container's resource use.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub id: String,
    pub name: String,
    /// CPU time used so far, in nanoseconds.
    pub cpu_ns: u64,
    pub memory_usage: u64,
    pub memory_limit: u64,
    pub pids: u64,
    pub running: bool,
}

/// A container and its task, reconciled.
#[derive(Debug, Clone)]
pub struct Container {
    pub record: ContainerRecord,
    pub task: TaskState,
    pub status: Status,
    pub bundle: PathBuf,
}

const NAME_ADJ: &[&str] = &[
    "brave", "calm", "clever", "eager", "fervent", "gentle", "happy", "jolly", "keen", "lucid",
    "merry", "nifty", "quiet", "sharp", "swift", "vivid", "wise", "zen", "bold", "bright",
];
const NAME_NOUN: &[&str] = &[
    "albatross",
    "beacon",
    "cutter",
    "dinghy",
    "ensign",
    "frigate",
    "galley",
    "harbor",
    "inlet",
    "jetty",
    "keel",
    "lantern",
    "mast",
    "narwhal",
    "oar",
    "pilot",
    "quay",
    "rudder",
    "sloop",
    "tiller",
];

/// The containers of an opened root: their records, bundles and monitors, over the
/// images, volumes and networks they use.
#[derive(Clone, Copy)]
pub struct Containers<'s> {
    st: &'s State,
}

impl<'s> Containers<'s> {
    pub fn new(st: &'s State) -> Containers<'s> {
        Containers { st }
    }

    fn images(&self) -> Images<'s> {
        Images::new(self.st)
    }

    fn volumes(&self) -> Volumes<'s> {
        Volumes::new(self.st)
    }

    fn networks(&self) -> Networks<'s> {
        Networks::new(self.st)
    }
}

impl Containers<'_> {
    /// The `ketch-shim` executable: the one the engine was opened with, `KETCH_SHIM`, the
    /// one built into the program (written into the root's `bin/`), then one beside the
    /// running executable (or one directory up, for test binaries in `deps/`) or on `PATH`.
    pub(crate) fn shim(&self) -> crate::Result<PathBuf> {
        self.shim_with(std::env::var_os("KETCH_SHIM"))
    }

    /// [`Containers::shim`], with `from_env` as `KETCH_SHIM`.
    fn shim_with(&self, from_env: Option<std::ffi::OsString>) -> crate::Result<PathBuf> {
        if let Some(p) = &self.st.shim {
            return Ok(p.clone());
        }
        if let Some(p) = from_env {
            return Ok(PathBuf::from(p));
        }
        if let Some(bytes) = self.st.embedded_shim {
            return self.materialized_shim(bytes);
        }
        installed_shim().ok_or_else(|| ContainerError::NoShim.into())
    }

    /// The built-in shim as a file: `bin/ketch-shim-DIGEST` in the root, written once (to a
    /// temporary name, then renamed, so a concurrent start never runs half a file).
    fn materialized_shim(&self, bytes: &[u8]) -> crate::Result<PathBuf> {
        use sha2::Digest;
        let digest = hex::encode(sha2::Sha256::digest(bytes));
        let dir = self.st.root.join("bin");
        let path = dir.join(format!("ketch-shim-{}", &digest[..16]));
        if fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() == bytes.len() as u64) {
            return Ok(path);
        }
        let write = || -> io::Result<()> {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            fs::create_dir_all(&dir)?;
            let tmp = dir.join(format!(".ketch-shim-{}", crate::util::random_hex(8)));
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o755)
                .open(&tmp)?;
            let done = f
                .write_all(bytes)
                .and_then(|()| f.sync_all())
                .and_then(|()| fs::rename(&tmp, &path));
            if done.is_err() {
                let _ = fs::remove_file(&tmp);
            }
            done
        };
        write().map_err(io_err(format!("write {}", path.display())))?;
        Ok(path)
    }
}

/// An installed `ketch-shim`: beside the running executable (or one directory up, for test
/// binaries in `deps/`); in `libexec/ketch/` beside the directory this code was loaded from
/// (libengine installed under a prefix by `make -C capi install`: PREFIX/lib's library
/// finds PREFIX/libexec/ketch/ketch-shim); then on `PATH`.
fn installed_shim() -> Option<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        dirs.push(dir.to_path_buf());
        dirs.push(dir.join(".."));
    }
    if let Some(lib) = loaded_from().as_deref().and_then(Path::parent) {
        dirs.push(lib.join("../libexec/ketch"));
    }
    if let Some(p) = dirs
        .iter()
        .map(|d| d.join("ketch-shim"))
        .find(|p| p.is_file())
    {
        return Some(p);
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("ketch-shim"))
            .find(|p| p.is_file())
    })
}

/// The file this code was loaded from: the shared library it is in, or the executable.
fn loaded_from() -> Option<PathBuf> {
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr fills `info` for an address in a loaded object; the name it points to
    // lives as long as the object, and is copied at once.
    let found = unsafe { libc::dladdr(loaded_from as *const libc::c_void, &mut info) } != 0;
    if !found || info.dli_fname.is_null() {
        return None;
    }
    let name = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) };
    Some(PathBuf::from(std::ffi::OsStr::from_bytes(name.to_bytes())))
}

fn alive(pid: u32, start: u64) -> bool {
    pid > 0 && crate::util::process_alive(pid, start)
}

/// A container whose monitor is setting it up: listed as created, but its processes and
/// cgroups are being made, and removing only its record would leave them running.
fn starting(c: &Container) -> bool {
    c.status == Status::Created && alive(c.task.shim_pid, c.task.shim_start)
}

/// Signals the container's first process, checked to be the one its monitor started; says
/// whether it was signalled.
fn signal_task(c: &Container, sig: i32) -> bool {
    crate::util::pidfd_checked(c.task.pid, c.task.pid_start, Some(&c.record.id))
        .and_then(|fd| crate::util::pidfd_signal(fd.as_fd(), sig))
        .is_ok()
}

/// The start time of the container's first process, to hand to a helper that joins it. A
/// state written before start times were kept has none: the process is then checked by its
/// cgroup, through a pidfd held while its start time is read.
pub(crate) fn task_start(c: &Container) -> u64 {
    if c.task.pid_start != 0 {
        return c.task.pid_start;
    }
    match crate::util::pidfd_checked(c.task.pid, 0, Some(&c.record.id)) {
        Ok(_held) => crate::util::process_start_time(c.task.pid as u32).unwrap_or(0),
        Err(_) => 0,
    }
}

/// SIGKILL to the container: its first process, and every process left in its cgroups.
fn kill_task(c: &Container) {
    signal_task(c, libc::SIGKILL);
    kill_cgroups(&c.record.id, &c.task.cgroups);
}

/// Records a task state the engine reconciled, replacing the file atomically.
fn write_task(bundle: &std::path::Path, task: &TaskState) {
    let tmp = bundle.join(".state.json.engine");
    if fs::write(&tmp, serde_json::to_vec(task).unwrap_or_default()).is_ok() {
        let _ = fs::rename(&tmp, bundle.join("state.json"));
    }
}

/// Removes a container's cgroups, and the `ketch` groups above them once empty, waiting up
/// to `patience` for the last killed processes to be reaped; returns those still there.
fn remove_cgroups(cgroups: &[PathBuf], patience: Duration) -> Vec<PathBuf> {
    let deadline = Instant::now() + patience;
    let mut left = cgroups.to_vec();
    loop {
        left.retain(|cg| match fs::remove_dir(cg) {
            Ok(()) => {
                // Fails while another container's group is inside: then it stays.
                if let Some(parent) = cg.parent() {
                    let _ = fs::remove_dir(parent);
                }
                false
            }
            Err(e) => e.kind() != io::ErrorKind::NotFound,
        });
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// SIGKILL to every process in a container's cgroups, each taken by pidfd and checked to
/// be in them: what is left when a first process cannot be signalled, or of a container that
/// outlived its monitor.
fn kill_cgroups(id: &str, cgroups: &[PathBuf]) {
    for cg in cgroups {
        // v2 (5.14) kills the whole group at once, newcomers included.
        let _ = fs::write(cg.join("cgroup.kill"), "1");
        // A frozen process would wait for the thaw to die.
        let _ = fs::write(cg.join("freezer.state"), "THAWED");
        let _ = fs::write(cg.join("cgroup.freeze"), "0");
        let procs = fs::read_to_string(cg.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            if let Ok(fd) = crate::util::pidfd_checked(pid, 0, Some(id)) {
                let _ = crate::util::pidfd_signal(fd.as_fd(), libc::SIGKILL);
            }
        }
    }
}

impl Containers<'_> {
    pub(crate) fn containers_dir(&self) -> PathBuf {
        self.st.root.join("containers")
    }

    fn load_records(&self) -> crate::Result<Vec<ContainerRecord>> {
        self.st.db.read(|tx| {
            let mut stmt = tx.prepare("SELECT config FROM containers ORDER BY created DESC")?;
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows
                .into_iter()
                .filter_map(|c| serde_json::from_str(&c).ok())
                .collect())
        })
    }

    /// Finds a container by full ID, name, or unique ID prefix, with indexed look-ups:
    /// this is on the path of every container command.
    fn find(&self, name: &str) -> crate::Result<ContainerRecord> {
        let name = name.trim_start_matches('/');
        let found: Vec<String> = self.st.db.read(|tx| {
            let exact: Option<String> = tx
                .query_row(
                    "SELECT config FROM containers WHERE id = ?1 OR name = ?1",
                    params![name],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(c) = exact {
                return Ok::<_, crate::Error>(vec![c]);
            }
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Ok(vec![]);
            }
            // IDs are lowercase hex: a prefix is the range [prefix, prefix + 'g').
            let mut stmt =
                tx.prepare("SELECT config FROM containers WHERE id >= ?1 AND id < ?2 LIMIT 2")?;
            let rows = stmt
                .query_map(params![name, format!("{name}g")], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })?;
        match found.as_slice() {
            [one] => serde_json::from_str(one).map_err(|e| {
                ContainerError::Invalid {
                    reason: format!("container record {name}: {e}"),
                }
                .into()
            }),
            [] => Err(ContainerError::NotFound {
                name: name.to_string(),
            }
            .into()),
            _ => Err(ContainerError::Invalid {
                reason: format!("multiple containers found with provided prefix: {name}"),
            }
            .into()),
        }
    }

    /// Reads a container's task state and reconciles it: a task whose shim is gone has
    /// exited, whatever its last record says.
    fn refresh(&self, record: ContainerRecord) -> crate::Result<Container> {
        let bundle = self.containers_dir().join(&record.id);
        let mut task: TaskState = fs::read(bundle.join("state.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let mut status = match task.status.as_str() {
            "" => Status::Created,
            "running" => Status::Running,
            "restarting" => Status::Restarting,
            _ => Status::Exited,
        };
        // A monitor that is gone has either recorded the end (perhaps after the first read:
        // read again, once it is known gone) or was killed.
        let gone = matches!(status, Status::Running | Status::Restarting)
            && !alive(task.shim_pid, task.shim_start);
        let recorded = gone
            .then(|| {
                fs::read(bundle.join("state.json"))
                    .ok()
                    .and_then(|b| serde_json::from_slice::<TaskState>(&b).ok())
                    .filter(|t| t.status == "exited")
            })
            .flatten();
        if let Some(last) = recorded {
            task = last;
            status = Status::Exited;
        } else if gone {
            // The monitor was killed. Its container died with it (parent-death signal), and
            // whatever escaped that (a process that took another identity) is killed now:
            // nothing of a container runs on unwatched. Then its cgroups go.
            kill_cgroups(&record.id, &task.cgroups);
            // What cannot go yet (a killed process not yet reaped) stays recorded, for the
            // next look to remove.
            task.cgroups = remove_cgroups(&task.cgroups, Duration::from_millis(500));
            task.status = "exited".into();
            if task.exit_code == 0 {
                task.exit_code = 137;
            }
            if task.error.is_empty() {
                task.error = "the container's monitor ended without recording an exit".into();
            }
            task.pid = 0;
            if task.finished_at.is_empty() {
                task.finished_at = crate::db::now();
            }
            write_task(&bundle, &task);
            status = Status::Exited;
        } else if status == Status::Exited
            && !task.cgroups.is_empty()
            && !alive(task.shim_pid, task.shim_start)
        {
            let left = remove_cgroups(&task.cgroups, Duration::ZERO);
            if left.len() != task.cgroups.len() {
                task.cgroups = left;
                write_task(&bundle, &task);
            }
        }
        if status == Status::Running && self.frozen(&task) {
            status = Status::Paused;
        }
        let running = matches!(
            status,
            Status::Running | Status::Paused | Status::Restarting
        );
        // The one process that sees a container stop records it.
        if self.set_running(&record.id, running)? && !running {
            let code = task.exit_code.to_string();
            self.event(&record, "die", &[("exitCode", &code)]);
        }
        Ok(Container {
            record,
            task,
            status,
            bundle,
        })
    }

    /// Records whether the container runs; says whether that changed.
    fn set_running(&self, id: &str, running: bool) -> crate::Result<bool> {
        let current: Option<i64> = self.st.db.read(|tx| {
            Ok::<_, crate::Error>(
                tx.query_row(
                    "SELECT running FROM containers WHERE id = ?1",
                    params![id],
                    |r| r.get(0),
                )
                .optional()?,
            )
        })?;
        if current.is_some_and(|c| (c != 0) != running) {
            let changed = self.st.db.write(|tx| {
                let n = tx.execute(
                    "UPDATE containers SET running = ?1 WHERE id = ?2 AND running != ?1",
                    params![running as i64, id],
                )?;
                Ok::<_, crate::Error>(n > 0)
            })?;
            return Ok(changed);
        }
        Ok(false)
    }

    /// A container event, with its image and name.
    fn event(&self, r: &ContainerRecord, action: &str, extra: &[(&str, &str)]) {
        let mut attrs = vec![
            ("image", r.config.image.as_str()),
            ("name", r.name.as_str()),
        ];
        attrs.extend_from_slice(extra);
        crate::events::record(self.st, "container", action, &r.id, &attrs);
    }

    fn frozen(&self, task: &TaskState) -> bool {
        task.cgroups.iter().any(|cg| {
            fs::read_to_string(cg.join("freezer.state")).is_ok_and(|s| s.trim() == "FROZEN")
                || fs::read_to_string(cg.join("cgroup.freeze")).is_ok_and(|s| s.trim() == "1")
        })
    }

    pub fn get(&self, name: &str) -> crate::Result<Container> {
        let r = self.find(name)?;
        self.refresh(r)
    }

    pub fn list(&self, all: bool) -> crate::Result<Vec<Container>> {
        let mut out = Vec::new();
        for r in self.load_records()? {
            let c = self.refresh(r)?;
            if all
                || matches!(
                    c.status,
                    Status::Running | Status::Paused | Status::Restarting
                )
            {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// Creates a container from an image: its writable snapshot, its bundle, its record.
    pub fn create(&self, opts: &CreateOptions) -> crate::Result<Container> {
        if let Some(n) = &opts.name
            && !crate::util::valid_name(n)
        {
            return Err(ContainerError::BadName { name: n.clone() }.into());
        }
        let lease = Lease::new(&self.st.db)?;
        let res = self.create_leased(&lease, opts);
        let released = self.images().release(lease);
        let c = res?;
        released?;
        Ok(c)
    }

    fn create_leased(&self, lease: &Lease, opts: &CreateOptions) -> crate::Result<Container> {
        let (image, top, config_raw) = {
            let (image, layers) = self.st.db.read(|tx| {
                let image = crate::image::resolve(tx, &opts.image)?.image;
                let layers = crate::image::image_layers(tx, &image.id)?;
                Ok::<_, crate::Error>((image, layers))
            })?;
            let raw: serde_json::Value =
                serde_json::from_slice(&self.st.content.read(&image.id, 8 << 20)?)
                    .map_err(|e| crate::image::malformed("image config", e))?;
            (image, layers.last().map(|l| l.chain_id.to_string()), raw)
        };
        let cfg = config_raw.get("config").cloned().unwrap_or_default();
        let strings = |v: Option<&serde_json::Value>| -> Vec<String> {
            v.and_then(|v| v.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let entrypoint = match &opts.entrypoint {
            Some(e) => e.clone(),
            None => strings(cfg.get("Entrypoint")),
        };
        let cmd = if !opts.cmd.is_empty() {
            opts.cmd.clone()
        } else if opts.entrypoint.is_some() {
            vec![]
        } else {
            strings(cfg.get("Cmd"))
        };
        let args: Vec<String> = entrypoint.iter().chain(&cmd).cloned().collect();
        if args.is_empty() {
            return Err(ContainerError::Invalid {
                reason: "no command specified".into(),
            }
            .into());
        }
        let id = crate::util::random_hex(32);
        let generated = opts.name.is_none();
        let name = match &opts.name {
            Some(n) => n.clone(),
            None => random_name(),
        };
        // Env: image's, then the user's, later keys replacing earlier ones.
        let mut env: Vec<String> = strings(cfg.get("Env"));
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.insert(
                0,
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            );
        }
        for e in &opts.env {
            let key = e.split('=').next().unwrap_or("");
            env.retain(|x| x.split('=').next() != Some(key));
            env.push(e.clone());
        }
        if opts.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
            env.push("TERM=xterm".into());
        }
        let hostname = opts
            .hostname
            .clone()
            .unwrap_or_else(|| id[..12].to_string());
        env.retain(|x| !x.starts_with("HOSTNAME="));
        env.push(format!("HOSTNAME={hostname}"));
        let cwd = opts
            .workdir
            .clone()
            .or_else(|| {
                cfg.get("WorkingDir")
                    .and_then(|w| w.as_str())
                    .filter(|w| !w.is_empty())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| "/".into());
        let user = opts.user.clone().or_else(|| {
            cfg.get("User")
                .and_then(|u| u.as_str())
                .filter(|u| !u.is_empty())
                .map(str::to_string)
        });
        let net_mode = NetMode::of(opts);
        // On a user-defined network, the container asks its monitor for names.
        let mut embedded_dns = false;
        match &net_mode {
            NetMode::Bridge(n) => {
                let rec = self.networks().find(n)?;
                embedded_dns = !rec.predefined();
                if opts.ip.is_some() && rec.predefined() {
                    return Err(ContainerError::Invalid {
                        reason:
                            "user specified IP address is supported on user defined networks only"
                                .into(),
                    }
                    .into());
                }
            }
            NetMode::Container(other) => {
                self.find(other)?;
            }
            NetMode::Host | NetMode::None => {
                if opts.ip.is_some() {
                    return Err(ContainerError::Invalid {
                        reason:
                            "user specified IP address is supported on user defined networks only"
                                .into(),
                    }
                    .into());
                }
            }
        }
        let mut publish = opts.publish.clone();
        if opts.publish_all
            && let Some(exposed) = cfg.get("ExposedPorts").and_then(|e| e.as_object())
        {
            for key in exposed.keys() {
                let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
                let Ok(port) = port.parse::<u16>() else {
                    continue;
                };
                if !publish
                    .iter()
                    .any(|p| p.container_port == port && p.proto == proto)
                {
                    publish.push(crate::network::firewall::PortMap {
                        proto: proto.to_string(),
                        host_ip: None,
                        host_port: 0,
                        container_port: port,
                    });
                }
            }
        }
        match &net_mode {
            NetMode::Container(_) if !publish.is_empty() => {
                return Err(ContainerError::Invalid {
                    reason:
                        "conflicting options: port publishing and the container type network mode"
                            .into(),
                }
                .into());
            }
            // As Docker: published ports mean nothing without a network of its own.
            NetMode::Host | NetMode::None => publish.clear(),
            _ => {}
        }
        if let Some(ip) = &opts.ip
            && ip.parse::<std::net::Ipv4Addr>().is_err()
        {
            return Err(ContainerError::Invalid {
                reason: format!("invalid IPv4 address: {ip}"),
            }
            .into());
        }
        let user_mounts = self.resolve_mounts(opts, &cfg)?;
        // The record keeps the configuration in effect, image defaults merged, as Docker's
        // inspect shows it.
        let mut opts = opts.clone();
        opts.user = user;
        opts.name = Some(name.clone());
        opts.hostname = Some(hostname.clone());
        opts.publish = publish;
        opts.mounts = user_mounts;
        // HOSTNAME is set at run time, as Docker does, not part of the configuration.
        opts.env = env
            .iter()
            .filter(|e| !e.starts_with("HOSTNAME="))
            .cloned()
            .collect();
        opts.cmd = cmd;
        opts.entrypoint = Some(entrypoint);
        if opts.workdir.is_none() && cwd != "/" {
            opts.workdir = Some(cwd.clone());
        }

        // The bundle is written under a temp name naming this process, and renamed into
        // place in the transaction that records the container: a crash leaves either a
        // temp directory of a dead process or a recorded container, never an orphan that
        // looks like a container.
        let bundle = self.containers_dir().join(&id);
        let pid = std::process::id();
        let staging = self.containers_dir().join(format!(
            "tmp-{pid}-{}-{id}",
            crate::util::process_start_time(pid).unwrap_or(0)
        ));
        fs::create_dir_all(&staging).map_err(io_err(format!("create {}", staging.display())))?;
        let key = format!("container-{id}");
        lease.add(&self.st.db, Resource::Snapshot(key.clone()))?;
        let result = (|| -> crate::Result<()> {
            let mounts = self.st.snapshots.prepare(&key, top.as_deref())?;
            self.copy_up(&opts.mounts, &mounts)?;
            let user_mounts = self.spec_mounts(&opts.mounts)?;
            fs::write(staging.join("hostname"), format!("{hostname}\n"))
                .map_err(io_err("write hostname"))?;
            fs::write(
                staging.join("hosts"),
                hosts_file(&hostname, None, &opts.extra_hosts),
            )
            .map_err(io_err("write hosts"))?;
            fs::write(
                staging.join("resolv.conf"),
                resolv_conf(embedded_dns, &opts.dns),
            )
            .map_err(io_err("write resolv.conf"))?;
            let nofile = {
                let mut l = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) };
                l.rlim_max.min(1 << 20)
            };
            let devices =
                spec::devices(&opts).map_err(|reason| ContainerError::Invalid { reason })?;
            let seccomp = spec::seccomp(&opts, &spec::capabilities(&opts))
                .map_err(|reason| ContainerError::Invalid { reason })?;
            let cx = spec::SpecContext {
                devices,
                seccomp,
                id: &id,
                rootfs_path: bundle.join("rootfs").display().to_string(),
                rootfs_mounts: serde_json::to_value(&mounts).unwrap_or_default(),
                hostname: hostname.clone(),
                args: args.clone(),
                env,
                cwd,
                bundle: bundle.display().to_string(),
                nofile,
                netns: match &net_mode {
                    NetMode::Bridge(_) => {
                        Some(self.networks().netns_path(&id).display().to_string())
                    }
                    // Filled in at each start, with the other container's process then.
                    NetMode::Container(_) => Some("/proc/self/ns/net".into()),
                    NetMode::Host | NetMode::None => None,
                },
                // The list of its networks' records files, kept by the engine.
                dns_records: net_mode
                    .is_bridge()
                    .then(|| bundle.join("dns.list").display().to_string()),
                user_mounts,
                dns_upstream: if opts.dns.is_empty() {
                    host_nameservers()
                } else {
                    opts.dns.clone()
                },
            };
            let spec_json = spec::build(&opts, &cx);
            // The OCI model checks the document is a valid runtime spec.
            let spec: oci_spec::runtime::Spec =
                serde_json::from_value(spec_json).map_err(|e| ContainerError::Invalid {
                    reason: format!("runtime spec: {e}"),
                })?;
            fs::write(
                staging.join("config.json"),
                serde_json::to_vec_pretty(&spec).unwrap_or_default(),
            )
            .map_err(io_err("write config.json"))?;
            let record = ContainerRecord {
                id: id.clone(),
                name: name.clone(),
                image_id: image.id.to_string(),
                created: crate::db::now(),
                config: opts.clone(),
                path: args[0].clone(),
                args: args[1..].to_vec(),
            };
            self.st.db.write(|tx| {
                let mut record = record.clone();
                let taken = |n: &str| -> rusqlite::Result<Option<String>> {
                    tx.query_row("SELECT id FROM containers WHERE name = ?1", params![n], |r| r.get(0)).optional()
                };
                if let Some(other) = taken(&record.name)? {
                    if !generated {
                        return Err(ContainerError::NameInUse { name: record.name.clone(), id: other }.into());
                    }
                    // A made-up name another container has: make up another, as Docker does.
                    let mut fresh = random_name();
                    for i in 0.. {
                        if taken(&fresh)?.is_none() {
                            break;
                        }
                        fresh = if i < 16 { random_name() } else { format!("{}_{}", random_name(), &id[..6]) };
                    }
                    record.name = fresh.clone();
                    record.config.name = Some(fresh);
                }
                let name = record.name.clone();
                tx.execute(
                    "INSERT INTO containers (id, name, image_id, snapshot_key, created, running, config) VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6)",
                    params![id, name, image.id.to_string(), key, record.created, serde_json::to_string(&record).unwrap_or_default()],
                )?;
                fs::rename(&staging, &bundle).map_err(io_err(format!("create {}", bundle.display())))?;
                Ok::<_, crate::Error>(())
            })
        })();
        if let Err(e) = result {
            let _ = self.st.snapshots.remove(&key);
            let _ = fs::remove_dir_all(&staging);
            return Err(e);
        }
        let c = self.get(&id)?;
        self.event(&c.record, "create", &[]);
        Ok(c)
    }

    /// Starts a container's task. Detached: returns once it runs (or failed to start), with
    /// the task's monitor left running. Attached: the monitor shares this process's stdio
    /// and this returns the container's exit status when it ends.
    pub fn start(&self, name: &str, attach: bool, stdin: bool) -> crate::Result<i32> {
        self.start_with(name, attach, stdin, &|_| {})
    }

    /// [`Self::start`], telling `on_spawn` the monitor's PID as soon as it runs,
    /// so that a front door can pass signals on to it.
    pub fn start_with(
        &self,
        name: &str,
        attach: bool,
        stdin: bool,
        on_spawn: &dyn Fn(u32),
    ) -> crate::Result<i32> {
        let mode = if attach {
            ShimMode::Attached
        } else {
            ShimMode::Detached
        };
        self.start_task(name, mode, stdin, on_spawn)
    }

    /// Starts a container's task detached, its output also copied to `stream` (in Docker's
    /// multiplexed frames when `framed`) and, with `stdin`, `stream` read as its input: the
    /// daemon's end of an attached client's connection. Returns once the task runs; the
    /// stream ends when the task does.
    pub fn start_streaming(
        &self,
        name: &str,
        stream: OwnedFd,
        stdin: bool,
        framed: bool,
    ) -> crate::Result<()> {
        self.start_task(name, ShimMode::Stream { stream, framed }, stdin, &|_| {})
            .map(|_| ())
    }

    /// Sets the terminal size of a container started with a terminal and a stream.
    pub fn resize(&self, name: &str, rows: u16, cols: u16) -> crate::Result<()> {
        let c = self.get(name)?;
        if !c.is_running() {
            return Err(ContainerError::Conflict {
                reason: format!("container {} is not running", c.record.id),
            }
            .into());
        }
        let path = c.bundle.join("winsize");
        let tmp = c.bundle.join(".winsize.tmp");
        fs::write(&tmp, format!("{rows} {cols}\n"))
            .and_then(|()| fs::rename(&tmp, &path))
            .map_err(io_err("write winsize"))?;
        // The container's monitor reads the size on SIGWINCH.
        if let Ok(fd) = crate::util::pidfd_checked(c.task.shim_pid as i32, c.task.shim_start, None)
        {
            let _ = crate::util::pidfd_signal(fd.as_fd(), libc::SIGWINCH);
        }
        Ok(())
    }

    fn start_task(
        &self,
        name: &str,
        mode: ShimMode,
        stdin: bool,
        on_spawn: &dyn Fn(u32),
    ) -> crate::Result<i32> {
        let attach = !matches!(mode, ShimMode::Detached);
        let c = self.get(name)?;
        match c.status {
            Status::Running | Status::Paused | Status::Restarting => {
                if attach {
                    return Err(ContainerError::Conflict {
                        reason: format!("container {} is already running", c.record.id),
                    }
                    .into());
                }
                return Ok(0);
            }
            Status::Created | Status::Exited => {}
        }
        let shim = self.shim()?;
        let _ = fs::remove_file(c.bundle.join("stop-requested"));
        let _ = fs::remove_file(c.bundle.join("state.json"));
        self.prepare_network(&c)?;
        let started = self.spawn_shim(&c, &shim, mode, stdin, on_spawn);
        if started.is_err() {
            let _ = self.networks().release_endpoints(&c.record.id);
        }
        started
    }

    /// What the container's network needs before its process starts: on a bridge network,
    /// its namespace, address and veth pair; with `container:X`, X's namespace.
    fn prepare_network(&self, c: &Container) -> crate::Result<()> {
        match NetMode::of(&c.record.config) {
            NetMode::Bridge(_) => {
                let attachments = c.record.config.attachments();
                let eps =
                    self.attach_networks(&c.record.id, &attachments, &c.record.config.publish)?;
                self.write_dns_list(&c.record.id, &c.bundle)?;
                // The monitor holds the host ports while the container runs (so nothing else
                // takes them) and withdraws them when it stops.
                let ports = c.bundle.join("ports.json");
                let down = c.bundle.join("ports-down.json");
                let first = eps.first();
                if let Some(ep) = first.filter(|ep| !ep.ports.is_empty()) {
                    let rec = self.networks().find(&ep.network_id)?;
                    fs::write(&ports, serde_json::to_vec(&ep.ports).unwrap_or_default())
                        .map_err(io_err("write ports.json"))?;
                    let commands =
                        crate::network::firewall::withdraw_commands(&rec.bridge, ep.ip, &ep.ports);
                    fs::write(&down, serde_json::to_vec(&commands).unwrap_or_default())
                        .map_err(io_err("write ports-down.json"))?;
                } else {
                    let _ = fs::remove_file(&ports);
                    let _ = fs::remove_file(&down);
                }
                let hostname = c.record.config.hostname.clone().unwrap_or_default();
                fs::write(
                    c.bundle.join("hosts"),
                    hosts_file(
                        &hostname,
                        first.map(|ep| ep.ip),
                        &c.record.config.extra_hosts,
                    ),
                )
                .map_err(io_err("write hosts"))?;
            }
            NetMode::Container(other) => {
                let o = self.get(&other)?;
                if !o.is_running() || o.task.pid <= 0 {
                    return Err(ContainerError::Conflict {
                        reason: format!(
                            "cannot join network namespace of a non running container: {other}"
                        ),
                    }
                    .into());
                }
                let path = c.bundle.join("config.json");
                let mut spec: serde_json::Value = fs::read(&path)
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .ok_or_else(|| ContainerError::Invalid {
                        reason: format!("read {}", path.display()),
                    })?;
                if let Some(nss) = spec["linux"]["namespaces"].as_array_mut() {
                    for ns in nss.iter_mut().filter(|ns| ns["type"] == "network") {
                        ns["path"] = serde_json::json!(format!("/proc/{}/ns/net", o.task.pid));
                    }
                }
                // The monitor takes the namespace only from that very process.
                spec["annotations"]["io.ketch.join.start"] =
                    serde_json::json!(task_start(&o).to_string());
                spec["annotations"]["io.ketch.join.owner"] = serde_json::json!(o.record.id);
                let tmp = c.bundle.join(".config.json.tmp");
                fs::write(&tmp, serde_json::to_vec_pretty(&spec).unwrap_or_default())
                    .and_then(|()| fs::rename(&tmp, &path))
                    .map_err(io_err("write config.json"))?;
            }
            NetMode::None => {
                // A container the engine once gave a namespace of its own (its spec names it)
                // keeps one, with loopback only.
                let spec = fs::read_to_string(c.bundle.join("config.json")).unwrap_or_default();
                let path = self.networks().netns_path(&c.record.id);
                if spec.contains(&path.display().to_string()) {
                    self.attach_networks(&c.record.id, &[], &[])?;
                }
            }
            NetMode::Host => {}
        }
        Ok(())
    }

    fn spawn_shim(
        &self,
        c: &Container,
        shim: &std::path::Path,
        mode: ShimMode,
        stdin: bool,
        on_spawn: &dyn Fn(u32),
    ) -> crate::Result<i32> {
        let mut cmd = Command::new(shim);
        match &mode {
            ShimMode::Detached => {}
            ShimMode::Attached => {
                cmd.arg("--attach");
            }
            ShimMode::Stream { stream, framed } => {
                cmd.arg("--stream");
                if *framed {
                    cmd.arg("--framed");
                }
                let dup = |f: &OwnedFd| f.try_clone().map_err(io_err("duplicate the stream"));
                cmd.stdin(Stdio::from(dup(stream)?))
                    .stdout(Stdio::from(dup(stream)?))
                    .stderr(Stdio::from(dup(stream)?));
            }
        }
        if stdin {
            cmd.arg("--stdin");
        }
        cmd.arg(&c.bundle);
        if let ShimMode::Stream { .. } = mode {
            spawn_reporting(cmd, shim, true, false)?;
            self.set_running(&c.record.id, true)?;
            self.event(&c.record, "start", &[]);
            return Ok(0);
        }
        if let ShimMode::Attached = mode {
            self.set_running(&c.record.id, true)?;
            self.event(&c.record, "start", &[]);
            let mut child = cmd
                .spawn()
                .map_err(io_err(format!("run {}", shim.display())))?;
            on_spawn(child.id());
            let status = child.wait().map_err(io_err("wait for ketch-shim"))?;
            let code = status.code().unwrap_or(125);
            // Its monitor let go of the namespace; the addresses go too, unless a start
            // since has made the container new ones.
            self.release_unused(&c.record.id)?;
            let c = self.get(&c.record.id)?;
            if !c.task.error.is_empty() && c.task.pid == 0 && c.task.started_at.is_empty() {
                return Err(ContainerError::Start {
                    code: c.task.exit_code,
                    message: c.task.error,
                }
                .into());
            }
            return Ok(code);
        }
        spawn_reporting(cmd, shim, true, true)?;
        self.set_running(&c.record.id, true)?;
        self.event(&c.record, "start", &[]);
        Ok(0)
    }

    /// Removes container directories no record claims: staging directories of dead
    /// processes. Runs under the write lock, so a directory being renamed into place by a
    /// live process is either still staging or already recorded.
    pub(crate) fn cleanup_bundles(&self) -> crate::Result<()> {
        let dir = self.containers_dir();
        let Ok(entries) = fs::read_dir(&dir) else {
            return Ok(());
        };
        let names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        let doomed = self.st.db.write(|tx| {
            let mut doomed = Vec::new();
            for n in &names {
                let orphan = if n.starts_with("rm-") {
                    true
                } else if let Some(rest) = n.strip_prefix("tmp-") {
                    !crate::util::maker_alive(rest)
                } else {
                    let known: i64 = tx.query_row(
                        "SELECT COUNT(*) FROM containers WHERE id = ?1",
                        params![n],
                        |r| r.get(0),
                    )?;
                    known == 0
                };
                if orphan {
                    doomed.push(dir.join(n));
                }
            }
            Ok::<_, crate::Error>(doomed)
        })?;
        for d in doomed {
            let _ = fs::remove_dir_all(d);
        }
        Ok(())
    }

    /// Sends a signal to the container's main process.
    pub fn kill(&self, name: &str, signal: i32) -> crate::Result<()> {
        let c = self.get(name)?;
        if !matches!(c.status, Status::Running | Status::Paused) || c.task.pid <= 0 {
            return Err(ContainerError::Conflict {
                reason: format!(
                    "Cannot kill container: {}: container {} is not running",
                    name, c.record.id
                ),
            }
            .into());
        }
        let task = crate::util::pidfd_checked(c.task.pid, c.task.pid_start, Some(&c.record.id))
            .map_err(|e| ContainerError::Conflict {
                reason: format!("Cannot kill container: {name}: {e}"),
            })?;
        if signal == libc::SIGKILL || signal == libc::SIGTERM {
            // Signals that end the task also end its restart policy, as `docker kill` does.
            let _ = fs::write(c.bundle.join("stop-requested"), b"");
        }
        crate::util::pidfd_signal(task.as_fd(), signal).map_err(io_err("kill"))?;
        self.event(&c.record, "kill", &[("signal", &signal.to_string())]);
        Ok(())
    }

    /// Waits until the container is not running; returns its exit status.
    pub fn wait(&self, name: &str, timeout: Option<Duration>) -> crate::Result<i32> {
        let record = self.find(name)?;
        let start = Instant::now();
        loop {
            let c = self.refresh(record.clone())?;
            if matches!(c.status, Status::Exited | Status::Created) && c.task.status != "restarting"
            {
                return Ok(c.task.exit_code);
            }
            if timeout.is_some_and(|t| start.elapsed() > t) {
                return Err(ContainerError::Conflict {
                    reason: "timed out waiting for the container".into(),
                }
                .into());
            }
            wait_for_monitor(&c, Duration::from_millis(100));
        }
    }

    /// SIGTERM (or the image's stop signal), then SIGKILL after `timeout`.
    pub fn stop(&self, name: &str, timeout: Duration) -> crate::Result<()> {
        let c = self.get(name)?;
        if !matches!(
            c.status,
            Status::Running | Status::Paused | Status::Restarting
        ) {
            return Ok(());
        }
        let _ = fs::write(c.bundle.join("stop-requested"), b"");
        if c.status == Status::Paused {
            self.thaw(&c);
        }
        signal_task(&c, libc::SIGTERM);
        if self.wait(name, Some(timeout)).is_err() {
            let c = self.get(name)?;
            kill_task(&c);
            self.wait(name, Some(Duration::from_secs(30)))?;
        }
        self.event(&c.record, "stop", &[]);
        Ok(())
    }

    fn thaw(&self, c: &Container) {
        for cg in &c.task.cgroups {
            let _ = fs::write(cg.join("freezer.state"), "THAWED");
            let _ = fs::write(cg.join("cgroup.freeze"), "0");
        }
    }

    /// Removes a container: its task (with `force`), snapshot, bundle and record.
    pub fn remove(&self, name: &str, force: bool) -> crate::Result<()> {
        self.remove_with(name, force, false)
    }

    /// `rm [-f] [-v]`: with `volumes`, the container's anonymous volumes go with it (those no
    /// other container uses).
    pub fn remove_with(&self, name: &str, force: bool, volumes: bool) -> crate::Result<()> {
        let mut c = self.get(name)?;
        if starting(&c) {
            if !force {
                return Err(ContainerError::Conflict {
                    reason: format!(
                        "cannot remove container \"/{}\": container is starting: wait for it to start, or force remove",
                        c.record.name
                    ),
                }
                .into());
            }
            // Its monitor goes, and with it the setup (parent-death signal); then whatever
            // it made, as for any monitor that was killed.
            if let Ok(fd) =
                crate::util::pidfd_checked(c.task.shim_pid as i32, c.task.shim_start, None)
            {
                let _ = crate::util::pidfd_signal(fd.as_fd(), libc::SIGKILL);
                crate::util::pidfd_wait(fd.as_fd(), Duration::from_secs(10));
            }
            c = self.get(&c.record.id)?;
        }
        if matches!(
            c.status,
            Status::Running | Status::Paused | Status::Restarting
        ) {
            if !force {
                return Err(ContainerError::Conflict {
                    reason: format!(
                        "cannot remove container \"/{}\": container is running: stop the container before removing or force remove",
                        c.record.name
                    ),
                }
                .into());
            }
            let _ = fs::write(c.bundle.join("stop-requested"), b"");
            self.thaw(&c);
            kill_task(&c);
            self.wait(name, Some(Duration::from_secs(30)))?;
            c = self.get(&c.record.id)?;
        }
        // Cgroups a killed container left (its last processes not yet reaped) go with it.
        if !c.task.cgroups.is_empty() && !alive(c.task.shim_pid, c.task.shim_start) {
            kill_cgroups(&c.record.id, &c.task.cgroups);
            remove_cgroups(&c.task.cgroups, Duration::from_secs(2));
        }
        // One transaction forgets the container, hands its snapshot to a lease and moves
        // its bundle aside; a crash after it leaves a dead lease, whose recovery removes
        // both.
        self.networks().release_endpoints(&c.record.id)?;
        let key = format!("container-{}", c.record.id);
        let doomed = self.containers_dir().join(format!("rm-{}", c.record.id));
        let lease = Lease::new(&self.st.db)?;
        self.st.db.write(|tx| {
            lease.add_in(tx, Resource::Snapshot(key.clone()))?;
            tx.execute("DELETE FROM containers WHERE id = ?1", params![c.record.id])?;
            match fs::rename(&c.bundle, &doomed) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io_err(format!("remove {}", c.bundle.display()))(e)),
            }
        })?;
        let _ = fs::remove_dir_all(&doomed);
        self.images().release(lease)?;
        self.event(&c.record, "destroy", &[]);
        if volumes {
            for m in c.record.config.mounts.iter().filter(|m| m.kind == "volume") {
                let anonymous = self.volumes().inspect(&m.source).is_ok_and(|v| v.anonymous);
                if anonymous && !self.volumes().in_use(&m.source)? {
                    let _ = self.volumes().remove(&m.source, false);
                }
            }
        }
        Ok(())
    }

    /// Freezes every process of a running container.
    pub fn pause(&self, name: &str) -> crate::Result<()> {
        let c = self.get(name)?;
        match c.status {
            Status::Running => {}
            Status::Paused => {
                return Err(ContainerError::Conflict {
                    reason: format!("container {} is already paused", c.record.id),
                }
                .into());
            }
            _ => {
                return Err(ContainerError::Conflict {
                    reason: format!("container {} is not running", c.record.id),
                }
                .into());
            }
        }
        self.freeze(&c, true)?;
        self.event(&c.record, "pause", &[]);
        Ok(())
    }

    /// Thaws a paused container.
    pub fn unpause(&self, name: &str) -> crate::Result<()> {
        let c = self.get(name)?;
        if c.status != Status::Paused {
            return Err(ContainerError::Conflict {
                reason: format!("container {} is not paused", c.record.id),
            }
            .into());
        }
        self.freeze(&c, false)?;
        self.event(&c.record, "unpause", &[]);
        Ok(())
    }

    fn freeze(&self, c: &Container, frozen: bool) -> crate::Result<()> {
        // v1: the freezer hierarchy; v2: cgroup.freeze in the unified group.
        let target = c.task.cgroups.iter().find_map(|cg| {
            if cg.join("freezer.state").exists() {
                Some((
                    cg.join("freezer.state"),
                    if frozen { "FROZEN" } else { "THAWED" },
                ))
            } else if cg.join("cgroup.freeze").exists() {
                Some((cg.join("cgroup.freeze"), if frozen { "1" } else { "0" }))
            } else {
                None
            }
        });
        let Some((file, value)) = target else {
            return Err(ContainerError::Conflict {
                reason: "this host has no freezer cgroup".into(),
            }
            .into());
        };
        fs::write(&file, value).map_err(io_err(format!("write {}", file.display())))?;
        Ok(())
    }

    /// PIDs (host view) of every process in a running container.
    pub fn pids(&self, name: &str) -> crate::Result<Vec<i32>> {
        let c = self.get(name)?;
        if !c.is_running() {
            return Err(ContainerError::Conflict {
                reason: format!("container {} is not running", c.record.id),
            }
            .into());
        }
        let mut pids: Vec<i32> = c
            .task
            .cgroups
            .iter()
            .find_map(|cg| fs::read_to_string(cg.join("cgroup.procs")).ok())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        pids.sort_unstable();
        Ok(pids)
    }

    /// One sample of a container's resource use.
    pub fn stats(&self, name: &str) -> crate::Result<Stats> {
        let c = self.get(name)?;
        let read = |file: &str| -> Option<String> {
            c.task
                .cgroups
                .iter()
                .find_map(|cg| fs::read_to_string(cg.join(file)).ok())
        };
        let num = |file: &str| {
            read(file).and_then(|v| {
                v.split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
            })
        };
        let kv = |file: &str, key: &str| {
            read(file).and_then(|v| {
                v.lines().find_map(|l| {
                    l.strip_prefix(key)
                        .and_then(|r| r.trim().parse::<u64>().ok())
                })
            })
        };
        let host_mem = fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines().find_map(|l| {
                    l.strip_prefix("MemTotal:")
                        .and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                })
            })
            .map_or(0, |k| k * 1024);
        // v1: cpuacct.usage (ns), memory.usage_in_bytes less inactive file cache, as Docker;
        // v2: cpu.stat usage_usec, memory.current less inactive_file.
        let cpu_ns = num("cpuacct.usage")
            .or_else(|| kv("cpu.stat", "usage_usec ").map(|u| u * 1000))
            .unwrap_or(0);
        let (usage, inactive) = match num("memory.usage_in_bytes") {
            Some(u) => (u, kv("memory.stat", "total_inactive_file ").unwrap_or(0)),
            None => (
                num("memory.current").unwrap_or(0),
                kv("memory.stat", "inactive_file ").unwrap_or(0),
            ),
        };
        let limit = num("memory.limit_in_bytes")
            .or_else(|| num("memory.max"))
            .unwrap_or(u64::MAX)
            .min(host_mem.max(1));
        Ok(Stats {
            id: c.record.id.clone(),
            name: c.record.name.clone(),
            cpu_ns,
            memory_usage: usage.saturating_sub(inactive),
            memory_limit: limit,
            pids: num("pids.current").unwrap_or(0),
            running: c.is_running(),
        })
    }

    /// Gives a container a new name.
    pub fn rename(&self, name: &str, new_name: &str) -> crate::Result<()> {
        let new_name = new_name.trim_start_matches('/');
        if !crate::util::valid_name(new_name) {
            return Err(ContainerError::BadName {
                name: new_name.to_string(),
            }
            .into());
        }
        let mut record = self.find(name)?;
        self.st.db.write(|tx| {
            let taken: Option<String> = tx
                .query_row(
                    "SELECT id FROM containers WHERE name = ?1",
                    params![new_name],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(other) = taken {
                return Err(ContainerError::NameInUse {
                    name: new_name.to_string(),
                    id: other,
                }
                .into());
            }
            record.name = new_name.to_string();
            record.config.name = Some(new_name.to_string());
            tx.execute(
                "UPDATE containers SET name = ?1, config = ?2 WHERE id = ?3",
                params![
                    new_name,
                    serde_json::to_string(&record).unwrap_or_default(),
                    record.id
                ],
            )?;
            Ok::<_, crate::Error>(())
        })
    }

    /// The mounts a new container gets: `--volumes-from` first, then its own, then an
    /// anonymous volume for each VOLUME of the image nothing else covers. Named volumes that
    /// do not exist are made; anonymous ones get a name.
    fn resolve_mounts(
        &self,
        opts: &CreateOptions,
        image_config: &serde_json::Value,
    ) -> crate::Result<Vec<crate::volume::MountSpec>> {
        use crate::volume::{MountSpec, VolumeCreate};
        let bad = |reason: String| -> crate::Error { ContainerError::Invalid { reason }.into() };
        let mut out: Vec<MountSpec> = Vec::new();
        for from in &opts.volumes_from {
            let (name, mode) = match from.rsplit_once(':') {
                Some((n, m)) if m == "ro" || m == "rw" => (n, Some(m)),
                _ => (from.as_str(), None),
            };
            let other = self.find(name)?;
            for m in other.config.mounts.iter().filter(|m| m.kind != "tmpfs") {
                let mut m = m.clone();
                if let Some(mode) = mode {
                    m.readonly = mode == "ro";
                }
                out.push(m);
            }
        }
        for m in &opts.mounts {
            if !m.target.starts_with('/') || m.target == "/" {
                return Err(bad(format!(
                    "invalid mount config: invalid mount path: '{}' mount path must be absolute and not /",
                    m.target
                )));
            }
            out.retain(|o| o.target != m.target);
            out.push(m.clone());
        }
        if let Some(vols) = image_config.get("Volumes").and_then(|v| v.as_object()) {
            for target in vols.keys() {
                if !out.iter().any(|m| m.target == *target) {
                    out.push(MountSpec {
                        kind: "volume".into(),
                        target: target.clone(),
                        ..Default::default()
                    });
                }
            }
        }
        for m in &mut out {
            match m.kind.as_str() {
                "volume" => {
                    let v = self.volumes().create(&VolumeCreate {
                        name: m.source.clone(),
                        ..Default::default()
                    })?;
                    m.source = v.name;
                }
                "bind" => {
                    if !m.source.starts_with('/') {
                        return Err(bad(format!(
                            "invalid mount config for type \"bind\": invalid mount path: '{}' mount path must be absolute",
                            m.source
                        )));
                    }
                    if !std::path::Path::new(&m.source).exists() {
                        if !m.create_host_path {
                            return Err(bad(format!(
                                "invalid mount config for type \"bind\": bind source path does not exist: {}",
                                m.source
                            )));
                        }
                        fs::create_dir_all(&m.source)
                            .map_err(io_err(format!("create {}", m.source)))?;
                    }
                }
                "tmpfs" => {}
                other => return Err(bad(format!("invalid mount type {other:?}"))),
            }
        }
        Ok(out)
    }

    /// Copies the image's files into the new, empty volumes mounted over them.
    fn copy_up(
        &self,
        mounts: &[crate::volume::MountSpec],
        rootfs: &[crate::mount::Mount],
    ) -> crate::Result<()> {
        let wanted: Vec<&crate::volume::MountSpec> = mounts
            .iter()
            .filter(|m| m.kind == "volume" && !m.nocopy)
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let root = crate::mount::TempMount::new(rootfs, &self.st.scratch)
            .map_err(io_err("mount the container's root file system"))?;
        for m in wanted {
            self.volumes().copy_up(&m.source, root.path(), &m.target)?;
        }
        Ok(())
    }

    /// Runtime-spec entries for a container's volumes, binds and tmpfs mounts.
    fn spec_mounts(
        &self,
        mounts: &[crate::volume::MountSpec],
    ) -> crate::Result<Vec<serde_json::Value>> {
        let mut out = Vec::new();
        for m in mounts {
            let propagation = m.propagation.clone().unwrap_or_else(|| "rprivate".into());
            match m.kind.as_str() {
                "tmpfs" => {
                    let mut options = vec!["nosuid".to_string(), "nodev".into(), "noexec".into()];
                    if let Some(size) = m.tmpfs_size {
                        options.push(format!("size={size}"));
                    }
                    if let Some(mode) = m.tmpfs_mode {
                        options.push(format!("mode={mode:o}"));
                    }
                    if m.readonly {
                        options.push("ro".into());
                    }
                    out.push(serde_json::json!({
                        "destination": m.target, "type": "tmpfs", "source": "tmpfs", "options": options,
                    }));
                }
                kind => {
                    let source = if kind == "volume" {
                        self.volumes().source(&m.source)?.display().to_string()
                    } else {
                        m.source.clone()
                    };
                    let mut options = vec!["rbind".to_string(), propagation];
                    options.push(if m.readonly { "ro" } else { "rw" }.into());
                    out.push(serde_json::json!({
                        "destination": m.target, "type": "bind", "source": source, "options": options,
                    }));
                }
            }
        }
        Ok(out)
    }

    /// Changes a container's stored configuration in one transaction.
    pub(crate) fn update_config(
        &self,
        id: &str,
        f: impl FnOnce(&mut CreateOptions) -> crate::Result<()>,
    ) -> crate::Result<()> {
        self.st.db.write(|tx| {
            let json: String = tx
                .query_row(
                    "SELECT config FROM containers WHERE id = ?1",
                    params![id],
                    |r| r.get(0),
                )
                .optional()?
                .ok_or_else(|| ContainerError::NotFound {
                    name: id.to_string(),
                })?;
            let mut record: ContainerRecord =
                serde_json::from_str(&json).map_err(|e| ContainerError::Invalid {
                    reason: format!("container record {id}: {e}"),
                })?;
            f(&mut record.config)?;
            tx.execute(
                "UPDATE containers SET config = ?1 WHERE id = ?2",
                params![serde_json::to_string(&record).unwrap_or_default(), id],
            )?;
            Ok::<_, crate::Error>(())
        })
    }

    /// Removes every stopped container; returns their IDs.
    pub fn prune(&self) -> crate::Result<Vec<String>> {
        let mut removed = Vec::new();
        for c in self.list(true)? {
            if matches!(c.status, Status::Exited | Status::Created) && !starting(&c) {
                self.remove(&c.record.id, false)?;
                removed.push(c.record.id);
            }
        }
        Ok(removed)
    }

    /// The container's log records, oldest first: (stream, time, text).
    pub fn logs(&self, name: &str) -> crate::Result<Vec<LogRecord>> {
        Ok(self.log_records(name)?.0)
    }

    /// [`Self::logs`], with how many bytes of the current log file they cover
    /// (whole lines only): where a follower goes on from.
    pub fn log_records(&self, name: &str) -> crate::Result<(Vec<LogRecord>, u64)> {
        let c = self.get(name)?;
        let mut files: Vec<PathBuf> = Vec::new();
        for i in (1..10).rev() {
            let p = PathBuf::from(format!("{}.{i}", c.bundle.join("container.log").display()));
            if p.exists() {
                files.push(p);
            }
        }
        files.push(c.bundle.join("container.log"));
        let mut out = Vec::new();
        let mut covered = 0u64;
        for f in files {
            let Ok(file) = fs::File::open(&f) else {
                continue;
            };
            covered = 0;
            let mut reader = io::BufReader::new(file);
            loop {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) if !line.ends_with('\n') => break,
                    Ok(n) => covered += n as u64,
                }
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    out.push((
                        v["stream"].as_str().unwrap_or("stdout").to_string(),
                        v["time"].as_str().unwrap_or("").to_string(),
                        v["log"].as_str().unwrap_or("").to_string(),
                    ));
                }
            }
        }
        Ok((out, covered))
    }

    /// Path of the container's current log file, for followers.
    pub fn log_path(&self, name: &str) -> crate::Result<PathBuf> {
        Ok(self.get(name)?.bundle.join("container.log"))
    }
}

impl Container {
    /// What `ps` shows as its status: `Up 3 minutes`, `Exited (0) 2 hours ago`...
    pub fn status_text(&self) -> String {
        let since = |ts: &str| {
            chrono::DateTime::parse_from_rfc3339(ts)
                .map(|t| {
                    crate::model::human_duration(chrono::Utc::now().timestamp() - t.timestamp())
                })
                .unwrap_or_default()
        };
        match self.status {
            Status::Created => "Created".into(),
            Status::Running => format!("Up {}", since(&self.task.started_at)),
            Status::Paused => format!("Up {} (Paused)", since(&self.task.started_at)),
            Status::Restarting => format!(
                "Restarting ({}) {} ago",
                self.task.exit_code,
                since(&self.task.finished_at)
            ),
            Status::Exited => format!(
                "Exited ({}) {} ago",
                self.task.exit_code,
                since(&self.task.finished_at)
            ),
        }
    }

    pub fn is_running(&self) -> bool {
        matches!(
            self.status,
            Status::Running | Status::Paused | Status::Restarting
        )
    }
}

/// Runs a shim with a report pipe as fd 3 and returns once it reports that its process
/// runs (or why it does not). Detached, the shim goes on in a session of its own and is
/// reaped in the background; attached, its child handle is returned to wait on.
/// How a container's monitor is started.
enum ShimMode {
    /// On its own, stdio to /dev/null.
    Detached,
    /// Sharing this process's stdio, which waits for it.
    Attached,
    /// On its own, its stdio a stream it copies to and from.
    Stream { stream: OwnedFd, framed: bool },
}

fn spawn_reporting(
    mut cmd: Command,
    shim: &std::path::Path,
    detached: bool,
    null_stdio: bool,
) -> crate::Result<Option<std::process::Child>> {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| io_err("pipe")(e.into()))?;
    let wfd = w.as_raw_fd();
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(move || {
            if libc::dup2(wfd, 3) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    if detached && null_stdio {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
    }
    let mut child = cmd
        .spawn()
        .map_err(io_err(format!("run {}", shim.display())))?;
    drop(w);
    let mut report = String::new();
    let mut rf = fs::File::from(r);
    let _ = rf.read_to_string(&mut report);
    let report = report.trim();
    let failure = if let Some(rest) = report.strip_prefix("error ") {
        let (code, message) = rest.split_once(' ').unwrap_or(("125", rest));
        Some(ContainerError::Start {
            code: code.parse().unwrap_or(125),
            message: message.to_string(),
        })
    } else if !report.starts_with("ok") {
        Some(ContainerError::Start {
            code: 125,
            message: format!("ketch-shim exited without starting the process ({report:?})"),
        })
    } else {
        None
    };
    if let Some(e) = failure {
        let _ = child.wait();
        return Err(e.into());
    }
    if detached {
        // Reap the shim when it exits, so no zombie is left with this process.
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        return Ok(None);
    }
    Ok(Some(child))
}

/// What `exec` takes: Docker's flags.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub detach: bool,
    pub interactive: bool,
    pub tty: bool,
    /// The terminal's size at the start (rows, columns), with `tty`.
    pub console_size: Option<(u16, u16)>,
}

impl Containers<'_> {
    /// Runs a new process in a running container. Attached, returns its exit status.
    pub fn exec(
        &self,
        name: &str,
        opts: &ExecOptions,
        on_spawn: &dyn Fn(u32),
    ) -> crate::Result<i32> {
        let child = self.exec_spawn(name, opts, false)?;
        let Some(mut child) = child else { return Ok(0) };
        on_spawn(child.id());
        let status = child.wait().map_err(io_err("wait for ketch-shim"))?;
        Ok(status.code().unwrap_or(125))
    }

    /// Starts a process in a running container; attached, returns the monitor's child
    /// handle, with its output on pipes if `piped` (for a front door that frames it, the
    /// daemon's exec), else on this process's stdio.
    pub fn exec_spawn(
        &self,
        name: &str,
        opts: &ExecOptions,
        piped: bool,
    ) -> crate::Result<Option<std::process::Child>> {
        let c = self.get(name)?;
        if c.status != Status::Running || c.task.pid <= 0 {
            return Err(ContainerError::Conflict {
                reason: format!("container {} is not running", c.record.id),
            }
            .into());
        }
        if opts.cmd.is_empty() {
            return Err(ContainerError::Invalid {
                reason: "exec needs a command".into(),
            }
            .into());
        }
        let shim = self.shim()?;
        let mut cmd = Command::new(&shim);
        cmd.arg("exec").arg(&c.bundle).arg(c.task.pid.to_string());
        cmd.args(["--pid-start", &task_start(&c).to_string()]);
        cmd.args(["--owner", &c.record.id]);
        if !opts.detach {
            cmd.arg("--attach");
        }
        if opts.interactive {
            cmd.arg("--stdin");
        }
        if opts.tty {
            cmd.arg("--tty");
            if let Some((h, w)) = opts.console_size.filter(|(h, w)| *h > 0 && *w > 0) {
                cmd.args(["--size", &format!("{h}x{w}")]);
            }
        }
        if let Some(u) = &opts.user {
            cmd.args(["--user", u]);
        }
        if let Some(w) = &opts.workdir {
            cmd.args(["--cwd", w]);
        }
        for e in &opts.env {
            cmd.args(["--env", e]);
        }
        cmd.arg("--").args(&opts.cmd);
        if piped && !opts.detach {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
            cmd.stdin(if opts.interactive {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        }
        spawn_reporting(cmd, &shim, opts.detach, true)
    }
}

/// The signal an exec's monitor takes a new terminal size by, as its value (`rows << 16 |
/// cols`, queued as `sigqueue` does): a real-time one, so that sizes sent in a burst all
/// arrive, in order, and the last one wins. The shim's `SIG_RESIZE` is the same number.
pub const EXEC_RESIZE_SIGNAL: i32 = 40;

/// Sets the terminal size of an exec started with a terminal: `monitor` is a pidfd of its
/// monitor (the child `container_exec_spawn` returned), taken before it could be waited for.
pub fn exec_resize(monitor: &impl AsFd, rows: u16, cols: u16) -> io::Result<()> {
    // A siginfo as sigqueue(3) makes it: signal, SI_QUEUE, the sender, and the value. The
    // fields after the first three sit in a union that starts at 16 on 64-bit ABIs.
    let mut info = [0u32; 32];
    let base = if cfg!(target_pointer_width = "64") {
        4
    } else {
        3
    };
    info[0] = EXEC_RESIZE_SIGNAL as u32;
    info[2] = libc::SI_QUEUE as u32;
    info[base] = std::process::id();
    // SAFETY: plain integers.
    info[base + 1] = unsafe { libc::getuid() };
    info[base + 2] = (u32::from(rows) << 16) | u32::from(cols);
    // SAFETY: `info` is a siginfo_t's size (128 bytes) and lives across the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            monitor.as_fd().as_raw_fd(),
            EXEC_RESIZE_SIGNAL,
            info.as_ptr(),
            0,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Docker's kind of made-up name: `adjective_noun`.
fn random_name() -> String {
    let b = crate::util::random_hex(2);
    let v = u16::from_str_radix(&b, 16).unwrap_or(0) as usize;
    format!(
        "{}_{}",
        NAME_ADJ[v % NAME_ADJ.len()],
        NAME_NOUN[(v / NAME_ADJ.len()) % NAME_NOUN.len()]
    )
}

/// A container's /etc/hosts: loopback names, and its hostname on its address (on loopback
/// while it has none).
fn hosts_file(hostname: &str, ip: Option<std::net::Ipv4Addr>, extra: &[String]) -> String {
    let own = ip.map_or_else(|| "127.0.1.1".to_string(), |ip| ip.to_string());
    let mut s = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n".to_string();
    // `--add-host NAME:IP`, as Docker writes them: before the container's own line.
    for e in extra {
        if let Some((name, ip)) = e.split_once(':') {
            s.push_str(&format!("{ip}\t{name}\n"));
        }
    }
    s.push_str(&format!("{own}\t{hostname}\n"));
    s
}

/// The host's name servers that mean something from a container: not loopback ones.
fn host_nameservers() -> Vec<String> {
    fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.starts_with("127.") && s != "::1")
        .collect()
}

/// The host's resolv.conf without loopback name servers, which would mean nothing inside
/// the container's own network namespace.
///
/// On a user-defined network the container asks its embedded server, 127.0.0.11, as in
/// Docker; `--dns` servers replace the host's.
fn resolv_conf(embedded: bool, dns: &[String]) -> String {
    let host = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut kept: Vec<String> = host
        .lines()
        .filter(|l| {
            let l = l.trim();
            !l.starts_with("nameserver")
                || (!embedded && dns.is_empty() && !l.contains("127.") && !l.contains("::1"))
        })
        .map(str::to_string)
        .collect();
    if embedded {
        kept.insert(0, "nameserver 127.0.0.11".into());
        kept.push("options ndots:0".into());
    } else {
        for (i, d) in dns.iter().enumerate() {
            kept.insert(i, format!("nameserver {d}"));
        }
    }
    let mut s = kept.join("\n");
    s.push('\n');
    s
}

#[cfg(test)]
mod shim_tests {
    use crate::testutil::scratch_engine_with;

    /// A shim the program carries is written once per content into the root's `bin/`, as an
    /// executable; an explicit shim wins over `KETCH_SHIM`, which wins over it.
    #[test]
    fn a_carried_shim_is_written_once_per_content() {
        static ONE: &[u8] = b"#!/bin/sh\necho one\n";
        static TWO: &[u8] = b"#!/bin/sh\necho two\n";
        let e = scratch_engine_with(|o| o.embedded_shim = Some(ONE));
        let first = e.containers().shim_with(None).unwrap();
        assert!(
            first.starts_with(e.dir.path().join("root/bin")),
            "{first:?}"
        );
        assert_eq!(std::fs::read(&first).unwrap(), ONE);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&first).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        let written = std::fs::metadata(&first).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(e.containers().shim_with(None).unwrap(), first);
        assert_eq!(
            std::fs::metadata(&first).unwrap().modified().unwrap(),
            written
        );
        let other = scratch_engine_with(|o| o.embedded_shim = Some(TWO));
        let second = other.containers().shim_with(None).unwrap();
        assert_ne!(second.file_name(), first.file_name());
        // Nothing but the shim in bin/: no temporary file left.
        let names: Vec<_> = std::fs::read_dir(e.dir.path().join("root/bin"))
            .unwrap()
            .map(|d| d.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        let explicit = scratch_engine_with(|o| {
            o.embedded_shim = Some(ONE);
            o.shim = Some("/opt/my-shim".into());
        });
        let env = Some("/env/shim".into());
        let got = explicit.containers().shim_with(env.clone()).unwrap();
        assert_eq!(got, std::path::Path::new("/opt/my-shim"));
        assert_eq!(
            e.containers().shim_with(env).unwrap(),
            std::path::Path::new("/env/shim")
        );
    }
}
