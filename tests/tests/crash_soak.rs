//! Crash soak: a real server under mixed load from several clients is killed with SIGKILL at
//! random moments, restarted on the same data, and checked after every restart.
//!
//! Load, per round (all at once, against the current head version):
//! * three labelmap clients: random merges, cleaves, splits and supervoxel splits of the
//!   bodies in the edit region `[0,128)×[0,128)×[0,64)` (`labels::choose_edit`);
//! * a block writer: `POST blocks` of whole blocks of fresh labels in the block region
//!   `[128,192)×[0,128)×[0,64)`, which no edit touches;
//! * a keyvalue writer: unique keys with values of up to 40 KB;
//! * a version client: commits the head, makes a child the new head (`newversion`), and now
//!   and then a named side branch of the committed node, with a key written there.
//!
//! The labelmap keeps meshes (`KeepMeshes`), so a sync worker remeshes after every change.
//! A killer sleeps a random 1.5–6 s, then SIGKILLs the server; requests it cut have an unknown
//! outcome (either is allowed, but all or nothing). Each answer is tallied: acknowledged
//! (2xx), refused (4xx, e.g. a write to a node committed meanwhile) or unknown.
//!
//! After each restart, once the sync workers report they caught up:
//! * every acknowledged keyvalue write is there with its value, no refused one is, an unknown
//!   one is there whole or not at all;
//! * the labelmap's log from the root to the head (`mutations-range`) replayed on a reference
//!   model (`labels::replay`) holds every acknowledged edit and only acknowledged or unknown
//!   ones, each applicable in log order; each block of the block region holds the last
//!   acknowledged write or a later unknown one; the server equals that replay (scale-0
//!   supervoxels, mapping, supervoxel sets, sizes: `labels::compare`);
//! * label index, mapping, sizes and pyramids agree with the scale-0 voxels
//!   (`check_consistency`); `sparsevol` of the bodies the round's edits touched is their voxels;
//! * the kept meshes are keyed by exactly the current bodies, and those of the touched bodies
//!   are the bytes `GET mesh` gives.
//!
//! Summary line: rounds, kills, acknowledged writes checked, violations (must be 0).
//!
//! Run: `TESSERA_BIN=$CARGO_TARGET_DIR/debug/tessera cargo test -p tessera-tests --test
//! crash_soak -- --nocapture`. `TESSERA_SOAK_SECS` (default 75) is how long to keep killing;
//! for hours, e.g. `TESSERA_SOAK_SECS=14400` (with a release build of the server,
//! `TESSERA_BIN=target/release/tessera`, to get through more rounds). `TESSERA_SOAK_SEED`
//! replays a seed's choices (printed at the start; thread timing still varies).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tessera_tests::labels::*;
use tessera_tests::mesh::*;
use tessera_tests::*;

/// The edit region and the whole box (edit region + block region along x).
const EDIT: [usize; 3] = [128, 128, 64];
const BOX: [usize; 3] = [192, 128, 64];
const LEVELS: usize = 2;
/// The block coordinates the block writer writes.
const WRITTEN_BLOCKS: [Coord; 2] = [[2, 0, 0], [2, 1, 0]];
/// Labels the block writer uses lie in [BLOCK_LABELS, MAX_LABEL); the server allocates above
/// MAX_LABEL (reserved first with `POST nextlabel`), so they never meet labels it hands out.
const BLOCK_LABELS: u64 = 1_000_000;
const MAX_LABEL: u64 = 100_000_000;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn fixture() -> Volume {
    Volume::from_fn([0; 3], BOX, |x, y, z| {
        if x >= EDIT[0] as i32 || hash3(x, y, z, 23).is_multiple_of(13) {
            0
        } else {
            1 + (x / 32 + 4 * (y / 32) + 16 * (z / 16)) as u64
        }
    })
}

