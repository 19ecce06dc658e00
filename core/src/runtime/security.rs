//! A container's `--security-opt`s.

use serde_json::Value;

use super::CreateOptions;

/// `SecurityOpt` entries (`--security-opt`), as Docker's daemon reads them: `KEY=VALUE`,
/// or the older `KEY:VALUE`.
#[derive(Debug, Default)]
pub struct SecurityOpts {
    pub no_new_privileges: bool,
    pub seccomp_unconfined: bool,
    /// A seccomp profile's JSON. Clients read a profile's file and send its content.
    pub seccomp_profile: Option<String>,
    /// `systempaths=unconfined`: nothing of /proc and /sys masked or made read-only.
    pub systempaths_unconfined: bool,
}

impl SecurityOpts {
    /// The `SecurityOpt` entries that give a container its options back.
    pub fn of(opts: &CreateOptions) -> Vec<String> {
        let mut out = Vec::new();
        if opts.no_new_privileges {
            out.push("no-new-privileges:true".to_string());
        }
        if opts.seccomp_unconfined {
            out.push("seccomp=unconfined".to_string());
        }
        if let Some(p) = &opts.seccomp_profile {
            out.push(format!("seccomp={p}"));
        }
        if opts.masked_paths.as_ref().is_some_and(Vec::is_empty)
            && opts.readonly_paths.as_ref().is_some_and(Vec::is_empty)
        {
            out.push("systempaths=unconfined".to_string());
        }
        out
    }

    /// What the options say of the paths of /proc and /sys hidden or made read-only.
    pub fn apply_to(&self, opts: &mut CreateOptions) {
        if self.systempaths_unconfined {
            opts.masked_paths = Some(vec![]);
            opts.readonly_paths = Some(vec![]);
        }
    }

    /// Takes one entry; an entry that is not one of these is an error that names it.
    pub fn apply(&mut self, o: &str) -> Result<(), String> {
        if o == "no-new-privileges" {
            self.no_new_privileges = true;
            return Ok(());
        }
        let (k, v) = o
            .split_once('=')
            .or_else(|| o.split_once(':'))
            .ok_or_else(|| format!("invalid security option {o:?}"))?;
        match (k, v) {
            ("seccomp", "unconfined") => {
                self.seccomp_unconfined = true;
                self.seccomp_profile = None;
            }
            ("seccomp", "builtin" | "default") => {
                self.seccomp_unconfined = false;
                self.seccomp_profile = None;
            }
            ("seccomp", profile) => {
                // Checked in full when the container is created; the JSON is checked here so
                // a path sent where a profile belongs is named as such.
                if let Err(e) = serde_json::from_str::<Value>(profile) {
                    return Err(format!(
                        "seccomp profile: not a JSON profile ({e}); a client sends the \
                         profile's content, not its path"
                    ));
                }
                self.seccomp_unconfined = false;
                self.seccomp_profile = Some(profile.to_string());
            }
            ("systempaths", "unconfined") => self.systempaths_unconfined = true,
            // This host has no SELinux and no AppArmor: a container is unlabelled and
            // unconfined by them already, which is what these ask for. A label or profile
            // to apply could not be, and is refused.
            ("label", "disable") | ("apparmor", "unconfined") => {}
            ("label", _) => {
                return Err(format!(
                    "invalid security option {o:?}: SELinux is not enabled on this host"
                ));
            }
            ("apparmor", _) => {
                return Err(format!(
                    "invalid security option {o:?}: AppArmor is not enabled on this host"
                ));
            }
            ("no-new-privileges", v) => {
                self.no_new_privileges = v
                    .parse()
                    .map_err(|_| format!("invalid no-new-privileges value {v:?}"))?;
            }
            _ => return Err(format!("invalid security option {o:?}")),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_options_as_dockers_daemon_reads_them() {
        let mut o = SecurityOpts::default();
        o.apply("no-new-privileges").unwrap();
        assert!(o.no_new_privileges);
        o.apply("no-new-privileges:false").unwrap();
        assert!(!o.no_new_privileges);
        o.apply(r#"seccomp={"defaultAction":"SCMP_ACT_ALLOW"}"#)
            .unwrap();
        assert!(o.seccomp_profile.is_some() && !o.seccomp_unconfined);
        o.apply("seccomp:unconfined").unwrap();
        assert!(o.seccomp_profile.is_none() && o.seccomp_unconfined);
        o.apply("seccomp=builtin").unwrap();
        assert!(o.seccomp_profile.is_none() && !o.seccomp_unconfined);
        // A client that sends the path instead of the profile is told so.
        let e = o.apply("seccomp=/etc/profile.json").unwrap_err();
        assert!(e.contains("not its path"), "{e}");
        assert!(o.apply("apparmor=x").unwrap_err().contains("apparmor=x"));
        o.apply("apparmor=unconfined").unwrap();
        o.apply("label=disable").unwrap();
        assert!(o.apply("label=type:x").unwrap_err().contains("SELinux"));
        o.apply("systempaths=unconfined").unwrap();
        assert!(o.systempaths_unconfined);
        assert!(o.apply("systempaths=x").is_err());
        assert!(o.apply("no-new-privileges=maybe").is_err());
        assert!(o.apply("label").is_err());
    }
}
