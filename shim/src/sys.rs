//! Kernel calls the shim's crates do not wrap, each with the fallback an older kernel needs:
//! descriptors closed before exec, mount attributes, mounts made from descriptors, processes
//! named by pidfd, and this executable sealed against writes.

use std::ffi::CString;
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;

/// Start time of a process in clock ticks since boot (field 22 of `/proc/PID/stat`); with the
/// PID it names one process across PID reuse. 0 when the process is gone.
pub fn process_start_time(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rfind(')')
        .and_then(|i| stat.get(i + 2..))
        .and_then(|rest| rest.split(' ').nth(19))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn cvt(rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Every signal back to its default action before the container's program runs. An ignored
/// signal stays ignored across execve: without this a container would inherit what its
/// engine ignores (SIGPIPE, which the Rust runtime ignores in every process, and SIGHUP under
/// `nohup`), so `yes | head -1` would never end by SIGPIPE and a shell's `trap` on SIGHUP
/// would do nothing, as POSIX has it for a signal ignored at the shell's start. The system
/// call itself, as the C library refuses the two real-time signals it keeps for itself.
pub fn default_signals() {
    // A kernel `struct sigaction` all zero: SIG_DFL, no flags, no restorer, an empty mask.
    let act = [0u64; 4];
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: `act` outlives the call and is larger than the kernel's struct; no old
        // action is asked for; the set is the kernel's 8 bytes.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                act.as_ptr(),
                std::ptr::null_mut::<u64>(),
                8usize,
            )
        };
    }
}

/// Closes (or with `cloexec`, marks close-on-exec) every descriptor from `from` up: whatever
/// the starter held without close-on-exec (a directory of the host, a socket) must not reach
/// a container. `close_range` where the kernel has it (5.9, 5.11 for the flag), else each open
/// descriptor as `/proc/self/fd` lists it.
pub fn close_from(from: RawFd, cloexec: bool) {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    let flags = if cloexec { CLOSE_RANGE_CLOEXEC } else { 0 };
    // SAFETY: close_range takes plain integers; this process needs nothing from `from` up.
    if unsafe { libc::syscall(libc::SYS_close_range, from as u32, u32::MAX, flags) } == 0 {
        return;
    }
    let open: Vec<RawFd> = fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_else(|_| (from..4096).collect());
    for fd in open.into_iter().filter(|fd| *fd >= from) {
        // SAFETY: as above; a descriptor that is not open makes the call fail harmlessly.
        unsafe {
            if cloexec {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            } else {
                libc::close(fd);
            }
        }
    }
}

/// Mount attributes of `mount_setattr(2)`.
pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x8;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Adds `attrs` to the mount `fd` names (its root), and with `recursive` to every mount
/// below it, keeping every flag it already has: a read-only bind of a `nosuid,nodev,noexec`
/// mount stays all four, and a submount under a read-only volume is read-only too, as with
/// Docker 25+. `mount_setattr` (5.12) where the kernel has it, else a remount of each mount
/// with its current flags added.
pub fn add_mount_attrs(fd: BorrowedFd<'_>, attrs: u64, recursive: bool) -> io::Result<()> {
    match mount_setattr(fd, attrs, recursive) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => remount_with(fd, attrs, recursive),
        r => r,
    }
}

fn mount_setattr(fd: BorrowedFd<'_>, attrs: u64, recursive: bool) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: attrs,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let flags = libc::AT_EMPTY_PATH | if recursive { libc::AT_RECURSIVE } else { 0 };
    // SAFETY: the struct is mount_attr's layout and lives through the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    cvt(rc).map(drop)
}

