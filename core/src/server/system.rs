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
    Ok(json!({
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
        "OperatingSystem": "linux",
        "OSType": "linux",
        "Architecture": uname.machine().to_string_lossy(),
        "KernelVersion": uname.release().to_string_lossy(),
        "Name": uname.nodename().to_string_lossy(),
        "ServerVersion": env!("CARGO_PKG_VERSION"),
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": if v2 { "2" } else { "1" },
        "LoggingDriver": "json-file",
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null"], "Log": ["json-file"]},
        "SecurityOptions": ["name=seccomp,profile=builtin"],
        "Runtimes": {"ketch": {"path": "ketch-shim"}},
        "DefaultRuntime": "ketch",
        "Warnings": [],
    }))
}
