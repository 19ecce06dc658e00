//! libengine from C: `examples/c/demo.c`, built with pkg-config against the shared and the
//! static library, imports the busybox fixture, runs a container, reads its logs through
//! the callback and removes it, then attaches to one that writes only once told (through
//! a file) that attach is receiving; embedded and against a daemon; and once more under
//! valgrind, which must find no leak and no invalid access.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ketch_tests::{
    Daemon, Root, build_c_demo, busybox_rootfs, output_within, require_tool, target_dir,
};

/// Runs a demo (optionally under a wrapper) on a root or a daemon's URL.
fn demo(r: &Root, wrap: &[&str], program: &Path, target: &str) -> Output {
    let (first, rest) = match wrap.split_first() {
        Some((f, rest)) => (PathBuf::from(f), rest.to_vec()),
        None => (program.to_path_buf(), vec![]),
    };
    let mut cmd = Command::new(first);
    cmd.args(rest);
    if !wrap.is_empty() {
        cmd.arg(program);
    }
    cmd.arg(target)
        .arg(busybox_rootfs())
        .env("KETCH_SHIM", target_dir().join("debug/ketch-shim"))
        .env("KETCH_BRIDGE", &r.bridge)
        .env("KETCH_IP_FORWARD", "false");
    output_within(&mut cmd, 300)
}

fn assert_story(o: &Output, what: &str) {
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{what}: {o:?}");
    assert!(out.contains("hello from C\n"), "{what}: {out}");
    assert!(out.contains("exit 3, 2 log records\n"), "{what}: {out}");
    assert!(
        out.contains("events: create start die destroy\n"),
        "{what}: {out}"
    );
    assert!(
        out.contains("attached\nattach: 1 records, exit 7\n"),
        "{what}: {out}"
    );
    assert!(err.contains("to stderr\n"), "{what}: {err}");
}

#[test]
fn a_c_program_runs_a_container_embedded_and_remote() {
    require_tool("make");
    require_tool("pkg-config");
    require_tool("cc");
    let r = Root::new();
    let (shared, stat) = build_c_demo(r.dir.path());
    let root = r.path().display().to_string();
    assert_story(&demo(&r, &[], &shared, &root), "shared, embedded");
    assert_story(&demo(&r, &[], &stat, &root), "static, embedded");
    let d = Daemon::start(&r);
    let url = format!("unix://{}", d.socket.display());
    assert_story(&demo(&r, &[], &shared, &url), "shared, remote");
    assert_story(&demo(&r, &[], &stat, &url), "static, remote");
    assert_eq!(r.ok(&["ps", "-aq"]), "");
}

#[test]
fn a_c_program_runs_clean_under_valgrind() {
    require_tool("make");
    require_tool("pkg-config");
    require_tool("valgrind");
    let r = Root::new();
    let (shared, _) = build_c_demo(r.dir.path());
    let valgrind = [
        "valgrind",
        "-q",
        "--leak-check=full",
        "--show-leak-kinds=definite,indirect",
        "--errors-for-leak-kinds=definite,indirect",
        "--error-exitcode=99",
    ];
    let root = r.path().display().to_string();
    let o = demo(&r, &valgrind, &shared, &root);
    assert_story(&o, "valgrind, embedded");
    let d = Daemon::start(&r);
    let url = format!("unix://{}", d.socket.display());
    let o = demo(&r, &valgrind, &shared, &url);
    assert_story(&o, "valgrind, remote");
}
