//! How a labelsz follows its annotation instance: a durable subscription to the annotation's
//! `ANNOTATION_MOD_ELEMENTS` events, each naming the labels whose points changed. The worker
//! recounts every named label from the annotation's label index as it is now at the event's
//! version and writes the absolute counts, so a replayed event (after a crash) changes
//! nothing. `POST reload` recounts every label the same way; both hold the instance's lock so
//! one never writes counts read before the other's.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tessera_storage::VersionId;

use super::keys::{Counts, tally};
use super::store::{all_counts, label_counts, put_change};
use crate::datatype::{Caller, DataCtx, Handle, WorkerCatalog};
use crate::datatypes::annotation::Annotation;
use crate::datatypes::roi::Roi;
use crate::mutation::{Subscriber, Subscription};
use crate::sync::{ANNOTATION_MOD_ELEMENTS, Delta, SyncEvent};
use crate::{Error, Result};

/// How long a read waits for the syncs to apply what was acknowledged before it.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Labels recounted per committed batch.
const BATCH: usize = 4096;

/// Per-instance state: the lock that serializes recounts (worker) and reloads.
#[derive(Default)]
pub struct State {
    pub recount: Mutex<()>,
}

pub fn state(ctx: &DataCtx) -> Arc<State> {
    ctx.services.instance_state(ctx.instance.id, State::default)
}

/// The one subscription of a labelsz synced to exactly one annotation instance.
pub fn subscriptions(ctx: &DataCtx) -> Result<Vec<Subscription>> {
    let admin = Caller::admin();
    let mut sources = Vec::new();
    for source in &ctx.instance.syncs {
        let src = ctx.catalog.ctx_at(&ctx.uuid, source, None, &admin)?;
        if src.instance.type_name == Annotation::TYPE_NAME {
            sources.push(src);
        }
    }
    if sources.len() > 1 {
        tracing::warn!(
            instance = %ctx.instance.name,
            "labelsz syncs to {} annotation instances; it counts one (POST sync?replace=true): not following any",
            sources.len()
        );
        return Ok(Vec::new());
    }
    Ok(sources
        .into_iter()
        .map(|src| Subscription {
            id: format!(
                "{}/labelsz/{}",
                ctx.instance.data_uuid, src.instance.data_uuid
            ),
            publisher: src.instance.data_uuid.clone(),
            events: vec![ANNOTATION_MOD_ELEMENTS],
            kv: src.store.kv().clone(),
            handler: Arc::new(Worker {
                repo: WorkerCatalog::new(ctx),
                name: ctx.instance.name.clone(),
                source: src.instance.data_uuid.clone(),
            }),
            awaited: false,
            gather: Duration::ZERO,
        })
        .collect())
}

struct Worker {
    repo: WorkerCatalog,
    name: String,
    /// DataUUID of the annotation instance.
    source: String,
}

impl Subscriber for Worker {
    fn apply(&self, events: &[SyncEvent]) -> Result<()> {
        let mut by_version: BTreeMap<VersionId, BTreeSet<u64>> = BTreeMap::new();
        for e in events {
            if let Delta::Labels(labels) = &e.delta {
                by_version
                    .entry(e.version)
                    .or_default()
                    .extend(labels.iter().copied());
            }
        }
        for (version, labels) in by_version {
            let ctx = self.repo.ctx_at(version, &self.name)?;
            let ann = Annotation::open(self.repo.ctx_at(version, &self.source)?)?;
            let roi = match roi_filter(&ctx) {
                Ok(r) => r,
                Err(e @ Error::BadRequest(_)) => {
                    // A missing ROI won't appear by retrying; POST reload once it exists.
                    tracing::error!(instance = %self.name, "labelsz sync skipped: {e}");
                    continue;
                }
                Err(e) => return Err(e),
            };
            let st = state(&ctx);
            let _recount = st.recount.lock();
            let labels: Vec<u64> = labels.into_iter().collect();
            recount(&ctx, &ann, roi.as_ref(), &labels)?;
        }
        Ok(())
    }
}

/// Whether the ROI (if any) holds a point.
fn inside(roi: Option<&Roi>) -> impl Fn([i32; 3]) -> bool + '_ {
    move |p| roi.is_none_or(|r| r.contains_voxel(p.map(i64::from)))
}

