//! Networks end to end: bridges, addresses, isolation, and nothing left behind. Every packet
//! stays on this machine: containers talk to each other and to their bridge only.

use std::collections::HashSet;
use std::path::Path;
use std::process::Stdio;

use ketch_tests::{PrivateNet, Root, busybox_rootfs};

fn setup() -> Root {
    let r = Root::new();
    r.ok(&["import", busybox_rootfs().to_str().unwrap(), "busybox"]);
    r
}

fn sh(r: &Root, flags: &[&str], script: &str) -> String {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["busybox", "sh", "-c", script]);
    r.ok(&args)
}

/// A container's address on a network, from `inspect`.
fn ip_on(r: &Root, container: &str, network: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(&r.ok(&[
        "inspect",
        "-f",
        "{{json .NetworkSettings.Networks}}",
        container,
    ]))
    .unwrap();
    v[network]["IPAddress"].as_str().unwrap().to_string()
}

/// Starts busybox's httpd serving `text` as the container `name`, and returns once it
/// listens.
fn web(r: &Root, name: &str, flags: &[&str], text: &str) {
    let script =
        format!("mkdir /www && echo {text} > /www/index.html && exec httpd -f -p 80 -h /www");
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["busybox", "sh", "-c", &script]);
    r.ok(&args);
    wait_listening(r, name, 80);
}

/// Waits until a TCP socket in container `name`'s network namespace listens on `port`, as
/// the kernel's tables of that namespace's sockets show it (httpd's is an IPv6 one that
/// takes IPv4 too).
fn wait_listening(r: &Root, name: &str, port: u16) {
    let pid = container_pid(r, name);
    let local = format!(":{port:04X}");
    ketch_tests::wait_until(&format!("{name} to listen on port {port}"), 10, || {
        ["tcp", "tcp6"].iter().any(|t| {
            let table = std::fs::read_to_string(format!("/proc/{pid}/net/{t}"));
            table.is_ok_and(|t| {
                t.lines().skip(1).any(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    f.len() > 3 && f[1].ends_with(&local) && f[3] == "0A"
                })
            })
        })
    });
}

/// An HTTP GET through `nc` (busybox's static wget cannot resolve here), printing the
/// body's last line; fails with nc's own message when there is no answer.
fn get(host: &str) -> String {
    format!(
        "out=$(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {host} 80) || exit 1; echo \"$out\" | tail -1"
    )
}

/// A network's bridge device: the default network names it in its options; a user network's
/// is `br-` and its ID's first 12 digits, as Docker names them.
fn bridge_of(r: &Root, network: &str) -> String {
    if network == "bridge" {
        let f = r.ok(&["network", "inspect", "-f", "{{json .Options}}", network]);
        let v: serde_json::Value = serde_json::from_str(&f).unwrap();
        return v["com.docker.network.bridge.name"]
            .as_str()
            .unwrap()
            .to_string();
    }
    let id = r.ok(&["network", "inspect", "-f", "{{.Id}}", network]);
    format!("br-{}", &id.trim()[..12])
}

/// Shows that `network`'s isolation rules, and nothing else, keep a container on `from` away
/// from the web server at `ip` that serves `page`: in `net`, whose kernel forwards between
/// bridges, the request times out while the rules are there, and the same request is
/// answered once they are removed (nftables or iptables, whichever made them). The network
/// is left without them.
fn kept_apart_by_the_rules(
    r: &Root,
    net: &PrivateNet,
    from: &str,
    network: &str,
    ip: &str,
    page: &str,
) {
    // IPv4, or IPv6 (`ip6` tables; nftables only).
    let (family, knob) = if ip.contains(':') {
        ("ip6", "/proc/sys/net/ipv6/conf/all/forwarding")
    } else {
        ("ip", "/proc/sys/net/ipv4/ip_forward")
    };
    assert_eq!(
        net.sh(&format!("cat {knob}")),
        "1\n",
        "without forwarding the kernel keeps bridges apart by itself"
    );
    let script = get(ip);
    let args = [
        "run",
        "--rm",
        "--network",
        from,
        "busybox",
        "sh",
        "-c",
        &script,
    ];
    let out = r.run(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("nc: timed out"),
        "a container on {from} reached {ip} on {network}: {out:?}"
    );
    let bridge = bridge_of(r, network);
    let table = format!("ketch_{}", bridge.replace('-', "_"));
    let removed = net.sh(&format!(
        "if nft list table {family} {table} >/dev/null 2>&1; then \
           for h in $(nft -a list chain {family} {table} forward | \
                      sed -n 's/.*iifname != \"{bridge}\" drop # handle \\([0-9]*\\)$/\\1/p'); do \
             nft delete rule {family} {table} forward handle $h && echo nft; done; \
         else \
           iptables -S FORWARD | grep -e '-j DROP' | grep -F '\"ketch {bridge}\"' | sed 's/^-A/-D/' | \
           while read -r rule; do eval iptables $rule && echo iptables; done; \
         fi"
    ));
    assert!(!removed.is_empty(), "no isolation rule of {bridge} found");
    assert_eq!(
        r.ok(&args),
        format!("{page}\n"),
        "{bridge} without its isolation rules"
    );
}

