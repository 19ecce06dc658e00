//! `container move`: containers taken from one engine to another, each simulated as a
//! host of its own (a network namespace with its own state root, as in the overlay tests),
//! the destination's daemon reached over its socket.

use ketch_tests::cluster::{Host, Underlay};

/// The page a container publishes on `port` of `host`, as a client on the host gets it
/// from the host's address; tried for up to ten seconds.
fn page(host: &Host, port: u16) -> String {
    let wrap = host.net.wrap();
    let o = std::process::Command::new(&wrap[0])
        .args(&wrap[1..])
        .args(["sh", "-c"])
        .arg(format!(
            "for i in $(seq 50); do out=$(timeout 2 bash -c 'exec 3<>/dev/tcp/{ip}/{port} && printf \"GET / HTTP/1.0\\r\\n\\r\\n\" >&3 && cat <&3' 2>/dev/null) && echo \"$out\" | tail -n 1 && exit 0; sleep 0.2; done; exit 1",
            ip = host.ip
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn inspect(host: &Host, name: &str) -> serde_json::Value {
    let out = host.ok(&["inspect", name]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0].clone()
}

fn socket(host: &Host) -> String {
    format!(
        "unix://{}",
        host.daemon.as_ref().expect("a daemon").socket.display()
    )
}

/// A running httpd with its pages in a named volume, published on a port, with a label, a
/// restart policy, a file it wrote and a log: moved with its volume, it serves the same
/// pages on the same port at the destination under the same name and ID, with all of that;
/// the source has neither the container nor the volume.
#[test]
fn a_running_web_server_moves_with_its_volume_and_changes() {
    let mut u = Underlay::new();
    let a = u.host();
    let mut b = u.host();
    b.start_daemon();
    a.ok(&["volume", "create", "--label", "site=1", "pages"]);
    a.ok(&[
        "run",
        "--rm",
        "-v",
        "pages:/www",
        "busybox",
        "sh",
        "-c",
        "echo served-from-the-volume > /www/index.html",
    ]);
    let id = a
        .ok(&[
            "run",
            "-d",
            "--name",
            "web",
            "--label",
            "tier=front",
            "--restart",
            "unless-stopped",
            "-p",
            "8080:80",
            "-v",
            "pages:/www",
            "busybox",
            "sh",
            "-c",
            "echo started; exec httpd -f -p 80 -h /www",
        ])
        .trim()
        .to_string();
    a.ok(&["exec", "web", "sh", "-c", "echo written-before > /note"]);
    assert_eq!(page(&a, 8080), "served-from-the-volume");

    let out = a.ok(&["container", "move", "--with-volumes", "web", &socket(&b)]);
    assert_eq!(out.trim(), id);

    // Gone here, container and volume.
    let (_, err) = a.fails(&["inspect", "web"]);
    assert!(err.contains("No such"), "{err}");
    assert!(!a.ok(&["volume", "ls", "-q"]).lines().any(|l| l == "pages"));
    // There: the same container, running, serving the same pages on the same port.
    let v = inspect(&b, "web");
    assert_eq!(v["Id"], id.as_str());
    assert_eq!(v["State"]["Running"], true);
    assert_eq!(v["Config"]["Labels"]["tier"], "front");
    assert_eq!(v["HostConfig"]["RestartPolicy"]["Name"], "unless-stopped");
    assert_eq!(page(&b, 8080), "served-from-the-volume");
    assert_eq!(b.ok(&["exec", "web", "cat", "/note"]), "written-before\n");
    let vol = b.ok(&["volume", "inspect", "-f", "{{json .Labels}}", "pages"]);
    assert_eq!(vol.trim(), r#"{"site":"1"}"#);
    // Its log came along: the run here and the one there.
    let logs = b.ok(&["logs", "web"]);
    assert_eq!(logs.matches("started").count(), 2, "{logs}");
    b.ok(&["rm", "-f", "web"]);
    b.ok(&["volume", "rm", "pages"]);
}

/// What the destination refuses is refused before the container stops: it runs on here,
/// untouched. What cannot go with a container is named.
#[test]
fn a_refused_move_leaves_the_container_running_where_it_was() {
    let mut u = Underlay::new();
    let a = u.host();
    let mut b = u.host();
    b.start_daemon();
    let run = |h: &Host, name: &str, extra: &[&str]| {
        let mut args = vec!["run", "-d", "--name", name];
        args.extend_from_slice(extra);
        args.extend(["busybox", "sleep", "1000"]);
        h.ok(&args);
    };
    run(&a, "taken", &["-v", "data:/data"]);
    run(&b, "taken", &[]);
    let (_, err) = a.fails(&["container", "move", "taken", &socket(&b)]);
    assert!(err.contains("already in use"), "{err}");
    // The volume's name is taken there.
    b.ok(&["volume", "create", "data"]);
    let (_, err) = a.fails(&[
        "container",
        "move",
        "--with-volumes",
        "--name",
        "free",
        "taken",
        &socket(&b),
    ]);
    assert!(err.contains("volume data already exists"), "{err}");
    // A volume another container uses does not go.
    run(&a, "other", &["-v", "data:/data"]);
    let (_, err) = a.fails(&[
        "mv",
        "--with-volumes",
        "--name",
        "free",
        "taken",
        &socket(&b),
    ]);
    assert!(
        err.contains("volume data is shared") && err.contains("other"),
        "{err}"
    );
    // Live: only where CRIU works on both ends.
    let (_, err) = a.fails(&["mv", "--live", "--name", "free", "taken", &socket(&b)]);
    assert!(err.contains("CRIU"), "{err}");
    // Through all of that, nothing moved and nothing stopped.
    assert_eq!(inspect(&a, "taken")["State"]["Running"], true);
    assert!(
        b.ok(&["ps", "-a", "--format", "{{.Names}}"])
            .lines()
            .eq(["taken"])
    );
    a.ok(&["rm", "-f", "taken", "other"]);
    b.ok(&["rm", "-f", "taken"]);
}

/// Runs `ketch ARGS` on `host` with the mover told to stall at `step`; kills it (SIGKILL)
/// once it says it stalled there.
fn kill_mover_at(host: &Host, args: &[&str], step: &str) {
    kill_mover_at_after(host, args, step, || {});
}

/// [`kill_mover_at`], with `meanwhile` run while the mover is stalled.
fn kill_mover_at_after(host: &Host, args: &[&str], step: &str, meanwhile: impl FnOnce()) {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    /// The mover, killed when dropped: also when the test fails while it is stalled.
    struct Mover(std::process::Child);
    impl Drop for Mover {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut cmd = host.cmd();
    cmd.args(args)
        .env("KETCH_TEST_MOVE_STALL", step)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null());
    // Gone with the test even when it dies in a way that skips the drop.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut mover = Mover(cmd.spawn().unwrap());
    let stderr = mover.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let want = format!("move stalled at {step}");
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(l) if l.contains(&want) => break,
            Ok(l) => seen.push(l),
            Err(_) => panic!("the mover never stalled at {step}: {seen:?}"),
        }
    }
    meanwhile();
    drop(mover);
}

/// The destination's containers and volumes, by name.
fn holdings(host: &Host) -> (String, String) {
    (
        host.ok(&["ps", "-a", "--format", "{{.Names}}"]),
        host.ok(&["volume", "ls", "-q"]),
    )
}

/// A mover killed at each step: before the stream, the container here is stopped but
/// whole and starts again, and the destination holds nothing (a stream cut short is
/// undone there); once the destination has it whole, the move run again completes.
#[test]
fn a_mover_killed_at_any_step_loses_nothing() {
    let mut u = Underlay::new();
    let a = u.host();
    let mut b = u.host();
    b.start_daemon();
    let web = |name: &str, port: &str| {
        a.ok(&[
            "run",
            "-d",
            "--name",
            name,
            "-p",
            &format!("{port}:80"),
            "-v",
            &format!("{name}-pages:/www"),
            "busybox",
            "sh",
            "-c",
            &format!("echo {name}-page > /www/index.html; exec httpd -f -p 80 -h /www"),
        ]);
        a.ok(&[
            "exec",
            name,
            "sh",
            "-c",
            "head -c 300000 /dev/urandom > /big",
        ]);
    };
    web("web", "8080");
    let dest = socket(&b);
    let mv = |name: &str| -> Vec<String> {
        vec![
            "mv".into(),
            "--with-volumes".into(),
            name.into(),
            dest.clone(),
        ]
    };
    for step in ["stopped", "sending"] {
        let args = mv("web");
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        kill_mover_at(&a, &args, step);
        ketch_tests::wait_until("the destination to hold nothing", 20, || {
            holdings(&b) == (String::new(), String::new())
        });
        assert_eq!(inspect(&a, "web")["State"]["Running"], false, "{step}");
        a.ok(&["start", "web"]);
        assert_eq!(page(&a, 8080), "web-page", "{step}");
    }
    // The destination's daemon killed in the middle of the stream: started again, it takes
    // back what it had made (the volume, here); the container here starts again.
    let args = mv("web");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    kill_mover_at_after(&a, &args, "sending", || {
        ketch_tests::wait_until("the destination to make the volume", 20, || {
            !holdings(&b).1.is_empty()
        });
        b.daemon.as_mut().unwrap().kill();
    });
    b.start_daemon();
    assert_eq!(holdings(&b), (String::new(), String::new()));
    a.ok(&["start", "web"]);
    assert_eq!(page(&a, 8080), "web-page");
    // The connection cut in the middle of the stream: the move fails, the container runs
    // here again, the destination holds nothing.
    let dir = tempfile::tempdir().unwrap();
    let upstream = b.daemon.as_ref().unwrap().socket.clone();
    let proxy = cutting_proxy(dir.path(), upstream, 100_000);
    let (_, err) = a.fails(&[
        "mv",
        "--with-volumes",
        "web",
        &format!("unix://{}", proxy.display()),
    ]);
    assert!(!err.is_empty());
    assert_eq!(inspect(&a, "web")["State"]["Running"], true, "{err}");
    assert_eq!(holdings(&b), (String::new(), String::new()), "{err}");
    assert_eq!(page(&a, 8080), "web-page");
    // Killed once the destination has it whole, stopped or running: run again, the move
    // completes.
    web("web2", "8081");
    for (name, step, port) in [("web", "received", 8080), ("web2", "started", 8081)] {
        let args = mv(name);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        kill_mover_at(&a, &args, step);
        a.ok(&args);
        let (_, err) = a.fails(&["inspect", name]);
        assert!(err.contains("No such"), "{step}: {err}");
        assert_eq!(inspect(&b, name)["State"]["Running"], true, "{step}");
        assert_eq!(page(&b, port), format!("{name}-page"), "{step}");
    }
    b.ok(&["rm", "-f", "web", "web2"]);
    b.ok(&["volume", "rm", "web-pages", "web2-pages"]);
}

/// A proxy on a UNIX socket in `dir` in front of the daemon at `upstream` that cuts each
/// connection once `limit` bytes went from its client.
fn cutting_proxy(
    dir: &std::path::Path,
    upstream: std::path::PathBuf,
    limit: u64,
) -> std::path::PathBuf {
    use std::io::{Read, Write};
    use std::os::unix::net::{UnixListener, UnixStream};
    let path = dir.join("proxy.sock");
    let listener = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut client) = conn else { break };
            let up = upstream.clone();
            std::thread::spawn(move || {
                let Ok(mut server) = UnixStream::connect(&up) else {
                    return;
                };
                let (mut back_from, mut back_to) =
                    (server.try_clone().unwrap(), client.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut back_from, &mut back_to);
                    let _ = back_to.shutdown(std::net::Shutdown::Both);
                });
                let mut sent = 0u64;
                let mut buf = [0u8; 16384];
                while sent < limit {
                    let n = match client.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n.min((limit - sent) as usize),
                    };
                    if server.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    sent += n as u64;
                }
                let _ = server.shutdown(std::net::Shutdown::Both);
                let _ = client.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    path
}

