//! A small synchronous rtnetlink client: the few link, address and route requests the bridge
//! driver makes, each sent with `NLM_F_ACK` and checked against the kernel's answer.
//!
//! Written over a raw `NETLINK_ROUTE` socket rather than an async netlink stack: the engine
//! is synchronous, every request here is one message and one acknowledgement, and the wire
//! format for these messages has been stable for two decades.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
pub(super) const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
pub(super) const NLM_F_DUMP: u16 = 0x300;
const NLM_F_DUMP_INTR: u16 = 0x10;
pub(super) const NLM_F_EXCL: u16 = 0x200;
pub(super) const NLM_F_CREATE: u16 = 0x400;

const IFLA_ADDRESS: u16 = 1;
pub(super) const IFLA_IFNAME: u16 = 3;
pub(super) const IFLA_MTU: u16 = 4;
const IFLA_MASTER: u16 = 10;
pub(super) const IFLA_LINKINFO: u16 = 18;
const IFLA_IFALIAS: u16 = 20;
const IFLA_NET_NS_FD: u16 = 28;
pub(super) const IFLA_INFO_KIND: u16 = 1;
pub(super) const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
/// No duplicate address detection: an IPv6 address usable at once, as Docker adds them.
const IFA_F_NODAD: u8 = 0x02;

const RTA_GATEWAY: u16 = 5;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RTN_UNICAST: u8 = 1;

const IFF_UP: u32 = 0x1;
const NLA_F_NESTED: u16 = 0x8000;

/// The most an interface alias holds (the kernel's `IFALIASZ` less its terminator).
pub const ALIAS_MAX: usize = 255;

/// A link as a dump of the namespace's links shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: i32,
    pub name: String,
    /// `bridge`, `veth`...; empty for a device without a kind (loopback, a NIC).
    pub kind: String,
    /// Its `ifalias`, empty where none is set.
    pub alias: String,
    /// The index of the bridge it is a port of.
    pub master: Option<i32>,
}

/// The attributes in `data`, as (kind without flags, payload).
pub(super) fn attrs(mut data: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if data.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([data[0], data[1]]) as usize;
        let kind = u16::from_ne_bytes([data[2], data[3]]) & !NLA_F_NESTED;
        if len < 4 || len > data.len() {
            return None;
        }
        let payload = &data[4..len];
        data = &data[align(len).min(data.len())..];
        Some((kind, payload))
    })
}

fn attr_string(payload: &[u8]) -> String {
    let end = payload
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(payload.len());
    String::from_utf8_lossy(&payload[..end]).into_owned()
}

/// A `RTM_NEWLINK` message's body (`ifinfomsg` and attributes) as a [`Link`].
fn parse_link(body: &[u8]) -> Option<Link> {
    let index = i32::from_ne_bytes(body.get(4..8)?.try_into().ok()?);
    let mut link = Link {
        index,
        name: String::new(),
        kind: String::new(),
        alias: String::new(),
        master: None,
    };
    for (kind, payload) in attrs(body.get(16..)?) {
        match kind {
            IFLA_IFNAME => link.name = attr_string(payload),
            IFLA_IFALIAS => link.alias = attr_string(payload),
            IFLA_MASTER if payload.len() >= 4 => {
                link.master = Some(i32::from_ne_bytes(payload[..4].try_into().ok()?))
            }
            IFLA_LINKINFO => {
                if let Some((_, k)) = attrs(payload).find(|(k, _)| *k == IFLA_INFO_KIND) {
                    link.kind = attr_string(k);
                }
            }
            _ => {}
        }
    }
    Some(link)
}

/// A request under construction: header, fixed part, then attributes.
pub(super) struct Msg {
    pub(super) buf: Vec<u8>,
    /// Offsets of open nested attributes, closed by [`Msg::end`].
    nests: Vec<usize>,
}

fn align(n: usize) -> usize {
    (n + 3) & !3
}

impl Msg {
    pub(super) fn new(kind: u16, flags: u16) -> Msg {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, filled in by `finish`
        buf.extend_from_slice(&kind.to_ne_bytes());
        // A dump ends with a message of its own: no acknowledgement after it.
        let ack = if flags & NLM_F_DUMP == NLM_F_DUMP {
            0
        } else {
            NLM_F_ACK
        };
        buf.extend_from_slice(&(flags | NLM_F_REQUEST | ack).to_ne_bytes());
        buf.extend_from_slice(&1u32.to_ne_bytes()); // sequence
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port: the kernel
        Msg {
            buf,
            nests: Vec::new(),
        }
    }