fn links() -> HashSet<String> {
    std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn default_bridge_gives_an_address_and_a_route() {
    let r = setup();
    let out = sh(
        &r,
        &[],
        "ip -4 addr show eth0 | grep inet; ip route; tail -1 /etc/hosts",
    );
    let mut lines = out.lines();
    let inet = lines.next().unwrap();
    assert!(inet.trim().starts_with("inet 172."), "{out}");
    assert!(out.contains("default via"), "{out}");
    let own = inet
        .split_whitespace()
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    assert!(out.lines().last().unwrap().starts_with(own), "{out}");
    // The default network and its bridge, as Docker's docker0.
    let ls = r.ok(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    assert_eq!(ls, "bridge bridge\nhost host\nnone null\n");
    assert!(Path::new("/sys/class/net").join(&r.bridge).exists());
    let gw = r.ok(&[
        "network",
        "inspect",
        "-f",
        "{{json .IPAM.Config}}",
        "bridge",
    ]);
    assert!(gw.contains("\"Gateway\":\"172."), "{gw}");
}

/// In a network namespace of the test's own whose kernel forwards, so that what keeps the
/// networks apart is ketch's rules.
#[test]
fn containers_on_one_network_talk_and_other_networks_cannot_reach_them() {
    let net = PrivateNet::forwarding();
    let r = net.root();
    r.ok(&["network", "create", "front"]);
    r.ok(&["network", "create", "--subnet", "10.231.7.0/24", "back"]);
    web(&r, "site", &["--network", "front"], "hello-front");
    let ip = ip_on(&r, "site", "front");
    assert_eq!(sh(&r, &["--network", "front"], &get(&ip)), "hello-front\n");
    // From another bridge: kept out by the rules.
    kept_apart_by_the_rules(&r, &net, "back", "front", &ip, "hello-front");
    // The second network's own subnet, and --ip.
    let out = sh(
        &r,
        &["--network", "back", "--ip", "10.231.7.77"],
        "ip -4 addr show eth0 | grep inet",
    );
    assert!(out.contains("inet 10.231.7.77/24"), "{out}");
    // A network with a running container on it is not removed.
    let (code, err) = r.fails(&["network", "rm", "front"]);
    assert_eq!(code, 1);
    assert!(err.contains("has active endpoints"), "{err}");
    r.ok(&["rm", "-f", "site"]);
    r.ok(&["network", "rm", "front", "back"]);
    // --internal: no route out.
    r.ok(&["network", "create", "--internal", "inner"]);
    let routes = sh(&r, &["--network", "inner"], "ip route");
    assert!(!routes.contains("default"), "{routes}");
    assert!(
        r.ok(&["network", "inspect", "-f", "{{.Internal}}", "inner"])
            .trim()
            == "true"
    );
    r.ok(&["network", "rm", "inner"]);
}

#[test]
fn host_none_and_container_modes() {
    let r = setup();
    // none: loopback only.
    assert_eq!(sh(&r, &["--network", "none"], "ls /sys/class/net"), "lo\n");
    // host: the host's interfaces, one made for the test among them (the host's own may be
    // only loopback, in a sandbox).
    struct Marker(String);
    impl Drop for Marker {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["link", "del", &self.0])
                .status();
        }
    }
    let marker = Marker(format!("kth{}", ketch_tests::random_hex(6)));
    let made = std::process::Command::new("ip")
        .args(["link", "add", &marker.0, "type", "bridge"])
        .status()
        .unwrap();
    assert!(made.success());
    let inside: HashSet<String> = sh(&r, &["--network", "host"], "ls /sys/class/net")
        .lines()
        .map(str::to_string)
        .collect();
    assert!(
        inside.contains(&marker.0) && inside.contains("lo"),
        "{inside:?}"
    );
    drop(marker);
    // container:X shares X's interfaces and its localhost.
    web(&r, "x", &[], "hello-local");
    let x_ip = ip_on(&r, "x", "bridge");
    let out = sh(
        &r,
        &["--network", "container:x"],
        &format!(
            "ip -4 addr show eth0 | grep -c {x_ip}; {}",
            get("127.0.0.1")
        ),
    );
    assert_eq!(out, "1\nhello-local\n");
    r.ok(&["rm", "-f", "x"]);
    let (code, err) = r.fails(&[
        "run",
        "--rm",
        "--network",
        "container:nosuch",
        "busybox",
        "true",
    ]);
    assert_eq!(code, 125);
    assert!(err.contains("No such container: nosuch"), "{err}");
    let (code, err) = r.fails(&["run", "--rm", "--network", "nosuchnet", "busybox", "true"]);
    assert_eq!(code, 125);
    assert!(err.contains("network nosuchnet not found"), "{err}");
}

