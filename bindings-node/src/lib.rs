//! Node.js bindings: `new Engine({root})` (embedded) and `connect(url)` (a daemon) over core's
//! [`Api`]. Every method returns a Promise and runs the engine call on a blocking thread, so
//! the event loop never waits on the engine; results in the Docker API's shapes come back as
//! plain objects; a failure's kind is the error's `code` (`'NOT_FOUND'` ...).

use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use ketch::ErrorKind;
use ketch::api::{Api, LogOptions};
use napi::bindgen_prelude::JsObjectValue;
use napi::bindgen_prelude::{AsyncTask, Buffer, ToNapiValue, TypeName};
use napi::{Env, Error, JsValue, Result, Status, Task, ValueType};
use napi_derive::napi;
use serde_json::Value;

fn code(k: ErrorKind) -> &'static str {
    match k {
        ErrorKind::NotFound => "NOT_FOUND",
        ErrorKind::AlreadyExists => "ALREADY_EXISTS",
        ErrorKind::InvalidArgument => "INVALID_ARGUMENT",
        ErrorKind::Conflict => "CONFLICT",
        ErrorKind::FailedPrecondition => "FAILED_PRECONDITION",
        ErrorKind::PermissionDenied => "PERMISSION_DENIED",
        ErrorKind::Unavailable => "UNAVAILABLE",
        ErrorKind::Internal => "INTERNAL",
    }
}

/// A result in the Docker API's JSON shapes, handed to JavaScript as a plain object.
pub struct Json(Value);

impl TypeName for Json {
    fn type_name() -> &'static str {
        "any"
    }

    fn value_type() -> ValueType {
        ValueType::Unknown
    }
}

impl ToNapiValue for Json {
    unsafe fn to_napi_value(env: napi::sys::napi_env, val: Self) -> Result<napi::sys::napi_value> {
        // SAFETY: called by napi with a live env, as for the Value it wraps.
        unsafe { Value::to_napi_value(env, val.0) }
    }
}

fn json(v: impl serde::Serialize) -> Outcome<Json> {
    serde_json::to_value(v)
        .map(Json)
        .map_err(|e| ("INTERNAL", e.to_string()))
}

/// What a blocking call came to: its value, or the engine's error with its kind.
type Outcome<T> = std::result::Result<T, (&'static str, String)>;

fn fail(e: ketch::Error) -> (&'static str, String) {
    (code(e.kind()), e.to_string())
}

fn invalid(msg: impl Into<String>) -> (&'static str, String) {
    ("INVALID_ARGUMENT", msg.into())
}

/// One engine call on libuv's thread pool; its Promise settles with the result, or rejects
/// with an Error whose `code` is the failure's kind.
pub struct Call<T: Send + 'static> {
    work: Option<Box<dyn FnOnce() -> Outcome<T> + Send>>,
    failure: Option<(&'static str, String)>,
}

fn call<T: Send + 'static + ToNapiValue + TypeName>(
    f: impl FnOnce() -> Outcome<T> + Send + 'static,
) -> AsyncTask<Call<T>> {
    AsyncTask::new(Call {
        work: Some(Box::new(f)),
        failure: None,
    })
}

impl<T: Send + 'static + ToNapiValue + TypeName> Task for Call<T> {
    type Output = Option<T>;
    type JsValue = T;

    fn compute(&mut self) -> Result<Option<T>> {
        let work = self.work.take().expect("a task runs once");
        match work() {
            Ok(v) => Ok(Some(v)),
            Err(f) => {
                let reason = f.1.clone();
                self.failure = Some(f);
                Err(Error::from_reason(reason))
            }
        }
    }

    fn resolve(&mut self, _env: Env, output: Option<T>) -> Result<T> {
        output.ok_or_else(|| Error::from_reason("no result"))
    }

    fn reject(&mut self, env: Env, err: Error) -> Result<T> {
        let (c, reason) = self
            .failure
            .take()
            .unwrap_or(("INTERNAL", err.reason.clone()));
        // The error thrown carries the kind as its `code`.
        let mut e = env.create_error(Error::new(Status::GenericFailure, reason))?;
        e.set_named_property("code", c)?;
        Err(Error::from(e.to_unknown()))
    }
}

