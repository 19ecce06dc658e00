//! The container's first process, between clone and exec: mounts, root switch, hardening,
//! identity, then the user's program. Runs in the child of a single-threaded shim, in its
//! new namespaces, in the order runc and youki use.

use std::ffi::CString;
use std::fs;
use std::io;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::{Mode, SFlag, makedev, mknod, umask};
use nix::unistd::{chdir, pivot_root, sethostname};

use crate::spec::{RootfsMount, Spec};

/// Why the container's program could not start; `code` is the exit status Docker gives it.
pub struct StartError {
    pub code: i32,
    pub message: String,
}

fn fail(code: i32, message: impl Into<String>) -> StartError {
    StartError {
        code,
        message: message.into(),
    }
}

fn ctx<E: std::fmt::Display>(what: impl FnOnce() -> String) -> impl FnOnce(E) -> StartError {
    move |e| fail(125, format!("{}: {e}", what()))
}

fn cstr(s: &str) -> CString {
    CString::new(s.as_bytes().to_vec()).unwrap_or_default()
}

/// Opens `path` inside `root` with every symlink resolved as if `root` were `/`, so an
/// image cannot aim a mount at the host.
fn open_in_root(root: &Path, path: &str, dir: bool) -> io::Result<OwnedFd> {
    let root_fd = fs::File::open(root)?;
    let rel = path.trim_start_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    let c = cstr(rel);
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_CLOEXEC | if dir { libc::O_DIRECTORY } else { 0 }) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root_fd.as_raw_fd(),
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) })
}

