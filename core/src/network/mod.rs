//! Networks: Docker's `bridge`, `host`, `none` and `container:<name|id>`, with IPAM.
//!
//! A network is a record in the database (its subnet, gateway, bridge device); a bridge
//! network is also a Linux bridge with the gateway address, made when the network is made.
//! A container on a bridge network gets, at each start, a network namespace held by a bind
//! mount under `netns/`, an address from the network's range (an `endpoints` row, unique per
//! network, so no address is handed out twice), and a veth pair from the namespace to the
//! bridge. When the container stops, its monitor lets go of the namespace and the kernel
//! removes the veth pair with it; the engine forgets the address the next time it allocates
//! on that network, or when the container is removed.
//!
//! Every link, address and route is set through netlink ([`netlink`]), never by running `ip`.

mod bridge;
mod dns;
mod endpoint;
pub mod firewall;
pub mod netlink;
pub mod netns;
mod overlay;
pub(crate) mod owner;
mod peers;
pub mod vxlan;
pub use crate::ipnet as subnet;
pub(crate) use endpoint::Given;
pub use endpoint::parse_mac;
pub(crate) use overlay::ROOT as CLUSTER_ROOT;
pub use peers::Peer;
pub(crate) use peers::{GATEWAY_BRIDGE, cluster_lock_path};

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::error::ErrorKind;
use crate::state::State;
use bridge::HostLock;
pub(crate) use endpoint::redirect_dns;
use netlink::Netlink;
use subnet::{Subnet, Subnet6};

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("network {name} not found")]
    NotFound { name: String },
    #[error("network with name {name} already exists")]
    NameInUse { name: String },
    #[error("{reason}")]
    Invalid { reason: String },
    #[error("error while removing network: network {name} id {id} has active endpoints")]
    InUse { name: String, id: String },
    #[error("{name} is a pre-defined network and cannot be removed")]
    Predefined { name: String },
    #[error(
        "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network"
    )]
    PoolsExhausted,
    #[error("no available {family} addresses on network {name}")]
    AddressesExhausted { family: &'static str, name: String },
    #[error("network {name} has no IPv6: an IPv6 address needs a network made with --ipv6")]
    NoIpv6 { name: String },
    #[error("Address already in use: {ip} on network {name}")]
    AddressInUse { ip: IpAddr, name: String },
    #[error(
        "bridge {bridge} {reason}: give this root a bridge of its own (--bridge, KETCH_BRIDGE)"
    )]
    BridgeOwned { bridge: String, reason: String },
    /// Neither nftables nor iptables is here to isolate a bridge network with.
    #[error("{reason}")]
    NoFirewall { reason: String },
    #[error(
        "overlay networks need a cluster: start the engine with --cluster-store etcd://HOST:PORT and --cluster-advertise IP"
    )]
    NoCluster,
    #[error(
        "overlay network {name} needs `ketch daemon` running on this host (in the cluster, on this state root) to keep its containers reachable: start it, then try again"
    )]
    NotKept { name: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

crate::error::from_module_error!(NetworkError);

impl NetworkError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            NetworkError::NotFound { .. } => ErrorKind::NotFound,
            NetworkError::NameInUse { .. } => ErrorKind::Conflict,
            NetworkError::Invalid { .. } | NetworkError::NoIpv6 { .. } => {
                ErrorKind::InvalidArgument
            }
            NetworkError::InUse { .. } | NetworkError::Predefined { .. } => {
                ErrorKind::FailedPrecondition
            }
            NetworkError::PoolsExhausted | NetworkError::AddressesExhausted { .. } => {
                ErrorKind::Unavailable
            }
            NetworkError::AddressInUse { .. } | NetworkError::BridgeOwned { .. } => {
                ErrorKind::Conflict
            }
            NetworkError::NoFirewall { .. } => ErrorKind::Unavailable,
            // As Docker answers an overlay network asked of a daemon outside a swarm.
            NetworkError::NoCluster => ErrorKind::PermissionDenied,
            NetworkError::NotKept { .. } => ErrorKind::FailedPrecondition,
            NetworkError::Io { source, .. } => crate::error::io_kind(source),
        }
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> crate::Error {
    let what = what.into();
    move |source| NetworkError::Io { what, source }.into()
}

