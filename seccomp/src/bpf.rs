//! OCI `linux.seccomp` compiled to one classic BPF program for every ABI the host runs.
//!
//! The program first dispatches on `seccomp_data.arch`: an ABI the profile does not list is
//! killed, never let through. Each ABI's section then loads the call number and:
//! - on x86_64, sends numbers with the x32 bit to the x32 section (or kills them, where the
//!   profile leaves x32 out);
//! - answers numbers above the highest call the tables know with `ENOSYS` (unless the default
//!   is to allow), so programs fall back from calls newer than the profile, as runc does;
//! - finds the call's decision by binary search over intervals of numbers that share one, so
//!   a call costs about a dozen instructions and the program stays far below the kernel's
//!   4096. A call whose answer depends on its arguments gets a block that compares them,
//!   64 bits wide (two 32-bit halves) or, on 32-bit ABIs, the low half only.
//!
//! A call named by several rules: the rules with conditions are tried in the profile's order
//! and the first that matches decides; then the rule without conditions, if any; then the
//! default. Two rules without conditions that disagree are an error. A rule whose conditions
//! name one argument more than once matches when any of them holds (runc's reading).

use std::collections::HashMap;

use crate::arch::{self, Arch, X32_BIT};
use crate::{Error, Profile, err};

const SECCOMP_RET_KILL_PROCESS: u32 = 0x8000_0000;
const SECCOMP_RET_KILL_THREAD: u32 = 0x0000_0000;
const SECCOMP_RET_TRAP: u32 = 0x0003_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const SECCOMP_RET_TRACE: u32 = 0x7ff0_0000;
const SECCOMP_RET_LOG: u32 = 0x7ffc_0000;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_ALU_AND_K: u16 = 0x54;
const BPF_JA: u16 = 0x05;
const BPF_JEQ_K: u16 = 0x15;
const BPF_JGT_K: u16 = 0x25;
const BPF_JGE_K: u16 = 0x35;
const BPF_RET_K: u16 = 0x06;

/// The kernel's limit on one program's length.
pub const MAX_INSNS: usize = 4096;

/// Offsets into `struct seccomp_data`.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
fn off_arg(index: u32, high: bool) -> u32 {
    // Every ABI here is little-endian: the low half comes first.
    16 + 8 * index + if high { 4 } else { 0 }
}

/// A compiled profile: the program, and the flags for `seccomp(SECCOMP_SET_MODE_FILTER)`.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub program: Vec<libc::sock_filter>,
    pub flags: u32,
}

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

fn ret(k: u32) -> libc::sock_filter {
    insn(BPF_RET_K, 0, 0, k)
}

fn load(off: u32) -> libc::sock_filter {
    insn(BPF_LD_W_ABS, 0, 0, off)
}

/// The kernel's return value for an action.
fn action(name: &str, errno: Option<u32>) -> Result<u32, Error> {
    let errno = errno.unwrap_or(libc::EPERM as u32);
    Ok(match name {
        "SCMP_ACT_ALLOW" => SECCOMP_RET_ALLOW,
        "SCMP_ACT_ERRNO" => {
            if errno > 4095 {
                return err(format!("errnoRet {errno} is not an errno (at most 4095)"));
            }
            SECCOMP_RET_ERRNO | errno
        }
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => SECCOMP_RET_KILL_THREAD,
        "SCMP_ACT_KILL_PROCESS" => SECCOMP_RET_KILL_PROCESS,
        "SCMP_ACT_TRAP" => SECCOMP_RET_TRAP,
        "SCMP_ACT_TRACE" => SECCOMP_RET_TRACE | (errno & 0xffff),
        "SCMP_ACT_LOG" => SECCOMP_RET_LOG,
        "SCMP_ACT_NOTIFY" => {
            return err("SCMP_ACT_NOTIFY needs a seccomp agent, which ketch does not run");
        }
        other => return err(format!("unknown action {other:?}")),
    })
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Ne,
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
    MaskedEq,
}

#[derive(Clone, Debug)]
struct Cond {
    index: u32,
    op: Op,
    value: u64,
    value_two: u64,
}

/// One way a call can be answered: when every condition holds (or always), `action`.
#[derive(Clone, Debug)]
struct Entry {
    conds: Vec<Cond>,
    action: u32,
}

