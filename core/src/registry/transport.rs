//! One registry, spoken to over HTTP(S): which base URL answers (a mirror, HTTPS, or plain
//! HTTP where the registry is insecure), the `WWW-Authenticate` challenge it sets, and the
//! bearer tokens it hands out, kept per scope until they expire.

use std::collections::HashMap;
use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ureq::http::{self, HeaderMap, Response};
use ureq::tls::{Certificate, ClientCert, PemItem, RootCerts, TlsConfig};

use super::RegistryError;
use super::auth::AuthConfig;
use crate::state::RegistrySettings;

/// Where `docker.io`'s API is.
const DOCKER_IO_API: &str = "https://registry-1.docker.io";

/// The media types a manifest request accepts: OCI and Docker, images and indexes.
pub(crate) const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// How a registry wants to be authenticated, from its `WWW-Authenticate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    None,
    Basic,
    Bearer { realm: String, service: String },
}

/// Parses a `WWW-Authenticate` header: `Bearer realm="...",service="...",scope="..."` or
/// `Basic realm="..."`.
pub(crate) fn parse_challenge(header: &str) -> Option<(Challenge, HashMap<String, String>)> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = HashMap::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let Some((k, after)) = s.split_once('=') else {
            break;
        };
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (v, next) = if let Some(q) = after.strip_prefix('"') {
            let mut out = String::new();
            let mut end = q.len();
            let mut chars = q.char_indices();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            out.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => out.push(c),
                }
            }
            (out, &q[end.min(q.len())..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.insert(k, v);
        s = next.trim_start().trim_start_matches(',').trim_start();
    }
    let c = match scheme.to_ascii_lowercase().as_str() {
        "basic" => Challenge::Basic,
        "bearer" => Challenge::Bearer {
            realm: params.get("realm")?.clone(),
            service: params.get("service").cloned().unwrap_or_default(),
        },
        _ => return None,
    };
    Some((c, params))
}

/// Whether `host[:port]` may be spoken to without verified TLS: loopback always, and what
/// the settings name (by host, or by a network its address is in).
pub(crate) fn is_insecure(settings: &RegistrySettings, host: &str) -> bool {
    let bare = host_only(host);
    if bare == "localhost" || bare.ends_with(".localhost") {
        return true;
    }
    let ip: Option<IpAddr> = bare.trim_matches(|c| c == '[' || c == ']').parse().ok();
    if ip.is_some_and(|ip| ip.is_loopback()) {
        return true;
    }
    settings.insecure.iter().any(|entry| {
        // A network (`10.0.0.0/8`), or a registry as a host or URL.
        let e = if entry.contains('/') && !entry.contains("://") {
            entry.trim().to_string()
        } else {
            super::auth::hostname(entry)
        };
        if e == host || e == bare {
            return true;
        }
        match (ip, e.split_once('/')) {
            (Some(IpAddr::V4(a)), Some((net, len))) => {
                let (Ok(net), Ok(len)) = (net.parse::<std::net::Ipv4Addr>(), len.parse::<u32>())
                else {
                    return false;
                };
                if len > 32 {
                    return false;
                }
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                u32::from(a) & mask == u32::from(net) & mask
            }
            _ => false,
        }
    })
}

