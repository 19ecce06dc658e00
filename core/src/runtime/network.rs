//! A container on its networks: the addresses it holds while it starts and runs, which
//! it alone can say are no longer in use (its monitor's life), and `network connect` and
//! `disconnect`, which change its configuration and, while it runs, its namespace.

use super::{Containers, NetMode, io_err};
use crate::error::ErrorKind;
use crate::network::redirect_dns;
use crate::network::{NetworkAttachment, NetworkError};

fn invalid(reason: impl Into<String>) -> crate::Error {
    NetworkError::Invalid {
        reason: reason.into(),
    }
    .into()
}

impl Containers<'_> {
    /// Forgets the endpoints on `network_id` of containers that no longer run: their
    /// monitors have let go of the namespaces, and with them the devices.
    pub(crate) fn release_stale(&self, network_id: &str) -> crate::Result<()> {
        let mut seen = std::collections::HashSet::new();
        for ep in self.networks().endpoints_of(network_id)? {
            if seen.insert(ep.container_id.clone()) {
                self.release_unused(&ep.container_id)?;
            }
        }
        Ok(())
    }

    /// Gives a starting container its namespace and its place on each of `networks`
    /// ([`crate::network::Networks::attach`]), under its network lock, once the endpoints
    /// that containers no longer use on those networks are released (their addresses
    /// free again).
    pub(crate) fn attach_networks(
        &self,
        container_id: &str,
        networks: &[NetworkAttachment],
        ports: &[crate::network::firewall::PortMap],
    ) -> crate::Result<Vec<crate::network::Endpoint>> {
        let _lock = self.network_lock(container_id, true)?;
        for a in networks {
            if let Ok(rec) = self.networks().find(&a.network) {
                self.release_stale(&rec.id)?;
            }
        }
        self.networks().attach(container_id, networks, ports)
    }

    /// Releases a container's endpoints unless they are in use: the container runs, or it
    /// is starting (it has not run yet and a process that made one of its endpoints still
    /// lives). Judged and done under its network lock, which a start holds while it gives
    /// the container new endpoints: those are never taken by a look that judged the old.
    /// A lock held elsewhere means a start is under way: in use.
    pub(crate) fn release_unused(&self, container_id: &str) -> crate::Result<()> {
        // A running container's are in use, and saying so needs no lock: every start on
        // the network looks at every container on it. (A stale answer only leaves the
        // release to the next look.)
        if self.get(container_id).is_ok_and(|c| c.is_running()) {
            return Ok(());
        }
        let _lock = match self.network_lock(container_id, false) {
            Ok(Some(lock)) => Some(lock),
            Ok(None) => return Ok(()),
            // Removed: nothing starts it again.
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        // The makers are asked first: one that has ended recorded how its start went before
        // it did, so the status read after is the start's outcome, never a moment of it.
        let maker_lives = self
            .networks()
            .container_endpoints(container_id)?
            .iter()
            .any(|ep| crate::util::process_alive(ep.owner.0, ep.owner.1));
        let in_use = match self.get(container_id) {
            Ok(c) => c.is_running() || (maker_lives && c.status == super::Status::Created),
            Err(e) if e.kind() == ErrorKind::NotFound => false,
            Err(e) => return Err(e),
        };
        if !in_use {
            self.networks().release_endpoints(container_id)?;
        }
        Ok(())
    }

    /// The lock that orders the changes to a container's endpoints: an exclusive `flock`
    /// on `network.lock` in its bundle, held until the file returned is dropped. `None`
    /// when another holds it and `wait` is false; `NotFound` when the container has no
    /// bundle.
    pub(crate) fn network_lock(
        &self,
        container_id: &str,
        wait: bool,
    ) -> crate::Result<Option<std::fs::File>> {
        use rustix::fs::FlockOperation;
        let path = self
            .containers_dir()
            .join(container_id)
            .join("network.lock");
        let op = if wait {
            FlockOperation::LockExclusive
        } else {
            FlockOperation::NonBlockingLockExclusive
        };
        crate::util::flock_file(&path, op).map_err(io_err(format!("lock {}", path.display())))
    }

    /// Writes the list of records files a container's name server reads: those of the
    /// user-defined networks it is on now.
    pub(crate) fn write_dns_list(
        &self,
        container_id: &str,
        bundle: &std::path::Path,
    ) -> crate::Result<()> {
        let mut text = String::new();
        let endpoints = self.networks().container_endpoints(container_id)?;
        // The record is read (for the links given) only on a user-defined network: a start
        // on the default bridge reads nothing more.
        let mut attachments = Vec::new();
        if endpoints.iter().any(|e| e.network != "bridge") {
            let path = self.networks().netns_path(container_id);
            redirect_dns(&path).map_err(io_err("redirect 127.0.0.11:53 in the container"))?;
            attachments = self.get(container_id)?.record.config.attachments();
        }
        for ep in endpoints {
            if ep.network != "bridge" {
                text.push_str(&format!(
                    "{}\n",
                    self.networks().dns_records_path(&ep.network_id).display()
                ));
                // Its links on the network: `link ALIAS NAME`, the alias answered as the
                // name is (names and aliases hold no spaces: checked at create).
                let given = attachments
                    .iter()
                    .find(|a| a.network == ep.network || a.network == ep.network_id);
                for l in given.map(|a| a.links.as_slice()).unwrap_or_default() {
                    if let Some((name, alias)) = l.split_once(':') {
                        text.push_str(&format!("link {alias} {name}\n"));
                    }
                }
            }
        }
        let path = bundle.join("dns.list");
        let tmp = bundle.join(".dns.list.tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(io_err(format!("write {}", path.display())))
    }

    /// `network connect`: a running container joins the network at once (as `ethN`), a
    /// stopped one at its next start.
    pub fn connect(&self, container: &str, endpoint: &NetworkAttachment) -> crate::Result<()> {
        let rec = self.networks().find(&endpoint.network)?;
        let given = crate::network::Given::of(endpoint)?;
        let c = self.get(container)?;
        let mode = NetMode::of(&c.record.config);
        match &mode {
            NetMode::Bridge(_) => {}
            NetMode::Host => {
                return Err(invalid(
                    "container cannot be disconnected from host network or connected to host network",
                ));
            }
            _ => {
                return Err(invalid(format!(
                    "container sharing network namespace with another container or host cannot be connected to any other network ({})",
                    mode.name()
                )));
            }
        }
        if rec.driver != "bridge" && !rec.overlay() {
            return Err(invalid(format!(
                "container cannot be connected to network {} (driver {})",
                rec.name, rec.driver
            )));
        }
        let on = |n: &str| n == rec.name || n == rec.id;
        let NetMode::Bridge(primary) = &mode else {
            unreachable!()
        };
        // Back on the network its mode names, it is that network's again (Docker keeps
        // `NetworkMode` through a disconnect).
        let rejoins = c.record.config.network_detached
            && self.networks().find(primary).is_ok_and(|p| p.id == rec.id);
        if c.record.config.attachments().iter().any(|a| {
            on(&a.network)
                || self
                    .networks()
                    .find(&a.network)
                    .is_ok_and(|n| n.id == rec.id)
        }) {
            return Err(NetworkError::Invalid {
                reason: format!(
                    "endpoint with name {} already exists in network {}",
                    c.record.name, rec.name
                ),
            }
            .into());
        }
        if (given.ip.is_some() || given.ip6.is_some()) && rec.predefined() {
            return Err(invalid(
                "user specified IP address is supported on user defined networks only",
            ));
        }
        rec.check_ip6(given.ip6.is_some())?;
        let attachment = NetworkAttachment {
            network: rec.name.clone(),
            ..endpoint.clone()
        };
        let first = c.record.config.attachments().is_empty();
        self.update_config(&c.record.id, |cfg| {
            if rejoins {
                cfg.network_detached = false;
                cfg.ip = attachment.ip.clone();
                cfg.ip6 = attachment.ip6.clone();
                cfg.link_local_ips = attachment.link_local_ips.clone();
                cfg.network_aliases = attachment.aliases.clone();
                cfg.mac_address = attachment.mac.clone();
                cfg.network_driver_opts = attachment.driver_opts.clone();
                cfg.network_links = attachment.links.clone();
            } else {
                cfg.extra_networks.push(attachment.clone());
            }
            Ok(())
        })?;
        if c.is_running() {
            self.release_stale(&rec.id)?;
            let n = self.networks().container_endpoints(&c.record.id)?.len();
            // A container that had no network gets its default route from this one.
            let plugged =
                self.networks()
                    .plug(&c.record.id, &rec.id, given, &[], &format!("eth{n}"), first);
            if let Err(e) = plugged {
                let _ = self.update_config(&c.record.id, |cfg| {
                    if rejoins {
                        cfg.network_detached = true;
                    } else {
                        cfg.extra_networks.retain(|a| !on(&a.network));
                    }
                    Ok(())
                });
                return Err(e);
            }
            self.write_dns_list(&c.record.id, &c.bundle)?;
            if !rec.predefined() {
                // Now the container asks its own name server.
                let conf =
                    std::fs::read_to_string(c.bundle.join("resolv.conf")).unwrap_or_default();
                if !conf.contains("nameserver 127.0.0.11") {
                    let body: String = conf
                        .lines()
                        .filter(|l| !l.trim_start().starts_with("nameserver"))
                        .map(|l| format!("{l}\n"))
                        .collect();
                    std::fs::write(
                        c.bundle.join("resolv.conf"),
                        format!("nameserver 127.0.0.11\n{body}options ndots:0\n"),
                    )
                    .map_err(io_err("write resolv.conf"))?;
                }
            }
        }
        Ok(())
    }

    /// `network disconnect`: off the network now if it runs, and at later starts.
    pub fn disconnect(&self, network: &str, container: &str) -> crate::Result<()> {
        let rec = self.networks().find(network)?;
        let c = self.get(container)?;
        let on = |n: &str| n == rec.name || n == rec.id;
        let mode = NetMode::of(&c.record.config);
        if mode == NetMode::Host {
            return Err(invalid(
                "container cannot be disconnected from host network or connected to host network",
            ));
        }
        let primary = !c.record.config.network_detached
            && matches!(&mode, NetMode::Bridge(p) if self.networks().find(p).is_ok_and(|p| p.id == rec.id));
        let extra = c
            .record
            .config
            .extra_networks
            .iter()
            .any(|a| on(&a.network));
        if !primary && !extra {
            return Err(invalid(format!(
                "container {} is not connected to network {}",
                c.record.name, rec.name
            )));
        }
        if c.is_running() {
            for ep in self.networks().container_endpoints(&c.record.id)? {
                if ep.network_id == rec.id {
                    self.networks().unplug(&ep)?;
                }
            }
            self.write_dns_list(&c.record.id, &c.bundle)?;
        }
        self.update_config(&c.record.id, |cfg| {
            if primary {
                // The mode stays; the container is on the others only (with none left,
                // loopback only).
                cfg.network_detached = true;
                cfg.ip = None;
                cfg.ip6 = None;
                cfg.link_local_ips.clear();
                cfg.network_aliases.clear();
                cfg.network_links.clear();
            } else {
                cfg.extra_networks.retain(|a| !on(&a.network));
            }
            Ok(())
        })
    }
}
