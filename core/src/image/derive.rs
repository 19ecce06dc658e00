//! Images made from other images: a new config, and at most one new layer on top of the
//! base's (`commit`, and each step of a build).

use super::Images;
use super::import::NewImage;
use super::lease::{Lease, Resource};
use crate::digest::Digest;
use crate::reference::Reference;

/// A layer already unpacked into its committed snapshot and stored as a blob, under the
/// caller's lease.
#[derive(Debug, Clone)]
pub(crate) struct NewLayer {
    pub blob: Digest,
    pub size: u64,
    pub chain: Digest,
}

/// What [`Images::derive`] makes.
pub(crate) struct Derived {
    /// The image whose layers (and manifest kind) it keeps; none: from scratch.
    pub base: Option<Digest>,
    /// The whole image config, its `rootfs.diff_ids` and `history` already extended.
    pub config: serde_json::Value,
    pub layer: Option<NewLayer>,
    pub tags: Vec<Reference>,
    /// Record `base` as the new image's parent (a build step's image).
    pub record_parent: bool,
}

impl Images<'_> {
    /// Writes the config and manifest of an image derived from `d.base` and records it.
    /// Returns its ID. Its blobs are held by `lease` until recorded.
    pub(crate) fn derive(&self, lease: &Lease, d: Derived) -> crate::Result<Digest> {
        let config_bytes =
            serde_json::to_vec(&d.config).map_err(|e| super::malformed("image config", e))?;
        let id = Digest::of(&config_bytes);
        let (mut manifest, layers) = match &d.base {
            Some(base) => {
                let (img, layers) = self.st.db.read(|tx| {
                    let img =
                        super::get_image(tx, base)?.ok_or_else(|| super::ImageError::NotFound {
                            name: base.to_string(),
                        })?;
                    Ok::<_, crate::Error>((img, super::image_layers(tx, base)?))
                })?;
                let manifest: serde_json::Value = serde_json::from_slice(
                    &self
                        .st
                        .content
                        .read(&img.manifest_digest, super::MAX_JSON)?,
                )
                .map_err(|e| super::malformed("manifest", e))?;
                (manifest, layers)
            }
            None => (
                serde_json::json!({
                    "schemaVersion": 2,
                    "mediaType": super::MEDIA_OCI_MANIFEST,
                    "config": {},
                    "layers": [],
                }),
                Vec::new(),
            ),
        };
        let docker = manifest["mediaType"]
            .as_str()
            .is_some_and(|m| m.contains("docker"));
        manifest["config"] = serde_json::json!({
            "mediaType": if docker {
                "application/vnd.docker.container.image.v1+json"
            } else {
                super::MEDIA_OCI_CONFIG
            },
            "digest": id.to_string(),
            "size": config_bytes.len(),
        });
        let mut all: Vec<(Digest, Digest)> = layers
            .iter()
            .map(|l| (l.blob.clone(), l.chain_id.clone()))
            .collect();
        if let Some(l) = &d.layer {
            let layer_type = if docker {
                "application/vnd.docker.image.rootfs.diff.tar"
            } else {
                "application/vnd.oci.image.layer.v1.tar"
            };
            manifest["layers"]
                .as_array_mut()
                .ok_or_else(|| super::malformed("manifest", "no layers"))?
                .push(serde_json::json!({
                    "mediaType": layer_type,
                    "digest": l.blob.to_string(),
                    "size": l.size,
                }));
            all.push((l.blob.clone(), l.chain.clone()));
        }
        if let Some(m) = manifest.as_object_mut() {
            m.remove("annotations");
        }
        let manifest_bytes =
            serde_json::to_vec(&manifest).map_err(|e| super::malformed("manifest", e))?;
        let manifest_digest = Digest::of(&manifest_bytes);
        lease.add(&self.st.db, Resource::Blob(id.clone()))?;
        self.st.content.write_all(&config_bytes, Some(&id))?;
        lease.add(&self.st.db, Resource::Blob(manifest_digest.clone()))?;
        self.st
            .content
            .write_all(&manifest_bytes, Some(&manifest_digest))?;
        let media_type = manifest["mediaType"]
            .as_str()
            .unwrap_or(super::MEDIA_OCI_MANIFEST)
            .to_string();
        self.commit_images(&[NewImage {
            id: id.clone(),
            manifest_digest,
            manifest_media_type: media_type,
            created: d.config["created"].as_str().map(str::to_string),
            layers: all,
            tags: d.tags,
            repo_digests: Vec::new(),
            parent: d.base.filter(|_| d.record_parent),
        }])?;
        Ok(id)
    }
}
