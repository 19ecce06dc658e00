//! What a container is kept from, looked at from both sides: the host's namespaces (each
//! container has its own pid, mount, uts, ipc, net and cgroup namespaces), and the `/proc`
//! and `/sys` paths Docker masks or makes read-only.

mod common;

use common::{setup, sh};
use ketch_tests::{Root, no_cgroups_left};

/// Starts `busybox sleep 1000` detached under `name`; returns (ID, PID).
fn sleeper(r: &Root, name: &str, flags: &[&str]) -> (String, i32) {
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["busybox", "sleep", "1000"]);
    let id = r.ok(&args).trim().to_string();
    let pid = r
        .ok(&["inspect", "-f", "{{.State.Pid}}", name])
        .trim()
        .parse()
        .unwrap();
    (id, pid)
}

/// The namespace of `kind` that process `pid` is in, as the kernel names it.
fn ns(pid: i32, kind: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .unwrap()
        .display()
        .to_string()
}

/// The namespaces a container has of its own.
const OWN: [&str; 6] = ["pid", "mnt", "uts", "ipc", "net", "cgroup"];

#[test]
fn each_container_has_namespaces_of_its_own() {
    let r = setup();
    let (a, pa) = sleeper(&r, "a", &[]);
    let (b, pb) = sleeper(&r, "b", &[]);
    // This test runs in the host's namespaces.
    let me = std::process::id() as i32;
    for kind in OWN {
        let (host, in_a, in_b) = (ns(me, kind), ns(pa, kind), ns(pb, kind));
        assert_ne!(in_a, host, "a shares the host's {kind} namespace");
        assert_ne!(in_a, in_b, "a and b share a {kind} namespace");
    }
    // --network host shares the host's network namespace, container:a a's; nothing else.
    let (h, ph) = sleeper(&r, "h", &["--network", "host"]);
    let (c, pc) = sleeper(&r, "c", &["--network", "container:a"]);
    for kind in OWN {
        if kind == "net" {
            assert_eq!(ns(ph, kind), ns(me, kind), "--network host");
            assert_eq!(ns(pc, kind), ns(pa, kind), "--network container:a");
        } else {
            assert_ne!(ns(ph, kind), ns(me, kind), "h shares the host's {kind}");
            assert_ne!(ns(pc, kind), ns(pa, kind), "c shares a's {kind}");
        }
    }
    r.ok(&["rm", "-f", "a", "b", "h", "c"]);
    for id in [a, b, h, c] {
        no_cgroups_left(&id);
    }
}

/// A System V shared memory segment on the host, removed when dropped.
struct Segment(i32);

impl Drop for Segment {
    fn drop(&mut self) {
        unsafe { libc::shmctl(self.0, libc::IPC_RMID, std::ptr::null_mut()) };
    }
}

