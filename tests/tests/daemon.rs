//! `ketch daemon`: the Docker Engine API on a UNIX socket the test makes.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use ketch_tests::{Daemon, Root, busybox_rootfs};

/// One request on a connection of its own: (status, headers, body).
fn request(d: &Daemon, method: &str, path: &str, body: Option<&str>) -> (u16, String, Vec<u8>) {
    let mut s = UnixStream::connect(&d.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: ketch\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut r = BufReader::new(s);
    read_response(&mut r, method == "HEAD")
}

fn read_response(r: &mut BufReader<UnixStream>, head: bool) -> (u16, String, Vec<u8>) {
    let mut headers = String::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        headers.push_str(&line);
    }
    let status: u16 = headers.split_whitespace().nth(1).unwrap().parse().unwrap();
    let lower = headers.to_ascii_lowercase();
    let mut body = Vec::new();
    if head {
    } else if lower.contains("transfer-encoding: chunked") {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(len) = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|l| l.trim().parse::<usize>().ok())
    {
        body.resize(len, 0);
        r.read_exact(&mut body).unwrap();
    }
    (status, headers, body)
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

fn setup() -> (Root, Daemon) {
    let r = Root::new();
    r.ok(&["import", busybox_rootfs().to_str().unwrap(), "busybox"]);
    let d = Daemon::start(&r);
    (r, d)
}

#[test]
fn ping_version_and_keep_alive() {
    let (r, d) = setup();
    let (status, headers, body) = request(&d, "GET", "/_ping", None);
    assert_eq!((status, body.as_slice()), (200, &b"OK"[..]));
    assert!(
        headers.to_ascii_lowercase().contains("api-version: 1.47"),
        "{headers}"
    );
    let (status, headers, _) = request(&d, "HEAD", "/_ping", None);
    assert_eq!(status, 200);
    assert!(headers.to_ascii_lowercase().contains("api-version:"));
    let (status, _, body) = request(&d, "GET", "/v1.44/version", None);
    assert_eq!(status, 200);
    let v = json(&body);
    assert_eq!(v["ApiVersion"], "1.47");
    assert_eq!(v["Os"], "linux");
    let (_, _, body) = request(&d, "GET", "/info", None);
    assert_eq!(json(&body)["Images"], 1);
    // The root's ID, as Docker's daemon keeps one in its root.
    let id = std::fs::read_to_string(r.path().join("engine-id")).unwrap();
    assert_eq!(
        (id.len(), json(&body)["ID"].as_str()),
        (37, Some(id.trim()))
    );
    // Two requests on one connection.
    let mut s = UnixStream::connect(&d.socket).unwrap();
    s.write_all(b"GET /_ping HTTP/1.1\r\nHost: k\r\n\r\nGET /v1.47/containers/json HTTP/1.1\r\nHost: k\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(s);
    assert_eq!(read_response(&mut r, false).0, 200);
    let (status, _, body) = read_response(&mut r, false);
    assert_eq!((status, json(&body)), (200, serde_json::json!([])));
}

#[test]
fn containers_through_the_api() {
    let (r, d) = setup();
    let (status, _, body) = request(
        &d,
        "POST",
        "/v1.47/containers/create?name=apitest",
        Some(
            r#"{"Image":"busybox","Cmd":["sh","-c","echo out; echo err >&2; exit 3"],"HostConfig":{"NetworkMode":"none"}}"#,
        ),
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let id = json(&body)["Id"].as_str().unwrap().to_string();
    // The CLI on the same root sees what the daemon made.
    assert_eq!(r.ok(&["ps", "-a", "--format", "{{.Names}}"]), "apitest\n");
    let (status, _, _) = request(&d, "POST", &format!("/v1.47/containers/{id}/start"), None);
    assert_eq!(status, 204);
    let (status, _, body) = request(&d, "POST", &format!("/v1.47/containers/{id}/wait"), None);
    assert_eq!(status, 200);
    assert_eq!(json(&body)["StatusCode"], 3);
    let (_, _, body) = request(
        &d,
        "GET",
        &format!("/v1.47/containers/{id}/logs?stdout=1&stderr=1"),
        None,
    );
    // Multiplexed frames: stream, three zeros, big-endian length, payload.
    let mut frames = Vec::new();
    let mut rest = body.as_slice();
    while rest.len() >= 8 {
        let n = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
        frames.push((
            rest[0],
            String::from_utf8_lossy(&rest[8..8 + n]).into_owned(),
        ));
        rest = &rest[8 + n..];
    }
    frames.sort();
    assert_eq!(frames, [(1, "out\n".to_string()), (2, "err\n".to_string())]);
    let (status, _, body) = request(&d, "GET", &format!("/containers/{id}/json"), None);
    assert_eq!(status, 200);
    assert_eq!(json(&body)["State"]["ExitCode"], 3);
    let (status, _, _) = request(&d, "DELETE", &format!("/v1.47/containers/{id}"), None);
    assert_eq!(status, 204);
    let (status, _, body) = request(&d, "GET", &format!("/containers/{id}/json"), None);
    assert_eq!(status, 404);
    assert!(
        json(&body)["message"]
            .as_str()
            .unwrap()
            .contains("No such container")
    );
}

#[test]
fn bad_requests_get_4xx_and_change_nothing() {
    let (r, d) = setup();
    // Each answered with Docker's status and a message that says what was wrong.
    for (method, path, body, status, message) in [
        (
            "POST",
            "/containers/create",
            Some("{not json"),
            400,
            "invalid JSON",
        ),
        (
            "POST",
            "/containers/create",
            Some(r#"{"Cmd":["true"]}"#),
            400,
            "config.Image is required",
        ),
        (
            "POST",
            "/containers/create",
            Some(r#"{"Image":"nosuchimage"}"#),
            404,
            "No such image: nosuchimage:latest",
        ),
        (
            "GET",
            "/no/such/endpoint",
            None,
            404,
            "page not found: GET /no/such/endpoint",
        ),
        // The signal is checked before the container is looked up, as dockerd does.
        (
            "POST",
            "/containers/nosuch/kill?signal=NOPE",
            None,
            400,
            "invalid signal: NOPE",
        ),
        (
            "POST",
            "/containers/nosuch/kill",
            None,
            404,
            "No such container: nosuch",
        ),
        // A build that fails before a word of it is an error status, not a stream.
        (
            "POST",
            "/build?t=a/b/c",
            Some(""),
            400,
            "Cannot locate specified Dockerfile: Dockerfile",
        ),
    ] {
        let (got, _, b) = request(&d, method, path, body);
        let m = json(&b)["message"].as_str().unwrap_or_default().to_string();
        assert!(
            got == status && m.contains(message),
            "{method} {path}: wanted {status} {message:?}, got {got} {m:?}"
        );
    }
    // Garbage instead of HTTP.
    let mut s = UnixStream::connect(&d.socket).unwrap();
    s.write_all(b"\x00\x01garbage\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(out.contains("bad request"), "{out}");
    assert_eq!(r.ok(&["ps", "-aq"]), "");
}

#[test]
fn many_clients_at_once() {
    let (r, d) = setup();
    let d = std::sync::Arc::new(d);
    let workers: Vec<_> = (0..20)
        .map(|i| {
            let d = d.clone();
            std::thread::spawn(move || {
                for round in 0..3 {
                    let (s, _, b) = request(
                        &d,
                        "POST",
                        &format!("/containers/create?name=w{i}-{round}"),
                        Some(r#"{"Image":"busybox","Cmd":["true"],"HostConfig":{"NetworkMode":"none"}}"#),
                    );
                    assert_eq!(s, 201, "{}", String::from_utf8_lossy(&b));
                    let id = json(&b)["Id"].as_str().unwrap().to_string();
                    assert_eq!(request(&d, "POST", &format!("/containers/{id}/start"), None).0, 204);
                    let (s, _, b) = request(&d, "POST", &format!("/containers/{id}/wait"), None);
                    assert_eq!((s, json(&b)["StatusCode"].as_i64()), (200, Some(0)));
                    assert_eq!(request(&d, "DELETE", &format!("/containers/{id}"), None).0, 204);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(r.ok(&["ps", "-aq"]), "");
}

#[test]
fn containers_outlive_the_daemon() {
    let (r, mut d) = setup();
    let (_, _, body) = request(
        &d,
        "POST",
        "/containers/create?name=survivor",
        Some(r#"{"Image":"busybox","Cmd":["sleep","1000"],"HostConfig":{"NetworkMode":"none"}}"#),
    );
    let id = json(&body)["Id"].as_str().unwrap().to_string();
    assert_eq!(
        request(&d, "POST", &format!("/containers/{id}/start"), None).0,
        204
    );
    d.kill();
    assert_eq!(
        r.ok(&["inspect", "-f", "{{.State.Status}}", "survivor"])
            .trim(),
        "running"
    );
    // A new daemon finds it.
    let d2 = Daemon::start(&r);
    let (_, _, body) = request(&d2, "GET", "/containers/json", None);
    let list = json(&body);
    assert_eq!(list[0]["Names"][0], "/survivor");
    assert_eq!(list[0]["State"], "running");
    assert_eq!(
        request(&d2, "DELETE", "/containers/survivor?force=1", None).0,
        204
    );
}

/// The real Docker CLI against the daemon.
fn docker(d: &Daemon, args: &[&str]) -> std::process::Output {
    d.docker(args)
}

fn docker_ok(d: &Daemon, args: &[&str]) -> String {
    let o = docker(d, args);
    assert!(
        o.status.success(),
        "docker {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn the_docker_cli_works_against_it() {
    ketch_tests::require_tool("docker");
    let (r, d) = setup();
    let v = docker_ok(&d, &["version"]);
    assert!(v.contains("Server: ketch"), "{v}");
    assert!(docker_ok(&d, &["info"]).contains("Images: 1"));
    // run --rm: attach, start, wait, remove; the exit code comes through.
    assert_eq!(
        docker_ok(
            &d,
            &["run", "--rm", "--network", "none", "busybox", "echo", "hi"]
        ),
        "hi\n"
    );
    let o = docker(
        &d,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "exit 7",
        ],
    );
    assert_eq!(o.status.code(), Some(7));
    // run -d, logs -f, stop, rm.
    docker_ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "bg",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "for i in 1 2 3; do echo line $i; sleep 0.2; done",
        ],
    );
    assert_eq!(
        docker_ok(&d, &["logs", "-f", "bg"]),
        "line 1\nline 2\nline 3\n"
    );
    let ps = docker_ok(&d, &["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.starts_with("bg Exited (0)"), "{ps}");
    assert_eq!(
        docker_ok(&d, &["inspect", "-f", "{{.State.ExitCode}}", "bg"]),
        "0\n"
    );
    docker_ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "long",
            "--network",
            "none",
            "busybox",
            "sleep",
            "1000",
        ],
    );
    // stats: one sample, in the shape docker's columns are computed from.
    let line = docker_ok(
        &d,
        &[
            "stats",
            "--no-stream",
            "--format",
            "{{.Name}} {{.MemUsage}} {{.PIDs}} {{.CPUPerc}}",
            "long",
        ],
    );
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!((f[0], f[4]), ("long", "1"), "{line}");
    assert!(f[3].ends_with("MiB") || f[3].ends_with("GiB"), "{line}");
    assert!(f[5].trim_end_matches('%').parse::<f64>().is_ok(), "{line}");
    docker_ok(&d, &["stop", "-t", "1", "long"]);
    docker_ok(&d, &["rm", "bg", "long"]);
    assert_eq!(docker_ok(&d, &["ps", "-aq"]), "");
    assert!(docker_ok(&d, &["images"]).contains("busybox"));
    // Errors come back as Docker's.
    let o = docker(&d, &["inspect", "nosuch"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("No such object: nosuch"),
        "{o:?}"
    );
    assert_eq!(r.ok(&["ps", "-aq"]), "");
}

/// `docker run` with stdin: through a terminal (under `script`), its size set by the client,
/// and without one (multiplexed), input and exit codes passed through.
#[test]
fn the_docker_cli_runs_interactive_containers() {
    ketch_tests::require_tool("docker");
    ketch_tests::require_tool("script");
    let (_r, d) = setup();
    let with_stdin = |cmd: &mut std::process::Command, input: &str| {
        cmd.env("DOCKER_HOST", format!("unix://{}", d.socket.display()))
            .env(
                "DOCKER_CONFIG",
                d.socket.parent().unwrap().join("docker-config"),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let o = with_stdin(
        std::process::Command::new("script").args([
            "-qec",
            "stty rows 33 cols 101; docker run --rm -it --network none busybox sh",
            "/dev/null",
        ]),
        "echo in-$((6*7)); stty size; tty; exit 3\n",
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(out.contains("in-42"), "{out}");
    assert!(out.contains("33 101"), "{out}");
    assert!(out.contains("/dev/pts/0"), "{out}");
    let o = with_stdin(
        std::process::Command::new("docker").args([
            "run",
            "--rm",
            "-i",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "cat; echo err >&2; exit 4",
        ]),
        "hello\n",
    );
    assert_eq!(o.status.code(), Some(4));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "hello\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "err\n");
    // exec, through a terminal and with stdin.
    docker_ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "box",
            "--network",
            "none",
            "busybox",
            "sleep",
            "100",
        ],
    );
    let o = with_stdin(
        std::process::Command::new("script").args([
            "-qec",
            "stty rows 20 cols 70; docker exec -it box sh",
            "/dev/null",
        ]),
        // Docker CLIs before 23 (API 1.42) send the size by a resize after the exec starts,
        // so the shell waits for it (up to 5 s) before it prints it.
        "for i in $(seq 50); do s=$(stty size 2>/dev/null); [ -n \"$s\" ] && [ \"$s\" != '0 0' ] && break; sleep 0.1; done; echo \"size $s\"; tty; exit 5\n",
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(5), "{out}");
    assert!(out.contains("size 20 70"), "{out}");
    assert!(out.contains("/dev/pts/"), "{out}");
    let o = with_stdin(
        std::process::Command::new("docker").args(["exec", "-i", "box", "sh", "-c", "cat; exit 6"]),
        "via exec\n",
    );
    assert_eq!(o.status.code(), Some(6));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "via exec\n");
    docker_ok(&d, &["rm", "-f", "box"]);
    assert_eq!(docker_ok(&d, &["ps", "-aq"]), "");
}

#[test]
fn the_docker_cli_manages_images_networks_volumes_and_files() {
    ketch_tests::require_tool("docker");
    let (r, d) = setup();
    docker_ok(
        &d,
        &["run", "-d", "--name", "c", "busybox", "sleep", "1000"],
    );
    // exec, with its exit code and both streams.
    let o = docker(
        &d,
        &["exec", "c", "sh", "-c", "echo out; echo err >&2; exit 4"],
    );
    assert_eq!(o.status.code(), Some(4));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "err\n");
    // cp both ways.
    let host = r.dir.path().join("h.txt");
    std::fs::write(&host, "from host\n").unwrap();
    docker_ok(&d, &["cp", host.to_str().unwrap(), "c:/tmp/"]);
    assert_eq!(
        docker_ok(&d, &["exec", "c", "cat", "/tmp/h.txt"]),
        "from host\n"
    );
    let back = r.dir.path().join("motd");
    docker_ok(&d, &["cp", "c:/etc/motd", back.to_str().unwrap()]);
    assert!(std::fs::read_to_string(&back).unwrap().contains("busybox"));
    // diff and commit.
    docker_ok(&d, &["exec", "c", "sh", "-c", "echo x > /etc/added"]);
    let diff = docker_ok(&d, &["diff", "c"]);
    assert!(diff.contains("A /etc/added"), "{diff}");
    docker_ok(&d, &["commit", "c", "committed:1"]);
    assert_eq!(
        docker_ok(&d, &["run", "--rm", "committed:1", "cat", "/etc/added"]),
        "x\n"
    );
    // tag, save, rmi, load.
    docker_ok(&d, &["tag", "busybox", "mine:1"]);
    let tar = r.dir.path().join("mine.tar");
    docker_ok(&d, &["save", "-o", tar.to_str().unwrap(), "mine:1"]);
    docker_ok(&d, &["rmi", "mine:1"]);
    assert!(!docker_ok(&d, &["images"]).contains("mine"));
    let loaded = docker_ok(&d, &["load", "-i", tar.to_str().unwrap()]);
    assert!(loaded.contains("mine:1"), "{loaded}");
    // networks.
    docker_ok(&d, &["network", "create", "dnet"]);
    docker_ok(&d, &["network", "connect", "dnet", "c"]);
    assert_eq!(
        docker_ok(&d, &["exec", "c", "ls", "/sys/class/net"]),
        "eth0\neth1\nlo\n"
    );
    docker_ok(&d, &["network", "disconnect", "dnet", "c"]);
    docker_ok(&d, &["network", "rm", "dnet"]);
    // volumes, and run -v.
    docker_ok(&d, &["volume", "create", "dvol"]);
    assert!(docker_ok(&d, &["volume", "ls"]).contains("dvol"));
    docker_ok(
        &d,
        &[
            "run",
            "--rm",
            "-v",
            "dvol:/v",
            "busybox",
            "sh",
            "-c",
            "echo kept > /v/f",
        ],
    );
    assert_eq!(
        docker_ok(
            &d,
            &["run", "--rm", "-v", "dvol:/v", "busybox", "cat", "/v/f"]
        ),
        "kept\n"
    );
    docker_ok(&d, &["volume", "rm", "dvol"]);
    assert!(docker_ok(&d, &["system", "df"]).contains("Images"));
    docker_ok(&d, &["rm", "-f", "c"]);
}

/// Detach keys, typed into a terminal: `docker attach`, `docker exec -it` and the `ketch`
/// CLI through the daemon leave on Docker's default sequence (or the one given) with the
/// container running and its input still open; a bad sequence is refused by name, and
/// embedded, where nothing could detach, `--detach-keys` is refused.
#[test]
fn detach_keys_leave_the_container_running() {
    ketch_tests::require_tool("docker");
    ketch_tests::require_tool("script");
    let (r, d) = setup();
    // `script` gives the client a terminal and keeps what it shows in a file; the line is
    // typed, then the keys once the screen shows `shown` `times` times (a container that
    // starts slowly on a busy machine must have answered before its client leaves). A line
    // typed before the client set its terminal raw is echoed by the terminal itself, so what
    // only echoes (`cat`) must be seen twice: once more means the container has it, and the
    // client, which reads it only once raw, reads the keys raw too (cooked, ^Q is flow control
    // and never reaches it).
    let screen = d.socket.parent().unwrap().join("screen");
    let typed = |cmd: &str, line: &str, (shown, times): (&str, usize), keys: &str| {
        let screen = screen.display();
        let script = format!(
            "rm -f {screen}; (printf '{line}\\n'; i=0; \
             while [ $i -lt 200 ] && \
             [ \"$(grep -oF '{shown}' {screen} 2>/dev/null | wc -l)\" -lt {times} ]; do \
             sleep 0.1; i=$((i+1)); done; printf '{keys}'; sleep 1) \
             | timeout 60 script -qfec '{cmd}' {screen}"
        );
        let o = std::process::Command::new("sh")
            .args(["-c", &script])
            .env("DOCKER_HOST", format!("unix://{}", d.socket.display()))
            .env(
                "DOCKER_CONFIG",
                d.socket.parent().unwrap().join("docker-config"),
            )
            .env("KETCH_HOST", format!("unix://{}", d.socket.display()))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let running = |c: &str| docker_ok(&d, &["inspect", "-f", "{{.State.Running}}", c]);
    docker_ok(
        &d,
        &[
            "run",
            "-dit",
            "--name",
            "cat",
            "--network",
            "none",
            "busybox",
            "cat",
        ],
    );
    let out = typed("docker attach cat", "first", ("first", 2), "\\020\\021");
    assert!(out.contains("first"), "{out}");
    assert!(out.contains("read escape sequence"), "{out}");
    assert_eq!(running("cat"), "true\n");
    // Its input is still open: a second attach is read by the same `cat`.
    let out = typed(
        "docker attach --detach-keys ctrl-x cat",
        "second",
        ("second", 2),
        "\\030",
    );
    assert!(out.contains("second"), "{out}");
    assert!(out.contains("read escape sequence"), "{out}");
    assert_eq!(running("cat"), "true\n");
    let logs = docker_ok(&d, &["logs", "cat"]);
    assert!(logs.contains("first") && logs.contains("second"), "{logs}");
    // exec: the shell runs on after the client leaves.
    let out = typed(
        "docker exec -it cat sh",
        "echo in-$((6*7))",
        ("in-42", 1),
        "\\020\\021",
    );
    assert!(out.contains("in-42"), "{out}");
    assert!(out.contains("read escape sequence"), "{out}");
    assert_eq!(running("cat"), "true\n");
    // The ketch CLI through the daemon: run and exec.
    let ketch = ketch_tests::ketch_bin();
    let k = ketch.display();
    let out = typed(
        &format!("{k} run -it --name shell --network none busybox sh"),
        "echo run-$((6*7))",
        ("run-42", 1),
        "\\020\\021",
    );
    assert!(out.contains("run-42"), "{out}");
    assert_eq!(running("shell"), "true\n");
    let out = typed(
        &format!("{k} exec -it --detach-keys ctrl-x shell sh"),
        "echo exec-$((6*7))",
        ("exec-42", 1),
        "\\030",
    );
    assert!(out.contains("exec-42"), "{out}");
    assert_eq!(running("shell"), "true\n");
    // A sequence Docker cannot read: refused before anything runs (400).
    let o = docker(
        &d,
        &["exec", "-i", "--detach-keys", "ctrl-1", "cat", "true"],
    );
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("invalid detach keys (ctrl-1)"),
        "{o:?}"
    );
    let (code, err) = r.fails(&["run", "--detach-keys", "ctrl-x", "busybox", "true"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("--detach-keys needs a daemon"), "{err}");
    docker_ok(&d, &["rm", "-f", "cat", "shell"]);
    assert_eq!(docker_ok(&d, &["ps", "-aq"]), "");
}

/// Attach over a WebSocket, as a browser or docker-py's `attach_socket(ws=True)` does: the
/// handshake answered as RFC 6455 says, output in binary messages, the client's masked
/// messages to the container's input, a request that is no upgrade refused.
#[test]
fn attach_over_a_websocket() {
    let (r, d) = setup();
    let id = r.ok(&[
        "run",
        "-di",
        "--name",
        "ws",
        "--network",
        "none",
        "busybox",
        "cat",
    ]);
    let id = id.trim();
    // The monitor's input socket is its owner's only.
    let sock = r.path().join("containers").join(id).join("attach.sock");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&sock).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "{}", sock.display());
    let mut s = UnixStream::connect(&d.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /v1.47/containers/{id}/attach/ws?stdin=1&stdout=1&stream=1 HTTP/1.1\r\nHost: d\r\n\
         Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let mut head = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        head.push_str(&line);
    }
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "{head}"
    );
    // A masked binary message: the line `cat` echoes back.
    let mask = [7u8, 1, 9, 3];
    let mut msg = vec![0x82, 0x80 | 6];
    msg.extend_from_slice(&mask);
    msg.extend(b"hello\n".iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    s.write_all(&msg).unwrap();
    let mut frame_head = [0u8; 2];
    reader.read_exact(&mut frame_head).unwrap();
    assert_eq!(frame_head[0], 0x82, "a binary message");
    let mut payload = vec![0u8; (frame_head[1] & 0x7f) as usize];
    reader.read_exact(&mut payload).unwrap();
    assert_eq!(payload, b"hello\n");
    // Not an upgrade: refused, by what it lacks.
    let (status, _, body) = request(&d, "GET", &format!("/containers/{id}/attach/ws"), None);
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("Upgrade: websocket"));
    r.ok(&["rm", "-f", "ws"]);
}

/// `docker network disconnect` and `connect` of a container from and to its only network,
/// created and running, as Compose does it: the container keeps its network mode, has
/// loopback only while off, and joins again with the aliases it is given, found by them.
#[test]
fn the_docker_cli_disconnects_and_connects_again() {
    ketch_tests::require_tool("docker");
    let (_r, d) = setup();
    docker_ok(&d, &["network", "create", "mesh"]);
    docker_ok(
        &d,
        &[
            "create",
            "--name",
            "made",
            "--network",
            "mesh",
            "busybox",
            "sh",
            "-c",
            "ls /sys/class/net; exec httpd -f -p 80 -h /etc",
        ],
    );
    docker_ok(&d, &["network", "disconnect", "mesh", "made"]);
    let mode = |c: &str| docker_ok(&d, &["inspect", "-f", "{{.HostConfig.NetworkMode}}", c]);
    let nets = |c: &str| {
        docker_ok(
            &d,
            &["inspect", "-f", "{{json .NetworkSettings.Networks}}", c],
        )
    };
    assert_eq!(mode("made"), "mesh\n");
    assert_eq!(nets("made"), "{}\n");
    docker_ok(
        &d,
        &["network", "connect", "--alias", "web", "mesh", "made"],
    );
    let v: serde_json::Value = serde_json::from_str(&nets("made")).unwrap();
    assert_eq!(v["mesh"]["Aliases"], serde_json::json!(["web"]), "{v}");
    docker_ok(&d, &["start", "made"]);
    // A running container: off its only network, then back with a new alias.
    docker_ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "runs",
            "--network",
            "mesh",
            "busybox",
            "sleep",
            "1000",
        ],
    );
    docker_ok(&d, &["network", "disconnect", "mesh", "runs"]);
    assert_eq!(
        docker_ok(&d, &["exec", "runs", "ls", "/sys/class/net"]),
        "lo\n"
    );
    assert_eq!(mode("runs"), "mesh\n");
    docker_ok(
        &d,
        &["network", "connect", "--alias", "client", "mesh", "runs"],
    );
    assert_eq!(
        docker_ok(&d, &["exec", "runs", "ls", "/sys/class/net"]),
        "eth0\nlo\n"
    );
    // Each finds the other by its alias, and the way out is back.
    let get = "printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc web 80 | tail -1";
    let out = docker_ok(&d, &["exec", "runs", "sh", "-c", get]);
    assert_eq!(
        out.trim(),
        docker_ok(&d, &["inspect", "-f", "{{.Config.Hostname}}", "made"]).trim()
    );
    let route = docker_ok(&d, &["exec", "runs", "ip", "route"]);
    assert!(route.starts_with("default via "), "{route}");
    let ping = docker(
        &d,
        &["exec", "made", "ping", "-c", "1", "-W", "2", "client"],
    );
    assert!(ping.status.success(), "{ping:?}");
    // Started while on no network: loopback only, and up.
    docker_ok(
        &d,
        &[
            "create",
            "--name",
            "alone",
            "--network",
            "mesh",
            "busybox",
            "sleep",
            "1000",
        ],
    );
    docker_ok(&d, &["network", "disconnect", "mesh", "alone"]);
    docker_ok(&d, &["start", "alone"]);
    assert_eq!(
        docker_ok(&d, &["exec", "alone", "ls", "/sys/class/net"]),
        "lo\n"
    );
    let lo = docker_ok(&d, &["exec", "alone", "ip", "link", "show", "lo"]);
    assert!(lo.contains(",UP"), "{lo}");
    docker_ok(&d, &["rm", "-f", "made", "runs", "alone"]);
    docker_ok(&d, &["network", "rm", "mesh"]);
}

/// `PUT /containers/{id}/archive?path=PATH` with `tar`: (status, message).
fn put_archive(d: &Daemon, id: &str, path: &str, tar: &[u8]) -> (u16, String) {
    let mut s = UnixStream::connect(&d.socket).unwrap();
    write!(
        s,
        "PUT /containers/{id}/archive?path={path} HTTP/1.1\r\nHost: k\r\nContent-Type: application/x-tar\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        tar.len()
    )
    .unwrap();
    s.write_all(tar).unwrap();
    let (status, _, body) = read_response(&mut BufReader::new(s), false);
    let message = if body.is_empty() {
        String::new()
    } else {
        json(&body)["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    (status, message)
}

/// Where `rel` lands below `base` when resolved by its names alone, as a walk from the host's
/// root goes (`..` at `/` stays at `/`).
fn lexical(base: &Path, rel: &str) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in base.join(rel).components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

/// The names in the tar `GET /containers/{id}/archive?path=PATH` answers with.
fn archive_names(d: &Daemon, id: &str, path: &str) -> Vec<String> {
    let (status, _, body) = request(
        d,
        "GET",
        &format!("/containers/{id}/archive?path={path}"),
        None,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let mut names: Vec<String> = tar::Archive::new(&body[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    names.sort();
    names
}

/// An archive sent to a container, running or stopped, lands in it and nowhere else, however
/// it aims at the host: an entry that climbs out with `..`, a destination that names a host
/// directory, a destination that is a symlink to one. Every miss would land in one directory
/// of the host's, made for the test, which must stay empty.
#[test]
fn an_archive_put_cannot_write_outside_the_container() {
    let (r, d) = setup();
    let target = r
        .dir
        .path()
        .join(format!("escape-{}", ketch_tests::random_hex(4)));
    std::fs::create_dir(&target).unwrap();
    let on_host = || ketch_tests::hostile::entries(&target);
    // The check sees what lands there: a probe put there by hand.
    std::fs::write(target.join("probe"), "").unwrap();
    assert_eq!(on_host(), ["probe"]);
    std::fs::remove_file(target.join("probe")).unwrap();
    let (status, _, body) = request(
        &d,
        "POST",
        "/containers/create?name=target",
        Some(r#"{"Image":"busybox","Cmd":["sleep","1000"],"HostConfig":{"NetworkMode":"none"}}"#),
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let id = json(&body)["Id"].as_str().unwrap().to_string();
    assert_eq!(
        request(&d, "POST", &format!("/containers/{id}/start"), None).0,
        204
    );
    // The container has a directory of the target's name and a symlink to it: resolved in
    // the container, both are the container's.
    let t = target.display().to_string();
    let link = format!("/tmp/link-{}", ketch_tests::random_hex(4));
    r.ok(&[
        "exec",
        "target",
        "sh",
        "-c",
        &format!("mkdir -p {t} && ln -s {t} {link}"),
    ]);
    for phase in ["running", "stopped"] {
        if phase == "stopped" {
            assert_eq!(
                request(&d, "POST", &format!("/containers/{id}/kill"), None).0,
                204
            );
            let (status, _, b) = request(&d, "POST", &format!("/containers/{id}/wait"), None);
            assert_eq!((status, json(&b)["StatusCode"].as_i64()), (200, Some(137)));
        }
        // An entry that climbs out: refused. Resolved on the host it would be in `target`.
        let climb = format!(
            "{}{}/a-{phase}",
            "../".repeat(12),
            t.trim_start_matches('/')
        );
        assert!(
            climb.len() <= 100,
            "{climb}: longer than a tar header's name"
        );
        assert_eq!(
            lexical(Path::new("/tmp"), &climb),
            target.join(format!("a-{phase}"))
        );
        let tar = ketch_tests::TarBuilder::new()
            .file(&climb, b"evil")
            .finish();
        let answer = put_archive(&d, &id, "/tmp", &tar);
        assert_eq!(
            on_host(),
            Vec::<String>::new(),
            "{phase} {climb}: written on the host"
        );
        assert_eq!(
            answer,
            (400, format!("refusing archive entry {climb}")),
            "{phase}"
        );
        // The host directory's path as the destination, and a symlink to it: in the
        // container.
        for (dest, name) in [(t.as_str(), "b"), (link.as_str(), "c")] {
            let tar = ketch_tests::TarBuilder::new()
                .file(&format!("{name}-{phase}"), b"evil")
                .finish();
            let answer = put_archive(&d, &id, dest, &tar);
            assert_eq!(
                on_host(),
                Vec::<String>::new(),
                "{phase} {dest}: written on the host"
            );
            assert_eq!(answer, (200, String::new()), "{phase} {dest}");
        }
    }
    let base = target.file_name().unwrap().to_string_lossy().into_owned();
    let inside: Vec<String> = ["/", "/b-running", "/b-stopped", "/c-running", "/c-stopped"]
        .iter()
        .map(|n| format!("{base}{n}"))
        .collect();
    assert_eq!(archive_names(&d, &id, &t), inside);
    assert_eq!(
        request(&d, "DELETE", &format!("/containers/{id}?force=1"), None).0,
        204
    );
    assert_eq!(r.ok(&["ps", "-aq"]), "");
}

/// A test client from `target/` (made by scripts/setup).
fn workspace_target() -> PathBuf {
    ketch_tests::ketch_bin()
        .parent()
        .and_then(|p| p.parent())
        .unwrap()
        .to_path_buf()
}

#[test]
fn docker_py_works_against_it() {
    let python = workspace_target().join("test-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing; scripts/setup makes it",
        python.display()
    );
    let (r, d) = setup();
    let script = format!(
        r#"
import docker
c = docker.DockerClient(base_url="unix://{sock}")
assert c.version()["ApiVersion"] == "1.47"
assert c.containers.run("busybox", ["echo", "hi"], remove=True, network_mode="none") == b"hi\n"
ct = c.containers.run("busybox", ["sh", "-c", "echo a; sleep 100"], detach=True, name="pyc", network_mode="none")
assert [x.name for x in c.containers.list()] == ["pyc"]
# The first line, as it comes: followed, not polled.
assert next(ct.logs(stream=True, follow=True)) == b"a\n"
assert ct.logs() == b"a\n", ct.logs()
r = ct.exec_run(["sh", "-c", "echo from exec; exit 3"])
assert (r.exit_code, r.output) == (3, b"from exec\n"), r
ct.stop(timeout=1)
ct.remove()
assert c.containers.list(all=True) == []
assert ["busybox:latest"] in [i.tags for i in c.images.list()]
c.images.get("busybox").tag("pytag", "1")
c.images.remove("pytag:1")
n = c.networks.create("pynet")
assert "pynet" in [x.name for x in c.networks.list()]
n.remove()
v = c.volumes.create("pyvol")
assert "pyvol" in [x.name for x in c.volumes.list()]
v.remove()
print("ok")
"#,
        sock = d.socket.display()
    );
    let o = std::process::Command::new(&python)
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(r.ok(&["ps", "-aq"]), "");
}

#[test]
fn dockerode_works_against_it() {
    let modules = workspace_target().join("test-node/node_modules");
    assert!(
        modules.join("dockerode").exists(),
        "{} is missing; scripts/setup makes it",
        modules.display()
    );
    let (r, d) = setup();
    let script = format!(
        r#"
const Docker = require('dockerode');
const d = new Docker({{socketPath: '{sock}'}});
(async () => {{
  const c = await d.createContainer({{Image: 'busybox', Cmd: ['sh', '-c', 'exit 5'], HostConfig: {{NetworkMode: 'none'}}}});
  await c.start();
  const r = await c.wait();
  if (r.StatusCode !== 5) throw new Error('exit ' + JSON.stringify(r));
  await c.remove();
  console.log('ok');
}})().catch(e => {{ console.error(e); process.exit(1); }});
"#,
        sock = d.socket.display()
    );
    let o = std::process::Command::new("node")
        .args(["-e", &script])
        .env("NODE_PATH", &modules)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(r.ok(&["ps", "-aq"]), "");
}

/// What the daemon holds that a finished request must give back: (threads, descriptors).
fn held(pid: u32) -> (usize, usize) {
    let count = |d: String| std::fs::read_dir(d).unwrap().count();
    (
        count(format!("/proc/{pid}/task")),
        count(format!("/proc/{pid}/fd")),
    )
}

/// `held`, once the threads of connections just answered have ended: the same count twice,
/// a fifth of a second apart (or the last count after five seconds).
fn settled(pid: u32) -> (usize, usize) {
    let mut last = held(pid);
    for _ in 0..25 {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let now = held(pid);
        if now == last {
            break;
        }
        last = now;
    }
    last
}

/// One container's life through the API: create, start, wait (exit 0), remove.
fn one_round(d: &Daemon) {
    let (s, _, b) = request(
        d,
        "POST",
        "/containers/create",
        Some(r#"{"Image":"busybox","Cmd":["true"],"HostConfig":{"NetworkMode":"none"}}"#),
    );
    assert_eq!(s, 201, "{}", String::from_utf8_lossy(&b));
    let id = json(&b)["Id"].as_str().unwrap().to_string();
    assert_eq!(
        request(d, "POST", &format!("/containers/{id}/start"), None).0,
        204
    );
    let (s, _, b) = request(d, "POST", &format!("/containers/{id}/wait"), None);
    assert_eq!((s, json(&b)["StatusCode"].as_i64()), (200, Some(0)));
    assert_eq!(
        request(d, "DELETE", &format!("/containers/{id}"), None).0,
        204
    );
}

/// Fifty clients at once, each running create/start/wait/rm a few times: every request is
/// answered, no container is lost or left behind, and once the last answer is in, the
/// daemon's threads and descriptors go back to what they were. (Its memory and its rate are
/// measured by bench/daemon.sh.)
#[test]
fn fifty_clients_at_once_leave_nothing_behind() {
    let (r, d) = setup();
    let d = std::sync::Arc::new(d);
    // Once through first: what the engine opens once (its database, caches) is open.
    one_round(&d);
    let pid = d.child.id();
    let before = settled(pid);
    let workers: Vec<_> = (0..50)
        .map(|_| {
            let d = d.clone();
            std::thread::spawn(move || {
                for _ in 0..3 {
                    one_round(&d);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(r.ok(&["ps", "-aq"]), "");
    let (_, _, body) = request(&d, "GET", "/containers/json?all=1", None);
    assert_eq!(json(&body), serde_json::json!([]));
    // A connection's thread ends just after its answer is sent: waited for, never assumed.
    ketch_tests::wait_until(
        &format!("the daemon's (threads, descriptors) back to at most {before:?}"),
        10,
        || {
            let now = held(pid);
            now.0 <= before.0 && now.1 <= before.1
        },
    );
}

/// A client waiting for a container's removal that hangs up is let go: its thread ends,
/// though the container stays. A container to be removed once it ran (`AutoRemove`) that
/// cannot start is removed at once, as Docker removes it, so that `docker run --rm`'s wait
/// for `removed` ends.
#[test]
fn waits_end_with_their_client_and_a_failed_auto_remove_start() {
    let (r, d) = setup();
    let create = |body: &str| {
        let (s, _, b) = request(&d, "POST", "/containers/create", Some(body));
        assert_eq!(s, 201, "{}", String::from_utf8_lossy(&b));
        json(&b)["Id"].as_str().unwrap().to_string()
    };
    let idle = create(r#"{"Image":"busybox","Cmd":["true"],"HostConfig":{"NetworkMode":"none"}}"#);
    // Once through first, so that what the daemon opens once is open.
    drop(request(
        &d,
        "GET",
        &format!("/containers/{idle}/json"),
        None,
    ));
    let pid = d.child.id();
    let before = settled(pid);
    let mut waiting = Vec::new();
    for _ in 0..5 {
        let mut s = UnixStream::connect(&d.socket).unwrap();
        write!(
            s,
            "POST /containers/{idle}/wait?condition=removed HTTP/1.1\r\nHost: ketch\r\nContent-Length: 0\r\n\r\n"
        )
        .unwrap();
        let mut line = String::new();
        BufReader::new(s.try_clone().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.contains(" 200 "), "{line}");
        waiting.push(s);
    }
    assert!(held(pid).0 >= before.0 + 5, "{:?} {before:?}", held(pid));
    drop(waiting);
    ketch_tests::wait_until(
        &format!("the daemon's (threads, descriptors) back to at most {before:?}"),
        10,
        || {
            let now = held(pid);
            now.0 <= before.0 && now.1 <= before.1
        },
    );
    let doomed = create(&format!(
        r#"{{"Image":"busybox","Cmd":["true"],"HostConfig":{{"NetworkMode":"none","AutoRemove":true,"IpcMode":"container:{idle}"}}}}"#
    ));
    let (s, _, b) = request(&d, "POST", &format!("/containers/{doomed}/start"), None);
    assert_eq!(s, 409, "{}", String::from_utf8_lossy(&b));
    assert!(
        String::from_utf8_lossy(&b).contains("non running container"),
        "{}",
        String::from_utf8_lossy(&b)
    );
    let (s, _, _) = request(&d, "GET", &format!("/containers/{doomed}/json"), None);
    assert_eq!(s, 404);
    assert_eq!(r.ok(&["ps", "-aq", "--no-trunc"]).trim(), idle);
    r.ok(&["rm", &idle]);
}

#[test]
fn events_of_the_daemon_and_of_embedded_users() {
    ketch_tests::require_tool("docker");
    let (r, d) = setup();
    let since = chrono_now_secs();
    // One container through the API, one through the CLI on the same root.
    let (_, _, body) = request(
        &d,
        "POST",
        "/containers/create?name=viaapi",
        Some(r#"{"Image":"busybox","Cmd":["true"],"HostConfig":{"NetworkMode":"none"}}"#),
    );
    let id = json(&body)["Id"].as_str().unwrap().to_string();
    request(&d, "POST", &format!("/containers/{id}/start"), None);
    request(&d, "POST", &format!("/containers/{id}/wait"), None);
    request(&d, "DELETE", &format!("/containers/{id}"), None);
    r.ok(&[
        "run",
        "--rm",
        "--name",
        "viacli",
        "--network",
        "none",
        "busybox",
        "true",
    ]);
    r.ok(&["volume", "create", "evvol"]);
    let until = chrono_now_secs() + 1;
    let (status, _, body) = request(
        &d,
        "GET",
        &format!("/events?since={since}&until={until}"),
        None,
    );
    assert_eq!(status, 200);
    let events: Vec<(String, String, String)> = String::from_utf8_lossy(&body)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["Type"].as_str().unwrap().to_string(),
                v["Action"].as_str().unwrap().to_string(),
                v["Actor"]["Attributes"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    let containers: Vec<String> = events
        .iter()
        .filter(|(t, _, _)| t == "container")
        .map(|(_, a, n)| format!("{a} {n}"))
        .collect();
    assert_eq!(
        containers,
        [
            "create viaapi",
            "start viaapi",
            "die viaapi",
            "destroy viaapi",
            "create viacli",
            "start viacli",
            "die viacli",
            "destroy viacli"
        ]
    );
    assert!(
        events
            .iter()
            .any(|(t, a, _)| t == "volume" && a == "create")
    );
    // Filtered, and through the docker CLI.
    let (_, _, body) = request(
        &d,
        "GET",
        &format!(
            "/events?since={since}&until={until}&filters=%7B%22type%22%3A%5B%22volume%22%5D%7D"
        ),
        None,
    );
    let volumes: Vec<serde_json::Value> = String::from_utf8_lossy(&body)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(volumes.len(), 1, "{volumes:?}");
    assert_eq!(
        (
            &volumes[0]["Type"],
            &volumes[0]["Action"],
            &volumes[0]["Actor"]["ID"]
        ),
        (&"volume".into(), &"create".into(), &"evvol".into())
    );
    let out = docker_ok(
        &d,
        &[
            "events",
            "--since",
            &since.to_string(),
            "--until",
            &until.to_string(),
            "--filter",
            "event=die",
            "--format",
            "{{.Actor.Attributes.name}} {{.Actor.Attributes.exitCode}}",
        ],
    );
    assert_eq!(out, "viaapi 0\nviacli 0\n");
}

fn chrono_now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A table's rows, split on white space: the header first.
fn rows(out: &str) -> Vec<Vec<&str>> {
    out.lines()
        .map(|l| l.split_whitespace().collect())
        .collect()
}

/// What one command must print: its exit code, and a check of its stdout and stderr.
type Expect<'a> = (i32, Box<dyn Fn(&str, &str) + 'a>);

fn exact<'a>(code: i32, out: String, err: &'a str) -> Expect<'a> {
    (
        code,
        Box::new(move |o: &str, e: &str| assert_eq!((o, e), (out.as_str(), err))),
    )
}

fn says<'a>(code: i32, out: &'a str, words: &'a [&'a str]) -> Expect<'a> {
    (
        code,
        Box::new(move |o: &str, e: &str| {
            assert_eq!(o, out);
            for w in words {
                assert!(e.contains(w), "{w:?} not in {e:?}");
            }
        }),
    )
}

fn with_json<'a>(check: impl Fn(&serde_json::Value) + 'a) -> Expect<'a> {
    (
        0,
        Box::new(move |o: &str, e: &str| {
            assert_eq!(e, "");
            check(&serde_json::from_str(o).unwrap());
        }),
    )
}

fn with_out<'a>(check: impl Fn(&str) + 'a) -> Expect<'a> {
    (
        0,
        Box::new(move |o: &str, e: &str| {
            assert_eq!(e, "");
            check(o);
        }),
    )
}

/// A `logs -t` line: an RFC 3339 time in UTC with nanoseconds, a space, the text.
fn timestamped(line: &str, text: &str) {
    let (t, rest) = line.split_once(' ').unwrap();
    assert_eq!(rest, text, "{line}");
    let b = t.as_bytes();
    assert!(
        t.len() == 30
            && [b[4], b[7], b[10], b[13], b[16], b[19], b[29]] == *b"--T::.Z"
            && t.chars().filter(char::is_ascii_digit).count() == 23,
        "{line}"
    );
}

/// `ketch -H` against the daemon: the same root seen embedded and through the daemon gives
/// the same output and exit codes, each the one the command should give, and every kind of
/// verb works remotely. The remote CLI names a state root of its own that it never opens.
#[test]
fn the_ketch_cli_goes_remote_with_the_same_output() {
    let (r, d) = setup();
    let url = format!("unix://{}", d.socket.display());
    let decoy = Root::new();
    let remote = |args: &[&str]| {
        let mut c = decoy.cmd();
        c.env("KETCH_BRIDGE", &r.bridge)
            .args(["-H", &url])
            .args(args)
            .output()
            .unwrap()
    };
    let remote_ok = |args: &[&str]| {
        let o = remote(args);
        assert!(o.status.success(), "ketch -H {args:?}: {o:?}");
        String::from_utf8(o.stdout).unwrap()
    };
    r.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "none",
        "-l",
        "tier=front",
        "-v",
        "used:/u",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; touch /made; exec sleep 1000",
    ]);
    r.ok(&["volume", "create", "--label", "a=b", "data"]);
    let id = r
        .ok(&["inspect", "-f", "{{.Id}}", "web"])
        .trim()
        .to_string();
    let pid = r
        .ok(&["inspect", "-f", "{{.State.Pid}}", "web"])
        .trim()
        .to_string();
    let image = r
        .ok(&["image", "inspect", "-f", "{{.Id}}", "busybox"])
        .trim()
        .to_string();
    let (id12, image12) = (id[..12].to_string(), image[7..19].to_string());
    // Its output in the log, and its script done: it runs `sleep` now.
    ketch_tests::wait_until("web's output in its log, then sleep", 10, || {
        let o = r.run(&["logs", "web"]);
        (o.stdout.as_slice(), o.stderr.as_slice()) == (b"out\n", b"err\n")
            && std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c == "sleep\n")
    });
    let cases: Vec<(&[&str], Expect)> = vec![
        (
            &[
                "ps",
                "-a",
                "--format",
                "{{.ID}} {{.Image}} {{.Command}} {{.Names}} {{.State}} {{.Labels}}",
            ],
            with_out(|o| {
                assert!(
                    o.starts_with(&format!("{id12} busybox \"sh -c echo out"))
                        && o.ends_with("\" web running tier=front\n")
                        && o.lines().count() == 1,
                    "{o}"
                )
            }),
        ),
        (
            &["ps", "-q", "--filter", "label=tier=front"],
            exact(0, format!("{id12}\n"), ""),
        ),
        (
            &[
                "images",
                "--format",
                "{{.Repository}} {{.Tag}} {{.ID}} {{.Size}}",
            ],
            with_out(|o| {
                let r = rows(o);
                assert_eq!(
                    (r.len(), &r[0][..3]),
                    (1, &["busybox", "latest", &image12][..])
                );
                assert!(r[0][3].ends_with("MB"), "{o}");
            }),
        ),
        (
            &["inspect", "web"],
            with_json(|v| {
                let c = &v[0];
                assert_eq!(
                    (
                        &c["Id"],
                        &c["Name"],
                        &c["State"]["Running"],
                        &c["Config"]["Labels"]
                    ),
                    (
                        &id.as_str().into(),
                        &"/web".into(),
                        &true.into(),
                        &serde_json::json!({"tier": "front"})
                    )
                );
            }),
        ),
        (
            &[
                "inspect",
                "--format",
                "{{.Config.Image}} {{.State.Running}}",
                "web",
            ],
            exact(0, "busybox true\n".into(), ""),
        ),
        (
            &["image", "inspect", "busybox"],
            with_json(|v| {
                assert_eq!(
                    (&v[0]["Id"], &v[0]["RepoTags"]),
                    (
                        &image.as_str().into(),
                        &serde_json::json!(["busybox:latest"])
                    )
                )
            }),
        ),
        (&["logs", "web"], exact(0, "out\n".into(), "err\n")),
        (
            &["logs", "-t", "web"],
            (
                0,
                Box::new(|o: &str, e: &str| {
                    timestamped(o.strip_suffix('\n').unwrap(), "out");
                    timestamped(e.strip_suffix('\n').unwrap(), "err");
                }),
            ),
        ),
        // The last line of the log, whichever stream it was on.
        (
            &["logs", "--tail", "1", "web"],
            exact(0, String::new(), "err\n"),
        ),
        (
            &["top", "web", "-o", "pid,comm"],
            with_out(|o| assert_eq!(rows(o), [["PID", "COMMAND"], [pid.as_str(), "sleep"]])),
        ),
        (&["port", "web"], exact(0, String::new(), "")),
        (
            &["diff", "web"],
            with_out(|o| assert!(o.lines().any(|l| l == "A /made"), "{o}")),
        ),
        (
            &["network", "ls"],
            with_out(|o| {
                let r = rows(o);
                assert_eq!(r[0], ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]);
                let mut named: Vec<(&str, &str)> = r[1..].iter().map(|l| (l[1], l[2])).collect();
                named.sort();
                assert_eq!(
                    named,
                    [("bridge", "bridge"), ("host", "host"), ("none", "null")]
                );
            }),
        ),
        (
            &["network", "inspect", "none"],
            with_json(|v| {
                assert_eq!(
                    (&v[0]["Name"], &v[0]["Driver"]),
                    (&"none".into(), &"null".into())
                )
            }),
        ),
        (
            &["volume", "ls"],
            with_out(|o| {
                assert_eq!(
                    rows(o),
                    [
                        ["DRIVER", "VOLUME", "NAME"],
                        ["local", "data", ""],
                        ["local", "used", ""]
                    ]
                    .map(|r| r.into_iter().filter(|c| !c.is_empty()).collect::<Vec<_>>())
                )
            }),
        ),
        // `used` is web's: only `data` is dangling.
        (
            &["volume", "ls", "-f", "dangling=true"],
            with_out(|o| {
                assert_eq!(
                    rows(o),
                    [vec!["DRIVER", "VOLUME", "NAME"], vec!["local", "data"]]
                )
            }),
        ),
        (
            &["volume", "inspect", "data"],
            with_json(|v| {
                assert_eq!(
                    (&v[0]["Name"], &v[0]["Labels"]),
                    (&"data".into(), &serde_json::json!({"a": "b"}))
                )
            }),
        ),
        (
            &["system", "df"],
            with_out(|o| {
                let r = rows(o);
                assert_eq!(r[0], ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]);
                assert_eq!(&r[1][..3], ["Images", "1", "1"]);
                assert_eq!(&r[2][..3], ["Containers", "1", "1"]);
                assert_eq!(&r[3][..4], ["Local", "Volumes", "2", "1"]);
            }),
        ),
        (
            &[
                "exec",
                "web",
                "sh",
                "-c",
                "echo in-exec; echo e >&2; exit 3",
            ],
            exact(3, "in-exec\n".into(), "e\n"),
        ),
        (
            &["exec", "web", "no-such-command"],
            says(
                126,
                "",
                &[r#"exec: "no-such-command": executable file not found in $PATH"#],
            ),
        ),
        (
            &[
                "run",
                "--rm",
                "--network",
                "none",
                "busybox",
                "sh",
                "-c",
                "echo hi; exit 7",
            ],
            exact(7, "hi\n".into(), ""),
        ),
        (
            &[
                "run",
                "--rm",
                "--network",
                "none",
                "busybox",
                "no-such-command",
            ],
            says(
                127,
                "",
                &[r#"exec: "no-such-command": executable file not found in $PATH"#],
            ),
        ),
        (
            &["inspect", "no-such-thing"],
            says(1, "[]\n", &["No such", "no-such-thing"]),
        ),
        (
            &["rm", "no-such-container"],
            says(1, "", &["No such container: no-such-container"]),
        ),
        (
            &["logs", "no-such-container"],
            says(1, "", &["No such container: no-such-container"]),
        ),
        (
            &["volume", "inspect", "no-such-volume"],
            says(1, "[]\n", &["no such volume", "no-such-volume"]),
        ),
    ];
    for (args, (code, check)) in &cases {
        let local = r.run(args);
        let far = remote(args);
        let show = |o: &std::process::Output| {
            format!(
                "exit {:?}\n{}{}",
                o.status.code(),
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        };
        assert_eq!(show(&local), show(&far), "{args:?}");
        // Equal, and right: both could be wrong the same way.
        for (mode, o) in [("embedded", &local), ("remote", &far)] {
            assert_eq!(o.status.code(), Some(*code), "{mode} {args:?}: {}", show(o));
            let (out, err) = (
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr),
            );
            let checked =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&out, &err)));
            assert!(checked.is_ok(), "{mode} {args:?}: {}", show(o));
        }
    }
    // Each kind of change, through the daemon.
    let o = decoy
        .cmd()
        .args([
            "-H",
            &url,
            "run",
            "-i",
            "--rm",
            "--network",
            "none",
            "busybox",
            "cat",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(b"piped in\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "piped in\n");
    remote_ok(&["pause", "web"]);
    assert_eq!(
        remote_ok(&["inspect", "--format", "{{.State.Status}}", "web"]),
        "paused\n"
    );
    remote_ok(&["unpause", "web"]);
    assert_eq!(
        r.ok(&["inspect", "--format", "{{.State.Status}}", "web"]),
        "running\n"
    );
    let files = r.dir.path().join("files");
    std::fs::create_dir(&files).unwrap();
    std::fs::write(files.join("in.txt"), "to the container\n").unwrap();
    remote_ok(&["cp", files.join("in.txt").to_str().unwrap(), "web:/in.txt"]);
    remote_ok(&[
        "cp",
        "web:/in.txt",
        files.join("back.txt").to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(files.join("back.txt")).unwrap(),
        "to the container\n"
    );
    let id = remote_ok(&[
        "commit",
        "-c",
        "CMD [\"cat\", \"/in.txt\"]",
        "web",
        "committed:1",
    ]);
    assert!(id.starts_with("sha256:"), "{id}");
    assert_eq!(
        remote_ok(&["run", "--rm", "--network", "none", "committed:1"]),
        "to the container\n"
    );
    let tar = files.join("web.tar");
    remote_ok(&["export", "-o", tar.to_str().unwrap(), "web"]);
    let listing = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&tar)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&listing.stdout)
            .lines()
            .any(|l| l == "made"),
        "{listing:?}"
    );
    remote_ok(&["tag", "committed:1", "again:2"]);
    let saved = files.join("saved.tar");
    remote_ok(&["save", "-o", saved.to_str().unwrap(), "again:2"]);
    assert!(remote_ok(&["rmi", "again:2"]).contains("Untagged: again:2"));
    assert_eq!(
        remote_ok(&["load", "-i", saved.to_str().unwrap()]),
        "Loaded image: again:2\n"
    );
    remote_ok(&["network", "create", "remote-net"]);
    remote_ok(&["create", "--name", "joiner", "busybox", "true"]);
    remote_ok(&["network", "connect", "remote-net", "joiner"]);
    // Recorded: a second connect, and a disconnect after the first, say so.
    let said = |args: &[&str], words: &str| {
        let o = remote(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            o.status.code() == Some(1) && err.contains(words),
            "{args:?}: {o:?}"
        );
    };
    said(
        &["network", "connect", "remote-net", "joiner"],
        "endpoint with name joiner already exists in network remote-net",
    );
    remote_ok(&["network", "disconnect", "remote-net", "joiner"]);
    said(
        &["network", "disconnect", "remote-net", "joiner"],
        "container joiner is not connected to network remote-net",
    );
    assert_eq!(remote_ok(&["rm", "joiner"]), "joiner\n");
    assert_eq!(remote_ok(&["network", "rm", "remote-net"]), "remote-net\n");
    assert_eq!(
        remote_ok(&["volume", "create", "--label", "x=y", "remote-vol"]),
        "remote-vol\n"
    );
    assert_eq!(
        r.ok(&["volume", "inspect", "-f", "{{json .Labels}}", "remote-vol"]),
        "{\"x\":\"y\"}\n"
    );
    assert_eq!(remote_ok(&["volume", "rm", "remote-vol"]), "remote-vol\n");
    assert_eq!(remote_ok(&["volume", "rm", "data"]), "data\n");
    // sleep, as the container's first process, ignores SIGTERM: the stop ends in SIGKILL.
    assert_eq!(remote_ok(&["stop", "-t", "1", "web"]), "web\n");
    assert_eq!(
        r.ok(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}}",
            "web"
        ]),
        "exited 137\n"
    );
    assert_eq!(remote_ok(&["rm", "web"]), "web\n");
    assert_eq!(remote_ok(&["volume", "rm", "used"]), "used\n");
    assert_eq!(r.ok(&["ps", "-aq"]), "");
    assert_eq!(r.ok(&["volume", "ls", "-q"]), "");
    // The remote CLI never opened the root it was given.
    assert!(!decoy.path().exists(), "the remote CLI opened its own root");
}

/// `KETCH_HOST` does what `-H` does: the CLI, with no `--root` and a `KETCH_ROOT` of its own
/// that does not hold the container, finds the container through the daemon and never opens
/// that root; `-H` wins over it; a daemon that is not there is an error that names it.
#[test]
fn ketch_host_sends_the_cli_to_the_daemon() {
    let (r, d) = setup();
    let url = format!("unix://{}", d.socket.display());
    r.ok(&["create", "--name", "onlyhere", "busybox", "true"]);
    let decoy = Root::new();
    let cli = |host: &str, args: &[&str]| {
        let o = std::process::Command::new(ketch_tests::ketch_bin())
            .env("KETCH_HOST", host)
            .env("KETCH_ROOT", decoy.path())
            .env("KETCH_BRIDGE", &decoy.bridge)
            .env("KETCH_IP_FORWARD", "false")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let names = ["ps", "-a", "--format", "{{.Names}}"];
    assert_eq!(
        cli(&url, &names),
        (Some(0), "onlyhere\n".into(), String::new())
    );
    assert_eq!(
        cli(&url, &["inspect", "-f", "{{.Name}}", "onlyhere"]),
        (Some(0), "/onlyhere\n".into(), String::new())
    );
    let gone = "unix:///nonexistent/ketch.sock";
    let mut over = vec!["-H", url.as_str()];
    over.extend(names);
    assert_eq!(
        cli(gone, &over),
        (Some(0), "onlyhere\n".into(), String::new())
    );
    let (code, out, err) = cli(gone, &names);
    assert_eq!((code, out.as_str()), (Some(1), ""), "{err}");
    assert!(
        err.contains(&format!("Cannot connect to the ketch daemon at {gone}")),
        "{err}"
    );
    assert!(!decoy.path().exists(), "the CLI opened KETCH_ROOT");
}

/// `ps --filter`, embedded and through the daemon (which does the filtering, as Docker's
/// does): a container matches `label=KEY[=VALUE]` when it has the label (with that value,
/// when one is given) and must match all labels given; the values of another key are
/// alternatives; different keys must all hold. A status filter lists stopped containers too.
#[test]
fn ps_filters_embedded_and_remote() {
    let r = Root::new();
    r.busybox("busybox");
    for (name, labels) in [
        ("front", &["tier=front", "env=prod"][..]),
        ("back", &["tier=back"]),
        ("plain", &[]),
    ] {
        let mut args = vec!["create", "--name", name];
        for l in labels {
            args.extend(["-l", l]);
        }
        args.extend(["busybox", "true"]);
        r.ok(&args);
    }
    ketch_tests::hostile::both(&r, |f| {
        for (filters, want) in [
            (&["label=tier=front"][..], "front"),
            (&["label=tier=back"], "back"),
            (&["label=tier"], "back front"),
            (&["label=tier=middle"], ""),
            (&["label=nokey"], ""),
            (&["label=env=prod", "label=tier=front"], "front"),
            (&["label=env=prod", "label=tier=back"], ""),
            (&["status=created"], "back front plain"),
            (&["status=running"], ""),
            (
                &["status=running", "status=created", "label=tier"],
                "back front",
            ),
            (&["exited=0"], ""),
            (&["name=ron"], "front"),
            (&["name=ack", "name=lai"], "back plain"),
            (&["ancestor=busybox", "label=env"], "front"),
            (&["ancestor=nosuch"], ""),
            (&["network=bridge", "name=plain"], "plain"),
        ] {
            let mut args = vec!["ps", "-a", "--format", "{{.Names}}"];
            for x in filters {
                args.extend(["--filter", x]);
            }
            let out = f.ok(&args);
            let mut got: Vec<&str> = out.lines().collect();
            got.sort();
            assert_eq!(got.join(" "), want, "{} {filters:?}", f.name());
        }
        let id = f.ok(&["ps", "-aq", "--no-trunc", "--filter", "name=back"]);
        let out = f.ok(&[
            "ps",
            "-a",
            "--format",
            "{{.Names}}",
            "--filter",
            &format!("id={}", &id[..10]),
        ]);
        assert_eq!(out, "back\n", "{}", f.name());
        for (filter, want) in [
            ("colour=red", "invalid filter 'colour'"),
            ("status=asleep", "invalid filter 'status=asleep'"),
            ("exited=ok", "invalid filter 'exited=ok'"),
        ] {
            let o = f.run(&["ps", "-a", "--filter", filter]);
            assert_eq!(o.status.code(), Some(1), "{}", f.name());
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(err.contains(want), "{}: {err}", f.name());
        }
    });
    r.ok(&["rm", "front", "back", "plain"]);
}

/// `top CONTAINER [ps OPTIONS]`, embedded and through the daemon: the host's `ps` with those
/// options, narrowed to the container's processes.
#[test]
fn top_takes_ps_options_embedded_and_remote() {
    let r = Root::new();
    r.busybox("busybox");
    r.ok(&[
        "run",
        "-d",
        "--name",
        "tops",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "sleep 1000 & wait",
    ]);
    let sh = r
        .ok(&["inspect", "-f", "{{.State.Pid}}", "tops"])
        .trim()
        .to_string();
    let children = format!("/proc/{sh}/task/{sh}/children");
    ketch_tests::wait_until("the container's sleep", 10, || {
        std::fs::read_to_string(&children).is_ok_and(|c| !c.trim().is_empty())
    });
    let sleep = std::fs::read_to_string(&children)
        .unwrap()
        .trim()
        .to_string();
    ketch_tests::wait_until("the child to be sleep", 10, || {
        std::fs::read_to_string(format!("/proc/{sleep}/comm")).is_ok_and(|c| c == "sleep\n")
    });
    ketch_tests::hostile::both(&r, |f| {
        let mut got = rows(&f.ok(&["top", "tops", "-o", "pid,comm"]))
            .into_iter()
            .map(|r| r.join(" "))
            .collect::<Vec<_>>();
        got[1..].sort();
        let mut want = vec![format!("{sh} sh"), format!("{sleep} sleep")];
        want.sort();
        want.insert(0, "PID COMMAND".into());
        assert_eq!(got, want, "{}", f.name());
        // Without options: `ps -ef`'s columns, the command with its spaces.
        let out = f.ok(&["top", "tops"]);
        let table = rows(&out);
        assert_eq!(
            table[0],
            ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"],
            "{}",
            f.name()
        );
        assert_eq!(table.len(), 3, "{}: {out}", f.name());
        assert!(
            out.lines()
                .any(|l| l.split_whitespace().nth(1) == Some(sh.as_str())
                    && l.ends_with("sh -c sleep 1000 & wait")),
            "{}: {out}",
            f.name()
        );
        assert!(
            out.lines().any(|l| {
                let c: Vec<&str> = l.split_whitespace().collect();
                c[1] == sleep && c[2] == sh && l.ends_with("sleep 1000")
            }),
            "{}: {out}",
            f.name()
        );
        // Options whose output has no PID column cannot be narrowed: refused, saying why.
        let o = f.run(&["top", "tops", "-o", "comm"]);
        assert_eq!(o.status.code(), Some(1), "{}", f.name());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("ps -o comm: its output has no PID column"),
            "{}: {err}",
            f.name()
        );
    });
    r.ok(&["rm", "-f", "tops"]);
}

/// `POST /containers/{id}/resize`: the terminal of a running container follows the client's
/// window, detached (the size goes through the bundle, the monitor has no terminal of its own).
#[test]
fn a_container_terminal_follows_resizes() {
    let (_r, d) = setup();
    // The process prints every size it is given and ends once it has 40x120 (or after 20 s).
    let script = r#"last=$(stty size 2>/dev/null); echo \"start $last\"; i=0; while [ $i -lt 400 ]; do s=$(stty size 2>/dev/null); if [ \"$s\" != \"$last\" ]; then echo \"size $s\"; last=$s; fi; [ \"$s\" = '40 120' ] && exit 7; i=$((i+1)); sleep 0.05; done; exit 9"#;
    let (code, _, body) = request(
        &d,
        "POST",
        "/containers/create?name=box",
        Some(&format!(
            r#"{{"Image": "busybox", "Tty": true, "Cmd": ["sh", "-c", "{script}"], "HostConfig": {{"NetworkMode": "none"}}}}"#
        )),
    );
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    assert_eq!(request(&d, "POST", "/containers/box/start", None).0, 204);
    let logs = || {
        let (code, _, body) = request(&d, "GET", "/containers/box/logs?stdout=1", None);
        assert_eq!(code, 200);
        String::from_utf8_lossy(&body).replace('\r', "")
    };
    let seen = |want: &str| {
        let until = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let l = logs();
            if l.lines().any(|x| x == want) {
                return;
            }
            assert!(std::time::Instant::now() < until, "no {want:?} in {l:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    seen("start ");
    for (h, w) in [(33, 99), (40, 120)] {
        let (code, _, body) = request(
            &d,
            "POST",
            &format!("/containers/box/resize?h={h}&w={w}"),
            None,
        );
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        seen(&format!("size {h} {w}"));
    }
    let (code, _, body) = request(&d, "POST", "/containers/box/wait", None);
    assert_eq!(code, 200);
    assert_eq!(json(&body)["StatusCode"], 7, "{}", logs());
    // A container that is not running, or not there, gets an error that says so.
    let (code, _, body) = request(&d, "POST", "/containers/box/resize?h=50&w=150", None);
    assert_eq!(code, 409, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("is not running"));
    let (code, _, body) = request(&d, "POST", "/containers/nosuch/resize?h=50&w=150", None);
    assert_eq!(code, 404, "{}", String::from_utf8_lossy(&body));
    assert_eq!(request(&d, "DELETE", "/containers/box", None).0, 204);
}

/// `POST /exec/{id}/resize`: the terminal of a running exec follows the client's window.
/// Docker CLIs before 23 (API 1.42) send an exec's size only this way, after the start; every
/// CLI sends it when the window changes.
#[test]
fn an_exec_terminal_follows_resizes() {
    let (_r, d) = setup();
    let (code, _, body) = request(
        &d,
        "POST",
        "/containers/create?name=box",
        Some(
            r#"{"Image": "busybox", "Cmd": ["sleep", "1000"], "HostConfig": {"NetworkMode": "none"}}"#,
        ),
    );
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    assert_eq!(request(&d, "POST", "/containers/box/start", None).0, 204);
    // The process prints the size it starts with and every size it is given after, and
    // ends once it has 40x120 (or after 20 s without it).
    let script = r#"last=$(stty size 2>/dev/null); echo \"start $last\"; i=0; while [ $i -lt 400 ]; do s=$(stty size 2>/dev/null); if [ \"$s\" != \"$last\" ]; then echo \"size $s\"; last=$s; fi; [ \"$s\" = '40 120' ] && exit 7; i=$((i+1)); sleep 0.05; done; exit 9"#;
    let (code, _, body) = request(
        &d,
        "POST",
        "/containers/box/exec",
        Some(&format!(
            r#"{{"AttachStdout": true, "AttachStderr": true, "Tty": true, "Cmd": ["sh", "-c", "{script}"]}}"#
        )),
    );
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    let id = json(&body)["Id"].as_str().unwrap().to_string();
    // Before the start: kept, and the exec starts with it.
    let (code, _, body) = request(&d, "POST", &format!("/exec/{id}/resize?h=20&w=70"), None);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));

    let mut s = UnixStream::connect(&d.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let start = r#"{"Detach": false, "Tty": true}"#;
    write!(
        s,
        "POST /exec/{id}/start HTTP/1.1\r\nHost: ketch\r\nContent-Type: application/json\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: {}\r\n\r\n{start}",
        start.len()
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut head = String::new();
    while !head.ends_with("\r\n\r\n") {
        let mut line = String::new();
        assert!(r.read_line(&mut line).unwrap() > 0, "no answer: {head}");
        head.push_str(&line);
    }
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let mut next_line = || {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        line.trim_end().to_string()
    };
    assert_eq!(next_line(), "start 20 70");
    // A size without rows or columns (a client that has no window yet) changes nothing:
    // the next size the process sees is the one after.
    for (h, w) in [(33, 99), (0, 50), (50, 0), (40, 120)] {
        let (code, _, body) = request(&d, "POST", &format!("/exec/{id}/resize?h={h}&w={w}"), None);
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        if h > 0 && w > 0 {
            assert_eq!(next_line(), format!("size {h} {w}"));
        } else {
            // Time for the process to look (it does every 50 ms).
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    assert_eq!(next_line(), "", "the stream did not end with the process");
    let v = json(&request(&d, "GET", &format!("/exec/{id}/json"), None).2);
    assert_eq!(v["ExitCode"], 7, "{v}");
    // Bad input and a finished or unknown exec get errors that say so.
    let (code, _, body) = request(&d, "POST", &format!("/exec/{id}/resize?h=50&w=150"), None);
    assert_eq!(code, 409, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("is not running"));
    let (code, _, body) = request(&d, "POST", "/exec/nosuch/resize?h=50&w=150", None);
    assert_eq!(code, 404, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("No such exec instance: nosuch"));
    let (code, _, body) = request(&d, "POST", &format!("/exec/{id}/resize?h=big&w=150"), None);
    assert_eq!(code, 400, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("h: a number of characters is required"));
    assert_eq!(
        request(&d, "DELETE", "/containers/box?force=1", None).0,
        204
    );
}
