//! An overlay network on this host: its devices, its containers' places in the cluster
//! store, and the entries that reach the others'.
//!
//! On each host with a container on it, an overlay network is a bridge without an address
//! (the host is not on the network, and nothing is routed into or out of it) with a VXLAN
//! device as a port: tunnels from this host's `--cluster-advertise` address to the others'
//! on UDP 4789, with no multicast and no learning. Each container's place is claimed in the
//! store under the network's endpoints (`/ketch/v1/endpoints/<id>/<ip>`, one key per
//! address, so no address is handed out twice across the hosts) with what another host
//! needs to reach it and to answer its names: its MAC, its host's tunnel end, its names.
//! From those, each host keeps on its VXLAN device a forwarding entry (the MAC's tunnel
//! end) and a neighbour entry (the address's MAC, which the device answers ARP from) for
//! every container on another host, and the network's names file for the name servers.
//! The engine programs them when a container joins; `ketch daemon` keeps them current from
//! the store's changes ([`crate::cluster`]).

use std::net::Ipv4Addr;

use super::bridge::{sysctl6, there_already_is_fine};
use super::overlay::endpoints_prefix;
use super::vxlan::VXLAN_PORT;
use super::*;
use crate::etcd::{Compare, Etcd, Op};

/// A container's place on an overlay network, as the cluster store holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    pub container_id: String,
    pub ip: Ipv4Addr,
    pub mac: String,
    /// Its host's tunnel end (`--cluster-advertise`).
    pub vtep: Ipv4Addr,
    /// The state root it runs on (its engine ID).
    pub engine: String,
    /// The names it answers to on the network: name, short ID, aliases.
    pub names: Vec<String>,
    /// The process that claimed it (PID, start time): who made it, for a reader.
    pub owner: (u32, u64),
}

/// The name of the host's gateway bridge network.
pub(crate) const GATEWAY_BRIDGE: &str = "ketch_gwbridge";

fn peer_key(network_id: &str, ip: Ipv4Addr) -> String {
    format!("{}{ip}", endpoints_prefix(network_id))
}

/// The VXLAN device that goes with an overlay network's bridge (`ko...` → `kx...`).
pub(crate) fn vxlan_of(bridge: &str) -> Option<String> {
    bridge.strip_prefix("ko").map(|rest| format!("kx{rest}"))
}

