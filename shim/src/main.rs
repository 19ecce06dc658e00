//! `ketch-shim`: one per container. Started by the engine (from any front door) as a fresh,
//! single-threaded process, it clones the container's first process into new namespaces,
//! places it in its cgroups, and then stays as its monitor: it holds the container's stdio,
//! writes its log, records its state and exit status in `state.json`, and applies its
//! restart policy. A detached container outlives whatever started it.
//!
//! Contract with the engine (all files in the bundle directory given as the only argument):
//! - reads `config.json`, an OCI runtime spec; annotations `io.ketch.rootfs` (the root file
//!   system's mounts, JSON), `io.ketch.restart` (`no`, `on-failure[:N]`, `always`,
//!   `unless-stopped`), `io.ketch.log.max-size` and `io.ketch.log.max-file`;
//! - writes `state.json` (replaced atomically) and appends `container.log` (JSON lines:
//!   `log`, `stream`, `time`, as Docker's json-file driver);
//! - `--attach`: the container's output also goes to the shim's stdout/stderr, the shim's
//!   stdin (with `--stdin`) to the container, signals to the shim are passed on, and the shim
//!   exits with the container's exit status;
//! - otherwise it detaches (new session, stdio to /dev/null) after writing one line to fd 3:
//!   `ok` or `error <code> <message>`;
//! - `--stream` (with `--attach`): detaches as above but keeps the stdio it was given (a
//!   daemon's end of an attached client's connection) and copies to and from it as attached;
//!   `--framed` puts each piece of output in Docker's multiplexed frame (stream type, length)
//!   on stdout. On SIGWINCH with no terminal of its own it takes the size from `winsize` in
//!   the bundle (`ROWS COLS`).

mod cgroup;
mod cp;
mod devices;
mod dns;
mod exec;
mod health;
mod init;
mod initproc;
mod launch;
mod rootfs;
mod seccomp;
mod spec;
mod sys;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use serde::Serialize;

use crate::cgroup::Cgroup;
use crate::spec::Spec;

#[derive(Serialize, Default, Clone)]
#[serde(rename_all = "PascalCase")]
struct State {
    status: String,
    pid: i32,
    /// The start time of `pid` (clock ticks since boot): with it the engine checks that the
    /// PID still names the container's process before it signals or joins it.
    pid_start: u64,
    shim_pid: u32,
    shim_start: u64,
    started_at: String,
    finished_at: String,
    exit_code: i32,
    #[serde(rename = "OOMKilled")]
    oom_killed: bool,
    error: String,
    restart_count: u32,
    cgroups: Vec<PathBuf>,
}

pub(crate) fn now_rfc3339() -> String {
    rfc3339(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default(),
    )
}

/// A time since the epoch as RFC 3339 in UTC, with nanoseconds, as Docker writes times.
fn rfc3339(d: Duration) -> String {
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = if month <= 2 { y + 1 } else { y };
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

fn write_state(bundle: &Path, state: &State) {
    let tmp = bundle.join(".state.json.tmp");
    if let Ok(bytes) = serde_json::to_vec(state)
        && fs::write(&tmp, bytes).is_ok()
    {
        let _ = fs::rename(&tmp, bundle.join("state.json"));
    }
}

/// The json-file log: one JSON object per line, rotated by size.
pub(crate) struct Log {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    max_size: u64,
    max_file: u32,
    partial: [Vec<u8>; 2],
}

impl Log {
    fn open(path: PathBuf, max_size: u64, max_file: u32) -> Log {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .ok();
        let size = file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len());
        Log {
            path,
            file,
            size,
            max_size,
            max_file: max_file.max(1),
            partial: [Vec::new(), Vec::new()],
        }
    }

    /// A log that records nothing: `exec`'s output is not the container's log.
    pub(crate) fn disabled() -> Log {
        Log {
            path: PathBuf::new(),
            file: None,
            size: 0,
            max_size: 0,
            max_file: 1,
            partial: [Vec::new(), Vec::new()],
        }
    }

    fn rotate(&mut self) {
        self.file = None;
        for i in (1..self.max_file).rev() {
            let from = if i == 1 {
                self.path.clone()
            } else {
                PathBuf::from(format!("{}.{}", self.path.display(), i - 1))
            };
            let _ = fs::rename(&from, format!("{}.{}", self.path.display(), i));
        }
        if self.max_file == 1 {
            let _ = fs::remove_file(&self.path);
        }
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .truncate(false)
            .open(&self.path)
            .ok();
        self.size = 0;
    }

    fn record(&mut self, stream: usize, line: &[u8]) {
        if self.file.is_none() {
            return;
        }
        let text = String::from_utf8_lossy(line);
        let name = if stream == 0 { "stdout" } else { "stderr" };
        let mut rec = serde_json::to_vec(
            &serde_json::json!({"log": text, "stream": name, "time": now_rfc3339()}),
        )
        .unwrap_or_default();
        rec.push(b'\n');
        if self.max_size > 0 && self.size + rec.len() as u64 > self.max_size && self.size > 0 {
            self.rotate();
        }
        if let Some(f) = &mut self.file
            && f.write_all(&rec).is_ok()
        {
            self.size += rec.len() as u64;
        }
    }

    /// Logs complete lines of `data`; keeps a trailing partial line for the next call.
    fn write(&mut self, stream: usize, data: &[u8]) {
        let mut buf = std::mem::take(&mut self.partial[stream]);
        buf.extend_from_slice(data);
        let mut start = 0;
        while let Some(nl) = buf[start..].iter().position(|b| *b == b'\n') {
            let end = start + nl + 1;
            self.record(stream, &buf[start..end]);
            start = end;
        }
        // A very long line without a newline is logged in pieces, as Docker does at 16 KiB.
        if buf.len() - start > 16 * 1024 {
            self.record(stream, &buf[start..]);
            start = buf.len();
        }
        self.partial[stream] = buf[start..].to_vec();
    }

    fn flush(&mut self) {
        for s in 0..2 {
            let rest = std::mem::take(&mut self.partial[s]);
            if !rest.is_empty() {
                self.record(s, &rest);
            }
        }
    }
}

struct Options {
    bundle: PathBuf,
    attach: bool,
    stdin: bool,
    stream: bool,
    framed: bool,
}

impl Options {
    /// A monitor that outlives whoever started it: detached, or streaming one run to a
    /// daemon's attach and detached after. It reports its start on fd 3, leads a session
    /// of its own, and keeps resident only what its loop needs.
    fn outlives_starter(&self) -> bool {
        !self.attach || self.stream
    }
}

/// Where the container's output goes besides its log.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Relay {
    None,
    /// To stdout and stderr as it comes.
    Plain,
    /// To stdout, each piece in a multiplexed frame.
    Framed,
}

/// The monitor's arguments (after the program's name).
fn parse_args(args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut bundle = None;
    let mut attach = false;
    let mut stdin = false;
    let mut stream = false;
    let mut framed = false;
    for a in args {
        match a.as_str() {
            "--attach" => attach = true,
            "--stdin" => stdin = true,
            "--stream" => stream = true,
            "--framed" => framed = true,
            s if s.starts_with('-') => return Err(format!("unknown flag {s}")),
            s => bundle = Some(PathBuf::from(s)),
        }
    }
    Ok(Options {
        bundle: bundle
            .ok_or("usage: ketch-shim [--attach [--stream [--framed]]] [--stdin] BUNDLE")?,
        attach: attach || stream,
        stdin,
        stream,
        framed,
    })
}

pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)
}

/// The restart policy: (kind, maximum retries for on-failure).
fn restart_policy(spec: &Spec) -> (String, u32) {
    let p = spec
        .annotations
        .get("io.ketch.restart")
        .cloned()
        .unwrap_or_else(|| "no".into());
    match p.split_once(':') {
        Some((k, n)) => (k.to_string(), n.parse().unwrap_or(0)),
        None => (p, 0),
    }
}

/// One run of the container: clone, set up, wait. Returns the exit status, or the start
/// error's.
pub(crate) struct Run {
    pub(crate) pid: Pid,
    pub(crate) out: OwnedFd,
    /// None with a terminal: it carries both streams.
    pub(crate) err: Option<OwnedFd>,
    pub(crate) input: Option<OwnedFd>,
    /// The terminal's master side, to pass window size changes to.
    pub(crate) tty: Option<OwnedFd>,
    /// `input` is held open with nothing to forward (`-i` detached: the container's
    /// standard input stays open, as Docker keeps it), not fed from the monitor's own.
    pub(crate) hold_input: bool,
}