/// The host of `host[:port]` (an IPv6 address keeps its brackets).
fn host_only(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split(']')
            .next()
            .map_or(host, |h| &host[..h.len() + 1]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// The roots TLS trusts: the system's bundle (`SSL_CERT_FILE`, else Debian's), and the
/// registry's own `ca.crt`/`*.crt` in its certs directory.
fn tls_config(settings: &RegistrySettings, host: &str, verify: bool) -> TlsConfig {
    let mut roots: Vec<Certificate<'static>> = Vec::new();
    let system = std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/ssl/certs/ca-certificates.crt"));
    add_pem_certs(&system, &mut roots);
    let mut client: Option<ClientCert> = None;
    for dir in certs_dirs(settings) {
        let d = dir.join(host);
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut names: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        names.sort();
        for p in &names {
            match p.extension().and_then(|e| e.to_str()) {
                Some("crt") => add_pem_certs(p, &mut roots),
                Some("cert") if client.is_none() => {
                    let key = p.with_extension("key");
                    if let (Ok(c), Ok(k)) = (std::fs::read(p), std::fs::read(&key)) {
                        let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&c)
                            .filter_map(|i| match i {
                                Ok(PemItem::Certificate(c)) => Some(c),
                                _ => None,
                            })
                            .collect();
                        let key = ureq::tls::parse_pem(&k).find_map(|i| match i {
                            Ok(PemItem::PrivateKey(k)) => Some(k),
                            _ => None,
                        });
                        if let Some(key) = key
                            && !certs.is_empty()
                        {
                            client = Some(ClientCert::new_with_certs(&certs, key));
                        }
                    }
                }
                _ => {}
            }
        }
        break;
    }
    TlsConfig::builder()
        .root_certs(RootCerts::new_with_certs(&roots))
        .client_cert(client)
        .disable_verification(!verify)
        .build()
}

fn certs_dirs(settings: &RegistrySettings) -> Vec<PathBuf> {
    match &settings.certs_dir {
        Some(d) => vec![d.clone()],
        None => vec![
            PathBuf::from("/etc/ketch/certs.d"),
            PathBuf::from("/etc/docker/certs.d"),
        ],
    }
}

fn add_pem_certs(path: &Path, out: &mut Vec<Certificate<'static>>) {
    if let Ok(bytes) = std::fs::read(path) {
        for item in ureq::tls::parse_pem(&bytes).flatten() {
            if let PemItem::Certificate(c) = item {
                out.push(c);
            }
        }
    }
}

/// Fetches `url` (http or https, the system's roots for TLS) into `out`, as ADD of a URL
/// does: the bytes, and the `Last-Modified` time (Unix seconds) when the server gives one.
pub(crate) fn fetch(
    settings: &RegistrySettings,
    url: &str,
    out: &mut dyn std::io::Write,
) -> Result<Option<i64>, String> {
    let host = url
        .split_once("://")
        .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or(""))
        .unwrap_or("");
    let agent = agent(tls_config(settings, host, true));
    let mut resp = agent.get(url).call().map_err(|e| e.to_string())?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("{url}: {status}"));
    }
    let modified = header(resp.headers(), "last-modified")
        .and_then(|t| chrono::DateTime::parse_from_rfc2822(t).ok())
        .map(|t| t.timestamp());
    std::io::copy(&mut resp.body_mut().as_reader(), out).map_err(|e| e.to_string())?;
    Ok(modified)
}

fn agent(tls: TlsConfig) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(tls)
        .timeout_connect(Some(Duration::from_secs(15)))
        // A stalled transfer fails (and is resumed) instead of hanging a pull.
        .timeout_per_read(Some(Duration::from_secs(60)))
        .timeout_per_write(Some(Duration::from_secs(60)))
        .max_redirects(8)
        .max_idle_connections_per_host(8)
        .user_agent(concat!("ketch/", env!("CARGO_PKG_VERSION")))
        .accept_encoding("identity")
        .proxy(ureq::Proxy::try_from_env())
        .build()
        .new_agent()
}

/// What a request sends.
pub(crate) enum Body<'a> {
    Empty,
    Bytes(&'a [u8], &'a str),
    /// A stream of `len` bytes.
    Stream(&'a mut dyn Read, u64),
}

/// One registry, connected: the base URL that answered and how it authenticates.
pub(crate) struct Endpoint {
    /// The registry's name as references write it (`localhost:5000`, `docker.io`).
    pub domain: String,
    /// `scheme://host[:port]` requests go to.
    pub base: String,
    agent: ureq::Agent,
    auth: AuthConfig,
    challenge: Mutex<Challenge>,
    /// Bearer tokens by scope, with when they stop being good.
    tokens: Mutex<HashMap<String, (String, Instant)>>,
}

/// A request that failed before an answer: the connection.
fn connect_error(base: &str, e: ureq::Error) -> RegistryError {
    RegistryError::Unreachable {
        registry: base.to_string(),
        reason: e.to_string(),
    }
}

