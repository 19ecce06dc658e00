//! The embedded name server of a container on user-defined networks, as Docker's
//! 127.0.0.11: the container's own monitor answers on a UDP socket bound inside the
//! container's network namespace. Names of the networks' containers (and their aliases)
//! come from one records file per network, which the engine rewrites whenever a container
//! joins or leaves; the container's list of those files changes when it is connected to a
//! network or disconnected. Both are read at each query, so a container that joins later
//! resolves at once. Other names are passed to the upstream servers from the monitor's own
//! (the host's) namespace, as Docker's resolver does it: each query from a socket of its own,
//! on a port the kernel picks at random and connected to the one server asked (so only that
//! server's datagrams reach it), with a random ID; a reply counts only with that ID and the
//! question that was asked. Nothing listens on the host's addresses for replies.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Where the server listens inside the container. Not port 53 itself, which the container's
/// own programs may want on every address: the engine redirects 127.0.0.11:53 here with a
/// DNAT rule in the container's namespace, as Docker does.
pub const LISTEN: &str = "127.0.0.11:53953";

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;
const RCODE_SERVFAIL: u8 = 2;
const RCODE_NXDOMAIN: u8 = 3;
const TTL: u32 = 600;

/// Queries passed upstream and not yet answered, at most; the oldest is given up for a new.
const MAX_PENDING: usize = 128;
/// How long an upstream server has to answer.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(5);

/// A query passed upstream.
struct Pending {
    /// Connected to the server asked, on a port of its own.
    sock: UdpSocket,
    /// The client's ID for the query, and the client.
    client_id: u16,
    client: SocketAddr,
    /// The question as sent: a reply must carry the same.
    question: Vec<u8>,
    sent: Instant,
}

