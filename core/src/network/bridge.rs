//! A bridge network's devices: its Linux bridge with the gateway address and firewall
//! table, made and removed under the host's network lock; the predefined networks.

use super::*;

/// Holds a host-wide lock while new subnets are chosen and their bridges made, so engines
/// on other state roots never pick the same free subnet at once. An abstract UNIX socket:
/// bound by one process at a time, gone when it exits, nothing left on disk.
pub(super) struct HostLock(#[allow(dead_code)] std::os::unix::net::UnixListener);

impl HostLock {
    pub(super) fn take() -> io::Result<HostLock> {
        Self::take_within(std::time::Duration::from_secs(60))
    }

    /// [`HostLock::take`], giving up with `AddrInUse` after `wait`.
    pub(super) fn take_within(wait: std::time::Duration) -> io::Result<HostLock> {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(b"ketch-network-lock")?;
        let deadline = std::time::Instant::now() + wait;
        loop {
            match std::os::unix::net::UnixListener::bind_addr(&addr) {
                Ok(l) => return Ok(HostLock(l)),
                Err(e)
                    if e.kind() == io::ErrorKind::AddrInUse
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// A netlink request that made something, with "it is there already" (`EEXIST`) as success.
pub(super) fn there_already_is_fine(made: io::Result<()>) -> io::Result<()> {
    match made {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        other => other,
    }
}

impl Networks<'_> {
    /// Makes the predefined networks `bridge`, `host` and `none` if this root has none yet.
    pub(super) fn ensure_predefined(&self) -> crate::Result<()> {
        let have: i64 = self.st.db.read(|tx| {
            Ok::<_, crate::Error>(tx.query_row(
                "SELECT COUNT(*) FROM networks WHERE name IN ('bridge', 'host', 'none')",
                [],
                |r| r.get(0),
            )?)
        })?;
        if have == 3 {
            return Ok(());
        }
        // The default network is a bridge: without a firewall, none of them is made.
        require_firewall()?;
        for (name, driver) in [("host", "host"), ("none", "null")] {
            let rec = NetworkRecord {
                id: crate::util::random_hex(32),
                name: name.into(),
                driver: driver.into(),
                bridge: String::new(),
                subnet: None,
                gateway: None,
                ip_range: None,
                internal: false,
                labels: BTreeMap::new(),
                created: crate::db::now(),
                aux_addresses: BTreeMap::new(),
                attachable: false,
                subnet6: None,
                gateway6: None,
                ip_range6: None,
                vni: None,
                options: BTreeMap::new(),
            };
            self.st.db.write(|tx| {
                tx.execute(
                    "INSERT OR IGNORE INTO networks (id, name, config) VALUES (?1, ?2, ?3)",
                    params![
                        rec.id,
                        rec.name,
                        serde_json::to_string(&rec).unwrap_or_default()
                    ],
                )?;
                Ok::<_, crate::Error>(())
            })?;
        }
        let bridge = NetworkCreate {
            name: "bridge".into(),
            ..Default::default()
        };
        match self.create_bridge(&bridge, Some(self.default_bridge())) {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.downcast_ref(), Some(NetworkError::NameInUse { .. })) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub(super) fn create_bridge(
        &self,
        opts: &NetworkCreate,
        bridge: Option<String>,
    ) -> crate::Result<NetworkRecord> {
        require_firewall()?;
        let id = crate::util::random_hex(32);
        let bridge = bridge.unwrap_or_else(|| format!("br-{}", &id[..12]));
        if bridge.len() > 15 {
            return Err(invalid(format!(
                "bridge name {bridge:?} is longer than 15 characters"
            )));
        }
        let Pool4 {
            subnet: requested,
            gateway,
            range: ip_range,
        } = Pool4::of(opts)?;
        let v6 = Pool6::of(opts)?;
        check_aux(opts, requested, v6.subnet)?;
        // Choosing a subnet and claiming it with the bridge's address is one step for every
        // engine on this host.
        let lock = HostLock::take().map_err(io_err("take the host's network lock"))?;
        let taken: Vec<Subnet> = self
            .load_networks()?
            .iter()
            .filter_map(NetworkRecord::subnet)
            .collect();
        let subnet = choose_subnet(requested, &taken, subnet::host_routes, || {
            self.st
                .address_pools
                .iter()
                .flat_map(|(pool, prefix)| pool.split(*prefix).collect::<Vec<_>>())
        })?;
        let gateway = gateway
            .or_else(|| subnet.nth(1))
            .ok_or_else(|| invalid(format!("subnet {subnet} has no room for a gateway")))?;
        let subnet6 = match v6.subnet {
            Some(s) => {
                let taken6: Vec<Subnet6> = self
                    .load_networks()?
                    .iter()
                    .filter_map(NetworkRecord::subnet6)
                    .collect();
                if let Some(t) = taken6.iter().find(|t| t.overlaps(&s)) {
                    return Err(invalid(format!(
                        "Pool overlaps with other one on this address space: {s} overlaps {t}"
                    )));
                }
                Some(s)
            }
            // 40 random bits: another network's /64 is never met in practice, but is looked
            // for all the same.
            None if opts.ipv6 => {
                let taken6: Vec<Subnet6> = self
                    .load_networks()?
                    .iter()
                    .filter_map(NetworkRecord::subnet6)
                    .collect();
                Some(
                    std::iter::repeat_with(Subnet6::random_ula)
                        .take(16)
                        .find(|s| !taken6.iter().any(|t| t.overlaps(s)))
                        .ok_or(NetworkError::PoolsExhausted)?,
                )
            }
            None => None,
        };
        let gateway6 = match subnet6 {
            Some(s) => Some(
                v6.gateway
                    .or_else(|| s.nth(1))
                    .ok_or_else(|| invalid(format!("subnet {s} has no room for a gateway")))?,
            ),
            None => None,
        };
        let rec = NetworkRecord {
            id,
            name: opts.name.clone(),
            driver: "bridge".into(),
            bridge,
            subnet: Some(subnet.to_string()),
            gateway: Some(gateway.to_string()),
            ip_range: ip_range.map(|r| r.to_string()),
            internal: opts.internal,
            labels: opts.labels.iter().cloned().collect(),
            created: crate::db::now(),
            aux_addresses: opts.aux_addresses.clone(),
            attachable: opts.attachable,
            subnet6: subnet6.map(|s| s.to_string()),
            gateway6: gateway6.map(|g| g.to_string()),
            ip_range6: v6.range.map(|r| r.to_string()),
            vni: None,
            options: BTreeMap::new(),
        };
        self.st.db.write(|tx| {
            let taken: Option<String> = tx
                .query_row(
                    "SELECT id FROM networks WHERE name = ?1",
                    params![rec.name],
                    |r| r.get(0),
                )
                .optional()?;
            if taken.is_some() {
                return Err(NetworkError::NameInUse {
                    name: rec.name.clone(),
                }
                .into());
            }
            tx.execute(
                "INSERT INTO networks (id, name, config) VALUES (?1, ?2, ?3)",
                params![
                    rec.id,
                    rec.name,
                    serde_json::to_string(&rec).unwrap_or_default()
                ],
            )?;
            Ok::<_, crate::Error>(())
        })?;
        if let Err(e) = self.ensure_bridge(&rec, Some(&lock)) {
            let _ = self.st.db.write(|tx| {
                tx.execute("DELETE FROM networks WHERE id = ?1", params![rec.id])?;
                Ok::<_, crate::Error>(())
            });
            return Err(e);
        }
        self.event("create", &rec);
        Ok(rec)
    }

    /// Makes the network's bridge with its gateway address, if it is not there (after a
    /// reboot, say), and sets it up. A bridge is made (or an abandoned root's removed to
    /// make way) under the host's network lock: `held` when the caller has it.
    pub(super) fn ensure_bridge(
        &self,
        rec: &NetworkRecord,
        held: Option<&HostLock>,
    ) -> crate::Result<()> {
        let (Some(subnet), Some(gateway)) = (rec.subnet(), rec.gateway()) else {
            return Ok(());
        };
        let nl = Netlink::open().map_err(io_err("open a netlink socket"))?;
        let mut made = false;
        let mut taken = None;
        let mut claim = self.claim_bridge(&nl, &rec.bridge)?;
        if matches!(claim, owner::Claim::Make(_)) && held.is_none() {
            taken = Some(HostLock::take().map_err(io_err("take the host's network lock"))?);
            claim = self.claim_bridge(&nl, &rec.bridge)?;
        }
        let index = match claim {
            owner::Claim::Use(index) => index,
            owner::Claim::Make(abandoned) => {
                if abandoned.is_some() {
                    owner::remove_bridge(&nl, &rec.bridge, abandoned)?;
                }
                nl.add_bridge(&rec.bridge, None)
                    .map_err(io_err(format!("create bridge {}", rec.bridge)))?;
                made = true;
                let index = nl
                    .link_index(&rec.bridge)
                    .map_err(io_err("look up a link"))?
                    .ok_or_else(|| invalid(format!("bridge {} vanished", rec.bridge)))?;
                if let Err(e) = nl.set_alias(index, &self.mark().render()) {
                    let _ = owner::remove_bridge(&nl, &rec.bridge, Some(index));
                    return Err(io_err(format!("mark bridge {}", rec.bridge))(e));
                }
                index
            }
        };
        let set_up = || -> crate::Result<()> {
            there_already_is_fine(nl.add_addr(index, gateway, subnet.prefix))
                .map_err(io_err(format!("add {gateway} to {}", rec.bridge)))?;
            // IPv6 on the bridge only for an IPv6 network, whose firewall table filters it:
            // on another, a container's IPv6 packets (a made-up address is enough) would be
            // forwarded past the IPv4 rules. Router advertisements from containers are never
            // taken (they would set the host's routes).
            let (subnet6, gateway6) = (rec.subnet6(), rec.gateway6());
            sysctl6(&rec.bridge, "accept_ra", "0")?;
            sysctl6(
                &rec.bridge,
                "disable_ipv6",
                if subnet6.is_some() { "0" } else { "1" },
            )?;
            if let (Some(subnet6), Some(gateway6)) = (subnet6, gateway6) {
                there_already_is_fine(nl.add_addr(index, gateway6, subnet6.prefix))
                    .map_err(io_err(format!("add {gateway6} to {}", rec.bridge)))?;
            }
            nl.set_link(index, None, None)
                .map_err(io_err(format!("set {} up", rec.bridge)))?;
            if made {
                firewall::create(&rec.bridge, subnet, rec.subnet6(), rec.internal)
                    .map_err(io_err(format!("set up the firewall of {}", rec.bridge)))?;
            }
            Ok(())
        };
        // A bridge made here goes again when it cannot be set up: none is left half made, or
        // open. One that was there (another process's, or made by hand) stays as it was.
        if let Err(e) = set_up() {
            if made {
                let _ = owner::remove_bridge(&nl, &rec.bridge, Some(index));
            }
            return Err(e);
        }
        drop(taken);
        if made && self.st.ip_forward && !rec.internal {
            let mut knobs = vec!["/proc/sys/net/ipv4/ip_forward"];
            if rec.ipv6() {
                knobs.push("/proc/sys/net/ipv6/conf/all/forwarding");
            }
            for path in knobs {
                if std::fs::read_to_string(path).is_ok_and(|v| v.trim() == "0") {
                    std::fs::write(path, "1").map_err(io_err(format!("write {path}")))?;
                }
            }
        }
        Ok(())
    }

    pub(crate) fn delete_bridge(&self, rec: &NetworkRecord) -> crate::Result<()> {
        // Only bridge networks have a bridge.
        if rec.bridge.is_empty() {
            return Ok(());
        }
        let nl = Netlink::open().map_err(io_err("open a netlink socket"))?;
        let index = nl
            .link_index(&rec.bridge)
            .map_err(io_err("look up a link"))?;
        owner::remove_bridge(&nl, &rec.bridge, index)
    }
}

/// Sets `net.ipv6.conf.<iface>.<knob>` in the calling thread's network namespace, where
/// the kernel has IPv6 (none to set otherwise); unchanged values are not written.
pub(super) fn sysctl6(iface: &str, knob: &str, value: &str) -> crate::Result<()> {
    let path = format!("/proc/sys/net/ipv6/conf/{iface}/{knob}");
    match std::fs::read_to_string(&path) {
        Ok(v) if v.trim() == value => Ok(()),
        Ok(_) => std::fs::write(&path, value).map_err(io_err(format!("write {path}"))),
        Err(_) => Ok(()),
    }
}

/// A network's IPv4 pool as asked for (`--subnet`, `--gateway`, `--ip-range`): checked
/// against itself (the taken ones are looked at under the host's lock).
#[derive(Default)]
pub(super) struct Pool4 {
    pub subnet: Option<Subnet>,
    pub gateway: Option<Ipv4Addr>,
    pub range: Option<Subnet>,
}

impl Pool4 {
    pub(super) fn of(opts: &NetworkCreate) -> crate::Result<Pool4> {
        let subnet: Option<Subnet> = opts
            .subnet
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(invalid)?;
        let range: Option<Subnet> = opts
            .ip_range
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(invalid)?;
        let gateway: Option<Ipv4Addr> = opts
            .gateway
            .as_deref()
            .map(|g| {
                g.parse()
                    .map_err(|_| invalid(format!("invalid gateway address: {g}")))
            })
            .transpose()?;
        if subnet.is_none() && (range.is_some() || gateway.is_some()) {
            return Err(invalid("--ip-range and --gateway need --subnet"));
        }
        if let (Some(s), Some(r)) = (subnet, range)
            && !s.contains_subnet(&r)
        {
            return Err(invalid(format!("ip-range {r} is not within subnet {s}")));
        }
        if let (Some(s), Some(g)) = (subnet, gateway)
            && !s.contains(g)
        {
            return Err(invalid(format!("gateway {g} is not within subnet {s}")));
        }
        Ok(Pool4 {
            subnet,
            gateway,
            range,
        })
    }
}

/// The subnet of a new network: the one asked for, unless it overlaps one `taken`; else
/// the first of the `pool` that overlaps neither those nor what `avoid` gives (the host's
/// routes).
pub(super) fn choose_subnet<P: IntoIterator<Item = Subnet>>(
    requested: Option<Subnet>,
    taken: &[Subnet],
    avoid: impl FnOnce() -> Vec<Subnet>,
    pool: impl FnOnce() -> P,
) -> crate::Result<Subnet> {
    if let Some(s) = requested {
        if let Some(t) = taken.iter().find(|t| t.overlaps(&s)) {
            return Err(invalid(format!(
                "Pool overlaps with other one on this address space: {s} overlaps {t}"
            )));
        }
        return Ok(s);
    }
    let avoid = avoid();
    pool()
        .into_iter()
        .find(|s| !taken.iter().chain(&avoid).any(|t| t.overlaps(s)))
        .ok_or_else(|| NetworkError::PoolsExhausted.into())
}

/// `--aux-address NAME=IP`: each an address of the subnet of its family.
pub(super) fn check_aux(
    opts: &NetworkCreate,
    subnet: Option<Subnet>,
    subnet6: Option<Subnet6>,
) -> crate::Result<()> {
    if !opts.aux_addresses.is_empty() && subnet.is_none() && subnet6.is_none() {
        return Err(invalid("--aux-address needs --subnet"));
    }
    for (name, ip) in &opts.aux_addresses {
        let within = match ip.parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) => subnet.is_some_and(|s| s.contains(a)),
            Ok(IpAddr::V6(a)) => subnet6.is_some_and(|s| s.contains(a)),
            Err(_) => false,
        };
        if !within {
            return Err(invalid(format!(
                "invalid auxiliary address {name}={ip}: not an address of the subnet"
            )));
        }
    }
    Ok(())
}

/// A network's IPv6 pool as asked for: checked against itself (the taken ones are looked at
/// under the host's lock).
#[derive(Default)]
struct Pool6 {
    subnet: Option<Subnet6>,
    gateway: Option<Ipv6Addr>,
    range: Option<Subnet6>,
}

impl Pool6 {
    fn of(opts: &NetworkCreate) -> crate::Result<Pool6> {
        let parse = |s: &Option<String>| -> crate::Result<Option<Subnet6>> {
            s.as_deref()
                .map(|s| s.parse::<Subnet6>().map_err(invalid))
                .transpose()
        };
        let subnet = parse(&opts.subnet6)?;
        let range = parse(&opts.ip_range6)?;
        let gateway: Option<Ipv6Addr> = opts
            .gateway6
            .as_deref()
            .map(|g| {
                g.parse()
                    .map_err(|_| invalid(format!("invalid gateway address: {g}")))
            })
            .transpose()?;
        let Some(s) = subnet else {
            if range.is_some() || gateway.is_some() {
                return Err(invalid(
                    "an IPv6 --ip-range or --gateway needs an IPv6 --subnet",
                ));
            }
            return Ok(Pool6::default());
        };
        // A subnet of the routable unicast space: not link-local (every interface has
        // fe80::/64), multicast, or so large it takes the host's own routes.
        if s.prefix < 8 || s.addr.is_multicast() || s.addr.is_unicast_link_local() {
            return Err(invalid(format!(
                "invalid IPv6 subnet {s}: not a routable unicast prefix of /8 or longer"
            )));
        }
        // Room for the subnet-router address, a gateway and a container at least.
        if s.prefix > 126 {
            return Err(invalid(format!(
                "subnet {s} is too small: an IPv6 network needs a /126 or larger"
            )));
        }
        if let Some(r) = range
            && !s.contains_subnet(&r)
        {
            return Err(invalid(format!("ip-range {r} is not within subnet {s}")));
        }
        if let Some(g) = gateway
            && !s.contains(g)
        {
            return Err(invalid(format!("gateway {g} is not within subnet {s}")));
        }
        Ok(Pool6 {
            subnet,
            gateway,
            range,
        })
    }
}
