//! Image verbs: import, load, save, images, tag, rmi, history, inspect, image prune.

use std::io::{self, BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use ketch::image::{ImportOptions, ListOptions, LoadSource, SaveDest, SaveFormat};
use serde_json::{Value, json};

use crate::Cli;
use crate::format::{self, Format};

#[derive(Args)]
pub struct ImportArgs {
    /// Apply Dockerfile instruction to the created image
    #[arg(short = 'c', long = "change")]
    change: Vec<String>,
    /// Set commit message for imported image
    #[arg(short = 'm', long)]
    message: Option<String>,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    platform: Option<String>,
    /// Tarball to import, or - for STDIN
    file: String,
    /// REPOSITORY[:TAG]
    reference: Option<String>,
}

pub fn import(cli: &Cli, a: &ImportArgs) -> Result<ExitCode> {
    if let Some(p) = &a.platform
        && p != "linux/amd64"
        && p != "linux"
        && !p.ends_with(std::env::consts::ARCH)
    {
        bail!("platform {p:?} is not supported on this host");
    }
    let engine = cli.api()?;
    let opts = ImportOptions {
        reference: a.reference.clone(),
        changes: a.change.clone(),
        message: a.message.clone(),
        source: a.file.clone(),
    };
    let id = if a.file == "-" {
        engine.image_import(&mut io::stdin(), &opts)?
    } else {
        let mut f = std::fs::File::open(&a.file).with_context(|| format!("open {}", a.file))?;
        engine.image_import(&mut f, &opts)?
    };
    println!("{id}");
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct LoadArgs {
    /// Read from tar archive file (or an OCI layout directory), instead of STDIN
    #[arg(short = 'i', long)]
    input: Option<PathBuf>,
    /// Suppress the load output
    #[arg(short = 'q', long)]
    quiet: bool,
}

pub fn load(cli: &Cli, a: &LoadArgs) -> Result<ExitCode> {
    if a.input.is_none() && io::stdin().is_terminal() {
        bail!("requested load from stdin, but stdin is empty");
    }
    let engine = cli.api()?;
    let loaded = match &a.input {
        Some(p) => engine.image_load(LoadSource::Path(p))?,
        None => engine.image_load(LoadSource::Reader(&mut io::stdin()))?,
    };
    if !a.quiet {
        for line in loaded {
            println!("{line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct SaveArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short = 'o', long)]
    output: Option<PathBuf>,
    /// docker-archive (default; also an OCI layout), oci-archive, or oci-dir
    #[arg(long, default_value = "docker-archive")]
    format: String,
    #[arg(required = true)]
    images: Vec<String>,
}

pub fn save(cli: &Cli, a: &SaveArgs) -> Result<ExitCode> {
    let format: SaveFormat = a.format.parse().map_err(ketch::Error::from)?;
    let engine = cli.api()?;
    match &a.output {
        Some(p) => engine.image_save(&a.images, format, SaveDest::Path(p))?,
        None => {
            if io::stdout().is_terminal() {
                bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
            }
            let stdout = io::stdout();
            let mut lock = stdout.lock();
            engine.image_save(&a.images, format, SaveDest::Writer(&mut lock))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct ListArgs {
    /// Show all images (default hides intermediate images)
    #[arg(short = 'a', long)]
    all: bool,
    /// Show digests
    #[arg(long)]
    digests: bool,
    /// Filter output based on conditions provided (dangling=true|false, reference=REPO[:TAG])
    #[arg(short = 'f', long = "filter")]
    filter: Vec<String>,
    /// Format output: table, json, or a Go template
    #[arg(long)]
    format: Option<String>,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Only show image IDs
    #[arg(short = 'q', long)]
    quiet: bool,
    /// REPOSITORY[:TAG]
    reference: Option<String>,
}

fn short_id(id: &str, no_trunc: bool) -> String {
    if no_trunc {
        id.to_string()
    } else {
        id.trim_start_matches("sha256:").chars().take(12).collect()
    }
}

pub fn list(cli: &Cli, a: &ListArgs) -> Result<ExitCode> {
    let mut opts = ListOptions {
        all: a.all,
        reference: a.reference.clone(),
        ..Default::default()
    };
    for f in &a.filter {
        match f.split_once('=') {
            Some(("dangling", v)) => {
                opts.dangling = Some(match v {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => bail!("invalid filter 'dangling={v}'"),
                })
            }
            Some(("reference", v)) => opts.reference = Some(v.to_string()),
            _ => bail!("invalid filter {f:?} (supported: dangling=, reference=)"),
        }
    }
    let engine = cli.api()?;
    let images = engine.image_list(&opts)?;
    let mut out = io::stdout().lock();
    if a.quiet {
        let mut seen = std::collections::HashSet::new();
        for i in &images {
            if seen.insert(&i.id) {
                writeln!(out, "{}", short_id(&i.id, a.no_trunc))?;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = Vec::new();
    for i in &images {
        let digest = i
            .repo_digests
            .first()
            .and_then(|d| d.split_once('@'))
            .map_or("<none>".to_string(), |(_, d)| d.to_string());
        // As Docker lists them: an image pulled by digest only shows its repositories with
        // no tag.
        let tags: Vec<(String, String)> = if i.repo_tags.is_empty() {
            let mut repos: Vec<(String, String)> = i
                .repo_digests
                .iter()
                .filter_map(|d| d.split_once('@'))
                .map(|(r, _)| (r.to_string(), "<none>".to_string()))
                .collect();
            repos.dedup();
            if repos.is_empty() {
                repos.push(("<none>".into(), "<none>".into()));
            }
            repos
        } else {
            i.repo_tags
                .iter()
                .map(|t| match t.rsplit_once(':') {
                    Some((r, tag)) if !tag.contains('/') => (r.to_string(), tag.to_string()),
                    _ => (t.clone(), "<none>".into()),
                })
                .collect()
        };
        for (repo, tag) in tags {
            if let Some(f) = &opts.reference
                && repo != "<none>"
                && !tag_matches(&repo, &tag, f)
            {
                continue;
            }
            rows.push(json!({
                "Containers": if i.containers < 0 { "N/A".to_string() } else { i.containers.to_string() },
                "CreatedAt": format::go_time(i.created),
                "CreatedSince": format::since(i.created),
                "Digest": digest,
                "ID": short_id(&i.id, a.no_trunc),
                "Repository": repo,
                "SharedSize": "N/A",
                "Size": format::human_size(i.size),
                "Tag": tag,
                "UniqueSize": "N/A",
                "VirtualSize": format::human_size(i.size),
            }));
        }
    }
    let mut columns = vec![("REPOSITORY", "Repository"), ("TAG", "Tag")];
    if a.digests {
        columns.push(("DIGEST", "Digest"));
    }
    columns.extend([
        ("IMAGE ID", "ID"),
        ("CREATED", "CreatedSince"),
        ("SIZE", "Size"),
    ]);
    format::print_rows(
        &mut out,
        &Format::parse(a.format.as_deref()),
        &columns,
        &rows,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Whether a `repo:tag` row matches a `REPO[:TAG]` filter given by the user.
fn tag_matches(repo: &str, tag: &str, filter: &str) -> bool {
    let (Ok(row), Ok(f)) = (
        ketch::reference::Reference::parse(&format!("{repo}:{tag}")),
        ketch::reference::Reference::parse(filter),
    ) else {
        return false;
    };
    row.name() == f.name() && f.tag().is_none_or(|t| Some(t) == row.tag())
}

#[derive(Args)]
pub struct TagArgs {
    source: String,
    target: String,
}

pub fn tag(cli: &Cli, a: &TagArgs) -> Result<ExitCode> {
    cli.api()?.image_tag(&a.source, &a.target)?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct RmiArgs {
    /// Force removal of the image
    #[arg(short = 'f', long)]
    force: bool,
    /// Do not delete untagged parents
    #[arg(long)]
    no_prune: bool,
    #[arg(required = true)]
    images: Vec<String>,
}

pub fn rmi(cli: &Cli, a: &RmiArgs) -> Result<ExitCode> {
    let engine = cli.api()?;
    let mut code = ExitCode::SUCCESS;
    for name in &a.images {
        match engine.image_remove(name, a.force) {
            Ok(items) => {
                for i in items {
                    if let Some(u) = i.untagged {
                        println!("Untagged: {u}");
                    }
                    if let Some(d) = i.deleted {
                        println!("Deleted: {d}");
                    }
                }
            }
            Err(e) => {
                eprintln!("Error: {e}");
                code = ExitCode::from(1);
            }
        }
    }
    Ok(code)
}

#[derive(Args)]
pub struct HistoryArgs {
    /// Print sizes and dates in human readable format
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set)]
    human: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Only show image IDs
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Format output: table, json, or a Go template
    #[arg(long)]
    format: Option<String>,
    image: String,
}

pub fn history(cli: &Cli, a: &HistoryArgs) -> Result<ExitCode> {
    let items = cli.api()?.image_history(&a.image)?;
    let mut out = io::stdout().lock();
    if a.quiet {
        for i in &items {
            writeln!(
                out,
                "{}",
                if i.id.starts_with("sha256:") {
                    short_id(&i.id, a.no_trunc)
                } else {
                    i.id.clone()
                }
            )?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Value> = items
        .iter()
        .map(|i| {
            let created_by = if a.no_trunc { i.created_by.clone() } else { format::ellipsis(&i.created_by, 45) };
            json!({
                "ID": if i.id.starts_with("sha256:") { short_id(&i.id, a.no_trunc) } else { i.id.clone() },
                "CreatedSince": if a.human { format::since(i.created) } else { format::go_time(i.created) },
                "CreatedAt": format::go_time(i.created),
                "CreatedBy": created_by,
                "Size": if a.human { format::human_size(i.size) } else { i.size.to_string() },
                "Comment": i.comment,
            })
        })
        .collect();
    let columns = [
        ("IMAGE", "ID"),
        ("CREATED", "CreatedSince"),
        ("CREATED BY", "CreatedBy"),
        ("SIZE", "Size"),
        ("COMMENT", "Comment"),
    ];
    format::print_rows(
        &mut out,
        &Format::parse(a.format.as_deref()),
        &columns,
        &rows,
    )?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Clone)]
pub struct InspectArgs {
    /// Format output using a Go template, or json
    #[arg(short = 'f', long)]
    format: Option<String>,
    #[arg(skip)]
    pub containers_too: bool,
    #[arg(required = true)]
    names: Vec<String>,
}

pub fn inspect(cli: &Cli, a: &InspectArgs) -> Result<ExitCode> {
    let engine = cli.api()?;
    let mut found = Vec::new();
    let mut code = ExitCode::SUCCESS;
    for n in &a.names {
        // Like Docker: a container of that name first, then an image.
        if a.containers_too
            && let Ok(c) = engine.container_inspect(n)
        {
            found.push(c);
            continue;
        }
        match engine.image_inspect(n) {
            Ok(i) => found.push(serde_json::to_value(i)?),
            Err(e) => {
                eprintln!("Error: {e}");
                code = ExitCode::from(1);
            }
        }
    }
    format::print_inspect(&found, a.format.as_deref())?;
    Ok(code)
}

#[derive(Args)]
pub struct PruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short = 'a', long)]
    all: bool,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    force: bool,
}

pub fn prune(cli: &Cli, a: &PruneArgs) -> Result<ExitCode> {
    if !a.force {
        let warning = if a.all {
            "WARNING! This will remove all images without at least one container associated to them."
        } else {
            "WARNING! This will remove all dangling images."
        };
        print!("{warning}\nAre you sure you want to continue? [y/N] ");
        io::stdout().flush()?;
        let mut answer = String::new();
        io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let report = cli.api()?.image_prune(a.all)?;
    if !report.images_deleted.is_empty() {
        println!("Deleted Images:");
        for i in &report.images_deleted {
            if let Some(u) = &i.untagged {
                println!("untagged: {u}");
            }
            if let Some(d) = &i.deleted {
                println!("deleted: {d}");
            }
        }
        println!();
    }
    println!(
        "Total reclaimed space: {}",
        format::human_size(report.space_reclaimed)
    );
    Ok(ExitCode::SUCCESS)
}
