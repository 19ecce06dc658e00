//! libengine: the engine behind a C ABI. Handles are opaque; requests and results are JSON in
//! the Docker Engine API's shapes; streams come through callbacks. Each function converts its
//! arguments, calls [`ketch::api::Api`] (a local engine or a daemon) and converts the result:
//! no engine logic lives here. Every entry point runs inside a panic boundary and checks its
//! pointers.

#![allow(non_camel_case_types)]
// The functions take raw pointers by design and check each one.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use ketch::ErrorKind;
use ketch::api::{Api, LogOptions};
use serde_json::Value;

/// What a call came to. The numbers are fixed: new codes get new numbers, retired ones stay
/// reserved.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum engine_status {
    ENGINE_OK = 0,
    // The engine's kinds of failure.
    ENGINE_NOT_FOUND = 1,
    ENGINE_ALREADY_EXISTS = 2,
    ENGINE_INVALID_ARGUMENT = 3,
    ENGINE_CONFLICT = 4,
    ENGINE_FAILED_PRECONDITION = 5,
    ENGINE_PERMISSION_DENIED = 6,
    ENGINE_UNAVAILABLE = 7,
    ENGINE_INTERNAL = 8,
    // The call itself was wrong.
    /// A required pointer was NULL.
    ENGINE_NULL_ARGUMENT = 100,
    /// A string was not UTF-8, or a JSON body did not parse.
    ENGINE_BAD_ENCODING = 101,
    /// The library panicked; the handle may be in any state and is best closed.
    ENGINE_PANIC = 102,
}

impl From<ErrorKind> for engine_status {
    fn from(k: ErrorKind) -> engine_status {
        match k {
            ErrorKind::NotFound => engine_status::ENGINE_NOT_FOUND,
            ErrorKind::AlreadyExists => engine_status::ENGINE_ALREADY_EXISTS,
            ErrorKind::InvalidArgument => engine_status::ENGINE_INVALID_ARGUMENT,
            ErrorKind::Conflict => engine_status::ENGINE_CONFLICT,
            ErrorKind::FailedPrecondition => engine_status::ENGINE_FAILED_PRECONDITION,
            ErrorKind::PermissionDenied => engine_status::ENGINE_PERMISSION_DENIED,
            ErrorKind::Unavailable => engine_status::ENGINE_UNAVAILABLE,
            ErrorKind::Internal => engine_status::ENGINE_INTERNAL,
        }
    }
}

/// Which stream a log record is from.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum engine_stream {
    ENGINE_STDOUT = 1,
    ENGINE_STDERR = 2,
}

/// An engine: a state root opened in this process, or a daemon. Opaque.
pub struct engine {
    api: Box<dyn Api>,
}

/// Called with each log record: the caller's `userdata`, the stream, the record's time
/// (RFC 3339, NUL-terminated), its bytes and their length. Return 0 to go on, anything else
/// to stop. Called on the thread that called `engine_container_logs`.
pub type engine_log_callback = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        stream: engine_stream,
        time: *const c_char,
        data: *const u8,
        len: usize,
    ) -> c_int,
>;

type LogFn =
    unsafe extern "C" fn(*mut c_void, engine_stream, *const c_char, *const u8, usize) -> c_int;

/// Hands one log record to a caller's callback; whether it wants more.
fn deliver(cb: LogFn, userdata: *mut c_void, (stream, time, text): ketch::api::LogRecord) -> bool {
    let stream = if stream == "stderr" {
        engine_stream::ENGINE_STDERR
    } else {
        engine_stream::ENGINE_STDOUT
    };
    let time = CString::new(time).unwrap_or_default();
    // SAFETY: the caller's callback, with pointers valid for the call.
    unsafe { cb(userdata, stream, time.as_ptr(), text.as_ptr(), text.len()) == 0 }
}

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

fn set_error(msg: String) {
    LAST_ERROR.with(|e| *e.borrow_mut() = msg);
}

/// A failure: its status, its message kept for `engine_last_error`.
struct Fail(engine_status);

impl From<ketch::Error> for Fail {
    fn from(e: ketch::Error) -> Fail {
        set_error(e.to_string());
        Fail(e.kind().into())
    }
}

fn fail(status: engine_status, msg: impl Into<String>) -> Fail {
    set_error(msg.into());
    Fail(status)
}

type Result<T> = std::result::Result<T, Fail>;