/// The firewall a bridge network needs, checked before anything of the network is made.
fn require_firewall() -> crate::Result<()> {
    firewall::require().map(|_| ()).map_err(|e| {
        NetworkError::NoFirewall {
            reason: e.to_string(),
        }
        .into()
    })
}

fn invalid(reason: impl Into<String>) -> crate::Error {
    NetworkError::Invalid {
        reason: reason.into(),
    }
    .into()
}

/// What `network create` takes: Docker's flags.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkCreate {
    pub name: String,
    /// `bridge` (the default); `host` and `null` exist once, made by the engine.
    pub driver: Option<String>,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub ip_range: Option<String>,
    pub internal: bool,
    pub labels: Vec<(String, String)>,
    /// `--aux-address NAME=IP`: addresses of the subnet never handed to a container.
    pub aux_addresses: BTreeMap<String, String>,
    /// `--attachable`: kept and shown (swarm services would read it).
    pub attachable: bool,
    /// `--ipv6`: the network has IPv6 too, on `subnet6` or, without one, on a unique local
    /// /64 the engine picks. An IPv6 subnet given makes a network IPv6 without it.
    pub ipv6: bool,
    /// The IPv6 pool: its subnet, gateway (the subnet's first address when `None`) and the
    /// range containers' addresses come from.
    pub subnet6: Option<String>,
    pub gateway6: Option<String>,
    pub ip_range6: Option<String>,
    /// Driver options (`--opt KEY=VALUE`): the overlay driver's MTU
    /// (`com.docker.network.driver.mtu`).
    pub options: BTreeMap<String, String>,
}

/// A stored network.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkRecord {
    pub id: String,
    pub name: String,
    /// `bridge`, `host` or `null`.
    pub driver: String,
    /// The bridge device (bridge networks only).
    pub bridge: String,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub ip_range: Option<String>,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
    pub created: String,
    /// Addresses kept from the containers (`AuxiliaryAddresses`), by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aux_addresses: BTreeMap<String, String>,
    #[serde(default)]
    pub attachable: bool,
    /// The IPv6 pool of an IPv6 network (`EnableIPv6`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet6: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range6: Option<String>,
    /// An overlay network's VXLAN network identifier, unique across its cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
    /// The driver options it was made with, as Docker shows them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

impl NetworkRecord {
    fn subnet(&self) -> Option<Subnet> {
        self.subnet.as_deref().and_then(|s| s.parse().ok())
    }

    fn gateway(&self) -> Option<Ipv4Addr> {
        self.gateway.as_deref().and_then(|g| g.parse().ok())
    }

    fn subnet6(&self) -> Option<Subnet6> {
        self.subnet6.as_deref().and_then(|s| s.parse().ok())
    }

    fn gateway6(&self) -> Option<Ipv6Addr> {
        self.gateway6.as_deref().and_then(|g| g.parse().ok())
    }

    /// Whether containers on it get IPv6 addresses.
    pub fn ipv6(&self) -> bool {
        self.subnet6().is_some()
    }

    /// An IPv6 address asked for (`asked`) is refused on a network without IPv6.
    pub(crate) fn check_ip6(&self, asked: bool) -> crate::Result<()> {
        if asked && !self.ipv6() {
            return Err(NetworkError::NoIpv6 {
                name: self.name.clone(),
            }
            .into());
        }
        Ok(())
    }

    pub fn predefined(&self) -> bool {
        matches!(self.name.as_str(), "bridge" | "host" | "none")
    }

    /// Whether it spans the hosts of a cluster (its record is the cluster store's).
    pub fn overlay(&self) -> bool {
        self.driver == "overlay"
    }
}

/// A container's place on a network while it runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Endpoint {
    pub network_id: String,
    pub network: String,
    pub container_id: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    /// On an IPv6 network: the address, its prefix length and the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<Ipv6Addr>,
    #[serde(default)]
    pub prefix6: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<Ipv6Addr>,
    /// Link-local addresses given (`--link-local-ip`), on the interface besides the others.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub link_local: Vec<IpAddr>,
    pub mac: String,
    /// The process that made the endpoint (PID, start time): while it lives and the
    /// container has not run yet, the endpoint is in use (the container is starting).
    #[serde(default)]
    pub owner: (u32, u64),
    /// Ports published to this address, host ports resolved.
    #[serde(default)]
    pub ports: Vec<firewall::PortMap>,
    /// The veth pair: its host end, and its name in the container (`eth0`, `eth1`...).
    #[serde(default)]
    pub veth: String,
    #[serde(default)]
    pub iface: String,
}