/// What a call number gets.
#[derive(Clone, Debug)]
enum Decision {
    Ret(u32),
    Block(Vec<libc::sock_filter>),
}

/// A jump target inside a condition's code.
#[derive(Clone, Copy, Debug, PartialEq)]
enum J {
    /// The next instruction.
    Next,
    /// The end of the condition: it holds.
    Pass,
    /// The end of the rule: it does not match.
    Fail,
}

fn op(name: &str) -> Result<Op, Error> {
    Ok(match name {
        "SCMP_CMP_NE" => Op::Ne,
        "SCMP_CMP_LT" => Op::Lt,
        "SCMP_CMP_LE" => Op::Le,
        "SCMP_CMP_EQ" => Op::Eq,
        "SCMP_CMP_GE" => Op::Ge,
        "SCMP_CMP_GT" => Op::Gt,
        "SCMP_CMP_MASKED_EQ" => Op::MaskedEq,
        other => return err(format!("unknown operator {other:?}")),
    })
}

/// The flags a profile may ask for.
fn flag(name: &str) -> Result<u32, Error> {
    Ok(match name {
        // One thread loads the filter; there is nothing to synchronise.
        "SECCOMP_FILTER_FLAG_TSYNC" => 0,
        "SECCOMP_FILTER_FLAG_LOG" => 2,
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => 4,
        other => return err(format!("unsupported flag {other:?}")),
    })
}

