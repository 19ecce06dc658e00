//! Images from Dockerfiles.
//!
//! The parser ([`dockerfile`]), the word expansion applied to an instruction's arguments
//! when the build reaches them ([`shell`]), `.dockerignore` ([`ignore`]), the sources COPY
//! reads ([`context`]) and the builder ([`builder`]).
//!
//! The builder is Docker's classic one, as `docker build` drives it without BuildKit: each
//! instruction after FROM makes an image from the one before — a container runs (RUN) or
//! is written into (COPY, ADD), its changes become a layer; the other instructions change
//! the config only and record an empty layer in the history. Each such image names its
//! parent, and the build cache maps (parent, the instruction as expanded, the build args it
//! sees, the content it copies) to it, so a step whose inputs did not change is not run
//! again and the build ends at the same image ID. Stages the target does not need are not
//! built; those that do not need each other build at once.

pub mod builder;
pub mod context;
pub mod dockerfile;
pub mod ignore;
pub mod run;
pub mod shell;

pub use builder::{BuildContext, BuildOptions, Builder};
pub use dockerfile::{Dockerfile, DockerfileError, parse};

use crate::error::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("Dockerfile parse error {0}")]
    Dockerfile(#[from] DockerfileError),
    /// The context, or a source in it, cannot be used.
    #[error("{reason}")]
    Context { reason: String },
    #[error("{reason}")]
    Invalid { reason: String },
    /// A step failed: where, and why.
    #[error("Dockerfile line {line}: {instruction}: {source}")]
    Step {
        line: usize,
        instruction: String,
        source: crate::Error,
    },
    /// A RUN step's command failed (Docker's words).
    #[error("Dockerfile line {line}: The command '{command}' returned a non-zero code: {code}")]
    RunFailed {
        line: usize,
        command: String,
        code: i32,
    },
}

crate::error::from_module_error!(BuildError);

impl BuildError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            BuildError::Dockerfile(_) | BuildError::Context { .. } | BuildError::Invalid { .. } => {
                ErrorKind::InvalidArgument
            }
            BuildError::Step { source, .. } => source.kind(),
            BuildError::RunFailed { .. } => ErrorKind::FailedPrecondition,
        }
    }

    /// The exit code of the RUN step that failed, if that is what failed.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            BuildError::RunFailed { code, .. } => Some(*code),
            _ => None,
        }
    }
}

fn invalid(reason: impl Into<String>) -> crate::Error {
    BuildError::Invalid {
        reason: reason.into(),
    }
    .into()
}
