//! Registries end to end, all on loopback: push and pull against `ketch registry serve` and
//! Debian's `docker-registry`, `skopeo` both ways, login and bearer tokens, a
//! multi-platform index, the faults a network and a registry can throw (through a proxy
//! that breaks downloads), a pull killed midway, and four pulls at once.

use std::process::{Command, Stdio};
use std::time::Duration;

use ketch_tests::registry::{Fault, Proxy, Registry, curl, htpasswd};
use ketch_tests::{Daemon, PrivateNet, Root, TarBuilder, digest, gzip, require_tool, wait_until};

/// A root with the busybox image tagged `ADDR/me/bb:1`.
fn with_image(addr: &str) -> Root {
    let r = Root::new();
    r.busybox("busybox");
    r.ok(&["tag", "busybox", &format!("{addr}/me/bb:1")]);
    r
}

/// Runs the pulled image: the proof that a pull made something runnable.
fn runs(r: &Root, image: &str) {
    let out = r.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        image,
        "echo",
        "pulled-and-ran",
    ]);
    assert_eq!(out.trim(), "pulled-and-ran");
}

fn skopeo(args: &[&str]) -> String {
    let o = Command::new("skopeo")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn login(r: &Root, addr: &str, user: &str, password: &str) -> std::process::Output {
    r.run_stdin(
        &["login", "-u", user, "--password-stdin", addr],
        password.as_bytes(),
    )
}

#[test]
fn push_pull_and_skopeo_against_ketch_registry_serve() {
    require_tool("skopeo");
    let dir = tempfile::tempdir().unwrap();
    let users = htpasswd(dir.path(), "me", "s3cret");
    let reg = Registry::ketch(&["--htpasswd", users.to_str().unwrap()]);
    let image = format!("{}/me/bb:1", reg.addr);
    let r = with_image(&reg.addr);

    // Without credentials the registry says no, and the error says so.
    let (code, err) = r.fails(&["push", &image]);
    assert_eq!(code, 1);
    assert!(err.contains("unauthorized"), "{err}");
    // A wrong password is refused at login, and nothing is stored.
    let o = login(&r, &reg.addr, "me", "wrong");
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("unauthorized"),
        "{o:?}"
    );
    assert!(!r.dir.path().join("config/config.json").exists());

    let o = login(&r, &reg.addr, "me", "s3cret");
    assert!(o.status.success(), "{o:?}");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "Login Succeeded");
    let cfg = r.dir.path().join("config/config.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&cfg).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
    assert!(doc["auths"][&reg.addr]["auth"].is_string(), "{doc}");

    let out = r.ok(&["push", &image]);
    assert!(out.contains("Pushed"), "{out}");
    let digest_line = out
        .lines()
        .find(|l| l.starts_with("1: digest: sha256:"))
        .unwrap();
    // Again: every layer is there already.
    assert!(r.ok(&["push", &image]).contains("Layer already exists"));
    // Into another repository of the same registry: mounted, not sent.
    r.ok(&["tag", "busybox", &format!("{}/other/bb:2", reg.addr)]);
    let mounted = r.ok(&["push", &format!("{}/other/bb:2", reg.addr)]);
    assert!(mounted.contains("Mounted from me/bb"), "{mounted}");

    // Pull needs the credentials too; a fresh root has the same config dir only if told.
    let fresh = Root::new();
    let (_, err) = fresh.fails(&["pull", &image]);
    assert!(err.contains("unauthorized"), "{err}");
    let o = login(&fresh, &reg.addr, "me", "s3cret");
    assert!(o.status.success(), "{o:?}");
    let out = fresh.ok(&["pull", &image]);
    assert!(
        out.contains(
            digest_line
                .trim_start_matches("1: digest: ")
                .split(' ')
                .next()
                .unwrap()
        ),
        "{out}"
    );
    runs(&fresh, &image);
    let repo_digest = fresh.ok(&["image", "inspect", "-f", "{{index .RepoDigests 0}}", &image]);
    assert!(
        repo_digest
            .trim()
            .starts_with(&format!("{}/me/bb@sha256:", reg.addr)),
        "{repo_digest}"
    );
    // By digest too, into yet another root.
    let by_digest = repo_digest.trim().to_string();
    let third = Root::new();
    login(&third, &reg.addr, "me", "s3cret");
    third.ok(&["pull", &by_digest]);
    runs(&third, &by_digest);
    // Listed as Docker lists it: its repository, no tag.
    let listed = third.ok(&["images", "--format", "{{.Repository}} {{.Tag}}"]);
    assert_eq!(listed.trim(), format!("{}/me/bb <none>", reg.addr));

    // skopeo reads what ketch pushed, and ketch pulls what skopeo pushed.
    let creds = "me:s3cret";
    let oci = dir.path().join("oci");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        creds,
        &format!("docker://{image}"),
        &format!("oci:{}:bb", oci.display()),
    ]);
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        creds,
        &format!("oci:{}:bb", oci.display()),
        &format!("docker://{}/from/skopeo:3", reg.addr),
    ]);
    let from_skopeo = format!("{}/from/skopeo:3", reg.addr);
    fresh.ok(&["pull", &from_skopeo]);
    runs(&fresh, &from_skopeo);
    let catalog = curl(&["-u", creds, &format!("http://{}/v2/_catalog", reg.addr)]);
    assert!(
        catalog.contains("from/skopeo") && catalog.contains("me/bb"),
        "{catalog}"
    );

    // Logout forgets them.
    assert!(
        fresh
            .ok(&["logout", &reg.addr])
            .contains("Removing login credentials")
    );
    let (_, err) = fresh.fails(&["pull", &image]);
    assert!(err.contains("unauthorized"), "{err}");
}

