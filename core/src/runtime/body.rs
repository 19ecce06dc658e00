//! `POST /containers/create`'s body (the API's ContainerConfig with HostConfig and
//! NetworkingConfig) and the engine's [`CreateOptions`], both ways: the daemon reads what any
//! client sends; the remote CLI sends what the embedded one would run; `inspect` shows a
//! container's configuration in the same shape. Every field of the API's definitions is
//! in one of the tables here: read with Docker's meaning, or refused by name.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::{CreateOptions, Healthcheck, Resources, SecurityOpts, ThrottleDevice, Ulimit};
use crate::model::parse_bytes;
use crate::network::firewall::PortMap;
use crate::volume::{MountSpec, parse_tmpfs, parse_volume, volume_option};

pub(crate) fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn text(v: &Value) -> Option<String> {
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
        tmpfs_options: None,
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

/// How the daemon takes one field of a create request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// Read into [`CreateOptions`] and acted on, with Docker's meaning.
    Mapped,
    /// Docker's daemon takes no action on it at create either (a hint for the client, an
    /// output field, or something only images carry): accepted, never an error.
    Informational,
    /// Not supported: a request that sets it (anything but its zero value) is refused with
    /// this reason, never accepted and dropped.
    Refused(&'static str),
}

use Field::{Informational, Mapped, Refused};

/// Every property of the API's `ContainerConfig` (the top level of the body).
pub const CONFIG_FIELDS: &[(&str, Field)] = &[
    ("Hostname", Mapped),
    ("Domainname", Mapped),
    ("User", Mapped),
    ("AttachStdin", Informational),
    ("AttachStdout", Informational),
    ("AttachStderr", Informational),
    ("ExposedPorts", Mapped),
    ("Tty", Mapped),
    ("OpenStdin", Mapped),
    ("StdinOnce", Informational),
    ("Env", Mapped),
    ("Cmd", Mapped),
    ("Healthcheck", Mapped),
    ("ArgsEscaped", Informational),
    ("Image", Mapped),
    ("Volumes", Mapped),
    ("WorkingDir", Mapped),
    ("Entrypoint", Mapped),
    ("NetworkDisabled", Mapped),
    ("OnBuild", Informational),
    ("Labels", Mapped),
    ("StopSignal", Mapped),
    ("StopTimeout", Mapped),
    ("Shell", Informational),
    // Deprecated here for the endpoint's, which wins; still sent by older clients.
    ("MacAddress", Mapped),
];

/// Every property of the API's `HostConfig` (with its `Resources`).
pub const HOST_CONFIG_FIELDS: &[(&str, Field)] = &[
    ("CpuShares", Mapped),
    ("Memory", Mapped),
    ("CgroupParent", Mapped),
    ("BlkioWeight", Mapped),
    (
        "BlkioWeightDevice",
        Refused(
            "per-device block I/O weights need the BFQ weight files this engine does not write",
        ),
    ),
    ("BlkioDeviceReadBps", Mapped),
    ("BlkioDeviceWriteBps", Mapped),
    ("BlkioDeviceReadIOps", Mapped),
    ("BlkioDeviceWriteIOps", Mapped),
    ("CpuPeriod", Mapped),
    ("CpuQuota", Mapped),
    ("CpuRealtimePeriod", Mapped),
    ("CpuRealtimeRuntime", Mapped),
    ("CpusetCpus", Mapped),
    ("CpusetMems", Mapped),
    ("Devices", Mapped),
    ("DeviceCgroupRules", Mapped),
    (
        "DeviceRequests",
        Refused("device requests (--gpus) need a device driver this engine does not have"),
    ),
    ("MemoryReservation", Mapped),
    ("MemorySwap", Mapped),
    ("MemorySwappiness", Mapped),
    ("NanoCpus", Mapped),
    ("OomKillDisable", Mapped),
    ("Init", Mapped),
    ("PidsLimit", Mapped),
    ("Ulimits", Mapped),
    ("CpuCount", Refused("it is a Windows option")),
    ("CpuPercent", Refused("it is a Windows option")),
    ("IOMaximumIOps", Refused("it is a Windows option")),
    ("IOMaximumBandwidth", Refused("it is a Windows option")),
    ("Binds", Mapped),
    // Docker's daemon ignores it too: the client writes the file.
    ("ContainerIDFile", Informational),
    ("LogConfig", Mapped),
    ("NetworkMode", Mapped),
    ("PortBindings", Mapped),
    ("RestartPolicy", Mapped),
    ("AutoRemove", Mapped),
    ("VolumeDriver", Mapped),
    ("VolumesFrom", Mapped),
    ("Mounts", Mapped),
    ("ConsoleSize", Mapped),
    ("Annotations", Mapped),
    ("CapAdd", Mapped),
    ("CapDrop", Mapped),
    ("CgroupnsMode", Mapped),
    ("Dns", Mapped),
    ("DnsOptions", Mapped),
    ("DnsSearch", Mapped),
    ("ExtraHosts", Mapped),
    ("GroupAdd", Mapped),
    ("IpcMode", Mapped),
    (
        "Cgroup",
        Refused("sharing another container's cgroup is not supported"),
    ),
    ("Links", Mapped),
    ("OomScoreAdj", Mapped),
    ("PidMode", Mapped),
    ("Privileged", Mapped),
    ("PublishAllPorts", Mapped),
    ("ReadonlyRootfs", Mapped),
    ("SecurityOpt", Mapped),
    (
        "StorageOpt",
        Refused("per-container storage options need a storage driver with quotas"),
    ),
    ("Tmpfs", Mapped),
    ("UTSMode", Mapped),
    ("UsernsMode", Mapped),
    ("ShmSize", Mapped),
    ("Sysctls", Mapped),
    ("Runtime", Mapped),
    ("Isolation", Mapped),
    ("MaskedPaths", Mapped),
    ("ReadonlyPaths", Mapped),
];

/// Every property of the API's `EndpointSettings`, for each network of
/// `NetworkingConfig.EndpointsConfig`.
pub const ENDPOINT_FIELDS: &[(&str, Field)] = &[
    ("IPAMConfig", Mapped),
    ("Links", Mapped),
    ("MacAddress", Mapped),
    ("Aliases", Mapped),
    // Kept and shown; Docker's own keys refused in `endpoint_of`.
    ("DriverOpts", Mapped),
    (
        "GwPriority",
        Refused("choosing the default gateway among networks is not supported"),
    ),
    // What inspect shows of an endpoint: a client may send it back; it is the engine's to set.
    ("NetworkID", Informational),
    ("EndpointID", Informational),
    ("Gateway", Informational),
    ("IPAddress", Informational),
    ("IPPrefixLen", Informational),
    ("IPv6Gateway", Informational),
    ("GlobalIPv6Address", Informational),
    ("GlobalIPv6PrefixLen", Informational),
    ("DNSNames", Informational),
];

/// Why a field of `HostConfig`, `ContainerConfig` or an endpoint is refused, if it is: what
/// the CLI says of the flag that sets it.
pub fn refusal(field: &str) -> Option<&'static str> {
    CONFIG_FIELDS
        .iter()
        .chain(HOST_CONFIG_FIELDS)
        .chain(ENDPOINT_FIELDS)
        .find_map(|(name, f)| match f {
            Refused(reason) if *name == field => Some(*reason),
            _ => None,
        })
}