/// Where an engine is: a root opened lazily on the first call (off the event loop), or a
/// daemon.
enum Target {
    /// A root (default: the environment's) and a shim (default: `KETCH_SHIM`, else the one
    /// this addon carries), opened on first use.
    Root(Option<String>, Option<String>),
    Ready(Arc<dyn Api>),
}

/// The engine: a state root opened in this process, or a daemon (`connect`).
#[napi]
pub struct Engine {
    target: Arc<Mutex<Target>>,
}

#[napi(object)]
pub struct EngineOptions {
    /// The state root; default `KETCH_ROOT`, else /var/lib/ketch.
    pub root: Option<String>,
    /// The `ketch-shim` containers run under; default `KETCH_SHIM`, else the one this
    /// package carries.
    pub shim: Option<String>,
}

#[napi(object)]
pub struct TlsOptions {
    /// The CA the daemon's certificate must be signed by (TLS over TCP when given).
    pub ca: Option<String>,
    /// This client's certificate and key.
    pub cert: Option<String>,
    pub key: Option<String>,
}

/// Credentials for a registry (as `X-Registry-Auth` carries them).
#[napi(object)]
pub struct RegistryAuth {
    pub username: Option<String>,
    pub password: Option<String>,
    /// The registry; `docker.io` when none.
    pub serveraddress: Option<String>,
}

impl RegistryAuth {
    fn to_config(&self) -> ketch::api::AuthConfig {
        ketch::api::AuthConfig::basic(
            self.serveraddress.as_deref().unwrap_or(""),
            self.username.as_deref().unwrap_or(""),
            self.password.as_deref().unwrap_or(""),
        )
    }
}

#[napi(object)]
pub struct PullOptions {
    /// `os/arch[/variant]`; default the host's.
    pub platform: Option<String>,
    /// Every tag of the repository.
    pub all_tags: Option<bool>,
    /// Credentials; default the user's stored ones (`ketch login`, `docker login`).
    pub auth: Option<RegistryAuth>,
}

#[napi(object)]
pub struct BuildOptions {
    /// Names for the image (`-t`).
    pub tags: Option<Vec<String>>,
    /// The Dockerfile's path in the context; default `Dockerfile`.
    pub dockerfile: Option<String>,
    /// `--build-arg`s.
    pub build_args: Option<std::collections::HashMap<String, String>>,
    /// The stage to build; default the last.
    pub target: Option<String>,
    /// Labels the image gets.
    pub labels: Option<std::collections::HashMap<String, String>>,
    /// Run every step, none from the cache.
    pub no_cache: Option<bool>,
    /// Pull base images even when present.
    pub pull: Option<bool>,
    /// The network of RUN steps: `bridge` (default), `none`, `host` or a network's name.
    pub network: Option<String>,
    /// `os/arch` for base images pulled.
    pub platform: Option<String>,
}

#[napi(object)]
pub struct PushOptions {
    /// Credentials; default the user's stored ones (`ketch login`, `docker login`).
    pub auth: Option<RegistryAuth>,
}

#[napi(object)]
pub struct RemoveOptions {
    /// Remove a running container too (killed first).
    pub force: Option<bool>,
    /// Its anonymous volumes too.
    pub volumes: Option<bool>,
}

#[napi(object)]
pub struct MoveContainerOptions {
    /// Named volumes only this container uses go with it (shared ones are refused).
    pub with_volumes: Option<bool>,
    /// Its name at the destination.
    pub name: Option<String>,
    /// Not started at the destination, even if it ran.
    pub no_start: Option<bool>,
    /// Frozen while it is copied, stopped after.
    pub freeze: Option<bool>,
    /// With its memory (CRIU), where both hosts can.
    pub live: Option<bool>,
}

