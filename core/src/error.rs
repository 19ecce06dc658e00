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

/// Any error the engine returns: what kind of failure it is, and the module's own error
/// that says what failed (a `NetworkError`, an `ImageError`, the client's error for a
/// daemon's answer ...), which [`Error::downcast_ref`] gives back. This module knows none of
/// them: each module turns its own into this one (`impl From<ItsError> for Error`), with the
/// kind it decides, so the foundations import nothing above them and no transport.
pub struct Error {
    kind: ErrorKind,
    inner: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl Error {
    /// An error of `kind`, saying what `inner` says.
    pub fn new(
        kind: ErrorKind,
        inner: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Error {
        Error {
            kind,
            inner: inner.into(),
        }
    }

    /// An I/O error with what was being done (`context`), of the kind the I/O error stands
    /// for.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::new(
            io_kind(&source),
            IoError {
                context: context.into(),
                source,
            },
        )
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The module's error this one carries, if it is a `T`.
    pub fn downcast_ref<T: std::error::Error + 'static>(&self) -> Option<&T> {
        self.inner.downcast_ref::<T>()
    }

    /// Whether it carries a `T`.
    pub fn is<T: std::error::Error + 'static>(&self) -> bool {
        self.inner.is::<T>()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("inner", &self.inner)
            .finish()
    }
}

/// The message is the inner error's own, so the chain goes on from its source.
impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner.source()
    }
}

/// `impl From<$module_error> for Error`, of the kind the module's error gives (its `kind()`)
/// or of the kind named: one line in each module that turns its errors into this one.
macro_rules! from_module_error {
    ($t:ty) => {
        impl From<$t> for $crate::Error {
            fn from(e: $t) -> $crate::Error {
                $crate::Error::new(e.kind(), e)
            }
        }
    };
    ($t:ty, $kind:ident) => {
        impl From<$t> for $crate::Error {
            fn from(e: $t) -> $crate::Error {
                $crate::Error::new($crate::error::ErrorKind::$kind, e)
            }
        }
    };
}
pub(crate) use from_module_error;

/// An I/O error and what was being done.
#[derive(Debug, thiserror::Error)]
#[error("{context}: {source}")]
pub struct IoError {
    pub context: String,
    #[source]
    pub source: std::io::Error,
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

pub type Result<T, E = Error> = std::result::Result<T, E>;