/// Whether a field holds anything but its zero value (as Go clients send unset fields).
fn is_set(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// The first refused field `obj` sets, as the error that names it.
fn refuse(obj: &Value, fields: &[(&str, Field)], prefix: &str) -> Result<(), String> {
    for (name, f) in fields {
        if let Refused(reason) = f
            && is_set(&obj[*name])
        {
            return Err(format!("{prefix}{name} is not supported: {reason}"));
        }
    }
    Ok(())
}

fn ulimits_of(v: &Value) -> Result<Vec<Ulimit>, String> {
    let Some(list) = v.as_array() else {
        return Ok(vec![]);
    };
    list.iter()
        .map(|u| {
            let u: Ulimit = serde_json::from_value(u.clone())
                .map_err(|e| format!("invalid ulimit {u}: {e}"))?;
            u.validate()?;
            Ok(u)
        })
        .collect()
}

fn throttles_of(v: &Value) -> Result<Vec<ThrottleDevice>, String> {
    let Some(list) = v.as_array() else {
        return Ok(vec![]);
    };
    list.iter()
        .map(|t| {
            serde_json::from_value(t.clone())
                .map_err(|e| format!("invalid throttle device {t}: {e}"))
        })
        .collect()
}

/// A non-negative number field; `what` names it in the error.
fn number<T: TryFrom<u64>>(v: &Value, what: &str) -> Result<Option<T>, String> {
    match v {
        Value::Null => Ok(None),
        v => match v.as_u64().and_then(|n| T::try_from(n).ok()) {
            Some(n) => Ok(Some(n)),
            None if v.as_i64() == Some(-1) => Ok(None),
            None => Err(format!("invalid {what} {v}")),
        },
    }
}

fn health_of(v: &Value) -> Result<Option<Healthcheck>, String> {
    if v.is_null() {
        return Ok(None);
    }
    // Clients send unset durations as null.
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.retain(|_, x| !x.is_null());
    }
    let h: Healthcheck =
        serde_json::from_value(v).map_err(|e| format!("invalid Healthcheck: {e}"))?;
    h.validate()?;
    Ok(Some(h))
}

/// The engine's options from a create request's body; `name` from the query.
/// `v` with its keys named as `names` name them: the API's JSON is read as Go reads it, a
/// key naming a field whatever its case (docker-py writes `CPURealtimePeriod` for
/// `CpuRealtimePeriod`, and dockerd takes it). A key in the field's own case wins over
/// another spelling of it; keys that name no field are kept as they are.
fn canonical<'n>(v: &Value, names: impl Iterator<Item = &'n str> + Clone) -> Value {
    let Some(obj) = v.as_object() else {
        return v.clone();
    };
    let mut out = Map::new();
    for (k, val) in obj {
        let exact = names.clone().any(|n| n == k);
        let name = match names.clone().find(|n| n.eq_ignore_ascii_case(k)) {
            Some(n) if !exact => {
                if out.contains_key(n) {
                    continue;
                }
                n.to_string()
            }
            _ => k.clone(),
        };
        out.insert(name, val.clone());
    }
    Value::Object(out)
}

