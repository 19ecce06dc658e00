//! Overlay networks: one network across the hosts of a cluster (`--cluster-store`,
//! `--cluster-advertise`), as Docker's before swarm mode. The cluster store (etcd) holds
//! each network's record and claims what must be unique across the cluster, every claim a
//! transaction that holds only if nothing it read has changed since:
//!
//! ```text
//! /ketch/v1/networks/<id>        the network's record (JSON)
//! /ketch/v1/names/<name>         <id>: a name is one network's across the cluster
//! /ketch/v1/vnis/<vni>           <id>: its VXLAN network identifier
//! /ketch/v1/subnets/<a.b.c.d-n>  <id>: its subnet, which overlaps no other's
//! /ketch/v1/endpoints/<id>/...   its containers' places, on every host
//! ```
//!
//! Each engine keeps a copy of the records in its own database (the `networks` table, as
//! its local networks), refreshed from the store whenever the networks are listed, so that
//! `network ls` on any host shows every overlay network and the containers running on one
//! keep it while the store is away. A network is removed from the store only while no
//! endpoint is left under it on any host; the others' copies go at their next refresh.

use super::bridge::{Pool4, check_aux, choose_subnet};
use super::*;
use crate::etcd::{Compare, Etcd, Op};

/// Where the cluster store keeps what ketch shares: overlay networks.
pub(crate) const ROOT: &str = "/ketch/v1/";

/// The VXLAN network identifiers handed out: libnetwork's range (24 bits, from 256).
const VNI_FIRST: u32 = 256;
const VNI_LAST: u32 = (1 << 24) - 1;

const MTU_OPTION: &str = "com.docker.network.driver.mtu";

/// The MTU of an overlay network's devices unless its options say otherwise: 1500 less
/// VXLAN's 50 bytes, as Docker's.
const DEFAULT_MTU: u32 = 1450;

impl NetworkRecord {
    /// The MTU of an overlay network's devices.
    pub(super) fn mtu(&self) -> u32 {
        mtu_of(&self.options).ok().flatten().unwrap_or(DEFAULT_MTU)
    }
}

/// Where overlay subnets come from unless one is given: Docker's swarm default, the /24s of
/// 10.0.0.0/8.
const POOL: (&str, u8) = ("10.0.0.0/8", 24);

fn prefix(kind: &str) -> String {
    format!("{ROOT}{kind}/")
}

pub(super) fn network_key(id: &str) -> String {
    format!("{ROOT}networks/{id}")
}

fn name_key(name: &str) -> String {
    format!("{ROOT}names/{name}")
}

fn vni_key(vni: u32) -> String {
    format!("{ROOT}vnis/{vni}")
}

fn subnet_key(s: &Subnet) -> String {
    format!("{ROOT}subnets/{}", s.to_string().replace('/', "-"))
}

pub(super) fn endpoints_prefix(id: &str) -> String {
    format!("{ROOT}endpoints/{id}/")
}

/// The MTU an overlay network's options ask for; an option it does not read is refused.
fn mtu_of(options: &BTreeMap<String, String>) -> crate::Result<Option<u32>> {
    let mut mtu = None;
    for (k, v) in options {
        if k != MTU_OPTION {
            return Err(invalid(format!(
                "network option {k} is not supported: the overlay driver reads {MTU_OPTION}"
            )));
        }
        let n: u32 = v
            .parse()
            .ok()
            .filter(|n| (68..=65535 - 50).contains(n))
            .ok_or_else(|| invalid(format!("invalid {MTU_OPTION} {v:?}: 68 to 65485")))?;
        mtu = Some(n);
    }
    Ok(mtu)
}

/// Whether a record read from the store is an overlay network this engine can take: a
/// hex ID of its own kind, a name `network create` would take, a VNI of the range, and a
/// subnet with its gateway in it.
fn well_formed(rec: &NetworkRecord) -> bool {
    let id_ok = (32..=64).contains(&rec.id.len())
        && rec
            .id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let name_ok = !rec.name.is_empty()
        && rec.name.len() <= 255
        && !rec.name.chars().any(|c| c == '/' || c.is_control())
        && !rec.predefined()
        && rec.name != super::GATEWAY_BRIDGE;
    let pool_ok = match (rec.subnet(), rec.gateway()) {
        (Some(s), Some(g)) => s.contains(g),
        _ => false,
    };
    id_ok
        && name_ok
        && pool_ok
        && rec.overlay()
        && rec.vni.is_some_and(|v| (VNI_FIRST..=VNI_LAST).contains(&v))
}

