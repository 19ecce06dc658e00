//! Unpacking a layer onto a snapshot.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::mpsc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;

use super::{Compression, DiffError};
use crate::digest::{Digest, Hasher};
use crate::fsutil::at::read_names;
use crate::mount::{Mount, TempMount};

/// Limits on what a layer may do.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Most bytes the uncompressed stream may hold; guards against compression bombs.
    pub max_size: u64,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions { max_size: 64 << 30 }
    }
}

/// What applying a layer found.
#[derive(Debug, Clone)]
pub struct Applied {
    /// Digest of the uncompressed tar stream.
    pub diff_id: Digest,
    pub compression: Compression,
    /// Bytes of the uncompressed tar stream.
    pub tar_size: u64,
    /// Bytes of file content the layer holds (Docker's layer size).
    pub content_size: u64,
    /// Device nodes present in the layer and not created.
    pub skipped_devices: u64,
}

/// Applies a layer onto `mounts` (those of an active snapshot). A single writable bind mount
/// is written directly; anything else is mounted under `scratch` first.
pub fn apply_to_mounts(
    layer: &mut (dyn Read + Send),
    mounts: &[Mount],
    scratch: &Path,
    opts: &ApplyOptions,
) -> Result<Applied, DiffError> {
    if let [m] = mounts
        && m.kind == "bind"
        && !m.is_readonly()
    {
        return apply(layer, Path::new(&m.source), opts);
    }
    let tm = TempMount::new(mounts, scratch).map_err(|source| DiffError::Io {
        path: scratch.to_path_buf(),
        source,
    })?;
    apply(layer, tm.path(), opts)
}

const CHUNK: usize = 256 * 1024;

/// Applies a layer onto the directory `root`.
///
/// Decompression and hashing run on a second thread, feeding the unpacker through a bounded
/// channel, so the two halves of the work overlap as they do in `tar -xzf`.
pub fn apply(
    layer: &mut (dyn Read + Send),
    root: &Path,
    opts: &ApplyOptions,
) -> Result<Applied, DiffError> {
    let root_fd = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| DiffError::Io {
        path: root.to_path_buf(),
        source: e.into(),
    })?;
    let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(16);
    std::thread::scope(|s| {
        let producer = s.spawn(move || produce(layer, tx, opts.max_size));
        let mut unpacker = Unpacker::new(root_fd.as_fd());
        let unpacked = unpacker.run(ChanReader {
            rx,
            buf: Vec::new(),
            pos: 0,
        });
        let produced = producer.join().expect("layer reader thread panicked");
        // The producer's error says why the stream broke; it wins over the unpacker's view.
        let (compression, diff_id, tar_size) = match (produced, unpacked) {
            (Err(e), _) => return Err(e),
            (Ok(Some(_)), Err(e)) | (Ok(None), Err(e)) => return Err(e),
            (Ok(None), Ok(())) => unreachable!("the producer finishes only when the stream ends"),
            (Ok(Some(p)), Ok(())) => p,
        };
        unpacker.finish()?;
        Ok(Applied {
            diff_id,
            compression,
            tar_size,
            content_size: unpacker.content_size,
            skipped_devices: unpacker.skipped_devices,
        })
    })
}

