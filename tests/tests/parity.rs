//! Docker parity at the boundary: every `run` flag and create field either does what it does
//! with Docker, or is refused by name. Each case runs twice: through the `ketch` CLI embedded,
//! and through the real `docker` CLI against `ketch daemon`. A field dropped on either way
//! fails its case.

mod common;

use std::path::Path;

use common::*;
use ketch_tests::{Daemon, Root, busybox_rootfs, no_cgroups_left, wait_until};

fn setup_both() -> (Root, Daemon) {
    let r = Root::new();
    r.ok(&["import", busybox_rootfs().to_str().unwrap(), "busybox"]);
    let d = Daemon::start(&r);
    (r, d)
}

/// A command of one of the clients tried: `ketch` embedded, `ketch -H` or `docker` through
/// the daemon.
fn client(r: &Root, d: &Daemon, who: &str) -> std::process::Command {
    let host = format!("unix://{}", d.socket.display());
    match who {
        "docker" => {
            let mut c = std::process::Command::new("docker");
            c.env("DOCKER_HOST", &host).env(
                "DOCKER_CONFIG",
                d.socket.parent().unwrap().join("docker-config"),
            );
            c
        }
        "ketch -H" => {
            let mut c = r.cmd();
            c.args(["-H", &host]);
            c
        }
        _ => r.cmd(),
    }
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `run --rm --network none FLAGS busybox sh -c SCRIPT` through both front doors; `check`
/// sees each one's output.
fn both(r: &Root, d: &Daemon, flags: &[&str], script: &str, check: impl Fn(&str, &str)) {
    let mut args = vec!["run", "--rm", "--network", "none"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["busybox", "sh", "-c", script]);
    let o = r.run(&args);
    assert!(o.status.success(), "ketch {args:?}: {}", text(&o));
    check("ketch", &String::from_utf8_lossy(&o.stdout));
    let o = d.docker(&args);
    assert!(o.status.success(), "docker {args:?}: {}", text(&o));
    check("docker", &String::from_utf8_lossy(&o.stdout));
}

fn host_processes() -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        })
        .count()
}

/// The rows of the table in the issue that found these fields dropped: each now gives
/// Docker's answer.
#[test]
fn run_flags_reach_the_container() {
    let (r, d) = setup_both();
    both(&r, &d, &["--pid", "host"], "ps | wc -l", |who, out| {
        let n: usize = out.trim().parse().unwrap();
        // The host's processes, not the three of a namespace of its own.
        assert!(n > 10 && n + 50 > host_processes() / 2, "{who}: {n}");
    });
    both(
        &r,
        &d,
        &["--ulimit", "nofile=100:200"],
        "ulimit -n; ulimit -Hn",
        |who, out| assert_eq!(out, "100\n200\n", "{who}"),
    );
    both(
        &r,
        &d,
        &["--shm-size", "128m"],
        "df -k /dev/shm",
        |who, out| assert!(out.contains(" 131072 "), "{who}: {out}"),
    );
    both(
        &r,
        &d,
        &["--device", "/dev/null:/dev/xnull"],
        "ls -l /dev/xnull; echo x > /dev/xnull && echo written",
        |who, out| {
            assert!(
                out.starts_with('c') && out.contains("1,   3"),
                "{who}: {out}"
            );
            assert!(out.ends_with("written\n"), "{who}: {out}");
        },
    );
    both(
        &r,
        &d,
        &["--oom-score-adj", "500"],
        "cat /proc/self/oom_score_adj",
        |who, out| assert_eq!(out, "500\n", "{who}"),
    );
    both(&r, &d, &["--group-add", "10"], "id -G", |who, out| {
        assert_eq!(
            out.split_whitespace().collect::<Vec<_>>(),
            ["0", "10"],
            "{who}"
        )
    });
    both(
        &r,
        &d,
        &["--dns-search", "example.org", "--dns-option", "ndots:3"],
        "cat /etc/resolv.conf",
        |who, out| {
            assert!(out.contains("search example.org\n"), "{who}: {out}");
            assert!(out.contains("options ndots:3\n"), "{who}: {out}");
        },
    );
    both(
        &r,
        &d,
        &["--cpuset-cpus", "1"],
        "grep Cpus_allowed_list /proc/self/status",
        |who, out| assert!(out.trim().ends_with("\t1"), "{who}: {out}"),
    );
    both(
        &r,
        &d,
        &[
            "--sysctl",
            "net.ipv4.ip_forward=1",
            "--sysctl",
            "kernel.shmmni=1024",
        ],
        "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni",
        |who, out| assert_eq!(out, "1\n1024\n", "{who}"),
    );
    both(
        &r,
        &d,
        &["--hostname", "h", "--domainname", "example.org"],
        "hostname; cat /proc/sys/kernel/domainname",
        |who, out| assert_eq!(out, "h\nexample.org\n", "{who}"),
    );
    let host_ipc = std::fs::read_link("/proc/self/ns/ipc").unwrap();
    both(
        &r,
        &d,
        &["--ipc", "host"],
        "readlink /proc/self/ns/ipc",
        |who, out| assert_eq!(out.trim(), host_ipc.to_str().unwrap(), "{who}"),
    );
    both(
        &r,
        &d,
        &["--ipc", "none"],
        "ls /dev/shm || echo none",
        |who, out| assert!(out.ends_with("none\n"), "{who}: {out}"),
    );
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    both(&r, &d, &["--uts", "host"], "hostname", |who, out| {
        assert_eq!(out, host_name, "{who}")
    });
    both(
        &r,
        &d,
        &["--cgroupns", "host"],
        "grep ':pids:' /proc/self/cgroup",
        |who, out| assert!(out.contains(":pids:/ketch/"), "{who}: {out}"),
    );
    both(
        &r,
        &d,
        &["--security-opt", "systempaths=unconfined"],
        "grep -c . /proc/timer_list; touch /proc/sys/kernel/x 2>&1 | grep -c Read-only; true",
        |who, out| {
            // Neither masked (an empty file) nor read-only (procfs refuses the new file
            // itself, not the mount).
            let lines: Vec<u32> = out.lines().map(|l| l.parse().unwrap()).collect();
            assert!(lines[0] > 0 && lines[1] == 0, "{who}: {out}");
        },
    );
    both(
        &r,
        &d,
        &[],
        "grep -c . /proc/timer_list; true",
        |who, out| assert_eq!(out, "0\n", "{who}: masked by default"),
    );
    assert_eq!(r.ok(&["ps", "-aq"]), "");
}

