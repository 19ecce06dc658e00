//! What containers change: diff, commit, export.

use ketch_tests::{Root, busybox_rootfs, wait_until};

/// The image config in a docker-archive (`manifest.json` names it).
fn config_in(archive: &std::path::Path) -> serde_json::Value {
    let mut files = std::collections::HashMap::new();
    let mut a = tar::Archive::new(std::fs::File::open(archive).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().display().to_string();
        if name.ends_with(".json") || name.starts_with("blobs/") {
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            files.insert(name, data);
        }
    }
    let manifest: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let config = manifest[0]["Config"].as_str().unwrap();
    serde_json::from_slice(&files[config]).unwrap()
}

fn setup() -> Root {
    let r = Root::new();
    r.ok(&["import", busybox_rootfs().to_str().unwrap(), "busybox"]);
    r
}

#[test]
fn commit_keeps_exactly_the_changes() {
    let r = setup();
    r.ok(&[
        "run",
        "--name",
        "c",
        "-v",
        "v:/vol",
        "busybox",
        "sh",
        "-c",
        "echo new > /etc/newfile; echo more >> /etc/motd; rm /etc/group; rm -r /usr/sbin; \
         mkdir -p /opt/app && echo y > /opt/app/y && ln -s y /opt/app/link; echo data > /vol/x",
    ]);
    let diff = r.ok(&["diff", "c"]);
    assert_eq!(
        diff,
        "C /etc\nD /etc/group\nC /etc/motd\nA /etc/newfile\nA /opt\nA /opt/app\nA /opt/app/link\nA /opt/app/y\nC /usr\nD /usr/sbin\n"
    );
    let id = r.ok(&[
        "commit",
        "-c",
        "ENV MODE=committed",
        "-c",
        "CMD [\"cat\", \"/etc/newfile\"]",
        "-m",
        "the change",
        "-a",
        "Tess Ter <tester@example.com>",
        "c",
        "changed:v1",
    ]);
    assert!(id.starts_with("sha256:"), "{id}");
    // A new container sees exactly those changes, and the new config.
    let out = r.ok(&[
        "run",
        "--rm",
        "changed:v1",
        "sh",
        "-c",
        "cat /etc/newfile; tail -1 /etc/motd; ls /etc/group 2>&1; ls /usr/sbin 2>&1; \
         readlink /opt/app/link; ls /vol 2>&1; echo $MODE",
    ]);
    assert_eq!(
        out,
        "new\nmore\nls: /etc/group: No such file or directory\nls: /usr/sbin: No such file or directory\ny\n\
         ls: /vol: No such file or directory\ncommitted\n"
    );
    assert_eq!(r.ok(&["run", "--rm", "changed:v1"]), "new\n");
    let hist = r.ok(&["history", "--format", "{{.Comment}}", "changed:v1"]);
    assert!(hist.starts_with("the change\n"), "{hist}");
    // The author, as Docker shows it: in inspect and in the config's newest history entry.
    assert_eq!(
        r.ok(&["inspect", "--format", "{{.Author}}", "changed:v1"]),
        "Tess Ter <tester@example.com>\n"
    );
    let out = r.dir.path().join("changed.tar");
    r.ok(&["save", "-o", out.to_str().unwrap(), "changed:v1"]);
    let config = config_in(&out);
    assert_eq!(
        config["author"], "Tess Ter <tester@example.com>",
        "{config}"
    );
    let history = config["history"].as_array().unwrap();
    assert_eq!(
        history.last().unwrap()["author"],
        "Tess Ter <tester@example.com>",
        "{config}"
    );
    // The base image's own history entry is not given the author.
    assert!(history[0].get("author").is_none(), "{config}");
    // The original image is untouched.
    assert_eq!(
        r.ok(&[
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "head -1 /etc/group; ls -d /usr/sbin; ls /etc/newfile 2>&1; true"
        ]),
        "root:x:0:\n/usr/sbin\nls: /etc/newfile: No such file or directory\n"
    );
    // It saves as an image other tools read.
    ketch_tests::require_tool("skopeo");
    {
        let o = std::process::Command::new("skopeo")
            .args([
                "inspect",
                "--raw",
                &format!("docker-archive:{}", out.display()),
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let m: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(m["layers"].as_array().unwrap().len(), 2, "{m}");
    }
    // Commit of a running container (paused while read), and bad input.
    r.ok(&[
        "run",
        "-d",
        "--name",
        "live",
        "busybox",
        "sh",
        "-c",
        "echo live > /live; sleep 1000",
    ]);
    wait_until("the container to write /live", 20, || {
        r.run(&["exec", "live", "cat", "/live"]).status.success()
    });
    r.ok(&["commit", "live", "live:1"]);
    assert_eq!(
        r.ok(&["inspect", "-f", "{{.State.Status}}", "live"]).trim(),
        "running"
    );
    assert_eq!(r.ok(&["run", "--rm", "live:1", "cat", "/live"]), "live\n");
    // A container that ends while it is committed (and paused for it) is committed as it
    // ended: its freezer going with it is no error.
    for i in 0..5 {
        r.ok(&[
            "run",
            "-d",
            "--name",
            &format!("brief{i}"),
            "busybox",
            "touch",
            "/brief",
        ]);
        r.ok(&["commit", &format!("brief{i}"), &format!("brief:{i}")]);
    }
    for i in 0..5 {
        r.ok(&["rm", "-f", &format!("brief{i}")]);
        r.ok(&["rmi", &format!("brief:{i}")]);
    }
    let (code, err) = r.fails(&["commit", "nosuch"]);
    assert_eq!(code, 1);
    assert!(err.contains("No such container"), "{err}");
    let (code, err) = r.fails(&["commit", "-c", "BOGUS x", "c"]);
    assert_eq!(code, 1);
    assert!(err.contains("BOGUS"), "{err}");
    r.ok(&["rm", "-f", "live"]);
}

#[test]
fn export_writes_the_whole_file_system() {
    let r = setup();
    r.ok(&[
        "run",
        "--name",
        "e",
        "busybox",
        "sh",
        "-c",
        "echo hi > /hello; rm /etc/motd",
    ]);
    let out = r.dir.path().join("e.tar");
    r.ok(&["export", "-o", out.to_str().unwrap(), "e"]);
    let names: Vec<String> = tar::Archive::new(std::fs::File::open(&out).unwrap())
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(names.iter().any(|n| n == "hello"), "{names:?}");
    assert!(names.iter().any(|n| n == "bin/busybox"), "{names:?}");
    assert!(
        !names
            .iter()
            .any(|n| n.contains("motd") || n.contains(".wh.")),
        "{names:?}"
    );
    // It imports back as an image.
    r.ok(&["import", out.to_str().unwrap(), "exported"]);
    assert_eq!(r.ok(&["run", "--rm", "exported", "cat", "/hello"]), "hi\n");
}
