//! Networks on an engine of their own: what `network create` takes and refuses, how
//! addresses are handed out, a container's namespace plugged into a real bridge and let go,
//! and connect, disconnect, remove and prune on containers that are not running.

use std::process::Command;

use super::endpoint::{mac_for, mac_string, resolve_ports};

/// What `network connect` gives: the network, an address, aliases.
fn endpoint(network: &str, ip: Option<&str>, aliases: &[&str]) -> NetworkAttachment {
    NetworkAttachment {
        network: network.into(),
        ip: ip.map(String::from),
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
        ..Default::default()
    }
}
use super::*;
use crate::engine::Engine;
use crate::runtime::CreateOptions;
use crate::testutil::{ScratchEngine, scratch_engine};

/// [`crate::runtime::Containers::attach_networks`] to one network; its endpoint.
pub(super) fn attach(
    e: &Engine,
    id: &str,
    network: &str,
    ip: Option<Ipv4Addr>,
    ports: &[firewall::PortMap],
) -> crate::Result<Endpoint> {
    let a = NetworkAttachment {
        network: network.into(),
        ip: ip.map(|i| i.to_string()),
        ..Default::default()
    };
    Ok(e.containers().attach_networks(id, &[a], ports)?.remove(0))
}

/// A /24 of 10.200.0.0/13 that no network of this host should hold: the next after a
/// random one, so that no two of one test (one process) are the same.
pub(super) fn random_subnet() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: std::sync::OnceLock<AtomicU32> = std::sync::OnceLock::new();
    let next = NEXT.get_or_init(|| {
        AtomicU32::new(u32::from_str_radix(&crate::util::random_hex(4), 16).unwrap())
    });
    let n = next.fetch_add(1, Ordering::Relaxed) % 2048;
    format!("10.{}.{}.0/24", 200 + n / 256, n % 256)
}

pub(super) fn create(e: &Engine, name: &str, subnet: Option<&str>) -> crate::Result<NetworkRecord> {
    e.networks().create(&NetworkCreate {
        name: name.into(),
        subnet: subnet.map(str::to_string),
        ..Default::default()
    })
}

pub(super) fn refused(e: &Engine, opts: NetworkCreate, want: &str) {
    let err = e.networks().create(&opts).expect_err(want).to_string();
    assert!(err.contains(want), "{err} (want {want:?})");
}

/// A container (created, never started) on `network`.
pub(super) fn container(e: &Engine, name: &str, network: &str) -> String {
    container_with(
        e,
        CreateOptions {
            name: Some(name.into()),
            network: Some(network.into()),
            ..Default::default()
        },
    )
}

pub(super) fn container_with(e: &Engine, opts: CreateOptions) -> String {
    crate::testutil::created_container(e, opts)
}

/// `ip ARGS` in the network namespace at `path`.
pub(super) fn ip_in(path: &std::path::Path, args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    netns::within(path, move || {
        let out = Command::new("ip").args(&args).output()?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    })
    .unwrap()
}

/// Whether the bridge's own nftables table is there.
pub(super) fn table_exists(bridge: &str) -> bool {
    Command::new("nft")
        .args(["list", "table", "ip", &firewall::table(bridge)])
        .output()
        .unwrap()
        .status
        .success()
}

pub(super) fn link_exists(name: &str) -> bool {
    Netlink::open().unwrap().link_index(name).unwrap().is_some()
}

pub(super) fn engine() -> ScratchEngine {
    scratch_engine()
}

