//! `ketch build`, and `docker build` through the daemon: what the image records, what
//! running it does, the cache, `.dockerignore`, and what a broken Dockerfile, a failing
//! step or a killed build leave.

use std::path::Path;
use std::process::{Command, Stdio};

use ketch_tests::{Daemon, Root, require_tool, wait_until};
use serde_json::{Value, json};

/// A build context: a directory with these files.
fn context(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("ketch-build-ctx-")
        .tempdir()
        .unwrap();
    for (name, text) in files {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

fn build(r: &Root, dir: &Path, args: &[&str]) -> String {
    let mut all = vec!["build"];
    all.extend_from_slice(args);
    all.push(dir.to_str().unwrap());
    r.ok(&all)
}

fn inspect(r: &Root, name: &str) -> Value {
    let v: Value = serde_json::from_str(&r.ok(&["image", "inspect", name])).unwrap();
    v[0].clone()
}

fn image_id(r: &Root, name: &str) -> String {
    r.ok(&["image", "inspect", "-f", "{{.Id}}", name])
        .trim()
        .to_string()
}

/// The image config blob itself (history and all), from the root's content store.
fn config_blob(r: &Root, id: &str) -> Value {
    let hex = id.trim_start_matches("sha256:");
    let bytes = std::fs::read(r.path().join("blobs/sha256").join(hex)).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

const APP: &str = "#!/bin/sh\necho \"app $VERSION $(cat /app/out.txt) $(id -u) $(pwd) $*\"\n";

const MULTI_STAGE: &str = r#"# syntax=docker/dockerfile:1
ARG BASE=busybox
FROM $BASE AS builder
ARG MSG=built
WORKDIR /src
RUN echo "$MSG" > out.txt
COPY app.sh ./

FROM ${BASE}
ARG VERSION=1.0
ENV APP_HOME=/app VERSION=$VERSION
WORKDIR $APP_HOME
COPY --from=builder /src/out.txt ./
COPY --from=builder --chown=1000:1000 --chmod=750 /src/app.sh /usr/local/bin/app
LABEL org.example.version=$VERSION maintainer="some one"
EXPOSE 8080 53/udp
VOLUME ["/data"]
HEALTHCHECK --interval=30s --timeout=5s --retries=2 CMD ["true"]
STOPSIGNAL SIGINT
SHELL ["/bin/sh", "-ec"]
RUN echo shell-ok > shell.txt
USER 1000:1000
ENTRYPOINT ["/usr/local/bin/app"]
CMD ["default-arg"]
"#;

#[test]
fn a_multi_stage_build_records_what_docker_records_and_runs_as_specified() {
    let r = Root::new();
    r.busybox("busybox");
    let ctx = context(&[("Dockerfile", MULTI_STAGE), ("app.sh", APP)]);
    let out = build(&r, ctx.path(), &["-t", "app:1", "--label", "built.by=test"]);
    assert!(out.contains("Step 1/22 : FROM $BASE AS builder"), "{out}");
    assert!(out.contains("Successfully tagged app:1"), "{out}");

    let i = inspect(&r, "app:1");
    let c = &i["Config"];
    // Field by field, as Docker's builder records each instruction.
    assert_eq!(c["Env"], json!(["APP_HOME=/app", "VERSION=1.0"]));
    assert_eq!(c["WorkingDir"], "/app");
    assert_eq!(
        c["Labels"],
        json!({"org.example.version": "1.0", "maintainer": "some one", "built.by": "test"})
    );
    assert_eq!(c["ExposedPorts"], json!({"8080/tcp": {}, "53/udp": {}}));
    assert_eq!(c["Volumes"], json!({"/data": {}}));
    assert_eq!(
        c["Healthcheck"],
        json!({"Test": ["CMD", "true"], "Interval": 30_000_000_000i64,
               "Timeout": 5_000_000_000i64, "Retries": 2})
    );
    assert_eq!(c["StopSignal"], "SIGINT");
    assert_eq!(c["Shell"], json!(["/bin/sh", "-ec"]));
    assert_eq!(c["User"], "1000:1000");
    assert_eq!(c["Entrypoint"], json!(["/usr/local/bin/app"]));
    assert_eq!(c["Cmd"], json!(["default-arg"]));
    // The build's intermediate images: the final one names its parent.
    assert!(i["Parent"].as_str().unwrap().starts_with("sha256:"), "{i}");

    // Layers for RUN and COPY only; every other step is an empty layer in the history.
    let blob = config_blob(&r, i["Id"].as_str().unwrap());
    let layers = blob["rootfs"]["diff_ids"].as_array().unwrap().len();
    assert_eq!(layers, 1 + 3, "busybox, two COPYs and a RUN");
    let history = blob["history"].as_array().unwrap();
    let empty = history
        .iter()
        .filter(|h| h["empty_layer"] == json!(true))
        .count();
    assert_eq!(history.len() - empty, layers, "{history:#?}");
    let by: Vec<&str> = history
        .iter()
        .map(|h| h["created_by"].as_str().unwrap_or(""))
        .collect();
    assert!(
        by.contains(&"/bin/sh -c #(nop)  ENV APP_HOME=/app VERSION=1.0"),
        "{by:#?}"
    );
    assert!(
        by.contains(&"/bin/sh -ec #(nop)  CMD [\"default-arg\"]"),
        "{by:#?}"
    );
    // The RUN after SHELL runs with that shell; VERSION is no build arg for it, as an ENV
    // of the same name overrides it (Docker's rule).
    assert!(
        by.contains(&"/bin/sh -ec echo shell-ok > shell.txt"),
        "{by:#?}"
    );
    // The builder stage is not in the image's history; its output is.
    assert!(!by.iter().any(|b| b.contains("MSG")), "{by:#?}");

    // Running it: entrypoint and default command, the user, the directory, the env.
    assert_eq!(
        r.ok(&["run", "--rm", "app:1"]).trim(),
        "app 1.0 built 1000 /app default-arg"
    );
    assert_eq!(
        r.ok(&["run", "--rm", "app:1", "other"]).trim(),
        "app 1.0 built 1000 /app other"
    );
    let ls = r.ok(&[
        "run",
        "--rm",
        "-u",
        "0",
        "--entrypoint",
        "ls",
        "app:1",
        "-ln",
        "/usr/local/bin/app",
        "/app/shell.txt",
    ]);
    assert!(ls.contains("-rwxr-x---    1 1000     1000"), "{ls}");
    assert!(ls.contains("/app/shell.txt"), "{ls}");
    // The volume is made for each container, as the image asks.
    let cid = r.ok(&["create", "app:1"]).trim().to_string();
    let mounts = r.ok(&["inspect", "-f", "{{json .Mounts}}", &cid]);
    assert!(mounts.contains("\"/data\""), "{mounts}");
    r.ok(&["rm", "-v", &cid]);

    // Only the tagged image is listed; the steps' images with -a.
    let listed = r.ok(&["images", "-q"]);
    assert_eq!(listed.lines().count(), 2, "busybox and app:1: {listed}");
    let all = r.ok(&["images", "-a", "-q"]);
    assert!(all.lines().count() > 10, "{all}");
    // Removing the image removes the steps' images that only it used: all but the
    // builder stage's (busybox, then four steps), which `image prune` takes.
    let out = r.ok(&["rmi", "app:1"]);
    assert_eq!(
        out.matches("Deleted: ").count(),
        all.lines().count() - 5,
        "{out}"
    );
    assert_eq!(r.ok(&["images", "-a", "-q"]).lines().count(), 5);
    r.ok(&["image", "prune", "-f"]);
    assert_eq!(r.ok(&["images", "-a", "-q"]).lines().count(), 1);
    assert_eq!(r.count("build_cache"), 0);
    assert_eq!(r.ok(&["ps", "-aq"]).trim(), "");
}

const CACHED: &str = "FROM busybox
RUN echo first > /first
COPY a.txt /a.txt
RUN cat /a.txt > /copy-of-a
COPY b.txt /b.txt
ARG FLAVOR=plain
RUN echo \"$FLAVOR\" > /flavor
";

/// How many steps of a build's output came from the cache and how many ran.
fn cache_use(out: &str) -> (usize, usize) {
    let cached = out.matches("---> Using cache").count();
    // RUN and COPY steps that ran each removed their container.
    let ran = out.matches("Removing intermediate container").count();
    (cached, ran)
}

#[test]
fn the_cache_reruns_only_what_changed() {
    let r = Root::new();
    r.busybox("busybox");
    let ctx = context(&[("Dockerfile", CACHED), ("a.txt", "a\n"), ("b.txt", "b\n")]);
    let out = build(&r, ctx.path(), &["-t", "cached"]);
    assert_eq!(cache_use(&out), (0, 5), "{out}");
    let first = image_id(&r, "cached");

    // Each step of the history is an image of its own, shown by ID, as Docker shows them.
    let history = r.ok(&["history", "cached"]);
    assert!(!history.contains("<missing>"), "{history}");
    assert_eq!(history.lines().count(), 1 + 1 + 6, "{history}");
    // Nothing changed: no step runs, the same image.
    let out = build(&r, ctx.path(), &["-t", "cached"]);
    assert_eq!(cache_use(&out), (6, 0), "{out}");
    assert!(!out.contains("Running in"), "{out}");
    assert_eq!(image_id(&r, "cached"), first);

    // A touch is not a change: content, not mtime.
    std::fs::write(ctx.path().join("a.txt"), "a\n").unwrap();
    assert_eq!(cache_use(&build(&r, ctx.path(), &["-t", "cached"])), (6, 0));

    // One copied file changed: its COPY and what follows run again, nothing before.
    std::fs::write(ctx.path().join("b.txt"), "B\n").unwrap();
    let out = build(&r, ctx.path(), &["-t", "cached"]);
    assert_eq!(cache_use(&out), (3, 2), "{out}");
    assert!(
        out.contains("Step 5/7 : COPY b.txt /b.txt\nRemoving"),
        "{out}"
    );
    let second = image_id(&r, "cached");
    assert_ne!(second, first);
    assert_eq!(r.ok(&["run", "--rm", "cached", "cat", "/b.txt"]), "B\n");

    // A build arg a step sees: from that step on.
    let out = build(
        &r,
        ctx.path(),
        &["-t", "cached", "--build-arg", "FLAVOR=spicy"],
    );
    assert_eq!(cache_use(&out), (5, 1), "{out}");
    assert_eq!(
        r.ok(&["run", "--rm", "cached", "cat", "/flavor"]),
        "spicy\n"
    );
    // And back: the earlier image again, from the cache.
    let out = build(&r, ctx.path(), &["-t", "cached"]);
    assert_eq!(cache_use(&out), (6, 0), "{out}");
    assert_eq!(image_id(&r, "cached"), second);

    // --no-cache runs every step.
    let out = build(&r, ctx.path(), &["-t", "cached", "--no-cache"]);
    assert_eq!(cache_use(&out), (0, 5), "{out}");
    assert_ne!(image_id(&r, "cached"), second);
}

#[test]
fn dockerignore_keeps_files_out_of_the_context_the_image_and_the_key() {
    let r = Root::new();
    r.busybox("busybox");
    let ctx = context(&[
        ("Dockerfile", "FROM busybox\nCOPY . /ctx/\n"),
        (
            ".dockerignore",
            "# build junk\nsecret.txt\nlogs\n!logs/keep.log\n",
        ),
        ("keep.txt", "keep\n"),
        ("secret.txt", "secret\n"),
        ("logs/debug.log", "noise\n"),
        ("logs/keep.log", "kept\n"),
    ]);
    build(&r, ctx.path(), &["-t", "ignoring"]);
    let id = image_id(&r, "ignoring");
    let files = r.ok(&["run", "--rm", "ignoring", "find", "/ctx", "-type", "f"]);
    let mut files: Vec<&str> = files.lines().collect();
    files.sort();
    assert_eq!(
        files,
        [
            "/ctx/.dockerignore",
            "/ctx/Dockerfile",
            "/ctx/keep.txt",
            "/ctx/logs/keep.log"
        ]
    );
    // What is ignored is not in the cache key either.
    std::fs::write(ctx.path().join("secret.txt"), "another secret\n").unwrap();
    std::fs::write(ctx.path().join("logs/debug.log"), "more noise\n").unwrap();
    let out = build(&r, ctx.path(), &["-t", "ignoring"]);
    assert!(out.contains("Using cache"), "{out}");
    assert_eq!(image_id(&r, "ignoring"), id);
    // Named outright, it is not there.
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox\nCOPY secret.txt /\n",
    )
    .unwrap();
    let (_, err) = r.fails(&["build", ctx.path().to_str().unwrap()]);
    assert!(
        err.contains("line 2") && err.contains("secret.txt"),
        "{err}"
    );
    assert!(err.contains(".dockerignore"), "{err}");
}

#[test]
fn broken_dockerfiles_say_what_and_where_and_make_nothing() {
    let r = Root::new();
    r.busybox("busybox");
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "host secret\n").unwrap();
    let cases: Vec<(&str, &str, &str)> = vec![
        (
            "FROM busybox\nFOO bar\n",
            "line 2",
            "unknown instruction: FOO",
        ),
        (
            "FROM busybox\nRUN <<EOF\necho hi\n",
            "line 2",
            "unterminated heredoc",
        ),
        ("FROM busybox\nCMD [\"a\", ]\n", "line 2", "bad JSON array"),
        (
            "FROM busybox\nCOPY --from=3 /x /y\n",
            "line 2",
            "stage 3 is not defined",
        ),
        (
            "FROM busybox AS one\nFROM one\nCOPY --from=two /x /y\nFROM busybox AS two\n",
            "line 3",
            "stage two is defined after this one",
        ),
        (
            "FROM busybox\nCOPY ../secret /s\n",
            "line 2",
            "forbidden path outside the build context",
        ),
        (
            "FROM busybox\nCOPY out/secret /s\n",
            "line 2",
            "forbidden path outside the build context",
        ),
        (
            "FROM busybox\nCOPY up/secret /s\n",
            "line 2",
            "forbidden path outside the build context",
        ),
        (
            "FROM busybox\nCOPY missing.txt /s\n",
            "line 2",
            "missing.txt: not found",
        ),
        (
            "FROM localhost:1/nothing:here\nRUN true\n",
            "line 1",
            "localhost:1",
        ),
    ];
    for (dockerfile, line, what) in cases {
        let ctx = context(&[("Dockerfile", dockerfile)]);
        // A link out of the context, absolute and relative: followed, they would lead to
        // the host's files.
        std::os::unix::fs::symlink(outside.path(), ctx.path().join("out")).unwrap();
        std::os::unix::fs::symlink("../../../../../../..", ctx.path().join("up")).unwrap();
        std::fs::create_dir(ctx.path().join("sub")).unwrap();
        let before = r.ok(&["images", "-a", "-q"]);
        let (code, err) = r.fails(&["build", "-t", "broken", ctx.path().to_str().unwrap()]);
        assert_ne!(code, 0);
        assert!(err.contains(line), "{dockerfile:?}: {err}");
        assert!(err.contains(what), "{dockerfile:?}: {err}");
        assert!(!err.contains("host secret"));
        assert_eq!(r.ok(&["images", "-a", "-q"]), before, "{dockerfile:?}");
        assert_eq!(r.ok(&["ps", "-aq"]).trim(), "");
    }
    // A missing Dockerfile.
    let empty = context(&[]);
    let (_, err) = r.fails(&["build", empty.path().to_str().unwrap()]);
    assert!(err.contains("Dockerfile"), "{err}");
    assert_eq!(r.count("leases"), 0);
}

#[test]
fn a_failing_run_stops_the_build_with_its_output_and_code_and_leaves_nothing() {
    let r = Root::new();
    r.busybox("busybox");
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox\nRUN echo kept > /kept\nRUN echo partial > /p && echo the-output && exit 3\nRUN echo never\n",
    )]);
    let o = r.run(&["build", "-t", "failing", ctx.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3));
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(out.contains("the-output"), "{out}");
    assert!(!out.contains("never"), "{out}");
    assert!(
        err.contains("line 3") && err.contains("returned a non-zero code: 3"),
        "{err}"
    );
    // No stray container, no tag, no half layer: every layer recorded has its image.
    assert_eq!(r.ok(&["ps", "-aq"]).trim(), "");
    assert!(
        r.fails(&["image", "inspect", "failing"])
            .1
            .contains("No such image")
    );
    assert_eq!(r.count("leases"), 0);
    assert_eq!(r.count("lease_resources"), 0);
    let snapshots = r.count("snapshots");
    let layers = r.count("layers");
    assert_eq!(snapshots, layers, "a snapshot no layer records");
    // The step before it is cached for the next try.
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox\nRUN echo kept > /kept\nRUN echo fixed\n",
    )
    .unwrap();
    let out = build(&r, ctx.path(), &["-t", "failing"]);
    assert_eq!(out.matches("Using cache").count(), 1, "{out}");
}

