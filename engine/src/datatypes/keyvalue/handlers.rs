//! The keyvalue endpoints (spec §4.5): each handler parses and validates the whole request
//! first, then reads, or writes one atomic batch holding the data and its mutation-log records.

use bytes::Bytes;
use serde_json::{Value, json};
use tessera_storage::Durability;
use tessera_storage::versioned::{delete_into, put_into};

use super::formats::{self, Format, Item, KeyRequest};
use super::keys::{self, shown, tkey};
use super::proto::{self, KeyValues};
use super::range;
use crate::datatype::DataCtx;
use crate::datatype::range::ranged;
use crate::datatype::{DataRequest, DataResponse, Method};
use crate::mutation::log as mutlog;
use crate::{Error, Result};

pub fn handle(ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
    match (req.keyword.as_str(), req.method) {
        ("keys", Method::Get) => get_keys(ctx),
        ("keyrange", Method::Get) => get_keyrange(ctx, req),
        ("key", Method::Get) => get_key(ctx, req),
        ("key", Method::Head) => head_key(ctx, req),
        ("key", Method::Post) => post_key(ctx, req),
        ("key", Method::Delete) => delete_key(ctx, req),
        ("keyvalues", Method::Get) => get_keyvalues(ctx, req),
        ("keyvalues", Method::Post) => post_keyvalues(ctx, req),
        ("keyrangevalues", Method::Get) => get_keyrangevalues(ctx, req),
        ("mutations", Method::Get) => crate::datatype::log::get_mutations(ctx, req),
        ("mutations-range", Method::Get) => crate::datatype::log::get_mutations_range(ctx, req),
        (keyword, method) => Err(Error::bad(format!(
            "keyvalue endpoint {keyword:?} does not support the {} method",
            method.as_str()
        ))),
    }
}

fn get_keys(ctx: &DataCtx) -> Result<DataResponse> {
    let list = keys::list(&ctx.store, &ctx.view, None, None)?;
    Ok(DataResponse::json(&json!(list)))
}

fn get_keyrange(ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
    let path = req.path_bytes();
    let (first, last) = keys::range_from_path("keyrange", &path)?;
    let list = keys::list(&ctx.store, &ctx.view, Some(first), Some(last))?;
    Ok(DataResponse::json(&json!(list)))
}

fn accept_ranges(resp: DataResponse) -> DataResponse {
    resp.with_header("Accept-Ranges", "bytes")
}

fn not_found(key: &[u8]) -> Error {
    Error::not_found(format!("Key {:?} not found", shown(key)))
}

fn get_key(ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
    let path = req.path_bytes();
    let key = keys::key_from_path(&path)?;
    let bounds = range::query_range(req.query.get("byte_start"), req.query.get("byte_end"))?;
    let range_header = req.header("range").filter(|h| !h.trim().is_empty());
    if bounds.is_some() && range_header.is_some() {
        return Err(Error::bad(
            "give either a Range header or byte_start/byte_end, not both",
        ));
    }
    let value = Bytes::from(
        ctx.store
            .get(&ctx.view, &tkey(key))?
            .ok_or_else(|| not_found(key))?,
    );
    if let Some(b) = bounds {
        let slice = b.slice_of(value.len(), &shown(key))?;
        return Ok(accept_ranges(DataResponse::octets(value.slice(slice))));
    }
    ranged(value, range_header)
}

fn head_key(ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
    let path = req.path_bytes();
    let key = keys::key_from_path(&path)?;
    match ctx.store.get(&ctx.view, &tkey(key))? {
        Some(_) => Ok(accept_ranges(DataResponse::octets(Bytes::new()))),
        None => Err(not_found(key)),
    }
}

/// The mutation record of a stored value (`postkv`).
pub fn postkv_record(uuid: &str, key: &str, bytes: usize) -> Value {
    // Fields in sorted order, as Go's JSON encoding of a map writes them.
    json!({
        "Action": "postkv",
        "Bytes": bytes,
        "Key": key,
        "Timestamp": mutlog::timestamp(),
        "UUID": uuid,
    })
}

/// The mutation record of a deleted key.
pub fn delete_record(uuid: &str, key: &str) -> Value {
    json!({
        "Action": "delete",
        "Key": key,
        "Timestamp": mutlog::timestamp(),
        "UUID": uuid,
    })
}

