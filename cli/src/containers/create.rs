//! `create`, `run` and `start`: Docker's flags read into the engine's options, and a
//! container started attached or detached.

use super::*;

#[derive(Args, Clone)]
pub struct CreateArgs {
    /// Assign a name to the container
    #[arg(long)]
    name: Option<String>,
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
    /// Memory limit
    #[arg(short = 'm', long, value_parser = crate::parse_bytes)]
    memory: Option<u64>,
    /// Number of CPUs
    #[arg(long)]
    cpus: Option<f64>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long)]
    cpu_shares: Option<u64>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long)]
    pids_limit: Option<i64>,
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
    /// Set platform if server is multi-platform capable (for a pull)
    #[arg(long)]
    platform: Option<String>,
    /// The image
    image: String,
    /// Command and arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

impl CreateArgs {
    fn options(&self) -> Result<CreateOptions> {
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
        for l in &self.label {
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
            seccomp_profile,
        } = security;
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
            let (kind, n) = r.split_once(':').unwrap_or((r, ""));
            let ok = match kind {
                "no" | "always" | "unless-stopped" => n.is_empty(),
                "on-failure" => n.is_empty() || n.parse::<u32>().is_ok(),
                _ => false,
            };
            if !ok {
                bail!(Exit(125, format!("invalid restart policy {r:?}")));
            }
            if self.rm && kind != "no" {
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
        if let Some(m) = self.memory
            && m < 6 << 20
        {
            bail!(Exit(125, "Minimum memory limit allowed is 6MB".into()));
        }
        if let Some(c) = self.cpus
            && (c <= 0.0 || c > num_cpus() as f64)
        {
            bail!(Exit(
                125,
                format!(
                    "range of CPUs is from 0.01 to {}.00, as there are only {} CPUs available",
                    num_cpus(),
                    num_cpus()
                )
            ));
        }
        Ok(CreateOptions {
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
            memory: self.memory,
            cpus: self.cpus,
            cpu_shares: self.cpu_shares,
            pids_limit: self.pids_limit,
            privileged: self.privileged,
            cap_add: self.cap_add.clone(),
            cap_drop: self.cap_drop.clone(),
            no_new_privileges,
            seccomp_unconfined,
            seccomp_profile,
            read_only: self.read_only,
            network: self.network.clone(),
            ip: self.ip.clone(),
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
        })
    }
}

pub(super) fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
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
        crate::registry::pull_with(api, &a.image, false, a.platform.clone(), false, true)
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
                eprintln!("Unable to find image '{shown}' locally");
                pull(api)
            }
            Err(e) => Err(engine_exit(e)),
        },
    }
}

pub fn create(cli: &Cli, a: &CreateArgs) -> Result<ExitCode> {
    let opts = a.options()?;
    let api = cli.api().map_err(|e| Exit(125, e.to_string()))?;
    ensure_image(&*api, a)?;
    let id = api.container_create(&opts).map_err(engine_exit)?;
    println!("{id}");
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Clone)]
pub struct RunArgs {
    /// Run container in background and print container ID
    #[arg(short = 'd', long)]
    detach: bool,
    #[command(flatten)]
    create: CreateArgs,
}

pub fn run(cli: &Cli, a: &RunArgs) -> Result<ExitCode> {
    let opts = a.create.options()?;
    if let Some(client) = cli.remote().map_err(|e| Exit(125, e.to_string()))? {
        ensure_image(&client, &a.create)?;
        let id = client.container_create(&opts).map_err(engine_exit)?;
        if a.detach {
            client.container_start(&id).map_err(engine_exit)?;
            println!("{id}");
            return Ok(ExitCode::SUCCESS);
        }
        let code = crate::remote::start_attached(&client, &id, &opts)?;
        return Ok(ExitCode::from(code.clamp(0, 255) as u8));
    }
    let engine = cli.engine().map_err(|e| Exit(125, e.to_string()))?;
    ensure_image(&engine, &a.create)?;
    let local = engine.containers();
    let c = local.create(&opts).map_err(engine_exit)?;
    let id = c.record.id.clone();
    if a.detach {
        if let Err(e) = local.start(&id, false, false) {
            return Err(engine_exit(e));
        }
        println!("{id}");
        return Ok(ExitCode::SUCCESS);
    }
    let result = start_attached(&engine, &id, opts.open_stdin, opts.tty);
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
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn start(cli: &Cli, a: &StartArgs) -> Result<ExitCode> {
    if a.attach || a.interactive {
        if a.containers.len() > 1 {
            bail!("you cannot start and attach multiple containers at once");
        }
        let name = &a.containers[0];
        if let Some(client) = cli.remote()? {
            let c = client.container_inspect(name)?;
            let opts = CreateOptions {
                tty: c["Config"]["Tty"].as_bool().unwrap_or(false),
                open_stdin: a.interactive && c["Config"]["OpenStdin"].as_bool().unwrap_or(false),
                ..Default::default()
            };
            let id = c["Id"].as_str().unwrap_or(name).to_string();
            let code = crate::remote::start_attached(&client, &id, &opts)?;
            return Ok(ExitCode::from(code.clamp(0, 255) as u8));
        }
        let engine = cli.engine()?;
        let tty = engine.containers().get(name)?.record.config.tty;
        let code = start_attached(&engine, name, a.interactive, tty)?;
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

/// Starts a container attached, passing signals sent to this process on to it. Ctrl-C and
/// other terminal signals reach the monitor directly (it shares the foreground process
/// group), so only signals another process sent (`kill`) are forwarded: never twice.
pub(super) fn start_attached(
    engine: &ketch::Engine,
    id: &str,
    stdin: bool,
    tty: bool,
) -> ketch::Result<i32> {
    use std::sync::Arc;
    // With a terminal on both ends, ours passes every key through untouched.
    let _raw = if tty { RawMode::enter() } else { None };
    use std::sync::atomic::{AtomicU32, Ordering};
    let shim = Arc::new(AtomicU32::new(0));
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
        let target = shim.clone();
        std::thread::spawn(move || {
            loop {
                let mut info: libc::siginfo_t = std::mem::zeroed();
                let sig = libc::sigwaitinfo(&set, &mut info);
                if sig < 0 {
                    continue;
                }
                let pid = target.load(Ordering::SeqCst);
                if info.si_code == libc::SI_USER && pid > 0 {
                    libc::kill(pid as i32, sig);
                }
            }
        });
    }
    engine
        .containers()
        .start_with(id, true, stdin, &|pid| shim.store(pid, Ordering::SeqCst))
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
    let host_ip = match host_ip.filter(|ip| !ip.is_empty() && *ip != "0.0.0.0") {
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
