//! Black-box test harness: runs a real `tessera serve` process and talks to it over HTTP.
//!
//! Every test starts its own server on a free loopback port with its own scratch directory:
//!
//! ```no_run
//! use tessera_tests::Server;
//! let srv = Server::start();
//! let root = srv.create_repo("demo");
//! srv.create_instance(&root, "keyvalue", "kv");
//! srv.put_key(&root, "kv", "a", b"hello");
//! assert_eq!(srv.key_value(&root, "kv", "a").as_deref(), Some(&b"hello"[..]));
//! ```
//!
//! The binary is found through `TESSERA_BIN`, else next to the test executable's `deps/`
//! directory (`target/debug/tessera`). Build it first: `cargo build -p tessera-api`.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

pub use reqwest::header::HeaderMap;
pub use serde_json::{Value, json};

/// How long a server may take to print its listening line.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a clean shutdown (SIGTERM) may take.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// Per-request timeout of the HTTP client.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

const LISTEN_PREFIX: &str = "tessera listening on ";

pub mod clients;
pub mod demo;
pub mod labels;
pub mod mesh;
pub mod nats;
pub mod seaweed;
pub mod synapses;

/// Test data versions of DVID's keyvalue, label index and mapping-op protobuf messages (proto3,
/// package `proto`).
pub mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct KeyValue {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(bytes = "vec", tag = "2")]
        pub value: Vec<u8>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct KeyRange {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(uint64, tag = "2")]
        pub byte_start: u64,
        #[prost(uint64, tag = "3")]
        pub byte_end: u64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Keys {
        #[prost(string, repeated, tag = "1")]
        pub keys: Vec<String>,
        #[prost(message, repeated, tag = "2")]
        pub key_ranges: Vec<KeyRange>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct KeyValues {
        #[prost(message, repeated, tag = "1")]
        pub kvs: Vec<KeyValue>,
    }

    /// labelmap label index (spec §5.5): supervoxel → voxel count within one block.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SvCount {
        #[prost(btree_map = "uint64, uint32", tag = "1")]
        pub counts: std::collections::BTreeMap<u64, u32>,
        #[prost(uint64, tag = "2")]
        pub surface_mutid: u64,
    }

    /// labelmap label index (spec §5.5): packed block coordinate (see
    /// `labels::pack_block_coord`) → per-supervoxel counts.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LabelIndex {
        #[prost(btree_map = "uint64, message", tag = "1")]
        pub blocks: std::collections::BTreeMap<u64, SvCount>,
        #[prost(uint64, tag = "2")]
        pub label: u64,
        #[prost(uint64, tag = "3")]
        pub last_mutid: u64,
        #[prost(string, tag = "4")]
        pub last_mod_time: String,
        #[prost(string, tag = "5")]
        pub last_mod_user: String,
        #[prost(string, tag = "6")]
        pub last_mod_app: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LabelIndices {
        #[prost(message, repeated, tag = "1")]
        pub indices: Vec<LabelIndex>,
    }

    /// labelmap mapping op (spec §5.6): every `original` supervoxel maps to `mapped`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MappingOp {
        #[prost(uint64, tag = "1")]
        pub mutid: u64,
        #[prost(uint64, tag = "2")]
        pub mapped: u64,
        #[prost(uint64, repeated, tag = "3")]
        pub original: Vec<u64>,
    }

    /// The body of labelmap `POST mappings` (spec §5.6).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MappingOps {
        #[prost(message, repeated, tag = "1")]
        pub mappings: Vec<MappingOp>,
    }
}

/// One HTTP exchange, fully read.
#[derive(Debug, Clone)]
pub struct Response {
    /// `"GET http://…"`, for assertion messages.
    pub what: String,
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Response {
    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON; panics with the request and body when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{}: body is not JSON ({e}); status {}, body {:?}",
                self.what,
                self.status,
                self.text()
            )
        })
    }

    /// A header value as a string (None when absent or not visible ASCII).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    /// Panics unless the status is `code`; returns self for chaining.
    #[track_caller]
    pub fn expect(self, code: u16) -> Self {
        assert_eq!(
            self.status,
            code,
            "{}: expected status {code}, got {}; body {:?}",
            self.what,
            self.status,
            truncate(&self.text(), 2000)
        );
        self
    }

    /// Panics unless the status is a 4xx client error.
    #[track_caller]
    pub fn expect_4xx(self) -> Self {
        assert!(
            (400..500).contains(&self.status),
            "{}: expected a 4xx status, got {}; body {:?}",
            self.what,
            self.status,
            truncate(&self.text(), 2000)
        );
        self
    }

    /// Panics unless the body, ignoring one trailing newline, is exactly `expected`.
    #[track_caller]
    pub fn expect_body(self, expected: &str) -> Self {
        let text = self.text();
        let got = text.strip_suffix('\n').unwrap_or(&text);
        assert_eq!(got, expected, "{}: exact body mismatch", self.what);
        self
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.len() <= n {
        s.to_string()
    } else {
        let mut end = n;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    }
}

