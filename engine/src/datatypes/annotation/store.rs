//! How an annotation instance is stored (all keys versioned):
//!
//! * `0x01 ‖ block (z, y, x)` → the block's elements: per element its [`Point`], the body
//!   label the sync last gave it (0: none) and its JSON. This is the source of truth.
//! * `0x02 ‖ label u64 BE ‖ block` → the points of the block that belong to `label`.
//! * `0x03 ‖ tag ‖ 0x00 ‖ block` → the points of the block that carry `tag`.
//!
//! The label and tag indices are sharded by block so that an edit rewrites only the blocks it
//! touches, and a body's points are one range scan. Both are pure functions of the element
//! records, which [`Editor`] keeps true: every write loads the records it changes, edits them,
//! and derives the index changes from the before and after.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use tessera_storage::versioned::{delete_into, prefix_end, put_into};

use super::element::{Element, Kind, POINT_BYTES, Point, decode_points, encode_points};
use crate::datatype::DataCtx;
use crate::{Error, Result};

pub const CLASS_BLOCK: u8 = 1;
pub const CLASS_LABEL: u8 = 2;
pub const CLASS_TAG: u8 = 3;

pub use crate::block::geom::BlockCoord;

/// Block coordinates in key order: z, y, x, each with the sign bit flipped so that negative
/// coordinates sort first.
pub fn block_bytes(c: BlockCoord) -> [u8; 12] {
    let mut out = [0u8; 12];
    for (i, a) in [2, 1, 0].into_iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&((c[a] as u32) ^ 0x8000_0000).to_be_bytes());
    }
    out
}

pub fn block_from_bytes(b: &[u8]) -> Result<BlockCoord> {
    if b.len() != 12 {
        return Err(Error::Internal(
            "annotation block key of the wrong length".into(),
        ));
    }
    let v = |i: usize| {
        (u32::from_be_bytes(b[4 * i..4 * i + 4].try_into().expect("4 bytes")) ^ 0x8000_0000) as i32
    };
    Ok([v(2), v(1), v(0)])
}

pub fn block_key(c: BlockCoord) -> Vec<u8> {
    let mut k = vec![CLASS_BLOCK];
    k.extend_from_slice(&block_bytes(c));
    k
}

pub fn label_prefix(label: u64) -> Vec<u8> {
    let mut k = vec![CLASS_LABEL];
    k.extend_from_slice(&label.to_be_bytes());
    k
}

pub fn tag_prefix(tag: &str) -> Vec<u8> {
    let mut k = vec![CLASS_TAG];
    k.extend_from_slice(tag.as_bytes());
    k.push(0);
    k
}

/// An index shard: which label or tag, in which block.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Shard {
    Label(u64, BlockCoord),
    Tag(String, BlockCoord),
}

impl Shard {
    fn key(&self) -> Vec<u8> {
        let (mut k, b) = match self {
            Shard::Label(l, b) => (label_prefix(*l), b),
            Shard::Tag(t, b) => (tag_prefix(t), b),
        };
        k.extend_from_slice(&block_bytes(*b));
        k
    }
}

/// One stored element: what the indices need without parsing its JSON.
#[derive(Debug, Clone)]
pub struct Entry {
    pub point: Point,
    /// The body the sync last placed it in (0: none).
    pub label: u64,
    /// The element as served with relationships (`Element` JSON).
    pub json: Vec<u8>,
}

impl Entry {
    pub fn new(e: &Element, label: u64) -> Entry {
        Entry {
            point: Point {
                pos: e.pos,
                kind: e.kind,
            },
            label,
            json: serde_json::to_vec(e).expect("elements serialize"),
        }
    }

    pub fn element(&self) -> Result<Element> {
        serde_json::from_slice(&self.json)
            .map_err(|e| Error::Internal(format!("stored annotation element: {e}")))
    }
}

/// A block's elements, ordered by position.
pub fn encode_block(entries: &[Entry]) -> Vec<u8> {
    let size: usize = entries
        .iter()
        .map(|e| POINT_BYTES + 12 + e.json.len())
        .sum();
    let mut out = Vec::with_capacity(4 + size);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        out.extend_from_slice(&encode_points(&[e.point]));
        out.extend_from_slice(&e.label.to_le_bytes());
        out.extend_from_slice(&(e.json.len() as u32).to_le_bytes());
        out.extend_from_slice(&e.json);
    }
    out
}

