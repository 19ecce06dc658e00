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
/// to stdout and stderr until the daemon ends it.
fn relay(hj: Hijacked, stdin: bool) -> Result<()> {
    let Hijacked {
        mut reader,
        mut writer,
        raw,
    } = hj;
    if stdin {
        // Left running when the output ends first: the process exits under it.
        std::thread::spawn(move || {
            let _ = io::copy(&mut io::stdin().lock(), &mut writer);
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
    Ok(())
}

/// Attaches to a created (or stopped) container, starts it and stays with it to its end, as
/// `docker run` and `docker start -a` do. Returns its exit code.
pub fn start_attached(client: &Client, id: &str, opts: &CreateOptions) -> Result<i32> {
    let attach = format!(
        "/containers/{id}/attach?stream=1&stdout=1&stderr=1&stdin={}",
        u8::from(opts.open_stdin)
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
    relay(hj, opts.open_stdin)?;
    drop(_raw);
    let v = waiter
        .join()
        .map_err(|_| anyhow::anyhow!("waiting for the container panicked"))??;
    if let Some(m) = v["Error"]["Message"].as_str() {
        bail!("{m}");
    }
    Ok(v["StatusCode"].as_i64().unwrap_or(-1) as i32)
}

/// `exec` through the daemon: create, start on a hijacked connection, then its exit code.
pub fn exec(client: &Client, container: &str, opts: &ExecOptions) -> Result<i32> {
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
    relay(hj, opts.interactive)?;
    drop(_raw);
    let v = client.get(&format!("/exec/{id}/json"))?;
    Ok(v["ExitCode"].as_i64().unwrap_or(-1) as i32)
}