impl Endpoint {
    /// Finds the base URL of `domain` that answers `GET /v2/`: the mirrors first for
    /// `docker.io` when only reading, then HTTPS, then, for an insecure registry, plain
    /// HTTP. The first answer also tells how the registry authenticates.
    pub(crate) fn connect(
        settings: &RegistrySettings,
        domain: &str,
        auth: AuthConfig,
        for_push: bool,
        tls_verify: bool,
    ) -> Result<Arc<Endpoint>, RegistryError> {
        let mut candidates: Vec<(String, bool)> = Vec::new();
        if domain == "docker.io" {
            if !for_push {
                for m in &settings.mirrors {
                    let m = m.trim_end_matches('/');
                    let host = super::auth::hostname(m);
                    let base = if m.contains("://") {
                        m.to_string()
                    } else {
                        format!("https://{m}")
                    };
                    candidates.push((base, !is_insecure(settings, &host)));
                }
            }
            candidates.push((DOCKER_IO_API.to_string(), true));
        } else {
            let insecure = !tls_verify || is_insecure(settings, domain);
            candidates.push((format!("https://{domain}"), !insecure));
            if insecure {
                candidates.push((format!("http://{domain}"), false));
            }
        }
        let mut last: Option<RegistryError> = None;
        for (base, verify) in candidates {
            let host = super::auth::hostname(&base);
            let agent = agent(tls_config(settings, &host, verify));
            let url = format!("{base}/v2/");
            // HTTPS tried on an insecure registry may meet a plain server that never
            // answers a handshake: a short wait, then plain HTTP.
            let probe = !verify && base.starts_with("https://");
            let mut req = agent.get(&url).header("Accept", "application/json");
            if probe {
                req = req
                    .config()
                    .timeout_global(Some(Duration::from_secs(3)))
                    .build();
            }
            let res = req.call();
            match res {
                Ok(mut resp) => {
                    let status = resp.status().as_u16();
                    let challenge = match status {
                        200..=299 => Challenge::None,
                        401 => resp
                            .headers()
                            .get("www-authenticate")
                            .and_then(|h| h.to_str().ok())
                            .and_then(parse_challenge)
                            .map(|(c, _)| c)
                            .unwrap_or(Challenge::Basic),
                        _ => {
                            let _ = resp.body_mut().read_to_vec();
                            last = Some(RegistryError::Protocol {
                                registry: base.clone(),
                                reason: format!("GET /v2/ answered {status}: not a registry"),
                            });
                            continue;
                        }
                    };
                    let _ = resp.body_mut().with_config().limit(1 << 16).read_to_vec();
                    return Ok(Arc::new(Endpoint {
                        domain: domain.to_string(),
                        base,
                        agent,
                        auth,
                        challenge: Mutex::new(challenge),
                        tokens: Mutex::new(HashMap::new()),
                    }));
                }
                Err(e) => last = Some(connect_error(&base, e)),
            }
        }
        Err(last.unwrap_or_else(|| RegistryError::Unreachable {
            registry: domain.to_string(),
            reason: "no address to try".into(),
        }))
    }

    /// Checks the credentials: a request of `/v2/` (basic) or a token (bearer) with them.
    pub(crate) fn login(&self) -> Result<(), RegistryError> {
        let challenge = self.challenge.lock().unwrap().clone();
        match challenge {
            Challenge::None => Ok(()),
            Challenge::Basic => {
                let resp = self.send("GET", "/v2/", &[], &[], Body::Empty)?;
                if resp.status().as_u16() == 401 {
                    return Err(self.unauthorized("the user name or password is wrong"));
                }
                Ok(())
            }
            Challenge::Bearer { realm, service } => {
                self.fetch_token(&realm, &service, &[]).map(|_| ())
            }
        }
    }

    fn unauthorized(&self, reason: &str) -> RegistryError {
        RegistryError::Unauthorized {
            registry: self.domain.clone(),
            reason: reason.to_string(),
        }
    }

