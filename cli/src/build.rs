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
    let tty = io::stdout().is_terminal() && a.progress != "plain";
    let _ = tty;
    let mut out = io::stdout().lock();
    let mut show = |m: &ProgressMessage| {
        if a.quiet {
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
    let id = match api.image_build(context, &opts, &mut show) {
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
