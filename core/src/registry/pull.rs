//! Pull: a reference resolved to a manifest (through an index, for the platform asked),
//! its config and layers fetched, verified and unpacked, the image recorded.
//!
//! Layers download in parallel (three at a time, as dockerd) straight into the content
//! store, each checked against its digest and size as it streams; they unpack in order as
//! they arrive, the first while the others still download. A download that breaks midway
//! goes on from where it stopped when the registry serves ranges. Two processes pulling one
//! blob take turns on a lock in the store's ingest directory, so it is fetched and stored
//! once.

use std::fs::File;
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use oci_spec::image as oci;
use rusqlite::params;

use super::transport::{Body, Endpoint, MANIFEST_ACCEPT, error_text, header};
use super::{AuthConfig, Platform, Registries, RegistryError, scope};
use crate::content::ContentError;
use crate::digest::Digest;
use crate::image::import::NewImage;
use crate::image::lease::{Lease, Resource};
use crate::image::{
    self, ImageError, MAX_JSON, MEDIA_DOCKER_LIST, MEDIA_DOCKER_MANIFEST, MEDIA_OCI_INDEX,
    MEDIA_OCI_MANIFEST, chain_id,
};
use crate::model::ProgressMessage;
use crate::reference::Reference;

/// Layers fetched at once.
const DOWNLOADS: usize = 3;
/// Tries of one blob before a pull gives up on a registry that keeps breaking off.
const ATTEMPTS: u32 = 5;
/// Progress of one transfer is told at most this often.
const TICK: Duration = Duration::from_millis(100);

/// What to pull.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// `busybox`, `localhost:5000/me/app:1`, `name@sha256:...`.
    pub reference: String,
    /// Every tag of the repository (`-a`).
    pub all_tags: bool,
    /// `os/arch[/variant]` to pick from an index; `None`: the host's.
    pub platform: Option<String>,
    /// Credentials; `None`: anonymous (front doors look up the user's stored ones first).
    pub auth: Option<AuthConfig>,
    /// Speak to this registry over plain HTTP or unverified TLS, as if it were listed
    /// insecure (`--tls-verify=false`).
    pub insecure: bool,
}

/// An image a pull brought in (or found up to date).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullResult {
    /// As Docker prints it: `busybox:latest`, `localhost:5000/x@sha256:...`.
    pub reference: String,
    pub id: Digest,
    /// The digest the reference resolved to (an index's, for a multi-platform image).
    pub digest: Digest,
}

/// A manifest or index as fetched, checked against its digest.
#[derive(Clone)]
struct Fetched {
    bytes: Vec<u8>,
    digest: Digest,
    media_type: String,
}

// Progress is the common message; boxing it would cost an allocation each.
#[allow(clippy::large_enum_variant)]
enum Msg {
    Progress(ProgressMessage),
    Downloaded(usize, Result<(), crate::Error>),
    Unpacked(usize, Result<(), crate::Error>),
}

fn short(d: &Digest) -> String {
    d.hex()[..12].to_string()
}

/// The media types of a layer the engine can unpack.
fn is_layer(media_type: &str) -> bool {
    media_type.starts_with("application/vnd.oci.image.layer.")
        || media_type.starts_with("application/vnd.docker.image.rootfs.")
}

