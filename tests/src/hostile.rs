//! What the escape tests share: the two ways in (the CLI on the root, and the CLI through a
//! daemon on it), hostile images built from busybox, and guards that put the host back.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::{Daemon, Root, busybox_rootfs, escape_helper, ketch_bin};

/// One way in: the CLI on the root itself, or the CLI through a daemon on that root.
pub struct Front<'a> {
    pub r: &'a Root,
    pub url: Option<String>,
}

impl Front<'_> {
    pub fn name(&self) -> &'static str {
        if self.url.is_some() {
            "through the daemon"
        } else {
            "embedded"
        }
    }

    pub fn cmd(&self) -> Command {
        match &self.url {
            None => self.r.cmd(),
            Some(url) => {
                let mut c = Command::new(ketch_bin());
                c.args(["-H", url])
                    .env_remove("KETCH_ROOT")
                    .env_remove("KETCH_HOST")
                    .env("KETCH_BRIDGE", &self.r.bridge)
                    .env("KETCH_IP_FORWARD", "false")
                    .stdin(Stdio::null());
                c
            }
        }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "{}: ketch {args:?} failed ({}):\n{}{}",
            self.name(),
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }
}

/// Runs `attack` embedded, then through a daemon started on the same root.
pub fn both(r: &Root, attack: impl Fn(&Front)) {
    attack(&Front { r, url: None });
    let d = Daemon::start(r);
    attack(&Front {
        r,
        url: Some(format!("unix://{}", d.socket.display())),
    });
}

/// An entry a hostile image adds to busybox (replacing busybox's entry of that name).
pub enum E<'a> {
    File(&'a str, &'a [u8], u32),
    Dir(&'a str),
    Link(&'a str, &'a str),
}

impl E<'_> {
    pub fn path(&self) -> &str {
        match self {
            E::File(p, ..) | E::Dir(p) | E::Link(p, _) => p,
        }
    }
}

/// Imports busybox plus `extra` (and the escape helper as `/bin/escape-helper`, and again
/// setuid root as `/opt/euid`) as image `name`, with `changes` (`VOLUME /dev`) applied.
pub fn hostile_image(r: &Root, name: &str, extra: &[E], changes: &[&str]) {
    let helper = std::fs::read(escape_helper()).unwrap();
    let mut all: Vec<E> = vec![
        E::File("bin/escape-helper", &helper, 0o755),
        E::Dir("opt"),
        E::File("opt/euid", &helper, 0o4755),
    ];
    all.extend(extra.iter().map(|e| match e {
        E::File(p, d, m) => E::File(p, d, *m),
        E::Dir(p) => E::Dir(p),
        E::Link(p, t) => E::Link(p, t),
    }));
    let mut b = tar::Builder::new(Vec::new());
    let mut base = tar::Archive::new(std::fs::File::open(busybox_rootfs()).unwrap());
    for entry in base.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().display().to_string();
        let path = path
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_string();
        if all.iter().any(|e| e.path() == path) {
            continue;
        }
        let h = entry.header().clone();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        b.append(&h, &data[..]).unwrap();
    }
    for e in &all {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        match e {
            E::File(p, data, mode) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, p, *data).unwrap();
            }
            E::Dir(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, p, &[][..]).unwrap();
            }
            E::Link(p, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, p, target).unwrap();
            }
        }
    }
    let tar = b.into_inner().unwrap();
    let mut args = vec!["import".to_string()];
    for c in changes {
        args.push("-c".into());
        args.push(c.to_string());
    }
    args.push("-".into());
    args.push(name.into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = r.run_stdin(&args, &tar);
    assert!(o.status.success(), "import {name}: {o:?}");
}

/// A directory of the host's (outside the state root) that an attack aims at; it must stay
/// as the test made it.
pub fn host_dir(r: &Root, name: &str) -> PathBuf {
    let d = r.dir.path().join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn entries(d: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The monitor's state file of a container.
pub fn state(r: &Root, id: &str) -> serde_json::Value {
    let b = std::fs::read(r.path().join("containers").join(id).join("state.json")).unwrap();
    serde_json::from_slice(&b).unwrap()
}

pub fn alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

pub use crate::wait_until;

/// Restores a kernel setting on drop, should an attack have changed it.
pub struct Setting {
    pub path: &'static str,
    pub value: String,
}

impl Drop for Setting {
    fn drop(&mut self) {
        if std::fs::read_to_string(self.path).unwrap_or_default() != self.value {
            let _ = std::fs::write(self.path, &self.value);
        }
    }
}

/// A child process killed and collected on drop, also when a test fails.
pub struct Reaped(pub std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
