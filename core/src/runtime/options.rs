//! The parts of [`CreateOptions`] beyond the basics: resource limits (which `update` changes
//! on a running container), ulimits, namespaces shared with the host or another container,
//! sysctls, health checks, and the checks Docker's daemon makes on them at create.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::CreateOptions;

/// What a container may use, kept in its cgroups. Every field is one of the API's
/// `Resources`; `None` leaves the kernel's default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Resources {
    /// `--memory`, bytes.
    pub memory: Option<u64>,
    /// `--memory-reservation`: the soft limit, bytes.
    pub memory_reservation: Option<u64>,
    /// `--memory-swap`: memory plus swap, bytes; -1 for unlimited swap.
    pub memory_swap: Option<i64>,
    /// `--memory-swappiness`, 0 to 100.
    pub memory_swappiness: Option<u64>,
    /// `--oom-kill-disable`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub oom_kill_disable: bool,
    /// `--cpus`.
    pub cpus: Option<f64>,
    /// `--cpu-shares`.
    pub cpu_shares: Option<u64>,
    /// `--cpu-period`, microseconds.
    pub cpu_period: Option<u64>,
    /// `--cpu-quota`, microseconds per period.
    pub cpu_quota: Option<i64>,
    /// `--cpu-rt-period` and `--cpu-rt-runtime`, microseconds: real-time scheduling for the
    /// container's processes (the cgroup v1 `cpu` controller's `cpu.rt_*`).
    pub cpu_rt_period: Option<u64>,
    pub cpu_rt_runtime: Option<i64>,
    /// `--cpuset-cpus` (`0-2,4`).
    pub cpuset_cpus: Option<String>,
    /// `--cpuset-mems`.
    pub cpuset_mems: Option<String>,
    /// `--pids-limit`; -1 or 0 for none.
    pub pids_limit: Option<i64>,
    /// `--blkio-weight`, 10 to 1000.
    pub blkio_weight: Option<u16>,
    /// `--device-read-bps` and the like: per-device throttles.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub device_read_bps: Vec<ThrottleDevice>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub device_write_bps: Vec<ThrottleDevice>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub device_read_iops: Vec<ThrottleDevice>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub device_write_iops: Vec<ThrottleDevice>,
}

/// A rate for one block device, as the API's `ThrottleDevice`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ThrottleDevice {
    pub path: String,
    pub rate: u64,
}

impl ThrottleDevice {
    /// `PATH:RATE`; `bytes` reads the rate with units (`1mb`), else as a number.
    pub fn parse(s: &str, bytes: bool) -> Result<ThrottleDevice, String> {
        let (path, rate) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("bad format {s:?}: expected DEVICE:RATE"))?;
        if !path.starts_with("/dev/") {
            return Err(format!("bad format for device path: {path}"));
        }
        let rate = if bytes {
            crate::model::parse_bytes(rate)?
        } else {
            rate.parse()
                .map_err(|_| format!("invalid rate for device: {rate}. The correct format is <device-path>:<number>. Number must be a positive integer"))?
        };
        Ok(ThrottleDevice {
            path: path.to_string(),
            rate,
        })
    }

    /// The device's numbers, as the kernel's throttle files take them.
    pub fn numbers(&self) -> Result<(u64, u64), String> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let md = std::fs::metadata(&self.path)
            .map_err(|e| format!("throttle device {}: {e}", self.path))?;
        if !md.file_type().is_block_device() {
            return Err(format!("throttle device {}: not a block device", self.path));
        }
        Ok((libc::major(md.rdev()) as u64, libc::minor(md.rdev()) as u64))
    }
}

/// A resource limit of the process (`--ulimit nofile=1024:2048`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Ulimit {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

/// The limits Docker's `--ulimit` knows, by their names there.
const ULIMITS: &[&str] = &[
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
    "as",
];

impl Ulimit {
    /// `NAME=SOFT[:HARD]`, as Docker reads it.
    pub fn parse(s: &str) -> Result<Ulimit, String> {
        let (name, limits) = s
            .split_once('=')
            .ok_or_else(|| format!("invalid ulimit argument: {s}"))?;
        let (soft, hard) = limits.split_once(':').unwrap_or((limits, limits));
        let num = |v: &str| {
            v.parse::<i64>()
                .map_err(|_| format!("invalid ulimit value {v:?} in {s}"))
        };
        let u = Ulimit {
            name: name.to_string(),
            soft: num(soft)?,
            hard: num(hard)?,
        };
        u.validate()?;
        Ok(u)
    }

