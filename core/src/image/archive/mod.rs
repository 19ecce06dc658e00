//! `load` and `save`: images in and out as docker-archive tarballs and OCI image layouts.
//!
//! `save` writes what Docker 25 and later write: one tarball that is an OCI image layout
//! (`oci-layout`, `index.json`, `blobs/sha256/...`) and a docker-archive (`manifest.json`
//! naming the same blobs) at once, so both kinds of reader take it. `load` reads either
//! kind, the legacy docker-archive (`<id>/layer.tar`, `<hex>.json`) included, from a tarball
//! (plain, gzip or zstd), a stream, or an unpacked layout directory.
//!
//! Nothing in an archive is trusted: blobs are checked against the digest that names them as
//! they stream into the content store, manifests and configs must parse, every layer must be
//! present, and every unpacked layer must match the diff ID the config gives for it. Archive
//! paths are only ever looked up, never used to write files.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use oci_spec::image as oci;
use serde::{Deserialize, Serialize};

mod save;
#[cfg(test)]
mod tests;

pub use save::SaveDest;

use super::Images;
use super::import::{NewImage, oci_digest};
use super::lease::{Lease, Resource};
use super::{
    ImageError, MAX_JSON, MEDIA_DOCKER_LIST, MEDIA_DOCKER_MANIFEST, MEDIA_OCI_INDEX,
    MEDIA_OCI_MANIFEST, malformed, parse_config, parse_digest, parse_manifest,
};
use crate::diff::Compression;
use crate::digest::Digest;
use crate::reference::Reference;

/// Where `load` reads from.
pub enum LoadSource<'a> {
    /// A tarball (plain, gzip or zstd) or an unpacked OCI layout / docker-archive directory.
    Path(&'a Path),
    /// A tarball streamed in (stdin, an HTTP body).
    Reader(&'a mut (dyn Read + Send)),
}

/// An image `load` brought in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedImage {
    pub id: Digest,
    /// Tags it was given, as Docker shows them (`busybox:latest`).
    pub tags: Vec<String>,
}

/// How `save` writes images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveFormat {
    /// A tarball that is both a docker-archive and an OCI layout (Docker's own format).
    DockerArchive,
    /// A tarball of an OCI image layout.
    OciArchive,
    /// An OCI image layout directory.
    OciDir,
}

impl std::str::FromStr for SaveFormat {
    type Err = ImageError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "docker-archive" | "docker" => Ok(SaveFormat::DockerArchive),
            "oci-archive" => Ok(SaveFormat::OciArchive),
            "oci-dir" => Ok(SaveFormat::OciDir),
            _ => Err(ImageError::Invalid {
                reason: format!("unknown save format {s:?} (docker-archive, oci-archive, oci-dir)"),
            }),
        }
    }
}

fn invalid(reason: impl Into<String>) -> ImageError {
    ImageError::InvalidArchive {
        reason: reason.into(),
    }
}

/// One entry of a docker-archive's `manifest.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Files of an archive, as far as `load` needs them.
struct Archive {
    /// Small files (JSON documents), by path.
    files: HashMap<String, Vec<u8>>,
    /// Files streamed into the content store, by path.
    blobs: HashMap<String, Digest>,
    /// Symbolic links, by path, to the path they resolve to.
    links: HashMap<String, String>,
    /// An unpacked layout: files are read from here on demand.
    dir: Option<PathBuf>,
}

/// An archive path with `./` and leading `/` dropped; `None` for one that climbs out.
fn norm(path: &str) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            c => out.push(c),
        }
    }
    Some(out.join("/"))
}

fn is_small_file(path: &str) -> bool {
    matches!(
        path,
        "manifest.json" | "index.json" | "oci-layout" | "repositories"
    ) || (!path.contains('/') && path.ends_with(".json"))
}

