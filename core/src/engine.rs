//! The facade every front door uses.
//!
//! [`Engine`] is the opened state root ([`State`]) with every operation of the engine,
//! named after the Docker Engine API's, taking and returning [`crate::model`] types. It
//! opens the root and has the resources recover what a killed process left.

use std::sync::Arc;

use crate::error::Result;
use crate::state::State;
pub use crate::state::{DEFAULT_ROOT, Options, StateError as EngineError, StorageDriver};

/// The engine. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct Engine {
    state: Arc<State>,
}

impl Engine {
    /// Opens (creating if needed) a state root, embedded in this process.
    pub fn open(opts: &Options) -> Result<Engine> {
        let state = State::open(opts)?;
        state.recover()?;
        // The host's devices that removed roots left: best effort, `network prune` says why
        // it could not.
        let _ = state.sweep_bridges();
        Ok(Engine {
            state: Arc::new(state),
        })
    }
}

impl std::ops::Deref for Engine {
    type Target = State;
    fn deref(&self) -> &State {
        &self.state
    }
}
