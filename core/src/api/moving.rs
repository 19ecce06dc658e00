//! `container move`: a container taken from this engine to another, in an order that never
//! loses it. The mover is the engine the container is in; the destination is any [`Api`]
//! (a daemon's client, in practice).
//!
//! 1. The plan ([`MovePlan`]): the container, its image's blobs, the volumes that go with
//!    it, its networks. Refused here where the container depends on others.
//! 2. The destination's check ([`MoveCheck`]): refused there (a name or volume it has, a
//!    network of another kind) before anything is stopped; the blobs it lacks.
//! 3. The container stops (its stop signal and timeout), or is frozen (`--freeze`) and
//!    killed once copied (it runs no further than what was copied). Its directory notes
//!    that it ran.
//! 4. One stream, every part verified by digest on arrival; the destination makes the
//!    container whole or not at all.
//! 5. It starts at the destination, if it ran, and the destination says it runs.
//! 6. Only then is it removed here, with the volumes that went.
//!
//! A failure in 4 or 5 takes back what the destination made and runs the container here
//! again as it was. A mover killed at any step leaves the container here whole (stopped,
//! at worst) and the destination with nothing half made (a stream cut short is undone
//! there); run again, the move finds an earlier attempt's whole container at the
//! destination and completes from there.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;

use serde::{Deserialize, Serialize};

use crate::api::Api;
use crate::engine::Engine;
use crate::error::Result;
pub use crate::runtime::moving::{MoveCheck, MovePlan, MoveReceipt};

/// What `container move` takes besides the container and the destination.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct MoveOptions {
    /// Named volumes only this container uses go with it (shared ones are refused).
    pub with_volumes: bool,
    /// Its name at the destination (its own when `None`).
    pub name: Option<String>,
    /// Not started at the destination, even if it ran.
    pub no_start: bool,
    /// Frozen while it is copied, killed after: the shortest stop, with the file system
    /// held still (no stop signal: it would run on past the copy).
    pub freeze: bool,
    /// With its memory (checkpoint and restore by CRIU), where both ends can.
    pub live: bool,
}

/// A step of a move, for a progress display.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MoveProgress {
    /// What is being done.
    pub step: String,
    /// Bytes sent to the destination so far.
    pub bytes: u64,
}

/// A move done.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MoveReport {
    /// The container at the destination.
    pub id: String,
    pub name: String,
    /// Whether it runs there.
    pub running: bool,
    /// Bytes sent.
    pub bytes: u64,
}

/// Where the destination is, for a mover that is not this process (a daemon the move is
/// asked of): its URL and what to reach it with over TLS, the PEM text of the CA, the
/// certificate and the key as the asker has them (a daemon on another host has none of the
/// asker's files).
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Destination {
    pub url: String,
    #[serde(default)]
    pub tls_ca: Option<String>,
    #[serde(default)]
    pub tls_cert: Option<String>,
    #[serde(default)]
    pub tls_key: Option<String>,
    #[serde(default)]
    pub tls_verify: bool,
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Destination")
            .field("url", &self.url)
            .field("tls", &self.tls_ca.is_some())
            .field("tls_verify", &self.tls_verify)
            .finish()
    }
}

impl Destination {
    /// The destination as the engine at `url` reached with `tls`, the files read here.
    pub fn read(url: &str, tls: Option<&crate::tls::TlsFiles>) -> Result<Destination> {
        let read = |p: &Option<std::path::PathBuf>| {
            p.as_ref()
                .map(|p| {
                    std::fs::read_to_string(p)
                        .map_err(|e| crate::Error::io(format!("read {}", p.display()), e))
                })
                .transpose()
        };
        Ok(Destination {
            url: url.to_string(),
            tls_ca: tls.map(|t| read(&t.ca)).transpose()?.flatten(),
            tls_cert: tls.map(|t| read(&t.cert)).transpose()?.flatten(),
            tls_key: tls.map(|t| read(&t.key)).transpose()?.flatten(),
            tls_verify: tls.is_some_and(|t| t.verify),
        })
    }
}

/// What a failed write of the stream says (`send`).
const SEND: &str = "send the move stream";

/// A socket written without SIGPIPE: a destination that hangs up is an error to report,
/// not the end of a process that embeds the engine.
struct NoSigpipe(OwnedFd);