#[test]
fn push_pull_and_skopeo_against_distribution() {
    require_tool("docker-registry");
    require_tool("skopeo");
    let dir = tempfile::tempdir().unwrap();
    let users = htpasswd(dir.path(), "dist", "pa55");
    let reg = Registry::distribution(Some(&users));
    let image = format!("{}/me/bb:1", reg.addr);
    let r = with_image(&reg.addr);
    let o = login(&r, &reg.addr, "dist", "wrong");
    assert!(!o.status.success(), "{o:?}");
    assert!(login(&r, &reg.addr, "dist", "pa55").status.success());
    let out = r.ok(&["push", &image]);
    assert!(out.contains("Pushed"), "{out}");

    let fresh = Root::new();
    assert!(login(&fresh, &reg.addr, "dist", "pa55").status.success());
    let out = fresh.ok(&["pull", &image]);
    assert!(out.contains("Pull complete"), "{out}");
    runs(&fresh, &image);

    let oci = dir.path().join("oci");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        "dist:pa55",
        &format!("docker://{image}"),
        &format!("oci:{}:bb", oci.display()),
    ]);
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        "dist:pa55",
        &format!("oci:{}:bb", oci.display()),
        &format!("docker://{}/from/skopeo:2", reg.addr),
    ]);
    let from_skopeo = format!("{}/from/skopeo:2", reg.addr);
    fresh.ok(&["pull", &from_skopeo]);
    runs(&fresh, &from_skopeo);
}

#[test]
fn bearer_tokens_from_registry_serve() {
    let dir = tempfile::tempdir().unwrap();
    let users = htpasswd(dir.path(), "tok", "en");
    let reg = Registry::ketch(&["--htpasswd", users.to_str().unwrap(), "--token-auth"]);
    // The registry challenges with a bearer realm of its own.
    let o = Command::new("curl")
        .args([
            "-sS",
            "-D",
            "-",
            "-o",
            "/dev/null",
            &format!("http://{}/v2/", reg.addr),
        ])
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&o.stdout);
    assert!(
        head.contains("401") && head.contains("Bearer realm=\"http://"),
        "{head}"
    );
    let image = format!("{}/me/bb:1", reg.addr);
    let r = with_image(&reg.addr);
    let (_, err) = r.fails(&["push", &image]);
    assert!(err.contains("unauthorized"), "{err}");
    assert!(!login(&r, &reg.addr, "tok", "nope").status.success());
    assert!(login(&r, &reg.addr, "tok", "en").status.success());
    r.ok(&["push", &image]);
    let fresh = Root::new();
    assert!(login(&fresh, &reg.addr, "tok", "en").status.success());
    fresh.ok(&["pull", &image]);
    runs(&fresh, &image);
    // One token serves every request of a pull (manifest, config, layers) until it expires:
    // through a proxy, whose address the realm then names, the token endpoint is asked once.
    let proxy = Proxy::new(&reg.addr);
    let other = Root::new();
    assert!(login(&other, &proxy.addr, "tok", "en").status.success());
    let via = format!("{}/me/bb:1", proxy.addr);
    other.ok(&["pull", &via]);
    let blobs = proxy.seen("/blobs/sha256:");
    assert!(blobs.len() >= 2, "{blobs:?}");
    let tokens: Vec<_> = proxy
        .seen("GET /token")
        .into_iter()
        .filter(|l| l.contains("me%2Fbb") || l.contains("me/bb"))
        .collect();
    assert_eq!(tokens.len(), 1, "{:?}", proxy.log.lock().unwrap());
}

