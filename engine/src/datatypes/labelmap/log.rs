//! The mutation log of a labelmap version: `GET mutations`, `mutations-range`, `history`, and
//! `GET mutations/stream`, the completed mutations as server-sent events, live.
//!
//! The stream replays the version's records with `MutationID ≥ from` (`?from=`), or those
//! committed after the event named by the `Last-Event-ID` header a reconnecting EventSource
//! sends, then sends each new record once its mutation committed, in commit order. Each event's
//! id is the record's `CommitSeq`. A comment line every 15 s keeps idle
//! connections open and lets the server notice clients that left.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;
use tessera_storage::{KvStore, VersionId};

use super::labels::body_supervoxels;
use super::state::state;
use super::store::Labels;
use crate::datatype::DataCtx;
use crate::datatype::parse_label;
use crate::datatype::{DataRequest, DataResponse};
use crate::mutation::Mutations;
use crate::mutation::log as mutlog;
use crate::{Error, Result};

const KEEPALIVE: Duration = Duration::from_secs(15);

pub fn handle(ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
    match (req.keyword.as_str(), req.path.as_slice()) {
        ("mutations", [s]) if s == "stream" => stream(ctx, req),
        ("mutations", []) => crate::datatype::log::get_mutations(ctx, req),
        ("mutations-range", _) => crate::datatype::log::get_mutations_range(ctx, req),
        ("history", _) => history(ctx, req),
        _ => Err(Error::bad(
            "expected mutations, mutations/stream, mutations-range/<begin>/<end> or history/<label>/<from>/<to>",
        )),
    }
}

/// `GET history/<label>/<from UUID>/<to UUID>`, as DVID answers it: the supervoxels `label` has
/// at `to`, and the bodies that held them at `from`; then, over the versions from `from` to
/// `to` (along `to`'s first parents, oldest first, each in log order), the merges (renumbers
/// too, which DVID logs as merges), cleaves and splits whose target is one of those bodies and
/// the supervoxel splits that made (or split) one of those supervoxels, in DVID's short record
/// shapes. DVID matches only the split supervoxel itself, which no longer exists at `to`. DVID
/// writes the records back to back; Tessera puts them in a JSON array, one document a JSON
/// client can read. A label without voxels at `to` has no history (`[]`).
fn history(ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
    let (label, from, to) = match req.path.as_slice() {
        [l, f, t] | [l, f, t, _] if req.path.get(3).is_none_or(|s| s.is_empty()) => {
            (parse_label(l)?, f, t)
        }
        _ => {
            return Err(Error::bad("expected history/<label>/<from UUID>/<to UUID>"));
        }
    };
    let versions = ctx.catalog.version_path(&ctx.uuid, from, to)?;
    let (Some(&first), Some(&last)) = (versions.first(), versions.last()) else {
        return Err(Error::Internal("an empty version path".into()));
    };
    let base = Labels::new(ctx)?;
    let at = |v: VersionId| -> Result<Labels> {
        let mut l = base.clone();
        l.blocks.view.version = v;
        let m = state(ctx).mapping(&l)?;
        Ok(l.with_mapping(m, false))
    };
    let svs: HashSet<u64> = body_supervoxels(&at(last)?, label)?
        .unwrap_or_default()
        .into_iter()
        .collect();
    let before = at(first)?;
    let bodies: HashSet<u64> = svs.iter().map(|sv| before.body(*sv)).collect();
    let mut out = Vec::new();
    for v in versions {
        for rec in mutlog::read(ctx.store.kv().as_ref(), ctx.instance.id, v)? {
            let rec: Value = serde_json::from_slice(&rec)
                .map_err(|e| Error::Internal(format!("corrupt mutation record: {e}")))?;
            if let Some(entry) = history_entry(&rec, &bodies, &svs) {
                out.push(entry);
            }
        }
    }
    Ok(DataResponse::bytes(
        "application/json",
        format!("[{}]", out.join(",")),
    ))
}

