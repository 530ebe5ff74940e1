//! annotation datatype (spec §4.7): elements by box, block, tag, ROI and body; deletes and
//! moves that fix partners; POST blocks/labels and reload; versions; bad input refused with
//! nothing written; and label queries that follow every labelmap edit exactly, checked against
//! the voxels (tessera_tests::synapses).

use std::collections::BTreeSet;

use tessera_tests::labels::*;
use tessera_tests::synapses::*;
use tessera_tests::*;

fn url(uuid: &str, rest: &str) -> String {
    format!("/api/node/{uuid}/{rest}")
}

fn positions(v: &Value) -> BTreeSet<Coord> {
    v.as_array()
        .expect("an array of elements")
        .iter()
        .map(pos)
        .collect()
}

/// An unsynced annotation instance "ann" (block size 16) holding three elements.
fn small() -> (Server, String) {
    let srv = Server::start();
    let root = srv.create_repo("ann");
    srv.create_instance_with(
        &root,
        "annotation",
        "ann",
        &json!({"BlockSize": "16,16,16"}),
    );
    let body = json!([
        {"Pos": [1, 2, 3], "Kind": "PreSyn", "Tags": ["a"], "Prop": {"p": "1"},
         "Rels": [{"Rel": "PreSynTo", "To": [20, 2, 3]}, {"Rel": "PreSynTo", "To": [40, 40, 40]}]},
        {"Pos": [20, 2, 3], "Kind": "PostSyn", "Rels": [{"Rel": "PostSynTo", "To": [1, 2, 3]}]},
        {"Pos": [40, 40, 40], "Kind": "PostSyn", "Tags": ["a", "b"],
         "Rels": [{"Rel": "PostSynTo", "To": [1, 2, 3]}]},
    ]);
    srv.post_json(&url(&root, "ann/elements"), &body)
        .expect(200);
    (srv, root)
}

#[test]
fn elements_by_box_block_and_everything() {
    let (srv, root) = small();
    let all = srv
        .get(&url(&root, "ann/elements/64_64_64/0_0_0"))
        .expect(200)
        .json();
    assert_eq!(
        positions(&all),
        BTreeSet::from([[1, 2, 3], [20, 2, 3], [40, 40, 40]])
    );
    let first = all
        .as_array()
        .unwrap()
        .iter()
        .find(|e| pos(e) == [1, 2, 3])
        .unwrap();
    assert_eq!(first["Kind"], json!("PreSyn"));
    assert_eq!(first["Tags"], json!(["a"]));
    assert_eq!(first["Prop"], json!({"p": "1"}));
    assert_eq!(
        first["Rels"][0],
        json!({"Rel": "PreSynTo", "To": [20, 2, 3]})
    );
    // The box filters points; blocks does not.
    let part = srv
        .get(&url(&root, "ann/elements/10_10_10/0_0_0"))
        .expect(200)
        .json();
    assert_eq!(positions(&part), BTreeSet::from([[1, 2, 3]]));
    let blocks = srv
        .get(&url(&root, "ann/blocks/10_10_10/0_0_0"))
        .expect(200)
        .json();
    assert_eq!(
        blocks.as_object().unwrap().keys().collect::<Vec<_>>(),
        vec!["0,0,0"]
    );
    let blocks = srv
        .get(&url(&root, "ann/blocks/48_48_48/0_0_0"))
        .expect(200)
        .json();
    let keys: BTreeSet<&str> = blocks
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, BTreeSet::from(["0,0,0", "1,0,0", "2,2,2"]));
    let everything = srv.get(&url(&root, "ann/all-elements")).expect(200).json();
    assert_eq!(everything, blocks);
    assert_eq!(
        srv.get(&url(&root, "ann/elements/5_5_5/100_100_100"))
            .expect(200)
            .json(),
        json!([])
    );
    let scan = srv.get(&url(&root, "ann/scan")).expect(200).json();
    assert_eq!(scan["num kv pairs"], json!(3));
    assert_eq!(scan["num elements"], json!(3));
    // A post at a stored position replaces the element.
    srv.post_json(
        &url(&root, "ann/elements"),
        &json!([{"Pos": [20, 2, 3], "Kind": "Note", "Prop": {"x": "y"}}]),
    )
    .expect(200);
    let e = srv
        .get(&url(&root, "ann/elements/1_1_1/20_2_3"))
        .expect(200)
        .json();
    assert_eq!(e[0]["Kind"], json!("Note"));
    assert_eq!(e[0]["Rels"], json!([]));
}