pub struct Server {
    sock: UdpSocket,
    servers: Vec<SocketAddr>,
    /// A file naming the records files of the container's networks, one a line.
    records: PathBuf,
    /// Queries passed upstream, by the random ID they were sent with.
    pending: HashMap<u16, Pending>,
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
        Ok(Server {
            sock,
            servers,
            records,
            pending: HashMap::new(),
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    /// The sockets of the queries waiting for an upstream answer.
    pub fn upstream_fds(&self) -> Vec<BorrowedFd<'_>> {
        self.pending.values().map(|p| p.sock.as_fd()).collect()
    }

    /// The addresses of `name` on the container's networks: lines of `IP NAME [NAME...]`
    /// in each records file the list names.
    /// The list's `link ALIAS NAME` lines (the container's links) answer ALIAS as NAME.
    fn lookup(&self, name: &str) -> Option<Vec<IpAddr>> {
        let list = fs::read_to_string(&self.records).unwrap_or_default();
        let name = list
            .lines()
            .filter_map(|l| l.strip_prefix("link "))
            .filter_map(|l| l.split_once(' '))
            .find(|(alias, _)| alias.eq_ignore_ascii_case(name))
            .map_or(name, |(_, target)| target.trim());
        let mut found: Option<Vec<IpAddr>> = None;
        for file in list
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with("link "))
        {
            let text = fs::read_to_string(file.trim()).unwrap_or_default();
            for line in text.lines() {
                let mut f = line.split_whitespace();
                let Some(Ok(ip)) = f.next().map(str::parse::<IpAddr>) else {
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

    /// Relays every upstream reply back to the client that asked. A datagram counts only
    /// from the server asked (the socket is connected to it), with the ID it was sent and
    /// the question asked; anything else is dropped and the query waits on.
    pub fn relay(&mut self) {
        let mut buf = [0u8; 4096];
        let mut answered = Vec::new();
        for (id, p) in &self.pending {
            while let Ok(n) = p.sock.recv(&mut buf) {
                let m = &buf[..n];
                let genuine = n >= 12
                    && u16::from_be_bytes([m[0], m[1]]) == *id
                    && m[2] & 0x80 != 0
                    && m.get(12..12 + p.question.len()) == Some(&p.question[..]);
                if genuine {
                    buf[0..2].copy_from_slice(&p.client_id.to_be_bytes());
                    let _ = self.sock.send_to(&buf[..n], p.client);
                    answered.push(*id);
                    break;
                }
            }
        }
        for id in answered {
            self.pending.remove(&id);
        }
        self.expire();
    }

    /// Gives up on queries upstream has not answered in time.
    fn expire(&mut self) {
        self.pending
            .retain(|_, p| p.sent.elapsed() < UPSTREAM_TIMEOUT);
    }

    /// Passes a query upstream under a fresh random ID, from a socket of its own; false when
    /// no server could be sent to.
    fn forward(&mut self, q: &[u8], question_end: usize, client: SocketAddr) -> bool {
        self.expire();
        if self.pending.len() >= MAX_PENDING
            && let Some(oldest) = self
                .pending
                .iter()
                .min_by_key(|(_, p)| p.sent)
                .map(|(id, _)| *id)
        {
            self.pending.remove(&oldest);
        }
        let id = loop {
            let id = random_u16();
            if !self.pending.contains_key(&id) {
                break id;
            }
        };
        let mut fwd = q.to_vec();
        fwd[0..2].copy_from_slice(&id.to_be_bytes());
        for server in &self.servers {
            let bind: SocketAddr = if server.is_ipv4() {
                (Ipv4Addr::UNSPECIFIED, 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let sock = match UdpSocket::bind(bind)
                .and_then(|s| s.connect(server).map(|()| s))
                .and_then(|s| s.set_nonblocking(true).map(|()| s))
            {
                Ok(s) => s,
                Err(_) => continue,
            };
            if sock.send(&fwd).is_ok() {
                self.pending.insert(
                    id,
                    Pending {
                        sock,
                        client_id: u16::from_be_bytes([q[0], q[1]]),
                        client,
                        question: q[12..question_end].to_vec(),
                        sent: Instant::now(),
                    },
                );
                return true;
            }
        }
        false
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
            // Ours: A records for A queries, AAAA ones for AAAA queries (a name without
            // addresses of the family asked for has an empty answer), an empty answer for
            // other types.
            let ips: Vec<IpAddr> = match (qtype, qclass) {
                (TYPE_A, CLASS_IN) => ips.into_iter().filter(IpAddr::is_ipv4).collect(),
                (TYPE_AAAA, CLASS_IN) => ips.into_iter().filter(IpAddr::is_ipv6).collect(),
                _ => vec![],
            };
            return Some(reply(q, question_end, 0, &ips));
        }
        if !key.contains('.') || self.servers.is_empty() {
            // A single-label name is a container's or nobody's.
            return Some(reply(q, question_end, RCODE_NXDOMAIN, &[]));
        }
        if !self.forward(q, question_end, from) {
            return Some(reply(q, question_end, RCODE_SERVFAIL, &[]));
        }
        None
    }
}

/// A query ID from the kernel's random source, so an off-path sender cannot guess it.
fn random_u16() -> u16 {
    let mut b = [0u8; 2];
    // SAFETY: getrandom fills the two bytes it is given.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), 2, 0) };
    if n != 2 {
        // The kernel's source never fails for two bytes once booted; fall back to the clock.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        return (t ^ (t >> 16)) as u16;
    }
    u16::from_ne_bytes(b)
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
/// or AAAA record per address, each naming the question by a pointer.
fn reply(q: &[u8], qend: usize, rcode: u8, ips: &[IpAddr]) -> Vec<u8> {
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
        let (kind, data) = match ip {
            IpAddr::V4(ip) => (TYPE_A, ip.octets().to_vec()),
            IpAddr::V6(ip) => (TYPE_AAAA, ip.octets().to_vec()),
        };
        r.extend_from_slice(&kind.to_be_bytes());
        r.extend_from_slice(&CLASS_IN.to_be_bytes());
        r.extend_from_slice(&TTL.to_be_bytes());
        r.extend_from_slice(&(data.len() as u16).to_be_bytes());
        r.extend_from_slice(&data);
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
        let dir = std::env::temp_dir().join(crate::sys::unique_name("ketch-dns"));
        fs::create_dir_all(&dir).unwrap();
        let records = dir.join("records");
        fs::write(&records, "10.0.0.2 web www\nfd00::2 web www\n10.0.0.3 db\n").unwrap();
        let list = dir.join("list");
        fs::write(&list, format!("{}\n", records.display())).unwrap();
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut s = Server {
            sock,
            servers: vec![],
            records: list.clone(),
            pending: HashMap::new(),
        };
        let from: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let r = s.answer(&query("WWW", TYPE_A), from).unwrap();
        assert_eq!(&r[0..2], &[0x12, 0x34]);
        assert_eq!(r[3] & 0x0f, 0);
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 1);
        assert_eq!(&r[r.len() - 4..], &[10, 0, 0, 2]);
        // AAAA: the IPv6 address alone; a name with none has an empty answer, as has
        // another type.
        let r = s.answer(&query("web", TYPE_AAAA), from).unwrap();
        assert_eq!((r[3] & 0x0f, u16::from_be_bytes([r[6], r[7]])), (0, 1));
        assert_eq!(
            &r[r.len() - 16..],
            &"fd00::2".parse::<std::net::Ipv6Addr>().unwrap().octets()
        );
        let r = s.answer(&query("db", TYPE_AAAA), from).unwrap();
        assert_eq!((r[3] & 0x0f, u16::from_be_bytes([r[6], r[7]])), (0, 0));
        let r = s.answer(&query("web", 16), from).unwrap();
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
        // A question without its type and class is a format error; a response is no
        // query, and is not answered.
        let mut cut = query("web", TYPE_A);
        cut.truncate(cut.len() - 4);
        let r = s.answer(&cut, from).unwrap();
        assert_eq!((r[3] & 0x0f, &r[0..2]), (1, &[0x12, 0x34][..]));
        let mut response = query("web", TYPE_A);
        response[2] |= 0x80;
        assert!(s.answer(&response, from).is_none());
        // Garbage is not answered at all, or with an error; it never panics.
        assert!(s.answer(&[1, 2, 3], from).is_none());
        let _ = s.answer(&[0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 70], from);
        fs::remove_dir_all(&dir).unwrap();
    }

    fn answer_to(q: &[u8], id: u16, ip: [u8; 4]) -> Vec<u8> {
        let mut r = q.to_vec();
        r[0..2].copy_from_slice(&id.to_be_bytes());
        r[2] |= 0x80;
        r[7] = 1;
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        r.extend_from_slice(&ip);
        r
    }

    /// Replies that do not come from the server asked, or do not carry the query's ID and
    /// question, never reach the client; the real one does, with the client's ID.
    #[test]
    fn only_the_server_asked_can_answer() {
        let timeout = Some(std::time::Duration::from_secs(5));
        let upstream = UdpSocket::bind("127.0.0.1:0").unwrap();
        upstream.set_read_timeout(timeout).unwrap();
        let listen = UdpSocket::bind("127.0.0.1:0").unwrap();
        listen.set_nonblocking(true).unwrap();
        let list = std::env::temp_dir().join(crate::sys::unique_name("ketch-dns-none"));
        fs::write(&list, "").unwrap();
        struct Gone(PathBuf);
        impl Drop for Gone {
            fn drop(&mut self) {
                let _ = fs::remove_file(&self.0);
            }
        }
        let _gone = Gone(list.clone());
        let mut s = Server {
            sock: listen,
            servers: vec![upstream.local_addr().unwrap()],
            records: list.clone(),
            pending: HashMap::new(),
        };
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.set_nonblocking(true).unwrap();
        let q = query("example.test", TYPE_A);
        client.send_to(&q, s.sock.local_addr().unwrap()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        s.serve();
        // The monitor waits on the forwarding socket too.
        assert_eq!(s.upstream_fds().len(), 1);
        let mut buf = [0u8; 512];
        let (n, forwarder) = upstream.recv_from(&mut buf).unwrap();
        let sent = buf[..n].to_vec();
        let id = u16::from_be_bytes([sent[0], sent[1]]);
        assert_eq!(
            &sent[2..],
            &q[2..],
            "the query goes on unchanged but for its ID"
        );
        assert!(!forwarder.ip().is_unspecified());
        // Forgeries: another address, the same address from another port, a wrong ID, the
        // server asked but another question.
        let forged = answer_to(&q, id, [6, 6, 6, 6]);
        UdpSocket::bind("127.0.0.2:0")
            .unwrap()
            .send_to(&forged, forwarder)
            .unwrap();
        UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .send_to(&forged, forwarder)
            .unwrap();
        upstream
            .send_to(&answer_to(&q, id.wrapping_add(1), [6, 6, 6, 6]), forwarder)
            .unwrap();
        let other = query("evil.test", TYPE_A);
        upstream
            .send_to(&answer_to(&other, id, [6, 6, 6, 6]), forwarder)
            .unwrap();
        // The server asked, the ID and question, but a query, not a response.
        let mut echoed = answer_to(&q, id, [6, 6, 6, 6]);
        echoed[2] &= 0x7f;
        upstream.send_to(&echoed, forwarder).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        s.relay();
        assert!(
            client.recv(&mut buf).is_err(),
            "a forged reply reached the client"
        );
        assert_eq!(s.pending.len(), 1, "the query still waits for its answer");
        // The real answer.
        upstream
            .send_to(&answer_to(&q, id, [10, 9, 8, 7]), forwarder)
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        s.relay();
        let n = client.recv(&mut buf).unwrap();
        assert_eq!(&buf[0..2], &q[0..2], "the client's own ID");
        assert_eq!(&buf[n - 4..n], &[10, 9, 8, 7]);
        assert!(s.pending.is_empty());
    }

    #[test]
    fn names_are_read_strictly() {
        let q = query("a.bc.def", TYPE_A);
        assert_eq!(parse_name(&q, 12), Some(("a.bc.def".into(), 12 + 10)));
        assert_eq!(parse_name(&[0], 0), Some((String::new(), 1)));
        // A label may be 63 bytes, not 64 (64 and up are pointers, which queries lack).
        let mut m = vec![63];
        m.extend_from_slice(&[b'x'; 63]);
        m.push(0);
        assert_eq!(parse_name(&m, 0).unwrap().1, 65);
        m[0] = 64;
        m.push(b'x');
        assert_eq!(parse_name(&m, 0), None);
        // Cut short: in a label, or before the root label.
        assert_eq!(parse_name(&[3, b'a', b'b'], 0), None);
        assert_eq!(parse_name(&[1, b'a'], 0), None);
        // At most 127 labels.
        let mut m: Vec<u8> = [1, b'a'].repeat(127);
        m.push(0);
        assert_eq!(parse_name(&m, 0).unwrap().1, 255);
        let mut m: Vec<u8> = [1, b'a'].repeat(128);
        m.push(0);
        assert_eq!(parse_name(&m, 0), None);
    }

    #[test]
    fn a_reply_is_a_well_formed_answer() {
        let mut q = query("web", TYPE_A);
        q[2] = 0x01 | 0x78 | 0x02; // RD, opcode bits, TC (not echoed)
        let qend = q.len();
        let ips = [
            IpAddr::from(Ipv4Addr::new(10, 0, 0, 2)),
            Ipv4Addr::new(10, 0, 0, 3).into(),
        ];
        let r = reply(&q, qend, 0, &ips);
        assert_eq!(&r[0..2], &q[0..2]);
        // QR, the opcode and RD echoed, AA; then RA and the code.
        assert_eq!(r[2], 0x80 | 0x78 | 0x01 | 0x04);
        assert_eq!(r[3], 0x80);
        assert_eq!(&r[4..12], &[0, 1, 0, 2, 0, 0, 0, 0]);
        assert_eq!(&r[12..qend], &q[12..qend]);
        assert_eq!(r.len(), qend + 2 * 16);
        let rr = &r[qend..qend + 16];
        assert_eq!(
            &rr[0..2],
            &[0xc0, 12],
            "the name by a pointer to the question"
        );
        assert_eq!(&rr[2..6], &[0, 1, 0, 1]);
        assert_eq!(u32::from_be_bytes([rr[6], rr[7], rr[8], rr[9]]), TTL);
        assert_eq!(&rr[10..16], &[0, 4, 10, 0, 0, 2]);
        assert_eq!(&r[r.len() - 4..], &[10, 0, 0, 3]);
        // An AAAA record: its type, and sixteen bytes of address.
        let mut q = query("web", TYPE_AAAA);
        let qend = q.len();
        q[2] = 0x01;
        let six: std::net::Ipv6Addr = "fd00::2".parse().unwrap();
        let r = reply(&q, qend, 0, &[six.into()]);
        assert_eq!(r.len(), qend + 12 + 16);
        assert_eq!(&r[qend + 2..qend + 4], &TYPE_AAAA.to_be_bytes());
        assert_eq!(&r[qend + 10..qend + 12], &16u16.to_be_bytes());
        assert_eq!(&r[qend + 12..], &six.octets());
        // No question: none echoed.
        let r = reply(&q, 12, RCODE_SERVFAIL, &[]);
        assert_eq!(
            (r.len(), r[3], &r[4..6]),
            (12, 0x80 | RCODE_SERVFAIL, &[0u8, 0][..])
        );
    }

    #[test]
    fn lookups_merge_files_ignore_case_and_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let one = dir.path().join("one");
        let two = dir.path().join("two");
        fs::write(&one, "bad web\n10.0.0.2 Web alias\n\n10.0.0.5 other\n").unwrap();
        fs::write(&two, "10.1.0.2 web\n10.0.0.2 WEB\n").unwrap();
        let list = dir.path().join("list");
        fs::write(
            &list,
            format!(
                "{}\n  \n {} \n/no/such/file\n",
                one.display(),
                two.display()
            ),
        )
        .unwrap();
        let mut s = Server {
            sock: UdpSocket::bind("127.0.0.1:0").unwrap(),
            servers: vec![],
            records: list,
            pending: HashMap::new(),
        };
        let v4 = |a, b, c, d| IpAddr::from(Ipv4Addr::new(a, b, c, d));
        assert_eq!(
            s.lookup("web"),
            Some(vec![v4(10, 0, 0, 2), v4(10, 1, 0, 2)])
        );
        assert_eq!(s.lookup("alias"), Some(vec![v4(10, 0, 0, 2)]));
        assert_eq!(s.lookup("bad"), None);
        // A link: its alias answered as the name it links to, in any case.
        let list = s.records.clone();
        let mut text = fs::read_to_string(&list).unwrap();
        text.push_str("link Bar other\n");
        fs::write(&list, text).unwrap();
        assert_eq!(s.lookup("bar"), Some(vec![v4(10, 0, 0, 5)]));
        assert_eq!(s.lookup("other"), Some(vec![v4(10, 0, 0, 5)]));
        assert_eq!(s.lookup("10.0.0.2"), None);
        let from: SocketAddr = "127.0.0.1:9".parse().unwrap();
        // Any case; the answer counts both addresses.
        let r = s.answer(&query("WEB", TYPE_A), from).unwrap();
        assert_eq!((r[3] & 0x0f, r[7]), (0, 2));
        // Not IN class: known, but no records.
        let mut q = query("web", TYPE_A);
        let n = q.len();
        q[n - 1] = 3;
        assert_eq!(s.answer(&q, from).unwrap()[7], 0);
        // Two questions, or one cut short: a format error, the ID kept.
        let mut q = query("web", TYPE_A);
        q[5] = 2;
        let r = s.answer(&q, from).unwrap();
        assert_eq!((&r[0..2], r[3] & 0x0f), (&q[0..2], 1));
        let q = query("web", TYPE_A);
        let r = s.answer(&q[..q.len() - 1], from).unwrap();
        assert_eq!(r[3] & 0x0f, 1);
        // A reply sent to us is no query.
        let mut q = query("web", TYPE_A);
        q[2] |= 0x80;
        assert!(s.answer(&q, from).is_none());
        // Unknown dotted names with no upstream servers: NXDOMAIN.
        let r = s.answer(&query("example.test", TYPE_A), from).unwrap();
        assert_eq!(r[3] & 0x0f, RCODE_NXDOMAIN);
        // Upstream servers none of which can be sent to: SERVFAIL.
        // (A broadcast address, refused without SO_BROADCAST.)
        s.servers = vec!["255.255.255.255:53".parse().unwrap()];
        let r = s.answer(&query("example.test", TYPE_A), from).unwrap();
        assert_eq!(r[3] & 0x0f, RCODE_SERVFAIL);
        assert!(s.pending.is_empty());
    }

    /// Query IDs come from the kernel's random source: successive ones are not close to
    /// each other, as IDs from the clock would be. Random, a step of less than 4096 either
    /// way has odds of 1 in 8: about 125 of 999, never near 500.
    #[test]
    fn query_ids_are_unpredictable() {
        let ids: Vec<u16> = (0..1000).map(|_| random_u16()).collect();
        let close = ids
            .windows(2)
            .filter(|w| w[1].wrapping_sub(w[0]).min(w[0].wrapping_sub(w[1])) < 4096)
            .count();
        assert!(
            close < 500,
            "{close} of 999 steps under 4096: {:?}",
            &ids[..20]
        );
    }

    #[test]
    fn pending_queries_are_bounded() {
        let upstream = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut s = Server {
            sock: UdpSocket::bind("127.0.0.1:0").unwrap(),
            servers: vec![upstream.local_addr().unwrap()],
            records: PathBuf::from("/no/such/list"),
            pending: HashMap::new(),
        };
        let from: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let q = query("example.test", TYPE_A);
        for _ in 0..MAX_PENDING {
            assert!(s.answer(&q, from).is_none());
        }
        assert_eq!(s.pending.len(), MAX_PENDING);
        // One more: the oldest is given up for it.
        let oldest = |s: &Server| *s.pending.iter().min_by_key(|(_, p)| p.sent).unwrap().0;
        let first = oldest(&s);
        let first_sent = Instant::now() - Duration::from_secs(2);
        s.pending.get_mut(&first).unwrap().sent = first_sent;
        let next = *s.pending.keys().find(|id| **id != first).unwrap();
        let next_sent = Instant::now() - Duration::from_secs(1);
        s.pending.get_mut(&next).unwrap().sent = next_sent;
        assert!(s.answer(&q, from).is_none());
        assert_eq!(s.pending.len(), MAX_PENDING);
        assert!(!s.pending.values().any(|p| p.sent == first_sent));
        assert!(s.pending.values().any(|p| p.sent == next_sent));
        for p in s.pending.values_mut() {
            p.sent = Instant::now() - UPSTREAM_TIMEOUT;
        }
        s.relay();
        assert!(s.pending.is_empty(), "queries past their time are given up");
    }
}
