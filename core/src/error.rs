//! The engine's error type.
//!
//! Each module has its own error enum with struct variants that carry the path or name and the
//! source; they are gathered here into [`Error`]. Every error has a [`ErrorKind`], and each
//! front door maps the kind exactly once (HTTP status, C status, exception class, exit code).

use std::fmt;

/// What kind of failure an error is, independent of which module raised it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    NotFound,
    AlreadyExists,
    InvalidArgument,
    Conflict,
    FailedPrecondition,
    PermissionDenied,
    Unavailable,
    Internal,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::AlreadyExists => "already exists",
            ErrorKind::InvalidArgument => "invalid argument",
            ErrorKind::Conflict => "conflict",
            ErrorKind::FailedPrecondition => "failed precondition",
            ErrorKind::PermissionDenied => "permission denied",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
        };
        f.write_str(s)
    }
}

/// Any error the engine returns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Content(#[from] crate::content::ContentError),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error(transparent)]
    Snapshot(#[from] crate::snapshot::SnapshotError),
    #[error(transparent)]
    Diff(#[from] crate::diff::DiffError),
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    #[error(transparent)]
    Container(#[from] crate::runtime::ContainerError),
    #[error(transparent)]
    Network(#[from] crate::network::NetworkError),
    #[error(transparent)]
    Volume(#[from] crate::volume::VolumeError),
    #[error(transparent)]
    Reference(#[from] crate::reference::ReferenceError),
    #[error(transparent)]
    Digest(#[from] crate::digest::DigestError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Client(#[from] crate::client::ClientError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Content(e) => e.kind(),
            Error::Db(e) => e.kind(),
            Error::Snapshot(e) => e.kind(),
            Error::Diff(e) => e.kind(),
            Error::Image(e) => e.kind(),
            Error::Engine(e) => e.kind(),
            Error::Container(e) => e.kind(),
            Error::Tls(e) => e.kind(),
            Error::Client(e) => e.kind(),
            Error::Network(e) => e.kind(),
            Error::Volume(e) => e.kind(),
            Error::Reference(_) | Error::Digest(_) => ErrorKind::InvalidArgument,
            Error::Io { source, .. } => io_kind(source),
        }
    }
}

/// The kind an I/O error most likely stands for.
pub(crate) fn io_kind(e: &std::io::Error) -> ErrorKind {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::NotFound => ErrorKind::NotFound,
        K::AlreadyExists => ErrorKind::AlreadyExists,
        K::PermissionDenied => ErrorKind::PermissionDenied,
        K::InvalidInput | K::InvalidData | K::UnexpectedEof => ErrorKind::InvalidArgument,
        _ => ErrorKind::Internal,
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Db(e.into())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
