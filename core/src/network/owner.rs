//! One host, many state roots: which root owns a bridge device, and the removal of bridges
//! whose root is gone.
//!
//! Each root's bridges are its own: the default network's is `ketch0` for the default root
//! and `kt` and a hash of the root's path for any other (so roots never share a device, and
//! a device never holds more than its network's subnet), and every bridge ketch makes is
//! marked with its owner in its `ifalias`: `ketch <engine-id> <mount-ns> <root>`, the root's
//! ID (its `engine-id` file, written at its first open), the mount namespace its path was
//! seen in, and the path. The host's devices are the one record every root sees, and the
//! mark goes with its device: nothing else to keep in step.
//!
//! A bridge is abandoned when no root at the marked path carries the marked ID (seen from the
//! marked mount namespace, through a process in it where that is not this one's; a namespace
//! with no process left is gone, and its roots with it). Every open of a root, and `system
//! prune`, removes the abandoned bridges it finds (the device, and with it its addresses and
//! routes, then its firewall rules), except one that still has ports: a container of the
//! removed root still runs, and its bridge goes at the first look after it stops. A root
//! whose path is too long for the mark cannot be looked for: its bridges are never taken as
//! abandoned.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::netlink::{ALIAS_MAX, Link, Netlink};
use super::{HostLock, NetworkError, firewall, io_err};
use crate::engine::Local;

const PREFIX: &str = "ketch ";

/// The name of a root's default bridge when none is asked for.
pub(crate) fn default_bridge(root: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    if root == Path::new(crate::engine::DEFAULT_ROOT) {
        return "ketch0".into();
    }
    let digest = crate::digest::Digest::of(root.as_os_str().as_bytes());
    format!("kt{}", &digest.hex()[..10])
}

/// The mount namespace this process is in (the inode of `/proc/self/ns/mnt`).
pub(crate) fn mount_ns() -> u64 {
    std::fs::metadata("/proc/self/ns/mnt").map_or(0, |m| m.ino())
}

/// What a bridge's alias says of its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mark {
    pub id: String,
    pub mount_ns: u64,
    /// `None`: the path did not fit.
    pub root: Option<PathBuf>,
}

impl Mark {
    pub fn parse(alias: &str) -> Option<Mark> {
        let rest = alias.strip_prefix(PREFIX)?;
        let mut words = rest.splitn(3, ' ');
        let id = words.next().filter(|w| !w.is_empty())?.to_string();
        let mount_ns = words.next()?.parse().ok()?;
        let root = match words.next()? {
            "-" => None,
            p if p.starts_with('/') => Some(PathBuf::from(p)),
            _ => return None,
        };
        Some(Mark { id, mount_ns, root })
    }

    pub fn render(&self) -> String {
        let head = format!("{PREFIX}{} {} ", self.id, self.mount_ns);
        match &self.root {
            Some(p) if head.len() + p.as_os_str().len() <= ALIAS_MAX => {
                format!("{head}{}", p.display())
            }
            _ => format!("{head}-"),
        }
    }
}

/// Who owns a device, as this root sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Owner {
    /// This root.
    Us,
    /// Another root that is there (its path, where the mark has it).
    Other(Option<PathBuf>),
    /// A root that is gone.
    Abandoned(Option<PathBuf>),
    /// No ketch mark: made by hand, or by a ketch before marks.
    Unmarked,
}

/// The ID in a root's `engine-id` file, read through `through` (a directory standing for
/// `/`).
fn id_at(through: &Path, root: &Path) -> Option<String> {
    let path = through
        .join(root.strip_prefix("/").unwrap_or(root))
        .join("engine-id");
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// Whether the root a mark names is there.
fn alive(mark: &Mark, our_mount_ns: u64) -> bool {
    let Some(root) = &mark.root else {
        return true;
    };
    if id_at(Path::new("/"), root).as_deref() == Some(mark.id.as_str()) {
        return true;
    }
    if mark.mount_ns == our_mount_ns {
        return false;
    }
    // Seen from a process in the marked namespace, if one is left.
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return true;
    };
    for p in procs.flatten() {
        let name = p.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let ns = p.path().join("ns/mnt");
        if std::fs::metadata(&ns).is_ok_and(|m| m.ino() == mark.mount_ns) {
            return id_at(&p.path().join("root"), root).as_deref() == Some(mark.id.as_str());
        }
    }
    false
}

impl Local {
    /// This root's mark.
    pub(crate) fn mark(&self) -> Mark {
        Mark {
            id: self.engine_id.clone(),
            mount_ns: self.mount_ns,
            root: Some(self.real_root.clone()),
        }
    }

