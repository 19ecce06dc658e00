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
        ("GET", ["distribution", name @ .., "json"]) if !name.is_empty() => Reply::Json(
            200,
            engine
                .registries()
                .distribution(&name.join("/"), Some(registry_auth(req)?))?,
        ),
        ("GET", ["images", "search"]) => {
            return Err(ApiError(
                501,
                "image search is not supported: ketch keeps no index of a registry's repositories; pull an image by its name".into(),
            ));
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
            // As Docker: the answer is a JSON stream from the start, and an archive that
            // cannot be loaded is an error in it (clients raise their load error on it).
            let loaded = match engine.images().load(crate::image::LoadSource::Reader(body)) {
                Ok(l) => l,
                Err(e) => {
                    let ApiError(status, message) = ApiError::from(e);
                    let line = json!({
                        "errorDetail": {"message": message, "code": status},
                        "error": message,
                    });
                    return Ok(Some(Reply::Text(
                        200,
                        "application/json",
                        (line.to_string() + "\n").into_bytes(),
                    )));
                }
            };
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
        ("POST", ["images", "create"]) if req.query.contains_key("fromImage") => {
            let from = &req.query["fromImage"];
            let tag = req.query.get("tag").filter(|t| !t.is_empty());
            let parsed = crate::reference::Reference::parse(from).map_err(crate::Error::from)?;
            // The tag may be a digest; no tag and none in the name: every tag.
            let (reference, all_tags) = match tag {
                Some(t) if t.starts_with("sha256:") => (format!("{from}@{t}"), false),
                Some(t) => (format!("{from}:{t}"), false),
                None => (
                    from.clone(),
                    parsed.tag().is_none() && parsed.digest().is_none(),
                ),
            };
            let opts = crate::registry::PullOptions {
                reference,
                all_tags,
                platform: req.query.get("platform").cloned().filter(|p| !p.is_empty()),
                auth: Some(registry_auth(req)?),
                insecure: false,
            };
            return progress_stream(w, |p| {
                engine.registries().pull(&opts, &mut |m| p(&m)).map(|_| ())
            });
        }
        ("POST", ["images", name @ .., "push"]) if !name.is_empty() => {
            let name = name.join("/");
            let reference = match req.query.get("tag").filter(|t| !t.is_empty()) {
                Some(t) => format!("{name}:{t}"),
                None => name,
            };
            let opts = crate::registry::PushOptions {
                reference,
                auth: Some(registry_auth(req)?),
                insecure: false,
            };
            return progress_stream(w, |p| {
                engine.registries().push(&opts, &mut |m| p(&m)).map(|_| ())
            });
        }
        ("POST", ["images", "create"]) => {
            if req.query.get("fromSrc").map(String::as_str) != Some("-") {
                return Err(bad("fromImage or fromSrc=- is required"));
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
        ("POST", ["build"]) => return build(engine, req, w, body),
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

/// `POST /build`: the body is the context as a tar; the answer Docker's build stream.
fn build(
    engine: &Engine,
    req: &Request,
    w: &mut dyn Conn,
    body: &mut (dyn io::Read + Send),
) -> Result<Option<Reply>> {
    let map = |k: &str| -> Result<std::collections::BTreeMap<String, String>> {
        let Some(text) = req.query.get(k).filter(|t| !t.is_empty()) else {
            return Ok(Default::default());
        };
        let v: serde_json::Map<String, Value> =
            serde_json::from_str(text).map_err(|e| bad(format!("{k}: invalid JSON: {e}")))?;
        Ok(v.into_iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_string())))
            .collect())
    };
    let nonempty = |k: &str| req.query.get(k).cloned().filter(|v| !v.is_empty());
    let opts = crate::build::BuildOptions {
        dockerfile: nonempty("dockerfile"),
        dockerfile_text: None,
        tags: req.query_all("t"),
        build_args: map("buildargs")?,
        target: nonempty("target"),
        labels: map("labels")?,
        network: nonempty("networkmode"),
        no_cache: req.query_bool("nocache"),
        pull: req.query_bool("pull"),
        platform: nonempty("platform"),
        quiet: req.query_bool("q"),
    };
    let mut idle = Some(w);
    let mut out = None;
    let mut send = |m: &crate::model::ProgressMessage| {
        if out.is_none()
            && let Some(w) = idle.take()
        {
            out = json_stream(w).ok();
        }
        if let Some(o) = out.as_mut() {
            let line = serde_json::to_string(m).unwrap_or_default() + "\r\n";
            let _ = io::Write::write_all(o, line.as_bytes());
        }
    };
    let res = crate::api::Api::image_build(
        engine,
        crate::build::BuildContext::Tar(body),
        &opts,
        &mut send,
    );
    if let Err(e) = res {
        // Before a word of the build (a context with no Dockerfile, say), the error is the
        // answer's status, as dockerd gives it.
        let Some(o) = out.as_mut() else {
            return Err(e.into());
        };
        // As dockerd: the failed command's exit code is the code the CLI exits with.
        let code = e
            .downcast_ref::<crate::build::BuildError>()
            .and_then(|b| b.exit_code())
            .map(|c| c.clamp(1, 255) as u16)
            .unwrap_or(1);
        let failure = crate::model::ProgressMessage::failure(e.to_string(), Some(code));
        let line = serde_json::to_string(&failure).unwrap_or_default() + "\r\n";
        let _ = io::Write::write_all(o, line.as_bytes());
    }
    if let Some(o) = out {
        o.finish().map_err(|e| ApiError(500, e.to_string()))?;
    }
    Ok(None)
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

/// The credentials a request carries in `X-Registry-Auth` (none: anonymous). The daemon
/// never reads its own user's stored credentials for a client.
fn registry_auth(req: &Request) -> Result<crate::registry::AuthConfig> {
    crate::registry::AuthConfig::from_header(req.header("x-registry-auth").unwrap_or(""))
        .map_err(|e| ApiError::from(crate::Error::from(e)))
}

/// Runs `op`, streaming its progress as Docker's JSON messages. An error before the first
/// message is the answer's status (a missing image is a 404); after it, the stream's last
/// line.
pub(super) fn progress_stream(
    w: &mut dyn Conn,
    op: impl FnOnce(&mut dyn FnMut(&crate::model::ProgressMessage)) -> crate::Result<()>,
) -> Result<Option<Reply>> {
    let mut idle = Some(w);
    let mut out = None;
    let res = op(&mut |m| {
        if out.is_none()
            && let Some(w) = idle.take()
        {
            out = json_stream(w).ok();
        }
        if let Some(o) = out.as_mut() {
            let line = serde_json::to_string(m).unwrap_or_default() + "\r\n";
            // A client gone mid-way: the work still finishes, unread.
            let _ = io::Write::write_all(o, line.as_bytes());
        }
    });
    match (res, out) {
        (Err(e), None) => Err(e.into()),
        (res, Some(mut o)) => {
            if let Err(e) = res {
                // The kind travels as the status it would have had; an unreachable
                // registry is a 503 here, where a whole answer would say 500.
                let code = match e.kind() {
                    crate::ErrorKind::Unavailable => 503,
                    _ => ApiError::from(crate::Error::new(e.kind(), e.to_string())).0,
                };
                let failure = crate::model::ProgressMessage::failure(e.to_string(), Some(code));
                let line = serde_json::to_string(&failure).unwrap_or_default() + "\r\n";
                let _ = io::Write::write_all(&mut o, line.as_bytes());
            }
            o.finish().map_err(|e| ApiError(500, e.to_string()))?;
            Ok(None)
        }
        (Ok(()), None) => Ok(Some(Reply::Text(200, "application/json", Vec::new()))),
    }
}
