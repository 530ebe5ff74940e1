//! `tessera demo`: serves a small dataset built on the fly that exercises what labs use —
//! grayscale with visible membranes under a segmentation of a few hundred bodies (pyramid to
//! scale 3, meshes kept current), synapses synced to the segmentation and counted by labelsz,
//! an ROI, bookmarks, body annotations, and a committed root with a child version holding a
//! few merges, a cleave and a split — then prints the neuroglancer link, the layer sources and
//! a few curl lines.
//!
//! The dataset is made through the server's own HTTP API, as a client would, once the server
//! listens. On a data directory that already holds it, the demo only serves and prints.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use crate::server::{self, ServeArgs};

pub struct DemoArgs {
    pub addr: Option<String>,
    pub data: PathBuf,
    pub compute: Option<String>,
}

const ALIAS: &str = "tessera-demo";
/// Volume size (x, y, z): 3 pyramid levels below it stay whole blocks of 8³ voxels or more.
const SIZE: [usize; 3] = [192, 192, 128];
/// Edge of the jittered grid the supervoxels grow from.
const CELL: usize = 20;
const SYNAPSES: usize = 1500;
/// Who the demo's edits are recorded as (`lastmod`, the mutation log).
const WHO: &str = "u=demo&app=tessera-demo";

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(server::serve(ServeArgs {
        config: None,
        addr: args.addr,
        data: args.data,
        compute: args.compute,
        read_only: false,
        follow: std::time::Duration::from_secs(1),
        on_ready: Some(Box::new(move |bound| {
            std::thread::spawn(move || {
                if let Err(e) = populate(bound, started) {
                    eprintln!("tessera demo: building the dataset failed: {e:#}");
                    std::process::exit(1);
                }
            });
        })),
    }))
}

/// The dataset's node UUIDs.
struct Nodes {
    root: String,
    child: String,
}

fn populate(bound: SocketAddr, started: Instant) -> anyhow::Result<()> {
    let http = Http::new(bound)?;
    let (nodes, built) = match existing(&http)? {
        Some(n) => (n, false),
        None => (build(&http)?, true),
    };
    http.wait_synced()?;
    print_ready(&http, &nodes, built, started.elapsed());
    Ok(())
}

/// The demo repo's nodes when the store holds it already.
fn existing(http: &Http) -> anyhow::Result<Option<Nodes>> {
    let repos = http.json("GET", "/api/repos/info", None)?;
    let Some(repo) = repos
        .as_object()
        .and_then(|m| m.values().find(|r| r["Alias"] == ALIAS))
    else {
        return Ok(None);
    };
    let root = repo["Root"]
        .as_str()
        .context("repo without Root")?
        .to_string();
    let child = repo["DAG"]["Nodes"]
        .as_object()
        .and_then(|nodes| {
            nodes
                .iter()
                .filter(|(u, _)| **u != root)
                .max_by_key(|(_, n)| n["VersionID"].as_u64().unwrap_or(0))
                .map(|(u, _)| u.clone())
        })
        .unwrap_or_else(|| root.clone());
    Ok(Some(Nodes { root, child }))
}

