//! Registries for the tests, all on loopback: `ketch registry serve`, Debian's
//! `docker-registry` (distribution), and a proxy in front of either that breaks what passes
//! through it on demand.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{ketch_bin, random_hex};

fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl in the child before exec; async-signal-safe.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

fn wait_port(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An htpasswd file with one user, as `htpasswd -B` writes it.
pub fn htpasswd(dir: &Path, user: &str, password: &str) -> PathBuf {
    let path = dir.join(format!("htpasswd-{}", random_hex(4)));
    let hash = bcrypt::hash(password, 5).unwrap();
    std::fs::write(&path, format!("{user}:{hash}\n")).unwrap();
    path
}

/// A registry process on a loopback port, killed when dropped.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`
    pub addr: String,
    pub dir: tempfile::TempDir,
}

impl Registry {
    /// `ketch registry serve` with `args` (`--htpasswd F`, `--token-auth` ...) on
    /// 127.0.0.1.
    pub fn ketch(args: &[&str]) -> Registry {
        Registry::ketch_under(&[], "127.0.0.1", args)
    }

    /// `ketch registry serve` run under `wrap` (`nsenter --net=...`), on `ip`.
    pub fn ketch_under(wrap: &[String], ip: &str, args: &[&str]) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("ketch-registry-")
            .tempdir()
            .unwrap();
        let mut cmd = match wrap.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(ketch_bin());
                c
            }
            None => Command::new(ketch_bin()),
        };
        cmd.arg("--root")
            .arg(dir.path().join("data"))
            .args(["registry", "serve", "--addr", &format!("{ip}:0")])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stderr.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // `registry listening on http://127.0.0.1:PORT (root ...)`
        let addr = line
            .split("://")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("registry serve said {line:?}"))
            .to_string();
        Registry { child, addr, dir }
    }

    /// Debian's `docker-registry` (distribution 2.8) with htpasswd auth when given.
    pub fn distribution(htpasswd: Option<&Path>) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("ketch-distribution-")
            .tempdir()
            .unwrap();
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let addr = format!("127.0.0.1:{port}");
        let auth = match htpasswd {
            Some(p) => format!(
                "auth:\n  htpasswd:\n    realm: ketch-test\n    path: {}\n",
                p.display()
            ),
            None => String::new(),
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{auth}",
            dir.path().join("data").display()
        );
        let cfg = dir.path().join("config.yml");
        std::fs::write(&cfg, config).unwrap();
        let mut cmd = Command::new("docker-registry");
        cmd.arg("serve")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .expect("docker-registry (scripts/setup --tests installs it)");
        wait_port(&addr);
        Registry { child, addr, dir }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the proxy does to blob downloads (`GET .../blobs/sha256:...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// One byte of the body changed.
    Corrupt,
    /// The connection closed after this many bytes of the body.
    Drop(usize),
    /// After this many bytes, nothing more until the fault is changed.
    Stall(usize),
}

/// A proxy in front of a registry, one upstream connection per request, that logs every
/// request line (with its `Range`) and applies a [`Fault`] to blob downloads.
pub struct Proxy {
    pub addr: String,
    pub log: Arc<Mutex<Vec<String>>>,
    fault: Arc<Mutex<Fault>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    pub fn new(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let log = Arc::new(Mutex::new(Vec::new()));
        let fault = Arc::new(Mutex::new(Fault::None));
        let stop = Arc::new(AtomicBool::new(false));
        let (l2, f2, s2, up) = (
            log.clone(),
            fault.clone(),
            stop.clone(),
            upstream.to_string(),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s2.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (l, f, up, s) = (l2.clone(), f2.clone(), up.clone(), s2.clone());
                std::thread::spawn(move || {
                    let _ = relay(conn, &up, &l, &f, &s);
                });
            }
        });
        Proxy {
            addr,
            log,
            fault,
            stop,
        }
    }

    pub fn set(&self, f: Fault) {
        *self.fault.lock().unwrap() = f;
    }

    /// Sets the fault from another thread.
    pub fn setter(&self) -> impl Fn(Fault) + Send + 'static {
        let fault = self.fault.clone();
        move |f| *fault.lock().unwrap() = f
    }

    /// Request lines seen that contain `needle`.
    pub fn seen(&self, needle: &str) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.set(Fault::None);
        let _ = TcpStream::connect(&self.addr);
    }
}

/// One connection: each request read, sent upstream on a connection of its own with
/// `Connection: close`, the answer relayed (and broken as the fault says).
fn relay(
    client: TcpStream,
    upstream: &str,
    log: &Mutex<Vec<String>>,
    fault: &Mutex<Fault>,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut client = client;
    loop {
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let end = line == "\r\n";
            if !line.to_ascii_lowercase().starts_with("connection:") {
                head.extend_from_slice(line.as_bytes());
            }
            if end {
                break;
            }
        }
        let text = String::from_utf8_lossy(&head).to_string();
        let first = text.lines().next().unwrap_or_default().to_string();
        let range = text
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("range:"))
            .map(|l| format!(" [{}]", l.trim()))
            .unwrap_or_default();
        log.lock().unwrap().push(format!("{first}{range}"));
        let len: usize = text
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap_or(0))
            })
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        reader.read_exact(&mut body)?;
        let mut up = TcpStream::connect(upstream)?;
        // Before the blank line: `Connection: close`.
        let cut = head.len() - 2;
        up.write_all(&head[..cut])?;
        up.write_all(b"Connection: close\r\n\r\n")?;
        up.write_all(&body)?;
        let blob = first.starts_with("GET ") && first.contains("/blobs/sha256:");
        let f = if blob {
            *fault.lock().unwrap()
        } else {
            Fault::None
        };
        // The answer: its head as it is, its body through the fault.
        let mut upr = BufReader::new(up);
        let mut rhead = Vec::new();
        loop {
            let mut line = String::new();
            if upr.read_line(&mut line)? == 0 {
                return Ok(());
            }
            rhead.extend_from_slice(line.as_bytes());
            if line == "\r\n" {
                break;
            }
        }
        client.write_all(&rhead)?;
        let mut sent = 0usize;
        let mut buf = vec![0u8; 16 << 10];
        let mut corrupted = false;
        loop {
            let n = upr.read(&mut buf)?;
            if n == 0 {
                break;
            }
            let mut chunk = buf[..n].to_vec();
            match f {
                Fault::Corrupt if !corrupted => {
                    chunk[0] ^= 0xff;
                    corrupted = true;
                }
                Fault::Drop(at) if sent + n >= at => {
                    client.write_all(&chunk[..at.saturating_sub(sent)])?;
                    let _ = client.shutdown(std::net::Shutdown::Both);
                    return Ok(());
                }
                Fault::Stall(at) if sent + n >= at => {
                    client.write_all(&chunk[..at.saturating_sub(sent)])?;
                    while *fault.lock().unwrap() == f && !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    let _ = client.shutdown(std::net::Shutdown::Both);
                    return Ok(());
                }
                _ => {}
            }
            client.write_all(&chunk)?;
            sent += n;
        }
        client.flush()?;
    }
}

/// `curl` against a registry (uploads and deletes the tests make by hand).
pub fn curl(args: &[&str]) -> String {
    let o = Command::new("curl")
        .args(["-sS", "--noproxy", "*"])
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "curl {args:?}: {o:?}");
    String::from_utf8_lossy(&o.stdout).to_string()
}
