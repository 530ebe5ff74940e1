//! Sync events (spec §6.1): an instance publishes events about its data, and instances that
//! sync to it derive their own data from them (annotation ← labelmap, labelsz ← annotation,
//! meshes ← labelmap). Durable subscribers get them through their outbox
//! (`mutation::outbox`); the in-memory [`SyncBus`] lets a process watch them live (tests,
//! streams). Either way an event is seen only after the write it describes committed.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tessera_storage::VersionId;

/// Event names, as DVID spells them.
pub const BLOCK_INGEST: &str = "BLOCK_INGEST";
pub const BLOCK_MUTATE: &str = "BLOCK_MUTATE";
pub const MERGE_BLOCK: &str = "MERGE_BLOCK";
pub const SPLIT_LABEL: &str = "SPLIT_LABEL";
pub const CLEAVE_LABEL: &str = "CLEAVE_LABEL";
/// An annotation instance's points changed label membership (added, deleted, moved, or
/// followed a label edit): labelsz recounts the labels named.
pub const ANNOTATION_MOD_ELEMENTS: &str = "ANNOTATION_MOD_ELEMENTS";
/// Tessera's own: a mutation-log record was committed (`Delta::Logged`), for log followers
/// such as the NATS stream (`Mutations::follow_log`).
pub const MUTATION_LOGGED: &str = "MUTATION_LOGGED";

/// Tessera's own: scale-0 label blocks whose lower resolutions are still to be rebuilt
/// (`Delta::Image`, the blocks' coordinates); a labelmap hears its own (`labelmap::pyramid`).
pub const DOWNRES: &str = "DOWNRES";

/// Every event name, for reading events back from an outbox.
pub const EVENTS: &[&str] = &[
    DOWNRES,
    BLOCK_INGEST,
    BLOCK_MUTATE,
    MERGE_BLOCK,
    SPLIT_LABEL,
    CLEAVE_LABEL,
    ANNOTATION_MOD_ELEMENTS,
    MUTATION_LOGGED,
];

/// One scale-0 label block a write changed: where, and the supervoxels it held before and
/// holds now (sorted). Events stay small enough to be kept durably; a subscriber that needs
/// the voxels reads the block at the event's version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockChange {
    /// Block coordinate (x, y, z).
    pub coord: [i32; 3],
    /// The supervoxels of the block before the write; `None` for `BLOCK_INGEST` (no block was
    /// there).
    pub prev: Option<Vec<u64>>,
    pub labels: Vec<u64>,
}

/// What an event says changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Delta {
    /// `BLOCK_INGEST`, `BLOCK_MUTATE`: rewritten blocks.
    Blocks(Vec<BlockChange>),
    /// `MERGE_BLOCK`: bodies merged into `target`; `blocks` are the target's blocks after the
    /// merge, sorted (x, y, z coordinates in (z, y, x) order).
    Merge {
        target: u64,
        merged: Vec<u64>,
        blocks: Vec<[i32; 3]>,
    },
    /// `SPLIT_LABEL`: voxels of `target` now belong to `new_label`, in `blocks`.
    Split {
        target: u64,
        new_label: u64,
        blocks: Vec<[i32; 3]>,
        voxels: u64,
    },
    /// `BLOCK_INGEST` of an image instance, `DOWNRES` of a labelmap: the blocks written,
    /// sorted in (z, y, x) order.
    Image(Vec<[i32; 3]>),
    /// `ANNOTATION_MOD_ELEMENTS`: the labels whose set of points changed, ascending.
    Labels(Vec<u64>),
    /// `CLEAVE_LABEL`: supervoxels moved from `target` to `cleaved_label`.
    Cleave {
        target: u64,
        cleaved_label: u64,
        supervoxels: Vec<u64>,
    },
    /// `MUTATION_LOGGED`: the record as the log holds it, `CommitSeq` included.
    Logged(serde_json::Value),
}

/// One published event: what happened, to which instance, at which version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncEvent {
    /// `BLOCK_INGEST`, `MERGE_BLOCK`, … (one of [`EVENTS`]).
    pub name: &'static str,
    /// DataUUID of the publishing instance.
    pub publisher: String,
    pub version: VersionId,
    pub mutation_id: u64,
    pub delta: Delta,
}

