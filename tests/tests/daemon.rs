//! `ketch daemon`: the Docker Engine API on a UNIX socket the test makes.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

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
    let (_r, d) = setup();
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
    let (status, _, body) = request(&d, "POST", "/containers/create", Some("{not json"));
    assert_eq!(status, 400);
    assert!(
        json(&body)["message"]
            .as_str()
            .unwrap()
            .contains("invalid JSON")
    );
    let (status, _, _) = request(
        &d,
        "POST",
        "/containers/create",
        Some(r#"{"Cmd":["true"]}"#),
    );
    assert_eq!(status, 400);
    let (status, _, _) = request(
        &d,
        "POST",
        "/containers/create",
        Some(r#"{"Image":"nosuchimage"}"#),
    );
    assert_eq!(status, 404);
    let (status, _, _) = request(&d, "GET", "/no/such/endpoint", None);
    assert_eq!(status, 404);
    let (status, _, _) = request(&d, "POST", "/containers/nosuch/kill?signal=NOPE", None);
    assert!(status == 400 || status == 404, "{status}");
    // Garbage instead of HTTP.
    let mut s = UnixStream::connect(&d.socket).unwrap();
    s.write_all(b"\x00\x01garbage\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
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
    std::process::Command::new("docker")
        .args(args)
        .env("DOCKER_HOST", format!("unix://{}", d.socket.display()))
        .env(
            "DOCKER_CONFIG",
            d.socket.parent().unwrap().join("docker-config"),
        )
        .stdin(Stdio::null())
        .output()
        .unwrap()
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
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("No such"),
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
        "stty size; tty; exit 5\n",
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(5), "{out}");
    assert!(out.contains("20 70"), "{out}");
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

#[test]
fn an_archive_put_cannot_write_outside_the_container() {
    let (r, d) = setup();
    let (_, _, body) = request(
        &d,
        "POST",
        "/containers/create?name=target",
        Some(r#"{"Image":"busybox","Cmd":["sleep","1000"],"HostConfig":{"NetworkMode":"none"}}"#),
    );
    let id = json(&body)["Id"].as_str().unwrap().to_string();
    request(&d, "POST", &format!("/containers/{id}/start"), None);
    // A tar whose entry climbs out, sent raw.
    let mut tar = Vec::new();
    {
        let mut h = tar::Header::new_gnu();
        let name = format!(
            "../../../../../../tmp/ketch-escape-{}",
            ketch_tests::random_hex(4)
        );
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(4);
        h.set_mode(0o644);
        h.set_cksum();
        tar.extend_from_slice(h.as_bytes());
        tar.extend_from_slice(b"evil");
        tar.resize(512 * 2, 0);
        tar.resize(tar.len() + 1024, 0);
        let mut s = UnixStream::connect(&d.socket).unwrap();
        write!(
            s,
            "PUT /containers/{id}/archive?path=/tmp HTTP/1.1\r\nHost: k\r\nContent-Type: application/x-tar\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            tar.len()
        )
        .unwrap();
        s.write_all(&tar).unwrap();
        let (status, _, body) = read_response(&mut BufReader::new(s), false);
        assert!(
            (400..500).contains(&status),
            "{status}: {}",
            String::from_utf8_lossy(&body)
        );
        assert!(
            !std::path::Path::new(&format!(
                "/{}",
                name.trim_start_matches("../").trim_start_matches("../")
            ))
            .exists()
        );
        let leaked = std::fs::read_dir("/tmp").unwrap().any(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("ketch-escape-")
        });
        assert!(!leaked, "the archive wrote on the host");
    }
    request(&d, "DELETE", &format!("/containers/{id}?force=1"), None);
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
import time
for _ in range(50):
    if ct.logs() == b"a\n":
        break
    time.sleep(0.1)
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

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// Fifty clients at once, each running create/start/wait/rm in a loop for a while: every
/// request is answered, no container is lost or left behind, and the daemon's memory goes
/// back to where it was.
#[test]
fn fifty_clients_for_thirty_seconds() {
    let (r, d) = setup();
    let d = std::sync::Arc::new(d);
    // Warm up: the allocator's arenas and the engine's caches are made once.
    for _ in 0..20 {
        let (s, _, b) = request(
            &d,
            "POST",
            "/containers/create",
            Some(r#"{"Image":"busybox","Cmd":["true"],"HostConfig":{"NetworkMode":"none"}}"#),
        );
        assert_eq!(s, 201);
        let id = json(&b)["Id"].as_str().unwrap().to_string();
        request(&d, "POST", &format!("/containers/{id}/start"), None);
        request(&d, "POST", &format!("/containers/{id}/wait"), None);
        request(&d, "DELETE", &format!("/containers/{id}"), None);
    }
    let pid = d.child.id();
    let baseline = rss_kib(pid);
    let until = Instant::now() + Duration::from_secs(30);
    let workers: Vec<_> = (0..50)
        .map(|_| {
            let d = d.clone();
            std::thread::spawn(move || {
                let mut rounds = 0;
                while Instant::now() < until {
                    let (s, _, b) = request(
                        &d,
                        "POST",
                        "/containers/create",
                        Some(r#"{"Image":"busybox","Cmd":["true"],"HostConfig":{"NetworkMode":"none"}}"#),
                    );
                    assert_eq!(s, 201, "{}", String::from_utf8_lossy(&b));
                    let id = json(&b)["Id"].as_str().unwrap().to_string();
                    assert_eq!(request(&d, "POST", &format!("/containers/{id}/start"), None).0, 204);
                    let (s, _, b) = request(&d, "POST", &format!("/containers/{id}/wait"), None);
                    assert_eq!((s, json(&b)["StatusCode"].as_i64()), (200, Some(0)));
                    assert_eq!(request(&d, "DELETE", &format!("/containers/{id}"), None).0, 204);
                    rounds += 1;
                }
                rounds
            })
        })
        .collect();
    let rounds: u32 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(rounds >= 50, "only {rounds} rounds in 30 s");
    assert_eq!(r.ok(&["ps", "-aq"]), "");
    let (_, _, body) = request(&d, "GET", "/containers/json?all=1", None);
    assert_eq!(json(&body), serde_json::json!([]));
    // The threads are gone; what they held is given back (within the allocator's slack).
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_kib(pid);
    eprintln!("daemon RSS: {baseline} KiB before, {after} KiB after {rounds} rounds");
    assert!(
        after < baseline + 8 * 1024,
        "daemon RSS {baseline} -> {after} KiB"
    );
}

#[test]
fn events_of_the_daemon_and_of_embedded_users() {
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
    assert_eq!(String::from_utf8_lossy(&body).lines().count(), 1);
    ketch_tests::require_tool("docker");
    {
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
}

fn chrono_now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `ketch -H` against the daemon: the same root seen embedded and through the daemon gives
/// the same output and exit codes, and every kind of verb works remotely.
#[test]
fn the_ketch_cli_goes_remote_with_the_same_output() {
    let (r, d) = setup();
    let url = format!("unix://{}", d.socket.display());
    let remote = |args: &[&str]| r.cmd().args(["-H", &url]).args(args).output().unwrap();
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
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; touch /made; sleep 100",
    ]);
    r.ok(&["volume", "create", "--label", "a=b", "data"]);
    // Wait for the output to be in the log.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !r.ok(&["logs", "web"]).contains("out") {
        assert!(Instant::now() < deadline, "no output from web");
        std::thread::sleep(Duration::from_millis(20));
    }
    for args in [
        &[
            "ps",
            "-a",
            "--format",
            "{{.ID}} {{.Image}} {{.Command}} {{.Names}} {{.State}} {{.Labels}}",
        ][..],
        &["ps", "-q", "--filter", "label=tier=front"],
        &[
            "images",
            "--format",
            "{{.Repository}} {{.Tag}} {{.ID}} {{.Size}}",
        ],
        &["inspect", "web"],
        &[
            "inspect",
            "--format",
            "{{.Config.Image}} {{.State.Running}}",
            "web",
        ],
        &["image", "inspect", "busybox"],
        &["logs", "web"],
        &["logs", "-t", "web"],
        &["logs", "--tail", "1", "web"],
        &["top", "web", "-o", "pid,comm"],
        &["port", "web"],
        &["diff", "web"],
        &["network", "ls"],
        &["network", "inspect", "none"],
        &["volume", "ls"],
        &["volume", "ls", "-f", "dangling=true"],
        &["volume", "inspect", "data"],
        &["system", "df"],
        &[
            "exec",
            "web",
            "sh",
            "-c",
            "echo in-exec; echo e >&2; exit 3",
        ],
        &["exec", "web", "no-such-command"],
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
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "busybox",
            "no-such-command",
        ],
        &["inspect", "no-such-thing"],
        &["rm", "no-such-container"],
        &["logs", "no-such-container"],
        &["volume", "inspect", "no-such-volume"],
    ] {
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
    }
    // Each kind of change, through the daemon.
    let o = r
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
    assert!(String::from_utf8_lossy(&listing.stdout).contains("made"));
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
    remote_ok(&["network", "connect", "--alias", "j", "remote-net", "joiner"]);

    remote_ok(&["network", "disconnect", "remote-net", "joiner"]);
    assert_eq!(remote_ok(&["rm", "joiner"]), "joiner\n");
    assert_eq!(remote_ok(&["network", "rm", "remote-net"]), "remote-net\n");
    assert_eq!(remote_ok(&["volume", "rm", "data"]), "data\n");
    assert_eq!(remote_ok(&["stop", "-t", "1", "web"]), "web\n");
    assert_eq!(remote_ok(&["rm", "web"]), "web\n");
    assert_eq!(r.ok(&["ps", "-aq"]), "");
    // KETCH_HOST does what -H does; a daemon that is not there is an error that says so.
    let o = r
        .cmd()
        .env("KETCH_HOST", &url)
        .args(["ps", "-a"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let o = r
        .cmd()
        .args(["-H", "unix:///nonexistent/ketch.sock", "ps"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Cannot connect"),
        "{o:?}"
    );
}
