//! The image endpoints: list, inspect, history, tag, remove, prune, import, load, save,
//! and `POST /commit`.

use super::*;

/// The `images` endpoints.
pub(super) fn route(
    engine: &Engine,
    req: &Request,
    w: &mut dyn Conn,
    body: &mut (dyn io::Read + Send),
    m: &str,
    seg: &[&str],
) -> Result<Option<Reply>> {
    let reply = match (m, seg) {
        ("GET", ["images", "json"]) => {
            let f = filters(req)?;
            let one = |k: &str| f.get(k).and_then(|v| v.first()).cloned();
            if let Some(k) = f
                .keys()
                .find(|k| !matches!(k.as_str(), "dangling" | "reference"))
            {
                return Err(bad(format!("invalid filter '{k}'")));
            }
            let opts = crate::image::ListOptions {
                all: req.query_bool("all"),
                dangling: one("dangling").map(|d| d == "true" || d == "1"),
                reference: one("reference"),
            };
            Reply::Json(
                200,
                serde_json::to_value(engine.images().list(&opts)?).unwrap_or_default(),
            )
        }
        ("GET", ["images", name @ .., "json"]) if !name.is_empty() => {
            let image = engine.images().inspect(&name.join("/"))?;
            let mut v = serde_json::to_value(&image).unwrap_or_default();
            // Before API 1.45 an image also had the configuration of the container it was
            // committed from. Compose 1.x reads it whatever version it negotiated (Docker
            // from 25 on breaks it there), so it stays, as an extra field newer clients skip.
            v["Container"] = json!("");
            v["ContainerConfig"] = container_config_of(&image.config);
            Reply::Json(200, v)
        }
        // Images.
        ("POST", ["images", "load"]) => {
            let loaded = engine
                .images()
                .load(crate::image::LoadSource::Reader(body))?;
            let text: String = loaded
                .iter()
                .flat_map(|l| {
                    if l.tags.is_empty() {
                        vec![format!("Loaded image ID: {}\n", l.id)]
                    } else {
                        l.tags
                            .iter()
                            .map(|t| format!("Loaded image: {t}\n"))
                            .collect()
                    }
                })
                .map(|line| json!({"stream": line}).to_string() + "\n")
                .collect();
            Reply::Text(200, "application/json", text.into_bytes())
        }
        ("POST", ["images", "create"]) => {
            if req.query.get("fromSrc").map(String::as_str) != Some("-") {
                return Err(ApiError(
                    501,
                    "pulling from a registry is not served yet; import with fromSrc=-".into(),
                ));
            }
            let reference = match (req.query.get("repo"), req.query.get("tag")) {
                (Some(r), Some(t)) if !r.is_empty() && !t.is_empty() => Some(format!("{r}:{t}")),
                (Some(r), _) if !r.is_empty() => Some(r.clone()),
                _ => None,
            };
            let opts = crate::image::ImportOptions {
                reference,
                changes: req.query_all("changes"),
                message: req.query.get("message").cloned().filter(|m| !m.is_empty()),
                source: "-".into(),
            };
            let id = engine.images().import(body, &opts)?;
            Reply::Text(
                200,
                "application/json",
                (json!({"status": id.to_string()}).to_string() + "\n").into_bytes(),
            )
        }
        ("GET", ["images", "get"]) => {
            let names: Vec<String> = req.query_all("names");
            return image_save(engine, &names, w).map(|()| None);
        }
        ("GET", ["images", name @ .., "get"]) if !name.is_empty() => {
            return image_save(engine, &[name.join("/")], w).map(|()| None);
        }
        ("GET", ["images", name @ .., "history"]) if !name.is_empty() => Reply::Json(
            200,
            serde_json::to_value(engine.images().history(&name.join("/"))?).unwrap_or_default(),
        ),
        ("POST", ["images", name @ .., "tag"]) if !name.is_empty() => {
            let repo = req
                .query
                .get("repo")
                .ok_or_else(|| bad("repo is required"))?;
            let target = match req.query.get("tag").filter(|t| !t.is_empty()) {
                Some(t) => format!("{repo}:{t}"),
                None => repo.clone(),
            };
            engine.images().tag(&name.join("/"), &target)?;
            Reply::Empty(201)
        }
        ("POST", ["images", "prune"]) => {
            let all = req
                .query
                .get("filters")
                .is_some_and(|f| f.contains("\"dangling\"") && f.contains("false"));
            Reply::Json(
                200,
                serde_json::to_value(engine.images().prune(all)?).unwrap_or_default(),
            )
        }
        ("DELETE", ["images", name @ ..]) if !name.is_empty() => Reply::Json(
            200,
            serde_json::to_value(
                engine
                    .images()
                    .remove(&name.join("/"), req.query_bool("force"))?,
            )
            .unwrap_or_default(),
        ),
        // Containers' files and changes.
        ("POST", ["commit"]) => {
            let container = req
                .query
                .get("container")
                .ok_or_else(|| bad("container is required"))?;
            let reference = match (req.query.get("repo"), req.query.get("tag")) {
                (Some(r), Some(t)) if !r.is_empty() && !t.is_empty() => Some(format!("{r}:{t}")),
                (Some(r), _) if !r.is_empty() => Some(r.clone()),
                _ => None,
            };
            let opts = crate::runtime::CommitOptions {
                reference,
                changes: req.query_all("changes"),
                message: req.query.get("comment").cloned().filter(|c| !c.is_empty()),
                author: req.query.get("author").cloned().filter(|a| !a.is_empty()),
                pause: req
                    .query
                    .get("pause")
                    .is_none_or(|p| p != "0" && p != "false"),
            };
            let id = engine.containers().commit(container, &opts)?;
            Reply::Json(201, json!({"Id": id.to_string()}))
        }
        _ => return Err(not_found(req)),
    };
    Ok(Some(reply))
}

/// `GET /images/get`: the images as one tar (Docker's own format), streamed.
pub(super) fn image_save(engine: &Engine, names: &[String], w: &mut dyn Conn) -> Result<()> {
    if names.is_empty() {
        return Err(bad("names is required"));
    }
    // Refused before a byte is sent: an unknown image is a 404, not a broken stream.
    for n in names {
        engine.images().inspect(n)?;
    }
    let mut out =
        http::ChunkedWriter::start(w, 200, &[("Content-Type", "application/x-tar".into())])
            .map_err(|e| ApiError(500, e.to_string()))?;
    let _ = engine.images().save(
        names,
        crate::image::SaveFormat::DockerArchive,
        crate::image::SaveDest::Writer(&mut out),
    );
    let _ = out.finish();
    Ok(())
}