/// Reads, decompresses, bounds and hashes the layer; sends the plain tar bytes on.
/// Returns `None` if the receiver hung up (the unpacker failed and has its own error).
fn produce(
    layer: &mut (dyn Read + Send),
    tx: mpsc::SyncSender<Vec<u8>>,
    max: u64,
) -> Result<Option<(Compression, Digest, u64)>, DiffError> {
    let mut input = BufReader::with_capacity(CHUNK, layer);
    // The first bytes tell the compression; a read a signal interrupts is made again.
    let compression = loop {
        match input.fill_buf() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            head => {
                break Compression::detect(head.map_err(|source| DiffError::Io {
                    path: "layer".into(),
                    source,
                })?);
            }
        }
    };
    let (format, mut reader): (&'static str, Box<dyn Read + '_>) = match compression {
        Compression::None => ("tar", Box::new(input)),
        Compression::Gzip => (
            "gzip",
            Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        ),
        Compression::Zstd => (
            "zstd",
            Box::new(
                zstd::stream::read::Decoder::with_buffer(input).map_err(|source| {
                    DiffError::Decompress {
                        format: "zstd",
                        source,
                    }
                })?,
            ),
        ),
    };
    let mut hasher = Hasher::new();
    loop {
        let mut chunk = vec![0u8; CHUNK];
        let mut filled = 0;
        while filled < CHUNK {
            match reader.read(&mut chunk[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Err(DiffError::Truncated);
                }
                Err(source) if compression != Compression::None => {
                    return Err(DiffError::Decompress { format, source });
                }
                Err(source) => {
                    return Err(DiffError::Io {
                        path: "layer".into(),
                        source,
                    });
                }
            }
        }
        if filled == 0 {
            let size = hasher.len();
            return Ok(Some((compression, hasher.finish(), size)));
        }
        chunk.truncate(filled);
        hasher.update(&chunk);
        if hasher.len() > max {
            return Err(DiffError::TooLarge { limit: max });
        }
        if tx.send(chunk).is_err() {
            return Ok(None);
        }
    }
}

struct ChanReader {
    rx: mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for ChanReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.buf.len() {
            match self.rx.recv() {
                Ok(b) => {
                    self.buf = b;
                    self.pos = 0;
                }
                // The producer stopped: at the end of the stream, or on an error it reports.
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The path of an entry as components below the root: leading `/` and `.` dropped, `..`
/// refused.
fn clean(path: &[u8]) -> Result<Vec<&[u8]>, &'static str> {
    let mut out = Vec::new();
    for c in path.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("path escapes the layer root (\"..\")"),
            c => out.push(c),
        }
    }
    Ok(out)
}

fn join(components: &[&[u8]]) -> Vec<u8> {
    components.join(&b'/')
}

fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";

struct Unpacker<'a> {
    root: BorrowedFd<'a>,
    /// The most recent parent directory opened, by its cleaned path.
    cached_parent: Option<(Vec<u8>, OwnedFd)>,
    /// Paths this layer created; whiteouts only apply to what lower layers hold.
    created: HashSet<Vec<u8>>,
    /// Directory modification times, set last since adding children changes them.
    dir_times: Vec<(Vec<u8>, i64, u32)>,
    content_size: u64,
    skipped_devices: u64,
    buf: Vec<u8>,
}

fn entry_err(entry: &[u8]) -> impl FnOnce(Errno) -> DiffError + '_ {
    move |e| DiffError::Entry {
        entry: String::from_utf8_lossy(entry).into_owned(),
        source: e.into(),
    }
}

fn io_entry_err(entry: &[u8]) -> impl FnOnce(io::Error) -> DiffError + '_ {
    move |source| DiffError::Entry {
        entry: String::from_utf8_lossy(entry).into_owned(),
        source,
    }
}