/// Runs `f` inside the panic boundary; its failure becomes a status.
fn guard(f: impl FnOnce() -> Result<()>) -> engine_status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => engine_status::ENGINE_OK,
        Ok(Err(Fail(s))) => s,
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".into());
            set_error(format!("libengine panicked: {msg}"));
            engine_status::ENGINE_PANIC
        }
    }
}

/// A required string argument.
fn text<'a>(p: *const c_char, what: &str) -> Result<&'a str> {
    if p.is_null() {
        return Err(fail(
            engine_status::ENGINE_NULL_ARGUMENT,
            format!("{what} is NULL"),
        ));
    }
    // SAFETY: the caller passes a NUL-terminated string that outlives the call.
    unsafe { CStr::from_ptr(p) }.to_str().map_err(|_| {
        fail(
            engine_status::ENGINE_BAD_ENCODING,
            format!("{what} is not UTF-8"),
        )
    })
}

/// An optional string argument (NULL: none).
fn maybe_text<'a>(p: *const c_char, what: &str) -> Result<Option<&'a str>> {
    if p.is_null() {
        Ok(None)
    } else {
        text(p, what).map(Some)
    }
}

fn json(p: *const c_char, what: &str) -> Result<Value> {
    let t = text(p, what)?;
    serde_json::from_str(t).map_err(|e| {
        fail(
            engine_status::ENGINE_BAD_ENCODING,
            format!("{what}: invalid JSON: {e}"),
        )
    })
}

fn handle<'a>(e: *const engine) -> Result<&'a dyn Api> {
    if e.is_null() {
        return Err(fail(engine_status::ENGINE_NULL_ARGUMENT, "engine is NULL"));
    }
    // SAFETY: a handle from engine_open/engine_connect not yet closed.
    Ok(unsafe { &*(*e).api })
}

/// Stores a string for the caller, who frees it with `engine_string_free`.
fn give(out: *mut *mut c_char, s: String) -> Result<()> {
    if out.is_null() {
        return Err(fail(engine_status::ENGINE_NULL_ARGUMENT, "out is NULL"));
    }
    let c = CString::new(s.replace('\0', "")).unwrap_or_default();
    // SAFETY: `out` is a valid pointer to write a pointer to.
    unsafe { *out = c.into_raw() };
    Ok(())
}

fn give_json(out: *mut *mut c_char, v: &impl serde::Serialize) -> Result<()> {
    let s = serde_json::to_string(v)
        .map_err(|e| fail(engine_status::ENGINE_INTERNAL, e.to_string()))?;
    give(out, s)
}

fn check_out<T>(out: *mut T) -> Result<()> {
    if out.is_null() {
        Err(fail(engine_status::ENGINE_NULL_ARGUMENT, "out is NULL"))
    } else {
        Ok(())
    }
}

/// The library's version, a static NUL-terminated string.
#[unsafe(no_mangle)]
pub extern "C" fn engine_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// Copies the message of the last failure on this thread into `buf` (at most `len` bytes,
/// NUL-terminated, cut short if need be) and returns its full length without the NUL. With
/// `buf` NULL or `len` 0, only the length.
#[unsafe(no_mangle)]
pub extern "C" fn engine_last_error(buf: *mut c_char, len: usize) -> usize {
    LAST_ERROR.with(|e| {
        let msg = e.borrow();
        if !buf.is_null() && len > 0 {
            let n = msg.len().min(len - 1);
            // SAFETY: `buf` has room for `len` bytes.
            unsafe {
                std::ptr::copy_nonoverlapping(msg.as_ptr(), buf.cast::<u8>(), n);
                *buf.add(n) = 0;
            }
        }
        msg.len()
    })
}

/// Frees a string the library returned. NULL is ignored.
#[unsafe(no_mangle)]
pub extern "C" fn engine_string_free(s: *mut c_char) {
    if !s.is_null() {
        // SAFETY: a string from `give`, freed once.
        drop(unsafe { CString::from_raw(s) });
    }
}

