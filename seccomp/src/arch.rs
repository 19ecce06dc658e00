//! Architectures a filter covers, and their system call numbers.
//!
//! A process on an x86_64 host makes system calls in three ABIs: native x86_64, i386 (`int
//! 0x80`, 32-bit programs) and x32 (x86_64 numbers with bit 30 set). The kernel tells the
//! first two apart by `seccomp_data.arch`; x32 shares x86_64's and is told apart only by the
//! number. A filter that checks one of them and lets the others through unchecked is no
//! filter: every rule can be bypassed through the other numbering. So every ABI the host can
//! run is either filtered by the same rules or refused outright.

use std::str::FromStr;

/// `__X32_SYSCALL_BIT`: x32 system call numbers are x86_64's with this bit set.
pub const X32_BIT: u32 = 0x4000_0000;

/// An ABI system calls can arrive in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Arch {
    X86_64,
    X86,
    X32,
    Aarch64,
    Arm,
    Riscv64,
}

impl Arch {
    /// The architecture this program was built for.
    pub fn native() -> Option<Arch> {
        match std::env::consts::ARCH {
            "x86_64" => Some(Arch::X86_64),
            "x86" => Some(Arch::X86),
            "aarch64" => Some(Arch::Aarch64),
            "arm" => Some(Arch::Arm),
            "riscv64" => Some(Arch::Riscv64),
            _ => None,
        }
    }

    /// The name a profile gives it (`architectures`, `archMap`).
    pub fn scmp_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "SCMP_ARCH_X86_64",
            Arch::X86 => "SCMP_ARCH_X86",
            Arch::X32 => "SCMP_ARCH_X32",
            Arch::Aarch64 => "SCMP_ARCH_AARCH64",
            Arch::Arm => "SCMP_ARCH_ARM",
            Arch::Riscv64 => "SCMP_ARCH_RISCV64",
        }
    }

    /// The name `includes.arches` and `excludes.arches` use (Docker's, after libseccomp).
    pub fn short_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::X86 => "x86",
            Arch::X32 => "x32",
            Arch::Aarch64 => "arm64",
            Arch::Arm => "arm",
            Arch::Riscv64 => "riscv64",
        }
    }

    /// `AUDIT_ARCH_*`, as the kernel reports it in `seccomp_data.arch`.
    pub fn audit(self) -> u32 {
        match self {
            Arch::X86_64 | Arch::X32 => 0xc000_003e,
            Arch::X86 => 0x4000_0003,
            Arch::Aarch64 => 0xc000_00b7,
            Arch::Arm => 0x4000_0028,
            Arch::Riscv64 => 0xc000_00f3,
        }
    }

    /// Whether system call arguments are 32 bits wide: only their low halves are compared,
    /// as libseccomp does, and as the kernel reads them.
    pub fn narrow(self) -> bool {
        matches!(self, Arch::X86 | Arch::X32 | Arch::Arm)
    }

    /// The ABIs a process on a host of this architecture may use, itself first.
    pub fn runnable(self) -> &'static [Arch] {
        match self {
            Arch::X86_64 => &[Arch::X86_64, Arch::X86, Arch::X32],
            Arch::X86 => &[Arch::X86],
            Arch::X32 => &[Arch::X32],
            Arch::Aarch64 => &[Arch::Aarch64, Arch::Arm],
            Arch::Arm => &[Arch::Arm],
            Arch::Riscv64 => &[Arch::Riscv64],
        }
    }

    /// The system call `name` on this ABI, if it has one.
    pub fn number(self, name: &str) -> Option<u32> {
        match self {
            Arch::X86_64 => syscalls::x86_64::Sysno::from_str(name)
                .ok()
                .map(|s| s.id() as u32),
            Arch::X86 => syscalls::x86::Sysno::from_str(name)
                .ok()
                .map(|s| s.id() as u32),
            Arch::X32 => x32_number(name),
            Arch::Aarch64 => syscalls::aarch64::Sysno::from_str(name)
                .ok()
                .map(|s| s.id() as u32),
            Arch::Arm => syscalls::arm::Sysno::from_str(name)
                .ok()
                .map(|s| s.id() as u32)
                .or_else(|| {
                    ARM_PRIVATE
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map(|(_, nr)| *nr)
                }),
            Arch::Riscv64 => syscalls::riscv64::Sysno::from_str(name)
                .ok()
                .map(|s| s.id() as u32),
        }
    }

    /// Every system call of this ABI, as (name, number).
    pub fn table(self) -> Vec<(&'static str, u32)> {
        fn all<T: Copy>(
            it: impl Iterator<Item = T>,
            f: impl Fn(T) -> (&'static str, u32),
        ) -> Vec<(&'static str, u32)> {
            it.map(f).collect()
        }
        match self {
            Arch::X86_64 => all(syscalls::x86_64::Sysno::iter(), |s| {
                (s.name(), s.id() as u32)
            }),
            Arch::X86 => all(syscalls::x86::Sysno::iter(), |s| (s.name(), s.id() as u32)),
            Arch::X32 => Arch::X86_64
                .table()
                .into_iter()
                .filter_map(|(n, _)| Some((n, x32_number(n)?)))
                .collect(),
            Arch::Aarch64 => all(syscalls::aarch64::Sysno::iter(), |s| {
                (s.name(), s.id() as u32)
            }),
            Arch::Arm => {
                let mut t = all(syscalls::arm::Sysno::iter(), |s| (s.name(), s.id() as u32));
                t.extend(ARM_PRIVATE.iter().copied());
                t
            }
            Arch::Riscv64 => all(syscalls::riscv64::Sysno::iter(), |s| {
                (s.name(), s.id() as u32)
            }),
        }
    }

    /// The lowest and highest system call numbers this ABI has.
    pub fn range(self) -> (u32, u32) {
        let t = self.table();
        let lo = if self == Arch::X32 { X32_BIT } else { 0 };
        (lo, t.iter().map(|(_, nr)| *nr).max().unwrap_or(lo))
    }
}

