//! `update`: a container's limits and restart policy changed, live when it runs, and kept
//! for its later starts, as `docker update` does.

use super::options::check_restart;
use super::*;

/// What `update` changes: each resource given (`Some`, or a non-empty list) replaces the
/// container's; the rest stay.
#[derive(Debug, Clone, Default)]
pub struct UpdateOptions {
    pub resources: Resources,
    /// `no`, `always`, `unless-stopped`, `on-failure[:N]`.
    pub restart: Option<String>,
}

/// `r` with what `u` gives.
fn merged(r: &Resources, u: &Resources) -> Resources {
    fn pick<T: Clone>(new: &Option<T>, old: &Option<T>) -> Option<T> {
        new.clone().or_else(|| old.clone())
    }
    fn list(new: &[ThrottleDevice], old: &[ThrottleDevice]) -> Vec<ThrottleDevice> {
        if new.is_empty() { old } else { new }.to_vec()
    }
    let cpus_given = u.cpus.is_some();
    let period_given = u.cpu_period.is_some() || u.cpu_quota.is_some();
    Resources {
        memory: pick(&u.memory, &r.memory),
        memory_reservation: pick(&u.memory_reservation, &r.memory_reservation),
        memory_swap: pick(&u.memory_swap, &r.memory_swap),
        memory_swappiness: pick(&u.memory_swappiness, &r.memory_swappiness),
        oom_kill_disable: r.oom_kill_disable,
        // `--cpus` and a period or quota exclude each other: the newer wins.
        cpus: if period_given {
            u.cpus
        } else {
            pick(&u.cpus, &r.cpus)
        },
        cpu_shares: pick(&u.cpu_shares, &r.cpu_shares),
        cpu_period: if cpus_given {
            u.cpu_period
        } else {
            pick(&u.cpu_period, &r.cpu_period)
        },
        cpu_quota: if cpus_given {
            u.cpu_quota
        } else {
            pick(&u.cpu_quota, &r.cpu_quota)
        },
        cpu_rt_period: pick(&u.cpu_rt_period, &r.cpu_rt_period),
        cpu_rt_runtime: pick(&u.cpu_rt_runtime, &r.cpu_rt_runtime),
        cpuset_cpus: pick(&u.cpuset_cpus, &r.cpuset_cpus),
        cpuset_mems: pick(&u.cpuset_mems, &r.cpuset_mems),
        pids_limit: pick(&u.pids_limit, &r.pids_limit),
        blkio_weight: pick(&u.blkio_weight, &r.blkio_weight),
        device_read_bps: list(&u.device_read_bps, &r.device_read_bps),
        device_write_bps: list(&u.device_write_bps, &r.device_write_bps),
        device_read_iops: list(&u.device_read_iops, &r.device_read_iops),
        device_write_iops: list(&u.device_write_iops, &r.device_write_iops),
    }
}

impl Containers<'_> {
    /// Changes a container's limits and restart policy; a running container's cgroups
    /// change at once. Nothing is recorded unless the kernel took the new limits.
    pub fn update(&self, name: &str, u: &UpdateOptions) -> crate::Result<()> {
        let c = self.get(name)?;
        let invalid =
            |reason: String| -> crate::Error { ContainerError::Invalid { reason }.into() };
        let mut cfg = c.record.config.clone();
        cfg.resources = merged(&cfg.resources, &u.resources);
        if let Some(r) = &u.restart {
            check_restart(r).map_err(invalid)?;
            if cfg.auto_remove && r != "no" {
                return Err(invalid(
                    "Restart policy cannot be updated because AutoRemove is enabled for the container"
                        .into(),
                ));
            }
            cfg.restart = Some(r.clone()).filter(|r| r != "no");
        }
        cfg.validate().map_err(invalid)?;
        let limits = spec::limits(&cfg.resources).map_err(invalid)?;
        // The spec first: the helper applies it, and the monitor reads it at each restart.
        let before = read_spec(&c.bundle)?;
        let mut doc = before.clone();
        let mut res = doc["linux"]["resources"].take();
        if !res.is_object() {
            res = serde_json::json!({});
        }
        for k in ["memory", "cpu", "pids", "blockIO"] {
            if let Some(o) = res.as_object_mut() {
                o.remove(k);
            }
        }
        if let Some(o) = res.as_object_mut() {
            o.extend(limits);
            // Back to no limit: the kernel's files are written, not left as they were.
            if cfg.resources.pids_limit.is_some_and(|p| p <= 0) {
                o.insert("pids".into(), serde_json::json!({"limit": -1}));
            }
        }
        doc["linux"]["resources"] = res;
        doc["annotations"]["io.ketch.restart"] =
            serde_json::json!(cfg.restart.clone().unwrap_or_else(|| "no".into()));
        write_spec(&c.bundle, &doc)?;
        if c.is_running() {
            let out = Command::new(self.shim()?)
                .arg("update")
                .arg(&c.bundle)
                .stdin(Stdio::null())
                .output()
                .map_err(io_err("run ketch-shim update"))?;
            if !out.status.success() {
                write_spec(&c.bundle, &before)?;
                return Err(invalid(format!(
                    "Cannot update container {}: {}",
                    c.record.id,
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
        }
        let (resources, restart) = (cfg.resources.clone(), cfg.restart.clone());
        self.update_config(&c.record.id, |o| {
            o.resources = resources;
            o.restart = restart;
            Ok(())
        })?;
        self.event(&c.record, "update", &[]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_given_replaces_the_rest_stays() {
        let old = Resources {
            memory: Some(64 << 20),
            cpus: Some(1.0),
            pids_limit: Some(50),
            ..Default::default()
        };
        let m = merged(
            &old,
            &Resources {
                memory: Some(32 << 20),
                cpu_quota: Some(20_000),
                ..Default::default()
            },
        );
        assert_eq!(m.memory, Some(32 << 20));
        assert_eq!(m.pids_limit, Some(50));
        // A quota replaces --cpus; they cannot both hold.
        assert_eq!((m.cpus, m.cpu_quota), (None, Some(20_000)));
    }
}
