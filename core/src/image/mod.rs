//! Images: references, manifests and configs (OCI, and Docker schema2 alike), and the
//! operations on them — import, load, save, list, inspect, tag, remove, history, prune.
//!
//! An image is its config blob (whose digest is the image ID), the manifest that lists its
//! layer blobs, and one committed snapshot per layer, named by the layer's *chain ID* so
//! that images sharing a base share its snapshots. The database records which image uses
//! which blobs and layers; blobs and snapshots that nothing records are garbage.
//!
//! Every operation that creates blobs or snapshots does so under a [`lease::Lease`]: until
//! the image row that references them commits, the lease keeps them from the collector, and
//! if the operation fails — or its process is killed — the lease's resources are collected,
//! so the state root ends as it began.

mod archive;
pub(crate) mod derive;
pub(crate) mod import;
pub(crate) mod lease;
mod unpack;

use std::collections::BTreeMap;

use oci_spec::image as oci;
use rusqlite::{OptionalExtension, Transaction, params};

pub(crate) use archive::read_documents;
pub use archive::{LoadSource, LoadedImage, SaveDest, SaveFormat};
pub use import::ImportOptions;

use crate::digest::Digest;
use crate::error::ErrorKind;
use crate::model;
use crate::reference::Reference;
use crate::state::State;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("No such image: {name}")]
    NotFound { name: String },
    #[error("image ID prefix {prefix:?} is ambiguous")]
    Ambiguous { prefix: String },
    #[error("conflict: unable to {action} {name} ({force}) - {reason}")]
    Conflict {
        action: &'static str,
        name: String,
        force: &'static str,
        reason: String,
    },
    #[error("invalid archive: {reason}")]
    InvalidArchive { reason: String },
    #[error("malformed {what}: {reason}")]
    Malformed { what: String, reason: String },
    #[error(
        "layer {index} of image {image}: content {actual} does not match diff ID {expected} in the image config"
    )]
    LayerMismatch {
        image: String,
        index: usize,
        expected: Digest,
        actual: Digest,
    },
    #[error("invalid --change {change:?}: {reason}")]
    BadChange { change: String, reason: String },
    #[error("{reason}")]
    Invalid { reason: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

crate::error::from_module_error!(ImageError);

impl ImageError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ImageError::NotFound { .. } => ErrorKind::NotFound,
            ImageError::Ambiguous { .. }
            | ImageError::InvalidArchive { .. }
            | ImageError::Malformed { .. }
            | ImageError::LayerMismatch { .. }
            | ImageError::BadChange { .. }
            | ImageError::Invalid { .. } => ErrorKind::InvalidArgument,
            ImageError::Conflict { .. } => ErrorKind::Conflict,
            ImageError::Io { source, .. } => crate::error::io_kind(source),
        }
    }
}

pub(crate) fn malformed(what: impl Into<String>, reason: impl ToString) -> ImageError {
    ImageError::Malformed {
        what: what.into(),
        reason: reason.to_string(),
    }
}

pub const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Largest manifest, index or config accepted: they are small JSON documents.
pub(crate) const MAX_JSON: u64 = 8 << 20;

/// A stored image.
#[derive(Debug, Clone)]
pub(crate) struct ImageRecord {
    pub id: Digest,
    pub manifest_digest: Digest,
    pub manifest_media_type: String,
    pub created: Option<String>,
    pub size: u64,
    /// The image a build step made this one from.
    pub parent: Option<Digest>,
}

/// One layer of a stored image.
#[derive(Debug, Clone)]
pub(crate) struct LayerRecord {
    pub blob: Digest,
    pub chain_id: Digest,
}

/// Chain ID of a layer stack: the first layer's diff ID, then `sha256(parent + " " + diff_id)`.
pub fn chain_id(parent: Option<&Digest>, diff_id: &Digest) -> Digest {
    match parent {
        None => diff_id.clone(),
        Some(p) => Digest::of(format!("{p} {diff_id}").as_bytes()),
    }
}

