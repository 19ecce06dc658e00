//! The steps that change files: RUN (a container runs the command) and COPY/ADD (a tar of
//! the sources written into a container's file system by `ketch-shim cp`, chrooted there,
//! so that no link in the image leads a write out of it). Either way the container's
//! changes become the step's layer, and the container goes.

use std::io::BufRead;
use std::os::fd::OwnedFd;

use serde_json::json;

use super::builder::{Builder, RunCtx, StageState, at, cache_key, now, push_history};
use super::context::{Found, Source, TarOptions, append_bytes, clean};
use super::dockerfile::{CommandLine, CopySpec, Heredoc, Instruction};
use super::{BuildError, invalid};
use crate::digest::Digest;
use crate::image::lease::Resource;
use crate::runtime::{Containers, CreateOptions};
use crate::snapshot::Snapshotter;

/// The label build containers carry: the PID and start time of the build's process.
pub const OWNER_LABEL: &str = "ketch.build.owner";

/// A build container, removed (with its anonymous volumes) when dropped.
struct BuildContainer<'a> {
    containers: Containers<'a>,
    id: String,
}

impl Drop for BuildContainer<'_> {
    fn drop(&mut self) {
        let _ = self.containers.remove_with(&self.id, true, true);
    }
}

fn create<'a>(
    b: &Builder<'a>,
    ctx: RunCtx<'_>,
    image: &Digest,
    opts: CreateOptions,
) -> crate::Result<BuildContainer<'a>> {
    let containers = Containers::new(b.state());
    let c = containers.create(&CreateOptions {
        image: image.to_string(),
        labels: vec![(OWNER_LABEL.to_string(), ctx.owner().to_string())],
        ..opts
    })?;
    Ok(BuildContainer {
        containers,
        id: c.record.id,
    })
}

/// Makes the step's image of the container's changes, with the history entry.
fn commit_container(
    b: &Builder<'_>,
    ctx: RunCtx<'_>,
    st: &mut StageState,
    c: &BuildContainer<'_>,
    key: &str,
    created_by: String,
) -> crate::Result<()> {
    let container = c.containers.get(&c.id)?;
    let (layer, diff_id) = c.containers.commit_layer(ctx.lease(), &container)?;
    let mut config = st.config.clone();
    let t = now();
    config["created"] = json!(t);
    match config["rootfs"]["diff_ids"].as_array_mut() {
        Some(d) => d.push(json!(diff_id.to_string())),
        None => config["rootfs"] = json!({"type": "layers", "diff_ids": [diff_id.to_string()]}),
    }
    push_history(&mut config, json!({"created": t, "created_by": created_by}));
    let id = b.commit(ctx.run, st, config, Some(layer))?;
    b.remember(key, &id)?;
    ctx.say(format!(
        "Removing intermediate container {}\n ---> {}\n",
        &c.id[..12],
        id.short()
    ));
    Ok(())
}