/// The content of block write `n` at block `c`: two or three boxes of fresh labels.
fn block_content(n: u64, c: Coord) -> Volume {
    let o = [c[0] * 64, c[1] * 64, c[2] * 64];
    let cut = 8 + (n * 7 % 48) as i32;
    let base = BLOCK_LABELS + 4 * n;
    Volume::from_fn(o, [64; 3], |x, y, z| {
        let (lx, ly, lz) = (x - o[0], y - o[1], z - o[2]);
        if (lx + 2 * ly + 3 * lz) % 29 == 0 {
            0
        } else if lx < cut {
            base
        } else if ly < cut || n.is_multiple_of(3) {
            base + 1
        } else {
            base + 2
        }
    })
}

#[derive(Clone, Debug)]
struct KvWrite {
    uuid: String,
    key: String,
    value: Vec<u8>,
    outcome: Outcome,
}

#[derive(Clone, Debug)]
struct BlockWrite {
    n: u64,
    coord: Coord,
    outcome: Outcome,
}

/// Everything sent, over all rounds.
#[derive(Default)]
struct Book {
    edits: Vec<SentEdit>,
    kv: Vec<KvWrite>,
    blocks: Vec<BlockWrite>,
    /// Answers that are neither 2xx nor 4xx, and client errors.
    failures: Vec<String>,
    /// Commits acknowledged, newversions/branches acknowledged.
    commits: usize,
    children: usize,
}

struct Round {
    book: Mutex<Book>,
    head: Mutex<String>,
    stop: AtomicBool,
}

fn outcome_of(r: &Result<(u16, Vec<u8>), String>) -> Outcome {
    match r {
        Ok((st, _)) if (200..300).contains(st) => Outcome::Acked(0, Value::Null),
        Ok((st, _)) => Outcome::Refused(*st),
        Err(_) => Outcome::Unknown,
    }
}

/// Records a non-2xx, non-4xx answer as a failure.
fn note_status(rd: &Round, what: &str, r: &Result<(u16, Vec<u8>), String>) {
    if let Ok((st, b)) = r
        && !(200..500).contains(st)
    {
        rd.book.lock().unwrap().failures.push(format!(
            "{what}: status {st}: {}",
            String::from_utf8_lossy(&b[..b.len().min(300)])
        ));
    }
}

fn editor(c: usize, mut rng: Rng, http: Http, rd: Arc<Round>) {
    while !rd.stop.load(Ordering::SeqCst) {
        let uuid = rd.head.lock().unwrap().clone();
        let base = format!("/api/node/{uuid}/seg");
        let kind = rng.below(4) as usize;
        let (p, q) = (random_point(&mut rng, EDIT), random_point(&mut rng, EDIT));
        let edit = match choose_edit(&http, &base, EDIT, kind, p, q) {
            Ok(Some(e)) => e,
            Ok(None) => continue,
            Err(_) => return, // the server is gone
        };
        let (outcome, bad) = send_edit(&http, &uuid, "seg", &edit);
        let mut b = rd.book.lock().unwrap();
        if let Some(bad) = bad {
            b.failures.push(bad);
        }
        let gone = outcome == Outcome::Unknown;
        b.edits.push(SentEdit {
            uuid,
            client: c,
            edit,
            outcome,
        });
        if gone {
            return;
        }
    }
}

