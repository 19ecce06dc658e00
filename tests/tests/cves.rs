//! The published escapes of runc, crun and Docker, each replayed from inside a container as
//! its attacker would, through the CLI and through the daemon; afterwards the host is
//! checked unchanged. Escapes already attacked in `escapes.rs` are named in the README's
//! table and not repeated here.

use std::path::Path;
use std::time::{Duration, Instant};

use ketch_tests::hostile::{
    E, Front, Setting, both, entries, host_dir, hostile_image, text, wait_until,
};
use ketch_tests::{Root, ketch_bin, random_hex};

/// Removes containers and volumes on drop, also when a test fails half-way.
struct Made<'a> {
    f: &'a Front<'a>,
    containers: Vec<String>,
    volumes: Vec<String>,
}

impl<'a> Made<'a> {
    fn new(f: &'a Front<'a>) -> Self {
        Made {
            f,
            containers: Vec::new(),
            volumes: Vec::new(),
        }
    }

    /// A unique name, removed at the end.
    fn container(&mut self, prefix: &str) -> String {
        let n = format!("{prefix}-{}", random_hex(4));
        self.containers.push(n.clone());
        n
    }

    fn volume(&mut self) -> String {
        let n = format!("v{}", random_hex(5));
        self.f.ok(&["volume", "create", &n]);
        self.volumes.push(n.clone());
        n
    }
}

impl Drop for Made<'_> {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = self.f.run(&["rm", "-f", c]);
        }
        for v in &self.volumes {
            let _ = self.f.run(&["volume", "rm", "-f", v]);
        }
    }
}

/// CVE-2019-5736: an image whose programs start `#!/proc/self/exe` makes the kernel run
/// whatever executable started them, the runtime's own, as a process of the container;
/// another process there then reopens `/proc/PID/exe` for writing (at once, and through a
/// handle it keeps after that process ends) to overwrite the host's binary. Replayed through
/// `exec` (the program named, and one found on `PATH`) while a process of the container
/// watches, and as a container's first program; the host's `ketch-shim` and `ketch` stay
/// byte for byte as they were.
#[test]
fn cve_2019_5736_proc_self_exe_cannot_overwrite_the_runtime() {
    let r = Root::new();
    let script = b"#!/proc/self/exe\n";
    hostile_image(
        &r,
        "selfexe",
        &[
            E::File("evil", script, 0o755),
            E::File("bin/sh2", script, 0o755),
        ],
        &[],
    );
    let shim = ketch_bin().parent().unwrap().join("ketch-shim");
    let binaries = [shim, ketch_bin()];
    let before: Vec<Vec<u8>> = binaries.iter().map(|b| std::fs::read(b).unwrap()).collect();
    both(&r, |f| {
        let mut m = Made::new(f);
        let a = m.container("grab");
        f.ok(&[
            "run",
            "-d",
            "--name",
            &a,
            "selfexe",
            "escape-helper",
            "exe-grab",
            "ketch",
            "5",
        ]);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            for o in [
                f.run(&["exec", &a, "/evil"]),
                f.run(&["exec", &a, "sh2", "-c", "true"]),
                f.run(&["run", "--rm", "selfexe", "/evil"]),
            ] {
                // The runtime's binary never runs as the program (it would name itself:
                // "ketch-shim: no report pipe..."): at most its sealed copy, which the
                // kernel will not even open from inside the container.
                assert!(
                    !text(&o).contains("ketch-shim"),
                    "{}: the runtime ran in the container: {}",
                    f.name(),
                    text(&o)
                );
            }
        }
        f.run(&["wait", &a]);
        let log = f.ok(&["logs", &a]);
        assert!(!log.contains("wrote"), "{}: {log}", f.name());
        // A write refused only because the file is being run (ETXTBSY) reached the host's
        // file: luck, not a defence.
        assert!(
            !log.lines()
                .any(|l| l.starts_with("refused") && l.ends_with(" errno 26")),
            "{}: the host's binary was reachable: {log}",
            f.name()
        );
        assert!(
            log.contains("held "),
            "{}: the attack did not run: {log}",
            f.name()
        );
    });
    for (b, old) in binaries.iter().zip(&before) {
        assert!(std::fs::read(b).unwrap() == *old, "{} changed", b.display());
    }
}