#[test]
fn create_refuses_what_docker_refuses() {
    let e = engine();
    let subnet = random_subnet();
    let s: Subnet = subnet.parse().unwrap();
    let opts = |f: &dyn Fn(&mut NetworkCreate)| {
        let mut o = NetworkCreate {
            name: "n".into(),
            subnet: Some(subnet.clone()),
            ..Default::default()
        };
        f(&mut o);
        o
    };
    refused(
        &e,
        opts(&|o| o.name = "a/b".into()),
        "invalid network name \"a/b\"",
    );
    refused(
        &e,
        opts(&|o| o.driver = Some("host".into())),
        "only one instance of \"host\" network is allowed",
    );
    refused(
        &e,
        opts(&|o| o.driver = Some("macvlan".into())),
        "plugin \"macvlan\" not found",
    );
    // An overlay network needs a cluster, which this engine is not in.
    refused(
        &e,
        opts(&|o| o.driver = Some("overlay".into())),
        "--cluster-store etcd://",
    );
    refused(
        &e,
        opts(&|o| o.subnet = Some("10.0.0.0/33".into())),
        "10.0.0.0/33",
    );
    refused(
        &e,
        opts(&|o| o.gateway = Some("gw".into())),
        "invalid gateway address: gw",
    );
    refused(
        &e,
        opts(&|o| {
            o.subnet = None;
            o.gateway = Some("10.0.0.1".into());
        }),
        "--ip-range and --gateway need --subnet",
    );
    refused(
        &e,
        opts(&|o| {
            o.subnet = None;
            o.ip_range = Some("10.0.0.0/30".into());
        }),
        "--ip-range and --gateway need --subnet",
    );
    refused(
        &e,
        opts(&|o| o.ip_range = Some("10.0.0.0/30".into())),
        &format!("ip-range 10.0.0.0/30 is not within subnet {s}"),
    );
    refused(
        &e,
        opts(&|o| o.gateway = Some("10.0.0.1".into())),
        &format!("gateway 10.0.0.1 is not within subnet {s}"),
    );
    // Nothing of the refused ones was made.
    assert_eq!(e.network_list().unwrap().len(), 3);

    let rec = create(&e, "n", Some(&subnet)).unwrap();
    assert!(link_exists(&rec.bridge));
    assert!(table_exists(&rec.bridge));
    let err = create(&e, "n", Some(&random_subnet())).unwrap_err();
    assert!(
        matches!(err.downcast_ref(), Some(NetworkError::NameInUse { .. })),
        "{err}"
    );
    // A subnet inside one taken overlaps it.
    let inner = format!("{}/25", s.nth(0).unwrap());
    refused(
        &e,
        opts(&|o| {
            o.name = "m".into();
            o.subnet = Some(inner.clone());
        }),
        &format!("Pool overlaps with other one on this address space: {inner} overlaps {s}"),
    );
}

#[test]
fn create_takes_a_free_subnet_or_the_one_given() {
    let e = engine();
    let a = create(&e, "a", None).unwrap();
    let b = create(&e, "b", None).unwrap();
    let bridge = e.networks().find("bridge").unwrap();
    let subnets: Vec<Subnet> = [&bridge, &a, &b]
        .iter()
        .map(|r| r.subnet().unwrap())
        .collect();
    for (i, s) in subnets.iter().enumerate() {
        for t in &subnets[i + 1..] {
            assert!(!s.overlaps(t), "{s} and {t}");
        }
        // Nor a route of the host's.
        assert!(
            !subnet::host_routes()
                .iter()
                .any(|r| r.overlaps(s) && r.prefix > 0 && !subnets.contains(r)),
            "{s}"
        );
    }
    assert_eq!(a.gateway(), a.subnet().unwrap().nth(1));
    assert_eq!(a.bridge, format!("br-{}", &a.id[..12]));

    // Given: subnet, range, gateway, labels, internal.
    let subnet = random_subnet();
    let s: Subnet = subnet.parse().unwrap();
    let range = format!("{}/28", s.nth(16).unwrap());
    let gw = s.nth(254).unwrap().to_string();
    let c = e
        .networks()
        .create(&NetworkCreate {
            name: "c".into(),
            subnet: Some(subnet.clone()),
            ip_range: Some(range.clone()),
            gateway: Some(gw.clone()),
            internal: true,
            labels: vec![("k".into(), "v".into())],
            ..Default::default()
        })
        .unwrap();
    let net = e.network_inspect(&c.id[..8]).unwrap();
    let r = net.resource(&BTreeMap::new());
    assert_eq!(r.name, "c");
    assert_eq!(r.driver, "bridge");
    assert!(r.internal);
    assert_eq!(r.labels.get("k").map(String::as_str), Some("v"));
    assert_eq!(r.ipam.config.len(), 1);
    assert_eq!(r.ipam.config[0].subnet, subnet);
    assert_eq!(r.ipam.config[0].gateway, gw);
    assert_eq!(r.ipam.config[0].ip_range.as_deref(), Some(range.as_str()));
    assert!(r.options.is_empty(), "{:?}", r.options);
    let default = e.network_inspect("bridge").unwrap();
    assert_eq!(
        default
            .resource(&BTreeMap::new())
            .options
            .get("com.docker.network.bridge.name"),
        Some(&default.record.bridge)
    );
    let addrs = Command::new("ip")
        .args(["-o", "-4", "addr", "show", "dev", &c.bridge])
        .output()
        .unwrap();
    let addrs = String::from_utf8_lossy(&addrs.stdout);
    assert!(addrs.contains(&format!("inet {gw}/24")), "{addrs}");
    // host and none have no bridge and no address.
    let host = e
        .network_inspect("host")
        .unwrap()
        .resource(&BTreeMap::new());
    assert!(host.options.is_empty() && host.ipam.config.is_empty());
}

