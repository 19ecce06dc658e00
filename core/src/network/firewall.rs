//! The firewall of bridge networks: published ports, masquerade, isolation. With nftables
//! (preferred), each network has a table of its own, `ip ketch_<bridge>`, made and deleted
//! with its bridge, so every rule ketch makes is plainly ketch's and goes in one step;
//! published ports are elements of maps in it (`tcp_any` by host port, `tcp_addr` by host
//! address and port; the same for UDP), added when a container starts and removed when it
//! stops. Where `nft` is absent, the same rules go through `iptables`, in chains named
//! `KETCH-<bridge>` (nat) and `KETCH-F-<bridge>` (filter) with jumps marked `ketch <bridge>`.
//! `KETCH_FIREWALL=nft|iptables` picks one. Where neither runs, no bridge network is made:
//! the error names what was looked for, where, and what to install.
//!
//! An IPv6 network has a second table, `ip6 ketch_<bridge>`, with the same rules for its
//! IPv6 subnet; a port published on every address of the host (no host IP) is published to
//! the container's IPv6 address there too, as Docker does. IPv6 networks need nftables.
//!
//! A host whose iptables FORWARD chain drops by default (as Docker leaves it) would drop the
//! bridge's traffic whatever ketch's own table says, so while such a chain exists the
//! network also has two accept rules there, marked with the comment `ketch <bridge>`.

use std::io::{self, Write};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use super::subnet::{Subnet, Subnet6};

/// One published port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMap {
    /// `tcp` or `udp`.
    pub proto: String,
    /// `None`: every address of the host, IPv6 ones too on an IPv6 network; `0.0.0.0`:
    /// every IPv4 address (as Docker reads `-p 0.0.0.0:P:C`, to keep a port off IPv6).
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_port: u16,
}

impl PortMap {
    /// The one host address it is published on, if it is one.
    fn one_address(&self) -> Option<Ipv4Addr> {
        self.host_ip.filter(|ip| !ip.is_unspecified())
    }

    fn map(&self) -> String {
        match self.one_address() {
            Some(_) => format!("{}_addr", self.proto),
            None => format!("{}_any", self.proto),
        }
    }

    fn key(&self) -> String {
        match self.one_address() {
            Some(ip) => format!("{ip} . {}", self.host_port),
            None => self.host_port.to_string(),
        }
    }
}

pub fn table(bridge: &str) -> String {
    format!("ketch_{}", bridge.replace('-', "_"))
}

/// Which program sets the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Nft,
    Iptables,
}