fn build(http: &Http) -> anyhow::Result<Nodes> {
    let root = http.json(
        "POST",
        "/api/repos",
        Some(json!({"alias": ALIAS,
        "description": "Tessera's demo dataset: synthetic cells, membranes and synapses"})),
    )?["root"]
        .as_str()
        .context("POST /api/repos: no root")?
        .to_string();
    let node = |rest: &str| format!("/api/node/{root}/{rest}");
    let instance = |typename: &str, name: &str, extra: Value| -> anyhow::Result<()> {
        let mut body = json!({"typename": typename, "dataname": name});
        for (k, v) in extra.as_object().into_iter().flatten() {
            body[k] = v.clone();
        }
        http.json("POST", &format!("/api/repo/{root}/instance"), Some(body))
            .map(|_| ())
    };
    let voxel = json!({"BlockSize": "64,64,64", "VoxelSize": "8,8,8", "VoxelUnits": "nanometers"});
    let mut seg = voxel.clone();
    seg["MaxDownresLevel"] = json!("3");
    seg["IndexedLabels"] = json!("true");
    seg["KeepMeshes"] = json!("true");
    instance("labelmap", "segmentation", seg)?;
    // Kept meshes record each body's mutation id here when it exists (dvidtools reads it);
    // the other names are where dvidtools looks for skeletons, ROIs and assignments.
    for kv in [
        "segmentation_meshes_mutid",
        "segmentation_skeletons",
        "rois",
        "roi_data",
        "bookmarks",
    ] {
        instance("keyvalue", kv, json!({}))?;
    }
    instance("annotation", "segmentation_todo", json!({}))?;
    http.json(
        "POST",
        &node("segmentation_todo/sync"),
        Some(json!({"sync": "segmentation"})),
    )?;
    for name in ["grayscale", "grayscale_1", "grayscale_2", "grayscale_3"] {
        instance("uint8blk", name, voxel.clone())?;
    }
    for k in 1..=3 {
        let source = if k == 1 {
            "grayscale".to_string()
        } else {
            format!("grayscale_{}", k - 1)
        };
        http.json(
            "POST",
            &node(&format!("grayscale_{k}/sync")),
            Some(json!({"sync": source})),
        )?;
    }
    instance("annotation", "synapses", json!({}))?;
    http.json(
        "POST",
        &node("synapses/sync"),
        Some(json!({"sync": "segmentation"})),
    )?;
    instance("labelsz", "synapses_labelsz", json!({}))?;
    http.json(
        "POST",
        &node("synapses_labelsz/sync"),
        Some(json!({"sync": "synapses"})),
    )?;
    instance("annotation", "bookmark_annotations", json!({}))?;
    instance("roi", "roi", json!({}))?;
    instance("neuronjson", "segmentation_annotations", json!({}))?;

    let vol = Volume::generate();
    let dims = format!("{}_{}_{}", SIZE[0], SIZE[1], SIZE[2]);
    http.call(
        "POST",
        &node(&format!("grayscale/raw/0_1_2/{dims}/0_0_0")),
        Some(vol.gray.clone()),
    )?;
    let labels: Vec<u8> = vol.sv.iter().flat_map(|l| l.to_le_bytes()).collect();
    http.call(
        "POST",
        &node(&format!("segmentation/raw/0_1_2/{dims}/0_0_0")),
        Some(labels),
    )?;

    // Bodies: most pairs of neighbouring supervoxels are merged.
    let mut bodies: Vec<Vec<u64>> = Vec::new();
    for a in (1..=vol.supervoxels).step_by(2) {
        let b = a + 1;
        if b <= vol.supervoxels && !hash(a).is_multiple_of(3) {
            http.json(
                "POST",
                &node(&format!("segmentation/merge?{WHO}")),
                Some(json!([a, b])),
            )?;
            bodies.push(vec![a, b]);
        } else {
            bodies.push(vec![a]);
            if b <= vol.supervoxels {
                bodies.push(vec![b]);
            }
        }
    }
    let body_of = |sv: u64| bodies.iter().find(|b| b.contains(&sv)).map_or(sv, |b| b[0]);

    http.json("POST", &node("synapses/elements"), Some(vol.synapses()))?;
    // The ROI: 32³ blocks in the middle of the volume (spans are z, y, x0, x1).
    let spans: Vec<[i32; 4]> = (1..3)
        .flat_map(|z| (1..5).map(move |y| [z, y, 1, 4]))
        .collect();
    http.json("POST", &node("roi/roi"), Some(json!(spans)))?;
    let bookmarks: Vec<Value> = (0..5)
        .map(|i| {
            let p = [30 + 30 * i, 96, 64];
            json!({"Pos": p, "Kind": "Note", "Tags": ["user:demo"],
                   "Prop": {"comment": format!("bookmark {i}"), "body": body_of(vol.at(p)).to_string()}})
        })
        .collect();
    http.json(
        "POST",
        &node("bookmark_annotations/elements"),
        Some(json!(bookmarks)),
    )?;
    // The ROI as dvidtools finds ROIs by name: `rois/<name>` points at an OBJ in `roi_data`.
    http.json(
        "POST",
        &node("rois/key/roi"),
        Some(json!({"->": {"key": "roi.obj"}})),
    )?;
    http.call(
        "POST",
        &node("roi_data/key/roi.obj"),
        Some(roi_obj().into_bytes()),
    )?;
    // Assignment bookmarks (`bookmarks/x_y_z`) and to-do points in the first 64³ block.
    for p in [[32, 32, 32], [40, 48, 56], [96, 96, 64]] {
        let key = format!("{}_{}_{}", p[0], p[1], p[2]);
        http.json(
            "POST",
            &node(&format!("bookmarks/key/{key}")),
            Some(json!({"body ID": body_of(vol.at(p)), "status": "open"})),
        )?;
    }
    let todos: Vec<Value> = (0..4)
        .map(|i| {
            json!({"Pos": [10 + 12 * i, 20 + 9 * i, 30], "Kind": "Note",
                        "Tags": [], "Prop": {"action": "to split", "user": "demo"}})
        })
        .collect();
    http.json(
        "POST",
        &node("segmentation_todo/elements"),
        Some(json!(todos)),
    )?;
    // One skeleton, as dvidtools reads it: SWC with the mutation id in a header comment.
    let skel = bodies.iter().find(|b| b.len() == 1).map_or(1, |b| b[0]);
    http.call(
        "POST",
        &node(&format!("segmentation_skeletons/key/{skel}_swc")),
        Some(vol.skeleton_swc(skel).into_bytes()),
    )?;
    for (i, b) in bodies.iter().take(12).enumerate() {
        let status = ["Traced", "Anchor", "Roughly traced"][i % 3];
        let record = json!({"bodyid": b[0], "status": status, "type": "demo-cell",
                            "instance": format!("demo-cell-{}", b[0])});
        http.json(
            "POST",
            &node(&format!("segmentation_annotations/key/{}?u=demo", b[0])),
            Some(record),
        )?;
    }
    http.wait_synced()?;
    http.json(
        "POST",
        &node("commit"),
        Some(json!({"note": "demo: segmentation, grayscale, synapses", "log": []})),
    )?;
    let child = http.json(
        "POST",
        &node("newversion"),
        Some(json!({"note": "proofreading"})),
    )?["child"]
        .as_str()
        .context("newversion: no child")?
        .to_string();
    let at_child = |rest: &str| format!("/api/node/{child}/{rest}");

    // Proofreading in the child: merges, a cleave, a split.
    let pairs: Vec<&Vec<u64>> = bodies.iter().filter(|b| b.len() == 2).collect();
    for w in pairs.chunks(2).take(3) {
        if let [a, b] = w {
            http.json(
                "POST",
                &at_child(&format!("segmentation/merge?{WHO}")),
                Some(json!([a[0], b[0]])),
            )?;
        }
    }
    if let Some(b) = pairs.get(7) {
        http.json(
            "POST",
            &at_child(&format!("segmentation/cleave/{}?{WHO}", b[0])),
            Some(json!([b[1]])),
        )?;
    }
    if let Some(single) = bodies
        .iter()
        .find(|b| b.len() == 1 && vol.voxels_of(b[0]) > 2000)
    {
        http.call(
            "POST",
            &at_child(&format!("segmentation/split/{}?{WHO}", single[0])),
            Some(vol.split_rle(single[0])),
        )?;
    }
    Ok(Nodes { root, child })
}

