//! Network verbs: `network create`, `ls`, `inspect`, `rm`, `prune`.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use ketch::model::NetworkResource;
use ketch::network::NetworkCreate;
use serde_json::json;

use crate::Cli;
use crate::containers::Exit;
use crate::format::{self, Format};

#[derive(Subcommand)]
pub enum NetworkCommand {
    /// Create a network
    Create(CreateArgs),
    /// List networks
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more networks
    Inspect(InspectArgs),
    /// Remove one or more networks
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Remove all unused networks
    Prune(PruneArgs),
    /// Connect a container to a network
    Connect(ConnectArgs),
    /// Disconnect a container from a network
    Disconnect(DisconnectArgs),
}

#[derive(Args)]
pub struct ConnectArgs {
    network: String,
    container: String,
    /// IPv4 address (e.g., 172.30.100.104)
    #[arg(long)]
    ip: Option<String>,
    /// IPv6 address (e.g., 2001:db8::33)
    #[arg(long)]
    ip6: Option<String>,
    /// Add a link-local address for the container
    #[arg(long)]
    link_local_ip: Vec<String>,
    /// Add network-scoped alias for the container
    #[arg(long)]
    alias: Vec<String>,
    /// Add link to another container (NAME[:ALIAS]), answered by the container's name server
    #[arg(long)]
    link: Vec<String>,
}

#[derive(Args)]
pub struct DisconnectArgs {
    network: String,
    container: String,
    /// Force the container to disconnect from a network
    #[arg(short, long)]
    force: bool,
}

#[derive(Args)]
pub struct CreateArgs {
    name: String,
    /// Driver to manage the Network
    #[arg(short = 'd', long, default_value = "bridge")]
    driver: String,
    /// Subnet in CIDR format that represents a network segment (one IPv4, one IPv6)
    #[arg(long)]
    subnet: Vec<String>,
    /// IPv4 or IPv6 Gateway for the master subnet
    #[arg(long)]
    gateway: Vec<String>,
    /// Allocate container ip from a sub-range
    #[arg(long)]
    ip_range: Vec<String>,
    /// Enable IPv6 networking (a unique local /64 when no IPv6 --subnet is given)
    #[arg(long)]
    ipv6: bool,
    /// Auxiliary IPv4 addresses used by Network driver (NAME=IP), never given to a container
    #[arg(long)]
    aux_address: Vec<String>,
    /// Enable manual container attachment (kept and shown; swarm services read it)
    #[arg(long)]
    attachable: bool,
    /// Restrict external access to the network
    #[arg(long)]
    internal: bool,
    /// Set metadata on a network
    #[arg(long)]
    label: Vec<String>,
    /// Set driver specific options (KEY=VALUE): the overlay driver's
    /// com.docker.network.driver.mtu
    #[arg(short = 'o', long)]
    opt: Vec<String>,
}

#[derive(Args)]
pub struct LsArgs {
    /// Provide filter values (e.g. "driver=bridge")
    #[arg(short, long)]
    filter: Vec<String>,
    /// Only display network IDs
    #[arg(short, long)]
    quiet: bool,
    /// Format output using a custom template ('table', 'json', or a Go template)
    #[arg(long)]
    format: Option<String>,
    /// Do not truncate the output
    #[arg(long)]
    no_trunc: bool,
}

#[derive(Args)]
pub struct InspectArgs {
    #[arg(required = true)]
    networks: Vec<String>,
    /// Format output using a custom template
    #[arg(short, long)]
    format: Option<String>,
}

#[derive(Args)]
pub struct RmArgs {
    #[arg(required = true)]
    networks: Vec<String>,
    /// Do not error if the network does not exist
    #[arg(short, long)]
    force: bool,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
}

