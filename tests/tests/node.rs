//! The Node front door: the `node --test` suite of `bindings-node` (embedded and through a
//! daemon), its TypeScript types against a program that uses them, and the generated loader
//! and types being those the sources make. The addon is the one `scripts/setup` built with
//! `npm install` in `bindings-node`.

use std::path::{Path, PathBuf};
use std::process::Command;

use ketch_tests::{
    Root, RootsBelow, busybox_rootfs, ketch_bin, output_within, require_tool, target_dir,
};

fn package() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bindings-node");
    let built = std::fs::read_dir(&p)
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().ends_with(".node"));
    assert!(
        built && p.join("node_modules").exists(),
        "bindings-node is not built: run scripts/setup (npm install in bindings-node)"
    );
    p
}

fn show(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn the_node_suite_passes_embedded_and_remote() {
    let pkg = package();
    let r = Root::new();
    let _left = RootsBelow::new(&r, r.dir.path());
    let o = output_within(
        Command::new("node")
            .args(["--test", "test/"])
            .current_dir(&pkg)
            .env("KETCH_TEST_ROOTFS", busybox_rootfs())
            .env("KETCH_BIN", ketch_bin())
            .env("KETCH_SHIM", target_dir().join("debug/ketch-shim"))
            .env("KETCH_BRIDGE", &r.bridge)
            .env("KETCH_IP_FORWARD", "false")
            .env("TMPDIR", r.dir.path())
            .env_remove("KETCH_ROOT"),
        300,
    );
    assert!(o.status.success(), "node --test:\n{}", show(&o));
}

#[test]
fn the_types_describe_the_module() {
    let pkg = package();
    let o = Command::new(pkg.join("node_modules/.bin/tsc"))
        .args(["--noEmit", "--strict", "--types", "node", "test/types.ts"])
        .current_dir(&pkg)
        .output()
        .unwrap();
    assert!(o.status.success(), "tsc:\n{}", show(&o));
}

/// The loader and types napi-rs wrote at the build (`scripts/setup`) are the committed
/// ones: both tracked, and the same as in the checked-out commit.
#[test]
fn the_generated_loader_and_types_are_committed() {
    let pkg = package();
    require_tool("git");
    let generated = ["native.js", "native.d.ts"];
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .args(generated)
            .current_dir(&pkg)
            .output()
            .unwrap()
    };
    let o = git(&["ls-files", "--error-unmatch", "--"]);
    assert!(o.status.success(), "not committed:\n{}", show(&o));
    let o = git(&["diff", "--exit-code", "HEAD", "--"]);
    assert!(
        o.status.success(),
        "native.js / native.d.ts are not what the build made: commit what it made\n{}",
        show(&o)
    );
}
