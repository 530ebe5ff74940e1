use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tessera_storage::{KvStore, MemoryStore, WriteBatch};

use super::*;
use crate::sync::{BLOCK_INGEST, Delta, MERGE_BLOCK, SyncEvent};

/// Remembers what it applied; fails its first `fail` runs.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<u64>>,
    fail: Mutex<usize>,
}

impl Subscriber for Recorder {
    fn apply(&self, events: &[SyncEvent]) -> Result<()> {
        let mut fail = self.fail.lock();
        if *fail > 0 {
            *fail -= 1;
            return Err(crate::Error::Internal("not now".into()));
        }
        self.seen
            .lock()
            .extend(events.iter().map(|e| e.mutation_id));
        Ok(())
    }
}

fn event(name: &'static str, id: u64) -> SyncEvent {
    SyncEvent {
        name,
        publisher: "pub".into(),
        version: 1,
        mutation_id: id,
        delta: Delta::Merge {
            target: 1,
            merged: vec![2],
            blocks: vec![],
        },
    }
}

fn commit(service: &Mutations, kv: &Arc<dyn KvStore>, ids: &[u64]) {
    commit_then(service, kv, ids, || {});
}

/// `commit`, running `committed` between the write and the wake-up.
fn commit_then(service: &Mutations, kv: &Arc<dyn KvStore>, ids: &[u64], committed: impl FnOnce()) {
    let mut batch = WriteBatch::new();
    batch.put(b"data".to_vec(), ids[0].to_be_bytes().to_vec());
    service
        .commit_then(
            Commit {
                kv: kv.clone(),
                datatype: "test".into(),
                publisher: "pub".into(),
                instance: 1,
                version: 1,
                batch,
                records: vec![serde_json::json!({"MutationID": ids[0]})],
                events: ids.iter().map(|&i| event(MERGE_BLOCK, i)).collect(),
            },
            committed,
        )
        .unwrap();
}

fn subscription(kv: &Arc<dyn KvStore>, handler: Arc<Recorder>) -> Subscription {
    Subscription {
        id: "sub/test".into(),
        publisher: "pub".into(),
        events: vec![MERGE_BLOCK],
        kv: kv.clone(),
        handler,
        awaited: false,
        gather: std::time::Duration::ZERO,
    }
}

#[test]
fn delivers_in_order_after_commit_and_reports_idle() {
    let kv: Arc<dyn KvStore> = Arc::new(MemoryStore::new());
    let service = Arc::new(Mutations::new(false));
    let rec = Arc::new(Recorder::default());
    service.subscribe(subscription(&kv, rec.clone())).unwrap();
    assert!(service.wanted("pub", MERGE_BLOCK));
    assert!(!service.wanted("pub", BLOCK_INGEST));
    commit(&service, &kv, &[1, 2]);
    commit(&service, &kv, &[3]);
    assert!(service.wait_idle(Duration::from_secs(10)));
    assert_eq!(*rec.seen.lock(), [1, 2, 3]);
    assert_eq!(service.backlog().unwrap(), [("sub/test".to_string(), 0)]);
    // The log records committed with the data.
    assert_eq!(log::read(kv.as_ref(), 1, 1).unwrap().len(), 2);
}

#[test]
fn a_failed_run_is_retried_without_loss() {
    let kv: Arc<dyn KvStore> = Arc::new(MemoryStore::new());
    let service = Arc::new(Mutations::new(false));
    let rec = Arc::new(Recorder::default());
    *rec.fail.lock() = 2;
    service.subscribe(subscription(&kv, rec.clone())).unwrap();
    commit(&service, &kv, &[7, 8]);
    assert!(service.wait_idle(Duration::from_secs(20)));
    assert_eq!(*rec.seen.lock(), [7, 8]);
}

#[test]
fn events_kept_while_held_are_delivered_by_the_next_service() {
    let kv: Arc<dyn KvStore> = Arc::new(MemoryStore::new());
    let held = Arc::new(Mutations::new(true));
    let first = Arc::new(Recorder::default());
    held.subscribe(subscription(&kv, first.clone())).unwrap();
    commit(&held, &kv, &[1]);
    commit(&held, &kv, &[2, 3]);
    assert!(!held.wait_idle(Duration::from_millis(100)));
    assert_eq!(held.backlog().unwrap(), [("sub/test".to_string(), 3)]);
    drop(held);
    assert!(first.seen.lock().is_empty());
    // A "restart": a new service on the same store, the same subscription id.
    let service = Arc::new(Mutations::new(false));
    let rec = Arc::new(Recorder::default());
    service.subscribe(subscription(&kv, rec.clone())).unwrap();
    assert!(service.wait_idle(Duration::from_secs(10)));
    assert_eq!(*rec.seen.lock(), [1, 2, 3]);
}

