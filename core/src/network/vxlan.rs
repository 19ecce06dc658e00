//! What an overlay network is on one host, through netlink: a VXLAN device (no multicast, no
//! learning: every remote endpoint is told to it), the forwarding entries that send an
//! endpoint's MAC to its host's tunnel end, the neighbour entries it answers ARP from
//! (`proxy`), and bridge ports kept from each other (`isolated`).

use std::io;
use std::net::{IpAddr, Ipv4Addr};

use super::netlink::{Msg, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, Netlink, attrs};

const RTM_SETLINK: u16 = 19;
const RTM_NEWNEIGH: u16 = 28;
const RTM_DELNEIGH: u16 = 29;
const RTM_GETNEIGH: u16 = 30;
const NLM_F_REPLACE: u16 = 0x100;

const AF_BRIDGE: u8 = 7;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
const NUD_PERMANENT: u16 = 0x80;
const NTF_SELF: u8 = 0x02;

const IFLA_PROTINFO: u16 = 12;
const IFLA_BRPORT_ISOLATED: u16 = 33;

const IFLA_VXLAN_ID: u16 = 1;
const IFLA_VXLAN_LOCAL: u16 = 4;
const IFLA_VXLAN_LEARNING: u16 = 7;
const IFLA_VXLAN_PROXY: u16 = 11;
const IFLA_VXLAN_PORT: u16 = 15;

/// The VXLAN port IANA assigned, which Docker's overlay uses.
pub const VXLAN_PORT: u16 = 4789;

/// A neighbour (`AF_INET`: an address's MAC) or forwarding (`AF_BRIDGE`: a MAC's tunnel
/// end) entry, as a dump shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neigh {
    pub family: u8,
    pub index: i32,
    pub state: u16,
    pub flags: u8,
    /// The address (`AF_INET`), or the remote tunnel end (`AF_BRIDGE`).
    pub dst: Option<IpAddr>,
    pub mac: Option<[u8; 6]>,
}

impl Neigh {
    /// A forwarding entry of the device itself (`self`), not the bridge's.
    pub fn is_fdb(&self) -> bool {
        self.family == AF_BRIDGE
    }
}

/// `struct ndmsg`.
fn ndmsg(m: &mut Msg, family: u8, index: i32, state: u16, flags: u8) {
    m.buf.extend_from_slice(&[family, 0, 0, 0]);
    m.buf.extend_from_slice(&index.to_ne_bytes());
    m.buf.extend_from_slice(&state.to_ne_bytes());
    m.buf.extend_from_slice(&[flags, 0]);
}

fn parse_neigh(body: &[u8]) -> Option<Neigh> {
    if body.len() < 12 {
        return None;
    }
    let mut n = Neigh {
        family: body[0],
        index: i32::from_ne_bytes(body[4..8].try_into().ok()?),
        state: u16::from_ne_bytes(body[8..10].try_into().ok()?),
        flags: body[10],
        dst: None,
        mac: None,
    };
    for (kind, payload) in attrs(&body[12..]) {
        match kind {
            NDA_DST if payload.len() == 4 => {
                n.dst = Some(IpAddr::from(<[u8; 4]>::try_from(payload).ok()?));
            }
            NDA_DST if payload.len() == 16 => {
                n.dst = Some(IpAddr::from(<[u8; 16]>::try_from(payload).ok()?));
            }
            NDA_LLADDR if payload.len() == 6 => n.mac = payload.try_into().ok(),
            _ => {}
        }
    }
    Some(n)
}

impl Netlink {
    /// Creates a VXLAN device for `vni` whose tunnels start at `local` on UDP `port`: no
    /// multicast group and no learning, and ARP answered from its neighbour entries.
    pub fn add_vxlan(
        &self,
        name: &str,
        vni: u32,
        local: Ipv4Addr,
        port: u16,
        mtu: u32,
    ) -> io::Result<()> {
        let mut m =
            Msg::new(super::netlink::RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL).ifinfo(0, 0, 0);
        m.attr_str(super::netlink::IFLA_IFNAME, name)
            .attr_u32(super::netlink::IFLA_MTU, mtu);
        m.begin(super::netlink::IFLA_LINKINFO)
            .attr_str(super::netlink::IFLA_INFO_KIND, "vxlan")
            .begin(super::netlink::IFLA_INFO_DATA)
            .attr_u32(IFLA_VXLAN_ID, vni)
            .attr(IFLA_VXLAN_LOCAL, &local.octets())
            .attr(IFLA_VXLAN_PORT, &port.to_be_bytes())
            .attr(IFLA_VXLAN_LEARNING, &[0])
            .attr(IFLA_VXLAN_PROXY, &[1])
            .end()
            .end();
        self.request(m).map(drop)
    }

    /// The neighbour entries (`AF_INET`) and the device's own forwarding entries
    /// (`AF_BRIDGE`) of the link `index`.
    pub fn neighbours(&self, index: i32) -> io::Result<Vec<Neigh>> {
        let mut out = Vec::new();
        for family in [libc::AF_INET as u8, AF_BRIDGE] {
            let mut m = Msg::new(RTM_GETNEIGH, NLM_F_DUMP);
            ndmsg(&mut m, family, 0, 0, 0);
            out.extend(
                self.request(m)?
                    .iter()
                    .filter_map(|r| parse_neigh(r))
                    .filter(|n| n.index == index && (!n.is_fdb() || n.flags & NTF_SELF != 0)),
            );
        }
        Ok(out)
    }

