//! Labelmap bodies from the network: split RLE bodies (`parse_rles`, also the `rles`
//! sparsevol encoding), the label index protobufs of `POST index`/`POST indices`, the
//! `POST mappings` protobuf, and the block records of `POST blocks` with their gzipped
//! payloads (records → gunzip → label block, as the handler runs them).

use std::collections::HashMap;
use std::sync::OnceLock;

use proptest::prelude::*;
use prost::Message;
use tessera_engine::block::geom::pack_block;
use tessera_engine::block::{records, stored};
use tessera_engine::compute::{Run, Shape, codec};
use tessera_engine::datatypes::labelmap::index::{LabelIndex, LabelIndices, SvCount};
use tessera_engine::datatypes::labelmap::mapping::MappingOps;
use tessera_engine::datatypes::labelmap::parse_rles;
use tessera_engine::datatypes::labelmap::store::{decode_index, encode_index};

use crate::support::{self, apply, bytes, edge_u32, edits, measure, within};

const ERR: usize = 4096;

// ---- split RLE / sparsevol rles --------------------------------------------------------------

fn encode_rles(runs: &[Run]) -> Vec<u8> {
    let mut out = vec![0, 3, 0, 0, 0, 0, 0, 0];
    out.extend_from_slice(&(runs.len() as u32).to_le_bytes());
    for r in runs {
        for v in [r.x, r.y, r.z, r.len] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

/// Runs of each of a few labels of the real cubes, as DVID's sparsevol would send them.
fn rle_seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut out = Vec::new();
        for (k, (n, cube)) in support::real_cubes().into_iter().enumerate() {
            for probe in [0usize, n * n * n / 2 + n / 2, n * n * n - 1] {
                let label = cube[probe];
                let mut runs = Vec::new();
                for z in 0..n {
                    for y in 0..n {
                        let row = &cube[(z * n + y) * n..][..n];
                        let mut x = 0;
                        while x < n {
                            if row[x] != label {
                                x += 1;
                                continue;
                            }
                            let start = x;
                            while x < n && row[x] == label {
                                x += 1;
                            }
                            let o = 64 * k as i32 - 100;
                            runs.push(Run::new(
                                o + start as i32,
                                y as i32 - 7,
                                z as i32,
                                (x - start) as i32,
                            ));
                        }
                    }
                }
                out.push(encode_rles(&runs));
            }
        }
        out.push(encode_rles(&[Run::new(1_000_000_000, 0, 0, 10)]));
        out.push(encode_rles(&[
            Run::new(-5, 1, 1, 3),
            Run::new(-2, 1, 1, 2),
            Run::new(0, 1, 1, 1),
        ]));
        out
    })
}

fn coord() -> impl Strategy<Value = i32> {
    prop_oneof![
        4 => -300i32..300,
        1 => i32::MIN..i32::MIN + 300,
        1 => i32::MAX - 300..=i32::MAX,
        1 => any::<i32>(),
    ]
}

fn run_len() -> impl Strategy<Value = i32> {
    prop_oneof![
        4 => -2i32..300,
        1 => i32::MAX - 300..=i32::MAX,
        1 => any::<i32>(),
    ]
}

/// A split body of runs near each other and near the edges of i32, its count right or not.
fn rle_body() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec((coord(), -3i32..3, -3i32..3, run_len()), 0..24),
        prop_oneof![4 => Just(None), 1 => edge_u32().prop_map(Some)],
        prop_oneof![8 => Just(0u8), 1 => any::<u8>()],
    )
        .prop_map(|(runs, count, first)| {
            let runs: Vec<Run> = runs
                .into_iter()
                .map(|(x, y, z, len)| Run::new(x, y, z, len))
                .collect();
            let mut b = encode_rles(&runs);
            b[0] = first;
            if let Some(c) = count {
                b[8..12].copy_from_slice(&c.to_le_bytes());
            }
            b
        })
}

fn check_rles(b: &[u8]) {
    let (r, u) = measure(|| parse_rles(b));
    within(u, 2 * b.len() + ERR, "parse_rles");
    let Ok(runs) = r else { return };
    assert!(!runs.is_empty());
    for r in &runs {
        assert!(r.len > 0 && i64::from(r.x) + i64::from(r.len) <= i64::from(i32::MAX));
    }
    // Normalized: sorted by (z, y, x), runs of a row neither overlapping nor touching.
    for w in runs.windows(2) {
        let (a, b) = (w[0], w[1]);
        assert!((a.z, a.y, a.x) < (b.z, b.y, b.x), "{a:?} {b:?}");
        if (a.z, a.y) == (b.z, b.y) {
            assert!(
                i64::from(a.x) + i64::from(a.len) < i64::from(b.x),
                "{a:?} {b:?}"
            );
        }
    }
    // Round trip.
    assert_eq!(parse_rles(&encode_rles(&runs)).unwrap(), runs);
}

