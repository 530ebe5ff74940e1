//! The storage wrapper of every stored value: DVID's serialization (spec §2.2), a first byte
//! `compression << 5`, then the payload as is, gzipped, LZ4-compressed, or (grayscale blocks)
//! as a JPEG image.

use std::io::{Read, Write};

use flate2::Compression;
use flate2::bufread::GzDecoder;
use flate2::write::GzEncoder;

use super::jpeg;
use crate::compute::Shape;
use crate::{Error, Result};

/// How stored values are compressed: DVID serialization (spec §2.2), first byte
/// `compression << 5`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    None,
    Gzip(u32),
    Lz4,
    /// Lossy: a gray image `width` pixels wide (a block's x size), at this quality.
    Jpeg {
        quality: u8,
        width: usize,
    },
}

const FORMAT_NONE: u8 = 0x00;
const FORMAT_GZIP: u8 = 0x40;
const FORMAT_LZ4: u8 = 0x80;
const FORMAT_JPEG: u8 = 0xA0;

impl Stored {
    /// From the instance's normalized compression setting (`Settings` normalizes it) for
    /// blocks of shape `block`.
    pub fn from_setting(s: &str, block: Shape) -> Result<Stored> {
        match s.split_once(':') {
            None if s == "jpeg" => Ok(Stored::Jpeg {
                quality: jpeg::DEFAULT_QUALITY,
                width: block.x,
            }),
            Some(("jpeg", q)) => Ok(Stored::Jpeg {
                quality: q.parse().unwrap_or(jpeg::DEFAULT_QUALITY),
                width: block.x,
            }),
            None if s == "gzip" => Ok(Stored::Gzip(6)),
            Some(("gzip", level)) => Ok(Stored::Gzip(level.parse().unwrap_or(6))),
            None if s == "lz4" => Ok(Stored::Lz4),
            None if s == "none" => Ok(Stored::None),
            _ => Err(Error::bad(format!(
                "blocks can be stored with gzip, gzip:N, lz4, jpeg, jpeg:N or none, not {s:?}"
            ))),
        }
    }

    /// `from_setting` for label blocks, which JPEG would destroy.
    pub fn labels_from_setting(s: &str, block: Shape) -> Result<Stored> {
        let stored = Stored::from_setting(s, block)?;
        if stored.is_jpeg() {
            return Err(Error::bad(
                "labels can't be stored as JPEG, which is lossy: use gzip, lz4 or none",
            ));
        }
        Ok(stored)
    }

    pub fn is_jpeg(self) -> bool {
        matches!(self, Stored::Jpeg { .. })
    }

    /// The stored value of `data`; fails only for JPEG, whose image sides are limited.
    pub fn serialize(self, data: &[u8]) -> Result<Vec<u8>> {
        Ok(match self {
            Stored::None => {
                let mut out = Vec::with_capacity(data.len() + 1);
                out.push(FORMAT_NONE);
                out.extend_from_slice(data);
                out
            }
            Stored::Gzip(level) => {
                let mut out = vec![FORMAT_GZIP];
                out.extend_from_slice(&gzip(data, level));
                out
            }
            Stored::Lz4 => lz4_serialize(data),
            Stored::Jpeg { quality, width } => {
                let mut out = vec![FORMAT_JPEG];
                out.extend_from_slice(&jpeg::encode(data, width, false, quality)?);
                out
            }
        })
    }
}

/// The JPEG inside a stored value, when it is one (served as stored, never re-encoded).
pub fn jpeg_payload(stored: &[u8]) -> Option<&[u8]> {
    match stored.split_first() {
        Some((&FORMAT_JPEG, rest)) => Some(rest),
        _ => None,
    }
}

/// A gzip stream as a stored value, passed through as it came.
pub fn wrap_gzip(gz: &[u8]) -> Vec<u8> {
    [&[FORMAT_GZIP][..], gz].concat()
}

/// A stored value as the DVID LZ4 serialization: `0x80 ‖ u32 LE length ‖ LZ4 block`.
pub fn lz4_serialize(data: &[u8]) -> Vec<u8> {
    let mut out = vec![FORMAT_LZ4];
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&lz4_flex::block::compress(data));
    out
}

