//! `GET /containers/{id}/attach/ws`: attach over a WebSocket (RFC 6455), as Docker serves it
//! for browsers and docker-py's `attach_socket(ws=True)`. The container's output goes in
//! binary messages, raw (no multiplexing); with `stdin`, what the client sends in its
//! (masked) data messages goes to the container's input.

use std::io::{self, BufReader, Read, Write};

use base64::Engine as _;
use sha1::{Digest, Sha1};

use super::*;

/// The GUID RFC 6455 adds to the client's key.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Whether the request is a WebSocket attach, and to what container.
pub(super) fn attaching_ws(req: &Request) -> Option<String> {
    match (req.method.as_str(), segments(&req.path).as_slice()) {
        ("GET", ["containers", id, "attach", "ws"]) => Some(id.to_string()),
        _ => None,
    }
}

/// The `Sec-WebSocket-Accept` answer to a client's key.
fn accept_key(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.trim().as_bytes());
    h.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// One unmasked frame from the server: FIN, `opcode`, the payload.
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= u16::MAX as usize => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

/// Each write a binary message.
struct Messages<'a>(&'a mut dyn Conn);

impl Write for Messages<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_all(&frame(0x2, buf))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Largest message taken from a client: input is typed, not uploaded.
const MAX_MESSAGE: u64 = 1 << 20;

/// Reads the client's frames and writes their data to `to` until a close frame, the end of
/// the connection, or a frame this reader refuses (unmasked, oversized).
fn read_messages(from: &mut dyn Read, to: &mut dyn Write) {
    loop {
        let mut head = [0u8; 2];
        if from.read_exact(&mut head).is_err() {
            return;
        }
        let opcode = head[0] & 0x0f;
        let masked = head[1] & 0x80 != 0;
        let len = match head[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                if from.read_exact(&mut b).is_err() {
                    return;
                }
                u64::from(u16::from_be_bytes(b))
            }
            127 => {
                let mut b = [0u8; 8];
                if from.read_exact(&mut b).is_err() {
                    return;
                }
                u64::from_be_bytes(b)
            }
            n => u64::from(n),
        };
        // A client's frames are masked (RFC 6455, 5.1).
        if !masked || len > MAX_MESSAGE {
            return;
        }
        let mut mask = [0u8; 4];
        if from.read_exact(&mut mask).is_err() {
            return;
        }
        let mut payload = vec![0u8; len as usize];
        if from.read_exact(&mut payload).is_err() {
            return;
        }
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
        match opcode {
            // Continuation, text, binary: data, until it cannot be passed on.
            0x0..=0x2 if to.write_all(&payload).and_then(|()| to.flush()).is_err() => return,
            0x8 => return,
            // Ping, pong and the rest: nothing for the container.
            _ => {}
        }
    }
}

/// Serves a WebSocket attach on the taken-over connection.
pub(super) fn attach_ws(
    engine: &Engine,
    id: &str,
    req: &Request,
    mut reader: BufReader<Box<dyn Conn>>,
    mut writer: Box<dyn Conn>,
) -> io::Result<()> {
    let c = match engine.containers().get(id) {
        Ok(c) => c,
        Err(e) => return engine_error_reply(&mut *writer, e),
    };
    let upgrade = req
        .header("upgrade")
        .is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
    let Some(key) = req.header("sec-websocket-key").filter(|_| upgrade) else {
        return error_reply(
            &mut *writer,
            400,
            "a WebSocket attach needs Upgrade: websocket and Sec-WebSocket-Key",
        );
    };
    // Where the output begins is taken before the head goes: a client that has it may send
    // input at once, and the container's answer must not fall before it.
    let (from, until) = match streams::attach_span(engine, &c, req) {
        Ok(span) => span,
        Err(ApiError(status, message)) => return error_reply(&mut *writer, status, &message),
    };
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(key)
    );
    writer.write_all(head.as_bytes())?;
    writer.flush()?;
    // Input, to a running container with its input open (else dropped: Docker reads it all
    // the same).
    if req.query_bool("stdin") {
        let mut input: Box<dyn Write + Send> = match engine.containers().attach_input(id) {
            Ok(s) => Box::new(s),
            Err(_) => Box::new(io::sink()),
        };
        std::thread::spawn(move || read_messages(&mut reader, &mut input));
    }
    let want = |fd: u8| match fd {
        2 => req.query_bool("stderr"),
        _ => req.query_bool("stdout"),
    };
    // Raw, each record a message.
    streams::follow_log(
        engine,
        id,
        from,
        until,
        (true, false),
        &want,
        &mut Messages(&mut *writer),
        None,
    );
    let _ = writer.write_all(&frame(0x8, &1000u16.to_be_bytes()));
    let _ = writer.flush();
    writer.shutdown_write();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_example_key() {
        // RFC 6455, 1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn frames_both_ways() {
        assert_eq!(frame(0x2, b"hi"), vec![0x82, 2, b'h', b'i']);
        assert_eq!(&frame(0x2, &[0u8; 300])[..4], &[0x82, 126, 1, 44]);
        // A masked client frame, then close: the data, unmasked.
        let mask = [1u8, 2, 3, 4];
        let mut input = vec![0x82, 0x80 | 3];
        input.extend_from_slice(&mask);
        input.extend(b"abc".iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        input.extend_from_slice(&[0x88, 0x80, 0, 0, 0, 0]);
        input.extend_from_slice(&[0x82, 0x80 | 1, 0, 0, 0, 0, b'z']);
        let mut out = Vec::new();
        read_messages(&mut &input[..], &mut out);
        assert_eq!(out, b"abc");
        // Unmasked: refused, nothing passed on.
        let mut out = Vec::new();
        read_messages(&mut &[0x82u8, 1, b'x'][..], &mut out);
        assert!(out.is_empty());
    }
}
