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

pub mod firewall;
pub mod netlink;
pub mod netns;
pub(crate) mod owner;
pub use crate::ipnet as subnet;

use std::collections::BTreeMap;
use std::io;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::error::ErrorKind;
use crate::state::State;
use netlink::Netlink;
use subnet::Subnet;

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
    #[error("no available IPv4 addresses on network {name}")]
    AddressesExhausted { name: String },
    #[error("Address already in use: {ip} on network {name}")]
    AddressInUse { ip: Ipv4Addr, name: String },
    #[error(
        "bridge {bridge} {reason}: give this root a bridge of its own (--bridge, KETCH_BRIDGE)"
    )]
    BridgeOwned { bridge: String, reason: String },
    /// Neither nftables nor iptables is here to isolate a bridge network with.
    #[error("{reason}")]
    NoFirewall { reason: String },
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
            NetworkError::Invalid { .. } => ErrorKind::InvalidArgument,
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
}

impl NetworkRecord {
    fn subnet(&self) -> Option<Subnet> {
        self.subnet.as_deref().and_then(|s| s.parse().ok())
    }

    fn gateway(&self) -> Option<Ipv4Addr> {
        self.gateway.as_deref().and_then(|g| g.parse().ok())
    }

    pub fn predefined(&self) -> bool {
        matches!(self.name.as_str(), "bridge" | "host" | "none")
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
    pub aliases: Vec<String>,
}

/// A network and the containers on it, for `network inspect` and `network ls`.
#[derive(Debug, Clone)]
pub struct Network {
    pub record: NetworkRecord,
    pub endpoints: Vec<Endpoint>,
}

impl Network {
    /// The Docker Engine API's shape; `names` maps container IDs to names.
    pub fn resource(&self, names: &BTreeMap<String, String>) -> crate::model::NetworkResource {
        use crate::model::{Ipam, IpamConfig, NetworkContainer, NetworkResource};
        let r = &self.record;
        // Options are what the network was made with, as Docker shows them: the default
        // network names its bridge; a user network (no driver options here) has none, which
        // Compose compares with its own file's.
        let mut options = BTreeMap::new();
        if r.driver == "bridge" && r.predefined() {
            options.insert("com.docker.network.bridge.name".into(), r.bridge.clone());
        }
        NetworkResource {
            name: r.name.clone(),
            id: r.id.clone(),
            created: r.created.clone(),
            scope: "local".into(),
            driver: r.driver.clone(),
            enable_ipv6: false,
            ipam: Ipam {
                driver: "default".into(),
                config: r
                    .subnet
                    .iter()
                    .map(|s| IpamConfig {
                        subnet: s.clone(),
                        gateway: r.gateway.clone().unwrap_or_default(),
                        ip_range: r.ip_range.clone(),
                    })
                    .collect(),
                options: BTreeMap::new(),
            },
            internal: r.internal,
            attachable: false,
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
                            ipv6_address: String::new(),
                        },
                    )
                })
                .collect(),
            options,
            labels: r.labels.clone(),
        }
    }
}

