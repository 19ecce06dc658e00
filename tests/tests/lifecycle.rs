//! Containers whose drivers are killed or signalled: `ketch run`, a monitor or `ketch stop`
//! killed at a point the test controls, `ketch kill -s`, and how `ketch` finds its shim.

mod common;

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::*;
use ketch_tests::hostile::Reaped;
use ketch_tests::{Root, no_cgroups_left, wait_until};

#[test]
fn killing_the_monitor_ends_the_container() {
    let r = setup();
    let id = r
        .ok(&["run", "-d", "busybox", "sleep", "1000"])
        .trim()
        .to_string();
    let state = state_file(&r, &id);
    let shim = state["ShimPid"].as_i64().unwrap() as i32;
    let pid = state["Pid"].as_i64().unwrap() as i32;
    // Held by pidfd, so that the check below can never look at a reused PID.
    let task = pidfd(pid);
    unsafe { libc::kill(shim, libc::SIGKILL) };
    wait_until(
        "the container's process to die with its monitor",
        30,
        || exited(&task),
    );
    assert_eq!(status(&r, &id), "exited");
    assert_eq!(
        r.ok(&["inspect", "-f", "{{.State.ExitCode}}", &id]).trim(),
        "137"
    );
    assert_eq!(r.ok(&["ps", "-q"]), "");
    r.ok(&["rm", &id]);
    no_cgroups_left(&id);
    nothing_left(&r);
}

/// `ketch run -d --name NAME` held at a point the test controls: the container's setup,
/// inside its namespaces and cgroups, reads its `/etc/passwd` (to resolve the user) from a
/// FIFO bound there, which the test holds open and silent; meanwhile `run` waits for the
/// monitor to report the start.
struct HeldStart {
    cli: Option<Child>,
    /// The FIFO's writing end: the setup reads on until it is written to or closed.
    passwd: Option<File>,
    fifo: PathBuf,
    id: String,
}

impl HeldStart {
    fn new(r: &Root, name: &str, script: &str) -> HeldStart {
        let fifo = r.dir.path().join(format!("{name}.passwd"));
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let bind = format!("{}:/etc/passwd", fifo.display());
        let cli = r
            .cmd()
            .args([
                "run",
                "-d",
                "--name",
                name,
                "--network",
                "none",
                "-v",
                &bind,
            ])
            .args(["busybox", "sh", "-c", script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut held = HeldStart {
            cli: Some(cli),
            passwd: None,
            fifo,
            id: String::new(),
        };
        // Opening the writing end without blocking fails (ENXIO) until a reader has it open.
        wait_until("the container's setup to open its /etc/passwd", 60, || {
            match std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&held.fifo)
            {
                Ok(f) => {
                    held.passwd = Some(f);
                    true
                }
                Err(e) if e.raw_os_error() == Some(libc::ENXIO) => false,
                Err(e) => panic!("open {}: {e}", held.fifo.display()),
            }
        });
        let cli = held.cli.as_mut().unwrap();
        assert!(
            cli.try_wait().unwrap().is_none(),
            "run returned before its container's setup was done"
        );
        held.id = id_of(r, name);
        held
    }

    /// The container's monitor: the `ketch-shim` that names its bundle.
    fn monitor(&self, r: &Root) -> i32 {
        let bundle = r.path().join("containers").join(&self.id);
        let bundle = bundle.to_str().unwrap();
        let found: Vec<i32> = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                    return false;
                };
                let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
                args[0].ends_with(b"ketch-shim") && args.contains(&bundle.as_bytes())
            })
            .collect();
        assert_eq!(found.len(), 1, "monitors of {bundle}: {found:?}");
        found[0]
    }
}

impl Drop for HeldStart {
    fn drop(&mut self) {
        // The setup goes on (and the container's removal can take it), the command ends.
        self.passwd.take();
        if let Some(mut cli) = self.cli.take() {
            let _ = cli.kill();
            let _ = cli.wait();
        }
    }
}

