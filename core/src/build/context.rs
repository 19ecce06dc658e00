//! Where COPY and ADD read from: the build context (a directory, or a tar unpacked into one)
//! or the file system of a stage or an image.
//!
//! Every path a Dockerfile names is hostile. A source in the context is opened with
//! `RESOLVE_BENEATH`: symlinks on the way are followed only while they stay inside, and a
//! path that leads out (`../x`, a link to `/etc`) is refused by name. A source in an image
//! resolves as the image would see it (`RESOLVE_IN_ROOT`). Below a source directory nothing
//! is followed: each entry is opened with `O_NOFOLLOW` in its already open parent, and a
//! symlink is copied as a symlink.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use sha2::Digest as _;

use super::BuildError;
use super::ignore::{Glob, Ignore};
use crate::fsutil::at;

/// How names in a root resolve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resolve {
    /// The build context: nothing outside it, and saying so.
    Beneath,
    /// An image's file system: as if the root were `/`.
    InRoot,
}

/// A tree COPY reads: an open directory, how names resolve in it, what it leaves out.
pub(crate) struct Source {
    pub root: OwnedFd,
    pub resolve: Resolve,
    pub ignore: Ignore,
    /// What the sources are called in errors: "build context", "stage x".
    pub what: String,
}

/// One file system object to copy, found by a source pattern.
pub(crate) struct Found {
    /// Its path in the source's root, `/`-separated, no leading `/`.
    pub path: String,
    pub fd: OwnedFd,
    pub meta: at::Meta,
}

/// The options of a COPY that shape the tar it makes.
#[derive(Debug, Clone, Default)]
pub(crate) struct TarOptions {
    /// `--chown`: owner of every entry; else root.
    pub owner: Option<(u32, u32)>,
    /// `--chmod`: permission bits of every entry.
    pub mode: Option<u32>,
    /// Keep modification times (off for the cache key: content, not mtime).
    pub mtime: bool,
    /// ADD: a local tar archive (plain or compressed) is unpacked, not copied.
    pub extract_archives: bool,
}

fn errno(e: Errno) -> io::Error {
    e.into()
}

impl Source {
    /// The build context in the directory `dir`, with its `.dockerignore`.
    pub fn context(dir: &Path) -> Result<Source, BuildError> {
        let root = rustix::fs::open(
            dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| BuildError::Context {
            reason: format!("{}: {}", dir.display(), io::Error::from(e)),
        })?;
        let mut src = Source {
            root,
            resolve: Resolve::Beneath,
            ignore: Ignore::default(),
            what: "build context".into(),
        };
        if let Some(text) = src.read_file(".dockerignore")? {
            let text = String::from_utf8_lossy(&text);
            src.ignore = Ignore::parse(&text).map_err(|e| BuildError::Context {
                reason: format!(".dockerignore: {e}"),
            })?;
        }
        Ok(src)
    }

    /// An image's (or a stage's) file system, mounted at `dir`.
    pub fn image(dir: &Path, what: String) -> Result<Source, BuildError> {
        let root = rustix::fs::open(
            dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| BuildError::Context {
            reason: format!("{what}: {}", io::Error::from(e)),
        })?;
        Ok(Source {
            root,
            resolve: Resolve::InRoot,
            ignore: Ignore::default(),
            what,
        })
    }

    /// Opens `path` (as `O_PATH`) the way this root resolves names.
    fn open(&self, path: &str) -> Result<OwnedFd, Errno> {
        let rel = path.trim_start_matches('/');
        let rel = if rel.is_empty() { "." } else { rel };
        match self.resolve {
            Resolve::InRoot => {
                crate::fsutil::open_in_root(self.root.as_fd(), rel.as_bytes(), false)
            }
            Resolve::Beneath => match rustix::fs::openat2(
                self.root.as_fd(),
                rel,
                OFlags::PATH | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
            ) {
                // No openat2: resolved inside the root instead, which never leaves it either.
                Err(Errno::NOSYS) | Err(Errno::PERM) => {
                    if Path::new(rel)
                        .components()
                        .any(|c| c == std::path::Component::ParentDir)
                    {
                        return Err(Errno::XDEV);
                    }
                    crate::fsutil::open_in_root(self.root.as_fd(), rel.as_bytes(), false)
                }
                r => r,
            },
        }
    }

