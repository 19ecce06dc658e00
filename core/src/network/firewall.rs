//! nftables for bridge networks: published ports, masquerade, isolation. Each network has a
//! table of its own, `ip ketch_<bridge>`, made with its bridge and deleted with it, so every
//! rule ketch makes is plainly ketch's and goes in one step. Published ports are elements of
//! maps in that table (`tcp_any` by host port, `tcp_addr` by host address and port; the same
//! for UDP), added when a container starts and removed when it stops.
//!
//! A host whose iptables FORWARD chain drops by default (as Docker leaves it) would drop the
//! bridge's traffic whatever this table says, so while such a chain exists the network also
//! has two accept rules there, marked with the comment `ketch <bridge>`.

use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use super::subnet::Subnet;

/// One published port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMap {
    /// `tcp` or `udp`.
    pub proto: String,
    /// `None`: every address of the host.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_port: u16,
}

impl PortMap {
    fn map(&self) -> String {
        match self.host_ip {
            Some(_) => format!("{}_addr", self.proto),
            None => format!("{}_any", self.proto),
        }
    }

    fn key(&self) -> String {
        match self.host_ip {
            Some(ip) => format!("{ip} . {}", self.host_port),
            None => self.host_port.to_string(),
        }
    }
}

pub fn table(bridge: &str) -> String {
    format!("ketch_{}", bridge.replace('-', "_"))
}

/// Whether nftables can be used here (asked once per process).
pub fn available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        Command::new("nft")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
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

/// Makes the network's table (a no-op when it is there).
pub fn create(bridge: &str, subnet: Subnet, internal: bool) -> io::Result<()> {
    let t = table(bridge);
    if nft_output(&["list", "table", "ip", &t]).is_some() {
        return Ok(());
    }
    let outbound = if internal {
        // No way out: nothing leaves the bridge for elsewhere, nothing enters it.
        format!(
            "iifname \"{bridge}\" oifname != \"{bridge}\" drop\n    oifname \"{bridge}\" iifname != \"{bridge}\" drop"
        )
    } else {
        String::new()
    };
    let masquerade = if internal {
        String::new()
    } else {
        format!("ip saddr {subnet} oifname != \"{bridge}\" masquerade")
    };
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
  chain forward {{
    type filter hook forward priority 0; policy accept;
    {outbound}
    oifname \"{bridge}\" iifname != \"{bridge}\" ct status dnat accept
    oifname \"{bridge}\" iifname != \"{bridge}\" ct state established,related accept
    oifname \"{bridge}\" iifname != \"{bridge}\" drop
  }}
}}
"
    );
    nft(&script)?;
    // A published port reached from the host's own 127.0.0.1 is routed to the bridge with
    // that source; the bridge must accept it (masqueraded above). Goes with the bridge.
    let _ = std::fs::write(
        format!("/proc/sys/net/ipv4/conf/{bridge}/route_localnet"),
        "1",
    );
    accept_in_host_forward(bridge)
}

/// Deletes the network's table and its accept rules in the host's FORWARD chain.
pub fn delete(bridge: &str) -> io::Result<()> {
    remove_host_forward(bridge);
    let t = table(bridge);
    if nft_output(&["list", "table", "ip", &t]).is_none() {
        return Ok(());
    }
    nft(&format!("delete table ip {t}\n"))
}

/// With an iptables `filter` table whose FORWARD chain exists, accept the bridge's traffic
/// there too (the network's own table decides what that is).
fn accept_in_host_forward(bridge: &str) -> io::Result<()> {
    let Some(chain) = nft_output(&["list", "chain", "ip", "filter", "FORWARD"]) else {
        return Ok(());
    };
    if chain.contains(&format!("\"ketch {bridge}\"")) {
        return Ok(());
    }
    nft(&format!(
        "insert rule ip filter FORWARD iifname \"{bridge}\" accept comment \"ketch {bridge}\"
insert rule ip filter FORWARD oifname \"{bridge}\" accept comment \"ketch {bridge}\"
"
    ))
}

fn remove_host_forward(bridge: &str) {
    let Some(chain) = nft_output(&["-a", "list", "chain", "ip", "filter", "FORWARD"]) else {
        return;
    };
    let mark = format!("comment \"ketch {bridge}\"");
    let script: String = chain
        .lines()
        .filter(|l| l.contains(&mark))
        .filter_map(|l| {
            l.rsplit_once("# handle ")
                .map(|(_, h)| h.trim().to_string())
        })
        .map(|h| format!("delete rule ip filter FORWARD handle {h}\n"))
        .collect();
    if !script.is_empty() {
        let _ = nft(&script);
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

pub fn publish(bridge: &str, ip: Ipv4Addr, ports: &[PortMap]) -> io::Result<()> {
    if ports.is_empty() {
        return Ok(());
    }
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

/// The `nft -f` script that withdraws `ports`: the monitor runs it when the container stops.
pub fn withdraw_script(bridge: &str, ip: Ipv4Addr, ports: &[PortMap]) -> String {
    elements(bridge, ip, ports, false)
}

pub fn withdraw(bridge: &str, ip: Ipv4Addr, ports: &[PortMap]) -> io::Result<()> {
    if ports.is_empty() {
        return Ok(());
    }
    nft(&withdraw_script(bridge, ip, ports))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_scripts_name_the_right_maps() {
        let ports = vec![
            PortMap {
                proto: "tcp".into(),
                host_ip: None,
                host_port: 18080,
                container_port: 80,
            },
            PortMap {
                proto: "udp".into(),
                host_ip: Some(Ipv4Addr::LOCALHOST),
                host_port: 5353,
                container_port: 53,
            },
        ];
        let ip = Ipv4Addr::new(10, 0, 0, 2);
        assert_eq!(
            elements("br-abc", ip, &ports, true),
            "add element ip ketch_br_abc tcp_any { 18080 : 10.0.0.2 . 80 }\n\
             add element ip ketch_br_abc udp_addr { 127.0.0.1 . 5353 : 10.0.0.2 . 53 }\n"
        );
        assert!(
            withdraw_script("br-abc", ip, &ports)
                .contains("delete element ip ketch_br_abc udp_addr { 127.0.0.1 . 5353 }\n")
        );
    }
}
