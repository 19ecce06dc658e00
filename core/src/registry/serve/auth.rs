//! Who may use the registry: nobody asked (no htpasswd), basic credentials on every request
//! (checked against an htpasswd file of bcrypt hashes, as distribution's `htpasswd` auth),
//! or bearer tokens that `/token` issues to those credentials, each good for the scopes it
//! was asked for and five minutes.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use super::{Answer, Content, Fail, fail, json_headers};
use crate::digest::Digest;
use crate::http::Request;
use crate::registry::RegistryError;

const SERVICE: &str = "ketch-registry";
const TOKEN_LIFE: Duration = Duration::from_secs(300);

/// Users and their bcrypt hashes, from an htpasswd file.
#[derive(Debug)]
pub struct Htpasswd {
    users: HashMap<String, String>,
    /// (user, sha256 of a password) pairs already checked: bcrypt is slow on purpose, and a
    /// pull makes dozens of requests.
    verified: Mutex<HashSet<(String, Digest)>>,
}

impl Htpasswd {
    pub fn load(path: &Path) -> Result<Htpasswd, RegistryError> {
        let text = std::fs::read_to_string(path).map_err(|e| RegistryError::Io {
            what: format!("read {}", path.display()),
            source: e,
        })?;
        Self::parse(&text).map_err(|reason| RegistryError::Credentials {
            reason: format!("{}: {reason}", path.display()),
        })
    }

    pub fn parse(text: &str) -> Result<Htpasswd, String> {
        let mut users = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, hash) = line
                .split_once(':')
                .ok_or_else(|| format!("line {}: want user:hash", n + 1))?;
            if !(hash.starts_with("$2y$") || hash.starts_with("$2a$") || hash.starts_with("$2b$")) {
                return Err(format!(
                    "line {}: only bcrypt hashes are supported (htpasswd -B)",
                    n + 1
                ));
            }
            users.insert(user.to_string(), hash.to_string());
        }
        Ok(Htpasswd {
            users,
            verified: Mutex::new(HashSet::new()),
        })
    }

    pub fn verify(&self, user: &str, password: &str) -> bool {
        let Some(hash) = self.users.get(user) else {
            return false;
        };
        let key = (user.to_string(), Digest::of(password.as_bytes()));
        if self.verified.lock().unwrap().contains(&key) {
            return true;
        }
        let ok = bcrypt::verify(password, hash).unwrap_or(false);
        if ok {
            let mut v = self.verified.lock().unwrap();
            if v.len() > 1024 {
                v.clear();
            }
            v.insert(key);
        }
        ok
    }
}

/// What a request needs.
pub(super) enum Access {
    /// `/v2/` itself: any valid credentials.
    Base,
    Catalog,
    Repo {
        name: String,
        push: bool,
    },
}

impl Access {
    fn scope(&self) -> Option<String> {
        match self {
            Access::Base => None,
            Access::Catalog => Some("registry:catalog:*".into()),
            Access::Repo { name, push } => Some(crate::registry::scope(name, *push)),
        }
    }
}

struct Token {
    until: Instant,
    /// (resource, action): `("repository:me/app", "push")`, `("registry:catalog", "*")`.
    grants: HashSet<(String, String)>,
}

pub(super) struct Auth {
    users: Option<Htpasswd>,
    tokens: Option<Mutex<HashMap<String, Token>>>,
}

