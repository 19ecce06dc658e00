//! Python bindings, in docker-py's shape: `ketch.Engine(root=...)` (embedded) and
//! `ketch.connect(url)` (a daemon) over core's [`Api`]. Each method converts its arguments,
//! calls the engine with the GIL released, and converts the result; results in the Docker
//! API's shapes become plain dicts. The engine's error kinds become exception classes.

use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use ketch::ErrorKind;
use ketch::api::{Api, CreateOptions, ExecOptions, LogOptions};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyStopIteration, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use serde_json::Value;

create_exception!(
    ketch,
    EngineError,
    PyException,
    "A failure of the engine; its subclass names the kind."
);
create_exception!(
    ketch,
    NotFound,
    EngineError,
    "No such container, image, network or volume."
);
create_exception!(ketch, AlreadyExists, EngineError, "The name is taken.");
create_exception!(
    ketch,
    InvalidArgument,
    EngineError,
    "A request the engine refuses as malformed."
);
create_exception!(
    ketch,
    Conflict,
    EngineError,
    "The object's state does not allow it."
);
create_exception!(
    ketch,
    FailedPrecondition,
    EngineError,
    "Something else must happen first."
);
create_exception!(ketch, PermissionDenied, EngineError, "Not allowed.");
create_exception!(
    ketch,
    Unavailable,
    EngineError,
    "The engine or daemon cannot be reached."
);
create_exception!(ketch, InternalError, EngineError, "The engine failed.");
create_exception!(
    ketch,
    ContainerError,
    EngineError,
    "`containers.run` ran a container that exited non-zero: exit_status, stderr."
);

fn to_err(e: ketch::Error) -> PyErr {
    let m = e.to_string();
    match e.kind() {
        ErrorKind::NotFound => NotFound::new_err(m),
        ErrorKind::AlreadyExists => AlreadyExists::new_err(m),
        ErrorKind::InvalidArgument => InvalidArgument::new_err(m),
        ErrorKind::Conflict => Conflict::new_err(m),
        ErrorKind::FailedPrecondition => FailedPrecondition::new_err(m),
        ErrorKind::PermissionDenied => PermissionDenied::new_err(m),
        ErrorKind::Unavailable => Unavailable::new_err(m),
        ErrorKind::Internal => InternalError::new_err(m),
    }
}

type Shared = Arc<dyn Api>;

/// Runs an engine call with the GIL released.
fn blocking<T: Send>(py: Python<'_>, f: impl FnOnce() -> ketch::Result<T> + Send) -> PyResult<T> {
    py.detach(f).map_err(to_err)
}

/// A JSON value as Python's `json` module would give it.
fn to_py(py: Python<'_>, v: &impl serde::Serialize) -> PyResult<Py<PyAny>> {
    let text = serde_json::to_string(v).map_err(|e| InternalError::new_err(e.to_string()))?;
    Ok(py.import("json")?.call_method1("loads", (text,))?.unbind())
}

/// A Python value (dicts, lists, strings, numbers) as JSON.
fn from_py(v: &Bound<'_, PyAny>) -> PyResult<Value> {
    let text: String = v
        .py()
        .import("json")?
        .call_method1("dumps", (v,))?
        .extract()?;
    serde_json::from_str(&text).map_err(|e| InvalidArgument::new_err(e.to_string()))
}

/// A string, or a list of strings (a string is split as a shell would, as docker-py does).
fn words(v: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    if v.is_instance_of::<PyString>() {
        return v
            .py()
            .import("shlex")?
            .call_method1("split", (v,))?
            .extract();
    }
    v.extract()
}

/// `{"K": "v"}` or `["K=v"]` as `K=v` strings.
fn pairs(v: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    if let Ok(d) = v.cast::<PyDict>() {
        let mut out = Vec::new();
        for (k, val) in d.iter() {
            out.push(format!("{}={}", k.str()?, val.str()?));
        }
        return Ok(out);
    }
    v.extract()
}

/// What `containers.run` and `containers.create` take besides the image and command, in
/// docker-py's names.
fn create_options(
    image: &str,
    command: Option<&Bound<'_, PyAny>>,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<CreateOptions> {
    let mut o = CreateOptions {
        image: image.to_string(),
        cmd: command.map(words).transpose()?.unwrap_or_default(),
        ..Default::default()
    };
    let Some(kw) = kwargs else { return Ok(o) };
    for (k, v) in kw.iter() {
        let key: String = k.extract()?;
        if v.is_none() {
            continue;
        }
        match key.as_str() {
            "name" => o.name = Some(v.extract()?),
            "environment" => o.env = pairs(&v)?,
            "entrypoint" => o.entrypoint = Some(words(&v)?),
            "working_dir" => o.workdir = Some(v.extract()?),
            "user" => o.user = Some(v.str()?.to_string()),
            "hostname" => o.hostname = Some(v.extract()?),
            "labels" => {
                o.labels = pairs(&v)?
                    .into_iter()
                    .map(|l| match l.split_once('=') {
                        Some((a, b)) => (a.to_string(), b.to_string()),
                        None => (l, String::new()),
                    })
                    .collect()
            }
            "network" | "network_mode" => o.network = Some(v.extract()?),
            "tty" => o.tty = v.extract()?,
            "stdin_open" => o.open_stdin = v.extract()?,
            "privileged" => o.privileged = v.extract()?,
            "read_only" => o.read_only = v.extract()?,
            "init" => o.init = v.extract()?,
            "auto_remove" => o.auto_remove = v.extract()?,
            "cap_add" => o.cap_add = v.extract()?,
            "cap_drop" => o.cap_drop = v.extract()?,
            "devices" => {
                let specs: Vec<String> = v.extract()?;
                o.devices = specs
                    .iter()
                    .map(|d| ketch::api::DeviceMapping::parse(d))
                    .collect::<Result<_, _>>()
                    .map_err(InvalidArgument::new_err)?;
            }
            "device_cgroup_rules" => o.device_cgroup_rules = v.extract()?,
            "dns" => o.dns = v.extract()?,
            "mem_limit" => {
                o.resources.memory = Some(match v.extract::<u64>() {
                    Ok(n) => n,
                    Err(_) => ketch::api::parse_bytes(&v.extract::<String>()?)
                        .map_err(InvalidArgument::new_err)?,
                })
            }
            "volumes" => {
                let specs: Vec<String> = if let Ok(d) = v.cast::<PyDict>() {
                    let mut out = Vec::new();
                    for (src, bind) in d.iter() {
                        let (dst, mode): (String, String) = match bind.cast::<PyDict>() {
                            Ok(b) => (
                                b.get_item("bind")?
                                    .ok_or_else(|| {
                                        InvalidArgument::new_err("a volume needs 'bind'")
                                    })?
                                    .extract()?,
                                match b.get_item("mode")? {
                                    Some(m) => m.extract()?,
                                    None => "rw".into(),
                                },
                            ),
                            Err(_) => (bind.extract()?, "rw".into()),
                        };
                        out.push(format!("{}:{dst}:{mode}", src.str()?));
                    }
                    out
                } else {
                    v.extract()?
                };
                for s in specs {
                    o.mounts.push(
                        ketch::api::parse_volume(&s)
                            .map_err(|e| InvalidArgument::new_err(format!("volume {s:?}: {e}")))?,
                    );
                }
            }
            "ports" => {
                let d = v
                    .cast::<PyDict>()
                    .map_err(|_| PyTypeError::new_err("ports is a dict: {'80/tcp': 8080, ...}"))?;
                let mut bindings = serde_json::Map::new();
                for (port, host) in d.iter() {
                    let key = port.str()?.to_string();
                    let key = if key.contains('/') {
                        key
                    } else {
                        format!("{key}/tcp")
                    };
                    let one = |h: &Bound<'_, PyAny>| -> PyResult<Value> {
                        if h.is_none() {
                            return Ok(serde_json::json!({}));
                        }
                        if let Ok(t) = h.cast::<PyTuple>() {
                            let ip: String = t.get_item(0)?.extract()?;
                            let p = t.get_item(1)?.str()?.to_string();
                            return Ok(serde_json::json!({"HostIp": ip, "HostPort": p}));
                        }
                        Ok(serde_json::json!({"HostPort": h.str()?.to_string()}))
                    };
                    let list = match host.cast::<PyList>() {
                        Ok(l) => l.iter().map(|h| one(&h)).collect::<PyResult<Vec<_>>>()?,
                        Err(_) => vec![one(&host)?],
                    };
                    bindings.insert(key, Value::Array(list));
                }
                let body = serde_json::json!({
                    "Image": image,
                    "HostConfig": {"PortBindings": bindings},
                });
                o.publish = ketch::api::create::create_options(&body, None)
                    .map_err(InvalidArgument::new_err)?
                    .publish;
            }
            other => {
                return Err(PyTypeError::new_err(format!(
                    "unexpected keyword argument {other:?}"
                )));
            }
        }
    }
    Ok(o)
}