// ---- protobufs -------------------------------------------------------------------------------

/// Label indices of real data: each 16³ crop is a "block", each label a supervoxel, bodies
/// grouping supervoxels by label % 4.
fn index_seeds() -> &'static [LabelIndex] {
    static SEEDS: OnceLock<Vec<LabelIndex>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut bodies: HashMap<u64, LabelIndex> = HashMap::new();
        for (k, (_, cube)) in support::real_cubes().into_iter().enumerate() {
            for bz in 0..4 {
                for by in 0..4 {
                    for bx in 0..4 {
                        let v = support::crop(&cube, [bx * 16, by * 16, bz * 16], 16);
                        let c = [bx as i32 + 4 * k as i32, by as i32 - 2, bz as i32];
                        let mut counts: HashMap<u64, HashMap<u64, u32>> = HashMap::new();
                        for l in v {
                            *counts.entry(l % 4).or_default().entry(l).or_default() += 1;
                        }
                        for (body, c2) in counts {
                            let index = bodies.entry(body + 1).or_default();
                            index.label = body + 1;
                            index.last_mutid = 77 + body;
                            index.last_mod_user = "fuzz".into();
                            index.blocks.insert(
                                pack_block(c),
                                SvCount {
                                    counts: c2,
                                    surface_mutid: body,
                                },
                            );
                        }
                    }
                }
            }
        }
        let mut out: Vec<LabelIndex> = bodies.into_values().collect();
        out.sort_by_key(|i| i.label);
        out
    })
}

fn proto_seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let indices = index_seeds();
        let mut out: Vec<Vec<u8>> = indices.iter().map(|i| i.encode_to_vec()).collect();
        out.push(
            LabelIndices {
                indices: indices.to_vec(),
            }
            .encode_to_vec(),
        );
        out
    })
}

/// Bytes a protobuf decode may allocate per input byte: a two-byte map entry becomes a hash
/// map slot (tens of bytes), doubled by growth.
const PROTO_PER_BYTE: usize = 128;

fn check_protos(b: &[u8]) {
    let bound = PROTO_PER_BYTE * b.len() + ERR;
    let (r, u) = measure(|| LabelIndex::decode(b));
    within(u, bound, "LabelIndex");
    if let Ok(index) = r {
        let again = index.encode_to_vec();
        assert_eq!(LabelIndex::decode(again.as_slice()).unwrap(), index);
        // The stored form (lz4 wrapper) round trips too.
        assert_eq!(decode_index(&encode_index(&index)).unwrap(), index);
    }
    let (r, u) = measure(|| LabelIndices::decode(b));
    within(u, bound, "LabelIndices");
    if let Ok(all) = r {
        assert_eq!(
            LabelIndices::decode(all.encode_to_vec().as_slice()).unwrap(),
            all
        );
    }
    let (r, u) = measure(|| MappingOps::decode(b));
    within(u, bound, "MappingOps");
    if let Ok(ops) = r {
        assert_eq!(
            MappingOps::decode(ops.encode_to_vec().as_slice()).unwrap(),
            ops
        );
    }
}

// ---- POST blocks records ---------------------------------------------------------------------

/// What `POST blocks` lets a 64³ block's gzip inflate to.
const BLOCK_LIMIT: usize = 64 * 64 * 64 * 16 + (1 << 20);

fn record_seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut out = Vec::new();
        for (k, (n, cube)) in support::real_cubes().into_iter().enumerate() {
            let block = codec::encode(&cube, Shape::new(n, n, n)).unwrap();
            let mut body = Vec::new();
            records::put(&mut body, [k as i32, -1, 2], &stored::gzip(&block, 1));
            let small = support::crop(&cube, [16, 16, 16], 8);
            let small = codec::encode(&small, Shape::new(8, 8, 8)).unwrap();
            records::put(&mut body, [0, 0, k as i32], &stored::gzip(&small, 6));
            out.push(body);
        }
        out
    })
}

fn check_records(b: &[u8]) {
    let (r, u) = measure(|| records::parse(b));
    within(u, 4 * b.len() + ERR, "records::parse");
    let Ok(recs) = r else { return };
    // Round trip: the records re-encode to the very body.
    let mut again = Vec::new();
    for (c, p) in &recs {
        records::put(&mut again, *c, p);
    }
    assert_eq!(again, b);
    for (_, gz) in recs {
        let (raw, u) = measure(|| stored::gunzip(gz, BLOCK_LIMIT));
        within(u, 2 * BLOCK_LIMIT + (1 << 18), "gunzip");
        if let Ok(raw) = raw {
            assert!(raw.len() <= BLOCK_LIMIT);
            if let Ok((s, v)) = codec::decode(&raw) {
                assert_eq!(
                    codec::decode(&codec::encode(&v, s).unwrap()).unwrap(),
                    (s, v)
                );
            }
        }
    }
}

