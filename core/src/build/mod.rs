//! Images from Dockerfiles. So far: the parser ([`dockerfile`]) and the word expansion the
//! build applies to an instruction's arguments when it reaches them ([`shell`]).

pub mod dockerfile;
pub mod shell;

pub use dockerfile::{Dockerfile, DockerfileError, parse};