/// A detached container's monitor leaves its starter's session and process group: what
/// ends those (a terminal's hangup, Ctrl-C, a kill of the whole group) does not reach it.
#[test]
fn a_detached_monitor_leaves_its_starters_session() {
    let r = setup();
    let base = r.cmd();
    let out = r.dir.path().join("id");
    // `run -d` from a shell that leads a session of its own, which then kills its group.
    let mut c = Command::new("setsid");
    c.args([
        "-w",
        "sh",
        "-c",
        r#"out=$1; shift; "$@" > "$out"; kill -KILL 0"#,
        "sh",
    ])
    .arg(&out)
    .arg(base.get_program())
    .args(base.get_args())
    .args(["run", "-d", "busybox", "sleep", "1000"])
    .stdin(Stdio::null());
    for (k, v) in base.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    let status = c.status().unwrap();
    assert_eq!(status.code(), None, "the group was killed: {status:?}");
    let id = std::fs::read_to_string(&out).unwrap().trim().to_string();
    assert_eq!(id.len(), 64, "{id:?}");
    let shim = state_file(&r, &id)["ShimPid"].as_i64().unwrap() as i32;
    let session = |pid: i32| -> Option<String> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // After the command's name in parentheses: state, ppid, pgrp, session.
        stat.rsplit_once(") ")?
            .1
            .split(' ')
            .nth(3)
            .map(str::to_string)
    };
    assert_eq!(
        session(shim),
        Some(shim.to_string()),
        "the monitor leads its own session"
    );
    assert_eq!(
        r.ok(&["inspect", "-f", "{{.State.Status}}", &id]).trim(),
        "running"
    );
    r.ok(&["stop", "-t", "1", &id]);
    assert_eq!(r.ok(&["wait", &id]).trim(), "137");
    r.ok(&["rm", &id]);
}

#[test]
fn killing_run_while_its_container_starts_leaves_the_start_to_the_monitor() {
    let r = setup();
    let mut held = HeldStart::new(&r, "mid", "echo up; exec sleep 1000");
    let mut cli = held.cli.take().unwrap();
    cli.kill().unwrap();
    cli.wait().unwrap();
    // Nothing of the container runs yet.
    assert_eq!(status(&r, "mid"), "created");
    // Its setup goes on without the command that asked for it: the container runs, and
    // is whole.
    let mut passwd = held.passwd.take().unwrap();
    passwd
        .write_all(b"root:x:0:0:root:/root:/bin/sh\n")
        .unwrap();
    drop(passwd);
    wait_until("mid to run", 60, || status(&r, "mid") == "running");
    wait_for_log(&r, "mid", "up");
    let pid: i32 = r
        .ok(&["inspect", "-f", "{{.State.Pid}}", "mid"])
        .trim()
        .parse()
        .unwrap();
    let task = pidfd(pid);
    assert!(!exited(&task), "mid is listed as running without a process");
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap(),
        "sleep\x001000\x00"
    );
    r.ok(&["rm", "-f", "mid"]);
    assert!(exited(&task));
    no_cgroups_left(&held.id);
    nothing_left(&r);
}

#[test]
fn killing_the_monitor_while_its_container_starts_leaves_nothing_behind() {
    let r = setup();
    let mut held = HeldStart::new(&r, "mid", "echo up; exec sleep 1000");
    let monitor = held.monitor(&r);
    unsafe { libc::kill(monitor, libc::SIGKILL) };
    // The command that asked for the start says it failed.
    let o = held.cli.take().unwrap().wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(125), "{err}");
    assert!(
        err.contains("ketch-shim exited without starting the process"),
        "{err}"
    );
    // The setup dies with its monitor: the FIFO loses its reader.
    let passwd = held.passwd.as_mut().unwrap();
    wait_until(
        "the container's setup to die with its monitor",
        60,
        || match passwd.write(b"\n") {
            Ok(_) => false,
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => true,
            Err(e) => panic!("write to the FIFO: {e}"),
        },
    );
    // It never ran.
    assert_eq!(status(&r, "mid"), "created");
    assert!(r.ok(&["logs", "mid"]).is_empty());
    // Removed like any container that does not run; its cgroups go with it.
    r.ok(&["rm", "mid"]);
    no_cgroups_left(&held.id);
    nothing_left(&r);
}