    /// A small file of the context (the Dockerfile, `.dockerignore`), if it is there.
    pub fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, BuildError> {
        let fd = match self.open(path) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(self.bad_path(path, e)),
        };
        let meta = at::fstat(fd.as_fd()).map_err(|e| self.io(path, e))?;
        if meta.kind() != FileType::RegularFile {
            return Err(BuildError::Context {
                reason: format!("{path} in the {} is not a file", self.what),
            });
        }
        let mut f = reopen(fd.as_fd()).map_err(|e| self.io(path, e))?;
        let mut out = Vec::new();
        Read::by_ref(&mut f)
            .take(16 << 20)
            .read_to_end(&mut out)
            .map_err(|e| self.io(path, e))?;
        Ok(Some(out))
    }

    fn bad_path(&self, path: &str, e: Errno) -> BuildError {
        match e {
            Errno::XDEV => BuildError::Context {
                reason: format!("forbidden path outside the {}: {path}", self.what),
            },
            Errno::NOENT | Errno::NOTDIR => BuildError::Context {
                reason: format!("{path}: not found in the {}", self.what),
            },
            e => self.io(path, errno(e)),
        }
    }

    fn io(&self, path: &str, e: io::Error) -> BuildError {
        BuildError::Context {
            reason: format!("{path} in the {}: {e}", self.what),
        }
    }

    /// The objects a COPY source names: one path, or each match of a wildcard pattern
    /// (`*`, `?`, `[...]`, per path component). None found is an error, as is a path left
    /// out by `.dockerignore`.
    pub fn find(&self, pattern: &str) -> Result<Vec<Found>, BuildError> {
        let clean = clean(pattern);
        if !has_wildcard(&clean) {
            if !clean.is_empty() && self.ignore.excludes(&clean) {
                return Err(BuildError::Context {
                    reason: format!(
                        "{pattern}: not found in the {} (excluded by .dockerignore)",
                        self.what
                    ),
                });
            }
            let fd = self.open(&clean).map_err(|e| self.bad_path(pattern, e))?;
            let meta = at::fstat(fd.as_fd()).map_err(|e| self.io(pattern, e))?;
            return Ok(vec![Found {
                path: clean,
                fd,
                meta,
            }]);
        }
        // Component by component: the fixed ones opened, the patterns matched against the
        // names of the directory reached.
        let mut level: Vec<(String, OwnedFd)> = vec![(
            String::new(),
            self.open(".").map_err(|e| self.bad_path(".", e))?,
        )];
        let parts: Vec<&str> = clean.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let mut next = Vec::new();
            for (dir_path, dir) in &level {
                let join = |n: &str| {
                    if dir_path.is_empty() {
                        n.to_string()
                    } else {
                        format!("{dir_path}/{n}")
                    }
                };
                let names: Vec<String> = if has_wildcard(part) {
                    let glob = Glob::path(part).map_err(|m| BuildError::Context {
                        reason: format!("bad pattern {pattern:?}: {m}"),
                    })?;
                    let Ok(names) = at::read_names(dir.as_fd()) else {
                        continue;
                    };
                    let mut v: Vec<String> = names
                        .iter()
                        .map(|n| String::from_utf8_lossy(n.as_bytes()).into_owned())
                        .filter(|n| glob.matches(&n.chars().collect::<Vec<_>>()))
                        .collect();
                    v.sort();
                    v
                } else {
                    vec![part.to_string()]
                };
                for n in names {
                    let path = join(&n);
                    if self.ignore.excludes(&path) {
                        continue;
                    }
                    let fd = match self.open(&path) {
                        Ok(fd) => fd,
                        Err(Errno::NOENT) | Err(Errno::NOTDIR) => continue,
                        Err(e) => return Err(self.bad_path(&path, e)),
                    };
                    if !last && !at::fstat(fd.as_fd()).is_ok_and(|m| m.is_dir()) {
                        continue;
                    }
                    next.push((path, fd));
                }
            }
            level = next;
        }
        if level.is_empty() {
            return Err(BuildError::Context {
                reason: format!(
                    "{pattern}: no source files were specified or matched in the {}",
                    self.what
                ),
            });
        }
        level
            .into_iter()
            .map(|(path, fd)| {
                let meta = at::fstat(fd.as_fd()).map_err(|e| self.io(&path, e))?;
                Ok(Found { path, fd, meta })
            })
            .collect()
    }

    /// Writes `found` into `out` as tar entries under `name` (a file's entry, or the
    /// prefix of a directory's contents; empty: the top). Directories are walked without
    /// following anything; what `.dockerignore` leaves out is not written.
    pub fn write_tar<W: Write>(
        &self,
        out: &mut tar::Builder<W>,
        found: &Found,
        name: &str,
        opts: &TarOptions,
    ) -> Result<(), BuildError> {
        let ctx = |e: io::Error| self.io(&found.path, e);
        match found.meta.kind() {
            FileType::Directory => {
                let dir = at::open_dir(found.fd.as_fd(), c".").map_err(|e| ctx(errno(e)))?;
                self.write_dir(out, dir.as_fd(), &found.path, name, opts)
            }
            FileType::RegularFile => {
                let f = reopen(found.fd.as_fd()).map_err(ctx)?;
                if opts.extract_archives
                    && let Some(done) = self.try_archive(out, f, name, opts, &found.path)?
                {
                    return Ok(done);
                }
                let f = reopen(found.fd.as_fd()).map_err(ctx)?;
                append(out, name, &found.meta, Some(f), None, opts).map_err(ctx)
            }
            FileType::Symlink => {
                // Only a pattern's match in an image can be a link here (the context's
                // were followed): copied as the link it is.
                let target = rustix::fs::readlinkat(found.fd.as_fd(), c"", Vec::new())
                    .map_err(|e| ctx(errno(e)))?;
                append(out, name, &found.meta, None, Some(target.as_bytes()), opts).map_err(ctx)
            }
            _ => Err(BuildError::Context {
                reason: format!("{}: not a file, directory or symlink", found.path),
            }),
        }
    }

    fn write_dir<W: Write>(
        &self,
        out: &mut tar::Builder<W>,
        dir: BorrowedFd<'_>,
        path: &str,
        name: &str,
        opts: &TarOptions,
    ) -> Result<(), BuildError> {
        let ctx = |p: &str, e: io::Error| self.io(p, e);
        let mut names = at::read_names(dir).map_err(|e| ctx(path, e))?;
        names.sort();
        for n in names {
            let base = String::from_utf8_lossy(n.as_bytes()).into_owned();
            let child = join(path, &base);
            let child_name = join(name, &base);
            let meta = match at::stat_at(dir, &n) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(ctx(&child, e)),
            };
            let excluded = self.ignore.excludes(&child);
            match meta.kind() {
                FileType::Directory => {
                    if excluded && !self.ignore.may_include_below(&child) {
                        continue;
                    }
                    if !excluded {
                        append(out, &child_name, &meta, None, None, opts)
                            .map_err(|e| ctx(&child, e))?;
                    }
                    let sub = at::open_dir_checked(dir, &n, &meta).map_err(|e| ctx(&child, e))?;
                    self.write_dir(out, sub.as_fd(), &child, &child_name, opts)?;
                }
                _ if excluded => {}
                FileType::RegularFile => {
                    let f = at::open_file_checked(dir, &n, &meta).map_err(|e| ctx(&child, e))?;
                    append(out, &child_name, &meta, Some(f), None, opts)
                        .map_err(|e| ctx(&child, e))?;
                }
                FileType::Symlink => {
                    let target = rustix::fs::readlinkat(dir, n.as_c_str(), Vec::new())
                        .map_err(|e| ctx(&child, errno(e)))?;
                    append(out, &child_name, &meta, None, Some(target.as_bytes()), opts)
                        .map_err(|e| ctx(&child, e))?;
                }
                // Sockets, FIFOs and devices are not build inputs.
                _ => {}
            }
        }
        Ok(())
    }

    /// ADD of a local archive: its entries under `name` (a directory). `None` when the
    /// file is not an archive.
    fn try_archive<W: Write>(
        &self,
        out: &mut tar::Builder<W>,
        mut f: std::fs::File,
        name: &str,
        opts: &TarOptions,
        path: &str,
    ) -> Result<Option<()>, BuildError> {
        let mut head = [0u8; 512];
        let n = read_full(&mut f, &mut head).map_err(|e| self.io(path, e))?;
        let head = &head[..n];
        if !is_archive(head) {
            return Ok(None);
        }
        let compression = crate::diff::Compression::detect(head);
        use std::io::Seek;
        f.seek(io::SeekFrom::Start(0))
            .map_err(|e| self.io(path, e))?;
        let reader: Box<dyn Read> = match compression {
            crate::diff::Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(f)),
            crate::diff::Compression::Zstd => {
                Box::new(zstd::Decoder::new(f).map_err(|e| self.io(path, e))?)
            }
            _ => Box::new(f),
        };
        let mut archive = tar::Archive::new(reader);
        let bad = |e: io::Error| BuildError::Context {
            reason: format!("ADD {path}: unpacking the archive: {e}"),
        };
        let entries = archive.entries().map_err(bad)?;
        let mut any = false;
        for entry in entries {
            let mut entry = entry.map_err(bad)?;
            any = true;
            let p = entry.path().map_err(bad)?.into_owned();
            let mut rel = PathBuf::new();
            for c in p.components() {
                match c {
                    std::path::Component::Normal(c) => rel.push(c),
                    std::path::Component::ParentDir => {
                        return Err(BuildError::Context {
                            reason: format!(
                                "ADD {path}: archive entry {} leaves its directory",
                                p.display()
                            ),
                        });
                    }
                    _ => {}
                }
            }
            if rel.as_os_str().is_empty() {
                continue;
            }
            let mut h = entry.header().clone();
            if let Some((u, g)) = opts.owner {
                h.set_uid(u as u64);
                h.set_gid(g as u64);
            }
            let full = join(name, &rel.to_string_lossy());
            match h.entry_type() {
                tar::EntryType::Link => {
                    let target = entry.link_name().map_err(bad)?.unwrap_or_default();
                    let target = join(name, &clean(&target.to_string_lossy()));
                    out.append_link(&mut h, &full, &target).map_err(bad)?;
                }
                tar::EntryType::Symlink => {
                    let target = entry.link_name().map_err(bad)?.unwrap_or_default();
                    out.append_link(&mut h, &full, target).map_err(bad)?;
                }
                _ => out.append_data(&mut h, &full, &mut entry).map_err(bad)?,
            }
        }
        if !any && compression == crate::diff::Compression::None {
            return Ok(None);
        }
        Ok(Some(()))
    }

    /// The cache key of copying `found` with `opts`: a digest of the tar it would make,
    /// modification times left out.
    pub fn content_digest(&self, found: &[Found], opts: &TarOptions) -> Result<String, BuildError> {
        let mut h = HashWriter(sha2::Sha256::new());
        {
            let mut b = tar::Builder::new(&mut h);
            let opts = TarOptions {
                mtime: false,
                ..opts.clone()
            };
            for f in found {
                // The names matter: the same bytes at another path are another copy.
                let name = if f.path.is_empty() {
                    "."
                } else {
                    f.path.as_str()
                };
                self.write_tar(&mut b, f, name, &opts)?;
            }
            b.finish().map_err(|e| self.io(".", e))?;
        }
        Ok(hex::encode(h.0.finalize()))
    }
}