#[test]
fn twenty_parallel_runs_never_share_an_address() {
    let r = setup();
    r.ok(&["network", "create", "--subnet", "10.231.9.0/24", "many"]);
    let children: Vec<_> = (0..20)
        .map(|i| {
            r.cmd()
                .args([
                    "run",
                    "-d",
                    "--name",
                    &format!("c{i}"),
                    "--network",
                    "many",
                    "busybox",
                    "sleep",
                    "1000",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let ips: HashSet<String> = (0..20)
        .map(|i| ip_on(&r, &format!("c{i}"), "many"))
        .collect();
    assert_eq!(ips.len(), 20, "{ips:?}");
    let listed = r.ok(&["network", "inspect", "-f", "{{json .Containers}}", "many"]);
    let v: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(v.as_object().unwrap().len(), 20);
    let ids = r.ok(&["ps", "-aq"]);
    let mut args = vec!["rm", "-f"];
    args.extend(ids.lines());
    r.ok(&args);
    // Addresses go with their containers: a new one gets the lowest again.
    let out = sh(
        &r,
        &["--network", "many"],
        "ip -4 addr show eth0 | grep inet",
    );
    assert!(out.contains("inet 10.231.9.2/24"), "{out}");
}

/// The host's interface indexes.
fn ifindexes() -> HashSet<String> {
    links()
        .iter()
        .filter_map(|l| std::fs::read_to_string(format!("/sys/class/net/{l}/ifindex")).ok())
        .map(|i| i.trim().to_string())
        .collect()
}

#[test]
fn nothing_is_left_behind() {
    let r = setup();
    r.ok(&["network", "create", "left"]);
    let net_id = r.ok(&["network", "inspect", "-f", "{{.Id}}", "left"]);
    let bridge = format!("br-{}", &net_id[..12]);
    assert!(links().contains(&bridge));
    r.ok(&[
        "run",
        "-d",
        "--name",
        "a",
        "--network",
        "left",
        "busybox",
        "sleep",
        "1000",
    ]);
    r.ok(&["run", "-d", "--name", "b", "busybox", "sleep", "1000"]);
    // The host ends of their veth pairs, by the index each container's eth0 names.
    let ours: Vec<String> = ["a", "b"]
        .iter()
        .map(|c| {
            r.ok(&["exec", c, "cat", "/sys/class/net/eth0/iflink"])
                .trim()
                .to_string()
        })
        .collect();
    assert!(ours.iter().all(|i| ifindexes().contains(i)), "{ours:?}");
    // A container that exits by itself lets go of its namespace and veth pair.
    r.ok(&[
        "run",
        "--name",
        "done",
        "--network",
        "left",
        "busybox",
        "true",
    ]);
    assert_eq!(r.entries("netns").len(), 2, "{:?}", r.entries("netns"));
    let tables = || {
        String::from_utf8_lossy(
            &std::process::Command::new("nft")
                .args(["list", "tables"])
                .output()
                .unwrap()
                .stdout,
        )
        .into_owned()
    };
    let table = format!("ketch_{}", bridge.replace('-', "_"));
    assert!(tables().contains(&table), "{}", tables());
    r.ok(&["rm", "-f", "a", "b", "done"]);
    r.ok(&["network", "prune", "-f"]);
    assert!(!tables().contains(&table), "{}", tables());
    assert!(!links().contains(&bridge));
    assert!(r.entries("netns").is_empty(), "{:?}", r.entries("netns"));
    assert!(r.mounts().is_empty(), "{:?}", r.mounts());
    // Namespaces go asynchronously in the kernel, their veth pairs with them.
    ketch_tests::wait_until(&format!("the veth ends {ours:?} to go"), 10, || {
        let now = ifindexes();
        ours.iter().all(|i| !now.contains(i))
    });
}

#[test]
fn a_killed_monitor_leaves_nothing_after_the_next_command() {
    let r = setup();
    r.ok(&["run", "-d", "--name", "k", "busybox", "sleep", "1000"]);
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            r.path()
                .join("containers")
                .join(r.ok(&["inspect", "-f", "{{.Id}}", "k"]).trim())
                .join("state.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let shim = state["ShimPid"].as_i64().unwrap() as i32;
    unsafe { libc::kill(shim, libc::SIGKILL) };
    // The next command sees it exited; starting it again reuses nothing stale.
    ketch_tests::wait_until("k to be seen as exited", 10, || {
        r.ok(&["inspect", "-f", "{{.State.Status}}", "k"]).trim() == "exited"
    });
    r.ok(&["network", "ls"]);
    assert!(r.entries("netns").is_empty(), "{:?}", r.entries("netns"));
    r.ok(&["start", "k"]);
    assert_eq!(r.entries("netns").len(), 1);
    r.ok(&["rm", "-f", "k"]);
    assert!(r.entries("netns").is_empty());
}

/// In a network namespace of the test's own whose kernel forwards, so that what keeps the
/// networks apart is ketch's rules.
#[test]
fn containers_resolve_each_other_by_name_and_alias() {
    let net = PrivateNet::forwarding();
    let r = net.root();
    r.ok(&["network", "create", "app"]);
    r.ok(&["network", "create", "other"]);
    web(
        &r,
        "site",
        &["--network", "app", "--network-alias", "www"],
        "by-name",
    );
    r.ok(&[
        "run",
        "-d",
        "--name",
        "client",
        "--network",
        "app",
        "busybox",
        "sleep",
        "1000",
    ]);
    // By name and by alias, from a container that was there before.
    assert_eq!(
        r.ok(&["exec", "client", "sh", "-c", &get("site")]),
        "by-name\n"
    );
    assert_eq!(
        r.ok(&["exec", "client", "sh", "-c", &get("www")]),
        "by-name\n"
    );
    let conf = r.ok(&["exec", "client", "cat", "/etc/resolv.conf"]);
    assert!(conf.starts_with("nameserver 127.0.0.11\n"), "{conf}");
    // Port 53 stays the container's own: a server of its own may bind it on every address,
    // and names still resolve through 127.0.0.11.
    let ns = std::fs::File::open(format!("/proc/{}/ns/net", container_pid(&r, "client"))).unwrap();
    let own = std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        assert_eq!(
            unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) },
            0
        );
        std::net::UdpSocket::bind("0.0.0.0:53").map(|_| ())
    })
    .join()
    .unwrap();
    assert!(own.is_ok(), "{own:?}");
    // A third that joins later resolves them, and they resolve it.
    r.ok(&[
        "run",
        "-d",
        "--name",
        "late",
        "--network",
        "app",
        "busybox",
        "sleep",
        "1000",
    ]);
    assert_eq!(
        r.ok(&["exec", "late", "sh", "-c", &get("site")]),
        "by-name\n"
    );
    let late_ip = ip_on(&r, "late", "app");
    let out = r.ok(&["exec", "client", "nslookup", "late"]);
    assert!(out.contains(&format!("Address: {late_ip}")), "{out}");
    // Names are the network's own: another network knows none of them, and cannot reach
    // the addresses either.
    let out = r.run(&[
        "run",
        "--rm",
        "--network",
        "other",
        "busybox",
        "nslookup",
        "site",
    ]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("NXDOMAIN"),
        "{out:?}"
    );
    let site_ip = ip_on(&r, "site", "app");
    kept_apart_by_the_rules(&r, &net, "other", "app", &site_ip, "by-name");
    // A container that is gone is forgotten.
    r.ok(&["rm", "-f", "late"]);
    let out = r.run(&["exec", "client", "nslookup", "late"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("NXDOMAIN"),
        "{out:?}"
    );
    // --add-host and --dns reach the container's files.
    let out = sh(
        &r,
        &["--add-host", "db.local:10.9.8.7", "--dns", "10.1.1.1"],
        "grep db.local /etc/hosts; grep nameserver /etc/resolv.conf",
    );
    assert_eq!(out, "10.9.8.7\tdb.local\nnameserver 10.1.1.1\n");
    let (code, err) = r.fails(&["run", "--rm", "--add-host", "bad", "busybox", "true"]);
    assert_eq!(code, 125);
    assert!(err.contains("--add-host"), "{err}");
}

/// Reads an HTTP response through a published port from the host: the body's last line.
fn http_get(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out)
        .unwrap_or_else(|e| panic!("read from {addr}: {e}"));
    out.lines().last().unwrap_or_default().to_string()
}

/// An address of the host's own that is not loopback's, whatever the host has: one from
/// the benchmarking range (198.18.0.0/15, RFC 2544) on a veth pair made for the test (a
/// veth, as the kernel's dummy module may be missing), reached only from this host, and
/// removed with the pair when dropped.
struct HostAddress {
    link: String,
    addr: String,
}

impl HostAddress {
    fn new() -> HostAddress {
        let hex = ketch_tests::random_hex(3);
        let b = u32::from_str_radix(&hex, 16).unwrap();
        let h = HostAddress {
            link: format!("kt{hex}"),
            addr: format!("198.18.{}.{}", (b >> 8) & 0xff, 1 + (b & 0xff) % 254),
        };
        let o = std::process::Command::new("sh")
            .args([
                "-c",
                &format!(
                    "ip link add {0} type veth peer name {0}p && ip addr add {1}/32 dev {0} && \
                     ip link set {0} up && ip link set {0}p up",
                    h.link, h.addr
                ),
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
        h
    }
}

impl Drop for HostAddress {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.link])
            .status();
    }
}

