//! labelsz datatype (spec §4.8, §6.1) against a live annotation instance synced to a labelmap:
//! `count`, `counts`, `top` and `threshold` match counts the test computes itself from the
//! voxels it wrote and the points it posted — after element posts, deletes and moves, right
//! after a labelmap merge's response (no waiting), per version, restricted to an ROI, and after
//! `POST reload`. Bad input is a 400 and changes nothing.
//!
//! Fixture: labelmap `segmentation` (128×64×64, 64³ blocks) of six bodies laid out by x, y, z
//! (no background), annotation `synapses` synced to it, labelsz `synapses_labelsz` (all
//! points) and `roi_labelsz` (points in roi `myroi`) synced to `synapses`.

use std::collections::{BTreeMap, BTreeSet};

use tessera_tests::labels::*;
use tessera_tests::*;

const SIZE: [usize; 3] = [128, 64, 64];
const TYPES: [&str; 5] = ["PostSyn", "PreSyn", "Gap", "Note", "AllSyn"];
/// Spans [z, y, x0, x1] of 32³ blocks.
const ROI_SPANS: [[i32; 4]; 2] = [[0, 0, 0, 1], [1, 1, 2, 3]];
const SZ: &str = "synapses_labelsz";
const SZ_ROI: &str = "roi_labelsz";

/// The supervoxel written at a voxel.
fn label_of(p: [i32; 3]) -> u64 {
    let [x, y, z] = p;
    match x / 32 {
        0 => 10,
        1 if y < 32 => 20,
        1 => 30,
        2 => 40,
        _ if z < 32 => 50,
        _ => 60,
    }
}

fn in_roi(p: [i32; 3]) -> bool {
    let b = p.map(|c| c.div_euclid(32));
    ROI_SPANS
        .iter()
        .any(|s| s[0] == b[2] && s[1] == b[1] && s[2] <= b[0] && b[0] <= s[3])
}

/// What the test knows: the points, and which body each supervoxel belongs to.
#[derive(Clone, Default)]
struct Model {
    points: BTreeMap<[i32; 3], &'static str>,
    body: BTreeMap<u64, u64>,
}

impl Model {
    fn body_of(&self, p: [i32; 3]) -> u64 {
        let sv = label_of(p);
        self.body.get(&sv).copied().unwrap_or(sv)
    }

    /// Counts per body of one index type, nonzero only.
    fn counts(&self, ty: &str, roi: bool) -> BTreeMap<u64, u32> {
        let mut out = BTreeMap::new();
        for (p, kind) in &self.points {
            let hit = if ty == "AllSyn" {
                *kind != "Note"
            } else {
                *kind == ty
            };
            if hit && (!roi || in_roi(*p)) {
                *out.entry(self.body_of(*p)).or_insert(0) += 1;
            }
        }
        out
    }
}

fn element(p: [i32; 3], kind: &str, rels: Value) -> Value {
    json!({"Pos": p, "Kind": kind, "Tags": [], "Prop": {}, "Rels": rels})
}

