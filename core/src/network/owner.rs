//! One host, many state roots: which root owns a bridge device, and the removal of bridges
//! whose root is gone.
//!
//! Each root's bridges are its own: the default network's is `ketch0` for the default root
//! and `kt` and a hash of the root's ID for any other (so roots never share a device, and a
//! device never holds more than its network's subnet), and every bridge ketch makes is
//! marked with its owner in its `ifalias`: `ketch <engine-id> <view> <root>`, the root's ID
//! (its `engine-id` file, written at its first open), where its path was seen (the mount
//! namespace and root directory of the process that made the bridge: a chroot shares the
//! one but not the other), and the path. The host's devices are the one record every root
//! sees, and the mark goes with its device: nothing else to keep in step. A bridge that was
//! there, unmarked (made by hand for `--bridge`, or by a ketch before marks), is used and
//! left unmarked: it is never taken for another root's, nor removed with one.
//!
//! A bridge is abandoned only when its root is plainly gone: its path, seen from the marked
//! view (through a process in it where that is not this process's), holds no root, or a root
//! with another ID; or no process is left in that view, and this process sees every process
//! of the host. Where that cannot be told (a file that cannot be read, a namespace this
//! process cannot look into, a path too long or not UTF-8 for the mark), the root is taken
//! as there. Every open of a root, and `network prune`, removes the abandoned bridges it
//! finds (the device, and with it its addresses and routes, then its firewall rules), except
//! one that still has ports: a container of the removed root still runs, and its bridge goes
//! at the first look after it stops. Bridges are made, and abandoned ones removed, under
//! the host's network lock, so that a sweep never takes the rules of a bridge just remade.

use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::netlink::{ALIAS_MAX, Link, Netlink};
use super::{HostLock, NetworkError, Networks, firewall, io_err};

const PREFIX: &str = "ketch ";

/// The inode of the host's first PID namespace (the kernel's `PROC_PID_INIT_INO`).
const PID_NS_INIT: u64 = 0xEFFF_FFFC;

/// The name of a root's default bridge when none is asked for.
pub(crate) fn default_bridge(root: &Path, engine_id: &str) -> String {
    let default = Path::new(crate::state::DEFAULT_ROOT);
    if root == default || std::fs::canonicalize(default).is_ok_and(|d| d == root) {
        return "ketch0".into();
    }
    let digest = crate::digest::Digest::of(engine_id.as_bytes());
    format!("kt{}", &digest.hex()[..10])
}

/// Where a path means something: a mount namespace, and the root directory of a process in
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct View {
    pub mount_ns: u64,
    pub root_dev: u64,
    pub root_ino: u64,
}

impl View {
    /// The view of the process whose `/proc` directory is `proc` (`/proc/self`, `/proc/PID`).
    pub fn of(proc: &Path) -> std::io::Result<View> {
        let ns = std::fs::metadata(proc.join("ns/mnt"))?;
        let root = std::fs::metadata(proc.join("root"))?;
        Ok(View {
            mount_ns: ns.ino(),
            root_dev: root.dev(),
            root_ino: root.ino(),
        })
    }

    fn render(&self) -> String {
        format!("{}:{}:{}", self.mount_ns, self.root_dev, self.root_ino)
    }

    fn parse(s: &str) -> Option<View> {
        let mut n = s.split(':').map(str::parse::<u64>);
        let v = View {
            mount_ns: n.next()?.ok()?,
            root_dev: n.next()?.ok()?,
            root_ino: n.next()?.ok()?,
        };
        n.next().is_none().then_some(v)
    }
}

/// This process's view, and whether it sees every process of the host (its PID namespace
/// is the first): learnt once.
pub(crate) fn own_view() -> (View, bool) {
    static OWN: std::sync::OnceLock<(View, bool)> = std::sync::OnceLock::new();
    *OWN.get_or_init(|| {
        let view = View::of(Path::new("/proc/self")).unwrap_or(View {
            mount_ns: 0,
            root_dev: 0,
            root_ino: 0,
        });
        let sees_all = std::fs::metadata("/proc/self/ns/pid").is_ok_and(|m| first_pid_ns(m.ino()));
        (view, sees_all)
    })
}