#[test]
fn networks_are_found_by_id_name_or_unique_prefix() {
    let e = engine();
    let n = create(&e, "found", Some(&random_subnet())).unwrap();
    for name in [n.id.as_str(), "found", &n.id[..12], &n.id[..3]] {
        assert_eq!(e.networks().find(name).unwrap().id, n.id, "{name}");
    }
    for name in ["", "lost", &format!("{}x", &n.id[..12])] {
        let err = e.networks().find(name).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{name:?}: {err}");
    }
    // The first digit of two IDs names neither; with four networks, some digit is shared.
    let mut ids: Vec<String> = e
        .networks()
        .load_networks()
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    while !ids
        .iter()
        .any(|i| ids.iter().filter(|j| j[..1] == i[..1]).count() > 1)
    {
        ids.push(
            create(&e, &format!("n{}", ids.len()), Some(&random_subnet()))
                .unwrap()
                .id,
        );
    }
    let shared = ids
        .iter()
        .find(|i| ids.iter().filter(|j| j[..1] == i[..1]).count() > 1)
        .unwrap();
    assert!(e.networks().find(&shared[..1]).is_err());
}

#[test]
fn addresses_are_the_lowest_free_hosts_of_the_range() {
    let e = engine();
    let subnet = random_subnet();
    let s: Subnet = subnet.parse().unwrap();
    let small = format!("{}/29", s.nth(0).unwrap());
    let rec = create(&e, "small", Some(&small)).unwrap();
    let at = |n: u32| s.nth(n).unwrap();
    let take =
        |c: &str, ip: Option<Ipv4Addr>| e.networks().allocate(&rec, c, ip, None).map(|ep| ep.ip);
    let bad = |ip: Ipv4Addr| {
        let err = take("bad", Some(ip)).unwrap_err().to_string();
        assert!(err.contains(&format!("invalid address {ip}")), "{err}");
    };
    // Network, gateway, broadcast and outside addresses are never given.
    bad(at(0));
    bad(at(1));
    bad(at(7));
    bad(at(8));
    assert_eq!(take("c2", None).unwrap(), at(2));
    assert_eq!(take("c5", Some(at(5))).unwrap(), at(5));
    let err = take("again", Some(at(5))).unwrap_err();
    assert!(
        matches!(
            err.downcast_ref(),
            Some(NetworkError::AddressInUse { ip, .. }) if *ip == at(5)
        ),
        "{err}"
    );
    assert_eq!(take("c3", None).unwrap(), at(3));
    assert_eq!(take("c4", None).unwrap(), at(4));
    assert_eq!(take("c6", None).unwrap(), at(6));
    let err = take("c7", None).unwrap_err();
    assert!(
        matches!(
            err.downcast_ref(),
            Some(NetworkError::AddressesExhausted { .. })
        ),
        "{err}"
    );
    let held = e.networks().endpoints_of(&rec.id).unwrap();
    assert_eq!(held.len(), 5);
    let c2 = held.iter().find(|ep| ep.container_id == "c2").unwrap();
    assert_eq!(c2.prefix, 29);
    assert_eq!(c2.gateway, Some(at(1)));
    assert_eq!(c2.mac, mac_string(mac_for(at(2))));
    assert_eq!(c2.network, "small");

    // A range: its own first and last addresses are hosts of the subnet.
    let ranged = e
        .networks()
        .create(&NetworkCreate {
            name: "ranged".into(),
            subnet: Some(format!("{}/28", at(16))),
            ip_range: Some(format!("{}/30", at(20))),
            ..Default::default()
        })
        .unwrap();
    let got: Vec<Ipv4Addr> = (0..4)
        .map(|i| {
            e.networks()
                .allocate(&ranged, &format!("r{i}"), None, None)
                .unwrap()
                .ip
        })
        .collect();
    assert_eq!(got, [at(20), at(21), at(22), at(23)]);
    assert!(e.networks().allocate(&ranged, "r4", None, None).is_err());
    // An address outside the range, inside the subnet, may still be asked for.
    assert_eq!(
        e.networks()
            .allocate(&ranged, "r5", Some(at(30)), None)
            .unwrap()
            .ip,
        at(30)
    );
}

