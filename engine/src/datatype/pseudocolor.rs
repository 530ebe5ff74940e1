//! DVID's `pseudocolor` slices of labels (labelblk, labelarray): each label hashed to a
//! colour, served as an 8-bit RGBA PNG.

use crate::block::geom::VoxelBox;
use crate::block::volume::{Dims, parse_geometry};
use crate::datatype::{DataRequest, DataResponse};
use crate::{Error, Result};

/// MurmurHash3 (x86, 32-bit, seed 0) of whole 4-byte words.
fn murmur3(data: &[u8]) -> u32 {
    let (c1, c2) = (0xcc9e_2d51u32, 0x1b87_3593u32);
    let mut h = 0u32;
    for chunk in data.chunks_exact(4) {
        let mut k = u32::from_le_bytes(chunk.try_into().expect("4 bytes"));
        k = k.wrapping_mul(c1).rotate_left(15).wrapping_mul(c2);
        h ^= k;
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    h ^= data.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// DVID's pseudocolor: the MurmurHash3 of the label's 8 little-endian bytes, its big-endian
/// bytes as red, green, blue; alpha 255.
pub fn color(label: u64) -> [u8; 4] {
    let b = murmur3(&label.to_le_bytes()).to_be_bytes();
    [b[0], b[1], b[2], 255]
}

/// The slice a `pseudocolor/<dims>/<size>/<offset>[/png]` request names: its box and the
/// two axes of the image.
pub fn slice(req: &DataRequest) -> Result<(VoxelBox, usize, usize)> {
    let (dims, bx) = parse_geometry(&req.path)?;
    let Dims::Slice(a, b) = dims else {
        return Err(Error::bad("pseudocolor serves 2-D slices only"));
    };
    if let Some(f) = req.path.get(3).filter(|f| *f != "png") {
        return Err(Error::bad(format!("pseudocolor images are PNG, not {f:?}")));
    }
    Ok((bx, a, b))
}

/// A `w`×`h` slice of labels as DVID's pseudocolor PNG (8-bit RGBA).
pub fn png(labels: &[u64], w: usize, h: usize) -> Result<DataResponse> {
    let rgba: Vec<u8> = labels.iter().flat_map(|l| color(*l)).collect();
    let (Ok(w), Ok(h)) = (u32::try_from(w), u32::try_from(h)) else {
        return Err(Error::bad("the slice is too large for a PNG"));
    };
    let mut out = Vec::new();
    let png_err = |e: png::EncodingError| Error::Internal(format!("png: {e}"));
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Rgba);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().map_err(png_err)?;
    writer.write_image_data(&rgba).map_err(png_err)?;
    writer.finish().map_err(png_err)?;
    Ok(DataResponse::bytes("image/png", out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur3_matches_published_vectors() {
        assert_eq!(murmur3(b""), 0);
        assert_eq!(murmur3(&[0, 0, 0, 0]), 0x2362_f9de);
        assert_eq!(murmur3(b"test"), 0xba6b_d213);
        let h = murmur3(&7u64.to_le_bytes()).to_be_bytes();
        assert_eq!(color(7), [h[0], h[1], h[2], 255]);
        assert_ne!(color(1), color(2));
    }
}