/// What the container takes from others at each start: namespaces it joins (`--network
/// container:X`, a network's namespace), and with `--ipc container:X` the mounts and root of
/// X, to share X's /dev/shm from.
pub(crate) struct Joins {
    namespaces: Vec<(libc::c_int, OwnedFd)>,
    shm: Option<sys::ShmDonor>,
}

/// Opened once by the monitor and kept for every restart: a path naming another process's
/// namespace is only taken from the process recorded for it (started at
/// `io.ketch.join.start`, in the cgroup of container `io.ketch.join.owner`), and whatever it
/// names must be a namespace.
fn open_joins(spec: &Spec) -> Result<Joins, String> {
    let mut out = Joins {
        namespaces: Vec::new(),
        shm: None,
    };
    let shm_of_ipc = spec
        .annotations
        .get("io.ketch.shm")
        .is_some_and(|v| v == "ipc");
    for ns in &spec.linux.namespaces {
        let Some(path) = &ns.path else { continue };
        let flag = match ns.kind.as_str() {
            "network" => libc::CLONE_NEWNET,
            "ipc" => libc::CLONE_NEWIPC,
            "uts" => libc::CLONE_NEWUTS,
            "pid" => libc::CLONE_NEWPID,
            "mount" => libc::CLONE_NEWNS,
            "cgroup" => libc::CLONE_NEWCGROUP,
            other => return Err(format!("cannot join a {other} namespace")),
        };
        let owner = path
            .strip_prefix("/proc/")
            .and_then(|r| r.split_once('/'))
            .and_then(|(pid, rest)| rest.starts_with("ns/").then_some(pid))
            .and_then(|pid| pid.parse::<i32>().ok());
        let what =
            |e: &dyn std::fmt::Display| format!("join the {} namespace {path}: {e}", ns.kind);
        let pidfd = match owner {
            Some(pid) => {
                // Each kind names its own process (`io.ketch.join.pid.start`); the older
                // single pair served the network alone.
                let note = |what: &str| {
                    spec.annotations
                        .get(&format!("io.ketch.join.{}.{what}", ns.kind))
                        .or_else(|| spec.annotations.get(&format!("io.ketch.join.{what}")))
                };
                let start = note("start").and_then(|s| s.parse().ok()).unwrap_or(0);
                let owner = note("owner").map(String::as_str).unwrap_or_default();
                Some(sys::pidfd_of(pid, start, owner).map_err(|e| what(&e))?)
            }
            None => None,
        };
        let f = File::open(path).map_err(|e| what(&e))?;
        if ns.kind == "ipc" && shm_of_ipc {
            let (Some(pid), Some(pidfd)) = (owner, &pidfd) else {
                return Err(what(
                    &"its /dev/shm is another container's, and no container's process is named",
                ));
            };
            out.shm = Some(
                sys::ShmDonor::open(pid, pidfd.as_fd())
                    .map_err(|e| format!("share the /dev/shm of container process {pid}: {e}"))?,
            );
        }
        if let Some(p) = &pidfd
            && !sys::pidfd_alive(p.as_fd())
        {
            return Err(what(&"its process ended"));
        }
        out.namespaces.push((flag, OwnedFd::from(f)));
    }
    if shm_of_ipc && out.shm.is_none() {
        return Err("its /dev/shm is the IPC namespace's container's, and it joins none".into());
    }
    Ok(out)
}

fn start(
    bundle: &Path,
    spec: &Spec,
    cg: &Cgroup,
    stdin: bool,
    joins: &Joins,
    sealed: &OwnedFd,
    reaper: bool,
) -> Result<Run, init::StartError> {
    let e = |what: &str| {
        let what = what.to_string();
        move |err: io::Error| init::StartError {
            code: 125,
            message: format!("{what}: {err}"),
        }
    };
    let (out_r, out_w) = pipe().map_err(e("pipe"))?;
    let (err_r, err_w) = pipe().map_err(e("pipe"))?;
    let (in_r, in_w) = if stdin {
        let (r, w) = pipe().map_err(e("pipe"))?;
        (Some(r), Some(w))
    } else {
        (None, None)
    };
    let (go_r, go_w) = pipe().map_err(e("pipe"))?;
    let (exec_r, exec_w) = pipe().map_err(e("pipe"))?;
    // With a terminal, the container opens it in its own devpts (so its name resolves
    // there) and sends the master side back over this socket.
    let console = if spec.process.terminal {
        Some(
            nix::sys::socket::socketpair(
                nix::sys::socket::AddressFamily::Unix,
                nix::sys::socket::SockType::Stream,
                None,
                nix::sys::socket::SockFlag::SOCK_CLOEXEC,
            )
            .map_err(|err| e("socketpair")(err.into()))?,
        )
    } else {
        None
    };
    let mut flags: libc::c_long = 0;
    for ns in &spec.linux.namespaces {
        if ns.path.is_some() {
            continue;
        }
        flags |= match ns.kind.as_str() {
            "pid" => libc::CLONE_NEWPID,
            "mount" => libc::CLONE_NEWNS,
            "uts" => libc::CLONE_NEWUTS,
            "ipc" => libc::CLONE_NEWIPC,
            "network" => libc::CLONE_NEWNET,
            // Made after the cgroups are joined (`init::new_cgroupns`), so the namespace is
            // rooted there.
            _ => 0,
        } as libc::c_long;
    }
    // A PID namespace is joined for the children only (`pid_for_children`): the monitor
    // enters it just for the fork, and goes back to its own right after, so that nothing
    // else it forks lands there.
    let pid_join = joins
        .namespaces
        .iter()
        .find(|(f, _)| *f == libc::CLONE_NEWPID);
    let own_pid_ns = match pid_join {
        Some((_, fd)) => {
            let own = File::open("/proc/self/ns/pid_for_children")
                .map_err(e("open the PID namespace"))?;
            nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWPID)
                .map_err(|err| e("join the PID namespace")(err.into()))?;
            Some(own)
        }
        None => None,
    };
    // A fork with namespace flags, into the container's v2 group where there is one. This
    // process is single-threaded, so the child may run Rust code until it execs.
    let v2 = cg.v2_dir();
    // SAFETY: this process is single-threaded.
    let forked = unsafe { sys::fork_into(flags as u64, v2.as_ref().map(|f| f.as_fd())) };
    if let Some(own) = &own_pid_ns
        && forked.as_ref().is_ok_and(|(pid, _)| *pid != 0)
        && let Err(err) = nix::sched::setns(own, nix::sched::CloneFlags::CLONE_NEWPID)
    {
        // Whatever it forked next would land in the other container: stop here.
        eprintln!("ketch-shim: leave the joined PID namespace: {err}");
        std::process::exit(125);
    }
    let (pid, in_v2) = forked.map_err(e("clone"))?;
    drop(v2);
    if pid == 0 {
        // Not dumpable while this is the helper's image inside the container: no process of
        // the container can open its /proc/PID/exe (the host's ketch-shim) or trace it. The
        // exec of the user's program makes it dumpable again.
        // SAFETY: a process flag, no pointers.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
        // The monitor blocks signals to read them from a descriptor; the mask would survive
        // exec and leave the container deaf to SIGTERM.
        let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
        drop((out_r, err_r, go_w, exec_r));
        drop(in_w);
        // The setup dies with the monitor, wherever it waits (on a FIFO in the image, say):
        // nothing of the container outlives the monitor, started or not. The monitor holds
        // the go pipe open until the start is done, so a pipe that has lost its writer after
        // the signal was armed means the monitor was gone before.
        // SAFETY: a process flag, no pointers.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
        let mut b = [0u8; 1];
        if nix::unistd::read(go_r.as_raw_fd(), &mut b) != Ok(1) {
            unsafe { libc::_exit(125) };
        }
        let mut fds = [PollFd::new(go_r.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::ZERO);
        if fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLHUP))
        {
            unsafe { libc::_exit(125) };
        }
        // The child moves itself: on v1 that takes no global lock (see `Cgroup::join_self`).
        if let Err(err) = cg.join_self(in_v2) {
            let mut w = File::from(exec_w);
            let _ = write!(w, "125 join the container's cgroups: {err}");
            unsafe { libc::_exit(125) };
        }
        let stdin_fd: RawFd = match &in_r {
            Some(r) => r.as_raw_fd(),
            None => File::open("/dev/null")
                .map(std::os::fd::IntoRawFd::into_raw_fd)
                .unwrap_or(-1),
        };
        if console.is_none() {
            unsafe {
                libc::dup2(stdin_fd, 0);
                libc::dup2(out_w.as_raw_fd(), 1);
                libc::dup2(err_w.as_raw_fd(), 2);
            }
        }
        // A namespace to join that is not there must fail the start: going on would leave
        // the container in the monitor's (the host's) namespace.
        for (flag, fd) in joins
            .namespaces
            .iter()
            .filter(|(f, _)| *f != libc::CLONE_NEWPID)
        {
            if let Err(err) = nix::sched::setns(fd, nix::sched::CloneFlags::from_bits_retain(*flag))
            {
                let mut w = File::from(exec_w);
                let _ = write!(w, "125 join a namespace: {err}");
                unsafe { libc::_exit(125) };
            }
        }
        // The other container's /dev/shm, cloned here (this process's own mount namespace
        // is still the host's copy) and attached by the setup in place of a tmpfs.
        let shm = match joins.shm.as_ref().map(sys::ShmDonor::clone_shm) {
            Some(Err(err)) => {
                let mut w = File::from(exec_w);
                let _ = write!(
                    w,
                    "125 share the /dev/shm of the IPC namespace's container: {err}"
                );
                unsafe { libc::_exit(125) };
            }
            Some(Ok(tree)) => Some(tree),
            None => None,
        };
        let console_fd = console.as_ref().map(|(_, c)| c.as_raw_fd());
        // Become the sealed executable before anything else, while the host's root (with the
        // loader and libraries it needs) is still in view; it does the setup, and with
        // `--init` stays as PID 1.
        let err = initproc::exec_setup(
            sealed.as_fd(),
            bundle,
            &initproc::Handed {
                monitor: go_r.as_raw_fd(),
                report: exec_w.as_raw_fd(),
                console: console_fd,
                shm: shm.as_ref().map(|t| t.as_raw_fd()),
            },
            &spec.process.env,
            reaper,
        );
        let mut w = File::from(exec_w);
        let _ = w.write_all(format!("{} {}", err.code, err.message).as_bytes());
        unsafe { libc::_exit(err.code) };
    }
    let pid = Pid::from_raw(pid);
    drop((out_w, err_w, go_r, exec_w));
    drop(in_r);
    // Set from here, before the child may run: lowering it needs CAP_SYS_RESOURCE, which
    // only the monitor could have.
    if let Some(adj) = spec.process.oom_score_adj
        && let Err(err) = fs::write(format!("/proc/{pid}/oom_score_adj"), adj.to_string())
    {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = waitpid(pid, None);
        return Err(init::StartError {
            code: 125,
            message: format!("set oom_score_adj to {adj}: {err}"),
        });
    }
    // Held open until the process runs: its closing tells the child the monitor is gone.
    let mut go = File::from(go_w);
    let _ = go.write_all(b"g");
    let master = match console {
        Some((ours, theirs)) => {
            drop(theirs);
            match receive_fd(&ours) {
                Ok(m) => Some(m),
                Err(err) => {
                    let mut msg = String::new();
                    let _ = File::from(exec_r).read_to_string(&mut msg);
                    let _ = waitpid(pid, None);
                    let (code, message) = msg.split_once(' ').unwrap_or(("125", &msg));
                    return Err(init::StartError {
                        code: code.parse().unwrap_or(125),
                        message: if message.is_empty() {
                            format!("receive the terminal: {err}")
                        } else {
                            message.to_string()
                        },
                    });
                }
            }
        }
        None => None,
    };
    // The exec pipe closes on a successful exec; anything read from it is a start error.
    let mut msg = String::new();
    let _ = File::from(exec_r).read_to_string(&mut msg);
    drop(go);
    if !msg.is_empty() {
        let _ = waitpid(pid, None);
        let (code, message) = msg.split_once(' ').unwrap_or(("125", &msg));
        return Err(init::StartError {
            code: code.parse().unwrap_or(125),
            message: message.to_string(),
        });
    }
    if let Some(master) = master {
        drop((out_r, err_r, in_w));
        // Sized like our own terminal, if we have one.
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        if unsafe { libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) } == 0 {
            unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        }
        let dup = |fd: &OwnedFd| fd.try_clone().map_err(e("dup"));
        return Ok(Run {
            pid,
            out: dup(&master)?,
            err: None,
            input: if stdin { Some(dup(&master)?) } else { None },
            tty: Some(master),
            hold_input: false,
        });
    }
    Ok(Run {
        pid,
        out: out_r,
        err: Some(err_r),
        input: in_w,
        tty: None,
        hold_input: false,
    })
}

