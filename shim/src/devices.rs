//! Which devices a container may use: deny everything, allow the standard nodes, then what
//! `--device` and `--device-cgroup-rule` add — as runc and crun do. On cgroup v1 the rules are
//! written to the `devices` controller; on v2 they become an eBPF program attached to the
//! container's group (runc's `devicefilter`). On a hybrid host both apply: the kernel asks the
//! program first, then the v1 controller, and a device must pass both.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use crate::spec::DeviceRule;

fn rule(kind: &str, major: Option<i64>, minor: Option<i64>, access: &str) -> DeviceRule {
    DeviceRule {
        allow: true,
        kind: kind.into(),
        major,
        minor,
        access: access.into(),
    }
}

/// The default allow-list, after a deny-all: mknod of anything (a node alone opens nothing),
/// and the nodes every container has — null, zero, full, random, urandom, tty, console,
/// ptmx, the pseudo-terminals and tun (as runc's default list has it).
pub fn default_rules() -> Vec<DeviceRule> {
    let mut v = vec![DeviceRule {
        allow: false,
        kind: "a".into(),
        major: None,
        minor: None,
        access: "rwm".into(),
    }];
    v.push(rule("c", None, None, "m"));
    v.push(rule("b", None, None, "m"));
    for (major, minor) in [
        (1, 3),
        (1, 5),
        (1, 7),
        (1, 8),
        (1, 9),
        (5, 0),
        (5, 1),
        (5, 2),
        (10, 200),
    ] {
        v.push(rule("c", Some(major), Some(minor), "rwm"));
    }
    v.push(rule("c", Some(136), None, "rwm"));
    v
}

/// The default list, then the spec's rules (`--device`, `--device-cgroup-rule`, and an
/// allow-all for `--privileged`), which override it where they overlap. The default is not
/// the engine's to leave out: a spec never opens every device by saying nothing.
pub fn rules(spec: Option<&Vec<DeviceRule>>) -> Vec<DeviceRule> {
    let mut r = default_rules();
    r.extend(spec.into_iter().flatten().cloned());
    r
}

fn valid(r: &DeviceRule) -> io::Result<()> {
    let ok = matches!(r.kind.as_str(), "a" | "c" | "b")
        && !r.access.is_empty()
        && r.access.chars().all(|c| "rwm".contains(c))
        && r.major.is_none_or(|m| (0..=u32::MAX as i64).contains(&m))
        && r.minor.is_none_or(|m| (0..=u32::MAX as i64).contains(&m));
    if ok {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid device rule {r:?}"),
        ))
    }
}

/// A rule as the v1 `devices.allow` and `devices.deny` files take it: `c 1:3 rwm`.
fn v1_line(r: &DeviceRule) -> String {
    let n = |v: Option<i64>| v.map_or("*".to_string(), |v| v.to_string());
    if r.kind == "a" {
        // `a` is the whole table, whatever the numbers say.
        return "a".into();
    }
    format!("{} {}:{} {}", r.kind, n(r.major), n(r.minor), r.access)
}

/// Writes the rules into a fresh v1 `devices` group, in order: a later rule overrides an
/// earlier one, as the kernel's own table does.
pub fn apply_v1(dir: &Path, rules: &[DeviceRule]) -> io::Result<()> {
    for r in rules {
        valid(r)?;
        let file = if r.allow {
            "devices.allow"
        } else {
            "devices.deny"
        };
        let line = v1_line(r);
        std::fs::write(dir.join(file), &line).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("write {line:?} to {}: {e}", dir.join(file).display()),
            )
        })?;
    }
    Ok(())
}

// eBPF, as the kernel's uapi spells it.
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
#[cfg(test)]
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;
// bpf_cgroup_dev_ctx: access_type (access << 16 | type), major, minor.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const AND_K: u8 = 0x57; // BPF_ALU64 | BPF_AND | BPF_K
const RSH_K: u8 = 0x77; // BPF_ALU64 | BPF_RSH | BPF_K
const MOV_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const MOV_X: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JNE_X: u8 = 0x5d; // BPF_JMP | BPF_JNE | BPF_X
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

