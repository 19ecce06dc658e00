//! Ways out of a container, each attacked as a hostile image or container would, through
//! the CLI and through the daemon; after each, the host is checked unchanged (a marker file,
//! a directory that must stay empty, a kernel setting, a process that must live on).

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ketch_tests::hostile::{
    E, Front, Reaped, Setting, alive, both, entries, host_dir, hostile_image, state, text,
    wait_until,
};
use ketch_tests::{Daemon, Root, ketch_bin, random_hex};

/// Way out 1: A descriptor the caller holds (a directory of the host, a socket) reaches neither the
/// container nor its monitor, embedded or through a daemon that holds them itself; the
/// container's PID 1 and an exec'd process have 0, 1 and 2 only.
#[test]
fn inherited_descriptors_do_not_reach_the_container() {
    let r = Root::new();
    r.busybox("busybox");
    let secret = host_dir(&r, "secret");
    let marker = format!("host-secret-{}", random_hex(6));
    std::fs::write(secret.join("marker"), &marker).unwrap();
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let sock_ino = std::fs::metadata(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&theirs)
    ))
    .unwrap()
    .ino();
    // Descriptors 9 (the host directory) and 10 (a socket), without close-on-exec.
    let leak = {
        let secret = secret.clone();
        let theirs = std::os::fd::AsRawFd::as_raw_fd(&theirs);
        move |cmd: &mut Command| {
            let dir = std::ffi::CString::new(secret.to_str().unwrap()).unwrap();
            unsafe {
                cmd.pre_exec(move || {
                    let fd = libc::open(dir.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY);
                    if fd < 0 || libc::dup2(fd, 9) < 0 || libc::dup2(theirs, 10) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
    };
    let check = |f: &Front| {
        let run = |args: &[&str]| {
            let mut c = f.cmd();
            c.args(args);
            if f.url.is_none() {
                leak(&mut c);
            }
            c.output().unwrap()
        };
        let o = run(&[
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "ls /proc/1/fd; cat /proc/1/fd/9/marker; ls -l /proc/1/fd/10",
        ]);
        let out = text(&o);
        assert!(!out.contains(&marker), "{}: {out}", f.name());
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            "0\n1\n2\n",
            "{}: {out}",
            f.name()
        );
        let id = {
            let o = run(&["run", "-d", "busybox", "sleep", "1000"]);
            assert!(o.status.success(), "{}: {}", f.name(), text(&o));
            String::from_utf8_lossy(&o.stdout).trim().to_string()
        };
        let pid1 = f.ok(&["exec", &id, "ls", "/proc/1/fd"]);
        assert_eq!(
            pid1.split_whitespace().collect::<Vec<_>>(),
            ["0", "1", "2"],
            "{}",
            f.name()
        );
        let o = run(&["exec", &id, "sh", "-c", "ls /proc/$$/fd; true"]);
        assert_eq!(
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .collect::<Vec<_>>(),
            ["0", "1", "2"],
            "{}: {}",
            f.name(),
            text(&o)
        );
        // The container's monitor holds neither the directory nor the socket.
        let shim = state(f.r, &id)["ShimPid"].as_i64().unwrap();
        for e in std::fs::read_dir(format!("/proc/{shim}/fd")).unwrap() {
            let p = e.unwrap().path();
            let target = std::fs::read_link(&p).unwrap_or_default();
            assert_ne!(
                target,
                secret,
                "{}: the monitor holds {}",
                f.name(),
                p.display()
            );
            let md = std::fs::metadata(&p);
            assert!(
                !md.is_ok_and(|m| m.ino() == sock_ino),
                "{}: the monitor holds the caller's socket",
                f.name()
            );
        }
        f.ok(&["rm", "-f", &id]);
    };
    check(&Front { r: &r, url: None });
    // A daemon that holds them itself.
    let d = Daemon::start_with(&r, |c| leak(c));
    check(&Front {
        r: &r,
        url: Some(format!("unix://{}", d.socket.display())),
    });
    drop(ours);
}

/// Way out 2: A default container may make device nodes but use only the standard ones: the host's
/// kernel log (1:11), a terminal (4:0) and a block device stay closed to it. `--device` and
/// `--device-cgroup-rule` open what they name, no more.
#[test]
fn devices_outside_the_allow_list_cannot_be_used() {
    let r = Root::new();
    r.busybox("busybox");
    both(&r, |f| {
        let mark = format!("ketch-escape-{}", random_hex(6));
        let script = format!(
            "mknod /tmp/kmsg c 1 11 && echo {mark} > /tmp/kmsg; echo kmsg=$?; \
             mknod /tmp/tty0 c 4 0 && echo x > /tmp/tty0; echo tty0=$?; \
             mknod /tmp/loop b 7 0 && head -c 1 /tmp/loop; echo loop=$?; \
             echo x > /dev/null; echo null=$?; head -c 4 /dev/urandom | wc -c"
        );
        let o = f.run(&["run", "--rm", "busybox", "sh", "-c", &script]);
        let out = text(&o);
        for refused in ["kmsg=1", "tty0=1", "loop=1"] {
            assert!(out.contains(refused), "{}: {out}", f.name());
        }
        assert!(
            out.contains("can't create /tmp/kmsg: Operation not permitted"),
            "{}: {out}",
            f.name()
        );
        assert!(
            out.contains("null=0") && out.contains("\n4\n"),
            "{}: {out}",
            f.name()
        );
        let dmesg = Command::new("dmesg").output().unwrap();
        assert!(
            !String::from_utf8_lossy(&dmesg.stdout).contains(&mark),
            "{}: the container wrote to the host's kernel log",
            f.name()
        );
        // What the options add.
        let out = f.ok(&[
            "run",
            "--rm",
            "--device",
            "/dev/null:/dev/xnull",
            "--device-cgroup-rule",
            "c 241:7 r",
            "busybox",
            "sh",
            "-c",
            "ls -l /dev/xnull; echo x > /dev/xnull && echo xnull-ok",
        ]);
        assert!(
            out.contains("1,   3") && out.contains("xnull-ok"),
            "{}: {out}",
            f.name()
        );
        // Major 241 is for local use and has no driver here: the read the rule allows gets past
        // the cgroup and finds no device, the write it does not allow is refused before.
        let o = f.run(&[
            "run",
            "--rm",
            "--device-cgroup-rule",
            "c 241:7 r",
            "busybox",
            "sh",
            "-c",
            "mknod /tmp/k c 241 7; cat /tmp/k; echo x > /tmp/k",
        ]);
        let out = text(&o);
        assert!(
            out.contains("cat: can't open '/tmp/k': No such device or address")
                && out.contains("can't create /tmp/k: Operation not permitted"),
            "{}: {out}",
            f.name()
        );
        // The rules in force, as the kernel has them.
        let id = f.ok(&["run", "-d", "busybox", "sleep", "1000"]);
        let id = id.trim();
        let groups: Vec<String> = state(f.r, id)["Cgroups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g.as_str().unwrap().to_string())
            .collect();
        let mut enforced = 0;
        for g in &groups {
            let g = Path::new(g);
            if let Ok(list) = std::fs::read_to_string(g.join("devices.list")) {
                assert!(!list.contains("a *:* rwm"), "{}: {list}", f.name());
                assert!(
                    list.contains("c 1:3 rwm") && list.contains("c *:* m"),
                    "{list}"
                );
                enforced += 1;
            }
            if g.join("cgroup.procs").exists() && !g.join("tasks").exists() {
                assert_eq!(device_programs(g), 1, "{}: {}", f.name(), g.display());
                enforced += 1;
            }
        }
        assert!(
            enforced > 0,
            "{}: no device controller in {groups:?}",
            f.name()
        );
        f.ok(&["rm", "-f", id]);
    });
}

/// How many device programs are attached to a v2 group.
fn device_programs(group: &Path) -> u32 {
    #[repr(C)]
    #[derive(Default)]
    struct Query {
        target_fd: u32,
        attach_type: u32,
        query_flags: u32,
        attach_flags: u32,
        prog_ids: u64,
        prog_cnt: u32,
    }
    let dir = std::fs::File::open(group).unwrap();
    let mut q = Query {
        target_fd: std::os::fd::AsRawFd::as_raw_fd(&dir) as u32,
        attach_type: 6, // BPF_CGROUP_DEVICE
        ..Default::default()
    };
    // SAFETY: BPF_PROG_QUERY (16) reads and fills the struct.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            16,
            &mut q as *mut Query,
            std::mem::size_of::<Query>(),
        )
    };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    q.prog_cnt
}

/// Way out 3: An image with `VOLUME /dev` whose `/dev/null` is a link to the host's core_pattern: the
/// masked paths are masked with a real null device, not with what the link names, so the
/// write goes nowhere.
#[test]
fn a_hostile_dev_null_is_never_a_mask_source() {
    let r = Root::new();
    hostile_image(
        &r,
        "nullpattern",
        &[
            E::Dir("dev"),
            E::Link("dev/null", "/proc/sys/kernel/core_pattern"),
        ],
        &["VOLUME /dev"],
    );
    let pattern = Setting {
        path: "/proc/sys/kernel/core_pattern",
        value: std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap(),
    };
    both(&r, |f| {
        let o = f.run(&[
            "run",
            "--rm",
            "nullpattern",
            "sh",
            "-c",
            "echo '|/tmp/pwn %p' > /proc/keys; echo keys=$?; echo x > /proc/timer_list; \
             stat -c '%F %t:%T' /proc/keys /proc/timer_list; cat /proc/keys | wc -c",
        ]);
        let out = text(&o);
        assert_eq!(
            std::fs::read_to_string(pattern.path).unwrap(),
            pattern.value,
            "{}: the host's core_pattern changed: {out}",
            f.name()
        );
        assert!(o.status.success(), "{}: {out}", f.name());
        assert_eq!(
            out.matches("character special file 1:3").count(),
            2,
            "{}: {out}",
            f.name()
        );
    });
}

/// Way out 4: Mount points the runtime makes (`/etc/hosts` ...) follow an image's dangling links
/// inside the image: the host directory they name stays empty.
#[test]
fn mount_points_are_made_inside_the_root() {
    let r = Root::new();
    let outside = host_dir(&r, "host-etc");
    let hosts = format!("{}/hosts", outside.display());
    let hostname = format!("{}/hostname", outside.display());
    let resolv = format!("{}/resolv", outside.display());
    hostile_image(
        &r,
        "danglers",
        &[
            E::Link("etc/hosts", &hosts),
            E::Link("etc/hostname", &hostname),
            E::Link("etc/resolv.conf", &resolv),
            E::Link("etc/nologin", &format!("{}/nologin", outside.display())),
        ],
        &[],
    );
    both(&r, |f| {
        let o = f.run(&[
            "run",
            "--rm",
            "danglers",
            "cat",
            "/etc/hosts",
            "/etc/hostname",
        ]);
        // The volume's mount point too.
        let v = f.run(&["run", "--rm", "-v", "/etc/nologin", "danglers", "true"]);
        assert_eq!(entries(&outside), Vec::<String>::new(), "{}", f.name());
        assert!(text(&o).contains("localhost"), "{}: {}", f.name(), text(&o));
        assert!(v.status.success(), "{}: {}", f.name(), text(&v));
    });
}

/// Way out 5: An image whose `/dev` is a link to a host directory gets its device nodes and links
/// inside the image, also `--privileged` with every host device; the host directory stays
/// empty.
#[test]
fn device_nodes_are_made_inside_the_root() {
    let r = Root::new();
    let outside = host_dir(&r, "host-dev");
    hostile_image(
        &r,
        "devlink",
        &[E::Link("dev", outside.to_str().unwrap())],
        &[],
    );
    both(&r, |f| {
        let out = f.ok(&["run", "--rm", "devlink", "ls", "/dev/"]);
        let privileged = f.ok(&["run", "--rm", "--privileged", "devlink", "ls", "/dev/"]);
        assert_eq!(entries(&outside), Vec::<String>::new(), "{}", f.name());
        assert!(
            out.contains("null") && out.contains("urandom"),
            "{}: {out}",
            f.name()
        );
        assert!(privileged.contains("null"), "{}: {privileged}", f.name());
    });
}

/// Way out 6: Host-side walks of a container's files do not follow what the container swaps under
/// them: `export` of a container that keeps exchanging a directory with a link to a host
/// directory (renameat2, atomically) never reads the host's files, on the copy driver, where
/// every path is looked up afresh; and a volume's copy-up, whose directory a container
/// sharing the volume replaces with a link to the host, never writes the host's directory.
#[test]
fn host_side_walks_stay_in_the_container() {
    for driver in ["copy", "overlay"] {
        let r = Root::with_flags(&["--storage-driver", driver]);
        let secret = host_dir(&r, "host-data");
        let planted = host_dir(&r, "host-target");
        let mark = format!("HOST-SECRET-{}", random_hex(6));
        let names: Vec<String> = (0..2000).map(|i| format!("f{i:04}")).collect();
        for n in &names {
            std::fs::write(secret.join(n), &mark).unwrap();
        }
        let files: Vec<(String, Vec<u8>)> = names
            .iter()
            .map(|n| (format!("data/d/{n}"), b"image".to_vec()))
            .collect();
        let mut extra = vec![E::Dir("data"), E::Dir("data/d")];
        extra.extend(files.iter().map(|(p, d)| E::File(p, d, 0o644)));
        hostile_image(&r, "swapper", &extra, &[]);
        let swap = format!(
            "mkdir /d && cd /d && for n in {}; do echo inside > $n; done && \
             ln -s {} /s && exec escape-helper exchange /d /s 600",
            names.join(" "),
            secret.display()
        );
        both(&r, |f| {
            let c = format!("swap-{}", random_hex(4));
            f.ok(&["run", "-d", "--name", &c, "swapper", "sh", "-c", &swap]);
            wait_until("the swapper", 20, || {
                let o = f.run(&["exec", &c, "sh", "-c", "test -e /s"]);
                o.status.success()
            });
            for _ in 0..3 {
                let o = f.run(&["export", &c]);
                let tar = String::from_utf8_lossy(&o.stdout);
                assert!(
                    !tar.contains(&mark),
                    "{driver}, {}: export read the host's files",
                    f.name()
                );
            }
            f.ok(&["rm", "-f", &c]);

            // Copy-up into a volume another container watches, until the watcher has
            // replaced the directory in the middle of the copy at least once.
            let mut mid_copy = false;
            for _ in 0..5 {
                let vol = format!("v{}", random_hex(4));
                f.ok(&["volume", "create", &vol]);
                let a = format!("snatch-{}", random_hex(4));
                let snatch = format!(
                    "touch /tmp/ready; exec escape-helper snatch /vol/d {} 20",
                    planted.display()
                );
                let volume = format!("{vol}:/vol");
                f.ok(&[
                    "run", "-d", "--name", &a, "-v", &volume, "swapper", "sh", "-c", &snatch,
                ]);
                wait_until("the snatcher", 20, || {
                    f.run(&["exec", &a, "test", "-e", "/tmp/ready"])
                        .status
                        .success()
                });
                let b = format!("copyup-{}", random_hex(4));
                // Created or refused, the copy writes nothing outside the volume.
                let data = format!("{vol}:/data");
                let _ = f.run(&["create", "--name", &b, "-v", &data, "swapper", "true"]);
                assert_eq!(
                    entries(&planted),
                    Vec::<String>::new(),
                    "{driver}, {}: the copy-up wrote to the host",
                    f.name()
                );
                wait_until("the snatcher to end", 30, || {
                    f.run(&["wait", &a]).status.success()
                });
                let log = f.ok(&["logs", &a]);
                let copied: Option<usize> = log
                    .trim()
                    .strip_prefix("snatched after ")
                    .and_then(|n| n.parse().ok());
                mid_copy |= copied.is_some_and(|n| n < names.len());
                let _ = f.run(&["rm", "-f", &a, &b]);
                let _ = f.run(&["volume", "rm", &vol]);
                if mid_copy {
                    break;
                }
            }
            assert!(mid_copy, "{driver}, {}: never swapped mid-copy", f.name());
        });
    }
}

/// Way out 7: The helper's own executable is never reachable from inside: with `--init` PID 1 runs
/// from a sealed memory copy, and while `exec` sets a process up in the container, nothing
/// in the container can read that process's /proc/PID/exe.
#[test]
fn the_helper_binary_is_not_reachable_from_inside() {
    let r = Root::new();
    hostile_image(&r, "watcher", &[], &[]);
    let shim = ketch_bin().parent().unwrap().join("ketch-shim");
    let before = std::fs::read(&shim).unwrap();
    both(&r, |f| {
        let id = f.ok(&["run", "-d", "--init", "watcher", "sleep", "1000"]);
        let id = id.trim();
        // From the host, PID 1's executable is on a read-only mount of its own (or a sealed
        // memory file): reopened for writing, as CVE-2019-5736 does, it is refused.
        let pid1 = state(f.r, id)["Pid"].as_i64().unwrap();
        let exe = format!("/proc/{pid1}/exe");
        let link = std::fs::read_link(&exe).unwrap().display().to_string();
        let mut vfs: libc::statvfs = unsafe { std::mem::zeroed() };
        let c = std::ffi::CString::new(exe.as_str()).unwrap();
        assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut vfs) }, 0);
        let sealed = link.starts_with("/memfd:ketch-init") || vfs.f_flag & libc::ST_RDONLY != 0;
        assert!(sealed, "{}: PID 1 runs {link}, writable", f.name());
        assert!(std::fs::OpenOptions::new().write(true).open(&exe).is_err());
        let o = f.run(&["exec", id, "readlink", "/proc/1/exe"]);
        assert!(
            !text(&o).contains("ketch-shim"),
            "{}: {}",
            f.name(),
            text(&o)
        );
        let o = f.run(&["exec", id, "sh", "-c", "echo x >> /proc/1/exe"]);
        assert!(
            !o.status.success(),
            "{}: wrote to PID 1's executable",
            f.name()
        );
        // While `exec` runs a process in the container, the helper that started it and
        // waits for it (its parent, on the host) runs sealed as well.
        let mark = format!("{}", 100_000 + rand_u32() % 100_000);
        let mut exec = f.cmd();
        exec.args(["exec", id, "sleep", &mark])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut child = exec.spawn().unwrap();
        let mut helper = None;
        wait_until("the exec'd process to run", 20, || {
            helper = sleeper_parent(&mark);
            helper.is_some()
        });
        let exe = format!("/proc/{}/exe", helper.unwrap());
        let link = std::fs::read_link(&exe).unwrap().display().to_string();
        let c = std::ffi::CString::new(exe.as_str()).unwrap();
        assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut vfs) }, 0);
        let sealed = link.starts_with("/memfd:") || vfs.f_flag & libc::ST_RDONLY != 0;
        assert!(
            sealed,
            "{}: the exec helper runs {link}, writable",
            f.name()
        );
        assert!(std::fs::OpenOptions::new().write(true).open(&exe).is_err());
        child.kill().unwrap();
        child.wait().unwrap();
        f.ok(&["rm", "-f", id]);

        let w = f.ok(&[
            "run",
            "-d",
            "watcher",
            "escape-helper",
            "exe-watch",
            "ketch-shim",
            "6",
        ]);
        let w = w.trim();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let _ = f.run(&["exec", w, "true"]);
        }
        f.ok(&["wait", w]);
        let seen = f.ok(&["logs", w]);
        assert_eq!(
            seen,
            "",
            "{}: the container saw the helper: {seen}",
            f.name()
        );
        f.ok(&["rm", w]);
    });
    assert_eq!(std::fs::read(&shim).unwrap(), before, "ketch-shim changed");
}

