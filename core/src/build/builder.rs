//! The builder: stages in dependency order (independent ones at once), each instruction a
//! step that makes an image from the one before, found in the cache when its inputs are.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};

use serde_json::{Value, json};

use super::context::Source;
use super::dockerfile::{Command, CommandLine, Instruction, Stage};
use super::shell::Lexer;
use super::{BuildError, invalid};
use crate::digest::Digest;
use crate::image::Images;
use crate::image::derive::Derived;
use crate::image::lease::Lease;
use crate::model::ProgressMessage;
use crate::state::State;

/// What `build` takes: `docker build`'s options.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The Dockerfile's path in the context (`-f`); `Dockerfile` when none.
    pub dockerfile: Option<String>,
    /// The Dockerfile itself, when it does not come from the context (`-f -`, a file
    /// outside the context).
    pub dockerfile_text: Option<String>,
    /// `-t`: names for the image.
    pub tags: Vec<String>,
    /// `--build-arg NAME=VALUE`.
    pub build_args: BTreeMap<String, String>,
    /// `--target`: the stage to build; the last when none.
    pub target: Option<String>,
    /// `--label`: labels the image gets.
    pub labels: BTreeMap<String, String>,
    /// `--network` for RUN steps: `bridge` (the default), `none`, `host`, or a network.
    pub network: Option<String>,
    /// `--no-cache`: run every step.
    pub no_cache: bool,
    /// `--pull`: pull base images even when present.
    pub pull: bool,
    /// `--platform` for base images pulled.
    pub platform: Option<String>,
    /// `-q`: no step output in the stream, the image ID only.
    pub quiet: bool,
}

/// Where the context comes from.
pub enum BuildContext<'a> {
    /// A directory (`ketch build DIR`), read in place.
    Dir(PathBuf),
    /// A tar stream of the context (`ketch build -`, `POST /build`), unpacked first.
    Tar(&'a mut (dyn Read + Send)),
    /// No context: the Dockerfile alone (`ketch build - < Dockerfile`).
    Empty,
}

/// Builds images in one state root.
pub struct Builder<'s> {
    st: &'s State,
}

/// Shared between the stages of one build.
pub(super) struct Run<'a> {
    opts: &'a BuildOptions,
    source: &'a Source,
    escape: char,
    /// ARGs before the first FROM, with their values.
    meta: Vec<(String, Option<String>)>,
    stages: &'a [Stage],
    names: Vec<Option<String>>,
    /// Step numbers: the first of each stage.
    first_step: Vec<usize>,
    total: usize,
    results: Vec<(Mutex<Option<StageResult>>, Condvar)>,
    failed: AtomicBool,
    progress: &'a (dyn Fn(&ProgressMessage) + Sync),
    printer: Mutex<Printer>,
    used_args: Mutex<BTreeSet<String>>,
    owner: String,
    lease: &'a Lease,
}

/// A finished stage: its image, or why it failed.
type StageResult = Result<Option<Digest>, String>;

/// A stage being built: the image so far and its config.
pub(super) struct StageState {
    pub image: Option<Digest>,
    pub config: Value,
    /// ARGs declared in the stage, with their values (none: declared without one).
    pub args: Vec<(String, Option<String>)>,
    pub cmd_set: bool,
}

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl StageState {
    pub fn env(&self) -> Vec<String> {
        strings(self.config.pointer("/config/Env"))
    }

    /// The working directory steps run in: the config's, else `/`.
    pub fn workdir(&self) -> String {
        self.config
            .pointer("/config/WorkingDir")
            .and_then(|w| w.as_str())
            .filter(|w| !w.is_empty())
            .unwrap_or("/")
            .to_string()
    }

    pub fn shell(&self) -> Vec<String> {
        let s = strings(self.config.pointer("/config/Shell"));
        if s.is_empty() {
            vec!["/bin/sh".into(), "-c".into()]
        } else {
            s
        }
    }

    /// A variable as expansion sees it: ENV first, then the stage's ARGs.
    pub fn lookup(&self, name: &str) -> Option<String> {
        for e in self.env().iter().rev() {
            if let Some((k, v)) = e.split_once('=')
                && k == name
            {
                return Some(v.to_string());
            }
        }
        self.args
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.clone())
    }

    /// The build args a RUN sees (those with a value that no ENV overrides), sorted.
    pub fn run_args(&self) -> Vec<(String, String)> {
        let env = self.env();
        let mut out: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in &self.args {
            if let Some(v) = v
                && !env.iter().any(|e| e.split('=').next() == Some(k))
            {
                out.insert(k.clone(), v.clone());
            }
        }
        out.into_iter().collect()
    }
}

pub(super) fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// An ARG declared before the first FROM, else a platform arg.
fn meta_value(meta: &[(String, Option<String>)], name: &str) -> Option<String> {
    meta.iter()
        .rev()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.clone())
        .or_else(|| {
            platform_args()
                .into_iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v)
        })
}

/// The platform args BuildKit defines, for the host.
fn platform_args() -> Vec<(String, String)> {
    let (arch, os) = crate::image::import::host_platform();
    let (arch, os) = (arch.to_string(), os.to_string());
    let platform = format!("{os}/{arch}");
    let mut v = Vec::new();
    for p in ["TARGET", "BUILD"] {
        v.push((format!("{p}PLATFORM"), platform.clone()));
        v.push((format!("{p}OS"), os.clone()));
        v.push((format!("{p}ARCH"), arch.clone()));
        v.push((format!("{p}VARIANT"), String::new()));
    }
    v
}

