//! `/_ping`, `/version`, `/info`, `/events`, `/system/df` and `/auth`.

use super::*;

/// The `system` endpoints.
pub(super) fn route(
    engine: &Engine,
    req: &Request,
    w: &mut dyn Conn,
    _body: &mut (dyn io::Read + Send),
    m: &str,
    seg: &[&str],
) -> Result<Option<Reply>> {
    let reply = match (m, seg) {
        ("GET" | "HEAD", ["_ping"]) => {
            Reply::Text(200, "text/plain; charset=utf-8", b"OK".to_vec())
        }
        ("GET", ["version"]) => Reply::Json(200, version()),
        ("GET", ["info"]) => Reply::Json(200, info(engine)?),
        ("POST", ["auth"]) => {
            let auth: crate::registry::AuthConfig = serde_json::from_slice(&req.body)
                .map_err(|e| bad(format!("invalid auth configuration: {e}")))?;
            engine.registries().login(&auth)?;
            Reply::Json(
                200,
                json!({"Status": "Login Succeeded", "IdentityToken": ""}),
            )
        }
        ("GET", ["events"]) => return events(engine, req, w).map(|()| None),
        // No plugins run here: the list is empty, and the rest is refused by name.
        ("GET", ["plugins"]) => Reply::Json(200, json!([])),
        (_, ["plugins", ..]) => {
            return Err(ApiError(
                501,
                "plugins are not supported: ketch runs its drivers built in".into(),
            ));
        }
        // As a daemon outside a swarm answers.
        (_, ["swarm", "leave"]) => {
            return Err(ApiError(503, "This node is not part of a swarm".into()));
        }
        (
            _,
            [
                "swarm" | "nodes" | "services" | "tasks" | "secrets" | "configs",
                ..,
            ],
        ) => {
            return Err(ApiError(
                503,
                "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.".into(),
            ));
        }
        ("GET", ["system", "df"]) => Reply::Json(
            200,
            serde_json::to_value(engine.system_df()?).unwrap_or_default(),
        ),
        _ => return Err(not_found(req)),
    };
    Ok(Some(reply))
}

pub(super) fn version() -> Value {
    let uname = rustix::system::uname();
    json!({
        "Platform": {"Name": "ketch"},
        "Components": [{"Name": "Engine", "Version": env!("CARGO_PKG_VERSION"),
                        "Details": {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
                                    "Os": "linux", "Arch": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
                                    "KernelVersion": uname.release().to_string_lossy(),
                                    "Experimental": "false", "GitCommit": "", "GoVersion": "", "BuildTime": ""}}],
        "Version": env!("CARGO_PKG_VERSION"),
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "",
        "Os": "linux",
        "Arch": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        "KernelVersion": uname.release().to_string_lossy(),
        "BuildTime": "",
    })
}

pub(super) fn info(engine: &Engine) -> Result<Value> {
    let containers = engine.containers().list(true)?;
    let running = containers
        .iter()
        .filter(|c| c.status == crate::runtime::Status::Running)
        .count();
    let paused = containers
        .iter()
        .filter(|c| c.status == crate::runtime::Status::Paused)
        .count();
    let images = engine
        .images()
        .list(&crate::image::ListOptions::default())?;
    let uname = rustix::system::uname();
    let mem_total = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024);
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let mut info = json!({
        "ID": engine.engine_id(),
        "Containers": containers.len(),
        "ContainersRunning": running,
        "ContainersPaused": paused,
        "ContainersStopped": containers.len() - running - paused,
        "Images": images.len(),
        "Driver": engine.storage_driver(),
        "DockerRootDir": engine.root().display().to_string(),
        "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "MemTotal": mem_total,
        "OperatingSystem": os_release("PRETTY_NAME").unwrap_or_else(|| "linux".into()),
        "OSVersion": os_release("VERSION_ID").unwrap_or_default(),
        "OSType": "linux",
        "Architecture": uname.machine().to_string_lossy(),
        "KernelVersion": uname.release().to_string_lossy(),
        "Name": uname.nodename().to_string_lossy(),
        "ServerVersion": env!("CARGO_PKG_VERSION"),
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": if v2 { "2" } else { "1" },
        "LoggingDriver": "json-file",
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null"], "Log": ["json-file", "local", "none"], "Authorization": null},
        "SecurityOptions": ["name=seccomp,profile=builtin"],
        "Runtimes": {"ketch": {"path": "ketch-shim"}},
        "DefaultRuntime": "ketch",
        "Warnings": [],
    });
    // What the CLI and clients read beyond the basics (a second map: one macro call
    // this long exceeds the recursion limit).
    let more = json!({
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": false, "Error": "", "RemoteManagers": null},
        "MemoryLimit": true,
        "SwapLimit": std::path::Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists() || v2,
        "CpuCfsPeriod": true,
        "CpuCfsQuota": true,
        "CPUShares": true,
        "CPUSet": true,
        "PidsLimit": true,
        "OomKillDisable": !v2,
        "IPv4Forwarding": std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").is_ok_and(|v| v.trim() == "1"),
        "KernelMemory": false,
        "KernelMemoryTCP": false,
        "Debug": false,
        "NFd": std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count()),
        "NGoroutines": 0,
        "SystemTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "NEventsListener": 0,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {"IndexConfigs": {}, "InsecureRegistryCIDRs": [], "Mirrors": []},
        "Labels": [],
        "ExperimentalBuild": false,
        "LiveRestoreEnabled": true,
        "Isolation": "",
        "InitBinary": "ketch-shim",
        "Containerd": null,
    });
    if let (Some(info), Value::Object(more)) = (info.as_object_mut(), more) {
        info.extend(more);
    }
    Ok(info)
}

/// A field of the host's `/etc/os-release`, as Docker's `info` shows the system.
fn os_release(key: &str) -> Option<String> {
    std::fs::read_to_string("/etc/os-release")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(|v| v.trim_matches('"').to_string())
}