fn runs(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The backend here: nftables where `nft` runs, else iptables (asked once per process); `None`
/// where neither runs.
pub fn backend() -> Option<Backend> {
    require().ok()
}

/// The backend here, or why there is none: which programs were looked for, where, and what
/// to install. Bridge networks are not made without one, as Docker's daemon does not start
/// without iptables: a network nothing isolates would be worse than none.
pub fn require() -> io::Result<Backend> {
    static BACKEND: std::sync::OnceLock<Result<Backend, String>> = std::sync::OnceLock::new();
    BACKEND
        .get_or_init(|| {
            let choice = std::env::var("KETCH_FIREWALL").ok();
            let path = std::env::var("PATH").unwrap_or_default();
            pick(choice.as_deref(), &path, runs)
        })
        .clone()
        .map_err(|m| io::Error::new(io::ErrorKind::Unsupported, m))
}

/// Picks the backend: `choice` is `KETCH_FIREWALL` (`nft`, `iptables`, unset or empty: the
/// first of them that runs); `path` is where the programs were looked for, for the message.
fn pick(choice: Option<&str>, path: &str, runs: impl Fn(&str) -> bool) -> Result<Backend, String> {
    const INSTALL: &str = "install nftables (the `nftables` package) or iptables (the \
                           `iptables` package)";
    let missing = |what: &str| {
        format!(
            "no firewall to isolate networks with: {what} (looked for in PATH={path}); {INSTALL}"
        )
    };
    match choice.filter(|c| !c.is_empty()) {
        Some("nft") if runs("nft") => Ok(Backend::Nft),
        Some("iptables") if runs("iptables") => Ok(Backend::Iptables),
        Some(c @ ("nft" | "iptables")) => Err(missing(&format!(
            "KETCH_FIREWALL={c}, but `{c}` was not found or does not run"
        ))),
        Some(other) => Err(format!(
            "KETCH_FIREWALL={other}: expected nft or iptables (or unset: the first that runs)"
        )),
        None if runs("nft") => Ok(Backend::Nft),
        None if runs("iptables") => Ok(Backend::Iptables),
        None => Err(missing(
            "neither `nft` nor `iptables` was found, or neither runs",
        )),
    }
}

/// Whether a firewall can be set up here.
pub fn available() -> bool {
    backend().is_some()
}

/// Runs one command; its error output becomes the error.
fn run(argv: &[String]) -> io::Result<()> {
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("run {}: {e}", argv[0])))?;
    if out.status.success() {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "{}: {}",
        argv[0],
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

/// Runs `nft -f -` with `script`.
fn nft(script: &str) -> io::Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("run nft: {e}")))?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    if out.status.success() {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "nft: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

fn nft_output(args: &[&str]) -> Option<String> {
    let out = Command::new("nft")
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Makes the network's rules (a no-op when they are there); an error where there is no
/// firewall to make them with.
pub fn create(
    bridge: &str,
    subnet: Subnet,
    subnet6: Option<Subnet6>,
    internal: bool,
) -> io::Result<()> {
    match require()? {
        Backend::Nft => {
            create_nft(bridge, subnet, internal)?;
            if let Some(subnet6) = subnet6 {
                create_nft6(bridge, subnet6, internal)?;
            }
        }
        Backend::Iptables if subnet6.is_some() => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "IPv6 networks need nftables (the `nftables` package); the firewall here is \
                 iptables",
            ));
        }
        Backend::Iptables => create_iptables(bridge, subnet, internal)?,
    }
    // A published port reached from the host's own 127.0.0.1 is routed to the bridge with
    // that source; the bridge must accept it (it is masqueraded). Goes with the bridge.
    let _ = std::fs::write(
        format!("/proc/sys/net/ipv4/conf/{bridge}/route_localnet"),
        "1",
    );
    Ok(())
}

/// Deletes the network's rules.
pub fn delete(bridge: &str) -> io::Result<()> {
    match backend() {
        Some(Backend::Nft) => delete_nft(bridge),
        Some(Backend::Iptables) => {
            delete_iptables(bridge);
            Ok(())
        }
        None => Ok(()),
    }
}

/// An overlay network's bridge: frames bridged between its ports (its containers', its
/// VXLAN device) pass a host whose FORWARD chain drops by default, where bridged IPv4 is
/// filtered there (`br_netfilter`). Nothing is routed into or out of it: it has no address.
/// Undone by [`delete`].
pub fn open_overlay(bridge: &str) -> io::Result<()> {
    match backend() {
        Some(Backend::Nft) => accept_in_host_forward(bridge),
        Some(Backend::Iptables) => {
            delete_iptables(bridge);
            run(&argv(&[
                "iptables",
                "-t",
                "filter",
                "-I",
                "FORWARD",
                "1",
                "-i",
                bridge,
                "-o",
                bridge,
                "-j",
                "ACCEPT",
                "-m",
                "comment",
                "--comment",
                &format!("ketch {bridge}"),
            ]))
        }
        None => Ok(()),
    }
}

