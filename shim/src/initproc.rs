//! `ketch-init`: a container's first process does its setup in this executable sealed
//! against writes (through a read-only mount of its own, or a sealed memory copy:
//! `sys::sealed_self`), so nothing it runs, a `#!/proc/self/exe` program included, can reach
//! the host's `ketch-shim` through `/proc/PID/exe` (CVE-2019-5736). The process execs it
//! right after it is cloned, while the host's root is still in view (the loader and
//! libraries the executable needs are the host's), and it does the whole setup; then it execs
//! the program, or with `--init` stays as PID 1: starts the program as its child, passes
//! signals on, reaps every orphan, and exits with the program's status.
//!
//!   ketch-init --setup BUNDLE MONITOR-FD REPORT-FD CONSOLE-FD|- --init|--no-init SHM-FD|-
//!
//! argv[0] selects this mode. The descriptors are the first process's: the monitor's pipe,
//! the start report, the terminal socket, the /dev/shm mount of the container whose IPC
//! namespace it joins. The environment is the program's.

use std::ffi::CString;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};

use crate::init::{StartError, cstr, ctx, fail};
use crate::launch::{Launch, Never, exec_error};
use crate::spec::{RootfsMount, Spec};

/// Whether this process was started as `ketch-init`.
pub fn selected() -> bool {
    std::env::args_os()
        .next()
        .is_some_and(|a| a == "ketch-init")
}

/// The descriptors the first process hands to its setup (see the module's usage line).
#[derive(Clone, Copy)]
pub struct Handed {
    pub monitor: RawFd,
    pub report: RawFd,
    pub console: Option<RawFd>,
    pub shm: Option<RawFd>,
}

/// Execs the sealed executable `exe` to go on with the setup as `ketch-init`. Returns only
/// on failure.
pub fn exec_setup(
    exe: BorrowedFd<'_>,
    bundle: &Path,
    fds: &Handed,
    env: &[String],
    reaper: bool,
) -> StartError {
    let Handed {
        monitor,
        report,
        console,
        shm,
    } = *fds;
    for fd in [Some(monitor), Some(report), console, shm]
        .into_iter()
        .flatten()
    {
        // SAFETY: descriptors this process holds; they must survive the exec.
        unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    }
    let argv: Vec<CString> = [
        c"ketch-init".to_owned(),
        c"--setup".to_owned(),
        CString::new(bundle.as_os_str().as_bytes()).unwrap_or_default(),
        cstr(&monitor.to_string()),
        cstr(&report.to_string()),
        cstr(&console.map_or("-".to_string(), |c| c.to_string())),
        if reaper {
            c"--init".to_owned()
        } else {
            c"--no-init".to_owned()
        },
        cstr(&shm.map_or("-".to_string(), |c| c.to_string())),
    ]
    .into();
    let env: Vec<CString> = env.iter().map(|e| cstr(e)).collect();
    let err = crate::sys::exec_fd(exe, &argv, &env);
    fail(125, format!("exec ketch-init: {err}"))
}

