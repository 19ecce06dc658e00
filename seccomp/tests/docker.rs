//! The compiled built-in profile against Docker's default profile, call by call.
//!
//! `docker-default.json` is Docker's default profile as moby ships it (module
//! `github.com/moby/profiles/seccomp` v0.2.3, vendored by moby at commit 35797366d7cd). It is
//! read here by a deliberately plain interpreter of Docker's rules, written from moby's
//! `setupSeccomp` and libseccomp's documented behaviour, sharing nothing with the crate but
//! the system call tables. For every ABI a host runs, every call those tables know, a set of
//! argument values that sits on every edge the profile's conditions draw, several
//! capability sets and two kernels, the program compiled from ketch's built-in profile must
//! answer at least as strictly as Docker does; compiled from Docker's own profile, exactly as
//! Docker does.

use ketch_seccomp::arch::{self, Arch};
use ketch_seccomp::bpf::{Call, evaluate};
use ketch_seccomp::{Host, Profile, compile};
use serde_json::Value;

const DOCKER: &str = include_str!("docker-default.json");

const ALLOW: u32 = 0x7fff_0000;
const ERRNO: u32 = 0x0005_0000;
const KILL_PROCESS: u32 = 0x8000_0000;

/// Docker's answer to one call, read straight from its JSON.
fn docker_answer(
    profile: &Value,
    host: Arch,
    kernel: (u32, u32),
    caps: &[&str],
    abi: Arch,
    name: &str,
    args: &[u64; 6],
) -> u32 {
    // The ABIs: the host's `archMap` entry.
    let map = profile["archMap"].as_array().unwrap();
    let entry = map
        .iter()
        .find(|m| m["architecture"] == host.scmp_name())
        .unwrap();
    let mut abis = vec![entry["architecture"].as_str().unwrap().to_string()];
    for s in entry["subArchitectures"].as_array().into_iter().flatten() {
        abis.push(s.as_str().unwrap().to_string());
    }
    if !abis.iter().any(|a| a == abi.scmp_name()) {
        return KILL_PROCESS;
    }
    let short = host.short_name();
    let version = |v: &Value| -> (u32, u32) {
        let s = v.as_str().unwrap();
        let (a, b) = s.split_once('.').unwrap();
        (a.parse().unwrap(), b.parse().unwrap())
    };
    let strs = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    let narrow = matches!(abi, Arch::X86 | Arch::X32 | Arch::Arm);
    let mut unconditional = None;
    let mut first_conditional = None;
    for rule in profile["syscalls"].as_array().unwrap() {
        if !strs(&rule["names"]).iter().any(|n| n == name) {
            continue;
        }
        let inc = &rule["includes"];
        let exc = &rule["excludes"];
        if strs(&exc["arches"]).iter().any(|a| a == short)
            || strs(&exc["caps"])
                .iter()
                .any(|c| caps.contains(&c.as_str()))
            || (!exc["minKernel"].is_null() && kernel >= version(&exc["minKernel"]))
        {
            continue;
        }
        let arches = strs(&inc["arches"]);
        if (!arches.is_empty() && !arches.iter().any(|a| a == short))
            || !strs(&inc["caps"])
                .iter()
                .all(|c| caps.contains(&c.as_str()))
            || (!inc["minKernel"].is_null() && kernel < version(&inc["minKernel"]))
        {
            continue;
        }
        let action = match rule["action"].as_str().unwrap() {
            "SCMP_ACT_ALLOW" => ALLOW,
            "SCMP_ACT_ERRNO" => ERRNO | rule["errnoRet"].as_u64().unwrap_or(1) as u32,
            other => panic!("Docker's profile has {other}"),
        };
        let conds = rule["args"].as_array().cloned().unwrap_or_default();
        if conds.is_empty() {
            unconditional.get_or_insert(action);
            continue;
        }
        let holds = conds.iter().all(|c| {
            let i = c["index"].as_u64().unwrap() as usize;
            let (mut x, mut v) = (args[i], c["value"].as_u64().unwrap());
            let mut v2 = c["valueTwo"].as_u64().unwrap_or(0);
            if narrow {
                (x, v, v2) = (x as u32 as u64, v as u32 as u64, v2 as u32 as u64);
            }
            match c["op"].as_str().unwrap() {
                "SCMP_CMP_EQ" => x == v,
                "SCMP_CMP_NE" => x != v,
                "SCMP_CMP_LT" => x < v,
                "SCMP_CMP_LE" => x <= v,
                "SCMP_CMP_GT" => x > v,
                "SCMP_CMP_GE" => x >= v,
                "SCMP_CMP_MASKED_EQ" => x & v == v2,
                other => panic!("{other}"),
            }
        });
        if holds && first_conditional.is_none() {
            first_conditional = Some(action);
        }
    }
    let default = ERRNO | profile["defaultErrnoRet"].as_u64().unwrap() as u32;
    first_conditional.or(unconditional).unwrap_or(default)
}