/// The engine: a state root opened in this process, or a daemon (`ketch.connect`).
#[pyclass(frozen, module = "ketch")]
struct Engine {
    api: Shared,
    /// Credentials `login` checked, by registry, for this engine's pulls and pushes.
    auths: Auths,
}

/// Credentials by registry key (`config_key`), shared by an engine and its collections.
type Auths = Arc<Mutex<std::collections::HashMap<String, ketch::api::AuthConfig>>>;

#[pymethods]
impl Engine {
    /// Opens (creating if needed) a state root: `root`, else `KETCH_ROOT`, else
    /// /var/lib/ketch; the other settings from the environment, as the CLI reads them.
    /// Containers run under `shim`, else `KETCH_SHIM`, else the `ketch-shim` this package
    /// carries.
    #[new]
    #[pyo3(signature = (root=None, *, shim=None))]
    fn new(
        py: Python<'_>,
        root: Option<std::path::PathBuf>,
        shim: Option<std::path::PathBuf>,
    ) -> PyResult<Engine> {
        let mut opts = ketch::Options::from_env().map_err(to_err)?;
        if let Some(r) = root {
            opts.root = r;
        }
        opts.shim = shim;
        opts.embedded_shim = Some(ketch_embedded_shim::SHIM);
        let e = blocking(py, || ketch::Engine::open(&opts))?;
        Ok(Engine {
            api: Arc::new(e),
            auths: Auths::default(),
        })
    }

    #[getter]
    fn containers(&self) -> Containers {
        Containers {
            api: self.api.clone(),
        }
    }

    #[getter]
    fn images(&self) -> Images {
        Images {
            api: self.api.clone(),
            auths: self.auths.clone(),
        }
    }

    /// Checks credentials against a registry (`docker.io` when none is given) and keeps
    /// them for this engine's pulls and pushes, as docker-py's `login`; the user's stored
    /// credentials (`ketch login`) are used where none were given.
    #[pyo3(signature = (username, password=None, registry=None))]
    fn login(
        &self,
        py: Python<'_>,
        username: &str,
        password: Option<&str>,
        registry: Option<&str>,
    ) -> PyResult<Py<PyAny>> {
        let server = registry.unwrap_or("docker.io");
        let auth = ketch::api::AuthConfig::basic(server, username, password.unwrap_or(""));
        let status = blocking(py, || self.api.registry_login(&auth))?;
        self.auths
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(ketch::api::config_key(server), auth);
        to_py(py, &serde_json::json!({"Status": status}))
    }

    #[getter]
    fn networks(&self) -> Networks {
        Networks {
            api: self.api.clone(),
        }
    }

    #[getter]
    fn volumes(&self) -> Volumes {
        Volumes {
            api: self.api.clone(),
        }
    }

    /// What happens to containers, images, networks and volumes: an iterator of events
    /// (dicts with `decode=True`, else JSON bytes) at or after `since` up to `until`
    /// (datetimes or Unix seconds; without `until` it follows until dropped).
    #[pyo3(signature = (since=None, until=None, decode=false))]
    fn events(
        &self,
        since: Option<&Bound<'_, PyAny>>,
        until: Option<&Bound<'_, PyAny>>,
        decode: bool,
    ) -> PyResult<EventStream> {
        let since = since.map(unix_nanos).transpose()?;
        let until = until.map(unix_nanos).transpose()?;
        let (tx, rx) = mpsc::sync_channel::<Result<Value, ketch::Error>>(64);
        let api = self.api.clone();
        std::thread::spawn(move || {
            if let Err(e) = api.events(since, until, &mut |v| tx.send(Ok(v)).is_ok()) {
                let _ = tx.send(Err(e));
            }
        });
        Ok(EventStream {
            rx: Mutex::new(rx),
            decode,
        })
    }

    /// Nothing to release: each call stands alone. For docker-py's `client.close()`.
    fn close(&self) {}

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> bool {
        false
    }

    fn __repr__(&self) -> String {
        format!("<ketch.Engine {}>", self.api.describe())
    }
}

/// An engine that talks to the daemon at `url` (`unix:///path`, `tcp://host:port`); over
/// TCP with `tls_ca`, TLS verified against it, `tls_cert` and `tls_key` being the client's.
#[pyfunction]
#[pyo3(signature = (url, tls_ca=None, tls_cert=None, tls_key=None))]
fn connect(
    url: &str,
    tls_ca: Option<std::path::PathBuf>,
    tls_cert: Option<std::path::PathBuf>,
    tls_key: Option<std::path::PathBuf>,
) -> PyResult<Engine> {
    let tls = tls_ca.map(|ca| ketch::TlsFiles {
        ca: Some(ca),
        cert: tls_cert,
        key: tls_key,
        verify: true,
    });
    let c = ketch::Client::new(url, tls.as_ref()).map_err(to_err)?;
    Ok(Engine {
        api: Arc::new(c),
        auths: Auths::default(),
    })
}

