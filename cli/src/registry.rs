//! Registry verbs: pull, push, login, logout, and `registry serve`.

use std::io::{self, IsTerminal, Read};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use ketch::api::Reference;
use ketch::api::{Api, AuthConfig, CredentialStore, PullOptions, PushOptions};

use crate::Cli;
use crate::progress::Progress;

#[derive(Args)]
pub struct PullArgs {
    /// Download all tagged images in the repository
    #[arg(short = 'a', long = "all-tags")]
    all_tags: bool,
    /// Set platform if server is multi-platform capable (os/arch[/variant])
    #[arg(long)]
    platform: Option<String>,
    /// Suppress verbose output
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Require HTTPS and verify certificates (false: as an insecure registry)
    #[arg(long = "tls-verify", default_value_t = true, action = clap::ArgAction::Set)]
    tls_verify: bool,
    /// NAME[:TAG|@DIGEST]
    name: String,
}

/// Pulls `name` through `api`, drawing the progress on `out` (nothing with `quiet`).
pub fn pull_with(
    api: &dyn Api,
    name: &str,
    all_tags: bool,
    platform: Option<String>,
    quiet: bool,
    to_stderr: bool,
) -> Result<Vec<String>> {
    pull_opts(
        api,
        PullOptions {
            reference: name.to_string(),
            all_tags,
            platform,
            auth: None,
            insecure: false,
        },
        quiet,
        to_stderr,
    )
}

fn pull_opts(
    api: &dyn Api,
    opts: PullOptions,
    quiet: bool,
    to_stderr: bool,
) -> Result<Vec<String>> {
    let r = Reference::parse(&opts.reference)?;
    let all_tags = opts.all_tags;
    let tty = if to_stderr {
        io::stderr().is_terminal()
    } else {
        io::stdout().is_terminal()
    };
    let out: Box<dyn io::Write> = if to_stderr {
        Box::new(io::stderr())
    } else {
        Box::new(io::stdout())
    };
    let mut p = Progress::new(out, tty);
    if !quiet && !all_tags && r.tag().is_none() && r.digest().is_none() {
        p.show(&ketch::api::ProgressMessage::status(
            "Using default tag: latest",
        ));
    }
    let pulled = api.image_pull(&opts, &mut |m| {
        if !quiet {
            p.show(m)
        }
    })?;
    Ok(pulled)
}