/// Bytes used on the file system of `host`'s state root.
fn used(host: &Host) -> u64 {
    let o = std::process::Command::new("df")
        .args(["-B1", "--output=used"])
        .arg(host.root.path())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    out.lines().nth(1).unwrap().trim().parse().unwrap()
}

/// A destination whose disk fills up midway refuses the move, and says why: the container
/// here runs on with its data whole (frozen for the copy, the very same process thawed;
/// stopped for it, started again), and the destination holds nothing of it, the space
/// given back.
#[test]
fn a_destination_that_fills_up_holds_nothing_and_the_container_runs_on() {
    let mut u = Underlay::new();
    let a = u.host();
    let mut b = u.host_with_disk(Some(32 << 20));
    b.start_daemon();
    a.ok(&[
        "run",
        "-d",
        "--name",
        "big",
        "busybox",
        "sh",
        "-c",
        "[ -e /written ] || { head -c 48000000 /dev/urandom > /big && touch /written; }; \
         exec sleep 1000",
    ]);
    ketch_tests::wait_until("the container to write its 48 MB", 30, || {
        a.cmd()
            .args(["exec", "big", "test", "-e", "/written"])
            .status()
            .unwrap()
            .success()
    });
    let sum = a.ok(&["exec", "big", "md5sum", "/big"]);
    let before = used(&b);
    for freeze in [true, false] {
        let pid = inspect(&a, "big")["State"]["Pid"].as_u64().unwrap();
        let mut args = vec!["mv"];
        if freeze {
            args.push("--freeze");
        }
        let dest = socket(&b);
        args.extend(["big", dest.as_str()]);
        let (_, err) = a.fails(&args);
        assert!(err.contains("No space left on device"), "{err}");
        let v = inspect(&a, "big");
        assert_eq!(v["State"]["Status"], "running", "{freeze}: {err}");
        assert_eq!(
            v["State"]["Pid"].as_u64() == Some(pid),
            freeze,
            "the same process only when frozen: {v}"
        );
        assert_eq!(a.ok(&["exec", "big", "md5sum", "/big"]), sum);
        assert_eq!(holdings(&b), (String::new(), String::new()), "{err}");
        assert!(
            used(&b) <= before + (1 << 20),
            "{} bytes used at the destination, {before} before",
            used(&b)
        );
    }
    a.ok(&["rm", "-f", "big"]);
}

