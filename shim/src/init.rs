//! The container's first process, between clone and exec: mounts, root switch, hardening,
//! identity, then the user's program. Runs in the child of a single-threaded shim, in its
//! new namespaces, in the order runc and youki use.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::unistd::{chdir, fchdir, pivot_root, sethostname};

use crate::launch::{Launch, Never, launch};
use crate::spec::{RootfsMount, Spec};
use crate::{rootfs, sys};

/// Why the container's program could not start; `code` is the exit status Docker gives it.
#[derive(Debug)]
pub struct StartError {
    pub code: i32,
    pub message: String,
}

pub fn fail(code: i32, message: impl Into<String>) -> StartError {
    StartError {
        code,
        message: message.into(),
    }
}

pub fn ctx<E: std::fmt::Display>(what: impl FnOnce() -> String) -> impl FnOnce(E) -> StartError {
    move |e| fail(125, format!("{}: {e}", what()))
}

pub fn cstr(s: &str) -> CString {
    CString::new(s.as_bytes().to_vec()).unwrap_or_default()
}

/// Splits OCI mount options into mount flags and data.
fn parse_options(options: &[String]) -> (MsFlags, Vec<String>, bool) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    let mut readonly = false;
    for o in options {
        match o.as_str() {
            "ro" => readonly = true,
            "rw" => {}
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "relatime" => flags |= MsFlags::MS_RELATIME,
            "strictatime" => flags |= MsFlags::MS_STRICTATIME,
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            "private" | "rprivate" | "slave" | "rslave" | "shared" | "rshared" => {}
            other => data.push(other.to_string()),
        }
    }
    (flags, data, readonly)
}

