//! Elements (spec §4.7): a point with a kind, tags, properties and relationships to other
//! points, in DVID's JSON; and [`Point`], the compact (position, kind) the label and tag
//! indices keep.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// What an element is. The numbers are DVID's (`ElementType`), and the byte stored in the
/// label index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    Unknown = 0,
    PostSyn = 1,
    PreSyn = 2,
    Gap = 3,
    Note = 4,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Unknown,
        Kind::PostSyn,
        Kind::PreSyn,
        Kind::Gap,
        Kind::Note,
    ];

    pub fn from_byte(b: u8) -> Result<Kind> {
        Kind::ALL
            .get(b as usize)
            .copied()
            .ok_or_else(|| Error::Internal(format!("stored element kind {b}")))
    }

    /// PostSyn, PreSyn and Gap (labelsz's `AllSyn`).
    pub fn is_synaptic(self) -> bool {
        matches!(self, Kind::PostSyn | Kind::PreSyn | Kind::Gap)
    }
}

/// How one element relates to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Rel {
    #[serde(rename = "UnknownRelationship")]
    Unknown,
    PostSynTo,
    PreSynTo,
    ConvergentTo,
    GroupedWith,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relationship {
    #[serde(rename = "Rel")]
    pub rel: Rel,
    #[serde(rename = "To")]
    pub to: [i32; 3],
}

/// One element, as posted and returned (field order as DVID emits it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Element {
    #[serde(rename = "Pos")]
    pub pos: [i32; 3],
    #[serde(rename = "Kind")]
    pub kind: Kind,
    #[serde(rename = "Tags", default)]
    pub tags: Vec<String>,
    #[serde(rename = "Prop", default)]
    pub prop: BTreeMap<String, String>,
    #[serde(rename = "Rels", default)]
    pub rels: Vec<Relationship>,
}

/// An indexed point: where, and what kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Point {
    pub pos: [i32; 3],
    pub kind: Kind,
}

/// Bytes per point in an index value: x, y, z (i32 LE) and the kind.
pub const POINT_BYTES: usize = 13;

pub fn encode_points(points: &[Point]) -> Vec<u8> {
    let mut out = Vec::with_capacity(points.len() * POINT_BYTES);
    for p in points {
        for v in p.pos {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.push(p.kind as u8);
    }
    out
}

pub fn decode_points(bytes: &[u8]) -> Result<Vec<Point>> {
    if !bytes.len().is_multiple_of(POINT_BYTES) {
        return Err(Error::Internal(format!(
            "annotation index value of {} bytes is not a whole number of points",
            bytes.len()
        )));
    }
    bytes
        .chunks_exact(POINT_BYTES)
        .map(|c| {
            let v = |i: usize| i32::from_le_bytes(c[4 * i..4 * i + 4].try_into().expect("4 bytes"));
            Ok(Point {
                pos: [v(0), v(1), v(2)],
                kind: Kind::from_byte(c[12])?,
            })
        })
        .collect()
}

/// Largest |coordinate| an element may have: blocks of any size stay within the stored range.
pub const MAX_COORD: i32 = 1 << 28;

/// Parses a JSON array of elements, checking each: 400 naming the first bad one.
pub fn parse_elements(body: &[u8]) -> Result<Vec<Element>> {
    let elements: Vec<Element> = serde_json::from_slice(body).map_err(|e| {
        Error::bad(format!(
            "body must be a JSON array of elements {{\"Pos\":[x,y,z],\"Kind\":..}}: {e}"
        ))
    })?;
    for (i, e) in elements.iter().enumerate() {
        check(e).map_err(|m| Error::bad(format!("element {i} at {:?}: {m}", e.pos)))?;
    }
    Ok(elements)
}

fn check(e: &Element) -> std::result::Result<(), String> {
    let in_range = |p: &[i32; 3]| p.iter().all(|v| v.abs() <= MAX_COORD);
    if !in_range(&e.pos) {
        return Err(format!("coordinates must be within ±{MAX_COORD}"));
    }
    for t in &e.tags {
        if t.is_empty() || t.contains('\0') {
            return Err(format!("tag {t:?} must be non-empty and hold no NUL"));
        }
    }
    for r in &e.rels {
        if !in_range(&r.to) {
            return Err(format!("relationship to {:?} is out of range", r.to));
        }
        if r.to == e.pos {
            return Err("a relationship to itself".into());
        }
    }
    Ok(())
}

/// `x_y_z` in a URL.
pub fn parse_pos(s: &str) -> Result<[i32; 3]> {
    let p = crate::block::geom::parse_point(s, "point")?;
    if p.iter().any(|v| v.abs() > MAX_COORD as i64) {
        return Err(Error::bad(format!(
            "point {s:?}: coordinates must be within ±{MAX_COORD}"
        )));
    }
    Ok(p.map(|v| v as i32))
}

impl Element {
    /// The element without relationships (label and tag queries by default).
    pub fn without_rels(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("elements serialize");
        v.as_object_mut().expect("an object").remove("Rels");
        v
    }
}
