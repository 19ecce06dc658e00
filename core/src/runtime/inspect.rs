//! `inspect` of a container, in the Docker Engine API's shape (`GET /containers/{id}/json`).

use serde_json::{Value, json};

use super::Containers;
use super::{Container, NetMode, Status};
use crate::network::Endpoint;

impl Containers<'_> {
    /// The container as `docker inspect` shows it.
    pub fn inspect(&self, name: &str) -> crate::Result<Value> {
        let c = self.get(name)?;
        let endpoints = if c.is_running() {
            self.networks().container_endpoints(&c.record.id)?
        } else {
            vec![]
        };
        Ok(inspect_json(&c, self.st.storage_driver(), &endpoints))
    }

    /// The containers as `GET /containers/json` lists them: running ones only unless `all`
    /// (or a filter on status or exit code), and those that pass `filters`.
    pub fn summaries(&self, all: bool, filters: &Filters) -> crate::Result<Vec<Value>> {
        check_filters(filters)?;
        let all = all || filters.contains_key("status") || filters.contains_key("exited");
        let mut out = Vec::new();
        for c in self.list(all)? {
            if !self.passes(&c, filters) {
                continue;
            }
            let created = chrono::DateTime::parse_from_rfc3339(&c.record.created)
                .map(|t| t.timestamp())
                .unwrap_or(0);
            let command = std::iter::once(c.record.path.clone())
                .chain(c.record.args.iter().cloned())
                .collect::<Vec<_>>()
                .join(" ");
            let ports: Vec<Value> = if c.is_running() && !c.record.config.publish.is_empty() {
                self.networks()
                    .container_endpoints(&c.record.id)?
                    .iter()
                    .flat_map(|e| &e.ports)
                    .map(|p| {
                        json!({
                            "IP": p.host_ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED).to_string(),
                            "PrivatePort": p.container_port,
                            "PublicPort": p.host_port,
                            "Type": p.proto,
                        })
                    })
                    .collect()
            } else {
                vec![]
            };
            let labels: serde_json::Map<String, Value> = c
                .record
                .config
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            out.push(json!({
                "Id": c.record.id,
                "Names": [format!("/{}", c.record.name)],
                "Image": c.record.config.image,
                "ImageID": c.record.image_id,
                "Command": command,
                "Created": created,
                "Ports": ports,
                "Labels": labels,
                "State": c.status.as_str(),
                "Status": c.status_text(),
                "HostConfig": {"NetworkMode": NetMode::of(&c.record.config).name()},
                "Mounts": [],
            }));
        }
        Ok(out)
    }

    /// Whether `c` passes every filter: one of a key's values (all of them for `label`).
    fn passes(&self, c: &Container, filters: &Filters) -> bool {
        let cfg = &c.record.config;
        filters.iter().all(|(k, vals)| {
            let one = |v: &String| match k.as_str() {
                "id" => c.record.id.starts_with(v.as_str()),
                "name" => c.record.name.contains(v.trim_start_matches('/')),
                "label" => {
                    crate::model::filters::label_matches(cfg.labels.iter().map(|(k, v)| (k, v)), v)
                }
                "health" => match c.health_status() {
                    Some(h) => h == *v,
                    None => v == "none" && !c.has_healthcheck(),
                },
                "status" => c.status.as_str() == v,
                "exited" => c.status == Status::Exited && c.task.exit_code.to_string() == *v,
                "ancestor" => {
                    cfg.image == *v
                        || c.record.image_id == *v
                        || c.record
                            .image_id
                            .strip_prefix("sha256:")
                            .is_some_and(|id| id.starts_with(v.trim_start_matches("sha256:")))
                }
                "network" => cfg.attachments().iter().any(|a| {
                    a.network == *v
                        || self
                            .networks()
                            .find(&a.network)
                            .is_ok_and(|n| n.id.starts_with(v.as_str()))
                }),
                "volume" => cfg.mounts.iter().any(|m| m.source == *v || m.target == *v),
                _ => false,
            };
            if k == "label" {
                vals.iter().all(one)
            } else {
                vals.iter().any(one)
            }
        })
    }

    /// `ps` on the host (with `ps_args`, default `-ef`), narrowed to the container's
    /// processes, as Docker's `top` does: the titles and one row per process.
    pub fn top(
        &self,
        name: &str,
        ps_args: &[String],
    ) -> crate::Result<(Vec<String>, Vec<Vec<String>>)> {
        let pids = self.pids(name)?;
        let args = if ps_args.is_empty() {
            vec!["-ef".to_string()]
        } else {
            ps_args.to_vec()
        };
        let o = std::process::Command::new("ps")
            .args(&args)
            .output()
            .map_err(|source| crate::Error::io("run ps", source))?;
        let text = String::from_utf8_lossy(&o.stdout);
        let mut lines = text.lines();
        let titles: Vec<String> = lines
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let col = titles.iter().position(|h| h == "PID").ok_or_else(|| {
            crate::Error::from(super::ContainerError::Invalid {
                reason: format!("ps {}: its output has no PID column", args.join(" ")),
            })
        })?;
        let ncols = titles.len();
        let mut rows = Vec::new();
        for l in lines {
            let fields: Vec<&str> = l.split_whitespace().collect();
            if fields
                .get(col)
                .and_then(|p| p.parse::<i32>().ok())
                .is_some_and(|p| pids.contains(&p))
            {
                // The last column (the command) keeps its spaces.
                let mut row: Vec<String> = fields
                    .iter()
                    .take(ncols - 1)
                    .map(|s| s.to_string())
                    .collect();
                row.push(
                    fields
                        .iter()
                        .skip(ncols - 1)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(" "),
                );
                rows.push(row);
            }
        }
        Ok((titles, rows))
    }
}

