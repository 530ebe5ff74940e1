//! The web console (`api/console/`, served at `/` and `/console/<file>`) in a real browser:
//! `tessera demo` (grayscale, segmentation labelmap with proofreading mutations, synapses) gets a
//! more interesting version DAG over HTTP (the proofread node committed, two children of it — a
//! new version and a named branch — with notes and a log) and a second repo with a labelmap of
//! labels beyond 2^53; then `tests/browser/console.py` (PyPI playwright driving Debian Chromium)
//! checks that the console shows every repo's DAG as `/api/repos/info` has it, a node's note,
//! log, committed state and instances, the labelmap's mutation log, server info and polled load,
//! labelmap slices at two versions and two scales, the large labels, and grayscale slices at two
//! scales — each screenshot equal, pixel for pixel, to the voxels fetched over HTTP and colored
//! by the console's label color function — that a token set in the console rides on every
//! request, and that against a second server with access control on, the refusal of a
//! token-less visit reads as a message and a reader's token shows its repo. Screenshots are kept under `target/test-artifacts/console/`. Needs
//! `bash scripts/browser.sh` (chromium) and `bash scripts/pyenv.sh` (playwright); a missing
//! browser or package fails the test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::{Value, json};
use tessera_tests::clients::run_suite;
use tessera_tests::demo::Demo;
use tessera_tests::mesh::python;
use tessera_tests::{Server, binary_path};

const GUARD_SECRET: &str = "the console test's signing secret, 32+ bytes";
const GUARD_ADMIN: &str = "console-test-admin";

/// POSTs `body` to `path` and returns the JSON answer; anything but 200 fails the test.
fn post(demo: &Demo, path: &str, body: Value) -> Value {
    let r = reqwest::blocking::Client::new()
        .post(format!("{}{path}", demo.base))
        .json(&body)
        .send()
        .unwrap_or_else(|e| panic!("POST {path}: {e}"));
    let status = r.status().as_u16();
    let text = r.text().expect("body");
    assert_eq!(status, 200, "POST {path} {body}: {text}");
    if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("POST {path}: {e}: {text}"))
    }
}