fn access_bits(access: &str) -> i32 {
    access.chars().fold(0, |a, c| {
        a | match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => 0,
        }
    })
}

/// The program for a rule list. Rules are checked last to first, so a later rule overrides
/// an earlier one as in v1; the first that matches decides; none matching denies. A rule
/// matches a request whose type it names (or any, for `a`), whose access it covers whole,
/// and whose major and minor it names (or any, for `*`).
pub fn program(rules: &[DeviceRule]) -> io::Result<Vec<Insn>> {
    // r2 = type, r3 = access, r4 = major, r5 = minor; r1 is scratch once they are loaded.
    let mut p = vec![
        insn(LDX_W, 2, 1, 0, 0),
        insn(AND_K, 2, 0, 0, 0xffff),
        insn(LDX_W, 3, 1, 0, 0),
        insn(RSH_K, 3, 0, 0, 16),
        insn(LDX_W, 4, 1, 4, 0),
        insn(LDX_W, 5, 1, 8, 0),
    ];
    for r in rules.iter().rev() {
        valid(r)?;
        // Each check jumps past the rest of the block when it does not match; the offsets
        // are filled in once the block's length is known.
        let mut block: Vec<Insn> = Vec::new();
        let mut skips: Vec<usize> = Vec::new();
        match r.kind.as_str() {
            "c" => {
                skips.push(block.len());
                block.push(insn(JNE_K, 2, 0, 0, DEV_CHAR));
            }
            "b" => {
                skips.push(block.len());
                block.push(insn(JNE_K, 2, 0, 0, DEV_BLOCK));
            }
            _ => {}
        }
        let bits = access_bits(&r.access);
        if bits != ACC_READ | ACC_WRITE | ACC_MKNOD {
            block.push(insn(MOV_X, 1, 3, 0, 0));
            block.push(insn(AND_K, 1, 0, 0, bits));
            skips.push(block.len());
            block.push(insn(JNE_X, 1, 3, 0, 0));
        }
        if r.kind != "a" {
            if let Some(m) = r.major {
                skips.push(block.len());
                block.push(insn(JNE_K, 4, 0, 0, m as u32 as i32));
            }
            if let Some(m) = r.minor {
                skips.push(block.len());
                block.push(insn(JNE_K, 5, 0, 0, m as u32 as i32));
            }
        }
        block.push(insn(MOV_K, 0, 0, 0, r.allow as i32));
        block.push(insn(EXIT, 0, 0, 0, 0));
        let len = block.len();
        let matches_all = skips.is_empty();
        for at in skips {
            block[at].off = (len - at - 1) as i16;
        }
        p.extend(block);
        // A rule that matches everything decides every request: what would follow could
        // never run, and the verifier refuses unreachable code.
        if matches_all {
            return Ok(p);
        }
    }
    p.push(insn(MOV_K, 0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    Ok(p)
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is the union member the command reads, zero-padded by the caller.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>()) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

#[repr(C)]
#[derive(Default)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct ProgAttach {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

#[cfg(test)]
#[repr(C)]
#[derive(Default)]
struct ProgQuery {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
}

/// Loads the rules' program and attaches it to the v2 group `dir`, beside whatever its
/// ancestors attached (every program on the way must allow a device).
pub fn apply_v2(dir: &Path, rules: &[DeviceRule]) -> io::Result<()> {
    let insns = program(rules)?;
    let license = c"Apache";
    let mut name = [0u8; 16];
    name[..10].copy_from_slice(b"ketch_devs");
    let mut load = ProgLoad {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: name,
        expected_attach_type: BPF_CGROUP_DEVICE,
        ..Default::default()
    };
    let prog = bpf(BPF_PROG_LOAD, &mut load).or_else(|e| {
        // Once more with the verifier's log, to say why.
        let mut log = vec![0u8; 16 * 1024];
        load.log_level = 1;
        load.log_size = log.len() as u32;
        load.log_buf = log.as_mut_ptr() as u64;
        let again = bpf(BPF_PROG_LOAD, &mut load);
        let text = String::from_utf8_lossy(&log);
        again.map_err(|_| {
            io::Error::other(format!(
                "load the device program: {e}: {}",
                text.trim_end_matches('\0').trim()
            ))
        })
    })?;
    // SAFETY: the kernel returned a new descriptor for the program.
    let prog = unsafe { OwnedFd::from_raw_fd(prog as i32) };
    let group = std::fs::File::open(dir)?;
    let mut attach = ProgAttach {
        target_fd: group.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        ..Default::default()
    };
    bpf(BPF_PROG_ATTACH, &mut attach).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("attach the device program to {}: {e}", dir.display()),
        )
    })?;
    Ok(())
}

