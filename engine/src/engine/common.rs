//! Endpoints every datatype shares (spec §4.0): help, info, tags, sync, blobstore.

use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Value, json};

use super::{Engine, blob_key};
use crate::datatype::DataCtx;
use crate::datatype::{DataRequest, DataResponse, Datatype, Method};
use crate::{Error, Result};

/// Answers a common keyword, or returns `None` for the datatype to handle.
pub fn handle(
    engine: &Arc<Engine>,
    dt: &Arc<dyn Datatype>,
    ctx: &DataCtx,
    spec: &str,
    req: &DataRequest,
) -> Result<Option<DataResponse>> {
    let name = ctx.instance.name.as_str();
    let resp = match (req.keyword.as_str(), req.method) {
        ("help", Method::Get) => DataResponse::text(dt.help()),
        ("info", Method::Get) => DataResponse::json(&engine.instance_info(spec, name)?),
        ("tags", Method::Get) => DataResponse::json(&json!({ "Tags": ctx.instance.tags })),
        ("tags", Method::Post) => {
            let new: std::collections::BTreeMap<String, String> = serde_json::from_slice(&req.body)
                .map_err(|e| {
                    Error::bad(format!("tags body must be a JSON object of strings: {e}"))
                })?;
            let replace = req.query.flag("replace")?;
            engine.modify_instance(spec, name, |_, meta| {
                if replace {
                    meta.tags.clear();
                }
                meta.tags.extend(new);
                Ok(())
            })?;
            DataResponse::empty()
        }
        ("sync", Method::Post) => {
            let body: Value = serde_json::from_slice(&req.body)?;
            let list = body
                .get("sync")
                .and_then(Value::as_str)
                .ok_or_else(|| Error::bad("sync body must be {\"sync\": \"name1,name2\"}"))?;
            let names: Vec<&str> = list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            let replace = req.query.flag("replace")?;
            engine.modify_instance(spec, name, |repo, meta| {
                let mut uuids = Vec::new();
                for n in &names {
                    let target = repo.instance(n)?;
                    if !dt.sync_targets().contains(&target.type_name.as_str()) {
                        return Err(Error::bad(format!(
                            "data {name:?} of type {} can't sync with {n:?} of type {}",
                            dt.type_name(),
                            target.type_name
                        )));
                    }
                    uuids.push(target.data_uuid.clone());
                }
                if replace {
                    meta.syncs.clear();
                }
                for u in uuids {
                    if !meta.syncs.contains(&u) {
                        meta.syncs.push(u);
                    }
                }
                Ok(())
            })?;
            DataResponse::empty()
        }
        ("blobstore", Method::Post) if req.path.is_empty() => {
            let hash = fnv1_128(&req.body);
            ctx.store.kv().put(&blob_key(&hash), &req.body)?;
            let reference = base64::engine::general_purpose::URL_SAFE.encode(hash);
            // DVID's exact spacing.
            DataResponse::bytes(
                "application/json",
                format!("{{\"reference\": \"{reference}\"}}"),
            )
        }
        ("blobstore", Method::Get) if req.path.len() == 1 => {
            let reference = &req.path[0];
            let hash: [u8; 16] = base64::engine::general_purpose::URL_SAFE
                .decode(reference)
                .ok()
                .and_then(|b| b.try_into().ok())
                // DVID answers any reference it holds no blob for with 404, malformed or not.
                .ok_or_else(|| Error::not_found(format!("blob {reference:?} not found")))?;
            match ctx.store.kv().get(&blob_key(&hash))? {
                Some(v) => DataResponse::octets(v),
                None => return Err(Error::not_found(format!("blob {reference:?} not found"))),
            }
        }
        ("help" | "tags" | "sync" | "blobstore", _) => {
            return Err(Error::bad(format!(
                "{} {} is not supported for data {name:?}",
                req.method.as_str(),
                req.keyword
            )));
        }
        _ => return Ok(None),
    };
    Ok(Some(resp))
}

/// FNV-1 (not 1a), 128-bit, big-endian: DVID's blob hash.
pub fn fnv1_128(data: &[u8]) -> [u8; 16] {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013B;
    let mut h = OFFSET;
    for &b in data {
        h = h.wrapping_mul(PRIME);
        h ^= b as u128;
    }
    h.to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1_128_known_values() {
        // Empty input hashes to the offset basis; "a" is the published FNV-1 128 test vector.
        assert_eq!(
            fnv1_128(b""),
            0x6c62272e07bb014262b821756295c58du128.to_be_bytes()
        );
        assert_eq!(
            fnv1_128(b"a"),
            0xd228cb69101a8caf78912b704e4a141eu128.to_be_bytes()
        );
    }
}
