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
            let (dest, _tls) = to.connect(&engine.state().scratch)?;
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
