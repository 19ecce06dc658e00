//! The Node front door: the `node --test` suite of `bindings-node` (embedded and through a
//! daemon), its TypeScript types against a program that uses them, and the generated loader
//! and types being those the sources make, and the packed tarball installed as a user installs
//! it. The addon is the one `scripts/setup --tests` built with `npm pack` in `bindings-node`.

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
        "bindings-node is not built: run scripts/setup --tests (npm install and npm pack in bindings-node)"
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
    let htpasswd = ketch_tests::registry::htpasswd(r.dir.path(), "node", "js");
    let o = output_within(
        Command::new("node")
            .args(["--test", "test/"])
            .current_dir(&pkg)
            .env("KETCH_TEST_HTPASSWD", htpasswd)
            .env("KETCH_CONFIG", r.dir.path().join("config"))
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

/// A Node program that runs `echo WORDS...` in a busybox container on `engine` and prints
/// its output.
const ECHO: &str = r#"
async function echo(e, words) {
  const id = await e.createContainer({ Image: 'busybox', Cmd: ['echo', ...words], HostConfig: { NetworkMode: 'none' } })
  await e.start(id)
  await e.wait(id)
  let out = ''
  for await (const rec of e.logs(id)) out += rec.data.toString()
  await e.remove(id)
  process.stdout.write(out)
}
"#;

/// The tarball `npm pack` wrote.
fn tarball() -> PathBuf {
    ketch_tests::only_file_in(&target_dir().join("npm"), "run scripts/setup --tests")
}

/// As a user gets it: the tarball installed with npm into a fresh app outside the checkout,
/// with nothing of the workspace on `PATH` and no `KETCH_SHIM`, installs without building or
/// fetching anything, and runs a container that prints, embedded (with the shim the addon
/// carries) and through a daemon. Installing from the source folder unbuilt says how to build.
#[test]
fn the_packed_tarball_installs_in_a_fresh_app_and_runs_containers() {
    require_tool("npm");
    let tgz = tarball();
    let r = Root::new();
    let _left = RootsBelow::new(&r, r.dir.path());
    let app = r.dir.path().join("app");
    std::fs::create_dir(&app).unwrap();
    std::fs::write(
        app.join("package.json"),
        r#"{"name": "app", "version": "1.0.0", "private": true}"#,
    )
    .unwrap();
    let path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    let run = |cmd: &mut Command| {
        let o = cmd
            .current_dir(&app)
            .env_clear()
            .env("PATH", path)
            .env("HOME", &app)
            .env("KETCH_BRIDGE", &r.bridge)
            .env("KETCH_IP_FORWARD", "false")
            .output()
            .unwrap();
        assert!(o.status.success(), "{cmd:?}: {}", show(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    // Offline: the tarball needs nothing from the registry, and runs no install script.
    run(Command::new("npm")
        .args([
            "install",
            "--offline",
            "--no-audit",
            "--no-fund",
            "--ignore-scripts=false",
        ])
        .arg(&tgz));
    let installed = app.join("node_modules/ketch");
    assert!(
        !installed.join("node_modules").exists(),
        "it brought dependencies along"
    );
    let root = r.dir.path().join("node-root");
    let script = ECHO.to_string()
        + r#"
const ketch = require('ketch')
;(async () => {
  const e = new ketch.Engine({ root: process.argv[1] })
  await e.importImage(process.argv[2], 'busybox:latest')
  await echo(e, ['hello', 'from', 'the', 'tarball'])
})().catch((err) => { console.error(err); process.exit(1) })
"#;
    let out = run(Command::new("node")
        .args(["-e", &script])
        .arg(&root)
        .arg(busybox_rootfs()));
    assert_eq!(out, "hello from the tarball\n");
    r.busybox("busybox");
    let d = ketch_tests::Daemon::start(&r);
    let script = ECHO.to_string()
        + r#"
const ketch = require('ketch')
;(async () => {
  await echo(ketch.connect('unix://' + process.argv[1]), ['hello', 'through', 'the', 'daemon'])
})().catch((err) => { console.error(err); process.exit(1) })
"#;
    let out = run(Command::new("node").args(["-e", &script]).arg(&d.socket));
    assert_eq!(out, "hello through the daemon\n");
    drop(d);
    // The package's source folder, unbuilt, installed as a folder: the error says how to
    // build it.
    let src = r.dir.path().join("bindings-node");
    std::fs::create_dir(&src).unwrap();
    for f in [
        "package.json",
        "index.js",
        "native.js",
        "index.d.ts",
        "native.d.ts",
    ] {
        std::fs::copy(package().join(f), src.join(f)).unwrap();
    }
    std::fs::remove_dir_all(app.join("node_modules")).unwrap();
    run(Command::new("npm")
        .args(["install", "--offline", "--no-audit", "--no-fund"])
        .arg(&src));
    let o = Command::new("node")
        .args(["-e", "require('ketch')"])
        .current_dir(&app)
        .env_clear()
        .env("PATH", path)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        show(&o).contains("native addon is not built") && show(&o).contains("npm run build"),
        "{}",
        show(&o)
    );
}