impl Images<'_> {
    /// Ingests one file of an archive into the content store, checking it against the digest
    /// its name claims, if it is a `blobs/sha256/<hex>` path.
    fn ingest_archive_file(
        &self,
        lease: &Lease,
        path: &str,
        reader: &mut dyn Read,
        size: Option<u64>,
    ) -> crate::Result<Digest> {
        let claimed = match path.strip_prefix("blobs/sha256/") {
            Some(hex) => Some(Digest::from_hex(hex).map_err(|_| {
                invalid(format!(
                    "archive entry {path:?}: not named by a sha256 digest"
                ))
            })?),
            None => None,
        };
        let mut w = self.st.content.writer()?;
        crate::util::copy(reader, &mut w).map_err(|e| archive_read_error(path, e))?;
        if let Some(s) = size
            && w.written() < s
        {
            return Err(invalid("the archive is truncated").into());
        }
        let digest = w.digest();
        if let Some(c) = &claimed
            && c != &digest
        {
            return Err(invalid(format!(
                "blob {path}: content digest {digest} does not match its name"
            ))
            .into());
        }
        lease.add(&self.st.db, Resource::Blob(digest.clone()))?;
        w.commit(size, claimed.as_ref())?;
        Ok(digest)
    }

    fn read_archive_stream(
        &self,
        lease: &Lease,
        input: &mut (dyn Read + Send),
    ) -> crate::Result<Archive> {
        let mut input = BufReader::with_capacity(1 << 20, input);
        let head = input
            .fill_buf()
            .map_err(|e| archive_read_error("archive", e))?;
        if head.is_empty() {
            return Err(
                invalid("empty input: expected a docker-archive or OCI layout tarball").into(),
            );
        }
        let reader: Box<dyn Read> = match Compression::detect(head) {
            Compression::None => Box::new(input),
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
            Compression::Zstd => Box::new(
                zstd::stream::read::Decoder::with_buffer(input)
                    .map_err(|e| archive_read_error("archive", e))?,
            ),
        };
        let mut tar = tar::Archive::new(reader);
        let mut archive = Archive {
            files: HashMap::new(),
            blobs: HashMap::new(),
            links: HashMap::new(),
            dir: None,
        };
        let entries = tar
            .entries()
            .map_err(|e| archive_read_error("archive", e))?;
        let mut count = 0usize;
        for entry in entries {
            let mut entry = entry.map_err(|e| archive_read_error("archive", e))?;
            count += 1;
            let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let Some(path) = norm(&raw) else { continue };
            match entry.header().entry_type() {
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let Some(target) = entry.link_name_bytes() else {
                        continue;
                    };
                    let target = String::from_utf8_lossy(&target).into_owned();
                    let resolved = if entry.header().entry_type() == tar::EntryType::Link
                        || target.starts_with('/')
                    {
                        norm(&target)
                    } else {
                        let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
                        norm(&format!("{dir}/{target}"))
                    };
                    if let Some(r) = resolved {
                        archive.links.insert(path, r);
                    }
                }
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let size = entry
                        .header()
                        .size()
                        .map_err(|e| archive_read_error(&raw, e))?;
                    if is_small_file(&path) {
                        if size > MAX_JSON {
                            return Err(invalid(format!("archive entry {path:?} is {size} bytes, too large for a JSON document")).into());
                        }
                        let mut buf = Vec::with_capacity(size as usize);
                        entry
                            .read_to_end(&mut buf)
                            .map_err(|e| archive_read_error(&path, e))?;
                        archive.files.insert(path, buf);
                    } else if path.starts_with("blobs/sha256/")
                        || path.ends_with(".tar")
                        || path.ends_with("/layer")
                    {
                        let d = self.ingest_archive_file(lease, &path, &mut entry, Some(size))?;
                        archive.blobs.insert(path, d);
                    }
                }
                _ => {}
            }
        }
        // The rest of the stream (end-of-archive blocks) must be readable too: a truncated
        // archive is refused even if the cut fell after the last entry.
        io::copy(&mut tar.into_inner(), &mut io::sink())
            .map_err(|e| archive_read_error("archive", e))?;
        if count == 0 {
            return Err(invalid("no entries: not a tar archive").into());
        }
        Ok(archive)
    }

    /// The blob an archive path names, resolving links; reads it from a layout directory on
    /// first use.
    fn archive_blob(&self, lease: &Lease, a: &mut Archive, path: &str) -> crate::Result<Digest> {
        self.find_blob(lease, a, path)?
            .ok_or_else(|| invalid(format!("{path} is missing from the archive")).into())
    }

    /// [`Self::archive_blob`], with `None` for a blob the archive does not have.
    fn find_blob(
        &self,
        lease: &Lease,
        a: &mut Archive,
        path: &str,
    ) -> crate::Result<Option<Digest>> {
        let mut path = norm(path)
            .ok_or_else(|| invalid(format!("path {path:?} climbs out of the archive")))?;
        for _ in 0..16 {
            match a.links.get(&path) {
                Some(t) => path = t.clone(),
                None => break,
            }
        }
        if let Some(d) = a.blobs.get(&path) {
            return Ok(Some(d.clone()));
        }
        if let Some(bytes) = a.files.get(&path) {
            lease.add(&self.st.db, Resource::Blob(Digest::of(bytes)))?;
            let d = self.st.content.write_all(bytes, None)?;
            a.blobs.insert(path, d.clone());
            return Ok(Some(d));
        }
        let Some(dir) = &a.dir else {
            return Ok(None);
        };
        let full = dir.join(&path);
        // The layout directory is input too: no symlink in it may lead elsewhere.
        let canon = match full.canonicalize() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            // A loop of links, a link through a file: input that makes no sense.
            Err(e) => return Err(invalid(format!("{path}: {e}")).into()),
        };
        let root = dir
            .canonicalize()
            .map_err(|e| archive_read_error(&path, e))?;
        if !canon.starts_with(&root) {
            return Err(invalid(format!("{path} points outside the layout directory")).into());
        }
        let mut f = File::open(&canon).map_err(|e| archive_read_error(&path, e))?;
        let d = self.ingest_archive_file(lease, &path, &mut f, None)?;
        a.blobs.insert(path, d.clone());
        Ok(Some(d))
    }

    fn archive_json(&self, a: &Archive, path: &str) -> crate::Result<Option<Vec<u8>>> {
        if let Some(b) = a.files.get(path) {
            return Ok(Some(b.clone()));
        }
        if let Some(dir) = &a.dir {
            let full = dir.join(path);
            return match fs::symlink_metadata(&full) {
                Ok(m) if m.is_file() => {
                    if m.len() > MAX_JSON {
                        return Err(
                            invalid(format!("{path} is too large for a JSON document")).into()
                        );
                    }
                    Ok(Some(
                        fs::read(&full).map_err(|e| archive_read_error(path, e))?,
                    ))
                }
                Ok(_) => Err(invalid(format!("{path} is not a regular file")).into()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(archive_read_error(path, e).into()),
            };
        }
        Ok(None)
    }

    /// A blob named by a descriptor, checked for presence and size.
    fn descriptor_blob(
        &self,
        lease: &Lease,
        a: &mut Archive,
        desc: &oci::Descriptor,
        what: &str,
    ) -> crate::Result<Digest> {
        let digest = parse_digest(desc.digest().as_ref())?;
        let path = format!("blobs/sha256/{}", digest.hex());
        let d = self
            .find_blob(lease, a, &path)?
            .ok_or_else(|| invalid(format!("{what} {digest} is missing from the archive")))?;
        let size = self.st.content.size(&d)?;
        if size != desc.size() {
            return Err(invalid(format!(
                "{what} {digest} is {size} bytes, but its descriptor says {}",
                desc.size()
            ))
            .into());
        }
        Ok(d)
    }

    /// Loads images from an archive. Either every image in it is loaded, or none.
    pub fn load(&self, src: LoadSource<'_>) -> crate::Result<Vec<LoadedImage>> {
        let lease = Lease::new(&self.st.db)?;
        let res = self.load_leased(&lease, src);
        let released = self.release(lease);
        let loaded = res?;
        released?;
        for l in &loaded {
            let name = l.tags.first().cloned().unwrap_or_default();
            self.event("load", &l.id.to_string(), &[("name", &name)]);
        }
        Ok(loaded)
    }

    fn load_leased(&self, lease: &Lease, src: LoadSource<'_>) -> crate::Result<Vec<LoadedImage>> {
        let mut archive = match src {
            LoadSource::Path(p) if p.is_dir() => Archive {
                files: HashMap::new(),
                blobs: HashMap::new(),
                links: HashMap::new(),
                dir: Some(p.to_path_buf()),
            },
            LoadSource::Path(p) => {
                let mut f = File::open(p).map_err(|e| ImageError::Io {
                    what: format!("open {}", p.display()),
                    source: e,
                })?;
                self.read_archive_stream(lease, &mut f)?
            }
            LoadSource::Reader(r) => self.read_archive_stream(lease, r)?,
        };
        let pending = if let Some(mj) = self.archive_json(&archive, "manifest.json")? {
            self.pending_docker(lease, &mut archive, &mj)?
        } else if let Some(ij) = self.archive_json(&archive, "index.json")? {
            let index: oci::ImageIndex =
                serde_json::from_slice(&ij).map_err(|e| malformed("index.json", e))?;
            let mut out = Vec::new();
            for desc in index.manifests() {
                self.pending_oci(lease, &mut archive, desc, tags_of(desc), &mut out, 0)?;
            }
            out
        } else {
            return Err(invalid("neither manifest.json nor index.json found: not a docker-archive or an OCI image layout").into());
        };
        if pending.is_empty() {
            return Err(invalid("the archive holds no image").into());
        }
        let mut images: Vec<NewImage> = Vec::new();
        for p in pending {
            let name = p
                .tags
                .first()
                .map_or_else(|| p.config.to_string(), |t| t.familiar());
            let chains = self.unpack_image(
                lease,
                &name,
                &p.layers
                    .iter()
                    .map(|(b, d)| (b.clone(), d.clone()))
                    .collect::<Vec<_>>(),
            )?;
            match images.iter_mut().find(|i| i.id == p.config) {
                Some(existing) => existing.tags.extend(p.tags),
                None => images.push(NewImage {
                    id: p.config.clone(),
                    manifest_digest: p.manifest,
                    manifest_media_type: p.manifest_media_type,
                    created: p.created,
                    layers: p
                        .layers
                        .iter()
                        .map(|(b, _)| b.clone())
                        .zip(chains)
                        .collect(),
                    tags: p.tags,
                    repo_digests: Vec::new(),
                    parent: None,
                }),
            }
        }
        self.commit_images(&images)?;
        Ok(images
            .into_iter()
            .map(|i| LoadedImage {
                id: i.id,
                tags: i.tags.iter().map(Reference::familiar).collect(),
            })
            .collect())
    }

    fn pending_docker(
        &self,
        lease: &Lease,
        a: &mut Archive,
        manifest_json: &[u8],
    ) -> crate::Result<Vec<Pending>> {
        let entries: Vec<DockerEntry> =
            serde_json::from_slice(manifest_json).map_err(|e| malformed("manifest.json", e))?;
        // Docker 25+ archives are OCI layouts too; their manifests keep the original digests.
        let mut oci_manifests: Vec<(Digest, Vec<u8>)> = Vec::new();
        if let Some(ij) = self.archive_json(a, "index.json")?
            && let Ok(index) = serde_json::from_slice::<oci::ImageIndex>(&ij)
        {
            for desc in index.manifests() {
                if let Ok(d) = self.descriptor_blob(lease, a, desc, "manifest")
                    && let Ok(bytes) = self.st.content.read(&d, MAX_JSON)
                {
                    oci_manifests.push((d, bytes));
                }
            }
        }
        let mut out = Vec::new();
        for e in entries {
            let config = self.archive_blob(lease, a, &e.config)?;
            let (config_size, created, diff_ids) = self.read_config(&config)?;
            if diff_ids.len() != e.layers.len() {
                return Err(malformed(
                    "manifest.json",
                    format!(
                        "{} lists {} layers, its config {} diff IDs",
                        e.config,
                        e.layers.len(),
                        diff_ids.len()
                    ),
                )
                .into());
            }
            let mut blobs = Vec::new();
            for l in &e.layers {
                blobs.push(self.archive_blob(lease, a, l)?);
            }
            let found = oci_manifests.iter().find(|(_, bytes)| {
                parse_manifest(bytes).is_ok_and(|m| {
                    m.config().digest().to_string() == config.to_string()
                        && m.layers()
                            .iter()
                            .map(|l| l.digest().to_string())
                            .eq(blobs.iter().map(|b| b.to_string()))
                })
            });
            let (manifest, media_type) = match found {
                Some((d, bytes)) => (d.clone(), manifest_media_type(bytes)),
                None => (
                    self.synthesize_manifest(lease, &config, config_size, &blobs)?,
                    MEDIA_OCI_MANIFEST.to_string(),
                ),
            };
            let mut tags = Vec::new();
            for t in e.repo_tags.unwrap_or_default() {
                tags.push(
                    Reference::parse(&t)
                        .map_err(|err| invalid(format!("manifest.json: tag {t:?}: {err}")))?
                        .with_default_tag(),
                );
            }
            out.push(Pending {
                manifest,
                manifest_media_type: media_type,
                config,
                created,
                layers: blobs.into_iter().zip(diff_ids).collect(),
                tags,
            });
        }
        Ok(out)
    }

    /// A stored config's size, creation time and diff IDs.
    fn read_config(&self, config: &Digest) -> crate::Result<(u64, Option<String>, Vec<Digest>)> {
        let bytes = self.st.content.read(config, MAX_JSON)?;
        let cfg = parse_config(&bytes)?;
        let diff_ids = cfg
            .rootfs()
            .diff_ids()
            .iter()
            .map(|d| parse_digest(d))
            .collect::<Result<_, _>>()?;
        Ok((bytes.len() as u64, cfg.created().clone(), diff_ids))
    }

    /// An OCI manifest for a legacy docker-archive image, which has none of its own.
    fn synthesize_manifest(
        &self,
        lease: &Lease,
        config: &Digest,
        config_size: u64,
        blobs: &[Digest],
    ) -> crate::Result<Digest> {
        let mut layers = Vec::new();
        for b in blobs {
            let mut head = [0u8; 4];
            let mut f = self.st.content.open_blob(b)?;
            let n = f
                .read(&mut head)
                .map_err(|e| archive_read_error("layer", e))?;
            let media = Compression::detect(&head[..n]).oci_layer_media_type();
            layers.push(oci::Descriptor::new(
                oci::MediaType::Other(media.into()),
                self.st.content.size(b)?,
                oci_digest(b),
            ));
        }
        let m = oci::ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(oci::MediaType::ImageManifest)
            .config(oci::Descriptor::new(
                oci::MediaType::ImageConfig,
                config_size,
                oci_digest(config),
            ))
            .layers(layers)
            .build()
            .map_err(|e| malformed("manifest", e))?;
        let bytes = serde_json::to_vec(&m).map_err(|e| malformed("manifest", e))?;
        let d = Digest::of(&bytes);
        lease.add(&self.st.db, Resource::Blob(d.clone()))?;
        self.st.content.write_all(&bytes, Some(&d))?;
        Ok(d)
    }

    fn pending_oci(
        &self,
        lease: &Lease,
        a: &mut Archive,
        desc: &oci::Descriptor,
        tags: Vec<Reference>,
        out: &mut Vec<Pending>,
        depth: usize,
    ) -> crate::Result<()> {
        if depth > 4 {
            return Err(invalid("image indexes nested too deep").into());
        }
        let media = desc.media_type().to_string();
        match media.as_str() {
            MEDIA_OCI_INDEX | MEDIA_DOCKER_LIST => {
                let d = self.descriptor_blob(lease, a, desc, "index")?;
                let index: oci::ImageIndex =
                    serde_json::from_slice(&self.st.content.read(&d, MAX_JSON)?)
                        .map_err(|e| malformed(format!("index {d}"), e))?;
                let (arch, os) = super::import::host_platform();
                let matching: Vec<&oci::Descriptor> = index
                    .manifests()
                    .iter()
                    .filter(|m| {
                        m.platform()
                            .as_ref()
                            .is_none_or(|p| p.architecture() == &arch && p.os() == &os)
                    })
                    .collect();
                let Some(first) = matching.first() else {
                    return Err(
                        invalid(format!("index {d} has no manifest for {os}/{arch}")).into(),
                    );
                };
                self.pending_oci(lease, a, first, tags, out, depth + 1)
            }
            MEDIA_OCI_MANIFEST | MEDIA_DOCKER_MANIFEST => {
                let manifest = self.descriptor_blob(lease, a, desc, "manifest")?;
                let bytes = self.st.content.read(&manifest, MAX_JSON)?;
                let m = parse_manifest(&bytes)
                    .map_err(|e| malformed(format!("manifest {manifest}"), e))?;
                let config = self.descriptor_blob(lease, a, m.config(), "config")?;
                let (_, created, diff_ids) = self.read_config(&config)?;
                if diff_ids.len() != m.layers().len() {
                    return Err(malformed(
                        format!("manifest {manifest}"),
                        format!(
                            "{} layers, but its config lists {} diff IDs",
                            m.layers().len(),
                            diff_ids.len()
                        ),
                    )
                    .into());
                }
                let mut blobs = Vec::new();
                for l in m.layers() {
                    blobs.push(self.descriptor_blob(lease, a, l, "layer")?);
                }
                out.push(Pending {
                    manifest,
                    manifest_media_type: media,
                    config,
                    created,
                    layers: blobs.into_iter().zip(diff_ids).collect(),
                    tags,
                });
                Ok(())
            }
            // Artifacts (signatures, attestations) that share the layout: not images.
            _ => Ok(()),
        }
    }
}