#[test]
fn unsubscribing_drops_the_outbox() {
    let kv: Arc<dyn KvStore> = Arc::new(MemoryStore::new());
    let held = Arc::new(Mutations::new(true));
    held.subscribe(subscription(&kv, Arc::new(Recorder::default())))
        .unwrap();
    commit(&held, &kv, &[1]);
    held.unsubscribe("sub/test").unwrap();
    assert!(held.backlog().unwrap().is_empty());
    assert_eq!(outbox::len(kv.as_ref(), "sub/test").unwrap(), 0);
    assert!(held.wait_idle(Duration::from_millis(10)));
}

#[test]
fn counts_each_logged_mutation_once_it_is_durable() {
    let kv: Arc<dyn KvStore> = Arc::new(MemoryStore::new());
    let service = Mutations::new(true);
    let c = |records: Vec<serde_json::Value>| Commit {
        kv: kv.clone(),
        datatype: "labelmap".into(),
        publisher: "pub".into(),
        instance: 1,
        version: 1,
        batch: WriteBatch::new(),
        records,
        events: vec![],
    };
    let ((), samples) = crate::test_metrics::capture(|| {
        service
            .commit(c(vec![
                serde_json::json!({"Action": "merge"}),
                serde_json::json!({"Action": "cleave-complete"}),
            ]))
            .unwrap();
        // Unlogged writes (voxel ingest) are not mutations.
        service.commit(c(vec![])).unwrap();
    });
    assert_eq!(
        samples,
        [
            (
                "tessera_mutations_total{datatype=labelmap,action=merge}".to_string(),
                1.0
            ),
            (
                "tessera_mutations_total{datatype=labelmap,action=cleave}".to_string(),
                1.0
            ),
        ]
    );
}

