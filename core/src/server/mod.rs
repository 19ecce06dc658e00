//! Socket-server mode: the Docker Engine API over HTTP on a UNIX socket, a thin router from
//! requests to the same engine the CLI uses embedded. One thread per connection (the engine
//! is synchronous; a connection is a plain stream that can be hijacked for attach).

mod containers;
mod exec;
mod images;
mod moving;
mod networks;
mod streams;
mod system;
mod volumes;
mod websocket;

use std::collections::BTreeMap;
use std::io::{self, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;

use serde_json::{Value, json};

use crate::engine::Engine;
use crate::error::ErrorKind;
use crate::http::{self, Request};
use containers::snapshot;
use exec::{exec_attaching, exec_create, exec_start};
use streams::{
    attach_stdin, attaching_stdin, container_attach, container_logs, events, hijack_head, stats,
    take_pending,
};
use websocket::{attach_ws, attaching_ws};

pub use crate::http::{API_VERSION, MIN_API_VERSION};

/// A handler's answer.
pub enum Reply {
    Json(u16, Value),
    Empty(u16),
    Text(u16, &'static str, Vec<u8>),
}

/// An error in the API's shape: `{"message": ...}` with the status the kind maps to.
pub struct ApiError(pub u16, pub String);

impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> ApiError {
        let status = match e.kind() {
            ErrorKind::NotFound => 404,
            ErrorKind::AlreadyExists | ErrorKind::Conflict => 409,
            ErrorKind::InvalidArgument => 400,
            ErrorKind::FailedPrecondition => 409,
            ErrorKind::PermissionDenied => 403,
            ErrorKind::Unavailable | ErrorKind::Internal => 500,
        };
        ApiError(status, e.to_string())
    }
}

/// An error in the API's shape, as the whole answer on a connection (the last: the
/// connection is not kept): for handlers that answer before they take the connection over.
fn error_reply(w: &mut dyn Conn, status: u16, message: &str) -> io::Result<()> {
    let body = json!({ "message": message }).to_string();
    let headers = [("Content-Type", "application/json".to_string())];
    http::respond(w, status, &headers, body.as_bytes(), false, false)
}

/// [`error_reply`] for an engine error, with the status its kind maps to.
fn engine_error_reply(w: &mut dyn Conn, e: crate::Error) -> io::Result<()> {
    let ApiError(status, message) = e.into();
    error_reply(w, status, &message)
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(400, msg.into())
}

type Result<T> = std::result::Result<T, ApiError>;

/// Connections being served, across listeners.
static ACTIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A connection the API is served on: a UNIX or TCP stream.
pub trait Conn: io::Read + io::Write + Send {
    fn try_clone_conn(&self) -> io::Result<Box<dyn Conn>>;
    /// Ends what is written (a hijacked stream's end), leaving reading open.
    fn shutdown_write(&self);
    /// Whether the client has closed the connection (or its writing side), so that a
    /// reply it waits for can be given up.
    fn hung_up(&self) -> bool;
}

/// Whether the peer of a socket has closed it or shut its writing down; nothing is read.
fn peer_hung_up(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    use rustix::event::{PollFd, PollFlags, poll};
    let mut fds = [PollFd::from_borrowed_fd(fd, PollFlags::RDHUP)];
    poll(&mut fds, Some(&rustix::event::Timespec::default())).is_ok_and(|n| n > 0)
        && fds[0]
            .revents()
            .intersects(PollFlags::RDHUP | PollFlags::HUP | PollFlags::ERR)
}

impl Conn for UnixStream {
    fn try_clone_conn(&self) -> io::Result<Box<dyn Conn>> {
        Ok(Box::new(self.try_clone()?))
    }
    fn shutdown_write(&self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }
    fn hung_up(&self) -> bool {
        peer_hung_up(std::os::fd::AsFd::as_fd(self))
    }
}

impl Conn for TcpStream {
    fn try_clone_conn(&self) -> io::Result<Box<dyn Conn>> {
        Ok(Box::new(self.try_clone()?))
    }
    fn shutdown_write(&self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }
    fn hung_up(&self) -> bool {
        peer_hung_up(std::os::fd::AsFd::as_fd(self))
    }
}

/// Where the API is served.
pub enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
    /// TCP with TLS (mutual, when the configuration verifies clients).
    Tls(TcpListener, Arc<rustls::ServerConfig>),
}

impl Listener {
    fn accept(&self) -> io::Result<Box<dyn Conn>> {
        Ok(match self {
            Listener::Unix(l) => Box::new(l.accept()?.0),
            Listener::Tcp(l) => {
                let (s, _) = l.accept()?;
                let _ = s.set_nodelay(true);
                Box::new(s)
            }
            Listener::Tls(l, config) => {
                let (s, _) = l.accept()?;
                let _ = s.set_nodelay(true);
                // The handshake happens on the relay's thread: a slow or hostile client
                // holds up nobody else.
                Box::new(crate::tls::accept(config.clone(), s)?)
            }
        })
    }
}