fn container_pid(r: &Root, name: &str) -> i32 {
    r.ok(&["inspect", "-f", "{{.State.Pid}}", name])
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn published_ports_reach_the_container_from_the_host() {
    let r = setup();
    web(
        &r,
        "pub",
        &["-p", "18080:80", "-p", "127.0.0.1::80", "-p", "53/udp"],
        "published",
    );
    // From the host's loopback and from another address of its own.
    assert_eq!(http_get("127.0.0.1:18080"), "published");
    let own = HostAddress::new();
    assert_eq!(http_get(&format!("{}:18080", own.addr)), "published");
    // `port`, with a host port chosen for the second mapping.
    let ports = r.ok(&["port", "pub"]);
    assert!(ports.contains("80/tcp -> 0.0.0.0:18080\n"), "{ports}");
    let local = r.ok(&["port", "pub", "80/tcp"]);
    let chosen = local
        .lines()
        .find(|l| l.starts_with("127.0.0.1:"))
        .unwrap_or_else(|| panic!("{local}"))
        .to_string();
    assert_eq!(http_get(&chosen), "published");
    // UDP: a socket in the container's network namespace answers what the host sends to
    // the published port.
    let udp = r.ok(&["port", "pub", "53/udp"]).trim().to_string();
    let host_port: u16 = udp.rsplit(':').next().unwrap().parse().unwrap();
    let ns = std::fs::File::open(format!("/proc/{}/ns/net", container_pid(&r, "pub"))).unwrap();
    let (bound, is_bound) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        assert_eq!(
            unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) },
            0
        );
        let s = std::net::UdpSocket::bind("0.0.0.0:53").unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        bound.send(()).unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = s.recv_from(&mut buf).unwrap();
        s.send_to(&[&buf[..n], b"-pong"].concat(), from).unwrap();
    });
    is_bound.recv().unwrap();
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    client.send_to(b"ping", ("127.0.0.1", host_port)).unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = client
        .recv_from(&mut buf)
        .expect("no answer through the UDP port");
    server.join().unwrap();
    assert_eq!(&buf[..n], b"ping-pong");
    // A host port is one container's: a second is refused, and so is one a host process
    // holds.
    let (code, err) = r.fails(&["run", "--rm", "-p", "18080:80", "busybox", "true"]);
    assert_eq!(code, 125);
    assert!(err.contains("port is already allocated"), "{err}");
    let holder = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let held = holder.local_addr().unwrap().port().to_string();
    let (code, err) = r.fails(&[
        "run",
        "--rm",
        "-p",
        &format!("{held}:80"),
        "busybox",
        "true",
    ]);
    assert_eq!(code, 125);
    assert!(err.contains("port is already allocated"), "{err}");
    // When the container stops, its ports are withdrawn.
    r.ok(&["stop", "-t", "1", "pub"]);
    let map = std::process::Command::new("nft")
        .args([
            "list",
            "map",
            "ip",
            &format!("ketch_{}", r.bridge),
            "tcp_any",
        ])
        .output()
        .unwrap();
    assert!(map.status.success());
    assert!(!String::from_utf8_lossy(&map.stdout).contains("18080"));
    assert!(std::net::TcpStream::connect("127.0.0.1:18080").is_err());
    r.ok(&["rm", "pub"]);
    // -P publishes what the image exposes.
    let rootfs = busybox_rootfs();
    r.ok(&[
        "import",
        "--change",
        "EXPOSE 80",
        rootfs.to_str().unwrap(),
        "exposing",
    ]);
    r.ok(&[
        "run",
        "-d",
        "--name",
        "all",
        "-P",
        "exposing",
        "sh",
        "-c",
        "mkdir /www && echo all > /www/index.html && exec httpd -f -p 80 -h /www",
    ]);
    wait_listening(&r, "all", 80);
    let mapped = r.ok(&["port", "all", "80"]).trim().to_string();
    let port = mapped.rsplit(':').next().unwrap();
    assert_eq!(http_get(&format!("127.0.0.1:{port}")), "all");
    r.ok(&["rm", "-f", "all"]);
}

/// A host whose FORWARD chain drops by default (as Docker leaves it) and forwards between
/// interfaces: containers on one bridge still talk, and bridges stay apart. In a network
/// namespace of the test's own, so the host's firewall is never touched.
#[test]
fn bridges_work_behind_a_dropping_forward_chain_and_stay_apart_when_forwarding() {
    let net = PrivateNet::new();
    net.sh(
        "ip link set lo up && echo 1 > /proc/sys/net/ipv4/ip_forward && \
         nft add table ip filter && \
         nft add chain ip filter FORWARD '{ type filter hook forward priority 0; policy drop; }'",
    );
    let r = net.root();
    r.ok(&["network", "create", "one"]);
    r.ok(&["network", "create", "two"]);
    let rules = net.sh("nft list chain ip filter FORWARD");
    assert!(rules.matches("comment \"ketch br-").count() >= 4, "{rules}");
    web(&r, "srv", &["--network", "one"], "through-drop");
    assert_eq!(sh(&r, &["--network", "one"], &get("srv")), "through-drop\n");
    let ip = ip_on(&r, "srv", "one");
    // Apart by ketch's own rules; without them, the host chain's accepts let two reach one.
    kept_apart_by_the_rules(&r, &net, "two", "one", &ip, "through-drop");
    r.ok(&["rm", "-f", "srv"]);
    r.ok(&["network", "rm", "one", "two"]);
    // The removed networks' rules went with them (the default network's stay, as its
    // bridge does).
    let rules = net.sh("nft list chain ip filter FORWARD");
    assert!(!rules.contains("ketch br-"), "{rules}");
}

