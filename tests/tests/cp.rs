//! `cp` both ways, and that a container cannot turn it against the host.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ketch_tests::hostile::{E, Front, both, entries, host_dir, hostile_image, text, wait_until};
use ketch_tests::{Root, busybox_rootfs, random_hex, require_tool};

fn setup() -> Root {
    let r = Root::new();
    r.ok(&["import", busybox_rootfs().to_str().unwrap(), "busybox"]);
    r
}

#[test]
fn copies_both_ways_with_archive_semantics() {
    let r = setup();
    r.ok(&[
        "run",
        "-d",
        "--name",
        "c",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /data/sub && echo a > /data/a && echo b > /data/sub/b && \
         chown 1234:5678 /data/a && chmod 640 /data/a && ln -sf a /data/link && sleep 1000",
    ]);
    wait_until("the container to make /data", 20, || {
        r.run(&["exec", "c", "test", "-L", "/data/link"])
            .status
            .success()
    });
    let out = r.dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    // Out: a directory into an existing one, under its own name.
    r.ok(&["cp", "c:/data", out.to_str().unwrap()]);
    let a = out.join("data/a");
    let md = std::fs::metadata(&a).unwrap();
    assert_eq!((md.uid(), md.gid(), md.mode() & 0o777), (1234, 5678, 0o640));
    assert_eq!(
        std::fs::read_link(out.join("data/link")).unwrap(),
        Path::new("a")
    );
    assert_eq!(
        std::fs::read_to_string(out.join("data/sub/b")).unwrap(),
        "b\n"
    );
    // A file to a new name; a directory's contents with /.
    r.ok(&["cp", "c:/data/a", out.join("renamed").to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(out.join("renamed")).unwrap(), "a\n");
    r.ok(&[
        "cp",
        "c:/data/sub/.",
        out.join("contents").to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(out.join("contents/b")).unwrap(),
        "b\n"
    );
    // In: into a directory, and to a new name.
    let host = r.dir.path().join("hostfile");
    std::fs::write(&host, "from host\n").unwrap();
    std::os::unix::fs::chown(&host, Some(4321), Some(8765)).unwrap();
    r.ok(&["cp", host.to_str().unwrap(), "c:/data/"]);
    r.ok(&["cp", host.to_str().unwrap(), "c:/data/newname"]);
    assert_eq!(
        r.ok(&[
            "exec",
            "c",
            "sh",
            "-c",
            "cat /data/hostfile /data/newname; stat -c '%u:%g' /data/hostfile"
        ]),
        "from host\nfrom host\n4321:8765\n"
    );
    // A directory's contents with /., to a new name and into an existing directory; a
    // directory to a new name.
    let dir = r.dir.path().join("hostdir");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("one"), "1\n").unwrap();
    std::fs::write(dir.join("sub/two"), "2\n").unwrap();
    let contents = format!("{}/.", dir.display());
    r.ok(&["cp", &contents, "c:/data/fresh"]);
    r.ok(&["cp", &contents, "c:/data/sub"]);
    r.ok(&["cp", dir.to_str().unwrap(), "c:/data/dircopy"]);
    assert_eq!(
        r.ok(&[
            "exec",
            "c",
            "sh",
            "-c",
            "cd /data && find fresh sub dircopy | sort && cat fresh/sub/two"
        ]),
        "dircopy\ndircopy/one\ndircopy/sub\ndircopy/sub/two\n\
         fresh\nfresh/one\nfresh/sub\nfresh/sub/two\n\
         sub\nsub/b\nsub/one\nsub/sub\nsub/sub/two\n2\n"
    );
    // A stopped container, both ways.
    r.ok(&["stop", "-t", "0", "c"]);
    r.ok(&["cp", host.to_str().unwrap(), "c:/while-stopped"]);
    r.ok(&["cp", "c:/while-stopped", out.join("back").to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(out.join("back")).unwrap(),
        "from host\n"
    );
    r.ok(&["start", "c"]);
    assert_eq!(r.ok(&["exec", "c", "cat", "/while-stopped"]), "from host\n");
    // Errors name the problem.
    let (code, err) = r.fails(&["cp", "c:/nonexistent", out.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("Could not find the file /nonexistent"),
        "{err}"
    );
    let (code, err) = r.fails(&["cp", host.to_str().unwrap(), "c:/no/such/dir/x"]);
    assert_eq!(code, 1);
    assert!(err.contains("Could not find"), "{err}");
    let (code, err) = r.fails(&["cp", "nosuch:/x", out.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("No such container"), "{err}");
    r.ok(&["rm", "-f", "c"]);
}

/// The entries of a tarball: (path, kind, uid:gid, mode, content or link target).
fn tar_entries(tar: &[u8]) -> Vec<(String, char, String, u32, String)> {
    let mut a = tar::Archive::new(tar);
    let mut out = Vec::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header().clone();
        let kind = match h.entry_type() {
            tar::EntryType::Directory => 'd',
            tar::EntryType::Symlink => 'l',
            tar::EntryType::Regular => 'f',
            other => panic!("unexpected entry type {other:?}"),
        };
        let body = if kind == 'l' {
            e.link_name().unwrap().unwrap().display().to_string()
        } else {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut e, &mut s).unwrap();
            s
        };
        // Directories are named with or without a trailing slash; the same to a reader.
        let path = e.path().unwrap().display().to_string();
        out.push((
            path.trim_end_matches('/').to_string(),
            kind,
            format!("{}:{}", h.uid().unwrap(), h.gid().unwrap()),
            h.mode().unwrap() & 0o7777,
            body,
        ));
    }
    out.sort();
    out
}

/// A tarball with a directory `x`, a file owned 11:22 mode 0600 and a link in it.
fn tar_to_send() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, link, data, mode, owner) in [
        ("x/", tar::EntryType::Directory, "", &b""[..], 0o750, 0),
        (
            "x/y",
            tar::EntryType::Regular,
            "",
            &b"sent\n"[..],
            0o600,
            11,
        ),
        ("x/l", tar::EntryType::Symlink, "y", &b""[..], 0o777, 0),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_path(name).unwrap();
        h.set_entry_type(kind);
        if !link.is_empty() {
            h.set_link_name(link).unwrap();
        }
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_uid(owner);
        h.set_gid(owner * 2);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

/// `cp CONTAINER:PATH -` writes a tar of PATH to stdout (under its base name; `PATH/.`: its
/// contents), with owners, modes and links; `cp - CONTAINER:DIR` unpacks a tar from stdin
/// into DIR. Both ways for a running and a stopped container.
#[test]
fn cp_with_dash_streams_a_tar_both_ways() {
    let r = setup();
    r.ok(&[
        "run",
        "-d",
        "--name",
        "c",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /data/sub && echo a > /data/a && echo b > /data/sub/b && \
         chown 1234:5678 /data/a && chmod 640 /data/a && ln -sf a /data/link && \
         touch /tmp/ready && exec sleep 1000",
    ]);
    wait_until("the container to make /data", 20, || {
        r.run(&["exec", "c", "test", "-e", "/tmp/ready"])
            .status
            .success()
    });
    let out = |src: &str| {
        let o = r.run(&["cp", src, "-"]);
        assert!(o.status.success(), "cp {src} -: {}", text(&o));
        assert_eq!(String::from_utf8_lossy(&o.stderr), "", "cp {src} -");
        tar_entries(&o.stdout)
    };
    let e = |p: &str, k: char, o: &str, m: u32, b: &str| {
        (p.to_string(), k, o.to_string(), m, b.to_string())
    };
    assert_eq!(
        out("c:/data"),
        [
            e("data", 'd', "0:0", 0o755, ""),
            e("data/a", 'f', "1234:5678", 0o640, "a\n"),
            e("data/link", 'l', "0:0", 0o777, "a"),
            e("data/sub", 'd', "0:0", 0o755, ""),
            e("data/sub/b", 'f', "0:0", 0o644, "b\n"),
        ]
    );
    assert_eq!(
        out("c:/data/sub/."),
        [
            e(".", 'd', "0:0", 0o755, ""),
            e("b", 'f', "0:0", 0o644, "b\n")
        ]
    );
    // In: the archive's tree lands in the directory as it is, owners and modes kept.
    let o = r.run_stdin(&["cp", "-", "c:/data/sub"], &tar_to_send());
    assert!(o.status.success(), "{}", text(&o));
    let listing = "stat -c '%n %F %u:%g %a' /data/sub/x /data/sub/x/y /data/sub/x/l; \
                   cat /data/sub/x/y; readlink /data/sub/x/l";
    let want = "/data/sub/x directory 0:0 750\n/data/sub/x/y regular file 11:22 600\n\
                /data/sub/x/l symbolic link 0:0 777\nsent\ny\n";
    assert_eq!(r.ok(&["exec", "c", "sh", "-c", listing]), want);
    // A stopped container, both ways.
    r.ok(&["stop", "-t", "0", "c"]);
    assert_eq!(out("c:/data/a"), [e("a", 'f', "1234:5678", 0o640, "a\n")]);
    let o = r.run_stdin(&["cp", "-", "c:/data"], &tar_to_send());
    assert!(o.status.success(), "{}", text(&o));
    r.ok(&["start", "c"]);
    assert_eq!(
        r.ok(&[
            "exec",
            "c",
            "sh",
            "-c",
            &listing.replace("/data/sub/x", "/data/x")
        ]),
        want.replace("/data/sub/x", "/data/x")
    );
    // Errors name the problem.
    let o = r.run_stdin(&["cp", "-", "nosuch:/x"], &tar_to_send());
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("No such container: nosuch"),
        "{}",
        text(&o)
    );
    let o = r.run_stdin(&["cp", "-", "c:/data"], b"not a tar archive");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("read the archive"),
        "{}",
        text(&o)
    );
    let (code, err) = r.fails(&["cp", "c:/nonexistent", "-"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("Could not find the file /nonexistent"),
        "{err}"
    );
    r.ok(&["rm", "-f", "c"]);
}

/// A container removed on drop, also when a test fails half-way.
struct Removed<'a>(&'a Front<'a>, String);

impl Drop for Removed<'_> {
    fn drop(&mut self) {
        let _ = self.0.run(&["rm", "-f", &self.1]);
    }
}