/// Compiles resolved OCI `linux.seccomp` (see [`Profile::resolve`]) for a host of
/// architecture `host`.
pub fn compile(p: &Profile, host: Arch) -> Result<Compiled, Error> {
    if !p.arch_map.is_empty()
        || p.syscalls
            .iter()
            .any(|r| r.includes.is_some() || r.excludes.is_some())
    {
        return err("archMap, includes and excludes must be resolved before compiling");
    }
    if p.listener_path.is_some() {
        return err("listenerPath needs a seccomp agent, which ketch does not run");
    }
    if p.default_action.is_empty() {
        return err("no defaultAction");
    }
    let default = action(&p.default_action, p.default_errno_ret)?;
    let mut flags = 0;
    for f in &p.flags {
        flags |= flag(f)?;
    }
    // The host's tables, by name, once.
    let tables: Vec<(Arch, HashMap<&str, u32>)> = host
        .runnable()
        .iter()
        .map(|&a| (a, a.table().into_iter().collect()))
        .collect();
    // Every rule checked once, whatever the ABIs: a mistake is an error, not a rule skipped.
    let mut rules: Vec<(Vec<&str>, Vec<Entry>)> = Vec::new();
    for (i, r) in p.syscalls.iter().enumerate() {
        let at = |what: String| Error(format!("rule {i}: {what}"));
        let act = action(&r.action, r.errno_ret).map_err(|e| at(e.0))?;
        let mut names: Vec<&str> = r.names.iter().map(String::as_str).collect();
        names.extend(r.name.as_deref());
        if names.is_empty() {
            return Err(at("names no system call".into()));
        }
        for n in &names {
            if !tables.iter().any(|(_, t)| t.contains_key(n)) && !arch::known_syscall(n) {
                return Err(at(format!("unknown system call {n:?}")));
            }
        }
        let mut conds = Vec::new();
        for a in &r.args {
            if a.index > 5 {
                return Err(at(format!("argument index {} (at most 5)", a.index)));
            }
            conds.push(Cond {
                index: a.index,
                op: op(&a.op).map_err(|e| at(e.0))?,
                value: a.value,
                value_two: a.value_two,
            });
        }
        let repeated = (0..6).any(|i| conds.iter().filter(|c| c.index == i).count() > 1);
        let entries = if repeated {
            conds
                .into_iter()
                .map(|c| Entry {
                    conds: vec![c],
                    action: act,
                })
                .collect()
        } else {
            vec![Entry { conds, action: act }]
        };
        rules.push((names, entries));
    }
    let mut arches = vec![host];
    for a in &p.architectures {
        let parsed: Result<Arch, ()> = a.parse();
        match parsed {
            Ok(a) if host.runnable().contains(&a) => {
                if !arches.contains(&a) {
                    arches.push(a);
                }
            }
            // An ABI this host cannot run never reaches the filter.
            Ok(_) => {}
            Err(()) if arch::known_arch(a) => {}
            Err(()) => return err(format!("unknown architecture {a:?}")),
        }
    }
    let above = if default == SECCOMP_RET_ALLOW {
        SECCOMP_RET_ALLOW
    } else {
        SECCOMP_RET_ERRNO | libc::ENOSYS as u32
    };
    let section = |a: Arch| -> Result<Vec<libc::sock_filter>, Error> {
        let table = &tables
            .iter()
            .find(|(t, _)| *t == a)
            .expect("a runnable ABI")
            .1;
        let lo = if a == Arch::X32 { X32_BIT } else { 0 };
        let hi = table.values().copied().max().unwrap_or(lo);
        let mut by_nr: std::collections::BTreeMap<u32, (&str, Vec<Entry>)> = Default::default();
        for (names, entries) in &rules {
            for n in names {
                if let Some(&nr) = table.get(n) {
                    by_nr
                        .entry(nr)
                        .or_insert((n, vec![]))
                        .1
                        .extend(entries.iter().cloned());
                }
            }
        }
        let mut intervals: Vec<(u32, Decision)> = Vec::new();
        let mut push = |start: u32, d: Decision| match (intervals.last(), &d) {
            (Some((_, Decision::Ret(a))), Decision::Ret(b)) if a == b => {}
            _ => intervals.push((start, d)),
        };
        let mut next = lo;
        for (nr, (name, entries)) in by_nr {
            if nr > next {
                push(next, Decision::Ret(default));
            }
            push(nr, decide(name, &entries, default, a.narrow())?);
            next = nr + 1;
        }
        if next <= hi {
            push(next, Decision::Ret(default));
        }
        let mut code = vec![insn(BPF_JGT_K, 0, 1, hi), ret(above)];
        code.extend(tree(&intervals));
        Ok(code)
    };
    // Sections by `seccomp_data.arch`; x32 rides in x86_64's.
    let mut sections: Vec<(u32, Vec<libc::sock_filter>)> = Vec::new();
    for &a in &arches {
        if a == Arch::X32 && arches.contains(&Arch::X86_64) {
            continue;
        }
        let mut code = vec![load(OFF_NR)];
        if a == Arch::X86_64 || a == Arch::X32 {
            let (native, x32) = if a == Arch::X86_64 {
                (
                    section(Arch::X86_64)?,
                    if arches.contains(&Arch::X32) {
                        Some(section(Arch::X32)?)
                    } else {
                        None
                    },
                )
            } else {
                (
                    vec![ret(SECCOMP_RET_KILL_PROCESS)],
                    Some(section(Arch::X32)?),
                )
            };
            match x32 {
                Some(x32) => {
                    code.push(insn(BPF_JGE_K, 0, 1, X32_BIT));
                    code.push(insn(BPF_JA, 0, 0, native.len() as u32));
                    code.extend(native);
                    code.extend(x32);
                }
                None => {
                    code.push(insn(BPF_JGE_K, 0, 1, X32_BIT));
                    code.push(ret(SECCOMP_RET_KILL_PROCESS));
                    code.extend(native);
                }
            }
        } else {
            code.extend(section(a)?);
        }
        sections.push((a.audit(), code));
    }
    // The dispatch: a `jeq` and a `ja` per section, then the kill for any other ABI, then
    // the sections. Section i's `ja` sits at 2 + 2i and its code starts at 2 + 2n plus the
    // sections before it.
    let mut program = vec![load(OFF_ARCH)];
    let n = sections.len();
    let mut before = 0;
    for (i, (audit, code)) in sections.iter().enumerate() {
        program.push(insn(BPF_JEQ_K, 0, 1, *audit));
        program.push(insn(BPF_JA, 0, 0, (2 * n - 2 * i - 1 + before) as u32));
        before += code.len();
    }
    program.push(ret(SECCOMP_RET_KILL_PROCESS));
    for (_, code) in sections {
        program.extend(code);
    }
    if program.len() > MAX_INSNS {
        return err(format!(
            "the filter has {} instructions; the kernel takes at most {MAX_INSNS}",
            program.len()
        ));
    }
    Ok(Compiled { program, flags })
}