struct HashWriter(sha2::Sha256);

impl Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Whether a file that begins with `head` is one ADD unpacks: a tar, plain or compressed.
pub(crate) fn is_archive(head: &[u8]) -> bool {
    crate::diff::Compression::detect(head) != crate::diff::Compression::None
        || (head.len() >= 262 && &head[257..262] == b"ustar")
}

pub(crate) fn read_full(f: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// An `O_PATH` descriptor of a regular file, opened for reading (the same inode).
fn reopen(fd: BorrowedFd<'_>) -> io::Result<std::fs::File> {
    let meta = at::fstat(fd)?;
    if meta.kind() != FileType::RegularFile {
        return Err(io::Error::other("not a regular file"));
    }
    let f = rustix::fs::openat(
        rustix::fs::CWD,
        at::proc_fd(fd).as_os_str(),
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok(std::fs::File::from(f))
}

/// An entry's header: the COPY's owner (else root) and mode (else the file's).
fn header(opts: &TarOptions, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    let (uid, gid) = opts.owner.unwrap_or((0, 0));
    h.set_uid(uid as u64);
    h.set_gid(gid as u64);
    h.set_mode(opts.mode.unwrap_or(mode));
    h
}

fn append<W: Write>(
    out: &mut tar::Builder<W>,
    name: &str,
    meta: &at::Meta,
    file: Option<std::fs::File>,
    link: Option<&[u8]>,
    opts: &TarOptions,
) -> io::Result<()> {
    let mut h = header(opts, meta.mode & 0o7777);
    h.set_mtime(if opts.mtime {
        meta.mtime.tv_sec.max(0) as u64
    } else {
        0
    });
    match (file, link) {
        (Some(f), _) => {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(meta.size);
            // Exactly the size seen: a file that grows meanwhile does not break the tar.
            let mut r = f.take(meta.size);
            out.append_data(&mut h, name, &mut r)
        }
        (None, Some(target)) => {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            // A link keeps its own mode bits (the kernel ignores them).
            h.set_mode(0o777);
            out.append_link(&mut h, name, Path::new(std::ffi::OsStr::from_bytes(target)))
        }
        (None, None) => {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            out.append_data(&mut h, format!("{name}/"), io::empty())
        }
    }
}

fn join(dir: &str, name: &str) -> String {
    match (dir, name) {
        ("" | ".", n) => n.to_string(),
        (d, "") => d.to_string(),
        (d, n) => format!("{}/{n}", d.trim_end_matches('/')),
    }
}

/// A source path as Docker cleans it: no leading `/` or `./`, no doubled or trailing `/`,
/// `.` components gone (`..` kept: the open refuses what leaves the root).
pub(crate) fn clean(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            c => parts.push(c),
        }
    }
    parts.join("/")
}