/// RUN: the command in a container of the stage's image, with the build args as
/// environment, on the build's network.
#[allow(clippy::too_many_arguments)]
pub(super) fn run_step(
    b: &Builder<'_>,
    ctx: RunCtx<'_>,
    st: &mut StageState,
    i: &Instruction,
    command: &CommandLine,
    mounts: &[String],
    network: Option<&str>,
    heredocs: &[Heredoc],
) -> crate::Result<()> {
    let mounted = run_mounts(b, ctx, st, i, mounts)?;
    let argv = match command {
        CommandLine::Exec(v) => v.clone(),
        CommandLine::Shell(s) => {
            let script = if heredocs.is_empty() {
                s.clone()
            } else if s.trim().starts_with("<<") && heredocs.len() == 1 && !s.trim().contains(' ') {
                // `RUN <<EOF`: the document is the script.
                heredocs[0].content.clone()
            } else {
                // `RUN cmd <<EOF`: the shell reads the documents where the command names them.
                let mut t = s.clone();
                for h in heredocs {
                    t.push('\n');
                    t.push_str(&h.content);
                    t.push_str(&h.name);
                }
                t.push('\n');
                t
            };
            let mut v = st.shell();
            v.push(script);
            v
        }
    };
    let args = st.run_args();
    let mut created_by = argv.join(" ");
    if !args.is_empty() {
        let pairs: Vec<String> = args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        created_by = format!("|{} {} {created_by}", pairs.len(), pairs.join(" "));
    }
    let key = cache_key(st.image.as_ref(), &created_by, &mounted.key);
    if b.cached(ctx.run, st, &key)? {
        return Ok(());
    }
    let image = b.ensure_image(ctx.run, st)?;
    let network = match network.or(ctx.opts().network.as_deref()) {
        None | Some("default") => None,
        Some(n) => Some(n.to_string()),
    };
    let c = create(
        b,
        ctx,
        &image,
        CreateOptions {
            cmd: argv.clone(),
            entrypoint: Some(Vec::new()),
            env: args.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            network,
            mounts: mounted.specs.clone(),
            ..Default::default()
        },
    )?;
    ctx.say(format!(" ---> Running in {}\n", &c.id[..12]));
    let (r, w): (OwnedFd, OwnedFd) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| crate::Error::io("make a pipe for the step's output", e.into()))?;
    c.containers.start_streaming(&c.id, w, false, false)?;
    // Line by line as it comes; a last line without its newline too.
    let mut reader = std::io::BufReader::new(std::fs::File::from(r));
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => ctx.output(String::from_utf8_lossy(&line).into_owned()),
        }
    }
    let code = c.containers.wait(&c.id, None)?;
    if code != 0 {
        return Err(BuildError::RunFailed {
            line: i.line,
            command: argv.join(" "),
            code,
        }
        .into());
    }
    commit_container(b, ctx, st, &c, &key, created_by)
}

/// The mounts of a RUN step, what keeps their sources mounted, and what they add to the
/// step's cache key.
struct RunMounts {
    specs: Vec<crate::volume::MountSpec>,
    key: String,
    _views: Vec<crate::mount::TempMount>,
    _open: Vec<OwnedFd>,
}