/// Publishes `ports` to the container address `ip` (and those on every host address to
/// `ip6`, the container's IPv6 address on an IPv6 network).
pub fn publish(
    bridge: &str,
    ip: Ipv4Addr,
    ip6: Option<Ipv6Addr>,
    ports: &[PortMap],
) -> io::Result<()> {
    if ports.is_empty() {
        return Ok(());
    }
    match backend() {
        Some(Backend::Nft) => {
            publish_nft(bridge, ip, ports)?;
            if let Some(ip6) = ip6
                && let Err(e) = nft(&elements6(bridge, ip6, ports, true))
            {
                let _ = withdraw(bridge, ip, Some(ip6), ports);
                return Err(e);
            }
            Ok(())
        }
        Some(Backend::Iptables) => {
            for c in port_rules(bridge, ip, ports, "-A") {
                if let Err(e) = run(&c) {
                    let _ = withdraw(bridge, ip, ip6, ports);
                    return Err(e);
                }
            }
            Ok(())
        }
        None => Err(io::Error::other(
            "no firewall (nft or iptables) to publish ports with",
        )),
    }
}

/// The commands that withdraw `ports` (each safe to run when they are gone already): the
/// monitor runs them when the container stops.
pub fn withdraw_commands(
    bridge: &str,
    ip: Ipv4Addr,
    ip6: Option<Ipv6Addr>,
    ports: &[PortMap],
) -> Vec<Vec<String>> {
    if ports.is_empty() {
        return vec![];
    }
    match backend() {
        // One transaction: adding first makes each delete succeed whether or not it was
        // there.
        // A command per family: a missing IPv6 table does not keep the IPv4 ports.
        Some(Backend::Nft) => {
            let mut scripts = vec![elements(bridge, ip, ports, false)];
            if let Some(ip6) = ip6 {
                scripts.push(elements6(bridge, ip6, ports, false));
            }
            scripts
                .iter()
                .filter(|s| !s.is_empty())
                .map(|s| vec!["nft".into(), s.trim_end().replace('\n', "; ")])
                .collect()
        }
        Some(Backend::Iptables) => port_rules(bridge, ip, ports, "-D"),
        None => vec![],
    }
}

pub fn withdraw(
    bridge: &str,
    ip: Ipv4Addr,
    ip6: Option<Ipv6Addr>,
    ports: &[PortMap],
) -> io::Result<()> {
    let mut first = Ok(());
    for c in withdraw_commands(bridge, ip, ip6, ports) {
        if let Err(e) = run(&c)
            && first.is_ok()
        {
            first = Err(e);
        }
    }
    first
}

/// The commands that send 127.0.0.11:53 to `port` on 127.0.0.11, to run inside a
/// container's network namespace (its own firewall, gone with it).
pub fn dns_redirect_commands(port: u16) -> Vec<Vec<String>> {
    let to = format!("127.0.0.11:{port}");
    match backend() {
        Some(Backend::Nft) => vec![vec![
            "nft".into(),
            format!(
                "add table ip ketch_dns; delete table ip ketch_dns; add table ip ketch_dns; \
                 add chain ip ketch_dns output {{ type nat hook output priority -100; policy accept; }}; \
                 add rule ip ketch_dns output ip daddr 127.0.0.11 udp dport 53 dnat to {to}"
            ),
        ]],
        Some(Backend::Iptables) => vec![argv(&[
            "iptables",
            "-t",
            "nat",
            "-A",
            "OUTPUT",
            "-d",
            "127.0.0.11",
            "-p",
            "udp",
            "--dport",
            "53",
            "-j",
            "DNAT",
            "--to-destination",
            &to,
        ])],
        None => vec![],
    }
}

/// Runs `commands` in order, stopping at the first failure.
pub fn run_all(commands: &[Vec<String>]) -> io::Result<()> {
    commands.iter().try_for_each(|c| run(c))
}

fn nat_chain(bridge: &str) -> String {
    format!("KETCH-{bridge}")
}

fn filter_chain(bridge: &str) -> String {
    format!("KETCH-F-{bridge}")
}

