//! The neuronjson endpoints. Each handler validates the whole request before it reads or
//! writes; every write is one atomic batch through the mutation service.

use std::collections::{BTreeMap, BTreeSet};

use parking_lot::Mutex;
use serde_json::{Value, json};
use tessera_storage::versioned::{delete_into, put_into};

use super::query;
use super::record::{self, Record, Show};
use crate::datatype::{DataCtx, DataRequest, DataResponse, Method};
use crate::datatypes::keyvalue::formats::{self, Format, Item};
use crate::datatypes::keyvalue::handlers::delete_record;
use crate::datatypes::keyvalue::proto::{self, KeyValues};
use crate::mutation::log as mutlog;
use crate::{Error, Result};

/// TKey class of annotations (DVID's `keyAnnotation`); the body ID follows big-endian, so
/// key order is numeric order.
const CLASS: u8 = 179;
/// TKey class of the schema documents, followed by the schema's name.
const SCHEMA_CLASS: u8 = 180;

/// The schema documents (stored and returned as posted; not used for validation).
pub const SCHEMAS: [&str; 3] = ["json_schema", "schema", "schema_batch"];

/// Serializes read-modify-write of records (a POST merges into what is stored).
static WRITES: Mutex<()> = parking_lot::const_mutex(());

fn tkey(bodyid: u64) -> Vec<u8> {
    let mut t = Vec::with_capacity(9);
    t.push(CLASS);
    t.extend_from_slice(&bodyid.to_be_bytes());
    t
}

fn schema_tkey(name: &str) -> Vec<u8> {
    let mut t = vec![SCHEMA_CLASS];
    t.extend_from_slice(name.as_bytes());
    t
}

pub fn handle(ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
    let kw = req.keyword.as_str();
    match (kw, req.method) {
        ("key", Method::Get) => get_key(ctx, req),
        ("key", Method::Head) => head_key(ctx, req),
        ("key", Method::Post) => post_key(ctx, req),
        ("key", Method::Delete) => delete_key(ctx, req),
        ("keys", Method::Get) => get_keys(ctx),
        ("keyrange", Method::Get) => get_keyrange(ctx, req),
        ("keyrangevalues", Method::Get) => get_keyrangevalues(ctx, req),
        ("keyvalues", Method::Get) => get_keyvalues(ctx, req),
        ("keyvalues", Method::Post) => post_keyvalues(ctx, req),
        ("fields", Method::Get) => get_fields(ctx, req),
        ("fieldtimes", Method::Get) => get_fieldtimes(ctx),
        ("all", Method::Get) => get_all(ctx, req),
        ("query", Method::Get | Method::Post) => get_query(ctx, req),
        (s, m) if SCHEMAS.contains(&s) => schema(ctx, req, s, m),
        ("mutations", Method::Get) => crate::datatype::log::get_mutations(ctx, req),
        ("mutations-range", Method::Get) => crate::datatype::log::get_mutations_range(ctx, req),
        (keyword, method) => Err(Error::bad(format!(
            "neuronjson endpoint {keyword:?} does not support the {} method",
            method.as_str()
        ))),
    }
}

// ------------------------------------------------------------------ reading

fn decode(bodyid: u64, raw: &[u8]) -> Result<Record> {
    match serde_json::from_slice(raw)? {
        Value::Object(rec) => Ok(rec),
        _ => Err(Error::Internal(format!(
            "stored neuronjson record {bodyid} is not a JSON object"
        ))),
    }
}

fn read(ctx: &DataCtx, bodyid: u64) -> Result<Option<Record>> {
    ctx.store
        .get(&ctx.view, &tkey(bodyid))?
        .map(|raw| decode(bodyid, &raw))
        .transpose()
}

/// Every record with `first <= bodyid <= last`, in body ID order.
fn scan(ctx: &DataCtx, first: u64, last: u64) -> Result<Vec<(u64, Record)>> {
    let mut raw = Vec::new();
    if first <= last {
        ctx.store
            .range(&ctx.view, &tkey(first), Some(&tkey(last)), &mut |tk, v| {
                if tk.len() == 9 && tk[0] == CLASS {
                    let id = u64::from_be_bytes(tk[1..].try_into().expect("8 bytes"));
                    raw.push((id, v.to_vec()));
                }
                Ok(true)
            })?;
    }
    raw.into_iter()
        .map(|(id, v)| Ok((id, decode(id, &v)?)))
        .collect()
}

