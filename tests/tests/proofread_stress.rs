//! labelmap proofreading under load: client threads run conflicting merges, cleaves, splits and
//! supervoxel splits on overlapping bodies at the same time (a request may legitimately be
//! refused with 400 because a body changed under it; anything else is a failure), and a burst
//! of such mutations is cut by `kill -9`. Afterwards the state must be consistent
//! ([`check_consistency`]: every label's size is its voxel count in the mapped volume,
//! `supervoxels/<body>` is exactly the supervoxels mapped to it, `mapping` of every supervoxel
//! present is its body in the mapped volume, every pyramid scale is exact), no voxel changed
//! between background and foreground, mutation ids are unique and, after a restart, new ids are
//! above every id handed out before.
//!
//! Fixture: 128³ (64³ blocks, MaxDownresLevel 2) of 32³ supervoxel cubes 1..=64 with
//! scattered background voxels; bodies = runs of four cubes along x (16 merges).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tessera_tests::labels::*;
use tessera_tests::*;

const SIZE: [usize; 3] = [128; 3];
const LEVELS: usize = 2;
const FIRST_MUTATION: u64 = 1_000_000_000;
/// How long the state may take to settle after the last answer (spec §4.4 allows index and
/// downres work to finish shortly after a response).
const SETTLE: Duration = Duration::from_secs(5);

fn fixture() -> Volume {
    Volume::from_fn([0; 3], SIZE, |x, y, z| {
        if hash3(x, y, z, 11).is_multiple_of(17) {
            0
        } else {
            1 + (x / 32 + 4 * (y / 32) + 16 * (z / 32)) as u64
        }
    })
}

fn seg<'a>(srv: &'a Server, uuid: &str) -> Seg<'a> {
    Seg::open(srv, uuid, "seg")
}

/// Creates the instance, writes the fixture and merges the bodies; returns the root UUID.
fn setup(srv: &Server) -> String {
    let root = srv.create_repo("stress");
    let seg = Seg::create(srv, &root, "seg", &standard_settings(LEVELS as u32));
    seg.write(&fixture());
    for base in (1..=64).step_by(4) {
        seg.merge_ok(&[base, base + 1, base + 2, base + 3], "");
    }
    root
}

/// What the workers share.
#[derive(Default)]
struct Shared {
    /// MutationIDs of accepted mutations.
    ids: Mutex<Vec<u64>>,
    /// Accepted mutations per kind: merge, cleave, split, split-supervoxel.
    ok: [AtomicUsize; 4],
    refused: AtomicUsize,
    /// Unexpected answers (anything but 200 or 400 for a mutation).
    failures: Mutex<Vec<String>>,
    stop: AtomicBool,
}

/// The 32³ box around `p` (clipped to the volume) read at scale 0.
fn box_around(http: &Http, base: &str, p: Coord, query: &str) -> Result<Volume, String> {
    let lo = p.map(|c| (c - 16).clamp(0, 96));
    let (st, body) = http.call(
        "GET",
        &format!(
            "{base}/raw/0_1_2/32_32_32/{}_{}_{}{query}",
            lo[0], lo[1], lo[2]
        ),
        None,
    )?;
    if st != 200 || body.len() != 32 * 32 * 32 * 8 {
        return Err(format!(
            "raw box at {lo:?}: status {st}, {} bytes",
            body.len()
        ));
    }
    Ok(Volume::from_le_bytes(lo, [32; 3], &body))
}

fn random_point(rng: &mut Rng) -> Coord {
    [0, 0, 0].map(|_: i32| rng.below(128) as i32)
}