/// Mounts the container's snapshot on `target`. A container's snapshot is always writable;
/// `root.readonly` makes the root read-only later, once it is the root. A read-only
/// snapshot mount (a view) is refused rather than mounted writable.
fn mount_rootfs(mounts: &[RootfsMount], target: &Path) -> Result<(), StartError> {
    if let Some(m) = mounts.iter().find(|m| parse_options(&m.options).2) {
        return Err(fail(
            125,
            format!(
                "the root file system's {} mount of {} is read-only; a container's is writable",
                m.kind, m.source
            ),
        ));
    }
    fs::create_dir_all(target).map_err(ctx(|| format!("create {}", target.display())))?;
    for m in mounts {
        let (mut flags, data, _) = parse_options(&m.options);
        let (fstype, source) = if m.kind == "bind" {
            flags |= MsFlags::MS_BIND | MsFlags::MS_REC;
            (None, m.source.as_str())
        } else {
            (Some(m.kind.as_str()), m.source.as_str())
        };
        let data = data.join(",");
        mount(
            Some(source),
            target,
            fstype,
            flags,
            if data.is_empty() {
                None
            } else {
                Some(data.as_str())
            },
        )
        .map_err(ctx(|| {
            format!(
                "mount the root file system ({}) on {}",
                m.kind,
                target.display()
            )
        }))?;
    }
    // pivot_root needs the new root to be a mount point; a bind of itself makes sure.
    mount(
        Some(target),
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(ctx(|| "bind the root file system".to_string()))?;
    Ok(())
}

/// The propagation a mount option names (`r`: the same for every mount below too).
fn propagation(option: &str) -> Option<MsFlags> {
    match option.strip_prefix('r').unwrap_or(option) {
        "private" => Some(MsFlags::MS_PRIVATE),
        "shared" => Some(MsFlags::MS_SHARED),
        "slave" => Some(MsFlags::MS_SLAVE),
        _ => None,
    }
}

/// Docker's checks of a bind's source: to share mount events with the host, it must be on a
/// shared mount; to receive them, on a shared or a slave one.
fn check_bind_sources(spec: &Spec, mountinfo: &str) -> Result<(), StartError> {
    for m in &spec.mounts {
        let flags = parse_options(&m.options).0;
        let (Some(source), true) = (
            &m.source,
            is_bind(m.kind.as_deref().unwrap_or("bind"), flags),
        ) else {
            continue;
        };
        let wanted: Vec<MsFlags> = m.options.iter().filter_map(|o| propagation(o)).collect();
        let shared = wanted.contains(&MsFlags::MS_SHARED);
        if !shared && !wanted.contains(&MsFlags::MS_SLAVE) {
            continue;
        }
        let path = fs::canonicalize(source).map_err(ctx(|| format!("bind source {source}")))?;
        let Some(on) = sys::mount_of(&path, mountinfo) else {
            continue;
        };
        if !(on.shared || !shared && on.slave) {
            return Err(fail(
                125,
                format!(
                    "path {} is mounted on {} but it is not a shared{} mount",
                    path.display(),
                    on.point.display(),
                    if shared { "" } else { " or slave" }
                ),
            ));
        }
    }
    Ok(())
}

/// A bind mount, as the runtime spec has it: of type `bind`, or of any type with the `bind`
/// or `rbind` option.
fn is_bind(kind: &str, flags: MsFlags) -> bool {
    kind == "bind" || flags.contains(MsFlags::MS_BIND)
}

/// The spec's mounts, in its order, inside `root`. `shm` is the /dev/shm of the container
/// whose IPC namespace this one joins (`io.ketch.shm`), attached in place of the spec's.
fn do_mounts(
    spec: &Spec,
    root: BorrowedFd<'_>,
    mut shm: Option<OwnedFd>,
) -> Result<(), StartError> {
    let shared_shm = spec
        .annotations
        .get("io.ketch.shm")
        .is_some_and(|v| v == "ipc");
    for m in &spec.mounts {
        if shared_shm && m.destination == "/dev/shm" {
            let tree = shm.take().ok_or_else(|| {
                fail(
                    125,
                    "no /dev/shm was given of the IPC namespace's container",
                )
            })?;
            let point = rootfs::create_in_root(root, &m.destination, true)
                .map_err(ctx(|| format!("mount point {}", m.destination)))?;
            sys::attach(tree.as_fd(), point.as_fd())
                .map_err(ctx(|| "attach the shared /dev/shm".to_string()))?;
            continue;
        }
        let kind = m.kind.clone().unwrap_or_else(|| "bind".into());
        let (mut flags, data, readonly) = parse_options(&m.options);
        let is_bind = is_bind(&kind, flags);
        // The source of a bind is a host path the engine chose (a volume, the user's `-v`).
        let source = m.source.clone().unwrap_or_else(|| kind.clone());
        let dir = !is_bind || fs::metadata(&source).map(|md| md.is_dir()).unwrap_or(true);
        let point = rootfs::create_in_root(root, &m.destination, dir)
            .map_err(ctx(|| format!("mount point {}", m.destination)))?;
        let target = rootfs::fd_path(point.as_fd());
        if is_bind {
            flags |= MsFlags::MS_BIND;
        } else if readonly {
            flags |= MsFlags::MS_RDONLY;
        }
        let data = data.join(",");
        let data = if data.is_empty() {
            None
        } else {
            Some(data.as_str())
        };
        let res = mount(
            Some(source.as_str()),
            target.as_str(),
            if is_bind { None } else { Some(kind.as_str()) },
            flags,
            data,
        );
        res.map_err(|e| {
            let what = if is_bind { &source } else { &kind };
            let hint = if e == nix::errno::Errno::ENOTDIR {
                " (a file on a directory, or a directory on a file?)"
            } else {
                ""
            };
            fail(125, format!("mount {what} on {}: {e}{hint}", m.destination))
        })?;
        // The descriptor names the directory under the new mount; the mount itself is what
        // the changes below are for, so look it up again.
        let mounted = rootfs::open_in_root(root, &m.destination, false)
            .map_err(ctx(|| format!("reopen {}", m.destination)))?;
        let target = rootfs::fd_path(mounted.as_fd());
        // Propagation, on its own call as the kernel wants it.
        for o in &m.options {
            let Some(p) = propagation(o) else {
                continue;
            };
            let p = if o.starts_with('r') {
                p | MsFlags::MS_REC
            } else {
                p
            };
            mount(None::<&str>, target.as_str(), None::<&str>, p, None::<&str>)
                .map_err(ctx(|| format!("set {o} on {}", m.destination)))?;
        }
        // A bind is made read-only only afterwards: added to the flags the source mount has
        // (a `nosuid,nodev,noexec` source stays so), and on every mount below it for an
        // rbind, so that `:ro` leaves nothing under the volume writable.
        if is_bind && readonly {
            sys::add_mount_attrs(
                mounted.as_fd(),
                sys::MOUNT_ATTR_RDONLY,
                flags.contains(MsFlags::MS_REC),
            )
            .map_err(ctx(|| format!("remount {} read-only", m.destination)))?;
        }
    }
    Ok(())
}

fn pivot(root: BorrowedFd<'_>) -> Result<(), StartError> {
    let old = fs::File::open("/").map_err(ctx(|| "open the old root".to_string()))?;
    fchdir(root.as_raw_fd()).map_err(ctx(|| "chdir to the root file system".to_string()))?;
    // pivot_root(".", "."): the old root ends up stacked on the new one and is detached.
    pivot_root(".", ".").map_err(ctx(|| "pivot_root".to_string()))?;
    // The old root (and only it, hence the chdir) a slave before it goes, as runc makes
    // it: its detaching is then not done to peers of its mounts outside, which a shared
    // copy of the host's mounts has (the host's own).
    fchdir(old.as_raw_fd()).map_err(ctx(|| "chdir to the old root".to_string()))?;
    mount(
        None::<&str>,
        ".",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(ctx(|| "make the old root a slave".to_string()))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(ctx(|| "detach the old root".to_string()))?;
    chdir("/").map_err(ctx(|| "chdir /".to_string()))?;
    Ok(())
}

/// Brings up the loopback interface of a new network namespace, which starts down.
pub(crate) fn loopback_up() -> Result<(), StartError> {
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(fail(125, format!("socket: {}", io::Error::last_os_error())));
    }
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in b"lo".iter().enumerate() {
        req.ifr_name[i] = *b as libc::c_char;
    }
    let res = unsafe {
        if libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) < 0 {
            -1
        } else {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            libc::ioctl(sock, libc::SIOCSIFFLAGS, &req)
        }
    };
    let err = io::Error::last_os_error();
    unsafe { libc::close(sock) };
    if res < 0 {
        return Err(fail(125, format!("bring up lo: {err}")));
    }
    Ok(())
}

