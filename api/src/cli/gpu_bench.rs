//! `tessera bench gpu`: every kernel and the two fused batches on the GPU beside the CPU twin,
//! in one process on one volume, as one report.
//!
//! Per kernel: the GPU's wall time per call (uploads, passes, downloads) and its device time
//! (the compute passes alone, from timestamp queries: the rate the kernel reaches on
//! device-resident data), the bytes that crossed the bus, the CPU's time on all cores, whether
//! both gave the same bytes, and the share of the device's streaming roofline the kernel
//! reaches. The roofline is a copy kernel measured in the same run; a kernel's bytes are the
//! fewest it must move through device memory (each input read once, each output written
//! once), so 100 % is the floor, not a target every kernel can reach.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tessera_engine::compute::cpu::CpuCompute;
use tessera_engine::compute::gpu::GpuCompute;
use tessera_engine::compute::{self, BatchInput, BatchSteps, Cells, Compute, Shape, Transfers};

use super::bench::{
    BLOCK, block_batch, edit_tables, every_other_row, load_labels, median, synthetic_gray,
};

/// Mode levels the fused batches compute, as a labelmap's pyramid above each 64³ block does
/// (2³ at level 5).
const BATCH_LEVELS: u32 = 5;

pub struct GpuBenchArgs {
    pub input: Option<PathBuf>,
    pub size: usize,
    pub repeats: usize,
    pub json: Option<PathBuf>,
}

/// One kernel's measurements.
struct Row {
    kernel: &'static str,
    voxels: usize,
    /// The fewest bytes the kernel moves through device memory.
    bytes: f64,
    gpu_wall: f64,
    gpu_device: Option<f64>,
    cpu: f64,
    bus: Transfers,
    equal: bool,
}

struct Bench<'a> {
    gpu: &'a GpuCompute,
    cpu: &'a CpuCompute,
    repeats: usize,
    rows: Vec<Row>,
}

impl Bench<'_> {
    /// Times `run` on both backends (one warm-up each, then `repeats`), `prepare` making each
    /// call's input outside the timed region, and compares the two results.
    fn kernel<P, R: PartialEq>(
        &mut self,
        kernel: &'static str,
        voxels: usize,
        bytes: f64,
        mut prepare: impl FnMut() -> P,
        run: impl Fn(&dyn Compute, P) -> compute::Result<R>,
    ) -> anyhow::Result<()> {
        let (mut wall, mut device) = (Vec::new(), Vec::new());
        let mut bus = Transfers::default();
        let mut got = None;
        for i in 0..=self.repeats {
            let input = prepare();
            let before = self.gpu.transfers();
            let t = Instant::now();
            let out = run(self.gpu, input).with_context(|| format!("{kernel} on the GPU"))?;
            wall.push(t.elapsed().as_secs_f64());
            bus = self.gpu.transfers().since(before);
            if let Some((seconds, untimed)) = self.gpu.device_time() {
                if untimed > 0 {
                    bail!("{kernel}: {untimed} passes ran untimed");
                }
                device.push(seconds);
            }
            if i == 0 {
                wall.clear();
                device.clear();
            }
            got = Some(out);
        }
        let mut cpu = Vec::new();
        let mut want = None;
        for i in 0..=self.repeats {
            let input = prepare();
            let t = Instant::now();
            let out = run(self.cpu, input).with_context(|| format!("{kernel} on the CPU"))?;
            if i > 0 {
                cpu.push(t.elapsed().as_secs_f64());
            }
            want = Some(out);
        }
        self.rows.push(Row {
            kernel,
            voxels,
            bytes,
            gpu_wall: median(wall),
            gpu_device: (!device.is_empty()).then(|| median(device)),
            cpu: median(cpu),
            bus,
            equal: got == want,
        });
        Ok(())
    }
}

/// The bytes of every level but the input of an `levels`-level pyramid, per input byte.
fn pyramid_out(levels: i32) -> f64 {
    (1..=levels).map(|k| 0.125f64.powi(k)).sum()
}

