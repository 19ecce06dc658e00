//! `build`: an image from a Dockerfile and a context.

use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use ketch::api::{BuildContext, BuildOptions, ProgressMessage};

use crate::Cli;

#[derive(Args)]
pub struct BuildArgs {
    /// Name and optionally a tag in the "name:tag" format
    #[arg(short = 't', long = "tag")]
    tags: Vec<String>,
    /// Name of the Dockerfile (default: "PATH/Dockerfile"; - for STDIN)
    #[arg(short = 'f', long = "file")]
    file: Option<String>,
    /// Set build-time variables (NAME=VALUE, or NAME to take it from the environment)
    #[arg(long = "build-arg")]
    build_args: Vec<String>,
    /// Set the target build stage to build
    #[arg(long)]
    target: Option<String>,
    /// Set metadata for an image (KEY=VALUE)
    #[arg(long = "label")]
    labels: Vec<String>,
    /// Set the networking mode for the RUN instructions during build
    #[arg(long, default_value = "default")]
    network: String,
    /// Do not use cache when building the image
    #[arg(long = "no-cache")]
    no_cache: bool,
    /// Always attempt to pull a newer version of the base images
    #[arg(long)]
    pull: bool,
    /// Suppress the build output and print image ID on success
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Set type of progress output (auto, plain, tty)
    #[arg(long, default_value = "auto", value_parser = ["auto", "plain", "tty"])]
    progress: String,
    /// Write the image ID to the file
    #[arg(long)]
    iidfile: Option<PathBuf>,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    platform: Option<String>,
    /// The build context: a directory, or - to read a tar or a Dockerfile from STDIN
    context: String,
}

/// `K=V` pairs; a bare `K` takes its value from the environment (and is left out when
/// the environment has none), as Docker's `--build-arg`.
fn pairs(
    list: &[String],
    from_env: bool,
    what: &str,
) -> Result<std::collections::BTreeMap<String, String>> {
    let mut out = std::collections::BTreeMap::new();
    for item in list {
        match item.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                out.insert(k.to_string(), v.to_string());
            }
            None if from_env && !item.is_empty() => {
                if let Ok(v) = std::env::var(item) {
                    out.insert(item.clone(), v);
                }
            }
            None if !item.is_empty() => {
                out.insert(item.clone(), String::new());
            }
            _ => bail!("invalid {what} {item:?}: NAME=VALUE is expected"),
        }
    }
    Ok(out)
}

fn is_archive(head: &[u8]) -> bool {
    head.starts_with(&[0x1f, 0x8b])
        || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || (head.len() >= 262 && &head[257..262] == b"ustar")
}

