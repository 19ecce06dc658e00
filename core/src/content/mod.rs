//! Digest-addressed blob store.
//!
//! Blobs live at `blobs/sha256/<hex>` and are immutable. A [`Writer`] streams into an
//! anonymous file (`O_TMPFILE`) in `ingest/`, hashing as it goes; [`Writer::commit`] checks
//! size and digest against what the caller expected and only then links the file under its
//! digest. An interrupted write therefore leaves nothing behind: the kernel frees the
//! anonymous file when its process dies. On file systems without `O_TMPFILE`, a named temp file
//! held under an exclusive `flock` is used, and [`ContentStore::open`] removes those whose
//! writer is gone.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsFd;
use std::path::{Path, PathBuf};

use crate::digest::{Digest, Hasher};
use crate::error::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("blob {digest} not found")]
    NotFound { digest: Digest },
    #[error("blob digest mismatch: expected {expected}, content is {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("blob {digest}: size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("blob {digest} is {size} bytes, more than the {limit} allowed here")]
    TooLarge {
        digest: Digest,
        size: u64,
        limit: u64,
    },
    #[error("content store {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

crate::error::from_module_error!(ContentError);

impl ContentError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ContentError::NotFound { .. } => ErrorKind::NotFound,
            ContentError::DigestMismatch { .. }
            | ContentError::SizeMismatch { .. }
            | ContentError::TooLarge { .. } => ErrorKind::InvalidArgument,
            ContentError::Io { source, .. } => crate::error::io_kind(source),
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ContentError + '_ {
    move |source| ContentError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone)]
pub struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
}

impl ContentStore {
    /// Opens the store under `root` (creating `blobs/sha256` and `ingest`) and removes the
    /// temp files of writers that are gone.
    pub fn open(root: &Path) -> Result<ContentStore, ContentError> {
        let blobs = root.join("blobs").join("sha256");
        let ingest = root.join("ingest");
        for d in [&blobs, &ingest] {
            fs::create_dir_all(d).map_err(io_err(d))?;
        }
        let store = ContentStore { blobs, ingest };
        store.clean_ingest()?;
        Ok(store)
    }

    fn clean_ingest(&self) -> Result<(), ContentError> {
        let entries = fs::read_dir(&self.ingest).map_err(io_err(&self.ingest))?;
        for entry in entries {
            let path = entry.map_err(io_err(&self.ingest))?.path();
            let Ok(file) = File::open(&path) else {
                continue;
            };
            // A live writer holds an exclusive lock; if we get one, the writer is gone.
            if rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
                .is_ok()
            {
                let _ = fs::remove_file(&path);
            }
        }
        Ok(())
    }

    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    /// Size of a stored blob.
    pub fn size(&self, digest: &Digest) -> Result<u64, ContentError> {
        let path = self.path(digest);
        match fs::metadata(&path) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ContentError::NotFound {
                digest: digest.clone(),
            }),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    pub fn contains(&self, digest: &Digest) -> bool {
        self.path(digest).exists()
    }