/// Where the `tessera` binary is: `TESSERA_BIN`, else `<dir of current_exe>/../tessera`.
pub fn binary_path() -> PathBuf {
    if let Some(p) = std::env::var_os("TESSERA_BIN") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "TESSERA_BIN={} does not exist; build it first: cargo build -p tessera-api",
            p.display()
        );
        return p;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe
        .parent()
        .expect("test executable has a parent directory");
    let candidate = deps
        .join("..")
        .join(format!("tessera{}", std::env::consts::EXE_SUFFIX));
    if !candidate.is_file() {
        panic!(
            "tessera binary not found at {}; build it first: cargo build -p tessera-api \
             (or set TESSERA_BIN)",
            candidate.display()
        );
    }
    candidate
}

/// Options for starting a server; `Server::start*` cover the common cases.
#[derive(Default, Clone)]
pub struct ServerBuilder {
    config: Option<String>,
    data_dir: Option<PathBuf>,
    env: Vec<(String, String)>,
    admin_token: Option<String>,
    compute: Option<String>,
    args: Vec<String>,
}

impl ServerBuilder {
    /// More `tessera serve` arguments (`--read-only`, …).
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.into());
        self
    }

    /// TOML configuration text. `{dir}` is replaced by the server's scratch directory, so a
    /// store path can be written as `path = "{dir}/store"`.
    pub fn config(mut self, toml: &str) -> Self {
        self.config = Some(toml.to_string());
        self
    }

    /// Use this data directory (`--data`) instead of a fresh one in the scratch directory.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// An environment variable for the server process.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The admin token the server was configured with; the helpers add `admintoken=` where
    /// DVID requires admin rights (`POST /api/repos`). Does not configure the server.
    pub fn admin_token(mut self, token: &str) -> Self {
        self.admin_token = Some(token.into());
        self
    }

    /// `--compute auto|gpu|cpu`.
    pub fn compute(mut self, backend: &str) -> Self {
        self.compute = Some(backend.into());
        self
    }

    pub fn start(self) -> Server {
        let scratch = tempfile::Builder::new()
            .prefix("tessera-test-")
            .tempdir()
            .expect("scratch tempdir");
        let data_dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| scratch.path().join("data"));
        let config_path = self.config.as_ref().map(|text| {
            let p = scratch.path().join("tessera.toml");
            let dir = scratch.path().to_str().expect("utf-8 tempdir path");
            std::fs::write(&p, text.replace("{dir}", dir)).expect("write config");
            p
        });
        let client = reqwest::blocking::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            // A fresh connection per request: one test's request never inherits a connection
            // that the server closed after an earlier (e.g. refused) request.
            .pool_max_idle_per_host(0)
            .no_proxy()
            .build()
            .expect("reqwest client");
        let mut server = Server {
            bin: binary_path(),
            scratch,
            data_dir,
            config_path,
            env: self.env,
            compute: self.compute,
            args: self.args,
            admin_token: self.admin_token,
            child: None,
            base: String::new(),
            client,
        };
        server.spawn();
        server
    }
}

/// A running `tessera serve` process on a free loopback port. Dropping it kills the process.
pub struct Server {
    bin: PathBuf,
    scratch: tempfile::TempDir,
    data_dir: PathBuf,
    config_path: Option<PathBuf>,
    env: Vec<(String, String)>,
    compute: Option<String>,
    args: Vec<String>,
    admin_token: Option<String>,
    child: Option<Child>,
    base: String,
    client: reqwest::blocking::Client,
}

impl Server {
    /// A server with default configuration and a fresh data directory.
    pub fn start() -> Server {
        ServerBuilder::default().start()
    }

