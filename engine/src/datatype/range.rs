//! HTTP byte ranges of a response (`Range: bytes=…`), with HTTP's lenient rules: a single
//! range only; anything else is ignored and the whole value is sent. keyvalue values and the
//! precomputed view's mesh data are served this way.

use bytes::Bytes;

use super::DataResponse;
use crate::{Error, Result};

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
/// value; byte ranges are advertised either way.
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
