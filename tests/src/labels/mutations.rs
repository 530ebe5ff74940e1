//! Request helpers for labelmap proofreading on a test server (spec §4.4 "Mutations", §5.7,
//! §7.2–7.3), and black-box checks built on them:
//!
//! * methods on [`Seg`] for merge, renumber, cleave, split, split-supervoxel (checking the exact
//!   JSON answers of §5.7) and the mapping / log reads;
//! * [`check_consistency`], [`check_consistency_settled`]: the invariants between the mapped
//!   volume, the supervoxel volume, the label index (sizes, supervoxels) and the mapping, and
//!   the exactness of every pyramid scale;
//! * [`SseParser`], [`EventStream`]: `text/event-stream` parsing for `mutations/stream`;
//! * [`Http`]: a non-panicking client for worker threads (a killed server is expected there).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::client::{Seg, with_query};
use super::downres::pyramid;
use super::proofread::{parse_mappings_binary, parse_mappings_text, volume_diff};
use super::rle::{VoxelSet, encode_rles, rles_voxels};
use super::volume::Volume;
use crate::Response;

// ------------------------------------------------------------------ server-sent events

/// One `text/event-stream` event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

/// Incremental `text/event-stream` parser: lines end in `\n` (a preceding `\r` is dropped);
/// `field: value` (one space after the colon is dropped); `:` starts a comment; `data` lines
/// are joined with `\n`; a blank line ends an event (events without data are dropped).
#[derive(Default)]
pub struct SseParser {
    buf: Vec<u8>,
    cur: SseEvent,
    has_data: bool,
}

impl SseParser {
    pub fn new() -> SseParser {
        SseParser::default()
    }

    /// Feeds bytes; returns the events completed by them.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=nl).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line).into_owned();
            if line.is_empty() {
                let ev = std::mem::take(&mut self.cur);
                if std::mem::take(&mut self.has_data) {
                    out.push(ev);
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.find(':') {
                Some(i) => {
                    let v = &line[i + 1..];
                    (&line[..i], v.strip_prefix(' ').unwrap_or(v))
                }
                None => (line.as_str(), ""),
            };
            match field {
                "id" => self.cur.id = Some(value.to_string()),
                "event" => self.cur.event = Some(value.to_string()),
                "data" => {
                    if self.has_data {
                        self.cur.data.push('\n');
                    }
                    self.cur.data.push_str(value);
                    self.has_data = true;
                }
                _ => {}
            }
        }
        out
    }
}

/// What the reader thread of an [`EventStream`] reports.
#[derive(Debug)]
pub enum StreamMsg {
    /// Status and `Content-Type` of the response.
    Head(u16, String),
    Event(SseEvent),
    /// The stream ended or failed.
    End(String),
}

/// A `GET` of an event stream read on a background thread.
pub struct EventStream {
    rx: mpsc::Receiver<StreamMsg>,
}

impl EventStream {
    /// Opens `url` (a full URL); the reader thread gives up after `limit`.
    pub fn open(url: String, limit: Duration) -> EventStream {
        EventStream::open_with(url, None, limit)
    }

    /// `open`, sending `Last-Event-ID` as a reconnecting EventSource does.
    pub fn open_with(url: String, last_event_id: Option<String>, limit: Duration) -> EventStream {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let client = match reqwest::blocking::Client::builder()
                .timeout(limit)
                .no_proxy()
                .build()
            {
                Ok(c) => c,
                Err(e) => {
                    let _ = tx.send(StreamMsg::End(format!("client: {e}")));
                    return;
                }
            };
            let mut req = client.get(&url);
            if let Some(id) = &last_event_id {
                req = req.header("Last-Event-ID", id.as_str());
            }
            let mut resp = match req.send() {
                Ok(r) => r,
                Err(e) => {
                    let _ = tx.send(StreamMsg::End(format!("GET {url}: {e}")));
                    return;
                }
            };
            let ct = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            if tx
                .send(StreamMsg::Head(resp.status().as_u16(), ct))
                .is_err()
            {
                return;
            }
            let mut parser = SseParser::new();
            let mut buf = [0u8; 8192];
            loop {
                match resp.read(&mut buf) {
                    Ok(0) => {
                        let _ = tx.send(StreamMsg::End("end of stream".into()));
                        return;
                    }
                    Ok(n) => {
                        for ev in parser.push(&buf[..n]) {
                            if tx.send(StreamMsg::Event(ev)).is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(StreamMsg::End(format!("read: {e}")));
                        return;
                    }
                }
            }
        });
        EventStream { rx }
    }

    /// The next message, or None after `wait`.
    pub fn next(&self, wait: Duration) -> Option<StreamMsg> {
        self.rx.recv_timeout(wait).ok()
    }

    /// The next event; panics when the stream ends or nothing comes within `wait`.
    #[track_caller]
    pub fn next_event(&self, wait: Duration) -> SseEvent {
        match self.next(wait) {
            Some(StreamMsg::Event(e)) => e,
            Some(other) => panic!("event stream: expected an event, got {other:?}"),
            None => panic!("event stream: no event within {wait:?}"),
        }
    }
}