    /// `struct ifinfomsg`.
    pub(super) fn ifinfo(mut self, index: i32, flags: u32, change: u32) -> Msg {
        self.ifinfo_into(index, flags, change);
        self
    }

    /// `struct ifinfomsg` of a family's own link attributes (a bridge port's: `AF_BRIDGE`).
    pub(super) fn ifinfo_family(&mut self, family: u8, index: i32) {
        self.buf.extend_from_slice(&[family, 0]);
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf.extend_from_slice(&index.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
    }

    fn ifinfo_into(&mut self, index: i32, flags: u32, change: u32) {
        self.buf.extend_from_slice(&[0u8, 0]); // AF_UNSPEC, pad
        self.buf.extend_from_slice(&0u16.to_ne_bytes()); // device type
        self.buf.extend_from_slice(&index.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&change.to_ne_bytes());
    }

    pub(super) fn attr(&mut self, kind: u16, data: &[u8]) -> &mut Msg {
        let len = 4 + data.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.buf.resize(align(self.buf.len()), 0);
        self
    }

    pub(super) fn attr_str(&mut self, kind: u16, s: &str) -> &mut Msg {
        let mut data = s.as_bytes().to_vec();
        data.push(0);
        self.attr(kind, &data)
    }

    pub(super) fn attr_u32(&mut self, kind: u16, v: u32) -> &mut Msg {
        self.attr(kind, &v.to_ne_bytes())
    }

    pub(super) fn begin(&mut self, kind: u16) -> &mut Msg {
        self.nests.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        self
    }

    pub(super) fn end(&mut self) -> &mut Msg {
        let start = self.nests.pop().expect("an open nested attribute");
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }

    fn finish(mut self) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

/// Reads the messages of one datagram `buf` answering the request numbered `seq` (others'
/// are passed over): the answers go to `replies`, an interrupted dump sets `interrupted`.
/// `Some` once the request's end is in it: the acknowledgement, the dump's end, or the
/// error either carries; `None` while more is to come.
fn read_batch(
    buf: &[u8],
    seq: u32,
    replies: &mut Vec<Vec<u8>>,
    interrupted: &mut bool,
) -> Option<io::Result<()>> {
    let malformed = |what: &str| Some(Err(io::Error::new(io::ErrorKind::InvalidData, what)));
    let int = |b: &[u8]| i32::from_ne_bytes(b[..4].try_into().unwrap());
    let mut off = 0usize;
    while off + 16 <= buf.len() {
        let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap()) as usize;
        let kind = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().unwrap());
        if len < 16 || off + len > buf.len() {
            return malformed("malformed netlink reply");
        }
        let flags = u16::from_ne_bytes(buf[off + 6..off + 8].try_into().unwrap());
        let their_seq = u32::from_ne_bytes(buf[off + 8..off + 12].try_into().unwrap());
        let body = &buf[off + 16..off + len];
        off += align(len);
        if their_seq != seq {
            continue;
        }
        *interrupted |= flags & NLM_F_DUMP_INTR != 0;
        match kind {
            NLMSG_ERROR => {
                if body.len() < 4 {
                    return malformed("short netlink error message");
                }
                return Some(match int(body) {
                    0 => Ok(()),
                    code => Err(io::Error::from_raw_os_error(-code)),
                });
            }
            // A dump's end carries its error, if it failed part way.
            NLMSG_DONE => {
                return Some(if body.len() >= 4 && int(body) < 0 {
                    Err(io::Error::from_raw_os_error(-int(body)))
                } else {
                    Ok(())
                });
            }
            _ => replies.push(body.to_vec()),
        }
    }
    None
}

/// A `NETLINK_ROUTE` socket, bound to the network namespace it was opened in.
pub struct Netlink {
    fd: OwnedFd,
    /// The last request's sequence number: answers to another (one given up on) are
    /// passed over.
    seq: std::cell::Cell<u32>,
}

