//! `create`, `run` and `start`: Docker's flags read into the engine's options, and a
//! container started attached or detached.

use super::*;

/// The limits `run`, `create` and `update` take alike.
#[derive(Args, Clone)]
pub struct ResourceArgs {
    /// Memory limit
    #[arg(short = 'm', long, value_parser = crate::parse_bytes)]
    memory: Option<u64>,
    /// Memory soft limit
    #[arg(long, value_parser = crate::parse_bytes)]
    memory_reservation: Option<u64>,
    /// Swap limit equal to memory plus swap: '-1' to enable unlimited swap
    #[arg(long, allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// Number of CPUs
    #[arg(long)]
    cpus: Option<f64>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long)]
    cpu_shares: Option<u64>,
    /// Limit CPU CFS (Completely Fair Scheduler) period
    #[arg(long)]
    cpu_period: Option<u64>,
    /// Limit CPU CFS (Completely Fair Scheduler) quota
    #[arg(long)]
    cpu_quota: Option<i64>,
    /// Limit CPU real-time period in microseconds
    #[arg(long)]
    cpu_rt_period: Option<u64>,
    /// Limit CPU real-time runtime in microseconds
    #[arg(long, allow_hyphen_values = true)]
    cpu_rt_runtime: Option<i64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long)]
    cpuset_cpus: Option<String>,
    /// MEMs in which to allow execution (0-3, 0,1)
    #[arg(long)]
    cpuset_mems: Option<String>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long, allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    /// Block IO (relative weight), between 10 and 1000, or 0 to disable
    #[arg(long)]
    blkio_weight: Option<u16>,
}

impl ResourceArgs {
    pub(super) fn resources(&self) -> Result<ketch::api::Resources> {
        let memory_swap = match self.memory_swap.as_deref() {
            None => None,
            Some("-1") => Some(-1),
            Some(v) => Some(crate::parse_bytes(v).map_err(|e| {
                Exit(
                    125,
                    format!("invalid argument \"{v}\" for \"--memory-swap\" flag: {e}"),
                )
            })? as i64),
        };
        Ok(ketch::api::Resources {
            memory: self.memory,
            memory_reservation: self.memory_reservation,
            memory_swap,
            cpus: self.cpus,
            cpu_shares: self.cpu_shares,
            cpu_period: self.cpu_period,
            cpu_quota: self.cpu_quota,
            cpu_rt_period: self.cpu_rt_period.filter(|p| *p > 0),
            cpu_rt_runtime: self.cpu_rt_runtime.filter(|t| *t != 0),
            cpuset_cpus: self.cpuset_cpus.clone(),
            cpuset_mems: self.cpuset_mems.clone(),
            pids_limit: self.pids_limit,
            blkio_weight: self.blkio_weight.filter(|w| *w > 0),
            ..Default::default()
        })
    }
}