/// CVE-2021-30465: a mount's destination swapped for a symlink while the runtime mounts.
/// Two containers share a volume; one keeps exchanging a directory in it with a link to `/`
/// (and to a host directory), the other starts again and again with the volume and a tmpfs
/// whose destination lies inside that directory. Every start that succeeds has its tmpfs
/// inside its own root; nothing is ever made on the host.
#[test]
fn cve_2021_30465_mount_destinations_swapped_for_links_stay_inside() {
    let r = Root::new();
    hostile_image(&r, "swapper", &[], &[]);
    let outside = host_dir(&r, "host-mnt");
    both(&r, |f| {
        let mut m = Made::new(f);
        let vol = m.volume();
        let leaf = format!("m{}", random_hex(4));
        for target in ["/", outside.to_str().unwrap()] {
            let a = m.container("swap");
            let swap = format!(
                "mkdir -p /vol/d && ln -sfn {target} /vol/l && touch /tmp/ready && \
                 exec escape-helper exchange /vol/d /vol/l 4"
            );
            let volume = format!("{vol}:/vol");
            f.ok(&[
                "run", "-d", "--name", &a, "-v", &volume, "swapper", "sh", "-c", &swap,
            ]);
            wait_until("the swapper", 20, || {
                f.run(&["exec", &a, "test", "-e", "/tmp/ready"])
                    .status
                    .success()
            });
            let tmpfs = format!("/vol/d/{leaf}:size=2052k");
            let deadline = Instant::now() + Duration::from_secs(3);
            let mut started = 0;
            while Instant::now() < deadline {
                let o = f.run(&[
                    "run",
                    "--rm",
                    "-v",
                    &volume,
                    "--tmpfs",
                    &tmpfs,
                    "swapper",
                    "sh",
                    "-c",
                    "grep size=2052k /proc/self/mountinfo; test -x /bin/busybox && echo root-intact",
                ]);
                let out = text(&o);
                if o.status.success() {
                    started += 1;
                    assert!(
                        out.contains("size=2052k") && out.contains("root-intact"),
                        "{}: the tmpfs is not inside the root: {out}",
                        f.name()
                    );
                    let line = out.lines().find(|l| l.contains("size=2052k")).unwrap();
                    let point = line.split(' ').nth(4).unwrap_or_default();
                    assert_ne!(point, "/", "{}: tmpfs over the root: {line}", f.name());
                }
                assert!(
                    !Path::new("/").join(&leaf).exists(),
                    "{}: a mount point was made in the host's /",
                    f.name()
                );
                assert_eq!(entries(&outside), Vec::<String>::new(), "{}", f.name());
            }
            assert!(started > 0, "{}: no start got through", f.name());
            let _ = f.run(&["rm", "-f", &a]);
        }
    });
}

/// CVE-2022-0492: cgroup v1's `release_agent` runs a program of the container's choosing
/// on the host. From a default container, and as a non-root user: a new user and cgroup
/// namespace to get CAP_SYS_ADMIN and mount a v1 hierarchy, and writes through
/// `/sys/fs/cgroup`. Every attempt fails; the host's `release_agent` files stay as they
/// were and the agent never runs.
#[test]
fn cve_2022_0492_release_agent_cannot_be_set() {
    let r = Root::new();
    r.busybox("busybox");
    let agents = || -> Vec<(String, String)> {
        let mut v = Vec::new();
        for e in std::fs::read_dir("/sys/fs/cgroup").unwrap() {
            let p = e.unwrap().path().join("release_agent");
            if let Ok(s) = std::fs::read_to_string(&p) {
                v.push((p.display().to_string(), s));
            }
        }
        v.sort();
        v
    };
    let before = agents();
    let marker = host_dir(&r, "agent");
    let agent = marker.join("ran");
    both(&r, |f| {
        let attack = format!(
            "echo '#!/bin/sh' > /agent; echo 'touch {ran}' >> /agent; chmod +x /agent; \
             try() {{ d=$1; shift; mkdir -p $d && mount -t cgroup -o $1 cgroup $d 2>/dev/null && \
               echo 1 > $d/notify_on_release && echo /agent > $d/release_agent && echo AGENT-SET $1; }}; \
             for c in rdma memory pids devices cpu freezer; do try /tmp/cg-$c $c; done; \
             for c in rdma memory pids; do \
               unshare -Urm sh -c \"mkdir -p /tmp/u-$c && mount -t cgroup -o $c cgroup /tmp/u-$c && \
                 echo /agent > /tmp/u-$c/release_agent && echo AGENT-SET-USERNS $c\" 2>/dev/null; \
               unshare -UrmC sh -c \"mkdir -p /tmp/c-$c && mount -t cgroup -o $c cgroup /tmp/c-$c && \
                 echo /agent > /tmp/c-$c/release_agent && echo AGENT-SET-CGROUPNS $c\" 2>/dev/null; \
             done; \
             for f in /sys/fs/cgroup/*/release_agent /sys/fs/cgroup/release_agent; do \
               [ -e $f ] && echo /agent > $f 2>/dev/null && echo AGENT-SET-SYS $f; done; \
             for f in /sys/fs/cgroup/*/notify_on_release; do echo 1 > $f 2>/dev/null && echo NOTIFY $f; done; \
             echo done",
            ran = agent.display()
        );
        for user in ["0", "1000"] {
            let o = f.run(&["run", "--rm", "-u", user, "busybox", "sh", "-c", &attack]);
            let out = text(&o);
            assert!(out.contains("done"), "{}: {out}", f.name());
            assert!(!out.contains("AGENT-SET"), "{}, -u {user}: {out}", f.name());
            assert_eq!(agents(), before, "{}: a release_agent changed", f.name());
        }
        assert!(!agent.exists(), "{}: the agent ran on the host", f.name());
    });
}

