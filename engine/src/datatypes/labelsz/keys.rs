//! Index types and the two keyspaces of a labelsz instance (DVID's key classes 97 and 98):
//!
//! * count key `98 ‖ type ‖ label u64 BE` → the count, u32 LE;
//! * ordering key `97 ‖ type ‖ (u32::MAX − count) BE ‖ label u64 BE` → empty.
//!
//! Ordering keys of one type sort by count descending, then label ascending, so `top` and
//! `threshold` read a short prefix of one range. A label with no points of a type has neither
//! key; whoever changes a count removes the old ordering key in the same batch.

use crate::datatypes::annotation::{Kind, Point};
use crate::{Error, Result};

/// Key class of ordering keys (type, inverted count, label).
pub const CLASS_ORDER: u8 = 97;
/// Key class of count keys (type, label).
pub const CLASS_COUNT: u8 = 98;

/// What is counted. The numbers are DVID's (`IndexType`) and the byte stored in keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IndexType {
    PostSyn = 1,
    PreSyn = 2,
    Gap = 3,
    Note = 4,
    /// PostSyn, PreSyn and Gap together.
    AllSyn = 5,
}

/// The counts of one label, one per [`IndexType`] in `IndexType::ALL` order.
pub type Counts = [u32; 5];

impl IndexType {
    pub const ALL: [IndexType; 5] = [
        IndexType::PostSyn,
        IndexType::PreSyn,
        IndexType::Gap,
        IndexType::Note,
        IndexType::AllSyn,
    ];

    pub fn name(self) -> &'static str {
        match self {
            IndexType::PostSyn => "PostSyn",
            IndexType::PreSyn => "PreSyn",
            IndexType::Gap => "Gap",
            IndexType::Note => "Note",
            IndexType::AllSyn => "AllSyn",
        }
    }

    /// The type named in a request path (case-sensitive, as DVID). `Voxels` is a DVID index
    /// type that nothing ever fills, so it is refused like an unknown one.
    pub fn parse(s: &str) -> Result<IndexType> {
        if let Some(t) = IndexType::ALL.into_iter().find(|t| t.name() == s) {
            return Ok(t);
        }
        if s == "Voxels" {
            return Err(Error::bad(
                "index type \"Voxels\" is not kept by labelsz (DVID never fills it); use PostSyn, PreSyn, Gap, Note or AllSyn",
            ));
        }
        Err(Error::bad(format!(
            "unknown index type specified ({s:?}); use PostSyn, PreSyn, Gap, Note or AllSyn"
        )))
    }

    /// The position of this type in a [`Counts`].
    pub fn slot(self) -> usize {
        self as usize - 1
    }

    fn from_byte(b: u8) -> Option<IndexType> {
        IndexType::ALL.get((b as usize).wrapping_sub(1)).copied()
    }
}

/// The count key of (type, label).
pub fn count_key(ty: IndexType, label: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(10);
    k.push(CLASS_COUNT);
    k.push(ty as u8);
    k.extend_from_slice(&label.to_be_bytes());
    k
}

/// The ordering key of (type, count, label).
pub fn order_key(ty: IndexType, count: u32, label: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(14);
    k.push(CLASS_ORDER);
    k.push(ty as u8);
    k.extend_from_slice(&(u32::MAX - count).to_be_bytes());
    k.extend_from_slice(&label.to_be_bytes());
    k
}

/// (type, count, label) of an ordering key; `None` for any other key.
pub fn decode_order_key(k: &[u8]) -> Option<(IndexType, u32, u64)> {
    if k.len() != 14 || k[0] != CLASS_ORDER {
        return None;
    }
    let ty = IndexType::from_byte(k[1])?;
    let inv = u32::from_be_bytes(k[2..6].try_into().ok()?);
    let label = u64::from_be_bytes(k[6..14].try_into().ok()?);
    Some((ty, u32::MAX - inv, label))
}

/// The first and last possible ordering keys of `ty` (inclusive bounds).
pub fn order_range(ty: IndexType) -> (Vec<u8>, Vec<u8>) {
    let lo = vec![CLASS_ORDER, ty as u8];
    let mut hi = lo.clone();
    hi.extend_from_slice(&[0xFF; 12]);
    (lo, hi)
}

/// (type, label) of a count key; `None` for any other key.
pub fn decode_count_key(k: &[u8]) -> Option<(IndexType, u64)> {
    if k.len() != 10 || k[0] != CLASS_COUNT {
        return None;
    }
    let ty = IndexType::from_byte(k[1])?;
    Some((ty, u64::from_be_bytes(k[2..10].try_into().ok()?)))
}

/// The first and last possible count keys (inclusive bounds), all types.
pub fn count_range() -> (Vec<u8>, Vec<u8>) {
    let mut hi = vec![CLASS_COUNT];
    hi.extend_from_slice(&[0xFF; 9]);
    (vec![CLASS_COUNT], hi)
}

