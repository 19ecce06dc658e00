//! `create`: a container's writable snapshot, its bundle (the OCI spec, hosts and resolver
//! files, its mounts resolved) and its record.

use super::*;

const NAME_ADJ: &[&str] = &[
    "brave", "calm", "clever", "eager", "fervent", "gentle", "happy", "jolly", "keen", "lucid",
    "merry", "nifty", "quiet", "sharp", "swift", "vivid", "wise", "zen", "bold", "bright",
];

const NAME_NOUN: &[&str] = &[
    "albatross",
    "beacon",
    "cutter",
    "dinghy",
    "ensign",
    "frigate",
    "galley",
    "harbor",
    "inlet",
    "jetty",
    "keel",
    "lantern",
    "mast",
    "narwhal",
    "oar",
    "pilot",
    "quay",
    "rudder",
    "sloop",
    "tiller",
];

/// Docker's kind of made-up name: `adjective_noun`.
fn random_name() -> String {
    let b = crate::util::random_hex(2);
    let v = u16::from_str_radix(&b, 16).unwrap_or(0) as usize;
    format!(
        "{}_{}",
        NAME_ADJ[v % NAME_ADJ.len()],
        NAME_NOUN[(v / NAME_ADJ.len()) % NAME_NOUN.len()]
    )
}

/// A container's /etc/hosts: loopback names, and its hostname on its address (on loopback
/// while it has none).
pub(super) fn hosts_file(
    hostname: &str,
    ip: Option<std::net::Ipv4Addr>,
    ip6: Option<std::net::Ipv6Addr>,
    extra: &[String],
) -> String {
    let own = ip.map_or_else(|| "127.0.1.1".to_string(), |ip| ip.to_string());
    let mut s = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n".to_string();
    // `--add-host NAME:IP`, as Docker writes them: before the container's own line.
    for e in extra {
        if let Some((name, ip)) = e.split_once(':') {
            s.push_str(&format!("{ip}\t{name}\n"));
        }
    }
    s.push_str(&format!("{own}\t{hostname}\n"));
    if let Some(ip6) = ip6 {
        s.push_str(&format!("{ip6}\t{hostname}\n"));
    }
    s
}

/// The host's name servers that mean something from a container: not loopback ones.
fn host_nameservers() -> Vec<String> {
    fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.starts_with("127.") && s != "::1")
        .collect()
}

/// The host's resolv.conf without loopback name servers, which would mean nothing inside
/// the container's own network namespace.
///
/// On a user-defined network the container asks its embedded server, 127.0.0.11, as in
/// Docker; `--dns` servers replace the host's.
///
/// `--dns-search` replaces the host's `search` (and `domain`) lines, `.` leaving none;
/// `--dns-option` replaces its `options`.
fn resolv_conf(embedded: bool, dns: &[String], search: &[String], options: &[String]) -> String {
    let host = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut kept: Vec<String> = host
        .lines()
        .filter(|l| {
            let l = l.trim();
            let word = l.split_whitespace().next().unwrap_or("");
            if !search.is_empty() && (word == "search" || word == "domain") {
                return false;
            }
            if !options.is_empty() && word == "options" {
                return false;
            }
            !l.starts_with("nameserver")
                || (!embedded && dns.is_empty() && !l.contains("127.") && !l.contains("::1"))
        })
        .map(str::to_string)
        .collect();
    let search: Vec<&str> = search
        .iter()
        .map(String::as_str)
        .filter(|s| *s != ".")
        .collect();
    if !search.is_empty() {
        kept.push(format!("search {}", search.join(" ")));
    }
    let mut options = options.to_vec();
    if embedded && !options.iter().any(|o| o.starts_with("ndots:")) {
        options.push("ndots:0".into());
    }
    if !options.is_empty() {
        kept.push(format!("options {}", options.join(" ")));
    }
    if embedded {
        kept.insert(0, "nameserver 127.0.0.11".into());
    } else {
        for (i, d) in dns.iter().enumerate() {
            kept.insert(i, format!("nameserver {d}"));
        }
    }
    let mut s = kept.join("\n");
    s.push('\n');
    s
}

