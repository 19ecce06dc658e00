//! The container's root file system as the helper prepares it, before `pivot_root`, while it
//! still sees the host: every path is resolved inside the root (`openat2` with
//! `RESOLVE_IN_ROOT`), every entry is made with one `*at` call in a directory opened that way,
//! and every mount is made onto a descriptor. A link in the image, however it points, can
//! only lead elsewhere in the image.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::mount::MsFlags;
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::init::{StartError, fail};
use crate::spec::Spec;
use crate::sys;

/// The `/proc/self/fd` name of a descriptor, for the calls that only take paths.
pub fn fd_path(fd: BorrowedFd<'_>) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

fn components(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_string)
        .collect()
}

/// Opens `path` below `root` as `O_PATH` (a directory when `dir`), every symlink resolved as
/// if `root` were `/`.
pub fn open_in_root(root: BorrowedFd<'_>, path: &str, dir: bool) -> io::Result<OwnedFd> {
    let rel = components(path).join("/");
    let rel = if rel.is_empty() { ".".to_string() } else { rel };
    let mut flags = OFlags::PATH | OFlags::CLOEXEC;
    if dir {
        flags |= OFlags::DIRECTORY;
    }
    rustix::fs::openat2(
        root,
        rel.as_str(),
        flags,
        Mode::empty(),
        rustix::fs::ResolveFlags::IN_ROOT | rustix::fs::ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| match e {
        Errno::NOSYS => io::Error::other("the kernel lacks openat2 (Linux 5.6 or later is needed)"),
        e => e.into(),
    })
}

