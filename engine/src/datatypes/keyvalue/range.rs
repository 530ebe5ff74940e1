//! Partial reads of one value (spec §4.5 `GET key/<k>`) by DVID's inclusive
//! `byte_start`/`byte_end` query bounds, which are strict. The HTTP `Range` header is
//! `datatype::range`'s.

use std::ops::Range;

use crate::{Error, Result};

/// An inclusive byte range `[start, end]` requested by `byte_start`/`byte_end` (or a protobuf
/// `KeyRange`, or a `{"key","byte_start","byte_end"}` JSON request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    /// A range whose bounds are ordered; `start > end` is a 400.
    pub fn new(start: u64, end: u64) -> Result<Self> {
        if start > end {
            return Err(Error::bad(format!(
                "byte_start ({start}) must not be greater than byte_end ({end})"
            )));
        }
        Ok(ByteRange { start, end })
    }

    /// The slice of a `len`-byte value of `key` this range selects; 400 when `byte_end` is at
    /// or past the end of the value (these bounds are never clamped).
    pub fn slice_of(self, len: usize, key: &str) -> Result<Range<usize>> {
        if self.end >= len as u64 {
            return Err(Error::bad(format!(
                "byte_end ({}) is beyond the {len}-byte value of key {key:?}",
                self.end
            )));
        }
        Ok(self.start as usize..self.end as usize + 1)
    }
}

/// Parses the `byte_start`/`byte_end` query parameters: `None` when neither is given; both
/// must be given, as non-negative integers with `byte_start <= byte_end`.
pub fn query_range(start: Option<&str>, end: Option<&str>) -> Result<Option<ByteRange>> {
    match (start, end) {
        (None, None) => Ok(None),
        (Some(s), Some(e)) => {
            ByteRange::new(parse_bound("byte_start", s)?, parse_bound("byte_end", e)?).map(Some)
        }
        (Some(_), None) => Err(Error::bad(
            "byte_start was given without byte_end: give both or neither",
        )),
        (None, Some(_)) => Err(Error::bad(
            "byte_end was given without byte_start: give both or neither",
        )),
    }
}

fn parse_bound(name: &str, s: &str) -> Result<u64> {
    let t = s.trim();
    match t.parse::<u64>() {
        Ok(v) => Ok(v),
        Err(_) if t.parse::<i64>().is_ok() => {
            Err(Error::bad(format!("{name} must not be negative, got {t}")))
        }
        Err(_) => Err(Error::bad(format!(
            "{name} must be a non-negative integer, got {s:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_bounds() {
        assert_eq!(query_range(None, None).unwrap(), None);
        assert_eq!(
            query_range(Some("2"), Some("5")).unwrap(),
            Some(ByteRange { start: 2, end: 5 })
        );
        assert_eq!(
            query_range(Some("3"), Some("3")).unwrap(),
            Some(ByteRange { start: 3, end: 3 })
        );
        for (s, e, needle) in [
            (Some("1"), None, "without byte_end"),
            (None, Some("1"), "without byte_start"),
            (Some("5"), Some("2"), "greater than"),
            (Some("-1"), Some("2"), "negative"),
            (Some("0"), Some("-2"), "negative"),
            (Some("x"), Some("2"), "non-negative integer"),
            (Some(""), Some("2"), "non-negative integer"),
        ] {
            let err = query_range(s, e).unwrap_err();
            assert_eq!(err.status(), 400);
            assert!(err.to_string().contains(needle), "{s:?} {e:?}: {err}");
        }
    }

    #[test]
    fn byte_range_slices_strictly() {
        let r = ByteRange::new(1, 3).unwrap();
        assert_eq!(r.slice_of(4, "k").unwrap(), 1..4);
        assert_eq!(r.slice_of(10, "k").unwrap(), 1..4);
        let err = r.slice_of(3, "k").unwrap_err();
        assert_eq!(err.status(), 400);
        assert!(err.to_string().contains("\"k\""), "{err}");
        assert!(ByteRange::new(0, 0).unwrap().slice_of(0, "k").is_err());
        assert!(ByteRange::new(4, 3).is_err());
    }
}
