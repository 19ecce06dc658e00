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
    use std::io::BufRead;
    let mut child = host
        .cmd()
        .args(args)
        .env("KETCH_TEST_MOVE_STALL", step)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
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
            Err(_) => {
                let _ = child.kill();
                panic!("the mover never stalled at {step}: {seen:?}");
            }
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
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
    let mv = |name: &str| -> Vec<String> {
        vec![
            "mv".into(),
            "--with-volumes".into(),
            name.into(),
            socket(&b),
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