/// Whether the container gets a cgroup namespace of its own, made once it is in its cgroups.
pub fn new_cgroupns(spec: &Spec) -> bool {
    spec.linux
        .namespaces
        .iter()
        .any(|n| n.kind == "cgroup" && n.path.is_none())
}

/// Everything between the namespaces and the user's program (`how` says which process it
/// is). Returns only on failure.
pub fn init(
    spec: &Spec,
    rootfs_mounts: &[RootfsMount],
    cgroupns: bool,
    console: Option<i32>,
    shm: Option<OwnedFd>,
    how: Launch<'_>,
) -> StartError {
    match setup(spec, rootfs_mounts, cgroupns, console, shm, how) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

/// Opens a terminal in the container's own devpts, makes it this process's controlling
/// terminal and stdio, and sends the master side to the monitor.
pub(crate) fn open_console(
    sock: i32,
    size: Option<crate::spec::ConsoleSize>,
) -> Result<(), StartError> {
    // (Opened close-on-exec, as std opens every file; a master side never becomes a
    // controlling terminal, so it needs no O_NOCTTY.)
    let master = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/ptmx")
        .map_err(ctx(|| "open /dev/ptmx".to_string()))?;
    let mut n: libc::c_uint = 0;
    let mut unlock: libc::c_int = 0;
    unsafe {
        if libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &mut unlock) < 0
            || libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut n) < 0
        {
            return Err(fail(
                125,
                format!("unlock the terminal: {}", io::Error::last_os_error()),
            ));
        }
    }
    let slave = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(format!("/dev/pts/{n}"))
        .map_err(ctx(|| format!("open /dev/pts/{n}")))?;
    if let Some(size) = size {
        let ws = libc::winsize {
            ws_row: size.height,
            ws_col: size.width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: sets the size of the terminal this process just opened.
        unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    }
    unsafe {
        libc::setsid();
        if libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) < 0 {
            return Err(fail(
                125,
                format!("take the terminal: {}", io::Error::last_os_error()),
            ));
        }
        for fd in 0..3 {
            libc::dup2(slave.as_raw_fd(), fd);
        }
    }
    let fds = [master.as_raw_fd()];
    let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
    let iov = [std::io::IoSlice::new(b"t")];
    nix::sys::socket::sendmsg::<()>(sock, &iov, &cmsg, nix::sys::socket::MsgFlags::empty(), None)
        .map_err(ctx(|| "send the terminal".to_string()))?;
    unsafe { libc::close(sock) };
    Ok(())
}

