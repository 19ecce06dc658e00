//! The destination's side of a move: what it refuses before the source stops anything,
//! and the stream made into a container, whole or not at all.

use std::io::{self, BufReader, Read, Write};

use rusqlite::{OptionalExtension, params};

use super::super::{ContainerError, Containers, io_err};
use super::{ChunkReader, MAGIC, MoveCheck, MovePlan, MoveReceipt, Part, log_name_ok, read_line};
use crate::digest::Digest;
use crate::error::ErrorKind;
use crate::image::lease::{Lease, Resource};
use crate::snapshot::Snapshotter;

/// What the destination keeps in a moved container's directory once it is whole: the
/// move it came by, for a move run again.
const MOVED: &str = "moved.json";

#[derive(serde::Serialize, serde::Deserialize)]
struct Moved {
    move_id: String,
    source_engine: String,
    source_id: String,
}

fn conflict(reason: impl Into<String>) -> crate::Error {
    ContainerError::Conflict {
        reason: reason.into(),
    }
    .into()
}

fn bad(reason: impl Into<String>) -> crate::Error {
    ContainerError::Invalid {
        reason: format!("move stream: {}", reason.into()),
    }
    .into()
}

/// What a failed receive takes back, last made first.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
enum Undo {
    Container(String),
    Volume(String),
    Network(String),
}

/// The directory of the journals of receives under way.
const JOURNALS: &str = "moving-in";

/// What a receive under way made (or is about to make), written down before it is made:
/// a receiver killed midway leaves its journal, and the next open of the root takes back
/// what it names ([`Containers::sweep_moves_in`]). Named `PID-START-...` by its receiver.
struct Journal {
    path: std::path::PathBuf,
    made: Vec<Undo>,
}

impl Journal {
    fn new(root: &std::path::Path) -> crate::Result<Journal> {
        let dir = root.join(JOURNALS);
        std::fs::create_dir_all(&dir).map_err(io_err(format!("create {}", dir.display())))?;
        let pid = std::process::id();
        let start = crate::util::process_start_time(pid).unwrap_or(0);
        let mut j = Journal {
            path: dir.join(format!("{pid}-{start}-{}.json", crate::util::random_hex(6))),
            made: Vec::new(),
        };
        j.write()?;
        Ok(j)
    }

