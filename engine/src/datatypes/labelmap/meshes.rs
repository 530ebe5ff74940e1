//! Meshes of bodies and supervoxels: `GET mesh/<label>`, their cache, and the `KeepMeshes`
//! worker that keeps `<name>_meshes` current.
//!
//! A label is meshed from its blocks only: the label index names them, and every other block
//! holds none of its voxels. Each block "owns" the cells whose minimum corner it holds, so the
//! blocks meshed are the label's blocks and their low neighbours (cells reaching into a label
//! block from below), each as a block plus a one-voxel rim from its high neighbours. Blocks go
//! through the `surface` kernel in (z, y, x) order and are joined on their shared vertices, so
//! the mesh is the same on every backend.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rayon::prelude::*;
use tessera_storage::VersionId;

use super::handle::Labelmap;
use super::labels::index_for;
use super::pieces::{self, Coord, Mask};
use super::scale;
use super::state::{State, state};
use super::store::Labels;
use crate::block::geom::{BlockCoord, unpack_block, zyx};
use crate::bounded::BoundedCache;
use crate::compute::{Cells, LabelSurface, Shape};
use crate::datatype::parse_label;
use crate::datatype::{
    Caller, Catalog, DataCtx, DataRequest, DataResponse, Handle, Query, Settings, WorkerCatalog,
};
use crate::datatypes::keyvalue::KeyValue;
use crate::mesh::decimate::decimate;
use crate::mesh::format::{self, Format};
use crate::mesh::{Mesh, Surface};
use crate::mutation::{Subscriber, Subscription};
use crate::sync::{
    BLOCK_INGEST, BLOCK_MUTATE, CLEAVE_LABEL, Delta, MERGE_BLOCK, SPLIT_LABEL, SyncEvent,
};
use crate::{Error, Result};

/// Owner blocks meshed per kernel call: 64 blocks of 65³ voxels is about 140 MiB.
const BLOCKS_PER_CALL: usize = 64;

/// `GET mesh/<label>[?scale=N&format=ngmesh|obj|ply&supervoxels=true&decimate=F]`.
pub fn get(ctx: &DataCtx, labels: &Labels, req: &DataRequest) -> Result<DataResponse> {
    let label = parse_label(req.one_segment("<label>")?)?;
    let scale = scale(&labels.cfg, &req.query)?;
    let format = format_of(&req.query)?;
    let keep = match req.query.get("decimate") {
        None => None,
        Some(v) => match v.parse::<f64>() {
            Ok(f) if f > 0.0 && f <= 1.0 => Some(f),
            _ => {
                return Err(Error::bad(format!(
                    "decimate={v:?} must be the fraction of triangles to keep, above 0 and at most 1"
                )));
            }
        },
    };
    let supervoxels = req.query.flag("supervoxels")?;
    let Some(s) = surface_cached(ctx, labels, label, scale, supervoxels)? else {
        return Err(super::no_voxels(label));
    };
    let m = match keep {
        Some(f) => decimate(&s, f).to_mesh(voxel_at(labels, scale)),
        None => s.to_mesh(voxel_at(labels, scale)),
    };
    Ok(DataResponse::bytes(
        format.content_type(),
        format::encode(&m, format),
    ))
}

/// The size of one voxel at `scale`, in VoxelUnits.
fn voxel_at(labels: &Labels, scale: u8) -> [f64; 3] {
    std::array::from_fn(|a| labels.cfg.voxel_size[a] * f64::from(1u32 << scale))
}

fn format_of(q: &Query) -> Result<Format> {
    match q.get("format") {
        None => Ok(Format::Ngmesh),
        Some(f) => Format::from_str(f).map_err(Error::bad),
    }
}

/// The mesh of a body (or of a supervoxel, with `supervoxels`) at `labels`' version in
/// physical units, as `GET mesh` serves it; `None` when it has no voxels.
pub fn mesh(
    ctx: &DataCtx,
    labels: &Labels,
    label: u64,
    scale: u8,
    supervoxels: bool,
) -> Result<Option<Mesh>> {
    Ok(surface_cached(ctx, labels, label, scale, supervoxels)?
        .map(|s| s.to_mesh(voxel_at(labels, scale))))
}