/// Holds a host-wide lock while new subnets are chosen and their bridges made, so engines
/// on other state roots never pick the same free subnet at once. An abstract UNIX socket:
/// bound by one process at a time, gone when it exits, nothing left on disk.
struct HostLock(#[allow(dead_code)] std::os::unix::net::UnixListener);

impl HostLock {
    fn take() -> io::Result<HostLock> {
        Self::take_within(std::time::Duration::from_secs(60))
    }

    /// [`HostLock::take`], giving up with `AddrInUse` after `wait`.
    fn take_within(wait: std::time::Duration) -> io::Result<HostLock> {
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
fn there_already_is_fine(made: io::Result<()>) -> io::Result<()> {
    match made {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        other => other,
    }
}

/// Docker's MAC for an address: 02:42 and the four address bytes.
fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

fn mac_string(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Host ports for `ports`: those asked for, and for `0` one the kernel has free now.
fn resolve_ports(ports: &[firewall::PortMap]) -> crate::Result<Vec<firewall::PortMap>> {
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

/// What a container's record (written by the containers, in the database) says of the
/// names it goes by on its networks: its name and ID, the aliases on the network its mode
/// names (unless it left it), and those on the networks it was connected to.
#[derive(Deserialize)]
struct Named {
    id: String,
    name: String,
    config: Naming,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Naming {
    network_aliases: Vec<String>,
    extra_networks: Vec<NetworkAttachment>,
    network_detached: bool,
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
    pub(crate) fn netns_path(&self, container_id: &str) -> PathBuf {
        self.st.root.join("netns").join(container_id)
    }

    /// The names of a user-defined network's containers, for their name servers.
    pub(crate) fn dns_records_path(&self, network_id: &str) -> PathBuf {
        self.st.root.join("dns").join(network_id)
    }

    /// What the container's record says of the names it goes by on its networks (`None`:
    /// it is gone).
    fn naming_of(&self, container_id: &str) -> crate::Result<Option<Named>> {
        let json: Option<String> = self.st.db.read(|tx| {
            Ok::<_, crate::Error>(
                tx.query_row(
                    "SELECT config FROM containers WHERE id = ?1",
                    params![container_id],
                    |r| r.get(0),
                )
                .optional()?,
            )
        })?;
        Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
    }

    /// Rewrites a network's records file (`IP NAME SHORT-ID ALIAS...` per running
    /// container), atomically: the monitors re-read it when it changes.
    fn write_dns_records(&self, network_id: &str) -> crate::Result<()> {
        let mut text = String::new();
        for ep in self.endpoints_of(network_id)? {
            let Some(c) = self.naming_of(&ep.container_id)? else {
                continue;
            };
            text.push_str(&format!("{} {} {}", ep.ip, c.name, &c.id[..12]));
            let extra = c
                .config
                .extra_networks
                .iter()
                .find(|a| a.network == ep.network || a.network == ep.network_id);
            // The mode's network may be named by an ID prefix: its aliases are the others'.
            let aliases = match extra {
                Some(a) => &a.aliases,
                None if !c.config.network_detached => &c.config.network_aliases,
                None => &Vec::new(),
            };
            for a in aliases {
                text.push(' ');
                text.push_str(a);
            }
            text.push('\n');
        }
        let path = self.dns_records_path(network_id);
        let dir = self.st.root.join("dns");
        std::fs::create_dir_all(&dir).map_err(io_err(format!("create {}", dir.display())))?;
        let tmp = dir.join(format!(".{network_id}.{}", std::process::id()));
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(io_err(format!("write {}", path.display())))
    }

    /// Makes the predefined networks `bridge`, `host` and `none` if this root has none yet.
    fn ensure_predefined(&self) -> crate::Result<()> {
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
    pub(crate) fn find(&self, name: &str) -> crate::Result<NetworkRecord> {
        let predefined = self.ensure_predefined();
        let all = self.load_networks()?;
        if let Some(n) = all.iter().find(|n| n.id == name || n.name == name) {
            return Ok(n.clone());
        }
        let by_prefix: Vec<&NetworkRecord> =
            all.iter().filter(|n| n.id.starts_with(name)).collect();
        match by_prefix.as_slice() {
            [one] if !name.is_empty() => Ok((*one).clone()),
            _ => {
                predefined?;
                Err(NetworkError::NotFound {
                    name: name.to_string(),
                }
                .into())
            }
        }
    }

    pub(crate) fn endpoints_of(&self, network_id: &str) -> crate::Result<Vec<Endpoint>> {
        self.endpoints_where("network_id", network_id)
    }

    /// Endpoints whose `column` (`network_id` or `container_id`) is `value`.
    fn endpoints_where(&self, column: &str, value: &str) -> crate::Result<Vec<Endpoint>> {
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

    /// Lists networks, with the containers running on them.
    pub fn list(&self) -> crate::Result<Vec<Network>> {
        self.ensure_predefined()?;
        let mut out = Vec::new();
        for record in self.load_networks()? {
            let endpoints = self.endpoints_of(&record.id)?;
            out.push(Network { record, endpoints });
        }
        Ok(out)
    }

    pub fn inspect(&self, name: &str) -> crate::Result<Network> {
        let record = self.find(name)?;
        let endpoints = self.endpoints_of(&record.id)?;
        Ok(Network { record, endpoints })
    }

    /// `network create`: a bridge network with its own Linux bridge and subnet.
    pub fn create(&self, opts: &NetworkCreate) -> crate::Result<NetworkRecord> {
        self.ensure_predefined()?;
        if !crate::util::valid_name(&opts.name) {
            return Err(invalid(format!(
                "invalid network name {:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed",
                opts.name
            )));
        }
        match opts.driver.as_deref().unwrap_or("bridge") {
            "bridge" => {}
            "host" | "null" => {
                return Err(invalid(format!(
                    "only one instance of \"{}\" network is allowed",
                    opts.driver.as_deref().unwrap_or_default()
                )));
            }
            other => {
                return Err(invalid(format!(
                    "plugin \"{other}\" not found: ketch has the bridge driver (host and null are predefined)"
                )));
            }
        }
        self.create_bridge(opts, None)
    }

    fn create_bridge(
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
        let requested: Option<Subnet> = opts
            .subnet
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(invalid)?;
        let ip_range: Option<Subnet> = opts
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
        if requested.is_none() && (ip_range.is_some() || gateway.is_some()) {
            return Err(invalid("--ip-range and --gateway need --subnet"));
        }
        if let (Some(s), Some(r)) = (requested, ip_range)
            && !s.contains_subnet(&r)
        {
            return Err(invalid(format!("ip-range {r} is not within subnet {s}")));
        }
        if let (Some(s), Some(g)) = (requested, gateway)
            && !s.contains(g)
        {
            return Err(invalid(format!("gateway {g} is not within subnet {s}")));
        }
        // Choosing a subnet and claiming it with the bridge's address is one step for every
        // engine on this host.
        let lock = HostLock::take().map_err(io_err("take the host's network lock"))?;
        let taken: Vec<Subnet> = self
            .load_networks()?
            .iter()
            .filter_map(NetworkRecord::subnet)
            .collect();
        let subnet = match requested {
            Some(s) => {
                if let Some(t) = taken.iter().find(|t| t.overlaps(&s)) {
                    return Err(invalid(format!(
                        "Pool overlaps with other one on this address space: {s} overlaps {t}"
                    )));
                }
                s
            }
            None => {
                let routed = subnet::host_routes();
                self.st
                    .address_pools
                    .iter()
                    .flat_map(|(pool, prefix)| pool.split(*prefix).collect::<Vec<_>>())
                    .find(|s| !taken.iter().chain(&routed).any(|t| t.overlaps(s)))
                    .ok_or(NetworkError::PoolsExhausted)?
            }
        };
        let gateway = gateway
            .or_else(|| subnet.nth(1))
            .ok_or_else(|| invalid(format!("subnet {subnet} has no room for a gateway")))?;
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
    fn ensure_bridge(&self, rec: &NetworkRecord, held: Option<&HostLock>) -> crate::Result<()> {
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
            nl.set_link(index, None, None)
                .map_err(io_err(format!("set {} up", rec.bridge)))?;
            if made {
                firewall::create(&rec.bridge, subnet, rec.internal)
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
            let path = "/proc/sys/net/ipv4/ip_forward";
            if std::fs::read_to_string(path).is_ok_and(|v| v.trim() == "0") {
                std::fs::write(path, "1").map_err(io_err(format!("write {path}")))?;
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
            if rec.predefined() || named.contains(&rec.name) || named.contains(&rec.id) {
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
            // The first network gets the default route and the published ports.
            let mut eps = Vec::new();
            for (i, a) in networks.iter().enumerate() {
                let ip = a.ip.as_deref().map(|s| {
                    s.parse()
                        .map_err(|_| invalid(format!("invalid IPv4 address: {s}")))
                });
                let first = i == 0;
                eps.push(self.plug(
                    container_id,
                    &a.network,
                    ip.transpose()?,
                    if first { ports } else { &[] },
                    &format!("eth{i}"),
                    first,
                )?);
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
        static_ip: Option<Ipv4Addr>,
        ports: &[firewall::PortMap],
        iface: &str,
        route: bool,
    ) -> crate::Result<Endpoint> {
        let rec = self.find(network)?;
        if !ports.is_empty() && !firewall::available() {
            return Err(invalid(
                "publishing ports needs nftables or iptables, and neither is installed",
            ));
        }
        if rec.driver != "bridge" {
            return Err(invalid(format!(
                "container cannot be attached to network {} (driver {})",
                rec.name, rec.driver
            )));
        }
        self.ensure_bridge(&rec, None)?;
        let mut ep = self.allocate(&rec, container_id, static_ip)?;
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
            nl.add_veth(&ep.veth, iface, ns.as_raw_fd(), 1500)
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
            let route = route && !rec.internal;
            let name = iface.to_string();
            netns::within(&path, move || {
                let nl = Netlink::open()?;
                if let Some(lo) = nl.link_index("lo")? {
                    nl.set_link(lo, None, None)?;
                }
                let index = nl
                    .link_index(&name)?
                    .ok_or_else(|| io::Error::other(format!("{name} is missing")))?;
                nl.set_link(index, None, Some(mac_for(ip)))?;
                nl.add_addr(index, ip, prefix)?;
                if let (Some(gw), true) = (gateway, route) {
                    nl.add_default_route(gw)?;
                }
                Ok(())
            })
            .map_err(io_err(format!(
                "configure {iface} of container {container_id}"
            )))?;
            firewall::publish(&rec.bridge, ep.ip, &ep.ports).map_err(|e| {
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
            let _ = firewall::withdraw(&rec.bridge, ep.ip, &ep.ports);
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
        if rec.is_some_and(|r| !r.predefined()) {
            self.write_dns_records(&ep.network_id)?;
        }
        Ok(())
    }

    /// Hands out an address on `rec`: the one asked for, or the lowest free one in the
    /// range, never the network, gateway or broadcast address. The `endpoints` table's
    /// unique (network, address) pair makes a double hand-out impossible across processes.
    fn allocate(
        &self,
        rec: &NetworkRecord,
        container_id: &str,
        static_ip: Option<Ipv4Addr>,
    ) -> crate::Result<Endpoint> {
        let subnet = rec
            .subnet()
            .ok_or_else(|| invalid(format!("network {} has no subnet", rec.name)))?;
        let range = rec
            .ip_range
            .as_deref()
            .and_then(|r| r.parse::<Subnet>().ok())
            .unwrap_or(subnet);
        let gateway = rec.gateway();
        if let Some(ip) = static_ip
            && (!subnet.contains(ip)
                || Some(ip) == gateway
                || u32::from(ip) == subnet.first()
                || u32::from(ip) == subnet.last())
        {
            return Err(invalid(format!(
                "invalid address {ip}: it is not a free host address of subnet {subnet}"
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
                        ip,
                        name: rec.name.clone(),
                    }
                    .into());
                }
                Some(ip) => ip,
                None => (range.first()..=range.last())
                    .map(Ipv4Addr::from)
                    .find(|ip| {
                        u32::from(*ip) != subnet.first()
                            && u32::from(*ip) != subnet.last()
                            && Some(*ip) != gateway
                            && !used.contains(&ip.to_string())
                    })
                    .ok_or_else(|| NetworkError::AddressesExhausted {
                        name: rec.name.clone(),
                    })?,
            };
            let ep = Endpoint {
                network_id: rec.id.clone(),
                network: rec.name.clone(),
                container_id: container_id.to_string(),
                ip,
                prefix: subnet.prefix,
                gateway,
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
                "INSERT INTO endpoints (network_id, container_id, ip, config) VALUES (?1, ?2, ?3, ?4)",
                params![rec.id, container_id, ip.to_string(), serde_json::to_string(&ep).unwrap_or_default()],
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
                let _ = firewall::withdraw(&rec.bridge, ep.ip, &ep.ports);
            }
        }
        self.st.db.write(|tx| {
            tx.execute(
                "DELETE FROM endpoints WHERE container_id = ?1",
                params![container_id],
            )?;
            Ok::<_, crate::Error>(())
        })?;
        for ep in held {
            if self.dns_records_path(&ep.network_id).exists() {
                self.write_dns_records(&ep.network_id)?;
            }
        }
        Ok(())
    }

    /// The endpoints a container holds now.
    pub fn container_endpoints(&self, container_id: &str) -> crate::Result<Vec<Endpoint>> {
        self.endpoints_where("container_id", container_id)
    }
}

/// Where a container's monitor serves names in the container's namespace; 127.0.0.11:53 is
/// redirected there (the container's programs keep port 53 for themselves).
pub const DNS_PORT: u16 = 53953;

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

#[cfg(test)]
mod engine_tests;

#[cfg(test)]
mod tests {
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
