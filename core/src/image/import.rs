//! `import`: a root file-system tarball becomes a one-layer image.

use std::io::{self, Read, Write};

use oci_spec::image as oci;
use rusqlite::params;

use super::Images;
use super::lease::{Lease, Resource};
use super::{ImageError, MEDIA_OCI_MANIFEST};
use crate::digest::Digest;
use crate::reference::Reference;

#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// `REPO[:TAG]` to tag the image with.
    pub reference: Option<String>,
    /// Dockerfile instructions applied to the config (`CMD ["sh"]`, `ENV A=b` ...).
    pub changes: Vec<String>,
    /// History comment; default `Imported from <source>`.
    pub message: Option<String>,
    /// Where the tarball came from, for the default comment (`-` for stdin).
    pub source: String,
}

/// Everything read through it is also written to the blob being stored.
pub(crate) struct Tee<'a> {
    pub(crate) inner: &'a mut (dyn Read + Send),
    pub(crate) copy: &'a mut crate::content::Writer,
}

impl Read for Tee<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// The arguments of a Dockerfile instruction in JSON form (`["a", "b"]`), else as a shell
/// command line (`sh -c "..."`), as `CMD` and `ENTRYPOINT` take them.
fn exec_form(args: &str) -> Vec<String> {
    let t = args.trim();
    if t.starts_with('[')
        && let Ok(v) = serde_json::from_str::<Vec<String>>(t)
    {
        return v;
    }
    vec!["/bin/sh".into(), "-c".into(), t.to_string()]
}

/// `k=v k2="v 2"` pairs, or the legacy `k v` form.
/// The first word of `s` as Docker's instruction parser splits words: quotes and
/// backslash escapes keep blanks in it.
fn first_word(s: &str) -> &str {
    let mut quote = None;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            _ if escaped => escaped = false,
            (_, '\\') => escaped = true,
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => return &s[..i],
            _ => {}
        }
    }
    s
}

