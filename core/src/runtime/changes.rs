//! What a container changed: `diff` (the paths), `commit` (a new image of its image plus
//! one layer of the changes), `export` (its whole file system as a tar).

use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;

use super::Containers;
use super::{Container, ContainerError, io_err};
use crate::digest::Digest;
use crate::image::lease::{Lease, Resource};
use crate::snapshot::Snapshotter;

/// One line of `diff`: `A` added, `C` changed, `D` deleted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Change {
    pub kind: char,
    pub path: String,
}

/// What `commit` takes: Docker's flags.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    pub reference: Option<String>,
    pub changes: Vec<String>,
    pub message: Option<String>,
    pub author: Option<String>,
    /// Pause the container while its changes are read (Docker's default).
    pub pause: bool,
}

fn pipe() -> io::Result<(std::fs::File, std::fs::File)> {
    let (r, w): (OwnedFd, OwnedFd) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    Ok((std::fs::File::from(r), std::fs::File::from(w)))
}

impl Containers<'_> {
    /// Streams the container's changes as a layer tar (`full`: its whole file system) to
    /// `consume`, which runs beside the writer; returns what `consume` returns.
    pub(super) fn tar<T>(
        &self,
        c: &Container,
        full: bool,
        consume: impl FnOnce(&mut (dyn Read + Send)) -> crate::Result<T>,
    ) -> crate::Result<T> {
        let key = format!("container-{}", c.record.id);
        let upper = self.st.snapshots.mounts(&key)?;
        let lease = Lease::new(&self.st.db)?;
        let lower = match (&self.top_layer(c)?, full) {
            (Some(chain), false) => {
                let view = format!("view-{}", crate::util::random_hex(8));
                lease.add(&self.st.db, Resource::Snapshot(view.clone()))?;
                self.st.snapshots.view(&view, Some(chain))?
            }
            _ => vec![],
        };
        // The mount points the runtime made in the container's layer are not its changes
        // (where the image does not have them): /etc/hosts and the like, and the targets
        // of its volumes and binds. Its whole file system keeps them, as empty entries.
        let mut skip = std::collections::BTreeSet::new();
        if !full {
            for p in ["etc/hosts", "etc/hostname", "etc/resolv.conf"] {
                skip.insert(std::path::PathBuf::from(p));
            }
            for m in &c.record.config.mounts {
                skip.insert(std::path::PathBuf::from(m.target.trim_start_matches('/')));
            }
        }
        let (r, w) = pipe().map_err(io_err("pipe"))?;
        let result = std::thread::scope(|s| {
            let writer = s.spawn(move || {
                let mut w = io::BufWriter::with_capacity(1 << 20, w);
                crate::diff::compare_mounts_skipping(
                    &lower,
                    &upper,
                    &self.st.scratch,
                    &mut w,
                    &skip,
                )?;
                w.flush().map_err(io_err("write the changes"))?;
                Ok::<_, crate::Error>(())
            });
            let mut r = io::BufReader::with_capacity(1 << 20, r);
            let out = consume(&mut r);
            // Whatever the consumer left unread, so the writer can finish.
            let _ = io::copy(&mut r, &mut io::sink());
            let wrote = writer
                .join()
                .unwrap_or_else(|_| Err(io_err("compare")(io::Error::other("panicked"))));
            wrote.and(out)
        });
        let released = self.images().release(lease);
        let out = result?;
        released?;
        Ok(out)
    }

    /// The chain ID of the container's image's top layer.
    fn top_layer(&self, c: &Container) -> crate::Result<Option<String>> {
        let id: Digest = c.record.image_id.parse()?;
        let layers = self.st.db.read(|tx| crate::image::image_layers(tx, &id))?;
        Ok(layers.last().map(|l| l.chain_id.to_string()))
    }

    /// `diff`: the paths the container added, changed and deleted, sorted.
    pub fn diff(&self, name: &str) -> crate::Result<Vec<Change>> {
        let c = self.get(name)?;
        let key = format!("container-{}", c.record.id);
        // Which paths the image has, to tell added from changed.
        let lease = Lease::new(&self.st.db)?;
        let lower = match self.top_layer(&c)? {
            Some(chain) => {
                let view = format!("view-{}", crate::util::random_hex(8));
                lease.add(&self.st.db, Resource::Snapshot(view.clone()))?;
                self.st.snapshots.view(&view, Some(&chain))?
            }
            None => vec![],
        };
        let _ = key;
        let lower_mnt = if lower.is_empty() {
            None
        } else {
            Some(
                crate::mount::TempMount::new(&lower, &self.st.scratch)
                    .map_err(io_err("mount the image"))?,
            )
        };
        let result = self.tar(&c, false, |r| {
            let mut changes = Vec::new();
            let mut archive = tar::Archive::new(r);
            for entry in archive.entries().map_err(io_err("read the changes"))? {
                let entry = entry.map_err(io_err("read the changes"))?;
                let path = entry
                    .path()
                    .map_err(io_err("read the changes"))?
                    .into_owned();
                let path = path.to_string_lossy().trim_end_matches('/').to_string();
                let (dir, base) = match path.rsplit_once('/') {
                    Some((d, b)) => (format!("/{d}"), b.to_string()),
                    None => (String::new(), path.clone()),
                };
                if base == ".wh..wh..opq" {
                    continue;
                }
                if let Some(gone) = base.strip_prefix(".wh.") {
                    changes.push(Change {
                        kind: 'D',
                        path: format!("{dir}/{gone}"),
                    });
                    continue;
                }
                let full = format!("/{path}");
                let existed = lower_mnt.as_ref().is_some_and(|m| {
                    std::fs::File::open(m.path()).is_ok_and(|root| {
                        let root = std::os::fd::AsFd::as_fd(&root);
                        crate::fsutil::exists_beneath(root, std::path::Path::new(&path))
                            .unwrap_or(false)
                    })
                });
                changes.push(Change {
                    kind: if existed { 'C' } else { 'A' },
                    path: full,
                });
            }
            Ok(changes)
        });
        // Docker lists the image's directories that hold a change as changed themselves.
        let result = result.map(|mut changes| {
            let mut parents = std::collections::BTreeSet::new();
            for c in &changes {
                let mut p = std::path::Path::new(&c.path).parent();
                while let Some(dir) = p.filter(|d| *d != std::path::Path::new("/")) {
                    parents.insert(dir.display().to_string());
                    p = dir.parent();
                }
            }
            for dir in parents {
                let existed = lower_mnt.as_ref().is_some_and(|m| {
                    std::fs::File::open(m.path()).is_ok_and(|root| {
                        let root = std::os::fd::AsFd::as_fd(&root);
                        crate::fsutil::exists_beneath(root, std::path::Path::new(&dir))
                            .unwrap_or(false)
                    })
                });
                if existed && !changes.iter().any(|c| c.path == dir) {
                    changes.push(Change {
                        kind: 'C',
                        path: dir,
                    });
                }
            }
            changes
        });
        drop(lower_mnt);
        let released = self.images().release(lease);
        let mut changes = result?;
        released?;
        changes.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(changes)
    }

    /// `export`: the container's whole file system as a tar, written to `out`.
    pub fn export(&self, name: &str, out: &mut dyn Write) -> crate::Result<()> {
        let c = self.get(name)?;
        self.tar(&c, true, |r| {
            io::copy(r, out).map_err(io_err("write the export"))?;
            Ok(())
        })
    }

    /// `commit`: a new image, the container's image plus one layer of its changes, with
    /// `changes` (Dockerfile instructions) applied to the config. Returns the image ID.
    pub fn commit(&self, name: &str, opts: &CommitOptions) -> crate::Result<Digest> {
        let c = self.get(name)?;
        let reference = opts
            .reference
            .as_deref()
            .map(|r| crate::reference::Reference::parse(r).map(|r| r.with_default_tag()))
            .transpose()?;
        let overrides = crate::image::apply_changes_json(&opts.changes)?;
        let paused = opts.pause
            && c.status == super::Status::Running
            && match self.pause(&c.record.id) {
                Ok(()) => true,
                // It ended since it was looked at (its cgroups are gone, or its record says
                // so by now): there is nothing to hold still.
                Err(_)
                    if !self.get(name).is_ok_and(|c| {
                        c.is_running() && c.task.cgroups.iter().any(|g| g.exists())
                    }) =>
                {
                    false
                }
                Err(e) => return Err(e),
            };
        let lease = Lease::new(&self.st.db)?;
        let res = self.commit_leased(&lease, &c, opts, reference, overrides);
        if paused {
            let _ = self.unpause(&c.record.id);
        }
        let released = self.images().release(lease);
        let id = res?;
        released?;
        Ok(id)
    }

    fn commit_leased(
        &self,
        lease: &Lease,
        c: &Container,
        opts: &CommitOptions,
        reference: Option<crate::reference::Reference>,
        overrides: serde_json::Value,
    ) -> crate::Result<Digest> {
        let image_id: Digest = c.record.image_id.parse()?;
        let layer = self.commit_layer(lease, c)?;

        // The image's config with the new layer, a history entry, and the overrides.
        let mut config: serde_json::Value =
            serde_json::from_slice(&self.st.content.read(&image_id, 8 << 20)?)
                .map_err(|e| crate::image::malformed("image config", e))?;
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        config["created"] = now.clone().into();
        if let Some(a) = &opts.author {
            config["author"] = a.clone().into();
        }
        config["container"] = c.record.id.clone().into();
        merge_config(&mut config["config"], &overrides);
        let diff_ids = config["rootfs"]["diff_ids"]
            .as_array_mut()
            .ok_or_else(|| crate::image::malformed("image config", "no rootfs.diff_ids"))?;
        diff_ids.push(layer.1.to_string().into());
        let created_by = std::iter::once(c.record.path.clone())
            .chain(c.record.args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ");
        let mut entry = serde_json::json!({"created": now, "created_by": created_by});
        if let Some(m) = &opts.message {
            entry["comment"] = m.clone().into();
        }
        if let Some(a) = &opts.author {
            entry["author"] = a.clone().into();
        }
        match config["history"].as_array_mut() {
            Some(h) => h.push(entry),
            None => config["history"] = serde_json::json!([entry]),
        }
        self.images().derive(
            lease,
            crate::image::derive::Derived {
                base: Some(image_id),
                config,
                layer: Some(layer.0),
                tags: reference.into_iter().collect(),
                // As Docker: a committed image's Parent is the container's image.
                record_parent: true,
            },
        )
    }

    /// The container's changes as a new layer on its image's: stored as an (uncompressed)
    /// blob and unpacked into the layer's snapshot in one pass, both held by `lease`.
    /// Returns the layer and its diff ID.
    pub(crate) fn commit_layer(
        &self,
        lease: &Lease,
        c: &Container,
    ) -> crate::Result<(crate::image::derive::NewLayer, Digest)> {
        let parent_chain: Option<Digest> = self.top_layer(c)?.map(|s| s.parse()).transpose()?;
        let mut blob = self.st.content.writer()?;
        let (chain, applied) = self.tar(c, false, |r| {
            let mut tee = crate::image::import::Tee {
                inner: r,
                copy: &mut blob,
            };
            let out = self
                .images()
                .unpack_layer(lease, parent_chain.as_ref(), &mut tee, |_| Ok(()))?;
            io::copy(&mut tee, &mut io::sink()).map_err(io_err("read the changes"))?;
            Ok(out)
        })?;
        let size = blob.written();
        let digest = blob.digest();
        lease.add(&self.st.db, Resource::Blob(digest.clone()))?;
        blob.commit(None, None)?;
        Ok((
            crate::image::derive::NewLayer {
                blob: digest,
                size,
                chain,
            },
            applied.diff_id,
        ))
    }
}