/// Meshes served from the cache (`result="hit"`) or computed for it (`"miss"`), counted for
/// every label that has voxels: `GET mesh`, `Labelmap::mesh` and the `KeepMeshes` worker.
pub const MESH_CACHE_TOTAL: &str = "tessera_mesh_cache_total";

/// Optimistic tries before `surface_cached` meshes under the body's lock.
const TRIES: usize = 3;

/// `surface` through the cache. Meshing a large body takes seconds, so it runs without the
/// body's lock, on the state found when it began; edits of the body go on meanwhile, and the
/// mesh is kept only if none landed. After `TRIES` interrupted tries it meshes under the lock,
/// as an edit would wait, so a body edited without pause still gets its mesh.
fn surface_cached(
    ctx: &DataCtx,
    labels: &Labels,
    label: u64,
    scale: u8,
    supervoxels: bool,
) -> Result<Option<Arc<Surface>>> {
    let key = (labels.blocks.view.version, label, scale, supervoxels);
    let st = state(ctx);
    through_cache(&st, labels, key, || {
        let pieces = Some(&st.pieces);
        surface_with(labels, label, scale, supervoxels, Plan::Auto, pieces)
    })
}

/// `mesh()` of the cache entry `key`, from the cache when it is current.
pub(super) fn through_cache(
    st: &State,
    labels: &Labels,
    key: Key,
    mut mesh: impl FnMut() -> Result<Option<Surface>>,
) -> Result<Option<Arc<Surface>>> {
    let (_, label, _, supervoxels) = key;
    let body_of = |label| {
        if supervoxels {
            labels.body(label)
        } else {
            label
        }
    };
    for _ in 0..TRIES {
        let body = body_of(label);
        let before = Stamp {
            writes: st.writes.settled(),
            locks: st.bodies.settled(body),
            index: raw_index(labels, body)?,
        };
        if before.index.is_none() {
            // The supervoxel may have moved to another body since `body_of`: look again.
            if body_of(label) != body {
                continue;
            }
            return Ok(None);
        }
        if let Some(m) = st.meshes.get(&key, &before) {
            metrics::counter!(MESH_CACHE_TOTAL, "result" => "hit").increment(1);
            return Ok(Some(m));
        }
        let surface = mesh()?;
        let untouched =
            st.writes.generation() == before.writes && st.bodies.generation(body) == before.locks;
        if untouched {
            metrics::counter!(MESH_CACHE_TOTAL, "result" => "miss").increment(1);
            return Ok(surface.map(|s| st.meshes.put(key, before, s)));
        }
    }
    let body = body_of(label);
    let _writes = st.writes.read();
    let _held = st.bodies.lock([body]);
    let stamp = Stamp {
        writes: st.writes.generation(),
        locks: st.bodies.generation(body),
        index: raw_index(labels, body)?,
    };
    if stamp.index.is_none() {
        return Ok(None);
    }
    metrics::counter!(MESH_CACHE_TOTAL, "result" => "miss").increment(1);
    Ok(mesh()?.map(|s| st.meshes.put(key, stamp, s)))
}

fn raw_index(labels: &Labels, body: u64) -> Result<Option<Vec<u8>>> {
    if body == 0 {
        return Ok(None);
    }
    Ok(labels
        .blocks
        .store
        .get(&labels.blocks.view, &super::store::index_key(body))?)
}

/// How a label's blocks go through the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// One volume when the blocks' bounding box is no bigger than block-by-block would be.
    Auto,
    /// Block by block, each with the rim of its high neighbours.
    Blocks,
    /// One volume, however large.
    Volume,
}

/// The label's closed surface at `scale`, in half-voxel units of that scale's voxels.
pub fn surface(
    labels: &Labels,
    label: u64,
    scale: u8,
    supervoxels: bool,
) -> Result<Option<Surface>> {
    surface_with(labels, label, scale, supervoxels, Plan::Auto, None)
}

