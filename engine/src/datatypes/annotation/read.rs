//! The endpoints that read elements: by box (`elements`, `blocks`, `all-elements`), by body
//! (`label`), by tag, by ROI, and `scan`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::Serialize;

use super::element::{Element, Kind, Relationship};
use super::handle::Annotation;
use super::store::{
    BlockCoord, CLASS_BLOCK, Entry, block_from_bytes, block_key, decode_block, read_blocks,
    scan_prefix, scan_shards, tag_prefix,
};
use crate::block::geom::{VoxelBox, parse_point, parse_size};
use crate::datatype::{DataRequest, DataResponse, parse_label};
use crate::datatypes::roi::Roi;
use crate::{Error, Result};

/// Most elements one response holds (a 400 asks the client for a smaller box).
const MAX_ELEMENTS: usize = 20_000_000;

fn parse_box(req: &DataRequest) -> Result<VoxelBox> {
    let [size, offset] = req.path.as_slice() else {
        return Err(Error::bad(format!(
            "{} needs <size>/<offset>, e.g. 64_64_64/0_0_0",
            req.keyword
        )));
    };
    let size = parse_size(size, 3, "size")?;
    let offset = parse_point(offset, "offset")?;
    VoxelBox::new(offset, [size[0], size[1], size[2]])
}

/// Visits the stored blocks intersecting `bx`, in (z, y, x) order.
fn scan_box(
    ann: &Annotation,
    bx: &VoxelBox,
    visit: &mut dyn FnMut(BlockCoord, Vec<Entry>) -> Result<()>,
) -> Result<()> {
    let bs = ann.block_size;
    let end = bx.end();
    let lo: [i64; 3] = std::array::from_fn(|a| bx.min[a].div_euclid(bs[a] as i64));
    let hi: [i64; 3] = std::array::from_fn(|a| (end[a] - 1).div_euclid(bs[a] as i64));
    let ctx = ann.ctx();
    let mut failed = None;
    for z in lo[2]..=hi[2] {
        for y in lo[1]..=hi[1] {
            let first = block_key([lo[0] as i32, y as i32, z as i32]);
            let last = block_key([hi[0] as i32, y as i32, z as i32]);
            ctx.store
                .range(&ctx.view, &first, Some(&last), &mut |k, v| {
                    let r = block_from_bytes(&k[1..])
                        .and_then(|b| Ok((b, decode_block(v)?)))
                        .and_then(|(b, entries)| visit(b, entries));
                    match r {
                        Ok(()) => Ok(true),
                        Err(e) => {
                            failed = Some(e);
                            Ok(false)
                        }
                    }
                })?;
            if let Some(e) = failed.take() {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// A JSON array of stored element JSON, spliced without re-encoding.
fn array<'a>(out: &mut Vec<u8>, entries: impl Iterator<Item = &'a Entry>) {
    out.push(b'[');
    for (i, e) in entries.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&e.json);
    }
    out.push(b']');
}

fn too_many(n: usize) -> Result<()> {
    if n > MAX_ELEMENTS {
        return Err(Error::bad(format!(
            "more than {MAX_ELEMENTS} elements: ask for a smaller region"
        )));
    }
    Ok(())
}

/// `GET elements/<size>/<offset>`: the elements inside the box, with relationships.
pub fn elements(ann: &Annotation, req: &DataRequest) -> Result<DataResponse> {
    let bx = parse_box(req)?;
    let end = bx.end();
    let inside = |p: [i32; 3]| (0..3).all(|a| (bx.min[a]..end[a]).contains(&i64::from(p[a])));
    let mut found = Vec::new();
    let mut n = 0;
    scan_box(ann, &bx, &mut |_, entries| {
        for e in entries.into_iter().filter(|e| inside(e.point.pos)) {
            n += 1;
            too_many(n)?;
            found.push(e);
        }
        Ok(())
    })?;
    let mut out = Vec::new();
    array(&mut out, found.iter());
    Ok(DataResponse::bytes("application/json", out))
}

/// `{"x,y,z": [elements], …}`, blocks in (z, y, x) order.
struct BlockMap {
    out: Vec<u8>,
    n: usize,
}

impl BlockMap {
    fn new() -> BlockMap {
        BlockMap {
            out: vec![b'{'],
            n: 0,
        }
    }

    fn add(&mut self, b: BlockCoord, entries: &[Entry]) -> Result<()> {
        self.n += entries.len();
        too_many(self.n)?;
        if self.out.len() > 1 {
            self.out.push(b',');
        }
        self.out
            .extend_from_slice(format!("\"{},{},{}\":", b[0], b[1], b[2]).as_bytes());
        array(&mut self.out, entries.iter());
        Ok(())
    }

    fn finish(mut self) -> DataResponse {
        self.out.push(b'}');
        DataResponse::bytes("application/json", self.out)
    }
}

/// `GET blocks/<size>/<offset>`: every element of every block the box touches.
pub fn blocks(ann: &Annotation, req: &DataRequest) -> Result<DataResponse> {
    let bx = parse_box(req)?;
    let mut map = BlockMap::new();
    scan_box(ann, &bx, &mut |b, entries| map.add(b, &entries))?;
    Ok(map.finish())
}

/// `GET all-elements`: as `blocks` over everything.
pub fn all_elements(ann: &Annotation) -> Result<DataResponse> {
    let ctx = ann.ctx();
    let mut map = BlockMap::new();
    scan_prefix(ctx, &[CLASS_BLOCK], &mut |k, v| {
        map.add(block_from_bytes(&k[1..])?, &decode_block(v)?)?;
        Ok(true)
    })?;
    Ok(map.finish())
}

/// What `relationships=` asks label and tag queries for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rels {
    No,
    Yes,
    Verbose,
}