/// `RUN --mount=type=cache|bind|tmpfs,...`, as BuildKit takes them: a cache directory kept
/// in the state root between builds (by `id`, else target); a read-only bind of a path in
/// the context, a stage or an image (what it binds is part of the cache key); a tmpfs.
fn run_mounts(
    b: &Builder<'_>,
    ctx: RunCtx<'_>,
    st: &StageState,
    i: &Instruction,
    mounts: &[String],
) -> crate::Result<RunMounts> {
    let mut out = RunMounts {
        specs: Vec::new(),
        key: String::new(),
        _views: Vec::new(),
        _open: Vec::new(),
    };
    for m in mounts {
        let bad = |why: String| invalid(format!("--mount={m}: {why}"));
        let mut kind = "bind".to_string();
        let mut kv: Vec<(String, String)> = Vec::new();
        for part in m.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = match part.split_once('=') {
                Some((k, v)) => (k.trim().to_ascii_lowercase(), v.trim().to_string()),
                None => (part.trim().to_ascii_lowercase(), "true".to_string()),
            };
            if k == "type" {
                kind = v;
            } else {
                kv.push((k, v));
            }
        }
        if matches!(kind.as_str(), "secret" | "ssh") {
            return Err(bad(format!("{kind} mounts are not supported yet")));
        }
        let get = |k: &str| {
            kv.iter()
                .rev()
                .find(|(x, _)| x == k)
                .map(|(_, v)| v.clone())
        };
        let target = get("target")
            .or_else(|| get("dst"))
            .or_else(|| get("destination"))
            .ok_or_else(|| bad("a target is required".into()))?;
        let target = if target.starts_with('/') {
            target
        } else {
            let wd = st.workdir();
            format!("{}/{target}", wd.trim_end_matches('/'))
        };
        let target = format!("/{}", clean(&target));
        let ro = matches!(
            get("ro").or_else(|| get("readonly")).as_deref(),
            Some("true")
        );
        for (k, _) in &kv {
            let known: &[&str] = match kind.as_str() {
                "cache" => &[
                    "target",
                    "dst",
                    "destination",
                    "id",
                    "sharing",
                    "mode",
                    "uid",
                    "gid",
                    "ro",
                    "readonly",
                    "from",
                    "source",
                    "src",
                ],
                "bind" => &[
                    "target",
                    "dst",
                    "destination",
                    "source",
                    "src",
                    "from",
                    "ro",
                    "readonly",
                    "rw",
                    "readwrite",
                ],
                "tmpfs" => &["target", "dst", "destination", "size"],
                _ => &[],
            };
            if !known.contains(&k.as_str()) {
                return Err(bad(format!("unknown option {k:?} for a {kind} mount")));
            }
        }
        match kind.as_str() {
            "cache" => {
                if get("from").is_some() {
                    return Err(bad(
                        "a cache mount from another image is not supported".into()
                    ));
                }
                let id = get("id").unwrap_or_else(|| target.clone());
                let dir = b
                    .state()
                    .root()
                    .join("build-cache")
                    .join(Digest::of(id.as_bytes()).hex());
                let fresh = !dir.exists();
                std::fs::create_dir_all(&dir)
                    .map_err(|e| crate::Error::io(format!("make {}", dir.display()), e))?;
                if fresh {
                    use std::os::unix::fs::PermissionsExt;
                    let mode = get("mode")
                        .map(|m| {
                            u32::from_str_radix(&m, 8).map_err(|_| bad(format!("bad mode {m}")))
                        })
                        .transpose()?
                        .unwrap_or(0o755);
                    let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode));
                    let uid = get("uid").and_then(|u| u.parse::<u32>().ok());
                    let gid = get("gid").and_then(|g| g.parse::<u32>().ok());
                    if uid.is_some() || gid.is_some() {
                        let _ = std::os::unix::fs::chown(&dir, uid, gid);
                    }
                }
                out.specs.push(crate::volume::MountSpec {
                    kind: "bind".into(),
                    source: dir.display().to_string(),
                    target,
                    readonly: ro,
                    ..Default::default()
                });
            }
            "tmpfs" => {
                let size = get("size")
                    .map(|s| crate::model::parse_bytes(&s).map_err(bad))
                    .transpose()?;
                out.specs.push(crate::volume::MountSpec {
                    kind: "tmpfs".into(),
                    target,
                    tmpfs_size: size,
                    ..Default::default()
                });
            }
            "bind" => {
                if matches!(
                    get("rw").or_else(|| get("readwrite")).as_deref(),
                    Some("true")
                ) {
                    return Err(bad(
                        "a writable bind mount is not supported here; its writes would reach the context"
                            .into(),
                    ));
                }
                let source_path = get("source")
                    .or_else(|| get("src"))
                    .unwrap_or_else(|| "/".into());
                let from = get("from");
                let (root, what): (Option<Source>, String) = match &from {
                    None => (None, "context".to_string()),
                    Some(f) => {
                        let image = match ctx.stage_image(f, ctx.stage_index_of(i))? {
                            Some(img) => img,
                            None => Some(b.base_image(ctx.run, f, None)?),
                        };
                        let view = mount_image(b, ctx, image.as_ref())?
                            .ok_or_else(|| bad(format!("{f} has no files to bind")))?;
                        let src = Source::image(view.path(), format!("image {f}"))?;
                        out._views.push(view);
                        out.key.push_str(&format!(
                            " bind {f}={} ",
                            image.map(|d| d.to_string()).unwrap_or_default()
                        ));
                        (Some(src), f.clone())
                    }
                };
                let src = root.as_ref().unwrap_or(ctx.source());
                let found = src.find(&source_path)?;
                let f = found
                    .into_iter()
                    .next()
                    .ok_or_else(|| bad("nothing to bind".into()))?;
                if from.is_none() {
                    out.key.push_str(&format!(
                        " bind {source_path}={} ",
                        src.content_digest(std::slice::from_ref(&f), &TarOptions::default())?
                    ));
                }
                // The bind's source as the kernel resolved it when it was found inside.
                let real =
                    std::fs::read_link(crate::fsutil::at::proc_fd(std::os::fd::AsFd::as_fd(&f.fd)))
                        .map_err(|e| {
                            crate::Error::io(format!("resolve {source_path} in the {what}"), e)
                        })?;
                out._open.push(f.fd);
                out.specs.push(crate::volume::MountSpec {
                    kind: "bind".into(),
                    source: real.display().to_string(),
                    target,
                    readonly: true,
                    ..Default::default()
                });
            }
            other => return Err(bad(format!("unknown mount type {other:?}"))),
        }
    }
    Ok(out)
}