/// `curl` POST of a blob, monolithic.
fn upload(addr: &str, repo: &str, bytes: &[u8], dir: &std::path::Path) -> String {
    let d = digest(bytes).to_string();
    let f = dir.join(ketch_tests::random_hex(4));
    std::fs::write(&f, bytes).unwrap();
    curl(&[
        "-f",
        "-X",
        "POST",
        "--data-binary",
        &format!("@{}", f.display()),
        "-H",
        "Content-Type: application/octet-stream",
        &format!("http://{addr}/v2/{repo}/blobs/uploads/?digest={d}"),
    ]);
    d
}

fn put_manifest(
    addr: &str,
    repo: &str,
    reference: &str,
    media: &str,
    bytes: &[u8],
    dir: &std::path::Path,
) {
    let f = dir.join(ketch_tests::random_hex(4));
    std::fs::write(&f, bytes).unwrap();
    curl(&[
        "-f",
        "-X",
        "PUT",
        "--data-binary",
        &format!("@{}", f.display()),
        "-H",
        &format!("Content-Type: {media}"),
        &format!("http://{addr}/v2/{repo}/manifests/{reference}"),
    ]);
}

#[test]
fn a_multi_platform_index_gives_the_hosts_or_the_asked_platform() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::ketch(&[]);
    let r = with_image(&reg.addr);
    r.ok(&["tag", "busybox", &format!("{}/me/multi:host", reg.addr)]);
    let out = r.ok(&["push", &format!("{}/me/multi:host", reg.addr)]);
    let line = out
        .lines()
        .find(|l| l.starts_with("host: digest: "))
        .unwrap();
    let parts: Vec<&str> = line.split_whitespace().collect();
    let (host_digest, host_size) = (parts[2].to_string(), parts[4].parse::<u64>().unwrap());

    // An arm64 image of one small layer, pushed by hand.
    let layer = TarBuilder::new().file("arch", b"arm64\n").finish();
    let blob = gzip(&layer);
    let blob_digest = upload(&reg.addr, "me/multi", &blob, dir.path());
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "arm64", "variant": "v8", "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [digest(&layer).to_string()]},
    }))
    .unwrap();
    let config_digest = upload(&reg.addr, "me/multi", &config, dir.path());
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": blob_digest, "size": blob.len()}],
    }))
    .unwrap();
    let arm_digest = digest(&manifest).to_string();
    put_manifest(
        &reg.addr,
        "me/multi",
        &arm_digest,
        "application/vnd.oci.image.manifest.v1+json",
        &manifest,
        dir.path(),
    );
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": arm_digest, "size": manifest.len(),
             "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": host_digest, "size": host_size,
             "platform": {"architecture": "amd64", "os": "linux"}},
        ],
    }))
    .unwrap();
    put_manifest(
        &reg.addr,
        "me/multi",
        "all",
        "application/vnd.oci.image.index.v1+json",
        &index,
        dir.path(),
    );
    let image = format!("{}/me/multi:all", reg.addr);

    // What the registry has, as the daemon tells it (`GET /distribution/{name}/json`): the
    // index's descriptor and its platforms, a manifest's platform from its configuration.
    let asker = Root::new();
    let d = Daemon::start(&asker);
    let distribution = |name: &str| {
        let o = Command::new("curl")
            .args(["-sS", "-w", "\n%{http_code}", "--unix-socket"])
            .arg(&d.socket)
            .arg(format!("http://d/v1.47/distribution/{name}/json"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap();
        let v: serde_json::Value =
            serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text:?} {:?}", o.stderr));
        (code.to_string(), v)
    };
    let (code, v) = distribution(&image);
    assert_eq!(code, "200", "{v}");
    assert_eq!(v["Descriptor"]["digest"], digest(&index).to_string());
    assert_eq!(v["Descriptor"]["size"], index.len());
    assert_eq!(
        v["Descriptor"]["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(
        v["Platforms"],
        serde_json::json!([
            {"architecture": "arm64", "os": "linux", "variant": "v8"},
            {"architecture": "amd64", "os": "linux"},
        ])
    );
    let (code, v) = distribution(&format!("{}/me/multi:host", reg.addr));
    assert_eq!(code, "200", "{v}");
    assert_eq!(v["Descriptor"]["digest"], host_digest);
    assert_eq!(v["Platforms"][0]["architecture"], "amd64");
    let (code, v) = distribution(&format!("{}/no/such:1", reg.addr));
    assert_ne!(code, "200", "{v}");
    assert!(v["message"].as_str().unwrap().contains("not found"), "{v}");
    drop(d);

    let host = Root::new();
    host.ok(&["pull", &image]);
    let arch = host.ok(&["image", "inspect", "-f", "{{.Architecture}}", &image]);
    assert_eq!(arch.trim(), "amd64");
    // The digest it was pulled by is the index's.
    let rd = host.ok(&["image", "inspect", "-f", "{{index .RepoDigests 0}}", &image]);
    assert!(rd.trim().ends_with(&digest(&index).to_string()), "{rd}");
    runs(&host, &image);

    let arm = Root::new();
    arm.ok(&["pull", "--platform", "linux/arm64", &image]);
    let arch = arm.ok(&[
        "image",
        "inspect",
        "-f",
        "{{.Architecture}}/{{.Variant}}",
        &image,
    ]);
    assert_eq!(arch.trim(), "arm64/v8");

    let none = Root::new();
    let (_, err) = none.fails(&["pull", "--platform", "linux/s390x", &image]);
    assert!(
        err.contains("no matching manifest for linux/s390x"),
        "{err}"
    );
    assert!(none.ok(&["images", "-q"]).trim().is_empty());
}

/// A root's blobs (what a failed pull must not leave), after a command has opened it.
fn blobs_after_open(r: &Root) -> Vec<String> {
    r.ok(&["images", "-q"]);
    r.entries("blobs/sha256")
}

/// A registry with the image pushed, behind a fault proxy.
fn faulty() -> (Registry, Proxy, String) {
    let reg = Registry::ketch(&[]);
    let src = with_image(&reg.addr);
    src.ok(&["push", &format!("{}/me/bb:1", reg.addr)]);
    let proxy = Proxy::new(&reg.addr);
    let image = format!("{}/me/bb:1", proxy.addr);
    (reg, proxy, image)
}

#[test]
fn a_blob_that_does_not_match_its_digest_is_refused_and_nothing_kept() {
    let (_reg, proxy, image) = faulty();
    proxy.set(Fault::Corrupt);
    let r = Root::new();
    let (code, err) = r.fails(&["pull", &image]);
    assert_eq!(code, 1);
    assert!(err.contains("does not match its digest"), "{err}");
    assert!(r.ok(&["images", "-q"]).trim().is_empty());
    assert!(
        blobs_after_open(&r).is_empty(),
        "{:?}",
        r.entries("blobs/sha256")
    );
    proxy.set(Fault::None);
    r.ok(&["pull", &image]);
    runs(&r, &image);
}

#[test]
fn a_manifest_naming_a_missing_blob_fails_cleanly() {
    let (reg, _proxy, _) = faulty();
    let image = format!("{}/me/bb:1", reg.addr);
    let src = Root::new();
    src.ok(&["pull", &image]);
    let layer = src.ok(&[
        "image",
        "inspect",
        "-f",
        "{{index .RootFS.Layers 0}}",
        &image,
    ]);
    let _ = layer;
    // The registry loses the layer blob (its link), the manifest still names it.
    let manifest = curl(&[
        "-H",
        "Accept: application/vnd.oci.image.manifest.v1+json",
        &format!("http://{}/v2/me/bb/manifests/1", reg.addr),
    ]);
    let m: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    let blob = m["layers"][0]["digest"].as_str().unwrap().to_string();
    curl(&[
        "-f",
        "-X",
        "DELETE",
        &format!("http://{}/v2/me/bb/blobs/{blob}", reg.addr),
    ]);
    let r = Root::new();
    let (_, err) = r.fails(&["pull", &image]);
    assert!(err.contains("not found") && err.contains(&blob), "{err}");
    assert!(r.ok(&["images", "-q"]).trim().is_empty());
    assert!(blobs_after_open(&r).is_empty());
    // Pushed again, it is whole.
    src.ok(&["push", &image]);
    r.ok(&["pull", &image]);
    runs(&r, &image);
}

#[test]
fn a_broken_connection_resumes_and_one_that_always_breaks_fails() {
    let (_reg, proxy, image) = faulty();
    // Broken once, 64 KiB in: the pull goes on from there with a range.
    proxy.set(Fault::Drop(64 << 10));
    let flip = std::thread::spawn({
        let log = proxy.log.clone();
        let fault = proxy.setter();
        move || {
            // The config, then the layer: the layer's download is the one broken.
            wait_until("the layer's download", 20, || {
                log.lock()
                    .unwrap()
                    .iter()
                    .filter(|l| l.starts_with("GET") && l.contains("/blobs/sha256:"))
                    .count()
                    >= 2
            });
            std::thread::sleep(Duration::from_millis(50));
            fault(Fault::None);
        }
    });
    let r = Root::new();
    r.ok(&["pull", &image]);
    flip.join().unwrap();
    let ranged: Vec<String> = proxy
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.to_ascii_lowercase().contains("range: bytes=65536-"))
        .cloned()
        .collect();
    assert!(
        !ranged.is_empty(),
        "no resumed download: {:?}",
        proxy.log.lock().unwrap()
    );
    runs(&r, &image);

    // Broken every time: a clear error, and nothing left.
    proxy.set(Fault::Drop(64 << 10));
    let r2 = Root::new();
    let (_, err) = r2.fails(&["pull", &image]);
    assert!(
        err.contains("connection") || err.contains("cannot reach"),
        "{err}"
    );
    assert!(blobs_after_open(&r2).is_empty());
    proxy.set(Fault::None);
    r2.ok(&["pull", &image]);
}