    pub fn validate(&self) -> Result<(), String> {
        if !ULIMITS.contains(&self.name.as_str()) {
            return Err(format!("invalid ulimit type: {}", self.name));
        }
        if self.soft > self.hard && self.hard != -1 {
            return Err(format!(
                "ulimit soft limit must be less than or equal to hard limit: {} > {}",
                self.soft, self.hard
            ));
        }
        Ok(())
    }

    /// OCI's name for it (`RLIMIT_NOFILE`).
    pub fn oci_name(&self) -> String {
        format!("RLIMIT_{}", self.name.to_ascii_uppercase())
    }
}

/// A health check, as the API's `HealthConfig` (durations in nanoseconds).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Healthcheck {
    /// `[]` inherits the image's; `["NONE"]` disables; `["CMD", args...]` or
    /// `["CMD-SHELL", command]`.
    pub test: Vec<String>,
    pub interval: i64,
    pub timeout: i64,
    pub retries: i64,
    pub start_period: i64,
    pub start_interval: i64,
}

impl Healthcheck {
    pub fn validate(&self) -> Result<(), String> {
        let min = 1_000_000; // 1ms, as Docker
        for (name, v) in [
            ("Interval", self.interval),
            ("Timeout", self.timeout),
            ("StartPeriod", self.start_period),
            ("StartInterval", self.start_interval),
        ] {
            if v != 0 && v < min {
                return Err(format!("{name} in Healthcheck cannot be less than 1ms"));
            }
        }
        if self.retries < 0 {
            return Err("Retries in Healthcheck cannot be negative".into());
        }
        match self.test.first().map(String::as_str) {
            None | Some("NONE" | "CMD" | "CMD-SHELL") => Ok(()),
            Some(other) => Err(format!(
                "unknown health check type {other:?}: use CMD, CMD-SHELL or NONE"
            )),
        }
    }
}

/// Sysctls a container may set, and what it must not share for each: Docker's list.
/// Returns the namespace the key lives in.
pub fn sysctl_namespace(key: &str) -> Result<&'static str, String> {
    const IPC: &[&str] = &[
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
        Ok("ipc")
    } else if key.starts_with("net.") {
        Ok("network")
    } else if key == "kernel.domainname" || key == "kernel.hostname" {
        Ok("uts")
    } else {
        Err(format!("sysctl '{key}' is not allowed"))
    }
}

/// Whether other containers may join a container of IPC mode `mode` (`--ipc
/// container:X`): one made `shareable`, one in the host's namespace, or one that joined
/// another itself. A private one (the default) or one without /dev/shm (`none`) not.
pub fn ipc_shareable(mode: &Option<String>) -> bool {
    matches!(mode.as_deref(), Some("shareable" | "host")) || mode_container(mode).is_some()
}

/// The kinds of `--ipc`, `--pid`, `--uts`, `--cgroupns` and `--userns` ketch runs.
fn check_mode(flag: &str, mode: &Option<String>, allowed: &[&str]) -> Result<(), String> {
    let Some(m) = mode.as_deref().filter(|m| !m.is_empty()) else {
        return Ok(());
    };
    let container = m
        .strip_prefix("container:")
        .is_some_and(|c| !c.is_empty() && allowed.contains(&"container:"));
    if container || (m != "container:" && allowed.contains(&m)) {
        Ok(())
    } else {
        Err(format!(
            "invalid {flag} mode {m:?}: use one of {}",
            allowed
                .iter()
                .map(|a| if *a == "container:" {
                    "container:NAME"
                } else {
                    a
                })
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// `--platform` of a container: containers run natively, so only the host's (a platform
/// not the host's could only fail at exec).
pub fn check_platform(p: &str) -> Result<(), String> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    let host = format!("linux/{arch}");
    let given = p.trim_end_matches('/');
    if given.is_empty()
        || given == host
        || given == "linux"
        || given.starts_with(&format!("{host}/"))
    {
        Ok(())
    } else {
        Err(format!(
            "{p} is not supported: this host runs {host} containers"
        ))
    }
}

/// A restart policy as `--restart` takes it: `no`, `always`, `unless-stopped`,
/// `on-failure[:N]`.
pub fn check_restart(r: &str) -> Result<(), String> {
    let (kind, n) = r.split_once(':').unwrap_or((r, ""));
    let ok = match kind {
        "no" | "always" | "unless-stopped" => n.is_empty(),
        "on-failure" => n.is_empty() || n.parse::<u32>().is_ok(),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("invalid restart policy {r:?}"))
    }
}

/// A legacy link as Docker's clients give it (`NAME`, `NAME:ALIAS`, or inspect's
/// `/NAME:/THIS/ALIAS`): the linked container's name and the alias.
pub fn parse_link(s: &str) -> Result<(String, String), String> {
    let (name, alias) = s.split_once(':').unwrap_or((s, s));
    let name = name.trim_start_matches('/');
    let alias = alias.rsplit('/').next().unwrap_or(alias);
    if name.is_empty()
        || alias.is_empty()
        || name.contains('/')
        || s.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!("invalid link {s:?}: use NAME[:ALIAS]"));
    }
    Ok((name.to_string(), alias.to_string()))
}

