//! IPv4 and IPv6 subnets: parsing, containment, overlap, and the address pools new networks
//! draw from.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IPv4 prefix, always stored with the host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Subnet {
        let mask = Self::mask_of(prefix);
        Subnet {
            addr: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        }
    }

    fn mask_of(prefix: u8) -> u32 {
        if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(prefix))
        }
    }

    pub fn mask(&self) -> u32 {
        Self::mask_of(self.prefix)
    }

    pub fn first(&self) -> u32 {
        u32::from(self.addr)
    }

    pub fn last(&self) -> u32 {
        self.first() | !self.mask()
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == self.first()
    }

    pub fn contains_subnet(&self, other: &Subnet) -> bool {
        other.prefix >= self.prefix && self.contains(other.addr)
    }

    pub fn overlaps(&self, other: &Subnet) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }

    /// The `n`th address of the subnet (0 is the network address).
    pub fn nth(&self, n: u32) -> Option<Ipv4Addr> {
        let ip = self.first().checked_add(n)?;
        (ip <= self.last()).then(|| Ipv4Addr::from(ip))
    }

    /// Splits this subnet into subnets of `prefix` bits, in order.
    pub fn split(&self, prefix: u8) -> impl Iterator<Item = Subnet> + '_ {
        let step = if prefix >= 32 {
            1u64
        } else {
            1u64 << (32 - prefix)
        };
        let count = if prefix < self.prefix {
            0
        } else {
            1u64 << (prefix - self.prefix)
        };
        (0..count).map(move |i| {
            Subnet::new(
                Ipv4Addr::from((u64::from(self.first()) + i * step) as u32),
                prefix,
            )
        })
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = String;

    fn from_str(s: &str) -> Result<Subnet, String> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("invalid CIDR address: {s}"))?;
        let addr: Ipv4Addr = a
            .parse()
            .map_err(|_| format!("invalid CIDR address: {s}"))?;
        let prefix: u8 = p
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("invalid CIDR address: {s}"))?;
        Ok(Subnet::new(addr, prefix))
    }
}

/// An IPv6 prefix, always stored with the host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet6 {
    pub addr: Ipv6Addr,
    pub prefix: u8,
}

impl Subnet6 {
    pub fn new(addr: Ipv6Addr, prefix: u8) -> Subnet6 {
        Subnet6 {
            addr: Ipv6Addr::from(u128::from(addr) & Self::mask_of(prefix)),
            prefix,
        }
    }

    fn mask_of(prefix: u8) -> u128 {
        if prefix == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(prefix))
        }
    }

    pub fn first(&self) -> u128 {
        u128::from(self.addr)
    }

    pub fn last(&self) -> u128 {
        self.first() | !Self::mask_of(self.prefix)
    }

    pub fn contains(&self, ip: Ipv6Addr) -> bool {
        u128::from(ip) & Self::mask_of(self.prefix) == self.first()
    }

    pub fn contains_subnet(&self, other: &Subnet6) -> bool {
        other.prefix >= self.prefix && self.contains(other.addr)
    }

    pub fn overlaps(&self, other: &Subnet6) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }

    /// The `n`th address of the subnet (0 is the subnet-router anycast address).
    pub fn nth(&self, n: u128) -> Option<Ipv6Addr> {
        let ip = self.first().checked_add(n)?;
        (ip <= self.last()).then(|| Ipv6Addr::from(ip))
    }

    /// A unique local /64 (RFC 4193): `fd`, a 40-bit global ID from the kernel's random
    /// source, subnet 0. What a network asked to have IPv6 without a subnet gets.
    pub fn random_ula() -> Subnet6 {
        let mut id = [0u8; 5];
        // SAFETY: getrandom fills the buffer it is given, of the length given.
        let n = unsafe { libc::getrandom(id.as_mut_ptr().cast(), id.len(), 0) };
        if n != id.len() as isize {
            // Never short for five bytes once the kernel has booted; the clock otherwise.
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            id.copy_from_slice(&t.to_le_bytes()[..5]);
        }
        let mut octets = [0u8; 16];
        octets[0] = 0xfd;
        octets[1..6].copy_from_slice(&id);
        Subnet6::new(Ipv6Addr::from(octets), 64)
    }
}

impl fmt::Display for Subnet6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Subnet6 {
    type Err = String;

    fn from_str(s: &str) -> Result<Subnet6, String> {
        let bad = || format!("invalid CIDR address: {s}");
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv6Addr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().ok().filter(|p| *p <= 128).ok_or_else(bad)?;
        Ok(Subnet6::new(addr, prefix))
    }
}

