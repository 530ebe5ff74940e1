//! The whole denormalized chain labelmap → annotation → labelsz, checked against the voxels:
//! after every kind of labelmap edit, and after `kill -9` cut a burst of edits (with the sync
//! workers running, and with them held so every edit is still queued), each body's points
//! (`annotation label/<b>`) and each body's synapse counts (`labelsz count`, `counts`, `top`)
//! are exactly what the labelmap's voxels say. The oracle reads the voxels, never the
//! annotation or labelsz instances (tessera_tests::synapses).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tessera_tests::labels::*;
use tessera_tests::synapses::*;
use tessera_tests::*;

const TYPES: [&str; 3] = ["PreSyn", "PostSyn", "AllSyn"];

/// A labelmap "seg" holding the grid fixture, annotation "syn" synced to it holding `pairs`
/// synapse points, and labelsz "sz" synced to "syn". Returns the root and the points.
fn chain(srv: &Server, pairs: usize) -> (String, Vec<(Coord, String)>) {
    let root = srv.create_repo("chain");
    let seg = Seg::create(srv, &root, "seg", &standard_settings(0));
    seg.write(&grid_fixture());
    srv.create_instance(&root, "annotation", "syn");
    srv.post(&format!("/api/node/{root}/syn/sync"), r#"{"sync":"seg"}"#)
        .expect(200);
    srv.create_instance(&root, "labelsz", "sz");
    srv.post(&format!("/api/node/{root}/sz/sync"), r#"{"sync":"syn"}"#)
        .expect(200);
    let elements = synapse_pairs(pairs, 11);
    srv.post_json(&format!("/api/node/{root}/syn/elements"), &json!(elements))
        .expect(200);
    let points = elements
        .iter()
        .map(|e| (pos(e), e["Kind"].as_str().unwrap().to_string()))
        .collect();
    (root, points)
}

/// The counts labelsz must report for `ty`, from the oracle's bodies.
fn counts_of(want: &Bodies, ty: &str) -> BTreeMap<u64, u64> {
    want.iter()
        .map(|(b, pts)| {
            let n = pts
                .iter()
                .filter(|(_, k)| ty == "AllSyn" || k == ty)
                .count();
            (*b, n as u64)
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// Annotation label queries and labelsz counts and rankings agree with the voxels, for every
/// body holding points and every label in `also`.
#[track_caller]
fn check_chain(seg: &Seg, points: &[(Coord, String)], also: &[u64], step: &str) {
    let want = bodies_from_voxels(seg, points);
    assert_labels_match(seg, "syn", &want, also, step);
    let sz = |rest: &str| format!("/api/node/{}/sz/{rest}", seg.uuid);
    let labels: Vec<u64> = want
        .keys()
        .chain(also)
        .copied()
        .collect::<BTreeSet<u64>>()
        .into_iter()
        .collect();
    for ty in TYPES {
        let counts = counts_of(&want, ty);
        let got = seg
            .srv
            .get_with_body(
                &sz(&format!("counts/{ty}")),
                serde_json::to_vec(&labels).unwrap(),
            )
            .expect(200)
            .json();
        let got: BTreeMap<u64, u64> = got
            .as_array()
            .expect("counts answers an array")
            .iter()
            .map(|c| (c["Label"].as_u64().unwrap(), c[ty].as_u64().unwrap()))
            .collect();
        for l in &labels {
            assert_eq!(
                got.get(l).copied(),
                Some(counts.get(l).copied().unwrap_or(0)),
                "{step}: labelsz {ty} count of {l}"
            );
        }
        let mut ranked: Vec<(u64, u64)> = counts.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let top = seg
            .srv
            .get(&sz(&format!("top/1000/{ty}")))
            .expect(200)
            .json();
        let top: Vec<(u64, u64)> = top
            .as_array()
            .expect("top answers an array")
            .iter()
            .map(|c| (c["Label"].as_u64().unwrap(), c["Size"].as_u64().unwrap()))
            .collect();
        assert_eq!(top, ranked, "{step}: labelsz top/1000/{ty}");
    }
}

#[test]
fn counts_follow_every_labelmap_edit_exactly() {
    let srv = Server::start();
    let (root, points) = chain(&srv, 600);
    let seg = Seg::open(&srv, &root, "seg");
    check_chain(&seg, &points, &[], "ingest");
    edit_sequence(&seg, &mut |step, touched| {
        check_chain(&seg, &points, touched, step)
    });
    // A child version edits on; the locked parent keeps its counts.
    let parent_want = bodies_from_voxels(&seg, &points);
    srv.commit(&root);
    let child = srv.newversion(&root);
    let seg_child = seg.at(&child);
    seg_child.merge_ok(&[13, 16, 19], "");
    check_chain(&seg_child, &points, &[16, 19], "merge in a child");
    assert_labels_match(
        &seg,
        "syn",
        &parent_want,
        &[],
        "parent after the child's merge",
    );
    check_chain(&seg, &points, &[], "parent after the child's merge");
}

/// The 27 grid supervoxels' centres: random edits pick bodies by the voxel under one.
fn centres() -> Vec<Coord> {
    let mut out = Vec::new();
    for z in 0..3 {
        for y in 0..3 {
            for x in 0..3 {
                out.push([x * 43 + 21, y * 43 + 21, z * 43 + 21]);
            }
        }
    }
    out
}

/// Why a burst worker stopped: the server went away (expected once it is killed), or it gave
/// an answer it should not have.
enum Stop {
    Gone,
    Wrong(String),
}

/// A random merge or cleave of the bodies under grid centres; the labels it touched go into
/// `touched` when it is accepted. 400 is a legitimate answer (the body changed under a
/// concurrent request); any other non-200 answer is `Stop::Wrong`.
fn random_edit(
    http: &Http,
    base: &str,
    rng: &mut Rng,
    touched: &Mutex<BTreeSet<u64>>,
) -> Result<bool, Stop> {
    let call = |method: &str, path: &str, body: Option<Vec<u8>>| {
        http.call(method, path, body).map_err(|_| Stop::Gone)
    };
    let parse = |body: &[u8]| -> Result<Value, Stop> {
        serde_json::from_slice(body).map_err(|e| Stop::Wrong(e.to_string()))
    };
    let cs = centres();
    let label = |rng: &mut Rng| -> Result<u64, Stop> {
        let p = cs[rng.below(cs.len() as u64) as usize];
        let (st, body) = call(
            "GET",
            &format!("{base}/label/{}_{}_{}", p[0], p[1], p[2]),
            None,
        )?;
        let v = parse(&body)?;
        match v["Label"].as_u64() {
            Some(l) if st == 200 => Ok(l),
            _ => Err(Stop::Wrong(format!("label at {p:?}: {st} {v}"))),
        }
    };
    let a = label(rng)?;
    let b = label(rng)?;
    let (path, payload) = if rng.below(2) == 0 && a != b {
        (format!("{base}/merge"), json!([a, b]))
    } else {
        let (st, body) = call("GET", &format!("{base}/supervoxels/{a}"), None)?;
        if st != 200 {
            return Ok(false); // merged away since the label read
        }
        let svs: Vec<u64> =
            serde_json::from_slice(&body).map_err(|e| Stop::Wrong(e.to_string()))?;
        if svs.len() < 2 {
            return Ok(false);
        }
        let sv = svs[rng.below(svs.len() as u64) as usize];
        (format!("{base}/cleave/{a}"), json!([sv]))
    };
    let (st, body) = call("POST", &path, Some(serde_json::to_vec(&payload).unwrap()))?;
    match st {
        200 => {
            let v = parse(&body)?;
            let mut t = touched.lock().unwrap();
            t.extend([a, b]);
            t.extend(v["CleavedLabel"].as_u64());
            Ok(true)
        }
        400 => Ok(false),
        _ => Err(Stop::Wrong(format!(
            "{path}: {st} {}",
            String::from_utf8_lossy(&body)
        ))),
    }
}

/// After a restart, waits for every sync subscriber to catch up.
fn wait_synced(srv: &Server) {
    let status = srv.get("/api/server/sync?wait=120").expect(200).json();
    assert_eq!(status["CaughtUp"], json!(true), "{status}");
}

#[test]
fn kill_during_an_edit_burst_leaves_the_chain_exact() {
    let mut srv = Server::start();
    let (root, points) = chain(&srv, 600);
    let base = format!("/api/node/{root}/seg");
    let stop = Arc::new(AtomicBool::new(false));
    let touched = Arc::new(Mutex::new(BTreeSet::new()));
    let accepted = Arc::new(Mutex::new(0usize));
    let workers: Vec<_> = (0..3u64)
        .map(|t| {
            let http = Http::new(srv.base_url());
            let (base, stop, touched, accepted) = (
                base.clone(),
                stop.clone(),
                touched.clone(),
                accepted.clone(),
            );
            thread::spawn(move || {
                let mut rng = Rng(0x5EED + t);
                while !stop.load(Ordering::SeqCst) {
                    if random_edit(&http, &base, &mut rng, &touched)? {
                        *accepted.lock().unwrap() += 1;
                    }
                }
                Ok::<(), Stop>(())
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while *accepted.lock().unwrap() < 15 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    srv.kill();
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        // A transport error is expected once the server is gone; a wrong answer is not.
        if let Err(Stop::Wrong(e)) = w.join().expect("worker panicked") {
            panic!("unexpected answer before the kill: {e}");
        }
    }
    assert!(
        *accepted.lock().unwrap() > 0,
        "no edit landed before the kill"
    );

    srv.start_again();
    wait_synced(&srv);
    let seg = Seg::open(&srv, &root, "seg");
    let mut also: Vec<u64> = (10..=36).collect();
    also.extend(touched.lock().unwrap().iter());
    check_chain(&seg, &points, &also, "after kill -9 during a burst");
}

/// Edits acknowledged while no sync worker ran (TESSERA_SYNC_HOLD) are all still queued when
/// the process is killed; the restarted server applies every one of them.
#[test]
fn edits_queued_at_a_kill_are_applied_after_restart() {
    const HOLD: &str = "TESSERA_SYNC_HOLD";
    let mut srv = Server::builder().env(HOLD, "1").start();
    // The elements' own events wait too: posted while held.
    let (root, mut points) = chain(&srv, 300);
    let mut also: Vec<u64> = (10..=36).collect();
    {
        let seg = Seg::open(&srv, &root, "seg");
        seg.merge_ok(&[20, 21, 23], "");
        let (c, _) = seg.cleave_ok(20, &[23], "");
        also.push(c);
        seg.renumber(&[6000, 33], "").expect(200);
        also.push(6000);
    }
    let extra = json!([{"Pos": [100, 100, 100], "Kind": "PreSyn"}]);
    srv.post_json(&format!("/api/node/{root}/syn/elements"), &extra)
        .expect(200);
    points.push(([100, 100, 100], "PreSyn".into()));
    let status = srv.get("/api/server/sync?wait=0.5").expect(200).json();
    assert_eq!(status["CaughtUp"], json!(false), "{status}");

    srv.kill();
    srv.remove_env(HOLD);
    srv.start_again();
    wait_synced(&srv);
    let seg = Seg::open(&srv, &root, "seg");
    check_chain(&seg, &points, &also, "after a kill with every edit queued");
}
