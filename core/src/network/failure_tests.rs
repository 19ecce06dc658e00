//! Networks when something goes wrong or is odd: endpoints whose containers are gone, what
//! the kernel refuses, forwarding, prune with a network in use, a host port taken, and the
//! host's own routes.

use std::process::Command;

use super::engine_tests::*;
use super::*;
use crate::engine::Engine;

/// An endpoint stays while its container runs or is starting (its maker alive); those of
/// containers gone, or whose starter died before they ran, are forgotten when looked at.
#[test]
fn endpoints_of_containers_gone_or_never_started_are_forgotten() {
    let e = engine();
    let rec = create(&e, "p", Some(&random_subnet())).unwrap();
    e.networks()
        .allocate(&rec, "no-such-container", None, None)
        .unwrap();
    let id = container(&e, "starting", "p");
    let ep = e.networks().allocate(&rec, &id, None, None).unwrap();
    let held = |e: &Engine| -> Vec<String> {
        e.network_inspect("p")
            .unwrap()
            .endpoints
            .into_iter()
            .map(|ep| ep.container_id)
            .collect()
    };
    assert_eq!(held(&e), std::slice::from_ref(&id));
    // Its maker: this process's PID, but a start time that is not this process's.
    let dead = Endpoint {
        owner: (std::process::id(), 1),
        ..ep.clone()
    };
    let set_owner = |ep: &Endpoint| {
        e.state()
            .db
            .write(|tx| {
                tx.execute(
                    "UPDATE endpoints SET config = ?1 WHERE container_id = ?2",
                    params![serde_json::to_string(ep).unwrap(), id],
                )?;
                Ok::<_, crate::Error>(())
            })
            .unwrap()
    };
    set_owner(&dead);
    // While a start holds the container's network lock, it may be giving the container
    // new endpoints: nothing of it is judged.
    let lock = e
        .containers()
        .network_lock(&id, false)
        .unwrap()
        .expect("the lock is free");
    assert!(e.containers().network_lock(&id, false).unwrap().is_none());
    assert_eq!(held(&e), std::slice::from_ref(&id));
    drop(lock);
    // A lock that cannot be taken (a link where the file should be, never followed) is an
    // error that says so: nothing is judged without it.
    let lock_path = e
        .containers()
        .containers_dir()
        .join(&id)
        .join("network.lock");
    std::fs::remove_file(&lock_path).unwrap();
    std::os::unix::fs::symlink("/dev/null", &lock_path).unwrap();
    let err = e.network_inspect("p").unwrap_err().to_string();
    assert!(err.contains("network.lock"), "{err}");
    assert_eq!(e.networks().container_endpoints(&id).unwrap().len(), 1);
    std::fs::remove_file(&lock_path).unwrap();
    assert!(held(&e).is_empty());
    assert!(e.networks().container_endpoints(&id).unwrap().is_empty());
    // A container that has run and ended lets go, though its maker lives on (a daemon).
    let ep = e.networks().allocate(&rec, &id, None, None).unwrap();
    assert_eq!(ep.owner.0, std::process::id());
    assert_eq!(held(&e), std::slice::from_ref(&id));
    std::fs::write(
        e.containers().containers_dir().join(&id).join("state.json"),
        r#"{"Status":"exited","ExitCode":0}"#,
    )
    .unwrap();
    assert!(held(&e).is_empty());
}