/// The container a `container:NAME` mode names.
pub fn mode_container(mode: &Option<String>) -> Option<&str> {
    mode.as_deref().and_then(|m| m.strip_prefix("container:"))
}

pub fn is_host(mode: &Option<String>) -> bool {
    mode.as_deref() == Some("host")
}

/// Annotations the engine itself writes and reads in a container's spec: a user's must not
/// set them.
pub const RESERVED_ANNOTATIONS: &str = "io.ketch.";

impl CreateOptions {
    /// What Docker's daemon checks at create, wherever the options came from: each
    /// problem named as its flag.
    pub fn validate(&self) -> Result<(), String> {
        let r = &self.resources;
        if let Some(m) = r.memory
            && m > 0
            && m < 6 << 20
        {
            return Err("Minimum memory limit allowed is 6MB".into());
        }
        if let Some(m) = r.memory_reservation
            && m > 0
            && m < 6 << 20
        {
            return Err("Minimum memory reservation allowed is 6MB".into());
        }
        if let (Some(m), Some(res)) = (r.memory.filter(|m| *m > 0), r.memory_reservation)
            && res > m
        {
            return Err(
                "Minimum memory limit can not be less than memory reservation limit, see usage"
                    .into(),
            );
        }
        if let Some(s) = r.memory_swap.filter(|s| *s > 0) {
            match r.memory.filter(|m| *m > 0) {
                None => {
                    return Err(
                        "You should always set the Memory limit when using Memoryswap limit, see usage"
                            .into(),
                    );
                }
                Some(m) if (s as u64) < m => {
                    return Err(
                        "Minimum memoryswap limit should be larger than memory limit, see usage"
                            .into(),
                    );
                }
                _ => {}
            }
        }
        if let Some(s) = r.memory_swappiness
            && s > 100
        {
            return Err(format!(
                "invalid value: {s}, valid memory swappiness range is 0-100"
            ));
        }
        let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
        if let Some(c) = r.cpus
            && (c < 0.0 || c > ncpu as f64)
        {
            return Err(format!(
                "range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available"
            ));
        }
        if r.cpus.is_some_and(|c| c > 0.0)
            && (r.cpu_quota.is_some_and(|q| q > 0) || r.cpu_period.is_some_and(|p| p > 0))
        {
            return Err("Conflicting options: Nano CPUs and CPU Period cannot both be set".into());
        }
        if let Some(p) = r.cpu_period.filter(|p| *p > 0)
            && !(1000..=1_000_000).contains(&p)
        {
            return Err("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)".into());
        }
        if let Some(q) = r.cpu_quota.filter(|q| *q > 0)
            && q < 1000
        {
            return Err("CPU cfs quota can not be less than 1ms (i.e. 1000)".into());
        }
        if r.cpu_rt_period.is_some_and(|p| p > 0) || r.cpu_rt_runtime.is_some_and(|t| t != 0) {
            if !std::path::Path::new("/sys/fs/cgroup/cpu/cpu.rt_runtime_us").exists() {
                return Err("Your kernel does not support cgroup cpu real-time runtime".into());
            }
            if let (Some(p), Some(t)) = (r.cpu_rt_period, r.cpu_rt_runtime)
                && t > p as i64
            {
                return Err("cpu-rt-runtime cannot be higher than cpu-rt-period".into());
            }
        }
        for (flag, set) in [
            ("--cpuset-cpus", &r.cpuset_cpus),
            ("--cpuset-mems", &r.cpuset_mems),
        ] {
            if let Some(s) = set.as_deref().filter(|s| !s.is_empty()) {
                let limit = if flag == "--cpuset-cpus" {
                    ncpu as u32
                } else {
                    numa_nodes()
                };
                check_cpuset(s, limit)
                    .map_err(|e| format!("invalid value {s:?} for {flag}: {e}"))?;
            }
        }
        if let Some(w) = r.blkio_weight.filter(|w| *w > 0) {
            if !(10..=1000).contains(&w) {
                return Err("Range of blkio weight is from 10 to 1000".into());
            }
            if !blkio_weight_supported() {
                return Err("--blkio-weight is not supported: this host's kernel has no block I/O weight (blkio.weight)".into());
            }
        }
        for t in r
            .device_read_bps
            .iter()
            .chain(&r.device_write_bps)
            .chain(&r.device_read_iops)
            .chain(&r.device_write_iops)
        {
            t.numbers()?;
        }
        for u in &self.ulimits {
            u.validate()?;
        }
        if let Some(adj) = self.oom_score_adj
            && !(-1000..=1000).contains(&adj)
        {
            return Err(format!(
                "Invalid value {adj}, range for oom score adj is [-1000, 1000]"
            ));
        }
        check_mode("pid", &self.pid_mode, &["host", "private", "container:"])?;
        check_mode(
            "ipc",
            &self.ipc_mode,
            &["host", "private", "shareable", "none", "container:"],
        )?;
        check_mode("uts", &self.uts_mode, &["host", "private"])?;
        check_mode("cgroupns", &self.cgroupns_mode, &["host", "private"])?;
        check_mode("userns", &self.userns_mode, &["host"])?;
        if is_host(&self.uts_mode) && self.hostname.as_deref().is_some_and(|h| !h.is_empty()) {
            return Err("Conflicting options: hostname and the UTS mode".into());
        }
        let net = super::NetMode::of(self);
        for key in self.sysctls.keys() {
            match sysctl_namespace(key)? {
                "ipc" if is_host(&self.ipc_mode) || mode_container(&self.ipc_mode).is_some() => {
                    return Err(format!(
                        "sysctl '{key}' is not allowed in host IPC mode or with a shared IPC namespace"
                    ));
                }
                "network" if matches!(net, super::NetMode::Host) => {
                    return Err(format!(
                        "sysctl '{key}' is not allowed in host network mode"
                    ));
                }
                "network" if matches!(net, super::NetMode::Container(_)) => {
                    return Err(format!(
                        "sysctl '{key}' is not allowed with a shared network namespace"
                    ));
                }
                "uts" => {
                    return Err(format!(
                        "sysctl '{key}' is not allowed: use --hostname or --domainname"
                    ));
                }
                _ => {}
            }
        }
        for k in self.annotations.keys() {
            if k.starts_with(RESERVED_ANNOTATIONS) {
                return Err(format!(
                    "annotation {k:?} is reserved: keys beginning {RESERVED_ANNOTATIONS} are the engine's"
                ));
            }
        }
        if let Some(s) = &self.stop_signal {
            super::signal_number(s).ok_or_else(|| format!("Invalid signal: {s}"))?;
        }
        if let Some(h) = &self.healthcheck {
            h.validate()?;
        }
        if let Some(d) = self.log_driver.as_deref()
            && !matches!(d, "json-file" | "local" | "none")
        {
            return Err(format!("logger: no log driver named '{d}' is registered"));
        }
        if let Some(p) = &self.cgroup_parent
            && (p.split('/').any(|c| c == ".." || c == ".") || p.contains('\0'))
        {
            return Err(format!("invalid cgroup parent {p:?}"));
        }
        for l in &self.links {
            parse_link(l)?;
        }
        if !self.links.is_empty() && !super::NetMode::of(self).is_bridge() {
            return Err("conflicting options: links and the network mode".into());
        }
        if let Some(d) = self.volume_driver.as_deref().filter(|d| *d != "local")
            && self.mounts.iter().any(|m| m.kind == "volume")
        {
            return Err(format!(
                "VolumeDriver {d:?} is not supported: volumes here are local"
            ));
        }
        if let Some(mac) = &self.mac_address {
            crate::network::parse_mac(mac).map_err(|e| e.to_string())?;
            if !super::NetMode::of(self).is_bridge() {
                return Err("conflicting options: mac-address and the network mode".into());
            }
        }
        for p in &self.expose {
            let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
            let ok_port = match port.split_once('-') {
                Some((a, b)) => a.parse::<u16>().is_ok() && b.parse::<u16>().is_ok(),
                None => port.parse::<u16>().is_ok(),
            };
            if !ok_port || !matches!(proto, "tcp" | "udp" | "sctp") {
                return Err(format!("invalid exposed port {p:?}"));
            }
        }
        Ok(())
    }
}