fn rels_option(req: &DataRequest) -> Result<Rels> {
    match req.query.get("relationships") {
        None | Some("false") => Ok(Rels::No),
        Some("true") => Ok(Rels::Yes),
        Some("verbose") => Ok(Rels::Verbose),
        Some(v) => Err(Error::bad(format!(
            "relationships={v:?}: must be true, false or verbose"
        ))),
    }
}

#[derive(Serialize)]
struct NoRels<'a> {
    #[serde(rename = "Pos")]
    pos: [i32; 3],
    #[serde(rename = "Kind")]
    kind: Kind,
    #[serde(rename = "Tags")]
    tags: &'a [String],
    #[serde(rename = "Prop")]
    prop: &'a BTreeMap<String, String>,
}

/// A relationship with the partner's kind, tags and properties (`relationships=verbose`).
#[derive(Serialize)]
struct VerboseRel<'a> {
    #[serde(rename = "Rel")]
    rel: super::element::Rel,
    #[serde(rename = "To")]
    to: [i32; 3],
    #[serde(rename = "Kind", skip_serializing_if = "Option::is_none")]
    kind: Option<Kind>,
    #[serde(rename = "Tags", skip_serializing_if = "<[String]>::is_empty")]
    tags: &'a [String],
    #[serde(rename = "Prop", skip_serializing_if = "BTreeMap::is_empty")]
    prop: &'a BTreeMap<String, String>,
}

#[derive(Serialize)]
struct Verbose<'a> {
    #[serde(flatten)]
    base: NoRels<'a>,
    #[serde(rename = "Rels")]
    rels: Vec<VerboseRel<'a>>,
}

/// Serializes the chosen entries as a label or tag query answers them.
fn answer(ann: &Annotation, entries: &[Entry], rels: Rels) -> Result<DataResponse> {
    let mut out = Vec::new();
    if rels == Rels::Yes {
        array(&mut out, entries.iter());
        return Ok(DataResponse::bytes("application/json", out));
    }
    let elements: Vec<Element> = entries.iter().map(Entry::element).collect::<Result<_>>()?;
    fn base(e: &Element) -> NoRels<'_> {
        NoRels {
            pos: e.pos,
            kind: e.kind,
            tags: &e.tags,
            prop: &e.prop,
        }
    }
    if rels == Rels::No {
        let list: Vec<NoRels> = elements.iter().map(base).collect();
        return Ok(DataResponse::bytes(
            "application/json",
            serde_json::to_vec(&list)?,
        ));
    }
    // Partners, read once each.
    let wanted: BTreeSet<[i32; 3]> = elements
        .iter()
        .flat_map(|e| e.rels.iter().map(|r| r.to))
        .collect();
    let blocks: Vec<BlockCoord> = wanted
        .iter()
        .map(|p| ann.block_of(*p))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut partners: HashMap<[i32; 3], Element> = HashMap::new();
    for entries in read_blocks(ann.ctx(), &blocks)? {
        for e in entries {
            if wanted.contains(&e.point.pos) {
                partners.insert(e.point.pos, e.element()?);
            }
        }
    }
    let none = BTreeMap::new();
    let verbose = |r: &Relationship| match partners.get(&r.to) {
        Some(p) => VerboseRel {
            rel: r.rel,
            to: r.to,
            kind: Some(p.kind),
            tags: &p.tags,
            prop: &p.prop,
        },
        None => VerboseRel {
            rel: r.rel,
            to: r.to,
            kind: None,
            tags: &[],
            prop: &none,
        },
    };
    let list: Vec<Verbose> = elements
        .iter()
        .map(|e| Verbose {
            base: base(e),
            rels: e.rels.iter().map(verbose).collect(),
        })
        .collect();
    Ok(DataResponse::bytes(
        "application/json",
        serde_json::to_vec(&list)?,
    ))
}