impl<'s> Builder<'s> {
    pub fn new(st: &'s State) -> Builder<'s> {
        Builder { st }
    }

    fn images(&self) -> Images<'s> {
        Images::new(self.st)
    }

    /// Builds the image the Dockerfile describes and returns its ID. `progress` hears
    /// Docker's build stream (`stream` lines, then the ID as `aux`), from the stages'
    /// threads.
    pub fn build(
        &self,
        context: BuildContext<'_>,
        opts: &BuildOptions,
        progress: &(dyn Fn(&ProgressMessage) + Sync),
    ) -> crate::Result<Digest> {
        // A tar context is unpacked (as a layer is: nothing leaves the directory) into a
        // directory of its own that goes with the build.
        let mut unpacked = None;
        let dir = match context {
            BuildContext::Dir(d) => d,
            BuildContext::Tar(r) => {
                let t = self.context_dir()?;
                crate::diff::apply(r, t.path(), &Default::default()).map_err(|e| {
                    BuildError::Context {
                        reason: format!("read the build context: {e}"),
                    }
                })?;
                let p = t.path().to_path_buf();
                unpacked = Some(t);
                p
            }
            BuildContext::Empty => {
                let t = self.context_dir()?;
                let p = t.path().to_path_buf();
                unpacked = Some(t);
                p
            }
        };
        let source = Source::context(&dir)?;
        let text = match &opts.dockerfile_text {
            Some(t) => t.clone(),
            None => {
                let name = opts.dockerfile.as_deref().unwrap_or("Dockerfile");
                let bytes = match source.read_file(name)? {
                    Some(b) => b,
                    None if opts.dockerfile.is_none() => source
                        .read_file("dockerfile")?
                        .ok_or_else(|| BuildError::Context {
                            reason: "Cannot locate specified Dockerfile: Dockerfile".into(),
                        })?,
                    None => {
                        return Err(BuildError::Context {
                            reason: format!("Cannot locate specified Dockerfile: {name}"),
                        }
                        .into());
                    }
                };
                String::from_utf8(bytes).map_err(|_| BuildError::Context {
                    reason: "the Dockerfile is not UTF-8 text".into(),
                })?
            }
        };
        let lease = Lease::new(&self.st.db)?;
        let out = self.build_parsed(&text, &source, opts, progress, &lease);
        let released = self.images().release(lease);
        drop(unpacked);
        let id = out?;
        released?;
        Ok(id)
    }

    fn context_dir(&self) -> crate::Result<tempfile_dir::TempDir> {
        tempfile_dir::TempDir::new(&self.st.scratch).map_err(|e| {
            crate::Error::io(
                format!("make a directory in {}", self.st.scratch.display()),
                e,
            )
        })
    }

