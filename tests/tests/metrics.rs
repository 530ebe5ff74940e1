//! `GET /metrics` and the request log (docs/observability.md) against the real binary: after
//! a labelmap write, reads, a merge and two mesh requests, the Prometheus text holds request
//! counts per route template and status with latency histograms, kernel times per kernel and
//! backend, store bytes, the merge in the mutation counter, a mesh cache miss then hit, and
//! the sync backlog; every request has a log line with its id, method, status, bytes, duration
//! and user, and the id comes back in `X-Request-Id`.

use std::collections::BTreeMap;

use serde_json::json;
use tessera_tests::labels::*;
use tessera_tests::*;

/// `name{labels} value` lines of the exposition, keyed by `name{labels}`.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (k, v) = l
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("bad line {l:?}"));
            (
                k.to_string(),
                v.parse().unwrap_or_else(|_| panic!("bad value in {l:?}")),
            )
        })
        .collect()
}

/// The sum of every sample of `name` whose labels contain each of `labels`.
fn total(s: &BTreeMap<String, f64>, name: &str, labels: &[&str]) -> f64 {
    s.iter()
        .filter(|(k, _)| k.split('{').next() == Some(name) && labels.iter().all(|l| k.contains(l)))
        .map(|(_, v)| v)
        .sum()
}

#[test]
fn metrics_count_requests_kernels_stores_mutations_and_mesh_cache() {
    let srv = Server::builder().compute("cpu").start();
    let root = srv.create_repo("metrics");
    let seg = Seg::create(&srv, &root, "seg", &standard_settings(1));
    // A subscriber, so the sync backlog has a queue to report.
    srv.create_instance(&root, "annotation", "synapses");
    srv.post_json(
        &format!("/api/node/{root}/synapses/sync"),
        &json!({"sync": "seg"}),
    )
    .expect(200);
    // Two bodies side by side in one block.
    let vol = Volume::from_fn(
        [0, 0, 0],
        [64, 64, 64],
        |x, _, _| if x < 32 { 1 } else { 2 },
    );
    seg.write(&vol);
    for _ in 0..3 {
        seg.raw([0, 0, 0], [64, 64, 64], "");
    }
    seg.get("mesh/1").expect(200);
    seg.get("mesh/1").expect(200);
    seg.post("merge", serde_json::to_vec(&json!([1, 2])).unwrap())
        .expect(200);
    srv.get(&format!("/api/node/{root}/seg/nosuchkeyword"))
        .expect_4xx();

    let r = srv.get("/metrics").expect(200);
    assert!(
        r.header("content-type")
            .unwrap_or_default()
            .starts_with("text/plain"),
        "{:?}",
        r.header("content-type")
    );
    let text = r.text();
    let s = samples(&text);
    // Raw reads are `raw/<axes>/<size>/<offset>`: the template with its keyword and rest.
    let raw_route = "route=\"/api/node/{uuid}/{data}/raw/{*rest}\"";
    let raw_reads = total(
        &s,
        "tessera_http_requests_total",
        &["method=\"GET\"", "status=\"200\""],
    );
    assert!(raw_reads >= 5.0, "GET 200 requests: {raw_reads}\n{text}");
    assert!(
        total(
            &s,
            "tessera_http_requests_total",
            &[raw_route, "status=\"200\""]
        ) >= 3.0,
        "{text}"
    );
    // The merge is told apart from other data routes by its keyword ...
    assert_eq!(
        total(
            &s,
            "tessera_http_requests_total",
            &[
                "route=\"/api/node/{uuid}/{data}/merge\"",
                "method=\"POST\"",
                "status=\"200\""
            ]
        ),
        1.0,
        "{text}"
    );
    // ... while an unknown keyword keeps the template, so labels stay bounded.
    assert!(!text.contains("nosuchkeyword"), "{text}");
    assert!(
        total(
            &s,
            "tessera_http_requests_total",
            &[
                "route=\"/api/node/{uuid}/{data}/{keyword}\"",
                "status=\"400\""
            ]
        ) >= 1.0,
        "{text}"
    );
    // Latency histograms per route, with buckets.
    assert!(
        total(
            &s,
            "tessera_http_request_duration_seconds_count",
            &["route=\"/api/node/{uuid}/{data}/merge\""]
        ) == 1.0,
        "{text}"
    );
    assert!(
        text.contains("tessera_http_request_duration_seconds_bucket{"),
        "{text}"
    );
    // Kernels, by kernel and backend.
    assert!(
        total(
            &s,
            "tessera_kernel_seconds_count",
            &["kernel=\"surface\"", "backend=\"cpu\""]
        ) >= 1.0,
        "{text}"
    );
    assert!(
        total(&s, "tessera_kernel_seconds_count", &["backend=\"cpu\""]) >= 3.0,
        "{text}"
    );
    // Store traffic.
    assert!(
        total(
            &s,
            "tessera_store_bytes_written_total",
            &["store=\"default\""]
        ) > 1000.0,
        "{text}"
    );
    assert!(
        total(&s, "tessera_store_bytes_read_total", &[]) > 0.0,
        "{text}"
    );
    // The merge, once; the second mesh request hit the cache.
    assert_eq!(
        total(
            &s,
            "tessera_mutations_total",
            &["datatype=\"labelmap\"", "action=\"merge\""]
        ),
        1.0,
        "{text}"
    );
    assert!(
        total(&s, "tessera_mesh_cache_total", &["result=\"miss\""]) >= 1.0,
        "{text}"
    );
    assert!(
        total(&s, "tessera_mesh_cache_total", &["result=\"hit\""]) >= 1.0,
        "{text}"
    );
    assert!(
        text.contains("tessera_sync_backlog{subscription="),
        "{text}"
    );
}

