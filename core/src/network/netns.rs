//! Network namespaces that outlive the process that made them: each is held by a bind mount
//! of its `nsfs` file, as `ip netns` does, until [`remove`] unmounts it.
//!
//! Entering a namespace is per thread (`setns(CLONE_NEWNET)`), so the work is done on a
//! short-lived thread of its own and the calling thread never changes namespace.

use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Runs `f` on a thread that has entered the network namespace at `path`.
pub fn within<T: Send>(path: &Path, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    let ns = File::open(path)?;
    std::thread::scope(|s| {
        s.spawn(move || {
            // SAFETY: setns(2) on a descriptor we own; it affects this thread only.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("network namespace thread panicked")))
    })
}

/// Makes a new network namespace held at `path` (a file that must not exist yet).
pub fn create(path: &Path) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    File::options().write(true).create_new(true).open(path)?;
    let target = path.to_path_buf();
    let made = std::thread::scope(|s| {
        s.spawn(move || -> io::Result<()> {
            // SAFETY: unshare(2) of the network namespace affects this thread only.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            rustix::mount::mount_bind("/proc/thread-self/ns/net", &target)?;
            Ok(())
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("network namespace thread panicked")))
    });
    if made.is_err() {
        let _ = fs::remove_file(path);
    }
    made
}

/// Lets go of the namespace at `path`: once no process is left in it, the kernel tears it
/// down with every device inside (a veth's host end goes with its peer). Missing is fine.
pub fn remove(path: &Path) -> io::Result<()> {
    match crate::mount::unmount(path) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {} // not mounted
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_takes_a_namespace_a_file_or_nothing_and_refuses_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let ns = dir.path().join("ns");
        create(&ns).unwrap();
        // Held: the namespace's file is a mount of nsfs.
        assert!(within(&ns, || Ok(())).is_ok());
        remove(&ns).unwrap();
        assert!(!ns.exists());
        // A file no namespace was mounted on (a start that failed half-way).
        let file = dir.path().join("file");
        fs::write(&file, b"").unwrap();
        remove(&file).unwrap();
        assert!(!file.exists());
        // Nothing there.
        remove(&dir.path().join("missing")).unwrap();
        // Not a namespace's file: refused, and left.
        let d = dir.path().join("dir");
        fs::create_dir(&d).unwrap();
        assert!(remove(&d).is_err());
        assert!(d.is_dir());
        fs::write(&file, b"").unwrap();
        let below = remove(&file.join("ns")).unwrap_err();
        assert_eq!(below.raw_os_error(), Some(libc::ENOTDIR), "{below}");
        // Made where a file is already: refused, and the file kept.
        assert!(create(&file).is_err());
        assert!(file.is_file());
    }
}
