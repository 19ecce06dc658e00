//! `ketch daemon`: the Docker Engine API on UNIX sockets, served by the engine of this root.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::Cli;

#[derive(Args)]
pub struct DaemonArgs {
    /// Where to listen: unix:///path or tcp://HOST:PORT (repeatable)
    #[arg(short = 'H', long = "host")]
    hosts: Vec<String>,
    /// Group for the UNIX socket (default: root's)
    #[arg(short = 'G', long)]
    group: Option<String>,
}

/// A TCP address the daemon may listen on without TLS: loopback only.
fn loopback_only(addrs: &[std::net::SocketAddr]) -> bool {
    !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
}

pub const DEFAULT_SOCKET: &str = "/run/ketch/ketch.sock";

/// Binds a UNIX socket, taking over a stale one (a file nobody listens on any more).
fn bind(path: &Path, group: Option<u32>) -> Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            bail!("{} is in use by another daemon", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("remove stale {}", path.display()))?;
    }
    let l = UnixListener::bind(path).with_context(|| format!("listen on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    if let Some(gid) = group {
        std::os::unix::fs::chown(path, None, Some(gid))?;
    }
    Ok(l)
}

fn group_id(name: &str) -> Result<u32> {
    if let Ok(n) = name.parse() {
        return Ok(n);
    }
    let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
    groups
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&name)).then(|| f.get(2)?.parse().ok())?
        })
        .with_context(|| format!("no group {name:?}"))
}

pub fn run(cli: &Cli, a: &DaemonArgs) -> Result<ExitCode> {
    let group = a.group.as_deref().map(group_id).transpose()?;
    let hosts = if !a.hosts.is_empty() {
        a.hosts.clone()
    } else if !cli.host.is_empty() {
        cli.host.clone()
    } else {
        vec![format!("unix://{DEFAULT_SOCKET}")]
    };
    let mut paths: Vec<PathBuf> = Vec::new();
    let mut listeners: Vec<(String, ketch::server::Listener)> = Vec::new();
    // TLS on TCP listeners, as dockerd: --tls serves it, --tlsverify also asks each client for
    // a certificate signed by the CA.
    let tls = cli
        .tls_files()
        .map(|f| ketch::tls::server_config(&f))
        .transpose()
        .context("TLS")?;
    for h in &hosts {
        match h.split_once("://") {
            Some(("unix", p)) => {
                let path = PathBuf::from(p);
                let l = bind(&path, group)?;
                listeners.push((p.to_string(), ketch::server::Listener::Unix(l)));
                paths.push(path);
            }
            Some(("tcp", addr)) => {
                use std::net::ToSocketAddrs;
                let resolved: Vec<std::net::SocketAddr> = addr
                    .to_socket_addrs()
                    .with_context(|| format!("{h}: not an address"))?
                    .collect();
                let verified = cli.tlsverify && tls.is_some();
                if !verified && !loopback_only(&resolved) {
                    bail!(
                        "refusing to listen on {h} without mutual TLS: anyone who reaches it would control this host. \
                         Listen on a loopback address (tcp://127.0.0.1:2375), or give --tlsverify with \
                         --tlscacert, --tlscert and --tlskey"
                    );
                }
                let l = std::net::TcpListener::bind(&resolved[..])
                    .with_context(|| format!("listen on {h}"))?;
                let l = match &tls {
                    Some(config) => ketch::server::Listener::Tls(l, config.clone()),
                    None => ketch::server::Listener::Tcp(l),
                };
                listeners.push((h.clone(), l));
            }
            _ => bail!("{h}: want unix:///path or tcp://HOST:PORT"),
        }
    }
    let engine = Arc::new(cli.engine()?);
    // SIGINT and SIGTERM end the daemon; its sockets go with it, its containers stay.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let to_remove = paths.clone();
        std::thread::spawn(move || {
            let mut sig = 0;
            libc::sigwait(&set, &mut sig);
            for p in &to_remove {
                let _ = std::fs::remove_file(p);
            }
            std::process::exit(0);
        });
    }
    if engine.keep_cluster()? {
        eprintln!("ketch daemon: keeping this host's overlay networks current");
    }
    for (name, l) in listeners {
        eprintln!("ketch daemon: API listening on {name}");
        let engine = engine.clone();
        std::thread::spawn(move || ketch::server::serve(engine, l));
    }
    loop {
        std::thread::park();
    }
}
