//! The `labelsz` datatype (spec §4.8, §6.1): per-label counts of annotation elements by kind
//! (PostSyn, PreSyn, Gap, Note, AllSyn), ranked, kept current from the one annotation instance
//! it syncs to, optionally only for points inside an ROI.
//!
//! * [`keys`] — index types and the count/ordering keyspaces;
//! * [`store`] — reading counts and rankings at a version, writing count changes;
//! * [`sync`] — the durable subscriber that recounts changed labels, and `POST reload`.

pub mod keys;
pub mod store;
pub mod sync;

use std::fmt::Write as _;

use serde_json::{Value, json};

use keys::IndexType;

use crate::datatype::{
    DataCtx, DataRequest, DataResponse, Datatype, Description, Method, Settings,
};
use crate::mutation::Subscription;
use crate::{Error, Result};

/// The labelsz datatype.
#[derive(Debug, Default, Clone, Copy)]
pub struct LabelszType;

const KEYWORDS: &[&str] = &["count", "counts", "top", "threshold", "reload"];

const HELP: &str = include_str!("help.txt");

/// DVID's largest `threshold` page (`MaxLabelsReturned`), also its default.
pub const MAX_PAGE: usize = 10_000;

static DESCRIPTION: Description = Description {
    name: "labelsz",
    url: "github.com/janelia-flyem/dvid/datatype/labelsz",
    version: "0.1",
    help: HELP,
    keywords: KEYWORDS,
    sync_targets: &["annotation"],
    default_compression: "none",
};

/// The `ROI` creation setting kept in the configuration ("" when none).
pub fn static_roi(config: &Value) -> &str {
    config["StaticROI"].as_str().unwrap_or("")
}

impl Datatype for LabelszType {
    fn description(&self) -> &'static Description {
        &DESCRIPTION
    }

    fn configure(&self, settings: &Settings) -> Result<Value> {
        let roi = settings.get("ROI").unwrap_or("").trim();
        if !roi.is_empty() {
            let parts: Vec<&str> = roi.split(',').map(str::trim).collect();
            if parts.len() > 2 || parts.iter().any(|p| p.is_empty()) {
                return Err(Error::bad(format!(
                    "bad ROI value ({roi:?}): expected \"<roiname>\" or \"<roiname>,<uuid>\""
                )));
            }
        }
        Ok(json!({ "StaticROI": roi }))
    }

    fn extended_info(&self, ctx: &DataCtx) -> Result<Value> {
        Ok(json!({ "StaticROI": static_roi(&ctx.instance.config) }))
    }

    fn subscriptions(&self, ctx: &DataCtx) -> Result<Vec<Subscription>> {
        sync::subscriptions(ctx)
    }

    fn handle(&self, ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
        match (req.method, req.keyword.as_str()) {
            (Method::Get, "count") => count(ctx, req),
            (Method::Get, "counts") => counts(ctx, req),
            (Method::Get, "top") => top(ctx, req),
            (Method::Get, "threshold") => threshold(ctx, req),
            (Method::Post, "reload") => {
                sync::reload(ctx)?;
                Ok(DataResponse::empty())
            }
            (m, kw @ ("count" | "counts" | "top" | "threshold")) => Err(Error::bad(format!(
                "only GET is available on the {kw:?} endpoint, not {}",
                m.as_str()
            ))),
            (m, kw) => Err(Error::bad(format!(
                "{} {kw} is not served by labelsz instances",
                m.as_str()
            ))),
        }
    }
}

fn json_response(body: String) -> DataResponse {
    DataResponse::bytes("application/json", body)
}

/// The path segments after the keyword, exactly `n` of them.
fn args<'a>(req: &'a DataRequest, n: usize, usage: &str) -> Result<Vec<&'a str>> {
    if req.path.len() != n {
        return Err(Error::bad(format!("{} takes {usage}", req.keyword)));
    }
    Ok(req.path.iter().map(String::as_str).collect())
}

/// A decimal number of at most `max` (digits only, as Go's ParseUint).
fn number(what: &str, s: &str, max: u64) -> Result<u64> {
    let n = if !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse::<u64>().ok()
    } else {
        None
    };
    n.filter(|n| *n <= max).ok_or_else(|| {
        Error::bad(format!(
            "{what} must be a decimal integer from 0 to {max}, not {s:?}"
        ))
    })
}

fn label_count(out: &mut String, label: u64, ty: IndexType, n: u32) {
    let _ = write!(out, "{{\"Label\":{label},\"{}\":{n}}}", ty.name());
}

/// DVID's `LabelSizes` JSON: `[{"Label":l,"Size":n},...]`.
fn label_sizes(ranked: &[(u64, u32)]) -> String {
    let mut out = String::with_capacity(ranked.len() * 32 + 2);
    out.push('[');
    for (i, (label, n)) in ranked.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{{\"Label\":{label},\"Size\":{n}}}");
    }
    out.push(']');
    out
}

fn count(ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
    let a = args(
        req,
        2,
        "a label and an index type: count/<label>/<index type>",
    )?;
    let label = number("label", a[0], u64::MAX)?;
    let ty = IndexType::parse(a[1])?;
    sync::settle(ctx)?;
    let n = store::count(&ctx.store, &ctx.view, ty, label)?;
    let mut out = String::new();
    label_count(&mut out, label, ty, n);
    Ok(json_response(out))
}

fn counts(ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
    let a = args(req, 1, "an index type: counts/<index type>")?;
    let ty = IndexType::parse(a[0])?;
    let labels: Vec<u64> = serde_json::from_slice(&req.body).map_err(|e| {
        Error::bad(format!(
            "bad JSON label array sent in 'counts' query (want [label, ...] of uint64): {e}"
        ))
    })?;
    sync::settle(ctx)?;
    let ns = store::counts_of(&ctx.store, &ctx.view, ty, &labels)?;
    let mut out = String::with_capacity(labels.len() * 32 + 2);
    out.push('[');
    for (i, (label, n)) in labels.iter().zip(ns).enumerate() {
        if i > 0 {
            out.push(',');
        }
        label_count(&mut out, *label, ty, n);
    }
    out.push(']');
    Ok(json_response(out))
}

fn top(ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
    let a = args(req, 2, "N and an index type: top/<N>/<index type>")?;
    let n = number("N", a[0], u64::from(u32::MAX))?;
    if n == 0 {
        return Err(Error::bad("N must be at least 1 in top/<N>/<index type>"));
    }
    let ty = IndexType::parse(a[1])?;
    sync::settle(ctx)?;
    let ranked = store::ranked(&ctx.store, &ctx.view, ty, 0, 0, n as usize)?;
    Ok(json_response(label_sizes(&ranked)))
}

fn threshold(ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
    let a = args(
        req,
        2,
        "a threshold and an index type: threshold/<T>/<index type>",
    )?;
    let min = number("threshold", a[0], u64::from(u32::MAX))? as u32;
    let ty = IndexType::parse(a[1])?;
    let offset = match req.query.get("offset") {
        Some(s) => number("offset", s, u64::MAX)?,
        None => 0,
    };
    let page = match req.query.get("n") {
        Some(s) => number("n", s, MAX_PAGE as u64)? as usize,
        None => 0,
    };
    let page = if page == 0 { MAX_PAGE } else { page };
    sync::settle(ctx)?;
    let ranked = store::ranked(&ctx.store, &ctx.view, ty, min, offset, page)?;
    Ok(json_response(label_sizes(&ranked)))
}

#[cfg(test)]
mod tests;