#[test]
fn wrong_passwords_and_a_registry_that_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let users = htpasswd(dir.path(), "me", "right");
    let reg = Registry::ketch(&["--htpasswd", users.to_str().unwrap()]);
    let r = Root::new();
    // Credentials stored by hand, wrong: the pull says unauthorized.
    std::fs::create_dir_all(r.dir.path().join("config")).unwrap();
    std::fs::write(
        r.dir.path().join("config/config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"bWU6d3Jvbmc="}}}}}}"#,
            reg.addr
        ),
    )
    .unwrap();
    let (code, err) = r.fails(&["pull", &format!("{}/me/bb:1", reg.addr)]);
    assert_eq!(code, 1);
    assert!(err.contains("unauthorized"), "{err}");
    // Nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (_, err) = r.fails(&["pull", &format!("127.0.0.1:{port}/me/bb:1")]);
    assert!(err.contains("cannot reach registry"), "{err}");
    // A name the registry does not know.
    let open = Registry::ketch(&[]);
    let (_, err) = r.fails(&["pull", &format!("{}/no/such:1", open.addr)]);
    assert!(
        err.contains("not found") && err.contains("no/such:1"),
        "{err}"
    );
    assert!(blobs_after_open(&r).is_empty());
    // With the right password, the same pull goes through.
    let src = with_image(&reg.addr);
    assert!(login(&src, &reg.addr, "me", "right").status.success());
    src.ok(&["push", &format!("{}/me/bb:1", reg.addr)]);
    assert!(login(&r, &reg.addr, "me", "right").status.success());
    r.ok(&["pull", &format!("{}/me/bb:1", reg.addr)]);
    runs(&r, &format!("{}/me/bb:1", reg.addr));
}

