//! Container verbs: create, start, run, ps, stop, kill, wait, logs, rm, restart.

use std::io::{self, BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;
use ketch::network::firewall::PortMap;
use ketch::runtime::{CreateOptions, DeviceMapping};
use ketch::volume::MountSpec;
use serde_json::{Value, json};

use crate::Cli;
use crate::format::{self, Format};
use ketch::api::Api;

/// An error that ends the command with a given exit status, Docker-style.
#[derive(Debug)]
pub struct Exit(pub u8, pub String);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}

impl std::error::Error for Exit {}

/// `run` and `create` fail with 125 (engine) or 126/127 (the command), as Docker's do. A
/// daemon's answer carries only the message, which Docker's CLI reads the same way.
pub fn engine_exit(e: ketch::Error) -> anyhow::Error {
    let code = match &e {
        e if e.is::<ketch::runtime::ContainerError>() => e
            .downcast_ref::<ketch::runtime::ContainerError>()
            .map_or(125, |c| c.exit_code()),
        e if e.is::<ketch::client::ClientError>() => {
            let m = e.to_string();
            if m.contains("executable file not found") || m.contains("no such file or directory") {
                127
            } else if m.contains("permission denied") {
                126
            } else {
                125
            }
        }
        _ => 125,
    };
    Exit(code as u8, e.to_string()).into()
}

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

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `-e NAME` takes the value from this process's environment, as Docker does.
fn expand_env(e: &str) -> String {
    if e.contains('=') {
        e.to_string()
    } else {
        format!("{e}={}", std::env::var(e).unwrap_or_default())
    }
}

pub fn create(cli: &Cli, a: &CreateArgs) -> Result<ExitCode> {
    let opts = a.options()?;
    let api = cli.api().map_err(|e| Exit(125, e.to_string()))?;
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

#[derive(Args)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short = 'a', long)]
    all: bool,
    /// Only display container IDs
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Filter output based on conditions provided (status=, name=, label=, id=)
    #[arg(short = 'f', long = "filter")]
    filter: Vec<String>,
    /// Format output: table, json, or a Go template
    #[arg(long)]
    format: Option<String>,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
}

/// `ps`'s `--filter KEY=VALUE` options as the API's filters (the engine checks them).
fn filters(list: &[String]) -> Result<ketch::runtime::Filters> {
    let mut out = ketch::runtime::Filters::new();
    for f in list {
        let Some((k, v)) = f.split_once('=') else {
            bail!("bad format of filter (expected name=value)")
        };
        out.entry(k.to_string()).or_default().push(v.to_string());
    }
    Ok(out)
}

