//! Socket-server mode: the Docker Engine API over HTTP on a UNIX socket, a thin router from
//! requests to the same engine the CLI uses embedded. One thread per connection (the engine
//! is synchronous; a connection is a plain stream that can be hijacked for attach).

pub mod http;

use std::collections::BTreeMap;
use std::io::{self, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;

use serde_json::{Value, json};

use crate::engine::Engine;
use crate::error::ErrorKind;
use http::Request;

/// The API version served, and the oldest one accepted.
pub const API_VERSION: &str = "1.47";
pub const MIN_API_VERSION: &str = "1.24";

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
}

impl Conn for UnixStream {
    fn try_clone_conn(&self) -> io::Result<Box<dyn Conn>> {
        Ok(Box::new(self.try_clone()?))
    }
    fn shutdown_write(&self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }
}

impl Conn for TcpStream {
    fn try_clone_conn(&self) -> io::Result<Box<dyn Conn>> {
        Ok(Box::new(self.try_clone()?))
    }
    fn shutdown_write(&self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
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
        // An attached exec takes the connection over, its reading side too.
        if let Some(id) = exec_attaching(&req) {
            if let Err(ApiError(status, message)) =
                exec_start(engine, &id, &req, &mut *writer, Some(reader))
            {
                let body = json!({"message": message}).to_string();
                let headers = [("Content-Type", "application/json".to_string())];
                http::respond(&mut writer, status, &headers, body.as_bytes(), false, false)?;
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
            | ("PUT", ["containers", _, "archive"])
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
    let reply = match (m, seg.as_slice()) {
        ("GET" | "HEAD", ["_ping"]) => {
            Reply::Text(200, "text/plain; charset=utf-8", b"OK".to_vec())
        }
        ("GET", ["version"]) => Reply::Json(200, version()),
        ("GET", ["info"]) => Reply::Json(200, info(engine)?),
        ("GET", ["containers", "json"]) => Reply::Json(
            200,
            Value::Array(
                engine
                    .containers()
                    .summaries(req.query_bool("all"), &filters(req)?)?,
            ),
        ),
        ("POST", ["containers", "create"]) => Reply::Json(201, container_create(engine, req)?),
        ("GET", ["containers", id, "json"]) => Reply::Json(200, engine.containers().inspect(id)?),
        ("POST", ["containers", id, "start"]) => {
            let c = engine.containers().get(id)?;
            if c.is_running() {
                Reply::Empty(304)
            } else {
                match take_pending(&c.record.id) {
                    Some((stream, framed)) => engine
                        .containers()
                        .start_streaming(id, stream, true, framed)?,
                    None => {
                        engine.containers().start(id, false, false)?;
                    }
                }
                if c.record.config.auto_remove {
                    auto_remove(engine, c.record.id.clone());
                }
                Reply::Empty(204)
            }
        }
        ("POST", ["containers", id, "attach"]) => {
            return container_attach(engine, id, req, w).map(|()| None);
        }
        ("POST", ["containers", id, "stop"]) => {
            let t = req
                .query
                .get("t")
                .and_then(|t| t.parse().ok())
                .unwrap_or(10);
            let c = engine.containers().get(id)?;
            if !c.is_running() {
                Reply::Empty(304)
            } else {
                engine
                    .containers()
                    .stop(id, std::time::Duration::from_secs(t))?;
                Reply::Empty(204)
            }
        }
        ("POST", ["containers", id, "restart"]) => {
            let t = req
                .query
                .get("t")
                .and_then(|t| t.parse().ok())
                .unwrap_or(10);
            if engine.containers().get(id)?.is_running() {
                engine
                    .containers()
                    .stop(id, std::time::Duration::from_secs(t))?;
            }
            engine.containers().start(id, false, false)?;
            Reply::Empty(204)
        }
        ("POST", ["containers", id, "kill"]) => {
            let sig = req
                .query
                .get("signal")
                .map(String::as_str)
                .unwrap_or("KILL");
            let n = crate::runtime::signal_number(sig)
                .ok_or_else(|| bad(format!("invalid signal: {sig}")))?;
            engine.containers().kill(id, n)?;
            Reply::Empty(204)
        }
        ("POST", ["containers", id, "pause"]) => {
            engine.containers().pause(id)?;
            Reply::Empty(204)
        }
        ("POST", ["containers", id, "unpause"]) => {
            engine.containers().unpause(id)?;
            Reply::Empty(204)
        }
        ("POST", ["containers", id, "rename"]) => {
            let name = req
                .query
                .get("name")
                .ok_or_else(|| bad("name is required"))?;
            engine.containers().rename(id, name)?;
            Reply::Empty(204)
        }
        ("POST", ["containers", id, "wait"]) => {
            let condition = req
                .query
                .get("condition")
                .map(String::as_str)
                .unwrap_or("not-running");
            return container_wait(engine, id, condition, w).map(|()| None);
        }
        ("DELETE", ["containers", id]) => {
            let full = engine.containers().get(id)?.record.id;
            engine
                .containers()
                .remove_with(id, req.query_bool("force"), req.query_bool("v"))?;
            // A client attached to it waiting for its start: the stream ends.
            take_pending(&full);
            Reply::Empty(204)
        }
        ("GET", ["containers", id, "logs"]) => {
            return container_logs(engine, id, req, w).map(|()| None);
        }
        ("GET", ["containers", id, "changes"]) => {
            let changes: Vec<Value> = engine
                .containers().diff(id)?
                .into_iter()
                .map(|c| {
                    json!({"Path": c.path, "Kind": match c.kind { 'C' => 0, 'A' => 1, _ => 2 }})
                })
                .collect();
            Reply::Json(200, Value::Array(changes))
        }
        ("POST", ["containers", "prune"]) => {
            let ids = engine.containers().prune()?;
            Reply::Json(200, json!({"ContainersDeleted": ids, "SpaceReclaimed": 0}))
        }
        ("GET", ["images", "json"]) => {
            let f = filters(req)?;
            let one = |k: &str| f.get(k).and_then(|v| v.first()).cloned();
            if let Some(k) = f
                .keys()
                .find(|k| !matches!(k.as_str(), "dangling" | "reference"))
            {
                return Err(bad(format!("invalid filter '{k}'")));
            }
            let opts = crate::image::ListOptions {
                all: req.query_bool("all"),
                dangling: one("dangling").map(|d| d == "true" || d == "1"),
                reference: one("reference"),
            };
            Reply::Json(
                200,
                serde_json::to_value(engine.images().list(&opts)?).unwrap_or_default(),
            )
        }
        ("GET", ["images", name @ .., "json"]) if !name.is_empty() => {
            let image = engine.images().inspect(&name.join("/"))?;
            let mut v = serde_json::to_value(&image).unwrap_or_default();
            // Before API 1.45 an image also had the configuration of the container it was
            // committed from. Compose 1.x reads it whatever version it negotiated (Docker
            // from 25 on breaks it there), so it stays, as an extra field newer clients skip.
            v["Container"] = json!("");
            v["ContainerConfig"] = container_config_of(&image.config);
            Reply::Json(200, v)
        }
        // Images.
        ("POST", ["images", "load"]) => {
            let loaded = engine
                .images()
                .load(crate::image::LoadSource::Reader(body))?;
            let text: String = loaded
                .iter()
                .flat_map(|l| {
                    if l.tags.is_empty() {
                        vec![format!("Loaded image ID: {}\n", l.id)]
                    } else {
                        l.tags
                            .iter()
                            .map(|t| format!("Loaded image: {t}\n"))
                            .collect()
                    }
                })
                .map(|line| json!({"stream": line}).to_string() + "\n")
                .collect();
            Reply::Text(200, "application/json", text.into_bytes())
        }
        ("POST", ["images", "create"]) => {
            if req.query.get("fromSrc").map(String::as_str) != Some("-") {
                return Err(ApiError(
                    501,
                    "pulling from a registry is not served yet; import with fromSrc=-".into(),
                ));
            }
            let reference = match (req.query.get("repo"), req.query.get("tag")) {
                (Some(r), Some(t)) if !r.is_empty() && !t.is_empty() => Some(format!("{r}:{t}")),
                (Some(r), _) if !r.is_empty() => Some(r.clone()),
                _ => None,
            };
            let opts = crate::image::ImportOptions {
                reference,
                changes: req.query_all("changes"),
                message: req.query.get("message").cloned().filter(|m| !m.is_empty()),
                source: "-".into(),
            };
            let id = engine.images().import(body, &opts)?;
            Reply::Text(
                200,
                "application/json",
                (json!({"status": id.to_string()}).to_string() + "\n").into_bytes(),
            )
        }
        ("GET", ["images", "get"]) => {
            let names: Vec<String> = req.query_all("names");
            return image_save(engine, &names, w).map(|()| None);
        }
        ("GET", ["images", name @ .., "get"]) if !name.is_empty() => {
            return image_save(engine, &[name.join("/")], w).map(|()| None);
        }
        ("GET", ["images", name @ .., "history"]) if !name.is_empty() => Reply::Json(
            200,
            serde_json::to_value(engine.images().history(&name.join("/"))?).unwrap_or_default(),
        ),
        ("POST", ["images", name @ .., "tag"]) if !name.is_empty() => {
            let repo = req
                .query
                .get("repo")
                .ok_or_else(|| bad("repo is required"))?;
            let target = match req.query.get("tag").filter(|t| !t.is_empty()) {
                Some(t) => format!("{repo}:{t}"),
                None => repo.clone(),
            };
            engine.images().tag(&name.join("/"), &target)?;
            Reply::Empty(201)
        }
        ("POST", ["images", "prune"]) => {
            let all = req
                .query
                .get("filters")
                .is_some_and(|f| f.contains("\"dangling\"") && f.contains("false"));
            Reply::Json(
                200,
                serde_json::to_value(engine.images().prune(all)?).unwrap_or_default(),
            )
        }
        ("DELETE", ["images", name @ ..]) if !name.is_empty() => Reply::Json(
            200,
            serde_json::to_value(
                engine
                    .images()
                    .remove(&name.join("/"), req.query_bool("force"))?,
            )
            .unwrap_or_default(),
        ),
        // Containers' files and changes.
        ("GET", ["containers", id, "export"]) => {
            let mut out =
                http::ChunkedWriter::start(w, 200, &[("Content-Type", "application/x-tar".into())])
                    .map_err(|e| ApiError(500, e.to_string()))?;
            let _ = engine.containers().export(id, &mut out);
            let _ = out.finish();
            return Ok(None);
        }
        ("POST", ["commit"]) => {
            let container = req
                .query
                .get("container")
                .ok_or_else(|| bad("container is required"))?;
            let reference = match (req.query.get("repo"), req.query.get("tag")) {
                (Some(r), Some(t)) if !r.is_empty() && !t.is_empty() => Some(format!("{r}:{t}")),
                (Some(r), _) if !r.is_empty() => Some(r.clone()),
                _ => None,
            };
            let opts = crate::runtime::CommitOptions {
                reference,
                changes: req.query_all("changes"),
                message: req.query.get("comment").cloned().filter(|c| !c.is_empty()),
                author: req.query.get("author").cloned().filter(|a| !a.is_empty()),
                pause: req
                    .query
                    .get("pause")
                    .is_none_or(|p| p != "0" && p != "false"),
            };
            let id = engine.containers().commit(container, &opts)?;
            Reply::Json(201, json!({"Id": id.to_string()}))
        }
        ("HEAD", ["containers", id, "archive"]) | ("GET", ["containers", id, "archive"]) => {
            let path = req
                .query
                .get("path")
                .ok_or_else(|| bad("path is required"))?;
            return container_archive_get(engine, id, path, req.method == "HEAD", w).map(|()| None);
        }
        ("PUT", ["containers", id, "archive"]) => {
            let path = req
                .query
                .get("path")
                .ok_or_else(|| bad("path is required"))?;
            engine.containers().copy_in(id, path, body)?;
            Reply::Empty(200)
        }
        ("GET", ["containers", id, "top"]) => {
            let args: Vec<String> = req
                .query
                .get("ps_args")
                .map(|a| a.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default();
            let (titles, processes) = engine.containers().top(id, &args)?;
            Reply::Json(200, json!({"Titles": titles, "Processes": processes}))
        }
        // Exec.
        ("POST", ["containers", id, "exec"]) => Reply::Json(201, exec_create(engine, id, req)?),
        ("POST", ["exec", id, "start"]) => {
            return exec_start(engine, id, req, w, None).map(|()| None);
        }
        ("GET", ["exec", id, "json"]) => Reply::Json(200, exec_inspect(id)?),
        ("POST", ["containers", id, "resize"]) => {
            let (h, w) = resize_dims(req)?;
            let c = engine.containers().get(id)?;
            if c.record.config.tty {
                engine.containers().resize(id, h, w)?;
            }
            Reply::Empty(200)
        }
        ("POST", ["exec", id, "resize"]) => {
            let (h, w) = resize_dims(req)?;
            exec_resize(id, h, w)?;
            Reply::Empty(200)
        }
        // Networks.
        ("POST", ["networks", "create"]) => {
            let opts = crate::api::create::network_options(&json_body(req)?).map_err(bad)?;
            let rec = engine.networks().create(&opts)?;
            Reply::Json(201, json!({"Id": rec.id, "Warning": ""}))
        }
        ("POST", ["networks", "prune"]) => {
            Reply::Json(200, json!({"NetworksDeleted": engine.network_prune()?}))
        }
        ("GET", ["networks", id]) => {
            let names: BTreeMap<String, String> = engine
                .containers()
                .list(true)?
                .into_iter()
                .map(|c| (c.record.id, c.record.name))
                .collect();
            Reply::Json(
                200,
                serde_json::to_value(engine.network_inspect(id)?.resource(&names))
                    .unwrap_or_default(),
            )
        }
        ("DELETE", ["networks", id]) => {
            engine.network_remove(id)?;
            Reply::Empty(204)
        }
        ("POST", ["networks", id, "connect"]) => {
            let b = json_body(req)?;
            let container = b["Container"]
                .as_str()
                .ok_or_else(|| bad("Container is required"))?;
            let ep = &b["EndpointConfig"];
            let ip = ep["IPAMConfig"]["IPv4Address"]
                .as_str()
                .filter(|s| !s.is_empty());
            engine
                .containers()
                .connect(id, container, ip, &strings(&ep["Aliases"]))?;
            Reply::Empty(200)
        }
        ("POST", ["networks", id, "disconnect"]) => {
            let b = json_body(req)?;
            let container = b["Container"]
                .as_str()
                .ok_or_else(|| bad("Container is required"))?;
            engine.containers().disconnect(id, container)?;
            Reply::Empty(200)
        }
        // Volumes.
        ("POST", ["volumes", "create"]) => {
            let opts = crate::api::create::volume_options(&json_body(req)?);
            Reply::Json(
                201,
                serde_json::to_value(engine.volumes().create(&opts)?).unwrap_or_default(),
            )
        }
        ("POST", ["volumes", "prune"]) => {
            let all = req
                .query
                .get("filters")
                .is_some_and(|f| f.contains("\"all\""));
            let (names, space) = engine.volume_prune(all)?;
            Reply::Json(
                200,
                json!({"VolumesDeleted": names, "SpaceReclaimed": space}),
            )
        }
        ("GET", ["volumes", name]) => Reply::Json(
            200,
            serde_json::to_value(engine.volumes().inspect(name)?).unwrap_or_default(),
        ),
        ("DELETE", ["volumes", name]) => {
            engine.volume_remove(name, req.query_bool("force"))?;
            Reply::Empty(204)
        }
        ("GET", ["networks"]) => {
            let names: BTreeMap<String, String> = engine
                .containers()
                .list(true)?
                .into_iter()
                .map(|c| (c.record.id, c.record.name))
                .collect();
            let nets: Vec<Value> = engine
                .network_list()?
                .iter()
                .map(|n| serde_json::to_value(n.resource(&names)).unwrap_or_default())
                .collect();
            Reply::Json(200, Value::Array(nets))
        }
        ("GET", ["volumes"]) => Reply::Json(
            200,
            json!({"Volumes": engine.volumes().list()?, "Warnings": []}),
        ),
        ("GET", ["events"]) => return events(engine, req, w).map(|()| None),
        ("GET", ["containers", id, "stats"]) => return stats(engine, id, req, w).map(|()| None),
        ("GET", ["system", "df"]) => Reply::Json(
            200,
            serde_json::to_value(engine.system_df()?).unwrap_or_default(),
        ),
        _ => {
            return Err(ApiError(
                404,
                format!("page not found: {} {}", req.method, req.path),
            ));
        }
    };
    Ok(Some(reply))
}

/// `GET /images/get`: the images as one tar (Docker's own format), streamed.
fn image_save(engine: &Engine, names: &[String], w: &mut dyn Conn) -> Result<()> {
    if names.is_empty() {
        return Err(bad("names is required"));
    }
    // Refused before a byte is sent: an unknown image is a 404, not a broken stream.
    for n in names {
        engine.images().inspect(n)?;
    }
    let mut out =
        http::ChunkedWriter::start(w, 200, &[("Content-Type", "application/x-tar".into())])
            .map_err(|e| ApiError(500, e.to_string()))?;
    let _ = engine.images().save(
        names,
        crate::image::SaveFormat::DockerArchive,
        crate::image::SaveDest::Writer(&mut out),
    );
    let _ = out.finish();
    Ok(())
}

/// `GET|HEAD /containers/{id}/archive`: a tar of the path, with its stat in the
/// `X-Docker-Container-Path-Stat` header (base64 JSON), as `docker cp` expects.
fn container_archive_get(
    engine: &Engine,
    id: &str,
    path: &str,
    head_only: bool,
    w: &mut dyn Conn,
) -> Result<()> {
    // The archive is made on a thread into a pipe and streamed; its first entry, read
    // here, tells what the path is (for the stat header) before a byte of it is sent.
    let (rx, tx) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| ApiError(500, e.to_string()))?;
    let (mut rx, mut tx) = (std::fs::File::from(rx), std::fs::File::from(tx));
    let maker = {
        let engine = engine.clone();
        let (id, path) = (id.to_string(), path.to_string());
        std::thread::spawn(move || {
            let made = engine.containers().copy_out(&id, &path, &mut tx);
            drop(tx);
            made
        })
    };
    /// What the tar reader takes from the pipe, kept to be sent too.
    struct Keep<'a> {
        inner: &'a mut std::fs::File,
        kept: Vec<u8>,
    }
    impl io::Read for Keep<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.kept.extend_from_slice(&buf[..n]);
            Ok(n)
        }
    }
    let mut keep = Keep {
        inner: &mut rx,
        kept: Vec::new(),
    };
    let first = {
        let mut a = tar::Archive::new(&mut keep);
        let mut entries = a.entries().map_err(|e| ApiError(500, e.to_string()))?;
        match entries.next() {
            Some(Ok(e)) => {
                let h = e.header();
                let kind = h.entry_type();
                let mut mode = h.mode().unwrap_or(0) as u64;
                if kind.is_dir() {
                    mode |= 1 << 31;
                } else if kind.is_symlink() {
                    mode |= 1 << 27;
                }
                Some((
                    mode,
                    h.size().unwrap_or(0),
                    h.mtime().unwrap_or(0),
                    h.link_name()
                        .ok()
                        .flatten()
                        .map(|l| l.display().to_string())
                        .unwrap_or_default(),
                ))
            }
            _ => None,
        }
    };
    let kept = std::mem::take(&mut keep.kept);
    let Some((mode, size, mtime, link)) = first else {
        drop(rx);
        return Err(match maker.join() {
            Ok(Err(e)) => e.into(),
            _ => ApiError(404, format!("Could not find the file {path} in container")),
        });
    };
    let name = std::path::Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/".into());
    let stat = json!({
        "name": name, "size": size, "mode": mode,
        "mtime": chrono::DateTime::from_timestamp(mtime as i64, 0).map(|t| t.to_rfc3339()).unwrap_or_default(),
        "linkTarget": link,
    });
    use base64_engine::encode;
    let headers = [
        ("Content-Type", "application/x-tar".to_string()),
        (
            "X-Docker-Container-Path-Stat",
            encode(stat.to_string().as_bytes()),
        ),
        ("Api-Version", API_VERSION.to_string()),
    ];
    if head_only {
        drop(rx);
        let _ = maker.join();
        return http::respond(w, 200, &headers, b"", true, true)
            .map_err(|e| ApiError(500, e.to_string()));
    }
    let whole = {
        let mut out = http::ChunkedWriter::start(w, 200, &headers)
            .map_err(|e| ApiError(500, e.to_string()))?;
        let sent = out
            .write_all(&kept)
            .and_then(|()| io::copy(&mut rx, &mut out).map(|_| ()));
        drop(rx);
        let whole = sent.is_ok() && matches!(maker.join(), Ok(Ok(())));
        if whole {
            let _ = out.finish();
        }
        whole
    };
    if !whole {
        // A failure past the head can only cut the stream short: the client sees it end
        // without its last chunk, never a tar that looks whole.
        w.shutdown_write();
    }
    Ok(())
}