impl Registries<'_> {
    /// Pulls `opts.reference` (every tag with `all_tags`), telling `progress` as it goes.
    pub fn pull(
        &self,
        opts: &PullOptions,
        progress: &mut dyn FnMut(ProgressMessage),
    ) -> crate::Result<Vec<PullResult>> {
        let r = Reference::parse(&opts.reference)?;
        let platform = match &opts.platform {
            Some(p) if !p.is_empty() => Some(Platform::parse(p)?),
            _ => None,
        };
        let auth = opts.auth.clone().unwrap_or_default();
        let ep = Endpoint::connect(&self.st.registry, r.domain(), auth, false, !opts.insecure)?;
        if opts.all_tags {
            if r.tag().is_some() || r.digest().is_some() {
                return Err(RegistryError::Platform {
                    value: opts.reference.clone(),
                    reason: "a tag or digest cannot be used with --all-tags".into(),
                }
                .into());
            }
            let tags = self.list_tags(&ep, &r)?;
            let mut out = Vec::new();
            for t in tags {
                let tagged = Reference::parse(&format!("{}:{t}", r.name()))?;
                out.push(self.pull_one(&ep, &tagged, platform.as_ref(), progress)?);
            }
            return Ok(out);
        }
        let r = if r.digest().is_some() {
            r
        } else {
            r.with_default_tag()
        };
        Ok(vec![self.pull_one(&ep, &r, platform.as_ref(), progress)?])
    }

    /// `GET /distribution/{name}/json`: what the registry has under `reference` (its
    /// manifest's or index's descriptor), and the platforms it is for: an index's entries,
    /// or a manifest's configuration's. Nothing is stored.
    pub fn distribution(
        &self,
        reference: &str,
        auth: Option<AuthConfig>,
    ) -> crate::Result<serde_json::Value> {
        let r = Reference::parse(reference)?;
        let r = if r.digest().is_some() {
            r
        } else {
            r.with_default_tag()
        };
        let ep = Endpoint::connect(
            &self.st.registry,
            r.domain(),
            auth.unwrap_or_default(),
            false,
            true,
        )?;
        let by = match (r.digest(), r.tag()) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.to_string(),
            (None, None) => "latest".into(),
        };
        let top = self.fetch_manifest(&ep, &r, &by, r.digest())?;
        let doc: serde_json::Value =
            serde_json::from_slice(&top.bytes).map_err(|e| RegistryError::Protocol {
                registry: ep.domain.clone(),
                reason: format!("manifest for {}: {e}", r.familiar()),
            })?;
        let platform = |p: &serde_json::Value| {
            let mut out = serde_json::Map::new();
            for (from, to) in [
                ("architecture", "architecture"),
                ("os", "os"),
                ("os.version", "os.version"),
                ("os.features", "os.features"),
                ("variant", "variant"),
            ] {
                if !p[from].is_null() {
                    out.insert(to.into(), p[from].clone());
                }
            }
            serde_json::Value::Object(out)
        };
        let platforms: Vec<serde_json::Value> = match doc["manifests"].as_array() {
            Some(entries) => entries
                .iter()
                .filter(|m| m["platform"].is_object())
                .map(|m| platform(&m["platform"]))
                .collect(),
            None => {
                // A single manifest: the platform is its configuration's.
                let digest = doc["config"]["digest"].as_str().unwrap_or_default();
                let scopes = [scope(r.path(), false)];
                let mut resp = ep.send(
                    "GET",
                    &format!("/v2/{}/blobs/{digest}", r.path()),
                    &scopes,
                    &[],
                    Body::Empty,
                )?;
                let status = resp.status().as_u16();
                let body = read_small(&mut resp, &ep.domain)?;
                let what = format!("configuration of {}", r.familiar());
                if status != 200 {
                    return Err(answer_error(&ep, status, &body, &what).into());
                }
                let config: serde_json::Value =
                    serde_json::from_slice(&body).map_err(|e| RegistryError::Protocol {
                        registry: ep.domain.clone(),
                        reason: format!("{what}: {e}"),
                    })?;
                vec![platform(&config)]
            }
        };
        Ok(serde_json::json!({
            "Descriptor": {
                "mediaType": top.media_type,
                "digest": top.digest.to_string(),
                "size": top.bytes.len(),
            },
            "Platforms": platforms,
        }))
    }

    /// The tags of a repository, every page of them.
    pub(crate) fn list_tags(&self, ep: &Endpoint, r: &Reference) -> crate::Result<Vec<String>> {
        let scopes = [scope(r.path(), false)];
        let mut next = Some(format!("/v2/{}/tags/list", r.path()));
        let mut out = Vec::new();
        while let Some(path) = next.take() {
            let mut resp = ep.send("GET", &path, &scopes, &[], Body::Empty)?;
            let status = resp.status().as_u16();
            let link = header(resp.headers(), "link").map(String::from);
            let body = read_small(&mut resp, &ep.domain)?;
            if status != 200 {
                return Err(answer_error(
                    ep,
                    status,
                    &body,
                    &format!("tags of {}", r.familiar_name()),
                )
                .into());
            }
            #[derive(serde::Deserialize)]
            struct Tags {
                #[serde(default)]
                tags: Option<Vec<String>>,
            }
            let t: Tags = serde_json::from_slice(&body).map_err(|e| RegistryError::Protocol {
                registry: ep.domain.clone(),
                reason: format!("tags list: {e}"),
            })?;
            out.extend(t.tags.unwrap_or_default());
            // `Link: </v2/x/tags/list?last=a&n=100>; rel="next"`
            next = link.and_then(|l| {
                let start = l.find('<')? + 1;
                let end = l.find('>')?;
                (l.contains("rel=\"next\"") && start < end).then(|| l[start..end].to_string())
            });
        }
        Ok(out)
    }

    fn pull_one(
        &self,
        ep: &Endpoint,
        r: &Reference,
        platform: Option<&Platform>,
        progress: &mut dyn FnMut(ProgressMessage),
    ) -> crate::Result<PullResult> {
        let tag_or_digest = match (r.tag(), r.digest()) {
            (Some(t), _) => t.to_string(),
            (None, Some(d)) => d.to_string(),
            (None, None) => "latest".to_string(),
        };
        let lease = Lease::new(&self.st.db)?;
        let res = self.pull_leased(&lease, ep, r, &tag_or_digest, platform, progress);
        let released = self.images().release(lease);
        let (result, fresh) = res?;
        released?;
        progress(ProgressMessage::status(format!(
            "Digest: {}",
            result.digest
        )));
        progress(ProgressMessage::status(format!(
            "Status: {} for {}",
            if fresh {
                "Downloaded newer image"
            } else {
                "Image is up to date"
            },
            result.reference
        )));
        crate::events::record(
            self.st,
            "image",
            "pull",
            &result.reference,
            &[("name", &result.reference)],
        );
        Ok(result)
    }

    /// Fetches a manifest or index by tag or digest, checked against the digest it was asked
    /// by, or the one the registry says it has.
    fn fetch_manifest(
        &self,
        ep: &Endpoint,
        r: &Reference,
        by: &str,
        expected: Option<&Digest>,
    ) -> crate::Result<Fetched> {
        let scopes = [scope(r.path(), false)];
        let path = format!("/v2/{}/manifests/{by}", r.path());
        let mut resp = ep.send(
            "GET",
            &path,
            &scopes,
            &[("Accept", MANIFEST_ACCEPT)],
            Body::Empty,
        )?;
        let status = resp.status().as_u16();
        let said_digest = header(resp.headers(), "docker-content-digest").map(String::from);
        let content_type = header(resp.headers(), "content-type")
            .map(|c| c.split(';').next().unwrap_or(c).trim().to_string());
        let body = read_small(&mut resp, &ep.domain)?;
        let what = format!("manifest for {}", r.familiar());
        if status != 200 {
            return Err(answer_error(ep, status, &body, &what).into());
        }
        let digest = Digest::of(&body);
        let mismatch = |expected: String| RegistryError::Mismatch {
            what: what.clone(),
            expected,
            actual: digest.to_string(),
        };
        if let Some(e) = expected
            && e != &digest
        {
            return Err(mismatch(e.to_string()).into());
        }
        if let Some(said) = said_digest.filter(|s| s.starts_with("sha256:"))
            && said != digest.to_string()
        {
            return Err(mismatch(said).into());
        }
        #[derive(serde::Deserialize)]
        struct Head {
            #[serde(rename = "mediaType", default)]
            media_type: Option<String>,
            #[serde(default)]
            manifests: Option<serde_json::Value>,
        }
        let head: Head = serde_json::from_slice(&body).map_err(|e| RegistryError::Protocol {
            registry: ep.domain.clone(),
            reason: format!("{what}: not JSON: {e}"),
        })?;
        let media_type = head
            .media_type
            .filter(|m| !m.is_empty())
            .or(content_type.filter(|c| c.starts_with("application/vnd.")))
            .unwrap_or_else(|| {
                if head.manifests.is_some() {
                    MEDIA_OCI_INDEX.into()
                } else {
                    MEDIA_OCI_MANIFEST.into()
                }
            });
        Ok(Fetched {
            bytes: body,
            digest,
            media_type,
        })
    }

    /// Puts a fetched document in the store under `lease`.
    fn keep(&self, lease: &Lease, f: &Fetched) -> crate::Result<()> {
        lease.add(&self.st.db, Resource::Blob(f.digest.clone()))?;
        self.st.content.write_all(&f.bytes, Some(&f.digest))?;
        Ok(())
    }

    fn pull_leased(
        &self,
        lease: &Lease,
        ep: &Endpoint,
        r: &Reference,
        by: &str,
        platform: Option<&Platform>,
        progress: &mut dyn FnMut(ProgressMessage),
    ) -> crate::Result<(PullResult, bool)> {
        let top = self.fetch_manifest(ep, r, by, r.digest())?;
        // The first word of the stream: a daemon that has said nothing yet can still answer
        // a missing image with a 404 of its own.
        progress(ProgressMessage::about(
            by,
            format!("Pulling from {}", r.path()),
        ));
        self.keep(lease, &top)?;
        let manifest = match top.media_type.as_str() {
            MEDIA_OCI_INDEX | MEDIA_DOCKER_LIST => {
                let want = platform.cloned().unwrap_or_else(Platform::host);
                let index: oci::ImageIndex =
                    serde_json::from_slice(&top.bytes).map_err(|e| RegistryError::Protocol {
                        registry: ep.domain.clone(),
                        reason: format!("index {}: {e}", top.digest),
                    })?;
                let chosen = index
                    .manifests()
                    .iter()
                    .filter(|m| {
                        matches!(
                            m.media_type().to_string().as_str(),
                            MEDIA_OCI_MANIFEST | MEDIA_DOCKER_MANIFEST
                        )
                    })
                    .find(|m| {
                        m.platform().as_ref().is_some_and(|p| {
                            want.matches(
                                &p.os().to_string(),
                                &p.architecture().to_string(),
                                p.variant().as_deref(),
                            )
                        })
                    })
                    .ok_or_else(|| RegistryError::NoPlatform {
                        reference: r.familiar(),
                        platform: want.to_string(),
                    })?;
                let d: Digest = image::parse_digest(chosen.digest().as_ref())?;
                let m = self.fetch_manifest(ep, r, &d.to_string(), Some(&d))?;
                self.keep(lease, &m)?;
                m
            }
            MEDIA_OCI_MANIFEST | MEDIA_DOCKER_MANIFEST => top.clone(),
            other => {
                return Err(RegistryError::Protocol {
                    registry: ep.domain.clone(),
                    reason: format!("{}: unsupported manifest type {other:?} (schema 1 and artifacts are not images)", r.familiar()),
                }
                .into());
            }
        };
        let m = image::parse_manifest(&manifest.bytes)?;
        let config_desc = m.config();
        let config_media = config_desc.media_type().to_string();
        if !matches!(
            config_media.as_str(),
            image::MEDIA_OCI_CONFIG | "application/vnd.docker.container.image.v1+json"
        ) {
            return Err(RegistryError::Protocol {
                registry: ep.domain.clone(),
                reason: format!(
                    "{}: config of type {config_media:?}: not a container image",
                    r.familiar()
                ),
            }
            .into());
        }
        let config = image::parse_digest(config_desc.digest().as_ref())?;
        if config_desc.size() > MAX_JSON {
            return Err(RegistryError::Protocol {
                registry: ep.domain.clone(),
                reason: format!("config {config} is {} bytes", config_desc.size()),
            }
            .into());
        }
        let cancel = AtomicBool::new(false);
        self.fetch_blob(
            ep,
            r,
            lease,
            &config,
            config_desc.size(),
            &cancel,
            &mut |_| {},
        )?;
        let cfg = image::parse_config(&self.st.content.read(&config, MAX_JSON)?)?;
        if top.digest == manifest.digest
            && let Some(p) = platform
            && !p.matches(
                &cfg.os().to_string(),
                &cfg.architecture().to_string(),
                cfg.variant().as_deref(),
            )
        {
            return Err(RegistryError::NoPlatform {
                reference: r.familiar(),
                platform: p.to_string(),
            }
            .into());
        }
        let diff_ids: Vec<Digest> = cfg
            .rootfs()
            .diff_ids()
            .iter()
            .map(|d| image::parse_digest(d))
            .collect::<Result<_, _>>()?;
        if diff_ids.len() != m.layers().len() {
            return Err(ImageError::Malformed {
                what: format!("manifest {}", manifest.digest),
                reason: format!(
                    "{} layers, but its config lists {} diff IDs",
                    m.layers().len(),
                    diff_ids.len()
                ),
            }
            .into());
        }
        let mut layers: Vec<(Digest, u64)> = Vec::new();
        for l in m.layers() {
            let media = l.media_type().to_string();
            if !is_layer(&media) {
                return Err(RegistryError::Protocol {
                    registry: ep.domain.clone(),
                    reason: format!("{}: layer of type {media:?}", r.familiar()),
                }
                .into());
            }
            layers.push((image::parse_digest(l.digest().as_ref())?, l.size()));
        }
        let chains = self.fetch_and_unpack(ep, r, lease, &layers, &diff_ids, progress)?;
        let existed = self.st.db.read(|tx| {
            Ok::<_, crate::Error>(match r.tag() {
                Some(_) => {
                    tx.query_row(
                        "SELECT COUNT(*) FROM tags WHERE name = ?1 AND image_id = ?2",
                        params![r.to_string(), config.to_string()],
                        |row| row.get::<_, i64>(0),
                    )? > 0
                }
                None => {
                    tx.query_row(
                        "SELECT COUNT(*) FROM repo_digests WHERE name = ?1 AND digest = ?2",
                        params![r.name(), top.digest.to_string()],
                        |row| row.get::<_, i64>(0),
                    )? > 0
                }
            })
        })?;
        self.images().commit_images(&[NewImage {
            id: config.clone(),
            manifest_digest: manifest.digest.clone(),
            manifest_media_type: manifest.media_type.clone(),
            created: cfg.created().clone(),
            layers: layers.iter().map(|(d, _)| d.clone()).zip(chains).collect(),
            tags: r.tag().map(|_| r.clone()).into_iter().collect(),
            repo_digests: vec![(r.name(), top.digest.clone())],
            parent: None,
        }])?;
        self.record_sources(r, layers.iter().map(|(d, _)| d).chain([&config]))?;
        let shown = match r.tag() {
            Some(_) => r.familiar(),
            None => format!("{}@{}", r.familiar_name(), top.digest),
        };
        Ok((
            PullResult {
                reference: shown,
                id: config,
                digest: top.digest,
            },
            !existed,
        ))
    }

    /// Downloads the layers not yet here (several at once) and unpacks them in order as
    /// they arrive, each on a thread of its own while this one relays progress. Returns the
    /// chain IDs.
    fn fetch_and_unpack(
        &self,
        ep: &Endpoint,
        r: &Reference,
        lease: &Lease,
        layers: &[(Digest, u64)],
        diff_ids: &[Digest],
        progress: &mut dyn FnMut(ProgressMessage),
    ) -> crate::Result<Vec<Digest>> {
        let images = self.images();
        let mut chains = Vec::with_capacity(layers.len());
        let mut needed = vec![false; layers.len()];
        let mut parent: Option<Digest> = None;
        for (i, ((blob, _), diff_id)) in layers.iter().zip(diff_ids).enumerate() {
            let chain = chain_id(parent.as_ref(), diff_id);
            if images.have_layer(lease, &chain)? {
                progress(ProgressMessage::about(short(blob), "Already exists"));
            } else {
                needed[i] = true;
                progress(ProgressMessage::about(short(blob), "Pulling fs layer"));
            }
            parent = Some(chain.clone());
            chains.push(chain);
        }
        let todo: Vec<usize> = (0..layers.len()).filter(|&i| needed[i]).collect();
        if todo.is_empty() {
            return Ok(chains);
        }
        for &i in todo.iter().skip(DOWNLOADS) {
            progress(ProgressMessage::about(short(&layers[i].0), "Waiting"));
        }
        let cancel = AtomicBool::new(false);
        let queue = std::sync::Mutex::new(todo.clone().into_iter());
        let (tx, rx) = mpsc::channel::<Msg>();
        let chains_ref = &chains;
        std::thread::scope(|s| -> crate::Result<()> {
            for _ in 0..DOWNLOADS.min(todo.len()) {
                let tx = tx.clone();
                let (queue, cancel) = (&queue, &cancel);
                s.spawn(move || {
                    loop {
                        let next = queue.lock().unwrap().next();
                        let Some(i) = next else { break };
                        if cancel.load(Ordering::Relaxed) {
                            break;
                        }
                        let (blob, size) = &layers[i];
                        let id = short(blob);
                        let mut last = Instant::now() - TICK;
                        let res = self.fetch_blob(ep, r, lease, blob, *size, cancel, &mut |n| {
                            if last.elapsed() >= TICK || n == *size {
                                last = Instant::now();
                                let _ = tx.send(Msg::Progress(ProgressMessage::bytes(
                                    id.clone(),
                                    "Downloading",
                                    n,
                                    *size,
                                )));
                            }
                        });
                        if res.is_ok() {
                            let _ = tx.send(Msg::Progress(ProgressMessage::about(
                                id.clone(),
                                "Verifying Checksum",
                            )));
                            let _ = tx.send(Msg::Progress(ProgressMessage::about(
                                id,
                                "Download complete",
                            )));
                        }
                        let failed = res.is_err();
                        let _ = tx.send(Msg::Downloaded(i, res));
                        if failed {
                            break;
                        }
                    }
                });
            }
            // The layers unpack in order: `next` is the next to unpack, started once it is
            // here and the one before it is done.
            let mut arrived = vec![false; layers.len()];
            let mut next = 0usize;
            let mut unpacking = false;
            let result = loop {
                while next < layers.len() && !needed[next] {
                    next += 1;
                }
                if next == layers.len() && !unpacking {
                    break Ok(());
                }
                if !unpacking && arrived[next] {
                    unpacking = true;
                    let i = next;
                    let tx = tx.clone();
                    let parent = (i > 0).then(|| chains_ref[i - 1].clone());
                    s.spawn(move || {
                        let res = self.unpack_one(
                            lease,
                            r,
                            i,
                            &layers[i],
                            &diff_ids[i],
                            parent.as_ref(),
                            &tx,
                        );
                        let _ = tx.send(Msg::Unpacked(i, res));
                    });
                }
                match rx.recv() {
                    Ok(Msg::Progress(p)) => progress(p),
                    Ok(Msg::Downloaded(j, res)) => match res {
                        Ok(()) => arrived[j] = true,
                        Err(e) => break Err(e),
                    },
                    Ok(Msg::Unpacked(i, res)) => match res {
                        Ok(()) => {
                            unpacking = false;
                            next = i + 1;
                        }
                        Err(e) => break Err(e),
                    },
                    Err(_) => unreachable!("this thread holds a sender"),
                }
            };
            if result.is_err() {
                cancel.store(true, Ordering::Relaxed);
            }
            drop(tx);
            // Drain, so the other threads end.
            for m in rx.iter() {
                if let Msg::Progress(p) = m
                    && result.is_ok()
                {
                    progress(p);
                }
            }
            result
        })?;
        Ok(chains)
    }

    /// Unpacks one downloaded layer on `parent`, telling `tx` how far it got.
    #[allow(clippy::too_many_arguments)]
    fn unpack_one(
        &self,
        lease: &Lease,
        r: &Reference,
        index: usize,
        (blob, size): &(Digest, u64),
        diff_id: &Digest,
        parent: Option<&Digest>,
        tx: &mpsc::Sender<Msg>,
    ) -> crate::Result<()> {
        let id = short(blob);
        let file = self.st.content.open_blob(blob)?;
        let each_id = id.clone();
        let size = *size;
        let each_tx = tx.clone();
        let mut reader = Counting {
            inner: file,
            read: 0,
            last: Instant::now() - TICK,
            each: Box::new(move |n: u64| {
                let _ = each_tx.send(Msg::Progress(ProgressMessage::bytes(
                    each_id.clone(),
                    "Extracting",
                    n,
                    size,
                )));
            }),
        };
        self.images()
            .unpack_expected(lease, parent, &mut reader, &r.familiar(), index, diff_id)?;
        let _ = tx.send(Msg::Progress(ProgressMessage::about(id, "Pull complete")));
        Ok(())
    }

    /// Fetches a blob into the content store (held by `lease`), unless it is there.
    /// `each` is told the bytes received so far.
    #[allow(clippy::too_many_arguments)]
    fn fetch_blob(
        &self,
        ep: &Endpoint,
        r: &Reference,
        lease: &Lease,
        digest: &Digest,
        size: u64,
        cancel: &AtomicBool,
        each: &mut dyn FnMut(u64),
    ) -> crate::Result<()> {
        lease.add(&self.st.db, Resource::Blob(digest.clone()))?;
        if self.st.content.contains(digest) {
            each(size);
            return Ok(());
        }
        // One process fetches a blob at a time; the others find it stored.
        let lock_path = self
            .st
            .root
            .join("ingest")
            .join(format!("{}.lock", digest.hex()));
        let lock = File::create(&lock_path).map_err(|e| RegistryError::Io {
            what: format!("create {}", lock_path.display()),
            source: e,
        })?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).map_err(|e| {
            RegistryError::Io {
                what: format!("lock {}", lock_path.display()),
                source: e.into(),
            }
        })?;
        if self.st.content.contains(digest) {
            each(size);
            return Ok(());
        }
        let scopes = [scope(r.path(), false)];
        let path = format!("/v2/{}/blobs/{digest}", r.path());
        let what = format!("blob {digest} of {}", r.familiar_name());
        let mut w = self.st.content.writer()?;
        let mut attempt = 0;
        let mut buf = vec![0u8; 256 << 10];
        loop {
            if cancel.load(Ordering::Relaxed) {
                return Err(RegistryError::Protocol {
                    registry: ep.domain.clone(),
                    reason: "pull cancelled".into(),
                }
                .into());
            }
            let from = w.written();
            let range = format!("bytes={from}-");
            let headers: &[(&str, &str)] = if from > 0 { &[("Range", &range)] } else { &[] };
            let broke = |reason: String| RegistryError::Unreachable {
                registry: ep.domain.clone(),
                reason: format!("{what}: {reason}"),
            };
            let outcome: Result<(), RegistryError> = (|| {
                let resp = ep.send("GET", &path, &scopes, headers, Body::Empty)?;
                let status = resp.status().as_u16();
                match status {
                    200 if from > 0 => {
                        // No ranges here: from the start again.
                        w = self.st.content.writer().map_err(content_io)?;
                    }
                    200 => {}
                    206 if from > 0 => {
                        let starts = header(resp.headers(), "content-range")
                            .and_then(|c| c.strip_prefix("bytes "))
                            .and_then(|c| c.split('-').next())
                            .and_then(|s| s.parse::<u64>().ok());
                        if starts != Some(from) {
                            return Err(RegistryError::Protocol {
                                registry: ep.domain.clone(),
                                reason: format!(
                                    "{what}: asked for bytes from {from}, got {starts:?}"
                                ),
                            });
                        }
                    }
                    _ => {
                        let mut resp = resp;
                        let body = read_small(&mut resp, &ep.domain).unwrap_or_default();
                        return Err(answer_error(ep, status, &body, &what));
                    }
                }
                let mut body = resp.into_body().into_reader();
                loop {
                    if cancel.load(Ordering::Relaxed) {
                        return Err(broke("cancelled".into()));
                    }
                    let n = match body.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(broke(e.to_string())),
                    };
                    if w.written() + n as u64 > size {
                        return Err(RegistryError::Mismatch {
                            what: what.clone(),
                            expected: format!("{size} bytes"),
                            actual: "more".into(),
                        });
                    }
                    io::Write::write_all(&mut w, &buf[..n]).map_err(|e| RegistryError::Io {
                        what: format!("store {what}"),
                        source: e,
                    })?;
                    each(w.written());
                }
                if w.written() < size {
                    return Err(broke(format!(
                        "the connection ended after {} of {size} bytes",
                        w.written()
                    )));
                }
                Ok(())
            })();
            match outcome {
                Ok(()) => break,
                // Broken transfers and busy servers are tried again, from where they stopped.
                Err(RegistryError::Unreachable { reason, .. })
                    if attempt + 1 < ATTEMPTS && !cancel.load(Ordering::Relaxed) =>
                {
                    attempt += 1;
                    let _ = reason;
                    std::thread::sleep(Duration::from_millis(200 * u64::from(attempt)));
                }
                Err(e) => return Err(e.into()),
            }
        }
        w.commit(Some(size), Some(digest)).map_err(|e| match e {
            ContentError::DigestMismatch { expected, actual } => RegistryError::Mismatch {
                what,
                expected: expected.to_string(),
                actual: actual.to_string(),
            }
            .into(),
            ContentError::SizeMismatch {
                expected, actual, ..
            } => RegistryError::Mismatch {
                what,
                expected: format!("{expected} bytes"),
                actual: format!("{actual} bytes"),
            }
            .into(),
            e => crate::Error::from(e),
        })?;
        Ok(())
    }
}

