//! The remote side: a client of the Docker Engine API on a UNIX socket or over TCP (with
//! TLS), as [`crate::server`] serves it. A request is one connection (`Connection: close`);
//! bodies and answers can be streams; attach and exec hijack the connection.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;

use crate::error::ErrorKind;
use crate::tls::TlsFiles;

mod api;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{url}: {reason}")]
    Url { url: String, reason: String },
    #[error("Cannot connect to the ketch daemon at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: io::Error,
    },
    #[error("talking to the daemon at {url}: {source}")]
    Io {
        url: String,
        #[source]
        source: io::Error,
    },
    #[error("bad response from the daemon: {0}")]
    Protocol(String),
    /// The daemon's own error: its message as it gave it.
    #[error("{message}")]
    Api { status: u16, message: String },
}

crate::error::from_module_error!(ClientError);

impl ClientError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ClientError::Url { .. } => ErrorKind::InvalidArgument,
            ClientError::Connect { .. } | ClientError::Io { .. } => ErrorKind::Unavailable,
            ClientError::Protocol(_) => ErrorKind::Internal,
            ClientError::Api { status, .. } => match status {
                400 | 413 => ErrorKind::InvalidArgument,
                403 => ErrorKind::PermissionDenied,
                404 => ErrorKind::NotFound,
                409 => ErrorKind::Conflict,
                503 => ErrorKind::Unavailable,
                _ => ErrorKind::Internal,
            },
        }
    }

    /// The HTTP status the daemon answered with, for an error it gave.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

type Result<T> = std::result::Result<T, ClientError>;

/// A connection to the daemon: a UNIX or TCP stream (TLS ends on a relay behind a UNIX pair).
pub enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    pub fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
        })
    }

    /// Ends what this side writes, leaving the other direction open.
    pub fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Write),
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[derive(Clone)]
enum Target {
    Unix(PathBuf),
    Tcp {
        host: String,
        port: u16,
        tls: Option<Arc<rustls::ClientConfig>>,
    },
}

/// A daemon to talk to. Cheap: connections are made per request.
#[derive(Clone)]
pub struct Client {
    url: String,
    target: Target,
    /// The TLS files it was made with: a daemon asked to reach the same engine uses them.
    tls: Option<TlsFiles>,
}

/// What a request sends.
pub enum Body<'a> {
    None,
    Json(&'a Value),
    /// Sent chunked, as it is read.
    Stream(&'a mut (dyn Read + Send)),
}

/// A response whose head has been read; reading it reads its body.
pub struct Response {
    pub status: u16,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    body: Box<dyn Read + Send>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The body as JSON (`null` when empty).
    pub fn json(mut self) -> Result<Value> {
        let mut b = Vec::new();
        self.body
            .read_to_end(&mut b)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        if b.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&b).map_err(|e| ClientError::Protocol(format!("invalid JSON: {e}")))
    }

    pub fn bytes(mut self) -> Result<Vec<u8>> {
        let mut b = Vec::new();
        self.body
            .read_to_end(&mut b)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        Ok(b)
    }

    /// Each JSON document of a streamed answer (events, stats, progress), as it comes.
    pub fn json_stream(self) -> impl Iterator<Item = Result<Value>> {
        serde_json::Deserializer::from_reader(self.body)
            .into_iter::<Value>()
            .map(|r| r.map_err(|e| ClientError::Protocol(format!("invalid JSON: {e}"))))
    }
}

impl Read for Response {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.body.read(buf)
    }
}

/// A hijacked connection: what the daemon sends (after its head), and where to write.
pub struct Hijacked {
    pub reader: BufReader<Stream>,
    pub writer: Stream,
    /// The daemon sends raw bytes (a terminal), not multiplexed frames.
    pub raw: bool,
}