/// A mutation record in DVID's `history` shape (its Go structs' field order), when it concerns
/// one of `bodies` (or, for supervoxel splits, one of `svs`, split or made).
fn history_entry(rec: &Value, bodies: &HashSet<u64>, svs: &HashSet<u64>) -> Option<String> {
    let n = |k: &str| rec.get(k).and_then(Value::as_u64);
    let list = |k: &str| {
        rec.get(k)
            .map_or_else(|| "[]".to_string(), Value::to_string)
    };
    match rec.get("Action")?.as_str()? {
        "merge-complete" => {
            let t = n("Target").filter(|t| bodies.contains(t))?;
            let labels = list("Labels");
            Some(format!(
                r#"{{"Action":"merge","Target":{t},"Labels":{labels}}}"#
            ))
        }
        "renumber-complete" => {
            let (t, o) = (
                n("NewLabel").filter(|t| bodies.contains(t))?,
                n("OrigLabel")?,
            );
            Some(format!(
                r#"{{"Action":"merge","Target":{t},"Labels":[{o}]}}"#
            ))
        }
        "cleave-complete" => {
            let t = n("OrigLabel").filter(|t| bodies.contains(t))?;
            let (c, cleaved) = (n("CleavedLabel")?, list("CleavedSupervoxels"));
            Some(format!(
                r#"{{"Action":"cleave","OrigLabel":{t},"CleavedLabel":{c},"CleavedSupervoxels":{cleaved}}}"#
            ))
        }
        "split-complete" => {
            let t = n("Target").filter(|t| bodies.contains(t))?;
            let new = n("NewLabel")?;
            Some(format!(
                r#"{{"Action":"split","Target":{t},"NewLabel":{new},"Coarse":false}}"#
            ))
        }
        "split-supervoxel-complete" => {
            let (sv, s, r) = (
                n("Supervoxel")?,
                n("SplitSupervoxel")?,
                n("RemainSupervoxel")?,
            );
            if ![sv, s, r].iter().any(|x| svs.contains(x)) {
                return None;
            }
            Some(format!(
                r#"{{"Action":"split-supervoxel","Supervoxel":{sv},"SplitSupervoxel":{s},"RemainSupervoxel":{r}}}"#
            ))
        }
        _ => None,
    }
}

fn stream(ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
    let parse = |v: &str, what: &str, what_is: &str| {
        v.trim()
            .parse::<u64>()
            .map_err(|_| Error::bad(format!("{what} {v:?} must be {what_is}")))
    };
    // Resuming goes by commit sequence, never by mutation id: ids are handed out as requests
    // arrive, so a lower id can commit after a higher one.
    let (from, seq) = match (req.query.get("from"), req.header("last-event-id")) {
        (_, Some(id)) => (
            0,
            Some(parse(id, "Last-Event-ID", "an event id (a CommitSeq)")?),
        ),
        (Some(f), None) => (parse(f, "from", "a mutation id")?, None),
        (None, None) => (0, None),
    };
    let events = Events {
        mutations: ctx.services.mutations.clone(),
        kv: ctx.store.kv().clone(),
        instance: ctx.instance.id,
        version: ctx.version(),
        from,
        seq,
        appends: 0,
        last_sent: Instant::now(),
    };
    Ok(DataResponse::stream("text/event-stream", events).with_header("Cache-Control", "no-cache"))
}

struct Events {
    mutations: std::sync::Arc<Mutations>,
    kv: std::sync::Arc<dyn KvStore>,
    instance: u32,
    version: VersionId,
    /// Records with a smaller MutationID (or none) are not sent.
    from: u64,
    /// Sequence number of the last record read.
    seq: Option<u64>,
    appends: u64,
    last_sent: Instant,
}

impl Events {
    /// SSE events for records appended since the last read.
    fn pending(&mut self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        for (seq, rec) in
            mutlog::read_after(self.kv.as_ref(), self.instance, self.version, self.seq)?
        {
            self.seq = Some(seq);
            let id = serde_json::from_slice::<Value>(&rec)
                .ok()
                .and_then(|v| v.get("MutationID").and_then(Value::as_u64));
            if id.is_none_or(|id| id < self.from) {
                continue;
            }
            out.extend_from_slice(format!("id: {seq}\ndata: ").as_bytes());
            out.extend_from_slice(&rec);
            out.extend_from_slice(b"\n\n");
        }
        Ok(out)
    }
}

impl Iterator for Events {
    type Item = Result<Bytes>;
    fn next(&mut self) -> Option<Result<Bytes>> {
        loop {
            // Note the append count before reading, so an append during the read wakes us.
            let seen = self.appends;
            match self.pending() {
                Err(e) => return Some(Err(e)),
                Ok(out) if !out.is_empty() => {
                    self.last_sent = Instant::now();
                    return Some(Ok(Bytes::from(out)));
                }
                Ok(_) => {}
            }
            if self.last_sent.elapsed() >= KEEPALIVE {
                self.last_sent = Instant::now();
                return Some(Ok(Bytes::from_static(b": keepalive\n\n")));
            }
            self.appends = self.mutations.wait_for_log(seen, KEEPALIVE);
        }
    }
}
