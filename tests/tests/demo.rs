//! `tessera demo`: the dataset it builds holds what the issue lists (grayscale with structure
//! and levels, a segmentation of a few hundred bodies with scales to 3 and meshes kept, synapses
//! counted by labelsz, an ROI, bookmarks, body annotations, a committed root and a child with a
//! merge, a cleave and a split), it prints the neuroglancer link and sources, and a second start
//! on the same directory serves the same dataset without rebuilding it.

use tessera_tests::demo::Demo;
use tessera_tests::*;

#[test]
fn demo_builds_the_dataset_and_serves_it_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let demo = Demo::start(dir.path());
    let (root, child) = demo.nodes();
    let text = demo.ready.join("\n");
    assert!(text.contains("built and serving"), "{text}");
    assert!(
        text.contains("https://neuroglancer-demo.appspot.com/#!"),
        "{text}"
    );
    assert!(
        text.contains(&format!("dvid://{}/{child}/segmentation", demo.base)),
        "{text}"
    );
    assert!(text.contains(&format!(
        "precomputed://{}/precomputed/{child}/segmentation",
        demo.base
    )));

    let repo = demo.json(&format!("/api/repo/{root}/info"));
    for name in [
        "grayscale",
        "grayscale_1",
        "grayscale_2",
        "grayscale_3",
        "segmentation",
        "segmentation_meshes",
        "synapses",
        "synapses_labelsz",
        "roi",
        "bookmark_annotations",
        "segmentation_annotations",
    ] {
        assert!(
            repo["DataInstances"].get(name).is_some(),
            "no {name}: {repo}"
        );
    }
    let node = |uuid: &str, rest: &str| format!("/api/node/{uuid}/{rest}");
    assert_eq!(
        demo.json(&node(&root, "info"))["Locked"],
        json!(true),
        "root is committed"
    );
    let seg = demo.json(&node(&child, "segmentation/info"));
    assert!(
        seg["Extended"]["MaxDownresLevel"].as_u64().unwrap() >= 3,
        "{seg}"
    );

    // A few hundred bodies, each with its kept mesh.
    let meshes = demo.json(&node(&child, "segmentation_meshes/keys"));
    let n = meshes.as_array().unwrap().len();
    assert!((200..=1000).contains(&n), "{n} meshes");
    // The child's proofreading: merges, a cleave and a split; the root has none of it.
    let actions: Vec<String> = demo
        .json(&node(&child, "segmentation/mutations"))
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["Action"].as_str().unwrap_or_default().to_string())
        .collect();
    for a in ["merge-complete", "cleave-complete", "split-complete"] {
        assert!(
            actions.iter().any(|x| x == a),
            "no {a} in the child: {actions:?}"
        );
    }
    // Grayscale with structure: dark walls where the segmentation changes.
    let gray = demo.get(&node(&child, "grayscale/raw/0_1_2/192_192_1/0_0_64"));
    let labels = demo.get(&node(
        &child,
        "segmentation/raw/0_1_2/192_192_1/0_0_64?supervoxels=true",
    ));
    let sv = |i: usize| u64::from_le_bytes(labels[8 * i..8 * i + 8].try_into().unwrap());
    let (mut wall, mut inside) = (Vec::new(), Vec::new());
    for y in 0..191 {
        for x in 0..191 {
            let i = y * 192 + x;
            if sv(i) != sv(i + 1) || sv(i) != sv(i + 192) {
                wall.push(f64::from(gray[i]));
            } else {
                inside.push(f64::from(gray[i]));
            }
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    assert!(mean(&inside) - mean(&wall) > 60.0, "walls are dark");
    // Synapses counted per body, agreeing with the body's points.
    let top = demo.json(&node(&child, "synapses_labelsz/top/5/PreSyn"));
    let top = top.as_array().unwrap();
    assert_eq!(top.len(), 5, "{top:?}");
    let body = top[0]["Label"].as_u64().unwrap();
    let points = demo.json(&node(&child, &format!("synapses/label/{body}")));
    let pre = points
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["Kind"] == "PreSyn")
        .count() as u64;
    assert_eq!(pre, top[0]["Size"].as_u64().unwrap());
    assert!(
        !demo
            .json(&node(&child, "roi/roi"))
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        demo.json(&node(&child, "bookmark_annotations/tag/user:demo"))
            .as_array()
            .map(Vec::len),
        Some(5)
    );
    assert!(
        !demo
            .json(&node(&child, "segmentation_annotations/keys"))
            .as_array()
            .unwrap()
            .is_empty()
    );
    let info = demo.json(&format!("/precomputed/{child}/segmentation/info"));
    assert_eq!(info["scales"].as_array().map(Vec::len), Some(4));
    demo.stop();

    // Again on the same directory: served as it is.
    let again = Demo::start(dir.path());
    assert!(
        again.ready[0].contains("serving (built before)"),
        "{:?}",
        again.ready
    );
    assert_eq!(again.nodes(), (root, child));
    again.stop();
}
