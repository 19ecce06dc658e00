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

pub mod body;
mod changes;
mod create;
mod detach;
mod exec;
mod inspect;
mod lifecycle;
mod logs;
pub mod moving;
mod network;
mod options;
mod security;
mod shim;
mod spec;
mod start;
mod update;

use create::hosts_file;
pub use detach::{DEFAULT_DETACH_KEYS, DetachScanner, copy_until_detached, parse_detach_keys};
pub use exec::{ExecOptions, exec_resize};
pub use options::{
    Healthcheck, Resources, ThrottleDevice, Ulimit, check_platform, check_restart, key_values,
    parse_link,
};
pub use security::SecurityOpts;
use shim::{ShimMode, spawn_reporting};
pub use update::UpdateOptions;

pub use changes::{Change, CommitOptions};
pub use inspect::Filters;

use std::collections::BTreeMap;
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
    /// Limits kept in the container's cgroups (flattened: stored records keep their keys).
    #[serde(flatten)]
    pub resources: Resources,
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
    /// `--ip6`: the IPv6 address on an IPv6 network, instead of the next free one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip6: Option<String>,
    /// `--link-local-ip`: link-local addresses the interface has too.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub link_local_ips: Vec<String>,
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
    /// `--pid`: `host`, or `container:NAME` to share its process namespace.
    pub pid_mode: Option<String>,
    /// `--ipc`: `private` (the default), `shareable`, `none`, `host` or `container:NAME`.
    pub ipc_mode: Option<String>,
    /// `--uts host`: the host's name and domain.
    pub uts_mode: Option<String>,
    /// `--cgroupns`: `private` (the default) or `host`.
    pub cgroupns_mode: Option<String>,
    /// `--userns host`; the engine runs no user namespaces of its own.
    pub userns_mode: Option<String>,
    /// `--ulimit`: process limits instead of the engine's (nofile) and the host's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ulimits: Vec<Ulimit>,
    /// `--shm-size`: the size of /dev/shm, bytes (64 MiB when `None`).
    pub shm_size: Option<u64>,
    /// `--oom-score-adj`.
    pub oom_score_adj: Option<i32>,
    /// `--group-add`: more groups for the process, names (the container's) or numbers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub group_add: Vec<String>,
    /// `--dns-search` and `--dns-option`: resolv.conf's `search` and `options`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_search: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_options: Vec<String>,
    /// `--domainname`: the NIS domain name of the container's UTS namespace.
    pub domainname: Option<String>,
    /// `--sysctl`: namespaced kernel parameters.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    /// Paths hidden from the container, instead of Docker's list (`--security-opt
    /// systempaths=unconfined` makes both lists empty).
    pub masked_paths: Option<Vec<String>>,
    /// Paths mounted read-only, instead of Docker's list.
    pub readonly_paths: Option<Vec<String>>,
    /// `--annotation`: the OCI spec's annotations (the engine's own prefix refused).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// `--stop-signal`, instead of the image's or SIGTERM.
    pub stop_signal: Option<String>,
    /// `--stop-timeout`, seconds, instead of 10 when `stop` is given none.
    pub stop_timeout: Option<i64>,
    /// `--log-driver`: `json-file` (the default), `local` or `none`.
    pub log_driver: Option<String>,
    /// `--expose`: ports (`80/tcp`, `8000-8010/udp`) added to the image's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub expose: Vec<String>,
    /// `--cgroup-parent`: the cgroup the container's own is made under.
    pub cgroup_parent: Option<String>,
    /// `--health-*`, instead of the image's HEALTHCHECK.
    pub healthcheck: Option<Healthcheck>,
    /// `--mac-address`: the MAC address on the network it is created on.
    pub mac_address: Option<String>,
    /// `--volume-driver`: the driver of the volumes it makes; only `local` is here, so
    /// another is refused when the container names volumes (and kept, as Docker keeps it,
    /// when it names none).
    pub volume_driver: Option<String>,
    /// `--link NAME[:ALIAS]` (legacy links), as `NAME:ALIAS`: at each start the linked
    /// container's address goes in /etc/hosts under the alias, and its environment and
    /// ports in this one's (`ALIAS_ENV_...`, `ALIAS_PORT_...`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
    /// `--runtime` as given (`runc` or `ketch`: both are ketch-shim), shown by inspect.
    pub runtime: Option<String>,
    /// `--isolation` as given (`default` is the only one on Linux).
    pub isolation: Option<String>,
    /// That endpoint's driver options (`EndpointSettings.DriverOpts`), kept and shown.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub network_driver_opts: BTreeMap<String, String>,
    /// Links on the first network (its `EndpointSettings.Links`), as `NAME:ALIAS`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub network_links: Vec<String>,
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
                ip6: self.ip6.clone(),
                link_local_ips: self.link_local_ips.clone(),
                aliases: self.network_aliases.clone(),
                mac: self.mac_address.clone(),
                driver_opts: self.network_driver_opts.clone(),
                links: self.network_links.clone(),
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
        "ABRT" | "IOT" => libc::SIGABRT,
        "BUS" => libc::SIGBUS,
        "CHLD" => libc::SIGCHLD,
        "FPE" => libc::SIGFPE,
        "ILL" => libc::SIGILL,
        "IO" | "POLL" => libc::SIGIO,
        "PIPE" => libc::SIGPIPE,
        "PROF" => libc::SIGPROF,
        "PWR" => libc::SIGPWR,
        "SEGV" => libc::SIGSEGV,
        "STKFLT" => libc::SIGSTKFLT,
        "SYS" => libc::SIGSYS,
        "TRAP" => libc::SIGTRAP,
        "TSTP" => libc::SIGTSTP,
        "TTIN" => libc::SIGTTIN,
        "TTOU" => libc::SIGTTOU,
        "URG" => libc::SIGURG,
        "VTALRM" => libc::SIGVTALRM,
        "XCPU" => libc::SIGXCPU,
        "XFSZ" => libc::SIGXFSZ,
        rt => {
            // SIGRTMIN+N and SIGRTMAX-N, as Docker's STOPSIGNAL takes them.
            let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
            let n = if let Some(k) = rt.strip_prefix("RTMIN") {
                min + k.strip_prefix('+').map_or(Some(0), |k| k.parse().ok())?
            } else if let Some(k) = rt.strip_prefix("RTMAX") {
                max - k.strip_prefix('-').map_or(Some(0), |k| k.parse().ok())?
            } else {
                return None;
            };
            if !(min..=max).contains(&n) {
                return None;
            }
            n
        }
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
    /// Each interface's counters, by name (`eth0`).
    pub networks: BTreeMap<String, NetStats>,
}

