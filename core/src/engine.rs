//! The facade every front door uses.
//!
//! [`Engine`] is the opened state root ([`State`]) and the resources over it —
//! [`Images`], [`Volumes`], [`Networks`], [`Containers`] — composed: it opens the root, has
//! the resources recover what a killed process left, and does what takes more than one of
//! them (a network's users are the containers', a volume's users are judged once the
//! containers have looked at their monitors). Every operation of the Docker Engine API is
//! [`crate::api::Api`], implemented by calling these.

use std::collections::HashSet;
use std::sync::Arc;

use crate::error::Result;
use crate::image::Images;
use crate::network::{Network, Networks};
use crate::runtime::Containers;
use crate::state::State;
pub use crate::state::{DEFAULT_ROOT, Options, StateError as EngineError, StorageDriver};
use crate::volume::Volumes;

/// The engine. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct Engine {
    state: Arc<State>,
}

impl Engine {
    /// Opens (creating if needed) a state root, embedded in this process.
    pub fn open(opts: &Options) -> Result<Engine> {
        let state = State::open(opts)?;
        if Images::new(&state).recover()? {
            Containers::new(&state).cleanup_bundles()?;
        }
        // The containers of a build that was killed midway, and what a receive of a moved
        // container whose receiver was killed made of it.
        crate::build::run::remove_orphans(&Containers::new(&state), &state)?;
        Containers::new(&state).sweep_moves_in();
        // The host's devices that removed roots left: best effort, `network prune` says why
        // it could not.
        let _ = Networks::new(&state).sweep_bridges();
        Ok(Engine {
            state: Arc::new(state),
        })
    }

    /// The opened root.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Keeps this host's side of the cluster's overlay networks current, on a thread of
    /// its own, where the engine is in a cluster (`ketch daemon` does). Returns whether it
    /// does.
    pub fn keep_cluster(&self) -> Result<bool> {
        crate::cluster::keep(self.state.clone())
    }

    pub fn images(&self) -> Images<'_> {
        Images::new(&self.state)
    }

    pub fn volumes(&self) -> Volumes<'_> {
        Volumes::new(&self.state)
    }

    pub fn networks(&self) -> Networks<'_> {
        Networks::new(&self.state)
    }

    pub fn registries(&self) -> crate::registry::Registries<'_> {
        crate::registry::Registries::new(&self.state)
    }

    pub fn containers(&self) -> Containers<'_> {
        Containers::new(&self.state)
    }

    pub fn root(&self) -> &std::path::Path {
        self.state.root()
    }

    pub fn storage_driver(&self) -> &'static str {
        self.state.storage_driver()
    }

    /// The root's ID, made at its first open (`GET /info`'s `ID`).
    pub fn engine_id(&self) -> &str {
        self.state.engine_id()
    }

    /// The networks, with the endpoints of the containers still on them (the containers
    /// release those of the ones that stopped first).
    pub fn network_list(&self) -> Result<Vec<Network>> {
        let networks = self.networks();
        for n in networks.load_networks()? {
            self.containers().release_stale(&n.id)?;
        }
        networks.list()
    }

    pub fn network_inspect(&self, name: &str) -> Result<Network> {
        let rec = self.networks().find(name)?;
        self.containers().release_stale(&rec.id)?;
        self.networks().inspect(&rec.id)
    }

    /// `network rm`: refused while a container runs on it, and for the predefined ones.
    pub fn network_remove(&self, name: &str) -> Result<()> {
        let rec = self.networks().find(name)?;
        self.containers().release_stale(&rec.id)?;
        self.networks().remove(&rec.id)
    }

    /// `network prune`: the user-defined networks no container (running or not) names.
    pub fn network_prune(&self) -> Result<Vec<String>> {
        let mut named = HashSet::new();
        for c in self.containers().list(true)? {
            named.extend(c.record.config.attachments().into_iter().map(|a| a.network));
        }
        for n in self.networks().load_networks()? {
            if !named.contains(&n.name) && !named.contains(&n.id) {
                self.containers().release_stale(&n.id)?;
            }
        }
        self.networks().prune(&named)
    }

    /// `volume rm`: refused while a container uses it; with `force`, a volume only stopped
    /// containers use goes. The containers look at their monitors first, so that what the
    /// volumes read of them is now.
    pub fn volume_remove(&self, name: &str, force: bool) -> Result<()> {
        self.containers().list(true)?;
        self.volumes().remove(name, force)
    }

    /// `volume prune`: unused anonymous volumes, or with `all` every unused one.
    pub fn volume_prune(&self, all: bool) -> Result<(Vec<String>, u64)> {
        self.containers().list(true)?;
        self.volumes().prune(all)
    }

    /// Container names by ID, for the `Containers` map of a network.
    pub fn container_names(&self) -> Result<std::collections::BTreeMap<String, String>> {
        Ok(self
            .containers()
            .list(true)?
            .into_iter()
            .map(|c| (c.record.id, c.record.name))
            .collect())
    }
}
