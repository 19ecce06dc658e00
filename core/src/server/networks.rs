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
            let ep = crate::runtime::body::endpoint_of(id, &b["EndpointConfig"]).map_err(bad)?;
            engine.containers().connect(container, &ep)?;
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
            use crate::model::filters;
            let f = filters(req)?;
            filters::check(
                &f,
                &["name", "id", "driver", "label", "scope", "type", "dangling"],
            )
            .map_err(bad)?;
            let mut nets = Vec::new();
            for n in engine.network_list()? {
                let r = &n.record;
                let keep = filters::passes(&f, |k, want| {
                    Ok(match k {
                        "name" => r.name.contains(want),
                        "id" => r.id.starts_with(want),
                        "driver" => r.driver == want,
                        "label" => filters::label_matches(r.labels.iter(), want),
                        "scope" => want == "local",
                        "type" => match want {
                            "builtin" => r.predefined(),
                            "custom" => !r.predefined(),
                            _ => return Err(format!("invalid filter: 'type'='{want}'")),
                        },
                        _ => filters::boolean(k, want)? == n.endpoints.is_empty(),
                    })
                })
                .map_err(bad)?;
                if keep {
                    nets.push(serde_json::to_value(n.resource(&names)).unwrap_or_default());
                }
            }
            Reply::Json(200, Value::Array(nets))
        }
        _ => return Err(not_found(req)),
    };
    Ok(Some(reply))
}
