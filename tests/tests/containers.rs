//! Containers end to end on the busybox fixture: isolation from the inside, limits, the
//! detached lifecycle, many at once, crashes, and errors with Docker's exit codes.

use std::process::Stdio;
use std::time::{Duration, Instant};

use ketch_tests::{Root, no_cgroups_left};

fn setup() -> Root {
    let r = Root::new();
    r.busybox("busybox");
    r
}

/// Runs `ketch run --rm busybox sh -c SCRIPT`, requiring success; returns stdout.
fn sh(r: &Root, flags: &[&str], script: &str) -> String {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["busybox", "sh", "-c", script]);
    r.ok(&args)
}

#[test]
fn inside_a_container() {
    let r = setup();
    let out = sh(
        &r,
        &["--hostname", "boat"],
        "echo $$; hostname; ps -o pid,comm | wc -l; cat /etc/motd; head -c 10 /proc/timer_list | wc -c",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1", "{out}");
    assert_eq!(lines[1], "boat");
    // Header, sh, ps, wc: nothing from the host.
    assert!(lines[2].trim().parse::<u32>().unwrap() <= 5, "{out}");
    assert_eq!(lines[3], "ketch busybox fixture");
    assert_eq!(lines[4], "0", "/proc/timer_list is not masked");

    // Docker's 14 capabilities, nothing more.
    let caps = sh(&r, &[], "grep CapEff /proc/self/status");
    assert!(caps.contains("00000000a80425fb"), "{caps}");
    let o = r.run(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /m && mount -t tmpfs t /m",
    ]);
    assert!(!o.status.success(), "mount worked without --privileged");
    sh(
        &r,
        &["--privileged"],
        "mkdir -p /m && mount -t tmpfs t /m && touch /m/x",
    );
    // A privileged container has the host's devices; others have the standard few.
    let host_dev = std::fs::read_dir("/dev")
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| {
            use std::os::unix::fs::FileTypeExt;
            let n = e.file_name();
            e.file_type()
                .is_ok_and(|t| t.is_block_device() || t.is_char_device())
                && ![
                    "null", "zero", "full", "random", "urandom", "tty", "console", "ptmx",
                ]
                .contains(&n.to_str().unwrap_or(""))
        });
    if let Some(d) = host_dev {
        let name = d.file_name().to_string_lossy().into_owned();
        sh(&r, &["--privileged"], &format!("test -e /dev/{name}"));
        let o = r.run(&[
            "run",
            "--rm",
            "busybox",
            "test",
            "-e",
            &format!("/dev/{name}"),
        ]);
        assert!(
            !o.status.success(),
            "/dev/{name} visible without --privileged"
        );
    }
    // The hostname defaults to the short ID.
    let id = r.ok(&["create", "busybox", "hostname"]).trim().to_string();
    let o = r.cmd().args(["start", "-a", &id]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), &id[..12]);
    r.ok(&["rm", &id]);
    no_cgroups_left(&id);
}

#[test]
fn writes_stay_in_the_container_layer() {
    let r = setup();
    let a = r.ok(&[
        "create",
        "--name",
        "a",
        "busybox",
        "sh",
        "-c",
        "echo changed > /usr/new; echo x >> /etc/motd; cat /usr/new",
    ]);
    let o = r.cmd().args(["start", "-a", a.trim()]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "changed");
    // A second container from the image sees the image, not the first one's changes.
    let out = sh(&r, &[], "ls /usr/new 2>&1; cat /etc/motd");
    assert!(out.contains("No such file"), "{out}");
    assert!(out.ends_with("ketch busybox fixture\n"), "{out}");
    // The image's own layer is untouched: a save holds the original.
    let snapshots = r.path().join("snapshots");
    for e in std::fs::read_dir(&snapshots).unwrap() {
        let fs = e.unwrap().path().join("fs");
        if fs.join("bin/busybox").exists() {
            assert_eq!(
                std::fs::read_to_string(fs.join("etc/motd")).unwrap(),
                "ketch busybox fixture\n"
            );
            assert!(!fs.join("usr/new").exists());
        }
    }
    r.ok(&["rm", "a"]);
}

