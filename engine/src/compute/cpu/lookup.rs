//! The relabel table as an open-addressing hash, built once per call.

use super::LabelTable;

/// Maps labels through a `LabelTable`; labels not in it map to themselves.
///
/// Slots are (key, value) pairs, so a probe touches one cache line, and at most a quarter of
/// them are used, so most probes end at the first slot. Empty slots hold a label `empty` that
/// is not a key, so a probe stops at the key or at an empty slot.
pub struct Lookup {
    slots: Vec<(u64, u64)>,
    mask: usize,
    empty: u64,
}

impl Lookup {
    pub fn new(table: &LabelTable) -> Lookup {
        let len = (4 * table.len()).next_power_of_two().max(16);
        let empty = first_gap(table.from());
        let mut lookup = Lookup {
            slots: vec![(empty, empty); len],
            mask: len - 1,
            empty,
        };
        for (&from, &to) in table.from().iter().zip(table.to()) {
            let mut i = lookup.slot(from);
            while lookup.slots[i].0 != empty {
                i = (i + 1) & lookup.mask;
            }
            lookup.slots[i] = (from, to);
        }
        lookup
    }

    #[inline(always)]
    fn slot(&self, label: u64) -> usize {
        (label.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & self.mask
    }

    /// The label `label` maps to (itself when not in the table).
    #[inline(always)]
    pub fn get(&self, label: u64) -> u64 {
        self.find(label).unwrap_or(label)
    }

    /// The target of `label` when it is a key of the table.
    #[inline(always)]
    pub fn find(&self, label: u64) -> Option<u64> {
        let mut i = self.slot(label);
        loop {
            let (key, value) = self.slots[i];
            if key == self.empty {
                return None;
            }
            if key == label {
                return Some(value);
            }
            i = (i + 1) & self.mask;
        }
    }
}

/// The smallest label not in the sorted `keys`.
fn first_gap(keys: &[u64]) -> u64 {
    let mut want = 0u64;
    for &k in keys {
        if k != want {
            break;
        }
        want += 1;
    }
    want
}