/// A bridge or address the kernel refuses is an error that says which; only "it is there
/// already" is not.
#[test]
fn a_bridge_or_address_the_kernel_refuses_is_an_error() {
    let e = engine();
    let record = |bridge: &str| NetworkRecord {
        id: crate::util::random_hex(32),
        name: "refused".into(),
        driver: "bridge".into(),
        bridge: bridge.into(),
        subnet: Some("10.0.0.0/24".into()),
        gateway: Some("10.0.0.1".into()),
        ip_range: None,
        internal: false,
        labels: BTreeMap::new(),
        aux_addresses: BTreeMap::new(),
        attachable: false,
        created: crate::db::now(),
        subnet6: None,
        gateway6: None,
        ip_range6: None,
        vni: None,
        options: BTreeMap::new(),
    };
    let (bad_name, no_ipv4, twice, kept, unplugged) = crate::testutil::in_own_netns(|| {
        let bad_name = e
            .networks()
            .ensure_bridge(&record("bad/name"), None)
            .map_err(|e| e.to_string());
        // A device too small for IPv4 takes no IPv4 address.
        let out = Command::new("ip")
            .args(["link", "set", "lo", "mtu", "60"])
            .status()?;
        assert!(out.success());
        let no_ipv4 = e
            .networks()
            .ensure_bridge(&record("lo"), None)
            .map_err(|e| e.to_string());
        // A bridge there already, with its address: made again, nothing changes.
        let ok = record("kb0");
        e.networks().ensure_bridge(&ok, None).unwrap();
        let twice = e
            .networks()
            .ensure_bridge(&ok, None)
            .map_err(|e| e.to_string());
        let _ = firewall::delete("kb0");
        // Loopback cannot be deleted: a device that will not go is an error too.
        let kept = e
            .networks()
            .delete_bridge(&record("lo"))
            .map_err(|e| e.to_string());
        let unplugged = e
            .networks()
            .unplug(&Endpoint {
                network_id: "none-such".into(),
                network: "refused".into(),
                container_id: "c".into(),
                ip: Ipv4Addr::new(10, 0, 0, 2),
                prefix: 24,
                gateway: None,
                ip6: None,
                prefix6: 0,
                gateway6: None,
                link_local: vec![],
                mac: String::new(),
                owner: (0, 0),
                ports: vec![],
                veth: "lo".into(),
                iface: "eth0".into(),
            })
            .map_err(|e| e.to_string());
        Ok((bad_name, no_ipv4, twice, kept, unplugged))
    });
    let err = kept.unwrap_err();
    assert!(err.contains("delete bridge lo"), "{err}");
    let err = unplugged.unwrap_err();
    assert!(err.contains("delete lo"), "{err}");
    let err = bad_name.unwrap_err();
    assert!(err.contains("create bridge bad/name"), "{err}");
    let err = no_ipv4.unwrap_err();
    assert!(err.contains("add 10.0.0.1 to lo"), "{err}");
    twice.unwrap();
}

/// Forwarding is turned on when a bridge that leads out is made, in the namespace that has
/// it; never for an internal network, nor for a bridge that was there.
#[test]
fn forwarding_is_turned_on_for_a_bridge_made_that_leads_out() {
    let e = crate::testutil::scratch_engine_with(|o| o.ip_forward = true);
    let path = "/proc/sys/net/ipv4/ip_forward";
    let seen = crate::testutil::in_own_netns(|| {
        let fwd = || std::fs::read_to_string(path).map(|s| s.trim().to_string());
        // A new namespace takes the host's setting, which is not the test's: off here.
        std::fs::write(path, "0")?;
        let start = fwd()?;
        // The default network comes first, and turns it on.
        e.networks().find("bridge").unwrap();
        let with_default = fwd()?;
        std::fs::write(path, "0")?;
        create_internal(&e, "inner");
        let with_internal = fwd()?;
        let outer = create(&e, "outer", Some(&random_subnet())).unwrap();
        let with_outer = fwd()?;
        std::fs::write(path, "0")?;
        e.networks().ensure_bridge(&outer, None).unwrap();
        let restored = fwd()?;
        Ok([start, with_default, with_internal, with_outer, restored])
    });
    assert_eq!(seen, ["0", "1", "0", "1", "0"]);
}

fn create_internal(e: &Engine, name: &str) -> NetworkRecord {
    e.networks()
        .create(&NetworkCreate {
            name: name.into(),
            subnet: Some(random_subnet()),
            internal: true,
            ..Default::default()
        })
        .unwrap()
}

/// Prune passes over a network a starting container holds an address on, and says when
/// one cannot be removed.
#[test]
fn prune_skips_a_network_in_use_and_reports_one_that_cannot_go() {
    let e = engine();
    create(&e, "named", Some(&random_subnet())).unwrap();
    let held = create(&e, "held", Some(&random_subnet())).unwrap();
    let id = container(&e, "starting", "named");
    // As `network connect` during its start would: an address on a network its
    // configuration does not name (yet).
    e.networks().allocate(&held, &id, None, None).unwrap();
    assert!(e.network_prune().unwrap().is_empty());
    assert!(e.networks().find("held").is_ok());

    // A record whose bridge name the kernel refuses to look up.
    let broken = NetworkRecord {
        bridge: "a-name-too-long-for-a-link".into(),
        ..create(&e, "broken", Some(&random_subnet())).unwrap()
    };
    e.networks()
        .delete_bridge(&e.networks().find("broken").unwrap())
        .unwrap();
    e.state()
        .db
        .write(|tx| {
            tx.execute(
                "UPDATE networks SET config = ?1 WHERE id = ?2",
                params![serde_json::to_string(&broken).unwrap(), broken.id],
            )?;
            Ok::<_, crate::Error>(())
        })
        .unwrap();
    let err = e.network_prune().unwrap_err().to_string();
    assert!(err.contains("look up a link"), "{err}");
    assert!(e.networks().find("broken").is_ok());
}

