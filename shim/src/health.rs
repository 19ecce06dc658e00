//! Health checks, run by the monitor: at each interval the check's command runs in the
//! container (through `ketch-shim exec`, which seals itself before it joins), and its exit
//! status and output, the failing streak and the status (`starting`, `healthy`, `unhealthy`)
//! go to the bundle's `health.json`, which the engine shows as `State.Health`.
//!
//! Docker's rules: the first check runs an interval after the start (the start interval
//! while in the start period); exit 0 is healthy; anything else, or running longer than the
//! timeout (killed, exit -1), is a failure; failures in the start period do not count, but a
//! success ends it; `retries` failures in a row make the container unhealthy. The last five
//! results are kept.

use std::collections::VecDeque;
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::now_rfc3339;
use crate::spec::Spec;

/// Docker's defaults.
const INTERVAL: Duration = Duration::from_secs(30);
const TIMEOUT: Duration = Duration::from_secs(30);
const START_INTERVAL: Duration = Duration::from_secs(5);
const RETRIES: u32 = 3;
/// What is kept of a check's output, as Docker keeps it.
const MAX_OUTPUT: usize = 4096;
const KEEP: usize = 5;

/// The check as the engine writes it in the spec (the API's `HealthConfig`, nanoseconds).
#[derive(Debug, Deserialize, Default)]
#[serde(default, rename_all = "PascalCase")]
struct Config {
    test: Vec<String>,
    interval: i64,
    timeout: i64,
    retries: i64,
    start_period: i64,
    start_interval: i64,
}

/// One check's result, as `State.Health.Log` shows it.
#[derive(Debug, Serialize, Clone)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    start: String,
    end: String,
    exit_code: i32,
    output: String,
}

/// `State.Health`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Report<'a> {
    status: &'a str,
    failing_streak: u32,
    log: &'a VecDeque<Entry>,
}

struct Probe {
    pid: Pid,
    out: File,
    report: File,
    output: Vec<u8>,
    start: String,
    deadline: Instant,
}

pub(crate) struct Health {
    cmd: Vec<String>,
    interval: Duration,
    timeout: Duration,
    retries: u32,
    start_period: Duration,
    start_interval: Duration,
    started: Instant,
    next: Instant,
    /// The container's first process, as `exec` names it.
    target: (i32, u64, String),
    bundle: PathBuf,
    probe: Option<Probe>,
    status: &'static str,
    streak: u32,
    log: VecDeque<Entry>,
}

fn duration(ns: i64, default: Duration) -> Duration {
    if ns > 0 {
        Duration::from_nanos(ns as u64)
    } else {
        default
    }
}

impl Health {
    /// The container's check, if its spec has one (not `NONE`), for the run whose first
    /// process is `pid`: written as `starting`.
    pub(crate) fn new(spec: &Spec, bundle: &Path, pid: i32) -> Option<Health> {
        let cfg: Config = serde_json::from_str(spec.annotations.get("io.ketch.health")?).ok()?;
        let cmd = match cfg.test.first().map(String::as_str) {
            Some("CMD") => cfg.test[1..].to_vec(),
            Some("CMD-SHELL") => {
                let shell = spec
                    .annotations
                    .get("io.ketch.health.shell")
                    .and_then(|s| serde_json::from_str::<Vec<String>>(s).ok())
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
                shell.into_iter().chain([cfg.test[1..].join(" ")]).collect()
            }
            _ => return None,
        };
        if cmd.is_empty() {
            return None;
        }
        let owner = bundle.file_name()?.to_string_lossy().into_owned();
        let start = crate::sys::process_start_time(pid as u32);
        let now = Instant::now();
        let mut h = Health {
            cmd,
            interval: duration(cfg.interval, INTERVAL),
            timeout: duration(cfg.timeout, TIMEOUT),
            retries: if cfg.retries > 0 {
                cfg.retries as u32
            } else {
                RETRIES
            },
            start_period: duration(cfg.start_period, Duration::ZERO),
            start_interval: duration(cfg.start_interval, START_INTERVAL),
            started: now,
            next: now,
            target: (pid, start, owner),
            bundle: bundle.to_path_buf(),
            probe: None,
            status: "starting",
            streak: 0,
            log: VecDeque::new(),
        };
        h.next = now + h.wait(now);
        h.write();
        Some(h)
    }