/// The iptables DNAT rules of `ports` (`op` -A to add, -D to delete).
fn port_rules(bridge: &str, ip: Ipv4Addr, ports: &[PortMap], op: &str) -> Vec<Vec<String>> {
    ports
        .iter()
        .map(|p| {
            let mut c = argv(&[
                "iptables",
                "-t",
                "nat",
                op,
                &nat_chain(bridge),
                "-p",
                &p.proto,
            ]);
            if let Some(h) = p.one_address() {
                c.extend(argv(&["-d", &h.to_string()]));
            }
            c.extend(argv(&[
                "--dport",
                &p.host_port.to_string(),
                "-j",
                "DNAT",
                "--to-destination",
                &format!("{ip}:{}", p.container_port),
            ]));
            c
        })
        .collect()
}

/// The iptables rules of a network: (table, chain, rule) appended in order; the jumps into
/// the network's chains are marked with its comment.
fn iptables_rules(
    bridge: &str,
    subnet: Subnet,
    internal: bool,
) -> Vec<(&'static str, String, Vec<String>)> {
    let nat = nat_chain(bridge);
    let filter = filter_chain(bridge);
    let mark = format!("ketch {bridge}");
    let tagged = |mut r: Vec<String>| {
        r.extend(argv(&["-m", "comment", "--comment", &mark]));
        r
    };
    let mut rules = vec![
        (
            "nat",
            "PREROUTING".to_string(),
            tagged(argv(&["-m", "addrtype", "--dst-type", "LOCAL", "-j", &nat])),
        ),
        (
            "nat",
            "OUTPUT".to_string(),
            tagged(argv(&["-m", "addrtype", "--dst-type", "LOCAL", "-j", &nat])),
        ),
        (
            "nat",
            "POSTROUTING".to_string(),
            tagged(argv(&[
                "-o",
                bridge,
                "-s",
                "127.0.0.0/8",
                "-j",
                "MASQUERADE",
            ])),
        ),
        (
            "nat",
            "POSTROUTING".to_string(),
            tagged(argv(&[
                "-o",
                bridge,
                "-s",
                &subnet.to_string(),
                "-m",
                "conntrack",
                "--ctstate",
                "DNAT",
                "-j",
                "MASQUERADE",
            ])),
        ),
    ];
    if !internal {
        rules.push((
            "nat",
            "POSTROUTING".to_string(),
            tagged(argv(&[
                "-s",
                &subnet.to_string(),
                "!",
                "-o",
                bridge,
                "-j",
                "MASQUERADE",
            ])),
        ));
    }
    // What is left after the isolation rules (at the top of FORWARD, see below) is the
    // bridge's to pass.
    rules.push((
        "filter",
        filter.clone(),
        argv(&["-o", bridge, "-j", "ACCEPT"]),
    ));
    rules.push(("filter", filter, argv(&["-i", bridge, "-j", "ACCEPT"])));
    rules
}

/// The rules that keep a network apart, which must come before every network's accepts:
/// nothing new enters the bridge from elsewhere unless it was published (DNAT), and an
/// internal network's traffic does not leave it at all.
fn isolation_rules(bridge: &str, internal: bool) -> Vec<Vec<String>> {
    let mut rules = vec![argv(&[
        "-o",
        bridge,
        "!",
        "-i",
        bridge,
        "-m",
        "conntrack",
        "!",
        "--ctstate",
        "RELATED,ESTABLISHED,DNAT",
        "-j",
        "DROP",
    ])];
    if internal {
        rules.push(argv(&["-i", bridge, "!", "-o", bridge, "-j", "DROP"]));
        rules.push(argv(&["-o", bridge, "!", "-i", bridge, "-j", "DROP"]));
    }
    rules
}