pub fn decode_block(b: &[u8]) -> Result<Vec<Entry>> {
    let bad = || Error::Internal("stored annotation block is malformed".into());
    let n = u32::from_le_bytes(b.get(..4).ok_or_else(bad)?.try_into().expect("4 bytes"));
    let mut out = Vec::with_capacity(n as usize);
    let mut at = 4;
    for _ in 0..n {
        let head = b.get(at..at + POINT_BYTES + 12).ok_or_else(bad)?;
        let point = decode_points(&head[..POINT_BYTES])?[0];
        let label = u64::from_le_bytes(head[POINT_BYTES..POINT_BYTES + 8].try_into().expect("8"));
        let len = u32::from_le_bytes(head[POINT_BYTES + 8..].try_into().expect("4 bytes")) as usize;
        at += POINT_BYTES + 12;
        let json = b.get(at..at + len).ok_or_else(bad)?.to_vec();
        at += len;
        out.push(Entry { point, label, json });
    }
    Ok(out)
}

/// Reads the element records of `blocks` (absent blocks read as empty).
pub fn read_blocks(ctx: &DataCtx, blocks: &[BlockCoord]) -> Result<Vec<Vec<Entry>>> {
    let keys: Vec<Vec<u8>> = blocks.iter().map(|b| block_key(*b)).collect();
    let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    ctx.store
        .get_many(&ctx.view, &refs)?
        .into_iter()
        .map(|v| v.map_or(Ok(Vec::new()), |v| decode_block(&v)))
        .collect()
}

/// Called with each key and value of a scan; returns whether to go on.
pub type KeyVisitor<'a> = dyn FnMut(&[u8], &[u8]) -> Result<bool> + 'a;

/// Visits every key starting with `prefix` visible at the context's version, in key order.
pub fn scan_prefix(ctx: &DataCtx, prefix: &[u8], visit: &mut KeyVisitor<'_>) -> Result<()> {
    let end = prefix_end(prefix);
    let mut failed = None;
    ctx.store
        .range(&ctx.view, prefix, Some(&end), &mut |k, v| {
            if !k.starts_with(prefix) {
                return Ok(true);
            }
            match visit(k, v) {
                Ok(more) => Ok(more),
                Err(e) => {
                    failed = Some(e);
                    Ok(false)
                }
            }
        })?;
    failed.map_or(Ok(()), Err)
}

/// Visits the shards under an index `prefix` (a label's or a tag's), in block order.
pub fn scan_shards(
    ctx: &DataCtx,
    prefix: &[u8],
    visit: &mut dyn FnMut(BlockCoord, Vec<Point>) -> Result<bool>,
) -> Result<()> {
    scan_prefix(ctx, prefix, &mut |k, v| {
        visit(block_from_bytes(&k[prefix.len()..])?, decode_points(v)?)
    })
}

/// The tags of a stored element, its JSON parsed only when it has any: most elements have
/// none, and edits of many blocks would otherwise parse every element twice.
fn tags_of(entry: &Entry) -> Result<Vec<String>> {
    // The JSON is ours (`Entry::new`): `Tags` is always present, and a quote inside a string
    // is escaped, so this byte sequence can only be an empty Tags field.
    if entry.json.windows(9).any(|w| w == b"\"Tags\":[]") {
        return Ok(Vec::new());
    }
    Ok(entry.element()?.tags)
}

/// Edits element records and keeps the label and tag indices in step, in one batch.
///
/// Load the blocks to change, edit their entries, then [`Editor::finish`] writes the changed
/// records and index shards and returns the labels whose points changed.
pub struct Editor<'a> {
    ctx: &'a DataCtx,
    blocks: BTreeMap<BlockCoord, Vec<Entry>>,
    /// The index shards as loaded, to compare against.
    before: HashMap<BlockCoord, Vec<(Shard, Point)>>,
    changed: BTreeSet<BlockCoord>,
    pub block_size: [i32; 3],
    /// Rebuilding: the indices were dropped, so every shard is written from the records.
    fresh: bool,
}

impl<'a> Editor<'a> {
    pub fn new(ctx: &'a DataCtx, block_size: [i32; 3]) -> Editor<'a> {
        Editor {
            ctx,
            blocks: BTreeMap::new(),
            before: HashMap::new(),
            changed: BTreeSet::new(),
            block_size,
            fresh: false,
        }
    }

    /// An editor that writes every shard of the blocks it changes, as after the indices were
    /// dropped (`POST reload`).
    pub fn fresh(mut self) -> Editor<'a> {
        self.fresh = true;
        self
    }

    pub fn block_of(&self, p: [i32; 3]) -> BlockCoord {
        std::array::from_fn(|a| p[a].div_euclid(self.block_size[a]))
    }

    /// Loads the records of `blocks` not loaded yet.
    pub fn load(&mut self, blocks: impl IntoIterator<Item = BlockCoord>) -> Result<()> {
        let missing: Vec<BlockCoord> = blocks
            .into_iter()
            .filter(|b| !self.blocks.contains_key(b))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        for (b, entries) in missing.iter().zip(read_blocks(self.ctx, &missing)?) {
            let shards = if self.fresh {
                Vec::new()
            } else {
                shards_of(*b, &entries)?
            };
            self.before.insert(*b, shards);
            self.blocks.insert(*b, entries);
        }
        Ok(())
    }