#[test]
fn a_killed_build_leaves_nothing_half_listed() {
    let r = Root::new();
    let busybox = r.busybox("busybox");
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox\nRUN echo before > /before\nRUN echo started && sleep 60\n",
    )]);
    let mut child = r
        .cmd()
        .args(["build", "-t", "killed", ctx.path().to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("started") {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut stdout, &mut line).unwrap() == 0 {
            break;
        }
        seen.push_str(&line);
    }
    assert!(seen.contains("started"), "{seen}");
    // Killed while its RUN runs: the step's container is there, its own.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    // The next open of the root removes it, and what the build held.
    assert_eq!(r.ok(&["ps", "-aq"]).trim(), "");
    assert!(
        r.fails(&["image", "inspect", "killed"])
            .1
            .contains("No such image")
    );
    // The steps that finished are whole images, listed with -a only (they are the
    // cache); the last runs; `image prune` takes them.
    assert_eq!(r.ok(&["images", "-q"]).lines().count(), 1);
    assert_eq!(r.ok(&["images", "-q", "--filter", "dangling=true"]), "");
    let all = r.ok(&["images", "-a", "-q"]);
    assert_eq!(all.lines().count(), 2, "{all}");
    let step = all.lines().find(|l| !busybox.contains(l)).unwrap();
    assert_eq!(r.ok(&["run", "--rm", step, "cat", "/before"]), "before\n");
    r.ok(&["image", "prune", "-f"]);
    assert_eq!(r.ok(&["images", "-a", "-q"]).lines().count(), 1);
    assert_eq!(r.count("leases"), 0);
    assert_eq!(r.count("snapshots"), r.count("layers"));
    // And a build again completes.
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox\nRUN echo before > /before\nRUN echo done\n",
    )
    .unwrap();
    let out = build(&r, ctx.path(), &["-t", "killed"]);
    assert!(out.contains("Successfully tagged killed:latest"), "{out}");
}

