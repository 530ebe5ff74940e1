//! Voxel boxes over blocks, for any element type: the `raw`/`isotropic` request geometry,
//! reading a box out of stored blocks (streamed plane-chunk by plane-chunk, so a read of any
//! size holds a bounded amount in memory), and cutting a posted block-aligned volume into
//! blocks as its body arrives, one z-layer of blocks at a time.

use std::io::{Read, Write as _};
use std::sync::Arc;

use bytes::Bytes;

use super::geom::{BlockCoord, VoxelBox, parse_point, parse_size};
use crate::{Error, Result};

/// Output produced per streamed chunk of a 3-D read.
pub const CHUNK_BYTES: usize = 64 << 20;

/// Largest response that has to be built whole (lz4, PNG, JPEG, compressed_segmentation).
pub const MAX_WHOLE_BYTES: usize = 1 << 30;

/// Which axes a request's `<dims>` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dims {
    Volume,
    /// A 2-D slice over two of the axes (x=0, y=1, z=2).
    Slice(usize, usize),
}

fn parse_dims(s: &str) -> Result<Dims> {
    match s {
        "0_1_2" => Ok(Dims::Volume),
        "0_1" | "xy" => Ok(Dims::Slice(0, 1)),
        "0_2" | "xz" => Ok(Dims::Slice(0, 2)),
        "1_2" | "yz" => Ok(Dims::Slice(1, 2)),
        _ => Err(Error::bad(format!(
            "dims {s:?} must be 0_1_2 (a volume) or 0_1, 0_2, 1_2 (xy, xz, yz slices)"
        ))),
    }
}

/// `<dims>/<size>/<offset>[/...]` → the dims and the box.
pub fn parse_geometry(path: &[String]) -> Result<(Dims, VoxelBox)> {
    if path.len() < 3 {
        return Err(Error::bad(
            "expected <dims>/<size>/<offset>, e.g. 0_1_2/64_64_64/0_0_0",
        ));
    }
    let dims = parse_dims(&path[0])?;
    let offset = parse_point(&path[2], "offset")?;
    let size = match dims {
        Dims::Volume => {
            let s = parse_size(&path[1], 3, "size")?;
            [s[0], s[1], s[2]]
        }
        Dims::Slice(a, b) => {
            let s = parse_size(&path[1], 2, "size")?;
            let mut size = [1; 3];
            size[a] = s[0];
            size[b] = s[1];
            size
        }
    };
    Ok((dims, VoxelBox::new(offset, size)?))
}

/// Checks that a box built whole in memory, `bytes_per_voxel` each, stays under the limit.
pub fn check_whole(bx: &VoxelBox, bytes_per_voxel: usize) -> Result<()> {
    if bx.voxels().saturating_mul(bytes_per_voxel) > MAX_WHOLE_BYTES {
        return Err(Error::bad(format!(
            "a {:?} box is too large for this response format (at most {MAX_WHOLE_BYTES} bytes); \
             request it uncompressed, which streams, or in smaller pieces",
            bx.size
        )));
    }
    Ok(())
}

/// Copies the part of one decoded block (at `c`, of size `bs`) that lies inside `bx` into
/// `out`, laid out as `bx`.
pub fn copy_block<T: Copy>(
    block: &[T],
    c: BlockCoord,
    bs: [usize; 3],
    bx: &VoxelBox,
    out: &mut [T],
) {
    let origin: [i64; 3] = std::array::from_fn(|a| c[a] as i64 * bs[a] as i64);
    let end = bx.end();
    let lo: [i64; 3] = std::array::from_fn(|a| origin[a].max(bx.min[a]));
    let hi: [i64; 3] = std::array::from_fn(|a| (origin[a] + bs[a] as i64).min(end[a]));
    if (0..3).any(|a| lo[a] >= hi[a]) {
        return;
    }
    let n = (hi[0] - lo[0]) as usize;
    for z in lo[2]..hi[2] {
        for y in lo[1]..hi[1] {
            let src = (((z - origin[2]) as usize * bs[1] + (y - origin[1]) as usize) * bs[0])
                + (lo[0] - origin[0]) as usize;
            let dst = (((z - bx.min[2]) as usize * bx.size[1] + (y - bx.min[1]) as usize)
                * bx.size[0])
                + (lo[0] - bx.min[0]) as usize;
            out[dst..dst + n].copy_from_slice(&block[src..src + n]);
        }
    }
}

