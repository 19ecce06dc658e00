//! Seccomp profiles in Docker's JSON format, resolved for one container and compiled to a
//! classic BPF program for the kernel.
//!
//! A profile in Docker's format is OCI's `linux.seccomp` plus conditions on each rule
//! (`includes`/`excludes`: capabilities, architectures, kernel version) and an `archMap`
//! saying which ABIs go with the host's. [`Profile::resolve`] settles those for one container
//! and one host, leaving plain OCI `linux.seccomp`, which is what the engine writes into a
//! bundle. [`compile`] turns that into one filter covering every ABI the host can run (see
//! [`arch`]), checked by the kernel before any other rule.
//!
//! The built-in profile, [`DEFAULT_PROFILE`], is Docker's default: it allows about 370 calls
//! by name and refuses everything else with `EPERM`, so a call the kernel gains later is
//! refused until it is reviewed. Calls newer than every table here get `ENOSYS` instead, so
//! programs fall back to an older call instead of failing.

pub mod arch;
pub mod bpf;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use arch::Arch;
pub use bpf::{Compiled, compile};

/// The profile every container gets unless it asks for another or for none: Docker's.
pub const DEFAULT_PROFILE: &str = include_str!("../default.json");

/// What went wrong with a profile, in words that name the field or call at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seccomp profile: {}", self.0)
    }
}

impl std::error::Error for Error {}

fn err<T>(msg: impl Into<String>) -> Result<T, Error> {
    Err(Error(msg.into()))
}

/// A profile: Docker's format, or OCI's `linux.seccomp` (the same without the conditions).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    #[serde(default)]
    pub default_action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_errno_ret: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub architectures: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arch_map: Vec<ArchMap>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_metadata: Option<String>,
    #[serde(default)]
    pub syscalls: Vec<Rule>,
}

/// The ABIs that go with a host architecture.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchMap {
    pub architecture: String,
    #[serde(default)]
    pub sub_architectures: Option<Vec<String>>,
}

/// One rule: the calls it names, what happens to them, and on which arguments.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno_ret: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<Arg>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub includes: Option<Filter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excludes: Option<Filter>,
}

/// When a rule applies (`includes`) or does not (`excludes`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caps: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arches: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_kernel: Option<String>,
}

/// A condition on argument `index`: `op` compares it with `value` (for `SCMP_CMP_MASKED_EQ`,
/// `arg & value == value_two`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Arg {
    pub index: u32,
    pub value: u64,
    #[serde(default)]
    pub value_two: u64,
    pub op: String,
}

/// The host a profile is resolved for.
#[derive(Debug, Clone)]
pub struct Host {
    pub arch: Arch,
    /// The running kernel's version (major, minor), for `minKernel`.
    pub kernel: (u32, u32),
}

impl Host {
    /// This machine.
    pub fn this() -> Result<Host, Error> {
        let arch = Arch::native()
            .ok_or_else(|| Error(format!("no filter for {}", std::env::consts::ARCH)))?;
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let kernel = parse_kernel(release.trim())
            .ok_or_else(|| Error(format!("kernel version {:?}", release.trim())))?;
        Ok(Host { arch, kernel })
    }
}

/// `5.10` (or `5.10.3-rc1`...) as (5, 10).
fn parse_kernel(s: &str) -> Option<(u32, u32)> {
    let mut it = s.split(['.', '-', '+']);
    let major = it.next()?.parse().ok()?;
    let minor = it.next().unwrap_or("0").parse().ok()?;
    Some((major, minor))
}

impl Profile {
    /// Reads a profile from JSON, naming what is wrong with it.
    pub fn from_json(text: &str) -> Result<Profile, Error> {
        serde_json::from_str(text).map_err(|e| Error(format!("invalid JSON: {e}")))
    }

    /// The built-in profile.
    pub fn default_profile() -> Profile {
        Profile::from_json(DEFAULT_PROFILE).expect("the built-in profile is valid")
    }

