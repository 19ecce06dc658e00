//! The verbs that hold a connection to a daemon open: attached runs and exec. The rest go
//! through [`ketch::api::Api`], the same for a daemon and a local engine.

use std::io::{self, Write};

use anyhow::{Context, Result, bail};
use ketch::api::Api;
use ketch::client::{Body, Client, Hijacked};
use ketch::runtime::{CreateOptions, ExecOptions};
use serde_json::json;

use crate::containers::{RawMode, terminal_size};

/// Copies this process's stdin to the connection (with `stdin`) and the connection's output
/// to stdout and stderr until the daemon ends it. True when it ended because the detach keys
/// were typed: they go to the daemon, which ends the stream and leaves the process running;
/// they are watched for here too, to know why it ended.
fn relay(hj: Hijacked, stdin: bool, keys: &[u8]) -> Result<bool> {
    let Hijacked {
        mut reader,
        mut writer,
        raw,
    } = hj;
    let detached = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    if stdin {
        let detached = detached.clone();
        let mut scanner = ketch::runtime::DetachScanner::new(keys.to_vec());
        // Left running when the output ends first: the process exits under it.
        std::thread::spawn(move || {
            let mut input = io::stdin().lock();
            let mut buf = [0u8; 16 * 1024];
            loop {
                let n = match io::Read::read(&mut input, &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if scanner.feed(&buf[..n]).1 {
                    detached.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                if writer
                    .write_all(&buf[..n])
                    .and_then(|()| writer.flush())
                    .is_err()
                {
                    return;
                }
            }
            let _ = writer.shutdown_write();
        });
    } else {
        let _ = writer.shutdown_write();
    }
    let (mut out, mut err) = (io::stdout().lock(), io::stderr().lock());
    if raw {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = io::Read::read(&mut reader, &mut buf).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])?;
            out.flush()?;
        }
    } else {
        ketch::client::demux(&mut reader, &mut out, &mut err)?;
    }
    Ok(detached.load(std::sync::atomic::Ordering::SeqCst))
}

/// Said on stderr when the detach keys ended an attachment, as Docker's CLI says it.
fn detached_note() {
    eprintln!("\r\nread escape sequence");
}

/// Attaches to a created (or stopped) container, starts it and stays with it to its end, as
/// `docker run` and `docker start -a` do. Returns its exit code.
pub fn start_attached(
    client: &Client,
    id: &str,
    opts: &CreateOptions,
    streams: crate::containers::Streams,
    detach_keys: &str,
    sig_proxy: bool,
) -> Result<i32> {
    let flag = |on: bool| if on { "1" } else { "0" };
    let keys = ketch::runtime::parse_detach_keys(detach_keys)
        .map_err(|e| crate::containers::Exit(125, e.to_string()))?;
    // Before any thread starts, so that none takes them. The container is in no process
    // group of ours: every signal this process gets, from the terminal too, is sent on as a
    // kill, as Docker's CLI proxies them (without a terminal: with one, its keys go
    // through it).
    if sig_proxy && !opts.tty {
        let (client, id) = (client.clone(), id.to_string());
        crate::containers::forward_signals(move |sig, _| {
            let _ = client.container_kill(&id, sig);
        });
    }
    let attach = format!(
        "/containers/{id}/attach?{}",
        ketch::client::query(&[
            ("stream", "1"),
            ("stdout", flag(streams.stdout)),
            ("stderr", flag(streams.stderr)),
            ("stdin", flag(opts.open_stdin && streams.stdin)),
            ("detachKeys", detach_keys),
        ])
    );
    let hj = client.hijack("POST", &attach, None)?;
    // The daemon answers a wait's head at once: asked before the start, no exit is missed.
    let condition = if opts.auto_remove {
        "removed"
    } else {
        "next-exit"
    };
    let wait = client.request(
        "POST",
        &format!("/containers/{id}/wait?condition={condition}"),
        Body::None,
    )?;
    let waiter = std::thread::spawn(move || wait.json());
    if let Err(e) = client.container_start(id) {
        if opts.auto_remove {
            let _ = client.container_remove(id, true, false);
        }
        return Err(crate::containers::engine_exit(e));
    }
    let _raw = if opts.tty { RawMode::enter() } else { None };
    if opts.tty
        && let Some((h, w)) = terminal_size()
    {
        let _ = client.request(
            "POST",
            &format!("/containers/{id}/resize?h={h}&w={w}"),
            Body::None,
        );
    }
    let detached = relay(hj, opts.open_stdin && streams.stdin, &keys)?;
    drop(_raw);
    if detached {
        // The container runs on; the wait asked for is left unanswered.
        detached_note();
        return Ok(0);
    }
    let v = waiter
        .join()
        .map_err(|_| anyhow::anyhow!("waiting for the container panicked"))??;
    if let Some(m) = v["Error"]["Message"].as_str() {
        bail!("{m}");
    }
    Ok(v["StatusCode"].as_i64().unwrap_or(-1) as i32)
}

/// `exec` through the daemon: create, start on a hijacked connection, then its exit code.
pub fn exec(
    client: &Client,
    container: &str,
    opts: &ExecOptions,
    detach_keys: &str,
) -> Result<i32> {
    let keys = ketch::runtime::parse_detach_keys(detach_keys)
        .map_err(|e| crate::containers::Exit(125, e.to_string()))?;
    let attached = !opts.detach;
    let body = json!({
        "AttachStdin": opts.interactive && attached,
        "AttachStdout": attached,
        "AttachStderr": attached,
        "Tty": opts.tty,
        "ConsoleSize": opts.console_size.map(|(h, w)| [h, w]),
        "Cmd": opts.cmd,
        "Env": opts.env,
        "User": opts.user.clone().unwrap_or_default(),
        "WorkingDir": opts.workdir.clone().unwrap_or_default(),
        "DetachKeys": detach_keys,
    });
    let created = client.call(
        "POST",
        &format!("/containers/{container}/exec"),
        Some(&body),
    )?;
    let id = created["Id"]
        .as_str()
        .context("the daemon gave the exec no ID")?
        .to_string();
    let start = json!({"Detach": opts.detach, "Tty": opts.tty});
    if opts.detach {
        client.call("POST", &format!("/exec/{id}/start"), Some(&start))?;
        return Ok(0);
    }
    let hj = client.hijack("POST", &format!("/exec/{id}/start"), Some(&start))?;
    let _raw = if opts.tty { RawMode::enter() } else { None };
    let detached = relay(hj, opts.interactive, &keys)?;
    drop(_raw);
    if detached {
        detached_note();
        return Ok(0);
    }
    let v = client.get(&format!("/exec/{id}/json"))?;
    Ok(v["ExitCode"].as_i64().unwrap_or(-1) as i32)
}