fn block_writer(mut n: u64, http: Http, rd: Arc<Round>) -> u64 {
    while !rd.stop.load(Ordering::SeqCst) {
        let uuid = rd.head.lock().unwrap().clone();
        let coord = WRITTEN_BLOCKS[(n % 2) as usize];
        let body = records_body(&[(coord, gzip(&encode_block(&block_content(n, coord))))]);
        // downres=true: the pyramid follows (DVID's default leaves it to the client)
        let r = http.call(
            "POST",
            &format!("/api/node/{uuid}/seg/blocks?downres=true"),
            Some(body),
        );
        note_status(&rd, "POST blocks", &r);
        let outcome = outcome_of(&r);
        rd.book.lock().unwrap().blocks.push(BlockWrite {
            n,
            coord,
            outcome: outcome.clone(),
        });
        n += 1;
        if outcome == Outcome::Unknown {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    n
}

fn kv_write(http: &Http, rd: &Round, uuid: &str, key: String, value: Vec<u8>) -> Outcome {
    let r = http.call(
        "POST",
        &format!("/api/node/{uuid}/kv/key/{key}"),
        Some(value.clone()),
    );
    note_status(rd, "POST key", &r);
    let outcome = outcome_of(&r);
    rd.book.lock().unwrap().kv.push(KvWrite {
        uuid: uuid.to_string(),
        key,
        value,
        outcome: outcome.clone(),
    });
    outcome
}

fn kv_writer(round: usize, mut rng: Rng, http: Http, rd: Arc<Round>) {
    let mut n = 0;
    while !rd.stop.load(Ordering::SeqCst) {
        let uuid = rd.head.lock().unwrap().clone();
        let len = rng.below(40_000) as usize + 1;
        let seed = rng.next_u64();
        let value: Vec<u8> = (0..len)
            .map(|i| (seed >> (i % 56)) as u8 ^ i as u8)
            .collect();
        if kv_write(&http, &rd, &uuid, format!("r{round}-k{n}"), value) == Outcome::Unknown {
            return;
        }
        n += 1;
    }
}

/// Commits the head every so often and moves it to a new child; sometimes adds a side branch
/// with a key.
fn versioner(round: usize, mut rng: Rng, http: Http, rd: Arc<Round>) {
    let mut n = 0;
    loop {
        let pause = Instant::now() + Duration::from_millis(600 + rng.below(1200));
        while Instant::now() < pause {
            if rd.stop.load(Ordering::SeqCst) {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let head = rd.head.lock().unwrap().clone();
        let r = http.call(
            "POST",
            &format!("/api/node/{head}/commit"),
            Some(br#"{"note": "soak"}"#.to_vec()),
        );
        note_status(&rd, "POST commit", &r);
        match outcome_of(&r) {
            Outcome::Acked(..) => rd.book.lock().unwrap().commits += 1,
            Outcome::Unknown => return,
            Outcome::Refused(_) => {}
        }
        let r = http.call(
            "POST",
            &format!("/api/node/{head}/newversion"),
            Some(b"{}".to_vec()),
        );
        note_status(&rd, "POST newversion", &r);
        match r {
            Ok((200, b)) => {
                let v: Value = serde_json::from_slice(&b).unwrap_or(Value::Null);
                match v["child"].as_str() {
                    Some(child) => {
                        *rd.head.lock().unwrap() = child.to_string();
                        rd.book.lock().unwrap().children += 1;
                    }
                    None => rd
                        .book
                        .lock()
                        .unwrap()
                        .failures
                        .push(format!("newversion: no child in {v}")),
                }
            }
            Ok(_) => {}
            Err(_) => return,
        }
        if rng.below(3) == 0 {
            let name = format!("side-{round}-{n}");
            let r = http.call(
                "POST",
                &format!("/api/node/{head}/branch"),
                Some(json!({"branch": name}).to_string().into_bytes()),
            );
            note_status(&rd, "POST branch", &r);
            match r {
                Ok((200, b)) => {
                    rd.book.lock().unwrap().children += 1;
                    let v: Value = serde_json::from_slice(&b).unwrap_or(Value::Null);
                    if let Some(side) = v["child"].as_str()
                        && kv_write(
                            &http,
                            &rd,
                            side,
                            format!("{name}-key"),
                            name.clone().into_bytes(),
                        ) == Outcome::Unknown
                    {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
        n += 1;
    }
}

/// The head to continue from after a restart: `head`, or when it was committed, its child
/// on its own branch (made by a newversion whose answer was lost), else a new child.
fn usable_head(srv: &Server, head: &str) -> String {
    let info = srv.repo_info(head);
    let nodes = info["DAG"]["Nodes"].as_object().expect("nodes");
    let node = &nodes[head];
    if node["Locked"] != json!(true) {
        return head.to_string();
    }
    let id = node["VersionID"].clone();
    for n in nodes.values() {
        if n["Parents"].as_array().is_some_and(|p| p.contains(&id))
            && n["Branch"] == node["Branch"]
            && n["Locked"] != json!(true)
        {
            return n["UUID"].as_str().expect("uuid").to_string();
        }
    }
    srv.newversion(head)
}

/// What one check after a restart found: violations and the number of acknowledged writes it
/// checked. Sparsevols and meshes are compared for the bodies touched by `book.edits[since..]`
/// (the last round's edits).
fn check(srv: &Server, root: &str, head: &str, book: &Book, since: usize) -> (Vec<String>, usize) {
    let mut v: Vec<String> = Vec::new();
    let mut checked = 0;
    let t = Instant::now();
    let mut phases: Vec<(&str, f64)> = Vec::new();
    let lap = |name: &'static str, phases: &mut Vec<(&str, f64)>| {
        phases.push((name, t.elapsed().as_secs_f64()));
    };
    if let Err(e) = sync_caught_up(srv, 180) {
        v.push(e);
    }
    // keyvalue
    for w in &book.kv {
        let got = srv.get(&format!("/api/node/{}/kv/key/{}", w.uuid, w.key));
        let ok = match (&w.outcome, got.status) {
            (Outcome::Acked(..), 200) => got.body == w.value,
            (Outcome::Acked(..), _) => false,
            (Outcome::Refused(_), 404) => true,
            (Outcome::Unknown, 404) => true,
            (Outcome::Unknown, 200) => got.body == w.value,
            _ => false,
        };
        if matches!(w.outcome, Outcome::Acked(..)) {
            checked += 1;
        }
        if !ok {
            v.push(format!(
                "keyvalue {} at {} ({:?}): status {}, {} bytes (sent {})",
                w.key,
                w.uuid,
                w.outcome,
                got.status,
                got.body.len(),
                w.value.len()
            ));
        }
    }
    lap("sync+kv", &mut phases);
    // labelmap: replay the log, then the block region
    let seg = Seg::open(srv, head, "seg");
    let range = seg.get(&format!("mutations-range/{root}/{head}"));
    let records: Vec<Value> = match range.status {
        200 => serde_json::from_slice(&range.body).unwrap_or_default(),
        s => {
            v.push(format!("{}: status {s}", range.what));
            Vec::new()
        }
    };
    let mut oracle = Oracle::new(Model::new(fixture()));
    let replayed = replay(&mut oracle, &records, &book.edits);
    v.extend(replayed.violations);
    checked += book
        .edits
        .iter()
        .filter(|e| matches!(e.outcome, Outcome::Acked(..)))
        .count();
    let server_sv = seg.raw([0; 3], BOX, "supervoxels=true");
    for c in WRITTEN_BLOCKS {
        let writes: Vec<&BlockWrite> = book.blocks.iter().filter(|w| w.coord == c).collect();
        let last_acked = writes
            .iter()
            .rposition(|w| matches!(w.outcome, Outcome::Acked(..)));
        checked += writes
            .iter()
            .filter(|w| matches!(w.outcome, Outcome::Acked(..)))
            .count();
        let mut allowed: Vec<(String, Volume)> = vec![match last_acked {
            Some(i) => (
                format!("write {}", writes[i].n),
                block_content(writes[i].n, c),
            ),
            None => ("the fixture".into(), fixture().block(c, [64; 3])),
        }];
        for w in &writes[last_acked.map_or(0, |i| i + 1)..] {
            if w.outcome == Outcome::Unknown {
                allowed.push((format!("unanswered write {}", w.n), block_content(w.n, c)));
            }
        }
        let got = server_sv.block(c, [64; 3]);
        match allowed.iter().find(|(_, want)| *want == got) {
            Some((_, want)) => oracle.paste(want),
            None => v.push(format!(
                "block {c:?} holds neither {:?}: vs the first, {}",
                allowed.iter().map(|a| &a.0).collect::<Vec<_>>(),
                volume_diff(&got, &allowed[0].1)
            )),
        }
    }
    lap("replay", &mut phases);
    v.extend(compare(&seg, &oracle, BOX));
    lap("compare", &mut phases);
    // index, mapping, sizes and pyramid vs the voxels
    let consistent = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        check_consistency_settled(&seg, BOX, LEVELS, Duration::from_secs(10))
    }));
    if let Err(e) = consistent {
        v.push(format!(
            "label index / mapping / pyramid vs voxels: {}",
            e.downcast_ref::<String>().cloned().unwrap_or_default()
        ));
    }
    lap("consistency", &mut phases);
    // sparsevols and meshes of the bodies touched by acknowledged edits
    let bodies = oracle.bodies();
    let mut touched: BTreeSet<u64> = BTreeSet::new();
    for e in &book.edits[since..] {
        if let Outcome::Acked(_, reply) = &e.outcome {
            match &e.edit {
                Edit::Merge { target, .. } => touched.insert(*target),
                Edit::Cleave { body, .. } | Edit::Split { body, .. } => touched.insert(*body),
                Edit::SplitSupervoxel { sv, .. } => touched.insert(oracle.body_of(*sv)),
            };
            for k in ["CleavedLabel", "label"] {
                if let Some(l) = reply.get(k).and_then(Value::as_u64) {
                    touched.insert(l);
                }
            }
        }
    }
    touched.retain(|b| bodies.contains_key(b));
    let mapped = oracle.model.mapped();
    let mut voxels: BTreeMap<u64, VoxelSet> = BTreeMap::new();
    for (p, l) in mapped.voxels() {
        if touched.contains(&l) {
            voxels.entry(l).or_default().insert(p);
        }
    }
    for b in &touched {
        match seg.sparsevol(*b, "") {
            Some(s) if s == voxels[b] => {}
            Some(s) => v.push(format!(
                "sparsevol/{b}: {} voxels, the replay has {}",
                s.len(),
                voxels[b].len()
            )),
            None => v.push(format!("sparsevol/{b}: 404")),
        }
    }
    let all: BTreeSet<u64> = bodies.keys().copied().collect();
    lap("sparsevol", &mut phases);
    v.extend(kept_mesh_diffs(&seg, &all, &touched));
    lap("meshes", &mut phases);
    eprintln!(
        "  check phases (cumulative s): {phases:?}, {} touched bodies",
        touched.len()
    );
    (v, checked)
}

#[test]
fn crash_soak() {
    let secs = env_u64("TESSERA_SOAK_SECS").unwrap_or(75);
    let seed = env_u64("TESSERA_SOAK_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            & 0xFFFF_FFFF
    });
    eprintln!("crash soak: seed {seed} (TESSERA_SOAK_SEED={seed} replays it), {secs} s");
    let mut rng = Rng(seed);
    let mut srv = Server::start();
    let root = srv.create_repo("soak");
    srv.create_instance(&root, "keyvalue", "kv");
    let mut settings = mesh_settings(LEVELS as u32);
    settings["KeepMeshes"] = json!("true");
    {
        let seg = Seg::create(&srv, &root, "seg", &settings);
        seg.post_empty(&format!("nextlabel/{MAX_LABEL}"))
            .expect(200);
        seg.write(&fixture());
    }
    let mut book = Book::default();
    // bodies: runs of four boxes along x
    let http = Http::new(srv.base_url());
    for base in (1..=64).step_by(4) {
        let edit = Edit::Merge {
            target: base,
            merged: vec![base + 1, base + 2, base + 3],
        };
        let (outcome, bad) = send_edit(&http, &root, "seg", &edit);
        assert!(
            bad.is_none() && matches!(outcome, Outcome::Acked(..)),
            "setup merge: {outcome:?} {bad:?}"
        );
        book.edits.push(SentEdit {
            uuid: root.clone(),
            client: 99,
            edit,
            outcome,
        });
    }

    let started = Instant::now();
    let mut head = root.clone();
    let (mut rounds, mut kills, mut checked_total, mut violations_total) = (0, 0, 0, 0);
    let mut block_n = 0u64;
    let mut all_violations: Vec<String> = Vec::new();
    while started.elapsed() < Duration::from_secs(secs) || rounds == 0 {
        rounds += 1;
        let since = book.edits.len();
        let rd = Arc::new(Round {
            book: Mutex::new(std::mem::take(&mut book)),
            head: Mutex::new(head.clone()),
            stop: AtomicBool::new(false),
        });
        let base = srv.base_url().to_string();
        let mut handles = Vec::new();
        for c in 0..3 {
            let (r, h, rd) = (Rng(rng.next_u64()), Http::new(&base), rd.clone());
            handles.push(thread::spawn(move || editor(c, r, h, rd)));
        }
        let blocks = {
            let (h, rd) = (Http::new(&base), rd.clone());
            thread::spawn(move || block_writer(block_n, h, rd))
        };
        {
            let (r, h, rd) = (Rng(rng.next_u64()), Http::new(&base), rd.clone());
            handles.push(thread::spawn(move || kv_writer(rounds, r, h, rd)));
        }
        {
            let (r, h, rd) = (Rng(rng.next_u64()), Http::new(&base), rd.clone());
            handles.push(thread::spawn(move || versioner(rounds, r, h, rd)));
        }
        let load = Duration::from_millis(1500 + rng.below(4500));
        thread::sleep(load);
        srv.kill();
        kills += 1;
        rd.stop.store(true, Ordering::SeqCst);
        for h in handles {
            h.join().expect("client thread panicked");
        }
        block_n = blocks.join().expect("block writer panicked");
        let rd = Arc::try_unwrap(rd)
            .ok()
            .expect("round shared only by joined threads");
        head = rd.head.into_inner().unwrap();
        book = rd.book.into_inner().unwrap();

        srv.start_again();
        head = usable_head(&srv, &head);
        let t = Instant::now();
        let (v, checked) = check(&srv, &root, &head, &book, since);
        let failures = std::mem::take(&mut book.failures);
        eprintln!(
            "round {rounds}: load {:.1} s then SIGKILL; check {:.1} s: {checked} acknowledged writes checked, {} violations, {} bad answers; {} edits, {} block writes, {} keys, {} commits so far",
            load.as_secs_f64(),
            t.elapsed().as_secs_f64(),
            v.len(),
            failures.len(),
            book.edits.len(),
            book.blocks.len(),
            book.kv.len(),
            book.commits
        );
        for x in v.iter().chain(&failures).take(20) {
            eprintln!("  violation: {x}");
        }
        checked_total += checked;
        violations_total += v.len() + failures.len();
        all_violations.extend(
            v.into_iter()
                .chain(failures)
                .map(|x| format!("round {rounds}: {x}")),
        );
    }
    let ok = |o: &Outcome| matches!(o, Outcome::Acked(..));
    eprintln!(
        "crash soak summary: seed {seed}, {:.0} s, 6 clients, runs {rounds}, kills {kills}, acknowledged writes checked {checked_total} (last check: {} edits, {} block writes, {} keys acknowledged; {} commits, {} new versions), violations {violations_total}",
        started.elapsed().as_secs_f64(),
        book.edits.iter().filter(|e| ok(&e.outcome)).count(),
        book.blocks.iter().filter(|e| ok(&e.outcome)).count(),
        book.kv.iter().filter(|e| ok(&e.outcome)).count(),
        book.commits,
        book.children
    );
    assert!(
        book.edits
            .iter()
            .filter(|e| ok(&e.outcome) && e.client != 99)
            .count()
            > 0
            && book.kv.iter().any(|e| ok(&e.outcome))
            && book.blocks.iter().any(|e| ok(&e.outcome)),
        "the load did not get anything acknowledged of some kind"
    );
    assert!(
        all_violations.is_empty(),
        "{} violations (seed {seed}):\n{}",
        all_violations.len(),
        all_violations.join("\n")
    );
}
