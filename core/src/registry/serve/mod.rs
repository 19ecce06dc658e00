//! `ketch registry serve`: a registry of our own, the OCI distribution API over HTTP(S) —
//! pull, push (monolithic, chunked and cross-repository mounts), tags list, catalog,
//! manifest and blob delete, ranges — with no auth, basic auth from an htpasswd file
//! (bcrypt, as distribution's), or bearer tokens it issues itself from the same file.
//!
//! Nothing a client sends is trusted: names and tags are checked before they become paths,
//! a blob is kept only when its bytes match the digest the client says they have, and a
//! manifest only when every blob it names is in the repository.

mod auth;
mod store;

use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::json;

use crate::digest::Digest;
use crate::http::{self, Request};
pub use auth::Htpasswd;
use auth::{Access, Auth};
use store::{Store, valid_repo, valid_tag};

/// Largest manifest accepted.
const MAX_MANIFEST: u64 = 4 << 20;

/// How `registry serve` runs.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Where blobs and repositories are kept.
    pub root: PathBuf,
    /// Users allowed, as `htpasswd -B` writes them; `None`: anyone may pull and push.
    pub htpasswd: Option<PathBuf>,
    /// Issue bearer tokens at `/token` (checked against `htpasswd`) instead of asking every
    /// request for basic credentials.
    pub token_auth: bool,
}

/// A running registry's shared part.
pub struct Registry {
    store: Store,
    auth: Auth,
}

/// An answer in distribution's error shape.
struct Fail {
    status: u16,
    code: &'static str,
    message: String,
    challenge: Option<String>,
}

fn fail(status: u16, code: &'static str, message: impl Into<String>) -> Fail {
    Fail {
        status,
        code,
        message: message.into(),
        challenge: None,
    }
}

