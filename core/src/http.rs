//! HTTP/1.1 on a byte stream, as much as the Docker Engine API needs: requests parsed with
//! `httparse`, bodies by `Content-Length` or chunked, responses with a length or chunked
//! (streams), keep-alive. One thread per connection: the engine is synchronous, and a
//! hijacked connection (attach) is the plain stream it already is. The wire beneath both
//! ends: [`crate::server`] and [`crate::client`].

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};

/// The API version served, and the oldest one accepted.
pub const API_VERSION: &str = "1.47";
pub const MIN_API_VERSION: &str = "1.24";

/// Largest request head, and largest body read into memory (archives and image tars are
/// streamed instead).
const MAX_HEAD: usize = 64 * 1024;
pub const MAX_BODY: u64 = 16 << 20;

pub struct Request {
    pub method: String,
    /// Without the query and without a `/v1.NN` prefix.
    pub path: String,
    pub version: Option<String>,
    pub query: BTreeMap<String, String>,
    /// The query in order, repeated names kept.
    pub query_list: Vec<(String, String)>,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    pub keep_alive: bool,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// Whether the client asked for an API version older than `minor` (of 1.x): a request
    /// without a version prefix asks for the one served.
    pub fn asks_before(&self, minor: u32) -> bool {
        self.version
            .as_deref()
            .and_then(|v| v.strip_prefix("1."))
            .and_then(|m| m.parse::<u32>().ok())
            .is_some_and(|m| m < minor)
    }

    /// Every value of a parameter given more than once (`names=a&names=b`).
    pub fn query_all(&self, name: &str) -> Vec<String> {
        self.query_list
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn query_bool(&self, name: &str) -> bool {
        self.query
            .get(name)
            .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits `/v1.47/containers/json?all=1` into the version, the path and the query.
fn split_target(target: &str) -> (Option<String>, String, Vec<(String, String)>) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut version = None;
    let mut path = path.to_string();
    if let Some(rest) = path.strip_prefix("/v")
        && let Some((v, tail)) = rest.split_once('/')
        && !v.is_empty()
        && v.chars().all(|c| c.is_ascii_digit() || c == '.')
    {
        version = Some(v.to_string());
        path = format!("/{tail}");
    }
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    (version, percent_decode(&path), query)
}

/// Reads one request; `Ok(None)` when the peer closed the connection between requests.
pub fn read_request(r: &mut BufReader<impl Read>) -> io::Result<Option<Request>> {
    let mut head = Vec::new();
    loop {
        // Bounded before the newline is found, so one endless line cannot fill the memory.
        let room = (MAX_HEAD + 1).saturating_sub(head.len()) as u64;
        let n = r.by_ref().take(room).read_until(b'\n', &mut head)?;
        if head.len() > MAX_HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request head too large",
            ));
        }
        if n == 0 {
            return if head.is_empty() {
                Ok(None)
            } else {
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "truncated request",
                ))
            };
        }
        if head.ends_with(b"\r\n\r\n") || head.ends_with(b"\n\n") {
            break;
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "malformed request",
            ));
        }
    }
    let method = req.method.unwrap_or("GET").to_string();
    let (version, path, query_list) = split_target(req.path.unwrap_or("/"));
    let query = query_list.iter().cloned().collect();
    let mut hmap = BTreeMap::new();
    for h in req.headers.iter() {
        hmap.insert(
            h.name.to_ascii_lowercase(),
            String::from_utf8_lossy(h.value).into_owned(),
        );
    }
    let http10 = req.version == Some(0);
    let keep_alive = match hmap.get("connection").map(|c| c.to_ascii_lowercase()) {
        Some(c) if c.contains("close") => false,
        Some(c) if c.contains("keep-alive") => true,
        _ => !http10,
    };
    let request = Request {
        method,
        path,
        version,
        query,
        query_list,
        headers: hmap,
        body: Vec::new(),
        keep_alive,
    };
    Ok(Some(request))
}

/// The body of a request, as a reader that stops at its end (by length or chunks).
pub fn body_reader<'a, R: BufRead + Send>(
    req: &Request,
    r: &'a mut R,
) -> Box<dyn Read + Send + 'a> {
    if req
        .header("transfer-encoding")
        .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"))
    {
        Box::new(Chunked::new(r))
    } else {
        let len = req
            .header("content-length")
            .and_then(|l| l.trim().parse::<u64>().ok())
            .unwrap_or(0);
        Box::new(r.take(len))
    }
}

/// Reads the whole body into the request, refusing more than [`MAX_BODY`].
pub fn read_body<R: BufRead + Send>(req: &mut Request, r: &mut R) -> io::Result<()> {
    let mut body = Vec::new();
    let mut rd = body_reader(req, r).take(MAX_BODY + 1);
    rd.read_to_end(&mut body)?;
    if body.len() as u64 > MAX_BODY {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "request body too large",
        ));
    }
    req.body = body;
    Ok(())
}

/// A chunked body (request or response), read as the bytes it carries.
pub struct Chunked<R: BufRead> {
    inner: R,
    left: u64,
    done: bool,
}

