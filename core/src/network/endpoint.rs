//! A container on a network: its namespace, an address from the network's range (an
//! `endpoints` row), a veth pair to the bridge, its published ports; and their release.

use super::*;

/// Docker's MAC for an address: 02:42 and the four address bytes.
pub(super) fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

/// The addresses a container asked for on a network (`--ip`, `--ip6`, `--mac-address`,
/// `--link-local-ip`); the rest is handed out.
#[derive(Debug, Clone, Default)]
pub(crate) struct Given {
    pub ip: Option<Ipv4Addr>,
    pub ip6: Option<Ipv6Addr>,
    pub mac: Option<[u8; 6]>,
    pub link_local: Vec<IpAddr>,
}

impl Given {
    /// What an attachment asks for, each address checked for its kind.
    pub(crate) fn of(a: &NetworkAttachment) -> crate::Result<Given> {
        let ip =
            a.ip.as_deref()
                .map(|s| {
                    s.parse()
                        .map_err(|_| invalid(format!("invalid IPv4 address: {s}")))
                })
                .transpose()?;
        let ip6 = a
            .ip6
            .as_deref()
            .map(|s| {
                s.parse()
                    .map_err(|_| invalid(format!("invalid IPv6 address: {s}")))
            })
            .transpose()?;
        let link_local = a
            .link_local_ips
            .iter()
            .map(|s| match s.parse::<IpAddr>() {
                Ok(IpAddr::V4(ip)) if ip.is_link_local() => Ok(IpAddr::V4(ip)),
                Ok(IpAddr::V6(ip)) if ip.is_unicast_link_local() => Ok(IpAddr::V6(ip)),
                _ => Err(invalid(format!(
                    "invalid link-local IP address: {s}: not in 169.254.0.0/16 or fe80::/10"
                ))),
            })
            .collect::<crate::Result<_>>()?;
        Ok(Given {
            ip,
            ip6,
            mac: a.mac.as_deref().map(parse_mac).transpose()?,
            link_local,
        })
    }
}

/// `02:42:ac:11:00:02`: six octets, and a unicast address (a multicast one on an
/// interface would take every frame of its group).
pub fn parse_mac(s: &str) -> crate::Result<[u8; 6]> {
    let bad = || invalid(format!("invalid MAC address: {s}"));
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut mac = [0u8; 6];
    for (m, p) in mac.iter_mut().zip(parts) {
        if p.len() != 2 {
            return Err(bad());
        }
        *m = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if mac[0] & 1 == 1 || mac == [0; 6] {
        return Err(invalid(format!(
            "invalid MAC address: {s}: not a unicast address"
        )));
    }
    Ok(mac)
}

pub(super) fn mac_string(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Host ports for `ports`: those asked for, and for `0` one the kernel has free now.
pub(super) fn resolve_ports(ports: &[firewall::PortMap]) -> crate::Result<Vec<firewall::PortMap>> {
    ports
        .iter()
        .map(|p| {
            let mut p = p.clone();
            if p.host_port == 0 {
                let addr = (p.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED), 0);
                let port = if p.proto == "udp" {
                    std::net::UdpSocket::bind(addr).and_then(|s| s.local_addr())
                } else {
                    std::net::TcpListener::bind(addr).and_then(|s| s.local_addr())
                }
                .map_err(io_err("find a free host port"))?
                .port();
                p.host_port = port;
            }
            Ok(p)
        })
        .collect()
}

/// A network's IPv4 host addresses: its subnet, the range containers' come from, and which
/// may be handed out (never the network, broadcast, gateway or an auxiliary address).
pub(super) struct Hosts4<'r> {
    rec: &'r NetworkRecord,
    pub subnet: Subnet,
    range: Subnet,
}