/// The user and password of a `Basic` header.
fn basic(req: &Request) -> Option<(String, String)> {
    let v = req.header("authorization")?;
    let (scheme, rest) = v.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = STANDARD.decode(rest.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// `repository:me/app:pull,push` → its grants.
fn grants_of(scope: &str) -> Vec<(String, String)> {
    let mut parts = scope.rsplitn(2, ':');
    let (Some(actions), Some(resource)) = (parts.next(), parts.next()) else {
        return Vec::new();
    };
    actions
        .split(',')
        .filter(|a| !a.is_empty())
        .map(|a| (resource.to_string(), a.to_string()))
        .collect()
}

impl Auth {
    pub fn new(users: Option<Htpasswd>, token: bool) -> Auth {
        Auth {
            users,
            tokens: token.then(|| Mutex::new(HashMap::new())),
        }
    }

    fn unauthorized(
        &self,
        req: &Request,
        access: &Access,
        scheme: &str,
        error: Option<&str>,
    ) -> Fail {
        let challenge = match &self.tokens {
            Some(_) => {
                let host = req.header("host").unwrap_or("localhost");
                let mut c =
                    format!("Bearer realm=\"{scheme}://{host}/token\",service=\"{SERVICE}\"");
                if let Some(s) = access.scope() {
                    c.push_str(&format!(",scope=\"{s}\""));
                }
                if let Some(e) = error {
                    c.push_str(&format!(",error=\"{e}\""));
                }
                c
            }
            None => format!("Basic realm=\"{SERVICE}\""),
        };
        Fail {
            status: 401,
            code: "UNAUTHORIZED",
            message: "authentication required".into(),
            challenge: Some(challenge),
        }
    }

    /// Lets the request through, or answers 401 with the challenge that says how to get in.
    pub fn check(&self, req: &Request, access: &Access, scheme: &str) -> Result<(), Fail> {
        match (&self.tokens, &self.users) {
            (None, None) => Ok(()),
            (None, Some(users)) => match basic(req) {
                Some((u, p)) if users.verify(&u, &p) => Ok(()),
                _ => Err(self.unauthorized(req, access, scheme, None)),
            },
            (Some(tokens), _) => {
                let bearer = req
                    .header("authorization")
                    .and_then(|v| v.trim().split_once(' '))
                    .filter(|(s, _)| s.eq_ignore_ascii_case("bearer"))
                    .map(|(_, t)| t.trim().to_string());
                let Some(t) = bearer else {
                    return Err(self.unauthorized(req, access, scheme, None));
                };
                let tokens = tokens.lock().unwrap();
                let Some(tok) = tokens.get(&t).filter(|tok| Instant::now() < tok.until) else {
                    return Err(self.unauthorized(req, access, scheme, Some("invalid_token")));
                };
                let needed = access.scope().map(|s| grants_of(&s)).unwrap_or_default();
                if needed.iter().all(|g| tok.grants.contains(g)) {
                    Ok(())
                } else {
                    Err(self.unauthorized(req, access, scheme, Some("insufficient_scope")))
                }
            }
        }
    }

    /// `GET /token?service=&scope=...`: a token for the scopes asked, to credentials that
    /// hold (anyone, with no htpasswd).
    pub fn token(&self, req: &Request) -> Answer {
        let Some(tokens) = &self.tokens else {
            return Err(fail(404, "NOT_FOUND", "this registry issues no tokens"));
        };
        if let Some(users) = &self.users {
            match basic(req) {
                Some((u, p)) if users.verify(&u, &p) => {}
                _ => {
                    return Err(Fail {
                        status: 401,
                        code: "UNAUTHORIZED",
                        message: "wrong user name or password".into(),
                        challenge: Some(format!("Basic realm=\"{SERVICE}\"")),
                    });
                }
            }
        }
        let grants: HashSet<(String, String)> = req
            .query_all("scope")
            .iter()
            .flat_map(|s| s.split(' ').flat_map(grants_of).collect::<Vec<_>>())
            .collect();
        let token = crate::util::random_hex(24);
        let mut map = tokens.lock().unwrap();
        let now = Instant::now();
        map.retain(|_, t| t.until > now);
        map.insert(
            token.clone(),
            Token {
                until: now + TOKEN_LIFE,
                grants,
            },
        );
        let body = json!({
            "token": token,
            "access_token": token,
            "expires_in": TOKEN_LIFE.as_secs(),
            "issued_at": chrono::Utc::now().to_rfc3339(),
        });
        Ok((
            200,
            json_headers(),
            Content::Bytes(body.to_string().into_bytes()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn htpasswd_takes_bcrypt_only_and_checks_passwords() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let h = Htpasswd::parse(&format!("# users\nme:{hash}\n")).unwrap();
        assert!(h.verify("me", "s3cret"));
        assert!(h.verify("me", "s3cret"));
        assert!(!h.verify("me", "wrong"));
        assert!(!h.verify("you", "s3cret"));
        let err = Htpasswd::parse("me:{SHA}abc").unwrap_err();
        assert!(err.contains("bcrypt"), "{err}");
        assert!(Htpasswd::parse("nocolon").is_err());
    }

    #[test]
    fn scopes_grant_their_actions() {
        assert_eq!(
            grants_of("repository:me/app:pull,push"),
            vec![
                ("repository:me/app".to_string(), "pull".to_string()),
                ("repository:me/app".to_string(), "push".to_string())
            ]
        );
        assert_eq!(
            grants_of("registry:catalog:*"),
            vec![("registry:catalog".to_string(), "*".to_string())]
        );
        assert!(grants_of("nonsense").is_empty());
    }
}