impl Netlink {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Netlink> {
        // SAFETY: plain socket(2); the descriptor is owned from here on.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by socket(2) and is not owned elsewhere.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // Ask for extended error messages (a text naming the failed attribute).
        let one: libc::c_int = 1;
        // SAFETY: a valid option value of the size given.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_NETLINK,
                libc::NETLINK_EXT_ACK,
                &one as *const _ as *const libc::c_void,
                std::mem::size_of_val(&one) as libc::socklen_t,
            )
        };
        Ok(Netlink {
            fd,
            seq: std::cell::Cell::new(0),
        })
    }

    /// Sends one request and waits for its acknowledgement; answers other than the ack
    /// (a GETLINK reply, say) are returned.
    pub(super) fn request(&self, msg: Msg) -> io::Result<Vec<Vec<u8>>> {
        self.exchange(msg).map(|(replies, _)| replies)
    }

    /// [`Netlink::request`], saying too whether a dump was interrupted (the kernel's table
    /// changed under it: its answers may be inconsistent).
    fn exchange(&self, msg: Msg) -> io::Result<(Vec<Vec<u8>>, bool)> {
        let seq = self.seq.get().wrapping_add(1);
        self.seq.set(seq);
        let mut buf = msg.finish();
        buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        // SAFETY: the buffer is valid for its length; the kernel's address is all zero.
        let n = unsafe {
            let mut addr: libc::sockaddr_nl = std::mem::zeroed();
            addr.nl_family = libc::AF_NETLINK as u16;
            libc::sendto(
                self.fd.as_raw_fd(),
                buf.as_ptr() as *const libc::c_void,
                buf.len(),
                0,
                &addr as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if n == -1 {
            return Err(io::Error::last_os_error());
        }
        let mut replies = Vec::new();
        let mut interrupted = false;
        let mut rbuf = vec![0u8; 32 * 1024];
        loop {
            // SAFETY: reading into a buffer we own, of the length given.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    rbuf.as_mut_ptr() as *mut libc::c_void,
                    rbuf.len(),
                    0,
                )
            };
            if n == -1 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if let Some(end) = read_batch(&rbuf[..n as usize], seq, &mut replies, &mut interrupted)
            {
                return end.map(|()| (replies, interrupted));
            }
        }
    }

    /// The index of the link named `name`, if there is one.
    pub fn link_index(&self, name: &str) -> io::Result<Option<i32>> {
        Ok(self.link(name)?.map(|l| l.index))
    }

    /// The link named `name`, if there is one.
    pub fn link(&self, name: &str) -> io::Result<Option<Link>> {
        let mut m = Msg::new(RTM_GETLINK, 0).ifinfo(0, 0, 0);
        m.attr_str(IFLA_IFNAME, name);
        match self.request(m) {
            Ok(replies) => Ok(replies.first().and_then(|r| parse_link(r))),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every link of the namespace: a dump the kernel says was interrupted (links came or
    /// went during it) is asked for again.
    pub fn links(&self) -> io::Result<Vec<Link>> {
        let mut tries = 0;
        loop {
            let m = Msg::new(RTM_GETLINK, NLM_F_DUMP).ifinfo(0, 0, 0);
            let (replies, interrupted) = self.exchange(m)?;
            tries += 1;
            if !interrupted || tries == 5 {
                return Ok(replies.iter().filter_map(|r| parse_link(r)).collect());
            }
        }
    }

    /// Sets a link's `ifalias` (at most [`ALIAS_MAX`] bytes; empty clears it).
    pub fn set_alias(&self, index: i32, alias: &str) -> io::Result<()> {
        let mut m = Msg::new(RTM_NEWLINK, 0).ifinfo(index, 0, 0);
        m.attr(IFLA_IFALIAS, alias.as_bytes());
        self.request(m).map(drop)
    }

    /// Creates a bridge device; fails with `EEXIST` when the name is taken.
    pub fn add_bridge(&self, name: &str, mtu: Option<u32>) -> io::Result<()> {
        let mut m = Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL).ifinfo(0, 0, 0);
        m.attr_str(IFLA_IFNAME, name);
        if let Some(mtu) = mtu {
            m.attr_u32(IFLA_MTU, mtu);
        }
        m.begin(IFLA_LINKINFO)
            .attr_str(IFLA_INFO_KIND, "bridge")
            .end();
        self.request(m).map(drop)
    }

    /// Creates a veth pair: `host` stays here, `peer` goes to the namespace `peer_netns`.
    pub fn add_veth(&self, host: &str, peer: &str, peer_netns: RawFd, mtu: u32) -> io::Result<()> {
        let mut m = Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL).ifinfo(0, 0, 0);
        m.attr_str(IFLA_IFNAME, host).attr_u32(IFLA_MTU, mtu);
        m.begin(IFLA_LINKINFO)
            .attr_str(IFLA_INFO_KIND, "veth")
            .begin(IFLA_INFO_DATA)
            .begin(VETH_INFO_PEER);
        m.ifinfo_into(0, 0, 0);
        m.attr_str(IFLA_IFNAME, peer)
            .attr_u32(IFLA_MTU, mtu)
            .attr_u32(IFLA_NET_NS_FD, peer_netns as u32);
        m.end().end().end();
        self.request(m).map(drop)
    }

    /// Sets a link up, and optionally its master (a bridge) and hardware address.
    pub fn set_link(
        &self,
        index: i32,
        master: Option<i32>,
        mac: Option<[u8; 6]>,
    ) -> io::Result<()> {
        let mut m = Msg::new(RTM_NEWLINK, 0).ifinfo(index, IFF_UP, IFF_UP);
        if let Some(master) = master {
            m.attr_u32(IFLA_MASTER, master as u32);
        }
        if let Some(mac) = mac {
            m.attr(IFLA_ADDRESS, &mac);
        }
        self.request(m).map(drop)
    }

    pub fn del_link(&self, index: i32) -> io::Result<()> {
        let m = Msg::new(RTM_DELLINK, 0).ifinfo(index, 0, 0);
        self.request(m).map(drop)
    }

    /// Adds an address (an IPv6 one without duplicate address detection); `EEXIST` when the
    /// link already has it.
    pub fn add_addr(&self, index: i32, addr: impl Into<IpAddr>, prefix: u8) -> io::Result<()> {
        let mut m = Msg::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
        match addr.into() {
            IpAddr::V4(addr) => {
                m.buf
                    .extend_from_slice(&[libc::AF_INET as u8, prefix, 0, RT_SCOPE_UNIVERSE]);
                m.buf.extend_from_slice(&(index as u32).to_ne_bytes());
                let bcast = if prefix >= 31 {
                    addr
                } else {
                    Ipv4Addr::from(u32::from(addr) | (u32::MAX >> prefix))
                };
                m.attr(IFA_LOCAL, &addr.octets())
                    .attr(IFA_ADDRESS, &addr.octets())
                    .attr(IFA_BROADCAST, &bcast.octets());
            }
            IpAddr::V6(addr) => {
                m.buf.extend_from_slice(&[
                    libc::AF_INET6 as u8,
                    prefix,
                    IFA_F_NODAD,
                    RT_SCOPE_UNIVERSE,
                ]);
                m.buf.extend_from_slice(&(index as u32).to_ne_bytes());
                m.attr(IFA_LOCAL, &addr.octets())
                    .attr(IFA_ADDRESS, &addr.octets());
            }
        }
        self.request(m).map(drop)
    }

    /// Adds the default route (of the gateway's family) through `gateway`.
    pub fn add_default_route(&self, gateway: impl Into<IpAddr>) -> io::Result<()> {
        let gateway = gateway.into();
        let family = match gateway {
            IpAddr::V4(_) => libc::AF_INET,
            IpAddr::V6(_) => libc::AF_INET6,
        };
        let mut m = Msg::new(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL);
        m.buf.extend_from_slice(&[
            family as u8,
            0, // destination prefix: the default route
            0,
            0,
            RT_TABLE_MAIN,
            RTPROT_BOOT,
            RT_SCOPE_UNIVERSE,
            RTN_UNICAST,
        ]);
        m.buf.extend_from_slice(&0u32.to_ne_bytes());
        match gateway {
            IpAddr::V4(g) => m.attr(RTA_GATEWAY, &g.octets()),
            IpAddr::V6(g) => m.attr(RTA_GATEWAY, &g.octets()),
        };
        self.request(m).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_attributes_carry_their_length() {
        let mut m = Msg::new(RTM_NEWLINK, 0).ifinfo(0, 0, 0);
        m.begin(IFLA_LINKINFO)
            .attr_str(IFLA_INFO_KIND, "veth")
            .end();
        let b = m.finish();
        assert_eq!(
            u32::from_ne_bytes(b[0..4].try_into().unwrap()) as usize,
            b.len()
        );
        // Header 16 + ifinfomsg 16, then the nest: 4 + ("veth\0" attribute: 4 + 5, aligned 12).
        let nest = &b[32..];
        assert_eq!(u16::from_ne_bytes([nest[0], nest[1]]), 16);
        assert_eq!(
            u16::from_ne_bytes([nest[2], nest[3]]),
            IFLA_LINKINFO | NLA_F_NESTED
        );
        assert_eq!(&nest[8..13], b"veth\0");
    }

    fn ip(args: &[&str]) -> String {
        let out = std::process::Command::new("ip")
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn errno(r: io::Result<()>) -> Option<i32> {
        r.err().and_then(|e| e.raw_os_error())
    }

    #[test]
    fn links_addresses_and_routes_are_made_as_asked_and_refused_twice() {
        let (shown, again) = crate::testutil::in_own_netns(|| {
            let nl = Netlink::open()?;
            assert_eq!(nl.link_index("kl0")?, None);
            nl.add_bridge("kl0", Some(1400))?;
            let br = nl.link_index("kl0")?.expect("the bridge");
            assert!(br > 1, "{br}");
            nl.set_link(br, None, Some([0x02, 0x42, 1, 2, 3, 4]))?;
            nl.add_addr(br, Ipv4Addr::new(10, 7, 0, 1), 24)?;
            nl.add_addr(br, Ipv4Addr::new(10, 8, 0, 1), 31)?;
            nl.add_addr(br, Ipv4Addr::new(10, 9, 0, 1), 32)?;
            // Its MTU before a port with a smaller one joins it.
            let bridge = ip(&["-o", "link", "show", "kl0"]).replace("kl0:", "bridge kl0:");
            // A veth pair whose peer goes to a namespace of its own.
            let dir = tempfile::tempdir()?;
            let peer_ns = dir.path().join("peer");
            crate::network::netns::create(&peer_ns)?;
            let ns = std::fs::File::open(&peer_ns)?;
            nl.add_veth("kl1", "kp1", ns.as_raw_fd(), 1300)?;
            let veth = nl.link_index("kl1")?.expect("the host end");
            nl.set_link(veth, Some(br), None)?;
            let peer = crate::network::netns::within(&peer_ns, || {
                let nl = Netlink::open()?;
                let index = nl.link_index("kp1")?.expect("the peer");
                nl.set_link(index, None, None)?;
                nl.add_addr(index, Ipv4Addr::new(10, 7, 0, 2), 24)?;
                nl.add_default_route(Ipv4Addr::new(10, 7, 0, 1))?;
                let again = errno(nl.add_default_route(Ipv4Addr::new(10, 7, 0, 1)));
                let v6: std::net::Ipv6Addr = "fd07::2".parse().unwrap();
                nl.add_addr(index, v6, 64)?;
                nl.add_default_route("fd07::1".parse::<std::net::Ipv6Addr>().unwrap())?;
                Ok((
                    ip(&["-o", "link", "show", "kp1"])
                        + &ip(&["-o", "-4", "addr", "show", "kp1"])
                        + &ip(&["-o", "-6", "addr", "show", "kp1"])
                        + &ip(&["route", "show", "default"])
                        + &ip(&["-6", "route", "show", "default"]),
                    again,
                ))
            });
            crate::network::netns::remove(&peer_ns)?;
            let (peer, route_again) = peer?;
            let again = [
                errno(nl.add_bridge("kl0", None)),
                errno(nl.add_addr(br, Ipv4Addr::new(10, 7, 0, 1), 24)),
                route_again,
                errno(nl.del_link(9999)),
            ];
            let shown =
                bridge + &ip(&["-o", "link", "show"]) + &ip(&["-o", "-4", "addr", "show"]) + &peer;
            nl.del_link(veth)?;
            nl.del_link(br)?;
            assert_eq!(nl.link_index("kl0")?, None);
            Ok((shown, again))
        });
        let line = |words: &[&str]| {
            let found = shown.lines().find(|l| words.iter().all(|w| l.contains(w)));
            assert!(found.is_some(), "{words:?} in\n{shown}");
        };
        line(&[
            "bridge kl0:",
            "mtu 1400",
            "UP",
            "link/ether 02:42:01:02:03:04",
        ]);
        line(&["kl1@", "mtu 1300", "master kl0", "UP"]);
        line(&["kp1@", "mtu 1300", "UP"]);
        line(&["kl0", "inet 10.7.0.1/24 brd 10.7.0.255"]);
        line(&["kl0", "inet 10.8.0.1/31 brd 10.8.0.1"]);
        line(&["kl0", "inet 10.9.0.1/32 brd 10.9.0.1"]);
        line(&["kp1", "inet 10.7.0.2/24 brd 10.7.0.255"]);
        line(&["default via 10.7.0.1 dev kp1"]);
        // IPv6: no duplicate address detection, so no tentative state to wait out.
        line(&["kp1", "inet6 fd07::2/64", "nodad"]);
        line(&["default via fd07::1 dev kp1"]);
        let eexist = Some(libc::EEXIST);
        assert_eq!(again, [eexist, eexist, eexist, Some(libc::ENODEV)]);
    }

    #[test]
    fn a_dump_shows_kinds_aliases_and_ports_and_an_alias_is_set_and_cleared() {
        crate::testutil::in_own_netns(|| {
            let nl = Netlink::open()?;
            nl.add_bridge("kl0", None)?;
            let br = nl.link_index("kl0")?.expect("the bridge");
            let dir = tempfile::tempdir()?;
            let peer_ns = dir.path().join("peer");
            crate::network::netns::create(&peer_ns)?;
            let ns = std::fs::File::open(&peer_ns)?;
            nl.add_veth("kl1", "kp1", ns.as_raw_fd(), 1500)?;
            drop(ns);
            let veth = nl.link_index("kl1")?.expect("the host end");
            nl.set_link(veth, Some(br), None)?;
            let mark = "ketch 0123 /a root/with spaces";
            nl.set_alias(br, mark)?;
            let links = nl.links()?;
            let by_name = |n: &str| links.iter().find(|l| l.name == n).cloned();
            let bridge = by_name("kl0").expect("kl0 in the dump");
            assert_eq!((bridge.index, bridge.kind.as_str()), (br, "bridge"));
            assert_eq!((bridge.alias.as_str(), bridge.master), (mark, None));
            let port = by_name("kl1").expect("kl1 in the dump");
            assert_eq!((port.kind.as_str(), port.master), ("veth", Some(br)));
            assert_eq!(by_name("lo").map(|l| l.kind), Some(String::new()));
            assert_eq!(nl.link("kl0")?, Some(bridge));
            assert_eq!(nl.link("kl9")?, None);
            // A request after the dump gets its own answer.
            nl.set_alias(br, "")?;
            assert_eq!(nl.link("kl0")?.map(|l| l.alias), Some(String::new()));
            let too_long = "x".repeat(ALIAS_MAX + 1);
            assert!(nl.set_alias(br, &too_long).is_err());
            nl.del_link(veth)?;
            nl.del_link(br)?;
            crate::network::netns::remove(&peer_ns)
        });
    }

    /// A dump longer than one read: every link is there, once, and the socket answers the
    /// next request rightly.
    #[test]
    fn a_long_dump_is_read_whole() {
        crate::testutil::in_own_netns(|| {
            let nl = Netlink::open()?;
            for i in 0..300 {
                nl.add_bridge(&format!("kd{i}"), None)?;
            }
            let links = nl.links()?;
            let mut names: Vec<&str> = links.iter().map(|l| l.name.as_str()).collect();
            names.sort();
            names.dedup();
            assert_eq!((links.len(), names.len()), (301, 301));
            assert!(links.iter().all(|l| l.name == "lo" || l.kind == "bridge"));
            assert_eq!(nl.link("kd299")?.map(|l| l.kind), Some("bridge".into()));
            // They go with the namespace.
            Ok(())
        });
    }

    /// Attributes are read within their message: a length too short for a header or
    /// beyond what is left ends the list, and a message too short for its header is none.
    #[test]
    fn malformed_attributes_end_the_list() {
        let attr = |len: u16, kind: u16, payload: &[u8]| {
            let mut a = len.to_ne_bytes().to_vec();
            a.extend_from_slice(&kind.to_ne_bytes());
            a.extend_from_slice(payload);
            a
        };
        let name = attr(8, IFLA_IFNAME, b"br0\0");
        // An attribute with no payload (a flag) is one like any other, and the last one
        // fills the list to its end.
        let mut flags = attr(4, 99, b"");
        flags.extend(&name);
        let seen: Vec<u16> = attrs(&flags).map(|(k, _)| k).collect();
        assert_eq!(seen, [99, IFLA_IFNAME]);
        for bad_len in [0u16, 1, 2, 3, 200] {
            let mut data = name.clone();
            data.extend(attr(bad_len, IFLA_IFALIAS, b"xxxx"));
            let seen: Vec<(u16, Vec<u8>)> = attrs(&data).map(|(k, p)| (k, p.to_vec())).collect();
            assert_eq!(seen, [(IFLA_IFNAME, b"br0\0".to_vec())], "length {bad_len}");
        }
        // A nested kind keeps its kind without the flag; a payload is cut at its NUL.
        let nested = attr(
            12,
            IFLA_LINKINFO | NLA_F_NESTED,
            &attr(8, IFLA_INFO_KIND, b"veth"),
        );
        let mut body = vec![0u8; 16];
        body[4..8].copy_from_slice(&7i32.to_ne_bytes());
        body.extend(&name);
        body.extend(&nested);
        let link = parse_link(&body).unwrap();
        assert_eq!(
            (link.index, link.name.as_str(), link.kind.as_str()),
            (7, "br0", "veth")
        );
        assert_eq!(parse_link(&body[..6]), None);
        assert_eq!(attr_string(b"ab\0cd"), "ab");
        assert_eq!(attr_string(b"abc"), "abc");
    }

    /// One datagram's messages, as the kernel's answers are read: the request's own, in
    /// order, to its end; another request's passed over; a bad length an error.
    #[test]
    fn a_datagram_is_read_to_the_end_of_its_request() {
        let msg = |kind: u16, flags: u16, seq: u32, body: &[u8]| {
            let mut m = ((16 + body.len()) as u32).to_ne_bytes().to_vec();
            m.extend_from_slice(&kind.to_ne_bytes());
            m.extend_from_slice(&flags.to_ne_bytes());
            m.extend_from_slice(&seq.to_ne_bytes());
            m.extend_from_slice(&0u32.to_ne_bytes());
            m.extend_from_slice(body);
            m.resize(align(m.len()), 0);
            m
        };
        let read = |buf: &[u8]| {
            let (mut replies, mut interrupted) = (Vec::new(), false);
            let end = read_batch(buf, 7, &mut replies, &mut interrupted)
                .map(|r| r.map_err(|e| e.raw_os_error().unwrap_or(-1)));
            (end, replies, interrupted)
        };
        let err = |code: i32| code.to_ne_bytes().to_vec();
        // Answers, one of another request between them, then the dump's end.
        let mut buf = msg(RTM_NEWLINK, 2, 7, b"one");
        buf.extend(msg(RTM_NEWLINK, 0, 6, b"stale"));
        buf.extend(msg(NLMSG_DONE, 0, 6, &err(0)));
        buf.extend(msg(RTM_NEWLINK, 2, 7, b"two!"));
        let (end, replies, interrupted) = read(&buf);
        assert_eq!((end, interrupted), (None, false));
        assert_eq!(replies, [b"one".to_vec(), b"two!".to_vec()]);
        buf.extend(msg(NLMSG_DONE, 2 | NLM_F_DUMP_INTR, 7, &err(0)));
        assert_eq!(read(&buf).0, Some(Ok(())));
        assert!(read(&buf).2, "the dump was interrupted");
        // The end's error, an acknowledgement, an error, short or bad messages.
        assert_eq!(
            read(&msg(NLMSG_DONE, 0, 7, &err(-libc::EMSGSIZE))).0,
            Some(Err(libc::EMSGSIZE))
        );
        assert_eq!(read(&msg(NLMSG_DONE, 0, 7, b"")).0, Some(Ok(())));
        assert_eq!(read(&msg(NLMSG_ERROR, 0, 7, &err(0))).0, Some(Ok(())));
        assert_eq!(
            read(&msg(NLMSG_ERROR, 0, 7, &err(-libc::ENODEV))).0,
            Some(Err(libc::ENODEV))
        );
        assert_eq!(read(&msg(NLMSG_ERROR, 0, 7, b"ab")).0, Some(Err(-1)));
        let mut short = msg(RTM_NEWLINK, 0, 7, b"");
        short[0..4].copy_from_slice(&15u32.to_ne_bytes());
        assert_eq!(read(&short).0, Some(Err(-1)));
        let mut long = msg(RTM_NEWLINK, 0, 7, b"abcd");
        long[0..4].copy_from_slice(&24u32.to_ne_bytes());
        assert_eq!(read(&long).0, Some(Err(-1)));
        // Exactly one message's length is the datagram's: read whole.
        assert_eq!(read(&msg(NLMSG_ERROR, 0, 7, &err(0))[..20]).0, Some(Ok(())));
        assert_eq!(read(&[0u8; 15]).0, None);
    }
}