fn setup(
    spec: &Spec,
    rootfs_mounts: &[RootfsMount],
    cgroupns: bool,
    console: Option<i32>,
    shm: Option<OwnedFd>,
    how: Launch<'_>,
) -> Result<Never, StartError> {
    if cgroupns {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
            .map_err(ctx(|| "unshare the cgroup namespace".to_string()))?;
    }
    if let Some(h) = &spec.hostname
        && spec.linux.namespaces.iter().any(|n| n.kind == "uts")
    {
        sethostname(h).map_err(ctx(|| "sethostname".to_string()))?;
    }
    if let Some(d) = &spec.domainname
        && spec.linux.namespaces.iter().any(|n| n.kind == "uts")
    {
        // SAFETY: a pointer and length of a live buffer.
        if unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) } != 0 {
            return Err(ctx(|| "setdomainname".to_string())(
                io::Error::last_os_error(),
            ));
        }
    }
    let own_mount_ns = spec.linux.namespaces.iter().any(|n| n.kind == "mount");
    if own_mount_ns {
        let root_path = PathBuf::from(&spec.root.path);
        let asks = |p: MsFlags| {
            spec.mounts
                .iter()
                .any(|m| m.options.iter().any(|o| propagation(o) == Some(p)))
        };
        let shared = asks(MsFlags::MS_SHARED);
        // Only a bind that shares or receives mount events needs the mount table (which a
        // busy host makes long): most starts do not read it.
        let info = if shared || asks(MsFlags::MS_SLAVE) {
            let info = fs::read_to_string("/proc/thread-self/mountinfo")
                .map_err(ctx(|| "read /proc/thread-self/mountinfo".to_string()))?;
            check_bind_sources(spec, &info)?;
            info
        } else {
            String::new()
        };
        // This namespace's copy of the host's mounts, as Docker sets it: a slave of the
        // host's (what the host mounts later reaches a bind that asks for it, nothing made
        // here goes back), or shared where a bind is to share with the host; then the mount
        // the root file system goes on is made private (as runc does), so that nothing
        // mounted for the container is seen outside it but through a shared bind.
        let copy = if shared {
            MsFlags::MS_SHARED
        } else {
            MsFlags::MS_SLAVE
        };
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | copy,
            None::<&str>,
        )
        .map_err(ctx(|| "set the propagation of /".to_string()))?;
        if let Some(parent) = sys::mount_of(&root_path, &info).filter(|_| shared) {
            mount(
                None::<&str>,
                &parent.point,
                None::<&str>,
                MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .map_err(ctx(|| format!("make {} private", parent.point.display())))?;
        }
        mount_rootfs(rootfs_mounts, &root_path)?;
        // (Closed at the end of this block, before anything execs.)
        let root =
            fs::File::open(&root_path).map_err(ctx(|| "open the root file system".to_string()))?;
        do_mounts(spec, root.as_fd(), shm)?;
        let privileged = spec
            .annotations
            .get("io.ketch.privileged")
            .is_some_and(|v| v == "true");
        rootfs::make_devices(root.as_fd(), spec, privileged)?;
        rootfs::write_sysctls(root.as_fd(), spec)?;
        rootfs::protect_paths(root.as_fd(), spec)?;
        pivot(root.as_fd())?;
        if spec.root.readonly {
            let slash = fs::File::open("/").map_err(ctx(|| "open /".to_string()))?;
            sys::add_mount_attrs(slash.as_fd(), sys::MOUNT_ATTR_RDONLY, false)
                .map_err(ctx(|| "remount / read-only".to_string()))?;
        }
    }
    if spec
        .linux
        .namespaces
        .iter()
        .any(|n| n.kind == "network" && n.path.is_none())
    {
        loopback_up()?;
    }
    if let Some(sock) = console {
        open_console(sock, spec.process.console_size)?;
    }
    let user = spec
        .annotations
        .get("io.ketch.user")
        .cloned()
        .unwrap_or_default();
    launch(
        spec,
        &spec.process.args,
        &spec.process.env,
        &spec.process.cwd,
        &user,
        how,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_options_split_into_flags_data_and_read_only() {
        let o = |v: &[&str]| parse_options(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(o(&[]), (MsFlags::empty(), vec![], false));
        let (flags, data, ro) = o(&[
            "ro",
            "nosuid",
            "nodev",
            "noexec",
            "relatime",
            "mode=755",
            "size=65536k",
            "rprivate",
        ]);
        assert_eq!(
            flags,
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RELATIME
        );
        assert_eq!(data, ["mode=755", "size=65536k"]);
        assert!(ro);
        assert_eq!(o(&["rw", "strictatime"]).0, MsFlags::MS_STRICTATIME);
        assert!(!o(&["rw", "shared", "slave", "private", "rshared", "rslave"]).2);
        assert_eq!(o(&["bind"]).0, MsFlags::MS_BIND);
        assert_eq!(o(&["rbind"]).0, MsFlags::MS_BIND | MsFlags::MS_REC);
        assert_eq!(
            o(&["lowerdir=/a:/b", "upperdir=/u"]).1,
            ["lowerdir=/a:/b", "upperdir=/u"]
        );
    }

    #[test]
    fn a_bind_is_of_type_bind_or_has_the_bind_option() {
        assert!(is_bind("bind", MsFlags::empty()));
        assert!(is_bind("none", MsFlags::MS_BIND | MsFlags::MS_REC));
        assert!(!is_bind("tmpfs", MsFlags::MS_NOSUID));
    }

    /// A read-only snapshot mount is refused before anything is made or mounted.
    #[test]
    fn a_read_only_root_file_system_mount_is_refused() {
        let dir = std::env::temp_dir().join(crate::sys::unique_name("ketch-rootfs-ro"));
        let m = |o: &str| RootfsMount {
            kind: "bind".into(),
            source: "/snapshots/7/fs".into(),
            options: vec!["rbind".into(), o.into()],
        };
        let err = mount_rootfs(&[m("rw"), m("ro")], &dir).unwrap_err();
        assert!(
            err.message
                .contains("bind mount of /snapshots/7/fs is read-only"),
            "{}",
            err.message
        );
        assert!(!dir.exists());
    }

    /// Loopback comes up in the container's network namespace, keeping its other flags.
    #[test]
    fn loopback_comes_up() {
        let shown = std::thread::spawn(|| {
            // SAFETY: unshare(2) of this thread's network namespace only.
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
            let show = || {
                let out = std::process::Command::new("ip")
                    .args(["-o", "link", "show", "lo"])
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&out.stdout).into_owned()
            };
            let before = show();
            loopback_up().unwrap();
            (before, show())
        })
        .join()
        .unwrap();
        assert!(shown.0.contains("<LOOPBACK>"), "{}", shown.0);
        assert!(shown.1.contains("<LOOPBACK,UP,LOWER_UP>"), "{}", shown.1);
    }

    #[test]
    fn a_cgroup_namespace_is_made_only_when_asked_for_without_a_path() {
        let spec = |ns: serde_json::Value| -> Spec {
            serde_json::from_value(serde_json::json!({"linux": {"namespaces": ns}})).unwrap()
        };
        assert!(new_cgroupns(&spec(serde_json::json!([{"type": "cgroup"}]))));
        assert!(!new_cgroupns(&spec(serde_json::json!([
            {"type": "cgroup", "path": "/proc/1/ns/cgroup"}
        ]))));
        assert!(!new_cgroupns(&spec(
            serde_json::json!([{"type": "network"}])
        )));
    }
}
