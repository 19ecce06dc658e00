//! The container's monitor, `ketch-shim`: which executable, and how it is started and
//! reports that its container runs.

use super::*;

/// An installed `ketch-shim`: beside the running executable (or one directory up, for test
/// binaries in `deps/`); in `libexec/ketch/` beside the directory this code was loaded from
/// (libengine installed under a prefix by `make -C capi install`: PREFIX/lib's library
/// finds PREFIX/libexec/ketch/ketch-shim); then on `PATH`.
fn installed_shim() -> Option<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        dirs.push(dir.to_path_buf());
        dirs.push(dir.join(".."));
    }
    if let Some(lib) = loaded_from().as_deref().and_then(Path::parent) {
        dirs.push(lib.join("../libexec/ketch"));
    }
    if let Some(p) = dirs
        .iter()
        .map(|d| d.join("ketch-shim"))
        .find(|p| p.is_file())
    {
        return Some(p);
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("ketch-shim"))
            .find(|p| p.is_file())
    })
}

/// The file this code was loaded from: the shared library it is in, or the executable.
fn loaded_from() -> Option<PathBuf> {
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr fills `info` for an address in a loaded object; the name it points to
    // lives as long as the object, and is copied at once.
    let found = unsafe { libc::dladdr(loaded_from as *const libc::c_void, &mut info) } != 0;
    if !found || info.dli_fname.is_null() {
        return None;
    }
    let name = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) };
    Some(PathBuf::from(std::ffi::OsStr::from_bytes(name.to_bytes())))
}

/// Runs a shim with a report pipe as fd 3 and returns once it reports that its process
/// runs (or why it does not). Detached, the shim goes on in a session of its own and is
/// reaped in the background; attached, its child handle is returned to wait on.
/// How a container's monitor is started.
pub(super) enum ShimMode {
    /// On its own, stdio to /dev/null.
    Detached,
    /// Sharing this process's stdio, which waits for it; the output streams not attached
    /// (`run -a`) go to /dev/null (the log has them all the same).
    Attached { stdout: bool, stderr: bool },
    /// On its own, its stdio a stream it copies to and from.
    Stream { stream: OwnedFd, framed: bool },
}

pub(super) fn spawn_reporting(
    mut cmd: Command,
    shim: &std::path::Path,
    detached: bool,
    null_stdio: bool,
) -> crate::Result<Option<std::process::Child>> {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| io_err("pipe")(e.into()))?;
    let wfd = w.as_raw_fd();
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(move || {
            if libc::dup2(wfd, 3) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    if detached && null_stdio {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
    }
    let mut child = cmd
        .spawn()
        .map_err(io_err(format!("run {}", shim.display())))?;
    drop(w);
    let mut report = String::new();
    let mut rf = fs::File::from(r);
    let _ = rf.read_to_string(&mut report);
    let report = report.trim();
    let failure = if let Some(rest) = report.strip_prefix("error ") {
        let (code, message) = rest.split_once(' ').unwrap_or(("125", rest));
        Some(ContainerError::Start {
            code: code.parse().unwrap_or(125),
            message: message.to_string(),
        })
    } else if !report.starts_with("ok") {
        Some(ContainerError::Start {
            code: 125,
            message: format!("ketch-shim exited without starting the process ({report:?})"),
        })
    } else {
        None
    };
    if let Some(e) = failure {
        let _ = child.wait();
        return Err(e.into());
    }
    if detached {
        // Reap the shim when it exits, so no zombie is left with this process.
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        return Ok(None);
    }
    Ok(Some(child))
}

impl Containers<'_> {
    /// The `ketch-shim` executable: the one the engine was opened with, `KETCH_SHIM`, the
    /// one built into the program (written into the root's `bin/`), then one beside the
    /// running executable (or one directory up, for test binaries in `deps/`) or on `PATH`.
    pub(crate) fn shim(&self) -> crate::Result<PathBuf> {
        self.shim_with(std::env::var_os("KETCH_SHIM"))
    }

    /// [`Containers::shim`], with `from_env` as `KETCH_SHIM`.
    fn shim_with(&self, from_env: Option<std::ffi::OsString>) -> crate::Result<PathBuf> {
        if let Some(p) = &self.st.shim {
            return Ok(p.clone());
        }
        if let Some(p) = from_env {
            return Ok(PathBuf::from(p));
        }
        if let Some(bytes) = self.st.embedded_shim {
            return self.materialized_shim(bytes);
        }
        installed_shim().ok_or_else(|| ContainerError::NoShim.into())
    }

    /// The built-in shim as a file: `bin/ketch-shim-DIGEST` in the root, written once (to a
    /// temporary name, then renamed, so a concurrent start never runs half a file).
    fn materialized_shim(&self, bytes: &[u8]) -> crate::Result<PathBuf> {
        use sha2::Digest;
        let digest = hex::encode(sha2::Sha256::digest(bytes));
        let dir = self.st.root.join("bin");
        let path = dir.join(format!("ketch-shim-{}", &digest[..16]));
        if fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() == bytes.len() as u64) {
            return Ok(path);
        }
        let write = || -> io::Result<()> {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            fs::create_dir_all(&dir)?;
            let tmp = dir.join(format!(".ketch-shim-{}", crate::util::random_hex(8)));
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o755)
                .open(&tmp)?;
            let done = f
                .write_all(bytes)
                .and_then(|()| f.sync_all())
                .and_then(|()| fs::rename(&tmp, &path));
            if done.is_err() {
                let _ = fs::remove_file(&tmp);
            }
            done
        };
        write().map_err(io_err(format!("write {}", path.display())))?;
        Ok(path)
    }
}

#[cfg(test)]
mod shim_tests {
    use crate::testutil::scratch_engine_with;

    /// A shim the program carries is written once per content into the root's `bin/`, as an
    /// executable; an explicit shim wins over `KETCH_SHIM`, which wins over it.
    #[test]
    fn a_carried_shim_is_written_once_per_content() {
        static ONE: &[u8] = b"#!/bin/sh\necho one\n";
        static TWO: &[u8] = b"#!/bin/sh\necho two\n";
        let e = scratch_engine_with(|o| o.embedded_shim = Some(ONE));
        let first = e.containers().shim_with(None).unwrap();
        assert!(
            first.starts_with(e.dir.path().join("root/bin")),
            "{first:?}"
        );
        assert_eq!(std::fs::read(&first).unwrap(), ONE);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&first).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        let written = std::fs::metadata(&first).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(e.containers().shim_with(None).unwrap(), first);
        assert_eq!(
            std::fs::metadata(&first).unwrap().modified().unwrap(),
            written
        );
        let other = scratch_engine_with(|o| o.embedded_shim = Some(TWO));
        let second = other.containers().shim_with(None).unwrap();
        assert_ne!(second.file_name(), first.file_name());
        // Nothing but the shim in bin/: no temporary file left.
        let names: Vec<_> = std::fs::read_dir(e.dir.path().join("root/bin"))
            .unwrap()
            .map(|d| d.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        let explicit = scratch_engine_with(|o| {
            o.embedded_shim = Some(ONE);
            o.shim = Some("/opt/my-shim".into());
        });
        let env = Some("/env/shim".into());
        let got = explicit.containers().shim_with(env.clone()).unwrap();
        assert_eq!(got, std::path::Path::new("/opt/my-shim"));
        assert_eq!(
            e.containers().shim_with(env).unwrap(),
            std::path::Path::new("/env/shim")
        );
    }
}
