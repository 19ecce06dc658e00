//! Empty: Cargo resolves a crate's build dependencies (here, features asked of the
//! compiler side's shared crates) only for a crate that has a build script.

fn main() {}
