//! One host, many state roots: each root's bridges are its own, a bridge another root owns
//! is refused, and what a removed root left on the host goes at the next open of any root.
//! The many-roots run is in a network namespace of its own, so that the host's routes,
//! links and firewall tables before and after compare exactly while other tests run.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use ketch_tests::{Daemon, PrivateNet, Root, busybox_rootfs, ketch_bin};

/// `ketch --root ROOT ARGS` in `net`, as a user runs it: no bridge asked for.
fn ketch(net: &PrivateNet, root: &Path, args: &[&str]) -> String {
    let o: Output = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", net.0))
        .arg(ketch_bin())
        .arg("--root")
        .arg(root)
        .args(args)
        .env_remove("KETCH_ROOT")
        .env_remove("KETCH_BRIDGE")
        .env_remove("KETCH_STORAGE_DRIVER")
        .env("KETCH_IP_FORWARD", "false")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "ketch {args:?} on {}: {}",
        root.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// What the namespace holds: links, addresses, routes and firewall tables.
fn host_view(net: &PrivateNet) -> String {
    net.sh("ip -o link show | sed 's/^[0-9]*: //'; ip -o addr show; ip route show table all; nft list tables")
}

/// The case: a Python or Node user opening an engine on a temporary root per test.
/// 200 roots made, used and removed one after another: every root gets the first subnet
/// of the pool (its predecessor's went with it), no more than one root's bridges are there
/// at once, and once the last has gone the namespace is as it was.
#[test]
fn two_hundred_roots_one_after_another_leave_the_hosts_routes_as_they_were() {
    let net = PrivateNet::new();
    net.sh("ip link set lo up");
    let before = host_view(&net);
    let dir = tempfile::Builder::new()
        .prefix("ketch-test-roots-")
        .tempdir()
        .unwrap();
    let bridges = || {
        net.sh("ip -o link show type bridge | cut -d: -f2")
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    for i in 0..200 {
        let root = dir.path().join(format!("r{i}"));
        ketch(&net, &root, &["network", "ls"]);
        let mut mine = vec![ketch(
            &net,
            &root,
            &["network", "inspect", "-f", "{{json .Options}}", "bridge"],
        )];
        let v: serde_json::Value = serde_json::from_str(&mine[0]).unwrap();
        mine[0] = v["com.docker.network.bridge.name"].as_str().unwrap().into();
        let ipam = ketch(
            &net,
            &root,
            &[
                "network",
                "inspect",
                "-f",
                "{{json .IPAM.Config}}",
                "bridge",
            ],
        );
        let v: serde_json::Value = serde_json::from_str(&ipam).unwrap();
        let subnet = v[0]["Subnet"].as_str().unwrap();
        assert_eq!(subnet, "172.17.0.0/16", "root {i}");
        let addrs = net.sh(&format!("ip -o -4 addr show dev {}", mine[0]));
        assert_eq!(addrs.lines().count(), 1, "root {i}: {addrs}");
        if i % 20 == 0 {
            let id = ketch(&net, &root, &["network", "create", "mine"]);
            mine.push(format!("br-{}", &id.trim()[..12]));
        }
        if i % 50 == 0 {
            // Addresses, a veth pair and published ports, made and taken back.
            let rootfs = busybox_rootfs();
            ketch(
                &net,
                &root,
                &["import", rootfs.to_str().unwrap(), "busybox"],
            );
            let out = ketch(
                &net,
                &root,
                &[
                    "run",
                    "--rm",
                    "-p",
                    "8080:80",
                    "busybox",
                    "sh",
                    "-c",
                    "ip -o -4 addr show eth0",
                ],
            );
            assert!(out.contains("inet 172.17.0.2/16"), "{out}");
        }
        let mut there = bridges();
        there.sort();
        mine.sort();
        assert_eq!(there, mine, "root {i}: only its own bridges are there");
        std::fs::remove_dir_all(&root).unwrap();
    }
    // The last root's bridge goes at the next open of any root; `system prune` says so
    // where it cannot.
    let last = dir.path().join("last");
    ketch(&net, &last, &["system", "prune", "-f"]);
    assert_eq!(host_view(&net), before);
}

/// Two roots asked for one bridge: the second is refused, naming the first, whose bridge
/// is left as it was; the first one's bridge carries its mark.
#[test]
fn a_bridge_another_root_owns_is_refused_by_name() {
    let first = Root::new();
    first.ok(&["network", "ls"]);
    let mut second = Root::new();
    second.bridge = first.bridge.clone();
    let (_, err) = second.fails(&["network", "ls"]);
    let owner = std::fs::canonicalize(first.path()).unwrap();
    assert!(
        err.contains(&format!(
            "bridge {} belongs to the state root {}: give this root a bridge of its own",
            first.bridge,
            owner.display()
        )),
        "{err}"
    );
    let id = std::fs::read_to_string(first.path().join("engine-id")).unwrap();
    let shown = Command::new("ip")
        .args(["link", "show", &first.bridge])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains(&format!("alias ketch {} ", id.trim()))
            && shown.contains(&*owner.to_string_lossy()),
        "{shown}"
    );
    // Still the first root's to use. The second has no default network until it is given a
    // bridge of its own, and then works.
    first.ok(&["network", "create", "n1"]);
    let (_, err) = second.fails(&["network", "create", "n2"]);
    assert!(err.contains("belongs to the state root"), "{err}");
    // Containers on no network, or the host's, run all the same.
    second.busybox("busybox");
    for mode in ["none", "host"] {
        let out = second.ok(&["run", "--rm", "--network", mode, "busybox", "echo", mode]);
        assert_eq!(out, format!("{mode}\n"));
    }
    let (_, err) = second.fails(&["run", "--rm", "busybox", "true"]);
    assert!(err.contains("belongs to the state root"), "{err}");
    second.bridge = format!("kt{}", ketch_tests::random_hex(5));
    second.ok(&["network", "create", "n2"]);
    second.ok(&["network", "inspect", "bridge"]);
}

/// `network prune` removes what removed roots left, in a daemon that opened before they were
/// made (every open sweeps too; a long-lived daemon opened once): through the Docker CLI.
#[test]
fn network_prune_through_the_daemon_removes_a_removed_roots_bridges() {
    let net = PrivateNet::new();
    let mut r = Root::new();
    r.wrap = net.wrap();
    let d = Daemon::start(&r);
    let gone = tempfile::Builder::new()
        .prefix("ketch-test-gone-")
        .tempdir()
        .unwrap();
    let root = gone.path().join("root");
    let id = ketch(&net, &root, &["network", "create", "left"]);
    let left = [
        format!("br-{}", &id.trim()[..12]),
        ketch(
            &net,
            &root,
            &["network", "inspect", "-f", "{{json .Options}}", "bridge"],
        ),
    ];
    let v: serde_json::Value = serde_json::from_str(&left[1]).unwrap();
    let left = [
        left[0].clone(),
        v["com.docker.network.bridge.name"]
            .as_str()
            .unwrap()
            .to_string(),
    ];
    std::fs::remove_dir_all(&root).unwrap();
    let there = |name: &str| {
        net.sh(&format!(
            "ip -o link show {name} 2>/dev/null; nft list table ip ketch_{} 2>/dev/null | head -1",
            name.replace('-', "_")
        ))
    };
    for b in &left {
        assert_eq!(there(b).lines().count(), 2, "{b} before the prune");
    }
    let out = d.docker(&["network", "prune", "-f"]);
    assert!(out.status.success(), "{out:?}");
    for b in &left {
        assert_eq!(there(b), "", "{b} after the prune");
    }
}