    /// Sets the MAC of `ip` on link `index`, for good (replacing what was there).
    pub fn set_neighbour(&self, index: i32, ip: Ipv4Addr, mac: [u8; 6]) -> io::Result<()> {
        let mut m = Msg::new(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE);
        ndmsg(&mut m, libc::AF_INET as u8, index, NUD_PERMANENT, 0);
        m.attr(NDA_DST, &ip.octets()).attr(NDA_LLADDR, &mac);
        self.request(m).map(drop)
    }

    /// Sends frames for `mac` on the VXLAN link `index` to the tunnel end `remote`.
    pub fn add_forwarding(&self, index: i32, mac: [u8; 6], remote: Ipv4Addr) -> io::Result<()> {
        // One tunnel end per MAC: replaced, never appended (each appended one would get a
        // copy of every frame).
        let mut m = Msg::new(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE);
        ndmsg(&mut m, AF_BRIDGE, index, NUD_PERMANENT, NTF_SELF);
        m.attr(NDA_LLADDR, &mac).attr(NDA_DST, &remote.octets());
        self.request(m).map(drop)
    }

    /// Removes an entry [`Netlink::neighbours`] listed; one already gone is not an error.
    pub fn del_neighbour(&self, n: &Neigh) -> io::Result<()> {
        let mut m = Msg::new(RTM_DELNEIGH, 0);
        ndmsg(&mut m, n.family, n.index, 0, n.flags & NTF_SELF);
        if let Some(mac) = n.mac.filter(|_| n.is_fdb()) {
            m.attr(NDA_LLADDR, &mac);
        }
        match n.dst {
            Some(IpAddr::V4(ip)) => {
                m.attr(NDA_DST, &ip.octets());
            }
            Some(IpAddr::V6(ip)) => {
                m.attr(NDA_DST, &ip.octets());
            }
            None => {}
        }
        match self.request(m) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            r => r.map(drop),
        }
    }

    /// Keeps the bridge port `index` from the bridge's other isolated ports: it reaches the
    /// bridge itself (and ports not isolated) only.
    pub fn set_port_isolated(&self, index: i32) -> io::Result<()> {
        let mut m = Msg::new(RTM_SETLINK, 0);
        m.ifinfo_family(AF_BRIDGE, index);
        m.begin(IFLA_PROTINFO)
            .attr(IFLA_BRPORT_ISOLATED, &[1])
            .end();
        self.request(m).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VXLAN device, its entries for a remote endpoint, and a port kept from the others,
    /// as the kernel reads them back.
    #[test]
    fn a_vxlan_device_takes_its_entries() {
        crate::testutil::in_own_netns(|| {
            let nl = Netlink::open().unwrap();
            let lo = nl.link_index("lo").unwrap().unwrap();
            nl.set_link(lo, None, None).unwrap();
            nl.add_addr(lo, Ipv4Addr::new(127, 0, 0, 2), 8)
                .unwrap_or(());
            nl.add_vxlan("kxtest", 4097, Ipv4Addr::LOCALHOST, VXLAN_PORT, 1450)
                .unwrap();
            let vx = nl.link_index("kxtest").unwrap().unwrap();
            nl.add_bridge("kbtest", Some(1450)).unwrap();
            let br = nl.link_index("kbtest").unwrap().unwrap();
            nl.set_link(vx, Some(br), None).unwrap();
            let mac = [0x02, 0x42, 10, 0, 0, 7];
            let remote = Ipv4Addr::new(198, 18, 0, 12);
            nl.set_neighbour(vx, Ipv4Addr::new(10, 0, 0, 7), mac)
                .unwrap();
            nl.add_forwarding(vx, mac, remote).unwrap();
            let entries = nl.neighbours(vx).unwrap();
            let neigh = entries
                .iter()
                .find(|n| !n.is_fdb() && n.dst == Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7))))
                .expect("the neighbour entry");
            assert_eq!(neigh.mac, Some(mac));
            let fdb = entries
                .iter()
                .find(|n| n.is_fdb() && n.mac == Some(mac))
                .expect("the forwarding entry");
            assert_eq!(fdb.dst, Some(IpAddr::V4(remote)));
            for n in &entries {
                nl.del_neighbour(n).unwrap();
            }
            let left = nl.neighbours(vx).unwrap();
            assert!(!left.iter().any(|n| n.mac == Some(mac)), "{left:?}");
            // Twice: an entry already gone is no error.
            nl.del_neighbour(neigh).unwrap();
            nl.set_port_isolated(vx).unwrap();
            let shown = std::process::Command::new("bridge")
                .args(["-d", "link", "show", "dev", "kxtest"])
                .output()
                .unwrap();
            let shown = String::from_utf8_lossy(&shown.stdout);
            assert!(shown.contains("isolated on"), "{shown}");
            Ok(())
        });
    }
}
