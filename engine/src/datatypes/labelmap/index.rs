//! The label index (spec §5.5): for each body label, the blocks it touches and the voxel count
//! of each of its supervoxels there. Kept exact on every write.

use std::collections::{BTreeMap, HashMap};

use prost::Message;

use crate::compute::BlockCounts;

#[derive(Clone, PartialEq, Message)]
pub struct SvCount {
    #[prost(map = "uint64, uint32", tag = "1")]
    pub counts: HashMap<u64, u32>,
    #[prost(uint64, tag = "2")]
    pub surface_mutid: u64,
}

#[derive(Clone, PartialEq, Message)]
pub struct LabelIndex {
    /// Packed block coordinate (`geom::pack_block`) → supervoxel counts in that block.
    #[prost(map = "uint64, message", tag = "1")]
    pub blocks: HashMap<u64, SvCount>,
    #[prost(uint64, tag = "2")]
    pub label: u64,
    #[prost(uint64, tag = "3")]
    pub last_mutid: u64,
    #[prost(string, tag = "4")]
    pub last_mod_time: String,
    #[prost(string, tag = "5")]
    pub last_mod_user: String,
    #[prost(string, tag = "6")]
    pub last_mod_app: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct LabelIndices {
    #[prost(message, repeated, tag = "1")]
    pub indices: Vec<LabelIndex>,
}

impl LabelIndex {
    pub fn num_voxels(&self) -> u64 {
        self.blocks
            .values()
            .flat_map(|b| b.counts.values())
            .map(|&c| c as u64)
            .sum()
    }

    /// Voxels of each supervoxel over all blocks.
    pub fn supervoxel_sizes(&self) -> BTreeMap<u64, u64> {
        let mut out = BTreeMap::new();
        for b in self.blocks.values() {
            for (&sv, &c) in &b.counts {
                *out.entry(sv).or_insert(0) += c as u64;
            }
        }
        out
    }

    /// Blocks holding any of the given supervoxels (all of them when `svs` is `None`).
    pub fn blocks_with(&self, svs: Option<&[u64]>) -> Vec<u64> {
        self.blocks
            .iter()
            .filter(|(_, b)| svs.is_none_or(|s| b.counts.keys().any(|sv| s.contains(sv))))
            .map(|(k, _)| *k)
            .collect()
    }
}

/// What one write does to the label indices: for every body it touches, for every block it
/// touches, that body's supervoxel counts in the block after the write (empty: the body left
/// the block). Replacing a block's entry wholesale keeps the index exact without reading the
/// old counts.
#[derive(Default)]
pub struct IndexUpdate {
    pub bodies: HashMap<u64, BTreeMap<u64, Vec<(u64, u32)>>>,
}

impl IndexUpdate {
    /// Records one rewritten block: `old` lists (a superset of) the supervoxels it held
    /// before, `new` its counts now. `old_body` maps a supervoxel to its body before the
    /// write, `new_body` after it (they differ only for relabelling writes); body 0 (a retired
    /// supervoxel, or background) is never indexed.
    pub fn add_block(
        &mut self,
        block: u64,
        old: &[u64],
        new: &BlockCounts,
        old_body: impl Fn(u64) -> u64,
        new_body: impl Fn(u64) -> u64,
    ) {
        for (&sv, &n) in new.labels.iter().zip(&new.counts) {
            let body = new_body(sv);
            if sv != 0 && body != 0 {
                let entry = self.bodies.entry(body).or_default();
                entry.entry(block).or_default().push((sv, n));
            }
        }
        // Bodies that held supervoxels here before get their entry for the block rewritten,
        // emptied if none of their supervoxels remain.
        for &sv in old {
            let body = old_body(sv);
            if sv != 0 && body != 0 {
                self.bodies
                    .entry(body)
                    .or_default()
                    .entry(block)
                    .or_default();
            }
        }
    }

    /// Applies this update's blocks for `body` to its index.
    pub fn apply(index: &mut LabelIndex, blocks: &BTreeMap<u64, Vec<(u64, u32)>>) {
        for (&block, counts) in blocks {
            if counts.is_empty() {
                index.blocks.remove(&block);
            } else {
                index.blocks.insert(
                    block,
                    SvCount {
                        counts: counts.iter().copied().collect(),
                        surface_mutid: 0,
                    },
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(pairs: &[(u64, u32)]) -> BlockCounts {
        BlockCounts {
            labels: pairs.iter().map(|p| p.0).collect(),
            counts: pairs.iter().map(|p| p.1).collect(),
        }
    }

    #[test]
    fn overwrites_replace_a_blocks_counts_and_drop_departed_labels() {
        let mut index = LabelIndex {
            label: 5,
            ..Default::default()
        };
        let mut first = IndexUpdate::default();
        first.add_block(1, &[], &counts(&[(0, 10), (5, 4)]), |sv| sv, |sv| sv);
        first.add_block(2, &[], &counts(&[(5, 6), (6, 1)]), |sv| sv, |sv| sv);
        IndexUpdate::apply(&mut index, &first.bodies[&5]);
        assert_eq!(index.num_voxels(), 10);
        assert!(!first.bodies.contains_key(&0));

        // Block 1 is rewritten without label 5; block 2 keeps it with a new count.
        let mut second = IndexUpdate::default();
        second.add_block(1, &[0, 5], &counts(&[(7, 14)]), |sv| sv, |sv| sv);
        second.add_block(2, &[5, 6], &counts(&[(5, 7)]), |sv| sv, |sv| sv);
        IndexUpdate::apply(&mut index, &second.bodies[&5]);
        assert_eq!(index.blocks.len(), 1);
        assert_eq!(index.num_voxels(), 7);
        assert!(second.bodies[&6][&2].is_empty());
    }
}