/// `--freeze`: the container is held still while it is copied and killed after, so what
/// arrives is what it was at the freeze: its stop signal never reaches it (the handler that
/// writes on TERM, which a plain move runs, writes nothing). A frozen container whose mover
/// was killed stays whole and frozen; the move run again completes.
#[test]
fn a_frozen_move_takes_the_container_as_it_was_at_the_freeze() {
    let mut u = Underlay::new();
    let a = u.host();
    let mut b = u.host();
    b.start_daemon();
    let ticker = |name: &str| {
        a.ok(&[
            "run",
            "-d",
            "--name",
            name,
            "busybox",
            "sh",
            "-c",
            "trap 'echo termed > /termed; exit 0' TERM; \
             while true; do date +%s%N > /tick; sleep 0.05; done",
        ]);
    };
    let dest = socket(&b);
    // A plain move: the container hears its stop signal, and what it wrote then went along.
    ticker("plain");
    a.ok(&["mv", "plain", &dest]);
    assert_eq!(b.ok(&["exec", "plain", "cat", "/termed"]), "termed\n");
    // Frozen: it never heard it.
    ticker("frozen");
    a.ok(&["mv", "--freeze", "frozen", &dest]);
    assert_eq!(inspect(&b, "frozen")["State"]["Running"], true);
    let (_, err) = b.fails(&["exec", "frozen", "cat", "/termed"]);
    assert!(err.contains("No such file"), "{err}");
    // A mover killed while the container is frozen mid-stream: it stays here whole, frozen,
    // and the destination holds nothing; run again, the move completes.
    ticker("again");
    kill_mover_at(&a, &["mv", "--freeze", "again", &dest], "sending");
    ketch_tests::wait_until("the destination to drop the cut stream", 20, || {
        !holdings(&b).0.lines().any(|l| l == "again")
    });
    assert_eq!(inspect(&a, "again")["State"]["Status"], "paused");
    a.ok(&["mv", "--freeze", "again", &dest]);
    assert_eq!(inspect(&b, "again")["State"]["Running"], true);
    let (_, err) = a.fails(&["inspect", "again"]);
    assert!(err.contains("No such"), "{err}");
    b.ok(&["rm", "-f", "plain", "frozen", "again"]);
}