pub fn pull(cli: &Cli, a: &PullArgs) -> Result<ExitCode> {
    let api = cli.api()?;
    let r = Reference::parse(&a.name)?;
    let opts = PullOptions {
        reference: a.name.clone(),
        all_tags: a.all_tags,
        platform: a.platform.clone(),
        auth: None,
        insecure: !a.tls_verify,
    };
    pull_opts(&*api, opts, a.quiet, false)?;
    // Docker ends with the full name of what it pulled.
    let full = if a.all_tags {
        r.name()
    } else if r.digest().is_some() {
        r.to_string()
    } else {
        r.with_default_tag().to_string()
    };
    println!("{full}");
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct PushArgs {
    /// Suppress verbose output
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Require HTTPS and verify certificates (false: as an insecure registry)
    #[arg(long = "tls-verify", default_value_t = true, action = clap::ArgAction::Set)]
    tls_verify: bool,
    /// NAME[:TAG]
    name: String,
}

pub fn push(cli: &Cli, a: &PushArgs) -> Result<ExitCode> {
    let api = cli.api()?;
    let r = Reference::parse(&a.name)?;
    let mut p = Progress::new(io::stdout(), io::stdout().is_terminal());
    if r.tag().is_none() && r.digest().is_none() && !a.quiet {
        p.show(&ketch::api::ProgressMessage::status(
            "Using default tag: latest",
        ));
    }
    let opts = PushOptions {
        reference: a.name.clone(),
        auth: None,
        insecure: !a.tls_verify,
    };
    let digest = api.image_push(&opts, &mut |m| {
        if !a.quiet {
            p.show(m)
        }
    })?;
    if a.quiet {
        println!("{}", r.with_default_tag());
    } else {
        let _ = digest;
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct LoginArgs {
    /// Username
    #[arg(short = 'u', long)]
    username: Option<String>,
    /// Password (prefer --password-stdin)
    #[arg(short = 'p', long)]
    password: Option<String>,
    /// Take the password from stdin
    #[arg(long = "password-stdin")]
    password_stdin: bool,
    /// The registry (default: docker.io)
    server: Option<String>,
}

pub fn login(cli: &Cli, a: &LoginArgs) -> Result<ExitCode> {
    let server = a.server.clone().unwrap_or_else(|| "docker.io".to_string());
    let store = CredentialStore::user();
    let username = match &a.username {
        Some(u) => u.clone(),
        None => {
            if let Some(stored) = store.get(&server)?
                && a.password.is_none()
                && !a.password_stdin
            {
                // Docker logs in again with what it has.
                let api = cli.api()?;
                let mut auth = stored;
                auth.serveraddress = server.clone();
                api.registry_login(&auth)?;
                println!("Login Succeeded");
                return Ok(ExitCode::SUCCESS);
            }
            prompt("Username: ")?
        }
    };
    let password = if a.password_stdin {
        if a.password.is_some() {
            bail!("--password and --password-stdin are mutually exclusive");
        }
        let mut s = String::new();
        io::stdin()
            .read_to_string(&mut s)
            .context("read the password from stdin")?;
        s.trim_end_matches(['\n', '\r']).to_string()
    } else if let Some(p) = &a.password {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        p.clone()
    } else {
        prompt_hidden("Password: ")?
    };
    if username.is_empty() {
        bail!("Username is required");
    }
    if password.is_empty() {
        bail!("Password is required");
    }
    let auth = AuthConfig::basic(&server, &username, &password);
    let api = cli.api()?;
    let status = api.registry_login(&auth)?;
    store.store(&server, &auth)?;
    eprintln!(
        "WARNING! Your password will be stored unencrypted in {}.",
        store.path().display()
    );
    println!("{status}");
    Ok(ExitCode::SUCCESS)
}

fn prompt(label: &str) -> Result<String> {
    if !io::stdin().is_terminal() {
        bail!("Cannot perform an interactive login from a non TTY device");
    }
    eprint!("{label}");
    let mut s = String::new();
    io::stdin().read_line(&mut s)?;
    Ok(s.trim().to_string())
}

/// Reads a line from the terminal with echo off.
fn prompt_hidden(label: &str) -> Result<String> {
    if !io::stdin().is_terminal() {
        bail!("Cannot perform an interactive login from a non TTY device");
    }
    eprint!("{label}");
    let fd = libc::STDIN_FILENO;
    // SAFETY: termios calls on stdin with a zeroed, then filled, struct.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    let have = unsafe { libc::tcgetattr(fd, &mut saved) } == 0;
    if have {
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        // SAFETY: as above.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
    }
    let mut s = String::new();
    let res = io::stdin().read_line(&mut s);
    if have {
        // SAFETY: as above.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    }
    eprintln!();
    res?;
    Ok(s.trim_end_matches(['\n', '\r']).to_string())
}

#[derive(Args)]
pub struct LogoutArgs {
    /// The registry (default: docker.io)
    server: Option<String>,
}

pub fn logout(_cli: &Cli, a: &LogoutArgs) -> Result<ExitCode> {
    let server = a.server.clone().unwrap_or_else(|| "docker.io".to_string());
    let store = CredentialStore::user();
    let key = ketch::api::config_key(&server);
    if store.erase(&server)? {
        println!("Removing login credentials for {key}");
    } else {
        println!("Not logged in to {key}");
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Subcommand)]
pub enum RegistryCommand {
    /// Serve a registry (the OCI distribution API) from a directory
    Serve(ServeArgs),
}

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:5000")]
    addr: String,
    /// Users allowed (htpasswd -B); without it, anyone may pull and push
    #[arg(long)]
    htpasswd: Option<PathBuf>,
    /// Issue bearer tokens at /token to the htpasswd users, instead of basic auth on every
    /// request
    #[arg(long = "token-auth")]
    token_auth: bool,
    /// Serve TLS with this certificate (PEM)
    #[arg(long = "tls-cert", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's key (PEM)
    #[arg(long = "tls-key", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

pub fn run(cli: &Cli, c: &RegistryCommand) -> Result<ExitCode> {
    match c {
        RegistryCommand::Serve(a) => serve(cli, a),
    }
}

/// Where a registry keeps its blobs and repositories when `--root` does not say.
const REGISTRY_ROOT: &str = "/var/lib/ketch-registry";

fn serve(cli: &Cli, a: &ServeArgs) -> Result<ExitCode> {
    // `--root` names the registry's directory here; never the engine's own root.
    let root = if cli.root == std::path::Path::new(ketch::engine::DEFAULT_ROOT) {
        PathBuf::from(REGISTRY_ROOT)
    } else {
        cli.root.clone()
    };
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(cert), Some(key)) => Some(ketch::tls::server_config(&ketch::tls::TlsFiles {
            ca: None,
            cert: Some(cert.clone()),
            key: Some(key.clone()),
            verify: false,
        })?),
        _ => None,
    };
    let opts = ketch::registry::serve::ServeOptions {
        root: root.clone(),
        htpasswd: a.htpasswd.clone(),
        token_auth: a.token_auth,
    };
    let registry = ketch::registry::serve::Registry::open(&opts)?;
    let listener = TcpListener::bind(&a.addr).with_context(|| format!("listen on {}", a.addr))?;
    eprintln!(
        "registry listening on {}://{} (root {})",
        if tls.is_some() { "https" } else { "http" },
        listener.local_addr()?,
        root.display()
    );
    registry.serve(listener, tls)?;
    Ok(ExitCode::SUCCESS)
}
