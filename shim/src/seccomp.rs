//! The spec's `linux.seccomp`, compiled to BPF with seccompiler and loaded last before exec.
//!
//! seccompiler gives one filter a single action for every rule, so rules are grouped by
//! action and each group becomes a filter of its own; the kernel runs them all and the most
//! restrictive answer wins. Only profiles that allow by default are taken: ketch's own
//! default is one.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use crate::spec::Seccomp;

/// System call numbers by name, for the calls a profile may name on this architecture.
fn number(name: &str) -> Option<i64> {
    macro_rules! table {
        ($($n:ident),* $(,)?) => {
            match name {
                $(x if x == &stringify!($n)[4..] => Some(libc::$n as i64),)*
                _ => None,
            }
        };
    }
    #[cfg(target_arch = "x86_64")]
    {
        table!(
            SYS_add_key,
            SYS_request_key,
            SYS_keyctl,
            SYS_uselib,
            SYS_userfaultfd,
            SYS_ustat,
            SYS_sysfs,
            SYS__sysctl,
            SYS_nfsservctl,
            SYS_lookup_dcookie,
            SYS_mount,
            SYS_umount2,
            SYS_pivot_root,
            SYS_setns,
            SYS_unshare,
            SYS_quotactl,
            SYS_swapon,
            SYS_swapoff,
            SYS_fanotify_init,
            SYS_open_tree,
            SYS_move_mount,
            SYS_fsopen,
            SYS_fsconfig,
            SYS_fsmount,
            SYS_fspick,
            SYS_mount_setattr,
            SYS_bpf,
            SYS_perf_event_open,
            SYS_clock_adjtime,
            SYS_clock_settime,
            SYS_settimeofday,
            SYS_adjtimex,
            SYS_init_module,
            SYS_finit_module,
            SYS_delete_module,
            SYS_kexec_load,
            SYS_kexec_file_load,
            SYS_reboot,
            SYS_iopl,
            SYS_ioperm,
            SYS_open_by_handle_at,
            SYS_process_vm_readv,
            SYS_process_vm_writev,
            SYS_kcmp,
            SYS_acct,
            SYS_get_mempolicy,
            SYS_mbind,
            SYS_set_mempolicy,
            SYS_move_pages,
            SYS_syslog,
            SYS_clone3,
            SYS_clone,
        )
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        table!(
            SYS_add_key,
            SYS_request_key,
            SYS_keyctl,
            SYS_userfaultfd,
            SYS_lookup_dcookie,
            SYS_mount,
            SYS_umount2,
            SYS_pivot_root,
            SYS_setns,
            SYS_unshare,
            SYS_quotactl,
            SYS_swapon,
            SYS_swapoff,
            SYS_fanotify_init,
            SYS_bpf,
            SYS_perf_event_open,
            SYS_clock_adjtime,
            SYS_clock_settime,
            SYS_settimeofday,
            SYS_adjtimex,
            SYS_init_module,
            SYS_finit_module,
            SYS_delete_module,
            SYS_kexec_load,
            SYS_kexec_file_load,
            SYS_reboot,
            SYS_open_by_handle_at,
            SYS_process_vm_readv,
            SYS_process_vm_writev,
            SYS_kcmp,
            SYS_acct,
            SYS_get_mempolicy,
            SYS_mbind,
            SYS_set_mempolicy,
            SYS_move_pages,
            SYS_syslog,
            SYS_clone3,
            SYS_clone,
        )
    }
}

fn arch() -> Result<TargetArch, String> {
    TargetArch::try_from(std::env::consts::ARCH).map_err(|e| format!("seccomp: {e}"))
}

fn action(name: &str, errno: Option<u32>) -> Result<SeccompAction, String> {
    Ok(match name {
        "SCMP_ACT_ALLOW" => SeccompAction::Allow,
        "SCMP_ACT_ERRNO" => SeccompAction::Errno(errno.unwrap_or(libc::EPERM as u32)),
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => SeccompAction::KillThread,
        "SCMP_ACT_KILL_PROCESS" => SeccompAction::KillProcess,
        "SCMP_ACT_TRAP" => SeccompAction::Trap,
        "SCMP_ACT_LOG" => SeccompAction::Log,
        other => return Err(format!("seccomp: unsupported action {other}")),
    })
}