/// `a=b&c=d`, each value percent-encoded.
pub fn query(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        for b in v.bytes() {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

impl Client {
    /// A client of the daemon at `url`: `unix:///path` or `tcp://host:port`, the latter with
    /// TLS when `tls` is given.
    pub fn new(url: &str, tls: Option<&TlsFiles>) -> crate::Result<Client> {
        let bad = |reason: &str| ClientError::Url {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let target = match url.split_once("://") {
            Some(("unix", path)) if !path.is_empty() => Target::Unix(PathBuf::from(path)),
            Some(("tcp", addr)) => {
                let addr = addr.trim_end_matches('/');
                let (host, port) = match addr.rsplit_once(':') {
                    Some((h, p)) => (
                        h.trim_start_matches('[').trim_end_matches(']'),
                        p.parse().map_err(|_| bad("not a port number"))?,
                    ),
                    None => (addr, if tls.is_some() { 2376 } else { 2375 }),
                };
                if host.is_empty() {
                    return Err(bad("no host").into());
                }
                let tls = tls.map(crate::tls::client_config).transpose()?;
                Target::Tcp {
                    host: host.to_string(),
                    port,
                    tls,
                }
            }
            _ => return Err(bad("want unix:///path or tcp://HOST:PORT").into()),
        };
        Ok(Client {
            url: url.to_string(),
            target,
            tls: tls.cloned(),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The TLS files it reaches its daemon with.
    pub fn tls(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    fn dial(&self) -> Result<Stream> {
        let connect = |source: io::Error| ClientError::Connect {
            url: self.url.clone(),
            source,
        };
        match &self.target {
            Target::Unix(p) => Ok(Stream::Unix(UnixStream::connect(p).map_err(connect)?)),
            Target::Tcp { host, port, tls } => {
                let tcp = TcpStream::connect((host.as_str(), *port)).map_err(connect)?;
                let _ = tcp.set_nodelay(true);
                match tls {
                    None => Ok(Stream::Tcp(tcp)),
                    Some(cfg) => Ok(Stream::Unix(
                        crate::tls::connect(cfg.clone(), host, tcp).map_err(connect)?,
                    )),
                }
            }
        }
    }

    fn io(&self) -> impl Fn(io::Error) -> ClientError + '_ {
        move |source| ClientError::Io {
            url: self.url.clone(),
            source,
        }
    }

    /// Sends a request and reads the answer's head; errors (4xx, 5xx) become
    /// [`ClientError::Api`] with the daemon's message.
    pub fn request(&self, method: &str, path: &str, body: Body<'_>) -> crate::Result<Response> {
        Ok(self.send(method, path, &[], body, false)?.1)
    }

    /// A request with headers of its own (`X-Registry-Auth`).
    pub fn request_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: Body<'_>,
    ) -> crate::Result<Response> {
        Ok(self.send(method, path, headers, body, false)?.1)
    }

    /// GET, the answer as JSON.
    pub fn get(&self, path: &str) -> crate::Result<Value> {
        Ok(self.request("GET", path, Body::None)?.json()?)
    }

    /// A request with a JSON body (or none), the answer as JSON (`null` when empty).
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> crate::Result<Value> {
        let body = body.map(Body::Json).unwrap_or(Body::None);
        Ok(self.request(method, path, body)?.json()?)
    }

    /// A request that takes the connection over (attach, exec start).
    pub fn hijack(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> crate::Result<Hijacked> {
        let body = body.map(Body::Json).unwrap_or(Body::None);
        let (reader, resp) = self.send(method, path, &[], body, true)?;
        let raw = resp
            .header("content-type")
            .is_some_and(|t| t.contains("raw-stream"));
        let reader = reader.ok_or_else(|| ClientError::Protocol("no stream".into()))?;
        let writer = reader.get_ref().try_clone().map_err(self.io())?;
        Ok(Hijacked {
            reader,
            writer,
            raw,
        })
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: Body<'_>,
        upgrade: bool,
    ) -> crate::Result<(Option<BufReader<Stream>>, Response)> {
        let mut stream = self.dial()?;
        let mut head = format!(
            "{method} /v{}{path} HTTP/1.1\r\nHost: ketch\r\nUser-Agent: ketch/{}\r\n",
            crate::http::API_VERSION,
            env!("CARGO_PKG_VERSION")
        );
        for (k, v) in headers {
            // A header's value never ends the head early.
            let v: String = v.chars().filter(|c| *c != '\r' && *c != '\n').collect();
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if upgrade {
            head.push_str("Connection: Upgrade\r\nUpgrade: tcp\r\n");
        } else {
            head.push_str("Connection: close\r\n");
        }
        let io = self.io();
        match body {
            Body::None => {
                head.push_str("\r\n");
                stream.write_all(head.as_bytes()).map_err(&io)?;
            }
            Body::Json(v) => {
                let b = serde_json::to_vec(v).unwrap_or_default();
                head.push_str(&format!(
                    "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    b.len()
                ));
                stream.write_all(head.as_bytes()).map_err(&io)?;
                stream.write_all(&b).map_err(&io)?;
            }
            Body::Stream(r) => {
                head.push_str(
                    "Content-Type: application/x-tar\r\nTransfer-Encoding: chunked\r\n\r\n",
                );
                stream.write_all(head.as_bytes()).map_err(&io)?;
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = r.read(&mut buf).map_err(&io)?;
                    let mut chunk = format!("{n:x}\r\n").into_bytes();
                    chunk.extend_from_slice(&buf[..n]);
                    chunk.extend_from_slice(b"\r\n");
                    // The daemon may answer (an error) before taking it all.
                    if stream.write_all(&chunk).is_err() || n == 0 {
                        break;
                    }
                }
            }
        }
        let mut reader = BufReader::with_capacity(64 * 1024, stream);
        let (status, headers) = read_head(&mut reader).map_err(&io)?;
        let switched = status == 101;
        if status >= 400 {
            let len = headers.get("content-length").and_then(|l| l.parse().ok());
            let mut b = Vec::new();
            let _ = body_of(reader, &headers, len).read_to_end(&mut b);
            let message = serde_json::from_slice::<Value>(&b)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&b).trim().to_string());
            return Err(ClientError::Api { status, message }.into());
        }
        if switched || (upgrade && status == 200) {
            let resp = Response {
                status,
                headers,
                body: Box::new(io::empty()),
            };
            return Ok((Some(reader), resp));
        }
        let len = headers.get("content-length").and_then(|l| l.parse().ok());
        let len = if status == 204 || status == 304 || method == "HEAD" {
            Some(0)
        } else {
            len
        };
        let body = body_of(reader, &headers, len);
        Ok((
            None,
            Response {
                status,
                headers,
                body,
            },
        ))
    }
}

fn body_of(
    reader: BufReader<Stream>,
    headers: &BTreeMap<String, String>,
    len: Option<u64>,
) -> Box<dyn Read + Send> {
    if headers
        .get("transfer-encoding")
        .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"))
    {
        Box::new(crate::http::Chunked::new(reader))
    } else if let Some(len) = len {
        Box::new(reader.take(len))
    } else {
        Box::new(reader)
    }
}

fn read_head(r: &mut BufReader<Stream>) -> io::Result<(u16, BTreeMap<String, String>)> {
    loop {
        let mut raw = Vec::new();
        loop {
            let n = r.read_until(b'\n', &mut raw)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the daemon closed the connection",
                ));
            }
            if raw.ends_with(b"\r\n\r\n") || raw.ends_with(b"\n\n") {
                break;
            }
            if raw.len() > 64 * 1024 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "response head too large",
                ));
            }
        }
        let mut hs = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut hs);
        resp.parse(&raw)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        let status = resp.code.unwrap_or(0);
        if status == 100 {
            continue;
        }
        let headers = resp
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        return Ok((status, headers));
    }
}

/// Reads Docker's multiplexed stream (8-byte frame heads: stream, 0, 0, 0, length), each
/// frame's stream (1 stdout, 2 stderr) and payload to `each` until the stream ends or `each`
/// returns false.
pub fn frames(r: &mut dyn Read, each: &mut dyn FnMut(u8, Vec<u8>) -> bool) -> io::Result<()> {
    let mut head = [0u8; 8];
    loop {
        match r.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let len = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
        let mut payload = vec![0u8; len];
        r.read_exact(&mut payload)?;
        if !each(head[0], payload) {
            return Ok(());
        }
    }
}

/// Splits Docker's multiplexed stream into `stdout` and `stderr` until it ends.
pub fn demux(r: &mut dyn Read, stdout: &mut dyn Write, stderr: &mut dyn Write) -> io::Result<()> {
    let mut failed = None;
    frames(r, &mut |fd, payload| {
        let out: &mut dyn Write = if fd == 2 { &mut *stderr } else { &mut *stdout };
        match out.write_all(&payload).and_then(|()| out.flush()) {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    })?;
    failed.map_or(Ok(()), Err)
}