/// Opens (creating if needed) the state root `root` in this process; NULL for `KETCH_ROOT`
/// or the default (/var/lib/ketch). The other settings come from the environment as for the
/// CLI (`KETCH_BRIDGE`, `KETCH_IP_FORWARD` ...). Stores the handle in `*out`.
#[unsafe(no_mangle)]
pub extern "C" fn engine_open(root: *const c_char, out: *mut *mut engine) -> engine_status {
    guard(|| {
        check_out(out)?;
        let mut opts = ketch::Options::from_env()?;
        if let Some(r) = maybe_text(root, "root")? {
            opts.root = r.into();
        }
        let e = ketch::Engine::open(&opts)?;
        let h = Box::new(engine { api: Box::new(e) });
        // SAFETY: `out` checked above.
        unsafe { *out = Box::into_raw(h) };
        Ok(())
    })
}

/// A handle on the daemon at `url` (`unix:///path`, `tcp://host:port`). With `ca` given,
/// TCP is TLS and the daemon's certificate must be signed by it; `cert` and `key` (both or
/// neither) are this client's. Stores the handle in `*out`; nothing is dialled until a call.
#[unsafe(no_mangle)]
pub extern "C" fn engine_connect(
    url: *const c_char,
    ca: *const c_char,
    cert: *const c_char,
    key: *const c_char,
    out: *mut *mut engine,
) -> engine_status {
    guard(|| {
        check_out(out)?;
        let url = text(url, "url")?;
        let ca = maybe_text(ca, "ca")?;
        let cert = maybe_text(cert, "cert")?;
        let key = maybe_text(key, "key")?;
        let tls = ca.map(|ca| ketch::TlsFiles {
            ca: Some(ca.into()),
            cert: cert.map(Into::into),
            key: key.map(Into::into),
            verify: true,
        });
        let c = ketch::Client::new(url, tls.as_ref())?;
        let h = Box::new(engine { api: Box::new(c) });
        // SAFETY: `out` checked above.
        unsafe { *out = Box::into_raw(h) };
        Ok(())
    })
}

/// Closes a handle (NULL is ignored). Containers it started keep running.
#[unsafe(no_mangle)]
pub extern "C" fn engine_close(e: *mut engine) {
    if !e.is_null() {
        // SAFETY: a handle from engine_open/engine_connect, closed once.
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(e) })));
    }
}

/// Imports a root file system tarball (plain, gzip or zstd) at `path` as an image, tagged
/// `reference` unless NULL. Stores the image ID in `*id_out`.
#[unsafe(no_mangle)]
pub extern "C" fn engine_image_import(
    e: *const engine,
    path: *const c_char,
    reference: *const c_char,
    id_out: *mut *mut c_char,
) -> engine_status {
    guard(|| {
        let api = handle(e)?;
        let path = text(path, "path")?;
        check_out(id_out)?;
        let opts = ketch::api::ImportOptions {
            reference: maybe_text(reference, "reference")?.map(str::to_string),
            source: path.to_string(),
            ..Default::default()
        };
        let mut f = std::fs::File::open(path).map_err(|err| {
            fail(
                engine_status::ENGINE_NOT_FOUND,
                format!("open {path}: {err}"),
            )
        })?;
        give(id_out, api.image_import(&mut f, &opts)?)
    })
}

/// Called with each progress message of a pull or push: the JSON of one of Docker's
/// messages (`{"status", "id", "progressDetail"}`; NUL-terminated, valid for the call).
pub type engine_progress_callback =
    Option<unsafe extern "C" fn(userdata: *mut c_void, message_json: *const c_char)>;

/// Credentials from `auth_json` (`{"username", "password"}`, NULL: the user's stored ones).
fn auth_of(auth_json: *const c_char) -> Result<Option<ketch::api::AuthConfig>> {
    if auth_json.is_null() {
        return Ok(None);
    }
    let v = json(auth_json, "auth_json")?;
    serde_json::from_value(v).map(Some).map_err(|e| {
        fail(
            engine_status::ENGINE_INVALID_ARGUMENT,
            format!("auth_json: {e}"),
        )
    })
}

/// Tells `callback` (when not NULL) a progress message.
fn progress(
    callback: engine_progress_callback,
    userdata: *mut c_void,
) -> impl FnMut(&ketch::api::ProgressMessage) {
    move |m| {
        if let Some(cb) = callback {
            let text =
                CString::new(serde_json::to_string(m).unwrap_or_default()).unwrap_or_default();
            // SAFETY: the caller's callback, with a string valid for the call.
            unsafe { cb(userdata, text.as_ptr()) }
        }
    }
}