/// A container on an overlay network keeps its address there, and its name resolves to it
/// from the other hosts, once moved.
#[test]
fn a_container_on_an_overlay_network_keeps_its_address_and_name() {
    let mut u = Underlay::new();
    let mut a = u.host();
    let mut b = u.host();
    let mut c = u.host();
    for h in [&mut a, &mut b, &mut c] {
        h.start_daemon();
    }
    a.ok(&["network", "create", "-d", "overlay", "ov"]);
    a.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "ov",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /www && echo served-by-$(hostname) > /www/index.html && exec httpd -f -p 80 -h /www",
    ]);
    let ip = |h: &Host| {
        h.ok(&[
            "inspect",
            "-f",
            "{{.NetworkSettings.Networks.ov.IPAddress}}",
            "web",
        ])
        .trim()
        .to_string()
    };
    let before = ip(&a);
    let hostname = a.ok(&["inspect", "-f", "{{.Config.Hostname}}", "web"]);
    let want = format!("served-by-{}", hostname.trim());
    // What a container on the third host gets from `target`, tried for up to ten seconds.
    let fetch = |target: &str| {
        c.ok(&[
            "run",
            "--rm",
            "--network",
            "ov",
            "busybox",
            "sh",
            "-c",
            &ketch_tests::cluster::fetch(target),
        ])
        .trim()
        .to_string()
    };
    assert_eq!(fetch("web"), want);
    // Moved by the first host's daemon, as a remote client asks it.
    let mover = a.daemon.as_ref().unwrap().socket.display().to_string();
    let o = a
        .cmd()
        .args(["-H", &format!("unix://{mover}"), "mv", "web", &socket(&b)])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    assert_eq!(ip(&b), before);
    let (_, err) = a.fails(&["inspect", "web"]);
    assert!(err.contains("No such"), "{err}");
    for target in ["web", before.as_str()] {
        assert_eq!(fetch(target), want, "{target}");
    }
    b.ok(&["rm", "-f", "web"]);
    a.ok(&["network", "rm", "ov"]);
}