pub fn run(args: GpuBenchArgs) -> anyhow::Result<()> {
    let gpu = GpuCompute::new_timed(compute::allow_software())
        .context("tessera bench gpu needs a GPU adapter")?;
    let cpu = CpuCompute::new();
    let (shape, labels) = load_labels(args.input.as_deref(), Shape::cube(args.size))?;
    let n = shape.voxels();
    let nf = n as f64;
    let repeats = args.repeats.max(1);
    // As many bytes as the u64 volume (the probe caps it at one binding: 256 MiB on a GPU,
    // several times its L2, so the copy streams from device memory).
    let roof = gpu.copy_bandwidth(8 * n as u64, repeats)?;
    let mut b = Bench {
        gpu: &gpu,
        cpu: &cpu,
        repeats,
        rows: Vec::new(),
    };

    let (table, split) = edit_tables(&labels)?;
    b.kernel(
        "relabel_1000_to_1",
        n,
        16.0 * nf,
        || labels.clone(),
        |c, mut v| c.relabel(&mut v, &table).map(|_| v),
    )?;
    let runs = every_other_row(shape);
    b.kernel(
        "split_apply",
        n,
        // The rows under the mask are read and written; the rest is not touched.
        16.0 * (runs.len() * shape.x) as f64,
        || labels.clone(),
        |c, mut v| c.split_apply(&mut v, shape, &runs, &split).map(|w| (w, v)),
    )?;
    b.kernel(
        "downsample_mode",
        n,
        8.0 * nf * (1.0 + pyramid_out(1)),
        || (),
        |c, _| c.downsample_mode(&labels, shape),
    )?;
    b.kernel(
        "pyramid_mode_5",
        n,
        8.0 * nf * (1.0 + pyramid_out(5)),
        || (),
        |c, _| c.pyramid_mode(&labels, shape, 5),
    )?;
    let gray = synthetic_gray(shape);
    b.kernel(
        "downsample_mean",
        n,
        nf * (1.0 + pyramid_out(1)),
        || (),
        |c, _| c.downsample_mean(&gray, shape),
    )?;
    b.kernel(
        "pyramid_mean_5",
        n,
        nf * (1.0 + pyramid_out(5)),
        || (),
        |c, _| c.pyramid_mean(&gray, shape, 5),
    )?;
    let surface = cpu.surface(&labels, shape, Cells::all(shape))?;
    let mesh_bytes: usize = surface[0]
        .iter()
        .map(|s| 12 * (s.vertices.len() + s.triangles.len()))
        .sum();
    b.kernel(
        "surface",
        n,
        8.0 * nf + mesh_bytes as f64,
        || (),
        |c, _| c.surface(&labels, shape, Cells::all(shape)),
    )?;

    let blocks = block_batch(&labels, shape)?;
    let block = Shape::cube(BLOCK);
    let bn = blocks.len();
    let bnf = bn as f64;
    b.kernel(
        "label_counts",
        bn,
        8.0 * bnf,
        || (),
        |c, _| c.label_counts(&blocks, block),
    )?;
    let encoded = cpu.block_encode(&blocks, block)?;
    let packed: usize = encoded.iter().map(Vec::len).sum();
    let refs: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
    b.kernel(
        "block_encode",
        bn,
        8.0 * bnf + packed as f64,
        || (),
        |c, _| c.block_encode(&blocks, block),
    )?;
    b.kernel(
        "block_decode",
        bn,
        packed as f64 + 8.0 * bnf,
        || (),
        |c, _| c.block_decode(&refs),
    )?;

    // The fused batches: an edit (compressed blocks in: decode → split → relabel → counts →
    // mode pyramid → every block's closed surfaces → encode) and an ingest (voxels in: counts
    // → mode pyramid → encode).
    let stacked = compute::batch::stacked(block, bn / block.voxels());
    let edit = BatchSteps {
        split: Some((every_other_row(stacked), split.clone())),
        relabel: Some(table.clone()),
        counts: true,
        levels: BATCH_LEVELS,
        surface: Some(Cells::all(block)),
        encode: true,
        voxels: false,
    };
    // The levels' bytes: 8 per voxel of each.
    let levels_bytes: f64 = (1..=BATCH_LEVELS)
        .map(|k| 8.0 * bnf / 8f64.powi(k as i32))
        .sum();
    let edit_meshes: usize = (cpu.run_batch(BatchInput::Encoded(&refs), block, &edit)?)
        .surfaces
        .iter()
        .flatten()
        .map(|s| 12 * (s.vertices.len() + s.triangles.len()))
        .sum();
    // Compressed in, compressed out, the levels and the meshes: what must cross device memory.
    let edit_bytes = 2.0 * packed as f64 + levels_bytes + edit_meshes as f64;
    b.kernel(
        "batch_edit",
        bn,
        edit_bytes,
        || (),
        |c, _| c.run_batch(BatchInput::Encoded(&refs), block, &edit),
    )?;
    let ingest = BatchSteps {
        counts: true,
        levels: BATCH_LEVELS,
        encode: true,
        ..BatchSteps::default()
    };
    b.kernel(
        "batch_ingest",
        bn,
        8.0 * bnf + packed as f64 + levels_bytes,
        || (),
        |c, _| c.run_batch(BatchInput::Voxels(&blocks), block, &ingest),
    )?;

    let report = report(&gpu, &cpu, shape, &args, &roof, &b.rows);
    print_table(&report);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if b.rows.iter().any(|r| !r.equal) {
        bail!("the GPU and the CPU disagree on some kernel (see `equal` above)");
    }
    Ok(())
}

