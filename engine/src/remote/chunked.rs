//! Chunked volumes: neuroglancer precomputed and zarr (v2 and v3), read by a small reader of
//! their metadata and chunk files rather than a general library, from wherever a [`Fetch`]
//! reaches (a local directory, object storage, HTTP).
//!
//! Supported: precomputed `raw` (each chunk file optionally gzip-compressed, with or without a
//! `.gz` suffix), `png` and (uint8) `jpeg` encodings, unsharded, one channel; zarr arrays of uint8, uint16 or
//! uint64 whose chunks are uncompressed or gzip/zlib-compressed (v2 `compressor` null, gzip,
//! zlib; v3 codecs `bytes`, `transpose`, `gzip`, `crc32c`), in C or F order. Everything else
//! (blosc, zstd, lz4, sharding, filters, compressed_segmentation) is refused by name.
//! A missing chunk reads as the fill value (zero for precomputed).

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, bail, ensure};
use serde::Deserialize;
use serde_json::Value;

use super::fetch::Fetch;

/// Element types of the volumes read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    U8,
    U16,
    U64,
}

impl Dtype {
    pub fn size(self) -> usize {
        match self {
            Dtype::U8 => 1,
            Dtype::U16 => 2,
            Dtype::U64 => 8,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Dtype::U8 => "uint8",
            Dtype::U16 => "uint16",
            Dtype::U64 => "uint64",
        }
    }
}

/// A chunk's little-endian elements and the strides, in elements, of its x, y and z.
pub struct Chunk {
    bytes: Vec<u8>,
    strides: [usize; 3],
}

/// Chunk files by grid index (x, y, z).
trait ChunkStore: Send + Sync {
    /// The chunks at these grid indices, fetched together; `None` for one never written.
    fn chunks(&self, indices: &[[usize; 3]]) -> anyhow::Result<Vec<Option<Chunk>>>;
}

/// A chunked volume: its geometry, and boxes of voxels read from its chunks.
pub struct ChunkedVolume {
    /// What was opened, for messages: `"uint8 zarr v2 (gzip)"`.
    pub kind: String,
    /// (x, y, z) voxels.
    pub shape: [usize; 3],
    pub chunk: [usize; 3],
    pub dtype: Dtype,
    /// Where the volume's first voxel is (precomputed's voxel_offset).
    pub origin: [i64; 3],
    /// Resolution of a voxel (precomputed's), if the metadata gives one.
    pub resolution: Option<[f64; 3]>,
    fill: Vec<u8>,
    store: Box<dyn ChunkStore>,
    missing: AtomicUsize,
    /// Decoded chunks (and chunks known missing) kept between reads, if asked for.
    cache: Option<quick_cache::sync::Cache<[usize; 3], Option<Arc<Chunk>>, ByLen>>,
}

#[derive(Clone)]
struct ByLen;

impl quick_cache::Weighter<[usize; 3], Option<Arc<Chunk>>> for ByLen {
    fn weight(&self, _: &[usize; 3], c: &Option<Arc<Chunk>>) -> u64 {
        64 + c.as_ref().map_or(0, |c| c.bytes.len() as u64)
    }
}

impl ChunkedVolume {
    /// Keeps up to `bytes` of decoded chunks between reads (a server's proxy; a one-pass
    /// load needs none).
    pub fn with_cache(mut self, bytes: u64) -> Self {
        let chunk_bytes = (self.chunk.iter().product::<usize>() * self.dtype.size()) as u64;
        self.cache = (bytes > 0).then(|| {
            quick_cache::sync::Cache::with_weighter(
                (bytes / chunk_bytes.max(1)).max(16) as usize,
                bytes,
                ByLen,
            )
        });
        self
    }

    /// The chunks at `indices`: cached ones from the cache, the rest fetched together.
    fn chunks(&self, indices: &[[usize; 3]]) -> anyhow::Result<Vec<Option<Arc<Chunk>>>> {
        let Some(cache) = &self.cache else {
            return Ok(self
                .store
                .chunks(indices)?
                .into_iter()
                .map(|c| c.map(Arc::new))
                .collect());
        };
        let mut out: Vec<Option<Option<Arc<Chunk>>>> =
            indices.iter().map(|i| cache.get(i)).collect();
        let wanted: Vec<[usize; 3]> = indices
            .iter()
            .zip(&out)
            .filter(|(_, c)| c.is_none())
            .map(|(i, _)| *i)
            .collect();
        if !wanted.is_empty() {
            let mut fetched = self.store.chunks(&wanted)?.into_iter();
            for (slot, index) in out.iter_mut().zip(indices) {
                if slot.is_none() {
                    let c = fetched.next().expect("one per wanted index").map(Arc::new);
                    cache.insert(*index, c.clone());
                    *slot = Some(c);
                }
            }
        }
        Ok(out.into_iter().map(|c| c.expect("filled")).collect())
    }