#[test]
fn docker_build_through_the_daemon_builds_what_ketch_build_builds() {
    require_tool("docker");
    let r = Root::new();
    r.busybox("busybox");
    let ctx = context(&[("Dockerfile", MULTI_STAGE), ("app.sh", APP)]);
    build(&r, ctx.path(), &["-t", "from-ketch"]);
    let ours = inspect(&r, "from-ketch");
    let d = Daemon::start(&r);
    let docker = |args: &[&str]| {
        let mut c = Command::new("docker");
        c.args(args)
            .env("DOCKER_HOST", format!("unix://{}", d.socket.display()))
            .env("DOCKER_CONFIG", r.dir.path().join("docker-config"))
            .env("DOCKER_BUILDKIT", "0")
            .current_dir(ctx.path())
            .stdin(Stdio::null());
        c.output().unwrap()
    };
    // Same steps, same context: the same image, from the cache.
    let o = docker(&["build", "-t", "from-docker", "."]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.contains("Successfully tagged from-docker:latest"),
        "{out}"
    );
    assert_eq!(image_id(&r, "from-docker"), ours["Id"].as_str().unwrap());
    // Without the cache: built again, the same config.
    let o = docker(&["build", "--no-cache", "-q", "-t", "fresh", "."]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let printed = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let fresh = inspect(&r, "fresh");
    assert_eq!(printed, fresh["Id"].as_str().unwrap());
    assert_ne!(printed, ours["Id"].as_str().unwrap());
    assert_eq!(fresh["Config"], ours["Config"]);
    assert_eq!(
        fresh["RootFS"]["Layers"].as_array().unwrap().len(),
        ours["RootFS"]["Layers"].as_array().unwrap().len()
    );
    assert_eq!(
        r.ok(&["run", "--rm", "fresh"]).trim(),
        "app 1.0 built 1000 /app default-arg"
    );
    // A failing step: Docker's message, and the command's code as the CLI's.
    std::fs::write(ctx.path().join("Dockerfile"), "FROM busybox\nRUN exit 7\n").unwrap();
    let o = docker(&["build", "."]);
    assert_eq!(o.status.code(), Some(7));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("returned a non-zero code: 7"), "{err}");
    wait_until("the build's container to go", 10, || {
        r.ok(&["ps", "-aq"]).trim().is_empty()
    });
}