/// `engine.containers`.
#[pyclass(frozen, module = "ketch")]
struct Containers {
    api: Shared,
}

#[pymethods]
impl Containers {
    /// Runs a container. Detached, returns the `Container`; else waits for it and returns
    /// its output (stdout, and stderr with `stderr=True`), raising `ContainerError` when it
    /// exits non-zero; `remove=True` removes it afterwards.
    #[pyo3(signature = (image, command=None, *, detach=false, remove=false, stdout=true, stderr=false, **kwargs))]
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        py: Python<'_>,
        image: &str,
        command: Option<&Bound<'_, PyAny>>,
        detach: bool,
        remove: bool,
        stdout: bool,
        stderr: bool,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let mut opts = create_options(image, command, kwargs)?;
        if detach {
            opts.auto_remove |= remove;
        }
        let api = self.api.clone();
        let id = blocking(py, || api.container_create(&opts))?;
        if let Err(e) = blocking(py, || api.container_start(&id)) {
            let _ = blocking(py, || api.container_remove(&id, true, false));
            return Err(e);
        }
        if detach {
            return Ok(Container::load(py, &api, &id)?
                .into_pyobject(py)?
                .into_any()
                .unbind());
        }
        let (code, out, err) = blocking(py, || {
            let code = api.container_wait(&id)?;
            let (mut out, mut err) = (Vec::new(), Vec::new());
            api.container_logs(&id, &LogOptions::default(), &mut |(stream, _, text)| {
                match stream.as_str() {
                    "stderr" => err.extend_from_slice(text.as_bytes()),
                    _ => out.extend_from_slice(text.as_bytes()),
                }
                true
            })?;
            if remove {
                api.container_remove(&id, true, false)?;
            }
            Ok((code, out, err))
        })?;
        if code != 0 {
            let msg = format!(
                "Command {:?} in image {image:?} returned non-zero exit status {code}: {}",
                opts.cmd,
                String::from_utf8_lossy(&err).trim_end()
            );
            let e = ContainerError::new_err(msg);
            let v = e.value(py);
            v.setattr("exit_status", code)?;
            v.setattr("stderr", PyBytes::new(py, &err))?;
            v.setattr("image", image)?;
            return Err(e);
        }
        let mut bytes = Vec::new();
        if stdout {
            bytes.extend_from_slice(&out);
        }
        if stderr {
            bytes.extend_from_slice(&err);
        }
        Ok(PyBytes::new(py, &bytes).into_any().unbind())
    }

    /// Creates a container (not started); the same keywords as `run`.
    #[pyo3(signature = (image, command=None, **kwargs))]
    fn create(
        &self,
        py: Python<'_>,
        image: &str,
        command: Option<&Bound<'_, PyAny>>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Container> {
        let opts = create_options(image, command, kwargs)?;
        let api = self.api.clone();
        let id = blocking(py, || api.container_create(&opts))?;
        Container::load(py, &api, &id)
    }

    /// A container by ID, name or ID prefix.
    fn get(&self, py: Python<'_>, container_id: &str) -> PyResult<Container> {
        Container::load(py, &self.api, container_id)
    }

    /// The containers (running ones unless `all`).
    #[pyo3(signature = (all=false))]
    fn list(&self, py: Python<'_>, all: bool) -> PyResult<Vec<Container>> {
        let api = self.api.clone();
        let ids: Vec<String> = blocking(py, || api.container_summaries(all, &Default::default()))?
            .iter()
            .filter_map(|c| c["Id"].as_str().map(str::to_string))
            .collect();
        ids.iter().map(|id| Container::load(py, &api, id)).collect()
    }

    /// Removes stopped containers: `{"ContainersDeleted": [...], "SpaceReclaimed": 0}`.
    fn prune(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let api = self.api.clone();
        let ids = blocking(py, || api.container_prune())?;
        to_py(
            py,
            &serde_json::json!({"ContainersDeleted": ids, "SpaceReclaimed": 0}),
        )
    }
}

/// A container, as `GET /containers/{id}/json` showed it when loaded (`attrs`; `reload()`
/// refreshes it).
#[pyclass(frozen, module = "ketch")]
struct Container {
    api: Shared,
    #[pyo3(get)]
    id: String,
    attrs: Mutex<Value>,
}

impl Container {
    fn load(py: Python<'_>, api: &Shared, name: &str) -> PyResult<Container> {
        let a = api.clone();
        let attrs = blocking(py, || a.container_inspect(name))?;
        Ok(Container {
            api: api.clone(),
            id: attrs["Id"].as_str().unwrap_or(name).to_string(),
            attrs: Mutex::new(attrs),
        })
    }