/// Where a COPY writes: into a directory, or one file to a path that is a directory only
/// if the image has one there.
enum Dest {
    Dir(String),
    Path(String),
}

/// `--chown=USER[:GROUP]` as IDs: numbers as they are, names looked up in the image's
/// `/etc/passwd` and `/etc/group`.
fn owner(
    spec: &str,
    image_file: &dyn Fn(&str) -> crate::Result<Option<String>>,
) -> crate::Result<(u32, u32)> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let lookup = |file: &str, name: &str| -> crate::Result<Option<(u32, u32)>> {
        let text = image_file(file)?.unwrap_or_default();
        Ok(text.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 3 && f[0] == name).then(|| {
                let id = f[2].parse().unwrap_or(0);
                let gid = f.get(3).and_then(|g| g.parse().ok()).unwrap_or(id);
                (id, gid)
            })
        }))
    };
    let (uid, primary) = match user.parse::<u32>() {
        Ok(n) => (n, n),
        Err(_) => lookup("/etc/passwd", user)?.ok_or_else(|| {
            invalid(format!(
                "unable to find user {user}: no matching entries in passwd file"
            ))
        })?,
    };
    let gid = match group {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => lookup("/etc/group", g)?.map(|(id, _)| id).ok_or_else(|| {
                invalid(format!(
                    "unable to find group {g}: no matching entries in group file"
                ))
            })?,
        },
    };
    Ok((uid, gid))
}

/// Mounts an image's file system (read-only view) for reading, under the build's lease.
fn mount_image(
    b: &Builder<'_>,
    ctx: RunCtx<'_>,
    image: Option<&Digest>,
) -> crate::Result<Option<crate::mount::TempMount>> {
    let st = b.state();
    let Some(image) = image else {
        return Ok(None);
    };
    let layers = st.db.read(|tx| crate::image::image_layers(tx, image))?;
    let Some(top) = layers.last() else {
        return Ok(None);
    };
    let key = format!("view-build-{}", crate::util::random_hex(8));
    ctx.lease().add(&st.db, Resource::Snapshot(key.clone()))?;
    let mounts = st.snapshots.view(&key, Some(&top.chain_id.to_string()))?;
    let m = crate::mount::TempMount::new(&mounts, &st.scratch)
        .map_err(|e| crate::Error::io("mount an image for COPY", e))?;
    Ok(Some(m))
}