/// Waits until `path` exists in container `c`.
fn ready(f: &Front, c: &str, path: &str) {
    wait_until("the container", 20, || {
        f.run(&["exec", c, "test", "-e", path]).status.success()
    });
}

/// Links in the container, planted (`/escape -> /`, `/up -> ../../..`) or swapped in while
/// `cp` runs (CVE-2018-15664: a directory exchanged with a link to `/` by renameat2, over
/// and over), resolve inside the container. The host's secret is never copied out, nothing
/// is ever written to the host's directory, and every `cp` either copies the container's own
/// file or fails with a message.
#[test]
fn symlinks_in_the_container_cannot_reach_the_host() {
    let r = Root::new();
    let secret_dir = host_dir(&r, "cp-secret");
    let secret = format!("HOST-SECRET-{}", random_hex(6));
    std::fs::write(secret_dir.join("secret"), &secret).unwrap();
    let target = host_dir(&r, "cp-target");
    let sd = secret_dir.display().to_string();
    let td = target.display().to_string();
    let sd_rel = sd.trim_start_matches('/').to_string();
    let td_rel = td.trim_start_matches('/').to_string();
    // The container has the same paths, with its own content: through the link they are
    // what a copy may find.
    let inside = "inside-root".to_string();
    let in_data = "inside-data".to_string();
    let files = [format!("{sd_rel}/secret"), format!("data/{sd_rel}/secret")];
    let mut extra = vec![E::Link("escape", "/"), E::Link("up", "../../../../../..")];
    let mut dirs = Vec::new();
    for base in ["", "data/"] {
        let mut acc = base.trim_end_matches('/').to_string();
        for part in sd_rel.split('/').chain(td_rel.split('/')) {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(part);
            dirs.push(acc.clone());
        }
        dirs.push(format!("{base}{sd_rel}"));
        dirs.push(format!("{base}{td_rel}"));
    }
    dirs.insert(0, "data".into());
    dirs.sort();
    dirs.dedup();
    extra.extend(dirs.iter().map(|d| E::Dir(d)));
    extra.push(E::File(&files[0], inside.as_bytes(), 0o644));
    extra.push(E::File(&files[1], in_data.as_bytes(), 0o644));
    extra.push(E::Link("data-link", "/"));
    hostile_image(&r, "cpswap", &extra, &[]);
    let payload = r.dir.path().join("payload");
    std::fs::write(&payload, "planted\n").unwrap();
    let payload = payload.to_str().unwrap().to_string();
    both(&r, |f| {
        let out = r.dir.path().join(format!("stolen-{}", random_hex(4)));
        let out_s = out.to_str().unwrap();
        let name = format!("cp-{}", random_hex(4));
        let _c = Removed(f, name.clone());
        f.ok(&[
            "run",
            "-d",
            "--name",
            &name,
            "cpswap",
            "sh",
            "-c",
            "touch /tmp/ready; exec escape-helper exchange /data /data-link 8",
        ]);
        ready(f, &name, "/tmp/ready");
        // Planted links: out finds the container's file or nothing; in writes inside.
        for src in [
            format!("{name}:/escape/{sd_rel}/secret"),
            format!("{name}:/up/{sd_rel}/secret"),
        ] {
            let o = f.run(&["cp", &src, "-"]);
            assert!(
                !text(&o).contains(&secret),
                "{}: {src}: {}",
                f.name(),
                text(&o)
            );
            assert!(o.status.success(), "{}: {src}: {}", f.name(), text(&o));
            assert!(
                String::from_utf8_lossy(&o.stdout).contains(&inside),
                "{}: {src}",
                f.name()
            );
        }
        for dest in [
            format!("{name}:/escape/{td_rel}/planted"),
            format!("{name}:/up/{td_rel}/planted"),
        ] {
            let o = f.run(&["cp", &payload, &dest]);
            assert!(o.status.success(), "{}: {dest}: {}", f.name(), text(&o));
        }
        assert_eq!(entries(&target), Vec::<String>::new(), "{}", f.name());
        let got = f.ok(&["exec", &name, "cat", &format!("/{td_rel}/planted")]);
        assert_eq!(got, "planted\n", "{}", f.name());

        // The swap race, out and in, each result checked.
        let (mut copied, mut refused) = (0, 0);
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut i = 0;
        while Instant::now() < deadline {
            i += 1;
            let src = format!("{name}:/data/{sd_rel}/secret");
            let o = f.run(&["cp", &src, out_s]);
            if o.status.success() {
                copied += 1;
                let got = std::fs::read_to_string(&out).unwrap();
                assert!(
                    got == inside || got == in_data,
                    "{}: cp out copied {got:?}",
                    f.name()
                );
                std::fs::remove_file(&out).unwrap();
            } else {
                refused += 1;
                assert!(!text(&o).is_empty(), "{}: a failure says nothing", f.name());
            }
            assert!(!text(&o).contains(&secret), "{}: {}", f.name(), text(&o));
            let dest = format!("{name}:/data/{td_rel}/planted-{i}");
            let o = f.run(&["cp", &payload, &dest]);
            assert!(
                o.status.success() || !text(&o).is_empty(),
                "{}: a failure says nothing",
                f.name()
            );
            assert_eq!(
                entries(&target),
                Vec::<String>::new(),
                "{}: cp wrote on the host",
                f.name()
            );
        }
        assert!(
            copied > 0,
            "{}: no copy got through ({refused} refused)",
            f.name()
        );
    });
    assert_eq!(
        std::fs::read_to_string(secret_dir.join("secret")).unwrap(),
        secret
    );
}

