//! Helpers the container tests share: a root with the busybox fixture, looks at a
//! container's state, and the checks that nothing of a container is left.
// Each test file uses its own share of these.
#![allow(dead_code)]

use std::process::Command;

use ketch_tests::{Root, cgroup_mounts, wait_until};

pub fn setup() -> Root {
    let r = Root::new();
    r.busybox("busybox");
    r
}

/// Runs `ketch run --rm busybox sh -c SCRIPT`, requiring success; returns stdout.
pub fn sh(r: &Root, flags: &[&str], script: &str) -> String {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["busybox", "sh", "-c", script]);
    r.ok(&args)
}

/// A container's full ID.
pub fn id_of(r: &Root, name: &str) -> String {
    let id = r.ok(&["inspect", "-f", "{{.Id}}", name]).trim().to_string();
    assert_eq!(id.len(), 64, "{id:?}");
    id
}

pub fn status(r: &Root, name: &str) -> String {
    r.ok(&["inspect", "-f", "{{.State.Status}}", name])
        .trim()
        .to_string()
}

/// Requires that no cgroup is left of a `--rm` container, known by the short ID it saw as its
/// host name (its record, and with it the full ID, is gone).
pub fn no_cgroups_left_of_short(short: &str) {
    assert_eq!(short.len(), 12, "{short:?} is not a short ID");
    for (_, m) in cgroup_mounts() {
        let Ok(groups) = std::fs::read_dir(m.join("ketch")) else {
            // No `ketch` group in this hierarchy: nothing of any container is left there.
            continue;
        };
        for g in groups {
            let name = g.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                !name.starts_with(short),
                "{}/ketch/{name} left behind",
                m.display()
            );
        }
    }
}

/// Requires that no process of this root is left (monitors name their bundle under it).
pub fn no_processes_left(r: &Root) {
    let root = r.path().display().to_string();
    let mut left = String::new();
    wait_until("the root's processes to end", 30, || {
        let o = Command::new("pgrep").args(["-af", &root]).output().unwrap();
        left = String::from_utf8_lossy(&o.stdout).into_owned();
        left.is_empty()
    });
}

/// Whatever a removed container could leave: mounts, leases, bundles, processes.
pub fn nothing_left(r: &Root) {
    assert!(r.mounts().is_empty(), "{:?}", r.mounts());
    assert_eq!(r.count("leases"), 0, "a lease was left");
    assert!(
        r.entries("containers").is_empty(),
        "{:?}",
        r.entries("containers")
    );
    no_processes_left(r);
}

/// The CPU limit the container's monitor wrote, read back from its cgroup on whichever
/// layout the host has: (quota, period) in microseconds.
pub fn cpu_limit(id: &str) -> (u64, u64) {
    let mounts = cgroup_mounts();
    for (fstype, m) in &mounts {
        let dir = m.join("ketch").join(id);
        if fstype == "cgroup2" {
            if let Ok(max) = std::fs::read_to_string(dir.join("cpu.max")) {
                let (q, p) = max.trim().split_once(' ').unwrap();
                return (q.parse().unwrap(), p.parse().unwrap());
            }
        } else if let Ok(q) = std::fs::read_to_string(dir.join("cpu.cfs_quota_us")) {
            let p = std::fs::read_to_string(dir.join("cpu.cfs_period_us")).unwrap();
            return (q.trim().parse().unwrap(), p.trim().parse().unwrap());
        }
    }
    panic!("no cpu controller holds a group of {id}: {mounts:?}")
}

/// Waits until the container's log holds `text`.
pub fn wait_for_log(r: &Root, name: &str, text: &str) {
    wait_until(&format!("{text:?} in the log of {name}"), 30, || {
        r.ok(&["logs", name]).contains(text)
    });
}

/// A shell that says it got TERM and goes on, as a program that ignores it would.
pub const IGNORES_TERM: &str =
    "trap 'echo ignored TERM' TERM; echo ready; while true; do sleep 0.1; done";

/// The container's recorded state, as its monitor wrote it.
pub fn state_file(r: &Root, id: &str) -> serde_json::Value {
    serde_json::from_slice(
        &std::fs::read(r.path().join("containers").join(id).join("state.json")).unwrap(),
    )
    .unwrap()
}

/// A pidfd for `pid`.
pub fn pidfd(pid: i32) -> std::os::fd::OwnedFd {
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    assert!(
        fd >= 0,
        "pidfd_open {pid}: {}",
        std::io::Error::last_os_error()
    );
    unsafe { std::os::fd::FromRawFd::from_raw_fd(fd as i32) }
}

/// Whether the process behind a pidfd has ended (readable once it has, zombie or reaped).
pub fn exited(fd: &std::os::fd::OwnedFd) -> bool {
    use std::os::fd::AsRawFd;
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    (unsafe { libc::poll(&mut p, 1, 0) }) == 1
}