    /// OCI `linux.seccomp` for a container with bounding capabilities `caps` on `host`:
    /// `archMap` becomes the host's ABIs, and each rule is kept or dropped by its `includes`
    /// and `excludes`, as Docker does. `None` where the profile filters nothing (no default
    /// action and no rules).
    pub fn resolve(&self, caps: &[String], host: &Host) -> Result<Option<Profile>, Error> {
        if self.default_action.is_empty() && self.syscalls.is_empty() {
            return Ok(None);
        }
        if !self.architectures.is_empty() && !self.arch_map.is_empty() {
            return err("both 'architectures' and 'archMap' are given; use one");
        }
        let mut out = Profile {
            default_action: self.default_action.clone(),
            default_errno_ret: self.default_errno_ret,
            architectures: self.architectures.clone(),
            arch_map: vec![],
            flags: self.flags.clone(),
            listener_path: self.listener_path.clone(),
            listener_metadata: self.listener_metadata.clone(),
            syscalls: vec![],
        };
        let native = host.arch.scmp_name();
        for m in &self.arch_map {
            if !arch::known_arch(&m.architecture) {
                return err(format!("unknown architecture {:?}", m.architecture));
            }
            if m.architecture == native {
                out.architectures.push(m.architecture.clone());
                out.architectures
                    .extend(m.sub_architectures.iter().flatten().cloned());
                break;
            }
        }
        let arch = host.arch.short_name();
        let has = |c: &String| caps.iter().any(|have| have == c);
        let newer = |v: &str| -> Result<bool, Error> {
            let want = parse_kernel(v).ok_or_else(|| Error(format!("invalid minKernel {v:?}")))?;
            Ok(host.kernel >= want)
        };
        for (i, rule) in self.syscalls.iter().enumerate() {
            let mut rule = rule.clone();
            if let Some(name) = rule.name.take() {
                if !rule.names.is_empty() {
                    return err(format!(
                        "rule {i}: both 'name' and 'names' are given; use one"
                    ));
                }
                rule.names = vec![name];
            }
            if let Some(x) = rule.excludes.take() {
                if x.arches.iter().any(|a| a == arch) || x.caps.iter().any(has) {
                    continue;
                }
                if let Some(v) = &x.min_kernel
                    && newer(v)?
                {
                    continue;
                }
            }
            if let Some(x) = rule.includes.take() {
                if !x.arches.is_empty() && !x.arches.iter().any(|a| a == arch) {
                    continue;
                }
                if !x.caps.iter().all(has) {
                    continue;
                }
                if let Some(v) = &x.min_kernel
                    && !newer(v)?
                {
                    continue;
                }
            }
            rule.comment = None;
            out.syscalls.push(rule);
        }
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Host {
        Host {
            arch: Arch::X86_64,
            kernel: (6, 1),
        }
    }

    #[test]
    fn resolve_follows_includes_and_excludes() {
        let p = Profile::default_profile();
        let none = p.resolve(&[], &host()).unwrap().unwrap();
        assert_eq!(
            none.architectures,
            ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
        );
        assert!(none.arch_map.is_empty());
        let names = |p: &Profile, action: &str| -> Vec<String> {
            p.syscalls
                .iter()
                .filter(|r| r.action == action && r.args.is_empty())
                .flat_map(|r| r.names.clone())
                .collect()
        };
        let allowed = names(&none, "SCMP_ACT_ALLOW");
        assert!(allowed.contains(&"getpid".to_string()));
        assert!(allowed.contains(&"ptrace".to_string()), "minKernel 4.8");
        assert!(allowed.contains(&"arch_prctl".to_string()));
        assert!(!allowed.contains(&"riscv_flush_icache".to_string()));
        assert!(!allowed.contains(&"mount".to_string()));
        assert!(names(&none, "SCMP_ACT_ERRNO").contains(&"clone3".to_string()));

        let admin = p
            .resolve(&["CAP_SYS_ADMIN".to_string()], &host())
            .unwrap()
            .unwrap();
        let allowed = names(&admin, "SCMP_ACT_ALLOW");
        assert!(allowed.contains(&"mount".to_string()));
        assert!(allowed.contains(&"clone3".to_string()));
        assert!(!names(&admin, "SCMP_ACT_ERRNO").contains(&"clone3".to_string()));

        let old = Host {
            arch: Arch::X86_64,
            kernel: (4, 4),
        };
        let old = p.resolve(&[], &old).unwrap().unwrap();
        assert!(!names(&old, "SCMP_ACT_ALLOW").contains(&"ptrace".to_string()));

        let arm = Host {
            arch: Arch::Aarch64,
            kernel: (6, 1),
        };
        let arm = p.resolve(&[], &arm).unwrap().unwrap();
        assert_eq!(arm.architectures, ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]);
        assert!(names(&arm, "SCMP_ACT_ALLOW").contains(&"set_tls".to_string()));
    }

    #[test]
    fn bad_profiles_name_the_problem() {
        let e = Profile::from_json("{\"defaultAction\": 1}").unwrap_err();
        assert!(e.to_string().contains("invalid JSON"), "{e}");
        let both = Profile::from_json(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64"],
                "archMap":[{"architecture":"SCMP_ARCH_X86_64"}]}"#,
        )
        .unwrap();
        assert!(both.resolve(&[], &host()).unwrap_err().0.contains("both"));
        let both = Profile::from_json(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
                {"name":"read","names":["write"],"action":"SCMP_ACT_ERRNO"}]}"#,
        )
        .unwrap();
        assert!(both.resolve(&[], &host()).unwrap_err().0.contains("rule 0"));
        let empty = Profile::from_json("{}").unwrap();
        assert_eq!(empty.resolve(&[], &host()).unwrap(), None);
    }

    #[test]
    fn kernel_versions() {
        assert_eq!(parse_kernel("6.18.44-fc-v669"), Some((6, 18)));
        assert_eq!(parse_kernel("4.8"), Some((4, 8)));
        assert_eq!(parse_kernel("5"), Some((5, 0)));
        assert_eq!(parse_kernel("x"), None);
    }
}