fn scan_all(ctx: &DataCtx) -> Result<Vec<(u64, Record)>> {
    scan(ctx, 0, u64::MAX)
}

/// The single key after `key/`.
fn key_segment(req: &DataRequest) -> Result<&str> {
    let segs: &[String] = match req.path.as_slice() {
        [rest @ .., last] if last.is_empty() && !rest.is_empty() => rest,
        p => p,
    };
    match segs {
        [k] if !k.is_empty() => Ok(k),
        _ => Err(Error::bad("expect key string to follow 'key' endpoint")),
    }
}

fn selection(req: &DataRequest) -> (BTreeSet<String>, Show) {
    (
        record::parse_fields(req.query.get("fields")),
        Show::parse(req.query.get("show")),
    )
}

fn not_found(key: &str) -> Error {
    Error::not_found(format!("Key {key:?} not found"))
}

fn get_key(ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
    let key = key_segment(req)?;
    if key == "schema" || key == "schema_batch" {
        // DVID keeps these on /key for clients of the keyvalue it replaced.
        let doc = ctx.store.get(&ctx.view, &schema_tkey(key))?;
        return doc
            .map(|d| DataResponse::bytes("application/json", d))
            .ok_or_else(|| not_found(key));
    }
    let bodyid = record::parse_bodyid(key)?;
    let rec = read(ctx, bodyid)?.ok_or_else(|| not_found(key))?;
    let (fields, show) = selection(req);
    Ok(DataResponse::json(&Value::Object(record::select(
        &rec, &fields, show,
    ))))
}

fn head_key(ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
    let key = key_segment(req)?;
    let bodyid = record::parse_bodyid(key)?;
    match ctx.store.get(&ctx.view, &tkey(bodyid))? {
        Some(_) => Ok(DataResponse::empty()),
        None => Err(not_found(key)),
    }
}

fn get_keys(ctx: &DataCtx) -> Result<DataResponse> {
    let keys: Vec<String> = scan_all(ctx)?
        .into_iter()
        .map(|(id, _)| id.to_string())
        .collect();
    Ok(DataResponse::json(&json!(keys)))
}

/// A range bound as DVID reads it: a key starting above '9' is the largest body ID, one
/// starting below '0' the smallest; otherwise a decimal uint64.
fn range_bound(key: &str) -> Result<u64> {
    match key.as_bytes().first() {
        None => Err(Error::bad("key string is empty")),
        Some(c) if *c > b'9' => Ok(u64::MAX),
        Some(c) if *c < b'0' => Ok(0),
        _ => key.parse().map_err(|_| {
            Error::bad(format!(
                "range key {key:?} must be a body ID (a uint64 in decimal)"
            ))
        }),
    }
}

fn range_from_path(keyword: &str, req: &DataRequest) -> Result<(u64, u64)> {
    match req.path.as_slice() {
        [a, b] | [a, b, _] if req.path.get(2).is_none_or(|s| s.is_empty()) => {
            Ok((range_bound(a)?, range_bound(b)?))
        }
        _ => Err(Error::bad(format!(
            "expect beginning and end keys to follow '{keyword}' endpoint"
        ))),
    }
}

fn get_keyrange(ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
    let (a, b) = range_from_path("keyrange", req)?;
    let keys: Vec<String> = scan(ctx, a, b)?
        .into_iter()
        .map(|(id, _)| id.to_string())
        .collect();
    Ok(DataResponse::json(&json!(keys)))
}

fn item(bodyid: u64, rec: Option<&Record>, fields: &BTreeSet<String>, show: Show) -> Item {
    Item {
        key: bodyid.to_string(),
        value: rec.map(|r| {
            serde_json::to_vec(&Value::Object(record::select(r, fields, show)))
                .expect("JSON values serialize")
        }),
        ranged: false,
    }
}

fn get_keyrangevalues(ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
    let (a, b) = range_from_path("keyrangevalues", req)?;
    let format = Format::from_query(&req.query)?;
    let (fields, show) = selection(req);
    let items: Vec<Item> = scan(ctx, a, b)?
        .iter()
        .map(|(id, r)| item(*id, Some(r), &fields, show))
        .collect();
    Ok(DataResponse::bytes(
        format.content_type(),
        formats::encode(format, &items)?,
    ))
}

