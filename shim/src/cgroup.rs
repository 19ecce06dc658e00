//! Cgroups on either layout: v2 (one unified hierarchy) or v1 (one hierarchy per controller,
//! possibly beside a controller-less v2 mount, as on hybrid hosts). The layout is read from
//! the mount table, never assumed.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::spec::Resources;

/// The cgroups of one container, dispatched over the closed set of layouts.
#[derive(Debug)]
pub enum Cgroup {
    /// A group per controller; on a hybrid host also a group in the controller-less v2
    /// hierarchy, which holds the device program.
    V1 {
        dirs: Vec<(String, PathBuf)>,
        unified: Option<PathBuf>,
    },
    V2(PathBuf),
}

/// Where the v2 hierarchy is mounted, if it is: `/sys/fs/cgroup` on a v2 host,
/// `/sys/fs/cgroup/unified` on a hybrid one.
#[cfg(test)]
pub fn unified_mount() -> Option<PathBuf> {
    mounts().ok()?.1
}

/// Controllers a container is placed under on v1.
const V1_CONTROLLERS: &[&str] = &[
    "memory", "cpu", "cpuacct", "pids", "freezer", "blkio", "devices", "cpuset",
];

/// v1 hierarchies: (controller, mount point).
type V1Mounts = Vec<(String, PathBuf)>;

/// The v1 hierarchies and the v2 one, from one read of the mount table.
fn mounts() -> io::Result<(V1Mounts, Option<PathBuf>)> {
    Ok(parse_mounts(&fs::read_to_string("/proc/self/mountinfo")?))
}

/// [`mounts`] from the text of a mountinfo file: the first cgroup2 mount, and for each
/// controller a container is placed under, the first v1 hierarchy that has it.
fn parse_mounts(info: &str) -> (V1Mounts, Option<PathBuf>) {
    let mut v1 = Vec::new();
    let mut v2 = None;
    for line in info.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mountpoint) = pre.split(' ').nth(4) else {
            continue;
        };
        let mut post = post.split(' ');
        match post.next() {
            Some("cgroup2") if v2.is_none() => v2 = Some(PathBuf::from(mountpoint)),
            Some("cgroup") => {
                let opts = post.nth(1).unwrap_or("");
                for c in opts.split(',') {
                    if V1_CONTROLLERS.contains(&c)
                        && !v1.iter().any(|(n, _): &(String, PathBuf)| n == c)
                    {
                        v1.push((c.to_string(), PathBuf::from(mountpoint)));
                    }
                }
            }
            _ => {}
        }
    }
    (v1, v2)
}

/// Lets the children of a v2 group use the controllers a container's limits need.
fn delegate(dir: &Path) {
    let avail = fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    let enable: Vec<String> = avail
        .split_whitespace()
        .filter(|c| ["memory", "cpu", "cpuset", "io", "pids"].contains(c))
        .map(|c| format!("+{c}"))
        .collect();
    if !enable.is_empty() {
        let _ = write(&dir.join("cgroup.subtree_control"), &enable.join(" "));
    }
}

/// `mkdir -p`, retried: another container's shim may remove an empty parent meanwhile.
fn create_dir_retrying(dir: &Path) -> io::Result<()> {
    let mut last = None;
    for _ in 0..20 {
        match fs::create_dir_all(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from(io::ErrorKind::NotFound)))
}

fn write(path: &Path, value: &str) -> io::Result<()> {
    fs::write(path, value).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("write {value:?} to {}: {e}", path.display()),
        )
    })
}

impl Cgroup {
    /// Creates the container's cgroups at `rel` (e.g. `/ketch/<id>`) and applies limits.
    pub fn create(rel: &str, resources: Option<&Resources>) -> io::Result<Cgroup> {
        let cg = Cgroup::make(rel)?;
        if let Err(e) = cg.apply(resources) {
            cg.destroy();
            return Err(e);
        }
        Ok(cg)
    }

    /// A running container's groups, to change their limits.
    pub fn existing(rel: &str) -> io::Result<Cgroup> {
        let cg = Cgroup::make(rel)?;
        let here = cg.paths();
        if here.is_empty() || !here.iter().all(|p| p.join("cgroup.procs").exists()) {
            return Err(io::Error::other(format!("no cgroup {rel}")));
        }
        Ok(cg)
    }