/// CVE-2019-14271: `docker cp` loaded the container's name-service libraries into a process
/// of the host's, which ran their constructors as root outside the container. Here the
/// image's `libnss_files.so.2`, `libnss_compat.so.2` and a fake `libc.so.6`, in every usual
/// library directory, each have a constructor that leaves a marker (on the host, where such
/// a process would write, and in the container); the image asks for `files` lookups and has
/// files owned by users and groups that have names. `cp` out and in, through the CLI and the
/// daemon, works and never runs them.
#[test]
fn cp_runs_nothing_from_the_container() {
    require_tool("cc");
    let r = Root::new();
    let host_mark = host_dir(&r, "nss").join("ran");
    let tag = format!("ketch-nss-{}", random_hex(4));
    let src = r.dir.path().join("evil.c");
    std::fs::write(
        &src,
        format!(
            "#include <fcntl.h>\n#include <unistd.h>\n\
             __attribute__((constructor)) static void pwn(void) {{\n\
               const char *paths[] = {{\"{host}\", \"/tmp/{tag}\", 0}};\n\
               for (int i = 0; paths[i]; i++) {{ int fd = open(paths[i], O_WRONLY|O_CREAT, 0644);\n\
                 if (fd >= 0) {{ write(fd, \"ran\\n\", 4); close(fd); }} }}\n}}\n\
             int _nss_files_getpwuid_r(void) {{ return 0; }}\n\
             int _nss_files_getpwnam_r(void) {{ return 0; }}\n",
            host = host_mark.display()
        ),
    )
    .unwrap();
    let lib = r.dir.path().join("evil.so");
    let o = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&src)
        .output()
        .unwrap();
    assert!(o.status.success(), "cc: {o:?}");
    let lib = std::fs::read(&lib).unwrap();
    let dirs = [
        "lib",
        "lib64",
        "lib/x86_64-linux-gnu",
        "usr/lib/x86_64-linux-gnu",
    ];
    let mut paths = Vec::new();
    for d in dirs {
        for l in ["libnss_files.so.2", "libnss_compat.so.2", "libc.so.6"] {
            paths.push(format!("{d}/{l}"));
        }
    }
    let mut extra = vec![
        E::Dir("lib"),
        E::Dir("lib64"),
        E::Dir("lib/x86_64-linux-gnu"),
        E::Dir("usr/lib"),
        E::Dir("usr/lib/x86_64-linux-gnu"),
        E::File(
            "etc/nsswitch.conf",
            b"passwd: files compat\ngroup: files compat\nhosts: files\n",
            0o644,
        ),
    ];
    extra.extend(paths.iter().map(|p| E::File(p, &lib, 0o755)));
    hostile_image(&r, "nss", &extra, &[]);
    both(&r, |f| {
        let name = format!("nss-{}", random_hex(4));
        let _c = Removed(f, name.clone());
        f.ok(&[
            "run",
            "-d",
            "--name",
            &name,
            "nss",
            "sh",
            "-c",
            "mkdir -p /d && echo x > /d/owned && chown 4242:4343 /d/owned && \
             echo y > /d/root && chown 0:0 /d/root && touch /tmp/ready && exec sleep 1000",
        ]);
        ready(f, &name, "/tmp/ready");
        let out = r.dir.path().join(format!("out-{}", random_hex(4)));
        let out_s = out.to_str().unwrap();
        f.ok(&["cp", &format!("{name}:/d"), out_s]);
        assert_eq!(std::fs::metadata(out.join("owned")).unwrap().uid(), 4242);
        assert_eq!(std::fs::read_to_string(out.join("root")).unwrap(), "y\n");
        f.ok(&["cp", &format!("{name}:/d/owned"), "-"]);
        f.ok(&[
            "cp",
            out.join("owned").to_str().unwrap(),
            &format!("{name}:/back"),
        ]);
        f.ok(&["cp", out_s, &format!("{name}:/")]);
        assert_eq!(f.ok(&["exec", &name, "cat", "/back"]), "x\n");
        // A stopped container is copied through a chroot into its root: the same holds.
        f.ok(&["stop", "-t", "0", &name]);
        f.ok(&["cp", &format!("{name}:/d/owned"), "-"]);
        f.ok(&[
            "cp",
            out.join("owned").to_str().unwrap(),
            &format!("{name}:/back2"),
        ]);
        f.ok(&["start", &name]);
        ready(f, &name, "/tmp/ready");
        assert!(
            !host_mark.exists(),
            "{}: the container's library ran on the host",
            f.name()
        );
        let o = f.run(&["exec", &name, "test", "-e", &format!("/tmp/{tag}")]);
        assert!(
            !o.status.success(),
            "{}: the container's library ran in cp",
            f.name()
        );
    });
}