#[napi(object)]
pub struct LogRecord {
    /// `stdout` or `stderr`.
    pub stream: String,
    /// RFC 3339.
    pub time: String,
    pub data: Buffer,
}

#[napi(object)]
pub struct ExecResult {
    pub exit_code: i32,
    /// stdout and stderr as they came.
    pub output: Buffer,
}

/// The engine behind a handle, opened on first use.
fn api(target: &Mutex<Target>) -> Outcome<Arc<dyn Api>> {
    let mut t = target.lock().unwrap_or_else(|p| p.into_inner());
    if let Target::Root(root, shim) = &*t {
        let mut opts = ketch::Options::from_env().map_err(fail)?;
        if let Some(r) = root {
            opts.root = r.into();
        }
        opts.shim = shim.as_ref().map(Into::into);
        opts.embedded_shim = Some(ketch_embedded_shim::SHIM);
        let e = ketch::Engine::open(&opts).map_err(fail)?;
        *t = Target::Ready(Arc::new(e));
    }
    match &*t {
        Target::Ready(a) => Ok(a.clone()),
        Target::Root(..) => unreachable!("opened above"),
    }
}

/// A daemon at `url` (`unix:///path`, `tcp://host:port`; TLS when `tls.ca` is given).
#[napi]
pub fn connect(url: String, tls: Option<TlsOptions>) -> Result<Engine> {
    let files = tls.and_then(|t| {
        t.ca.map(|ca| ketch::TlsFiles {
            ca: Some(ca.into()),
            cert: t.cert.map(Into::into),
            key: t.key.map(Into::into),
            verify: true,
        })
    });
    let c =
        ketch::Client::new(&url, files.as_ref()).map_err(|e| Error::from_reason(e.to_string()))?;
    Ok(Engine {
        target: Arc::new(Mutex::new(Target::Ready(Arc::new(c)))),
    })
}

macro_rules! engine_call {
    ($self:ident, |$api:ident| $body:expr) => {{
        let target = $self.target.clone();
        call(move || {
            let $api = api(&target)?;
            $body
        })
    }};
}

#[napi]
impl Engine {
    #[napi(constructor)]
    pub fn new(options: Option<EngineOptions>) -> Engine {
        Engine {
            target: Arc::new(Mutex::new(match options {
                Some(o) => Target::Root(o.root, o.shim),
                None => Target::Root(None, None),
            })),
        }
    }