fn numa_nodes() -> u32 {
    std::fs::read_to_string("/sys/devices/system/node/online")
        .ok()
        .and_then(|s| {
            s.trim()
                .split([',', '-'])
                .filter_map(|n| n.parse::<u32>().ok())
                .max()
        })
        .map_or(1, |m| m + 1)
}

/// `0-2,4`: each number below `limit`.
fn check_cpuset(s: &str, limit: u32) -> Result<(), String> {
    for part in s.split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b) = (
            a.parse::<u32>()
                .map_err(|_| format!("invalid format {s:?}"))?,
            b.parse::<u32>()
                .map_err(|_| format!("invalid format {s:?}"))?,
        );
        if a > b {
            return Err(format!("invalid range {part:?}"));
        }
        if b >= limit {
            return Err(format!(
                "requested CPUs or memory nodes are not available: {part} (this host has 0-{})",
                limit - 1
            ));
        }
    }
    Ok(())
}

/// Whether the host's cgroups weigh block I/O (`blkio.weight`, `io.weight` or BFQ's).
pub fn blkio_weight_supported() -> bool {
    [
        "blkio/blkio.weight",
        "blkio/blkio.bfq.weight",
        "unified/io.weight",
    ]
    .iter()
    .any(|f| std::path::Path::new("/sys/fs/cgroup").join(f).exists())
}