#[test]
fn console_shows_dags_nodes_mutations_load_and_exact_slices() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).is_file(),
        "the console test needs chromium at {chromium}; run `bash scripts/browser.sh` (or set CHROMIUM)"
    );
    let py = python();
    let has_playwright = py.is_file()
        && Command::new(&py)
            .args(["-c", "import playwright.sync_api, numpy, PIL"])
            .status()
            .is_ok_and(|s| s.success());
    assert!(
        has_playwright,
        "the console test needs PyPI playwright, numpy and Pillow in {}; run `bash scripts/pyenv.sh`",
        py.display()
    );

    let data = tempfile::tempdir().expect("tempdir");
    let demo = Demo::start(data.path());
    let (root, child) = demo.nodes();
    let http = reqwest::blocking::Client::new();

    // The console's files: the page at `/`, and 404 for a file it does not have.
    let r = http.get(format!("{}/", demo.base)).send().expect("GET /");
    let kind = r.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap_or("")
        .to_string();
    assert_eq!(r.status().as_u16(), 200, "GET /");
    assert!(kind.starts_with("text/html"), "GET / is {kind}");
    assert!(
        r.text().expect("body").contains("/console/console.js"),
        "the page loads the console's script"
    );
    let r = http
        .get(format!("{}/console/x", demo.base))
        .send()
        .expect("GET /console/x");
    assert_eq!(r.status().as_u16(), 404, "GET /console/x");

    // A DAG with a fork: the proofread node committed with a note and log, then a new version
    // and a named branch below it, the branch with a log of its own.
    post(
        &demo,
        &format!("/api/node/{child}/commit"),
        json!({"note": "proofread round 1 done", "log": ["merged bodies", "cleaved and split"]}),
    );
    let next = post(
        &demo,
        &format!("/api/node/{child}/newversion"),
        json!({"note": "round 2"}),
    )["child"]
        .as_str()
        .expect("newversion child")
        .to_string();
    let review = post(
        &demo,
        &format!("/api/node/{child}/branch"),
        json!({"branch": "review", "note": "review of round 1"}),
    )["child"]
        .as_str()
        .expect("branch child")
        .to_string();
    post(
        &demo,
        &format!("/api/node/{review}/log"),
        json!({"log": ["checked bodies 1-20", "flagged one"]}),
    );
    // A second, empty repo: the console lists every repo with its own DAG.
    let other = post(
        &demo,
        "/api/repos",
        json!({"alias": "scratch", "description": "an empty second repo"}),
    )["root"]
        .as_str()
        .expect("second repo root")
        .to_string();
    // In it, a labelmap whose labels straddle 2^53 (where JavaScript numbers stop being exact)
    // and reach 2^64 - 1: 8x8-voxel squares, each its own label.
    post(
        &demo,
        &format!("/api/repo/{other}/instance"),
        json!({"typename": "labelmap", "dataname": "large_labels"}),
    );
    let mut block = Vec::with_capacity(64 * 64 * 64 * 8);
    for _z in 0..64u64 {
        for y in 0..64u64 {
            for x in 0..64u64 {
                let k = x / 8 + (y / 8) * 8;
                let label = match (x / 8 + y / 16) % 6 {
                    0 => 0,
                    1 => u64::MAX - k,
                    2 => (1 << 53) + k,
                    3 => (1 << 53) - 1 - k,
                    4 => k.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                    _ => k + 1,
                };
                block.extend_from_slice(&label.to_le_bytes());
            }
        }
    }
    let r = http
        .post(format!(
            "{}/api/node/{other}/large_labels/raw/0_1_2/64_64_64/0_0_0",
            demo.base
        ))
        .body(block)
        .send()
        .expect("POST large labels");
    assert_eq!(
        r.status().as_u16(),
        200,
        "POST large labels: {:?}",
        r.text()
    );
    let repos = demo.json("/api/repos/info");
    let nodes = &repos[&root]["DAG"]["Nodes"];
    assert_eq!(
        nodes.as_object().map(|n| n.len()),
        Some(4),
        "the demo repo's DAG: {nodes}"
    );
    assert_eq!(
        nodes[&child]["Children"].as_array().map(|c| c.len()),
        Some(2),
        "{child} has the new version {next} and the branch {review} below it"
    );
    assert!(repos[&other].is_object(), "the second repo {other}");

    let artifacts =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts/console");
    let _ = std::fs::remove_dir_all(&artifacts);
    let log = || {
        format!(
            "--- demo log ---\n{}",
            std::fs::read_to_string(&demo.log).unwrap_or_default()
        )
    };
    // A second server with access control on (docs/access.md): the console must say what a
    // refusal means, and show the repo once a reader's token is entered.
    let guarded = Server::builder()
        .config(&format!(
            "[auth]\nenforce = \"token\"\njwt_secret = \"{GUARD_SECRET}\"\nadmin_token = \"{GUARD_ADMIN}\"\n"
        ))
        .start();
    let guarded_root = guarded
        .request(
            "POST",
            "/api/repos",
            &[("Authorization", &format!("Bearer {GUARD_ADMIN}"))],
            Some(br#"{"alias": "guarded"}"#.to_vec()),
        )
        .expect(200)
        .json()["root"]
        .as_str()
        .expect("root")
        .to_string();
    let reader = Command::new(binary_path())
        .args([
            "token", "new", "--user", "reader", "--role", "read", "--repo",
        ])
        .arg(&guarded_root)
        .env("TESSERA_JWT_SECRET", GUARD_SECRET)
        .output()
        .expect("tessera token new");
    assert!(reader.status.success(), "{reader:?}");
    let reader = String::from_utf8(reader.stdout)
        .expect("utf-8")
        .trim()
        .to_string();

    let started = Instant::now();
    // The root and the review branch: the branch inherits the proofreading, so the labelmap
    // differs between the two (the suite finds a plane where it does); and the large labels.
    let results = run_suite(
        &py,
        "../browser/console.py",
        &[
            &demo.base,
            artifacts.to_str().expect("utf-8 path"),
            &root,
            &review,
            &other,
            guarded.base_url(),
            &reader,
            &guarded_root,
        ],
        15,
        &log,
    );
    eprintln!(
        "console.py: {} checks in {:.1} s; screenshots in {}",
        results.len(),
        started.elapsed().as_secs_f64(),
        artifacts.display()
    );
    for shot in ["dag.png", "mutations.png", "console.png", "auth-errors.png"] {
        assert!(artifacts.join(shot).is_file(), "screenshot {shot}");
    }

    // What the browser asked for, as the server logged it: each part of the console read its
    // endpoint, and nothing failed except the deliberate 404 above.
    let logged = demo.requests();
    for part in [
        "/api/repos/info",
        "/api/load",
        "/api/server/info",
        "/note",
        "/log",
        "/commit",
        "/mutations",
        "/raw/0_1_2/",
    ] {
        assert!(
            logged
                .iter()
                .any(|(s, m, u)| *s == 200 && m == "GET" && u.contains(part)),
            "no successful GET of {part} was logged"
        );
    }
    let failed: Vec<_> = logged
        .iter()
        .filter(|(s, _, u)| *s >= 400 && u != "/console/x")
        .collect();
    assert!(
        failed.is_empty(),
        "the server answered 4xx/5xx: {failed:#?}"
    );
    demo.stop();
}