/// One random mutation on the body under a random voxel (skipped when there is nothing to do,
/// e.g. background), its answer tallied in `sh`; Err only on a transport error (server gone).
fn one_op(http: &Http, base: &str, rng: &mut Rng, sh: &Shared) -> Result<(), String> {
    let p = random_point(rng);
    let sv = label_at(http, base, p, true)?;
    let body = label_at(http, base, p, false)?;
    if sv == 0 || body == 0 {
        return Ok(());
    }
    let kind = rng.below(4) as usize;
    let (path, payload) = match kind {
        0 => {
            let other = label_at(http, base, random_point(rng), false)?;
            if other == 0 || other == body {
                return Ok(());
            }
            (
                "merge".to_string(),
                json!([body, other]).to_string().into_bytes(),
            )
        }
        1 => {
            let (st, bytes) = http.call("GET", &format!("{base}/supervoxels/{body}"), None)?;
            if st != 200 {
                return Ok(());
            }
            let svs: Vec<u64> = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
            if svs.len() < 2 {
                return Ok(());
            }
            (
                format!("cleave/{body}"),
                json!([sv]).to_string().into_bytes(),
            )
        }
        2 => {
            let b = box_around(http, base, p, "")?;
            let part: VoxelSet = b
                .voxels()
                .filter(|&(q, l)| l == body && q[0] < p[0])
                .map(|(q, _)| q)
                .collect();
            if part.is_empty() {
                return Ok(());
            }
            (format!("split/{body}"), encode_rles(&part))
        }
        _ => {
            let b = box_around(http, base, p, "?supervoxels=true")?;
            let part: VoxelSet = b
                .voxels()
                .filter(|&(q, l)| l == sv && q[2] < p[2])
                .map(|(q, _)| q)
                .collect();
            if part.is_empty() {
                return Ok(());
            }
            (format!("split-supervoxel/{sv}"), encode_rles(&part))
        }
    };
    let (st, bytes) = http.call("POST", &format!("{base}/{path}"), Some(payload))?;
    match st {
        200 => {
            let v: Value = serde_json::from_slice(&bytes)
                .map_err(|e| format!("{path}: 200 with a non-JSON body: {e}"))?;
            match v["MutationID"].as_u64() {
                Some(id) => sh.ids.lock().unwrap().push(id),
                None => sh
                    .failures
                    .lock()
                    .unwrap()
                    .push(format!("{path}: no MutationID in {v}")),
            }
            sh.ok[kind].fetch_add(1, Ordering::SeqCst);
        }
        400 => {
            sh.refused.fetch_add(1, Ordering::SeqCst);
        }
        other => sh.failures.lock().unwrap().push(format!(
            "POST {path}: status {other}: {}",
            String::from_utf8_lossy(&bytes)
        )),
    }
    Ok(())
}

/// Starts `n` workers doing up to `ops` mutations each (until `stop` or a transport error).
fn spawn_workers(
    srv: &Server,
    root: &str,
    n: u64,
    ops: usize,
    sh: &Arc<Shared>,
) -> Vec<thread::JoinHandle<Option<String>>> {
    let base = format!("/api/node/{root}/seg");
    (0..n)
        .map(|t| {
            let http = Http::new(srv.base_url());
            let base = base.clone();
            let sh = Arc::clone(sh);
            thread::spawn(move || {
                let mut rng = Rng(0xC0FFEE + t);
                for _ in 0..ops {
                    if sh.stop.load(Ordering::SeqCst) {
                        return None;
                    }
                    if let Err(e) = one_op(&http, &base, &mut rng, &sh) {
                        return Some(e);
                    }
                }
                None
            })
        })
        .collect()
}

/// Consistency plus: the foreground mask never changes (mutations only relabel).
#[track_caller]
fn check_all(seg: &Seg) {
    let (s, _) = check_consistency_settled(seg, SIZE, LEVELS, SETTLE);
    let f = fixture();
    let moved = s
        .data
        .iter()
        .zip(&f.data)
        .filter(|(a, b)| (**a == 0) != (**b == 0))
        .count();
    assert_eq!(moved, 0, "voxels changed between background and foreground");
}

/// The largest label of a volume.
fn largest(v: &Volume) -> u64 {
    v.label_counts()
        .into_iter()
        .max_by_key(|&(l, n)| (n, l))
        .expect("a label")
        .0
}

/// The voxels of `set` below the middle of their extent along `axis` (a strict subset when the
/// set spans more than one plane).
fn lower_half(set: &VoxelSet, axis: usize) -> VoxelSet {
    let lo = set.iter().map(|p| p[axis]).min().expect("voxels");
    let hi = set.iter().map(|p| p[axis]).max().expect("voxels");
    assert!(hi > lo, "{} voxels in one plane", set.len());
    let mid = (lo + hi + 1) / 2;
    set.iter().filter(|p| p[axis] < mid).copied().collect()
}

