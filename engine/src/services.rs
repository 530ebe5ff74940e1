//! What every datatype works with besides its own data, owned by the engine and handed to each
//! request's context: the compute backend, the mutation service, per-instance in-memory state,
//! and the server's options that datatypes read.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::compute::Compute;
use crate::mutation::Mutations;

pub struct Services {
    /// The kernel backend every datatype computes with, chosen once at start.
    pub compute: Arc<dyn Compute>,
    pub mutations: Arc<Mutations>,
    /// Whether labelmap `POST split` is served (`[server] allow_labelmap_split`).
    pub allow_labelmap_split: bool,
    /// Per-instance state a datatype keeps in memory (locks, caches), by instance id.
    instance_state: Mutex<HashMap<u32, Arc<dyn Any + Send + Sync>>>,
}

impl Services {
    pub fn new(compute: Arc<dyn Compute>, allow_labelmap_split: bool) -> Services {
        Services {
            compute,
            mutations: Arc::new(Mutations::default()),
            allow_labelmap_split,
            instance_state: Mutex::default(),
        }
    }

    /// Forgets every instance's in-memory state (a read replica, after the writer changed the
    /// stores); each is made again on next use.
    pub fn drop_instance_states(&self) {
        self.instance_state.lock().clear();
    }

    /// The in-memory state a datatype keeps for instance `id`, made by `init` on first use.
    /// Panics if the same instance is asked for state of two types (a datatype bug).
    pub fn instance_state<T: Any + Send + Sync>(
        &self,
        id: u32,
        init: impl FnOnce() -> T,
    ) -> Arc<T> {
        let state = self
            .instance_state
            .lock()
            .entry(id)
            .or_insert_with(|| Arc::new(init()))
            .clone();
        state
            .downcast::<T>()
            .unwrap_or_else(|_| panic!("instance {id} holds state of another type"))
    }
}
