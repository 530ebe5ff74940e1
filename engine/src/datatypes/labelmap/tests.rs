//! labelmap through the engine (in-memory store), below HTTP: sync events published by
//! writes, and fuzzed `POST blocks` bodies that must be refused without writing anything.

use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use tessera_storage::MemoryStore;

use crate::Engine;
use crate::block::stored::gzip;
use crate::compute::{Shape, codec};
use crate::datatype::{Body, DataRequest, DataResponse, Method, Query, Settings};
use crate::engine::{Caller, EngineOptions};
use crate::sync::{
    BLOCK_INGEST, BLOCK_MUTATE, BlockChange, CLEAVE_LABEL, Delta, MERGE_BLOCK, SPLIT_LABEL,
    SyncEvent,
};
use crate::{Error, Result};

const B: usize = 16;

struct Fixture {
    engine: Arc<Engine>,
    root: String,
}

fn setup() -> Fixture {
    let engine = Engine::open(EngineOptions::single(Arc::new(MemoryStore::new()))).unwrap();
    let root = engine.create_repo("lm", "", None, "").unwrap();
    let mut s = Settings::default();
    s.set("typename", "labelmap");
    s.set("dataname", "seg");
    s.set("BlockSize", "16,16,16");
    s.set("MaxDownresLevel", "1");
    engine
        .create_instance(&root, &s, &Caller::default())
        .unwrap();
    Fixture { engine, root }
}

impl Fixture {
    /// Posts a 64³ volume at the origin; the instance's context at the root.
    fn post_cube(&self, vol: Vec<u8>) -> crate::datatype::DataCtx {
        self.call(
            Method::Post,
            "raw",
            &["0_1_2", "64_64_64", "0_0_0"],
            &[],
            vol,
        )
        .unwrap();
        self.engine
            .ctx_at(&self.root, "seg", None, &Caller::default())
            .unwrap()
    }

    fn call(
        &self,
        method: Method,
        keyword: &str,
        path: &[&str],
        query: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<DataResponse> {
        let req = DataRequest {
            method,
            keyword: keyword.into(),
            path: path.iter().map(|s| s.to_string()).collect(),
            query: Query(
                query
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            headers: Default::default(),
            body: Bytes::from(body),
            stream: None,
        };
        self.engine
            .data_request(&self.root, "seg", &req, &Caller::default())
    }

    fn data_uuid(&self) -> String {
        let info = self.engine.instance_info(&self.root, "seg").unwrap();
        info["Base"]["DataUUID"].as_str().unwrap().to_string()
    }

    fn stored_blocks(&self) -> usize {
        let resp = self
            .call(
                Method::Get,
                "blocks",
                &["64_64_64", "0_0_0"],
                &[("compression", "blocks")],
                vec![],
            )
            .unwrap();
        let bytes: Vec<u8> = match resp.body {
            Body::Full(b) => b.to_vec(),
            Body::Stream(it) => it.map(|c| c.unwrap().to_vec()).collect::<Vec<_>>().concat(),
        };
        let mut n = 0;
        let mut at = 0;
        while at < bytes.len() {
            let len = i32::from_le_bytes(bytes[at + 12..at + 16].try_into().unwrap()) as usize;
            at += 16 + len;
            n += 1;
        }
        n
    }
}

fn volume(size: [usize; 3], f: impl Fn(usize, usize, usize) -> u64) -> Vec<u8> {
    let mut out = Vec::new();
    for z in 0..size[2] {
        for y in 0..size[1] {
            for x in 0..size[0] {
                out.extend_from_slice(&f(x, y, z).to_le_bytes());
            }
        }
    }
    out
}

/// Writes `n` blocks side by side along x from the origin, labelled 1 to `n`.
fn post_labels_along_x(fx: &Fixture, n: usize) {
    let vol = volume([n * B, B, B], |x, _, _| 1 + (x / B) as u64);
    let size = format!("{}_{B}_{B}", n * B);
    fx.call(Method::Post, "raw", &["0_1_2", &size, "0_0_0"], &[], vol)
        .unwrap();
}

fn changed(e: &SyncEvent) -> &[BlockChange] {
    match &e.delta {
        Delta::Blocks(b) => b,
        other => panic!("expected block changes, got {other:?}"),
    }
}

#[test]
fn writes_publish_ingest_then_mutate_events_after_commit() {
    let fx = setup();
    let uuid = fx.data_uuid();
    let ingest = fx.engine.sync_bus().subscribe(&uuid, BLOCK_INGEST);
    let mutate = fx.engine.sync_bus().subscribe(&uuid, BLOCK_MUTATE);
    post_labels_along_x(&fx, 2);
    let e = ingest.try_recv().expect("a BLOCK_INGEST event");
    let blocks = changed(&e);
    assert_eq!(blocks.len(), 2);
    assert!(blocks.iter().all(|b| b.prev.is_none()));
    assert_eq!(blocks[1].labels, [1 + blocks[1].coord[0] as u64]);
    assert!(mutate.try_recv().is_err());

    let one = volume([B, B, B], |_, _, _| 9);
    fx.call(
        Method::Post,
        "raw",
        &["0_1_2", "16_16_16", "16_0_0"],
        &[],
        one,
    )
    .unwrap();
    let e = mutate.try_recv().expect("a BLOCK_MUTATE event");
    let blocks = changed(&e);
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].coord, [1, 0, 0]);
    assert_eq!(blocks[0].prev.as_deref(), Some(&[2][..]));
    assert_eq!(blocks[0].labels, [9]);
    assert!(e.mutation_id > 0);

