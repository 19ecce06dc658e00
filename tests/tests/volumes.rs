//! Volumes, bind mounts and tmpfs mounts end to end.

use std::os::unix::fs::MetadataExt;

use ketch_tests::{Root, busybox_rootfs};

fn setup() -> Root {
    let r = Root::new();
    r.ok(&["import", busybox_rootfs().to_str().unwrap(), "busybox"]);
    r
}

fn sh(r: &Root, flags: &[&str], script: &str) -> String {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["busybox", "sh", "-c", script]);
    r.ok(&args)
}

/// The error of a `run` with `-v VOLUME` that fails to start (status 125).
fn refused(r: &Root, volume: &str) -> String {
    let (code, err) = r.fails(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        volume,
        "busybox",
        "true",
    ]);
    assert_eq!(code, 125, "-v {volume}: {err}");
    err
}

#[test]
fn named_volumes_outlive_containers_and_are_shared() {
    let r = setup();
    sh(&r, &["-v", "data:/data"], "echo persisted > /data/f");
    // The next container that mounts it sees what the first wrote.
    assert_eq!(sh(&r, &["-v", "data:/data"], "cat /data/f"), "persisted\n");
    // :ro refuses writes, and the data stays.
    let out = r.run(&[
        "run",
        "--rm",
        "-v",
        "data:/data:ro",
        "busybox",
        "sh",
        "-c",
        "echo x > /data/f",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "sh: can't create /data/f: Read-only file system\n"
    );
    assert_eq!(sh(&r, &["-v", "data:/data"], "cat /data/f"), "persisted\n");
    // Two running containers see each other's writes.
    r.ok(&[
        "run",
        "-d",
        "--name",
        "a",
        "-v",
        "data:/shared",
        "busybox",
        "sleep",
        "1000",
    ]);
    r.ok(&[
        "run",
        "-d",
        "--name",
        "b",
        "--mount",
        "type=volume,source=data,target=/other",
        "busybox",
        "sleep",
        "1000",
    ]);
    r.ok(&["exec", "a", "sh", "-c", "echo from-a > /shared/note"]);
    assert_eq!(r.ok(&["exec", "b", "cat", "/other/note"]), "from-a\n");
    // --volumes-from, read-only.
    let out = r.run(&[
        "run",
        "--rm",
        "--volumes-from",
        "a:ro",
        "busybox",
        "sh",
        "-c",
        "cat /shared/note; touch /shared/x",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from-a\n");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "touch: /shared/x: Read-only file system\n"
    );
    assert_eq!(r.ok(&["exec", "a", "ls", "/shared"]), "f\nnote\n");
    // In use: refused, also with -f while a container runs; the data is untouched.
    let (code, err) = r.fails(&["volume", "rm", "data"]);
    assert_eq!(code, 1);
    assert!(err.contains("volume is in use"), "{err}");
    let (_, err) = r.fails(&["volume", "rm", "-f", "data"]);
    assert!(err.contains("volume is in use"), "{err}");
    assert_eq!(r.ok(&["exec", "a", "cat", "/shared/f"]), "persisted\n");
    // inspect names it among the container's mounts.
    let mounts = r.ok(&["inspect", "-f", "{{json .Mounts}}", "a"]);
    assert!(
        mounts.contains("\"Name\":\"data\"") && mounts.contains("\"Destination\":\"/shared\""),
        "{mounts}"
    );
    assert_eq!(
        r.ok(&["volume", "ls", "-q", "--filter", "dangling=true"]),
        ""
    );
    r.ok(&["rm", "-f", "a", "b"]);
    assert_eq!(
        r.ok(&["volume", "ls", "-q", "--filter", "dangling=true"]),
        "data\n"
    );
    r.ok(&["volume", "rm", "data"]);
    let (code, err) = r.fails(&["volume", "inspect", "data"]);
    assert_eq!(code, 1);
    assert!(err.contains("no such volume"), "{err}");
}

#[test]
fn a_new_volume_gets_the_image_files_and_anonymous_ones_go_with_rm_v() {
    let r = setup();
    // Copy-up: a new named volume over /etc holds the image's /etc.
    let listed = sh(&r, &["-v", "etcvol:/etc"], "cat /etc/passwd | head -1");
    assert!(listed.starts_with("root:"), "{listed}");
    let inspect: serde_json::Value =
        serde_json::from_str(&r.ok(&["volume", "inspect", "etcvol"])).unwrap();
    let mountpoint = inspect[0]["Mountpoint"].as_str().unwrap().to_string();
    assert!(std::path::Path::new(&mountpoint).join("passwd").exists());
    // nocopy: empty.
    assert_eq!(
        sh(&r, &["-v", "bare:/etc:nocopy"], "ls /etc | wc -l").trim(),
        "3"
    );
    // Anonymous volumes: -v /path, and an image's VOLUME.
    r.ok(&[
        "import",
        "--change",
        "VOLUME /cache",
        busybox_rootfs().to_str().unwrap(),
        "withvol",
    ]);
    r.ok(&[
        "run",
        "--name",
        "anon",
        "-v",
        "/scratch",
        "withvol",
        "sh",
        "-c",
        "echo x > /cache/y",
    ]);
    let mounts = r.ok(&["inspect", "-f", "{{json .Mounts}}", "anon"]);
    assert_eq!(mounts.matches("\"Type\":\"volume\"").count(), 2, "{mounts}");
    let before = r.ok(&["volume", "ls", "-q"]).lines().count();
    r.ok(&["rm", "-v", "anon"]);
    assert_eq!(r.ok(&["volume", "ls", "-q"]).lines().count(), before - 2);
    // Named volumes stay; prune -a takes the unused ones.
    let out = r.ok(&["volume", "prune", "-a", "-f"]);
    assert!(out.contains("etcvol") && out.contains("bare"), "{out}");
    assert_eq!(r.ok(&["volume", "ls", "-q"]), "");
}

#[test]
fn bind_mounts_and_tmpfs() {
    let r = setup();
    let host = r.dir.path().join("host");
    std::fs::create_dir(&host).unwrap();
    std::fs::set_permissions(&host, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let bind = format!("{}:/h", host.display());
    // Writes appear on the host, owned by the container's user.
    sh(&r, &["-u", "1234:2345", "-v", &bind], "echo hi > /h/file");
    let md = std::fs::metadata(host.join("file")).unwrap();
    assert_eq!((md.uid(), md.gid()), (1234, 2345));
    assert_eq!(std::fs::read_to_string(host.join("file")).unwrap(), "hi\n");
    // --mount type=bind,readonly; a missing source is refused for --mount, made for -v.
    let ro = format!("type=bind,source={},target=/h,readonly", host.display());
    let out = r.run(&[
        "run",
        "--rm",
        "--mount",
        &ro,
        "busybox",
        "sh",
        "-c",
        "cat /h/file && touch /h/new",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "touch: /h/new: Read-only file system\n"
    );
    assert!(!host.join("new").exists());
    let missing = r.dir.path().join("missing");
    let (code, err) = r.fails(&[
        "run",
        "--rm",
        "--mount",
        &format!("type=bind,source={},target=/m", missing.display()),
        "busybox",
        "true",
    ]);
    assert_eq!(code, 125);
    assert!(err.contains("bind source path does not exist"), "{err}");
    sh(&r, &["-v", &format!("{}:/m", missing.display())], "true");
    assert!(missing.is_dir());
    // tmpfs: empty at each start, gone after.
    r.ok(&[
        "run",
        "-d",
        "--name",
        "t",
        "--tmpfs",
        "/scratch:size=1m",
        "busybox",
        "sleep",
        "1000",
    ]);
    assert_eq!(r.ok(&["exec", "t", "ls", "/scratch"]), "");
    r.ok(&["exec", "t", "sh", "-c", "echo temp > /scratch/f"]);
    let df = r.ok(&["exec", "t", "df", "-k", "/scratch"]);
    assert!(df.contains("tmpfs") && df.contains(" 1024 "), "{df}");
    r.ok(&["restart", "-t", "0", "t"]);
    assert_eq!(r.ok(&["exec", "t", "ls", "/scratch"]), "");
    r.ok(&["rm", "-f", "t"]);
    // A local volume of type tmpfs.
    r.ok(&[
        "volume",
        "create",
        "--opt",
        "type=tmpfs",
        "--opt",
        "device=tmpfs",
        "--opt",
        "o=size=2m",
        "mem",
    ]);
    let df = sh(&r, &["-v", "mem:/mem"], "df -k /mem | tail -1");
    assert!(df.starts_with("tmpfs") && df.contains(" 2048 "), "{df}");
    r.ok(&["volume", "rm", "mem"]);
    assert!(r.mounts().is_empty(), "{:?}", r.mounts());
    // Bad input.
    let (code, err) = r.fails(&["run", "--rm", "-v", "x:relative", "busybox", "true"]);
    assert_eq!(code, 125);
    assert!(err.contains("must be absolute"), "{err}");
    let (code, err) = r.fails(&[
        "run",
        "--rm",
        "--mount",
        "type=nfs,target=/x",
        "busybox",
        "true",
    ]);
    assert_eq!(code, 125);
    assert!(err.contains("invalid mount type: \"nfs\""), "{err}");
    let (code, err) = r.fails(&["volume", "create", "bad/name"]);
    assert_eq!(code, 1);
    assert!(err.contains("invalid characters"), "{err}");
}

/// A mount the kernel refuses fails the start with an error that names it, and leaves nothing
/// mounted: a file bound on a directory, a bind whose source went away after `create`.
#[test]
fn a_mount_that_fails_fails_the_start_and_names_itself() {
    let r = setup();
    let file = r.dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let err = refused(&r, &format!("{}:/etc", file.display()));
    let want = format!(
        "mount {} on /etc: ENOTDIR: Not a directory (a file on a directory, or a directory on a file?)",
        file.display()
    );
    assert!(err.contains(&want), "{err}");
    assert_eq!(r.ok(&["ps", "-aq"]), "");
    let dir = r.dir.path().join("gone");
    std::fs::create_dir(&dir).unwrap();
    let bind = format!("type=bind,source={},target=/m", dir.display());
    r.ok(&[
        "create",
        "--name",
        "c",
        "--network",
        "none",
        "--mount",
        &bind,
        "busybox",
        "true",
    ]);
    std::fs::remove_dir(&dir).unwrap();
    let (code, err) = r.fails(&["start", "c"]);
    assert_ne!(code, 0, "{err}");
    let want = format!(
        "mount {} on /m: ENOENT: No such file or directory\n",
        dir.display()
    );
    assert!(err.contains(&want), "{err}");
    assert_ne!(
        r.ok(&["inspect", "-f", "{{.State.Status}}", "c"]).trim(),
        "running"
    );
    r.ok(&["rm", "c"]);
    assert!(r.mounts().is_empty(), "{:?}", r.mounts());
}

#[test]
fn system_prune_keeps_what_containers_use() {
    let r = setup();
    r.ok(&["import", busybox_rootfs().to_str().unwrap(), "spare"]);
    r.ok(&["network", "create", "used"]);
    r.ok(&["network", "create", "unused"]);
    r.ok(&["volume", "create", "named"]);
    r.ok(&[
        "run",
        "-d",
        "--name",
        "live",
        "--network",
        "used",
        "-v",
        "named:/n",
        "-v",
        "/anon",
        "busybox",
        "sh",
        "-c",
        "echo keep > /n/f; sleep 1000",
    ]);
    r.ok(&["run", "--name", "stopped", "-v", "/gone", "spare", "true"]);
    let df = r.ok(&["system", "df"]);
    assert!(df.starts_with("TYPE"), "{df}");
    assert!(
        df.contains("Images") && df.contains("Local Volumes"),
        "{df}"
    );
    let verbose = r.ok(&["system", "df", "-v"]);
    assert!(verbose.contains("named"), "{verbose}");
    let out = r.ok(&["system", "prune", "-a", "--volumes", "-f"]);
    assert!(out.contains("Deleted Containers:"), "{out}");
    assert!(out.contains("Total reclaimed space:"), "{out}");
    // The stopped container, the unused network, its anonymous volume and the unused image
    // are gone.
    let (code, err) = r.fails(&["start", "stopped"]);
    assert_eq!(code, 1);
    assert!(err.contains("No such container: stopped"), "{err}");
    assert!(
        !r.ok(&["network", "ls", "--format", "{{.Name}}"])
            .contains("unused")
    );
    assert!(
        !r.ok(&["images", "--format", "{{.Repository}}"])
            .contains("spare")
    );
    // What the running container uses stays, and it goes on.
    assert!(
        r.ok(&["network", "ls", "--format", "{{.Name}}"])
            .contains("used")
    );
    assert!(
        r.ok(&["images", "--format", "{{.Repository}}"])
            .contains("busybox")
    );
    let vols = r.ok(&["volume", "ls", "-q"]);
    assert!(vols.contains("named"), "{vols}");
    assert_eq!(vols.lines().count(), 2, "{vols}");
    assert_eq!(r.ok(&["exec", "live", "cat", "/n/f"]), "keep\n");
    // Named volumes are not pruned by system prune, even unused.
    r.ok(&["rm", "-f", "live"]);
    r.ok(&["system", "prune", "--volumes", "-f"]);
    assert!(r.ok(&["volume", "ls", "-q"]).contains("named"));
}

/// Every read-only form: `-v NAME:/c:ro`, `--mount type=volume,...,readonly`, `-v /h:/c:ro`
/// and `--mount type=bind,...,readonly`. Reads work; a write fails with "Read-only file
/// system" and leaves the volume or host directory as it was; inspect says RW false.
#[test]
fn read_only_volumes_and_binds_refuse_writes_and_allow_reads() {
    let r = setup();
    sh(&r, &["-v", "data:/data"], "echo in-volume > /data/f");
    let vol: serde_json::Value =
        serde_json::from_str(&r.ok(&["volume", "inspect", "data"])).unwrap();
    let vol_dir = std::path::PathBuf::from(vol[0]["Mountpoint"].as_str().unwrap());
    let host = r.dir.path().join("host");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("f"), "on-host\n").unwrap();
    let h = host.display().to_string();
    let cases = [
        (
            "-v",
            "data:/c:ro".to_string(),
            "volume",
            &vol_dir,
            "in-volume\n",
        ),
        (
            "--mount",
            "type=volume,source=data,target=/c,readonly".to_string(),
            "volume",
            &vol_dir,
            "in-volume\n",
        ),
        ("-v", format!("{h}:/c:ro"), "bind", &host, "on-host\n"),
        (
            "--mount",
            format!("type=bind,source={h},target=/c,readonly"),
            "bind",
            &host,
            "on-host\n",
        ),
    ];
    for (i, (flag, spec, kind, dir, content)) in cases.iter().enumerate() {
        let name = format!("ro{i}");
        let out = r.run(&[
            "run",
            "--name",
            &name,
            flag,
            spec,
            "busybox",
            "sh",
            "-c",
            "cat /c/f; touch /c/new",
        ]);
        let what = format!("{flag} {spec}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), *content, "{what}");
        assert_eq!(out.status.code(), Some(1), "{what}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "touch: /c/new: Read-only file system\n",
            "{what}"
        );
        let mounts: serde_json::Value =
            serde_json::from_str(&r.ok(&["inspect", "-f", "{{json .Mounts}}", &name])).unwrap();
        assert_eq!(mounts[0]["Type"], *kind, "{what}: {mounts}");
        assert_eq!(mounts[0]["Destination"], "/c", "{what}: {mounts}");
        assert_eq!(mounts[0]["RW"], false, "{what}: {mounts}");
        r.ok(&["rm", &name]);
        assert_eq!(
            std::fs::read_dir(dir).unwrap().count(),
            1,
            "{what}: a write got through"
        );
        assert_eq!(std::fs::read_to_string(dir.join("f")).unwrap(), *content);
    }
    // The same mounts without the flag are writable: what refused the writes was it.
    sh(&r, &["-v", "data:/c"], "touch /c/new");
    sh(&r, &["-v", &format!("{h}:/c")], "touch /c/new");
    assert!(vol_dir.join("new").exists() && host.join("new").exists());
}

/// A bind's propagation works as in Docker, between the host and the container: the
/// default (rprivate) and private cut the container off from the host's later mounts below
/// the source; slave and rslave receive them; shared and rshared also send the container's
/// back. A source that cannot do what is asked (not on a shared mount, or for slave not on a
/// slave one either) fails the start and says so.
#[test]
fn bind_propagation_works_between_host_and_container() {
    let r = setup();
    let src = r.dir.path().join("prop");
    std::fs::create_dir(&src).unwrap();
    let bind = |opt: &str| format!("{}:/mnt{opt}", src.display());
    // On a private mount (the test's root directory is on one here): refused.
    let _private = Mounted::tmpfs(&src);
    for (opt, want) in [
        ("rshared", "shared"),
        ("shared", "shared"),
        ("rslave", "shared or slave"),
    ] {
        let err = refused(&r, &bind(&format!(":{opt}")));
        let msg = format!(
            "path {0} is mounted on {0} but it is not a {want} mount",
            src.display()
        );
        assert!(err.contains(&msg), "{opt}: {err}");
    }
    // A shared mount of the test's own (the host's mounts stay as they are).
    let mount = |args: &[&str]| {
        let o = std::process::Command::new("mount")
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "mount {args:?}: {o:?}");
    };
    mount(&["--make-shared", src.to_str().unwrap()]);
    let group = |info: &str, point: &str, tag: &str| -> Option<String> {
        let line = info.lines().find(|l| l.split(' ').nth(4) == Some(point))?;
        let pre = line.split(" - ").next()?;
        pre.split(' ')
            .skip(6)
            .find_map(|f| f.strip_prefix(tag))
            .map(str::to_string)
    };
    let host = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let peers = group(&host, src.to_str().unwrap(), "shared:").expect("the source is shared");
    // In the container: a peer of the source, a slave of it, or on its own.
    let seen = |opt: &str| {
        sh(
            &r,
            &["--network", "none", "-v", &bind(opt)],
            "cat /proc/self/mountinfo",
        )
    };
    for opt in [":rshared", ":shared"] {
        let info = seen(opt);
        assert_eq!(
            group(&info, "/mnt", "shared:"),
            Some(peers.clone()),
            "{opt}: {info}"
        );
    }
    for opt in [":rslave", ":slave"] {
        let info = seen(opt);
        assert_eq!(
            group(&info, "/mnt", "master:"),
            Some(peers.clone()),
            "{opt}: {info}"
        );
        assert_eq!(group(&info, "/mnt", "shared:"), None, "{opt}: {info}");
    }
    for opt in ["", ":private", ":rprivate"] {
        let info = seen(opt);
        let line = info
            .lines()
            .find(|l| l.split(' ').nth(4) == Some("/mnt"))
            .unwrap();
        assert!(
            !line.contains("shared:") && !line.contains("master:"),
            "{opt}: {line}"
        );
    }
    // A slave of the source (not shared itself) can be a slave's source, not a shared one's.
    let slave = r.dir.path().join("slave");
    std::fs::create_dir(&slave).unwrap();
    mount(&["--bind", src.to_str().unwrap(), slave.to_str().unwrap()]);
    let _slave = Mounted(slave.clone());
    mount(&["--make-slave", slave.to_str().unwrap()]);
    let from_slave = |opt: &str| format!("{}:/mnt:{opt}", slave.display());
    let info = sh(
        &r,
        &["--network", "none", "-v", &from_slave("rslave")],
        "cat /proc/self/mountinfo",
    );
    assert_eq!(
        group(&info, "/mnt", "master:"),
        Some(peers.clone()),
        "{info}"
    );
    let err = refused(&r, &from_slave("rshared"));
    let msg = format!(
        "path {0} is mounted on {0} but it is not a shared mount",
        slave.display()
    );
    assert!(err.contains(&msg), "{err}");
    // And in action. The host mounts below the source while three containers run.
    let run = |name: &str, opt: &str, extra: &[&str]| {
        let b = bind(opt);
        let mut args = vec!["run", "-d", "--name", name, "--network", "none", "-v", &b];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["busybox", "sleep", "100"]);
        r.ok(&args);
    };
    run("slave", ":rslave", &[]);
    run("private", "", &[]);
    run("shared", ":rshared", &["--privileged"]);
    std::fs::create_dir(src.join("sub")).unwrap();
    let sub = Mounted::tmpfs(&src.join("sub"));
    std::fs::write(src.join("sub/marker"), "from the host\n").unwrap();
    let cat = |name: &str| r.run(&["exec", name, "cat", "/mnt/sub/marker"]);
    for name in ["slave", "shared"] {
        let o = cat(name);
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            "from the host\n",
            "{name}: {o:?}"
        );
    }
    assert!(
        !cat("private").status.success(),
        "a private bind saw the host's mount"
    );
    // A start with a shared bind of a source with a mount below it leaves the host's mounts
    // be: the copy of them the start lets go of is not let go of on the host.
    sh(&r, &["--network", "none", "-v", &bind(":rshared")], "true");
    assert_eq!(
        std::fs::read_to_string(src.join("sub/marker")).unwrap(),
        "from the host\n"
    );
    // What the shared one mounts, the host sees; what the slave mounts, it does not.
    r.ok(&[
        "exec",
        "shared",
        "sh",
        "-c",
        "mkdir /mnt/c && mount -t tmpfs c /mnt/c && echo back > /mnt/c/f",
    ]);
    assert_eq!(std::fs::read_to_string(src.join("c/f")).unwrap(), "back\n");
    r.ok(&["rm", "-f", "slave", "private", "shared"]);
    drop(sub);
}

/// A tmpfs of the test's own, unmounted (with what is mounted below it) when dropped.
struct Mounted(std::path::PathBuf);

impl Mounted {
    fn tmpfs(at: &std::path::Path) -> Mounted {
        let o = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "ketch-test-prop"])
            .arg(at)
            .output()
            .unwrap();
        assert!(o.status.success(), "mount {}: {o:?}", at.display());
        Mounted(at.to_path_buf())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .args(["-R", "-l"])
            .arg(&self.0)
            .status();
    }
}
