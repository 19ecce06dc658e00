//! Compose against `ketch daemon`: Debian's docker-compose 1.29 (which speaks docker-py),
//! driven as its users drive it, on a project of services on a user network with aliases, a
//! named volume, `depends_on`, a published port and environment.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ketch_tests::{Daemon, Root, busybox_rootfs};

/// A Compose project in a directory of its own, under a name no other test uses.
struct Project<'a> {
    d: &'a Daemon,
    dir: PathBuf,
    name: String,
}

impl Project<'_> {
    fn compose(&self, args: &[&str]) -> Output {
        Command::new("docker-compose")
            .args(["--no-ansi", "-p", &self.name])
            .args(args)
            .current_dir(&self.dir)
            .env("DOCKER_HOST", format!("unix://{}", self.d.socket.display()))
            .env("DOCKER_CONFIG", self.dir.join("docker-config"))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Runs and requires success; stdout and stderr (Compose reports progress on stderr).
    fn ok(&self, args: &[&str]) -> String {
        let o = self.compose(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(o.status.success(), "docker-compose {args:?}: {text}");
        text
    }

    fn write(&self, greeting: &str) {
        std::fs::write(self.dir.join("docker-compose.yml"), project(greeting)).unwrap();
    }

    /// Waits (up to 20 s) for `service`'s log to have a line ending in `want`.
    fn logged(&self, service: &str, want: &str) {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let logs = self.ok(&["logs", "--no-color", service]);
            if logs.lines().any(|l| l.trim_end().ends_with(want)) {
                return;
            }
            assert!(
                Instant::now() < until,
                "no {want:?} in {service}'s log: {logs}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The project: `web` serves a page naming `greeting` and keeps a volume; `client` finds it
/// by its alias on the project's network and prints the page.
fn project(greeting: &str) -> String {
    format!(
        r#"version: "3.8"
services:
  web:
    image: busybox
    command: sh -c 'mkdir -p /www && echo "hello $$GREETING" > /www/index.html && exec httpd -f -p 80 -h /www'
    environment:
      GREETING: {greeting}
    networks:
      front:
        aliases: [site]
    volumes:
      - data:/data
    ports:
      - "127.0.0.1::80"
  client:
    image: busybox
    depends_on: [web]
    command: sh -c 'for i in $$(seq 100); do out=$$(printf "GET / HTTP/1.0\r\n\r\n" | nc site 80) && [ -n "$$out" ] && break; sleep 0.1; done; echo "got $$(echo "$$out" | tail -1)"; exec sleep 1000'
    networks: [front]
networks:
  front: {{}}
volumes:
  data: {{}}
"#
    )
}

fn docker(d: &Daemon, args: &[&str]) -> String {
    let o = d.docker(args);
    assert!(
        o.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// The page the host gets from a published `HOST:PORT`.
fn page(addr: &str) -> String {
    let o = Command::new("curl")
        .args(["-s", "--max-time", "5", &format!("http://{addr}/")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn dir_of(r: &Root, name: &str) -> PathBuf {
    let dir = r.dir.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn names(p: &Project, d: &Daemon) -> Vec<String> {
    let filter = format!("label=com.docker.compose.project={}", p.name);
    let out = docker(
        d,
        &["ps", "-a", "--filter", &filter, "--format", "{{.Names}}"],
    );
    let mut v: Vec<String> = out.lines().map(str::to_string).collect();
    v.sort();
    v
}

/// `up` (twice: the second keeps what is there), a change that recreates a service with its
/// volume, `ps`, `logs`, `run --rm`, `down -v`: each as Docker's Compose users see it.
#[test]
fn compose_up_recreate_run_and_down() {
    ketch_tests::require_tool("docker-compose");
    ketch_tests::require_tool("docker");
    let r = Root::new();
    r.ok(&["import", busybox_rootfs().to_str().unwrap(), "busybox"]);
    let d = Daemon::start(&r);
    let p = Project {
        d: &d,
        dir: dir_of(&r, "proj"),
        name: format!("k{}", &r.bridge[r.bridge.len().saturating_sub(8)..]).to_lowercase(),
    };
    p.write("compose");
    let out = p.ok(&["up", "-d"]);
    assert!(out.contains("Creating"), "{out}");
    let (web, client) = (format!("{}_web_1", p.name), format!("{}_client_1", p.name));
    assert_eq!(names(&p, &d), [client.clone(), web.clone()]);
    // The client found the server by its alias; the host reaches it on its published port.
    p.logged("client", "got hello compose");
    let port = docker(&d, &["port", &web, "80"]);
    assert_eq!(page(port.trim()), "hello compose\n");
    // `ps` lists each service once, running.
    let ps = p.ok(&["ps"]);
    for n in [&web, &client] {
        let rows: Vec<&str> = ps.lines().filter(|l| l.starts_with(n.as_str())).collect();
        assert!(rows.len() == 1 && rows[0].contains(" Up "), "{n}: {ps}");
    }
    // Nothing changed: nothing is made again.
    let out = p.ok(&["up", "-d"]);
    assert!(
        out.contains(&format!("{web} is up-to-date"))
            && out.contains(&format!("{client} is up-to-date")),
        "{out}"
    );
    // A changed service is made again, with the same volume.
    docker(&d, &["exec", &web, "sh", "-c", "echo kept > /data/f"]);
    let id_before = docker(&d, &["inspect", "-f", "{{.Id}}", &web]);
    p.write("again");
    let out = p.ok(&["up", "-d"]);
    assert!(out.contains(&format!("Recreating {web}")), "{out}");
    assert_ne!(docker(&d, &["inspect", "-f", "{{.Id}}", &web]), id_before);
    assert_eq!(docker(&d, &["exec", &web, "cat", "/data/f"]), "kept\n");
    let port = docker(&d, &["port", &web, "80"]);
    assert_eq!(page(port.trim()), "hello again\n");
    assert_eq!(names(&p, &d), [client.clone(), web.clone()]);
    // `run --rm`: a one-off container of a service, on its network, gone after.
    let out = p.ok(&[
        "run",
        "--rm",
        "-T",
        "client",
        "sh",
        "-c",
        "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc site 80 | tail -1",
    ]);
    assert!(out.contains("hello again"), "{out}");
    assert_eq!(names(&p, &d), [client.clone(), web.clone()]);
    // `down -v`: the containers, the network and the volume go.
    let out = p.ok(&["down", "-v"]);
    assert!(
        out.contains(&format!("Removing network {}_front", p.name)),
        "{out}"
    );
    assert!(names(&p, &d).is_empty());
    let nets = docker(&d, &["network", "ls", "--format", "{{.Name}}"]);
    assert!(!nets.contains(&p.name), "{nets}");
    let vols = docker(&d, &["volume", "ls", "--format", "{{.Name}}"]);
    assert!(!vols.contains(&p.name), "{vols}");
    drop(d);
    assert!(r.mounts().is_empty(), "{:?}", r.mounts());
}