/// A one-file HTTP server on loopback for ADD: answers every request with `body`, until
/// the test ends.
fn serve_once(body: &'static [u8]) -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { break };
            let mut buf = [0u8; 4096];
            let _ = std::io::Read::read(&mut c, &mut buf);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Tue, 01 Dec 2026 08:00:00 GMT\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = std::io::Write::write_all(&mut c, head.as_bytes());
            let _ = std::io::Write::write_all(&mut c, body);
        }
    });
    format!("http://{addr}")
}

#[test]
fn run_mounts_add_and_heredocs_as_buildkit_takes_them() {
    let r = Root::new();
    r.busybox("busybox");
    let url = serve_once(b"downloaded\n");
    let sum = ketch_tests::digest(b"downloaded\n").to_string();
    let dockerfile = format!(
        "FROM busybox
RUN --mount=type=cache,target=/cache echo run >> /cache/count && wc -l < /cache/count > /count
RUN --mount=type=bind,source=data,target=/mnt/data cat /mnt/data/file > /from-bind
RUN --mount=type=tmpfs,target=/scratch touch /scratch/x && ls /scratch > /tmpfs-ls
RUN --mount=type=bind,from=busybox,source=/bin,target=/b ls /b/busybox > /from-image
ADD --checksum={sum} {url}/files/remote.txt /dl/
ADD data/archive.tar /unpacked/
COPY <<'TXT' /etc/greeting
hello $HOSTNAME
TXT
RUN <<SCRIPT
echo from a heredoc script > /script-out
SCRIPT
"
    );
    let ctx = context(&[("Dockerfile", &dockerfile), ("data/file", "bound\n")]);
    let tar = ketch_tests::TarBuilder::new()
        .file("inner/a.txt", b"from the archive\n")
        .finish();
    std::fs::write(ctx.path().join("data/archive.tar"), tar).unwrap();
    build(&r, ctx.path(), &["-t", "mounts", "--no-cache"]);
    build(&r, ctx.path(), &["-t", "mounts", "--no-cache"]);
    let cat = |path: &str| r.ok(&["run", "--rm", "mounts", "cat", path]);
    // The cache mount outlives a build; the bind and tmpfs show what they should.
    assert_eq!(cat("/count").trim(), "2");
    assert_eq!(cat("/from-bind"), "bound\n");
    assert_eq!(cat("/tmpfs-ls"), "x\n");
    assert_eq!(cat("/from-image"), "/b/busybox\n");
    assert_eq!(cat("/dl/remote.txt"), "downloaded\n");
    assert_eq!(cat("/unpacked/inner/a.txt"), "from the archive\n");
    // A quoted heredoc is not expanded.
    assert_eq!(cat("/etc/greeting"), "hello $HOSTNAME\n");
    assert_eq!(cat("/script-out"), "from a heredoc script\n");
    let ls = r.ok(&["run", "--rm", "mounts", "ls", "-ln", "/dl/remote.txt"]);
    assert!(ls.starts_with("-rw-------"), "{ls}");
    // What the mounts covered is not in the image.
    let o = r.run(&[
        "run",
        "--rm",
        "mounts",
        "ls",
        "/cache/count",
        "/mnt/data/file",
        "/scratch/x",
    ]);
    assert!(!o.status.success());
    // A bind's content is part of the key: changed, the step runs again.
    let out = build(&r, ctx.path(), &["-t", "mounts"]);
    assert!(!out.contains("Running in"), "{out}");
    std::fs::write(ctx.path().join("data/file"), "changed\n").unwrap();
    let out = build(&r, ctx.path(), &["-t", "mounts"]);
    assert!(out.contains("/from-bind\n ---> Running in"), "{out}");
    assert_eq!(cat("/from-bind"), "changed\n");
    // Refused: a bind that is writable or leads out, a secret, a wrong checksum.
    let bad_sum = format!("ADD --checksum=sha256:{} {url}/x.txt /x", "0".repeat(64));
    for (line, what) in [
        (
            "RUN --mount=type=bind,source=data,target=/d,rw true",
            "writable",
        ),
        (
            "RUN --mount=type=bind,source=../..,target=/d true",
            "outside the build context",
        ),
        ("RUN --mount=type=secret,id=x true", "not supported"),
        (bad_sum.as_str(), "checksum mismatch"),
    ] {
        std::fs::write(
            ctx.path().join("Dockerfile"),
            format!("FROM busybox\n{line}\n"),
        )
        .unwrap();
        let (_, err) = r.fails(&["build", ctx.path().to_str().unwrap()]);
        assert!(
            err.contains("line 2") && err.contains(what),
            "{line}: {err}"
        );
    }
}

