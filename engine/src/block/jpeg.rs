//! JPEG for grayscale blocks and 2-D images, by libjpeg-turbo. A block of shape (x, y, z) is
//! one gray image `x` pixels wide and `y·z` rows tall (x fastest, then y, then z), the layout
//! DVID stores and neuroglancer decodes.

use std::cell::RefCell;

use turbojpeg::{Compressor, Decompressor, Image, PixelFormat, Subsamp};

use crate::{Error, Result};

/// JPEG's largest side.
pub const MAX_SIDE: usize = u16::MAX as usize;

/// Largest image decoded (1 GiB of gray pixels).
const MAX_PIXELS: usize = 1 << 30;

/// DVID's default JPEG quality.
pub const DEFAULT_QUALITY: u8 = 80;

thread_local! {
    // A codec handle per thread: creating one costs more than coding a small block.
    static COMPRESSOR: RefCell<Option<Compressor>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<Decompressor>> = const { RefCell::new(None) };
}

fn codec_error(what: &str, e: turbojpeg::Error) -> Error {
    Error::Internal(format!("jpeg {what}: {e}"))
}

/// Encodes `pixels` (gray, or RGBA when `rgba`) as a `width`-wide JPEG.
pub fn encode(pixels: &[u8], width: usize, rgba: bool, quality: u8) -> Result<Vec<u8>> {
    let bpp = if rgba { 4 } else { 1 };
    let height = pixels.len() / (width * bpp).max(1);
    if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
        return Err(Error::bad(format!(
            "a {width}×{height} image can't be a JPEG: each side must be 1 to {MAX_SIDE} pixels"
        )));
    }
    let image = Image {
        pixels: &pixels[..width * height * bpp],
        width,
        pitch: width * bpp,
        height,
        format: if rgba {
            PixelFormat::RGBA
        } else {
            PixelFormat::GRAY
        },
    };
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            *c = Some(Compressor::new().map_err(|e| codec_error("encoder", e))?);
        }
        let c = c.as_mut().expect("just made");
        c.set_quality(i32::from(quality.clamp(1, 100)));
        c.set_subsamp(if rgba { Subsamp::Sub2x2 } else { Subsamp::Gray });
        c.compress_to_vec(image)
            .map_err(|e| codec_error("encoding", e))
    })
}

/// Decodes a JPEG into gray pixels, refusing one whose pixel count isn't `expect` when given.
pub fn decode_gray(jpeg: &[u8], expect: Option<usize>) -> Result<Vec<u8>> {
    Ok(decode_gray_image(jpeg, expect)?.2)
}

/// Decodes a gray JPEG of exactly `out.len()` pixels into `out`.
pub fn decode_gray_into(jpeg: &[u8], out: &mut [u8]) -> Result<()> {
    with_decoder(|d| {
        let header = d.read_header(jpeg).map_err(undecodable)?;
        if header.width * header.height != out.len() {
            return Err(Error::bad(format!(
                "the JPEG holds {} pixels where {} were expected",
                header.width * header.height,
                out.len()
            )));
        }
        let image = Image {
            pixels: out,
            width: header.width,
            pitch: header.width,
            height: header.height,
            format: PixelFormat::GRAY,
        };
        d.decompress(jpeg, image).map_err(undecodable)
    })
}

fn undecodable(e: turbojpeg::Error) -> Error {
    Error::bad(format!("not a decodable JPEG: {e}"))
}

/// Runs `f` with this thread's decoder.
fn with_decoder<T>(f: impl FnOnce(&mut Decompressor) -> Result<T>) -> Result<T> {
    DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(Decompressor::new().map_err(|e| codec_error("decoder", e))?);
        }
        f(d.as_mut().expect("just made"))
    })
}

/// [`decode_gray`], with the image's width and height.
pub fn decode_gray_image(jpeg: &[u8], expect: Option<usize>) -> Result<(usize, usize, Vec<u8>)> {
    let header = with_decoder(|d| d.read_header(jpeg).map_err(undecodable))?;
    let n = header.width * header.height;
    if n > MAX_PIXELS {
        return Err(Error::bad(format!(
            "a {}×{} JPEG is larger than the {MAX_PIXELS} pixels accepted",
            header.width, header.height
        )));
    }
    if let Some(want) = expect.filter(|want| *want != n) {
        return Err(Error::bad(format!(
            "the JPEG holds {n} pixels where {want} were expected"
        )));
    }
    let mut pixels = vec![0u8; n];
    decode_gray_into(jpeg, &mut pixels)?;
    Ok((header.width, header.height, pixels))
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
