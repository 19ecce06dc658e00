//! `ketch-shim cp`: copies out of and into a container's file system from inside it. The
//! helper first takes the container's view (the mount namespace of its process, whose root
//! is the container's; or a `chroot` into a stopped container's mounted root file system),
//! so every path, symlinks included, resolves inside the container: a symlink swapped in
//! while the copy runs (CVE-2018-15664) can only point elsewhere in the container. It runs
//! no program and loads no library from there (CVE-2019-14271): it is this binary, already
//! loaded, reading and writing tar.
//!
//!   ketch-shim cp (--pid PID:START:ID | --root DIR) out PATH     tar of PATH to stdout
//!   ketch-shim cp (--pid PID:START:ID | --root DIR) in DEST [--mkdir]  tar from stdin into DEST
//!
//! With `--root`, `--bind SRC DEST ro|rw` (repeated) first mounts the stopped container's
//! volumes and binds where it has them, as Docker shows them to a copy: in a mount
//! namespace of this process's own, each mount point made inside the root (links followed
//! only within it), so they are gone when it exits.
//!
//! START is the start time of the container's process (clock ticks since boot) and ID the
//! container's, whose cgroup the process must be in: a PID that names another process by now
//! is refused, never entered.
//!
//! Out, the tar holds PATH under its base name (`PATH/.`: its contents, under `.`). In, the
//! tar holds one top-level entry (or `.`, for contents): into an existing directory DEST it
//! goes as it is; otherwise it becomes DEST, in DEST's directory.

use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::{Component, Path, PathBuf};

