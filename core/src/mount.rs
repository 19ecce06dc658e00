//! Mounts as data, and the few calls that perform them.
//!
//! Snapshotters return [`Mount`]s and never mount anything themselves; whoever needs the files
//! (the differ, the runtime, a test) mounts them with [`Mount::mount`] or [`TempMount`].

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::mount::{MountFlags, UnmountFlags};

/// A mount to perform: `mount -t <kind> -o <options> <source> <target>`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mount {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Source")]
    pub source: String,
    #[serde(rename = "Options")]
    pub options: Vec<String>,
}

/// Mount data longer than this does not fit the kernel's one-page limit.
const MAX_DATA: usize = 4000;

impl Mount {
    pub fn bind(source: &Path, readonly: bool) -> Mount {
        Mount {
            kind: "bind".into(),
            source: source.to_string_lossy().into_owned(),
            options: vec!["rbind".into(), if readonly { "ro" } else { "rw" }.into()],
        }
    }

    pub fn is_readonly(&self) -> bool {
        self.options.iter().any(|o| o == "ro")
    }

    /// The value of a `key=value` option.
    pub fn option(&self, key: &str) -> Option<&str> {
        self.options
            .iter()
            .find_map(|o| o.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
    }

    /// Mounts onto `target`, which must exist.
    pub fn mount(&self, target: &Path) -> io::Result<()> {
        match self.kind.as_str() {
            "bind" => {
                // The calls spelled out with a file system type of "none" (which a bind
                // ignores) rather than none at all, so that checkers such as valgrind do
                // not see a NULL string passed to mount(2).
                let source = Path::new(&self.source);
                let mut flags = MountFlags::BIND;
                if self.options.iter().any(|o| o == "rbind") {
                    flags |= MountFlags::REC;
                }
                rustix::mount::mount(source, target, "none", flags, None)?;
                if self.is_readonly() {
                    change(target, libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY)?;
                }
                Ok(())
            }
            "overlay" => {
                let mut flags = MountFlags::empty();
                let mut data: Vec<String> = Vec::new();
                for o in &self.options {
                    match o.as_str() {
                        "ro" => flags |= MountFlags::RDONLY,
                        "rw" => {}
                        _ => data.push(o.clone()),
                    }
                }
                let joined = data.join(",");
                // Many lower layers overflow the one-page mount data limit. Naming each
                // lower directory by an O_PATH descriptor (/proc/self/fd/N) keeps every name
                // short without changing the working directory, which other threads share.
                let mut _held: Vec<OwnedFd> = Vec::new();
                let joined = if joined.len() > MAX_DATA {
                    let mut short = Vec::with_capacity(data.len());
                    for o in &data {
                        if let Some(lowers) = o.strip_prefix("lowerdir=") {
                            let mut names = Vec::new();
                            for l in lowers.split(':') {
                                let fd = rustix::fs::open(
                                    l,
                                    rustix::fs::OFlags::PATH
                                        | rustix::fs::OFlags::DIRECTORY
                                        | rustix::fs::OFlags::CLOEXEC,
                                    rustix::fs::Mode::empty(),
                                )?;
                                names.push(format!("/proc/self/fd/{}", fd.as_raw_fd()));
                                _held.push(fd);
                            }
                            short.push(format!("lowerdir={}", names.join(":")));
                        } else {
                            short.push(o.clone());
                        }
                    }
                    short.join(",")
                } else {
                    joined
                };
                let data = CString::new(joined)
                    .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
                rustix::mount::mount("overlay", target, "overlay", flags, data.as_c_str())?;
                Ok(())
            }
            // Any other file system (a volume's tmpfs, a device): flags by name, the rest
            // passed on as data.
            kind => {
                let mut flags = MountFlags::empty();
                let mut data: Vec<&str> = Vec::new();
                for o in &self.options {
                    match o.as_str() {
                        "ro" => flags |= MountFlags::RDONLY,
                        "rw" | "defaults" => {}
                        "nosuid" => flags |= MountFlags::NOSUID,
                        "nodev" => flags |= MountFlags::NODEV,
                        "noexec" => flags |= MountFlags::NOEXEC,
                        other => data.push(other),
                    }
                }
                let data = CString::new(data.join(","))
                    .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
                rustix::mount::mount(self.source.as_str(), target, kind, flags, data.as_c_str())?;
                Ok(())
            }
        }
    }
}

/// Mounts every mount in order onto `target`.
pub fn mount_all(mounts: &[Mount], target: &Path) -> io::Result<()> {
    for m in mounts {
        m.mount(target)?;
    }
    Ok(())
}

/// Unmounts `target`; a busy mount is detached instead, so it goes once its last user does.
pub fn unmount(target: &Path) -> io::Result<()> {
    match rustix::mount::unmount(target, UnmountFlags::empty()) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::BUSY) => Ok(rustix::mount::unmount(target, UnmountFlags::DETACH)?),
        Err(e) => Err(e.into()),
    }
}

/// Mounts onto a fresh directory under `parent` and undoes it all on drop.
pub struct TempMount {
    path: PathBuf,
    mounted: usize,
}

impl TempMount {
    pub fn new(mounts: &[Mount], parent: &Path) -> io::Result<TempMount> {
        std::fs::create_dir_all(parent)?;
        let pid = std::process::id();
        let start = crate::util::process_start_time(pid).unwrap_or(0);
        let path = parent.join(format!("mnt-{pid}-{start}-{}", crate::util::random_hex(6)));
        std::fs::create_dir(&path)?;
        let mut tm = TempMount { path, mounted: 0 };
        for m in mounts {
            m.mount(&tm.path)?;
            tm.mounted += 1;
            // Keep the mount out of the host's peer groups: a private mount's unmount
            // never propagates, and no one else's mount events reach it.
            let _ = change(&tm.path, libc::MS_PRIVATE);
        }
        Ok(tm)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempMount {
    fn drop(&mut self) {
        for _ in 0..self.mounted {
            let _ = unmount(&self.path);
        }
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// Unmounts and removes the `mnt-<pid>-<start>-*` directories under `parent` whose process is
/// gone: what a killed process leaves of its [`TempMount`]s. Never removes anything
/// recursively, so a mount that refuses to go keeps what is below it safe.
pub fn cleanup_temp_mounts(parent: &Path) -> io::Result<()> {
    let entries = match std::fs::read_dir(parent) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("mnt-")) else {
            continue;
        };
        if crate::util::maker_alive(rest) {
            continue;
        }
        let path = entry.path();
        // Stacked mounts come off one at a time.
        while unmount(&path).is_ok() {}
        let _ = std::fs::remove_dir(&path);
    }
    Ok(())
}

/// Whether `path` is a mount point (of this mount namespace).
pub fn is_mountpoint(path: &Path) -> bool {
    let Ok(path) = path.canonicalize() else {
        return false;
    };
    let want = path.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| m == want)
}

/// A change to the mount at `target` (a remount, a propagation type), with "none" as its
/// source and file system type, which the kernel ignores for these, rather than NULL, so
/// that checkers such as valgrind do not take the call for a bad one.
fn change(target: &Path, flags: libc::c_ulong) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let t = std::ffi::CString::new(target.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: NUL-terminated strings that outlive the call; no data.
    let rc = unsafe {
        libc::mount(
            c"none".as_ptr(),
            t.as_ptr(),
            c"none".as_ptr(),
            flags,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
