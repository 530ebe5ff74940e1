//! The tarsupervoxels endpoints (spec §4.9). Each handler validates the whole request first,
//! then reads, or writes one atomic batch holding the blobs and their mutation-log records.

use serde_json::{Value, json};
use tessera_storage::versioned::{delete_into, put_into};

use super::archive;
use super::blobs::Blobs;
use super::bodies;
use super::keys::{id_from_path, tkey};
use crate::datatype::DataCtx;
use crate::datatype::{DataRequest, DataResponse, Method};
use crate::mutation::log as mutlog;
use crate::{Error, Result};

pub fn handle(ctx: &DataCtx, blobs: Blobs, req: &DataRequest) -> Result<DataResponse> {
    match (req.keyword.as_str(), req.method) {
        ("supervoxel", Method::Get) => get_supervoxel(&blobs, req),
        ("supervoxel", Method::Post) => post_supervoxel(ctx, req),
        ("supervoxel", Method::Delete) => delete_supervoxel(ctx, req),
        ("tarfile", Method::Get) => get_tarfile(ctx, blobs, req),
        ("tarfile", Method::Head) => head_tarfile(ctx, &blobs, req),
        ("missing", Method::Get) => get_missing(ctx, &blobs, req),
        ("exists", Method::Get) => get_exists(&blobs, req),
        ("load", Method::Post) => post_load(ctx, &blobs, req),
        ("generate", Method::Post) => post_generate(ctx, &blobs, req),
        ("mutations", Method::Get) => crate::datatype::log::get_mutations(ctx, req),
        ("mutations-range", Method::Get) => crate::datatype::log::get_mutations_range(ctx, req),
        (keyword, method) => Err(Error::bad(format!(
            "tarsupervoxels endpoint {keyword:?} does not support the {} method",
            method.as_str()
        ))),
    }
}

fn supervoxel(req: &DataRequest) -> Result<u64> {
    id_from_path("supervoxel", &req.path, "supervoxel")
}

fn body(req: &DataRequest) -> Result<u64> {
    id_from_path(&req.keyword, &req.path, "body")
}

/// The mutation record of a stored blob.
pub fn post_record(uuid: &str, sv: u64, bytes: usize) -> Value {
    // Fields in sorted order, as Go's JSON encoding of a map writes them.
    json!({
        "Action": "post",
        "Bytes": bytes,
        "Supervoxel": sv,
        "Timestamp": mutlog::timestamp(),
        "UUID": uuid,
    })
}

/// The mutation record of a deleted blob.
pub fn delete_record(uuid: &str, sv: u64) -> Value {
    json!({
        "Action": "delete",
        "Supervoxel": sv,
        "Timestamp": mutlog::timestamp(),
        "UUID": uuid,
    })
}

fn get_supervoxel(blobs: &Blobs, req: &DataRequest) -> Result<DataResponse> {
    let sv = supervoxel(req)?;
    match blobs.get(sv)? {
        Some(data) => Ok(DataResponse::octets(data)),
        None => Err(Error::not_found(format!("Supervoxel {sv} not found"))),
    }
}

fn post_supervoxel(ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
    let sv = supervoxel(req)?;
    let mut m = ctx.write();
    put_into(&mut m.batch, &ctx.view, &tkey(sv), &req.body);
    m.record(post_record(&ctx.uuid, sv, req.body.len()));
    m.commit()?;
    Ok(DataResponse::empty())
}

fn delete_supervoxel(ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
    let sv = supervoxel(req)?;
    let mut m = ctx.write();
    delete_into(&mut m.batch, &ctx.view, &tkey(sv));
    m.record(delete_record(&ctx.uuid, sv));
    m.commit()?;
    Ok(DataResponse::empty())
}

fn get_tarfile(ctx: &DataCtx, blobs: Blobs, req: &DataRequest) -> Result<DataResponse> {
    let body = body(req)?;
    let svs = bodies::supervoxels(ctx, body)?;
    Ok(DataResponse::stream(
        "application/tar",
        blobs.tar_stream(svs),
    ))
}

fn head_tarfile(ctx: &DataCtx, blobs: &Blobs, req: &DataRequest) -> Result<DataResponse> {
    let body = body(req)?;
    let svs = bodies::supervoxels(ctx, body)?;
    let missing = blobs.missing(&svs)?;
    if let Some(first) = missing.first() {
        return Err(Error::bad(format!(
            "not all supervoxel data available for body {body}: {} of its {} supervoxels have none (e.g. {first})",
            missing.len(),
            svs.len()
        )));
    }
    Ok(DataResponse::empty())
}

fn get_missing(ctx: &DataCtx, blobs: &Blobs, req: &DataRequest) -> Result<DataResponse> {
    let body = body(req)?;
    let svs = bodies::supervoxels(ctx, body)?;
    Ok(DataResponse::json(&json!(blobs.missing(&svs)?)))
}

fn get_exists(blobs: &Blobs, req: &DataRequest) -> Result<DataResponse> {
    req.check_hash()?;
    let svs: Vec<u64> = serde_json::from_slice(&req.body).map_err(|e| {
        Error::bad(format!(
            "exists needs a JSON list of supervoxel ids in the request body: {e}"
        ))
    })?;
    Ok(DataResponse::json(&json!(blobs.present(&svs)?)))
}

fn post_load(ctx: &DataCtx, blobs: &Blobs, req: &DataRequest) -> Result<DataResponse> {
    let members = archive::parse_load(&req.body, &blobs.extension)?;
    if members.is_empty() {
        return Ok(DataResponse::empty());
    }
    let mut m = ctx.write();
    for (sv, data) in &members {
        put_into(&mut m.batch, &ctx.view, &tkey(*sv), data);
        m.record(post_record(&ctx.uuid, *sv, data.len()));
    }
    m.commit()?;
    Ok(DataResponse::empty())
}

/// `POST generate/<body>` (with the `Generate` setting): meshes every supervoxel of the body
/// that has no stored blob and stores the meshes in one batch → `{"generated": n}`.
fn post_generate(ctx: &DataCtx, blobs: &Blobs, req: &DataRequest) -> Result<DataResponse> {
    let Some(generator) = blobs.generator() else {
        return Err(Error::bad(format!(
            "data {:?} was not created with \"Generate\": \"true\"; it only stores what is loaded",
            ctx.instance.name
        )));
    };
    let body = body(req)?;
    let svs = bodies::supervoxels(ctx, body)?;
    let mut m = ctx.write();
    let mut generated = 0;
    for sv in blobs.unstored(&svs)? {
        if let Some(data) = generator.mesh(sv)? {
            put_into(&mut m.batch, &ctx.view, &tkey(sv), &data);
            m.record(post_record(&ctx.uuid, sv, data.len()));
            generated += 1;
        }
    }
    m.commit()?;
    Ok(DataResponse::json(&json!({ "generated": generated })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_shapes() {
        let p = serde_json::to_string(&post_record("abc", 7, 3)).unwrap();
        assert!(
            p.starts_with(r#"{"Action":"post","Bytes":3,"Supervoxel":7,"Timestamp":"#),
            "{p}"
        );
        assert!(p.ends_with(r#","UUID":"abc"}"#), "{p}");
        let d = delete_record("abc", 7);
        assert_eq!(d["Action"], "delete");
        assert_eq!(d["Supervoxel"], 7);
        assert!(d.get("Bytes").is_none());
    }
}