fn get_keyvalues(ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
    let format = Format::from_query(&req.query)?;
    let keys: Vec<String> = match format {
        Format::Protobuf => formats::requests_from_proto(&req.body)?
            .into_iter()
            .map(|r| r.key)
            .collect(),
        // DVID also takes a JSON list of body IDs as numbers.
        Format::Json { .. } => match serde_json::from_slice::<Vec<u64>>(&req.body) {
            Ok(ids) => ids.iter().map(u64::to_string).collect(),
            Err(_) => formats::requests_from_json(&req.body)?
                .into_iter()
                .map(|r| r.key)
                .collect(),
        },
        Format::Tar => formats::requests_from_json(&req.body)?
            .into_iter()
            .map(|r| r.key)
            .collect(),
    };
    let ids = keys
        .iter()
        .map(|k| record::parse_bodyid(k))
        .collect::<Result<Vec<u64>>>()?;
    let (fields, show) = selection(req);
    let mut items = Vec::with_capacity(ids.len());
    for id in ids {
        items.push(item(id, read(ctx, id)?.as_ref(), &fields, show));
    }
    if let Format::Json { .. } = format {
        // The JSON answer leaves out bodies without a record (protobuf and tar answer empty
        // values for them).
        items.retain(|i| i.value.is_some());
    }
    Ok(DataResponse::bytes(
        format.content_type(),
        formats::encode(format, &items)?,
    ))
}

fn get_fields(ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for (_, rec) in scan_all(ctx)? {
        for field in rec.keys() {
            *counts.entry(field.clone()).or_default() += 1;
        }
    }
    if req.query.get("counts") == Some("true") {
        return Ok(DataResponse::json(&json!(counts)));
    }
    Ok(DataResponse::json(&json!(
        counts.into_keys().collect::<Vec<_>>()
    )))
}

/// `{"field": latest <field>_time}` over the version's records (DVID keeps the time of the
/// last write per field in memory; the latest recorded time is what it holds unless a post
/// set an older `_time` explicitly).
fn get_fieldtimes(ctx: &DataCtx) -> Result<DataResponse> {
    let mut times: BTreeMap<String, String> = BTreeMap::new();
    for (_, rec) in scan_all(ctx)? {
        for (field, v) in &rec {
            if let (Some(base), Some(t)) = (field.strip_suffix("_time"), v.as_str()) {
                let e = times.entry(base.to_string()).or_default();
                if t > e.as_str() {
                    *e = t.to_string();
                }
            }
        }
    }
    Ok(DataResponse::json(&json!(times)))
}

fn get_all(ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
    let (fields, show) = selection(req);
    let with_bodyid = fields.contains("bodyid");
    let out: Vec<Value> = scan_all(ctx)?
        .iter()
        .map(|(_, r)| record::select(r, &fields, show))
        .filter(|o| o.len() > 1 || with_bodyid)
        .map(Value::Object)
        .collect();
    Ok(DataResponse::json(&Value::Array(out)))
}

fn get_query(ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
    let q = query::parse(&req.body)?;
    let (fields, show) = selection(req);
    let onlyid = req.query.get("onlyid") == Some("true");
    let matched = scan_all(ctx)?
        .into_iter()
        .filter(|(_, r)| query::matches(&q, r));
    let out: Vec<Value> = if onlyid {
        matched.map(|(id, _)| json!(id)).collect()
    } else {
        matched
            .map(|(_, r)| Value::Object(record::select(&r, &fields, show)))
            .collect()
    };
    Ok(DataResponse::json(&Value::Array(out)))
}

// ------------------------------------------------------------------ writing

/// The mutation record of a stored annotation (DVID publishes `postneuronjson`).
pub fn post_record(uuid: &str, key: &str, bytes: usize) -> Value {
    json!({
        "Action": "postneuronjson",
        "Bytes": bytes,
        "Key": key,
        "Timestamp": mutlog::timestamp(),
        "UUID": uuid,
    })
}

/// The writer of a POST: `u=` (DVID refuses writes without one).
fn writer(ctx: &DataCtx) -> Result<&str> {
    ctx.user
        .as_deref()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| Error::bad("cannot alter neuronjson data without a valid user (u=)"))
}

fn conditionals(req: &DataRequest) -> Vec<String> {
    req.query
        .get("conditional")
        .or_else(|| req.query.get("conditionals"))
        .filter(|s| !s.is_empty())
        .map(|s| s.split(',').map(str::to_string).collect())
        .unwrap_or_default()
}

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// One posted annotation, checked: body ID, posted record, size of the posted body.
struct Posted {
    bodyid: u64,
    rec: Record,
    bytes: usize,
}