/// Standard base64, for the one header that wants it.
mod base64_engine {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(data: &[u8]) -> String {
        let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
        for chunk in data.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[cfg(test)]
    #[test]
    fn known_values() {
        assert_eq!(encode(b"hello"), "aGVsbG8=");
        assert_eq!(encode(b"ab"), "YWI=");
        assert_eq!(encode(b"abc"), "YWJj");
    }
}

/// Execs made and not yet forgotten: their configuration, then their state.
struct Exec {
    container: String,
    opts: crate::runtime::ExecOptions,
    running: bool,
    exit_code: Option<i32>,
    /// The monitor while it runs attached, by a pidfd taken before it could be waited for: a
    /// resize that races its end is refused by the kernel, never sent to a reused PID.
    monitor: Option<Arc<std::os::fd::OwnedFd>>,
}

fn execs() -> &'static std::sync::Mutex<BTreeMap<String, Exec>> {
    static EXECS: std::sync::OnceLock<std::sync::Mutex<BTreeMap<String, Exec>>> =
        std::sync::OnceLock::new();
    EXECS.get_or_init(Default::default)
}

fn exec_create(engine: &Engine, container: &str, req: &Request) -> Result<Value> {
    let b = json_body(req)?;
    let c = engine.containers().get(container)?;
    if !c.is_running() {
        return Err(ApiError(
            409,
            format!("container {} is not running", c.record.id),
        ));
    }
    let cmd = strings(&b["Cmd"]);
    if cmd.is_empty() {
        return Err(bad("No exec command specified"));
    }
    let opts = crate::runtime::ExecOptions {
        cmd,
        env: strings(&b["Env"]),
        user: text(&b["User"]),
        workdir: text(&b["WorkingDir"]),
        detach: false,
        interactive: b["AttachStdin"].as_bool().unwrap_or(false),
        tty: b["Tty"].as_bool().unwrap_or(false),
        console_size: match b["ConsoleSize"].as_array().map(|a| a.as_slice()) {
            Some([h, w]) => Some((
                h.as_u64().unwrap_or(0).min(u16::MAX.into()) as u16,
                w.as_u64().unwrap_or(0).min(u16::MAX.into()) as u16,
            )),
            _ => None,
        },
    };
    let id = crate::util::random_hex(32);
    let mut all = execs().lock().unwrap_or_else(|p| p.into_inner());
    // Finished execs are kept to be inspected, but not forever: a long-lived daemon would
    // hold one entry per exec it ever ran.
    if all.len() >= 1024 {
        all.retain(|_, e| e.running || e.exit_code.is_none());
    }
    all.insert(
        id.clone(),
        Exec {
            container: c.record.id,
            opts,
            running: false,
            exit_code: None,
            monitor: None,
        },
    );
    Ok(json!({"Id": id}))
}

