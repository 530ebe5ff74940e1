//! The mutation log of a labelmap version: `GET mutations`, `mutations-range`, and
//! `GET mutations/stream`, the completed mutations as server-sent events, live.
//!
//! The stream replays the version's records with `MutationID ≥ from` (`?from=`, or the
//! `Last-Event-ID` header a reconnecting EventSource sends, which resumes after it), then sends
//! each new record once its mutation committed. A comment line every 15 s keeps idle
//! connections open and lets the server notice clients that left.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;
use tessera_storage::{KvStore, VersionId};

use crate::datatype::DataCtx;
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
        _ => Err(Error::bad(
            "expected mutations, mutations/stream or mutations-range/<begin>/<end>",
        )),
    }
}

fn stream(ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
    let parse = |v: &str, what: &str| {
        v.trim()
            .parse::<u64>()
            .map_err(|_| Error::bad(format!("{what} {v:?} must be a mutation id")))
    };
    let from = match (req.query.get("from"), req.header("last-event-id")) {
        (_, Some(id)) => parse(id, "Last-Event-ID")?.saturating_add(1),
        (Some(f), None) => parse(f, "from")?,
        (None, None) => 0,
    };
    let events = Events {
        mutations: ctx.services.mutations.clone(),
        kv: ctx.store.kv().clone(),
        instance: ctx.instance.id,
        version: ctx.version(),
        from,
        seq: None,
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
    /// Records with a smaller MutationID are not sent.
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
            let Some(id) = id.filter(|id| *id >= self.from) else {
                continue;
            };
            out.extend_from_slice(format!("id: {id}\ndata: ").as_bytes());
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