/// COPY and ADD.
pub(super) fn copy_step(
    b: &Builder<'_>,
    ctx: RunCtx<'_>,
    st: &mut StageState,
    i: &Instruction,
    spec: &CopySpec,
    add: bool,
) -> crate::Result<()> {
    let keyword = if add { "ADD" } else { "COPY" };
    let lexer = super::shell::Lexer::new(ctx.escape());
    let word = |s: &str| -> crate::Result<String> {
        lexer
            .word(s, &|n| st.lookup(n))
            .map_err(|e| invalid(e.to_string()))
    };
    if spec.sources.is_empty() {
        return Err(invalid(format!(
            "{keyword} requires at least two arguments"
        )));
    }
    // The sources' tree: the context, a stage, or an image.
    let from = spec.from.as_deref().map(&word).transpose()?;
    let mut _mounted = None;
    let (source_owned, from_image): (Option<Source>, Option<Option<Digest>>) = match &from {
        None => (None, None),
        Some(f) => {
            let image = match ctx.stage_image(f, ctx.stage_index_of(i))? {
                Some(img) => img,
                None => Some(b.base_image(ctx.run, f, None)?),
            };
            let m = mount_image(b, ctx, image.as_ref())?;
            let src = match &m {
                Some(m) => Source::image(m.path(), format!("image {f}"))?,
                // An image of no layers: nothing to find in it.
                None => {
                    return Err(BuildError::Context {
                        reason: format!("{}: not found in {f} (it has no files)", spec.sources[0]),
                    }
                    .into());
                }
            };
            _mounted = m;
            (Some(src), Some(image))
        }
    };
    let source: &Source = source_owned.as_ref().unwrap_or(ctx.source());
    let mut found: Vec<Found> = Vec::new();
    // Files made here rather than found: heredocs, and downloads (name, bytes, mode).
    let mut docs: Vec<(String, Vec<u8>, u32)> = Vec::new();
    let mut sources_text = Vec::new();
    for s in &spec.sources {
        if let Some(name) = s.strip_prefix("<<") {
            let h = spec
                .heredocs
                .iter()
                .find(|h| h.name == name.trim_matches(['-', '\'', '"']) || h.name == name)
                .ok_or_else(|| invalid(format!("no here-document for {s}")))?;
            let body = if h.expand {
                word(&h.content).unwrap_or_else(|_| h.content.clone())
            } else {
                h.content.clone()
            };
            docs.push((h.name.clone(), body.into_bytes(), 0o644));
            sources_text.push(s.clone());
            continue;
        }
        if add && (s.starts_with("http://") || s.starts_with("https://")) {
            let url = word(s)?;
            let (name, data) = download(b, &url, spec.checksum.as_deref())?;
            docs.push((name, data, 0o600));
            sources_text.push(url);
            continue;
        }
        if add && (s.starts_with("git@") || s.ends_with(".git")) {
            return Err(invalid(format!("ADD {s}: git sources are not supported")));
        }
        let s = word(s)?;
        found.extend(source.find(&s)?);
        sources_text.push(s);
    }
    if spec.checksum.is_some() && docs.iter().all(|d| d.2 != 0o600) {
        return Err(invalid(
            "--checksum can only be given for a source from a URL",
        ));
    }
    let dest_word = word(&spec.dest)?;
    let workdir = st.workdir();
    let dir_wanted = dest_word.ends_with('/') || dest_word == "." || dest_word.ends_with("/.");
    let dest_abs = if dest_word.starts_with('/') {
        dest_word.clone()
    } else {
        format!("{}/{dest_word}", workdir.trim_end_matches('/'))
    };
    let dest_clean = format!("/{}", clean(&dest_abs));
    let many = found.len() + docs.len() > 1;
    if many && !dir_wanted {
        return Err(invalid(format!(
            "When using {keyword} with more than one source file, the destination must be a directory and end with a /"
        )));
    }
    let chmod = spec
        .chmod
        .as_deref()
        .map(|m| {
            u32::from_str_radix(m, 8)
                .ok()
                .filter(|m| *m <= 0o7777)
                .ok_or_else(|| invalid(format!("invalid --chmod={m}: an octal mode is expected")))
        })
        .transpose()?;
    let owner_ids = match spec.chown.as_deref().map(&word).transpose()? {
        None => None,
        Some(spec) => {
            let image = st.image.clone();
            let m = if spec.split(':').all(|p| p.parse::<u32>().is_ok()) {
                None
            } else {
                mount_image(b, ctx, image.as_ref())?
            };
            let read = |path: &str| -> crate::Result<Option<String>> {
                let Some(m) = &m else { return Ok(None) };
                let src = Source::image(m.path(), "image".into())?;
                Ok(src
                    .read_file(path)?
                    .map(|b| String::from_utf8_lossy(&b).into_owned()))
            };
            Some(owner(&spec, &read)?)
        }
    };
    let mut topts = TarOptions {
        owner: owner_ids,
        mode: chmod,
        mtime: true,
        extract_archives: false,
    };
    // ADD of one local archive unpacks it into the destination directory.
    let archive = add
        && from.is_none()
        && found.len() == 1
        && docs.is_empty()
        && found[0].meta.kind() == rustix::fs::FileType::RegularFile
        && looks_like_archive(&found[0]);
    topts.extract_archives = archive;
    let single_dir = found.len() == 1 && docs.is_empty() && found[0].meta.is_dir();
    let dest = if dir_wanted || many || single_dir || archive {
        Dest::Dir(format!("{}/", dest_clean.trim_end_matches('/')))
    } else {
        Dest::Path(dest_clean.clone())
    };
    // What the step copies, for its key: the content of what it reads from the context;
    // for a stage or an image, the image (which fixes its content) and the paths.
    let (kind, content) = match &from_image {
        Some(img) => (
            "multi",
            Digest::of(
                format!(
                    "from {} {}",
                    img.as_ref().map(|d| d.to_string()).unwrap_or_default(),
                    sources_text.join(" ")
                )
                .as_bytes(),
            )
            .hex()
            .to_string(),
        ),
        None => {
            let mut h = source.content_digest(&found, &topts)?;
            for (name, body, mode) in &docs {
                h.push_str(&format!(" <<{name}:{mode:o}:{}", Digest::of(body)));
            }
            let kind = if many {
                "multi"
            } else if single_dir {
                "dir"
            } else {
                "file"
            };
            (kind, Digest::of(h.as_bytes()).hex().to_string())
        }
    };
    let dest_text = match &dest {
        Dest::Dir(d) | Dest::Path(d) => d.clone(),
    };
    let mut created_by = st.shell();
    created_by.push(format!(
        "#(nop) {keyword} {kind}:{} in {dest_text} ",
        short_hash(&content)
    ));
    let created_by = created_by.join(" ");
    let key = cache_key(st.image.as_ref(), &created_by, &content);
    if b.cached(ctx.run, st, &key)? {
        return Ok(());
    }
    let image = b.ensure_image(ctx.run, st)?;
    let mut cmd = st.shell();
    cmd.push(format!("#(nop) {keyword}"));
    let c = create(
        b,
        ctx,
        &image,
        CreateOptions {
            cmd,
            entrypoint: Some(Vec::new()),
            network: Some("none".into()),
            ..Default::default()
        },
    )?;
    // The tar is written in a thread of its own while the shim reads it.
    let (r, w): (OwnedFd, OwnedFd) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| crate::Error::io("make a pipe for COPY", e.into()))?;
    let (dest_arg, names): (String, Vec<String>) = match &dest {
        Dest::Dir(d) => (
            d.clone(),
            found
                .iter()
                .map(|f| {
                    if f.meta.is_dir() || archive {
                        String::new()
                    } else {
                        base_name(&f.path)
                    }
                })
                .collect(),
        ),
        Dest::Path(p) => (
            p.clone(),
            found.iter().map(|f| base_name(&f.path)).collect(),
        ),
    };
    let written = std::thread::scope(|s| {
        let writer = s.spawn(|| -> crate::Result<()> {
            let w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::from(w));
            let mut t = tar::Builder::new(w);
            for (f, name) in found.iter().zip(&names) {
                source.write_tar(&mut t, f, name, &topts)?;
            }
            for (name, body, mode) in &docs {
                let n = match &dest {
                    Dest::Dir(_) => name.clone(),
                    Dest::Path(p) => base_name(p),
                };
                append_bytes(&mut t, &n, body, *mode, &topts)
                    .map_err(|e| crate::Error::io("write a here-document", e))?;
            }
            t.into_inner()
                .and_then(|mut w| std::io::Write::flush(&mut w))
                .map_err(|e| crate::Error::io("write the files to copy", e))?;
            Ok(())
        });
        let mut r = std::fs::File::from(r);
        let copied = c.containers.copy_in_build(&c.id, &dest_arg, &mut r);
        let _ = std::io::copy(&mut r, &mut std::io::sink());
        let wrote = writer
            .join()
            .unwrap_or_else(|_| Err(invalid("the COPY writer panicked")));
        wrote.and(copied)
    });
    written.map_err(|e| at(i, e))?;
    commit_container(b, ctx, st, &c, &key, created_by)
}

