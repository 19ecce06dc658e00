//! libengine from C: `examples/c/demo.c`, built with pkg-config against the shared and the
//! static library, imports the busybox fixture, runs a container, reads its logs through
//! the callback and removes it, then attaches to one that writes only once told (through
//! a file) that attach is receiving; embedded and against a daemon; and once more under
//! valgrind, which must find no leak and no invalid access.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ketch_tests::registry::Registry;
use ketch_tests::{
    Daemon, Root, build_c_demo, busybox_rootfs, output_within, require_tool, target_dir,
};

/// A registry whose user `c` has the password `lang`, as the demo logs in.
fn registry(r: &Root) -> Registry {
    let users = ketch_tests::registry::htpasswd(r.dir.path(), "c", "lang");
    Registry::ketch(&["--htpasswd", users.to_str().unwrap()])
}

/// Runs a demo (optionally under a wrapper) on a root or a daemon's URL, with a registry to
/// push to and pull from.
fn demo(r: &Root, wrap: &[&str], program: &Path, target: &str, reg: &Registry) -> Output {
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
        .arg(&reg.addr)
        .env("KETCH_CONFIG", r.dir.path().join("config"))
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
    assert!(out.contains("build: 3 steps, id ok\n"), "{what}: {out}");
    assert!(
        out.contains("registry: pushed 1, pulled 1, digest ok\n"),
        "{what}: {out}"
    );
}

#[test]
fn a_c_program_runs_a_container_embedded_and_remote() {
    require_tool("make");
    require_tool("pkg-config");
    require_tool("cc");
    let r = Root::new();
    let reg = registry(&r);
    let (shared, stat) = build_c_demo(r.dir.path());
    let root = r.path().display().to_string();
    assert_story(&demo(&r, &[], &shared, &root, &reg), "shared, embedded");
    assert_story(&demo(&r, &[], &stat, &root, &reg), "static, embedded");
    let d = Daemon::start(&r);
    let url = format!("unix://{}", d.socket.display());
    assert_story(&demo(&r, &[], &shared, &url, &reg), "shared, remote");
    assert_story(&demo(&r, &[], &stat, &url, &reg), "static, remote");
    assert_eq!(r.ok(&["ps", "-aq"]), "");
}

#[test]
fn a_c_program_runs_clean_under_valgrind() {
    require_tool("make");
    require_tool("pkg-config");
    require_tool("valgrind");
    let r = Root::new();
    let reg = registry(&r);
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
    let o = demo(&r, &valgrind, &shared, &root, &reg);
    assert_story(&o, "valgrind, embedded");
    let d = Daemon::start(&r);
    let url = format!("unix://{}", d.socket.display());
    let o = demo(&r, &valgrind, &shared, &url, &reg);
    assert_story(&o, "valgrind, remote");
}

/// As a user installs it: `make -C capi install PREFIX=...` into a fresh prefix, then a C
/// program built against that prefix with `pkg-config --cflags --libs engine` (and an rpath
/// to its lib/, as for any library outside the loader's paths) runs containers, embedded and
/// through a daemon, with nothing on `PATH` and no `KETCH_SHIM`: the library finds the shim
/// in the prefix's libexec/ketch/.
#[test]
fn an_installed_libengine_runs_containers_with_nothing_on_path() {
    require_tool("make");
    require_tool("pkg-config");
    require_tool("cc");
    let r = Root::new();
    let prefix = r.dir.path().join("prefix");
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut make = Command::new("make");
    // As a user runs it: without the variables `cargo test` sets for this test
    // (CARGO_MANIFEST_DIR and the like), which build scripts watch and which would have
    // cargo build the release library again.
    for (k, _) in std::env::vars_os() {
        if k.to_str()
            .is_some_and(|k| k.starts_with("CARGO_") && k != "CARGO_HOME")
        {
            make.env_remove(k);
        }
    }
    let o = make
        .arg("-C")
        .arg(checkout.join("capi"))
        .arg("install")
        .arg(format!("PREFIX={}", prefix.display()))
        .arg(format!("TARGET_DIR={}", target_dir().display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "make install: {o:?}");
    for f in [
        "lib/libengine.so",
        "lib/libengine.a",
        "lib/pkgconfig/engine.pc",
        "include/engine.h",
        "libexec/ketch/ketch-shim",
    ] {
        assert!(prefix.join(f).is_file(), "{f} is not installed");
    }
    let flags = Command::new("pkg-config")
        .args(["--cflags", "--libs", "engine"])
        .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig"))
        .output()
        .unwrap();
    assert!(flags.status.success(), "pkg-config: {flags:?}");
    let flags = String::from_utf8(flags.stdout).unwrap();
    let app = r.dir.path().join("app");
    std::fs::create_dir(&app).unwrap();
    let program = app.join("demo");
    let o = Command::new("cc")
        .arg(checkout.join("examples/c/demo.c"))
        .args(flags.split_whitespace())
        .arg(format!("-Wl,-rpath,{}", prefix.join("lib").display()))
        .arg("-o")
        .arg(&program)
        .output()
        .unwrap();
    assert!(o.status.success(), "cc: {o:?}");
    let reg = registry(&r);
    let run = |target: &str| {
        let mut cmd = Command::new(&program);
        cmd.arg(target)
            .arg(busybox_rootfs())
            .arg(&reg.addr)
            .current_dir(&app)
            .env_clear()
            .env("KETCH_CONFIG", r.dir.path().join("config"))
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("KETCH_BRIDGE", &r.bridge)
            .env("KETCH_IP_FORWARD", "false");
        output_within(&mut cmd, 300)
    };
    let root = r.dir.path().join("c-root");
    assert_story(&run(&root.display().to_string()), "installed, embedded");
    let d = Daemon::start(&r);
    assert_story(
        &run(&format!("unix://{}", d.socket.display())),
        "installed, remote",
    );
    drop(d);
    assert_eq!(r.ok(&["ps", "-aq"]), "");
}