impl Containers<'_> {
    /// Creates a container from an image: its writable snapshot, its bundle, its record.
    pub fn create(&self, opts: &CreateOptions) -> crate::Result<Container> {
        self.create_as(opts, None)
    }

    /// [`Containers::create`], with the ID given (a moved container keeps its own where
    /// it is free) instead of a new one.
    pub(crate) fn create_as(
        &self,
        opts: &CreateOptions,
        id: Option<&str>,
    ) -> crate::Result<Container> {
        if let Some(n) = &opts.name
            && !crate::util::valid_name(n)
        {
            return Err(ContainerError::BadName { name: n.clone() }.into());
        }
        if let Some(id) = id
            && !(id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(ContainerError::Invalid {
                reason: format!("{id:?} is not a container ID"),
            }
            .into());
        }
        let lease = Lease::new(&self.st.db)?;
        let res = self.create_leased(&lease, opts, id);
        let released = self.images().release(lease);
        let c = res?;
        released?;
        Ok(c)
    }

    fn create_leased(
        &self,
        lease: &Lease,
        opts: &CreateOptions,
        id: Option<&str>,
    ) -> crate::Result<Container> {
        opts.validate()
            .map_err(|reason| ContainerError::Invalid { reason })?;
        for mode in [&opts.pid_mode, &opts.ipc_mode] {
            if let Some(other) = options::mode_container(mode) {
                self.find(other)?;
            }
        }
        for a in &opts.extra_networks {
            self.networks().find(&a.network)?;
        }
        for l in &opts.links {
            let (name, _) =
                options::parse_link(l).map_err(|reason| ContainerError::Invalid { reason })?;
            self.find(&name)
                .map_err(|_| ContainerError::NotFound { name: name.clone() })?;
        }
        let (image, top, config_raw) = {
            let (image, layers) = self.st.db.read(|tx| {
                let image = crate::image::resolve(tx, &opts.image)?.image;
                let layers = crate::image::image_layers(tx, &image.id)?;
                Ok::<_, crate::Error>((image, layers))
            })?;
            let raw: serde_json::Value =
                serde_json::from_slice(&self.st.content.read(&image.id, 8 << 20)?)
                    .map_err(|e| crate::image::malformed("image config", e))?;
            (image, layers.last().map(|l| l.chain_id.to_string()), raw)
        };
        let cfg = config_raw.get("config").cloned().unwrap_or_default();
        let strings = |v: Option<&serde_json::Value>| -> Vec<String> {
            v.and_then(|v| v.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let entrypoint = match &opts.entrypoint {
            Some(e) => e.clone(),
            None => strings(cfg.get("Entrypoint")),
        };
        let cmd = if !opts.cmd.is_empty() {
            opts.cmd.clone()
        } else if opts.entrypoint.is_some() {
            vec![]
        } else {
            strings(cfg.get("Cmd"))
        };
        let args: Vec<String> = entrypoint.iter().chain(&cmd).cloned().collect();
        if args.is_empty() {
            return Err(ContainerError::Invalid {
                reason: "no command specified".into(),
            }
            .into());
        }
        let id = id.map_or_else(|| crate::util::random_hex(32), str::to_string);
        let generated = opts.name.is_none();
        let name = match &opts.name {
            Some(n) => n.clone(),
            None => random_name(),
        };
        // Env: image's, then the user's, later keys replacing earlier ones.
        let mut env: Vec<String> = strings(cfg.get("Env"));
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.insert(
                0,
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            );
        }
        for e in &opts.env {
            let key = e.split('=').next().unwrap_or("");
            env.retain(|x| x.split('=').next() != Some(key));
            env.push(e.clone());
        }
        if opts.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
            env.push("TERM=xterm".into());
        }
        let hostname = opts
            .hostname
            .clone()
            .unwrap_or_else(|| id[..12].to_string());
        env.retain(|x| !x.starts_with("HOSTNAME="));
        env.push(format!("HOSTNAME={hostname}"));
        let cwd = opts
            .workdir
            .clone()
            .or_else(|| {
                cfg.get("WorkingDir")
                    .and_then(|w| w.as_str())
                    .filter(|w| !w.is_empty())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| "/".into());
        let user = opts.user.clone().or_else(|| {
            cfg.get("User")
                .and_then(|u| u.as_str())
                .filter(|u| !u.is_empty())
                .map(str::to_string)
        });
        let net_mode = NetMode::of(opts);
        // On a user-defined network, the container asks its monitor for names.
        let mut embedded_dns = false;
        match &net_mode {
            NetMode::Bridge(n) => {
                let rec = self.networks().find(n)?;
                embedded_dns = !rec.predefined();
                if let Some(first) = opts.attachments().first() {
                    crate::network::Given::of(first)?;
                }
                if (opts.ip.is_some() || opts.ip6.is_some()) && rec.predefined() {
                    return Err(ContainerError::Invalid {
                        reason:
                            "user specified IP address is supported on user defined networks only"
                                .into(),
                    }
                    .into());
                }
                rec.check_ip6(opts.ip6.is_some())?;
            }
            NetMode::Container(other) => {
                self.find(other)?;
            }
            NetMode::Host | NetMode::None => {
                if opts.ip.is_some() || opts.ip6.is_some() {
                    return Err(ContainerError::Invalid {
                        reason:
                            "user specified IP address is supported on user defined networks only"
                                .into(),
                    }
                    .into());
                }
            }
        }
        let mut publish = opts.publish.clone();
        // The image's exposed ports and the container's own (`--expose`), ranges spread.
        let mut exposed: Vec<(u16, String)> = Vec::new();
        let image_exposed = cfg
            .get("ExposedPorts")
            .and_then(|e| e.as_object())
            .map(|o| o.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default();
        for key in image_exposed.iter().chain(&opts.expose) {
            let (ports, proto) = key.split_once('/').unwrap_or((key, "tcp"));
            let (a, b) = ports.split_once('-').unwrap_or((ports, ports));
            let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>()) else {
                continue;
            };
            for port in a..=b {
                if !exposed.iter().any(|(p, pr)| *p == port && pr == proto) {
                    exposed.push((port, proto.to_string()));
                }
            }
        }
        if opts.publish_all {
            for (port, proto) in &exposed {
                if !publish
                    .iter()
                    .any(|p| p.container_port == *port && p.proto == *proto)
                {
                    publish.push(crate::network::firewall::PortMap {
                        proto: proto.clone(),
                        host_ip: None,
                        host_port: 0,
                        container_port: *port,
                    });
                }
            }
        }
        match &net_mode {
            NetMode::Container(_) if !publish.is_empty() => {
                return Err(ContainerError::Invalid {
                    reason:
                        "conflicting options: port publishing and the container type network mode"
                            .into(),
                }
                .into());
            }
            // As Docker: published ports mean nothing without a network of its own.
            NetMode::Host | NetMode::None => publish.clear(),
            _ => {}
        }
        if let Some(ip) = &opts.ip
            && ip.parse::<std::net::Ipv4Addr>().is_err()
        {
            return Err(ContainerError::Invalid {
                reason: format!("invalid IPv4 address: {ip}"),
            }
            .into());
        }
        let user_mounts = self.resolve_mounts(opts, &cfg)?;
        // The record keeps the configuration in effect, image defaults merged, as Docker's
        // inspect shows it.
        let mut opts = opts.clone();
        opts.user = user;
        opts.name = Some(name.clone());
        opts.hostname = Some(hostname.clone());
        opts.publish = publish;
        opts.mounts = user_mounts;
        // HOSTNAME is set at run time, as Docker does, not part of the configuration.
        opts.env = env
            .iter()
            .filter(|e| !e.starts_with("HOSTNAME="))
            .cloned()
            .collect();
        opts.cmd = cmd;
        opts.entrypoint = Some(entrypoint);
        // The IPC mode in effect, as Docker records its default: a private namespace that
        // no other container joins (`shareable` lets them).
        if opts.ipc_mode.as_deref().is_none_or(str::is_empty) {
            opts.ipc_mode = Some("private".into());
        }
        opts.expose = exposed
            .iter()
            .map(|(port, proto)| format!("{port}/{proto}"))
            .collect();
        // The image's stop signal and health check, as Docker merges them into the
        // container's configuration.
        if opts.stop_signal.is_none() {
            opts.stop_signal = cfg
                .get("StopSignal")
                .and_then(|s| s.as_str())
                .filter(|s| !s.is_empty())
                .map(str::to_string);
        }
        if let Some(image_health) = cfg
            .get("Healthcheck")
            .filter(|h| !h.is_null())
            .and_then(|h| serde_json::from_value::<super::Healthcheck>(h.clone()).ok())
        {
            let mut h = opts.healthcheck.clone().unwrap_or_default();
            if h.test.is_empty() {
                h.test = image_health.test;
            }
            for (mine, theirs) in [
                (&mut h.interval, image_health.interval),
                (&mut h.timeout, image_health.timeout),
                (&mut h.retries, image_health.retries),
                (&mut h.start_period, image_health.start_period),
                (&mut h.start_interval, image_health.start_interval),
            ] {
                if *mine == 0 {
                    *mine = theirs;
                }
            }
            opts.healthcheck = Some(h);
        }
        if opts.workdir.is_none() && cwd != "/" {
            opts.workdir = Some(cwd.clone());
        }

        // The bundle is written under a temp name naming this process, and renamed into
        // place in the transaction that records the container: a crash leaves either a
        // temp directory of a dead process or a recorded container, never an orphan that
        // looks like a container.
        let bundle = self.containers_dir().join(&id);
        let pid = std::process::id();
        let staging = self.containers_dir().join(format!(
            "tmp-{pid}-{}-{id}",
            crate::util::process_start_time(pid).unwrap_or(0)
        ));
        fs::create_dir_all(&staging).map_err(io_err(format!("create {}", staging.display())))?;
        let key = format!("container-{id}");
        lease.add(&self.st.db, Resource::Snapshot(key.clone()))?;
        let result = (|| -> crate::Result<()> {
            let mounts = self.st.snapshots.prepare(&key, top.as_deref())?;
            self.copy_up(&opts.mounts, &mounts)?;
            let user_mounts = self.spec_mounts(&opts.mounts)?;
            fs::write(staging.join("hostname"), format!("{hostname}\n"))
                .map_err(io_err("write hostname"))?;
            fs::write(
                staging.join("hosts"),
                hosts_file(&hostname, None, None, &opts.extra_hosts),
            )
            .map_err(io_err("write hosts"))?;
            fs::write(
                staging.join("resolv.conf"),
                resolv_conf(embedded_dns, &opts.dns, &opts.dns_search, &opts.dns_options),
            )
            .map_err(io_err("write resolv.conf"))?;
            let nofile = {
                let mut l = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) };
                l.rlim_max.min(1 << 20)
            };
            let devices =
                spec::devices(&opts).map_err(|reason| ContainerError::Invalid { reason })?;
            let seccomp = spec::seccomp(&opts, &spec::capabilities(&opts))
                .map_err(|reason| ContainerError::Invalid { reason })?;
            let cx = spec::SpecContext {
                devices,
                seccomp,
                shell: cfg
                    .get("Shell")
                    .and_then(|s| serde_json::from_value::<Vec<String>>(s.clone()).ok())
                    .filter(|s| !s.is_empty()),
                id: &id,
                rootfs_path: bundle.join("rootfs").display().to_string(),
                rootfs_mounts: serde_json::to_value(&mounts).unwrap_or_default(),
                hostname: hostname.clone(),
                args: args.clone(),
                env,
                cwd,
                bundle: bundle.display().to_string(),
                nofile,
                netns: match &net_mode {
                    NetMode::Bridge(_) => {
                        Some(self.networks().netns_path(&id).display().to_string())
                    }
                    // Filled in at each start, with the other container's process then.
                    NetMode::Container(_) => Some("/proc/self/ns/net".into()),
                    NetMode::Host | NetMode::None => None,
                },
                // The list of its networks' records files, kept by the engine.
                dns_records: net_mode
                    .is_bridge()
                    .then(|| bundle.join("dns.list").display().to_string()),
                user_mounts,
                dns_upstream: if opts.dns.is_empty() {
                    host_nameservers()
                } else {
                    opts.dns.clone()
                },
            };
            let spec_json = spec::build(&opts, &cx);
            // The OCI model checks the document is a valid runtime spec.
            let spec: oci_spec::runtime::Spec =
                serde_json::from_value(spec_json).map_err(|e| ContainerError::Invalid {
                    reason: format!("runtime spec: {e}"),
                })?;
            fs::write(
                staging.join("config.json"),
                serde_json::to_vec_pretty(&spec).unwrap_or_default(),
            )
            .map_err(io_err("write config.json"))?;
            let record = ContainerRecord {
                id: id.clone(),
                name: name.clone(),
                image_id: image.id.to_string(),
                created: crate::db::now(),
                config: opts.clone(),
                path: args[0].clone(),
                args: args[1..].to_vec(),
            };
            self.st.db.write(|tx| {
                let mut record = record.clone();
                let taken = |n: &str| -> rusqlite::Result<Option<String>> {
                    tx.query_row("SELECT id FROM containers WHERE name = ?1", params![n], |r| r.get(0)).optional()
                };
                if let Some(other) = taken(&record.name)? {
                    if !generated {
                        return Err(ContainerError::NameInUse { name: record.name.clone(), id: other }.into());
                    }
                    // A made-up name another container has: make up another, as Docker does.
                    let mut fresh = random_name();
                    for i in 0.. {
                        if taken(&fresh)?.is_none() {
                            break;
                        }
                        fresh = if i < 16 { random_name() } else { format!("{}_{}", random_name(), &id[..6]) };
                    }
                    record.name = fresh.clone();
                    record.config.name = Some(fresh);
                }
                let name = record.name.clone();
                tx.execute(
                    "INSERT INTO containers (id, name, image_id, snapshot_key, created, running, config) VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6)",
                    params![id, name, image.id.to_string(), key, record.created, serde_json::to_string(&record).unwrap_or_default()],
                )?;
                fs::rename(&staging, &bundle).map_err(io_err(format!("create {}", bundle.display())))?;
                Ok::<_, crate::Error>(())
            })
        })();
        if let Err(e) = result {
            let _ = self.st.snapshots.remove(&key);
            let _ = fs::remove_dir_all(&staging);
            return Err(e);
        }
        let c = self.get(&id)?;
        self.event(&c.record, "create", &[]);
        Ok(c)
    }

    /// The mounts a new container gets: `--volumes-from` first, then its own, then an
    /// anonymous volume for each VOLUME of the image nothing else covers. Named volumes that
    /// do not exist are made; anonymous ones get a name.
    fn resolve_mounts(
        &self,
        opts: &CreateOptions,
        image_config: &serde_json::Value,
    ) -> crate::Result<Vec<crate::volume::MountSpec>> {
        use crate::volume::{MountSpec, VolumeCreate};
        let bad = |reason: String| -> crate::Error { ContainerError::Invalid { reason }.into() };
        let mut out: Vec<MountSpec> = Vec::new();
        for from in &opts.volumes_from {
            let (name, mode) = match from.rsplit_once(':') {
                Some((n, m)) if m == "ro" || m == "rw" => (n, Some(m)),
                _ => (from.as_str(), None),
            };
            let other = self.find(name)?;
            for m in other.config.mounts.iter().filter(|m| m.kind != "tmpfs") {
                let mut m = m.clone();
                if let Some(mode) = mode {
                    m.readonly = mode == "ro";
                }
                out.push(m);
            }
        }
        for m in &opts.mounts {
            if !m.target.starts_with('/') || m.target == "/" {
                return Err(bad(format!(
                    "invalid mount config: invalid mount path: '{}' mount path must be absolute and not /",
                    m.target
                )));
            }
            out.retain(|o| o.target != m.target);
            out.push(m.clone());
        }
        if let Some(vols) = image_config.get("Volumes").and_then(|v| v.as_object()) {
            for target in vols.keys() {
                if !out.iter().any(|m| m.target == *target) {
                    out.push(MountSpec {
                        kind: "volume".into(),
                        target: target.clone(),
                        ..Default::default()
                    });
                }
            }
        }
        for m in &mut out {
            match m.kind.as_str() {
                "volume" => {
                    let v = self.volumes().create(&VolumeCreate {
                        name: m.source.clone(),
                        ..Default::default()
                    })?;
                    m.source = v.name;
                }
                "bind" => {
                    if !m.source.starts_with('/') {
                        return Err(bad(format!(
                            "invalid mount config for type \"bind\": invalid mount path: '{}' mount path must be absolute",
                            m.source
                        )));
                    }
                    if !std::path::Path::new(&m.source).exists() {
                        if !m.create_host_path {
                            return Err(bad(format!(
                                "invalid mount config for type \"bind\": bind source path does not exist: {}",
                                m.source
                            )));
                        }
                        fs::create_dir_all(&m.source)
                            .map_err(io_err(format!("create {}", m.source)))?;
                    }
                }
                "tmpfs" => {}
                other => return Err(bad(format!("invalid mount type {other:?}"))),
            }
        }
        Ok(out)
    }

    /// Copies the image's files into the new, empty volumes mounted over them.
    fn copy_up(
        &self,
        mounts: &[crate::volume::MountSpec],
        rootfs: &[crate::mount::Mount],
    ) -> crate::Result<()> {
        let wanted: Vec<&crate::volume::MountSpec> = mounts
            .iter()
            .filter(|m| m.kind == "volume" && !m.nocopy)
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let root = crate::mount::TempMount::new(rootfs, &self.st.scratch)
            .map_err(io_err("mount the container's root file system"))?;
        for m in wanted {
            self.volumes().copy_up(&m.source, root.path(), &m.target)?;
        }
        Ok(())
    }

    /// Runtime-spec entries for a container's volumes, binds and tmpfs mounts.
    pub(super) fn spec_mounts(
        &self,
        mounts: &[crate::volume::MountSpec],
    ) -> crate::Result<Vec<serde_json::Value>> {
        let mut out = Vec::new();
        for m in mounts {
            let propagation = m.propagation.clone().unwrap_or_else(|| "rprivate".into());
            match m.kind.as_str() {
                "tmpfs" => {
                    let mut options = vec!["nosuid".to_string(), "nodev".into(), "noexec".into()];
                    if let Some(size) = m.tmpfs_size {
                        options.push(format!("size={size}"));
                    }
                    if let Some(mode) = m.tmpfs_mode {
                        options.push(format!("mode={mode:o}"));
                    }
                    if m.readonly {
                        options.push("ro".into());
                    }
                    out.push(serde_json::json!({
                        "destination": m.target, "type": "tmpfs", "source": "tmpfs", "options": options,
                    }));
                }
                kind => {
                    let source = if kind == "volume" {
                        self.volumes().source(&m.source)?.display().to_string()
                    } else {
                        m.source.clone()
                    };
                    let mut options = vec!["rbind".to_string(), propagation];
                    options.push(if m.readonly { "ro" } else { "rw" }.into());
                    out.push(serde_json::json!({
                        "destination": m.target, "type": "bind", "source": source, "options": options,
                    }));
                }
            }
        }
        Ok(out)
    }
}
