//! `tessera push` and `tessera pull`: copies a repo from one server to another over HTTP,
//! moving only what the receiver lacks (engine::engine::transfer). Both commands run the same
//! exchange; they differ in which side defaults to the local server. An interrupted run is
//! resumed by running it again.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tessera_engine::engine::transfer::{
    Begin, Group, GroupPage, Header, Manifest, Missing, Received, Selection, Transmit,
};

/// Bytes of record values per fetch, at most (a single larger record goes alone).
const FETCH_BYTES: u64 = 16 << 20;
const FETCH_RECORDS: usize = 4096;
/// Attempts per request when a server is unreachable or answers 503.
const ATTEMPTS: u32 = 4;

pub struct Args {
    pub source: String,
    pub dest: String,
    pub source_token: Option<String>,
    pub dest_token: Option<String>,
    pub repo: String,
    pub selection: Selection,
    pub new_branch: Option<String>,
    pub progress: bool,
}

/// What one run moved, printed as JSON at the end.
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    pub root: String,
    pub records: u64,
    pub bytes: u64,
    pub groups: u64,
    pub groups_differing: u64,
    pub records_listed: u64,
    pub records_sent: u64,
    pub bytes_sent: u64,
    pub records_reused: u64,
    pub bytes_reused: u64,
    /// Request and response bodies of the whole exchange, both servers.
    pub wire_bytes: u64,
    pub new_nodes: usize,
    pub new_instances: usize,
    pub seconds: f64,
    /// The receiver's own tally over every run of this transfer (a resumed one included).
    pub receiver: Value,
}

struct Peer {
    base: String,
    token: Option<String>,
    http: reqwest::blocking::Client,
}

impl Peer {
    fn new(url: &str, token: Option<String>) -> anyhow::Result<Peer> {
        let base = url.trim_end_matches('/').to_string();
        if !base.starts_with("http://") && !base.starts_with("https://") {
            bail!("server URLs are http:// or https:// URLs, not {url:?}");
        }
        let http = reqwest::blocking::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(900))
            .build()
            .context("building the HTTP client")?;
        Ok(Peer { base, token, http })
    }

    /// POSTs `body`, retrying when the server is unreachable or busy; any answer but 2xx is
    /// an error carrying the server's message.
    fn post(&self, path: &str, body: Vec<u8>, wire: &mut u64) -> anyhow::Result<Vec<u8>> {
        let url = format!("{}{path}", self.base);
        let mut attempt = 1;
        loop {
            let mut req = self.http.post(&url).body(body.clone());
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            let retry = match req.send() {
                Ok(resp) if resp.status().as_u16() == 503 && attempt < ATTEMPTS => {
                    format!("{} answered 503", self.base)
                }
                Ok(resp) => {
                    let status = resp.status();
                    let bytes = resp
                        .bytes()
                        .with_context(|| format!("POST {url}: reading the answer"))?;
                    if !status.is_success() {
                        bail!(
                            "POST {url}: the server answered {status}: {}",
                            String::from_utf8_lossy(&bytes).trim()
                        );
                    }
                    *wire += (body.len() + bytes.len()) as u64;
                    return Ok(bytes.to_vec());
                }
                Err(e) if (e.is_connect() || e.is_timeout()) && attempt < ATTEMPTS => e.to_string(),
                Err(e) => bail!("POST {url}: {e}; run the same command again to resume"),
            };
            tracing::warn!("POST {url}: {retry}; retrying");
            std::thread::sleep(Duration::from_millis(500 << attempt));
            attempt += 1;
        }
    }

    fn call<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &Value,
        wire: &mut u64,
    ) -> anyhow::Result<T> {
        let bytes = self.post(path, body.to_string().into_bytes(), wire)?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("POST {}{path}: unexpected answer", self.base))
    }
}

