//! The container endpoints: create, start, stop, kill, wait, remove, rename, pause,
//! archive (cp), export, diff, resize, prune; attach, logs and stats are `streams`.

use super::*;

/// The `containers` endpoints.
pub(super) fn route(
    engine: &Engine,
    req: &Request,
    w: &mut dyn Conn,
    body: &mut (dyn io::Read + Send),
    m: &str,
    seg: &[&str],
) -> Result<Option<Reply>> {
    let reply = match (m, seg) {
        ("GET", ["containers", "json"]) => Reply::Json(
            200,
            Value::Array(
                engine
                    .containers()
                    .summaries(req.query_bool("all"), &filters(req)?)?,
            ),
        ),
        ("POST", ["containers", "create"]) => Reply::Json(201, container_create(engine, req)?),
        ("GET", ["containers", id, "json"]) => {
            let mut v = engine.containers().inspect(id)?;
            if req.asks_before(45) {
                short_id_among_aliases(&mut v);
            }
            Reply::Json(200, v)
        }
        ("POST", ["containers", id, "start"]) => {
            let c = engine.containers().get(id)?;
            if c.is_running() {
                Reply::Empty(304)
            } else {
                let started = match take_pending(&c.record.id) {
                    Some((stream, framed)) => engine
                        .containers()
                        .start_streaming(id, stream, true, framed),
                    None => engine.containers().start(id, false, false).map(|_| ()),
                };
                if let Err(e) = started {
                    // A container that was to go once it ran goes when it cannot start too,
                    // as Docker removes it (a client waiting for `removed` is let go).
                    if c.record.config.auto_remove {
                        let _ = engine.containers().remove(&c.record.id, true);
                    }
                    return Err(e.into());
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
                .and_then(|t| t.parse::<i64>().ok())
                .map(|t| std::time::Duration::from_secs(t.max(0) as u64));
            let c = engine.containers().get(id)?;
            if !c.is_running() {
                Reply::Empty(304)
            } else {
                engine.containers().stop(id, t)?;
                Reply::Empty(204)
            }
        }
        ("POST", ["containers", id, "restart"]) => {
            let t = req
                .query
                .get("t")
                .and_then(|t| t.parse::<i64>().ok())
                .map(|t| std::time::Duration::from_secs(t.max(0) as u64));
            if engine.containers().get(id)?.is_running() {
                engine.containers().stop(id, t)?;
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
        ("POST", ["containers", id, "update"]) => {
            let body = json_body(req)?;
            let u = crate::runtime::body::update_options(&body).map_err(bad)?;
            engine.containers().update(id, &u)?;
            Reply::Json(200, json!({"Warnings": []}))
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
        // A legacy link, as `/CONTAINER/ALIAS`, not a container.
        ("DELETE", ["containers", id, alias]) if req.query_bool("link") => {
            engine.containers().remove_link(id, alias)?;
            Reply::Empty(204)
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
            let (ids, space) = engine.containers().prune_report()?;
            Reply::Json(
                200,
                json!({"ContainersDeleted": ids, "SpaceReclaimed": space}),
            )
        }
        ("GET", ["containers", id, "export"]) => {
            let mut out =
                http::ChunkedWriter::start(w, 200, &[("Content-Type", "application/x-tar".into())])
                    .map_err(|e| ApiError(500, e.to_string()))?;
            let _ = engine.containers().export(id, &mut out);
            let _ = out.finish();
            return Ok(None);
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
        ("POST", ["containers", id, "resize"]) => {
            let (h, w) = resize_dims(req)?;
            let c = engine.containers().get(id)?;
            if c.record.config.tty {
                engine.containers().resize(id, h, w)?;
            }
            Reply::Empty(200)
        }
        ("GET", ["containers", id, "stats"]) => return stats(engine, id, req, w).map(|()| None),
        _ => return Err(not_found(req)),
    };
    Ok(Some(reply))
}

/// `POST /containers/create`: the API's ContainerConfig + HostConfig as run options.
pub(super) fn container_create(engine: &Engine, req: &Request) -> Result<Value> {
    let body = json_body(req)?;
    let name = req.query.get("name").cloned().filter(|n| !n.is_empty());
    if let Some(p) = req.query.get("platform") {
        crate::runtime::check_platform(p).map_err(|e| bad(format!("platform {e}")))?;
    }
    let opts = crate::api::create::create_options(&body, name).map_err(bad)?;
    let c = engine.containers().create(&opts)?;
    Ok(json!({"Id": c.record.id, "Warnings": []}))
}

/// `GET|HEAD /containers/{id}/archive`: a tar of the path, with its stat in the
/// `X-Docker-Container-Path-Stat` header (base64 JSON), as `docker cp` expects.
pub(super) fn container_archive_get(
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
pub(super) mod base64_engine {
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

/// What a container's state is now, for waiting on it: (running, started at, finished at,
/// exit code), or `None` once it is removed.
pub(super) fn snapshot(engine: &Engine, id: &str) -> Option<(bool, String, String, i32)> {
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
pub(super) fn wait_for(
    engine: &Engine,
    id: &str,
    condition: &str,
    given_up: &dyn Fn() -> bool,
) -> crate::Result<Option<i32>> {
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
            return Ok(Some(kept.unwrap_or(last)));
        };
        // An exit since the wait began: also one the restart policy follows with a
        // restart, which ends a wait as it does with Docker.
        let exited = !c.task.finished_at.is_empty() && c.task.finished_at != first.task.finished_at;
        let ended = match condition {
            "not-running" => {
                !c.is_running() || (c.status == crate::runtime::Status::Restarting && exited)
            }
            "next-exit" => {
                exited && (!c.is_running() || c.status == crate::runtime::Status::Restarting)
            }
            _ => false,
        };
        if ended {
            return Ok(Some(c.task.exit_code));
        }
        if given_up() {
            return Ok(None);
        }
        last = c.task.exit_code;
        if c.is_running() {
            crate::runtime::wait_for_monitor(&c, std::time::Duration::from_millis(100));
        } else {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

/// `POST /containers/{id}/wait`: the headers go out at once (clients wait on them), the
/// status when the condition is met.
pub(super) fn container_wait(
    engine: &Engine,
    id: &str,
    condition: &str,
    w: &mut dyn Conn,
) -> Result<()> {
    if !matches!(condition, "not-running" | "next-exit" | "removed") {
        return Err(bad(format!("invalid condition: {condition}")));
    }
    engine.containers().get(id)?;
    // A client that hangs up stops the wait (one for `removed` may otherwise never end).
    let probe = w
        .try_clone_conn()
        .map_err(|e| ApiError(500, format!("clone the connection: {e}")))?;
    let mut out = json_stream(w)?;
    let body = match wait_for(engine, id, condition, &|| probe.hung_up()) {
        Ok(Some(code)) => json!({"StatusCode": code, "Error": null}),
        Ok(None) => return Ok(()),
        Err(e) => json!({"StatusCode": -1, "Error": {"Message": e.to_string()}}),
    };
    let _ = writeln!(out, "{body}");
    let _ = out.finish();
    Ok(())
}

/// Exit codes of containers removed by AutoRemove, for those waiting on `removed` (the last
/// few hundred).
pub(super) fn removed_codes() -> &'static std::sync::Mutex<BTreeMap<String, i32>> {
    static CODES: std::sync::OnceLock<std::sync::Mutex<BTreeMap<String, i32>>> =
        std::sync::OnceLock::new();
    CODES.get_or_init(Default::default)
}

/// Removes an `AutoRemove` container once it has run, from a thread of the daemon's.
pub(super) fn auto_remove(engine: &Engine, id: String) {
    let engine = engine.clone();
    std::thread::spawn(move || {
        if let Ok(Some(code)) = wait_for(&engine, &id, "not-running", &|| false) {
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

/// Before API 1.45 Docker listed a container's short ID among its aliases on each
/// user-defined network (it is among its DNS names in every version): clients of those
/// versions (docker-py 7 asks for 1.44) are shown it there.
fn short_id_among_aliases(v: &mut Value) {
    let Some(short) = v["Id"]
        .as_str()
        .map(|id| id[..id.len().min(12)].to_string())
    else {
        return;
    };
    let Some(networks) = v["NetworkSettings"]["Networks"].as_object_mut() else {
        return;
    };
    for (name, ep) in networks.iter_mut() {
        if matches!(name.as_str(), "bridge" | "host" | "none") {
            continue;
        }
        let mut aliases: Vec<Value> = ep["Aliases"].as_array().cloned().unwrap_or_default();
        if !aliases.iter().any(|a| a == short.as_str()) {
            aliases.push(Value::String(short.clone()));
        }
        ep["Aliases"] = Value::Array(aliases);
    }
}