#[derive(Args, Clone)]
pub struct CreateArgs {
    /// Assign a name to the container
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    limits: ResourceArgs,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file")]
    env_file: Vec<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long)]
    workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// Container host name
    #[arg(short = 'h', long)]
    hostname: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    entrypoint: Option<String>,
    /// Set meta data on a container
    #[arg(short = 'l', long = "label")]
    label: Vec<String>,
    /// Run an init inside the container that forwards signals and reaps processes
    #[arg(long)]
    init: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    tty: bool,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Attach to STDIN, STDOUT or STDERR
    #[arg(short = 'a', long, value_name = "list")]
    attach: Vec<String>,
    /// Give extended privileges to this container
    #[arg(long)]
    privileged: bool,
    /// Add Linux capabilities
    #[arg(long)]
    cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long)]
    cap_drop: Vec<String>,
    /// Security options (no-new-privileges)
    #[arg(long)]
    security_opt: Vec<String>,
    /// Add a host device to the container (HOST[:CONTAINER][:PERMISSIONS])
    #[arg(long)]
    device: Vec<String>,
    /// Add a rule to the cgroup allowed devices list ('c 1:3 rwm')
    #[arg(long)]
    device_cgroup_rule: Vec<String>,
    /// Mount the container's root filesystem as read only
    #[arg(long)]
    read_only: bool,
    /// Connect a container to a network (bridge, host, none, container:NAME, or a network's name)
    #[arg(long, visible_alias = "net")]
    network: Option<String>,
    /// IPv4 address (e.g., 172.30.100.104)
    #[arg(long)]
    ip: Option<String>,
    /// Add network-scoped alias for the container
    #[arg(long)]
    network_alias: Vec<String>,
    /// Set custom DNS servers
    #[arg(long)]
    dns: Vec<String>,
    /// Add a custom host-to-IP mapping (host:ip)
    #[arg(long)]
    add_host: Vec<String>,
    /// Publish a container's port(s) to the host ([hostIP:][hostPort:]containerPort[/proto])
    #[arg(short = 'p', long)]
    publish: Vec<String>,
    /// Publish all exposed ports to random ports
    #[arg(short = 'P', long)]
    publish_all: bool,
    /// Bind mount a volume ([NAME|/HOST:]/PATH[:ro|rw|nocopy|z|Z|rshared|...])
    #[arg(short = 'v', long)]
    volume: Vec<String>,
    /// Attach a filesystem mount (type=volume|bind|tmpfs,source=,target=,readonly,...)
    #[arg(long)]
    mount: Vec<String>,
    /// Mount a tmpfs directory (/PATH[:size=64m,mode=1777,ro])
    #[arg(long)]
    tmpfs: Vec<String>,
    /// Mount volumes from the specified container(s) (NAME[:ro|rw])
    #[arg(long)]
    volumes_from: Vec<String>,
    /// Restart policy to apply when a container exits (no, on-failure[:N], always, unless-stopped)
    #[arg(long)]
    restart: Option<String>,
    /// Log driver options (max-size, max-file)
    #[arg(long)]
    log_opt: Vec<String>,
    /// Automatically remove the container when it exits
    #[arg(long)]
    rm: bool,
    /// Pull image before running (missing, always, never)
    #[arg(long, default_value = "missing", value_parser = ["missing", "always", "never"])]
    pull: String,
    /// Suppress the pull output
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Bind mount the engine's API socket and credentials into the container (not supported)
    #[arg(long)]
    use_api_socket: bool,
    /// Set platform if server is multi-platform capable (for a pull)
    #[arg(long)]
    platform: Option<String>,
    /// Tune container memory swappiness (0 to 100)
    #[arg(long, allow_hyphen_values = true)]
    memory_swappiness: Option<i64>,
    /// Disable OOM Killer
    #[arg(long)]
    oom_kill_disable: bool,
    /// Tune host's OOM preferences (-1000 to 1000)
    #[arg(long, allow_hyphen_values = true)]
    oom_score_adj: Option<i32>,
    /// Limit read rate (bytes per second) from a device
    #[arg(long)]
    device_read_bps: Vec<String>,
    /// Limit write rate (bytes per second) to a device
    #[arg(long)]
    device_write_bps: Vec<String>,
    /// Limit read rate (IO per second) from a device
    #[arg(long)]
    device_read_iops: Vec<String>,
    /// Limit write rate (IO per second) to a device
    #[arg(long)]
    device_write_iops: Vec<String>,
    /// Optional parent cgroup for the container
    #[arg(long)]
    cgroup_parent: Option<String>,
    /// Cgroup namespace to use (host|private)
    #[arg(long)]
    cgroupns: Option<String>,
    /// PID namespace to use (host, container:NAME)
    #[arg(long)]
    pid: Option<String>,
    /// IPC mode to use (private, shareable, none, host, container:NAME)
    #[arg(long)]
    ipc: Option<String>,
    /// UTS namespace to use (host)
    #[arg(long)]
    uts: Option<String>,
    /// User namespace to use (host)
    #[arg(long)]
    userns: Option<String>,
    /// Ulimit options (NAME=SOFT[:HARD])
    #[arg(long)]
    ulimit: Vec<String>,
    /// Size of /dev/shm
    #[arg(long, value_parser = crate::parse_bytes)]
    shm_size: Option<u64>,
    /// Add additional groups to join
    #[arg(long)]
    group_add: Vec<String>,
    /// Set custom DNS search domains
    #[arg(long)]
    dns_search: Vec<String>,
    /// Set DNS options
    #[arg(long, visible_alias = "dns-opt")]
    dns_option: Vec<String>,
    /// Container NIS domain name
    #[arg(long)]
    domainname: Option<String>,
    /// Sysctl options (KEY=VALUE)
    #[arg(long)]
    sysctl: Vec<String>,
    /// Add an annotation to the container (passed through to the OCI runtime)
    #[arg(long)]
    annotation: Vec<String>,
    /// Signal to stop the container
    #[arg(long)]
    stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long, allow_hyphen_values = true)]
    stop_timeout: Option<i64>,
    /// Logging driver for the container (json-file, local, none)
    #[arg(long)]
    log_driver: Option<String>,
    /// Expose a port or a range of ports
    #[arg(long)]
    expose: Vec<String>,
    /// Read in a line delimited file of labels
    #[arg(long)]
    label_file: Vec<String>,
    /// Write the container ID to the file
    #[arg(long)]
    cidfile: Option<String>,
    /// Command to run to check health
    #[arg(long)]
    health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h)
    #[arg(long)]
    health_interval: Option<String>,
    /// Maximum time to allow one check to run (ms|s|m|h)
    #[arg(long)]
    health_timeout: Option<String>,
    /// Consecutive failures needed to report unhealthy
    #[arg(long)]
    health_retries: Option<i64>,
    /// Start period for the container to initialize before starting health-retries countdown (ms|s|m|h)
    #[arg(long)]
    health_start_period: Option<String>,
    /// Time between running the check during the start period (ms|s|m|h)
    #[arg(long)]
    health_start_interval: Option<String>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long)]
    no_healthcheck: bool,
    /// Runtime to use for this container (runc)
    #[arg(long)]
    runtime: Option<String>,
    /// Container isolation technology (default)
    #[arg(long)]
    isolation: Option<String>,
    /// Optional volume driver for the container (local; another only with no volumes)
    #[arg(long)]
    volume_driver: Option<String>,
    /// Skip image verification (content trust is not used here)
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    disable_content_trust: Option<String>,
    /// Add link to another container (NAME[:ALIAS])
    #[arg(long)]
    link: Vec<String>,
    /// Container MAC address (e.g., 92:d0:c6:0a:29:33)
    #[arg(long)]
    mac_address: Option<String>,
    /// GPU devices to add to the container (not supported)
    #[arg(long)]
    gpus: Option<String>,
    /// IPv6 address (e.g., 2001:db8::33), on a network made with --ipv6
    #[arg(long)]
    ip6: Option<String>,
    /// Container IPv4/IPv6 link-local addresses
    #[arg(long)]
    link_local_ip: Vec<String>,
    /// Block IO weight (relative device weight) (not supported)
    #[arg(long)]
    blkio_weight_device: Vec<String>,
    /// Storage driver options for the container (not supported)
    #[arg(long)]
    storage_opt: Vec<String>,
    /// CPU count (Windows only)
    #[arg(long)]
    cpu_count: Option<i64>,
    /// CPU percent (Windows only)
    #[arg(long)]
    cpu_percent: Option<i64>,
    /// Maximum IO bandwidth limit for the system drive (Windows only)
    #[arg(long)]
    io_maxbandwidth: Option<String>,
    /// Maximum IOps limit for the system drive (Windows only)
    #[arg(long)]
    io_maxiops: Option<u64>,
    /// Kernel memory limit (not supported: removed from the kernel)
    #[arg(long)]
    kernel_memory: Option<String>,
    /// The image
    image: String,
    /// Command and arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// A Go duration flag (`--health-interval 1s`) in nanoseconds.