fn pairs(args: &str, change: &str) -> Result<Vec<(String, String)>, ImageError> {
    let bad = |reason: &str| ImageError::BadChange {
        change: change.to_string(),
        reason: reason.to_string(),
    };
    let t = args.trim();
    // The old form, `KEY value with spaces`, as Docker tells it: no `=` in the first word,
    // a word running to the first blank outside quotes and not escaped.
    if !first_word(t).contains('=') {
        let (k, v) = t
            .split_once(char::is_whitespace)
            .ok_or_else(|| bad("expected KEY=VALUE"))?;
        return Ok(vec![(k.to_string(), v.trim().to_string())]);
    }
    let mut out = Vec::new();
    let mut chars = t.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        while let Some(&c) = chars.peek() {
            chars.next();
            match (quote, c) {
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (None, c) if c.is_whitespace() => break,
                (_, '\\') => {
                    if let Some(n) = chars.next() {
                        word.push(n);
                    }
                }
                (_, c) => word.push(c),
            }
        }
        if quote.is_some() {
            return Err(bad("unterminated quote"));
        }
        let (k, v) = word
            .split_once('=')
            .ok_or_else(|| bad("expected KEY=VALUE"))?;
        if k.is_empty() {
            return Err(bad("empty key"));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// Applies `--change` instructions to a container config.
pub(crate) fn apply_changes(changes: &[String]) -> Result<oci::Config, ImageError> {
    let mut cfg = oci::Config::default();
    for change in changes {
        let bad = |reason: &str| ImageError::BadChange {
            change: change.clone(),
            reason: reason.to_string(),
        };
        let t = change.trim();
        let (word, args) = t.split_once(char::is_whitespace).unwrap_or((t, ""));
        let args = args.trim();
        if args.is_empty() {
            return Err(bad("missing arguments"));
        }
        match word.to_ascii_uppercase().as_str() {
            "CMD" => {
                cfg.set_cmd(Some(exec_form(args)));
            }
            "ENTRYPOINT" => {
                cfg.set_entrypoint(Some(exec_form(args)));
            }
            "ENV" => {
                let mut env = cfg.env().clone().unwrap_or_default();
                for (k, v) in pairs(args, change)? {
                    env.retain(|e| e.split_once('=').map(|(ek, _)| ek) != Some(k.as_str()));
                    env.push(format!("{k}={v}"));
                }
                cfg.set_env(Some(env));
            }
            "LABEL" => {
                let mut labels = cfg.labels().clone().unwrap_or_default();
                for (k, v) in pairs(args, change)? {
                    labels.insert(k, v);
                }
                cfg.set_labels(Some(labels));
            }
            "EXPOSE" => {
                let mut ports = cfg.exposed_ports().clone().unwrap_or_default();
                for p in args.split_whitespace() {
                    let (num, proto) = p.split_once('/').unwrap_or((p, "tcp"));
                    if num.parse::<u16>().is_err() || !matches!(proto, "tcp" | "udp" | "sctp") {
                        return Err(bad("expected PORT[/PROTO]"));
                    }
                    let p = format!("{num}/{proto}");
                    if !ports.contains(&p) {
                        ports.push(p);
                    }
                }
                cfg.set_exposed_ports(Some(ports));
            }
            "VOLUME" => {
                let mut vols = cfg.volumes().clone().unwrap_or_default();
                let list = if args.starts_with('[') {
                    serde_json::from_str::<Vec<String>>(args).map_err(|_| bad("bad JSON array"))?
                } else {
                    args.split_whitespace().map(str::to_string).collect()
                };
                for v in list {
                    if !vols.contains(&v) {
                        vols.push(v);
                    }
                }
                cfg.set_volumes(Some(vols));
            }
            "USER" => {
                cfg.set_user(Some(args.to_string()));
            }
            "WORKDIR" => {
                if !args.starts_with('/') {
                    return Err(bad("WORKDIR must be an absolute path"));
                }
                cfg.set_working_dir(Some(args.to_string()));
            }
            "STOPSIGNAL" => {
                cfg.set_stop_signal(Some(args.to_string()));
            }
            _ => {
                return Err(bad(
                    "unknown or unsupported instruction (use CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR)",
                ));
            }
        }
    }
    Ok(cfg)
}

pub(crate) fn host_platform() -> (oci::Arch, oci::Os) {
    (oci::Arch::default(), oci::Os::default())
}

impl Images<'_> {
    /// Imports a root file-system tarball (plain, gzip or zstd) as a one-layer image.
    /// Returns the image ID.
    pub fn import(
        &self,
        input: &mut (dyn Read + Send),
        opts: &ImportOptions,
    ) -> crate::Result<Digest> {
        // Refuse bad arguments before reading anything.
        let reference = opts
            .reference
            .as_deref()
            .map(|r| Reference::parse(r).map(Reference::with_default_tag))
            .transpose()?;
        let container_config = apply_changes(&opts.changes)?;
        let lease = Lease::new(&self.st.db)?;
        let res = self.import_leased(&lease, input, opts, reference.as_ref(), container_config);
        let released = self.release(lease);
        let id = res?;
        released?;
        self.event("import", &id.to_string(), &[]);
        Ok(id)
    }

    fn import_leased(
        &self,
        lease: &Lease,
        input: &mut (dyn Read + Send),
        opts: &ImportOptions,
        reference: Option<&Reference>,
        container_config: oci::Config,
    ) -> crate::Result<Digest> {
        let mut blob = self.st.content.writer()?;
        let (chain, applied) = {
            let mut tee = Tee {
                inner: input,
                copy: &mut blob,
            };
            let r = self.unpack_layer(lease, None, &mut tee, |_| Ok(()))?;
            // Bytes past the end of the compressed stream still belong to the blob.
            io::copy(&mut tee, &mut io::sink())
                .map_err(|e| crate::Error::io("read import source", e))?;
            r
        };
        let blob_size = blob.written();
        let blob_digest = blob.digest();
        lease.add(&self.st.db, Resource::Blob(blob_digest.clone()))?;
        blob.commit(None, None)?;

        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let comment = opts
            .message
            .clone()
            .unwrap_or_else(|| format!("Imported from {}", opts.source));
        let history = oci::HistoryBuilder::default()
            .created(now.clone())
            .created_by(String::new())
            .comment(comment)
            .build()
            .map_err(|e| super::malformed("image config", e))?;
        let rootfs = oci::RootFsBuilder::default()
            .typ("layers")
            .diff_ids(vec![applied.diff_id.to_string()])
            .build()
            .map_err(|e| super::malformed("image config", e))?;
        let (arch, os) = host_platform();
        let config = oci::ImageConfigurationBuilder::default()
            .created(now.clone())
            .architecture(arch)
            .os(os)
            .config(container_config)
            .rootfs(rootfs)
            .history(vec![history])
            .build()
            .map_err(|e| super::malformed("image config", e))?;
        let config_bytes =
            serde_json::to_vec(&config).map_err(|e| super::malformed("image config", e))?;
        let id = Digest::of(&config_bytes);
        lease.add(&self.st.db, Resource::Blob(id.clone()))?;
        self.st.content.write_all(&config_bytes, Some(&id))?;

        let layer = oci::Descriptor::new(
            oci::MediaType::Other(applied.compression.oci_layer_media_type().to_string()),
            blob_size,
            oci_digest(&blob_digest),
        );
        let manifest = oci::ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(oci::MediaType::ImageManifest)
            .config(oci::Descriptor::new(
                oci::MediaType::ImageConfig,
                config_bytes.len() as u64,
                oci_digest(&id),
            ))
            .layers(vec![layer])
            .build()
            .map_err(|e| super::malformed("manifest", e))?;
        let manifest_bytes =
            serde_json::to_vec(&manifest).map_err(|e| super::malformed("manifest", e))?;
        let manifest_digest = Digest::of(&manifest_bytes);
        lease.add(&self.st.db, Resource::Blob(manifest_digest.clone()))?;
        self.st
            .content
            .write_all(&manifest_bytes, Some(&manifest_digest))?;

        self.commit_images(&[NewImage {
            id: id.clone(),
            manifest_digest,
            manifest_media_type: MEDIA_OCI_MANIFEST.to_string(),
            created: Some(now),
            layers: vec![(blob_digest, chain)],
            tags: reference.into_iter().cloned().collect(),
            repo_digests: Vec::new(),
            parent: None,
        }])?;
        Ok(id)
    }

    /// Records new images, their layers and tags in one transaction.
    pub(crate) fn commit_images(&self, images: &[NewImage]) -> crate::Result<()> {
        let added = crate::db::now();
        self.st.db.write(|tx| {
            for img in images {
                let mut size = 0i64;
                for (_, chain) in &img.layers {
                    size += tx.query_row("SELECT size FROM layers WHERE chain_id = ?1", params![chain.to_string()], |r| r.get::<_, i64>(0))?;
                }
                let inserted = tx.execute(
                    "INSERT OR IGNORE INTO images (id, manifest_digest, manifest_media_type, created, size, added, parent)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![img.id.to_string(), img.manifest_digest.to_string(), img.manifest_media_type, img.created, size, added,
                            img.parent.as_ref().map(|p| p.to_string())],
                )?;
                if inserted > 0 {
                    for (pos, (blob, chain)) in img.layers.iter().enumerate() {
                        tx.execute(
                            "INSERT INTO image_layers (image_id, position, blob_digest, chain_id) VALUES (?1, ?2, ?3, ?4)",
                            params![img.id.to_string(), pos as i64, blob.to_string(), chain.to_string()],
                        )?;
                    }
                }
                for t in &img.tags {
                    super::set_tag(tx, t, &img.id)?;
                }
                for (name, digest) in &img.repo_digests {
                    // A digest names one image: pulled again, it points at what it names now.
                    tx.execute(
                        "INSERT INTO repo_digests (name, digest, image_id) VALUES (?1, ?2, ?3)
                         ON CONFLICT(name, digest) DO UPDATE SET image_id = excluded.image_id",
                        params![name, digest.to_string(), img.id.to_string()],
                    )?;
                }
            }
            Ok::<_, crate::Error>(())
        })
    }
}