/// Each of two stages waits (through a shared cache mount) for the other to have started:
/// run one after the other, the first would give up and fail the build.
const PARALLEL: &str = r#"FROM busybox AS a
RUN --mount=type=cache,id=rendezvous,target=/rv touch /rv/a && i=0 && while [ ! -e /rv/b ]; do i=$((i+1)); [ $i -gt 600 ] && exit 1; sleep 0.05; done; echo a > /met

FROM busybox AS b
RUN --mount=type=cache,id=rendezvous,target=/rv touch /rv/b && i=0 && while [ ! -e /rv/a ]; do i=$((i+1)); [ $i -gt 600 ] && exit 1; sleep 0.05; done; echo b > /met

FROM busybox AS unneeded
RUN echo this stage is not built && exit 1

FROM busybox
COPY --from=a /met /a
COPY --from=b /met /b
"#;

#[test]
fn independent_stages_build_at_once_and_unneeded_ones_not_at_all() {
    let r = Root::new();
    r.busybox("busybox");
    let ctx = context(&[("Dockerfile", PARALLEL)]);
    let out = build(&r, ctx.path(), &["-t", "par", "--network", "none"]);
    assert!(!out.contains("not built"), "{out}");
    // Steps are numbered over the stages built, and their output keeps stage order.
    assert!(out.contains("Step 1/7 : FROM busybox AS a"), "{out}");
    assert!(out.contains("Step 3/7 : FROM busybox AS b"), "{out}");
    assert!(
        out.find("Step 2/7").unwrap() < out.find("Step 3/7").unwrap(),
        "{out}"
    );
    assert_eq!(r.ok(&["run", "--rm", "par", "cat", "/a", "/b"]), "a\nb\n");
    // A target: that stage only.
    let out = build(&r, ctx.path(), &["-t", "only-b", "--target", "B"]);
    assert!(out.contains("Step 1/2 : FROM busybox AS b"), "{out}");
    assert!(!out.contains("AS a"), "{out}");
    let (_, err) = r.fails(&["build", "--target", "nope", ctx.path().to_str().unwrap()]);
    assert!(
        err.contains("target stage \"nope\" could not be found"),
        "{err}"
    );
}