/// [`add_mount_attrs`] by remounting: each mount keeps the flags `statvfs` reports (a
/// remount that drops a locked flag is refused, one that drops an unlocked flag loses it).
fn remount_with(fd: BorrowedFd<'_>, attrs: u64, recursive: bool) -> io::Result<()> {
    let top = fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
    let mut targets = vec![top.clone()];
    if recursive {
        // This thread's: a thread may have a mount namespace of its own (/proc/self is the
        // process's first thread).
        let info = fs::read_to_string("/proc/thread-self/mountinfo")?;
        for line in info.lines() {
            let Some(point) = line.split(' ').nth(4) else {
                continue;
            };
            let point = std::path::PathBuf::from(unescape_mountinfo(point));
            if point != top && point.starts_with(&top) {
                targets.push(point);
            }
        }
    }
    for t in targets {
        let c = std::ffi::CString::new(t.as_os_str().as_encoded_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: statvfs fills the struct it is given.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut flags = libc::MS_BIND | libc::MS_REMOUNT;
        for (st_flag, ms) in [
            (libc::ST_RDONLY, libc::MS_RDONLY),
            (libc::ST_NOSUID, libc::MS_NOSUID),
            (libc::ST_NODEV, libc::MS_NODEV),
            (libc::ST_NOEXEC, libc::MS_NOEXEC),
            (libc::ST_NOATIME, libc::MS_NOATIME),
            (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
            (libc::ST_RELATIME, libc::MS_RELATIME),
        ] {
            if st.f_flag & st_flag != 0 {
                flags |= ms;
            }
        }
        for (attr, ms) in [
            (MOUNT_ATTR_RDONLY, libc::MS_RDONLY),
            (MOUNT_ATTR_NOSUID, libc::MS_NOSUID),
            (MOUNT_ATTR_NODEV, libc::MS_NODEV),
            (MOUNT_ATTR_NOEXEC, libc::MS_NOEXEC),
        ] {
            if attrs & attr != 0 {
                flags |= ms;
            }
        }
        // SAFETY: a remount of an existing mount point with plain flags.
        let rc = unsafe {
            libc::mount(
                std::ptr::null(),
                c.as_ptr(),
                std::ptr::null(),
                flags,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The mount a path lies on, as mountinfo lists it: its mount point and whether it shares
/// mount events with a peer group (`shared:N`) or receives them from one (`master:N`).
#[derive(Debug, PartialEq, Eq)]
pub struct MountOf {
    pub point: std::path::PathBuf,
    pub shared: bool,
    pub slave: bool,
}

/// The mount `path` (absolute, without links) lies on in `mountinfo`: the one whose mount
/// point is the longest leading part of it, the last listed (the top one) of those on the
/// same point.
pub fn mount_of(path: &Path, mountinfo: &str) -> Option<MountOf> {
    let mut best: Option<MountOf> = None;
    for line in mountinfo.lines() {
        let (head, _) = line.split_once(" - ").unwrap_or((line, ""));
        let fields: Vec<&str> = head.split(' ').collect();
        let Some(point) = fields.get(4) else {
            continue;
        };
        let point = std::path::PathBuf::from(unescape_mountinfo(point));
        if !path.starts_with(&point)
            || best
                .as_ref()
                .is_some_and(|b| b.point.components().count() > point.components().count())
        {
            continue;
        }
        let optional = fields.get(6..).unwrap_or_default();
        best = Some(MountOf {
            point,
            shared: optional.iter().any(|f| f.starts_with("shared:")),
            slave: optional.iter().any(|f| f.starts_with("master:")),
        });
    }
    best
}

/// Mount points in mountinfo escape space, tab, newline and backslash as octal.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        if b[i] == b'\\'
            && let Some(d) = octal
        {
            let v =
                u32::from(d[0] - b'0') * 64 + u32::from(d[1] - b'0') * 8 + u32::from(d[2] - b'0');
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Bind-mounts what `src` names onto what `dst` names, both descriptors: nothing is looked up
/// by path, so a link swapped in between cannot redirect the mount. The new mount API
/// (`open_tree`, `move_mount`, 5.2) where the kernel has it, else `/proc/self/fd` names.
pub fn bind_fd(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, recursive: bool) -> io::Result<()> {
    use rustix::mount::{MoveMountFlags, OpenTreeFlags};
    let mut flags = OpenTreeFlags::OPEN_TREE_CLONE
        | OpenTreeFlags::OPEN_TREE_CLOEXEC
        | OpenTreeFlags::AT_EMPTY_PATH;
    if recursive {
        flags |= OpenTreeFlags::AT_RECURSIVE;
    }
    match rustix::mount::open_tree(src, c"", flags) {
        Ok(tree) => Ok(rustix::mount::move_mount(
            tree.as_fd(),
            c"",
            dst,
            c"",
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
        )?),
        Err(rustix::io::Errno::NOSYS) => {
            let s = format!("/proc/self/fd/{}", src.as_raw_fd());
            let d = format!("/proc/self/fd/{}", dst.as_raw_fd());
            let mut ms = nix::mount::MsFlags::MS_BIND;
            if recursive {
                ms |= nix::mount::MsFlags::MS_REC;
            }
            nix::mount::mount(Some(s.as_str()), d.as_str(), None::<&str>, ms, None::<&str>)
                .map_err(io::Error::from)
        }
        Err(e) => Err(e.into()),
    }
}

/// Attaches a detached mount (`open_tree` with `OPEN_TREE_CLONE`) onto the directory
/// `point` names, by descriptor.
pub fn attach(tree: BorrowedFd<'_>, point: BorrowedFd<'_>) -> io::Result<()> {
    use rustix::mount::MoveMountFlags;
    Ok(rustix::mount::move_mount(
        tree,
        c"",
        point,
        c"",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )?)
}

/// The container whose IPC namespace another joins (`--ipc container:X`), and whose
/// /dev/shm it shares as Docker shares it: X's mount namespace and root, opened once by the
/// monitor from X's process as it checked it.
pub struct ShmDonor {
    mntns: OwnedFd,
    root: OwnedFd,
}

impl ShmDonor {
    /// Opens the mount namespace and root of container process `pid`, which `pidfd` names.
    pub fn open(pid: i32, pidfd: BorrowedFd<'_>) -> Result<Self, String> {
        let mntns = File::open(format!("/proc/{pid}/ns/mnt"))
            .map_err(|e| format!("open its mount namespace: {e}"))?;
        let root = container_root(pid, pidfd)?;
        Ok(ShmDonor {
            mntns: mntns.into(),
            root,
        })
    }

    /// A detached clone of the donor's /dev/shm mount, for this process to attach in its
    /// own mount namespace. The kernel clones a mount only from the caller's namespace, so
    /// this process enters the donor's for the clone and goes back to its own, root and
    /// working directory as they were. The donor's files are hostile: `/dev/shm` is
    /// resolved in the donor's root without following any link, and must be a mount's root
    /// (its tmpfs, or the host's /dev/shm where the donor shares the host's IPC
    /// namespace), never a directory of its root file system; mounts inside it stay out.
    /// The process must be single-threaded (`setns` of a mount namespace).
    pub fn clone_shm(&self) -> io::Result<OwnedFd> {
        use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags, StatxAttributes, StatxFlags};
        use rustix::mount::OpenTreeFlags;
        let here = |p: &str| -> io::Result<OwnedFd> {
            Ok(rustix::fs::open(
                p,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )?)
        };
        let own = File::open("/proc/thread-self/ns/mnt")?;
        let (root, cwd) = (here("/")?, here(".")?);
        nix::sched::setns(&self.mntns, nix::sched::CloneFlags::CLONE_NEWNS)?;
        let tree = (|| -> io::Result<OwnedFd> {
            let shm = rustix::fs::openat2(
                &self.root,
                "dev/shm",
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::IN_ROOT | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
            )
            .map_err(|e| io::Error::other(format!("open its /dev/shm: {e}")))?;
            let st = rustix::fs::statx(&shm, c"", AtFlags::EMPTY_PATH, StatxFlags::TYPE)?;
            if !st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT)
                && st.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT)
            {
                return Err(io::Error::other("its /dev/shm is not a mount of its own"));
            }
            Ok(rustix::mount::open_tree(
                &shm,
                c"",
                OpenTreeFlags::OPEN_TREE_CLONE
                    | OpenTreeFlags::OPEN_TREE_CLOEXEC
                    | OpenTreeFlags::AT_EMPTY_PATH,
            )?)
        })();
        // Back, whatever came of it; a process that cannot must not go on in the donor's.
        nix::sched::setns(&own, nix::sched::CloneFlags::CLONE_NEWNS)?;
        rustix::process::fchdir(&root)?;
        rustix::process::chroot(".")?;
        rustix::process::fchdir(&cwd)?;
        tree
    }
}

/// Forks like `clone(2)` without a new stack, making the namespaces in `flags`; with
/// `cgroup` (a v2 group, opened as a directory) the kernel puts the child there as it makes
/// it (`clone3` with CLONE_INTO_CGROUP, 5.7). That replaces a later move through
/// `cgroup.procs`, which takes the global threadgroup lock for writing and waits out an RCU
/// grace period: 10-20 ms a start. Returns the child's PID (0 in the child), and whether it
/// is in `cgroup` already (false: the kernel could not, the child must move itself).
///
/// # Safety
/// As `fork`: the calling process must be single-threaded, the child runs on a copy of it.
pub unsafe fn fork_into(flags: u64, cgroup: Option<BorrowedFd<'_>>) -> io::Result<(i32, bool)> {
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    #[repr(C)]
    #[derive(Default)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    if let Some(cg) = cgroup {
        let args = CloneArgs {
            flags: flags | CLONE_INTO_CGROUP,
            exit_signal: libc::SIGCHLD as u64,
            cgroup: cg.as_raw_fd() as u64,
            ..Default::default()
        };
        // SAFETY: the caller is single-threaded; the struct lives through the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                &args as *const CloneArgs,
                std::mem::size_of::<CloneArgs>(),
            )
        };
        match cvt(rc) {
            Ok(pid) => return Ok((pid as i32, true)),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOSYS | libc::EINVAL | libc::E2BIG)
                ) => {}
            Err(e) => return Err(e),
        }
    }
    // SAFETY: as above.
    let rc = unsafe { libc::syscall(libc::SYS_clone, flags | libc::SIGCHLD as u64, 0, 0, 0, 0) };
    cvt(rc).map(|pid| (pid as i32, false))
}