/// Pulls `reference` from its registry, for `platform` (`os/arch[/variant]`; NULL: the
/// host's), with the credentials in `auth_json` (NULL: the user's stored ones), telling
/// `callback` (may be NULL) each progress message. Blocks the calling thread meanwhile.
#[unsafe(no_mangle)]
pub extern "C" fn engine_image_pull(
    e: *const engine,
    reference: *const c_char,
    platform: *const c_char,
    auth_json: *const c_char,
    callback: engine_progress_callback,
    userdata: *mut c_void,
) -> engine_status {
    guard(|| {
        let api = handle(e)?;
        let opts = ketch::api::PullOptions {
            reference: text(reference, "reference")?.to_string(),
            platform: maybe_text(platform, "platform")?.map(str::to_string),
            auth: auth_of(auth_json)?,
            all_tags: false,
            insecure: false,
        };
        api.image_pull(&opts, &mut progress(callback, userdata))?;
        Ok(())
    })
}

/// Pushes `reference` to the registry its name names, with the credentials in `auth_json`
/// (NULL: the user's stored ones), telling `callback` (may be NULL) each progress message.
/// Stores the manifest's digest in `*digest_out` unless it is NULL.
#[unsafe(no_mangle)]
pub extern "C" fn engine_image_push(
    e: *const engine,
    reference: *const c_char,
    auth_json: *const c_char,
    callback: engine_progress_callback,
    userdata: *mut c_void,
    digest_out: *mut *mut c_char,
) -> engine_status {
    guard(|| {
        let api = handle(e)?;
        let opts = ketch::api::PushOptions {
            reference: text(reference, "reference")?.to_string(),
            auth: auth_of(auth_json)?,
            insecure: false,
        };
        let digest = api.image_push(&opts, &mut progress(callback, userdata))?;
        if digest_out.is_null() {
            return Ok(());
        }
        give(digest_out, digest)
    })
}

/// What `engine_image_build` takes in its `options_json`: the names of `POST /build`'s
/// parameters.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct BuildJson {
    tags: Vec<String>,
    dockerfile: Option<String>,
    buildargs: std::collections::BTreeMap<String, String>,
    target: Option<String>,
    labels: std::collections::BTreeMap<String, String>,
    nocache: bool,
    pull: bool,
    networkmode: Option<String>,
    platform: Option<String>,
    quiet: bool,
}

/// Builds an image from the Dockerfile in the directory `context`, with `options_json`
/// (NULL: none) an object of `tags` (an array), `dockerfile`, `buildargs` and `labels`
/// (objects of strings), `target`, `nocache`, `pull`, `networkmode`, `platform`, `quiet`.
/// Tells `callback` (may be NULL) Docker's build messages (`{"stream": ...}` for the steps
/// and their output, `{"aux": {"ID": ...}}`). Stores the image's ID in `*id_out` unless it
/// is NULL. A failed step fails with `ENGINE_FAILED_PRECONDITION`, its message saying the
/// line and the command's exit code. Blocks the calling thread meanwhile.
#[unsafe(no_mangle)]
pub extern "C" fn engine_image_build(
    e: *const engine,
    context: *const c_char,
    options_json: *const c_char,
    callback: engine_progress_callback,
    userdata: *mut c_void,
    id_out: *mut *mut c_char,
) -> engine_status {
    guard(|| {
        let api = handle(e)?;
        let dir = text(context, "context")?;
        let o: BuildJson = match maybe_text(options_json, "options_json")? {
            None => BuildJson::default(),
            Some(t) => serde_json::from_str(t).map_err(|e| {
                fail(
                    engine_status::ENGINE_INVALID_ARGUMENT,
                    format!("options_json: {e}"),
                )
            })?,
        };
        let opts = ketch::api::BuildOptions {
            dockerfile: o.dockerfile,
            dockerfile_text: None,
            tags: o.tags,
            build_args: o.buildargs,
            target: o.target,
            labels: o.labels,
            network: o.networkmode,
            no_cache: o.nocache,
            pull: o.pull,
            platform: o.platform,
            quiet: o.quiet,
        };
        let id = api.image_build(
            ketch::api::BuildContext::Dir(dir.into()),
            &opts,
            &mut progress(callback, userdata),
        )?;
        if id_out.is_null() {
            return Ok(());
        }
        give(id_out, id)
    })
}

