//! labelmap edits from several clients on overlapping bodies at once end in a state equal to a
//! serial execution of the acknowledged edits, in the order of the mutation log.
//!
//! Six client threads edit one labelmap (`KeepMeshes` on, so a mesh worker remeshes every
//! changed body while the edits go on) whose bodies they share: two build merge chains
//! (merging each body with a neighbour's, so chains of merges grow), one cleaves supervoxels
//! out of whatever body holds them (the bodies the mergers are merging), one splits bodies,
//! one splits supervoxels, one does any of these; a seventh thread keeps asking for meshes of
//! the bodies being edited (`GET mesh/<body>` builds them while splits rewrite their blocks).
//! A request may be refused (4xx: the body changed under it); any other answer is a failure.
//!
//! Then, once the sync workers caught up: the mutation log (`GET mutations`), replayed in the
//! order it is returned on a reference model of the initial state (`labels::replay`), must hold
//! exactly the acknowledged edits, each applicable at its place and agreeing with its answer;
//! the server must equal the replay (scale-0 supervoxels, mapping of every supervoxel, each
//! body's supervoxels and size: `labels::compare`), its label index and pyramid must agree with
//! its voxels (`check_consistency`), and the kept meshes must be those of the final bodies.
//!
//! `TESSERA_CONCURRENCY_SEED` replays a seed (printed; thread timing still varies);
//! `TESSERA_CONCURRENCY_OPS` sets the edits per client (default 24).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tessera_tests::labels::*;
use tessera_tests::mesh::*;
use tessera_tests::*;

const SIZE: [usize; 3] = [128, 128, 64];
const LEVELS: usize = 2;
const SETTLE: Duration = Duration::from_secs(10);

