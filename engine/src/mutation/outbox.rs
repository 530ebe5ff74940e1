//! Durable outboxes: one per subscriber, in the store of the instance it subscribes to, so an
//! event's entry commits in the same atomic batch as the write it describes. A subscriber's
//! worker reads its outbox in order, applies a run of events, and acknowledges them by deleting
//! them; a crash before the acknowledgement means the run is applied again after the restart,
//! so subscribers must be idempotent (they recompute from the state at the event's version).
//!
//! Key: `0x04 ‖ subscriber id ‖ 0x00 ‖ sequence u64 BE`; value: the event as JSON.

use std::sync::Arc;

use tessera_storage::versioned::{prefix_end, space};
use tessera_storage::{Durability, KvStore, WriteBatch};

use crate::sync::SyncEvent;
use crate::{Error, Result};

/// What a subscriber does with its events.
pub trait Subscriber: Send + Sync {
    /// Applies a run of events, oldest first. An error leaves them in the outbox, to be
    /// retried.
    fn apply(&self, events: &[SyncEvent]) -> Result<()>;
}

/// A durable subscription: which events of which instance go to whom.
pub struct Subscription {
    /// Stable across restarts and unique per server, without NUL bytes: the outbox is found by
    /// it. By convention `<subscriber DataUUID>/<purpose>`.
    pub id: String,
    /// DataUUID of the publishing instance.
    pub publisher: String,
    pub events: Vec<&'static str>,
    /// The publisher's store: the outbox lives beside the data it describes.
    pub kv: Arc<dyn KvStore>,
    pub handler: Arc<dyn Subscriber>,
    /// How long the worker waits for events to stop arriving before it applies them (ten
    /// times that at most), so that a burst of writes is applied as one run (zero: at once).
    pub gather: std::time::Duration,
    /// Other subscribers wait for this one (`Mutations::settle_where`) from inside their own
    /// deliveries, so its parallel work runs on a pool of its own (`background`).
    pub awaited: bool,
}

/// Events a worker takes in one run at most.
pub const RUN: usize = 256;

pub fn prefix(id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(id.len() + 2);
    k.push(space::OUTBOX);
    k.extend_from_slice(id.as_bytes());
    k.push(0);
    k
}

/// Adds `event` to the outbox `id` in `batch`.
pub fn put(batch: &mut WriteBatch, id: &str, seq: u64, event: &SyncEvent) {
    let mut key = prefix(id);
    key.extend_from_slice(&seq.to_be_bytes());
    batch.put(key, serde_json::to_vec(event).expect("events serialize"));
}

/// The oldest `limit` entries of outbox `id`: (key, event).
pub fn read(kv: &dyn KvStore, id: &str, limit: usize) -> Result<Vec<(Vec<u8>, SyncEvent)>> {
    let lo = prefix(id);
    let mut out = Vec::new();
    kv.scan(&lo, &prefix_end(&lo), &mut |k, v| {
        let event = serde_json::from_slice(v)
            .map_err(|e| tessera_storage::Error::Corrupt(format!("outbox entry: {e}")))?;
        out.push((k.to_vec(), event));
        Ok(out.len() < limit)
    })?;
    Ok(out)
}

/// Removes acknowledged entries. Not synced on its own (`Durability::Lazy`): an
/// acknowledgement lost to a crash only makes the worker apply its run again.
pub fn ack(kv: &dyn KvStore, keys: Vec<Vec<u8>>) -> Result<()> {
    let mut batch = WriteBatch::new();
    batch.durability = Durability::Lazy;
    for k in keys {
        batch.delete(k);
    }
    Ok(kv.write(batch)?)
}

/// The sequence number of the oldest entry of outbox `id`, if any.
pub fn oldest_seq(kv: &dyn KvStore, id: &str) -> Result<Option<u64>> {
    let lo = prefix(id);
    let mut out = None;
    kv.scan(&lo, &prefix_end(&lo), &mut |k, _| {
        out = k[k.len() - 8..].try_into().ok().map(u64::from_be_bytes);
        Ok(false)
    })?;
    Ok(out)
}

/// How many entries wait in outbox `id`.
pub fn len(kv: &dyn KvStore, id: &str) -> Result<usize> {
    let lo = prefix(id);
    let mut n = 0;
    kv.scan(&lo, &prefix_end(&lo), &mut |_, _| {
        n += 1;
        Ok(true)
    })?;
    Ok(n)
}

/// Checks a subscription id can name an outbox.
pub fn check_id(id: &str) -> Result<()> {
    if id.is_empty() || id.contains('\0') {
        return Err(Error::Internal(format!("bad subscription id {id:?}")));
    }
    Ok(())
}