/// Loads a docker-archive or OCI tarball at `path`. Stores what was loaded as a JSON array
/// of Docker's messages (`"Loaded image: busybox:latest"`) in `*json_out`.
#[unsafe(no_mangle)]
pub extern "C" fn engine_image_load(
    e: *const engine,
    path: *const c_char,
    json_out: *mut *mut c_char,
) -> engine_status {
    guard(|| {
        let api = handle(e)?;
        let path = text(path, "path")?;
        check_out(json_out)?;
        let loaded = api.image_load(ketch::api::LoadSource::Path(std::path::Path::new(path)))?;
        give_json(json_out, &loaded)
    })
}

/// `GET /images/json`: the images, as a JSON array, in `*json_out`.
#[unsafe(no_mangle)]
pub extern "C" fn engine_image_list(e: *const engine, json_out: *mut *mut c_char) -> engine_status {
    guard(|| {
        let api = handle(e)?;
        check_out(json_out)?;
        give_json(json_out, &api.image_list(&Default::default())?)
    })
}

/// `GET /images/{name}/json` in `*json_out`.
#[unsafe(no_mangle)]
pub extern "C" fn engine_image_inspect(
    e: *const engine,
    name: *const c_char,
    json_out: *mut *mut c_char,
) -> engine_status {
    guard(|| {
        let api = handle(e)?;
        let name = text(name, "name")?;
        check_out(json_out)?;
        give_json(json_out, &api.image_inspect(name)?)
    })
}

/// Tags image `source` as `target` (`repo[:tag]`).
#[unsafe(no_mangle)]
pub extern "C" fn engine_image_tag(
    e: *const engine,
    source: *const c_char,
    target: *const c_char,
) -> engine_status {
    guard(|| {
        let api = handle(e)?;
        Ok(api.image_tag(text(source, "source")?, text(target, "target")?)?)
    })
}

/// Removes an image (a tag, or by ID). Stores what was untagged and deleted, as
/// `DELETE /images/{name}` answers it, in `*json_out` unless NULL.
#[unsafe(no_mangle)]
pub extern "C" fn engine_image_remove(
    e: *const engine,
    name: *const c_char,
    force: bool,
    json_out: *mut *mut c_char,
) -> engine_status {
    guard(|| {
        let api = handle(e)?;
        let items = api.image_remove(text(name, "name")?, force)?;
        if json_out.is_null() {
            return Ok(());
        }
        give_json(json_out, &items)
    })
}

/// Creates a container from `body`, the JSON of `POST /containers/create` (`Image`, `Cmd`,
/// `HostConfig` ...), named `name` unless NULL. Stores its ID in `*id_out`.
#[unsafe(no_mangle)]
pub extern "C" fn engine_container_create(
    e: *const engine,
    body: *const c_char,
    name: *const c_char,
    id_out: *mut *mut c_char,
) -> engine_status {
    guard(|| {
        let api = handle(e)?;
        let body = json(body, "body")?;
        let name = maybe_text(name, "name")?.map(str::to_string);
        check_out(id_out)?;
        let opts = ketch::api::create::create_options(&body, name)
            .map_err(|m| fail(engine_status::ENGINE_INVALID_ARGUMENT, m))?;
        give(id_out, api.container_create(&opts)?)
    })
}

/// Starts a container; returns once its process runs.
#[unsafe(no_mangle)]
pub extern "C" fn engine_container_start(e: *const engine, id: *const c_char) -> engine_status {
    guard(|| Ok(handle(e)?.container_start(text(id, "id")?)?))
}

/// Stops a container: SIGTERM, then SIGKILL after `timeout_s` seconds.
#[unsafe(no_mangle)]
pub extern "C" fn engine_container_stop(
    e: *const engine,
    id: *const c_char,
    timeout_s: u32,
) -> engine_status {
    guard(|| {
        let t = Duration::from_secs(timeout_s.into());
        Ok(handle(e)?.container_stop(text(id, "id")?, Some(t))?)
    })
}

/// Sends `signal` to a container's main process.
#[unsafe(no_mangle)]
pub extern "C" fn engine_container_kill(
    e: *const engine,
    id: *const c_char,
    signal: c_int,
) -> engine_status {
    guard(|| Ok(handle(e)?.container_kill(text(id, "id")?, signal)?))
}