/// ADD of a URL: its bytes, checked against `--checksum` when given, and the file name its
/// path ends in.
fn download(
    b: &Builder<'_>,
    url: &str,
    checksum: Option<&str>,
) -> crate::Result<(String, Vec<u8>)> {
    let path = url
        .split_once("://")
        .map(|(_, rest)| rest.split(['?', '#']).next().unwrap_or(""))
        .unwrap_or("");
    let name = path
        .split_once('/')
        .map(|(_, p)| p.rsplit('/').next().unwrap_or(""))
        .unwrap_or("")
        .to_string();
    if name.is_empty() {
        return Err(invalid(format!(
            "ADD {url}: cannot determine a file name from the URL"
        )));
    }
    let mut data = Vec::new();
    crate::registry::fetch(&b.state().registry, url, &mut data)
        .map_err(|e| invalid(format!("ADD {url}: {e}")))?;
    if let Some(want) = checksum {
        let want: Digest = want
            .parse()
            .map_err(|e| invalid(format!("--checksum={want}: {e}")))?;
        let got = Digest::of(&data);
        if got != want {
            return Err(invalid(format!(
                "ADD {url}: checksum mismatch: expected {want}, got {got}"
            )));
        }
    }
    Ok((name, data))
}

fn base_name(p: &str) -> String {
    p.rsplit('/').next().unwrap_or(p).to_string()
}

