//! Helpers for the end-to-end tests: run the real `ketch` binary against a private state
//! root, build test images and archives, and check that a test left nothing behind.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};

use ketch::digest::Digest;

pub mod cluster;
pub mod hostile;
pub mod registry;

/// The workspace's `target` directory.
pub fn target_dir() -> PathBuf {
    if let Ok(d) = std::env::var("CARGO_TARGET_DIR") {
        return PathBuf::from(d);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target")
}

/// The `ketch` binary under test: `KETCH_BIN`, else the workspace's debug build.
pub fn ketch_bin() -> PathBuf {
    if let Ok(b) = std::env::var("KETCH_BIN") {
        return PathBuf::from(b);
    }
    let p = target_dir().join("debug/ketch");
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace` first",
        p.display()
    );
    p
}

/// The Debian package that installs a tool a test uses; `scripts/setup` installs each.
fn package_of(tool: &str) -> &str {
    match tool {
        "docker" => "docker.io",
        "cc" => "gcc",
        "script" => "bsdutils",
        "nsenter" | "unshare" => "util-linux",
        "ip" => "iproute2",
        "nft" => "nftables",
        "node" => "nodejs",
        other => other,
    }
}

/// Requires an external tool the tests interoperate with: a test never passes by skipping
/// what it cannot run, it fails and names what to install.
pub fn require_tool(name: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{name} is not installed; scripts/setup installs it (apt-get install {})",
        package_of(name)
    );
}

/// Polls `f` every 20 ms until it holds, and fails the test naming `what` once `secs` have
/// passed: a deadline that ends in an assert, never a fall-through.
pub fn wait_until(what: &str, secs: u64, f: impl FnMut() -> bool) {
    let mut f = f;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Every cgroup hierarchy mounted on this host: (file-system type, mount point), v1 and v2.
pub fn cgroup_mounts() -> Vec<(String, PathBuf)> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let fstype = post.split(' ').next()?;
            let mountpoint = pre.split(' ').nth(4)?;
            (fstype == "cgroup" || fstype == "cgroup2")
                .then(|| (fstype.to_string(), PathBuf::from(mountpoint)))
        })
        .collect()
}

/// Requires that no cgroup of container `id` is left in any hierarchy, whatever the layout:
/// `<mount>/ketch/<id>` under every v1 controller's mount and the v2 one (`/sys/fs/cgroup`
/// on a v2 host, `/sys/fs/cgroup/unified` on a hybrid one).
pub fn no_cgroups_left(id: &str) {
    let mounts = cgroup_mounts();
    assert!(!mounts.is_empty(), "no cgroup hierarchy is mounted");
    for (_, m) in mounts {
        let p = m.join("ketch").join(id);
        assert!(!p.exists(), "{} left behind", p.display());
    }
}

/// The busybox root file-system tarball, built once from Debian's busybox-static.
pub fn busybox_rootfs() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = target_dir().join("fixtures");
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("busybox-rootfs.tar");
        if !out.exists() {
            // Built under a unique name and renamed: parallel test processes may race here.
            let tmp = dir.join(format!("busybox-rootfs.{}.tar", std::process::id()));
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/busybox-rootfs.sh");
            let st = Command::new(script).arg(&tmp).status().unwrap();
            assert!(st.success(), "building the busybox fixture failed");
            std::fs::rename(&tmp, &out).unwrap();
        }
        out
    })
    .clone()
}

/// `tests/fixtures/escape-helper.c` built static, once: the program the escape tests put in
/// their hostile images.
pub fn escape_helper() -> PathBuf {
    c_program("escape-helper")
}

/// `tests/fixtures/NAME.c` built static, once per change of its source.
pub fn c_program(name: &str) -> PathBuf {
    static BUILT: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, p)) = built.iter().find(|(n, _)| n == name) {
        return p.clone();
    }
    let dir = target_dir().join("fixtures");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(name);
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("fixtures/{name}.c"));
    let stale = |o: &Path| {
        let (Ok(a), Ok(b)) = (std::fs::metadata(o), std::fs::metadata(&src)) else {
            return true;
        };
        a.modified().unwrap() < b.modified().unwrap()
    };
    if stale(&out) {
        require_tool("cc");
        let tmp = dir.join(format!("{name}.{}", std::process::id()));
        let o = Command::new("cc")
            .args(["-static", "-O2", "-o"])
            .arg(&tmp)
            .arg(&src)
            .output()
            .unwrap();
        assert!(o.status.success(), "cc {name}.c: {o:?}");
        std::fs::rename(&tmp, &out).unwrap();
    }
    built.push((name.to_string(), out.clone()));
    out
}

/// A private state root, removed with everything in it when dropped.
pub struct Root {
    pub dir: tempfile::TempDir,
    pub extra: Vec<String>,
    /// The default network's bridge device: one of its own per root, so that tests in
    /// parallel never share one.
    pub bridge: String,
    /// A command every `ketch` runs under (`nsenter --net=...`, say).
    pub wrap: Vec<String>,
}

impl Default for Root {
    fn default() -> Self {
        Self::new()
    }
}

impl Root {
    pub fn new() -> Root {
        Root {
            dir: tempfile::Builder::new()
                .prefix("ketch-test-")
                .tempdir()
                .unwrap(),
            extra: Vec::new(),
            bridge: format!("kt{}", random_hex(5)),
            wrap: Vec::new(),
        }
    }

    /// A root opened with extra global flags (`--storage-driver copy`, say).
    pub fn with_flags(flags: &[&str]) -> Root {
        let mut r = Root::new();
        r.extra = flags.iter().map(|s| s.to_string()).collect();
        r
    }

    /// The state root made a tmpfs of `bytes` (a disk to fill); it comes off with the
    /// root's other mounts when dropped.
    pub fn on_tmpfs(&self, bytes: u64) {
        std::fs::create_dir_all(self.path()).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={bytes},mode=0700"),
                "tmpfs",
            ])
            .arg(self.path())
            .status()
            .unwrap();
        assert!(ok.success(), "tmpfs on {}", self.path().display());
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn cmd(&self) -> Command {
        let mut c = self.cmd_bare();
        c.args(&self.extra);
        c
    }

    /// A command on this root without the root's extra flags.
    pub fn cmd_bare(&self) -> Command {
        let mut c = match self.wrap.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(ketch_bin());
                c
            }
            None => Command::new(ketch_bin()),
        };
        c.arg("--root").arg(self.path());
        c.env_remove("KETCH_ROOT")
            .env_remove("KETCH_STORAGE_DRIVER")
            .env("KETCH_BRIDGE", &self.bridge)
            // Tests leave the host's forwarding setting as they found it.
            .env("KETCH_IP_FORWARD", "false")
            // Registry credentials stay in the test's directory, never the user's.
            .env("KETCH_CONFIG", self.dir.path().join("config"))
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Runs and requires success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "ketch {args:?} failed ({}):\n{}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    /// Runs and requires failure; returns (exit code, stderr).
    pub fn fails(&self, args: &[&str]) -> (i32, String) {
        let o = self.run(args);
        assert!(
            !o.status.success(),
            "ketch {args:?} succeeded:\n{}",
            String::from_utf8_lossy(&o.stdout)
        );
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8(o.stderr).unwrap(),
        )
    }

    /// Runs with `input` on stdin.
    pub fn run_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = self
            .cmd()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        out
    }

    /// Imports the busybox fixture as `name`; returns the image ID.
    pub fn busybox(&self, name: &str) -> String {
        let rootfs = busybox_rootfs();
        self.ok(&["import", rootfs.to_str().unwrap(), name])
            .trim()
            .to_string()
    }

    /// Everything that makes up the root's state: every file below it (but the database
    /// files) and every row of the database's tables. Equal before and after an operation
    /// means the operation changed nothing.
    pub fn state(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let root = self.path();
        let mut stack = vec![root.clone()];
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd {
                let e = e.unwrap();
                let p = e.path();
                let rel = p.strip_prefix(&root).unwrap().display().to_string();
                if rel.starts_with("ketch.db") {
                    continue;
                }
                let md = std::fs::symlink_metadata(&p).unwrap();
                out.insert(format!("file {rel}"), format!("{}", md.len()));
                if md.is_dir() {
                    stack.push(p);
                }
            }
        }
        let db = root.join("ketch.db");
        if db.exists() {
            let conn = rusqlite::Connection::open(&db).unwrap();
            for table in [
                "images",
                "image_layers",
                "tags",
                "layers",
                "snapshots",
                "leases",
                "lease_resources",
                "meta",
            ] {
                let mut stmt = conn.prepare(&format!("SELECT * FROM {table}")).unwrap();
                let n = stmt.column_count();
                let rows: Vec<String> = stmt
                    .query_map([], |r| {
                        let mut cols = Vec::new();
                        for i in 0..n {
                            let v: rusqlite::types::Value = r.get(i)?;
                            cols.push(format!("{v:?}"));
                        }
                        Ok(cols.join("|"))
                    })
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap();
                for (i, row) in rows.iter().enumerate() {
                    out.insert(format!("row {table} {i}"), row.clone());
                }
            }
        }
        out
    }

    /// Counts rows of a table.
    pub fn count(&self, table: &str) -> i64 {
        let conn = rusqlite::Connection::open(self.path().join("ketch.db")).unwrap();
        conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }

    /// Entries of a directory below the root.
    pub fn entries(&self, rel: &str) -> Vec<String> {
        match std::fs::read_dir(self.path().join(rel)) {
            Ok(rd) => {
                let mut v: Vec<String> = rd
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect();
                v.sort();
                v
            }
            Err(_) => vec![],
        }
    }

    /// Mounts below the root that are still there.
    pub fn mounts(&self) -> Vec<String> {
        mounts_below(&self.path())
    }
}

/// Mount points at or below `dir`, in the order the mount table lists them.
fn mounts_below(dir: &Path) -> Vec<String> {
    let dir = dir.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&dir))
        .map(str::to_string)
        .collect()
}

/// Detaches every mount at or below `dir`, innermost first.
fn unmount_below(dir: &Path) {
    for m in mounts_below(dir).into_iter().rev() {
        let c = std::ffi::CString::new(m).unwrap();
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// `rm -f` of every container `ketch` (a command on one state root) lists.
fn remove_containers(ketch: impl Fn() -> Command) {
    if let Ok(o) = ketch().args(["ps", "-aq", "--no-trunc"]).output() {
        for id in String::from_utf8_lossy(&o.stdout).lines() {
            let _ = ketch().args(["rm", "-f", id]).output();
        }
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        // Containers a failing test left running go first: processes, cgroups, mounts.
        if self.path().join("containers").is_dir() {
            remove_containers(|| self.cmd());
        }
        // Then the networks it made, and the default network's bridge, which outlives its
        // containers as docker0 does.
        if self.path().join("ketch.db").exists() {
            let _ = self.cmd().args(["network", "prune", "-f"]).output();
        }
        if self.wrap.is_empty() {
            if Path::new("/sys/class/net").join(&self.bridge).exists() {
                let _ = Command::new("ip")
                    .args(["link", "del", &self.bridge])
                    .output();
            }
            let _ = Command::new("nft")
                .args(["delete", "table", "ip", &format!("ketch_{}", self.bridge)])
                .stderr(Stdio::null())
                .output();
        }
        // Whatever a failing test left mounted comes off before the directory goes, so that
        // removing it never reaches through a mount.
        unmount_below(&self.path());
        if !std::thread::panicking() {
            assert!(self.mounts().is_empty(), "mounts left behind");
        }
    }
}

/// A network namespace of the test's own, deleted (with everything in it) when dropped.
pub struct PrivateNet(pub String);

impl Default for PrivateNet {
    fn default() -> Self {
        Self::new()
    }
}

impl PrivateNet {
    pub fn new() -> PrivateNet {
        let name = format!("ketch-test-{}", random_hex(4));
        let ok = std::process::Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap();
        assert!(ok.success());
        PrivateNet(name)
    }

    /// One whose kernel forwards between interfaces (the setting is the namespace's own):
    /// there, only firewall rules keep one bridge from another.
    pub fn forwarding() -> PrivateNet {
        let net = PrivateNet::new();
        net.sh("ip link set lo up && echo 1 > /proc/sys/net/ipv4/ip_forward");
        net
    }

    /// A state root whose every `ketch` runs in this namespace, with the busybox image.
    pub fn root(&self) -> Root {
        let mut r = Root::new();
        r.wrap = self.wrap();
        r.ok(&["import", busybox_rootfs().to_str().unwrap(), "busybox"]);
        r
    }

    pub fn wrap(&self) -> Vec<String> {
        vec!["nsenter".into(), format!("--net=/run/netns/{}", self.0)]
    }

    pub fn sh(&self, script: &str) -> String {
        let o = std::process::Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.0))
            .args(["sh", "-c", script])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Drop for PrivateNet {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

/// A tar archive built in memory; entry names are written verbatim.
pub struct TarBuilder {
    b: tar::Builder<Vec<u8>>,
}

impl Default for TarBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl TarBuilder {
    pub fn new() -> TarBuilder {
        TarBuilder {
            b: tar::Builder::new(Vec::new()),
        }
    }

    pub fn entry(mut self, name: &str, kind: tar::EntryType, link: &str, data: &[u8]) -> Self {
        let mut h = tar::Header::new_gnu();
        {
            let old = h.as_old_mut();
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    pub fn file(self, name: &str, data: &[u8]) -> Self {
        self.entry(name, tar::EntryType::Regular, "", data)
    }

    pub fn finish(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn digest(data: &[u8]) -> Digest {
    Digest::of(data)
}

/// A minimal image config for the given layers (uncompressed tars).
pub fn config_for(layers: &[&[u8]]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| digest(l).to_string()).collect();
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": layers.iter().map(|_| serde_json::json!({"created_by": "test"})).collect::<Vec<_>>(),
    }))
    .unwrap()
}

/// An OCI layout tarball with one image: `blobs` maps each layer's stored bytes (what the
/// manifest names) to its uncompressed tar (what the config's diff IDs name).
pub fn oci_archive(tag: &str, layers: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    oci_archive_with(tag, layers, |_| {})
}

/// [`oci_archive`] with the manifest edited by `edit` before it is stored.
pub fn oci_archive_with(
    tag: &str,
    layers: &[(Vec<u8>, Vec<u8>)],
    edit: impl Fn(&mut serde_json::Value),
) -> Vec<u8> {
    let uncompressed: Vec<&[u8]> = layers.iter().map(|(_, u)| u.as_slice()).collect();
    let config = config_for(&uncompressed);
    let layer_descs: Vec<serde_json::Value> = layers
        .iter()
        .map(|(stored, _)| {
            let media = if stored.starts_with(&[0x1f, 0x8b]) {
                "application/vnd.oci.image.layer.v1.tar+gzip"
            } else {
                "application/vnd.oci.image.layer.v1.tar"
            };
            serde_json::json!({"mediaType": media, "digest": digest(stored).to_string(), "size": stored.len()})
        })
        .collect();
    let mut manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(&config).to_string(), "size": config.len()},
        "layers": layer_descs,
    });
    edit(&mut manifest);
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest(&manifest).to_string(),
            "size": manifest.len(),
            "annotations": {"io.containerd.image.name": tag, "org.opencontainers.image.ref.name": tag.rsplit(':').next().unwrap()},
        }],
    }))
    .unwrap();
    let mut t = TarBuilder::new()
        .file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
        .file("index.json", &index)
        .file(
            &format!("blobs/sha256/{}", digest(&manifest).hex()),
            &manifest,
        )
        .file(&format!("blobs/sha256/{}", digest(&config).hex()), &config);
    for (stored, _) in layers {
        t = t.file(&format!("blobs/sha256/{}", digest(stored).hex()), stored);
    }
    t.finish()
}

/// A legacy docker-archive (`<hex>.json`, `<n>/layer.tar`, `manifest.json`) with one image.
pub fn legacy_docker_archive(tag: &str, layers: &[Vec<u8>], config: Option<Vec<u8>>) -> Vec<u8> {
    let uncompressed: Vec<&[u8]> = layers.iter().map(|l| l.as_slice()).collect();
    let config = config.unwrap_or_else(|| config_for(&uncompressed));
    let config_name = format!("{}.json", digest(&config).hex());
    let layer_names: Vec<String> = (0..layers.len())
        .map(|i| format!("layer{i}/layer.tar"))
        .collect();
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": config_name,
        "RepoTags": [tag],
        "Layers": layer_names,
    }]))
    .unwrap();
    let mut t = TarBuilder::new().file(&config_name, &config);
    for (name, l) in layer_names.iter().zip(layers) {
        t = t.file(name, l);
    }
    t.file("manifest.json", &manifest).finish()
}

/// `n` random bytes as hex, for unique names.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut buf))
        .unwrap();
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A CA (`ca.pem`), a server certificate for `ip` and a client certificate it signed
/// (`server-cert.pem`, `client-cert.pem`, their keys `*-key.pem`), in `dir`; and a client
/// certificate signed by another CA (`rogue-cert.pem`).
pub fn make_certs(dir: &Path, ip: &str) {
    require_tool("openssl");
    let openssl = |args: &[&str]| {
        let o = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(o.status.success(), "openssl {args:?}: {o:?}");
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    for ca in ["ca", "rogue-ca"] {
        let mut a = vec!["req", "-x509", "-days", "2", "-subj", "/CN=test-ca"];
        a.extend(ec);
        let (key, out) = (format!("{ca}-key.pem"), format!("{ca}.pem"));
        a.extend(["-keyout", &key, "-out", &out]);
        openssl(&a);
    }
    std::fs::write(
        dir.join("server.cnf"),
        // Client too: a server (etcd's JSON gateway) may dial itself with its own.
        format!("subjectAltName=IP:{ip}\nextendedKeyUsage=serverAuth,clientAuth\n"),
    )
    .unwrap();
    std::fs::write(dir.join("client.cnf"), "extendedKeyUsage=clientAuth\n").unwrap();
    for (name, ca, ext) in [
        ("server", "ca", "server.cnf"),
        ("client", "ca", "client.cnf"),
        ("rogue", "rogue-ca", "client.cnf"),
    ] {
        let (key, csr, cert) = (
            format!("{name}-key.pem"),
            format!("{name}.csr"),
            format!("{name}-cert.pem"),
        );
        let mut a = vec!["req", "-subj", "/CN=ketch-test"];
        a.extend(ec);
        a.extend(["-keyout", &key, "-out", &csr]);
        openssl(&a);
        let (ca_cert, ca_key) = (format!("{ca}.pem"), format!("{ca}-key.pem"));
        openssl(&[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            &csr,
            "-CA",
            &ca_cert,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-extfile",
            ext,
            "-out",
            &cert,
        ]);
    }
}

/// A daemon on a socket in the root's directory, killed when dropped.
pub struct Daemon {
    pub child: std::process::Child,
    pub socket: PathBuf,
}

impl Daemon {
    /// Starts one on this root, at `ketch.sock` in the root's directory.
    pub fn start(r: &Root) -> Daemon {
        Daemon::start_with(r, |_| {})
    }

    /// [`Daemon::start`], with the daemon's command changed by `configure` first.
    pub fn start_with(r: &Root, configure: impl FnOnce(&mut Command)) -> Daemon {
        Daemon::start_full(r, configure, &[])
    }

    /// [`Daemon::start_with`], with `daemon_args` after the socket (more `-H`, TLS).
    pub fn start_full(
        r: &Root,
        configure: impl FnOnce(&mut Command),
        daemon_args: &[String],
    ) -> Daemon {
        let socket = r.dir.path().join("ketch.sock");
        let mut cmd = r.cmd();
        configure(&mut cmd);
        cmd.args(["daemon", "-H", &format!("unix://{}", socket.display())])
            .args(daemon_args)
            .stderr(Stdio::null());
        // Gone with the test even when it fails in a way that skips the drop.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the daemon did not come up"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Daemon { child, socket }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The real Docker CLI against this daemon (a configuration directory of its own).
    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .env(
                "DOCKER_CONFIG",
                self.socket.parent().unwrap().join("docker-config"),
            )
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

/// The one file in `dir` (a built package: a wheel, a tarball); `what` says what makes it.
pub fn only_file_in(dir: &Path, what: &str) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    match found.as_slice() {
        [one] => one.clone(),
        _ => panic!("{} should hold one file: {what}", dir.display()),
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `examples/c/demo.c` built into `dir` with its Makefile: (shared, static).
pub fn build_c_demo(dir: &Path) -> (PathBuf, PathBuf) {
    let lib = target_dir().join("debug");
    for f in ["libengine.so", "libengine.a"] {
        assert!(
            lib.join(f).exists(),
            "{f} is missing: run `cargo build --workspace` first"
        );
    }
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/c");
    let o = Command::new("make")
        .arg("-C")
        .arg(&examples)
        .arg(format!("OUT={}", dir.display()))
        .arg(format!("LIBDIR={}", lib.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "make: {o:?}");
    (dir.join("demo"), dir.join("demo-static"))
}

/// Runs `cmd` to its end and returns its output; after `secs` it is killed with its whole
/// process group (a daemon or test runner it started too) and the test fails with what it
/// printed: a hang guard for a suite run as one command, not a timing claim.
pub fn output_within(cmd: &mut Command, secs: u64) -> Output {
    use std::os::unix::process::CommandExt;
    let child = cmd
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let group = child.id() as i32;
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let guard = std::thread::spawn(move || {
        let late = finished
            .recv_timeout(std::time::Duration::from_secs(secs))
            .is_err();
        if late {
            unsafe { libc::kill(-group, libc::SIGKILL) };
        }
        late
    });
    let o = child.wait_with_output().unwrap();
    let _ = done.send(());
    assert!(
        !guard.join().unwrap(),
        "{cmd:?} did not end within {secs} s; it printed:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// The state roots a suite run as one command (pytest, `node --test`) makes below `dir`:
/// on drop, the containers left on them are removed, what is still mounted below `dir`
/// comes off, the roots go, and an open of a root made for it sweeps the bridges they made
/// for themselves. A suite its hang guard killed cleans up nothing itself. Declare it
/// after that `Root`, so that it goes first.
pub struct RootsBelow {
    dir: PathBuf,
    bridge: String,
}

impl RootsBelow {
    pub fn new(r: &Root, dir: &Path) -> RootsBelow {
        RootsBelow {
            dir: dir.to_path_buf(),
            bridge: r.bridge.clone(),
        }
    }
}

/// Directories below `dir` (not following links, a few levels down) that are state roots.
fn state_roots(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    if dir.join("ketch.db").is_file() {
        out.push(dir.to_path_buf());
        return;
    }
    if depth == 0 {
        return;
    }
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            state_roots(&e.path(), depth - 1, out);
        }
    }
}

impl Drop for RootsBelow {
    fn drop(&mut self) {
        let mut roots = Vec::new();
        state_roots(&self.dir, 4, &mut roots);
        for root in &roots {
            let ketch = || {
                let mut c = Command::new(ketch_bin());
                c.arg("--root")
                    .arg(root)
                    .env_remove("KETCH_ROOT")
                    .env("KETCH_BRIDGE", &self.bridge)
                    .env("KETCH_IP_FORWARD", "false")
                    .stdin(Stdio::null());
                c
            };
            remove_containers(ketch);
            let _ = ketch().args(["network", "prune", "-f"]).output();
        }
        unmount_below(&self.dir);
        // The roots go, and with them the bridges each made for itself: removed by the
        // next open of a root, here one made for it and gone after.
        for root in &roots {
            let _ = std::fs::remove_dir_all(root);
        }
        let sweeper = self.dir.join(".sweep");
        let _ = Command::new(ketch_bin())
            .arg("--root")
            .arg(&sweeper)
            .args(["network", "prune", "-f"])
            .env_remove("KETCH_ROOT")
            .env("KETCH_IP_FORWARD", "false")
            .stdin(Stdio::null())
            .output();
        let _ = std::fs::remove_dir_all(&sweeper);
    }
}
