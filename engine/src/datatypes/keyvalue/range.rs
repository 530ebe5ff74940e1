//! Partial reads of one value (spec §4.5 `GET key/<k>`): DVID's inclusive `byte_start`/`byte_end`
//! query bounds, which are strict, and the HTTP `Range` header, which follows HTTP's lenient
//! rules (a single range only; anything else is ignored and the whole value is sent).

use std::ops::Range;

use bytes::Bytes;

use crate::datatype::DataResponse;
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

/// A single range from an HTTP `Range: bytes=...` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpRange {
    /// `bytes=a-b`
    Closed { start: u64, end: u64 },
    /// `bytes=a-`
    From(u64),
    /// `bytes=-n`: the last `n` bytes.
    Suffix(u64),
}

/// Parses a `Range` header. Returns `None` for anything but one well-formed byte range: other
/// units, several ranges, or malformed syntax are ignored, as HTTP allows.
pub fn parse_range_header(value: &str) -> Option<HttpRange> {
    let (unit, spec) = value.trim().split_once('=')?;
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return None;
    }
    let (first, last) = spec.trim().split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    match (first.is_empty(), last.is_empty()) {
        (true, true) => None,
        (true, false) => Some(HttpRange::Suffix(digits(last)?)),
        (false, true) => Some(HttpRange::From(digits(first)?)),
        (false, false) => {
            let (start, end) = (digits(first)?, digits(last)?);
            (start <= end).then_some(HttpRange::Closed { start, end })
        }
    }
}

/// A run of ASCII digits as a number (saturating, so absurdly large positions stay
/// unsatisfiable instead of becoming malformed).
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u64, |acc, b| {
        acc.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

impl HttpRange {
    /// The inclusive `(first, last)` byte positions this range selects in a `len`-byte value,
    /// with the end clamped to the value; a range starting at or past the end (or any range of
    /// an empty value, or `-0`) is unsatisfiable (416).
    pub fn resolve(self, len: u64) -> Result<(u64, u64)> {
        let unsatisfiable = Err(Error::RangeNotSatisfiable { len });
        match self {
            HttpRange::Closed { start, .. } | HttpRange::From(start) if start >= len => {
                unsatisfiable
            }
            HttpRange::Closed { start, end } => Ok((start, end.min(len - 1))),
            HttpRange::From(start) => Ok((start, len - 1)),
            HttpRange::Suffix(n) if n == 0 || len == 0 => unsatisfiable,
            HttpRange::Suffix(n) => Ok((len - n.min(len), len - 1)),
        }
    }
}

/// `value` as the answer to a GET carrying `header` (a `Range` header, if any): 206 with
/// `Content-Range` for one satisfiable byte range, 416 for an unsatisfiable one, else the whole
/// value; byte ranges are advertised either way. Also serves the precomputed view's mesh files.
pub fn ranged(value: Bytes, header: Option<&str>) -> Result<DataResponse> {
    let whole = |v| DataResponse::octets(v).with_header("Accept-Ranges", "bytes");
    let Some(r) = header.and_then(parse_range_header) else {
        return Ok(whole(value));
    };
    let len = value.len() as u64;
    let (first, last) = r.resolve(len)?;
    Ok(whole(value.slice(first as usize..last as usize + 1))
        .with_status(206)
        .with_header("Content-Range", content_range(first, last, len)))
}

/// The `Content-Range` value of a 206 answer.
pub fn content_range(first: u64, last: u64, len: u64) -> String {
    format!("bytes {first}-{last}/{len}")
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

    #[test]
    fn range_header_forms() {
        use HttpRange::*;
        assert_eq!(
            parse_range_header("bytes=0-4"),
            Some(Closed { start: 0, end: 4 })
        );
        assert_eq!(parse_range_header("bytes=7-"), Some(From(7)));
        assert_eq!(parse_range_header("bytes=-3"), Some(Suffix(3)));
        assert_eq!(
            parse_range_header(" Bytes = 1 - 2 "),
            Some(Closed { start: 1, end: 2 })
        );
        assert_eq!(
            parse_range_header("bytes=99999999999999999999999-"),
            Some(From(u64::MAX))
        );
    }

    #[test]
    fn range_header_ignored_forms() {
        for h in [
            "",
            "bytes",
            "bytes=",
            "bytes=-",
            "bytes=a-b",
            "bytes=1-x",
            "bytes=5-2",
            "bytes=0-1,3-4",
            "bytes=0-1,",
            "items=0-4",
            "bytes=+1-2",
            "bytes=1--2",
            "0-4",
        ] {
            assert_eq!(parse_range_header(h), None, "{h:?}");
        }
    }

    #[test]
    fn range_resolution() {
        use HttpRange::*;
        assert_eq!(Closed { start: 0, end: 4 }.resolve(10).unwrap(), (0, 4));
        assert_eq!(Closed { start: 2, end: 100 }.resolve(10).unwrap(), (2, 9));
        assert_eq!(From(9).resolve(10).unwrap(), (9, 9));
        assert_eq!(Suffix(3).resolve(10).unwrap(), (7, 9));
        assert_eq!(Suffix(30).resolve(10).unwrap(), (0, 9));
        for (r, len) in [
            (Closed { start: 10, end: 12 }, 10),
            (From(10), 10),
            (From(0), 0),
            (Suffix(0), 10),
            (Suffix(5), 0),
        ] {
            match r.resolve(len) {
                Err(Error::RangeNotSatisfiable { len: l }) => assert_eq!(l, len),
                other => panic!("{r:?} on {len}: {other:?}"),
            }
        }
        assert_eq!(content_range(7, 9, 10), "bytes 7-9/10");
    }
}