/// A create body with every key of its config, host config and endpoints in the API's case.
fn canonical_create(body: &Value) -> Value {
    let top = CONFIG_FIELDS
        .iter()
        .map(|(n, _)| *n)
        .chain(["HostConfig", "NetworkingConfig"]);
    let mut body = canonical(body, top);
    if body["HostConfig"].is_object() {
        body["HostConfig"] = canonical(
            &body["HostConfig"],
            HOST_CONFIG_FIELDS.iter().map(|(n, _)| *n),
        );
    }
    if body["NetworkingConfig"].is_object() {
        body["NetworkingConfig"] = canonical(
            &body["NetworkingConfig"],
            std::iter::once("EndpointsConfig"),
        );
        if let Some(eps) = body["NetworkingConfig"]["EndpointsConfig"].as_object_mut() {
            for ep in eps.values_mut() {
                *ep = canonical(ep, ENDPOINT_FIELDS.iter().map(|(n, _)| *n));
            }
        }
    }
    body
}

pub fn create_options(body: &Value, name: Option<String>) -> Result<CreateOptions, String> {
    let opts = read_options(&canonical_create(body), name)?;
    opts.validate()?;
    Ok(opts)
}

fn read_options(body: &Value, name: Option<String>) -> Result<CreateOptions, String> {
    refuse(body, CONFIG_FIELDS, "")?;
    refuse(&body["HostConfig"], HOST_CONFIG_FIELDS, "")?;
    if let Some(eps) = body["NetworkingConfig"]["EndpointsConfig"].as_object() {
        for (name, ep) in eps {
            endpoint_of(name, ep)?;
        }
    }
    let image = body["Image"]
        .as_str()
        .filter(|i| !i.is_empty())
        .ok_or("config.Image is required")?;
    let hc = &body["HostConfig"];
    let restart = restart_of(&hc["RestartPolicy"])?.filter(|r| r != "no");
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
                // `0.0.0.0` is every IPv4 address (and no IPv6 one); none is every address.
                let host_ip = match b["HostIp"].as_str().filter(|ip| !ip.is_empty()) {
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
    let systempaths_unconfined = security.systempaths_unconfined;
    let SecurityOpts {
        no_new_privileges,
        seccomp_unconfined,
        seccomp_profile,
        ..
    } = security;
    let log = &hc["LogConfig"];
    let log_driver = text(&log["Type"]);
    if log_driver.as_deref() == Some("none") && is_set(&log["Config"]) {
        return Err("the none log driver takes no options".into());
    }
    if let Some(o) = log["Config"].as_object().and_then(|c| {
        c.keys()
            .find(|k| !matches!(k.as_str(), "max-size" | "max-file"))
    }) {
        return Err(format!(
            "unknown log opt '{o}' for the {} log driver",
            log_driver.as_deref().unwrap_or("json-file")
        ));
    }
    if let Some(r) = hc["Runtime"]
        .as_str()
        .filter(|r| !r.is_empty() && !matches!(*r, "runc" | "ketch"))
    {
        return Err(format!(
            "Runtime {r:?} is not supported: containers run under ketch-shim"
        ));
    }
    if let Some(i) = hc["Isolation"]
        .as_str()
        .filter(|i| !i.is_empty() && *i != "default")
    {
        return Err(format!("Isolation {i:?} is not supported on Linux"));
    }
    let log_max_size = log["Config"]["max-size"]
        .as_str()
        .map(parse_bytes)
        .transpose()?;
    let log_max_file = log["Config"]["max-file"]
        .as_str()
        .map(|v| v.parse().map_err(|_| format!("invalid max-file {v:?}")))
        .transpose()?;
    let network = if body["NetworkDisabled"].as_bool() == Some(true) {
        Some("none".to_string())
    } else {
        hc["NetworkMode"]
            .as_str()
            .filter(|n| !n.is_empty() && *n != "default")
            .map(str::to_string)
    };
    // Anonymous volumes (`docker run -v /data`) come as Config.Volumes.
    if let Some(vols) = body["Volumes"].as_object() {
        for target in vols.keys() {
            if !mounts.iter().any(|m| m.target == *target) {
                mounts.push(
                    parse_volume(target).map_err(|e| format!("invalid volume {target:?}: {e}"))?,
                );
            }
        }
    }
    // Published ports are exposed too (clients send both); the rest are `--expose`.
    let expose: Vec<String> = body["ExposedPorts"]
        .as_object()
        .map(|o| {
            o.keys()
                .filter(|k| {
                    !port_key(k).is_ok_and(|(port, proto)| {
                        hc["PortBindings"]
                            .as_object()
                            .is_some_and(|pb| pb.contains_key(&format!("{port}/{proto}")))
                    })
                })
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    // The endpoint of the network the container is created on: its address and aliases.
    // The endpoint of the network it is created on; as with API 1.44 and later, those of
    // other networks are networks it is connected to as well.
    let mode_net = network.clone().unwrap_or_else(|| "bridge".into());
    let mut endpoint = crate::network::NetworkAttachment::default();
    let mut extra_networks = Vec::new();
    for (n, ep) in body["NetworkingConfig"]["EndpointsConfig"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let a = endpoint_of(n, ep)?;
        if *n == mode_net || (network.is_none() && n == "default") {
            endpoint = a;
        } else {
            extra_networks.push(a);
        }
    }
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
        resources: resources_of(hc)?,
        privileged: hc["Privileged"].as_bool().unwrap_or(false),
        cap_add: strings(&hc["CapAdd"]),
        cap_drop: strings(&hc["CapDrop"]),
        no_new_privileges,
        seccomp_unconfined,
        seccomp_profile,
        read_only: hc["ReadonlyRootfs"].as_bool().unwrap_or(false),
        network,
        ip: endpoint.ip,
        ip6: endpoint.ip6,
        link_local_ips: endpoint.link_local_ips,
        network_aliases: endpoint.aliases,
        mac_address: endpoint.mac.or_else(|| text(&body["MacAddress"])),
        network_driver_opts: endpoint.driver_opts,
        network_links: endpoint.links,
        volume_driver: text(&hc["VolumeDriver"]),
        links: strings(&hc["Links"])
            .iter()
            .map(|l| super::options::parse_link(l).map(|(n, a)| format!("{n}:{a}")))
            .collect::<Result<_, _>>()?,
        runtime: text(&hc["Runtime"]),
        isolation: text(&hc["Isolation"]),
        dns: strings(&hc["Dns"]),
        extra_hosts: strings(&hc["ExtraHosts"]),
        publish,
        publish_all: hc["PublishAllPorts"].as_bool().unwrap_or(false),
        extra_networks,
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
        pid_mode: text(&hc["PidMode"]),
        ipc_mode: text(&hc["IpcMode"]),
        uts_mode: text(&hc["UTSMode"]),
        cgroupns_mode: text(&hc["CgroupnsMode"]),
        userns_mode: text(&hc["UsernsMode"]),
        ulimits: ulimits_of(&hc["Ulimits"])?,
        shm_size: number(&hc["ShmSize"], "ShmSize")?.filter(|s: &u64| *s > 0),
        oom_score_adj: match &hc["OomScoreAdj"] {
            Value::Null => None,
            v => Some(
                v.as_i64()
                    .and_then(|n| i32::try_from(n).ok())
                    .ok_or_else(|| format!("invalid OomScoreAdj {v}"))?,
            )
            .filter(|n| *n != 0),
        },
        group_add: strings(&hc["GroupAdd"]),
        dns_search: strings(&hc["DnsSearch"]),
        dns_options: strings(&hc["DnsOptions"]),
        domainname: text(&body["Domainname"]),
        sysctls: string_map(&hc["Sysctls"]),
        masked_paths: match systempaths_unconfined {
            true => Some(vec![]),
            false => hc["MaskedPaths"]
                .as_array()
                .map(|_| strings(&hc["MaskedPaths"])),
        },
        readonly_paths: match systempaths_unconfined {
            true => Some(vec![]),
            false => hc["ReadonlyPaths"]
                .as_array()
                .map(|_| strings(&hc["ReadonlyPaths"])),
        },
        annotations: string_map(&hc["Annotations"]),
        stop_signal: text(&body["StopSignal"]),
        stop_timeout: body["StopTimeout"].as_i64(),
        log_driver: log_driver.filter(|d| d != "json-file"),
        expose,
        cgroup_parent: text(&hc["CgroupParent"]),
        healthcheck: health_of(&body["Healthcheck"])?,
    })
}

fn resources_of(hc: &Value) -> Result<Resources, String> {
    Ok(Resources {
        memory: number(&hc["Memory"], "Memory")?.filter(|m: &u64| *m > 0),
        memory_reservation: number(&hc["MemoryReservation"], "MemoryReservation")?
            .filter(|m: &u64| *m > 0),
        memory_swap: hc["MemorySwap"].as_i64().filter(|s| *s != 0),
        memory_swappiness: number(&hc["MemorySwappiness"], "MemorySwappiness")?,
        oom_kill_disable: hc["OomKillDisable"].as_bool().unwrap_or(false),
        cpus: hc["NanoCpus"]
            .as_u64()
            .filter(|n| *n > 0)
            .map(|n| n as f64 / 1e9),
        cpu_shares: number(&hc["CpuShares"], "CpuShares")?.filter(|s: &u64| *s > 0),
        cpu_period: number(&hc["CpuPeriod"], "CpuPeriod")?.filter(|s: &u64| *s > 0),
        cpu_quota: hc["CpuQuota"].as_i64().filter(|q| *q > 0),
        cpu_rt_period: number(&hc["CpuRealtimePeriod"], "CpuRealtimePeriod")?
            .filter(|p: &u64| *p > 0),
        cpu_rt_runtime: hc["CpuRealtimeRuntime"].as_i64().filter(|t| *t != 0),
        cpuset_cpus: text(&hc["CpusetCpus"]),
        cpuset_mems: text(&hc["CpusetMems"]),
        pids_limit: hc["PidsLimit"].as_i64().filter(|p| *p != 0),
        blkio_weight: number(&hc["BlkioWeight"], "BlkioWeight")?.filter(|w: &u16| *w > 0),
        device_read_bps: throttles_of(&hc["BlkioDeviceReadBps"])?,
        device_write_bps: throttles_of(&hc["BlkioDeviceWriteBps"])?,
        device_read_iops: throttles_of(&hc["BlkioDeviceReadIOps"])?,
        device_write_iops: throttles_of(&hc["BlkioDeviceWriteIOps"])?,
    })
}

/// One network's `EndpointSettings` (a create's `NetworkingConfig` entry, or a connect's
/// `EndpointConfig`): what the container asks of it there. A refused field is named.
pub fn endpoint_of(network: &str, ep: &Value) -> Result<crate::network::NetworkAttachment, String> {
    refuse(ep, ENDPOINT_FIELDS, "EndpointsConfig.")?;
    let driver_opts = string_map(&ep["DriverOpts"]);
    // Docker's own keys mean something to its drivers: none of them is done here.
    if let Some(k) = driver_opts
        .keys()
        .find(|k| k.starts_with("com.docker.network."))
    {
        return Err(format!(
            "endpoint option {k} is not supported: the bridge driver here reads no options of its own"
        ));
    }
    let links = strings(&ep["Links"])
        .iter()
        .map(|l| super::options::parse_link(l).map(|(n, a)| format!("{n}:{a}")))
        .collect::<Result<_, _>>()?;
    Ok(crate::network::NetworkAttachment {
        network: network.to_string(),
        ip: text(&ep["IPAMConfig"]["IPv4Address"]),
        ip6: text(&ep["IPAMConfig"]["IPv6Address"]),
        link_local_ips: strings(&ep["IPAMConfig"]["LinkLocalIPs"]),
        aliases: strings(&ep["Aliases"]),
        mac: text(&ep["MacAddress"]),
        driver_opts,
        links,
    })
}

/// An endpoint's `IPAMConfig`: the addresses it asks for, `None` when it asks for none.
pub fn ipam_json(a: &crate::network::NetworkAttachment) -> Option<Value> {
    let mut ipam = Map::new();
    if let Some(ip) = &a.ip {
        ipam.insert("IPv4Address".into(), json!(ip));
    }
    if let Some(ip) = &a.ip6 {
        ipam.insert("IPv6Address".into(), json!(ip));
    }
    if !a.link_local_ips.is_empty() {
        ipam.insert("LinkLocalIPs".into(), json!(a.link_local_ips));
    }
    (!ipam.is_empty()).then_some(Value::Object(ipam))
}

/// An endpoint's `EndpointSettings`: only what it asks for.
pub fn endpoint_json(a: &crate::network::NetworkAttachment) -> Value {
    let mut ep = Map::new();
    if let Some(ipam) = ipam_json(a) {
        ep.insert("IPAMConfig".into(), ipam);
    }
    if !a.aliases.is_empty() {
        ep.insert("Aliases".into(), json!(a.aliases));
    }
    if let Some(mac) = &a.mac {
        ep.insert("MacAddress".into(), json!(mac));
    }
    if !a.links.is_empty() {
        ep.insert("Links".into(), json!(a.links));
    }
    if !a.driver_opts.is_empty() {
        ep.insert("DriverOpts".into(), json!(a.driver_opts));
    }
    Value::Object(ep)
}

/// A `RestartPolicy` as the engine names it (`on-failure:3`); `None` when it names none.
fn restart_of(rp: &Value) -> Result<Option<String>, String> {
    let name = rp["Name"].as_str().unwrap_or_default();
    if !matches!(name, "" | "no" | "always" | "unless-stopped" | "on-failure") {
        return Err(format!(
            "invalid restart policy {name:?}: use one of no, always, on-failure, unless-stopped"
        ));
    }
    Ok(Some(name)
        .filter(|n| !n.is_empty())
        .map(|n| match rp["MaximumRetryCount"].as_u64() {
            Some(m) if m > 0 && n == "on-failure" => format!("{n}:{m}"),
            _ => n.to_string(),
        }))
}

/// `POST /containers/{id}/update`'s body (the API's `Resources` and a `RestartPolicy`):
/// what it gives is changed, the rest kept.
pub fn update_options(b: &Value) -> Result<super::UpdateOptions, String> {
    let b = &canonical(
        b,
        HOST_CONFIG_FIELDS
            .iter()
            .map(|(n, _)| *n)
            .chain(["RestartPolicy"]),
    );
    if let Some(obj) = b.as_object() {
        for (name, f) in HOST_CONFIG_FIELDS {
            if let Field::Refused(reason) = f
                && obj.get(*name).is_some_and(is_set)
            {
                return Err(format!("{name} is not supported: {reason}"));
            }
        }
        for k in obj.keys() {
            let known = k == "RestartPolicy" || HOST_CONFIG_FIELDS.iter().any(|(n, _)| n == k);
            if !known {
                return Err(format!("{k} cannot be updated"));
            }
        }
    }
    let restart = restart_of(&b["RestartPolicy"])?;
    Ok(super::UpdateOptions {
        resources: resources_of(b)?,
        restart,
    })
}

/// The body of an update of `u`: only what it changes.
pub fn update_body(u: &super::UpdateOptions) -> Value {
    let mut m: Map<String, Value> = resources_json(&u.resources)
        .into_iter()
        .filter(|(_, v)| is_set(v))
        .collect();
    if let Some(r) = &u.restart {
        let (name, n) = r.split_once(':').unwrap_or((r, "0"));
        m.insert(
            "RestartPolicy".into(),
            json!({"Name": name, "MaximumRetryCount": n.parse::<u64>().unwrap_or(0)}),
        );
    }
    // Unlimited is -1, a value, not a zero to leave out.
    if u.resources.pids_limit.is_some_and(|p| p < 0) {
        m.insert("PidsLimit".into(), json!(-1));
    }
    if u.resources.memory_swap == Some(-1) {
        m.insert("MemorySwap".into(), json!(-1));
    }
    Value::Object(m)
}

/// The API's `Resources` fields for `r` (in a HostConfig, and `update`'s body).
pub fn resources_json(r: &Resources) -> Map<String, Value> {
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_string(), v);
    };
    put("Memory", json!(r.memory.unwrap_or(0)));
    put(
        "MemoryReservation",
        json!(r.memory_reservation.unwrap_or(0)),
    );
    put("MemorySwap", json!(r.memory_swap.unwrap_or(0)));
    put("MemorySwappiness", json!(r.memory_swappiness));
    put("OomKillDisable", json!(r.oom_kill_disable));
    put(
        "NanoCpus",
        json!(r.cpus.map(|c| (c * 1e9).round() as u64).unwrap_or(0)),
    );
    put("CpuShares", json!(r.cpu_shares.unwrap_or(0)));
    put("CpuPeriod", json!(r.cpu_period.unwrap_or(0)));
    put("CpuQuota", json!(r.cpu_quota.unwrap_or(0)));
    put("CpuRealtimePeriod", json!(r.cpu_rt_period.unwrap_or(0)));
    put("CpuRealtimeRuntime", json!(r.cpu_rt_runtime.unwrap_or(0)));
    put(
        "CpusetCpus",
        json!(r.cpuset_cpus.clone().unwrap_or_default()),
    );
    put(
        "CpusetMems",
        json!(r.cpuset_mems.clone().unwrap_or_default()),
    );
    put("PidsLimit", json!(r.pids_limit));
    put("BlkioWeight", json!(r.blkio_weight.unwrap_or(0)));
    put("BlkioDeviceReadBps", json!(r.device_read_bps));
    put("BlkioDeviceWriteBps", json!(r.device_write_bps));
    put("BlkioDeviceReadIOps", json!(r.device_read_iops));
    put("BlkioDeviceWriteIOps", json!(r.device_write_iops));
    m
}