#[test]
fn a_terminal_sees_each_step_with_its_state_and_last_lines() {
    let r = Root::new();
    r.busybox("busybox");
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox\nRUN echo first line && echo second line\nCMD [\"sh\"]\n",
    )]);
    let out = build(&r, ctx.path(), &["--progress", "tty", "-t", "tty"]);
    let plain = out.replace("\x1b[J", "");
    assert!(plain.contains(" => [1/3] FROM busybox"), "{out}");
    assert!(plain.contains(" => [2/3] RUN echo first line"), "{out}");
    assert!(plain.contains(" => => # second line"), "{out}");
    assert!(plain.contains("Successfully tagged tty:latest"), "{out}");
    let out = build(&r, ctx.path(), &["--progress", "tty", "-t", "tty"]);
    assert!(
        out.contains(" => CACHED [2/3] RUN echo first line"),
        "{out}"
    );
    // Plain output is Docker's classic stream.
    let out = build(&r, ctx.path(), &["--progress", "plain", "-t", "tty"]);
    assert!(
        out.contains("Step 2/3 : RUN echo first line && echo second line\n ---> Using cache\n"),
        "{out}"
    );
}

/// An image whose directories are links to host paths: COPY into them, and COPY --from out
/// of them, stay inside the image.
#[test]
fn links_in_the_image_do_not_lead_a_copy_to_the_host() {
    let r = Root::new();
    let host = tempfile::tempdir().unwrap();
    let secret = host.path().join("secret");
    std::fs::write(&secret, "host only\n").unwrap();
    let host_dir = host.path().to_str().unwrap().to_string();
    let tar = ketch_tests::TarBuilder::new()
        .entry("into", tar::EntryType::Symlink, &host_dir, b"")
        .entry("up", tar::EntryType::Symlink, "../../../../../../..", b"")
        .file("marker", b"in the image\n")
        .finish();
    let o = r.run_stdin(&["import", "-", "evil"], &tar);
    assert!(o.status.success(), "{o:?}");
    let ctx = context(&[
        (
            "Dockerfile",
            &format!(
                "FROM evil AS evil\nCOPY f /into/\nCOPY f /up{host_dir}/g\n\
                 FROM evil\nCOPY --from=evil /into/secret /up{host_dir}/secret /copied/\n"
            ),
        ),
        ("f", "from the context\n"),
    ]);
    let (_, err) = r.fails(&["build", "-t", "evil2", ctx.path().to_str().unwrap()]);
    // The host's file was never read: inside the image there is no such file.
    assert!(err.contains("line 5") && err.contains("secret"), "{err}");
    // Nothing was written on the host.
    let mut names: Vec<String> = std::fs::read_dir(host.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["secret"]);
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "host only\n");
    // The writes went where the links lead inside the image.
    let dockerfile = format!(
        "FROM evil AS evil\nCOPY f /into/\nCOPY f /up{host_dir}/g\n\
         FROM scratch\nCOPY --from=evil /into/f /up{host_dir}/g /copied/\n"
    );
    std::fs::write(ctx.path().join("Dockerfile"), dockerfile).unwrap();
    build(&r, ctx.path(), &["-t", "evil2"]);
    let cid = r.ok(&["create", "evil2", "none"]).trim().to_string();
    let o = r.run(&["cp", &format!("{cid}:/copied/."), "-"]);
    assert!(o.status.success(), "{o:?}");
    let mut files = std::collections::BTreeMap::new();
    for e in tar::Archive::new(&o.stdout[..]).entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().display().to_string();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut e, &mut text).unwrap();
        if !text.is_empty() {
            files.insert(name, text);
        }
    }
    assert_eq!(
        files.values().collect::<Vec<_>>(),
        ["from the context\n", "from the context\n"],
        "{files:?}"
    );
    r.ok(&["rm", &cid]);
    let id = image_id(&r, "evil2");
    let blob = config_blob(&r, &id);
    assert_eq!(blob["rootfs"]["diff_ids"].as_array().unwrap().len(), 1);
    assert_eq!(std::fs::read_dir(host.path()).unwrap().count(), 1);
}

