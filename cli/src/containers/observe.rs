//! What a container shows: `ps`, `logs`, `port`, `top` and `stats`.

use super::*;

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
pub(super) fn filters(list: &[String]) -> Result<ketch::runtime::Filters> {
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

pub(super) fn since_cutoff(s: &str) -> Result<chrono::DateTime<chrono::Utc>> {
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

/// `0.0.0.0:18080->80/tcp, ...`, as Docker's `ps` prints published ports.
/// `0.0.0.0:18080->80/tcp, ...`, as Docker's `ps` prints a summary's `Ports`.
pub(super) fn ports_text(ports: &Value) -> String {
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
pub(super) fn binary_size(b: u64) -> String {
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
