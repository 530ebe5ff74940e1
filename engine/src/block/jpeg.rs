//! JPEG for grayscale blocks and 2-D images. A block of shape (x, y, z) is one gray image
//! `x` pixels wide and `y·z` rows tall (x fastest, then y, then z), the layout DVID stores and
//! neuroglancer decodes.

use jpeg_encoder::{ColorType, Encoder};
use zune_jpeg::JpegDecoder;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;

use crate::{Error, Result};

/// JPEG's largest side.
pub const MAX_SIDE: usize = u16::MAX as usize;

/// DVID's default JPEG quality.
pub const DEFAULT_QUALITY: u8 = 80;

/// Encodes `pixels` (gray, or RGBA when `rgba`) as a `width`-wide JPEG.
pub fn encode(pixels: &[u8], width: usize, rgba: bool, quality: u8) -> Result<Vec<u8>> {
    let bpp = if rgba { 4 } else { 1 };
    let height = pixels.len() / (width * bpp).max(1);
    if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
        return Err(Error::bad(format!(
            "a {width}×{height} image can't be a JPEG: each side must be 1 to {MAX_SIDE} pixels"
        )));
    }
    let mut out = Vec::with_capacity(pixels.len() / 4 + 1024);
    let color = if rgba {
        ColorType::Rgba
    } else {
        ColorType::Luma
    };
    Encoder::new(&mut out, quality.clamp(1, 100))
        .encode(pixels, width as u16, height as u16, color)
        .map_err(|e| Error::Internal(format!("jpeg encoding: {e}")))?;
    Ok(out)
}

/// Decodes a JPEG into gray pixels, refusing one whose pixel count isn't `expect` when given.
pub fn decode_gray(jpeg: &[u8], expect: Option<usize>) -> Result<Vec<u8>> {
    let options = DecoderOptions::default()
        .jpeg_set_out_colorspace(ColorSpace::Luma)
        .set_max_width(MAX_SIDE)
        .set_max_height(MAX_SIDE);
    let mut dec = JpegDecoder::new_with_options(jpeg, options);
    let pixels = dec
        .decode()
        .map_err(|e| Error::bad(format!("not a decodable JPEG: {e:?}")))?;
    if let Some(n) = expect.filter(|n| *n != pixels.len()) {
        return Err(Error::bad(format!(
            "the JPEG holds {} pixels where {n} were expected",
            pixels.len()
        )));
    }
    Ok(pixels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gray_blocks_round_trip_within_jpeg_error() {
        // A smooth gradient, as EM images mostly are: JPEG at quality 90 stays close.
        let (w, h) = (64usize, 64 * 64);
        let px: Vec<u8> = (0..w * h)
            .map(|i| ((i % w) * 2 + (i / w) % 64) as u8)
            .collect();
        let j = encode(&px, w, false, 90).unwrap();
        assert!(j.len() < px.len() / 2);
        let back = decode_gray(&j, Some(px.len())).unwrap();
        let mse: f64 = px
            .iter()
            .zip(&back)
            .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
            .sum::<f64>()
            / px.len() as f64;
        let psnr = 10.0 * (255.0f64 * 255.0 / mse.max(1e-9)).log10();
        assert!(psnr > 35.0, "psnr {psnr}");
        assert!(decode_gray(&j, Some(5)).is_err());
        assert!(decode_gray(b"not a jpeg", None).is_err());
        assert!(encode(&px, 0, false, 90).is_err());
    }
}
