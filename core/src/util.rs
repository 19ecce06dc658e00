//! Small helpers shared by the modules.

use std::io::{self, Read, Write};

/// Docker's rule for the names of containers, volumes and networks:
/// `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// `n` random bytes as hex, for temp names and IDs.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).expect("the kernel's random source is available");
    hex::encode(buf)
}

/// `io::copy` with a buffer sized for layer data rather than 8 KiB.
pub fn copy(r: &mut dyn Read, w: &mut dyn Write) -> io::Result<u64> {
    copy_buf(&mut vec![0u8; 256 * 1024], r, w)
}

/// `io::copy` through a caller's buffer, for loops that copy many files.
pub fn copy_buf(buf: &mut [u8], r: &mut dyn Read, w: &mut dyn Write) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        let n = match r.read(buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        w.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// Start time of a process in clock ticks since boot (field 22 of `/proc/PID/stat`), which
/// together with the PID names a process uniquely across PID reuse.
/// Takes a `flock` on the lock file at `path` (made if missing; never through a link, and
/// not inherited by a child). `Ok(None)`: a non-blocking `op` found it held.
pub fn flock_file(
    path: &std::path::Path,
    op: rustix::fs::FlockOperation,
) -> io::Result<Option<std::fs::File>> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(path)?;
    match rustix::fs::flock(&file, op) {
        Ok(()) => Ok(Some(file)),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses; fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// Whether the maker named in `PID-START-...` (a temp name's tail) still runs. A name
/// that does not parse names no live maker.
pub fn maker_alive(tail: &str) -> bool {
    let mut parts = tail.splitn(3, '-');
    let pid = parts.next().and_then(|p| p.parse().ok());
    let start = parts.next().and_then(|s| s.parse().ok());
    matches!((pid, start), (Some(pid), Some(start)) if process_alive(pid, start))
}

/// Removes the entries of `dir` named `PREFIX` then `PID-START-...` whose maker has ended
/// (a directory with what it holds).
pub fn remove_dead_makers(dir: &std::path::Path, prefix: &str) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name();
        let Some(tail) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
            continue;
        };
        if maker_alive(tail) {
            continue;
        }
        let _ = match e.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(e.path()),
            _ => std::fs::remove_file(e.path()),
        };
    }
}

/// Whether the process that recorded (`pid`, `start_time`) is still alive. A zombie is not:
/// it has ended and only waits for its parent (an orphan's, the host's init, may take its
/// time) to collect its status.
pub fn process_alive(pid: u32, start_time: u64) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some(rest) = stat.rfind(')').and_then(|i| stat.get(i + 2..)) else {
        return false;
    };
    let mut fields = rest.split(' ');
    let state = fields.next().unwrap_or("");
    let start = fields.nth(18).and_then(|s| s.parse::<u64>().ok());
    start == Some(start_time) && !matches!(state, "Z" | "X")
}

/// A pidfd for the process `pid`, checked to be the one recorded: its start time is `start`
/// (0: unknown), and with `owner` (a container ID) it sits in a cgroup whose path names it.
/// A PID reused by any other process since it was recorded is refused. The pidfd is taken
/// before the checks and names one process for good: what was checked is what gets acted on.
pub fn pidfd_checked(
    pid: i32,
    start: u64,
    owner: Option<&str>,
) -> io::Result<std::os::fd::OwnedFd> {
    let gone = || {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("process {pid} is not the container's process (it ended)"),
        )
    };
    // A PID of 0 or less names no one process (rustix asserts against negative ones): a
    // state record that says so is a process gone, not a panic.
    let p = (pid > 0)
        .then(|| rustix::process::Pid::from_raw(pid))
        .flatten()
        .ok_or_else(gone)?;
    let fd = rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).map_err(|e| {
        if e == rustix::io::Errno::NOSYS {
            io::Error::new(
                io::ErrorKind::Unsupported,
                "pidfd_open is not available here (Linux 5.3 or later, and not under a tool \
                 that hides it, as valgrind 3.19 does)",
            )
        } else {
            gone()
        }
    })?;
    if start == 0 && owner.is_none() {
        return Err(gone());
    }
    if start != 0 && process_start_time(pid as u32) != Some(start) {
        return Err(gone());
    }
    if let Some(owner) = owner {
        let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).map_err(|_| gone())?;
        let inside = cgroups.lines().any(|l| {
            l.splitn(3, ':')
                .nth(2)
                .is_some_and(|path| path.split('/').any(|c| c == owner))
        });
        if owner.is_empty() || !inside {
            return Err(gone());
        }
    }
    Ok(fd)
}

/// Waits up to `patience` for the process a pidfd names to end; says whether it did.
pub fn pidfd_wait(fd: std::os::fd::BorrowedFd<'_>, patience: std::time::Duration) -> bool {
    let mut fds = [rustix::event::PollFd::new(
        &fd,
        rustix::event::PollFlags::IN,
    )];
    let ts = rustix::event::Timespec {
        tv_sec: patience.as_secs() as _,
        tv_nsec: patience.subsec_nanos() as _,
    };
    matches!(rustix::event::poll(&mut fds, Some(&ts)), Ok(n) if n > 0)
}

/// Sends `sig` to the process a pidfd names.
pub fn pidfd_signal(fd: std::os::fd::BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: plain integers; no siginfo is passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dockers_names() {
        for good in ["a", "Z", "0", "a1", "data_1.x-y", "9-", "a.", "A_"] {
            assert!(valid_name(good), "{good:?} should be accepted");
        }
        for bad in [
            "", "_a", ".a", "-a", "a/b", "a b", "a:b", "é", "aé", "..", "a\n",
        ] {
            assert!(!valid_name(bad), "{bad:?} should be refused");
        }
    }

    #[test]
    fn own_process_is_alive() {
        let pid = std::process::id();
        let st = process_start_time(pid).unwrap();
        assert!(process_alive(pid, st));
        assert!(!process_alive(pid, st + 1));
    }

    #[test]
    fn a_pidfd_is_only_had_for_the_recorded_process() {
        // A child in a cgroup of its own, named as a container's is.
        // At random: test runs in sandboxes of their own have the same PIDs and share the
        // host's cgroups.
        let name = format!("ketch-unit-core-{}", random_hex(8));
        let group = ["/sys/fs/cgroup/pids", "/sys/fs/cgroup"]
            .iter()
            .map(std::path::Path::new)
            .find(|h| h.join("cgroup.procs").exists())
            .expect("a cgroup hierarchy (v1 pids, or v2)")
            .join(&name);
        std::fs::create_dir(&group).unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let placed = std::fs::write(group.join("cgroup.procs"), child.id().to_string());
        let pid = child.id() as i32;
        let st = process_start_time(pid as u32).unwrap();
        let checks = [
            pidfd_checked(pid, st, Some(&name)).is_ok(),
            pidfd_checked(pid, 0, Some(&name)).is_ok(),
            pidfd_checked(pid, st, None).is_ok(),
            // Another start time; nothing to check against; another cgroup.
            pidfd_checked(pid, st + 1, None).is_err(),
            pidfd_checked(pid, 0, None).is_err(),
            pidfd_checked(pid, st, Some("no-such-container")).is_err(),
            pidfd_checked(i32::MAX, 1, None).is_err(),
            // A PID no process can have, as a damaged record might say.
            pidfd_checked(-1, st, None).is_err(),
            pidfd_checked(0, st, None).is_err(),
        ];
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_dir(&group);
        placed.unwrap();
        assert_eq!(checks, [true; 9]);
        assert!(pidfd_checked(pid, st, Some(&name)).is_err(), "it ended");
    }
}
