//! Image references as Docker writes them: `[domain[:port]/]path[:tag][@sha256:hex]`.
//!
//! Names are normalised the way Docker normalises them: no domain means `docker.io`, and a
//! single path component on `docker.io` gets `library/`. [`Reference::familiar`] undoes that
//! for display.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;

pub const DEFAULT_DOMAIN: &str = "docker.io";
pub const DEFAULT_TAG: &str = "latest";
const NAME_MAX: usize = 255;

#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid reference format {value:?}: {reason}")]
    Invalid { value: String, reason: &'static str },
}

crate::error::from_module_error!(ReferenceError, InvalidArgument);

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

fn invalid(value: &str, reason: &'static str) -> ReferenceError {
    ReferenceError::Invalid {
        value: value.to_string(),
        reason,
    }
}

/// One path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() {
        return false;
    }
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let mut i = 0;
    let mut need_alnum = true;
    while i < b.len() {
        if alnum(b[i]) {
            need_alnum = false;
            i += 1;
            continue;
        }
        if need_alnum {
            return false;
        }
        // A separator: '.', '_', '__' or a run of '-'.
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        debug_assert!(i > start);
        need_alnum = true;
    }
    !need_alnum
}

/// `host[:port]`, host made of dot-separated labels of `[a-zA-Z0-9-]`, or a bracketed IPv6.
fn valid_domain(d: &str) -> bool {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, tail)) => {
                if ip.is_empty() || !ip.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
                    return false;
                }
                (None, tail.strip_prefix(':'))
            }
            None => return false,
        }
    } else {
        match d.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(d), None),
        }
    };
    if let Some(p) = port
        && (p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    match host {
        None => true,
        Some(h) => {
            !h.is_empty()
                && h.split('.').all(|l| {
                    !l.is_empty()
                        && !l.starts_with('-')
                        && !l.ends_with('-')
                        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
        }
    }
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&x| x.is_ascii_alphanumeric() || x == b'_' || x == b'.' || x == b'-')
}

impl Reference {
    /// Parses and normalises a reference. A missing tag stays missing; see [`Self::with_default_tag`].
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        if s.is_empty() {
            return Err(invalid(s, "empty"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (
                r,
                Some(d.parse::<Digest>().map_err(|_| invalid(s, "bad digest"))?),
            ),
            None => (s, None),
        };
        // A tag follows the last ':' after the last '/'.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let i = last_slash + i;
                (&rest[..i], Some(&rest[i + 1..]))
            }
            None => (rest, None),
        };
        if let Some(t) = tag
            && !valid_tag(t)
        {
            return Err(invalid(s, "bad tag"));
        }
        if name.is_empty() {
            return Err(invalid(s, "empty name"));
        }
        let (domain, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.')
                    || first.contains(':')
                    || first == "localhost"
                    || first.chars().any(|c| c.is_ascii_uppercase()) =>
            {
                if !valid_domain(first) {
                    return Err(invalid(s, "bad domain"));
                }
                (first.to_string(), rest.to_string())
            }
            _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
        };
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(invalid(s, "repository name must be lowercase"));
        }
        if !path.split('/').all(valid_component) {
            return Err(invalid(s, "bad repository name"));
        }
        let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if domain.len() + 1 + path.len() > NAME_MAX {
            return Err(invalid(s, "repository name too long"));
        }
        Ok(Reference {
            domain,
            path,
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// Adds `:latest` when neither a tag nor a digest is given, as `docker` does.
    pub fn with_default_tag(mut self) -> Reference {
        if self.tag.is_none() && self.digest.is_none() {
            self.tag = Some(DEFAULT_TAG.to_string());
        }
        self
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }
    pub fn path(&self) -> &str {
        &self.path
    }
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// Fully qualified repository name, e.g. `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// Repository name as Docker shows it, e.g. `busybox`. The domain stays when the path's
    /// first component would be read back as one (`docker.io/a.b/c`, not `a.b/c`).
    pub fn familiar_name(&self) -> String {
        let first = self.path.split('/').next().unwrap_or_default();
        let looks_like_domain = first.contains('.') || first == "localhost";
        if self.domain == DEFAULT_DOMAIN && !looks_like_domain {
            self.path
                .strip_prefix("library/")
                .filter(|p| !p.contains('/'))
                .unwrap_or(&self.path)
                .to_string()
        } else {
            self.name()
        }
    }

    /// The whole reference as Docker shows it, e.g. `busybox:latest`.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_name();
        self.push_suffix(&mut s);
        s
    }

    fn push_suffix(&self, s: &mut String) {
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.name();
        self.push_suffix(&mut s);
        f.write_str(&s)
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_docker() {
        let r = Reference::parse("busybox").unwrap().with_default_tag();
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(r.familiar(), "busybox:latest");
        let r = Reference::parse("localhost:5000/a/b:v1").unwrap();
        assert_eq!(r.domain(), "localhost:5000");
        assert_eq!(r.familiar(), "localhost:5000/a/b:v1");
        let r = Reference::parse("user/app:1.0").unwrap();
        assert_eq!(r.to_string(), "docker.io/user/app:1.0");
        assert_eq!(r.familiar(), "user/app:1.0");
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "",
            "UPPER",
            "a:b:c",
            "a/../b",
            "-a",
            "a:",
            ":t",
            "a@sha256:zz",
            "a b",
            "a//b",
            "a:-tag",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Reference::parse(&"a".repeat(300)).is_err());
    }

    /// Found by the reference fuzzer: `docker.io/lix_brarr.io/library` showed as
    /// `lix_brarr.io/library`, which reads as a (bad) domain; `docker.io/a.b/c` showed as
    /// `a.b/c`, another registry's image.
    #[test]
    fn familiar_form_keeps_a_domain_the_path_would_be_mistaken_for() {
        for (s, familiar) in [
            (
                "docker.io/lix_brarr.io/library",
                "docker.io/lix_brarr.io/library",
            ),
            ("docker.io/a.b/c:1", "docker.io/a.b/c:1"),
            ("docker.io/localhost/x", "docker.io/localhost/x"),
            ("docker.io/me/app", "me/app"),
            ("busybox", "busybox"),
        ] {
            let r = Reference::parse(s).unwrap();
            assert_eq!(r.familiar(), familiar);
            assert!(Reference::parse(familiar).unwrap() == r, "{familiar}");
        }
    }
}