/// Metadata of an entry, with PAX overrides applied.
struct Meta {
    mode: u32,
    /// Wider than a kernel id until checked, so a large value is refused rather than cut.
    uid: u64,
    gid: u64,
    mtime: i64,
    mtime_nsec: u32,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Meta {
    fn timestamps(&self) -> Timestamps {
        let t = Timespec {
            tv_sec: self.mtime,
            tv_nsec: self.mtime_nsec as _,
        };
        Timestamps {
            last_access: t,
            last_modification: t,
        }
    }
}

fn malformed(source: io::Error) -> DiffError {
    // The tar reader reports a stream that ends early under several kinds and messages.
    let msg = source.to_string();
    if source.kind() == io::ErrorKind::UnexpectedEof
        || msg.contains("unexpected EOF")
        || msg.contains("entire block")
    {
        DiffError::Truncated
    } else {
        DiffError::Malformed { source }
    }
}

fn meta_of<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Meta, DiffError> {
    let h = entry.header();
    let mut m = Meta {
        mode: h.mode().map_err(malformed)? & 0o7777,
        // Archivers leave these empty at times; Go's and GNU's readers take that as 0.
        uid: h.uid().unwrap_or(0),
        gid: h.gid().unwrap_or(0),
        mtime: h.mtime().unwrap_or(0) as i64,
        mtime_nsec: 0,
        xattrs: Vec::new(),
    };
    if let Some(exts) = entry.pax_extensions().map_err(malformed)? {
        for ext in exts {
            let ext = ext.map_err(malformed)?;
            let key = ext.key_bytes();
            let value = ext.value_bytes();
            // The tar reader has already put PAX `uid` and `gid` into the header.
            match key {
                b"mtime" => {
                    if let Some((s, ns)) = std::str::from_utf8(value).ok().and_then(parse_pax_time)
                    {
                        m.mtime = s;
                        m.mtime_nsec = ns;
                    }
                }
                _ => {
                    if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                        m.xattrs.push((name.to_vec(), value.to_vec()));
                    }
                }
            }
        }
    }
    // -1 is no owner to the kernel ("leave it as it is"), and larger ids do not fit: a layer
    // with either names an owner no file can have.
    if m.uid >= u64::from(u32::MAX) || m.gid >= u64::from(u32::MAX) {
        return Err(DiffError::UnsafeEntry {
            entry: String::from_utf8_lossy(&entry.path_bytes()).into_owned(),
            reason: "owner uid or gid out of range",
        });
    }
    Ok(m)
}

/// PAX time `seconds[.fraction]`.
fn parse_pax_time(v: &str) -> Option<(i64, u32)> {
    let (s, frac) = v.split_once('.').unwrap_or((v, ""));
    let secs = s.parse().ok()?;
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    Some((secs, digits.parse().ok()?))
}

/// Whether an xattr may come from a layer, or go into one. `trusted.*` and `security.*`
/// other than file capabilities would let a layer steer the kernel (overlay's own whiteout
/// marks, say).
pub(super) fn allowed_xattr(name: &[u8]) -> bool {
    name.starts_with(b"user.") || name == b"security.capability"
}

impl<'a> Unpacker<'a> {
    fn new(root: BorrowedFd<'a>) -> Self {
        Unpacker {
            root,
            cached_parent: None,
            created: HashSet::new(),
            dir_times: Vec::new(),
            content_size: 0,
            skipped_devices: 0,
            buf: vec![0u8; CHUNK],
        }
    }

    fn run(&mut self, input: impl Read) -> Result<(), DiffError> {
        let mut archive = tar::Archive::new(input);
        let entries = archive.entries().map_err(malformed)?;
        for entry in entries {
            let mut entry = entry.map_err(malformed)?;
            self.entry(&mut entry)?;
        }
        // Read to the very end so the digest covers trailing padding as well.
        let mut rest = archive.into_inner();
        io::copy(&mut rest, &mut io::sink()).map_err(malformed)?;
        Ok(())
    }

