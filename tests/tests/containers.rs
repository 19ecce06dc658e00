//! Containers end to end on the busybox fixture: isolation from the inside, limits, the
//! detached lifecycle, many at once, and errors with Docker's exit codes.

mod common;

use std::io::{BufRead, Read};
use std::process::{Command, Stdio};

use common::*;
use ketch_tests::hostile::Reaped;
use ketch_tests::{no_cgroups_left, wait_until};

#[test]
fn inside_a_container() {
    let r = setup();
    let out = sh(
        &r,
        &["--hostname", "boat"],
        "echo $$; hostname; ps -o pid,comm | wc -l; cat /etc/motd",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1", "{out}");
    assert_eq!(lines[1], "boat");
    // Header, sh, ps, wc: nothing from the host.
    assert!(lines[2].trim().parse::<u32>().unwrap() <= 5, "{out}");
    assert_eq!(lines[3], "ketch busybox fixture");

    // Docker's 14 capabilities, nothing more.
    let caps = sh(&r, &[], "grep CapEff /proc/self/status");
    assert!(caps.contains("00000000a80425fb"), "{caps}");
    let (code, err) = r.fails(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /m && mount -t tmpfs t /m",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("mount: permission denied"), "{err}");
    sh(
        &r,
        &["--privileged"],
        "mkdir -p /m && mount -t tmpfs t /m && touch /m/x",
    );
    // A privileged container has the host's devices; others have the standard few. The
    // kernel log device is on every Linux host and is not one of the few.
    let kmsg = std::fs::metadata("/dev/kmsg")
        .expect("the host has no /dev/kmsg, the device this test looks for");
    let want = {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        assert!(kmsg.file_type().is_char_device());
        // As `stat -c %t:%T` shows a device number: major and minor in hex.
        let (major, minor) = (libc::major(kmsg.rdev()), libc::minor(kmsg.rdev()));
        format!("character special file {major:x}:{minor:x}")
    };
    let seen = sh(&r, &["--privileged"], "stat -c '%F %t:%T' /dev/kmsg");
    assert_eq!(seen.trim(), want);
    let (code, err) = r.fails(&["run", "--rm", "busybox", "stat", "/dev/kmsg"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("can't stat '/dev/kmsg': No such file or directory"),
        "/dev/kmsg visible without --privileged: {err}"
    );
    // The hostname defaults to the short ID.
    let id = r.ok(&["create", "busybox", "hostname"]).trim().to_string();
    let o = r.cmd().args(["start", "-a", &id]).output().unwrap();
    assert!(o.status.success(), "{o:?}");
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
    assert!(o.status.success(), "{o:?}");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "changed");
    // A second container from the image sees the image, not the first one's changes.
    let out = sh(&r, &[], "hostname; ls /usr/new 2>&1; cat /etc/motd");
    assert!(out.contains("No such file"), "{out}");
    assert!(out.ends_with("ketch busybox fixture\n"), "{out}");
    no_cgroups_left_of_short(out.lines().next().unwrap());
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
    no_cgroups_left(a.trim());
}

#[test]
fn exit_codes_and_bad_input() {
    let r = setup();
    let o = r.run(&["run", "--rm", "busybox", "sh", "-c", "hostname; exit 7"]);
    assert_eq!(o.status.code(), Some(7), "{o:?}");
    no_cgroups_left_of_short(String::from_utf8_lossy(&o.stdout).trim());
    let (code, err) = r.fails(&["run", "--rm", "busybox", "no-such-command"]);
    assert_eq!(code, 127, "{err}");
    assert!(err.contains("executable file not found"), "{err}");
    let (code, err) = r.fails(&["run", "--rm", "busybox", "/etc/motd"]);
    assert_eq!(code, 126, "{err}");
    assert!(
        err.contains("exec: \"/etc/motd\": permission denied"),
        "{err}"
    );
    // Told not to pull (a missing image is otherwise pulled, from docker.io, which no test
    // may reach; the registry tests cover that against registries of their own).
    let (code, err) = r.fails(&["run", "--rm", "--pull", "never", "nosuchimage"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("No such image"), "{err}");
    let (code, err) = r.fails(&["run", "--rm", "--memory", "lots", "busybox", "true"]);
    assert_eq!(code, 125, "{err}");
    assert!(
        err.contains("invalid value 'lots' for '--memory <MEMORY>'"),
        "{err}"
    );
    // None of the failed runs left a container.
    assert_eq!(r.ok(&["ps", "-aq"]), "");
    r.ok(&["create", "--name", "taken", "busybox", "true"]);
    let taken = id_of(&r, "taken");
    let (code, err) = r.fails(&["create", "--name", "taken", "busybox", "true"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("is already in use"), "{err}");
    r.ok(&["run", "-d", "--name", "busy", "busybox", "sleep", "1000"]);
    let busy = id_of(&r, "busy");
    let (code, err) = r.fails(&["rm", "busy"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("container is running"), "{err}");
    r.ok(&["rm", "-f", "busy", "taken"]);
    no_cgroups_left(&busy);
    no_cgroups_left(&taken);
    let (code, err) = r.fails(&["start", "taken"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("No such container: taken"), "{err}");
    // A container's image cannot be removed while it exists.
    r.ok(&["create", "--name", "user", "busybox", "true"]);
    let (code, err) = r.fails(&["rmi", "busybox"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is using its referenced image"), "{err}");
    r.ok(&["rm", "user"]);
    nothing_left(&r);
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
    let id = id_of(&r, "oom");
    r.ok(&["rm", "oom"]);
    no_cgroups_left(&id);
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
        "hostname; for i in $(seq 1 60); do echo $i; sleep 30 & done",
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    let last: u32 = out.lines().last().unwrap_or("0").parse().unwrap();
    assert!((10..=20).contains(&last), "{last} forks succeeded");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("can't fork"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // The shell gives up at the failed fork (exit 2); its sleeps go with the container.
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    no_cgroups_left_of_short(out.lines().next().unwrap());
}

#[test]
fn cpus_sets_a_quota() {
    let r = setup();
    let id = r
        .ok(&["run", "-d", "--cpus", "0.5", "busybox", "sleep", "100"])
        .trim()
        .to_string();
    // Half of each period: what the kernel enforces. (The share a busy container then gets
    // is measured by bench/cpu.sh, not here.)
    let (quota, period) = cpu_limit(&id);
    assert_eq!((quota, period), (50_000, 100_000));
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
    assert_eq!(status(&r, "svc"), "running");
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
    // The TERM handler is in place once the script says so.
    let mut followed = std::io::BufReader::new(follow.stdout.take().unwrap());
    let mut line = String::new();
    followed.read_line(&mut line).unwrap();
    assert_eq!(line, "started\n");
    // stop returns once the container has ended, not when its -t runs out: a stop that
    // waited for it would still be waiting when the guard below gives up.
    let mut stop = Reaped(
        r.cmd()
            .args(["stop", "-t", "600", "svc"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut stopped = None;
    wait_until(
        "stop to return once the TERM handler ended svc",
        120,
        || {
            stopped = stop.0.try_wait().unwrap();
            stopped.is_some()
        },
    );
    assert!(stopped.unwrap().success());
    assert_eq!(
        String::from_utf8_lossy(&waiter.wait_with_output().unwrap().stdout).trim(),
        "3"
    );
    let st = follow.wait().unwrap();
    assert!(st.success(), "logs -f failed");
    let mut out = String::new();
    followed.read_to_string(&mut out).unwrap();
    assert_eq!(out, "got TERM\n");
    assert_eq!(r.ok(&["logs", "--tail", "1", "svc"]), "got TERM\n");
    let ts = r.ok(&["logs", "-t", "svc"]);
    assert_eq!(ts.lines().count(), 2, "{ts}");
    assert!(
        ts.lines().all(|l| l.contains('T') && l.contains('Z')),
        "{ts}"
    );
    // A container that ignores TERM gets it first, then KILL once -t has passed.
    r.ok(&[
        "run",
        "-d",
        "--name",
        "stubborn",
        "busybox",
        "sh",
        "-c",
        IGNORES_TERM,
    ]);
    let stubborn = id_of(&r, "stubborn");
    wait_for_log(&r, "stubborn", "ready");
    r.ok(&["stop", "-t", "3", "stubborn"]);
    assert_eq!(r.ok(&["logs", "stubborn"]), "ready\nignored TERM\n");
    assert_eq!(
        r.ok(&["inspect", "-f", "{{.State.ExitCode}}", "stubborn"])
            .trim(),
        "137"
    );
    r.ok(&["rm", "svc", "stubborn"]);
    no_cgroups_left(&id);
    no_cgroups_left(&stubborn);
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
    for id in &ids {
        no_cgroups_left(id);
    }
    // A monitor records the exit and then ends: the last ones may take a moment.
    nothing_left(&r);
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
        "--label",
        "k=v",
        "-l",
        "team=a b",
        "busybox",
        "sleep",
        "5",
    ]);
    r.ok(&["create", "--name", "plain", "busybox", "true"]);
    let config: serde_json::Value =
        serde_json::from_str(&r.ok(&["inspect", "-f", "{{json .Config}}", "cfg"])).unwrap();
    assert_eq!(config["Hostname"], "h1");
    assert_eq!(config["Cmd"], serde_json::json!(["sleep", "5"]));
    assert_eq!(
        config["Labels"],
        serde_json::json!({"k": "v", "team": "a b"})
    );
    // Labels select containers.
    assert_eq!(
        r.ok(&[
            "ps",
            "-a",
            "--filter",
            "label=k=v",
            "--format",
            "{{.Names}}"
        ]),
        "cfg\n"
    );
    assert_eq!(
        r.ok(&[
            "ps",
            "-a",
            "--filter",
            "label=team",
            "--format",
            "{{.Names}}"
        ]),
        "cfg\n"
    );
    assert_eq!(
        r.ok(&[
            "ps",
            "-a",
            "--filter",
            "label=k=w",
            "--format",
            "{{.Names}}"
        ]),
        ""
    );
    let plain = id_of(&r, "plain");
    r.ok(&["rm", "plain"]);
    no_cgroups_left(&plain);
    let env: Vec<&str> = config["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(env.iter().any(|e| e.starts_with("PATH=")), "{env:?}");
    assert!(env.contains(&"A=1"), "{env:?}");
    let cfg = id_of(&r, "cfg");
    r.ok(&["rm", "cfg"]);
    no_cgroups_left(&cfg);
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
    let (code, err) = r.fails(&["run", "--rm", "--read-only", "busybox", "touch", "/x"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("touch: /x: Read-only file system"), "{err}");
    // /dev/shm and /tmp-like mounts stay writable on a read-only root.
    sh(&r, &["--read-only"], "touch /dev/shm/ok");
    // cap-drop: chown needs CAP_CHOWN.
    let (code, err) = r.fails(&[
        "run",
        "--rm",
        "--cap-drop",
        "CHOWN",
        "busybox",
        "chown",
        "1",
        "/etc/motd",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("chown: /etc/motd: Operation not permitted"),
        "chown without CAP_CHOWN: {err}"
    );
    // ... which the same chown has by default.
    sh(&r, &[], "chown 1 /etc/motd");
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
    // Started with a soft limit of its own far below (as a login shell's 1024 is): the
    // container has the limits it asked for all the same, not what its starter had.
    let mut cmd = r.cmd();
    cmd.args([
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "ulimit -n; ulimit -Hn",
    ]);
    let hard = host.rlim_max;
    // SAFETY: setrlimit(2) only, between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            let low = libc::rlimit {
                rlim_cur: 256,
                rlim_max: hard,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &low) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("{want}\n{want}\n")
    );
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
    let (code, err) = r.fails(&["rename", "q", "bad name"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("Invalid container name (bad name)"), "{err}");
    let p = id_of(&r, "q");
    r.ok(&["rm", "-f", "q"]);
    no_cgroups_left(&p);

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
    let restarts = |name: &str| {
        r.ok(&["inspect", "-f", "{{.RestartCount}} {{.State.Status}}", name])
            .trim()
            .to_string()
    };
    wait_until("flaky to be restarted twice and left exited", 30, || {
        restarts("flaky") == "2 exited"
    });
    assert_eq!(r.ok(&["logs", "flaky"]), "run\nrun\nrun\n");
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
    let shim = state_file(&r, &id_of(&r, "loop"))["ShimPid"]
        .as_i64()
        .unwrap() as i32;
    let monitor = pidfd(shim);
    wait_until("loop to be restarted", 30, || {
        restarts("loop")
            .split(' ')
            .next()
            .unwrap()
            .parse::<u32>()
            .unwrap()
            >= 1
    });
    r.ok(&["stop", "-t", "1", "loop"]);
    // The monitor, which would restart it, has ended: no restart can come any more.
    wait_until("the monitor of loop to end after the stop", 30, || {
        exited(&monitor)
    });
    assert_eq!(status(&r, "loop"), "exited");

    r.ok(&["create", "--name", "idle", "busybox", "true"]);
    r.ok(&["run", "-d", "--name", "alive", "busybox", "sleep", "1000"]);
    let mut pruned: Vec<String> = ["flaky", "loop", "idle"]
        .iter()
        .map(|n| id_of(&r, n))
        .collect();
    pruned.sort();
    let out = r.ok(&["container", "prune", "-f"]);
    let mut listed: Vec<String> = out
        .lines()
        .filter(|l| l.len() == 64)
        .map(str::to_string)
        .collect();
    listed.sort();
    assert_eq!(listed, pruned, "{out}");
    for id in &pruned {
        no_cgroups_left(id);
    }
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
    let alive = id_of(&r, "alive");
    r.ok(&["rm", "-f", "alive"]);
    no_cgroups_left(&alive);
    nothing_left(&r);
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
    no_cgroups_left(&id);
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
            "trap 'echo got TERM; exit 5' TERM; echo ready $(hostname); while true; do sleep 0.1; done",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let short = line
        .strip_prefix("ready ")
        .unwrap_or_else(|| panic!("{line:?}"))
        .trim()
        .to_string();
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "got TERM\n");
    assert_eq!(status.code(), Some(5));
    assert_eq!(r.ok(&["ps", "-aq"]), "");
    no_cgroups_left_of_short(&short);
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
    // A share of the CPU, as a percentage; what it comes to under --cpus is a measurement
    // (bench/cpu.sh), the limit itself is what the kernel was told:
    let cpu: f64 = v["CPUPerc"]
        .as_str()
        .unwrap()
        .strip_suffix('%')
        .unwrap_or_else(|| panic!("{stats}"))
        .parse()
        .unwrap();
    assert!(cpu >= 0.0, "{stats}");
    assert_eq!(cpu_limit(&id), (50_000, 100_000));
    assert!(
        v["MemUsage"].as_str().unwrap().ends_with("/ 64MiB"),
        "{stats}"
    );
    assert_eq!(v["PIDs"], "1");
    assert_eq!(v["Name"], "busy", "{stats}");
    let table = r.ok(&["stats", "--no-stream"]);
    assert!(
        table.starts_with("CONTAINER ID") && table.contains("busy"),
        "{table}"
    );
    r.ok(&["rm", "-f", &id]);
    no_cgroups_left(&id);
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
    // The container's environment, with `-e` adding to it and overriding a variable of the
    // same name; no TERM without a terminal.
    let env = r.ok(&["exec", "-e", "FROM_RUN=2", "-e", "NEW=3", "host", "env"]);
    let mut env: Vec<&str> = env
        .lines()
        .filter(|l| !l.starts_with("HOSTNAME="))
        .collect();
    env.sort();
    assert_eq!(
        env,
        [
            "FROM_RUN=2",
            "HOME=/root",
            "NEW=3",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ],
    );
    assert_eq!(
        r.run(&["exec", "host", "sh", "-c", "exit 9"]).status.code(),
        Some(9)
    );
    // Docker's exec gives 126 for a command it cannot start, found or not.
    let (code, err) = r.fails(&["exec", "host", "no-such-thing"]);
    assert_eq!(code, 126, "{err}");
    assert!(err.contains("executable file not found"), "{err}");
    // Standard input reaches an interactive exec.
    let o = r.run_stdin(&["exec", "-i", "host", "cat"], b"piped in\n");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "piped in\n");
    // Detached: returns at once; the process runs in the container.
    r.ok(&["exec", "-d", "host", "sh", "-c", "echo late > /tmp/late"]);
    wait_until("the detached exec to write /tmp/late", 30, || {
        r.run(&["exec", "host", "cat", "/tmp/late"]).stdout == b"late\n"
    });
    r.ok(&["stop", "-t", "0", "host"]);
    let (code, err) = r.fails(&["exec", "host", "true"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is not running"), "{err}");
    let id = id_of(&r, "host");
    r.ok(&["rm", "host"]);
    no_cgroups_left(&id);
    nothing_left(&r);
}

#[test]
fn default_seccomp_profile() {
    let r = setup();
    assert!(sh(&r, &[], "grep '^Seccomp:' /proc/self/status").contains('2'));
    // A user namespace needs no capability, so only the profile stands in the way.
    let (code, err) = r.fails(&["run", "--rm", "busybox", "unshare", "-U", "true"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("unshare(0x10000000): Operation not permitted"),
        "unshare -U under the default profile: {err}"
    );
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
    no_cgroups_left(&id);
}

/// Everything a container writes reaches the attached client and the log, also what is
/// still in the pipe when it has exited: the process makes its output pipe a megabyte long,
/// fills it in one write and exits, so the monitor learns of the end with all of it unread.
#[test]
fn output_still_in_the_pipe_at_the_end_is_not_lost() {
    let r = setup();
    ketch_tests::hostile::hostile_image(&r, "burst", &[], &[]);
    let size = 1 << 20;
    let arg = size.to_string();
    // On standard output, and (the streams swapped) on standard error.
    for name in ["plain", "stderr"] {
        let mut args = vec!["run", "--name", name, "--network", "none", "burst"];
        if name == "stderr" {
            args.extend(["sh", "-c", "escape-helper burst $0 3>&1 1>&2 2>&3", &arg]);
        } else {
            args.extend(["escape-helper", "burst", &arg]);
        }
        let o = r.run(&args);
        assert!(
            o.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let got = if name == "stderr" {
            &o.stderr
        } else {
            &o.stdout
        };
        assert_eq!(got.len(), size, "{name}: attached");
        assert!(got.iter().all(|b| *b == b'x'), "{name}");
        let logs = r.run(&["logs", name]);
        let logged = logs.stdout.len() + logs.stderr.len();
        assert_eq!(logged, size, "{name}: the log");
        r.ok(&["rm", name]);
    }
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
    // The server goes with the test, also when it fails.
    struct Server(String);
    impl Drop for Server {
        fn drop(&mut self) {
            let _ = Command::new("tmux")
                .args(["-L", &self.0, "kill-server"])
                .output();
        }
    }
    let _server = Server(session.clone());
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
    // What a window shows once it shows `want`; the wait ends in an assert naming it.
    let shows_in = |target: &str, want: &str| {
        let mut text = String::new();
        wait_until(&format!("{want:?} in tmux window {target}"), 30, || {
            let o = std::process::Command::new("tmux")
                .args(["-L", &session, "capture-pane", "-t", target, "-p"])
                .output()
                .unwrap();
            text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.contains(want)
        });
        text
    };
    let shows = |want: &str| shows_in(&t, want);
    shows("/ #");
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
    shows_in(&w1, "/ #");
    tm(&[
        "send-keys",
        "-t",
        &w1,
        "echo in-exec $(tty) $(stty size) $TERM",
        "Enter",
    ]);
    let text = shows_in(&w1, "in-exec /dev/pts/");
    // Its terminal has the size of the window it was started from.
    let o = std::process::Command::new("tmux")
        .args(["-L", &session, "display", "-p", "-t", &w1])
        .arg("#{pane_height} #{pane_width} xterm")
        .output()
        .unwrap();
    let size = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(
        text.lines().any(|l| l.starts_with("in-exec /dev/pts/")
            && l.split_once(' ')
                .and_then(|(_, rest)| rest.split_once(' '))
                .is_some_and(|(_, rest)| rest == size)),
        "want {size:?}: {text}"
    );
    tm(&["send-keys", "-t", &w1, "exit", "Enter"]);
    // start -ai of a container made with a terminal elsewhere (here: none): its terminal
    // has the size of the window it is started from.
    r.ok(&[
        "create",
        "-it",
        "--name",
        "later",
        "--network",
        "none",
        "busybox",
        "sh",
    ]);
    let start = format!(
        "{} --root {} --bridge {} --ip-forward=false start -ai later",
        ketch_tests::ketch_bin().display(),
        r.path().display(),
        r.bridge
    );
    let w2 = format!("{session}:2");
    tm(&["new-window", "-t", &w2, &start]);
    shows_in(&w2, "/ #");
    let o = std::process::Command::new("tmux")
        .args(["-L", &session, "display", "-p", "-t", &w2])
        .arg("in-start #{pane_height} #{pane_width}")
        .output()
        .unwrap();
    let want = String::from_utf8_lossy(&o.stdout).trim().to_string();
    tm(&[
        "send-keys",
        "-t",
        &w2,
        "echo in-start $(stty size)",
        "Enter",
    ]);
    // The line the shell prints, not the command echoed before it.
    let text = shows_in(&w2, &format!("\n{want}"));
    assert!(
        text.lines().any(|l| l.trim_end() == want),
        "want {want:?}: {text}"
    );
    tm(&["send-keys", "-t", &w2, "exit", "Enter"]);
    tm(&["send-keys", "-t", &t, "exit 4", "Enter"]);
    // The shell's `echo $?` writes the file after `run -it` returned.
    wait_until("run -it to return its exit status", 30, || {
        std::fs::read_to_string(&rc).is_ok_and(|s| s.ends_with('\n'))
    });
    assert_eq!(std::fs::read_to_string(&rc).unwrap().trim(), "4");
    // What the terminal showed is in the log too.
    assert!(r.ok(&["logs", "tty"]).contains("40 120"));
    let id = id_of(&r, "tty");
    r.ok(&["rm", "tty"]);
    no_cgroups_left(&id);
    wait_until("start -ai to end", 30, || {
        r.ok(&["inspect", "-f", "{{.State.Status}}", "later"])
            .trim()
            == "exited"
    });
    r.ok(&["rm", "later"]);
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
    // One longer than the room ketch-init's own arguments left (its bundle's path and a few
    // words) is cut to fit that room, less the two bytes that end it; never written past it.
    let script = format!("tr '\\0' ' ' </proc/1/cmdline; : {}", "x".repeat(400));
    let cut = sh(&r, &["--init"], &script);
    let full = format!("ketch-init -- sh -c {script}");
    let cut = cut.strip_suffix(' ').unwrap_or(&cut);
    assert!(full.starts_with(cut), "{cut:?}");
    let bundle = r.path().join("containers").join("x".repeat(64));
    let room = bundle.display().to_string().len() + "ketch-init --setup  3 4 5 --init".len();
    assert!(
        cut.len() < full.len() && cut.len() + 8 >= room,
        "{} bytes of {}, in about {room}",
        cut.len(),
        full.len()
    );
    // An orphan left behind is reaped: its PID goes once it has ended. (`true &` ends at
    // once; the shell that started it exits without waiting, leaving it to PID 1.)
    let reaped = sh(
        &r,
        &["--init"],
        "p=$(sh -c 'true & echo $!'); \
         for i in $(seq 1 600); do [ -e /proc/$p ] || { echo reaped; exit 0; }; sleep 0.05; done; \
         echo \"never reaped: $(cat /proc/$p/stat)\"",
    );
    assert_eq!(reaped, "reaped\n");
    // A program that ignores signals as PID 1 gets them through the init: stop's TERM
    // ends it (143), where it would otherwise wait out -t and KILL it (137).
    r.ok(&[
        "run", "-d", "--init", "--name", "quick", "busybox", "sleep", "1000",
    ]);
    let quick = id_of(&r, "quick");
    r.ok(&["stop", "-t", "10", "quick"]);
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
    let (code, err) = r.fails(&["run", "--rm", "--init", "busybox", "nonexistent"]);
    assert_eq!(code, 127, "{err}");
    assert!(
        err.contains("exec: \"nonexistent\": executable file not found"),
        "{err}"
    );
    r.ok(&["rm", "quick"]);
    no_cgroups_left(&quick);
    nothing_left(&r);
}