pub fn run() -> i32 {
    let args: Vec<String> = std::env::args().skip(2).collect();
    match main(&args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

/// `args`: what follows `ketch-shim cp`.
fn main(args: &[String]) -> Result<(), String> {
    let (how, mut rest) = args.split_at(2.min(args.len()));
    let mut binds = Vec::new();
    while let [flag, src, dest, mode, more @ ..] = rest
        && flag == "--bind"
    {
        binds.push((src.as_str(), dest.as_str(), mode == "ro"));
        rest = more;
    }
    let (dir, rest) = match (how, rest) {
        ([flag, value], [dir, rest @ ..]) => {
            if !binds.is_empty() && flag != "--root" {
                return Err(usage());
            }
            enter(flag, value, &binds)?;
            (dir.as_str(), rest)
        }
        _ => return Err(usage()),
    };
    match (dir, rest) {
        ("out", [path]) => copy_out(path),
        ("in", [dest]) => copy_in(dest, false),
        ("in", [dest, flag]) if flag == "--mkdir" => copy_in(dest, true),
        _ => Err(usage()),
    }
}

fn usage() -> String {
    "usage: ketch-shim cp (--pid PID:START:ID | --root DIR [--bind SRC DEST ro|rw]...) (out PATH | in DEST [--mkdir])".into()
}

/// Takes the container's view of the file system.
fn enter(flag: &str, value: &str, binds: &[(&str, &str, bool)]) -> Result<(), String> {
    match flag {
        "--pid" => {
            let mut parts = value.splitn(3, ':');
            let (pid, start, owner) = (|| {
                let pid = parts.next()?.parse::<i32>().ok()?;
                let start = parts.next()?.parse::<u64>().ok()?;
                Some((pid, start, parts.next()?))
            })()
            .ok_or_else(usage)?;
            let pidfd = crate::sys::pidfd_of(pid, start, owner)
                .map_err(|e| format!("container process {pid}: {e}"))?;
            let root = crate::sys::container_root(pid, pidfd.as_fd())?;
            let mnt = nix::sched::CloneFlags::CLONE_NEWNS;
            match nix::sched::setns(&pidfd, mnt) {
                // A kernel without setns by pidfd: the namespace file.
                Err(nix::errno::Errno::EINVAL) => {
                    crate::sys::join_by_files(pidfd.as_fd(), pid, &[("mnt", mnt)])?
                }
                r => r.map_err(|e| format!("enter the container's mount namespace: {e}"))?,
            }
            // The root becomes the container process's own, not the namespace's (see
            // `container_root`).
            crate::sys::enter_root(root)?;
        }
        "--root" => {
            if !binds.is_empty() {
                mount_binds(value, binds)?;
            }
            nix::unistd::chroot(value).map_err(|e| format!("chroot {value}: {e}"))?;
        }
        _ => return Err(usage()),
    }
    std::env::set_current_dir("/").map_err(|e| format!("chdir /: {e}"))
}

/// The stopped container's volumes and binds on its root, in a mount namespace of this
/// process's own whose mounts propagate nowhere.
fn mount_binds(root: &str, binds: &[(&str, &str, bool)]) -> Result<(), String> {
    use nix::mount::{MsFlags, mount};
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| format!("unshare the mount namespace: {e}"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("make the mounts private: {e}"))?;
    let dir = std::fs::File::open(root).map_err(|e| format!("open {root}: {e}"))?;
    for (src, dest, ro) in binds {
        // The engine names the source: a volume's directory or the user's own `-v` path.
        let source = std::fs::File::open(src).map_err(|e| format!("open {src}: {e}"))?;
        let is_dir = source.metadata().map(|m| m.is_dir()).unwrap_or(true);
        let point = crate::rootfs::create_in_root(dir.as_fd(), dest, is_dir)
            .map_err(|e| format!("mount point {dest}: {e}"))?;
        crate::sys::bind_fd(source.as_fd(), point.as_fd(), true)
            .map_err(|e| format!("mount {src} on {dest}: {e}"))?;
        if *ro {
            let mounted = crate::rootfs::open_in_root(dir.as_fd(), dest, false)
                .map_err(|e| format!("reopen {dest}: {e}"))?;
            crate::sys::add_mount_attrs(mounted.as_fd(), crate::sys::MOUNT_ATTR_RDONLY, true)
                .map_err(|e| format!("remount {dest} read-only: {e}"))?;
        }
    }
    Ok(())
}

fn no_such(path: &str) -> String {
    format!("Could not find the file {path} in container")
}

fn copy_out(path: &str) -> Result<(), String> {
    let contents = path.ends_with("/.");
    let p = Path::new(path);
    let md = std::fs::symlink_metadata(p).map_err(|_| no_such(path))?;
    let name: PathBuf = if contents {
        PathBuf::from(".")
    } else {
        PathBuf::from(p.file_name().unwrap_or(p.as_os_str()))
    };
    let stdout = io::stdout();
    let mut b = tar::Builder::new(io::BufWriter::with_capacity(1 << 20, stdout.lock()));
    b.follow_symlinks(false);
    b.mode(tar::HeaderMode::Complete);
    let res = if md.is_dir() {
        b.append_dir_all(&name, p)
    } else {
        b.append_path_with_name(p, &name)
    };
    res.and_then(|()| b.into_inner().and_then(|mut w| w.flush()))
        .map_err(|e| format!("copy {path}: {e}"))
}

/// Where a tar entry goes with `as_name`: under it, for an archive of a directory's
/// contents (`contents`: its first entry is `.`); else its top (its first named component)
/// renamed to it. A name with `..` or a root is refused.
fn renamed(path: &Path, as_name: Option<&Path>, contents: bool) -> Option<PathBuf> {
    if path
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return None;
    }
    let mut comps = path
        .components()
        .filter(|c| !matches!(c, Component::CurDir));
    let Some(as_name) = as_name else {
        return Some(path.to_path_buf());
    };
    if !contents {
        match comps.next() {
            Some(Component::Normal(_)) => {}
            None => return Some(as_name.to_path_buf()),
            _ => return None,
        }
    }
    let mut out = as_name.to_path_buf();
    out.extend(comps);
    Some(out)
}

/// `mkdir -p` that follows links, dangling ones too, as a build's COPY into a linked
/// directory does (chrooted: every link resolves inside the container).
fn mkdir_p(p: &Path, depth: u32) -> io::Result<()> {
    if depth > 255 {
        return Err(io::Error::from_raw_os_error(libc::ELOOP));
    }
    // Without a trailing `/`, which would make the link calls follow the last link.
    let p: &Path = &p.components().collect::<PathBuf>();
    match std::fs::metadata(p) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => return Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
        Err(_) => {}
    }
    if let Ok(target) = std::fs::read_link(p) {
        let t = match p.parent() {
            Some(parent) if target.is_relative() => parent.join(target),
            _ => target,
        };
        return mkdir_p(&t, depth + 1);
    }
    if let Some(parent) = p.parent() {
        mkdir_p(parent, depth + 1)?;
    }
    match std::fs::create_dir(p) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && p.is_dir() => Ok(()),
        r => r,
    }
}