/// Applies `--change` overrides to a container config: lists of environment variables,
/// labels, ports and volumes merge by key; everything else replaces.
fn merge_config(config: &mut serde_json::Value, overrides: &serde_json::Value) {
    let Some(over) = overrides.as_object() else {
        return;
    };
    if !config.is_object() {
        *config = serde_json::json!({});
    }
    for (k, v) in over {
        if v.is_null() {
            continue;
        }
        match k.as_str() {
            "Env" => {
                let mut env: Vec<serde_json::Value> =
                    config[k].as_array().cloned().unwrap_or_default();
                for e in v.as_array().into_iter().flatten() {
                    let key = e.as_str().and_then(|s| s.split('=').next()).unwrap_or("");
                    env.retain(|x| x.as_str().and_then(|s| s.split('=').next()) != Some(key));
                    env.push(e.clone());
                }
                config[k] = env.into();
            }
            "Labels" | "ExposedPorts" | "Volumes" => {
                if !config[k].is_object() {
                    config[k] = serde_json::json!({});
                }
                for (ik, iv) in v.as_object().into_iter().flatten() {
                    config[k][ik] = iv.clone();
                }
            }
            _ => config[k] = v.clone(),
        }
    }
}

impl Containers<'_> {
    /// Runs `ketch-shim cp` with the container's view of its file system: the mount
    /// namespace of its process while it runs, else its root file system mounted here.
    fn cp(
        &self,
        name: &str,
        args: &[&str],
        input: Option<&mut dyn Read>,
        output: Option<&mut dyn Write>,
    ) -> crate::Result<()> {
        let c = self.get(name)?;
        let shim = self.shim()?;
        let key = format!("container-{}", c.record.id);
        let mounted;
        let mut binds = Vec::new();
        let (flag, value) = if c.is_running() && c.task.pid > 0 {
            let start = super::task_start(&c);
            ("--pid", format!("{}:{start}:{}", c.task.pid, c.record.id))
        } else {
            let mounts = self.st.snapshots.mounts(&key)?;
            mounted = crate::mount::TempMount::new(&mounts, &self.st.scratch)
                .map_err(io_err("mount the container's file system"))?;
            // Its volumes and binds where it has them, as a running one shows them.
            for m in self.spec_mounts(&c.record.config.mounts)? {
                if m["type"] != "bind" {
                    continue;
                }
                let ro = m["options"]
                    .as_array()
                    .is_some_and(|o| o.iter().any(|x| x == "ro"));
                binds.push((
                    m["source"].as_str().unwrap_or_default().to_string(),
                    m["destination"].as_str().unwrap_or_default().to_string(),
                    if ro { "ro" } else { "rw" },
                ));
            }
            ("--root", mounted.path().display().to_string())
        };
        let mut cmd = std::process::Command::new(&shim);
        cmd.arg("cp").arg(flag).arg(&value);
        for (src, dest, mode) in &binds {
            cmd.arg("--bind").arg(src).arg(dest).arg(mode);
        }
        cmd.args(args);
        cmd.stdin(if input.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        });
        cmd.stdout(if output.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        });
        cmd.stderr(std::process::Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(io_err(format!("run {}", shim.display())))?;
        let mut stdin = child.stdin.take();
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take().expect("piped stderr");
        let (fed, copied, message) = std::thread::scope(|s| {
            let errors = s.spawn(move || {
                let mut m = String::new();
                let _ = stderr.read_to_string(&mut m);
                m
            });
            // One way only: an archive in, or one out.
            let fed = match (input, stdin.take()) {
                (Some(input), Some(mut w)) => io::copy(input, &mut w).map(drop),
                _ => Ok(()),
            };
            let copied = match (output, stdout.as_mut()) {
                (Some(out), Some(r)) => io::copy(r, out).map(drop),
                _ => Ok(()),
            };
            (fed, copied, errors.join().unwrap_or_default())
        });
        let status = child.wait().map_err(io_err("wait for ketch-shim cp"))?;
        if !status.success() {
            let message = message.trim();
            let kind = if message.starts_with("Could not find") {
                ContainerError::CopyNotFound {
                    message: message.to_string(),
                }
            } else {
                ContainerError::Invalid {
                    reason: if message.is_empty() {
                        format!("copy failed ({status})")
                    } else {
                        message.to_string()
                    },
                }
            };
            return Err(kind.into());
        }
        fed.map_err(io_err("send the archive"))?;
        copied.map_err(io_err("write the archive"))?;
        Ok(())
    }

    /// `cp CONTAINER:PATH -`: a tar of PATH (under its base name; `PATH/.`: its contents).
    pub fn copy_out(&self, name: &str, path: &str, out: &mut dyn Write) -> crate::Result<()> {
        self.cp(name, &["out", path], None, Some(out))
    }

    /// `cp - CONTAINER:DEST`: a tar with one top-level entry (or `.`) into DEST.
    pub fn copy_in(&self, name: &str, dest: &str, archive: &mut dyn Read) -> crate::Result<()> {
        self.cp(name, &["in", dest], Some(archive), None)
    }

    /// A build's COPY: [`Self::copy_in`], making the directories DEST needs first (DEST
    /// itself when it ends in `/`).
    pub(crate) fn copy_in_build(
        &self,
        name: &str,
        dest: &str,
        archive: &mut dyn Read,
    ) -> crate::Result<()> {
        self.cp(name, &["in", dest, "--mkdir"], Some(archive), None)
    }
}
