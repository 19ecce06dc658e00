//! Overlay networks across hosts simulated on this machine (`ketch_tests::cluster`): network
//! namespaces on an underlay bridge, each with its own root and daemon, and one etcd.

use std::collections::BTreeSet;

use ketch_tests::cluster::{Host, Underlay, fetch};
use ketch_tests::{Root, busybox_rootfs};

/// `network inspect -f '{{json .}}'` of `name` on `host`.
fn inspect(host: &Host, name: &str) -> serde_json::Value {
    serde_json::from_str(&host.ok(&["network", "inspect", "-f", "{{json .}}", name])).unwrap()
}

fn subnet_and_vni(v: &serde_json::Value) -> (String, String) {
    (
        v["IPAM"]["Config"][0]["Subnet"]
            .as_str()
            .unwrap()
            .to_string(),
        v["Options"]["com.docker.network.driver.overlay.vxlanid_list"]
            .as_str()
            .unwrap()
            .to_string(),
    )
}

/// An overlay network is one record of the cluster's: made on one host, listed and
/// removed on another; its name, subnet and VNI are claimed once across the cluster, also
/// by hosts that create at the same moment; nothing of it is left in the store after.
#[test]
fn an_overlay_network_is_one_record_of_the_clusters() {
    // Outside a cluster, refused with the reason.
    let lone = Root::new();
    lone.ok(&["import", busybox_rootfs().to_str().unwrap(), "busybox"]);
    let (_, err) = lone.fails(&["network", "create", "-d", "overlay", "ov"]);
    assert!(err.contains("--cluster-store etcd://"), "{err}");

    let mut u = Underlay::new();
    let a = u.host();
    let mut b = u.host();
    let id = a
        .ok(&[
            "network",
            "create",
            "-d",
            "overlay",
            "--subnet",
            "10.9.0.0/24",
            "-o",
            "com.docker.network.driver.mtu=1400",
            "--label",
            "tier=web",
            "ov1",
        ])
        .trim()
        .to_string();
    let ls = b.ok(&[
        "network",
        "ls",
        "--format",
        "{{.Name}} {{.Driver}} {{.Scope}}",
    ]);
    assert!(ls.lines().any(|l| l == "ov1 overlay global"), "{ls}");
    let seen = inspect(&b, "ov1");
    assert_eq!(seen["Id"], id.as_str());
    assert_eq!(seen["Scope"], "global");
    assert_eq!(seen["Labels"]["tier"], "web");
    assert_eq!(seen["Options"]["com.docker.network.driver.mtu"], "1400");
    assert_eq!(subnet_and_vni(&seen).0, "10.9.0.0/24");
    assert_eq!(seen["IPAM"]["Config"][0]["Gateway"], "10.9.0.1");

    // Its name is taken on every host; an overlapping subnet is refused.
    let (_, err) = b.fails(&["network", "create", "-d", "overlay", "ov1"]);
    assert!(err.contains("already exists"), "{err}");
    let (_, err) = b.fails(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--subnet",
        "10.9.0.128/25",
        "ov2",
    ]);
    assert!(err.contains("overlaps"), "{err}");
    let (_, err) = a.fails(&["network", "create", "-d", "overlay", "-o", "x=y", "ov2"]);
    assert!(err.contains("network option x"), "{err}");

    // Hosts that create at once each get a subnet and a VNI of their own.
    let made: Vec<(String, String)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..6)
            .map(|i| {
                let host = if i % 2 == 0 { &a } else { &b };
                s.spawn(move || {
                    let name = format!("many{i}");
                    host.ok(&["network", "create", "-d", "overlay", &name]);
                    subnet_and_vni(&inspect(host, &name))
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let subnets: BTreeSet<&String> = made.iter().map(|(s, _)| s).collect();
    let vnis: BTreeSet<&String> = made.iter().map(|(_, v)| v).collect();
    assert_eq!(subnets.len(), 6, "{made:?}");
    assert_eq!(vnis.len(), 6, "{made:?}");
    assert!(!vnis.contains(&subnet_and_vni(&seen).1), "{made:?}");

    // Through a daemon, as through the CLI: the Docker API's answers.
    b.start_daemon();
    let socket = format!("unix://{}", b.daemon.as_ref().unwrap().socket.display());
    let o = b
        .cmd()
        .args(["-H", &socket, "network", "create", "-d", "overlay", "ov3"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let ls = a.ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(ls.lines().any(|l| l == "ov3"), "{ls}");
    b.stop_daemon();

    // With the store away, nothing new is made, and the copies are still listed.
    u.etcd.stop();
    let (_, err) = a.fails(&["network", "create", "-d", "overlay", "ov4"]);
    assert!(
        err.contains("cluster store") && err.contains("198.18.0.1:2379"),
        "{err}"
    );
    let ls = b.ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(ls.lines().any(|l| l == "ov1"), "{ls}");
    u.etcd.resume();

    // Removed on one host, gone on the other; nothing of them left in the store.
    b.ok(&["network", "rm", "ov1"]);
    let ls = a.ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(!ls.lines().any(|l| l == "ov1"), "{ls}");
    let (_, err) = a.fails(&["network", "inspect", "ov1"]);
    assert!(err.contains("not found"), "{err}");
    // A prune leaves them (stopped containers elsewhere may name them); rm takes them.
    a.ok(&["network", "prune", "-f"]);
    assert!(
        a.ok(&["network", "ls", "--format", "{{.Name}}"])
            .contains("ov3")
    );
    let mut rm = vec!["network", "rm", "ov3"];
    let many: Vec<String> = (0..6).map(|i| format!("many{i}")).collect();
    rm.extend(many.iter().map(String::as_str));
    a.ok(&rm);
    assert_eq!(u.keys("/ketch/"), Vec::<String>::new());
    assert_eq!(
        b.ok(&["network", "ls", "-q", "--filter", "driver=overlay"]),
        ""
    );
}

/// A container on `net` of `host` gets no page from the httpd at `ip`.
fn assert_unreached(host: &Host, net: &str, ip: &str) {
    let o = host
        .cmd()
        .args(["run", "--rm", "--network", net, "busybox", "sh", "-c"])
        .arg(format!(
            "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {ip} 80"
        ))
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("served-by"),
        "{net}: {o:?}"
    );
}

/// The links of a kind (`vxlan`, `bridge`) on a host whose name starts with `prefix`.
fn links(host: &Host, kind: &str, prefix: &str) -> Vec<String> {
    host.net
        .sh(&format!("ip -o link show type {kind}"))
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// Containers on two hosts on one overlay network reach each other by name and by
/// address, through VXLAN between the hosts; a container on another network does not reach
/// them; everything of the network goes from both hosts and the store once it is removed.
#[test]
fn containers_on_two_hosts_talk_over_an_overlay_network() {
    let mut u = Underlay::new();
    let mut a = u.host();
    let mut b = u.host();
    // Without its daemon, a host does not put a container on an overlay network.
    a.ok(&["network", "create", "-d", "overlay", "ov"]);
    let (_, err) = a.fails(&["run", "--rm", "--network", "ov", "busybox", "true"]);
    assert!(err.contains("needs `ketch daemon`"), "{err}");
    a.start_daemon();
    b.start_daemon();
    b.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "ov",
        "busybox",
        "sh",
        "-c",
        "mkdir /www && echo served-by-$(hostname) > /www/index.html && exec httpd -f -p 80 -h /www",
    ]);
    let web_ip = b
        .ok(&[
            "inspect",
            "-f",
            "{{.NetworkSettings.Networks.ov.IPAddress}}",
            "web",
        ])
        .trim()
        .to_string();
    assert!(web_ip.starts_with("10."), "{web_ip}");
    let web_host = b.ok(&["inspect", "-f", "{{.Config.Hostname}}", "web"]);
    let want = format!("served-by-{}", web_host.trim());
    for target in ["web", web_ip.as_str()] {
        let out = a.ok(&[
            "run",
            "--rm",
            "--network",
            "ov",
            "busybox",
            "sh",
            "-c",
            &fetch(target),
        ]);
        assert_eq!(out.trim(), want, "{target}");
    }
    // Its devices' MTU leaves room for VXLAN's headers.
    let mtu = a.ok(&[
        "run",
        "--rm",
        "--network",
        "ov",
        "busybox",
        "cat",
        "/sys/class/net/eth0/mtu",
    ]);
    assert_eq!(mtu.trim(), "1450");
    // Not removed while a container of another host is on it; its hosts are listed.
    let (_, err) = a.fails(&["network", "rm", "ov"]);
    assert!(err.contains("active endpoints"), "{err}");
    let peers = inspect(&a, "ov")["Peers"].clone();
    assert_eq!(peers.as_array().map(Vec::len), Some(1), "{peers}");
    assert_eq!(peers[0]["IP"], b.ip.as_str());
    // On another network of the same host, the address is out of reach; connected to the
    // overlay network, it is not.
    a.ok(&["network", "create", "local"]);
    assert_unreached(&a, "local", &web_ip);
    a.ok(&[
        "run",
        "-d",
        "--name",
        "joiner",
        "--network",
        "local",
        "busybox",
        "sleep",
        "1000",
    ]);
    a.ok(&["network", "connect", "ov", "joiner"]);
    let out = a.ok(&["exec", "joiner", "sh", "-c", &fetch("web")]);
    assert_eq!(out.trim(), want);
    a.ok(&["network", "disconnect", "ov", "joiner"]);
    a.ok(&["rm", "-f", "joiner"]);
    // Both hosts carry the network while a container of it runs on each.
    let keep = a.ok(&[
        "run",
        "-d",
        "--name",
        "client",
        "--network",
        "ov",
        "busybox",
        "sleep",
        "1000",
    ]);
    assert!(!keep.trim().is_empty());
    for h in [&a, &b] {
        assert_eq!(links(h, "vxlan", "kx").len(), 1, "{}", h.ip);
    }
    // Everything goes.
    a.ok(&["rm", "-f", "client"]);
    b.ok(&["rm", "-f", "web"]);
    a.ok(&["network", "rm", "ov", "local"]);
    for h in [&a, &b] {
        ketch_tests::wait_until("the network's devices to go", 10, || {
            links(h, "vxlan", "kx").is_empty() && links(h, "bridge", "ko").is_empty()
        });
        let fdb = h.net.sh("bridge fdb show | grep -c ' dst ' || true");
        assert_eq!(fdb.trim(), "0", "{}", h.ip);
    }
    assert_eq!(u.keys("/ketch/"), Vec::<String>::new());
}

/// `inspect -f FORMAT NAME` on a host, trimmed.
fn field(host: &Host, format: &str, name: &str) -> String {
    host.ok(&["inspect", "-f", format, name]).trim().to_string()
}

/// What Docker users count on across hosts: a host that joins later resolves and is
/// resolved by name (and alias); other networks, overlay or local, stay out; an internal
/// network has no way out and another reaches its host's gateway; ports are published on
/// the container's host; twenty containers started at once get twenty addresses; with the
/// store away, running containers go on and new ones are refused, and once it is back new
/// ones work without a restart; a daemon that was down catches up, and removes what its
/// engine left in the store; and nothing is left anywhere after.
#[test]
fn an_overlay_network_holds_across_hosts_outages_and_restarts() {
    let mut u = Underlay::new();
    let mut a = u.host();
    let mut b = u.host();
    let mut c = u.host();
    a.start_daemon();
    b.start_daemon();
    a.ok(&["network", "create", "-d", "overlay", "ov"]);
    a.ok(&["network", "create", "-d", "overlay", "--internal", "ovint"]);
    b.ok(&["network", "create", "-d", "overlay", "ov2"]);
    b.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "ov",
        "--network-alias",
        "site",
        "busybox",
        "sh",
        "-c",
        "mkdir /www && echo served-by-web > /www/index.html && exec httpd -f -p 80 -h /www",
    ]);
    let web_ip = field(&b, "{{.NetworkSettings.Networks.ov.IPAddress}}", "web");

    // A host that joins later: its container reaches the others by name and alias, and
    // theirs reach it by its name.
    c.start_daemon();
    c.ok(&[
        "run",
        "-d",
        "--name",
        "late",
        "--network",
        "ov",
        "busybox",
        "sleep",
        "1000",
    ]);
    for name in ["web", "site"] {
        let out = c.ok(&["exec", "late", "sh", "-c", &fetch(name)]);
        assert_eq!(out.trim(), "served-by-web", "{name}");
    }
    let out = b.ok(&[
        "run", "--rm", "--network", "ov", "busybox", "sh", "-c",
        "for i in $(seq 50); do ping -c 1 -W 1 late >/dev/null 2>&1 && echo reached && exit 0; sleep 0.2; done; exit 1",
    ]);
    assert_eq!(out.trim(), "reached");

    // Another overlay network, and a local one, stay out.
    a.ok(&["network", "create", "local"]);
    for net in ["ov2", "local"] {
        assert_unreached(&a, net, &web_ip);
    }

    // The way out: the host's gateway bridge for a network that has one, nothing for an
    // internal one.
    let gw = inspect(&a, "ketch_gwbridge")["IPAM"]["Config"][0]["Gateway"]
        .as_str()
        .unwrap()
        .to_string();
    let out = a.ok(&[
        "run", "--rm", "--network", "ov", "busybox", "sh", "-c",
        &format!("ping -c 1 -W 2 {gw} >/dev/null && echo out; grep -c '^eth[0-9]*\t00000000' /proc/net/route"),
    ]);
    assert_eq!(out, "out\n1\n");
    let o = a
        .cmd()
        .args([
            "run",
            "--rm",
            "--network",
            "ovint",
            "busybox",
            "sh",
            "-c",
            &format!("grep -c '^eth[0-9]*\t00000000' /proc/net/route; ping -c 1 -W 1 {gw}"),
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).lines().next(),
        Some("0"),
        "{o:?}"
    );
    assert!(!o.status.success(), "{o:?}");

    // Published on the container's host.
    a.ok(&[
        "run",
        "-d",
        "--name",
        "pub",
        "--network",
        "ov",
        "-p",
        "8080:80",
        "busybox",
        "sh",
        "-c",
        "mkdir /www && echo served-by-pub > /www/index.html && exec httpd -f -p 80 -h /www",
    ]);
    let got = a.net.sh(&format!(
        "for i in $(seq 50); do out=$(bash -c 'exec 3<>/dev/tcp/{}/8080 && printf \"GET / HTTP/1.0\\r\\n\\r\\n\" >&3 && cat <&3' 2>/dev/null) && echo \"$out\" | tail -n 1 && exit 0; sleep 0.2; done; exit 1",
        a.ip
    ));
    assert_eq!(got.trim(), "served-by-pub");

    // Twenty at once, over two hosts: twenty addresses.
    let ips: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..20)
            .map(|i| {
                let host = if i % 2 == 0 { &a } else { &b };
                s.spawn(move || {
                    let name = format!("many{i}");
                    host.ok(&[
                        "run",
                        "-d",
                        "--name",
                        &name,
                        "--network",
                        "ov",
                        "busybox",
                        "sleep",
                        "1000",
                    ]);
                    field(host, "{{.NetworkSettings.Networks.ov.IPAddress}}", &name)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let distinct: BTreeSet<&String> = ips.iter().collect();
    assert_eq!(distinct.len(), 20, "{ips:?}");
    for i in 0..20 {
        let host = if i % 2 == 0 { &a } else { &b };
        host.ok(&["rm", "-f", &format!("many{i}")]);
    }

    // A container that ends on its own gives its place back, for every host to see.
    let places = || u.keys("/ketch/v1/endpoints/").len();
    let before = places();
    b.ok(&[
        "run",
        "-d",
        "--name",
        "brief",
        "--network",
        "ov",
        "busybox",
        "sleep",
        "2",
    ]);
    assert_eq!(places(), before + 1);
    ketch_tests::wait_until("the ended container's place to go", 20, || {
        places() == before
    });
    b.ok(&["rm", "brief"]);

    // The store away: what runs goes on, nothing new joins; back, new ones do, and the
    // place of a container removed meanwhile goes.
    a.ok(&[
        "run",
        "-d",
        "--name",
        "away",
        "--network",
        "ov",
        "busybox",
        "sleep",
        "1000",
    ]);
    let away_ip = field(&a, "{{.NetworkSettings.Networks.ov.IPAddress}}", "away");
    let ov_id = inspect(&a, "ov")["Id"].as_str().unwrap().to_string();
    let away = format!("/ketch/v1/endpoints/{ov_id}/{away_ip}");
    assert!(u.keys("/ketch/v1/endpoints/").contains(&away));
    u.etcd.stop();
    a.ok(&["rm", "-f", "away"]);
    let out = c.ok(&["exec", "late", "sh", "-c", &fetch("web")]);
    assert_eq!(out.trim(), "served-by-web");
    let (_, err) = a.fails(&["run", "--rm", "--network", "ov", "busybox", "true"]);
    assert!(
        err.contains("cluster store") && err.contains("cannot be reached"),
        "{err}"
    );
    u.etcd.resume();
    let out = a.ok(&[
        "run",
        "--rm",
        "--network",
        "ov",
        "busybox",
        "sh",
        "-c",
        &fetch("web"),
    ]);
    assert_eq!(out.trim(), "served-by-web");
    ketch_tests::wait_until(
        "the place of the container removed meanwhile to go",
        10,
        || !u.keys("/ketch/v1/endpoints/").contains(&away),
    );

    // A daemon that was down catches up at its start; what its engine left in the store
    // (a place no container holds, whoever claimed it) goes then.
    b.stop_daemon();
    a.ok(&[
        "run",
        "-d",
        "--name",
        "newcomer",
        "--network",
        "ov",
        "busybox",
        "sleep",
        "1000",
    ]);
    let engine = std::fs::read_to_string(b.root.path().join("engine-id")).unwrap();
    let left = format!("/ketch/v1/endpoints/{ov_id}/10.0.0.200");
    let stat = std::fs::read_to_string("/proc/1/stat").unwrap();
    let init_start: u64 = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(19)
        .unwrap()
        .parse()
        .unwrap();
    u.net.sh(&format!(
        "{} put {left} '{}'",
        u.etcdctl(),
        serde_json::json!({
            "container_id": "0".repeat(64), "ip": "10.0.0.200", "mac": "02:42:0a:00:00:c8",
            "vtep": b.ip, "engine": engine.trim(), "names": ["ghost"],
            // Claimed by a process that still lives: the place is judged by its container.
            "owner": [1, init_start],
        })
    ));
    b.start_daemon();
    let out = b.ok(&[
        "exec", "web", "sh", "-c",
        "for i in $(seq 50); do ping -c 1 -W 1 newcomer >/dev/null 2>&1 && echo reached && exit 0; sleep 0.2; done; exit 1",
    ]);
    assert_eq!(out.trim(), "reached");
    ketch_tests::wait_until("the left place to go", 10, || {
        !u.keys("/ketch/v1/endpoints/").contains(&left)
    });

    // Nothing left, on any host or in the store.
    a.ok(&["rm", "-f", "newcomer", "pub"]);
    b.ok(&["rm", "-f", "web"]);
    c.ok(&["rm", "-f", "late"]);
    b.ok(&["network", "rm", "ov", "ovint", "ov2"]);
    a.ok(&["network", "rm", "local"]);
    for h in [&a, &b, &c] {
        ketch_tests::wait_until("the networks' devices to go", 10, || {
            links(h, "vxlan", "kx").is_empty() && links(h, "bridge", "ko").is_empty()
        });
        let fdb = h.net.sh("bridge fdb show | grep -c ' dst ' || true");
        assert_eq!(fdb.trim(), "0", "{}", h.ip);
        let rules = h.net.sh("nft list ruleset");
        assert!(!rules.contains("\"ko"), "{}: {rules}", h.ip);
    }
    assert_eq!(u.keys("/ketch/"), Vec::<String>::new());
}

/// A store that takes clients over mutual TLS only: reached with the CA and a client
/// certificate it signed (`--cluster-store-opt kv.cacertfile=,kv.certfile=,kv.keyfile=`);
/// without one, or with another CA's, refused with an error that says where.
#[test]
fn the_cluster_store_is_reached_over_mutual_tls() {
    let mut u = Underlay::with_tls();
    let a = u.host();
    a.ok(&["network", "create", "-d", "overlay", "secure"]);
    assert_eq!(u.keys("/ketch/v1/names/"), ["/ketch/v1/names/secure"]);
    for client in [None, Some("rogue")] {
        let mut cmd = a.root.cmd_bare();
        cmd.args([
            "--cluster-store",
            &u.store_url(),
            "--cluster-advertise",
            &a.ip,
        ])
        .args(u.tls_flags(client))
        .args(["network", "create", "-d", "overlay", "other"]);
        let o = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{client:?}: {o:?}");
        assert!(
            err.contains("cluster store") && err.contains("198.18.0.1:2379"),
            "{client:?}: {err}"
        );
    }
    a.ok(&["network", "rm", "secure"]);
    assert_eq!(u.keys("/ketch/"), Vec::<String>::new());
}