/// The host PID of the parent of the process running `sleep MARK`, if one runs.
fn sleeper_parent(mark: &str) -> Option<u32> {
    let want = format!("sleep\0{mark}\0");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        if cmdline != want.as_bytes() {
            return None;
        }
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))?
            .trim()
            .parse()
            .ok()
    })
}

fn rand_u32() -> u32 {
    u32::from_str_radix(&random_hex(4), 16).unwrap()
}

/// Way out 8: A container that took another identity still dies with its monitor: killing the
/// monitor of a `-u 1000` container ends the container's process, and the engine then
/// records the container as exited and removes it.
#[test]
fn a_container_dies_with_its_monitor() {
    let r = Root::new();
    r.busybox("busybox");
    both(&r, |f| {
        let id = f.ok(&["run", "-d", "-u", "1000", "busybox", "sleep", "1000"]);
        let id = id.trim();
        let st = state(f.r, id);
        let (pid, shim) = (st["Pid"].as_i64().unwrap(), st["ShimPid"].as_i64().unwrap());
        assert!(alive(pid));
        unsafe { libc::kill(shim as i32, libc::SIGKILL) };
        wait_until("the container to die with its monitor", 10, || !alive(pid));
        let ps = f.ok(&[
            "ps",
            "-a",
            "--filter",
            &format!("id={id}"),
            "--format",
            "{{.Status}}",
        ]);
        assert!(ps.starts_with("Exited"), "{}: {ps}", f.name());
        f.ok(&["rm", id]);
        let groups = st["Cgroups"].as_array().unwrap();
        for g in groups {
            let g = Path::new(g.as_str().unwrap());
            wait_until("the container's cgroup to go", 10, || !g.exists());
        }
    });
}