/// `KEY=VALUE` lines (`--sysctl`, `--annotation`) as a map.
pub fn key_values(list: &[String], flag: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for s in list {
        let (k, v) = s
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| format!("invalid argument {s:?} for {flag}: expected KEY=VALUE"))?;
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulimits_as_docker_reads_them() {
        let u = Ulimit::parse("nofile=100:200").unwrap();
        assert_eq!(
            (u.soft, u.hard, u.oci_name().as_str()),
            (100, 200, "RLIMIT_NOFILE")
        );
        assert_eq!(Ulimit::parse("nproc=50").unwrap().hard, 50);
        for bad in ["nofile", "bogus=1", "nofile=2:1", "nofile=x"] {
            assert!(Ulimit::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sysctls_as_docker_allows_them() {
        assert_eq!(sysctl_namespace("net.ipv4.ip_forward").unwrap(), "network");
        assert_eq!(sysctl_namespace("kernel.shmmax").unwrap(), "ipc");
        assert_eq!(sysctl_namespace("fs.mqueue.msg_max").unwrap(), "ipc");
        let e = sysctl_namespace("kernel.panic").unwrap_err();
        assert_eq!(e, "sysctl 'kernel.panic' is not allowed");
        let mut o = CreateOptions {
            image: "x".into(),
            network: Some("host".into()),
            ..Default::default()
        };
        o.sysctls.insert("net.ipv4.ip_forward".into(), "1".into());
        assert!(o.validate().unwrap_err().contains("host network mode"));
    }

    #[test]
    fn modes_and_limits_are_checked() {
        let base = || CreateOptions {
            image: "x".into(),
            ..Default::default()
        };
        let mut o = base();
        o.pid_mode = Some("container:db".into());
        o.ipc_mode = Some("shareable".into());
        o.validate().unwrap();
        for (set, want) in [
            (
                (|o: &mut CreateOptions| o.userns_mode = Some("keep-id".into()))
                    as fn(&mut CreateOptions),
                "invalid userns mode",
            ),
            (
                |o| o.pid_mode = Some("container:".into()),
                "invalid pid mode",
            ),
            (
                |o| {
                    o.uts_mode = Some("host".into());
                    o.hostname = Some("h".into())
                },
                "hostname and the UTS mode",
            ),
            (|o| o.oom_score_adj = Some(1001), "range for oom score adj"),
            (
                |o| o.resources.cpuset_cpus = Some("0-4096".into()),
                "not available",
            ),
            (
                |o| {
                    o.annotations
                        .insert("io.ketch.join.owner".into(), "x".into());
                },
                "reserved",
            ),
            (
                |o| o.log_driver = Some("syslog".into()),
                "no log driver named",
            ),
            (|o| o.cgroup_parent = Some("../x".into()), "cgroup parent"),
            (
                |o| o.stop_signal = Some("SIGBOGUS".into()),
                "Invalid signal",
            ),
            (
                |o| {
                    o.resources.memory = Some(64 << 20);
                    o.resources.memory_swap = Some(32 << 20)
                },
                "memoryswap",
            ),
        ] {
            let mut o = base();
            set(&mut o);
            let e = o.validate().unwrap_err();
            assert!(e.contains(want), "{e} / {want}");
        }
    }
}
