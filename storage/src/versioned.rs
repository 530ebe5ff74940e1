//! The versioned view of spec §1.4: every stored value's key carries the version that wrote it,
//! deletes write tombstones, and a read at version `v` resolves the nearest ancestor through the
//! version DAG, including merge nodes.
//!
//! Key layout (differs from DVID's on-disk bytes on purpose, see `docs/storage.md`):
//! `0x01 ‖ instance u32 BE ‖ escape(tkey) ‖ 0x00 0x00 ‖ version u32 BE`, where `escape` turns
//! each `0x00` into `0x00 0xFF`. The escaping keeps tkeys in byte order and makes no encoded tkey
//! a prefix of another, so all versions of one tkey are adjacent in a scan and range reads can
//! resolve key by key while streaming. Values are `0x00 ‖ bytes`, or `0x01` for a tombstone.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::{Error, KvStore, Result, WriteBatch};

/// A server-local version number (DVID's VersionID).
pub type VersionId = u32;

/// First bytes of the keyspaces sharing one store.
pub mod space {
    pub const META: u8 = 0x00;
    pub const DATA: u8 = 0x01;
    pub const BLOB: u8 = 0x02;
    pub const LOG: u8 = 0x03;
    /// Durable outboxes of sync subscribers (engine::mutation::outbox).
    pub const OUTBOX: u8 = 0x04;
    /// Hashes of values a transfer received, each naming a key that holds it
    /// (engine::engine::transfer), so a later transfer reuses them instead of moving them.
    pub const HASHES: u8 = 0x05;
}

const PRESENT: u8 = 0x00;
const TOMBSTONE: u8 = 0x01;

/// The version DAG as storage needs it: each version's parents, first parent first (the
/// priority order used by `resolve`).
#[derive(Debug, Clone, Default)]
pub struct Dag {
    parents: HashMap<VersionId, Vec<VersionId>>,
}

impl Dag {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, version: VersionId, parents: Vec<VersionId>) {
        self.parents.insert(version, parents);
    }

    pub fn parents(&self, version: VersionId) -> &[VersionId] {
        self.parents.get(&version).map_or(&[], |p| p.as_slice())
    }

    pub fn contains(&self, version: VersionId) -> bool {
        self.parents.contains_key(&version)
    }

    /// True when `a` is a proper ancestor of `b`.
    pub fn is_ancestor(&self, a: VersionId, b: VersionId) -> bool {
        let mut stack: Vec<VersionId> = self.parents(b).to_vec();
        let mut seen = HashSet::new();
        while let Some(v) = stack.pop() {
            if v == a {
                return true;
            }
            if seen.insert(v) {
                stack.extend_from_slice(self.parents(v));
            }
        }
        false
    }
}

/// Where a versioned read or write happens: one instance at one version of one DAG.
#[derive(Debug, Clone)]
pub struct View {
    pub instance: u32,
    pub version: VersionId,
    pub dag: Arc<Dag>,
}

/// One stored version of a key: `None` is a tombstone.
pub type Entry = (VersionId, Option<Vec<u8>>);

fn escape_into(out: &mut Vec<u8>, tkey: &[u8]) {
    for &b in tkey {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
}

fn unescape(encoded: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded.len());
    let mut i = 0;
    while i < encoded.len() {
        out.push(encoded[i]);
        i += if encoded[i] == 0 { 2 } else { 1 };
    }
    out
}

fn instance_prefix(instance: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(16);
    k.push(space::DATA);
    k.extend_from_slice(&instance.to_be_bytes());
    k
}

/// Key prefix shared by every version of `tkey`.
fn base_key(instance: u32, tkey: &[u8]) -> Vec<u8> {
    let mut k = instance_prefix(instance);
    escape_into(&mut k, tkey);
    k.extend_from_slice(&[0, 0]);
    k
}

/// The stored key of `tkey` at `version` in `instance`.
pub fn data_key(instance: u32, tkey: &[u8], version: VersionId) -> Vec<u8> {
    let mut k = base_key(instance, tkey);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

/// The first byte of a stored data key's tkey (its class, by the datatypes' convention), so a
/// store wrapper can tell kinds of values apart without knowing datatypes.
pub fn tkey_class(raw_key: &[u8]) -> Option<u8> {
    match raw_key {
        [space::DATA, _, _, _, _, class, ..] => Some(*class),
        _ => None,
    }
}

/// The smallest key greater than every key starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return end;
        }
    }
    Vec::new()
}

/// A value as stored: `0x00 ‖ bytes`, or the tombstone `0x01` for `None`.
pub fn encode_value(value: Option<&[u8]>) -> Vec<u8> {
    match value {
        Some(v) => [&[PRESENT][..], v].concat(),
        None => vec![TOMBSTONE],
    }
}

/// Whether `raw` is a well-formed stored value.
pub fn is_stored_value(raw: &[u8]) -> bool {
    matches!(raw, [PRESENT, ..] | [TOMBSTONE])
}