/// Rewrites the counts of `labels` (sorted, distinct) from the annotation's points.
pub fn recount(ctx: &DataCtx, ann: &Annotation, roi: Option<&Roi>, labels: &[u64]) -> Result<()> {
    let inside = inside(roi);
    for chunk in labels.chunks(BATCH) {
        let old = label_counts(&ctx.store, &ctx.view, chunk)?;
        let mut m = ctx.write();
        let mut changed = 0;
        for (&label, old) in chunk.iter().zip(&old) {
            let new = tally(&ann.label_points(label)?, &inside);
            changed += put_change(&mut m.batch, &ctx.view, label, old, &new);
        }
        if changed > 0 {
            m.commit()?;
        }
    }
    Ok(())
}

/// `POST reload`: every count recomputed from the annotation instance at this version,
/// replacing what the version held. Returns the number of labels counted.
pub fn reload(ctx: &DataCtx) -> Result<usize> {
    let source = match ctx.instance.syncs.as_slice() {
        [one] => one.clone(),
        [] => {
            return Err(Error::bad(format!(
                "labelsz {:?} is not synced to an annotation instance: POST sync {{\"sync\": \"<annotation>\"}}",
                ctx.instance.name
            )));
        }
        _ => {
            return Err(Error::bad(format!(
                "labelsz {:?} syncs to several instances; it counts one annotation instance (POST sync?replace=true)",
                ctx.instance.name
            )));
        }
    };
    let ann: Annotation = ctx.handle(&source)?;
    let roi = roi_filter(ctx)?;
    let inside = inside(roi.as_ref());
    settle(ctx)?;
    let st = state(ctx);
    let _recount = st.recount.lock();
    let mut new: BTreeMap<u64, Counts> = BTreeMap::new();
    ann.for_each_label(&mut |label, points| {
        let c = tally(&points, &inside);
        if c != [0; 5] {
            new.insert(label, c);
        }
        Ok(true)
    })?;
    let old = all_counts(&ctx.store, &ctx.view)?;
    let mut m = ctx.write();
    let mut changed = 0;
    for (label, o) in &old {
        changed += put_change(
            &mut m.batch,
            &ctx.view,
            *label,
            o,
            new.get(label).unwrap_or(&[0; 5]),
        );
    }
    for (label, n) in new.iter().filter(|(l, _)| !old.contains_key(l)) {
        changed += put_change(&mut m.batch, &ctx.view, *label, &[0; 5], n);
    }
    if changed > 0 {
        m.commit()?;
    }
    Ok(new.len())
}

/// The ROI configured to restrict counting (`ROI` "name" or "name,uuid"), as of the
/// context's node (or the named UUID); a 400 when it can't be found.
pub fn roi_filter(ctx: &DataCtx) -> Result<Option<Roi>> {
    let spec = super::static_roi(&ctx.instance.config);
    if spec.is_empty() {
        return Ok(None);
    }
    let (name, uuid) = match spec.split_once(',') {
        Some((n, u)) => (n.trim(), Some(u.trim())),
        None => (spec.trim(), None),
    };
    let found = match uuid {
        Some(u) => ctx.catalog.ctx_at(u, name, None, &Caller::admin()),
        None => ctx.sibling(name),
    }
    .and_then(Roi::open);
    match found {
        Ok(r) => Ok(Some(r)),
        Err(e @ (Error::BadRequest(_) | Error::NotFound(_))) => Err(Error::bad(format!(
            "labelsz {:?}: its ROI {spec:?} can't be read: {e}",
            ctx.instance.name
        ))),
        Err(e) => Err(e),
    }
}

/// Waits until the annotation instance(s) this labelsz syncs to, then its own worker, have
/// applied everything acknowledged before the call, so a read sees every acknowledged write.
/// A timeout is logged and the read answered anyway.
pub fn settle(ctx: &DataCtx) -> Result<()> {
    let mutations = &ctx.services.mutations;
    let subscribers = ctx
        .instance
        .syncs
        .iter()
        .chain(std::iter::once(&ctx.instance.data_uuid));
    for s in subscribers {
        if !mutations.settle(s, SETTLE_TIMEOUT)? {
            tracing::warn!(
                instance = %ctx.instance.name,
                "labelsz read: syncs of {s} not caught up after {SETTLE_TIMEOUT:?}; answering with what is applied"
            );
        }
    }
    Ok(())
}