#[test]
fn a_pull_killed_midway_leaves_nothing_after_the_next_open() {
    let (_reg, proxy, image) = faulty();
    proxy.set(Fault::Stall(64 << 10));
    let r = Root::new();
    let mut child = r
        .cmd()
        .args(["pull", &image])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the pull to be midway", 20, || {
        proxy
            .seen("/blobs/sha256:")
            .iter()
            .any(|l| l.starts_with("GET"))
    });
    std::thread::sleep(Duration::from_millis(200));
    child.kill().unwrap();
    child.wait().unwrap();
    proxy.set(Fault::None);
    assert!(r.ok(&["images", "-q"]).trim().is_empty());
    assert!(
        r.entries("blobs/sha256").is_empty(),
        "{:?}",
        r.entries("blobs/sha256")
    );
    assert!(r.entries("ingest").is_empty(), "{:?}", r.entries("ingest"));
    assert_eq!(r.count("leases"), 0);
    r.ok(&["pull", &image]);
    runs(&r, &image);
}

#[test]
fn four_pulls_at_once_store_and_fetch_each_blob_once() {
    let (_reg, proxy, image) = faulty();
    let r = Root::new();
    let pull = vec!["pull".to_string(), "-q".into(), image.clone()];
    all_at_once(&r, &[pull.clone(), pull.clone(), pull.clone(), pull]);
    let blob_gets: Vec<String> = proxy
        .seen("/blobs/sha256:")
        .into_iter()
        .filter(|l| l.starts_with("GET"))
        .collect();
    let mut unique = blob_gets.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        blob_gets.len(),
        unique.len(),
        "a blob fetched twice: {blob_gets:?}"
    );
    // The layer, the config, the manifest: stored once each.
    assert_eq!(
        r.entries("blobs/sha256").len(),
        3,
        "{:?}",
        r.entries("blobs/sha256")
    );
    assert_eq!(r.ok(&["images", "-q"]).lines().count(), 1);
    runs(&r, &image);
}

