//! The last steps before the user's program, shared by a container's first process and by
//! `exec`: limits, identity, capabilities and the seccomp filter, then `execve` with nothing
//! of the helper's left open. Runs inside the container (its root and namespaces).

use std::ffi::CString;
use std::fs;
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::unistd::chdir;

use crate::init::{StartError, cstr, ctx, fail};
use crate::spec::Spec;

/// Which process is being launched.
pub enum Launch<'a> {
    /// The container's first process. `monitor` is a pipe the monitor holds open until the
    /// process runs: once the parent-death signal is armed for the last time, a closed pipe
    /// means the monitor died before, and the process must not run on without it. With
    /// `reaper` (`--init`, in the sealed executable) this process stays as PID 1 and runs the
    /// program as its child.
    First {
        monitor: BorrowedFd<'a>,
        reaper: bool,
    },
    /// A process `exec` adds to a running container.
    Exec,
}

pub enum Never {}

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
#[cfg_attr(test, derive(Debug, PartialEq))]
struct Identity {
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
    home: String,
}

/// Resolves `user[:group]` (names or numbers) against the container's files, read after the
/// root switch, as Docker does.
fn resolve_user(spec: &Spec, spec_user: &str) -> Result<Identity, StartError> {
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = fs::read_to_string("/etc/group").unwrap_or_default();
    let mut id = identity(&spec.process.user, spec_user, &passwd, &group)?;
    if let Some(extra) = spec.annotations.get("io.ketch.groups") {
        for g in extra.split(',').filter(|g| !g.is_empty()) {
            let gid = group_id(g, &group)?;
            if !id.groups.contains(&gid) {
                id.groups.push(gid);
            }
        }
    }
    Ok(id)
}

/// `--group-add`: a number, or a name in the container's /etc/group.
fn group_id(g: &str, group: &str) -> Result<u32, StartError> {
    if let Ok(n) = g.parse::<u32>() {
        return Ok(n);
    }
    group
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 3 && f[0] == g)
        .and_then(|f| f[2].parse().ok())
        .ok_or_else(|| {
            fail(
                126,
                format!("unable to find group {g}: no matching entries in group file"),
            )
        })
}

