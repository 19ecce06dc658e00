//! Builds `ketch-shim` from the workspace this crate is in, in release, into a target
//! directory of its own (the outer build holds the lock on its own), and puts the
//! executable at OUT_DIR/ketch-shim for `include_bytes!`.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let here = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let workspace = here
        .parent()
        .expect("the crate is in the workspace")
        .to_path_buf();
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    // One directory for every build that carries the shim (the wheel's, the Node addon's,
    // debug and check builds), beside the outer build's profiles in its target directory,
    // so the shim is built once, not once per outer build; its own lock, not the outer
    // build's. OUT_DIR is TARGET_DIR/[TRIPLE/]PROFILE/build/PKG-HASH/out (the triple there
    // when the build named one); under OUT_DIR where the layout is not that.
    let triple = std::env::var("TARGET").unwrap_or_default();
    let target = out
        .ancestors()
        .nth(4)
        .and_then(|d| match d.file_name() {
            Some(n) if n == triple.as_str() => d.parent(),
            _ => Some(d),
        })
        .filter(|d| d.join("CACHEDIR.TAG").is_file())
        .map_or_else(|| out.join("target"), |t| t.join("embedded-shim"));
    for p in [
        "shim/src",
        "shim/Cargo.toml",
        "seccomp/src",
        "seccomp/Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", workspace.join(p).display());
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--locked",
            "-p",
            "ketch-shim",
            "--manifest-path",
        ])
        .arg(workspace.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        // What the outer build was told applies to it, not to this one; the shim is carried
        // in a package, so small: no debug information.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        // Nor is `cargo clippy`'s driver: the shim is linted as a member of the workspace,
        // and a build under the driver would not be this one's to reuse.
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CLIPPY_ARGS")
        .env("CARGO_PROFILE_RELEASE_DEBUG", "0")
        .env("CARGO_PROFILE_RELEASE_STRIP", "true")
        .status()
        .expect("run cargo to build ketch-shim");
    assert!(status.success(), "building ketch-shim failed");
    std::fs::copy(target.join("release/ketch-shim"), out.join("ketch-shim"))
        .expect("copy ketch-shim");
}
