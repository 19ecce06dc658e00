//! The Python front door: the pytest suite of `bindings-python` (embedded and through a
//! daemon), its type stubs against the module, and one state root shared at once by a C
//! program, a Python script and the CLI. The module is the one `scripts/setup` installed
//! into `target/test-venv` with `pip install ./bindings-python`.

use std::path::{Path, PathBuf};
use std::process::Command;

use ketch_tests::{
    Root, RootsBelow, build_c_demo, busybox_rootfs, ketch_bin, output_within, target_dir,
};

fn python() -> PathBuf {
    let p = target_dir().join("test-venv/bin/python");
    let ok = Command::new(&p)
        .args(["-c", "import ketch, pytest"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "{} cannot import ketch and pytest: run scripts/setup",
        p.display()
    );
    p
}

fn bindings() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../bindings-python")
}

/// A command with what the tests' engines need: the shim, and this root's bridge.
fn with_env(cmd: &mut Command, r: &Root) {
    let htpasswd = ketch_tests::registry::htpasswd(r.dir.path(), "py", "thon");
    cmd.env("KETCH_TEST_ROOTFS", busybox_rootfs())
        .env("KETCH_TEST_HTPASSWD", htpasswd)
        // Registry credentials stay in the test's directory, never the user's.
        .env("KETCH_CONFIG", r.dir.path().join("config"))
        .env("KETCH_BIN", ketch_bin())
        .env("KETCH_SHIM", target_dir().join("debug/ketch-shim"))
        .env("KETCH_BRIDGE", &r.bridge)
        .env("KETCH_IP_FORWARD", "false")
        .env_remove("KETCH_ROOT")
        .env_remove("KETCH_HOST");
}

#[test]
fn the_pytest_suite_passes_embedded_and_remote() {
    let py = python();
    let r = Root::new();
    let _left = RootsBelow::new(&r, r.dir.path());
    let mut cmd = Command::new(py);
    cmd.args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(bindings().join("tests"))
        .arg("--basetemp")
        .arg(r.dir.path().join("pytest"));
    with_env(&mut cmd, &r);
    // Many roots, one after another and at once: each makes a bridge of its own, and they
    // go with the roots (`RootsBelow`).
    cmd.env_remove("KETCH_BRIDGE");
    let o = output_within(&mut cmd, 600);
    assert!(
        o.status.success(),
        "pytest:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn the_type_stubs_match_the_module() {
    let py = python();
    let o = Command::new(py)
        .args(["-m", "mypy.stubtest", "ketch._native"])
        .current_dir(bindings())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "stubtest:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A C program, a Python script and the CLI on one root at the same time: no lock error,
/// nothing lost.
#[test]
fn c_python_and_the_cli_share_a_root() {
    let py = python();
    let r = Root::new();
    r.busybox("busybox");
    let (demo, _) = build_c_demo(&r.dir.path().join("c"));
    let root = r.path();
    std::thread::scope(|s| {
        let c = s.spawn(|| {
            for _ in 0..3 {
                let mut cmd = Command::new(&demo);
                cmd.arg(&root).arg(busybox_rootfs());
                with_env(&mut cmd, &r);
                let o = cmd.output().unwrap();
                assert!(o.status.success(), "C: {o:?}");
            }
        });
        let p = s.spawn(|| {
            let script = "import ketch, sys\n\
                e = ketch.Engine(root=sys.argv[1])\n\
                for i in range(6):\n\
                \x20   assert e.containers.run('busybox', ['echo', str(i)], remove=True, network='none') == f'{i}\\n'.encode()\n";
            let mut cmd = Command::new(&py);
            cmd.args(["-c", script]).arg(&root);
            with_env(&mut cmd, &r);
            let o = cmd.output().unwrap();
            assert!(o.status.success(), "Python: {o:?}");
        });
        for i in 0..6 {
            let out = r.ok(&[
                "run",
                "--rm",
                "--network",
                "none",
                "busybox",
                "echo",
                &i.to_string(),
            ]);
            assert_eq!(out, format!("{i}\n"));
            r.ok(&["ps", "-a"]);
        }
        c.join().unwrap();
        p.join().unwrap();
    });
    assert_eq!(r.ok(&["ps", "-aq"]), "");
    assert!(r.ok(&["images"]).contains("busybox"));
}

/// The wheel `scripts/setup` built (`pip wheel ./bindings-python`: maturin, release).
fn wheel() -> PathBuf {
    ketch_tests::only_file_in(&target_dir().join("wheels"), "run scripts/setup --tests")
}

/// What `git status` says of the checkout: a package install must add nothing to it.
fn checkout_status() -> String {
    let o = Command::new("git")
        .args(["status", "--porcelain"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// As a user gets it: the wheel installed with pip into a fresh virtual environment outside
/// the checkout, with nothing of the workspace on `PATH` and no `KETCH_SHIM`, runs a
/// container that prints, embedded (with the shim the package carries) and through a daemon.
#[test]
fn the_wheel_installs_in_a_fresh_venv_and_runs_containers() {
    let wheel = wheel();
    let before = checkout_status();
    let r = Root::new();
    let _left = RootsBelow::new(&r, r.dir.path());
    let home = r.dir.path().join("user");
    std::fs::create_dir(&home).unwrap();
    let path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    let run = |cmd: &mut Command| {
        let o = cmd
            .current_dir(&home)
            .env_clear()
            .env("PATH", path)
            .env("HOME", &home)
            .env("KETCH_IP_FORWARD", "false")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(o.status.success(), "{cmd:?}: {text}");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    run(Command::new("python3").args(["-m", "venv", "venv"]));
    let py = home.join("venv/bin/python");
    run(Command::new(&py)
        .args(["-m", "pip", "install", "-q", "--no-index"])
        .arg(&wheel));
    let root = r.dir.path().join("py-root");
    let script = r#"
import sys, ketch
e = ketch.Engine(root=sys.argv[1])
e.images.import_(sys.argv[2], "busybox", "latest")
print(e.containers.run("busybox", ["echo", "hello from the wheel"], remove=True).decode(), end="")
"#;
    let out = run(Command::new(&py)
        .args(["-c", script])
        .arg(&root)
        .arg(busybox_rootfs()));
    assert_eq!(out, "hello from the wheel\n");
    // The shim the package carries, written into the root.
    let bin: Vec<String> = std::fs::read_dir(root.join("bin"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    assert!(
        bin.len() == 1 && bin[0].starts_with("ketch-shim-"),
        "{bin:?}"
    );
    // Through a daemon on another root.
    r.busybox("busybox");
    let d = ketch_tests::Daemon::start(&r);
    let script = r#"
import sys, ketch
e = ketch.connect("unix://" + sys.argv[1])
print(e.containers.run("busybox", ["echo", "hello through the daemon"], remove=True).decode(), end="")
"#;
    let out = run(Command::new(&py).args(["-c", script]).arg(&d.socket));
    assert_eq!(out, "hello through the daemon\n");
    drop(d);
    assert_eq!(
        checkout_status(),
        before,
        "the install wrote into the checkout"
    );
}
