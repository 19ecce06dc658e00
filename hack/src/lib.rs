//! Nothing to use: this crate exists for the features its dependencies are asked for (see
//! its `Cargo.toml`).