fn decode_value(raw: &[u8]) -> Result<Option<Vec<u8>>> {
    match raw.first() {
        Some(&PRESENT) => Ok(Some(raw[1..].to_vec())),
        Some(&TOMBSTONE) => Ok(None),
        _ => Err(Error::Corrupt(
            "versioned value without a marker byte".into(),
        )),
    }
}

fn split_key(key: &[u8]) -> Result<(&[u8], VersionId)> {
    if key.len() < 11 {
        return Err(Error::Corrupt("versioned key too short".into()));
    }
    let (base, ver) = key.split_at(key.len() - 4);
    Ok((base, u32::from_be_bytes(ver.try_into().expect("4 bytes"))))
}

/// A version's ancestry up to the root or the first merge node, with each version's distance.
struct Chain {
    depth: HashMap<VersionId, usize>,
    ends_at_root: bool,
}

impl Chain {
    fn new(dag: &Dag, version: VersionId) -> Self {
        let mut depth = HashMap::new();
        let mut cur = version;
        loop {
            depth.insert(cur, depth.len());
            match dag.parents(cur) {
                [] => {
                    return Chain {
                        depth,
                        ends_at_root: true,
                    };
                }
                [p] => cur = *p,
                _ => {
                    return Chain {
                        depth,
                        ends_at_root: false,
                    };
                }
            }
        }
    }

    /// The entry nearest the version along the chain: what `resolve`'s walk would find first.
    fn nearest<'a>(&self, entries: &'a [Entry]) -> Option<&'a Entry> {
        entries
            .iter()
            .filter_map(|e| self.depth.get(&e.0).map(|d| (*d, e)))
            .min_by_key(|(d, _)| *d)
            .map(|(_, e)| e)
    }
}

/// Resolves the value visible at `version` among the stored `entries` of one key (spec §1.4).
pub fn resolve<'a>(
    dag: &Dag,
    version: VersionId,
    entries: &'a [Entry],
    tkey: &[u8],
) -> Result<Option<&'a [u8]>> {
    let find = |v: VersionId| entries.iter().find(|e| e.0 == v);
    // Fast path: walk single-parent links until a hit or a merge node.
    let mut cur = version;
    loop {
        if let Some((_, value)) = find(cur) {
            return Ok(value.as_deref());
        }
        match dag.parents(cur) {
            [] => return Ok(None),
            [p] => cur = *p,
            _ => break,
        }
    }
    // Merge node: every parent path's nearest hit, then drop hits shadowed by a deeper hit.
    let mut hits: Vec<&Entry> = Vec::new();
    let mut stack = dag.parents(cur).to_vec();
    stack.reverse();
    let mut seen = HashSet::new();
    while let Some(v) = stack.pop() {
        if !seen.insert(v) {
            continue;
        }
        match find(v) {
            Some(e) => hits.push(e),
            None => stack.extend(dag.parents(v).iter().rev()),
        }
    }
    let live: Vec<&Entry> = hits
        .iter()
        .filter(|h| !hits.iter().any(|o| o.0 != h.0 && dag.is_ancestor(h.0, o.0)))
        .filter(|h| h.1.is_some())
        .copied()
        .collect();
    match live.as_slice() {
        [] => Ok(None),
        [first, rest @ ..] => {
            if rest.iter().all(|h| h.1 == first.1) {
                Ok(first.1.as_deref())
            } else {
                Err(Error::Conflict {
                    key: tkey.to_vec(),
                    versions: live.iter().map(|h| h.0).collect(),
                })
            }
        }
    }
}

/// The versioned view over one key-value store.
#[derive(Clone)]
pub struct VersionedStore {
    kv: Arc<dyn KvStore>,
}

impl VersionedStore {
    pub fn new(kv: Arc<dyn KvStore>) -> Self {
        Self { kv }
    }

    pub fn kv(&self) -> &Arc<dyn KvStore> {
        &self.kv
    }

    /// All stored versions of one tkey, in version order.
    pub fn entries(&self, instance: u32, tkey: &[u8]) -> Result<Vec<Entry>> {
        let base = base_key(instance, tkey);
        let end = prefix_end(&base);
        let mut out = Vec::new();
        self.kv.scan(&base, &end, &mut |k, v| {
            let (_, ver) = split_key(k)?;
            out.push((ver, decode_value(v)?));
            Ok(true)
        })?;
        Ok(out)
    }

    /// The value of `tkey` visible at the view's version; `Err(Conflict)` at an unresolved merge.
    pub fn get(&self, view: &View, tkey: &[u8]) -> Result<Option<Vec<u8>>> {
        let entries = self.entries(view.instance, tkey)?;
        Ok(resolve(&view.dag, view.version, &entries, tkey)?.map(<[u8]>::to_vec))
    }

