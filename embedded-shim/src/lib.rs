//! `ketch-shim`, built by this crate's build script (release, without debug information) and
//! carried as bytes: a package that cannot count on an installed shim (a Python wheel, a Node
//! addon) hands them to the engine (`ketch::Options::embedded_shim`), which writes them out
//! once into its root and runs them from there.

/// The `ketch-shim` executable.
pub static SHIM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ketch-shim"));
