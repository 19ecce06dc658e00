//! Detach keys: the sequence that, typed into an attached stream's input, leaves the
//! container (or exec) running and ends the attachment, in Docker's syntax: keys separated
//! by commas, each a single character or `ctrl-X` (X one of `a`–`z`, `@`, `[`, `\`, `]`,
//! `^`, `_`). Docker's default is `ctrl-p,ctrl-q`.

use super::ContainerError;

/// Docker's default sequence.
pub const DEFAULT_DETACH_KEYS: &str = "ctrl-p,ctrl-q";

/// The bytes `keys` stands for; empty `keys` is Docker's default.
pub fn parse_detach_keys(keys: &str) -> Result<Vec<u8>, ContainerError> {
    let keys = if keys.is_empty() {
        DEFAULT_DETACH_KEYS
    } else {
        keys
    };
    let bad = |why: String| ContainerError::Invalid {
        reason: format!("invalid detach keys ({keys}): {why}"),
    };
    let mut out = Vec::new();
    for key in keys.split(',') {
        let lower = key.to_ascii_lowercase();
        if let Some(c) = lower.strip_prefix("ctrl-") {
            let b = match c.as_bytes() {
                [c @ b'a'..=b'z'] => c - b'a' + 1,
                [b'@'] => 0,
                [b'['] => 27,
                [b'\\'] => 28,
                [b']'] => 29,
                [b'^'] => 30,
                [b'_'] => 31,
                _ => return Err(bad(format!("unknown character in {key:?}"))),
            };
            out.push(b);
        } else if key.len() == 1 {
            out.push(key.as_bytes()[0]);
        } else {
            return Err(bad(format!("unknown key {key:?}")));
        }
    }
    Ok(out)
}

/// Watches an input stream for the detach sequence, as Docker's escape proxy does: bytes
/// that may begin the sequence are held back until it is complete (detach) or broken (they
/// are passed on after all).
pub struct DetachScanner {
    keys: Vec<u8>,
    matched: usize,
}

impl DetachScanner {
    pub fn new(keys: Vec<u8>) -> DetachScanner {
        DetachScanner { keys, matched: 0 }
    }

    /// What of `input` goes on to the container, and whether the sequence is complete (the
    /// bytes after it are dropped, with the attachment).
    pub fn feed(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            if self.keys.is_empty() {
                out.push(b);
                continue;
            }
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    self.matched = 0;
                    return (out, true);
                }
                continue;
            }
            // Broken: what was held back goes on, and this byte may begin it again.
            out.extend_from_slice(&self.keys[..self.matched]);
            self.matched = 0;
            if b == self.keys[0] {
                self.matched = 1;
                if self.keys.len() == 1 {
                    self.matched = 0;
                    return (out, true);
                }
            } else {
                out.push(b);
            }
        }
        (out, false)
    }
}

/// Copies `from` to `to` until `from` ends (false) or the detach sequence is read (true);
/// a failed write ends it as the end of `from` does.
pub fn copy_until_detached(
    from: &mut dyn std::io::Read,
    to: &mut dyn std::io::Write,
    keys: Vec<u8>,
) -> bool {
    let mut scanner = DetachScanner::new(keys);
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        let (out, detached) = scanner.feed(&buf[..n]);
        if !out.is_empty() && to.write_all(&out).and_then(|()| to.flush()).is_err() {
            return false;
        }
        if detached {
            return true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_in_dockers_syntax() {
        assert_eq!(parse_detach_keys("").unwrap(), vec![16, 17]);
        assert_eq!(parse_detach_keys("ctrl-x").unwrap(), vec![24]);
        assert_eq!(
            parse_detach_keys("a,ctrl-@,ctrl-[,ctrl-_").unwrap(),
            vec![b'a', 0, 27, 31]
        );
        for bad in ["ctrl-1", "ctrl-", "ab", "ctrl-p,", ","] {
            let e = parse_detach_keys(bad).unwrap_err().to_string();
            assert!(e.contains("invalid detach keys"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_sequence_is_held_back_and_broken_ones_pass() {
        let mut s = DetachScanner::new(vec![16, 17]);
        assert_eq!(s.feed(b"ab\x10"), (b"ab".to_vec(), false));
        // Broken by another byte: the held one goes on with it.
        assert_eq!(s.feed(b"c"), (b"\x10c".to_vec(), false));
        // Split across reads, then complete: what follows is dropped.
        assert_eq!(s.feed(b"x\x10"), (b"x".to_vec(), false));
        assert_eq!(s.feed(b"\x11after"), (Vec::new(), true));
        // The byte that breaks it begins it again.
        let mut s = DetachScanner::new(vec![16, 17]);
        assert_eq!(s.feed(b"\x10\x10\x11"), (b"\x10".to_vec(), true));
        let mut s = DetachScanner::new(vec![24]);
        assert_eq!(s.feed(b"hi\x18"), (b"hi".to_vec(), true));
    }

    #[test]
    fn copies_until_the_sequence() {
        let mut out = Vec::new();
        assert!(copy_until_detached(
            &mut &b"hello\x10\x11more"[..],
            &mut out,
            vec![16, 17]
        ));
        assert_eq!(out, b"hello");
        let mut out = Vec::new();
        assert!(!copy_until_detached(
            &mut &b"hello\x10"[..],
            &mut out,
            vec![16, 17]
        ));
        assert_eq!(out, b"hello");
    }
}