    pub(crate) fn owner_of(&self, link: &Link) -> Owner {
        let Some(mark) = Mark::parse(&link.alias) else {
            return Owner::Unmarked;
        };
        if mark.id == self.engine_id {
            Owner::Us
        } else if alive(&mark, self.mount_ns) {
            Owner::Other(mark.root)
        } else {
            Owner::Abandoned(mark.root)
        }
    }

    /// Removes the bridges of roots that are gone, with their firewall rules; their names.
    pub(crate) fn sweep_bridges(&self) -> crate::Result<Vec<String>> {
        let nl = Netlink::open().map_err(io_err("open a netlink socket"))?;
        let abandoned = |links: &[Link]| -> Vec<Link> {
            links
                .iter()
                .filter(|l| l.kind == "bridge" && l.alias.starts_with(PREFIX))
                .filter(|l| !links.iter().any(|p| p.master == Some(l.index)))
                .filter(|l| matches!(self.owner_of(l), Owner::Abandoned(_)))
                .cloned()
                .collect()
        };
        let links = nl.links().map_err(io_err("list the host's links"))?;
        if abandoned(&links).is_empty() {
            return Ok(Vec::new());
        }
        // Judged again under the lock that bridges are made under: one remade meanwhile by
        // a new root at the same path is that root's.
        let _lock = HostLock::take().map_err(io_err("take the host's network lock"))?;
        let links = nl.links().map_err(io_err("list the host's links"))?;
        let mut removed = Vec::new();
        for link in abandoned(&links) {
            match nl.del_link(link.index) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENODEV) => continue,
                Err(e) => return Err(io_err(format!("delete bridge {}", link.name))(e)),
            }
            if firewall::available() {
                firewall::delete(&link.name)
                    .map_err(io_err(format!("remove the firewall of {}", link.name)))?;
            }
            removed.push(link.name);
        }
        Ok(removed)
    }

    /// The bridge `name` as this root may use it: `None` where there is none (or there was
    /// an abandoned one, now removed); an error where another root owns it.
    pub(crate) fn claim_bridge(&self, nl: &Netlink, name: &str) -> crate::Result<Option<i32>> {
        let Some(link) = nl.link(name).map_err(io_err("look up a link"))? else {
            return Ok(None);
        };
        let ports = || {
            nl.links()
                .map(|all| all.iter().any(|p| p.master == Some(link.index)))
                .map_err(io_err("list the host's links"))
        };
        match self.owner_of(&link) {
            Owner::Us => Ok(Some(link.index)),
            Owner::Unmarked => {
                // Taken over: a bridge made by hand for `--bridge`, or by an older ketch.
                if link.kind == "bridge" && link.alias.is_empty() {
                    nl.set_alias(link.index, &self.mark().render())
                        .map_err(io_err(format!("mark bridge {name}")))?;
                }
                Ok(Some(link.index))
            }
            Owner::Abandoned(_) if !ports()? => {
                match nl.del_link(link.index) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {}
                    Err(e) => return Err(io_err(format!("delete bridge {name}"))(e)),
                }
                if firewall::available() {
                    firewall::delete(name)
                        .map_err(io_err(format!("remove the firewall of {name}")))?;
                }
                Ok(None)
            }
            Owner::Other(root) | Owner::Abandoned(root) => Err(NetworkError::BridgeOwned {
                bridge: name.into(),
                root: root.map_or_else(
                    || "another state root".into(),
                    |r| format!("the state root {}", r.display()),
                ),
            }
            .into()),
        }
    }
}