/// A create request's body for `opts` (its name goes in the query).
pub fn create_body(opts: &CreateOptions) -> Value {
    // `--tmpfs` mounts as `HostConfig.Tmpfs` holds them: the target and the options as
    // given. (`--mount type=tmpfs` ones are among the Mounts.)
    let tmpfs: Map<String, Value> = opts
        .mounts
        .iter()
        .filter_map(|m| Some((m.target.clone(), json!(m.tmpfs_options.as_ref()?))))
        .collect();
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
    let endpoint = endpoint_json(&crate::network::NetworkAttachment {
        network: network.clone(),
        ip: opts.ip.clone(),
        ip6: opts.ip6.clone(),
        link_local_ips: opts.link_local_ips.clone(),
        aliases: opts.network_aliases.clone(),
        mac: opts.mac_address.clone(),
        driver_opts: opts.network_driver_opts.clone(),
        links: opts.network_links.clone(),
    });
    let mut endpoints = Map::new();
    if !endpoint.as_object().is_some_and(Map::is_empty) {
        endpoints.insert(network.clone(), endpoint);
    }
    for a in &opts.extra_networks {
        endpoints.insert(a.network.clone(), endpoint_json(a));
    }
    let labels: Map<String, Value> = opts
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    for p in &opts.expose {
        let key = if p.contains('/') {
            p.clone()
        } else {
            format!("{p}/tcp")
        };
        exposed.entry(key).or_insert_with(|| json!({}));
    }
    let mut host_config = json!({
            "Mounts": opts.mounts.iter().filter(|m| m.tmpfs_options.is_none()).map(mount_json).collect::<Vec<_>>(),
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
            "Devices": opts.devices,
            "DeviceCgroupRules": opts.device_cgroup_rules,
            "PidMode": opts.pid_mode.clone().unwrap_or_default(),
            "IpcMode": opts.ipc_mode.clone().unwrap_or_default(),
            "UTSMode": opts.uts_mode.clone().unwrap_or_default(),
            "CgroupnsMode": opts.cgroupns_mode.clone().unwrap_or_default(),
            "UsernsMode": opts.userns_mode.clone().unwrap_or_default(),
            "Ulimits": opts.ulimits,
            "ShmSize": opts.shm_size.unwrap_or(0),
            "OomScoreAdj": opts.oom_score_adj.unwrap_or(0),
            "GroupAdd": opts.group_add,
            "DnsSearch": opts.dns_search,
            "DnsOptions": opts.dns_options,
            "Sysctls": opts.sysctls,
            "MaskedPaths": opts.masked_paths,
            "ReadonlyPaths": opts.readonly_paths,
            "Annotations": opts.annotations,
            "CgroupParent": opts.cgroup_parent.clone().unwrap_or_default(),
            "VolumeDriver": opts.volume_driver.clone().unwrap_or_default(),
            "Runtime": opts.runtime.clone().unwrap_or_default(),
            "Isolation": opts.isolation.clone().unwrap_or_default(),
            "Links": opts.links,
            "Tmpfs": tmpfs,
    });
    if let Some(hc) = host_config.as_object_mut() {
        hc.extend(resources_json(&opts.resources));
        hc.insert(
            "LogConfig".into(),
            json!({"Type": opts.log_driver.as_deref().unwrap_or("json-file"), "Config": log_config}),
        );
    }
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
        "Domainname": opts.domainname.clone().unwrap_or_default(),
        "StopSignal": opts.stop_signal,
        "StopTimeout": opts.stop_timeout,
        "Healthcheck": opts.healthcheck,
        "HostConfig": host_config,
        "NetworkingConfig": {"EndpointsConfig": endpoints},
    })
}