/// A host port another container of the network publishes is refused with Docker's words,
/// and the second container is left with nothing: no address, no device.
#[test]
fn a_host_port_taken_is_refused_and_undone() {
    let e = engine();
    let subnet: Subnet = random_subnet().parse().unwrap();
    create(&e, "ports", Some(&subnet.to_string())).unwrap();
    // Each container at an address of its own: a mapping left behind would point at the
    // other one's, and adding the new one would fail.
    let (at_first, at_second) = (subnet.nth(5), subnet.nth(6));
    let port = firewall::PortMap {
        proto: "tcp".into(),
        host_ip: Some(Ipv4Addr::LOCALHOST),
        host_port: 20000 + (std::process::id() % 20000) as u16,
        container_port: 80,
    };
    let first = container(&e, "first", "ports");
    let second = container(&e, "second", "ports");
    let ep = attach(&e, &first, "ports", at_first, std::slice::from_ref(&port)).unwrap();
    assert_eq!(ep.ports, std::slice::from_ref(&port));
    let err = attach(&e, &second, "ports", at_second, std::slice::from_ref(&port)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "Bind for 127.0.0.1:{} failed: port is already allocated",
            port.host_port
        )
    );
    assert!(
        e.networks()
            .container_endpoints(&second)
            .unwrap()
            .is_empty()
    );
    assert!(!e.networks().netns_path(&second).exists());
    // Let go of, the first's port is the second's; unplugged, the second's the first's.
    e.networks().release_endpoints(&first).unwrap();
    let ep = attach(&e, &second, "ports", at_second, std::slice::from_ref(&port)).unwrap();
    assert_eq!(ep.ports, std::slice::from_ref(&port));
    e.networks().unplug(&ep).unwrap();
    e.networks().release_endpoints(&second).unwrap();
    attach(&e, &first, "ports", at_first, std::slice::from_ref(&port)).unwrap();
    e.networks().release_endpoints(&first).unwrap();
}

/// On the default network only, a container has no name server of ketch's: its list is
/// empty and nothing is redirected.
#[test]
fn the_default_network_has_no_name_server() {
    let e = engine();
    let id = container(&e, "plain", "bridge");
    attach(&e, &id, "bridge", None, &[]).unwrap();
    let bundle = tempfile::tempdir().unwrap();
    e.containers().write_dns_list(&id, bundle.path()).unwrap();
    assert_eq!(
        std::fs::read_to_string(bundle.path().join("dns.list")).unwrap(),
        ""
    );
    let tables = netns::within(&e.networks().netns_path(&id), || {
        let out = Command::new("nft").args(["list", "tables"]).output()?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    })
    .unwrap();
    assert_eq!(tables, "");
    e.networks().release_endpoints(&id).unwrap();
}

/// A subnet the host routes already (a LAN, a VPN) is passed over when one is chosen.
#[test]
fn a_subnet_the_host_routes_is_not_chosen() {
    let e = engine();
    let (before, chosen) = crate::testutil::in_own_netns(|| {
        let ip = |args: &[&str]| Command::new("ip").args(args).status().map(|s| s.success());
        assert!(ip(&["link", "set", "lo", "up"])?);
        let first = subnet::default_pools()[0].0.split(16).next().unwrap();
        assert!(ip(&["route", "add", &first.to_string(), "dev", "lo"])?);
        let routes = subnet::host_routes();
        let chosen = e.networks().find("bridge").unwrap().subnet().unwrap();
        Ok((routes.contains(&first).then_some(first), chosen))
    });
    let routed = before.expect("the route is seen");
    assert!(!chosen.overlaps(&routed), "{chosen} overlaps {routed}");
}

/// A container whose record cannot be read is not taken for one gone: its addresses stay,
/// and the error is told.
#[test]
fn an_unreadable_container_keeps_its_endpoints() {
    let e = engine();
    let rec = create(&e, "kept", Some(&random_subnet())).unwrap();
    let id = container(&e, "unreadable", "kept");
    e.networks().allocate(&rec, &id, None, None).unwrap();
    e.state()
        .db
        .write(|tx| {
            tx.execute(
                "UPDATE containers SET config = '{' WHERE id = ?1",
                params![id],
            )?;
            Ok::<_, crate::Error>(())
        })
        .unwrap();
    let err = e.network_inspect("kept").unwrap_err();
    assert_ne!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_eq!(e.networks().container_endpoints(&id).unwrap().len(), 1);
}
