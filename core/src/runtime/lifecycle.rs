//! A running container's life after its start: kill, wait, stop, pause and unpause, rename,
//! its processes and resource use, and its removal.

use super::*;

impl Containers<'_> {
    /// Sends a signal to the container's main process.
    pub fn kill(&self, name: &str, signal: i32) -> crate::Result<()> {
        let c = self.get(name)?;
        if !matches!(c.status, Status::Running | Status::Paused) || c.task.pid <= 0 {
            return Err(ContainerError::Conflict {
                reason: format!(
                    "Cannot kill container: {}: container {} is not running",
                    name, c.record.id
                ),
            }
            .into());
        }
        let task = crate::util::pidfd_checked(c.task.pid, c.task.pid_start, Some(&c.record.id))
            .map_err(|e| ContainerError::Conflict {
                reason: format!("Cannot kill container: {name}: {e}"),
            })?;
        if signal == libc::SIGKILL || signal == libc::SIGTERM {
            // Signals that end the task also end its restart policy, as `docker kill` does.
            let _ = fs::write(c.bundle.join("stop-requested"), b"");
        }
        crate::util::pidfd_signal(task.as_fd(), signal).map_err(io_err("kill"))?;
        self.event(&c.record, "kill", &[("signal", &signal.to_string())]);
        // As Docker: a SIGKILL returns once the container is dead (it cannot refuse).
        if signal == libc::SIGKILL {
            let _ = self.wait(name, Some(Duration::from_secs(10)));
        }
        Ok(())
    }

    /// Waits until the container is not running; returns its exit status.
    /// An exit its restart policy follows with a restart ends the wait too, as Docker's.
    pub fn wait(&self, name: &str, timeout: Option<Duration>) -> crate::Result<i32> {
        let record = self.find(name)?;
        let start = Instant::now();
        let first = self.refresh(record.clone())?.task.finished_at;
        loop {
            let c = self.refresh(record.clone())?;
            if matches!(c.status, Status::Exited | Status::Created) && c.task.status != "restarting"
            {
                return Ok(c.task.exit_code);
            }
            if c.status == Status::Restarting
                && !c.task.finished_at.is_empty()
                && c.task.finished_at != first
            {
                return Ok(c.task.exit_code);
            }
            if timeout.is_some_and(|t| start.elapsed() > t) {
                return Err(ContainerError::Conflict {
                    reason: "timed out waiting for the container".into(),
                }
                .into());
            }
            wait_for_monitor(&c, Duration::from_millis(100));
        }
    }

    /// The stop signal (`--stop-signal`, the image's STOPSIGNAL, else SIGTERM), then
    /// SIGKILL after `timeout`: when `None`, the container's `--stop-timeout` (negative:
    /// wait for as long as it takes), else 10 s.
    pub fn stop(&self, name: &str, timeout: Option<Duration>) -> crate::Result<()> {
        self.stop_as(name, timeout, false)
    }

    /// Stops a frozen container for good: SIGKILL queued while it is frozen, then thawed,
    /// so that it runs no further (a moved container's last changes are the ones that were
    /// copied, and it answers no one after).
    pub(crate) fn stop_frozen(&self, name: &str) -> crate::Result<()> {
        self.stop_as(name, None, true)
    }

    fn stop_as(&self, name: &str, timeout: Option<Duration>, frozen: bool) -> crate::Result<()> {
        let c = self.get(name)?;
        if !matches!(
            c.status,
            Status::Running | Status::Paused | Status::Restarting
        ) {
            return Ok(());
        }
        let _ = fs::write(c.bundle.join("stop-requested"), b"");
        let paused = c.status == Status::Paused;
        if paused && !frozen {
            self.thaw(&c);
        }
        let cfg = &c.record.config;
        let signal = match frozen {
            true => libc::SIGKILL,
            false => cfg
                .stop_signal
                .as_deref()
                .and_then(signal_number)
                .unwrap_or(libc::SIGTERM),
        };
        let timeout = match (timeout, cfg.stop_timeout) {
            (Some(t), _) => Some(t),
            (None, Some(t)) if t < 0 => None,
            (None, Some(t)) => Some(Duration::from_secs(t as u64)),
            (None, None) => Some(Duration::from_secs(10)),
        };
        signal_task(&c, signal);
        if paused && frozen {
            self.thaw(&c);
        }
        if self.wait(name, timeout).is_err() {
            let c = self.get(name)?;
            kill_task(&c);
            self.wait(name, Some(Duration::from_secs(30)))?;
        }
        self.event(&c.record, "stop", &[]);
        Ok(())
    }

    fn thaw(&self, c: &Container) {
        for cg in &c.task.cgroups {
            let _ = fs::write(cg.join("freezer.state"), "THAWED");
            let _ = fs::write(cg.join("cgroup.freeze"), "0");
        }
    }

    /// Removes a container: its task (with `force`), snapshot, bundle and record.
    pub fn remove(&self, name: &str, force: bool) -> crate::Result<()> {
        self.remove_with(name, force, false)
    }

    /// `rm [-f] [-v]`: with `volumes`, the container's anonymous volumes go with it (those no
    /// other container uses).
    pub fn remove_with(&self, name: &str, force: bool, volumes: bool) -> crate::Result<()> {
        let mut c = self.get(name)?;
        if starting(&c) {
            if !force {
                return Err(ContainerError::Conflict {
                    reason: format!(
                        "cannot remove container \"/{}\": container is starting: wait for it to start, or force remove",
                        c.record.name
                    ),
                }
                .into());
            }
            // Its monitor goes, and with it the setup (parent-death signal); then whatever
            // it made, as for any monitor that was killed.
            if let Ok(fd) =
                crate::util::pidfd_checked(c.task.shim_pid as i32, c.task.shim_start, None)
            {
                let _ = crate::util::pidfd_signal(fd.as_fd(), libc::SIGKILL);
                crate::util::pidfd_wait(fd.as_fd(), Duration::from_secs(10));
            }
            c = self.get(&c.record.id)?;
        }
        if matches!(
            c.status,
            Status::Running | Status::Paused | Status::Restarting
        ) {
            if !force {
                return Err(ContainerError::Conflict {
                    reason: format!(
                        "cannot remove container \"/{}\": container is running: stop the container before removing or force remove",
                        c.record.name
                    ),
                }
                .into());
            }
            let _ = fs::write(c.bundle.join("stop-requested"), b"");
            self.thaw(&c);
            kill_task(&c);
            self.wait(name, Some(Duration::from_secs(30)))?;
            c = self.get(&c.record.id)?;
        }
        // Cgroups a killed container left (its last processes not yet reaped) go with it.
        if !c.task.cgroups.is_empty() && !alive(c.task.shim_pid, c.task.shim_start) {
            kill_cgroups(&c.record.id, &c.task.cgroups);
            remove_cgroups(&c.task.cgroups, Duration::from_secs(2));
        }
        // One transaction forgets the container, hands its snapshot to a lease and moves
        // its bundle aside; a crash after it leaves a dead lease, whose recovery removes
        // both.
        self.networks().release_endpoints(&c.record.id)?;
        let key = format!("container-{}", c.record.id);
        let doomed = self.containers_dir().join(format!("rm-{}", c.record.id));
        let lease = Lease::new(&self.st.db)?;
        self.st.db.write(|tx| {
            lease.add_in(tx, Resource::Snapshot(key.clone()))?;
            tx.execute("DELETE FROM containers WHERE id = ?1", params![c.record.id])?;
            match fs::rename(&c.bundle, &doomed) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io_err(format!("remove {}", c.bundle.display()))(e)),
            }
        })?;
        let _ = fs::remove_dir_all(&doomed);
        self.images().release(lease)?;
        self.event(&c.record, "destroy", &[]);
        if volumes {
            for m in c.record.config.mounts.iter().filter(|m| m.kind == "volume") {
                let anonymous = self.volumes().inspect(&m.source).is_ok_and(|v| v.anonymous);
                if anonymous && !self.volumes().in_use(&m.source)? {
                    let _ = self.volumes().remove(&m.source, false);
                }
            }
        }
        Ok(())
    }

    /// Freezes every process of a running container.
    pub fn pause(&self, name: &str) -> crate::Result<()> {
        let c = self.get(name)?;
        match c.status {
            Status::Running => {}
            Status::Paused => {
                return Err(ContainerError::Conflict {
                    reason: format!("container {} is already paused", c.record.id),
                }
                .into());
            }
            _ => {
                return Err(ContainerError::Conflict {
                    reason: format!("container {} is not running", c.record.id),
                }
                .into());
            }
        }
        self.freeze(&c, true)?;
        self.event(&c.record, "pause", &[]);
        Ok(())
    }

    /// Thaws a paused container.
    pub fn unpause(&self, name: &str) -> crate::Result<()> {
        let c = self.get(name)?;
        if c.status != Status::Paused {
            return Err(ContainerError::Conflict {
                reason: format!("container {} is not paused", c.record.id),
            }
            .into());
        }
        self.freeze(&c, false)?;
        // Thawed by hand, it runs on: a move that froze it and was killed is over (a move
        // run again must not take that move's copy for its state).
        let _ = fs::remove_file(c.bundle.join(super::moving::send::MARK));
        self.event(&c.record, "unpause", &[]);
        Ok(())
    }

    fn freeze(&self, c: &Container, frozen: bool) -> crate::Result<()> {
        // v1: the freezer hierarchy; v2: cgroup.freeze in the unified group.
        let target = c.task.cgroups.iter().find_map(|cg| {
            if cg.join("freezer.state").exists() {
                Some((
                    cg.join("freezer.state"),
                    if frozen { "FROZEN" } else { "THAWED" },
                ))
            } else if cg.join("cgroup.freeze").exists() {
                Some((cg.join("cgroup.freeze"), if frozen { "1" } else { "0" }))
            } else {
                None
            }
        });
        let Some((file, value)) = target else {
            return Err(ContainerError::Conflict {
                reason: "this host has no freezer cgroup".into(),
            }
            .into());
        };
        fs::write(&file, value).map_err(io_err(format!("write {}", file.display())))?;
        Ok(())
    }

    /// PIDs (host view) of every process in a running container.
    pub fn pids(&self, name: &str) -> crate::Result<Vec<i32>> {
        let c = self.get(name)?;
        if !c.is_running() {
            return Err(ContainerError::Conflict {
                reason: format!("container {} is not running", c.record.id),
            }
            .into());
        }
        let mut pids: Vec<i32> = c
            .task
            .cgroups
            .iter()
            .find_map(|cg| fs::read_to_string(cg.join("cgroup.procs")).ok())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        pids.sort_unstable();
        Ok(pids)
    }

    /// One sample of a container's resource use.
    pub fn stats(&self, name: &str) -> crate::Result<Stats> {
        let c = self.get(name)?;
        let read = |file: &str| -> Option<String> {
            c.task
                .cgroups
                .iter()
                .find_map(|cg| fs::read_to_string(cg.join(file)).ok())
        };
        let num = |file: &str| {
            read(file).and_then(|v| {
                v.split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
            })
        };
        let kv = |file: &str, key: &str| {
            read(file).and_then(|v| {
                v.lines().find_map(|l| {
                    l.strip_prefix(key)
                        .and_then(|r| r.trim().parse::<u64>().ok())
                })
            })
        };
        let host_mem = fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines().find_map(|l| {
                    l.strip_prefix("MemTotal:")
                        .and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                })
            })
            .map_or(0, |k| k * 1024);
        // v1: cpuacct.usage (ns), memory.usage_in_bytes less inactive file cache, as Docker;
        // v2: cpu.stat usage_usec, memory.current less inactive_file.
        let cpu_ns = num("cpuacct.usage")
            .or_else(|| kv("cpu.stat", "usage_usec ").map(|u| u * 1000))
            .unwrap_or(0);
        let (usage, inactive) = match num("memory.usage_in_bytes") {
            Some(u) => (u, kv("memory.stat", "total_inactive_file ").unwrap_or(0)),
            None => (
                num("memory.current").unwrap_or(0),
                kv("memory.stat", "inactive_file ").unwrap_or(0),
            ),
        };
        let limit = num("memory.limit_in_bytes")
            .or_else(|| num("memory.max"))
            .unwrap_or(u64::MAX)
            .min(host_mem.max(1));
        Ok(Stats {
            id: c.record.id.clone(),
            name: c.record.name.clone(),
            cpu_ns,
            memory_usage: usage.saturating_sub(inactive),
            memory_limit: limit,
            pids: num("pids.current").unwrap_or(0),
            running: c.is_running(),
            networks: if c.is_running() && c.task.pid > 0 {
                net_dev(c.task.pid)
            } else {
                Default::default()
            },
        })
    }

    /// `rm --link CONTAINER/ALIAS`: the container's link under that alias goes (its next
    /// start has no such name); the linked container stays.
    pub fn remove_link(&self, name: &str, alias: &str) -> crate::Result<()> {
        let c = self.get(name)?;
        let has = |l: &String| super::options::parse_link(l).is_ok_and(|(_, a)| a == alias);
        if !c.record.config.links.iter().any(has) {
            return Err(ContainerError::NotFound {
                name: format!("{name}/{alias}"),
            }
            .into());
        }
        self.update_config(&c.record.id, |cfg| {
            cfg.links.retain(|l| !has(l));
            Ok(())
        })?;
        // The link's variables leave the spec now: a start without links does not look.
        let left = self.get(&c.record.id)?;
        if left.record.config.links.is_empty() {
            self.set_link_env(&left, &[])?;
        }
        Ok(())
    }

    /// Gives a container a new name.
    pub fn rename(&self, name: &str, new_name: &str) -> crate::Result<()> {
        let new_name = new_name.trim_start_matches('/');
        if !crate::util::valid_name(new_name) {
            return Err(ContainerError::BadName {
                name: new_name.to_string(),
            }
            .into());
        }
        let mut record = self.find(name)?;
        self.st.db.write(|tx| {
            let taken: Option<String> = tx
                .query_row(
                    "SELECT id FROM containers WHERE name = ?1",
                    params![new_name],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(other) = taken {
                return Err(ContainerError::NameInUse {
                    name: new_name.to_string(),
                    id: other,
                }
                .into());
            }
            record.name = new_name.to_string();
            record.config.name = Some(new_name.to_string());
            tx.execute(
                "UPDATE containers SET name = ?1, config = ?2 WHERE id = ?3",
                params![
                    new_name,
                    serde_json::to_string(&record).unwrap_or_default(),
                    record.id
                ],
            )?;
            Ok::<_, crate::Error>(())
        })
    }

    /// Changes a container's stored configuration in one transaction.
    pub(crate) fn update_config(
        &self,
        id: &str,
        f: impl FnOnce(&mut CreateOptions) -> crate::Result<()>,
    ) -> crate::Result<()> {
        self.st.db.write(|tx| {
            let json: String = tx
                .query_row(
                    "SELECT config FROM containers WHERE id = ?1",
                    params![id],
                    |r| r.get(0),
                )
                .optional()?
                .ok_or_else(|| ContainerError::NotFound {
                    name: id.to_string(),
                })?;
            let mut record: ContainerRecord =
                serde_json::from_str(&json).map_err(|e| ContainerError::Invalid {
                    reason: format!("container record {id}: {e}"),
                })?;
            f(&mut record.config)?;
            tx.execute(
                "UPDATE containers SET config = ?1 WHERE id = ?2",
                params![serde_json::to_string(&record).unwrap_or_default(), id],
            )?;
            Ok::<_, crate::Error>(())
        })
    }

    /// Removes every stopped container; returns their IDs.
    pub fn prune(&self) -> crate::Result<Vec<String>> {
        Ok(self.prune_report()?.0)
    }

    /// [`Self::prune`], with the bytes their writable layers held.
    pub fn prune_report(&self) -> crate::Result<(Vec<String>, u64)> {
        let mut removed = Vec::new();
        let mut space = 0;
        for c in self.list(true)? {
            if matches!(c.status, Status::Exited | Status::Created) && !starting(&c) {
                let key = format!("container-{}", c.record.id);
                let size = self.st.snapshots.usage(&key).map_or(0, |u| u.size);
                self.remove(&c.record.id, false)?;
                space += size;
                removed.push(c.record.id);
            }
        }
        Ok((removed, space))
    }
}

/// Per-interface counters of the network namespace of process `pid` (its
/// `/proc/PID/net/dev`), loopback left out, as Docker's stats show them.
fn net_dev(pid: i32) -> std::collections::BTreeMap<String, NetStats> {
    let text = fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default();
    let mut out = std::collections::BTreeMap::new();
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name == "lo" {
            continue;
        }
        let n: Vec<u64> = rest
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        if n.len() < 16 {
            continue;
        }
        out.insert(
            name.to_string(),
            NetStats {
                rx_bytes: n[0],
                rx_packets: n[1],
                rx_errors: n[2],
                rx_dropped: n[3],
                tx_bytes: n[8],
                tx_packets: n[9],
                tx_errors: n[10],
                tx_dropped: n[11],
            },
        );
    }
    out
}
