//! Socket-server mode: the Docker Engine API over HTTP on a UNIX socket, a thin router from
//! requests to the same engine the CLI uses embedded. One thread per connection (the engine
//! is synchronous; a connection is a plain stream that can be hijacked for attach).

pub mod http;

use std::collections::BTreeMap;
use std::io::{self, BufReader, Write};
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

/// Serves connections from `listener` until it fails; each on a thread of its own.
pub fn serve(engine: Arc<Engine>, listener: UnixListener) -> io::Result<()> {
    for conn in listener.incoming() {
        let conn = match conn {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let engine = engine.clone();
        std::thread::spawn(move || {
            let _ = connection(&engine, conn);
        });
    }
    Ok(())
}

fn connection(engine: &Engine, stream: UnixStream) -> io::Result<()> {
    let mut reader = BufReader::with_capacity(64 * 1024, stream.try_clone()?);
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
        if let Err(e) = http::read_body(&mut req, &mut reader) {
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
        let keep_alive = req.keep_alive;
        let head = req.method == "HEAD";
        let reply = route(engine, &req, &mut writer);
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

fn route(engine: &Engine, req: &Request, w: &mut UnixStream) -> Result<Option<Reply>> {
    let seg = segments(&req.path);
    let m = req.method.as_str();
    let reply = match (m, seg.as_slice()) {
        ("GET" | "HEAD", ["_ping"]) => {
            Reply::Text(200, "text/plain; charset=utf-8", b"OK".to_vec())
        }
        ("GET", ["version"]) => Reply::Json(200, version()),
        ("GET", ["info"]) => Reply::Json(200, info(engine)?),
        ("GET", ["containers", "json"]) => Reply::Json(200, containers_list(engine, req)?),
        ("POST", ["containers", "create"]) => Reply::Json(201, container_create(engine, req)?),
        ("GET", ["containers", id, "json"]) => Reply::Json(200, engine.container_inspect(id)?),
        ("POST", ["containers", id, "start"]) => {
            let c = engine.container_get(id)?;
            if c.is_running() {
                Reply::Empty(304)
            } else {
                engine.container_start(id, false, false)?;
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
            let c = engine.container_get(id)?;
            if !c.is_running() {
                Reply::Empty(304)
            } else {
                engine.container_stop(id, std::time::Duration::from_secs(t))?;
                Reply::Empty(204)
            }
        }
        ("POST", ["containers", id, "restart"]) => {
            let t = req
                .query
                .get("t")
                .and_then(|t| t.parse().ok())
                .unwrap_or(10);
            if engine.container_get(id)?.is_running() {
                engine.container_stop(id, std::time::Duration::from_secs(t))?;
            }
            engine.container_start(id, false, false)?;
            Reply::Empty(204)
        }
        ("POST", ["containers", id, "kill"]) => {
            let sig = req
                .query
                .get("signal")
                .map(String::as_str)
                .unwrap_or("KILL");
            let n = signal_number(sig).ok_or_else(|| bad(format!("invalid signal: {sig}")))?;
            engine.container_kill(id, n)?;
            Reply::Empty(204)
        }
        ("POST", ["containers", id, "pause"]) => {
            engine.container_pause(id)?;
            Reply::Empty(204)
        }
        ("POST", ["containers", id, "unpause"]) => {
            engine.container_unpause(id)?;
            Reply::Empty(204)
        }
        ("POST", ["containers", id, "rename"]) => {
            let name = req
                .query
                .get("name")
                .ok_or_else(|| bad("name is required"))?;
            engine.container_rename(id, name)?;
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
            engine.container_remove_with(id, req.query_bool("force"), req.query_bool("v"))?;
            Reply::Empty(204)
        }
        ("GET", ["containers", id, "logs"]) if req.query_bool("follow") => {
            let c = engine.container_get(id)?;
            let tty = c.record.config.tty;
            let ctype = if tty {
                "application/vnd.docker.raw-stream"
            } else {
                "application/vnd.docker.multiplexed-stream"
            };
            let (out, err) = (req.query_bool("stdout"), req.query_bool("stderr"));
            let want = move |fd: u8| if fd == 2 { err } else { out };
            let mut body = http::ChunkedWriter::start(
                w,
                200,
                &[
                    ("Content-Type", ctype.into()),
                    ("Api-Version", API_VERSION.into()),
                ],
            )
            .map_err(|e| ApiError(500, e.to_string()))?;
            follow_log(engine, id, 0, Until::Stopped, tty, &want, &mut body);
            let _ = body.finish();
            return Ok(None);
        }
        ("GET", ["containers", id, "logs"]) => Reply::Text(
            200,
            "application/vnd.docker.multiplexed-stream",
            container_logs(engine, id, req)?,
        ),
        ("GET", ["containers", id, "changes"]) => {
            let changes: Vec<Value> = engine
                .container_diff(id)?
                .into_iter()
                .map(|c| {
                    json!({"Path": c.path, "Kind": match c.kind { 'C' => 0, 'A' => 1, _ => 2 }})
                })
                .collect();
            Reply::Json(200, Value::Array(changes))
        }
        ("POST", ["containers", "prune"]) => {
            let ids = engine.container_prune()?;
            Reply::Json(200, json!({"ContainersDeleted": ids, "SpaceReclaimed": 0}))
        }
        ("GET", ["images", "json"]) => Reply::Json(
            200,
            serde_json::to_value(engine.image_list(&crate::image::ListOptions::default())?)
                .unwrap_or_default(),
        ),
        ("GET", ["images", name @ .., "json"]) if !name.is_empty() => Reply::Json(
            200,
            serde_json::to_value(engine.image_inspect(&name.join("/"))?).unwrap_or_default(),
        ),
        ("GET", ["networks"]) => {
            let names: BTreeMap<String, String> = engine
                .container_list(true)?
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
            json!({"Volumes": engine.volume_list()?, "Warnings": []}),
        ),
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
    let containers = engine.container_list(true)?;
    let running = containers
        .iter()
        .filter(|c| c.status == crate::runtime::Status::Running)
        .count();
    let paused = containers
        .iter()
        .filter(|c| c.status == crate::runtime::Status::Paused)
        .count();
    let images = engine.image_list(&crate::image::ListOptions::default())?;
    let uname = rustix::system::uname();
    let mem_total = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024);
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    Ok(json!({
        "ID": "",
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

fn containers_list(engine: &Engine, req: &Request) -> Result<Value> {
    let all = req.query_bool("all");
    let mut out = Vec::new();
    for c in engine.container_list(all)? {
        let created = chrono::DateTime::parse_from_rfc3339(&c.record.created)
            .map(|t| t.timestamp())
            .unwrap_or(0);
        let command = std::iter::once(c.record.path.clone())
            .chain(c.record.args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ");
        out.push(json!({
            "Id": c.record.id,
            "Names": [format!("/{}", c.record.name)],
            "Image": c.record.config.image,
            "ImageID": c.record.image_id,
            "Command": command,
            "Created": created,
            "Ports": [],
            "Labels": c.record.config.labels.iter().cloned().collect::<BTreeMap<_, _>>(),
            "State": c.status.as_str(),
            "Status": c.status_text(),
            "HostConfig": {"NetworkMode": crate::runtime::NetMode::of(&c.record.config).name()},
            "Mounts": [],
        }));
    }
    Ok(Value::Array(out))
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
    let image = body["Image"]
        .as_str()
        .filter(|i| !i.is_empty())
        .ok_or_else(|| bad("config.Image is required"))?;
    let hc = &body["HostConfig"];
    let restart = hc["RestartPolicy"]["Name"]
        .as_str()
        .filter(|n| !n.is_empty() && *n != "no")
        .map(
            |n| match hc["RestartPolicy"]["MaximumRetryCount"].as_u64() {
                Some(m) if m > 0 && n == "on-failure" => format!("{n}:{m}"),
                _ => n.to_string(),
            },
        );
    let mut mounts = Vec::new();
    for b in strings(&hc["Binds"]) {
        let parts: Vec<&str> = b.split(':').collect();
        let (source, target, opts) = match parts.as_slice() {
            [s, t] => (*s, *t, ""),
            [s, t, o] => (*s, *t, *o),
            _ => return Err(bad(format!("invalid bind: {b}"))),
        };
        mounts.push(crate::volume::MountSpec {
            kind: if source.starts_with('/') {
                "bind"
            } else {
                "volume"
            }
            .into(),
            source: source.into(),
            target: target.into(),
            readonly: opts.split(',').any(|o| o == "ro"),
            create_host_path: true,
            ..Default::default()
        });
    }
    let opts = crate::runtime::CreateOptions {
        image: image.to_string(),
        name: req.query.get("name").cloned().filter(|n| !n.is_empty()),
        cmd: strings(&body["Cmd"]),
        entrypoint: body["Entrypoint"]
            .as_array()
            .map(|_| strings(&body["Entrypoint"])),
        env: strings(&body["Env"]),
        workdir: body["WorkingDir"]
            .as_str()
            .filter(|w| !w.is_empty())
            .map(str::to_string),
        user: body["User"]
            .as_str()
            .filter(|u| !u.is_empty())
            .map(str::to_string),
        hostname: body["Hostname"]
            .as_str()
            .filter(|h| !h.is_empty())
            .map(str::to_string),
        labels: body["Labels"]
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default(),
        tty: body["Tty"].as_bool().unwrap_or(false),
        open_stdin: body["OpenStdin"].as_bool().unwrap_or(false),
        memory: hc["Memory"].as_u64().filter(|m| *m > 0),
        cpus: hc["NanoCpus"]
            .as_u64()
            .filter(|n| *n > 0)
            .map(|n| n as f64 / 1e9),
        cpu_shares: hc["CpuShares"].as_u64().filter(|s| *s > 0),
        pids_limit: hc["PidsLimit"].as_i64().filter(|p| *p > 0),
        privileged: hc["Privileged"].as_bool().unwrap_or(false),
        cap_add: strings(&hc["CapAdd"]),
        cap_drop: strings(&hc["CapDrop"]),
        read_only: hc["ReadonlyRootfs"].as_bool().unwrap_or(false),
        network: hc["NetworkMode"]
            .as_str()
            .filter(|n| !n.is_empty() && *n != "default")
            .map(str::to_string),
        restart,
        auto_remove: hc["AutoRemove"].as_bool().unwrap_or(false),
        init: hc["Init"].as_bool().unwrap_or(false),
        mounts,
        ..Default::default()
    };
    let c = engine.container_create(&opts)?;
    Ok(json!({"Id": c.record.id, "Warnings": []}))
}

/// What a container's state is now, for waiting on it: (running, started at, finished at,
/// exit code), or `None` once it is removed.
fn snapshot(engine: &Engine, id: &str) -> Option<(bool, String, String, i32)> {
    let c = engine.container_get(id).ok()?;
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
    let first = snapshot(engine, id).ok_or_else(|| {
        crate::Error::from(crate::runtime::ContainerError::NotFound {
            name: id.to_string(),
        })
    })?;
    let mut last = first.3;
    loop {
        let now = snapshot(engine, id);
        match (&now, condition) {
            (None, _) => return Ok(last),
            (Some((false, ..)), "not-running") => return Ok(now.map_or(last, |n| n.3)),
            (Some((false, _, finished, code)), "next-exit") if *finished != first.2 => {
                return Ok(*code);
            }
            _ => {}
        }
        if let Some(n) = &now {
            last = n.3;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// `POST /containers/{id}/wait`: the headers go out at once (clients wait on them), the
/// status when the condition is met.
fn container_wait(engine: &Engine, id: &str, condition: &str, w: &mut UnixStream) -> Result<()> {
    if !matches!(condition, "not-running" | "next-exit" | "removed") {
        return Err(bad(format!("invalid condition: {condition}")));
    }
    engine.container_get(id)?;
    let mut out = http::ChunkedWriter::start(
        w,
        200,
        &[
            ("Content-Type", "application/json".into()),
            ("Api-Version", API_VERSION.into()),
        ],
    )
    .map_err(|e| ApiError(500, e.to_string()))?;
    let body = match wait_for(engine, id, condition) {
        Ok(code) => json!({"StatusCode": code, "Error": null}),
        Err(e) => json!({"StatusCode": -1, "Error": {"Message": e.to_string()}}),
    };
    let _ = writeln!(out, "{body}");
    let _ = out.finish();
    Ok(())
}

/// Removes an `AutoRemove` container once it has run, from a thread of the daemon's.
fn auto_remove(engine: &Engine, id: String) {
    let engine = engine.clone();
    std::thread::spawn(move || {
        if wait_for(&engine, &id, "not-running").is_ok() {
            let _ = engine.container_remove(&id, true);
        }
    });
}

/// `POST /containers/{id}/attach`: the connection is taken over (`101 UPGRADED`) and the
/// container's output follows on it, multiplexed without a terminal, raw with one, until
/// the container stops after having run. The output comes from the container's log.
fn container_attach(engine: &Engine, id: &str, req: &Request, w: &mut UnixStream) -> Result<()> {
    let c = engine.container_get(id)?;
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
    let head = if req.header("upgrade").is_some() {
        format!(
            "HTTP/1.1 101 UPGRADED\r\nContent-Type: {ctype}\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nApi-Version: {API_VERSION}\r\n\r\n"
        )
    } else {
        format!("HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nApi-Version: {API_VERSION}\r\n\r\n")
    };
    w.write_all(head.as_bytes())
        .map_err(|e| ApiError(500, e.to_string()))?;
    let path = engine.container_log_path(id)?;
    let from = if req.query_bool("logs") {
        0
    } else {
        std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0)
    };
    let until = if req.query_bool("stream") {
        Until::RanAndStopped(c.task.started_at.clone())
    } else {
        Until::Now
    };
    follow_log(engine, id, from, until, tty, &want, w);
    let _ = w.flush();
    let _ = w.shutdown(std::net::Shutdown::Write);
    Ok(())
}

/// When a follower stops.
enum Until {
    /// After what the log holds now.
    Now,
    /// When the container is not running.
    Stopped,
    /// When the container has run after it started at this time, and stopped.
    RanAndStopped(String),
}

/// Writes the container's log lines from byte `from` on as they come (multiplexed frames,
/// or raw with a terminal), until `until`; a write error (the client went) ends it too.
fn follow_log(
    engine: &Engine,
    id: &str,
    from: u64,
    until: Until,
    tty: bool,
    want: &dyn Fn(u8) -> bool,
    w: &mut dyn Write,
) {
    let Ok(path) = engine.container_log_path(id) else {
        return;
    };
    let mut offset = from;
    let mut partial = Vec::new();
    loop {
        let state = snapshot(engine, id);
        if let Ok(mut f) = std::fs::File::open(&path) {
            use std::io::{Read, Seek, SeekFrom};
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
                let text = v["log"].as_str().unwrap_or_default().as_bytes();
                let mut frame = Vec::with_capacity(text.len() + 8);
                if !tty {
                    frame.push(fd);
                    frame.extend_from_slice(&[0, 0, 0]);
                    frame.extend_from_slice(&(text.len() as u32).to_be_bytes());
                }
                frame.extend_from_slice(text);
                if w.write_all(&frame).and_then(|()| w.flush()).is_err() {
                    return;
                }
            }
        }
        let done = match (&until, &state) {
            (Until::Now, _) | (_, None) => true,
            (Until::Stopped, Some((running, ..))) => !running,
            (Until::RanAndStopped(begun), Some((running, started, ..))) => {
                !running && started != begun
            }
        };
        if done {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `GET /containers/{id}/logs`: the log in the multiplexed framing (stream, 3 zero bytes,
/// big-endian length, payload).
fn container_logs(engine: &Engine, id: &str, req: &Request) -> Result<Vec<u8>> {
    let stdout = req.query_bool("stdout");
    let stderr = req.query_bool("stderr");
    let timestamps = req.query_bool("timestamps");
    let mut out = Vec::new();
    for (stream, time, text) in engine.container_logs(id)? {
        let fd: u8 = if stream == "stderr" { 2 } else { 1 };
        if (fd == 1 && !stdout) || (fd == 2 && !stderr) {
            continue;
        }
        let line = if timestamps {
            format!("{time} {text}")
        } else {
            text
        };
        out.push(fd);
        out.extend_from_slice(&[0, 0, 0]);
        out.extend_from_slice(&(line.len() as u32).to_be_bytes());
        out.extend_from_slice(line.as_bytes());
    }
    Ok(out)
}

fn signal_number(name: &str) -> Option<i32> {
    if let Ok(n) = name.parse::<i32>() {
        return Some(n);
    }
    let n = name.trim_start_matches("SIG");
    Some(match n {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "TERM" => libc::SIGTERM,
        "STOP" => libc::SIGSTOP,
        "CONT" => libc::SIGCONT,
        "WINCH" => libc::SIGWINCH,
        _ => return None,
    })
}