/// Receives one descriptor sent with SCM_RIGHTS.
pub(crate) fn receive_fd(sock: &OwnedFd) -> io::Result<OwnedFd> {
    let mut buf = [0u8; 1];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = nix::sys::socket::recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(io::Error::from)?;
    for c in msg.cmsgs().map_err(io::Error::from)? {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c
            && let Some(fd) = fds.first()
        {
            return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
        }
    }
    Err(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "no terminal received",
    ))
}

/// Copies the container's output to the log (and the terminal, when attached) until both
/// streams close and the container has exited; passes signals on. Returns the exit status.
/// Drops the page-table entries of the code and read-only data this process used to set the
/// container up, so a long-lived monitor keeps resident only what its loop touches again.
/// Only read-only, file-backed mappings with no private (anonymous) page are trimmed: a later
/// fault maps the same page-cache page back, so nothing is lost. A mapping the loader wrote
/// to before making it read-only (RELRO) holds anonymous pages and is left alone.
fn trim_resident() {
    let Ok(smaps) = fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    for (a, b) in trimmable(&smaps) {
        // SAFETY: a read-only, file-backed mapping of this process with no private page;
        // its contents come back unchanged from the page cache on the next access.
        unsafe { libc::madvise(a as *mut libc::c_void, b - a, libc::MADV_DONTNEED) };
    }
}

/// The mappings of an smaps text that can be dropped and read back unchanged: private,
/// not writable, backed by a file, with no anonymous (copied-on-write) page.
fn trimmable(smaps: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut candidate: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let Some(first) = f.next() else { continue };
        if let Some((a, b)) = first.split_once('-')
            && let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
        {
            let perms = f.next().unwrap_or("");
            let path = f.nth(3).unwrap_or("");
            candidate = (!perms.contains('w') && perms.ends_with('p') && path.starts_with('/'))
                .then_some((a, b));
            continue;
        }
        if first == "Anonymous:"
            && let Some(range) = candidate.take()
            && f.next() == Some("0")
        {
            out.push(range);
        }
    }
    out
}

/// What a container's monitor serves besides its stdio, each when it has one: its name
/// server, the terminal size file, health checks, and the socket clients attach input by.
#[derive(Default)]
pub(crate) struct Served<'a> {
    pub(crate) dns: Option<&'a mut dns::Server>,
    pub(crate) winsize: Option<&'a Path>,
    pub(crate) health: Option<&'a mut health::Health>,
    pub(crate) attach: Option<&'a std::os::unix::net::UnixListener>,
}

