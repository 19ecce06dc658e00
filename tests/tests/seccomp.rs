//! The seccomp filter as a container meets it: Docker's default profile refuses what Docker
//! refuses, in every ABI an x86_64 process can use (`int 0x80`, x32 numbers), answers what it
//! allows (i386 `getpid` returns the PID instead of killing the process), lifts its rules
//! with the capabilities they name, and gives way to a profile of the user's own. Each check
//! runs through the CLI and through a daemon; each refusal is shown to come from the filter
//! by the same call answered otherwise by the kernel under `seccomp=unconfined`.

use std::collections::BTreeMap;

use ketch_tests::hostile::{Front, both, text};
use ketch_tests::{Root, c_program};

/// Runs `tests/fixtures/seccomp-probe.c` in a busybox container with `extra` flags: what
/// each of its calls returned (`ok` or an errno).
fn probe(f: &Front, extra: &[&str]) -> BTreeMap<String, String> {
    let bin = c_program("seccomp-probe");
    let vol = format!("{}:/probe:ro", bin.display());
    let mut args = vec!["run", "--rm"];
    args.extend(extra);
    args.extend(["-v", &vol, "busybox", "/probe"]);
    f.ok(&args)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const EPERM: &str = "1";

/// Refused by Docker's default profile for a container with Docker's default capabilities;
/// `true` where the kernel itself answers with something other than EPERM when no filter
/// stands in the way (bad arguments, a missing address family, no x32 here), so that the
/// EPERM is shown to be the filter's. The others need capabilities the container lacks.
const REFUSED: &[(&str, bool)] = &[
    ("io_uring_setup", true),
    ("io_uring_enter", true),
    ("io_uring_register", true),
    ("keyctl", true),
    ("add_key", true),
    ("request_key", true),
    ("perf_event_open", true),
    ("userfaultfd", true),
    ("socket_vsock", true),
    ("socket_alg", true),
    ("personality_no_randomize", true),
    ("mount", false),
    ("unshare_user", false),
    ("unshare_mount", false),
    ("setns", false),
    ("bpf", false),
    ("kexec_load", false),
    ("init_module", false),
    ("swapon", false),
    ("acct", false),
    ("syslog", false),
    ("fsopen", false),
    ("open_tree", false),
    ("open_by_handle_at", false),
    ("clone_newuser", false),
    ("i386_io_uring_setup", true),
    ("i386_mount", false),
    ("i386_unshare", false),
    ("i386_socket_vsock", true),
    ("x32_io_uring_setup", true),
    ("x32_unshare", false),
];

#[test]
fn the_default_profile_refuses_what_dockers_refuses_in_every_abi() {
    let r = Root::new();
    r.busybox("busybox");
    both(&r, |f| {
        let on = probe(f, &[]);
        let off = probe(f, &["--security-opt", "seccomp=unconfined"]);
        let what = f.name();
        for &(name, kernel_differs) in REFUSED {
            let got = on.get(name).map(String::as_str);
            assert_eq!(got, Some(EPERM), "{what}: {name}: {on:?}");
            let got = off.get(name).map(String::as_str);
            assert!(
                !kernel_differs || (got.is_some() && got != Some(EPERM)),
                "{what}: unconfined {name}: {off:?}"
            );
        }
        // clone3 is ENOSYS, so libc falls back to clone (whose flags the filter can read).
        assert_eq!(on["clone3"], "38", "{what}");
        assert_ne!(off["clone3"], "38", "{what}");
        // What Docker allows still works, i386 included: `int 0x80` getpid returns the PID.
        for o in [&on, &off] {
            assert_eq!(o["i386_getpid"], "pid", "{what}: {o:?}");
            assert_eq!(o["socket_unix"], "ok", "{what}");
            assert_eq!(o["personality_query"], "ok", "{what}");
        }
        // An x32 call the profile allows reaches the kernel (which has no x32 here).
        assert_ne!(on["x32_getpid"], EPERM, "{what}");
    });
}

#[test]
fn capabilities_lift_the_rules_that_name_them() {
    let r = Root::new();
    r.busybox("busybox");
    both(&r, |f| {
        let admin = probe(f, &["--cap-add", "SYS_ADMIN"]);
        let what = f.name();
        // The kernel's answers now: no such mount point, bad clone3 arguments.
        assert_eq!(admin["mount"], "2", "{what}: {admin:?}");
        assert_eq!(admin["i386_mount"], "14", "{what}: {admin:?}");
        assert_ne!(admin["clone3"], "38", "{what}");
        assert_eq!(admin["unshare_mount"], "ok", "{what}");
        // Still refused: not lifted by CAP_SYS_ADMIN.
        assert_eq!(admin["io_uring_setup"], EPERM, "{what}");
        assert_eq!(admin["kexec_load"], EPERM, "{what}");
        // Privileged containers run unconfined, as with Docker.
        let privileged = probe(f, &["--privileged"]);
        assert_ne!(privileged["io_uring_setup"], EPERM, "{what}");
    });
}

#[test]
fn a_profile_of_ones_own() {
    let r = Root::new();
    r.busybox("busybox");
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("no-mkdir.json");
    std::fs::write(
        &profile,
        r#"{
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}
            ]
        }"#,
    )
    .unwrap();
    let typo = dir.path().join("typo.json");
    std::fs::write(
        &typo,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdirr"], "action": "SCMP_ACT_ERRNO"}]}"#,
    )
    .unwrap();
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{\"defaultAction\": ").unwrap();
    let opt = |p: &std::path::Path| format!("seccomp={}", p.display());
    both(&r, |f| {
        let what = f.name();
        let o = f.run(&[
            "run",
            "--rm",
            "--security-opt",
            &opt(&profile),
            "busybox",
            "mkdir",
            "/x",
        ]);
        assert!(!o.status.success(), "{what}: mkdir ran: {}", text(&o));
        assert!(
            text(&o).contains("Permission denied"),
            "{what}: {}",
            text(&o)
        );
        // Everything else is allowed by this profile, io_uring included.
        let own = probe(f, &["--security-opt", &opt(&profile)]);
        assert_ne!(own["io_uring_setup"], EPERM, "{what}");
        // The profile is kept with the container, as Docker keeps it.
        let id = f.ok(&[
            "create",
            "--security-opt",
            &opt(&profile),
            "busybox",
            "true",
        ]);
        let security = f.ok(&[
            "inspect",
            "--format",
            "{{json .HostConfig.SecurityOpt}}",
            id.trim(),
        ]);
        assert!(security.contains("mkdirat"), "{what}: {security}");
        f.ok(&["rm", id.trim()]);
        // Mistakes are named, and nothing is created.
        let before = f.ok(&["ps", "-aq"]);
        let o = f.run(&[
            "run",
            "--rm",
            "--security-opt",
            &opt(&typo),
            "busybox",
            "true",
        ]);
        assert_eq!(o.status.code(), Some(125), "{what}: {}", text(&o));
        assert!(
            text(&o).contains("unknown system call \"mkdirr\""),
            "{what}: {}",
            text(&o)
        );
        let o = f.run(&[
            "run",
            "--rm",
            "--security-opt",
            &opt(&broken),
            "busybox",
            "true",
        ]);
        assert_eq!(o.status.code(), Some(125), "{what}: {}", text(&o));
        assert!(text(&o).contains("not JSON"), "{what}: {}", text(&o));
        let missing = dir.path().join("missing.json");
        let o = f.run(&[
            "run",
            "--rm",
            "--security-opt",
            &opt(&missing),
            "busybox",
            "true",
        ]);
        assert_eq!(o.status.code(), Some(125), "{what}: {}", text(&o));
        assert!(
            text(&o).contains("opening seccomp profile"),
            "{what}: {}",
            text(&o)
        );
        assert_eq!(f.ok(&["ps", "-aq"]), before, "{what}");
    });
}