/// A `SyncEvent` as read back from storage, its name not yet checked.
#[derive(Deserialize)]
struct StoredEvent {
    name: String,
    publisher: String,
    version: VersionId,
    mutation_id: u64,
    delta: Delta,
}

// By hand rather than derived: a derived impl would borrow `name` from the input.
impl<'de> Deserialize<'de> for SyncEvent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<SyncEvent, D::Error> {
        let e = StoredEvent::deserialize(d)?;
        let name = EVENTS
            .iter()
            .find(|n| **n == e.name)
            .copied()
            .ok_or_else(|| serde::de::Error::custom(format!("unknown sync event {:?}", e.name)))?;
        Ok(SyncEvent {
            name,
            publisher: e.publisher,
            version: e.version,
            mutation_id: e.mutation_id,
            delta: e.delta,
        })
    }
}

type Topic = (String, &'static str);

/// Subscribers by (publisher DataUUID, event name). Each subscriber has its own channel, so it
/// sees its events in publication order and processes them at its own pace.
#[derive(Default)]
pub struct SyncBus {
    subscribers: Mutex<HashMap<Topic, Vec<Sender<Arc<SyncEvent>>>>>,
}

impl SyncBus {
    pub fn subscribe(&self, publisher: &str, event: &'static str) -> Receiver<Arc<SyncEvent>> {
        let (tx, rx) = channel();
        self.subscribers
            .lock()
            .entry((publisher.to_string(), event))
            .or_default()
            .push(tx);
        rx
    }

    /// Whether anyone listens: publishers skip building events nobody receives.
    pub fn has_subscribers(&self, publisher: &str, event: &'static str) -> bool {
        self.subscribers
            .lock()
            .get(&(publisher.to_string(), event))
            .is_some_and(|s| !s.is_empty())
    }

    /// Delivers `event` to every subscriber of its topic; subscribers that went away are
    /// dropped.
    pub fn publish(&self, event: Arc<SyncEvent>) {
        let mut subs = self.subscribers.lock();
        if let Some(list) = subs.get_mut(&(event.publisher.clone(), event.name)) {
            list.retain(|tx| tx.send(event.clone()).is_ok());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &'static str, publisher: &str) -> SyncEvent {
        SyncEvent {
            name,
            publisher: publisher.into(),
            version: 1,
            mutation_id: 7,
            delta: Delta::Blocks(vec![]),
        }
    }

    #[test]
    fn delivers_by_topic_in_order_and_drops_gone_subscribers() {
        let bus = SyncBus::default();
        let rx = bus.subscribe("a", BLOCK_INGEST);
        let gone = bus.subscribe("a", BLOCK_INGEST);
        drop(gone);
        assert!(!bus.has_subscribers("b", BLOCK_INGEST));
        bus.publish(Arc::new(event(BLOCK_INGEST, "a")));
        bus.publish(Arc::new(event(BLOCK_MUTATE, "a")));
        bus.publish(Arc::new(event(BLOCK_INGEST, "b")));
        let mut e = event(BLOCK_INGEST, "a");
        e.mutation_id = 8;
        bus.publish(Arc::new(e));
        let got: Vec<u64> = rx.try_iter().map(|e| e.mutation_id).collect();
        assert_eq!(got, [7, 8]);
        assert_eq!(
            bus.subscribers.lock()[&("a".to_string(), BLOCK_INGEST)].len(),
            1
        );
    }

    #[test]
    fn events_round_trip_through_json() {
        let e = SyncEvent {
            delta: Delta::Blocks(vec![BlockChange {
                coord: [-1, 2, 3],
                prev: Some(vec![4, u64::MAX]),
                labels: vec![5],
            }]),
            ..event(MERGE_BLOCK, "a")
        };
        let back: SyncEvent = serde_json::from_slice(&serde_json::to_vec(&e).unwrap()).unwrap();
        assert_eq!(back, e);
        let bad = serde_json::to_vec(&e).unwrap();
        let bad = String::from_utf8(bad)
            .unwrap()
            .replace("MERGE_BLOCK", "NO_SUCH");
        assert!(serde_json::from_str::<SyncEvent>(&bad).is_err());
    }
}
