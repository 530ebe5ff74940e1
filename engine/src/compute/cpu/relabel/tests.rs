//! `relabel` against `reference::relabel` where its remembered labels are stressed: labels
//! that share a slot and alternate, chunk edges, and real segmentation.

use super::super::test_data::pinky40;
use super::{CHUNK, SEEN, Seen, relabel};
use crate::compute::LabelTable;
use crate::compute::reference::{self, Rng};

fn check(labels: &[u64], table: &LabelTable, what: &str) {
    let mut got = labels.to_vec();
    relabel(&mut got, table);
    let mut want = labels.to_vec();
    reference::relabel(&mut want, table);
    assert!(got == want, "{what}");
}

/// Labels of one slot evict each other at every voxel; each must still get its own target.
#[test]
fn labels_sharing_a_slot() {
    let home = Seen::slot(5);
    let rivals: Vec<u64> = (6u64..)
        .filter(|&l| Seen::slot(l) == home)
        .take(3)
        .collect();
    let mut labels = vec![5u64, 0, u64::MAX];
    labels.extend(&rivals);
    let table = LabelTable::new([(5, 50), (rivals[0], 60), (u64::MAX, 1), (0, 9)]).unwrap();
    let mut rng = Rng(3);
    let v: Vec<u64> = (0..3 * SEEN)
        .map(|_| labels[rng.below(labels.len())])
        .collect();
    check(&v, &table, "alternating rivals");
}

/// Lengths around the chunk size, so that chunks start fresh with their first label, and
/// tables that are empty, hold identity entries, or map everything.
#[test]
fn chunk_edges_and_tables() {
    let mut rng = Rng(11);
    let palette = [0u64, 1, 2, 3, 1 << 40, u64::MAX, (1 << 32) | 1];
    let tables = [
        LabelTable::default(),
        LabelTable::new([(1, 1), (2, 7)]).unwrap(),
        LabelTable::new(palette.iter().map(|&l| (l, l.wrapping_add(1)))).unwrap(),
    ];
    for len in [0, 1, 2, 5, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 3] {
        let v: Vec<u64> = (0..len)
            .map(|_| palette[rng.below(palette.len())])
            .collect();
        for (i, t) in tables.iter().enumerate() {
            check(&v, t, &format!("length {len}, table {i}"));
        }
    }
}

/// Real segmentation with the benchmark's table: its 1000 smallest non-zero labels → 1.
#[test]
fn real_segmentation_matches_the_reference() {
    let (_, labels) = pinky40("pinky40-192-192-192-128");
    let mut distinct = labels.clone();
    distinct.sort_unstable();
    distinct.dedup();
    let smallest = distinct.iter().filter(|&&l| l != 0).take(1000);
    let table = LabelTable::new(smallest.map(|&l| (l, 1))).unwrap();
    check(&labels, &table, "pinky40, 1000 smallest → 1");
}
