//! TLS for the API over TCP, both ends: rustls configurations from PEM files (mutual TLS as
//! dockerd's `--tlsverify`), and a relay that ends TLS on one side of a socket pair. The HTTP
//! code on the other side sees a plain UNIX stream, which it can clone, half-close and hijack
//! as it does a local connection.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::error::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS: {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("TLS: {0}")]
    Config(String),
}

crate::error::from_module_error!(TlsError);

impl TlsError {
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidArgument
    }
}

/// The PEM files of one end: the CA its peer's certificate must be signed by (with `verify`),
/// and its own certificate and key.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The peer must present a certificate signed by `ca` (server: client certificates;
    /// client: the server's).
    pub verify: bool,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file = |reason: String| TlsError::File {
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file(e.to_string()))?;
    if certs.is_empty() {
        return Err(file("no certificate in the file".into()));
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in certs(path)? {
        roots.add(c).map_err(|e| TlsError::File {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    Ok(roots)
}

fn need<'a>(p: &'a Option<PathBuf>, flag: &str) -> Result<&'a Path, TlsError> {
    p.as_deref()
        .ok_or_else(|| TlsError::Config(format!("{flag} is required")))
}

/// A listener's configuration: its certificate and key; with `verify`, only clients with a
/// certificate signed by the CA get through the handshake.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let cfg = |e: rustls::Error| TlsError::Config(e.to_string());
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(cfg)?;
    let builder = if files.verify {
        let roots = roots(need(&files.ca, "--tlscacert")?)?;
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider())
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let config = builder
        .with_single_cert(
            certs(need(&files.cert, "--tlscert")?)?,
            key(need(&files.key, "--tlskey")?)?,
        )
        .map_err(cfg)?;
    Ok(Arc::new(config))
}

/// A client's configuration: the CA the server's certificate must be signed by, and the
/// client's own certificate and key when it has them.
pub fn client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>, TlsError> {
    let cfg = |e: rustls::Error| TlsError::Config(e.to_string());
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(cfg)?
        .with_root_certificates(roots(need(&files.ca, "--tlscacert")?)?);
    let config = match (&files.cert, &files.key) {
        (Some(c), Some(k)) => builder
            .with_client_auth_cert(certs(c)?, key(k)?)
            .map_err(cfg)?,
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(TlsError::Config(
                "--tlscert and --tlskey go together".into(),
            ));
        }
    };
    Ok(Arc::new(config))
}

/// The server side of a TLS connection on `tcp`, as a plain stream (relayed on a thread).
pub fn accept(config: Arc<ServerConfig>, tcp: TcpStream) -> io::Result<UnixStream> {
    let conn = rustls::ServerConnection::new(config).map_err(io::Error::other)?;
    spawn_relay(conn.into(), tcp)
}

/// The client side of a TLS connection to `host` on `tcp`, as a plain stream.
pub fn connect(config: Arc<ClientConfig>, host: &str, tcp: TcpStream) -> io::Result<UnixStream> {
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{host}: {e}")))?;
    let mut conn = rustls::ClientConnection::new(config, name).map_err(io::Error::other)?;
    // The handshake here, so that a refused certificate is this call's error.
    let mut t = &tcp;
    while conn.is_handshaking() {
        conn.complete_io(&mut t)?;
    }
    spawn_relay(conn.into(), tcp)
}

fn spawn_relay(conn: rustls::Connection, tcp: TcpStream) -> io::Result<UnixStream> {
    let (ours, theirs) = UnixStream::pair()?;
    std::thread::spawn(move || relay(conn, tcp, theirs));
    Ok(ours)
}

/// Copies between the TLS connection on `tcp` and the plain stream `plain` until both sides
/// have ended. An end is passed on as an end: close_notify (or the peer's EOF) shuts
/// `plain` for writing, and `plain`'s EOF sends close_notify.
fn relay(mut conn: rustls::Connection, tcp: TcpStream, plain: UnixStream) {
    use rustix::event::{PollFd, PollFlags, poll};
    let _ = tcp.set_nonblocking(true);
    let _ = plain.set_nonblocking(true);
    let would_block = |e: &io::Error| e.kind() == io::ErrorKind::WouldBlock;
    let mut to_plain: Vec<u8> = Vec::new();
    let mut tls_done = false;
    let mut plain_done = false;
    let mut plain_shut = false;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while conn.wants_write() {
            match conn.write_tls(&mut &tcp) {
                Ok(_) => {}
                Err(e) if would_block(&e) => break,
                Err(_) => return,
            }
        }
        while !to_plain.is_empty() {
            match (&plain).write(&to_plain) {
                Ok(0) => return,
                Ok(n) => {
                    to_plain.drain(..n);
                }
                Err(e) if would_block(&e) => break,
                Err(_) => return,
            }
        }
        if tls_done && to_plain.is_empty() && !plain_shut {
            let _ = plain.shutdown(Shutdown::Write);
            plain_shut = true;
        }
        if plain_done && !conn.wants_write() {
            let _ = tcp.shutdown(Shutdown::Write);
            if tls_done {
                return;
            }
        }
        let mut tcp_events = PollFlags::empty();
        if !tls_done && to_plain.len() < (1 << 20) {
            tcp_events |= PollFlags::IN;
        }
        if conn.wants_write() {
            tcp_events |= PollFlags::OUT;
        }
        let mut plain_events = PollFlags::empty();
        // Plain input is taken in when what TLS had to send is out: bounded buffers.
        if !plain_done && !conn.is_handshaking() && !conn.wants_write() {
            plain_events |= PollFlags::IN;
        }
        if !to_plain.is_empty() {
            plain_events |= PollFlags::OUT;
        }
        let mut fds = [
            PollFd::from_borrowed_fd(tcp.as_fd(), tcp_events),
            PollFd::from_borrowed_fd(plain.as_fd(), plain_events),
        ];
        match poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return,
        }
        let ready = |f: &PollFd, want: PollFlags| {
            !want.is_empty()
                && f.revents()
                    .intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR)
        };
        if ready(&fds[0], tcp_events & PollFlags::IN) {
            match conn.read_tls(&mut &tcp) {
                Ok(0) => tls_done = true,
                Ok(_) => match conn.process_new_packets() {
                    Err(_) => {
                        // The alert that says why, then nothing more.
                        let _ = conn.write_tls(&mut &tcp);
                        return;
                    }
                    Ok(state) => {
                        loop {
                            match conn.reader().read(&mut buf) {
                                Ok(0) => {
                                    tls_done = true;
                                    break;
                                }
                                Ok(n) => to_plain.extend_from_slice(&buf[..n]),
                                Err(e) if would_block(&e) => break,
                                Err(_) => {
                                    tls_done = true;
                                    break;
                                }
                            }
                        }
                        if state.peer_has_closed() {
                            tls_done = true;
                        }
                    }
                },
                Err(e) if would_block(&e) => {}
                Err(_) => tls_done = true,
            }
        }
        if ready(&fds[1], plain_events & PollFlags::IN) {
            match (&plain).read(&mut buf) {
                Ok(0) => {
                    plain_done = true;
                    conn.send_close_notify();
                }
                Ok(n) => {
                    if conn.writer().write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
                Err(e) if would_block(&e) => {}
                Err(_) => {
                    plain_done = true;
                    conn.send_close_notify();
                }
            }
        }
    }
}