fn print_ready(http: &Http, nodes: &Nodes, built: bool, took: Duration) {
    let host = format!("http://{}", http.bound);
    let child = &nodes.child;
    let centre = [SIZE[0] / 2, SIZE[1] / 2, SIZE[2] / 2];
    let state = json!({
        "dimensions": {"x": [8e-9, "m"], "y": [8e-9, "m"], "z": [8e-9, "m"]},
        "position": centre,
        "layers": [
            {"type": "image", "name": "grayscale", "source": format!("dvid://{host}/{child}/grayscale")},
            {"type": "segmentation", "name": "segmentation",
             "source": format!("dvid://{host}/{child}/segmentation")},
        ],
        "layout": "4panel",
    });
    let link = format!(
        "https://neuroglancer-demo.appspot.com/#!{}",
        utf8_percent_encode(&state.to_string(), NON_ALPHANUMERIC)
    );
    let what = if built {
        "built and serving"
    } else {
        "serving (built before)"
    };
    println!(
        "tessera demo ready in {:.1} s: {what} repo \"{ALIAS}\", root {} (committed), child {child} \
         (merges, a cleave and a split)",
        took.as_secs_f64(),
        nodes.root
    );
    println!("  neuroglancer: {link}");
    println!("  layer sources:");
    for s in [
        format!("dvid://{host}/{child}/grayscale"),
        format!("dvid://{host}/{child}/segmentation"),
        format!("precomputed://{host}/precomputed/{child}/grayscale"),
        format!("precomputed://{host}/precomputed/{child}/segmentation"),
    ] {
        println!("    {s}");
    }
    println!("  try:");
    for c in [
        format!("curl {host}/api/repo/{child}/info"),
        format!(
            "curl {host}/api/node/{child}/segmentation/label/{}_{}_{}",
            centre[0], centre[1], centre[2]
        ),
        format!("curl {host}/api/node/{child}/synapses_labelsz/top/5/PreSyn"),
        format!("curl {host}/api/node/{child}/bookmark_annotations/tag/user:demo"),
        format!("curl {host}/api/node/{child}/segmentation/mutations"),
    ] {
        println!("    {c}");
    }
}