    fn make(rel: &str) -> io::Result<Cgroup> {
        let base = Path::new("/sys/fs/cgroup");
        if base.join("cgroup.controllers").exists() {
            return Cgroup::make_v2(base, rel);
        }
        Cgroup::make_v1(rel)
    }

    /// The container's group in the v2 hierarchy mounted at `base`, with the controllers its
    /// limits need delegated down to it.
    fn make_v2(base: &Path, rel: &str) -> io::Result<Cgroup> {
        let rel = rel.trim_start_matches('/');
        let path = base.join(rel);
        // Delegate the controllers down to the container's level.
        let mut parent = base.to_path_buf();
        for part in Path::new(rel)
            .parent()
            .into_iter()
            .flat_map(|p| p.components())
        {
            delegate(&parent);
            parent = parent.join(part);
            create_dir_retrying(&parent)?;
        }
        delegate(&parent);
        create_dir_retrying(&path)?;
        Ok(Cgroup::V2(path))
    }

    /// The container's groups on a v1 (or hybrid) host, from the mount table.
    fn make_v1(rel: &str) -> io::Result<Cgroup> {
        let rel = rel.trim_start_matches('/');
        let (v1, v2) = mounts()?;
        let mut dirs = Vec::new();
        for (controller, mount) in v1 {
            let dir = mount.join(rel);
            if dirs.iter().any(|(_, d): &(String, PathBuf)| d == &dir) {
                continue;
            }
            create_dir_retrying(&dir)?;
            if controller == "cpuset" {
                // A new cpuset starts with no CPUs and no memory nodes: inherit the parent's.
                let mut cur = mount.clone();
                for part in Path::new(rel).components() {
                    let parent = cur.clone();
                    cur = cur.join(part);
                    for f in ["cpuset.cpus", "cpuset.mems"] {
                        if fs::read_to_string(cur.join(f)).is_ok_and(|v| v.trim().is_empty()) {
                            let v = fs::read_to_string(parent.join(f)).unwrap_or_default();
                            let _ = write(&cur.join(f), v.trim());
                        }
                    }
                }
            }
            dirs.push((controller, dir));
        }
        // The v2 hierarchy beside v1 has no controllers, but a device program attached there
        // is enforced all the same: the container's processes go into a group of it too.
        let unified = match v2 {
            Some(u) => {
                let dir = u.join(rel);
                create_dir_retrying(&dir)?;
                Some(dir)
            }
            None => None,
        };
        Ok(Cgroup::V1 { dirs, unified })
    }

    fn dir(&self, controller: &str) -> Option<&Path> {
        match self {
            Cgroup::V1 { dirs, .. } => dirs
                .iter()
                .find(|(c, _)| c == controller)
                .map(|(_, p)| p.as_path()),
            Cgroup::V2(p) => Some(p),
        }
    }

    fn apply(&self, r: Option<&Resources>) -> io::Result<()> {
        self.apply_devices(r)?;
        match r {
            Some(r) => self.apply_limits(r),
            None => Ok(()),
        }
    }

    /// The device program or list, whether or not the spec has resources: no spec means the
    /// default allow-list, never every device.
    fn apply_devices(&self, r: Option<&Resources>) -> io::Result<()> {
        let devices = crate::devices::rules(r.and_then(|r| r.devices.as_ref()));
        match self {
            Cgroup::V1 { dirs, unified } => {
                let dir = dirs.iter().find(|(c, _)| c == "devices").map(|(_, d)| d);
                match dir {
                    Some(d) => crate::devices::apply_v1(d, &devices)?,
                    None if unified.is_none() => {
                        return Err(io::Error::other(
                            "no device controller to confine the container with",
                        ));
                    }
                    None => {}
                }
                if let Some(u) = unified {
                    crate::devices::apply_v2(u, &devices)?;
                }
            }
            Cgroup::V2(d) => crate::devices::apply_v2(d, &devices)?,
        }
        Ok(())
    }