    /// A server with this TOML configuration (`{dir}` → the scratch directory).
    pub fn start_with_config(toml: &str) -> Server {
        ServerBuilder::default().config(toml).start()
    }

    /// A server on an existing data directory (which the caller owns and may reuse).
    pub fn start_in(dir: impl AsRef<Path>) -> Server {
        ServerBuilder::default().data_dir(dir.as_ref()).start()
    }

    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Full URL of an API path such as `/api/heartbeat`.
    pub fn url(&self, path: &str) -> String {
        if path.starts_with('/') {
            format!("{}{}", self.base, path)
        } else {
            format!("{}/{}", self.base, path)
        }
    }

    /// The data directory passed as `--data`.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The scratch directory (config file, server log, default data directory).
    pub fn scratch_dir(&self) -> &Path {
        self.scratch.path()
    }

    /// Everything the server wrote to stderr so far (all runs).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The configured admin token, if the test declared one.
    pub fn admin_token(&self) -> Option<&str> {
        self.admin_token.as_deref()
    }

    /// Process id of the running server.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server is not running").id()
    }

    fn log_path(&self) -> PathBuf {
        self.scratch.path().join("server.log")
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "server already running");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open server log");
        let mut cmd = Command::new(&self.bin);
        cmd.arg("serve")
            .arg("--addr")
            .arg("127.0.0.1:0")
            .arg("--data")
            .arg(&self.data_dir);
        if let Some(c) = &self.config_path {
            cmd.arg("--config").arg(c);
        }
        if let Some(c) = &self.compute {
            cmd.arg("--compute").arg(c);
        }
        cmd.args(&self.args);
        cmd.env_remove("TESSERA_ADMIN_TOKEN");
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.current_dir(self.scratch.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", self.bin.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel::<String>();
        thread::spawn(move || {
            // Keep draining stdout for the life of the process so it never blocks on a full pipe.
            let reader = BufReader::new(stdout);
            for line in reader.lines() {
                match line {
                    Ok(l) => {
                        let _ = tx.send(l);
                    }
                    Err(_) => break,
                }
            }
        });
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut seen = Vec::new();
        let base = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "tessera did not print its listening line within {:?}; stdout so far {:?}\n--- server log ---\n{}",
                    STARTUP_TIMEOUT,
                    seen,
                    tail(&self.log(), 4000)
                );
            }
            match rx.recv_timeout(left.min(Duration::from_millis(500))) {
                Ok(line) => {
                    if let Some(rest) = line.trim().strip_prefix(LISTEN_PREFIX) {
                        break rest.trim().trim_end_matches('/').to_string();
                    }
                    seen.push(line);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.wait().ok();
                    panic!(
                        "tessera exited before listening (status {status:?}); stdout {seen:?}\n--- server log ---\n{}",
                        tail(&self.log(), 4000)
                    );
                }
            }
        };
        assert!(
            base.starts_with("http://127.0.0.1:"),
            "unexpected listening address {base:?}"
        );
        self.base = base;
        self.child = Some(child);
    }

    /// SIGTERM, then wait for the process to exit (SIGKILL after the timeout). Returns the status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server is not running");
        let pid = child.id().to_string();
        let _ = Command::new("kill").arg("-TERM").arg(&pid).status();
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        loop {
            if let Some(st) = child.try_wait().expect("try_wait") {
                return st;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "tessera did not exit within {SHUTDOWN_TIMEOUT:?} of SIGTERM\n--- server log ---\n{}",
                    tail(&self.log(), 4000)
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Clean shutdown (must exit 0) and start again on the same data directory and config.
    /// The port usually changes; `url()` follows it.
    pub fn restart(&mut self) {
        let st = self.stop();
        assert!(
            st.success(),
            "tessera did not exit cleanly on SIGTERM: {st:?}\n--- server log ---\n{}",
            tail(&self.log(), 4000)
        );
        self.spawn();
    }

    /// SIGKILL (no clean shutdown) and wait.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Drops an environment variable of the server process, for the next start.
    pub fn remove_env(&mut self, key: &str) {
        self.env.retain(|(k, _)| k != key);
    }

    /// Start again after `kill()`/`stop()`, on the same data directory.
    pub fn start_again(&mut self) {
        self.spawn();
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().map(|s| s.is_none()).unwrap_or(false),
            None => false,
        }
    }

    // ---------------------------------------------------------------- raw HTTP

    /// Any request. `headers` are extra request headers; `body` is sent when Some.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Response {
        let url = self.url(path);
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.client.request(m, &url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let what = format!("{method} {url}");
        let resp = req.send().unwrap_or_else(|e| {
            panic!(
                "{what}: request failed: {e}\n--- server log ---\n{}",
                tail(&self.log(), 3000)
            )
        });
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let mut body = Vec::new();
        let mut resp = resp;
        resp.read_to_end(&mut body)
            .unwrap_or_else(|e| panic!("{what}: reading body: {e}"));
        Response {
            what,
            status,
            headers,
            body,
        }
    }

    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, &[], None)
    }

    /// GET with a request body (DVID batch reads).
    pub fn get_with_body(&self, path: &str, body: impl Into<Vec<u8>>) -> Response {
        self.request("GET", path, &[], Some(body.into()))
    }

    pub fn get_with_headers(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        self.request("GET", path, headers, None)
    }

    pub fn head(&self, path: &str) -> Response {
        self.request("HEAD", path, &[], None)
    }

    pub fn delete(&self, path: &str) -> Response {
        self.request("DELETE", path, &[], None)
    }

    pub fn post(&self, path: &str, body: impl Into<Vec<u8>>) -> Response {
        self.request("POST", path, &[], Some(body.into()))
    }

    pub fn post_empty(&self, path: &str) -> Response {
        self.request("POST", path, &[], None)
    }

    pub fn post_json(&self, path: &str, body: &Value) -> Response {
        self.request(
            "POST",
            path,
            &[("Content-Type", "application/json")],
            Some(serde_json::to_vec(body).expect("serialize")),
        )
    }

    // ---------------------------------------------------------------- DVID helpers

    fn admin_query(&self, sep: char) -> String {
        match &self.admin_token {
            Some(t) => format!("{sep}admintoken={t}"),
            None => String::new(),
        }
    }

    /// `POST /api/repos` with this body (admintoken added when the test declared one).
    pub fn post_repos(&self, body: &Value) -> Response {
        self.post_json(&format!("/api/repos{}", self.admin_query('?')), body)
    }

    /// Creates a repo and returns its root UUID.
    #[track_caller]
    pub fn create_repo(&self, alias: &str) -> String {
        let r = self
            .post_repos(&json!({"alias": alias, "description": format!("{alias} description")}))
            .expect(200);
        let v = r.json();
        v["root"]
            .as_str()
            .unwrap_or_else(|| panic!("no root in {v}"))
            .to_string()
    }

    /// `GET /api/repo/{uuid}/info` as JSON.
    #[track_caller]
    pub fn repo_info(&self, uuid: &str) -> Value {
        self.get(&format!("/api/repo/{uuid}/info"))
            .expect(200)
            .json()
    }

    /// The DAG node JSON of `uuid` (full UUID) from the repo info.
    #[track_caller]
    pub fn node_info(&self, uuid: &str) -> Value {
        let info = self.repo_info(uuid);
        info["DAG"]["Nodes"]
            .get(uuid)
            .cloned()
            .unwrap_or_else(|| panic!("node {uuid} not in DAG: {}", info["DAG"]))
    }

    /// `POST /api/node/{uuid}/commit`; asserts 200.
    #[track_caller]
    pub fn commit(&self, uuid: &str) {
        self.post_json(
            &format!("/api/node/{uuid}/commit"),
            &json!({"note": "commit"}),
        )
        .expect(200);
    }

    /// The number of nodes in the repo holding `uuid`.
    #[track_caller]
    pub fn node_count(&self, uuid: &str) -> usize {
        self.repo_info(uuid)["DAG"]["Nodes"]
            .as_object()
            .expect("nodes")
            .len()
    }

    /// `POST /api/node/{uuid}/newversion`; returns the child UUID.
    #[track_caller]
    pub fn newversion(&self, uuid: &str) -> String {
        let v = self
            .post_json(&format!("/api/node/{uuid}/newversion"), &json!({}))
            .expect(200)
            .json();
        child_of(&v)
    }

    /// `POST /api/node/{uuid}/branch`; returns the child UUID.
    #[track_caller]
    pub fn branch(&self, uuid: &str, name: &str) -> String {
        let v = self
            .post_json(
                &format!("/api/node/{uuid}/branch"),
                &json!({"branch": name}),
            )
            .expect(200)
            .json();
        child_of(&v)
    }

    /// `POST /api/repo/{uuid}/merge` (conflict-free); returns the child UUID.
    #[track_caller]
    pub fn merge(&self, uuid: &str, parents: &[&str]) -> String {
        let v = self
            .post_json(
                &format!("/api/repo/{uuid}/merge"),
                &json!({"mergeType": "conflict-free", "parents": parents, "note": "merge"}),
            )
            .expect(200)
            .json();
        child_of(&v)
    }

    /// Creates a data instance; asserts 200.
    #[track_caller]
    pub fn create_instance(&self, uuid: &str, typename: &str, name: &str) {
        self.post_json(
            &format!("/api/repo/{uuid}/instance"),
            &json!({"typename": typename, "dataname": name}),
        )
        .expect(200);
    }

    /// Creates a data instance with extra string settings; asserts 200.
    #[track_caller]
    pub fn create_instance_with(&self, uuid: &str, typename: &str, name: &str, extra: &Value) {
        let mut body = json!({"typename": typename, "dataname": name});
        for (k, v) in extra.as_object().expect("settings object") {
            body[k] = v.clone();
        }
        self.post_json(&format!("/api/repo/{uuid}/instance"), &body)
            .expect(200);
    }

    /// `POST /api/node/{uuid}/{inst}/key/{key}`; asserts 200.
    #[track_caller]
    pub fn put_key(&self, uuid: &str, inst: &str, key: &str, value: &[u8]) {
        self.post(
            &format!("/api/node/{uuid}/{inst}/key/{key}"),
            value.to_vec(),
        )
        .expect(200);
    }

    /// `DELETE /api/node/{uuid}/{inst}/key/{key}`; asserts 200.
    #[track_caller]
    pub fn delete_key(&self, uuid: &str, inst: &str, key: &str) {
        self.delete(&format!("/api/node/{uuid}/{inst}/key/{key}"))
            .expect(200);
    }

    /// `GET /api/node/{uuid}/{inst}/key/{key}`: Some(bytes) on 200, None on 404, panic otherwise.
    #[track_caller]
    pub fn key_value(&self, uuid: &str, inst: &str, key: &str) -> Option<Vec<u8>> {
        let r = self.get(&format!("/api/node/{uuid}/{inst}/key/{key}"));
        match r.status {
            200 => Some(r.body),
            404 => None,
            s => panic!(
                "{}: expected 200 or 404, got {s}; body {:?}",
                r.what,
                r.text()
            ),
        }
    }

    /// `GET /api/node/{uuid}/{inst}/keys` as a list.
    #[track_caller]
    pub fn keys(&self, uuid: &str, inst: &str) -> Vec<String> {
        let v = self
            .get(&format!("/api/node/{uuid}/{inst}/keys"))
            .expect(200)
            .json();
        serde_json::from_value(v).expect("keys is a JSON array of strings")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn tail(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_string();
    }
    let mut start = s.len() - n;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &s[start..])
}