/// An IPv6 network (`--ipv6`, with a subnet or a unique local /64 picked): each container
/// has an address of it (the next free, or `--ip6`), with the route through the gateway, in
/// /etc/hosts, in `inspect`, and answered for AAAA by the name server; `--link-local-ip`
/// addresses are on the interface; ports published on every address reach the container
/// from the host's IPv6 addresses; another network cannot reach it, by ketch's rules; an
/// IPv6 address on a network without IPv6, or a link-local one that is not, is refused.
#[test]
fn ipv6_networks_address_name_route_publish_and_stay_apart() {
    let net = PrivateNet::forwarding();
    net.sh("echo 1 > /proc/sys/net/ipv6/conf/all/forwarding");
    let r = net.root();
    r.ok(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        "fd6a:1::/64",
        "six",
    ]);
    r.ok(&["network", "create", "--ipv6", "other"]);
    let ipam = r.ok(&[
        "network",
        "inspect",
        "-f",
        "{{.EnableIPv6}} {{json .IPAM.Config}}",
        "other",
    ]);
    assert!(ipam.starts_with("true "), "{ipam}");
    let v: serde_json::Value = serde_json::from_str(&ipam[5..]).unwrap();
    let ula = v[1]["Subnet"].as_str().unwrap();
    assert!(ula.starts_with("fd") && ula.ends_with("::/64"), "{ipam}");
    web(
        &r,
        "srv",
        &["--network", "six", "-p", "8066:80", "-p", "0.0.0.0:8067:80"],
        "over-six",
    );
    let six = |c: &str, field: &str| {
        r.ok(&[
            "inspect",
            "-f",
            &format!("{{{{.NetworkSettings.Networks.six.{field}}}}}"),
            c,
        ])
        .trim()
        .to_string()
    };
    assert_eq!(six("srv", "GlobalIPv6Address"), "fd6a:1::2");
    assert_eq!(six("srv", "GlobalIPv6PrefixLen"), "64");
    assert_eq!(six("srv", "IPv6Gateway"), "fd6a:1::1");
    let out = sh(
        &r,
        &[
            "--network",
            "six",
            "--ip6",
            "fd6a:1::77",
            "--link-local-ip",
            "169.254.8.8",
            "--link-local-ip",
            "fe80::8",
        ],
        &format!(
            "ip addr show eth0; ip -6 route show default; grep fd6a /etc/hosts; \
             nslookup -type=AAAA srv 127.0.0.11; {}",
            get("fd6a:1::2")
        ),
    );
    for want in [
        "inet6 fd6a:1::77/64",
        "inet 169.254.8.8/16",
        "inet6 fe80::8/64",
        "default via fd6a:1::1 dev eth0",
        "fd6a:1::77\t",
        "Address: fd6a:1::2",
        "over-six",
    ] {
        assert!(out.contains(want), "{want} in\n{out}");
    }
    // From the host's own IPv6 address (the gateway's, here) to the published port.
    let page =
        net.sh("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 5 fd6a:1::1 8066 | tail -1");
    assert_eq!(page, "over-six\n");
    // `0.0.0.0:` keeps a port off IPv6, as in Docker.
    let bridge = bridge_of(&r, "six");
    let v6 = net.sh(&format!(
        "nft list table ip6 ketch_{}",
        bridge.replace('-', "_")
    ));
    assert!(
        v6.contains("8066 : fd6a:1::2 . 80") && !v6.contains("8067"),
        "{v6}"
    );
    // IPv6 where the network has it, and no router advertisements taken; the IPv6 default
    // route from the first IPv6 network, though it is not the first.
    r.ok(&["network", "create", "four"]);
    let four = bridge_of(&r, "four");
    let knobs = net.sh(&format!(
        "cat /proc/sys/net/ipv6/conf/{four}/disable_ipv6 /proc/sys/net/ipv6/conf/{bridge}/disable_ipv6 /proc/sys/net/ipv6/conf/{bridge}/accept_ra"
    ));
    assert_eq!(knobs, "1\n0\n0\n");
    r.ok(&[
        "create",
        "--name",
        "dual",
        "--network",
        "four",
        "busybox",
        "sh",
        "-c",
        "cat /proc/sys/net/ipv6/conf/eth0/disable_ipv6 /proc/sys/net/ipv6/conf/eth1/accept_ra; ip -6 route show default",
    ]);
    r.ok(&["network", "connect", "six", "dual"]);
    let out = r.ok(&["start", "-a", "dual"]);
    assert!(
        out.starts_with("1\n0\ndefault via fd6a:1::1 dev eth1"),
        "{out}"
    );
    r.ok(&["rm", "dual"]);
    kept_apart_by_the_rules(&r, &net, "other", "six", "fd6a:1::2", "over-six");
    for (subnet, says) in [
        ("fe80::/64", "invalid IPv6 subnet fe80::/64"),
        ("::/0", "invalid IPv6 subnet ::/0"),
        ("ff05::/64", "invalid IPv6 subnet ff05::/64"),
    ] {
        let (code, err) = r.fails(&["network", "create", "--subnet", subnet, "bad6"]);
        assert_eq!(code, 1, "{subnet}: {err}");
        assert!(err.contains(says), "{subnet}: {err}");
    }
    // The address another holds, one that is not the network's, or not link-local.
    for (flags, says) in [
        (
            &["--network", "six", "--ip6", "fd6a:1::2"][..],
            "Address already in use: fd6a:1::2",
        ),
        (
            &["--network", "six", "--ip6", "fd6b::2"][..],
            "not a free host address of subnet fd6a:1::/64",
        ),
        (
            &["--network", "six", "--link-local-ip", "10.1.1.1"][..],
            "invalid link-local IP address: 10.1.1.1",
        ),
        (
            &["--network", "bridge", "--ip6", "fd6a:1::9"][..],
            "user specified IP address is supported on user defined networks only",
        ),
        (
            &["--network", "four", "--ip6", "fd6a:1::9"][..],
            "network four has no IPv6",
        ),
    ] {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["busybox", "true"]);
        let (code, err) = r.fails(&args);
        assert_eq!(code, 125, "{flags:?}: {err}");
        assert!(err.contains(says), "{flags:?}: {err}");
    }
    r.ok(&["rm", "-f", "srv"]);
    r.ok(&["network", "rm", "six", "other", "four"]);
    let tables = net.sh("nft list tables");
    assert!(!tables.contains(&bridge.replace('-', "_")), "{tables}");
}

/// A running container on the default network, connected to a user-defined one, asks the
/// name server from then on (only it: the host's servers are its upstreams). A connect that
/// fails leaves the container's networks as they were.
#[test]
fn connecting_a_default_network_container_gives_it_the_name_server() {
    let r = setup();
    r.ok(&["network", "create", "named"]);
    web(&r, "srv", &["--network", "named"], "named");
    r.ok(&["run", "-d", "--name", "plain", "busybox", "sleep", "1000"]);
    let before = r.ok(&["exec", "plain", "cat", "/etc/resolv.conf"]);
    assert!(!before.contains("127.0.0.11"), "{before}");
    r.ok(&["network", "connect", "named", "plain"]);
    let conf = r.ok(&["exec", "plain", "cat", "/etc/resolv.conf"]);
    let servers: Vec<&str> = conf
        .lines()
        .filter(|l| l.starts_with("nameserver"))
        .collect();
    assert_eq!(servers, ["nameserver 127.0.0.11"], "{conf}");
    assert!(conf.ends_with("options ndots:0\n"), "{conf}");
    let out = r.ok(&["exec", "plain", "nslookup", "srv"]);
    assert!(out.contains(&ip_on(&r, "srv", "named")), "{out}");
    // An address another container holds: refused, and nothing changes.
    r.ok(&["network", "create", "--subnet", "10.213.7.0/24", "third"]);
    r.ok(&[
        "run",
        "-d",
        "--name",
        "holder",
        "--network",
        "third",
        "--ip",
        "10.213.7.9",
        "busybox",
        "sleep",
        "1000",
    ]);
    let (code, err) = r.fails(&["network", "connect", "--ip", "10.213.7.9", "third", "plain"]);
    assert_eq!(code, 1, "{err}");
    // Now and at its next start.
    for restarted in [false, true] {
        if restarted {
            r.ok(&["restart", "-t", "0", "plain"]);
        }
        let networks: serde_json::Value = serde_json::from_str(&r.ok(&[
            "inspect",
            "-f",
            "{{json .NetworkSettings.Networks}}",
            "plain",
        ]))
        .unwrap();
        let mut names: Vec<&String> = networks.as_object().unwrap().keys().collect();
        names.sort();
        assert_eq!(names, ["bridge", "named"], "restarted: {restarted}");
        assert_eq!(
            r.ok(&["exec", "plain", "ls", "/sys/class/net"]),
            "eth0\neth1\nlo\n"
        );
    }
}