// ------------------------------------------------------------------ a non-panicking client

/// A minimal HTTP client for worker threads: errors are returned, not panicked on (the server
/// may be killed under them).
#[derive(Clone)]
pub struct Http {
    base: String,
    client: reqwest::blocking::Client,
}

impl Http {
    /// A client for `base` (e.g. `Server::base_url()`).
    pub fn new(base: &str) -> Http {
        Http {
            base: base.trim_end_matches('/').to_string(),
            client: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(60))
                .connect_timeout(Duration::from_secs(5))
                .pool_max_idle_per_host(0)
                .no_proxy()
                .build()
                .expect("reqwest client"),
        }
    }

    /// `method path` with an optional body → (status, body), or the transport error.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Vec<u8>), String> {
        let m = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let mut req = self.client.request(m, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.body(b);
        }
        let mut resp = req.send().map_err(|e| format!("{method} {path}: {e}"))?;
        let status = resp.status().as_u16();
        let mut out = Vec::new();
        resp.read_to_end(&mut out)
            .map_err(|e| format!("{method} {path}: body: {e}"))?;
        Ok((status, out))
    }
}

// ------------------------------------------------------------------ Seg request helpers

/// Panics unless the body is exactly `want` (ignoring one trailing newline).
#[track_caller]
fn exact(r: &Response, want: &str) {
    let text = r.text();
    let got = text.strip_suffix('\n').unwrap_or(&text);
    assert_eq!(got, want, "{}: exact response body", r.what);
}

#[track_caller]
fn field(v: &Value, key: &str, r: &Response) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{}: no integer {key:?} in {}", r.what, r.text()))
}

fn json_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("json")
}