#[test]
fn attach_plugs_the_namespace_into_the_bridge_and_release_takes_it_away() {
    let e = engine();
    let subnet = random_subnet();
    let s: Subnet = subnet.parse().unwrap();
    let rec = create(&e, "plugged", Some(&subnet)).unwrap();
    let other = create(&e, "other", Some(&random_subnet())).unwrap();
    // Names on each network: its aliases there.
    let id = container_with(
        &e,
        CreateOptions {
            name: Some("web".into()),
            network: Some("plugged".into()),
            network_aliases: vec!["www".into()],
            extra_networks: vec![NetworkAttachment {
                network: "other".into(),
                ip: None,
                aliases: vec!["backend".into()],
                ..Default::default()
            }],
            ..Default::default()
        },
    );
    let ip = s.nth(9).unwrap();
    let ep = attach(&e, &id, "plugged", Some(ip), &[]).unwrap();
    assert_eq!((ep.ip, ep.iface.as_str()), (ip, "eth0"));
    let ns = e.networks().netns_path(&id);
    let addr = ip_in(&ns, &["-o", "-4", "addr", "show", "dev", "eth0"]);
    assert!(addr.contains(&format!("inet {ip}/24")), "{addr}");
    let link = ip_in(&ns, &["-o", "link", "show", "dev", "eth0"]);
    assert!(link.contains(&ep.mac) && link.contains("UP"), "{link}");
    let lo = ip_in(&ns, &["-o", "link", "show", "dev", "lo"]);
    assert!(lo.contains("UP"), "{lo}");
    let route = ip_in(&ns, &["route", "show", "default"]);
    assert!(
        route.contains(&format!("default via {}", s.nth(1).unwrap())),
        "{route}"
    );
    // The host end is on the bridge.
    let host_end = Command::new("ip")
        .args(["-o", "link", "show", "dev", &ep.veth])
        .output()
        .unwrap();
    let host_end = String::from_utf8_lossy(&host_end.stdout);
    assert!(
        host_end.contains(&format!("master {}", rec.bridge)),
        "{host_end}"
    );
    // A second network, as `network connect` adds it: eth1, no default route.
    let ep1 = e
        .networks()
        .plug(&id, &other.id, Given::default(), &[], "eth1", false)
        .unwrap();
    assert_eq!(ep1.ip, other.subnet().unwrap().nth(2).unwrap());
    let routes = ip_in(&ns, &["route", "show", "default"]);
    assert_eq!(routes.lines().count(), 1, "{routes}");
    // The name server's records on a user-defined network.
    let records = std::fs::read_to_string(e.networks().dns_records_path(&rec.id)).unwrap();
    assert_eq!(records, format!("{ip} web {} www\n", &id[..12]));
    let records = std::fs::read_to_string(e.networks().dns_records_path(&other.id)).unwrap();
    assert_eq!(records, format!("{} web {} backend\n", ep1.ip, &id[..12]));
    // Its name server reads both networks' records, and 127.0.0.11:53 leads to it.
    let bundle = tempfile::tempdir().unwrap();
    e.containers().write_dns_list(&id, bundle.path()).unwrap();
    let mut listed: Vec<String> = std::fs::read_to_string(bundle.path().join("dns.list"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    listed.sort();
    let mut want = vec![
        e.networks().dns_records_path(&rec.id).display().to_string(),
        e.networks()
            .dns_records_path(&other.id)
            .display()
            .to_string(),
    ];
    want.sort();
    assert_eq!(listed, want);
    let redirect = netns::within(&ns, || {
        let out = Command::new("nft")
            .args(["list", "table", "ip", "ketch_dns"])
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    })
    .unwrap();
    assert!(
        redirect.contains(&format!("dnat to 127.0.0.11:{DNS_PORT}")),
        "{redirect}"
    );
    // A network with a container starting on it is in use.
    let err = e.network_remove("plugged").unwrap_err();
    assert!(
        matches!(err.downcast_ref(), Some(NetworkError::InUse { .. })),
        "{err}"
    );
    assert_eq!(e.network_inspect("plugged").unwrap().endpoints.len(), 1);

    e.networks().unplug(&ep1).unwrap();
    assert!(!link_exists(&ep1.veth));
    assert_eq!(
        std::fs::read_to_string(e.networks().dns_records_path(&other.id)).unwrap(),
        ""
    );
    assert_eq!(e.networks().container_endpoints(&id).unwrap().len(), 1);
    e.networks().release_endpoints(&id).unwrap();
    assert!(!ns.exists());
    assert!(e.networks().container_endpoints(&id).unwrap().is_empty());
    // The kernel takes the veth pair with the namespace, in its own time.
    let gone = (0..200).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(10));
        !link_exists(&ep.veth)
    });
    assert!(gone, "{} is left", ep.veth);
    assert_eq!(
        std::fs::read_to_string(e.networks().dns_records_path(&rec.id)).unwrap(),
        ""
    );
    e.network_remove("plugged").unwrap();
    assert!(!link_exists(&rec.bridge));
    assert!(!table_exists(&rec.bridge));
    assert!(!e.networks().dns_records_path(&rec.id).exists());
    assert!(e.networks().find("plugged").is_err());
}