fn create_iptables(bridge: &str, subnet: Subnet, internal: bool) -> io::Result<()> {
    // Start from nothing of this network's, so a second call does not double the rules.
    delete_iptables(bridge);
    let mark = format!("ketch {bridge}");
    run(&argv(&["iptables", "-t", "nat", "-N", &nat_chain(bridge)]))?;
    run(&argv(&[
        "iptables",
        "-t",
        "filter",
        "-N",
        &filter_chain(bridge),
    ]))?;
    for (table, chain, rule) in iptables_rules(bridge, subnet, internal) {
        let mut c = argv(&["iptables", "-t", table, "-A", &chain]);
        c.extend(rule);
        run(&c)?;
    }
    // Isolation first in FORWARD, ahead of any network's accepts (and of any rule or policy
    // of the host's that drops); the accepts right after the last isolation rule.
    for rule in isolation_rules(bridge, internal) {
        let mut c = argv(&["iptables", "-t", "filter", "-I", "FORWARD", "1"]);
        c.extend(rule);
        c.extend(argv(&["-m", "comment", "--comment", &mark]));
        run(&c)?;
    }
    let listed = Command::new("iptables")
        .args(["-t", "filter", "-S", "FORWARD"])
        .output()?;
    let after = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter(|l| l.starts_with("-A "))
        .take_while(|l| l.contains("-j DROP") && l.contains("ketch "))
        .count();
    run(&argv(&[
        "iptables",
        "-t",
        "filter",
        "-I",
        "FORWARD",
        &(after + 1).to_string(),
        "-j",
        &filter_chain(bridge),
        "-m",
        "comment",
        "--comment",
        &mark,
    ]))
}

fn delete_iptables(bridge: &str) {
    // Every rule that jumps to or marks this network's, in the built-in chains.
    let mark = format!("ketch {bridge}");
    for (table, chain) in [
        ("nat", "PREROUTING"),
        ("nat", "OUTPUT"),
        ("nat", "POSTROUTING"),
        ("filter", "FORWARD"),
    ] {
        let Ok(out) = Command::new("iptables")
            .args(["-t", table, "-S", chain])
            .stderr(Stdio::null())
            .output()
        else {
            continue;
        };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if !line.contains(&format!("\"{mark}\""))
                && !line.contains(&format!("--comment {mark}"))
            {
                continue;
            }
            // `-A CHAIN rule...` becomes `-D CHAIN rule...`, split as the shell would.
            let Some(rest) = line.strip_prefix("-A ") else {
                continue;
            };
            let mut c = argv(&["iptables", "-t", table, "-D"]);
            c.extend(shell_words(rest));
            let _ = run(&c);
        }
    }
    for (table, chain) in [("nat", nat_chain(bridge)), ("filter", filter_chain(bridge))] {
        let _ = run(&argv(&["iptables", "-t", table, "-F", &chain]));
        let _ = run(&argv(&["iptables", "-t", table, "-X", &chain]));
    }
}

/// Splits an `iptables -S` line into words: spaces separate, double quotes group.
fn shell_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for ch in s.chars() {
        match ch {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            ' ' if !quoted => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            c => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// A network's masquerade rule (none for an internal one): its subnet's traffic leaving
/// by another device goes out with that device's address.
fn masquerade(
    family: &str,
    subnet: &dyn std::fmt::Display,
    bridge: &str,
    internal: bool,
) -> String {
    if internal {
        return String::new();
    }
    format!("{family} saddr {subnet} oifname != \"{bridge}\" masquerade")
}

/// A network's forward chain, the same in either family: nothing new enters the bridge from
/// elsewhere unless it was published; an internal network's traffic does not leave it.
fn forward_chain(bridge: &str, internal: bool) -> String {
    let outbound = if internal {
        // No way out: nothing leaves the bridge for elsewhere, nothing enters it.
        format!(
            "iifname \"{bridge}\" oifname != \"{bridge}\" drop\n    oifname \"{bridge}\" iifname != \"{bridge}\" drop"
        )
    } else {
        String::new()
    };
    format!(
        "  chain forward {{
    type filter hook forward priority 0; policy accept;
    {outbound}
    oifname \"{bridge}\" iifname != \"{bridge}\" ct status dnat accept
    oifname \"{bridge}\" iifname != \"{bridge}\" ct state established,related accept
    oifname \"{bridge}\" iifname != \"{bridge}\" drop
  }}
"
    )
}