fn duration_flag(flag: &str, v: &Option<String>) -> Result<i64> {
    match v {
        None => Ok(0),
        Some(v) => ketch::api::parse_duration(v).ok_or_else(|| {
            Exit(
                125,
                format!(
                    "invalid argument \"{v}\" for \"--{flag}\" flag: time: invalid duration \"{v}\""
                ),
            )
            .into()
        }),
    }
}

pub(super) fn throttles(
    flag: &str,
    list: &[String],
    bytes: bool,
) -> Result<Vec<ketch::api::ThrottleDevice>> {
    list.iter()
        .map(|t| {
            ketch::api::ThrottleDevice::parse(t, bytes).map_err(|e| {
                Exit(
                    125,
                    format!("invalid argument \"{t}\" for \"--{flag}\" flag: {e}"),
                )
                .into()
            })
        })
        .collect()
}

/// The streams a foreground `run` is attached to.
#[derive(Clone, Copy)]
pub(crate) struct Streams {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

impl CreateArgs {
    /// `-a STREAM...` (any case, as Docker reads them); without it, the output streams and,
    /// with `-i`, the input. Input is attached only to a container whose input is open.
    pub(crate) fn streams(&self) -> Result<Streams> {
        if self.attach.is_empty() {
            return Ok(Streams {
                stdin: self.interactive,
                stdout: true,
                stderr: true,
            });
        }
        let mut s = Streams {
            stdin: false,
            stdout: false,
            stderr: false,
        };
        for a in &self.attach {
            match a.to_ascii_lowercase().as_str() {
                "stdin" => s.stdin = self.interactive,
                "stdout" => s.stdout = true,
                "stderr" => s.stderr = true,
                _ => bail!(Exit(
                    125,
                    format!(
                        "invalid argument \"{a}\" for \"-a, --attach\" flag: valid streams are STDIN, STDOUT and STDERR"
                    )
                )),
            }
        }
        Ok(s)
    }

    /// The flags Docker has that ketch refuses, each with the API field it sets.
    fn refused(&self) -> Result<()> {
        let set: [(&str, &str, bool); 9] = [
            ("gpus", "DeviceRequests", self.gpus.is_some()),
            (
                "blkio-weight-device",
                "BlkioWeightDevice",
                !self.blkio_weight_device.is_empty(),
            ),
            ("storage-opt", "StorageOpt", !self.storage_opt.is_empty()),
            ("cpu-count", "CpuCount", self.cpu_count.is_some()),
            ("cpu-percent", "CpuPercent", self.cpu_percent.is_some()),
            (
                "io-maxbandwidth",
                "IOMaximumBandwidth",
                self.io_maxbandwidth.is_some(),
            ),
            ("io-maxiops", "IOMaximumIOps", self.io_maxiops.is_some()),
            ("kernel-memory", "", self.kernel_memory.is_some()),
            ("use-api-socket", "", self.use_api_socket),
        ];
        for (flag, field, given) in set {
            if !given {
                continue;
            }
            let reason = match field {
                "" if flag == "kernel-memory" => "kernel memory limits are gone from the kernel",
                "" if flag == "use-api-socket" => {
                    "the engine's socket and credentials are not handed to containers; \
                     bind mount the socket with -v if the container is to drive the engine"
                }
                f => ketch::api::create::refusal(f).unwrap_or("not supported"),
            };
            bail!(Exit(125, format!("--{flag} is not supported: {reason}")));
        }
        Ok(())
    }