    fn write(&mut self) -> crate::Result<()> {
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(&self.made).unwrap_or_default())
            .and_then(|()| std::fs::rename(&tmp, &self.path))
            .map_err(io_err(format!("write {}", self.path.display())))
    }

    /// Notes what is about to be made.
    fn intend(&mut self, u: Undo) -> crate::Result<()> {
        self.made.push(u);
        self.write()
    }

    /// Forgets the last intent: it was not made.
    fn not_made(&mut self) {
        self.made.pop();
        let _ = self.write();
    }

    /// The receive is over: made whole, or taken back.
    fn close(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Containers<'_> {
    /// The container an earlier attempt of the move `move_id` made here, whole.
    fn moved_here(&self, move_id: &str) -> crate::Result<Option<String>> {
        for c in self.list(true)? {
            let Ok(b) = std::fs::read(c.bundle.join(MOVED)) else {
                continue;
            };
            if serde_json::from_slice::<Moved>(&b).is_ok_and(|m| m.move_id == move_id) {
                return Ok(Some(c.record.id));
            }
        }
        Ok(None)
    }

    /// Whether this engine takes the container `plan` describes; the blobs it lacks.
    pub(crate) fn move_check(&self, plan: &MovePlan) -> crate::Result<MoveCheck> {
        well_formed(plan)?;
        if let Some(id) = self.moved_here(&plan.move_id)? {
            return Ok(MoveCheck {
                missing: Vec::new(),
                done: Some(id),
            });
        }
        if let Ok(c) = self.get(&plan.name)
            && c.record.name == plan.name
        {
            return Err(conflict(format!(
                "the container name \"/{}\" is already in use by container \"{}\" at the destination",
                plan.name, c.record.id
            )));
        }
        for v in &plan.volumes {
            // Only plain local volumes travel: their data is written in this engine's own
            // directory, never where a driver option would point it.
            if v.driver != "local" || !v.options.is_empty() {
                return Err(bad(format!(
                    "volume {} is not a plain local volume",
                    v.name
                )));
            }
            if self.volumes().inspect(&v.name).is_ok() {
                return Err(conflict(format!(
                    "volume {} already exists at the destination",
                    v.name
                )));
            }
        }
        for n in &plan.networks {
            match self.networks().find(&n.name) {
                Ok(rec) if rec.driver != n.driver => {
                    return Err(conflict(format!(
                        "network {} at the destination is a {} network, not {}",
                        n.name, rec.driver, n.driver
                    )));
                }
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::NotFound && n.driver == "bridge" => {}
                Err(e) => return Err(e),
            }
        }
        let image: Digest = plan.image.id.parse()?;
        let have_image = self
            .st
            .db
            .read(|tx| crate::image::get_image(tx, &image))?
            .is_some();
        let missing = if have_image {
            Vec::new()
        } else {
            let mut m = Vec::new();
            for (b, _) in &plan.image.blobs {
                if !self.st.content.contains(&b.parse()?) {
                    m.push(b.clone());
                }
            }
            m
        };
        Ok(MoveCheck {
            missing,
            done: None,
        })
    }

    /// Reads a move stream and makes its container here (stopped): all of it, or, on any
    /// error, nothing.
    pub(crate) fn move_in(&self, stream: &mut (dyn Read + Send)) -> crate::Result<MoveReceipt> {
        let mut r = BufReader::with_capacity(1 << 20, stream);
        let mut magic = [0u8; MAGIC.len()];
        r.read_exact(&mut magic)
            .map_err(|e| bad(format!("reading its start: {e}")))?;
        if magic != MAGIC {
            return Err(bad("it is not a ketch move stream"));
        }
        let plan: MovePlan = read_line(&mut r, "plan")?;
        if self.move_check(&plan)?.done.is_some() {
            return Err(conflict(format!(
                "container {} has already moved here",
                plan.name
            )));
        }
        let lease = Lease::new(&self.st.db)?;
        let mut undo = Journal::new(&self.st.root)?;
        let res = self.move_in_leased(&lease, &mut r, &plan, &mut undo);
        if res.is_err() {
            self.take_back(std::mem::take(&mut undo.made));
        }
        undo.close();
        let released = self.images().release(lease);
        let receipt = res?;
        released?;
        Ok(receipt)
    }

    /// Takes back what a receive made, last made first.
    fn take_back(&self, made: Vec<Undo>) {
        // A full disk is the likeliest cause: the data written goes first, so that the
        // records can be taken back (each takes a little of the database's space).
        for u in &made {
            match u {
                Undo::Container(id) => self.clear_layer(id),
                Undo::Volume(name) => {
                    if let Ok(dir) = self.volumes().source(name) {
                        clear_dir(&dir);
                    }
                }
                Undo::Network(_) => {}
            }
        }
        for u in made.into_iter().rev() {
            let _ = match u {
                Undo::Container(id) => self.remove_with(&id, true, false),
                Undo::Volume(name) => self.volumes().remove(&name, true),
                Undo::Network(name) => self.networks().remove(&name),
            };
        }
    }

    /// Takes back what receives whose receiver died left half made (at open): a container
    /// made whole (its move noted in it) stays.
    pub(crate) fn sweep_moves_in(&self) {
        let dir = self.st.root.join(JOURNALS);
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = e.file_name();
            let Some(tail) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                if name.to_str().is_some_and(|n| n.ends_with(".tmp"))
                    && !crate::util::maker_alive(&name.to_string_lossy())
                {
                    let _ = std::fs::remove_file(e.path());
                }
                continue;
            };
            if crate::util::maker_alive(tail) {
                continue;
            }
            let made: Vec<Undo> = std::fs::read(e.path())
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            let whole = made.iter().any(|u| {
                matches!(u, Undo::Container(id)
                    if self.get(id).is_ok_and(|c| c.bundle.join(MOVED).exists()))
            });
            if !whole {
                self.take_back(made);
            }
            let _ = std::fs::remove_file(e.path());
        }
    }

    fn move_in_leased(
        &self,
        lease: &Lease,
        r: &mut BufReader<&mut (dyn Read + Send)>,
        plan: &MovePlan,
        undo: &mut Journal,
    ) -> crate::Result<MoveReceipt> {
        let mut id = None;
        loop {
            match read_line::<Part>(r, "next part")? {
                Part::Blob { digest } => {
                    if !plan.image.blobs.iter().any(|(b, _)| *b == digest) {
                        return Err(bad(format!("{digest} is not a blob of the moved image")));
                    }
                    let expected: Digest = digest.parse()?;
                    lease.add(&self.st.db, Resource::Blob(expected.clone()))?;
                    let mut w = self.st.content.writer()?;
                    let mut part = ChunkReader::new(r);
                    io::copy(&mut part, &mut w).map_err(|e| bad(e.to_string()))?;
                    let (_, size) = part.finish(Some(&expected))?;
                    w.commit(Some(size), Some(&expected))?;
                }
                Part::Volume { name } => {
                    let Some(v) = plan.volumes.iter().find(|v| v.name == name) else {
                        return Err(bad(format!("volume {name} is not in the plan")));
                    };
                    if id.is_some() {
                        return Err(bad("a volume after the container"));
                    }
                    undo.intend(Undo::Volume(v.name.clone()))?;
                    let made = self.volumes().create_new(&crate::volume::VolumeCreate {
                        name: v.name.clone(),
                        driver: Some(v.driver.clone()),
                        options: v.options.clone(),
                        labels: v.labels.clone(),
                    });
                    if let Err(e) = made {
                        undo.not_made();
                        return Err(e);
                    }
                    let data = self.volumes().source(&v.name)?;
                    let mut part = ChunkReader::new(r);
                    crate::diff::apply(&mut part, &data, &self.st.apply)?;
                    part.finish(None)?;
                }
                Part::Layer => {
                    if id.is_some() {
                        return Err(bad("a second writable layer"));
                    }
                    let made = self.make_moved(lease, plan, undo)?;
                    let key = format!("container-{made}");
                    let mounts = self.st.snapshots.mounts(&key)?;
                    let mut part = ChunkReader::new(r);
                    crate::diff::apply_to_mounts(
                        &mut part,
                        &mounts,
                        &self.st.scratch,
                        &self.st.apply,
                    )?;
                    part.finish(None)?;
                    id = Some(made);
                }
                Part::Log { file } => {
                    let Some(c) = id.as_ref().map(|i| self.get(i)).transpose()? else {
                        return Err(bad("a log before the container"));
                    };
                    if !log_name_ok(&file) || !plan.logs.contains(&file) {
                        return Err(bad(format!("{file:?} is not one of the logs")));
                    }
                    let path = c.bundle.join(&file);
                    let tmp = c.bundle.join(format!(".{file}.moving"));
                    let mut out = std::fs::File::create(&tmp)
                        .map_err(io_err(format!("create {}", tmp.display())))?;
                    let mut part = ChunkReader::new(r);
                    let copied = io::copy(&mut part, &mut out);
                    let finished = part.finish(None);
                    copied.map_err(|e| bad(e.to_string()))?;
                    finished?;
                    out.flush()
                        .and_then(|()| std::fs::rename(&tmp, &path))
                        .map_err(io_err(format!("write {}", path.display())))?;
                }
                Part::End => break,
            }
        }
        let Some(id) = id else {
            return Err(bad("it ended without the container's layer"));
        };
        let c = self.get(&id)?;
        let moved = Moved {
            move_id: plan.move_id.clone(),
            source_engine: plan.source_engine.clone(),
            source_id: plan.record.id.clone(),
        };
        let path = c.bundle.join(MOVED);
        std::fs::write(&path, serde_json::to_vec(&moved).unwrap_or_default())
            .map_err(io_err(format!("write {}", path.display())))?;
        Ok(MoveReceipt {
            id,
            name: c.record.name,
        })
    }

    /// Empties the writable layer of container `id`, made by a move that failed.
    fn clear_layer(&self, id: &str) {
        let Ok(mounts) = self.st.snapshots.mounts(&format!("container-{id}")) else {
            return;
        };
        let dir = match mounts.as_slice() {
            [m] if m.kind == "bind" => Some(m.source.clone()),
            ms => ms
                .iter()
                .flat_map(|m| &m.options)
                .find_map(|o| o.strip_prefix("upperdir="))
                .map(str::to_string),
        };
        if let Some(dir) = dir {
            clear_dir(std::path::Path::new(&dir));
        }
    }

    /// The moved container, made: its image recorded from the blobs in the store, its
    /// bridge networks made where missing, its record with its ID where free.
    fn make_moved(
        &self,
        lease: &Lease,
        plan: &MovePlan,
        undo: &mut Journal,
    ) -> crate::Result<String> {
        let image: Digest = plan.image.id.parse()?;
        let have = self
            .st
            .db
            .read(|tx| crate::image::get_image(tx, &image))?
            .is_some();
        if !have {
            let layers: Vec<(Digest, Digest)> = plan
                .image
                .layers
                .iter()
                .map(|(b, d)| Ok((b.parse()?, d.parse()?)))
                .collect::<crate::Result<_>>()?;
            let chains = self.images().unpack_image(lease, &plan.image.id, &layers)?;
            // The config is the image: it names the layers the image has.
            let config = crate::image::parse_config(&self.st.content.read(&image, 8 << 20)?)?;
            let named: Vec<String> = config.rootfs().diff_ids().to_vec();
            let sent: Vec<String> = layers.iter().map(|(_, d)| d.to_string()).collect();
            if named != sent {
                return Err(bad("the image's layers are not those its config names"));
            }
            self.images()
                .commit_images(&[crate::image::import::NewImage {
                    id: image.clone(),
                    manifest_digest: plan.image.manifest_digest.parse()?,
                    manifest_media_type: plan.image.manifest_media_type.clone(),
                    created: plan.image.created.clone(),
                    layers: layers.iter().map(|(b, _)| b.clone()).zip(chains).collect(),
                    tags: Vec::new(),
                    repo_digests: Vec::new(),
                    parent: None,
                }])?;
        }
        // Its tags, where no image here has them.
        for t in &plan.image.tags {
            let Ok(r) = crate::reference::Reference::parse(t) else {
                continue;
            };
            let free = self.st.db.read(|tx| {
                Ok::<_, crate::Error>(
                    tx.query_row(
                        "SELECT image_id FROM tags WHERE name = ?1",
                        params![r.to_string()],
                        |row| row.get::<_, String>(0),
                    )
                    .optional()?
                    .is_none(),
                )
            })?;
            if free {
                self.st
                    .db
                    .write(|tx| crate::image::set_tag(tx, &r, &image))?;
            }
        }
        for n in &plan.networks {
            if n.driver == "bridge" && self.networks().find(&n.name).is_err() {
                undo.intend(Undo::Network(n.name.clone()))?;
                if let Err(e) = self.networks().create(&n.create) {
                    undo.not_made();
                    return Err(e);
                }
            }
        }
        let mut opts = plan.record.config.clone();
        opts.name = Some(plan.name.clone());
        // Named by its reference where that is the same image here, else by its ID.
        let same = self
            .st
            .db
            .read(|tx| crate::image::resolve(tx, &opts.image).map(|r| r.image.id == image))
            .unwrap_or(false);
        if !same {
            opts.image = plan.image.id.clone();
        }
        // On an overlay network it keeps its address.
        for n in &plan.networks {
            let Some(ip) = &n.ip else { continue };
            if opts.network.as_deref() == Some(n.name.as_str()) && !opts.network_detached {
                opts.ip = Some(ip.clone());
            }
            for a in opts
                .extra_networks
                .iter_mut()
                .filter(|a| a.network == n.name)
            {
                a.ip = Some(ip.clone());
            }
        }
        let keep_id = self.get(&plan.record.id).is_err();
        if !keep_id && opts.hostname.is_none() {
            // Its host name was its ID's start: it keeps the name.
            opts.hostname = Some(plan.record.id[..12].to_string());
        }
        // Its ID known before it is made, for the journal.
        let id = if keep_id {
            plan.record.id.clone()
        } else {
            crate::util::random_hex(32)
        };
        undo.intend(Undo::Container(id.clone()))?;
        match self.create_as(&opts, Some(&id)) {
            Ok(c) => Ok(c.record.id),
            Err(e) => {
                undo.not_made();
                Err(e)
            }
        }
    }
}