fn report(
    gpu: &GpuCompute,
    cpu: &CpuCompute,
    shape: Shape,
    args: &GpuBenchArgs,
    roof: &compute::gpu::Bandwidth,
    rows: &[Row],
) -> Value {
    let roof_bps = roof.bytes_per_s;
    let kernels: Vec<Value> = rows
        .iter()
        .map(|r| {
            let v = r.voxels as f64;
            let bus = (r.bus.upload_bytes + r.bus.download_bytes) as f64;
            json!({
                "kernel": r.kernel,
                "voxels": r.voxels,
                "equal": r.equal,
                "model_bytes": r.bytes,
                "gpu_wall_s": r.gpu_wall,
                "gpu_device_s": r.gpu_device,
                "cpu_s": r.cpu,
                "gpu_wall_gvox_s": v / r.gpu_wall / 1e9,
                "gpu_device_gvox_s": r.gpu_device.map(|d| v / d / 1e9),
                "cpu_gvox_s": v / r.cpu / 1e9,
                "roofline_pct": r.gpu_device.map(|d| 100.0 * r.bytes / d / roof_bps),
                "bus_uploads": r.bus.uploads,
                "bus_downloads": r.bus.downloads,
                "bus_bytes": bus,
                "bus_bytes_per_voxel": bus / v,
            })
        })
        .collect();
    json!({
        "adapter": gpu.adapter(),
        "cpu": cpu.adapter(),
        "volume": {
            "shape": [shape.x, shape.y, shape.z],
            "source": args.input.as_ref().map_or("synthetic".into(), |p| p.display().to_string()),
        },
        "repeats": args.repeats,
        "roofline": {
            "copy_gb_s": roof_bps / 1e9,
            "copy_bytes": roof.bytes,
            "clock": if roof.device_clock { "device timestamps" } else { "host, after a sync" },
        },
        "kernels": kernels,
    })
}

fn print_table(report: &Value) {
    println!(
        "adapter {} | cpu {} | copy roofline {:.0} GB/s ({})",
        report["adapter"].as_str().unwrap_or_default(),
        report["cpu"].as_str().unwrap_or_default(),
        report["roofline"]["copy_gb_s"].as_f64().unwrap_or_default(),
        report["roofline"]["clock"].as_str().unwrap_or_default(),
    );
    println!(
        "{:<18} {:>6} {:>10} {:>10} {:>8} {:>9} {:>9} {:>9}",
        "kernel", "equal", "dev Gvox/s", "wall Gv/s", "cpu Gv/s", "dev/cpu", "roof %", "bus B/vox"
    );
    let num = |v: &Value| v.as_f64().map_or("-".to_string(), |x| format!("{x:.2}"));
    for k in report["kernels"].as_array().into_iter().flatten() {
        let ratio = k["gpu_device_gvox_s"]
            .as_f64()
            .zip(k["cpu_gvox_s"].as_f64())
            .map(|(g, c)| json!(g / c));
        println!(
            "{:<18} {:>6} {:>10} {:>10} {:>8} {:>9} {:>9} {:>9}",
            k["kernel"].as_str().unwrap_or_default(),
            k["equal"],
            num(&k["gpu_device_gvox_s"]),
            num(&k["gpu_wall_gvox_s"]),
            num(&k["cpu_gvox_s"]),
            num(&ratio.unwrap_or(Value::Null)),
            num(&k["roofline_pct"]),
            num(&k["bus_bytes_per_voxel"]),
        );
    }
}