/// gzip of random (incompressible) bytes.
fn gzip_body() -> impl Strategy<Value = Vec<u8>> {
    (bytes(1 << 16), 0u32..10).prop_map(|(b, level)| stored::gzip(&b, level))
}

proptest! {
    #![proptest_config(support::config(256))]

    #[test]
    fn rles_arbitrary_bytes(b in bytes(512)) {
        check_rles(&b);
    }

    #[test]
    fn rles_structured(b in rle_body()) {
        check_rles(&b);
    }

    #[test]
    fn rles_mutated_real_sparsevols(i in any::<prop::sample::Index>(), e in edits(4)) {
        let seeds = rle_seeds();
        check_rles(&apply(&seeds[i.index(seeds.len())], &e));
    }

    #[test]
    fn label_index_arbitrary_bytes(b in bytes(2048)) {
        check_protos(&b);
    }

    #[test]
    fn label_index_mutated_real_indices(i in any::<prop::sample::Index>(), e in edits(4)) {
        let seeds = proto_seeds();
        check_protos(&apply(&seeds[i.index(seeds.len())], &e));
    }

    #[test]
    fn records_arbitrary_bytes(b in bytes(1024)) {
        check_records(&b);
    }

    #[test]
    fn records_mutated_real_blocks(i in any::<prop::sample::Index>(), e in edits(3)) {
        let seeds = record_seeds();
        check_records(&apply(&seeds[i.index(seeds.len())], &e));
    }

    /// `gunzip` never allocates much beyond its output limit, whatever the input's size.
    #[test]
    fn gunzip_allocation_follows_its_limit(gz in gzip_body(), e in edits(2), limit in 0usize..4096, mutate in any::<bool>()) {
        let gz = if mutate { apply(&gz, &e) } else { gz };
        let (r, u) = measure(|| stored::gunzip(&gz, limit));
        within(u, 2 * (limit + 1) + (1 << 17), "gunzip");
        if let Ok(raw) = r {
            prop_assert!(raw.len() <= limit);
        }
    }
}

/// A gzip header may carry an extra field of up to 64 KiB, which the decoder buffers whole:
/// with a small limit, that field and the inflater's state are what `gunzip` holds (a case
/// `gunzip_allocation_follows_its_limit` once found, when the decoder also copied the input
/// through a 32 KiB buffer of its own).
#[test]
fn gunzip_of_a_long_header_field_follows_its_limit() {
    use std::io::Write;
    let mut gz = flate2::GzBuilder::new()
        .extra(vec![7u8; 65_535])
        .write(Vec::new(), flate2::Compression::fast());
    gz.write_all(&[1u8; 5000]).unwrap();
    let gz = gz.finish().unwrap();
    for limit in [0, 100, 4095] {
        let (r, u) = measure(|| stored::gunzip(&gz, limit));
        within(u, 2 * (limit + 1) + (1 << 17), "gunzip");
        assert!(r.is_err(), "5000 bytes fit a limit of {limit}");
    }
    assert_eq!(stored::gunzip(&gz, 5000).unwrap(), vec![1u8; 5000]);
}

#[test]
fn seeds_parse() {
    for s in rle_seeds() {
        check_rles(s);
        assert!(parse_rles(s).is_ok());
    }
    for s in proto_seeds() {
        check_protos(s);
    }
    assert_eq!(
        LabelIndex::decode(proto_seeds()[0].as_slice()).unwrap(),
        index_seeds()[0]
    );
    for s in record_seeds() {
        check_records(s);
        assert_eq!(records::parse(s).unwrap().len(), 2);
    }
}

/// Hostile counts are refused before anything is sized by them.
#[test]
fn hostile_counts_are_refused_without_allocating() {
    let mut b = encode_rles(&[Run::new(0, 0, 0, 1)]);
    b[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    let (r, u) = measure(|| parse_rles(&b));
    assert!(r.is_err());
    within(u, ERR, "parse_rles");
    let mut rec = Vec::new();
    records::put(&mut rec, [0, 0, 0], b"x");
    rec[12..16].copy_from_slice(&i32::MAX.to_le_bytes());
    let (r, u) = measure(|| records::parse(&rec));
    assert!(r.is_err());
    within(u, ERR, "records::parse");
    // A label index claiming a 2^32-byte block entry.
    let b = [0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x08, 0x01];
    let (r, u) = measure(|| LabelIndex::decode(&b[..]));
    assert!(r.is_err());
    within(u, ERR, "LabelIndex");
}

/// Found by `rles_structured`: two runs of one row that each fit in i32 but whose merge spans
/// more than an i32 overflowed `merge_runs` (a panic in debug builds, a wrong length in
/// release).
#[test]
fn rles_runs_merging_past_i32_are_refused() {
    let b = encode_rles(&[
        Run::new(i32::MIN, 0, 0, i32::MAX),
        Run::new(-1, 0, 0, i32::MAX),
    ]);
    check_rles(&b);
}