#[test]
fn connect_and_disconnect_change_what_a_stopped_container_joins() {
    let e = engine();
    let one = create(&e, "one", Some(&random_subnet())).unwrap();
    create(&e, "two", Some(&random_subnet())).unwrap();
    let id = container(&e, "c", "one");
    let config = || e.containers().get(&id).unwrap().record.config;
    let invalid = |r: crate::Result<()>, want: &str| {
        let err = r.expect_err(want).to_string();
        assert!(err.contains(want), "{err} (want {want:?})");
    };
    invalid(
        e.containers().connect(&id, &endpoint("one", None, &[])),
        "endpoint with name c already exists in network one",
    );
    invalid(
        e.containers().connect(&id, &endpoint("host", None, &[])),
        "cannot be connected to network host (driver host)",
    );
    invalid(
        e.containers()
            .connect(&id, &endpoint("two", Some("ten"), &[])),
        "invalid IPv4 address: ten",
    );
    invalid(
        e.containers()
            .connect(&id, &endpoint("bridge", Some("10.0.0.9"), &[])),
        "user specified IP address is supported on user defined networks only",
    );
    e.containers()
        .connect(&id, &endpoint("two", Some("10.9.9.9"), &["db"]))
        .unwrap();
    assert_eq!(
        config().extra_networks,
        [NetworkAttachment {
            network: "two".into(),
            ip: Some("10.9.9.9".into()),
            aliases: vec!["db".into()],
            ..Default::default()
        }]
    );
    invalid(
        e.containers().connect(&id, &endpoint("two", None, &[])),
        "already exists in network two",
    );
    invalid(
        e.containers().disconnect("bridge", &id),
        "container c is not connected to network bridge",
    );
    // Prune leaves networks a container names, first or not.
    create(&e, "spare", Some(&random_subnet())).unwrap();
    assert_eq!(e.network_prune().unwrap(), ["spare"]);
    // Off the first network: the container keeps its mode (as Docker's NetworkMode) and is
    // on the other one only.
    e.containers().disconnect(&one.id, &id).unwrap();
    let c = config();
    assert_eq!(c.network.as_deref(), Some("one"));
    assert!(c.network_detached && c.ip.is_none());
    let names = |c: &CreateOptions| -> Vec<String> {
        c.attachments().into_iter().map(|a| a.network).collect()
    };
    assert_eq!(names(&c), ["two"]);
    invalid(
        e.containers().disconnect("one", &id),
        "container c is not connected to network one",
    );
    // Off the last: loopback only, and back on its own network as Compose does it.
    e.containers().disconnect("two", &id).unwrap();
    assert!(names(&config()).is_empty());
    e.containers()
        .connect(&id, &endpoint("one", None, &["web"]))
        .unwrap();
    let c = config();
    assert_eq!(c.network.as_deref(), Some("one"));
    assert_eq!(
        c.attachments(),
        [NetworkAttachment {
            network: "one".into(),
            ip: None,
            aliases: vec!["web".into()],
            ..Default::default()
        }]
    );
    e.containers().disconnect("one", &id).unwrap();
    let mut pruned = e.network_prune().unwrap();
    pruned.sort();
    assert_eq!(pruned, ["one", "two"]);
    assert_eq!(e.network_list().unwrap().len(), 3);

    // An extra network, disconnected, is dropped from the list alone.
    create(&e, "three", Some(&random_subnet())).unwrap();
    create(&e, "four", Some(&random_subnet())).unwrap();
    let id = container(&e, "d", "three");
    e.containers()
        .connect(&id, &endpoint("four", None, &[]))
        .unwrap();
    e.containers()
        .connect(&id, &endpoint("bridge", None, &[]))
        .unwrap();
    e.containers().disconnect("four", &id).unwrap();
    let c = e.containers().get(&id).unwrap().record.config;
    assert_eq!(c.network.as_deref(), Some("three"));
    let names: Vec<&str> = c
        .extra_networks
        .iter()
        .map(|a| a.network.as_str())
        .collect();
    assert_eq!(names, ["bridge"]);

    let host = container(&e, "h", "host");
    invalid(
        e.containers().connect(&host, &endpoint("three", None, &[])),
        "container cannot be disconnected from host network or connected to host network",
    );
    invalid(
        e.containers().disconnect("host", &host),
        "container cannot be disconnected from host network or connected to host network",
    );
}