fn has_wildcard(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

/// The context a client sends a daemon: the directory's files that `.dockerignore` leaves
/// in (the Dockerfile and `.dockerignore` always), and `extra` (a Dockerfile given apart),
/// as a tar written to `out`.
pub fn tar_context(
    dir: Option<&Path>,
    extra: Option<(String, String)>,
    out: impl Write,
) -> crate::Result<()> {
    let mut b = tar::Builder::new(io::BufWriter::with_capacity(1 << 20, out));
    let opts = TarOptions {
        mtime: true,
        ..TarOptions::default()
    };
    if let Some(dir) = dir {
        let mut src = Source::context(dir)?;
        let found = src.find(".")?;
        src.write_tar(&mut b, &found[0], "", &opts)?;
        // What the daemon reads whatever the patterns say.
        let ignore = std::mem::take(&mut src.ignore);
        for name in [".dockerignore", "Dockerfile"] {
            if ignore.excludes(name)
                && let Ok(f) = src.find(name)
            {
                src.write_tar(&mut b, &f[0], name, &opts)?;
            }
        }
    }
    if let Some((name, text)) = extra {
        append_bytes(&mut b, &name, text.as_bytes(), 0o644, &opts)
            .map_err(|e| crate::Error::io("write the build context", e))?;
    }
    b.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(|e| crate::Error::io("send the build context", e))?;
    Ok(())
}

/// A file's contents under `name`, for a heredoc source or an ADD download.
pub(crate) fn append_bytes<W: Write>(
    out: &mut tar::Builder<W>,
    name: &str,
    data: &[u8],
    mode: u32,
    opts: &TarOptions,
) -> io::Result<()> {
    let mut h = header(opts, mode);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(data.len() as u64);
    out.append_data(&mut h, name, data)
}