impl<'r> Hosts4<'r> {
    pub(super) fn of(rec: &'r NetworkRecord) -> crate::Result<Hosts4<'r>> {
        let subnet = rec
            .subnet()
            .ok_or_else(|| invalid(format!("network {} has no subnet", rec.name)))?;
        let range = rec
            .ip_range
            .as_deref()
            .and_then(|r| r.parse::<Subnet>().ok())
            .unwrap_or(subnet);
        Ok(Hosts4 { rec, subnet, range })
    }

    /// Whether `ip` may be a container's.
    pub(super) fn usable(&self, ip: Ipv4Addr) -> bool {
        self.subnet.contains(ip)
            && u32::from(ip) != self.subnet.first()
            && u32::from(ip) != self.subnet.last()
            && Some(ip) != self.rec.gateway()
            && !self
                .rec
                .aux_addresses
                .values()
                .any(|a| *a == ip.to_string())
    }

    /// A static address asked for, refused unless usable.
    pub(super) fn check(&self, ip: Option<Ipv4Addr>) -> crate::Result<()> {
        match ip {
            Some(ip) if !self.usable(ip) => Err(invalid(format!(
                "invalid address {ip}: it is not a free host address of subnet {}",
                self.subnet
            ))),
            _ => Ok(()),
        }
    }

    /// The lowest usable address of the range that `taken` does not hold.
    pub(super) fn first_free(&self, taken: impl Fn(Ipv4Addr) -> bool) -> crate::Result<Ipv4Addr> {
        (self.range.first()..=self.range.last())
            .map(Ipv4Addr::from)
            .find(|ip| self.usable(*ip) && !taken(*ip))
            .ok_or_else(|| {
                NetworkError::AddressesExhausted {
                    family: "IPv4",
                    name: self.rec.name.clone(),
                }
                .into()
            })
    }
}

impl Networks<'_> {
    pub(crate) fn netns_path(&self, container_id: &str) -> PathBuf {
        self.st.root.join("netns").join(container_id)
    }

    pub(crate) fn endpoints_of(&self, network_id: &str) -> crate::Result<Vec<Endpoint>> {
        self.endpoints_where("network_id", network_id)
    }

