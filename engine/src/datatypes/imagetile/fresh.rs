//! Where tiles come from, and when a cached tile is still good.
//!
//! The source is the one uint8blk the instance syncs to (`POST sync`), or else the one its
//! `Source` setting names. A tile at scale s > 0 is read from the sibling level `<source>_s`
//! when that uint8blk exists (the grayscale pyramid convention); otherwise it is averaged from
//! the source. The instance the pixels are read from is the tile's *publisher*.
//!
//! **Cache validity.** The instance keeps a durable subscription to each publisher's
//! `BLOCK_INGEST` events (subscribed when it starts, when its syncs change, and on first use of
//! a publisher). Its worker answers each event by writing a new *stamp* for that publisher at
//! the event's version (a server-unique, increasing number). A cached tile records the stamp it
//! was made under, and is served only while the stamp visible at the request's version is the
//! same and the publisher's events have all been applied: the outbox of the subscription is
//! checked to be empty before and after the stamp is read, so a write the client has seen
//! return is either still in the outbox (the cache is bypassed) or already stamped. A tile made
//! while events are pending is served but not kept. Stamps and cached tiles live at the
//! request's node version, so they follow the version DAG as the source's blocks do: a child's
//! write stamps the child only, and a parent's tiles stay as they were.
//!
//! Known gaps, both needing unusual steps: an admin write to a committed node whose children
//! already hold stamps of their own is not seen by those children's cached tiles; and a
//! publisher written while the server ran unsubscribed from it (the imagetile re-synced away
//! from it and back across a restart) keeps its older cached tiles.

use std::collections::BTreeSet;
use std::sync::Arc;

use tessera_storage::versioned::put_into;
use tessera_storage::{VersionId, View};

use super::config::Config;
use super::keys::{MAX_SCALE, stamp_key};
use crate::datatype::{DataCtx, Handle, WorkerCatalog};
use crate::datatypes::imageblk::Grayscale;
use crate::mutation::{Subscriber, Subscription, outbox};
use crate::sync::{BLOCK_INGEST, SyncEvent};
use crate::{Error, Result};

/// The source tiles are generated from, at the request's node; `None` when the instance has
/// neither a sync nor a `Source` setting (then it serves posted tiles only).
pub fn source(ctx: &DataCtx) -> Result<Option<Grayscale>> {
    match ctx.instance.syncs.as_slice() {
        [] => {
            let cfg = Config::from_json(&ctx.instance.config)?;
            let Some(name) = cfg.source else {
                return Ok(None);
            };
            let sibling = ctx.sibling(&name).map_err(|e| {
                Error::bad(format!(
                    "imagetile {:?} has Source {name:?}, which can't be read: {e}",
                    ctx.instance.name
                ))
            })?;
            Grayscale::open(sibling).map(Some)
        }
        [one] => ctx.handle::<Grayscale>(one).map(Some),
        many => Err(Error::bad(format!(
            "imagetile {:?} syncs to {} instances; tiles come from one uint8blk: POST sync?replace=true with one",
            ctx.instance.name,
            many.len()
        ))),
    }
}

/// The level instance `<source>_<scale>`, when a uint8blk of that name exists.
pub fn level(ctx: &DataCtx, src: &Grayscale, scale: u8) -> Option<Grayscale> {
    if scale == 0 {
        return None;
    }
    ctx.handle::<Grayscale>(&format!("{}_{scale}", src.name()))
        .ok()
}

/// The versioned view stamps and cached tiles live in: the request's node (also for an
/// unversioned imagetile, whose source may still be versioned).
pub fn cache_view(ctx: &DataCtx) -> View {
    View {
        version: ctx.node,
        ..ctx.view.clone()
    }
}

fn subscription_id(me: &str, publisher: &str) -> String {
    format!("{me}/tiles/{publisher}")
}

fn subscription(ctx: &DataCtx, publisher: &Grayscale) -> Subscription {
    Subscription {
        id: subscription_id(&ctx.instance.data_uuid, publisher.data_uuid()),
        publisher: publisher.data_uuid().to_string(),
        events: vec![BLOCK_INGEST],
        kv: publisher.kv().clone(),
        handler: Arc::new(Stamper {
            repo: WorkerCatalog::new(ctx),
            me: ctx.instance.data_uuid.clone(),
            publisher: publisher.data_uuid().to_string(),
        }),
        awaited: false,
        gather: std::time::Duration::ZERO,
    }
}

/// The subscriptions to the source and every level instance of it that exists now (levels
/// made later are subscribed on first use).
pub fn subscriptions(ctx: &DataCtx) -> Result<Vec<Subscription>> {
    // A source that can't be resolved yet has nothing to subscribe to.
    let Ok(Some(src)) = source(ctx) else {
        return Ok(Vec::new());
    };
    let mut subs = vec![subscription(ctx, &src)];
    for s in 1..=MAX_SCALE {
        if let Some(l) = level(ctx, &src, s) {
            subs.push(subscription(ctx, &l));
        }
    }
    Ok(subs)
}

/// Whether a tile of `publisher` may be taken from or kept in the cache, and the stamp it is
/// kept under.
pub struct Freshness {
    pub cacheable: bool,
    pub stamp: u64,
}

pub fn check(ctx: &DataCtx, publisher: &Grayscale) -> Result<Freshness> {
    let sub = subscription(ctx, publisher);
    let id = sub.id.clone();
    // A no-op when the subscription runs already.
    ctx.services.mutations.subscribe(sub)?;
    let pending =
        || -> Result<bool> { Ok(!outbox::read(publisher.kv().as_ref(), &id, 1)?.is_empty()) };
    let before = pending()?;
    let stamp = match ctx
        .store
        .get(&cache_view(ctx), &stamp_key(publisher.data_uuid()))?
    {
        None => 0,
        Some(v) => u64::from_be_bytes(
            v.as_slice()
                .try_into()
                .map_err(|_| Error::Internal("a malformed tile stamp".into()))?,
        ),
    };
    let after = pending()?;
    Ok(Freshness {
        cacheable: !before && !after,
        stamp,
    })
}

/// The worker of one publisher: a new stamp at each version its events name. Applying an
/// event twice only stamps again.
struct Stamper {
    repo: WorkerCatalog,
    /// DataUUID of the imagetile instance.
    me: String,
    /// DataUUID of the publisher.
    publisher: String,
}

impl Subscriber for Stamper {
    fn apply(&self, events: &[SyncEvent]) -> Result<()> {
        let versions: BTreeSet<VersionId> = events.iter().map(|e| e.version).collect();
        for v in versions {
            let ctx = match self.repo.ctx_at(v, &self.me) {
                Ok(ctx) => ctx,
                Err(e @ (Error::NotFound(_) | Error::BadRequest(_))) => {
                    // The imagetile instance is gone: nothing to stamp.
                    tracing::warn!(instance = %self.me, "tile stamps: {e}");
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            let stamp = ctx.services.mutations.next_seq();
            let mut change = ctx.write();
            put_into(
                &mut change.batch,
                &cache_view(&ctx),
                &stamp_key(&self.publisher),
                &stamp.to_be_bytes(),
            );
            change.commit()?;
        }
        Ok(())
    }
}