    /// Chunks read so far that were never written (read as the fill value).
    pub fn missing(&self) -> usize {
        self.missing.load(Ordering::Relaxed)
    }

    /// The voxels of the box at `lo` (volume coordinates: 0 is the first voxel, not
    /// `origin`) of `size`, x fastest, little-endian; voxels outside the volume read as the
    /// fill value. Every chunk it touches is fetched in one call.
    pub fn read_box(&self, lo: [i64; 3], size: [usize; 3]) -> anyhow::Result<Vec<u8>> {
        let es = self.dtype.size();
        let n = size.iter().product::<usize>();
        let mut out = Vec::with_capacity(n * es);
        for _ in 0..n {
            out.extend_from_slice(&self.fill);
        }
        // The box clipped to the volume, in volume coordinates.
        let clip_lo: [usize; 3] = std::array::from_fn(|a| lo[a].max(0) as usize);
        let clip_hi: [usize; 3] = std::array::from_fn(|a| {
            (lo[a] + size[a] as i64).clamp(0, self.shape[a] as i64) as usize
        });
        if (0..3).any(|a| clip_lo[a] >= clip_hi[a]) {
            return Ok(out);
        }
        let first: [usize; 3] = std::array::from_fn(|a| clip_lo[a] / self.chunk[a]);
        let last: [usize; 3] = std::array::from_fn(|a| (clip_hi[a] - 1) / self.chunk[a]);
        let mut indices = Vec::new();
        for z in first[2]..=last[2] {
            for y in first[1]..=last[1] {
                for x in first[0]..=last[0] {
                    indices.push([x, y, z]);
                }
            }
        }
        let chunks = self.chunks(&indices)?;
        for (index, chunk) in indices.iter().zip(chunks) {
            let Some(chunk) = chunk else {
                self.missing.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            // This chunk's voxels, clipped to the volume and the box.
            let c_lo: [usize; 3] = std::array::from_fn(|a| index[a] * self.chunk[a]);
            let c_hi: [usize; 3] =
                std::array::from_fn(|a| (c_lo[a] + self.chunk[a]).min(self.shape[a]));
            let [tx, ty, tz] = chunk.strides;
            let last = (0..3)
                .map(|a| (c_hi[a] - c_lo[a] - 1) * chunk.strides[a])
                .sum::<usize>();
            ensure!(
                (last + 1) * es <= chunk.bytes.len(),
                "chunk {index:?} of {}: {} bytes, too few for its voxels",
                self.kind,
                chunk.bytes.len()
            );
            let x_lo = c_lo[0].max(clip_lo[0]);
            let x_hi = c_hi[0].min(clip_hi[0]);
            for z in c_lo[2].max(clip_lo[2])..c_hi[2].min(clip_hi[2]) {
                for y in c_lo[1].max(clip_lo[1])..c_hi[1].min(clip_hi[1]) {
                    let row = |x: usize| {
                        (((z as i64 - lo[2]) as usize * size[1] + (y as i64 - lo[1]) as usize)
                            * size[0]
                            + (x as i64 - lo[0]) as usize)
                            * es
                    };
                    let src = (z - c_lo[2]) * tz + (y - c_lo[1]) * ty;
                    if tx == 1 {
                        let s = (src + x_lo - c_lo[0]) * es;
                        out[row(x_lo)..row(x_hi)]
                            .copy_from_slice(&chunk.bytes[s..s + (x_hi - x_lo) * es]);
                    } else {
                        for x in x_lo..x_hi {
                            let s = (src + (x - c_lo[0]) * tx) * es;
                            out[row(x)..row(x) + es].copy_from_slice(&chunk.bytes[s..s + es]);
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

fn read_json(fetch: &dyn Fetch, path: &str) -> anyhow::Result<Value> {
    let text = fetch
        .get(&[path.to_string()])?
        .pop()
        .flatten()
        .with_context(|| format!("{}: no {path}", fetch.describe()))?;
    serde_json::from_slice(&text)
        .with_context(|| format!("{}/{path} is not valid JSON", fetch.describe()))
}
fn gunzip(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes).read_to_end(&mut out)?;
    Ok(out)
}

fn zlib_inflate(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(bytes).read_to_end(&mut out)?;
    Ok(out)
}

fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

// ---------------------------------------------------------------- neuroglancer precomputed

#[derive(Deserialize)]
struct PrecomputedInfo {
    data_type: String,
    #[serde(default = "one")]
    num_channels: usize,
    scales: Vec<PrecomputedScale>,
}

fn one() -> usize {
    1
}

#[derive(Deserialize)]
struct PrecomputedScale {
    key: String,
    size: [usize; 3],
    #[serde(default)]
    voxel_offset: [i64; 3],
    chunk_sizes: Vec<[usize; 3]>,
    encoding: String,
    #[serde(default)]
    sharding: Option<Value>,
    #[serde(default)]
    resolution: Option<[f64; 3]>,
    #[serde(default)]
    compressed_segmentation_block_size: Option<[usize; 3]>,
}

#[derive(Clone, Copy, PartialEq)]
enum Encoding {
    Raw,
    Png,
    Jpeg,
    /// uint64 labels in blocks of this size.
    CompressedSegmentation([usize; 3]),
}

struct PrecomputedStore {
    fetch: Arc<dyn Fetch>,
    /// The scale's directory under the volume's root.
    key: String,
    size: [usize; 3],
    offset: [i64; 3],
    chunk: [usize; 3],
    encoding: Encoding,
    dtype: Dtype,
}

/// Opens the first (finest) scale of a precomputed volume; its voxel_offset becomes the
/// default `--offset`.
pub fn open_precomputed(fetch: Arc<dyn Fetch>) -> anyhow::Result<ChunkedVolume> {
    let name = fetch.describe();
    let info: PrecomputedInfo = serde_json::from_value(read_json(fetch.as_ref(), "info")?)
        .with_context(|| format!("{name}/info is not a precomputed volume info"))?;
    let dtype = match info.data_type.as_str() {
        "uint8" => Dtype::U8,
        "uint16" => Dtype::U16,
        "uint64" => Dtype::U64,
        d => bail!("{name}: data_type {d:?}: only uint8, uint16 and uint64 can be loaded"),
    };
    ensure!(
        info.num_channels == 1,
        "{name}: {} channels: only single-channel volumes can be loaded",
        info.num_channels
    );
    let scale = info
        .scales
        .first()
        .with_context(|| format!("{name}: the info lists no scales"))?;
    ensure!(
        scale.sharding.as_ref().is_none_or(Value::is_null),
        "{name}: scale {:?} is sharded; sharded precomputed volumes are not supported",
        scale.key
    );
    let encoding = match scale.encoding.as_str() {
        "raw" => Encoding::Raw,
        "png" => Encoding::Png,
        "jpeg" if dtype == Dtype::U8 => Encoding::Jpeg,
        "compressed_segmentation" if dtype == Dtype::U64 => Encoding::CompressedSegmentation(
            scale.compressed_segmentation_block_size.unwrap_or([8; 3]),
        ),
        e => bail!(
            "{name}: encoding {e:?} of {} is not supported (supported: raw, optionally gzip-compressed files; png; jpeg of uint8; compressed_segmentation of uint64)",
            dtype.name()
        ),
    };
    let chunk = *scale
        .chunk_sizes
        .first()
        .with_context(|| format!("{name}: scale {:?} has no chunk_sizes", scale.key))?;
    ensure!(
        chunk.iter().all(|&c| c > 0) && scale.size.iter().all(|&s| s > 0),
        "{name}: empty size or chunk size"
    );
    Ok(ChunkedVolume {
        kind: format!(
            "{} precomputed ({} encoding, scale {})",
            dtype.name(),
            scale.encoding,
            scale.key
        ),
        shape: scale.size,
        chunk,
        dtype,
        origin: scale.voxel_offset,
        resolution: scale.resolution,
        fill: vec![0; dtype.size()],
        store: Box::new(PrecomputedStore {
            fetch: fetch.clone(),
            key: scale.key.trim_matches('/').to_string(),
            size: scale.size,
            offset: scale.voxel_offset,
            chunk,
            encoding,
            dtype,
        }),
        missing: AtomicUsize::new(0),
        cache: None,
    })
}

impl PrecomputedStore {
    /// The file name of chunk `index`: `x0-x1_y0-y1_z0-z1` in world coordinates.
    fn name(&self, index: [usize; 3]) -> String {
        let lo: [usize; 3] = std::array::from_fn(|a| index[a] * self.chunk[a]);
        let hi: [usize; 3] = std::array::from_fn(|a| (lo[a] + self.chunk[a]).min(self.size[a]));
        format!(
            "{}/{}-{}_{}-{}_{}-{}",
            self.key,
            self.offset[0] + lo[0] as i64,
            self.offset[0] + hi[0] as i64,
            self.offset[1] + lo[1] as i64,
            self.offset[1] + hi[1] as i64,
            self.offset[2] + lo[2] as i64,
            self.offset[2] + hi[2] as i64,
        )
    }

    fn decode(&self, index: [usize; 3], path: &str, bytes: Vec<u8>) -> anyhow::Result<Chunk> {
        let lo: [usize; 3] = std::array::from_fn(|a| index[a] * self.chunk[a]);
        let hi: [usize; 3] = std::array::from_fn(|a| (lo[a] + self.chunk[a]).min(self.size[a]));
        let what = || format!("chunk {}/{path}", self.fetch.describe());
        let bytes = if is_gzip(&bytes) {
            gunzip(&bytes).with_context(what)?
        } else {
            bytes
        };
        let [ex, ey, ez] = std::array::from_fn(|a| hi[a] - lo[a]);
        let es = self.dtype.size();
        let bytes = match self.encoding {
            Encoding::Raw => bytes,
            Encoding::Png => {
                let (w, h, dtype, pixels) = decode_png_bytes(&bytes).with_context(what)?;
                ensure!(
                    (w, h) == (ex, ey * ez) && dtype == self.dtype,
                    "{}: a {w}×{h} {} image, not {ex}×{} {}",
                    what(),
                    dtype.name(),
                    ey * ez,
                    self.dtype.name()
                );
                pixels
            }
            // One gray image ex wide and ey·ez tall, as for png.
            Encoding::Jpeg => crate::block::jpeg::decode_gray(&bytes, None)
                .map_err(|e| anyhow::anyhow!("{}: {e}", what()))?,
            Encoding::CompressedSegmentation(block) => {
                crate::block::cseg::decode(&bytes, [ex, ey, ez], block)
                    .map_err(|e| anyhow::anyhow!("{}: compressed_segmentation: {e}", what()))?
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect()
            }
        };
        ensure!(
            bytes.len() == ex * ey * ez * es,
            "{}: {} bytes, but its {ex}×{ey}×{ez} {} voxels are {}",
            what(),
            bytes.len(),
            self.dtype.name(),
            ex * ey * ez * es
        );
        Ok(Chunk {
            bytes,
            strides: [1, ex, ex * ey],
        })
    }
}

impl ChunkStore for PrecomputedStore {
    fn chunks(&self, indices: &[[usize; 3]]) -> anyhow::Result<Vec<Option<Chunk>>> {
        let names: Vec<String> = indices.iter().map(|&i| self.name(i)).collect();
        let mut got: Vec<(String, Option<Vec<u8>>)> =
            names.iter().cloned().zip(self.fetch.get(&names)?).collect();
        // Files written gzip-compressed under a `.gz` name (CloudVolume on local files), for
        // those not found under the plain one.
        let missing: Vec<usize> = (0..got.len()).filter(|&i| got[i].1.is_none()).collect();
        if !missing.is_empty() {
            let gz: Vec<String> = missing
                .iter()
                .map(|&i| format!("{}.gz", names[i]))
                .collect();
            for ((i, name), bytes) in missing
                .into_iter()
                .zip(gz.clone())
                .zip(self.fetch.get(&gz)?)
            {
                got[i] = (name, bytes);
            }
        }
        got.into_iter()
            .zip(indices)
            .map(|((path, bytes), &index)| bytes.map(|b| self.decode(index, &path, b)).transpose())
            .collect()
    }
}

/// A grayscale PNG: (width, height, element type, little-endian pixels).
fn decode_png_bytes(bytes: &[u8]) -> anyhow::Result<(usize, usize, Dtype, Vec<u8>)> {
    let mut dec = png::Decoder::new(std::io::Cursor::new(bytes));
    dec.set_transformations(png::Transformations::EXPAND);
    let mut reader = dec.read_info()?;
    let mut buf = vec![0; reader.output_buffer_size().context("PNG too large")?];
    let info = reader.next_frame(&mut buf)?;
    ensure!(
        info.color_type == png::ColorType::Grayscale,
        "a {:?} PNG, not grayscale",
        info.color_type
    );
    buf.truncate(info.buffer_size());
    let dtype = if info.bit_depth == png::BitDepth::Sixteen {
        for px in buf.chunks_exact_mut(2) {
            px.swap(0, 1);
        }
        Dtype::U16
    } else {
        Dtype::U8
    };
    Ok((info.width as usize, info.height as usize, dtype, buf))
}

// ---------------------------------------------------------------- zarr

#[derive(Clone, Copy, Debug, PartialEq)]
enum BytesCodec {
    Gzip,
    Zlib,
    /// A 4-byte CRC32C after the data (stripped, not checked).
    Crc32c,
}

/// The chunk key of a grid index (all dimensions), e.g. `c/0/1/2`.
type ChunkKey = Box<dyn Fn(&[usize]) -> String + Send + Sync>;

struct ZarrStore {
    fetch: Arc<dyn Fetch>,
    /// Chunk key of grid index (all dimensions).
    key: ChunkKey,
    ndim: usize,
    /// Element strides of the array's x, y and z axes within a decoded chunk.
    strides: [usize; 3],
    chunk_bytes: usize,
    /// bytes→bytes codecs in encoding order (decoded in reverse).
    codecs: Vec<BytesCodec>,
    big_endian: bool,
    elem: usize,
}

impl ZarrStore {
    fn decode(&self, path: &str, mut bytes: Vec<u8>) -> anyhow::Result<Chunk> {
        let what = || format!("chunk {}/{path}", self.fetch.describe());
        for codec in self.codecs.iter().rev() {
            bytes = match codec {
                BytesCodec::Gzip => gunzip(&bytes).with_context(what)?,
                BytesCodec::Zlib => zlib_inflate(&bytes).with_context(what)?,
                BytesCodec::Crc32c => {
                    ensure!(bytes.len() >= 4, "{}: too short for its checksum", what());
                    bytes.truncate(bytes.len() - 4);
                    bytes
                }
            };
        }
        ensure!(
            bytes.len() == self.chunk_bytes,
            "{}: {} bytes decoded, but a chunk is {}",
            what(),
            bytes.len(),
            self.chunk_bytes
        );
        if self.big_endian {
            for px in bytes.chunks_exact_mut(self.elem) {
                px.reverse();
            }
        }
        Ok(Chunk {
            bytes,
            strides: self.strides,
        })
    }
}

impl ChunkStore for ZarrStore {
    fn chunks(&self, indices: &[[usize; 3]]) -> anyhow::Result<Vec<Option<Chunk>>> {
        let keys: Vec<String> = indices
            .iter()
            .map(|index| {
                let mut grid = vec![0; self.ndim];
                grid[self.ndim - 3..].copy_from_slice(&[index[2], index[1], index[0]]);
                (self.key)(&grid)
            })
            .collect();
        let got = self.fetch.get(&keys)?;
        keys.iter()
            .zip(got)
            .map(|(key, bytes)| bytes.map(|b| self.decode(key, b)).transpose())
            .collect()
    }
}

/// Refused compressors and codecs, named so the message can say which.
const ZARR_SUPPORTED: &str = "supported: no compression, gzip and zlib (v2 compressor) or the v3 codecs bytes, transpose, gzip and crc32c";

fn u64_field(v: &Value, what: &str) -> anyhow::Result<u64> {
    v.as_u64()
        .with_context(|| format!("{what} is not a non-negative integer: {v}"))
}

fn usize_list(v: &Value, what: &str) -> anyhow::Result<Vec<usize>> {
    v.as_array()
        .with_context(|| format!("{what} is not a list"))?
        .iter()
        .map(|d| u64_field(d, what).map(|d| d as usize))
        .collect()
}

/// The fill value as the element's little-endian bytes (null, absent or 0 → zeros).
fn fill_bytes(v: Option<&Value>, dtype: Dtype) -> anyhow::Result<Vec<u8>> {
    let n = match v {
        None | Some(Value::Null) => 0,
        Some(v) => u64_field(v, "fill_value")?,
    };
    Ok(n.to_le_bytes()[..dtype.size()].to_vec())
}

/// Element strides of each array axis within a chunk stored in C order after the axis
/// permutation `order` (stored axis `a` is array axis `order[a]`).
fn permuted_strides(chunk: &[usize], order: &[usize]) -> Vec<usize> {
    let mut strides = vec![0; chunk.len()];
    let mut s = 1;
    for &axis in order.iter().rev() {
        strides[axis] = s;
        s *= chunk[axis];
    }
    strides
}

/// What the two metadata versions say about an array, beyond its shape.
struct ZarrMeta {
    dtype: Dtype,
    big_endian: bool,
    chunk: Vec<usize>,
    /// Stored axis `a` of a chunk is array axis `order[a]`.
    order: Vec<usize>,
    codecs: Vec<BytesCodec>,
    key: ChunkKey,
    fill: Vec<u8>,
}

/// Opens a zarr v2 (`.zarray`) or v3 (`zarr.json`) array whose last three axes are z, y, x
/// (any before them must have size 1).
pub fn open_zarr(fetch: Arc<dyn Fetch>) -> anyhow::Result<ChunkedVolume> {
    let name = fetch.describe();
    let files = fetch.get(&[".zarray".to_string(), "zarr.json".to_string()])?;
    let text = files
        .into_iter()
        .flatten()
        .next()
        .with_context(|| format!("{name}: neither .zarray nor zarr.json"))?;
    let meta: Value = serde_json::from_slice(&text)
        .with_context(|| format!("{name}: its zarr metadata is not valid JSON"))?;
    let version = meta.get("zarr_format").and_then(Value::as_u64);
    let shape = usize_list(&meta["shape"], "shape")?;
    let ndim = shape.len();
    ensure!(
        ndim >= 3,
        "{name}: a {ndim}-D zarr array: a volume needs (z, y, x) axes"
    );
    ensure!(
        shape[..ndim - 3].iter().all(|&d| d == 1),
        "{name}: shape {shape:?}: only the last three axes (z, y, x) may be larger than 1"
    );
    ensure!(
        shape.iter().all(|&d| d > 0),
        "{name}: shape {shape:?} is empty"
    );
    let ZarrMeta {
        dtype,
        big_endian,
        chunk,
        order,
        codecs,
        key,
        fill,
    } = match version {
        Some(2) => {
            let (dtype, big_endian) = match meta["dtype"].as_str() {
                Some("|u1" | "<u1" | ">u1") => (Dtype::U8, false),
                Some("<u2") => (Dtype::U16, false),
                Some(">u2") => (Dtype::U16, true),
                Some("<u8") => (Dtype::U64, false),
                Some(">u8") => (Dtype::U64, true),
                d => bail!(
                    "{name}: dtype {}: only uint8, uint16 and uint64 can be loaded",
                    d.map_or_else(|| meta["dtype"].to_string(), |d| format!("{d:?}"))
                ),
            };
            let chunk = usize_list(&meta["chunks"], "chunks")?;
            let order: Vec<usize> = match meta["order"].as_str().unwrap_or("C") {
                "C" => (0..ndim).collect(),
                "F" => (0..ndim).rev().collect(),
                o => bail!("{name}: order {o:?} is neither C nor F"),
            };
            let codecs = match &meta["compressor"] {
                Value::Null => vec![],
                c => match c["id"].as_str() {
                    Some("gzip") => vec![BytesCodec::Gzip],
                    Some("zlib") => vec![BytesCodec::Zlib],
                    id => bail!(
                        "{name}: compressor {} is not supported ({ZARR_SUPPORTED})",
                        id.unwrap_or("(unnamed)")
                    ),
                },
            };
            match &meta["filters"] {
                Value::Null => {}
                Value::Array(f) if f.is_empty() => {}
                f => bail!("{name}: filters {f} are not supported ({ZARR_SUPPORTED})"),
            }
            let sep = meta["dimension_separator"]
                .as_str()
                .unwrap_or(".")
                .to_string();
            ensure!(
                sep == "." || sep == "/",
                "{name}: dimension_separator {sep:?} is neither \".\" nor \"/\""
            );
            let key = Box::new(move |g: &[usize]| {
                g.iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(&sep)
            });
            let fill = fill_bytes(meta.get("fill_value"), dtype)?;
            ZarrMeta {
                dtype,
                big_endian,
                chunk,
                order,
                codecs,
                key,
                fill,
            }
        }
        Some(3) => {
            ensure!(
                meta["node_type"].as_str() == Some("array"),
                "{name} is a zarr {} node, not an array: give the directory of one of its arrays",
                meta["node_type"].as_str().unwrap_or("(untyped)")
            );
            let dtype = match meta["data_type"].as_str() {
                Some("uint8") => Dtype::U8,
                Some("uint16") => Dtype::U16,
                Some("uint64") => Dtype::U64,
                _ => bail!(
                    "{name}: data_type {}: only uint8, uint16 and uint64 can be loaded",
                    meta["data_type"]
                ),
            };
            let grid = &meta["chunk_grid"];
            ensure!(
                grid["name"].as_str() == Some("regular"),
                "{name}: chunk grid {} is not supported (only regular)",
                grid["name"]
            );
            let chunk = usize_list(&grid["configuration"]["chunk_shape"], "chunk_shape")?;
            if let Some(t) = meta.get("storage_transformers")
                && t.as_array().is_some_and(|t| !t.is_empty())
            {
                bail!("{name}: storage transformers are not supported");
            }
            let mut order: Vec<usize> = (0..ndim).collect();
            let mut big_endian = false;
            let mut codecs = Vec::new();
            let list = meta["codecs"]
                .as_array()
                .with_context(|| format!("{name}: no codecs list"))?;
            for c in list {
                let cname = c["name"].as_str().unwrap_or("(unnamed)");
                let conf = &c["configuration"];
                match cname {
                    "transpose" => {
                        order = match &conf["order"] {
                            Value::String(s) if s == "C" => (0..ndim).collect(),
                            Value::String(s) if s == "F" => (0..ndim).rev().collect(),
                            o => {
                                let o = usize_list(o, "transpose order")?;
                                let mut sorted = o.clone();
                                sorted.sort_unstable();
                                ensure!(
                                    sorted == (0..ndim).collect::<Vec<_>>(),
                                    "{name}: transpose order {o:?} is not a permutation"
                                );
                                o.iter().map(|&a| order[a]).collect()
                            }
                        }
                    }
                    "bytes" => {
                        big_endian = conf["endian"].as_str() == Some("big");
                    }
                    "gzip" => codecs.push(BytesCodec::Gzip),
                    "crc32c" => codecs.push(BytesCodec::Crc32c),
                    other => bail!("{name}: codec {other} is not supported ({ZARR_SUPPORTED})"),
                }
            }
            let enc = &meta["chunk_key_encoding"];
            let (prefix, default_sep) = match enc["name"].as_str() {
                None | Some("default") => (Some("c"), "/"),
                Some("v2") => (None, "."),
                Some(other) => bail!("{name}: chunk key encoding {other:?} is not supported"),
            };
            let sep = enc["configuration"]["separator"]
                .as_str()
                .unwrap_or(default_sep)
                .to_string();
            let key = Box::new(move |g: &[usize]| {
                let parts = g.iter().map(usize::to_string);
                match prefix {
                    Some(p) => std::iter::once(p.to_string())
                        .chain(parts)
                        .collect::<Vec<_>>()
                        .join(&sep),
                    None => parts.collect::<Vec<_>>().join(&sep),
                }
            });
            let fill = fill_bytes(meta.get("fill_value"), dtype)?;
            ZarrMeta {
                dtype,
                big_endian,
                chunk,
                order,
                codecs,
                key,
                fill,
            }
        }
        _ => bail!(
            "{name}: zarr_format {}: only zarr v2 and v3 arrays can be loaded",
            meta["zarr_format"]
        ),
    };
    ensure!(
        chunk.len() == ndim && chunk.iter().all(|&c| c > 0),
        "{name}: chunk shape {chunk:?} does not fit shape {shape:?}"
    );
    let strides = permuted_strides(&chunk, &order);
    let elem = dtype.size();
    let chunk_bytes = chunk.iter().product::<usize>() * elem;
    let codec_names = if codecs.is_empty() {
        "uncompressed".to_string()
    } else {
        codecs
            .iter()
            .map(|c| format!("{c:?}").to_lowercase())
            .collect::<Vec<_>>()
            .join("+")
    };
    Ok(ChunkedVolume {
        kind: format!(
            "{} zarr v{} ({codec_names})",
            dtype.name(),
            version.unwrap_or(0)
        ),
        shape: [shape[ndim - 1], shape[ndim - 2], shape[ndim - 3]],
        chunk: [chunk[ndim - 1], chunk[ndim - 2], chunk[ndim - 3]],
        dtype,
        origin: [0; 3],
        resolution: None,
        fill,
        store: Box::new(ZarrStore {
            fetch: fetch.clone(),
            key,
            ndim,
            strides: [strides[ndim - 1], strides[ndim - 2], strides[ndim - 3]],
            chunk_bytes,
            codecs,
            big_endian,
            elem,
        }),
        missing: AtomicUsize::new(0),
        cache: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::LocalDir;
    use std::io::Write;
    use std::sync::Arc;

    fn local(dir: &std::path::Path) -> Arc<dyn Fetch> {
        Arc::new(LocalDir(dir.to_path_buf()))
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    /// A (z, y, x) test volume of `shape` (x, y, z).
    fn volume(shape: [usize; 3]) -> Vec<u8> {
        (0..shape[0] * shape[1] * shape[2])
            .map(|i| (i * 7 % 251) as u8)
            .collect()
    }

    fn read_all(src: &ChunkedVolume) -> Vec<u8> {
        src.read_box([0; 3], src.shape).unwrap()
    }

    #[test]
    fn zarr_v2_f_order_gzip_nested_keys() {
        let dir = tempfile::tempdir().unwrap();
        let shape = [7usize, 5, 6];
        let chunk = [4usize, 3, 4]; // x, y, z
        let vol = volume(shape);
        std::fs::write(
            dir.path().join(".zarray"),
            serde_json::json!({
                "zarr_format": 2, "shape": [6, 5, 7], "chunks": [4, 3, 4], "dtype": "|u1",
                "compressor": {"id": "gzip", "level": 1}, "fill_value": 0, "order": "F",
                "filters": null, "dimension_separator": "/"
            })
            .to_string(),
        )
        .unwrap();
        for cz in 0..2 {
            for cy in 0..2 {
                for cx in 0..2 {
                    // F order over (z, y, x): z fastest; padded to whole chunks.
                    let mut data = Vec::new();
                    for x in 0..chunk[0] {
                        for y in 0..chunk[1] {
                            for z in 0..chunk[2] {
                                let (gx, gy, gz) =
                                    (cx * chunk[0] + x, cy * chunk[1] + y, cz * chunk[2] + z);
                                data.push(if gx < 7 && gy < 5 && gz < 6 {
                                    vol[(gz * 5 + gy) * 7 + gx]
                                } else {
                                    99
                                });
                            }
                        }
                    }
                    if (cx, cy, cz) == (1, 1, 1) {
                        continue; // missing: fill value
                    }
                    let d = dir.path().join(cz.to_string()).join(cy.to_string());
                    std::fs::create_dir_all(&d).unwrap();
                    std::fs::write(d.join(cx.to_string()), gzip(&data)).unwrap();
                }
            }
        }
        let src = open_zarr(local(dir.path())).unwrap();
        assert_eq!(src.shape, shape);
        let got = read_all(&src);
        for (i, (&g, &w)) in got.iter().zip(&vol).enumerate() {
            let (x, y, z) = (i % 7, i / 7 % 5, i / 35);
            let want = if x >= 4 && y >= 3 && z >= 4 { 0 } else { w };
            assert_eq!(g, want, "voxel ({x}, {y}, {z})");
        }
        assert_eq!(src.missing(), 1);
    }

    #[test]
    fn zarr_v3_uint16_default_keys() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("zarr.json"),
            serde_json::json!({
                "zarr_format": 3, "node_type": "array", "shape": [1, 2, 3, 4],
                "data_type": "uint16",
                "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [1, 2, 3, 4]}},
                "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
                "fill_value": 0,
                "codecs": [{"name": "bytes", "configuration": {"endian": "big"}}, {"name": "gzip", "configuration": {"level": 1}}]
            })
            .to_string(),
        )
        .unwrap();
        let vals: Vec<u16> = (0..24).map(|i| i * 1001).collect();
        let be: Vec<u8> = vals.iter().flat_map(|v| v.to_be_bytes()).collect();
        let d = dir.path().join("c/0/0/0");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("0"), gzip(&be)).unwrap();
        let src = open_zarr(local(dir.path())).unwrap();
        assert_eq!((src.shape, src.dtype), ([4, 3, 2], Dtype::U16));
        let got = read_all(&src);
        let le: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(got, le);
    }

    #[test]
    fn zarr_refuses_blosc_by_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(".zarray"),
            r#"{"zarr_format": 2, "shape": [2, 2, 2], "chunks": [2, 2, 2], "dtype": "|u1",
                "compressor": {"id": "blosc"}, "fill_value": 0, "order": "C", "filters": null}"#,
        )
        .unwrap();
        let err = format!("{:#}", open_zarr(local(dir.path())).err().unwrap());
        assert!(err.contains("blosc") && err.contains("supported"), "{err}");
    }

    #[test]
    fn precomputed_raw_gzip_and_clipped_edges() {
        let dir = tempfile::tempdir().unwrap();
        let shape = [5usize, 4, 3];
        let vol = volume(shape);
        std::fs::write(
            dir.path().join("info"),
            serde_json::json!({
                "@type": "neuroglancer_multiscale_volume", "type": "image",
                "data_type": "uint8", "num_channels": 1,
                "scales": [{"key": "s0", "size": [5, 4, 3], "voxel_offset": [10, 20, 30],
                    "resolution": [8, 8, 8], "chunk_sizes": [[4, 4, 2]], "encoding": "raw"}]
            })
            .to_string(),
        )
        .unwrap();
        let s0 = dir.path().join("s0");
        std::fs::create_dir(&s0).unwrap();
        for cz in 0..2 {
            for cx in 0..2 {
                let (x0, x1) = (cx * 4, (cx * 4 + 4).min(5));
                let (z0, z1) = (cz * 2, (cz * 2 + 2).min(3));
                let mut data = Vec::new();
                for z in z0..z1 {
                    for y in 0..4 {
                        for x in x0..x1 {
                            data.push(vol[(z * 4 + y) * 5 + x]);
                        }
                    }
                }
                let name = format!("{}-{}_20-24_{}-{}", 10 + x0, 10 + x1, 30 + z0, 30 + z1);
                if cx == 1 {
                    std::fs::write(s0.join(format!("{name}.gz")), gzip(&data)).unwrap();
                } else {
                    std::fs::write(s0.join(name), data).unwrap();
                }
            }
        }
        let src = open_precomputed(local(dir.path())).unwrap();
        assert_eq!((src.shape, src.origin), (shape, [10, 20, 30]));
        assert_eq!(read_all(&src), vol);
        assert_eq!(src.missing(), 0);
        // A box across chunk edges and past the volume's: outside voxels read as zero.
        let got = src.read_box([3, -1, 1], [4, 3, 3]).unwrap();
        for (i, &g) in got.iter().enumerate() {
            let (x, y, z) = (3 + i % 4, i / 4 % 3, 1 + i / 12);
            let inside = x < 5 && (1..=4).contains(&y) && z < 3;
            let want = if inside {
                vol[(z * 4 + y - 1) * 5 + x]
            } else {
                0
            };
            assert_eq!(g, want, "voxel ({x}, {y}, {z})");
        }
    }
}