    /// Endpoints whose `column` (`network_id` or `container_id`) is `value`.
    pub(super) fn endpoints_where(
        &self,
        column: &str,
        value: &str,
    ) -> crate::Result<Vec<Endpoint>> {
        let sql = format!("SELECT config FROM endpoints WHERE {column} = ?1 ORDER BY container_id");
        let rows: Vec<String> = self.st.db.read(|tx| {
            let mut stmt = tx.prepare(&sql)?;
            let rows = stmt
                .query_map(params![value], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            Ok::<_, crate::Error>(rows)
        })?;
        Ok(rows
            .iter()
            .filter_map(|r| serde_json::from_str(r).ok())
            .collect())
    }

    /// Gives a starting container its network namespace at [`Self::netns_path`], loopback up,
    /// and its place on each of `networks` there, in order: `eth0` (with the default route
    /// and the published `ports`), `eth1`, ... Without networks it has loopback only.
    pub(crate) fn attach(
        &self,
        container_id: &str,
        networks: &[NetworkAttachment],
        ports: &[firewall::PortMap],
    ) -> crate::Result<Vec<Endpoint>> {
        // What a dead monitor left: the namespace and this container's old addresses.
        self.release_endpoints(container_id)?;
        let path = self.netns_path(container_id);
        netns::create(&path).map_err(io_err(format!("create {}", path.display())))?;
        let plugged = (|| {
            // Each plug brings loopback up with its interface; without one, alone.
            if networks.is_empty() {
                netns::within(&path, || {
                    let nl = Netlink::open()?;
                    if let Some(lo) = nl.link_index("lo")? {
                        nl.set_link(lo, None, None)?;
                    }
                    Ok(())
                })
                .map_err(io_err("bring up lo"))?;
            }
            // The first network gets the default route and the published ports; where it
            // is an overlay network with a way out, they are the host's gateway bridge's.
            let way_out = match networks.first() {
                Some(a) => {
                    let rec = self.find(&a.network)?;
                    rec.overlay() && !rec.internal
                }
                None => false,
            };
            let mut eps = Vec::new();
            for (i, a) in networks.iter().enumerate() {
                let first = i == 0 && !way_out;
                eps.push(self.plug(
                    container_id,
                    &a.network,
                    Given::of(a)?,
                    if first { ports } else { &[] },
                    &format!("eth{i}"),
                    first,
                )?);
            }
            if way_out {
                let gw = self.gateway_bridge()?;
                let iface = format!("eth{}", networks.len());
                let ep = self.plug(container_id, &gw.id, Given::default(), ports, &iface, true)?;
                // Containers of different overlay networks meet on it: each reaches the
                // host's way out only, never another.
                let nl = Netlink::open().map_err(io_err("open a netlink socket"))?;
                if let Some(index) = nl.link_index(&ep.veth).map_err(io_err("look up a link"))? {
                    nl.set_port_isolated(index)
                        .map_err(io_err(format!("isolate {} on {}", ep.veth, gw.bridge)))?;
                }
                eps.push(ep);
            }
            Ok(eps)
        })();
        if plugged.is_err() {
            let _ = self.release_endpoints(container_id);
        }
        plugged
    }

    /// Puts the container whose namespace is at [`Self::netns_path`] on `network`: an
    /// address, a veth pair from the bridge to `iface`, the default route if `route`, and
    /// its published ports. Undone on failure.
    pub(crate) fn plug(
        &self,
        container_id: &str,
        network: &str,
        given: Given,
        ports: &[firewall::PortMap],
        iface: &str,
        route: bool,
    ) -> crate::Result<Endpoint> {
        let Given {
            ip: static_ip,
            ip6: static_ip6,
            mac,
            link_local,
        } = given;
        let rec = self.find(network)?;
        if !ports.is_empty() && !firewall::available() {
            return Err(invalid(
                "publishing ports needs nftables or iptables, and neither is installed",
            ));
        }
        if rec.driver != "bridge" && !rec.overlay() {
            return Err(invalid(format!(
                "container cannot be attached to network {} (driver {})",
                rec.name, rec.driver
            )));
        }
        rec.check_ip6(static_ip6.is_some())?;
        // On an overlay network, the place is claimed across the cluster first; the host's
        // daemon keeps the other hosts' entries current from then on.
        let overlay = if rec.overlay() {
            if !self.kept() {
                return Err(NetworkError::NotKept { name: rec.name }.into());
            }
            if !ports.is_empty() {
                return Err(invalid(format!(
                    "ports are published on a container's way out, not on overlay network {}",
                    rec.name
                )));
            }
            self.ensure_overlay(&rec)?;
            let etcd = self.store()?;
            // Held until the place is recorded as this container's endpoint here.
            let lock = self.overlay_lock(&rec.id, peers::Hold::Claim)?;
            let names = self
                .names_on(container_id, &rec.name, &rec.id)?
                .unwrap_or_default();
            let peer = self.claim_peer(&etcd, &rec, container_id, static_ip, mac, names)?;
            Some((etcd, peer, lock))
        } else {
            self.ensure_bridge(&rec, None)?;
            None
        };
        let static_ip = overlay.as_ref().map(|(_, p, _)| p.ip).or(static_ip);
        let allocated = self.allocate(&rec, container_id, static_ip, static_ip6);
        let overlay = overlay.map(|(etcd, peer, lock)| {
            drop(lock);
            (etcd, peer)
        });
        let mut ep = match allocated {
            Ok(ep) => ep,
            Err(e) => {
                if let Some((etcd, peer)) = &overlay {
                    let _ = self.release_peer(etcd, &rec.id, container_id, peer.ip);
                }
                return Err(e);
            }
        };
        ep.link_local = link_local;
        if overlay.is_some() {
            // Nothing is routed through an overlay network: its way out is another's.
            ep.gateway = None;
        }
        let mac = mac.unwrap_or_else(|| mac_for(ep.ip));
        ep.mac = mac_string(mac);
        ep.ports = resolve_ports(ports)?;
        ep.veth = format!("veth{}", &crate::util::random_hex(4)[..7]);
        ep.iface = iface.to_string();
        let stored = ep.clone();
        self.st.db.write(|tx| {
            tx.execute(
                "UPDATE endpoints SET config = ?1 WHERE network_id = ?2 AND container_id = ?3",
                params![
                    serde_json::to_string(&stored).unwrap_or_default(),
                    stored.network_id,
                    container_id
                ],
            )?;
            Ok::<_, crate::Error>(())
        })?;
        let path = self.netns_path(container_id);
        let made = (|| -> crate::Result<()> {
            let ns =
                std::fs::File::open(&path).map_err(io_err(format!("open {}", path.display())))?;
            let nl = Netlink::open().map_err(io_err("open a netlink socket"))?;
            use std::os::fd::AsRawFd;
            let mtu = if rec.overlay() { rec.mtu() } else { 1500 };
            nl.add_veth(&ep.veth, iface, ns.as_raw_fd(), mtu)
                .map_err(io_err(format!("create veth pair {}", ep.veth)))?;
            let bridge = nl
                .link_index(&rec.bridge)
                .map_err(io_err("look up a link"))?
                .ok_or_else(|| invalid(format!("bridge {} is missing", rec.bridge)))?;
            let host_index = nl
                .link_index(&ep.veth)
                .map_err(io_err("look up a link"))?
                .ok_or_else(|| invalid(format!("veth {} is missing", ep.veth)))?;
            nl.set_link(host_index, Some(bridge), None)
                .map_err(io_err(format!("attach {} to {}", ep.veth, rec.bridge)))?;
            let (ip, prefix, gateway) = (ep.ip, ep.prefix, ep.gateway);
            let (ip6, prefix6, gateway6) = (ep.ip6, ep.prefix6, ep.gateway6);
            let link_local = ep.link_local.clone();
            // The IPv6 default route is the first IPv6 network's, whichever has IPv4's.
            let route6 = gateway6.is_some()
                && !rec.internal
                && !self
                    .container_endpoints(container_id)?
                    .iter()
                    .any(|e| e.network_id != rec.id && e.ip6.is_some());
            let route = route && !rec.internal && !rec.overlay();
            let name = iface.to_string();
            netns::within(&path, move || {
                let nl = Netlink::open()?;
                if let Some(lo) = nl.link_index("lo")? {
                    nl.set_link(lo, None, None)?;
                }
                let index = nl
                    .link_index(&name)?
                    .ok_or_else(|| io::Error::other(format!("{name} is missing")))?;
                // IPv6 on the interface only where the network (or a link-local address
                // asked for) has it; router advertisements from neighbours never taken (they
                // would set the container's routes). The namespace's `/proc/sys/net` is the
                // opening thread's: this one's.
                let v6 = ip6.is_some() || link_local.iter().any(IpAddr::is_ipv6);
                let knobs: &[(&str, &str)] = if v6 {
                    &[("accept_ra", "0"), ("autoconf", "0"), ("disable_ipv6", "0")]
                } else {
                    &[("disable_ipv6", "1")]
                };
                for (knob, value) in knobs {
                    bridge::sysctl6(&name, knob, value).map_err(io::Error::other)?;
                }
                nl.set_link(index, None, Some(mac))?;
                nl.add_addr(index, ip, prefix)?;
                if let Some(ip6) = ip6 {
                    nl.add_addr(index, ip6, prefix6)?;
                }
                for ll in link_local {
                    let prefix = if ll.is_ipv4() { 16 } else { 64 };
                    bridge::there_already_is_fine(nl.add_addr(index, ll, prefix))?;
                }
                if let (Some(gw), true) = (gateway, route) {
                    nl.add_default_route(gw)?;
                }
                if let (Some(gw), true) = (gateway6, route6) {
                    nl.add_default_route(gw)?;
                }
                Ok(())
            })
            .map_err(io_err(format!(
                "configure {iface} of container {container_id}"
            )))?;
            if let Some((etcd, _)) = &overlay {
                return self.program_overlay(etcd, &rec);
            }
            firewall::publish(&rec.bridge, ep.ip, ep.ip6, &ep.ports).map_err(|e| {
                if e.kind() == io::ErrorKind::AddrInUse {
                    invalid(e.to_string())
                } else {
                    io_err(format!("publish the ports of container {container_id}"))(e)
                }
            })?;
            if !rec.predefined() {
                self.write_dns_records(&rec.id)?;
            }
            Ok(())
        })();
        if let Err(e) = made {
            let _ = self.unplug(&ep);
            return Err(e);
        }
        Ok(ep)
    }

    /// Takes a container off one network: its ports, its veth pair, its address.
    pub(crate) fn unplug(&self, ep: &Endpoint) -> crate::Result<()> {
        let rec = self.find(&ep.network_id).ok();
        if let Some(rec) = &rec
            && !ep.ports.is_empty()
        {
            let _ = firewall::withdraw(&rec.bridge, ep.ip, ep.ip6, &ep.ports);
        }
        if !ep.veth.is_empty() {
            let nl = Netlink::open().map_err(io_err("open a netlink socket"))?;
            if let Some(index) = nl.link_index(&ep.veth).map_err(io_err("look up a link"))? {
                match nl.del_link(index) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {}
                    Err(e) => return Err(io_err(format!("delete {}", ep.veth))(e)),
                }
            }
        }
        self.st.db.write(|tx| {
            tx.execute(
                "DELETE FROM endpoints WHERE network_id = ?1 AND container_id = ?2",
                params![ep.network_id, ep.container_id],
            )?;
            Ok::<_, crate::Error>(())
        })?;
        match rec {
            Some(r) if r.overlay() => self.leave_overlay(&r, ep),
            Some(r) if !r.predefined() => self.write_dns_records(&ep.network_id),
            _ => Ok(()),
        }
    }