#[test]
fn exit_codes_and_bad_input() {
    let r = setup();
    assert_eq!(
        r.run(&["run", "--rm", "busybox", "sh", "-c", "exit 7"])
            .status
            .code(),
        Some(7)
    );
    let (code, err) = r.fails(&["run", "--rm", "busybox", "no-such-command"]);
    assert_eq!(code, 127, "{err}");
    assert!(err.contains("executable file not found"), "{err}");
    let (code, err) = r.fails(&["run", "--rm", "busybox", "/etc/motd"]);
    assert_eq!(code, 126, "{err}");
    let (code, err) = r.fails(&["run", "--rm", "nosuchimage"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("No such image"), "{err}");
    let (code, err) = r.fails(&["run", "--rm", "--memory", "lots", "busybox", "true"]);
    assert_eq!(code, 125, "{err}");
    r.ok(&["create", "--name", "taken", "busybox", "true"]);
    let (code, err) = r.fails(&["create", "--name", "taken", "busybox", "true"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("is already in use"), "{err}");
    r.ok(&["run", "-d", "--name", "busy", "busybox", "sleep", "1000"]);
    let (code, err) = r.fails(&["rm", "busy"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("container is running"), "{err}");
    r.ok(&["rm", "-f", "busy", "taken"]);
    let (code, err) = r.fails(&["start", "taken"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("No such container: taken"), "{err}");
    // A container's image cannot be removed while it exists.
    r.ok(&["create", "--name", "user", "busybox", "true"]);
    let (_, err) = r.fails(&["rmi", "busybox"]);
    assert!(err.contains("is using its referenced image"), "{err}");
    r.ok(&["rm", "user"]);
}

#[test]
fn memory_limit_oom_kills() {
    let r = setup();
    let o = r.run(&[
        "run",
        "--name",
        "oom",
        "--memory",
        "32m",
        "busybox",
        "dd",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=256M",
        "count=1",
    ]);
    assert_eq!(
        o.status.code(),
        Some(137),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        r.ok(&["inspect", "-f", "{{.State.OOMKilled}}", "oom"])
            .trim(),
        "true"
    );
    r.ok(&["rm", "oom"]);
}

#[test]
fn pids_limit_stops_a_fork_bomb() {
    let r = setup();
    // Each round announces itself, then forks; the shell gives up at the first failed fork.
    let o = r.run(&[
        "run",
        "--rm",
        "--pids-limit",
        "20",
        "busybox",
        "sh",
        "-c",
        "for i in $(seq 1 60); do echo $i; sleep 30 & done",
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    let last: u32 = out.lines().last().unwrap_or("0").parse().unwrap();
    assert!((10..=20).contains(&last), "{last} forks succeeded");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("can't fork"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!o.status.success());
}

#[test]
fn cpus_sets_a_quota() {
    let r = setup();
    let id = r
        .ok(&["run", "-d", "--cpus", "0.5", "busybox", "sleep", "100"])
        .trim()
        .to_string();
    let quota = std::fs::read_to_string(format!("/sys/fs/cgroup/cpu/ketch/{id}/cpu.cfs_quota_us"))
        .or_else(|_| std::fs::read_to_string(format!("/sys/fs/cgroup/ketch/{id}/cpu.max")))
        .unwrap();
    assert!(quota.trim().starts_with("50000"), "{quota}");
    r.ok(&["rm", "-f", &id]);
    no_cgroups_left(&id);
}

#[test]
fn detached_lifecycle() {
    let r = setup();
    let script = "trap 'echo got TERM; exit 3' TERM; echo started; while true; do sleep 0.1; done";
    let id = r
        .ok(&["run", "-d", "--name", "svc", "busybox", "sh", "-c", script])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64);
    // The CLI has exited; the container runs on.
    assert!(r.ok(&["ps", "-q"]).contains(&id[..12]));
    assert_eq!(
        r.ok(&["inspect", "-f", "{{.State.Status}}", "svc"]).trim(),
        "running"
    );
    // Another process follows the log, another waits for the exit.
    let mut follow = r
        .cmd()
        .args(["logs", "-f", "svc"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let waiter = r
        .cmd()
        .args(["wait", "svc"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    r.ok(&["stop", "-t", "10", "svc"]);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "stop waited for the timeout despite the TERM handler"
    );
    assert_eq!(
        String::from_utf8_lossy(&waiter.wait_with_output().unwrap().stdout).trim(),
        "3"
    );
    let st = follow.wait().unwrap();
    assert!(st.success(), "logs -f failed");
    let mut out = String::new();
    std::io::Read::read_to_string(&mut follow.stdout.take().unwrap(), &mut out).unwrap();
    assert!(out.contains("started") && out.contains("got TERM"), "{out}");
    assert!(r.ok(&["logs", "--tail", "1", "svc"]).contains("got TERM"));
    let ts = r.ok(&["logs", "-t", "svc"]);
    assert!(
        ts.lines().all(|l| l.contains('T') && l.contains('Z')),
        "{ts}"
    );
    // A container that ignores TERM is killed after -t.
    r.ok(&[
        "run", "-d", "--name", "stubborn", "busybox", "sleep", "1000",
    ]);
    let start = Instant::now();
    r.ok(&["stop", "-t", "1", "stubborn"]);
    assert!(start.elapsed() >= Duration::from_secs(1));
    assert_eq!(
        r.ok(&["inspect", "-f", "{{.State.ExitCode}}", "stubborn"])
            .trim(),
        "137"
    );
    r.ok(&["rm", "svc", "stubborn"]);
    no_cgroups_left(&id);
}

#[test]
fn twenty_at_once() {
    let r = setup();
    let children: Vec<_> = (0..20)
        .map(|i| {
            r.cmd()
                .args([
                    "run",
                    "-d",
                    "--name",
                    &format!("c{i}"),
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
    let ids: Vec<String> = r
        .ok(&["ps", "-q", "--no-trunc"])
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(ids.len(), 20);
    let mut args = vec!["rm", "-f"];
    args.extend(ids.iter().map(String::as_str));
    r.ok(&args);
    assert_eq!(r.ok(&["ps", "-aq"]), "");
    assert!(r.mounts().is_empty());
    for id in &ids {
        no_cgroups_left(id);
    }
    // A monitor records the exit and then ends: give the last ones a moment.
    let start = Instant::now();
    loop {
        let left = std::process::Command::new("pgrep")
            .args(["-f", r.path().to_str().unwrap()])
            .output()
            .unwrap();
        if left.stdout.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "processes left: {}",
            String::from_utf8_lossy(&left.stdout)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn killing_the_monitor_ends_the_container() {
    let r = setup();
    let id = r
        .ok(&["run", "-d", "busybox", "sleep", "1000"])
        .trim()
        .to_string();
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(r.path().join("containers").join(&id).join("state.json")).unwrap(),
    )
    .unwrap();
    let shim = state["ShimPid"].as_i64().unwrap() as i32;
    let pid = state["Pid"].as_i64().unwrap() as i32;
    unsafe { libc::kill(shim, libc::SIGKILL) };
    let start = Instant::now();
    while unsafe { libc::kill(pid, 0) } == 0 && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        r.ok(&["inspect", "-f", "{{.State.Status}}", &id]).trim(),
        "exited"
    );
    assert_eq!(r.ok(&["ps", "-q"]), "");
    r.ok(&["rm", &id]);
    no_cgroups_left(&id);
}

#[test]
fn run_options_reach_the_process() {
    let r = setup();
    let envfile = r.dir.path().join("env");
    std::fs::write(&envfile, "FROM_FILE=1\n# comment\n").unwrap();
    let out = sh(
        &r,
        &[
            "-e",
            "A=b c",
            "--env-file",
            envfile.to_str().unwrap(),
            "-w",
            "/srv/app",
            "-u",
            "nobody",
            "--label",
            "k=v",
        ],
        "echo $A; echo $FROM_FILE; pwd; id -u; id -g; echo $HOME",
    );
    assert_eq!(out, "b c\n1\n/srv/app\n65534\n65534\n/nonexistent\n");
    assert_eq!(sh(&r, &["-u", "1:0"], "id -u; id -g"), "1\n0\n");
    // inspect shows the configuration in effect: image defaults merged with the options.
    r.ok(&[
        "create",
        "--name",
        "cfg",
        "-e",
        "A=1",
        "--hostname",
        "h1",
        "busybox",
        "sleep",
        "5",
    ]);
    let config: serde_json::Value =
        serde_json::from_str(&r.ok(&["inspect", "-f", "{{json .Config}}", "cfg"])).unwrap();
    assert_eq!(config["Hostname"], "h1");
    assert_eq!(config["Cmd"], serde_json::json!(["sleep", "5"]));
    let env: Vec<&str> = config["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(env.iter().any(|e| e.starts_with("PATH=")), "{env:?}");
    assert!(env.contains(&"A=1"), "{env:?}");
    r.ok(&["rm", "cfg"]);
    let (code, err) = r.fails(&["run", "--rm", "-u", "nosuchuser", "busybox", "true"]);
    assert_eq!(code, 126, "{err}");
    assert!(err.contains("unable to find user nosuchuser"), "{err}");
    // --entrypoint replaces the image's.
    assert_eq!(
        r.ok(&[
            "run",
            "--rm",
            "--entrypoint",
            "echo",
            "busybox",
            "via",
            "entrypoint"
        ])
        .trim(),
        "via entrypoint"
    );
}

#[test]
fn security_options() {
    let r = setup();
    let o = r.run(&["run", "--rm", "--read-only", "busybox", "touch", "/x"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Read-only file system"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // /dev/shm and /tmp-like mounts stay writable on a read-only root.
    sh(&r, &["--read-only"], "touch /dev/shm/ok");
    // cap-drop: chown needs CAP_CHOWN.
    let o = r.run(&[
        "run",
        "--rm",
        "--cap-drop",
        "CHOWN",
        "busybox",
        "chown",
        "1",
        "/etc/motd",
    ]);
    assert!(!o.status.success(), "chown worked without CAP_CHOWN");
    let caps = sh(
        &r,
        &["--cap-drop", "all", "--cap-add", "NET_ADMIN"],
        "grep CapEff /proc/self/status",
    );
    assert!(caps.contains("0000000000001000"), "{caps}");
    let nnp = sh(
        &r,
        &["--security-opt", "no-new-privileges"],
        "grep NoNewPrivs /proc/self/status",
    );
    assert!(nnp.contains('1'), "{nnp}");
    // Privileged gets every capability the host's bounding set has, and no more.
    let host_bnd = std::fs::read_to_string("/proc/self/status").unwrap();
    let host_bnd = host_bnd
        .lines()
        .find(|l| l.starts_with("CapBnd"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    let priv_caps = sh(&r, &["--privileged"], "grep CapEff /proc/self/status");
    assert!(
        priv_caps.contains(&host_bnd),
        "{priv_caps} vs host {host_bnd}"
    );
}

#[test]
fn rlimits_stay_within_the_host() {
    let r = setup();
    let mut host = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut host) };
    let want = host.rlim_max.min(1 << 20);
    // Docker asks for 1048576 open files; where the host's hard limit is lower (20000
    // here), the container gets the host's limit instead of failing to start.
    let out = sh(&r, &[], "ulimit -n; ulimit -Hn");
    assert_eq!(out, format!("{want}\n{want}\n"));
}

#[test]
fn network_none_and_host() {
    let r = setup();
    let none = sh(&r, &["--network", "none"], "ls /sys/class/net");
    assert_eq!(none.split_whitespace().collect::<Vec<_>>(), ["lo"]);
    sh(&r, &[], "ping -c 1 -W 1 127.0.0.1 >/dev/null");
    // The host's own interfaces: not the bridges and veth pairs that tests running
    // alongside make and remove.
    let host: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("veth") && !n.starts_with("kt") && !n.starts_with("br-"))
        .collect();
    let inside = sh(&r, &["--network", "host"], "ls /sys/class/net");
    for name in &host {
        assert!(inside.contains(name.as_str()), "{name} missing in {inside}");
    }
}

#[test]
fn pause_rename_restart_prune() {
    let r = setup();
    r.ok(&["run", "-d", "--name", "p", "busybox", "sleep", "1000"]);
    r.ok(&["pause", "p"]);
    assert_eq!(
        r.ok(&["inspect", "-f", "{{.State.Status}}", "p"]).trim(),
        "paused"
    );
    assert!(r.ok(&["ps"]).contains("(Paused)"));
    r.ok(&["unpause", "p"]);
    assert_eq!(
        r.ok(&["inspect", "-f", "{{.State.Status}}", "p"]).trim(),
        "running"
    );
    r.ok(&["rename", "p", "q"]);
    assert_eq!(r.ok(&["ps", "--format", "{{.Names}}"]).trim(), "q");
    let (_, err) = r.fails(&["rename", "q", "bad name"]);
    assert!(err.contains("Invalid container name"), "{err}");
    r.ok(&["rm", "-f", "q"]);

    // on-failure:2 restarts a failing container twice, then leaves it exited.
    r.ok(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "echo run; exit 1",
    ]);
    let start = Instant::now();
    while r
        .ok(&[
            "inspect",
            "-f",
            "{{.RestartCount}} {{.State.Status}}",
            "flaky",
        ])
        .trim()
        != "2 exited"
    {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{}",
            r.ok(&[
                "inspect",
                "-f",
                "{{.RestartCount}} {{.State.Status}}",
                "flaky"
            ])
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(r.ok(&["logs", "flaky"]).matches("run").count(), 3);
    // always: restarted until stopped; stop ends it for good.
    r.ok(&[
        "run",
        "-d",
        "--name",
        "loop",
        "--restart",
        "always",
        "busybox",
        "sh",
        "-c",
        "sleep 0.2",
    ]);
    let start = Instant::now();
    while r
        .ok(&["inspect", "-f", "{{.RestartCount}}", "loop"])
        .trim()
        .parse::<u32>()
        .unwrap()
        < 1
    {
        assert!(start.elapsed() < Duration::from_secs(10), "never restarted");
        std::thread::sleep(Duration::from_millis(50));
    }
    r.ok(&["stop", "-t", "1", "loop"]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        r.ok(&["inspect", "-f", "{{.State.Status}}", "loop"]).trim(),
        "exited"
    );

    r.ok(&["create", "--name", "idle", "busybox", "true"]);
    r.ok(&["run", "-d", "--name", "alive", "busybox", "sleep", "1000"]);
    let out = r.ok(&["container", "prune", "-f"]);
    assert_eq!(out.lines().filter(|l| l.len() == 64).count(), 3, "{out}");
    assert_eq!(
        r.ok(&["ps", "-a", "--format", "{{.Names}}"]).trim(),
        "alive"
    );
    let json: serde_json::Value =
        serde_json::from_str(r.ok(&["ps", "--format", "json"]).trim()).unwrap();
    assert_eq!(json["Names"], "alive");
    assert_eq!(
        r.ok(&[
            "ps",
            "-a",
            "--filter",
            "status=running",
            "--format",
            "{{.Names}}"
        ])
        .trim(),
        "alive"
    );
    assert_eq!(
        r.ok(&["ps", "-a", "--filter", "name=ali", "-q"])
            .lines()
            .count(),
        1
    );
    r.ok(&["rm", "-f", "alive"]);
}

#[test]
fn log_rotation() {
    let r = setup();
    let id = r
        .ok(&[
            "run",
            "-d",
            "--log-opt",
            "max-size=2k",
            "--log-opt",
            "max-file=2",
            "busybox",
            "sh",
            "-c",
            "for i in $(seq 1 300); do echo line-$i; done",
        ])
        .trim()
        .to_string();
    r.ok(&["wait", &id]);
    let dir = r.path().join("containers").join(&id);
    assert!(dir.join("container.log.1").exists());
    assert!(!dir.join("container.log.2").exists());
    for f in ["container.log", "container.log.1"] {
        assert!(std::fs::metadata(dir.join(f)).unwrap().len() <= 2048 + 200);
    }
    let logs = r.ok(&["logs", &id]);
    assert!(logs.ends_with("line-300\n"), "{logs}");
    assert!(
        !logs.contains("line-1\n"),
        "the oldest lines should have rotated away"
    );
    r.ok(&["rm", &id]);
}

#[test]
fn signals_to_run_reach_the_container() {
    let r = setup();
    let mut child = r
        .cmd()
        .args([
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "trap 'echo got TERM; exit 5' TERM; echo ready; while true; do sleep 0.1; done",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line, "ready\n");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert_eq!(rest, "got TERM\n");
    assert_eq!(status.code(), Some(5));
    assert_eq!(r.ok(&["ps", "-aq"]), "");
}

#[test]
fn top_and_stats() {
    let r = setup();
    let id = r
        .ok(&[
            "run",
            "-d",
            "--cpus",
            "0.5",
            "--memory",
            "64m",
            "--name",
            "busy",
            "busybox",
            "sh",
            "-c",
            "while true; do :; done",
        ])
        .trim()
        .to_string();
    let top = r.ok(&["top", "busy"]);
    assert!(top.lines().next().unwrap().contains("PID"), "{top}");
    assert!(top.contains("while true"), "{top}");
    assert_eq!(top.lines().count(), 2, "{top}");
    let stats = r.ok(&["stats", "--no-stream", "--format", "json", "busy"]);
    let v: serde_json::Value = serde_json::from_str(stats.trim()).unwrap();
    let cpu: f64 = v["CPUPerc"]
        .as_str()
        .unwrap()
        .trim_end_matches('%')
        .parse()
        .unwrap();
    // Held to half a CPU; other tests may load the machine, so only the cap is checked.
    assert!(cpu > 1.0 && cpu < 60.0, "{stats}");
    assert!(
        v["MemUsage"].as_str().unwrap().ends_with("/ 64MiB"),
        "{stats}"
    );
    assert_eq!(v["PIDs"], "1");
    let table = r.ok(&["stats", "--no-stream"]);
    assert!(
        table.starts_with("CONTAINER ID") && table.contains("busy"),
        "{table}"
    );
    r.ok(&["rm", "-f", &id]);
}

#[test]
fn exec_runs_inside_the_container() {
    let r = setup();
    r.ok(&[
        "run",
        "-d",
        "--name",
        "host",
        "--hostname",
        "inner",
        "-e",
        "FROM_RUN=1",
        "busybox",
        "sh",
        "-c",
        "echo x > /tmp/mark; sleep 1000",
    ]);
    let out = r.ok(&[
        "exec",
        "host",
        "sh",
        "-c",
        "hostname; cat /tmp/mark; echo $FROM_RUN; ps -o pid,comm | grep -c sleep",
    ]);
    assert_eq!(out, "inner\nx\n1\n1\n");
    assert_eq!(
        r.ok(&[
            "exec",
            "-e",
            "A=b",
            "-w",
            "/etc",
            "-u",
            "nobody",
            "host",
            "sh",
            "-c",
            "echo $A; pwd; id -u"
        ]),
        "b\n/etc\n65534\n"
    );
    assert_eq!(
        r.run(&["exec", "host", "sh", "-c", "exit 9"]).status.code(),
        Some(9)
    );
    let (code, err) = r.fails(&["exec", "host", "no-such-thing"]);
    assert_eq!(code, 127, "{err}");
    // Standard input reaches an interactive exec.
    let o = r.run_stdin(&["exec", "-i", "host", "cat"], b"piped in\n");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "piped in\n");
    // Detached: returns at once; the process runs in the container.
    r.ok(&["exec", "-d", "host", "sh", "-c", "echo late > /tmp/late"]);
    let start = Instant::now();
    while r
        .run(&["exec", "host", "cat", "/tmp/late"])
        .stdout
        .is_empty()
    {
        assert!(start.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(50));
    }
    r.ok(&["stop", "-t", "0", "host"]);
    let (_, err) = r.fails(&["exec", "host", "true"]);
    assert!(err.contains("is not running"), "{err}");
    r.ok(&["rm", "host"]);
}

#[test]
fn default_seccomp_profile() {
    let r = setup();
    assert!(sh(&r, &[], "grep '^Seccomp:' /proc/self/status").contains('2'));
    // A user namespace needs no capability, so only the profile stands in the way.
    let o = r.run(&["run", "--rm", "busybox", "unshare", "-U", "true"]);
    assert!(
        !o.status.success(),
        "unshare -U worked under the default profile"
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("Operation not permitted"));
    let o = r.run(&[
        "run",
        "--rm",
        "--security-opt",
        "seccomp=unconfined",
        "busybox",
        "unshare",
        "-U",
        "true",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(sh(&r, &["--privileged"], "grep '^Seccomp:' /proc/self/status").contains('0'));
    // The profile is plain OCI seccomp in the bundle's config.json.
    let id = r.ok(&["create", "busybox", "true"]).trim().to_string();
    let spec: serde_json::Value = serde_json::from_slice(
        &std::fs::read(r.path().join("containers").join(&id).join("config.json")).unwrap(),
    )
    .unwrap();
    // Docker's default: refuse what is not named, for every ABI the host runs.
    let seccomp = &spec["linux"]["seccomp"];
    assert_eq!(seccomp["defaultAction"], "SCMP_ACT_ERRNO");
    assert_eq!(seccomp["architectures"][0], "SCMP_ARCH_X86_64");
    assert!(seccomp["architectures"].as_array().unwrap().len() == 3);
    r.ok(&["rm", &id]);
}

#[test]
fn run_it_gives_a_terminal_that_follows_its_size() {
    ketch_tests::require_tool("tmux");
    let r = setup();
    let session = format!("ketch-tty-{}", std::process::id());
    let rc = r.dir.path().join("rc");
    let cmd = format!(
        "{} --root {} --bridge {} --ip-forward=false run -it --name tty busybox sh; echo $? > {}",
        ketch_tests::ketch_bin().display(),
        r.path().display(),
        r.bridge,
        rc.display()
    );
    let tmux = |args: &[&str]| {
        let o = std::process::Command::new("tmux")
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    tmux(&[
        "-L",
        &session,
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "100",
        "-y",
        "30",
        &cmd,
    ]);
    let t = format!("{session}:0");
    let tm = |args: &[&str]| {
        let mut a = vec!["-L", session.as_str()];
        a.extend_from_slice(args);
        tmux(&a);
    };
    let shows = |want: &str| {
        let start = Instant::now();
        loop {
            let o = std::process::Command::new("tmux")
                .args(["-L", &session, "capture-pane", "-t", &t, "-p"])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            if text.contains(want) || start.elapsed() > Duration::from_secs(10) {
                return text;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    assert!(shows("/ #").contains("/ #"));
    tm(&["send-keys", "-t", &t, "stty size; echo TERM=$TERM", "Enter"]);
    let text = shows("TERM=xterm");
    assert!(
        text.contains("TERM=xterm") && text.contains("30 100"),
        "{text}"
    );
    tm(&["resize-window", "-t", &t, "-x", "120", "-y", "40"]);
    tm(&["send-keys", "-t", &t, "stty size", "Enter"]);
    let text = shows("40 120");
    assert!(text.contains("40 120"), "{text}");
    // exec -it, from a second window of the same size, gets a terminal of its own.
    let inner = format!(
        "{} --root {} --bridge {} --ip-forward=false exec -it tty sh",
        ketch_tests::ketch_bin().display(),
        r.path().display(),
        r.bridge
    );
    tm(&["new-window", "-t", &format!("{session}:1"), &inner]);
    let w1 = format!("{session}:1");
    let shows_in = |target: &str, want: &str| {
        let start = Instant::now();
        loop {
            let o = std::process::Command::new("tmux")
                .args(["-L", &session, "capture-pane", "-t", target, "-p"])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            if text.contains(want) || start.elapsed() > Duration::from_secs(10) {
                return text;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    assert!(shows_in(&w1, "/ #").contains("/ #"));
    tm(&[
        "send-keys",
        "-t",
        &w1,
        "echo in-exec $(tty) $(stty size) $TERM",
        "Enter",
    ]);
    let text = shows_in(&w1, "in-exec /dev/pts/");
    assert!(
        text.lines()
            .any(|l| l.starts_with("in-exec /dev/pts/") && l.ends_with("xterm")),
        "{text}"
    );
    tm(&["send-keys", "-t", &w1, "exit", "Enter"]);
    tm(&["send-keys", "-t", &t, "exit 4", "Enter"]);
    let start = Instant::now();
    while !rc.exists() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = std::process::Command::new("tmux")
        .args(["-L", &session, "kill-server"])
        .output();
    assert_eq!(std::fs::read_to_string(&rc).unwrap().trim(), "4");
    // What the terminal showed is in the log too.
    assert!(r.ok(&["logs", "tty"]).contains("40 120"));
    r.ok(&["rm", "tty"]);
}

#[test]
fn killing_ketch_at_any_point_leaves_a_consistent_state() {
    let r = setup();
    for delay_ms in [0u64, 2, 5, 10, 20, 40, 80] {
        let mut child = r
            .cmd()
            .args(["run", "-d", "busybox", "sleep", "1000"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        child.wait().unwrap();
        // The next command sees each container whole: created, running or exited, and
        // a running one really runs.
        let listed = r.ok(&["ps", "-a", "--format", "{{.ID}} {{.State}}"]);
        for line in listed.lines() {
            let (id, state) = line.split_once(' ').unwrap();
            assert!(["created", "running", "exited"].contains(&state), "{line}");
            if state == "running" {
                let pid: i32 = r
                    .ok(&["inspect", "-f", "{{.State.Pid}}", id])
                    .trim()
                    .parse()
                    .unwrap();
                assert!(
                    pid > 0 && unsafe { libc::kill(pid, 0) } == 0,
                    "{id} listed as running without a process"
                );
            }
        }
        assert_eq!(
            r.count("leases"),
            0,
            "a dead lease survived the next command"
        );
    }
    let ids = r.ok(&["ps", "-aq", "--no-trunc"]);
    for id in ids.lines() {
        r.ok(&["rm", "-f", id]);
        no_cgroups_left(id);
    }
    assert!(
        r.entries("containers").is_empty(),
        "{:?}",
        r.entries("containers")
    );
    assert!(r.mounts().is_empty());
}

#[test]
fn init_reaps_and_forwards() {
    let r = setup();
    let out = sh(
        &r,
        &["--init"],
        "ps -o pid,comm | awk '$1 == 1 {print $2}'; echo $$",
    );
    assert_eq!(out, "ketch-init\n2\n");
    // Its command line is the init's, not the monitor's (which names a host path).
    let cmdline = sh(&r, &["--init"], "tr '\\0' ' ' </proc/1/cmdline");
    // (A command line ends in a NUL, which `tr` makes the last space.)
    assert_eq!(
        cmdline,
        "ketch-init -- sh -c tr '\\0' ' ' </proc/1/cmdline "
    );
    // An orphan left behind is reaped: no zombie stays.
    let zombies = sh(
        &r,
        &["--init"],
        "sh -c 'sleep 0.1 &'; sleep 0.5; ps -o stat | grep -c Z || true",
    );
    assert_eq!(zombies.trim(), "0");
    // A program that ignores signals as PID 1 gets them through the init: stop is quick.
    r.ok(&[
        "run", "-d", "--init", "--name", "quick", "busybox", "sleep", "1000",
    ]);
    let start = Instant::now();
    r.ok(&["stop", "-t", "10", "quick"]);
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(
        r.ok(&["inspect", "-f", "{{.State.ExitCode}}", "quick"])
            .trim(),
        "143"
    );
    assert_eq!(
        r.run(&["run", "--rm", "--init", "busybox", "sh", "-c", "exit 6"])
            .status
            .code(),
        Some(6)
    );
    let (code, _) = r.fails(&["run", "--rm", "--init", "busybox", "nonexistent"]);
    assert_eq!(code, 127);
    r.ok(&["rm", "quick"]);
}
