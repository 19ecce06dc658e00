//! A container moved to another engine: what the source sends ([`send`]) and what the
//! destination makes of it ([`receive`]); the order of the whole move is the facade's
//! (`crate::api::moving`).
//!
//! The source describes the container in a [`MovePlan`]: its record (name, ID and whole
//! configuration), whether it ran, its image (config, manifest and layer blobs by digest),
//! the named volumes that travel with it, and its networks. The destination answers with a
//! [`MoveCheck`]: what it refuses (a name or volume it has), and which blobs it lacks. The
//! source then sends one stream, framed so that every part is verified on arrival:
//!
//! ```text
//! ketch-move/1\n
//! {plan}\n
//! {"part":"blob","digest":D}\n      chunks      {"digest":D,"size":N}\n   (each missing blob)
//! {"part":"volume","name":V}\n      chunks      {"digest":..,"size":..}\n (each volume: a tar)
//! {"part":"layer"}\n                chunks      {"digest":..,"size":..}\n (the writable layer)
//! {"part":"log","file":F}\n         chunks      {"digest":..,"size":..}\n (each log file)
//! {"part":"end"}\n
//! ```
//!
//! where chunks are a 4-byte big-endian length and that many bytes, ended by a length of
//! 0. The destination makes nothing visible until the end: it stores blobs under a lease,
//! makes the volumes, the container (its ID where free) and its layer, and on any error,
//! a digest that does not match or a stream that ends early, removes all it made.

pub(crate) mod receive;
pub(crate) mod send;

use std::collections::BTreeMap;
use std::io::{self, BufRead, Read, Write};

use serde::{Deserialize, Serialize};

use super::ContainerRecord;
use crate::digest::{Digest, Hasher};

/// The first line of a move stream.
pub(crate) const MAGIC: &[u8] = b"ketch-move/1\n";

/// The longest line of a move stream (the plan's).
const MAX_LINE: u64 = 16 << 20;

/// Data in chunks of at most this many bytes.
const CHUNK: usize = 1 << 20;

/// What the source says of the container it moves.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MovePlan {
    /// The same for every attempt to move this container from this engine: the
    /// destination finds an earlier attempt's container by it.
    pub move_id: String,
    /// The source engine's ID.
    pub source_engine: String,
    pub record: ContainerRecord,
    /// Whether it ran when the move began (it runs again at the destination).
    pub running: bool,
    pub image: MoveImage,
    /// The named volumes that travel with it (`--with-volumes`).
    pub volumes: Vec<MoveVolume>,
    /// Its networks, in the order it joins them.
    pub networks: Vec<MoveNetwork>,
    /// Its log files, oldest first (`container.log.2`, `container.log.1`, `container.log`).
    pub logs: Vec<String>,
    /// The name it takes at the destination.
    pub name: String,
}

/// The image a moved container runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MoveImage {
    /// The config's digest (the image ID).
    pub id: String,
    pub manifest_digest: String,
    pub manifest_media_type: String,
    pub created: Option<String>,
    /// (layer blob digest, diff ID), base first.
    pub layers: Vec<(String, String)>,
    /// Every blob it is made of (config, manifest, layers), with its size.
    pub blobs: Vec<(String, u64)>,
    /// Its tags at the source, given to it at the destination where free there.
    pub tags: Vec<String>,
}

/// A volume that travels with its container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MoveVolume {
    pub name: String,
    pub driver: String,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    pub anonymous: bool,
}

/// A network a moved container is on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MoveNetwork {
    pub name: String,
    pub driver: String,
    /// How to make it at the destination where it is missing (a bridge network).
    pub create: crate::network::NetworkCreate,
    /// Its address there, kept across the move on an overlay network.
    pub ip: Option<String>,
}

/// What the destination says of a plan.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MoveCheck {
    /// The blobs it lacks, which the source sends.
    pub missing: Vec<String>,
    /// A container an earlier attempt of the same move made here, whole: the move goes on
    /// from there.
    pub done: Option<String>,
}

/// The destination's answer once the stream is in: the container it made.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MoveReceipt {
    pub id: String,
    pub name: String,
}

/// A part's header line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "part", rename_all = "lowercase")]
pub(crate) enum Part {
    Blob { digest: String },
    Volume { name: String },
    Layer,
    Log { file: String },
    End,
}

/// A part's trailer line: what was sent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Trailer {
    pub digest: String,
    pub size: u64,
}

fn bad(reason: impl Into<String>) -> crate::Error {
    super::ContainerError::Invalid {
        reason: format!("move stream: {}", reason.into()),
    }
    .into()
}

/// Writes one JSON line.
pub(crate) fn write_line<T: Serialize>(w: &mut dyn Write, v: &T) -> io::Result<()> {
    let mut line = serde_json::to_vec(v).map_err(io::Error::other)?;
    line.push(b'\n');
    w.write_all(&line)
}

/// Reads one JSON line, of at most [`MAX_LINE`] bytes.
pub(crate) fn read_line<T: for<'de> Deserialize<'de>>(
    r: &mut dyn BufRead,
    what: &str,
) -> crate::Result<T> {
    let mut line = Vec::new();
    let n = r
        .take(MAX_LINE)
        .read_until(b'\n', &mut line)
        .map_err(|e| bad(format!("reading the {what}: {e}")))?;
    if n == 0 || line.last() != Some(&b'\n') {
        return Err(bad(format!("it ended before the {what}")));
    }
    serde_json::from_slice(&line).map_err(|e| bad(format!("the {what} is not valid: {e}")))
}

/// Writes a part's data as chunks, then its trailer.
pub(crate) struct ChunkWriter<'a> {
    out: &'a mut dyn Write,
    buf: Vec<u8>,
    hasher: Hasher,
}