    /// Takes a descriptor of the directory at `components` (resolved inside the root),
    /// creating missing directories on the way as `mkdir -p` would. Give it back with
    /// [`Self::keep_dir`] so the next entry in the same directory needs no lookup.
    fn take_dir(
        &mut self,
        components: &[&[u8]],
        entry: &[u8],
    ) -> Result<(Vec<u8>, OwnedFd), DiffError> {
        let key = join(components);
        if let Some((k, fd)) = self.cached_parent.take() {
            if k == key {
                return Ok((k, fd));
            }
        }
        let fd = match open_in_root(self.root, &key) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => {
                let mut fd = open_in_root(self.root, b"").map_err(entry_err(entry))?;
                for i in 0..components.len() {
                    let prefix = join(&components[..=i]);
                    fd = match open_in_root(self.root, &prefix) {
                        Ok(fd) => fd,
                        Err(Errno::NOENT) => {
                            rustix::fs::mkdirat(&fd, os(components[i]), Mode::from_raw_mode(0o755))
                                .or_else(|e| if e == Errno::EXIST { Ok(()) } else { Err(e) })
                                .map_err(entry_err(entry))?;
                            self.created.insert(prefix.clone());
                            open_in_root(self.root, &prefix).map_err(entry_err(entry))?
                        }
                        Err(e) => return Err(entry_err(entry)(e)),
                    };
                }
                fd
            }
            Err(Errno::NOTDIR) => {
                return Err(DiffError::UnsafeEntry {
                    entry: String::from_utf8_lossy(entry).into_owned(),
                    reason: "a parent of this path is not a directory",
                });
            }
            Err(e) => return Err(entry_err(entry)(e)),
        };
        Ok((key, fd))
    }

    fn keep_dir(&mut self, key: Vec<u8>, fd: OwnedFd) {
        self.cached_parent = Some((key, fd));
    }

    /// Forgets the cached parent if `path` is it or one of its ancestors: a whiteout at
    /// `path` may remove that directory.
    fn invalidate(&mut self, path: &[u8]) {
        if let Some((k, _)) = &self.cached_parent
            && (k.as_slice() == path || (k.starts_with(path) && k.get(path.len()) == Some(&b'/')))
        {
            self.cached_parent = None;
        }
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), DiffError> {
        let raw = entry.path_bytes().into_owned();
        let components = clean(&raw).map_err(|reason| DiffError::UnsafeEntry {
            entry: String::from_utf8_lossy(&raw).into_owned(),
            reason,
        })?;
        let Some((&name, parents)) = components.split_last() else {
            // The root itself ("./"): its metadata belongs to whoever owns the snapshot.
            return Ok(());
        };
        let path = join(&components);
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader
                | tar::EntryType::XHeader
                | tar::EntryType::GNULongName
                | tar::EntryType::GNULongLink
        ) {
            return Ok(());
        }

        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            return self.whiteout(parents, hidden, &raw);
        }

        let meta = meta_of(entry)?;
        // take_dir takes the cached directory out: an entry that replaces it or one of its
        // ancestors is never the parent of the next.
        let (key, parent_fd) = self.take_dir(parents, &raw)?;
        let res = self.create(entry, kind, &meta, parent_fd.as_fd(), os(name), &raw);
        self.keep_dir(key, parent_fd);
        if res? {
            self.created.insert(path);
        }
        Ok(())
    }

    /// Creates the entry `name` in `parent`; returns whether something was created.
    fn create<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        kind: tar::EntryType,
        meta: &Meta,
        parent: BorrowedFd<'_>,
        name: &OsStr,
        raw: &[u8],
    ) -> Result<bool, DiffError> {
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let flags = OFlags::WRONLY
                    | OFlags::CREATE
                    | OFlags::EXCL
                    | OFlags::NOFOLLOW
                    | OFlags::CLOEXEC;
                let fd = replacing(parent, name, raw, || {
                    rustix::fs::openat(parent, name, flags, Mode::from_raw_mode(0o600))
                })?;
                let mut file = File::from(fd);
                // Data cut short ends the copy early; the archive's next header then fails,
                // as truncated.
                self.content_size += crate::util::copy_buf(&mut self.buf, entry, &mut file)
                    .map_err(io_entry_err(raw))?;
                set_meta(file.as_fd(), meta, raw)?;
                rustix::fs::futimens(&file, &meta.timestamps()).map_err(entry_err(raw))?;
            }
            tar::EntryType::Directory => {
                match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700)) {
                    Ok(()) => {}
                    Err(Errno::EXIST) => {
                        let st = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)
                            .map_err(entry_err(raw))?;
                        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                            remove_all_at(parent, name).map_err(entry_err(raw))?;
                            rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700))
                                .map_err(entry_err(raw))?;
                        }
                    }
                    Err(e) => return Err(entry_err(raw)(e)),
                }
                let dir = crate::fsutil::at::open_dir(parent, name).map_err(entry_err(raw))?;
                set_meta(dir.as_fd(), meta, raw)?;
                self.dir_times
                    .push((raw_path(raw), meta.mtime, meta.mtime_nsec));
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| unsafe_entry(raw, "symlink without a target"))?;
                let target = os(&target).to_owned();
                replacing(parent, name, raw, || {
                    rustix::fs::symlinkat(&target, parent, name)
                })?;
                set_link_meta(parent, name, meta, raw)?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| unsafe_entry(raw, "hard link without a target"))?;
                let tcomp = clean(&target).map_err(|_| {
                    unsafe_entry(raw, "hard link target escapes the layer root (\"..\")")
                })?;
                let Some((&tname, tparents)) = tcomp.split_last() else {
                    return Err(unsafe_entry(raw, "hard link to the root directory"));
                };
                let shown = String::from_utf8_lossy(&target).into_owned();
                let tdir =
                    open_in_root(self.root, &join(tparents)).map_err(|e| DiffError::Entry {
                        entry: String::from_utf8_lossy(raw).into_owned(),
                        source: io::Error::new(
                            io::Error::from(e).kind(),
                            format!("hard link target {shown:?} not found in the layer"),
                        ),
                    })?;
                replacing(parent, name, raw, || {
                    rustix::fs::linkat(&tdir, os(tname), parent, name, AtFlags::empty())
                })
                .map_err(|e| match e {
                    DiffError::Entry { entry, source } => DiffError::Entry {
                        entry,
                        source: io::Error::new(
                            source.kind(),
                            format!("hard link to {shown:?}: {source}"),
                        ),
                    },
                    other => other,
                })?;
            }
            tar::EntryType::Fifo => {
                replacing(parent, name, raw, || {
                    rustix::fs::mknodat(
                        parent,
                        name,
                        FileType::Fifo,
                        Mode::from_raw_mode(meta.mode),
                        0,
                    )
                })?;
                set_link_meta(parent, name, meta, raw)?;
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                self.skipped_devices += 1;
                return Ok(false);
            }
            // Other types (sockets, vendor extensions) carry nothing a container can use.
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn whiteout(&mut self, parents: &[&[u8]], hidden: &[u8], raw: &[u8]) -> Result<(), DiffError> {
        let dir_path = join(parents);
        self.invalidate(&dir_path);
        let dir = match open_in_root(self.root, &dir_path) {
            Ok(fd) => fd,
            // Nothing below to hide.
            Err(Errno::NOENT) | Err(Errno::NOTDIR) => return Ok(()),
            Err(e) => return Err(entry_err(raw)(e)),
        };
        if hidden == &OPAQUE[WHITEOUT_PREFIX.len()..] {
            // Opaque: hide every child the lower layers had, keep what this layer put there.
            let children = read_names(dir.as_fd()).map_err(io_entry_err(raw))?;
            for child in children {
                let child = child.to_bytes();
                let mut p = dir_path.clone();
                if !p.is_empty() {
                    p.push(b'/');
                }
                p.extend_from_slice(child);
                if !self.created.contains(&p) {
                    remove_all_at(dir.as_fd(), os(child)).map_err(entry_err(raw))?;
                }
            }
            return Ok(());
        }
        if hidden.starts_with(WHITEOUT_PREFIX)
            || hidden.is_empty()
            || hidden == b"."
            || hidden == b".."
        {
            // AUFS metadata (.wh..wh.plnk and the like) and nonsense: nothing to hide.
            return Ok(());
        }
        let mut p = dir_path.clone();
        if !p.is_empty() {
            p.push(b'/');
        }
        p.extend_from_slice(hidden);
        if self.created.contains(&p) {
            return Ok(());
        }
        self.invalidate(&p);
        match remove_all_at(dir.as_fd(), os(hidden)) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(entry_err(raw)(e)),
        }
    }

    /// Sets directory times, deepest first, once nothing more is added to them.
    fn finish(&mut self) -> Result<(), DiffError> {
        self.cached_parent = None;
        let times = std::mem::take(&mut self.dir_times);
        for (path, sec, nsec) in times.into_iter().rev() {
            let t = Timespec {
                tv_sec: sec,
                tv_nsec: nsec as _,
            };
            let ts = Timestamps {
                last_access: t,
                last_modification: t,
            };
            // A later entry may have removed or replaced it; that is not an error.
            if let Ok(fd) = open_in_root(self.root, &path) {
                let _ = rustix::fs::utimensat(&fd, c"", &ts, AtFlags::EMPTY_PATH);
            }
        }
        Ok(())
    }
}