pub(crate) fn monitor(
    run: Run,
    log: &mut Log,
    mut relay: Relay,
    sfd: &SignalFd,
    served: Served<'_>,
) -> i32 {
    let Served {
        mut dns,
        winsize,
        mut health,
        attach,
    } = served;
    let mut open = [Some(run.out), run.err];
    let mut input = run.input;
    // Clients attached to the input later (the engine's `attach` with stdin), through the
    // bundle's `attach.sock`: what each sends goes to the container's input.
    let mut clients: Vec<std::os::unix::net::UnixStream> = Vec::new();
    let mut ended: Vec<usize> = Vec::new();
    let mut status: Option<i32> = None;
    let mut buf = vec![0u8; 32 * 1024];
    let stdin_fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(0) };
    // Standard input is forwarded when the container was given a pipe or terminal for it.
    let mut stdin_open = input.is_some() && !run.hold_input;
    loop {
        if status.is_some() && open.iter().all(Option::is_none) {
            break;
        }
        let mut fds: Vec<PollFd> = Vec::new();
        let mut which: Vec<usize> = Vec::new();
        fds.push(PollFd::new(sfd.as_fd(), PollFlags::POLLIN));
        which.push(9);
        for (i, o) in open.iter().enumerate() {
            if let Some(fd) = o {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                which.push(i);
            }
        }
        if stdin_open {
            fds.push(PollFd::new(stdin_fd, PollFlags::POLLIN));
            which.push(2);
        }
        if let Some(l) = attach
            && input.is_some()
            && status.is_none()
        {
            fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
            which.push(5);
            for (i, c) in clients.iter().enumerate() {
                fds.push(PollFd::new(c.as_fd(), PollFlags::POLLIN));
                which.push(100 + i);
            }
        }
        if let Some(d) = dns.as_deref()
            && status.is_none()
        {
            fds.push(PollFd::new(d.fd(), PollFlags::POLLIN));
            which.push(7);
            for u in d.upstream_fds() {
                fds.push(PollFd::new(u, PollFlags::POLLIN));
                which.push(8);
            }
        }
        if let Some(h) = health.as_deref()
            && status.is_none()
            && let Some(fd) = h.fd()
        {
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
            which.push(6);
        }
        // Once the container has exited, whatever still holds its pipes (a daemon it left
        // behind in another namespace cannot) gets a moment, then the pipes are abandoned.
        let timeout = if status.is_some() {
            PollTimeout::from(200u16)
        } else if let Some(h) = health.as_deref() {
            // Rounded up: waking a moment early would only poll again.
            let ms = h.timeout().as_millis().saturating_add(1).min(60_000) as u16;
            PollTimeout::from(ms)
        } else {
            PollTimeout::NONE
        };
        let n = match poll(&mut fds, timeout) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        };
        if n == 0 && status.is_some() {
            break;
        }
        let ready: Vec<(usize, bool)> = fds
            .iter()
            .zip(&which)
            .map(|(f, w)| (*w, f.revents().is_some_and(|r| !r.is_empty())))
            .collect();
        drop(fds);
        if status.is_none()
            && let Some(h) = health.as_deref_mut()
        {
            h.tick();
        }
        let mut relayed = false;
        for (w, is_ready) in ready {
            if !is_ready {
                continue;
            }
            match w {
                7 => {
                    if let Some(d) = dns.as_deref_mut() {
                        d.serve();
                    }
                }
                // One pass reads every upstream socket.
                8 if !relayed => {
                    relayed = true;
                    if let Some(d) = dns.as_deref_mut() {
                        d.relay();
                    }
                }
                9 => {
                    while let Ok(Some(si)) = sfd.read_signal() {
                        let sig = si.ssi_signo as i32;
                        if sig == libc::SIGCHLD {
                            loop {
                                match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                                    Ok(WaitStatus::Exited(p, code)) if p == run.pid => {
                                        status = Some(code)
                                    }
                                    Ok(WaitStatus::Signaled(p, s, _)) if p == run.pid => {
                                        status = Some(128 + s as i32)
                                    }
                                    Ok(WaitStatus::StillAlive) | Err(_) => break,
                                    // A health check's exec helper.
                                    Ok(WaitStatus::Exited(p, code)) => {
                                        if let Some(h) = health.as_deref_mut() {
                                            h.reaped(p, code);
                                        }
                                    }
                                    Ok(WaitStatus::Signaled(p, s, _)) => {
                                        if let Some(h) = health.as_deref_mut() {
                                            h.reaped(p, 128 + s as i32);
                                        }
                                    }
                                    Ok(_) => {}
                                }
                            }
                        } else if sig == libc::SIGWINCH
                            && let Some(master) = &run.tty
                        {
                            // Our terminal changed size: so does the container's, and the
                            // kernel tells its foreground process.
                            let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
                            let known = unsafe { libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) } == 0
                                || winsize.is_some_and(|p| read_winsize(p, &mut ws));
                            if known {
                                unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
                            }
                        } else if sig == SIG_RESIZE {
                            let v = si.ssi_int as u32;
                            let ws = libc::winsize {
                                ws_row: (v >> 16) as u16,
                                ws_col: v as u16,
                                ws_xpixel: 0,
                                ws_ypixel: 0,
                            };
                            if si.ssi_code == libc::SI_QUEUE
                                && ws.ws_row > 0
                                && ws.ws_col > 0
                                && let Some(master) = &run.tty
                            {
                                unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
                            }
                        } else if status.is_none()
                            && let Ok(s) = Signal::try_from(sig)
                        {
                            let _ = kill(run.pid, s);
                        }
                    }
                }
                0 | 1 => {
                    let fd = open[w].as_ref().expect("polled");
                    match nix::unistd::read(fd.as_raw_fd(), &mut buf) {
                        Ok(0) | Err(_) => open[w] = None,
                        Ok(n) => {
                            log.write(w, &buf[..n]);
                            let sent = match relay {
                                Relay::None => Ok(()),
                                Relay::Plain if w == 0 => io::stdout()
                                    .write_all(&buf[..n])
                                    .and_then(|_| io::stdout().flush()),
                                Relay::Plain => io::stderr().write_all(&buf[..n]),
                                Relay::Framed => {
                                    let mut frame = Vec::with_capacity(8 + n);
                                    frame.extend_from_slice(&[w as u8 + 1, 0, 0, 0]);
                                    frame.extend_from_slice(&(n as u32).to_be_bytes());
                                    frame.extend_from_slice(&buf[..n]);
                                    io::stdout()
                                        .write_all(&frame)
                                        .and_then(|_| io::stdout().flush())
                                }
                            };
                            // Whoever was attached went away: the log goes on alone.
                            if sent.is_err() {
                                relay = Relay::None;
                            }
                        }
                    }
                }
                6 => {
                    if let Some(h) = health.as_deref_mut() {
                        h.readable();
                    }
                }
                5 => {
                    if let Some(l) = attach {
                        while let Ok((c, _)) = l.accept() {
                            clients.push(c);
                        }
                    }
                }
                c if c >= 100 => {
                    let Some(client) = clients.get_mut(c - 100) else {
                        continue;
                    };
                    let gone = match client.read(&mut buf) {
                        Ok(0) | Err(_) => true,
                        Ok(n) => {
                            if let Some(i) = &input
                                && nix::unistd::write(i, &buf[..n]).is_err()
                            {
                                input = None;
                            }
                            false
                        }
                    };
                    if gone {
                        ended.push(c - 100);
                    }
                }
                2 => match nix::unistd::read(0, &mut buf) {
                    Ok(0) | Err(_) => {
                        stdin_open = false;
                        input = None;
                    }
                    Ok(n) => {
                        if let Some(i) = &input
                            && nix::unistd::write(i, &buf[..n]).is_err()
                        {
                            stdin_open = false;
                            input = None;
                        }
                    }
                },
                _ => {}
            }
        }
        // Clients that ended go, after the pass (the indices polled stay valid through it).
        for i in ended.drain(..).rev() {
            clients.remove(i);
        }
        if input.is_none() {
            clients.clear();
        }
    }
    drop(input);
    log.flush();
    status.unwrap_or(137)
}

/// The bundle's `attach.sock`, owner only, non-blocking. Named through the bundle's
/// descriptor: a bundle's path may be longer than a socket address holds.
fn listen_for_attach(bundle: &Path) -> io::Result<std::os::unix::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let dir = File::open(bundle)?;
    let path = PathBuf::from(format!("/proc/self/fd/{}/attach.sock", dir.as_raw_fd()));
    match fs::remove_file(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    // Owner-only from the moment it exists, whatever umask the monitor was started with
    // (it is single-threaded: no other file is made meanwhile).
    let old = unsafe { libc::umask(0o177) };
    let bound = std::os::unix::net::UnixListener::bind(&path);
    unsafe { libc::umask(old) };
    let l = bound?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// A terminal size written by the engine as `ROWS COLS`.
fn read_winsize(path: &Path, ws: &mut libc::winsize) -> bool {
    let Ok(text) = fs::read_to_string(path) else {
        return false;
    };
    let mut it = text.split_whitespace().map(|v| v.parse::<u16>());
    match (it.next(), it.next()) {
        (Some(Ok(rows)), Some(Ok(cols))) => {
            ws.ws_row = rows;
            ws.ws_col = cols;
            true
        }
        _ => false,
    }
}

/// The bundle's spec.
fn read_spec(bundle: &Path) -> Result<Spec, String> {
    fs::read(bundle.join("config.json"))
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        .map_err(|e| format!("read {}/config.json: {e}", bundle.display()))
}

/// `ketch-shim update BUNDLE`: the limits in the bundle's spec (which the engine has just
/// rewritten) applied to the running container's cgroups, as `docker update` changes them.
/// The monitor reads the same spec again at each restart.
fn update() -> i32 {
    let Some(bundle) = std::env::args().nth(2).map(PathBuf::from) else {
        eprintln!("ketch-shim update: missing bundle");
        return 125;
    };
    let spec = match read_spec(&bundle) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return 125;
        }
    };
    let Some(rel) = spec.linux.cgroups_path.as_deref() else {
        eprintln!("the spec names no cgroup");
        return 125;
    };
    let Some(resources) = spec.linux.resources.as_ref() else {
        return 0;
    };
    match Cgroup::existing(rel).and_then(|cg| cg.apply_limits(resources)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

fn main() {
    if initproc::selected() {
        initproc::main();
    }
    // Nothing the starter held is kept but stdio and, where the engine passes one, the report
    // pipe on fd 3: a descriptor a front door (or its caller) leaked must reach neither this
    // long-lived monitor nor, through it, a container.
    match std::env::args().nth(1).as_deref() {
        Some("exec") => {
            sys::close_from(4, false);
            std::process::exit(exec::run())
        }
        Some("cp") => {
            sys::close_from(3, false);
            std::process::exit(cp::run())
        }
        Some("update") => {
            sys::close_from(3, false);
            std::process::exit(update())
        }
        _ => {}
    }
    let opts = match parse_args(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("ketch-shim: {e}");
            std::process::exit(125);
        }
    };
    sys::close_from(if opts.outlives_starter() { 4 } else { 3 }, false);
    let bundle = opts.bundle.clone();
    let code = run(opts);
    withdraw_ports(&bundle);
    release_netns(&bundle);
    std::process::exit(code);
}