    pub fn open_blob(&self, digest: &Digest) -> Result<File, ContentError> {
        let path = self.path(digest);
        File::open(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                ContentError::NotFound {
                    digest: digest.clone(),
                }
            } else {
                io_err(&path)(e)
            }
        })
    }

    /// Reads a whole (small) blob, checking its digest, refusing blobs larger than `limit`.
    pub fn read(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>, ContentError> {
        let size = self.size(digest)?;
        if size > limit {
            return Err(ContentError::TooLarge {
                digest: digest.clone(),
                size,
                limit,
            });
        }
        let path = self.path(digest);
        let bytes = fs::read(&path).map_err(io_err(&path))?;
        let actual = Digest::of(&bytes);
        if &actual != digest {
            return Err(ContentError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Stores `bytes`, checking them against `expected` if given.
    pub fn write_all(
        &self,
        bytes: &[u8],
        expected: Option<&Digest>,
    ) -> Result<Digest, ContentError> {
        let mut w = self.writer()?;
        w.write_all(bytes).map_err(io_err(&self.ingest))?;
        w.commit(Some(bytes.len() as u64), expected)
    }

    /// Starts a new write.
    pub fn writer(&self) -> Result<Writer, ContentError> {
        let (file, temp) = match OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC)
            .mode(0o600)
            .open(&self.ingest)
        {
            Ok(f) => (f, None),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EOPNOTSUPP) | Some(libc::EISDIR) | Some(libc::EINVAL)
                ) =>
            {
                let path = self
                    .ingest
                    .join(format!("write-{}", crate::util::random_hex(8)));
                let f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(io_err(&path))?;
                rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
                    .map_err(|e| io_err(&path)(e.into()))?;
                (f, Some(path))
            }
            Err(e) => return Err(io_err(&self.ingest)(e)),
        };
        Ok(Writer {
            file: io::BufWriter::with_capacity(1 << 20, file),
            temp,
            hasher: Hasher::new(),
            blobs: self.blobs.clone(),
        })
    }

    /// Takes a file written elsewhere on the store's file system (a registry upload) as a
    /// blob: hashes it, checks it against `expected`, and moves it under its digest. On a
    /// mismatch the file is left where it was.
    pub fn adopt(&self, file: &Path, expected: &Digest) -> Result<u64, ContentError> {
        let mut f = File::open(file).map_err(io_err(file))?;
        let mut hasher = Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err(file)(e)),
            };
            hasher.update(&buf[..n]);
        }
        let size = hasher.len();
        let actual = hasher.finish();
        if &actual != expected {
            return Err(ContentError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        let target = self.path(expected);
        if target.exists() {
            let _ = fs::remove_file(file);
            return Ok(size);
        }
        f.sync_data().map_err(io_err(file))?;
        fs::set_permissions(file, fs::Permissions::from_mode(0o444)).map_err(io_err(file))?;
        fs::rename(file, &target).map_err(io_err(&target))?;
        Ok(size)
    }

    /// Removes a blob. Removing one that is not there is not an error.
    pub fn delete(&self, digest: &Digest) -> Result<(), ContentError> {
        let path = self.path(digest);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Every stored blob. Files that are not named by a digest are skipped.
    pub fn list(&self) -> Result<Vec<Digest>, ContentError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.blobs).map_err(io_err(&self.blobs))? {
            let entry = entry.map_err(io_err(&self.blobs))?;
            if let Some(d) = entry
                .file_name()
                .to_str()
                .and_then(|n| Digest::from_hex(n).ok())
            {
                out.push(d);
            }
        }
        Ok(out)
    }
}

/// An open write into the store. Dropping it without [`Writer::commit`] discards the data.
pub struct Writer {
    file: io::BufWriter<File>,
    temp: Option<PathBuf>,
    hasher: Hasher,
    blobs: PathBuf,
}

impl Write for Writer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Writer {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.hasher.len()
    }

    /// Digest of what was written so far.
    pub fn digest(&self) -> Digest {
        self.hasher.clone().finish()
    }

    /// Checks the written data against `expected_size` and `expected` digest (each if given)
    /// and makes it visible under its digest. On a mismatch nothing is stored.
    pub fn commit(
        mut self,
        expected_size: Option<u64>,
        expected: Option<&Digest>,
    ) -> Result<Digest, ContentError> {
        let size = self.hasher.len();
        let actual = std::mem::take(&mut self.hasher).finish();
        if let Some(exp) = expected
            && exp != &actual
        {
            return Err(ContentError::DigestMismatch {
                expected: exp.clone(),
                actual,
            });
        }
        if let Some(exp) = expected_size
            && exp != size
        {
            return Err(ContentError::SizeMismatch {
                digest: actual,
                expected: exp,
                actual: size,
            });
        }
        let target = self.blobs.join(actual.hex());
        if target.exists() {
            return Ok(actual);
        }
        let ingest = self.blobs.clone();
        self.file.flush().map_err(io_err(&ingest))?;
        let file = self.file.get_ref();
        file.sync_data().map_err(io_err(&ingest))?;
        file.set_permissions(fs::Permissions::from_mode(0o444))
            .map_err(io_err(&ingest))?;
        let res = match &self.temp {
            None => rustix::fs::linkat(
                rustix::fs::CWD,
                format!(
                    "/proc/self/fd/{}",
                    rustix::fd::AsRawFd::as_raw_fd(&file.as_fd())
                ),
                rustix::fs::CWD,
                &target,
                rustix::fs::AtFlags::SYMLINK_FOLLOW,
            )
            .map_err(io::Error::from),
            Some(temp) => fs::rename(temp, &target).map(|()| self.temp = None),
        };
        match res {
            Ok(()) => {}
            // Another writer committed the same content first.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(&target)(e)),
        }
        Ok(actual)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some(temp) = &self.temp {
            let _ = fs::remove_file(temp);
        }
    }
}

/// Copies `reader` into a new blob and commits it, checking it against `expected`.
pub fn ingest(
    store: &ContentStore,
    reader: &mut dyn Read,
    expected_size: Option<u64>,
    expected: Option<&Digest>,
) -> Result<Digest, ContentError> {
    let mut w = store.writer()?;
    crate::util::copy(reader, &mut w).map_err(|e| ContentError::Io {
        path: store.ingest.clone(),
        source: e,
    })?;
    w.commit(expected_size, expected)
}

#[cfg(test)]
mod tests;
