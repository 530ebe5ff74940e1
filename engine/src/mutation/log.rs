//! The durable mutation log: per instance and version, an ordered list of JSON records written in
//! the same storage batch as the mutation they describe (spec §7.3).
//!
//! Key: `0x03 ‖ instance u32 BE ‖ version u32 BE ‖ sequence u64 BE`.

use serde_json::Value;
use tessera_storage::versioned::{prefix_end, space};
use tessera_storage::{KvStore, VersionId, WriteBatch};

use crate::{Error, Result};

fn prefix(instance: u32, version: VersionId) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(space::LOG);
    k.extend_from_slice(&instance.to_be_bytes());
    k.extend_from_slice(&version.to_be_bytes());
    k
}

/// The key of record `seq` of an instance's log at `version`.
pub fn key(instance: u32, version: VersionId, seq: u64) -> Vec<u8> {
    let mut k = prefix(instance, version);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The key range of an instance's log at `version`.
pub fn range(instance: u32, version: VersionId) -> (Vec<u8>, Vec<u8>) {
    let p = prefix(instance, version);
    let end = prefix_end(&p);
    (p, end)
}

pub fn append(
    batch: &mut WriteBatch,
    instance: u32,
    version: VersionId,
    seq: u64,
    record: &serde_json::Value,
) {
    batch.put(
        key(instance, version, seq),
        serde_json::to_vec(record).expect("JSON values serialize"),
    );
}

pub fn read(kv: &dyn KvStore, instance: u32, version: VersionId) -> Result<Vec<Vec<u8>>> {
    Ok(read_after(kv, instance, version, None)?
        .into_iter()
        .map(|(_, r)| r)
        .collect())
}

/// The records after sequence number `after` (all when `None`), with their sequence numbers.
pub fn read_after(
    kv: &dyn KvStore,
    instance: u32,
    version: VersionId,
    after: Option<u64>,
) -> Result<Vec<(u64, Vec<u8>)>> {
    let base = prefix(instance, version);
    let hi = prefix_end(&base);
    let mut lo = base.clone();
    if let Some(seq) = after {
        match seq.checked_add(1) {
            Some(next) => lo.extend_from_slice(&next.to_be_bytes()),
            None => return Ok(Vec::new()),
        }
    }
    let mut out = Vec::new();
    kv.scan(&lo, &hi, &mut |k, v| {
        let seq = k[base.len()..]
            .try_into()
            .map(u64::from_be_bytes)
            .unwrap_or(0);
        out.push((seq, v.to_vec()));
        Ok(true)
    })?;
    Ok(out)
}

/// Removes every record of an instance.
pub fn delete_all(kv: &dyn KvStore, instance: u32) -> Result<()> {
    let mut lo = vec![space::LOG];
    lo.extend_from_slice(&instance.to_be_bytes());
    let hi = prefix_end(&lo);
    let mut batch = WriteBatch::new();
    kv.scan(&lo, &hi, &mut |k, _| {
        batch.delete(k);
        Ok(true)
    })?;
    Ok(kv.write(batch)?)
}

/// DVID's `Timestamp` field: Go's `time.Time.String()` layout, in UTC.
pub fn timestamp() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%d %H:%M:%S%.f +0000 UTC")
        .to_string()
}

/// `[rec,rec,...]` from raw JSON records, keeping only those whose `User` is `userid` when given.
pub fn records_json(records: &[Vec<u8>], userid: Option<&str>) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(2 + records.iter().map(|r| r.len() + 1).sum::<usize>());
    out.push(b'[');
    let mut first = true;
    for rec in records {
        if let Some(user) = userid {
            let v: Value = serde_json::from_slice(rec)
                .map_err(|e| Error::Internal(format!("corrupt mutation record: {e}")))?;
            if v.get("User").and_then(Value::as_str) != Some(user) {
                continue;
            }
        }
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(rec);
    }
    out.push(b']');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_joined_raw() {
        let recs = vec![
            br#"{"Action":"postkv","User":"ann"}"#.to_vec(),
            br#"{"Action":"delete"}"#.to_vec(),
        ];
        assert_eq!(
            records_json(&recs, None).unwrap(),
            br#"[{"Action":"postkv","User":"ann"},{"Action":"delete"}]"#
        );
        assert_eq!(
            records_json(&recs, Some("ann")).unwrap(),
            br#"[{"Action":"postkv","User":"ann"}]"#
        );
        assert_eq!(records_json(&recs, Some("bob")).unwrap(), b"[]");
        assert_eq!(records_json(&[], None).unwrap(), b"[]");
    }
}