    fn healthcheck(&self) -> Result<Option<ketch::api::Healthcheck>> {
        let any = self.health_cmd.is_some()
            || self.health_interval.is_some()
            || self.health_timeout.is_some()
            || self.health_retries.is_some()
            || self.health_start_period.is_some()
            || self.health_start_interval.is_some();
        if self.no_healthcheck {
            if any {
                bail!(Exit(
                    125,
                    "--no-healthcheck conflicts with --health-* options".into()
                ));
            }
            return Ok(Some(ketch::api::Healthcheck {
                test: vec!["NONE".into()],
                ..Default::default()
            }));
        }
        if !any {
            return Ok(None);
        }
        Ok(Some(ketch::api::Healthcheck {
            test: match &self.health_cmd {
                Some(c) => vec!["CMD-SHELL".into(), c.clone()],
                None => vec![],
            },
            interval: duration_flag("health-interval", &self.health_interval)?,
            timeout: duration_flag("health-timeout", &self.health_timeout)?,
            retries: self.health_retries.unwrap_or(0),
            start_period: duration_flag("health-start-period", &self.health_start_period)?,
            start_interval: duration_flag("health-start-interval", &self.health_start_interval)?,
        }))
    }

    fn options(&self) -> Result<CreateOptions> {
        self.refused()?;
        if let Some(p) = &self.platform {
            ketch::api::check_platform(p).map_err(|e| Exit(125, format!("--platform {e}")))?;
        }
        let mut env = Vec::new();
        for f in &self.env_file {
            let text =
                std::fs::read_to_string(f).map_err(|e| Exit(125, format!("open {f}: {e}")))?;
            for line in text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
            {
                env.push(expand_env(line));
            }
        }
        env.extend(self.env.iter().map(|e| expand_env(e)));
        let mut labels = Vec::new();
        let mut label_lines = Vec::new();
        for f in &self.label_file {
            let text =
                std::fs::read_to_string(f).map_err(|e| Exit(125, format!("open {f}: {e}")))?;
            label_lines.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_string),
            );
        }
        for l in label_lines.iter().chain(&self.label) {
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            labels.push((k.to_string(), v.to_string()));
        }
        let mut security = ketch::api::SecurityOpts::default();
        for o in &self.security_opt {
            // A profile is named by its file, read here, as Docker's CLI does: the daemon
            // gets its content.
            let o = match o.split_once('=').or_else(|| o.split_once(':')) {
                Some(("seccomp", v)) if !matches!(v, "unconfined" | "builtin" | "default") => {
                    let text = std::fs::read_to_string(v).map_err(|e| {
                        Exit(125, format!("opening seccomp profile ({v}) failed: {e}"))
                    })?;
                    let json: Value = serde_json::from_str(&text).map_err(|e| {
                        Exit(125, format!("seccomp profile ({v}) is not JSON: {e}"))
                    })?;
                    format!("seccomp={json}")
                }
                _ => o.clone(),
            };
            security
                .apply(&o)
                .map_err(|e| Exit(125, format!("invalid --security-opt: {e}")))?;
        }
        let ketch::api::SecurityOpts {
            no_new_privileges,
            seccomp_unconfined,
            ref seccomp_profile,
            ..
        } = security;
        let seccomp_profile = seccomp_profile.clone();
        let (mut log_max_size, mut log_max_file) = (None, None);
        for o in &self.log_opt {
            match o.split_once('=') {
                Some(("max-size", v)) => {
                    log_max_size = Some(crate::parse_bytes(v).map_err(|e| Exit(125, e))?)
                }
                Some(("max-file", v)) => {
                    log_max_file = Some(
                        v.parse()
                            .map_err(|_| Exit(125, format!("invalid max-file: {v}")))?,
                    )
                }
                _ => bail!(Exit(125, format!("unknown log opt {o:?}"))),
            }
        }
        if let Some(r) = &self.restart {
            ketch::api::check_restart(r).map_err(|e| Exit(125, e))?;
            if self.rm && r != "no" {
                bail!(Exit(
                    125,
                    "conflicting options: cannot specify both --restart and --rm".into()
                ));
            }
        }
        for h in &self.add_host {
            let ok = h
                .split_once(':')
                .is_some_and(|(n, ip)| !n.is_empty() && ip.parse::<std::net::IpAddr>().is_ok());
            if !ok {
                bail!(Exit(
                    125,
                    format!(
                        "invalid argument \"{h}\" for \"--add-host\" flag: invalid IP address in add-host"
                    )
                ));
            }
        }
        for d in &self.dns {
            if d.parse::<std::net::IpAddr>().is_err() {
                bail!(Exit(
                    125,
                    format!(
                        "invalid argument \"{d}\" for \"--dns\" flag: {d} is not an ip address"
                    )
                ));
            }
        }
        let bad = |flag: &str, v: &str, why: &str| {
            Exit(
                125,
                format!("invalid argument \"{v}\" for \"--{flag}\" flag: {why}"),
            )
        };
        let memory_swappiness = match self.memory_swappiness {
            None | Some(-1) => None,
            Some(v) => Some(u64::try_from(v).map_err(|_| {
                bad(
                    "memory-swappiness",
                    &v.to_string(),
                    "valid memory swappiness range is 0-100",
                )
            })?),
        };
        let ulimits = self
            .ulimit
            .iter()
            .map(|u| ketch::api::Ulimit::parse(u).map_err(|e| bad("ulimit", u, &e)))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let sysctls = ketch::api::key_values(&self.sysctl, "--sysctl").map_err(|e| Exit(125, e))?;
        let annotations =
            ketch::api::key_values(&self.annotation, "--annotation").map_err(|e| Exit(125, e))?;
        let mut opts = CreateOptions {
            image: self.image.clone(),
            name: self.name.clone(),
            cmd: self.command.clone(),
            entrypoint: self.entrypoint.as_ref().map(|e| {
                if e.is_empty() {
                    vec![]
                } else {
                    vec![e.clone()]
                }
            }),
            env,
            workdir: self.workdir.clone(),
            user: self.user.clone(),
            hostname: self.hostname.clone(),
            labels,
            init: self.init,
            tty: self.tty,
            console_size: if self.tty { terminal_size() } else { None },
            open_stdin: self.interactive,
            resources: ketch::api::Resources {
                memory_swappiness,
                oom_kill_disable: self.oom_kill_disable,
                device_read_bps: throttles("device-read-bps", &self.device_read_bps, true)?,
                device_write_bps: throttles("device-write-bps", &self.device_write_bps, true)?,
                device_read_iops: throttles("device-read-iops", &self.device_read_iops, false)?,
                device_write_iops: throttles("device-write-iops", &self.device_write_iops, false)?,
                ..self.limits.resources()?
            },
            privileged: self.privileged,
            cap_add: self.cap_add.clone(),
            cap_drop: self.cap_drop.clone(),
            no_new_privileges,
            seccomp_unconfined,
            seccomp_profile,
            read_only: self.read_only,
            network: self.network.clone(),
            ip: self.ip.clone(),
            ip6: self.ip6.clone(),
            link_local_ips: self.link_local_ip.clone(),
            network_aliases: self.network_alias.clone(),
            dns: self.dns.clone(),
            extra_hosts: self.add_host.clone(),
            publish: self
                .publish
                .iter()
                .map(|p| parse_publish(p))
                .collect::<Result<Vec<_>>>()?,
            publish_all: self.publish_all,
            extra_networks: vec![],
            network_detached: false,
            mounts: {
                let mut m = Vec::new();
                for v in &self.volume {
                    m.push(parse_volume(v)?);
                }
                for v in &self.mount {
                    m.push(parse_mount(v)?);
                }
                for v in &self.tmpfs {
                    m.push(parse_tmpfs(v)?);
                }
                m
            },
            volumes_from: self.volumes_from.clone(),
            devices: self
                .device
                .iter()
                .map(|d| DeviceMapping::parse(d).map_err(|e| Exit(125, e).into()))
                .collect::<Result<Vec<_>>>()?,
            device_cgroup_rules: self.device_cgroup_rule.clone(),
            restart: self.restart.clone(),
            auto_remove: self.rm,
            log_max_size,
            log_max_file,
            pid_mode: self.pid.clone(),
            ipc_mode: self.ipc.clone(),
            uts_mode: self.uts.clone(),
            cgroupns_mode: self.cgroupns.clone(),
            userns_mode: self.userns.clone(),
            ulimits,
            shm_size: self.shm_size,
            oom_score_adj: self.oom_score_adj,
            group_add: self.group_add.clone(),
            dns_search: self.dns_search.clone(),
            dns_options: self.dns_option.clone(),
            domainname: self.domainname.clone(),
            sysctls,
            masked_paths: None,
            readonly_paths: None,
            annotations,
            stop_signal: self.stop_signal.clone(),
            stop_timeout: self.stop_timeout,
            log_driver: self.log_driver.clone().filter(|d| d != "json-file"),
            expose: self.expose.clone(),
            cgroup_parent: self.cgroup_parent.clone(),
            healthcheck: self.healthcheck()?,
            mac_address: self.mac_address.clone(),
            network_driver_opts: Default::default(),
            network_links: Vec::new(),
            volume_driver: self.volume_driver.clone(),
            links: self.link.clone(),
            runtime: self.runtime.clone(),
            isolation: self.isolation.clone(),
        };
        security.apply_to(&mut opts);
        // The same checks as the daemon's, so a mistake is named before anything is sent.
        for (flag, value, ok) in [
            ("runtime", &self.runtime, &["runc", "ketch"][..]),
            ("isolation", &self.isolation, &["default"][..]),
        ] {
            if let Some(v) = value
                .as_deref()
                .filter(|v| !v.is_empty() && !ok.contains(v))
            {
                bail!(Exit(
                    125,
                    format!("--{flag} {v} is not supported: use {}", ok.join(" or "))
                ));
            }
        }
        opts.validate().map_err(|e| Exit(125, e))?;
        Ok(opts)
    }
}