/// Who `USER[:GROUP]` (names or numbers) is, by the root's passwd and group files: IDs,
/// home, and the groups that list the user.
fn identity(
    u: &crate::spec::User,
    spec_user: &str,
    passwd: &str,
    group: &str,
) -> Result<Identity, StartError> {
    let mut id = Identity {
        uid: u.uid,
        gid: u.gid,
        groups: u.additional_gids.clone(),
        home: "/".into(),
    };
    let (user, grp) = match spec_user.split_once(':') {
        Some((u, g)) => (u.to_string(), Some(g.to_string())),
        None => (spec_user.to_string(), None),
    };
    // As runc reads them: a number names an ID, never an entry whose name is that number;
    // a number no entry has is that ID all the same (the group stays the default).
    let entry = |user: &str| {
        let by_id = user.parse::<u32>().is_ok();
        passwd
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() >= 7 && if by_id { f[2] == user } else { f[0] == user })
    };
    if !user.is_empty() {
        match (entry(&user), user.parse::<u32>()) {
            (Some(f), _) => {
                id.uid = f[2].parse().unwrap_or(0);
                id.gid = f[3].parse().unwrap_or(0);
                id.home = f[5].to_string();
            }
            (None, Ok(n)) => id.uid = n,
            (None, Err(_)) => {
                return Err(fail(
                    126,
                    format!("unable to find user {user}: no matching entries in passwd file"),
                ));
            }
        }
    } else if let Some(f) = entry("0") {
        id.home = f[5].to_string();
    }
    if let Some(g) = grp {
        let by_id = g.parse::<u32>();
        let found = group
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() >= 3 && if by_id.is_ok() { f[2] == g } else { f[0] == g });
        id.gid = match (found, by_id) {
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

/// Finds `prog` on the container's PATH.
pub fn lookup(prog: &str, env: &[String]) -> Result<CString, StartError> {
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

/// Identity, limits, working directory, capabilities, then exec. Returns only on failure.
pub fn launch(
    spec: &Spec,
    args_in: &[String],
    env_in: &[String],
    cwd_in: &str,
    user: &str,
    how: Launch<'_>,
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
    // Docker creates a missing working directory. Made inside the root, refusing magic
    // links: a `/proc/self/fd/N/...` name must not make a directory wherever a descriptor of
    // this (still privileged) process leads.
    if let Ok(root) = rustix::fs::open(
        "/",
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    ) {
        let _ = crate::rootfs::create_in_root(std::os::fd::AsFd::as_fd(&root), cwd, true);
    }
    drop_bounding(spec)?;
    // Loaded while this process still holds CAP_SYS_ADMIN, so the kernel needs no
    // no_new_privs for it; the filter allows what the rest of the setup calls.
    if let Some(profile) = &spec.linux.seccomp {
        crate::seccomp::load(profile).map_err(|e| fail(125, e))?;
    }
    set_user(&identity)?;
    chdir(cwd).map_err(|e| {
        fail(
            126,
            format!("chdir to cwd ({cwd:?}) set in config.json failed: {e}"),
        )
    })?;
    // The working directory must be inside the container's root. A name such as
    // `/proc/self/fd/N` leads wherever a descriptor this process holds leads, and from a
    // directory outside the root `..` climbs to the host's `/` (CVE-2024-21626). The kernel
    // says `(unreachable)` for such a directory.
    if !cwd_in_root() {
        return Err(fail(
            126,
            format!(
                "chdir to cwd ({cwd:?}) set in config.json failed: it is outside the container"
            ),
        ));
    }
    let prog = lookup(first, &env_list)?;
    if spec.process.no_new_privileges {
        // SAFETY: a process flag, no pointers.
        unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    }
    set_capabilities(spec)?;
    let reaper = match how {
        Launch::First { monitor, reaper } => {
            // The change of identity cleared the parent-death signal: armed again, then the
            // monitor checked, so the process never outlives it (it dies with the monitor, or
            // the monitor was already gone and it does not start).
            // SAFETY: a process flag, no pointers.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
            let mut fds = [nix::poll::PollFd::new(
                monitor,
                nix::poll::PollFlags::POLLIN,
            )];
            let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO);
            if fds[0]
                .revents()
                .is_some_and(|r| r.contains(nix::poll::PollFlags::POLLHUP))
            {
                return Err(fail(125, "the container's monitor is gone"));
            }
            reaper
        }
        Launch::Exec => false,
    };
    // Whatever the helper holds or inherited stays behind: only stdio reaches the program,
    // and no signal the engine ignored is ignored by it.
    crate::sys::close_from(3, true);
    crate::sys::default_signals();
    if reaper {
        return Err(crate::initproc::reap(&prog, &args, &env, first));
    }
    Err(exec_error(
        nix::unistd::execve(&prog, &args, &env).unwrap_err(),
        first,
    ))
}

/// Whether this process's working directory is reachable from its root: the raw `getcwd`
/// system call, which names an unreachable directory `(unreachable)...` instead of failing.
/// A name longer than `PATH_MAX` fails (`ENAMETOOLONG`) whether it is reachable or not, so
/// such a directory is refused, as runc refuses it: the buffer is `PATH_MAX` long, and no
/// shorter name is ever cut.
fn cwd_in_root() -> bool {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: the kernel writes at most `buf.len()` bytes.
    let n = unsafe { libc::syscall(libc::SYS_getcwd, buf.as_mut_ptr(), buf.len()) };
    n > 0 && buf[0] == b'/'
}

pub fn exec_error(err: nix::errno::Errno, first: &str) -> StartError {
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

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
app:x:1000:1001:App:/home/app:/bin/sh
short:x:5:5
2000:x:3000:3000::/home/num:/bin/sh
";
    const GROUP: &str = "root:x:0:
wheel:x:10:root,app
staff:x:50:daemon, app,app
app:x:1001:
tools:x:60:app
broken:x:notanumber:app
";

    fn id(user: &str) -> Result<Identity, StartError> {
        let spec = crate::spec::User {
            uid: 0,
            gid: 0,
            additional_gids: vec![7],
        };
        identity(&spec, user, PASSWD, GROUP)
    }

    fn ok(user: &str) -> (u32, u32, Vec<u32>, String) {
        let i = id(user).unwrap();
        (i.uid, i.gid, i.groups, i.home)
    }

    #[test]
    fn users_and_groups_by_name_or_number() {
        // No user: root's home, and the groups that list root.
        assert_eq!(ok(""), (0, 0, vec![7, 10], "/root".into()));
        // " app" is not app; app listed twice counts once; a group without a number is none.
        assert_eq!(
            ok("app"),
            (1000, 1001, vec![7, 10, 50, 60], "/home/app".into())
        );
        assert_eq!(ok("1000"), ok("app"));
        assert_eq!(ok("daemon"), (1, 1, vec![7, 50], "/usr/sbin".into()));
        // A number no entry has: that uid, the default gid, home /.
        assert_eq!(ok("4242"), (4242, 0, vec![7], "/".into()));
        // A number is an ID, never the name of an entry.
        assert_eq!(ok("2000"), (2000, 0, vec![7], "/".into()));
        assert_eq!(ok("3000"), (3000, 3000, vec![7], "/home/num".into()));
        // Groups by name or number, and a number no group has.
        assert_eq!(ok("app:wheel").1, 10);
        assert_eq!(ok("app:50").1, 50);
        assert_eq!(ok("app:777").1, 777);
        assert_eq!(ok(":tools"), (0, 60, vec![7, 10], "/root".into()));
        // An entry with too few fields is no entry.
        assert_eq!(ok("5"), (5, 0, vec![7], "/".into()));
        assert!(id("short").is_err());

        let e = id("nobody").unwrap_err();
        assert_eq!(e.code, 126);
        assert_eq!(
            e.message,
            "unable to find user nobody: no matching entries in passwd file"
        );
        let e = id("app:nogroup").unwrap_err();
        assert_eq!(e.code, 126);
        assert_eq!(
            e.message,
            "unable to find group nogroup: no matching entries in group file"
        );
        // No passwd or group file at all: numbers still work.
        let spec = crate::spec::User::default();
        let i = identity(&spec, "12:34", "", "").unwrap();
        assert_eq!(
            (i.uid, i.gid, i.groups, i.home),
            (12, 34, vec![], "/".into())
        );
    }

    #[test]
    fn rlimits_by_dockers_names() {
        for (name, want) in [
            ("RLIMIT_NOFILE", libc::RLIMIT_NOFILE),
            ("RLIMIT_NPROC", libc::RLIMIT_NPROC),
            ("RLIMIT_CORE", libc::RLIMIT_CORE),
            ("RLIMIT_STACK", libc::RLIMIT_STACK),
            ("RLIMIT_MEMLOCK", libc::RLIMIT_MEMLOCK),
            ("RLIMIT_AS", libc::RLIMIT_AS),
            ("RLIMIT_FSIZE", libc::RLIMIT_FSIZE),
            ("RLIMIT_NICE", libc::RLIMIT_NICE),
            ("RLIMIT_RTPRIO", libc::RLIMIT_RTPRIO),
            ("RLIMIT_MSGQUEUE", libc::RLIMIT_MSGQUEUE),
            ("RLIMIT_SIGPENDING", libc::RLIMIT_SIGPENDING),
        ] {
            assert_eq!(rlimit_resource(name), Some(want), "{name}");
        }
        assert_eq!(rlimit_resource("RLIMIT_BOGUS"), None);
        assert_eq!(rlimit_resource("nofile"), None);
    }

    /// A working directory outside the root (a descriptor of the host's leaked into the
    /// container, CVE-2024-21626) is told from one inside it; one whose name is longer than
    /// `PATH_MAX`, which the kernel cannot say either way, is refused. Run on a thread with
    /// its own root and working directory.
    #[test]
    fn a_working_directory_outside_the_root_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let seen = std::thread::spawn(move || {
            // SAFETY: unshare(2) of this thread's file-system attributes only.
            assert_eq!(unsafe { libc::unshare(libc::CLONE_FS) }, 0);
            std::env::set_current_dir(&outside).unwrap();
            nix::unistd::chroot(&root).unwrap();
            let outside_seen = cwd_in_root();
            std::env::set_current_dir("/").unwrap();
            let inside_seen = cwd_in_root();
            // Deeper than PATH_MAX, made and entered a step at a time: the whole name is too
            // long for one call.
            let step = "a".repeat(200);
            for _ in 0..21 {
                std::fs::create_dir(&step).unwrap();
                std::env::set_current_dir(&step).unwrap();
            }
            (outside_seen, inside_seen, cwd_in_root())
        })
        .join()
        .unwrap();
        assert_eq!(seen, (false, true, false));
        assert!(cwd_in_root());
    }
}