/// The stored entries at the positions of some index shards.
fn entries_of(ann: &Annotation, shards: Vec<(BlockCoord, Vec<[i32; 3]>)>) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    for chunk in shards.chunks(4096) {
        let blocks: Vec<BlockCoord> = chunk.iter().map(|(b, _)| *b).collect();
        for ((_, points), entries) in chunk.iter().zip(read_blocks(ann.ctx(), &blocks)?) {
            let at: HashSet<&[i32; 3]> = points.iter().collect();
            out.extend(entries.into_iter().filter(|e| at.contains(&e.point.pos)));
            too_many(out.len())?;
        }
    }
    Ok(out)
}

/// `GET label/<label>`: the elements in a body.
pub fn label(ann: &Annotation, req: &DataRequest) -> Result<DataResponse> {
    let rels = rels_option(req)?;
    let label = parse_label(req.one_segment("<label>")?)?;
    if ann.labelmap()?.is_none() {
        return Err(Error::bad(format!(
            "annotation {:?} is not synced to a labelmap: label queries need one",
            ann.ctx().instance.name
        )));
    }
    ann.settle()?;
    let shards = ann
        .label_shards(label)?
        .into_iter()
        .map(|(b, points)| (b, points.iter().map(|p| p.pos).collect()))
        .collect();
    answer(ann, &entries_of(ann, shards)?, rels)
}

/// `GET tag/<tag>`: the elements carrying a tag.
pub fn tag(ann: &Annotation, req: &DataRequest) -> Result<DataResponse> {
    let rels = rels_option(req)?;
    let tag = req.one_segment("<tag>")?;
    let mut shards = Vec::new();
    scan_shards(ann.ctx(), &tag_prefix(tag), &mut |b, points| {
        shards.push((b, points.iter().map(|p| p.pos).collect()));
        Ok(true)
    })?;
    answer(ann, &entries_of(ann, shards)?, rels)
}

/// `GET roi/<name>[,<uuid>]`: the elements inside an ROI.
pub fn roi(ann: &Annotation, req: &DataRequest) -> Result<DataResponse> {
    let spec = req.one_segment("<roi name>[,<uuid>]")?;
    let ctx = ann.ctx();
    let roi = match spec.split_once(',') {
        None => Roi::for_query(ctx, spec)?,
        Some((name, uuid)) => {
            let rctx = ctx
                .catalog
                .ctx_at(uuid, name, None, &ctx.caller())
                .map_err(|e| Error::bad(format!("roi {spec:?}: {e}")))?;
            crate::datatype::Handle::open(rctx)
                .map_err(|e| Error::bad(format!("roi {spec:?}: {e}")))?
        }
    };
    // The annotation blocks the ROI's blocks overlap.
    let (rb, ab) = (roi.block_size, ann.block_size);
    let mut blocks = BTreeSet::new();
    for s in roi.spans() {
        let [z, y, x0, x1] = *s;
        let lo = [x0, y, z];
        let hi = [x1, y, z];
        let first: [i64; 3] =
            std::array::from_fn(|a| (i64::from(lo[a]) * i64::from(rb[a])).div_euclid(ab[a].into()));
        let last: [i64; 3] = std::array::from_fn(|a| {
            ((i64::from(hi[a]) + 1) * i64::from(rb[a]) - 1).div_euclid(ab[a].into())
        });
        for bz in first[2]..=last[2] {
            for by in first[1]..=last[1] {
                for bx in first[0]..=last[0] {
                    blocks.insert((bz, by, bx));
                    if blocks.len() > MAX_ELEMENTS {
                        return Err(Error::bad(format!("roi {spec:?} covers too many blocks")));
                    }
                }
            }
        }
    }
    let blocks: Vec<BlockCoord> = blocks
        .into_iter()
        .map(|(z, y, x)| [x as i32, y as i32, z as i32])
        .collect();
    let mut out = Vec::new();
    for chunk in blocks.chunks(4096) {
        for entries in read_blocks(ctx, chunk)? {
            out.extend(
                entries
                    .into_iter()
                    .filter(|e| roi.contains_voxel(e.point.pos.map(i64::from))),
            );
            too_many(out.len())?;
        }
    }
    let mut body = Vec::new();
    array(&mut body, out.iter());
    Ok(DataResponse::bytes("application/json", body))
}

/// `GET scan`: how many blocks hold elements (DVID's fields), and how many elements.
pub fn scan(ann: &Annotation) -> Result<DataResponse> {
    let ctx = ann.ctx();
    let (mut blocks, mut elements) = (0u64, 0u64);
    scan_prefix(ctx, &[CLASS_BLOCK], &mut |_, v| {
        blocks += 1;
        let n = v
            .get(..4)
            .and_then(|n| n.try_into().ok())
            .ok_or_else(|| Error::Internal("stored annotation block is malformed".into()))?;
        elements += u64::from(u32::from_le_bytes(n));
        Ok(true)
    })?;
    Ok(DataResponse::json(&serde_json::json!({
        "num kv pairs": blocks,
        "num empty blocks": 0,
        "num elements": elements,
    })))
}