/// `-e NAME` takes the value from this process's environment, as Docker does.
pub(super) fn expand_env(e: &str) -> String {
    if e.contains('=') {
        e.to_string()
    } else {
        format!("{e}={}", std::env::var(e).unwrap_or_default())
    }
}

/// Pulls the image first as `--pull` says: `always`, or when it is `missing` here (as
/// Docker: "Unable to find image ... locally", the progress on stderr).
fn ensure_image(api: &dyn ketch::api::Api, a: &CreateArgs) -> Result<()> {
    let pull = |api: &dyn ketch::api::Api| {
        crate::registry::pull_with(api, &a.image, false, a.platform.clone(), a.quiet, true)
            .map(|_| ())
            .map_err(|e| Exit(125, e.to_string()).into())
    };
    match a.pull.as_str() {
        "never" => Ok(()),
        "always" => pull(api),
        _ => match api.image_inspect(&a.image) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ketch::ErrorKind::NotFound => {
                // Only a name a registry could have: not an ID that is not here.
                let Ok(r) = ketch::api::Reference::parse(&a.image) else {
                    return Err(engine_exit(e));
                };
                let shown = if r.digest().is_some() {
                    r.familiar()
                } else {
                    r.with_default_tag().familiar()
                };
                if !a.quiet {
                    eprintln!("Unable to find image '{shown}' locally");
                }
                pull(api)
            }
            Err(e) => Err(engine_exit(e)),
        },
    }
}

