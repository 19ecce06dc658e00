//! The source's side of a move: the plan, and the stream of what the destination lacks.

use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;

use rusqlite::params;

use super::super::{ContainerError, Containers, io_err};
use super::{
    ChunkWriter, MAGIC, MoveImage, MoveNetwork, MovePlan, MoveVolume, Part, log_name_ok, move_id,
    write_line,
};
use crate::digest::Digest;
use crate::runtime::NetMode;

fn refused(reason: impl Into<String>) -> crate::Error {
    ContainerError::Invalid {
        reason: reason.into(),
    }
    .into()
}

/// What the source keeps of a move under way in the container's directory: whether it ran
/// before the move stopped it, and whether the move froze it, for a move run again after
/// its mover was killed.
pub(crate) const MARK: &str = "moving.json";

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct Mark {
    running: bool,
    #[serde(default)]
    frozen: bool,
}

impl Containers<'_> {
    /// What moving container `name` away takes: refused where the container depends on
    /// something that cannot go with it.
    pub(crate) fn move_plan(
        &self,
        name: &str,
        with_volumes: bool,
        new_name: Option<&str>,
    ) -> crate::Result<MovePlan> {
        let c = self.get(name)?;
        let cfg = &c.record.config;
        let id = &c.record.id;
        // What another container of this engine would have to go along.
        let mut others = Vec::new();
        if let NetMode::Container(o) = NetMode::of(cfg) {
            others.push(format!("its network namespace is container {o}'s"));
        }
        for (what, mode) in [("process", &cfg.pid_mode), ("IPC", &cfg.ipc_mode)] {
            if let Some(o) = super::super::options::mode_container(mode) {
                others.push(format!("its {what} namespace is container {o}'s"));
            }
        }
        if !cfg.volumes_from.is_empty() {
            others.push(format!(
                "it mounts the volumes of {}",
                cfg.volumes_from.join(", ")
            ));
        }
        if !cfg.links.is_empty() || !cfg.network_links.is_empty() {
            others.push("it has links to other containers".into());
        }
        if !others.is_empty() {
            return Err(refused(format!(
                "container {} cannot move without the others it depends on: {}",
                c.record.name,
                others.join("; ")
            )));
        }
        let image_id: Digest = c.record.image_id.parse()?;
        let (image, layers, tags) = self.st.db.read(|tx| {
            let image = crate::image::get_image(tx, &image_id)?.ok_or_else(|| {
                refused(format!(
                    "the image of container {} is missing",
                    c.record.name
                ))
            })?;
            let mut layers = Vec::new();
            for l in crate::image::image_layers(tx, &image_id)? {
                let diff_id: String = tx.query_row(
                    "SELECT diff_id FROM layers WHERE chain_id = ?1",
                    params![l.chain_id.to_string()],
                    |r| r.get(0),
                )?;
                layers.push((l.blob.to_string(), diff_id));
            }
            let tags: Vec<String> = crate::image::image_tags(tx, &image_id)?
                .into_iter()
                .map(|(r, _)| r.to_string())
                .collect();
            Ok::<_, crate::Error>((image, layers, tags))
        })?;
        let mut blobs = Vec::new();
        let mut add_blob = |d: &str, required: bool| -> crate::Result<()> {
            let digest: Digest = d.parse()?;
            match self.st.content.size(&digest) {
                Ok(size) => {
                    if !blobs.iter().any(|(b, _)| b == d) {
                        blobs.push((d.to_string(), size));
                    }
                    Ok(())
                }
                Err(_) if !required => Ok(()),
                Err(e) => Err(e.into()),
            }
        };
        add_blob(&image.id.to_string(), true)?;
        add_blob(&image.manifest_digest.to_string(), false)?;
        for (blob, _) in &layers {
            add_blob(blob, true)?;
        }
        let mut volumes = Vec::new();
        if with_volumes {
            for m in cfg.mounts.iter().filter(|m| m.kind == "volume") {
                let users: Vec<String> = self
                    .volumes()
                    .users(&m.source)?
                    .into_iter()
                    .map(|(u, _)| u)
                    .filter(|u| u != id)
                    .map(|u| self.get(&u).map_or(u, |o| o.record.name))
                    .collect();
                if !users.is_empty() {
                    return Err(refused(format!(
                        "volume {} is shared: it is also used by {}",
                        m.source,
                        users.join(", ")
                    )));
                }
                let v = self.volumes().inspect(&m.source)?;
                if !v.options.is_empty() {
                    return Err(refused(format!(
                        "volume {} has driver options ({}): only plain local volumes travel",
                        v.name,
                        v.options.keys().cloned().collect::<Vec<_>>().join(", ")
                    )));
                }
                volumes.push(MoveVolume {
                    name: v.name,
                    driver: v.driver,
                    labels: v.labels,
                    options: v.options,
                    anonymous: v.anonymous,
                });
            }
        }
        let endpoints = self.networks().container_endpoints(id)?;
        let mut networks = Vec::new();
        for a in cfg.attachments() {
            let rec = self.networks().find(&a.network)?;
            let ip = endpoints
                .iter()
                .find(|e| e.network_id == rec.id)
                .filter(|_| rec.overlay())
                .map(|e| e.ip.to_string());
            networks.push(MoveNetwork {
                name: rec.name.clone(),
                driver: rec.driver.clone(),
                create: crate::network::NetworkCreate {
                    name: rec.name.clone(),
                    driver: Some(rec.driver.clone()),
                    internal: rec.internal,
                    labels: rec.labels.clone().into_iter().collect(),
                    attachable: rec.attachable,
                    ipv6: rec.subnet6.is_some(),
                    options: rec.options.clone(),
                    ..Default::default()
                },
                ip,
            });
        }
        let mut logs: Vec<(u32, String)> = Vec::new();
        if let Ok(rd) = std::fs::read_dir(&c.bundle) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if log_name_ok(&n) && e.file_type().is_ok_and(|t| t.is_file()) {
                    let rank = n
                        .strip_prefix("container.log.")
                        .and_then(|r| r.parse().ok())
                        .unwrap_or(0);
                    logs.push((rank, n));
                }
            }
        }
        logs.sort_by_key(|l| std::cmp::Reverse(l.0));
        let running = match std::fs::read(c.bundle.join(MARK)) {
            Ok(b) => serde_json::from_slice::<Mark>(&b).is_ok_and(|m| m.running),
            Err(_) => c.is_running(),
        };
        let name = new_name.unwrap_or(&c.record.name).to_string();
        if !crate::util::valid_name(&name) {
            return Err(ContainerError::BadName { name }.into());
        }
        Ok(MovePlan {
            move_id: move_id(&self.st.engine_id, id),
            source_engine: self.st.engine_id.clone(),
            running,
            image: MoveImage {
                id: image.id.to_string(),
                manifest_digest: image.manifest_digest.to_string(),
                manifest_media_type: image.manifest_media_type,
                created: image.created,
                layers,
                blobs,
                tags,
            },
            volumes,
            networks,
            logs: logs.into_iter().map(|(_, n)| n).collect(),
            name,
            record: c.record,
        })
    }

    /// Notes in the container's directory that a move stopped or froze it, and whether it
    /// ran: a move run again knows it should run at the destination, and one that fails
    /// thaws what a move froze (and only that: a container its user paused stays paused).
    pub(crate) fn mark_moving(&self, name: &str, running: bool, frozen: bool) -> crate::Result<()> {
        let c = self.get(name)?;
        let path = c.bundle.join(MARK);
        let tmp = c.bundle.join(format!(".{MARK}.{}", std::process::id()));
        let body = serde_json::to_vec(&Mark { running, frozen }).unwrap_or_default();
        std::fs::write(&tmp, body)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(io_err(format!("write {}", path.display())))
    }

    /// Whether an earlier move froze container `name` (its mover killed before it finished).
    pub(crate) fn frozen_by_move(&self, name: &str) -> crate::Result<bool> {
        let c = self.get(name)?;
        Ok(std::fs::read(c.bundle.join(MARK))
            .ok()
            .and_then(|b| serde_json::from_slice::<Mark>(&b).ok())
            .is_some_and(|m| m.frozen))
    }

    /// Forgets a move that did not happen: the container stays here.
    pub(crate) fn unmark_moving(&self, name: &str) -> crate::Result<()> {
        let c = self.get(name)?;
        match std::fs::remove_file(c.bundle.join(MARK)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(io_err(format!("remove the move mark of {name}"))(e))
            }
            _ => Ok(()),
        }
    }

    /// Writes the move stream of `plan`'s container to `out`: the blobs the destination
    /// lacks (`missing`, each one of the plan's), the volumes, the writable layer, the log.
    /// The container is not running (stopped or frozen). `progress` hears of each part
    /// with the bytes sent so far.
    pub(crate) fn move_out(
        &self,
        plan: &MovePlan,
        missing: &[String],
        out: &mut dyn Write,
        progress: &mut dyn FnMut(&str, u64),
    ) -> crate::Result<()> {
        let c = self.get(&plan.record.id)?;
        let mut out = Counting {
            inner: out,
            n: 0,
            progress,
            step: String::new(),
            reported: 0,
        };
        out.write_all(MAGIC).map_err(broke)?;
        write_line(&mut out, plan).map_err(broke)?;
        for d in missing {
            if !plan.image.blobs.iter().any(|(b, _)| b == d) {
                return Err(refused(format!("{d} is not a blob of the moved image")));
            }
            out.step(format!("image blob {}", &d[..d.len().min(19)]))?;
            write_line(&mut out, &Part::Blob { digest: d.clone() }).map_err(broke)?;
            let mut blob = self.st.content.open_blob(&d.parse()?)?;
            let mut w = ChunkWriter::new(&mut out);
            io::copy(&mut blob, &mut w).map_err(broke)?;
            w.finish().map_err(broke)?;
        }
        for v in &plan.volumes {
            out.step(format!("volume {}", v.name))?;
            write_line(
                &mut out,
                &Part::Volume {
                    name: v.name.clone(),
                },
            )
            .map_err(broke)?;
            let data = self.volumes().source(&v.name)?;
            let empty = self
                .st
                .scratch
                .join(format!("move-{}", crate::util::random_hex(6)));
            std::fs::create_dir_all(&empty)
                .map_err(io_err(format!("create {}", empty.display())))?;
            let mut w = ChunkWriter::new(&mut out);
            let sent = crate::diff::compare(&empty, &data, &mut w);
            let _ = std::fs::remove_dir(&empty);
            sent?;
            w.finish().map_err(broke)?;
        }
        out.step("writable layer".into())?;
        write_line(&mut out, &Part::Layer).map_err(broke)?;
        {
            let mut w = ChunkWriter::new(&mut out);
            self.tar(&c, false, |r| {
                io::copy(r, &mut w).map_err(io_err("send the writable layer"))?;
                Ok(())
            })?;
            w.finish().map_err(broke)?;
        }
        for f in &plan.logs {
            out.step("log".into())?;
            write_line(&mut out, &Part::Log { file: f.clone() }).map_err(broke)?;
            let path = c.bundle.join(f);
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
                .map_err(io_err(format!("open {}", path.display())))?;
            let mut w = ChunkWriter::new(&mut out);
            io::copy(&mut file, &mut w).map_err(broke)?;
            w.finish().map_err(broke)?;
        }
        write_line(&mut out, &Part::End).map_err(broke)?;
        out.flush().map_err(broke)?;
        out.step("sent".into())?;
        Ok(())
    }
}

/// A write of the stream that failed (the mover tells a broken stream by these words).
fn broke(e: io::Error) -> crate::Error {
    io_err("send the move stream")(e)
}

/// Bytes between two reports of the same step.
const REPORT_EVERY: u64 = 4 << 20;

/// A writer that counts what goes through it and reports the step it is in: when it
/// begins, and every [`REPORT_EVERY`] bytes of it.
struct Counting<'a> {
    inner: &'a mut dyn Write,
    n: u64,
    progress: &'a mut dyn FnMut(&str, u64),
    step: String,
    reported: u64,
}

impl Counting<'_> {
    /// A new step: what went before it is sent (a destination has each part once the next
    /// begins), then reported.
    fn step(&mut self, step: String) -> crate::Result<()> {
        self.inner.flush().map_err(broke)?;
        (self.progress)(&step, self.n);
        self.step = step;
        self.reported = self.n;
        Ok(())
    }
}

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        if self.n - self.reported >= REPORT_EVERY {
            self.reported = self.n;
            (self.progress)(&self.step, self.n);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