pub(crate) fn parse_digest(s: &str) -> Result<Digest, ImageError> {
    s.parse().map_err(|e| malformed("digest", e))
}

/// Parses an OCI or Docker schema2 manifest.
pub(crate) fn parse_manifest(bytes: &[u8]) -> Result<oci::ImageManifest, ImageError> {
    let m: oci::ImageManifest =
        serde_json::from_slice(bytes).map_err(|e| malformed("manifest", e))?;
    if m.schema_version() != 2 {
        return Err(malformed(
            "manifest",
            format!("schemaVersion {} (want 2)", m.schema_version()),
        ));
    }
    Ok(m)
}

/// Parses an image config and checks the parts the engine relies on.
pub(crate) fn parse_config(bytes: &[u8]) -> Result<oci::ImageConfiguration, ImageError> {
    let c: oci::ImageConfiguration =
        serde_json::from_slice(bytes).map_err(|e| malformed("image config", e))?;
    for d in c.rootfs().diff_ids() {
        parse_digest(d)?;
    }
    Ok(c)
}

type ImageRow = (String, String, String, Option<String>, i64, Option<String>);

fn row_to_image(r: &rusqlite::Row<'_>) -> rusqlite::Result<ImageRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

const IMAGE_COLUMNS: &str = "id, manifest_digest, manifest_media_type, created, size, parent";

fn to_record(t: ImageRow) -> Result<ImageRecord, ImageError> {
    Ok(ImageRecord {
        id: parse_digest(&t.0)?,
        manifest_digest: parse_digest(&t.1)?,
        manifest_media_type: t.2,
        created: t.3,
        size: t.4 as u64,
        parent: t.5.as_deref().map(parse_digest).transpose()?,
    })
}

pub(crate) fn get_image(
    tx: &Transaction<'_>,
    id: &Digest,
) -> Result<Option<ImageRecord>, crate::Error> {
    let row = tx
        .query_row(
            &format!("SELECT {IMAGE_COLUMNS} FROM images WHERE id = ?1"),
            params![id.to_string()],
            row_to_image,
        )
        .optional()?;
    Ok(row.map(to_record).transpose()?)
}

pub(crate) fn image_layers(
    tx: &Transaction<'_>,
    id: &Digest,
) -> Result<Vec<LayerRecord>, crate::Error> {
    let mut stmt = tx.prepare(
        "SELECT blob_digest, chain_id FROM image_layers WHERE image_id = ?1 ORDER BY position",
    )?;
    let rows = stmt
        .query_map(params![id.to_string()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter()
        .map(|(b, c)| {
            Ok(LayerRecord {
                blob: parse_digest(&b)?,
                chain_id: parse_digest(&c)?,
            })
        })
        .collect()
}

pub(crate) fn image_tags(
    tx: &Transaction<'_>,
    id: &Digest,
) -> Result<Vec<(Reference, String)>, crate::Error> {
    let mut stmt = tx.prepare("SELECT name, tagged FROM tags WHERE image_id = ?1 ORDER BY name")?;
    let rows = stmt
        .query_map(params![id.to_string()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows
        .into_iter()
        .filter_map(|(n, t)| Reference::parse(&n).ok().map(|r| (r, t)))
        .collect())
}

/// How a name given by a user resolved.
pub(crate) struct Resolved {
    pub image: ImageRecord,
    /// The tag the name named, if it named one.
    pub reference: Option<Reference>,
}

/// Resolves a user's name for an image: a full ID (`sha256:...`), a reference
/// (`busybox`, `busybox:1.36`, `repo@sha256:...`) or a unique ID prefix.
pub(crate) fn resolve(tx: &Transaction<'_>, name: &str) -> Result<Resolved, crate::Error> {
    let not_found = || ImageError::NotFound {
        name: name.to_string(),
    };
    if let Ok(d) = name.parse::<Digest>() {
        return match get_image(tx, &d)? {
            Some(image) => Ok(Resolved {
                image,
                reference: None,
            }),
            None => Err(not_found().into()),
        };
    }
    if let Ok(r) = Reference::parse(name) {
        let r = r.with_default_tag();
        let id: Option<String> = match (r.tag(), r.digest()) {
            (_, Some(d)) => tx
                .query_row(
                    "SELECT image_id FROM repo_digests WHERE name = ?1 AND digest = ?2
                     UNION ALL SELECT id FROM images WHERE manifest_digest = ?2 LIMIT 1",
                    params![r.name(), d.to_string()],
                    |row| row.get(0),
                )
                .optional()?,
            _ => tx
                .query_row(
                    "SELECT image_id FROM tags WHERE name = ?1",
                    params![r.to_string()],
                    |row| row.get(0),
                )
                .optional()?,
        };
        if let Some(id) = id {
            let image = get_image(tx, &parse_digest(&id)?)?.ok_or_else(not_found)?;
            let reference = r.digest().is_none().then_some(r);
            return Ok(Resolved { image, reference });
        }
    }
    let prefix = name.strip_prefix("sha256:").unwrap_or(name);
    if !prefix.is_empty()
        && prefix.len() <= 64
        && prefix
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        let mut stmt = tx.prepare("SELECT id FROM images WHERE id >= ?1 AND id < ?2 LIMIT 2")?;
        let lo = format!("sha256:{prefix}");
        let hi = format!("sha256:{prefix}\u{7f}");
        let ids = stmt
            .query_map(params![lo, hi], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        match ids.as_slice() {
            [one] => {
                let image = get_image(tx, &parse_digest(one)?)?.ok_or_else(not_found)?;
                return Ok(Resolved {
                    image,
                    reference: None,
                });
            }
            [] => {}
            _ => {
                return Err(ImageError::Ambiguous {
                    prefix: name.to_string(),
                }
                .into());
            }
        }
    }
    // Docker names the reference it looked for, with the default tag.
    let shown = Reference::parse(name)
        .map(|r| r.with_default_tag().familiar())
        .unwrap_or_else(|_| name.to_string());
    Err(ImageError::NotFound { name: shown }.into())
}

/// Containers that use an image: (id, running).
/// Whether a build step made an image from this one.
pub(crate) fn has_children(tx: &Transaction<'_>, id: &Digest) -> Result<bool, crate::Error> {
    Ok(tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM images WHERE parent = ?1)",
        params![id.to_string()],
        |r| r.get::<_, bool>(0),
    )?)
}

/// Whether a build step made this image (the build cache names it).
fn built_step(tx: &Transaction<'_>, id: &Digest) -> Result<bool, crate::Error> {
    Ok(tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM build_cache WHERE image_id = ?1)",
        params![id.to_string()],
        |r| r.get::<_, bool>(0),
    )?)
}