    /// Memory, CPU, cpuset, PID and block I/O limits, in the files of whichever layout the
    /// groups are on. Also what `update` applies to a running container.
    pub fn apply_limits(&self, r: &Resources) -> io::Result<()> {
        let v2 = matches!(self, Cgroup::V2(_));
        if let Some(m) = &r.memory
            && let Some(d) = self.dir("memory")
        {
            let limit = m.limit.filter(|l| *l > 0);
            // Memory plus swap: -1 unlimited; none given, no swap beyond the limit.
            let swap = m.swap.filter(|s| *s != 0);
            if v2 {
                if let Some(l) = limit {
                    write(&d.join("memory.max"), &l.to_string())?;
                    let swap_max = match swap {
                        Some(-1) => "max".to_string(),
                        Some(s) => (s - l).max(0).to_string(),
                        None => "0".to_string(),
                    };
                    let _ = write(&d.join("memory.swap.max"), &swap_max);
                }
                if let Some(r) = m.reservation.filter(|r| *r > 0) {
                    write(&d.join("memory.low"), &r.to_string())?;
                }
            } else {
                if let Some(l) = limit {
                    // The kernel checks memory <= memory+swap at each write: raise whichever
                    // must grow first.
                    let memsw = d.join("memory.memsw.limit_in_bytes");
                    let total = match swap {
                        Some(-1) => -1,
                        Some(s) => s,
                        None => l,
                    };
                    if memsw.exists() {
                        let cur = fs::read_to_string(&memsw)
                            .ok()
                            .and_then(|v| v.trim().parse::<i64>().ok())
                            .unwrap_or(i64::MAX);
                        if total == -1 || total > cur {
                            write(&memsw, &total.to_string())?;
                            write(&d.join("memory.limit_in_bytes"), &l.to_string())?;
                        } else {
                            write(&d.join("memory.limit_in_bytes"), &l.to_string())?;
                            write(&memsw, &total.to_string())?;
                        }
                    } else {
                        write(&d.join("memory.limit_in_bytes"), &l.to_string())?;
                    }
                }
                if let Some(r) = m.reservation.filter(|r| *r > 0) {
                    write(&d.join("memory.soft_limit_in_bytes"), &r.to_string())?;
                }
                if let Some(s) = m.swappiness {
                    write(&d.join("memory.swappiness"), &s.to_string())?;
                }
                if m.disable_oom_killer == Some(true) {
                    write(&d.join("memory.oom_control"), "1")?;
                }
            }
        }
        if let Some(cpu) = &r.cpu
            && let Some(d) = self.dir("cpu")
        {
            if let Some(shares) = cpu.shares.filter(|s| *s > 0) {
                if v2 {
                    // The mapping runc and crun use from shares (2..262144) to weight (1..10000).
                    let weight = 1 + ((shares.clamp(2, 262144) - 2) * 9999) / 262142;
                    write(&d.join("cpu.weight"), &weight.to_string())?;
                } else {
                    write(&d.join("cpu.shares"), &shares.to_string())?;
                }
            }
            let period = cpu.period.filter(|p| *p > 0);
            let quota = cpu.quota.filter(|q| *q > 0);
            if quota.is_some() || period.is_some() {
                let period = period.unwrap_or(100_000);
                if v2 {
                    let quota = quota.map_or("max".to_string(), |q| q.to_string());
                    write(&d.join("cpu.max"), &format!("{quota} {period}"))?;
                } else {
                    write(&d.join("cpu.cfs_period_us"), &period.to_string())?;
                    if let Some(q) = quota {
                        write(&d.join("cpu.cfs_quota_us"), &q.to_string())?;
                    }
                }
            }
        }
        if let Some(cpu) = &r.cpu
            && (cpu.realtime_period.is_some() || cpu.realtime_runtime.is_some())
        {
            self.apply_realtime(cpu.realtime_period, cpu.realtime_runtime)?;
        }
        if let Some(cpu) = &r.cpu
            && let Some(d) = self.dir("cpuset")
        {
            if let Some(c) = cpu.cpus.as_deref().filter(|c| !c.is_empty()) {
                write(&d.join("cpuset.cpus"), c)?;
            }
            if let Some(m) = cpu.mems.as_deref().filter(|m| !m.is_empty()) {
                write(&d.join("cpuset.mems"), m)?;
            }
        }
        if let Some(p) = &r.pids
            && p.limit != 0
            && let Some(d) = self.dir("pids")
        {
            let max = if p.limit < 0 {
                "max".to_string()
            } else {
                p.limit.to_string()
            };
            write(&d.join("pids.max"), &max)?;
        }
        if let Some(b) = &r.block_io {
            self.apply_block_io(b)?;
        }
        Ok(())
    }

