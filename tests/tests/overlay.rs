//! Overlay networks across hosts simulated on this machine (`ketch_tests::cluster`): network
//! namespaces on an underlay bridge, each with its own root and daemon, and one etcd.

use std::collections::BTreeSet;

use ketch_tests::cluster::{Host, Underlay};
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
    a.ok(&["network", "prune", "-f"]);
    assert_eq!(u.keys("/ketch/"), Vec::<String>::new());
    assert_eq!(
        b.ok(&["network", "ls", "-q", "--filter", "driver=overlay"]),
        ""
    );
}

/// A script for a busybox container: the body of `http://HOST/` through `nc`, tried for up
/// to ten seconds (the other host learns of a new container within moments).
fn fetch(host: &str) -> String {
    format!(
        "for i in $(seq 50); do \
           out=$(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {host} 80 2>&1) && \
           case \"$out\" in *served-by-*) echo \"$out\" | tail -n 1; exit 0;; esac; \
           sleep 0.2; \
         done; echo \"$out\"; exit 1"
    )
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
    // On another network of the same host, the address is out of reach.
    a.ok(&["network", "create", "local"]);
    let o = a
        .cmd()
        .args([
            "run",
            "--rm",
            "--network",
            "local",
            "busybox",
            "sh",
            "-c",
            &format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {web_ip} 80"),
        ])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("served-by"),
        "{o:?}"
    );
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
