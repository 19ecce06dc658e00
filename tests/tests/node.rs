//! The Node front door: the `node --test` suite of `bindings-node` (embedded and through a
//! daemon), its TypeScript types against a program that uses them, and the generated loader
//! and types being those the sources make. The addon is the one `scripts/setup` built with
//! `npm install` in `bindings-node`.

use std::path::{Path, PathBuf};
use std::process::Command;

use ketch_tests::{Root, busybox_rootfs, ketch_bin, require_tool, target_dir};

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
    let o = Command::new("node")
        .args(["--test", "test/"])
        .current_dir(&pkg)
        .env("KETCH_TEST_ROOTFS", busybox_rootfs())
        .env("KETCH_BIN", ketch_bin())
        .env("KETCH_SHIM", target_dir().join("debug/ketch-shim"))
        .env("KETCH_BRIDGE", &r.bridge)
        .env("KETCH_IP_FORWARD", "false")
        .env("TMPDIR", r.dir.path())
        .env_remove("KETCH_ROOT")
        .output()
        .unwrap();
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
    // The loader and types napi-rs generated at the build are the committed ones.
    require_tool("git");
    {
        let o = Command::new("git")
            .args(["diff", "--exit-code", "--", "native.js", "native.d.ts"])
            .current_dir(&pkg)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "native.js / native.d.ts are stale: commit what the build made\n{}",
            show(&o)
        );
    }
}