fn content_io(e: ContentError) -> RegistryError {
    RegistryError::Io {
        what: "content store".into(),
        source: io::Error::other(e.to_string()),
    }
}

/// Reads a small answer (a manifest, an error, a token) whole, refusing one too large.
pub(crate) fn read_small(
    resp: &mut ureq::http::Response<ureq::Body>,
    registry: &str,
) -> Result<Vec<u8>, RegistryError> {
    resp.body_mut()
        .with_config()
        .limit(MAX_JSON)
        .read_to_vec()
        .map_err(|e| RegistryError::Unreachable {
            registry: registry.to_string(),
            reason: format!("reading an answer: {e}"),
        })
}

/// A registry's non-success answer as an error of the kind it stands for.
pub(crate) fn answer_error(ep: &Endpoint, status: u16, body: &[u8], what: &str) -> RegistryError {
    let text = error_text(body);
    match status {
        401 => RegistryError::Unauthorized {
            registry: ep.domain.clone(),
            reason: format!(
                "{what}: authentication required ({text}); try `ketch login {}`",
                ep.domain
            ),
        },
        403 => RegistryError::Denied {
            registry: ep.domain.clone(),
            reason: format!("{what}: {text}"),
        },
        404 => RegistryError::NotFound {
            what: what.to_string(),
            reason: text,
        },
        429 | 500..=599 => RegistryError::Unreachable {
            registry: ep.domain.clone(),
            reason: format!("{what}: {status}: {text}"),
        },
        _ => RegistryError::Protocol {
            registry: ep.domain.clone(),
            reason: format!("{what}: {status}: {text}"),
        },
    }
}

/// A reader that tells how much it has read, at most every [`TICK`] and at the end.
struct Counting<R> {
    inner: R,
    read: u64,
    last: Instant,
    each: Box<dyn FnMut(u64) + Send>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if n == 0 || self.last.elapsed() >= TICK {
            self.last = Instant::now();
            (self.each)(self.read);
        }
        Ok(n)
    }
}
