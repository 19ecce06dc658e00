//! Registry credentials as Docker keeps them: an `AuthConfig` (what `X-Registry-Auth` and
//! `POST /auth` carry), and the client's `config.json` with its `auths`, `credsStore` and
//! `credHelpers`, so that `ketch login` and `docker login` read and write one file.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::RegistryError;

/// The key `config.json` files `docker.io`'s credentials under.
pub const DOCKER_IO_KEY: &str = "https://index.docker.io/v1/";

/// Credentials for one registry, in the Docker Engine API's `AuthConfig` shape. All empty:
/// anonymous.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password: String,
    /// `base64(username:password)`, as `config.json` stores it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub auth: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub email: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub serveraddress: String,
    /// A refresh token a registry gave at login, used instead of the password.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub identitytoken: String,
    /// A bearer token to present as it is.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub registrytoken: String,
}

impl AuthConfig {
    /// Basic credentials for `server`.
    pub fn basic(server: &str, username: &str, password: &str) -> AuthConfig {
        AuthConfig {
            username: username.to_string(),
            password: password.to_string(),
            serveraddress: server.to_string(),
            ..AuthConfig::default()
        }
    }

    /// Whether there is nothing to present.
    pub fn is_anonymous(&self) -> bool {
        self.user_password().is_none()
            && self.identitytoken.is_empty()
            && self.registrytoken.is_empty()
    }

    /// The user name and password, from their fields or from `auth`.
    pub fn user_password(&self) -> Option<(String, String)> {
        if !self.username.is_empty() || !self.password.is_empty() {
            return Some((self.username.clone(), self.password.clone()));
        }
        if self.auth.is_empty() {
            return None;
        }
        let raw = STANDARD.decode(self.auth.trim()).ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (u, p) = text.split_once(':')?;
        Some((u.to_string(), p.to_string()))
    }