/// `--cidfile`: refused when the file is there already (another container's, perhaps), as
/// Docker does; written once the container exists.
fn cidfile_check(a: &CreateArgs) -> Result<()> {
    if let Some(f) = &a.cidfile
        && std::path::Path::new(f).exists()
    {
        bail!(Exit(
            125,
            format!(
                "container ID file found, make sure the other container isn't running or delete {f}"
            )
        ));
    }
    Ok(())
}

fn cidfile_write(a: &CreateArgs, id: &str) -> Result<()> {
    if let Some(f) = &a.cidfile {
        std::fs::write(f, id)
            .map_err(|e| Exit(125, format!("write the container ID file {f}: {e}")))?;
    }
    Ok(())
}

pub fn create(cli: &Cli, a: &CreateArgs) -> Result<ExitCode> {
    let opts = a.options()?;
    cidfile_check(a)?;
    let api = cli.api().map_err(|e| Exit(125, e.to_string()))?;
    ensure_image(&*api, a)?;
    let id = api.container_create(&opts).map_err(engine_exit)?;
    cidfile_write(a, &id)?;
    println!("{id}");
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Clone)]
pub struct RunArgs {
    /// Run container in background and print container ID
    #[arg(short = 'd', long)]
    detach: bool,
    /// Override the key sequence for detaching a container (through a daemon)
    #[arg(long, value_name = "string", default_value = "")]
    detach_keys: String,
    /// Proxy received signals to the process (non-TTY mode only)
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", require_equals = true)]
    sig_proxy: bool,
    #[command(flatten)]
    create: CreateArgs,
}

pub fn run(cli: &Cli, a: &RunArgs) -> Result<ExitCode> {
    let streams = a.create.streams()?;
    if a.detach && !a.create.attach.is_empty() {
        bail!(Exit(
            1,
            "conflicting options: cannot specify both --attach and --detach".into()
        ));
    }
    let opts = a.create.options()?;
    // Checked before anything is made.
    ketch::runtime::parse_detach_keys(&a.detach_keys).map_err(|e| Exit(125, e.to_string()))?;
    cidfile_check(&a.create)?;
    if let Some(client) = cli.remote().map_err(|e| Exit(125, e.to_string()))? {
        ensure_image(&client, &a.create)?;
        let id = client.container_create(&opts).map_err(engine_exit)?;
        cidfile_write(&a.create, &id)?;
        if a.detach {
            client.container_start(&id).map_err(engine_exit)?;
            println!("{id}");
            return Ok(ExitCode::SUCCESS);
        }
        let code = crate::remote::start_attached(
            &client,
            &id,
            &opts,
            streams,
            &a.detach_keys,
            a.sig_proxy,
        )?;
        return Ok(ExitCode::from(code.clamp(0, 255) as u8));
    }
    embedded_detach_keys(&a.detach_keys)?;
    let engine = cli.engine().map_err(|e| Exit(125, e.to_string()))?;
    ensure_image(&engine, &a.create)?;
    let local = engine.containers();
    let c = local.create(&opts).map_err(engine_exit)?;
    let id = c.record.id.clone();
    cidfile_write(&a.create, &id)?;
    if a.detach {
        if let Err(e) = local.start(&id, false, false) {
            return Err(engine_exit(e));
        }
        println!("{id}");
        return Ok(ExitCode::SUCCESS);
    }
    let result = start_attached(&engine, &id, streams, opts.tty, a.sig_proxy);
    if opts.auto_remove {
        let _ = local.remove(&id, true);
    }
    match result {
        Ok(code) => Ok(ExitCode::from(code.clamp(0, 255) as u8)),
        Err(e) => Err(engine_exit(e)),
    }
}

