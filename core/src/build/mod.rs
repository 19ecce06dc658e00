//! Images from Dockerfiles. So far: the parser ([`dockerfile`]), the word expansion the build
//! applies to an instruction's arguments when it reaches them ([`shell`]), and
//! `.dockerignore` ([`ignore`]).

pub mod dockerfile;
pub mod ignore;
pub mod shell;

pub use dockerfile::{Dockerfile, DockerfileError, parse};