pub fn build(cli: &Cli, a: &BuildArgs) -> Result<ExitCode> {
    let api = cli.api()?;
    let mut opts = BuildOptions {
        tags: a.tags.clone(),
        build_args: pairs(&a.build_args, true, "--build-arg")?,
        target: a.target.clone(),
        labels: pairs(&a.labels, false, "--label")?,
        network: Some(a.network.clone()).filter(|n| n != "default"),
        no_cache: a.no_cache,
        pull: a.pull,
        platform: a.platform.clone(),
        quiet: a.quiet,
        ..Default::default()
    };
    for t in &a.tags {
        ketch::api::Reference::parse(t).with_context(|| format!("invalid tag {t:?}"))?;
    }
    let mut stdin_data = None;
    let read_stdin = || -> Result<Vec<u8>> {
        let mut v = Vec::new();
        io::stdin()
            .lock()
            .read_to_end(&mut v)
            .context("read STDIN")?;
        Ok(v)
    };
    let context_dir = if a.context == "-" {
        if a.file.as_deref() == Some("-") {
            bail!("invalid argument: can't use stdin for both build context and dockerfile");
        }
        let data = read_stdin()?;
        if is_archive(&data[..data.len().min(512)]) {
            stdin_data = Some(data);
        } else {
            opts.dockerfile_text =
                Some(String::from_utf8(data).context("the Dockerfile on STDIN is not UTF-8 text")?);
        }
        None
    } else {
        let dir = PathBuf::from(&a.context);
        if !dir.is_dir() {
            bail!("unable to prepare context: path {:?} not found", a.context);
        }
        Some(dir)
    };
    match (a.file.as_deref(), &context_dir) {
        (Some("-"), _) => {
            opts.dockerfile_text = Some(
                String::from_utf8(read_stdin()?)
                    .context("the Dockerfile on STDIN is not UTF-8 text")?,
            );
        }
        (Some(f), Some(dir)) => {
            // Inside the context: named by its path there; elsewhere: sent apart.
            let file = Path::new(f);
            let canon_dir = dir
                .canonicalize()
                .with_context(|| format!("context {}", dir.display()))?;
            let canon = file.canonicalize().with_context(|| {
                format!("unable to prepare context: the Dockerfile {f} cannot be found")
            })?;
            match canon.strip_prefix(&canon_dir) {
                Ok(rel) => opts.dockerfile = Some(rel.to_string_lossy().into_owned()),
                Err(_) => {
                    opts.dockerfile_text =
                        Some(std::fs::read_to_string(&canon).with_context(|| format!("read {f}"))?)
                }
            }
        }
        (Some(f), None) => opts.dockerfile = Some(f.to_string()),
        (None, _) => {}
    }
    let tty = a.progress == "tty" || (a.progress == "auto" && io::stdout().is_terminal());
    let view = (tty && !a.quiet).then(TtyView::start);
    // Stdout is locked per message: the view's ticker thread draws too.
    let mut show = |m: &ProgressMessage| {
        let mut out = io::stdout().lock();
        if a.quiet {
            return;
        }
        if let Some(v) = &view {
            v.take(m);
            return;
        }
        if let Some(s) = &m.stream {
            let _ = out.write_all(s.as_bytes());
        } else if !m.status.is_empty() {
            // A base image being pulled.
            let _ = match &m.id {
                Some(id) => writeln!(out, "{id}: {}", m.status),
                None => writeln!(out, "{}", m.status),
            };
        }
        let _ = out.flush();
    };
    let mut tar;
    let context = match (&context_dir, stdin_data.take()) {
        (Some(d), _) => BuildContext::Dir(d.clone()),
        (None, Some(data)) => {
            tar = io::Cursor::new(data);
            BuildContext::Tar(&mut tar)
        }
        (None, None) => BuildContext::Empty,
    };
    let result = api.image_build(context, &opts, &mut show);
    if let Some(v) = view {
        v.finish(result.is_err());
    }
    let id = match result {
        Ok(id) => id,
        Err(e) => {
            let _ = io::stdout().flush();
            if let Some(code) = e
                .downcast_ref::<ketch::build::BuildError>()
                .and_then(|b| b.exit_code())
            {
                return Err(
                    crate::containers::Exit(code.clamp(1, 255) as u8, e.to_string()).into(),
                );
            }
            return Err(e.into());
        }
    };
    if a.quiet {
        println!("{id}");
    }
    if let Some(f) = &a.iidfile {
        std::fs::write(f, &id).with_context(|| format!("write {}", f.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The live view of a build in a terminal: a line for each step with its state and time,
/// and under the running one its last lines of output, redrawn as they come and as time
/// passes; finished steps stay as they ended.
struct TtyView {
    state: std::sync::Arc<std::sync::Mutex<ViewState>>,
    ticker: Option<std::thread::JoinHandle<()>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

#[derive(Default)]
struct ViewState {
    /// The running step: its title, when it began, whether it came from the cache.
    current: Option<(String, std::time::Instant, bool)>,
    /// Its output so far (all of it, for a step that fails), and a partial last line.
    output: Vec<String>,
    partial: String,
    /// Lines the live region takes on screen now.
    drawn: usize,
    /// Lines that are not steps (warnings, a base image's pull).
    notes: Vec<String>,
    done_text: Vec<String>,
}

const TAIL: usize = 6;

fn width() -> usize {
    crate::containers::terminal_size()
        .map(|(_, w)| w as usize)
        .filter(|w| *w > 20)
        .unwrap_or(80)
}

fn fit(s: &str, w: usize) -> String {
    let s: String = s.chars().filter(|c| !c.is_control()).collect();
    if s.chars().count() <= w {
        s
    } else {
        s.chars().take(w.saturating_sub(1)).collect::<String>() + "…"
    }
}

impl ViewState {
    fn title_line(&self, w: usize) -> Option<String> {
        let (title, began, cached) = self.current.as_ref()?;
        let secs = format!("{:.1}s", began.elapsed().as_secs_f64());
        let state = if *cached { "CACHED " } else { "" };
        let left = fit(
            &format!(" => {state}{title}"),
            w.saturating_sub(secs.len() + 1),
        );
        let pad = w.saturating_sub(left.chars().count() + secs.len());
        Some(format!("{left}{}{secs}", " ".repeat(pad)))
    }

    /// Redraws the live region: the running step and its last lines.
    fn draw(&mut self, out: &mut impl Write) {
        let w = width();
        let mut text = String::new();
        if self.drawn > 0 {
            text.push_str(&format!("\x1b[{}A", self.drawn));
        }
        text.push_str("\r\x1b[J");
        for d in self.done_text.drain(..) {
            text.push_str(&fit(&d, w));
            text.push('\n');
        }
        let mut lines = 0;
        if let Some(t) = self.title_line(w) {
            text.push_str(&t);
            text.push('\n');
            lines += 1;
            let mut tail: Vec<&String> = self.output.iter().rev().take(TAIL).collect();
            tail.reverse();
            for l in tail {
                text.push_str(&fit(&format!(" => => # {l}"), w));
                text.push('\n');
                lines += 1;
            }
        }
        self.drawn = lines;
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }

    /// The running step ends: its line stays, with its time.
    fn end_step(&mut self) {
        let w = width();
        if let Some(t) = self.title_line(w) {
            self.done_text.push(t);
        }
        self.current = None;
        self.output.clear();
        self.partial.clear();
    }
}

impl TtyView {
    fn start() -> TtyView {
        let state = std::sync::Arc::new(std::sync::Mutex::new(ViewState::default()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s, st) = (state.clone(), stop.clone());
        let ticker = std::thread::spawn(move || {
            while !st.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(100));
                let mut v = s.lock().unwrap_or_else(|p| p.into_inner());
                if v.current.is_some() {
                    v.draw(&mut io::stdout().lock());
                }
            }
        });
        TtyView {
            state,
            ticker: Some(ticker),
            stop,
        }
    }

    fn take(&self, m: &ProgressMessage) {
        let mut v = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = &m.stream {
            let text = format!("{}{s}", std::mem::take(&mut v.partial));
            let mut parts: Vec<&str> = text.split('\n').collect();
            let rest = parts.pop().unwrap_or("");
            v.partial = rest.to_string();
            for line in parts {
                if let Some(step) = line.strip_prefix("Step ") {
                    v.end_step();
                    let title = match step.split_once(" : ") {
                        Some((n, t)) => format!("[{n}] {t}"),
                        None => step.to_string(),
                    };
                    v.current = Some((title, std::time::Instant::now(), false));
                } else if line == " ---> Using cache" {
                    if let Some(c) = v.current.as_mut() {
                        c.2 = true;
                    }
                } else if line.starts_with(" ---> ") || line.starts_with("Removing intermediate") {
                    // The step's own bookkeeping: its image, its container.
                } else if line.starts_with("Successfully ")
                    || line.starts_with("[Warning]")
                    || line.starts_with("# Executing")
                {
                    v.end_step();
                    v.notes.push(line.to_string());
                } else if v.current.is_some() {
                    v.output.push(line.to_string());
                } else {
                    v.notes.push(line.to_string());
                }
            }
        } else if !m.status.is_empty() && m.progress_detail.is_none() {
            let line = match &m.id {
                Some(id) => format!("{id}: {}", m.status),
                None => m.status.clone(),
            };
            if v.current.is_some() {
                v.output.push(line);
            } else {
                v.notes.push(line);
            }
        }
        let notes = std::mem::take(&mut v.notes);
        v.done_text.extend(notes);
        v.draw(&mut io::stdout().lock());
    }

    /// Ends the view; after a failure, the failed step's whole output stays on screen.
    fn finish(mut self, failed: bool) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
        let mut v = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let output = std::mem::take(&mut v.output);
        let partial = std::mem::take(&mut v.partial);
        v.end_step();
        if failed {
            let mut all = output;
            if !partial.is_empty() {
                all.push(partial);
            }
            let lines: Vec<String> = all.iter().map(|l| format!(" => => # {l}")).collect();
            v.done_text.extend(lines);
        }
        v.draw(&mut io::stdout().lock());
    }
}
