//! The block record stream of `blocks`, `specificblocks` and `subvolblocks` (spec §5.3):
//! `i32 LE bx, by, bz, nbytes` then `nbytes` of payload, repeated; and the request pieces that
//! name blocks (`blocks=x,y,z,…`, block-aligned boxes).

use super::geom::{BlockCoord, VoxelBox, check_block_coord, parse_point, parse_size};
use crate::{Error, Result};

/// Most blocks one request may list.
pub const MAX_LISTED: usize = 1 << 20;

/// Appends one record to `out`.
pub fn put(out: &mut Vec<u8>, c: BlockCoord, payload: &[u8]) {
    for v in c {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&(payload.len() as i32).to_le_bytes());
    out.extend_from_slice(payload);
}

/// The records of a body: block coordinates and non-empty payloads.
pub fn parse(body: &[u8]) -> Result<Vec<(BlockCoord, &[u8])>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < body.len() {
        if body.len() - at < 16 {
            return Err(Error::bad(format!(
                "block record at byte {at} is truncated: {} bytes left, a record header is 16",
                body.len() - at
            )));
        }
        let int = |i: usize| {
            i32::from_le_bytes(
                body[at + 4 * i..at + 4 * i + 4]
                    .try_into()
                    .expect("4 bytes"),
            )
        };
        let c = [int(0), int(1), int(2)];
        let n = int(3);
        if n <= 0 {
            return Err(Error::bad(format!(
                "block {c:?} has a record length of {n}: payloads can't be empty"
            )));
        }
        let n = n as usize;
        if body.len() - at - 16 < n {
            return Err(Error::bad(format!(
                "block {c:?} claims {n} payload bytes but only {} remain",
                body.len() - at - 16
            )));
        }
        check_block_coord(c)?;
        out.push((c, &body[at + 16..at + 16 + n]));
        at += 16 + n;
    }
    Ok(out)
}

/// `blocks=x1,y1,z1,x2,…` → block coordinates, in the order listed.
pub fn parse_list(list: &str) -> Result<Vec<BlockCoord>> {
    let nums: Vec<i32> = list
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.trim()
                .parse::<i32>()
                .map_err(|_| Error::bad(format!("blocks: {s:?} is not a 32-bit integer")))
        })
        .collect::<Result<_>>()?;
    if !nums.len().is_multiple_of(3) {
        return Err(Error::bad("blocks= must list x,y,z triples"));
    }
    if nums.len() / 3 > MAX_LISTED {
        return Err(Error::bad(format!(
            "at most {MAX_LISTED} blocks per request"
        )));
    }
    let coords: Vec<BlockCoord> = nums.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect();
    for c in &coords {
        check_block_coord(*c)?;
    }
    Ok(coords)
}

/// `<size>/<offset>` naming a block-aligned box of blocks of size `bs`.
pub fn aligned_box(path: &[String], bs: [usize; 3], keyword: &str) -> Result<VoxelBox> {
    let [size, offset] = path else {
        return Err(Error::bad(format!(
            "expected {keyword}/<size>/<offset>, e.g. {keyword}/128_128_64/0_0_0"
        )));
    };
    let s = parse_size(size, 3, "size")?;
    let bx = VoxelBox::new(parse_point(offset, "offset")?, [s[0], s[1], s[2]])?;
    if !bx.is_block_aligned(bs) {
        return Err(Error::bad(format!(
            "{keyword} needs a block-aligned box: offset {:?} and size {:?} must be multiples of {bs:?}",
            bx.min, bx.size
        )));
    }
    bx.check_storable(bs)?;
    Ok(bx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_bad_ones_are_refused() {
        let mut body = Vec::new();
        put(&mut body, [1, -2, 3], b"abc");
        put(&mut body, [0, 0, 0], b"z");
        let r = parse(&body).unwrap();
        assert_eq!(r, vec![([1, -2, 3], &b"abc"[..]), ([0, 0, 0], &b"z"[..])]);
        assert!(parse(&body[..body.len() - 1]).is_err());
        assert!(parse(&body[..10]).is_err());
        let mut empty = Vec::new();
        put(&mut empty, [0, 0, 0], b"");
        assert!(parse(&empty).is_err());
        assert_eq!(
            parse_list("1,2,3,-4,5,6").unwrap(),
            vec![[1, 2, 3], [-4, 5, 6]]
        );
        assert!(parse_list("1,2").is_err());
        assert!(parse_list("1,x,3").is_err());
    }
}