/// Reads `bytes` as each JSON document `load` meets (manifest.json, index, manifest, config)
/// the way `load` does, without a store; the fuzz harness's view of it.
pub(crate) fn read_documents(bytes: &[u8]) {
    if let Ok(entries) = serde_json::from_slice::<Vec<DockerEntry>>(bytes) {
        for e in entries {
            let _ = norm(&e.config);
            for l in &e.layers {
                let _ = norm(l);
            }
            for t in e.repo_tags.iter().flatten() {
                let _ = Reference::parse(t).map(Reference::with_default_tag);
            }
        }
    }
    if let Ok(index) = serde_json::from_slice::<oci::ImageIndex>(bytes) {
        for desc in index.manifests() {
            let _ = tags_of(desc);
            let _ = parse_digest(desc.digest().as_ref());
        }
    }
    if let Ok(m) = parse_manifest(bytes) {
        let _ = manifest_media_type(bytes);
        for desc in std::iter::once(m.config()).chain(m.layers()) {
            let _ = parse_digest(desc.digest().as_ref());
        }
    }
    if let Ok(c) = parse_config(bytes) {
        let _ = (
            c.created(),
            c.architecture().to_string(),
            c.os().to_string(),
        );
    }
    if let Ok(raw) = serde_json::from_slice::<serde_json::Value>(bytes) {
        let _ = super::history_comment(&raw);
    }
}