pub fn run(cli: &Cli, c: &NetworkCommand) -> Result<ExitCode> {
    match c {
        NetworkCommand::Create(a) => create(cli, a),
        NetworkCommand::Ls(a) => ls(cli, a),
        NetworkCommand::Inspect(a) => inspect(cli, a),
        NetworkCommand::Rm(a) => rm(cli, a),
        NetworkCommand::Prune(a) => prune(cli, a),
        NetworkCommand::Connect(a) => {
            let ep = ketch::api::NetworkAttachment {
                network: a.network.clone(),
                ip: a.ip.clone(),
                ip6: a.ip6.clone(),
                link_local_ips: a.link_local_ip.clone(),
                aliases: a.alias.clone(),
                links: a
                    .link
                    .iter()
                    .map(|l| {
                        ketch::runtime::parse_link(l)
                            .map(|(n, alias)| format!("{n}:{alias}"))
                            .map_err(|e| Exit(125, e))
                    })
                    .collect::<std::result::Result<_, _>>()?,
                ..Default::default()
            };
            cli.api()?
                .network_connect(&a.container, &ep)
                .map_err(engine_exit)?;
            Ok(ExitCode::SUCCESS)
        }
        NetworkCommand::Disconnect(a) => {
            let _ = a.force;
            cli.api()?
                .network_disconnect(&a.network, &a.container)
                .map_err(engine_exit)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn engine_exit(e: ketch::Error) -> anyhow::Error {
    Exit(1, format!("Error response from daemon: {e}")).into()
}

fn create(cli: &Cli, a: &CreateArgs) -> Result<ExitCode> {
    let mut labels = Vec::new();
    for l in &a.label {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        labels.push((k.to_string(), v.to_string()));
    }
    // Each of --subnet, --gateway and --ip-range once per family, told apart by the address.
    let family = |flag: &str, values: &[String]| -> Result<(Option<String>, Option<String>)> {
        let (v6, v4): (Vec<&String>, Vec<&String>) = values.iter().partition(|v| v.contains(':'));
        if v4.len() > 1 || v6.len() > 1 {
            bail!(Exit(
                125,
                format!("--{flag} is given once per address family (one IPv4, one IPv6)")
            ));
        }
        Ok((
            v4.first().map(|s| s.to_string()),
            v6.first().map(|s| s.to_string()),
        ))
    };
    let (subnet, subnet6) = family("subnet", &a.subnet)?;
    let (gateway, gateway6) = family("gateway", &a.gateway)?;
    let (ip_range, ip_range6) = family("ip-range", &a.ip_range)?;
    let mut aux_addresses = std::collections::BTreeMap::new();
    for s in &a.aux_address {
        let Some((k, v)) = s.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            bail!(Exit(
                125,
                format!("invalid --aux-address {s:?}: use NAME=IP")
            ));
        };
        if aux_addresses.insert(k.to_string(), v.to_string()).is_some() {
            bail!(Exit(
                125,
                format!("--aux-address {k} is given twice: give each address its own name")
            ));
        }
    }
    let mut options = std::collections::BTreeMap::new();
    for s in &a.opt {
        let Some((k, v)) = s.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            bail!(Exit(125, format!("invalid --opt {s:?}: use KEY=VALUE")));
        };
        options.insert(k.to_string(), v.to_string());
    }
    let opts = NetworkCreate {
        name: a.name.clone(),
        driver: Some(a.driver.clone()),
        subnet,
        gateway,
        ip_range,
        ipv6: a.ipv6,
        subnet6,
        gateway6,
        ip_range6,
        internal: a.internal,
        labels,
        aux_addresses,
        attachable: a.attachable,
        options,
    };
    let id = cli.api()?.network_create(&opts).map_err(engine_exit)?;
    println!("{id}");
    Ok(ExitCode::SUCCESS)
}

fn matches(r: &NetworkResource, filters: &[(String, String)]) -> Result<bool> {
    let predefined = matches!(r.name.as_str(), "bridge" | "host" | "none");
    for (k, v) in filters {
        let ok = match k.as_str() {
            "driver" => &r.driver == v,
            "name" => r.name.contains(v.as_str()),
            "id" => r.id.starts_with(v.as_str()),
            "label" => match v.split_once('=') {
                Some((lk, lv)) => r.labels.get(lk).is_some_and(|x| x == lv),
                None => r.labels.contains_key(v),
            },
            "type" => match v.as_str() {
                "builtin" => predefined,
                "custom" => !predefined,
                _ => bail!("invalid filter 'type={v}': must be builtin or custom"),
            },
            "dangling" => (v == "true") == r.containers.is_empty() && !predefined,
            _ => bail!("invalid filter '{k}'"),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

fn ls(cli: &Cli, a: &LsArgs) -> Result<ExitCode> {
    let mut filters = Vec::new();
    for f in &a.filter {
        let Some((k, v)) = f.split_once('=') else {
            bail!("bad format of filter (expected name=value)");
        };
        filters.push((k.to_string(), v.to_string()));
    }
    let engine = cli.api()?;
    let mut nets = Vec::new();
    for n in engine.network_list()? {
        if matches(&n, &filters)? {
            nets.push(n);
        }
    }
    let id = |i: &str| {
        if a.no_trunc {
            i.to_string()
        } else {
            i[..12.min(i.len())].to_string()
        }
    };
    let mut out = io::stdout().lock();
    if a.quiet {
        for n in &nets {
            writeln!(out, "{}", id(&n.id))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<_> = nets
        .iter()
        .map(|n| {
            json!({
                "ID": id(&n.id),
                "Name": n.name,
                "Driver": n.driver,
                "Scope": n.scope,
                "IPv6": n.enable_ipv6.to_string(),
                "Internal": n.internal.to_string(),
                "CreatedAt": n.created,
                "Labels": n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
            })
        })
        .collect();
    format::print_rows(
        &mut out,
        &Format::parse(a.format.as_deref()),
        &[
            ("NETWORK ID", "ID"),
            ("NAME", "Name"),
            ("DRIVER", "Driver"),
            ("SCOPE", "Scope"),
        ],
        &rows,
    )?;
    Ok(ExitCode::SUCCESS)
}

fn inspect(cli: &Cli, a: &InspectArgs) -> Result<ExitCode> {
    let engine = cli.api()?;
    let mut found = Vec::new();
    let mut code = ExitCode::SUCCESS;
    for n in &a.networks {
        match engine.network_inspect(n) {
            Ok(net) => found.push(serde_json::to_value(net)?),
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
    for n in &a.networks {
        match engine.network_remove(n) {
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

fn prune(cli: &Cli, _a: &PruneArgs) -> Result<ExitCode> {
    let removed = cli.api()?.network_prune()?;
    if !removed.is_empty() {
        println!("Deleted Networks:");
        for n in &removed {
            println!("{n}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
