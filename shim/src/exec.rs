//! `ketch-shim exec`: a new process in a running container. Joins the container's cgroups
//! and namespaces and takes its root, then clones the process (a pid namespace applies to
//! children only) and monitors it like the container's own, without a log.
//!
//!   ketch-shim exec BUNDLE PID [--pid-start T] [--owner ID] [--attach] [--stdin] [--user U] [--cwd D]
//!                   [--env K=V]... -- CMD...
//!
//! PID is the container's first process, checked against its start time T (clock ticks
//! since boot; else the one in `state.json`) and against the cgroup of container ID (else
//! the bundle's name) before anything is joined: a PID that names another process by now is
//! refused. Every namespace of that process is joined, or the exec
//! is refused: a command never runs in a namespace of the host's by mistake.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use nix::sys::signal::{SigSet, SigmaskHow, sigprocmask};
use nix::unistd::Pid;

use crate::spec::Spec;
use crate::{Log, Run, init, monitor, pipe, report};

struct Args {
    bundle: PathBuf,
    pid: i32,
    pid_start: Option<u64>,
    owner: Option<String>,
    /// Running as the sealed copy of this executable already.
    sealed: bool,
    attach: bool,
    stdin: bool,
    tty: bool,
    /// The terminal's size at the start.
    size: Option<crate::spec::ConsoleSize>,
    user: Option<String>,
    cwd: Option<String>,
    env: Vec<String>,
    cmd: Vec<String>,
}