/// After an image went: its parent, and theirs, while each is untagged, has no other
/// child and no container uses it (Docker's `rmi` without `--no-prune`).
fn delete_parents(
    tx: &Transaction<'_>,
    lease: &lease::Lease,
    mut parent: Option<Digest>,
    out: &mut Vec<model::ImageDeleteResponseItem>,
) -> Result<(), crate::Error> {
    while let Some(id) = parent.take() {
        let Some(image) = get_image(tx, &id)? else {
            break;
        };
        if !image_tags(tx, &id)?.is_empty()
            || !recorded_repo_digests(tx, &id)?.is_empty()
            || has_children(tx, &id)?
            || !containers_using(tx, &id)?.is_empty()
        {
            break;
        }
        delete_image_row(tx, lease, &image)?;
        out.push(model::ImageDeleteResponseItem {
            untagged: None,
            deleted: Some(id.to_string()),
        });
        parent = image.parent;
    }
    Ok(())
}

fn containers_using(
    tx: &Transaction<'_>,
    id: &Digest,
) -> Result<Vec<(String, bool)>, crate::Error> {
    let mut stmt =
        tx.prepare("SELECT id, running FROM containers WHERE image_id = ?1 ORDER BY id")?;
    let rows = stmt
        .query_map(params![id.to_string()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? != 0))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

fn unix(ts: Option<&str>) -> i64 {
    ts.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map_or(0, |t| t.timestamp())
}

/// `repo@digest` for what the image was pulled by, and `repo@manifest-digest` for each other
/// repository the image is tagged in.
fn repo_digests(
    tags: &[(Reference, String)],
    manifest: &Digest,
    pulled_by: &[(String, Digest)],
) -> Vec<String> {
    let familiar = |name: &str| {
        Reference::parse(name).map_or_else(|_| name.to_string(), |r| r.familiar_name())
    };
    let mut out: Vec<String> = pulled_by
        .iter()
        .map(|(n, d)| format!("{}@{d}", familiar(n)))
        .collect();
    let pulled: Vec<String> = pulled_by.iter().map(|(n, _)| familiar(n)).collect();
    let mut repos: Vec<String> = tags.iter().map(|(r, _)| r.familiar_name()).collect();
    repos.dedup();
    for r in repos {
        if !pulled.contains(&r) {
            out.push(format!("{r}@{manifest}"));
        }
    }
    out
}

/// The images of an opened root: its content store, its snapshots and their records.
#[derive(Clone, Copy)]
pub struct Images<'s> {
    pub(crate) st: &'s State,
}