/// The bytes inside a stored value.
pub fn deserialize(stored: &[u8]) -> Result<Vec<u8>> {
    let corrupt = |what: &str| Error::Internal(format!("stored value: {what}"));
    match stored.split_first() {
        None => Ok(Vec::new()),
        Some((&FORMAT_NONE, rest)) => Ok(rest.to_vec()),
        Some((&FORMAT_GZIP, rest)) => gunzip(rest, usize::MAX).map_err(|_| corrupt("bad gzip")),
        Some((&FORMAT_LZ4, rest)) if rest.len() >= 4 => {
            let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
            // An LZ4 block expands at most 255:1; a larger claim is damage, refused before the
            // claimed size is allocated.
            if len > 255 * (rest.len() - 4) + 16 {
                return Err(corrupt(&format!(
                    "lz4 header claims {len} bytes from {} compressed",
                    rest.len() - 4
                )));
            }
            lz4_flex::block::decompress(&rest[4..], len).map_err(|_| corrupt("bad lz4"))
        }
        Some((&FORMAT_JPEG, rest)) => {
            jpeg::decode_gray(rest, None).map_err(|_| corrupt("bad jpeg"))
        }
        Some((b, _)) => Err(corrupt(&format!("unknown format byte {b:#04x}"))),
    }
}

/// The first `len` bytes inside a stored value (fewer when it holds fewer). A gzip value is
/// inflated only that far, so reading the head of a block (a label table) costs the head's
/// bytes, not the block's.
pub fn head(stored: &[u8], len: usize) -> Result<Vec<u8>> {
    match stored.split_first() {
        Some((&FORMAT_GZIP, rest)) => {
            let mut out = Vec::new();
            GzDecoder::new(rest)
                .take(len as u64)
                .read_to_end(&mut out)
                .map_err(|_| Error::Internal("stored value: bad gzip".into()))?;
            Ok(out)
        }
        _ => {
            let mut all = deserialize(stored)?;
            all.truncate(len);
            Ok(all)
        }
    }
}

/// The bytes inside a stored value of exactly `out.len()` bytes, into `out`: a JPEG is
/// decoded in place, without an intermediate buffer.
pub fn deserialize_into(stored: &[u8], out: &mut [u8]) -> Result<()> {
    if let Some(j) = jpeg_payload(stored) {
        return jpeg::decode_gray_into(j, out)
            .map_err(|_| Error::Internal("stored value: bad jpeg".into()));
    }
    let raw = deserialize(stored)?;
    if raw.len() != out.len() {
        return Err(Error::Internal(format!(
            "a stored value holds {} bytes where {} were expected",
            raw.len(),
            out.len()
        )));
    }
    out.copy_from_slice(&raw);
    Ok(())
}

/// gzip(labels.Block) of a stored block, as `compression=blocks` serves it: the stored bytes
/// themselves when they are gzip.
pub fn gzip_payload(stored: &[u8]) -> Result<Vec<u8>> {
    match stored.split_first() {
        Some((&FORMAT_GZIP, rest)) => Ok(rest.to_vec()),
        _ => Ok(gzip(&deserialize(stored)?, 6)),
    }
}

pub fn gzip(data: &[u8], level: u32) -> Vec<u8> {
    let mut enc = GzEncoder::new(
        Vec::with_capacity(data.len() / 4 + 64),
        Compression::new(level),
    );
    enc.write_all(data).expect("writing to a Vec");
    enc.finish().expect("writing to a Vec")
}

/// Inflates a gzip stream, refusing to produce more than `limit` bytes.
pub fn gunzip(data: &[u8], limit: usize) -> std::io::Result<Vec<u8>> {
    // Guess 4× the input, but never more than the limit allows (a small limit on a large
    // body must not reserve 4× the body).
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).min(limit.saturating_add(1)));
    let read = GzDecoder::new(data)
        .take(limit.saturating_add(1) as u64)
        .read_to_end(&mut out)?;
    if read > limit {
        return Err(std::io::Error::other("inflated data is too large"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializations_round_trip() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        for s in [Stored::None, Stored::Gzip(6), Stored::Lz4] {
            assert_eq!(deserialize(&s.serialize(&data).unwrap()).unwrap(), data);
        }
        assert_eq!(Stored::Gzip(1).serialize(&data).unwrap()[0], 0x40);
        let jpeg = Stored::from_setting("jpeg:95", Shape::new(50, 10, 10)).unwrap();
        let j = jpeg.serialize(&data).unwrap();
        assert_eq!(deserialize(&j).unwrap().len(), data.len());
        assert!(jpeg_payload(&j).is_some());
        assert!(deserialize(&[0x40, 1, 2, 3]).is_err());
        assert!(gunzip(&gzip(&data, 1), 100).is_err());
    }

    #[test]
    fn head_is_the_start_of_every_serialization() {
        let data: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 253) as u8).collect();
        for s in [Stored::None, Stored::Gzip(1), Stored::Gzip(6), Stored::Lz4] {
            let stored = s.serialize(&data).unwrap();
            for len in [0, 1, 16, 4_000, 69_999, 70_000, 1 << 20] {
                let want = &data[..len.min(data.len())];
                assert_eq!(head(&stored, len).unwrap(), want, "{s:?} {len}");
            }
        }
        assert!(head(&[0x40, 1, 2, 3], 2).is_err());
    }
}