impl Networks<'_> {
    /// The cluster store, or the error that says overlay networks need one.
    pub(super) fn store(&self) -> crate::Result<Etcd> {
        let Some(s) = &self.st.cluster.store else {
            return Err(NetworkError::NoCluster.into());
        };
        Ok(Etcd::connect(s)?)
    }

    /// The name of an overlay network's bridge on this host: its VNI, and the root's ID
    /// (two roots on a host never share one).
    fn overlay_bridge(&self, vni: u32) -> String {
        let digest = crate::digest::Digest::of(self.st.engine_id.as_bytes());
        format!("ko{}{vni:x}", &digest.hex()[..4])
    }

    /// `network create -d overlay`: the record claimed in the cluster store with its name,
    /// VNI and subnet, then copied here.
    pub(super) fn create_overlay(&self, opts: &NetworkCreate) -> crate::Result<NetworkRecord> {
        let etcd = self.store()?;
        if opts.ipv6 || opts.subnet6.is_some() {
            return Err(invalid(
                "IPv6 is not supported on overlay networks: they carry IPv4",
            ));
        }
        mtu_of(&opts.options)?;
        if opts.name == super::GATEWAY_BRIDGE {
            return Err(invalid(format!(
                "{} is the name of the hosts' gateway bridge network",
                super::GATEWAY_BRIDGE
            )));
        }
        let Pool4 {
            subnet: requested,
            gateway,
            range,
        } = Pool4::of(opts)?;
        check_aux(opts, requested, None)?;
        self.refresh_overlays(&etcd)?;
        let local = self.load_networks()?;
        if local.iter().any(|n| n.name == opts.name) {
            return Err(NetworkError::NameInUse {
                name: opts.name.clone(),
            }
            .into());
        }
        let id = crate::util::random_hex(32);
        // A claim that fails had a rival: read again and choose again, a few times.
        for _ in 0..16 {
            let (rev, claimed) = etcd.list(&prefix("subnets"))?;
            let (vni_rev, vnis) = etcd.list(&prefix("vnis"))?;
            let taken: Vec<Subnet> = claimed
                .iter()
                .filter_map(|kv| {
                    kv.key
                        .rsplit('/')
                        .next()
                        .and_then(|s| s.replacen('-', "/", 1).parse().ok())
                })
                .collect();
            // Not one this host's own networks or routes use either.
            let subnet = choose_subnet(
                requested,
                &taken,
                || {
                    local
                        .iter()
                        .filter_map(NetworkRecord::subnet)
                        .chain(subnet::host_routes())
                        .collect()
                },
                || {
                    POOL.0
                        .parse::<Subnet>()
                        .map(|p| p.split(POOL.1).collect::<Vec<_>>())
                        .unwrap_or_default()
                },
            )?;
            let used: std::collections::BTreeSet<u32> = vnis
                .iter()
                .filter_map(|kv| kv.key.rsplit('/').next().and_then(|v| v.parse().ok()))
                .collect();
            let vni = (VNI_FIRST..=VNI_LAST)
                .find(|v| !used.contains(v))
                .ok_or(NetworkError::PoolsExhausted)?;
            let gateway = gateway
                .or_else(|| subnet.nth(1))
                .ok_or_else(|| invalid(format!("subnet {subnet} has no room for a gateway")))?;
            let rec = NetworkRecord {
                id: id.clone(),
                name: opts.name.clone(),
                driver: "overlay".into(),
                // This host's; each host names its own.
                bridge: String::new(),
                subnet: Some(subnet.to_string()),
                gateway: Some(gateway.to_string()),
                ip_range: range.map(|r| r.to_string()),
                internal: opts.internal,
                labels: opts.labels.iter().cloned().collect(),
                created: crate::db::now(),
                aux_addresses: opts.aux_addresses.clone(),
                attachable: opts.attachable,
                subnet6: None,
                gateway6: None,
                ip_range6: None,
                vni: Some(vni),
                options: opts.options.clone(),
            };
            let json = serde_json::to_vec(&rec).unwrap_or_default();
            let (name, net) = (name_key(&rec.name), network_key(&id));
            let (vni_k, subnet_k) = (vni_key(vni), subnet_key(&subnet));
            let subnets = prefix("subnets");
            let vnis = prefix("vnis");
            let claimed = etcd.txn(
                &[
                    Compare::Absent(&name),
                    Compare::UnchangedSince(&subnets, rev),
                    Compare::UnchangedSince(&vnis, vni_rev),
                ],
                &[
                    Op::Put(&net, json),
                    Op::Put(&name, id.as_bytes().to_vec()),
                    Op::Put(&vni_k, id.as_bytes().to_vec()),
                    Op::Put(&subnet_k, id.as_bytes().to_vec()),
                ],
            )?;
            if claimed {
                let rec = self.mirror(rec)?;
                self.event("create", &rec);
                return Ok(rec);
            }
            // A claim that reached the store before its answer was lost (a retry on
            // another member then fails its own comparison) is ours all the same.
            if let Some(kv) = etcd.get(&name)? {
                if kv.value == id.as_bytes() {
                    let rec = self.mirror(rec)?;
                    self.event("create", &rec);
                    return Ok(rec);
                }
                return Err(NetworkError::NameInUse {
                    name: opts.name.clone(),
                }
                .into());
            }
        }
        Err(crate::Error::new(
            ErrorKind::Unavailable,
            NetworkError::Invalid {
                reason:
                    "the cluster store kept changing under the claim of a subnet and VNI: try again"
                        .into(),
            },
        ))
    }

    /// Copies a record of the cluster's into this root's networks (or updates the copy),
    /// with this host's bridge name. A local network of the same name keeps it: the
    /// overlay one is then not seen here.
    fn mirror(&self, mut rec: NetworkRecord) -> crate::Result<NetworkRecord> {
        rec.bridge = self.overlay_bridge(rec.vni.unwrap_or_default());
        let json = serde_json::to_string(&rec).unwrap_or_default();
        self.st.db.write(|tx| {
            tx.execute(
                "INSERT INTO networks (id, name, config) VALUES (?1, ?2, ?3)
                 ON CONFLICT(id) DO UPDATE SET name = excluded.name, config = excluded.config
                 WHERE networks.config != excluded.config
                   AND json_extract(networks.config, '$.driver') = 'overlay'",
                params![rec.id, rec.name, json],
            )?;
            Ok::<_, crate::Error>(())
        })?;
        Ok(rec)
    }

    /// Brings this root's copies of the cluster's overlay networks up to date: new ones
    /// copied, gone ones dropped (with what this host had of them).
    pub(super) fn refresh_overlays(&self, etcd: &Etcd) -> crate::Result<()> {
        let (_, kvs) = etcd.list(&prefix("networks"))?;
        // What the store holds is another host's word: only a well-formed overlay record,
        // under the key its ID names, is taken.
        let records: Vec<NetworkRecord> = kvs
            .iter()
            .filter_map(|kv| {
                let rec = serde_json::from_slice::<NetworkRecord>(&kv.value).ok()?;
                (kv.key == network_key(&rec.id) && well_formed(&rec)).then_some(rec)
            })
            .collect();
        // Gone ones first: a name removed and made again elsewhere is free for the new. One
        // a container here still holds a place on stays until it lets go.
        for gone in self
            .load_networks()?
            .iter()
            .filter(|n| n.overlay() && !records.iter().any(|r| r.id == n.id))
        {
            if self.endpoints_of(&gone.id)?.is_empty() {
                self.drop_overlay_here(gone)?;
            }
        }
        let local = self.load_networks()?;
        for rec in records {
            let clash = local.iter().any(|n| {
                n.id != rec.id && (n.name == rec.name || (n.overlay() && n.vni == rec.vni))
            });
            if clash {
                continue;
            }
            self.mirror(rec)?;
        }
        Ok(())
    }

    /// The copies of the cluster's overlay networks this root has, as they are (no refresh).
    pub(crate) fn local_overlays(&self) -> crate::Result<Vec<NetworkRecord>> {
        Ok(self
            .load_networks()?
            .into_iter()
            .filter(NetworkRecord::overlay)
            .collect())
    }

    /// Refreshes the overlay networks where this engine is in a cluster; a store that
    /// cannot be reached leaves the copies as they are (what runs on them goes on).
    pub(super) fn refresh_if_clustered(&self) {
        if self.st.cluster.store.is_some()
            && let Ok(etcd) = self.store()
        {
            let _ = self.refresh_overlays(&etcd);
        }
    }

    /// `network rm` of an overlay network: out of the cluster store while no endpoint is
    /// left under it on any host, then out of this root.
    pub(super) fn remove_overlay(&self, rec: &NetworkRecord) -> crate::Result<()> {
        let etcd = self.store()?;
        let net = network_key(&rec.id);
        let endpoints = endpoints_prefix(&rec.id);
        // Until it is gone from the store (here, or by another host meanwhile).
        while let Some(kv) = etcd.get(&net)? {
            // What it claimed: a record that does not read claimed nothing known.
            let stored = serde_json::from_slice::<NetworkRecord>(&kv.value).ok();
            let claims: Vec<String> = stored
                .iter()
                .flat_map(|s| {
                    [
                        Some(name_key(&s.name)),
                        s.vni.map(vni_key),
                        s.subnet().map(|n| subnet_key(&n)),
                    ]
                })
                .flatten()
                .collect();
            let mut ops = vec![Op::Delete(&net)];
            ops.extend(claims.iter().map(|k| Op::Delete(k)));
            let removed = etcd.txn(
                &[
                    Compare::At(&net, kv.mod_revision),
                    Compare::Empty(&endpoints),
                ],
                &ops,
            )?;
            if removed {
                break;
            }
            if !etcd.list(&endpoints)?.1.is_empty() {
                return Err(NetworkError::InUse {
                    name: rec.name.clone(),
                    id: rec.id.clone(),
                }
                .into());
            }
        }
        self.drop_overlay_here(rec)?;
        self.event("destroy", rec);
        Ok(())
    }

    /// What this host had of an overlay network: its devices, its copy, its names file.
    fn drop_overlay_here(&self, rec: &NetworkRecord) -> crate::Result<()> {
        self.delete_bridge(rec)?;
        self.st.db.write(|tx| {
            tx.execute(
                "DELETE FROM endpoints WHERE network_id = ?1",
                params![rec.id],
            )?;
            tx.execute("DELETE FROM networks WHERE id = ?1", params![rec.id])?;
            Ok::<_, crate::Error>(())
        })?;
        let _ = std::fs::remove_file(self.dns_records_path(&rec.id));
        let _ = std::fs::remove_file(self.overlay_lock_path(&rec.id));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mtu_option_is_read_and_others_refused() {
        let opts = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        assert_eq!(mtu_of(&BTreeMap::new()).unwrap(), None);
        assert_eq!(mtu_of(&opts(MTU_OPTION, "1400")).unwrap(), Some(1400));
        for (k, v) in [
            (MTU_OPTION, "0"),
            (MTU_OPTION, "x"),
            (MTU_OPTION, "70000"),
            ("com.docker.network.bridge.name", "x"),
        ] {
            let e = mtu_of(&opts(k, v)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{k}={v}: {e}");
        }
    }

    /// A record from the store is another host's word: one that would name a path, a
    /// local network, or a VNI or pool out of range is not taken.
    #[test]
    fn only_well_formed_overlay_records_are_taken() {
        let good = NetworkRecord {
            id: "0123456789abcdef0123456789abcdef".into(),
            name: "app".into(),
            driver: "overlay".into(),
            bridge: String::new(),
            subnet: Some("10.0.3.0/24".into()),
            gateway: Some("10.0.3.1".into()),
            ip_range: None,
            internal: false,
            labels: BTreeMap::new(),
            created: String::new(),
            aux_addresses: BTreeMap::new(),
            attachable: false,
            subnet6: None,
            gateway6: None,
            ip_range6: None,
            vni: Some(4096),
            options: BTreeMap::new(),
        };
        assert!(well_formed(&good));
        let bad: Vec<(&str, NetworkRecord)> = vec![
            (
                "a path",
                NetworkRecord {
                    id: "/etc/shadow".into(),
                    ..good.clone()
                },
            ),
            (
                "a climb",
                NetworkRecord {
                    id: "../../../../etc/x".into(),
                    ..good.clone()
                },
            ),
            (
                "not hex",
                NetworkRecord {
                    id: "0123456789ABCDEF0123456789ABCDEF".into(),
                    ..good.clone()
                },
            ),
            (
                "a bridge",
                NetworkRecord {
                    driver: "bridge".into(),
                    ..good.clone()
                },
            ),
            (
                "no VNI",
                NetworkRecord {
                    vni: None,
                    ..good.clone()
                },
            ),
            (
                "VNI 1",
                NetworkRecord {
                    vni: Some(1),
                    ..good.clone()
                },
            ),
            (
                "VNI 2^24",
                NetworkRecord {
                    vni: Some(1 << 24),
                    ..good.clone()
                },
            ),
            (
                "a slash",
                NetworkRecord {
                    name: "a/b".into(),
                    ..good.clone()
                },
            ),
            (
                "a newline",
                NetworkRecord {
                    name: "a\nb".into(),
                    ..good.clone()
                },
            ),
            (
                "predefined",
                NetworkRecord {
                    name: "bridge".into(),
                    ..good.clone()
                },
            ),
            (
                "gateway bridge",
                NetworkRecord {
                    name: "ketch_gwbridge".into(),
                    ..good.clone()
                },
            ),
            (
                "gateway outside",
                NetworkRecord {
                    gateway: Some("10.0.4.1".into()),
                    ..good.clone()
                },
            ),
            (
                "no subnet",
                NetworkRecord {
                    subnet: None,
                    ..good.clone()
                },
            ),
        ];
        for (what, rec) in bad {
            assert!(!well_formed(&rec), "{what}");
        }
    }

    #[test]
    fn subnet_keys_read_back_as_their_subnet() {
        let s: Subnet = "10.0.3.0/24".parse().unwrap();
        let key = subnet_key(&s);
        assert_eq!(key, "/ketch/v1/subnets/10.0.3.0-24");
        let back: Subnet = key
            .rsplit('/')
            .next()
            .unwrap()
            .replacen('-', "/", 1)
            .parse()
            .unwrap();
        assert_eq!(back, s);
    }
}