/// A network a container is connected to beyond its first (`network connect`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct NetworkAttachment {
    pub network: String,
    pub ip: Option<String>,
    /// `--ip6`: the IPv6 address on an IPv6 network, instead of the next free one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip6: Option<String>,
    /// `--link-local-ip`: link-local addresses (IPv4 169.254.0.0/16, IPv6 fe80::/10) the
    /// interface has too.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub link_local_ips: Vec<String>,
    pub aliases: Vec<String>,
    /// `--mac-address`: the interface's address instead of one made from its IP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// The endpoint's driver options, kept and shown as given (the bridge driver reads
    /// none of its own here; `com.docker.network.*` ones are refused at create).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub driver_opts: BTreeMap<String, String>,
    /// Links on this network (`NAME:ALIAS`): the container's name server answers ALIAS
    /// with NAME's address on the network, for this container only.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
}

/// A network and the containers on it, for `network inspect` and `network ls`.
#[derive(Debug, Clone)]
pub struct Network {
    pub record: NetworkRecord,
    pub endpoints: Vec<Endpoint>,
    /// An overlay network's hosts with a container on it, as the cluster store says
    /// (inspect only; `None` where not read).
    pub peers: Option<Vec<crate::model::PeerInfo>>,
}

impl Network {
    /// The Docker Engine API's shape; `names` maps container IDs to names.
    pub fn resource(&self, names: &BTreeMap<String, String>) -> crate::model::NetworkResource {
        use crate::model::{Ipam, IpamConfig, NetworkContainer, NetworkResource};
        let r = &self.record;
        // Options are what the network was made with, as Docker shows them: the default
        // network names its bridge; a user network (no driver options here) has none, which
        // Compose compares with its own file's.
        let mut options = r.options.clone();
        if let Some(vni) = r.vni {
            options.insert(
                "com.docker.network.driver.overlay.vxlanid_list".into(),
                vni.to_string(),
            );
        }
        if r.driver == "bridge" && r.predefined() {
            options.insert("com.docker.network.bridge.name".into(), r.bridge.clone());
        }
        // Each pool shows the auxiliary addresses of its family.
        let aux = |v6: bool| -> BTreeMap<String, String> {
            r.aux_addresses
                .iter()
                .filter(|(_, ip)| ip.contains(':') == v6)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        NetworkResource {
            name: r.name.clone(),
            id: r.id.clone(),
            created: r.created.clone(),
            scope: if r.overlay() { "global" } else { "local" }.into(),
            driver: r.driver.clone(),
            enable_ipv6: r.ipv6(),
            ipam: Ipam {
                driver: "default".into(),
                config: r
                    .subnet
                    .iter()
                    .map(|s| IpamConfig {
                        subnet: s.clone(),
                        gateway: r.gateway.clone().unwrap_or_default(),
                        ip_range: r.ip_range.clone(),
                        aux_addresses: aux(false),
                    })
                    .chain(r.subnet6.iter().map(|s| IpamConfig {
                        subnet: s.clone(),
                        gateway: r.gateway6.clone().unwrap_or_default(),
                        ip_range: r.ip_range6.clone(),
                        aux_addresses: aux(true),
                    }))
                    .collect(),
                options: None,
            },
            internal: r.internal,
            attachable: r.attachable,
            ingress: false,
            containers: self
                .endpoints
                .iter()
                .map(|e| {
                    (
                        e.container_id.clone(),
                        NetworkContainer {
                            name: names.get(&e.container_id).cloned().unwrap_or_default(),
                            endpoint_id: format!(
                                "{}{}",
                                &e.network_id[..32],
                                &e.container_id[..32]
                            ),
                            mac_address: e.mac.clone(),
                            ipv4_address: format!("{}/{}", e.ip, e.prefix),
                            ipv6_address: e
                                .ip6
                                .map(|ip| format!("{ip}/{}", e.prefix6))
                                .unwrap_or_default(),
                        },
                    )
                })
                .collect(),
            options,
            labels: r.labels.clone(),
            peers: self.peers.clone(),
        }
    }
}

fn read_record(json: &str) -> crate::Result<NetworkRecord> {
    serde_json::from_str(json).map_err(|e| invalid(format!("network record: {e}")))
}

/// The networks of an opened root: their records, the endpoints containers hold on them,
/// and the host's devices and firewall rules that carry them.
///
/// Whether a container still holds its endpoints is the containers' to judge (their
/// monitors' lives): they release the stale ones before asking for new addresses or a
/// network's users ([`crate::runtime`]). The names and aliases that a network's name
/// server answers for are read from the containers' records in the database.
#[derive(Clone, Copy)]
pub struct Networks<'s> {
    st: &'s State,
}