/// `ketch-init --setup ...`: the first process's setup, in the sealed executable.
pub fn main() -> ! {
    let args: Vec<String> = std::env::args().collect();
    let fd = |i: usize| args.get(i).and_then(|a| a.parse::<RawFd>().ok());
    let (Some("--setup"), Some(bundle), Some(monitor), Some(report)) =
        (args.get(1).map(String::as_str), args.get(2), fd(3), fd(4))
    else {
        eprintln!(
            "usage: ketch-init --setup BUNDLE MONITOR-FD REPORT-FD CONSOLE-FD|- --init|--no-init SHM-FD|-"
        );
        std::process::exit(125);
    };
    let console = fd(5);
    let reaper = args.get(6).is_some_and(|a| a == "--init");
    let shm = fd(7);
    // The exec made this process dumpable again; it is the helper's image in the container.
    // SAFETY: process flags; the name is NUL-terminated.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        libc::prctl(libc::PR_SET_NAME, c"ketch-init".as_ptr(), 0, 0, 0);
        for fd in [Some(monitor), Some(report), console, shm]
            .into_iter()
            .flatten()
        {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
    // SAFETY: the descriptor was handed over to this process, which owns it from here.
    let shm = shm.map(|fd| unsafe { OwnedFd::from_raw_fd(fd) });
    let err = match setup(Path::new(bundle), monitor, console, shm, reaper) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    // SAFETY: the report pipe was handed over to this process.
    let mut w = unsafe { fs::File::from_raw_fd(report) };
    let _ = w.write_all(format!("{} {}", err.code, err.message).as_bytes());
    std::process::exit(err.code)
}

fn setup(
    bundle: &Path,
    monitor: RawFd,
    console: Option<RawFd>,
    shm: Option<OwnedFd>,
    reaper: bool,
) -> Result<Never, StartError> {
    let spec: Spec = fs::read(bundle.join("config.json"))
        .map_err(ctx(|| format!("read {}/config.json", bundle.display())))
        .and_then(|b| {
            serde_json::from_slice(&b).map_err(ctx(|| "parse config.json".to_string()))
        })?;
    let rootfs: Vec<RootfsMount> = spec
        .annotations
        .get("io.ketch.rootfs")
        .and_then(|r| serde_json::from_str(r).ok())
        .unwrap_or_default();
    // SAFETY: the monitor's pipe stays open for the life of this process.
    let monitor = unsafe { BorrowedFd::borrow_raw(monitor) };
    let how = Launch::First { monitor, reaper };
    Err(crate::init::init(
        &spec,
        &rootfs,
        crate::init::new_cgroupns(&spec),
        console,
        shm,
        how,
    ))
}

/// Rewrites this process's command line (`/proc/self/cmdline`) in place, as
/// `setproctitle(3)` does: the words, joined by spaces, are written over the argument area
/// the kernel set up at exec and cut to its length. The area's last byte is left non-NUL,
/// which tells the kernel the title is one string ending at its first NUL; otherwise the
/// zeroed rest of the area would read as empty arguments. (`PR_SET_MM` would need
/// CAP_SYS_RESOURCE, which the host may not grant.)
fn set_cmdline(head: &[&str], args: &[CString]) {
    let Ok(stat) = fs::read_to_string("/proc/self/stat") else {
        return;
    };
    // Fields 48 and 49, arg_start and arg_end, counted after the command name's ')'.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return;
    };
    let mut fields = rest.split(' ').skip(45);
    let (Some(Ok(start)), Some(Ok(end))) = (
        fields.next().map(str::parse::<usize>),
        fields.next().map(str::parse::<usize>),
    ) else {
        return;
    };
    let len = end.saturating_sub(start);
    if len < 2 {
        return;
    }
    let words: Vec<&[u8]> = head
        .iter()
        .map(|w| w.as_bytes())
        .chain(args.iter().map(|a| a.as_bytes()))
        .collect();
    let mut title = words.join(&b' ');
    // Room for the terminating NUL and the non-NUL marker byte.
    title.truncate(len - 2);
    // SAFETY: [start, end) is this process's argument area on its own stack, set up by the
    // kernel at exec; nothing in this process reads the original arguments any more.
    unsafe {
        let area = start as *mut u8;
        std::ptr::write_bytes(area, 0, len);
        std::ptr::copy_nonoverlapping(title.as_ptr(), area, title.len());
        *area.add(len - 1) = b' ';
    }
}

/// PID 1's work with `--init`: runs the program as its child, passes signals on to it, reaps
/// every orphan, and exits with the program's status. Returns only when the program could
/// not be started.
pub fn reap(prog: &CString, args: &[CString], env: &[CString], first: &str) -> StartError {
    match run(prog, args, env, first) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

fn run(
    prog: &CString,
    args: &[CString],
    env: &[CString],
    first: &str,
) -> Result<Never, StartError> {
    let forwarded = [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
        Signal::SIGALRM,
        Signal::SIGCONT,
    ];
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    for s in forwarded {
        mask.add(s);
    }
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)
        .map_err(ctx(|| "block signals".to_string()))?;
    // Titled before the program starts, so it never sees PID 1's setup arguments, which
    // hold a host path.
    set_cmdline(&["ketch-init", "--"], args);
    let (status_r, status_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(ctx(|| "pipe".to_string()))?;
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(fail(
            125,
            format!("fork: {}", std::io::Error::last_os_error()),
        ));
    }
    if child == 0 {
        let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
        drop(status_r);
        let err = exec_error(nix::unistd::execve(prog, args, env).unwrap_err(), first);
        let _ =
            fs::File::from(status_w).write_all(format!("{} {}", err.code, err.message).as_bytes());
        unsafe { libc::_exit(err.code) };
    }
    drop(status_w);
    let mut msg = String::new();
    let _ = fs::File::from(status_r).read_to_string(&mut msg);
    if let Some((code, message)) = msg.split_once(' ') {
        return Err(fail(code.parse().unwrap_or(126), message));
    }
    // The program runs: the monitor learns it from its report pipe's end, and nothing of
    // the setup stays open.
    crate::sys::close_from(3, false);
    loop {
        let sig = match mask.wait() {
            Ok(s) => s,
            Err(_) => continue,
        };
        if sig == Signal::SIGCHLD {
            loop {
                let mut status = 0;
                let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
                if pid <= 0 {
                    break;
                }
                if pid == child {
                    let code = if libc::WIFEXITED(status) {
                        libc::WEXITSTATUS(status)
                    } else {
                        128 + libc::WTERMSIG(status)
                    };
                    unsafe { libc::_exit(code) };
                }
            }
        } else {
            unsafe { libc::kill(child, sig as i32) };
        }
    }
}