#[derive(serde::Deserialize)]
struct PortMap {
    proto: String,
    host_ip: Option<std::net::Ipv4Addr>,
    host_port: u16,
}

/// Binds (and for TCP listens on) each published host port named in `ports.json`.
fn hold_ports(bundle: &Path) -> Result<Vec<OwnedFd>, String> {
    let Ok(text) = fs::read(bundle.join("ports.json")) else {
        return Ok(vec![]);
    };
    let ports: Vec<PortMap> =
        serde_json::from_slice(&text).map_err(|e| format!("read ports.json: {e}"))?;
    let mut held = Vec::new();
    for p in ports {
        let ip = p.host_ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
        let addr = std::net::SocketAddr::from((ip, p.host_port));
        let fd: io::Result<OwnedFd> = if p.proto == "udp" {
            std::net::UdpSocket::bind(addr).map(OwnedFd::from)
        } else {
            std::net::TcpListener::bind(addr).map(OwnedFd::from)
        };
        match fd {
            Ok(fd) => held.push(fd),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                return Err(format!(
                    "Bind for {ip}:{} failed: port is already allocated",
                    p.host_port
                ));
            }
            Err(e) => return Err(format!("bind {ip}:{}/{}: {e}", p.host_port, p.proto)),
        }
    }
    Ok(held)
}

