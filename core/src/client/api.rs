//! The [`Api`] over a daemon: each operation as the Docker Engine API request that does it,
//! through [`Client`].

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Body, Client, ClientError, query};
use crate::Result;
use crate::api::moving::{
    Destination, MoveCheck, MoveOptions, MovePlan, MoveProgress, MoveReceipt, MoveReport,
};
use crate::api::{Api, LogOptions};
use crate::image::{ImportOptions, ListOptions, LoadSource, SaveDest, SaveFormat};
use crate::model::ProgressMessage;
use crate::model::{
    HistoryResponseItem, ImageDeleteResponseItem, ImageInspect, ImagePruneResponse, ImageSummary,
    NetworkResource,
};
use crate::network::{NetworkAttachment, NetworkCreate};
use crate::registry::{AuthConfig, PullOptions, PushOptions};
use crate::runtime::{
    Change, CommitOptions, CreateOptions, ExecOptions, LogRecord, Stats, UpdateOptions,
};
use crate::system::{DiskUsage, PruneReport};
use crate::volume::{Volume, VolumeCreate};

fn enc(s: &str) -> String {
    query(&[("", s)])[1..].to_string()
}

impl Client {
    fn empty(&self, method: &str, path: &str) -> Result<()> {
        self.request(method, path, Body::None)?.bytes()?;
        Ok(())
    }

    fn typed<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        let v = self.get(path)?;
        serde_json::from_value(v)
            .map_err(|e| ClientError::Protocol(format!("GET {path}: {e}")).into())
    }
}

impl Api for Client {
    fn describe(&self) -> String {
        self.url().to_string()
    }

    fn destination(&self) -> Result<Option<Destination>> {
        Destination::read(self.url(), self.tls()).map(Some)
    }

    fn container_move(
        &self,
        name: &str,
        dest: &dyn Api,
        opts: &MoveOptions,
        progress: &mut dyn FnMut(&MoveProgress),
    ) -> Result<MoveReport> {
        // The daemon moves it, from its own store: it is told where to.
        let to = dest.destination()?.ok_or_else(|| ClientError::Url {
            url: dest.describe(),
            reason: "a daemon moves containers to another daemon: give the destination as unix:///PATH or tcp://HOST:PORT".into(),
        })?;
        let body = json!({"Destination": to, "Options": opts});
        let resp = self.request(
            "POST",
            &format!("/ketch/containers/{}/move", enc(name)),
            Body::Json(&body),
        )?;
        let mut report = None;
        progress_messages(resp, &mut |m| match &m.aux {
            Some(a) => report = serde_json::from_value::<MoveReport>(a.clone()).ok(),
            None => progress(&MoveProgress {
                step: m.status.clone(),
                bytes: m
                    .progress_detail
                    .as_ref()
                    .and_then(|d| d.current)
                    .unwrap_or(0),
            }),
        })?;
        report.ok_or_else(|| {
            ClientError::Protocol("the move's answer ended without its report".into()).into()
        })
    }
    fn container_move_check(&self, plan: &MovePlan) -> Result<MoveCheck> {
        let body = serde_json::to_value(plan).unwrap_or_default();
        let v = self.call("POST", "/ketch/move/check", Some(&body))?;
        serde_json::from_value(v)
            .map_err(|e| ClientError::Protocol(format!("POST /ketch/move/check: {e}")).into())
    }
    fn container_move_in(&self, stream: &mut (dyn Read + Send)) -> Result<MoveReceipt> {
        let v = self
            .request("POST", "/ketch/move/in", Body::Stream(stream))?
            .json()?;
        serde_json::from_value(v)
            .map_err(|e| ClientError::Protocol(format!("POST /ketch/move/in: {e}")).into())
    }
    fn container_move_live_check(&self) -> Result<()> {
        self.empty("GET", "/ketch/move/live")
    }