pub fn encode_count(n: u32) -> [u8; 4] {
    n.to_le_bytes()
}

pub fn decode_count(v: &[u8]) -> Result<u32> {
    v.try_into()
        .map(u32::from_le_bytes)
        .map_err(|_| Error::Internal(format!("labelsz count value of {} bytes", v.len())))
}

/// The counts of a label's points, keeping those `inside` says to count. Unknown-kind points
/// count nowhere; AllSyn counts PostSyn, PreSyn and Gap.
pub fn tally(points: &[Point], inside: &dyn Fn([i32; 3]) -> bool) -> Counts {
    let mut c: Counts = [0; 5];
    for p in points {
        let ty = match p.kind {
            Kind::PostSyn => IndexType::PostSyn,
            Kind::PreSyn => IndexType::PreSyn,
            Kind::Gap => IndexType::Gap,
            Kind::Note => IndexType::Note,
            Kind::Unknown => continue,
        };
        if !inside(p.pos) {
            continue;
        }
        c[ty.slot()] = c[ty.slot()].saturating_add(1);
        if p.kind.is_synaptic() {
            let all = IndexType::AllSyn.slot();
            c[all] = c[all].saturating_add(1);
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_parse_by_dvid_name() {
        for t in IndexType::ALL {
            assert_eq!(IndexType::parse(t.name()).unwrap(), t);
            assert_eq!(IndexType::from_byte(t as u8), Some(t));
        }
        assert!(IndexType::parse("Voxels").is_err());
        assert!(IndexType::parse("presyn").is_err());
        assert!(IndexType::parse("").is_err());
        assert_eq!(IndexType::from_byte(0), None);
        assert_eq!(IndexType::from_byte(6), None);
        assert_eq!(IndexType::AllSyn.slot(), 4);
    }

    #[test]
    fn keys_round_trip() {
        let k = order_key(IndexType::Gap, 81, 188);
        assert_eq!(k.len(), 14);
        assert_eq!(decode_order_key(&k), Some((IndexType::Gap, 81, 188)));
        assert_eq!(decode_order_key(&count_key(IndexType::Gap, 1)), None);
        let c = count_key(IndexType::Note, u64::MAX);
        assert_eq!(decode_count_key(&c), Some((IndexType::Note, u64::MAX)));
        assert_eq!(decode_count_key(&k), None);
        assert_eq!(decode_count(&encode_count(7)).unwrap(), 7);
        assert!(decode_count(&[1, 2, 3]).is_err());
    }

    #[test]
    fn ordering_keys_sort_by_count_descending_then_label_ascending() {
        let entries = [
            (5u32, 9u64),
            (5, 2),
            (u32::MAX, 0),
            (1, u64::MAX),
            (70_000, 3),
            (256, 1),
            (255, 1),
            (5, 256),
        ];
        let mut keys: Vec<Vec<u8>> = entries
            .iter()
            .map(|&(c, l)| order_key(IndexType::PreSyn, c, l))
            .collect();
        keys.sort();
        let got: Vec<(u32, u64)> = keys
            .iter()
            .map(|k| {
                let (_, c, l) = decode_order_key(k).unwrap();
                (c, l)
            })
            .collect();
        let mut want = entries.to_vec();
        want.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        assert_eq!(got, want);
        // Every key of a type lies within its range, and types don't interleave.
        let (lo, hi) = order_range(IndexType::PreSyn);
        assert!(keys.iter().all(|k| lo <= *k && *k <= hi));
        assert!(order_key(IndexType::PostSyn, 0, u64::MAX) < lo);
        assert!(order_key(IndexType::Gap, u32::MAX, 0) > hi);
        let (clo, chi) = count_range();
        assert!(clo <= count_key(IndexType::PostSyn, 0));
        assert!(count_key(IndexType::AllSyn, u64::MAX) <= chi);
    }

    #[test]
    fn tally_counts_kinds_and_allsyn_inside_only() {
        let p = |x: i32, kind: Kind| Point {
            pos: [x, 0, 0],
            kind,
        };
        let points = [
            p(1, Kind::PreSyn),
            p(2, Kind::PostSyn),
            p(3, Kind::PostSyn),
            p(4, Kind::Gap),
            p(5, Kind::Note),
            p(6, Kind::Unknown),
            p(-1, Kind::PreSyn),
            p(-2, Kind::Note),
        ];
        assert_eq!(tally(&points, &|_| true), [2, 2, 1, 2, 5]);
        assert_eq!(tally(&points, &|pos| pos[0] > 0), [2, 1, 1, 1, 4]);
        assert_eq!(tally(&[], &|_| true), [0; 5]);
    }
}
