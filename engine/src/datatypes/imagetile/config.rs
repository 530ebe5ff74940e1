//! An imagetile instance's creation settings (DVID's): `Format` (png, the default; jpg; lz4),
//! `Placeholder`, and `Source`, the uint8blk tiles are generated from when the instance syncs
//! to none.

use serde::{Deserialize, Serialize};

use crate::datatype::Settings;
use crate::{Error, Result};

/// How tiles are stored and served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Format {
    /// Stored and served as gray PNG.
    Png,
    /// Stored and served as JPEG.
    Jpg,
    /// Stored as LZ4-compressed pixels, served as PNG (encoded at request time).
    Lz4,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Png => "png",
            Format::Jpg => "jpg",
            Format::Lz4 => "lz4",
        }
    }

    /// DVID's `Encoding` number in `GET info` (its Format enum: lz4 0, png 1, jpg 2).
    pub fn dvid_code(self) -> u8 {
        match self {
            Format::Lz4 => 0,
            Format::Png => 1,
            Format::Jpg => 2,
        }
    }

    /// The content type tiles are served with.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Png | Format::Lz4 => "image/png",
            Format::Jpg => "image/jpeg",
        }
    }

    /// The compression DVID implies for the format (a conflicting `Compression` is refused).
    fn compression(self) -> &'static str {
        match self {
            Format::Lz4 => "lz4",
            Format::Png | Format::Jpg => "none",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    pub format: Format,
    /// Missing tiles of an instance without a source are served as a patterned placeholder
    /// rather than blank.
    pub placeholder: bool,
    /// The uint8blk named by the `Source` setting; a sync, when there is one, wins.
    pub source: Option<String>,
}

/// JPEG quality of generated tiles (DVID's default).
pub const JPEG_QUALITY: u8 = crate::block::jpeg::DEFAULT_QUALITY;

impl Config {
    pub fn from_settings(s: &Settings) -> Result<Config> {
        let format = match s.get("Format").map(str::to_ascii_lowercase).as_deref() {
            None | Some("png") => Format::Png,
            Some("jpg" | "jpeg") => Format::Jpg,
            Some("lz4") => Format::Lz4,
            Some(other) => {
                return Err(Error::bad(format!(
                    "Format {other:?} is not a tile format: use png (the default), jpg or lz4"
                )));
            }
        };
        if let Some(c) = s.get("Compression")
            && !c.eq_ignore_ascii_case(format.compression())
        {
            return Err(Error::bad(format!(
                "Compression {c:?} conflicts with Format {:?}, whose tiles are stored with {:?}: leave Compression out",
                format.name(),
                format.compression()
            )));
        }
        let placeholder = s.bool("Placeholder")?.unwrap_or(false);
        let source = s
            .get("Source")
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(String::from);
        Ok(Config {
            format,
            placeholder,
            source,
        })
    }

    pub fn from_json(v: &serde_json::Value) -> Result<Config> {
        serde_json::from_value(v.clone())
            .map_err(|e| Error::Internal(format!("bad imagetile configuration: {e}")))
    }
}