/// Where a volume's data lives: `volumes/<name>/_data` of the root the bundle is in.
fn engine_volume_path(bundle: &std::path::Path, name: &str) -> String {
    bundle
        .parent()
        .and_then(|c| c.parent())
        .map(|root| {
            root.join("volumes")
                .join(name)
                .join("_data")
                .display()
                .to_string()
        })
        .unwrap_or_default()
}

/// Docker's `filters`: each key with the values it may have.
pub type Filters = std::collections::BTreeMap<String, Vec<String>>;

/// Refuses a filter `GET /containers/json` does not know, or a value it cannot be, as
/// Docker does.
fn check_filters(filters: &Filters) -> crate::Result<()> {
    let invalid = |reason: String| super::ContainerError::Invalid { reason }.into();
    for (k, vals) in filters {
        match k.as_str() {
            "id" | "name" | "label" | "ancestor" | "network" | "volume" => {}
            "health" => {
                if let Some(v) = vals
                    .iter()
                    .find(|v| !["starting", "healthy", "unhealthy", "none"].contains(&v.as_str()))
                {
                    return Err(invalid(format!(
                        "Unrecognised filter value for health: {v}"
                    )));
                }
            }
            "status" => {
                const KNOWN: [&str; 7] = [
                    "created",
                    "restarting",
                    "running",
                    "removing",
                    "paused",
                    "exited",
                    "dead",
                ];
                if let Some(v) = vals.iter().find(|v| !KNOWN.contains(&v.as_str())) {
                    return Err(invalid(format!(
                        "invalid filter 'status={v}': it is one of {}",
                        KNOWN.join(", ")
                    )));
                }
            }
            "exited" => {
                if let Some(v) = vals.iter().find(|v| v.parse::<i32>().is_err()) {
                    return Err(invalid(format!(
                        "invalid filter 'exited={v}': an exit code is a number"
                    )));
                }
            }
            _ => return Err(invalid(format!("invalid filter '{k}'"))),
        }
    }
    Ok(())
}