    fn attr(&self, f: impl FnOnce(&Value) -> Value) -> Value {
        f(&self.attrs.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

#[pymethods]
impl Container {
    #[getter]
    fn attrs(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        to_py(py, &self.attr(Value::clone))
    }

    #[getter]
    fn short_id(&self) -> String {
        self.id.chars().take(12).collect()
    }

    #[getter]
    fn name(&self) -> String {
        self.attr(|a| a["Name"].clone())
            .as_str()
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string()
    }

    /// `created`, `running`, `paused`, `exited` ... as of the last load.
    #[getter]
    fn status(&self) -> String {
        self.attr(|a| a["State"]["Status"].clone())
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    #[getter]
    fn labels(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        to_py(py, &self.attr(|a| a["Config"]["Labels"].clone()))
    }

    fn reload(&self, py: Python<'_>) -> PyResult<()> {
        let api = self.api.clone();
        let fresh = blocking(py, || api.container_inspect(&self.id))?;
        *self.attrs.lock().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    fn start(&self, py: Python<'_>) -> PyResult<()> {
        blocking(py, || self.api.container_start(&self.id))
    }

    /// The stop signal, then SIGKILL after `timeout` seconds (default: the container's
    /// stop timeout, else 10).
    #[pyo3(signature = (timeout=None))]
    fn stop(&self, py: Python<'_>, timeout: Option<u64>) -> PyResult<()> {
        blocking(py, || {
            self.api
                .container_stop(&self.id, timeout.map(Duration::from_secs))
        })
    }

    #[pyo3(signature = (timeout=None))]
    fn restart(&self, py: Python<'_>, timeout: Option<u64>) -> PyResult<()> {
        blocking(py, || {
            self.api
                .container_restart(&self.id, timeout.map(Duration::from_secs))
        })
    }

    /// Sends a signal (a name such as `"TERM"`, or a number).
    #[pyo3(signature = (signal=None))]
    fn kill(&self, py: Python<'_>, signal: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let sig = match signal {
            None => libc_sigkill(),
            Some(s) => match s.extract::<i32>() {
                Ok(n) => n,
                Err(_) => {
                    let name: String = s.extract()?;
                    ketch::api::signal_number(&name).ok_or_else(|| {
                        InvalidArgument::new_err(format!("invalid signal {name:?}"))
                    })?
                }
            },
        };
        blocking(py, || self.api.container_kill(&self.id, sig))
    }

    fn pause(&self, py: Python<'_>) -> PyResult<()> {
        blocking(py, || self.api.container_pause(&self.id))
    }

    fn unpause(&self, py: Python<'_>) -> PyResult<()> {
        blocking(py, || self.api.container_unpause(&self.id))
    }

    fn rename(&self, py: Python<'_>, name: &str) -> PyResult<()> {
        blocking(py, || self.api.container_rename(&self.id, name))
    }

    /// Waits until it is not running: `{"StatusCode": code, "Error": None}`.
    fn wait(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let code = blocking(py, || self.api.container_wait(&self.id))?;
        to_py(py, &serde_json::json!({"StatusCode": code, "Error": null}))
    }

    /// Its output: bytes, or with `stream=True` an iterator of chunks that follows the
    /// container until it stops (`follow` defaults to `stream`).
    #[pyo3(signature = (stdout=true, stderr=true, stream=false, timestamps=false, tail=None, follow=None))]
    #[allow(clippy::too_many_arguments)]
    fn logs(
        &self,
        py: Python<'_>,
        stdout: bool,
        stderr: bool,
        stream: bool,
        timestamps: bool,
        tail: Option<&Bound<'_, PyAny>>,
        follow: Option<bool>,
    ) -> PyResult<Py<PyAny>> {
        let tail = match tail {
            None => None,
            Some(t) if t.extract::<String>().is_ok_and(|s| s == "all") => None,
            Some(t) => Some(t.extract::<usize>()?),
        };
        let opts = LogOptions {
            follow: follow.unwrap_or(stream),
            tail,
            ..Default::default()
        };
        let pick = move |(s, time, text): ketch::api::LogRecord| -> Option<Vec<u8>> {
            let wanted = if s == "stderr" { stderr } else { stdout };
            wanted.then(|| {
                if timestamps {
                    format!("{time} {text}").into_bytes()
                } else {
                    text.into_bytes()
                }
            })
        };
        if !stream {
            let api = self.api.clone();
            let id = self.id.clone();
            let out = blocking(py, move || {
                let mut out = Vec::new();
                api.container_logs(&id, &opts, &mut |r| {
                    if let Some(b) = pick(r) {
                        out.extend_from_slice(&b);
                    }
                    true
                })?;
                Ok(out)
            })?;
            return Ok(PyBytes::new(py, &out).into_any().unbind());
        }
        let (tx, rx) = mpsc::sync_channel::<Result<Vec<u8>, ketch::Error>>(64);
        let api = self.api.clone();
        let id = self.id.clone();
        std::thread::spawn(move || {
            let done = api.container_logs(&id, &opts, &mut |r| match pick(r) {
                Some(b) => tx.send(Ok(b)).is_ok(),
                None => true,
            });
            if let Err(e) = done {
                let _ = tx.send(Err(e));
            }
        });
        Ok(LogStream { rx: Mutex::new(rx) }
            .into_pyobject(py)?
            .into_any()
            .unbind())
    }

    /// Runs a command in it to its end: `ExecResult(exit_code, output)`.
    #[pyo3(signature = (cmd, environment=None, workdir=None, user=None))]
    fn exec_run(
        &self,
        py: Python<'_>,
        cmd: &Bound<'_, PyAny>,
        environment: Option<&Bound<'_, PyAny>>,
        workdir: Option<String>,
        user: Option<String>,
    ) -> PyResult<ExecResult> {
        let opts = ExecOptions {
            cmd: words(cmd)?,
            env: environment.map(pairs).transpose()?.unwrap_or_default(),
            workdir,
            user,
            ..Default::default()
        };
        let (code, out) = blocking(py, || self.api.container_exec_output(&self.id, &opts))?;
        Ok(ExecResult {
            exit_code: code,
            output: PyBytes::new(py, &out).unbind(),
        })
    }

    /// `GET /containers/{id}/top`: `{"Titles": [...], "Processes": [[...]]}`.
    #[pyo3(signature = (ps_args=None))]
    fn top(&self, py: Python<'_>, ps_args: Option<&Bound<'_, PyAny>>) -> PyResult<Py<PyAny>> {
        let args = ps_args.map(words).transpose()?.unwrap_or_default();
        let (titles, rows) = blocking(py, || self.api.container_top(&self.id, &args))?;
        to_py(
            py,
            &serde_json::json!({"Titles": titles, "Processes": rows}),
        )
    }

    /// Its file system's changes: `[{"Path": ..., "Kind": 0|1|2}]` (changed, added, deleted).
    fn diff(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let changes = blocking(py, || self.api.container_diff(&self.id))?;
        let v: Vec<Value> = changes
            .iter()
            .map(|c| {
                let kind = match c.kind {
                    'C' => 0,
                    'A' => 1,
                    _ => 2,
                };
                serde_json::json!({"Path": c.path, "Kind": kind})
            })
            .collect();
        to_py(py, &v)
    }

    /// A new image from its changes.
    #[pyo3(signature = (repository=None, tag=None, message=None, author=None, changes=None))]
    fn commit(
        &self,
        py: Python<'_>,
        repository: Option<String>,
        tag: Option<String>,
        message: Option<String>,
        author: Option<String>,
        changes: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Image> {
        let changes: Vec<String> = match changes {
            None => vec![],
            Some(c) if c.is_instance_of::<PyString>() => vec![c.extract()?],
            Some(c) => c.extract()?,
        };
        let opts = ketch::api::CommitOptions {
            reference: repository.map(|r| match tag {
                Some(t) => format!("{r}:{t}"),
                None => r,
            }),
            changes,
            message,
            author,
            pause: true,
        };
        let id = blocking(py, || self.api.container_commit(&self.id, &opts))?;
        Image::load(py, &self.api, &id)
    }

    #[pyo3(signature = (v=false, force=false))]
    fn remove(&self, py: Python<'_>, v: bool, force: bool) -> PyResult<()> {
        blocking(py, || self.api.container_remove(&self.id, force, v))
    }

    /// Moves it to another engine, a daemon (`ketch.connect(...)`): its changes, its
    /// configuration, its log and, with `with_volumes`, the named volumes only it uses.
    /// It is removed here only once it is whole (and runs, if it ran) there. Returns it
    /// there.
    #[pyo3(name = "move", signature = (destination, *, name=None, with_volumes=false, no_start=false, freeze=false, live=false))]
    #[allow(clippy::too_many_arguments)]
    fn move_to(
        &self,
        py: Python<'_>,
        destination: &Bound<'_, Engine>,
        name: Option<String>,
        with_volumes: bool,
        no_start: bool,
        freeze: bool,
        live: bool,
    ) -> PyResult<Container> {
        let dest = destination.get().api.clone();
        let opts = ketch::api::MoveOptions {
            with_volumes,
            name,
            no_start,
            freeze,
            live,
        };
        let report = blocking(py, || {
            self.api
                .container_move(&self.id, dest.as_ref(), &opts, &mut |_| {})
        })?;
        Container::load(py, &dest, &report.id)
    }

    fn __repr__(&self) -> String {
        format!("<Container: {}>", self.short_id())
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<Container>()
            .is_ok_and(|o| o.get().id == self.id)
    }

    fn __hash__(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.id.hash(&mut h);
        h.finish()
    }
}

fn libc_sigkill() -> i32 {
    ketch::api::signal_number("KILL").unwrap_or(9)
}

/// What `exec_run` gives: `exit_code`, `output`; unpacks as a pair, as docker-py's does.
#[pyclass(frozen, module = "ketch")]
struct ExecResult {
    #[pyo3(get)]
    exit_code: i32,
    #[pyo3(get)]
    output: Py<PyBytes>,
}

#[pymethods]
impl ExecResult {
    fn __iter__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let t = PyTuple::new(
            py,
            [
                self.exit_code.into_pyobject(py)?.into_any(),
                self.output.bind(py).clone().into_any(),
            ],
        )?;
        Ok(t.try_iter()?.into_any().unbind())
    }

    fn __len__(&self) -> usize {
        2
    }

    fn __getitem__(&self, py: Python<'_>, i: isize) -> PyResult<Py<PyAny>> {
        match i {
            0 | -2 => Ok(self.exit_code.into_pyobject(py)?.into_any().unbind()),
            1 | -1 => Ok(self.output.clone_ref(py).into_any()),
            _ => Err(pyo3::exceptions::PyIndexError::new_err(
                "ExecResult has two items",
            )),
        }
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "ExecResult(exit_code={}, output={})",
            self.exit_code,
            self.output
                .bind(py)
                .repr()
                .map(|r| r.to_string())
                .unwrap_or_default()
        )
    }
}

/// A time as docker-py takes it (a datetime, or Unix seconds) in nanoseconds.
fn unix_nanos(t: &Bound<'_, PyAny>) -> PyResult<i64> {
    let secs: f64 = if t.hasattr("timestamp")? {
        t.call_method0("timestamp")?.extract()?
    } else {
        t.extract()?
    };
    Ok((secs * 1e9) as i64)
}

/// Events as they come, from a thread that reads them.
#[pyclass(frozen, module = "ketch")]
struct EventStream {
    rx: Mutex<mpsc::Receiver<Result<Value, ketch::Error>>>,
    decode: bool,
}

#[pymethods]
impl EventStream {
    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match next_of(py, &self.rx) {
            Some(Ok(v)) if self.decode => to_py(py, &v),
            Some(Ok(v)) => Ok(PyBytes::new(py, v.to_string().as_bytes())
                .into_any()
                .unbind()),
            Some(Err(e)) => Err(to_err(e)),
            None => Err(PyStopIteration::new_err(())),
        }
    }
}

/// Log chunks as they come, from a thread that follows the log; ends with the container.
#[pyclass(frozen, module = "ketch")]
struct LogStream {
    rx: Mutex<mpsc::Receiver<Result<Vec<u8>, ketch::Error>>>,
}

#[pymethods]
impl LogStream {
    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Py<PyBytes>> {
        let next = py.detach(|| {
            self.rx
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .recv()
                .ok()
        });
        match next {
            Some(Ok(b)) => Ok(PyBytes::new(py, &b).unbind()),
            Some(Err(e)) => Err(to_err(e)),
            None => Err(PyStopIteration::new_err(())),
        }
    }
}

/// `engine.images`.
#[pyclass(frozen, module = "ketch")]
struct Images {
    api: Shared,
    auths: Auths,
}

/// `repository` with `tag` (a tag, or a digest), as docker-py joins them.
fn join_reference(repository: &str, tag: Option<&str>) -> String {
    match tag {
        Some(t) if t.starts_with("sha256:") => format!("{repository}@{t}"),
        Some(t) if !t.is_empty() => format!("{repository}:{t}"),
        _ => repository.to_string(),
    }
}

impl Images {
    /// The credentials for `reference`'s registry: those given, else what `login` kept.
    fn auth_for(
        &self,
        reference: &str,
        given: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Option<ketch::api::AuthConfig>> {
        if let Some(g) = given {
            let v = from_py(g)?;
            return serde_json::from_value(v)
                .map(Some)
                .map_err(|e| InvalidArgument::new_err(format!("auth_config: {e}")));
        }
        let r = ketch::api::Reference::parse(reference).map_err(|e| to_err(e.into()))?;
        let key = ketch::api::config_key(r.domain());
        Ok(self
            .auths
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned())
    }
}

/// Runs a pull or push on a thread of its own; its progress messages through `tx`.
fn progress_stream(
    work: impl FnOnce(&mut dyn FnMut(&ketch::api::ProgressMessage)) -> ketch::Result<()>
    + Send
    + 'static,
) -> ProgressStream {
    let (tx, rx) = mpsc::sync_channel::<Result<Value, ketch::Error>>(256);
    std::thread::spawn(move || {
        let res = work(&mut |m| {
            let _ = tx.send(Ok(serde_json::to_value(m).unwrap_or_default()));
        });
        if let Err(e) = res {
            let _ = tx.send(Err(e));
        }
    });
    ProgressStream { rx: Mutex::new(rx) }
}

/// The next item a stream's thread sent (waited for with the GIL released); `None` once
/// the thread is done.
fn next_of<T: Send>(py: Python<'_>, rx: &Mutex<mpsc::Receiver<T>>) -> Option<T> {
    py.detach(|| rx.lock().unwrap_or_else(|p| p.into_inner()).recv().ok())
}

/// Where a build's context comes from.
enum Source {
    Dir(std::path::PathBuf),
    Tar(Vec<u8>),
}

/// Progress of a pull or push, Docker's messages as dicts, as they come; a failure is
/// raised where the stream ends.
#[pyclass(frozen, module = "ketch")]
struct ProgressStream {
    rx: Mutex<mpsc::Receiver<Result<Value, ketch::Error>>>,
}

#[pymethods]
impl ProgressStream {
    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match next_of(py, &self.rx) {
            Some(Ok(v)) => to_py(py, &v),
            Some(Err(e)) => Err(to_err(e)),
            None => Err(PyStopIteration::new_err(())),
        }
    }
}

#[pymethods]
impl Images {
    #[pyo3(signature = (all=false))]
    fn list(&self, py: Python<'_>, all: bool) -> PyResult<Vec<Image>> {
        let api = self.api.clone();
        let opts = ketch::api::ListOptions {
            all,
            ..Default::default()
        };
        let ids: Vec<String> = blocking(py, || api.image_list(&opts))?
            .into_iter()
            .map(|i| i.id)
            .collect();
        ids.iter().map(|id| Image::load(py, &api, id)).collect()
    }

    fn get(&self, py: Python<'_>, name: &str) -> PyResult<Image> {
        Image::load(py, &self.api, name)
    }

    /// Pulls `repository[:tag]` (or every tag with `all_tags`) from its registry; the
    /// `Image` (a list of them with `all_tags`). With `stream=True`, an iterator of the
    /// progress messages instead (dicts, as docker-py's `decode=True` gives them).
    #[pyo3(signature = (repository, tag=None, *, all_tags=false, platform=None, auth_config=None, stream=false))]
    #[allow(clippy::too_many_arguments)]
    fn pull(
        &self,
        py: Python<'_>,
        repository: &str,
        tag: Option<&str>,
        all_tags: bool,
        platform: Option<String>,
        auth_config: Option<&Bound<'_, PyAny>>,
        stream: bool,
    ) -> PyResult<Py<PyAny>> {
        let reference = join_reference(repository, tag);
        let opts = ketch::api::PullOptions {
            auth: self.auth_for(&reference, auth_config)?,
            reference,
            all_tags,
            platform,
            insecure: false,
        };
        let api = self.api.clone();
        if stream {
            let s = progress_stream(move |p| api.image_pull(&opts, p).map(|_| ()));
            return Ok(s.into_pyobject(py)?.into_any().unbind());
        }
        let pulled = blocking(py, || api.image_pull(&opts, &mut |_| {}))?;
        let images: Vec<Image> = pulled
            .iter()
            .map(|r| Image::load(py, &api, r))
            .collect::<PyResult<_>>()?;
        if all_tags {
            return Ok(images.into_pyobject(py)?.into_any().unbind());
        }
        match images.into_iter().next() {
            Some(i) => Ok(i.into_pyobject(py)?.into_any().unbind()),
            None => Err(InternalError::new_err("the pull brought no image")),
        }
    }

    /// Builds an image from a Dockerfile, as docker-py's `images.build`: the context is a
    /// directory (`path`) or a tar (`fileobj`, bytes); returns `(image, logs)`, the logs
    /// Docker's build messages as dicts. With `stream=True`, an iterator of those messages
    /// instead, as they come. A failed build raises, its message saying the step.
    #[pyo3(signature = (path=None, tag=None, *, fileobj=None, dockerfile=None, buildargs=None, target=None, labels=None, nocache=false, pull=false, quiet=false, network_mode=None, platform=None, rm=true, stream=false))]
    #[allow(clippy::too_many_arguments)]
    fn build(
        &self,
        py: Python<'_>,
        path: Option<std::path::PathBuf>,
        tag: Option<String>,
        fileobj: Option<Vec<u8>>,
        dockerfile: Option<String>,
        buildargs: Option<std::collections::BTreeMap<String, String>>,
        target: Option<String>,
        labels: Option<std::collections::BTreeMap<String, String>>,
        nocache: bool,
        pull: bool,
        quiet: bool,
        network_mode: Option<String>,
        platform: Option<String>,
        rm: bool,
        stream: bool,
    ) -> PyResult<Py<PyAny>> {
        let _ = rm; // Build containers always go.
        let opts = ketch::api::BuildOptions {
            dockerfile,
            dockerfile_text: None,
            tags: tag.into_iter().collect(),
            build_args: buildargs.unwrap_or_default(),
            target,
            labels: labels.unwrap_or_default(),
            network: network_mode,
            no_cache: nocache,
            pull,
            platform,
            quiet,
        };
        let source = match (path, fileobj) {
            (Some(p), None) => Source::Dir(p),
            (None, Some(b)) => Source::Tar(b),
            _ => {
                return Err(pyo3::exceptions::PyTypeError::new_err(
                    "build needs one of path or fileobj",
                ));
            }
        };
        let api = self.api.clone();
        let run = move |p: &mut dyn FnMut(&ketch::api::ProgressMessage)| -> ketch::Result<String> {
            match source {
                Source::Dir(d) => api.image_build(ketch::api::BuildContext::Dir(d), &opts, p),
                Source::Tar(b) => {
                    let mut r = &b[..];
                    api.image_build(ketch::api::BuildContext::Tar(&mut r), &opts, p)
                }
            }
        };
        if stream {
            let s = progress_stream(move |p| run(p).map(|_| ()));
            return Ok(s.into_pyobject(py)?.into_any().unbind());
        }
        let mut logs = Vec::new();
        let id = blocking(py, || {
            run(&mut |m| logs.push(serde_json::to_value(m).unwrap_or_default()))
        })?;
        let image = Image::load(py, &self.api, &id)?;
        let logs = to_py(py, &Value::Array(logs))?;
        Ok((image, logs).into_pyobject(py)?.into_any().unbind())
    }

    /// Pushes `repository[:tag]` to its registry. The progress messages as JSON lines (as
    /// docker-py returns them); with `stream=True`, an iterator of them as dicts.
    #[pyo3(signature = (repository, tag=None, *, auth_config=None, stream=false))]
    fn push(
        &self,
        py: Python<'_>,
        repository: &str,
        tag: Option<&str>,
        auth_config: Option<&Bound<'_, PyAny>>,
        stream: bool,
    ) -> PyResult<Py<PyAny>> {
        let reference = join_reference(repository, tag);
        let opts = ketch::api::PushOptions {
            auth: self.auth_for(&reference, auth_config)?,
            reference,
            insecure: false,
        };
        let api = self.api.clone();
        if stream {
            let s = progress_stream(move |p| api.image_push(&opts, p).map(|_| ()));
            return Ok(s.into_pyobject(py)?.into_any().unbind());
        }
        let mut lines = String::new();
        blocking(py, || {
            api.image_push(&opts, &mut |m| {
                lines.push_str(&serde_json::to_string(m).unwrap_or_default());
                lines.push_str("\r\n");
            })
        })?;
        Ok(PyString::new(py, &lines).into_any().unbind())
    }

    /// Imports a root file system tarball (a path, or its bytes) as an image.
    #[pyo3(signature = (source, repository=None, tag=None, changes=None))]
    fn import_(
        &self,
        py: Python<'_>,
        source: &Bound<'_, PyAny>,
        repository: Option<String>,
        tag: Option<String>,
        changes: Option<Vec<String>>,
    ) -> PyResult<Image> {
        let opts = ketch::api::ImportOptions {
            reference: repository.map(|r| match tag {
                Some(t) => format!("{r}:{t}"),
                None => r,
            }),
            changes: changes.unwrap_or_default(),
            message: None,
            source: "-".into(),
        };
        let api = self.api.clone();
        let id = if let Ok(b) = source.cast::<PyBytes>() {
            let data = b.as_bytes().to_vec();
            blocking(py, || api.image_import(&mut &data[..], &opts))?
        } else {
            let path: std::path::PathBuf = source.extract()?;
            blocking(py, || {
                let mut f = std::fs::File::open(&path).map_err(|source| {
                    ketch::Error::io(format!("open {}", path.display()), source)
                })?;
                api.image_import(&mut f, &opts)
            })?
        };
        Image::load(py, &self.api, &id)
    }

    /// Loads images from a docker-archive or OCI tarball (a path, or its bytes); the
    /// messages Docker gives (`Loaded image: busybox:latest`).
    fn load(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
        let api = self.api.clone();
        if let Ok(b) = data.cast::<PyBytes>() {
            let bytes = b.as_bytes().to_vec();
            return blocking(py, || {
                api.image_load(ketch::api::LoadSource::Reader(&mut &bytes[..]))
            });
        }
        let path: std::path::PathBuf = data.extract()?;
        blocking(py, || api.image_load(ketch::api::LoadSource::Path(&path)))
    }

    /// Removes an image (a tag, or by ID).
    #[pyo3(signature = (image, force=false))]
    fn remove(&self, py: Python<'_>, image: &str, force: bool) -> PyResult<Py<PyAny>> {
        let items = blocking(py, || self.api.image_remove(image, force))?;
        to_py(py, &items)
    }

    /// Tags `image` as `repository[:tag]`.
    #[pyo3(signature = (image, repository, tag=None))]
    fn tag(
        &self,
        py: Python<'_>,
        image: &str,
        repository: &str,
        tag: Option<&str>,
    ) -> PyResult<bool> {
        let target = match tag {
            Some(t) => format!("{repository}:{t}"),
            None => repository.to_string(),
        };
        blocking(py, || self.api.image_tag(image, &target))?;
        Ok(true)
    }

    /// Removes dangling images (all unused ones with `filters={"dangling": False}`).
    #[pyo3(signature = (filters=None))]
    fn prune(&self, py: Python<'_>, filters: Option<&Bound<'_, PyDict>>) -> PyResult<Py<PyAny>> {
        let all = match filters
            .map(|f| f.get_item("dangling"))
            .transpose()?
            .flatten()
        {
            Some(d) => !d.is_truthy()?,
            None => false,
        };
        let r = blocking(py, || self.api.image_prune(all))?;
        to_py(py, &r)
    }
}

/// An image, as `GET /images/{name}/json` showed it when loaded.
#[pyclass(frozen, module = "ketch")]
struct Image {
    api: Shared,
    #[pyo3(get)]
    id: String,
    attrs: Mutex<Value>,
}

impl Image {
    fn load(py: Python<'_>, api: &Shared, name: &str) -> PyResult<Image> {
        let a = api.clone();
        let attrs = serde_json::to_value(blocking(py, || a.image_inspect(name))?)
            .map_err(|e| InternalError::new_err(e.to_string()))?;
        Ok(Image {
            api: api.clone(),
            id: attrs["Id"].as_str().unwrap_or(name).to_string(),
            attrs: Mutex::new(attrs),
        })
    }
}

#[pymethods]
impl Image {
    #[getter]
    fn attrs(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        to_py(py, &*self.attrs.lock().unwrap_or_else(|p| p.into_inner()))
    }

    #[getter]
    fn short_id(&self) -> String {
        let hex = self.id.trim_start_matches("sha256:");
        format!("sha256:{}", &hex[..hex.len().min(10)])
    }

    /// Its `repo:tag` names.
    #[getter]
    fn tags(&self) -> Vec<String> {
        self.attrs.lock().unwrap_or_else(|p| p.into_inner())["RepoTags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect()
    }

    fn reload(&self, py: Python<'_>) -> PyResult<()> {
        let fresh = Image::load(py, &self.api, &self.id)?;
        let v = fresh.attrs.into_inner().unwrap_or_else(|p| p.into_inner());
        *self.attrs.lock().unwrap_or_else(|p| p.into_inner()) = v;
        Ok(())
    }

    #[pyo3(signature = (repository, tag=None))]
    fn tag(&self, py: Python<'_>, repository: &str, tag: Option<&str>) -> PyResult<bool> {
        let target = match tag {
            Some(t) => format!("{repository}:{t}"),
            None => repository.to_string(),
        };
        blocking(py, || self.api.image_tag(&self.id, &target))?;
        Ok(true)
    }

    fn history(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let h = blocking(py, || self.api.image_history(&self.id))?;
        to_py(py, &h)
    }

    fn __repr__(&self) -> String {
        format!("<Image: '{}'>", self.tags().join("', '"))
    }
}

/// `engine.networks`.
#[pyclass(frozen, module = "ketch")]
struct Networks {
    api: Shared,
}

#[pymethods]
impl Networks {
    /// Creates a network; `ipam` in the API's shape (`{"Config": [{"Subnet": ...}]}`, an
    /// IPv4 pool and an IPv6 one at most); `enable_ipv6` gives it IPv6 (a unique local /64
    /// without an IPv6 pool); `options` are the driver's (an overlay network's
    /// `com.docker.network.driver.mtu`).
    #[pyo3(signature = (name, driver=None, internal=false, labels=None, ipam=None, enable_ipv6=false, options=None))]
    #[allow(clippy::too_many_arguments)]
    fn create(
        &self,
        py: Python<'_>,
        name: &str,
        driver: Option<String>,
        internal: bool,
        labels: Option<&Bound<'_, PyAny>>,
        ipam: Option<&Bound<'_, PyAny>>,
        enable_ipv6: bool,
        options: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Network> {
        let body = serde_json::json!({
            "Name": name,
            "Driver": driver,
            "Internal": internal,
            "EnableIPv6": enable_ipv6,
            "Labels": labels.map(from_py).transpose()?,
            "IPAM": ipam.map(from_py).transpose()?,
            "Options": options.map(from_py).transpose()?,
        });
        let opts = ketch::api::create::network_options(&body).map_err(InvalidArgument::new_err)?;
        let api = self.api.clone();
        let id = blocking(py, || api.network_create(&opts))?;
        Network::load(py, &api, &id)
    }

    fn get(&self, py: Python<'_>, network_id: &str) -> PyResult<Network> {
        Network::load(py, &self.api, network_id)
    }

    fn list(&self, py: Python<'_>) -> PyResult<Vec<Network>> {
        let nets = blocking(py, || self.api.network_list())?;
        Ok(nets
            .into_iter()
            .map(|n| Network {
                api: self.api.clone(),
                id: n.id.clone(),
                attrs: Mutex::new(serde_json::to_value(n).unwrap_or_default()),
            })
            .collect())
    }

    fn prune(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let gone = blocking(py, || self.api.network_prune())?;
        to_py(py, &serde_json::json!({"NetworksDeleted": gone}))
    }
}

/// A network, as `GET /networks/{id}` showed it when loaded.
#[pyclass(frozen, module = "ketch")]
struct Network {
    api: Shared,
    #[pyo3(get)]
    id: String,
    attrs: Mutex<Value>,
}

impl Network {
    fn load(py: Python<'_>, api: &Shared, name: &str) -> PyResult<Network> {
        let a = api.clone();
        let n = blocking(py, || a.network_inspect(name))?;
        Ok(Network {
            api: api.clone(),
            id: n.id.clone(),
            attrs: Mutex::new(serde_json::to_value(n).unwrap_or_default()),
        })
    }
}

/// A container given as a `Container` or its ID or name.
fn container_ref(c: &Bound<'_, PyAny>) -> PyResult<String> {
    match c.cast::<Container>() {
        Ok(c) => Ok(c.get().id.clone()),
        Err(_) => c.extract(),
    }
}

#[pymethods]
impl Network {
    #[getter]
    fn attrs(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        to_py(py, &*self.attrs.lock().unwrap_or_else(|p| p.into_inner()))
    }

    #[getter]
    fn name(&self) -> String {
        self.attrs.lock().unwrap_or_else(|p| p.into_inner())["Name"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    #[pyo3(signature = (container, aliases=None, ipv4_address=None, ipv6_address=None, link_local_ips=None))]
    fn connect(
        &self,
        py: Python<'_>,
        container: &Bound<'_, PyAny>,
        aliases: Option<Vec<String>>,
        ipv4_address: Option<String>,
        ipv6_address: Option<String>,
        link_local_ips: Option<Vec<String>>,
    ) -> PyResult<()> {
        let c = container_ref(container)?;
        let aliases = aliases.unwrap_or_default();
        let ep = ketch::api::NetworkAttachment {
            network: self.id.clone(),
            ip: ipv4_address,
            ip6: ipv6_address,
            link_local_ips: link_local_ips.unwrap_or_default(),
            aliases,
            ..Default::default()
        };
        blocking(py, || self.api.network_connect(&c, &ep))
    }

    #[pyo3(signature = (container, force=false))]
    fn disconnect(
        &self,
        py: Python<'_>,
        container: &Bound<'_, PyAny>,
        force: bool,
    ) -> PyResult<()> {
        let _ = force;
        let c = container_ref(container)?;
        blocking(py, || self.api.network_disconnect(&self.id, &c))
    }

    fn reload(&self, py: Python<'_>) -> PyResult<()> {
        let fresh = Network::load(py, &self.api, &self.id)?;
        let v = fresh.attrs.into_inner().unwrap_or_else(|p| p.into_inner());
        *self.attrs.lock().unwrap_or_else(|p| p.into_inner()) = v;
        Ok(())
    }

    fn remove(&self, py: Python<'_>) -> PyResult<()> {
        blocking(py, || self.api.network_remove(&self.id))
    }

    fn __repr__(&self) -> String {
        format!("<Network: {}>", &self.id[..self.id.len().min(12)])
    }
}

/// `engine.volumes`.
#[pyclass(frozen, module = "ketch")]
struct Volumes {
    api: Shared,
}

#[pymethods]
impl Volumes {
    #[pyo3(signature = (name=None, driver=None, driver_opts=None, labels=None))]
    fn create(
        &self,
        py: Python<'_>,
        name: Option<String>,
        driver: Option<String>,
        driver_opts: Option<&Bound<'_, PyAny>>,
        labels: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Volume> {
        let body = serde_json::json!({
            "Name": name,
            "Driver": driver,
            "DriverOpts": driver_opts.map(from_py).transpose()?,
            "Labels": labels.map(from_py).transpose()?,
        });
        let opts = ketch::api::create::volume_options(&body);
        let v = blocking(py, || self.api.volume_create(&opts))?;
        Ok(Volume::of(&self.api, &v))
    }

    fn get(&self, py: Python<'_>, volume_id: &str) -> PyResult<Volume> {
        let v = blocking(py, || self.api.volume_inspect(volume_id))?;
        Ok(Volume::of(&self.api, &v))
    }

    fn list(&self, py: Python<'_>) -> PyResult<Vec<Volume>> {
        let vs = blocking(py, || self.api.volume_list())?;
        Ok(vs.iter().map(|v| Volume::of(&self.api, v)).collect())
    }

    fn prune(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let (gone, space) = blocking(py, || self.api.volume_prune(false))?;
        to_py(
            py,
            &serde_json::json!({"VolumesDeleted": gone, "SpaceReclaimed": space}),
        )
    }
}

/// A volume, as `GET /volumes/{name}` showed it.
#[pyclass(frozen, module = "ketch")]
struct Volume {
    api: Shared,
    #[pyo3(get)]
    id: String,
    attrs: Value,
}

impl Volume {
    fn of(api: &Shared, v: &ketch::api::Volume) -> Volume {
        Volume {
            api: api.clone(),
            id: v.name.clone(),
            attrs: serde_json::to_value(v).unwrap_or_default(),
        }
    }
}

#[pymethods]
impl Volume {
    #[getter]
    fn name(&self) -> String {
        self.id.clone()
    }

    #[getter]
    fn attrs(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        to_py(py, &self.attrs)
    }

    #[pyo3(signature = (force=false))]
    fn remove(&self, py: Python<'_>, force: bool) -> PyResult<()> {
        blocking(py, || self.api.volume_remove(&self.id, force))
    }

    fn __repr__(&self) -> String {
        format!("<Volume: {}>", self.id)
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Engine>()?;
    m.add_class::<Containers>()?;
    m.add_class::<Container>()?;
    m.add_class::<ExecResult>()?;
    m.add_class::<LogStream>()?;
    m.add_class::<EventStream>()?;
    m.add_class::<ProgressStream>()?;
    m.add_class::<Images>()?;
    m.add_class::<Image>()?;
    m.add_class::<Networks>()?;
    m.add_class::<Network>()?;
    m.add_class::<Volumes>()?;
    m.add_class::<Volume>()?;
    m.add_function(wrap_pyfunction!(connect, m)?)?;
    for (name, class) in [
        ("EngineError", py.get_type::<EngineError>()),
        ("NotFound", py.get_type::<NotFound>()),
        ("AlreadyExists", py.get_type::<AlreadyExists>()),
        ("InvalidArgument", py.get_type::<InvalidArgument>()),
        ("Conflict", py.get_type::<Conflict>()),
        ("FailedPrecondition", py.get_type::<FailedPrecondition>()),
        ("PermissionDenied", py.get_type::<PermissionDenied>()),
        ("Unavailable", py.get_type::<Unavailable>()),
        ("InternalError", py.get_type::<InternalError>()),
        ("ContainerError", py.get_type::<ContainerError>()),
    ] {
        m.add(name, class)?;
    }
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
