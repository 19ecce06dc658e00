//! An image config plus run options, turned into an OCI runtime spec.

use serde_json::{Value, json};

use super::{CreateOptions, Resources, options};

/// Docker's default capabilities.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability the kernel knows, for `--privileged` and `--cap-add ALL`.
pub const ALL_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

const MASKED: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

const READONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// `CAP_X` for `x`, `X` or `CAP_X`.
pub fn cap_name(s: &str) -> String {
    let up = s.to_ascii_uppercase();
    if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    }
}

/// The capability set after `--privileged`, `--cap-add` and `--cap-drop`.
pub fn capabilities(opts: &CreateOptions) -> Vec<String> {
    if opts.privileged {
        return ALL_CAPS.iter().map(|s| s.to_string()).collect();
    }
    let mut caps: Vec<String> = DEFAULT_CAPS.iter().map(|s| s.to_string()).collect();
    if opts.cap_drop.iter().any(|c| c.eq_ignore_ascii_case("all")) {
        caps.clear();
    }
    for c in &opts.cap_drop {
        let c = cap_name(c);
        caps.retain(|x| *x != c);
    }
    for c in &opts.cap_add {
        if c.eq_ignore_ascii_case("all") {
            caps = ALL_CAPS.iter().map(|s| s.to_string()).collect();
            continue;
        }
        let c = cap_name(c);
        if !caps.contains(&c) {
            caps.push(c);
        }
    }
    caps
}

/// The container's seccomp profile (its own, from `--security-opt seccomp=PROFILE`, or
/// Docker's default), resolved for its bounding capabilities and this host into OCI's
/// `linux.seccomp`: `None` for a privileged or unconfined container, as with Docker. A
/// user's profile is compiled here once too, so a mistake in it fails `create` with the rule
/// and call at fault, not the start.
pub fn seccomp(opts: &CreateOptions, caps: &[String]) -> Result<Option<Value>, String> {
    use ketch_seccomp::{Host, Profile, compile};
    if opts.privileged || opts.seccomp_unconfined {
        return Ok(None);
    }
    let profile = match &opts.seccomp_profile {
        Some(text) => Profile::from_json(text).map_err(|e| e.to_string())?,
        None => Profile::default_profile(),
    };
    let host = Host::this().map_err(|e| e.to_string())?;
    let Some(resolved) = profile.resolve(caps, &host).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    // The built-in profile is compiled for every host by its tests; a user's is checked now.
    if opts.seccomp_profile.is_some() {
        compile(&resolved, host.arch).map_err(|e| e.to_string())?;
    }
    Ok(Some(
        serde_json::to_value(&resolved).map_err(|e| format!("seccomp profile: {e}"))?,
    ))
}

/// Inputs to the spec that come from the engine rather than the user.
pub struct SpecContext<'a> {
    pub id: &'a str,
    pub rootfs_path: String,
    pub rootfs_mounts: Value,
    pub hostname: String,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub bundle: String,
    pub nofile: u64,
    /// The network namespace to join (a bridge network's, or another container's); `None`
    /// with a network namespace of its own means loopback only.
    pub netns: Option<String>,
    /// A user-defined network's records file: the monitor serves its names.
    pub dns_records: Option<String>,
    /// Where the monitor sends names that are not the network's.
    pub dns_upstream: Vec<String>,
    /// Volumes, binds and tmpfs mounts, as runtime-spec mount entries.
    pub user_mounts: Vec<Value>,
    /// `--device` and `--device-cgroup-rule`, from [`devices`].
    pub devices: Devices,
    /// `linux.seccomp`, from [`seccomp`].
    pub seccomp: Option<Value>,
    /// The image's SHELL, for a `CMD-SHELL` health check.
    pub shell: Option<Vec<String>>,
}

/// Device nodes to create (`linux.devices`) and device cgroup rules to add to the default
/// allow-list (`linux.resources.devices`).
#[derive(Default)]
pub struct Devices {
    pub nodes: Vec<Value>,
    pub rules: Vec<Value>,
}