/// CVE-2016-9962: the runtime's exec helper, already in the container's namespaces but not
/// yet the user's program, could be traced from inside and its host descriptors used. A
/// process in the container tries to attach to every process that appears (guessing the
/// next PIDs, and scanning /proc) while the host runs `exec` again and again: it never
/// holds the helper, only the user's programs once they run.
#[test]
fn cve_2016_9962_the_exec_helper_cannot_be_traced() {
    let r = Root::new();
    hostile_image(&r, "tracer", &[], &[]);
    both(&r, |f| {
        let mut m = Made::new(f);
        let a = m.container("trace");
        f.ok(&[
            "run",
            "-d",
            "--name",
            &a,
            "tracer",
            "escape-helper",
            "ptrace-new",
            "10",
        ]);
        // At least 4 s of execs and 3 that ran, within the tracer's 10 s: a loaded machine
        // (CI runs these tests side by side) can take seconds over one.
        let start = Instant::now();
        let (mut execs, mut failed) = (0, String::new());
        while start.elapsed() < Duration::from_secs(9)
            && (start.elapsed() < Duration::from_secs(4) || execs < 3)
        {
            let o = f.run(&["exec", &a, "true"]);
            execs += o.status.success() as u32;
            if !o.status.success() {
                failed = format!("{}: {}", o.status, text(&o));
            }
        }
        f.run(&["wait", &a]);
        let log = f.ok(&["logs", &a]);
        assert!(
            !log.contains("traced") && !log.contains("mem "),
            "{}: {log}",
            f.name()
        );
        assert!(
            log.contains("attempts") && execs > 0,
            "{}: the attack did not run ({execs} execs; the last failure: {failed}): {log}",
            f.name()
        );
    });
}

/// CVE-2022-29162: a non-empty inheritable set lets a program with file inheritable
/// capabilities raise them, also for a non-root user. PID 1 and exec'd processes have none,
/// for a default container, with `--cap-add` and as `-u 1000`; and user 1000 running a
/// program whose file says "inheritable + effective NET_ADMIN and NET_RAW" gains nothing.
#[test]
fn cve_2022_29162_no_inheritable_capabilities() {
    let r = Root::new();
    hostile_image(&r, "fcaps", &[], &[]);
    // CAP_NET_RAW (13) is in the default set, CAP_NET_ADMIN (12) comes with --cap-add.
    let prepare = "mkdir -p /x && cp /bin/busybox /x/busybox && \
                   escape-helper setfcap /x/busybox 13 && cp /bin/busybox /x2 && \
                   mkdir -p /y && cp /bin/busybox /y/busybox && escape-helper setfcap /y/busybox 12 && \
                   chmod 755 /x/busybox /y/busybox && touch /tmp/ready && exec sleep 1000";
    both(&r, |f| {
        let mut m = Made::new(f);
        for extra in [
            &[][..],
            &["--cap-add", "NET_ADMIN"][..],
            &["-u", "1000"][..],
        ] {
            let c = m.container("caps");
            let mut args = vec!["run", "-d", "--name", &c];
            args.extend_from_slice(extra);
            let prep = if extra.contains(&"-u") {
                "touch /tmp/ready; exec sleep 1000"
            } else {
                prepare
            };
            args.extend_from_slice(&["fcaps", "sh", "-c", prep]);
            f.ok(&args);
            wait_until("the container", 20, || {
                f.run(&["exec", &c, "test", "-e", "/tmp/ready"])
                    .status
                    .success()
            });
            let what = format!("{}, {extra:?}", f.name());
            let pid1 = f.ok(&["exec", &c, "grep", "CapInh", "/proc/1/status"]);
            assert_eq!(pid1.trim(), "CapInh:\t0000000000000000", "{what}");
            let own = f.ok(&["exec", &c, "grep", "CapInh", "/proc/self/status"]);
            assert_eq!(own.trim(), "CapInh:\t0000000000000000", "{what}");
            if !extra.contains(&"-u") {
                for prog in ["/x/busybox", "/y/busybox"] {
                    let out = f.ok(&[
                        "exec",
                        "-u",
                        "1000",
                        &c,
                        prog,
                        "grep",
                        "^Cap[PEA]",
                        "/proc/self/status",
                    ]);
                    for l in out.lines() {
                        assert!(l.ends_with("0000000000000000"), "{what}, {prog}: {out}");
                    }
                }
            }
        }
    });
}

