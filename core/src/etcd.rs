//! etcd, the store that overlay networks keep their shared state in (as Docker's pre-swarm
//! `--cluster-store` did): its v3 API through the JSON gateway that every etcd server
//! serves on its client URLs (`/v3/kv/range`, `/v3/kv/txn`, `/v3/watch`), over HTTP or TLS.
//!
//! The gateway carries the same operations as gRPC (ranges, transactions that compare and
//! swap, watches that stream events from a revision), so the engine stays synchronous: no
//! async runtime and no generated protocol code for one client. Keys and values are bytes,
//! base64 on the wire; revisions are 64-bit numbers, strings on the wire.
//!
//! Every operation tries the configured endpoints in turn until one answers; an endpoint
//! that cannot be reached is an [`EtcdError::Unreachable`] (kind `Unavailable`) naming them
//! all, so that callers say clearly that the cluster store is down.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use ureq::tls::{Certificate, ClientCert, PemItem, RootCerts, TlsConfig};

use crate::error::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("invalid cluster store {value:?}: {reason}")]
    Invalid { value: String, reason: String },
    #[error("the cluster store ({endpoints}) cannot be reached: {reason}")]
    Unreachable { endpoints: String, reason: String },
    #[error("the cluster store refused {what}: {reason}")]
    Refused { what: String, reason: String },
    /// The watched history is compacted away: list again, then watch from there.
    #[error("the cluster store no longer has revision {revision} (compacted to {compacted})")]
    Compacted { revision: i64, compacted: i64 },
}

crate::error::from_module_error!(EtcdError);

impl EtcdError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            EtcdError::Invalid { .. } => ErrorKind::InvalidArgument,
            EtcdError::Unreachable { .. } => ErrorKind::Unavailable,
            EtcdError::Refused { .. } => ErrorKind::Internal,
            EtcdError::Compacted { .. } => ErrorKind::Unavailable,
        }
    }
}

/// Where the cluster store is and how to reach it: dockerd's `--cluster-store` and
/// `--cluster-store-opt kv.cacertfile=,kv.certfile=,kv.keyfile=`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoreSettings {
    /// `HOST:PORT` of each etcd member.
    pub endpoints: Vec<String>,
    /// TLS: the CA that signed the members' certificates; with it the store is spoken to
    /// over HTTPS.
    pub ca: Option<PathBuf>,
    /// TLS: this engine's client certificate and key, where the members ask for one.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl StoreSettings {
    /// `etcd://HOST:PORT[,HOST:PORT...]`, as dockerd's `--cluster-store` takes it.
    pub fn parse(url: &str) -> Result<StoreSettings, EtcdError> {
        let invalid = |reason: &str| EtcdError::Invalid {
            value: url.to_string(),
            reason: reason.to_string(),
        };
        let rest = url
            .strip_prefix("etcd://")
            .ok_or_else(|| invalid("only etcd://HOST:PORT[,HOST:PORT...] is supported"))?;
        let mut endpoints = Vec::new();
        for e in rest.trim_end_matches('/').split(',') {
            let (host, port) = e
                .rsplit_once(':')
                .ok_or_else(|| invalid("each member is HOST:PORT"))?;
            if host.is_empty() || host.contains('/') || port.parse::<u16>().is_err() {
                return Err(invalid("each member is HOST:PORT"));
            }
            endpoints.push(e.to_string());
        }
        Ok(StoreSettings {
            endpoints,
            ..StoreSettings::default()
        })
    }

    /// One of dockerd's `--cluster-store-opt KEY=VALUE`: `kv.cacertfile`, `kv.certfile`,
    /// `kv.keyfile`.
    pub fn set_option(&mut self, opt: &str) -> Result<(), EtcdError> {
        let invalid = |reason: String| EtcdError::Invalid {
            value: opt.to_string(),
            reason,
        };
        let (k, v) = opt
            .split_once('=')
            .ok_or_else(|| invalid("a store option is KEY=VALUE".into()))?;
        let path = Some(PathBuf::from(v));
        match k {
            "kv.cacertfile" => self.ca = path,
            "kv.certfile" => self.cert = path,
            "kv.keyfile" => self.key = path,
            _ => {
                return Err(invalid(format!(
                    "unknown store option {k} (kv.cacertfile, kv.certfile, kv.keyfile)"
                )));
            }
        }
        Ok(())
    }

    fn tls(&self) -> bool {
        self.ca.is_some() || self.cert.is_some()
    }
}