/// A handle on the process `pid` that started at `start` (clock ticks since boot) and sits in
/// the cgroup of container `owner`. The pidfd is taken first and checked after, so a PID
/// reused since it was recorded is refused rather than acted on: a pidfd names one process for
/// good. The start time alone is not enough: ticks are 10 ms, and a process started in the
/// same tick on a reused PID has the same one. A reused PID is in no container's cgroup, or in
/// another's, so both must hold.
pub fn pidfd_of(pid: i32, start: u64, owner: &str) -> io::Result<OwnedFd> {
    let gone = || {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("process {pid} is not the one recorded (it ended)"),
        )
    };
    // A PID of 0 or less names no one process (rustix asserts against negative ones): a
    // state record that says so is a process gone, not a panic.
    let p = (pid > 0)
        .then(|| rustix::process::Pid::from_raw(pid))
        .flatten()
        .ok_or_else(gone)?;
    let fd =
        rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).map_err(|_| gone())?;
    if start == 0 || process_start_time(pid as u32) != start {
        return Err(gone());
    }
    let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup")).map_err(|_| gone())?;
    if !in_cgroup_of(&cgroups, owner) {
        return Err(gone());
    }
    Ok(fd)
}

/// Whether a `/proc/PID/cgroup` text places the process in a cgroup named `owner`.
fn in_cgroup_of(cgroups: &str, owner: &str) -> bool {
    !owner.is_empty()
        && !owner.contains('/')
        && cgroups.lines().any(|l| {
            l.splitn(3, ':')
                .nth(2)
                .is_some_and(|path| path.split('/').any(|c| c == owner))
        })
}