    /// Creates a container from `body` (`POST /containers/create`'s JSON: `Image`, `Cmd`,
    /// `HostConfig` ...); resolves to its ID.
    #[napi(
        ts_args_type = "body: object, name?: string",
        ts_return_type = "Promise<string>"
    )]
    pub fn create_container(&self, body: Value, name: Option<String>) -> AsyncTask<Call<String>> {
        engine_call!(self, |api| {
            let opts = ketch::api::create::create_options(&body, name).map_err(invalid)?;
            api.container_create(&opts).map_err(fail)
        })
    }

    #[napi(ts_return_type = "Promise<void>")]
    pub fn start(&self, id: String) -> AsyncTask<Call<()>> {
        engine_call!(self, |api| api.container_start(&id).map_err(fail))
    }

    /// The stop signal (SIGTERM unless the container names another), then SIGKILL after
    /// `timeout` seconds (default: the container's stop timeout, else 10).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn stop(&self, id: String, timeout: Option<u32>) -> AsyncTask<Call<()>> {
        let t = timeout.map(|t| Duration::from_secs(t.into()));
        engine_call!(self, |api| api.container_stop(&id, t).map_err(fail))
    }

    /// Sends a signal (`'KILL'` by default; a name or a number as a string).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn kill(&self, id: String, signal: Option<String>) -> AsyncTask<Call<()>> {
        engine_call!(self, |api| {
            let s = signal.as_deref().unwrap_or("KILL");
            let n = ketch::api::signal_number(s)
                .ok_or_else(|| invalid(format!("invalid signal {s:?}")))?;
            api.container_kill(&id, n).map_err(fail)
        })
    }

    /// Resolves to the exit code once the container is not running.
    #[napi(ts_return_type = "Promise<number>")]
    pub fn wait(&self, id: String) -> AsyncTask<Call<i32>> {
        engine_call!(self, |api| api.container_wait(&id).map_err(fail))
    }

    /// Moves a container to another engine, a daemon (`connect(...)`): its changes, its
    /// configuration, its log and, with `withVolumes`, the named volumes only it uses. It
    /// is removed here only once it is whole (and runs, if it ran) there. Resolves to its
    /// ID there.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn move_container(
        &self,
        id: String,
        destination: &Engine,
        options: Option<MoveContainerOptions>,
    ) -> AsyncTask<Call<String>> {
        let dest = destination.target.clone();
        let o = options.unwrap_or(MoveContainerOptions {
            with_volumes: None,
            name: None,
            no_start: None,
            freeze: None,
            live: None,
        });
        let opts = ketch::api::MoveOptions {
            with_volumes: o.with_volumes.unwrap_or(false),
            name: o.name,
            no_start: o.no_start.unwrap_or(false),
            freeze: o.freeze.unwrap_or(false),
            live: o.live.unwrap_or(false),
        };
        engine_call!(self, |source| {
            let dest = api(&dest)?;
            source
                .container_move(&id, dest.as_ref(), &opts, &mut |_| {})
                .map(|r| r.id)
                .map_err(fail)
        })
    }

    #[napi(ts_return_type = "Promise<void>")]
    pub fn remove(&self, id: String, options: Option<RemoveOptions>) -> AsyncTask<Call<()>> {
        let (force, volumes) = options
            .map(|o| (o.force.unwrap_or(false), o.volumes.unwrap_or(false)))
            .unwrap_or_default();
        engine_call!(self, |api| api
            .container_remove(&id, force, volumes)
            .map_err(fail))
    }

    /// `GET /containers/{id}/json`.
    #[napi(ts_return_type = "Promise<any>")]
    pub fn inspect(&self, id: String) -> AsyncTask<Call<Json>> {
        engine_call!(self, |api| json(api.container_inspect(&id).map_err(fail)?))
    }

    /// `GET /containers/json` (running ones only unless `all`).
    #[napi(ts_return_type = "Promise<any[]>")]
    pub fn list_containers(&self, all: Option<bool>) -> AsyncTask<Call<Json>> {
        engine_call!(self, |api| {
            json(
                api.container_summaries(all.unwrap_or(false), &Default::default())
                    .map_err(fail)?,
            )
        })
    }

    /// The log's records, then with `follow` what comes until the container stops: an async
    /// iterator of `{stream, time, data}`.
    #[napi]
    pub fn logs(&self, id: String, follow: Option<bool>) -> LogStream {
        let (tx, rx) = mpsc::sync_channel::<Outcome<ketch::api::LogRecord>>(64);
        let target = self.target.clone();
        std::thread::spawn(move || {
            let run = || -> Outcome<()> {
                let api = api(&target)?;
                let opts = LogOptions {
                    follow: follow.unwrap_or(false),
                    ..Default::default()
                };
                api.container_logs(&id, &opts, &mut |r| tx.send(Ok(r)).is_ok())
                    .map_err(fail)
            };
            if let Err(e) = run() {
                let _ = tx.send(Err(e));
            }
        });
        LogStream {
            rx: Arc::new(Mutex::new(rx)),
        }
    }

    /// What happens to containers, images, networks and volumes: an async iterator of
    /// `GET /events` objects at or after `since` up to `until` (Unix seconds; without
    /// `until` it follows while iterated).
    #[napi]
    pub fn events(&self, since: Option<f64>, until: Option<f64>) -> EventStream {
        let nanos = |s: f64| (s * 1e9) as i64;
        let (since, until) = (since.map(nanos), until.map(nanos));
        let (tx, rx) = mpsc::sync_channel::<Outcome<Value>>(64);
        let target = self.target.clone();
        std::thread::spawn(move || {
            let run = || -> Outcome<()> {
                let api = api(&target)?;
                api.events(since, until, &mut |v| tx.send(Ok(v)).is_ok())
                    .map_err(fail)
            };
            if let Err(e) = run() {
                let _ = tx.send(Err(e));
            }
        });
        EventStream {
            rx: Arc::new(Mutex::new(rx)),
        }
    }

    /// Runs a command in a running container to its end.
    #[napi(ts_return_type = "Promise<ExecResult>")]
    pub fn exec(&self, id: String, cmd: Vec<String>) -> AsyncTask<Call<ExecResult>> {
        engine_call!(self, |api| {
            let opts = ketch::api::ExecOptions {
                cmd,
                ..Default::default()
            };
            let (code, out) = api.container_exec_output(&id, &opts).map_err(fail)?;
            Ok(ExecResult {
                exit_code: code,
                output: out.into(),
            })
        })
    }

    /// Imports a root file system tarball as an image; resolves to its ID.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn import_image(&self, path: String, reference: Option<String>) -> AsyncTask<Call<String>> {
        engine_call!(self, |api| {
            let mut f = std::fs::File::open(&path)
                .map_err(|e| ("NOT_FOUND", format!("open {path}: {e}")))?;
            let opts = ketch::api::ImportOptions {
                reference,
                source: path.clone(),
                ..Default::default()
            };
            api.image_import(&mut f, &opts).map_err(fail)
        })
    }

    /// Loads a docker-archive or OCI tarball; resolves to Docker's messages.
    #[napi(ts_return_type = "Promise<string[]>")]
    pub fn load_image(&self, path: String) -> AsyncTask<Call<Vec<String>>> {
        engine_call!(self, |api| {
            api.image_load(ketch::api::LoadSource::Path(std::path::Path::new(&path)))
                .map_err(fail)
        })
    }

    /// Pulls an image from its registry: an async iterator of Docker's progress messages
    /// (`{status, id, progressDetail}`); a failure rejects the iteration where it ends.
    #[napi]
    pub fn pull(&self, reference: String, options: Option<PullOptions>) -> ProgressStream {
        let opts = ketch::api::PullOptions {
            reference,
            all_tags: options.as_ref().and_then(|o| o.all_tags).unwrap_or(false),
            platform: options.as_ref().and_then(|o| o.platform.clone()),
            auth: options
                .as_ref()
                .and_then(|o| o.auth.as_ref())
                .map(RegistryAuth::to_config),
            insecure: false,
        };
        self.progress(move |api, p| api.image_pull(&opts, p).map(|_| ()))
    }

    /// Pushes an image to the registry its name names: an async iterator of Docker's
    /// progress messages, the last with `aux: {Tag, Digest, Size}`.
    #[napi]
    pub fn push(&self, reference: String, options: Option<PushOptions>) -> ProgressStream {
        let opts = ketch::api::PushOptions {
            reference,
            auth: options
                .as_ref()
                .and_then(|o| o.auth.as_ref())
                .map(RegistryAuth::to_config),
            insecure: false,
        };
        self.progress(move |api, p| api.image_push(&opts, p).map(|_| ()))
    }

    /// Builds an image from the Dockerfile in the context directory `context`: an async
    /// iterator of Docker's build messages (`{stream}` for the steps and their output, then
    /// `{aux: {ID}}` with the image's ID); a failed step rejects the iteration where it
    /// ends, saying which.
    #[napi]
    pub fn build(&self, context: String, options: Option<BuildOptions>) -> ProgressStream {
        let o = options.unwrap_or(BuildOptions {
            tags: None,
            dockerfile: None,
            build_args: None,
            target: None,
            labels: None,
            no_cache: None,
            pull: None,
            network: None,
            platform: None,
        });
        let opts = ketch::api::BuildOptions {
            dockerfile: o.dockerfile,
            dockerfile_text: None,
            tags: o.tags.unwrap_or_default(),
            build_args: o.build_args.unwrap_or_default().into_iter().collect(),
            target: o.target,
            labels: o.labels.unwrap_or_default().into_iter().collect(),
            network: o.network,
            no_cache: o.no_cache.unwrap_or(false),
            pull: o.pull.unwrap_or(false),
            platform: o.platform,
            quiet: false,
        };
        self.progress(move |api, p| {
            api.image_build(ketch::api::BuildContext::Dir(context.into()), &opts, p)
                .map(|_| ())
        })
    }

    /// Checks credentials against their registry; resolves to `Login Succeeded`.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn login(&self, auth: RegistryAuth) -> AsyncTask<Call<String>> {
        let config = auth.to_config();
        engine_call!(self, |api| api.registry_login(&config).map_err(fail))
    }

    /// `GET /images/json`.
    #[napi(ts_return_type = "Promise<any[]>")]
    pub fn list_images(&self) -> AsyncTask<Call<Json>> {
        engine_call!(self, |api| {
            let images = api.image_list(&Default::default()).map_err(fail)?;
            json(images)
        })
    }

    /// `GET /images/{name}/json`.
    #[napi(ts_return_type = "Promise<any>")]
    pub fn inspect_image(&self, name: String) -> AsyncTask<Call<Json>> {
        engine_call!(self, |api| {
            let i = api.image_inspect(&name).map_err(fail)?;
            json(i)
        })
    }

    #[napi(ts_return_type = "Promise<void>")]
    pub fn tag_image(&self, source: String, target: String) -> AsyncTask<Call<()>> {
        engine_call!(self, |api| api.image_tag(&source, &target).map_err(fail))
    }

    /// Removes an image; resolves to what was untagged and deleted.
    #[napi(ts_return_type = "Promise<any[]>")]
    pub fn remove_image(&self, name: String, force: Option<bool>) -> AsyncTask<Call<Json>> {
        engine_call!(self, |api| {
            let items = api
                .image_remove(&name, force.unwrap_or(false))
                .map_err(fail)?;
            json(items)
        })
    }

    /// Creates a network from `body` (`POST /networks/create`'s JSON); resolves to its ID.
    #[napi(ts_args_type = "body: object", ts_return_type = "Promise<string>")]
    pub fn create_network(&self, body: Value) -> AsyncTask<Call<String>> {
        engine_call!(self, |api| {
            let opts = ketch::api::create::network_options(&body).map_err(invalid)?;
            api.network_create(&opts).map_err(fail)
        })
    }

    #[napi(ts_return_type = "Promise<any[]>")]
    pub fn list_networks(&self) -> AsyncTask<Call<Json>> {
        engine_call!(self, |api| {
            let nets = api.network_list().map_err(fail)?;
            json(nets)
        })
    }

    #[napi(ts_return_type = "Promise<void>")]
    pub fn remove_network(&self, name: String) -> AsyncTask<Call<()>> {
        engine_call!(self, |api| api.network_remove(&name).map_err(fail))
    }

    /// Creates a volume from `body` (`POST /volumes/create`'s JSON); resolves to it.
    #[napi(ts_args_type = "body: object", ts_return_type = "Promise<any>")]
    pub fn create_volume(&self, body: Value) -> AsyncTask<Call<Json>> {
        engine_call!(self, |api| {
            let v = api
                .volume_create(&ketch::api::create::volume_options(&body))
                .map_err(fail)?;
            json(v)
        })
    }

    #[napi(ts_return_type = "Promise<any[]>")]
    pub fn list_volumes(&self) -> AsyncTask<Call<Json>> {
        engine_call!(self, |api| {
            let vs = api.volume_list().map_err(fail)?;
            json(vs)
        })
    }

    #[napi(ts_return_type = "Promise<void>")]
    pub fn remove_volume(&self, name: String, force: Option<bool>) -> AsyncTask<Call<()>> {
        engine_call!(self, |api| {
            api.volume_remove(&name, force.unwrap_or(false))
                .map_err(fail)
        })
    }
}