fn post_key(ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
    let key = key_segment(req)?;
    let user = writer(ctx)?.to_string();
    if key == "schema" || key == "schema_batch" {
        return put_schema(ctx, key, &req.body);
    }
    let bodyid = record::parse_bodyid(key)?;
    let rec = record::parse_posted(&req.body, bodyid)?;
    store(
        ctx,
        vec![Posted {
            bodyid,
            rec,
            bytes: req.body.len(),
        }],
        &user,
        &conditionals(req),
        req.query.flag("replace")?,
    )?;
    Ok(DataResponse::empty())
}

fn post_keyvalues(ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
    let user = writer(ctx)?.to_string();
    let kvs: KeyValues = proto::decode(&req.body, "KeyValues")?;
    let posted = kvs
        .kvs
        .iter()
        .enumerate()
        .map(|(i, kv)| {
            let bodyid = record::parse_bodyid(&kv.key)
                .and_then(|id| Ok((id, record::parse_posted(&kv.value, id)?)))
                .map_err(|e| Error::bad(format!("key-value pair {i}: {e}")))?;
            Ok(Posted {
                bodyid: bodyid.0,
                rec: bodyid.1,
                bytes: kv.value.len(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    store(
        ctx,
        posted,
        &user,
        &conditionals(req),
        req.query.flag("replace")?,
    )?;
    Ok(DataResponse::empty())
}

/// Merges each posted record into what is stored (or what an earlier one of the same batch
/// made) and writes them all in one batch.
fn store(
    ctx: &DataCtx,
    posted: Vec<Posted>,
    user: &str,
    conditionals: &[String],
    replace: bool,
) -> Result<()> {
    if posted.is_empty() {
        return Ok(());
    }
    let _guard = WRITES.lock();
    let now = now();
    let mut made: BTreeMap<u64, Record> = BTreeMap::new();
    let mut m = ctx.write();
    for p in posted {
        let orig = match made.get(&p.bodyid) {
            Some(r) => Some(r.clone()),
            None => read(ctx, p.bodyid)?,
        };
        let mut rec = p.rec;
        record::update(orig, &mut rec, user, conditionals, replace, &now);
        m.record(post_record(&ctx.uuid, &p.bodyid.to_string(), p.bytes));
        made.insert(p.bodyid, rec);
    }
    for (id, rec) in &made {
        let bytes = serde_json::to_vec(&Value::Object(rec.clone()))?;
        put_into(&mut m.batch, &ctx.view, &tkey(*id), &bytes);
    }
    m.commit()
}

fn delete_key(ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
    let key = key_segment(req)?;
    if key == "schema" || key == "schema_batch" {
        return delete_schema(ctx, key);
    }
    let bodyid = record::parse_bodyid(key)?;
    let _guard = WRITES.lock();
    let mut m = ctx.write();
    delete_into(&mut m.batch, &ctx.view, &tkey(bodyid));
    m.record(delete_record(&ctx.uuid, key));
    m.commit()?;
    Ok(DataResponse::empty())
}

// ------------------------------------------------------------------ schemas

fn put_schema(ctx: &DataCtx, name: &str, body: &[u8]) -> Result<DataResponse> {
    serde_json::from_slice::<Value>(body)
        .map_err(|e| Error::bad(format!("{name} must be JSON: {e}")))?;
    let mut m = ctx.write();
    put_into(&mut m.batch, &ctx.view, &schema_tkey(name), body);
    m.commit()?;
    Ok(DataResponse::empty())
}

fn delete_schema(ctx: &DataCtx, name: &str) -> Result<DataResponse> {
    let mut m = ctx.write();
    delete_into(&mut m.batch, &ctx.view, &schema_tkey(name));
    m.commit()?;
    Ok(DataResponse::empty())
}

fn schema(ctx: &DataCtx, req: &DataRequest, name: &str, method: Method) -> Result<DataResponse> {
    match method {
        Method::Get | Method::Head => {
            let doc = ctx
                .store
                .get(&ctx.view, &schema_tkey(name))?
                .ok_or_else(|| Error::not_found(format!("no {name} stored")))?;
            if method == Method::Head {
                return Ok(DataResponse::empty());
            }
            Ok(DataResponse::bytes("application/json", doc))
        }
        Method::Post | Method::Put => put_schema(ctx, name, &req.body),
        Method::Delete => delete_schema(ctx, name),
    }
}