/// A container whose monitor is still setting it up is listed as created, but is not a
/// record alone: `rm` refuses it, `container prune` passes it by, and `rm -f` ends the start
/// and everything it made.
#[test]
fn removing_a_container_while_it_starts_leaves_nothing_running() {
    let r = setup();
    let held = HeldStart::new(&r, "mid", "echo up; exec sleep 1000");
    let monitor = pidfd(held.monitor(&r));
    assert_eq!(status(&r, "mid"), "created");
    let (code, err) = r.fails(&["rm", "mid"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("cannot remove container \"/mid\": container is starting"),
        "{err}"
    );
    assert_eq!(
        r.ok(&["container", "prune", "-f"]),
        "Total reclaimed space: 0B\n"
    );
    assert_eq!(status(&r, "mid"), "created");
    assert!(!exited(&monitor), "the monitor ended before rm -f");
    r.ok(&["rm", "-f", "mid"]);
    // The monitor and the setup it was running are gone, and so is every cgroup.
    assert!(exited(&monitor), "the monitor outlived rm -f");
    let (code, err) = r.fails(&["inspect", "mid"]);
    assert_eq!(code, 1, "{err}");
    no_cgroups_left(&held.id);
    nothing_left(&r);
    drop(held);
}

#[test]
fn killing_stop_while_it_waits_leaves_the_container_running() {
    let r = setup();
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
    let id = id_of(&r, "stubborn");
    wait_for_log(&r, "stubborn", "ready");
    let mut stop = Reaped(
        r.cmd()
            .args(["stop", "-t", "600", "stubborn"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // stop has sent TERM and waits out its 600 seconds: killed there.
    wait_for_log(&r, "stubborn", "ignored TERM");
    assert!(stop.0.try_wait().unwrap().is_none(), "stop returned early");
    stop.0.kill().unwrap();
    stop.0.wait().unwrap();
    // The container runs on as it was, and stops as any other.
    assert_eq!(status(&r, "stubborn"), "running");
    let pid: i32 = r
        .ok(&["inspect", "-f", "{{.State.Pid}}", "stubborn"])
        .trim()
        .parse()
        .unwrap();
    let task = pidfd(pid);
    assert!(!exited(&task));
    r.ok(&["kill", "stubborn"]);
    wait_until("stubborn to end", 30, || exited(&task));
    r.ok(&["wait", "stubborn"]);
    assert_eq!(r.ok(&["logs", "stubborn"]), "ready\nignored TERM\n");
    assert_eq!(
        r.ok(&["inspect", "-f", "{{.State.ExitCode}}", "stubborn"])
            .trim(),
        "137"
    );
    r.ok(&["rm", "stubborn"]);
    no_cgroups_left(&id);
    nothing_left(&r);
}

#[test]
fn kill_sends_the_signal_it_names() {
    let r = setup();
    // A handler for each signal but KILL, which it cannot have; it says which it got.
    let script = "for s in HUP INT USR1 USR2; do trap \"echo got $s\" $s; done; \
                  echo ready; while true; do sleep 0.1; done";
    r.ok(&["run", "-d", "--name", "sig", "busybox", "sh", "-c", script]);
    let id = id_of(&r, "sig");
    wait_for_log(&r, "sig", "ready");
    let usr2 = libc::SIGUSR2.to_string();
    // By name, with or without SIG, in any case, or by number; -s or --signal.
    let sent = [
        (["-s", "HUP"], "got HUP"),
        (["--signal", "SIGUSR1"], "got USR1"),
        (["-s", usr2.as_str()], "got USR2"),
        (["-s", "int"], "got INT"),
    ];
    let mut want = String::from("ready\n");
    for (flags, got) in sent {
        assert_eq!(r.ok(&["kill", flags[0], flags[1], "sig"]), "sig\n");
        want += got;
        want += "\n";
        wait_until(&format!("{got:?} after kill {flags:?}"), 30, || {
            r.ok(&["logs", "sig"]) == want
        });
    }
    assert_eq!(status(&r, "sig"), "running");
    let (code, err) = r.fails(&["kill", "-s", "BOGUS", "sig"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("invalid signal: BOGUS"), "{err}");
    // Without -s: KILL, which no handler sees.
    r.ok(&["kill", "sig"]);
    assert_eq!(r.ok(&["wait", "sig"]), "137\n");
    assert_eq!(r.ok(&["logs", "sig"]), want);
    let (code, err) = r.fails(&["kill", "-s", "HUP", "sig"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is not running"), "{err}");
    r.ok(&["rm", "sig"]);
    no_cgroups_left(&id);
    nothing_left(&r);
}

/// A container does not inherit the signals its engine ignores: `nohup ketch run ...` (SIGHUP
/// ignored) and the Rust runtime's own SIGPIPE leave nothing ignored in the container, so a
/// shell can trap SIGHUP (POSIX ignores the trap of a signal ignored at the shell's start).
#[test]
fn signals_the_engine_ignores_are_not_the_containers() {
    let r = setup();
    let ignoring = |args: &[&str]| {
        let mut cmd = r.cmd();
        cmd.args(args);
        // SAFETY: async-signal-safe calls only, between fork and exec.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                for sig in [libc::SIGHUP, libc::SIGPIPE, libc::SIGUSR1] {
                    libc::signal(sig, libc::SIG_IGN);
                }
                Ok(())
            });
        }
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{args:?}: {o:?}");
        String::from_utf8(o.stdout).unwrap()
    };
    let none = "SigIgn:\t0000000000000000\n";
    let status = ["grep", "SigIgn", "/proc/self/status"];
    for flags in [&["--network", "none"][..], &["--network", "none", "--init"]] {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(flags);
        args.push("busybox");
        assert_eq!(
            ignoring(&[&args[..], &status[..]].concat()),
            none,
            "{flags:?}"
        );
        let trap = [
            "sh",
            "-c",
            "trap 'echo got HUP' HUP; kill -HUP $$; echo after",
        ];
        assert_eq!(
            ignoring(&[&args[..], &trap[..]].concat()),
            "got HUP\nafter\n",
            "{flags:?}"
        );
    }
    r.ok(&[
        "run",
        "-d",
        "--name",
        "e",
        "--network",
        "none",
        "busybox",
        "sleep",
        "1000",
    ]);
    let id = id_of(&r, "e");
    assert_eq!(ignoring(&[&["exec", "e"][..], &status[..]].concat()), none);
    r.ok(&["rm", "-f", "e"]);
    no_cgroups_left(&id);
    nothing_left(&r);
}

/// `ketch` on its own in a directory of `dir`, found at the path it was run by (a hard link
/// where the file system allows one), with no `ketch-shim` beside it.
fn ketch_alone(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let ketch = bin.join("ketch");
    if std::fs::hard_link(ketch_tests::ketch_bin(), &ketch).is_err() {
        std::fs::copy(ketch_tests::ketch_bin(), &ketch).unwrap();
    }
    ketch
}

/// The `ketch-shim` built beside the `ketch` under test, put into `dir` alone.
fn shim_in(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let shim = dir.join("ketch-shim");
    let built = ketch_tests::ketch_bin()
        .parent()
        .unwrap()
        .join("ketch-shim");
    if std::fs::hard_link(&built, &shim).is_err() {
        std::fs::copy(&built, &shim).unwrap();
    }
    shim
}

/// `ketch` at `ketch` on this root, with `path` as its `PATH` and no `KETCH_SHIM`.
fn ketch_at(r: &Root, ketch: &Path, path: &str) -> Command {
    let mut c = Command::new(ketch);
    c.arg("--root")
        .arg(r.path())
        .env_remove("KETCH_ROOT")
        .env_remove("KETCH_STORAGE_DRIVER")
        .env_remove("KETCH_SHIM")
        .env("KETCH_BRIDGE", &r.bridge)
        .env("KETCH_IP_FORWARD", "false")
        .env("PATH", path)
        .stdin(Stdio::null());
    c
}

/// The executable a container's monitor runs.
fn monitor_exe(r: &Root, id: &str) -> PathBuf {
    let shim = state_file(r, id)["ShimPid"].as_i64().unwrap();
    std::fs::read_link(format!("/proc/{shim}/exe")).unwrap()
}

#[test]
fn the_shim_is_found_on_path_or_at_ketch_shim() {
    let r = setup();
    let ketch = ketch_alone(r.dir.path());
    // PATH holds the shim and nothing else: no system-wide install can stand in for it.
    let on_path = shim_in(&r.dir.path().join("on-path"));
    let path = on_path.parent().unwrap().to_str().unwrap().to_string();
    let o = ketch_at(&r, &ketch, &path)
        .args(["run", "-d", "--network", "none", "busybox", "sleep", "1000"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let id = String::from_utf8(o.stdout).unwrap().trim().to_string();
    assert_eq!(monitor_exe(&r, &id), on_path);
    // KETCH_SHIM comes first.
    let named = shim_in(&r.dir.path().join("named"));
    let o = ketch_at(&r, &ketch, &path)
        .env("KETCH_SHIM", &named)
        .args(["run", "-d", "--network", "none", "busybox", "sleep", "1000"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let id2 = String::from_utf8(o.stdout).unwrap().trim().to_string();
    assert_eq!(monitor_exe(&r, &id2), named);
    r.ok(&["rm", "-f", &id, &id2]);
    no_cgroups_left(&id);
    no_cgroups_left(&id2);
    nothing_left(&r);
}

#[test]
fn without_a_shim_run_says_where_it_looks() {
    let r = setup();
    let ketch = ketch_alone(r.dir.path());
    // A PATH with no shim on it, whatever the host has installed.
    let empty = r.dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let o = ketch_at(&r, &ketch, empty.to_str().unwrap())
        .args(["run", "--rm", "--network", "none", "busybox", "true"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(125), "{err}");
    assert!(
        err.contains(
            "cannot find ketch-shim: set KETCH_SHIM, or install it beside ketch or on PATH"
        ),
        "{err}"
    );
    assert_eq!(r.ok(&["ps", "-aq"]), "");
    nothing_left(&r);
}
