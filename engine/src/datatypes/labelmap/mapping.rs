//! The supervoxel → body mapping (spec §4.4, §5.6). Blocks hold supervoxels; a body is the set
//! of supervoxels mapped to it, and a supervoxel never mapped is its own body. Each change is a
//! versioned key `190 ‖ sv u64 BE` → body (u64 LE; 0 = retired by a split), so a read at a
//! version sees the nearest ancestor's mapping, as DVID's log replay gives.
//!
//! Endpoints: `GET mapping`, `GET|POST mappings`, `GET supervoxel-splits`.

use std::collections::HashMap;

use prost::Message;
use tessera_storage::WriteBatch;
use tessera_storage::versioned::put_into;

use super::state::state;
use super::store::{self, Labels};
use crate::compute::LabelTable;
use crate::datatype::DataCtx;
use crate::datatype::{DataRequest, DataResponse, Method};
use crate::{Error, Result};

pub const CLASS_MAPPING: u8 = 190;
/// Supervoxel splits of a version: `191 ‖ mutation id u64 BE ‖ old sv u64 BE` → old, remain,
/// split (u64 LE).
pub const CLASS_SV_SPLIT: u8 = 191;

pub fn mapping_key(sv: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = CLASS_MAPPING;
    k[1..].copy_from_slice(&sv.to_be_bytes());
    k
}

/// The mapping at one version: every supervoxel whose body is not itself.
#[derive(Debug, Clone, Default)]
pub struct Mapping {
    map: HashMap<u64, u64>,
}

impl Mapping {
    pub fn body(&self, sv: u64) -> u64 {
        self.map.get(&sv).copied().unwrap_or(sv)
    }

    /// The supervoxel's body when it has been mapped (0 when retired), `None` for identity.
    pub fn mapped(&self, sv: u64) -> Option<u64> {
        self.map.get(&sv).copied()
    }

    pub fn apply(&mut self, changes: &HashMap<u64, u64>) {
        for (&sv, &body) in changes {
            if sv == body {
                self.map.remove(&sv);
            } else {
                self.map.insert(sv, body);
            }
        }
    }

    /// The relabel table for voxels holding (some of) `labels`; `None` when none is mapped.
    pub fn table_for(&self, labels: &[u64]) -> Option<LabelTable> {
        let pairs: Vec<(u64, u64)> = labels
            .iter()
            .filter_map(|&l| self.map.get(&l).map(|&b| (l, b)))
            .collect();
        if pairs.is_empty() {
            return None;
        }
        Some(LabelTable::new(pairs).expect("one body per supervoxel"))
    }

    /// Non-identity entries, sorted by supervoxel.
    pub fn entries(&self) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = self.map.iter().map(|(&a, &b)| (a, b)).collect();
        out.sort_unstable();
        out
    }
}

pub fn load_mapping(labels: &Labels) -> Result<Mapping> {
    let mut map = HashMap::new();
    let hi = mapping_key(u64::MAX);
    labels.scan(&[CLASS_MAPPING], &hi, &mut |k, v| {
        let sv = u64::from_be_bytes(
            k[1..9]
                .try_into()
                .map_err(|_| Error::Internal("malformed mapping key".into()))?,
        );
        let body = store::u64_value(v);
        if body != sv {
            map.insert(sv, body);
        }
        Ok(true)
    })?;
    Ok(Mapping { map })
}

/// Adds mapping changes to a mutation's batch.
pub fn put_changes(batch: &mut WriteBatch, labels: &Labels, changes: &HashMap<u64, u64>) {
    for (&sv, &body) in changes {
        put_into(
            batch,
            &labels.blocks.view,
            &mapping_key(sv),
            &body.to_le_bytes(),
        );
    }
}

pub fn handle(ctx: &DataCtx, labels: &Labels, req: &DataRequest) -> Result<DataResponse> {
    match (req.method, req.keyword.as_str()) {
        (Method::Get, "mapping") => get_mapping(labels, req),
        (Method::Get, "mappings") => get_mappings(labels, req),
        (Method::Post, "mappings") => post_mappings(ctx, labels, req),
        (Method::Get, "supervoxel-splits") => supervoxel_splits(ctx, labels),
        (m, kw) => Err(Error::bad(format!(
            "{} {kw} is not supported by labelmap",
            m.as_str()
        ))),
    }
}

/// `GET mapping` with a body `[sv…]` → `[body…]`: 0 for retired supervoxels and, unless
/// `nolookup=true`, for never-mapped ids whose own label index doesn't hold them as a
/// supervoxel (ids that don't exist, and body ids made by cleaves and splits).
fn get_mapping(labels: &Labels, req: &DataRequest) -> Result<DataResponse> {
    req.check_hash()?;
    let svs: Vec<u64> = serde_json::from_slice(&req.body).map_err(|e| {
        Error::bad(format!(
            "mapping body must be a JSON list of supervoxels: {e}"
        ))
    })?;
    let lookup = !req.query.flag("nolookup")?;
    let mut out = Vec::with_capacity(svs.len());
    for sv in svs {
        let body = match labels.mapping.mapped(sv) {
            Some(body) => body,
            None if sv == 0 => 0,
            None if !lookup => sv,
            None => {
                let exists = labels
                    .index(sv)?
                    .is_some_and(|i| i.blocks.values().any(|b| b.counts.contains_key(&sv)));
                if exists { sv } else { 0 }
            }
        };
        out.push(body);
    }
    Ok(DataResponse::json(&serde_json::json!(out)))
}