/// A key and its value, with the revisions that made it and last changed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: String,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
}

/// A change a watch saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Put(Kv),
    Delete { key: String, revision: i64 },
}

/// What a transaction requires of the store.
#[derive(Debug, Clone, Copy)]
pub enum Compare<'a> {
    /// The key does not exist.
    Absent(&'a str),
    /// The key was last changed at this revision (it is as it was read).
    At(&'a str, i64),
    /// No key under the prefix was made or changed after this revision (the one a
    /// [`Etcd::list`] was read at): what was read of it still holds, but for deletions.
    UnchangedSince(&'a str, i64),
    /// No key under the prefix exists.
    Empty(&'a str),
}

/// What a transaction does.
#[derive(Debug, Clone)]
pub enum Op<'a> {
    Put(&'a str, Vec<u8>),
    Delete(&'a str),
    DeletePrefix(&'a str),
}

/// How long a watch waits for a word from the store before it is given up as possibly
/// cut off (a partition that never closes the connection says nothing either).
pub const WATCH_IDLE: Duration = Duration::from_secs(60);

/// A connection to the cluster store (no I/O until the first operation).
pub struct Etcd {
    bases: Vec<String>,
    agent: ureq::Agent,
    /// For watches: a read waits [`WATCH_IDLE`] (see [`Watch::next_batch`]).
    watch_agent: ureq::Agent,
}

fn b64(s: &[u8]) -> String {
    STANDARD.encode(s)
}

/// The end of the range of keys that start with `prefix`: its last byte that is not 0xff,
/// plus one (etcd's `WithPrefix`).
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte 0xff: to the end of the keyspace.
    vec![0]
}

fn number(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        v => v.as_i64().unwrap_or(0),
    }
}

fn kv_of(v: &Value) -> Kv {
    let bytes = |f: &str| {
        v[f].as_str()
            .and_then(|s| STANDARD.decode(s).ok())
            .unwrap_or_default()
    };
    Kv {
        key: String::from_utf8_lossy(&bytes("key")).into_owned(),
        value: bytes("value"),
        create_revision: number(&v["create_revision"]),
        mod_revision: number(&v["mod_revision"]),
    }
}

fn tls_config(s: &StoreSettings) -> Result<TlsConfig, EtcdError> {
    let read = |p: &PathBuf| {
        std::fs::read(p).map_err(|e| EtcdError::Invalid {
            value: p.display().to_string(),
            reason: e.to_string(),
        })
    };
    let certs = |bytes: &[u8]| -> Vec<Certificate<'static>> {
        ureq::tls::parse_pem(bytes)
            .filter_map(|i| match i {
                Ok(PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect()
    };
    let roots = match &s.ca {
        Some(ca) => {
            let c = certs(&read(ca)?);
            if c.is_empty() {
                return Err(EtcdError::Invalid {
                    value: ca.display().to_string(),
                    reason: "no PEM certificate in it".into(),
                });
            }
            RootCerts::new_with_certs(&c)
        }
        // The system's, as for registries.
        None => {
            let system = std::env::var_os("SSL_CERT_FILE")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/etc/ssl/certs/ca-certificates.crt"));
            RootCerts::new_with_certs(&std::fs::read(system).map(|b| certs(&b)).unwrap_or_default())
        }
    };
    let client = match (&s.cert, &s.key) {
        (Some(cert), Some(key)) => {
            let chain = certs(&read(cert)?);
            let key = ureq::tls::parse_pem(&read(key)?)
                .find_map(|i| match i {
                    Ok(PemItem::PrivateKey(k)) => Some(k),
                    _ => None,
                })
                .ok_or_else(|| EtcdError::Invalid {
                    value: key.display().to_string(),
                    reason: "no PEM private key in it".into(),
                })?;
            Some(ClientCert::new_with_certs(&chain, key))
        }
        (None, None) => None,
        _ => {
            return Err(EtcdError::Invalid {
                value: "kv.certfile, kv.keyfile".into(),
                reason: "a client certificate needs both".into(),
            });
        }
    };
    Ok(TlsConfig::builder()
        .root_certs(roots)
        .client_cert(client)
        .build())
}

impl Etcd {
    pub fn connect(s: &StoreSettings) -> Result<Etcd, EtcdError> {
        Etcd::connect_idle(s, WATCH_IDLE)
    }

    /// [`Etcd::connect`], with watches given up after `idle` of silence.
    fn connect_idle(s: &StoreSettings, idle: Duration) -> Result<Etcd, EtcdError> {
        if s.endpoints.is_empty() {
            return Err(EtcdError::Invalid {
                value: String::new(),
                reason: "no member given".into(),
            });
        }
        let scheme = if s.tls() { "https" } else { "http" };
        let tls = tls_config(s)?;
        let agent = |read: Option<Duration>| {
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .tls_config(tls.clone())
                .timeout_connect(Some(Duration::from_secs(2)))
                .timeout_per_read(read)
                .timeout_per_write(Some(Duration::from_secs(10)))
                .max_idle_connections_per_host(4)
                .user_agent(concat!("ketch/", env!("CARGO_PKG_VERSION")))
                .build()
                .new_agent()
        };
        Ok(Etcd {
            bases: s
                .endpoints
                .iter()
                .map(|e| format!("{scheme}://{e}"))
                .collect(),
            agent: agent(Some(Duration::from_secs(10))),
            watch_agent: agent(Some(idle)),
        })
    }

    fn unreachable(&self, reason: impl Into<String>) -> EtcdError {
        EtcdError::Unreachable {
            endpoints: self
                .bases
                .iter()
                .map(|b| b.split_once("://").map_or(b.as_str(), |(_, h)| h))
                .collect::<Vec<_>>()
                .join(","),
            reason: reason.into(),
        }
    }

    /// Sends one request to the first member that answers; returns the answer's body.
    fn call(
        &self,
        agent: &ureq::Agent,
        path: &str,
        body: &Value,
    ) -> Result<ureq::http::Response<ureq::Body>, EtcdError> {
        let mut last = String::new();
        let text = body.to_string();
        for base in &self.bases {
            let resp = match agent
                .post(format!("{base}{path}"))
                .header("Content-Type", "application/json")
                .send(text.as_bytes())
            {
                Ok(r) => r,
                Err(e) => {
                    last = format!("{base}: {e}");
                    continue;
                }
            };
            let status = resp.status();
            // A member that is up but has no leader answers 503: another may be better off.
            if status.as_u16() == 503 {
                last = format!("{base}: {status}");
                continue;
            }
            if !status.is_success() {
                let mut resp = resp;
                let mut b = String::new();
                let _ = resp
                    .body_mut()
                    .as_reader()
                    .take(64 << 10)
                    .read_to_string(&mut b);
                let msg = serde_json::from_str::<Value>(&b)
                    .ok()
                    .and_then(|v| {
                        v["message"]
                            .as_str()
                            .or(v["error"].as_str())
                            .map(str::to_string)
                    })
                    .unwrap_or(b);
                return Err(EtcdError::Refused {
                    what: path.to_string(),
                    reason: format!("{status}: {msg}"),
                });
            }
            return Ok(resp);
        }
        Err(self.unreachable(last))
    }

    fn post(&self, path: &str, body: Value) -> Result<Value, EtcdError> {
        let mut resp = self.call(&self.agent, path, &body)?;
        let mut text = String::new();
        resp.body_mut()
            .as_reader()
            .take(64 << 20)
            .read_to_string(&mut text)
            .map_err(|e| self.unreachable(e.to_string()))?;
        serde_json::from_str(&text).map_err(|e| EtcdError::Refused {
            what: path.to_string(),
            reason: format!("an answer that is not JSON: {e}"),
        })
    }

    /// One key.
    pub fn get(&self, key: &str) -> Result<Option<Kv>, EtcdError> {
        let v = self.post("/v3/kv/range", json!({"key": b64(key.as_bytes())}))?;
        Ok(v["kvs"].as_array().and_then(|a| a.first()).map(kv_of))
    }

    /// Every key under `prefix`, in key order, and the store's revision they were read at.
    pub fn list(&self, prefix: &str) -> Result<(i64, Vec<Kv>), EtcdError> {
        let v = self.post(
            "/v3/kv/range",
            json!({"key": b64(prefix.as_bytes()), "range_end": b64(&prefix_end(prefix))}),
        )?;
        let kvs = v["kvs"]
            .as_array()
            .map(|a| a.iter().map(kv_of).collect())
            .unwrap_or_default();
        Ok((number(&v["header"]["revision"]), kvs))
    }

    /// Sets `key`; returns the revision of the change.
    pub fn put(&self, key: &str, value: &[u8]) -> Result<i64, EtcdError> {
        let v = self.post(
            "/v3/kv/put",
            json!({"key": b64(key.as_bytes()), "value": b64(value)}),
        )?;
        Ok(number(&v["header"]["revision"]))
    }

    /// A transaction: when every comparison holds, the operations are done at once.
    /// Returns whether they held.
    pub fn txn(&self, compare: &[Compare<'_>], ops: &[Op<'_>]) -> Result<bool, EtcdError> {
        let range = |prefix: &str| json!({"key": b64(prefix.as_bytes()), "range_end": b64(&prefix_end(prefix))});
        let compare: Vec<Value> = compare
            .iter()
            .map(|c| {
                let (mut v, target, result, field, n) = match c {
                    Compare::Absent(k) => (
                        json!({"key": b64(k.as_bytes())}),
                        "CREATE",
                        "EQUAL",
                        "create_revision",
                        0,
                    ),
                    Compare::At(k, rev) => (
                        json!({"key": b64(k.as_bytes())}),
                        "MOD",
                        "EQUAL",
                        "mod_revision",
                        *rev,
                    ),
                    // Every key of the range last changed before the revision after `rev`
                    // (an empty range holds too).
                    Compare::UnchangedSince(p, rev) => {
                        (range(p), "MOD", "LESS", "mod_revision", *rev + 1)
                    }
                    Compare::Empty(p) => (range(p), "CREATE", "EQUAL", "create_revision", 0),
                };
                v["target"] = json!(target);
                v["result"] = json!(result);
                v[field] = json!(n.to_string());
                v
            })
            .collect();
        let success: Vec<Value> = ops
            .iter()
            .map(|o| match o {
                Op::Put(k, v) => {
                    json!({"request_put": {"key": b64(k.as_bytes()), "value": b64(v)}})
                }
                Op::Delete(k) => json!({"request_delete_range": {"key": b64(k.as_bytes())}}),
                Op::DeletePrefix(p) => json!({"request_delete_range": range(p)}),
            })
            .collect();
        let v = self.post(
            "/v3/kv/txn",
            json!({"compare": compare, "success": success}),
        )?;
        Ok(v["succeeded"].as_bool().unwrap_or(false))
    }

    /// Deletes one key; returns whether it was there.
    pub fn delete(&self, key: &str) -> Result<bool, EtcdError> {
        let v = self.post("/v3/kv/deleterange", json!({"key": b64(key.as_bytes())}))?;
        Ok(number(&v["deleted"]) > 0)
    }

    /// Deletes every key under `prefix`; returns how many there were.
    pub fn delete_prefix(&self, prefix: &str) -> Result<i64, EtcdError> {
        let v = self.post(
            "/v3/kv/deleterange",
            json!({"key": b64(prefix.as_bytes()), "range_end": b64(&prefix_end(prefix))}),
        )?;
        Ok(number(&v["deleted"]))
    }

    /// Watches the keys under `prefix` from `revision` on (the revision a [`Etcd::list`]
    /// returned, plus one): the changes come in the order they were made, a batch at a
    /// time. The watch ends with an error when the store goes away.
    pub fn watch(&self, prefix: &str, revision: i64) -> Result<Watch, EtcdError> {
        let body = json!({"create_request": {
            "key": b64(prefix.as_bytes()),
            "range_end": b64(&prefix_end(prefix)),
            "start_revision": revision.to_string(),
        }});
        let resp = self.call(&self.watch_agent, "/v3/watch", &body)?;
        Ok(Watch {
            reader: BufReader::new(Box::new(resp.into_body().into_reader())),
            from: revision,
        })
    }
}

/// Whether a read failed for its timeout (ureq's own error, or the socket's).
fn timed_out(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::TimedOut
        || e.kind() == std::io::ErrorKind::WouldBlock
        || e.get_ref()
            .and_then(|inner| inner.downcast_ref::<ureq::Error>())
            .is_some_and(|u| matches!(u, ureq::Error::Timeout(_)))
}

/// The changes under a prefix, as they happen (see [`Etcd::watch`]).
pub struct Watch {
    reader: BufReader<Box<dyn Read + Send>>,
    from: i64,
}

impl Watch {
    /// The next batch of changes; blocks until there is one, or for [`WATCH_IDLE`] of
    /// silence (`None`: the connection may be dead without a word, and a new watch, from a
    /// fresh read, is the way to know). An error ends the watch.
    pub fn next_batch(&mut self) -> Result<Option<Vec<Event>>, EtcdError> {
        loop {
            let mut line = String::new();
            let n = match self.reader.read_line(&mut line) {
                Ok(n) => n,
                Err(e) if timed_out(&e) => return Ok(None),
                Err(e) => {
                    return Err(EtcdError::Unreachable {
                        endpoints: "watch".into(),
                        reason: e.to_string(),
                    });
                }
            };
            if n == 0 {
                return Err(EtcdError::Unreachable {
                    endpoints: "watch".into(),
                    reason: "the store ended the watch".into(),
                });
            }
            let Ok(v) = serde_json::from_str::<Value>(line.trim()) else {
                continue;
            };
            if let Some(e) = v.get("error") {
                return Err(EtcdError::Refused {
                    what: "watch".into(),
                    reason: e["message"].as_str().unwrap_or("").to_string(),
                });
            }
            let r = &v["result"];
            let compacted = number(&r["compact_revision"]);
            if compacted > 0 {
                return Err(EtcdError::Compacted {
                    revision: self.from,
                    compacted,
                });
            }
            if r["canceled"].as_bool() == Some(true) {
                return Err(EtcdError::Refused {
                    what: "watch".into(),
                    reason: r["cancel_reason"]
                        .as_str()
                        .unwrap_or("canceled")
                        .to_string(),
                });
            }
            let Some(events) = r["events"].as_array().filter(|e| !e.is_empty()) else {
                continue;
            };
            let batch: Vec<Event> = events
                .iter()
                .map(|e| {
                    let kv = kv_of(&e["kv"]);
                    if e["type"].as_str() == Some("DELETE") {
                        Event::Delete {
                            key: kv.key,
                            revision: kv.mod_revision,
                        }
                    } else {
                        Event::Put(kv)
                    }
                })
                .collect();
            if let Some(last) = batch.last() {
                self.from = match last {
                    Event::Put(kv) => kv.mod_revision,
                    Event::Delete { revision, .. } => *revision,
                } + 1;
            }
            return Ok(Some(batch));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_end_past_their_last_key() {
        assert_eq!(prefix_end("/ketch/"), b"/ketch0".to_vec());
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80".to_vec());
        assert_eq!(prefix_end(""), vec![0]);
    }

    #[test]
    fn store_urls_parse_as_dockerd_takes_them() {
        let s = StoreSettings::parse("etcd://10.0.0.1:2379,10.0.0.2:2379").unwrap();
        assert_eq!(s.endpoints, ["10.0.0.1:2379", "10.0.0.2:2379"]);
        for bad in [
            "consul://h:1",
            "etcd://",
            "etcd://h",
            "etcd://h:port",
            "etcd://h:1/x:2",
        ] {
            let e = StoreSettings::parse(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad}: {e}");
        }
        let mut s = StoreSettings::default();
        s.set_option("kv.cacertfile=/ca.pem").unwrap();
        assert_eq!(s.ca, Some(PathBuf::from("/ca.pem")));
        assert!(s.set_option("kv.other=1").is_err());
        assert!(s.set_option("novalue").is_err());
    }

    /// A store that answers a watch and then says nothing (a connection cut off without a
    /// word looks the same): the watch gives up after its idle time, with no error.
    #[test]
    fn a_silent_watch_is_given_up() {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            conn.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
            )
            .unwrap();
            let created = br#"{"result":{"header":{"revision":"1"},"created":true}}"#;
            conn.write_all(format!("{:x}\r\n", created.len() + 1).as_bytes())
                .unwrap();
            conn.write_all(created).unwrap();
            conn.write_all(b"\n\r\n").unwrap();
            // Silent, with the connection open, until the client goes (what it still sends
            // of its request is read and dropped).
            while conn.read(&mut buf).is_ok_and(|n| n > 0) {}
        });
        let s = StoreSettings::parse(&format!("etcd://127.0.0.1:{port}")).unwrap();
        let etcd = Etcd::connect_idle(&s, Duration::from_millis(300)).unwrap();
        let mut watch = etcd.watch("/ketch/", 2).unwrap();
        let started = std::time::Instant::now();
        assert!(watch.next_batch().unwrap().is_none());
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(watch);
        server.join().unwrap();
    }

    #[test]
    fn an_unreachable_store_says_so_and_names_its_members() {
        // A port nothing listens on, on loopback.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let s = StoreSettings::parse(&format!("etcd://127.0.0.1:{port}")).unwrap();
        let e = Etcd::connect(&s).unwrap().get("/k").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
    }
}
