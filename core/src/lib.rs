//! ketch: a container engine. This crate is the engine every front door (CLI, daemon, C ABI,
//! Python, Node) wraps; it has no CLI, no FFI and no `anyhow`.

pub mod api;
pub mod client;
pub mod content;
pub mod db;
pub mod diff;
pub mod digest;
pub mod engine;
pub mod error;
pub mod events;
pub mod fsutil;
#[doc(hidden)]
pub mod fuzzing;
pub mod image;
pub mod ipnet;
pub mod model;
pub mod mount;
pub mod network;
pub mod reference;
pub mod runtime;
pub mod server;
pub mod snapshot;
pub mod state;
pub mod system;
#[cfg(test)]
mod testutil;
pub mod tls;
mod util;
pub mod volume;

pub use engine::{Engine, Options, StorageDriver};
pub use error::{Error, ErrorKind, Result};
