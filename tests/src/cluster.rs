//! Hosts simulated on this machine for the tests of overlay networks: each host a network
//! namespace with a state root and a daemon of its own, joined by a veth pair to a bridge in
//! an underlay namespace, where one etcd member (Debian's `etcd-server`) listens. Addresses
//! are the underlay's own (198.18.0.0/24, in namespaces nothing else shares): no packet
//! leaves the machine. Everything goes with the values that made it: the namespaces (and
//! with them every device, route and firewall rule in them), the processes, the roots.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Daemon, PrivateNet, Root, busybox_rootfs, random_hex};

/// The underlay's bridge address, where etcd listens.
pub const STORE_IP: &str = "198.18.0.1";

/// Runs `f` on a thread of its own inside the network namespace `net` (a namespace is a
/// thread's): what it connects to is what that namespace reaches.
pub fn in_netns<T: Send + 'static>(net: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{net}");
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&path).unwrap();
        // SAFETY: a descriptor this thread holds; the namespace is this thread's alone.
        let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&ns), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .unwrap()
}

/// The network between the hosts: a namespace with a bridge, and the store on it.
pub struct Underlay {
    pub net: PrivateNet,
    pub etcd: Etcd,
    hosts: u8,
}

impl Underlay {
    pub fn new() -> Underlay {
        Underlay::start(false)
    }

    /// One whose store is spoken to over mutual TLS only: its certificates are those of
    /// [`crate::make_certs`], in [`Underlay::certs`].
    pub fn with_tls() -> Underlay {
        Underlay::start(true)
    }

    fn start(tls: bool) -> Underlay {
        let net = PrivateNet::new();
        net.sh(&format!(
            "ip link set lo up && ip link add ul0 type bridge && \
             ip addr add {STORE_IP}/24 dev ul0 && ip link set ul0 up"
        ));
        let etcd = Etcd::start(&net.0, tls);
        Underlay {
            net,
            etcd,
            hosts: 0,
        }
    }

    /// Where the store's certificates are, with TLS.
    pub fn certs(&self) -> Option<PathBuf> {
        self.etcd.tls.then(|| self.etcd.dir.path().join("certs"))
    }

    /// The flags of an engine in the cluster with the client certificate `client` (`client`,
    /// `rogue`) of [`Underlay::certs`], or none.
    pub fn tls_flags(&self, client: Option<&str>) -> Vec<String> {
        let Some(certs) = self.certs() else {
            return vec![];
        };
        let c = |n: &str| certs.join(n).display().to_string();
        let mut flags = vec![format!("--cluster-store-opt=kv.cacertfile={}", c("ca.pem"))];
        if let Some(client) = client {
            flags.push(format!(
                "--cluster-store-opt=kv.certfile={}",
                c(&format!("{client}-cert.pem"))
            ));
            flags.push(format!(
                "--cluster-store-opt=kv.keyfile={}",
                c(&format!("{client}-key.pem"))
            ));
        }
        flags
    }

    /// `etcd://IP:PORT` of the store, as engines are given it.
    pub fn store_url(&self) -> String {
        format!("etcd://{STORE_IP}:2379")
    }

    /// A new host on the underlay, its address the next (198.18.0.11, .12 ...), with a
    /// state root that has the busybox image, and no daemon yet.
    pub fn host(&mut self) -> Host {
        self.host_with_disk(None)
    }

    /// A new host (as [`Underlay::host`]) whose state root, with `disk` bytes, is a file
    /// system of its own: a small tmpfs, for a disk that fills up.
    pub fn host_with_disk(&mut self, disk: Option<u64>) -> Host {
        self.hosts += 1;
        let ip = format!("198.18.0.{}", 10 + self.hosts);
        let net = PrivateNet::new();
        let (outside, inside) = (
            format!("ul{}", random_hex(4)),
            format!("uh{}", random_hex(4)),
        );
        // The pair is made in the underlay; one end goes into the host as its eth0.
        self.net.sh(&format!(
            "ip link add {outside} type veth peer name {inside} && \
             ip link set {outside} master ul0 up && \
             ip link set {inside} netns {host}",
            host = net.0
        ));
        net.sh(&format!(
            "ip link set lo up && ip link set {inside} name eth0 && \
             ip addr add {ip}/24 dev eth0 && ip link set eth0 up"
        ));
        // Every `ketch` of the root, its cleanup too, is in the cluster.
        let mut root = Root::new();
        if let Some(bytes) = disk {
            root.on_tmpfs(bytes);
        }
        root.wrap = net.wrap();
        root.extra = vec![
            "--cluster-store".into(),
            self.store_url(),
            "--cluster-advertise".into(),
            ip.clone(),
        ];
        root.extra.extend(self.tls_flags(Some("client")));
        root.ok(&["import", busybox_rootfs().to_str().unwrap(), "busybox"]);
        Host {
            root,
            net,
            ip,
            daemon: None,
        }
    }

    /// `etcdctl` in the underlay, with what it needs to reach the store.
    pub fn etcdctl(&self) -> String {
        self.etcd.ctl()
    }