impl FromStr for Arch {
    type Err = ();

    fn from_str(s: &str) -> Result<Arch, ()> {
        ALL.iter().copied().find(|a| a.scmp_name() == s).ok_or(())
    }
}

/// Every ABI a filter can be built for.
pub const ALL: [Arch; 6] = [
    Arch::X86_64,
    Arch::X86,
    Arch::X32,
    Arch::Aarch64,
    Arch::Arm,
    Arch::Riscv64,
];

/// Names libseccomp knows for architectures no filter here is built for: a profile may name
/// them (Docker's does, under `includes.arches`), and they are skipped like any call an ABI
/// lacks.
const OTHER_ARCHES: &[&str] = &[
    "SCMP_ARCH_MIPS",
    "SCMP_ARCH_MIPS64",
    "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32",
    "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_S390",
    "SCMP_ARCH_S390X",
    "SCMP_ARCH_PARISC",
    "SCMP_ARCH_PARISC64",
    "SCMP_ARCH_RISCV32",
    "SCMP_ARCH_LOONGARCH64",
    "SCMP_ARCH_M68K",
    "SCMP_ARCH_SH",
    "SCMP_ARCH_SHEB",
];

/// Whether `name` is an architecture libseccomp knows.
pub fn known_arch(name: &str) -> bool {
    Arch::from_str(name).is_ok() || OTHER_ARCHES.contains(&name)
}

/// ARM's private system calls (`__ARM_NR_*`, base 0x0f0000).
const ARM_PRIVATE: &[(&str, u32)] = &[
    ("breakpoint", 0x000f_0001),
    ("cacheflush", 0x000f_0002),
    ("usr26", 0x000f_0003),
    ("usr32", 0x000f_0004),
    ("set_tls", 0x000f_0005),
    ("get_tls", 0x000f_0006),
];

/// x86_64 system calls x32 does not have: 64-bit layouts of their arguments with no x32
/// entry point, and calls only 64-bit programs make.
const X86_64_ONLY: &[&str] = &[
    "_sysctl",
    "create_module",
    "epoll_ctl_old",
    "epoll_wait_old",
    "get_kernel_syms",
    "get_thread_area",
    "map_shadow_stack",
    "nfsservctl",
    "query_module",
    "set_thread_area",
    "uprobe",
    "uretprobe",
    "uselib",
    "vserver",
];

/// x32's own entry points for calls whose arguments differ in layout from x86_64's (the
/// x86_64 numbers of these calls are not x32's).
const X32_COMPAT: &[(&str, u32)] = &[
    ("rt_sigaction", 512),
    ("rt_sigreturn", 513),
    ("ioctl", 514),
    ("readv", 515),
    ("writev", 516),
    ("recvfrom", 517),
    ("sendmsg", 518),
    ("recvmsg", 519),
    ("execve", 520),
    ("ptrace", 521),
    ("rt_sigpending", 522),
    ("rt_sigtimedwait", 523),
    ("rt_sigqueueinfo", 524),
    ("sigaltstack", 525),
    ("timer_create", 526),
    ("mq_notify", 527),
    ("kexec_load", 528),
    ("waitid", 529),
    ("set_robust_list", 530),
    ("get_robust_list", 531),
    ("vmsplice", 532),
    ("move_pages", 533),
    ("preadv", 534),
    ("pwritev", 535),
    ("rt_tgsigqueueinfo", 536),
    ("recvmmsg", 537),
    ("sendmmsg", 538),
    ("process_vm_readv", 539),
    ("process_vm_writev", 540),
    ("setsockopt", 541),
    ("getsockopt", 542),
    ("io_setup", 543),
    ("io_submit", 544),
    ("execveat", 545),
    ("preadv2", 546),
    ("pwritev2", 547),
];