/// Serves connections from `listener` until it fails; each on a thread of its own.
pub fn serve(engine: Arc<Engine>, listener: Listener) -> io::Result<()> {
    loop {
        let conn = match listener.accept() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
            Err(e) => return Err(e),
        };
        let engine = engine.clone();
        ACTIVE.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::thread::spawn(move || {
            let _ = connection(&engine, conn);
            // The last connection gone: give what the allocator keeps for the threads'
            // arenas back to the system, so an idle daemon is as small as it started.
            if ACTIVE.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1 {
                // SAFETY: malloc_trim only returns free memory to the kernel.
                unsafe { libc::malloc_trim(0) };
            }
        });
    }
}

fn connection(engine: &Engine, stream: Box<dyn Conn>) -> io::Result<()> {
    let mut reader = BufReader::with_capacity(64 * 1024, stream.try_clone_conn()?);
    let mut writer = stream;
    loop {
        let mut req = match http::read_request(&mut reader) {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(()),
            Err(e) => {
                let body = json!({"message": format!("bad request: {e}")}).to_string();
                let _ = http::respond(
                    &mut writer,
                    400,
                    &[("Content-Type", "application/json".into())],
                    body.as_bytes(),
                    false,
                    false,
                );
                return Ok(());
            }
        };
        if req
            .header("expect")
            .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
        {
            writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        // Uploads of any size (image tars, archives) are streamed to their handler; other
        // bodies are read whole, within a bound.
        let streaming = streaming_upload(&req);
        if streaming {
            // Read by the handler below.
        } else if let Err(e) = http::read_body(&mut req, &mut reader) {
            let body = json!({"message": format!("bad request body: {e}")}).to_string();
            let status = if e.to_string().contains("too large") {
                413
            } else {
                400
            };
            let _ = http::respond(
                &mut writer,
                status,
                &[("Content-Type", "application/json".into())],
                body.as_bytes(),
                false,
                false,
            );
            return Ok(());
        }
        if let Some(id) = attaching_stdin(&req) {
            return attach_stdin(engine, &id, &req, reader, writer);
        }
        if let Some(id) = attaching_ws(&req) {
            return attach_ws(engine, &id, &req, reader, writer);
        }
        // An attached exec takes the connection over, its reading side too.
        if let Some(id) = exec_attaching(&req) {
            if let Err(ApiError(status, message)) =
                exec_start(engine, &id, &req, &mut *writer, Some(reader))
            {
                error_reply(&mut *writer, status, &message)?;
            }
            return Ok(());
        }
        let keep_alive = req.keep_alive;
        let head = req.method == "HEAD";
        let reply = {
            let mut body: Box<dyn io::Read + Send + '_> = if streaming {
                http::body_reader(&req, &mut reader)
            } else {
                Box::new(io::empty())
            };
            let reply = route(engine, &req, &mut *writer, &mut body);
            // Whatever the handler left unread belongs to this request, not the next.
            let _ = io::copy(&mut body, &mut io::sink());
            reply
        };
        let mut headers = vec![
            ("Api-Version", API_VERSION.to_string()),
            ("Server", format!("ketch/{}", env!("CARGO_PKG_VERSION"))),
            ("Ostype", "linux".to_string()),
        ];
        match reply {
            Ok(Some(Reply::Json(status, v))) => {
                headers.push(("Content-Type", "application/json".into()));
                let mut body = serde_json::to_vec(&v).unwrap_or_default();
                body.push(b'\n');
                http::respond(&mut writer, status, &headers, &body, head, keep_alive)?;
            }
            Ok(Some(Reply::Empty(status))) => {
                http::respond(&mut writer, status, &headers, b"", head, keep_alive)?;
            }
            Ok(Some(Reply::Text(status, ctype, body))) => {
                headers.push(("Content-Type", ctype.into()));
                http::respond(&mut writer, status, &headers, &body, head, keep_alive)?;
            }
            // Streamed by the handler itself.
            Ok(None) => {}
            Err(ApiError(status, message)) => {
                headers.push(("Content-Type", "application/json".into()));
                let body = json!({"message": message}).to_string();
                http::respond(
                    &mut writer,
                    status,
                    &headers,
                    body.as_bytes(),
                    head,
                    keep_alive,
                )?;
            }
        }
        if !keep_alive {
            return Ok(());
        }
    }
}

/// Starts a chunked `application/json` response (a stream of JSON documents).
fn json_stream<'a>(w: &'a mut (dyn Conn + 'a)) -> Result<http::ChunkedWriter<'a, dyn Conn + 'a>> {
    http::ChunkedWriter::start(
        w,
        200,
        &[
            ("Content-Type", "application/json".into()),
            ("Api-Version", API_VERSION.into()),
        ],
    )
    .map_err(|e| ApiError(500, e.to_string()))
}

fn json_body(req: &Request) -> Result<Value> {
    if req.body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(&req.body).map_err(|e| bad(format!("invalid JSON: {e}")))
}