#[test]
fn every_request_is_logged_with_its_id_and_user() {
    let srv = Server::start();
    let r = srv.get_with_headers("/api/heartbeat?u=zoe", &[("X-Request-Id", "trace-me-123")]);
    assert_eq!(r.header("x-request-id").as_deref(), Some("trace-me-123"));
    let fresh = srv.get("/api/server/info").expect(200);
    let id = fresh.header("x-request-id").expect("a request id");
    assert!(id.len() >= 16, "{id}");
    srv.get("/api/node/nosuchnode/info").expect_4xx();
    // neuclease sends its token as `admintoken=`: it must not end up in the log.
    srv.get("/api/heartbeat?u=ann&admintoken=hunter2secret")
        .expect(200);
    // The log is written as requests finish; give the writer a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let log = loop {
        let log = srv.log();
        if log.contains(&id) && log.contains("nosuchnode") && log.contains("u=ann")
            || std::time::Instant::now() > deadline
        {
            break log;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let line = |needle: &str| {
        log.lines()
            .find(|l| l.contains("tessera::access") && l.contains(needle))
            .unwrap_or_else(|| panic!("no access line with {needle}:\n{log}"))
            .to_string()
    };
    let hb = line("trace-me-123");
    for want in [
        "method=GET",
        "uri=/api/heartbeat?u=zoe",
        "status=200",
        "user=\"zoe\"",
        "ms=",
    ] {
        assert!(hb.contains(want), "{want} missing in {hb}");
    }
    assert!(line(&id).contains("bytes="), "{}", line(&id));
    assert!(
        line("nosuchnode").contains("status=400"),
        "{}",
        line("nosuchnode")
    );
    assert!(
        line("u=ann").contains("admintoken=REDACTED") && !log.contains("hunter2secret"),
        "{}",
        line("u=ann")
    );
}

#[test]
fn json_logs_are_one_object_per_line() {
    let srv = Server::builder().env("TESSERA_LOG_FORMAT", "json").start();
    srv.get("/api/heartbeat?u=json").expect(200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let log = srv.log();
        let found = log.lines().filter(|l| l.starts_with('{')).find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            (v["target"] == "tessera::access" && v["fields"]["uri"] == "/api/heartbeat?u=json")
                .then_some(v)
        });
        if let Some(v) = found {
            assert_eq!(v["fields"]["status"], 200, "{v}");
            assert_eq!(v["fields"]["user"], "json", "{v}");
            assert!(
                v["fields"]["id"].as_str().is_some_and(|s| !s.is_empty()),
                "{v}"
            );
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no JSON access line:\n{log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