fn get_mappings(labels: &Labels, req: &DataRequest) -> Result<DataResponse> {
    let entries = labels.mapping.entries();
    if req.query.get("format") == Some("binary") {
        let mut out = Vec::with_capacity(entries.len() * 16);
        for (sv, body) in entries {
            out.extend_from_slice(&sv.to_le_bytes());
            out.extend_from_slice(&body.to_le_bytes());
        }
        return Ok(DataResponse::octets(out));
    }
    let mut out = String::new();
    for (sv, body) in entries {
        out.push_str(&format!("{sv} {body}\n"));
    }
    Ok(DataResponse::text(out))
}

/// The §5.6 protobuf of `POST mappings`.
#[derive(Clone, PartialEq, Message)]
pub struct MappingOp {
    #[prost(uint64, tag = "1")]
    pub mutid: u64,
    #[prost(uint64, tag = "2")]
    pub mapped: u64,
    #[prost(uint64, repeated, tag = "3")]
    pub original: Vec<u64>,
}

#[derive(Clone, PartialEq, Message)]
pub struct MappingOps {
    #[prost(message, repeated, tag = "1")]
    pub mappings: Vec<MappingOp>,
}

/// `POST mappings`: loads mappings (as DVID does when ingesting an agglomeration; indices are
/// posted separately with `POST indices`).
fn post_mappings(ctx: &DataCtx, labels: &Labels, req: &DataRequest) -> Result<DataResponse> {
    let ops = MappingOps::decode(&req.body[..])
        .map_err(|e| Error::bad(format!("body is not a MappingOps protobuf: {e}")))?;
    let mut changes = HashMap::new();
    for op in &ops.mappings {
        for &sv in &op.original {
            if sv == 0 {
                return Err(Error::bad("a mapping names supervoxel 0"));
            }
            changes.insert(sv, op.mapped);
        }
    }
    let st = state(ctx);
    let _w = st.writes.write();
    let mut m = ctx.write();
    put_changes(&mut m.batch, labels, &changes);
    super::mutate::follow_mapping(&mut m, labels, &changes);
    m.commit()?;
    Ok(DataResponse::empty())
}

/// Records a supervoxel split in the version's split history.
pub fn put_sv_split(
    batch: &mut WriteBatch,
    labels: &Labels,
    mutid: u64,
    old: u64,
    remain: u64,
    split: u64,
) {
    let mut k = vec![CLASS_SV_SPLIT];
    k.extend_from_slice(&mutid.to_be_bytes());
    k.extend_from_slice(&old.to_be_bytes());
    let mut v = Vec::with_capacity(24);
    for x in [old, remain, split] {
        v.extend_from_slice(&x.to_le_bytes());
    }
    put_into(batch, &labels.blocks.view, &k, &v);
}

/// `GET supervoxel-splits`: `["<uuid>", [[mutid, old, remain, split], …], …]` for this version
/// and its ancestors that split supervoxels, this version first.
fn supervoxel_splits(ctx: &DataCtx, labels: &Labels) -> Result<DataResponse> {
    let mut by_version: HashMap<u32, Vec<[u64; 4]>> = HashMap::new();
    let dag = &labels.blocks.view.dag;
    let v = labels.blocks.view.version;
    let hi = [
        CLASS_SV_SPLIT,
        0xFF,
        0xFF,
        0xFF,
        0xFF,
        0xFF,
        0xFF,
        0xFF,
        0xFF,
    ];
    labels.blocks.store.scan_grouped(
        labels.blocks.view.instance,
        &[CLASS_SV_SPLIT],
        Some(&hi),
        &mut |k, entries| {
            let mutid = u64::from_be_bytes(k[1..9].try_into().unwrap_or([0; 8]));
            for (ver, val) in entries {
                if let Some(val) = val
                    && (*ver == v || dag.is_ancestor(*ver, v))
                    && val.len() == 24
                {
                    let n = |i: usize| {
                        u64::from_le_bytes(val[8 * i..8 * i + 8].try_into().expect("8 bytes"))
                    };
                    by_version
                        .entry(*ver)
                        .or_default()
                        .push([mutid, n(0), n(1), n(2)]);
                }
            }
            Ok(true)
        },
    )?;
    let mut versions: Vec<u32> = by_version.keys().copied().collect();
    // Newest first: a version after each of its ancestors.
    versions.sort_by(|a, b| {
        if dag.is_ancestor(*a, *b) {
            std::cmp::Ordering::Greater
        } else if dag.is_ancestor(*b, *a) {
            std::cmp::Ordering::Less
        } else {
            b.cmp(a)
        }
    });
    let mut out = Vec::new();
    for ver in versions {
        out.push(serde_json::json!(
            ctx.catalog.uuid_of_version(&ctx.uuid, ver)?
        ));
        out.push(serde_json::json!(by_version[&ver]));
    }
    Ok(DataResponse::json(&serde_json::Value::Array(out)))
}
