//! The spec's `linux.seccomp`, compiled by `ketch-seccomp` into one filter that covers every
//! ABI this host runs (on x86_64: x86_64, i386 and x32), loaded last before the container's
//! identity is taken.

use ketch_seccomp::{Arch, Profile, compile};

/// Compiles and loads the profile into this thread; the filter passes to everything it execs.
/// Not under `no_new_privs`, unless the kernel demands it: see `sys::load_seccomp`.
pub fn load(profile: &serde_json::value::RawValue) -> Result<(), String> {
    let profile = Profile::from_json(profile.get()).map_err(|e| e.to_string())?;
    let host = Arch::native().ok_or_else(|| {
        format!(
            "seccomp: no filter can be built for {}",
            std::env::consts::ARCH
        )
    })?;
    let compiled = compile(&profile, host).map_err(|e| e.to_string())?;
    crate::sys::load_seccomp(&compiled.program, compiled.flags)
        .map_err(|e| format!("seccomp: load the filter: {e}"))
}