#[derive(Args)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short = 'a', long)]
    attach: bool,
    /// Attach container's STDIN
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Override the key sequence for detaching a container (through a daemon)
    #[arg(long, value_name = "string", default_value = "")]
    detach_keys: String,
    /// Proxy received signals to the process (with --attach)
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", require_equals = true)]
    sig_proxy: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

/// Detaching from an attached container is done by a daemon, which holds the stream; run
/// embedded, the terminal stays with the container to its end, so keys asked for would do
/// nothing: refused, by name.
pub(crate) fn embedded_detach_keys(keys: &str) -> Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    Err(Exit(
        125,
        "--detach-keys needs a daemon (ketch -H, or KETCH_HOST): run embedded, the terminal \
         stays with the container to its end"
            .into(),
    )
    .into())
}

pub fn start(cli: &Cli, a: &StartArgs) -> Result<ExitCode> {
    if a.attach || a.interactive {
        if a.containers.len() > 1 {
            bail!("you cannot start and attach multiple containers at once");
        }
        // `start -a` shows both output streams.
        let all = Streams {
            stdin: true,
            stdout: true,
            stderr: true,
        };
        let name = &a.containers[0];
        if let Some(client) = cli.remote()? {
            let c = client.container_inspect(name)?;
            let opts = CreateOptions {
                tty: c["Config"]["Tty"].as_bool().unwrap_or(false),
                open_stdin: a.interactive && c["Config"]["OpenStdin"].as_bool().unwrap_or(false),
                ..Default::default()
            };
            let id = c["Id"].as_str().unwrap_or(name).to_string();
            let code = crate::remote::start_attached(
                &client,
                &id,
                &opts,
                all,
                &a.detach_keys,
                a.sig_proxy,
            )?;
            return Ok(ExitCode::from(code.clamp(0, 255) as u8));
        }
        embedded_detach_keys(&a.detach_keys)?;
        let engine = cli.engine()?;
        let tty = engine.containers().get(name)?.record.config.tty;
        let code = start_attached(
            &engine,
            name,
            Streams {
                stdin: a.interactive,
                ..all
            },
            tty,
            a.sig_proxy,
        )?;
        return Ok(ExitCode::from(code.clamp(0, 255) as u8));
    }
    let api = cli.api()?;
    let mut code = ExitCode::SUCCESS;
    for name in &a.containers {
        match api.container_start(name) {
            Ok(()) => println!("{name}"),
            Err(e) => {
                eprintln!("Error response from daemon: {e}");
                code = ExitCode::from(1);
            }
        }
    }
    Ok(code)
}

/// Starts a container attached, passing signals sent to this process on to it (unless
/// `sig_proxy` is off: then they act on this process as on any). Ctrl-C and other terminal
/// signals reach the monitor directly (it shares the foreground process group), so only
/// signals another process sent (`kill`) are forwarded: never twice.
pub(super) fn start_attached(
    engine: &ketch::Engine,
    id: &str,
    streams: Streams,
    tty: bool,
    sig_proxy: bool,
) -> ketch::Result<i32> {
    use std::sync::Arc;
    // With a terminal on both ends, ours passes every key through untouched.
    let _raw = if tty { RawMode::enter() } else { None };
    use std::sync::atomic::{AtomicU32, Ordering};
    let shim = Arc::new(AtomicU32::new(0));
    if sig_proxy {
        let target = shim.clone();
        forward_signals(move |sig, sent_by_user| {
            let pid = shim_pid(&target);
            if sent_by_user && pid > 0 {
                unsafe { libc::kill(pid as i32, sig) };
            }
        });
    }
    engine.containers().start_attached_to(
        id,
        streams.stdin,
        streams.stdout,
        streams.stderr,
        &|pid| shim.store(pid, Ordering::SeqCst),
    )
}

fn shim_pid(shim: &std::sync::atomic::AtomicU32) -> u32 {
    shim.load(std::sync::atomic::Ordering::SeqCst)
}