/// Reads Docker's `--default-address-pool` value: `base=CIDR,size=N`.
pub fn parse_pool(s: &str) -> Result<(Subnet, u8), String> {
    let mut base = None;
    let mut size = None;
    for part in s.split(',') {
        match part.split_once('=') {
            Some(("base", v)) => base = Some(v.parse::<Subnet>()?),
            Some(("size", v)) => {
                size = Some(
                    v.parse::<u8>()
                        .ok()
                        .filter(|n| *n <= 32)
                        .ok_or_else(|| format!("invalid pool size: {v}"))?,
                )
            }
            _ => return Err(format!("invalid address pool {s:?}: want base=CIDR,size=N")),
        }
    }
    match (base, size) {
        (Some(b), Some(n)) if n >= b.prefix => Ok((b, n)),
        (Some(b), Some(n)) => Err(format!("pool size /{n} is larger than its base {b}")),
        _ => Err(format!("invalid address pool {s:?}: want base=CIDR,size=N")),
    }
}

/// Where subnets of new networks come from, as Docker's default address pools: the /16s of
/// 172.17.0.0/12, then the /20s of 192.168.0.0/16.
pub fn default_pools() -> Vec<(Subnet, u8)> {
    vec![
        (Subnet::new(Ipv4Addr::new(172, 17, 0, 0), 16), 16),
        (Subnet::new(Ipv4Addr::new(172, 18, 0, 0), 15), 16),
        (Subnet::new(Ipv4Addr::new(172, 20, 0, 0), 14), 16),
        (Subnet::new(Ipv4Addr::new(172, 24, 0, 0), 14), 16),
        (Subnet::new(Ipv4Addr::new(172, 28, 0, 0), 14), 16),
        (Subnet::new(Ipv4Addr::new(192, 168, 0, 0), 16), 20),
    ]
}

/// The IPv4 routes of the main table of the calling thread's network namespace, as subnets;
/// the default route is left out, since every subnet overlaps it. (`/proc/net` is the
/// process's first thread's namespace, which may not be the caller's.)
pub fn host_routes() -> Vec<Subnet> {
    routes_of(&std::fs::read_to_string("/proc/thread-self/net/route").unwrap_or_default())
}