    /// The `X-Registry-Auth` header's value: the JSON, base64url-encoded.
    pub fn to_header(&self) -> String {
        URL_SAFE.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Reads an `X-Registry-Auth` header (base64url or standard base64 of the JSON; the
    /// Docker CLI has sent both). An empty header or `{}` is anonymous.
    pub fn from_header(value: &str) -> Result<AuthConfig, RegistryError> {
        let v = value.trim();
        if v.is_empty() {
            return Ok(AuthConfig::default());
        }
        let bad = |reason: String| RegistryError::Credentials {
            reason: format!("X-Registry-Auth: {reason}"),
        };
        let padded = {
            let mut s = v.to_string();
            while s.len() % 4 != 0 {
                s.push('=');
            }
            s
        };
        let raw = URL_SAFE
            .decode(&padded)
            .or_else(|_| STANDARD.decode(&padded))
            .map_err(|e| bad(e.to_string()))?;
        serde_json::from_slice(&raw).map_err(|e| bad(e.to_string()))
    }
}

/// The `config.json` key a registry's credentials are filed under: `docker.io` under
/// Docker's historical index URL, any other by its `host[:port]`.
pub fn config_key(registry: &str) -> String {
    let host = hostname(registry);
    if host == "docker.io" || host == "index.docker.io" || host == "registry-1.docker.io" {
        DOCKER_IO_KEY.to_string()
    } else {
        host
    }
}

/// `host[:port]` of a registry written as a host or a URL (`https://host:5000/v2/`).
pub fn hostname(registry: &str) -> String {
    let r = registry.trim();
    let r = r
        .strip_prefix("https://")
        .or_else(|| r.strip_prefix("http://"))
        .unwrap_or(r);
    r.split('/').next().unwrap_or(r).to_ascii_lowercase()
}

/// A user's `config.json`: where `login` writes and pulls and pushes read.
pub struct CredentialStore {
    path: PathBuf,
    /// Where `docker-credential-*` helpers are looked for; `None`: `PATH`.
    helper_dir: Option<PathBuf>,
}

impl CredentialStore {
    /// The file at `path`.
    pub fn at(path: impl Into<PathBuf>) -> CredentialStore {
        CredentialStore {
            path: path.into(),
            helper_dir: None,
        }
    }

    /// The user's: `$KETCH_CONFIG/config.json`, else `$DOCKER_CONFIG/config.json`, else
    /// `~/.docker/config.json` (the file the Docker CLI uses).
    pub fn user() -> CredentialStore {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        let dir = var("KETCH_CONFIG")
            .or_else(|| var("DOCKER_CONFIG"))
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let home = var("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
                home.join(".docker")
            });
        CredentialStore::at(dir.join("config.json"))
    }

    /// Looks for credential helpers in `dir` instead of on `PATH`.
    pub fn with_helper_dir(mut self, dir: impl Into<PathBuf>) -> CredentialStore {
        self.helper_dir = Some(dir.into());
        self
    }

    fn helper_program(&self, name: &str) -> PathBuf {
        let program = format!("docker-credential-{name}");
        match &self.helper_dir {
            Some(d) => d.join(program),
            None => PathBuf::from(program),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> Result<Map<String, Value>, RegistryError> {
        let bad = |reason: String| RegistryError::Credentials {
            reason: format!("{}: {reason}", self.path.display()),
        };
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Map::new()),
            Err(e) => return Err(bad(e.to_string())),
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Map::new());
        }
        match serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))? {
            Value::Object(m) => Ok(m),
            _ => Err(bad("not a JSON object".into())),
        }
    }

    /// Writes the file whole (a temp file renamed over it), mode 0600: other keys of the
    /// file (the Docker CLI's own settings) are kept as they were.
    fn write(&self, doc: &Map<String, Value>) -> Result<(), RegistryError> {
        let fail = |e: std::io::Error| RegistryError::Credentials {
            reason: format!("write {}: {e}", self.path.display()),
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(fail)?;
        let mut tmp = tempfile_in(dir).map_err(fail)?;
        let mut bytes = serde_json::to_vec_pretty(doc).unwrap_or_default();
        bytes.push(b'\n');
        tmp.1.write_all(&bytes).map_err(fail)?;
        tmp.1.sync_all().map_err(fail)?;
        std::fs::rename(&tmp.0, &self.path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp.0);
            fail(e)
        })
    }

    /// The credential helper for `key`: `credHelpers[host]`, else `credsStore`.
    fn helper(doc: &Map<String, Value>, key: &str) -> Option<String> {
        let host = hostname(key);
        let by_host = doc
            .get("credHelpers")
            .and_then(Value::as_object)
            .and_then(|h| h.get(key).or_else(|| h.get(&host)))
            .and_then(Value::as_str);
        by_host
            .or_else(|| doc.get("credsStore").and_then(Value::as_str))
            .filter(|s| !s.is_empty())
            .map(String::from)
    }

    /// The credentials stored for `registry`; `None` when there are none.
    pub fn get(&self, registry: &str) -> Result<Option<AuthConfig>, RegistryError> {
        let key = config_key(registry);
        let doc = self.read()?;
        if let Some(helper) = Self::helper(&doc, &key) {
            return helper_get(&self.helper_program(&helper), &key);
        }
        let Some(auths) = doc.get("auths").and_then(Value::as_object) else {
            return Ok(None);
        };
        // Keys are written as hosts or as URLs (`https://host/v1/`): match either.
        let entry = auths.get(&key).or_else(|| {
            auths
                .iter()
                .find(|(k, _)| config_key(k) == key)
                .map(|(_, v)| v)
        });
        let Some(entry) = entry else {
            return Ok(None);
        };
        let mut a: AuthConfig =
            serde_json::from_value(entry.clone()).map_err(|e| RegistryError::Credentials {
                reason: format!("{}: auths[{key:?}]: {e}", self.path.display()),
            })?;
        if let Some((u, p)) = a.user_password() {
            a.username = u;
            a.password = p;
        }
        a.auth.clear();
        a.serveraddress = key;
        Ok((!a.is_anonymous()).then_some(a))
    }

    /// Stores credentials for `registry`: through its helper, or in `auths`.
    pub fn store(&self, registry: &str, auth: &AuthConfig) -> Result<(), RegistryError> {
        let key = config_key(registry);
        let mut doc = self.read()?;
        if let Some(helper) = Self::helper(&doc, &key) {
            let (user, secret) = if !auth.identitytoken.is_empty() {
                ("<token>".to_string(), auth.identitytoken.clone())
            } else {
                auth.user_password().unwrap_or_default()
            };
            let body = serde_json::json!({"ServerURL": key, "Username": user, "Secret": secret});
            helper_run(
                &self.helper_program(&helper),
                "store",
                body.to_string().as_bytes(),
            )?;
            // What a helper holds is not kept in the file too.
            if let Some(Value::Object(auths)) = doc.get_mut("auths") {
                auths.insert(key, Value::Object(Map::new()));
            }
            return self.write(&doc);
        }
        let mut entry = Map::new();
        if let Some((u, p)) = auth.user_password() {
            entry.insert(
                "auth".into(),
                Value::String(STANDARD.encode(format!("{u}:{p}"))),
            );
        }
        if !auth.identitytoken.is_empty() {
            entry.insert(
                "identitytoken".into(),
                Value::String(auth.identitytoken.clone()),
            );
        }
        let auths = doc
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        if !auths.is_object() {
            *auths = Value::Object(Map::new());
        }
        auths
            .as_object_mut()
            .expect("made an object above")
            .insert(key, Value::Object(entry));
        self.write(&doc)
    }

    /// Forgets `registry`'s credentials. `false`: there were none.
    pub fn erase(&self, registry: &str) -> Result<bool, RegistryError> {
        let key = config_key(registry);
        let mut doc = self.read()?;
        let mut found = false;
        if let Some(helper) = Self::helper(&doc, &key) {
            found = helper_run(&self.helper_program(&helper), "erase", key.as_bytes()).is_ok();
        }
        if let Some(Value::Object(auths)) = doc.get_mut("auths") {
            let keys: Vec<String> = auths
                .keys()
                .filter(|k| config_key(k) == key)
                .cloned()
                .collect();
            for k in keys {
                auths.remove(&k);
                found = true;
            }
        }
        if found {
            self.write(&doc)?;
        }
        Ok(found)
    }
}

