//! `start`: the container's network prepared, its monitor started, and what a start that
//! failed or a process that crashed left in the bundles tidied.

use super::*;

impl Containers<'_> {
    /// Starts a container's task. Detached: returns once it runs (or failed to start), with
    /// the task's monitor left running. Attached: the monitor shares this process's stdio
    /// and this returns the container's exit status when it ends.
    pub fn start(&self, name: &str, attach: bool, stdin: bool) -> crate::Result<i32> {
        self.start_with(name, attach, stdin, &|_| {})
    }

    /// [`Self::start`], telling `on_spawn` the monitor's PID as soon as it runs,
    /// so that a front door can pass signals on to it.
    pub fn start_with(
        &self,
        name: &str,
        attach: bool,
        stdin: bool,
        on_spawn: &dyn Fn(u32),
    ) -> crate::Result<i32> {
        let mode = if attach {
            ShimMode::Attached {
                stdout: true,
                stderr: true,
            }
        } else {
            ShimMode::Detached
        };
        self.start_task(name, mode, stdin, on_spawn)
    }

    /// [`Containers::start_with`] attached to some of the output streams only (`run -a`):
    /// `stdout` and `stderr` say which reach this process's; the log keeps both.
    pub fn start_attached_to(
        &self,
        name: &str,
        stdin: bool,
        stdout: bool,
        stderr: bool,
        on_spawn: &dyn Fn(u32),
    ) -> crate::Result<i32> {
        self.start_task(name, ShimMode::Attached { stdout, stderr }, stdin, on_spawn)
    }

    /// Starts a container's task detached, its output also copied to `stream` (in Docker's
    /// multiplexed frames when `framed`) and, with `stdin`, `stream` read as its input: the
    /// daemon's end of an attached client's connection. Returns once the task runs; the
    /// stream ends when the task does.
    pub fn start_streaming(
        &self,
        name: &str,
        stream: OwnedFd,
        stdin: bool,
        framed: bool,
    ) -> crate::Result<()> {
        self.start_task(name, ShimMode::Stream { stream, framed }, stdin, &|_| {})
            .map(|_| ())
    }

    /// Sets the terminal size of a container started with a terminal and a stream.
    pub fn resize(&self, name: &str, rows: u16, cols: u16) -> crate::Result<()> {
        let c = self.get(name)?;
        if !c.is_running() {
            return Err(ContainerError::Conflict {
                reason: format!("container {} is not running", c.record.id),
            }
            .into());
        }
        let path = c.bundle.join("winsize");
        let tmp = c.bundle.join(".winsize.tmp");
        fs::write(&tmp, format!("{rows} {cols}\n"))
            .and_then(|()| fs::rename(&tmp, &path))
            .map_err(io_err("write winsize"))?;
        // The container's monitor reads the size on SIGWINCH.
        if let Ok(fd) = crate::util::pidfd_checked(c.task.shim_pid as i32, c.task.shim_start, None)
        {
            let _ = crate::util::pidfd_signal(fd.as_fd(), libc::SIGWINCH);
        }
        Ok(())
    }

    fn start_task(
        &self,
        name: &str,
        mode: ShimMode,
        stdin: bool,
        on_spawn: &dyn Fn(u32),
    ) -> crate::Result<i32> {
        let attach = !matches!(mode, ShimMode::Detached);
        let c = self.get(name)?;
        match c.status {
            Status::Running | Status::Paused | Status::Restarting => {
                if attach {
                    return Err(ContainerError::Conflict {
                        reason: format!("container {} is already running", c.record.id),
                    }
                    .into());
                }
                return Ok(0);
            }
            Status::Created | Status::Exited => {}
        }
        let shim = self.shim()?;
        let _ = fs::remove_file(c.bundle.join("stop-requested"));
        let _ = fs::remove_file(c.bundle.join("state.json"));
        // Started here again: no move under way has it.
        let _ = fs::remove_file(c.bundle.join(super::moving::send::MARK));
        self.prepare_network(&c)?;
        let started = self.spawn_shim(&c, &shim, mode, stdin, on_spawn);
        if started.is_err() {
            let _ = self.networks().release_endpoints(&c.record.id);
        }
        started
    }

    /// What the container's network needs before its process starts: on a bridge network,
    /// its namespace, address and veth pair; with `container:X`, X's namespace.
    fn prepare_network(&self, c: &Container) -> crate::Result<()> {
        match NetMode::of(&c.record.config) {
            NetMode::Bridge(_) => {
                let attachments = c.record.config.attachments();
                let eps =
                    self.attach_networks(&c.record.id, &attachments, &c.record.config.publish)?;
                self.write_dns_list(&c.record.id, &c.bundle)?;
                // The monitor holds the host ports while the container runs (so nothing else
                // takes them) and withdraws them when it stops.
                let ports = c.bundle.join("ports.json");
                let down = c.bundle.join("ports-down.json");
                let first = eps.first();
                if let Some(ep) = first.filter(|ep| !ep.ports.is_empty()) {
                    let rec = self.networks().find(&ep.network_id)?;
                    fs::write(&ports, serde_json::to_vec(&ep.ports).unwrap_or_default())
                        .map_err(io_err("write ports.json"))?;
                    let commands = crate::network::firewall::withdraw_commands(
                        &rec.bridge,
                        ep.ip,
                        ep.ip6,
                        &ep.ports,
                    );
                    fs::write(&down, serde_json::to_vec(&commands).unwrap_or_default())
                        .map_err(io_err("write ports-down.json"))?;
                } else {
                    let _ = fs::remove_file(&ports);
                    let _ = fs::remove_file(&down);
                }
                let hostname = c.record.config.hostname.clone().unwrap_or_default();
                let (link_hosts, link_env) = self.link_entries(c, &eps)?;
                fs::write(
                    c.bundle.join("hosts"),
                    hosts_file(
                        &hostname,
                        first.map(|ep| ep.ip),
                        first.and_then(|ep| ep.ip6),
                        &c.record.config.extra_hosts,
                    ) + &link_hosts,
                )
                .map_err(io_err("write hosts"))?;
                // Only a container with links has their variables to write: no spec is
                // read and written on every start (`rm --link` takes the old ones away).
                if !c.record.config.links.is_empty() {
                    self.set_link_env(c, &link_env)?;
                }
            }
            // Joined with the other namespaces, below.
            NetMode::Container(_) => {}
            NetMode::None => {
                // A container the engine once gave a namespace of its own (its spec names it)
                // keeps one, with loopback only.
                let spec = fs::read_to_string(c.bundle.join("config.json")).unwrap_or_default();
                let path = self.networks().netns_path(&c.record.id);
                if spec.contains(&path.display().to_string()) {
                    self.attach_networks(&c.record.id, &[], &[])?;
                }
            }
            NetMode::Host => {}
        }
        self.prepare_joins(c)
    }

    /// A container's legacy links as the linked containers run now: their /etc/hosts lines
    /// (address, alias, short ID, name) and the environment Docker gives
    /// (`ALIAS_NAME`, `ALIAS_ENV_*`, `ALIAS_PORT_*`). A linked container must run, on a
    /// network this one is on.
    fn link_entries(
        &self,
        c: &Container,
        eps: &[crate::network::Endpoint],
    ) -> crate::Result<(String, Vec<String>)> {
        let mut hosts = String::new();
        let mut env = Vec::new();
        for l in &c.record.config.links {
            let (name, alias) =
                options::parse_link(l).map_err(|reason| ContainerError::Invalid { reason })?;
            let o = self.get(&name)?;
            let refuse = |why: &str| -> crate::Error {
                ContainerError::Conflict {
                    reason: format!(
                        "Cannot link to {why} container: /{name} AS /{}/{alias}",
                        c.record.name
                    ),
                }
                .into()
            };
            if !o.is_running() {
                return Err(refuse("a non running"));
            }
            let theirs = self.networks().container_endpoints(&o.record.id)?;
            let Some(ep) = theirs
                .iter()
                .find(|t| eps.iter().any(|e| e.network_id == t.network_id))
            else {
                return Err(refuse("a"));
            };
            let ip = ep.ip;
            hosts.push_str(&format!(
                "{ip}\t{alias} {} {}\n",
                &o.record.id[..12],
                o.record.name
            ));
            let prefix = alias.to_ascii_uppercase().replace('-', "_");
            env.push(format!("{prefix}_NAME=/{}/{alias}", c.record.name));
            for e in &o.record.config.env {
                if let Some((k, v)) = e.split_once('=')
                    && k != "HOME"
                    && k != "PATH"
                {
                    env.push(format!("{prefix}_ENV_{k}={v}"));
                }
            }
            let mut ports: Vec<(u16, String)> = o
                .record
                .config
                .expose
                .iter()
                .filter_map(|p| {
                    let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
                    Some((port.parse().ok()?, proto.to_string()))
                })
                .chain(
                    o.record
                        .config
                        .publish
                        .iter()
                        .map(|p| (p.container_port, p.proto.clone())),
                )
                .collect();
            ports.sort();
            ports.dedup();
            if let Some((port, proto)) = ports.first() {
                env.push(format!("{prefix}_PORT={proto}://{ip}:{port}"));
            }
            for (port, proto) in &ports {
                let key = format!("{prefix}_PORT_{port}_{}", proto.to_ascii_uppercase());
                env.push(format!("{key}={proto}://{ip}:{port}"));
                env.push(format!("{key}_ADDR={ip}"));
                env.push(format!("{key}_PORT={port}"));
                env.push(format!("{key}_PROTO={proto}"));
            }
        }
        Ok((hosts, env))
    }

    /// Puts the environment of a container's links in its spec, in place of the last
    /// start's (named in the `io.ketch.links.env` annotation).
    pub(super) fn set_link_env(&self, c: &Container, env: &[String]) -> crate::Result<()> {
        let mut spec = read_spec(&c.bundle)?;
        let before: Vec<String> = spec["annotations"]["io.ketch.links.env"]
            .as_str()
            .unwrap_or_default()
            .split(',')
            .filter(|k| !k.is_empty())
            .map(str::to_string)
            .collect();
        if before.is_empty() && env.is_empty() {
            return Ok(());
        }
        let key = |e: &str| e.split('=').next().unwrap_or_default().to_string();
        let mut all: Vec<String> = spec["process"]["env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e.as_str())
            .filter(|e| !before.contains(&key(e)))
            .map(str::to_string)
            .collect();
        // The container's own variables win over a link's of the same name.
        let mut keys = Vec::new();
        for e in env {
            if !all.iter().any(|x| key(x) == key(e)) {
                all.push(e.clone());
                keys.push(key(e));
            }
        }
        spec["process"]["env"] = serde_json::json!(all);
        spec["annotations"]["io.ketch.links.env"] = serde_json::json!(keys.join(","));
        write_spec(&c.bundle, &spec)?;
        Ok(())
    }

    /// Namespaces shared with another container (`--network`, `--pid`, `--ipc` of
    /// `container:X`): the spec names X's process of this start, and the monitor takes each
    /// only from that very process (its start time, in X's cgroup).
    fn prepare_joins(&self, c: &Container) -> crate::Result<()> {
        let cfg = &c.record.config;
        let net = match NetMode::of(cfg) {
            NetMode::Container(other) => Some(other),
            _ => None,
        };
        let joins: Vec<(&str, String)> = [
            ("network", net),
            (
                "pid",
                options::mode_container(&cfg.pid_mode).map(str::to_string),
            ),
            (
                "ipc",
                options::mode_container(&cfg.ipc_mode).map(str::to_string),
            ),
        ]
        .into_iter()
        .filter_map(|(kind, other)| other.map(|o| (kind, o)))
        .collect();
        if joins.is_empty() {
            return Ok(());
        }
        let mut spec = read_spec(&c.bundle)?;
        for (kind, other) in joins {
            let o = self.get(&other)?;
            if !o.is_running() || o.task.pid <= 0 {
                let what = if kind == "network" { "network" } else { kind };
                return Err(ContainerError::Conflict {
                    reason: format!(
                        "cannot join {what} namespace of a non running container: {other}"
                    ),
                }
                .into());
            }
            // Only a donor that offered its IPC namespace and /dev/shm, as Docker has it
            // (a private one's /dev/shm is its alone).
            if kind == "ipc" && !options::ipc_shareable(&o.record.config.ipc_mode) {
                return Err(ContainerError::Invalid {
                    reason: format!(
                        "container {other}: non-shareable IPC (hint: use IpcMode:shareable for the donor container)"
                    ),
                }
                .into());
            }
            let short = if kind == "network" { "net" } else { kind };
            if let Some(nss) = spec["linux"]["namespaces"].as_array_mut() {
                for ns in nss.iter_mut().filter(|ns| ns["type"] == kind) {
                    ns["path"] = serde_json::json!(format!("/proc/{}/ns/{short}", o.task.pid));
                }
            }
            spec["annotations"][format!("io.ketch.join.{kind}.start")] =
                serde_json::json!(task_start(&o).to_string());
            spec["annotations"][format!("io.ketch.join.{kind}.owner")] =
                serde_json::json!(o.record.id);
        }
        write_spec(&c.bundle, &spec)?;
        Ok(())
    }

    fn spawn_shim(
        &self,
        c: &Container,
        shim: &std::path::Path,
        mode: ShimMode,
        stdin: bool,
        on_spawn: &dyn Fn(u32),
    ) -> crate::Result<i32> {
        let mut cmd = Command::new(shim);
        match &mode {
            ShimMode::Detached => {}
            ShimMode::Attached { stdout, stderr } => {
                cmd.arg("--attach");
                if !stdout {
                    cmd.stdout(Stdio::null());
                }
                if !stderr {
                    cmd.stderr(Stdio::null());
                }
            }
            ShimMode::Stream { stream, framed } => {
                cmd.arg("--stream");
                if *framed {
                    cmd.arg("--framed");
                }
                let dup = |f: &OwnedFd| f.try_clone().map_err(io_err("duplicate the stream"));
                cmd.stdin(Stdio::from(dup(stream)?))
                    .stdout(Stdio::from(dup(stream)?))
                    .stderr(Stdio::from(dup(stream)?));
            }
        }
        if stdin {
            cmd.arg("--stdin");
        }
        cmd.arg(&c.bundle);
        if let ShimMode::Stream { .. } = mode {
            spawn_reporting(cmd, shim, true, false)?;
            self.set_running(&c.record.id, true)?;
            self.event(&c.record, "start", &[]);
            return Ok(0);
        }
        if let ShimMode::Attached { .. } = mode {
            self.set_running(&c.record.id, true)?;
            self.event(&c.record, "start", &[]);
            let mut child = cmd
                .spawn()
                .map_err(io_err(format!("run {}", shim.display())))?;
            on_spawn(child.id());
            let status = child.wait().map_err(io_err("wait for ketch-shim"))?;
            let code = status.code().unwrap_or(125);
            // Its monitor let go of the namespace; the addresses go too, unless a start
            // since has made the container new ones.
            self.release_unused(&c.record.id)?;
            let c = self.get(&c.record.id)?;
            if !c.task.error.is_empty() && c.task.pid == 0 && c.task.started_at.is_empty() {
                return Err(ContainerError::Start {
                    code: c.task.exit_code,
                    message: c.task.error,
                }
                .into());
            }
            return Ok(code);
        }
        spawn_reporting(cmd, shim, true, true)?;
        self.set_running(&c.record.id, true)?;
        self.event(&c.record, "start", &[]);
        Ok(0)
    }

    /// Removes container directories no record claims: staging directories of dead
    /// processes. Runs under the write lock, so a directory being renamed into place by a
    /// live process is either still staging or already recorded.
    pub(crate) fn cleanup_bundles(&self) -> crate::Result<()> {
        let dir = self.containers_dir();
        let Ok(entries) = fs::read_dir(&dir) else {
            return Ok(());
        };
        let names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        let doomed = self.st.db.write(|tx| {
            let mut doomed = Vec::new();
            for n in &names {
                let orphan = if n.starts_with("rm-") {
                    true
                } else if let Some(rest) = n.strip_prefix("tmp-") {
                    !crate::util::maker_alive(rest)
                } else {
                    let known: i64 = tx.query_row(
                        "SELECT COUNT(*) FROM containers WHERE id = ?1",
                        params![n],
                        |r| r.get(0),
                    )?;
                    known == 0
                };
                if orphan {
                    doomed.push(dir.join(n));
                }
            }
            Ok::<_, crate::Error>(doomed)
        })?;
        for d in doomed {
            let _ = fs::remove_dir_all(d);
        }
        Ok(())
    }
}
