//! `exec`: a new process in a running container, started by its own monitor.

use super::*;

/// What `exec` takes: Docker's flags.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub detach: bool,
    pub interactive: bool,
    pub tty: bool,
    /// The terminal's size at the start (rows, columns), with `tty`.
    pub console_size: Option<(u16, u16)>,
}

impl Containers<'_> {
    /// Runs a new process in a running container. Attached, returns its exit status.
    pub fn exec(
        &self,
        name: &str,
        opts: &ExecOptions,
        on_spawn: &dyn Fn(u32),
    ) -> crate::Result<i32> {
        let child = self.exec_spawn(name, opts, false)?;
        let Some(mut child) = child else { return Ok(0) };
        on_spawn(child.id());
        let status = child.wait().map_err(io_err("wait for ketch-shim"))?;
        Ok(status.code().unwrap_or(125))
    }

    /// Starts a process in a running container; attached, returns the monitor's child
    /// handle, with its output on pipes if `piped` (for a front door that frames it, the
    /// daemon's exec), else on this process's stdio.
    pub fn exec_spawn(
        &self,
        name: &str,
        opts: &ExecOptions,
        piped: bool,
    ) -> crate::Result<Option<std::process::Child>> {
        let c = self.get(name)?;
        if c.status != Status::Running || c.task.pid <= 0 {
            return Err(ContainerError::Conflict {
                reason: format!("container {} is not running", c.record.id),
            }
            .into());
        }
        if opts.cmd.is_empty() {
            return Err(ContainerError::Invalid {
                reason: "exec needs a command".into(),
            }
            .into());
        }
        let shim = self.shim()?;
        let mut cmd = Command::new(&shim);
        cmd.arg("exec").arg(&c.bundle).arg(c.task.pid.to_string());
        cmd.args(["--pid-start", &task_start(&c).to_string()]);
        cmd.args(["--owner", &c.record.id]);
        if !opts.detach {
            cmd.arg("--attach");
        }
        if opts.interactive {
            cmd.arg("--stdin");
        }
        if opts.tty {
            cmd.arg("--tty");
            if let Some((h, w)) = opts.console_size.filter(|(h, w)| *h > 0 && *w > 0) {
                cmd.args(["--size", &format!("{h}x{w}")]);
            }
        }
        if let Some(u) = &opts.user {
            cmd.args(["--user", u]);
        }
        if let Some(w) = &opts.workdir {
            cmd.args(["--cwd", w]);
        }
        for e in &opts.env {
            cmd.args(["--env", e]);
        }
        cmd.arg("--").args(&opts.cmd);
        if piped && !opts.detach {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
            cmd.stdin(if opts.interactive {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        }
        spawn_reporting(cmd, &shim, opts.detach, true)
    }
}

/// Sets the terminal size of an exec started with a terminal: `monitor` is a pidfd of its
/// monitor (the child `container_exec_spawn` returned), taken before it could be waited for.
pub fn exec_resize(monitor: &impl AsFd, rows: u16, cols: u16) -> io::Result<()> {
    // A siginfo as sigqueue(3) makes it: signal, SI_QUEUE, the sender, and the value. The
    // fields after the first three sit in a union that starts at 16 on 64-bit ABIs.
    let mut info = [0u32; 32];
    let base = if cfg!(target_pointer_width = "64") {
        4
    } else {
        3
    };
    info[0] = EXEC_RESIZE_SIGNAL as u32;
    info[2] = libc::SI_QUEUE as u32;
    info[base] = std::process::id();
    // SAFETY: plain integers.
    info[base + 1] = unsafe { libc::getuid() };
    info[base + 2] = (u32::from(rows) << 16) | u32::from(cols);
    // SAFETY: `info` is a siginfo_t's size (128 bytes) and lives across the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            monitor.as_fd().as_raw_fd(),
            EXEC_RESIZE_SIGNAL,
            info.as_ptr(),
            0,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