/// Runs one transfer from `args.source` to `args.dest`.
pub fn run(args: Args) -> anyhow::Result<Report> {
    let start = Instant::now();
    let src = Peer::new(&args.source, args.source_token.clone())?;
    let dst = Peer::new(&args.dest, args.dest_token.clone())?;
    let mut selection = args.selection.clone();
    let export = |step: &str| format!("/api/repo/{}/export/{step}", args.repo);
    let mut r = Report::default();
    let manifest: Manifest = src.call(
        &export("manifest"),
        &json!({ "selection": selection }),
        &mut r.wire_bytes,
    )?;
    selection.nodes = Some(manifest.nodes.iter().map(|n| n.uuid.clone()).collect());
    let sel = json!(selection);
    let import = |step: &str| format!("/api/repo/{}/import/{step}", manifest.root);
    r.root = manifest.root.clone();
    (r.records, r.bytes) = (manifest.records, manifest.bytes);
    let begin: Begin = dst.call(
        &import("begin"),
        &json!({ "manifest": manifest, "new_branch": args.new_branch }),
        &mut r.wire_bytes,
    )?;
    (r.new_nodes, r.new_instances) = (begin.new_nodes, begin.new_instances);
    let bar = progress_bar(args.progress, manifest.bytes);
    let mut cursor: Option<Value> = None;
    loop {
        let page: GroupPage = src.call(
            &export("groups"),
            &json!({ "selection": sel, "cursor": cursor }),
            &mut r.wire_bytes,
        )?;
        r.groups += page.groups.len() as u64;
        let checked: u64 = page.groups.iter().map(|g| g.bytes).sum();
        let differ: Value = dst.call(
            &import("compare"),
            &json!({ "groups": page.groups }),
            &mut r.wire_bytes,
        )?;
        let differing: Vec<&Group> = differ["differ"]
            .as_array()
            .context("compare answered no \"differ\" list")?
            .iter()
            .filter_map(|i| page.groups.get(i.as_u64()? as usize))
            .collect();
        r.groups_differing += differing.len() as u64;
        if !differing.is_empty() {
            send_groups(
                &src,
                &dst,
                (&export(""), &import("")),
                &sel,
                &differing,
                &mut r,
                &bar,
            )?;
        }
        bar.inc(checked);
        match page.next {
            Some(next) => cursor = Some(json!(next)),
            None => break,
        }
    }
    r.receiver = dst.call(&import("finish"), &json!({}), &mut r.wire_bytes)?;
    bar.finish_and_clear();
    r.seconds = start.elapsed().as_secs_f64();
    Ok(r)
}

/// Lists the records of differing groups, asks the receiver which it lacks, and sends those.
fn send_groups(
    src: &Peer,
    dst: &Peer,
    (export, import): (&str, &str),
    sel: &Value,
    groups: &[&Group],
    r: &mut Report,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    let headers: Vec<Header> = src.call(
        &format!("{export}list"),
        &json!({ "selection": sel, "groups": groups }),
        &mut r.wire_bytes,
    )?;
    r.records_listed += headers.len() as u64;
    let missing: Missing = dst.call(
        &format!("{import}missing"),
        &json!({ "headers": headers }),
        &mut r.wire_bytes,
    )?;
    r.records_reused += missing.reused;
    r.bytes_reused += missing.reused_bytes;
    let mut chunk = Vec::new();
    let mut size = 0;
    let send = |chunk: &mut Vec<&Header>, r: &mut Report| -> anyhow::Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        let ids: Vec<_> = chunk.iter().map(|h| &h.id).collect();
        let frames = src.post(
            &format!("{export}fetch"),
            json!({ "selection": sel, "records": ids })
                .to_string()
                .into_bytes(),
            &mut r.wire_bytes,
        )?;
        let got: Received = serde_json::from_slice(&dst.post(
            &format!("{import}records"),
            frames,
            &mut r.wire_bytes,
        )?)
        .context("records answered unexpectedly")?;
        r.records_sent += got.records;
        r.bytes_sent += got.bytes;
        bar.set_message(format!("moved {}", indicatif::HumanBytes(r.bytes_sent)));
        chunk.clear();
        Ok(())
    };
    for i in missing.missing {
        let h = headers.get(i).context("missing named an unlisted record")?;
        if !chunk.is_empty() && (size + h.len > FETCH_BYTES || chunk.len() >= FETCH_RECORDS) {
            send(&mut chunk, r)?;
            size = 0;
        }
        size += h.len;
        chunk.push(h);
    }
    send(&mut chunk, r)
}

fn progress_bar(show: bool, total: u64) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} checked {bytes}/{total_bytes} ({binary_bytes_per_sec}, ETA {eta}) {msg}",
        )
        .expect("valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// `--box x0,y0,z0,x1,y1,z1`.
pub fn parse_box(s: &str) -> anyhow::Result<[i64; 6]> {
    let v: Vec<i64> = s
        .split(',')
        .map(|p| p.trim().parse::<i64>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("--box {s:?}: six integers x0,y0,z0,x1,y1,z1"))?;
    v.try_into()
        .map_err(|_| anyhow::anyhow!("--box {s:?}: six integers x0,y0,z0,x1,y1,z1"))
}

pub fn parse_transmit(s: &str) -> anyhow::Result<Transmit> {
    Ok(match s {
        "all" => Transmit::All,
        "branch" => Transmit::Branch,
        "flatten" => Transmit::Flatten,
        other => bail!("--transmit {other:?}: all, branch or flatten"),
    })
}