fn manifest_media_type(bytes: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| {
            v.get("mediaType")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| MEDIA_OCI_MANIFEST.to_string())
}

/// The tags an index entry carries: containerd's full image name, or the OCI ref name when
/// it is a whole reference (`busybox:1.36`, not just `1.36`).
fn tags_of(desc: &oci::Descriptor) -> Vec<Reference> {
    let Some(ann) = desc.annotations() else {
        return vec![];
    };
    if let Some(n) = ann.get("io.containerd.image.name")
        && let Ok(r) = Reference::parse(n)
    {
        return vec![r.with_default_tag()];
    }
    if let Some(n) = ann.get("org.opencontainers.image.ref.name")
        && (n.contains(':') || n.contains('/'))
        && let Ok(r) = Reference::parse(n)
    {
        return vec![r.with_default_tag()];
    }
    vec![]
}

struct Pending {
    manifest: Digest,
    manifest_media_type: String,
    config: Digest,
    created: Option<String>,
    /// (blob, diff ID), base first.
    layers: Vec<(Digest, Digest)>,
    tags: Vec<Reference>,
}

fn archive_read_error(what: &str, e: io::Error) -> ImageError {
    let msg = e.to_string();
    if e.kind() == io::ErrorKind::UnexpectedEof
        || msg.contains("unexpected EOF")
        || msg.contains("entire block")
    {
        invalid("the archive is truncated")
    } else if e.kind() == io::ErrorKind::InvalidData
        || e.kind() == io::ErrorKind::Other
        || e.kind() == io::ErrorKind::InvalidInput
    {
        invalid(format!("{what}: {e}"))
    } else {
        ImageError::Io {
            what: format!("read {what}"),
            source: e,
        }
    }
}