    /// Asks the realm for a token covering `scopes`.
    fn fetch_token(
        &self,
        realm: &str,
        service: &str,
        scopes: &[String],
    ) -> Result<(String, Instant), RegistryError> {
        let mut req = self.agent.get(realm);
        if !service.is_empty() {
            req = req.query("service", service);
        }
        for s in scopes {
            req = req.query("scope", s);
        }
        if let Some((u, p)) = self.auth.user_password() {
            req = req.query("account", &u).header(
                "Authorization",
                format!("Basic {}", STANDARD.encode(format!("{u}:{p}"))),
            );
        }
        let mut resp = req.call().map_err(|e| connect_error(realm, e))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_vec()
            .unwrap_or_default();
        if status == 401 || status == 403 {
            return Err(self.unauthorized(&format!(
                "the token server refused the credentials ({status}): {}",
                error_text(&body)
            )));
        }
        if !(200..300).contains(&status) {
            return Err(RegistryError::Protocol {
                registry: realm.to_string(),
                reason: format!("token request answered {status}: {}", error_text(&body)),
            });
        }
        #[derive(serde::Deserialize)]
        struct Token {
            #[serde(default)]
            token: String,
            #[serde(default)]
            access_token: String,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let t: Token = serde_json::from_slice(&body).map_err(|e| RegistryError::Protocol {
            registry: realm.to_string(),
            reason: format!("token answer: {e}"),
        })?;
        let token = if t.token.is_empty() {
            t.access_token
        } else {
            t.token
        };
        if token.is_empty() {
            return Err(RegistryError::Protocol {
                registry: realm.to_string(),
                reason: "token answer holds no token".into(),
            });
        }
        // Reused until shortly before it expires (60 s when the server does not say).
        let life = Duration::from_secs(t.expires_in.unwrap_or(60).max(10));
        Ok((token, Instant::now() + life - Duration::from_secs(5)))
    }

    /// The `Authorization` header for `scopes`, fetching a token when a bearer registry has
    /// none for them (or `fresh` says the one it had was refused).
    fn authorization(
        &self,
        scopes: &[String],
        fresh: bool,
    ) -> Result<Option<String>, RegistryError> {
        if !self.auth.registrytoken.is_empty() {
            return Ok(Some(format!("Bearer {}", self.auth.registrytoken)));
        }
        let challenge = self.challenge.lock().unwrap().clone();
        match challenge {
            Challenge::None => Ok(None),
            Challenge::Basic => Ok(self
                .auth
                .user_password()
                .map(|(u, p)| format!("Basic {}", STANDARD.encode(format!("{u}:{p}"))))),
            Challenge::Bearer { realm, service } => {
                let key = scopes.join(" ");
                if !fresh
                    && let Some((t, until)) = self.tokens.lock().unwrap().get(&key)
                    && Instant::now() < *until
                {
                    return Ok(Some(format!("Bearer {t}")));
                }
                let (t, until) = self.fetch_token(&realm, &service, scopes)?;
                self.tokens.lock().unwrap().insert(key, (t.clone(), until));
                Ok(Some(format!("Bearer {t}")))
            }
        }
    }

    /// Sends one request. `path` is under the base (`/v2/...`) or a full URL (an upload's
    /// `Location`). A 401 on a request whose body can be sent again gets a fresh token and
    /// one more try.
    pub(crate) fn send(
        &self,
        method: &str,
        path: &str,
        scopes: &[String],
        headers: &[(&str, &str)],
        mut body: Body<'_>,
    ) -> Result<Response<ureq::Body>, RegistryError> {
        let url = if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        let mut fresh = false;
        loop {
            let mut b = http::Request::builder().method(method).uri(&url);
            if let Some(a) = self.authorization(scopes, fresh)? {
                b = b.header("Authorization", a);
            }
            for (k, v) in headers {
                b = b.header(*k, *v);
            }
            let replayable = !matches!(body, Body::Stream(..));
            let res = match &mut body {
                Body::Empty => {
                    let req = b
                        .header("Content-Length", "0")
                        .body(())
                        .map_err(|e| self.bad_request(e))?;
                    if matches!(method, "GET" | "HEAD" | "DELETE") {
                        self.agent
                            .run(http::Request::from_parts(req.into_parts().0, ()))
                    } else {
                        self.agent.run(req.map(|()| &[][..]))
                    }
                }
                Body::Bytes(bytes, content_type) => {
                    let req = b
                        .header("Content-Type", *content_type)
                        .header("Content-Length", bytes.len().to_string())
                        .body(*bytes)
                        .map_err(|e| self.bad_request(e))?;
                    self.agent.run(req)
                }
                Body::Stream(r, len) => {
                    let req = b
                        .header("Content-Type", "application/octet-stream")
                        .header("Content-Length", len.to_string())
                        .body(ureq::SendBody::from_reader(&mut **r))
                        .map_err(|e| self.bad_request(e))?;
                    self.agent.run(req)
                }
            };
            let mut resp = res.map_err(|e| connect_error(&url, e))?;
            if resp.status().as_u16() == 401 && !fresh && replayable {
                // The registry changed its mind (a new realm, an expired token): once more.
                if let Some((c, _)) = resp
                    .headers()
                    .get("www-authenticate")
                    .and_then(|h| h.to_str().ok())
                    .and_then(parse_challenge)
                {
                    *self.challenge.lock().unwrap() = c;
                }
                let _ = resp.body_mut().with_config().limit(1 << 16).read_to_vec();
                fresh = true;
                continue;
            }
            return Ok(resp);
        }
    }

    fn bad_request(&self, e: http::Error) -> RegistryError {
        RegistryError::Protocol {
            registry: self.domain.clone(),
            reason: format!("building a request: {e}"),
        }
    }
}

/// A registry's error answer as text: the `errors` of its JSON (`MANIFEST_UNKNOWN: manifest
/// unknown`), else the start of the body.
pub(crate) fn error_text(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        #[serde(default)]
        errors: Vec<Item>,
    }
    #[derive(serde::Deserialize)]
    struct Item {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(e) = serde_json::from_slice::<Errors>(body)
        && !e.errors.is_empty()
    {
        return e
            .errors
            .iter()
            .map(|i| {
                if i.message.is_empty() {
                    i.code.to_ascii_lowercase().replace('_', " ")
                } else {
                    i.message.clone()
                }
            })
            .collect::<Vec<_>>()
            .join("; ");
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(200)])
        .trim()
        .to_string();
    if text.is_empty() {
        "no details".into()
    } else {
        text
    }
}