#[test]
fn tags_with_and_without_relationships() {
    let (srv, root) = small();
    let a = srv.get(&url(&root, "ann/tag/a")).expect(200).json();
    assert_eq!(positions(&a), BTreeSet::from([[1, 2, 3], [40, 40, 40]]));
    assert!(a[0].get("Rels").is_none(), "no Rels unless asked: {a}");
    let b = srv
        .get(&url(&root, "ann/tag/b?relationships=true"))
        .expect(200)
        .json();
    assert_eq!(b[0]["Rels"], json!([{"Rel": "PostSynTo", "To": [1, 2, 3]}]));
    let v = srv
        .get(&url(&root, "ann/tag/b?relationships=verbose"))
        .expect(200)
        .json();
    assert_eq!(
        v[0]["Rels"][0],
        json!({"Rel": "PostSynTo", "To": [1, 2, 3], "Kind": "PreSyn", "Tags": ["a"], "Prop": {"p": "1"}})
    );
    assert_eq!(
        srv.get(&url(&root, "ann/tag/none")).expect(200).json(),
        json!([])
    );
    // Re-posting without the tag drops it from the index.
    srv.post_json(
        &url(&root, "ann/elements"),
        &json!([{"Pos": [40, 40, 40], "Kind": "PostSyn", "Tags": ["b"], "Rels": [{"Rel": "PostSynTo", "To": [1, 2, 3]}]}]),
    )
    .expect(200);
    let a = srv.get(&url(&root, "ann/tag/a")).expect(200).json();
    assert_eq!(positions(&a), BTreeSet::from([[1, 2, 3]]));
}

#[test]
fn delete_and_move_fix_partners() {
    let (srv, root) = small();
    srv.delete(&url(&root, "ann/element/40_40_40")).expect(200);
    let e = srv
        .get(&url(&root, "ann/elements/1_1_1/1_2_3"))
        .expect(200)
        .json();
    assert_eq!(e[0]["Rels"], json!([{"Rel": "PreSynTo", "To": [20, 2, 3]}]));
    assert_eq!(
        positions(&srv.get(&url(&root, "ann/tag/b")).expect(200).json()),
        BTreeSet::new()
    );
    srv.delete(&url(&root, "ann/element/40_40_40")).expect_4xx();
    // Move the PreSyn: its partner now points at the new place.
    srv.post_empty(&url(&root, "ann/move/1_2_3/30_31_32"))
        .expect(200);
    let all = srv
        .get(&url(&root, "ann/elements/64_64_64/0_0_0"))
        .expect(200)
        .json();
    assert_eq!(positions(&all), BTreeSet::from([[20, 2, 3], [30, 31, 32]]));
    let post = all
        .as_array()
        .unwrap()
        .iter()
        .find(|e| pos(e) == [20, 2, 3])
        .unwrap();
    assert_eq!(
        post["Rels"],
        json!([{"Rel": "PostSynTo", "To": [30, 31, 32]}])
    );
    assert_eq!(
        positions(&srv.get(&url(&root, "ann/tag/a")).expect(200).json()),
        BTreeSet::from([[30, 31, 32]])
    );
    srv.post_empty(&url(&root, "ann/move/1_2_3/5_5_5"))
        .expect_4xx();
    srv.post_empty(&url(&root, "ann/move/30_31_32/20_2_3"))
        .expect_4xx();
    let log = srv.get(&url(&root, "ann/mutations")).expect(200).text();
    assert!(
        log.contains("element-move") && log.contains("element-delete"),
        "{log}"
    );
    // A partner may be one stored earlier: a PostSyn posted alone, pointing at a PreSyn that
    // is stored already.
    let post = json!([{"Pos": [50, 50, 50], "Kind": "PostSyn", "Tags": [], "Prop": {},
                       "Rels": [{"Rel": "PostSynTo", "To": [30, 31, 32]}]}]);
    srv.post_json(&url(&root, "ann/elements"), &post)
        .expect(200);
    let got = srv
        .get(&url(&root, "ann/elements/1_1_1/50_50_50"))
        .expect(200)
        .json();
    assert_eq!(got, post);
}

