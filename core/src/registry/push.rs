//! Push: an image's layers, config and manifest sent to a registry, each blob only when the
//! registry lacks it (a `HEAD` first) and mounted from another repository of the same
//! registry where it is known to be there; in one request, or in chunks when it is large.

use std::io::{Read, Seek, SeekFrom};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rusqlite::params;

use super::pull::{answer_error, read_small};
use super::transport::{Body, Endpoint, header};
use super::{AuthConfig, Registries, RegistryError, scope};
use crate::digest::Digest;
use crate::image::{self, MAX_JSON};
use crate::model::ProgressMessage;
use crate::reference::Reference;

/// Blobs sent at once (dockerd's `max-concurrent-uploads`).
const UPLOADS: usize = 5;
const TICK: Duration = Duration::from_millis(100);

/// What to push.
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// `localhost:5000/me/app[:tag]`; the tag defaults to `latest`.
    pub reference: String,
    /// Credentials; `None`: anonymous (front doors look up the user's stored ones first).
    pub auth: Option<AuthConfig>,
    /// Speak to this registry over plain HTTP or unverified TLS (`--tls-verify=false`).
    pub insecure: bool,
}

/// What a push left in the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushResult {
    pub reference: String,
    /// The manifest's digest.
    pub digest: Digest,
    /// The manifest's size.
    pub size: u64,
}

fn short(d: &Digest) -> String {
    d.hex()[..12].to_string()
}

/// `url` with `key=value` added to its query.
fn with_query(url: &str, key: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{key}={}", value.replace(':', "%3A"))
}

/// An upload's `Location`, made absolute against the endpoint.
fn location(
    ep: &Endpoint,
    resp: &ureq::http::Response<ureq::Body>,
) -> Result<String, RegistryError> {
    let loc = header(resp.headers(), "location").ok_or_else(|| RegistryError::Protocol {
        registry: ep.domain.clone(),
        reason: "an upload was started without a Location".into(),
    })?;
    Ok(
        if loc.starts_with("http://") || loc.starts_with("https://") {
            loc.to_string()
        } else if loc.starts_with('/') {
            format!("{}{loc}", ep.base)
        } else {
            format!("{}/{loc}", ep.base)
        },
    )
}