/// A device cgroup rule as Docker takes it: `TYPE MAJOR:MINOR ACCESS`, type `a`, `b` or `c`,
/// `*` for any number, access a subset of `rwm`.
pub fn device_rule(s: &str) -> Result<Value, String> {
    let bad = || format!("invalid device cgroup rule {s:?} (as in 'c 1:3 rwm')");
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [kind, numbers, access] = parts.as_slice() else {
        return Err(bad());
    };
    let (major, minor) = numbers.split_once(':').ok_or_else(bad)?;
    let number = |n: &str| -> Result<Value, String> {
        match n {
            "*" => Ok(Value::Null),
            n => n.parse::<u32>().map(|v| json!(v)).map_err(|_| bad()),
        }
    };
    if !["a", "b", "c"].contains(kind)
        || access.is_empty()
        || !access.chars().all(|c| "rwm".contains(c))
    {
        return Err(bad());
    }
    let mut rule = json!({"allow": true, "type": kind, "access": access});
    for (key, n) in [("major", major), ("minor", minor)] {
        let v = number(n)?;
        if !v.is_null() {
            rule[key] = v;
        }
    }
    Ok(rule)
}

/// The nodes and rules for a container's `--device` and `--device-cgroup-rule` options. A
/// host path is a device node (links followed, as Docker does) or a directory of them.
pub fn devices(opts: &CreateOptions) -> Result<Devices, String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = Devices::default();
    for r in &opts.device_cgroup_rules {
        out.rules.push(device_rule(r)?);
    }
    for d in &opts.devices {
        d.validate()?;
        let host = std::path::Path::new(&d.path_on_host);
        let inside = if d.path_in_container.is_empty() {
            d.path_on_host.clone()
        } else {
            d.path_in_container.clone()
        };
        let perms = if d.cgroup_permissions.is_empty() {
            "rwm"
        } else {
            d.cgroup_permissions.as_str()
        };
        let md = std::fs::metadata(host).map_err(|e| {
            format!(
                "error gathering device information while adding custom device {:?}: {e}",
                d.path_on_host
            )
        })?;
        let mut found = Vec::new();
        if md.is_dir() {
            let mut stack = vec![host.to_path_buf()];
            while let Some(dir) = stack.pop() {
                for e in
                    std::fs::read_dir(&dir).map_err(|e| format!("read {}: {e}", dir.display()))?
                {
                    let p = e.map_err(|e| e.to_string())?.path();
                    let Ok(m) = std::fs::symlink_metadata(&p) else {
                        continue;
                    };
                    if m.is_dir() {
                        stack.push(p);
                    } else if m.file_type().is_char_device() || m.file_type().is_block_device() {
                        let rel = p.strip_prefix(host).unwrap_or(&p).display().to_string();
                        found.push((format!("{}/{rel}", inside.trim_end_matches('/')), m));
                    }
                }
            }
        } else if md.file_type().is_char_device() || md.file_type().is_block_device() {
            found.push((inside, md));
        } else {
            return Err(format!(
                "error gathering device information while adding custom device {:?}: not a device node",
                d.path_on_host
            ));
        }
        for (path, m) in found {
            let kind = if m.file_type().is_block_device() {
                "b"
            } else {
                "c"
            };
            let (major, minor) = (libc::major(m.rdev()), libc::minor(m.rdev()));
            out.nodes.push(json!({
                "path": path, "type": kind, "major": major, "minor": minor,
                "fileMode": m.mode() & 0o7777, "uid": m.uid(), "gid": m.gid(),
            }));
            out.rules.push(json!({
                "allow": true, "type": kind, "major": major, "minor": minor, "access": perms,
            }));
        }
    }
    Ok(out)
}