fn x32_number(name: &str) -> Option<u32> {
    if X86_64_ONLY.contains(&name) {
        return None;
    }
    if let Some((_, nr)) = X32_COMPAT.iter().find(|(n, _)| *n == name) {
        return Some(X32_BIT | nr);
    }
    Arch::X86_64.number(name).map(|nr| X32_BIT | nr)
}

/// Whether `name` is a system call on any architecture the kernel has: a name that is not is
/// a mistake in the profile, not a call some other machine makes. A scan of every table:
/// asked only for names the host's own tables lack.
pub fn known_syscall(name: &str) -> bool {
    macro_rules! any_of {
        ($($arch:ident),*) => {
            false $(|| syscalls::$arch::Sysno::from_str(name).is_ok())*
        };
    }
    any_of!(
        x86_64,
        x86,
        aarch64,
        arm,
        riscv32,
        riscv64,
        powerpc,
        powerpc64,
        s390x,
        mips,
        mips64,
        loongarch64,
        sparc,
        sparc64
    ) || ARM_PRIVATE.iter().any(|(n, _)| *n == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The x32 table derived here is the one the kernel's headers give, where the machine has
    /// them (`linux-libc-dev`): every entry they list, at the same number.
    #[test]
    fn x32_numbers_match_the_kernel_headers() {
        let Ok(h) = std::fs::read_to_string("/usr/include/x86_64-linux-gnu/asm/unistd_x32.h")
        else {
            eprintln!("no x32 header here; skipped");
            return;
        };
        let mut n = 0;
        for line in h.lines() {
            let Some(rest) = line.strip_prefix("#define __NR_") else {
                continue;
            };
            let Some((name, value)) = rest.split_once(" (__X32_SYSCALL_BIT + ") else {
                continue;
            };
            let nr: u32 = value.trim_end_matches(')').parse().unwrap();
            assert_eq!(x32_number(name), Some(X32_BIT | nr), "{name}");
            n += 1;
        }
        assert!(n > 300, "only {n} entries read");
        // And nothing x32 lacks is given a number: every derived entry below the header's
        // highest plain number is in the header.
        let listed: Vec<&str> = h
            .lines()
            .filter_map(|l| l.strip_prefix("#define __NR_"))
            .filter_map(|r| r.split_once(' ').map(|(n, _)| n))
            .collect();
        let top = h
            .lines()
            .filter_map(|l| l.split_once("(__X32_SYSCALL_BIT + "))
            .filter_map(|(_, v)| v.trim_end_matches(')').parse::<u32>().ok())
            .filter(|nr| *nr < 512)
            .max()
            .unwrap();
        for (name, nr) in Arch::X32.table() {
            let plain = nr & !X32_BIT;
            if plain <= top || plain >= 512 {
                assert!(listed.contains(&name), "{name} is not an x32 call");
            }
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(Arch::X86_64.number("getpid"), Some(39));
        assert_eq!(Arch::X86.number("getpid"), Some(20));
        assert_eq!(Arch::X32.number("getpid"), Some(X32_BIT | 39));
        assert_eq!(Arch::X32.number("ioctl"), Some(X32_BIT | 514));
        assert_eq!(Arch::X32.number("uselib"), None);
        assert_eq!(Arch::Aarch64.number("getpid"), Some(172));
        assert_eq!(Arch::Aarch64.number("open"), None);
        assert_eq!(Arch::Aarch64.number("open_tree"), Some(428));
        assert_eq!(Arch::Aarch64.number("mount_setattr"), Some(442));
        assert_eq!(Arch::Arm.number("set_tls"), Some(0xf0005));
        assert!(known_syscall("s390_runtime_instr"));
        assert!(known_syscall("breakpoint"));
        assert!(!known_syscall("getpidd"));
        #[cfg(target_arch = "x86_64")]
        {
            assert_eq!(Arch::native(), Some(Arch::X86_64));
            assert_eq!(
                Arch::X86_64.number("io_uring_setup"),
                Some(libc::SYS_io_uring_setup as u32)
            );
        }
    }
}