#[test]
fn connect_and_disconnect_a_running_container() {
    let r = setup();
    r.ok(&["network", "create", "first"]);
    r.ok(&["network", "create", "second"]);
    web(&r, "srv", &["--network", "first"], "connected");
    r.ok(&[
        "run",
        "-d",
        "--name",
        "cli",
        "--network",
        "second",
        "busybox",
        "sleep",
        "1000",
    ]);
    // Not on srv's network: no name, no route.
    let out = r.run(&["exec", "cli", "nslookup", "srv"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("NXDOMAIN"));
    r.ok(&["network", "connect", "--alias", "client", "first", "cli"]);
    assert_eq!(
        r.ok(&["exec", "cli", "sh", "-c", &get("srv")]),
        "connected\n"
    );
    let ifaces = r.ok(&["exec", "cli", "ls", "/sys/class/net"]);
    assert_eq!(ifaces, "eth0\neth1\nlo\n");
    // srv resolves it by its alias on that network.
    let out = r.ok(&["exec", "srv", "nslookup", "client"]);
    assert!(out.contains(&ip_on(&r, "cli", "first")), "{out}");
    let (code, err) = r.fails(&["network", "connect", "first", "cli"]);
    assert_eq!(code, 1);
    assert!(err.contains("already exists"), "{err}");
    // A connected network is joined again at the next start.
    r.ok(&["restart", "-t", "0", "cli"]);
    assert_eq!(
        r.ok(&["exec", "cli", "ls", "/sys/class/net"]),
        "eth0\neth1\nlo\n"
    );
    r.ok(&["network", "disconnect", "first", "cli"]);
    assert_eq!(r.ok(&["exec", "cli", "ls", "/sys/class/net"]), "eth0\nlo\n");
    let out = r.run(&["exec", "srv", "nslookup", "client"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("NXDOMAIN"));
    // Off its last network, the container keeps loopback only, also after a restart.
    r.ok(&["network", "disconnect", "second", "cli"]);
    assert_eq!(r.ok(&["exec", "cli", "ls", "/sys/class/net"]), "lo\n");
    r.ok(&["restart", "-t", "0", "cli"]);
    assert_eq!(r.ok(&["exec", "cli", "ls", "/sys/class/net"]), "lo\n");
    r.ok(&["rm", "-f", "srv", "cli"]);
    r.ok(&["network", "rm", "first", "second"]);
}

#[test]
fn subnets_come_from_the_configured_pool_and_skip_what_is_taken() {
    let mut r = setup();
    r.extra = vec![
        "--default-address-pool".into(),
        "base=10.232.0.0/16,size=24".into(),
    ];
    // The default network takes the pool's first subnet, then each new one the next free.
    r.ok(&["network", "create", "--subnet", "10.232.2.0/24", "p2"]);
    r.ok(&["network", "create", "p1"]);
    r.ok(&["network", "create", "p3"]);
    let subnet = |n: &str| {
        r.ok(&["network", "inspect", "-f", "{{json .IPAM.Config}}", n])
            .trim()
            .to_string()
    };
    assert!(
        subnet("bridge").contains("10.232.0.0/24"),
        "{}",
        subnet("bridge")
    );
    assert!(subnet("p1").contains("10.232.1.0/24"), "{}", subnet("p1"));
    assert!(subnet("p3").contains("10.232.3.0/24"), "{}", subnet("p3"));
    let (code, err) = r.fails(&["network", "create", "--subnet", "10.232.2.128/25", "p4"]);
    assert_eq!(code, 1);
    assert!(err.contains("overlaps"), "{err}");
    let (code, err) = r.fails(&["--default-address-pool", "base=nonsense", "network", "ls"]);
    assert_eq!(code, 125);
    assert!(err.contains("invalid CIDR"), "{err}");
    r.ok(&["network", "rm", "p1", "p2", "p3"]);
}

/// Where nft is absent, iptables sets the same rules (forced here with KETCH_FIREWALL, in a
/// network namespace of the test's own so the host's tables are never touched).
#[test]
fn iptables_does_the_same_where_nft_is_absent() {
    ketch_tests::require_tool("iptables");
    ketch_tests::require_tool("curl");
    let net = PrivateNet::forwarding();
    let mut r = Root::new();
    r.wrap = [
        vec!["env".into(), "KETCH_FIREWALL=iptables".into()],
        net.wrap(),
    ]
    .concat();
    r.ok(&["import", busybox_rootfs().to_str().unwrap(), "busybox"]);
    r.ok(&["network", "create", "one"]);
    r.ok(&["network", "create", "two"]);
    web(
        &r,
        "srv",
        &["--network", "one", "-p", "18081:80"],
        "via-iptables",
    );
    assert_eq!(sh(&r, &["--network", "one"], &get("srv")), "via-iptables\n");
    // The published port, from the namespace's own loopback.
    assert_eq!(
        net.sh("curl -sS -m 5 http://127.0.0.1:18081/"),
        "via-iptables\n"
    );
    let nat = net.sh("iptables -t nat -S");
    assert!(nat.contains("--dport 18081 -j DNAT"), "{nat}");
    assert!(
        !net.sh("nft list tables").contains("ketch_"),
        "nft was used"
    );
    // Apart by the iptables rules.
    let ip = ip_on(&r, "srv", "one");
    kept_apart_by_the_rules(&r, &net, "two", "one", &ip, "via-iptables");
    r.ok(&["stop", "-t", "1", "srv"]);
    assert!(!net.sh("iptables -t nat -S").contains("18081"));
    r.ok(&["rm", "srv"]);
    let id = r.ok(&["network", "inspect", "-f", "{{.Id}}", "one"]);
    r.ok(&["network", "rm", "one", "two"]);
    let all = net.sh("iptables -t nat -S; iptables -S");
    assert!(!all.contains(&format!("br-{}", &id[..12])), "{all}");
}

/// A reply to the name server's forwarded query `q` (`ip` as its A answer when `ip` is
/// given, and the query is for an A record).
fn dns_answer(q: &[u8], ip: Option<[u8; 4]>) -> Vec<u8> {
    // The question: a name of labels, then type and class.
    let mut end = 12;
    while end < q.len() && q[end] != 0 {
        end += 1 + q[end] as usize;
    }
    let end = (end + 5).min(q.len());
    let qtype = u16::from_be_bytes([q[end - 4], q[end - 3]]);
    let mut r = q[..end].to_vec();
    r[2] |= 0x80;
    r[3] = 0x80;
    r[6..12].copy_from_slice(&[0, 0, 0, 0, 0, 0]);
    if let (Some(ip), 1) = (ip, qtype) {
        r[7] = 1;
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        r.extend_from_slice(&ip);
    }
    r
}

/// The name server forwards outside names to the container's `--dns` server, and takes the
/// answer only from that server: a forged reply sent first, from another address of the
/// host, with the right ID and question, never reaches the container.
#[test]
fn the_name_server_takes_answers_only_from_the_server_it_asked() {
    use std::net::UdpSocket;
    let r = setup();
    r.ok(&["network", "create", "dnsnet"]);
    // The upstream server, and a forger, on loopback addresses of the host.
    let upstream = UdpSocket::bind("127.0.0.77:53").expect("bind 127.0.0.77:53");
    upstream
        .set_read_timeout(Some(std::time::Duration::from_millis(200)))
        .unwrap();
    let forger = UdpSocket::bind("127.0.0.78:0").unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let server = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            let mut asked = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok((n, from)) = upstream.recv_from(&mut buf) else {
                    continue;
                };
                asked += 1;
                // The forgery first, then the answer: sent in this order from one thread,
                // over loopback, they arrive in this order.
                let _ = forger.send_to(&dns_answer(&buf[..n], Some([6, 6, 6, 6])), from);
                let _ = upstream.send_to(&dns_answer(&buf[..n], Some([10, 9, 8, 7])), from);
            }
            asked
        })
    };
    let out = r.run(&[
        "run",
        "--rm",
        "--network",
        "dnsnet",
        "--dns",
        "127.0.0.77",
        "busybox",
        "nslookup",
        "outside.example",
    ]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let asked = server.join().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        asked > 0,
        "the query never reached the upstream server: {out:?}"
    );
    assert!(
        !text.contains("6.6.6.6"),
        "a forged answer got through: {text}"
    );
    assert!(text.contains("10.9.8.7"), "{out:?}");
}