/// Blocks the signals a user sends to stop or poke a process (INT, TERM, HUP, QUIT, USR1,
/// USR2) for this process and hands each to `forward` on a thread of its own, with whether
/// a process sent it (`kill`) rather than the terminal.
pub(crate) fn forward_signals(forward: impl Fn(i32, bool) + Send + 'static) {
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGHUP,
            libc::SIGQUIT,
            libc::SIGUSR1,
            libc::SIGUSR2,
        ] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        std::thread::spawn(move || {
            loop {
                let mut info: libc::siginfo_t = std::mem::zeroed();
                let sig = libc::sigwaitinfo(&set, &mut info);
                if sig < 0 {
                    continue;
                }
                forward(sig, info.si_code == libc::SI_USER);
            }
        });
    }
}

/// `-v [NAME|/HOST:]/PATH[:OPTS]`.
pub(super) fn parse_volume(s: &str) -> Result<MountSpec> {
    ketch::api::parse_volume(s).map_err(|why| {
        Exit(
            125,
            format!("invalid argument \"{s}\" for \"-v, --volume\" flag: {why}"),
        )
        .into()
    })
}

/// `--mount type=...,source=...,target=...,...`.
pub(super) fn parse_mount(s: &str) -> Result<MountSpec> {
    let bad = |why: &str| {
        Exit(
            125,
            format!("invalid argument \"{s}\" for \"--mount\" flag: {why}"),
        )
    };
    let mut m = MountSpec {
        kind: "volume".into(),
        ..Default::default()
    };
    for field in s.split(',') {
        let (k, v) = field.split_once('=').unwrap_or((field, ""));
        let yes = |v: &str| v.is_empty() || v == "true" || v == "1";
        match k {
            "type" => m.kind = v.to_string(),
            "source" | "src" => m.source = v.to_string(),
            "target" | "destination" | "dst" => m.target = v.to_string(),
            "readonly" | "ro" => m.readonly = yes(v),
            "volume-nocopy" => m.nocopy = yes(v),
            "bind-propagation" => ketch::api::volume_option(&mut m, v).map_err(|e| bad(&e))?,
            "tmpfs-size" => m.tmpfs_size = Some(crate::parse_bytes(v).map_err(|e| bad(&e))?),
            "tmpfs-mode" => {
                m.tmpfs_mode = Some(
                    u32::from_str_radix(v, 8)
                        .map_err(|_| bad(&format!("invalid tmpfs-mode: {v}")))?,
                )
            }
            "consistency" | "bind-nonrecursive" | "volume-driver" => {}
            _ => bail!(bad(&format!("unexpected key '{k}'"))),
        }
    }
    if !matches!(m.kind.as_str(), "volume" | "bind" | "tmpfs") {
        bail!(bad(&format!("invalid mount type: {:?}", m.kind)));
    }
    if m.target.is_empty() {
        bail!(bad("target is required"));
    }
    if m.kind == "bind" && m.source.is_empty() {
        bail!(bad("source is required when specifying volume-driver"));
    }
    if m.kind == "tmpfs" && !m.source.is_empty() {
        bail!(bad("source must not be specified for a tmpfs mount"));
    }
    Ok(m)
}

/// `--tmpfs /PATH[:size=64m,mode=1777,ro]`.
pub(super) fn parse_tmpfs(s: &str) -> Result<MountSpec> {
    let (target, opts) = s.split_once(':').unwrap_or((s, ""));
    ketch::api::parse_tmpfs(target, opts).map_err(|why| {
        Exit(
            125,
            format!("invalid argument \"{s}\" for \"--tmpfs\" flag: {why}"),
        )
        .into()
    })
}

/// `-p [hostIP:][hostPort:]containerPort[/proto]`, as Docker reads it.
pub(super) fn parse_publish(s: &str) -> Result<PortMap> {
    let bad = |why: &str| {
        Exit(
            125,
            format!("invalid argument \"{s}\" for \"-p, --publish\" flag: {why}"),
        )
    };
    let (spec, proto) = match s.rsplit_once('/') {
        Some((spec, proto)) => (spec, proto.to_ascii_lowercase()),
        None => (s, "tcp".to_string()),
    };
    if proto != "tcp" && proto != "udp" {
        bail!(bad(&format!("invalid proto: {proto}")));
    }
    let parts: Vec<&str> = spec.rsplitn(3, ':').collect();
    let (host_ip, host_port, container) = match parts.as_slice() {
        [c] => (None, "", *c),
        [c, h] => (None, *h, *c),
        [c, h, ip] => (Some(*ip), *h, *c),
        _ => bail!(bad("invalid format")),
    };
    let port = |p: &str| -> Result<u16> {
        match p.parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(bad(&format!("invalid port: {p:?}")).into()),
        }
    };
    // `0.0.0.0` is every IPv4 address (and no IPv6 one); none is every address.
    let host_ip = match host_ip.filter(|ip| !ip.is_empty()) {
        Some(ip) => Some(
            ip.parse::<std::net::Ipv4Addr>()
                .map_err(|_| bad(&format!("invalid IP address: {ip}")))?,
        ),
        None => None,
    };
    Ok(PortMap {
        proto,
        host_ip,
        host_port: if host_port.is_empty() {
            0
        } else {
            port(host_port)?
        },
        container_port: port(container)?,
    })
}
