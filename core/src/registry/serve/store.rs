//! The registry's storage: blobs in a content store (shared code with the engine's), and
//! per repository the links that say what it holds, as distribution lays them out:
//!
//! ```text
//! ROOT/blobs/sha256/<hex>                          every blob, once
//! ROOT/repositories/<name>/_layers/<hex>           a blob the repository holds
//! ROOT/repositories/<name>/_manifests/revisions/<hex>   a manifest it holds
//! ROOT/repositories/<name>/_manifests/tags/<tag>   the digest a tag points at
//! ROOT/uploads/<uuid>, <uuid>.repo                 an upload in progress, and its repository
//! ```
//!
//! Every change is a file created or renamed whole, so pushes to one repository at once
//! are safe: blobs are named by their content, a tag is one rename (the last push wins).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::content::{ContentError, ContentStore};
use crate::digest::Digest;

pub(crate) struct Store {
    root: PathBuf,
    pub content: ContentStore,
}

/// Whether `name` is a repository name (`a/b-c/d.e`): lowercase path components of the
/// reference grammar, so it is also a safe relative path.
pub(crate) fn valid_repo(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name.split('/').all(|c| {
            !c.is_empty()
                && c.bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && c.bytes()
                    .last()
                    .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && c.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
                })
                && !c.contains("..")
        })
}

