//! The exec endpoints: create, start (attached, detached or hijacked), resize, inspect.

use super::*;

/// The `exec` endpoints.
pub(super) fn route(
    engine: &Engine,
    req: &Request,
    w: &mut dyn Conn,
    _body: &mut (dyn io::Read + Send),
    m: &str,
    seg: &[&str],
) -> Result<Option<Reply>> {
    let reply = match (m, seg) {
        ("POST", ["exec", id, "start"]) => {
            return exec_start(engine, id, req, w, None).map(|()| None);
        }
        ("GET", ["exec", id, "json"]) => Reply::Json(200, exec_inspect(id)?),
        ("POST", ["exec", id, "resize"]) => {
            let (h, w) = resize_dims(req)?;
            exec_resize(id, h, w)?;
            Reply::Empty(200)
        }
        // Networks.
        _ => return Err(not_found(req)),
    };
    Ok(Some(reply))
}

/// Execs made and not yet forgotten: their configuration, then their state.
pub(super) struct Exec {
    container: String,
    opts: crate::runtime::ExecOptions,
    running: bool,
    exit_code: Option<i32>,
    /// The monitor while it runs attached, by a pidfd taken before it could be waited for: a
    /// resize that races its end is refused by the kernel, never sent to a reused PID.
    monitor: Option<Arc<std::os::fd::OwnedFd>>,
    /// The input sequence that detaches the client, leaving the process running.
    detach_keys: Vec<u8>,
}

pub(super) fn execs() -> &'static std::sync::Mutex<BTreeMap<String, Exec>> {
    static EXECS: std::sync::OnceLock<std::sync::Mutex<BTreeMap<String, Exec>>> =
        std::sync::OnceLock::new();
    EXECS.get_or_init(Default::default)
}

pub(super) fn exec_create(engine: &Engine, container: &str, req: &Request) -> Result<Value> {
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
    // Named in any case, as Go's decoder matches it (docker-py sends `detachKeys`).
    let keys = b
        .as_object()
        .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case("DetachKeys")))
        .and_then(|(_, v)| v.as_str())
        .unwrap_or("");
    let detach_keys = crate::runtime::parse_detach_keys(keys).map_err(crate::Error::from)?;
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
            detach_keys,
        },
    );
    Ok(json!({"Id": id}))
}

/// `POST /exec/{id}/start`: the process's output, multiplexed, on the taken-over connection
/// (or nothing, detached).
/// `POST /exec/{id}/start`. Attached, the connection is taken over: the process's output
/// goes on it (framed, raw with a terminal) and, with `input` (the connection's reading
/// side, for an exec with stdin), what the client sends goes to the process.
pub(super) fn exec_start(
    engine: &Engine,
    id: &str,
    req: &Request,
    w: &mut dyn Conn,
    input: Option<BufReader<Box<dyn Conn>>>,
) -> Result<()> {
    let b = json_body(req)?;
    let detach = b["Detach"].as_bool().unwrap_or(false);
    let (container, mut opts, keys) = {
        let mut all = execs().lock().unwrap_or_else(|p| p.into_inner());
        let e = all
            .get_mut(id)
            .ok_or_else(|| ApiError(404, format!("No such exec instance: {id}")))?;
        if e.running || e.exit_code.is_some() {
            return Err(ApiError(409, format!("exec {id} has already run")));
        }
        e.running = true;
        (e.container.clone(), e.opts.clone(), e.detach_keys.clone())
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
    // Framed or raw as the start asks (its `Tty`), as Docker decides it: a process with a
    // terminal may still have its output framed on the stream.
    let tty = b["Tty"].as_bool().unwrap_or(false);
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
    // What the client sends, to the process's stdin until either ends or the client
    // detaches: then its stream ends and the process runs on, its input held open (in
    // `held`) until it ends, its output drained.
    let held = Arc::new(std::sync::Mutex::new(None));
    if let (Some(mut stdin), Some(mut input)) = (child.stdin.take(), input) {
        let held = held.clone();
        std::thread::spawn(move || {
            if crate::runtime::copy_until_detached(&mut input, &mut stdin, keys) {
                input.get_ref().shutdown_write();
                *held.lock().unwrap_or_else(|p| p.into_inner()) = Some(stdin);
            }
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
    // A client that went (or detached) stops the writing, not the reading: the process is
    // never stopped by a full pipe or a broken one.
    let mut writing = true;
    for (fd, data) in rx {
        if writing && w.write_all(&frame(fd, &data, tty)).is_err() {
            writing = false;
        }
    }
    for r in readers {
        let _ = r.join();
    }
    let code = child.wait().ok().and_then(|s| s.code()).unwrap_or(125);
    drop(held.lock().unwrap_or_else(|p| p.into_inner()).take());
    finish(Some(code));
    let _ = w.flush();
    w.shutdown_write();
    Ok(())
}

/// `POST /exec/{id}/resize`. The size is kept for a start still to come (or under way); while
/// the exec runs, its monitor is told.
pub(super) fn exec_resize(id: &str, h: u16, w: u16) -> Result<()> {
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

pub(super) fn exec_inspect(id: &str) -> Result<Value> {
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

/// The exec an attached `POST /exec/{id}/start` names.
pub(super) fn exec_attaching(req: &Request) -> Option<String> {
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
