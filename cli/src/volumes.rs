//! Volume verbs: `volume create`, `ls`, `inspect`, `rm`, `prune`.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use ketch::volume::VolumeCreate;
use serde_json::json;

use crate::Cli;
use crate::containers::Exit;
use crate::format::{self, Format};

#[derive(Subcommand)]
pub enum VolumeCommand {
    /// Create a volume
    Create(CreateArgs),
    /// List volumes
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more volumes
    Inspect(InspectArgs),
    /// Remove one or more volumes
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Remove unused local volumes
    Prune(PruneArgs),
}

#[derive(Args)]
pub struct CreateArgs {
    name: Option<String>,
    /// Specify volume driver name
    #[arg(short, long, default_value = "local")]
    driver: String,
    /// Set driver specific options (type=tmpfs, device=tmpfs, o=size=64m; type=none, o=bind, device=/path)
    #[arg(short, long)]
    opt: Vec<String>,
    /// Set metadata for a volume
    #[arg(long)]
    label: Vec<String>,
}

#[derive(Args)]
pub struct LsArgs {
    /// Provide filter values (e.g. "dangling=true")
    #[arg(short, long)]
    filter: Vec<String>,
    /// Only display volume names
    #[arg(short, long)]
    quiet: bool,
    /// Format output using a custom template ('table', 'json', or a Go template)
    #[arg(long)]
    format: Option<String>,
}

#[derive(Args)]
pub struct InspectArgs {
    #[arg(required = true)]
    volumes: Vec<String>,
    /// Format output using a custom template
    #[arg(short, long)]
    format: Option<String>,
}

#[derive(Args)]
pub struct RmArgs {
    #[arg(required = true)]
    volumes: Vec<String>,
    /// Force the removal of volumes that only stopped containers use
    #[arg(short, long)]
    force: bool,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Remove all unused volumes, not just anonymous ones
    #[arg(short, long)]
    all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
}

pub fn run(cli: &Cli, c: &VolumeCommand) -> Result<ExitCode> {
    match c {
        VolumeCommand::Create(a) => create(cli, a),
        VolumeCommand::Ls(a) => ls(cli, a),
        VolumeCommand::Inspect(a) => inspect(cli, a),
        VolumeCommand::Rm(a) => rm(cli, a),
        VolumeCommand::Prune(a) => prune(cli, a),
    }
}

fn pairs(items: &[String]) -> BTreeMap<String, String> {
    items
        .iter()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn create(cli: &Cli, a: &CreateArgs) -> Result<ExitCode> {
    let opts = VolumeCreate {
        name: a.name.clone().unwrap_or_default(),
        driver: Some(a.driver.clone()),
        options: pairs(&a.opt),
        labels: pairs(&a.label),
    };
    let v = cli
        .api()?
        .volume_create(&opts)
        .map_err(|e| Exit(1, format!("Error response from daemon: {e}")))?;
    println!("{}", v.name);
    Ok(ExitCode::SUCCESS)
}

fn ls(cli: &Cli, a: &LsArgs) -> Result<ExitCode> {
    let engine = cli.api()?;
    let mut rows = Vec::new();
    let mut names = Vec::new();
    // Volumes some container names, for `dangling`.
    let used: std::collections::BTreeSet<String> =
        if a.filter.iter().any(|f| f.starts_with("dangling=")) {
            engine
                .system_df()?
                .volumes
                .into_iter()
                .filter(|v| v.ref_count > 0)
                .map(|v| v.name)
                .collect()
        } else {
            Default::default()
        };
    for v in engine.volume_list()? {
        let mut keep = true;
        for f in &a.filter {
            keep &= match f.split_once('=') {
                Some(("dangling", d)) => (d == "true" || d == "1") != used.contains(&v.name),
                Some(("name", n)) => v.name.contains(n),
                Some(("driver", d)) => v.driver == d,
                Some(("label", l)) => match l.split_once('=') {
                    Some((k, val)) => v.labels.get(k).is_some_and(|x| x == val),
                    None => v.labels.contains_key(l),
                },
                _ => bail!("invalid filter {f:?} (supported: dangling=, name=, driver=, label=)"),
            };
        }
        if !keep {
            continue;
        }
        names.push(v.name.clone());
        rows.push(json!({
            "Driver": v.driver,
            "Name": v.name,
            "Mountpoint": v.mountpoint,
            "Scope": v.scope,
            "Labels": v.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
        }));
    }
    let mut out = io::stdout().lock();
    if a.quiet {
        for n in names {
            writeln!(out, "{n}")?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    format::print_rows(
        &mut out,
        &Format::parse(a.format.as_deref()),
        &[("DRIVER", "Driver"), ("VOLUME NAME", "Name")],
        &rows,
    )?;
    Ok(ExitCode::SUCCESS)
}

fn inspect(cli: &Cli, a: &InspectArgs) -> Result<ExitCode> {
    let engine = cli.api()?;
    let mut found = Vec::new();
    let mut code = ExitCode::SUCCESS;
    for n in &a.volumes {
        match engine.volume_inspect(n) {
            Ok(v) => found.push(serde_json::to_value(v)?),
            Err(e) => {
                eprintln!("Error: {e}");
                code = ExitCode::from(1);
            }
        }
    }
    format::print_inspect(&found, a.format.as_deref())?;
    Ok(code)
}

fn rm(cli: &Cli, a: &RmArgs) -> Result<ExitCode> {
    let engine = cli.api()?;
    let mut code = ExitCode::SUCCESS;
    for n in &a.volumes {
        match engine.volume_remove(n, a.force) {
            Ok(()) => println!("{n}"),
            Err(e) if a.force && e.kind() == ketch::ErrorKind::NotFound => {}
            Err(e) => {
                eprintln!("Error response from daemon: {e}");
                code = ExitCode::from(1);
            }
        }
    }
    Ok(code)
}

fn prune(cli: &Cli, a: &PruneArgs) -> Result<ExitCode> {
    let (removed, space) = cli.api()?.volume_prune(a.all)?;
    if !removed.is_empty() {
        println!("Deleted Volumes:");
        for n in &removed {
            println!("{n}");
        }
        println!();
    }
    println!(
        "Total reclaimed space: {}",
        format::human_size(space as i64)
    );
    Ok(ExitCode::SUCCESS)
}
