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
    cmd.env("KETCH_TEST_ROOTFS", busybox_rootfs())
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
