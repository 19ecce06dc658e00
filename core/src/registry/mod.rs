//! Registries: images pulled from and pushed to registries over the OCI distribution API,
//! the credentials that open them, and a registry server of our own (`ketch registry
//! serve`).
//!
//! Nothing a registry sends is trusted: a manifest is checked against the digest that names
//! it (or that the registry says it has), every blob against its descriptor's digest and
//! size as it streams into the content store, every unpacked layer against its diff ID. What
//! a pull brings in is held by a lease until the image is recorded, so a failed or killed
//! pull leaves nothing listed and nothing behind once the lease is released (at once, or by
//! the next process to open the root).

pub mod auth;
mod pull;
mod push;
pub mod serve;
mod transport;
pub(crate) use transport::fetch;

use crate::error::ErrorKind;
use crate::image::Images;
use crate::state::State;

pub use auth::{AuthConfig, CredentialStore};
pub use pull::{PullOptions, PullResult};
pub use push::PushOptions;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot reach registry {registry}: {reason}")]
    Unreachable { registry: String, reason: String },
    #[error("{registry}: unauthorized: {reason}")]
    Unauthorized { registry: String, reason: String },
    #[error("{registry}: denied: {reason}")]
    Denied { registry: String, reason: String },
    #[error("{what} not found: {reason}")]
    NotFound { what: String, reason: String },
    #[error("An image does not exist locally with the tag: {name}")]
    NoLocalImage { name: String },
    #[error("{registry}: {reason}")]
    Protocol { registry: String, reason: String },
    #[error(
        "{what}: the registry sent content that does not match its digest: expected {expected}, got {actual}"
    )]
    Mismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("no matching manifest for {platform} in the manifest list entries of {reference}")]
    NoPlatform { reference: String, platform: String },
    #[error("invalid platform {value:?}: {reason}")]
    Platform { value: String, reason: String },
    #[error("credentials: {reason}")]
    Credentials { reason: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

crate::error::from_module_error!(RegistryError);

impl RegistryError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            RegistryError::Unreachable { .. } | RegistryError::Protocol { .. } => {
                ErrorKind::Unavailable
            }
            RegistryError::Unauthorized { .. } | RegistryError::Denied { .. } => {
                ErrorKind::PermissionDenied
            }
            RegistryError::NotFound { .. }
            | RegistryError::NoLocalImage { .. }
            | RegistryError::NoPlatform { .. } => ErrorKind::NotFound,
            RegistryError::Mismatch { .. }
            | RegistryError::Platform { .. }
            | RegistryError::Credentials { .. } => ErrorKind::InvalidArgument,
            RegistryError::Io { source, .. } => crate::error::io_kind(source),
        }
    }
}

/// The registries, as an opened root reaches them: pulls into its images, pushes from them.
#[derive(Clone, Copy)]
pub struct Registries<'s> {
    st: &'s State,
}

impl<'s> Registries<'s> {
    pub fn new(st: &'s State) -> Registries<'s> {
        Registries { st }
    }

    fn images(&self) -> Images<'s> {
        Images::new(self.st)
    }

    /// Notes that `blobs` are in repository `r` of its registry: a later push to another
    /// repository there mounts them instead of sending them.
    fn record_sources<'d>(
        &self,
        r: &crate::reference::Reference,
        blobs: impl Iterator<Item = &'d crate::digest::Digest>,
    ) -> crate::Result<()> {
        self.st.db.write(|tx| {
            for d in blobs {
                tx.execute(
                    "INSERT OR IGNORE INTO blob_sources (digest, registry, repository) VALUES (?1, ?2, ?3)",
                    rusqlite::params![d.to_string(), r.domain(), r.path()],
                )?;
            }
            Ok::<_, crate::Error>(())
        })
    }

    /// Checks `auth` against its registry (`serveraddress`; `docker.io` when empty), as
    /// `docker login` does before it stores them.
    pub fn login(&self, auth: &AuthConfig) -> crate::Result<()> {
        let server = if auth.serveraddress.is_empty() {
            "docker.io".to_string()
        } else {
            auth::hostname(&auth.serveraddress)
        };
        let domain = if auth::config_key(&server) == auth::DOCKER_IO_KEY {
            "docker.io".to_string()
        } else {
            server
        };
        let ep =
            transport::Endpoint::connect(&self.st.registry, &domain, auth.clone(), true, true)?;
        ep.login()?;
        Ok(())
    }
}

/// The credentials the user stored (`ketch login`, `docker login`) for the registry a
/// reference names; `None` when there are none.
pub fn stored_auth(reference: &str) -> crate::Result<Option<AuthConfig>> {
    let r = crate::reference::Reference::parse(reference)?;
    Ok(CredentialStore::user().get(r.domain())?)
}

/// `os/arch[/variant]`, as `--platform` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The host's (`linux/amd64`, `linux/arm64/v8` ...).
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "arm" => "arm",
            "powerpc64" => "ppc64le",
            "s390x" => "s390x",
            "riscv64" => "riscv64",
            other => other,
        };
        Platform {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: (architecture == "arm64").then(|| "v8".to_string()),
        }
    }

    pub fn parse(s: &str) -> Result<Platform, RegistryError> {
        let bad = |reason: &str| RegistryError::Platform {
            value: s.to_string(),
            reason: reason.to_string(),
        };
        let parts: Vec<&str> = s.trim().split('/').collect();
        let ok = |p: &&str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(ok) {
            return Err(bad(
                "want os/arch[/variant], as linux/arm64 or linux/arm/v7",
            ));
        }
        let architecture = match parts[1].to_ascii_lowercase().as_str() {
            "x86_64" | "x86-64" => "amd64".to_string(),
            "aarch64" => "arm64".to_string(),
            a => a.to_string(),
        };
        Ok(Platform {
            os: parts[0].to_ascii_lowercase(),
            architecture,
            variant: parts.get(2).map(|v| v.to_ascii_lowercase()),
        })
    }

    /// Whether an index entry's platform is this one (a missing variant matches any).
    pub(crate) fn matches(&self, os: &str, arch: &str, variant: Option<&str>) -> bool {
        if self.os != os || self.architecture != arch {
            return false;
        }
        match (&self.variant, variant) {
            (Some(want), Some(have)) => want == have,
            _ => true,
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// The scope a token needs to read (`pull`) or write (`pull,push`) a repository.
pub(crate) fn scope(repo: &str, push: bool) -> String {
    format!(
        "repository:{repo}:{}",
        if push { "pull,push" } else { "pull" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_parse_and_match() {
        let p = Platform::parse("linux/arm64").unwrap();
        assert_eq!(p.to_string(), "linux/arm64");
        assert!(p.matches("linux", "arm64", Some("v8")));
        assert!(!p.matches("linux", "amd64", None));
        let v7 = Platform::parse("linux/arm/v7").unwrap();
        assert!(v7.matches("linux", "arm", Some("v7")));
        assert!(!v7.matches("linux", "arm", Some("v6")));
        assert_eq!(
            Platform::parse("linux/x86_64").unwrap().architecture,
            "amd64"
        );
        for bad in ["linux", "linux/", "a/b/c/d", "linux/arm 64", ""] {
            let e = Platform::parse(bad).unwrap_err().to_string();
            assert!(e.contains("os/arch"), "{bad}: {e}");
        }
        assert_eq!(Platform::host().os, "linux");
    }
}