/// One successful mutation of each kind, sequentially; returns their ids.
#[track_caller]
fn each_kind_once(seg: &Seg) -> Vec<u64> {
    let m = seg.raw([0; 3], SIZE, "");
    let mut bodies: Vec<(u64, u64)> = m.label_counts().into_iter().map(|(l, n)| (n, l)).collect();
    bodies.sort_unstable();
    assert!(bodies.len() >= 2, "fewer than two bodies left");
    let big = bodies[bodies.len() - 1].1;
    let other = bodies[bodies.len() - 2].1;
    let mut ids = vec![seg.merge_ok(&[big, other], "")];
    let svs = seg.supervoxels_of(big).expect("merged body");
    let first = *svs.iter().next().expect("supervoxels");
    ids.push(seg.cleave_ok(big, &[first], "").1);
    let m = seg.raw([0; 3], SIZE, "");
    let body = m.voxel_set(big);
    ids.push(seg.split_ok(big, &lower_half(&body, 0), "").1);
    let s = seg.raw([0; 3], SIZE, "supervoxels=true");
    let sv = largest(&s);
    ids.push(
        seg.split_supervoxel_ok(sv, &lower_half(&s.voxel_set(sv), 2), "")
            .2,
    );
    ids
}

#[test]
fn concurrent_conflicting_mutations_leave_a_consistent_state() {
    let srv = Server::start();
    let root = setup(&srv);
    let sh = Arc::new(Shared::default());
    let workers = spawn_workers(&srv, &root, 4, 14, &sh);
    for w in workers {
        if let Some(e) = w.join().expect("worker panicked") {
            panic!(
                "worker transport error: {e}\n--- server log ---\n{}",
                srv.log()
            );
        }
    }
    let failures = sh.failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "unexpected answers: {failures:#?}");
    let mut ids = sh.ids.lock().unwrap().clone();
    let accepted = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), accepted, "a MutationID was handed out twice");
    assert!(ids.iter().all(|&id| id > FIRST_MUTATION + 16));
    let ok: Vec<usize> = sh.ok.iter().map(|a| a.load(Ordering::SeqCst)).collect();
    eprintln!(
        "accepted merge/cleave/split/split-supervoxel: {ok:?}, refused {}",
        sh.refused.load(Ordering::SeqCst)
    );
    assert!(accepted > 0, "no mutation was accepted");
    let seg = seg(&srv, &root);
    check_all(&seg);
    // the instance still works sequentially, with fresh ids
    let more = each_kind_once(&seg);
    assert!(more.iter().all(|id| id > ids.last().unwrap()));
    check_all(&seg);
}

#[test]
fn kill_during_a_mutation_burst_leaves_a_consistent_state() {
    let mut srv = Server::start();
    let root = setup(&srv);
    let sh = Arc::new(Shared::default());
    let workers = spawn_workers(&srv, &root, 4, 10_000, &sh);
    // kill once the burst is well under way
    let deadline = Instant::now() + Duration::from_secs(120);
    while sh.ids.lock().unwrap().len() < 12 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    srv.kill();
    sh.stop.store(true, Ordering::SeqCst);
    for w in workers {
        let _ = w.join().expect("worker panicked"); // transport errors are expected here
    }
    let failures = sh.failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "unexpected answers before the kill: {failures:#?}"
    );
    let mut ids = sh.ids.lock().unwrap().clone();
    assert!(!ids.is_empty(), "no mutation was accepted before the kill");
    let accepted = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), accepted, "a MutationID was handed out twice");
    let max_before = *ids.last().unwrap();

    srv.start_again();
    let seg = seg(&srv, &root);
    check_all(&seg);
    let more = each_kind_once(&seg);
    for id in &more {
        assert!(
            *id > max_before,
            "mutation id {id} after the restart is not above {max_before} handed out before"
        );
    }
    assert!(
        more.windows(2).all(|w| w[0] < w[1]),
        "ids increase: {more:?}"
    );
    check_all(&seg);
}
