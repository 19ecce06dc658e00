//! `save`: images written as a docker-archive that is also an OCI layout (as Docker 25+
//! writes), an oci-archive, or an OCI layout directory.

use super::*;

/// Where `save` writes.
pub enum SaveDest<'a> {
    /// A file (archive formats) or a directory (`oci-dir`), replaced atomically.
    Path(&'a Path),
    /// A stream (stdout, an HTTP body); archive formats only.
    Writer(&'a mut dyn Write),
}

#[derive(Serialize)]
pub(super) struct Layout {
    #[serde(rename = "imageLayoutVersion")]
    version: &'static str,
}

pub(super) struct SaveItem {
    image: crate::image::ImageRecord,
    layers: Vec<crate::image::LayerRecord>,
    tags: Vec<Reference>,
}

impl Images<'_> {
    /// Writes images to an archive or layout. Names given as references keep that tag;
    /// images given by ID are saved untagged.
    pub fn save(
        &self,
        names: &[String],
        format: SaveFormat,
        dest: SaveDest<'_>,
    ) -> crate::Result<()> {
        if names.is_empty() {
            return Err(ImageError::Invalid {
                reason: "save needs at least one image".into(),
            }
            .into());
        }
        let lease = Lease::new(&self.st.db)?;
        let res = self.save_leased(&lease, names, format, dest);
        let released = self.release(lease);
        res?;
        released?;
        Ok(())
    }

    fn save_leased(
        &self,
        lease: &Lease,
        names: &[String],
        format: SaveFormat,
        dest: SaveDest<'_>,
    ) -> crate::Result<()> {
        let items = self.st.db.write(|tx| {
            let mut items: Vec<SaveItem> = Vec::new();
            for n in names {
                let r = crate::image::resolve(tx, n)?;
                let layers = crate::image::image_layers(tx, &r.image.id)?;
                // Hold every blob, so a concurrent removal cannot pull one out from under us.
                lease.add_in(tx, Resource::Blob(r.image.id.clone()))?;
                lease.add_in(tx, Resource::Blob(r.image.manifest_digest.clone()))?;
                for l in &layers {
                    lease.add_in(tx, Resource::Blob(l.blob.clone()))?;
                }
                match items.iter_mut().find(|i| i.image.id == r.image.id) {
                    Some(i) => i.tags.extend(r.reference),
                    None => items.push(SaveItem {
                        image: r.image,
                        layers,
                        tags: r.reference.into_iter().collect(),
                    }),
                }
            }
            Ok::<_, crate::Error>(items)
        })?;
        match (format, dest) {
            (SaveFormat::OciDir, SaveDest::Path(p)) => self.save_dir(&items, p),
            (SaveFormat::OciDir, SaveDest::Writer(_)) => Err(ImageError::Invalid {
                reason: "an OCI layout directory needs an output path (-o DIR)".into(),
            }
            .into()),
            (f, SaveDest::Writer(w)) => self.save_tar(&items, f == SaveFormat::DockerArchive, w),
            // A device or a pipe (`-o /dev/stdout`, a FIFO) is written as it is: renaming a
            // temp file over it would replace the device node itself.
            (f, SaveDest::Path(p))
                if fs::metadata(p).is_ok_and(|m| !m.is_file() && !m.is_dir()) =>
            {
                let mut out = fs::OpenOptions::new()
                    .write(true)
                    .open(p)
                    .map_err(|e| save_io(p, e))?;
                self.save_tar(&items, f == SaveFormat::DockerArchive, &mut out)
            }
            (f, SaveDest::Path(p)) => {
                let tmp = temp_sibling(p);
                let res = (|| {
                    let mut file =
                        io::BufWriter::new(File::create(&tmp).map_err(|e| save_io(&tmp, e))?);
                    self.save_tar(&items, f == SaveFormat::DockerArchive, &mut file)?;
                    let file = file
                        .into_inner()
                        .map_err(|e| save_io(&tmp, e.into_error()))?;
                    file.sync_all().map_err(|e| save_io(&tmp, e))?;
                    fs::rename(&tmp, p).map_err(|e| save_io(p, e))
                })();
                if res.is_err() {
                    let _ = fs::remove_file(&tmp);
                }
                res
            }
        }
    }

    /// The files of a layout, in the order they are written: (path, blob or inline bytes).
    fn layout_files(
        &self,
        items: &[SaveItem],
        docker: bool,
    ) -> crate::Result<Vec<(String, FileSource)>> {
        let mut files: Vec<(String, FileSource)> = Vec::new();
        files.push((
            "oci-layout".into(),
            FileSource::Bytes(json(&Layout { version: "1.0.0" })),
        ));
        let mut manifests = Vec::new();
        let mut docker_entries = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut add_blob = |d: &Digest, files: &mut Vec<(String, FileSource)>| {
            if seen.insert(d.clone()) {
                files.push((
                    format!("blobs/sha256/{}", d.hex()),
                    FileSource::Blob(d.clone()),
                ));
            }
        };
        for item in items {
            let manifest_size = self.st.content.size(&item.image.manifest_digest)?;
            add_blob(&item.image.manifest_digest, &mut files);
            add_blob(&item.image.id, &mut files);
            for l in &item.layers {
                add_blob(&l.blob, &mut files);
            }
            let desc = |ann: Option<BTreeMap<&str, String>>| {
                let mut v = serde_json::json!({
                    "mediaType": item.image.manifest_media_type,
                    "digest": item.image.manifest_digest.to_string(),
                    "size": manifest_size,
                });
                if let Some(a) = ann {
                    v["annotations"] = serde_json::json!(a);
                }
                v
            };
            if item.tags.is_empty() {
                manifests.push(desc(None));
            }
            for t in &item.tags {
                let mut ann = BTreeMap::new();
                ann.insert("io.containerd.image.name", t.to_string());
                ann.insert(
                    "org.opencontainers.image.ref.name",
                    t.tag().unwrap_or("latest").to_string(),
                );
                manifests.push(desc(Some(ann)));
            }
            docker_entries.push(DockerEntry {
                config: format!("blobs/sha256/{}", item.image.id.hex()),
                repo_tags: Some(item.tags.iter().map(Reference::familiar).collect()),
                layers: item
                    .layers
                    .iter()
                    .map(|l| format!("blobs/sha256/{}", l.blob.hex()))
                    .collect(),
            });
        }
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_OCI_INDEX,
            "manifests": manifests,
        });
        files.push(("index.json".into(), FileSource::Bytes(json(&index))));
        if docker {
            files.push((
                "manifest.json".into(),
                FileSource::Bytes(json(&docker_entries)),
            ));
        }
        Ok(files)
    }

    fn save_tar(&self, items: &[SaveItem], docker: bool, out: &mut dyn Write) -> crate::Result<()> {
        let files = self.layout_files(items, docker)?;
        let mut b = tar::Builder::new(out);
        let io_err = |e: io::Error| ImageError::Io {
            what: "write archive".into(),
            source: e,
        };
        for dir in ["blobs/", "blobs/sha256/"] {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            h.set_mtime(0);
            b.append_data(&mut h, dir, io::empty()).map_err(io_err)?;
        }
        for (path, src) in files {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            h.set_mtime(0);
            match src {
                FileSource::Bytes(bytes) => {
                    h.set_size(bytes.len() as u64);
                    b.append_data(&mut h, &path, &bytes[..]).map_err(io_err)?;
                }
                FileSource::Blob(d) => {
                    let f = self.st.content.open_blob(&d)?;
                    let size = f.metadata().map_err(io_err)?.len();
                    h.set_size(size);
                    b.append_data(&mut h, &path, f).map_err(io_err)?;
                }
            }
        }
        b.into_inner().map_err(io_err)?.flush().map_err(io_err)?;
        Ok(())
    }

    fn save_dir(&self, items: &[SaveItem], dest: &Path) -> crate::Result<()> {
        if dest.exists()
            && fs::read_dir(dest)
                .map_err(|e| save_io(dest, e))?
                .next()
                .is_some()
        {
            return Err(ImageError::Conflict {
                action: "save to",
                name: dest.display().to_string(),
                force: "remove it first",
                reason: "the directory is not empty".into(),
            }
            .into());
        }
        let tmp = temp_sibling(dest);
        let res = (|| {
            fs::create_dir_all(tmp.join("blobs/sha256")).map_err(|e| save_io(&tmp, e))?;
            for (path, src) in self.layout_files(items, false)? {
                let target = tmp.join(&path);
                match src {
                    FileSource::Bytes(bytes) => {
                        fs::write(&target, bytes).map_err(|e| save_io(&target, e))?
                    }
                    FileSource::Blob(d) => {
                        fs::copy(self.st.content.path(&d), &target)
                            .map_err(|e| save_io(&target, e))?;
                        fs::set_permissions(
                            &target,
                            std::os::unix::fs::PermissionsExt::from_mode(0o644),
                        )
                        .map_err(|e| save_io(&target, e))?;
                    }
                }
            }
            if dest.exists() {
                fs::remove_dir(dest).map_err(|e| save_io(dest, e))?;
            }
            fs::rename(&tmp, dest).map_err(|e| save_io(dest, e))
        })();
        if res.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        res
    }
}

pub(super) enum FileSource {
    Bytes(Vec<u8>),
    Blob(Digest),
}

pub(super) fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("plain data serialises")
}

pub(super) fn temp_sibling(p: &Path) -> PathBuf {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    p.with_file_name(format!(".{name}.tmp-{}", crate::util::random_hex(4)))
}

pub(super) fn save_io(p: &Path, e: io::Error) -> crate::Error {
    ImageError::Io {
        what: format!("write {}", p.display()),
        source: e,
    }
    .into()
}