    /// Real-time CPU time (v1's `cpu.rt_period_us`, `cpu.rt_runtime_us`). A group may not
    /// have more real-time runtime than its parent, which the kernel gives none by default:
    /// each ancestor below the hierarchy's root that has less is raised to the runtime
    /// asked for first (what dockerd's `--cpu-rt-runtime` does for its parent), top down.
    fn apply_realtime(&self, period: Option<u64>, runtime: Option<i64>) -> io::Result<()> {
        let Some(d) = self
            .dir("cpu")
            .filter(|d| d.join("cpu.rt_runtime_us").exists())
        else {
            return Err(io::Error::other(
                "this host's cgroups have no real-time CPU time (cpu.rt_runtime_us)",
            ));
        };
        let read = |f: &Path| -> Option<i64> { fs::read_to_string(f).ok()?.trim().parse().ok() };
        if let Some(t) = runtime.filter(|t| *t > 0) {
            // The kernel keeps each group's share (runtime over period) within its parent's.
            let own_period = period
                .map(|p| p as i64)
                .or_else(|| read(&d.join("cpu.rt_period_us")))
                .unwrap_or(1_000_000)
                .max(1);
            // Up to the hierarchy's root, the one group with `cgroup.sane_behavior`.
            let mut ancestors: Vec<&Path> = d
                .ancestors()
                .skip(1)
                .take_while(|a| {
                    a.join("cpu.rt_runtime_us").exists() && !a.join("cgroup.sane_behavior").exists()
                })
                .collect();
            ancestors.reverse();
            for a in ancestors {
                let file = a.join("cpu.rt_runtime_us");
                let have = read(&file).unwrap_or(0);
                let their_period = read(&a.join("cpu.rt_period_us")).unwrap_or(1_000_000);
                let need =
                    (t as u128 * their_period.max(0) as u128).div_ceil(own_period as u128) as i64;
                if have >= 0 && have < need {
                    write(&file, &need.to_string())?;
                }
            }
        }
        if let Some(p) = period.filter(|p| *p > 0) {
            write(&d.join("cpu.rt_period_us"), &p.to_string())?;
        }
        if let Some(t) = runtime.filter(|t| *t != 0) {
            write(&d.join("cpu.rt_runtime_us"), &t.to_string())?;
        }
        Ok(())
    }

    fn apply_block_io(&self, b: &crate::spec::BlockIo) -> io::Result<()> {
        let v2 = matches!(self, Cgroup::V2(_));
        let Some(d) = self.dir(if v2 { "io" } else { "blkio" }) else {
            return Ok(());
        };
        if let Some(w) = b.weight.filter(|w| *w > 0) {
            let file = if v2 {
                "io.weight"
            } else if d.join("blkio.weight").exists() {
                "blkio.weight"
            } else {
                "blkio.bfq.weight"
            };
            write(&d.join(file), &w.to_string())?;
        }
        for (list, v1_file, v2_key) in [
            (
                &b.throttle_read_bps_device,
                "blkio.throttle.read_bps_device",
                "rbps",
            ),
            (
                &b.throttle_write_bps_device,
                "blkio.throttle.write_bps_device",
                "wbps",
            ),
            (
                &b.throttle_read_iops_device,
                "blkio.throttle.read_iops_device",
                "riops",
            ),
            (
                &b.throttle_write_iops_device,
                "blkio.throttle.write_iops_device",
                "wiops",
            ),
        ] {
            for t in list {
                if v2 {
                    write(
                        &d.join("io.max"),
                        &format!("{}:{} {v2_key}={}", t.major, t.minor, t.rate),
                    )?;
                } else {
                    write(
                        &d.join(v1_file),
                        &format!("{}:{} {}", t.major, t.minor, t.rate),
                    )?;
                }
            }
        }
        Ok(())
    }