    /// Every key the store holds under `prefix`.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let out = self.net.sh(&format!(
            "{} get --prefix --keys-only '{prefix}'",
            self.etcdctl()
        ));
        out.lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }
}

impl Default for Underlay {
    fn default() -> Self {
        Self::new()
    }
}

/// One etcd member with a data directory of its own, in the underlay's namespace.
pub struct Etcd {
    net: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
    tls: bool,
}

impl Etcd {
    fn start(net: &str, tls: bool) -> Etcd {
        let mut e = Etcd {
            net: net.to_string(),
            dir: tempfile::Builder::new()
                .prefix("ketch-etcd-")
                .tempdir()
                .unwrap(),
            child: None,
            tls,
        };
        if tls {
            let certs = e.dir.path().join("certs");
            std::fs::create_dir(&certs).unwrap();
            crate::make_certs(&certs, STORE_IP);
        }
        e.resume();
        e
    }

    fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }

    /// `etcdctl` with the endpoint (and with TLS the client's certificate).
    fn ctl(&self) -> String {
        let mut c = format!(
            "ETCDCTL_API=3 etcdctl --endpoints {}://{STORE_IP}:2379",
            self.scheme()
        );
        if self.tls {
            let certs = self.dir.path().join("certs");
            c.push_str(&format!(
                " --cacert {0}/ca.pem --cert {0}/client-cert.pem --key {0}/client-key.pem",
                certs.display()
            ));
        }
        c
    }

    /// Starts the member again on its data (after [`Etcd::stop`]); returns once it answers.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "etcd already runs");
        let client = format!("{}://{STORE_IP}:2379", self.scheme());
        let peer = "http://127.0.0.1:2380";
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.net))
            .arg("etcd");
        if self.tls {
            let certs = self.dir.path().join("certs");
            cmd.arg("--client-cert-auth")
                .arg(format!(
                    "--trusted-ca-file={}",
                    certs.join("ca.pem").display()
                ))
                .arg(format!(
                    "--cert-file={}",
                    certs.join("server-cert.pem").display()
                ))
                .arg(format!(
                    "--key-file={}",
                    certs.join("server-key.pem").display()
                ));
        }
        cmd.args(["--name", "store"])
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", peer])
            .args(["--initial-advertise-peer-urls", peer])
            .args(["--initial-cluster", &format!("store={peer}")])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.path().join("log")).unwrap());
        // Gone with the test even when it fails in a way that skips the drop.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        self.child = Some(cmd.spawn().unwrap());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let o = Command::new("nsenter")
                .arg(format!("--net=/run/netns/{}", self.net))
                .args(["sh", "-c"])
                .arg(format!(
                    "{} --command-timeout 1s endpoint health",
                    self.ctl()
                ))
                .output()
                .unwrap();
            if o.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not come up: {}",
                std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the member (its data stays for [`Etcd::resume`]).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> PathBuf {
        self.dir.path().join("log")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A simulated host: its namespace, its address on the underlay, its state root (every
/// `ketch` of which runs in the namespace) and, once started, its daemon.
pub struct Host {
    pub root: Root,
    pub net: PrivateNet,
    pub ip: String,
    pub daemon: Option<Daemon>,
}

impl Host {
    /// `ketch` on this host, embedded, in the cluster.
    pub fn cmd(&self) -> Command {
        self.root.cmd()
    }

    /// Starts this host's daemon, in the cluster.
    pub fn start_daemon(&mut self) {
        self.daemon = Some(Daemon::start(&self.root));
    }

    /// Starts this host's daemon, in the cluster, also listening with `daemon_args` (`-H
    /// tcp://...` and its TLS, say).
    pub fn start_daemon_with(&mut self, daemon_args: &[String]) {
        self.daemon = Some(Daemon::start_full(&self.root, |_| {}, daemon_args));
    }

    pub fn stop_daemon(&mut self) {
        self.daemon = None;
    }

    /// Runs `ketch ARGS` on this host in the cluster; its output, asserting success.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.cmd().args(args).output().unwrap();
        assert!(
            o.status.success(),
            "{}: ketch {args:?}: {}{}",
            self.ip,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Runs `ketch ARGS` on this host in the cluster: (exit code, stderr), asserting failure.
    pub fn fails(&self, args: &[&str]) -> (i32, String) {
        let o = self.cmd().args(args).output().unwrap();
        assert!(
            !o.status.success(),
            "{}: ketch {args:?} succeeded: {}",
            self.ip,
            String::from_utf8_lossy(&o.stdout)
        );
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // The daemon first, then the root's containers and networks (the root's drop),
        // then the namespace.
        self.daemon = None;
    }
}

/// A script for a busybox container: the body of `http://HOST/` through `nc`, tried for up
/// to ten seconds (the other host learns of a new container within moments).
pub fn fetch(host: &str) -> String {
    format!(
        "for i in $(seq 50); do \
           out=$(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {host} 80 2>&1) && \
           case \"$out\" in *served-by-*) echo \"$out\" | tail -n 1; exit 0;; esac; \
           sleep 0.2; \
         done; echo \"$out\"; exit 1"
    )
}