/// The nftables table of a network (a no-op when it is there).
fn create_nft(bridge: &str, subnet: Subnet, internal: bool) -> io::Result<()> {
    let t = table(bridge);
    if nft_output(&["list", "table", "ip", &t]).is_some() {
        return Ok(());
    }
    let masquerade = masquerade("ip", &subnet, bridge, internal);
    let forward = forward_chain(bridge, internal);
    let script = format!(
        "table ip {t} {{
  map tcp_any {{ type inet_service : ipv4_addr . inet_service; }}
  map tcp_addr {{ type ipv4_addr . inet_service : ipv4_addr . inet_service; }}
  map udp_any {{ type inet_service : ipv4_addr . inet_service; }}
  map udp_addr {{ type ipv4_addr . inet_service : ipv4_addr . inet_service; }}
  chain prerouting {{
    type nat hook prerouting priority -100; policy accept;
    fib daddr type local dnat ip to ip daddr . tcp dport map @tcp_addr
    fib daddr type local dnat ip to tcp dport map @tcp_any
    fib daddr type local dnat ip to ip daddr . udp dport map @udp_addr
    fib daddr type local dnat ip to udp dport map @udp_any
  }}
  chain output {{
    type nat hook output priority -100; policy accept;
    fib daddr type local dnat ip to ip daddr . tcp dport map @tcp_addr
    fib daddr type local dnat ip to tcp dport map @tcp_any
    fib daddr type local dnat ip to ip daddr . udp dport map @udp_addr
    fib daddr type local dnat ip to udp dport map @udp_any
  }}
  chain postrouting {{
    type nat hook postrouting priority 100; policy accept;
    oifname \"{bridge}\" ip saddr 127.0.0.0/8 masquerade
    oifname \"{bridge}\" iifname \"{bridge}\" ct status dnat masquerade
    {masquerade}
  }}
{forward}}}
"
    );
    nft(&script)?;
    accept_in_host_forward(bridge)
}

/// Deletes the network's table and its accept rules in the host's FORWARD chain.
fn delete_nft(bridge: &str) -> io::Result<()> {
    remove_host_forward(bridge);
    let t = table(bridge);
    for family in ["ip", "ip6"] {
        if nft_output(&["list", "table", family, &t]).is_some() {
            nft(&format!("delete table {family} {t}\n"))?;
        }
    }
    Ok(())
}

/// The IPv6 table of a network (a no-op when it is there): the IPv4 table's rules for its
/// IPv6 subnet. Ports published on every address reach the container from the host's IPv6
/// addresses but `::1`, which no packet may carry off the host (IPv6 has no
/// `route_localnet`).
fn create_nft6(bridge: &str, subnet: Subnet6, internal: bool) -> io::Result<()> {
    let t = table(bridge);
    if nft_output(&["list", "table", "ip6", &t]).is_some() {
        return Ok(());
    }
    let masquerade = masquerade("ip6", &subnet, bridge, internal);
    let forward = forward_chain(bridge, internal);
    let script = format!(
        "table ip6 {t} {{
  map tcp_any {{ type inet_service : ipv6_addr . inet_service; }}
  map udp_any {{ type inet_service : ipv6_addr . inet_service; }}
  chain prerouting {{
    type nat hook prerouting priority -100; policy accept;
    fib daddr type local dnat ip6 to tcp dport map @tcp_any
    fib daddr type local dnat ip6 to udp dport map @udp_any
  }}
  chain output {{
    type nat hook output priority -100; policy accept;
    ip6 daddr != ::1 fib daddr type local dnat ip6 to tcp dport map @tcp_any
    ip6 daddr != ::1 fib daddr type local dnat ip6 to udp dport map @udp_any
  }}
  chain postrouting {{
    type nat hook postrouting priority 100; policy accept;
    oifname \"{bridge}\" iifname \"{bridge}\" ct status dnat masquerade
    {masquerade}
  }}
{forward}}}
"
    );
    nft(&script)?;
    accept_in_host_forward_of("ip6", bridge)
}