impl Registries<'_> {
    /// Pushes a local image to the registry its name names.
    pub fn push(
        &self,
        opts: &PushOptions,
        progress: &mut dyn FnMut(ProgressMessage),
    ) -> crate::Result<PushResult> {
        let r = Reference::parse(&opts.reference)?;
        if r.digest().is_some() {
            return Err(RegistryError::Platform {
                value: opts.reference.clone(),
                reason: "a digest reference cannot be pushed; push a tag".into(),
            }
            .into());
        }
        let r = r.with_default_tag();
        let (record, layers) = self.st.db.read(|tx| {
            let res = image::resolve(tx, &r.to_string());
            let resolved = match res {
                Ok(x) if x.reference.is_some() => x,
                _ => {
                    return Err(RegistryError::NoLocalImage { name: r.familiar() }.into());
                }
            };
            let layers = image::image_layers(tx, &resolved.image.id)?;
            Ok::<_, crate::Error>((resolved.image, layers))
        })?;
        progress(ProgressMessage::status(format!(
            "The push refers to repository [{}]",
            r.name()
        )));
        let auth = opts.auth.clone().unwrap_or_default();
        let ep = Endpoint::connect(&self.st.registry, r.domain(), auth, true, !opts.insecure)?;
        let manifest = self.st.content.read(&record.manifest_digest, MAX_JSON)?;
        let m = image::parse_manifest(&manifest)?;
        let mut blobs: Vec<(Digest, u64)> = Vec::new();
        for l in m.layers() {
            blobs.push((image::parse_digest(l.digest().as_ref())?, l.size()));
        }
        if blobs.len() != layers.len() {
            return Err(image::ImageError::Malformed {
                what: format!("manifest {}", record.manifest_digest),
                reason: "its layers are not the image's".into(),
            }
            .into());
        }
        // Docker lists the top layer first.
        for (d, _) in blobs.iter().rev() {
            progress(ProgressMessage::about(short(d), "Preparing"));
        }
        let config = (
            image::parse_digest(m.config().digest().as_ref())?,
            m.config().size(),
        );
        self.push_blobs(&ep, &r, &blobs, progress)?;
        self.push_blob(&ep, &r, &config, &mut |_| {})?;
        let tag = r.tag().unwrap_or("latest");
        let path = format!("/v2/{}/manifests/{tag}", r.path());
        let mut resp = ep.send(
            "PUT",
            &path,
            &[scope(r.path(), true)],
            &[],
            Body::Bytes(&manifest, &record.manifest_media_type),
        )?;
        let status = resp.status().as_u16();
        let said = header(resp.headers(), "docker-content-digest").map(String::from);
        let body = read_small(&mut resp, &ep.domain)?;
        if status != 201 && status != 200 {
            return Err(
                answer_error(&ep, status, &body, &format!("manifest {}", r.familiar())).into(),
            );
        }
        if let Some(said) = said.filter(|s| s.starts_with("sha256:"))
            && said != record.manifest_digest.to_string()
        {
            return Err(RegistryError::Mismatch {
                what: format!("manifest {}", r.familiar()),
                expected: record.manifest_digest.to_string(),
                actual: said,
            }
            .into());
        }
        self.record_sources(&r, blobs.iter().chain([&config]).map(|(d, _)| d))?;
        let size = manifest.len() as u64;
        progress(ProgressMessage::status(format!(
            "{tag}: digest: {} size: {size}",
            record.manifest_digest
        )));
        progress(ProgressMessage {
            aux: Some(serde_json::json!({
                "Tag": tag,
                "Digest": record.manifest_digest.to_string(),
                "Size": size,
            })),
            ..ProgressMessage::default()
        });
        crate::events::record(
            self.st,
            "image",
            "push",
            &r.familiar(),
            &[("name", &r.familiar())],
        );
        Ok(PushResult {
            reference: r.familiar(),
            digest: record.manifest_digest,
            size,
        })
    }

    /// Sends the layers, several at once, relaying their progress.
    fn push_blobs(
        &self,
        ep: &Endpoint,
        r: &Reference,
        blobs: &[(Digest, u64)],
        progress: &mut dyn FnMut(ProgressMessage),
    ) -> crate::Result<()> {
        let queue = std::sync::Mutex::new(blobs.iter());
        let (tx, rx) = mpsc::channel::<Result<ProgressMessage, crate::Error>>();
        std::thread::scope(|s| {
            for _ in 0..UPLOADS.min(blobs.len()) {
                let tx = tx.clone();
                let queue = &queue;
                s.spawn(move || {
                    loop {
                        let next = queue.lock().unwrap().next();
                        let Some(blob) = next else { break };
                        let id = short(&blob.0);
                        let mut last = Instant::now() - TICK;
                        let res = self.push_blob(ep, r, blob, &mut |p| {
                            let bytes = p.progress_detail.is_some();
                            if !bytes || last.elapsed() >= TICK {
                                last = Instant::now();
                                let _ = tx.send(Ok(ProgressMessage {
                                    id: Some(id.clone()),
                                    ..p
                                }));
                            }
                        });
                        if let Err(e) = res {
                            let _ = tx.send(Err(e));
                            break;
                        }
                    }
                });
            }
            drop(tx);
            let mut first_error = None;
            for m in rx {
                match m {
                    Ok(p) => progress(p),
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            first_error.map_or(Ok(()), Err)
        })
    }

    /// Sends one blob unless the registry has it, mounting it from a repository it is known
    /// to be in where it can. `each` gets the blob's progress messages (their `id` unset).
    fn push_blob(
        &self,
        ep: &Endpoint,
        r: &Reference,
        (digest, size): &(Digest, u64),
        each: &mut dyn FnMut(ProgressMessage),
    ) -> crate::Result<()> {
        let what = format!("blob {digest}");
        let scopes = [scope(r.path(), true)];
        let head = ep.send(
            "HEAD",
            &format!("/v2/{}/blobs/{digest}", r.path()),
            &scopes,
            &[],
            Body::Empty,
        )?;
        if head.status().as_u16() == 200 {
            each(ProgressMessage::status("Layer already exists"));
            return Ok(());
        }
        let sources: Vec<String> = self.st.db.read(|tx| {
            let mut stmt = tx.prepare(
                "SELECT repository FROM blob_sources WHERE digest = ?1 AND registry = ?2 AND repository != ?3 ORDER BY repository",
            )?;
            let rows = stmt
                .query_map(params![digest.to_string(), r.domain(), r.path()], |row| row.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            Ok::<_, crate::Error>(rows)
        })?;
        let uploads = format!("/v2/{}/blobs/uploads/", r.path());
        let mut started = None;
        for from in sources.iter().take(3) {
            let mount_scopes = [scope(r.path(), true), scope(from, false)];
            let url = with_query(
                &with_query(&uploads, "mount", &digest.to_string()),
                "from",
                from,
            );
            let mut resp = ep.send("POST", &url, &mount_scopes, &[], Body::Empty)?;
            let status = resp.status().as_u16();
            if status == 201 {
                let _ = read_small(&mut resp, &ep.domain);
                each(ProgressMessage::status(format!("Mounted from {from}")));
                return Ok(());
            }
            if status == 202 {
                // The registry could not mount it and opened an upload instead.
                started = Some(location(ep, &resp)?);
                let _ = read_small(&mut resp, &ep.domain);
                break;
            }
            let _ = read_small(&mut resp, &ep.domain);
        }
        let mut loc = match started {
            Some(l) => l,
            None => {
                let mut resp = ep.send("POST", &uploads, &scopes, &[], Body::Empty)?;
                let status = resp.status().as_u16();
                if status != 202 {
                    let body = read_small(&mut resp, &ep.domain).unwrap_or_default();
                    return Err(
                        answer_error(ep, status, &body, &format!("upload of {what}")).into(),
                    );
                }
                let l = location(ep, &resp)?;
                let _ = read_small(&mut resp, &ep.domain);
                l
            }
        };
        let mut file = self.st.content.open_blob(digest)?;
        let chunk = self.st.registry.push_chunk_size;
        let mut sent = 0u64;
        let io_err = |e: std::io::Error| RegistryError::Io {
            what: format!("read {what}"),
            source: e,
        };
        if chunk > 0 && *size > chunk {
            // Chunked: PATCH each piece in order, then PUT with the digest.
            while sent < *size {
                let n = chunk.min(*size - sent);
                file.seek(SeekFrom::Start(sent)).map_err(io_err)?;
                let mut piece = Counted {
                    inner: (&mut file).take(n),
                    base: sent,
                    total: *size,
                    each: &mut *each,
                };
                let range = format!("{}-{}", sent, sent + n - 1);
                let mut resp = ep.send(
                    "PATCH",
                    &loc,
                    &scopes,
                    &[("Content-Range", &range)],
                    Body::Stream(&mut piece, n),
                )?;
                let status = resp.status().as_u16();
                if status != 202 {
                    let body = read_small(&mut resp, &ep.domain).unwrap_or_default();
                    return Err(answer_error(
                        ep,
                        status,
                        &body,
                        &format!("chunk {range} of {what}"),
                    )
                    .into());
                }
                loc = location(ep, &resp)?;
                let _ = read_small(&mut resp, &ep.domain);
                sent += n;
            }
            let mut resp = ep.send(
                "PUT",
                &with_query(&loc, "digest", &digest.to_string()),
                &scopes,
                &[],
                Body::Empty,
            )?;
            let status = resp.status().as_u16();
            let body = read_small(&mut resp, &ep.domain).unwrap_or_default();
            if status != 201 {
                return Err(answer_error(ep, status, &body, &format!("upload of {what}")).into());
            }
        } else {
            let mut whole = Counted {
                inner: &mut file,
                base: 0,
                total: *size,
                each,
            };
            let mut resp = ep.send(
                "PUT",
                &with_query(&loc, "digest", &digest.to_string()),
                &scopes,
                &[],
                Body::Stream(&mut whole, *size),
            )?;
            let status = resp.status().as_u16();
            let body = read_small(&mut resp, &ep.domain).unwrap_or_default();
            if status != 201 {
                return Err(answer_error(ep, status, &body, &format!("upload of {what}")).into());
            }
        }
        each(ProgressMessage::status("Pushed"));
        Ok(())
    }
}

/// A blob's bytes on their way up, telling `each` how far they got.
struct Counted<'a, R> {
    inner: R,
    base: u64,
    total: u64,
    each: &'a mut dyn FnMut(ProgressMessage),
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.base += n as u64;
        (self.each)(ProgressMessage::bytes("", "Pushing", self.base, self.total));
        Ok(n)
    }
}