/// Way out 9: A PID in the state file that names another process by now (here a host process put
/// there on purpose) is never signalled, joined or entered: kill, exec and cp refuse, stop
/// still stops the real container, and the host process lives on. That holds also where the
/// recorded start time is the other process's too (started in the same 10 ms tick), and where
/// none was recorded (a state written before start times were kept).
#[test]
fn a_recorded_pid_that_names_another_process_is_not_used() {
    let r = Root::new();
    r.busybox("busybox");
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    both(&r, |f| {
        for case in ["other start", "same tick", "legacy"] {
            let id = f.ok(&[
                "run",
                "-d",
                "--hostname",
                "inside",
                "busybox",
                "sleep",
                "1000",
            ]);
            let id = id.trim();
            let mut host = Reaped(Command::new("sleep").arg("1000").spawn().unwrap());
            let path = f.r.path().join("containers").join(id).join("state.json");
            let mut st = state(f.r, id);
            let real = st["Pid"].as_i64().unwrap();
            st["Pid"] = serde_json::json!(host.0.id());
            match case {
                "same tick" => st["PidStart"] = serde_json::json!(start_time(host.0.id())),
                "legacy" => st["PidStart"] = serde_json::json!(0),
                _ => {}
            }
            std::fs::write(&path, serde_json::to_vec(&st).unwrap()).unwrap();
            let what = format!("{}, {case}", f.name());
            let o = f.run(&["kill", id]);
            assert!(!o.status.success(), "{what}: kill {}", text(&o));
            let o = f.run(&["exec", id, "cat", "/proc/sys/kernel/hostname"]);
            assert!(!o.status.success(), "{what}: exec ran: {}", text(&o));
            assert!(!text(&o).contains(host_name.trim()), "{what}: {}", text(&o));
            let o = f.run(&["cp", &format!("{id}:/proc/sys/kernel/hostname"), "-"]);
            assert!(
                !text(&o).contains(host_name.trim()),
                "{what}: cp {}",
                text(&o)
            );
            f.ok(&["stop", "-t", "1", id]);
            assert!(!alive(real), "{what}: the container's process lives");
            assert!(
                host.0.try_wait().unwrap().is_none(),
                "{what}: the host process was killed"
            );
            drop(host);
            f.ok(&["rm", id]);
        }
    });
}