/// `inspect` of a container, in Docker's shape (the fields ketch has so far). `endpoints`
/// are the container's places on networks while it runs.
pub(crate) fn inspect_json(c: &Container, driver: &str, endpoints: &[Endpoint]) -> Value {
    // Each container port with every host address it is published on, in order.
    let mut ports = serde_json::Map::new();
    for p in endpoints.iter().flat_map(|e| &e.ports) {
        let binding = json!({
            "HostIp": p.host_ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED).to_string(),
            "HostPort": p.host_port.to_string(),
        });
        let key = format!("{}/{}", p.container_port, p.proto);
        match ports.get_mut(&key).and_then(Value::as_array_mut) {
            Some(list) => list.push(binding),
            None => {
                ports.insert(key, json!([binding]));
            }
        }
    }
    let mode = NetMode::of(&c.record.config);
    let mut networks = serde_json::Map::new();
    let attachments = c.record.config.attachments();
    let entry = |ep: Option<&Endpoint>, name: &str| {
        // The aliases it was given on the network (named as it was given, or by its ID).
        let given = attachments
            .iter()
            .find(|a| a.network == name || ep.is_some_and(|e| e.network_id == a.network));
        let aliases = given.map(|a| a.aliases.clone()).unwrap_or_default();
        // On a user-defined network the container answers to its short ID too: among its
        // DNS names (the daemon lists it among the aliases as well for a client that asks
        // for an API before 1.45, as Docker does). Named by the endpoint while it runs,
        // else by what it joins at its next start; host and none entries have no name.
        let user_defined = ep.map_or(!name.is_empty() && name != "bridge", |e| {
            e.network != "bridge"
        });
        let short = &c.record.id[..12];
        let dns_names: Option<Vec<String>> = user_defined.then(|| {
            let mut names: Vec<String> = std::iter::once(c.record.name.clone())
                .chain(aliases.iter().cloned())
                .collect();
            if !names.iter().any(|a| a == short) {
                names.push(short.to_string());
            }
            names
        });
        let aliases = Some(aliases).filter(|a| !a.is_empty());
        // The address it has, or (not running) the one it was given.
        let mac = ep
            .map(|e| e.mac.clone())
            .or_else(|| given.and_then(|a| a.mac.clone()))
            .unwrap_or_default();
        json!({
            "IPAMConfig": given.and_then(super::body::ipam_json),
            "Links": given.map(|a| &a.links).filter(|l| !l.is_empty()),
            "Aliases": aliases,
            "DNSNames": dns_names,
            "DriverOpts": given.map(|a| &a.driver_opts).filter(|o| !o.is_empty()),
            "NetworkID": ep.map(|e| e.network_id.clone()).unwrap_or_default(),
            "MacAddress": mac,
            "Gateway": ep.and_then(|e| e.gateway).map(|g| g.to_string()).unwrap_or_default(),
            "IPAddress": ep.map(|e| e.ip.to_string()).unwrap_or_default(),
            "IPPrefixLen": ep.map_or(0, |e| e.prefix),
            "IPv6Gateway": ep.and_then(|e| e.gateway6).map(|g| g.to_string()).unwrap_or_default(),
            "GlobalIPv6Address": ep.and_then(|e| e.ip6).map(|ip| ip.to_string()).unwrap_or_default(),
            "GlobalIPv6PrefixLen": ep.and_then(|e| e.ip6.map(|_| e.prefix6)).unwrap_or(0),
        })
    };
    match &mode {
        // Not running: the networks it joins at its next start.
        NetMode::Bridge(_) if endpoints.is_empty() => {
            for a in &attachments {
                networks.insert(a.network.clone(), entry(None, &a.network));
            }
        }
        NetMode::Bridge(_) => {
            // The gateway bridge an overlay network's container reaches out through is
            // the host's, as Docker's docker_gwbridge: not one of the container's networks,
            // unless it asked for it.
            let asked = |n: &str| attachments.iter().any(|a| a.network == n);
            for ep in endpoints
                .iter()
                .filter(|e| e.network != crate::network::GATEWAY_BRIDGE || asked(&e.network))
            {
                networks.insert(ep.network.clone(), entry(Some(ep), &ep.network));
            }
        }
        NetMode::Host | NetMode::None => {
            networks.insert(mode.name(), entry(None, ""));
        }
        NetMode::Container(_) => {}
    }
    // Docker fills the top-level address fields for the default bridge only.
    let default = endpoints.iter().find(|e| e.network == "bridge");
    let security = super::SecurityOpts::of(&c.record.config);
    let security = if security.is_empty() {
        Value::Null
    } else {
        json!(security)
    };
    // Config and HostConfig as a create request would give them (one mapping both ways),
    // with what inspect shows differently.
    let mut body = super::body::create_body(&c.record.config);
    let mut host_config = body["HostConfig"].take();
    if let Some(o) = body.as_object_mut() {
        o.remove("HostConfig");
        o.remove("NetworkingConfig");
    }
    let mut config = body;
    config["Hostname"] = json!(c.record.config.hostname);
    config["Entrypoint"] = json!(c.record.config.entrypoint.clone().filter(|e| !e.is_empty()));
    config["Labels"] = json!(
        c.record
            .config
            .labels
            .iter()
            .cloned()
            .collect::<std::collections::BTreeMap<_, _>>()
    );
    host_config["Binds"] = json!(
        c.record
            .config
            .mounts
            .iter()
            .filter(|m| m.kind != "tmpfs")
            .map(|m| {
                format!(
                    "{}:{}{}",
                    m.source,
                    m.target,
                    if m.readonly { ":ro" } else { "" }
                )
            })
            .collect::<Vec<_>>()
    );
    host_config["SecurityOpt"] = security;
    // Links as Docker shows them: `/NAME:/THIS/ALIAS`.
    host_config["Links"] = json!(
        c.record
            .config
            .links
            .iter()
            .filter_map(|l| super::options::parse_link(l).ok())
            .map(|(n, a)| format!("/{n}:/{}/{a}", c.record.name))
            .collect::<Vec<_>>()
    );
    if c.record.config.links.is_empty() {
        host_config["Links"] = Value::Null;
    }
    // What Docker shows for the default runtime.
    if host_config["Runtime"] == "" {
        host_config["Runtime"] = json!("runc");
    }
    host_config["NetworkMode"] = json!(mode.name());
    host_config["PortBindings"] = json!(c.record.config.publish.iter().map(|p| {
        (
            format!("{}/{}", p.container_port, p.proto),
            json!([{
                "HostIp": p.host_ip.map(|i| i.to_string()).unwrap_or_default(),
                "HostPort": if p.host_port == 0 { String::new() } else { p.host_port.to_string() },
            }]),
        )
    }).collect::<serde_json::Map<_, _>>());
    json!({
        "Id": c.record.id,
        "Created": c.record.created,
        "Path": c.record.path,
        "Args": c.record.args,
        "State": {
            "Health": c.health(),
            "Status": c.status.as_str(),
            "Running": matches!(c.status, Status::Running | Status::Paused),
            "Paused": c.status == Status::Paused,
            "Restarting": c.status == Status::Restarting,
            "OOMKilled": c.task.oom_killed,
            "Dead": false,
            "Pid": c.task.pid,
            "ExitCode": c.task.exit_code,
            "Error": c.task.error,
            "StartedAt": if c.task.started_at.is_empty() { "0001-01-01T00:00:00Z".to_string() } else { c.task.started_at.clone() },
            "FinishedAt": if c.task.finished_at.is_empty() { "0001-01-01T00:00:00Z".to_string() } else { c.task.finished_at.clone() },
        },
        "Image": c.record.image_id,
        "ResolvConfPath": c.bundle.join("resolv.conf"),
        "HostnamePath": c.bundle.join("hostname"),
        "HostsPath": c.bundle.join("hosts"),
        "LogPath": c.bundle.join("container.log"),
        "Name": format!("/{}", c.record.name),
        "RestartCount": c.task.restart_count,
        "Driver": driver,
        "Mounts": c.record.config.mounts.iter().map(|m| {
            let source = match m.kind.as_str() {
                "volume" => engine_volume_path(&c.bundle, &m.source),
                _ => m.source.clone(),
            };
            json!({
                "Type": m.kind,
                "Name": if m.kind == "volume" { m.source.clone() } else { String::new() },
                "Source": source,
                "Destination": m.target,
                "Driver": if m.kind == "volume" { "local" } else { "" },
                "Mode": if m.kind == "bind" { "" } else { "z" },
                "RW": !m.readonly,
                "Propagation": m.propagation.clone().unwrap_or_else(|| if m.kind == "bind" { "rprivate".into() } else { String::new() }),
            })
        }).collect::<Vec<_>>(),
        "NetworkSettings": {
            "Networks": networks,
            "IPAddress": default.map(|e| e.ip.to_string()).unwrap_or_default(),
            "IPPrefixLen": default.map_or(0, |e| e.prefix),
            "Gateway": default.and_then(|e| e.gateway).map(|g| g.to_string()).unwrap_or_default(),
            "MacAddress": default.map(|e| e.mac.clone()).unwrap_or_default(),
            "GlobalIPv6Address": default.and_then(|e| e.ip6).map(|ip| ip.to_string()).unwrap_or_default(),
            "GlobalIPv6PrefixLen": default.and_then(|e| e.ip6.map(|_| e.prefix6)).unwrap_or(0),
            "IPv6Gateway": default.and_then(|e| e.gateway6).map(|g| g.to_string()).unwrap_or_default(),
            "Ports": ports,
        },
        "Config": config,
        "HostConfig": host_config,
    })
}