fn post_key(ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
    put(
        ctx,
        keys::key_from_path(&req.path_bytes())?,
        &req.body,
        Durability::Synced,
    )?;
    Ok(DataResponse::empty())
}

fn delete_key(ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
    delete(
        ctx,
        keys::key_from_path(&req.path_bytes())?,
        Durability::Synced,
    )?;
    Ok(DataResponse::empty())
}

/// Stores `value` under `key`, with its mutation record.
pub fn put(ctx: &DataCtx, key: &[u8], value: &[u8], durability: Durability) -> Result<()> {
    let mut m = ctx.write();
    m.batch.durability = durability;
    put_into(&mut m.batch, &ctx.view, &tkey(key), value);
    m.record(postkv_record(&ctx.uuid, &shown(key), value.len()));
    m.commit()
}

/// Deletes `key` at this version, with its mutation record.
pub fn delete(ctx: &DataCtx, key: &[u8], durability: Durability) -> Result<()> {
    let mut m = ctx.write();
    m.batch.durability = durability;
    delete_into(&mut m.batch, &ctx.view, &tkey(key));
    m.record(delete_record(&ctx.uuid, &shown(key)));
    m.commit()
}

/// Reads the requested values in order; a byte range of an existing value must lie within it.
fn fetch(ctx: &DataCtx, requests: &[KeyRequest]) -> Result<Vec<Item>> {
    requests
        .iter()
        .map(|r| {
            let stored = ctx.store.get(&ctx.view, &tkey(&r.key))?;
            let value = match (stored, r.range) {
                (Some(v), Some(b)) => Some(v[b.slice_of(v.len(), &r.key)?].to_vec()),
                (v, _) => v,
            };
            Ok(Item {
                key: r.key.clone(),
                value,
                ranged: r.range.is_some(),
            })
        })
        .collect()
}

fn get_keyvalues(ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
    let format = Format::from_query(&req.query)?;
    let requests = match format {
        Format::Protobuf => formats::requests_from_proto(&req.body)?,
        Format::Json { .. } | Format::Tar => formats::requests_from_json(&req.body)?,
    };
    let items = fetch(ctx, &requests)?;
    Ok(DataResponse::bytes(
        format.content_type(),
        formats::encode(format, &items)?,
    ))
}

fn post_keyvalues(ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
    let kvs: KeyValues = proto::decode(&req.body, "KeyValues")?;
    for (i, kv) in kvs.kvs.iter().enumerate() {
        keys::check_key(&kv.key).map_err(|e| Error::bad(format!("key-value pair {i}: {e}")))?;
    }
    if kvs.kvs.is_empty() {
        return Ok(DataResponse::empty());
    }
    let mut m = ctx.write();
    for kv in &kvs.kvs {
        put_into(&mut m.batch, &ctx.view, &tkey(&kv.key), &kv.value);
        m.record(postkv_record(&ctx.uuid, &kv.key, kv.value.len()));
    }
    m.commit()?;
    Ok(DataResponse::empty())
}

fn get_keyrangevalues(ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
    let path = req.path_bytes();
    let (first, last) = keys::range_from_path("keyrangevalues", &path)?;
    let format = Format::from_query(&req.query)?;
    let mut items = Vec::new();
    keys::scan(
        &ctx.store,
        &ctx.view,
        Some(first),
        Some(last),
        &mut |key, value| {
            items.push(Item {
                key: shown(key).into_owned(),
                value: Some(value.to_vec()),
                ranged: false,
            });
            Ok(true)
        },
    )?;
    Ok(DataResponse::bytes(
        format.content_type(),
        formats::encode(format, &items)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_shapes() {
        let p = postkv_record("abc", "k", 3);
        assert_eq!(p["Action"], "postkv");
        assert_eq!(p["Key"], "k");
        assert_eq!(p["Bytes"], 3);
        assert_eq!(p["UUID"], "abc");
        assert!(p["Timestamp"].as_str().unwrap().ends_with(" +0000 UTC"));
        let d = delete_record("abc", "k");
        assert_eq!(d["Action"], "delete");
        assert!(d.get("Bytes").is_none());
        let s = serde_json::to_string(&p).unwrap();
        assert!(
            s.starts_with(r#"{"Action":"postkv","Bytes":3,"Key":"k","Timestamp":"#),
            "{s}"
        );
    }
}
