//! The endpoints that stream: attach (hijacked, with the container's stdin), logs
//! (followed), stats and events.

use super::*;

/// `POST /containers/{id}/attach`: the connection is taken over (`101 UPGRADED`) and the
/// container's output follows on it, multiplexed without a terminal, raw with one, until
/// the container stops after having run. The output comes from the container's log.
pub(super) fn container_attach(
    engine: &Engine,
    id: &str,
    req: &Request,
    w: &mut dyn Conn,
) -> Result<()> {
    attach_output(engine, id, req, w, None)
}

/// [`container_attach`], ended early when `quit` is set (the client detached).
fn attach_output(
    engine: &Engine,
    id: &str,
    req: &Request,
    w: &mut dyn Conn,
    quit: Option<&std::sync::atomic::AtomicBool>,
) -> Result<()> {
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
    // Where the output begins is taken before the head goes: a client that has the head may
    // type at once, and what the container answers must not fall before it.
    let (from, until) = attach_span(engine, &c, req)?;
    let head = hijack_head(req, ctype);
    w.write_all(head.as_bytes())
        .and_then(|()| w.flush())
        .map_err(|e| ApiError(500, e.to_string()))?;
    // A client reads the stream raw from its socket once it has the head: what arrives with
    // the head, its HTTP reader may keep (docker-py's does). Output already there (`logs`)
    // waits a moment, as a live stream's first output naturally does.
    if req.query_bool("logs") {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    follow_log(engine, id, from, until, (tty, false), &want, w, quit);
    let _ = w.flush();
    w.shutdown_write();
    Ok(())
}

/// Clients attached with stdin to a container that has not started: by container ID, the
/// monitor's end of a socket pair whose other end the client's connection is copied to and
/// from, and whether output goes in multiplexed frames (no terminal).
pub(super) static PENDING: std::sync::Mutex<BTreeMap<String, (std::os::fd::OwnedFd, bool)>> =
    std::sync::Mutex::new(BTreeMap::new());

pub(super) fn take_pending(id: &str) -> Option<(std::os::fd::OwnedFd, bool)> {
    PENDING.lock().unwrap_or_else(|e| e.into_inner()).remove(id)
}

/// The container an attach request with stdin names, when its input can be given: one with
/// `OpenStdin` that is not running yet (its monitor is started with the stream). Attaching
/// to a running container's output is served by [`container_attach`].
pub(super) fn attaching_stdin(req: &Request) -> Option<String> {
    match (req.method.as_str(), segments(&req.path).as_slice()) {
        ("POST", ["containers", id, "attach"]) if req.query_bool("stdin") => Some(id.to_string()),
        _ => None,
    }
}

/// Attach with stdin: the connection is hijacked and, once the container starts, copied to
/// its monitor's stdin; the monitor's output comes back on it. Ends with the container.
pub(super) fn attach_stdin(
    engine: &Engine,
    id: &str,
    req: &Request,
    mut reader: BufReader<Box<dyn Conn>>,
    mut writer: Box<dyn Conn>,
) -> io::Result<()> {
    let c = match engine.containers().get(id) {
        Ok(c) => c,
        Err(e) => return engine_error_reply(&mut *writer, e),
    };
    let keys = match crate::runtime::parse_detach_keys(
        req.query.get("detachKeys").map_or("", String::as_str),
    ) {
        Ok(k) => k,
        Err(e) => return error_reply(&mut *writer, 400, &e.to_string()),
    };
    if !c.record.config.open_stdin {
        let _ = container_attach(engine, id, req, &mut *writer);
        return Ok(());
    }
    if c.is_running() {
        return attach_running(engine, id, req, reader, writer, keys);
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
        if !crate::runtime::copy_until_detached(&mut reader, &mut input, keys) {
            let _ = input.shutdown(std::net::Shutdown::Write);
            return;
        }
        // Detached: the client's stream ends, the container runs on with its input open
        // (never ended from here) and its output drained, so its monitor never waits on a
        // full socket, until it ends.
        reader.get_ref().shutdown_write();
        let _ = io::copy(&mut input, &mut io::sink());
    });
    let mut output = ours;
    let _ = io::copy(&mut output, &mut writer);
    let _ = writer.flush();
    writer.shutdown_write();
    take_pending(&key);
    drop(copier);
    Ok(())
}

/// What an attach sends of the container's log: from its start (`logs`) or its end now, to
/// the stop of the container (`stream`: a running one's, or a run's begun after now) or to
/// what it holds now.
pub(super) fn attach_span(
    engine: &Engine,
    c: &crate::runtime::Container,
    req: &Request,
) -> Result<(u64, Until)> {
    let from = if req.query_bool("logs") {
        0
    } else {
        let path = engine.containers().log_path(&c.record.id)?;
        std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0)
    };
    let until = if req.query_bool("stream") {
        Until::RanAndStopped((!c.is_running()).then(|| c.task.started_at.clone()))
    } else {
        Until::Now
    };
    Ok((from, until))
}