/// Whether `tag` is a tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub(crate) fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().expect("a file under the root");
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".tmp-{}", crate::util::random_hex(8)));
    let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
    f.write_all(bytes)?;
    drop(f);
    fs::rename(&tmp, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

impl Store {
    pub fn open(root: &Path) -> Result<Store, ContentError> {
        let content = ContentStore::open(root)?;
        for d in ["repositories", "uploads"] {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(|e| ContentError::Io { path: p, source: e })?;
        }
        let store = Store {
            root: root.to_path_buf(),
            content,
        };
        store.purge_uploads(std::time::Duration::from_secs(24 * 3600));
        Ok(store)
    }

    /// Removes uploads untouched for `age` (their clients are gone), as distribution's
    /// upload purging does.
    pub fn purge_uploads(&self, age: std::time::Duration) {
        let Ok(rd) = fs::read_dir(self.root.join("uploads")) else {
            return;
        };
        for e in rd.flatten() {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|a| a > age);
            let name = e.file_name().to_string_lossy().into_owned();
            if old && !name.ends_with(".repo") {
                self.cancel_upload(&name);
            }
        }
    }

    fn repo(&self, name: &str) -> PathBuf {
        self.root.join("repositories").join(name)
    }

    pub fn repo_exists(&self, name: &str) -> bool {
        self.repo(name).join("_manifests").is_dir() || self.repo(name).join("_layers").is_dir()
    }

    fn layer_link(&self, name: &str, d: &Digest) -> PathBuf {
        self.repo(name).join("_layers").join(d.hex())
    }

    fn revision_link(&self, name: &str, d: &Digest) -> PathBuf {
        self.repo(name)
            .join("_manifests")
            .join("revisions")
            .join(d.hex())
    }

    fn tag_file(&self, name: &str, tag: &str) -> PathBuf {
        self.repo(name).join("_manifests").join("tags").join(tag)
    }

    /// Whether the repository holds the blob (and the store has it).
    pub fn has_blob(&self, name: &str, d: &Digest) -> bool {
        self.layer_link(name, d).exists() && self.content.contains(d)
    }

    pub fn link_blob(&self, name: &str, d: &Digest) -> io::Result<()> {
        write_atomic(&self.layer_link(name, d), b"")
    }

    pub fn unlink_blob(&self, name: &str, d: &Digest) -> io::Result<bool> {
        match fs::remove_file(self.layer_link(name, d)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub fn has_manifest(&self, name: &str, d: &Digest) -> bool {
        self.revision_link(name, d).exists() && self.content.contains(d)
    }

    /// Stores a manifest in the repository, and points `tag` at it.
    pub fn put_manifest(
        &self,
        name: &str,
        bytes: &[u8],
        d: &Digest,
        tag: Option<&str>,
    ) -> Result<(), ContentError> {
        self.content.write_all(bytes, Some(d))?;
        let io = |p: PathBuf| move |e| ContentError::Io { path: p, source: e };
        let link = self.revision_link(name, d);
        write_atomic(&link, b"").map_err(io(link.clone()))?;
        if let Some(t) = tag {
            let f = self.tag_file(name, t);
            write_atomic(&f, d.to_string().as_bytes()).map_err(io(f.clone()))?;
        }
        Ok(())
    }

    /// The digest a tag points at.
    pub fn tag(&self, name: &str, tag: &str) -> Option<Digest> {
        fs::read_to_string(self.tag_file(name, tag))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    pub fn tags(&self, name: &str) -> Vec<String> {
        let mut out: Vec<String> = fs::read_dir(self.repo(name).join("_manifests").join("tags"))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| valid_tag(n))
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    /// Removes a manifest from the repository, and the tags that point at it.
    pub fn delete_manifest(&self, name: &str, d: &Digest) -> io::Result<bool> {
        let found = match fs::remove_file(self.revision_link(name, d)) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(e),
        };
        for t in self.tags(name) {
            if self.tag(name, &t).as_ref() == Some(d) {
                let _ = fs::remove_file(self.tag_file(name, &t));
            }
        }
        Ok(found)
    }

    /// Every repository with a manifest, sorted.
    pub fn catalog(&self) -> Vec<String> {
        let mut out = Vec::new();
        let base = self.root.join("repositories");
        let mut stack = vec![base.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(rd) = fs::read_dir(&dir) else { continue };
            for e in rd.flatten() {
                let p = e.path();
                let n = e.file_name();
                if n == "_manifests" {
                    if let Ok(rel) = dir.strip_prefix(&base) {
                        out.push(rel.to_string_lossy().into_owned());
                    }
                } else if !n.to_string_lossy().starts_with('_') && p.is_dir() {
                    stack.push(p);
                }
            }
        }
        out.sort();
        out
    }

    fn upload_path(&self, uuid: &str) -> PathBuf {
        self.root.join("uploads").join(uuid)
    }

    /// Starts an upload into `name`; its ID.
    pub fn start_upload(&self, name: &str) -> io::Result<String> {
        let uuid = crate::util::random_hex(16);
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(self.upload_path(&uuid))?;
        write_atomic(
            &self.root.join("uploads").join(format!("{uuid}.repo")),
            name.as_bytes(),
        )?;
        Ok(uuid)
    }

    /// The repository an upload belongs to and its size so far; `None`: no such upload.
    pub fn upload(&self, uuid: &str) -> Option<(String, u64)> {
        if uuid.len() != 32 || !uuid.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let repo =
            fs::read_to_string(self.root.join("uploads").join(format!("{uuid}.repo"))).ok()?;
        let size = fs::metadata(self.upload_path(uuid)).ok()?.len();
        Some((repo, size))
    }

    /// Appends `body` to an upload; its new size.
    pub fn append(&self, uuid: &str, body: &mut dyn Read) -> io::Result<u64> {
        let mut f = OpenOptions::new()
            .append(true)
            .open(self.upload_path(uuid))?;
        io::copy(body, &mut f)?;
        f.flush()?;
        Ok(f.metadata()?.len())
    }

    /// Ends an upload: its bytes become the blob `d` of its repository, if they are it.
    pub fn finish_upload(&self, uuid: &str, name: &str, d: &Digest) -> Result<u64, ContentError> {
        let size = self.content.adopt(&self.upload_path(uuid), d)?;
        self.cancel_upload(uuid);
        self.link_blob(name, d).map_err(|e| ContentError::Io {
            path: self.layer_link(name, d),
            source: e,
        })?;
        Ok(size)
    }

    pub fn cancel_upload(&self, uuid: &str) {
        let _ = fs::remove_file(self.upload_path(uuid));
        let _ = fs::remove_file(self.root.join("uploads").join(format!("{uuid}.repo")));
    }

    pub fn open_blob(&self, d: &Digest) -> Result<File, ContentError> {
        self.content.open_blob(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_tags_are_checked_before_they_are_paths() {
        for ok in ["a", "library/busybox", "a-b/c_d/e.f", "x0/y9"] {
            assert!(valid_repo(ok), "{ok}");
        }
        for bad in [
            "", "A", "../x", "a/../b", "a//b", "/a", "a/", "a/.b", "a/b.", "a..b",
        ] {
            assert!(!valid_repo(bad), "{bad}");
        }
        assert!(valid_tag("latest") && valid_tag("1.2.3-rc_1") && valid_tag("_x"));
        assert!(
            !valid_tag("") && !valid_tag(".x") && !valid_tag("a/b") && !valid_tag(&"a".repeat(129))
        );
    }

    #[test]
    fn uploads_become_blobs_only_when_they_match() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let u = s.start_upload("me/app").unwrap();
        s.append(&u, &mut &b"hello "[..]).unwrap();
        assert_eq!(s.append(&u, &mut &b"world"[..]).unwrap(), 11);
        assert_eq!(s.upload(&u), Some(("me/app".to_string(), 11)));
        let wrong = Digest::of(b"other");
        assert!(s.finish_upload(&u, "me/app", &wrong).is_err());
        assert!(!s.content.contains(&wrong));
        let right = Digest::of(b"hello world");
        s.finish_upload(&u, "me/app", &right).unwrap();
        assert!(s.has_blob("me/app", &right));
        assert!(!s.has_blob("other/app", &right));
        assert_eq!(s.upload(&u), None);
        assert_eq!(s.upload("../../etc/passwd"), None);
        s.put_manifest("me/app", b"{}", &Digest::of(b"{}"), Some("v1"))
            .unwrap();
        assert_eq!(s.tags("me/app"), vec!["v1"]);
        assert_eq!(s.catalog(), vec!["me/app"]);
        assert!(s.delete_manifest("me/app", &Digest::of(b"{}")).unwrap());
        assert!(s.tags("me/app").is_empty());
        // An upload left behind goes once it is old enough.
        let left = s.start_upload("me/app").unwrap();
        s.purge_uploads(std::time::Duration::from_secs(3600));
        assert!(s.upload(&left).is_some());
        s.purge_uploads(std::time::Duration::ZERO);
        assert!(s.upload(&left).is_none());
        assert_eq!(fs::read_dir(dir.path().join("uploads")).unwrap().count(), 0);
    }
}