/// Execs the executable `exe` (a descriptor: `sealed_self`'s) with `argv` and `env`. Returns
/// only on failure.
pub fn exec_fd(exe: BorrowedFd<'_>, argv: &[CString], env: &[CString]) -> io::Error {
    let argv_p: Vec<*const libc::c_char> = argv
        .iter()
        .map(|a| a.as_ptr())
        .chain([std::ptr::null()])
        .collect();
    let env_p: Vec<*const libc::c_char> = env
        .iter()
        .map(|a| a.as_ptr())
        .chain([std::ptr::null()])
        .collect();
    // SAFETY: both arrays are NUL-terminated and outlive the call.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            exe.as_raw_fd(),
            c"".as_ptr(),
            argv_p.as_ptr(),
            env_p.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    io::Error::last_os_error()
}

/// The report pipe the engine hands over as fd 3, made close-on-exec; `None` where fd 3 is
/// not open (the helper run by hand), so nothing else is ever closed in its name.
pub fn report_fd() -> Option<fs::File> {
    use std::os::fd::FromRawFd;
    // SAFETY: flags of a descriptor number; nothing is taken unless it is open.
    if unsafe { libc::fcntl(3, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
        return None;
    }
    // SAFETY: fd 3 is open and handed to this process to own.
    Some(unsafe { fs::File::from_raw_fd(3) })
}

/// The root directory of the container's process `pid` (which `pidfd` names), opened before
/// its mount namespace is joined, for [`enter_root`] after.
///
/// Joining a mount namespace sets the caller's root to the namespace's root mount. That is
/// the container's root only where its setup's `pivot_root` replaced the namespace's root:
/// an engine running in a chroot (a build sandbox, say) has a root below the namespace's,
/// its pivot replaces that, and the namespace's root stays the host's. The process's own
/// root is the container's in every case.
pub fn container_root(pid: i32, pidfd: BorrowedFd<'_>) -> Result<OwnedFd, String> {
    let root = rustix::fs::open(
        format!("/proc/{pid}/root"),
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| format!("open the root of container process {pid}: {e}"))?;
    // Opened while the process the pidfd names was alive: the PID was still its own.
    if !pidfd_alive(pidfd) {
        return Err(format!("container process {pid} ended"));
    }
    Ok(root)
}

/// Makes `root` (from [`container_root`], the mount namespace joined since) this process's
/// root and working directory.
pub fn enter_root(root: OwnedFd) -> Result<(), String> {
    rustix::process::fchdir(&root).map_err(|e| format!("enter the container's root: {e}"))?;
    rustix::process::chroot(".").map_err(|e| format!("enter the container's root: {e}"))?;
    drop(root);
    rustix::process::chdir("/").map_err(|e| format!("chdir /: {e}"))
}

/// Whether the process behind a pidfd still runs.
pub fn pidfd_alive(fd: BorrowedFd<'_>) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::syscall(libc::SYS_pidfd_send_signal, fd.as_raw_fd(), 0, 0usize, 0) == 0 }
}

/// The namespaces of a container's process that another process joins to run in it (exec),
/// by their names in `/proc/PID/ns`. The mount namespace comes last: entering it changes
/// the root, and with it where `/proc` is.
pub const NAMESPACES: [(&str, nix::sched::CloneFlags); 6] = [
    ("cgroup", nix::sched::CloneFlags::CLONE_NEWCGROUP),
    ("ipc", nix::sched::CloneFlags::CLONE_NEWIPC),
    ("uts", nix::sched::CloneFlags::CLONE_NEWUTS),
    ("net", nix::sched::CloneFlags::CLONE_NEWNET),
    ("pid", nix::sched::CloneFlags::CLONE_NEWPID),
    ("mnt", nix::sched::CloneFlags::CLONE_NEWNS),
];

/// Enters the namespaces `which` of process `pid` the way kernels before 5.8 allow (no
/// `setns` by pidfd): each namespace file is opened from `/proc/PID/ns`, the process is
/// checked alive through its pidfd afterwards (so the files were its own, not those of a
/// process that took its PID since), and then each is entered.
pub fn join_by_files(
    pidfd: BorrowedFd<'_>,
    pid: i32,
    which: &[(&str, nix::sched::CloneFlags)],
) -> Result<(), String> {
    let mut files = Vec::new();
    for (name, flag) in which {
        let f = File::open(format!("/proc/{pid}/ns/{name}"))
            .map_err(|e| format!("open the container's {name} namespace: {e}"))?;
        files.push((name, *flag, f));
    }
    if !pidfd_alive(pidfd) {
        return Err(format!("container process {pid} ended"));
    }
    for (name, flag, f) in files {
        nix::sched::setns(f.as_fd(), flag)
            .map_err(|e| format!("enter the container's {name} namespace: {e}"))?;
    }
    Ok(())
}

/// This executable as a process inside a container may run it (`--init`'s PID 1): through
/// a read-only mount of its own, so that `/proc/PID/exe`, reopened for writing, is refused
/// (EROFS) and cannot overwrite the host's `ketch-shim` (CVE-2019-5736). The mount is a
/// detached clone of the executable's file, in no namespace and costing no memory; where the
/// kernel lacks the new mount API (`open_tree` 5.2, `mount_setattr` 5.12), a sealed copy in
/// memory instead.
pub fn sealed_self() -> io::Result<OwnedFd> {
    use rustix::mount::OpenTreeFlags;
    let tree = rustix::mount::open_tree(
        rustix::fs::CWD,
        c"/proc/self/exe",
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    );
    match tree {
        Ok(tree) => match mount_setattr(tree.as_fd(), MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, false)
        {
            Ok(()) => return Ok(tree),
            Err(e) if e.raw_os_error() != Some(libc::ENOSYS) => return Err(e),
            // A remount cannot reach a detached mount: the copy below.
            Err(_) => {}
        },
        Err(rustix::io::Errno::NOSYS) => {}
        Err(e) => return Err(e.into()),
    }
    sealed_self_copy()
}

/// A copy of this executable in a sealed memory file: `/proc/PID/exe` leads to memory that
/// cannot be written. It costs the executable's size per container, hence the last resort.
fn sealed_self_copy() -> io::Result<OwnedFd> {
    use rustix::fs::{MemfdFlags, SealFlags};
    let exe = File::open("/proc/self/exe")?;
    let base = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
    // MFD_EXEC (6.3) says so where the host forbids executable memory files by default.
    let mfd = match rustix::fs::memfd_create("ketch-init", base | MemfdFlags::EXEC) {
        Err(rustix::io::Errno::INVAL) => rustix::fs::memfd_create("ketch-init", base)?,
        r => r?,
    };
    let mut out = File::from(mfd);
    // The standard library's copy between files uses copy_file_range(2) where the two file
    // systems allow it, and reads and writes where not (a memory file is on neither's).
    io::copy(&mut &exe, &mut out)?;
    let mfd = OwnedFd::from(out);
    rustix::fs::fcntl_add_seals(
        &mfd,
        SealFlags::SEAL | SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE,
    )?;
    Ok(mfd)
}

/// Loads a seccomp filter into this thread. With CAP_SYS_ADMIN, which the helper holds until
/// it takes the container's identity, the kernel needs no `no_new_privs`: setuid programs in
/// the container keep working unless `--security-opt no-new-privileges` asks otherwise.
/// Without it (a helper run without privileges) the filter is loaded under `no_new_privs`,
/// which the kernel requires then.
pub fn load_seccomp(filter: &[libc::sock_filter], flags: u32) -> io::Result<()> {
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    let load = || {
        // SAFETY: the program points at `filter`, alive through the call.
        cvt(unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                flags,
                &prog as *const libc::sock_fprog,
            )
        })
    };
    match load() {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => {
            // SAFETY: a process-wide flag with no pointers.
            unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
            load().map(|_| ())
        }
        Err(e) => Err(e),
    }
}