/// `n` points at distinct pseudo-random positions, kinds weighted so counts differ, with each
/// PreSyn related to the PostSyn generated after it (both posted).
fn generate(
    n: usize,
    seed: u64,
    taken: &BTreeMap<[i32; 3], &'static str>,
) -> Vec<([i32; 3], &'static str)> {
    let mut out: Vec<([i32; 3], &'static str)> = Vec::new();
    let mut seen: BTreeSet<[i32; 3]> = taken.keys().copied().collect();
    let mut i = 0u64;
    while out.len() < n {
        i += 1;
        let h = hash3(i as i32, seed as i32, 7, seed);
        let p = [
            (h % SIZE[0] as u64) as i32,
            ((h >> 16) % SIZE[1] as u64) as i32,
            ((h >> 32) % SIZE[2] as u64) as i32,
        ];
        if !seen.insert(p) {
            continue;
        }
        let kind = match (h >> 48) % 10 {
            0..=3 => "PostSyn",
            4..=6 => "PreSyn",
            7 => "Gap",
            _ => "Note",
        };
        out.push((p, kind));
    }
    out
}

fn elements_json(points: &[([i32; 3], &'static str)]) -> Vec<u8> {
    // Pair each PreSyn with the next PostSyn (relationships both ways).
    let mut rels: BTreeMap<[i32; 3], Vec<Value>> = BTreeMap::new();
    let mut pending: Option<[i32; 3]> = None;
    for (p, kind) in points {
        match *kind {
            "PreSyn" => pending = Some(*p),
            "PostSyn" => {
                if let Some(pre) = pending.take() {
                    rels.entry(pre)
                        .or_default()
                        .push(json!({"Rel": "PreSynTo", "To": p}));
                    rels.entry(*p)
                        .or_default()
                        .push(json!({"Rel": "PostSynTo", "To": pre}));
                }
            }
            _ => {}
        }
    }
    let elems: Vec<Value> = points
        .iter()
        .map(|(p, k)| element(*p, k, json!(rels.remove(p).unwrap_or_default())))
        .collect();
    serde_json::to_vec(&elems).unwrap()
}

fn xyz(p: [i32; 3]) -> String {
    format!("{}_{}_{}", p[0], p[1], p[2])
}

struct Fx {
    srv: Server,
    root: String,
}

impl Fx {
    fn path(&self, uuid: &str, name: &str, rest: &str) -> String {
        format!("/api/node/{uuid}/{name}/{rest}")
    }

    #[track_caller]
    fn post_elements(&self, uuid: &str, model: &mut Model, points: &[([i32; 3], &'static str)]) {
        self.srv
            .post(
                &self.path(uuid, "synapses", "elements"),
                elements_json(points),
            )
            .expect(200);
        model.points.extend(points.iter().copied());
    }

    /// Every read of labelsz `name` at `uuid` agrees with `model`.
    #[track_caller]
    fn check(&self, uuid: &str, name: &str, model: &Model) {
        let roi = name == SZ_ROI;
        let bodies: BTreeSet<u64> = [10, 20, 30, 40, 50, 60]
            .into_iter()
            .map(|sv| model.body.get(&sv).copied().unwrap_or(sv))
            .collect();
        for ty in TYPES {
            let want = model.counts(ty, roi);
            let at = |rest: &str| self.path(uuid, name, rest);
            // count, for every body, every merged-away supervoxel and an unknown label.
            let mut ask: Vec<u64> = vec![10, 20, 30, 40, 50, 60, 999];
            ask.extend(bodies.iter().copied());
            for &l in &ask {
                let n = want.get(&l).copied().unwrap_or(0);
                self.srv
                    .get(&at(&format!("count/{l}/{ty}")))
                    .expect(200)
                    .expect_body(&format!(r#"{{"Label":{l},"{ty}":{n}}}"#));
            }
            // counts, in request order.
            let body: Vec<String> = ask
                .iter()
                .rev()
                .map(|l| {
                    format!(
                        r#"{{"Label":{l},"{ty}":{}}}"#,
                        want.get(l).copied().unwrap_or(0)
                    )
                })
                .collect();
            let rev: Vec<u64> = ask.iter().rev().copied().collect();
            self.srv
                .get_with_body(
                    &at(&format!("counts/{ty}")),
                    serde_json::to_vec(&rev).unwrap(),
                )
                .expect(200)
                .expect_body(&format!("[{}]", body.join(",")));
            // top and threshold: count descending, ties by ascending label.
            let mut ranked: Vec<(u64, u32)> = want.iter().map(|(l, n)| (*l, *n)).collect();
            ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            let sizes = |r: &[(u64, u32)]| {
                let items: Vec<String> = r
                    .iter()
                    .map(|(l, n)| format!(r#"{{"Label":{l},"Size":{n}}}"#))
                    .collect();
                format!("[{}]", items.join(","))
            };
            for n in [1usize, 2, 3, 100] {
                self.srv
                    .get(&at(&format!("top/{n}/{ty}")))
                    .expect(200)
                    .expect_body(&sizes(&ranked[..n.min(ranked.len())]));
            }
            let mut ts: Vec<u32> = ranked.iter().map(|r| r.1).collect();
            ts.extend([0, 1, u32::MAX]);
            for t in ts {
                let above: Vec<(u64, u32)> = ranked.iter().copied().filter(|r| r.1 >= t).collect();
                self.srv
                    .get(&at(&format!("threshold/{t}/{ty}")))
                    .expect(200)
                    .expect_body(&sizes(&above));
                for (offset, n) in [(1usize, 2usize), (0, 1), (2, 10), (5, 1)] {
                    let page: Vec<(u64, u32)> =
                        above.iter().copied().skip(offset).take(n).collect();
                    self.srv
                        .get(&at(&format!("threshold/{t}/{ty}?offset={offset}&n={n}")))
                        .expect(200)
                        .expect_body(&sizes(&page));
                }
            }
        }
    }

    #[track_caller]
    fn check_all(&self, uuid: &str, model: &Model) {
        self.check(uuid, SZ, model);
        self.check(uuid, SZ_ROI, model);
    }
}

/// The labelmap, the ROI and the annotation; labelsz instances when `with_labelsz`.
fn setup(with_labelsz: bool) -> Fx {
    let srv = Server::start();
    let root = srv.create_repo("labelsz");
    let seg = Seg::create(&srv, &root, "segmentation", &standard_settings(0));
    seg.write(&Volume::from_fn([0; 3], SIZE, |x, y, z| {
        label_of([x, y, z])
    }));
    srv.create_instance_with(&root, "roi", "myroi", &json!({"BlockSize": "32,32,32"}));
    srv.post(
        &format!("/api/node/{root}/myroi/roi"),
        serde_json::to_vec(&ROI_SPANS).unwrap(),
    )
    .expect(200);
    srv.create_instance(&root, "annotation", "synapses");
    srv.post(
        &format!("/api/node/{root}/synapses/sync"),
        r#"{"sync": "segmentation"}"#,
    )
    .expect(200);
    let fx = Fx { srv, root };
    if with_labelsz {
        create_labelsz(&fx);
    }
    fx
}

fn create_labelsz(fx: &Fx) {
    let root = &fx.root;
    fx.srv.create_instance(root, "labelsz", SZ);
    fx.srv
        .create_instance_with(root, "labelsz", SZ_ROI, &json!({"ROI": "myroi"}));
    for name in [SZ, SZ_ROI] {
        fx.srv
            .post(&fx.path(root, name, "sync"), r#"{"sync": "synapses"}"#)
            .expect(200);
    }
}

#[test]
fn counts_follow_elements_merges_and_versions() {
    let fx = setup(true);
    let root = fx.root.clone();
    let mut model = Model::default();
    fx.check_all(&root, &model);

    let first = generate(300, 1, &model.points);
    fx.post_elements(&root, &mut model, &first[..200]);
    fx.check_all(&root, &model);
    fx.post_elements(&root, &mut model, &first[200..]);
    fx.check_all(&root, &model);

    // Delete one element, move another (across bodies, into and out of the ROI).
    let (gone, _) = first[0];
    fx.srv
        .delete(&fx.path(&root, "synapses", &format!("element/{}", xyz(gone))))
        .expect(200);
    model.points.remove(&gone);
    let (from, kind) = first[1];
    let to = (0..SIZE[0] as i32)
        .map(|x| [x, 5, 5])
        .find(|p| !model.points.contains_key(p) && label_of(*p) != label_of(from))
        .unwrap();
    fx.srv
        .post(
            &fx.path(
                &root,
                "synapses",
                &format!("move/{}/{}", xyz(from), xyz(to)),
            ),
            "",
        )
        .expect(200);
    model.points.remove(&from);
    model.points.insert(to, kind);
    fx.check_all(&root, &model);

    // A merge: the counts follow as soon as the merge answered.
    Seg::open(&fx.srv, &root, "segmentation").merge_ok(&[40, 10, 50], "");
    for sv in [10, 40, 50] {
        model.body.insert(sv, 40);
    }
    fx.check_all(&root, &model);

    // Versions: a child's edits don't show at its parent.
    fx.srv.commit(&root);
    let parent = model.clone();
    let child = fx.srv.newversion(&root);
    fx.check_all(&child, &model);
    let more = generate(60, 2, &model.points);
    fx.post_elements(&child, &mut model, &more);
    Seg::open(&fx.srv, &child, "segmentation").merge_ok(&[60, 20], "");
    for sv in [20, 60] {
        model.body.insert(sv, 60);
    }
    fx.check_all(&child, &model);
    fx.check_all(&root, &parent);
}

#[test]
fn reload_counts_points_posted_before_the_sync() {
    let fx = setup(false);
    let root = fx.root.clone();
    let mut model = Model::default();
    let points = generate(150, 3, &model.points);
    fx.post_elements(&root, &mut model, &points);
    create_labelsz(&fx);
    // Nothing counted yet: the points predate the sync.
    fx.check_all(&root, &Model::default());
    for name in [SZ, SZ_ROI] {
        fx.srv
            .post_empty(&fx.path(&root, name, "reload"))
            .expect(200);
    }
    fx.check_all(&root, &model);
    // Reload again changes nothing; later posts are followed as usual.
    fx.srv.post_empty(&fx.path(&root, SZ, "reload")).expect(200);
    let more = generate(40, 4, &model.points);
    fx.post_elements(&root, &mut model, &more);
    fx.check_all(&root, &model);

    // An ROI given with its UUID; reload at a child version leaves the parent alone.
    fx.srv.create_instance_with(
        &root,
        "labelsz",
        "pinned",
        &json!({"ROI": format!("myroi,{root}")}),
    );
    fx.srv
        .post(&fx.path(&root, "pinned", "sync"), r#"{"sync": "synapses"}"#)
        .expect(200);
    fx.srv.commit(&root);
    let child = fx.srv.newversion(&root);
    fx.srv
        .post_empty(&fx.path(&child, "pinned", "reload"))
        .expect(200);
    let want = model.counts("AllSyn", true);
    let mut ranked: Vec<(u64, u32)> = want.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let items: Vec<String> = ranked
        .iter()
        .map(|(l, n)| format!(r#"{{"Label":{l},"Size":{n}}}"#))
        .collect();
    fx.srv
        .get(&fx.path(&child, "pinned", "top/10/AllSyn"))
        .expect(200)
        .expect_body(&format!("[{}]", items.join(",")));
    fx.srv
        .get(&fx.path(&root, "pinned", "top/10/AllSyn"))
        .expect(200)
        .expect_body("[]");
}

#[test]
fn bad_input_is_refused_and_writes_nothing() {
    let fx = setup(true);
    let root = fx.root.clone();
    let mut model = Model::default();
    let points = generate(80, 5, &model.points);
    fx.post_elements(&root, &mut model, &points);
    let at = |rest: &str| fx.path(&root, SZ, rest);
    for rest in [
        "count/abc/PreSyn",
        "count/-3/PreSyn",
        "count/1/Voxels",
        "count/1/presyn",
        "count/1",
        "top/0/PreSyn",
        "top/-1/PreSyn",
        "top/99999999999999999999/PreSyn",
        "top/3/Bogus",
        "threshold/x/PreSyn",
        "threshold/1/Voxels",
        "threshold/1/PreSyn?n=10001",
        "threshold/1/PreSyn?offset=-2",
        "threshold/1/PreSyn?n=abc",
    ] {
        fx.srv.get(&at(rest)).expect(400);
    }
    for body in ["", "nope", "[1,", "[-1]", "[1.5]", r#"{"a":1}"#] {
        fx.srv
            .get_with_body(&at("counts/PreSyn"), body.as_bytes().to_vec())
            .expect(400);
    }
    fx.srv.post(&at("count/1/PreSyn"), "").expect(400);
    fx.srv.get(&at("reload")).expect(400);
    // Creation: a malformed ROI setting; a sync to something other than an annotation.
    fx.srv
        .post_json(
            &format!("/api/repo/{root}/instance"),
            &json!({"typename": "labelsz", "dataname": "badroi", "ROI": "a,b,c"}),
        )
        .expect(400);
    fx.srv
        .post(&at("sync"), r#"{"sync": "segmentation"}"#)
        .expect(400);
    // A labelsz whose ROI doesn't exist can't reload.
    fx.srv
        .create_instance_with(&root, "labelsz", "noroi", &json!({"ROI": "nosuch"}));
    fx.srv
        .post(&fx.path(&root, "noroi", "sync"), r#"{"sync": "synapses"}"#)
        .expect(200);
    fx.srv
        .post_empty(&fx.path(&root, "noroi", "reload"))
        .expect(400);
    fx.check_all(&root, &model);
    // Help and info.
    let help = fx.srv.get(&at("help")).expect(200).text();
    for word in [
        "count/",
        "counts/",
        "top/",
        "threshold/",
        "reload",
        "AllSyn",
    ] {
        assert!(help.contains(word), "help lacks {word}");
    }
    fx.srv.get("/api/help/labelsz").expect(200);
    let info = fx
        .srv
        .get(&fx.path(&root, SZ_ROI, "info"))
        .expect(200)
        .json();
    assert_eq!(info["Extended"]["StaticROI"], "myroi");
    assert_eq!(info["Base"]["Syncs"], json!(["synapses"]));
}