/// Opens `path` below `root`, creating what is missing on the way: directories, and at the
/// end a directory or (`!dir`) an empty file. Each entry is made by one `*at` call in a parent
/// opened inside the root, never by a path the kernel walks from the host's `/`, and a
/// dangling symlink on the way is followed inside the root to create its target there (as
/// runc's `MkdirAll` in the root does): `/etc/hosts -> /tmp/x` in an image makes the root's
/// `/tmp/x`, not the host's.
pub fn create_in_root(root: BorrowedFd<'_>, path: &str, dir: bool) -> io::Result<OwnedFd> {
    let mut parts = components(path);
    // Each round resolves as far as it can and creates or follows one entry; links that
    // keep leading on are cut off as the kernel does (ELOOP).
    for _ in 0..256 {
        match open_in_root(root, &parts.join("/"), false) {
            Ok(fd) => return Ok(fd),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
        // The first component that does not resolve, and the directory it is missing from.
        let mut parent = open_in_root(root, "", true)?;
        let mut i = 0;
        while i < parts.len() {
            match open_in_root(root, &parts[..=i].join("/"), false) {
                Ok(fd) => parent = fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => break,
                Err(e) => return Err(e),
            }
            i += 1;
        }
        if i == parts.len() {
            // It appeared meanwhile: the next round opens it.
            continue;
        }
        let name = parts[i].as_str();
        if name == ".." {
            // `..` of a directory that resolved exists; only a race brings us here.
            continue;
        }
        match rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                // A dangling link: go on with its target, inside the root.
                let target = rustix::fs::readlinkat(&parent, name, Vec::new())?;
                let target = target.to_string_lossy().into_owned();
                let mut next: Vec<String> = if target.starts_with('/') {
                    Vec::new()
                } else {
                    parts[..i].to_vec()
                };
                next.extend(
                    target
                        .split('/')
                        .filter(|c| !c.is_empty() && *c != ".")
                        .map(str::to_string),
                );
                next.extend(parts[i + 1..].iter().cloned());
                parts = next;
            }
            Ok(_) => return Err(io::Error::from_raw_os_error(libc::ENOENT)),
            Err(Errno::NOENT) => {
                let last = i + 1 == parts.len();
                let made = if last && !dir {
                    rustix::fs::openat(
                        &parent,
                        name,
                        OFlags::CREATE
                            | OFlags::EXCL
                            | OFlags::NOFOLLOW
                            | OFlags::WRONLY
                            | OFlags::CLOEXEC,
                        Mode::from_raw_mode(0o644),
                    )
                    .map(drop)
                } else {
                    rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(0o755))
                };
                match made {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(io::Error::from_raw_os_error(libc::ELOOP))
}

/// The standard nodes, as Docker's containers have them.
const STANDARD: &[(&str, u32, u32)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// A host device, opened without following links and checked to be what its name says.
pub fn host_device(name: &str, major: u32, minor: u32) -> io::Result<OwnedFd> {
    let fd = rustix::fs::open(
        format!("/dev/{name}").as_str(),
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = rustix::fs::fstat(&fd)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::CharacterDevice
        || st.st_rdev != rustix::fs::makedev(major, minor)
    {
        return Err(io::Error::other(format!(
            "the host's /dev/{name} is not the character device {major}:{minor}"
        )));
    }
    Ok(fd)
}

/// The device nodes of the container's `/dev`: the standard ones, `--device` nodes, and with
/// `--privileged` the host's. Made in the `/dev` the root resolves (an image whose `/dev` is a
/// link to a host path gets them inside the image), where nothing is there yet: a volume over
/// `/dev` keeps its own entries. Whether a node may be opened is the device cgroup's to say.
pub fn make_devices(root: BorrowedFd<'_>, spec: &Spec, privileged: bool) -> Result<(), StartError> {
    let dev = match open_in_root(root, "/dev", true) {
        Ok(d) => d,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => return Ok(()),
        Err(e) => return Err(fail(125, format!("open the container's /dev: {e}"))),
    };
    let old = rustix::process::umask(Mode::empty());
    let res = (|| {
        for (name, major, minor) in STANDARD {
            node(
                &dev,
                name,
                FileType::CharacterDevice,
                0o666,
                (*major, *minor),
                None,
            )?;
        }
        if privileged {
            host_devices(&dev);
        }
        for d in &spec.linux.devices {
            let (parent, name) = parent_in_root(root, &d.path)
                .map_err(|e| fail(125, format!("create {}: {e}", d.path)))?;
            let kind = match d.kind.as_str() {
                "c" | "u" => FileType::CharacterDevice,
                "b" => FileType::BlockDevice,
                "p" => FileType::Fifo,
                other => {
                    return Err(fail(
                        125,
                        format!("device {}: unknown type {other:?}", d.path),
                    ));
                }
            };
            let mode = d.file_mode.unwrap_or(0o666) & 0o7777;
            node(
                &parent,
                &name,
                kind,
                mode,
                (d.major as u32, d.minor as u32),
                Some((d.uid.unwrap_or(0), d.gid.unwrap_or(0))),
            )?;
        }
        for (link, target) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
            ("ptmx", "pts/ptmx"),
            ("core", "/proc/kcore"),
        ] {
            let _ = rustix::fs::symlinkat(target, &dev, link);
        }
        Ok(())
    })();
    rustix::process::umask(old);
    res
}

/// The directory that will hold `path`'s last component (created inside the root as needed),
/// and that component.
fn parent_in_root(root: BorrowedFd<'_>, path: &str) -> io::Result<(OwnedFd, String)> {
    let mut parts = components(path);
    let name = parts
        .pop()
        .filter(|n| n != "..")
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    let dir = create_in_root(root, &parts.join("/"), true)?;
    Ok((dir, name))
}

/// One node in `dir`, unless an entry of that name is there. Where `mknod` is refused, the
/// host's node of that name is bound instead, after checking it is that device.
fn node(
    dir: &OwnedFd,
    name: &str,
    kind: FileType,
    mode: u32,
    (major, minor): (u32, u32),
    owner: Option<(u32, u32)>,
) -> Result<(), StartError> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(_) => return Ok(()),
        Err(Errno::NOENT) => {}
        Err(e) => return Err(fail(125, format!("look at /dev/{name}: {e}"))),
    }
    let made = rustix::fs::mknodat(
        dir,
        name,
        kind,
        Mode::from_raw_mode(mode),
        rustix::fs::makedev(major, minor),
    );
    match made {
        Ok(()) => {}
        Err(Errno::PERM) if kind == FileType::CharacterDevice => {
            let host = host_device(name, major, minor)
                .map_err(|e| fail(125, format!("create /dev/{name}: {e}")))?;
            let target = rustix::fs::openat(
                dir,
                name,
                OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::WRONLY | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            )
            .map_err(|e| fail(125, format!("create /dev/{name}: {e}")))?;
            sys::bind_fd(host.as_fd(), target.as_fd(), false)
                .map_err(|e| fail(125, format!("bind /dev/{name}: {e}")))?;
            return Ok(());
        }
        Err(e) => return Err(fail(125, format!("create /dev/{name}: {e}"))),
    }
    if let Some((uid, gid)) = owner {
        rustix::fs::chownat(
            dir,
            name,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| fail(125, format!("chown /dev/{name}: {e}")))?;
    }
    Ok(())
}

/// `--privileged`: every character and block device at the top of the host's `/dev`.
fn host_devices(dev: &OwnedFd) {
    let Ok(host) = rustix::fs::open(
        "/dev",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return;
    };
    let Ok(mut entries) = rustix::fs::Dir::read_from(&host) else {
        return;
    };
    while let Some(Ok(e)) = entries.next() {
        let name = e.file_name();
        let Ok(st) = rustix::fs::statat(&host, name, AtFlags::SYMLINK_NOFOLLOW) else {
            continue;
        };
        let kind = FileType::from_raw_mode(st.st_mode);
        if kind != FileType::CharacterDevice && kind != FileType::BlockDevice {
            continue;
        }
        if rustix::fs::statat(dev, name, AtFlags::SYMLINK_NOFOLLOW).is_ok() {
            continue;
        }
        let _ = rustix::fs::mknodat(
            dev,
            name,
            kind,
            Mode::from_raw_mode(st.st_mode & 0o7777),
            st.st_rdev,
        );
    }
}

/// Read-only paths, then masked ones, both before the root switch and both by descriptor:
/// read-only first, so a mask is never undone by a later read-only bind over it. The mask
/// source is the host's `/dev/null`, opened without following links and checked to be the
/// character device 1:3 — never whatever the container's `/dev/null` turns out to be
/// (CVE-2025-31133).
/// Writes the container's sysctls under its /proc/sys, before that is made read-only. Each
/// file is opened inside the root without following links, and must be on procfs: the
/// image's `/proc` cannot point a write at anything else (runc checks the same).
pub fn write_sysctls(root: BorrowedFd<'_>, spec: &Spec) -> Result<(), StartError> {
    for (key, value) in &spec.linux.sysctl {
        // `net.ipv4.conf.eth0/1.x` names a device with a dot as a slash: keep the key's
        // parts as path components and refuse anything that would climb.
        let rel: Vec<&str> = key.split('.').collect();
        if rel
            .iter()
            .any(|c| c.is_empty() || *c == ".." || c.contains('/'))
        {
            return Err(fail(125, format!("invalid sysctl {key:?}")));
        }
        let path = format!("proc/sys/{}", rel.join("/"));
        let fd = rustix::fs::openat2(
            root,
            path.as_str(),
            OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
            rustix::fs::ResolveFlags::IN_ROOT
                | rustix::fs::ResolveFlags::NO_MAGICLINKS
                | rustix::fs::ResolveFlags::NO_SYMLINKS,
        )
        .map_err(|e| fail(125, format!("sysctl {key}: {e}")))?;
        let fs = rustix::fs::fstatfs(&fd).map_err(|e| fail(125, format!("sysctl {key}: {e}")))?;
        if fs.f_type != libc::PROC_SUPER_MAGIC {
            return Err(fail(125, format!("sysctl {key}: /proc/sys is not procfs")));
        }
        rustix::io::write(&fd, value.as_bytes())
            .map_err(|e| fail(125, format!("sysctl {key}={value}: {e}")))?;
    }
    Ok(())
}

pub fn protect_paths(root: BorrowedFd<'_>, spec: &Spec) -> Result<(), StartError> {
    for p in &spec.linux.readonly_paths {
        let fd = match open_in_root(root, p, false) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(fail(125, format!("open {p}: {e}"))),
        };
        sys::bind_fd(fd.as_fd(), fd.as_fd(), true)
            .map_err(|e| fail(125, format!("bind {p}: {e}")))?;
        let mounted =
            open_in_root(root, p, false).map_err(|e| fail(125, format!("reopen {p}: {e}")))?;
        sys::add_mount_attrs(
            mounted.as_fd(),
            sys::MOUNT_ATTR_RDONLY
                | sys::MOUNT_ATTR_NOSUID
                | sys::MOUNT_ATTR_NODEV
                | sys::MOUNT_ATTR_NOEXEC,
            true,
        )
        .map_err(|e| fail(125, format!("make {p} read-only: {e}")))?;
    }
    if spec.linux.masked_paths.is_empty() {
        return Ok(());
    }
    let null = host_device("null", 1, 3).map_err(|e| fail(125, format!("mask paths: {e}")))?;
    for p in &spec.linux.masked_paths {
        let fd = match open_in_root(root, p, false) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(fail(125, format!("open {p}: {e}"))),
        };
        let st = rustix::fs::fstat(&fd).map_err(|e| fail(125, format!("stat {p}: {e}")))?;
        let res = if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            nix::mount::mount(
                Some("tmpfs"),
                fd_path(fd.as_fd()).as_str(),
                Some("tmpfs"),
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                None::<&str>,
            )
            .map_err(io::Error::from)
        } else {
            sys::bind_fd(null.as_fd(), fd.as_fd(), false)
        };
        res.map_err(|e| fail(125, format!("mask {p}: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    /// Dangling links, absolute or climbing out with `..`, lead to entries made inside the
    /// root; nothing appears outside it.
    #[test]
    fn mount_points_are_made_inside_the_root() {
        let base = std::env::temp_dir().join(crate::sys::unique_name("ketch-rootfs"));
        let (root, outside) = (base.join("root"), base.join("outside"));
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        let out = outside.display().to_string();
        symlink(format!("{out}/hosts"), root.join("etc/hosts")).unwrap();
        symlink(format!("../../../../..{out}/dir"), root.join("etc/up")).unwrap();
        symlink("/etc/loop2", root.join("etc/loop1")).unwrap();
        symlink("/etc/loop1", root.join("etc/loop2")).unwrap();
        let r = rustix::fs::open(&root, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let file = create_in_root(r.as_fd(), "/etc/hosts", false).unwrap();
        assert_eq!(
            FileType::from_raw_mode(rustix::fs::fstat(&file).unwrap().st_mode),
            FileType::RegularFile
        );
        assert!(
            root.join(out.trim_start_matches('/'))
                .join("hosts")
                .is_file()
        );
        let dir = create_in_root(r.as_fd(), "/etc/up/sub", true).unwrap();
        assert!(rustix::fs::fstat(&dir).is_ok());
        assert!(
            root.join(out.trim_start_matches('/'))
                .join("dir/sub")
                .is_dir()
        );
        // Empty and `.` components are nothing; the descriptors are O_PATH and close on
        // exec; a directory is asked for, a file is refused.
        let made = create_in_root(r.as_fd(), "//a/./b//c/", true).unwrap();
        assert!(root.join("a/b/c").is_dir());
        let flags = rustix::fs::fcntl_getfl(&made).unwrap();
        assert!(flags.contains(OFlags::PATH), "{flags:?}");
        let fd_flags = rustix::io::fcntl_getfd(&made).unwrap();
        assert!(fd_flags.contains(rustix::io::FdFlags::CLOEXEC));
        let hosts = format!("{}/hosts", out.trim_start_matches('/'));
        let err = open_in_root(r.as_fd(), &format!("/etc/../{hosts}"), true).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOTDIR));
        let file = open_in_root(r.as_fd(), &hosts, false).unwrap();
        assert!(
            rustix::fs::fcntl_getfl(&file)
                .unwrap()
                .contains(OFlags::PATH)
        );
        let looped = create_in_root(r.as_fd(), "/etc/loop1", false).unwrap_err();
        assert_eq!(looped.raw_os_error(), Some(libc::ELOOP));
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        std::fs::remove_dir_all(&base).unwrap();
    }

    fn spec(v: serde_json::Value) -> Spec {
        serde_json::from_value(v).unwrap()
    }

    fn open_dir(p: &std::path::Path) -> OwnedFd {
        rustix::fs::open(p, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap()
    }

    fn kind_and_rdev(p: &std::path::Path) -> (FileType, u64, u32) {
        let st = rustix::fs::lstat(p).unwrap();
        (
            FileType::from_raw_mode(st.st_mode),
            st.st_rdev,
            st.st_mode & 0o7777,
        )
    }

    #[test]
    fn dev_gets_the_standard_nodes_the_devices_asked_for_and_its_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("dev")).unwrap();
        // An entry already there is kept, whatever it is.
        std::fs::write(root.join("dev/zero"), b"mine").unwrap();
        let devices = spec(serde_json::json!({"linux": {"devices": [
            {"path": "/dev/mine", "type": "c", "major": 1, "minor": 3, "fileMode": 0o600,
             "uid": 5, "gid": 6},
            {"path": "/dev/sub/fifo", "type": "p"},
            {"path": "/dev/disk", "type": "b", "major": 7, "minor": 0},
            {"path": "/dev/unbuffered", "type": "u", "major": 1, "minor": 5},
            {"path": "/dev/sticky", "type": "c", "major": 1, "minor": 7, "fileMode": 0o11666},
        ]}}));
        make_devices(open_dir(root).as_fd(), &devices, false).unwrap();
        let dev = root.join("dev");
        let char_dev = FileType::CharacterDevice;
        for (name, major, minor) in STANDARD {
            if *name == "zero" {
                continue;
            }
            assert_eq!(
                kind_and_rdev(&dev.join(name)),
                (char_dev, rustix::fs::makedev(*major, *minor), 0o666),
                "{name}"
            );
        }
        assert_eq!(std::fs::read(dev.join("zero")).unwrap(), b"mine");
        assert_eq!(
            kind_and_rdev(&dev.join("mine")),
            (char_dev, rustix::fs::makedev(1, 3), 0o600)
        );
        let st = rustix::fs::lstat(dev.join("mine")).unwrap();
        assert_eq!((st.st_uid, st.st_gid), (5, 6));
        assert_eq!(kind_and_rdev(&dev.join("sub/fifo")).0, FileType::Fifo);
        assert_eq!(
            kind_and_rdev(&dev.join("disk")),
            (FileType::BlockDevice, rustix::fs::makedev(7, 0), 0o666)
        );
        assert_eq!(kind_and_rdev(&dev.join("unbuffered")).0, char_dev);
        // Mode bits beyond the permissions and sticky/set-ID ones are not a mode.
        assert_eq!(kind_and_rdev(&dev.join("sticky")).2, 0o1666);
        for (link, target) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
            ("ptmx", "pts/ptmx"),
            ("core", "/proc/kcore"),
        ] {
            assert_eq!(
                std::fs::read_link(dev.join(link)).unwrap(),
                std::path::Path::new(target)
            );
        }

        // An unknown type is an error that names it.
        let bad = spec(serde_json::json!({"linux": {"devices": [
            {"path": "/dev/what", "type": "x", "major": 1, "minor": 3},
        ]}}));
        let err = make_devices(open_dir(root).as_fd(), &bad, false).unwrap_err();
        assert!(
            err.message.contains("device /dev/what: unknown type \"x\""),
            "{err:?}"
        );
        // A device path of `..` names no device.
        let up = spec(serde_json::json!({"linux": {"devices": [
            {"path": "/dev/..", "type": "c", "major": 1, "minor": 3},
        ]}}));
        assert!(make_devices(open_dir(root).as_fd(), &up, false).is_err());
    }

    #[test]
    fn a_dev_that_links_elsewhere_gets_its_nodes_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let (root, outside) = (dir.path().join("root"), dir.path().join("outside"));
        std::fs::create_dir(&root).unwrap();
        std::fs::create_dir(&outside).unwrap();
        symlink(&outside, root.join("dev")).unwrap();
        // The link's target, as the root resolves it.
        std::fs::create_dir_all(root.join(outside.strip_prefix("/").unwrap())).unwrap();
        make_devices(open_dir(&root).as_fd(), &Spec::default(), false).unwrap();
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        assert!(
            root.join(outside.strip_prefix("/").unwrap())
                .join("null")
                .exists()
        );
        // No /dev at all: nothing to do.
        let bare = dir.path().join("bare");
        std::fs::create_dir(&bare).unwrap();
        make_devices(open_dir(&bare).as_fd(), &Spec::default(), false).unwrap();
        assert_eq!(std::fs::read_dir(&bare).unwrap().count(), 0);
    }

    #[test]
    fn privileged_gets_the_hosts_devices() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("dev")).unwrap();
        make_devices(open_dir(dir.path()).as_fd(), &Spec::default(), true).unwrap();
        let mut host = 0;
        for e in std::fs::read_dir("/dev").unwrap() {
            let e = e.unwrap();
            let (kind, rdev, _) = kind_and_rdev(&e.path());
            if kind != FileType::CharacterDevice && kind != FileType::BlockDevice {
                continue;
            }
            host += 1;
            let mine = dir.path().join("dev").join(e.file_name());
            assert_eq!(kind_and_rdev(&mine).0, kind, "{}", mine.display());
            assert_eq!(kind_and_rdev(&mine).1, rdev, "{}", mine.display());
        }
        assert!(host > STANDARD.len(), "{host}");
        // Directories and links of the host's /dev are not copied.
        assert!(!dir.path().join("dev/pts").exists() || STANDARD.is_empty());
    }

    #[test]
    fn the_host_device_must_be_what_its_name_says() {
        assert!(host_device("null", 1, 3).is_ok());
        let err = host_device("null", 1, 5).unwrap_err().to_string();
        assert_eq!(err, "the host's /dev/null is not the character device 1:5");
        assert!(host_device("zero", 1, 3).is_err());
        // A link or a directory is not a device.
        assert!(host_device("fd", 1, 3).is_err());
        assert!(host_device("pts", 1, 3).is_err());
        assert!(host_device("no-such-device", 1, 3).is_err());
    }

    #[test]
    fn read_only_paths_are_read_only_and_masked_ones_hidden() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        std::fs::create_dir_all(root.join("ro/sub")).unwrap();
        std::fs::write(root.join("secret"), b"key").unwrap();
        std::fs::create_dir(root.join("secrets")).unwrap();
        std::fs::write(root.join("secrets/key"), b"key").unwrap();
        std::fs::create_dir(root.join("both")).unwrap();
        std::fs::write(root.join("both/key"), b"key").unwrap();
        // A link to a directory of the host's: resolved inside the root, where it is missing.
        symlink("/usr/share", root.join("etc")).unwrap();
        let paths = spec(serde_json::json!({"linux": {
            "readonlyPaths": ["/ro", "/missing", "/both", "/etc/hostname"],
            "maskedPaths": ["/secret", "/secrets", "/missing", "/both", "/etc/passwd"],
        }}));
        let seen = sys::in_own_mountns(|| {
            protect_paths(open_dir(&root).as_fd(), &paths).unwrap();
            let write = |p: &str| {
                std::fs::write(root.join(p), b"x")
                    .err()
                    .and_then(|e| e.raw_os_error())
            };
            (
                write("ro/sub/file"),
                write("ro/file"),
                std::fs::read(root.join("secret")).unwrap(),
                kind_and_rdev(&root.join("secret")).0,
                std::fs::read_dir(root.join("secrets")).unwrap().count(),
                write("secrets/new"),
                std::fs::read_dir(root.join("both")).unwrap().count(),
                write("both/new"),
            )
        });
        assert_eq!(
            seen,
            (
                Some(libc::EROFS),
                Some(libc::EROFS),
                vec![],
                FileType::CharacterDevice,
                0,
                Some(libc::EROFS),
                0,
                Some(libc::EROFS),
            )
        );
        // Gone with the namespace: the tree is as it was.
        assert_eq!(std::fs::read(root.join("secret")).unwrap(), b"key");
        std::fs::write(root.join("ro/file"), b"x").unwrap();
        // Nothing was made for the missing ones, nor through the link.
        assert!(!root.join("missing").exists());
        assert!(
            std::fs::symlink_metadata(root.join("etc"))
                .unwrap()
                .is_symlink()
        );
    }
}
