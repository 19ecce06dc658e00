//! `exec`, and the terminal it may take over.

use super::*;

#[derive(Args)]
pub struct ExecArgs {
    /// Detached mode: run command in the background
    #[arg(short = 'd', long)]
    detach: bool,
    /// Override the key sequence for detaching a container (through a daemon)
    #[arg(long, value_name = "string", default_value = "")]
    detach_keys: String,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    tty: bool,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long)]
    workdir: Option<String>,
    container: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    command: Vec<String>,
}

pub fn exec(cli: &Cli, a: &ExecArgs) -> Result<ExitCode> {
    let _raw = if a.tty && !a.detach {
        RawMode::enter()
    } else {
        None
    };
    let opts = ketch::runtime::ExecOptions {
        cmd: a.command.clone(),
        env: a.env.iter().map(|e| expand_env(e)).collect(),
        user: a.user.clone(),
        workdir: a.workdir.clone(),
        detach: a.detach,
        interactive: a.interactive,
        tty: a.tty,
        console_size: if a.tty { terminal_size() } else { None },
    };
    if let Some(client) = cli.remote()? {
        let code = crate::remote::exec(&client, &a.container, &opts, &a.detach_keys)?;
        return Ok(ExitCode::from(code.clamp(0, 255) as u8));
    }
    super::create::embedded_detach_keys(&a.detach_keys)?;
    let engine = cli.engine()?;
    let code = match engine.containers().exec(&a.container, &opts, &|_| {}) {
        Ok(code) => code,
        // The process did not start: said as a daemon's exec says it, on stderr.
        Err(e)
            if matches!(
                e.downcast_ref(),
                Some(ketch::runtime::ContainerError::Start { .. })
            ) =>
        {
            eprintln!("{e}");
            e.downcast_ref::<ketch::runtime::ContainerError>()
                .map_or(125, |c| c.exit_code())
        }
        Err(e) => return Err(e.into()),
    };
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

/// This terminal in raw mode for as long as it lives; restored on drop.
/// The size of the terminal on stdin, if it is one: (rows, columns).
pub fn terminal_size() -> Option<(u16, u16)> {
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ fills `ws` and fails on anything but a terminal.
    (unsafe { libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) } == 0 && ws.ws_row > 0)
        .then_some((ws.ws_row, ws.ws_col))
}

pub struct RawMode {
    saved: libc::termios,
}

impl RawMode {
    pub fn enter() -> Option<RawMode> {
        if !io::stdin().is_terminal() {
            return None;
        }
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return None;
            }
            let saved = t;
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(0, libc::TCSANOW, &t);
            Some(RawMode { saved })
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &self.saved) };
    }
}