/// A daemon asked to move a container to a destination that takes only mutual TLS reaches
/// it with what its asker has: the CA, certificate and key go with the request as text (the
/// asker's files are on a mount only the asker sees); without them, the destination
/// refuses the daemon before anything stops.
#[test]
fn a_daemon_moves_a_container_over_mutual_tls_with_its_askers_certificates() {
    let mut u = Underlay::new();
    let mut a = u.host();
    let mut b = u.host();
    let certs = b.root.dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    ketch_tests::make_certs(&certs, &b.ip);
    let c = |n: &str| certs.join(n).display().to_string();
    let dest = format!("tcp://{}:2376", b.ip);
    b.start_daemon_with(&[
        "-H".into(),
        dest.clone(),
        "--tlsverify".into(),
        "--tlscacert".into(),
        c("ca.pem"),
        "--tlscert".into(),
        c("server-cert.pem"),
        "--tlskey".into(),
        c("server-key.pem"),
    ]);
    a.start_daemon();
    a.ok(&["run", "-d", "--name", "moved", "busybox", "sleep", "1000"]);
    let mover = format!("unix://{}", a.daemon.as_ref().unwrap().socket.display());
    // The asker: the client's files copied to a tmpfs in a mount namespace of its own.
    let private = a.root.dir.path().join("private");
    std::fs::create_dir(&private).unwrap();
    let ask = |tls: bool| {
        let p = private.display();
        let flags = if tls {
            format!(
                "--tlsverify --tlscacert {p}/ca.pem --tlscert {p}/client-cert.pem --tlskey {p}/client-key.pem"
            )
        } else {
            String::new()
        };
        let script = format!(
            "mount -t tmpfs tmpfs {p} && cp {ca} {cert} {key} {p}/ && \
             exec {ketch} --root {root} -H {mover} {flags} mv moved {dest}",
            ca = c("ca.pem"),
            cert = c("client-cert.pem"),
            key = c("client-key.pem"),
            ketch = ketch_tests::ketch_bin().display(),
            root = a.root.path().display(),
        );
        std::process::Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .output()
            .unwrap()
    };
    let o = ask(false);
    assert!(!o.status.success(), "{o:?}");
    assert_eq!(inspect(&a, "moved")["State"]["Running"], true, "{o:?}");
    let o = ask(true);
    assert!(o.status.success(), "{o:?}");
    assert!(
        !private.join("ca.pem").exists(),
        "the asker's mount is its own"
    );
    let (_, err) = a.fails(&["inspect", "moved"]);
    assert!(err.contains("No such"), "{err}");
    let there = b.ok(&["inspect", "-f", "{{.State.Running}}", "moved"]);
    assert_eq!(there.trim(), "true");
    // Nothing of the asker's TLS stays with the daemon.
    let scratch = a.root.path().join("tmp");
    let left: Vec<_> = std::fs::read_dir(&scratch)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with("move-tls-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    b.ok(&["rm", "-f", "moved"]);
}