    fn in_start_period(&self, now: Instant) -> bool {
        self.status == "starting" && now < self.started + self.start_period
    }

    /// The time to the next check.
    fn wait(&self, now: Instant) -> Duration {
        if self.in_start_period(now) {
            self.start_interval
        } else {
            self.interval
        }
    }

    /// How long the monitor may sleep before [`Self::tick`] has something to do.
    pub(crate) fn timeout(&self) -> Duration {
        let now = Instant::now();
        let due = match &self.probe {
            Some(p) => p.deadline,
            None => self.next,
        };
        due.saturating_duration_since(now)
    }

    /// The running check's output, for the monitor's poll.
    pub(crate) fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.probe.as_ref().map(|p| p.out.as_fd())
    }

    /// Reads what the running check wrote.
    pub(crate) fn readable(&mut self) {
        if let Some(p) = &mut self.probe {
            drain(&mut p.out, &mut p.output);
        }
    }

    /// Starts a check when one is due; ends one that ran past its timeout.
    pub(crate) fn tick(&mut self) {
        let now = Instant::now();
        if let Some(p) = &self.probe {
            if now >= p.deadline {
                // Its exec monitor goes, and with it the command (parent-death signal).
                let _ = kill(p.pid, Signal::SIGKILL);
                let _ = nix::sys::wait::waitpid(p.pid, None);
                let limit = go_duration(self.timeout);
                let p = self.probe.take().expect("checked");
                self.finish(
                    p,
                    -1,
                    Some(format!("Health check exceeded timeout ({limit})")),
                );
            }
            return;
        }
        if now < self.next {
            return;
        }
        match self.spawn() {
            Ok(p) => self.probe = Some(p),
            Err(e) => {
                let start = now_rfc3339();
                self.record(Entry {
                    start: start.clone(),
                    end: start,
                    exit_code: -1,
                    output: format!("run the health check: {e}"),
                });
                self.next = Instant::now() + self.wait(Instant::now());
            }
        }
    }

    /// A child the monitor reaped: says whether it was the running check.
    pub(crate) fn reaped(&mut self, pid: Pid, code: i32) -> bool {
        match &self.probe {
            Some(p) if p.pid == pid => {
                let p = self.probe.take().expect("checked");
                self.finish(p, code, None);
                true
            }
            _ => false,
        }
    }

    fn finish(&mut self, mut p: Probe, code: i32, message: Option<String>) {
        drain(&mut p.out, &mut p.output);
        let mut report = String::new();
        let _ = p.report.read_to_string(&mut report);
        // The exec helper's own failure (no such command, say) is the check's output.
        let output = match (message, report.strip_prefix("error ")) {
            (Some(m), _) => m,
            (None, Some(err)) => err.split_once(' ').map_or(err, |(_, m)| m).to_string(),
            (None, None) => String::from_utf8_lossy(&p.output).into_owned(),
        };
        self.record(Entry {
            start: p.start,
            end: now_rfc3339(),
            exit_code: code,
            output,
        });
        self.next = Instant::now() + self.wait(Instant::now());
    }

    fn record(&mut self, e: Entry) {
        let now = Instant::now();
        if e.exit_code == 0 {
            self.status = "healthy";
            self.streak = 0;
        } else if !self.in_start_period(now) {
            self.streak += 1;
            if self.streak >= self.retries {
                self.status = "unhealthy";
            }
        }
        self.log.push_back(e);
        while self.log.len() > KEEP {
            self.log.pop_front();
        }
        self.write();
    }

    fn write(&self) {
        let r = Report {
            status: self.status,
            failing_streak: self.streak,
            log: &self.log,
        };
        let tmp = self.bundle.join(".health.json.tmp");
        if fs::write(&tmp, serde_json::to_vec(&r).unwrap_or_default()).is_ok() {
            let _ = fs::rename(&tmp, self.bundle.join("health.json"));
        }
    }

    /// `ketch-shim exec BUNDLE PID ... --attach -- CMD`, its output on a pipe.
    fn spawn(&self) -> std::io::Result<Probe> {
        let (out_r, out_w) = crate::pipe()?;
        let (rep_r, rep_w) = crate::pipe()?;
        let null = OpenOptions::new().read(true).open("/dev/null")?;
        let (pid, start, owner) = &self.target;
        let mut args: Vec<String> = vec![
            "ketch-shim".into(),
            "exec".into(),
            self.bundle.display().to_string(),
            pid.to_string(),
            "--pid-start".into(),
            start.to_string(),
            "--owner".into(),
            owner.clone(),
            "--attach".into(),
            "--".into(),
        ];
        args.extend(self.cmd.iter().cloned());
        let argv: Vec<CString> = args
            .into_iter()
            .map(|a| CString::new(a).unwrap_or_default())
            .collect();
        let env: Vec<CString> = vec![c"PATH=/usr/sbin:/usr/bin:/sbin:/bin".to_owned()];
        // SAFETY: the monitor is single-threaded; the child only arranges descriptors and
        // execs.
        match unsafe { nix::unistd::fork() }.map_err(std::io::Error::from)? {
            nix::unistd::ForkResult::Child => {
                let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
                // SAFETY: descriptors this process owns.
                unsafe {
                    libc::dup2(null.as_raw_fd(), 0);
                    libc::dup2(out_w.as_raw_fd(), 1);
                    libc::dup2(out_w.as_raw_fd(), 2);
                    libc::dup2(rep_w.as_raw_fd(), 3);
                }
                // This executable, as the host has it; `exec` seals itself before it joins
                // the container.
                let err = nix::unistd::execve(c"/proc/self/exe", &argv, &env);
                eprintln!("run ketch-shim exec: {err:?}");
                unsafe { libc::_exit(125) };
            }
            nix::unistd::ForkResult::Parent { child } => {
                drop((out_w, rep_w));
                let out = File::from(out_r);
                let _ = nix::fcntl::fcntl(
                    out.as_raw_fd(),
                    nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
                );
                let report = File::from(rep_r);
                let _ = nix::fcntl::fcntl(
                    report.as_raw_fd(),
                    nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
                );
                Ok(Probe {
                    pid: child,
                    out,
                    report,
                    output: Vec::new(),
                    start: now_rfc3339(),
                    deadline: Instant::now() + self.timeout,
                })
            }
        }
    }
}

/// A duration as Go prints it (`300ms`, `5s`, `1m30s`), as Docker's messages show it.
fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, m, s) = (
        ms / 3_600_000,
        ms / 60_000 % 60,
        (ms % 60_000) as f64 / 1000.0,
    );
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{s}s"));
    out
}

/// Reads what is there without waiting (a process the check left behind may hold the pipe).
fn drain(f: &mut File, into: &mut Vec<u8>) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = f.read(&mut buf) {
        if n == 0 {
            break;
        }
        let room = MAX_OUTPUT.saturating_sub(into.len());
        into.extend_from_slice(&buf[..n.min(room)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_gos() {
        assert_eq!(go_duration(Duration::from_millis(300)), "300ms");
        assert_eq!(go_duration(Duration::from_secs(30)), "30s");
        assert_eq!(go_duration(Duration::from_millis(90_500)), "1m30.5s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
    }

    #[test]
    fn durations_default_as_dockers() {
        assert_eq!(duration(0, INTERVAL), Duration::from_secs(30));
        assert_eq!(
            duration(1_500_000_000, INTERVAL),
            Duration::from_millis(1500)
        );
    }
}