impl Write for NoSigpipe {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use std::os::fd::AsRawFd;
        // SAFETY: a send from a buffer of this length on a descriptor this value owns.
        let n = unsafe {
            libc::send(
                self.0.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// For the tests that kill a mover at each step: with `KETCH_TEST_MOVE_STALL` set to a
/// step's name (`stopped`, `sending`, `received`, `started`), the mover says so on stderr
/// there and waits to be killed.
fn stall(at: &str) {
    if std::env::var("KETCH_TEST_MOVE_STALL").is_ok_and(|s| s == at) {
        eprintln!("move stalled at {at}");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

fn refused(reason: impl Into<String>) -> crate::Error {
    crate::runtime::ContainerError::Invalid {
        reason: reason.into(),
    }
    .into()
}

/// `criu check` on this host: `Err` with why a live move cannot be made here.
pub fn criu_check() -> std::result::Result<(), String> {
    match std::process::Command::new("criu").arg("check").output() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err("CRIU is not installed (no criu on PATH)".into())
        }
        Err(e) => Err(format!("criu check could not run: {e}")),
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stderr).trim().to_string();
            let last = text.lines().last().unwrap_or("").to_string();
            Err(format!("criu check fails: {last}"))
        }
    }
}

impl Engine {
    /// Moves container `name` to `dest` (see the module's documentation).
    pub fn move_container(
        &self,
        name: &str,
        dest: &dyn Api,
        opts: &MoveOptions,
        progress: &mut dyn FnMut(&MoveProgress),
    ) -> Result<MoveReport> {
        let containers = self.containers();
        let mut bytes = 0u64;
        let mut say = |step: &str, b: u64| {
            progress(&MoveProgress {
                step: step.to_string(),
                bytes: b,
            })
        };
        if opts.live {
            criu_check().map_err(|why| {
                refused(format!("a live move needs CRIU on both hosts; here, {why}"))
            })?;
            dest.container_move_live_check()
                .map_err(|e| refused(format!("a live move needs CRIU on both hosts: {e}")))?;
            return Err(refused(
                "a live move needs checkpoint and restore of the container's mounts and network, which this engine does not do yet; move it without --live",
            ));
        }
        say("planning", 0);
        let plan = containers.move_plan(name, opts.with_volumes, opts.name.as_deref())?;
        say("checking the destination", 0);
        let mut check = dest.container_move_check(&plan)?;
        let here = containers.get(&plan.record.id)?;
        let ran_since = here.is_running()
            && !(here.status == crate::runtime::Status::Paused
                && containers.frozen_by_move(&plan.record.id)?);
        if let Some(stale) = &check.done
            && ran_since
        {
            // An earlier attempt's copy, but the container ran here again since (not just
            // frozen by that attempt): the copy is older than it. It goes, and the move
            // starts over.
            self.undo_there(dest, &plan, stale);
            check = dest.container_move_check(&plan)?;
        }
        let receipt = match check.done {
            // An earlier attempt got the container there whole: go on from there (the
            // container here, if that attempt froze it, killed as it would have been).
            Some(id) => {
                if here.status == crate::runtime::Status::Paused {
                    say("stopping", 0);
                    if let Err(e) = containers.stop_frozen(&plan.record.id) {
                        self.restore(&plan, true, plan.running);
                        return Err(e);
                    }
                }
                MoveReceipt {
                    id,
                    name: plan.name.clone(),
                }
            }
            None => {
                let now = containers.get(&plan.record.id)?;
                let up_now = now.is_running();
                // A paused container is held still already: it goes as a frozen one. Thawed
                // on failure only if a move froze it (an earlier one, killed midway).
                let paused = now.status == crate::runtime::Status::Paused;
                let held = up_now && (paused || opts.freeze);
                let thaw = if paused {
                    containers.frozen_by_move(&plan.record.id)?
                } else {
                    held
                };
                if up_now {
                    containers.mark_moving(&plan.record.id, true, thaw)?;
                }
                if up_now && !paused {
                    if opts.freeze {
                        say("freezing", 0);
                        if let Err(e) = containers.pause(&plan.record.id) {
                            let _ = containers.unmark_moving(&plan.record.id);
                            return Err(e);
                        }
                    } else {
                        say("stopping", 0);
                        if let Err(e) = containers.stop(&plan.record.id, None) {
                            self.restore(&plan, false, plan.running);
                            return Err(e);
                        }
                    }
                }
                stall("stopped");
                let sent = self.send(&plan, &check, dest, &mut |s, b| {
                    bytes = b;
                    say(s, b);
                    // Mid-stream: the image and the volumes are there, the layer not yet.
                    if s == "writable layer" {
                        stall("sending");
                    }
                });
                let receipt = match sent {
                    Ok(r) => r,
                    Err(e) => {
                        self.restore(&plan, thaw, plan.running);
                        return Err(e);
                    }
                };
                if held {
                    say("stopping", bytes);
                    if let Err(e) = containers.stop_frozen(&plan.record.id) {
                        self.undo_there(dest, &plan, &receipt.id);
                        self.restore(&plan, thaw, plan.running);
                        return Err(e);
                    }
                }
                receipt
            }
        };
        stall("received");
        // Stopped here, it gives back its addresses: on an overlay network, the one it
        // keeps there. (Started again here if the move fails, it takes them back.)
        if let Err(e) = containers.release_unused(&plan.record.id) {
            self.undo_there(dest, &plan, &receipt.id);
            self.restore(&plan, false, plan.running);
            return Err(e);
        }
        let mut running = false;
        if plan.running && !opts.no_start {
            say("starting at the destination", bytes);
            let started = dest.container_start(&receipt.id).and_then(|()| {
                let v = dest.container_inspect(&receipt.id)?;
                if v["State"]["Running"].as_bool() == Some(true) {
                    Ok(())
                } else {
                    Err(refused(format!(
                        "container {} does not run at the destination (status {})",
                        receipt.name, v["State"]["Status"]
                    )))
                }
            });
            if let Err(e) = started {
                self.undo_there(dest, &plan, &receipt.id);
                self.restore(&plan, false, plan.running);
                return Err(e);
            }
            running = true;
        }
        stall("started");
        say("removing the source", bytes);
        containers.remove_with(&plan.record.id, true, false)?;
        for v in &plan.volumes {
            self.volumes().remove(&v.name, true)?;
        }
        say("done", bytes);
        Ok(MoveReport {
            id: receipt.id,
            name: receipt.name,
            running,
            bytes,
        })
    }