    /// The loaded entries of block `b`, to read or change (marks it changed).
    pub fn block_mut(&mut self, b: BlockCoord) -> &mut Vec<Entry> {
        self.changed.insert(b);
        self.blocks.entry(b).or_default()
    }

    pub fn block(&self, b: BlockCoord) -> &[Entry] {
        self.blocks.get(&b).map_or(&[], Vec::as_slice)
    }

    /// The loaded blocks.
    pub fn loaded(&self) -> Vec<BlockCoord> {
        self.blocks.keys().copied().collect()
    }

    /// The stored element at `p` (its block must be loaded).
    pub fn get(&self, p: [i32; 3]) -> Option<&Entry> {
        self.block(self.block_of(p))
            .iter()
            .find(|e| e.point.pos == p)
    }

    /// Puts `entry` in its block, replacing an element at the same position.
    pub fn put(&mut self, entry: Entry) {
        let b = self.block_of(entry.point.pos);
        let list = self.block_mut(b);
        match list.binary_search_by_key(&pos_order(entry.point.pos), |e| pos_order(e.point.pos)) {
            Ok(i) => list[i] = entry,
            Err(i) => list.insert(i, entry),
        }
    }

    /// Removes the element at `p`, returning it.
    pub fn remove(&mut self, p: [i32; 3]) -> Option<Entry> {
        let b = self.block_of(p);
        let list = self.block_mut(b);
        let i = list.iter().position(|e| e.point.pos == p)?;
        Some(list.remove(i))
    }

    /// Writes the changed records and index shards into `batch`; returns the labels whose
    /// points changed.
    pub fn finish(mut self, batch: &mut tessera_storage::WriteBatch) -> Result<Vec<u64>> {
        // Per shard: the points to remove and add.
        let mut delta: BTreeMap<Shard, (BTreeSet<[i32; 3]>, Vec<Point>)> = BTreeMap::new();
        let mut labels = BTreeSet::new();
        for b in std::mem::take(&mut self.changed) {
            let entries = self.blocks.get(&b).map_or(&[][..], Vec::as_slice);
            let before = self.before.remove(&b).unwrap_or_default();
            let after = shards_of(b, entries)?;
            let old: BTreeSet<&(Shard, Point)> = before.iter().collect();
            let new: BTreeSet<&(Shard, Point)> = after.iter().collect();
            for (s, p) in old.difference(&new) {
                if let Shard::Label(l, _) = s {
                    labels.insert(*l);
                }
                delta.entry(s.clone()).or_default().0.insert(p.pos);
            }
            for (s, p) in new.difference(&old) {
                if let Shard::Label(l, _) = s {
                    labels.insert(*l);
                }
                delta.entry(s.clone()).or_default().1.push(*p);
            }
            let view = &self.ctx.view;
            if entries.is_empty() {
                delete_into(batch, view, &block_key(b));
            } else {
                put_into(batch, view, &block_key(b), &encode_block(entries));
            }
        }
        let delta: Vec<(Vec<u8>, _)> = delta.into_iter().map(|(s, d)| (s.key(), d)).collect();
        for chunk in delta.chunks(4096) {
            let refs: Vec<&[u8]> = chunk.iter().map(|(k, _)| k.as_slice()).collect();
            let stored = self.ctx.store.get_many(&self.ctx.view, &refs)?;
            for ((key, (gone, added)), v) in chunk.iter().zip(stored) {
                let mut points = match v {
                    Some(v) => decode_points(&v)?,
                    None => Vec::new(),
                };
                points.retain(|p| !gone.contains(&p.pos));
                points.retain(|p| !added.iter().any(|a| a.pos == p.pos));
                points.extend_from_slice(added);
                if points.is_empty() {
                    delete_into(batch, &self.ctx.view, key);
                } else {
                    points.sort();
                    put_into(batch, &self.ctx.view, key, &encode_points(&points));
                }
            }
        }
        labels.remove(&0);
        Ok(labels.into_iter().collect())
    }
}

/// Position order within a block: z, y, x.
pub fn pos_order(p: [i32; 3]) -> (i32, i32, i32) {
    (p[2], p[1], p[0])
}

/// The index shards block `b`'s entries belong to, with their points.
fn shards_of(b: BlockCoord, entries: &[Entry]) -> Result<Vec<(Shard, Point)>> {
    let mut out = Vec::new();
    for e in entries {
        if e.label != 0 {
            out.push((Shard::Label(e.label, b), e.point));
        }
        for t in tags_of(e)? {
            out.push((Shard::Tag(t, b), e.point));
        }
    }
    Ok(out)
}

/// Kind names as labelsz and `scan` count them.
pub fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Unknown => "Unknown",
        Kind::PostSyn => "PostSyn",
        Kind::PreSyn => "PreSyn",
        Kind::Gap => "Gap",
        Kind::Note => "Note",
    }
}