/// Supervoxels: 32×32×16 boxes 1..=64 with scattered background voxels.
fn fixture() -> Volume {
    Volume::from_fn([0; 3], SIZE, |x, y, z| {
        if hash3(x, y, z, 5).is_multiple_of(19) {
            0
        } else {
            1 + (x / 32 + 4 * (y / 32) + 16 * (z / 16)) as u64
        }
    })
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// What the threads share.
#[derive(Default)]
struct Shared {
    sent: Mutex<Vec<SentEdit>>,
    failures: Mutex<Vec<String>>,
    meshes_built: Mutex<usize>,
    stop: AtomicBool,
}

/// A neighbour of `p` one box away along x or y (inside the volume).
fn neighbour(rng: &mut Rng, p: Coord) -> Coord {
    let mut q = p;
    let a = rng.below(2) as usize;
    let step = if rng.below(2) == 0 { 32 } else { -32 };
    q[a] = (q[a] + step).rem_euclid(SIZE[a] as i32);
    q
}

/// The edits of client `c`: its role picks the kind.
fn client(c: usize, seed: u64, ops: usize, http: Http, uuid: String, sh: Arc<Shared>) {
    let mut rng = Rng(seed ^ (0x9E37 * (c as u64 + 1)));
    let base = format!("/api/node/{uuid}/seg");
    let mut done = 0;
    let mut tries = 0;
    while done < ops && tries < ops * 20 {
        tries += 1;
        let kind = match c {
            0 | 1 => 0,
            2 => 1,
            3 => 2,
            4 => 3,
            _ => rng.below(4) as usize,
        };
        let p = random_point(&mut rng, SIZE);
        let q = neighbour(&mut rng, p);
        let edit = match choose_edit(&http, &base, SIZE, kind, p, q) {
            Ok(Some(e)) => e,
            Ok(None) => continue,
            Err(e) => {
                sh.failures.lock().unwrap().push(format!("client {c}: {e}"));
                return;
            }
        };
        let (outcome, bad) = send_edit(&http, &uuid, "seg", &edit);
        if let Some(b) = bad {
            sh.failures.lock().unwrap().push(format!("client {c}: {b}"));
        }
        if outcome == Outcome::Unknown {
            sh.failures
                .lock()
                .unwrap()
                .push(format!("client {c}: no answer to {}", brief(&edit)));
        }
        sh.sent.lock().unwrap().push(SentEdit {
            uuid: uuid.clone(),
            client: c,
            edit,
            outcome,
        });
        done += 1;
    }
}

/// Builds meshes of the bodies under random points until told to stop: 200 or 404 (the body
/// went away meanwhile) only.
fn mesher(seed: u64, http: Http, uuid: String, sh: Arc<Shared>) {
    let mut rng = Rng(seed ^ 0x3E5);
    let base = format!("/api/node/{uuid}/seg");
    while !sh.stop.load(Ordering::SeqCst) {
        let p = random_point(&mut rng, SIZE);
        let r = http.call(
            "GET",
            &format!("{base}/label/{}_{}_{}", p[0], p[1], p[2]),
            None,
        );
        let body = match r {
            Ok((200, b)) => serde_json::from_slice::<Value>(&b)
                .ok()
                .and_then(|v| v["Label"].as_u64()),
            _ => None,
        };
        let Some(body) = body.filter(|b| *b != 0) else {
            continue;
        };
        match http.call("GET", &format!("{base}/mesh/{body}?format=ngmesh"), None) {
            Ok((200, _)) => *sh.meshes_built.lock().unwrap() += 1,
            Ok((404, _)) => {}
            Ok((st, b)) => sh.failures.lock().unwrap().push(format!(
                "GET mesh/{body}: status {st}: {}",
                String::from_utf8_lossy(&b[..b.len().min(300)])
            )),
            Err(e) => sh.failures.lock().unwrap().push(format!("mesher: {e}")),
        }
    }
}

#[test]
fn concurrent_edits_equal_a_serial_replay_of_the_log() {
    let seed = env_u64("TESSERA_CONCURRENCY_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            & 0xFFFF_FFFF
    });
    let ops = env_u64("TESSERA_CONCURRENCY_OPS").unwrap_or(24) as usize;
    eprintln!(
        "concurrency: seed {seed} (TESSERA_CONCURRENCY_SEED={seed} replays it), {ops} edits per client"
    );
    let started = Instant::now();
    let srv = Server::start();
    let root = srv.create_repo("concurrency");
    let mut settings = mesh_settings(LEVELS as u32);
    settings["KeepMeshes"] = json!("true");
    let seg = Seg::create(&srv, &root, "seg", &settings);
    seg.write(&fixture());
    // bodies: runs of four boxes along x
    let mut setup = Vec::new();
    for base in (1..=64).step_by(4) {
        let edit = Edit::Merge {
            target: base,
            merged: vec![base + 1, base + 2, base + 3],
        };
        let (outcome, bad) = send_edit(&Http::new(srv.base_url()), &root, "seg", &edit);
        assert!(
            bad.is_none() && matches!(outcome, Outcome::Acked(..)),
            "setup merge: {outcome:?} {bad:?}"
        );
        setup.push(SentEdit {
            uuid: root.clone(),
            client: 99,
            edit,
            outcome,
        });
    }

    let sh = Arc::new(Shared::default());
    sh.sent.lock().unwrap().extend(setup);
    let clients: Vec<_> = (0..6)
        .map(|c| {
            let (http, uuid, sh) = (Http::new(srv.base_url()), root.clone(), sh.clone());
            thread::spawn(move || client(c, seed, ops, http, uuid, sh))
        })
        .collect();
    let mesh_thread = {
        let (http, uuid, sh) = (Http::new(srv.base_url()), root.clone(), sh.clone());
        thread::spawn(move || mesher(seed, http, uuid, sh))
    };
    for c in clients {
        c.join().expect("client panicked");
    }
    sh.stop.store(true, Ordering::SeqCst);
    mesh_thread.join().expect("mesher panicked");
    let edit_secs = started.elapsed().as_secs_f64();

    let mut violations: Vec<String> = sh.failures.lock().unwrap().clone();
    let sent = sh.sent.lock().unwrap().clone();
    if let Err(e) = sync_caught_up(&srv, 120) {
        violations.push(e);
    }
    let records = seg.mutations();
    let mut oracle = Oracle::new(Model::new(fixture()));
    let replayed = replay(&mut oracle, &records, &sent);
    violations.extend(replayed.violations.iter().cloned());
    violations.extend(compare(&seg, &oracle, SIZE));
    let consistent = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        check_consistency_settled(&seg, SIZE, LEVELS, SETTLE)
    }));
    if let Err(e) = consistent {
        violations.push(format!(
            "label index / pyramid vs voxels: {}",
            e.downcast_ref::<String>().cloned().unwrap_or_default()
        ));
    }
    // Not a requirement (the log order is the serial order), but worth knowing: is the
    // MutationID order one too? IDs are handed out before an edit waits for its bodies' locks.
    let ids: Vec<u64> = records
        .iter()
        .filter_map(|r| r["MutationID"].as_u64())
        .collect();
    let inversions = ids.windows(2).filter(|w| w[0] > w[1]).count();
    let mut by_id = records.clone();
    by_id.sort_by_key(|r| r["MutationID"].as_u64());
    let mut id_oracle = Oracle::new(Model::new(fixture()));
    let id_replay = replay(&mut id_oracle, &by_id, &sent);
    let id_order_ok = id_replay.violations.is_empty()
        && id_oracle.model.sv == oracle.model.sv
        && id_oracle.model.map == oracle.model.map;
    eprintln!(
        "log order vs MutationID order: {inversions} adjacent inversions; replaying in MutationID order {}",
        if id_order_ok {
            "gives the same state".to_string()
        } else {
            format!(
                "does not give the server's state ({} replay violations, e.g. {:?})",
                id_replay.violations.len(),
                id_replay.violations.first()
            )
        }
    );
    let bodies: BTreeSet<u64> = oracle.bodies().into_keys().collect();
    violations.extend(kept_mesh_diffs(&seg, &bodies, &bodies));

    let mut acked = [0usize; 4];
    let mut refused = [0usize; 4];
    for s in sent.iter().filter(|s| s.client != 99) {
        match s.outcome {
            Outcome::Acked(..) => acked[s.edit.kind()] += 1,
            Outcome::Refused(_) => refused[s.edit.kind()] += 1,
            Outcome::Unknown => {}
        }
    }
    eprintln!(
        "concurrency summary: seed {seed}, 6 clients, {:.1} s of edits; acknowledged merge/cleave/split/split-supervoxel {acked:?}, refused {refused:?}; {} log records replayed, {} bodies, {} meshes built on demand; violations {}",
        edit_secs,
        replayed.applied,
        bodies.len(),
        sh.meshes_built.lock().unwrap(),
        violations.len()
    );
    assert!(
        acked.iter().sum::<usize>() >= 6,
        "too few edits were acknowledged to mean anything: {acked:?}"
    );
    assert!(
        violations.is_empty(),
        "{} violations (seed {seed}):\n{}",
        violations.len(),
        violations.join("\n")
    );
}