/// Runs the commands the engine left to withdraw the container's published ports.
fn withdraw_ports(bundle: &Path) {
    let Some(commands) = fs::read(bundle.join("ports-down.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Vec<Vec<String>>>(&b).ok())
    else {
        return;
    };
    for c in commands.iter().filter(|c| !c.is_empty()) {
        let _ = std::process::Command::new(&c[0])
            .args(&c[1..])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Lets go of the network namespace the engine made for the container (annotation
/// `io.ketch.netns`) once the container is done for good: unmounted and unlinked, it goes
/// with the veth pair inside as soon as no process holds it.
fn release_netns(bundle: &Path) {
    let Some(path) = fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Spec>(&b).ok())
        .and_then(|s| s.annotations.get("io.ketch.netns").cloned())
    else {
        return;
    };
    let _ = nix::mount::umount2(path.as_str(), nix::mount::MntFlags::MNT_DETACH);
    let _ = fs::remove_file(&path);
}

/// The signal the engine sends with a new terminal size as its value (`rows << 16 | cols`,
/// queued as sigqueue does; the engine's `EXEC_RESIZE_SIGNAL`): for a monitor whose own
/// standard input is not the terminal, the daemon's exec. Real-time, so none is lost.
const SIG_RESIZE: i32 = 40;

/// Blocks the signals a monitor handles and returns a descriptor to read them from.
pub(crate) fn monitor_signals() -> nix::Result<SignalFd> {
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
    ] {
        mask.add(s);
    }
    // The engine's resize of an exec's terminal: a real-time signal nix has no name for.
    let mut raw: libc::sigset_t = *mask.as_ref();
    // SAFETY: a valid set and signal number.
    unsafe { libc::sigaddset(&mut raw, SIG_RESIZE) };
    // SAFETY: initialised by sigemptyset (SigSet::empty) and sigaddset.
    let mask = unsafe { SigSet::from_sigset_t_unchecked(raw) };
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
}

/// Reports to whoever started a detached shim, on fd 3, then closes it.
pub(crate) fn report(ready: &mut Option<File>, msg: &str) {
    if let Some(mut f) = ready.take() {
        let _ = f.write_all(msg.as_bytes());
    }
}

fn run(opts: Options) -> i32 {
    let bundle = opts.bundle.clone();
    let mut ready: Option<File> = if !opts.outlives_starter() {
        None
    } else {
        // The engine hands a detached shim its report pipe as fd 3. It must not leak into
        // the container, whose holding it open would keep the starter waiting.
        match sys::report_fd() {
            Some(f) => Some(f),
            None => {
                eprintln!("ketch-shim: no report pipe on fd 3: the engine runs this helper");
                return 125;
            }
        }
    };
    let spec = match read_spec(&bundle) {
        Ok(s) => s,
        Err(msg) => {
            report(&mut ready, &format!("error 125 {msg}"));
            eprintln!("ketch-shim: {msg}");
            return 125;
        }
    };
    if opts.outlives_starter() {
        // Own session, no terminal, nothing inherited but the stream.
        let _ = nix::unistd::setsid();
    }
    if !opts.attach {
        if let Ok(null) = OpenOptions::new().read(true).write(true).open("/dev/null") {
            for fd in 0..3 {
                unsafe { libc::dup2(null.as_raw_fd(), fd) };
            }
        }
    }
    // Signals arrive through a descriptor, in the monitor's poll loop.
    let sfd = match monitor_signals() {
        Ok(s) => s,
        Err(e) => {
            report(&mut ready, &format!("error 125 signalfd: {e}"));
            return 125;
        }
    };
    // Orphans the container leaves behind come to us, not to the host's init.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let id = bundle
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let cgroups_path = spec
        .linux
        .cgroups_path
        .clone()
        .unwrap_or_else(|| format!("/ketch/{id}"));
    let max_size = spec
        .annotations
        .get("io.ketch.log.max-size")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let max_file = spec
        .annotations
        .get("io.ketch.log.max-file")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    // `--log-driver none`: the output goes to attached clients only.
    let mut log = if spec
        .annotations
        .get("io.ketch.log.driver")
        .map(String::as_str)
        == Some("none")
    {
        Log::disabled()
    } else {
        Log::open(bundle.join("container.log"), max_size, max_file)
    };
    let mut state = State {
        shim_pid: std::process::id(),
        shim_start: sys::process_start_time(std::process::id()),
        ..Default::default()
    };
    // A start that fails before the container runs: recorded for the engine (an attached
    // starter reads it from the state file) and reported to a detached one.
    let fail_early = |state: &mut State, ready: &mut Option<File>, msg: String| -> i32 {
        state.status = "exited".into();
        state.exit_code = 125;
        state.error = msg.clone();
        state.finished_at = now_rfc3339();
        write_state(&bundle, state);
        report(ready, &format!("error 125 {msg}"));
        125
    };
    // Published ports: held for as long as the container runs, so nothing else on the host
    // takes them; a port that is taken already fails the start.
    let _held = match hold_ports(&bundle) {
        Ok(h) => h,
        Err(msg) => return fail_early(&mut state, &mut ready, msg),
    };
    // A container with its input open takes input from clients attached later too.
    let attach = if spec
        .annotations
        .get("io.ketch.stdin-open")
        .is_some_and(|v| v == "true")
    {
        match listen_for_attach(&bundle) {
            Ok(l) => Some(l),
            Err(e) => return fail_early(&mut state, &mut ready, format!("attach socket: {e}")),
        }
    } else {
        None
    };
    // On a user-defined network, this monitor is the container's name server.
    let mut dns = match (
        spec.annotations.get("io.ketch.netns"),
        spec.annotations.get("io.ketch.dns.records"),
    ) {
        (Some(netns), Some(records)) => {
            let upstream = spec
                .annotations
                .get("io.ketch.dns.upstream")
                .map(|u| {
                    u.split(',')
                        .filter_map(|s| s.parse::<std::net::IpAddr>().ok())
                        .map(|ip| std::net::SocketAddr::new(ip, 53))
                        .collect()
                })
                .unwrap_or_default();
            match dns::Server::bind(netns, PathBuf::from(records), upstream) {
                Ok(s) => Some(s),
                Err(e) => {
                    let msg = format!("start the name server on {}: {e}", dns::LISTEN);
                    return fail_early(&mut state, &mut ready, msg);
                }
            }
        }
        _ => None,
    };
    let joins = match open_joins(&spec) {
        Ok(j) => j,
        Err(msg) => return fail_early(&mut state, &mut ready, msg),
    };
    // The first process does its setup in this executable sealed against writes, made once
    // for every run: whatever it execs, a `#!/proc/self/exe` program included, can only ever
    // reach the sealed copy, never the host's file (CVE-2019-5736). With `--init` it stays
    // as PID 1.
    let sealed = match sys::sealed_self() {
        Ok(fd) => fd,
        Err(e) => return fail_early(&mut state, &mut ready, format!("seal ketch-init: {e}")),
    };
    let reaper = spec
        .annotations
        .get("io.ketch.init")
        .is_some_and(|v| v == "true");
    loop {
        // Read again at each restart (not the first run: the spec was just read), as
        // `update` may have changed the limits since.
        let current = if state.restart_count > 0 {
            read_spec(&bundle).ok()
        } else {
            None
        };
        let resources = current
            .as_ref()
            .and_then(|s| s.linux.resources.as_ref())
            .or(spec.linux.resources.as_ref());
        let cg = match Cgroup::create(&cgroups_path, resources) {
            Ok(c) => c,
            Err(e) => {
                let msg = format!("cgroups: {e}");
                state.status = "exited".into();
                state.exit_code = 125;
                state.error = msg.clone();
                state.finished_at = now_rfc3339();
                write_state(&bundle, &state);
                report(&mut ready, &format!("error 125 {msg}"));
                return 125;
            }
        };
        state.cgroups = cg.paths();
        // Recorded before anything runs in them: the engine removes them even if this
        // monitor is killed before the start is done.
        write_state(&bundle, &state);
        // A container removed before that record was made (its bundle moved aside, so the
        // record could not be) is not started: nothing would own what runs.
        if !bundle.join("state.json").exists() {
            cg.destroy();
            report(
                &mut ready,
                "error 125 the container was removed while it started",
            );
            return 125;
        }
        // `-i` without an attached input: a pipe the monitor holds, so that the container
        // reads no end of its input until it is stopped.
        let hold = !opts.stdin
            && spec
                .annotations
                .get("io.ketch.stdin-open")
                .is_some_and(|v| v == "true");
        let run = match start(
            &bundle,
            &spec,
            &cg,
            opts.stdin || hold,
            &joins,
            &sealed,
            reaper,
        ) {
            Ok(mut r) => {
                r.hold_input = hold;
                r
            }
            Err(err) => {
                cg.destroy();
                state.status = "exited".into();
                state.exit_code = err.code;
                state.error = err.message.clone();
                state.pid = 0;
                state.finished_at = now_rfc3339();
                state.cgroups.clear();
                write_state(&bundle, &state);
                // An attached starter reads the error from the state file.
                report(&mut ready, &format!("error {} {}", err.code, err.message));
                return err.code;
            }
        };
        state.status = "running".into();
        state.pid = run.pid.as_raw();
        state.pid_start = sys::process_start_time(run.pid.as_raw() as u32);
        state.started_at = now_rfc3339();
        state.finished_at.clear();
        state.error.clear();
        state.oom_killed = false;
        write_state(&bundle, &state);
        report(&mut ready, &format!("ok {}", run.pid));
        if opts.outlives_starter() {
            trim_resident();
        }
        let relay = match (opts.attach, opts.framed) {
            (false, _) => Relay::None,
            (true, false) => Relay::Plain,
            (true, true) => Relay::Framed,
        };
        let winsize = bundle.join("winsize");
        let mut health = health::Health::new(&spec, &bundle, run.pid.as_raw());
        let code = monitor(
            run,
            &mut log,
            relay,
            &sfd,
            Served {
                dns: dns.as_mut(),
                winsize: Some(&winsize),
                health: health.as_mut(),
                attach: attach.as_ref(),
            },
        );
        // A stream is for one run: after a restart the container goes on detached.
        if opts.stream {
            if let Ok(null) = OpenOptions::new().read(true).write(true).open("/dev/null") {
                for fd in 0..3 {
                    unsafe { libc::dup2(null.as_raw_fd(), fd) };
                }
            }
        }
        state.oom_killed = cg.oom_killed();
        // Kill what is left in the container's cgroups (with a pid namespace, nothing is).
        cg.destroy();
        state.cgroups.clear();
        state.exit_code = code;
        state.finished_at = now_rfc3339();
        state.pid = 0;
        state.pid_start = 0;
        // A stop request (recorded by the engine before it signals) ends restarts.
        let stopped = bundle.join("stop-requested").exists();
        let (policy, max_retries) =
            read_spec(&bundle).map_or_else(|_| restart_policy(&spec), |s| restart_policy(&s));
        if !restarts(&policy, max_retries, stopped, code, state.restart_count) {
            // Its ports and network go before the end is recorded: whoever waits for the
            // container to stop finds them gone.
            withdraw_ports(&bundle);
            release_netns(&bundle);
            state.status = "exited".into();
            write_state(&bundle, &state);
            return if opts.outlives_starter() { 0 } else { code };
        }
        state.restart_count += 1;
        state.status = "restarting".into();
        write_state(&bundle, &state);
        std::thread::sleep(restart_delay(state.restart_count));
    }
}

/// Whether a container that ended with `code` runs again under `policy` (with
/// `max_retries` for on-failure, 0: no limit), having restarted `count` times, unless
/// it was `stopped` on request.
fn restarts(policy: &str, max_retries: u32, stopped: bool, code: i32, count: u32) -> bool {
    !stopped
        && match policy {
            "always" | "unless-stopped" => true,
            "on-failure" => code != 0 && (max_retries == 0 || count < max_retries),
            _ => false,
        }
}

/// The wait before restart `count`: 100 ms more each time, up to a second. (Docker's
/// back-off starts at 100 ms and doubles; a short, bounded delay is enough here.)
fn restart_delay(count: u32) -> std::time::Duration {
    std::time::Duration::from_millis(100 * u64::from(count.min(10)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_in_utc_across_leap_days_and_centuries() {
        for (secs, nanos, want) in [
            (0, 0, "1970-01-01T00:00:00.000000000Z"),
            (68169600, 1, "1972-02-29T00:00:00.000000001Z"),
            (946684799, 999_999_999, "1999-12-31T23:59:59.999999999Z"),
            (951782400, 0, "2000-02-29T00:00:00.000000000Z"),
            (1000000000, 500, "2001-09-09T01:46:40.000000500Z"),
            (1709251199, 0, "2024-02-29T23:59:59.000000000Z"),
            (4102444800, 0, "2100-01-01T00:00:00.000000000Z"),
            (4107542399, 0, "2100-02-28T23:59:59.000000000Z"),
            (4107542400, 0, "2100-03-01T00:00:00.000000000Z"),
            (253402300799, 0, "9999-12-31T23:59:59.000000000Z"),
        ] {
            assert_eq!(rfc3339(Duration::new(secs, nanos)), want, "{secs}");
        }
        let now = now_rfc3339();
        assert!(now.starts_with("20") && now.len() == 30, "{now}");
    }

    fn lines(path: &Path) -> Vec<serde_json::Value> {
        fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn the_log_records_whole_lines_per_stream() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.json");
        let mut log = Log::open(path.clone(), 0, 1);
        log.write(0, b"one\ntw");
        log.write(1, b"err");
        log.write(0, b"o\nthree");
        let got = lines(&path);
        assert_eq!(got.len(), 2);
        assert_eq!(
            (&got[0]["log"], &got[0]["stream"]),
            (&"one\n".into(), &"stdout".into())
        );
        assert_eq!(got[1]["log"], "two\n");
        let t = got[0]["time"].as_str().unwrap();
        assert!(t.ends_with('Z') && t.len() == 30, "{t}");
        // What is left of a line is logged at the end, each stream's own.
        log.flush();
        let got = lines(&path);
        assert_eq!(got.len(), 4);
        let rest: Vec<(&str, &str)> = got[2..]
            .iter()
            .map(|v| (v["log"].as_str().unwrap(), v["stream"].as_str().unwrap()))
            .collect();
        assert_eq!(rest, [("three", "stdout"), ("err", "stderr")]);
        log.flush();
        assert_eq!(lines(&path).len(), 4);

        // A line longer than 16 KiB goes in pieces; invalid UTF-8 is replaced, not lost.
        let long = vec![b'x'; 16 * 1024 + 1];
        log.write(1, &long);
        log.write(1, b"\xff\n");
        let got = lines(&path);
        assert_eq!(got.len(), 6);
        assert_eq!(got[4]["log"].as_str().unwrap().len(), 16 * 1024 + 1);
        assert_eq!(got[5]["log"], "\u{fffd}\n");
        // Exactly 16 KiB waits for more; complete lines before a shorter rest do not push
        // the rest out.
        log.write(0, &vec![b'x'; 16 * 1024]);
        assert_eq!(lines(&path).len(), 6);
        log.write(0, b"\n");
        log.write(
            1,
            &[vec![b'a'; 10_000], b"\n".to_vec(), vec![b'b'; 7_000]].concat(),
        );
        let got = lines(&path);
        assert_eq!(got.len(), 8);
        assert_eq!(got[7]["log"].as_str().unwrap().len(), 10_001);
        log.write(1, b"\n");
        assert_eq!(lines(&path)[8]["log"].as_str().unwrap().len(), 7_001);

        let mut off = Log::disabled();
        off.write(0, b"nothing\n");
        off.flush();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        // A log reopened appends.
        let mut again = Log::open(path.clone(), 0, 1);
        again.write(0, b"more\n");
        assert_eq!(lines(&path).len(), 10);
    }

    #[test]
    fn the_log_rotates_by_size_into_numbered_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.json");
        let one = |n: usize| {
            let mut l = Log::open(path.clone(), 0, 1);
            l.write(0, format!("{n:03}\n").as_bytes());
            fs::metadata(&path).unwrap().len()
        };
        let size = one(0);
        fs::remove_file(&path).unwrap();
        // Room for two records a file (exactly), three files.
        let mut log = Log::open(path.clone(), 2 * size, 3);
        for n in 0..7 {
            log.write(0, format!("{n:03}\n").as_bytes());
        }
        let text = |p: &Path| -> Vec<String> {
            lines(p)
                .iter()
                .map(|v| v["log"].as_str().unwrap().trim().to_string())
                .collect()
        };
        let side = |i: u32| PathBuf::from(format!("{}.{i}", path.display()));
        assert_eq!(text(&path), ["006"]);
        assert_eq!(text(&side(1)), ["004", "005"]);
        assert_eq!(text(&side(2)), ["002", "003"]);
        assert!(!side(3).exists());

        // One file: the log starts again when full; a record larger than the limit is kept.
        let solo = dir.path().join("solo.json");
        let mut log = Log::open(solo.clone(), 2 * size, 1);
        for n in 0..5 {
            log.write(0, format!("{n:03}\n").as_bytes());
        }
        assert_eq!(text(&solo), ["004"]);
        assert!(!PathBuf::from(format!("{}.1", solo.display())).exists());
        log.write(0, &[b'y'; 200]);
        log.write(0, b"\n");
        assert_eq!(lines(&solo).len(), 1);
        // A first record larger than the limit goes in the first file: nothing to rotate.
        let small = dir.path().join("small.json");
        let mut log = Log::open(small.clone(), size - 1, 2);
        log.write(0, b"000\n");
        assert_eq!(text(&small), ["000"]);
        assert!(!PathBuf::from(format!("{}.1", small.display())).exists());
        // Opening finds the size already there.
        let mut log = Log::open(solo.clone(), fs::metadata(&solo).unwrap().len() + 1, 2);
        log.write(0, b"z\n");
        assert_eq!(text(&solo), ["z"]);
    }

    #[test]
    fn only_clean_read_only_file_mappings_are_trimmed() {
        let smaps = "\
55d0a0000000-55d0a0010000 r--p 00000000 08:01 123 /usr/bin/ketch-shim
Size:                 64 kB
Anonymous:             0 kB
55d0a0010000-55d0a0020000 r-xp 00010000 08:01 123 /usr/bin/ketch-shim
Anonymous:             0 kB
55d0a0020000-55d0a0030000 rw-p 00020000 08:01 123 /usr/bin/ketch-shim
Anonymous:             0 kB
55d0a0030000-55d0a0040000 r--p 00030000 08:01 123 /usr/bin/ketch-shim
Anonymous:             4 kB
7f0000000000-7f0000001000 r--s 00000000 08:01 9 /dev/shm/x
Anonymous:             0 kB
7f0000001000-7f0000002000 r--p 00000000 00:00 0
Anonymous:             0 kB
7f0000002000-7f0000003000 r--p 00000000 00:00 0 [vvar]
Anonymous:             0 kB
7f0000003000-7f0000004000 r-xp 00000000 08:01 77 /lib/libc.so.6
Rss:                   4 kB
Anonymous:             0 kB
";
        assert_eq!(
            trimmable(smaps),
            [
                (0x55d0a0000000, 0x55d0a0010000),
                (0x55d0a0010000, 0x55d0a0020000),
                (0x7f0000003000, 0x7f0000004000)
            ]
        );
        assert!(trimmable("").is_empty());
        assert!(trimmable("Anonymous: 0 kB\n").is_empty());
        // This process's own table parses and has such mappings (its program's text).
        let own = fs::read_to_string("/proc/self/smaps").unwrap();
        assert!(!trimmable(&own).is_empty());
    }

    /// Trimming drops a clean read-only file mapping's pages from this process, all of
    /// them, and they read back the same.
    #[test]
    fn trimming_drops_the_pages_and_they_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mapped");
        let data: Vec<u8> = (0..16 * 4096u32).map(|i| (i % 251) as u8).collect();
        fs::write(&path, &data).unwrap();
        let file = File::open(&path).unwrap();
        // SAFETY: a private read-only mapping of a file this test owns, unmapped below.
        let at = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                data.len(),
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        assert_ne!(at, libc::MAP_FAILED);
        // SAFETY: the mapping is data.len() bytes long and stays mapped while read.
        let mapped = unsafe { std::slice::from_raw_parts(at as *const u8, data.len()) };
        let rss = || {
            let smaps = fs::read_to_string("/proc/self/smaps").unwrap();
            let head = format!("{:x}-", at as usize);
            let mut lines = smaps.lines().skip_while(|l| !l.starts_with(&head)).skip(1);
            lines
                .find_map(|l| l.strip_prefix("Rss:"))
                .map(|v| v.trim().to_string())
                .unwrap()
        };
        let sum = |m: &[u8]| m.iter().map(|b| u64::from(*b)).sum::<u64>();
        assert_eq!(sum(std::hint::black_box(mapped)), sum(&data));
        assert_eq!(rss(), "64 kB");
        trim_resident();
        assert_eq!(rss(), "0 kB");
        assert_eq!(mapped, &data[..]);
        // SAFETY: the mapping made above, no longer used.
        unsafe { libc::munmap(at, data.len()) };
    }

    #[test]
    fn the_restart_policy_is_read_from_its_annotation() {
        let spec = |policy: Option<&str>| -> Spec {
            let mut v = serde_json::json!({});
            if let Some(p) = policy {
                v["annotations"] = serde_json::json!({"io.ketch.restart": p});
            }
            serde_json::from_value(v).unwrap()
        };
        assert_eq!(restart_policy(&spec(None)), ("no".into(), 0));
        assert_eq!(restart_policy(&spec(Some("always"))), ("always".into(), 0));
        assert_eq!(
            restart_policy(&spec(Some("on-failure:3"))),
            ("on-failure".into(), 3)
        );
        assert_eq!(
            restart_policy(&spec(Some("on-failure:x"))),
            ("on-failure".into(), 0)
        );
    }

    /// Published ports are held by protocol, and one taken already is refused by name.
    #[test]
    fn published_ports_are_held_by_protocol() {
        let dir = tempfile::tempdir().unwrap();
        let free = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        };
        assert!(hold_ports(dir.path()).unwrap().is_empty(), "no ports.json");
        let (tcp, udp) = (free(), free());
        fs::write(
            dir.path().join("ports.json"),
            format!(
                r#"[{{"proto": "tcp", "host_ip": "127.0.0.1", "host_port": {tcp}}},
                    {{"proto": "udp", "host_ip": "127.0.0.1", "host_port": {udp}}}]"#
            ),
        )
        .unwrap();
        let held = hold_ports(dir.path()).unwrap();
        assert_eq!(held.len(), 2);
        let in_use = |e: io::Error| e.kind() == io::ErrorKind::AddrInUse;
        assert!(std::net::TcpListener::bind(("127.0.0.1", tcp)).is_err_and(in_use));
        assert!(std::net::UdpSocket::bind(("127.0.0.1", udp)).is_err_and(in_use));
        // The other protocol's port of the same number is not held.
        drop(std::net::UdpSocket::bind(("127.0.0.1", tcp)).unwrap());
        drop(std::net::TcpListener::bind(("127.0.0.1", udp)).unwrap());
        // Held already (here by this test): refused, as Docker words it.
        let err = hold_ports(dir.path()).unwrap_err();
        assert_eq!(
            err,
            format!("Bind for 127.0.0.1:{tcp} failed: port is already allocated")
        );
        drop(held);
        fs::write(dir.path().join("ports.json"), "[{").unwrap();
        assert!(
            hold_ports(dir.path())
                .unwrap_err()
                .starts_with("read ports.json")
        );
    }

    /// The engine's commands to withdraw the ports run when the container is done; an
    /// empty one is passed over.
    #[test]
    fn the_commands_to_withdraw_ports_run() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        withdraw_ports(dir.path());
        fs::write(
            dir.path().join("ports-down.json"),
            serde_json::to_vec(&[
                vec!["touch".to_string(), a.display().to_string()],
                vec![],
                vec!["touch".to_string(), b.display().to_string()],
            ])
            .unwrap(),
        )
        .unwrap();
        withdraw_ports(dir.path());
        assert!(a.exists() && b.exists());
    }

    /// The container's network namespace file goes when it is done: unmounted, removed.
    #[test]
    fn the_network_namespace_is_let_go() {
        let dir = tempfile::tempdir().unwrap();
        let ns = dir.path().join("netns");
        let source = dir.path().join("source");
        fs::write(&ns, "").unwrap();
        fs::write(&source, "").unwrap();
        release_netns(dir.path());
        assert!(ns.exists(), "no config.json: nothing named, nothing done");
        let spec = serde_json::json!({"annotations": {"io.ketch.netns": ns}});
        fs::write(dir.path().join("config.json"), spec.to_string()).unwrap();
        let (mounted, after) = sys::in_own_mountns(|| {
            nix::mount::mount(
                Some(&source),
                &ns,
                None::<&str>,
                nix::mount::MsFlags::MS_BIND,
                None::<&str>,
            )
            .unwrap();
            let mounted = fs::read_to_string("/proc/thread-self/mountinfo").unwrap();
            release_netns(dir.path());
            let after = fs::read_to_string("/proc/thread-self/mountinfo").unwrap();
            (mounted, after)
        });
        let name = ns.display().to_string();
        assert!(mounted.contains(&name));
        assert!(!after.contains(&name), "{after}");
        assert!(!ns.exists());
    }

    #[test]
    fn the_restart_policy_decides_who_runs_again() {
        for policy in ["always", "unless-stopped"] {
            assert!(restarts(policy, 0, false, 0, 0));
            assert!(restarts(policy, 0, false, 137, 1000));
            assert!(!restarts(policy, 0, true, 1, 0), "stopped on request");
        }
        for policy in ["no", "", "bogus"] {
            assert!(!restarts(policy, 0, false, 1, 0));
        }
        // on-failure: a failure only, and at most max_retries times if given.
        assert!(!restarts("on-failure", 0, false, 0, 0));
        assert!(restarts("on-failure", 0, false, 1, 0));
        assert!(restarts("on-failure", 0, false, -1, 99));
        assert!(restarts("on-failure", 3, false, 2, 2));
        assert!(!restarts("on-failure", 3, false, 2, 3));
        assert!(!restarts("on-failure", 3, false, 2, 4));
        assert!(!restarts("on-failure", 3, true, 2, 0));
        let ms = |n| restart_delay(n).as_millis();
        assert_eq!(
            [ms(0), ms(1), ms(2), ms(10), ms(11), ms(500)],
            [0, 100, 200, 1000, 1000, 1000]
        );
    }

    #[test]
    fn a_window_size_is_two_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("winsize");
        let read = |text: Option<&str>| {
            if let Some(t) = text {
                fs::write(&path, t).unwrap();
            }
            let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
            let ok = read_winsize(&path, &mut ws);
            (ok, ws.ws_row, ws.ws_col)
        };
        assert_eq!(read(None), (false, 0, 0));
        assert_eq!(read(Some("40 120\n")), (true, 40, 120));
        assert_eq!(read(Some("40")), (false, 0, 0));
        assert_eq!(read(Some("40 wide")), (false, 0, 0));
        assert_eq!(read(Some("70000 80")), (false, 0, 0));
    }

    /// Published host ports are held by the monitor, each for its own protocol; one held
    /// already is refused with Docker's words. In a network namespace of the test's own.
    #[test]
    fn published_ports_are_held_per_protocol() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().to_path_buf();
        let seen = std::thread::spawn(move || {
            // SAFETY: unshare(2) of this thread's network namespace only.
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
            // With loopback up the namespace has local addresses, and others are not.
            crate::init::loopback_up().unwrap();
            let hold = |ports: &str| {
                fs::write(bundle.join("ports.json"), ports).unwrap();
                hold_ports(&bundle)
            };
            let none = {
                let _ = fs::remove_file(bundle.join("ports.json"));
                hold_ports(&bundle).map(|h| h.len())
            };
            let both = hold(
                r#"[{"proto": "tcp", "host_ip": "127.0.0.1", "host_port": 8080},
                    {"proto": "udp", "host_ip": "127.0.0.1", "host_port": 8080}]"#,
            )
            .unwrap();
            let tcp_again =
                hold(r#"[{"proto": "tcp", "host_ip": null, "host_port": 8080}]"#).map(|h| h.len());
            let udp_again =
                hold(r#"[{"proto": "udp", "host_ip": "127.0.0.1", "host_port": 8080}]"#)
                    .map(|h| h.len());
            let other = hold(r#"[{"proto": "udp", "host_ip": "127.0.0.1", "host_port": 8081}]"#)
                .map(|h| h.len());
            let foreign = hold(r#"[{"proto": "tcp", "host_ip": "192.0.2.77", "host_port": 80}]"#)
                .map(|h| h.len());
            let bad = hold("{").map(|h| h.len());
            drop(both);
            (none, tcp_again, udp_again, other, foreign, bad)
        })
        .join()
        .unwrap();
        assert_eq!(seen.0, Ok(0));
        assert_eq!(
            seen.1,
            Err("Bind for 0.0.0.0:8080 failed: port is already allocated".into())
        );
        assert_eq!(
            seen.2,
            Err("Bind for 127.0.0.1:8080 failed: port is already allocated".into())
        );
        assert_eq!(seen.3, Ok(1));
        let foreign = seen.4.unwrap_err();
        assert!(foreign.starts_with("bind 192.0.2.77:80/tcp: "), "{foreign}");
        assert!(seen.5.unwrap_err().starts_with("read ports.json: "));
    }

    #[test]
    fn the_monitors_arguments() {
        let parse = |a: &[&str]| {
            parse_args(a.iter().map(|s| s.to_string()))
                .map(|o| (o.bundle, o.attach, o.stdin, o.stream, o.framed))
        };
        assert_eq!(
            parse(&["/b"]),
            Ok((PathBuf::from("/b"), false, false, false, false))
        );
        assert_eq!(
            parse(&["--attach", "--stdin", "/b"]),
            Ok((PathBuf::from("/b"), true, true, false, false))
        );
        // A stream is attached, framed or not.
        assert_eq!(
            parse(&["--stream", "--framed", "/b"]),
            Ok((PathBuf::from("/b"), true, false, true, true))
        );
        assert_eq!(
            parse(&["--bogus", "/b"]),
            Err("unknown flag --bogus".into())
        );
        assert!(
            parse(&["--attach"])
                .unwrap_err()
                .starts_with("usage: ketch-shim")
        );
    }
}