impl<'s> Images<'s> {
    pub fn new(st: &'s State) -> Images<'s> {
        Images { st }
    }

    fn event(&self, action: &str, id: &str, attributes: &[(&str, &str)]) {
        crate::events::record(self.st, "image", action, id, attributes);
    }
}

/// Filters for [`Images::list`].
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Show intermediate images too: the untagged images a build's steps made, which
    /// later steps were made from.
    pub all: bool,
    /// `Some(true)`: only untagged images; `Some(false)`: only tagged ones.
    pub dangling: Option<bool>,
    /// Only images with a tag matching this `repo[:tag]`.
    pub reference: Option<String>,
}

/// Whether `r` matches a `repo[:tag]` filter given by a user (the tag may be left out).
fn matches_filter(r: &Reference, filter: &str) -> bool {
    let Ok(f) = Reference::parse(filter) else {
        return false;
    };
    f.name() == r.name() && f.tag().is_none_or(|t| Some(t) == r.tag())
}

impl Images<'_> {
    pub fn list(&self, opts: &ListOptions) -> crate::Result<Vec<model::ImageSummary>> {
        self.st.db.read(|tx| {
            let mut stmt = tx.prepare(&format!("SELECT {IMAGE_COLUMNS} FROM images"))?;
            let rows = stmt
                .query_map([], row_to_image)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut out = Vec::new();
            for row in rows {
                let image = to_record(row)?;
                let tags = image_tags(tx, &image.id)?;
                let pulled_by = recorded_repo_digests(tx, &image.id)?;
                let untagged = tags.is_empty() && pulled_by.is_empty();
                // An untagged image with children is an intermediate one (Docker's rule), and
                // so is an untagged image a build step made: a stage's last, or what a build
                // that failed had made. Shown with `-a`; `image prune` takes them.
                let intermediate =
                    untagged && (has_children(tx, &image.id)? || built_step(tx, &image.id)?);
                if intermediate && !opts.all {
                    continue;
                }
                if let Some(d) = opts.dangling
                    && d != (untagged && !intermediate)
                {
                    continue;
                }
                if let Some(f) = &opts.reference
                    && !tags.iter().any(|(r, _)| matches_filter(r, f))
                {
                    continue;
                }
                let containers = containers_using(tx, &image.id)?.len() as i64;
                let labels = self
                    .config_value(&image.id)
                    .ok()
                    .and_then(|v| v.pointer("/config/Labels").cloned())
                    .and_then(|l| serde_json::from_value(l).ok())
                    .unwrap_or_default();
                out.push(model::ImageSummary {
                    id: image.id.to_string(),
                    parent_id: image
                        .parent
                        .as_ref()
                        .map(|p| p.to_string())
                        .unwrap_or_default(),
                    repo_tags: tags.iter().map(|(r, _)| r.familiar()).collect(),
                    repo_digests: repo_digests(&tags, &image.manifest_digest, &pulled_by),
                    created: unix(image.created.as_deref()),
                    size: image.size as i64,
                    shared_size: -1,
                    labels,
                    containers,
                });
            }
            out.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.id.cmp(&b.id)));
            Ok(out)
        })
    }

    fn config_value(&self, id: &Digest) -> crate::Result<serde_json::Value> {
        let bytes = self.st.content.read(id, MAX_JSON)?;
        serde_json::from_slice(&bytes).map_err(|e| malformed("image config", e).into())
    }

    pub fn inspect(&self, name: &str) -> crate::Result<model::ImageInspect> {
        let (image, tags, layers, pulled_by) = self.st.db.read(|tx| {
            let image = resolve(tx, name)?.image;
            let tags = image_tags(tx, &image.id)?;
            let layers = image_layers(tx, &image.id)?;
            let pulled_by = recorded_repo_digests(tx, &image.id)?;
            Ok::<_, crate::Error>((image, tags, layers, pulled_by))
        })?;
        let raw = self.config_value(&image.id)?;
        let config = parse_config(&self.st.content.read(&image.id, MAX_JSON)?)?;
        let s = |p: &str| {
            raw.pointer(p)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let mut data = BTreeMap::new();
        if let Some(top) = layers.last() {
            data.insert("TopLayer".to_string(), top.chain_id.to_string());
        }
        Ok(model::ImageInspect {
            id: image.id.to_string(),
            repo_tags: tags.iter().map(|(r, _)| r.familiar()).collect(),
            repo_digests: repo_digests(&tags, &image.manifest_digest, &pulled_by),
            parent: image
                .parent
                .as_ref()
                .map(|p| p.to_string())
                .unwrap_or_default(),
            comment: history_comment(&raw),
            created: image.created.clone().unwrap_or_default(),
            docker_version: s("/docker_version"),
            author: s("/author"),
            config: raw
                .get("config")
                .cloned()
                .unwrap_or(serde_json::Value::Null),
            architecture: config.architecture().to_string(),
            variant: config.variant().clone(),
            os: config.os().to_string(),
            size: image.size as i64,
            graph_driver: model::GraphDriver {
                name: self.st.snapshots.driver_name().to_string(),
                data,
            },
            root_fs: model::RootFs {
                kind: "layers".into(),
                layers: config.rootfs().diff_ids().clone(),
            },
            metadata: model::ImageMetadata {
                last_tag_time: tags.iter().map(|(_, t)| t.clone()).max(),
            },
        })
    }

    /// Points `target` at the image `source` names.
    pub fn tag(&self, source: &str, target: &str) -> crate::Result<()> {
        let target = Reference::parse(target)?.with_default_tag();
        if target.digest().is_some() {
            return Err(ImageError::Invalid {
                reason: format!("refusing to create a tag with a digest reference: {target}"),
            }
            .into());
        }
        self.st
            .db
            .write(|tx| {
                let image = resolve(tx, source)?.image;
                set_tag(tx, &target, &image.id)?;
                Ok::<_, crate::Error>(image.id)
            })
            .map(|id| {
                let name = target.familiar();
                self.event("tag", &id.to_string(), &[("name", &name)]);
            })
    }

    pub fn history(&self, name: &str) -> crate::Result<Vec<model::HistoryResponseItem>> {
        let (image, tags, layers, sizes) = self.st.db.read(|tx| {
            let image = resolve(tx, name)?.image;
            let tags = image_tags(tx, &image.id)?;
            let layers = image_layers(tx, &image.id)?;
            let mut sizes = Vec::new();
            for l in &layers {
                let size: i64 = tx
                    .query_row(
                        "SELECT size FROM layers WHERE chain_id = ?1",
                        params![l.chain_id.to_string()],
                        |r| r.get(0),
                    )
                    .optional()?
                    .unwrap_or(0);
                sizes.push(size);
            }
            Ok::<_, crate::Error>((image, tags, layers, sizes))
        })?;
        let config = parse_config(&self.st.content.read(&image.id, MAX_JSON)?)?;
        let mut items = Vec::new();
        let mut layer = 0;
        let history = config.history().clone().unwrap_or_default();
        if history.is_empty() {
            for (i, _) in layers.iter().enumerate() {
                items.push(model::HistoryResponseItem {
                    id: "<missing>".into(),
                    created: unix(image.created.as_deref()),
                    created_by: String::new(),
                    tags: vec![],
                    size: sizes[i],
                    comment: String::new(),
                });
            }
        }
        for h in &history {
            let empty = h.empty_layer().unwrap_or(false);
            let size = if empty {
                0
            } else {
                let s = sizes.get(layer).copied().unwrap_or(0);
                layer += 1;
                s
            };
            items.push(model::HistoryResponseItem {
                id: "<missing>".into(),
                created: unix(h.created().as_deref()),
                created_by: h.created_by().clone().unwrap_or_default(),
                tags: vec![],
                size,
                comment: h.comment().clone().unwrap_or_default(),
            });
        }
        // A built image's ancestors are images of their own (each a prefix of its history):
        // their entries show their IDs, as Docker shows a classic build's.
        let mut parent = image.parent.clone();
        while let Some(p) = parent.take() {
            let Some((rec, ptags)) = self.st.db.read(|tx| {
                Ok::<_, crate::Error>(match get_image(tx, &p)? {
                    Some(rec) => Some((rec, image_tags(tx, &p)?)),
                    None => None,
                })
            })?
            else {
                break;
            };
            let n = self
                .config_value(&p)
                .ok()
                .and_then(|c| c["history"].as_array().map(|h| h.len()))
                .unwrap_or(0);
            if n == 0 || n > items.len() {
                break;
            }
            items[n - 1].id = p.to_string();
            items[n - 1].tags = ptags.iter().map(|(r, _)| r.familiar()).collect();
            parent = rec.parent;
        }
        items.reverse();
        if let Some(top) = items.first_mut() {
            top.id = image.id.to_string();
            top.tags = tags.iter().map(|(r, _)| r.familiar()).collect();
        }
        Ok(items)
    }

    /// Removes a tag, or an image with all its tags. Layers and blobs no other image uses go
    /// with it.
    pub fn remove(
        &self,
        name: &str,
        force: bool,
    ) -> crate::Result<Vec<model::ImageDeleteResponseItem>> {
        let lease = lease::Lease::new(&self.st.db)?;
        let (out, freed) = self.st.db.write(|tx| {
            let resolved = resolve(tx, name)?;
            let image = resolved.image;
            let tags = image_tags(tx, &image.id)?;
            let users = containers_using(tx, &image.id)?;
            let mut out = Vec::new();
            let short = image.id.short().to_string();
            // Untagging one of several tags touches no container, running or not.
            let only_untag = resolved.reference.is_some() && tags.len() > 1;
            if let Some((c, _)) = users
                .iter()
                .find(|(_, running)| *running)
                .filter(|_| !only_untag)
            {
                return Err(ImageError::Conflict {
                    action: "delete",
                    name: short,
                    force: "cannot be forced",
                    reason: format!(
                        "image is being used by running container {}",
                        &c[..12.min(c.len())]
                    ),
                }
                .into());
            }
            let untag: Vec<Reference> = match &resolved.reference {
                // By name: that one tag, unless it is the last and a container needs the image.
                Some(r) => {
                    if tags.len() == 1 && !users.is_empty() && !force {
                        return Err(ImageError::Conflict {
                            action: "remove repository reference",
                            name: format!("\"{}\"", r.familiar()),
                            force: "must force",
                            reason: format!(
                                "container {} is using its referenced image {short}",
                                &users[0].0[..12.min(users[0].0.len())]
                            ),
                        }
                        .into());
                    }
                    vec![r.clone()]
                }
                // By ID: every tag, which for more than one repository needs force.
                None => {
                    let mut repos: Vec<String> = tags.iter().map(|(r, _)| r.name()).collect();
                    repos.dedup();
                    if repos.len() > 1 && !force {
                        return Err(ImageError::Conflict {
                            action: "delete",
                            name: short,
                            force: "must be forced",
                            reason: "image is referenced in multiple repositories".into(),
                        }
                        .into());
                    }
                    if !users.is_empty() && !force {
                        return Err(ImageError::Conflict {
                            action: "delete",
                            name: short,
                            force: "must be forced",
                            reason: format!(
                                "image is being used by stopped container {}",
                                &users[0].0[..12.min(users[0].0.len())]
                            ),
                        }
                        .into());
                    }
                    tags.iter().map(|(r, _)| r.clone()).collect()
                }
            };
            for r in &untag {
                tx.execute("DELETE FROM tags WHERE name = ?1", params![r.to_string()])?;
                out.push(model::ImageDeleteResponseItem {
                    untagged: Some(r.familiar()),
                    deleted: None,
                });
            }
            let remaining = tags.len() - untag.len();
            let children = has_children(tx, &image.id)?;
            if children && tags.is_empty() {
                return Err(ImageError::Conflict {
                    action: "delete",
                    name: short,
                    force: "cannot be forced",
                    reason: "image has dependent child images".into(),
                }
                .into());
            }
            let mut freed = None;
            // A container still needs the image, or an image was built on it: it stays,
            // untagged.
            if remaining == 0 && users.is_empty() && !children {
                freed = Some(delete_image_row(tx, &lease, &image)?);
                out.push(model::ImageDeleteResponseItem {
                    untagged: None,
                    deleted: Some(image.id.to_string()),
                });
                delete_parents(tx, &lease, image.parent.clone(), &mut out)?;
            }
            Ok::<_, crate::Error>((out, freed))
        })?;
        if freed.is_some() {
            self.release(lease)?;
        } else {
            lease.release_empty(&self.st.db)?;
        }
        for item in &out {
            if let Some(u) = &item.untagged {
                self.event("untag", u, &[("name", u)]);
            }
            if let Some(d) = &item.deleted {
                self.event("delete", d, &[]);
            }
        }
        Ok(out)
    }

    /// Removes unused images: untagged ones, or with `all` every image no container uses.
    pub fn prune(&self, all: bool) -> crate::Result<model::ImagePruneResponse> {
        let lease = lease::Lease::new(&self.st.db)?;
        let deleted = self.st.db.write(|tx| {
            // Images nothing was built on; their parents follow as they lose their last child.
            let sql = if all {
                "SELECT id FROM images WHERE id NOT IN (SELECT image_id FROM containers)
                 AND id NOT IN (SELECT parent FROM images WHERE parent IS NOT NULL)"
            } else {
                "SELECT id FROM images WHERE id NOT IN (SELECT image_id FROM tags)
                 AND id NOT IN (SELECT image_id FROM repo_digests)
                 AND id NOT IN (SELECT image_id FROM containers)
                 AND id NOT IN (SELECT parent FROM images WHERE parent IS NOT NULL)"
            };
            let mut out = Vec::new();
            loop {
                let ids = {
                    let mut stmt = tx.prepare(sql)?;
                    stmt.query_map([], |r| r.get::<_, String>(0))?
                        .collect::<rusqlite::Result<Vec<_>>>()?
                };
                if ids.is_empty() {
                    break;
                }
                for id in ids {
                    let image = get_image(tx, &parse_digest(&id)?)?.expect("listed just now");
                    for (r, _) in image_tags(tx, &image.id)? {
                        tx.execute("DELETE FROM tags WHERE name = ?1", params![r.to_string()])?;
                        out.push(model::ImageDeleteResponseItem {
                            untagged: Some(r.familiar()),
                            deleted: None,
                        });
                    }
                    delete_image_row(tx, &lease, &image)?;
                    out.push(model::ImageDeleteResponseItem {
                        untagged: None,
                        deleted: Some(image.id.to_string()),
                    });
                }
            }
            Ok::<_, crate::Error>(out)
        })?;
        let reclaimed = self.release(lease)?;
        Ok(model::ImagePruneResponse {
            images_deleted: deleted,
            space_reclaimed: reclaimed as i64,
        })
    }
}