/// The generated voxels: supervoxels grown from a jittered grid (Voronoi cells, bent so
/// they don't look like boxes), and grayscale with dark membranes between them.
struct Volume {
    /// Supervoxel per voxel, x fastest.
    sv: Vec<u64>,
    gray: Vec<u8>,
    supervoxels: u64,
}

fn hash(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Volume {
    fn generate() -> Volume {
        let grid = SIZE.map(|s| s.div_ceil(CELL));
        let seed = |c: [usize; 3]| -> [f64; 3] {
            let h = hash(((c[2] * grid[1] + c[1]) * grid[0] + c[0]) as u64);
            std::array::from_fn(|a| {
                (c[a] * CELL) as f64 + ((h >> (16 * a)) & 0xffff) as f64 / 65536.0 * CELL as f64
            })
        };
        let n = SIZE.iter().product::<usize>();
        let (mut sv, mut gray) = (vec![0u64; n], vec![0u8; n]);
        for z in 0..SIZE[2] {
            for y in 0..SIZE[1] {
                for x in 0..SIZE[0] {
                    // Bend space a little so cell walls curve.
                    let p = [
                        x as f64 + 4.0 * (y as f64 / 23.0).sin(),
                        y as f64 + 4.0 * (z as f64 / 19.0).sin(),
                        z as f64 + 3.0 * (x as f64 / 29.0).sin(),
                    ];
                    let c: [usize; 3] =
                        std::array::from_fn(|a| (p[a].max(0.0) as usize / CELL).min(grid[a] - 1));
                    let mut best = (f64::MAX, 0usize);
                    for dz in -1i64..=1 {
                        for dy in -1i64..=1 {
                            for dx in -1i64..=1 {
                                let q = [c[0] as i64 + dx, c[1] as i64 + dy, c[2] as i64 + dz];
                                if (0..3).any(|a| q[a] < 0 || q[a] >= grid[a] as i64) {
                                    continue;
                                }
                                let q = q.map(|v| v as usize);
                                let s = seed(q);
                                let d = (0..3).map(|a| (p[a] - s[a]).powi(2)).sum::<f64>();
                                if d < best.0 {
                                    best = (d, (q[2] * grid[1] + q[1]) * grid[0] + q[0]);
                                }
                            }
                        }
                    }
                    sv[(z * SIZE[1] + y) * SIZE[0] + x] = 1 + best.1 as u64;
                }
            }
        }
        for z in 0..SIZE[2] {
            for y in 0..SIZE[1] {
                for x in 0..SIZE[0] {
                    let i = (z * SIZE[1] + y) * SIZE[0] + x;
                    let wall = (x + 1 < SIZE[0] && sv[i + 1] != sv[i])
                        || (y + 1 < SIZE[1] && sv[i + SIZE[0]] != sv[i])
                        || (z + 1 < SIZE[2] && sv[i + SIZE[0] * SIZE[1]] != sv[i]);
                    let noise = (hash(i as u64) % 31) as f64 - 15.0;
                    let tone = 150.0 + 30.0 * ((x as f64 / 7.0).sin() * (y as f64 / 11.0).cos());
                    gray[i] =
                        if wall { 40.0 + noise } else { tone + noise }.clamp(0.0, 255.0) as u8;
                }
            }
        }
        let supervoxels = grid.iter().product::<usize>() as u64;
        Volume {
            sv,
            gray,
            supervoxels,
        }
    }

    fn at(&self, p: [usize; 3]) -> u64 {
        self.sv[(p[2] * SIZE[1] + p[1]) * SIZE[0] + p[0]]
    }

    fn voxels_of(&self, sv: u64) -> usize {
        self.sv.iter().filter(|&&l| l == sv).count()
    }

    /// PreSyn/PostSyn pairs across cell walls: a PreSyn and, 3 voxels further in x, a PostSyn
    /// in another supervoxel.
    fn synapses(&self) -> Value {
        let mut out = Vec::new();
        let mut i = 0u64;
        while out.len() < 2 * SYNAPSES && i < 100 * SYNAPSES as u64 {
            i += 1;
            let h = hash(i ^ 0x5EED);
            let p = [
                (h % (SIZE[0] as u64 - 4)) as usize,
                ((h >> 20) % SIZE[1] as u64) as usize,
                ((h >> 40) % SIZE[2] as u64) as usize,
            ];
            let q = [p[0] + 3, p[1], p[2]];
            if self.at(p) == self.at(q) {
                continue;
            }
            out.push(
                json!({"Pos": p, "Kind": "PreSyn", "Tags": [], "Prop": {"conf": "0.9"},
                            "Rels": [{"Rel": "PreSynTo", "To": q}]}),
            );
            out.push(
                json!({"Pos": q, "Kind": "PostSyn", "Tags": [], "Prop": {"conf": "0.8"},
                            "Rels": [{"Rel": "PostSynTo", "To": p}]}),
            );
        }
        // Pairs never share a point: drop any PreSyn drawn twice, with its partner.
        let mut seen = std::collections::HashSet::new();
        let mut kept = Vec::new();
        for pair in out.chunks(2) {
            let (a, b) = (pair[0]["Pos"].to_string(), pair[1]["Pos"].to_string());
            if seen.insert(a.clone()) && seen.insert(b.clone()) {
                kept.extend_from_slice(pair);
            }
        }
        json!(kept)
    }

    /// A skeleton of supervoxel `sv`: in each z plane it spans, one node on its middle voxel
    /// (so every node lies inside it), chained, in SWC with DVID's `{"mutation id": N}` header
    /// (positions in voxels).
    fn skeleton_swc(&self, sv: u64) -> String {
        let mut s = String::from("# {\"mutation id\": 0}\n");
        let plane = SIZE[0] * SIZE[1];
        let mut n = 0;
        for z in 0..SIZE[2] {
            let inside: Vec<usize> = (0..plane)
                .filter(|&i| self.sv[z * plane + i] == sv)
                .collect();
            let Some(&i) = inside.get(inside.len() / 2) else {
                continue;
            };
            n += 1;
            let parent = if n == 1 { -1 } else { n - 1 };
            s += &format!("{n} 0 {} {} {z} 2 {parent}\n", i % SIZE[0], i / SIZE[0]);
        }
        s
    }

    /// DVID's legacy RLE (runs along x) of supervoxel `sv`'s voxels with z below its middle.
    fn split_rle(&self, sv: u64) -> Vec<u8> {
        let zs: Vec<usize> = (0..SIZE[2])
            .filter(|&z| (0..SIZE[1] * SIZE[0]).any(|i| self.sv[z * SIZE[1] * SIZE[0] + i] == sv))
            .collect();
        let mid = (zs[0] + zs[zs.len() - 1]) / 2;
        let mut runs: Vec<[i32; 4]> = Vec::new();
        for z in zs.into_iter().filter(|&z| z <= mid) {
            for y in 0..SIZE[1] {
                let mut x = 0;
                while x < SIZE[0] {
                    if self.at([x, y, z]) != sv {
                        x += 1;
                        continue;
                    }
                    let start = x;
                    while x < SIZE[0] && self.at([x, y, z]) == sv {
                        x += 1;
                    }
                    runs.push([start as i32, y as i32, z as i32, (x - start) as i32]);
                }
            }
        }
        let mut out = vec![0u8, 3, 0, 0];
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(runs.len() as u32).to_le_bytes());
        for r in runs {
            for v in r {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out
    }
}

/// The ROI's blocks (32³ voxels at 8 nm; x 32..128, y 32..160, z 32..96 voxels) as an OBJ box
/// in nanometres.
fn roi_obj() -> String {
    let (lo, hi) = ([256.0, 256.0, 256.0], [1024.0, 1280.0, 768.0]);
    let mut s = String::new();
    for i in 0..8 {
        let v = [0, 1, 2].map(|a| if (i >> a) & 1 == 1 { hi[a] } else { lo[a] });
        s += &format!("v {} {} {}\n", v[0], v[1], v[2]);
    }
    for f in [
        [1, 3, 4, 2],
        [5, 6, 8, 7],
        [1, 2, 6, 5],
        [3, 7, 8, 4],
        [1, 5, 7, 3],
        [2, 4, 8, 6],
    ] {
        s += &format!(
            "f {} {} {}\nf {} {} {}\n",
            f[0], f[1], f[2], f[0], f[2], f[3]
        );
    }
    s
}

/// The demo's client of its own server.
struct Http {
    bound: SocketAddr,
    client: reqwest::blocking::Client,
}

impl Http {
    fn new(bound: SocketAddr) -> anyhow::Result<Http> {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(600))
            .no_proxy()
            .build()?;
        Ok(Http { bound, client })
    }

    fn call(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> anyhow::Result<Vec<u8>> {
        let url = format!("http://{}{path}", self.bound);
        let mut req = self.client.request(method.parse()?, &url);
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req.send().with_context(|| format!("{method} {path}"))?;
        let status = resp.status();
        let bytes = resp.bytes()?.to_vec();
        if !status.is_success() {
            bail!(
                "{method} {path}: {status}: {}",
                String::from_utf8_lossy(&bytes).trim()
            );
        }
        Ok(bytes)
    }

    fn json(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let bytes = self.call(method, path, body.map(|b| b.to_string().into_bytes()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).with_context(|| format!("{method} {path}: not JSON"))
    }

    fn wait_synced(&self) -> anyhow::Result<()> {
        while self.json("GET", "/api/server/sync?wait=600", None)?["CaughtUp"] != true {}
        Ok(())
    }
}
