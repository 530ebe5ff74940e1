//! The durable mutation log: per instance and version, an ordered list of JSON records written in
//! the same storage batch as the mutation they describe (spec §7.3).
//!
//! Key: `0x03 ‖ instance u32 BE ‖ version u32 BE ‖ sequence u64 BE`.

use tessera_storage::versioned::{prefix_end, space};
use tessera_storage::{KvStore, VersionId, WriteBatch};

use crate::Result;

fn prefix(instance: u32, version: VersionId) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(space::LOG);
    k.extend_from_slice(&instance.to_be_bytes());
    k.extend_from_slice(&version.to_be_bytes());
    k
}

pub fn append(
    batch: &mut WriteBatch,
    instance: u32,
    version: VersionId,
    seq: u64,
    record: &serde_json::Value,
) {
    let mut key = prefix(instance, version);
    key.extend_from_slice(&seq.to_be_bytes());
    batch.put(
        key,
        serde_json::to_vec(record).expect("JSON values serialize"),
    );
}

pub fn read(kv: &dyn KvStore, instance: u32, version: VersionId) -> Result<Vec<Vec<u8>>> {
    let lo = prefix(instance, version);
    let hi = prefix_end(&lo);
    let mut out = Vec::new();
    kv.scan(&lo, &hi, &mut |_, v| {
        out.push(v.to_vec());
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