pub fn ps(cli: &Cli, a: &PsArgs) -> Result<ExitCode> {
    let api = cli.api()?;
    let mut rows = Vec::new();
    let mut out = io::stdout().lock();
    for c in api.container_summaries(a.all, &filters(&a.filter)?)? {
        let full = c["Id"].as_str().unwrap_or_default();
        let id = if a.no_trunc {
            full.to_string()
        } else {
            full[..12.min(full.len())].to_string()
        };
        if a.quiet {
            writeln!(out, "{id}")?;
            continue;
        }
        let mut command = c["Command"].as_str().unwrap_or_default().to_string();
        if !a.no_trunc {
            command = format::ellipsis(&command, 20);
        }
        let created = c["Created"].as_i64().unwrap_or(0);
        let labels = c["Labels"]
            .as_object()
            .map(|l| {
                l.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        rows.push(json!({
            "Command": format!("\"{command}\""),
            "CreatedAt": format::go_time(created),
            "ID": id,
            "Image": c["Image"],
            "Labels": labels,
            "LocalVolumes": "0",
            "Mounts": "",
            "Names": c["Names"][0].as_str().unwrap_or_default().trim_start_matches('/'),
            "Networks": c["HostConfig"]["NetworkMode"],
            "Ports": ports_text(&c["Ports"]),
            "RunningFor": format::since(created),
            "Size": "0B",
            "State": c["State"],
            "Status": c["Status"],
        }));
    }
    if a.quiet {
        return Ok(ExitCode::SUCCESS);
    }
    let columns = [
        ("CONTAINER ID", "ID"),
        ("IMAGE", "Image"),
        ("COMMAND", "Command"),
        ("CREATED", "RunningFor"),
        ("STATUS", "Status"),
        ("PORTS", "Ports"),
        ("NAMES", "Names"),
    ];
    format::print_rows(
        &mut out,
        &Format::parse(a.format.as_deref()),
        &columns,
        &rows,
    )?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct StopArgs {
    /// Seconds to wait before killing the container
    #[arg(short = 't', long, default_value_t = 10)]
    time: u64,
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn each(names: &[String], mut f: impl FnMut(&str) -> ketch::Result<()>) -> Result<ExitCode> {
    let mut code = ExitCode::SUCCESS;
    for n in names {
        match f(n) {
            Ok(()) => println!("{n}"),
            Err(e) => {
                eprintln!("Error response from daemon: {e}");
                code = ExitCode::from(1);
            }
        }
    }
    Ok(code)
}

pub fn stop(cli: &Cli, a: &StopArgs) -> Result<ExitCode> {
    let engine = cli.api()?;
    each(&a.containers, |n| {
        engine.container_stop(n, Duration::from_secs(a.time))
    })
}

pub fn restart(cli: &Cli, a: &StopArgs) -> Result<ExitCode> {
    let engine = cli.api()?;
    each(&a.containers, |n| {
        engine.container_restart(n, Duration::from_secs(a.time))
    })
}

#[derive(Args)]
pub struct KillArgs {
    /// Signal to send to the container
    #[arg(short = 's', long, default_value = "KILL")]
    signal: String,
    #[arg(required = true)]
    containers: Vec<String>,
}

/// A signal by name (`KILL`, `SIGTERM`) or number.
pub fn parse_signal(s: &str) -> Result<i32> {
    ketch::runtime::signal_number(s).ok_or_else(|| anyhow::anyhow!("invalid signal: {s}"))
}

pub fn kill(cli: &Cli, a: &KillArgs) -> Result<ExitCode> {
    let sig = parse_signal(&a.signal)?;
    let engine = cli.api()?;
    each(&a.containers, |n| engine.container_kill(n, sig))
}

#[derive(Args)]
pub struct WaitArgs {
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn wait(cli: &Cli, a: &WaitArgs) -> Result<ExitCode> {
    let engine = cli.api()?;
    let mut code = ExitCode::SUCCESS;
    for n in &a.containers {
        match engine.container_wait(n) {
            Ok(c) => println!("{c}"),
            Err(e) => {
                eprintln!("Error response from daemon: {e}");
                code = ExitCode::from(1);
            }
        }
    }
    Ok(code)
}

#[derive(Args)]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short = 'f', long)]
    force: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short = 'v', long)]
    volumes: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn rm(cli: &Cli, a: &RmArgs) -> Result<ExitCode> {
    let engine = cli.api()?;
    each(&a.containers, |n| {
        engine.container_remove(n, a.force, a.volumes)
    })
}

#[derive(Args)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short = 'f', long)]
    follow: bool,
    /// Number of lines to show from the end of the logs
    #[arg(short = 'n', long, default_value = "all")]
    tail: String,
    /// Show timestamps
    #[arg(short = 't', long)]
    timestamps: bool,
    /// Show logs since timestamp (RFC 3339) or relative (e.g. 42m)
    #[arg(long)]
    since: Option<String>,
    container: String,
}

fn since_cutoff(s: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    if let Ok(secs) = s.parse::<i64>() {
        return Ok(chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default());
    }
    let (num, unit) = s.split_at(s.len().saturating_sub(1));
    let n: i64 = num
        .parse()
        .map_err(|_| anyhow::anyhow!("invalid --since value {s:?}"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => bail!("invalid --since value {s:?}"),
    };
    Ok(chrono::Utc::now() - chrono::Duration::seconds(secs))
}

pub fn logs(cli: &Cli, a: &LogsArgs) -> Result<ExitCode> {
    let api = cli.api()?;
    let tail = if a.tail == "all" {
        None
    } else {
        Some(
            a.tail
                .parse()
                .map_err(|_| anyhow::anyhow!("invalid --tail value {:?}", a.tail))?,
        )
    };
    let opts = ketch::api::LogOptions {
        follow: a.follow,
        since: a.since.as_deref().map(since_cutoff).transpose()?,
        tail,
    };
    api.container_logs(&a.container, &opts, &mut |(stream, time, text)| {
        let line = if a.timestamps {
            format!("{time} {text}")
        } else {
            text
        };
        if stream == "stderr" {
            io::stderr().write_all(line.as_bytes()).is_ok()
        } else {
            let mut o = io::stdout().lock();
            o.write_all(line.as_bytes())
                .and_then(|()| o.flush())
                .is_ok()
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `-v [NAME|/HOST:]/PATH[:OPTS]`.
fn parse_volume(s: &str) -> Result<MountSpec> {
    ketch::api::parse_volume(s).map_err(|why| {
        Exit(
            125,
            format!("invalid argument \"{s}\" for \"-v, --volume\" flag: {why}"),
        )
        .into()
    })
}

/// `--mount type=...,source=...,target=...,...`.
fn parse_mount(s: &str) -> Result<MountSpec> {
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
fn parse_tmpfs(s: &str) -> Result<MountSpec> {
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
fn parse_publish(s: &str) -> Result<PortMap> {
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

/// `0.0.0.0:18080->80/tcp, ...`, as Docker's `ps` prints published ports.
/// `0.0.0.0:18080->80/tcp, ...`, as Docker's `ps` prints a summary's `Ports`.
fn ports_text(ports: &Value) -> String {
    ports
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            format!(
                "{}:{}->{}/{}",
                p["IP"].as_str().unwrap_or("0.0.0.0"),
                p["PublicPort"],
                p["PrivatePort"],
                p["Type"].as_str().unwrap_or("tcp")
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `ketch port CONTAINER [PRIVATE_PORT[/PROTO]]`.
pub fn port(cli: &Cli, a: &PortArgs) -> Result<ExitCode> {
    let c = cli
        .api()?
        .container_inspect(&a.container)
        .map_err(engine_exit)?;
    // (container port/proto, host address) in the order the container publishes them.
    let mut published = Vec::new();
    for (key, bindings) in c["NetworkSettings"]["Ports"]
        .as_object()
        .into_iter()
        .flatten()
    {
        for b in bindings.as_array().into_iter().flatten() {
            let host = format!(
                "{}:{}",
                b["HostIp"].as_str().unwrap_or("0.0.0.0"),
                b["HostPort"].as_str().unwrap_or_default()
            );
            published.push((key.clone(), host));
        }
    }
    let filter = a.private_port.as_deref().map(|p| match p.split_once('/') {
        Some((n, proto)) => (n.to_string(), proto.to_string()),
        None => (p.to_string(), "tcp".to_string()),
    });
    let mut found = false;
    for (key, host) in &published {
        match &filter {
            Some((n, proto)) => {
                if *key == format!("{n}/{proto}") {
                    println!("{host}");
                    found = true;
                }
            }
            None => {
                println!("{key} -> {host}");
                found = true;
            }
        }
    }
    if !found && let Some((n, proto)) = filter {
        bail!(Exit(
            1,
            format!(
                "Error: No public port '{n}/{proto}' published for {}",
                a.container
            )
        ));
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct PortArgs {
    container: String,
    private_port: Option<String>,
}

#[derive(Args)]
pub struct NamesArgs {
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn pause(cli: &Cli, a: &NamesArgs) -> Result<ExitCode> {
    let engine = cli.api()?;
    each(&a.containers, |n| engine.container_pause(n))
}

pub fn unpause(cli: &Cli, a: &NamesArgs) -> Result<ExitCode> {
    let engine = cli.api()?;
    each(&a.containers, |n| engine.container_unpause(n))
}

#[derive(Args)]
pub struct RenameArgs {
    container: String,
    new_name: String,
}

pub fn rename(cli: &Cli, a: &RenameArgs) -> Result<ExitCode> {
    cli.api()?.container_rename(&a.container, &a.new_name)?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    force: bool,
}

pub fn prune(cli: &Cli, a: &PruneArgs) -> Result<ExitCode> {
    if !a.force {
        print!(
            "WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] "
        );
        io::stdout().flush()?;
        let mut answer = String::new();
        io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let removed = cli.api()?.container_prune()?;
    if !removed.is_empty() {
        println!("Deleted Containers:");
        for id in &removed {
            println!("{id}");
        }
        println!();
    }
    println!("Total reclaimed space: 0B");
    Ok(ExitCode::SUCCESS)
}

/// Starts a container attached, passing signals sent to this process on to it. Ctrl-C and
/// other terminal signals reach the monitor directly (it shares the foreground process
/// group), so only signals another process sent (`kill`) are forwarded: never twice.
fn start_attached(engine: &ketch::Engine, id: &str, stdin: bool, tty: bool) -> ketch::Result<i32> {
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

#[derive(Args)]
pub struct TopArgs {
    container: String,
    /// ps options (default -ef)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    ps_args: Vec<String>,
}

/// `ps` on the host, narrowed to the container's processes, as Docker's `top` does.
pub fn top(cli: &Cli, a: &TopArgs) -> Result<ExitCode> {
    let (titles, processes) = cli.api()?.container_top(&a.container, &a.ps_args)?;
    let rows: Vec<Vec<String>> = std::iter::once(titles).chain(processes).collect();
    format::table(&mut io::stdout().lock(), &rows)?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct StatsArgs {
    /// Show all containers (default shows just running)
    #[arg(short = 'a', long)]
    all: bool,
    /// Disable streaming stats and only pull the first result
    #[arg(long)]
    no_stream: bool,
    /// Format output: table, json, or a Go template
    #[arg(long)]
    format: Option<String>,
    containers: Vec<String>,
}

pub fn stats(cli: &Cli, a: &StatsArgs) -> Result<ExitCode> {
    let engine = cli.api()?;
    let names: Vec<String> = if a.containers.is_empty() {
        engine
            .container_summaries(a.all, &Default::default())?
            .into_iter()
            .filter_map(|c| c["Id"].as_str().map(str::to_string))
            .collect()
    } else {
        a.containers.clone()
    };
    loop {
        // Two samples a second apart give the CPU share, as Docker's first reading does.
        let first: Vec<_> = names
            .iter()
            .map(|n| engine.container_stats(n))
            .collect::<ketch::Result<_>>()?;
        let t0 = std::time::Instant::now();
        std::thread::sleep(Duration::from_secs(1));
        let second: Vec<_> = names
            .iter()
            .map(|n| engine.container_stats(n))
            .collect::<ketch::Result<_>>()?;
        let wall = t0.elapsed().as_nanos() as f64;
        let rows: Vec<Value> = first
            .iter()
            .zip(&second)
            .map(|(a, b)| {
                let cpu = if b.running { (b.cpu_ns.saturating_sub(a.cpu_ns)) as f64 / wall * 100.0 } else { 0.0 };
                let mem_pct = if b.memory_limit > 0 { b.memory_usage as f64 / b.memory_limit as f64 * 100.0 } else { 0.0 };
                json!({
                    "BlockIO": "0B / 0B",
                    "CPUPerc": format!("{cpu:.2}%"),
                    "Container": b.id[..12].to_string(),
                    "ID": b.id[..12].to_string(),
                    "MemPerc": format!("{mem_pct:.2}%"),
                    "MemUsage": format!("{} / {}", binary_size(b.memory_usage), binary_size(b.memory_limit)),
                    "Name": b.name,
                    "NetIO": "0B / 0B",
                    "PIDs": b.pids.to_string(),
                })
            })
            .collect();
        let columns = [
            ("CONTAINER ID", "ID"),
            ("NAME", "Name"),
            ("CPU %", "CPUPerc"),
            ("MEM USAGE / LIMIT", "MemUsage"),
            ("MEM %", "MemPerc"),
            ("NET I/O", "NetIO"),
            ("BLOCK I/O", "BlockIO"),
            ("PIDS", "PIDs"),
        ];
        format::print_rows(
            &mut io::stdout().lock(),
            &Format::parse(a.format.as_deref()),
            &columns,
            &rows,
        )?;
        if a.no_stream {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

/// Docker's binary sizes for memory (`BytesSize`): KiB, MiB, GiB with two decimals.
fn binary_size(b: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < units.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.4}")
        .trim_end_matches('0')
        .trim_end_matches('.')
        .to_string()
        + units[i]
}

#[derive(Args)]
pub struct ExecArgs {
    /// Detached mode: run command in the background
    #[arg(short = 'd', long)]
    detach: bool,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    tty: bool,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long)]
    workdir: Option<String>,
    container: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    command: Vec<String>,
}

pub fn exec(cli: &Cli, a: &ExecArgs) -> Result<ExitCode> {
    let _raw = if a.tty && !a.detach {
        RawMode::enter()
    } else {
        None
    };
    let opts = ketch::runtime::ExecOptions {
        cmd: a.command.clone(),
        env: a.env.iter().map(|e| expand_env(e)).collect(),
        user: a.user.clone(),
        workdir: a.workdir.clone(),
        detach: a.detach,
        interactive: a.interactive,
        tty: a.tty,
        console_size: if a.tty { terminal_size() } else { None },
    };
    if let Some(client) = cli.remote()? {
        let code = crate::remote::exec(&client, &a.container, &opts)?;
        return Ok(ExitCode::from(code.clamp(0, 255) as u8));
    }
    let engine = cli.engine()?;
    let code = match engine.containers().exec(&a.container, &opts, &|_| {}) {
        Ok(code) => code,
        // The process did not start: said as a daemon's exec says it, on stderr.
        Err(e)
            if matches!(
                e.downcast_ref(),
                Some(ketch::runtime::ContainerError::Start { .. })
            ) =>
        {
            eprintln!("{e}");
            e.downcast_ref::<ketch::runtime::ContainerError>()
                .map_or(125, |c| c.exit_code())
        }
        Err(e) => return Err(e.into()),
    };
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

/// This terminal in raw mode for as long as it lives; restored on drop.
/// The size of the terminal on stdin, if it is one: (rows, columns).
pub fn terminal_size() -> Option<(u16, u16)> {
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ fills `ws` and fails on anything but a terminal.
    (unsafe { libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) } == 0 && ws.ws_row > 0)
        .then_some((ws.ws_row, ws.ws_col))
}

pub struct RawMode {
    saved: libc::termios,
}

impl RawMode {
    pub fn enter() -> Option<RawMode> {
        if !io::stdin().is_terminal() {
            return None;
        }
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return None;
            }
            let saved = t;
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(0, libc::TCSANOW, &t);
            Some(RawMode { saved })
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &self.saved) };
    }
}

#[derive(Args)]
pub struct CommitArgs {
    container: String,
    reference: Option<String>,
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short, long)]
    author: Option<String>,
    /// Apply Dockerfile instruction to the created image
    #[arg(short, long)]
    change: Vec<String>,
    /// Commit message
    #[arg(short, long)]
    message: Option<String>,
    /// Pause container during commit
    #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pause: bool,
}

pub fn commit(cli: &Cli, a: &CommitArgs) -> Result<ExitCode> {
    let opts = ketch::runtime::CommitOptions {
        reference: a.reference.clone(),
        changes: a.change.clone(),
        message: a.message.clone(),
        author: a.author.clone(),
        pause: a.pause,
    };
    let id = cli
        .api()?
        .container_commit(&a.container, &opts)
        .map_err(|e| Exit(1, format!("Error response from daemon: {e}")))?;
    println!("{id}");
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct DiffArgs {
    container: String,
}

pub fn diff(cli: &Cli, a: &DiffArgs) -> Result<ExitCode> {
    let changes = cli
        .api()?
        .container_diff(&a.container)
        .map_err(|e| Exit(1, format!("Error response from daemon: {e}")))?;
    let mut out = io::stdout().lock();
    for c in changes {
        writeln!(out, "{} {}", c.kind, c.path)?;
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct ExportArgs {
    container: String,
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    output: Option<std::path::PathBuf>,
}

pub fn export(cli: &Cli, a: &ExportArgs) -> Result<ExitCode> {
    let engine = cli.api()?;
    match &a.output {
        Some(path) => {
            let special = std::fs::metadata(path).is_ok_and(|m| !m.is_file());
            if special {
                // A device or a pipe: written to as it is, never renamed over.
                let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
                engine
                    .container_export(&a.container, &mut f)
                    .map_err(|e| Exit(1, format!("Error response from daemon: {e}")))?;
            } else {
                // Written beside the target and renamed in place: never half a file there.
                let tmp = path.with_file_name(format!(
                    ".{}.ketch-{}",
                    path.file_name()
                        .map(|n| n.to_string_lossy())
                        .unwrap_or_default(),
                    std::process::id()
                ));
                let written = (|| -> Result<()> {
                    let mut f = std::fs::File::create(&tmp)?;
                    engine
                        .container_export(&a.container, &mut f)
                        .map_err(|e| Exit(1, format!("Error response from daemon: {e}")))?;
                    f.sync_all()?;
                    std::fs::rename(&tmp, path)?;
                    Ok(())
                })();
                if written.is_err() {
                    let _ = std::fs::remove_file(&tmp);
                }
                written?;
            }
        }
        None => {
            if io::stdout().is_terminal() {
                bail!(Exit(
                    1,
                    "cowardly refusing to save to a terminal. Use the -o flag or redirect".into()
                ));
            }
            let mut out = io::stdout().lock();
            engine
                .container_export(&a.container, &mut out)
                .map_err(|e| Exit(1, format!("Error response from daemon: {e}")))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct CpArgs {
    /// CONTAINER:SRC_PATH or a local path (- for a tar on stdin)
    src: String,
    /// CONTAINER:DEST_PATH or a local path (- for a tar on stdout)
    dest: String,
}

/// `CONTAINER:PATH`, or `None` for a local path (one with a `/` before any `:`).
fn container_path(s: &str) -> Option<(&str, &str)> {
    let (c, p) = s.split_once(':')?;
    if c.is_empty() || c.contains('/') {
        return None;
    }
    Some((c, p))
}

/// `cp`: with archive semantics both ways (owners, modes, times; symlinks as links).
pub fn cp(cli: &Cli, a: &CpArgs) -> Result<ExitCode> {
    let engine = cli.api()?;
    let fail = |e: ketch::Error| Exit(1, format!("Error response from daemon: {e}"));
    match (container_path(&a.src), container_path(&a.dest)) {
        (Some((c, path)), None) => {
            if a.dest == "-" {
                let mut out = io::stdout().lock();
                engine.container_copy_out(c, path, &mut out).map_err(fail)?;
                return Ok(ExitCode::SUCCESS);
            }
            copy_to_host(&*engine, c, path, std::path::Path::new(&a.dest))?;
        }
        (None, Some((c, dest))) => {
            if a.src == "-" {
                engine
                    .container_copy_in(c, dest, &mut io::stdin())
                    .map_err(fail)?;
                return Ok(ExitCode::SUCCESS);
            }
            let src = std::path::Path::new(&a.src);
            let md = std::fs::symlink_metadata(src)
                .map_err(|e| Exit(1, format!("lstat {}: {e}", a.src)))?;
            let contents = a.src.ends_with("/.");
            let name = if contents {
                std::path::PathBuf::from(".")
            } else {
                std::path::PathBuf::from(src.file_name().unwrap_or(src.as_os_str()))
            };
            // The archive is made on a second thread while the helper reads it.
            let (mut r, w) = pipe()?;
            let src_owned = src.to_path_buf();
            let is_dir = md.is_dir();
            let maker = std::thread::spawn(move || -> io::Result<()> {
                let mut b = tar::Builder::new(io::BufWriter::with_capacity(1 << 20, w));
                b.follow_symlinks(false);
                b.mode(tar::HeaderMode::Complete);
                if is_dir {
                    b.append_dir_all(&name, &src_owned)?;
                } else {
                    b.append_path_with_name(&src_owned, &name)?;
                }
                b.into_inner()?.flush()
            });
            let copied = engine.container_copy_in(c, dest, &mut r);
            drop(r);
            let made = maker
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("panicked")));
            copied.map_err(fail)?;
            made?;
        }
        (Some(_), Some(_)) => bail!(Exit(
            1,
            "copying between containers is not supported".into()
        )),
        (None, None) => bail!(Exit(1, "must specify at least one container source".into())),
    }
    Ok(ExitCode::SUCCESS)
}

/// Extracts the container's archive of `path` at the local `dest`, as Docker does: into
/// `dest` if it is a directory, else as `dest`. The tar crate checks every entry stays
/// inside the directory it is unpacked in, symlinks included, so a hostile container cannot
/// write elsewhere on the host.
fn copy_to_host(
    engine: &dyn Api,
    container: &str,
    path: &str,
    dest: &std::path::Path,
) -> Result<()> {
    let into_dir = dest.is_dir();
    let parent = if into_dir {
        dest.to_path_buf()
    } else {
        let p = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."))
            .to_path_buf();
        if !p.is_dir() {
            bail!(Exit(
                1,
                format!(
                    "invalid output path: directory {} does not exist",
                    p.display()
                )
            ));
        }
        p
    };
    // Unpacked into a fresh directory beside the destination, then moved into place.
    let stage = parent.join(format!(".ketch-cp-{}", std::process::id()));
    std::fs::create_dir(&stage)?;
    let result = (|| -> Result<()> {
        let (r, mut w) = pipe()?;
        let stage_dir = stage.clone();
        let unpacker = std::thread::spawn(move || -> io::Result<()> {
            let mut a = tar::Archive::new(io::BufReader::with_capacity(1 << 20, r));
            a.set_preserve_permissions(true);
            a.set_preserve_ownerships(true);
            a.set_preserve_mtime(true);
            a.unpack(&stage_dir)
        });
        let copied = engine.container_copy_out(container, path, &mut w);
        drop(w);
        let unpacked = unpacker
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("panicked")));
        copied.map_err(|e| Exit(1, format!("Error response from daemon: {e}")))?;
        unpacked?;
        if path.ends_with("/.") {
            // Contents: every top-level entry goes into the destination directory.
            std::fs::create_dir_all(dest)?;
            for e in std::fs::read_dir(&stage)? {
                let e = e?;
                std::fs::rename(e.path(), dest.join(e.file_name()))?;
            }
            return Ok(());
        }
        let Some(first) = std::fs::read_dir(&stage)?.next() else {
            return Ok(());
        };
        let first = first?.path();
        if into_dir {
            std::fs::rename(&first, dest.join(first.file_name().unwrap_or_default()))?;
        } else {
            std::fs::rename(&first, dest)?;
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&stage);
    result
}

/// A pipe, both ends closed on exec.
fn pipe() -> io::Result<(std::fs::File, std::fs::File)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills both descriptors, which are owned from here on.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    use std::os::fd::FromRawFd;
    // SAFETY: fresh descriptors from pipe2, not owned elsewhere.
    Ok(unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    })
}