/// A header's value as text.
pub(crate) fn header<'h>(h: &'h HeaderMap, name: &str) -> Option<&'h str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse_as_registries_send_them() {
        let (c, p) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: "registry.docker.io".into()
            }
        );
        assert_eq!(p["scope"], "repository:library/busybox:pull");
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#)
                .unwrap()
                .0,
            Challenge::Basic
        );
        let (_, p) = parse_challenge(r#"Bearer realm="a\"b", error=invalid_token"#).unwrap();
        assert_eq!(p["realm"], "a\"b");
        assert_eq!(p["error"], "invalid_token");
        assert!(parse_challenge("Bearer service=x").is_none());
        assert!(parse_challenge("Negotiate abc").is_none());
    }

    #[test]
    fn loopback_and_listed_registries_are_insecure() {
        let mut s = RegistrySettings::default();
        assert!(is_insecure(&s, "localhost:5000"));
        assert!(is_insecure(&s, "127.0.0.1:5000"));
        assert!(is_insecure(&s, "127.8.9.1"));
        assert!(is_insecure(&s, "[::1]:5000"));
        assert!(!is_insecure(&s, "registry.example:5000"));
        assert!(!is_insecure(&s, "10.1.2.3:5000"));
        s.insecure = vec!["registry.example:5000".into(), "10.0.0.0/8".into()];
        assert!(is_insecure(&s, "registry.example:5000"));
        assert!(is_insecure(&s, "10.1.2.3:5000"));
        assert!(!is_insecure(&s, "11.1.2.3:5000"));
    }

    #[test]
    fn error_bodies_read_as_text() {
        assert_eq!(
            error_text(br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#),
            "manifest unknown"
        );
        assert_eq!(
            error_text(br#"{"errors":[{"code":"BLOB_UNKNOWN"}]}"#),
            "blob unknown"
        );
        assert_eq!(error_text(b"  "), "no details");
    }
}