/// Copies block `c` (of size `bs`) out of a volume laid out as `bx` into `dst` — the inverse
/// of [`copy_block`] for a block wholly inside `bx`.
pub fn gather_block<T: Copy>(
    vol: &[T],
    bx: &VoxelBox,
    bs: [usize; 3],
    c: BlockCoord,
    dst: &mut [T],
) {
    let local: [usize; 3] =
        std::array::from_fn(|a| (c[a] as i64 * bs[a] as i64 - bx.min[a]) as usize);
    for z in 0..bs[2] {
        for y in 0..bs[1] {
            let src = ((local[2] + z) * bx.size[1] + local[1] + y) * bx.size[0] + local[0];
            dst[(z * bs[1] + y) * bs[0]..][..bs[0]].copy_from_slice(&vol[src..src + bs[0]]);
        }
    }
}

/// Scales the x axis of a box or block size by the bytes of a voxel, so that a volume of
/// `bpv`-byte voxels can be cut and assembled as a volume of bytes.
pub fn bytes_wide(bx: &VoxelBox, bs: [usize; 3], bpv: usize) -> (VoxelBox, [usize; 3]) {
    let mut b = *bx;
    b.min[0] *= bpv as i64;
    b.size[0] *= bpv;
    (b, [bs[0] * bpv, bs[1], bs[2]])
}

/// A 2-D slice over axes `a`, `b` resampled to square pixels: pixel i along an axis whose
/// voxels are k times the finest of the two axes samples voxel floor(i / k) of `source`
/// (nearest neighbour).
pub struct Isotropic {
    /// The voxels the slice samples.
    pub source: VoxelBox,
    out: [usize; 2],
    step: [f64; 2],
    axes: [usize; 2],
}

impl Isotropic {
    pub fn new(bx: &VoxelBox, voxel_size: [f64; 3], a: usize, b: usize) -> Result<Isotropic> {
        let fine = voxel_size[a].min(voxel_size[b]);
        let step = [fine / voxel_size[a], fine / voxel_size[b]];
        let mut size = bx.size;
        size[a] = ((bx.size[a] as f64 * step[0]).ceil() as usize).max(1);
        size[b] = ((bx.size[b] as f64 * step[1]).ceil() as usize).max(1);
        Ok(Isotropic {
            source: VoxelBox::new(bx.min, size)?,
            out: [bx.size[a], bx.size[b]],
            step,
            axes: [a, b],
        })
    }

    /// For each output pixel, row by row, the index of its voxel in `source`.
    pub fn indices(&self) -> impl Iterator<Item = usize> + '_ {
        let [a, b] = self.axes;
        let size = self.source.size;
        let sample = move |i: usize, k: usize, axis: usize| {
            ((i as f64 * self.step[k]) as usize).min(size[axis] - 1)
        };
        (0..self.out[1]).flat_map(move |j| {
            (0..self.out[0]).map(move |i| sample(j, 1, b) * size[a] + sample(i, 0, a))
        })
    }
}

/// Fills a sub-box of a read with its bytes (little-endian voxels, x fastest).
pub type Fill = Arc<dyn Fn(&VoxelBox, &mut [u8]) -> Result<()> + Send + Sync>;

/// A 3-D read as a stream of chunks of whole planes, each chunk within one layer of blocks.
pub struct Planes {
    pub fill: Fill,
    pub bx: VoxelBox,
    pub bytes_per_voxel: usize,
    pub block_z: usize,
    z: i64,
}

impl Planes {
    pub fn new(fill: Fill, bx: VoxelBox, bytes_per_voxel: usize, block_z: usize) -> Planes {
        Planes {
            fill,
            bx,
            bytes_per_voxel,
            block_z,
            z: bx.min[2],
        }
    }

    /// The same stream, gzipped as it goes.
    pub fn gzipped(self) -> impl Iterator<Item = Result<Bytes>> + Send + 'static {
        Gzipped {
            inner: self,
            enc: Some(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::fast(),
            )),
        }
    }
}

