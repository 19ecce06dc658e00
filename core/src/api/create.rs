//! `POST /containers/create`'s body (the API's ContainerConfig with HostConfig and
//! NetworkingConfig) and the engine's [`CreateOptions`], both ways: the daemon reads what any
//! client sends; the remote CLI sends what the embedded one would run. Likewise the bodies of
//! `POST /networks/create` and `POST /volumes/create`.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::model::parse_bytes;
use crate::network::firewall::PortMap;
use crate::runtime::{CreateOptions, SecurityOpts};
use crate::volume::{MountSpec, parse_tmpfs, parse_volume, volume_option};

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn text(v: &Value) -> Option<String> {
    v.as_str().filter(|s| !s.is_empty()).map(str::to_string)
}

/// A `HostConfig.Mounts` entry.
fn mount_of(v: &Value) -> Result<MountSpec, String> {
    let kind = v["Type"].as_str().unwrap_or("volume").to_string();
    if !matches!(kind.as_str(), "volume" | "bind" | "tmpfs") {
        return Err(format!("mount type {kind:?} is not supported"));
    }
    // As Docker: options of another type of mount are an error, not silently kept (they
    // would be lost on the way from a client's body to a daemon).
    for (field, owner) in [("BindOptions", "bind"), ("TmpfsOptions", "tmpfs")] {
        if kind != owner && !v[field].is_null() {
            return Err(format!("{field} is for {owner} mounts, not {kind}"));
        }
    }
    let target = v["Target"].as_str().unwrap_or_default().to_string();
    if !target.starts_with('/') {
        return Err(format!("invalid mount target {target:?}: must be absolute"));
    }
    let mut m = MountSpec {
        kind,
        source: v["Source"].as_str().unwrap_or_default().to_string(),
        target,
        readonly: v["ReadOnly"].as_bool().unwrap_or(false),
        propagation: text(&v["BindOptions"]["Propagation"]),
        nocopy: v["VolumeOptions"]["NoCopy"].as_bool().unwrap_or(false),
        tmpfs_size: v["TmpfsOptions"]["SizeBytes"].as_u64().filter(|s| *s > 0),
        tmpfs_mode: match v["TmpfsOptions"]["Mode"].as_u64() {
            Some(m) => Some(u32::try_from(m).map_err(|_| format!("invalid tmpfs mode {m}"))?),
            None => None,
        },
        create_host_path: v["BindOptions"]["CreateMountpoint"]
            .as_bool()
            .unwrap_or(false),
    };
    if m.kind == "bind" && m.source.is_empty() {
        return Err("a bind mount needs a source".into());
    }
    if m.kind == "tmpfs" && !m.source.is_empty() {
        return Err("a tmpfs mount takes no source".into());
    }
    if let Some(p) = &m.propagation {
        let p = p.clone();
        volume_option(&mut m, &p)?;
    }
    Ok(m)
}

fn mount_json(m: &MountSpec) -> Value {
    let mut v = json!({
        "Type": m.kind,
        "Source": m.source,
        "Target": m.target,
        "ReadOnly": m.readonly,
    });
    if m.kind == "bind" {
        v["BindOptions"] = json!({"CreateMountpoint": m.create_host_path});
        if let Some(p) = &m.propagation {
            v["BindOptions"]["Propagation"] = json!(p);
        }
    }
    if m.nocopy {
        v["VolumeOptions"] = json!({"NoCopy": true});
    }
    if m.kind == "tmpfs" && (m.tmpfs_size.is_some() || m.tmpfs_mode.is_some()) {
        let mut t = Map::new();
        if let Some(s) = m.tmpfs_size {
            t.insert("SizeBytes".into(), json!(s));
        }
        if let Some(mode) = m.tmpfs_mode {
            t.insert("Mode".into(), json!(mode));
        }
        v["TmpfsOptions"] = Value::Object(t);
    }
    v
}

/// `80/tcp` → (80, tcp).
fn port_key(k: &str) -> Result<(u16, String), String> {
    let (port, proto) = k.split_once('/').unwrap_or((k, "tcp"));
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("invalid port {k:?}"))?;
    let proto = proto.to_ascii_lowercase();
    if proto != "tcp" && proto != "udp" {
        return Err(format!("invalid protocol in {k:?}"));
    }
    Ok((port, proto))
}