/// The shmids listed in a `/proc/sysvipc/shm` (its second column).
fn shmids(listing: &str) -> Vec<String> {
    listing
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_hosts_ipc_objects_are_out_of_sight() {
    let r = setup();
    let key = i32::from_str_radix(&ketch_tests::random_hex(3), 16).unwrap() + 1;
    let id = unsafe { libc::shmget(key, 4096, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) };
    assert!(id >= 0, "shmget: {}", std::io::Error::last_os_error());
    let _segment = Segment(id);
    let host = std::fs::read_to_string("/proc/sysvipc/shm").unwrap();
    assert!(shmids(&host).contains(&id.to_string()), "{host}");
    // The container's own IPC namespace starts empty.
    let inside = sh(&r, &[], "cat /proc/sysvipc/shm");
    assert!(inside.starts_with("       key      shmid"), "{inside}");
    assert_eq!(shmids(&inside), Vec::<String>::new(), "{inside}");
}

#[test]
fn the_cgroup_namespace_is_rooted_at_the_containers_cgroups() {
    let r = setup();
    r.ok(&[
        "run",
        "-d",
        "--name",
        "cg",
        "busybox",
        "sh",
        "-c",
        "cat /proc/self/cgroup; exec sleep 1000",
    ]);
    let id = r.ok(&["inspect", "-f", "{{.Id}}", "cg"]).trim().to_string();
    let pid: i32 = r
        .ok(&["inspect", "-f", "{{.State.Pid}}", "cg"])
        .trim()
        .parse()
        .unwrap();
    let mut inside = String::new();
    ketch_tests::wait_until("cg to list its cgroups", 30, || {
        inside = r.ok(&["logs", "cg"]);
        inside.contains("0::")
    });
    // From the host: under ketch/<id> in the hierarchies it is placed in.
    let outside = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let own = format!("/ketch/{id}");
    assert!(
        outside.lines().filter(|l| l.ends_with(&own)).count() >= 1,
        "{outside}"
    );
    // From the inside: each hierarchy, the same as seen from the host, rooted at "/".
    let hierarchies = |s: &str| -> Vec<String> {
        s.lines()
            .map(|l| l.rsplit_once(':').unwrap().0.to_string())
            .collect()
    };
    assert_eq!(hierarchies(&inside), hierarchies(&outside), "{inside}");
    for line in inside.lines() {
        assert!(line.ends_with(":/"), "{line} in {inside}");
    }
    r.ok(&["rm", "-f", "cg"]);
    no_cgroups_left(&id);
}

/// Docker's masked paths, as the engine's spec names them (core/src/runtime/spec.rs).
const MASKED: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only paths.
const READONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Of those, what every Linux kernel has: these must be there to look at.
const ALWAYS_THERE: &[&str] = &[
    "/proc/keys",
    "/proc/timer_list",
    "/sys/firmware",
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
];

/// What the paths look like from inside a container run with `flags`, one line per path:
/// `PATH missing`, `PATH dir ENTRIES WRITE` or `PATH file TYPE MAJOR:MINOR BYTES`, where
/// WRITE is what creating a file in the directory says.
fn masked_view(r: &Root, flags: &[&str]) -> Vec<String> {
    let script = format!(
        "for p in {}; do \
           if [ -d $p ]; then \
             echo \"$p dir $(ls -A $p | wc -l) $( (touch $p/.ketch-test) 2>&1)\"; \
           elif [ -e $p ]; then \
             echo \"$p file $(stat -c '%F %t:%T' $p) $(head -c 4096 $p | wc -c)\"; \
           else echo \"$p missing\"; fi; \
         done",
        MASKED.join(" ")
    );
    sh(r, flags, &script).lines().map(str::to_string).collect()
}

#[test]
fn masked_paths_show_nothing() {
    let r = setup();
    for p in ALWAYS_THERE {
        assert!(
            std::path::Path::new(p).exists(),
            "{p} is missing on this host: every Linux kernel has it"
        );
    }
    let view = masked_view(&r, &[]);
    assert_eq!(view.len(), MASKED.len(), "{view:?}");
    for (p, seen) in MASKED.iter().zip(&view) {
        let host = std::fs::symlink_metadata(p);
        let seen = seen
            .strip_prefix(&format!("{p} "))
            .unwrap_or_else(|| panic!("{seen}"));
        match host {
            // Not on this kernel: nothing is made in its place either.
            Err(_) => assert_eq!(seen, "missing", "{p}"),
            // A directory: an empty read-only tmpfs over it.
            Ok(m) if m.is_dir() => assert_eq!(
                seen,
                format!("dir 0 touch: {p}/.ketch-test: Read-only file system"),
                "{p}"
            ),
            // A file: the host's /dev/null bound over it, which reads as nothing.
            Ok(_) => assert_eq!(seen, "file character special file 1:3 0", "{p}"),
        }
    }
    // A privileged container has none: the timer list reads as it does on the host.
    let view = masked_view(&r, &["--privileged"]);
    let timer_list = view
        .iter()
        .find(|l| l.starts_with("/proc/timer_list "))
        .unwrap();
    let bytes: u64 = timer_list.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(
        timer_list.starts_with("/proc/timer_list file regular") && bytes > 0,
        "{timer_list}"
    );
}

#[test]
fn read_only_paths_refuse_writes() {
    let r = setup();
    for p in ALWAYS_THERE {
        assert!(
            std::path::Path::new(p).exists(),
            "{p} is missing on this host: every Linux kernel has it"
        );
    }
    // Each path, or the first file below a directory, opened to write (`: >>` writes no
    // byte, so a path that is not read-only is left as it was).
    let script = format!(
        "for p in {}; do \
           if [ ! -e $p ]; then echo \"$p missing\"; continue; fi; \
           f=$p; [ -d $p ] && f=$(find $p -type f | head -n 1); \
           if [ -z \"$f\" ]; then echo \"$p nofile\"; continue; fi; \
           echo \"$p $( (: >> $f) 2>&1 || true)\"; \
         done",
        READONLY.join(" ")
    );
    let view: Vec<String> = sh(&r, &[], &script).lines().map(str::to_string).collect();
    assert_eq!(view.len(), READONLY.len(), "{view:?}");
    for (p, seen) in READONLY.iter().zip(&view) {
        let seen = seen
            .strip_prefix(&format!("{p} "))
            .unwrap_or_else(|| panic!("{seen}"));
        if std::path::Path::new(p).exists() {
            assert!(
                seen.starts_with("sh: can't create ") && seen.ends_with(": Read-only file system"),
                "{p}: {seen}"
            );
        } else {
            assert_eq!(seen, "missing", "{p}");
        }
    }
    // /sys as a whole is read-only too.
    let (code, err) = r.fails(&["run", "--rm", "busybox", "touch", "/sys/kernel/x"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("Read-only file system"), "{err}");
}