#[test]
fn run_pulls_what_is_missing_unless_told_not_to() {
    let reg = Registry::ketch(&[]);
    let src = with_image(&reg.addr);
    let image = format!("{}/me/bb:1", reg.addr);
    src.ok(&["push", &image]);
    let r = Root::new();
    let (code, err) = r.fails(&[
        "run",
        "--rm",
        "--pull",
        "never",
        "--network",
        "none",
        &image,
        "true",
    ]);
    assert_eq!(code, 125);
    assert!(
        err.contains("No such image") || err.contains("not found"),
        "{err}"
    );
    let o = r.run(&["run", "--rm", "--network", "none", &image, "echo", "ran"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "ran");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("Unable to find image '{image}' locally")),
        "{err}"
    );
    assert!(err.contains("Pull complete"), "{err}");
    // Present now: not pulled again.
    let o = r.run(&["create", "--network", "none", &image, "true"]);
    assert!(
        o.status.success() && !String::from_utf8_lossy(&o.stderr).contains("Unable"),
        "{o:?}"
    );
    // `-q`: pulled all the same, without a word.
    let quiet = Root::new();
    let o = quiet.run(&[
        "run",
        "-q",
        "--rm",
        "--network",
        "none",
        &image,
        "echo",
        "ran",
    ]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "ran\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "");
}