    fn build_parsed(
        &self,
        text: &str,
        source: &Source,
        opts: &BuildOptions,
        progress: &(dyn Fn(&ProgressMessage) + Sync),
        lease: &Lease,
    ) -> crate::Result<Digest> {
        let mut df = super::parse(text).map_err(BuildError::Dockerfile)?;
        if df.stages.is_empty() {
            return Err(invalid("the Dockerfile has no FROM"));
        }
        let lexer = Lexer::new(df.escape);
        // ARGs before the first FROM: for FROM lines, and for stages that declare them.
        let mut meta: Vec<(String, Option<String>)> = Vec::new();
        for i in &df.meta_args {
            if let Command::Arg(args) = &i.command {
                for (name, default) in args {
                    let look = |n: &str| meta_value(&meta, n);
                    let value = match opts.build_args.get(name) {
                        Some(v) => Some(v.clone()),
                        None => default
                            .as_deref()
                            .map(|d| lexer.word(d, &look))
                            .transpose()
                            .map_err(|e| at(i, invalid(e.to_string())))?,
                    };
                    meta.push((name.clone(), value));
                }
            }
        }
        let meta_lookup = |n: &str| meta_value(&meta, n);
        let names: Vec<Option<String>> = df
            .stages
            .iter()
            .map(|s| s.name().map(|n| n.to_ascii_lowercase()))
            .collect();
        let target = match &opts.target {
            Some(t) => names
                .iter()
                .position(|n| n.as_deref() == Some(t.to_ascii_lowercase().as_str()))
                .ok_or_else(|| invalid(format!("target stage {t:?} could not be found")))?,
            None => df.stages.len() - 1,
        };
        // `--label`: one more LABEL at the end of the target, as Docker adds it.
        if !opts.labels.is_empty() {
            let pairs: Vec<(String, String)> = opts
                .labels
                .iter()
                .map(|(k, v)| (quote(k), quote(v)))
                .collect();
            let text = format!(
                "LABEL {}",
                pairs
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            let line = df.stages[target]
                .instructions
                .last()
                .map_or(df.stages[target].from.end_line, |i| i.end_line);
            df.stages[target].instructions.push(Instruction {
                line,
                end_line: line,
                text,
                command: Command::Label(pairs),
            });
        }
        // Which stages the target needs, each stage's own needs first.
        let mut deps: Vec<BTreeSet<usize>> = Vec::new();
        for (idx, s) in df.stages.iter().enumerate() {
            let mut d = BTreeSet::new();
            if let Command::From { image, .. } = &s.from.command {
                let image = lexer
                    .word(image, &meta_lookup)
                    .map_err(|e| at(&s.from, invalid(e.to_string())))?;
                if let Some(j) = stage_ref(&names, &image, idx) {
                    d.insert(j);
                } else if names[idx + 1..]
                    .iter()
                    .any(|n| n.as_deref() == Some(image.to_ascii_lowercase().as_str()))
                {
                    return Err(at(
                        &s.from,
                        invalid(format!("stage {image} is defined after this one")),
                    ));
                }
            }
            for i in &s.instructions {
                let from = match &i.command {
                    Command::Copy(c) | Command::Add(c) => c.from.clone(),
                    Command::Run { mounts, .. } => mounts.iter().find_map(|m| {
                        m.split(',')
                            .find_map(|kv| kv.strip_prefix("from=").map(str::to_string))
                    }),
                    _ => None,
                };
                if let Some(f) = from {
                    let f = lexer.word(&f, &meta_lookup).unwrap_or(f);
                    let lower = f.to_ascii_lowercase();
                    let later = names[idx + 1..]
                        .iter()
                        .any(|n| n.as_deref() == Some(lower.as_str()));
                    if let Some(j) = stage_ref(&names, &f, idx) {
                        d.insert(j);
                    } else if names[idx].as_deref() == Some(lower.as_str()) {
                        return Err(at(
                            i,
                            invalid(format!("--from={f}: a stage cannot copy from itself")),
                        ));
                    } else if later {
                        return Err(at(
                            i,
                            invalid(format!("--from={f}: stage {f} is defined after this one")),
                        ));
                    } else if f.parse::<usize>().is_ok() {
                        return Err(at(
                            i,
                            invalid(format!(
                                "--from={f}: stage {f} is not defined before this one"
                            )),
                        ));
                    }
                }
            }
            deps.push(d);
        }
        let mut needed = BTreeSet::new();
        let mut todo = vec![target];
        while let Some(s) = todo.pop() {
            if needed.insert(s) {
                todo.extend(deps[s].iter().copied());
            }
        }
        let mut first_step = vec![0; df.stages.len()];
        let mut total = 0;
        for &s in &needed {
            first_step[s] = total + 1;
            total += 1 + df.stages[s].instructions.len();
        }
        let run = Run {
            opts,
            source,
            escape: df.escape,
            meta,
            stages: &df.stages,
            names,
            first_step,
            total,
            results: (0..df.stages.len())
                .map(|_| (Mutex::new(None), Condvar::new()))
                .collect(),
            failed: AtomicBool::new(false),
            progress,
            printer: Mutex::new(Printer {
                order: needed.iter().copied().collect(),
                pos: 0,
                held: BTreeMap::new(),
                done: BTreeSet::new(),
            }),
            used_args: Mutex::new(BTreeSet::new()),
            owner: build_owner(),
            lease,
        };
        // Each needed stage in a thread of its own; a stage waits for those it copies
        // from. The first error stops the others at their next step.
        let errors: Mutex<Vec<(usize, crate::Error)>> = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for &idx in &needed {
                let run = &run;
                let errors = &errors;
                s.spawn(move || {
                    STAGE.with(|c| c.set(Some(idx)));
                    let out = self.build_stage(run, idx);
                    run.stage_done(idx);
                    let slot = match &out {
                        Ok(id) => Ok(id.clone()),
                        Err(e) => Err(e.to_string()),
                    };
                    if let Err(e) = out {
                        run.failed.store(true, Ordering::SeqCst);
                        errors
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push((idx, e));
                    }
                    let (m, cv) = &run.results[idx];
                    *m.lock().unwrap_or_else(|p| p.into_inner()) = Some(slot);
                    cv.notify_all();
                });
            }
        });
        let mut errors = errors.into_inner().unwrap_or_else(|p| p.into_inner());
        if !errors.is_empty() {
            // The error that caused the others: a stage that failed on its own, not one
            // that stopped because another had.
            errors.sort_by_key(|(i, e)| (e.to_string().contains("stopped: stage"), *i));
            return Err(errors.remove(0).1);
        }
        let id = run
            .wait_stage(target)?
            .ok_or_else(|| invalid("No image was generated. Is your Dockerfile empty?"))?;
        let unused: Vec<String> = {
            let used = run.used_args.lock().unwrap_or_else(|p| p.into_inner());
            opts.build_args
                .keys()
                .filter(|k| !used.contains(*k) && !is_predefined_arg(k))
                .cloned()
                .collect()
        };
        if !unused.is_empty() {
            progress(&ProgressMessage::stream(format!(
                "[Warning] One or more build-args [{}] were not consumed\n",
                unused.join(" ")
            )));
        }
        progress(&ProgressMessage {
            aux: Some(json!({ "ID": id.to_string() })),
            ..Default::default()
        });
        // Quiet: the image's ID alone, as dockerd streams it then.
        if opts.quiet {
            progress(&ProgressMessage::stream(format!("{id}\n")));
        } else {
            progress(&ProgressMessage::stream(format!(
                "Successfully built {}\n",
                id.short()
            )));
        }
        for t in &opts.tags {
            let r = crate::reference::Reference::parse(t)?.with_default_tag();
            self.images().tag(&id.to_string(), &r.to_string())?;
            if !opts.quiet {
                progress(&ProgressMessage::stream(format!(
                    "Successfully tagged {}\n",
                    r.familiar()
                )));
            }
        }
        Ok(id)
    }

    /// One stage, from its FROM to its last instruction. Returns its image (none: a
    /// `scratch` stage with no step).
    fn build_stage(&self, run: &Run<'_>, idx: usize) -> crate::Result<Option<Digest>> {
        let stage = &run.stages[idx];
        let lexer = Lexer::new(run.escape);
        let mut step = run.first_step[idx];
        let (image, platform) = match &stage.from.command {
            Command::From {
                image, platform, ..
            } => (image.clone(), platform.clone()),
            _ => unreachable!("a stage starts with FROM"),
        };
        let meta_lookup = |n: &str| meta_value(&run.meta, n);
        let image = lexer
            .word(&image, &meta_lookup)
            .map_err(|e| at(&stage.from, invalid(e.to_string())))?;
        run.say(format!("Step {step}/{} : {}\n", run.total, stage.from.text));
        let base: Option<Digest> = if image.eq_ignore_ascii_case("scratch") {
            None
        } else if let Some(j) = stage_ref(&run.names, &image, idx) {
            run.wait_stage(j)?
        } else {
            Some(
                self.base_image(run, &image, platform.as_deref())
                    .map_err(|e| at(&stage.from, e))?,
            )
        };
        let config = match &base {
            Some(id) => {
                let raw = self.st.content.read(id, 8 << 20)?;
                serde_json::from_slice(&raw)
                    .map_err(|e| crate::image::malformed("image config", e))?
            }
            None => {
                let (arch, os) = crate::image::import::host_platform();
                json!({
                    "architecture": arch.to_string(),
                    "os": os.to_string(),
                    "config": {"Env": [DEFAULT_PATH]},
                    "rootfs": {"type": "layers", "diff_ids": []},
                    "history": [],
                })
            }
        };
        if let Some(id) = &base {
            run.say(format!(" ---> {}\n", id.short()));
        }
        let mut state = StageState {
            image: base,
            config,
            args: Vec::new(),
            cmd_set: false,
        };
        // The base's ONBUILD triggers run first, and the new image has none.
        let triggers = strings(state.config.pointer("/config/OnBuild"));
        if !triggers.is_empty() {
            run.say(format!("# Executing {} build trigger(s)\n", triggers.len()));
            if let Some(c) = state
                .config
                .get_mut("config")
                .and_then(|c| c.as_object_mut())
            {
                c.remove("OnBuild");
            }
            for t in &triggers {
                let parsed = super::parse(&format!("FROM scratch\n{t}\n")).map_err(|e| {
                    at(
                        &stage.from,
                        invalid(format!("the base image's ONBUILD {t:?}: {e}")),
                    )
                })?;
                let Some(i) = parsed
                    .stages
                    .into_iter()
                    .next()
                    .and_then(|s| s.instructions.into_iter().next())
                else {
                    continue;
                };
                self.step(run, &mut state, &i)
                    .map_err(|e| at(&stage.from, e))?;
            }
        }
        for i in &stage.instructions {
            if run.failed.load(Ordering::SeqCst) {
                return Err(invalid("stopped: stage failed elsewhere"));
            }
            step += 1;
            run.say(format!("Step {step}/{} : {}\n", run.total, i.text));
            self.step(run, &mut state, i)
                .map_err(|e| match e.downcast_ref::<BuildError>() {
                    Some(BuildError::RunFailed { .. }) | Some(BuildError::Step { .. }) => e,
                    _ => at(i, e),
                })?;
        }
        Ok(state.image)
    }

    /// An image a FROM, `COPY --from` or a bind mount names (not a stage): present, or
    /// pulled (`--pull`: pulled even when present).
    pub(super) fn base_image(
        &self,
        run: &Run<'_>,
        name: &str,
        platform: Option<&str>,
    ) -> crate::Result<Digest> {
        if !run.opts.pull {
            match self
                .st
                .db
                .read(|tx| crate::image::resolve(tx, name).map(|r| r.image.id))
            {
                Ok(id) => return Ok(id),
                Err(e) if e.kind() == crate::error::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let platform = platform
            .map(str::to_string)
            .or_else(|| run.opts.platform.clone());
        let opts = crate::registry::PullOptions {
            reference: name.to_string(),
            all_tags: false,
            platform,
            auth: crate::registry::stored_auth(name)?,
            insecure: false,
        };
        let pulled = crate::registry::Registries::new(self.st).pull(&opts, &mut |m| {
            if !run.opts.quiet {
                run.emit(m)
            }
        })?;
        pulled
            .into_iter()
            .next()
            .map(|p| p.id)
            .ok_or_else(|| invalid(format!("pull of {name} brought no image")))
    }

    /// One instruction: found in the cache, or run, and the stage's image moves on.
    fn step(&self, run: &Run<'_>, st: &mut StageState, i: &Instruction) -> crate::Result<()> {
        let lexer = Lexer::new(run.escape);
        let word = |s: &str, st: &StageState| -> crate::Result<String> {
            lexer
                .word(s, &|n| st.lookup(n))
                .map_err(|e| invalid(e.to_string()))
        };
        let nop = |st: &StageState, comment: String| -> String {
            let mut v = st.shell();
            v.push("#(nop) ".into());
            v.push(comment);
            v.join(" ")
        };
        match &i.command {
            Command::From { .. } => Err(invalid("FROM inside a stage")),
            Command::Arg(args) => {
                let mut comment = Vec::new();
                for (name, default) in args {
                    let value = match run.opts.build_args.get(name) {
                        Some(v) => Some(v.clone()),
                        None => match default {
                            Some(d) => Some(word(d, st)?),
                            None => meta_value(&run.meta, name),
                        },
                    };
                    run.used_args
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(name.clone());
                    comment.push(match default {
                        Some(d) => format!("{name}={d}"),
                        None => name.clone(),
                    });
                    st.args.retain(|(k, _)| k != name);
                    st.args.push((name.clone(), value));
                }
                let created_by = nop(st, format!("ARG {}", comment.join(" ")));
                self.meta_step(run, st, created_by, |_| Ok(()))
            }
            Command::Env(pairs) => {
                let (set, comment) = expand_pairs(pairs, &|w| word(w, st))?;
                let created_by = nop(st, format!("ENV {comment}"));
                self.meta_step(run, st, created_by, |c| {
                    let mut env = strings(c.get("Env"));
                    for (k, v) in &set {
                        env.retain(|e| e.split('=').next() != Some(k.as_str()));
                        env.push(format!("{k}={v}"));
                    }
                    c["Env"] = json!(env);
                    Ok(())
                })
            }
            Command::Label(pairs) => {
                let (set, comment) = expand_pairs(pairs, &|w| word(w, st))?;
                let created_by = nop(st, format!("LABEL {comment}"));
                self.meta_step(run, st, created_by, |c| {
                    if !c["Labels"].is_object() {
                        c["Labels"] = json!({});
                    }
                    for (k, v) in &set {
                        c["Labels"][k] = json!(v);
                    }
                    Ok(())
                })
            }
            Command::Workdir(dir) => {
                let dir = word(dir, st)?;
                let prev = st.workdir();
                let path = if dir.starts_with('/') {
                    dir
                } else {
                    format!("{}/{dir}", prev.trim_end_matches('/'))
                };
                let path = format!("/{}", super::context::clean(&path));
                let created_by = nop(st, format!("WORKDIR {path}"));
                self.meta_step(run, st, created_by, |c| {
                    c["WorkingDir"] = json!(path);
                    Ok(())
                })
            }
            Command::User(u) => {
                let u = word(u, st)?;
                let created_by = nop(st, format!("USER {u}"));
                self.meta_step(run, st, created_by, |c| {
                    c["User"] = json!(u);
                    Ok(())
                })
            }
            Command::Cmd(cl) => {
                let cmd = command_line(st, cl);
                let created_by = nop(st, format!("CMD {}", go_quote(&cmd)));
                st.cmd_set = true;
                self.meta_step(run, st, created_by, |c| {
                    c["Cmd"] = json!(cmd);
                    Ok(())
                })
            }
            Command::Entrypoint(cl) => {
                let ep = command_line(st, cl);
                let created_by = nop(st, format!("ENTRYPOINT {}", go_quote(&ep)));
                let clear_cmd = !st.cmd_set;
                self.meta_step(run, st, created_by, |c| {
                    c["Entrypoint"] = if ep.is_empty() {
                        Value::Null
                    } else {
                        json!(ep)
                    };
                    // An ENTRYPOINT resets the CMD the base image had.
                    if clear_cmd {
                        c["Cmd"] = Value::Null;
                    }
                    Ok(())
                })
            }
            Command::Expose(ports) => {
                let mut keys = Vec::new();
                for p in ports {
                    for w in lexer
                        .words(p, &|n| st.lookup(n))
                        .map_err(|e| invalid(e.to_string()))?
                    {
                        keys.extend(expose_keys(&w)?);
                    }
                }
                let created_by = nop(st, format!("EXPOSE {}", keys.join(" ")));
                self.meta_step(run, st, created_by, |c| {
                    if !c["ExposedPorts"].is_object() {
                        c["ExposedPorts"] = json!({});
                    }
                    for k in &keys {
                        c["ExposedPorts"][k] = json!({});
                    }
                    Ok(())
                })
            }
            Command::Volume(vols) => {
                let mut set = Vec::new();
                for v in vols {
                    let v = word(v, st)?;
                    if v.trim().is_empty() {
                        return Err(invalid("VOLUME specified can not be an empty string"));
                    }
                    set.push(v);
                }
                let created_by = nop(st, format!("VOLUME [{}]", set.join(" ")));
                self.meta_step(run, st, created_by, |c| {
                    if !c["Volumes"].is_object() {
                        c["Volumes"] = json!({});
                    }
                    for v in &set {
                        c["Volumes"][v] = json!({});
                    }
                    Ok(())
                })
            }
            Command::Stopsignal(s) => {
                let s = word(s, st)?;
                if crate::runtime::signal_number(&s).is_none() {
                    return Err(invalid(format!("Invalid signal: {s}")));
                }
                let created_by = nop(st, format!("STOPSIGNAL {s}"));
                self.meta_step(run, st, created_by, |c| {
                    c["StopSignal"] = json!(s);
                    Ok(())
                })
            }
            Command::Healthcheck(h) => {
                let mut hc = serde_json::Map::new();
                let test = match &h.test {
                    None => vec!["NONE".to_string()],
                    Some(CommandLine::Shell(s)) => vec!["CMD-SHELL".to_string(), s.clone()],
                    Some(CommandLine::Exec(v)) => std::iter::once("CMD".to_string())
                        .chain(v.iter().cloned())
                        .collect(),
                };
                hc.insert("Test".into(), json!(test));
                for (k, v) in [
                    ("Interval", h.interval),
                    ("Timeout", h.timeout),
                    ("StartPeriod", h.start_period),
                    ("StartInterval", h.start_interval),
                    ("Retries", h.retries),
                ] {
                    if let Some(v) = v.filter(|v| *v != 0) {
                        hc.insert(k.into(), json!(v));
                    }
                }
                let created_by = nop(
                    st,
                    format!(
                        "HEALTHCHECK {}",
                        i.text
                            .split_once(char::is_whitespace)
                            .map(|x| x.1)
                            .unwrap_or("")
                            .trim()
                    ),
                );
                self.meta_step(run, st, created_by, |c| {
                    c["Healthcheck"] = Value::Object(hc);
                    Ok(())
                })
            }
            Command::Shell(sh) => {
                let created_by = nop(st, format!("SHELL [{}]", sh.join(" ")));
                let sh = sh.clone();
                self.meta_step(run, st, created_by, |c| {
                    c["Shell"] = json!(sh);
                    Ok(())
                })
            }
            Command::Onbuild { text, .. } => {
                let created_by = nop(st, format!("ONBUILD {text}"));
                let text = text.clone();
                self.meta_step(run, st, created_by, |c| {
                    let mut v = strings(c.get("OnBuild"));
                    v.push(text);
                    c["OnBuild"] = json!(v);
                    Ok(())
                })
            }
            Command::Maintainer(m) => {
                let m = word(m, st)?;
                let created_by = nop(st, format!("MAINTAINER {m}"));
                let author = m.clone();
                self.meta_step_top(run, st, created_by, move |top| {
                    top["author"] = json!(author);
                })
            }
            Command::Run {
                command,
                mounts,
                network,
                heredocs,
            } => super::run::run_step(
                self,
                run_ctx(run),
                st,
                i,
                command,
                mounts,
                network.as_deref(),
                heredocs,
            ),
            Command::Copy(spec) => super::run::copy_step(self, run_ctx(run), st, i, spec, false),
            Command::Add(spec) => super::run::copy_step(self, run_ctx(run), st, i, spec, true),
        }
    }

    /// A step that changes the config only.
    fn meta_step(
        &self,
        run: &Run<'_>,
        st: &mut StageState,
        created_by: String,
        change: impl FnOnce(&mut Value) -> crate::Result<()>,
    ) -> crate::Result<()> {
        let mut err = None;
        self.meta_step_top(run, st, created_by, |top| {
            if !top["config"].is_object() {
                top["config"] = json!({});
            }
            if let Err(e) = change(&mut top["config"]) {
                err = Some(e);
            }
        })?;
        match err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn meta_step_top(
        &self,
        run: &Run<'_>,
        st: &mut StageState,
        created_by: String,
        change: impl FnOnce(&mut Value),
    ) -> crate::Result<()> {
        let key = cache_key(st.image.as_ref(), &created_by, "");
        if self.cached(run, st, &key)? {
            return Ok(());
        }
        let mut config = st.config.clone();
        change(&mut config);
        let t = now();
        config["created"] = json!(t);
        push_history(
            &mut config,
            json!({"created": t, "created_by": created_by, "empty_layer": true}),
        );
        let id = self.commit(run, st, config, None)?;
        self.remember(&key, &id)?;
        run.say(format!(" ---> {}\n", id.short()));
        Ok(())
    }

    /// Looks a step up in the cache; on a hit the stage moves to its image.
    pub(super) fn cached(
        &self,
        run: &Run<'_>,
        st: &mut StageState,
        key: &str,
    ) -> crate::Result<bool> {
        if run.opts.no_cache {
            return Ok(false);
        }
        let hit: Option<String> = self.st.db.read(|tx| {
            use rusqlite::OptionalExtension;
            Ok::<_, crate::Error>(
                tx.query_row(
                    "SELECT image_id FROM build_cache WHERE key = ?1",
                    rusqlite::params![key],
                    |r| r.get(0),
                )
                .optional()?,
            )
        })?;
        let Some(id) = hit else {
            return Ok(false);
        };
        let id: Digest = id.parse()?;
        let raw = match self.st.content.read(&id, 8 << 20) {
            Ok(raw) => raw,
            Err(_) => return Ok(false),
        };
        st.config =
            serde_json::from_slice(&raw).map_err(|e| crate::image::malformed("image config", e))?;
        st.image = Some(id.clone());
        run.say(format!(" ---> Using cache\n ---> {}\n", id.short()));
        Ok(true)
    }

    /// Records the image a step made for its key.
    pub(super) fn remember(&self, key: &str, id: &Digest) -> crate::Result<()> {
        self.st.db.write(|tx| {
            tx.execute(
                "INSERT OR REPLACE INTO build_cache (key, image_id) VALUES (?1, ?2)",
                rusqlite::params![key, id.to_string()],
            )?;
            Ok::<_, crate::Error>(())
        })
    }

    /// Makes the step's image: `config` on the stage's image, with `layer` if any.
    pub(super) fn commit(
        &self,
        run: &Run<'_>,
        st: &mut StageState,
        config: Value,
        layer: Option<crate::image::derive::NewLayer>,
    ) -> crate::Result<Digest> {
        let id = self.images().derive(
            run.lease,
            Derived {
                base: st.image.clone(),
                config: config.clone(),
                layer,
                tags: Vec::new(),
                record_parent: true,
            },
        )?;
        st.image = Some(id.clone());
        st.config = config;
        Ok(id)
    }

    /// The stage's image, made now if the stage has none yet (a RUN or COPY on
    /// `scratch`): an image of no layers.
    pub(super) fn ensure_image(&self, run: &Run<'_>, st: &mut StageState) -> crate::Result<Digest> {
        if let Some(id) = &st.image {
            return Ok(id.clone());
        }
        let config = st.config.clone();
        self.commit(run, st, config, None)
    }

    pub(super) fn state(&self) -> &'s State {
        self.st
    }
}

/// What the step functions of [`super::run`] need of the build.
#[derive(Clone, Copy)]
pub(super) struct RunCtx<'a> {
    pub run: &'a Run<'a>,
}