    /// The container's v2 group (on a hybrid host the one beside v1), opened for
    /// `sys::fork_into`.
    pub fn v2_dir(&self) -> Option<std::fs::File> {
        let dir = match self {
            Cgroup::V1 { unified, .. } => unified.as_deref()?,
            Cgroup::V2(p) => p,
        };
        std::fs::File::open(dir).ok()
    }

    /// Moves the calling process, which must be single-threaded, into every cgroup of the
    /// container; with `in_v2`, it is in the v2 one already (made there by `fork_into`).
    ///
    /// On v1 this writes `0` (the caller) to `tasks`: moving only the current thread takes no
    /// global lock, while writing a PID to `cgroup.procs` takes the threadgroup rwsem for
    /// writing and waits out an RCU grace period, 10-20 ms per start here. A single-threaded
    /// process is its only thread, so the whole process moves.
    pub fn join_self(&self, in_v2: bool) -> io::Result<()> {
        match self {
            Cgroup::V1 { dirs, unified } => {
                for (_, p) in dirs {
                    write(&p.join("tasks"), "0")?;
                }
                if let Some(u) = unified.as_ref().filter(|_| !in_v2) {
                    write(&u.join("cgroup.procs"), "0")?;
                }
                Ok(())
            }
            Cgroup::V2(_) if in_v2 => Ok(()),
            Cgroup::V2(p) => write(&p.join("cgroup.procs"), "0"),
        }
    }

