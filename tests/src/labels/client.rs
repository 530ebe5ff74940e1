//! Payload codings and block stream records (spec §5.3), and request helpers for a labelmap
//! instance on a test server.

use std::io::{Read, Write};

use serde_json::Value;

use super::block::decode_block;
use super::volume::{Coord, Volume};
use crate::{Response, Server};

/// gzip of `data` (default level).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("gzip write");
    e.finish().expect("gzip finish")
}

/// Inflates one gzip stream; an error when `data` is not gzip or has trailing bytes.
pub fn gunzip(data: &[u8]) -> Result<Vec<u8>, String> {
    if data.len() < 2 || data[0] != 0x1f || data[1] != 0x8b {
        return Err(format!(
            "not gzip (first bytes {:02x?})",
            &data[..data.len().min(4)]
        ));
    }
    let mut d = flate2::read::GzDecoder::new(data);
    let mut out = Vec::new();
    d.read_to_end(&mut out)
        .map_err(|e| format!("gunzip: {e}"))?;
    Ok(out)
}

/// Decompresses a raw LZ4 block (no size prefix) that must inflate to exactly `len` bytes.
pub fn lz4_decompress(data: &[u8], len: usize) -> Result<Vec<u8>, String> {
    let out = lz4_flex::block::decompress(data, len).map_err(|e| format!("lz4: {e}"))?;
    if out.len() != len {
        return Err(format!("lz4 inflated to {} bytes, want {len}", out.len()));
    }
    Ok(out)
}

/// Decompresses a raw LZ4 block (no size prefix) of unknown size, at most `max` bytes.
pub fn lz4_decompress_max(data: &[u8], max: usize) -> Result<Vec<u8>, String> {
    lz4_flex::block::decompress(data, max).map_err(|e| format!("lz4: {e}"))
}

/// The instance settings the labelmap tests use: 64³ blocks, 8 nm isotropic voxels, indexed
/// labels, and `MaxDownresLevel` = `max_downres` (all values are strings, as DVID clients send).
pub fn standard_settings(max_downres: u32) -> Value {
    serde_json::json!({
        "BlockSize": "64,64,64",
        "VoxelSize": "8,8,8",
        "VoxelUnits": "nanometers",
        "IndexedLabels": "true",
        "MaxDownresLevel": max_downres.to_string(),
    })
}

/// Parses a block stream: repeated `i32 bx, by, bz, i32 nbytes, payload` (all LE, block
/// coordinates). Panics on a truncated or negative-length record.
#[track_caller]
pub fn block_records(bytes: &[u8]) -> Vec<(Coord, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0;
    let i32_at = |at: usize| i32::from_le_bytes(bytes[at..at + 4].try_into().expect("4"));
    while at < bytes.len() {
        assert!(
            bytes.len() - at >= 16,
            "block stream: truncated record header at offset {at} of {}",
            bytes.len()
        );
        let c = [i32_at(at), i32_at(at + 4), i32_at(at + 8)];
        let n = i32_at(at + 12);
        at += 16;
        assert!(
            n >= 0 && bytes.len() - at >= n as usize,
            "block stream: record for block {c:?} says {n} bytes, {} left",
            bytes.len() - at
        );
        out.push((c, bytes[at..at + n as usize].to_vec()));
        at += n as usize;
    }
    out
}

