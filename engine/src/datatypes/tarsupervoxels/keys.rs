//! Type-specific keys (TKeys) of tarsupervoxels data and supervoxel ids named in requests.
//!
//! DVID's TKey is `133 ‖ "<sv>.<ext>"` (the file name as ASCII). Tessera's is `133 ‖ sv u64 BE`:
//! the extension is the instance's and never varies, and big-endian ids keep key order equal to
//! supervoxel order.

use crate::{Error, Result};

/// The TKey class byte of supervoxel blobs (DVID's `keyStandard` for tarsupervoxels).
pub const CLASS: u8 = 133;

/// The TKey of supervoxel `sv`'s blob.
pub fn tkey(sv: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = CLASS;
    k[1..].copy_from_slice(&sv.to_be_bytes());
    k
}

/// The supervoxel of a blob TKey; `None` for a TKey of another class or length.
pub fn decode_tkey(tkey: &[u8]) -> Option<u64> {
    match tkey.split_first() {
        Some((&CLASS, rest)) => rest.try_into().ok().map(u64::from_be_bytes),
        _ => None,
    }
}

/// A supervoxel or body id: a positive decimal 64-bit integer (0 is the background, which
/// holds no data). `what` names it in the error ("supervoxel", "body").
pub fn parse_id(s: &str, what: &str) -> Result<u64> {
    let digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match s.parse::<u64>() {
        Ok(0) if digits => Err(Error::bad(format!(
            "{what} 0 is the background and can't have data"
        ))),
        Ok(id) if digits => Ok(id),
        _ => Err(Error::bad(format!(
            "{s:?} is not a {what} id (a positive 64-bit integer)"
        ))),
    }
}

/// The id in the one path segment after `keyword/` (a trailing slash is tolerated).
pub fn id_from_path(keyword: &str, path: &[String], what: &str) -> Result<u64> {
    match path {
        [id] | [id, _] if path.get(1).is_none_or(|s| s.is_empty()) => parse_id(id, what),
        _ => Err(Error::bad(format!(
            "expected one {what} id after \"{keyword}/\", e.g. {keyword}/18473948"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tkeys_round_trip_and_order_by_id() {
        assert_eq!(tkey(1), [133, 0, 0, 0, 0, 0, 0, 0, 1]);
        for sv in [1, 255, 256, 1 << 40, u64::MAX] {
            assert_eq!(decode_tkey(&tkey(sv)), Some(sv));
        }
        assert!(tkey(9) < tkey(10));
        assert!(tkey(255) < tkey(256));
        assert!(tkey(u64::MAX - 1) < tkey(u64::MAX));
        assert_eq!(decode_tkey(&[134, 0, 0, 0, 0, 0, 0, 0, 1]), None);
        assert_eq!(decode_tkey(&[133, 1]), None);
        assert_eq!(decode_tkey(&[]), None);
    }

    #[test]
    fn ids() {
        assert_eq!(parse_id("18473948", "supervoxel").unwrap(), 18473948);
        assert_eq!(parse_id("007", "supervoxel").unwrap(), 7);
        assert_eq!(parse_id("18446744073709551615", "body").unwrap(), u64::MAX);
        for bad in [
            "",
            "0",
            "-1",
            "+1",
            "1.5",
            "abc",
            " 1",
            "18446744073709551616",
        ] {
            let e = parse_id(bad, "supervoxel").unwrap_err();
            assert!(matches!(e, Error::BadRequest(_)), "{bad:?}");
            assert!(e.to_string().contains("supervoxel"), "{e}");
        }
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            id_from_path("supervoxel", &p(&["5"]), "supervoxel").unwrap(),
            5
        );
        assert_eq!(
            id_from_path("supervoxel", &p(&["5", ""]), "supervoxel").unwrap(),
            5
        );
        assert!(id_from_path("supervoxel", &p(&[]), "supervoxel").is_err());
        assert!(id_from_path("supervoxel", &p(&["5", "6"]), "supervoxel").is_err());
        assert!(id_from_path("tarfile", &p(&[""]), "body").is_err());
    }
}