/// A new file in `dir` (mode 0600) and its path.
fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(format!(".config.json.{}", crate::util::random_hex(6)));
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    Ok((path, f))
}

/// Runs a credential helper (`docker-credential-NAME ACTION`) with `input` on its standard
/// input.
fn helper_run(program: &Path, action: &str, input: &[u8]) -> Result<Vec<u8>, RegistryError> {
    let fail = |reason: String| RegistryError::Credentials {
        reason: format!("credential helper {} {action}: {reason}", program.display()),
    };
    let mut child = Command::new(program)
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input);
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(if out.stdout.is_empty() {
            &out.stderr
        } else {
            &out.stdout
        })
        .trim()
        .to_string();
        return Err(fail(msg));
    }
    Ok(out.stdout)
}

/// Asks a helper for `key`'s credentials; "not found" is none.
fn helper_get(program: &Path, key: &str) -> Result<Option<AuthConfig>, RegistryError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Found {
        #[serde(default)]
        username: String,
        #[serde(default)]
        secret: String,
    }
    let out = match helper_run(program, "get", key.as_bytes()) {
        Ok(out) => out,
        Err(RegistryError::Credentials { reason }) if reason.contains("credentials not found") => {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let found: Found = serde_json::from_slice(&out).map_err(|e| RegistryError::Credentials {
        reason: format!("credential helper {} get: {e}", program.display()),
    })?;
    let mut a = AuthConfig {
        serveraddress: key.to_string(),
        ..AuthConfig::default()
    };
    if found.username == "<token>" {
        a.identitytoken = found.secret;
    } else {
        a.username = found.username;
        a.password = found.secret;
    }
    Ok((!a.is_anonymous()).then_some(a))
}

/// Credentials of many registries at once, as `X-Registry-Config` carries them for a
/// build: registry key → credentials.
pub type AuthConfigs = BTreeMap<String, AuthConfig>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_accept_both_alphabets() {
        let a = AuthConfig::basic("localhost:5000", "me", "p?ss>>");
        let h = a.to_header();
        assert_eq!(AuthConfig::from_header(&h).unwrap(), a);
        let std = STANDARD.encode(serde_json::to_vec(&a).unwrap());
        assert_eq!(AuthConfig::from_header(&std).unwrap(), a);
        assert_eq!(AuthConfig::from_header("").unwrap(), AuthConfig::default());
        assert!(AuthConfig::from_header("e30").unwrap().is_anonymous());
        let err = AuthConfig::from_header("!!!").unwrap_err().to_string();
        assert!(err.contains("X-Registry-Auth"), "{err}");
    }

    #[test]
    fn keys_as_docker_files_them() {
        assert_eq!(config_key("docker.io"), DOCKER_IO_KEY);
        assert_eq!(config_key("https://index.docker.io/v1/"), DOCKER_IO_KEY);
        assert_eq!(config_key("https://LocalHost:5000/v2/"), "localhost:5000");
        assert_eq!(config_key("127.0.0.1:5000"), "127.0.0.1:5000");
    }

    #[test]
    fn store_get_erase_keep_the_rest_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("config.json");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(
            &path,
            r#"{"auths":{"https://other:1/":{"auth":"eDp5"}},"psFormat":"table {{.ID}}"}"#,
        )
        .unwrap();
        let s = CredentialStore::at(&path);
        assert_eq!(s.get("localhost:5000").unwrap(), None);
        s.store(
            "localhost:5000",
            &AuthConfig::basic("", "me", "secret:with:colons"),
        )
        .unwrap();
        let got = s.get("http://localhost:5000").unwrap().unwrap();
        assert_eq!(
            (got.username.as_str(), got.password.as_str()),
            ("me", "secret:with:colons")
        );
        let other = s.get("other:1").unwrap().unwrap();
        assert_eq!(
            (other.username.as_str(), other.password.as_str()),
            ("x", "y")
        );
        let doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(doc["psFormat"], "table {{.ID}}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(s.erase("localhost:5000").unwrap());
        assert!(!s.erase("localhost:5000").unwrap());
        assert_eq!(s.get("localhost:5000").unwrap(), None);
        assert!(s.get("other:1").unwrap().is_some());
    }

    #[test]
    fn a_broken_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, "{not json").unwrap();
        let err = CredentialStore::at(&path)
            .get("localhost:5000")
            .unwrap_err()
            .to_string();
        assert!(err.contains("config.json"), "{err}");
    }

    #[test]
    fn a_helper_is_asked_and_told() {
        let dir = tempfile::tempdir().unwrap();
        // A helper that keeps one secret in a file beside it.
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let store = dir.path().join("kept");
        let script = format!(
            "#!/bin/sh\ncase \"$1\" in\n store) cat > {s} ;;\n get) if [ -s {s} ]; then cat {s}; else echo 'credentials not found in native keychain'; exit 1; fi ;;\n erase) : > {s} ;;\nesac\n",
            s = store.display()
        );
        let helper = bin.join("docker-credential-test");
        std::fs::write(&helper, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, r#"{"credHelpers":{"reg.test:5000":"test"}}"#).unwrap();
        let s = CredentialStore::at(&path).with_helper_dir(&bin);
        assert_eq!(s.get("reg.test:5000").unwrap(), None);
        s.store("reg.test:5000", &AuthConfig::basic("", "u", "pw"))
            .unwrap();
        let got = s.get("reg.test:5000").unwrap().unwrap();
        assert_eq!((got.username.as_str(), got.password.as_str()), ("u", "pw"));
        assert!(!std::fs::read_to_string(&path).unwrap().contains("cHc"));
        assert!(s.erase("reg.test:5000").unwrap());
        assert_eq!(s.get("reg.test:5000").unwrap(), None);
    }
}