/// The root's ID: its `engine-id` file, made at its first open (as Docker's daemon keeps
/// one in its root). Written under a temporary name and linked into place, so two first
/// opens at once agree on one.
pub(crate) fn engine_id(root: &Path) -> crate::Result<String> {
    let path = root.join("engine-id");
    let read = || -> crate::Result<Option<String>> {
        match std::fs::read_to_string(&path) {
            Ok(s) => {
                let id = s.trim();
                if id.is_empty() || id.len() > 64 || id.contains(char::is_whitespace) {
                    return Err(NetworkError::Invalid {
                        reason: format!("{}: not an engine ID: {id:?}", path.display()),
                    }
                    .into());
                }
                Ok(Some(id.to_string()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(format!("read {}", path.display()))(e)),
        }
    };
    if let Some(id) = read()? {
        return Ok(id);
    }
    let h = crate::util::random_hex(16);
    let id = format!(
        "{}-{}-4{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[13..16],
        &h[16..20],
        &h[20..32]
    );
    let tmp = root.join(format!(".engine-id.{}", crate::util::random_hex(8)));
    let linked = std::fs::write(&tmp, format!("{id}\n")).and_then(|()| {
        match std::fs::hard_link(&tmp, &path) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
            _ => Ok(()),
        }
    });
    let _ = std::fs::remove_file(&tmp);
    linked.map_err(io_err(format!("write {}", path.display())))?;
    read()?.ok_or_else(|| {
        NetworkError::Invalid {
            reason: format!("{} vanished as it was written", path.display()),
        }
        .into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_reads_back_and_a_path_that_does_not_fit_is_left_out() {
        let m = Mark {
            id: "0f3a-4b".into(),
            mount_ns: 4026531841,
            root: Some("/tmp/a root/with spaces".into()),
        };
        assert_eq!(
            m.render(),
            "ketch 0f3a-4b 4026531841 /tmp/a root/with spaces"
        );
        assert_eq!(Mark::parse(&m.render()), Some(m.clone()));
        let long = Mark {
            root: Some(PathBuf::from(format!("/{}", "d".repeat(250)))),
            ..m.clone()
        };
        assert_eq!(long.render(), "ketch 0f3a-4b 4026531841 -");
        assert_eq!(Mark::parse(&long.render()), Some(Mark { root: None, ..m }));
        for alias in [
            "",
            "uplink",
            "ketch",
            "ketch  1 /r",
            "ketch a b /r",
            "ketch a 1 relative",
            "ketch a 1",
        ] {
            assert_eq!(Mark::parse(alias), None, "{alias:?}");
        }
    }

    #[test]
    fn the_default_root_has_ketch0_and_another_a_name_of_its_own() {
        assert_eq!(default_bridge(Path::new("/var/lib/ketch")), "ketch0");
        let a = default_bridge(Path::new("/tmp/a"));
        let b = default_bridge(Path::new("/tmp/b"));
        assert_ne!(a, b);
        assert_eq!(a, default_bridge(Path::new("/tmp/a")));
        assert!(a.starts_with("kt") && a.len() == 12, "{a}");
    }

    #[test]
    fn an_engine_id_is_made_once_and_a_bad_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let id = engine_id(dir.path()).unwrap();
        assert_eq!(id.len(), 36, "{id}");
        assert_eq!(engine_id(dir.path()).unwrap(), id);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["engine-id"]);
        std::fs::write(dir.path().join("engine-id"), "two words\n").unwrap();
        let err = engine_id(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not an engine ID"), "{err}");
    }

    #[test]
    fn a_root_is_alive_while_its_path_holds_its_id() {
        let dir = tempfile::tempdir().unwrap();
        let id = engine_id(dir.path()).unwrap();
        let ns = mount_ns();
        let mark = |id: &str, ns: u64| Mark {
            id: id.into(),
            mount_ns: ns,
            root: Some(dir.path().to_path_buf()),
        };
        assert!(alive(&mark(&id, ns), ns));
        // Another root at the same path since.
        assert!(!alive(&mark("other", ns), ns));
        // Marked in a namespace no process is in.
        assert!(!alive(&mark("other", 1), ns));
        // A path that did not fit is never taken for gone.
        assert!(alive(
            &Mark {
                root: None,
                ..mark("other", ns)
            },
            ns
        ));
        std::fs::remove_file(dir.path().join("engine-id")).unwrap();
        assert!(!alive(&mark(&id, ns), ns));
    }

    /// A root seen only in another mount namespace lives while a process is there.
    #[test]
    fn a_root_in_another_mount_namespace_is_looked_for_there() {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let script = format!(
            "mount -t tmpfs none {0} && echo id-there > {0}/engine-id && echo ready && exec sleep 60",
            root.display()
        );
        let mut child = std::process::Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "ready\n");
        let there = std::fs::metadata(format!("/proc/{}/ns/mnt", child.id()))
            .unwrap()
            .ino();
        let mark = |id: &str| Mark {
            id: id.into(),
            mount_ns: there,
            root: Some(root.clone()),
        };
        let ours = mount_ns();
        assert_ne!(there, ours);
        let seen = [alive(&mark("id-there"), ours), alive(&mark("other"), ours)];
        child.kill().unwrap();
        child.wait().unwrap();
        let after = alive(&mark("id-there"), ours);
        assert_eq!((seen, after), ([true, false], false));
        assert!(!root.join("engine-id").exists());
    }

    fn addresses(dev: &str) -> Vec<String> {
        let out = std::process::Command::new("ip")
            .args(["-o", "-4", "addr", "show", "dev", dev])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().nth(3).map(str::to_string))
            .collect()
    }

    fn table_exists(bridge: &str) -> bool {
        std::process::Command::new("nft")
            .args(["list", "table", "ip", &firewall::table(bridge)])
            .output()
            .unwrap()
            .status
            .success()
    }

    /// Roots on one host: each has its own bridges, marked; a bridge another root owns is
    /// refused; a removed root's bridges (and firewall tables) go at the next open of any
    /// root, except one a container still uses; one made by hand is taken over.
    #[test]
    fn each_root_owns_its_bridges_and_a_removed_roots_go_at_the_next_open() {
        use crate::testutil::{scratch_engine, scratch_engine_with};
        crate::testutil::in_own_netns(|| {
            let nl = Netlink::open()?;
            let a = scratch_engine_with(|o| o.default_bridge = None);
            let net = a.network_find("bridge").unwrap();
            assert_eq!(net.bridge, default_bridge(&a.real_root));
            let link = nl.link(&net.bridge)?.expect("the default bridge");
            assert_eq!(link.alias, a.mark().render());
            assert_eq!(
                Mark::parse(&link.alias).unwrap().root,
                Some(a.real_root.clone())
            );
            assert_eq!(addresses(&net.bridge).len(), 1);
            let user = a
                .network_create(&crate::network::NetworkCreate {
                    name: "mine".into(),
                    ..Default::default()
                })
                .unwrap();

            // The same bridge asked for by another root.
            let b = scratch_engine_with(|o| o.default_bridge = Some(net.bridge.clone()));
            let err = b.network_find("bridge").unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Conflict);
            let msg = err.to_string();
            assert!(
                msg.contains(&format!(
                    "bridge {} belongs to the state root {}",
                    net.bridge,
                    a.real_root.display()
                )),
                "{msg}"
            );
            assert_eq!(nl.link(&net.bridge)?.unwrap().alias, a.mark().render());

            // A root with a bridge a container (a port) still uses.
            let c = scratch_engine();
            let c_net = c.network_find("bridge").unwrap();
            let ns_dir = tempfile::tempdir()?;
            let peer_ns = ns_dir.path().join("peer");
            crate::network::netns::create(&peer_ns)?;
            let ns = std::fs::File::open(&peer_ns)?;
            use std::os::fd::AsRawFd;
            nl.add_veth("ko1", "kp1", ns.as_raw_fd(), 1500)?;
            drop(ns);
            let port = nl.link_index("ko1")?.unwrap();
            nl.set_link(port, Some(nl.link_index(&c_net.bridge)?.unwrap()), None)?;

            // Both roots removed; the next open of any root sweeps.
            std::fs::remove_dir_all(&a.root)?;
            std::fs::remove_dir_all(&c.root)?;
            assert!(nl.link(&net.bridge)?.is_some());
            let d = scratch_engine();
            for gone in [&net.bridge, &user.bridge] {
                assert_eq!(nl.link(gone)?, None, "{gone}");
                assert!(!table_exists(gone), "{gone}");
            }
            assert!(
                nl.link(&c_net.bridge)?.is_some(),
                "a bridge with a port stays"
            );
            assert!(table_exists(&c_net.bridge));
            nl.del_link(port)?;
            crate::network::netns::remove(&peer_ns)?;
            assert_eq!(d.sweep_bridges().unwrap(), vec![c_net.bridge.clone()]);
            assert!(!table_exists(&c_net.bridge));
            assert_eq!(d.sweep_bridges().unwrap(), Vec::<String>::new());

            // A new root at a removed root's path: its own bridge, with its one subnet.
            let e = scratch_engine_with(|o| o.default_bridge = None);
            let again = e.network_find("bridge").unwrap();
            std::fs::remove_dir_all(&e.root)?;
            let reborn = Local::open(&crate::engine::Options {
                root: e.root.clone(),
                ip_forward: false,
                ..Default::default()
            })
            .unwrap();
            assert_ne!(reborn.engine_id, e.engine_id);
            let net2 = reborn.network_find("bridge").unwrap();
            assert_eq!(net2.bridge, again.bridge);
            assert_eq!(
                addresses(&net2.bridge),
                [format!(
                    "{}/{}",
                    net2.gateway.clone().unwrap(),
                    net2.subnet.as_ref().unwrap().split('/').nth(1).unwrap()
                )]
            );
            assert_eq!(
                nl.link(&net2.bridge)?.unwrap().alias,
                reborn.mark().render()
            );

            // A bridge made by hand is taken over.
            nl.add_bridge("kohand", None)?;
            let f = scratch_engine_with(|o| o.default_bridge = Some("kohand".into()));
            f.network_find("bridge").unwrap();
            assert_eq!(nl.link("kohand")?.unwrap().alias, f.mark().render());
            for n in reborn.load_networks().unwrap() {
                reborn.delete_bridge(&n).unwrap();
            }
            drop((b, d, f));
            assert_eq!(
                nl.links()?.iter().filter(|l| l.kind == "bridge").count(),
                0,
                "every bridge gone"
            );
            Ok(())
        });
    }
}