impl<R: BufRead> Chunked<R> {
    pub fn new(inner: R) -> Chunked<R> {
        Chunked {
            inner,
            left: 0,
            done: false,
        }
    }
}

/// Longest chunk-size or trailer line: they are a number and a header.
const MAX_CHUNK_LINE: usize = 8 * 1024;

impl<R: BufRead> Chunked<R> {
    /// One line of the chunk framing, refused past [`MAX_CHUNK_LINE`] rather than read whole.
    fn line(&mut self, line: &mut String) -> io::Result<usize> {
        let n = (&mut self.inner)
            .take(MAX_CHUNK_LINE as u64)
            .read_line(line)?;
        if n == MAX_CHUNK_LINE && !line.ends_with('\n') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "chunk line too long",
            ));
        }
        Ok(n)
    }
}

impl<R: BufRead> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        if self.left == 0 {
            let mut line = String::new();
            self.line(&mut line)?;
            if line.trim().is_empty() {
                // The CRLF after the previous chunk.
                line.clear();
                self.line(&mut line)?;
            }
            let size = line.trim().split(';').next().unwrap_or("");
            self.left = u64::from_str_radix(size, 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            if self.left == 0 {
                // Trailers, up to the empty line.
                loop {
                    line.clear();
                    let n = self.line(&mut line)?;
                    if n == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                self.done = true;
                return Ok(0);
            }
        }
        let want = buf.len().min(self.left as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "truncated chunk",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "UPGRADED",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Payload Too Large",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Writes a whole response.
pub fn respond(
    w: &mut (impl Write + ?Sized),
    status: u16,
    headers: &[(&str, String)],
    body: &[u8],
    head_only: bool,
    keep_alive: bool,
) -> io::Result<()> {
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    if !keep_alive {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    w.write_all(out.as_bytes())?;
    if !head_only {
        w.write_all(body)?;
    }
    w.flush()
}

/// A response whose body is written as it comes (chunked).
pub struct ChunkedWriter<'a, W: Write + ?Sized> {
    inner: &'a mut W,
}

impl<'a, W: Write + ?Sized> ChunkedWriter<'a, W> {
    pub fn start(
        inner: &'a mut W,
        status: u16,
        headers: &[(&str, String)],
    ) -> io::Result<ChunkedWriter<'a, W>> {
        let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status));
        for (k, v) in headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("Transfer-Encoding: chunked\r\n\r\n");
        inner.write_all(out.as_bytes())?;
        inner.flush()?;
        Ok(ChunkedWriter { inner })
    }

    pub fn finish(self) -> io::Result<()> {
        self.inner.write_all(b"0\r\n\r\n")?;
        self.inner.flush()
    }
}

impl<W: Write + ?Sized> Write for ChunkedWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        write!(self.inner, "{:x}\r\n", buf.len())?;
        self.inner.write_all(buf)?;
        self.inner.write_all(b"\r\n")?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versioned_paths_and_queries() {
        let (v, p, q) = split_target("/v1.47/containers/json?all=1&filters=%7B%7D");
        assert_eq!(v.as_deref(), Some("1.47"));
        assert_eq!(p, "/containers/json");
        assert_eq!(q[0], ("all".to_string(), "1".to_string()));
        assert_eq!(q[1], ("filters".to_string(), "{}".to_string()));
        let (v, p, _) = split_target("/_ping");
        assert_eq!((v, p.as_str()), (None, "/_ping"));
        let asks = |head: &[u8]| {
            let req = read_request(&mut BufReader::new(head)).unwrap().unwrap();
            req.asks_before(45)
        };
        assert!(asks(b"GET /v1.44/info HTTP/1.1\r\n\r\n"));
        assert!(!asks(b"GET /v1.45/info HTTP/1.1\r\n\r\n"));
        assert!(!asks(b"GET /info HTTP/1.1\r\n\r\n"));
    }

    #[test]
    fn chunked_bodies_and_keep_alive() {
        let raw = b"POST /x HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET /_ping HTTP/1.1\r\n\r\n";
        let mut r = BufReader::new(&raw[..]);
        let mut req = read_request(&mut r).unwrap().unwrap();
        read_body(&mut req, &mut r).unwrap();
        assert_eq!(req.body, b"hello world");
        assert!(req.keep_alive);
        let next = read_request(&mut r).unwrap().unwrap();
        assert_eq!(next.path, "/_ping");
        assert!(read_request(&mut r).unwrap().is_none());
        assert!(read_request(&mut BufReader::new(&b"garbage\r\n\r\n"[..])).is_err());
    }

    /// A line without its newline is refused once it is too long, not read on for ever.
    #[test]
    fn endless_lines_are_bounded() {
        let endless = io::repeat(b'a');
        let err = read_request(&mut BufReader::new(endless)).err().unwrap();
        assert_eq!(err.to_string(), "request head too large");
        let head = b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut r = BufReader::new(head.chain(io::repeat(b'1')));
        let mut req = read_request(&mut r).unwrap().unwrap();
        let err = read_body(&mut req, &mut r).unwrap_err();
        assert_eq!(err.to_string(), "chunk line too long");
    }
}