pub fn surface_with(
    labels: &Labels,
    label: u64,
    scale: u8,
    supervoxels: bool,
    plan: Plan,
    cache: Option<&pieces::Cache>,
) -> Result<Option<Surface>> {
    let Some(index) = index_for(labels, label, supervoxels)? else {
        return Ok(None);
    };
    // The label's blocks at this scale (a scale-s block holds only its children's labels),
    // each with the label's supervoxels in it.
    let mut block_svs: BTreeMap<Coord, Vec<u64>> = BTreeMap::new();
    for (p, c) in &index.blocks {
        if supervoxels && !c.counts.contains_key(&label) {
            continue;
        }
        let svs = block_svs
            .entry(zyx_key(unpack_block(*p).map(|v| v >> scale)))
            .or_default();
        match supervoxels {
            true => svs.push(label),
            false => svs.extend(c.counts.keys()),
        }
    }
    if block_svs.is_empty() {
        return Ok(None);
    }
    let svs: HashSet<u64> = block_svs.values().flatten().copied().collect();
    let blocks: BTreeSet<Coord> = block_svs.keys().copied().collect();
    let stored = read_stored(labels, scale, &blocks)?;
    let mut owners = BTreeSet::new();
    for b in &blocks {
        for d in 0..8 {
            owners.insert([b[0] - (d >> 2 & 1), b[1] - (d >> 1 & 1), b[2] - (d & 1)]);
        }
    }
    let bs = labels.block_shape();
    let (lo, hi) = bounds(&blocks);
    let span: [usize; 3] = std::array::from_fn(|a| (hi[a] - lo[a] + 1) as usize);
    let dense = Shape::new(span[2] * bs.x, span[1] * bs.y, span[0] * bs.z);
    // A compact label is one volume (its blocks' bounding box, closed at its edges); a
    // sprawling one goes block by block, so memory follows its blocks, not its extent.
    let compact =
        span.iter().product::<usize>() <= owners.len() && dense.voxels() <= MAX_DENSE_VOXELS;
    if plan == Plan::Volume || (plan == Plan::Auto && compact) {
        let masks = masks_of(labels, stored.iter().map(|(k, s)| (*k, &s[..])), &svs)?;
        let mut vol = vec![0u64; dense.voxels()];
        for (k, m) in &masks {
            fill_dense(
                &mut vol,
                dense,
                bs,
                [k[0] - lo[0], k[1] - lo[1], k[2] - lo[2]],
                m,
            );
        }
        let mut items = labels.compute.surface(&vol, dense, Cells::all(dense))?;
        return Ok(items
            .pop()
            .and_then(|mut m| m.pop())
            .map(|s| Surface::from_piece(origin_of(bs, lo), &s)));
    }
    let now: HashMap<Coord, pieces::Source> = stored
        .into_iter()
        .map(|(k, stored)| {
            let mut svs = block_svs.remove(&k).unwrap_or_default();
            svs.sort_unstable();
            svs.dedup();
            (k, pieces::Source { stored, svs })
        })
        .collect();
    let key = (label, scale, supervoxels);
    by_blocks(labels, key, &owners, now, &svs, cache)
}