/// Limits land in the container's cgroups as Docker writes them.
#[test]
fn resource_flags_reach_the_cgroups() {
    let (r, d) = setup_both();
    let flags = [
        "--memory",
        "64m",
        "--memory-swap",
        "128m",
        "--memory-reservation",
        "32m",
        "--memory-swappiness",
        "5",
        "--cpu-period",
        "50000",
        "--cpu-quota",
        "25000",
        "--cpu-shares",
        "512",
        "--cpuset-cpus",
        "0",
    ];
    let v1 = |controller: &str, id: &str, file: &str| {
        std::fs::read_to_string(format!("/sys/fs/cgroup/{controller}/ketch/{id}/{file}"))
            .unwrap_or_else(|e| panic!("{controller}/{file}: {e}"))
            .trim()
            .to_string()
    };
    for who in ["ketch", "docker"] {
        let mut args = vec!["run", "-d", "--network", "none"];
        args.extend_from_slice(&flags);
        args.extend_from_slice(&["busybox", "sleep", "100"]);
        let out = if who == "ketch" {
            r.ok(&args)
        } else {
            let o = d.docker(&args);
            assert!(o.status.success(), "{}", text(&o));
            String::from_utf8(o.stdout).unwrap()
        };
        let id = out.trim().to_string();
        assert_eq!(v1("memory", &id, "memory.limit_in_bytes"), "67108864");
        assert_eq!(
            v1("memory", &id, "memory.memsw.limit_in_bytes"),
            "134217728"
        );
        assert_eq!(v1("memory", &id, "memory.soft_limit_in_bytes"), "33554432");
        assert_eq!(v1("memory", &id, "memory.swappiness"), "5");
        assert_eq!(v1("cpu", &id, "cpu.cfs_period_us"), "50000");
        assert_eq!(v1("cpu", &id, "cpu.cfs_quota_us"), "25000");
        assert_eq!(v1("cpu", &id, "cpu.shares"), "512");
        assert_eq!(v1("cpuset", &id, "cpuset.cpus"), "0");
        let hc = r.ok(&["inspect", "-f", "{{json .HostConfig}}", &id]);
        let hc: serde_json::Value = serde_json::from_str(&hc).unwrap();
        assert_eq!(hc["MemoryReservation"], 32 << 20, "{who}");
        assert_eq!(hc["MemorySwap"], 128 << 20, "{who}");
        assert_eq!(hc["CpuQuota"], 25000, "{who}");
        assert_eq!(hc["CpusetCpus"], "0", "{who}");
        r.ok(&["rm", "-f", &id]);
        no_cgroups_left(&id);
    }
    // A parent cgroup of the user's: the container's group is made below it. With real-time
    // CPU time, which the parent is given enough of for the container's share (5% here).
    let parent = format!("ketch-test-{}", ketch_tests::random_hex(6));
    let id = r
        .ok(&[
            "run",
            "-d",
            "--network",
            "none",
            "--cgroup-parent",
            &parent,
            "--cpu-rt-period",
            "100000",
            "--cpu-rt-runtime",
            "5000",
            "busybox",
            "sleep",
            "100",
        ])
        .trim()
        .to_string();
    assert!(Path::new(&format!("/sys/fs/cgroup/pids/{parent}/{id}")).exists());
    let cpu = |path: &str| {
        std::fs::read_to_string(format!("/sys/fs/cgroup/cpu/{path}"))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(cpu(&format!("{parent}/{id}/cpu.rt_period_us")), "100000");
    assert_eq!(cpu(&format!("{parent}/{id}/cpu.rt_runtime_us")), "5000");
    assert_eq!(cpu(&format!("{parent}/cpu.rt_runtime_us")), "50000");
    // Changed live, the parent raised again for the larger share.
    r.ok(&["update", "--cpu-rt-runtime", "8000", &id]);
    assert_eq!(cpu(&format!("{parent}/{id}/cpu.rt_runtime_us")), "8000");
    assert_eq!(cpu(&format!("{parent}/cpu.rt_runtime_us")), "80000");
    let hc = d.docker(&[
        "inspect",
        "-f",
        "{{.HostConfig.CpuRealtimePeriod}} {{.HostConfig.CpuRealtimeRuntime}}",
        &id,
    ]);
    assert_eq!(text(&hc).trim(), "100000 8000");
    let o = d.docker(&[
        "create",
        "--cpu-rt-period",
        "1000",
        "--cpu-rt-runtime",
        "5000",
        "busybox",
    ]);
    assert!(
        text(&o).contains("cpu-rt-runtime cannot be higher than cpu-rt-period"),
        "{}",
        text(&o)
    );
    r.ok(&["rm", "-f", &id]);
    for (_, m) in ketch_tests::cgroup_mounts() {
        assert!(!m.join(&parent).join(&id).exists());
        let _ = std::fs::remove_dir(m.join(&parent));
    }
}

/// Namespaces shared with another container, and its stop signal and timeout.
#[test]
fn another_containers_namespaces_and_stop_settings() {
    let (r, d) = setup_both();
    r.ok(&[
        "run",
        "-d",
        "--name",
        "first",
        "--network",
        "none",
        "busybox",
        "sleep",
        "100",
    ]);
    both(
        &r,
        &d,
        &["--pid", "container:first"],
        "ps -o comm",
        |who, out| assert!(out.contains("sleep"), "{who}: {out}"),
    );
    // Only a container that offered its IPC namespace is joined, as with Docker; with the
    // namespace comes its /dev/shm.
    let join_first = [
        "run",
        "--rm",
        "--network",
        "none",
        "--ipc",
        "container:first",
        "busybox",
        "true",
    ];
    for (who, o) in [
        ("ketch", r.run(&join_first)),
        ("docker", d.docker(&join_first)),
    ] {
        assert_eq!(o.status.code(), Some(125), "{who}: {}", text(&o));
        assert!(
            text(&o).contains("container first: non-shareable IPC"),
            "{who}: {}",
            text(&o)
        );
    }
    assert_eq!(
        r.ok(&["inspect", "-f", "{{.HostConfig.IpcMode}}", "first"]),
        "private\n"
    );
    r.ok(&[
        "run",
        "-d",
        "--name",
        "offers",
        "--ipc",
        "shareable",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo from-offers > /dev/shm/f && exec sleep 100",
    ]);
    wait_until("the file in /dev/shm", 10, || {
        r.run(&["exec", "offers", "test", "-e", "/dev/shm/f"])
            .status
            .success()
    });
    let offers_ipc = r.ok(&["exec", "offers", "readlink", "/proc/self/ns/ipc"]);
    both(
        &r,
        &d,
        &["--ipc", "container:offers"],
        "readlink /proc/self/ns/ipc; cat /dev/shm/f; mktemp /dev/shm/from-XXXXXX >/dev/null",
        |who, out| {
            let mut lines = out.lines();
            assert_eq!(lines.next(), offers_ipc.lines().next(), "{who}");
            assert_eq!(lines.next(), Some("from-offers"), "{who}");
        },
    );
    // What the joiners wrote is in the donor's /dev/shm.
    let listed = r.ok(&["exec", "offers", "ls", "/dev/shm"]);
    assert_eq!(listed.matches("from-").count(), 2, "{listed}");
    r.ok(&["rm", "-f", "offers"]);
    r.ok(&["stop", "-t", "0", "first"]);
    let (code, err) = r.fails(&["run", "--rm", "--pid", "container:first", "busybox", "true"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("non running container"), "{err}");
    // The stop signal and timeout the container was given are the ones `stop` uses.
    let script = "trap 'echo got USR1; exit 3' USR1; while true; do sleep 0.1; done";
    for who in ["ketch", "docker"] {
        let args = [
            "run",
            "-d",
            "--name",
            "sig",
            "--network",
            "none",
            "--stop-signal",
            "USR1",
            "--stop-timeout",
            "30",
            "busybox",
            "sh",
            "-c",
            script,
        ];
        let stop = if who == "ketch" {
            r.ok(&args);
            wait_until("the trap is set", 5, || {
                r.ok(&["top", "sig"]).contains("sleep")
            });
            r.run(&["stop", "sig"])
        } else {
            assert!(d.docker(&args).status.success());
            wait_until("the trap is set", 5, || {
                r.ok(&["top", "sig"]).contains("sleep")
            });
            d.docker(&["stop", "sig"])
        };
        assert!(stop.status.success(), "{}", text(&stop));
        assert_eq!(r.ok(&["logs", "sig"]), "got USR1\n", "{who}");
        assert_eq!(
            r.ok(&[
                "inspect",
                "-f",
                "{{.State.ExitCode}} {{.Config.StopSignal}} {{.Config.StopTimeout}}",
                "sig"
            ]),
            "3 USR1 30\n",
            "{who}"
        );
        r.ok(&["rm", "sig"]);
    }
    // A negative stop timeout waits for as long as it takes; an explicit one wins.
    r.ok(&[
        "run",
        "-d",
        "--name",
        "slow",
        "--network",
        "none",
        "--stop-timeout",
        "-1",
        "busybox",
        "sh",
        "-c",
        "trap '' TERM; sleep 100",
    ]);
    let t = std::time::Instant::now();
    r.ok(&["stop", "-t", "1", "slow"]);
    assert!(t.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(status(&r, "slow"), "exited");
    r.ok(&["rm", "-f", "first", "slow"]);
}

/// Log drivers: `none` keeps nothing (and says so), `local` keeps Docker's rotation.
#[test]
fn log_drivers() {
    let (r, d) = setup_both();
    r.ok(&[
        "run",
        "--name",
        "quiet",
        "--network",
        "none",
        "--log-driver",
        "none",
        "busybox",
        "echo",
        "hi",
    ]);
    let (code, err) = r.fails(&["logs", "quiet"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("configured logging driver does not support reading"),
        "{err}"
    );
    let o = d.docker(&["logs", "quiet"]);
    assert!(
        !o.status.success() && text(&o).contains("does not support reading"),
        "{}",
        text(&o)
    );
    assert_eq!(
        r.ok(&["inspect", "-f", "{{.HostConfig.LogConfig.Type}}", "quiet"]),
        "none\n"
    );
    let id = id_of(&r, "quiet");
    assert!(
        !r.path()
            .join("containers")
            .join(&id)
            .join("container.log")
            .exists()
    );
    // Attached, the output still reaches the client.
    assert_eq!(
        r.ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "--log-driver",
            "none",
            "busybox",
            "echo",
            "hi"
        ]),
        "hi\n"
    );
    let o = d.docker(&[
        "run",
        "--name",
        "loc",
        "--network",
        "none",
        "--log-driver",
        "local",
        "busybox",
        "echo",
        "kept",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(r.ok(&["logs", "loc"]), "kept\n");
    assert_eq!(
        r.ok(&["inspect", "-f", "{{.HostConfig.LogConfig.Type}}", "loc"]),
        "local\n"
    );
    for bad in ["syslog", "journald"] {
        let (code, err) = r.fails(&["run", "--rm", "--log-driver", bad, "busybox", "true"]);
        assert_eq!(code, 125);
        let says = format!("no log driver named '{bad}' is registered");
        assert!(err.contains(&says), "{err}");
        let o = d.docker(&["run", "--rm", "--log-driver", bad, "busybox", "true"]);
        assert!(text(&o).contains(&says), "{}", text(&o));
    }
    r.ok(&["rm", "quiet", "loc"]);
}

/// Flags for what ketch does not do are refused by name, never accepted and dropped: the
/// CLI's and the daemon's (which the docker CLI meets as an error response).
#[test]
fn unsupported_flags_are_refused_by_name() {
    let (r, d) = setup_both();
    for (flags, names) in [
        (
            vec!["--storage-opt", "size=1G"],
            "StorageOpt is not supported",
        ),
        (vec!["--gpus", "all"], "DeviceRequests is not supported"),
        (
            vec!["--blkio-weight-device", "/dev/sda:100"],
            "BlkioWeightDevice is not supported",
        ),
    ] {
        let mut args = vec!["create"];
        args.extend_from_slice(&flags);
        args.push("busybox");
        let (code, err) = r.fails(&args);
        assert_eq!(code, 125, "{err}");
        assert!(
            err.contains(&format!("{} is not supported", flags[0])),
            "{err}"
        );
        let o = d.docker(&args);
        assert!(!o.status.success());
        assert!(text(&o).contains(names), "{}", text(&o));
    }
    for (flags, says) in [
        (vec!["--userns", "keep-id"], "invalid userns mode"),
        (
            vec!["--sysctl", "kernel.panic=1"],
            "sysctl 'kernel.panic' is not allowed",
        ),
        (
            vec!["--network", "host", "--sysctl", "net.ipv4.ip_forward=1"],
            "not allowed in host network mode",
        ),
        (
            vec!["--uts", "host", "--hostname", "x"],
            "hostname and the UTS mode",
        ),
        (vec!["--annotation", "io.ketch.join.owner=x"], "reserved"),
        (
            vec!["--ulimit", "nofile=200:100"],
            "soft limit must be less than or equal to hard limit",
        ),
        (
            vec!["--memory", "64m", "--memory-swap", "32m"],
            "memoryswap limit should be larger",
        ),
        (vec!["--cpuset-cpus", "7-9"], "not available"),
        (vec!["--blkio-weight", "500"], "blkio"),
        (
            vec!["--security-opt", "apparmor=myprofile"],
            "AppArmor is not enabled",
        ),
        (vec!["--runtime", "crun"], "not supported"),
        (
            vec!["--platform", "linux/s390x"],
            "linux/s390x is not supported",
        ),
    ] {
        let mut args = vec!["create"];
        args.extend_from_slice(&flags);
        args.push("busybox");
        let (code, err) = r.fails(&args);
        assert_eq!(code, 125, "{flags:?}: {err}");
        assert!(err.contains(says), "{flags:?}: {err}");
        let o = d.docker(&args);
        assert!(!o.status.success(), "docker {flags:?} was accepted");
        // The docker CLI checks some of these itself, in its own words.
        let own = text(&o).contains("Run 'docker create --help'");
        assert!(
            text(&o).contains(says) || own,
            "docker {flags:?}: {}",
            text(&o)
        );
    }
    // The CLI's own: the docker CLI does it by a bind mount of its own making.
    let (code, err) = r.fails(&["create", "--use-api-socket", "busybox"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("--use-api-socket is not supported"), "{err}");
    assert_eq!(r.ok(&["ps", "-aq"]), "");
}

/// Files the CLI reads and writes, labels and annotations, exposed ports.
#[test]
fn cidfile_label_file_annotations_and_expose() {
    let r = setup();
    let dir = tempfile::tempdir().unwrap();
    let cid = dir.path().join("cid");
    let labels = dir.path().join("labels");
    std::fs::write(&labels, "# a comment\na=1\n\nb=two words\n").unwrap();
    let id = r
        .ok(&[
            "create",
            "--cidfile",
            cid.to_str().unwrap(),
            "--label-file",
            labels.to_str().unwrap(),
            "--annotation",
            "org.example.a=b",
            "--expose",
            "7000-7001/udp",
            "-P",
            "busybox",
            "true",
        ])
        .trim()
        .to_string();
    assert_eq!(std::fs::read_to_string(&cid).unwrap(), id);
    assert_eq!(
        r.ok(&[
            "inspect",
            "-f",
            "{{json .Config.Labels}} {{json .HostConfig.Annotations}}",
            &id
        ]),
        "{\"a\":\"1\",\"b\":\"two words\"} {\"org.example.a\":\"b\"}\n"
    );
    let spec =
        std::fs::read_to_string(r.path().join("containers").join(&id).join("config.json")).unwrap();
    assert!(spec.contains("\"org.example.a\": \"b\""), "{spec}");
    assert_eq!(
        r.ok(&["inspect", "-f", "{{json .Config.ExposedPorts}}", &id]),
        "{\"7000/udp\":{},\"7001/udp\":{}}\n"
    );
    // The file is there: a second container is refused, as Docker refuses it.
    let (code, err) = r.fails(&[
        "create",
        "--cidfile",
        cid.to_str().unwrap(),
        "busybox",
        "true",
    ]);
    assert_eq!(code, 125);
    assert!(err.contains("container ID file found"), "{err}");
    r.ok(&["rm", &id]);
}

fn health(r: &Root, name: &str) -> serde_json::Value {
    serde_json::from_str(&r.ok(&["inspect", "-f", "{{json .State.Health}}", name])).unwrap()
}

/// Health checks run by the monitor: a failing one turns the container unhealthy (shown in
/// `ps`, with `health_status` events), a passing one healthy; the image's HEALTHCHECK is
/// used unless `--no-healthcheck`.
#[test]
fn health_checks() {
    let (r, d) = setup_both();
    r.ok(&[
        "run",
        "-d",
        "--name",
        "sick",
        "--network",
        "none",
        "--health-cmd",
        "echo no; exit 1",
        "--health-interval",
        "100ms",
        "--health-retries",
        "2",
        "busybox",
        "sleep",
        "100",
    ]);
    let o = d.docker(&[
        "run",
        "-d",
        "--name",
        "fine",
        "--network",
        "none",
        "--health-cmd",
        "echo yes",
        "--health-interval",
        "100ms",
        "busybox",
        "sleep",
        "100",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    wait_until("the checks decide", 10, || {
        health(&r, "sick")["Status"] == "unhealthy" && health(&r, "fine")["Status"] == "healthy"
    });
    let h = health(&r, "sick");
    assert!(h["FailingStreak"].as_u64().unwrap() >= 2, "{h}");
    let last = h["Log"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["ExitCode"].as_i64(), last["Output"].as_str()),
        (Some(1), Some("no\n")),
        "{h}"
    );
    assert!(h["Log"].as_array().unwrap().len() <= 5);
    let ps = String::from_utf8(
        d.docker(&["ps", "--format", "{{.Names}} {{.Status}}"])
            .stdout,
    )
    .unwrap();
    assert!(ps.contains("sick Up") && ps.contains("(unhealthy)"), "{ps}");
    assert!(ps.contains("fine Up") && ps.contains("(healthy)"), "{ps}");
    let o = d.docker(&["inspect", "-f", "{{.State.Health.Status}}", "fine"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "healthy\n");
    // Until the next second: the API counts whole seconds, and these are this second's.
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    let o = d.docker(&[
        "events",
        "--since",
        "60s",
        "--until",
        &until.to_string(),
        "--format",
        "{{.Action}}",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let events = String::from_utf8_lossy(&o.stdout);
    assert!(
        events.contains("health_status: unhealthy") && events.contains("health_status: healthy"),
        "{events}"
    );
    // A check that runs past its timeout is killed and counts as a failure.
    r.ok(&[
        "run",
        "-d",
        "--name",
        "slow",
        "--network",
        "none",
        "--health-cmd",
        "sleep 10",
        "--health-interval",
        "100ms",
        "--health-timeout",
        "200ms",
        "--health-retries",
        "1",
        "busybox",
        "sleep",
        "100",
    ]);
    wait_until("the check times out", 10, || {
        health(&r, "slow")["Status"] == "unhealthy"
    });
    let h = health(&r, "slow");
    assert_eq!(h["Log"][0]["ExitCode"], -1, "{h}");
    assert_eq!(
        h["Log"][0]["Output"], "Health check exceeded timeout (200ms)",
        "{h}"
    );
    // The image's check, and --no-healthcheck.
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox\nHEALTHCHECK --interval=100ms CMD test -e /tmp/ready\n",
    )
    .unwrap();
    r.ok(&["build", "-q", "-t", "checked", ctx.path().to_str().unwrap()]);
    r.ok(&[
        "run",
        "-d",
        "--name",
        "img",
        "--network",
        "none",
        "checked",
        "sh",
        "-c",
        "sleep 1; touch /tmp/ready; sleep 100",
    ]);
    wait_until("the image's check passes", 10, || {
        health(&r, "img")["Status"] == "healthy"
    });
    r.ok(&[
        "run",
        "-d",
        "--name",
        "off",
        "--network",
        "none",
        "--no-healthcheck",
        "checked",
        "sleep",
        "100",
    ]);
    assert_eq!(
        r.ok(&["inspect", "-f", "{{json .State.Health}}", "off"]),
        "null\n"
    );
    let (code, err) = r.fails(&["run", "--no-healthcheck", "--health-cmd", "true", "busybox"]);
    assert_eq!(code, 125);
    assert!(err.contains("conflicts"), "{err}");
    // Without a check, no Health at all.
    r.ok(&[
        "run",
        "-d",
        "--name",
        "plain",
        "--network",
        "none",
        "busybox",
        "sleep",
        "100",
    ]);
    assert_eq!(
        r.ok(&["inspect", "-f", "{{json .State.Health}}", "plain"]),
        "null\n"
    );
    r.ok(&["rm", "-f", "sick", "fine", "slow", "img", "off", "plain"]);
}

/// The monitor runs the checks, so they go on without a daemon, and after the daemon is
/// back; a restart policy restarts a container whose check runs.
#[test]
fn health_checks_and_restarts_outlive_the_daemon() {
    let (r, mut d) = setup_both();
    let o = d.docker(&[
        "run",
        "-d",
        "--name",
        "hc",
        "--network",
        "none",
        "--restart",
        "on-failure",
        "--health-cmd",
        "test -e /tmp/ok",
        "--health-interval",
        "100ms",
        "busybox",
        "sh",
        "-c",
        "sleep 1; touch /tmp/ok; sleep 2; exit 1",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    d.kill();
    wait_until("healthy without a daemon", 10, || {
        health(&r, "hc")["Status"] == "healthy"
    });
    wait_until("restarted on failure", 15, || {
        r.ok(&["inspect", "-f", "{{.RestartCount}}", "hc"]).trim() != "0"
    });
    let d = Daemon::start(&r);
    // The new run's checks start over, and pass again.
    wait_until("healthy after the restart", 10, || {
        let o = d.docker(&["inspect", "-f", "{{.State.Health.Status}}", "hc"]);
        String::from_utf8_lossy(&o.stdout).trim() == "healthy"
    });
    r.ok(&["rm", "-f", "hc"]);
}

/// `docker update` and `ketch update` change a running container's limits at once, and
/// keep them: a later allocation over the new limit is OOM-killed; the restart policy
/// changed on a running container applies when it ends.
#[test]
fn update_changes_limits_live() {
    let (r, d) = setup_both();
    r.ok(&[
        "run",
        "-d",
        "--name",
        "u",
        "--network",
        "none",
        "-m",
        "64m",
        "busybox",
        "sleep",
        "100",
    ]);
    let id = id_of(&r, "u");
    let o = d.docker(&[
        "update",
        "--memory",
        "32m",
        "--pids-limit",
        "30",
        "--cpus",
        "0.5",
        "u",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let cg = |c: &str, f: &str| {
        std::fs::read_to_string(format!("/sys/fs/cgroup/{c}/ketch/{id}/{f}"))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(
        cg("memory", "memory.limit_in_bytes"),
        (32 << 20).to_string()
    );
    assert_eq!(cg("pids", "pids.max"), "30");
    assert_eq!(cg("cpu", "cpu.cfs_quota_us"), "50000");
    assert_eq!(
        r.ok(&[
            "inspect",
            "-f",
            "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}} {{.HostConfig.NanoCpus}}",
            "u"
        ]),
        format!("{} 30 500000000\n", 32 << 20)
    );
    // Over the new limit (under the old one): killed by the kernel.
    let o = d.docker(&[
        "exec",
        "u",
        "dd",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=48M",
        "count=1",
    ]);
    assert_eq!(o.status.code(), Some(137), "{}", text(&o));
    // The embedded CLI, back to no limit on processes.
    r.ok(&["update", "--pids-limit", "-1", "u"]);
    assert_eq!(cg("pids", "pids.max"), "max");
    let (code, err) = r.fails(&["update", "--memory", "1m", "u"]);
    assert_eq!(code, 1);
    assert!(err.contains("Minimum memory limit allowed is 6MB"), "{err}");
    let o = d.docker(&["update", "--memory", "1m", "u"]);
    assert!(
        text(&o).contains("Minimum memory limit allowed is 6MB"),
        "{}",
        text(&o)
    );
    assert_eq!(
        cg("memory", "memory.limit_in_bytes"),
        (32 << 20).to_string()
    );
    r.ok(&["rm", "-f", "u"]);
    no_cgroups_left(&id);
    // A restart policy given while it runs holds when it ends; so do its new limits.
    r.ok(&[
        "run",
        "-d",
        "--name",
        "later",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "sleep 1; exit 1",
    ]);
    let o = d.docker(&[
        "update",
        "--restart",
        "on-failure:2",
        "--memory",
        "16m",
        "later",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    wait_until("restarted twice", 20, || {
        r.ok(&[
            "inspect",
            "-f",
            "{{.RestartCount}} {{.State.Status}}",
            "later",
        ]) == "2 exited\n"
    });
    assert_eq!(
        r.ok(&["inspect", "-f", "{{.HostConfig.RestartPolicy.Name}} {{.HostConfig.RestartPolicy.MaximumRetryCount}} {{.HostConfig.Memory}}", "later"]),
        format!("on-failure 2 {}\n", 16 << 20)
    );
    r.ok(&["rm", "later"]);
}

/// Answers the docker CLI reads, in Docker's shapes: `system df` with volumes and
/// containers, `info`, and endpoints ketch does not serve refused with their reason.
#[test]
fn system_answers_in_dockers_shapes() {
    let (r, d) = setup_both();
    r.ok(&["volume", "create", "dfvol"]);
    r.ok(&[
        "run",
        "-d",
        "--name",
        "dfc",
        "--network",
        "none",
        "-v",
        "dfvol:/data",
        "busybox",
        "sleep",
        "100",
    ]);
    let o = d.docker(&["system", "df"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for row in [
        "Images          1         1",
        "Containers      1         1",
        "Local Volumes   1         1",
        "Build Cache     0         0",
    ] {
        assert!(out.contains(row), "{row:?} in\n{out}");
    }
    let o = d.docker(&["system", "df", "-v", "--format", "{{json .}}"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["Volumes"][0]["Name"], "dfvol", "{v}");
    assert_eq!(v["Volumes"][0]["Links"], "1", "{v}");
    assert_eq!(v["Containers"][0]["LocalVolumes"], "1", "{v}");
    let o = d.docker(&[
        "info",
        "--format",
        "{{.Swarm.LocalNodeState}} {{.OSType}} {{.LoggingDriver}}",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "inactive linux json-file\n"
    );
    for (args, says) in [
        (&["search", "busybox"][..], "image search is not supported"),
        (&["swarm", "leave"][..], "This node is not part of a swarm"),
        (&["node", "ls"][..], "This node is not a swarm manager"),
        (
            &["plugin", "install", "x/y"][..],
            "plugins are not supported",
        ),
    ] {
        let o = d.docker(args);
        assert!(!o.status.success(), "{args:?}");
        assert!(text(&o).contains(says), "{args:?}: {}", text(&o));
    }
    let o = d.docker(&["plugin", "ls", "-q"]);
    assert!(o.status.success() && o.stdout.is_empty(), "{}", text(&o));
    r.ok(&["rm", "-f", "dfc"]);
    r.ok(&["volume", "rm", "dfvol"]);
}

/// `--mac-address`: the interface on the container's network has it, as inspect says; a
/// bad or multicast address is refused.
#[test]
fn mac_address() {
    let (r, d) = setup_both();
    r.ok(&["network", "create", "macnet"]);
    for (who, mac) in [
        ("ketch", "02:42:ac:11:00:99"),
        ("docker", "92:d0:c6:0a:29:33"),
    ] {
        let args = [
            "run",
            "--rm",
            "--network",
            "macnet",
            "--mac-address",
            mac,
            "busybox",
            "cat",
            "/sys/class/net/eth0/address",
        ];
        let out = if who == "ketch" {
            r.ok(&args)
        } else {
            let o = d.docker(&args);
            assert!(o.status.success(), "{}", text(&o));
            String::from_utf8(o.stdout).unwrap()
        };
        assert_eq!(out.trim(), mac, "{who}");
    }
    r.ok(&[
        "create",
        "--name",
        "m",
        "--network",
        "macnet",
        "--mac-address",
        "02:42:ac:11:00:98",
        "busybox",
        "true",
    ]);
    r.ok(&["start", "m"]);
    assert_eq!(
        r.ok(&[
            "inspect",
            "-f",
            "{{.NetworkSettings.Networks.macnet.MacAddress}}",
            "m"
        ]),
        "02:42:ac:11:00:98\n"
    );
    for bad in ["01:00:5e:00:00:01", "02:42:ac", "zz:42:ac:11:00:98"] {
        let (code, err) = r.fails(&[
            "create",
            "--network",
            "macnet",
            "--mac-address",
            bad,
            "busybox",
        ]);
        assert_eq!(code, 125, "{err}");
        assert!(err.contains("invalid MAC address"), "{err}");
    }
    let (_, err) = r.fails(&[
        "create",
        "--network",
        "host",
        "--mac-address",
        "02:42:ac:11:00:98",
        "busybox",
    ]);
    assert!(err.contains("mac-address and the network mode"), "{err}");
    // On a user network its short ID is among its DNS names, stopped or not; among its
    // aliases only for a client of an API before 1.45 (docker-py 7 asks for 1.44), as
    // Docker shows it. The network's IPAM options are null, as Docker's.
    let id = id_of(&r, "m");
    let short = &id[..12];
    let field = |f: &str| format!("{{{{json .NetworkSettings.Networks.macnet.{f}}}}}");
    assert_eq!(r.ok(&["inspect", "-f", &field("Aliases"), "m"]), "null\n");
    assert_eq!(
        r.ok(&["inspect", "-f", &field("DNSNames"), "m"]),
        format!("[\"m\",\"{short}\"]\n")
    );
    let o = d.docker(&["inspect", "-f", &field("Aliases"), "m"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "null\n", "{}", text(&o));
    let old_client = |version: &str| -> serde_json::Value {
        let o = std::process::Command::new("curl")
            .args(["-sf", "--unix-socket"])
            .arg(&d.socket)
            .arg(format!("http://d/{version}/containers/m/json"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["NetworkSettings"]["Networks"]["macnet"]["Aliases"].clone()
    };
    assert_eq!(old_client("v1.44"), serde_json::json!([short]));
    assert_eq!(old_client("v1.47"), serde_json::Value::Null);
    assert_eq!(
        r.ok(&[
            "network",
            "inspect",
            "-f",
            "{{json .IPAM.Options}}",
            "macnet"
        ]),
        "null\n"
    );
    r.ok(&["rm", "m"]);
    r.ok(&["network", "rm", "macnet"]);
}

/// `run -a`: only the streams asked for reach the client (the log keeps them all), through
/// the `ketch` CLI embedded and remote and the `docker` CLI; `-a stdin` with `-i` gives the
/// container the client's input; a stream that is none, or `-a` with `-d`, is refused.
#[test]
fn run_attaches_to_the_streams_asked_for() {
    let (r, d) = setup_both();
    let script = "echo to-out; echo to-err >&2";
    for who in ["ketch", "ketch -H", "docker"] {
        let run = |args: &[&str], input: &str| {
            let mut cmd = client(&r, &d, who);
            cmd.arg("run").args(args);
            cmd.stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            let mut child = cmd.spawn().unwrap();
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(input.as_bytes()).unwrap();
            drop(stdin);
            child.wait_with_output().unwrap()
        };
        let name = format!("a-{}", who.replace(' ', ""));
        let o = run(
            &[
                "--name",
                &name,
                "--network",
                "none",
                "-a",
                "STDOUT",
                "busybox",
                "sh",
                "-c",
                script,
            ],
            "",
        );
        assert!(o.status.success(), "{who}: {}", text(&o));
        assert_eq!(String::from_utf8_lossy(&o.stdout), "to-out\n", "{who}");
        assert!(
            !String::from_utf8_lossy(&o.stderr).contains("to-err"),
            "{who}: {}",
            text(&o)
        );
        let logs = d.docker(&["logs", &name]);
        assert!(
            text(&logs).contains("to-out") && text(&logs).contains("to-err"),
            "{who}: {}",
            text(&logs)
        );
        let o = run(
            &[
                "--rm",
                "--network",
                "none",
                "-a",
                "stderr",
                "busybox",
                "sh",
                "-c",
                script,
            ],
            "",
        );
        assert_eq!(String::from_utf8_lossy(&o.stdout), "", "{who}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("to-err"),
            "{who}: {}",
            text(&o)
        );
        let o = run(
            &[
                "--rm",
                "-i",
                "--network",
                "none",
                "-a",
                "stdin",
                "-a",
                "stdout",
                "busybox",
                "cat",
            ],
            "typed\n",
        );
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            "typed\n",
            "{who}: {}",
            text(&o)
        );
        let o = run(&["--rm", "-a", "stdwhat", "busybox", "true"], "");
        assert_eq!(o.status.code(), Some(125), "{who}: {}", text(&o));
        assert!(
            text(&o).contains("valid streams are STDIN, STDOUT and STDERR"),
            "{who}: {}",
            text(&o)
        );
        let o = run(&["-d", "-a", "stdout", "busybox", "true"], "");
        assert_eq!(o.status.code(), Some(1), "{who}: {}", text(&o));
        assert!(
            text(&o).contains("conflicting options: cannot specify both --attach and --detach"),
            "{who}: {}",
            text(&o)
        );
        r.ok(&["rm", &name]);
    }
    assert_eq!(r.ok(&["ps", "-aq"]), "");
}

/// `--sig-proxy`: a signal sent to an attached `run` (no terminal) reaches the container's
/// process, through the `ketch` CLI embedded and remote and the `docker` CLI; with
/// `--sig-proxy=false` it acts on the client alone, and the container runs on.
#[test]
fn signals_are_proxied_unless_told_not_to() {
    use std::os::unix::process::ExitStatusExt;
    let (r, d) = setup_both();
    let script = "trap 'echo got-usr1; exit 7' USR1; echo up; while :; do sleep 0.1; done";
    for who in ["ketch", "ketch -H", "docker"] {
        for proxy in [true, false] {
            let name = format!("sp-{}-{proxy}", who.replace(' ', ""));
            let out = r.dir.path().join(format!("{name}.out"));
            let mut cmd = client(&r, &d, who);
            cmd.args(["run", "--name", &name, "--network", "none"]);
            if !proxy {
                cmd.arg("--sig-proxy=false");
            }
            cmd.args(["busybox", "sh", "-c", script])
                .stdin(std::process::Stdio::null())
                .stdout(std::fs::File::create(&out).unwrap())
                .stderr(std::process::Stdio::null());
            let mut child = cmd.spawn().unwrap();
            wait_until("the container's first line", 20, || {
                std::fs::read_to_string(&out).is_ok_and(|t| t.contains("up"))
            });
            unsafe { libc::kill(child.id() as i32, libc::SIGUSR1) };
            if proxy {
                let status = child.wait().unwrap();
                let said = std::fs::read_to_string(&out).unwrap();
                assert_eq!(status.code(), Some(7), "{who}: {said}");
                assert!(said.contains("got-usr1"), "{who}: {said}");
            } else {
                // Not passed on: the client dies of it (ketch) or ignores it (docker); the
                // container runs on, untouched.
                std::thread::sleep(std::time::Duration::from_secs(1));
                let said = std::fs::read_to_string(&out).unwrap();
                assert!(!said.contains("got-usr1"), "{who}: {said}");
                assert_eq!(
                    r.ok(&["inspect", "-f", "{{.State.Running}}", &name]),
                    "true\n",
                    "{who}"
                );
                let _ = child.kill();
                let status = child.wait().unwrap();
                if who != "docker" {
                    assert_eq!(status.signal(), Some(libc::SIGUSR1), "{who}");
                }
            }
            r.ok(&["rm", "-f", &name]);
        }
    }
}

/// `network create` too does what it is given or refuses it by name: auxiliary addresses
/// are kept from the containers and shown; a second pool of a family, driver options,
/// swarm-only fields are refused, through the daemon and the `ketch` CLI.
#[test]
fn network_create_fields_are_done_or_refused() {
    let (r, d) = setup_both();
    let docker = |args: &[&str]| d.docker(args);
    let o = docker(&[
        "network",
        "create",
        "--subnet",
        "10.99.7.0/29",
        "--aux-address",
        "x=10.99.7.2",
        "--aux-address",
        "y=10.99.7.3",
        "auxnet",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let out = r.ok(&[
        "run",
        "--rm",
        "--network",
        "auxnet",
        "busybox",
        "ip",
        "-4",
        "addr",
        "show",
        "eth0",
    ]);
    assert!(out.contains("inet 10.99.7.4/29"), "{out}");
    let ipam = r.ok(&[
        "network",
        "inspect",
        "-f",
        "{{json .IPAM.Config}}",
        "auxnet",
    ]);
    assert!(
        ipam.contains("\"AuxiliaryAddresses\":{\"x\":\"10.99.7.2\",\"y\":\"10.99.7.3\"}"),
        "{ipam}"
    );
    let (code, err) = r.fails(&[
        "network",
        "create",
        "--subnet",
        "10.99.8.0/29",
        "--aux-address",
        "z=10.1.1.1",
        "bad",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("invalid auxiliary address z=10.1.1.1"),
        "{err}"
    );
    for (args, says) in [
        (
            &[
                "network",
                "create",
                "--subnet",
                "fd00:1::/64",
                "--subnet",
                "fd00:2::/64",
                "v6",
            ][..],
            "one IPAM pool per address family",
        ),
        (
            &[
                "network",
                "create",
                "-o",
                "com.docker.network.bridge.name=br9",
                "o1",
            ][..],
            "network option com.docker.network.bridge.name is not supported",
        ),
        (
            &["network", "create", "--ingress", "a1"][..],
            "Ingress is not supported",
        ),
        (
            &["network", "create", "--ipam-driver", "other", "i1"][..],
            "IPAM driver \"other\"",
        ),
    ] {
        let o = docker(args);
        assert!(!o.status.success(), "{args:?}");
        assert!(text(&o).contains(says), "{args:?}: {}", text(&o));
    }
    assert_eq!(r.ok(&["network", "ls", "-q", "--filter", "name=v6"]), "");
    // One name, one address: a second is refused, not kept in the first's place.
    let (code, err) = r.fails(&[
        "network",
        "create",
        "--subnet",
        "10.99.9.0/24",
        "--aux-address",
        "r=10.99.9.5",
        "--aux-address",
        "r=10.99.9.6",
        "dupaux",
    ]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("--aux-address r is given twice"), "{err}");
    r.ok(&["network", "rm", "auxnet"]);
}

/// IPv6 through the docker CLI and the `ketch` CLI embedded: `network create --ipv6` with
/// both pools, `run --ip6 --link-local-ip`, `network connect --ip6`; inspect shows what was
/// asked and what was given, `network ls` the IPv6 column.
#[test]
fn ipv6_networks_through_the_docker_cli() {
    let (r, d) = setup_both();
    let docker = |args: &[&str]| {
        let o = d.docker(args);
        assert!(o.status.success(), "docker {args:?}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    docker(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        "10.98.6.0/24",
        "--subnet",
        "fd98:6::/64",
        "--gateway",
        "fd98:6::fe",
        "--ip-range",
        "fd98:6::100/120",
        "dual",
    ]);
    let ipam = docker(&["network", "inspect", "-f", "{{json .IPAM.Config}}", "dual"]);
    for want in [
        r#""Subnet":"fd98:6::/64""#,
        r#""Gateway":"fd98:6::fe""#,
        r#""IPRange":"fd98:6::100/120""#,
    ] {
        assert!(ipam.contains(want), "{ipam}");
    }
    assert_eq!(
        docker(&[
            "network",
            "ls",
            "--filter",
            "name=dual",
            "--format",
            "{{.IPv6}}"
        ]),
        "true\n"
    );
    docker(&[
        "run",
        "-d",
        "--name",
        "d1",
        "--network",
        "dual",
        "--ip6",
        "fd98:6::1:5",
        "--link-local-ip",
        "169.254.9.9",
        "busybox",
        "sleep",
        "1000",
    ]);
    let f = "{{range .NetworkSettings.Networks}}{{.GlobalIPv6Address}} {{.IPv6Gateway}} {{json .IPAMConfig}}{{end}}";
    assert_eq!(
        docker(&["inspect", "-f", f, "d1"]),
        "fd98:6::1:5 fd98:6::fe {\"IPv6Address\":\"fd98:6::1:5\",\"LinkLocalIPs\":[\"169.254.9.9\"]}\n"
    );
    // The next free address of the range, through the ketch CLI.
    r.ok(&[
        "run",
        "-d",
        "--name",
        "d2",
        "--network",
        "dual",
        "busybox",
        "sleep",
        "1000",
    ]);
    let out = r.ok(&["exec", "d2", "ip", "-6", "addr", "show", "eth0"]);
    assert!(out.contains("inet6 fd98:6::100/64"), "{out}");
    let out = r.ok(&["exec", "d2", "ping", "-6", "-c", "1", "-W", "5", "d1"]);
    assert!(out.contains("from fd98:6::1:5"), "{out}");
    // Off and on again, with another address.
    docker(&["network", "disconnect", "dual", "d1"]);
    docker(&["network", "connect", "--ip6", "fd98:6::1:6", "dual", "d1"]);
    assert!(
        docker(&["inspect", "-f", f, "d1"]).starts_with("fd98:6::1:6 "),
        "{}",
        docker(&["inspect", "-f", f, "d1"])
    );
    docker(&["rm", "-f", "d1", "d2"]);
    docker(&["network", "rm", "dual"]);
}

/// Links on a user-defined network (`EndpointSettings.Links`, `network connect --link`):
/// the container's own name server answers the alias with the linked container's address,
/// also when that one starts later; other containers do not know the alias; inspect shows
/// the links; a link with a space is refused.
#[test]
fn links_on_a_user_network() {
    let (r, d) = setup_both();
    let docker = |args: &[&str]| {
        let o = d.docker(args);
        assert!(o.status.success(), "docker {args:?}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let ip_of = |c: &str, net: &str| {
        r.ok(&[
            "inspect",
            "-f",
            &format!("{{{{.NetworkSettings.Networks.{net}.IPAddress}}}}"),
            c,
        ])
        .trim()
        .to_string()
    };
    docker(&["network", "create", "lnet"]);
    docker(&[
        "create",
        "--name",
        "a",
        "--network",
        "lnet",
        "busybox",
        "sleep",
        "1000",
    ]);
    docker(&["network", "disconnect", "lnet", "a"]);
    docker(&["network", "connect", "--link", "upstream:bar", "lnet", "a"]);
    docker(&["start", "a"]);
    assert_eq!(
        docker(&[
            "inspect",
            "-f",
            "{{json .NetworkSettings.Networks.lnet.Links}}",
            "a"
        ]),
        "[\"upstream:bar\"]\n"
    );
    // Linked before it exists: answered once it runs.
    docker(&[
        "run",
        "-d",
        "--name",
        "upstream",
        "--network",
        "lnet",
        "busybox",
        "sleep",
        "1000",
    ]);
    let out = docker(&["exec", "a", "nslookup", "bar"]);
    assert!(
        out.contains(&format!("Address: {}", ip_of("upstream", "lnet"))),
        "{out}"
    );
    // The alias is the linking container's only.
    let o = r.run(&[
        "run",
        "--rm",
        "--network",
        "lnet",
        "busybox",
        "nslookup",
        "bar",
    ]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("NXDOMAIN"),
        "{o:?}"
    );
    // The ketch CLI, embedded: a link on a second network.
    r.ok(&["network", "create", "lnet2"]);
    r.ok(&["network", "connect", "lnet2", "upstream"]);
    r.ok(&["network", "connect", "--link", "upstream:up2", "lnet2", "a"]);
    let out = r.ok(&["exec", "a", "nslookup", "up2"]);
    assert!(
        out.contains(&format!("Address: {}", ip_of("upstream", "lnet2"))),
        "{out}"
    );
    assert_eq!(
        r.ok(&[
            "inspect",
            "-f",
            "{{json .NetworkSettings.Networks.lnet2.Links}}",
            "a"
        ]),
        "[\"upstream:up2\"]\n"
    );
    let (code, err) = r.fails(&[
        "network",
        "connect",
        "--link",
        "up stream:x",
        "lnet2",
        "upstream",
    ]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("invalid link"), "{err}");
    r.ok(&["rm", "-f", "a", "upstream"]);
    r.ok(&["network", "rm", "lnet", "lnet2"]);
}

/// Legacy links: the linked container's address under the alias in /etc/hosts, its
/// environment and ports as `ALIAS_*`, through both front doors; a link to a container that
/// does not run fails the start; `rm --link` takes the link away.
#[test]
fn legacy_links() {
    let (r, d) = setup_both();
    r.ok(&[
        "run", "-d", "--name", "db", "-e", "FOO=1", "--expose", "5432", "busybox", "sleep", "100",
    ]);
    let ip = r.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "db"]);
    let ip = ip.trim();
    for who in ["ketch", "docker"] {
        let args = [
            "run",
            "--rm",
            "--link",
            "db:database",
            "busybox",
            "sh",
            "-c",
            "grep database /etc/hosts; env | grep ^DATABASE_ | sort",
        ];
        let out = if who == "ketch" {
            r.ok(&args)
        } else {
            let o = d.docker(&args);
            assert!(o.status.success(), "{}", text(&o));
            String::from_utf8(o.stdout).unwrap()
        };
        assert!(out.starts_with(&format!("{ip}\tdatabase ")), "{who}: {out}");
        for want in [
            "DATABASE_ENV_FOO=1".to_string(),
            format!("DATABASE_PORT=tcp://{ip}:5432"),
            format!("DATABASE_PORT_5432_TCP_ADDR={ip}"),
        ] {
            assert!(out.lines().any(|l| l == want), "{who}: {want} in {out}");
        }
        assert!(out.contains("DATABASE_NAME=/"), "{who}: {out}");
    }
    r.ok(&[
        "create",
        "--name",
        "app",
        "--link",
        "db",
        "busybox",
        "cat",
        "/etc/hosts",
    ]);
    assert_eq!(
        r.ok(&["inspect", "-f", "{{json .HostConfig.Links}}", "app"]),
        "[\"/db:/app/db\"]\n"
    );
    r.ok(&["stop", "-t", "0", "db"]);
    let (code, err) = r.fails(&["start", "-a", "app"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("Cannot link to a non running container: /db AS /app/db"),
        "{err}"
    );
    let o = d.docker(&["rm", "--link", "/app/db"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        r.ok(&["inspect", "-f", "{{json .HostConfig.Links}}", "app"]),
        "null\n"
    );
    // Without the link it starts, and has no such name.
    let hosts = r.ok(&["start", "-a", "app"]);
    assert!(!hosts.contains("\tdb "), "{hosts}");
    let (code, err) = r.fails(&["create", "--link", "nosuch:x", "busybox"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("No such container: nosuch"), "{err}");
    let (_, err) = r.fails(&["create", "--network", "none", "--link", "db", "busybox"]);
    assert!(err.contains("links and the network mode"), "{err}");
    r.ok(&["rm", "-f", "app", "db"]);
}

/// A copy into or out of a stopped container sees its volumes where it has them, as
/// Docker's does; a volume's mount point that is a link in the image leads within the
/// container, never to the host.
#[test]
fn archives_of_stopped_containers_see_their_volumes() {
    let (r, d) = setup_both();
    r.ok(&[
        "create",
        "--name",
        "w",
        "-v",
        "/vol1",
        "busybox",
        "sh",
        "-c",
        "echo hi > /vol1/data.txt",
    ]);
    r.ok(&["start", "-a", "w"]);
    let out = r.ok(&["cp", "w:/vol1/data.txt", "-"]);
    assert!(out.contains("hi\n"), "{out}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.txt");
    std::fs::write(&file, "in\n").unwrap();
    r.ok(&[
        "create",
        "--name",
        "rd",
        "-v",
        "/vol2",
        "busybox",
        "cat",
        "/vol2/in.txt",
    ]);
    let o = d.docker(&["cp", file.to_str().unwrap(), "rd:/vol2/"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(r.ok(&["start", "-a", "rd"]), "in\n");
    // An image whose /evil leads up and out: the volume on /evil/v is made inside.
    r.ok(&[
        "run",
        "--name",
        "mk",
        "--network",
        "none",
        "busybox",
        "ln",
        "-s",
        "/../../../../../../../../tmp",
        "/evil",
    ]);
    r.ok(&["commit", "mk", "evil"]);
    let marker = format!("ketch-test-{}", ketch_tests::random_hex(6));
    r.ok(&[
        "create",
        "--name",
        "ev",
        "-v",
        &format!("/evil/{marker}"),
        "evil",
        "true",
    ]);
    r.ok(&["cp", file.to_str().unwrap(), &format!("ev:/evil/{marker}/")]);
    assert!(
        !Path::new("/tmp").join(&marker).exists(),
        "the host's /tmp was written"
    );
    assert_eq!(
        r.ok(&[
            "run",
            "--rm",
            "--volumes-from",
            "ev",
            "busybox",
            "cat",
            &format!("/evil/{marker}/in.txt")
        ]),
        "in\n"
    );
    r.ok(&["rm", "-v", "w", "rd", "mk", "ev"]);
}
