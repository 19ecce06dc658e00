//! `stop`, `restart`, `kill`, `wait`, `rm`, `pause`, `unpause`, `rename` and `prune`.

use super::*;

#[derive(Args)]
pub struct StopArgs {
    /// Seconds to wait before killing the container (default: its stop timeout, else 10)
    #[arg(short = 't', long)]
    time: Option<u64>,
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn stop(cli: &Cli, a: &StopArgs) -> Result<ExitCode> {
    let engine = cli.api()?;
    each(&a.containers, |n| {
        engine.container_stop(n, a.time.map(Duration::from_secs))
    })
}

pub fn restart(cli: &Cli, a: &StopArgs) -> Result<ExitCode> {
    let engine = cli.api()?;
    each(&a.containers, |n| {
        engine.container_restart(n, a.time.map(Duration::from_secs))
    })
}

#[derive(Args)]
pub struct KillArgs {
    /// Signal to send to the container
    #[arg(short = 's', long, default_value = "KILL")]
    signal: String,
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn kill(cli: &Cli, a: &KillArgs) -> Result<ExitCode> {
    let sig = parse_signal(&a.signal)?;
    let engine = cli.api()?;
    each(&a.containers, |n| engine.container_kill(n, sig))
}

#[derive(Args)]
pub struct WaitArgs {
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn wait(cli: &Cli, a: &WaitArgs) -> Result<ExitCode> {
    let engine = cli.api()?;
    let mut code = ExitCode::SUCCESS;
    for n in &a.containers {
        match engine.container_wait(n) {
            Ok(c) => println!("{c}"),
            Err(e) => {
                eprintln!("Error response from daemon: {e}");
                code = ExitCode::from(1);
            }
        }
    }
    Ok(code)
}

#[derive(Args)]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short = 'f', long)]
    force: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short = 'v', long)]
    volumes: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn rm(cli: &Cli, a: &RmArgs) -> Result<ExitCode> {
    let engine = cli.api()?;
    each(&a.containers, |n| {
        engine.container_remove(n, a.force, a.volumes)
    })
}

#[derive(Args)]
pub struct NamesArgs {
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn pause(cli: &Cli, a: &NamesArgs) -> Result<ExitCode> {
    let engine = cli.api()?;
    each(&a.containers, |n| engine.container_pause(n))
}

pub fn unpause(cli: &Cli, a: &NamesArgs) -> Result<ExitCode> {
    let engine = cli.api()?;
    each(&a.containers, |n| engine.container_unpause(n))
}

#[derive(Args)]
pub struct RenameArgs {
    container: String,
    new_name: String,
}

pub fn rename(cli: &Cli, a: &RenameArgs) -> Result<ExitCode> {
    cli.api()?.container_rename(&a.container, &a.new_name)?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    force: bool,
}

pub fn prune(cli: &Cli, a: &PruneArgs) -> Result<ExitCode> {
    if !a.force {
        print!(
            "WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] "
        );
        io::stdout().flush()?;
        let mut answer = String::new();
        io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let removed = cli.api()?.container_prune()?;
    if !removed.is_empty() {
        println!("Deleted Containers:");
        for id in &removed {
            println!("{id}");
        }
        println!();
    }
    println!("Total reclaimed space: 0B");
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct UpdateArgs {
    #[command(flatten)]
    limits: ResourceArgs,
    /// Restart policy to apply when a container exits
    #[arg(long)]
    restart: Option<String>,
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn update(cli: &Cli, a: &UpdateArgs) -> Result<ExitCode> {
    let u = ketch::api::UpdateOptions {
        resources: a.limits.resources()?,
        restart: a.restart.clone(),
    };
    let api = cli.api()?;
    each(&a.containers, |n| api.container_update(n, &u))
}