/// Compiles the profile into filters, to be loaded in order.
pub fn compile(profile: &Seccomp) -> Result<Vec<BpfProgram>, String> {
    if profile.default_action != "SCMP_ACT_ALLOW" {
        return Err(format!(
            "seccomp: only allow-by-default profiles are supported, not {}",
            profile.default_action
        ));
    }
    // One rule set per distinct action.
    let mut groups: Vec<(SeccompAction, BTreeMap<i64, Vec<SeccompRule>>)> = Vec::new();
    for rule in &profile.syscalls {
        let act = action(&rule.action, rule.errno_ret)?;
        if act == SeccompAction::Allow {
            continue;
        }
        let mut conditions = Vec::new();
        for a in &rule.args {
            let op = match a.op.as_str() {
                "SCMP_CMP_EQ" => SeccompCmpOp::Eq,
                "SCMP_CMP_NE" => SeccompCmpOp::Ne,
                "SCMP_CMP_LT" => SeccompCmpOp::Lt,
                "SCMP_CMP_LE" => SeccompCmpOp::Le,
                "SCMP_CMP_GT" => SeccompCmpOp::Gt,
                "SCMP_CMP_GE" => SeccompCmpOp::Ge,
                "SCMP_CMP_MASKED_EQ" => SeccompCmpOp::MaskedEq(a.value),
                other => return Err(format!("seccomp: unsupported operator {other}")),
            };
            let value = if a.op == "SCMP_CMP_MASKED_EQ" {
                a.value_two
            } else {
                a.value
            };
            conditions.push(
                SeccompCondition::new(a.index, SeccompCmpArgLen::Qword, op, value)
                    .map_err(|e| format!("seccomp: {e}"))?,
            );
        }
        let idx = match groups.iter().position(|(g, _)| *g == act) {
            Some(i) => i,
            None => {
                groups.push((act.clone(), BTreeMap::new()));
                groups.len() - 1
            }
        };
        for name in &rule.names {
            // A call this architecture does not have cannot be made: nothing to filter.
            let Some(nr) = number(name) else { continue };
            let entry = groups[idx].1.entry(nr).or_default();
            if conditions.is_empty() {
                // Unconditional: an empty rule list matches every call.
                entry.clear();
                entry.push(
                    SeccompRule::new(vec![
                        SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::Ge, 0)
                            .map_err(|e| format!("seccomp: {e}"))?,
                    ])
                    .map_err(|e| format!("seccomp: {e}"))?,
                );
            } else {
                entry.push(
                    SeccompRule::new(conditions.clone()).map_err(|e| format!("seccomp: {e}"))?,
                );
            }
        }
    }
    let arch = arch()?;
    let mut out = Vec::new();
    for (act, rules) in groups {
        if rules.is_empty() {
            continue;
        }
        let filter = SeccompFilter::new(rules, SeccompAction::Allow, act, arch)
            .map_err(|e| format!("seccomp: {e}"))?;
        out.push(BpfProgram::try_from(filter).map_err(|e| format!("seccomp: {e}"))?);
    }
    Ok(out)
}

/// Loads the filters into this thread; they pass to everything it execs. Not through
/// seccompiler's loader, which sets `no_new_privs` on every container: see
/// `sys::load_seccomp`.
pub fn load(programs: &[BpfProgram]) -> Result<(), String> {
    for p in programs {
        // SAFETY: seccompiler's `sock_filter` is the kernel's `struct sock_filter`, as libc's.
        let filter =
            unsafe { std::slice::from_raw_parts(p.as_ptr() as *const libc::sock_filter, p.len()) };
        crate::sys::load_seccomp(filter).map_err(|e| format!("seccomp: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_profile() -> Seccomp {
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../../core/src/runtime/seccomp.json")).unwrap();
        let mut v = v;
        for g in v["syscalls"].as_array_mut().unwrap() {
            g.as_object_mut().unwrap().remove("excludes");
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn default_profile_compiles() {
        let start = std::time::Instant::now();
        let progs = compile(&default_profile()).unwrap();
        eprintln!(
            "compiled {} filters, {} instructions, in {:?}",
            progs.len(),
            progs.iter().map(Vec::len).sum::<usize>(),
            start.elapsed()
        );
        assert_eq!(progs.len(), 2);
    }
}