/// A reader that resumes after the last sequence number it saw (the SSE stream, a log
/// follower) must miss nothing while commits race: no record may become visible after one
/// with a larger number.
#[test]
fn log_records_become_visible_in_sequence_order() {
    let kv: Arc<dyn KvStore> = Arc::new(MemoryStore::new());
    let service = Arc::new(Mutations::new(true));
    let (writers, each) = (8u64, 150u64);
    let reader = {
        let kv = kv.clone();
        std::thread::spawn(move || {
            let mut seen: Vec<(u64, u64)> = Vec::new();
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while (seen.len() as u64) < writers * each && std::time::Instant::now() < deadline {
                let after = seen.last().map(|(s, _)| *s);
                for (seq, rec) in log::read_after(kv.as_ref(), 1, 1, after).unwrap() {
                    let v: serde_json::Value = serde_json::from_slice(&rec).unwrap();
                    assert_eq!(v[COMMIT_SEQ], seq, "the record carries its key's sequence");
                    seen.push((seq, v["MutationID"].as_u64().unwrap()));
                }
            }
            seen
        })
    };
    let threads: Vec<_> = (0..writers)
        .map(|t| {
            let (service, kv) = (service.clone(), kv.clone());
            std::thread::spawn(move || {
                for i in 0..each {
                    commit(&service, &kv, &[t * 1000 + i]);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let seen = reader.join().unwrap();
    let mut ids: Vec<u64> = seen.iter().map(|(_, id)| *id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len() as u64,
        writers * each,
        "a reader resuming by sequence number missed records"
    );
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0));
}

#[derive(Default)]
struct Follower {
    records: Mutex<Vec<serde_json::Value>>,
}

impl Subscriber for Follower {
    fn apply(&self, events: &[SyncEvent]) -> Result<()> {
        for e in events {
            match &e.delta {
                Delta::Logged(r) => self.records.lock().push(r.clone()),
                other => panic!("a log follower got {other:?}"),
            }
        }
        Ok(())
    }
}

#[test]
fn log_followers_get_every_record_of_their_store_in_commit_order() {
    let (kv, other): (Arc<dyn KvStore>, Arc<dyn KvStore>) =
        (Arc::new(MemoryStore::new()), Arc::new(MemoryStore::new()));
    let service = Arc::new(Mutations::new(false));
    let follow = |kv: &Arc<dyn KvStore>, id: &str, f: Arc<Follower>| Subscription {
        id: id.into(),
        publisher: ANY_PUBLISHER.into(),
        events: vec![MUTATION_LOGGED],
        kv: kv.clone(),
        handler: f,
        awaited: false,
        gather: Duration::ZERO,
    };
    let (here, there) = (Arc::new(Follower::default()), Arc::new(Follower::default()));
    service
        .subscribe(follow(&kv, "log/here", here.clone()))
        .unwrap();
    service
        .subscribe(follow(&other, "log/there", there.clone()))
        .unwrap();
    // A follower wants no instance's ordinary events.
    assert!(!service.wanted("pub", MERGE_BLOCK));
    commit(&service, &kv, &[5]);
    commit(&service, &kv, &[3]);
    assert!(service.wait_idle(Duration::from_secs(10)));
    let got = here.records.lock().clone();
    assert_eq!(
        got.iter()
            .map(|r| r["MutationID"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [5, 3],
        "commit order, not mutation-id order"
    );
    assert!(got[0][COMMIT_SEQ].as_u64() < got[1][COMMIT_SEQ].as_u64());
    let logged: Vec<serde_json::Value> = log::read(kv.as_ref(), 1, 1)
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice(r).unwrap())
        .collect();
    assert_eq!(
        got, logged,
        "followers get the records as the log holds them"
    );
    assert!(
        there.records.lock().is_empty(),
        "another store's follower heard nothing"
    );
}

#[test]
fn sequence_numbers_keep_increasing_across_a_restart_with_the_clock_behind() {
    let meta: Arc<dyn KvStore> = Arc::new(MemoryStore::new());
    let first = Mutations::new(true);
    first.reserve_in(meta.clone()).unwrap();
    let last = first.next_seq();
    // The ceiling is an hour ahead of the clock: a "restart" now has its clock an hour behind
    // numbers that might have been handed out, and must start above them.
    let ceiling = u64::from_be_bytes(
        meta.get(SEQ_CEILING_KEY)
            .unwrap()
            .unwrap()
            .try_into()
            .unwrap(),
    );
    assert!(ceiling > last);
    let second = Mutations::new(true);
    second.reserve_in(meta.clone()).unwrap();
    let next = second.next_seq();
    assert!(next > ceiling, "{next} after a restart, ceiling {ceiling}");
}

/// Applies each run with a `par_iter`, so that its pool thread waits inside rayon, and then
/// records the highest mutation id it has applied.
#[derive(Default)]
struct Awaited {
    applied: AtomicU64,
}

impl Subscriber for Awaited {
    fn apply(&self, events: &[SyncEvent]) -> Result<()> {
        use rayon::prelude::*;
        let sum: u64 = (0..1u64 << 16).into_par_iter().map(|i| i % 7).sum();
        assert!(sum > 0);
        let top = events.iter().map(|e| e.mutation_id).max().unwrap_or(0);
        self.applied.fetch_max(top, Ordering::SeqCst);
        Ok(())
    }
}

/// Settles on `Awaited` from inside its own deliveries, as kept meshes at a coarse scale
/// settle on the pyramid, and counts the events it found not yet applied there.
struct Waiter {
    service: Weak<Mutations>,
    awaited: Arc<Awaited>,
    early: Mutex<Vec<u64>>,
}

impl Subscriber for Waiter {
    fn apply(&self, events: &[SyncEvent]) -> Result<()> {
        let service = self.service.upgrade().expect("the service");
        service.settle_where(|id| id == "awaited/test", Duration::from_secs(2))?;
        let applied = self.awaited.applied.load(Ordering::SeqCst);
        let mut early = self.early.lock();
        early.extend(
            events
                .iter()
                .map(|e| e.mutation_id)
                .filter(|&id| id > applied),
        );
        // Still running when the next commit writes, so that it reads that entry at once.
        std::thread::sleep(Duration::from_millis(4));
        Ok(())
    }
}

/// A subscriber that settles on another from inside its delivery sees every event of the same
/// commit applied there. The commit marks both busy before writing their entries: a waiter
/// already running reads its entry as soon as it is written (here 5 ms before the wake-up).
/// And the awaited one runs on a pool of its own, so its thread, waiting inside a `par_iter`,
/// never takes the waiter's job onto its stack. Without the mark this failed 4 runs of 4; with
/// both on one shared pool, 2 of 10; with neither fault, 40 of 40 passed.
#[test]
fn a_subscriber_settling_on_another_sees_the_same_commit_applied() {
    let kv: Arc<dyn KvStore> = Arc::new(MemoryStore::new());
    let service = Arc::new(Mutations::new(false));
    let awaited = Arc::new(Awaited::default());
    let waiter = Arc::new(Waiter {
        service: Arc::downgrade(&service),
        awaited: awaited.clone(),
        early: Mutex::new(Vec::new()),
    });
    let sub = |id: &str, handler: Arc<dyn Subscriber>, awaited: bool| Subscription {
        id: id.into(),
        publisher: "pub".into(),
        events: vec![MERGE_BLOCK],
        kv: kv.clone(),
        handler,
        awaited,
        gather: Duration::ZERO,
    };
    service
        .subscribe(sub("awaited/test", awaited.clone(), true))
        .unwrap();
    service
        .subscribe(sub("waiter/test", waiter.clone(), false))
        .unwrap();
    for id in 1..=100 {
        commit_then(&service, &kv, &[id], || {
            std::thread::sleep(Duration::from_millis(5))
        });
    }
    assert!(service.wait_idle(Duration::from_secs(120)));
    assert_eq!(*waiter.early.lock(), Vec::<u64>::new());
    assert_eq!(awaited.applied.load(Ordering::SeqCst), 100);
}