/// The label's surface meshed owner block by owner block and joined, reusing the pieces of
/// `cache` whose blocks are as in `now`; `key`'s pieces there are replaced by these.
fn by_blocks(
    labels: &Labels,
    key: pieces::Key,
    owners: &BTreeSet<Coord>,
    now: HashMap<Coord, pieces::Source>,
    svs: &HashSet<u64>,
    cache: Option<&pieces::Cache>,
) -> Result<Option<Surface>> {
    let started = Instant::now();
    let bs = labels.block_shape();
    let before = cache.and_then(|c| c.get(&key)).unwrap_or_default();
    // The blocks whose masks may have changed since, and their masks now.
    let changed = before.changed(&now);
    let stored = |k: &Coord| Some((*k, &now.get(k)?.stored[..]));
    let mut masks = masks_of(labels, changed.iter().filter_map(stored), svs)?;
    let packed: HashMap<Coord, Option<Arc<Mask>>> = changed
        .par_iter()
        .map(|b| (*b, masks.get(b).map(|m| Arc::new(Mask::of(m)))))
        .collect();
    let mut made: HashMap<Coord, Option<Arc<LabelSurface>>> = owners
        .iter()
        .filter_map(|o| Some((*o, before.reusable(*o, bs, &packed)?.clone())))
        .collect();
    let remesh: Vec<Coord> = owners
        .iter()
        .filter(|o| !made.contains_key(*o))
        .copied()
        .collect();
    // The blocks the owners to mesh read (each owner's own and its high neighbours') that
    // were not masked above: unchanged, so their kept masks are unpacked, not decoded again.
    let needed: BTreeSet<Coord> = remesh
        .iter()
        .flat_map(|o| pieces::item_blocks(*o))
        .filter(|b| now.contains_key(b) && !masks.contains_key(b))
        .collect();
    let (kept, unkept): (Vec<Coord>, Vec<Coord>) =
        needed.iter().partition(|b| before.masks.contains_key(*b));
    let unpacked: Vec<(Coord, Vec<u8>)> = kept
        .par_iter()
        .map(|b| (*b, before.masks[b].unpack(bs.voxels())))
        .collect();
    masks.extend(unpacked);
    masks.extend(masks_of(labels, unkept.iter().filter_map(stored), svs)?);
    let loaded = started.elapsed();
    let item = Shape::new(bs.x + 1, bs.y + 1, bs.z + 1);
    // One buffer for every call: each item is written whole, so it needs no zeroing, and
    // its pages are faulted in once, not per call (hundreds of MiB for a large body).
    let mut buf = vec![0u64; item.voxels() * remesh.len().min(BLOCKS_PER_CALL)];
    for chunk in remesh.chunks(BLOCKS_PER_CALL) {
        let vol = &mut buf[..item.voxels() * chunk.len()];
        vol.par_chunks_exact_mut(item.voxels())
            .zip(chunk)
            .for_each(|(v, o)| fill_item(v, bs, *o, &masks));
        let meshes = labels.compute.surface(vol, item, Cells::interior(item))?;
        for (o, mut m) in chunk.iter().zip(meshes) {
            // Kept for later meshings at the size they are, not the capacity they grew to.
            let piece = m.pop().map(|mut p| {
                p.vertices.shrink_to_fit();
                p.triangles.shrink_to_fit();
                Arc::new(p)
            });
            made.insert(*o, piece);
        }
    }
    let meshed = started.elapsed();
    metrics::counter!(MESH_PIECES_TOTAL, "result" => "reused")
        .increment((owners.len() - remesh.len()) as u64);
    metrics::counter!(MESH_PIECES_TOTAL, "result" => "meshed").increment(remesh.len() as u64);
    let placed: Vec<([i64; 3], &LabelSurface)> = owners
        .iter()
        .filter_map(|o| Some((origin_of(bs, *o), made[o].as_deref()?)))
        .collect();
    let joined = (!placed.is_empty()).then(|| Surface::join([bs.x, bs.y, bs.z], &placed));
    tracing::debug!(
        label = key.0,
        blocks = now.len(),
        owners = owners.len(),
        remeshed = remesh.len(),
        masks_ms = loaded.as_millis() as u64,
        kernel_ms = (meshed - loaded).as_millis() as u64,
        join_ms = (started.elapsed() - meshed).as_millis() as u64,
        "labelmap surface"
    );
    if let Some(c) = cache {
        // Unchanged blocks keep the masks they had.
        let masks = now
            .keys()
            .map(|b| match packed.get(b).cloned().flatten() {
                Some(m) => Ok((*b, m)),
                None => match before.masks.get(b) {
                    Some(m) => Ok((*b, m.clone())),
                    None => Err(Error::Internal(format!("no mask kept for block {b:?}"))),
                },
            })
            .collect::<Result<_>>()?;
        c.put(
            key,
            pieces::Pieces {
                blocks: now,
                masks,
                owners: made,
            },
        );
    }
    Ok(joined)
}

/// Owner blocks meshed again after a change of their blocks (`meshed`), and taken from the
/// label's last meshing (`reused`), counted per owner block.
pub const MESH_PIECES_TOTAL: &str = "tessera_mesh_pieces_total";

/// The dense path's memory cap: 256 MiB of labels.
const MAX_DENSE_VOXELS: usize = 32 << 20;

/// The voxel (x, y, z) of block `o` (z, y, x)'s minimum corner.
fn origin_of(bs: Shape, o: Coord) -> [i64; 3] {
    [
        o[2] as i64 * bs.x as i64,
        o[1] as i64 * bs.y as i64,
        o[0] as i64 * bs.z as i64,
    ]
}

