//! The names a user-defined network's name server answers for: one records file per
//! network, rewritten as containers join and leave it.
//! A line per address, `IP NAME SHORT-ID ALIAS...`: IPv4, and IPv6 on an IPv6 network.

use super::*;

/// What a container's record (written by the containers, in the database) says of the
/// names it goes by on its networks: its name and ID, the aliases on the network its mode
/// names (unless it left it), and those on the networks it was connected to.
#[derive(Deserialize)]
pub(super) struct Named {
    id: String,
    name: String,
    config: Naming,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct Naming {
    network_aliases: Vec<String>,
    extra_networks: Vec<NetworkAttachment>,
    network_detached: bool,
}

impl Networks<'_> {
    /// The names of a user-defined network's containers, for their name servers.
    pub(crate) fn dns_records_path(&self, network_id: &str) -> PathBuf {
        self.st.root.join("dns").join(network_id)
    }

    /// What the container's record says of the names it goes by on its networks (`None`:
    /// it is gone).
    pub(super) fn naming_of(&self, container_id: &str) -> crate::Result<Option<Named>> {
        let json: Option<String> = self.st.db.read(|tx| {
            Ok::<_, crate::Error>(
                tx.query_row(
                    "SELECT config FROM containers WHERE id = ?1",
                    params![container_id],
                    |r| r.get(0),
                )
                .optional()?,
            )
        })?;
        Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
    }

    /// The names a container answers to on a network: its name, its short ID and its
    /// aliases there (`None`: it is gone).
    pub(super) fn names_on(
        &self,
        container_id: &str,
        network: &str,
        network_id: &str,
    ) -> crate::Result<Option<Vec<String>>> {
        let Some(c) = self.naming_of(container_id)? else {
            return Ok(None);
        };
        let mut names = vec![c.name.clone(), c.id[..12].to_string()];
        let extra = c
            .config
            .extra_networks
            .iter()
            .find(|a| a.network == network || a.network == network_id);
        // The mode's network may be named by an ID prefix: its aliases are the others'.
        let aliases = match extra {
            Some(a) => &a.aliases,
            None if !c.config.network_detached => &c.config.network_aliases,
            None => &Vec::new(),
        };
        names.extend(aliases.iter().cloned());
        Ok(Some(names))
    }

    /// Rewrites a network's records file (`IP NAME SHORT-ID ALIAS...` per running
    /// container), atomically: the monitors re-read it when it changes.
    /// Not for an overlay network, whose file holds every host's containers, written from
    /// the cluster store's places (`program_overlay`).
    pub(super) fn write_dns_records(&self, network_id: &str) -> crate::Result<()> {
        let mut text = String::new();
        for ep in self.endpoints_of(network_id)? {
            let Some(names) = self.names_on(&ep.container_id, &ep.network, &ep.network_id)? else {
                continue;
            };
            let names = names.join(" ");
            // A line per address: IPv4, and IPv6 on an IPv6 network.
            text.push_str(&format!("{} {names}\n", ep.ip));
            if let Some(ip6) = ep.ip6 {
                text.push_str(&format!("{ip6} {names}\n"));
            }
        }
        self.write_records_file(network_id, &text)
    }

    /// Replaces a network's records file with `text`, atomically.
    pub(super) fn write_records_file(&self, network_id: &str, text: &str) -> crate::Result<()> {
        let path = self.dns_records_path(network_id);
        let dir = self.st.root.join("dns");
        std::fs::create_dir_all(&dir).map_err(io_err(format!("create {}", dir.display())))?;
        let tmp = dir.join(format!(".{network_id}.{}", std::process::id()));
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(io_err(format!("write {}", path.display())))
    }
}
