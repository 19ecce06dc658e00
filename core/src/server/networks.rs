//! The network endpoints: list, inspect, create, remove, prune, connect, disconnect.

use super::*;

/// The `networks` endpoints.
pub(super) fn route(
    engine: &Engine,
    req: &Request,
    _w: &mut dyn Conn,
    _body: &mut (dyn io::Read + Send),
    m: &str,
    seg: &[&str],
) -> Result<Option<Reply>> {
    let reply = match (m, seg) {
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
        _ => return Err(not_found(req)),
    };
    Ok(Some(reply))
}