/// The engine's options from a create request's body; `name` from the query.
pub fn create_options(body: &Value, name: Option<String>) -> Result<CreateOptions, String> {
    let image = body["Image"]
        .as_str()
        .filter(|i| !i.is_empty())
        .ok_or("config.Image is required")?;
    let hc = &body["HostConfig"];
    let restart_name = hc["RestartPolicy"]["Name"].as_str().unwrap_or_default();
    if !matches!(
        restart_name,
        "" | "no" | "always" | "unless-stopped" | "on-failure"
    ) {
        return Err(format!(
            "invalid restart policy {restart_name:?}: use one of no, always, on-failure, unless-stopped"
        ));
    }
    let restart = Some(restart_name)
        .filter(|n| !n.is_empty() && *n != "no")
        .map(
            |n| match hc["RestartPolicy"]["MaximumRetryCount"].as_u64() {
                Some(m) if m > 0 && n == "on-failure" => format!("{n}:{m}"),
                _ => n.to_string(),
            },
        );
    let mut mounts = Vec::new();
    for b in strings(&hc["Binds"]) {
        mounts.push(parse_volume(&b).map_err(|e| format!("invalid bind {b:?}: {e}"))?);
    }
    if let Some(ms) = hc["Mounts"].as_array() {
        for m in ms {
            mounts.push(mount_of(m)?);
        }
    }
    if let Some(t) = hc["Tmpfs"].as_object() {
        for (target, opts) in t {
            let opts = opts.as_str().unwrap_or_default();
            mounts.push(
                parse_tmpfs(target, opts).map_err(|e| format!("invalid tmpfs {target:?}: {e}"))?,
            );
        }
    }
    let mut publish = Vec::new();
    if let Some(pb) = hc["PortBindings"].as_object() {
        for (k, bindings) in pb {
            let (container_port, proto) = port_key(k)?;
            let list = bindings.as_array().cloned().unwrap_or_default();
            let list = if list.is_empty() {
                vec![json!({})]
            } else {
                list
            };
            for b in list {
                let host_ip = match b["HostIp"]
                    .as_str()
                    .filter(|ip| !ip.is_empty() && *ip != "0.0.0.0")
                {
                    Some(ip) => Some(ip.parse().map_err(|_| format!("invalid host IP {ip:?}"))?),
                    None => None,
                };
                let host_port = match b["HostPort"].as_str().filter(|p| !p.is_empty()) {
                    Some(p) => p.parse().map_err(|_| format!("invalid host port {p:?}"))?,
                    None => 0,
                };
                publish.push(PortMap {
                    proto: proto.clone(),
                    host_ip,
                    host_port,
                    container_port,
                });
            }
        }
    }
    let mut security = SecurityOpts::default();
    for o in strings(&hc["SecurityOpt"]) {
        security.apply(&o)?;
    }
    let SecurityOpts {
        no_new_privileges,
        seccomp_unconfined,
        seccomp_profile,
    } = security;
    let log = &hc["LogConfig"];
    if let Some(t) = log["Type"]
        .as_str()
        .filter(|t| !t.is_empty() && *t != "json-file")
    {
        return Err(format!("log driver {t:?} is not supported (json-file is)"));
    }
    let log_max_size = log["Config"]["max-size"]
        .as_str()
        .map(parse_bytes)
        .transpose()?;
    let log_max_file = log["Config"]["max-file"]
        .as_str()
        .map(|v| v.parse().map_err(|_| format!("invalid max-file {v:?}")))
        .transpose()?;
    let network = hc["NetworkMode"]
        .as_str()
        .filter(|n| !n.is_empty() && *n != "default")
        .map(str::to_string);
    // The endpoint of the network the container is created on: its address and aliases.
    let endpoint = body["NetworkingConfig"]["EndpointsConfig"]
        .as_object()
        .and_then(|eps| {
            network
                .as_ref()
                .and_then(|n| eps.get(n))
                .or_else(|| eps.values().next())
        })
        .cloned()
        .unwrap_or(Value::Null);
    let labels: BTreeMap<String, String> = body["Labels"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    Ok(CreateOptions {
        image: image.to_string(),
        name,
        cmd: strings(&body["Cmd"]),
        entrypoint: body["Entrypoint"]
            .as_array()
            .map(|_| strings(&body["Entrypoint"])),
        env: strings(&body["Env"]),
        workdir: text(&body["WorkingDir"]),
        user: text(&body["User"]),
        hostname: text(&body["Hostname"]),
        labels: labels.into_iter().collect(),
        init: hc["Init"].as_bool().unwrap_or(false),
        tty: body["Tty"].as_bool().unwrap_or(false),
        console_size: match hc["ConsoleSize"].as_array().map(|a| a.as_slice()) {
            Some([h, w]) => Some((
                h.as_u64().unwrap_or(0).min(u16::MAX.into()) as u16,
                w.as_u64().unwrap_or(0).min(u16::MAX.into()) as u16,
            ))
            .filter(|(h, w)| *h > 0 && *w > 0),
            _ => None,
        },
        open_stdin: body["OpenStdin"].as_bool().unwrap_or(false),
        memory: hc["Memory"].as_u64().filter(|m| *m > 0),
        cpus: hc["NanoCpus"]
            .as_u64()
            .filter(|n| *n > 0)
            .map(|n| n as f64 / 1e9),
        cpu_shares: hc["CpuShares"].as_u64().filter(|s| *s > 0),
        pids_limit: hc["PidsLimit"].as_i64().filter(|p| *p != 0),
        privileged: hc["Privileged"].as_bool().unwrap_or(false),
        cap_add: strings(&hc["CapAdd"]),
        cap_drop: strings(&hc["CapDrop"]),
        no_new_privileges,
        seccomp_unconfined,
        seccomp_profile,
        read_only: hc["ReadonlyRootfs"].as_bool().unwrap_or(false),
        network,
        ip: text(&endpoint["IPAMConfig"]["IPv4Address"]),
        network_aliases: strings(&endpoint["Aliases"]),
        dns: strings(&hc["Dns"]),
        extra_hosts: strings(&hc["ExtraHosts"]),
        publish,
        publish_all: hc["PublishAllPorts"].as_bool().unwrap_or(false),
        extra_networks: vec![],
        network_detached: false,
        mounts,
        volumes_from: strings(&hc["VolumesFrom"]),
        restart,
        auto_remove: hc["AutoRemove"].as_bool().unwrap_or(false),
        log_max_size,
        log_max_file,
        devices: match hc["Devices"].as_array() {
            Some(list) => list
                .iter()
                .map(|d| {
                    let m: crate::runtime::DeviceMapping = serde_json::from_value(d.clone())
                        .map_err(|e| format!("invalid device {d}: {e}"))?;
                    m.validate()?;
                    Ok(m)
                })
                .collect::<Result<Vec<_>, String>>()?,
            None => vec![],
        },
        device_cgroup_rules: strings(&hc["DeviceCgroupRules"]),
    })
}

/// A create request's body for `opts` (its name goes in the query).
pub fn create_body(opts: &CreateOptions) -> Value {
    // In the order given (the map keeps insertion order).
    let mut port_bindings = Map::new();
    let mut exposed = Map::new();
    for p in &opts.publish {
        let key = format!("{}/{}", p.container_port, p.proto);
        exposed.insert(key.clone(), json!({}));
        let binding = json!({
            "HostIp": p.host_ip.map(|ip| ip.to_string()).unwrap_or_default(),
            "HostPort": if p.host_port == 0 { String::new() } else { p.host_port.to_string() },
        });
        match port_bindings.get_mut(&key).and_then(Value::as_array_mut) {
            Some(list) => list.push(binding),
            None => {
                port_bindings.insert(key, json!([binding]));
            }
        }
    }
    let restart = opts.restart.as_deref().map(|r| {
        let (name, n) = r.split_once(':').unwrap_or((r, "0"));
        json!({"Name": name, "MaximumRetryCount": n.parse::<u64>().unwrap_or(0)})
    });
    let security = SecurityOpts::of(opts);
    let mut log_config = Map::new();
    if let Some(s) = opts.log_max_size {
        log_config.insert("max-size".into(), json!(s.to_string()));
    }
    if let Some(f) = opts.log_max_file {
        log_config.insert("max-file".into(), json!(f.to_string()));
    }
    let network = opts.network.clone().unwrap_or_else(|| "default".into());
    let mut endpoint = Map::new();
    if let Some(ip) = &opts.ip {
        endpoint.insert("IPAMConfig".into(), json!({"IPv4Address": ip}));
    }
    if !opts.network_aliases.is_empty() {
        endpoint.insert("Aliases".into(), json!(opts.network_aliases));
    }
    let endpoints = if endpoint.is_empty() {
        json!({})
    } else {
        json!({ network.clone(): endpoint })
    };
    let labels: Map<String, Value> = opts
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    json!({
        "Hostname": opts.hostname.clone().unwrap_or_default(),
        "User": opts.user.clone().unwrap_or_default(),
        "AttachStdin": opts.open_stdin,
        "AttachStdout": true,
        "AttachStderr": true,
        "Tty": opts.tty,
        "OpenStdin": opts.open_stdin,
        "StdinOnce": opts.open_stdin,
        "Env": opts.env,
        "Cmd": opts.cmd,
        "Entrypoint": opts.entrypoint,
        "Image": opts.image,
        "WorkingDir": opts.workdir.clone().unwrap_or_default(),
        "Labels": labels,
        "ExposedPorts": exposed,
        "HostConfig": {
            "Mounts": opts.mounts.iter().map(mount_json).collect::<Vec<_>>(),
            "NetworkMode": network,
            "PortBindings": port_bindings,
            "PublishAllPorts": opts.publish_all,
            "RestartPolicy": restart.unwrap_or_else(|| json!({"Name": "no", "MaximumRetryCount": 0})),
            "AutoRemove": opts.auto_remove,
            "VolumesFrom": opts.volumes_from,
            "CapAdd": opts.cap_add,
            "CapDrop": opts.cap_drop,
            "Dns": opts.dns,
            "ExtraHosts": opts.extra_hosts,
            "Privileged": opts.privileged,
            "ReadonlyRootfs": opts.read_only,
            "SecurityOpt": security,
            "Init": opts.init,
            "ConsoleSize": opts.console_size.map(|(h, w)| [h, w]).unwrap_or([0, 0]),
            "Memory": opts.memory.unwrap_or(0),
            "NanoCpus": opts.cpus.map(|c| (c * 1e9).round() as u64).unwrap_or(0),
            "CpuShares": opts.cpu_shares.unwrap_or(0),
            "PidsLimit": opts.pids_limit.unwrap_or(0),
            "Devices": opts.devices,
            "DeviceCgroupRules": opts.device_cgroup_rules,
            "LogConfig": {"Type": "json-file", "Config": log_config},
        },
        "NetworkingConfig": {"EndpointsConfig": endpoints},
    })
}

fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// `POST /networks/create`'s body as the engine's options.
pub fn network_options(b: &Value) -> Result<crate::network::NetworkCreate, String> {
    let name = b["Name"].as_str().unwrap_or_default();
    if name.is_empty() {
        return Err("a network needs a Name".into());
    }
    let ipam = &b["IPAM"]["Config"][0];
    Ok(crate::network::NetworkCreate {
        name: name.to_string(),
        driver: text(&b["Driver"]),
        subnet: text(&ipam["Subnet"]),
        gateway: text(&ipam["Gateway"]),
        ip_range: text(&ipam["IPRange"]),
        internal: b["Internal"].as_bool().unwrap_or(false),
        labels: string_map(&b["Labels"]).into_iter().collect(),
    })
}

/// `POST /volumes/create`'s body as the engine's options.
pub fn volume_options(b: &Value) -> crate::volume::VolumeCreate {
    crate::volume::VolumeCreate {
        name: b["Name"].as_str().unwrap_or_default().to_string(),
        driver: text(&b["Driver"]),
        options: string_map(&b["DriverOpts"]),
        labels: string_map(&b["Labels"]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every option the CLI can give survives the trip through the API's JSON.
    #[test]
    fn options_round_trip_through_the_body() {
        let opts = CreateOptions {
            image: "busybox:1".into(),
            name: Some("web".into()),
            cmd: vec!["sh".into(), "-c".into(), "echo hi".into()],
            entrypoint: Some(vec![]),
            env: vec!["A=1".into(), "B=two words".into()],
            workdir: Some("/srv".into()),
            user: Some("1000:1000".into()),
            hostname: Some("box".into()),
            labels: vec![("a".into(), "1".into()), ("b".into(), "".into())],
            init: true,
            tty: true,
            console_size: Some((33, 101)),
            open_stdin: true,
            memory: Some(64 << 20),
            cpus: Some(0.5),
            cpu_shares: Some(512),
            pids_limit: Some(-1),
            privileged: false,
            cap_add: vec!["NET_ADMIN".into()],
            cap_drop: vec!["CHOWN".into()],
            no_new_privileges: true,
            seccomp_unconfined: false,
            seccomp_profile: Some(r#"{"defaultAction":"SCMP_ACT_ALLOW"}"#.into()),
            read_only: true,
            network: Some("appnet".into()),
            ip: Some("10.9.0.9".into()),
            network_aliases: vec!["db".into()],
            dns: vec!["10.0.0.2".into()],
            extra_hosts: vec!["h:10.0.0.3".into()],
            publish: vec![
                PortMap {
                    proto: "tcp".into(),
                    host_ip: Some("127.0.0.1".parse().unwrap()),
                    host_port: 8080,
                    container_port: 80,
                },
                PortMap {
                    proto: "udp".into(),
                    host_ip: None,
                    host_port: 0,
                    container_port: 53,
                },
            ],
            publish_all: true,
            extra_networks: vec![],
            network_detached: false,
            mounts: vec![
                parse_volume("data:/data:ro,nocopy").unwrap(),
                parse_volume("/srv/x:/x:rshared").unwrap(),
                MountSpec {
                    kind: "bind".into(),
                    source: "/srv/y".into(),
                    target: "/y".into(),
                    ..Default::default()
                },
                parse_tmpfs("/tmp", "size=64m,mode=1777").unwrap(),
            ],
            volumes_from: vec!["other:ro".into()],
            restart: Some("on-failure:3".into()),
            auto_remove: false,
            log_max_size: Some(1 << 20),
            log_max_file: Some(3),
            devices: vec![crate::runtime::DeviceMapping::parse("/dev/null:/dev/xnull:rw").unwrap()],
            device_cgroup_rules: vec!["c 1:11 r".into()],
        };
        let back = create_options(&create_body(&opts), opts.name.clone()).unwrap();
        // Options have no equality of their own; their JSON does.
        assert_eq!(
            serde_json::to_value(&back).unwrap(),
            serde_json::to_value(&opts).unwrap()
        );
    }

    #[test]
    fn docker_cli_forms_are_read() {
        let body = json!({
            "Image": "busybox",
            "HostConfig": {
                "Binds": ["/h:/c:ro", "vol:/v"],
                "Tmpfs": {"/run": "size=1m"},
                "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]},
                "SecurityOpt": ["no-new-privileges"],
            },
        });
        let o = create_options(&body, None).unwrap();
        assert_eq!(o.mounts.len(), 3);
        assert!(o.mounts[0].readonly && o.mounts[0].kind == "bind");
        assert_eq!(o.mounts[1].kind, "volume");
        assert_eq!(o.mounts[2].tmpfs_size, Some(1 << 20));
        assert_eq!(o.publish[0].host_port, 8080);
        assert!(o.no_new_privileges);
        for bad in [
            json!({}),
            json!({"Image": "b", "HostConfig": {"Binds": ["a:b:c:d"]}}),
            json!({"Image": "b", "HostConfig": {"Mounts": [{"Type": "npipe", "Target": "/x"}]}}),
            json!({"Image": "b", "HostConfig": {"PortBindings": {"x/tcp": []}}}),
            json!({"Image": "b", "HostConfig": {"SecurityOpt": ["apparmor=x"]}}),
        ] {
            assert!(create_options(&bad, None).is_err(), "{bad}");
        }
    }

    /// Found by the create_json fuzzer: a restart policy named `on-failu:e` was taken as it
    /// was, and came back from the client's body as `on-failu`; the engine knows four.
    #[test]
    fn unknown_restart_policies_are_refused() {
        for name in ["on-failu:e", "sometimes", "always:3"] {
            let body = json!({"Image": "busybox", "HostConfig": {"RestartPolicy": {"Name": name}}});
            let err = create_options(&body, None).unwrap_err();
            assert!(
                err.starts_with(&format!("invalid restart policy {name:?}")),
                "{err}"
            );
        }
        for (name, want) in [
            ("", None),
            ("no", None),
            ("unless-stopped", Some("unless-stopped")),
        ] {
            let body = json!({"Image": "busybox", "HostConfig": {"RestartPolicy": {"Name": name}}});
            assert_eq!(
                create_options(&body, None).unwrap().restart.as_deref(),
                want
            );
        }
    }

    /// Found by the create_json fuzzer: a mount whose Type was missing (so a volume) kept its
    /// TmpfsOptions, which the client's body then dropped; the daemon and an embedded engine
    /// made different containers of one request.
    #[test]
    fn options_of_another_mount_type_are_refused() {
        let body = |m: Value| json!({"Image": "busybox", "HostConfig": {"Mounts": [m]}});
        for (m, want) in [
            (
                json!({"Target": "/t", "TmpfsOptions": {"SizeBytes": 1}}),
                "TmpfsOptions is for tmpfs mounts, not volume",
            ),
            (
                json!({"Type": "volume", "Source": "v", "Target": "/t", "BindOptions": {"Propagation": "rshared"}}),
                "BindOptions is for bind mounts, not volume",
            ),
            (
                json!({"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"Mode": 4294967296u64 + 0o755}}),
                "invalid tmpfs mode 4294967789",
            ),
        ] {
            let err = create_options(&body(m), None).unwrap_err();
            assert_eq!(err, want);
        }
        let ok = json!({"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1, "Mode": 0o1777}});
        let opts = create_options(&body(ok), None).unwrap();
        let back = create_options(&create_body(&opts), None).unwrap();
        assert_eq!(back.mounts[0].tmpfs_mode, Some(0o1777));
        assert_eq!(back.mounts[0].tmpfs_size, Some(1));
    }
}