fn routes_of(text: &str) -> Vec<Subnet> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let dest = u32::from_str_radix(f.get(1)?, 16).ok()?;
            let mask = u32::from_str_radix(f.get(7)?, 16).ok()?;
            // The file holds addresses in host byte order of a little-endian u32 read.
            let dest = Ipv4Addr::from(u32::from_be(dest));
            let prefix = u32::from_be(mask).count_ones() as u8;
            (prefix > 0).then(|| Subnet::new(dest, prefix))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_contain() {
        let s: Subnet = "10.1.2.3/16".parse().unwrap();
        assert_eq!(s.to_string(), "10.1.0.0/16");
        assert!(s.contains(Ipv4Addr::new(10, 1, 255, 1)));
        assert!(!s.contains(Ipv4Addr::new(10, 2, 0, 1)));
        assert_eq!(s.nth(1), Some(Ipv4Addr::new(10, 1, 0, 1)));
        assert_eq!(s.nth(65536), None);
        assert!(s.overlaps(&"10.1.5.0/24".parse().unwrap()));
        assert!(!s.overlaps(&"10.2.0.0/16".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Subnet>().is_err());
        assert!("10.0.0/8".parse::<Subnet>().is_err());
    }

    #[test]
    fn ipv6_subnets_parse_contain_and_overlap() {
        let s: Subnet6 = "2001:389::f00d/64".parse().unwrap();
        assert_eq!(s.to_string(), "2001:389::/64");
        assert!(s.contains("2001:389::ffff".parse().unwrap()));
        assert!(!s.contains("2001:389:0:1::1".parse().unwrap()));
        assert_eq!(s.nth(1), Some("2001:389::1".parse().unwrap()));
        assert_eq!(s.nth(1 << 64), None);
        let range: Subnet6 = "2001:389::/96".parse().unwrap();
        assert!(s.contains_subnet(&range) && !range.contains_subnet(&s));
        assert!(s.overlaps(&range) && range.overlaps(&s));
        assert!(!s.overlaps(&"2001:38a::/64".parse().unwrap()));
        let all: Subnet6 = "::/0".parse().unwrap();
        assert_eq!((all.first(), all.last()), (0, u128::MAX));
        for bad in ["2001::/129", "2001::", "10.0.0.0/8", "2001::/x", "zz::/64"] {
            assert_eq!(
                bad.parse::<Subnet6>().unwrap_err(),
                format!("invalid CIDR address: {bad}")
            );
        }
        let ula = Subnet6::random_ula();
        assert_eq!(ula.prefix, 64);
        assert_eq!(ula.addr.octets()[0], 0xfd);
        assert_ne!(ula, Subnet6::random_ula(), "40 random bits each");
    }

    #[test]
    fn pools_split_in_order() {
        let p: Vec<String> = default_pools()
            .iter()
            .flat_map(|(s, n)| s.split(*n).collect::<Vec<_>>())
            .map(|s| s.to_string())
            .collect();
        assert_eq!(p[0], "172.17.0.0/16");
        assert_eq!(p[1], "172.18.0.0/16");
        assert_eq!(p[14], "172.31.0.0/16");
        assert_eq!(p[15], "192.168.0.0/20");
        assert_eq!(p.len(), 15 + 16);
    }

    #[test]
    fn edges_of_prefixes() {
        let all: Subnet = "1.2.3.4/0".parse().unwrap();
        assert_eq!(all.to_string(), "0.0.0.0/0");
        assert_eq!((all.first(), all.last()), (0, u32::MAX));
        assert!(all.contains(Ipv4Addr::new(255, 255, 255, 255)));
        let one: Subnet = "10.0.0.7/32".parse().unwrap();
        assert_eq!(one.mask(), u32::MAX);
        assert_eq!(one.first(), one.last());
        assert_eq!(one.nth(0), Some(Ipv4Addr::new(10, 0, 0, 7)));
        assert_eq!(one.nth(1), None);
        assert_eq!("255.255.255.255/32".parse::<Subnet>().unwrap().nth(1), None);
        let s: Subnet = "10.1.0.0/16".parse().unwrap();
        assert_eq!(Ipv4Addr::from(s.last()), Ipv4Addr::new(10, 1, 255, 255));
        assert_eq!(s.mask(), 0xffff_0000);
        assert_eq!(s.nth(65535), Some(Ipv4Addr::new(10, 1, 255, 255)));
        assert!(!s.contains(Ipv4Addr::new(10, 0, 255, 255)));
        for bad in ["10.0.0.0", "10.0.0.0/", "10.0.0.0/x", "a/8", "10.0.0.0/-1"] {
            assert_eq!(
                bad.parse::<Subnet>().unwrap_err(),
                format!("invalid CIDR address: {bad}")
            );
        }
    }

    #[test]
    fn containment_and_overlap_both_ways() {
        let big: Subnet = "10.0.0.0/8".parse().unwrap();
        let small: Subnet = "10.9.0.0/16".parse().unwrap();
        let apart: Subnet = "11.0.0.0/8".parse().unwrap();
        assert!(big.contains_subnet(&small));
        assert!(big.contains_subnet(&big));
        assert!(!small.contains_subnet(&big));
        assert!(!big.contains_subnet(&apart));
        assert!(big.overlaps(&small) && small.overlaps(&big));
        assert!(!big.overlaps(&apart) && !apart.overlaps(&big));
    }

    #[test]
    fn splits_count_and_step() {
        let s: Subnet = "10.0.0.0/30".parse().unwrap();
        let quarters: Vec<String> = s.split(32).map(|s| s.to_string()).collect();
        assert_eq!(
            quarters,
            ["10.0.0.0/32", "10.0.0.1/32", "10.0.0.2/32", "10.0.0.3/32"]
        );
        assert_eq!(
            s.split(31).map(|s| s.to_string()).collect::<Vec<_>>(),
            ["10.0.0.0/31", "10.0.0.2/31"]
        );
        assert_eq!(s.split(30).collect::<Vec<_>>(), [s]);
        assert_eq!(s.split(29).count(), 0);
        let all: Subnet = "0.0.0.0/0".parse().unwrap();
        let halves: Vec<String> = all.split(1).map(|s| s.to_string()).collect();
        assert_eq!(halves, ["0.0.0.0/1", "128.0.0.0/1"]);
        assert_eq!(all.split(8).count(), 256);
        assert_eq!(all.split(8).last().unwrap().to_string(), "255.0.0.0/8");
    }

    #[test]
    fn pools_are_read_as_docker_writes_them() {
        let (base, size) = parse_pool("base=10.10.0.0/16,size=24").unwrap();
        assert_eq!((base.to_string(), size), ("10.10.0.0/16".into(), 24));
        assert_eq!(
            parse_pool("size=16,base=10.0.0.0/16").unwrap().1,
            16,
            "the order does not matter, and size may equal the base's"
        );
        let want = "want base=CIDR,size=N";
        for (input, err) in [
            (
                "base=10.0.0.0/16",
                format!("invalid address pool \"base=10.0.0.0/16\": {want}"),
            ),
            (
                "size=24",
                format!("invalid address pool \"size=24\": {want}"),
            ),
            (
                "base=10.0.0.0/16,size=24,x=1",
                format!("invalid address pool \"base=10.0.0.0/16,size=24,x=1\": {want}"),
            ),
            ("base=10.0.0.0/16,size=33", "invalid pool size: 33".into()),
            ("base=10.0.0.0/16,size=x", "invalid pool size: x".into()),
            (
                "base=10.0.0/16,size=24",
                "invalid CIDR address: 10.0.0/16".into(),
            ),
            (
                "base=10.0.0.0/16,size=8",
                "pool size /8 is larger than its base 10.0.0.0/16".into(),
            ),
        ] {
            assert_eq!(parse_pool(input).unwrap_err(), err, "{input}");
        }
    }

    #[test]
    fn routes_are_read_from_the_kernels_table() {
        let table =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t0100000A\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t0000000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
br0\t0011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
bad\tzz\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
short\t0000000A
";
        let routes: Vec<String> = routes_of(table).iter().map(|s| s.to_string()).collect();
        assert_eq!(routes, ["10.0.0.0/24", "172.17.0.0/16"]);
    }
}