    /// The values of several tkeys visible at the view's version, read in one storage call.
    pub fn get_many(&self, view: &View, tkeys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>> {
        let ranges: Vec<(Vec<u8>, Vec<u8>)> = tkeys
            .iter()
            .map(|t| {
                let base = base_key(view.instance, t);
                let end = prefix_end(&base);
                (base, end)
            })
            .collect();
        let mut entries: Vec<Vec<Entry>> = vec![Vec::new(); tkeys.len()];
        self.kv.scan_ranges(&ranges, &mut |i, k, v| {
            let (_, ver) = split_key(k)?;
            entries[i].push((ver, decode_value(v)?));
            Ok(true)
        })?;
        entries
            .iter()
            .zip(tkeys)
            .map(|(e, t)| Ok(resolve(&view.dag, view.version, e, t)?.map(<[u8]>::to_vec)))
            .collect()
    }

    pub fn put(&self, view: &View, tkey: &[u8], value: &[u8]) -> Result<()> {
        let mut b = WriteBatch::new();
        put_into(&mut b, view, tkey, value);
        self.kv.write(b)
    }

    /// Writes a tombstone at the view's version; ancestors keep their values.
    pub fn delete(&self, view: &View, tkey: &[u8]) -> Result<()> {
        let mut b = WriteBatch::new();
        delete_into(&mut b, view, tkey);
        self.kv.write(b)
    }

    pub fn write(&self, batch: WriteBatch) -> Result<()> {
        self.kv.write(batch)
    }

    /// Visits every tkey in `[start, end]` (inclusive; `end = None` means through the last key)
    /// that is visible at the view's version, in key order, with its resolved value.
    pub fn range(
        &self,
        view: &View,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        // Walk the version's single-parent ancestry once, not once per key.
        let chain = Chain::new(&view.dag, view.version);
        self.scan_grouped(view.instance, start, end, &mut |tkey, entries| {
            let value = match chain.nearest(entries) {
                Some(entry) => entry.1.as_deref(),
                None if chain.ends_at_root => None,
                None => resolve(&view.dag, view.version, entries, tkey)?,
            };
            match value {
                Some(value) => visit(tkey, value),
                None => Ok(true),
            }
        })
    }

    /// Visits every tkey in `[start, end]` with all its stored versions, resolved or not. This is
    /// what `resolve` and whole-instance operations need.
    pub fn scan_grouped(
        &self,
        instance: u32,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[Entry]) -> Result<bool>,
    ) -> Result<()> {
        let lo = base_key(instance, start);
        let hi = match end {
            Some(e) => prefix_end(&base_key(instance, e)),
            None => prefix_end(&instance_prefix(instance)),
        };
        let mut cur_base: Vec<u8> = Vec::new();
        let mut group: Vec<Entry> = Vec::new();
        let prefix_len = instance_prefix(instance).len();
        let mut stopped = false;
        self.kv.scan(&lo, &hi, &mut |k, v| {
            let (base, ver) = split_key(k)?;
            if base != cur_base.as_slice() {
                if !group.is_empty() {
                    let tkey = unescape(&cur_base[prefix_len..cur_base.len() - 2]);
                    if !visit(&tkey, &group)? {
                        stopped = true;
                        return Ok(false);
                    }
                    group.clear();
                }
                cur_base.clear();
                cur_base.extend_from_slice(base);
            }
            group.push((ver, decode_value(v)?));
            Ok(true)
        })?;
        if !stopped && !group.is_empty() {
            let tkey = unescape(&cur_base[prefix_len..cur_base.len() - 2]);
            visit(&tkey, &group)?;
        }
        Ok(())
    }

    /// Physically removes every version of every key of an instance.
    pub fn delete_all(&self, instance: u32) -> Result<()> {
        let lo = instance_prefix(instance);
        let hi = prefix_end(&lo);
        let mut batch = WriteBatch::new();
        self.kv.scan(&lo, &hi, &mut |k, _| {
            batch.delete(k);
            Ok(true)
        })?;
        self.kv.write(batch)
    }
}

/// Adds a versioned put of `tkey` at the view's version to `batch`.
pub fn put_into(batch: &mut WriteBatch, view: &View, tkey: &[u8], value: &[u8]) {
    let mut v = Vec::with_capacity(value.len() + 1);
    v.push(PRESENT);
    v.extend_from_slice(value);
    batch.put(data_key(view.instance, tkey, view.version), v);
}

/// Adds a versioned delete (a tombstone) of `tkey` at the view's version to `batch`.
pub fn delete_into(batch: &mut WriteBatch, view: &View, tkey: &[u8]) {
    batch.put(data_key(view.instance, tkey, view.version), vec![TOMBSTONE]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_keeps_order_and_is_prefix_free() {
        let keys: Vec<&[u8]> = vec![
            b"", b"\0", b"\0\0", b"\0\x01", b"a", b"a\0", b"a\0b", b"a\x01", b"ab", b"\xff",
        ];
        let enc: Vec<Vec<u8>> = keys.iter().map(|k| base_key(7, k)).collect();
        for w in enc.windows(2) {
            assert!(w[0] < w[1], "{:?} !< {:?}", w[0], w[1]);
        }
        for (i, a) in enc.iter().enumerate() {
            for (j, b) in enc.iter().enumerate() {
                if i != j {
                    assert!(!b.starts_with(a), "{a:?} is a prefix of {b:?}");
                }
            }
            assert_eq!(unescape(&a[5..a.len() - 2]), keys[i]);
        }
    }
}