/// Asserts a DVID node UUID: 32 lowercase hex characters.
#[track_caller]
pub fn assert_uuid(s: &str) {
    assert!(
        s.len() == 32
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "not a 32-hex lowercase UUID: {s:?}"
    );
}

/// Entries of a tar archive, in order: (name, contents).
pub fn untar(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut ar = tar::Archive::new(bytes);
    let mut out = Vec::new();
    for entry in ar.entries().expect("tar entries") {
        let mut e = entry.expect("tar entry");
        let name = e.path().expect("tar path").to_string_lossy().into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).expect("tar data");
        out.push((name, data));
    }
    out
}

/// Encodes a prost message.
pub fn encode<M: prost::Message>(m: &M) -> Vec<u8> {
    m.encode_to_vec()
}

/// Decodes a prost message, panicking with context on failure.
#[track_caller]
pub fn decode<M: prost::Message + Default>(bytes: &[u8]) -> M {
    M::decode(bytes)
        .unwrap_or_else(|e| panic!("protobuf decode failed: {e}; {} bytes", bytes.len()))
}

/// The `"child"` UUID of a newversion, branch or merge answer.
#[track_caller]
fn child_of(v: &Value) -> String {
    v["child"]
        .as_str()
        .unwrap_or_else(|| panic!("no child in {v}"))
        .to_string()
}