/// The first 64 characters of a hash, as Docker's history shows `file:<hash>`.
fn short_hash(h: &str) -> &str {
    &h[..h.len().min(64)]
}

fn looks_like_archive(f: &Found) -> bool {
    let Ok(mut file) =
        std::fs::File::open(crate::fsutil::at::proc_fd(std::os::fd::AsFd::as_fd(&f.fd)))
    else {
        return false;
    };
    let mut head = [0u8; 512];
    let n = super::context::read_full(&mut file, &mut head).unwrap_or(0);
    super::context::is_archive(&head[..n])
}

/// Removes the build containers of builds whose process is gone (killed midway), with
/// what they made. Called when a root is opened; one query when there are none.
pub fn remove_orphans(containers: &Containers<'_>, st: &crate::state::State) -> crate::Result<()> {
    let ids: Vec<String> = st.db.read(|tx| {
        let mut stmt = tx.prepare("SELECT id FROM containers WHERE instr(config, ?1) > 0")?;
        let rows = stmt
            .query_map(rusqlite::params![OWNER_LABEL], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok::<_, crate::Error>(rows)
    })?;
    for id in ids {
        let Ok(c) = containers.get(&id) else {
            continue;
        };
        let Some((_, owner)) = c
            .record
            .config
            .labels
            .iter()
            .find(|(k, _)| k == OWNER_LABEL)
        else {
            continue;
        };
        let alive = owner
            .split_once(':')
            .and_then(|(p, s)| Some((p.parse::<u32>().ok()?, s.parse::<u64>().ok()?)))
            .is_some_and(|(pid, start)| crate::util::process_alive(pid, start));
        if !alive {
            let _ = containers.remove_with(&id, true, true);
        }
    }
    Ok(())
}