/// Serializes block records (the body of `POST blocks` / `ingest-supervoxels`).
pub fn records_body(records: &[(Coord, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (c, payload) in records {
        for v in c {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&(payload.len() as i32).to_le_bytes());
        out.extend_from_slice(payload);
    }
    out
}

fn xyz(c: Coord) -> String {
    format!("{}_{}_{}", c[0], c[1], c[2])
}

fn dims(s: [usize; 3]) -> String {
    format!("{}_{}_{}", s[0], s[1], s[2])
}

/// One labelmap instance at one version of a test server.
pub struct Seg<'a> {
    pub srv: &'a Server,
    pub uuid: String,
    pub name: String,
    /// The instance's block size (voxels per axis).
    pub bs: [usize; 3],
}

impl<'a> Seg<'a> {
    /// The existing labelmap instance `name` at `uuid`, with the default 64³ blocks.
    pub fn open(srv: &'a Server, uuid: &str, name: &str) -> Seg<'a> {
        Seg {
            srv,
            uuid: uuid.to_string(),
            name: name.to_string(),
            bs: [64; 3],
        }
    }

    /// Creates a labelmap instance named `name` with these string settings (`{}` for defaults;
    /// a `BlockSize` setting is parsed into `bs`). Asserts 200.
    #[track_caller]
    pub fn create(srv: &'a Server, uuid: &str, name: &str, settings: &Value) -> Seg<'a> {
        Seg::create_typed(srv, uuid, "labelmap", name, settings)
    }

    /// `create` for another label type (`labelarray`, `labelblk`) served through the same
    /// endpoints.
    #[track_caller]
    pub fn create_typed(
        srv: &'a Server,
        uuid: &str,
        typename: &str,
        name: &str,
        settings: &Value,
    ) -> Seg<'a> {
        srv.create_instance_with(uuid, typename, name, settings);
        let bs = match settings.get("BlockSize").and_then(Value::as_str) {
            Some(s) => {
                let v: Vec<usize> = s
                    .split(',')
                    .map(|p| p.trim().parse().expect("BlockSize"))
                    .collect();
                [v[0], v[1], v[2]]
            }
            None => [64; 3],
        };
        Seg {
            bs,
            ..Seg::open(srv, uuid, name)
        }
    }

    /// The same instance seen at another version.
    pub fn at(&self, uuid: &str) -> Seg<'a> {
        Seg {
            srv: self.srv,
            uuid: uuid.to_string(),
            name: self.name.clone(),
            bs: self.bs,
        }
    }

    /// `/api/node/<uuid>/<name>/<rest>`.
    pub fn path(&self, rest: &str) -> String {
        format!("/api/node/{}/{}/{rest}", self.uuid, self.name)
    }

    pub fn get(&self, rest: &str) -> Response {
        self.srv.get(&self.path(rest))
    }

    pub fn get_with_body(&self, rest: &str, body: impl Into<Vec<u8>>) -> Response {
        self.srv.get_with_body(&self.path(rest), body)
    }

    pub fn head(&self, rest: &str) -> Response {
        self.srv.head(&self.path(rest))
    }

    pub fn post(&self, rest: &str, body: impl Into<Vec<u8>>) -> Response {
        self.srv.post(&self.path(rest), body)
    }

    pub fn post_empty(&self, rest: &str) -> Response {
        self.srv.post_empty(&self.path(rest))
    }

    /// `GET info` → JSON.
    #[track_caller]
    pub fn info(&self) -> Value {
        self.get("info").expect(200).json()
    }

    /// `POST raw/0_1_2/<size>/<origin>[?query]` with the volume's bytes.
    pub fn post_raw(&self, vol: &Volume, query: &str) -> Response {
        self.post(
            &with_query(
                &format!("raw/0_1_2/{}/{}", dims(vol.size), xyz(vol.origin)),
                query,
            ),
            vol.to_le_bytes(),
        )
    }

    /// `POST raw` of the volume; asserts 200.
    #[track_caller]
    pub fn write(&self, vol: &Volume) {
        self.post_raw(vol, "").expect(200);
    }

    /// `GET raw/0_1_2/<size>/<offset>[?query]` (uncompressed) as a volume; asserts 200.
    #[track_caller]
    pub fn raw(&self, offset: Coord, size: [usize; 3], query: &str) -> Volume {
        let r = self
            .get(&with_query(
                &format!("raw/0_1_2/{}/{}", dims(size), xyz(offset)),
                query,
            ))
            .expect(200);
        Volume::from_le_bytes(offset, size, &r.body)
    }

    /// `GET label/<x_y_z>[?query]` → the label.
    #[track_caller]
    pub fn label_at(&self, p: Coord, query: &str) -> u64 {
        let v = self
            .get(&with_query(&format!("label/{}", xyz(p)), query))
            .expect(200)
            .json();
        v["Label"]
            .as_u64()
            .unwrap_or_else(|| panic!("label/{p:?}: no Label in {v}"))
    }

    /// `GET size/<label>`: Some(voxels) on 200, None on 404.
    #[track_caller]
    pub fn size_of(&self, label: u64) -> Option<u64> {
        let r = self.get(&format!("size/{label}"));
        match r.status {
            200 => Some(
                r.json()["voxels"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("{}: no voxels in {}", r.what, r.text())),
            ),
            404 => None,
            s => panic!(
                "{}: expected 200 or 404, got {s}; body {:?}",
                r.what,
                r.text()
            ),
        }
    }

    /// `GET maxlabel` → the number (asserts 200).
    #[track_caller]
    pub fn maxlabel(&self) -> u64 {
        let v = self.get("maxlabel").expect(200).json();
        v["maxlabel"]
            .as_u64()
            .unwrap_or_else(|| panic!("maxlabel: {v}"))
    }

    /// `GET blocks/<size>/<offset>?<query>` → records (asserts 200).
    #[track_caller]
    pub fn blocks(&self, offset: Coord, size: [usize; 3], query: &str) -> Vec<(Coord, Vec<u8>)> {
        let r = self
            .get(&with_query(
                &format!("blocks/{}/{}", dims(size), xyz(offset)),
                query,
            ))
            .expect(200);
        block_records(&r.body)
    }

    /// Decodes a `compression=blocks` payload, gzip(labels.Block), placing it at block `c`.
    #[track_caller]
    pub fn decode_blocks_payload(&self, c: Coord, payload: &[u8]) -> Volume {
        let raw = gunzip(payload).unwrap_or_else(|e| panic!("block {c:?}: {e}"));
        let mut v = decode_block(&raw).unwrap_or_else(|e| panic!("block {c:?}: labels.Block: {e}"));
        assert_eq!(v.size, self.bs, "block {c:?}: decoded block size");
        v.origin = self.block_origin(c);
        v
    }

    /// Decodes one block record payload fetched with `compression` (`blocks`, `uncompressed`,
    /// `lz4`, `gzip`) into the block volume at block coordinate `c`.
    #[track_caller]
    pub fn decode_payload(&self, c: Coord, payload: &[u8], compression: &str) -> Volume {
        let n = self.bs[0] * self.bs[1] * self.bs[2] * 8;
        let raw = match compression {
            "blocks" => return self.decode_blocks_payload(c, payload),
            "uncompressed" => payload.to_vec(),
            "lz4" => lz4_decompress(payload, n).unwrap_or_else(|e| panic!("block {c:?}: {e}")),
            "gzip" => gunzip(payload).unwrap_or_else(|e| panic!("block {c:?}: {e}")),
            other => panic!("unknown compression {other}"),
        };
        assert_eq!(
            raw.len(),
            n,
            "block {c:?} ({compression}): uncompressed length"
        );
        Volume::from_le_bytes(self.block_origin(c), self.bs, &raw)
    }

    /// Checks block records fetched with `compression`: no block twice, every block among
    /// `allowed`, every block of `required` present, and every payload decodes to the block of
    /// `reference` (record order is unspecified).
    #[track_caller]
    pub fn check_records(
        &self,
        records: &[(Coord, Vec<u8>)],
        compression: &str,
        reference: &Volume,
        allowed: &[Coord],
        required: &[Coord],
    ) {
        let mut seen = std::collections::BTreeSet::new();
        for (c, payload) in records {
            assert!(seen.insert(*c), "block {c:?} sent twice");
            assert!(
                allowed.contains(c),
                "block {c:?} was not requested or never written (allowed {allowed:?})"
            );
            let got = self.decode_payload(*c, payload, compression);
            let want = reference.block(*c, self.bs);
            assert!(
                got == want,
                "block {c:?} ({compression}) differs from the reference: got {got:?}, want {want:?}"
            );
        }
        for c in required {
            assert!(
                seen.contains(c),
                "block {c:?} missing from the stream ({compression})"
            );
        }
    }

    /// Voxel origin of block `c`.
    pub fn block_origin(&self, c: Coord) -> Coord {
        [
            c[0] * self.bs[0] as i32,
            c[1] * self.bs[1] as i32,
            c[2] * self.bs[2] as i32,
        ]
    }
}

/// `path?query`, or `path` when the query is empty.
pub fn with_query(path: &str, query: &str) -> String {
    if query.is_empty() {
        path.to_string()
    } else if path.contains('?') {
        format!("{path}&{query}")
    } else {
        format!("{path}?{query}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_roundtrip_and_errors() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let z = gzip(&data);
        assert_eq!(&z[..2], &[0x1f, 0x8b]);
        assert_eq!(gunzip(&z).unwrap(), data);
        assert!(gunzip(b"plain").is_err());
        assert!(gunzip(&z[..z.len() / 2]).is_err());
    }

    #[test]
    fn lz4_raw_block() {
        let data: Vec<u8> = (0..5000u32)
            .flat_map(|i| ((i / 10) as u64).to_le_bytes())
            .collect();
        let c = lz4_flex::block::compress(&data);
        assert_eq!(lz4_decompress(&c, data.len()).unwrap(), data);
        assert!(lz4_decompress(&c, data.len() + 8).is_err());
        assert!(lz4_decompress(&c[..c.len() / 2], data.len()).is_err());
    }

    #[test]
    fn records_roundtrip() {
        let recs = vec![
            ([1, -2, 3], vec![1, 2, 3]),
            ([0, 0, 0], vec![]),
            ([i32::MIN, i32::MAX, 7], vec![9; 100]),
        ];
        let body = records_body(&recs);
        assert_eq!(body.len(), 3 * 16 + 103);
        assert_eq!(
            &body[..16],
            &[1, 0, 0, 0, 0xFE, 0xFF, 0xFF, 0xFF, 3, 0, 0, 0, 3, 0, 0, 0]
        );
        assert_eq!(block_records(&body), recs);
    }

    #[test]
    #[should_panic(expected = "says 100 bytes")]
    fn truncated_record_panics() {
        let body = records_body(&[([0, 0, 0], vec![0; 100])]);
        block_records(&body[..body.len() - 1]);
    }

    #[test]
    fn query_joining() {
        assert_eq!(with_query("a/b", ""), "a/b");
        assert_eq!(with_query("a/b", "x=1"), "a/b?x=1");
        assert_eq!(with_query("a/b?y=2", "x=1"), "a/b?y=2&x=1");
    }
}
