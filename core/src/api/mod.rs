//! One set of operations, two transports: [`Api`] is what a front door asks of an engine,
//! answered the same by a local engine ([`Engine`], the state root opened in this process)
//! and by a daemon ([`Client`](crate::client::Client), the Docker Engine API over a socket; its
//! implementation is in the client). The daemon serves the
//! same local engine, so a front door gives the same answers embedded and remote.

pub mod create;
pub mod moving;

use std::io::{Read, Write};
use std::time::Duration;

use serde_json::Value;

use crate::Result;
use crate::engine::Engine;
use crate::model::{
    HistoryResponseItem, ImageDeleteResponseItem, ImageInspect, ImagePruneResponse, ImageSummary,
    NetworkResource,
};
use crate::system::{DiskUsage, PruneReport};

// What a front door gives and gets through [`Api`], named here so that none imports a
// resource's module.
pub use crate::build::{BuildContext, BuildOptions};
pub use crate::image::{ImportOptions, ListOptions, LoadSource, SaveDest, SaveFormat};
pub use crate::model::{ProgressMessage, parse_bytes, parse_duration};
pub use crate::network::{NetworkAttachment, NetworkCreate};
pub use crate::reference::Reference;
pub use crate::registry::auth::config_key;
pub use crate::registry::{AuthConfig, CredentialStore, Platform, PullOptions, PushOptions};
pub use crate::runtime::{
    Change, CommitOptions, CreateOptions, DeviceMapping, ExecOptions, Healthcheck, LogRecord,
    Resources, SecurityOpts, Stats, ThrottleDevice, Ulimit, UpdateOptions, check_platform,
    check_restart, key_values, signal_number,
};
pub use crate::volume::{
    MountSpec, Volume, VolumeCreate, parse_tmpfs, parse_volume, volume_option,
};
pub use moving::{
    Destination, MoveCheck, MoveOptions, MovePlan, MoveProgress, MoveReceipt, MoveReport,
};

/// Which log records, and whether to wait for more.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub follow: bool,
    /// Only records at or after this time.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Only the last N records (of those before following).
    pub tail: Option<usize>,
}

/// The operations the front doors use, named after the Docker Engine API's.
pub trait Api: Send + Sync {
    /// Where the answers come from, for messages: a state root or a daemon's address.
    fn describe(&self) -> String;