/// `mkdir`: a build's COPY, which makes the directories DEST needs (DEST itself when it
/// ends in `/`, else its parent), owned by root, as Docker makes them.
fn copy_in(dest: &str, mkdir: bool) -> Result<(), String> {
    let d = Path::new(dest);
    if mkdir {
        let dir = if dest.ends_with('/') {
            d
        } else {
            d.parent().unwrap_or(Path::new("/"))
        };
        mkdir_p(dir, 0).map_err(|e| format!("create {}: {e}", dir.display()))?;
    }
    let (target, as_name): (PathBuf, Option<PathBuf>) = match std::fs::metadata(d) {
        Ok(md) if md.is_dir() => (d.to_path_buf(), None),
        Ok(_) => (
            d.parent().unwrap_or(Path::new("/")).to_path_buf(),
            d.file_name().map(PathBuf::from),
        ),
        Err(_) => {
            let parent = d.parent().unwrap_or(Path::new("/"));
            if !std::fs::metadata(parent).is_ok_and(|m| m.is_dir()) {
                return Err(format!(
                    "Could not find the file {} in container",
                    parent.display()
                ));
            }
            (parent.to_path_buf(), d.file_name().map(PathBuf::from))
        }
    };
    let stdin = io::stdin();
    let mut a = tar::Archive::new(io::BufReader::with_capacity(1 << 20, stdin.lock()));
    a.set_preserve_permissions(true);
    a.set_preserve_ownerships(true);
    a.set_preserve_mtime(true);
    a.set_overwrite(true);
    let mut contents = None;
    for entry in a.entries().map_err(|e| format!("read the archive: {e}"))? {
        let mut entry = entry.map_err(|e| format!("read the archive: {e}"))?;
        let path = entry
            .path()
            .map_err(|e| format!("read the archive: {e}"))?
            .into_owned();
        let dot = path.components().all(|c| matches!(c, Component::CurDir));
        let contents = *contents.get_or_insert(dot);
        if dot && as_name.is_none() {
            continue; // `.` itself: the existing directory stays as it is
        }
        let Some(to) = renamed(&path, as_name.as_deref(), contents) else {
            return Err(format!("refusing archive entry {}", path.display()));
        };
        if to.as_os_str().is_empty() {
            continue;
        }
        // Names with `..` or a root were refused above; inside the container, every other
        // path stays in it.
        let full = target.join(&to);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("create {}: {e}", parent.display()))?;
        }
        if entry.header().entry_type() == tar::EntryType::Link {
            // A hard link names another entry of the archive, renamed the same way.
            let link = entry
                .link_name()
                .ok()
                .flatten()
                .and_then(|l| renamed(&l, as_name.as_deref(), contents))
                .ok_or_else(|| format!("refusing hard link {}", path.display()))?;
            let _ = std::fs::remove_file(&full);
            std::fs::hard_link(target.join(link), &full)
                .map_err(|e| format!("link {}: {e}", full.display()))?;
            continue;
        }
        entry
            .unpack(&full)
            .map_err(|e| format!("write {}: {e}", full.display()))?;
    }
    // Whatever follows the archive's end is not ours to leave unread for the writer.
    let _ = io::copy(&mut a.into_inner(), &mut io::sink());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Arguments that are not a way in and a direction get the usage, before anything is
    /// entered or read.
    #[test]
    fn wrong_arguments_get_the_usage() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let usage = usage();
        for bad in [
            &[][..],
            &["--pid"],
            &["--root", "/nonexistent"],
            &["--bogus", "x", "out", "/"],
            &["--pid", "1", "out", "/"],
            &["--pid", "1:x:id", "out", "/"],
            &["--pid", "1:2", "out", "/"],
            // Binds only for a stopped container's root.
            &["--pid", "1:2:id", "--bind", "/a", "/b", "rw", "out", "/"],
        ] {
            assert_eq!(main(&args(bad)).unwrap_err(), usage, "{bad:?}");
        }
    }

    /// Entries keep their names, or go under the destination's name (an archive of a
    /// directory's contents) or have their top renamed to it; a name that climbs out or
    /// starts at the root is refused.
    #[test]
    fn entries_are_renamed_at_their_top_and_escapes_are_refused() {
        let r = |path: &str, as_name: Option<&str>, contents: bool| {
            renamed(Path::new(path), as_name.map(Path::new), contents)
                .map(|p| p.display().to_string())
        };
        for contents in [false, true] {
            assert_eq!(r("a/b", None, contents).as_deref(), Some("a/b"));
            assert_eq!(r("./a/b", None, contents).as_deref(), Some("./a/b"));
            assert_eq!(r(".", Some("x"), contents).as_deref(), Some("x"));
            for bad in ["../a", "a/../../b", "/etc/passwd", "a/.."] {
                assert_eq!(r(bad, None, contents), None, "{bad}");
                assert_eq!(r(bad, Some("x"), contents), None, "{bad}");
            }
        }
        assert_eq!(r("a", Some("x"), false).as_deref(), Some("x"));
        assert_eq!(r("a/b/c", Some("x"), false).as_deref(), Some("x/b/c"));
        assert_eq!(r("./a/./b", Some("x"), false).as_deref(), Some("x/b"));
        assert_eq!(r("a", Some("x"), true).as_deref(), Some("x/a"));
        assert_eq!(r("a/b/c", Some("x"), true).as_deref(), Some("x/a/b/c"));
        assert_eq!(r("./a/./b", Some("x"), true).as_deref(), Some("x/a/b"));
    }
}