    fn container_create(&self, opts: &CreateOptions) -> Result<String> {
        let body = crate::api::create::create_body(opts);
        let path = match &opts.name {
            Some(n) => format!("/containers/create?name={}", enc(n)),
            None => "/containers/create".into(),
        };
        let v = self.call("POST", &path, Some(&body))?;
        Ok(v["Id"].as_str().unwrap_or_default().to_string())
    }
    fn container_start(&self, name: &str) -> Result<()> {
        self.empty("POST", &format!("/containers/{}/start", enc(name)))
    }
    fn container_stop(&self, name: &str, timeout: Option<Duration>) -> Result<()> {
        let t = timeout
            .map(|t| format!("?t={}", t.as_secs()))
            .unwrap_or_default();
        self.empty("POST", &format!("/containers/{}/stop{t}", enc(name)))
    }
    fn container_restart(&self, name: &str, timeout: Option<Duration>) -> Result<()> {
        let t = timeout
            .map(|t| format!("?t={}", t.as_secs()))
            .unwrap_or_default();
        self.empty("POST", &format!("/containers/{}/restart{t}", enc(name)))
    }
    fn container_kill(&self, name: &str, signal: i32) -> Result<()> {
        let path = format!("/containers/{}/kill?signal={signal}", enc(name));
        self.empty("POST", &path)
    }
    fn container_wait(&self, name: &str) -> Result<i32> {
        let v = self.call("POST", &format!("/containers/{}/wait", enc(name)), None)?;
        if let Some(m) = v["Error"]["Message"].as_str() {
            return Err(ClientError::Api {
                status: 500,
                message: m.to_string(),
            }
            .into());
        }
        Ok(v["StatusCode"].as_i64().unwrap_or(-1) as i32)
    }
    fn container_remove(&self, name: &str, force: bool, volumes: bool) -> Result<()> {
        let path = format!("/containers/{}?force={force}&v={volumes}", enc(name));
        self.empty("DELETE", &path)
    }
    fn container_pause(&self, name: &str) -> Result<()> {
        self.empty("POST", &format!("/containers/{}/pause", enc(name)))
    }
    fn container_unpause(&self, name: &str) -> Result<()> {
        self.empty("POST", &format!("/containers/{}/unpause", enc(name)))
    }
    fn container_update(&self, name: &str, update: &UpdateOptions) -> Result<()> {
        let body = crate::runtime::body::update_body(update);
        self.call(
            "POST",
            &format!("/containers/{}/update", enc(name)),
            Some(&body),
        )
        .map(|_| ())
    }
    fn container_rename(&self, name: &str, new_name: &str) -> Result<()> {
        let path = format!("/containers/{}/rename?name={}", enc(name), enc(new_name));
        self.empty("POST", &path)
    }
    fn container_prune(&self) -> Result<Vec<String>> {
        let v = self.call("POST", "/containers/prune", None)?;
        Ok(strings(&v["ContainersDeleted"]))
    }
    fn container_summaries(
        &self,
        all: bool,
        filters: &crate::runtime::Filters,
    ) -> Result<Vec<Value>> {
        let mut path = format!("/containers/json?all={all}");
        if !filters.is_empty() {
            let f = serde_json::to_string(filters).unwrap_or_default();
            path.push_str(&format!("&filters={}", enc(&f)));
        }
        let v = self.get(&path)?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }
    fn container_inspect(&self, name: &str) -> Result<Value> {
        self.get(&format!("/containers/{}/json", enc(name)))
    }
    fn container_logs(
        &self,
        name: &str,
        opts: &LogOptions,
        each: &mut dyn FnMut(LogRecord) -> bool,
    ) -> Result<()> {
        let mut path = format!(
            "/containers/{}/logs?stdout=1&stderr=1&timestamps=1&follow={}",
            enc(name),
            opts.follow
        );
        if let Some(s) = opts.since {
            path.push_str(&format!(
                "&since={}.{:09}",
                s.timestamp(),
                s.timestamp_subsec_nanos()
            ));
        }
        if let Some(n) = opts.tail {
            path.push_str(&format!("&tail={n}"));
        }
        let mut resp = self.request("GET", &path, Body::None)?;
        let raw = resp
            .header("content-type")
            .is_some_and(|t| t.contains("raw-stream"));
        let split = |stream: &str, payload: &[u8]| {
            let text = String::from_utf8_lossy(payload);
            let (time, text) = text.split_once(' ').unwrap_or(("", &text));
            (stream.to_string(), time.to_string(), text.to_string())
        };
        let io = |e: std::io::Error| ClientError::Protocol(e.to_string());
        if raw {
            // A terminal's log: no frames, one record per line.
            let mut r = std::io::BufReader::new(resp);
            loop {
                let mut line = Vec::new();
                let n = std::io::BufRead::read_until(&mut r, b'\n', &mut line).map_err(io)?;
                if n == 0 || !each(split("stdout", &line)) {
                    return Ok(());
                }
            }
        }
        crate::client::frames(&mut resp, &mut |fd, payload| {
            each(split(if fd == 2 { "stderr" } else { "stdout" }, &payload))
        })
        .map_err(io)?;
        Ok(())
    }
    fn container_top(
        &self,
        name: &str,
        ps_args: &[String],
    ) -> Result<(Vec<String>, Vec<Vec<String>>)> {
        let mut path = format!("/containers/{}/top", enc(name));
        if !ps_args.is_empty() {
            path.push_str(&format!("?ps_args={}", enc(&ps_args.join(" "))));
        }
        let v = self.get(&path)?;
        let rows = v["Processes"]
            .as_array()
            .map(|a| a.iter().map(strings).collect())
            .unwrap_or_default();
        Ok((strings(&v["Titles"]), rows))
    }
    fn container_attach(&self, name: &str, each: &mut dyn FnMut(LogRecord) -> bool) -> Result<()> {
        let path = format!(
            "/containers/{}/attach?stream=1&stdout=1&stderr=1",
            enc(name)
        );
        let mut hj = self.hijack("POST", &path, None)?;
        let _ = hj.writer.shutdown_write();
        let io = |e: std::io::Error| ClientError::Protocol(e.to_string());
        let mut buf = vec![0u8; 32 * 1024];
        if hj.raw {
            loop {
                let n = hj.reader.read(&mut buf).map_err(io)?;
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                if n == 0 || !each(("stdout".into(), String::new(), text)) {
                    return Ok(());
                }
            }
        }
        crate::client::frames(&mut hj.reader, &mut |fd, payload| {
            let stream = if fd == 2 { "stderr" } else { "stdout" };
            let text = String::from_utf8_lossy(&payload).into_owned();
            each((stream.into(), String::new(), text))
        })
        .map_err(io)?;
        Ok(())
    }
    fn container_exec_output(&self, name: &str, opts: &ExecOptions) -> Result<(i32, Vec<u8>)> {
        let body = json!({
            "AttachStdout": true,
            "AttachStderr": true,
            "Cmd": opts.cmd,
            "Env": opts.env,
            "User": opts.user.clone().unwrap_or_default(),
            "WorkingDir": opts.workdir.clone().unwrap_or_default(),
        });
        let created = self.call(
            "POST",
            &format!("/containers/{}/exec", enc(name)),
            Some(&body),
        )?;
        let id = created["Id"].as_str().unwrap_or_default().to_string();
        let mut hj = self.hijack(
            "POST",
            &format!("/exec/{id}/start"),
            Some(&json!({"Detach": false, "Tty": false})),
        )?;
        let _ = hj.writer.shutdown_write();
        // Both streams' frames into one buffer, in the order they came.
        let io = |e: std::io::Error| ClientError::Protocol(e.to_string());
        let mut out = Vec::new();
        crate::client::frames(&mut hj.reader, &mut |_, payload| {
            out.extend_from_slice(&payload);
            true
        })
        .map_err(io)?;
        let v = self.get(&format!("/exec/{id}/json"))?;
        Ok((v["ExitCode"].as_i64().unwrap_or(-1) as i32, out))
    }
    fn container_stats(&self, name: &str) -> Result<Stats> {
        let v = self.get(&format!(
            "/containers/{}/stats?stream=false&one-shot=true",
            enc(name)
        ))?;
        let id = v["id"].as_str().unwrap_or_default().to_string();
        Ok(Stats {
            name: v["name"]
                .as_str()
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string(),
            cpu_ns: v["cpu_stats"]["cpu_usage"]["total_usage"]
                .as_u64()
                .unwrap_or(0),
            memory_usage: v["memory_stats"]["usage"].as_u64().unwrap_or(0),
            memory_limit: v["memory_stats"]["limit"].as_u64().unwrap_or(0),
            pids: v["pids_stats"]["current"].as_u64().unwrap_or(0),
            running: v["pids_stats"]["current"].as_u64().unwrap_or(0) > 0,
            networks: serde_json::from_value(v["networks"].clone()).unwrap_or_default(),
            id,
        })
    }
    fn container_commit(&self, name: &str, opts: &CommitOptions) -> Result<String> {
        let mut q = vec![("container", name.to_string())];
        if let Some(r) = &opts.reference {
            q.push(("repo", r.clone()));
        }
        for c in &opts.changes {
            q.push(("changes", c.clone()));
        }
        if let Some(m) = &opts.message {
            q.push(("comment", m.clone()));
        }
        if let Some(a) = &opts.author {
            q.push(("author", a.clone()));
        }
        q.push(("pause", opts.pause.to_string()));
        let pairs: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let v = self.call(
            "POST",
            &format!("/commit?{}", query(&pairs)),
            Some(&json!({})),
        )?;
        Ok(v["Id"].as_str().unwrap_or_default().to_string())
    }
    fn container_diff(&self, name: &str) -> Result<Vec<Change>> {
        let v = self.get(&format!("/containers/{}/changes", enc(name)))?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .map(|c| Change {
                kind: match c["Kind"].as_u64() {
                    Some(0) => 'C',
                    Some(1) => 'A',
                    _ => 'D',
                },
                path: c["Path"].as_str().unwrap_or_default().to_string(),
            })
            .collect())
    }
    fn container_export(&self, name: &str, out: &mut dyn Write) -> Result<()> {
        let mut resp = self.request(
            "GET",
            &format!("/containers/{}/export", enc(name)),
            Body::None,
        )?;
        copy(&mut resp, out)
    }
    fn container_copy_out(&self, name: &str, path: &str, out: &mut dyn Write) -> Result<()> {
        let p = format!("/containers/{}/archive?path={}", enc(name), enc(path));
        let mut resp = self.request("GET", &p, Body::None)?;
        copy(&mut resp, out)
    }
    fn container_copy_in(&self, name: &str, path: &str, tar: &mut (dyn Read + Send)) -> Result<()> {
        let p = format!("/containers/{}/archive?path={}", enc(name), enc(path));
        self.request("PUT", &p, Body::Stream(tar))?.bytes()?;
        Ok(())
    }

    fn image_list(&self, opts: &ListOptions) -> Result<Vec<ImageSummary>> {
        let mut filters = serde_json::Map::new();
        if let Some(d) = opts.dangling {
            filters.insert("dangling".into(), json!([d.to_string()]));
        }
        if let Some(r) = &opts.reference {
            filters.insert("reference".into(), json!([r]));
        }
        let f = Value::Object(filters).to_string();
        self.typed(&format!(
            "/images/json?all={}&filters={}",
            opts.all,
            enc(&f)
        ))
    }
    fn image_inspect(&self, name: &str) -> Result<ImageInspect> {
        self.typed(&format!("/images/{name}/json"))
    }
    fn image_tag(&self, source: &str, target: &str) -> Result<()> {
        crate::reference::Reference::parse(target)?;
        let (repo, tag) = split_reference(target);
        let path = format!("/images/{source}/tag?repo={}&tag={}", enc(repo), enc(tag));
        self.request("POST", &path, Body::None)?.bytes()?;
        Ok(())
    }
    fn image_history(&self, name: &str) -> Result<Vec<HistoryResponseItem>> {
        self.typed(&format!("/images/{name}/history"))
    }
    fn image_remove(&self, name: &str, force: bool) -> Result<Vec<ImageDeleteResponseItem>> {
        let v = self.call("DELETE", &format!("/images/{name}?force={force}"), None)?;
        serde_json::from_value(v).map_err(|e| ClientError::Protocol(e.to_string()).into())
    }
    fn image_prune(&self, all: bool) -> Result<ImagePruneResponse> {
        let f = if all {
            enc(r#"{"dangling":["false"]}"#)
        } else {
            String::new()
        };
        let v = self.call("POST", &format!("/images/prune?filters={f}"), None)?;
        serde_json::from_value(v).map_err(|e| ClientError::Protocol(e.to_string()).into())
    }
    fn image_import(&self, tar: &mut (dyn Read + Send), opts: &ImportOptions) -> Result<String> {
        let mut q = vec![("fromSrc", "-".to_string())];
        if let Some(r) = &opts.reference {
            crate::reference::Reference::parse(r)?;
            let (repo, tag) = split_reference(r);
            q.push(("repo", repo.to_string()));
            q.push(("tag", tag.to_string()));
        }
        for c in &opts.changes {
            q.push(("changes", c.clone()));
        }
        if let Some(m) = &opts.message {
            q.push(("message", m.clone()));
        }
        let pairs: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let resp = self.request(
            "POST",
            &format!("/images/create?{}", query(&pairs)),
            Body::Stream(tar),
        )?;
        let mut id = String::new();
        progress(resp, &mut |v| {
            if let Some(s) = v["status"].as_str() {
                id = s.to_string();
            }
        })?;
        Ok(id)
    }
    fn image_load(&self, src: LoadSource<'_>) -> Result<Vec<String>> {
        let mut file;
        let reader: &mut (dyn Read + Send) = match src {
            LoadSource::Reader(r) => r,
            LoadSource::Path(p) => {
                file = std::fs::File::open(p)
                    .map_err(|source| crate::Error::io(format!("open {}", p.display()), source))?;
                if file.metadata().is_ok_and(|m| m.is_dir()) {
                    return Err(ClientError::Url {
                        url: p.display().to_string(),
                        reason: "a daemon loads archives; give a tar of the layout".into(),
                    }
                    .into());
                }
                &mut file
            }
        };
        let resp = self.request("POST", "/images/load", Body::Stream(reader))?;
        let mut out = Vec::new();
        progress(resp, &mut |v| {
            if let Some(s) = v["stream"].as_str() {
                out.extend(s.lines().map(str::to_string));
            }
        })?;
        Ok(out)
    }
    fn image_build(
        &self,
        context: crate::build::BuildContext<'_>,
        opts: &crate::build::BuildOptions,
        progress: &mut dyn FnMut(&ProgressMessage),
    ) -> Result<String> {
        let mut q: Vec<(&str, String)> = Vec::new();
        for t in &opts.tags {
            crate::reference::Reference::parse(t)?;
            q.push(("t", t.clone()));
        }
        // A Dockerfile given apart from the context travels in it, under a name of its own
        // (as the Docker CLI sends it).
        let extra = opts.dockerfile_text.as_ref().map(|t| {
            (
                format!(".dockerfile.{}", crate::util::random_hex(10)),
                t.clone(),
            )
        });
        match (&extra, &opts.dockerfile) {
            (Some((name, _)), _) => q.push(("dockerfile", name.clone())),
            (None, Some(d)) => q.push(("dockerfile", d.clone())),
            _ => {}
        }
        if !opts.build_args.is_empty() {
            q.push((
                "buildargs",
                serde_json::to_string(&opts.build_args).unwrap_or_default(),
            ));
        }
        if !opts.labels.is_empty() {
            q.push((
                "labels",
                serde_json::to_string(&opts.labels).unwrap_or_default(),
            ));
        }
        for (k, v) in [
            ("target", &opts.target),
            ("networkmode", &opts.network),
            ("platform", &opts.platform),
        ] {
            if let Some(v) = v {
                q.push((k, v.clone()));
            }
        }
        for (k, on) in [
            ("nocache", opts.no_cache),
            ("pull", opts.pull),
            ("q", opts.quiet),
        ] {
            if on {
                q.push((k, "1".into()));
            }
        }
        q.push(("rm", "1".into()));
        let pairs: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let path = format!("/build?{}", query(&pairs));
        let mut id = String::new();
        let mut each = |m: &ProgressMessage| {
            if let Some(i) = m.aux.as_ref().and_then(|a| a["ID"].as_str()) {
                id = i.to_string();
            }
            progress(m);
        };
        match context {
            crate::build::BuildContext::Tar(r) if extra.is_none() => {
                let resp = self.request("POST", &path, Body::Stream(r))?;
                progress_messages(resp, &mut each)?;
            }
            crate::build::BuildContext::Tar(_) => {
                return Err(ClientError::Url {
                    url: path,
                    reason: "a tar context and a Dockerfile apart from it".into(),
                }
                .into());
            }
            ctx => {
                // The context's files (what .dockerignore leaves in) as a tar, written
                // while it is sent.
                let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                    .map_err(|e| crate::Error::io("make a pipe for the build context", e.into()))?;
                let (r, w) = (std::fs::File::from(r), std::fs::File::from(w));
                let dir = match ctx {
                    crate::build::BuildContext::Dir(d) => Some(d),
                    _ => None,
                };
                std::thread::scope(|s| {
                    let writer = s.spawn(move || {
                        crate::build::context::tar_context(dir.as_deref(), extra, w)
                    });
                    let mut r = r;
                    let sent = self
                        .request("POST", &path, Body::Stream(&mut r))
                        .and_then(|resp| progress_messages(resp, &mut each));
                    drop(r);
                    let wrote = writer.join().unwrap_or_else(|_| {
                        Err(crate::Error::new(
                            crate::ErrorKind::Internal,
                            "the context writer panicked",
                        ))
                    });
                    sent.and(wrote)
                })?;
            }
        }
        Ok(id)
    }
    fn image_pull(
        &self,
        opts: &PullOptions,
        progress: &mut dyn FnMut(&ProgressMessage),
    ) -> Result<Vec<String>> {
        let r = crate::reference::Reference::parse(&opts.reference)?;
        refuse_insecure(self, opts.insecure)?;
        // As the Docker CLI asks: the name, and the tag or digest apart.
        let mut q = vec![("fromImage", r.familiar_name())];
        if !opts.all_tags {
            let tag = match (r.digest(), r.tag()) {
                (Some(d), _) => d.to_string(),
                (None, Some(t)) => t.to_string(),
                (None, None) => "latest".to_string(),
            };
            q.push(("tag", tag));
        }
        if let Some(p) = opts.platform.as_ref().filter(|p| !p.is_empty()) {
            q.push(("platform", p.clone()));
        }
        let pairs: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let resp = self.request_with(
            "POST",
            &format!("/images/create?{}", query(&pairs)),
            &[(
                "X-Registry-Auth",
                self.registry_auth(&opts.reference, opts.auth.as_ref())?,
            )],
            Body::None,
        )?;
        let mut pulled = Vec::new();
        progress_messages(resp, &mut |m| {
            if let Some(rest) = m.status.strip_prefix("Status: ")
                && let Some((_, reference)) = rest.rsplit_once(" for ")
            {
                pulled.push(reference.to_string());
            }
            progress(m);
        })?;
        Ok(pulled)
    }
    fn image_push(
        &self,
        opts: &PushOptions,
        progress: &mut dyn FnMut(&ProgressMessage),
    ) -> Result<String> {
        let r = crate::reference::Reference::parse(&opts.reference)?.with_default_tag();
        refuse_insecure(self, opts.insecure)?;
        let tag = r.tag().unwrap_or("latest").to_string();
        let resp = self.request_with(
            "POST",
            &format!(
                "/images/{}/push?{}",
                r.familiar_name(),
                query(&[("tag", tag.as_str())])
            ),
            &[(
                "X-Registry-Auth",
                self.registry_auth(&opts.reference, opts.auth.as_ref())?,
            )],
            Body::None,
        )?;
        let mut digest = String::new();
        progress_messages(resp, &mut |m| {
            if let Some(d) = m.aux.as_ref().and_then(|a| a["Digest"].as_str()) {
                digest = d.to_string();
            }
            progress(m);
        })?;
        Ok(digest)
    }
    fn registry_login(&self, auth: &AuthConfig) -> Result<String> {
        let v = self.call(
            "POST",
            "/auth",
            Some(&serde_json::to_value(auth).unwrap_or_default()),
        )?;
        Ok(v["Status"]
            .as_str()
            .unwrap_or("Login Succeeded")
            .to_string())
    }
    fn image_save(&self, names: &[String], format: SaveFormat, dest: SaveDest<'_>) -> Result<()> {
        if format != SaveFormat::DockerArchive {
            return Err(ClientError::Url {
                url: self.url().to_string(),
                reason: "a daemon saves docker-archive tarballs only".into(),
            }
            .into());
        }
        let q: Vec<(&str, &str)> = names.iter().map(|n| ("names", n.as_str())).collect();
        let mut resp = self.request("GET", &format!("/images/get?{}", query(&q)), Body::None)?;
        match dest {
            SaveDest::Writer(w) => copy(&mut resp, w),
            SaveDest::Path(p) => write_atomically(p, &mut resp),
        }
    }

    fn network_create(&self, opts: &NetworkCreate) -> Result<String> {
        // A pool per family asked for, each with its auxiliary addresses.
        let mut ipam = Vec::new();
        for (v6, subnet, gateway, range) in [
            (false, &opts.subnet, &opts.gateway, &opts.ip_range),
            (true, &opts.subnet6, &opts.gateway6, &opts.ip_range6),
        ] {
            let aux: serde_json::Map<String, Value> = opts
                .aux_addresses
                .iter()
                .filter(|(_, ip)| ip.contains(':') == v6)
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            if subnet.is_none() && gateway.is_none() && range.is_none() && aux.is_empty() {
                continue;
            }
            let mut c = serde_json::Map::new();
            for (k, v) in [("Subnet", subnet), ("Gateway", gateway), ("IPRange", range)] {
                if let Some(v) = v {
                    c.insert(k.into(), json!(v));
                }
            }
            if !aux.is_empty() {
                c.insert("AuxiliaryAddresses".into(), Value::Object(aux));
            }
            ipam.push(Value::Object(c));
        }
        let labels: serde_json::Map<String, Value> = opts
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        let body = json!({
            "Name": opts.name,
            "Driver": opts.driver.clone().unwrap_or_else(|| "bridge".into()),
            "Internal": opts.internal,
            "Attachable": opts.attachable,
            "EnableIPv6": opts.ipv6,
            "IPAM": {"Driver": "default", "Config": ipam},
            "Labels": labels,
            "Options": opts.options,
        });
        let v = self.call("POST", "/networks/create", Some(&body))?;
        Ok(v["Id"].as_str().unwrap_or_default().to_string())
    }
    fn network_list(&self) -> Result<Vec<NetworkResource>> {
        self.typed("/networks")
    }
    fn network_inspect(&self, name: &str) -> Result<NetworkResource> {
        self.typed(&format!("/networks/{}", enc(name)))
    }
    fn network_remove(&self, name: &str) -> Result<()> {
        self.empty("DELETE", &format!("/networks/{}", enc(name)))
    }
    fn network_prune(&self) -> Result<Vec<String>> {
        let v = self.call("POST", "/networks/prune", None)?;
        Ok(strings(&v["NetworksDeleted"]))
    }
    fn network_connect(&self, container: &str, endpoint: &NetworkAttachment) -> Result<()> {
        let ep = crate::runtime::body::endpoint_json(endpoint);
        let body = json!({"Container": container, "EndpointConfig": ep});
        self.call(
            "POST",
            &format!("/networks/{}/connect", enc(&endpoint.network)),
            Some(&body),
        )?;
        Ok(())
    }
    fn network_disconnect(&self, network: &str, container: &str) -> Result<()> {
        let body = json!({"Container": container});
        self.call(
            "POST",
            &format!("/networks/{}/disconnect", enc(network)),
            Some(&body),
        )?;
        Ok(())
    }

    fn volume_create(&self, opts: &VolumeCreate) -> Result<Volume> {
        let body = json!({
            "Name": opts.name,
            "Driver": opts.driver.clone().unwrap_or_else(|| "local".into()),
            "DriverOpts": opts.options,
            "Labels": opts.labels,
        });
        let v = self.call("POST", "/volumes/create", Some(&body))?;
        serde_json::from_value(v).map_err(|e| ClientError::Protocol(e.to_string()).into())
    }
    fn volume_list(&self) -> Result<Vec<Volume>> {
        let v = self.get("/volumes")?;
        serde_json::from_value(v["Volumes"].clone())
            .map_err(|e| ClientError::Protocol(e.to_string()).into())
    }
    fn volume_inspect(&self, name: &str) -> Result<Volume> {
        self.typed(&format!("/volumes/{}", enc(name)))
    }
    fn volume_remove(&self, name: &str, force: bool) -> Result<()> {
        self.empty("DELETE", &format!("/volumes/{}?force={force}", enc(name)))
    }
    fn volume_prune(&self, all: bool) -> Result<(Vec<String>, u64)> {
        let f = if all {
            enc(r#"{"all":["true"]}"#)
        } else {
            String::new()
        };
        let v = self.call("POST", &format!("/volumes/prune?filters={f}"), None)?;
        Ok((
            strings(&v["VolumesDeleted"]),
            v["SpaceReclaimed"].as_u64().unwrap_or(0),
        ))
    }

    fn events(
        &self,
        since: Option<i64>,
        until: Option<i64>,
        each: &mut dyn FnMut(Value) -> bool,
    ) -> Result<()> {
        let at = |n: i64| {
            format!(
                "{}.{:09}",
                n.div_euclid(1_000_000_000),
                n.rem_euclid(1_000_000_000)
            )
        };
        let mut q = Vec::new();
        if let Some(s) = since {
            q.push(format!("since={}", at(s)));
        }
        if let Some(u) = until {
            q.push(format!("until={}", at(u)));
        }
        let resp = self.request("GET", &format!("/events?{}", q.join("&")), Body::None)?;
        for v in resp.json_stream() {
            if !each(v?) {
                break;
            }
        }
        Ok(())
    }
    fn system_df(&self) -> Result<DiskUsage> {
        self.typed("/system/df")
    }
    fn system_prune(&self, all: bool, volumes: bool) -> Result<PruneReport> {
        // As Docker's CLI does it: one prune after the other.
        let mut r = PruneReport {
            containers_deleted: self.container_prune()?,
            networks_deleted: self.network_prune()?,
            ..Default::default()
        };
        if volumes {
            let (names, space) = self.volume_prune(false)?;
            r.volumes_deleted = names;
            r.space_reclaimed += space as i64;
        }
        let images = self.image_prune(all)?;
        r.space_reclaimed += images.space_reclaimed;
        r.images_deleted = images.images_deleted;
        Ok(r)
    }
}

/// `repo[:tag]` as given (not normalized): the tag is after the last colon past the last
/// slash; `latest` when there is none.
fn split_reference(r: &str) -> (&str, &str) {
    let slash = r.rfind('/').map_or(0, |i| i + 1);
    match r[slash..].rfind(':') {
        Some(i) => (&r[..slash + i], &r[slash + i + 1..]),
        None => (r, "latest"),
    }
}

/// Reads a stream of progress messages (`{"status": ...}`, `{"stream": ...}`); one that
/// carries `error` fails it with the daemon's message.
fn progress(resp: crate::client::Response, each: &mut dyn FnMut(&Value)) -> Result<()> {
    for v in resp.json_stream() {
        let v = v?;
        if let Some(e) = v["error"].as_str() {
            // The daemon's status for it, where it gives one (`errorDetail.code`).
            let status = v["errorDetail"]["code"]
                .as_u64()
                .and_then(|c| u16::try_from(c).ok())
                .filter(|c| (400..600).contains(c))
                .unwrap_or(500);
            return Err(ClientError::Api {
                status,
                message: e.to_string(),
            }
            .into());
        }
        each(&v);
    }
    Ok(())
}

/// A daemon decides for itself which registries are insecure (its `--insecure-registry`).
fn refuse_insecure(c: &Client, insecure: bool) -> Result<()> {
    if insecure {
        return Err(ClientError::Url {
            url: c.url().to_string(),
            reason: "--tls-verify=false is for an embedded engine; start the daemon with --insecure-registry".into(),
        }
        .into());
    }
    Ok(())
}

/// Docker's progress stream, message by message; its error line is the call's error.
fn progress_messages(
    resp: crate::client::Response,
    each: &mut dyn FnMut(&ProgressMessage),
) -> Result<()> {
    for v in resp.json_stream() {
        let m: ProgressMessage = serde_json::from_value(v?).unwrap_or_default();
        if let Some(e) = &m.error {
            return Err(ClientError::Api {
                status: m.error_detail.as_ref().and_then(|d| d.code).unwrap_or(500),
                message: e.clone(),
            }
            .into());
        }
        each(&m);
    }
    Ok(())
}

impl Client {
    /// The `X-Registry-Auth` for a reference's registry: the credentials given, else the
    /// user's stored ones (read here, on the client's side, as the Docker CLI does).
    fn registry_auth(&self, reference: &str, given: Option<&AuthConfig>) -> Result<String> {
        let auth = match given {
            Some(a) => a.clone(),
            None => crate::registry::stored_auth(reference)?.unwrap_or_default(),
        };
        Ok(auth.to_header())
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

fn copy(from: &mut dyn Read, to: &mut dyn Write) -> Result<()> {
    std::io::copy(from, to)
        .and_then(|_| to.flush())
        .map_err(|source| crate::Error::io("copy the daemon's answer", source))
}

/// Writes `from` to a temporary name beside `path`, then renames it into place.
fn write_atomically(path: &Path, from: &mut dyn Read) -> Result<()> {
    let tmp = path.with_file_name(format!(
        ".{}.ketch-{}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    let io = |source| crate::Error::io(format!("write {}", path.display()), source);
    let written = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        copy(from, &mut f)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}
