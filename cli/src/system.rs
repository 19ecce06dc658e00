//! `system df` and `system prune`.

use std::io::{self, BufRead, Write};
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::json;

use crate::Cli;
use crate::format::{self, Format};

#[derive(Subcommand)]
pub enum SystemCommand {
    /// Show ketch disk usage
    Df(DfArgs),
    /// Remove unused data
    Prune(PruneArgs),
}

#[derive(Args)]
pub struct DfArgs {
    /// Show detailed information on space usage
    #[arg(short, long)]
    verbose: bool,
    /// Format output using a custom template ('table', 'json', or a Go template)
    #[arg(long)]
    format: Option<String>,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Remove all unused images not just dangling ones
    #[arg(short, long)]
    all: bool,
    /// Prune anonymous volumes
    #[arg(long)]
    volumes: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
}

pub fn run(cli: &Cli, c: &SystemCommand) -> Result<ExitCode> {
    match c {
        SystemCommand::Df(a) => df(cli, a),
        SystemCommand::Prune(a) => prune(cli, a),
    }
}

fn pct(part: i64, total: i64) -> String {
    if total == 0 {
        format::human_size(part)
    } else {
        format!("{} ({}%)", format::human_size(part), part * 100 / total)
    }
}

fn df(cli: &Cli, a: &DfArgs) -> Result<ExitCode> {
    let u = cli.api()?.system_df()?;
    let mut out = io::stdout().lock();
    if a.verbose {
        writeln!(out, "Images space usage:\n")?;
        let rows: Vec<_> = u
            .images
            .iter()
            .map(|i| {
                let (repo, tag) = i
                    .repo_tags
                    .first()
                    .and_then(|t| t.rsplit_once(':'))
                    .map_or(("<none>".to_string(), "<none>".to_string()), |(r, t)| {
                        (r.to_string(), t.to_string())
                    });
                json!({
                    "Repository": repo, "Tag": tag,
                    "ID": i.id.trim_start_matches("sha256:").chars().take(12).collect::<String>(),
                    "Created": format::since(i.created),
                    "Size": format::human_size(i.size),
                    "Containers": i.containers.to_string(),
                })
            })
            .collect();
        format::print_rows(
            &mut out,
            &Format::Table(None),
            &[
                ("REPOSITORY", "Repository"),
                ("TAG", "Tag"),
                ("IMAGE ID", "ID"),
                ("CREATED", "Created"),
                ("SIZE", "Size"),
                ("CONTAINERS", "Containers"),
            ],
            &rows,
        )?;
        writeln!(out, "\nContainers space usage:\n")?;
        let rows: Vec<_> = u
            .containers
            .iter()
            .map(|c| {
                json!({
                    "ID": c.id.chars().take(12).collect::<String>(), "Image": c.image,
                    "Command": format!("\"{}\"", format::ellipsis(&c.command, 20)),
                    "Size": format::human_size(c.size_rw), "Status": c.status,
                    "Names": c.names.join(",").trim_start_matches('/').to_string(),
                })
            })
            .collect();
        format::print_rows(
            &mut out,
            &Format::Table(None),
            &[
                ("CONTAINER ID", "ID"),
                ("IMAGE", "Image"),
                ("COMMAND", "Command"),
                ("SIZE", "Size"),
                ("STATUS", "Status"),
                ("NAMES", "Names"),
            ],
            &rows,
        )?;
        writeln!(out, "\nLocal Volumes space usage:\n")?;
        let rows: Vec<_> = u
            .volumes
            .iter()
            .map(|v| json!({"Name": v.name, "Links": v.ref_count.to_string(), "Size": format::human_size(v.size)}))
            .collect();
        format::print_rows(
            &mut out,
            &Format::Table(None),
            &[
                ("VOLUME NAME", "Name"),
                ("LINKS", "Links"),
                ("SIZE", "Size"),
            ],
            &rows,
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let images_total: i64 = u.images.iter().map(|i| i.size).sum();
    let images_unused: i64 = u
        .images
        .iter()
        .filter(|i| i.containers == 0)
        .map(|i| i.size)
        .sum();
    let ctr_total: i64 = u.containers.iter().map(|c| c.size_rw).sum();
    let ctr_idle: i64 = u
        .containers
        .iter()
        .filter(|c| c.state != "running" && c.state != "paused")
        .map(|c| c.size_rw)
        .sum();
    let vol_total: i64 = u.volumes.iter().map(|v| v.size).sum();
    let vol_unused: i64 = u
        .volumes
        .iter()
        .filter(|v| v.ref_count == 0)
        .map(|v| v.size)
        .sum();
    let rows = vec![
        json!({"Type": "Images", "TotalCount": u.images.len().to_string(),
               "Active": u.images.iter().filter(|i| i.containers > 0).count().to_string(),
               "Size": format::human_size(images_total), "Reclaimable": pct(images_unused, images_total)}),
        json!({"Type": "Containers", "TotalCount": u.containers.len().to_string(),
               "Active": u.containers.iter().filter(|c| c.state == "running" || c.state == "paused").count().to_string(),
               "Size": format::human_size(ctr_total), "Reclaimable": pct(ctr_idle, ctr_total)}),
        json!({"Type": "Local Volumes", "TotalCount": u.volumes.len().to_string(),
               "Active": u.volumes.iter().filter(|v| v.ref_count > 0).count().to_string(),
               "Size": format::human_size(vol_total), "Reclaimable": pct(vol_unused, vol_total)}),
        json!({"Type": "Build Cache", "TotalCount": "0", "Active": "0", "Size": "0B", "Reclaimable": "0B"}),
    ];
    format::print_rows(
        &mut out,
        &Format::parse(a.format.as_deref()),
        &[
            ("TYPE", "Type"),
            ("TOTAL", "TotalCount"),
            ("ACTIVE", "Active"),
            ("SIZE", "Size"),
            ("RECLAIMABLE", "Reclaimable"),
        ],
        &rows,
    )?;
    Ok(ExitCode::SUCCESS)
}

fn prune(cli: &Cli, a: &PruneArgs) -> Result<ExitCode> {
    if !a.force {
        let mut what = vec![
            "all stopped containers",
            "all networks not used by at least one container",
        ];
        if a.volumes {
            what.push("all anonymous volumes not used by at least one container");
        }
        what.push(if a.all {
            "all images without at least one container associated to them"
        } else {
            "all dangling images"
        });
        print!(
            "WARNING! This will remove:\n  - {}\n\nAre you sure you want to continue? [y/N] ",
            what.join("\n  - ")
        );
        io::stdout().flush()?;
        let mut answer = String::new();
        io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let r = cli.api()?.system_prune(a.all, a.volumes)?;
    let mut out = io::stdout().lock();
    let section = |out: &mut dyn Write, title: &str, items: &[String]| -> io::Result<()> {
        if !items.is_empty() {
            writeln!(out, "{title}:")?;
            for i in items {
                writeln!(out, "{i}")?;
            }
            writeln!(out)?;
        }
        Ok(())
    };
    section(&mut out, "Deleted Containers", &r.containers_deleted)?;
    section(&mut out, "Deleted Networks", &r.networks_deleted)?;
    section(&mut out, "Deleted Volumes", &r.volumes_deleted)?;
    let images: Vec<String> = r
        .images_deleted
        .iter()
        .flat_map(|i| {
            i.untagged
                .iter()
                .map(|u| format!("untagged: {u}"))
                .chain(i.deleted.iter().map(|d| format!("deleted: {d}")))
        })
        .collect();
    section(&mut out, "Deleted Images", &images)?;
    writeln!(
        out,
        "Total reclaimed space: {}",
        format::human_size(r.space_reclaimed)
    )?;
    Ok(ExitCode::SUCCESS)
}