impl<'a> ChunkWriter<'a> {
    pub(crate) fn new(out: &'a mut dyn Write) -> ChunkWriter<'a> {
        ChunkWriter {
            out,
            buf: Vec::with_capacity(CHUNK),
            hasher: Hasher::new(),
        }
    }

    fn flush_chunk(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.out.write_all(&(self.buf.len() as u32).to_be_bytes())?;
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }

    /// Ends the part: the last chunk, the end mark and the trailer. What was sent.
    pub(crate) fn finish(mut self) -> io::Result<Trailer> {
        self.flush_chunk()?;
        self.out.write_all(&0u32.to_be_bytes())?;
        let size = self.hasher.len();
        let trailer = Trailer {
            digest: self.hasher.finish().to_string(),
            size,
        };
        write_line(self.out, &trailer)?;
        Ok(trailer)
    }
}

impl Write for ChunkWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        self.hasher.update(&data[..n]);
        if self.buf.len() == CHUNK {
            self.flush_chunk()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Reads a part's data from its chunks, hashing it; [`ChunkReader::finish`] checks it
/// against the trailer.
pub(crate) struct ChunkReader<'a> {
    inner: &'a mut (dyn BufRead + Send),
    left: usize,
    ended: bool,
    hasher: Hasher,
}

impl<'a> ChunkReader<'a> {
    pub(crate) fn new(inner: &'a mut (dyn BufRead + Send)) -> ChunkReader<'a> {
        ChunkReader {
            inner,
            left: 0,
            ended: false,
            hasher: Hasher::new(),
        }
    }

    /// Reads what is left of the part and its trailer, and checks that what came is what
    /// was sent (and, given, what was expected). Returns its digest and size.
    pub(crate) fn finish(mut self, expected: Option<&Digest>) -> crate::Result<(Digest, u64)> {
        io::copy(&mut self, &mut io::sink()).map_err(|e| bad(e.to_string()))?;
        let trailer: Trailer = read_line(self.inner, "part's trailer")?;
        let size = self.hasher.len();
        let got = self.hasher.finish();
        if trailer.digest != got.to_string() || trailer.size != size {
            return Err(bad(format!(
                "a part arrived as {got} ({size} bytes), not as sent ({}, {} bytes)",
                trailer.digest, trailer.size
            )));
        }
        if let Some(e) = expected
            && e != &got
        {
            return Err(bad(format!("a blob arrived as {got}, not as {e}")));
        }
        Ok((got, size))
    }
}

impl Read for ChunkReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.ended || buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            let mut len = [0u8; 4];
            self.inner.read_exact(&mut len)?;
            let len = u32::from_be_bytes(len) as usize;
            if len == 0 {
                self.ended = true;
                return Ok(0);
            }
            if len > CHUNK {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("a chunk of {len} bytes (at most {CHUNK})"),
                ));
            }
            self.left = len;
        }
        let want = buf.len().min(self.left);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.hasher.update(&buf[..n]);
        self.left -= n;
        Ok(n)
    }
}

/// The one ID of every attempt to move `container` away from `engine`.
pub(crate) fn move_id(engine: &str, container: &str) -> String {
    Digest::of(format!("move {engine} {container}").as_bytes()).hex()[..32].to_string()
}

/// A log file's name as the source may send it.
pub(crate) fn log_name_ok(name: &str) -> bool {
    name == "container.log"
        || name
            .strip_prefix("container.log.")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_arrive_whole_or_are_refused() {
        let mut stream = Vec::new();
        let data: Vec<u8> = (0..3 * CHUNK + 17).map(|i| (i % 251) as u8).collect();
        write_line(&mut stream, &Part::Layer).unwrap();
        let mut w = ChunkWriter::new(&mut stream);
        w.write_all(&data).unwrap();
        let sent = w.finish().unwrap();
        assert_eq!(sent.size, data.len() as u64);

        let mut r = io::BufReader::new(&stream[..]);
        assert_eq!(read_line::<Part>(&mut r, "part").unwrap(), Part::Layer);
        let mut c = ChunkReader::new(&mut r);
        let mut got = Vec::new();
        c.read_to_end(&mut got).unwrap();
        let (digest, size) = c.finish(None).unwrap();
        assert_eq!(got, data);
        assert_eq!((digest.to_string(), size), (sent.digest.clone(), sent.size));

        // A byte changed on the way: refused, naming both digests.
        let mut bent = stream.clone();
        let at = bent.len() / 2;
        bent[at] ^= 1;
        let mut r = io::BufReader::new(&bent[..]);
        read_line::<Part>(&mut r, "part").unwrap();
        let e = ChunkReader::new(&mut r).finish(None).unwrap_err();
        assert!(e.to_string().contains("not as sent"), "{e}");

        // Cut short: refused.
        let mut r = io::BufReader::new(&stream[..stream.len() - 100]);
        read_line::<Part>(&mut r, "part").unwrap();
        assert!(ChunkReader::new(&mut r).finish(None).is_err());

        // Not the blob that was asked for.
        let mut r = io::BufReader::new(&stream[..]);
        read_line::<Part>(&mut r, "part").unwrap();
        let other = Digest::of(b"other");
        let e = ChunkReader::new(&mut r).finish(Some(&other)).unwrap_err();
        assert!(e.to_string().contains("not as"), "{e}");
    }

    #[test]
    fn only_log_files_are_named_as_logs() {
        for ok in ["container.log", "container.log.1", "container.log.12"] {
            assert!(log_name_ok(ok), "{ok}");
        }
        for bad in [
            "../x",
            "container.log.",
            "container.log.1/../../x",
            "hosts",
            "",
        ] {
            assert!(!log_name_ok(bad), "{bad}");
        }
    }
}
