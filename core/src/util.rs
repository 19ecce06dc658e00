//! Small helpers shared by the modules.

use std::io::{self, Read, Write};

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

/// Whether the process that recorded (`pid`, `start_time`) is still alive.
pub fn process_alive(pid: u32, start_time: u64) -> bool {
    process_start_time(pid) == Some(start_time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive() {
        let pid = std::process::id();
        let st = process_start_time(pid).unwrap();
        assert!(process_alive(pid, st));
        assert!(!process_alive(pid, st + 1));
    }
}