fn run_ctx<'a>(run: &'a Run<'a>) -> RunCtx<'a> {
    RunCtx { run }
}

impl<'a> RunCtx<'a> {
    pub fn opts(&self) -> &BuildOptions {
        self.run.opts
    }
    pub fn source(&self) -> &Source {
        self.run.source
    }
    pub fn say(&self, s: String) {
        self.run.say(s)
    }
    pub fn output(&self, s: String) {
        if !self.run.opts.quiet {
            self.run.emit(ProgressMessage::stream(s))
        }
    }
    pub fn lease(&self) -> &Lease {
        self.run.lease
    }
    pub fn owner(&self) -> &str {
        &self.run.owner
    }
    pub fn escape(&self) -> char {
        self.run.escape
    }
    /// The image of the stage `name` (by name or index) if it is one, else `None`.
    pub fn stage_image(&self, name: &str, current: usize) -> crate::Result<Option<Option<Digest>>> {
        match stage_ref(&self.run.names, name, current) {
            Some(j) => Ok(Some(self.run.wait_stage(j)?)),
            None => Ok(None),
        }
    }
    pub fn stage_index_of(&self, i: &Instruction) -> usize {
        self.run
            .stages
            .iter()
            .position(|s| s.instructions.iter().any(|x| std::ptr::eq(x, i)))
            .unwrap_or(self.run.stages.len())
    }
}

