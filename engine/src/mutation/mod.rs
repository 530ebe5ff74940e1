//! The mutation service: the one way instance data changes. A datatype hands it a storage
//! batch with the mutation's log records and sync events; it appends the records to the
//! durable log and one outbox entry per interested subscriber to the same batch, commits it
//! atomically, and only then wakes log readers, subscribers and live watchers.
//!
//! Mutation IDs are the repo's (allocated by the catalog, `DataCtx::mutation`, when a request
//! arrives), so their order is not the order edits commit in. This service gives every log
//! record and outbox entry a server-wide sequence number as it commits, and commits that log or
//! notify one at a time, so sequence order is commit order: readers of the log (`GET
//! mutations`, the SSE stream, log followers) see records in the order they took effect, each
//! with its `CommitSeq`, and a reader that resumes after a sequence number misses nothing.
//!
//! Subscribers' workers start when they subscribe (at engine start for every instance that
//! wants one), drain what they had not acknowledged before a restart, and report when they are
//! caught up (`wait_idle`).

mod background;
pub mod log;
pub mod outbox;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use serde_json::Value;
use tessera_storage::{KvStore, VersionId, WriteBatch};

use crate::Result;
use crate::sync::{Delta, MUTATION_LOGGED, SyncBus, SyncEvent};
pub use outbox::{Subscriber, Subscription};

/// Set to `1` to keep subscriber workers from running: events stay in their outboxes until a
/// server starts without it (recovery tests; an operator draining a server).
pub const HOLD_ENV: &str = "TESSERA_SYNC_HOLD";

/// The field every log record gets: its commit sequence number, strictly increasing in the
/// order records were committed (server-wide; not dense).
pub const COMMIT_SEQ: &str = "CommitSeq";

/// Metadata key of the persisted ceiling of commit sequence numbers (`reserve_in`).
const SEQ_CEILING_KEY: &[u8] = b"\x00seq-ceiling";
/// How far ahead of the last sequence number the persisted ceiling is kept: an hour.
const SEQ_LEASE: u64 = 3_600_000_000_000;

/// A subscription's `publisher` that matches every instance (of the subscription's store).
pub const ANY_PUBLISHER: &str = "*";

/// One mutation ready to commit at one instance and version.
pub struct Commit {
    /// The instance's store: data, log and outbox entries commit together there.
    pub kv: Arc<dyn KvStore>,
    /// The instance's type name: the `datatype` label of `tessera_mutations_total`.
    pub datatype: String,
    /// The instance's DataUUID, which its events name.
    pub publisher: String,
    pub instance: u32,
    pub version: VersionId,
    pub batch: WriteBatch,
    /// Mutation-log records (`GET mutations`), oldest first.
    pub records: Vec<Value>,
    pub events: Vec<SyncEvent>,
}

pub struct Mutations {
    log_seq: AtomicU64,
    /// Held from the first sequence number a commit takes until its batch is written, so that
    /// no record becomes visible before one with a smaller number.
    order: Mutex<()>,
    /// Where the sequence ceiling is persisted, and the ceiling (`reserve_in`).
    lease: Mutex<Option<(Arc<dyn KvStore>, u64)>>,
    /// Counts commits that appended log records; log readers wait on it.
    appends: (Mutex<u64>, Condvar),
    workers: Mutex<HashMap<String, Arc<Worker>>>,
    /// Signalled whenever a worker finishes a run.
    idle: (Mutex<()>, Condvar),
    bus: SyncBus,
    hold: bool,
}

impl Default for Mutations {
    /// A service that delivers unless `TESSERA_SYNC_HOLD=1`.
    fn default() -> Self {
        Mutations::new(std::env::var(HOLD_ENV).is_ok_and(|v| v == "1"))
    }
}

impl Mutations {
    /// A service whose subscribers' workers run, or, with `hold`, never start.
    pub fn new(hold: bool) -> Mutations {
        Mutations {
            log_seq: AtomicU64::new(0),
            order: Mutex::new(()),
            lease: Mutex::new(None),
            appends: Default::default(),
            workers: Default::default(),
            idle: Default::default(),
            bus: SyncBus::default(),
            hold,
        }
    }

    /// Live, in-memory watchers of committed events (not durable).
    pub fn bus(&self) -> &SyncBus {
        &self.bus
    }

    /// Whether anyone, durable or live, wants `publisher`'s `event`: publishers skip building
    /// events nobody receives.
    pub fn wanted(&self, publisher: &str, event: &'static str) -> bool {
        self.workers
            .lock()
            .values()
            .any(|w| w.wants(publisher, event))
            || self.bus.has_subscribers(publisher, event)
    }

