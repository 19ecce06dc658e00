//! ketch: a container engine. This crate is the engine every front door (CLI, daemon, C ABI,
//! Python, Node) wraps; it has no CLI, no FFI and no `anyhow`.
//!
//! # Layers
//!
//! Bottom to top; a module imports only from its own layer and those below
//! (`tests/architecture.rs` fails otherwise, and on a circle).
//!
//! - **Foundations** — [`digest`], [`mod@reference`], [`model`] (the Docker Engine API's JSON
//!   shapes), [`fsutil`], [`ipnet`], [`error`]: pure types and helpers. [`Error`] is an
//!   [`ErrorKind`] and a module's own error; it knows no transport. [`http`] and [`tls`]:
//!   codecs the daemon, its client and the registry server share.
//! - **Stores** — [`db`] (the SQLite file: every change one transaction), [`content`] (the
//!   blob store: a blob appears whole or not at all), [`mount`] (mounts as data), [`etcd`]
//!   (the cluster store overlay networks share, spoken to through its JSON gateway).
//! - **Layers** — [`snapshot`] (overlay and copy drivers under one contract), [`diff`]
//!   (hostile layer tars applied inside a root, trees compared).
//! - **State** — [`state::State`], the opened root (paths, database, content store,
//!   snapshotter, settings) with no operations of its own; [`events`], recorded in its
//!   database.
//! - **Resources** — [`image::Images`], [`volume::Volumes`], [`network::Networks`]: each a
//!   service over `&State`, with its own error and kind. A resource never calls a higher
//!   one: what it must know of containers (a volume's or an image's users, the names a
//!   network's name server answers for) it reads from the containers' rows in the
//!   database, or its caller gives it (the names a prune must keep).
//! - **Containers** — [`runtime::Containers`]: records, bundles and monitors, over the
//!   three resources. Only the containers can say whether a container still holds its
//!   endpoints (its monitor's life), so they release the stale ones before a network hands
//!   out addresses or counts its users.
//! - **Producers** — [`registry::Registries`]: pull and push over the OCI distribution API
//!   into and out of the images, credentials, and [`registry::serve`], a registry server;
//!   [`build`]: Dockerfiles read (the parser and word expansion so far); [`cluster`]: a
//!   daemon keeping its host's side of the overlay networks current with the cluster store.
//! - **Facade** — [`Engine`] opens a root, recovers what a killed process left, and
//!   composes the services; [`api::Api`] is every operation, the same over an embedded
//!   engine and a daemon, and [`api`] names every type a front door passes through it;
//!   [`system`] (df, prune) spans the resources.
//! - **Wire** — [`client`] and [`server`] (the Docker Engine API over HTTP). The client
//!   maps a daemon's statuses to [`ErrorKind`]s at its own boundary.

pub mod api;
pub mod build;
pub mod client;
pub mod cluster;
pub mod content;
pub mod db;
pub mod diff;
pub mod digest;
pub mod engine;
pub mod error;
pub mod etcd;
pub mod events;
pub mod fsutil;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod image;
pub mod ipnet;
pub mod model;
pub mod mount;
pub mod network;
pub mod reference;
pub mod registry;
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

pub use client::Client;
pub use engine::{Engine, Options, StorageDriver};
pub use error::{Error, ErrorKind, Result};
pub use tls::TlsFiles;