/// `network create --gateway --ip-range --label`: the bridge holds the gateway, containers
/// get addresses from the range and route through the gateway, and the labels are the
/// network's, to inspect and to filter by.
#[test]
fn gateway_ip_range_and_labels_of_a_new_network() {
    let net = PrivateNet::new();
    let r = net.root();
    r.ok(&[
        "network",
        "create",
        "--subnet",
        "10.231.11.0/24",
        "--gateway",
        "10.231.11.254",
        "--ip-range",
        "10.231.11.128/29",
        "--label",
        "team=blue",
        "--label",
        "tier=web",
        "ranged",
    ]);
    r.ok(&["network", "create", "--label", "team=red", "plain"]);
    let ipam: serde_json::Value = serde_json::from_str(&r.ok(&[
        "network",
        "inspect",
        "-f",
        "{{json .IPAM.Config}}",
        "ranged",
    ]))
    .unwrap();
    assert_eq!(
        ipam,
        serde_json::json!([{
            "Subnet": "10.231.11.0/24",
            "Gateway": "10.231.11.254",
            "IPRange": "10.231.11.128/29"
        }])
    );
    let bridge = bridge_of(&r, "ranged");
    let on_bridge = net.sh(&format!("ip -4 -o addr show dev {bridge}"));
    assert!(on_bridge.contains("inet 10.231.11.254/24"), "{on_bridge}");
    // The range's eight addresses, and no more: each container gets one of them.
    let mut got = HashSet::new();
    for i in 0..8 {
        let name = format!("c{i}");
        r.ok(&[
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            "ranged",
            "busybox",
            "sleep",
            "1000",
        ]);
        let ip: std::net::Ipv4Addr = ip_on(&r, &name, "ranged").parse().unwrap();
        assert_eq!(ip.octets()[..3], [10, 231, 11], "{ip}");
        assert!(
            (128..136).contains(&ip.octets()[3]),
            "{ip} is outside the range"
        );
        got.insert(ip);
    }
    assert_eq!(got.len(), 8, "{got:?}");
    let (code, err) = r.fails(&["run", "--rm", "--network", "ranged", "busybox", "true"]);
    assert_eq!(code, 125);
    assert!(
        err.contains("no available IPv4 addresses on network ranged"),
        "{err}"
    );
    let routes = r.ok(&["exec", "c0", "ip", "route"]);
    assert!(routes.contains("default via 10.231.11.254"), "{routes}");
    // Labels, in inspect and as filters.
    let labels = r.ok(&["network", "inspect", "-f", "{{json .Labels}}", "ranged"]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&labels).unwrap(),
        serde_json::json!({"team": "blue", "tier": "web"})
    );
    let names =
        |filter: &str| r.ok(&["network", "ls", "--filter", filter, "--format", "{{.Name}}"]);
    assert_eq!(names("label=team=blue"), "ranged\n");
    assert_eq!(names("label=tier"), "ranged\n");
    assert_eq!(names("label=team"), "plain\nranged\n");
    assert_eq!(names("label=team=green"), "");
    // What does not fit is refused, naming why.
    for (flags, words) in [
        (
            &["--gateway", "10.231.12.1"][..],
            "--ip-range and --gateway need --subnet",
        ),
        (
            &["--subnet", "10.231.12.0/24", "--gateway", "10.231.13.1"][..],
            "gateway 10.231.13.1 is not within subnet 10.231.12.0/24",
        ),
        (
            &["--subnet", "10.231.12.0/24", "--ip-range", "10.231.13.0/28"][..],
            "ip-range 10.231.13.0/28 is not within subnet 10.231.12.0/24",
        ),
    ] {
        let mut args = vec!["network", "create"];
        args.extend_from_slice(flags);
        args.push("bad");
        let (code, err) = r.fails(&args);
        assert_eq!(code, 1, "{flags:?}");
        assert!(err.contains(words), "{flags:?}: {err}");
    }
}

/// `KETCH_DEFAULT_ADDRESS_POOL` from the environment, pools separated by `;`: subnets come
/// from the first pool until it is used up, then the next, and a subnet that a route of the
/// host's covers is skipped (the route of an address on a veth pair in a network namespace of
/// the test's own).
#[test]
fn address_pools_from_the_environment_skip_routed_ranges() {
    let net = PrivateNet::new();
    net.sh("ip link add kt-routed type veth peer name kt-routed-p && \
         ip addr add 10.233.0.1/24 dev kt-routed && \
         ip link set kt-routed up && ip link set kt-routed-p up");
    let mut r = Root::new();
    r.wrap = [
        net.wrap(),
        vec![
            "env".into(),
            "KETCH_DEFAULT_ADDRESS_POOL=base=10.233.0.0/23,size=24;base=10.234.0.0/16,size=24"
                .into(),
        ],
    ]
    .concat();
    let subnet = |n: &str| {
        let config: serde_json::Value =
            serde_json::from_str(&r.ok(&["network", "inspect", "-f", "{{json .IPAM.Config}}", n]))
                .unwrap();
        config[0]["Subnet"].as_str().unwrap().to_string()
    };
    // The default network: the first pool's first subnet is routed, so its second.
    assert_eq!(subnet("bridge"), "10.233.1.0/24");
    // The first pool is used up: the second pool's.
    r.ok(&["network", "create", "a"]);
    assert_eq!(subnet("a"), "10.234.0.0/24");
    r.ok(&["network", "create", "b"]);
    assert_eq!(subnet("b"), "10.234.1.0/24");
    // Without the route, its subnet is free again.
    net.sh("ip link del kt-routed");
    r.ok(&["network", "create", "c"]);
    assert_eq!(subnet("c"), "10.233.0.0/24");
    // A pool that does not parse is refused, naming it.
    let mut bad = Root::new();
    bad.wrap = vec![
        "env".into(),
        "KETCH_DEFAULT_ADDRESS_POOL=base=10.233.0.0/23,size=24;base=nonsense".into(),
    ];
    let (code, err) = bad.fails(&["network", "ls"]);
    assert_eq!(code, 125);
    assert!(
        err.contains("'base=nonsense'") && err.contains("invalid CIDR address: nonsense"),
        "{err}"
    );
}