thread_local! {
    /// The stage the current thread builds.
    static STAGE: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// Keeps the stream in stage order while stages build at once: the first unfinished
/// stage's messages go out as they come, a later stage's wait until those before it end.
struct Printer {
    order: Vec<usize>,
    pos: usize,
    held: BTreeMap<usize, Vec<ProgressMessage>>,
    done: BTreeSet<usize>,
}

impl Run<'_> {
    fn say(&self, s: String) {
        if !self.opts.quiet {
            self.emit(ProgressMessage::stream(s))
        }
    }

    fn emit(&self, m: ProgressMessage) {
        let mut p = self.printer.lock().unwrap_or_else(|e| e.into_inner());
        match STAGE.with(|c| c.get()) {
            Some(stage) if p.order.get(p.pos) != Some(&stage) => {
                p.held.entry(stage).or_default().push(m)
            }
            _ => (self.progress)(&m),
        }
    }

    fn stage_done(&self, stage: usize) {
        let mut p = self.printer.lock().unwrap_or_else(|e| e.into_inner());
        p.done.insert(stage);
        while let Some(&cur) = p.order.get(p.pos) {
            if let Some(held) = p.held.remove(&cur) {
                for m in &held {
                    (self.progress)(m);
                }
            }
            if !p.done.contains(&cur) {
                break;
            }
            p.pos += 1;
        }
    }

    /// Waits for a stage another thread builds.
    fn wait_stage(&self, idx: usize) -> crate::Result<Option<Digest>> {
        let (m, cv) = &self.results[idx];
        let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(r) = &*g {
                return r
                    .clone()
                    .map_err(|_| invalid(format!("stopped: stage {idx} failed")));
            }
            g = cv.wait(g).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// ENV's and LABEL's pairs, each side expanded, and as the history shows them.
type Pairs = Vec<(String, String)>;
fn expand_pairs(
    pairs: &[(String, String)],
    word: &dyn Fn(&str) -> crate::Result<String>,
) -> crate::Result<(Pairs, String)> {
    let mut set = Vec::new();
    for (k, v) in pairs {
        set.push((word(k)?, word(v)?));
    }
    let comment = set
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ");
    Ok((set, comment))
}

pub(super) fn push_history(config: &mut Value, entry: Value) {
    match config["history"].as_array_mut() {
        Some(h) => h.push(entry),
        None => config["history"] = json!([entry]),
    }
}

/// The cache key of a step: its parent image, the instruction as it ran, and what it
/// copied.
pub(super) fn cache_key(parent: Option<&Digest>, created_by: &str, content: &str) -> String {
    let mut text = String::from("ketch-build-1\n");
    text.push_str(
        &parent
            .map(|p| p.to_string())
            .unwrap_or_else(|| "scratch".into()),
    );
    text.push('\n');
    text.push_str(created_by);
    text.push('\n');
    text.push_str(content);
    Digest::of(text.as_bytes()).to_string()
}

/// A stage named by `name` (its `AS` name, or its index), defined before stage `current`.
fn stage_ref(names: &[Option<String>], name: &str, current: usize) -> Option<usize> {
    let lower = name.to_ascii_lowercase();
    if let Some(j) = names[..current.min(names.len())]
        .iter()
        .position(|n| n.as_deref() == Some(lower.as_str()))
    {
        return Some(j);
    }
    match name.parse::<usize>() {
        Ok(j) if j < current => Some(j),
        _ => None,
    }
}

/// Whether Docker lets a build arg go undeclared without a warning.
fn is_predefined_arg(k: &str) -> bool {
    matches!(
        k.to_ascii_uppercase().as_str(),
        "HTTP_PROXY" | "HTTPS_PROXY" | "FTP_PROXY" | "NO_PROXY" | "ALL_PROXY"
    )
}

/// A CMD's or ENTRYPOINT's argv: the shell form through the stage's SHELL.
fn command_line(st: &StageState, cl: &CommandLine) -> Vec<String> {
    match cl {
        CommandLine::Exec(v) => v.clone(),
        CommandLine::Shell(s) => {
            let mut v = st.shell();
            v.push(s.clone());
            v
        }
    }
}

/// `["a" "b"]`, as Go's `%q` prints a string slice (Docker's history text).
fn go_quote(v: &[String]) -> String {
    format!(
        "[{}]",
        v.iter()
            .map(|s| serde_json::to_string(s).unwrap_or_default())
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// A label key or value as a LABEL instruction takes it.
fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// `80`, `80/udp`, `8000-8002/tcp` as `ExposedPorts` keys.
fn expose_keys(w: &str) -> crate::Result<Vec<String>> {
    let (ports, proto) = match w.split_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (w, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(invalid(format!("invalid proto: {proto}")));
    }
    let bad = || invalid(format!("invalid containerPort: {ports}"));
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (
            a.parse::<u16>().map_err(|_| bad())?,
            b.parse::<u16>().map_err(|_| bad())?,
        ),
        None => {
            let p = ports.parse::<u16>().map_err(|_| bad())?;
            (p, p)
        }
    };
    if lo > hi {
        return Err(bad());
    }
    Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

/// Who runs the build: its build containers carry it, so that the next engine to open
/// the root removes those of a build that was killed.
fn build_owner() -> String {
    let pid = std::process::id();
    let start = crate::util::process_start_time(pid).unwrap_or(0);
    format!("{pid}:{start}")
}

/// An error of a step, with the step's line and text.
pub(super) fn at(i: &Instruction, e: crate::Error) -> crate::Error {
    let mut text = i.text.clone();
    if text.chars().count() > 80 {
        text = text.chars().take(77).collect::<String>() + "...";
    }
    BuildError::Step {
        line: i.line,
        instruction: text,
        source: e,
    }
    .into()
}

/// A directory removed when dropped.
mod tempfile_dir {
    use std::path::{Path, PathBuf};

    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new(parent: &Path) -> std::io::Result<TempDir> {
            std::fs::create_dir_all(parent)?;
            let p = parent.join(format!("build-context-{}", crate::util::random_hex(8)));
            std::fs::create_dir(&p)?;
            Ok(TempDir(p))
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposed_ports_as_docker_records_them() {
        assert_eq!(expose_keys("80").unwrap(), vec!["80/tcp"]);
        assert_eq!(expose_keys("53/UDP").unwrap(), vec!["53/udp"]);
        assert_eq!(
            expose_keys("8000-8002").unwrap(),
            vec!["8000/tcp", "8001/tcp", "8002/tcp"]
        );
        assert!(expose_keys("http").is_err());
        assert!(expose_keys("80/icmp").is_err());
        assert!(expose_keys("90-80").is_err());
    }

    #[test]
    fn stages_are_found_by_name_or_earlier_index() {
        let names = vec![Some("base".to_string()), None, Some("final".to_string())];
        assert_eq!(stage_ref(&names, "BASE", 2), Some(0));
        assert_eq!(stage_ref(&names, "1", 2), Some(1));
        assert_eq!(stage_ref(&names, "2", 2), None);
        assert_eq!(stage_ref(&names, "final", 2), None);
        assert_eq!(stage_ref(&names, "busybox", 2), None);
    }

    #[test]
    fn history_text_quotes_as_go_does() {
        assert_eq!(
            go_quote(&["sh".into(), "-c".into(), "echo \"hi\"".into()]),
            r#"["sh" "-c" "echo \"hi\""]"#
        );
    }
}