/// An interface's counters, as the API's `NetworkStats`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NetStats {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// A container and its task, reconciled.
#[derive(Debug, Clone)]
pub struct Container {
    pub record: ContainerRecord,
    pub task: TaskState,
    pub status: Status,
    pub bundle: PathBuf,
}

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

/// A container's runtime spec (its bundle's `config.json`), as JSON to change.
pub(crate) fn read_spec(bundle: &Path) -> crate::Result<serde_json::Value> {
    let path = bundle.join("config.json");
    fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| {
            ContainerError::Invalid {
                reason: format!("read {}", path.display()),
            }
            .into()
        })
}

/// Replaces a container's runtime spec at once (a monitor reading it sees the old or the
/// new, never half of one).
pub(crate) fn write_spec(bundle: &Path, spec: &serde_json::Value) -> crate::Result<()> {
    let tmp = bundle.join(".config.json.tmp");
    fs::write(&tmp, serde_json::to_vec_pretty(spec).unwrap_or_default())
        .and_then(|()| fs::rename(&tmp, bundle.join("config.json")))
        .map_err(io_err("write config.json"))
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
        let c = Container {
            record,
            task,
            status,
            bundle,
        };
        self.report_health(&c)?;
        Ok(c)
    }

    /// Records a `health_status` event when the status the monitor wrote is not the one
    /// last reported: the one process that sees the change first reports it (the check is
    /// made under the database's write lock).
    fn report_health(&self, c: &Container) -> crate::Result<()> {
        // As Docker: the changes to healthy or unhealthy, not the start of checking.
        let Some(now) = c.health_status().filter(|s| s != "starting") else {
            return Ok(());
        };
        let seen = c.bundle.join("health.reported");
        let key = format!("{} {now}", c.task.started_at);
        if fs::read_to_string(&seen).is_ok_and(|s| s == key) {
            return Ok(());
        }
        let changed = self.st.db.write(|_| {
            let changed = fs::read_to_string(&seen).map_or(true, |s| s != key);
            if changed {
                let _ = fs::write(&seen, &key);
            }
            Ok::<_, crate::Error>(changed)
        })?;
        if changed {
            self.event(&c.record, &format!("health_status: {now}"), &[]);
        }
        Ok(())
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
            Status::Running => {
                let health = match self.health_status().as_deref() {
                    Some("starting") => " (health: starting)".to_string(),
                    Some(s) => format!(" ({s})"),
                    None => String::new(),
                };
                format!("Up {}{health}", since(&self.task.started_at))
            }
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

    /// Whether the container runs a health check: one configured that is not `NONE`.
    pub fn has_healthcheck(&self) -> bool {
        self.record.config.healthcheck.as_ref().is_some_and(|h| {
            matches!(
                h.test.first().map(String::as_str),
                Some("CMD" | "CMD-SHELL")
            )
        })
    }

    /// `State.Health`, as the monitor last wrote it; `None` without a health check.
    pub fn health(&self) -> Option<serde_json::Value> {
        if !self.has_healthcheck() {
            return None;
        }
        let v = fs::read(self.bundle.join("health.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        Some(v.unwrap_or_else(
            || serde_json::json!({"Status": "starting", "FailingStreak": 0, "Log": []}),
        ))
    }

    /// `starting`, `healthy` or `unhealthy` while it runs with a health check.
    pub fn health_status(&self) -> Option<String> {
        if self.status != Status::Running {
            return None;
        }
        self.health()
            .and_then(|h| h["Status"].as_str().map(str::to_string))
    }

    pub fn is_running(&self) -> bool {
        matches!(
            self.status,
            Status::Running | Status::Paused | Status::Restarting
        )
    }
}

/// The signal an exec's monitor takes a new terminal size by, as its value (`rows << 16 |
/// cols`, queued as `sigqueue` does): a real-time one, so that sizes sent in a burst all
/// arrive, in order, and the last one wins. The shim's `SIG_RESIZE` is the same number.
pub const EXEC_RESIZE_SIGNAL: i32 = 40;