type Answer = Result<(u16, Vec<(&'static str, String)>, Content), Fail>;

/// What a response carries.
enum Content {
    None,
    Bytes(Vec<u8>),
    /// `len` bytes of a blob from `offset`.
    Blob(std::fs::File, u64, u64),
}

/// A connection's stream: TCP, or TLS through a relay.
trait Conn: Read + Write + Send {
    fn try_clone_conn(&self) -> io::Result<Box<dyn Conn>>;
}
impl Conn for TcpStream {
    fn try_clone_conn(&self) -> io::Result<Box<dyn Conn>> {
        Ok(Box::new(self.try_clone()?))
    }
}
impl Conn for std::os::unix::net::UnixStream {
    fn try_clone_conn(&self) -> io::Result<Box<dyn Conn>> {
        Ok(Box::new(self.try_clone()?))
    }
}

impl Registry {
    pub fn open(opts: &ServeOptions) -> crate::Result<Arc<Registry>> {
        let store = Store::open(&opts.root)?;
        let users = match &opts.htpasswd {
            Some(p) => Some(Htpasswd::load(p)?),
            None => None,
        };
        Ok(Arc::new(Registry {
            store,
            auth: Auth::new(users, opts.token_auth),
        }))
    }

    /// Serves `listener` until it fails, a thread per connection; TLS when `tls` is given.
    pub fn serve(
        self: &Arc<Registry>,
        listener: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> io::Result<()> {
        loop {
            let (s, _) = match listener.accept() {
                Ok(c) => c,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    continue;
                }
                Err(e) => return Err(e),
            };
            let _ = s.set_nodelay(true);
            let me = self.clone();
            let tls = tls.clone();
            std::thread::spawn(move || {
                let conn: Box<dyn Conn> = match tls.clone() {
                    Some(cfg) => match crate::tls::accept(cfg, s) {
                        Ok(c) => Box::new(c),
                        Err(_) => return,
                    },
                    None => Box::new(s),
                };
                let scheme = if tls.is_some() { "https" } else { "http" };
                let _ = me.connection(conn, scheme);
            });
        }
    }

    fn connection(&self, conn: Box<dyn Conn>, scheme: &str) -> io::Result<()> {
        let mut reader = BufReader::with_capacity(256 << 10, conn.try_clone_conn()?);
        let mut writer = conn;
        // A TLS handshake on a plain port (a client trying HTTPS first, as clients of an
        // insecure registry do) is answered at once, not waited on for a request line.
        if let Ok(buf) = io::BufRead::fill_buf(&mut reader)
            && buf.first() == Some(&0x16)
        {
            let _ = http::respond(
                &mut writer,
                400,
                &[],
                b"Client sent an HTTPS request to an HTTP server.\n",
                false,
                false,
            );
            return Ok(());
        }
        loop {
            let mut req = match http::read_request(&mut reader) {
                Ok(Some(r)) => r,
                Ok(None) => return Ok(()),
                Err(_) => {
                    let _ = http::respond(&mut writer, 400, &[], b"bad request\n", false, false);
                    return Ok(());
                }
            };
            // `/v2/...` is read by the HTTP layer as API version 2 of `/...`: put it back.
            if let Some(v) = req.version.take() {
                req.path = format!("/v{v}{}", req.path);
            }
            if req
                .header("expect")
                .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
            {
                writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
            }
            let head = req.method == "HEAD";
            let answer = {
                let mut body = http::body_reader(&req, &mut reader);
                let a = self.route(&req, &mut *body, scheme);
                // What the handler left of the body is read, so the next request starts
                // where it should.
                let drained = io::copy(&mut body, &mut io::sink()).is_ok();
                (a, drained)
            };
            let (answer, drained) = answer;
            let keep = req.keep_alive && drained;
            match answer {
                Ok((status, headers, content)) => {
                    let mut hs: Vec<(&str, String)> = vec![(
                        "Docker-Distribution-API-Version",
                        "registry/2.0".to_string(),
                    )];
                    hs.extend(headers.iter().map(|(k, v)| (*k, v.clone())));
                    match content {
                        Content::None => http::respond(&mut writer, status, &hs, b"", head, keep)?,
                        Content::Bytes(b) => {
                            http::respond(&mut writer, status, &hs, &b, head, keep)?
                        }
                        Content::Blob(mut f, offset, len) => {
                            let mut out = format!("HTTP/1.1 {status} {}\r\n", http::reason(status));
                            for (k, v) in &hs {
                                out.push_str(&format!("{k}: {v}\r\n"));
                            }
                            out.push_str(&format!("Content-Length: {len}\r\n"));
                            if !keep {
                                out.push_str("Connection: close\r\n");
                            }
                            out.push_str("\r\n");
                            writer.write_all(out.as_bytes())?;
                            if !head {
                                f.seek(SeekFrom::Start(offset))?;
                                io::copy(&mut f.take(len), &mut writer)?;
                            }
                            writer.flush()?;
                        }
                    }
                }
                Err(f) => {
                    let body =
                        json!({"errors": [{"code": f.code, "message": f.message, "detail": null}]});
                    let mut hs: Vec<(&str, String)> = vec![
                        ("Content-Type", "application/json".to_string()),
                        (
                            "Docker-Distribution-API-Version",
                            "registry/2.0".to_string(),
                        ),
                    ];
                    if let Some(c) = f.challenge {
                        hs.push(("WWW-Authenticate", c));
                    }
                    http::respond(
                        &mut writer,
                        f.status,
                        &hs,
                        body.to_string().as_bytes(),
                        head,
                        keep,
                    )?;
                }
            }
            if !keep {
                return Ok(());
            }
        }
    }

    fn route(&self, req: &Request, body: &mut dyn Read, scheme: &str) -> Answer {
        let path = req.path.as_str();
        if path == "/token" {
            return self.auth.token(req);
        }
        let check = |access: &Access| self.auth.check(req, access, scheme);
        let Some(rest) = path.strip_prefix("/v2/").or((path == "/v2").then_some("")) else {
            return Err(fail(404, "NOT_FOUND", "not found"));
        };
        if rest.is_empty() {
            check(&Access::Base)?;
            return Ok((200, json_headers(), Content::Bytes(b"{}".to_vec())));
        }
        if rest == "_catalog" {
            check(&Access::Catalog)?;
            return self.catalog(req);
        }
        // `<name>/(manifests|blobs|tags)/...`: the name may hold slashes, so split at the
        // last of the keywords.
        let (name, kind, arg) =
            split_route(rest).ok_or_else(|| fail(404, "NOT_FOUND", "not found"))?;
        if !valid_repo(name) {
            return Err(fail(
                400,
                "NAME_INVALID",
                format!("invalid repository name {name:?}"),
            ));
        }
        let write = !matches!(req.method.as_str(), "GET" | "HEAD");
        check(&Access::Repo {
            name: name.to_string(),
            push: write,
        })?;
        match (kind, req.method.as_str()) {
            ("tags", "GET") if arg == "list" => self.tags(req, name),
            ("manifests", "GET" | "HEAD") => self.get_manifest(name, arg),
            ("manifests", "PUT") => self.put_manifest(req, name, arg, body),
            ("manifests", "DELETE") => self.delete_manifest(name, arg),
            ("blobs", "GET" | "HEAD") => self.get_blob(req, name, arg),
            ("blobs", "DELETE") => self.delete_blob(name, arg),
            ("uploads", "POST") if arg.is_empty() => {
                // A mount needs the right to read the other repository too.
                let from_readable = |from: &str| {
                    check(&Access::Repo {
                        name: from.to_string(),
                        push: false,
                    })
                    .is_ok()
                };
                self.start_upload(req, name, body, &from_readable)
            }
            ("uploads", "PATCH") => self.patch_upload(req, name, arg, body),
            ("uploads", "PUT") => self.put_upload(req, name, arg, body),
            ("uploads", "GET") => self.upload_status(name, arg),
            ("uploads", "DELETE") => {
                self.known_upload(name, arg)?;
                self.store.cancel_upload(arg);
                Ok((204, Vec::new(), Content::None))
            }
            _ => Err(fail(405, "UNSUPPORTED", "the operation is unsupported")),
        }
    }

    fn catalog(&self, req: &Request) -> Answer {
        let all = self.store.catalog();
        let (page, next) = paginate(&all, req);
        let mut hs = json_headers();
        if let Some(last) = next {
            hs.push((
                "Link",
                format!("</v2/_catalog?last={last}&n={}>; rel=\"next\"", page.len()),
            ));
        }
        let body = json!({ "repositories": page });
        Ok((200, hs, Content::Bytes(body.to_string().into_bytes())))
    }

    fn tags(&self, req: &Request, name: &str) -> Answer {
        if !self.store.repo_exists(name) {
            return Err(fail(
                404,
                "NAME_UNKNOWN",
                format!("repository name not known to registry: {name}"),
            ));
        }
        let all = self.store.tags(name);
        let (page, next) = paginate(&all, req);
        let mut hs = json_headers();
        if let Some(last) = next {
            hs.push((
                "Link",
                format!(
                    "</v2/{name}/tags/list?last={last}&n={}>; rel=\"next\"",
                    page.len()
                ),
            ));
        }
        let body = json!({ "name": name, "tags": page });
        Ok((200, hs, Content::Bytes(body.to_string().into_bytes())))
    }

    /// A manifest by tag or digest.
    fn resolve(&self, name: &str, reference: &str) -> Result<Digest, Fail> {
        let unknown = || fail(404, "MANIFEST_UNKNOWN", "manifest unknown");
        if reference.starts_with("sha256:") {
            let d: Digest = reference.parse().map_err(|_| {
                fail(
                    400,
                    "DIGEST_INVALID",
                    "provided digest did not match uploaded content",
                )
            })?;
            return self
                .store
                .has_manifest(name, &d)
                .then_some(d)
                .ok_or_else(unknown);
        }
        if !valid_tag(reference) {
            return Err(fail(
                400,
                "TAG_INVALID",
                format!("invalid tag {reference:?}"),
            ));
        }
        self.store
            .tag(name, reference)
            .filter(|d| self.store.has_manifest(name, d))
            .ok_or_else(unknown)
    }

    fn get_manifest(&self, name: &str, reference: &str) -> Answer {
        let d = self.resolve(name, reference)?;
        let bytes = self
            .store
            .content
            .read(&d, MAX_MANIFEST)
            .map_err(|e| fail(500, "UNKNOWN", e.to_string()))?;
        let media = media_type_of(&bytes);
        Ok((
            200,
            vec![
                ("Content-Type", media),
                ("Docker-Content-Digest", d.to_string()),
                ("ETag", format!("\"{d}\"")),
            ],
            Content::Bytes(bytes),
        ))
    }

    fn put_manifest(
        &self,
        req: &Request,
        name: &str,
        reference: &str,
        body: &mut dyn Read,
    ) -> Answer {
        let mut bytes = Vec::new();
        body.take(MAX_MANIFEST + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| fail(400, "MANIFEST_INVALID", e.to_string()))?;
        if bytes.len() as u64 > MAX_MANIFEST {
            return Err(fail(413, "SIZE_INVALID", "manifest too large"));
        }
        let d = Digest::of(&bytes);
        let tag = if reference.starts_with("sha256:") {
            if reference != d.to_string() {
                return Err(fail(
                    400,
                    "DIGEST_INVALID",
                    "provided digest did not match uploaded content",
                ));
            }
            None
        } else if valid_tag(reference) {
            Some(reference)
        } else {
            return Err(fail(
                400,
                "TAG_INVALID",
                format!("invalid tag {reference:?}"),
            ));
        };
        let doc: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| fail(400, "MANIFEST_INVALID", format!("manifest invalid: {e}")))?;
        let media = doc
            .get("mediaType")
            .and_then(|m| m.as_str())
            .map(String::from)
            .or_else(|| req.header("content-type").map(String::from))
            .unwrap_or_default();
        // Everything the manifest names must be here: blobs for an image, manifests for an
        // index.
        let digest_of = |v: &serde_json::Value| -> Result<Digest, Fail> {
            v.get("digest")
                .and_then(|d| d.as_str())
                .and_then(|d| d.parse().ok())
                .ok_or_else(|| {
                    fail(
                        400,
                        "MANIFEST_INVALID",
                        "a descriptor without a valid digest",
                    )
                })
        };
        if let Some(list) = doc.get("manifests").and_then(|m| m.as_array()) {
            for m in list {
                let md = digest_of(m)?;
                if !self.store.has_manifest(name, &md) {
                    return Err(fail(
                        400,
                        "MANIFEST_UNKNOWN",
                        format!("manifest unknown: {md}"),
                    ));
                }
            }
        } else {
            let mut blobs = Vec::new();
            if let Some(c) = doc.get("config") {
                blobs.push(digest_of(c)?);
            }
            for l in doc
                .get("layers")
                .and_then(|l| l.as_array())
                .into_iter()
                .flatten()
            {
                // Foreign layers (with `urls`) live elsewhere.
                if l.get("urls").is_some() {
                    continue;
                }
                blobs.push(digest_of(l)?);
            }
            if doc.get("schemaVersion").and_then(|v| v.as_u64()) != Some(2) {
                return Err(fail(
                    400,
                    "MANIFEST_INVALID",
                    "manifest invalid: schemaVersion must be 2",
                ));
            }
            for b in blobs {
                if !self.store.has_blob(name, &b) {
                    return Err(fail(
                        400,
                        "MANIFEST_BLOB_UNKNOWN",
                        format!("blob unknown to registry: {b}"),
                    ));
                }
            }
        }
        let _ = media;
        self.store
            .put_manifest(name, &bytes, &d, tag)
            .map_err(|e| fail(500, "UNKNOWN", e.to_string()))?;
        Ok((
            201,
            vec![
                ("Location", format!("/v2/{name}/manifests/{d}")),
                ("Docker-Content-Digest", d.to_string()),
            ],
            Content::None,
        ))
    }

    fn delete_manifest(&self, name: &str, reference: &str) -> Answer {
        let d: Digest = reference
            .parse()
            .map_err(|_| fail(400, "UNSUPPORTED", "a manifest is deleted by digest"))?;
        match self.store.delete_manifest(name, &d) {
            Ok(true) => Ok((202, Vec::new(), Content::None)),
            Ok(false) => Err(fail(404, "MANIFEST_UNKNOWN", "manifest unknown")),
            Err(e) => Err(fail(500, "UNKNOWN", e.to_string())),
        }
    }

    fn blob_digest(arg: &str) -> Result<Digest, Fail> {
        arg.parse()
            .map_err(|_| fail(400, "DIGEST_INVALID", format!("invalid digest {arg:?}")))
    }

    fn get_blob(&self, req: &Request, name: &str, arg: &str) -> Answer {
        let d = Self::blob_digest(arg)?;
        if !self.store.has_blob(name, &d) && !self.store.has_manifest(name, &d) {
            return Err(fail(404, "BLOB_UNKNOWN", "blob unknown to registry"));
        }
        let f = self
            .store
            .open_blob(&d)
            .map_err(|_| fail(404, "BLOB_UNKNOWN", "blob unknown to registry"))?;
        let size = f
            .metadata()
            .map_err(|e| fail(500, "UNKNOWN", e.to_string()))?
            .len();
        let mut hs = vec![
            ("Content-Type", "application/octet-stream".to_string()),
            ("Docker-Content-Digest", d.to_string()),
            ("ETag", format!("\"{d}\"")),
            ("Accept-Ranges", "bytes".to_string()),
        ];
        if let Some(range) = req.header("range") {
            let (start, end) = parse_range(range, size)
                .ok_or_else(|| fail(416, "RANGE_INVALID", format!("invalid range {range:?}")))?;
            hs.push(("Content-Range", format!("bytes {start}-{end}/{size}")));
            return Ok((206, hs, Content::Blob(f, start, end - start + 1)));
        }
        Ok((200, hs, Content::Blob(f, 0, size)))
    }

    fn delete_blob(&self, name: &str, arg: &str) -> Answer {
        let d = Self::blob_digest(arg)?;
        match self.store.unlink_blob(name, &d) {
            Ok(true) => Ok((
                202,
                vec![("Docker-Content-Digest", d.to_string())],
                Content::None,
            )),
            Ok(false) => Err(fail(404, "BLOB_UNKNOWN", "blob unknown to registry")),
            Err(e) => Err(fail(500, "UNKNOWN", e.to_string())),
        }
    }

    fn upload_headers(name: &str, uuid: &str, size: u64) -> Vec<(&'static str, String)> {
        vec![
            ("Location", format!("/v2/{name}/blobs/uploads/{uuid}")),
            ("Docker-Upload-UUID", uuid.to_string()),
            ("Range", format!("0-{}", size.saturating_sub(1))),
        ]
    }

    fn start_upload(
        &self,
        req: &Request,
        name: &str,
        body: &mut dyn Read,
        from_readable: &dyn Fn(&str) -> bool,
    ) -> Answer {
        if let (Some(mount), Some(from)) = (req.query.get("mount"), req.query.get("from")) {
            let d = Self::blob_digest(mount)?;
            if valid_repo(from) && from_readable(from) && self.store.has_blob(from, &d) {
                self.store
                    .link_blob(name, &d)
                    .map_err(|e| fail(500, "UNKNOWN", e.to_string()))?;
                return Ok((
                    201,
                    vec![
                        ("Location", format!("/v2/{name}/blobs/{d}")),
                        ("Docker-Content-Digest", d.to_string()),
                    ],
                    Content::None,
                ));
            }
        }
        let uuid = self
            .store
            .start_upload(name)
            .map_err(|e| fail(500, "UNKNOWN", e.to_string()))?;
        // A monolithic upload in the POST itself.
        if let Some(digest) = req.query.get("digest") {
            let d = Self::blob_digest(digest)?;
            self.store
                .append(&uuid, body)
                .map_err(|e| fail(400, "BLOB_UPLOAD_INVALID", e.to_string()))?;
            return self.finish(name, &uuid, &d);
        }
        Ok((202, Self::upload_headers(name, &uuid, 0), Content::None))
    }

    fn known_upload(&self, name: &str, uuid: &str) -> Result<u64, Fail> {
        match self.store.upload(uuid) {
            Some((repo, size)) if repo == name => Ok(size),
            _ => Err(fail(
                404,
                "BLOB_UPLOAD_UNKNOWN",
                "blob upload unknown to registry",
            )),
        }
    }

    fn patch_upload(&self, req: &Request, name: &str, uuid: &str, body: &mut dyn Read) -> Answer {
        let size = self.known_upload(name, uuid)?;
        if let Some(range) = req.header("content-range") {
            let start = range
                .trim()
                .trim_start_matches("bytes ")
                .split('-')
                .next()
                .and_then(|s| s.parse::<u64>().ok());
            if start != Some(size) {
                return Err(fail(
                    416,
                    "BLOB_UPLOAD_INVALID",
                    format!("chunk starts at {start:?}, the upload holds {size} bytes"),
                ));
            }
        }
        let size = self
            .store
            .append(uuid, body)
            .map_err(|e| fail(400, "BLOB_UPLOAD_INVALID", e.to_string()))?;
        Ok((202, Self::upload_headers(name, uuid, size), Content::None))
    }

    fn put_upload(&self, req: &Request, name: &str, uuid: &str, body: &mut dyn Read) -> Answer {
        self.known_upload(name, uuid)?;
        let d = Self::blob_digest(req.query.get("digest").map_or("", String::as_str))?;
        self.store
            .append(uuid, body)
            .map_err(|e| fail(400, "BLOB_UPLOAD_INVALID", e.to_string()))?;
        self.finish(name, uuid, &d)
    }

    fn finish(&self, name: &str, uuid: &str, d: &Digest) -> Answer {
        match self.store.finish_upload(uuid, name, d) {
            Ok(_) => Ok((
                201,
                vec![
                    ("Location", format!("/v2/{name}/blobs/{d}")),
                    ("Docker-Content-Digest", d.to_string()),
                ],
                Content::None,
            )),
            Err(crate::content::ContentError::DigestMismatch { .. }) => {
                self.store.cancel_upload(uuid);
                Err(fail(
                    400,
                    "DIGEST_INVALID",
                    "provided digest did not match uploaded content",
                ))
            }
            Err(e) => Err(fail(500, "UNKNOWN", e.to_string())),
        }
    }

    fn upload_status(&self, name: &str, uuid: &str) -> Answer {
        let size = self.known_upload(name, uuid)?;
        Ok((204, Self::upload_headers(name, uuid, size), Content::None))
    }
}

fn json_headers() -> Vec<(&'static str, String)> {
    vec![("Content-Type", "application/json".to_string())]
}

/// `<name>/manifests/<ref>`, `<name>/blobs/<digest>`, `<name>/blobs/uploads/[<uuid>]`,
/// `<name>/tags/list` → (name, kind, argument).
fn split_route(rest: &str) -> Option<(&str, &'static str, &str)> {
    if let Some(i) = rest.rfind("/blobs/uploads") {
        let arg = rest[i + "/blobs/uploads".len()..].trim_start_matches('/');
        return Some((&rest[..i], "uploads", arg));
    }
    for kind in ["manifests", "blobs", "tags"] {
        let key = format!("/{kind}/");
        if let Some(i) = rest.rfind(&key) {
            let arg = &rest[i + key.len()..];
            if !arg.is_empty() && !arg.contains('/') {
                return Some((&rest[..i], kind, arg));
            }
        }
    }
    None
}

/// `n` and `last` of a list request.
fn paginate(all: &[String], req: &Request) -> (Vec<String>, Option<String>) {
    let n = req
        .query
        .get("n")
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|&n| n > 0);
    let after: Vec<String> = match req.query.get("last") {
        Some(last) => all.iter().filter(|x| *x > last).cloned().collect(),
        None => all.to_vec(),
    };
    match n {
        Some(n) if after.len() > n => {
            let page = after[..n].to_vec();
            let last = page.last().cloned();
            (page, last)
        }
        _ => (after, None),
    }
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` → inclusive (start, end).
fn parse_range(range: &str, size: u64) -> Option<(u64, u64)> {
    let spec = range.trim().strip_prefix("bytes=")?;
    if spec.contains(',') || size == 0 {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (size.saturating_sub(n), size - 1)
        }
        (a, "") => (a.parse().ok()?, size - 1),
        (a, b) => (a.parse().ok()?, b.parse::<u64>().ok()?.min(size - 1)),
    };
    (start <= end && start < size).then_some((start, end))
}

/// A stored manifest's media type: its `mediaType`, else what its shape says.
fn media_type_of(bytes: &[u8]) -> String {
    let doc: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
    doc.get("mediaType")
        .and_then(|m| m.as_str())
        .map(String::from)
        .unwrap_or_else(|| {
            if doc.get("manifests").is_some() {
                crate::image::MEDIA_OCI_INDEX.to_string()
            } else {
                crate::image::MEDIA_OCI_MANIFEST.to_string()
            }
        })
}

/// Opens a registry at `opts.root` and serves it on `addr` until the listener fails.
pub fn run(
    opts: &ServeOptions,
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> crate::Result<()> {
    let r = Registry::open(opts)?;
    r.serve(listener, tls)
        .map_err(|e| crate::Error::io("serve the registry", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_split_at_the_last_keyword() {
        assert_eq!(
            split_route("a/b/manifests/latest"),
            Some(("a/b", "manifests", "latest"))
        );
        assert_eq!(
            split_route("blobs/x/blobs/sha256:ab"),
            Some(("blobs/x", "blobs", "sha256:ab"))
        );
        assert_eq!(
            split_route("me/app/blobs/uploads/"),
            Some(("me/app", "uploads", ""))
        );
        assert_eq!(
            split_route("me/app/blobs/uploads/abc"),
            Some(("me/app", "uploads", "abc"))
        );
        assert_eq!(
            split_route("me/app/tags/list"),
            Some(("me/app", "tags", "list"))
        );
        assert_eq!(split_route("me/app"), None);
    }

    #[test]
    fn ranges_as_http_writes_them() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=50-500", 100), Some((50, 99)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=5-1", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
    }
}