#[test]
fn onbuild_wildcards_platform_args_and_owners_by_name() {
    let r = Root::new();
    r.busybox("busybox");
    // A base whose ONBUILD triggers run in the build that uses it.
    let base = context(&[(
        "Dockerfile",
        "FROM busybox\nONBUILD COPY *.txt /txt/\nONBUILD RUN ls /txt > /onbuild-saw\n",
    )]);
    build(&r, base.path(), &["-t", "base-with-triggers"]);
    let triggers = inspect(&r, "base-with-triggers")["Config"]["OnBuild"].clone();
    assert_eq!(
        triggers,
        json!(["COPY *.txt /txt/", "RUN ls /txt > /onbuild-saw"])
    );
    let ctx = context(&[
        (
            "Dockerfile",
            "FROM base-with-triggers\n\
             ARG TARGETOS\nARG TARGETARCH\n\
             RUN echo \"$TARGETOS/$TARGETARCH\" > /platform\n\
             COPY --chown=nobody:nogroup data/?.cfg /cfg/\n",
        ),
        ("a.txt", "a"),
        ("b.txt", "b"),
        ("c.md", "c"),
        ("data/1.cfg", "1"),
        ("data/2.cfg", "2"),
        ("data/10.cfg", "10"),
    ]);
    let out = build(&r, ctx.path(), &["-t", "child"]);
    assert!(out.contains("# Executing 2 build trigger(s)"), "{out}");
    let cat = |p: &str| r.ok(&["run", "--rm", "--network", "none", "child", "cat", p]);
    assert_eq!(cat("/onbuild-saw"), "a.txt\nb.txt\n");
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    assert_eq!(cat("/platform"), format!("linux/{arch}\n"));
    let ls = r.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "child",
        "ls",
        "-n",
        "/cfg",
    ]);
    assert_eq!(ls.lines().filter(|l| l.contains(".cfg")).count(), 2, "{ls}");
    assert!(ls.contains(" 65534    65534 "), "{ls}");
    // The triggers ran; the child has none of its own.
    assert_eq!(inspect(&r, "child")["Config"]["OnBuild"], Value::Null);
    // A Dockerfile from stdin, for the same context.
    let o = r.run_stdin(
        &["build", "-q", "-f", "-", ctx.path().to_str().unwrap()],
        b"FROM busybox\nCOPY a.txt /\n",
    );
    assert!(o.status.success(), "{o:?}");
    let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(id.starts_with("sha256:"), "{id}");
}

/// A base image the root lacks is pulled, from a registry on loopback; `--pull` asks it
/// again even when present.
#[test]
fn a_missing_base_is_pulled() {
    let reg = ketch_tests::registry::Registry::ketch(&[]);
    let r = Root::new();
    r.busybox("busybox");
    let base = format!("{}/base/bb:1", reg.addr);
    r.ok(&["tag", "busybox", &base]);
    r.ok(&["push", "-q", &base]);
    let fresh = Root::new();
    let ctx = context(&[(
        "Dockerfile",
        &format!("FROM {base}\nRUN echo built on a pulled base > /msg\n"),
    )]);
    let out = build(
        &fresh,
        ctx.path(),
        &["-t", "on-pulled", "--network", "none"],
    );
    assert!(
        out.contains("Pull complete") || out.contains("Digest: "),
        "{out}"
    );
    assert_eq!(
        fresh.ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "on-pulled",
            "cat",
            "/msg"
        ]),
        "built on a pulled base\n"
    );
    assert!(fresh.ok(&["images"]).contains("base/bb"));
    let out = build(&fresh, ctx.path(), &["-t", "on-pulled", "--pull"]);
    assert!(out.contains("Digest: "), "{out}");
    assert!(out.contains("Using cache"), "{out}");
}