    // Containers.
    fn container_create(&self, opts: &CreateOptions) -> Result<String>;
    fn container_start(&self, name: &str) -> Result<()>;
    /// The stop signal, then SIGKILL after `timeout` (`None`: the container's own stop
    /// timeout, else 10 s).
    fn container_stop(&self, name: &str, timeout: Option<Duration>) -> Result<()>;
    fn container_restart(&self, name: &str, timeout: Option<Duration>) -> Result<()>;
    fn container_kill(&self, name: &str, signal: i32) -> Result<()>;
    /// Waits until the container is not running; its exit code.
    fn container_wait(&self, name: &str) -> Result<i32>;
    fn container_remove(&self, name: &str, force: bool, volumes: bool) -> Result<()>;
    fn container_pause(&self, name: &str) -> Result<()>;
    fn container_unpause(&self, name: &str) -> Result<()>;
    fn container_rename(&self, name: &str, new_name: &str) -> Result<()>;
    /// Changes limits and the restart policy (`docker update`), live when it runs.
    fn container_update(&self, name: &str, update: &UpdateOptions) -> Result<()>;
    fn container_prune(&self) -> Result<Vec<String>>;
    /// `GET /containers/json` entries: running containers (all with `all`) that pass
    /// `filters` (Docker's: `id`, `name`, `label`, `status`, `exited`, `ancestor`,
    /// `network`, `volume`).
    fn container_summaries(
        &self,
        all: bool,
        filters: &crate::runtime::Filters,
    ) -> Result<Vec<Value>>;
    fn container_inspect(&self, name: &str) -> Result<Value>;
    /// Calls `each` with each record; with `follow`, until the container stops or `each`
    /// says stop (returns false).
    fn container_logs(
        &self,
        name: &str,
        opts: &LogOptions,
        each: &mut dyn FnMut(LogRecord) -> bool,
    ) -> Result<()>;
    fn container_top(
        &self,
        name: &str,
        ps_args: &[String],
    ) -> Result<(Vec<String>, Vec<Vec<String>>)>;
    /// Calls `each` with the container's output from now on (time empty) until it stops:
    /// when it runs, that run; else the next one. `each` returning false ends it.
    fn container_attach(&self, name: &str, each: &mut dyn FnMut(LogRecord) -> bool) -> Result<()>;
    /// Runs a command in a running container to its end: its exit code and its output
    /// (stdout and stderr as they came). No stdin, no terminal.
    fn container_exec_output(&self, name: &str, opts: &ExecOptions) -> Result<(i32, Vec<u8>)>;
    fn container_stats(&self, name: &str) -> Result<Stats>;
    /// The new image's ID.
    fn container_commit(&self, name: &str, opts: &CommitOptions) -> Result<String>;
    fn container_diff(&self, name: &str) -> Result<Vec<Change>>;
    fn container_export(&self, name: &str, out: &mut dyn Write) -> Result<()>;
    /// A tar of `path` in the container.
    fn container_copy_out(&self, name: &str, path: &str, out: &mut dyn Write) -> Result<()>;
    /// Unpacks a tar at `path` in the container.
    fn container_copy_in(&self, name: &str, path: &str, tar: &mut (dyn Read + Send)) -> Result<()>;
    /// `container move`: the container taken to another engine, `dest`, and removed here
    /// only once it is whole (and runs, if it ran) there ([`moving`]).
    fn container_move(
        &self,
        name: &str,
        dest: &dyn Api,
        opts: &MoveOptions,
        progress: &mut dyn FnMut(&MoveProgress),
    ) -> Result<MoveReport>;
    /// A move's destination: whether it takes the container `plan` describes, and the
    /// blobs it lacks.
    fn container_move_check(&self, plan: &MovePlan) -> Result<MoveCheck>;
    /// A move's destination: the move stream, made into a container (stopped), whole or
    /// not at all.
    fn container_move_in(&self, stream: &mut (dyn Read + Send)) -> Result<MoveReceipt>;
    /// A move's destination: whether a live move can end here (CRIU works).
    fn container_move_live_check(&self) -> Result<()>;
    /// Where this engine is for a mover in another process (a daemon asked to move a
    /// container here); `None` for an engine embedded in this one.
    fn destination(&self) -> Result<Option<Destination>> {
        Ok(None)
    }