/// Log records as they come (from a thread that reads them); `for await` over it.
#[napi]
pub struct LogStream {
    rx: Arc<Mutex<mpsc::Receiver<Outcome<ketch::api::LogRecord>>>>,
}

#[napi]
impl LogStream {
    /// The next record, or `null` at the end.
    #[napi(ts_return_type = "Promise<LogRecord | null>")]
    pub fn read(&self) -> AsyncTask<Call<Option<LogRecord>>> {
        let rx = self.rx.clone();
        call(
            move || match rx.lock().unwrap_or_else(|p| p.into_inner()).recv() {
                Ok(Ok((stream, time, text))) => Ok(Some(LogRecord {
                    stream,
                    time,
                    data: text.into_bytes().into(),
                })),
                Ok(Err(e)) => Err(e),
                Err(_) => Ok(None),
            },
        )
    }
}

impl Engine {
    /// Runs a pull or push on a thread of its own, its messages through a stream.
    fn progress(
        &self,
        work: impl FnOnce(&dyn Api, &mut dyn FnMut(&ketch::api::ProgressMessage)) -> ketch::Result<()>
        + Send
        + 'static,
    ) -> ProgressStream {
        let (tx, rx) = mpsc::sync_channel::<Outcome<Value>>(256);
        let target = self.target.clone();
        std::thread::spawn(move || {
            let run = || -> Outcome<()> {
                let api = api(&target)?;
                work(&*api, &mut |m| {
                    let _ = tx.send(Ok(serde_json::to_value(m).unwrap_or_default()));
                })
                .map_err(fail)
            };
            if let Err(e) = run() {
                let _ = tx.send(Err(e));
            }
        });
        ProgressStream {
            rx: Arc::new(Mutex::new(rx)),
        }
    }
}