#[test]
fn the_docker_cli_pulls_pushes_and_logs_in_through_the_daemon() {
    require_tool("docker");
    let dir = tempfile::tempdir().unwrap();
    let users = htpasswd(dir.path(), "dock", "er");
    let reg = Registry::ketch(&["--htpasswd", users.to_str().unwrap()]);
    let src = with_image(&reg.addr);
    assert!(login(&src, &reg.addr, "dock", "er").status.success());
    let image = format!("{}/me/bb:1", reg.addr);
    src.ok(&["push", &image]);

    let r = Root::new();
    let d = Daemon::start(&r);
    let o = d.docker(&["pull", &image]);
    assert!(!o.status.success(), "pulled without logging in: {o:?}");
    let mut docker_login = Command::new("docker");
    docker_login
        .args(["login", "-u", "dock", "--password-stdin", &reg.addr])
        .env("DOCKER_HOST", format!("unix://{}", d.socket.display()))
        .env(
            "DOCKER_CONFIG",
            d.socket.parent().unwrap().join("docker-config"),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = docker_login.spawn().unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"er\n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "docker login: {o:?}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("Login Succeeded"));
    let o = d.docker(&["pull", &image]);
    assert!(o.status.success(), "docker pull: {o:?}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("Pull complete") && out.contains("Digest: sha256:"),
        "{out}"
    );
    let pushed = format!("{}/pushed/by-docker:7", reg.addr);
    assert!(d.docker(&["tag", &image, &pushed]).status.success());
    let o = d.docker(&["push", &pushed]);
    assert!(o.status.success(), "docker push: {o:?}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("7: digest: sha256:"), "{out}");
    // A missing image: Docker's own words.
    let o = d.docker(&["pull", &format!("{}/no/such:1", reg.addr)]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("not found"), "{err}");
    drop(d);
    let check = Root::new();
    assert!(login(&check, &reg.addr, "dock", "er").status.success());
    check.ok(&["pull", &pushed]);
    runs(&check, &pushed);
}

#[test]
fn tls_is_verified_against_the_registrys_ca_unless_told_otherwise() {
    // An address that is not loopback (loopback is always insecure), in a namespace of the
    // test's own.
    let net = PrivateNet::new();
    let ip = "10.77.0.1";
    net.sh(&format!(
        "ip link set lo up && ip link add d0 type veth peer name d1 && ip addr add {ip}/24 dev d0 && ip link set d1 up && ip link set d0 up"
    ));
    let dir = tempfile::tempdir().unwrap();
    ketch_tests::make_certs(dir.path(), ip);
    let (ca, cert, key) = (
        dir.path().join("ca.pem"),
        dir.path().join("server-cert.pem"),
        dir.path().join("server-key.pem"),
    );
    let reg = Registry::ketch_under(
        &net.wrap(),
        ip,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let r = net.root();
    let image = format!("{}/me/bb:1", reg.addr);
    r.ok(&["tag", "busybox", &image]);
    // Nobody vouches for the certificate: refused, and the error names why.
    let (_, err) = r.fails(&["push", &image]);
    assert!(
        err.contains("cannot reach registry") && err.to_lowercase().contains("certificate"),
        "{err}"
    );
    // Its CA in the certificates directory, as Docker's certs.d: verified and accepted.
    let certs = dir.path().join("certs.d");
    std::fs::create_dir_all(certs.join(&reg.addr)).unwrap();
    std::fs::copy(&ca, certs.join(&reg.addr).join("ca.crt")).unwrap();
    let with_ca = |root: &Root, args: &[&str]| {
        let o = root
            .cmd()
            .env("KETCH_CERTS_D", &certs)
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    with_ca(&r, &["push", &image]);
    let fresh = net.root();
    with_ca(&fresh, &["pull", &image]);
    runs(&fresh, &image);
    // Or without the CA, where the user says so: per command, or per registry.
    let other = net.root();
    let (_, err) = other.fails(&["pull", &image]);
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    other.ok(&["pull", "--tls-verify=false", &image]);
    let listed = net.root();
    listed.ok(&["--insecure-registry", &reg.addr, "pull", &image]);
}

#[test]
fn docker_io_comes_from_a_mirror_when_one_is_set() {
    let reg = Registry::ketch(&[]);
    let src = Root::new();
    src.busybox("busybox");
    // The mirror holds `library/busybox`, as a pull-through cache of docker.io would.
    src.ok(&[
        "tag",
        "busybox",
        &format!("{}/library/busybox:latest", reg.addr),
    ]);
    src.ok(&["push", &format!("{}/library/busybox:latest", reg.addr)]);
    let r = Root::new();
    let mirror = format!("http://{}", reg.addr);
    let out = r.ok(&["--registry-mirror", &mirror, "pull", "busybox"]);
    assert!(out.contains("Using default tag: latest"), "{out}");
    assert!(
        out.trim_end().ends_with("docker.io/library/busybox:latest"),
        "{out}"
    );
    assert_eq!(
        r.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"])
            .trim(),
        "busybox:latest"
    );
    runs(&r, "busybox");

    // The same from the engine's config file, dockerd's daemon.json in shape.
    let conf = r.dir.path().join("daemon.json");
    std::fs::write(&conf, format!(r#"{{"registry-mirrors": ["{mirror}"]}}"#)).unwrap();
    let other = Root::new();
    let o = other
        .cmd()
        .env("KETCH_CONFIG_FILE", &conf)
        .args(["pull", "-q", "busybox"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    runs(&other, "busybox");
    // A key ketch does not have is named, not dropped.
    std::fs::write(
        &conf,
        r#"{"registry-mirrors": [], "log-driver": "journald"}"#,
    )
    .unwrap();
    let o = other
        .cmd()
        .env("KETCH_CONFIG_FILE", &conf)
        .args(["images"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("log-driver"), "{err}");
    assert!(err.contains(conf.to_str().unwrap()), "{err}");
}

#[test]
fn large_blobs_go_up_in_chunks_and_all_tags_come_down() {
    let reg = Registry::ketch(&[]);
    let proxy = Proxy::new(&reg.addr);
    let src = Root::new();
    src.busybox("busybox");
    for t in ["1", "2"] {
        src.ok(&["tag", "busybox", &format!("{}/me/bb:{t}", proxy.addr)]);
    }
    let o = src
        .cmd()
        .env("KETCH_PUSH_CHUNK_SIZE", "256k")
        .args(["push", &format!("{}/me/bb:1", proxy.addr)])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let patches = proxy.seen("PATCH /v2/me/bb/blobs/uploads/");
    assert!(patches.len() > 2, "{:?}", proxy.log.lock().unwrap());
    src.ok(&["push", &format!("{}/me/bb:2", proxy.addr)]);
    let r = Root::new();
    let out = r.ok(&["pull", "-a", &format!("{}/me/bb", proxy.addr)]);
    assert!(
        out.contains("1: Pulling from me/bb") && out.contains("2: Pulling from me/bb"),
        "{out}"
    );
    let tags = r.ok(&["images", "--format", "{{.Tag}}"]);
    let mut tags: Vec<&str> = tags.lines().collect();
    tags.sort();
    assert_eq!(tags, ["1", "2"]);
    runs(&r, &format!("{}/me/bb:2", proxy.addr));
}

#[test]
fn pushes_at_once_to_one_repository_all_land() {
    let reg = Registry::ketch(&[]);
    let r = Root::new();
    r.busybox("busybox");
    // Two small images of their own, and busybox twice: the same blobs sent at once too.
    for (tag, text) in [("c", b"c\n" as &[u8]), ("d", b"d\n")] {
        let tar = TarBuilder::new().file("which", text).finish();
        let path = r.dir.path().join(format!("{tag}.tar"));
        std::fs::write(&path, tar).unwrap();
        r.ok(&[
            "import",
            path.to_str().unwrap(),
            &format!("{}/me/many:{tag}", reg.addr),
        ]);
    }
    for tag in ["a", "b"] {
        r.ok(&["tag", "busybox", &format!("{}/me/many:{tag}", reg.addr)]);
    }
    let pushes: Vec<Vec<String>> = ["a", "b", "c", "d"]
        .iter()
        .map(|t| {
            vec![
                "push".into(),
                "-q".into(),
                format!("{}/me/many:{t}", reg.addr),
            ]
        })
        .collect();
    all_at_once(&r, &pushes);
    let tags = curl(&[&format!("http://{}/v2/me/many/tags/list", reg.addr)]);
    assert_eq!(tags, r#"{"name":"me/many","tags":["a","b","c","d"]}"#);
    let fresh = Root::new();
    for t in ["a", "b"] {
        fresh.ok(&["pull", &format!("{}/me/many:{t}", reg.addr)]);
        runs(&fresh, &format!("{}/me/many:{t}", reg.addr));
    }
    for t in ["c", "d"] {
        fresh.ok(&["pull", &format!("{}/me/many:{t}", reg.addr)]);
        let out = fresh.ok(&[
            "image",
            "inspect",
            "-f",
            "{{.Id}}",
            &format!("{}/me/many:{t}", reg.addr),
        ]);
        assert!(out.starts_with("sha256:"), "{out}");
    }
    // Nothing left half-uploaded in the registry.
    let uploads = reg.dir.path().join("data/uploads");
    assert_eq!(std::fs::read_dir(&uploads).unwrap().count(), 0);
}

/// Runs each command line as its own `ketch` process, all at once, and checks each succeeds.
fn all_at_once(r: &Root, commands: &[Vec<String>]) {
    let children: Vec<_> = commands
        .iter()
        .map(|args| {
            r.cmd()
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
}