/// Attach with stdin to a running container with its input open: what the client sends
/// goes to the monitor's `attach.sock` until the detach keys (or its end); the output comes
/// from the log, as [`container_attach`] sends it.
fn attach_running(
    engine: &Engine,
    id: &str,
    req: &Request,
    mut reader: BufReader<Box<dyn Conn>>,
    mut writer: Box<dyn Conn>,
    keys: Vec<u8>,
) -> io::Result<()> {
    let mut input = match engine.containers().attach_input(id) {
        Ok(i) => i,
        Err(e) => return engine_error_reply(&mut *writer, e),
    };
    let quit = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let copier = {
        let quit = quit.clone();
        std::thread::spawn(move || {
            if crate::runtime::copy_until_detached(&mut reader, &mut input, keys) {
                quit.store(true, std::sync::atomic::Ordering::Relaxed);
                reader.get_ref().shutdown_write();
            }
        })
    };
    let _ = attach_output(engine, id, req, &mut *writer, Some(&quit));
    // The client's input may still be open (it did not detach): it goes with the stream.
    drop(copier);
    Ok(())
}

/// The head of a response that takes the connection over: `101 UPGRADED` when the client
/// asked for the upgrade, else a plain 200 whose body is the stream.
pub(super) fn hijack_head(req: &Request, ctype: &str) -> String {
    if req.header("upgrade").is_some() {
        format!(
            "HTTP/1.1 101 UPGRADED\r\nContent-Type: {ctype}\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nApi-Version: {API_VERSION}\r\n\r\n"
        )
    } else {
        format!("HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nApi-Version: {API_VERSION}\r\n\r\n")
    }
}

/// When a follower stops.
pub(super) enum Until {
    /// After what the log holds now.
    Now,
    /// When the container is not running.
    Stopped,
    /// When the container has run after it started at this time, and stopped.
    RanAndStopped(Option<String>),
}

/// Writes the container's log lines from byte `from` on as they come (multiplexed frames,
/// or raw with a terminal), until `until`; a write error (the client went) ends it too.
#[allow(clippy::too_many_arguments)] // what to follow, how to frame it, when to stop
pub(super) fn follow_log(
    engine: &Engine,
    id: &str,
    from: u64,
    until: Until,
    (tty, timestamps): (bool, bool),
    want: &dyn Fn(u8) -> bool,
    w: &mut dyn Write,
    quit: Option<&std::sync::atomic::AtomicBool>,
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
        if done || quit.is_some_and(|q| q.load(std::sync::atomic::Ordering::Relaxed)) {
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
pub(super) fn container_logs(
    engine: &Engine,
    id: &str,
    req: &Request,
    w: &mut dyn Conn,
) -> Result<()> {
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
    let until = match req
        .query
        .get("until")
        .filter(|s| !s.is_empty() && *s != "0")
    {
        Some(s) => Some(
            s.parse::<f64>()
                .map_err(|_| bad(format!("invalid until: {s:?}")))?,
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
    if let Some(until) = until {
        records.retain(|(_, t, _)| {
            chrono::DateTime::parse_from_rfc3339(t).is_ok_and(|t| {
                t.timestamp() as f64 + f64::from(t.timestamp_subsec_nanos()) / 1e9 <= until
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
            None,
        );
    }
    let _ = body.finish();
    Ok(())
}

/// The host's CPU time so far (`/proc/stat`), in nanoseconds, as Docker's
/// `system_cpu_usage`.
pub(super) fn system_cpu_ns() -> u64 {
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
pub(super) fn stats_json(s: &crate::runtime::Stats, pre: Option<(u64, u64)>, system: u64) -> Value {
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
        "networks": s.networks,
        "blkio_stats": {},
        "storage_stats": {},
    })
}

/// `GET /containers/{id}/stats`: one sample (`stream=false`, with a second's CPU
/// difference unless `one-shot`), or one a second until the client leaves or the container
/// stops.
pub(super) fn stats(engine: &Engine, id: &str, req: &Request, w: &mut dyn Conn) -> Result<()> {
    let stream = req
        .query
        .get("stream")
        .is_none_or(|v| !matches!(v.to_ascii_lowercase().as_str(), "0" | "false"));
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

/// `GET /events`: what happened in [since, until], then what happens, as JSON lines, until
/// `until` (or the client leaves).
pub(super) fn events(engine: &Engine, req: &Request, w: &mut dyn Conn) -> Result<()> {
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