/// Creates a mount point below `root` (directories on the way, and a file or directory at
/// the end) and returns a `/proc/self/fd/N` path naming it, to mount onto.
fn mount_point(root: &Path, dest: &str, dir: bool) -> io::Result<(OwnedFd, PathBuf)> {
    let components: Vec<&str> = dest
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    for i in 0..components.len() {
        let prefix = components[..=i].join("/");
        let last = i + 1 == components.len();
        if open_in_root(root, &prefix, false).is_ok() {
            continue;
        }
        let parent = open_in_root(root, &components[..i].join("/"), true)?;
        let parent_path = format!("/proc/self/fd/{}", parent.as_raw_fd());
        let target = Path::new(&parent_path).join(components[i]);
        if last && !dir {
            fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&target)?;
        } else {
            match fs::create_dir(&target) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
    }
    let fd = open_in_root(root, dest, false)?;
    let p = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    Ok((fd, p))
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

fn mount_rootfs(mounts: &[RootfsMount], target: &Path) -> Result<(), StartError> {
    fs::create_dir_all(target).map_err(ctx(|| format!("create {}", target.display())))?;
    for m in mounts {
        let (mut flags, data, readonly) = parse_options(&m.options);
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
        if readonly {
            mount(
                None::<&str>,
                target,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None::<&str>,
            )
            .map_err(ctx(|| "remount the root file system read-only".to_string()))?;
        }
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

fn do_mounts(spec: &Spec, root: &Path) -> Result<(), StartError> {
    for m in &spec.mounts {
        let kind = m.kind.clone().unwrap_or_else(|| "bind".into());
        let (mut flags, data, readonly) = parse_options(&m.options);
        let is_bind = kind == "bind" || flags.contains(MsFlags::MS_BIND);
        let source = m.source.clone().unwrap_or_else(|| kind.clone());
        let dir = !is_bind || fs::metadata(&source).map(|md| md.is_dir()).unwrap_or(true);
        let (_fd, target) = mount_point(root, &m.destination, dir)
            .map_err(ctx(|| format!("mount point {}", m.destination)))?;
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
            &target,
            if is_bind { None } else { Some(kind.as_str()) },
            flags,
            data,
        );
        match res {
            Ok(()) => {}
            // Without a cgroup namespace of its own the v1 hierarchy cannot be mounted here;
            // the container simply has no /sys/fs/cgroup then.
            Err(_) if kind == "cgroup" || kind == "cgroup2" => continue,
            Err(e) => {
                return Err(fail(
                    125,
                    format!("mount {} on {}: {e}", kind, m.destination),
                ));
            }
        }
        // The descriptor names the directory under the new mount; the mount itself is what
        // the changes below are for, so look it up again.
        let (_mounted_fd, target) = match open_in_root(root, &m.destination, false) {
            Ok(fd) => {
                let p = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
                (fd, p)
            }
            Err(e) => return Err(fail(125, format!("reopen {}: {e}", m.destination))),
        };
        // Propagation, on its own call as the kernel wants it.
        for o in &m.options {
            let p = match o.as_str() {
                "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
                "private" => MsFlags::MS_PRIVATE,
                "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
                "shared" => MsFlags::MS_SHARED,
                "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
                "slave" => MsFlags::MS_SLAVE,
                _ => continue,
            };
            mount(None::<&str>, &target, None::<&str>, p, None::<&str>)
                .map_err(ctx(|| format!("set {o} on {}", m.destination)))?;
        }
        // A bind mount takes its flags only on a remount.
        if is_bind
            && (readonly
                || flags.intersects(MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC))
        {
            let mut rf = MsFlags::MS_BIND
                | MsFlags::MS_REMOUNT
                | (flags & (MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC));
            if readonly {
                rf |= MsFlags::MS_RDONLY;
            }
            mount(None::<&str>, &target, None::<&str>, rf, None::<&str>)
                .map_err(ctx(|| format!("remount {} read-only", m.destination)))?;
        }
    }
    Ok(())
}

/// `--privileged`: every character and block device of the host's /dev (top level), as
/// Docker gives a privileged container the host's devices.
fn host_devices(dev: &Path) {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let Ok(entries) = fs::read_dir("/dev") else {
        return;
    };
    for e in entries.flatten() {
        let Ok(md) = fs::symlink_metadata(e.path()) else {
            continue;
        };
        let ft = md.file_type();
        let kind = if ft.is_char_device() {
            SFlag::S_IFCHR
        } else if ft.is_block_device() {
            SFlag::S_IFBLK
        } else {
            continue;
        };
        let target = dev.join(e.file_name());
        if target.exists() {
            continue;
        }
        let _ = mknod(
            &target,
            kind,
            Mode::from_bits_truncate(md.mode() & 0o7777),
            md.rdev(),
        );
    }
}

/// The standard device nodes in the container's /dev (a tmpfs the spec mounted).
fn make_devices(root: &Path, privileged: bool) -> Result<(), StartError> {
    let dev = root.join("dev");
    if !dev.is_dir() {
        return Ok(());
    }
    let old = umask(Mode::empty());
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        let p = dev.join(name);
        if p.exists() {
            continue;
        }
        if mknod(
            &p,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(major, minor),
        )
        .is_err()
        {
            // Where mknod is not allowed, bind the host's node instead.
            let _ = fs::File::create(&p);
            mount(
                Some(&Path::new("/dev").join(name)),
                &p,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(ctx(|| format!("create /dev/{name}")))?;
        }
    }
    if privileged {
        host_devices(&dev);
    }
    umask(old);
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
        ("core", "/proc/kcore"),
    ] {
        let _ = std::os::unix::fs::symlink(target, dev.join(link));
    }
    Ok(())
}

fn pivot(root: &Path) -> Result<(), StartError> {
    chdir(root).map_err(ctx(|| "chdir to the root file system".to_string()))?;
    // pivot_root(".", "."): the old root ends up stacked on the new one and is detached.
    pivot_root(".", ".").map_err(ctx(|| "pivot_root".to_string()))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(ctx(|| "detach the old root".to_string()))?;
    chdir("/").map_err(ctx(|| "chdir /".to_string()))?;
    Ok(())
}

fn mask_paths(spec: &Spec) -> Result<(), StartError> {
    for p in &spec.linux.masked_paths {
        let Ok(md) = fs::metadata(p) else { continue };
        let res = if md.is_dir() {
            mount(
                Some("tmpfs"),
                p.as_str(),
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                None::<&str>,
            )
        } else {
            mount(
                Some("/dev/null"),
                p.as_str(),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
        };
        res.map_err(ctx(|| format!("mask {p}")))?;
    }
    for p in &spec.linux.readonly_paths {
        if fs::metadata(p).is_err() {
            continue;
        }
        mount(
            Some(p.as_str()),
            p.as_str(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(ctx(|| format!("bind {p}")))?;
        mount(
            None::<&str>,
            p.as_str(),
            None::<&str>,
            MsFlags::MS_BIND
                | MsFlags::MS_REMOUNT
                | MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC,
            None::<&str>,
        )
        .map_err(ctx(|| format!("make {p} read-only")))?;
    }
    Ok(())
}

fn rlimit_resource(kind: &str) -> Option<libc::__rlimit_resource_t> {
    Some(match kind {
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        _ => return None,
    })
}

/// Applies rlimits, never above what the host allows: without CAP_SYS_RESOURCE a hard limit
/// cannot be raised, so a request above it is clamped.
fn set_rlimits(spec: &Spec) {
    for r in &spec.process.rlimits {
        let Some(res) = rlimit_resource(&r.kind) else {
            continue;
        };
        let mut cur = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        unsafe { libc::getrlimit(res, &mut cur) };
        let mut want = libc::rlimit {
            rlim_cur: r.soft,
            rlim_max: r.hard,
        };
        if unsafe { libc::setrlimit(res, &want) } != 0 {
            want.rlim_max = want.rlim_max.min(cur.rlim_max);
            want.rlim_cur = want.rlim_cur.min(want.rlim_max);
            unsafe { libc::setrlimit(res, &want) };
        }
    }
}

fn cap_set(names: &[String]) -> caps::CapsHashSet {
    names
        .iter()
        .filter_map(|n| n.parse::<caps::Capability>().ok())
        .collect()
}

/// Sets the capability sets, keeping to what the bounding set still has: a capability the
/// host withholds (CAP_SYS_RESOURCE on some hosts) is left out rather than failing the start.
/// Shrinks the bounding set; needs CAP_SETPCAP, so it runs before the change of user.
fn drop_bounding(spec: &Spec) -> Result<(), StartError> {
    let Some(c) = &spec.process.capabilities else {
        return Ok(());
    };
    let host_bounding = caps::read(None, caps::CapSet::Bounding)
        .map_err(ctx(|| "read capabilities".to_string()))?;
    let bounding = cap_set(&c.bounding);
    for cap in &host_bounding {
        if !bounding.contains(cap) {
            caps::drop(None, caps::CapSet::Bounding, *cap)
                .map_err(ctx(|| format!("drop {cap} from the bounding set")))?;
        }
    }
    Ok(())
}

fn set_capabilities(spec: &Spec) -> Result<(), StartError> {
    let Some(c) = &spec.process.capabilities else {
        return Ok(());
    };
    let host_bounding = caps::read(None, caps::CapSet::Bounding)
        .map_err(ctx(|| "read capabilities".to_string()))?;
    let keep = |set: caps::CapsHashSet| -> caps::CapsHashSet {
        set.intersection(&host_bounding).cloned().collect()
    };
    // Permitted first (it bounds effective), then the rest; ambient last.
    let permitted = keep(cap_set(&c.permitted));
    caps::set(
        None,
        caps::CapSet::Effective,
        &keep(cap_set(&c.effective))
            .intersection(&permitted)
            .cloned()
            .collect(),
    )
    .map_err(ctx(|| "set effective capabilities".to_string()))?;
    caps::set(
        None,
        caps::CapSet::Inheritable,
        &keep(cap_set(&c.inheritable)),
    )
    .map_err(ctx(|| "set inheritable capabilities".to_string()))?;
    caps::set(None, caps::CapSet::Permitted, &permitted)
        .map_err(ctx(|| "set permitted capabilities".to_string()))?;
    let _ = caps::clear(None, caps::CapSet::Ambient);
    for cap in keep(cap_set(&c.ambient)) {
        let _ = caps::raise(None, caps::CapSet::Ambient, cap);
    }
    Ok(())
}

/// A user as the container's own /etc/passwd and /etc/group define it.
struct Identity {
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
    home: String,
}

/// Resolves `user[:group]` (names or numbers) against the container's files, read after the
/// root switch, as Docker does.
fn resolve_user(spec: &Spec, spec_user: &str) -> Result<Identity, StartError> {
    let u = &spec.process.user;
    let mut id = Identity {
        uid: u.uid,
        gid: u.gid,
        groups: u.additional_gids.clone(),
        home: "/".into(),
    };
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = fs::read_to_string("/etc/group").unwrap_or_default();
    let (user, grp) = match spec_user.split_once(':') {
        Some((u, g)) => (u.to_string(), Some(g.to_string())),
        None => (spec_user.to_string(), None),
    };
    let entry = |name_or_id: &str| {
        passwd
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() >= 7 && (f[0] == name_or_id || f[2] == name_or_id))
    };
    if !user.is_empty() {
        match entry(&user) {
            Some(f) => {
                id.uid = f[2].parse().unwrap_or(0);
                id.gid = f[3].parse().unwrap_or(0);
                id.home = f[5].to_string();
            }
            None => match user.parse::<u32>() {
                Ok(n) => {
                    id.uid = n;
                    id.gid = n;
                }
                Err(_) => {
                    return Err(fail(
                        126,
                        format!("unable to find user {user}: no matching entries in passwd file"),
                    ));
                }
            },
        }
    } else if let Some(f) = entry("0") {
        id.home = f[5].to_string();
    }
    if let Some(g) = grp {
        let found = group
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() >= 3 && (f[0] == g || f[2] == g));
        id.gid = match (found, g.parse::<u32>()) {
            (Some(f), _) => f[2].parse().unwrap_or(0),
            (None, Ok(n)) => n,
            (None, Err(_)) => {
                return Err(fail(
                    126,
                    format!("unable to find group {g}: no matching entries in group file"),
                ));
            }
        };
    }
    // Supplementary groups: those that list the user by name.
    let name = entry(&id.uid.to_string())
        .map(|f| f[0].to_string())
        .unwrap_or_default();
    for l in group.lines() {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() >= 4
            && !name.is_empty()
            && f[3].split(',').any(|m| m == name)
            && let Ok(g) = f[2].parse::<u32>()
            && !id.groups.contains(&g)
        {
            id.groups.push(g);
        }
    }
    Ok(id)
}

fn set_user(id: &Identity) -> Result<(), StartError> {
    let groups: Vec<nix::unistd::Gid> = id
        .groups
        .iter()
        .map(|g| nix::unistd::Gid::from_raw(*g))
        .collect();
    nix::unistd::setgroups(&groups).map_err(ctx(|| "setgroups".to_string()))?;
    let gid = nix::unistd::Gid::from_raw(id.gid);
    nix::unistd::setresgid(gid, gid, gid).map_err(ctx(|| format!("setgid {}", id.gid)))?;
    if id.uid != 0 {
        // Keep the permitted set across the change of user; the capability sets are set after.
        unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
        let uid = nix::unistd::Uid::from_raw(id.uid);
        nix::unistd::setresuid(uid, uid, uid).map_err(ctx(|| format!("setuid {}", id.uid)))?;
    }
    Ok(())
}

/// Brings up the loopback interface of a new network namespace, which starts down.
fn loopback_up() -> Result<(), StartError> {
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

/// Finds `prog` on the container's PATH.
fn lookup(prog: &str, env: &[String]) -> Result<CString, StartError> {
    if prog.contains('/') {
        return Ok(cstr(prog));
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let p = Path::new(dir).join(prog);
        if let Ok(md) = fs::metadata(&p)
            && md.is_file()
        {
            return Ok(CString::new(p.as_os_str().as_bytes().to_vec()).unwrap_or_default());
        }
    }
    Err(fail(
        127,
        format!("exec: \"{prog}\": executable file not found in $PATH"),
    ))
}

/// Everything between the namespaces and the user's program. Returns only on failure.
pub fn init(
    spec: &Spec,
    rootfs_mounts: &[RootfsMount],
    cgroupns: bool,
    console: Option<i32>,
) -> StartError {
    match setup(spec, rootfs_mounts, cgroupns, console) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

enum Never {}

/// Opens a terminal in the container's own devpts, makes it this process's controlling
/// terminal and stdio, and sends the master side to the monitor.
pub(crate) fn open_console(
    sock: i32,
    size: Option<crate::spec::ConsoleSize>,
) -> Result<(), StartError> {
    let master = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
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
    let own_mount_ns = spec.linux.namespaces.iter().any(|n| n.kind == "mount");
    if own_mount_ns {
        // Nothing done here may propagate back to the host.
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(ctx(|| "make / private".to_string()))?;
        let root = PathBuf::from(&spec.root.path);
        mount_rootfs(rootfs_mounts, &root)?;
        do_mounts(spec, &root)?;
        let privileged = spec
            .annotations
            .get("io.ketch.privileged")
            .is_some_and(|v| v == "true");
        make_devices(&root, privileged)?;
        pivot(&root)?;
        mask_paths(spec)?;
        if spec.root.readonly {
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC,
                None::<&str>,
            )
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
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
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
    )
}

/// Runs a process in a container it is already inside (namespaces joined, root switched):
/// `ketch exec`'s counterpart of [`init`]. Returns only on failure.
pub fn exec_init(
    spec: &Spec,
    args: &[String],
    env: &[String],
    cwd: &str,
    user: &str,
) -> StartError {
    match launch(spec, args, env, cwd, user) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

/// Identity, limits, working directory, capabilities, then exec.
fn launch(
    spec: &Spec,
    args_in: &[String],
    env_in: &[String],
    cwd_in: &str,
    user: &str,
) -> Result<Never, StartError> {
    set_rlimits(spec);
    let args: Vec<CString> = args_in.iter().map(|a| cstr(a)).collect();
    let Some(first) = args_in.first() else {
        return Err(fail(125, "no command specified"));
    };
    let identity = resolve_user(spec, user)?;
    let mut env_list = env_in.to_vec();
    if !env_list.iter().any(|e| e.starts_with("HOME=")) {
        env_list.push(format!("HOME={}", identity.home));
    }
    let env: Vec<CString> = env_list.iter().map(|e| cstr(e)).collect();
    let cwd = if cwd_in.is_empty() { "/" } else { cwd_in };
    // Docker creates a missing working directory.
    let _ = fs::create_dir_all(cwd);
    drop_bounding(spec)?;
    // Compiled before, loaded after the identity change would need CAP_SYS_ADMIN or
    // no_new_privs: load it while still root, allowing what the rest of the setup calls.
    if let Some(profile) = &spec.linux.seccomp {
        let programs = crate::seccomp::compile(profile).map_err(|e| fail(125, e))?;
        crate::seccomp::load(&programs).map_err(|e| fail(125, e))?;
    }
    set_user(&identity)?;
    chdir(cwd).map_err(|e| {
        fail(
            126,
            format!("chdir to cwd ({cwd:?}) set in config.json failed: {e}"),
        )
    })?;
    let prog = lookup(first, &env_list)?;
    if spec.process.no_new_privileges {
        unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    }
    set_capabilities(spec)?;
    if spec
        .annotations
        .get("io.ketch.init")
        .is_some_and(|v| v == "true")
    {
        return run_as_init(&prog, &args, &env, first);
    }
    Err(exec_error(
        nix::unistd::execve(&prog, &args, &env).unwrap_err(),
        first,
    ))
}

fn exec_error(err: nix::errno::Errno, first: &str) -> StartError {
    match err {
        nix::errno::Errno::ENOENT => {
            fail(127, format!("exec: \"{first}\": no such file or directory"))
        }
        nix::errno::Errno::EACCES | nix::errno::Errno::ENOEXEC => {
            fail(126, format!("exec: \"{first}\": permission denied"))
        }
        e => fail(126, format!("exec {first}: {e}")),
    }
}

/// `--init`: this process stays as the container's PID 1, runs the program as its child,
/// passes signals on to it, reaps every orphan, and exits with the program's status. It
/// is the shim's own image, so nothing needs to be installed in the container.
/// Rewrites this process's command line (`/proc/self/cmdline`) in place, as
/// `setproctitle(3)` does: the words, joined by spaces, are written over the argument area
/// the kernel set up at exec and cut to its length. The area's last byte is left non-NUL,
/// which tells the kernel the title is one string ending at its first NUL; otherwise the
/// zeroed rest of the area would read as empty arguments. (`PR_SET_MM` would need
/// CAP_SYS_RESOURCE, which the host may not grant.)
fn set_cmdline(head: &[&str], args: &[CString]) {
    let Ok(stat) = fs::read_to_string("/proc/self/stat") else {
        return;
    };
    // Fields 48 and 49, arg_start and arg_end, counted after the command name's ')'.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return;
    };
    let mut fields = rest.split(' ').skip(45);
    let (Some(Ok(start)), Some(Ok(end))) = (
        fields.next().map(str::parse::<usize>),
        fields.next().map(str::parse::<usize>),
    ) else {
        return;
    };
    let len = end.saturating_sub(start);
    if len < 2 {
        return;
    }
    let words: Vec<&[u8]> = head
        .iter()
        .map(|w| w.as_bytes())
        .chain(args.iter().map(|a| a.as_bytes()))
        .collect();
    let mut title = words.join(&b' ');
    // Room for the terminating NUL and the non-NUL marker byte.
    title.truncate(len - 2);
    // SAFETY: [start, end) is this process's argument area on its own stack, set up by the
    // kernel at exec; nothing in this process reads the original arguments any more.
    unsafe {
        let area = start as *mut u8;
        std::ptr::write_bytes(area, 0, len);
        std::ptr::copy_nonoverlapping(title.as_ptr(), area, title.len());
        *area.add(len - 1) = b' ';
    }
}

fn run_as_init(
    prog: &CString,
    args: &[CString],
    env: &[CString],
    first: &str,
) -> Result<Never, StartError> {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
    let forwarded = [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
        Signal::SIGALRM,
        Signal::SIGCONT,
    ];
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    for s in forwarded {
        mask.add(s);
    }
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)
        .map_err(ctx(|| "block signals".to_string()))?;
    // Named before the program starts, so it never sees PID 1 under the shim's name (nor
    // the shim's arguments, which hold a host path).
    unsafe { libc::prctl(libc::PR_SET_NAME, c"ketch-init".as_ptr(), 0, 0, 0) };
    set_cmdline(&["ketch-init", "--"], args);
    let (status_r, status_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(ctx(|| "pipe".to_string()))?;
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(fail(125, format!("fork: {}", io::Error::last_os_error())));
    }
    if child == 0 {
        let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
        drop(status_r);
        let err = exec_error(nix::unistd::execve(prog, args, env).unwrap_err(), first);
        let _ =
            fs::File::from(status_w).write_all(format!("{} {}", err.code, err.message).as_bytes());
        unsafe { libc::_exit(err.code) };
    }
    drop(status_w);
    let mut msg = String::new();
    let _ = fs::File::from(status_r).read_to_string(&mut msg);
    if let Some((code, message)) = msg.split_once(' ') {
        return Err(fail(code.parse().unwrap_or(126), message));
    }
    // The program runs: let the monitor know by closing what is left of its start pipe.
    for fd in 3..1024 {
        unsafe { libc::close(fd) };
    }
    loop {
        let sig = match mask.wait() {
            Ok(s) => s,
            Err(_) => continue,
        };
        if sig == Signal::SIGCHLD {
            loop {
                let mut status = 0;
                let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
                if pid <= 0 {
                    break;
                }
                if pid == child {
                    let code = if libc::WIFEXITED(status) {
                        libc::WEXITSTATUS(status)
                    } else {
                        128 + libc::WTERMSIG(status)
                    };
                    unsafe { libc::_exit(code) };
                }
            }
        } else {
            unsafe { libc::kill(child, sig as i32) };
        }
    }
}
