//! `commit`, `diff`, `export` and `cp`.

use super::*;

#[derive(Args)]
pub struct CommitArgs {
    container: String,
    reference: Option<String>,
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short, long)]
    author: Option<String>,
    /// Apply Dockerfile instruction to the created image
    #[arg(short, long)]
    change: Vec<String>,
    /// Commit message
    #[arg(short, long)]
    message: Option<String>,
    /// Pause container during commit
    #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pause: bool,
}

pub fn commit(cli: &Cli, a: &CommitArgs) -> Result<ExitCode> {
    let opts = ketch::runtime::CommitOptions {
        reference: a.reference.clone(),
        changes: a.change.clone(),
        message: a.message.clone(),
        author: a.author.clone(),
        pause: a.pause,
    };
    let id = cli
        .api()?
        .container_commit(&a.container, &opts)
        .map_err(|e| Exit(1, format!("Error response from daemon: {e}")))?;
    println!("{id}");
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct DiffArgs {
    container: String,
}

pub fn diff(cli: &Cli, a: &DiffArgs) -> Result<ExitCode> {
    let changes = cli
        .api()?
        .container_diff(&a.container)
        .map_err(|e| Exit(1, format!("Error response from daemon: {e}")))?;
    let mut out = io::stdout().lock();
    for c in changes {
        writeln!(out, "{} {}", c.kind, c.path)?;
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct ExportArgs {
    container: String,
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    output: Option<std::path::PathBuf>,
}

pub fn export(cli: &Cli, a: &ExportArgs) -> Result<ExitCode> {
    let engine = cli.api()?;
    match &a.output {
        Some(path) => {
            let special = std::fs::metadata(path).is_ok_and(|m| !m.is_file());
            if special {
                // A device or a pipe: written to as it is, never renamed over.
                let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
                engine
                    .container_export(&a.container, &mut f)
                    .map_err(|e| Exit(1, format!("Error response from daemon: {e}")))?;
            } else {
                // Written beside the target and renamed in place: never half a file there.
                let tmp = path.with_file_name(format!(
                    ".{}.ketch-{}",
                    path.file_name()
                        .map(|n| n.to_string_lossy())
                        .unwrap_or_default(),
                    std::process::id()
                ));
                let written = (|| -> Result<()> {
                    let mut f = std::fs::File::create(&tmp)?;
                    engine
                        .container_export(&a.container, &mut f)
                        .map_err(|e| Exit(1, format!("Error response from daemon: {e}")))?;
                    f.sync_all()?;
                    std::fs::rename(&tmp, path)?;
                    Ok(())
                })();
                if written.is_err() {
                    let _ = std::fs::remove_file(&tmp);
                }
                written?;
            }
        }
        None => {
            if io::stdout().is_terminal() {
                bail!(Exit(
                    1,
                    "cowardly refusing to save to a terminal. Use the -o flag or redirect".into()
                ));
            }
            let mut out = io::stdout().lock();
            engine
                .container_export(&a.container, &mut out)
                .map_err(|e| Exit(1, format!("Error response from daemon: {e}")))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct CpArgs {
    /// CONTAINER:SRC_PATH or a local path (- for a tar on stdin)
    src: String,
    /// CONTAINER:DEST_PATH or a local path (- for a tar on stdout)
    dest: String,
}

/// `CONTAINER:PATH`, or `None` for a local path (one with a `/` before any `:`).
pub(super) fn container_path(s: &str) -> Option<(&str, &str)> {
    let (c, p) = s.split_once(':')?;
    if c.is_empty() || c.contains('/') {
        return None;
    }
    Some((c, p))
}

/// `cp`: with archive semantics both ways (owners, modes, times; symlinks as links).
pub fn cp(cli: &Cli, a: &CpArgs) -> Result<ExitCode> {
    let engine = cli.api()?;
    let fail = |e: ketch::Error| Exit(1, format!("Error response from daemon: {e}"));
    match (container_path(&a.src), container_path(&a.dest)) {
        (Some((c, path)), None) => {
            if a.dest == "-" {
                let mut out = io::stdout().lock();
                engine.container_copy_out(c, path, &mut out).map_err(fail)?;
                return Ok(ExitCode::SUCCESS);
            }
            copy_to_host(&*engine, c, path, std::path::Path::new(&a.dest))?;
        }
        (None, Some((c, dest))) => {
            if a.src == "-" {
                engine
                    .container_copy_in(c, dest, &mut io::stdin())
                    .map_err(fail)?;
                return Ok(ExitCode::SUCCESS);
            }
            let src = std::path::Path::new(&a.src);
            let md = std::fs::symlink_metadata(src)
                .map_err(|e| Exit(1, format!("lstat {}: {e}", a.src)))?;
            let contents = a.src.ends_with("/.");
            let name = if contents {
                std::path::PathBuf::from(".")
            } else {
                std::path::PathBuf::from(src.file_name().unwrap_or(src.as_os_str()))
            };
            // The archive is made on a second thread while the helper reads it.
            let (mut r, w) = pipe()?;
            let src_owned = src.to_path_buf();
            let is_dir = md.is_dir();
            let maker = std::thread::spawn(move || -> io::Result<()> {
                let mut b = tar::Builder::new(io::BufWriter::with_capacity(1 << 20, w));
                b.follow_symlinks(false);
                b.mode(tar::HeaderMode::Complete);
                if is_dir {
                    b.append_dir_all(&name, &src_owned)?;
                } else {
                    b.append_path_with_name(&src_owned, &name)?;
                }
                b.into_inner()?.flush()
            });
            let copied = engine.container_copy_in(c, dest, &mut r);
            drop(r);
            let made = maker
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("panicked")));
            copied.map_err(fail)?;
            made?;
        }
        (Some(_), Some(_)) => bail!(Exit(
            1,
            "copying between containers is not supported".into()
        )),
        (None, None) => bail!(Exit(1, "must specify at least one container source".into())),
    }
    Ok(ExitCode::SUCCESS)
}

/// Extracts the container's archive of `path` at the local `dest`, as Docker does: into
/// `dest` if it is a directory, else as `dest`. The tar crate checks every entry stays
/// inside the directory it is unpacked in, symlinks included, so a hostile container cannot
/// write elsewhere on the host.
pub(super) fn copy_to_host(
    engine: &dyn Api,
    container: &str,
    path: &str,
    dest: &std::path::Path,
) -> Result<()> {
    let into_dir = dest.is_dir();
    let parent = if into_dir {
        dest.to_path_buf()
    } else {
        let p = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."))
            .to_path_buf();
        if !p.is_dir() {
            bail!(Exit(
                1,
                format!(
                    "invalid output path: directory {} does not exist",
                    p.display()
                )
            ));
        }
        p
    };
    // Unpacked into a fresh directory beside the destination, then moved into place.
    let stage = parent.join(format!(".ketch-cp-{}", std::process::id()));
    std::fs::create_dir(&stage)?;
    let result = (|| -> Result<()> {
        let (r, mut w) = pipe()?;
        let stage_dir = stage.clone();
        let unpacker = std::thread::spawn(move || -> io::Result<()> {
            let mut a = tar::Archive::new(io::BufReader::with_capacity(1 << 20, r));
            a.set_preserve_permissions(true);
            a.set_preserve_ownerships(true);
            a.set_preserve_mtime(true);
            a.unpack(&stage_dir)
        });
        let copied = engine.container_copy_out(container, path, &mut w);
        drop(w);
        let unpacked = unpacker
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("panicked")));
        copied.map_err(|e| Exit(1, format!("Error response from daemon: {e}")))?;
        unpacked?;
        if path.ends_with("/.") {
            // Contents: every top-level entry goes into the destination directory.
            std::fs::create_dir_all(dest)?;
            for e in std::fs::read_dir(&stage)? {
                let e = e?;
                std::fs::rename(e.path(), dest.join(e.file_name()))?;
            }
            return Ok(());
        }
        let Some(first) = std::fs::read_dir(&stage)?.next() else {
            return Ok(());
        };
        let first = first?.path();
        if into_dir {
            std::fs::rename(&first, dest.join(first.file_name().unwrap_or_default()))?;
        } else {
            std::fs::rename(&first, dest)?;
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&stage);
    result
}

/// A pipe, both ends closed on exec.
pub(super) fn pipe() -> io::Result<(std::fs::File, std::fs::File)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills both descriptors, which are owned from here on.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    use std::os::fd::FromRawFd;
    // SAFETY: fresh descriptors from pipe2, not owned elsewhere.
    Ok(unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    })
}
