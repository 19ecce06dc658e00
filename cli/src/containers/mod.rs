//! Container verbs, one file per group as the user meets them: `create`/`run`/`start`,
//! the life after (`stop`, `kill`, `rm` ...), what a container shows (`ps`, `logs`, `stats`
//! ...), `exec`, and its changes (`commit`, `diff`, `export`, `cp`).

mod changes;
mod create;
mod exec;
mod lifecycle;
mod moving;
mod observe;

pub use changes::*;
pub use create::*;
pub use exec::*;
pub use lifecycle::*;
pub use moving::*;
pub use observe::*;

use std::io::{self, BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;
use ketch::network::firewall::PortMap;
use ketch::runtime::{CreateOptions, DeviceMapping};
use ketch::volume::MountSpec;
use serde_json::{Value, json};

use crate::Cli;
use crate::format::{self, Format};
use ketch::api::Api;

/// An error that ends the command with a given exit status, Docker-style.
#[derive(Debug)]
pub struct Exit(pub u8, pub String);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}

impl std::error::Error for Exit {}

/// `run` and `create` fail with 125 (engine) or 126/127 (the command), as Docker's do. A
/// daemon's answer carries only the message, which Docker's CLI reads the same way.
pub fn engine_exit(e: ketch::Error) -> anyhow::Error {
    let code = match &e {
        e if e.is::<ketch::runtime::ContainerError>() => e
            .downcast_ref::<ketch::runtime::ContainerError>()
            .map_or(125, |c| c.exit_code()),
        e if e.is::<ketch::client::ClientError>() => {
            let m = e.to_string();
            if m.contains("executable file not found") || m.contains("no such file or directory") {
                127
            } else if m.contains("permission denied") {
                126
            } else {
                125
            }
        }
        _ => 125,
    };
    Exit(code as u8, e.to_string()).into()
}

pub fn each(names: &[String], mut f: impl FnMut(&str) -> ketch::Result<()>) -> Result<ExitCode> {
    let mut code = ExitCode::SUCCESS;
    for n in names {
        match f(n) {
            Ok(()) => println!("{n}"),
            Err(e) => {
                eprintln!("Error response from daemon: {e}");
                code = ExitCode::from(1);
            }
        }
    }
    Ok(code)
}

/// A signal by name (`KILL`, `SIGTERM`) or number.
pub fn parse_signal(s: &str) -> Result<i32> {
    ketch::runtime::signal_number(s).ok_or_else(|| anyhow::anyhow!("invalid signal: {s}"))
}
