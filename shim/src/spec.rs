//! The part of the OCI runtime spec (`config.json`) the shim acts on. The engine writes the
//! whole spec with oci-spec; the shim reads only what it needs, so it stays small.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct Spec {
    pub process: Process,
    pub root: Root,
    pub hostname: Option<String>,
    /// The NIS domain name (`--domainname`), set in the container's UTS namespace.
    pub domainname: Option<String>,
    pub mounts: Vec<Mount>,
    pub linux: Linux,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct Process {
    pub terminal: bool,
    pub console_size: Option<ConsoleSize>,
    pub user: User,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub capabilities: Option<Capabilities>,
    pub rlimits: Vec<Rlimit>,
    pub no_new_privileges: bool,
    pub oom_score_adj: Option<i32>,
}

#[derive(Debug, Deserialize, Default, Clone, Copy)]
#[serde(default)]
pub struct ConsoleSize {
    pub height: u16,
    pub width: u16,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct Capabilities {
    pub bounding: Vec<String>,
    pub effective: Vec<String>,
    pub inheritable: Vec<String>,
    pub permitted: Vec<String>,
    pub ambient: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct Rlimit {
    #[serde(rename = "type")]
    pub kind: String,
    pub hard: u64,
    pub soft: u64,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct Root {
    pub path: String,
    pub readonly: bool,
}

#[derive(Debug, Deserialize, Clone)]
pub struct Mount {
    pub destination: String,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub options: Vec<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct Linux {
    pub namespaces: Vec<Namespace>,
    pub resources: Option<Resources>,
    pub cgroups_path: Option<String>,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    /// Kept as text, read only by the process that loads the filter: the monitor, which lives
    /// as long as the container, never needs the few hundred rules in its memory.
    pub seccomp: Option<Box<serde_json::value::RawValue>>,
    /// Device nodes to create (`--device`).
    pub devices: Vec<Device>,
    /// Namespaced kernel parameters (`--sysctl`), written under the container's /proc/sys.
    pub sysctl: BTreeMap<String, String>,
}

/// A device node in the container, as OCI's `linux.devices` gives it.
#[derive(Debug, Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct Device {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub major: i64,
    pub minor: i64,
    pub file_mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// One rule of the device cgroup, as OCI's `linux.resources.devices` gives it: `kind` is
/// `a`, `c` or `b`; a missing major or minor is `*`; `access` is a subset of `rwm`.
#[derive(Debug, Deserialize, Clone, PartialEq, Eq)]
pub struct DeviceRule {
    pub allow: bool,
    #[serde(rename = "type", default = "all_kinds")]
    pub kind: String,
    #[serde(default)]
    pub major: Option<i64>,
    #[serde(default)]
    pub minor: Option<i64>,
    #[serde(default = "all_access")]
    pub access: String,
}

fn all_kinds() -> String {
    "a".into()
}

fn all_access() -> String {
    "rwm".into()
}

#[derive(Debug, Deserialize)]
pub struct Namespace {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub path: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct Resources {
    /// Device rules added to the default allow-list (see `devices::rules`).
    pub devices: Option<Vec<DeviceRule>>,
    pub memory: Option<Memory>,
    pub cpu: Option<Cpu>,
    pub pids: Option<Pids>,
    #[serde(rename = "blockIO")]
    pub block_io: Option<BlockIo>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct BlockIo {
    pub weight: Option<u16>,
    pub throttle_read_bps_device: Vec<Throttle>,
    pub throttle_write_bps_device: Vec<Throttle>,
    #[serde(rename = "throttleReadIOPSDevice")]
    pub throttle_read_iops_device: Vec<Throttle>,
    #[serde(rename = "throttleWriteIOPSDevice")]
    pub throttle_write_iops_device: Vec<Throttle>,
}

#[derive(Debug, Deserialize, Default)]
pub struct Throttle {
    pub major: i64,
    pub minor: i64,
    pub rate: u64,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct Memory {
    pub limit: Option<i64>,
    /// Memory plus swap; -1 unlimited.
    pub swap: Option<i64>,
    pub reservation: Option<i64>,
    pub swappiness: Option<u64>,
    #[serde(rename = "disableOOMKiller")]
    pub disable_oom_killer: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct Cpu {
    pub shares: Option<u64>,
    pub quota: Option<i64>,
    pub period: Option<u64>,
    /// Real-time scheduling: the period and the runtime in it (cgroup v1 only).
    #[serde(rename = "realtimePeriod")]
    pub realtime_period: Option<u64>,
    #[serde(rename = "realtimeRuntime")]
    pub realtime_runtime: Option<i64>,
    /// cpuset's CPUs and memory nodes (`0-2,4`).
    pub cpus: Option<String>,
    pub mems: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct Pids {
    pub limit: i64,
}

/// A mount of the container's root file system, as the engine's snapshotter returns it.
#[derive(Debug, Deserialize, Clone)]
pub struct RootfsMount {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Source")]
    pub source: String,
    #[serde(rename = "Options")]
    pub options: Vec<String>,
}