impl Iterator for Planes {
    type Item = Result<Bytes>;
    fn next(&mut self) -> Option<Result<Bytes>> {
        let end = self.bx.end()[2];
        if self.z >= end {
            return None;
        }
        let plane = self.bx.size[0] * self.bx.size[1] * self.bytes_per_voxel;
        let bz = self.block_z as i64;
        let fits = (CHUNK_BYTES / plane).max(1) as i64;
        let next_block = (self.z.div_euclid(bz) + 1) * bz;
        let z1 = (self.z + fits).min(next_block).min(end);
        let sub = VoxelBox {
            min: [self.bx.min[0], self.bx.min[1], self.z],
            size: [self.bx.size[0], self.bx.size[1], (z1 - self.z) as usize],
        };
        let mut out = vec![0u8; plane * sub.size[2]];
        let r = (self.fill)(&sub, &mut out);
        self.z = if r.is_ok() { z1 } else { end };
        Some(r.map(|()| Bytes::from(out)))
    }
}

struct Gzipped<I> {
    inner: I,
    enc: Option<flate2::write::GzEncoder<Vec<u8>>>,
}

impl<I: Iterator<Item = Result<Bytes>>> Iterator for Gzipped<I> {
    type Item = Result<Bytes>;
    fn next(&mut self) -> Option<Result<Bytes>> {
        let enc = self.enc.as_mut()?;
        match self.inner.next() {
            Some(Ok(chunk)) => {
                enc.write_all(&chunk).expect("writing to a Vec");
                Some(Ok(Bytes::from(std::mem::take(enc.get_mut()))))
            }
            Some(Err(e)) => {
                self.enc = None;
                Some(Err(e))
            }
            None => {
                let enc = self.enc.take()?;
                Some(Ok(Bytes::from(enc.finish().expect("writing to a Vec"))))
            }
        }
    }
}

/// A failure reading a request body: over the size limit, or the client's fault.
pub fn body_error(e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::FileTooLarge => Error::PayloadTooLarge(e.to_string()),
        _ => Error::bad(format!("reading the request body: {e}")),
    }
}

/// The 400 of a posted volume whose body is not `want` bytes.
pub fn wrong_length(got: &str, bx: &VoxelBox, what: &str, want: usize) -> Error {
    Error::bad(format!(
        "body holds {got} bytes but a {:?} volume of {what} is {want} bytes",
        bx.size
    ))
}

/// The body of a posted volume `bx` of `bpv`-byte voxels as a reader of its raw bytes:
/// the stream itself when uncompressed (its declared length checked up front), else the
/// `compression=lz4|gzip` body read whole and inflated to exactly the volume's size.
pub fn posted_volume<'a>(
    compression: Option<&str>,
    mut body: Box<dyn Read + Send + 'a>,
    content_length: Option<usize>,
    bx: &VoxelBox,
    bpv: usize,
    what: &str,
) -> Result<Box<dyn Read + Send + 'a>> {
    let want = bx.voxels() * bpv;
    match compression {
        None | Some("") => {
            if let Some(n) = content_length.filter(|n| *n != want) {
                return Err(wrong_length(&n.to_string(), bx, what, want));
            }
            Ok(body)
        }
        Some(c @ ("lz4" | "gzip")) => {
            let mut packed = Vec::new();
            body.read_to_end(&mut packed).map_err(body_error)?;
            let out = if c == "lz4" {
                lz4_flex::block::decompress(&packed, want).map_err(|e| {
                    Error::bad(format!("body is not an LZ4 block of {want} bytes: {e}"))
                })?
            } else {
                super::stored::gunzip(&packed, want).map_err(|e| {
                    Error::bad(format!("body is not gzip of at most {want} bytes: {e}"))
                })?
            };
            Ok(Box::new(std::io::Cursor::new(out)))
        }
        Some(other) => Err(Error::bad(format!(
            "POST raw compression {other:?}: use lz4 or gzip"
        ))),
    }
}