impl<'s> Networks<'s> {
    pub fn new(st: &'s State) -> Networks<'s> {
        Networks { st }
    }

    fn event(&self, action: &str, rec: &NetworkRecord) {
        crate::events::record(
            self.st,
            "network",
            action,
            &rec.id,
            &[("name", &rec.name), ("type", "bridge")],
        );
    }
}

impl Networks<'_> {
    pub(crate) fn load_networks(&self) -> crate::Result<Vec<NetworkRecord>> {
        let rows: Vec<String> = self.st.db.read(|tx| {
            let mut stmt = tx.prepare("SELECT config FROM networks ORDER BY name")?;
            let rows = stmt
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            Ok::<_, crate::Error>(rows)
        })?;
        rows.iter().map(|r| read_record(r)).collect()
    }

    /// A network by full ID, name, or unique ID prefix.
    ///
    /// Where the default network cannot be made (its bridge is another root's, say), the
    /// others are still found; a look-up that finds nothing says why `bridge` is missing.
    ///
    /// In a cluster, an overlay network found, or none, is looked for again after the
    /// copies of the cluster's are refreshed: one made or removed on another host is seen.
    pub(crate) fn find(&self, name: &str) -> crate::Result<NetworkRecord> {
        let predefined = self.ensure_predefined();
        let clustered = self.st.cluster.store.is_some();
        for pass in 0..2 {
            let all = self.load_networks()?;
            let found = match all.iter().find(|n| n.id == name || n.name == name) {
                Some(n) => Some(n.clone()),
                None => match all
                    .iter()
                    .filter(|n| n.id.starts_with(name))
                    .collect::<Vec<_>>()
                    .as_slice()
                {
                    [one] if !name.is_empty() => Some((*one).clone()),
                    _ => None,
                },
            };
            match found {
                Some(n) if !n.overlay() || !clustered || pass == 1 => return Ok(n),
                None if !clustered || pass == 1 => break,
                _ => self.refresh_if_clustered(),
            }
        }
        predefined?;
        Err(NetworkError::NotFound {
            name: name.to_string(),
        }
        .into())
    }

    /// Lists networks, with the containers running on them.
    pub fn list(&self) -> crate::Result<Vec<Network>> {
        self.ensure_predefined()?;
        self.refresh_if_clustered();
        let mut out = Vec::new();
        for record in self.load_networks()? {
            let endpoints = self.endpoints_of(&record.id)?;
            out.push(Network {
                record,
                endpoints,
                peers: None,
            });
        }
        Ok(out)
    }

    pub fn inspect(&self, name: &str) -> crate::Result<Network> {
        let record = self.find(name)?;
        let endpoints = self.endpoints_of(&record.id)?;
        let peers = record
            .overlay()
            .then(|| self.hosts_of(&record.id))
            .flatten();
        Ok(Network {
            record,
            endpoints,
            peers,
        })
    }

    /// `network create`: a bridge network with its own Linux bridge and subnet.
    pub fn create(&self, opts: &NetworkCreate) -> crate::Result<NetworkRecord> {
        self.ensure_predefined()?;
        // As Docker: any name but an empty one, one with a slash or a control character
        // (it names nothing on the host: the bridge is named by the network's ID).
        if opts.name.is_empty()
            || opts.name.len() > 255
            || opts.name.chars().any(|c| c == '/' || c.is_control())
        {
            return Err(invalid(format!(
                "invalid network name {:?}: a name must not be empty or hold a slash or a control character",
                opts.name
            )));
        }
        match opts.driver.as_deref().unwrap_or("bridge") {
            "bridge" => {
                if let Some(k) = opts.options.keys().next() {
                    return Err(invalid(format!(
                        "network option {k} is not supported: the bridge driver here reads no options"
                    )));
                }
            }
            "overlay" => return self.create_overlay(opts),
            "host" | "null" => {
                return Err(invalid(format!(
                    "only one instance of \"{}\" network is allowed",
                    opts.driver.as_deref().unwrap_or_default()
                )));
            }
            other => {
                return Err(invalid(format!(
                    "plugin \"{other}\" not found: ketch has the bridge and overlay drivers (host and null are predefined)"
                )));
            }
        }
        self.create_bridge(opts, None)
    }