/// A process's start time, in clock ticks since boot (`/proc/PID/stat`'s 22nd field).
fn start_time(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    rest.split(' ').nth(19).unwrap().parse().unwrap()
}

/// Unmounts on drop.
struct Mounted(Vec<PathBuf>);

impl Drop for Mounted {
    fn drop(&mut self) {
        for p in self.0.iter().rev() {
            let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

fn mount_tmpfs(at: &Path, opts: &str) {
    let o = Command::new("mount")
        .args(["-t", "tmpfs", "-o", opts, "tmpfs"])
        .arg(at)
        .output()
        .unwrap();
    assert!(o.status.success(), "mount {}: {o:?}", at.display());
}

/// Way out 10: `:ro` is recursive and keeps the source's flags: a submount under a read-only bind is
/// read-only too, and a `nosuid,nodev,noexec` source stays so.
#[test]
fn read_only_binds_are_recursive_and_keep_their_flags() {
    let r = Root::new();
    r.busybox("busybox");
    let src = host_dir(&r, "ro-src");
    mount_tmpfs(&src, "nosuid,nodev,noexec,size=1m");
    let mut mounted = Mounted(vec![src.clone()]);
    std::fs::create_dir(src.join("sub")).unwrap();
    mount_tmpfs(&src.join("sub"), "size=1m");
    mounted.0.push(src.join("sub"));
    std::fs::write(src.join("sub/marker"), "submount\n").unwrap();
    let bind = format!("{}:/d:ro", src.display());
    both(&r, |f| {
        let out = f.ok(&[
            "run",
            "--rm",
            "-v",
            &bind,
            "busybox",
            "sh",
            "-c",
            "touch /d/x; echo top=$?; touch /d/sub/y; echo sub=$?; cat /d/sub/marker; \
             grep ' /d ' /proc/self/mountinfo",
        ]);
        // The submount is there (a bind that is not recursive shows its empty directory).
        assert!(
            out.contains("top=1") && out.contains("sub=1") && out.contains("submount\n"),
            "{}: {out}",
            f.name()
        );
        let line = out.lines().find(|l| l.contains(" /d ")).unwrap_or_default();
        let opts = line.split(' ').nth(5).unwrap_or_default();
        for flag in ["ro", "nosuid", "nodev", "noexec"] {
            assert!(
                opts.split(',').any(|o| o == flag),
                "{}: {flag} missing: {line}",
                f.name()
            );
        }
    });
    assert!(entries(&src).iter().all(|e| e == "sub"));
    drop(mounted);
}

/// Way out 11: A setuid-root program works as in Docker (euid 0 for user 65534), and
/// `--security-opt no-new-privileges` stops it.
#[test]
fn setuid_programs_work_unless_no_new_privileges() {
    let r = Root::new();
    hostile_image(&r, "suid", &[], &[]);
    both(&r, |f| {
        let out = f.ok(&["run", "--rm", "-u", "65534", "suid", "/opt/euid", "euid"]);
        assert_eq!(out.trim(), "euid=0", "{}", f.name());
        let out = f.ok(&[
            "run",
            "--rm",
            "-u",
            "65534",
            "suid",
            "grep",
            "NoNewPrivs",
            "/proc/self/status",
        ]);
        assert!(out.contains('0'), "{}: {out}", f.name());
        let out = f.ok(&[
            "run",
            "--rm",
            "-u",
            "65534",
            "--security-opt",
            "no-new-privileges",
            "suid",
            "/opt/euid",
            "euid",
        ]);
        assert_eq!(out.trim(), "euid=65534", "{}", f.name());
    });
}

/// What a container's processes hold open is their standard streams only: no descriptor of
/// the helper's (the root file system, a cgroup, a pipe to the monitor) reaches the first
/// process, one under `--init`, or an exec'd one.
#[test]
fn container_processes_inherit_no_descriptor_of_the_helper() {
    let r = Root::new();
    r.busybox("busybox");
    // `ls` lists its own descriptors: the three streams and the directory it reads.
    let want = "0\n1\n2\n3\n";
    both(&r, |f| {
        let ls = ["busybox", "ls", "-1", "/proc/self/fd"];
        for flags in [
            &["--rm"][..],
            &["--rm", "--init"],
            &["--rm", "-t"],
            &["--rm", "--read-only"],
        ] {
            let mut args = vec!["run", "--network", "none"];
            args.extend_from_slice(flags);
            args.extend_from_slice(&ls);
            assert_eq!(
                f.ok(&args).replace('\r', ""),
                want,
                "{}: run {flags:?}",
                f.name()
            );
        }
        let id = f.ok(&["run", "-d", "--network", "none", "busybox", "sleep", "1000"]);
        let id = id.trim();
        assert_eq!(
            f.ok(&["exec", id, "ls", "-1", "/proc/self/fd"]),
            want,
            "{}",
            f.name()
        );
        // The first process of a running container too.
        let first = f.ok(&["exec", id, "ls", "-1", "/proc/1/fd"]);
        assert_eq!(first, "0\n1\n2\n", "{}", f.name());
        f.ok(&["rm", "-f", id]);
    });
}

/// CVE-2024-21626: a working directory named through a descriptor (`-w /proc/self/fd/N`)
/// would leave a process outside the root if the helper held a host directory open; from
/// there `..` climbs to the host's `/`. No descriptor number works, for run or exec: the
/// start fails, or the directory is the container's. (The exec helper did hold one, its
/// container's v2 cgroup directory, until this test.)
#[test]
fn a_working_directory_through_a_descriptor_stays_inside() {
    let r = Root::new();
    r.busybox("busybox");
    let secret = host_dir(&r, "cwd-secret");
    let mark = format!("host-cwd-{}", random_hex(6));
    std::fs::write(secret.join("marker"), &mark).unwrap();
    let up = "../".repeat(24);
    let probe = format!(
        "pwd; cat {up}{}/marker",
        secret.display().to_string().trim_start_matches('/')
    );
    both(&r, |f| {
        let id = f.ok(&["run", "-d", "busybox", "sleep", "1000"]);
        let id = id.trim();
        for base in ["/proc/self/fd", "/proc/thread-self/fd"] {
            for n in 3..16 {
                let cwd = format!("{base}/{n}");
                for o in [
                    f.run(&["exec", "-w", &cwd, id, "sh", "-c", &probe]),
                    f.run(&["run", "--rm", "-w", &cwd, "busybox", "sh", "-c", &probe]),
                ] {
                    let out = text(&o);
                    assert!(
                        !out.contains(&mark),
                        "{}: -w {cwd} reached the host: {out}",
                        f.name()
                    );
                    if o.status.success() {
                        assert!(out.starts_with('/'), "{}: -w {cwd}: {out}", f.name());
                    }
                }
            }
        }
        f.ok(&["rm", "-f", id]);
    });
}

/// Way out: an engine that runs in a chroot (a build sandbox, a chrooted service). Joining a
/// container's mount namespace sets the root to the namespace's root mount, which a pivot done
/// from inside a chroot leaves as the host's: `exec` and `cp` then reached the host's files.
/// They enter the container process's own root, and see the container's files only.
#[test]
fn exec_and_cp_stay_in_the_container_when_the_engine_is_chrooted() {
    let mut r = Root::new();
    // Every ketch runs in a mount namespace of its own whose root is the host's root, bound
    // below the test's directory: a chroot that is a mount point, as pivot_root needs.
    let jail = r.dir.path().join("chroot");
    std::fs::create_dir(&jail).unwrap();
    r.wrap = vec![
        "unshare".into(),
        "--mount".into(),
        "--propagation".into(),
        "private".into(),
        "sh".into(),
        "-c".into(),
        format!(
            "mount --rbind / {0} && exec chroot {0} \"$@\"",
            jail.display()
        ),
        "sh".into(),
    ];
    r.busybox("busybox");
    r.ok(&[
        "run",
        "-d",
        "--name",
        "t",
        "--network",
        "none",
        "busybox",
        "sleep",
        "1000",
    ]);
    // Inside, with the working directory asked for.
    assert_eq!(
        r.ok(&["exec", "t", "cat", "/etc/motd"]),
        "ketch busybox fixture\n"
    );
    assert_eq!(r.ok(&["exec", "-w", "/etc", "t", "pwd"]), "/etc\n");
    // Out of the container, and into it: never the host's /etc.
    let o = r.run(&["cp", "t:/etc/motd", "-"]);
    assert!(o.status.success(), "{o:?}");
    let mut tar = tar::Archive::new(&o.stdout[..]);
    let mut entry = tar.entries().unwrap().next().unwrap().unwrap();
    let mut motd = String::new();
    std::io::Read::read_to_string(&mut entry, &mut motd).unwrap();
    assert_eq!(motd, "ketch busybox fixture\n");
    let name = format!("ketch-chroot-{}", random_hex(6));
    let src = r.dir.path().join(&name);
    std::fs::write(&src, "into the container\n").unwrap();
    r.ok(&["cp", src.to_str().unwrap(), "t:/etc/"]);
    assert!(
        !Path::new("/etc").join(&name).exists(),
        "cp wrote into the host's /etc"
    );
    assert_eq!(
        r.ok(&["exec", "t", "cat", &format!("/etc/{name}")]),
        "into the container\n"
    );
    // The /dev/shm another container shares (`--ipc container:X`) is cloned with the
    // process in X's mount namespace for a moment; back, it is in the chroot again.
    r.ok(&[
        "run",
        "-d",
        "--name",
        "s",
        "--ipc",
        "shareable",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo shared > /dev/shm/f && exec sleep 1000",
    ]);
    wait_until("the donor's file", 10, || {
        r.run(&["exec", "s", "test", "-e", "/dev/shm/f"])
            .status
            .success()
    });
    assert_eq!(
        r.ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "--ipc",
            "container:s",
            "busybox",
            "cat",
            "/dev/shm/f",
            "/etc/motd",
        ]),
        "shared\nketch busybox fixture\n"
    );
    let ids = r.ok(&["inspect", "-f", "{{.Id}}", "t", "s"]);
    r.ok(&["rm", "-f", "t", "s"]);
    for id in ids.lines() {
        ketch_tests::no_cgroups_left(id);
    }
}

/// Way out 12: A container that joins another's IPC namespace shares its /dev/shm
/// (`--ipc container:X`), and the host side takes that mount out of X's mounts. X, with
/// CAP_SYS_ADMIN, swaps its /dev/shm for a link to a host directory (which a lookup through
/// `/proc/PID/root` would follow to the host), or for a plain directory of its own root:
/// the start is refused, naming /dev/shm, and the host directory is never seen or written.
#[test]
fn a_shared_dev_shm_comes_from_the_donors_mount_only() {
    let r = Root::new();
    r.busybox("busybox");
    let outside = host_dir(&r, "host-shm");
    let mark = format!("HOST-SECRET-{}", random_hex(6));
    std::fs::write(outside.join("secret"), &mark).unwrap();
    both(&r, |f| {
        for (swap, why) in [
            (
                format!("ln -s {} /dev/shm", outside.display()),
                "Too many levels of symbolic links",
            ),
            ("mkdir /dev/shm".to_string(), "not a mount of its own"),
        ] {
            let x = format!("donor-{}", random_hex(4));
            let script = format!(
                "umount /dev/shm && rmdir /dev/shm && {swap} && touch /tmp/ready; exec sleep 1000"
            );
            f.ok(&[
                "run",
                "-d",
                "--name",
                &x,
                "--network",
                "none",
                "--ipc",
                "shareable",
                "--cap-add",
                "SYS_ADMIN",
                "busybox",
                "sh",
                "-c",
                &script,
            ]);
            wait_until("the swap", 10, || {
                f.run(&["exec", &x, "test", "-e", "/tmp/ready"])
                    .status
                    .success()
            });
            let ipc = format!("container:{x}");
            let o = f.run(&[
                "run",
                "--rm",
                "--network",
                "none",
                "--ipc",
                &ipc,
                "busybox",
                "sh",
                "-c",
                "cat /dev/shm/secret; touch /dev/shm/written",
            ]);
            let out = text(&o);
            assert_eq!(o.status.code(), Some(125), "{}: {out}", f.name());
            assert!(
                out.contains("/dev/shm") && out.contains(why),
                "{}: {out}",
                f.name()
            );
            assert!(!out.contains(&mark), "{}: {out}", f.name());
            assert_eq!(entries(&outside), vec!["secret"], "{}", f.name());
            f.ok(&["rm", "-f", &x]);
        }
    });
}