/// How many device programs are attached to the v2 group `dir` itself.
#[cfg(test)]
pub fn attached_v2(dir: &Path) -> io::Result<u32> {
    let group = std::fs::File::open(dir)?;
    let mut q = ProgQuery {
        target_fd: group.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        ..Default::default()
    };
    bpf(BPF_PROG_QUERY, &mut q)?;
    Ok(q.prog_cnt)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the program on one request as the kernel would, instruction by instruction.
    fn eval(p: &[Insn], kind: i32, access: i32, major: u32, minor: u32) -> u64 {
        let ctx = [((access << 16) | kind) as u32, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_W => r[dst] = ctx[i.off as usize / 4] as u64,
                AND_K => r[dst] &= i.imm as i64 as u64,
                RSH_K => r[dst] >>= i.imm,
                MOV_K => r[dst] = i.imm as i64 as u64,
                MOV_X => r[dst] = r[src],
                JNE_K if r[dst] != i.imm as i64 as u64 => pc += i.off as usize,
                JNE_X if r[dst] != r[src] => pc += i.off as usize,
                JNE_K | JNE_X => {}
                EXIT => return r[0],
                c => panic!("unknown opcode {c:#x}"),
            }
        }
    }

    #[test]
    fn the_default_program_allows_the_standard_nodes_only() {
        let p = program(&default_rules()).unwrap();
        let rw = ACC_READ | ACC_WRITE;
        assert_eq!(eval(&p, DEV_CHAR, rw, 1, 3), 1, "null");
        assert_eq!(eval(&p, DEV_CHAR, rw, 136, 7), 1, "a pts");
        assert_eq!(eval(&p, DEV_CHAR, ACC_MKNOD, 1, 11), 1, "mknod alone");
        assert_eq!(eval(&p, DEV_BLOCK, ACC_MKNOD, 8, 0), 1, "mknod alone");
        assert_eq!(eval(&p, DEV_CHAR, ACC_WRITE, 1, 11), 0, "kmsg");
        assert_eq!(eval(&p, DEV_CHAR, ACC_READ, 4, 0), 0, "tty0");
        assert_eq!(eval(&p, DEV_BLOCK, ACC_READ, 8, 0), 0, "a disk");
        assert_eq!(eval(&p, DEV_BLOCK, rw, 1, 3), 0, "block 1:3 is not null");
    }

    #[test]
    fn later_rules_override_and_access_must_be_covered() {
        let mut rules = default_rules();
        rules.push(rule("c", Some(1), Some(11), "r"));
        let p = program(&rules).unwrap();
        assert_eq!(eval(&p, DEV_CHAR, ACC_READ, 1, 11), 1);
        assert_eq!(eval(&p, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 11), 0);
        let mut rules = default_rules();
        rules.push(DeviceRule {
            allow: false,
            ..rule("c", Some(1), Some(3), "w")
        });
        let p = program(&rules).unwrap();
        assert_eq!(eval(&p, DEV_CHAR, ACC_WRITE, 1, 3), 0);
        let p = program(&[rule("a", None, None, "rwm")]).unwrap();
        assert_eq!(
            eval(&p, DEV_BLOCK, ACC_READ | ACC_WRITE, 8, 0),
            1,
            "privileged"
        );
    }

    /// A block rule opens block devices only; an access letter said twice is said once;
    /// the spec's rules come after the default list, and override it.
    #[test]
    fn block_rules_repeated_letters_and_the_spec_after_the_default() {
        let mut list = default_rules();
        list.push(rule("b", Some(8), None, "rrw"));
        let p = program(&list).unwrap();
        assert_eq!(eval(&p, DEV_BLOCK, ACC_READ, 8, 1), 1);
        assert_eq!(eval(&p, DEV_BLOCK, ACC_READ | ACC_WRITE, 8, 0), 1);
        assert_eq!(eval(&p, DEV_CHAR, ACC_READ, 8, 1), 0, "char 8:1 is no disk");
        assert_eq!(eval(&p, DEV_BLOCK, ACC_READ, 9, 1), 0);
        assert_eq!(access_bits("rrw"), ACC_READ | ACC_WRITE);
        assert_eq!(access_bits("mm"), ACC_MKNOD);
        let spec = vec![DeviceRule {
            allow: false,
            ..rule("c", Some(1), Some(3), "rwm")
        }];
        let all = rules(Some(&spec));
        assert_eq!(all.len(), default_rules().len() + 1);
        assert_eq!(all[..all.len() - 1], default_rules()[..]);
        assert_eq!(all.last(), spec.last());
        let p = program(&all).unwrap();
        assert_eq!(eval(&p, DEV_CHAR, ACC_READ, 1, 3), 0, "null denied");
        assert_eq!(rules(None), default_rules());
    }

    #[test]
    fn v1_lines() {
        let lines: Vec<String> = default_rules().iter().map(v1_line).collect();
        assert_eq!(lines[0], "a");
        assert!(lines.contains(&"c *:* m".to_string()));
        assert!(lines.contains(&"c 136:* rwm".to_string()));
        assert!(valid(&rule("x", None, None, "rwm")).is_err());
        assert!(valid(&rule("c", Some(-2), None, "rwm")).is_err());
        assert!(valid(&rule("c", None, None, "rwx")).is_err());
    }

    /// The program loads, and the kernel enforces it: a process in a v2 group holding the
    /// default program can open /dev/null but not a node for the kernel log (1:11).
    #[test]
    fn the_kernel_enforces_the_program() {
        let unified = crate::cgroup::unified_mount().expect("a cgroup2 hierarchy");
        let dir = unified.join(crate::sys::unique_name("ketch-devtest"));
        std::fs::create_dir(&dir).unwrap();
        struct Gone(std::path::PathBuf);
        impl Drop for Gone {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir(&self.0);
            }
        }
        let _gone = Gone(dir.clone());
        apply_v2(&dir, &default_rules()).unwrap();
        assert_eq!(attached_v2(&dir).unwrap(), 1);
        // Below it, a group may have a program of its own (a runtime nested in the
        // container attaches one), which every program above must allow too.
        let sub = dir.join("nested");
        std::fs::create_dir(&sub).unwrap();
        let nested = apply_v2(&sub, &default_rules()).and_then(|()| attached_v2(&sub));
        std::fs::remove_dir(&sub).unwrap();
        assert_eq!(nested.unwrap(), 1);
        let tmp = tempfile_dir();
        let kmsg = tmp.join("kmsg");
        nix::sys::stat::mknod(
            &kmsg,
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            nix::sys::stat::makedev(1, 11),
        )
        .unwrap();
        let procs = dir.join("cgroup.procs");
        // SAFETY: the child only makes system calls and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let code = (|| {
                std::fs::write(&procs, "0").ok()?;
                let null = std::fs::OpenOptions::new()
                    .write(true)
                    .open("/dev/null")
                    .is_ok();
                let kmsg = std::fs::File::open(&kmsg).is_err();
                Some(if null && kmsg { 0 } else { 1 })
            })()
            .unwrap_or(2);
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        unsafe { libc::waitpid(pid, &mut status, 0) };
        let _ = std::fs::remove_dir_all(&tmp);
        assert_eq!(libc::WEXITSTATUS(status), 0, "exit status {status}");
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(crate::sys::unique_name("ketch-devtest"));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