/// The path's segments: `/containers/abc/json` → `["containers", "abc", "json"]`.
fn segments(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

/// Requests whose bodies may be large and go to their handler as a stream.
fn streaming_upload(req: &Request) -> bool {
    let seg = segments(&req.path);
    matches!(
        (req.method.as_str(), seg.as_slice()),
        ("POST", ["images", "load"])
            | ("POST", ["images", "create"])
            | ("POST", ["build"])
            | ("PUT", ["containers", _, "archive"])
            | ("POST", ["ketch", "move", "in"])
    )
}

fn route(
    engine: &Engine,
    req: &Request,
    w: &mut dyn Conn,
    body: &mut (dyn io::Read + Send),
) -> Result<Option<Reply>> {
    let seg = segments(&req.path);
    let m = req.method.as_str();
    let group = match seg.first().copied() {
        Some("containers") => containers::route,
        Some("exec") => exec::route,
        Some("images" | "commit" | "build" | "distribution") => images::route,
        Some("networks") => networks::route,
        Some("volumes") => volumes::route,
        Some("ketch") => moving::route,
        _ => system::route,
    };
    group(engine, req, w, body, m, &seg)
}

/// The answer to a request for an endpoint there is not.
fn not_found(req: &Request) -> ApiError {
    ApiError(404, format!("page not found: {} {}", req.method, req.path))
}

/// The `h` and `w` of a resize request.
fn resize_dims(req: &Request) -> Result<(u16, u16)> {
    let dim = |k: &str| -> Result<u16> {
        req.query
            .get(k)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| bad(format!("{k}: a number of characters is required")))
    };
    Ok((dim("h")?, dim("w")?))
}

/// Docker's timestamps in queries: Unix seconds, with a fraction or not; in nanoseconds.
fn parse_time(s: &str) -> Option<i64> {
    if let Ok(secs) = s.parse::<f64>() {
        return Some((secs * 1e9) as i64);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
}

/// What the router reads of a request before it asks the engine anything, and the JSON
/// body it would read; the fuzz harness's view of the server.
pub(crate) fn parse_request(req: &Request) -> Option<Value> {
    let _ = (
        streaming_upload(req),
        exec_attaching(req),
        attaching_stdin(req),
        attaching_ws(req),
    );
    let _ = filters(req);
    for k in ["since", "until"] {
        if let Some(t) = req.query.get(k) {
            let _ = parse_time(t);
        }
    }
    json_body(req).ok()
}

/// The `ContainerConfig` older APIs show for an image: the image's configuration in the
/// container configuration's shape (an imported or built image has no other).
fn container_config_of(config: &Value) -> Value {
    let field = |k: &str, empty: Value| config.get(k).cloned().unwrap_or(empty);
    json!({
        "Hostname": "",
        "Domainname": "",
        "User": field("User", json!("")),
        "AttachStdin": false,
        "AttachStdout": false,
        "AttachStderr": false,
        "ExposedPorts": field("ExposedPorts", Value::Null),
        "Tty": false,
        "OpenStdin": false,
        "StdinOnce": false,
        "Env": field("Env", Value::Null),
        "Cmd": field("Cmd", Value::Null),
        "Image": "",
        "Volumes": field("Volumes", Value::Null),
        "WorkingDir": field("WorkingDir", json!("")),
        "Entrypoint": field("Entrypoint", Value::Null),
        "OnBuild": field("OnBuild", Value::Null),
        "Labels": field("Labels", Value::Null),
    })
}

/// Docker's `filters` query: `{"type":["container"]}` or the older `{"type":{"container":true}}`.
fn filters(req: &Request) -> Result<BTreeMap<String, Vec<String>>> {
    let Some(raw) = req.query.get("filters").filter(|f| !f.is_empty()) else {
        return Ok(BTreeMap::new());
    };
    let v: Value = serde_json::from_str(raw).map_err(|e| bad(format!("invalid filters: {e}")))?;
    let mut out = BTreeMap::new();
    for (k, vals) in v.as_object().into_iter().flatten() {
        let list: Vec<String> = match vals {
            Value::Array(a) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            Value::Object(o) => o.keys().cloned().collect(),
            _ => return Err(bad(format!("invalid filter {k}"))),
        };
        out.insert(k.clone(), list);
    }
    Ok(out)
}

fn text(v: &Value) -> Option<String> {
    v.as_str().filter(|s| !s.is_empty()).map(str::to_string)
}

/// One frame of the multiplexed stream: the stream (1 out, 2 err), three zero bytes, the
/// length big-endian, the payload. With a terminal there is no framing: the payload alone.
fn frame(fd: u8, data: &[u8], tty: bool) -> Vec<u8> {
    let mut f = Vec::with_capacity(data.len() + 8);
    if !tty {
        f.push(fd);
        f.extend_from_slice(&[0, 0, 0]);
        f.extend_from_slice(&(data.len() as u32).to_be_bytes());
    }
    f.extend_from_slice(data);
    f
}

use crate::runtime::body::strings;