/// Waits until a container is not running; stores its exit code in `*exit_code`.
#[unsafe(no_mangle)]
pub extern "C" fn engine_container_wait(
    e: *const engine,
    id: *const c_char,
    exit_code: *mut c_int,
) -> engine_status {
    guard(|| {
        let api = handle(e)?;
        let id = text(id, "id")?;
        check_out(exit_code)?;
        let code = api.container_wait(id)?;
        // SAFETY: checked above.
        unsafe { *exit_code = code };
        Ok(())
    })
}

/// Removes a container (`force`: also a running one, killed first; `volumes`: its
/// anonymous volumes too).
#[unsafe(no_mangle)]
pub extern "C" fn engine_container_remove(
    e: *const engine,
    id: *const c_char,
    force: bool,
    volumes: bool,
) -> engine_status {
    guard(|| Ok(handle(e)?.container_remove(text(id, "id")?, force, volumes)?))
}

/// Moves a container to another engine, `dest` (a daemon, from `engine_connect`): its
/// changes, configuration and log, and with `"WithVolumes": true` the named volumes only
/// it uses. `options` is NULL or JSON: `{"Name": "...", "WithVolumes": true, "NoStart":
/// true, "Freeze": true, "Live": true}`. The container is removed here only once it is
/// whole (and runs, if it ran) at the destination; its ID there goes in `*id_out`.
#[unsafe(no_mangle)]
pub extern "C" fn engine_container_move(
    e: *const engine,
    id: *const c_char,
    dest: *const engine,
    options: *const c_char,
    id_out: *mut *mut c_char,
) -> engine_status {
    guard(|| {
        let api = handle(e)?;
        let to = handle(dest)?;
        let id = text(id, "id")?;
        let o = if options.is_null() {
            serde_json::json!({})
        } else {
            json(options, "options")?
        };
        check_out(id_out)?;
        let flag = |k: &str| o[k].as_bool().unwrap_or(false);
        let opts = ketch::api::MoveOptions {
            with_volumes: flag("WithVolumes"),
            name: o["Name"].as_str().map(str::to_string),
            no_start: flag("NoStart"),
            freeze: flag("Freeze"),
            live: flag("Live"),
        };
        let report = api.container_move(id, to, &opts, &mut |_| {})?;
        give(id_out, report.id)
    })
}

/// `GET /containers/{id}/json` in `*json_out`.
#[unsafe(no_mangle)]
pub extern "C" fn engine_container_inspect(
    e: *const engine,
    id: *const c_char,
    json_out: *mut *mut c_char,
) -> engine_status {
    guard(|| {
        let api = handle(e)?;
        let id = text(id, "id")?;
        check_out(json_out)?;
        give_json(json_out, &api.container_inspect(id)?)
    })
}

/// `GET /containers/json` (running ones only unless `all`) in `*json_out`.
#[unsafe(no_mangle)]
pub extern "C" fn engine_container_list(
    e: *const engine,
    all: bool,
    json_out: *mut *mut c_char,
) -> engine_status {
    guard(|| {
        let api = handle(e)?;
        check_out(json_out)?;
        give_json(
            json_out,
            &api.container_summaries(all, &Default::default())?,
        )
    })
}

/// Calls `callback` with each record of a container's log, in order; with `follow`, also
/// with what comes until the container stops. The callback returning non-zero ends it
/// (ENGINE_OK). Blocks the calling thread meanwhile.
#[unsafe(no_mangle)]
pub extern "C" fn engine_container_logs(
    e: *const engine,
    id: *const c_char,
    follow: bool,
    callback: engine_log_callback,
    userdata: *mut c_void,
) -> engine_status {
    guard(|| {
        let api = handle(e)?;
        let id = text(id, "id")?;
        let Some(cb) = callback else {
            return Err(fail(
                engine_status::ENGINE_NULL_ARGUMENT,
                "callback is NULL",
            ));
        };
        let opts = LogOptions {
            follow,
            ..Default::default()
        };
        api.container_logs(id, &opts, &mut |r| deliver(cb, userdata, r))?;
        Ok(())
    })
}

/// Calls `callback` with a container's output from now on (the time argument empty) until
/// it stops: this run when it runs, else the next one (start it from another thread). The
/// callback returning non-zero ends it (ENGINE_OK). Blocks the calling thread meanwhile.
#[unsafe(no_mangle)]
pub extern "C" fn engine_container_attach(
    e: *const engine,
    id: *const c_char,
    callback: engine_log_callback,
    userdata: *mut c_void,
) -> engine_status {
    guard(|| {
        let api = handle(e)?;
        let id = text(id, "id")?;
        let Some(cb) = callback else {
            return Err(fail(
                engine_status::ENGINE_NULL_ARGUMENT,
                "callback is NULL",
            ));
        };
        api.container_attach(id, &mut |r| deliver(cb, userdata, r))?;
        Ok(())
    })
}