    // A refused write publishes nothing; ingest-supervoxels doesn't sync (spec §4.4).
    assert!(
        fx.call(
            Method::Post,
            "raw",
            &["0_1_2", "16_16_16", "1_0_0"],
            &[],
            vec![0; B * B * B * 8]
        )
        .is_err()
    );
    let block = codec::encode(&vec![5u64; B * B * B], Shape::cube(B)).unwrap();
    let mut rec = Vec::new();
    for v in [0i32, 0, 3, 0] {
        rec.extend_from_slice(&v.to_le_bytes());
    }
    let gz = gzip(&block, 6);
    rec[12..16].copy_from_slice(&(gz.len() as i32).to_le_bytes());
    rec.extend_from_slice(&gz);
    fx.call(Method::Post, "ingest-supervoxels", &[], &[], rec)
        .unwrap();
    assert!(ingest.try_recv().is_err() && mutate.try_recv().is_err());
}

/// A valid POST blocks body: `n` solid blocks along x.
fn valid_body(n: i32) -> Vec<u8> {
    let mut body = Vec::new();
    for i in 0..n {
        let block = codec::encode(&vec![i as u64 + 1; B * B * B], Shape::cube(B)).unwrap();
        let gz = gzip(&block, 6);
        for v in [i, 0, 0, gz.len() as i32] {
            body.extend_from_slice(&v.to_le_bytes());
        }
        body.extend_from_slice(&gz);
    }
    body
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn damaged_block_posts_are_refused_and_write_nothing(
        cut in 1usize..2000,
        flip_at in 0usize..2000,
        flip in 1u8..=255,
        truncate in any::<bool>(),
    ) {
        let fx = setup();
        let mut body = valid_body(3);
        if truncate {
            body.truncate(body.len() - cut.min(body.len() - 1));
        } else {
            let at = flip_at % body.len();
            body[at] ^= flip;
        }
        match fx.call(Method::Post, "blocks", &[], &[], body) {
            Ok(_) => {}
            Err(Error::BadRequest(_)) => {
                prop_assert_eq!(fx.stored_blocks(), 0);
                prop_assert!(fx.call(Method::Get, "maxlabel", &[], &[], vec![]).is_err());
            }
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }

    #[test]
    fn random_block_posts_never_panic(body in proptest::collection::vec(any::<u8>(), 0..600)) {
        let fx = setup();
        let r = fx.call(Method::Post, "blocks", &[], &[], body.clone());
        if r.is_err() {
            prop_assert_eq!(fx.stored_blocks(), 0);
        }
    }
}

fn json_of(resp: DataResponse) -> serde_json::Value {
    match resp.body {
        Body::Full(b) => serde_json::from_slice(&b).unwrap(),
        Body::Stream(_) => panic!("expected a whole body"),
    }
}

#[test]
fn mutations_publish_merge_cleave_and_split_events_after_commit() {
    let fx = setup();
    let uuid = fx.data_uuid();
    let bus = fx.engine.sync_bus();
    let (merges, cleaves, splits) = (
        bus.subscribe(&uuid, MERGE_BLOCK),
        bus.subscribe(&uuid, CLEAVE_LABEL),
        bus.subscribe(&uuid, SPLIT_LABEL),
    );
    post_labels_along_x(&fx, 4);
    let r = fx
        .call(Method::Post, "merge", &[], &[], b"[1, 2, 3]".to_vec())
        .unwrap();
    let mutid = json_of(r)["MutationID"].as_u64().unwrap();
    let e = merges.try_recv().expect("a MERGE_BLOCK event");
    assert_eq!(e.mutation_id, mutid);
    match &e.delta {
        Delta::Merge {
            target,
            merged,
            blocks,
        } => {
            assert_eq!((*target, merged.as_slice()), (1, &[2, 3][..]));
            assert_eq!(blocks, &[[0, 0, 0], [1, 0, 0], [2, 0, 0]]);
        }
        other => panic!("{other:?}"),
    }
    // A refused merge publishes nothing.
    assert!(
        fx.call(Method::Post, "merge", &[], &[], b"[1, 99]".to_vec())
            .is_err()
    );
    assert!(merges.try_recv().is_err());

    let r = json_of(
        fx.call(Method::Post, "cleave", &["1"], &[], b"[3]".to_vec())
            .unwrap(),
    );
    let cleaved = r["CleavedLabel"].as_u64().unwrap();
    match &cleaves.try_recv().expect("a CLEAVE_LABEL event").delta {
        Delta::Cleave {
            target,
            cleaved_label,
            supervoxels,
        } => {
            assert_eq!(
                (*target, *cleaved_label, supervoxels.as_slice()),
                (1, cleaved, &[3][..])
            );
        }
        other => panic!("{other:?}"),
    }

    // Split one x-row of body 4 off.
    let mut rle = vec![0u8, 3, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
    for v in [48i32, 0, 0, 16] {
        rle.extend_from_slice(&v.to_le_bytes());
    }
    let r = json_of(fx.call(Method::Post, "split", &["4"], &[], rle).unwrap());
    let new = r["label"].as_u64().unwrap();
    match &splits.try_recv().expect("a SPLIT_LABEL event").delta {
        Delta::Split {
            target,
            new_label,
            blocks,
            voxels,
        } => {
            assert_eq!((*target, *new_label, *voxels), (4, new, 16));
            assert_eq!(blocks, &[[3, 0, 0]]);
        }
        other => panic!("{other:?}"),
    }
}

/// Every triangle as its corners' coordinates, rotated to start at the smallest: the same set
/// for the same surface however it was numbered.
fn triangle_set(s: &crate::mesh::Surface) -> Vec<[[i64; 3]; 3]> {
    let mut out: Vec<[[i64; 3]; 3]> = s
        .triangles
        .iter()
        .map(|t| {
            let p = t.map(|i| s.vertices[i as usize]);
            let k = (0..3).min_by_key(|&k| p[k]).unwrap();
            [p[k], p[(k + 1) % 3], p[(k + 2) % 3]]
        })
        .collect();
    out.sort_unstable();
    out
}

#[test]
fn meshes_block_by_block_equal_meshes_of_one_volume() {
    let f = setup();
    // A staircase through the diagonal blocks (sprawling: meshed block by block) and a ball
    // across the middle block corner (compact: one volume), in 4³ blocks of 16³.
    let vol = volume([64, 64, 64], |x, y, z| {
        let d2 = [x, y, z]
            .map(|c| (c as i64 - 32).pow(2))
            .iter()
            .sum::<i64>();
        if x.abs_diff(y) < 3 && y.abs_diff(z) < 3 {
            5
        } else if d2 < 100 {
            6
        } else {
            0
        }
    });
    let ctx = f.post_cube(vol);
    let labels = super::store::Labels::new(&ctx).unwrap();
    let mapping = super::state::state(&ctx).mapping(&labels).unwrap();
    let labels = labels.with_mapping(mapping, false);
    use super::meshes::{Plan, surface_with};
    for label in [5, 6] {
        let volume = surface_with(&labels, label, 0, false, Plan::Volume, None)
            .unwrap()
            .unwrap();
        let blocks = surface_with(&labels, label, 0, false, Plan::Blocks, None)
            .unwrap()
            .unwrap();
        assert_eq!(
            volume.vertices.len(),
            blocks.vertices.len(),
            "label {label}"
        );
        assert_eq!(
            triangle_set(&volume),
            triangle_set(&blocks),
            "label {label}"
        );
    }
}

#[test]
fn meshes_after_edits_reuse_untouched_pieces_and_equal_full_meshings() {
    let f = setup();
    // A staircase along the diagonal (sprawling: meshed block by block) in two supervoxels,
    // 5 below x = 32 and 7 above, and supervoxel 8 touching its low end only.
    let vol = volume([64, 64, 64], |x, y, z| {
        if x.abs_diff(y) < 3 && y.abs_diff(z) < 3 {
            if x < 32 { 5 } else { 7 }
        } else if x < 6 && y < 6 && z > 8 && z < 14 {
            8
        } else {
            0
        }
    });
    let ctx = f.post_cube(vol);
    f.call(Method::Post, "merge", &[], &[], b"[5, 7]".to_vec())
        .unwrap();
    let labels = || {
        let labels = super::store::Labels::new(&ctx).unwrap();
        let mapping = super::state::state(&ctx).mapping(&labels).unwrap();
        labels.with_mapping(mapping, false)
    };
    use super::meshes::{MESH_PIECES_TOTAL, Plan, surface_with};
    // The staircase has fewer owner blocks than the server's cache keeps pieces for.
    let cache = super::pieces::Cache::keeping_from(0);
    // Meshed with the cache (reusing what it can) and without: the same vertices and
    // triangles in the same order, and how many owner blocks were (reused, meshed).
    let mesh = |label: u64, supervoxels: bool| {
        let l = labels();
        let (got, samples) = crate::test_metrics::capture(|| {
            surface_with(&l, label, 0, supervoxels, Plan::Blocks, Some(&cache))
                .unwrap()
                .unwrap()
        });
        let full = surface_with(&l, label, 0, supervoxels, Plan::Blocks, None)
            .unwrap()
            .unwrap();
        // Not assert_eq: a mesh's Debug runs to megabytes.
        assert!(
            got == full,
            "label {label}, supervoxels {supervoxels}: differs from a full meshing"
        );
        let count = |result: &str| {
            let name = format!("{MESH_PIECES_TOTAL}{{result={result}}}");
            samples
                .iter()
                .filter(|s| s.0 == name)
                .map(|s| s.1)
                .sum::<f64>() as usize
        };
        (got, count("reused"), count("meshed"))
    };
    let (first, reused, meshed) = mesh(5, false);
    assert_eq!(reused, 0);
    assert!(meshed > 8, "{meshed} owner blocks");
    let (again, reused, meshed) = mesh(5, false);
    assert!(
        again == first && meshed == 0,
        "nothing changed: {reused} reused"
    );

    // A merge changes no voxels, but body 5's mask grows by 8 in the low corner's block. It
    // reaches that block's planes x = 0 and y = 0, not z = 0: the block's own owner and the
    // three low neighbours reading those planes (-x, -y, and -x-y their row) are meshed again.
    f.call(Method::Post, "merge", &[], &[], b"[5, 8]".to_vec())
        .unwrap();
    let (merged, reused, meshed) = mesh(5, false);
    assert!(merged != first);
    assert!(
        reused > 0 && meshed == 4,
        "{reused} reused, {meshed} meshed"
    );

    // A split renames supervoxel 7 in every block of it, and takes a row inside one block at
    // the high end: only that block's owner is meshed again.
    let mut rle = vec![0u8, 3, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
    for v in [58i32, 58, 58, 3] {
        rle.extend_from_slice(&v.to_le_bytes());
    }
    f.call(Method::Post, "split", &["5"], &[], rle).unwrap();
    let (split, reused, meshed) = mesh(5, false);
    assert!(split != merged);
    assert!(
        reused > 0 && meshed == 1,
        "{reused} reused, {meshed} meshed"
    );
    // A supervoxel's mesh is kept apart from its body's.
    let (_, reused, _) = mesh(5, true);
    assert_eq!(reused, 0);
}

#[test]
fn meters_meshes_mutations_kernels_and_store_io() {
    let fx = setup();
    post_labels_along_x(&fx, 2);
    let (_, samples) = crate::test_metrics::capture(|| {
        fx.call(Method::Get, "mesh", &["1"], &[], vec![]).unwrap();
        fx.call(Method::Get, "mesh", &["1"], &[], vec![]).unwrap();
        fx.call(Method::Post, "merge", &[], &[], b"[1, 2]".to_vec())
            .unwrap();
        // The merge rewrote body 1's index: the cached mesh is stale.
        fx.call(Method::Get, "mesh", &["1"], &[], vec![]).unwrap();
    });
    let names = |prefix: &str| -> Vec<&str> {
        samples
            .iter()
            .map(|s| s.0.as_str())
            .filter(|n| n.starts_with(prefix))
            .collect()
    };
    assert_eq!(
        names("tessera_mesh_cache_total"),
        [
            "tessera_mesh_cache_total{result=miss}",
            "tessera_mesh_cache_total{result=hit}",
            "tessera_mesh_cache_total{result=miss}",
        ]
    );
    assert_eq!(
        names("tessera_mutations_total"),
        ["tessera_mutations_total{datatype=labelmap,action=merge}"]
    );
    // The engine's compute is metered: meshing went through its `surface` kernel.
    assert!(
        names("tessera_kernel_seconds")
            .contains(&"tessera_kernel_seconds{kernel=surface,backend=cpu}")
    );
    assert_eq!(fx.engine.compute().backend().name(), "cpu");
    let io = fx.engine.store_io();
    assert_eq!(io.len(), 1);
    let (alias, engine, io) = &io[0];
    assert_eq!((alias.as_str(), *engine), ("default", "memory"));
    assert!(io.bytes_written > 0 && io.writes > 0 && io.bytes_read > 0 && io.reads > 0);
}

#[test]
fn meshes_computed_while_the_body_was_edited_are_not_kept() {
    // Body 1 (x < 16) next to supervoxel 2.
    let fx = setup();
    post_labels_along_x(&fx, 2);
    let ctx = fx
        .engine
        .ctx_at(&fx.root, "seg", None, &Caller::default())
        .unwrap();
    let labels = super::store::Labels::new(&ctx).unwrap();
    let st = super::state::state(&ctx);
    let mapping = st.mapping(&labels).unwrap();
    let labels = labels.with_mapping(mapping, false);
    let key = (labels.blocks.view.version, 1, 0, false);
    let real = || super::meshes::surface(&labels, 1, 0, false);
    // A mesh of a state body 1 passed through while it was meshed: 2 merged in, then cleaved
    // off again, so body 1's index is back to the same bytes when the meshing ends.
    let mid_edit = crate::mesh::Surface::default();
    let mut calls = 0;
    let got = super::meshes::through_cache(&st, &labels, key, || {
        calls += 1;
        if calls > 1 {
            return real();
        }
        fx.call(Method::Post, "merge", &[], &[], b"[1, 2]".to_vec())
            .unwrap();
        fx.call(Method::Post, "cleave", &["1"], &[], b"[2]".to_vec())
            .unwrap();
        Ok(Some(mid_edit.clone()))
    })
    .unwrap()
    .unwrap();
    assert_eq!(calls, 2, "the interrupted mesh is computed again");
    assert!(!got.triangles.is_empty());
    let again = super::meshes::through_cache(&st, &labels, key, || {
        panic!("the second mesh is kept");
    })
    .unwrap()
    .unwrap();
    assert_eq!(again.triangles, got.triangles);
}
