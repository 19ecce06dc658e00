//! The volume endpoints: list, inspect, create, remove, prune.

use super::*;

/// The `volumes` endpoints.
pub(super) fn route(
    engine: &Engine,
    req: &Request,
    _w: &mut dyn Conn,
    _body: &mut (dyn io::Read + Send),
    m: &str,
    seg: &[&str],
) -> Result<Option<Reply>> {
    let reply = match (m, seg) {
        ("POST", ["volumes", "create"]) => {
            let opts = crate::api::create::volume_options(&json_body(req)?);
            Reply::Json(
                201,
                serde_json::to_value(engine.volumes().create(&opts)?).unwrap_or_default(),
            )
        }
        ("POST", ["volumes", "prune"]) => {
            let all = req
                .query
                .get("filters")
                .is_some_and(|f| f.contains("\"all\""));
            let (names, space) = engine.volume_prune(all)?;
            Reply::Json(
                200,
                json!({"VolumesDeleted": names, "SpaceReclaimed": space}),
            )
        }
        ("GET", ["volumes", name]) => Reply::Json(
            200,
            serde_json::to_value(engine.volumes().inspect(name)?).unwrap_or_default(),
        ),
        ("DELETE", ["volumes", name]) => {
            engine.volume_remove(name, req.query_bool("force"))?;
            Reply::Empty(204)
        }
        ("GET", ["volumes"]) => {
            use crate::model::filters;
            let f = filters(req)?;
            filters::check(&f, &["name", "driver", "label", "dangling"]).map_err(bad)?;
            // Volumes a container names, for `dangling`.
            let used: std::collections::HashSet<String> = if f.contains_key("dangling") {
                engine
                    .containers()
                    .list(true)?
                    .iter()
                    .flat_map(|c| c.record.config.mounts.iter())
                    .filter(|m| m.kind == "volume")
                    .map(|m| m.source.clone())
                    .collect()
            } else {
                Default::default()
            };
            let mut out = Vec::new();
            for v in engine.volumes().list()? {
                let keep = filters::passes(&f, |k, want| {
                    Ok(match k {
                        "name" => v.name.contains(want),
                        "driver" => v.driver == want,
                        "label" => filters::label_matches(v.labels.iter(), want),
                        _ => filters::boolean(k, want)? != used.contains(&v.name),
                    })
                })
                .map_err(bad)?;
                if keep {
                    out.push(v);
                }
            }
            Reply::Json(200, json!({"Volumes": out, "Warnings": []}))
        }
        _ => return Err(not_found(req)),
    };
    Ok(Some(reply))
}