pub fn build(opts: &CreateOptions, cx: &SpecContext<'_>) -> Value {
    let caps = capabilities(opts);
    let nonroot = opts.user.as_deref().is_some_and(|u| {
        !u.is_empty() && u != "0" && u != "root" && !u.starts_with("0:") && !u.starts_with("root:")
    });
    // A non-root user keeps only the bounding set, as with Docker.
    let (eff, perm) = if nonroot {
        (vec![], vec![])
    } else {
        (caps.clone(), caps.clone())
    };
    let mut namespaces = vec![json!({"type": "mount"})];
    // A mode of `host` shares the host's namespace (none in the spec); `container:X` joins
    // X's, whose path is filled in at each start with X's process then.
    for (kind, mode) in [
        ("pid", &opts.pid_mode),
        ("ipc", &opts.ipc_mode),
        ("uts", &opts.uts_mode),
        ("cgroup", &opts.cgroupns_mode),
    ] {
        if options::is_host(mode) {
            continue;
        }
        match options::mode_container(mode) {
            Some(_) => {
                namespaces.push(json!({"type": kind, "path": format!("/proc/self/ns/{kind}")}))
            }
            None => namespaces.push(json!({"type": kind})),
        }
    }
    match (opts.network.as_deref(), &cx.netns) {
        (Some("host"), _) => {}
        (_, Some(path)) => namespaces.push(json!({"type": "network", "path": path})),
        (_, None) => namespaces.push(json!({"type": "network"})),
    }
    let sys_opts = if opts.privileged {
        vec!["nosuid", "noexec", "nodev", "rw"]
    } else {
        vec!["nosuid", "noexec", "nodev", "ro"]
    };
    let shm_size = format!("size={}k", opts.shm_size.unwrap_or(64 << 20).div_ceil(1024));
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": sys_opts}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
    ];
    match opts.ipc_mode.as_deref() {
        // The host's /dev/shm with the host's IPC namespace, as Docker gives it.
        Some("host") => mounts.push(json!({"destination": "/dev/shm", "type": "bind", "source": "/dev/shm", "options": ["rbind", "nosuid", "noexec", "nodev"]})),
        Some("none") => {}
        _ => mounts.push(json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", shm_size]})),
    }
    for f in ["resolv.conf", "hostname", "hosts"] {
        mounts.push(json!({
            "destination": format!("/etc/{f}"),
            "type": "bind",
            "source": format!("{}/{f}", cx.bundle),
            "options": ["rbind", "rprivate"],
        }));
    }
    // The user's mounts too; then parents before what is inside them (a volume on /etc
    // before the container's /etc/hosts), as Docker orders them. The sort is stable.
    mounts.extend(cx.user_mounts.iter().cloned());
    mounts.sort_by_key(|m| {
        m["destination"]
            .as_str()
            .unwrap_or("")
            .split('/')
            .filter(|c| !c.is_empty())
            .count()
    });
    let mut resources = serde_json::Map::new();
    // What the container may use beyond the shim's default allow-list: everything when
    // privileged, else what `--device` and `--device-cgroup-rule` name.
    let device_rules = if opts.privileged {
        vec![json!({"allow": true, "type": "a", "access": "rwm"})]
    } else {
        cx.devices.rules.clone()
    };
    if !device_rules.is_empty() {
        resources.insert("devices".into(), json!(device_rules));
    }
    // Throttle devices were checked at create; one gone since is left out.
    resources.extend(limits(&opts.resources).unwrap_or_default());
    let restart = opts.restart.clone().unwrap_or_else(|| "no".into());
    // The `local` driver keeps Docker's defaults for it: 5 files of 20 MB.
    let (max_size, max_file) = match opts.log_driver.as_deref() {
        Some("local") => (
            opts.log_max_size.unwrap_or(20 << 20),
            opts.log_max_file.unwrap_or(5),
        ),
        _ => (
            opts.log_max_size.unwrap_or(0),
            opts.log_max_file.unwrap_or(1),
        ),
    };
    let mut annotations = json!({
        "io.ketch.rootfs": cx.rootfs_mounts.to_string(),
        "io.ketch.restart": restart,
        "io.ketch.log.max-size": max_size.to_string(),
        "io.ketch.log.max-file": max_file.to_string(),
        "io.ketch.log.driver": opts.log_driver.as_deref().unwrap_or("json-file"),
    });
    if let Some(u) = &opts.user {
        annotations["io.ketch.user"] = json!(u);
    }
    if opts.init {
        annotations["io.ketch.init"] = json!("true");
    }
    if opts.open_stdin {
        annotations["io.ketch.stdin-open"] = json!("true");
    }
    if opts.privileged {
        annotations["io.ketch.privileged"] = json!("true");
    }
    if let Some(h) = &opts.healthcheck
        && matches!(
            h.test.first().map(String::as_str),
            Some("CMD" | "CMD-SHELL")
        )
    {
        annotations["io.ketch.health"] = json!(serde_json::to_string(h).unwrap_or_default());
        if let Some(shell) = &cx.shell {
            annotations["io.ketch.health.shell"] =
                json!(serde_json::to_string(shell).unwrap_or_default());
        }
    }
    if !opts.group_add.is_empty() {
        annotations["io.ketch.groups"] = json!(opts.group_add.join(","));
    }
    if options::mode_container(&opts.ipc_mode).is_some() {
        // The /dev/shm of the container whose IPC namespace this one joins, in place of a
        // tmpfs of its own: the monitor clones it out of that container's mounts at start.
        annotations["io.ketch.shm"] = json!("ipc");
    }
    for (k, v) in &opts.annotations {
        if !k.starts_with(options::RESERVED_ANNOTATIONS) {
            annotations[k] = json!(v);
        }
    }
    if let (Some(path), true) = (&cx.netns, super::NetMode::of(opts).is_bridge()) {
        // The monitor lets go of the namespace when the container is done.
        annotations["io.ketch.netns"] = json!(path);
        if let Some(records) = &cx.dns_records {
            annotations["io.ketch.dns.records"] = json!(records);
            annotations["io.ketch.dns.upstream"] = json!(cx.dns_upstream.join(","));
        }
    }
    // The engine's open-file limit unless the user gives one; the user's other limits.
    let mut rlimits = vec![json!({"type": "RLIMIT_NOFILE", "hard": cx.nofile, "soft": cx.nofile})];
    for u in &opts.ulimits {
        let name = u.oci_name();
        rlimits.retain(|r| r["type"] != name.as_str());
        // -1 is unlimited, as Docker reads it.
        let v = |n: i64| if n < 0 { u64::MAX } else { n as u64 };
        rlimits.push(json!({"type": name, "soft": v(u.soft), "hard": v(u.hard)}));
    }
    let (masked, readonly) = if opts.privileged {
        (vec![], vec![])
    } else {
        (
            opts.masked_paths
                .clone()
                .unwrap_or_else(|| MASKED.iter().map(|s| s.to_string()).collect()),
            opts.readonly_paths
                .clone()
                .unwrap_or_else(|| READONLY.iter().map(|s| s.to_string()).collect()),
        )
    };
    let console_size = opts
        .console_size
        .filter(|(h, w)| opts.tty && *h > 0 && *w > 0)
        .map(|(h, w)| json!({"height": h, "width": w}));
    let mut spec = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": opts.tty,
            "user": {"uid": 0, "gid": 0},
            "args": cx.args,
            "env": cx.env,
            "cwd": cx.cwd,
            "capabilities": {"bounding": caps, "effective": eff, "permitted": perm, "inheritable": [], "ambient": []},
            "rlimits": rlimits,
            "noNewPrivileges": opts.no_new_privileges,
        },
        "root": {"path": cx.rootfs_path, "readonly": opts.read_only},
        "hostname": cx.hostname,
        "mounts": mounts,
        "annotations": annotations,
        "linux": {
            "namespaces": namespaces,
            "resources": Value::Object(resources),
            "cgroupsPath": cgroups_path(opts, cx.id),
            "devices": cx.devices.nodes,
            "maskedPaths": masked,
            "readonlyPaths": readonly,
            "sysctl": opts.sysctls,
        },
    });
    if let Some(d) = opts.domainname.as_deref().filter(|d| !d.is_empty()) {
        spec["domainname"] = json!(d);
    }
    if let Some(adj) = opts.oom_score_adj {
        spec["process"]["oomScoreAdj"] = json!(adj);
    }
    if let Some(s) = &cx.seccomp {
        spec["linux"]["seccomp"] = s.clone();
    }
    if let Some(size) = console_size {
        spec["process"]["consoleSize"] = size;
    }
    spec
}

