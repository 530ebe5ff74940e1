//! Neuroglancer in a real browser: the standalone build of npm `@janelia-flyem/neuroglancer`
//! 2.37.5 in headless Debian Chromium (software WebGL), driven by playwright-core
//! (`tests/browser/neuroglancer.mjs`), loads `tessera demo` through `dvid://` sources: grayscale
//! under the segmentation with one body forced magenta, that body's mesh in the 3-D view, and the
//! synapse annotation layer; then upstream PyPI `neuroglancer` (its Python-served build,
//! `tests/browser/neuroglancer_pypi.py`) shows the grayscale and the body. The screenshots must
//! show each (pixel counts), every request the server logged must have succeeded, and the
//! screenshots are kept under `target/test-artifacts/neuroglancer/`. Needs
//! `bash scripts/browser.sh` and `bash scripts/pyenv.sh` (scripts/test.sh runs both); a missing
//! browser or package fails the test.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use tessera_tests::demo::Demo;
use tessera_tests::*;

fn browser_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("TESSERA_BROWSER") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").expect("HOME is not set (or set TESSERA_BROWSER)");
    PathBuf::from(home).join(".cache/tessera/browser")
}

#[test]
fn neuroglancer_shows_grayscale_segments_meshes_and_synapses() {
    let dir = browser_dir();
    let dist = dir.join("package/dist/min");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        dist.join("index.html").is_file()
            && dir.join("node_modules/playwright-core").is_dir()
            && std::path::Path::new(&chromium).is_file(),
        "the neuroglancer test needs chromium, node and {}; run `bash scripts/browser.sh`",
        dir.display()
    );
    let data = tempfile::tempdir().expect("tempdir");
    let demo = Demo::start(data.path());
    let (_, child) = demo.nodes();
    // The body with a skeleton (neuroglancer asks for the selected body's skeleton), looked at
    // from its skeleton's first node, which lies inside it.
    let keys = demo.json(&format!("/api/node/{child}/segmentation_skeletons/keys"));
    let key = keys[0].as_str().expect("a skeleton key").to_string();
    let body = key.trim_end_matches("_swc").to_string();
    let swc = String::from_utf8(demo.get(&format!(
        "/api/node/{child}/segmentation_skeletons/key/{key}"
    )))
    .expect("SWC text");
    let node: Vec<&str> = swc
        .lines()
        .find(|l| !l.starts_with('#'))
        .expect("a skeleton node")
        .split_whitespace()
        .collect();
    let position = format!("{},{},{}", node[2], node[3], node[4]);

    let artifacts =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts/neuroglancer");
    // ESM resolves imports next to the script: run it from beside the node_modules.
    let script = dir.join("neuroglancer.mjs");
    std::fs::copy(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser/neuroglancer.mjs"),
        &script,
    )
    .expect("copy the driver script");
    let out = Command::new("node")
        .arg(&script)
        .arg("standalone")
        .arg(&dist)
        .arg(&demo.base)
        .arg(&child)
        .arg(&body)
        .arg(&position)
        .arg(&artifacts)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "the browser driver failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_str(stdout.trim()).expect("the driver prints one JSON object");
    let views = &r["views"];
    let n = |view: &str, what: &str| views[view][what].as_u64().unwrap_or(0);
    eprintln!("neuroglancer views: {views}");
    assert!(
        n("xy", "magenta") > 200,
        "the forced segment colour in the xy view: {views}"
    );
    assert!(
        n("xy", "greyLevels") >= 20,
        "grayscale texture in the xy view: {views}"
    );
    assert!(
        n("xy", "lit") > n("xy", "pixels") / 3,
        "the xy view is drawn: {views}"
    );
    assert!(
        n("mesh", "magenta") > 300,
        "the body's mesh in the 3-D view: {views}"
    );
    assert!(n("synapses", "green") > 300, "synapse points: {views}");

    // What the browser saw, and what the server logged: all of it answered.
    let responses = r["responses"].as_array().expect("responses");
    let kinds = [
        "/grayscale/",
        "compression=googlegzip",
        ".ngmesh",
        "/synapses/",
    ];
    for k in kinds {
        assert!(
            responses
                .iter()
                .any(|x| x["url"].as_str().unwrap_or("").contains(k)),
            "neuroglancer made no {k} request"
        );
    }
    let bad: Vec<&Value> = responses
        .iter()
        .filter(|x| x["status"].as_u64() != Some(200))
        .collect();
    assert!(bad.is_empty(), "requests the browser saw fail: {bad:#?}");
    let logged = demo.requests();
    let from_ng: Vec<_> = logged
        .iter()
        .filter(|(_, _, u)| u.contains("app=Neuroglancer"))
        .collect();
    assert!(
        from_ng.len() >= 20,
        "{} neuroglancer requests logged",
        from_ng.len()
    );
    let failed: Vec<_> = logged.iter().filter(|(s, _, _)| *s >= 400).collect();
    assert!(
        failed.is_empty(),
        "the server answered 4xx/5xx: {failed:#?}"
    );
    eprintln!(
        "neuroglancer: {} requests seen by the browser, {} logged by the server, 0 failed",
        responses.len(),
        logged.len()
    );

    // Upstream PyPI neuroglancer, its Python-served build, on the same body.
    let mut viewer = Command::new(tessera_tests::mesh::python())
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser/neuroglancer_pypi.py"))
        .args([
            demo.base.as_str(),
            child.as_str(),
            body.as_str(),
            position.as_str(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the PyPI neuroglancer viewer");
    let mut url = String::new();
    BufReader::new(viewer.stdout.take().expect("stdout"))
        .read_line(&mut url)
        .expect("the viewer prints its URL");
    assert!(url.starts_with("http://127.0.0.1:"), "viewer URL: {url:?}");
    let out = Command::new("node")
        .arg(&script)
        .args(["url", url.trim(), demo.base.as_str()])
        .arg(&artifacts)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("run node");
    drop(viewer.stdin.take()); // the viewer serves until its stdin closes
    let _ = viewer.wait();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "the browser driver failed on the PyPI viewer ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    let pypi = &r["views"]["pypi"];
    eprintln!("PyPI neuroglancer view: {pypi}");
    assert!(
        pypi["magenta"].as_u64().unwrap_or(0) > 200,
        "forced segment colour: {pypi}"
    );
    assert!(
        pypi["greyLevels"].as_u64().unwrap_or(0) >= 20,
        "grayscale texture: {pypi}"
    );
    let responses = r["responses"].as_array().expect("responses");
    assert!(
        responses.len() >= 10 && responses.iter().all(|x| x["status"].as_u64() == Some(200)),
        "the PyPI viewer's requests to Tessera: {responses:#?}"
    );
    let failed: Vec<_> = demo
        .requests()
        .into_iter()
        .filter(|(s, _, _)| *s >= 400)
        .collect();
    assert!(
        failed.is_empty(),
        "the server answered 4xx/5xx: {failed:#?}"
    );
    demo.stop();
}
