//! `container move` (`mv`): a container taken to another engine.

use super::*;

#[derive(Args)]
pub struct MoveArgs {
    /// Named volumes only this container uses go with it (shared ones are refused)
    #[arg(long)]
    with_volumes: bool,
    /// Its name at the destination
    #[arg(long)]
    name: Option<String>,
    /// Do not start it at the destination, even if it ran
    #[arg(long)]
    no_start: bool,
    /// Freeze it while it is copied, kill it after (the shortest stop)
    #[arg(long)]
    freeze: bool,
    /// Move it with its memory (CRIU checkpoint and restore) where both hosts can
    #[arg(long)]
    live: bool,
    container: String,
    /// The engine it goes to: unix:///PATH or tcp://HOST:PORT (with the --tls* options)
    destination: String,
}

pub fn move_container(cli: &Cli, a: &MoveArgs) -> Result<ExitCode> {
    let dest = ketch::client::Client::new(&a.destination, cli.tls_files().as_ref())
        .map_err(|e| Exit(125, format!("destination: {e}")))?;
    let opts = ketch::api::MoveOptions {
        with_volumes: a.with_volumes,
        name: a.name.clone(),
        no_start: a.no_start,
        freeze: a.freeze,
        live: a.live,
    };
    let tty = io::stderr().is_terminal();
    let mut last = String::new();
    let mut show = |p: &ketch::api::MoveProgress| {
        let mut err = io::stderr().lock();
        if tty {
            // One line, redrawn: the step and the bytes sent so far.
            let _ = write!(
                err,
                "\r\x1b[2K{}: {} ({} sent)",
                a.container,
                p.step,
                ketch::model::human_bytes(p.bytes)
            );
            let _ = err.flush();
        } else if p.step != last {
            let _ = writeln!(err, "{}: {}", a.container, p.step);
            last = p.step.clone();
        }
    };
    let moved = cli
        .api()?
        .container_move(&a.container, &dest, &opts, &mut show);
    if tty {
        eprintln!();
    }
    let report = moved.map_err(|e| Exit(1, format!("Error response from daemon: {e}")))?;
    println!("{}", report.id);
    Ok(ExitCode::SUCCESS)
}
