//! Pyramid levels written straight into object storage (`tessera pyramid --out-dir s3://…`), as
//! zarr v2 arrays `s1` … `sN` of one group, for the workers of a sharded job that share no file
//! system. An object cannot be written in parts, so each worker writes whole chunks: a level's
//! chunk spans one slab's planes (the slabs are the shards' units) and 64 × 64 voxels in y and
//! x. The array metadata is written last, once every worker's part is done, so a reader never
//! sees a level with chunks missing.

use bytes::Bytes;
use tessera_engine::compute::Shape;
use tessera_storage::Objects;

use super::npy::Element;
use super::shard::Shard;

/// Chunk width in y and x.
const CHUNK_XY: usize = 64;

pub struct ZarrLevels {
    objects: Objects,
    /// Each level's shape and chunk shape (z, y, x), level 1 first.
    levels: Vec<(Shape, [usize; 3])>,
    /// Input planes per slab.
    planes: usize,
    dtype: &'static str,
}

impl ZarrLevels {
    /// The levels of a `shape` volume under `url`, for slabs of `planes` input planes.
    /// Credentials and endpoints come from the usual environment variables (`AWS_*`, …).
    pub fn open<T: Element>(
        url: &str,
        shape: Shape,
        levels: u32,
        planes: usize,
    ) -> anyhow::Result<ZarrLevels> {
        let objects = super::out::open_objects(url)?;
        let mut s = shape;
        let levels = (1..=levels)
            .map(|k| {
                s = s.half();
                let chunk = [planes >> k, CHUNK_XY.min(s.y), CHUNK_XY.min(s.x)];
                (s, chunk)
            })
            .collect();
        Ok(ZarrLevels {
            objects,
            levels,
            planes,
            dtype: T::DESCR,
        })
    }

    /// Writes the chunks of the slab starting at input plane `z0` (a multiple of the slab
    /// size): `slab[k]` is its part of level k + 1. Edge chunks are padded with zeros, the
    /// arrays' fill value, as zarr stores them.
    pub fn write_slab<T: Element>(&self, z0: usize, slab: &[Vec<T>]) -> anyhow::Result<()> {
        let zi = z0 / self.planes;
        let mut files = Vec::new();
        for (k, ((s, [cz, cy, cx]), level)) in self.levels.iter().zip(slab).enumerate() {
            let nz = level.len() / (s.x * s.y);
            for yi in 0..s.y.div_ceil(*cy) {
                for xi in 0..s.x.div_ceil(*cx) {
                    let mut chunk = vec![T::zeroed(); cz * cy * cx];
                    let (y0, x0) = (yi * cy, xi * cx);
                    let w = (*cx).min(s.x - x0);
                    for z in 0..nz.min(*cz) {
                        for y in 0..(*cy).min(s.y - y0) {
                            let from = (z * s.y + y0 + y) * s.x + x0;
                            let to = (z * cy + y) * cx;
                            chunk[to..to + w].copy_from_slice(&level[from..from + w]);
                        }
                    }
                    files.push((
                        format!("s{}/{zi}.{yi}.{xi}", k + 1),
                        Bytes::from(bytemuck::cast_slice::<T, u8>(&chunk).to_vec()),
                    ));
                }
            }
        }
        self.put(files)
    }

    fn put(&self, files: Vec<(String, Bytes)>) -> anyhow::Result<()> {
        self.objects
            .put_files(files)
            .map_err(|e| anyhow::anyhow!("writing to {}: {e}", self.objects.url()))
    }

    /// Marks this worker's part done; the worker that finds every part done writes the
    /// arrays' metadata, which makes them readable, and removes the marks. Answers whether
    /// this worker published. Publishing twice writes the same bytes.
    pub fn finish(&self, shard: Shard) -> anyhow::Result<bool> {
        let meta = self.metadata();
        let names: Vec<String> = meta.iter().map(|(n, _)| n.clone()).collect();
        if self.all_exist(&names)? {
            // A worker rerun after the levels were published rewrote its chunks (the same
            // bytes) and has nothing to mark.
            return Ok(false);
        }
        let marks: Vec<String> = (0..shard.count)
            .map(|i| format!(".pyramid.shard-{i}-of-{}.done", shard.count))
            .collect();
        self.put(vec![(marks[shard.index].clone(), Bytes::new())])?;
        if !self.all_exist(&marks)? {
            return Ok(false);
        }
        self.put(meta)?;
        self.objects
            .delete_files(&marks)
            .map_err(|e| anyhow::anyhow!("removing marks from {}: {e}", self.objects.url()))?;
        Ok(true)
    }

    fn all_exist(&self, names: &[String]) -> anyhow::Result<bool> {
        let found = self
            .objects
            .get_files(names)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", self.objects.url()))?;
        Ok(found.iter().all(Option::is_some))
    }

    /// The group's and every level's metadata files.
    fn metadata(&self) -> Vec<(String, Bytes)> {
        let mut meta = vec![(
            ".zgroup".to_string(),
            Bytes::from_static(b"{\"zarr_format\": 2}"),
        )];
        for (k, (s, chunk)) in self.levels.iter().enumerate() {
            let zarray = serde_json::json!({
                "zarr_format": 2,
                "shape": [s.z, s.y, s.x],
                "chunks": chunk,
                "dtype": self.dtype,
                "compressor": null,
                "fill_value": 0,
                "order": "C",
                "filters": null,
            });
            meta.push((
                format!("s{}/.zarray", k + 1),
                Bytes::from(zarray.to_string()),
            ));
        }
        meta
    }
}