    /// `network rm`: refused while a container runs on it, and for the predefined ones.
    pub fn remove(&self, name: &str) -> crate::Result<()> {
        let rec = self.find(name)?;
        if rec.predefined() {
            return Err(NetworkError::Predefined { name: rec.name }.into());
        }
        if !self.endpoints_of(&rec.id)?.is_empty() {
            return Err(NetworkError::InUse {
                name: rec.name,
                id: rec.id,
            }
            .into());
        }
        if rec.overlay() {
            return self.remove_overlay(&rec);
        }
        // Devices and rules first: a kill in between leaves a network whose bridge comes
        // back at its next use, never a bridge no record names.
        self.delete_bridge(&rec)?;
        self.st.db.write(|tx| {
            tx.execute("DELETE FROM networks WHERE id = ?1", params![rec.id])?;
            Ok::<_, crate::Error>(())
        })?;
        let _ = std::fs::remove_file(self.dns_records_path(&rec.id));
        self.event("destroy", &rec);
        Ok(())
    }

    /// `network prune`: removes the user-defined networks no container (running or not)
    /// is connected to (`named` holds the names and IDs the containers' configurations
    /// give), then the bridges removed roots left on the host ([`owner`]; every open does
    /// it too, as best it can: here a failure is told).
    pub fn prune(&self, named: &std::collections::HashSet<String>) -> crate::Result<Vec<String>> {
        let mut removed = Vec::new();
        for rec in self.load_networks()? {
            // An overlay network is the cluster's: stopped containers on other hosts may
            // name it, which this host cannot see.
            if rec.predefined()
                || rec.overlay()
                || named.contains(&rec.name)
                || named.contains(&rec.id)
            {
                continue;
            }
            match self.remove(&rec.id) {
                Ok(()) => removed.push(rec.name),
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::NotFound | ErrorKind::FailedPrecondition
                    ) => {}
                Err(e) => return Err(e),
            }
        }
        self.sweep_bridges()?;
        Ok(removed)
    }
}

/// Where a container's monitor serves names in the container's namespace; 127.0.0.11:53 is
/// redirected there (the container's programs keep port 53 for themselves).
pub const DNS_PORT: u16 = 53953;

#[cfg(test)]
mod engine_tests;
#[cfg(test)]
mod failure_tests;

#[cfg(test)]
mod tests {
    use super::endpoint::{mac_for, mac_string};
    use super::*;

    /// One holder at a time: a second taker waits until the first lets go, then has it.
    #[test]
    fn the_host_lock_is_held_by_one_at_a_time() {
        let first = HostLock::take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let second = HostLock::take();
            tx.send(()).unwrap();
            second.map(drop)
        });
        assert!(
            rx.recv_timeout(std::time::Duration::from_millis(200))
                .is_err(),
            "taken, or given up on, while held"
        );
        drop(first);
        rx.recv_timeout(std::time::Duration::from_secs(30))
            .expect("taken once let go");
        waiter.join().unwrap().unwrap();
    }

    /// A lock held too long is given up on, with the error that says so.
    #[test]
    fn a_taker_gives_up_at_its_deadline() {
        let held = HostLock::take().unwrap();
        let start = std::time::Instant::now();
        let err = HostLock::take_within(std::time::Duration::from_millis(50))
            .map(drop)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(start.elapsed() >= std::time::Duration::from_millis(50));
        drop(held);
    }

    #[test]
    fn macs_are_dockers_for_the_address() {
        let mac = mac_for(Ipv4Addr::new(172, 17, 0, 2));
        assert_eq!(mac, [0x02, 0x42, 172, 17, 0, 2]);
        assert_eq!(mac_string(mac), "02:42:ac:11:00:02");
        assert_eq!(mac_string([0, 1, 2, 0xa, 0xff, 0x10]), "00:01:02:0a:ff:10");
    }
}