/// CVE-2025-52565: the console bound over `/dev/console` followed a link, or a `/dev/pts`
/// raced into one, to a `/proc` file the container could then write. An image whose `/dev`
/// (a volume another container shares) has `/dev/console` linking to the host's
/// `core_pattern`, while that other container keeps exchanging `/dev/pts` with a link to a
/// directory of links to `core_pattern`: every `-t` run and exec gets a real terminal or
/// fails, and what it writes to its terminal and to `/dev/console` never reaches
/// core_pattern.
#[test]
fn cve_2025_52565_the_console_follows_no_link() {
    let r = Root::new();
    let pattern_file = "/proc/sys/kernel/core_pattern";
    let links: Vec<String> = (0..64).map(|i| format!("dev/evil/{i}")).collect();
    let mut extra = vec![
        E::Dir("dev"),
        E::Link("dev/console", pattern_file),
        E::Dir("dev/evil"),
    ];
    extra.extend(links.iter().map(|l| E::Link(l, pattern_file)));
    hostile_image(&r, "console", &extra, &["VOLUME /dev"]);
    let pattern = Setting {
        path: "/proc/sys/kernel/core_pattern",
        value: std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap(),
    };
    let mark = format!("|/tmp/ketch-pwn-{}", random_hex(4));
    both(&r, |f| {
        let mut m = Made::new(f);
        let vol = m.volume();
        let dev = format!("{vol}:/dev");
        let a = m.container("pts");
        f.ok(&[
            "run",
            "-d",
            "--name",
            &a,
            "-v",
            &dev,
            "console",
            "sh",
            "-c",
            "ln -sfn /dev/evil /dev/pts-link; touch /tmp/ready; \
             exec escape-helper exchange /dev/pts /dev/pts-link 4",
        ]);
        wait_until("the racer", 20, || {
            f.run(&["exec", &a, "test", "-e", "/tmp/ready"])
                .status
                .success()
        });
        let write =
            format!("echo '{mark}'; echo '{mark}' > /dev/console; echo '{mark}' > $(tty); tty");
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut terminals = 0;
        while Instant::now() < deadline {
            let o = f.run(&[
                "run", "--rm", "-t", "-v", &dev, "console", "sh", "-c", &write,
            ]);
            terminals += text(&o).contains("/dev/pts/") as u32;
            let _ = f.run(&["exec", "-t", &a, "sh", "-c", &write]);
            assert_eq!(
                std::fs::read_to_string(pattern.path).unwrap(),
                pattern.value,
                "{}: core_pattern changed: {}",
                f.name(),
                text(&o)
            );
        }
        assert!(terminals > 0, "{}: no run got a terminal", f.name());
    });
    drop(pattern);
}

/// The same from the other side: a starter that holds inheritable capabilities (CAP_SYS_ADMIN
/// here, which no default container has) passes none of them on, neither as inheritable nor,
/// through a root process's exec, as effective.
#[test]
fn cve_2022_29162_a_starters_inheritable_capabilities_stay_with_it() {
    let r = Root::new();
    r.busybox("busybox");
    const SYS_ADMIN: u32 = 1 << 21;
    let mut cmd = r.cmd();
    cmd.args([
        "run",
        "--rm",
        "busybox",
        "grep",
        "-E",
        "^Cap(Inh|Eff)",
        "/proc/self/status",
    ]);
    // SAFETY: capget(2) and capset(2) of the child itself, between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            #[repr(C)]
            struct Header {
                version: u32,
                pid: i32,
            }
            #[repr(C)]
            #[derive(Clone, Copy, Default)]
            struct Data {
                effective: u32,
                permitted: u32,
                inheritable: u32,
            }
            let mut h = Header {
                version: 0x2008_0522,
                pid: 0,
            };
            let mut d = [Data::default(); 2];
            if libc::syscall(libc::SYS_capget, &mut h, d.as_mut_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            d[0].inheritable |= SYS_ADMIN;
            if libc::syscall(libc::SYS_capset, &mut h, d.as_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    let set = |name: &str| {
        let line = out.lines().find(|l| l.starts_with(name)).unwrap();
        u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
    };
    assert_eq!(set("CapInh:"), 0, "{out}");
    assert_eq!(set("CapEff:") & u64::from(SYS_ADMIN), 0, "{out}");
}
