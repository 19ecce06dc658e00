//! A container's log: the JSON-lines file its monitor writes.

use super::*;

impl Containers<'_> {
    /// The container's log records, oldest first: (stream, time, text).
    pub fn logs(&self, name: &str) -> crate::Result<Vec<LogRecord>> {
        Ok(self.log_records(name)?.0)
    }

    /// [`Self::logs`], with how many bytes of the current log file they cover
    /// (whole lines only): where a follower goes on from.
    pub fn log_records(&self, name: &str) -> crate::Result<(Vec<LogRecord>, u64)> {
        let c = self.get(name)?;
        if c.record.config.log_driver.as_deref() == Some("none") {
            return Err(ContainerError::Invalid {
                reason: "configured logging driver does not support reading".into(),
            }
            .into());
        }
        let mut files: Vec<PathBuf> = Vec::new();
        for i in (1..10).rev() {
            let p = PathBuf::from(format!("{}.{i}", c.bundle.join("container.log").display()));
            if p.exists() {
                files.push(p);
            }
        }
        files.push(c.bundle.join("container.log"));
        let mut out = Vec::new();
        let mut covered = 0u64;
        for f in files {
            let Ok(file) = fs::File::open(&f) else {
                continue;
            };
            covered = 0;
            let mut reader = io::BufReader::new(file);
            loop {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) if !line.ends_with('\n') => break,
                    Ok(n) => covered += n as u64,
                }
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    out.push((
                        v["stream"].as_str().unwrap_or("stdout").to_string(),
                        v["time"].as_str().unwrap_or("").to_string(),
                        v["log"].as_str().unwrap_or("").to_string(),
                    ));
                }
            }
        }
        Ok((out, covered))
    }

    /// Path of the container's current log file, for followers.
    pub fn log_path(&self, name: &str) -> crate::Result<PathBuf> {
        Ok(self.get(name)?.bundle.join("container.log"))
    }

    /// A connection to a running container's input (its monitor's `attach.sock`): what is
    /// written to it goes to the container's standard input. For a container with `OpenStdin`.
    pub fn attach_input(&self, name: &str) -> crate::Result<std::os::unix::net::UnixStream> {
        use std::os::fd::AsRawFd;
        let c = self.get(name)?;
        if !c.is_running() {
            return Err(ContainerError::Conflict {
                reason: format!("container {} is not running", c.record.id),
            }
            .into());
        }
        if !c.record.config.open_stdin {
            return Err(ContainerError::Invalid {
                reason: format!(
                    "container {} was not created with its input open",
                    c.record.id
                ),
            }
            .into());
        }
        // Through the bundle's descriptor: its path may be longer than an address holds.
        let dir = std::fs::File::open(&c.bundle).map_err(io_err("open the container's bundle"))?;
        let path = format!("/proc/self/fd/{}/attach.sock", dir.as_raw_fd());
        std::os::unix::net::UnixStream::connect(&path)
            .map_err(io_err("connect to the container's input"))
    }
}
