//! The embedded name server of a container on user-defined networks, as Docker's
//! 127.0.0.11: the container's own monitor answers on a UDP socket bound inside the
//! container's network namespace. Names of the networks' containers (and their aliases)
//! come from one records file per network, which the engine rewrites whenever a container
//! joins or leaves; the container's list of those files changes when it is connected to a
//! network or disconnected. Both are read at each query, so a container that joins later
//! resolves at once. Other names are passed to the upstream servers from a socket in the
//! monitor's own (the host's) namespace.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::PathBuf;
use std::time::Instant;

/// Where the server listens inside the container. Not port 53 itself, which the container's
/// own programs may want on every address: the engine redirects 127.0.0.11:53 here with a
/// DNAT rule in the container's namespace, as Docker does.
pub const LISTEN: &str = "127.0.0.11:53953";

const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;
const RCODE_SERVFAIL: u8 = 2;
const RCODE_NXDOMAIN: u8 = 3;
const TTL: u32 = 600;

pub struct Server {
    sock: UdpSocket,
    upstream: Option<UdpSocket>,
    servers: Vec<SocketAddr>,
    /// A file naming the records files of the container's networks, one a line.
    records: PathBuf,
    /// Queries passed upstream: our ID → (the client's ID, the client, when sent).
    pending: HashMap<u16, (u16, SocketAddr, Instant)>,
    next_id: u16,
}