    // Images.
    fn image_list(&self, opts: &ListOptions) -> Result<Vec<ImageSummary>>;
    fn image_inspect(&self, name: &str) -> Result<ImageInspect>;
    fn image_tag(&self, source: &str, target: &str) -> Result<()>;
    fn image_history(&self, name: &str) -> Result<Vec<HistoryResponseItem>>;
    fn image_remove(&self, name: &str, force: bool) -> Result<Vec<ImageDeleteResponseItem>>;
    fn image_prune(&self, all: bool) -> Result<ImagePruneResponse>;
    /// The new image's ID.
    fn image_import(&self, tar: &mut (dyn Read + Send), opts: &ImportOptions) -> Result<String>;
    /// What was loaded, as Docker says it: `Loaded image: NAME:TAG`, `Loaded image ID: ID`.
    fn image_load(&self, src: LoadSource<'_>) -> Result<Vec<String>>;
    fn image_save(&self, names: &[String], format: SaveFormat, dest: SaveDest<'_>) -> Result<()>;
    /// Pulls an image from its registry (every tag with `all_tags`), telling `progress` as
    /// `docker pull` draws it. With no `auth`, the user's stored credentials for the
    /// registry, if any. The references pulled (`busybox:latest`).
    fn image_pull(
        &self,
        opts: &PullOptions,
        progress: &mut dyn FnMut(&ProgressMessage),
    ) -> Result<Vec<String>>;
    /// Pushes an image to the registry its name names; the manifest's digest.
    fn image_push(
        &self,
        opts: &PushOptions,
        progress: &mut dyn FnMut(&ProgressMessage),
    ) -> Result<String>;
    /// Checks credentials against their registry (`serveraddress`, `docker.io` when
    /// empty): `Login Succeeded`, or why not. Storing them is the front door's part.
    fn registry_login(&self, auth: &AuthConfig) -> Result<String>;
    /// Builds an image from a Dockerfile, telling `progress` Docker's build stream (the
    /// steps and their output as `stream`, the image ID as `aux`). The image's ID.
    fn image_build(
        &self,
        context: BuildContext<'_>,
        opts: &BuildOptions,
        progress: &mut dyn FnMut(&ProgressMessage),
    ) -> Result<String>;

    // Networks.
    /// The new network's ID.
    fn network_create(&self, opts: &NetworkCreate) -> Result<String>;
    fn network_list(&self) -> Result<Vec<NetworkResource>>;
    fn network_inspect(&self, name: &str) -> Result<NetworkResource>;
    fn network_remove(&self, name: &str) -> Result<()>;
    fn network_prune(&self) -> Result<Vec<String>>;
    /// Connects a container to `endpoint.network`, with the address, aliases, MAC address
    /// and driver options it gives.
    fn network_connect(&self, container: &str, endpoint: &NetworkAttachment) -> Result<()>;
    fn network_disconnect(&self, network: &str, container: &str) -> Result<()>;

    // Volumes.
    fn volume_create(&self, opts: &VolumeCreate) -> Result<Volume>;
    fn volume_list(&self) -> Result<Vec<Volume>>;
    fn volume_inspect(&self, name: &str) -> Result<Volume>;
    fn volume_remove(&self, name: &str, force: bool) -> Result<()>;
    /// The volumes removed and the bytes freed.
    fn volume_prune(&self, all: bool) -> Result<(Vec<String>, u64)>;

    // System.
    /// Calls `each` with each event (`GET /events`' objects) at or after `since` (Unix
    /// nanoseconds; `None`: from now on) up to `until` (`None`: until `each` returns false).
    fn events(
        &self,
        since: Option<i64>,
        until: Option<i64>,
        each: &mut dyn FnMut(Value) -> bool,
    ) -> Result<()>;
    fn system_df(&self) -> Result<DiskUsage>;
    fn system_prune(&self, all: bool, volumes: bool) -> Result<PruneReport>;
}

/// What `load` says of an image it brought in.
pub fn load_messages(loaded: &[crate::image::LoadedImage]) -> Vec<String> {
    loaded
        .iter()
        .flat_map(|l| {
            if l.tags.is_empty() {
                vec![format!("Loaded image ID: {}", l.id)]
            } else {
                l.tags
                    .iter()
                    .map(|t| format!("Loaded image: {t}"))
                    .collect()
            }
        })
        .collect()
}

impl Api for Engine {
    fn describe(&self) -> String {
        self.root().display().to_string()
    }

    fn container_create(&self, opts: &CreateOptions) -> Result<String> {
        Ok(self.containers().create(opts)?.record.id)
    }
    fn container_start(&self, name: &str) -> Result<()> {
        self.containers().start(name, false, false).map(|_| ())
    }
    fn container_stop(&self, name: &str, timeout: Option<Duration>) -> Result<()> {
        self.containers().stop(name, timeout)
    }
    fn container_restart(&self, name: &str, timeout: Option<Duration>) -> Result<()> {
        self.containers().stop(name, timeout)?;
        self.containers().start(name, false, false).map(|_| ())
    }
    fn container_kill(&self, name: &str, signal: i32) -> Result<()> {
        self.containers().kill(name, signal)
    }
    fn container_wait(&self, name: &str) -> Result<i32> {
        self.containers().wait(name, None)
    }
    fn container_remove(&self, name: &str, force: bool, volumes: bool) -> Result<()> {
        self.containers().remove_with(name, force, volumes)
    }
    fn container_pause(&self, name: &str) -> Result<()> {
        self.containers().pause(name)
    }
    fn container_unpause(&self, name: &str) -> Result<()> {
        self.containers().unpause(name)
    }
    fn container_update(&self, name: &str, update: &UpdateOptions) -> Result<()> {
        self.containers().update(name, update)
    }
    fn container_rename(&self, name: &str, new_name: &str) -> Result<()> {
        self.containers().rename(name, new_name)
    }
    fn container_prune(&self) -> Result<Vec<String>> {
        self.containers().prune()
    }
    fn container_summaries(
        &self,
        all: bool,
        filters: &crate::runtime::Filters,
    ) -> Result<Vec<Value>> {
        self.containers().summaries(all, filters)
    }
    fn container_inspect(&self, name: &str) -> Result<Value> {
        self.containers().inspect(name)
    }
    fn container_logs(
        &self,
        name: &str,
        opts: &LogOptions,
        each: &mut dyn FnMut(LogRecord) -> bool,
    ) -> Result<()> {
        let (mut records, offset) = self.containers().log_records(name)?;
        if let Some(c) = opts.since {
            records
                .retain(|(_, t, _)| chrono::DateTime::parse_from_rfc3339(t).is_ok_and(|t| t >= c));
        }
        if let Some(n) = opts.tail {
            let skip = records.len().saturating_sub(n);
            records.drain(..skip);
        }
        for r in records {
            if !each(r) {
                return Ok(());
            }
        }
        if opts.follow {
            follow_local(self, name, offset, &|c| !c.is_running(), each)?;
        }
        Ok(())
    }
    fn container_top(
        &self,
        name: &str,
        ps_args: &[String],
    ) -> Result<(Vec<String>, Vec<Vec<String>>)> {
        self.containers().top(name, ps_args)
    }
    fn container_attach(&self, name: &str, each: &mut dyn FnMut(LogRecord) -> bool) -> Result<()> {
        let c = self.containers().get(name)?;
        let begun = (!c.is_running()).then(|| c.task.started_at.clone());
        let offset = std::fs::metadata(self.containers().log_path(name)?)
            .map(|m| m.len())
            .unwrap_or(0);
        let stopped = move |c: &crate::runtime::Container| {
            !c.is_running() && begun.as_ref().is_none_or(|b| c.task.started_at != *b)
        };
        follow_local(self, name, offset, &stopped, each)
    }
    fn container_exec_output(&self, name: &str, opts: &ExecOptions) -> Result<(i32, Vec<u8>)> {
        let opts = ExecOptions {
            detach: false,
            interactive: false,
            tty: false,
            ..opts.clone()
        };
        let Some(mut child) = self.containers().exec_spawn(name, &opts, true)? else {
            return Ok((0, Vec::new()));
        };
        // Both pipes into one buffer, in the order the pieces come.
        let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let readers: Vec<_> = [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        .map(|mut pipe| {
            let out = out.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 32 * 1024];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    out.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .extend_from_slice(&buf[..n]);
                }
            })
        })
        .collect();
        for r in readers {
            let _ = r.join();
        }
        let status = child
            .wait()
            .map_err(|source| crate::Error::io("wait for the exec", source))?;
        let output = std::mem::take(&mut *out.lock().unwrap_or_else(|p| p.into_inner()));
        Ok((status.code().unwrap_or(125), output))
    }
    fn container_stats(&self, name: &str) -> Result<Stats> {
        self.containers().stats(name)
    }
    fn container_commit(&self, name: &str, opts: &CommitOptions) -> Result<String> {
        Ok(self.containers().commit(name, opts)?.to_string())
    }
    fn container_diff(&self, name: &str) -> Result<Vec<Change>> {
        self.containers().diff(name)
    }
    fn container_export(&self, name: &str, out: &mut dyn Write) -> Result<()> {
        self.containers().export(name, out)
    }
    fn container_copy_out(&self, name: &str, path: &str, out: &mut dyn Write) -> Result<()> {
        self.containers().copy_out(name, path, out)
    }
    fn container_copy_in(&self, name: &str, path: &str, tar: &mut (dyn Read + Send)) -> Result<()> {
        self.containers().copy_in(name, path, tar)
    }
    fn container_move(
        &self,
        name: &str,
        dest: &dyn Api,
        opts: &MoveOptions,
        progress: &mut dyn FnMut(&MoveProgress),
    ) -> Result<MoveReport> {
        self.move_container(name, dest, opts, progress)
    }
    fn container_move_check(&self, plan: &MovePlan) -> Result<MoveCheck> {
        self.containers().move_check(plan)
    }
    fn container_move_in(&self, stream: &mut (dyn Read + Send)) -> Result<MoveReceipt> {
        self.receive_move(stream)
    }
    fn container_move_live_check(&self) -> Result<()> {
        moving::criu_check().map_err(|why| {
            crate::Error::new(
                crate::ErrorKind::FailedPrecondition,
                format!("at {}, {why}", self.describe()),
            )
        })
    }

    fn image_list(&self, opts: &ListOptions) -> Result<Vec<ImageSummary>> {
        self.images().list(opts)
    }
    fn image_inspect(&self, name: &str) -> Result<ImageInspect> {
        self.images().inspect(name)
    }
    fn image_tag(&self, source: &str, target: &str) -> Result<()> {
        self.images().tag(source, target)
    }
    fn image_history(&self, name: &str) -> Result<Vec<HistoryResponseItem>> {
        self.images().history(name)
    }
    fn image_remove(&self, name: &str, force: bool) -> Result<Vec<ImageDeleteResponseItem>> {
        self.images().remove(name, force)
    }
    fn image_prune(&self, all: bool) -> Result<ImagePruneResponse> {
        self.images().prune(all)
    }
    fn image_import(&self, tar: &mut (dyn Read + Send), opts: &ImportOptions) -> Result<String> {
        Ok(self.images().import(tar, opts)?.to_string())
    }
    fn image_load(&self, src: LoadSource<'_>) -> Result<Vec<String>> {
        Ok(load_messages(&self.images().load(src)?))
    }
    fn image_save(&self, names: &[String], format: SaveFormat, dest: SaveDest<'_>) -> Result<()> {
        self.images().save(names, format, dest)
    }
    fn image_pull(
        &self,
        opts: &PullOptions,
        progress: &mut dyn FnMut(&ProgressMessage),
    ) -> Result<Vec<String>> {
        let mut opts = opts.clone();
        if opts.auth.is_none() {
            opts.auth = crate::registry::stored_auth(&opts.reference)?;
        }
        let pulled = self.registries().pull(&opts, &mut |m| progress(&m))?;
        Ok(pulled.into_iter().map(|p| p.reference).collect())
    }
    fn image_push(
        &self,
        opts: &PushOptions,
        progress: &mut dyn FnMut(&ProgressMessage),
    ) -> Result<String> {
        let mut opts = opts.clone();
        if opts.auth.is_none() {
            opts.auth = crate::registry::stored_auth(&opts.reference)?;
        }
        Ok(self
            .registries()
            .push(&opts, &mut |m| progress(&m))?
            .digest
            .to_string())
    }
    fn image_build(
        &self,
        context: BuildContext<'_>,
        opts: &BuildOptions,
        progress: &mut dyn FnMut(&ProgressMessage),
    ) -> Result<String> {
        // The build's threads send; this one, the caller's, tells.
        let (tx, rx) = std::sync::mpsc::channel::<ProgressMessage>();
        let st = self.state();
        let id = std::thread::scope(|s| {
            let build = s.spawn(move || {
                crate::build::Builder::new(st).build(context, opts, &|m| {
                    let _ = tx.send(m.clone());
                })
            });
            for m in rx {
                progress(&m);
            }
            build.join().unwrap_or_else(|_| {
                Err(crate::Error::new(
                    crate::error::ErrorKind::Internal,
                    "the build panicked",
                ))
            })
        })?;
        Ok(id.to_string())
    }
    fn registry_login(&self, auth: &AuthConfig) -> Result<String> {
        self.registries().login(auth)?;
        Ok("Login Succeeded".to_string())
    }

    fn network_create(&self, opts: &NetworkCreate) -> Result<String> {
        Ok(self.networks().create(opts)?.id)
    }
    fn network_list(&self) -> Result<Vec<NetworkResource>> {
        let names = self.container_names()?;
        Ok(Engine::network_list(self)?
            .iter()
            .map(|n| n.resource(&names))
            .collect())
    }
    fn network_inspect(&self, name: &str) -> Result<NetworkResource> {
        let names = self.container_names()?;
        Ok(Engine::network_inspect(self, name)?.resource(&names))
    }
    fn network_remove(&self, name: &str) -> Result<()> {
        Engine::network_remove(self, name)
    }
    fn network_prune(&self) -> Result<Vec<String>> {
        Engine::network_prune(self)
    }
    fn network_connect(&self, container: &str, endpoint: &NetworkAttachment) -> Result<()> {
        self.containers().connect(container, endpoint)
    }
    fn network_disconnect(&self, network: &str, container: &str) -> Result<()> {
        self.containers().disconnect(network, container)
    }

    fn volume_create(&self, opts: &VolumeCreate) -> Result<Volume> {
        self.volumes().create(opts)
    }
    fn volume_list(&self) -> Result<Vec<Volume>> {
        self.volumes().list()
    }
    fn volume_inspect(&self, name: &str) -> Result<Volume> {
        self.volumes().inspect(name)
    }
    fn volume_remove(&self, name: &str, force: bool) -> Result<()> {
        Engine::volume_remove(self, name, force)
    }
    fn volume_prune(&self, all: bool) -> Result<(Vec<String>, u64)> {
        Engine::volume_prune(self, all)
    }

    fn events(
        &self,
        since: Option<i64>,
        until: Option<i64>,
        each: &mut dyn FnMut(Value) -> bool,
    ) -> Result<()> {
        // Recorded in the database by whichever process acted: read from it as it grows.
        let mut after = if since.is_some() {
            0
        } else {
            crate::events::last(self.state())?
        };
        loop {
            for e in crate::events::since(self.state(), after, since.unwrap_or(0))? {
                after = e.seq;
                if until.is_some_and(|u| e.time_nano > u) {
                    return Ok(());
                }
                if !each(serde_json::to_value(&e).unwrap_or_default()) {
                    return Ok(());
                }
            }
            let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
            if until.is_some_and(|u| now > u) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    fn system_df(&self) -> Result<DiskUsage> {
        Engine::system_df(self)
    }
    fn system_prune(&self, all: bool, volumes: bool) -> Result<PruneReport> {
        Engine::system_prune(self, all, volumes)
    }
}

/// Follows a local container's log from byte `offset` of its current file until it stops.
fn follow_local(
    engine: &Engine,
    name: &str,
    offset: u64,
    done: &dyn Fn(&crate::runtime::Container) -> bool,
    each: &mut dyn FnMut(LogRecord) -> bool,
) -> Result<()> {
    use std::io::{BufRead, Seek};
    let path = engine.containers().log_path(name)?;
    let io = |source| crate::Error::io(format!("read {}", path.display()), source);
    // Made here if the container has not run yet; its monitor appends to the same file.
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(&path)
        .map_err(io)?;
    file.seek(std::io::SeekFrom::Start(offset)).map_err(io)?;
    let mut reader = std::io::BufReader::new(file);
    let mut line = String::new();
    let record = |l: &str| {
        serde_json::from_str::<Value>(l).ok().map(|v| {
            (
                v["stream"].as_str().unwrap_or("stdout").to_string(),
                v["time"].as_str().unwrap_or("").to_string(),
                v["log"].as_str().unwrap_or("").to_string(),
            )
        })
    };
    loop {
        let n = reader.read_line(&mut line).map_err(io)?;
        if n > 0 && line.ends_with('\n') {
            if let Some(r) = record(&line)
                && !each(r)
            {
                return Ok(());
            }
            line.clear();
            continue;
        }
        if done(&engine.containers().get(name)?) {
            // What was written between the last read and the exit.
            let mut rest = String::new();
            let _ = reader.read_to_string(&mut rest);
            for l in line.lines().chain(rest.lines()) {
                if let Some(r) = record(l)
                    && !each(r)
                {
                    return Ok(());
                }
            }
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