/// The smallest and largest (z, y, x) block coordinates, per axis.
fn bounds(blocks: &BTreeSet<Coord>) -> (Coord, Coord) {
    let mut lo = [i32::MAX; 3];
    let mut hi = [i32::MIN; 3];
    for b in blocks {
        for a in 0..3 {
            lo[a] = lo[a].min(b[a]);
            hi[a] = hi[a].max(b[a]);
        }
    }
    (lo, hi)
}

/// Copies one block's mask into a dense volume at block offset `at` (z, y, x).
fn fill_dense(vol: &mut [u64], shape: Shape, bs: Shape, at: [i32; 3], m: &[u8]) {
    let [bz, by, bx] = at.map(|v| v as usize);
    for z in 0..bs.z {
        for y in 0..bs.y {
            let src = (z * bs.y + y) * bs.x;
            let dst = ((bz * bs.z + z) * shape.y + by * bs.y + y) * shape.x + bx * bs.x;
            for x in 0..bs.x {
                vol[dst + x] = u64::from(m[src + x]);
            }
        }
    }
}

/// A block coordinate as (z, y, x), so that sets iterate in the canonical order.
fn zyx_key(c: BlockCoord) -> Coord {
    let k = zyx(&c);
    [k.0, k.1, k.2]
}

/// The stored bytes of each of `blocks` (z, y, x) that is stored.
fn read_stored(
    labels: &Labels,
    scale: u8,
    blocks: &BTreeSet<Coord>,
) -> Result<HashMap<Coord, Vec<u8>>> {
    let coords: Vec<Coord> = blocks.iter().copied().collect();
    let mut out = HashMap::with_capacity(coords.len());
    for chunk in coords.chunks(labels.blocks_per_batch()) {
        let xyz: Vec<BlockCoord> = chunk.iter().map(|k| [k[2], k[1], k[0]]).collect();
        for (k, b) in chunk.iter().zip(labels.blocks.get_many(scale, &xyz)?) {
            if let Some(b) = b {
                out.insert(*k, b);
            }
        }
    }
    Ok(out)
}

/// The label's voxels (1) in each stored block, by (z, y, x) block coordinate.
fn masks_of<'a>(
    labels: &Labels,
    stored: impl Iterator<Item = (Coord, &'a [u8])>,
    svs: &HashSet<u64>,
) -> Result<HashMap<Coord, Vec<u8>>> {
    let stored: Vec<(Coord, &[u8])> = stored.collect();
    stored
        .par_iter()
        .map(|&(k, b)| {
            let m = labels.mask_stored(b, |l| in_mask(l, svs))?;
            Ok((k, m))
        })
        .collect()
}

/// Whether a voxel of label `l` is in the mask of supervoxels `svs`: never for 0, the
/// background, whatever `svs` holds.
fn in_mask(l: u64, svs: &HashSet<u64>) -> bool {
    l != 0 && svs.contains(&l)
}

/// Block `o` (z, y, x) and the one-voxel rim of its high neighbours, as 0/1 labels: every
/// voxel of `item` is written, 0 where a neighbour has no mask.
fn fill_item(item: &mut [u64], bs: Shape, o: Coord, masks: &HashMap<Coord, Vec<u8>>) {
    let (ix, iy) = (bs.x + 1, bs.y + 1);
    for (d, b) in pieces::item_blocks(o).iter().enumerate() {
        let (dz, dy, dx) = (d >> 2 & 1, d >> 1 & 1, d & 1);
        let m = masks.get(b);
        // The part of the neighbour that falls in the item: all of it, or its first plane.
        let span = |delta: usize, n: usize| if delta == 0 { 0..n } else { 0..1 };
        for z in span(dz, bs.z) {
            for y in span(dy, bs.y) {
                let xs = span(dx, bs.x);
                let dst = ((z + dz * bs.z) * iy + y + dy * bs.y) * ix + dx * bs.x;
                let out = &mut item[dst + xs.start..dst + xs.end];
                match m {
                    Some(m) => {
                        let src = (z * bs.y + y) * bs.x;
                        for (v, &b) in out.iter_mut().zip(&m[src + xs.start..src + xs.end]) {
                            *v = u64::from(b);
                        }
                    }
                    None => out.fill(0),
                }
            }
        }
    }
}