/// The cgroup the container's own is made in: `/ketch/ID`, or `PARENT/ID` with
/// `--cgroup-parent`, as Docker's cgroupfs driver names it.
pub fn cgroups_path(opts: &CreateOptions, id: &str) -> String {
    match opts
        .cgroup_parent
        .as_deref()
        .map(|p| p.trim_matches('/'))
        .filter(|p| !p.is_empty())
    {
        Some(parent) => format!("/{parent}/{id}"),
        None => format!("/ketch/{id}"),
    }
}

/// OCI's `linux.resources` limits (memory, cpu, pids, blockIO) for `r`: what `create`
/// writes in the spec and `update` hands to a running container's monitor.
pub fn limits(r: &Resources) -> Result<serde_json::Map<String, Value>, String> {
    let mut out = serde_json::Map::new();
    let mut memory = serde_json::Map::new();
    if let Some(m) = r.memory.filter(|m| *m > 0) {
        memory.insert("limit".into(), json!(m as i64));
        // Docker's default: as much swap as memory, unless told otherwise.
        let swap = match r.memory_swap {
            Some(s) if s != 0 => s,
            _ => (m as i64).saturating_mul(2),
        };
        memory.insert("swap".into(), json!(swap));
    }
    if let Some(m) = r.memory_reservation.filter(|m| *m > 0) {
        memory.insert("reservation".into(), json!(m as i64));
    }
    if let Some(s) = r.memory_swappiness {
        memory.insert("swappiness".into(), json!(s));
    }
    if r.oom_kill_disable {
        memory.insert("disableOOMKiller".into(), json!(true));
    }
    if !memory.is_empty() {
        out.insert("memory".into(), Value::Object(memory));
    }
    let mut cpu = serde_json::Map::new();
    if let Some(s) = r.cpu_shares.filter(|s| *s > 0) {
        cpu.insert("shares".into(), json!(s));
    }
    if let Some(c) = r.cpus.filter(|c| *c > 0.0) {
        cpu.insert("quota".into(), json!((c * 100_000.0) as i64));
        cpu.insert("period".into(), json!(100_000));
    }
    if let Some(p) = r.cpu_period.filter(|p| *p > 0) {
        cpu.insert("period".into(), json!(p));
    }
    if let Some(q) = r.cpu_quota.filter(|q| *q > 0) {
        cpu.insert("quota".into(), json!(q));
    }
    if let Some(p) = r.cpu_rt_period.filter(|p| *p > 0) {
        cpu.insert("realtimePeriod".into(), json!(p));
    }
    if let Some(t) = r.cpu_rt_runtime.filter(|t| *t != 0) {
        cpu.insert("realtimeRuntime".into(), json!(t));
    }
    if let Some(c) = r.cpuset_cpus.as_deref().filter(|c| !c.is_empty()) {
        cpu.insert("cpus".into(), json!(c));
    }
    if let Some(m) = r.cpuset_mems.as_deref().filter(|m| !m.is_empty()) {
        cpu.insert("mems".into(), json!(m));
    }
    if !cpu.is_empty() {
        out.insert("cpu".into(), Value::Object(cpu));
    }
    if let Some(p) = r.pids_limit.filter(|p| *p > 0) {
        out.insert("pids".into(), json!({"limit": p}));
    }
    let mut blkio = serde_json::Map::new();
    if let Some(w) = r.blkio_weight.filter(|w| *w > 0) {
        blkio.insert("weight".into(), json!(w));
    }
    for (key, list) in [
        ("throttleReadBpsDevice", &r.device_read_bps),
        ("throttleWriteBpsDevice", &r.device_write_bps),
        ("throttleReadIOPSDevice", &r.device_read_iops),
        ("throttleWriteIOPSDevice", &r.device_write_iops),
    ] {
        if list.is_empty() {
            continue;
        }
        let mut devs = Vec::new();
        for t in list {
            let (major, minor) = t.numbers()?;
            devs.push(json!({"major": major, "minor": minor, "rate": t.rate}));
        }
        blkio.insert(key.into(), json!(devs));
    }
    if !blkio.is_empty() {
        out.insert("blockIO".into(), Value::Object(blkio));
    }
    Ok(out)
}