/// As Docker does, and as the README says: without `--ip-forward`/`KETCH_IP_FORWARD`, making
/// a bridge network with a way out turns on the host's IPv4 forwarding; `false` leaves it,
/// and so does an internal network. In a network namespace of the test's own (the setting
/// is per namespace), so the host's stays as it is.
#[test]
fn ip_forwarding_is_turned_on_by_default() {
    let host = || std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let before = host();
    let net = PrivateNet::new();
    net.sh("echo 0 > /proc/sys/net/ipv4/ip_forward");
    let forwarding = || net.sh("cat /proc/sys/net/ipv4/ip_forward");
    // Root's commands say KETCH_IP_FORWARD=false: the default network leaves it alone.
    let r = net.root();
    r.ok(&["network", "ls"]);
    assert_eq!(forwarding(), "0\n");
    // Without the variable: the flag, then the default.
    let default = |args: &[&str]| {
        let o = r
            .cmd()
            .env_remove("KETCH_IP_FORWARD")
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {o:?}");
    };
    default(&["--ip-forward=false", "network", "create", "kept"]);
    assert_eq!(forwarding(), "0\n");
    default(&["network", "create", "--internal", "inner"]);
    assert_eq!(forwarding(), "0\n");
    default(&["network", "create", "out"]);
    assert_eq!(forwarding(), "1\n");
    assert_eq!(host(), before, "the host's own setting changed");
}

/// A PATH like this process's, without `nft`, `iptables` and their kin (or without `hide`
/// only): a directory of links to everything else.
fn path_without(hide: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("ketch-test-path-")
        .tempdir()
        .unwrap();
    for d in std::env::var("PATH").unwrap().split(':') {
        let Ok(entries) = std::fs::read_dir(d) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let link = dir.path().join(&name);
            if hide.iter().any(|h| name.starts_with(h)) || link.exists() {
                continue;
            }
            let _ = std::os::unix::fs::symlink(e.path(), link);
        }
    }
    dir
}

/// Where neither nftables nor iptables is installed, no bridge network is made (Docker's
/// daemon does not start without iptables): the error names what is missing and what to
/// install, and nothing of a network is left. The engine finds both through PATH; here a
/// PATH without them, in a network namespace of the test's own.
#[test]
fn without_nft_or_iptables_no_network_is_made() {
    let net = PrivateNet::new();
    let bare = path_without(&["nft", "iptables", "ip6tables", "xtables"]);
    let mut r = net.root();
    let normal = r.wrap.clone();
    r.wrap = [
        normal.clone(),
        vec!["env".into(), format!("PATH={}", bare.path().display())],
    ]
    .concat();
    let nothing_made = |r: &Root| {
        assert_eq!(net.sh("ip -o link show | grep -v ': lo:' || true"), "");
        assert_eq!(net.sh("nft list tables"), "");
        assert_eq!(r.count("networks"), 0);
    };
    for args in [
        &["network", "create", "isolated"][..],
        &["run", "--rm", "busybox", "true"][..],
        &["network", "ls"][..],
    ] {
        let (code, err) = r.fails(args);
        assert_eq!(code, if args[0] == "run" { 125 } else { 1 }, "{args:?}");
        for words in [
            "no firewall to isolate networks with",
            "neither `nft` nor `iptables`",
            &format!("PATH={}", bare.path().display()),
            "install nftables",
            "or iptables",
        ] {
            assert!(err.contains(words), "{args:?}: {words:?} missing: {err}");
        }
        nothing_made(&r);
    }
    // Asked for by name, nft is that or nothing, even with iptables there.
    let no_nft = path_without(&["nft"]);
    r.wrap = [
        normal.clone(),
        vec![
            "env".into(),
            format!("PATH={}", no_nft.path().display()),
            "KETCH_FIREWALL=nft".into(),
        ],
    ]
    .concat();
    let (code, err) = r.fails(&["network", "create", "isolated"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("KETCH_FIREWALL=nft, but `nft` was not found"),
        "{err}"
    );
    nothing_made(&r);
    // The control: with the tools on PATH, the same command makes the network.
    r.wrap = normal.clone();
    r.ok(&["network", "create", "isolated"]);
    let bridge = bridge_of(&r, "isolated");
    let table = format!("ketch_{}", bridge.replace('-', "_"));
    assert!(
        net.sh("nft list tables").contains(&table),
        "no table for {bridge}"
    );
    // A network whose bridge and rules are gone (as after a reboot) is not made again
    // without them either: the container does not start, and no bridge is left.
    net.sh(&format!(
        "ip link del {bridge} && nft delete table ip {table}"
    ));
    r.wrap = [
        normal.clone(),
        vec!["env".into(), format!("PATH={}", bare.path().display())],
    ]
    .concat();
    let (code, err) = r.fails(&["run", "--rm", "--network", "isolated", "busybox", "true"]);
    assert_eq!(code, 125);
    assert!(
        err.contains(&format!("set up the firewall of {bridge}"))
            && err.contains("neither `nft` nor `iptables`"),
        "{err}"
    );
    assert!(
        !net.sh("ip -o link show").contains(&bridge),
        "{bridge} left without rules"
    );
    // The default network, made while the firewall was there, still takes containers once
    // it is gone; but no port is published without one.
    r.ok(&["run", "--rm", "busybox", "true"]);
    let (code, err) = r.fails(&["run", "--rm", "-p", "18081:80", "busybox", "true"]);
    assert_eq!(code, 125);
    assert!(
        err.contains("publishing ports needs nftables or iptables, and neither is installed"),
        "{err}"
    );
    assert_eq!(r.count("containers"), 0);
    r.wrap = normal;
}