/// Reads a posted block-aligned volume `bx` of `bpv`-byte voxels from `body` one layer of
/// blocks (a z-slab) at a time, handing each slab's box and bytes to `layer` while the next
/// slab is being received. Fails if the body holds fewer or more bytes than the volume.
pub fn read_slabs(
    body: Box<dyn Read + Send + '_>,
    bx: &VoxelBox,
    bs: [usize; 3],
    bpv: usize,
    what: &str,
    layer: &mut dyn FnMut(&VoxelBox, &[u8]) -> Result<()>,
) -> Result<()> {
    let want = bx.voxels() * bpv;
    let (lo, hi) = bx.block_range(bs);
    let slab_bytes = bx.size[0] * bx.size[1] * bs[2] * bpv;
    let layers = (hi[2] - lo[2] + 1) as usize;
    let mut body = body;
    std::thread::scope(|s| -> Result<()> {
        // Two slab buffers travel between the reader and this thread.
        let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<std::io::Result<Vec<u8>>>(1);
        let (free_tx, free_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
        free_tx.send(Vec::new()).expect("fresh channel");
        free_tx.send(Vec::new()).expect("fresh channel");
        s.spawn(move || {
            for _ in 0..layers {
                let Ok(mut slab) = free_rx.recv() else { return };
                slab.resize(slab_bytes, 0);
                let r = body.read_exact(&mut slab).map(|()| slab);
                let failed = r.is_err();
                if full_tx.send(r).is_err() || failed {
                    return;
                }
            }
            let mut extra = [0u8; 1];
            let r = match body.read(&mut extra) {
                Ok(0) => Ok(Vec::new()),
                Ok(_) => Err(std::io::Error::from(std::io::ErrorKind::InvalidData)),
                Err(e) => Err(e),
            };
            let _ = full_tx.send(r);
        });
        for bz in lo[2]..=hi[2] {
            let slab = full_rx
                .recv()
                .map_err(|_| Error::Internal("body reader stopped".into()))?
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::UnexpectedEof => wrong_length("fewer", bx, what, want),
                    _ => body_error(e),
                })?;
            let slab_box = VoxelBox {
                min: [bx.min[0], bx.min[1], bz as i64 * bs[2] as i64],
                size: [bx.size[0], bx.size[1], bs[2]],
            };
            layer(&slab_box, &slab)?;
            // The reader may have stopped after an error; the next recv reports it.
            let _ = free_tx.send(slab);
        }
        match full_rx.recv() {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                Err(wrong_length("more", bx, what, want))
            }
            Ok(Err(e)) => Err(body_error(e)),
            Err(_) => Err(Error::Internal("body reader stopped".into())),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_gathered_from_a_volume_copy_back_into_it() {
        let bx = VoxelBox::new([-4, 0, 4], [8, 4, 4]).unwrap();
        let vol: Vec<u16> = (0..bx.voxels() as u16).collect();
        let bs = [4, 4, 4];
        let mut out = vec![0u16; vol.len()];
        for c in [[-1, 0, 1], [0, 0, 1]] {
            let mut b = vec![0u16; 64];
            gather_block(&vol, &bx, bs, c, &mut b);
            copy_block(&b, c, bs, &bx, &mut out);
        }
        assert_eq!(out, vol);
        // As bytes, with x scaled by the voxel size, the same cut gives the same bytes.
        let bytes: &[u8] = bytemuck::cast_slice(&vol);
        let (bb, bbs) = bytes_wide(&bx, bs, 2);
        let mut b = vec![0u8; 128];
        gather_block(bytes, &bb, bbs, [0, 0, 1], &mut b);
        let mut w = vec![0u16; 64];
        gather_block(&vol, &bx, bs, [0, 0, 1], &mut w);
        assert_eq!(b, bytemuck::cast_slice::<u16, u8>(&w));
    }

    #[test]
    fn slabs_are_read_in_order_and_wrong_lengths_refused() {
        let bx = VoxelBox::new([0, 0, -2], [2, 2, 4]).unwrap();
        let body: Vec<u8> = (0..16).collect();
        let mut seen = Vec::new();
        read_slabs(
            Box::new(&body[..]),
            &bx,
            [2, 2, 2],
            1,
            "bytes",
            &mut |b, s| {
                seen.push((b.min[2], s.to_vec()));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(
            seen,
            vec![(-2, body[..8].to_vec()), (0, body[8..].to_vec())]
        );
        let short = &body[..15];
        assert!(
            read_slabs(Box::new(short), &bx, [2, 2, 2], 1, "bytes", &mut |_, _| Ok(
                ()
            ))
            .is_err()
        );
        let long = [&body[..], &[0]].concat();
        assert!(
            read_slabs(
                Box::new(&long[..]),
                &bx,
                [2, 2, 2],
                1,
                "bytes",
                &mut |_, _| Ok(())
            )
            .is_err()
        );
    }
}