impl Seg<'_> {
    /// `POST merge[?query]` with `[target, merged…]`.
    pub fn merge(&self, labels: &[u64], query: &str) -> Response {
        self.post(&with_query("merge", query), json_bytes(&json!(labels)))
    }

    /// A merge that must succeed; checks the exact `{"MutationID": n}` body and returns n.
    #[track_caller]
    pub fn merge_ok(&self, labels: &[u64], query: &str) -> u64 {
        let r = self.merge(labels, query).expect(200);
        let id = field(&r.json(), "MutationID", &r);
        exact(&r, &format!(r#"{{"MutationID": {id}}}"#));
        id
    }

    /// `POST renumber[?query]` with `[new, old, …]`.
    pub fn renumber(&self, pairs: &[u64], query: &str) -> Response {
        self.post(&with_query("renumber", query), json_bytes(&json!(pairs)))
    }

    /// `POST cleave/<body>[?query]` with `[sv…]`.
    pub fn cleave(&self, body: u64, svs: &[u64], query: &str) -> Response {
        self.post(
            &with_query(&format!("cleave/{body}"), query),
            json_bytes(&json!(svs)),
        )
    }

    /// A cleave that must succeed; checks the exact body and returns (CleavedLabel, MutationID).
    #[track_caller]
    pub fn cleave_ok(&self, body: u64, svs: &[u64], query: &str) -> (u64, u64) {
        let r = self.cleave(body, svs, query).expect(200);
        let v = r.json();
        let (c, m) = (field(&v, "CleavedLabel", &r), field(&v, "MutationID", &r));
        exact(
            &r,
            &format!(r#"{{"CleavedLabel": {c}, "MutationID": {m}}}"#),
        );
        (c, m)
    }

    /// `POST split/<body>[?query]` with the legacy RLE of `voxels`.
    pub fn split(&self, body: u64, voxels: &VoxelSet, query: &str) -> Response {
        self.post(
            &with_query(&format!("split/{body}"), query),
            encode_rles(voxels),
        )
    }

    /// A split that must succeed; checks the exact body and returns (label, MutationID).
    #[track_caller]
    pub fn split_ok(&self, body: u64, voxels: &VoxelSet, query: &str) -> (u64, u64) {
        let r = self.split(body, voxels, query).expect(200);
        let v = r.json();
        let (l, m) = (field(&v, "label", &r), field(&v, "MutationID", &r));
        exact(&r, &format!(r#"{{"label": {l}, "MutationID": {m}}}"#));
        (l, m)
    }

    /// `POST split-supervoxel/<sv>[?query]` with the legacy RLE of `voxels`.
    pub fn split_supervoxel(&self, sv: u64, voxels: &VoxelSet, query: &str) -> Response {
        self.post(
            &with_query(&format!("split-supervoxel/{sv}"), query),
            encode_rles(voxels),
        )
    }

    /// A supervoxel split that must succeed; checks the exact body and returns
    /// (SplitSupervoxel, RemainSupervoxel, MutationID).
    #[track_caller]
    pub fn split_supervoxel_ok(&self, sv: u64, voxels: &VoxelSet, query: &str) -> (u64, u64, u64) {
        let r = self.split_supervoxel(sv, voxels, query).expect(200);
        let v = r.json();
        let (s, k, m) = (
            field(&v, "SplitSupervoxel", &r),
            field(&v, "RemainSupervoxel", &r),
            field(&v, "MutationID", &r),
        );
        exact(
            &r,
            &format!(r#"{{"SplitSupervoxel": {s}, "RemainSupervoxel": {k}, "MutationID": {m}}}"#),
        );
        (s, k, m)
    }

    /// `GET mapping[?query]` with `[sv…]` → bodies.
    #[track_caller]
    pub fn mapping(&self, svs: &[u64], query: &str) -> Vec<u64> {
        let r = self
            .get_with_body(&with_query("mapping", query), json_bytes(&json!(svs)))
            .expect(200);
        serde_json::from_value(r.json())
            .unwrap_or_else(|e| panic!("{}: not a u64 array ({e}): {}", r.what, r.text()))
    }

    /// `GET mappings` (text) parsed.
    #[track_caller]
    pub fn mappings(&self) -> BTreeMap<u64, u64> {
        let r = self.get("mappings").expect(200);
        parse_mappings_text(&r.text()).unwrap_or_else(|e| panic!("{}: {e}", r.what))
    }

    /// `GET mappings?format=binary` parsed.
    #[track_caller]
    pub fn mappings_binary(&self) -> BTreeMap<u64, u64> {
        let r = self.get("mappings?format=binary").expect(200);
        parse_mappings_binary(&r.body).unwrap_or_else(|e| panic!("{}: {e}", r.what))
    }

    /// `GET supervoxels/<body>`: Some(set) on 200, None on 404.
    #[track_caller]
    pub fn supervoxels_of(&self, body: u64) -> Option<BTreeSet<u64>> {
        let r = self.get(&format!("supervoxels/{body}"));
        match r.status {
            200 => {
                let v: Vec<u64> = serde_json::from_value(r.json())
                    .unwrap_or_else(|e| panic!("{}: not a u64 array ({e})", r.what));
                let set: BTreeSet<u64> = v.iter().copied().collect();
                assert_eq!(set.len(), v.len(), "{}: duplicates in {v:?}", r.what);
                Some(set)
            }
            404 => None,
            s => panic!("{}: expected 200 or 404, got {s}: {}", r.what, r.text()),
        }
    }

    /// `GET sizes[?query]` with `[label…]`.
    #[track_caller]
    pub fn sizes(&self, labels: &[u64], query: &str) -> Vec<u64> {
        let r = self
            .get_with_body(&with_query("sizes", query), json_bytes(&json!(labels)))
            .expect(200);
        serde_json::from_value(r.json())
            .unwrap_or_else(|e| panic!("{}: not a u64 array ({e}): {}", r.what, r.text()))
    }

    /// `GET existing-labels`, sorted.
    #[track_caller]
    pub fn existing_labels(&self) -> Vec<u64> {
        let r = self.get("existing-labels").expect(200);
        let mut v: Vec<u64> = serde_json::from_value(r.json())
            .unwrap_or_else(|e| panic!("{}: not a u64 array ({e})", r.what));
        v.sort_unstable();
        v
    }

    /// `GET sparsevol/<label>[?query]` (legacy RLE) as a voxel set; None on 404.
    #[track_caller]
    pub fn sparsevol(&self, label: u64, query: &str) -> Option<VoxelSet> {
        let r = self.get(&with_query(&format!("sparsevol/{label}"), query));
        match r.status {
            200 => Some(rles_voxels(&r.body).unwrap_or_else(|e| panic!("{}: {e}", r.what))),
            404 => None,
            s => panic!("{}: expected 200 or 404, got {s}: {}", r.what, r.text()),
        }
    }

    /// `GET supervoxel-splits` as JSON.
    #[track_caller]
    pub fn supervoxel_splits(&self) -> Value {
        self.get("supervoxel-splits").expect(200).json()
    }

    /// `GET mutations` as a JSON array.
    #[track_caller]
    pub fn mutations(&self) -> Vec<Value> {
        let r = self.get("mutations").expect(200);
        match r.json() {
            Value::Array(a) => a,
            other => panic!("{}: not a JSON array: {other}", r.what),
        }
    }

    /// `GET lastmod/<label>` as JSON (asserts 200).
    #[track_caller]
    pub fn lastmod(&self, label: u64) -> Value {
        self.get(&format!("lastmod/{label}")).expect(200).json()
    }

    /// `GET nextlabel` → the number.
    #[track_caller]
    pub fn nextlabel(&self) -> u64 {
        let v = self.get("nextlabel").expect(200).json();
        v["nextlabel"]
            .as_u64()
            .unwrap_or_else(|| panic!("nextlabel: {v}"))
    }
}

/// [`check_consistency`], retried every 250 ms until it passes or `settle` has passed (then the
/// last failure is raised): for states reached by concurrent requests, where the spec allows a
/// server to finish index or downres work shortly after answering (§4.4).
#[track_caller]
pub fn check_consistency_settled(
    seg: &Seg,
    size: [usize; 3],
    levels: usize,
    settle: Duration,
) -> (Volume, Volume) {
    let deadline = Instant::now() + settle;
    loop {
        let r = std::panic::catch_unwind(AssertUnwindSafe(|| check_consistency(seg, size, levels)));
        match r {
            Ok(v) => return v,
            Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(250)),
            Err(e) => std::panic::resume_unwind(e),
        }
    }
}

/// Reads back the whole box `[0, size)` at scale 0 (supervoxels and mapped) and checks:
/// * every supervoxel has exactly one mapped label across its voxels, and `GET mapping` of
///   every supervoxel present returns it;
/// * the label index: `existing-labels` = the labels of the mapped volume, `sizes` of each =
///   its voxel count, `supervoxels/<body>` = the supervoxels whose mapping is the body, and
///   `sizes?supervoxels=true` of each supervoxel = its voxel count;
/// * scales 1..=`levels` (supervoxels and mapped) equal the downres reference of the scale-0
///   supervoxel volume read back.
///
/// Returns the (supervoxel, mapped) volumes read.
#[track_caller]
pub fn check_consistency(seg: &Seg, size: [usize; 3], levels: usize) -> (Volume, Volume) {
    let s = seg.raw([0; 3], size, "supervoxels=true");
    let m = seg.raw([0; 3], size, "");
    let mut body_of: BTreeMap<u64, u64> = BTreeMap::new();
    for (i, (&sv, &b)) in s.data.iter().zip(m.data.iter()).enumerate() {
        if sv == 0 {
            assert_eq!(b, 0, "voxel #{i}: supervoxel 0 but mapped label {b}");
            continue;
        }
        assert!(
            b != 0,
            "voxel #{i}: supervoxel {sv} maps to 0 in the mapped volume"
        );
        let e = *body_of.entry(sv).or_insert(b);
        assert_eq!(
            e, b,
            "supervoxel {sv} reads as two different bodies ({e} and {b}) in one volume"
        );
    }
    let svs: Vec<u64> = body_of.keys().copied().collect();
    let got = seg.mapping(&svs, "");
    for (sv, (&want, &g)) in svs.iter().zip(body_of.values().zip(got.iter())) {
        assert_eq!(g, want, "GET mapping of supervoxel {sv}");
    }
    // label index vs voxels
    let counts = m.label_counts();
    let existing = seg.existing_labels();
    let want_labels: Vec<u64> = counts.keys().copied().collect();
    assert_eq!(
        existing, want_labels,
        "existing-labels vs labels of the mapped volume"
    );
    let sizes = seg.sizes(&want_labels, "");
    for (l, (&n, &g)) in want_labels.iter().zip(counts.values().zip(sizes.iter())) {
        assert_eq!(g, n, "size of body {l}");
    }
    let sv_counts = s.label_counts();
    let sv_sizes = seg.sizes(&svs, "supervoxels=true");
    for (sv, &g) in svs.iter().zip(sv_sizes.iter()) {
        assert_eq!(
            g, sv_counts[sv],
            "size of supervoxel {sv} (supervoxels=true)"
        );
    }
    let mut members: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    for (&sv, &b) in &body_of {
        members.entry(b).or_default().insert(sv);
    }
    for (b, want) in &members {
        let got = seg.supervoxels_of(*b);
        assert_eq!(got.as_ref(), Some(want), "supervoxels/{b}");
    }
    // pyramid
    let p = pyramid(&s, levels);
    for (lvl, want) in p.iter().enumerate().skip(1) {
        let got = seg.raw([0; 3], want.size, &format!("supervoxels=true&scale={lvl}"));
        assert!(
            got == *want,
            "scale {lvl} supervoxels: {}",
            volume_diff(&got, want)
        );
        let mapped_want = Volume {
            origin: want.origin,
            size: want.size,
            data: want
                .data
                .iter()
                .map(|sv| if *sv == 0 { 0 } else { body_of[sv] })
                .collect(),
        };
        let got = seg.raw([0; 3], want.size, &format!("scale={lvl}"));
        assert!(
            got == mapped_want,
            "scale {lvl} mapped: {}",
            volume_diff(&got, &mapped_want)
        );
    }
    (s, m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_parser_handles_split_chunks_comments_and_crlf() {
        let mut p = SseParser::new();
        assert!(p.push(b": keep-alive\n\nid: 7\nda").is_empty());
        let evs = p.push(b"ta: {\"a\":1}\r\n\r\nid:8\ndata: x\ndata: y\n\n");
        assert_eq!(
            evs,
            vec![
                SseEvent {
                    id: Some("7".into()),
                    event: None,
                    data: "{\"a\":1}".into()
                },
                SseEvent {
                    id: Some("8".into()),
                    event: None,
                    data: "x\ny".into()
                }
            ]
        );
        assert!(p.push(b"event: e\ndata: z").is_empty(), "incomplete event");
        let evs = p.push(b"\n\n");
        assert_eq!(evs[0].event.as_deref(), Some("e"));
        assert_eq!(evs[0].data, "z");
    }

    /// A one-shot HTTP server on loopback: answers the first request with `chunks` (written
    /// with a pause between them), then closes. Returns its base URL.
    fn one_shot(chunks: Vec<Vec<u8>>) -> String {
        use std::io::Write;
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", l.local_addr().expect("addr"));
        thread::spawn(move || {
            let (mut c, _) = l.accept().expect("accept");
            let mut req = Vec::new();
            let mut b = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = c.read(&mut b).expect("read request");
                if n == 0 {
                    return;
                }
                req.extend_from_slice(&b[..n]);
            }
            for chunk in chunks {
                c.write_all(&chunk).expect("write");
                c.flush().expect("flush");
                thread::sleep(Duration::from_millis(50));
            }
        });
        base
    }

    #[test]
    fn event_stream_delivers_head_events_and_end() {
        let base = one_shot(vec![
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
                .to_vec(),
            b"id: 1\ndata: {\"a\":1}\n\n: ping\n\nid: 2\nda".to_vec(),
            b"ta: {\"a\":2}\n\n".to_vec(),
        ]);
        let s = EventStream::open(format!("{base}/stream"), Duration::from_secs(10));
        match s.next(Duration::from_secs(5)) {
            Some(StreamMsg::Head(200, ct)) => assert_eq!(ct, "text/event-stream"),
            other => panic!("want the head, got {other:?}"),
        }
        let e = s.next_event(Duration::from_secs(5));
        assert_eq!(
            (e.id.as_deref(), e.data.as_str()),
            (Some("1"), r#"{"a":1}"#)
        );
        let e = s.next_event(Duration::from_secs(5));
        assert_eq!(
            (e.id.as_deref(), e.data.as_str()),
            (Some("2"), r#"{"a":2}"#)
        );
        assert!(
            matches!(s.next(Duration::from_secs(5)), Some(StreamMsg::End(_))),
            "the stream ends when the server closes"
        );
    }

    #[test]
    fn http_returns_statuses_and_transport_errors() {
        let base = one_shot(vec![
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno"
                .to_vec(),
        ]);
        let h = Http::new(&base);
        assert_eq!(
            h.call("POST", "/x", Some(b"[1]".to_vec())),
            Ok((400, b"no".to_vec()))
        );
        // nothing listens there any more
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            format!("http://{}", l.local_addr().expect("addr"))
        };
        assert!(Http::new(&closed).call("GET", "/", None).is_err());
    }
}