/// A pull's or push's progress messages as they come; `for await` over it.
#[napi]
pub struct ProgressStream {
    rx: Arc<Mutex<mpsc::Receiver<Outcome<Value>>>>,
}

#[napi]
impl ProgressStream {
    /// The next message, or `null` at the end.
    #[napi(ts_return_type = "Promise<any | null>")]
    pub fn read(&self) -> AsyncTask<Call<Option<Json>>> {
        let rx = self.rx.clone();
        call(
            move || match rx.lock().unwrap_or_else(|p| p.into_inner()).recv() {
                Ok(Ok(v)) => Ok(Some(Json(v))),
                Ok(Err(e)) => Err(e),
                Err(_) => Ok(None),
            },
        )
    }
}

/// Events as they come (from a thread that reads them); `for await` over it.
#[napi]
pub struct EventStream {
    rx: Arc<Mutex<mpsc::Receiver<Outcome<Value>>>>,
}

#[napi]
impl EventStream {
    /// The next event, or `null` at the end.
    #[napi(ts_return_type = "Promise<any | null>")]
    pub fn read(&self) -> AsyncTask<Call<Option<Json>>> {
        let rx = self.rx.clone();
        call(
            move || match rx.lock().unwrap_or_else(|p| p.into_inner()).recv() {
                Ok(Ok(v)) => Ok(Some(Json(v))),
                Ok(Err(e)) => Err(e),
                Err(_) => Ok(None),
            },
        )
    }
}