/// Whether the PID namespace with inode `ino` is the host's first, whose processes see
/// every process.
fn first_pid_ns(ino: u64) -> bool {
    ino == PID_NS_INIT
}

/// What a bridge's alias says of its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mark {
    pub id: String,
    pub view: View,
    /// `None`: the path did not fit, or is not UTF-8.
    pub root: Option<PathBuf>,
}

impl Mark {
    pub fn parse(alias: &str) -> Option<Mark> {
        let rest = alias.strip_prefix(PREFIX)?;
        let mut words = rest.splitn(3, ' ');
        let id = words.next().filter(|w| !w.is_empty())?.to_string();
        let view = View::parse(words.next()?)?;
        let root = match words.next()? {
            "-" => None,
            p if p.starts_with('/') => Some(PathBuf::from(p)),
            _ => return None,
        };
        Some(Mark { id, view, root })
    }

    pub fn render(&self) -> String {
        let head = format!("{PREFIX}{} {} ", self.id, self.view.render());
        match self.root.as_deref().and_then(Path::to_str) {
            Some(p) if head.len() + p.len() <= ALIAS_MAX => format!("{head}{p}"),
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

/// Whether the root at `root`, resolved below the directory `through` as if it were `/`,
/// carries `id`. Only a root that is plainly not there (no such path, no `engine-id` in
/// it, another ID) does not: anything else (a file that cannot be read, or is not a
/// regular file) may be a live root's. The file is opened without following a link, not
/// waiting on a FIFO, and read for at most an ID's length.
fn carries(through: &Path, root: &Path, id: &str) -> bool {
    use rustix::fs::{Mode, OFlags};
    use rustix::io::Errno;
    use std::os::unix::ffi::OsStrExt;
    let gone = |e: Errno| matches!(e, Errno::NOENT | Errno::NOTDIR);
    let Ok(top) = std::fs::File::open(through) else {
        return true;
    };
    let dir = match crate::fsutil::open_in_root(top.as_fd(), root.as_os_str().as_bytes(), true) {
        Ok(d) => d,
        Err(e) => return !gone(e),
    };
    let file = match rustix::fs::openat(
        &dir,
        c"engine-id",
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(f) => f,
        Err(e) => return !gone(e),
    };
    let Ok(stat) = rustix::fs::fstat(&file) else {
        return true;
    };
    if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile {
        return true;
    }
    let mut buf = [0u8; 80];
    match rustix::io::read(&file, &mut buf) {
        Ok(n) => std::str::from_utf8(&buf[..n]).is_ok_and(|s| s.trim() == id),
        Err(_) => true,
    }
}

/// Whether the root a mark names is there, judged from `ours` (this process's view), which
/// `sees_all` the host's processes or not.
fn alive(mark: &Mark, ours: View, sees_all: bool) -> bool {
    alive_in(Path::new("/proc"), mark, ours, sees_all)
}

/// [`alive`], with the processes listed in `proc`.
fn alive_in(proc: &Path, mark: &Mark, ours: View, sees_all: bool) -> bool {
    let Some(root) = &mark.root else {
        return true;
    };
    if mark.view == ours {
        return carries(Path::new("/"), root, &mark.id);
    }
    // Through the processes in the marked view, if any is left.
    let Ok(procs) = std::fs::read_dir(proc) else {
        return true;
    };
    let mut found = false;
    let mut looked_at_all = sees_all;
    for p in procs.flatten() {
        if !p
            .file_name()
            .as_encoded_bytes()
            .iter()
            .all(u8::is_ascii_digit)
        {
            continue;
        }
        match View::of(&p.path()) {
            Ok(v) if v == mark.view => {
                found = true;
                if carries(&p.path().join("root"), root, &mark.id) {
                    return true;
                }
            }
            Ok(_) => {}
            // It exited meanwhile.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            // One this process may not look into: it may be in the view.
            Err(_) => looked_at_all = false,
        }
    }
    !found && !looked_at_all
}

/// Whether the bridge at `index` has ports: a container still uses it.
/// Whether a bridge has ports other than an overlay network's own VXLAN device.
fn has_ports(links: &[Link], index: i32) -> bool {
    links
        .iter()
        .any(|p| p.master == Some(index) && p.kind != "vxlan")
}

/// What [`Networks::claim_bridge`] found under a bridge's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// This root's, or one made by hand: to be used as it is.
    Use(i32),
    /// None there (`None`), or one an abandoned root left (its index), to be removed: this
    /// root makes its own.
    Make(Option<i32>),
}

impl Networks<'_> {
    /// The bridge of this root's default network: the one asked for, or its own.
    pub(crate) fn default_bridge(&self) -> String {
        self.st
            .default_bridge
            .clone()
            .unwrap_or_else(|| default_bridge(&self.st.real_root, &self.st.engine_id))
    }

    /// This root's mark.
    pub(crate) fn mark(&self) -> Mark {
        Mark {
            id: self.st.engine_id.clone(),
            view: own_view().0,
            root: Some(self.st.real_root.clone()),
        }
    }

    pub(crate) fn owner_of(&self, link: &Link) -> Owner {
        let Some(mark) = Mark::parse(&link.alias) else {
            return Owner::Unmarked;
        };
        let (view, sees_all) = own_view();
        if mark.id == self.st.engine_id {
            Owner::Us
        } else if alive(&mark, view, sees_all) {
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
                .filter(|l| !has_ports(links, l.index))
                .filter(|l| matches!(self.owner_of(l), Owner::Abandoned(_)))
                .cloned()
                .collect()
        };
        let links = nl.links().map_err(io_err("list the host's links"))?;
        if abandoned(&links).is_empty() {
            return Ok(Vec::new());
        }
        // Judged again under the lock bridges are made under: one remade meanwhile by a new
        // root at the same path is that root's.
        let _lock = HostLock::take().map_err(io_err("take the host's network lock"))?;
        let links = nl.links().map_err(io_err("list the host's links"))?;
        let mut removed = Vec::new();
        let mut first_error = None;
        for link in abandoned(&links) {
            match remove_bridge(&nl, &link.name, Some(link.index)) {
                Ok(()) => removed.push(link.name),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(removed),
        }
    }

    /// What the bridge `name` is to this root: one to use, or one to make (where there is
    /// none, or an abandoned root's); an error where another root owns it. Whatever it
    /// says about making is judged again under the host's lock.
    pub(crate) fn claim_bridge(&self, nl: &Netlink, name: &str) -> crate::Result<Claim> {
        let Some(link) = nl.link(name).map_err(io_err("look up a link"))? else {
            return Ok(Claim::Make(None));
        };
        let owned = |reason: String| {
            Err(NetworkError::BridgeOwned {
                bridge: name.into(),
                reason,
            }
            .into())
        };
        let path = |root: Option<PathBuf>| {
            root.map_or_else(
                || "another state root".into(),
                |r| format!("the state root {}", r.display()),
            )
        };
        match self.owner_of(&link) {
            Owner::Us | Owner::Unmarked => Ok(Claim::Use(link.index)),
            Owner::Other(root) => owned(format!("belongs to {}", path(root))),
            Owner::Abandoned(root) => {
                let links = nl.links().map_err(io_err("list the host's links"))?;
                if has_ports(&links, link.index) {
                    owned(format!(
                        "is still used by containers of {}, which was removed",
                        path(root)
                    ))
                } else {
                    Ok(Claim::Make(Some(link.index)))
                }
            }
        }
    }
}

/// Deletes a bridge's firewall rules and the device at `index` (its addresses and routes go
/// with it), if there is one. The device goes even where its rules cannot, and one already
/// gone (another process was first) is no error; the first failure is the one told.
pub(crate) fn remove_bridge(nl: &Netlink, name: &str, index: Option<i32>) -> crate::Result<()> {
    // An overlay network's bridge carries its VXLAN device, which goes with it.
    if let Some(vx) = super::peers::vxlan_of(name)
        && let Some(vx_index) = nl.link_index(&vx).map_err(io_err("look up a link"))?
    {
        match nl.del_link(vx_index) {
            Err(e) if e.raw_os_error() != Some(libc::ENODEV) => {
                return Err(io_err(format!("delete VXLAN device {vx}"))(e));
            }
            _ => {}
        }
    }
    let rules = if firewall::available() {
        firewall::delete(name).map_err(io_err(format!("remove the firewall of {name}")))
    } else {
        Ok(())
    };
    if let Some(index) = index {
        match nl.del_link(index) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {}
            Err(e) => {
                rules?;
                return Err(io_err(format!("delete bridge {name}"))(e));
            }
        }
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIEW: View = View {
        mount_ns: 4026531841,
        root_dev: 2049,
        root_ino: 2,
    };

    #[test]
    fn a_mark_reads_back_and_a_path_that_does_not_fit_is_left_out() {
        let m = Mark {
            id: "0f3a-4b".into(),
            view: VIEW,
            root: Some("/tmp/a root/with spaces".into()),
        };
        assert_eq!(
            m.render(),
            "ketch 0f3a-4b 4026531841:2049:2 /tmp/a root/with spaces"
        );
        assert_eq!(Mark::parse(&m.render()), Some(m.clone()));
        let unnamed = Mark {
            root: None,
            ..m.clone()
        };
        let long = Mark {
            root: Some(PathBuf::from(format!("/{}", "d".repeat(250)))),
            ..m.clone()
        };
        use std::os::unix::ffi::OsStrExt;
        let not_utf8 = Mark {
            root: Some(PathBuf::from(std::ffi::OsStr::from_bytes(b"/tmp/\xff\xfe"))),
            ..m.clone()
        };
        for m in [long, not_utf8] {
            assert_eq!(m.render(), "ketch 0f3a-4b 4026531841:2049:2 -");
            assert_eq!(Mark::parse(&m.render()), Some(unnamed.clone()));
        }
        for alias in [
            "",
            "uplink",
            "ketch",
            "ketch  1:2:3 /r",
            "ketch a b /r",
            "ketch a 1 /r",
            "ketch a 1:2:3:4 /r",
            "ketch a 1:2:3 relative",
            "ketch a 1:2:3",
        ] {
            assert_eq!(Mark::parse(alias), None, "{alias:?}");
        }
    }

    #[test]
    fn only_the_first_pid_namespace_sees_every_process() {
        assert!(first_pid_ns(0xEFFF_FFFC));
        assert!(!first_pid_ns(0xF000_0000));
    }

    /// A bridge already gone when it is removed (another sweeper was first) is no error,
    /// and its rules still go.
    #[test]
    fn removing_a_bridge_that_is_gone_is_no_error() {
        crate::testutil::in_own_netns(|| {
            let nl = Netlink::open()?;
            let subnet: crate::ipnet::Subnet = "10.250.0.0/24".parse().unwrap();
            firewall::create("kogone", subnet, None, false)?;
            remove_bridge(&nl, "kogone", Some(99_999)).unwrap();
            let listed = std::process::Command::new("nft")
                .args(["list", "table", "ip", &firewall::table("kogone")])
                .output()?;
            assert!(!listed.status.success(), "the table went too");
            Ok(())
        });
    }

    #[test]
    fn the_default_root_has_ketch0_and_another_a_name_of_its_own() {
        assert_eq!(default_bridge(Path::new("/var/lib/ketch"), "a"), "ketch0");
        let a = default_bridge(Path::new("/tmp/r"), "id-a");
        // Another root at the same path (in another mount namespace, or made again).
        let b = default_bridge(Path::new("/tmp/r"), "id-b");
        assert_ne!(a, b);
        assert_eq!(a, default_bridge(Path::new("/elsewhere"), "id-a"));
        assert!(a.starts_with("kt") && a.len() == 12, "{a}");
    }

    /// Gone only when plainly gone: a root whose `engine-id` cannot be read as a file
    /// (a FIFO, a link, a directory) is taken as there, and nothing waits on it.
    #[test]
    fn a_root_is_alive_while_its_path_holds_its_id() {
        let dir = tempfile::tempdir().unwrap();
        let id = crate::state::engine_id(dir.path()).unwrap();
        let (ours, _) = own_view();
        let mark = |id: &str, view: View| Mark {
            id: id.into(),
            view,
            root: Some(dir.path().to_path_buf()),
        };
        assert!(alive(&mark(&id, ours), ours, true));
        // Another root at the same path since.
        assert!(!alive(&mark("other", ours), ours, true));
        // Marked in a view no process is in: gone where every process is seen (an empty
        // list of processes here), else unknown.
        let none = tempfile::tempdir().unwrap();
        assert!(!alive_in(none.path(), &mark(&id, VIEW), ours, true));
        assert!(alive_in(none.path(), &mark(&id, VIEW), ours, false));
        // A path that did not fit is never taken for gone.
        let unnamed = Mark {
            root: None,
            ..mark("other", ours)
        };
        assert!(alive(&unnamed, ours, true));
        let file = dir.path().join("engine-id");
        std::fs::remove_file(&file).unwrap();
        assert!(!alive(&mark(&id, ours), ours, true));
        let c = std::ffi::CString::new(file.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(alive(&mark(&id, ours), ours, true), "a FIFO");
        std::fs::remove_file(&file).unwrap();
        std::fs::write(dir.path().join("elsewhere"), &id).unwrap();
        std::os::unix::fs::symlink("elsewhere", &file).unwrap();
        assert!(alive(&mark("other", ours), ours, true), "a link");
        std::fs::remove_file(&file).unwrap();
        std::fs::write(&file, "x".repeat(1 << 20)).unwrap();
        assert!(!alive(&mark(&id, ours), ours, true), "a big file");
        // A root directory that is a file: nothing there.
        let not_dir = Mark {
            root: Some(file.clone()),
            ..mark(&id, ours)
        };
        assert!(!alive(&not_dir, ours, true));
    }

    /// A root seen only in another mount namespace lives while a process is there, and is
    /// looked for there (its path means nothing here).
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
        /// Killed and reaped however the test ends.
        struct Reaped(std::process::Child);
        impl Drop for Reaped {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let mut child = Reaped(
            std::process::Command::new("unshare")
                .args(["--mount", "--propagation", "private", "sh", "-c", &script])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let mut line = String::new();
        std::io::BufReader::new(child.0.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "ready\n");
        let there = View::of(Path::new(&format!("/proc/{}", child.0.id()))).unwrap();
        let mark = |id: &str| Mark {
            id: id.into(),
            view: there,
            root: Some(root.clone()),
        };
        let (ours, _) = own_view();
        assert_ne!(there, ours);
        let seen = [
            alive(&mark("id-there"), ours, true),
            alive(&mark("other"), ours, true),
        ];
        drop(child);
        // Gone with its last process (where this process may look into every other one).
        let after = alive(&mark("id-there"), ours, false);
        assert_eq!((seen, after), ([true, false], true));
        assert!(!root.join("engine-id").exists());
    }

    /// The processes of a view are looked through, each from its own root; a view none is
    /// in is gone only where every process could be looked at.
    #[test]
    fn a_view_is_judged_through_its_processes() {
        let dir = tempfile::tempdir().unwrap();
        let proc = dir.path().join("proc");
        let fs = dir.path().join("fs");
        std::fs::create_dir_all(fs.join("srv/root")).unwrap();
        std::fs::write(fs.join("srv/root/engine-id"), "id-a\n").unwrap();
        // A link out of its root resolves inside it.
        std::os::unix::fs::symlink("/srv/root", fs.join("link")).unwrap();
        std::fs::create_dir_all(proc.join("41/ns")).unwrap();
        std::fs::write(proc.join("41/ns/mnt"), "").unwrap();
        std::os::unix::fs::symlink(&fs, proc.join("41/root")).unwrap();
        std::fs::create_dir_all(proc.join("self")).unwrap();
        let view = View::of(&proc.join("41")).unwrap();
        let (ours, _) = own_view();
        let mark = |id: &str, root: &str| Mark {
            id: id.into(),
            view,
            root: Some(root.into()),
        };
        let judged = [
            alive_in(&proc, &mark("id-a", "/srv/root"), ours, true),
            alive_in(&proc, &mark("id-a", "/link"), ours, true),
            alive_in(&proc, &mark("id-b", "/srv/root"), ours, false),
            alive_in(&proc, &mark("id-a", "/srv/none"), ours, false),
        ];
        assert_eq!(judged, [true, true, false, false]);
        // Its last process gone.
        std::fs::remove_dir_all(proc.join("41")).unwrap();
        let after = [
            alive_in(&proc, &mark("id-a", "/srv/root"), ours, true),
            alive_in(&proc, &mark("id-a", "/srv/root"), ours, false),
        ];
        assert_eq!(after, [false, true]);
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
            let net = a.networks().find("bridge").unwrap();
            assert_eq!(
                net.bridge,
                default_bridge(&a.state().real_root, a.engine_id())
            );
            let link = nl.link(&net.bridge)?.expect("the default bridge");
            assert_eq!(link.alias, a.networks().mark().render());
            assert_eq!(
                Mark::parse(&link.alias).unwrap().root,
                Some(a.state().real_root.clone())
            );
            assert_eq!(addresses(&net.bridge).len(), 1);
            let user = a
                .networks()
                .create(&crate::network::NetworkCreate {
                    name: "mine".into(),
                    ..Default::default()
                })
                .unwrap();

            // The same bridge asked for by another root.
            let b = scratch_engine_with(|o| o.default_bridge = Some(net.bridge.clone()));
            let err = b.networks().find("bridge").unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Conflict);
            let msg = err.to_string();
            assert!(
                msg.contains(&format!(
                    "bridge {} belongs to the state root {}",
                    net.bridge,
                    a.state().real_root.display()
                )),
                "{msg}"
            );
            assert_eq!(
                nl.link(&net.bridge)?.unwrap().alias,
                a.networks().mark().render()
            );

            // A root with a bridge a container (a port) still uses.
            let c = scratch_engine();
            let c_net = c.networks().find("bridge").unwrap();
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
            std::fs::remove_dir_all(a.root())?;
            std::fs::remove_dir_all(c.root())?;
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
            assert_eq!(
                d.networks().sweep_bridges().unwrap(),
                vec![c_net.bridge.clone()]
            );
            assert!(!table_exists(&c_net.bridge));
            assert_eq!(d.networks().sweep_bridges().unwrap(), Vec::<String>::new());

            // A new root at a removed root's path: an ID of its own, so a bridge of its own;
            // the old one went at its open.
            let e = scratch_engine_with(|o| o.default_bridge = None);
            let old = e.networks().find("bridge").unwrap();
            std::fs::remove_dir_all(e.root())?;
            let reborn = crate::engine::Engine::open(&crate::engine::Options {
                root: e.root().to_path_buf(),
                ip_forward: false,
                ..Default::default()
            })
            .unwrap();
            assert_ne!(reborn.engine_id(), e.engine_id());
            assert_eq!(nl.link(&old.bridge)?, None);
            let new = reborn.networks().find("bridge").unwrap();
            assert_ne!(new.bridge, old.bridge);
            for n in reborn.networks().load_networks().unwrap() {
                reborn.networks().delete_bridge(&n).unwrap();
            }

            // A root asking for the bridge a root removed since it opened: the old one goes
            // (its rules too) and the new one has the one subnet.
            let y = scratch_engine_with(|o| o.default_bridge = Some("koname".into()));
            y.networks().find("bridge").unwrap();
            let x = scratch_engine_with(|o| o.default_bridge = Some("koname".into()));
            let err = x.networks().find("bridge").unwrap_err().to_string();
            assert!(err.contains("belongs to the state root"), "{err}");
            std::fs::remove_dir_all(y.root())?;
            let mine = x.networks().find("bridge").unwrap();
            let link = nl.link("koname")?.unwrap();
            assert_eq!(link.alias, x.networks().mark().render());
            assert_eq!(
                addresses("koname"),
                [format!(
                    "{}/{}",
                    mine.gateway.clone().unwrap(),
                    mine.subnet.as_ref().unwrap().split('/').nth(1).unwrap()
                )]
            );
            assert!(table_exists("koname"));

            // A bridge made by hand is used as it is, and left unmarked: never swept.
            nl.add_bridge("kohand", None)?;
            let f = scratch_engine_with(|o| o.default_bridge = Some("kohand".into()));
            f.networks().find("bridge").unwrap();
            std::fs::remove_dir_all(f.root())?;
            assert_eq!(d.networks().sweep_bridges().unwrap(), Vec::<String>::new());
            assert_eq!(nl.link("kohand")?.unwrap().alias, "");
            nl.del_link(nl.link_index("kohand")?.unwrap())?;
            firewall::delete("kohand")?;
            drop((b, d, f, x, y));
            assert_eq!(
                nl.links()?.iter().filter(|l| l.kind == "bridge").count(),
                0,
                "every bridge gone"
            );
            Ok(())
        });
    }
}
