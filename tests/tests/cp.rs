//! `cp` both ways, and that a container cannot turn it against the host.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use ketch_tests::{Root, busybox_rootfs, random_hex};

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
    for _ in 0..50 {
        if r.run(&["exec", "c", "test", "-L", "/data/link"])
            .status
            .success()
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
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

#[test]
fn symlinks_in_the_container_cannot_reach_the_host() {
    let r = setup();
    // A secret on the host, and names that must never appear on it.
    let secret_name = format!("ketch-cp-secret-{}", random_hex(6));
    let secret = Path::new("/tmp").join(&secret_name);
    std::fs::write(&secret, "host secret\n").unwrap();
    let planted = format!("ketch-cp-planted-{}", random_hex(6));
    r.ok(&[
        "run",
        "-d",
        "--name",
        "evil",
        "busybox",
        "sh",
        "-c",
        "ln -s / /escape && ln -s ../../../../../../tmp /up && sleep 1000",
    ]);
    for _ in 0..50 {
        if r.run(&["exec", "evil", "test", "-L", "/up"])
            .status
            .success()
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = r.dir.path().join("stolen");
    for src in [
        format!("evil:/escape/tmp/{secret_name}"),
        format!("evil:/up/{secret_name}"),
    ] {
        let o = r.run(&["cp", &src, out.to_str().unwrap()]);
        assert!(!o.status.success(), "{src} was copied");
        assert!(!out.exists());
    }
    let host = r.dir.path().join("payload");
    std::fs::write(&host, "planted\n").unwrap();
    r.ok(&[
        "cp",
        host.to_str().unwrap(),
        &format!("evil:/escape/tmp/{planted}"),
    ]);
    r.ok(&["cp", host.to_str().unwrap(), &format!("evil:/up/{planted}")]);
    assert!(
        !Path::new("/tmp").join(&planted).exists(),
        "cp wrote on the host"
    );
    // The files landed inside the container instead.
    assert_eq!(
        r.ok(&["exec", "evil", "cat", &format!("/tmp/{planted}")]),
        "planted\n"
    );

    // The swap race (CVE-2018-15664): a directory turned into a symlink to / and back while
    // cp runs, many times over.
    r.ok(&[
        "exec", "-d", "evil", "sh", "-c",
        "mkdir -p /data && while :; do mv /data /data.real; ln -s / /data; rm /data; mv /data.real /data; done",
    ]);
    for i in 0..30 {
        let _ = r.run(&[
            "cp",
            host.to_str().unwrap(),
            &format!("evil:/data/tmp/{planted}-{i}"),
        ]);
        let _ = r.run(&[
            "cp",
            &format!("evil:/data/tmp/{secret_name}"),
            out.to_str().unwrap(),
        ]);
    }
    for i in 0..30 {
        let p = Path::new("/tmp").join(format!("{planted}-{i}"));
        assert!(!p.exists(), "cp wrote {} on the host", p.display());
    }
    assert!(!out.exists(), "cp read the host's secret");
    std::fs::remove_file(&secret).unwrap();
    r.ok(&["rm", "-f", "evil"]);
}

/// CVE-2019-14271: docker cp loaded the container's name-service libraries into a process
/// on the host. Here the container offers broken ones and files owned by unknown users;
/// cp neither loads nor runs anything of the container's.
#[test]
fn cp_runs_nothing_from_the_container() {
    let r = setup();
    r.ok(&[
        "run",
        "-d",
        "--name",
        "nss",
        "busybox",
        "sh",
        "-c",
        "for d in /lib /lib64 /lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu; do mkdir -p $d; \
         for l in libnss_files.so.2 libnss_dns.so.2 libnss_compat.so.2 libc.so.6; do \
         echo 'not a library' > $d/$l; done; done; \
         printf 'passwd: files\\ngroup: files\\n' > /etc/nsswitch.conf; \
         echo x > /owned && chown 4242:4343 /owned && sleep 1000",
    ]);
    for _ in 0..50 {
        if r.run(&["exec", "nss", "test", "-f", "/owned"])
            .status
            .success()
            && r.ok(&["exec", "nss", "stat", "-c", "%u", "/owned"]).trim() == "4242"
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = r.dir.path().join("owned");
    r.ok(&["cp", "nss:/owned", out.to_str().unwrap()]);
    assert_eq!(std::fs::metadata(&out).unwrap().uid(), 4242);
    r.ok(&["cp", out.to_str().unwrap(), "nss:/back"]);
    assert_eq!(r.ok(&["exec", "nss", "cat", "/back"]), "x\n");
    r.ok(&["rm", "-f", "nss"]);
}
