//! Prometheus metrics (`GET /metrics`, docs/observability.md). The engine records kernel
//! times, mutations and mesh cache lookups through the `metrics` facade; this module installs
//! the one recorder of the process, records requests, and reads the rest (store traffic,
//! sync backlog) from the engine when scraped.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tessera_engine::Engine;
use tessera_storage::ContentStore;

/// Latency buckets, seconds: 100 µs (a cached read) to a minute (a large ingest).
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// The process's recorder, installed on first use.
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(BUCKETS)
                .expect("static buckets are valid");
            let handle = match builder.install_recorder() {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!("metrics recorder not installed: {e}");
                    PrometheusBuilder::new().build_recorder().handle()
                }
            };
            describe();
            // Histograms buffer samples until upkeep drains them.
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                })
                .expect("spawn the metrics upkeep thread");
            handle
        })
        .clone()
}

fn describe() {
    describe_counter!(
        "tessera_http_requests_total",
        "HTTP requests by route template and status"
    );
    describe_histogram!(
        "tessera_http_request_duration_seconds",
        "HTTP request latency by route template and status, to the response head"
    );
    describe_counter!(
        "tessera_http_response_bytes_total",
        "Bytes of responses whose length was known when sent"
    );
    describe_histogram!(
        "tessera_kernel_seconds",
        "Compute kernel wall time by kernel and backend"
    );
    describe_counter!(
        "tessera_object_requests_total",
        "Object store requests (get, put) of each store keeping blocks as objects"
    );
    describe_counter!(
        "tessera_object_bytes_total",
        "Object bytes fetched (get) and uploaded (put) by each store keeping blocks as objects"
    );
    describe_counter!(
        "tessera_object_cache_hits_total",
        "Object reads served by the in-memory object cache"
    );
    describe_counter!(
        "tessera_object_disk_hits_total",
        "Object reads served by the disk cache (object_disk_cache)"
    );
    describe_counter!(
        "tessera_mutations_total",
        "Committed mutations by datatype and action"
    );
    describe_counter!(
        "tessera_mesh_cache_total",
        "Mesh requests served from stored meshes (hit) or computed (miss)"
    );
    describe_counter!(
        "tessera_mesh_pieces_total",
        "Owner blocks of a block-by-block mesh taken from the label's last meshing (reused) or meshed"
    );
    describe_counter!(
        "tessera_store_bytes_read_total",
        "Key and value bytes read from each store"
    );
    describe_counter!(
        "tessera_store_bytes_written_total",
        "Key and value bytes written to each store"
    );
    describe_gauge!(
        "tessera_sync_backlog",
        "Events waiting per sync subscription"
    );
    describe_gauge!("tessera_http_requests_active", "Requests being handled");
}

/// One finished request. `route` is the route template (data routes with their keyword).
pub fn request(method: &str, route: &str, status: u16, elapsed: Duration, bytes: Option<u64>) {
    let labels = [
        ("method", method.to_string()),
        ("route", route.to_string()),
        ("status", status.to_string()),
    ];
    counter!("tessera_http_requests_total", &labels).increment(1);
    histogram!("tessera_http_request_duration_seconds", &labels).record(elapsed.as_secs_f64());
    if let Some(b) = bytes {
        counter!("tessera_http_response_bytes_total", "route" => route.to_string()).increment(b);
    }
}

/// The exposition text, with the engine's and the object stores' figures read now.
pub fn render(
    handle: &PrometheusHandle,
    engine: &Engine,
    objects: &BTreeMap<String, Arc<ContentStore>>,
    active: u64,
) -> String {
    for (store, c) in objects {
        let io = c.io();
        for (op, n, bytes) in [
            ("get", io.gets, io.get_bytes),
            ("put", io.puts, io.put_bytes),
        ] {
            let labels = [("store", store.clone()), ("op", op.to_string())];
            counter!("tessera_object_requests_total", &labels).absolute(n);
            counter!("tessera_object_bytes_total", &labels).absolute(bytes);
        }
        counter!("tessera_object_cache_hits_total", "store" => store.clone())
            .absolute(io.cache_hits);
        counter!("tessera_object_disk_hits_total", "store" => store.clone()).absolute(io.disk_hits);
    }
    for (store, kind, io) in engine.store_io() {
        let labels = [("store", store), ("engine", kind.to_string())];
        counter!("tessera_store_bytes_read_total", &labels).absolute(io.bytes_read);
        counter!("tessera_store_bytes_written_total", &labels).absolute(io.bytes_written);
        counter!("tessera_store_reads_total", &labels).absolute(io.reads);
        counter!("tessera_store_writes_total", &labels).absolute(io.writes);
    }
    match engine.sync_backlog() {
        Ok(backlog) => {
            for (subscription, n) in backlog {
                gauge!("tessera_sync_backlog", "subscription" => subscription).set(n as f64);
            }
        }
        Err(e) => tracing::warn!("reading the sync backlog for metrics: {e}"),
    }
    gauge!("tessera_http_requests_active").set(active as f64);
    handle.run_upkeep();
    handle.render()
}