/// Called with each event, the JSON of one `GET /events` object (NUL-terminated, valid for
/// the call). Return 0 to go on, anything else to stop.
pub type engine_event_callback =
    Option<unsafe extern "C" fn(userdata: *mut c_void, event_json: *const c_char) -> c_int>;

/// Calls `callback` with each event at or after `since` up to `until` (Unix nanoseconds; 0
/// for `since`: from now on; 0 for `until`: until the callback returns non-zero). Blocks the
/// calling thread meanwhile.
#[unsafe(no_mangle)]
pub extern "C" fn engine_events(
    e: *const engine,
    since: i64,
    until: i64,
    callback: engine_event_callback,
    userdata: *mut c_void,
) -> engine_status {
    guard(|| {
        let api = handle(e)?;
        let Some(cb) = callback else {
            return Err(fail(
                engine_status::ENGINE_NULL_ARGUMENT,
                "callback is NULL",
            ));
        };
        let since = (since != 0).then_some(since);
        let until = (until != 0).then_some(until);
        api.events(since, until, &mut |v| {
            let text = CString::new(v.to_string()).unwrap_or_default();
            // SAFETY: the caller's callback, with a string valid for the call.
            unsafe { cb(userdata, text.as_ptr()) == 0 }
        })?;
        Ok(())
    })
}

/// Creates a network from `body`, the JSON of `POST /networks/create` (`Name`, `Driver`,
/// `IPAM`, `Internal`, `Labels`). Stores its ID in `*id_out`.
#[unsafe(no_mangle)]
pub extern "C" fn engine_network_create(
    e: *const engine,
    body: *const c_char,
    id_out: *mut *mut c_char,
) -> engine_status {
    guard(|| {
        let api = handle(e)?;
        let b = json(body, "body")?;
        check_out(id_out)?;
        let opts = ketch::api::create::network_options(&b)
            .map_err(|m| fail(engine_status::ENGINE_INVALID_ARGUMENT, m))?;
        give(id_out, api.network_create(&opts)?)
    })
}

/// Removes a network.
#[unsafe(no_mangle)]
pub extern "C" fn engine_network_remove(e: *const engine, name: *const c_char) -> engine_status {
    guard(|| Ok(handle(e)?.network_remove(text(name, "name")?)?))
}

/// `GET /networks` in `*json_out`.
#[unsafe(no_mangle)]
pub extern "C" fn engine_network_list(
    e: *const engine,
    json_out: *mut *mut c_char,
) -> engine_status {
    guard(|| {
        let api = handle(e)?;
        check_out(json_out)?;
        give_json(json_out, &api.network_list()?)
    })
}

/// Creates a volume from `body`, the JSON of `POST /volumes/create` (`Name`, `Driver`,
/// `DriverOpts`, `Labels`). Stores the volume, as `GET /volumes/{name}` shows it, in
/// `*json_out`.
#[unsafe(no_mangle)]
pub extern "C" fn engine_volume_create(
    e: *const engine,
    body: *const c_char,
    json_out: *mut *mut c_char,
) -> engine_status {
    guard(|| {
        let api = handle(e)?;
        let b = json(body, "body")?;
        check_out(json_out)?;
        let opts = ketch::api::create::volume_options(&b);
        give_json(json_out, &api.volume_create(&opts)?)
    })
}

/// Removes a volume (`force`: even one a container names).
#[unsafe(no_mangle)]
pub extern "C" fn engine_volume_remove(
    e: *const engine,
    name: *const c_char,
    force: bool,
) -> engine_status {
    guard(|| Ok(handle(e)?.volume_remove(text(name, "name")?, force)?))
}

/// `GET /volumes`' `Volumes` in `*json_out`.
#[unsafe(no_mangle)]
pub extern "C" fn engine_volume_list(
    e: *const engine,
    json_out: *mut *mut c_char,
) -> engine_status {
    guard(|| {
        let api = handle(e)?;
        check_out(json_out)?;
        give_json(json_out, &api.volume_list()?)
    })
}