impl Server {
    /// Binds the listening socket inside the network namespace at `netns`, then returns to
    /// this process's own namespace. The caller must be single-threaded.
    pub fn bind(netns: &str, records: PathBuf, servers: Vec<SocketAddr>) -> io::Result<Server> {
        let own = File::open("/proc/self/ns/net")?;
        let target = File::open(netns)?;
        setns(target.as_fd())?;
        let sock = UdpSocket::bind(LISTEN);
        setns(own.as_fd())?;
        let sock = sock?;
        sock.set_nonblocking(true)?;
        let upstream = if servers.is_empty() {
            None
        } else {
            let u = UdpSocket::bind("0.0.0.0:0")?;
            u.set_nonblocking(true)?;
            Some(u)
        };
        Ok(Server {
            sock,
            upstream,
            servers,
            records,
            pending: HashMap::new(),
            next_id: 1,
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    pub fn upstream_fd(&self) -> Option<BorrowedFd<'_>> {
        self.upstream.as_ref().map(|u| u.as_fd())
    }

    /// The addresses of `name` on the container's networks: lines of `IP NAME [NAME...]`
    /// in each records file the list names.
    fn lookup(&self, name: &str) -> Option<Vec<Ipv4Addr>> {
        let list = fs::read_to_string(&self.records).unwrap_or_default();
        let mut found: Option<Vec<Ipv4Addr>> = None;
        for file in list.lines().filter(|l| !l.trim().is_empty()) {
            let text = fs::read_to_string(file.trim()).unwrap_or_default();
            for line in text.lines() {
                let mut f = line.split_whitespace();
                let Some(Ok(ip)) = f.next().map(str::parse::<Ipv4Addr>) else {
                    continue;
                };
                if f.any(|n| n.eq_ignore_ascii_case(name)) {
                    let ips = found.get_or_insert_with(Vec::new);
                    if !ips.contains(&ip) {
                        ips.push(ip);
                    }
                }
            }
        }
        found
    }

    /// Answers every query waiting on the listening socket.
    pub fn serve(&mut self) {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = self.sock.recv_from(&mut buf) {
            if let Some(reply) = self.answer(&buf[..n], from) {
                let _ = self.sock.send_to(&reply, from);
            }
        }
    }

    /// Relays every upstream reply back to the client that asked.
    pub fn relay(&mut self) {
        let Some(up) = &self.upstream else { return };
        let mut buf = [0u8; 4096];
        while let Ok((n, _)) = up.recv_from(&mut buf) {
            if n < 12 {
                continue;
            }
            let id = u16::from_be_bytes([buf[0], buf[1]]);
            if let Some((orig, client, _)) = self.pending.remove(&id) {
                buf[0..2].copy_from_slice(&orig.to_be_bytes());
                let _ = self.sock.send_to(&buf[..n], client);
            }
        }
        // Forget what upstream never answered.
        self.pending
            .retain(|_, (_, _, at)| at.elapsed().as_secs() < 10);
    }

    fn answer(&mut self, q: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
        if q.len() < 12 || q[2] & 0x80 != 0 {
            return None; // not a query
        }
        let qdcount = u16::from_be_bytes([q[4], q[5]]);
        let (name, end) = parse_name(q, 12)?;
        if qdcount != 1 || end + 4 > q.len() {
            return Some(reply(q, end.min(q.len()), 1, &[])); // FORMERR
        }
        let qtype = u16::from_be_bytes([q[end], q[end + 1]]);
        let qclass = u16::from_be_bytes([q[end + 2], q[end + 3]]);
        let question_end = end + 4;
        let key = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(ips) = self.lookup(&key) {
            // Ours: A records for A queries, an empty answer for other types.
            let ips: Vec<Ipv4Addr> = if qtype == TYPE_A && qclass == CLASS_IN {
                ips
            } else {
                vec![]
            };
            return Some(reply(q, question_end, 0, &ips));
        }
        if !key.contains('.') || self.upstream.is_none() {
            // A single-label name is a container's or nobody's.
            return Some(reply(q, question_end, RCODE_NXDOMAIN, &[]));
        }
        let up = self.upstream.as_ref()?;
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let mut fwd = q.to_vec();
        let orig = u16::from_be_bytes([q[0], q[1]]);
        fwd[0..2].copy_from_slice(&id.to_be_bytes());
        let sent = self.servers.iter().any(|s| up.send_to(&fwd, s).is_ok());
        if !sent {
            return Some(reply(q, question_end, RCODE_SERVFAIL, &[]));
        }
        self.pending.insert(id, (orig, from, Instant::now()));
        None
    }
}

fn setns(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: setns(2) with a namespace descriptor we hold open.
    if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads an uncompressed name (queries carry no pointers) starting at `off`; returns it
/// dotted and the offset after it.
fn parse_name(m: &[u8], mut off: usize) -> Option<(String, usize)> {
    let mut labels = Vec::new();
    loop {
        let len = *m.get(off)? as usize;
        off += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        labels.push(String::from_utf8_lossy(m.get(off..off + len)?).into_owned());
        off += len;
        if labels.len() > 127 {
            return None;
        }
    }
    Some((labels.join("."), off))
}

/// A response to query `q` (whose question ends at `qend`): the question echoed, then an A
/// record per address, each naming the question by a pointer.
fn reply(q: &[u8], qend: usize, rcode: u8, ips: &[Ipv4Addr]) -> Vec<u8> {
    let mut r = Vec::with_capacity(qend + ips.len() * 16);
    r.extend_from_slice(&q[0..2]);
    // QR, the query's opcode and RD, AA; RA; the code.
    r.push(0x80 | (q[2] & 0x79) | 0x04);
    r.push(0x80 | rcode);
    r.extend_from_slice(&(if qend > 12 { 1u16 } else { 0 }).to_be_bytes());
    r.extend_from_slice(&(ips.len() as u16).to_be_bytes());
    r.extend_from_slice(&[0, 0, 0, 0]);
    r.extend_from_slice(&q[12..qend]);
    for ip in ips {
        r.extend_from_slice(&[0xc0, 12]);
        r.extend_from_slice(&TYPE_A.to_be_bytes());
        r.extend_from_slice(&CLASS_IN.to_be_bytes());
        r.extend_from_slice(&TTL.to_be_bytes());
        r.extend_from_slice(&4u16.to_be_bytes());
        r.extend_from_slice(&ip.octets());
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            q.push(l.len() as u8);
            q.extend_from_slice(l.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&CLASS_IN.to_be_bytes());
        q
    }

    #[test]
    fn answers_from_the_records_file() {
        let dir = std::env::temp_dir().join(format!("ketch-dns-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let records = dir.join("records");
        fs::write(&records, "10.0.0.2 web www\n10.0.0.3 db\n").unwrap();
        let list = dir.join("list");
        fs::write(&list, format!("{}\n", records.display())).unwrap();
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut s = Server {
            sock,
            upstream: None,
            servers: vec![],
            records: list.clone(),
            pending: HashMap::new(),
            next_id: 1,
        };
        let from: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let r = s.answer(&query("WWW", TYPE_A), from).unwrap();
        assert_eq!(&r[0..2], &[0x12, 0x34]);
        assert_eq!(r[3] & 0x0f, 0);
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 1);
        assert_eq!(&r[r.len() - 4..], &[10, 0, 0, 2]);
        // Another type for a known name: no error, no answer.
        let r = s.answer(&query("web", 28), from).unwrap();
        assert_eq!((r[3] & 0x0f, u16::from_be_bytes([r[6], r[7]])), (0, 0));
        let r = s.answer(&query("nosuch", TYPE_A), from).unwrap();
        assert_eq!(r[3] & 0x0f, RCODE_NXDOMAIN);
        // A container that joins later: the file changes, the name resolves.
        fs::write(&records, "10.0.0.2 web www\n10.0.0.3 db\n10.0.0.4 late\n").unwrap();
        let r = s.answer(&query("late", TYPE_A), from).unwrap();
        assert_eq!(&r[r.len() - 4..], &[10, 0, 0, 4]);
        // A second network's file, once the container is connected to it.
        let second = dir.join("second");
        fs::write(&second, "10.1.0.9 other\n").unwrap();
        fs::write(
            &list,
            format!("{}\n{}\n", records.display(), second.display()),
        )
        .unwrap();
        let r = s.answer(&query("other", TYPE_A), from).unwrap();
        assert_eq!(&r[r.len() - 4..], &[10, 1, 0, 9]);
        // Garbage is not answered at all, or with an error; it never panics.
        assert!(s.answer(&[1, 2, 3], from).is_none());
        let _ = s.answer(&[0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 70], from);
        fs::remove_dir_all(&dir).unwrap();
    }
}