/// Deletes an image's rows and hands its blobs and layers to `lease`, whose release
/// collects those that no other image uses.
fn delete_image_row(
    tx: &Transaction<'_>,
    lease: &lease::Lease,
    image: &ImageRecord,
) -> Result<(), crate::Error> {
    let layers = image_layers(tx, &image.id)?;
    lease.add_in(tx, lease::Resource::Blob(image.manifest_digest.clone()))?;
    lease.add_in(tx, lease::Resource::Blob(image.id.clone()))?;
    for l in &layers {
        lease.add_in(tx, lease::Resource::Blob(l.blob.clone()))?;
        lease.add_in(tx, lease::Resource::Layer(l.chain_id.clone()))?;
    }
    // The indexes it was pulled by go with it.
    for (_, d) in recorded_repo_digests(tx, &image.id)? {
        lease.add_in(tx, lease::Resource::Blob(d))?;
    }
    tx.execute(
        "DELETE FROM tags WHERE image_id = ?1",
        params![image.id.to_string()],
    )?;
    tx.execute(
        "DELETE FROM images WHERE id = ?1",
        params![image.id.to_string()],
    )?;
    Ok(())
}

/// The `(repository, digest)` pairs an image was pulled by.
pub(crate) fn recorded_repo_digests(
    tx: &Transaction<'_>,
    id: &Digest,
) -> Result<Vec<(String, Digest)>, crate::Error> {
    let mut stmt =
        tx.prepare("SELECT name, digest FROM repo_digests WHERE image_id = ?1 ORDER BY name")?;
    let rows = stmt
        .query_map(params![id.to_string()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter()
        .map(|(n, d)| Ok((n, parse_digest(&d)?)))
        .collect()
}

/// Points a tag at an image, moving it from any image it pointed at before.
pub(crate) fn set_tag(tx: &Transaction<'_>, r: &Reference, id: &Digest) -> crate::Result<()> {
    tx.execute(
        "INSERT INTO tags (name, image_id, tagged) VALUES (?1, ?2, ?3)
         ON CONFLICT(name) DO UPDATE SET image_id = excluded.image_id, tagged = excluded.tagged",
        params![r.to_string(), id.to_string(), crate::db::now()],
    )?;
    Ok(())
}

/// The comment of the newest history entry, as Docker shows it in `inspect`.
fn history_comment(raw: &serde_json::Value) -> String {
    raw.get("comment")
        .and_then(|c| c.as_str())
        .map(str::to_string)
        .or_else(|| {
            raw.get("history")
                .and_then(|h| h.as_array())
                .and_then(|h| h.last())
                .and_then(|h| h.get("comment"))
                .and_then(|c| c.as_str())
                .map(str::to_string)
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod archive_tests;
#[cfg(test)]
mod tests;

/// `--change` instructions as a container config in the image config's JSON shape
/// (`Env`, `Cmd`, ...): only what they set.
pub(crate) fn apply_changes_json(changes: &[String]) -> Result<serde_json::Value, ImageError> {
    let cfg = import::apply_changes(changes)?;
    serde_json::to_value(cfg).map_err(|e| malformed("config", e))
}