/// `POST /exec/{id}/start`: the process's output, multiplexed, on the taken-over connection
/// (or nothing, detached).
/// `POST /exec/{id}/start`. Attached, the connection is taken over: the process's output
/// goes on it (framed, raw with a terminal) and, with `input` (the connection's reading
/// side, for an exec with stdin), what the client sends goes to the process.
fn exec_start(
    engine: &Engine,
    id: &str,
    req: &Request,
    w: &mut dyn Conn,
    input: Option<BufReader<Box<dyn Conn>>>,
) -> Result<()> {
    let b = json_body(req)?;
    let detach = b["Detach"].as_bool().unwrap_or(false);
    let (container, mut opts) = {
        let mut all = execs().lock().unwrap_or_else(|p| p.into_inner());
        let e = all
            .get_mut(id)
            .ok_or_else(|| ApiError(404, format!("No such exec instance: {id}")))?;
        if e.running || e.exit_code.is_some() {
            return Err(ApiError(409, format!("exec {id} has already run")));
        }
        e.running = true;
        (e.container.clone(), e.opts.clone())
    };
    opts.detach = detach;
    let finish = |code: Option<i32>| {
        if let Some(e) = execs()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(id)
        {
            e.running = false;
            e.exit_code = code;
            e.monitor = None;
        }
    };
    if detach {
        return match engine.containers().exec_spawn(&container, &opts, true) {
            Ok(_) => {
                finish(Some(0));
                http::respond(w, 200, &[], b"", false, true)
                    .map_err(|e| ApiError(500, e.to_string()))
            }
            Err(e) => {
                finish(Some(126));
                Err(e.into())
            }
        };
    }
    // The connection is taken over before the process starts, as Docker does: a client
    // reads the stream raw only after the answer's head, and output sent along with the
    // head could be swallowed by its HTTP reader.
    let tty = opts.tty;
    let ctype = if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    };
    let head = hijack_head(req, ctype);
    let _ = w.write_all(head.as_bytes()).and_then(|()| w.flush());
    let mut child = match engine.containers().exec_spawn(&container, &opts, true) {
        Ok(Some(c)) => {
            // From here a resize goes to the monitor (`POST /exec/{id}/resize`: Docker CLIs
            // before 23 send the size only that way, after the start); one that came while
            // the monitor started is sent now.
            let mut all = execs().lock().unwrap_or_else(|p| p.into_inner());
            if let Some(e) = all.get_mut(id) {
                let pid = rustix::process::Pid::from_raw(c.id() as i32);
                e.monitor = pid
                    .and_then(|p| {
                        rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok()
                    })
                    .map(Arc::new);
                if opts.tty
                    && let Some((h, w)) = e.opts.console_size
                    && e.opts.console_size != opts.console_size
                    && let Some(fd) = &e.monitor
                {
                    let _ = crate::runtime::exec_resize(fd, h, w);
                }
            }
            c
        }
        Ok(None) => {
            finish(Some(0));
            w.shutdown_write();
            return Ok(());
        }
        Err(e) => {
            // Past the head, the error goes on the stream, its code in the exec's state.
            let _ = w.write_all(&frame(2, format!("{e}\n").as_bytes(), false));
            let code = e
                .downcast_ref::<crate::runtime::ContainerError>()
                .map_or(126, crate::runtime::ContainerError::exit_code);
            finish(Some(code));
            w.shutdown_write();
            return Ok(());
        }
    };
    // What the client sends, to the process's stdin until either ends.
    if let (Some(mut stdin), Some(mut input)) = (child.stdin.take(), input) {
        std::thread::spawn(move || {
            let _ = io::copy(&mut input, &mut stdin);
        });
    }
    // Both streams, framed, as they come.
    let (tx, rx) = std::sync::mpsc::channel::<(u8, Vec<u8>)>();
    let mut readers = Vec::new();
    for (fd, pipe) in [
        (
            1u8,
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn io::Read + Send>),
        ),
        (
            2u8,
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn io::Read + Send>),
        ),
    ] {
        if let Some(mut p) = pipe {
            let tx = tx.clone();
            readers.push(std::thread::spawn(move || {
                let mut buf = vec![0u8; 32 * 1024];
                while let Ok(n) = p.read(&mut buf) {
                    if n == 0 || tx.send((fd, buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }));
        }
    }
    drop(tx);
    for (fd, data) in rx {
        if w.write_all(&frame(fd, &data, tty)).is_err() {
            break;
        }
    }
    for r in readers {
        let _ = r.join();
    }
    let code = child.wait().ok().and_then(|s| s.code()).unwrap_or(125);
    finish(Some(code));
    let _ = w.flush();
    w.shutdown_write();
    Ok(())
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

/// `POST /exec/{id}/resize`. The size is kept for a start still to come (or under way); while
/// the exec runs, its monitor is told.
fn exec_resize(id: &str, h: u16, w: u16) -> Result<()> {
    let mut all = execs().lock().unwrap_or_else(|p| p.into_inner());
    let e = all
        .get_mut(id)
        .ok_or_else(|| ApiError(404, format!("No such exec instance: {id}")))?;
    if e.exit_code.is_some() {
        return Err(ApiError(409, format!("exec {id} is not running")));
    }
    if !e.opts.tty {
        return Ok(());
    }
    e.opts.console_size = Some((h, w));
    if let Some(fd) = &e.monitor {
        crate::runtime::exec_resize(fd, h, w)
            .map_err(|err| ApiError(500, format!("resize exec {id}: {err}")))?;
    }
    Ok(())
}

fn exec_inspect(id: &str) -> Result<Value> {
    let all = execs().lock().unwrap_or_else(|p| p.into_inner());
    let e = all
        .get(id)
        .ok_or_else(|| ApiError(404, format!("No such exec instance: {id}")))?;
    Ok(json!({
        "ID": id,
        "ContainerID": e.container,
        "Running": e.running,
        "ExitCode": e.exit_code,
        "ProcessConfig": {"entrypoint": e.opts.cmd.first(), "arguments": e.opts.cmd.get(1..).unwrap_or_default(), "tty": false},
        "OpenStdin": false, "OpenStdout": true, "OpenStderr": true,
    }))
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

/// `GET /events`: what happened in [since, until], then what happens, as JSON lines, until
/// `until` (or the client leaves).
fn events(engine: &Engine, req: &Request, w: &mut dyn Conn) -> Result<()> {
    let since = req
        .query
        .get("since")
        .map(|s| parse_time(s).ok_or_else(|| bad(format!("invalid since: {s}"))))
        .transpose()?;
    let until = req
        .query
        .get("until")
        .map(|s| parse_time(s).ok_or_else(|| bad(format!("invalid until: {s}"))))
        .transpose()?;
    let filters = filters(req)?;
    let wanted = |e: &Value| {
        let id = e["Actor"]["ID"].as_str().unwrap_or_default();
        let attr = |name: &str| e["Actor"]["Attributes"][name].as_str().unwrap_or_default();
        filters.iter().all(|(k, vals)| {
            vals.iter().any(|v| match k.as_str() {
                "type" => e["Type"] == v.as_str(),
                "event" => e["Action"] == v.as_str(),
                "container" => {
                    e["Type"] == "container" && (id.starts_with(v.as_str()) || attr("name") == v)
                }
                "image" => attr("image") == v || id == v,
                "network" => {
                    e["Type"] == "network" && (id.starts_with(v.as_str()) || attr("name") == v)
                }
                "volume" => e["Type"] == "volume" && id == v,
                _ => true,
            })
        })
    };
    let mut out = json_stream(w)?;
    crate::api::Api::events(engine, since, until, &mut |e| {
        if !wanted(&e) {
            return true;
        }
        let line = e.to_string() + "\n";
        out.write_all(line.as_bytes())
            .and_then(|()| out.flush())
            .is_ok()
    })?;
    let _ = out.finish();
    Ok(())
}

/// The host's CPU time so far (`/proc/stat`), in nanoseconds, as Docker's
/// `system_cpu_usage`.
fn system_cpu_ns() -> u64 {
    let hz = 100u64; // USER_HZ on Linux
    std::fs::read_to_string("/proc/stat")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("cpu "))
        .map(|rest| {
            rest.split_whitespace()
                .take(8)
                .filter_map(|v| v.parse::<u64>().ok())
                .sum::<u64>()
                * (1_000_000_000 / hz)
        })
        .unwrap_or(0)
}

/// One stats sample in the API's shape; `pre` is the previous one (CPU percentages come from
/// the difference).
fn stats_json(s: &crate::runtime::Stats, pre: Option<(u64, u64)>, system: u64) -> Value {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let (pre_cpu, pre_system) = pre.unwrap_or((0, 0));
    json!({
        "read": now,
        "preread": if pre.is_some() { now.clone() } else { "0001-01-01T00:00:00Z".into() },
        "id": s.id,
        "name": format!("/{}", s.name),
        "pids_stats": {"current": s.pids},
        "num_procs": 0,
        "cpu_stats": {
            "cpu_usage": {"total_usage": s.cpu_ns, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "system_cpu_usage": system,
            "online_cpus": cpus,
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
        },
        "precpu_stats": {
            "cpu_usage": {"total_usage": pre_cpu, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "system_cpu_usage": pre_system,
            "online_cpus": cpus,
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
        },
        "memory_stats": {"usage": s.memory_usage, "limit": s.memory_limit, "stats": {}},
        "blkio_stats": {},
        "storage_stats": {},
    })
}

/// `GET /containers/{id}/stats`: one sample (`stream=false`, with a second's CPU
/// difference unless `one-shot`), or one a second until the client leaves or the container
/// stops.
fn stats(engine: &Engine, id: &str, req: &Request, w: &mut dyn Conn) -> Result<()> {
    let stream = req
        .query
        .get("stream")
        .is_none_or(|v| v != "0" && v != "false");
    let one_shot = req.query_bool("one-shot");
    let first = engine.containers().stats(id)?;
    let mut pre = None;
    if !stream {
        if !one_shot && first.running {
            pre = Some((first.cpu_ns, system_cpu_ns()));
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
        let s = engine.containers().stats(id)?;
        let body = stats_json(&s, pre, system_cpu_ns()).to_string() + "\n";
        return http::respond(
            w,
            200,
            &[
                ("Content-Type", "application/json".into()),
                ("Api-Version", API_VERSION.into()),
            ],
            body.as_bytes(),
            false,
            true,
        )
        .map_err(|e| ApiError(500, e.to_string()));
    }
    let mut out = json_stream(w)?;
    loop {
        let Ok(s) = engine.containers().stats(id) else {
            break;
        };
        let system = system_cpu_ns();
        let line = stats_json(&s, pre, system).to_string() + "\n";
        if out
            .write_all(line.as_bytes())
            .and_then(|()| out.flush())
            .is_err()
            || !s.running
        {
            break;
        }
        pre = Some((s.cpu_ns, system));
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    let _ = out.finish();
    Ok(())
}

fn version() -> Value {
    let uname = rustix::system::uname();
    json!({
        "Platform": {"Name": "ketch"},
        "Components": [{"Name": "Engine", "Version": env!("CARGO_PKG_VERSION"),
                        "Details": {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
                                    "Os": "linux", "Arch": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
                                    "KernelVersion": uname.release().to_string_lossy(),
                                    "Experimental": "false", "GitCommit": "", "GoVersion": "", "BuildTime": ""}}],
        "Version": env!("CARGO_PKG_VERSION"),
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "",
        "Os": "linux",
        "Arch": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        "KernelVersion": uname.release().to_string_lossy(),
        "BuildTime": "",
    })
}

fn info(engine: &Engine) -> Result<Value> {
    let containers = engine.containers().list(true)?;
    let running = containers
        .iter()
        .filter(|c| c.status == crate::runtime::Status::Running)
        .count();
    let paused = containers
        .iter()
        .filter(|c| c.status == crate::runtime::Status::Paused)
        .count();
    let images = engine
        .images()
        .list(&crate::image::ListOptions::default())?;
    let uname = rustix::system::uname();
    let mem_total = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024);
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    Ok(json!({
        "ID": engine.engine_id(),
        "Containers": containers.len(),
        "ContainersRunning": running,
        "ContainersPaused": paused,
        "ContainersStopped": containers.len() - running - paused,
        "Images": images.len(),
        "Driver": engine.storage_driver(),
        "DockerRootDir": engine.root().display().to_string(),
        "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "MemTotal": mem_total,
        "OperatingSystem": "linux",
        "OSType": "linux",
        "Architecture": uname.machine().to_string_lossy(),
        "KernelVersion": uname.release().to_string_lossy(),
        "Name": uname.nodename().to_string_lossy(),
        "ServerVersion": env!("CARGO_PKG_VERSION"),
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": if v2 { "2" } else { "1" },
        "LoggingDriver": "json-file",
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null"], "Log": ["json-file"]},
        "SecurityOptions": ["name=seccomp,profile=builtin"],
        "Runtimes": {"ketch": {"path": "ketch-shim"}},
        "DefaultRuntime": "ketch",
        "Warnings": [],
    }))
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

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// `POST /containers/create`: the API's ContainerConfig + HostConfig as run options.
fn container_create(engine: &Engine, req: &Request) -> Result<Value> {
    let body = json_body(req)?;
    let name = req.query.get("name").cloned().filter(|n| !n.is_empty());
    let opts = crate::api::create::create_options(&body, name).map_err(bad)?;
    let c = engine.containers().create(&opts)?;
    Ok(json!({"Id": c.record.id, "Warnings": []}))
}

/// What a container's state is now, for waiting on it: (running, started at, finished at,
/// exit code), or `None` once it is removed.
fn snapshot(engine: &Engine, id: &str) -> Option<(bool, String, String, i32)> {
    let c = engine.containers().get(id).ok()?;
    Some((
        c.is_running(),
        c.task.started_at.clone(),
        c.task.finished_at.clone(),
        c.task.exit_code,
    ))
}

/// Waits for `condition`: `not-running` (now, if it is not), `next-exit` (the end of a run
/// that ends after now), `removed`. Returns the exit code.
fn wait_for(engine: &Engine, id: &str, condition: &str) -> crate::Result<i32> {
    let first = engine.containers().get(id)?;
    let full_id = first.record.id.clone();
    let mut last = first.task.exit_code;
    loop {
        let Ok(c) = engine.containers().get(&full_id) else {
            // Gone: an AutoRemove container's code was kept for this.
            let kept = removed_codes()
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&full_id)
                .copied();
            return Ok(kept.unwrap_or(last));
        };
        let ended = !c.is_running()
            && match condition {
                "not-running" => true,
                "next-exit" => c.task.finished_at != first.task.finished_at,
                _ => false,
            };
        if ended {
            return Ok(c.task.exit_code);
        }
        last = c.task.exit_code;
        if c.is_running() {
            crate::runtime::wait_for_monitor(&c, std::time::Duration::from_millis(100));
        } else {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

/// `POST /containers/{id}/wait`: the headers go out at once (clients wait on them), the
/// status when the condition is met.
fn container_wait(engine: &Engine, id: &str, condition: &str, w: &mut dyn Conn) -> Result<()> {
    if !matches!(condition, "not-running" | "next-exit" | "removed") {
        return Err(bad(format!("invalid condition: {condition}")));
    }
    engine.containers().get(id)?;
    let mut out = json_stream(w)?;
    let body = match wait_for(engine, id, condition) {
        Ok(code) => json!({"StatusCode": code, "Error": null}),
        Err(e) => json!({"StatusCode": -1, "Error": {"Message": e.to_string()}}),
    };
    let _ = writeln!(out, "{body}");
    let _ = out.finish();
    Ok(())
}

/// Exit codes of containers removed by AutoRemove, for those waiting on `removed` (the last
/// few hundred).
fn removed_codes() -> &'static std::sync::Mutex<BTreeMap<String, i32>> {
    static CODES: std::sync::OnceLock<std::sync::Mutex<BTreeMap<String, i32>>> =
        std::sync::OnceLock::new();
    CODES.get_or_init(Default::default)
}

/// Removes an `AutoRemove` container once it has run, from a thread of the daemon's.
fn auto_remove(engine: &Engine, id: String) {
    let engine = engine.clone();
    std::thread::spawn(move || {
        if let Ok(code) = wait_for(&engine, &id, "not-running") {
            {
                let mut codes = removed_codes().lock().unwrap_or_else(|p| p.into_inner());
                if codes.len() > 512 {
                    codes.clear();
                }
                codes.insert(id.clone(), code);
            }
            let _ = engine.containers().remove(&id, true);
        }
    });
}

/// `POST /containers/{id}/attach`: the connection is taken over (`101 UPGRADED`) and the
/// container's output follows on it, multiplexed without a terminal, raw with one, until
/// the container stops after having run. The output comes from the container's log.
fn container_attach(engine: &Engine, id: &str, req: &Request, w: &mut dyn Conn) -> Result<()> {
    let c = engine.containers().get(id)?;
    let tty = c.record.config.tty;
    let want = |fd: u8| match fd {
        2 => req.query_bool("stderr"),
        _ => req.query_bool("stdout"),
    };
    let ctype = if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    };
    let head = hijack_head(req, ctype);
    w.write_all(head.as_bytes())
        .map_err(|e| ApiError(500, e.to_string()))?;
    let path = engine.containers().log_path(id)?;
    let from = if req.query_bool("logs") {
        0
    } else {
        std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0)
    };
    let until = if req.query_bool("stream") {
        // A running container: until it stops; else until a run begins and ends.
        Until::RanAndStopped((!c.is_running()).then(|| c.task.started_at.clone()))
    } else {
        Until::Now
    };
    follow_log(engine, id, from, until, (tty, false), &want, w);
    let _ = w.flush();
    w.shutdown_write();
    Ok(())
}

/// Clients attached with stdin to a container that has not started: by container ID, the
/// monitor's end of a socket pair whose other end the client's connection is copied to and
/// from, and whether output goes in multiplexed frames (no terminal).
static PENDING: std::sync::Mutex<BTreeMap<String, (std::os::fd::OwnedFd, bool)>> =
    std::sync::Mutex::new(BTreeMap::new());

fn take_pending(id: &str) -> Option<(std::os::fd::OwnedFd, bool)> {
    PENDING.lock().unwrap_or_else(|e| e.into_inner()).remove(id)
}

/// The exec an attached `POST /exec/{id}/start` names.
fn exec_attaching(req: &Request) -> Option<String> {
    match (req.method.as_str(), segments(&req.path).as_slice()) {
        ("POST", ["exec", id, "start"]) => {
            let detach = serde_json::from_slice::<Value>(&req.body)
                .ok()
                .and_then(|b| b["Detach"].as_bool())
                .unwrap_or(false);
            (!detach).then(|| id.to_string())
        }
        _ => None,
    }
}

/// The container an attach request with stdin names, when its input can be given: one with
/// `OpenStdin` that is not running yet (its monitor is started with the stream). Attaching
/// to a running container's output is served by [`container_attach`].
fn attaching_stdin(req: &Request) -> Option<String> {
    match (req.method.as_str(), segments(&req.path).as_slice()) {
        ("POST", ["containers", id, "attach"]) if req.query_bool("stdin") => Some(id.to_string()),
        _ => None,
    }
}

/// Attach with stdin: the connection is hijacked and, once the container starts, copied to
/// its monitor's stdin; the monitor's output comes back on it. Ends with the container.
fn attach_stdin(
    engine: &Engine,
    id: &str,
    req: &Request,
    mut reader: BufReader<Box<dyn Conn>>,
    mut writer: Box<dyn Conn>,
) -> io::Result<()> {
    let c = match engine.containers().get(id) {
        Ok(c) => c,
        Err(e) => {
            let ApiError(status, message) = e.into();
            let body = json!({"message": message}).to_string();
            let headers = [("Content-Type", "application/json".to_string())];
            return http::respond(&mut writer, status, &headers, body.as_bytes(), false, false);
        }
    };
    if c.is_running() || !c.record.config.open_stdin {
        let _ = container_attach(engine, id, req, &mut *writer);
        return Ok(());
    }
    let (ours, theirs) = UnixStream::pair()?;
    let key = c.record.id.clone();
    PENDING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key.clone(), (theirs.into(), !c.record.config.tty));
    let ctype = if c.record.config.tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    };
    let head = hijack_head(req, ctype);
    if let Err(e) = writer.write_all(head.as_bytes()) {
        take_pending(&key);
        return Err(e);
    }
    // Input that ends before the start waits in the pair's buffer, its end included: a
    // client may close its side for writing before it asks for the start.
    let mut input = ours.try_clone()?;
    let copier = std::thread::spawn(move || {
        let _ = io::copy(&mut reader, &mut input);
        let _ = input.shutdown(std::net::Shutdown::Write);
    });
    let mut output = ours;
    let _ = io::copy(&mut output, &mut writer);
    let _ = writer.flush();
    writer.shutdown_write();
    take_pending(&key);
    drop(copier);
    Ok(())
}

/// The head of a response that takes the connection over: `101 UPGRADED` when the client
/// asked for the upgrade, else a plain 200 whose body is the stream.
fn hijack_head(req: &Request, ctype: &str) -> String {
    if req.header("upgrade").is_some() {
        format!(
            "HTTP/1.1 101 UPGRADED\r\nContent-Type: {ctype}\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nApi-Version: {API_VERSION}\r\n\r\n"
        )
    } else {
        format!("HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nApi-Version: {API_VERSION}\r\n\r\n")
    }
}

/// When a follower stops.
enum Until {
    /// After what the log holds now.
    Now,
    /// When the container is not running.
    Stopped,
    /// When the container has run after it started at this time, and stopped.
    RanAndStopped(Option<String>),
}

/// Writes the container's log lines from byte `from` on as they come (multiplexed frames,
/// or raw with a terminal), until `until`; a write error (the client went) ends it too.
fn follow_log(
    engine: &Engine,
    id: &str,
    from: u64,
    until: Until,
    (tty, timestamps): (bool, bool),
    want: &dyn Fn(u8) -> bool,
    w: &mut dyn Write,
) {
    use std::io::{Read, Seek, SeekFrom};
    use std::os::unix::fs::MetadataExt;
    let Ok(path) = engine.containers().log_path(id) else {
        return;
    };
    // The log is held open (made here if the container has not run yet; its monitor
    // appends to the same file), so what it holds can still be read after the container
    // is gone, removed by AutoRemove, say.
    let open = || {
        std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .ok()
    };
    let mut file = open();
    let mut offset = from;
    let mut partial = Vec::new();
    loop {
        let state = snapshot(engine, id);
        // Rotated under us: the file at the path is a new one; finish the old first.
        let rotated = match (&file, std::fs::metadata(&path)) {
            (Some(f), Ok(now)) => f.metadata().is_ok_and(|m| m.ino() != now.ino()),
            _ => false,
        };
        if let Some(f) = file.as_mut() {
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            if len < offset {
                offset = 0; // rotated
            }
            if f.seek(SeekFrom::Start(offset)).is_ok() {
                let mut buf = Vec::new();
                let _ = f.read_to_end(&mut buf);
                offset += buf.len() as u64;
                partial.extend_from_slice(&buf);
            }
            while let Some(nl) = partial.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = partial.drain(..=nl).collect();
                let Ok(v) = serde_json::from_slice::<Value>(&line) else {
                    continue;
                };
                let fd: u8 = if v["stream"] == "stderr" { 2 } else { 1 };
                if !want(fd) {
                    continue;
                }
                let text = v["log"].as_str().unwrap_or_default();
                let text = if timestamps {
                    format!("{} {text}", v["time"].as_str().unwrap_or_default())
                } else {
                    text.to_string()
                };
                if w.write_all(&frame(fd, text.as_bytes(), tty))
                    .and_then(|()| w.flush())
                    .is_err()
                {
                    return;
                }
            }
        }
        if rotated || file.is_none() {
            file = open();
            offset = 0;
        }
        let done = match (&until, &state) {
            (Until::Now, _) | (_, None) => true,
            (Until::Stopped, Some((running, ..))) => !running,
            (Until::RanAndStopped(begun), Some((running, started, ..))) => {
                !running && begun.as_ref().is_none_or(|b| started != b)
            }
        };
        if done {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// `GET /containers/{id}/logs`: the log in the multiplexed framing (stream, 3 zero bytes,
/// big-endian length, payload).
/// `GET /containers/{id}/logs`: the log's records (`since`, `tail`, `timestamps` applied),
/// then with `follow` what comes until the container stops; multiplexed frames, raw with a
/// terminal.
fn container_logs(engine: &Engine, id: &str, req: &Request, w: &mut dyn Conn) -> Result<()> {
    let c = engine.containers().get(id)?;
    let tty = c.record.config.tty;
    let (out, err) = (req.query_bool("stdout"), req.query_bool("stderr"));
    let want = move |fd: u8| if fd == 2 { err } else { out };
    let timestamps = req.query_bool("timestamps");
    let since = match req.query.get("since").filter(|s| !s.is_empty()) {
        Some(s) => Some(
            s.parse::<f64>()
                .map_err(|_| bad(format!("invalid since: {s:?}")))?,
        ),
        None => None,
    };
    let tail = match req.query.get("tail").map(String::as_str) {
        None | Some("") | Some("all") => None,
        Some(t) => Some(
            t.parse::<usize>()
                .map_err(|_| bad(format!("invalid tail: {t:?}")))?,
        ),
    };
    let (mut records, offset) = engine.containers().log_records(id)?;
    if let Some(since) = since {
        records.retain(|(_, t, _)| {
            chrono::DateTime::parse_from_rfc3339(t).is_ok_and(|t| {
                t.timestamp() as f64 + f64::from(t.timestamp_subsec_nanos()) / 1e9 >= since
            })
        });
    }
    if let Some(n) = tail {
        let skip = records.len().saturating_sub(n);
        records.drain(..skip);
    }
    let ctype = if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    };
    let mut body = http::ChunkedWriter::start(
        w,
        200,
        &[
            ("Content-Type", ctype.into()),
            ("Api-Version", API_VERSION.into()),
        ],
    )
    .map_err(|e| ApiError(500, e.to_string()))?;
    for (stream, time, text) in records {
        let fd: u8 = if stream == "stderr" { 2 } else { 1 };
        if !want(fd) {
            continue;
        }
        let line = if timestamps {
            format!("{time} {text}")
        } else {
            text
        };
        if body.write_all(&frame(fd, line.as_bytes(), tty)).is_err() {
            return Ok(());
        }
    }
    if req.query_bool("follow") {
        follow_log(
            engine,
            id,
            offset,
            Until::Stopped,
            (tty, timestamps),
            &want,
            &mut body,
        );
    }
    let _ = body.finish();
    Ok(())
}
