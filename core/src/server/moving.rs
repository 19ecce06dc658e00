//! ketch's own endpoints for `container move`, next to the Docker Engine API's: the move
//! of a container of this daemon to another engine, and this daemon as a move's
//! destination.

use super::*;

/// The `/ketch/...` endpoints.
pub(super) fn route(
    engine: &Engine,
    req: &Request,
    w: &mut dyn Conn,
    body: &mut (dyn io::Read + Send),
    m: &str,
    seg: &[&str],
) -> Result<Option<Reply>> {
    let reply = match (m, seg) {
        ("POST", ["ketch", "containers", id, "move"]) => {
            let v = json_body(req)?;
            let to: crate::api::moving::Destination =
                serde_json::from_value(v["Destination"].clone())
                    .map_err(|e| bad(format!("Destination: {e}")))?;
            let opts: crate::api::moving::MoveOptions =
                serde_json::from_value(v["Options"].clone()).unwrap_or_default();
            // Its TLS files, for as long as the move lasts.
            let (dest, _tls) = connect(&to, &engine.state().scratch)?;
            return images::progress_stream(w, |p| {
                let report = engine.move_container(id, &dest, &opts, &mut |s| {
                    p(&crate::model::ProgressMessage {
                        status: s.step.clone(),
                        progress_detail: Some(crate::model::ProgressDetail {
                            current: Some(s.bytes),
                            total: None,
                        }),
                        ..Default::default()
                    })
                })?;
                p(&crate::model::ProgressMessage {
                    status: "moved".into(),
                    aux: serde_json::to_value(&report).ok(),
                    ..Default::default()
                });
                Ok(())
            });
        }
        ("POST", ["ketch", "move", "check"]) => {
            let plan: crate::api::moving::MovePlan = serde_json::from_slice(&req.body)
                .map_err(|e| bad(format!("invalid move plan: {e}")))?;
            Reply::Json(
                200,
                serde_json::to_value(engine.containers().move_check(&plan)?).unwrap_or_default(),
            )
        }
        ("POST", ["ketch", "move", "in"]) => Reply::Json(
            200,
            serde_json::to_value(engine.receive_move(body)?).unwrap_or_default(),
        ),
        ("GET", ["ketch", "move", "live"]) => {
            crate::api::Api::container_move_live_check(engine)?;
            Reply::Empty(204)
        }
        _ => return Err(not_found(req)),
    };
    Ok(Some(reply))
}

/// A client of a move's destination: its TLS text (the asker's) written to files of a
/// private directory made in `scratch`, kept for as long as the client is used (the
/// directory returned, removed when dropped).
fn connect(
    to: &crate::api::moving::Destination,
    scratch: &std::path::Path,
) -> Result<(crate::client::Client, Option<PrivateDir>)> {
    if to.tls_ca.is_none() && to.tls_cert.is_none() && !to.tls_verify {
        return Ok((crate::client::Client::new(&to.url, None)?, None));
    }
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    // Named by its maker, for the sweep at open should the maker die before its drop.
    let pid = std::process::id();
    let dir = PrivateDir(scratch.join(format!(
        "{}{pid}-{}-{}",
        crate::state::MOVE_TLS_PREFIX,
        crate::util::process_start_time(pid).unwrap_or(0),
        crate::util::random_hex(6)
    )));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir.0)
        .map_err(|e| crate::Error::io(format!("create {}", dir.0.display()), e))?;
    let write = |name: &str, text: &Option<String>| -> Result<Option<std::path::PathBuf>> {
        let Some(text) = text else { return Ok(None) };
        let path = dir.0.join(name);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| crate::Error::io(format!("write {}", path.display()), e))?;
        Ok(Some(path))
    };
    let files = crate::tls::TlsFiles {
        ca: write("ca.pem", &to.tls_ca)?,
        cert: write("cert.pem", &to.tls_cert)?,
        key: write("key.pem", &to.tls_key)?,
        verify: to.tls_verify,
    };
    let client = crate::client::Client::new(&to.url, Some(&files))?;
    Ok((client, Some(dir)))
}

/// A directory of the daemon's, removed when dropped (or, should the daemon die first, at
/// the next open of its root: it is named by its maker).
struct PrivateDir(std::path::PathBuf);

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