/// Runs `create`; if something is already at `parent/name`, removes it (whatever it is, never
/// following a symlink) and runs `create` once more.
fn replacing<T>(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    raw: &[u8],
    create: impl Fn() -> Result<T, Errno>,
) -> Result<T, DiffError> {
    match create() {
        Err(Errno::EXIST) => {
            remove_all_at(parent, name).map_err(entry_err(raw))?;
            create()
        }
        r => r,
    }
    .map_err(entry_err(raw))
}

/// Owner, mode and permitted xattrs of an open file or directory. Mode after owner: a chown
/// clears set-ID bits.
fn set_meta(fd: BorrowedFd<'_>, meta: &Meta, raw: &[u8]) -> Result<(), DiffError> {
    rustix::fs::fchown(fd, Some(uid(meta.uid)), Some(gid(meta.gid))).map_err(entry_err(raw))?;
    rustix::fs::fchmod(fd, Mode::from_raw_mode(meta.mode)).map_err(entry_err(raw))?;
    for (k, v) in meta.xattrs.iter().filter(|(k, _)| allowed_xattr(k)) {
        rustix::fs::fsetxattr(fd, os(k), v, rustix::fs::XattrFlags::empty())
            .map_err(entry_err(raw))?;
    }
    Ok(())
}

/// Owner and times of a symlink or FIFO, never following it.
fn set_link_meta(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    meta: &Meta,
    raw: &[u8],
) -> Result<(), DiffError> {
    rustix::fs::chownat(
        parent,
        name,
        Some(uid(meta.uid)),
        Some(gid(meta.gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(entry_err(raw))?;
    rustix::fs::utimensat(parent, name, &meta.timestamps(), AtFlags::SYMLINK_NOFOLLOW)
        .map_err(entry_err(raw))
}

fn unsafe_entry(raw: &[u8], reason: &'static str) -> DiffError {
    DiffError::UnsafeEntry {
        entry: String::from_utf8_lossy(raw).into_owned(),
        reason,
    }
}

/// The cleaned path of an entry already known to be clean.
fn raw_path(raw: &[u8]) -> Vec<u8> {
    join(&clean(raw).unwrap_or_default())
}

/// An owner id [`meta_of`] has checked: below `u32::MAX`.
fn uid(u: u64) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw(u as u32)
}

fn gid(g: u64) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(g as u32)
}

/// Opens `path` (cleaned components joined by `/`) below `root` as a directory, resolving
/// every symlink as if `root` were `/`.
fn open_in_root(root: BorrowedFd<'_>, path: &[u8]) -> Result<OwnedFd, Errno> {
    crate::fsutil::open_in_root(root, path, true)
}

/// `rm -rf parent/name`, never following a symlink.
fn remove_all_at(parent: BorrowedFd<'_>, name: &OsStr) -> Result<(), Errno> {
    match rustix::fs::unlinkat(parent, name, AtFlags::empty()) {
        Ok(()) => return Ok(()),
        Err(Errno::ISDIR) | Err(Errno::PERM) => {}
        Err(e) => return Err(e),
    }
    let dir = rustix::fs::openat(
        parent,
        name,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let children =
        read_names(dir.as_fd()).map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))?;
    for child in children {
        remove_all_at(dir.as_fd(), os(child.to_bytes()))?;
    }
    rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR)
}

#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod tests;