/// The decision for one call from the entries naming it, in profile order.
fn decide(name: &str, entries: &[Entry], default: u32, narrow: bool) -> Result<Decision, Error> {
    let mut fallback = None;
    let mut conditional = Vec::new();
    for e in entries {
        if e.conds.is_empty() {
            match fallback {
                None => fallback = Some(e.action),
                Some(a) if a == e.action => {}
                Some(_) => return err(format!("rules without conditions disagree on {name}")),
            }
        } else {
            conditional.push(e);
        }
    }
    let fallback = fallback.unwrap_or(default);
    if conditional.iter().all(|e| e.action == fallback) {
        return Ok(Decision::Ret(fallback));
    }
    let mut block = Vec::new();
    for e in conditional {
        let codes: Vec<Vec<(u16, J, J, u32)>> =
            e.conds.iter().map(|c| condition(c, narrow)).collect();
        for (i, code) in codes.iter().enumerate() {
            // From the end of this condition to the end of the rule: the conditions after
            // it and the rule's `ret`.
            let fail_after = codes[i + 1..].iter().map(Vec::len).sum::<usize>() + 1;
            let len = code.len();
            for (at, &(op, jt, jf, k)) in code.iter().enumerate() {
                let to = |j: J| -> Result<u8, Error> {
                    let d = match j {
                        J::Next => 0,
                        J::Pass => len - at - 1,
                        J::Fail => len - at - 1 + fail_after,
                    };
                    u8::try_from(d).map_err(|_| {
                        Error(format!(
                            "the conditions on {name} are too many for one rule"
                        ))
                    })
                };
                block.push(insn(op, to(jt)?, to(jf)?, k));
            }
        }
        block.push(ret(e.action));
    }
    block.push(ret(fallback));
    Ok(Decision::Block(block))
}

/// The instructions testing one condition: they fall through (to `Pass`) when it holds.
/// Unsigned comparisons of 64-bit values are made on the high halves first, the low halves
/// deciding only where the high ones are equal; 32-bit ABIs compare the low halves only.
fn condition(c: &Cond, narrow: bool) -> Vec<(u16, J, J, u32)> {
    use J::{Fail, Next, Pass};
    let (vh, vl) = ((c.value >> 32) as u32, c.value as u32);
    let (dh, dl) = ((c.value_two >> 32) as u32, c.value_two as u32);
    let hi = (BPF_LD_W_ABS, Next, Next, off_arg(c.index, true));
    let lo = (BPF_LD_W_ABS, Next, Next, off_arg(c.index, false));
    let mut code = Vec::new();
    if !narrow {
        code.push(hi);
        code.extend(match c.op {
            Op::Eq => vec![(BPF_JEQ_K, Next, Fail, vh)],
            Op::Ne => vec![(BPF_JEQ_K, Next, Pass, vh)],
            Op::Gt | Op::Ge => vec![(BPF_JGT_K, Pass, Next, vh), (BPF_JEQ_K, Next, Fail, vh)],
            Op::Lt | Op::Le => vec![(BPF_JGT_K, Fail, Next, vh), (BPF_JEQ_K, Next, Pass, vh)],
            Op::MaskedEq => vec![(BPF_ALU_AND_K, Next, Next, vh), (BPF_JEQ_K, Next, Fail, dh)],
        });
    }
    code.push(lo);
    code.extend(match c.op {
        Op::Eq => vec![(BPF_JEQ_K, Pass, Fail, vl)],
        Op::Ne => vec![(BPF_JEQ_K, Fail, Pass, vl)],
        Op::Gt => vec![(BPF_JGT_K, Pass, Fail, vl)],
        Op::Ge => vec![(BPF_JGE_K, Pass, Fail, vl)],
        Op::Lt => vec![(BPF_JGE_K, Fail, Pass, vl)],
        Op::Le => vec![(BPF_JGT_K, Fail, Pass, vl)],
        Op::MaskedEq => vec![(BPF_ALU_AND_K, Next, Next, vl), (BPF_JEQ_K, Pass, Fail, dl)],
    });
    code
}