#[test]
fn predefined_networks_stay() {
    let e = engine();
    for name in ["bridge", "host", "none"] {
        let err = e.network_remove(name).unwrap_err();
        assert!(
            matches!(err.downcast_ref(), Some(NetworkError::Predefined { .. })),
            "{name}: {err}"
        );
    }
    let names: Vec<String> = e
        .network_list()
        .unwrap()
        .into_iter()
        .map(|n| n.record.name)
        .collect();
    assert_eq!(names, ["bridge", "host", "none"]);
    assert!(e.network_prune().unwrap().is_empty());
    let bridge = e.networks().find("bridge").unwrap();
    assert!(bridge.predefined() && link_exists(&bridge.bridge));
    assert_eq!(bridge.bridge, e.networks().default_bridge());
}

/// Port 0 is a free host port of its own protocol: with one port left to choose from, taken
/// for TCP, a UDP port is that one, and the other way round. A port given stays.
#[test]
fn a_free_host_port_is_free_for_its_protocol() {
    let port = |proto: &str, host_port: u16| firewall::PortMap {
        proto: proto.into(),
        host_ip: Some(Ipv4Addr::LOCALHOST),
        host_port,
        container_port: 80,
    };
    let got = crate::testutil::in_own_netns(|| {
        std::fs::write("/proc/sys/net/ipv4/ip_local_port_range", "40000 40001")?;
        let _tcp = std::net::TcpListener::bind("127.0.0.1:40000")?;
        let _udp = std::net::UdpSocket::bind("127.0.0.1:40001")?;
        let udp = resolve_ports(&[port("udp", 0)]).map_err(|e| e.to_string());
        let tcp = resolve_ports(&[port("tcp", 0)]).map_err(|e| e.to_string());
        let given = resolve_ports(&[port("tcp", 8080), port("udp", 53)]).unwrap();
        Ok((udp, tcp, given))
    });
    assert_eq!(got.0.unwrap(), [port("udp", 40000)]);
    assert_eq!(got.1.unwrap(), [port("tcp", 40001)]);
    assert_eq!(got.2, [port("tcp", 8080), port("udp", 53)]);
}