fn parse() -> Result<Args, String> {
    let mut it = std::env::args().skip(2);
    let bundle = PathBuf::from(it.next().ok_or("missing bundle")?);
    let pid = it
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or("missing pid")?;
    let mut a = Args {
        bundle,
        pid,
        pid_start: None,
        owner: None,
        sealed: false,
        attach: false,
        stdin: false,
        tty: false,
        size: None,
        user: None,
        cwd: None,
        env: vec![],
        cmd: vec![],
    };
    while let Some(x) = it.next() {
        match x.as_str() {
            "--attach" => a.attach = true,
            "--pid-start" => a.pid_start = it.next().and_then(|s| s.parse().ok()),
            "--owner" => a.owner = it.next(),
            "--sealed" => a.sealed = true,
            "--stdin" => a.stdin = true,
            "--tty" => a.tty = true,
            "--size" => {
                a.size = it.next().and_then(|s| {
                    let (h, w) = s.split_once('x')?;
                    Some(crate::spec::ConsoleSize {
                        height: h.parse().ok()?,
                        width: w.parse().ok()?,
                    })
                })
            }
            "--user" => a.user = it.next(),
            "--cwd" => a.cwd = it.next(),
            "--env" => a.env.extend(it.next()),
            "--" => {
                a.cmd = it.collect();
                break;
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

pub fn run() -> i32 {
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ketch-shim exec: {e}");
            return 125;
        }
    };
    // Everything from here runs in this executable sealed against writes: this process joins
    // the container, and what it execs there, a `#!/proc/self/exe` program included, can
    // only ever reach the sealed copy, never the host's file (CVE-2019-5736).
    if !a.sealed {
        let err = match crate::sys::sealed_self() {
            Ok(exe) => {
                let mut argv: Vec<std::ffi::CString> = std::env::args_os()
                    .map(|a| std::ffi::CString::new(a.into_vec()).unwrap_or_default())
                    .collect();
                // After `exec BUNDLE PID`, among the options.
                argv.insert(4.min(argv.len()), c"--sealed".to_owned());
                let env: Vec<std::ffi::CString> = std::env::vars_os()
                    .filter_map(|(k, v)| {
                        let mut kv = k.into_vec();
                        kv.push(b'=');
                        kv.extend(v.into_vec());
                        std::ffi::CString::new(kv).ok()
                    })
                    .collect();
                crate::sys::exec_fd(exe.as_fd(), &argv, &env)
            }
            Err(e) => e,
        };
        let mut ready = crate::sys::report_fd();
        eprintln!("ketch-shim exec: seal ketch-shim: {err}");
        report(&mut ready, &format!("error 125 seal ketch-shim: {err}"));
        return 125;
    }
    // The engine always hands over a report pipe as fd 3: attached or not, it learns there
    // whether the process started, apart from the process's own output.
    let Some(ready) = crate::sys::report_fd() else {
        eprintln!("ketch-shim exec: no report pipe on fd 3: the engine runs this helper");
        return 125;
    };
    let mut ready = Some(ready);
    let fail = |ready: &mut Option<File>, code: i32, msg: String| -> i32 {
        report(ready, &format!("error {code} {msg}"));
        code
    };
    let spec: Spec = match fs::read(a.bundle.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
    {
        Some(s) => s,
        None => {
            return fail(
                &mut ready,
                125,
                format!("read {}/config.json", a.bundle.display()),
            );
        }
    };
    // The container's cgroups and process, from the monitor's state.
    let state: serde_json::Value = fs::read(a.bundle.join("state.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let cgroups: Vec<PathBuf> = state
        .get("Cgroups")
        .cloned()
        .and_then(|c| serde_json::from_value(c).ok())
        .unwrap_or_default();
    // The process first: taken by pidfd and checked, then held, so it cannot be swapped for
    // another while its namespaces are joined.
    let (Some(start), Some(owner)) = (a.pid_start, a.owner.as_deref()) else {
        return fail(
            &mut ready,
            125,
            "the engine names the process by --pid-start and --owner".into(),
        );
    };
    let pidfd = match crate::sys::pidfd_of(a.pid, start, owner) {
        Ok(fd) => fd,
        Err(e) => {
            return fail(&mut ready, 125, format!("container process {}: {e}", a.pid));
        }
    };
    // From here this process sits in the container's namespaces: not dumpable, so nothing in
    // the container can open its /proc/PID/exe or trace it (its children inherit that until
    // their exec).
    // SAFETY: a process flag, no pointers.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    // This process is single-threaded: on v1, moving its one thread through `tasks` avoids
    // the global lock a `cgroup.procs` write takes (see the shim's `Cgroup::join_self`).
    // A v2 group (one without `tasks`) is not joined here: the process is made in it (see
    // `sys::fork_into`).
    let mut v2 = None;
    for cg in &cgroups {
        let tasks = cg.join("tasks");
        if !tasks.exists() {
            v2 = Some(cg.clone());
            continue;
        }
        if let Err(e) = fs::write(tasks, "0") {
            return fail(&mut ready, 125, format!("join {}: {e}", cg.display()));
        }
    }
    let v2_dir = match v2.as_ref().map(File::open).transpose() {
        Ok(d) => d,
        Err(e) => return fail(&mut ready, 125, format!("open the container's cgroup: {e}")),
    };
    // Opened here, in the host's mount namespace: where the kernel cannot fork straight into
    // the group, the child joins it by this handle, not by a path it would look up in the
    // container's view, where the container decides what the path leads to (CVE-2025-52881).
    let v2_procs = match v2
        .as_ref()
        .map(|d| OpenOptions::new().write(true).open(d.join("cgroup.procs")))
        .transpose()
    {
        Ok(f) => f,
        Err(e) => return fail(&mut ready, 125, format!("open the container's cgroup: {e}")),
    };
    if !a.attach {
        let _ = nix::unistd::setsid();
        if let Ok(null) = OpenOptions::new().read(true).write(true).open("/dev/null") {
            for fd in 0..3 {
                unsafe { libc::dup2(null.as_raw_fd(), fd) };
            }
        }
    }
    let root = match crate::sys::container_root(a.pid, pidfd.as_fd()) {
        Ok(r) => r,
        Err(e) => return fail(&mut ready, 125, e),
    };
    if let Err(e) = join_namespaces(&pidfd, a.pid).and_then(|()| crate::sys::enter_root(root)) {
        return fail(&mut ready, 125, e);
    }
    let Ok(sfd) = crate::monitor_signals() else {
        return fail(&mut ready, 125, "signalfd".into());
    };
    let mut env = spec.process.env.clone();
    for e in &a.env {
        let key = e.split('=').next().unwrap_or("");
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    if a.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    let cwd = a.cwd.clone().unwrap_or_else(|| spec.process.cwd.clone());
    let user = a
        .user
        .clone()
        .or_else(|| spec.annotations.get("io.ketch.user").cloned())
        .unwrap_or_default();
    let io = (|| -> std::io::Result<_> {
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let input = if a.stdin { Some(pipe()?) } else { None };
        let (exec_r, exec_w) = pipe()?;
        Ok((out_r, out_w, err_r, err_w, input, exec_r, exec_w))
    })();
    let Ok((out_r, out_w, err_r, err_w, input, exec_r, exec_w)) = io else {
        return fail(&mut ready, 125, "pipe".into());
    };
    let console = if a.tty {
        match nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::Stream,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        ) {
            Ok(p) => Some(p),
            Err(e) => return fail(&mut ready, 125, format!("socketpair: {e}")),
        }
    } else {
        None
    };
    // SAFETY: this process is single-threaded.
    let (pid, in_v2) = match unsafe { crate::sys::fork_into(0, v2_dir.as_ref().map(|d| d.as_fd())) }
    {
        Ok(r) => r,
        Err(e) => return fail(&mut ready, 125, format!("fork: {e}")),
    };
    // A directory of the host's: neither process needs it any more, and the child must not
    // hold it while it takes its working directory (`-w /proc/self/fd/N`, CVE-2024-21626).
    drop(v2_dir);
    if pid == 0 {
        let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
        if let (Some(dir), Some(mut procs)) = (v2.as_ref(), v2_procs.as_ref().filter(|_| !in_v2))
            && let Err(e) = procs.write_all(b"0")
        {
            let _ =
                File::from(exec_w).write_all(format!("125 join {}: {e}", dir.display()).as_bytes());
            unsafe { libc::_exit(125) };
        }
        let stdin_fd = match &input {
            Some((r, _)) => r.as_raw_fd(),
            None => File::open("/dev/null")
                .map(std::os::fd::IntoRawFd::into_raw_fd)
                .unwrap_or(-1),
        };
        let err = match &console {
            // A terminal from the container's own devpts, as for its first process.
            Some((_, theirs)) => match init::open_console(theirs.as_raw_fd(), a.size) {
                Ok(()) => launched(&spec, &a.cmd, &env, &cwd, &user),
                Err(e) => e,
            },
            None => {
                unsafe {
                    libc::dup2(stdin_fd, 0);
                    libc::dup2(out_w.as_raw_fd(), 1);
                    libc::dup2(err_w.as_raw_fd(), 2);
                }
                launched(&spec, &a.cmd, &env, &cwd, &user)
            }
        };
        let _ = File::from(exec_w).write_all(format!("{} {}", err.code, err.message).as_bytes());
        unsafe { libc::_exit(err.code) };
    }
    drop((out_w, err_w, exec_w));
    let master = match console {
        Some((ours, theirs)) => {
            drop(theirs);
            crate::receive_fd(&ours).ok()
        }
        None => None,
    };
    let input_w = input.map(|(r, w)| {
        drop(r);
        w
    });
    let mut msg = String::new();
    let _ = File::from(exec_r).read_to_string(&mut msg);
    if !msg.is_empty() {
        let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), None);
        let (code, message) = msg.split_once(' ').unwrap_or(("126", &msg));
        // As Docker's exec: a command that cannot start, found or not, is 126 (a container's
        // first command not found is 127).
        let code = match code.parse().unwrap_or(126) {
            127 => 126,
            c => c,
        };
        return fail(&mut ready, code, message.to_string());
    }
    report(&mut ready, &format!("ok {pid}"));
    let run = match master {
        // Its first size came with `--size`; later ones follow the caller's terminal.
        Some(m) => {
            let (Ok(out), Ok(inp)) = (m.try_clone(), m.try_clone()) else {
                return fail(&mut ready, 125, "dup".into());
            };
            Run {
                pid: Pid::from_raw(pid),
                out,
                err: None,
                input: if a.stdin { Some(inp) } else { None },
                tty: Some(m),
                hold_input: false,
            }
        }
        None => Run {
            pid: Pid::from_raw(pid),
            out: out_r,
            err: Some(err_r),
            input: input_w,
            tty: None,
            hold_input: false,
        },
    };
    let relay = if a.attach {
        crate::Relay::Plain
    } else {
        crate::Relay::None
    };
    let code = monitor(run, &mut Log::disabled(), relay, &sfd, Default::default());
    if a.attach { code } else { 0 }
}

fn launched(
    spec: &Spec,
    cmd: &[String],
    env: &[String],
    cwd: &str,
    user: &str,
) -> init::StartError {
    match crate::launch::launch(spec, cmd, env, cwd, user, crate::launch::Launch::Exec) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

/// Every namespace the container's process has, entered at once through its pidfd (Linux
/// 5.8). Where the kernel cannot, each namespace file is opened from `/proc/PID/ns` and the
/// process checked alive afterwards (so the files were its own), then entered one by one. The
/// mount namespace sets this process's root to the namespace's root mount, which is not the
/// container's everywhere: the caller then enters the process's own root (`sys::enter_root`).
fn join_namespaces(pidfd: &std::os::fd::OwnedFd, pid: i32) -> Result<(), String> {
    use nix::sched::CloneFlags;
    let all = crate::sys::NAMESPACES;
    let flags = all.iter().fold(CloneFlags::empty(), |f, (_, c)| f | *c);
    match nix::sched::setns(pidfd, flags) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EINVAL) => crate::sys::join_by_files(pidfd.as_fd(), pid, &all),
        Err(e) => Err(format!("enter the container's namespaces: {e}")),
    }
}