pub(crate) fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys are read whatever their case, as dockerd's decoder reads them; the field's own
    /// spelling wins over another.
    #[test]
    fn keys_name_fields_whatever_their_case() {
        let body = json!({
            "image": "busybox",
            "HostConfig": {"CPURealtimePeriod": 1000, "cpurealtimeruntime": 500, "memory": 1, "Memory": 64 << 20},
            "NetworkingConfig": {"endpointsconfig": {"n": {"ipamconfig": {"IPv4Address": "10.0.0.9"}}}},
        });
        let o = create_options(&body, None).unwrap();
        assert_eq!(o.image, "busybox");
        assert_eq!(o.resources.cpu_rt_period, Some(1000));
        assert_eq!(o.resources.cpu_rt_runtime, Some(500));
        assert_eq!(o.resources.memory, Some(64 << 20));
        assert_eq!(o.extra_networks.len() + usize::from(o.ip.is_some()), 1);
        let u = update_options(&json!({"CPUShares": 512, "restartpolicy": {"Name": "always"}}))
            .unwrap();
        assert_eq!(u.resources.cpu_shares, Some(512));
        assert_eq!(u.restart.as_deref(), Some("always"));
        // A refused field is refused in any case.
        let err = create_options(
            &json!({"Image": "b", "HostConfig": {"storageopt": {"size": "1G"}}}),
            None,
        )
        .unwrap_err();
        assert!(err.contains("StorageOpt is not supported"), "{err}");
    }

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
            resources: Resources {
                memory: Some(64 << 20),
                memory_reservation: Some(32 << 20),
                memory_swap: Some(-1),
                memory_swappiness: Some(10),
                oom_kill_disable: true,
                cpus: None,
                cpu_shares: Some(512),
                cpu_period: Some(50_000),
                cpu_quota: Some(25_000),
                cpu_rt_period: Some(100_000),
                cpu_rt_runtime: Some(5_000),
                cpuset_cpus: Some("0".into()),
                cpuset_mems: Some("0".into()),
                pids_limit: Some(-1),
                blkio_weight: Some(300),
                device_read_bps: vec![ThrottleDevice {
                    path: "/dev/loop0".into(),
                    rate: 1 << 20,
                }],
                device_write_bps: vec![],
                device_read_iops: vec![],
                device_write_iops: vec![ThrottleDevice {
                    path: "/dev/loop0".into(),
                    rate: 100,
                }],
            },
            privileged: false,
            cap_add: vec!["NET_ADMIN".into()],
            cap_drop: vec!["CHOWN".into()],
            no_new_privileges: true,
            seccomp_unconfined: false,
            seccomp_profile: Some(r#"{"defaultAction":"SCMP_ACT_ALLOW"}"#.into()),
            read_only: true,
            network: Some("appnet".into()),
            ip: Some("10.9.0.9".into()),
            ip6: Some("fd09::9".into()),
            link_local_ips: vec!["169.254.1.1".into(), "fe80::9".into()],
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
            pid_mode: Some("host".into()),
            ipc_mode: Some("container:db".into()),
            uts_mode: Some("host".into()),
            cgroupns_mode: Some("private".into()),
            userns_mode: Some("host".into()),
            ulimits: vec![Ulimit::parse("nofile=100:200").unwrap()],
            shm_size: Some(128 << 20),
            oom_score_adj: Some(500),
            group_add: vec!["10".into(), "audio".into()],
            dns_search: vec!["example.org".into()],
            dns_options: vec!["ndots:2".into()],
            domainname: Some("example.org".into()),
            sysctls: [("net.ipv4.ip_forward".to_string(), "1".to_string())].into(),
            masked_paths: Some(vec![]),
            readonly_paths: Some(vec!["/proc/sys".into()]),
            annotations: [("org.example/a".to_string(), "b".to_string())].into(),
            stop_signal: Some("SIGUSR1".into()),
            stop_timeout: Some(3),
            log_driver: Some("local".into()),
            expose: vec!["8080/tcp".into(), "9000-9001/udp".into()],
            cgroup_parent: Some("/parent".into()),
            mac_address: Some("02:42:ac:11:00:99".into()),
            network_driver_opts: [("key1".to_string(), "a".to_string())].into(),
            network_links: vec!["db:database".into()],
            volume_driver: Some("local".into()),
            links: vec!["db:database".into()],
            runtime: Some("runc".into()),
            isolation: Some("default".into()),
            healthcheck: Some(Healthcheck {
                test: vec!["CMD-SHELL".into(), "true".into()],
                interval: 1_000_000_000,
                timeout: 2_000_000_000,
                retries: 3,
                start_period: 0,
                start_interval: 5_000_000,
            }),
        };
        // Read without the host checks (the throttled device may not be here).
        let back = read_options(&create_body(&opts), opts.name.clone()).unwrap();
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

    /// The property names of a definition of the API's swagger (following `allOf`
    /// references), read by indentation: enough for its regular layout.
    fn swagger_properties(name: &str) -> Vec<String> {
        const API: &str = include_str!("../../../reference/docker-engine-api.yaml");
        let lines: Vec<&str> = API.lines().collect();
        let indent = |l: &str| l.len() - l.trim_start().len();
        let head = format!("  {name}:");
        let start = lines
            .iter()
            .position(|l| *l == head)
            .unwrap_or_else(|| panic!("no definition {name}"));
        let end = lines[start + 1..]
            .iter()
            .position(|l| !l.trim().is_empty() && indent(l) <= 2)
            .map_or(lines.len(), |n| start + 1 + n);
        let mut out = Vec::new();
        let mut i = start + 1;
        while i < end {
            let l = lines[i];
            if let Some(r) = l.trim().strip_prefix("- $ref: \"#/definitions/") {
                out.extend(swagger_properties(r.trim_end_matches('"')));
            }
            if l.trim() == "properties:" {
                let level = indent(l) + 2;
                i += 1;
                while i < end && (lines[i].trim().is_empty() || indent(lines[i]) >= level) {
                    let p = lines[i];
                    if indent(p) == level && !p.trim_start().starts_with('#') {
                        out.push(p.trim().trim_end_matches(':').to_string());
                    }
                    i += 1;
                }
                continue;
            }
            i += 1;
        }
        out
    }

    /// The rule at the boundary: every field a client can send in a create request is read
    /// with Docker's meaning or refused by name, never dropped. A field the API gains
    /// fails this until it is placed in one of the tables.
    #[test]
    fn every_create_field_is_mapped_or_refused() {
        for (definition, table) in [
            ("ContainerConfig", CONFIG_FIELDS),
            ("HostConfig", HOST_CONFIG_FIELDS),
            ("EndpointSettings", ENDPOINT_FIELDS),
        ] {
            let props = swagger_properties(definition);
            assert!(props.len() > 10, "{definition}: {props:?}");
            for p in &props {
                assert!(
                    table.iter().any(|(name, _)| name == p),
                    "{definition}.{p} is neither mapped nor refused"
                );
            }
            // And no table entry the API does not have (a typo would refuse nothing).
            for (name, _) in table {
                assert!(
                    props.iter().any(|p| p == name) || *name == "MacAddress",
                    "{definition} has no field {name}"
                );
            }
        }
        // Each refused field set to something is refused with its name.
        for (section, table) in [("", CONFIG_FIELDS), ("HostConfig", HOST_CONFIG_FIELDS)] {
            for (name, f) in table {
                let Refused(reason) = f else { continue };
                let with = |v: Value| {
                    let mut body = json!({"Image": "busybox"});
                    if section.is_empty() {
                        body[*name] = v;
                    } else {
                        body[section] = json!({ *name: v });
                    }
                    body
                };
                let err = create_options(&with(json!(1)), None).unwrap_err();
                assert_eq!(err, format!("{name} is not supported: {reason}"));
                // Its zero value, as Go clients send every field, is no error.
                create_options(&with(json!(0)), None).unwrap();
            }
        }
        for (name, f) in ENDPOINT_FIELDS {
            let Refused(reason) = f else { continue };
            let body = json!({"Image": "busybox", "NetworkingConfig": {"EndpointsConfig": {"n": {*name: "x"}}}});
            let err = create_options(&body, None).unwrap_err();
            assert_eq!(
                err,
                format!("EndpointsConfig.{name} is not supported: {reason}")
            );
        }
    }

    /// What the docker CLI sends for `docker run` with no options: nothing refused.
    #[test]
    fn a_plain_docker_run_is_accepted() {
        let body: Value = serde_json::from_str(
            r#"{
            "Hostname": "", "Domainname": "", "User": "", "AttachStdin": false,
            "AttachStdout": true, "AttachStderr": true, "Tty": false, "OpenStdin": false,
            "StdinOnce": false, "Env": [], "Cmd": ["true"], "Image": "busybox",
            "Volumes": {}, "WorkingDir": "", "Entrypoint": null, "OnBuild": null, "Labels": {},
            "HostConfig": {
                "Binds": null, "ContainerIDFile": "", "LogConfig": {"Type": "", "Config": {}},
                "NetworkMode": "default", "PortBindings": {}, "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
                "AutoRemove": false, "VolumeDriver": "", "VolumesFrom": null, "ConsoleSize": [0, 0],
                "CapAdd": null, "CapDrop": null, "CgroupnsMode": "", "Dns": [], "DnsOptions": [],
                "DnsSearch": [], "ExtraHosts": null, "GroupAdd": null, "IpcMode": "", "Cgroup": "",
                "Links": null, "OomScoreAdj": 0, "PidMode": "", "Privileged": false,
                "PublishAllPorts": false, "ReadonlyRootfs": false, "SecurityOpt": null,
                "UTSMode": "", "UsernsMode": "", "ShmSize": 0, "Isolation": "", "CpuShares": 0,
                "Memory": 0, "NanoCpus": 0, "CgroupParent": "", "BlkioWeight": 0,
                "BlkioWeightDevice": [], "BlkioDeviceReadBps": [], "BlkioDeviceWriteBps": [],
                "BlkioDeviceReadIOps": [], "BlkioDeviceWriteIOps": [], "CpuPeriod": 0,
                "CpuQuota": 0, "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0, "CpusetCpus": "",
                "CpusetMems": "", "Devices": [], "DeviceCgroupRules": null, "DeviceRequests": null,
                "MemoryReservation": 0, "MemorySwap": 0, "MemorySwappiness": null,
                "OomKillDisable": null, "PidsLimit": null, "Ulimits": null, "CpuCount": 0,
                "CpuPercent": 0, "IOMaximumIOps": 0, "IOMaximumBandwidth": 0,
                "MaskedPaths": null, "ReadonlyPaths": null
            },
            "NetworkingConfig": {"EndpointsConfig": {}}
        }"#,
        )
        .unwrap();
        let o = create_options(&body, None).unwrap();
        assert_eq!(o.resources, Resources::default());
        assert!(o.log_driver.is_none() && o.masked_paths.is_none());
    }
}