/// How much an answer lets through: higher is stricter.
fn strictness(ret: u32) -> u32 {
    match ret & 0xffff_0000 {
        ALLOW => 0,
        0x7ffc_0000 => 1, // log
        0x7ff0_0000 => 2, // trace
        ERRNO | 0x0003_0000 => 3,
        0 => 4, // kill thread
        KILL_PROCESS => 5,
        other => panic!("{other:#x}"),
    }
}

/// Argument values on both sides of every constant the profile compares with.
fn samples(profile: &Value) -> Vec<u64> {
    let mut out = vec![0, 1, u64::MAX, 1 << 32, u32::MAX as u64];
    for rule in profile["syscalls"].as_array().unwrap() {
        for c in rule["args"].as_array().into_iter().flatten() {
            let v = c["value"].as_u64().unwrap();
            out.extend([v, v.wrapping_sub(1), v.wrapping_add(1), v | 1 << 32]);
            // Each bit of a mask, alone.
            if c["op"] == "SCMP_CMP_MASKED_EQ" {
                out.extend((0..64).map(|b| 1u64 << b).filter(|b| v & b != 0));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

fn check(ours: &Profile, exact: bool) {
    let docker: Value = serde_json::from_str(DOCKER).unwrap();
    let values = samples(&docker);
    let conditional: Vec<&str> = docker["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["args"].as_array().is_some_and(|a| !a.is_empty()))
        .flat_map(|r| r["names"].as_array().unwrap().iter())
        .map(|n| n.as_str().unwrap())
        .collect();
    let all_caps: Vec<&str> = vec![
        "CAP_SYS_ADMIN",
        "CAP_SYS_PTRACE",
        "CAP_SYS_BOOT",
        "CAP_SYS_CHROOT",
        "CAP_SYS_MODULE",
        "CAP_SYS_PACCT",
        "CAP_SYS_RAWIO",
        "CAP_SYS_TIME",
        "CAP_SYS_TTY_CONFIG",
        "CAP_SYS_NICE",
        "CAP_SYSLOG",
        "CAP_BPF",
        "CAP_PERFMON",
        "CAP_DAC_READ_SEARCH",
    ];
    let docker_default_caps = [
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
    ];
    let mut cap_sets: Vec<Vec<&str>> = vec![vec![], docker_default_caps.to_vec(), all_caps.clone()];
    cap_sets.extend(all_caps.iter().map(|c| {
        let mut s = docker_default_caps.to_vec();
        s.push(c);
        s
    }));
    let mut checked = 0u64;
    for host in [Arch::X86_64, Arch::Aarch64, Arch::Riscv64] {
        for kernel in [(6, 1), (4, 4)] {
            for caps in &cap_sets {
                let owned: Vec<String> = caps.iter().map(|c| c.to_string()).collect();
                let resolved = ours
                    .resolve(&owned, &Host { arch: host, kernel })
                    .unwrap()
                    .unwrap();
                let prog = compile(&resolved, host).unwrap().program;
                assert!(prog.len() < ketch_seccomp::bpf::MAX_INSNS);
                for &abi in host.runnable() {
                    for (name, nr) in abi.table() {
                        // Every edge for the calls whose answer depends on arguments; for the
                        // rest, that arguments change nothing.
                        let mut arg_sets = vec![[0u64; 6], [u64::MAX, 1 << 32, 40, 8, 0, 1]];
                        if conditional.contains(&name) {
                            for i in 0..2 {
                                for &v in &values {
                                    let mut a = [0u64; 6];
                                    a[i] = v;
                                    arg_sets.push(a);
                                }
                            }
                        }
                        for args in arg_sets {
                            let call = Call {
                                nr,
                                arch: abi.audit(),
                                args,
                            };
                            let got = evaluate(&prog, &call).unwrap();
                            let want = docker_answer(&docker, host, kernel, caps, abi, name, &args);
                            if exact {
                                assert_eq!(
                                    got, want,
                                    "{abi:?} on {host:?} {kernel:?} {caps:?}: {name}{args:x?}"
                                );
                            } else {
                                assert!(
                                    strictness(got) >= strictness(want),
                                    "ketch lets {name}{args:x?} through where Docker does not \
                                     ({abi:?} on {host:?} {kernel:?} {caps:?}): {got:#x} / {want:#x}"
                                );
                            }
                            checked += 1;
                        }
                    }
                    // Past the newest call the tables know: refused with ENOSYS, as runc does.
                    let (_, hi) = abi.range();
                    let call = Call {
                        nr: hi + 1,
                        arch: abi.audit(),
                        args: [0; 6],
                    };
                    assert_eq!(evaluate(&prog, &call), Ok(ERRNO | 38));
                }
                // ABIs the host cannot run are killed.
                for a in arch::ALL {
                    if !host.runnable().contains(&a) && a.audit() != host.audit() {
                        let call = Call {
                            nr: 1,
                            arch: a.audit(),
                            args: [0; 6],
                        };
                        assert_eq!(evaluate(&prog, &call), Ok(KILL_PROCESS), "{a:?}");
                    }
                }
            }
        }
    }
    eprintln!("{checked} calls compared");
}

#[test]
fn dockers_profile_compiles_to_exactly_what_it_says() {
    check(&Profile::from_json(DOCKER).unwrap(), true);
}

#[test]
fn the_built_in_profile_is_no_weaker_than_dockers() {
    check(&Profile::default_profile(), false);
}

/// What the issue that brought this crate asked for, spelled out on the built-in profile for
/// an x86_64 host with Docker's default capabilities.
#[test]
fn the_restricted_calls() {
    let p = Profile::default_profile();
    let caps: Vec<String> = ["CAP_CHOWN", "CAP_SETUID", "CAP_SETGID", "CAP_NET_RAW"]
        .iter()
        .map(|c| c.to_string())
        .collect();
    let host = Host {
        arch: Arch::X86_64,
        kernel: (6, 1),
    };
    let prog = compile(&p.resolve(&caps, &host).unwrap().unwrap(), Arch::X86_64)
        .unwrap()
        .program;
    let run = |abi: Arch, name: &str, args: [u64; 6]| {
        evaluate(
            &prog,
            &Call {
                nr: abi.number(name).unwrap(),
                arch: abi.audit(),
                args,
            },
        )
        .unwrap()
    };
    let eperm = ERRNO | 1;
    for name in [
        "io_uring_setup",
        "io_uring_enter",
        "io_uring_register",
        "mount",
        "unshare",
        "setns",
        "keyctl",
        "add_key",
        "bpf",
        "perf_event_open",
        "userfaultfd",
        "open_by_handle_at",
        "kexec_load",
        "init_module",
        "reboot",
        "swapon",
        "syslog",
        "acct",
        "fsopen",
        "open_tree",
        "move_mount",
        "mount_setattr",
    ] {
        for abi in [Arch::X86_64, Arch::X86, Arch::X32] {
            if abi.number(name).is_some() {
                assert_eq!(run(abi, name, [0; 6]), eperm, "{abi:?} {name}");
            }
        }
    }
    // AF_VSOCK and AF_ALG sockets; other families pass.
    for abi in [Arch::X86_64, Arch::X86] {
        assert_eq!(run(abi, "socket", [40, 1, 0, 0, 0, 0]), eperm);
        assert_eq!(run(abi, "socket", [38, 5, 0, 0, 0, 0]), eperm);
        assert_eq!(run(abi, "socket", [2, 1, 0, 0, 0, 0]), ALLOW);
        assert_eq!(run(abi, "socket", [1, 1, 0, 0, 0, 0]), ALLOW);
    }
    // personality: only the values Docker allows.
    assert_eq!(
        run(Arch::X86_64, "personality", [0x8, 0, 0, 0, 0, 0]),
        ALLOW
    );
    assert_eq!(
        run(Arch::X86_64, "personality", [0xffff_ffff, 0, 0, 0, 0, 0]),
        ALLOW
    );
    assert_eq!(
        run(Arch::X86_64, "personality", [0x0040_0000, 0, 0, 0, 0, 0]),
        eperm
    );
    // clone: new namespaces refused; clone3 is ENOSYS so libc falls back to clone.
    assert_eq!(
        run(Arch::X86_64, "clone", [0x0120_0011, 0, 0, 0, 0, 0]),
        ALLOW
    );
    assert_eq!(
        run(Arch::X86_64, "clone", [0x1000_0000, 0, 0, 0, 0, 0]),
        eperm
    );
    assert_eq!(run(Arch::X86, "clone", [0x2000_0000, 0, 0, 0, 0, 0]), eperm);
    assert_eq!(run(Arch::X86_64, "clone3", [0; 6]), ERRNO | 38);
    // i386's getpid is answered, not killed.
    assert_eq!(run(Arch::X86, "getpid", [0; 6]), ALLOW);
    assert_eq!(run(Arch::X32, "getpid", [0; 6]), ALLOW);
}