/// An image ready to be recorded.
pub(crate) struct NewImage {
    pub id: Digest,
    pub manifest_digest: Digest,
    pub manifest_media_type: String,
    pub created: Option<String>,
    /// (blob digest, chain ID), base first.
    pub layers: Vec<(Digest, Digest)>,
    pub tags: Vec<Reference>,
    /// What it was pulled by: (repository name, manifest or index digest).
    pub repo_digests: Vec<(String, Digest)>,
    /// The image a build step made it from.
    pub parent: Option<Digest>,
}

pub(crate) fn oci_digest(d: &Digest) -> oci::Digest {
    d.to_string()
        .parse()
        .expect("a valid sha256 digest is a valid OCI digest")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(changes: &[&str]) -> serde_json::Value {
        let changes: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
        serde_json::to_value(apply_changes(&changes).unwrap()).unwrap()
    }

    fn refused(change: &str) -> String {
        let e = apply_changes(&[change.to_string()]).unwrap_err();
        assert!(matches!(e, ImageError::BadChange { .. }), "{e}");
        e.to_string()
    }

    #[test]
    fn commands_take_the_exec_or_the_shell_form() {
        let c = cfg(&[r#"CMD ["echo", "a b"]"#, "entrypoint  run  me "]);
        assert_eq!(c["Cmd"], serde_json::json!(["echo", "a b"]));
        assert_eq!(
            c["Entrypoint"],
            serde_json::json!(["/bin/sh", "-c", "run  me"])
        );
        // Not a JSON array of strings: the shell form, as Docker reads it.
        assert_eq!(
            cfg(&["CMD [1, 2]"])["Cmd"],
            serde_json::json!(["/bin/sh", "-c", "[1, 2]"])
        );
        assert_eq!(
            cfg(&["CMD [\"a\""])["Cmd"],
            serde_json::json!(["/bin/sh", "-c", "[\"a\""])
        );
        // The last one wins.
        assert_eq!(cfg(&["CMD a", "CMD b"])["Cmd"][2], "b");
    }

    #[test]
    fn env_and_labels_take_pairs_quotes_and_the_old_form() {
        let c = cfg(&[
            r#"ENV A=1 B="two words" C='x y' D=a\ b E="q\"q" F="""#,
            "ENV G  spaced value ",
            "ENV A=again",
            r#"LABEL k=v "x.y"=z"#,
            "LABEL k=w",
        ]);
        assert_eq!(
            c["Env"],
            serde_json::json!([
                "B=two words",
                "C=x y",
                "D=a b",
                "E=q\"q",
                "F=",
                "G=spaced value",
                "A=again"
            ])
        );
        assert_eq!(c["Labels"], serde_json::json!({"k": "w", "x.y": "z"}));
        // `=` inside the value of the old form is the value's.
        assert_eq!(cfg(&["ENV K V=1"])["Env"], serde_json::json!(["K=V=1"]));
        // A quoted or escaped blank is inside the first word: the new form.
        assert_eq!(
            cfg(&[r#"LABEL "my key"=v 'b c'=d"#])["Labels"],
            serde_json::json!({"my key": "v", "b c": "d"})
        );
        assert_eq!(cfg(&[r"ENV A\ B=1"])["Env"], serde_json::json!(["A B=1"]));
        assert_eq!(first_word(r#"a"b c"d e"#), r#"a"b c"d"#);
        assert_eq!(first_word(r"a\ b c"), r"a\ b");
        assert_eq!(first_word("solo"), "solo");

        let e = refused("ENV A=\"open");
        assert_eq!(e, "invalid --change \"ENV A=\\\"open\": unterminated quote");
        assert!(refused("ENV lonely").ends_with("expected KEY=VALUE"));
        assert!(refused("ENV A=1 B").ends_with("expected KEY=VALUE"));
        assert!(refused("LABEL =v").ends_with("empty key"));
    }

    #[test]
    fn ports_volumes_and_the_rest() {
        let c = cfg(&[
            "EXPOSE 80 53/udp 80/tcp",
            "EXPOSE 132/sctp 80",
            r#"VOLUME ["/a", "/b"]"#,
            "VOLUME /b /c",
            "USER app:app",
            "WORKDIR /srv",
            "STOPSIGNAL SIGINT",
        ]);
        assert_eq!(
            c["ExposedPorts"],
            serde_json::json!({"80/tcp": {}, "53/udp": {}, "132/sctp": {}})
        );
        assert_eq!(
            c["Volumes"],
            serde_json::json!({"/a": {}, "/b": {}, "/c": {}})
        );
        assert_eq!(c["User"], "app:app");
        assert_eq!(c["WorkingDir"], "/srv");
        assert_eq!(c["StopSignal"], "SIGINT");

        for (change, reason) in [
            ("EXPOSE http", "expected PORT[/PROTO]"),
            ("EXPOSE 70000", "expected PORT[/PROTO]"),
            ("EXPOSE 80/icmp", "expected PORT[/PROTO]"),
            ("VOLUME [\"/a\"", "bad JSON array"),
            ("WORKDIR srv", "WORKDIR must be an absolute path"),
            ("CMD", "missing arguments"),
            ("ENV   ", "missing arguments"),
            ("RUN make", "unknown or unsupported instruction"),
        ] {
            let e = refused(change);
            assert!(e.contains(reason), "{change}: {e}");
        }
        assert!(apply_changes(&[]).unwrap() == oci::Config::default());
    }
}