    /// The stream of the container to the destination, as the destination reads it.
    fn send(
        &self,
        plan: &MovePlan,
        check: &MoveCheck,
        dest: &dyn Api,
        progress: &mut dyn FnMut(&str, u64),
    ) -> Result<MoveReceipt> {
        let (r, w) = std::os::unix::net::UnixStream::pair()
            .map_err(|e| crate::Error::io("make a socket pair", e))?;
        let mut reader = r;
        std::thread::scope(|s| {
            let receiver = s.spawn(move || dest.container_move_in(&mut reader));
            let sent = {
                let mut out =
                    std::io::BufWriter::with_capacity(1 << 20, NoSigpipe(OwnedFd::from(w)));
                self.containers()
                    .move_out(plan, &check.missing, &mut out, progress)
                // Closed here: the destination sees the stream end, whole or not.
            };
            let got = receiver.join().expect("the move receiver panicked");
            match (sent, got) {
                (Ok(()), got) => got,
                // The destination stopped reading: its error says why.
                (Err(e), Err(there)) if e.to_string().contains(SEND) => Err(there),
                // The source's error says why the stream broke.
                (Err(e), _) => Err(e),
            }
        })
    }

    /// Takes back what the destination made of a move that cannot finish.
    fn undo_there(&self, dest: &dyn Api, plan: &MovePlan, id: &str) {
        let _ = dest.container_remove(id, true, false);
        for v in &plan.volumes {
            let _ = dest.volume_remove(&v.name, true);
        }
    }

    /// The container here as it was before a move that did not happen: thawed if it was
    /// frozen, running if it ran.
    fn restore(&self, plan: &MovePlan, frozen: bool, was_up: bool) {
        let containers = self.containers();
        if frozen {
            let _ = containers.unpause(&plan.record.id);
        }
        if was_up
            && !containers
                .get(&plan.record.id)
                .is_ok_and(|c| c.is_running())
        {
            let _ = containers.start(&plan.record.id, false, false);
        }
        let _ = containers.unmark_moving(&plan.record.id);
    }

    /// A move stream, read and made into a container here.
    pub fn receive_move(&self, stream: &mut (dyn Read + Send)) -> Result<MoveReceipt> {
        self.containers().move_in(stream)
    }
}