/// Binary search over intervals `(first number, decision)`, each reaching to the next one's
/// first number; the call number is in the accumulator. Every path ends in a `ret`.
fn tree(iv: &[(u32, Decision)]) -> Vec<libc::sock_filter> {
    match iv {
        [] => vec![],
        [(_, Decision::Ret(k))] => vec![ret(*k)],
        [(_, Decision::Block(b))] => b.clone(),
        _ => {
            let m = iv.len() / 2;
            let left = tree(&iv[..m]);
            let right = tree(&iv[m..]);
            let mut out = Vec::with_capacity(left.len() + right.len() + 2);
            match u8::try_from(left.len()) {
                Ok(n) => out.push(insn(BPF_JGE_K, n, 0, iv[m].0)),
                Err(_) => {
                    out.push(insn(BPF_JGE_K, 0, 1, iv[m].0));
                    out.push(insn(BPF_JA, 0, 0, left.len() as u32));
                }
            }
            out.extend(left);
            out.extend(right);
            out
        }
    }
}

/// One system call as a filter sees it (`struct seccomp_data`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Call {
    pub nr: u32,
    pub arch: u32,
    pub args: [u64; 6],
}

/// Runs a program on one call as the kernel does, returning what it returns. For tests: the
/// program is checked here against what each profile says, call by call.
pub fn evaluate(program: &[libc::sock_filter], call: &Call) -> Result<u32, String> {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&call.nr.to_le_bytes());
    data[4..8].copy_from_slice(&call.arch.to_le_bytes());
    for (i, a) in call.args.iter().enumerate() {
        data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
    }
    let (mut pc, mut acc) = (0usize, 0u32);
    loop {
        let i = program.get(pc).ok_or(format!("ran off the end at {pc}"))?;
        pc += 1;
        let jump = |cond: bool| if cond { i.jt as usize } else { i.jf as usize };
        match i.code {
            BPF_LD_W_ABS => {
                let k = i.k as usize;
                if k % 4 != 0 || k + 4 > data.len() {
                    return Err(format!("load at {k}"));
                }
                acc = u32::from_le_bytes(data[k..k + 4].try_into().unwrap());
            }
            BPF_ALU_AND_K => acc &= i.k,
            BPF_JA => pc += i.k as usize,
            BPF_JEQ_K => pc += jump(acc == i.k),
            BPF_JGT_K => pc += jump(acc > i.k),
            BPF_JGE_K => pc += jump(acc >= i.k),
            BPF_RET_K => return Ok(i.k),
            other => return Err(format!("instruction {other:#x}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Arg, Rule};

    fn profile(default: &str, rules: Vec<Rule>, arches: &[&str]) -> Profile {
        Profile {
            default_action: default.into(),
            architectures: arches.iter().map(|a| a.to_string()).collect(),
            syscalls: rules,
            ..Default::default()
        }
    }

    fn rule(names: &[&str], action: &str, args: Vec<Arg>) -> Rule {
        Rule {
            names: names.iter().map(|n| n.to_string()).collect(),
            action: action.into(),
            args,
            ..Default::default()
        }
    }

    fn arg(index: u32, op: &str, value: u64, value_two: u64) -> Arg {
        Arg {
            index,
            value,
            value_two,
            op: op.into(),
        }
    }

    fn call(a: Arch, name: &str, args: [u64; 6]) -> Call {
        Call {
            nr: a.number(name).unwrap(),
            arch: a.audit(),
            args,
        }
    }

    const EPERM: u32 = SECCOMP_RET_ERRNO | 1;
    const ENOSYS: u32 = SECCOMP_RET_ERRNO | libc::ENOSYS as u32;

    /// Every operator, at the edges of both halves of a 64-bit value, on a 64-bit ABI and
    /// (low halves only) on a 32-bit one: the program agrees with plain arithmetic.
    #[test]
    fn operators_compare_as_the_kernel_reads_arguments() {
        let values = [
            0u64,
            1,
            0x7fff_ffff,
            0xffff_ffff,
            0x1_0000_0000,
            0x1_0000_0001,
            0xffff_ffff_0000_0000,
            0x8000_0000_0000_0000,
            u64::MAX,
            0x0000_0002_7e02_0000,
        ];
        let ops = [
            "SCMP_CMP_EQ",
            "SCMP_CMP_NE",
            "SCMP_CMP_LT",
            "SCMP_CMP_LE",
            "SCMP_CMP_GT",
            "SCMP_CMP_GE",
            "SCMP_CMP_MASKED_EQ",
        ];
        for o in ops {
            for &v in &values {
                for &v2 in &[0u64, v, 0x7e02_0000] {
                    let p = profile(
                        "SCMP_ACT_ERRNO",
                        vec![rule(&["getpid"], "SCMP_ACT_ALLOW", vec![arg(2, o, v, v2)])],
                        &["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
                    );
                    let prog = compile(&p, Arch::X86_64).unwrap().program;
                    for a in [Arch::X86_64, Arch::X86] {
                        for &x in &values {
                            let (x2, v1, vv2) = if a.narrow() {
                                (x as u32 as u64, v as u32 as u64, v2 as u32 as u64)
                            } else {
                                (x, v, v2)
                            };
                            let want = match o {
                                "SCMP_CMP_EQ" => x2 == v1,
                                "SCMP_CMP_NE" => x2 != v1,
                                "SCMP_CMP_LT" => x2 < v1,
                                "SCMP_CMP_LE" => x2 <= v1,
                                "SCMP_CMP_GT" => x2 > v1,
                                "SCMP_CMP_GE" => x2 >= v1,
                                _ => x2 & v1 == vv2,
                            };
                            let got = evaluate(&prog, &call(a, "getpid", [0, 0, x, 0, 0, 0]));
                            let want = if want { SECCOMP_RET_ALLOW } else { EPERM };
                            assert_eq!(got, Ok(want), "{a:?} {o} {v:#x} {v2:#x} on {x:#x}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn rules_combine_as_documented() {
        let p = profile(
            "SCMP_ACT_ALLOW",
            vec![
                // All of one rule's conditions must hold...
                rule(
                    &["read"],
                    "SCMP_ACT_ERRNO",
                    vec![arg(0, "SCMP_CMP_EQ", 1, 0), arg(1, "SCMP_CMP_EQ", 2, 0)],
                ),
                // ...unless they name one argument twice: then any.
                rule(
                    &["write"],
                    "SCMP_ACT_KILL_PROCESS",
                    vec![arg(0, "SCMP_CMP_EQ", 1, 0), arg(0, "SCMP_CMP_EQ", 2, 0)],
                ),
                // The first matching conditional rule decides, before the unconditional one.
                rule(
                    &["close"],
                    "SCMP_ACT_TRAP",
                    vec![arg(0, "SCMP_CMP_GT", 10, 0)],
                ),
                rule(
                    &["close"],
                    "SCMP_ACT_LOG",
                    vec![arg(0, "SCMP_CMP_GT", 5, 0)],
                ),
                rule(&["close"], "SCMP_ACT_KILL", vec![]),
            ],
            &[],
        );
        let prog = compile(&p, Arch::X86_64).unwrap().program;
        let a = Arch::X86_64;
        let run = |name: &str, args: [u64; 6]| evaluate(&prog, &call(a, name, args)).unwrap();
        assert_eq!(run("read", [1, 2, 0, 0, 0, 0]), EPERM);
        assert_eq!(run("read", [1, 3, 0, 0, 0, 0]), SECCOMP_RET_ALLOW);
        assert_eq!(run("write", [1, 0, 0, 0, 0, 0]), SECCOMP_RET_KILL_PROCESS);
        assert_eq!(run("write", [2, 0, 0, 0, 0, 0]), SECCOMP_RET_KILL_PROCESS);
        assert_eq!(run("write", [3, 0, 0, 0, 0, 0]), SECCOMP_RET_ALLOW);
        assert_eq!(run("close", [11, 0, 0, 0, 0, 0]), SECCOMP_RET_TRAP);
        assert_eq!(run("close", [6, 0, 0, 0, 0, 0]), SECCOMP_RET_LOG);
        assert_eq!(run("close", [1, 0, 0, 0, 0, 0]), SECCOMP_RET_KILL_THREAD);
        assert_eq!(run("getpid", [0; 6]), SECCOMP_RET_ALLOW);
        // Only x86_64 listed: i386 and x32 calls are killed, not let through.
        let i386 = call(Arch::X86, "getpid", [0; 6]);
        assert_eq!(evaluate(&prog, &i386), Ok(SECCOMP_RET_KILL_PROCESS));
        let x32 = call(Arch::X32, "getpid", [0; 6]);
        assert_eq!(evaluate(&prog, &x32), Ok(SECCOMP_RET_KILL_PROCESS));
    }

    #[test]
    fn every_abi_is_filtered_by_the_same_rules() {
        let p = profile(
            "SCMP_ACT_ERRNO",
            vec![rule(&["getpid", "ioctl"], "SCMP_ACT_ALLOW", vec![])],
            &["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        );
        let prog = compile(&p, Arch::X86_64).unwrap().program;
        for a in [Arch::X86_64, Arch::X86, Arch::X32] {
            for (name, nr) in a.table() {
                let c = Call {
                    nr,
                    arch: a.audit(),
                    args: [0; 6],
                };
                let want = if name == "getpid" || name == "ioctl" {
                    SECCOMP_RET_ALLOW
                } else {
                    EPERM
                };
                assert_eq!(evaluate(&prog, &c), Ok(want), "{a:?} {name}");
            }
            // Numbers past the table: ENOSYS, so programs fall back.
            let (_, hi) = a.range();
            for nr in [
                hi + 1,
                hi + 1000,
                if a == Arch::X86 { u32::MAX } else { hi + 2 },
            ] {
                let c = Call {
                    nr,
                    arch: a.audit(),
                    args: [0; 6],
                };
                assert_eq!(evaluate(&prog, &c), Ok(ENOSYS), "{a:?} {nr:#x}");
            }
        }
        // x86_64's own number for ioctl means nothing in x32: refused.
        let c = Call {
            nr: X32_BIT | 16,
            arch: Arch::X32.audit(),
            args: [0; 6],
        };
        assert_eq!(evaluate(&prog, &c), Ok(EPERM));
        // An ABI the profile does not list (ARM on this x86_64 host) is killed.
        let c = Call {
            nr: 20,
            arch: Arch::Arm.audit(),
            args: [0; 6],
        };
        assert_eq!(evaluate(&prog, &c), Ok(SECCOMP_RET_KILL_PROCESS));
    }

    #[test]
    fn mistakes_are_errors() {
        let bad = |r: Rule| compile(&profile("SCMP_ACT_ALLOW", vec![r], &[]), Arch::X86_64);
        let e = bad(rule(&["getpidd"], "SCMP_ACT_ERRNO", vec![])).unwrap_err();
        assert!(e.0.contains("unknown system call \"getpidd\""), "{e}");
        let e = bad(rule(&["read"], "SCMP_ACT_NOPE", vec![])).unwrap_err();
        assert!(e.0.contains("unknown action"), "{e}");
        let e = bad(rule(
            &["read"],
            "SCMP_ACT_ERRNO",
            vec![arg(6, "SCMP_CMP_EQ", 0, 0)],
        ));
        assert!(e.unwrap_err().0.contains("argument index 6"));
        let e = bad(rule(
            &["read"],
            "SCMP_ACT_ERRNO",
            vec![arg(0, "SCMP_CMP_XX", 0, 0)],
        ));
        assert!(e.unwrap_err().0.contains("unknown operator"));
        let e = bad(rule(&["read"], "SCMP_ACT_NOTIFY", vec![]));
        assert!(e.unwrap_err().0.contains("agent"));
        let two = profile(
            "SCMP_ACT_ALLOW",
            vec![
                rule(&["read"], "SCMP_ACT_ERRNO", vec![]),
                rule(&["read"], "SCMP_ACT_KILL", vec![]),
            ],
            &[],
        );
        assert!(
            compile(&two, Arch::X86_64)
                .unwrap_err()
                .0
                .contains("disagree")
        );
        let arch = profile("SCMP_ACT_ALLOW", vec![], &["SCMP_ARCH_Z80"]);
        assert!(
            compile(&arch, Arch::X86_64)
                .unwrap_err()
                .0
                .contains("SCMP_ARCH_Z80")
        );
        // A call some other ABI has is not a mistake: skipped where it does not exist.
        let other = rule(&["riscv_flush_icache", "set_tls"], "SCMP_ACT_ERRNO", vec![]);
        assert!(bad(other).is_ok());
    }
}