/// What a cached mesh was computed from: the counts of exclusive writes (voxels, index and
/// mapping posts, which may change any body) and of locks of the body (its mutations), and
/// the body's stored index, all read while no write was in progress.
#[derive(PartialEq, Eq)]
struct Stamp {
    writes: u64,
    locks: u64,
    index: Option<Vec<u8>>,
}

/// Version, label, scale, supervoxels.
pub(super) type Key = (VersionId, u64, u8, bool);

/// Recently served meshes, up to `CACHE_BYTES` of vertices and triangles, with the state each
/// was computed from.
pub struct Cache {
    kept: BoundedCache<Key, (Arc<Stamp>, Arc<Surface>)>,
}

const CACHE_BYTES: usize = 512 << 20;

impl Default for Cache {
    fn default() -> Self {
        Cache {
            kept: BoundedCache::new(CACHE_BYTES, CACHE_BYTES / 4),
        }
    }
}

impl Cache {
    fn get(&self, key: &Key, stamp: &Stamp) -> Option<Arc<Surface>> {
        let (s, m) = self.kept.get(key)?;
        (*s == *stamp).then_some(m)
    }

    /// Keeps `m`, computed from `stamp`'s state, and hands it back.
    fn put(&self, key: Key, stamp: Stamp, m: Surface) -> Arc<Surface> {
        let m = Arc::new(m);
        let size = 24 * m.vertices.len() + 12 * m.triangles.len();
        self.kept.put(key, (Arc::new(stamp), m.clone()), size);
        m
    }
}

/// The `KeepMeshes` subscription of a labelmap: its own block and label events, applied by
/// a [`Worker`].
pub fn subscription(ctx: &DataCtx) -> Subscription {
    Subscription {
        id: format!("{}/meshes", ctx.instance.data_uuid),
        publisher: ctx.instance.data_uuid.clone(),
        events: vec![
            BLOCK_INGEST,
            BLOCK_MUTATE,
            MERGE_BLOCK,
            SPLIT_LABEL,
            CLEAVE_LABEL,
        ],
        kv: ctx.store.kv().clone(),
        handler: Arc::new(Worker {
            repo: WorkerCatalog::new(ctx),
            name: ctx.instance.name.clone(),
        }),
        awaited: false,
        gather: std::time::Duration::ZERO,
    }
}

/// Keeps `<name>_meshes/<body>.ngmesh` equal to `GET mesh/<body>?scale=<KeepMeshesScale>` for
/// the bodies that writes and mutations change, at the version they changed in. Meshes are
/// recomputed from the state at that version, so applying an event twice (after a crash) gives
/// the same keys.
struct Worker {
    repo: WorkerCatalog,
    name: String,
}

/// What one batch of events asks for, per version: bodies to mesh again, bodies gone, and
/// the latest mutation ID of each.
#[derive(Default)]
struct Work {
    remesh: BTreeSet<u64>,
    gone: BTreeSet<u64>,
    mutation: HashMap<u64, u64>,
}