/// What a plan names is refused here unless it is what this engine would name so: an ID,
/// names that are names (a stream comes from anywhere).
fn well_formed(plan: &MovePlan) -> crate::Result<()> {
    let id = &plan.record.id;
    if !(id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))) {
        return Err(bad(format!("{id:?} is not a container ID")));
    }
    if !crate::util::valid_name(&plan.name) {
        return Err(bad(format!("{:?} is not a container name", plan.name)));
    }
    for v in &plan.volumes {
        if !crate::util::valid_name(&v.name) {
            return Err(bad(format!("{:?} is not a volume name", v.name)));
        }
    }
    for n in &plan.networks {
        if !crate::util::valid_name(&n.name) || n.create.name != n.name {
            return Err(bad(format!("{:?} is not a network name", n.name)));
        }
    }
    Ok(())
}

/// Removes what directory `dir` holds (never following a link out of it).
fn clear_dir(dir: &std::path::Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let _ = match e.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(e.path()),
            _ => std::fs::remove_file(e.path()),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ChunkWriter, write_line};
    use super::*;
    use crate::engine::Engine;
    use crate::testutil::{created_container, scratch_engine};

    /// The part `p` with `data`, as a mover writes it.
    fn part(s: &mut Vec<u8>, p: &Part, data: &[u8]) {
        write_line(s, p).unwrap();
        let mut w = ChunkWriter::new(&mut *s);
        w.write_all(data).unwrap();
        w.finish().unwrap();
    }

    /// A stream of `plan` with the image's blobs read from `from`, then what `tail` adds.
    fn stream(from: &Engine, plan: &MovePlan, tail: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut s = MAGIC.to_vec();
        write_line(&mut s, plan).unwrap();
        for (b, _) in &plan.image.blobs {
            let data = from
                .state()
                .content
                .read(&b.parse().unwrap(), 1 << 30)
                .unwrap();
            part(&mut s, &Part::Blob { digest: b.clone() }, &data);
        }
        tail(&mut s);
        s
    }

    /// A layer (tar) of the entries `f` appends.
    fn layer(f: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        f(&mut b);
        b.into_inner().unwrap()
    }

    fn entry(b: &mut tar::Builder<Vec<u8>>, path: &str, kind: tar::EntryType, link: &str) {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(if kind == tar::EntryType::Regular {
            2
        } else {
            0
        });
        h.set_mode(0o755);
        // Names a builder would refuse, written raw as a hostile mover would.
        let name = &mut h.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        if !link.is_empty() {
            h.set_link_name(link).unwrap();
        }
        h.set_cksum();
        b.append(&h, &b"x\n"[..h.size().unwrap() as usize]).unwrap();
    }

    /// What the destination holds: its containers and volumes.
    fn holds(e: &Engine) -> (usize, usize) {
        (
            e.containers().list(true).unwrap().len(),
            e.volumes().list().unwrap().len(),
        )
    }

    /// A move stream is as hostile as a layer: every part that names something outside of
    /// what was planned, or a place outside of the container, is refused by name, and the
    /// destination is left as it was; nothing is written outside of its root.
    #[test]
    fn hostile_streams_are_refused_and_leave_nothing() {
        let from = scratch_engine();
        let to = scratch_engine();
        let id = created_container(
            &from,
            crate::runtime::CreateOptions {
                name: Some("moved".into()),
                network: Some("none".into()),
                ..Default::default()
            },
        );
        let plan = from.containers().move_plan(&id, false, None).unwrap();
        let outside = tempfile::tempdir().unwrap();
        let receive = |s: Vec<u8>| to.containers().move_in(&mut &s[..]);

        // Through a link to a directory outside, up and out by name, a link to a host file
        // written through.
        let target = outside.path().display().to_string();
        let escapes = [
            layer(|b| {
                entry(b, "out", tar::EntryType::Symlink, &target);
                entry(b, "out/planted", tar::EntryType::Regular, "");
            }),
            layer(|b| entry(b, "../../../../planted", tar::EntryType::Regular, "")),
            layer(|b| {
                entry(
                    b,
                    "pw",
                    tar::EntryType::Symlink,
                    &format!("{target}/victim"),
                );
                entry(b, "pw", tar::EntryType::Regular, "");
            }),
        ];
        std::fs::write(outside.path().join("victim"), b"host\n").unwrap();
        for l in escapes {
            let s = stream(&from, &plan, |s| {
                part(s, &Part::Layer, &l);
                write_line(s, &Part::End).unwrap();
            });
            // Taken or refused, nothing lands outside.
            if receive(s).is_ok() {
                let moved = to.containers().get("moved").unwrap();
                to.containers()
                    .remove_with(&moved.record.id, true, false)
                    .unwrap();
            }
            assert!(!outside.path().join("planted").exists());
            assert_eq!(
                std::fs::read(outside.path().join("victim")).unwrap(),
                b"host\n"
            );
        }
        assert!(!to.root().parent().unwrap().join("planted").exists());

        let refused = |s: Vec<u8>, why: &str| {
            let e = receive(s).unwrap_err();
            assert!(e.to_string().contains(why), "{e} (wanted {why})");
            assert_eq!(holds(&to), (0, 0), "{why}");
        };
        let whole = |s: &mut Vec<u8>| part(s, &Part::Layer, &layer(|_| {}));
        // A blob that is not the image's.
        refused(
            stream(&from, &plan, |s| {
                let d = Digest::of(b"other").to_string();
                part(s, &Part::Blob { digest: d }, b"other");
            }),
            "is not a blob of the moved image",
        );
        // A log named out of the container's directory.
        refused(
            stream(&from, &plan, |s| {
                whole(s);
                part(
                    s,
                    &Part::Log {
                        file: "../../../planted".into(),
                    },
                    b"x",
                );
            }),
            "is not one of the logs",
        );
        // A second layer, a volume not planned, a stream with no end.
        refused(
            stream(&from, &plan, |s| {
                whole(s);
                whole(s);
            }),
            "a second writable layer",
        );
        refused(
            stream(&from, &plan, |s| {
                part(s, &Part::Volume { name: "x".into() }, b"");
            }),
            "volume x is not in the plan",
        );
        refused(stream(&from, &plan, whole), "next part");
        // Plans naming what this engine would not.
        let mut bad_id = plan.clone();
        bad_id.record.id = "../../../etc".into();
        refused(stream(&from, &bad_id, whole), "is not a container ID");
        let mut bad_name = plan.clone();
        bad_name.name = "../x".into();
        refused(stream(&from, &bad_name, whole), "is not a container name");
        // A volume whose options point its data at the host.
        let mut bound = plan.clone();
        bound.volumes.push(super::super::MoveVolume {
            name: "data".into(),
            driver: "local".into(),
            labels: Default::default(),
            options: [
                ("type".to_string(), "none".to_string()),
                ("o".to_string(), "bind".to_string()),
                ("device".to_string(), target.clone()),
            ]
            .into(),
            anonymous: false,
        });
        refused(
            stream(&from, &bound, |s| {
                part(
                    s,
                    &Part::Volume {
                        name: "data".into(),
                    },
                    &layer(|b| {
                        entry(b, "planted", tar::EntryType::Regular, "");
                    }),
                );
                whole(s);
                write_line(s, &Part::End).unwrap();
            }),
            "is not a plain local volume",
        );
        assert!(!outside.path().join("planted").exists());
        // Not a move stream at all.
        refused(
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            "not a ketch move stream",
        );

        // The stream as the mover writes it is taken (these refusals are the stream's,
        // not the engine's).
        let s = stream(&from, &plan, |s| {
            whole(s);
            write_line(s, &Part::End).unwrap();
        });
        let got = receive(s).unwrap();
        assert_eq!(got.name, "moved");
        assert_eq!(holds(&to), (1, 0));
    }
}