/// This host's address on the underlay: `--cluster-advertise`'s IP, or its interface's
/// first IPv4 address; a `:PORT` after either is the daemon's, and left out.
pub(crate) fn advertised(value: &str) -> crate::Result<Ipv4Addr> {
    let host = match value.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => h,
        _ => value,
    };
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(ip);
    }
    let bad = |why: &str| {
        invalid(format!(
            "invalid --cluster-advertise {value:?}: {why} (an IPv4 address or an interface's name)"
        ))
    };
    if host.is_empty() || host.len() > 15 {
        return Err(bad("not an address"));
    }
    let mut ifaddrs: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a list this function frees below.
    if unsafe { libc::getifaddrs(&mut ifaddrs) } != 0 {
        return Err(io_err("list the host's addresses")(
            io::Error::last_os_error(),
        ));
    }
    let mut found = None;
    let mut cur = ifaddrs;
    while !cur.is_null() {
        // SAFETY: a node of the list getifaddrs returned, alive until freed.
        let ifa = unsafe { &*cur };
        // SAFETY: a NUL-terminated name the kernel gave.
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
        if name.to_bytes() == host.as_bytes()
            && !ifa.ifa_addr.is_null()
            // SAFETY: a sockaddr of the list's.
            && i32::from(unsafe { (*ifa.ifa_addr).sa_family }) == libc::AF_INET
        {
            // SAFETY: an AF_INET address is a sockaddr_in.
            let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
            found = Some(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
            break;
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: the list getifaddrs made, freed once.
    unsafe { libc::freeifaddrs(ifaddrs) };
    found.ok_or_else(|| bad("no such interface with an IPv4 address"))
}

/// The file `ketch daemon` holds a lock on while it keeps this root's cluster state
/// ([`crate::cluster`]).
pub(crate) fn cluster_lock_path(st: &State) -> PathBuf {
    st.root.join("cluster.lock")
}

/// How a process holds an overlay network's lock on this host.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Hold {
    /// While it claims a place and records it as a container's (many at once).
    Claim,
    /// While it judges which of this host's places are held, or programs the entries.
    Alone,
}

impl Networks<'_> {
    /// Takes this host's lock of the overlay network `id`, waiting for it. Claims hold it
    /// shared from the claim in the store until the endpoint is recorded here; a sync holds
    /// it alone, so it never takes a claim being made for one no container holds; entries
    /// are programmed alone, each time from the store as read under the lock, so a slower
    /// process never writes an older view over a newer one.
    pub(super) fn overlay_lock(&self, id: &str, hold: Hold) -> crate::Result<std::fs::File> {
        use rustix::fs::FlockOperation;
        let path = self.overlay_lock_path(id);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io_err(format!("create {}", dir.display())))?;
        }
        let op = match hold {
            Hold::Claim => FlockOperation::LockShared,
            Hold::Alone => FlockOperation::LockExclusive,
        };
        crate::util::flock_file(&path, op)
            .map_err(io_err(format!("lock {}", path.display())))?
            .ok_or_else(|| invalid(format!("{} was not locked", path.display())))
    }

    pub(super) fn overlay_lock_path(&self, id: &str) -> PathBuf {
        self.st.root.join("overlay").join(format!("{id}.lock"))
    }

    /// Whether a process keeps this host's cluster state current: this one, or a daemon on
    /// the root (which holds the lock).
    pub(super) fn kept(&self) -> bool {
        use std::os::fd::AsRawFd;
        if self
            .st
            .cluster_kept
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return true;
        }
        let Ok(f) = std::fs::File::open(cluster_lock_path(self.st)) else {
            return false;
        };
        // SAFETY: flock on a descriptor held here; a lock taken goes with the file.
        unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) != 0 }
    }

    /// The host's gateway bridge (Docker's `docker_gwbridge`): the way out of containers on
    /// overlay networks, a bridge network made the first time one needs it.
    pub(super) fn gateway_bridge(&self) -> crate::Result<NetworkRecord> {
        match self.find(GATEWAY_BRIDGE) {
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Ok(n) if n.driver != "bridge" => {
                return Err(invalid(format!(
                    "network {GATEWAY_BRIDGE} is not a bridge network: the name is the hosts' gateway bridge's"
                )));
            }
            found => return found,
        }
        let made = self.create_bridge(
            &NetworkCreate {
                name: GATEWAY_BRIDGE.into(),
                ..NetworkCreate::default()
            },
            None,
        );
        match made {
            // Made by another process meanwhile.
            Err(e) if e.kind() == ErrorKind::Conflict => self.find(GATEWAY_BRIDGE),
            made => made,
        }
    }

    /// This host's tunnel end.
    fn vtep(&self) -> crate::Result<Ipv4Addr> {
        let a = self
            .st
            .cluster
            .advertise
            .as_deref()
            .ok_or(NetworkError::NoCluster)?;
        advertised(a)
    }

    /// Every container's place on the overlay network `id`, on every host.
    pub(crate) fn peers(&self, etcd: &Etcd, id: &str) -> crate::Result<Vec<(i64, Peer)>> {
        let (_, kvs) = etcd.list(&endpoints_prefix(id))?;
        Ok(kvs
            .iter()
            .filter_map(|kv| {
                serde_json::from_slice(&kv.value)
                    .ok()
                    .map(|p| (kv.mod_revision, p))
            })
            .collect())
    }

    /// The hosts with a container on the overlay network `id` (`None`: the store is not
    /// reached).
    pub(super) fn hosts_of(&self, id: &str) -> Option<Vec<crate::model::PeerInfo>> {
        let etcd = self.store().ok()?;
        let mut hosts: Vec<crate::model::PeerInfo> = self
            .peers(&etcd, id)
            .ok()?
            .into_iter()
            .map(|(_, p)| crate::model::PeerInfo {
                name: p.engine.chars().take(12).collect(),
                ip: p.vtep.to_string(),
            })
            .collect();
        hosts.sort_by(|a, b| (&a.ip, &a.name).cmp(&(&b.ip, &b.name)));
        hosts.dedup();
        Some(hosts)
    }

    /// Makes this host's bridge and VXLAN device of an overlay network, if not there.
    pub(super) fn ensure_overlay(&self, rec: &NetworkRecord) -> crate::Result<()> {
        let vni = rec
            .vni
            .ok_or_else(|| invalid(format!("overlay network {} has no VNI", rec.name)))?;
        let vtep = self.vtep()?;
        let mtu = rec.mtu();
        let nl = Netlink::open().map_err(io_err("open a netlink socket"))?;
        let _lock = HostLock::take().map_err(io_err("take the host's network lock"))?;
        let (index, made) = match self.claim_bridge(&nl, &rec.bridge)? {
            owner::Claim::Use(index) => (index, false),
            owner::Claim::Make(abandoned) => {
                if abandoned.is_some() {
                    owner::remove_bridge(&nl, &rec.bridge, abandoned)?;
                }
                nl.add_bridge(&rec.bridge, Some(mtu))
                    .map_err(io_err(format!("create bridge {}", rec.bridge)))?;
                let index = nl
                    .link_index(&rec.bridge)
                    .map_err(io_err("look up a link"))?
                    .ok_or_else(|| invalid(format!("bridge {} vanished", rec.bridge)))?;
                (index, true)
            }
        };
        let set_up = || -> crate::Result<()> {
            if made {
                nl.set_alias(index, &self.mark().render())
                    .map_err(io_err(format!("mark bridge {}", rec.bridge)))?;
            }
            // No address on it: IPv6's link-local one neither.
            sysctl6(&rec.bridge, "disable_ipv6", "1")?;
            let vx = vxlan_of(&rec.bridge).unwrap_or_default();
            if nl
                .link_index(&vx)
                .map_err(io_err("look up a link"))?
                .is_none()
            {
                there_already_is_fine(nl.add_vxlan(&vx, vni, vtep, VXLAN_PORT, mtu))
                    .map_err(io_err(format!("create VXLAN device {vx} (VNI {vni})")))?;
            }
            let vx_index = nl
                .link_index(&vx)
                .map_err(io_err("look up a link"))?
                .ok_or_else(|| invalid(format!("VXLAN device {vx} vanished")))?;
            nl.set_link(vx_index, Some(index), None)
                .map_err(io_err(format!("attach {vx} to {}", rec.bridge)))?;
            sysctl6(&vx, "disable_ipv6", "1")?;
            firewall::open_overlay(&rec.bridge).map_err(io_err(format!(
                "let {}'s frames through the firewall",
                rec.bridge
            )))?;
            nl.set_link(index, None, None)
                .map_err(io_err(format!("set {} up", rec.bridge)))
        };
        if let Err(e) = set_up() {
            if made {
                let _ = owner::remove_bridge(&nl, &rec.bridge, Some(index));
            }
            return Err(e);
        }
        Ok(())
    }

    /// Claims an address on the overlay network for a container: the one asked for, or the
    /// lowest free one of the range across the cluster, with the rest of its place.
    pub(super) fn claim_peer(
        &self,
        etcd: &Etcd,
        rec: &NetworkRecord,
        container_id: &str,
        static_ip: Option<Ipv4Addr>,
        mac: Option<[u8; 6]>,
        names: Vec<String>,
    ) -> crate::Result<Peer> {
        let hosts = endpoint::Hosts4::of(rec)?;
        hosts.check(static_ip)?;
        let vtep = self.vtep()?;
        let me = std::process::id();
        let net = super::overlay::network_key(&rec.id);
        for _ in 0..64 {
            // The claim holds only while the network is as read: never a place on a network
            // another host removed meanwhile.
            let Some(net_kv) = etcd.get(&net)? else {
                return Err(NetworkError::NotFound {
                    name: rec.name.clone(),
                }
                .into());
            };
            let used: std::collections::HashSet<Ipv4Addr> = self
                .peers(etcd, &rec.id)?
                .into_iter()
                .map(|(_, p)| p.ip)
                .collect();
            let ip = match static_ip {
                Some(ip) if used.contains(&ip) => {
                    return Err(NetworkError::AddressInUse {
                        ip: ip.into(),
                        name: rec.name.clone(),
                    }
                    .into());
                }
                Some(ip) => ip,
                None => hosts.first_free(|ip| used.contains(&ip))?,
            };
            let peer = Peer {
                container_id: container_id.to_string(),
                ip,
                mac: endpoint::mac_string(mac.unwrap_or_else(|| endpoint::mac_for(ip))),
                vtep,
                engine: self.st.engine_id.clone(),
                names: names.clone(),
                owner: (me, crate::util::process_start_time(me).unwrap_or(0)),
            };
            let key = peer_key(&rec.id, ip);
            if etcd.txn(
                &[
                    Compare::Absent(&key),
                    Compare::At(&net, net_kv.mod_revision),
                ],
                &[Op::Put(&key, serde_json::to_vec(&peer).unwrap_or_default())],
            )? {
                return Ok(peer);
            }
            // A claim that reached the store before its answer was lost is ours.
            if let Some(kv) = etcd.get(&key)?
                && serde_json::from_slice::<Peer>(&kv.value).is_ok_and(|p| p == peer)
            {
                return Ok(peer);
            }
        }
        Err(NetworkError::AddressesExhausted {
            family: "IPv4",
            name: rec.name.clone(),
        }
        .into())
    }

    /// Gives back a container's place on an overlay network, if it is still its.
    pub(super) fn release_peer(
        &self,
        etcd: &Etcd,
        network_id: &str,
        container_id: &str,
        ip: Ipv4Addr,
    ) -> crate::Result<()> {
        let key = peer_key(network_id, ip);
        if let Some(kv) = etcd.get(&key)?
            && serde_json::from_slice::<Peer>(&kv.value)
                .is_ok_and(|p| p.container_id == container_id)
        {
            etcd.txn(&[Compare::At(&key, kv.mod_revision)], &[Op::Delete(&key)])?;
        }
        Ok(())
    }

    /// A container's place on an overlay network given back (where the store is reached;
    /// else the daemon's next sync takes it), and this host's entries and names redone.
    pub(super) fn leave_overlay(&self, rec: &NetworkRecord, ep: &Endpoint) -> crate::Result<()> {
        let Ok(etcd) = self.store() else {
            return Ok(());
        };
        if self
            .release_peer(&etcd, &rec.id, &ep.container_id, ep.ip)
            .is_err()
        {
            return Ok(());
        }
        self.program_overlay(&etcd, rec)
    }

    /// Programs this host's entries for an overlay network from the store, read under the
    /// network's lock ([`Networks::overlay_lock`]).
    pub(super) fn program_overlay(&self, etcd: &Etcd, rec: &NetworkRecord) -> crate::Result<()> {
        let _lock = self.overlay_lock(&rec.id, Hold::Alone)?;
        let peers: Vec<Peer> = self
            .peers(etcd, &rec.id)?
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        self.program_entries(rec, &peers)
    }

    /// Programs this host's entries for an overlay network from its peers: a forwarding and
    /// a neighbour entry for each container on another host, none for one gone; and the
    /// network's names file. Nothing where this host has no device of it. Called under the
    /// network's lock, held alone.
    fn program_entries(&self, rec: &NetworkRecord, peers: &[Peer]) -> crate::Result<()> {
        let Some(vx) = vxlan_of(&rec.bridge) else {
            return Ok(());
        };
        let nl = Netlink::open().map_err(io_err("open a netlink socket"))?;
        let Some(index) = nl.link_index(&vx).map_err(io_err("look up a link"))? else {
            return Ok(());
        };
        let vtep = self.vtep()?;
        // Another host's word: only addresses of the network's subnet are taken.
        let peers: Vec<&Peer> = peers
            .iter()
            .filter(|p| rec.subnet().is_some_and(|s| s.contains(p.ip)))
            .collect();
        let remote: Vec<(Ipv4Addr, [u8; 6], Ipv4Addr)> = peers
            .iter()
            .filter(|p| p.vtep != vtep)
            .filter_map(|p| Some((p.ip, parse_mac(&p.mac).ok()?, p.vtep)))
            .collect();
        let have = nl
            .neighbours(index)
            .map_err(io_err(format!("list the entries of {vx}")))?;
        for n in &have {
            let wanted = remote.iter().any(|(ip, mac, end)| {
                if n.is_fdb() {
                    n.mac == Some(*mac) && n.dst == Some(IpAddr::V4(*end))
                } else {
                    n.dst == Some(IpAddr::V4(*ip)) && n.mac == Some(*mac)
                }
            });
            // The device's own (all-zero MAC) entries are not peers'.
            if !wanted && n.mac.is_some_and(|m| m != [0; 6]) {
                nl.del_neighbour(n)
                    .map_err(io_err(format!("remove an entry of {vx}")))?;
            }
        }
        for (ip, mac, end) in &remote {
            let has_fdb = have
                .iter()
                .any(|n| n.is_fdb() && n.mac == Some(*mac) && n.dst == Some(IpAddr::V4(*end)));
            if !has_fdb {
                there_already_is_fine(nl.add_forwarding(index, *mac, *end))
                    .map_err(io_err(format!("add the forwarding entry of {ip} to {vx}")))?;
            }
            nl.set_neighbour(index, *ip, *mac)
                .map_err(io_err(format!("add the neighbour entry of {ip} to {vx}")))?;
        }
        self.write_overlay_records(rec, &peers)
    }

    /// The names file of an overlay network: every container on it, on every host. A name
    /// is one word of printable characters (a line of the file per address).
    fn write_overlay_records(&self, rec: &NetworkRecord, peers: &[&Peer]) -> crate::Result<()> {
        let word = |n: &&String| !n.is_empty() && n.chars().all(|c| c.is_ascii_graphic());
        let text: String = peers
            .iter()
            .map(|p| {
                let names: Vec<&str> = p.names.iter().filter(word).map(String::as_str).collect();
                format!("{} {}\n", p.ip, names.join(" "))
            })
            .collect();
        self.write_records_file(&rec.id, &text)
    }

    /// Brings this host's entries of every overlay network it has devices of up to date
    /// from the store; removes its own places that no container here holds and no claim is
    /// being made for (those a killed engine left, or a release made while the store was
    /// away).
    pub(crate) fn sync_overlays(&self) -> crate::Result<()> {
        let etcd = self.store()?;
        self.refresh_overlays(&etcd)?;
        // One network's trouble does not keep the others from being brought in line.
        let mut first_error = None;
        for rec in self.local_overlays()? {
            if let Err(e) = self.sync_overlay(&etcd, &rec) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// [`Networks::sync_overlays`] of one network.
    fn sync_overlay(&self, etcd: &Etcd, rec: &NetworkRecord) -> crate::Result<()> {
        // Alone: every claim under way has recorded its endpoint, or not begun.
        let _lock = self.overlay_lock(&rec.id, Hold::Alone)?;
        let peers = self.peers(etcd, &rec.id)?;
        let held: std::collections::HashSet<(String, Ipv4Addr)> = self
            .endpoints_of(&rec.id)?
            .into_iter()
            .map(|e| (e.container_id, e.ip))
            .collect();
        let mut current = Vec::new();
        for (rev, p) in peers {
            let stale =
                p.engine == self.st.engine_id && !held.contains(&(p.container_id.clone(), p.ip));
            if stale {
                let key = peer_key(&rec.id, p.ip);
                etcd.txn(&[Compare::At(&key, rev)], &[Op::Delete(&key)])?;
            } else {
                current.push(p);
            }
        }
        self.program_entries(rec, &current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_advertised_address_is_an_ip_or_an_interfaces() {
        assert_eq!(
            advertised("198.18.0.11").unwrap(),
            Ipv4Addr::new(198, 18, 0, 11)
        );
        assert_eq!(
            advertised("198.18.0.11:2376").unwrap(),
            Ipv4Addr::new(198, 18, 0, 11)
        );
        assert_eq!(advertised("lo").unwrap(), Ipv4Addr::LOCALHOST);
        assert_eq!(advertised("lo:2376").unwrap(), Ipv4Addr::LOCALHOST);
        for bad in ["", "nosuchif0", "a-name-far-too-long-for-a-link", "::1"] {
            let e = advertised(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad}: {e}");
        }
    }

    #[test]
    fn an_overlay_bridge_names_its_vxlan_device() {
        assert_eq!(vxlan_of("ko1a2b101").as_deref(), Some("kx1a2b101"));
        assert_eq!(vxlan_of("br-0123"), None);
    }
}