#[test]
fn bad_input_is_refused_and_writes_nothing() {
    let (srv, root) = small();
    let before = srv.get(&url(&root, "ann/all-elements")).expect(200).json();
    for (body, why) in [
        ("not json", "malformed"),
        (r#"{"Pos":[1,2,3]}"#, "not an array"),
        (r#"[{"Pos":[1,2],"Kind":"PreSyn"}]"#, "two coordinates"),
        (r#"[{"Pos":[1,2,3],"Kind":"Synapse"}]"#, "unknown kind"),
        (
            r#"[{"Pos":[1,2,3000000000],"Kind":"Note"}]"#,
            "out of range",
        ),
        (
            r#"[{"Pos":[9,9,9],"Kind":"Note","Tags":[""]}]"#,
            "empty tag",
        ),
        (
            r#"[{"Pos":[9,9,9],"Kind":"PreSyn","Rels":[{"Rel":"PreSynTo","To":[7,7,7]}]}]"#,
            "missing partner",
        ),
        (
            r#"[{"Pos":[8,8,8],"Kind":"Note"},{"Pos":[9,9,9],"Kind":"Note","Rels":[{"Rel":"GroupedWith","To":[6,6,6]}]}]"#,
            "one of two with a missing partner",
        ),
        (
            r#"[{"Pos":[9,9,9],"Kind":"PreSyn","Rels":[{"Rel":"Likes","To":[1,2,3]}]}]"#,
            "bad relation",
        ),
        (
            r#"[{"Pos":[8,8,8],"Kind":"Note"},{"Pos":[9,9,9],"Kind":"Bogus"}]"#,
            "one bad of two",
        ),
    ] {
        let r = srv.post(&url(&root, "ann/elements"), body).expect_4xx();
        assert!(!r.text().is_empty(), "{why}: the 4xx names the problem");
    }
    srv.post(
        &url(&root, "ann/blocks"),
        r#"{"0,0,0":[{"Pos":[100,0,0],"Kind":"Note"}]}"#,
    )
    .expect_4xx();
    srv.post(&url(&root, "ann/blocks"), r#"{"a,b":[]}"#)
        .expect_4xx();
    srv.post(&url(&root, "ann/labels"), r#"{"x":"[]"}"#)
        .expect_4xx();
    srv.get(&url(&root, "ann/elements/0_1_1/0_0_0"))
        .expect_4xx();
    srv.get(&url(&root, "ann/label/5")).expect_4xx();
    srv.get(&url(&root, "ann/tag/a?relationships=maybe"))
        .expect_4xx();
    assert_eq!(
        srv.get(&url(&root, "ann/all-elements")).expect(200).json(),
        before
    );
    // Sync targets must be labelmaps.
    srv.create_instance(&root, "keyvalue", "kv");
    srv.post(&url(&root, "ann/sync"), r#"{"sync":"kv"}"#)
        .expect_4xx();
    srv.post(&url(&root, "ann/sync"), r#"{"sync":"nothing"}"#)
        .expect_4xx();
}

/// `GET all-elements` (an object of block → elements), flattened.
fn every_element(srv: &Server, root: &str) -> Vec<Value> {
    let v = srv.get(&url(root, "ann/all-elements")).expect(200).json();
    let blocks = v
        .as_object()
        .expect("all-elements answers an object of blocks");
    blocks
        .values()
        .flat_map(|els| els.as_array().expect("a block's elements").clone())
        .collect()
}

/// A POST spread over more blocks than one commit holds (1024) stores everything, and one
/// point outside the synced labelmap or one missing partner, in its last block, is found
/// before anything is written.
#[test]
fn posts_over_many_blocks_commit_in_parts_after_checking_everything() {
    let srv = Server::start();
    let root = srv.create_repo("many");
    let seg = Seg::create(&srv, &root, "seg", &standard_settings(0));
    seg.write(&Volume::from_fn([0; 3], [192, 192, 64], |x, _, _| {
        1 + x as u64 / 64
    }));
    srv.create_instance_with(&root, "annotation", "ann", &json!({"BlockSize": "8,8,8"}));
    srv.post(&url(&root, "ann/sync"), r#"{"sync":"seg"}"#)
        .expect(200);
    // 3000 points in 3000 different 8³ blocks, partners chained across blocks.
    let at = |i: i32| [8 * (i % 20), 8 * (i / 20 % 20), 8 * (i / 400)];
    let mut elements: Vec<Value> = (0..3000)
        .map(|i| {
            json!({"Pos": at(i), "Kind": "Note", "Tags": ["t"],
                   "Rels": [{"Rel": "GroupedWith", "To": at((i + 1) % 3000)}]})
        })
        .collect();
    let mut bad = elements.clone();
    bad.push(json!({"Pos": [500, 500, 500], "Kind": "Note"}));
    srv.post_json(&url(&root, "ann/elements"), &json!(bad))
        .expect_4xx();
    let mut dangling = elements.clone();
    dangling.push(json!({"Pos": [190, 150, 60], "Kind": "Note",
                         "Rels": [{"Rel": "GroupedWith", "To": [191, 151, 61]}]}));
    srv.post_json(&url(&root, "ann/elements"), &json!(dangling))
        .expect_4xx();
    let all = every_element(&srv, &root);
    assert!(all.is_empty(), "nothing written");
    srv.post_json(&url(&root, "ann/elements"), &json!(elements))
        .expect(200);
    let want: BTreeSet<Coord> = elements.iter().map(pos).collect();
    assert_eq!(positions(&json!(every_element(&srv, &root))), want);
    let tagged = srv.get(&url(&root, "ann/tag/t")).expect(200).json();
    assert_eq!(positions(&tagged), want);
    for body in 1..=3 {
        let in_body: BTreeSet<Coord> = want
            .iter()
            .filter(|p| 1 + p[0] as u64 / 64 == body)
            .copied()
            .collect();
        let got = srv
            .get(&url(&root, &format!("ann/label/{body}")))
            .expect(200)
            .json();
        assert_eq!(positions(&got), in_body, "label/{body}");
    }
    // POST blocks over as many blocks replaces each block's elements.
    elements.truncate(1500);
    let mut blocks = serde_json::Map::new();
    for i in 0..3000 {
        let p = at(i);
        let key = format!("{},{},{}", p[0] / 8, p[1] / 8, p[2] / 8);
        let els = if i < 1500 {
            json!([{"Pos": p, "Kind": "PreSyn"}])
        } else {
            json!([])
        };
        blocks.insert(key, els);
    }
    srv.post_json(&url(&root, "ann/blocks"), &Value::Object(blocks))
        .expect(200);
    let all = every_element(&srv, &root);
    let want: BTreeSet<Coord> = elements.iter().map(pos).collect();
    assert_eq!(positions(&json!(all)), want);
    assert!(all.iter().all(|e| e["Kind"] == "PreSyn"));
}

#[test]
fn versions_keep_their_own_elements() {
    let (srv, root) = small();
    srv.commit(&root);
    srv.post_json(
        &url(&root, "ann/elements"),
        &json!([{"Pos": [2, 2, 2], "Kind": "Note"}]),
    )
    .expect_4xx();
    let child = srv.branch(&root, "edit");
    srv.delete(&url(&child, "ann/element/40_40_40")).expect(200);
    srv.post_json(
        &url(&child, "ann/elements"),
        &json!([{"Pos": [2, 2, 2], "Kind": "Note", "Tags": ["b"]}]),
    )
    .expect(200);
    let box_ = "ann/elements/64_64_64/0_0_0";
    assert_eq!(
        positions(&srv.get(&url(&root, box_)).expect(200).json()),
        BTreeSet::from([[1, 2, 3], [20, 2, 3], [40, 40, 40]])
    );
    assert_eq!(
        positions(&srv.get(&url(&child, box_)).expect(200).json()),
        BTreeSet::from([[1, 2, 3], [20, 2, 3], [2, 2, 2]])
    );
    assert_eq!(
        positions(&srv.get(&url(&root, "ann/tag/b")).expect(200).json()),
        BTreeSet::from([[40, 40, 40]])
    );
    assert_eq!(
        positions(&srv.get(&url(&child, "ann/tag/b")).expect(200).json()),
        BTreeSet::from([[2, 2, 2]])
    );
}

#[test]
fn roi_query_returns_the_points_inside() {
    let (srv, root) = small();
    srv.create_instance_with(&root, "roi", "r", &json!({"BlockSize": "8,8,8"}));
    // Blocks x 0..2 at y 0, z 0 (voxels 0..24 x 0..8 x 0..8) and block (5,5,5).
    srv.post(&url(&root, "r/roi"), "[[0,0,0,2],[5,5,5,5]]")
        .expect(200);
    let v = srv.get(&url(&root, "ann/roi/r")).expect(200).json();
    assert_eq!(
        positions(&v),
        BTreeSet::from([[1, 2, 3], [20, 2, 3], [40, 40, 40]])
    );
    srv.post(&url(&root, "r/roi"), "[[0,0,2,2]]").expect(200);
    let v = srv
        .get(&url(&root, &format!("ann/roi/r,{root}")))
        .expect(200)
        .json();
    assert_eq!(positions(&v), BTreeSet::from([[20, 2, 3]]));
    srv.get(&url(&root, "ann/roi/nope")).expect_4xx();
}

/// A labelmap "seg" holding the grid fixture, and "syn" synced to it.
fn synced(srv: &Server) -> Seg<'_> {
    let root = srv.create_repo("synapses");
    let seg = Seg::create(srv, &root, "seg", &standard_settings(0));
    seg.write(&grid_fixture());
    srv.create_instance(&root, "annotation", "syn");
    srv.post(&url(&root, "syn/sync"), r#"{"sync":"seg"}"#)
        .expect(200);
    seg
}

fn kinds(elements: &[Value]) -> Vec<(Coord, String)> {
    elements
        .iter()
        .map(|e| (pos(e), e["Kind"].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn label_queries_follow_every_labelmap_edit_exactly() {
    let srv = Server::start();
    let seg = synced(&srv);
    let elements = synapse_pairs(400, 3);
    srv.post_json(&url(&seg.uuid, "syn/elements"), &json!(elements))
        .expect(200);
    let mut points = kinds(&elements);
    let check = |step: &str, points: &[(Coord, String)], also: &[u64]| {
        let want = bodies_from_voxels(&seg, points);
        assert_labels_match(&seg, "syn", &want, also, step);
        want
    };
    let want = check("ingest", &points, &[]);
    assert!(
        want.len() >= 20,
        "points fall in most supervoxels: {}",
        want.len()
    );
    // label/<l> without relationships by default, with them when asked.
    let some = *want.keys().next().unwrap();
    let v = srv
        .get(&url(&seg.uuid, &format!("syn/label/{some}")))
        .expect(200)
        .json();
    assert!(v[0].get("Rels").is_none());
    let v = srv
        .get(&url(
            &seg.uuid,
            &format!("syn/label/{some}?relationships=true"),
        ))
        .expect(200)
        .json();
    assert_eq!(v[0]["Rels"].as_array().map(Vec::len), Some(1));

    // Reads right after each acknowledgement see the edit.
    edit_sequence(&seg, &mut |step, touched| {
        check(step, &points, touched);
    });
    // Deletes and moves take points out of bodies and into others.
    let (p, _) = points.remove(0);
    srv.delete(&url(
        &seg.uuid,
        &format!("syn/element/{}_{}_{}", p[0], p[1], p[2]),
    ))
    .expect(200);
    check("delete", &points, &[grid_sv(p)]);
    let (from, kind) = points.remove(0);
    let to = [120, 120, 120];
    srv.post_empty(&url(
        &seg.uuid,
        &format!("syn/move/{}_{}_{}/120_120_120", from[0], from[1], from[2]),
    ))
    .expect(200);
    points.push((to, kind));
    check("move", &points, &[]);
}