impl Subscriber for Worker {
    fn apply(&self, batch: &[SyncEvent]) -> Result<()> {
        let catalog = self.repo.catalog()?;
        let admin = Caller::admin();
        let mut by_version: HashMap<VersionId, Work> = HashMap::new();
        for e in batch {
            let w = by_version.entry(e.version).or_default();
            let touch = |body: u64, w: &mut Work| {
                w.remesh.insert(body);
                w.mutation.insert(body, e.mutation_id);
            };
            match &e.delta {
                Delta::Merge { target, merged, .. } => {
                    touch(*target, w);
                    for m in merged {
                        w.gone.insert(*m);
                        w.mutation.insert(*m, e.mutation_id);
                    }
                }
                Delta::Split {
                    target, new_label, ..
                } => {
                    touch(*target, w);
                    touch(*new_label, w);
                }
                Delta::Cleave {
                    target,
                    cleaved_label,
                    ..
                } => {
                    touch(*target, w);
                    touch(*cleaved_label, w);
                }
                Delta::Image(_) | Delta::Labels(_) | Delta::Logged(_) => {}
                Delta::Blocks(changes) => {
                    let lm = Labelmap::open(self.repo.ctx_at(e.version, &self.name)?)?;
                    for c in changes {
                        for sv in c.labels.iter().chain(c.prev.iter().flatten()) {
                            let body = lm.body(*sv);
                            if body != 0 {
                                touch(body, w);
                            }
                        }
                    }
                }
            }
        }
        let meshes = format!("{}_meshes", self.name);
        let mutids = format!("{}_meshes_mutid", self.name);
        // Written as derived values: readers see each mesh as soon as it is put, and the
        // stores are synced once, below, before the events are acknowledged. A crash in
        // between leaves the events in the outbox, so the meshes are made again.
        let mut written: Vec<KeyValue> = Vec::new();
        for (version, work) in by_version {
            let node = self.repo.node(version)?;
            let lm = Labelmap::open(self.repo.ctx_at(version, &self.name)?)?;
            let store = keyvalue(catalog.as_ref(), &node, &meshes, &admin)?;
            for body in work.gone.difference(&work.remesh) {
                store.delete_derived(&format!("{body}.ngmesh"))?;
            }
            // At a coarser scale the mesh waits for the pyramid's rebuild (`mesh_at` settles).
            let scale = lm.kept_mesh_scale();
            for &body in &work.remesh {
                let key = format!("{body}.ngmesh");
                let started = Instant::now();
                let Some(m) = lm.mesh_at(body, scale)? else {
                    store.delete_derived(&key)?;
                    continue;
                };
                let meshed = started.elapsed();
                let bytes = format::encode(&m, Format::Ngmesh);
                let encoded = started.elapsed();
                store.put_derived(&key, &bytes)?;
                let ms = |d: Duration| d.as_millis() as u64;
                tracing::debug!(
                    instance = %self.name,
                    body,
                    bytes = bytes.len(),
                    mesh_ms = ms(meshed),
                    encode_ms = ms(encoded - meshed),
                    put_ms = ms(started.elapsed() - encoded),
                    "labelmap kept mesh"
                );
            }
            written.push(store);
            // dvidtools reads `<name>_meshes_mutid/<body>` when a lab keeps one.
            if let Ok(ctx) = catalog.ctx_at(&node, &mutids, None, &admin) {
                let ids = KeyValue::open(ctx)?;
                for (body, id) in &work.mutation {
                    ids.put_derived(&body.to_string(), id.to_string().as_bytes())?;
                }
                written.push(ids);
            }
        }
        let started = Instant::now();
        for store in &written {
            store.sync()?;
        }
        if !written.is_empty() {
            tracing::debug!(
                instance = %self.name,
                sync_ms = started.elapsed().as_millis() as u64,
                "labelmap kept meshes synced"
            );
        }
        Ok(())
    }
}

/// The keyvalue `name` in the repo of `node`, created unless it exists.
fn keyvalue(catalog: &dyn Catalog, node: &str, name: &str, admin: &Caller) -> Result<KeyValue> {
    if let Ok(ctx) = catalog.ctx_at(node, name, None, admin) {
        return KeyValue::open(ctx);
    }
    let mut s = Settings::default();
    s.set("typename", "keyvalue");
    s.set("dataname", name);
    // Created meanwhile by someone else, the instance is there either way.
    let created = catalog.create_instance(node, &s, admin);
    match catalog.ctx_at(node, name, None, admin) {
        Ok(ctx) => KeyValue::open(ctx),
        Err(e) => Err(created.err().unwrap_or(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_hold_every_label_value_but_the_background() {
        use crate::compute::codec;
        let v: Vec<u64> = (0..512)
            .map(|i| [u64::MAX, u64::MAX, 0, 5, 5, 7, u64::MAX, 0][i % 8])
            .collect();
        let block = codec::encode(&v, Shape::new(8, 8, 8)).unwrap();
        let mask = |svs: HashSet<u64>| {
            let mut m = vec![0u8; 512];
            codec::decode_mask_into(&block, &mut m, |l| in_mask(l, &svs)).unwrap();
            m[..8].to_vec()
        };
        assert_eq!(mask(HashSet::from([u64::MAX, 5])), [1, 1, 0, 1, 1, 0, 1, 0]);
        assert_eq!(mask(HashSet::from([0])), [0; 8]);
    }
}
