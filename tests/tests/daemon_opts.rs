//! `ketch daemon`'s own options and life: where it listens (UNIX socket with its mode and
//! group, TCP on loopback, TCP with mutual TLS, TLS files from `KETCH_CERT_PATH`), and how it
//! stops.

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use ketch_tests::hostile::{Reaped, alive};
use ketch_tests::{Daemon, Root, busybox_rootfs, ketch_bin, wait_until};

/// A daemon started from `cmd`, its stderr kept in `log`, up once `ready` holds; killed and
/// collected when dropped. One that exits before it is up fails the test with what it said.
fn spawn_daemon(mut cmd: Command, log: &Path, mut ready: impl FnMut() -> bool) -> Reaped {
    cmd.stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    // Gone with the test's thread even when the test fails in a way that skips the drop.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = Reaped(cmd.spawn().unwrap());
    wait_until("the daemon to listen", 10, || {
        if let Some(st) = child.0.try_wait().unwrap() {
            panic!(
                "the daemon exited ({st}) before it listened: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        ready()
    });
    child
}

/// Requires that the daemon `cmd` would start refuses to: it exits with `code` on its own,
/// saying `words`. One that serves instead fails the test, killed, rather than hang it.
fn refuses_to_start(mut cmd: Command, log: &Path, code: i32, words: &str) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    let mut child = Reaped(cmd.spawn().unwrap());
    let mut status = None;
    wait_until("the daemon to refuse to start", 10, || {
        status = child.0.try_wait().unwrap();
        status.is_some()
    });
    let err = std::fs::read_to_string(log).unwrap();
    assert!(
        status.unwrap().code() == Some(code) && err.contains(words),
        "wanted exit {code} and {words:?}, got {status:?}: {err}"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn tcp_up(port: u16) -> impl FnMut() -> bool {
    move || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n{}{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Requires that `o` failed with `code` and that its stderr says `words`.
fn failed_with(o: &Output, code: i32, words: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.code() == Some(code) && err.contains(words),
        "wanted exit {code} and {words:?}, got {}",
        text(o)
    );
}

#[test]
fn tcp_only_on_loopback_without_tls() {
    ketch_tests::require_tool("docker");
    let r = Root::new();
    r.busybox("busybox");
    // Not on an address others reach, without TLS: refused, and it says why.
    let mut cmd = r.cmd();
    cmd.args(["daemon", "-H", "tcp://0.0.0.0:0"]);
    refuses_to_start(
        cmd,
        &r.dir.path().join("refused.log"),
        1,
        "refusing to listen on tcp://0.0.0.0:0 without mutual TLS",
    );
    // On loopback it serves, and the docker CLI talks to it.
    let port = free_port();
    let mut cmd = r.cmd();
    cmd.args(["daemon", "-H", &format!("tcp://127.0.0.1:{port}")]);
    let _daemon = spawn_daemon(cmd, &r.dir.path().join("daemon.log"), tcp_up(port));
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /_ping HTTP/1.1\r\nHost: k\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(
        out.starts_with("HTTP/1.1 200") && out.ends_with("OK"),
        "{out}"
    );
    let o = Command::new("docker")
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "busybox",
            "echo",
            "over tcp",
        ])
        .env("DOCKER_HOST", format!("tcp://127.0.0.1:{port}"))
        .env("DOCKER_CONFIG", r.dir.path().join("docker-config"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "over tcp\n", "{o:?}");
    assert_eq!(r.ok(&["ps", "-aq"]), "");
}

/// Mutual TLS: on an address others reach, with --tlsverify, the daemon serves clients whose
/// certificate the CA signed, and no one else.
#[test]
fn tcp_with_mutual_tls() {
    ketch_tests::require_tool("docker");
    let r = Root::new();
    r.ok(&["import", busybox_rootfs().to_str().unwrap(), "busybox"]);
    let certs = r.dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    ketch_tests::make_certs(&certs, "127.0.0.1");
    let c = |n: &str| certs.join(n).display().to_string();
    let port = free_port();
    let listen = format!("tcp://0.0.0.0:{port}");
    // TLS without client verification is not enough off loopback.
    let mut cmd = r.cmd();
    cmd.args([
        "daemon",
        "-H",
        &listen,
        "--tls",
        "--tlscert",
        &c("server-cert.pem"),
        "--tlskey",
        &c("server-key.pem"),
    ]);
    refuses_to_start(
        cmd,
        &r.dir.path().join("refused.log"),
        1,
        &format!("refusing to listen on {listen} without mutual TLS"),
    );
    let mut cmd = r.cmd();
    cmd.args([
        "daemon",
        "-H",
        &listen,
        "--tlsverify",
        "--tlscacert",
        &c("ca.pem"),
        "--tlscert",
        &c("server-cert.pem"),
        "--tlskey",
        &c("server-key.pem"),
    ]);
    let _daemon = spawn_daemon(cmd, &r.dir.path().join("daemon.log"), tcp_up(port));
    let host = format!("tcp://127.0.0.1:{port}");
    let docker = |tls: &[String], args: &[&str]| {
        Command::new("docker")
            .args(tls)
            .args(["-H", &host])
            .args(args)
            .env("DOCKER_CONFIG", r.dir.path().join("docker-config"))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let with = |cert: &str, key: &str| {
        vec![
            "--tlsverify".to_string(),
            "--tlscacert".into(),
            c("ca.pem"),
            "--tlscert".into(),
            c(cert),
            "--tlskey".into(),
            c(key),
        ]
    };
    let o = docker(
        &with("client-cert.pem", "client-key.pem"),
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "busybox",
            "echo",
            "over tls",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "over tls\n", "{o:?}");
    // No certificate, or one another CA signed: the handshake is refused, with the alert that
    // says so; no TLS at all: the answer is not HTTP.
    let no_cert = vec!["--tls".to_string(), "--tlscacert".into(), c("ca.pem")];
    for (tls, words) in [
        (no_cert, "remote error: tls: "),
        (
            with("rogue-cert.pem", "rogue-key.pem"),
            "remote error: tls: ",
        ),
        (vec![], "TLS-enabled daemon"),
    ] {
        let o = docker(&tls, &["ps", "-a"]);
        failed_with(&o, 1, words);
    }
    // The ketch CLI as a client: with the certificate, and refused with another CA's.
    let ketch = |cert: &str, key: &str| {
        r.cmd()
            .args([
                "-H",
                &host,
                "--tlsverify",
                "--tlscacert",
                &c("ca.pem"),
                "--tlscert",
                &c(cert),
                "--tlskey",
                &c(key),
                "run",
                "--rm",
                "--network",
                "none",
                "busybox",
                "echo",
                "ketch over tls",
            ])
            .output()
            .unwrap()
    };
    let o = ketch("client-cert.pem", "client-key.pem");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "ketch over tls\n",
        "{o:?}"
    );
    // The refusal reaches the ketch client as the connection's end (reset, or closed): it
    // names the daemon it was talking to, with `run`'s exit code for an engine error.
    let o = ketch("rogue-cert.pem", "rogue-key.pem");
    failed_with(&o, 125, &format!("talking to the daemon at {host}"));
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(b"GET /_ping HTTP/1.1\r\nHost: k\r\nConnection: close\r\n\r\n");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(!out.starts_with(b"HTTP/1.1"), "{out:?}");
    assert_eq!(r.ok(&["ps", "-aq"]), "");
}

/// `KETCH_CERT_PATH` (with `KETCH_TLS_VERIFY`), as `DOCKER_CERT_PATH`: a directory with
/// `ca.pem`, `cert.pem` and `key.pem`, the daemon's and the client's, and nothing on the
/// command line. Each side proves it read the files: the daemon starts only with them, and a
/// client gets through only with the directory whose certificate the CA signed.
#[test]
fn tls_files_from_ketch_cert_path() {
    let r = Root::new();
    r.busybox("busybox");
    r.ok(&["create", "--name", "viacertpath", "busybox", "true"]);
    let certs = r.dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    ketch_tests::make_certs(&certs, "127.0.0.1");
    let dir = |name: &str, cert: Option<&str>| {
        let d = certs.join(name);
        std::fs::create_dir(&d).unwrap();
        std::fs::copy(certs.join("ca.pem"), d.join("ca.pem")).unwrap();
        if let Some(c) = cert {
            std::fs::copy(certs.join(format!("{c}-cert.pem")), d.join("cert.pem")).unwrap();
            std::fs::copy(certs.join(format!("{c}-key.pem")), d.join("key.pem")).unwrap();
        }
        d
    };
    let (server, client) = (dir("server", Some("server")), dir("client", Some("client")));
    let (rogue, ca_only) = (dir("rogue", Some("rogue")), dir("ca-only", None));
    let port = free_port();
    let host = format!("tcp://127.0.0.1:{port}");
    let daemon = |path: Option<&Path>| {
        let mut cmd = r.cmd();
        cmd.env("KETCH_TLS_VERIFY", "1")
            .env_remove("KETCH_CERT_PATH")
            .args(["daemon", "-H", &host]);
        if let Some(p) = path {
            cmd.env("KETCH_CERT_PATH", p);
        }
        cmd
    };
    // Asked to verify, with no files: it does not start, and says what is missing.
    refuses_to_start(
        daemon(None),
        &r.dir.path().join("refused.log"),
        1,
        "--tlscacert is required",
    );
    let _daemon = spawn_daemon(
        daemon(Some(&server)),
        &r.dir.path().join("daemon.log"),
        tcp_up(port),
    );
    let ps = |path: Option<&Path>, verify: bool| {
        let mut cmd = Command::new(ketch_bin());
        cmd.env_remove("KETCH_ROOT")
            .env_remove("KETCH_HOST")
            .env_remove("KETCH_CERT_PATH")
            .env_remove("KETCH_TLS_VERIFY")
            .args(["-H", &host, "ps", "-a", "--format", "{{.Names}}"])
            .stdin(Stdio::null());
        if verify {
            cmd.env("KETCH_TLS_VERIFY", "1");
        }
        if let Some(p) = path {
            cmd.env("KETCH_CERT_PATH", p);
        }
        cmd.output().unwrap()
    };
    let o = ps(Some(&client), true);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "viacertpath\n");
    // The same command with another directory: without a client certificate, or with one
    // another CA signed, the daemon refuses the handshake.
    for d in [&ca_only, &rogue] {
        failed_with(
            &ps(Some(d), true),
            1,
            &format!("talking to the daemon at {host}"),
        );
    }
    // Without the directory the client has no CA to check the daemon with; without TLS, the
    // daemon does not answer in plain HTTP.
    failed_with(&ps(None, true), 1, "--tlscacert is required");
    failed_with(
        &ps(None, false),
        1,
        &format!("talking to the daemon at {host}"),
    );
}

/// The gid of a group in /etc/group.
fn gid_of(name: &str) -> u32 {
    std::fs::read_to_string("/etc/group")
        .unwrap()
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f[0] == name).then(|| f[2].parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no group {name} in /etc/group (Debian's base-passwd has it)"))
}

/// `ketch -H SOCKET ps` as the unprivileged user nobody, with `groups` as its supplementary
/// groups.
fn ps_as_nobody(socket: &Path, groups: &[u32]) -> Output {
    let groups: Vec<libc::gid_t> = groups.to_vec();
    let mut cmd = Command::new(ketch_bin());
    cmd.env_remove("KETCH_ROOT")
        .env_remove("KETCH_HOST")
        .arg("-H")
        .arg(format!("unix://{}", socket.display()))
        .args(["ps", "-a", "--format", "{{.Names}}"])
        .stdin(Stdio::null());
    unsafe {
        cmd.pre_exec(move || {
            if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                || libc::setgid(65534) != 0
                || libc::setuid(65534) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.output().unwrap()
}

/// The UNIX socket as Docker's: mode 0660, owned by root and by the group `-G` names (root's
/// group without it), so that exactly root and that group's members reach the engine.
#[test]
fn the_socket_is_0660_root_and_the_group_given() {
    let r = Root::new();
    r.busybox("busybox");
    r.ok(&["create", "--name", "reached", "busybox", "true"]);
    // A directory everyone may pass through, so that only the socket's own mode decides.
    let dir = tempfile::Builder::new()
        .prefix("ketch-test-sock-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let adm = gid_of("adm");
    for (group, gid) in [(Some("adm"), adm), (None, 0)] {
        let socket = dir
            .path()
            .join(format!("{}.sock", group.unwrap_or("default")));
        let mut cmd = r.cmd();
        cmd.args(["daemon", "-H", &format!("unix://{}", socket.display())]);
        if let Some(g) = group {
            cmd.args(["-G", g]);
        }
        let s = socket.clone();
        let _daemon = spawn_daemon(cmd, &r.dir.path().join("daemon.log"), move || {
            std::os::unix::net::UnixStream::connect(&s).is_ok()
        });
        let md = std::fs::symlink_metadata(&socket).unwrap();
        assert_eq!(
            (format!("{:o}", md.mode() & 0o7777), md.uid(), md.gid()),
            ("660".to_string(), 0, gid),
            "{group:?}: mode, owner and group of {}",
            socket.display()
        );
        // Someone else, outside the group, is turned away by the socket's mode ...
        failed_with(
            &ps_as_nobody(&socket, &[]),
            1,
            &format!(
                "Cannot connect to the ketch daemon at unix://{}: Permission denied",
                socket.display()
            ),
        );
        // ... and gets through as a member of the socket's group.
        if group.is_some() {
            let o = ps_as_nobody(&socket, &[gid]);
            assert!(o.status.success(), "{}", text(&o));
            assert_eq!(String::from_utf8_lossy(&o.stdout), "reached\n");
        }
    }
    // A group that does not exist: the daemon does not start, and makes no socket.
    let socket = dir.path().join("nogroup.sock");
    let mut cmd = r.cmd();
    cmd.args([
        "daemon",
        "-H",
        &format!("unix://{}", socket.display()),
        "-G",
        "no-such-group-kt",
    ]);
    refuses_to_start(
        cmd,
        &r.dir.path().join("refused.log"),
        1,
        "no group \"no-such-group-kt\"",
    );
    assert!(!socket.exists());
}

/// SIGTERM and SIGINT stop the daemon as README says: it exits 0 and takes its socket with it
/// (nothing of it is left in the socket's directory), and its containers keep running, found
/// again by the next daemon.
#[test]
fn a_signalled_daemon_exits_cleanly_and_its_containers_stay() {
    let r = Root::new();
    r.busybox("busybox");
    let listing = |d: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let before = listing(r.dir.path());
    let mut pid = None;
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let mut d = Daemon::start(&r);
        let url = format!("unix://{}", d.socket.display());
        let remote = |args: &[&str]| {
            let o = r.cmd().args(["-H", &url]).args(args).output().unwrap();
            assert!(o.status.success(), "ketch -H {args:?}: {}", text(&o));
            String::from_utf8(o.stdout).unwrap()
        };
        if pid.is_none() {
            remote(&[
                "run",
                "-d",
                "--name",
                "stays",
                "--network",
                "none",
                "busybox",
                "sleep",
                "1000",
            ]);
        }
        // The daemon knows the container: started through it, or found by it.
        let p: i64 = remote(&["inspect", "-f", "{{.State.Pid}}", "stays"])
            .trim()
            .parse()
            .unwrap();
        assert!(p > 0 && pid.is_none_or(|q| q == p), "{pid:?} then {p}");
        pid = Some(p);
        assert_eq!(unsafe { libc::kill(d.child.id() as i32, sig) }, 0);
        let status = d.child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "signal {sig}: {status}");
        assert!(!d.socket.exists(), "signal {sig}: the socket is left");
        assert_eq!(listing(r.dir.path()), before, "signal {sig}");
        // The container is as it was: running, its process the same.
        assert_eq!(
            r.ok(&["inspect", "-f", "{{.State.Status}} {{.State.Pid}}", "stays"]),
            format!("running {p}\n")
        );
        assert!(alive(p), "signal {sig}: the container's process is gone");
    }
    r.ok(&["rm", "-f", "stays"]);
    assert!(!alive(pid.unwrap()));
}