    /// Whether the kernel's OOM killer killed a process of the container.
    pub fn oom_killed(&self) -> bool {
        let (file, key) = match self {
            Cgroup::V1 { .. } => ("memory.oom_control", "oom_kill"),
            Cgroup::V2(_) => ("memory.events", "oom_kill"),
        };
        let Some(d) = self.dir("memory") else {
            return false;
        };
        fs::read_to_string(d.join(file))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once(' '))
            .any(|(k, v)| k == key && v.trim().parse::<u64>().unwrap_or(0) > 0)
    }

    /// Every directory made for the container (recorded so the engine can clean up after a
    /// shim that was killed).
    pub fn paths(&self) -> Vec<PathBuf> {
        match self {
            Cgroup::V1 { dirs, unified } => dirs
                .iter()
                .map(|(_, p)| p.clone())
                .chain(unified.iter().cloned())
                .collect(),
            Cgroup::V2(p) => vec![p.clone()],
        }
    }

    /// Removes the container's cgroups once its processes are gone, and the parent `ketch`
    /// groups too when no other container is left in them.
    pub fn destroy(&self) {
        for p in self.paths() {
            for _ in 0..50 {
                match fs::remove_dir(&p) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
                }
            }
            if let Some(parent) = p.parent() {
                // Fails while another container's group is inside: then it stays.
                let _ = fs::remove_dir(parent);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A temporary directory laid out as a cgroup2 tree, removed on drop. Every controller of
    /// this host is bound to v1, and a controller lives in one hierarchy at a time: the v2 code
    /// path cannot run against the kernel here without unmounting hierarchies other processes
    /// use. So it runs against the files the kernel would show, and the test reads back what
    /// the shim wrote after each step.
    struct Tree(PathBuf);

    impl Tree {
        fn new() -> Tree {
            let dir = std::env::temp_dir().join(crate::sys::unique_name("ketch-cgroup2"));
            fs::create_dir_all(dir.join("ketch")).unwrap();
            // The root offers every controller; the existing `ketch` group was given the
            // three a container's limits use by an earlier container's delegation.
            fs::write(
                dir.join("cgroup.controllers"),
                "cpuset cpu io memory hugetlb pids rdma misc\n",
            )
            .unwrap();
            fs::write(dir.join("cgroup.subtree_control"), "").unwrap();
            fs::write(dir.join("ketch/cgroup.controllers"), "cpu memory pids\n").unwrap();
            Tree(dir)
        }

        fn read(&self, rel: &str) -> String {
            fs::read_to_string(self.0.join(rel))
                .unwrap_or_else(|e| panic!("{rel}: {e}"))
                .trim()
                .to_string()
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// Removes the groups a test made when it ends, passed or not: their removal is what
    /// some tests check, and must not rest on the code they test.
    struct Groups(Vec<PathBuf>);

    impl Drop for Groups {
        fn drop(&mut self) {
            for p in &self.0 {
                let _ = fs::remove_dir(p);
            }
        }
    }

    fn resources(json: &str) -> Resources {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn v2_groups_delegate_limit_join_and_go() {
        let t = Tree::new();
        let cg = Cgroup::make_v2(&t.0, "/ketch/c1").unwrap();
        let dir = t.0.join("ketch/c1");
        assert!(matches!(&cg, Cgroup::V2(p) if *p == dir), "{cg:?}");
        assert!(dir.is_dir());
        // The controllers the limits need are enabled at every level above the container,
        // and only those.
        assert_eq!(
            t.read("cgroup.subtree_control"),
            "+cpuset +cpu +io +memory +pids"
        );
        assert_eq!(t.read("ketch/cgroup.subtree_control"), "+cpu +memory +pids");

        let r = resources(
            r#"{"memory": {"limit": 67108864},
                "cpu": {"shares": 512, "quota": 50000, "period": 100000},
                "pids": {"limit": 50}}"#,
        );
        cg.apply_limits(&r).unwrap();
        assert_eq!(t.read("ketch/c1/memory.max"), "67108864");
        // No swap beyond the limit, as Docker's default.
        assert_eq!(t.read("ketch/c1/memory.swap.max"), "0");
        // runc's and crun's mapping of shares to weight: 512 is 20, 1024 is 39.
        assert_eq!(t.read("ketch/c1/cpu.weight"), "20");
        assert_eq!(t.read("ketch/c1/cpu.max"), "50000 100000");
        assert_eq!(t.read("ketch/c1/pids.max"), "50");
        cg.apply_limits(&resources(r#"{"cpu": {"shares": 1024, "quota": 25000}}"#))
            .unwrap();
        assert_eq!(t.read("ketch/c1/cpu.weight"), "39");
        // No period given: the kernel's default, 100 ms.
        assert_eq!(t.read("ketch/c1/cpu.max"), "25000 100000");

        // Joining writes the caller to cgroup.procs, unless fork_into put it there already.
        cg.join_self(true).unwrap();
        assert!(!dir.join("cgroup.procs").exists());
        cg.join_self(false).unwrap();
        assert_eq!(t.read("ketch/c1/cgroup.procs"), "0");
        assert!(cg.v2_dir().is_some());

        // An OOM kill is read from memory.events.
        fs::write(
            dir.join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 0\n",
        )
        .unwrap();
        assert!(!cg.oom_killed());
        fs::write(
            dir.join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        )
        .unwrap();
        assert!(cg.oom_killed());
        assert_eq!(cg.paths(), vec![dir.clone()]);

        // A second container shares the parent; removing the first leaves the parent.
        let other = Cgroup::make_v2(&t.0, "/ketch/c2").unwrap();
        // The kernel's interface files go with rmdir; here the test removes them first.
        for cg_dir in [&dir, &t.0.join("ketch/c2")] {
            for e in fs::read_dir(cg_dir).unwrap() {
                fs::remove_file(e.unwrap().path()).unwrap();
            }
        }
        cg.destroy();
        assert!(!dir.exists(), "the container's group is left");
        assert!(t.0.join("ketch").is_dir(), "the parent went while in use");
        fs::remove_file(t.0.join("ketch/cgroup.controllers")).unwrap();
        fs::remove_file(t.0.join("ketch/cgroup.subtree_control")).unwrap();
        other.destroy();
        assert!(!t.0.join("ketch").exists(), "the empty parent is left");
    }

    #[test]
    fn v2_without_limits_writes_no_limit_files() {
        let t = Tree::new();
        let cg = Cgroup::make_v2(&t.0, "ketch/c3").unwrap();
        cg.apply_limits(&resources(
            r#"{"memory": {"limit": 0}, "cpu": {"shares": 0, "quota": 0}, "pids": {"limit": 0}}"#,
        ))
        .unwrap();
        let mut files: Vec<String> = fs::read_dir(t.0.join("ketch/c3"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        assert!(
            files.is_empty(),
            "limits written where none were asked: {files:?}"
        );
    }

    /// v1: each limit in its own controller's files; the swap limit only where the kernel
    /// has swap accounting; an OOM kill read from memory.oom_control.
    #[test]
    fn v1_limits_go_in_each_controllers_files() {
        let t = Tree::new();
        let dir = |c: &str| t.0.join(c);
        let v1 = |controllers: &[&str]| Cgroup::V1 {
            dirs: controllers
                .iter()
                .map(|c| {
                    fs::create_dir_all(dir(c)).unwrap();
                    (c.to_string(), dir(c))
                })
                .collect(),
            unified: None,
        };
        let cg = v1(&["memory", "cpu", "pids"]);
        fs::write(dir("memory").join("memory.memsw.limit_in_bytes"), "max").unwrap();
        cg.apply_limits(&resources(
            r#"{"memory": {"limit": 67108864},
                "cpu": {"shares": 512, "quota": 50000},
                "pids": {"limit": 50}}"#,
        ))
        .unwrap();
        assert_eq!(t.read("memory/memory.limit_in_bytes"), "67108864");
        assert_eq!(t.read("memory/memory.memsw.limit_in_bytes"), "67108864");
        assert_eq!(t.read("cpu/cpu.shares"), "512");
        assert_eq!(t.read("cpu/cpu.cfs_period_us"), "100000");
        assert_eq!(t.read("cpu/cpu.cfs_quota_us"), "50000");
        assert_eq!(t.read("pids/pids.max"), "50");
        // Without swap accounting there is no such file, and none is made.
        fs::remove_file(dir("memory").join("memory.memsw.limit_in_bytes")).unwrap();
        cg.apply_limits(&resources(r#"{"memory": {"limit": 1048576}}"#))
            .unwrap();
        assert_eq!(t.read("memory/memory.limit_in_bytes"), "1048576");
        assert!(!dir("memory").join("memory.memsw.limit_in_bytes").exists());

        fs::write(
            dir("memory").join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
        )
        .unwrap();
        assert!(!cg.oom_killed());
        fs::write(
            dir("memory").join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        assert!(cg.oom_killed());
        assert_eq!(cg.paths(), vec![dir("memory"), dir("cpu"), dir("pids")]);

        // A limit whose controller is not mounted is not written anywhere.
        let pids_only = v1(&["pids"]);
        fs::remove_file(dir("cpu").join("cpu.shares")).unwrap();
        pids_only
            .apply_limits(&resources(
                r#"{"cpu": {"shares": 100}, "pids": {"limit": 7}}"#,
            ))
            .unwrap();
        assert_eq!(t.read("pids/pids.max"), "7");
        assert!(!dir("cpu").join("cpu.shares").exists());
        assert!(!pids_only.oom_killed());
        // Joining writes the caller's thread to each controller's tasks.
        pids_only.join_self(false).unwrap();
        assert_eq!(t.read("pids/tasks"), "0");
    }

    /// The hierarchies from the mount table: the first cgroup2 mount; for each controller
    /// a container goes under, the first v1 mount that has it (several may share one);
    /// named hierarchies, other controllers and other file systems are passed over.
    #[test]
    fn the_mount_table_gives_each_controller_its_first_hierarchy() {
        let info = "\
22 1 0:20 / /sys rw,nosuid shared:7 - sysfs sysfs rw
25 22 0:23 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:24 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:25 / /sys/fs/cgroup/systemd rw shared:11 - cgroup cgroup rw,xattr,name=systemd
28 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw shared:12 - cgroup cgroup rw,cpu,cpuacct
29 25 0:27 / /sys/fs/cgroup/memory rw shared:13 - cgroup cgroup rw,memory
30 25 0:28 / /sys/fs/cgroup/rdma rw shared:14 - cgroup cgroup rw,rdma
31 1 0:29 / /mnt/again rw shared:15 - cgroup cgroup rw,memory
32 1 0:30 / /mnt/v2 rw shared:16 - cgroup2 cgroup2 rw
33 1 0:31 / /mnt/tmp rw shared:17 - tmpfs memory rw,memory
broken line without a separator
34 1 0:32 / - cgroup
";
        let (v1, v2) = parse_mounts(info);
        assert_eq!(v2, Some(PathBuf::from("/sys/fs/cgroup/unified")));
        let at = |p: &str| PathBuf::from(p);
        assert_eq!(
            v1,
            vec![
                ("cpu".to_string(), at("/sys/fs/cgroup/cpu,cpuacct")),
                ("cpuacct".to_string(), at("/sys/fs/cgroup/cpu,cpuacct")),
                ("memory".to_string(), at("/sys/fs/cgroup/memory")),
            ]
        );
        assert_eq!(parse_mounts(""), (vec![], None));
    }

    /// On this host's own mount table: one group per hierarchy (controllers that share a
    /// mount share the group), each made, and each gone again.
    #[test]
    fn v1_groups_are_one_per_hierarchy_and_go() {
        let (v1, v2) = mounts().unwrap();
        let rel = crate::sys::unique_name("ketch-test");
        let cg = Cgroup::make_v1(&format!("/{rel}")).unwrap();
        let mut want: Vec<PathBuf> = Vec::new();
        for (_, m) in &v1 {
            if !want.contains(&m.join(&rel)) {
                want.push(m.join(&rel));
            }
        }
        want.extend(v2.map(|u| u.join(&rel)));
        let _made = Groups(want.clone());
        assert_eq!(cg.paths(), want);
        assert!(want.iter().all(|p| p.is_dir()), "{want:?}");
        cg.destroy();
        assert!(want.iter().all(|p| !p.exists()), "{want:?}");
    }

    /// On v1 without a devices controller, only a v2 group's program can confine a
    /// container: without one either, the start fails rather than open every device.
    #[test]
    fn no_device_controller_anywhere_is_an_error() {
        let none = Cgroup::V1 {
            dirs: vec![],
            unified: None,
        };
        let err = none.apply_devices(None).unwrap_err();
        assert!(err.to_string().contains("no device controller"), "{err}");
        // With the v2 group beside it, the program there is enough.
        let (_, v2) = mounts().unwrap();
        let u = v2
            .expect("a cgroup2 hierarchy")
            .join(crate::sys::unique_name("ketch-test"));
        fs::create_dir(&u).unwrap();
        let _made = Groups(vec![u.clone()]);
        let beside = Cgroup::V1 {
            dirs: vec![],
            unified: Some(u.clone()),
        };
        let applied = beside.apply_devices(None);
        let attached = crate::devices::attached_v2(&u);
        beside.destroy();
        applied.unwrap();
        assert_eq!(attached.unwrap(), 1);
    }

    /// Joining on v1 writes the caller to each controller's `tasks`, and to the v2 group's
    /// `cgroup.procs` unless `fork_into` put it there already.
    #[test]
    fn v1_join_writes_the_v2_group_only_when_not_there_yet() {
        let t = Tree::new();
        let (pids, u) = (t.0.join("pids"), t.0.join("unified"));
        fs::create_dir_all(&pids).unwrap();
        fs::create_dir_all(&u).unwrap();
        let cg = Cgroup::V1 {
            dirs: vec![("pids".into(), pids)],
            unified: Some(u.clone()),
        };
        cg.join_self(true).unwrap();
        assert_eq!(t.read("pids/tasks"), "0");
        assert!(!u.join("cgroup.procs").exists());
        cg.join_self(false).unwrap();
        assert_eq!(t.read("unified/cgroup.procs"), "0");
    }

    /// A group the kernel will not remove yet (its last process still leaving) is tried
    /// again until it goes.
    #[test]
    fn destroy_waits_for_a_group_to_empty() {
        let t = Tree::new();
        let dir = t.0.join("ketch/busy");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("a-process"), "").unwrap();
        let leaving = dir.join("a-process");
        let leaver = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(30));
            fs::remove_file(leaving).unwrap();
        });
        Cgroup::V2(dir.clone()).destroy();
        leaver.join().unwrap();
        assert!(!dir.exists());
    }

    /// runc's and crun's mapping of shares (2..262144) onto weights (1..10000), at its ends.
    #[test]
    fn shares_map_onto_weights_at_both_ends() {
        let t = Tree::new();
        let cg = Cgroup::make_v2(&t.0, "ketch/w").unwrap();
        for (shares, weight) in [(1, "1"), (2, "1"), (262144, "10000"), (1_000_000, "10000")] {
            cg.apply_limits(&resources(&format!(r#"{{"cpu": {{"shares": {shares}}}}}"#)))
                .unwrap();
            assert_eq!(t.read("ketch/w/cpu.weight"), weight, "{shares}");
        }
    }
}