/// The script that publishes `ports` on every address to `ip6` (those of one host IPv4
/// address are the IPv4 table's alone).
fn elements6(bridge: &str, ip6: Ipv6Addr, ports: &[PortMap], add: bool) -> String {
    let t = table(bridge);
    let mut s = String::new();
    for p in ports.iter().filter(|p| p.host_ip.is_none()) {
        let map = format!("{}_any", p.proto);
        s.push_str(&format!(
            "add element ip6 {t} {map} {{ {} : {ip6} . {} }}\n",
            p.host_port, p.container_port
        ));
        if !add {
            s.push_str(&format!(
                "delete element ip6 {t} {map} {{ {} }}\n",
                p.host_port
            ));
        }
    }
    s
}

/// With an iptables `filter` table whose FORWARD chain exists, accept the bridge's traffic
/// there too (the network's own table decides what that is).
fn accept_in_host_forward(bridge: &str) -> io::Result<()> {
    accept_in_host_forward_of("ip", bridge)
}

/// [`accept_in_host_forward`] in the `family` (`ip` or `ip6`) `filter` table.
fn accept_in_host_forward_of(family: &str, bridge: &str) -> io::Result<()> {
    let Some(chain) = nft_output(&["list", "chain", family, "filter", "FORWARD"]) else {
        return Ok(());
    };
    if chain.contains(&format!("\"ketch {bridge}\"")) {
        return Ok(());
    }
    nft(&format!(
        "insert rule {family} filter FORWARD iifname \"{bridge}\" accept comment \"ketch {bridge}\"
insert rule {family} filter FORWARD oifname \"{bridge}\" accept comment \"ketch {bridge}\"
"
    ))
}

fn remove_host_forward(bridge: &str) {
    for family in ["ip", "ip6"] {
        let Some(chain) = nft_output(&["-a", "list", "chain", family, "filter", "FORWARD"]) else {
            continue;
        };
        let mark = format!("comment \"ketch {bridge}\"");
        let script: String = chain
            .lines()
            .filter(|l| l.contains(&mark))
            .filter_map(|l| {
                l.rsplit_once("# handle ")
                    .map(|(_, h)| h.trim().to_string())
            })
            .map(|h| format!("delete rule {family} filter FORWARD handle {h}\n"))
            .collect();
        if !script.is_empty() {
            let _ = nft(&script);
        }
    }
}

/// The script that publishes `ports` to `ip`.
fn elements(bridge: &str, ip: Ipv4Addr, ports: &[PortMap], add: bool) -> String {
    let t = table(bridge);
    let mut s = String::new();
    for p in ports {
        let element = format!("{} : {ip} . {}", p.key(), p.container_port);
        s.push_str(&format!("add element ip {t} {} {{ {element} }}\n", p.map()));
        if !add {
            // Adding first makes the delete succeed whether or not it was there.
            s.push_str(&format!(
                "delete element ip {t} {} {{ {} }}\n",
                p.map(),
                p.key()
            ));
        }
    }
    s
}

fn publish_nft(bridge: &str, ip: Ipv4Addr, ports: &[PortMap]) -> io::Result<()> {
    nft(&elements(bridge, ip, ports, true)).map_err(|e| {
        // A host port another container of this network publishes already.
        let taken = ports
            .iter()
            .find(|p| e.to_string().contains(&format!("{{ {} :", p.key())));
        match taken {
            Some(p) if e.to_string().contains("File exists") => io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "Bind for {}:{} failed: port is already allocated",
                    p.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
                    p.host_port
                ),
            ),
            _ => e,
        }
    })
}

#[cfg(test)]
mod tests;
