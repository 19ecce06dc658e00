//! The short forms of a mount a user writes (`-v`, `--tmpfs`, a `Binds` or `Tmpfs` entry of
//! the API), read into a [`MountSpec`].

use super::MountSpec;
use crate::model::parse_bytes;

/// One option of `-v`'s third part (or `bind-propagation`).
pub fn volume_option(m: &mut MountSpec, opt: &str) -> Result<(), String> {
    match opt {
        "ro" => m.readonly = true,
        "rw" => m.readonly = false,
        "z" | "Z" => {} // SELinux relabelling: nothing to do on a host without it
        "nocopy" => m.nocopy = true,
        "rprivate" | "private" | "rshared" | "shared" | "rslave" | "slave" => {
            m.propagation = Some(opt.to_string())
        }
        "" => {}
        other => return Err(format!("invalid mode: {other}")),
    }
    Ok(())
}

/// `-v [NAME|/HOST:]/PATH[:OPTS]` (a `Binds` entry); the error says what is wrong.
pub fn parse_volume(s: &str) -> Result<MountSpec, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let (source, target, opts) = match parts.as_slice() {
        [t] => ("", *t, ""),
        [a, b] if b.starts_with('/') => (*a, *b, ""),
        [t, o] => ("", *t, *o),
        [a, b, o] => (*a, *b, *o),
        _ => return Err("too many colons".into()),
    };
    if !target.starts_with('/') {
        return Err(format!(
            "invalid mount path: '{target}' mount path must be absolute"
        ));
    }
    let mut m = MountSpec {
        kind: if source.starts_with('/') {
            "bind"
        } else {
            "volume"
        }
        .into(),
        source: source.to_string(),
        target: target.to_string(),
        create_host_path: source.starts_with('/'),
        ..Default::default()
    };
    for o in opts.split(',') {
        volume_option(&mut m, o)?;
    }
    Ok(m)
}

/// `--tmpfs /PATH[:size=64m,mode=1777,ro]` (a `Tmpfs` entry is the same, split at the colon).
pub fn parse_tmpfs(target: &str, opts: &str) -> Result<MountSpec, String> {
    let mut m = MountSpec {
        kind: "tmpfs".into(),
        target: target.to_string(),
        ..Default::default()
    };
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o.split_once('=') {
            // `size=0` is no size, as `TmpfsOptions.SizeBytes: 0` is in the API: the kernel's
            // default (half the memory), never an unbounded tmpfs.
            Some(("size", v)) => m.tmpfs_size = Some(parse_bytes(v)?).filter(|s| *s > 0),
            Some(("mode", v)) => {
                m.tmpfs_mode =
                    Some(u32::from_str_radix(v, 8).map_err(|_| format!("invalid mode: {v}"))?)
            }
            None if o == "ro" => m.readonly = true,
            None if o == "rw" => m.readonly = false,
            // Docker's defaults, which every tmpfs here has.
            None if matches!(o, "nosuid" | "nodev" | "noexec") => {}
            _ => return Err(format!("tmpfs option {o:?} is not supported")),
        }
    }
    if !target.starts_with('/') {
        return Err("mount path must be absolute".into());
    }
    m.tmpfs_options = Some(opts.to_string());
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tmpfs_of_size_zero_has_no_size() {
        // As the API's `SizeBytes: 0`: the kernel's default, and the same after a round trip
        // through a client body (found by the create_json fuzz target).
        assert_eq!(parse_tmpfs("/tmp", "size=0").unwrap().tmpfs_size, None);
        assert_eq!(
            parse_tmpfs("/tmp", "size=1k").unwrap().tmpfs_size,
            Some(1024)
        );
    }
}