/// A name no other test uses at once: random, for test runs in sandboxes of their own have
/// the same PIDs and share the host's cgroups and a temporary directory.
#[cfg(test)]
pub(crate) fn unique_name(prefix: &str) -> String {
    let mut b = [0u8; 8];
    std::io::Read::read_exact(&mut File::open("/dev/urandom").unwrap(), &mut b).unwrap();
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{prefix}-{hex}")
}

/// Runs `f` on a thread with a private mount namespace of its own: what it mounts is gone
/// with the thread.
#[cfg(test)]
pub(crate) fn in_own_mountns<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: unshare(2) of this thread's mount namespace only.
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNS) }, 0);
            nix::mount::mount(
                None::<&str>,
                "/",
                None::<&str>,
                nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .unwrap();
            f()
        })
        .join()
        .unwrap()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pidfd(pid: i32) -> OwnedFd {
        let p = rustix::process::Pid::from_raw(pid).unwrap();
        rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).unwrap()
    }

    /// The way to a container's namespaces before Linux 5.8: a process in namespaces of
    /// its own is joined in each; a pidfd whose process has ended is refused though its PID
    /// names a live process (one that took the PID since), and nothing is entered.
    #[test]
    fn namespaces_are_joined_by_their_files_while_the_process_lives() {
        let which = NAMESPACES;
        let mut target = std::process::Command::new("unshare")
            .args([
                "--uts", "--ipc", "--net", "--cgroup", "--mount", "sleep", "60",
            ])
            .spawn()
            .unwrap();
        let pid = target.id() as i32;
        // unshare(1) makes them all at once, then execs sleep.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while fs::read_to_string(format!("/proc/{pid}/comm")).unwrap() != "sleep\n" {
            assert!(
                std::time::Instant::now() < deadline,
                "unshare never ran sleep"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let ns = |p: &str, n: &str| fs::read_link(format!("/proc/{p}/ns/{n}")).unwrap();
        let theirs: Vec<_> = which.iter().map(|(n, _)| ns(&pid.to_string(), n)).collect();
        assert_ne!(ns("self", "uts"), ns(&pid.to_string(), "uts"));
        let fd = pidfd(pid);
        // A process of one thread may enter a mount namespace: a child of this one.
        // SAFETY: the child makes system calls and leaves with _exit.
        let child = unsafe { libc::fork() };
        if child == 0 {
            let code = match join_by_files(fd.as_fd(), pid, &which) {
                Ok(()) => {
                    let ours: Vec<_> = which.iter().map(|(n, _)| ns("self", n)).collect();
                    if ours == theirs { 0 } else { 1 }
                }
                Err(_) => 2,
            };
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        unsafe { libc::waitpid(child, &mut status, 0) };
        target.kill().unwrap();
        target.wait().unwrap();
        assert_eq!(libc::WEXITSTATUS(status), 0, "status {status:#x}");
        // Ended: its pidfd says so, though its PID (here this process's own) names one alive.
        let err = join_by_files(fd.as_fd(), std::process::id() as i32, &which[2..3]);
        assert_eq!(
            err.unwrap_err(),
            format!("container process {} ended", std::process::id())
        );
        let err = join_by_files(fd.as_fd(), pid, &which[2..3]).unwrap_err();
        assert!(
            err.starts_with("open the container's uts namespace"),
            "{err}"
        );
    }

    #[test]
    fn the_mount_of_a_path_is_the_longest_and_topmost_mount_point_above_it() {
        let info = "\
21 1 0:1 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 21 0:2 / /srv rw - tmpfs t rw
31 21 0:3 / /srv/a\\040b rw shared:7 master:3 - tmpfs t rw
32 30 0:4 / /srv/x rw master:9 - tmpfs t rw
33 30 0:5 / /srv/x rw shared:12 - tmpfs t rw
34 21 0:6 / /srvx rw - tmpfs t rw
";
        let of = |p: &str| mount_of(Path::new(p), info).unwrap();
        let m = |point: &str, shared, slave| MountOf {
            point: point.into(),
            shared,
            slave,
        };
        assert_eq!(of("/"), m("/", true, false));
        assert_eq!(of("/etc/passwd"), m("/", true, false));
        assert_eq!(of("/srv"), m("/srv", false, false));
        assert_eq!(of("/srv/b/c"), m("/srv", false, false));
        assert_eq!(of("/srv/a b/c"), m("/srv/a b", true, true));
        assert_eq!(of("/srv/x/y"), m("/srv/x", true, false));
        assert_eq!(of("/srvx/y"), m("/srvx", false, false));
        assert_eq!(mount_of(Path::new("/srv"), "garbage\n"), None);
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo("/end\\"), "/end\\");
        assert_eq!(
            unescape_mountinfo("\\134x\\011\\012\\040\\040y"),
            "\\x\t\n  y"
        );
        // Not three octal digits: kept as written.
        assert_eq!(unescape_mountinfo("/a\\04"), "/a\\04");
        assert_eq!(unescape_mountinfo("/a\\048/b"), "/a\\048/b");
        assert_eq!(unescape_mountinfo("/a\\9001"), "/a\\9001");
        assert_eq!(unescape_mountinfo("\\101\\102C"), "ABC");
    }

    #[test]
    fn cgroup_owner() {
        let v1 = "12:devices:/ketch/abc\n11:memory:/ketch/abc\n0::/ketch/abc\n";
        assert!(in_cgroup_of(v1, "abc"));
        assert!(!in_cgroup_of(v1, "ab"));
        assert!(!in_cgroup_of(v1, ""));
        assert!(!in_cgroup_of(v1, "ketch/abc"));
        assert!(!in_cgroup_of("0::/user.slice/sleep\n", "abc"));
        // A process of this test is in no container's cgroup.
        let me = std::process::id() as i32;
        let start = process_start_time(me as u32);
        assert!(pidfd_of(me, start, "no-such-container").is_err());
        assert!(pidfd_of(me, 0, "").is_err());
    }

    /// The copy an older kernel gets instead of a read-only mount: this executable, byte for
    /// byte, in memory that can be neither written nor resized.
    #[test]
    fn the_sealed_copy_is_this_executable_and_stays_so() {
        use std::io::{Read, Seek, Write};
        let fd = sealed_self_copy().unwrap();
        let seals = rustix::fs::fcntl_get_seals(&fd).unwrap();
        assert!(
            seals.contains(
                rustix::fs::SealFlags::SEAL
                    | rustix::fs::SealFlags::WRITE
                    | rustix::fs::SealFlags::GROW
                    | rustix::fs::SealFlags::SHRINK
            ),
            "{seals:?}"
        );
        let mut f = File::from(fd);
        let mut copy = Vec::new();
        f.rewind().unwrap();
        f.read_to_end(&mut copy).unwrap();
        let exe = fs::read("/proc/self/exe").unwrap();
        // Not assert_eq!: a failure would print both executables.
        assert!(copy == exe, "{} bytes copied of {}", copy.len(), exe.len());
        f.rewind().unwrap();
        assert_eq!(f.write(b"x").unwrap_err().raw_os_error(), Some(libc::EPERM));
        assert!(f.set_len(1).is_err());
        // What this kernel gives: a mount of its own, read-only and nosuid.
        let sealed = sealed_self().unwrap();
        let flags = nix::sys::statvfs::fstatvfs(&sealed).unwrap().flags().bits();
        assert_eq!(
            flags & (libc::ST_RDONLY | libc::ST_NOSUID),
            libc::ST_RDONLY | libc::ST_NOSUID
        );
        assert!(rustix::fs::fcntl_get_seals(&sealed).is_err());
    }

    fn flags_of(p: &std::path::Path) -> libc::c_ulong {
        nix::sys::statvfs::statvfs(p).unwrap().flags().bits()
    }

    /// Both ways of adding attributes (mount_setattr, and the remount an older kernel gets)
    /// add them to the mount, and with `recursive` to those below, keeping what each had.
    #[test]
    fn mount_attributes_are_added_and_kept_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        for remount in [false, true] {
            let seen = in_own_mountns(|| {
                let mut seen = Vec::new();
                for recursive in [false, true] {
                    let top = dir.path().join(format!("top-{recursive}"));
                    let sub = top.join("sub");
                    fs::create_dir_all(&top).unwrap();
                    nix::mount::mount(
                        Some("tmpfs"),
                        &top,
                        Some("tmpfs"),
                        nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NOATIME,
                        Some("size=64k"),
                    )
                    .unwrap();
                    fs::create_dir(&sub).unwrap();
                    nix::mount::mount(
                        Some("tmpfs"),
                        &sub,
                        Some("tmpfs"),
                        nix::mount::MsFlags::MS_NODEV,
                        Some("size=64k"),
                    )
                    .unwrap();
                    let fd = rustix::fs::open(
                        &top,
                        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY,
                        rustix::fs::Mode::empty(),
                    )
                    .unwrap();
                    let attrs = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOEXEC;
                    if remount {
                        remount_with(fd.as_fd(), attrs, recursive).unwrap();
                    } else {
                        add_mount_attrs(fd.as_fd(), attrs, recursive).unwrap();
                    }
                    seen.push((flags_of(&top), flags_of(&sub)));
                }
                seen
            });
            let (rdonly, noexec, nosuid, nodev, noatime) = (
                libc::ST_RDONLY,
                libc::ST_NOEXEC,
                libc::ST_NOSUID,
                libc::ST_NODEV,
                libc::ST_NOATIME,
            );
            let mask = rdonly | noexec | nosuid | nodev | noatime;
            let top = rdonly | noexec | nosuid | noatime;
            assert_eq!(
                seen.iter()
                    .map(|(t, s)| (t & mask, s & mask))
                    .collect::<Vec<_>>(),
                [(top, nodev), (top, nodev | rdonly | noexec)],
                "remount: {remount}"
            );
        }
    }

    /// A child in a cgroup of its own, named like a container's; killed, reaped and its
    /// group removed on drop.
    struct Contained {
        child: std::process::Child,
        group: std::path::PathBuf,
    }

    impl Contained {
        fn new() -> Contained {
            let name = unique_name("ketch-unit");
            let group = ["/sys/fs/cgroup/pids", "/sys/fs/cgroup"]
                .iter()
                .map(std::path::Path::new)
                .find(|h| h.join("cgroup.procs").exists())
                .expect("a cgroup hierarchy (v1 pids, or v2)")
                .join(&name);
            fs::create_dir(&group).unwrap();
            let child = std::process::Command::new("sleep")
                .arg("60")
                .spawn()
                .unwrap();
            let c = Contained { child, group };
            fs::write(c.group.join("cgroup.procs"), c.child.id().to_string()).unwrap();
            c
        }

        fn name(&self) -> String {
            self.group
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        }
    }

    impl Drop for Contained {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = fs::remove_dir(&self.group);
        }
    }

    /// A process is named by PID, start time and container together; a pidfd taken for it
    /// tells when it has ended.
    #[test]
    fn a_container_process_is_its_pid_its_start_and_its_cgroup() {
        let mut c = Contained::new();
        let pid = c.child.id() as i32;
        let start = process_start_time(pid as u32);
        assert!(start > 0);
        assert_eq!(start, process_start_time(pid as u32));
        let fd = pidfd_of(pid, start, &c.name()).unwrap();
        assert!(pidfd_alive(fd.as_fd()));
        let root = container_root(pid, fd.as_fd()).unwrap();
        assert_eq!(
            rustix::fs::fstat(&root).unwrap().st_ino,
            rustix::fs::stat("/").unwrap().st_ino
        );
        for (start, owner) in [
            (start + 1, c.name()),
            (0, c.name()),
            (start, "ketch-unit".to_string()),
            (start, String::new()),
            (start, format!("pids/{}", c.name())),
        ] {
            let err = pidfd_of(pid, start, &owner).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::NotFound, "{start} {owner:?}");
        }
        assert!(pidfd_of(-1, start, &c.name()).is_err());
        c.child.kill().unwrap();
        c.child.wait().unwrap();
        assert!(!pidfd_alive(fd.as_fd()));
        assert!(container_root(pid, fd.as_fd()).is_err());
        assert_eq!(process_start_time(pid as u32), 0);
        assert!(pidfd_of(pid, start, &c.name()).is_err());
    }
}