    /// A server-wide, strictly increasing sequence for log and outbox keys: the clock in
    /// nanoseconds, or one more than the last number when the clock is behind it.
    pub fn next_seq(&self) -> u64 {
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) as u64;
        let mut prev = self.log_seq.load(Ordering::Relaxed);
        let next = loop {
            let next = now.max(prev + 1);
            match self.log_seq.compare_exchange_weak(
                prev,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break next,
                Err(p) => prev = p,
            }
        };
        self.extend_lease(next);
        next
    }

    /// Keeps sequence numbers increasing across restarts even when the clock goes back (a
    /// restored VM, a stepped clock): numbers up to a persisted ceiling are reserved, the
    /// ceiling kept an hour ahead of the last number handed out, and the next start begins
    /// above it.
    pub fn reserve_in(&self, kv: Arc<dyn KvStore>) -> Result<()> {
        let floor = kv
            .get(SEQ_CEILING_KEY)?
            .and_then(|v| v.try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0);
        self.log_seq.fetch_max(floor, Ordering::Relaxed);
        // The first number handed out is above the old ceiling, so it persists a new one: a
        // server that starts and commits nothing writes nothing.
        *self.lease.lock() = Some((kv, floor));
        Ok(())
    }

    fn extend_lease(&self, seq: u64) {
        let mut lease = self.lease.lock();
        let Some((kv, ceiling)) = lease.as_mut() else {
            return;
        };
        if seq < *ceiling {
            return;
        }
        let next = seq.saturating_add(SEQ_LEASE);
        match kv.put(SEQ_CEILING_KEY, &next.to_be_bytes()) {
            Ok(()) => *ceiling = next,
            // The commit this number is for will most likely fail the same way; the next
            // number tries again.
            Err(e) => tracing::warn!("persisting the commit-sequence ceiling: {e}"),
        }
    }

    /// Commits a mutation: data, log records and outbox entries in one atomic batch; then
    /// wakes log readers, the subscribers it wrote to, and live watchers.
    pub fn commit(&self, c: Commit) -> Result<()> {
        self.commit_then(c, || {})
    }

    /// `commit`, running `committed` once the batch is durable and before anyone is woken:
    /// in-memory state derived from the data (a cached mapping) is brought up to date there,
    /// so a subscriber never reads it stale.
    pub fn commit_then(&self, c: Commit, committed: impl FnOnce()) -> Result<()> {
        let Commit {
            kv,
            datatype,
            publisher,
            instance,
            version,
            mut batch,
            mut records,
            events,
        } = c;
        let mut woken: Vec<Arc<Worker>> = Vec::new();
        {
            let workers: Vec<Arc<Worker>> = self
                .workers
                .lock()
                .values()
                .filter(|w| w.stores_in(&kv))
                .cloned()
                .collect();
            let followers: Vec<&Arc<Worker>> = workers
                .iter()
                .filter(|w| w.wants(&publisher, MUTATION_LOGGED))
                .collect();
            let mut to = |batch: &mut WriteBatch, w: &Arc<Worker>, e: &SyncEvent, seq: u64| {
                outbox::put(batch, &w.sub.id, seq, e);
                if !woken.iter().any(|x| Arc::ptr_eq(x, w)) {
                    woken.push(w.clone());
                }
            };
            // Ordered commits only when someone could see the order: plain block ingest with
            // no subscriber commits concurrently.
            let _order = (!records.is_empty() || !workers.is_empty()).then(|| self.order.lock());
            for r in &mut records {
                let seq = self.next_seq();
                if let Some(obj) = r.as_object_mut() {
                    obj.insert(COMMIT_SEQ.into(), seq.into());
                }
                log::append(&mut batch, instance, version, seq, r);
                for w in &followers {
                    let e = SyncEvent {
                        name: MUTATION_LOGGED,
                        publisher: publisher.clone(),
                        version,
                        mutation_id: r.get("MutationID").and_then(Value::as_u64).unwrap_or(0),
                        delta: Delta::Logged(r.clone()),
                    };
                    to(&mut batch, w, &e, self.next_seq());
                }
            }
            for e in &events {
                for w in workers.iter().filter(|w| w.wants(&e.publisher, e.name)) {
                    to(&mut batch, w, e, self.next_seq());
                }
            }
            // Busy before their entries exist: a worker that is already running may read its
            // entry at once and settle on another one of this batch (kept meshes at a coarse
            // scale wait on the pyramid), which must not look idle then.
            for w in &woken {
                w.expect();
            }
            kv.write(batch)?;
        }
        count(&datatype, &records);
        committed();
        if !records.is_empty() {
            *self.appends.0.lock() += 1;
            self.appends.1.notify_all();
        }
        for w in woken {
            w.poke();
        }
        for e in events {
            self.bus.publish(Arc::new(e));
        }
        Ok(())
    }

    /// Waits until the log-append count differs from `seen` or `timeout` passes; returns the
    /// count.
    pub fn wait_for_log(&self, seen: u64, timeout: Duration) -> u64 {
        let mut n = self.appends.0.lock();
        if *n == seen {
            self.appends.1.wait_for(&mut n, timeout);
        }
        *n
    }

    /// Starts delivering to `sub` (a no-op when a subscription of that id runs already): its
    /// worker first drains whatever its outbox kept from before.
    pub fn subscribe(self: &Arc<Self>, sub: Subscription) -> Result<()> {
        outbox::check_id(&sub.id)?;
        let mut workers = self.workers.lock();
        if workers.contains_key(&sub.id) {
            return Ok(());
        }
        let worker = Arc::new(Worker {
            sub,
            state: Mutex::new(WorkerState {
                pending: true,
                ..Default::default()
            }),
            wake: Condvar::new(),
        });
        workers.insert(worker.sub.id.clone(), worker.clone());
        if !self.hold {
            let service = Arc::downgrade(self);
            std::thread::Builder::new()
                .name(format!("sync {}", worker.sub.id))
                .spawn(move || worker.run(service))
                .map_err(|e| crate::Error::Internal(format!("starting a sync worker: {e}")))?;
        }
        Ok(())
    }

    /// Stops the subscription `id` and drops its outbox (its subscriber went away).
    pub fn unsubscribe(&self, id: &str) -> Result<()> {
        let Some(w) = self.workers.lock().remove(id) else {
            return Ok(());
        };
        w.stop();
        let keys: Vec<Vec<u8>> = outbox::read(w.sub.kv.as_ref(), id, usize::MAX)?
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        outbox::ack(w.sub.kv.as_ref(), keys)
    }

    /// Waits up to `timeout` for every subscriber to have applied everything committed so far;
    /// returns whether they all have.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut guard = self.idle.0.lock();
        loop {
            let busy = self.workers.lock().values().any(|w| w.busy());
            if !busy {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            // Re-checked at least every 50 ms: a run can end between the check and the wait.
            self.idle
                .1
                .wait_for(&mut guard, (deadline - now).min(Duration::from_millis(50)));
        }
    }

    /// Waits up to `timeout` until the subscriptions of `subscriber` (ids `<DataUUID>/…`)
    /// have applied every event committed before the call; returns whether they have. Reads
    /// of derived data call it first, so a read made after a write was acknowledged sees the
    /// write's effect even though subscribers apply events asynchronously.
    pub fn settle(&self, subscriber: &str, timeout: Duration) -> Result<bool> {
        let prefix = format!("{subscriber}/");
        self.settle_where(|id| id.starts_with(&prefix), timeout)
    }

    /// `settle` for the subscriptions whose ids `chosen` picks.
    ///
    /// A worker with nothing pending and no run in progress has applied every event of a
    /// commit whose entries could be read before the call (the commit marks it pending before
    /// writing them), so that case answers without reading the outbox.
    pub fn settle_where(&self, chosen: impl Fn(&str) -> bool, timeout: Duration) -> Result<bool> {
        let workers: Vec<Arc<Worker>> = self
            .workers
            .lock()
            .iter()
            .filter(|(id, _)| chosen(id))
            .map(|(_, w)| w.clone())
            .collect();
        if workers.iter().all(|w| !w.busy()) {
            return Ok(true);
        }
        if self.hold {
            return Ok(false);
        }
        // Every event committed so far has a smaller sequence number.
        let mark = self.next_seq();
        let deadline = Instant::now() + timeout;
        let mut guard = self.idle.0.lock();
        loop {
            let mut behind = false;
            for w in &workers {
                if outbox::oldest_seq(w.sub.kv.as_ref(), &w.sub.id)?.is_some_and(|s| s < mark) {
                    behind = true;
                    break;
                }
            }
            if !behind {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            self.idle
                .1
                .wait_for(&mut guard, (deadline - now).min(Duration::from_millis(20)));
        }
    }

    /// Stops every worker and waits up to `timeout` for the runs in progress to end, so that
    /// nothing uses the stores once the server closes them (what a worker has not applied
    /// stays in its outbox for the next start).
    pub fn stop_all(&self, timeout: Duration) -> bool {
        let workers: Vec<Arc<Worker>> = self.workers.lock().values().cloned().collect();
        for w in &workers {
            w.stop();
        }
        let deadline = Instant::now() + timeout;
        while workers.iter().any(|w| w.state.lock().running) {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// Every subscription with the number of events waiting in its outbox.
    pub fn backlog(&self) -> Result<Vec<(String, usize)>> {
        let workers: Vec<Arc<Worker>> = self.workers.lock().values().cloned().collect();
        let mut out = Vec::with_capacity(workers.len());
        for w in workers {
            out.push((w.sub.id.clone(), outbox::len(w.sub.kv.as_ref(), &w.sub.id)?));
        }
        out.sort();
        Ok(out)
    }

    fn ran(&self) {
        let _g = self.idle.0.lock();
        self.idle.1.notify_all();
    }
}

pub const MUTATIONS_TOTAL: &str = "tessera_mutations_total";

/// Counts durable mutations: one per log record (a record is one logged mutation; writes that
/// log none, such as voxel ingest, are not counted), by its `Action`. Labelmap's records are
/// DVID's `<action>-complete` (spec §7.2); the suffix is dropped so the label names the action
/// (`merge`, `cleave`, `split-supervoxel`), as `history` does.
fn count(datatype: &str, records: &[Value]) {
    for r in records {
        let action = r.get("Action").and_then(Value::as_str).unwrap_or("unknown");
        let action = action.strip_suffix("-complete").unwrap_or(action);
        metrics::counter!(
            MUTATIONS_TOTAL,
            "datatype" => datatype.to_string(),
            "action" => action.to_string()
        )
        .increment(1);
    }
}

impl Drop for Mutations {
    fn drop(&mut self) {
        for w in self.workers.lock().values() {
            w.stop();
        }
    }
}

#[derive(Default)]
struct WorkerState {
    /// The outbox may hold entries the worker has not read.
    pending: bool,
    running: bool,
    stop: bool,
}

struct Worker {
    sub: Subscription,
    state: Mutex<WorkerState>,
    wake: Condvar,
}

impl Worker {
    fn wants(&self, publisher: &str, event: &'static str) -> bool {
        (self.sub.publisher == publisher || self.sub.publisher == ANY_PUBLISHER)
            && self.sub.events.contains(&event)
    }

    /// Whether the subscription's outbox is in `kv`: entries are written to the store of the
    /// commit, so a subscription hears only of commits to its own store.
    fn stores_in(&self, kv: &Arc<dyn KvStore>) -> bool {
        std::ptr::addr_eq(Arc::as_ptr(&self.sub.kv), Arc::as_ptr(kv))
    }

    fn busy(&self) -> bool {
        let st = self.state.lock();
        st.pending || st.running
    }

    /// Marks the outbox as holding entries to read, without waking the worker yet.
    fn expect(&self) {
        self.state.lock().pending = true;
    }

    fn poke(&self) {
        self.expect();
        self.wake.notify_one();
    }

    fn stop(&self) {
        self.state.lock().stop = true;
        self.wake.notify_one();
    }

    fn run(self: Arc<Worker>, service: std::sync::Weak<Mutations>) {
        crate::priority::lower_this_thread(crate::priority::DERIVED);
        let mut backoff = Duration::from_millis(100);
        loop {
            {
                let mut st = self.state.lock();
                while !st.pending && !st.stop {
                    self.wake.wait(&mut st);
                }
                if st.stop {
                    return;
                }
                st.pending = false;
                st.running = true;
            }
            self.gather();
            let result = background::install(self.sub.awaited, || self.drain());
            let failed = result.is_err();
            if let Err(e) = result {
                tracing::warn!(subscription = %self.sub.id, "sync delivery failed, will retry: {e}");
            }
            {
                let mut st = self.state.lock();
                st.running = false;
                st.pending |= failed;
            }
            match service.upgrade() {
                Some(s) => s.ran(),
                None => return,
            }
            if failed {
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(10));
            } else {
                backoff = Duration::from_millis(100);
            }
        }
    }

    /// Lets events gather: waits until none has arrived for `gather`, or for ten times that
    /// at most, so a steady stream of writes is applied in runs rather than one by one.
    fn gather(&self) {
        let quiet = self.sub.gather;
        if quiet.is_zero() {
            return;
        }
        let start = std::time::Instant::now();
        loop {
            std::thread::sleep(quiet);
            let mut st = self.state.lock();
            if !st.pending || st.stop || start.elapsed() >= quiet * 10 {
                return;
            }
            // Drained below with everything else in the outbox.
            st.pending = false;
        }
    }

    /// Applies and acknowledges runs of events until the outbox is empty.
    fn drain(&self) -> Result<()> {
        loop {
            if self.state.lock().stop {
                return Ok(());
            }
            let run = outbox::read(self.sub.kv.as_ref(), &self.sub.id, outbox::RUN)?;
            if run.is_empty() {
                return Ok(());
            }
            let (keys, events): (Vec<Vec<u8>>, Vec<SyncEvent>) = run.into_iter().unzip();
            self.sub.handler.apply(&events)?;
            outbox::ack(self.sub.kv.as_ref(), keys)?;
        }
    }
}

#[cfg(test)]
mod tests;