    /// Hands out an address on `rec`: the one asked for, or the lowest free one in the
    /// range, never the network, gateway or broadcast address. The `endpoints` table's
    /// unique (network, address) pair makes a double hand-out impossible across processes.
    pub(super) fn allocate(
        &self,
        rec: &NetworkRecord,
        container_id: &str,
        static_ip: Option<Ipv4Addr>,
        static_ip6: Option<Ipv6Addr>,
    ) -> crate::Result<Endpoint> {
        let hosts = Hosts4::of(rec)?;
        hosts.check(static_ip)?;
        let (subnet, gateway) = (hosts.subnet, rec.gateway());
        let subnet6 = rec.subnet6();
        let gateway6 = rec.gateway6();
        let range6 = rec
            .ip_range6
            .as_deref()
            .and_then(|r| r.parse::<Subnet6>().ok())
            .or(subnet6);
        let aux6 = |ip: &Ipv6Addr| {
            rec.aux_addresses
                .values()
                .any(|a| a.parse::<Ipv6Addr>().is_ok_and(|a| a == *ip))
        };
        if let (Some(ip), Some(subnet6)) = (static_ip6, subnet6)
            && (!subnet6.contains(ip)
                || aux6(&ip)
                || Some(ip) == gateway6
                || u128::from(ip) == subnet6.first())
        {
            return Err(invalid(format!(
                "invalid address {ip}: it is not a free host address of subnet {subnet6}"
            )));
        }
        self.st.db.write(|tx| {
            let used: std::collections::HashSet<String> = {
                let mut stmt = tx.prepare("SELECT ip FROM endpoints WHERE network_id = ?1")?;
                stmt.query_map(params![rec.id], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?
            };
            let ip = match static_ip {
                Some(ip) if used.contains(&ip.to_string()) => {
                    return Err(NetworkError::AddressInUse {
                        ip: ip.into(),
                        name: rec.name.clone(),
                    }
                    .into());
                }
                Some(ip) => ip,
                None => hosts.first_free(|ip| used.contains(&ip.to_string()))?,
            };
            // IPv6: the one asked for, or the lowest free one of the range past the
            // subnet-router anycast address and the gateway (the range is too large to walk:
            // the used ones are few, so the first free is among the first of them + 1).
            let ip6 = match (subnet6, range6) {
                (Some(subnet6), Some(range6)) => {
                    let used6: std::collections::HashSet<Ipv6Addr> = {
                        let mut stmt = tx.prepare(
                            "SELECT ip6 FROM endpoints WHERE network_id = ?1 AND ip6 IS NOT NULL",
                        )?;
                        stmt.query_map(params![rec.id], |r| r.get::<_, String>(0))?
                            .filter_map(|r| r.ok()?.parse().ok())
                            .collect()
                    };
                    Some(match static_ip6 {
                        Some(ip) if used6.contains(&ip) => {
                            return Err(NetworkError::AddressInUse {
                                ip: ip.into(),
                                name: rec.name.clone(),
                            }
                            .into());
                        }
                        Some(ip) => ip,
                        None => (0..=(used6.len() as u128 + 2 + rec.aux_addresses.len() as u128))
                            .filter_map(|n| range6.nth(n))
                            .find(|ip| {
                                u128::from(*ip) != subnet6.first()
                                    && Some(*ip) != gateway6
                                    && !aux6(ip)
                                    && !used6.contains(ip)
                            })
                            .ok_or_else(|| NetworkError::AddressesExhausted {
                                family: "IPv6",
                                name: rec.name.clone(),
                            })?,
                    })
                }
                _ => None,
            };
            let ep = Endpoint {
                network_id: rec.id.clone(),
                network: rec.name.clone(),
                container_id: container_id.to_string(),
                ip,
                prefix: subnet.prefix,
                gateway,
                ip6,
                prefix6: subnet6.map_or(0, |s| s.prefix),
                gateway6: ip6.and(gateway6),
                link_local: vec![],
                mac: mac_string(mac_for(ip)),
                owner: (
                    std::process::id(),
                    crate::util::process_start_time(std::process::id()).unwrap_or(0),
                ),
                ports: vec![],
                veth: String::new(),
                iface: String::new(),
            };
            tx.execute(
                "INSERT INTO endpoints (network_id, container_id, ip, ip6, config) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![rec.id, container_id, ip.to_string(), ip6.map(|ip| ip.to_string()), serde_json::to_string(&ep).unwrap_or_default()],
            )?;
            Ok::<_, crate::Error>(ep)
        })
    }

    /// Lets go of a container's namespace (and so its veth pairs) and its addresses.
    pub(crate) fn release_endpoints(&self, container_id: &str) -> crate::Result<()> {
        let path = self.netns_path(container_id);
        netns::remove(&path).map_err(io_err(format!("remove {}", path.display())))?;
        let held = self.container_endpoints(container_id)?;
        for ep in held.iter().filter(|e| !e.ports.is_empty()) {
            if let Ok(rec) = self.find(&ep.network_id) {
                let _ = firewall::withdraw(&rec.bridge, ep.ip, ep.ip6, &ep.ports);
            }
        }
        self.st.db.write(|tx| {
            tx.execute(
                "DELETE FROM endpoints WHERE container_id = ?1",
                params![container_id],
            )?;
            Ok::<_, crate::Error>(())
        })?;
        let networks = self.load_networks()?;
        for ep in held {
            match networks.iter().find(|n| n.id == ep.network_id) {
                Some(r) if r.overlay() => self.leave_overlay(r, &ep)?,
                _ if self.dns_records_path(&ep.network_id).exists() => {
                    self.write_dns_records(&ep.network_id)?
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The endpoints a container holds now.
    pub fn container_endpoints(&self, container_id: &str) -> crate::Result<Vec<Endpoint>> {
        self.endpoints_where("container_id", container_id)
    }
}

/// Sends 127.0.0.11:53 to the monitor's name server inside the namespace at `netns`.
pub(crate) fn redirect_dns(netns: &std::path::Path) -> io::Result<()> {
    if !firewall::available() {
        return Err(io::Error::other(
            "name resolution on user-defined networks needs nftables or iptables",
        ));
    }
    // Commands run from a thread inside the namespace start inside it.
    netns::within(netns, || {
        firewall::run_all(&firewall::dns_redirect_commands(DNS_PORT))
    })
}
