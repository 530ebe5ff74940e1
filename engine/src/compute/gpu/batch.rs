//! `run_batch` on the device: the whole sequence with the voxels resident.
//!
//! Per chunk of blocks (all of them, unless they outgrow one binding):
//!
//! 1. **One upload**: one buffer, written through its mapping, holding every kernel's
//!    parameters, the compressed bytes and their sub-block descriptors (or the voxels), the
//!    split runs and tables, the relabel table and the encoder's output layout. Kernels bind
//!    ranges of it.
//! 2. **Dispatches** into one encoder on device buffers: decode → split → relabel → counts →
//!    mode pyramid (each level from the one before) → surface counts → encode, each writing
//!    what the next reads.
//! 3. **One download** when the input is encoded: one staging buffer, mapped once, holding
//!    the flags, every sub-block's label count, the count entries, the encoder's label lists
//!    and packed values, the pyramid's levels (and the voxels when asked). The encoder's and
//!    the counts' outputs vary in size, so the host lays them out from bounds it knows before
//!    anything runs: a block holds at most its table's N labels (+1 for the zeros of a
//!    sub-block with Ns = 0) and a sub-block at most max(Ns, 1); relabel (a function) never adds
//!    labels and split at most doubles them, and only where its runs reach. The staging copy
//!    therefore holds at most about twice the exact lists and packed values, which are of the
//!    size of the compressed input; the host then assembles each block's bytes.
//!
//!    Voxel input gives no such bound (a sub-block may hold 512 labels), so when it asks for
//!    counts or encoding the download is two maps: the first brings the flags, label counts
//!    per sub-block (4 bytes each), the entry count, the levels and the voxels asked
//!    for; the second brings exactly the used entries, label lists and packed values, gathered
//!    by copies on the device. Every other voxel batch is one download.
//!
//! The surface's outputs vary in size with no bound worth staging, so the first download also
//! brings their scanned totals, and the meshes come in one more (per range of cells whose
//! outputs fit a binding): vertices numbered on the device, triangles as vertex slots
//! (`surface::emit_indexed`).
//!
//! A batch whose blocks do not all fit one binding (`Gpu::max_binding`; 64 blocks of 64³
//! exactly fill 128 MiB, lavapipe's limit) is cut into chunks of whole blocks, each with its
//! own upload and download(s). A block or table that alone outgrows a binding (only with an
//! artificially small limit) sends the whole batch to the CPU twin.

use std::ops::Range as Span;

use super::decode;
use super::device::{Gpu, Range, to_u32s, to_u64s};
use super::{counts, downsample, encode, labels, surface};
use crate::compute::batch::{self, BatchInput, BatchOutput, BatchSteps};
use crate::compute::cpu::CpuCompute;
use crate::compute::{Compute, ComputeError, LabelTable, Result, Run, Shape, normalize_runs};

/// The pipelines a batch runs.
pub struct Kernels<'a> {
    pub decode: &'a wgpu::ComputePipeline,
    pub split: &'a wgpu::ComputePipeline,
    pub relabel: &'a wgpu::ComputePipeline,
    pub counts: [&'a wgpu::ComputePipeline; 2],
    pub mode: &'a wgpu::ComputePipeline,
    pub encode: [&'a wgpu::ComputePipeline; 2],
    pub surface: &'a surface::Kernels,
}

/// What the host knows of one block before anything runs.
struct BlockPlan<'a> {
    /// Compressed bytes (encoded input).
    bytes: Option<&'a [u8]>,
    /// Sub-block descriptors relative to the block's first byte (encoded input).
    subs: Vec<[u32; 4]>,
    /// Its share of the batch's normalized runs.
    runs: Span<usize>,
    /// Most distinct labels the block holds once split and relabelled.
    labels: usize,
    /// Most distinct labels each sub-block holds (encoding only).
    caps: Vec<u32>,
}

/// A range of the upload buffer.
#[derive(Clone, Copy, Default)]
struct Sec {
    at: u64,
    size: u64,
}

/// Lays out ranges of one buffer, each aligned for binding and padded to whole words.
struct Sections {
    len: u64,
    align: u64,
}

impl Sections {
    fn add(&mut self, bytes: u64) -> Sec {
        let at = self.len.next_multiple_of(self.align);
        let size = bytes.next_multiple_of(4).max(16);
        self.len = at + size;
        Sec { at, size }
    }
}

/// One chunk's layout: upload ranges and device buffer sizes.
#[derive(Default)]
struct Layout {
    p_decode: Sec,
    p_split: Sec,
    p_relabel: Sec,
    p_counts: Sec,
    /// One per level.
    p_mode: Vec<Sec>,
    p_encode: Sec,
    data: Sec,
    subs: Sec,
    voxels: Sec,
    split_keys: Sec,
    split_values: Sec,
    runs: Sec,
    relabel_keys: Sec,
    relabel_values: Sec,
    slots: Sec,
    upload: u64,
    /// Room for count entries.
    entries: usize,
    /// Per sub-block of the chunk: (first label, capacity, first packed word).
    slot_list: Vec<[u32; 4]>,
    /// Labels and packed words all sub-blocks have room for.
    list_len: usize,
    words: usize,
    /// Largest binding and the staging size.
    largest: u64,
    staging: u64,
}

/// The batch after validation, with everything the chunks share.
struct Batch<'a> {
    input: BatchInput<'a>,
    block: Shape,
    steps: &'a BatchSteps,
    plans: Vec<BlockPlan<'a>>,
    /// Normalized runs and their table, when split has work.
    split: Option<(Vec<Run>, &'a LabelTable)>,
    relabel: Option<&'a LabelTable>,
    /// Counts and encoded sizes are known in advance (encoded input).
    bounded: bool,
}

impl Batch<'_> {
    fn rewrites(&self) -> bool {
        self.split.is_some() || self.relabel.is_some()
    }

    fn nsb(&self) -> usize {
        self.block.voxels() / 512
    }

    fn layout(&self, gpu: &Gpu, blocks: Span<usize>) -> Layout {
        let (block, steps) = (self.block, self.steps);
        let k = blocks.len();
        let v = block.voxels() as u64;
        let plans = &self.plans[blocks.clone()];
        let mut s = Sections {
            len: 0,
            align: gpu.offset_align.max(16),
        };
        let mut l = Layout::default();
        let words = |n: u64| n.next_multiple_of(4) * 4;
        l.p_decode = s.add(words(8));
        l.p_split = s.add(words(5));
        l.p_relabel = s.add(words(2));
        l.p_counts = s.add(words(4));
        l.p_mode = (0..steps.levels).map(|_| s.add(words(7))).collect();
        l.p_encode = s.add(words(8));
        let mut bindings = vec![k as u64 * v * 8];
        if let BatchInput::Encoded(_) = self.input {
            let data: u64 = plans
                .iter()
                .map(|p| p.bytes.unwrap().len().next_multiple_of(4) as u64)
                .sum();
            l.data = s.add(data + 8);
            l.subs = s.add((k * self.nsb()) as u64 * 16);
            bindings.extend([l.data.size, l.subs.size]);
        } else {
            l.voxels = s.add(k as u64 * v * 8);
        }
        if let Some((_, table)) = &self.split {
            let runs = plans.last().unwrap().runs.end - plans[0].runs.start;
            l.split_keys = s.add(table.len() as u64 * 8);
            l.split_values = s.add(table.len() as u64 * 8);
            l.runs = s.add(runs as u64 * 16);
            bindings.extend([l.split_keys.size, l.runs.size]);
        }
        if let Some(table) = self.relabel {
            l.relabel_keys = s.add(table.len() as u64 * 8);
            l.relabel_values = s.add(table.len() as u64 * 8);
            bindings.push(l.relabel_keys.size);
        }
        let mut staging = 16u64;
        if steps.counts {
            l.entries = plans.iter().map(|p| p.labels).sum();
            let slots = (k as u64) << counts::slots_log2(block);
            bindings.extend([slots * 4, l.entries as u64 * 8]);
            staging += l.entries as u64 * 16;
        }
        if steps.encode {
            for p in plans {
                for &cap in &p.caps {
                    let first_word = l.words;
                    l.slot_list
                        .push([l.list_len as u32, cap, first_word as u32, 0]);
                    l.list_len += cap as usize;
                    l.words += encode::packed_bytes(cap) / 4;
                }
            }
            l.slots = s.add(l.slot_list.len() as u64 * 16);
            let n_sub = (k * self.nsb()) as u64;
            bindings.extend([
                k as u64 * v * 4,
                l.list_len as u64 * 8,
                l.words as u64 * 4,
                l.slots.size,
            ]);
            staging += n_sub * 4 + l.list_len as u64 * 8 + l.words as u64 * 4;
        }
        for level in 1..=steps.levels {
            staging += (k as u64 * v * 8) >> (3 * level);
        }
        if let Some(cells) = steps.surface {
            let (binding, sums) = surface::count_sizes((k * cells.count()) as u64);
            bindings.push(binding);
            staging += sums;
        }
        if steps.voxels {
            staging += k as u64 * v * 8;
        }
        l.upload = s.len;
        l.largest = bindings.into_iter().max().unwrap();
        l.staging = staging;
        l
    }

    fn fits(&self, gpu: &Gpu, blocks: Span<usize>) -> bool {
        if self.steps.surface.is_some() && blocks.len() > surface::MAX_ITEMS {
            return false;
        }
        let l = self.layout(gpu, blocks);
        l.largest <= gpu.max_binding && l.upload <= gpu.max_buffer && l.staging <= gpu.max_buffer
    }

    /// Whole blocks per chunk, greedily; None when a single block does not fit.
    fn chunks(&self, gpu: &Gpu) -> Option<Vec<Span<usize>>> {
        let mut out = Vec::new();
        let mut start = 0;
        while start < self.plans.len() {
            let mut end = start + 1;
            if !self.fits(gpu, start..end) {
                return None;
            }
            while end < self.plans.len() && self.fits(gpu, start..end + 1) {
                end += 1;
            }
            out.push(start..end);
            start = end;
        }
        Some(out)
    }
}

/// Validates the batch and plans every block.
fn prepare<'a>(input: BatchInput<'a>, block: Shape, steps: &'a BatchSteps) -> Result<Batch<'a>> {
    let n = batch::check(input, block, steps)?;
    let v = block.voxels();
    let volume = batch::stacked(block, n);
    let walked = match input {
        BatchInput::Encoded(blocks) => {
            let mut walked = Vec::with_capacity(n);
            for b in blocks {
                let w = decode::walk(b)?;
                batch::check_decoded_shape(w.shape, block)?;
                walked.push(w);
            }
            Some(walked)
        }
        BatchInput::Voxels(_) => None,
    };
    let split = steps.split.as_ref().and_then(|(runs, table)| {
        let runs = normalize_runs(runs, volume);
        (!runs.is_empty() && !table.is_empty()).then_some((runs, table))
    });
    let relabel = steps.relabel.as_ref().filter(|t| !t.is_empty());
    // Sub-blocks some run reaches: split may double their labels.
    let (gx, gy) = (block.x.div_ceil(8), block.y.div_ceil(8));
    let nsb = gx * gy * block.z.div_ceil(8);
    let mut touched = vec![false; if walked.is_some() { n * nsb } else { 0 }];
    if let (Some((runs, _)), false) = (&split, touched.is_empty()) {
        for r in runs {
            let (b, z) = (r.z as usize / block.z, r.z as usize % block.z);
            let row = b * nsb + ((z / 8) * gy + r.y as usize / 8) * gx;
            for sx in r.x as usize / 8..=(r.x + r.len - 1) as usize / 8 {
                touched[row + sx] = true;
            }
        }
    }
    let run_at = |z: usize| {
        split
            .as_ref()
            .map_or(0, |(runs, _)| runs.partition_point(|r| (r.z as usize) < z))
    };
    let mut plans = Vec::with_capacity(n);
    for i in 0..n {
        let runs = run_at(i * block.z)..run_at((i + 1) * block.z);
        let plan = match (&walked, input) {
            (Some(walked), BatchInput::Encoded(blocks)) => {
                let w = &walked[i];
                let reach = &touched[i * nsb..(i + 1) * nsb];
                let grow = |t: bool| if t { 2 } else { 1 };
                let labels = ((w.labels + 1) * grow(reach.iter().any(|&t| t))).min(v);
                let caps = if steps.encode {
                    w.subs
                        .iter()
                        .zip(reach)
                        .map(|(d, &t)| (d[0].max(1) as usize * grow(t)).min(512) as u32)
                        .collect()
                } else {
                    Vec::new()
                };
                BlockPlan {
                    bytes: Some(blocks[i]),
                    subs: w.subs.clone(),
                    runs,
                    labels,
                    caps,
                }
            }
            _ => BlockPlan {
                bytes: None,
                subs: Vec::new(),
                runs,
                labels: v,
                caps: if steps.encode {
                    vec![512; v / 512]
                } else {
                    Vec::new()
                },
            },
        };
        plans.push(plan);
    }
    Ok(Batch {
        input,
        block,
        steps,
        plans,
        split,
        relabel,
        bounded: walked.is_some(),
    })
}

pub fn run(
    gpu: &Gpu,
    kernels: &Kernels,
    input: BatchInput<'_>,
    block: Shape,
    steps: &BatchSteps,
) -> Result<BatchOutput> {
    let batch = prepare(input, block, steps)?;
    let tables_fit = batch
        .split
        .as_ref()
        .is_none_or(|(_, t)| labels::table_fits(gpu, t))
        && batch.relabel.is_none_or(|t| labels::table_fits(gpu, t));
    let chunks = match batch.chunks(gpu) {
        Some(chunks) if tables_fit => chunks,
        // Only with an artificially small binding limit.
        _ => return CpuCompute::new().run_batch(input, block, steps),
    };
    let mut out = BatchOutput::default();
    for chunk in chunks {
        run_chunk(gpu, kernels, &batch, chunk, &mut out)?;
    }
    Ok(out)
}

fn bytes_of<T: bytemuck::Pod>(words: &[T]) -> &[u8] {
    bytemuck::cast_slice(words)
}

fn padded_words(words: &[u32]) -> Vec<u32> {
    let mut w = words.to_vec();
    w.resize(words.len().next_multiple_of(4), 0);
    w
}

fn range(buffer: &wgpu::Buffer, s: Sec) -> Range<'_> {
    Range {
        buffer,
        offset: s.at,
        size: s.size,
    }
}

fn run_chunk(
    gpu: &Gpu,
    k: &Kernels,
    batch: &Batch,
    blocks: Span<usize>,
    out: &mut BatchOutput,
) -> Result<()> {
    let (block, steps) = (batch.block, batch.steps);
    let n = blocks.len();
    let v = block.voxels();
    let voxels = n * v;
    let nsb = batch.nsb();
    let n_sub = n * nsb;
    let plans = &batch.plans[blocks.clone()];
    let l = batch.layout(gpu, blocks.clone());

    // 1. Everything the host sends, in one buffer.
    let p_decode = padded_words(&decode::params(block, voxels));
    let chunk_runs = plans[0].runs.start..plans.last().unwrap().runs.end;
    let quads = batch
        .split
        .as_ref()
        .map(|(runs, _)| labels::quads(&runs[chunk_runs.clone()]))
        .unwrap_or_default();
    let split_len = batch.split.as_ref().map_or(0, |(_, t)| t.len());
    let z0 = blocks.start * block.z;
    let p_split = padded_words(&labels::split_params(quads.len(), split_len, block, z0));
    let relabel_len = batch.relabel.map_or(0, |t| t.len());
    let p_relabel = padded_words(&[voxels as u32, relabel_len as u32]);
    let p_counts = padded_words(&counts::params(block, n));
    let volume = batch::stacked(block, n);
    // Level k's parameters: one level down from level k − 1's stacked volume.
    let p_mode: Vec<Vec<u32>> = std::iter::successors(Some(volume), |s| Some(s.half()))
        .take(steps.levels as usize)
        .map(|s| padded_words(&downsample::params(s)))
        .collect();
    let p_encode = padded_words(&encode::params(block, n_sub, false));
    let mut data = Vec::new();
    let mut subs = Vec::new();
    if batch.bounded {
        for p in plans {
            decode::append(&mut data, &mut subs, p.bytes.unwrap(), &p.subs);
        }
        decode::finish(&mut data);
    }
    let mut parts: Vec<(u64, &[u8])> = vec![
        (l.p_decode.at, bytes_of(&p_decode)),
        (l.p_split.at, bytes_of(&p_split)),
        (l.p_relabel.at, bytes_of(&p_relabel)),
        (l.p_counts.at, bytes_of(&p_counts)),
        (l.p_encode.at, bytes_of(&p_encode)),
        (l.data.at, &data),
        (l.subs.at, bytes_of(&subs)),
        (l.runs.at, bytes_of(&quads)),
        (l.slots.at, bytes_of(&l.slot_list)),
    ];
    for (sec, p) in l.p_mode.iter().zip(&p_mode) {
        parts.push((sec.at, bytes_of(p)));
    }
    if let BatchInput::Voxels(src) = batch.input {
        parts.push((
            l.voxels.at,
            bytes_of(&src[blocks.start * v..blocks.end * v]),
        ));
    }
    if let Some((_, t)) = &batch.split {
        parts.push((l.split_keys.at, bytes_of(t.from())));
        parts.push((l.split_values.at, bytes_of(t.to())));
    }
    if let Some(t) = batch.relabel {
        parts.push((l.relabel_keys.at, bytes_of(t.from())));
        parts.push((l.relabel_values.at, bytes_of(t.to())));
    }
    let up = gpu.upload(l.upload, &parts)?;
    drop(data);

    // 2. The kernels, on device buffers.
    let mut enc = gpu.encoder();
    let vox_bytes = voxels as u64 * 8;
    let work = (batch.bounded || batch.rewrites()).then(|| gpu.zeroed(vox_bytes));
    let vox = match &work {
        Some(w) => Range::prefix(w, vox_bytes),
        None => Range {
            buffer: &up,
            offset: l.voxels.at,
            size: vox_bytes,
        },
    };
    let bad = gpu.zeroed(4);
    let written = gpu.zeroed(4);
    let cursor = gpu.zeroed(4);
    if batch.bounded {
        decode::record(
            gpu,
            &mut enc,
            k.decode,
            range(&up, l.p_decode),
            range(&up, l.data),
            range(&up, l.subs),
            vox,
            Range::prefix(&bad, 4),
            voxels,
        );
    } else if let Some(w) = &work {
        enc.copy_buffer_to_buffer(&up, l.voxels.at, w, 0, vox_bytes);
    }
    if batch.split.is_some() && !quads.is_empty() {
        let ranges = [
            range(&up, l.p_split),
            vox,
            range(&up, l.split_keys),
            range(&up, l.split_values),
            range(&up, l.runs),
            Range::prefix(&written, 4),
        ];
        labels::record_split(gpu, &mut enc, k.split, ranges, quads.len());
    }
    if batch.relabel.is_some() {
        let ranges = [
            range(&up, l.p_relabel),
            vox,
            range(&up, l.relabel_keys),
            range(&up, l.relabel_values),
        ];
        labels::record_relabel(gpu, &mut enc, k.relabel, ranges, voxels);
    }
    let slots = (n as u64) << counts::slots_log2(block);
    let count_bufs = steps.counts.then(|| {
        [
            gpu.zeroed(slots * 4),
            gpu.zeroed(slots * 4),
            gpu.zeroed(l.entries as u64 * 8),
            gpu.zeroed(l.entries as u64 * 8),
        ]
    });
    if let Some([owner, count, entry_labels, entry_meta]) = &count_bufs {
        let b = counts::Buffers {
            params: range(&up, l.p_counts),
            labels: vox,
            owner: Range::whole(owner),
            count: Range::whole(count),
            entry_labels: Range::prefix(entry_labels, l.entries as u64 * 8),
            entry_meta: Range::prefix(entry_meta, l.entries as u64 * 8),
            cursor: Range::prefix(&cursor, 4),
        };
        counts::record(gpu, &mut enc, k.counts, &b, block, n);
    }
    // Each level from the one before, on the device.
    let level_voxels: Vec<usize> = (1..=steps.levels).map(|k| voxels >> (3 * k)).collect();
    let levels: Vec<wgpu::Buffer> = level_voxels
        .iter()
        .map(|&len| gpu.zeroed(len as u64 * 8))
        .collect();
    for (i, dst) in levels.iter().enumerate() {
        let src = match i {
            0 => vox,
            _ => Range::prefix(&levels[i - 1], level_voxels[i - 1] as u64 * 8),
        };
        let dst = Range::prefix(dst, level_voxels[i] as u64 * 8);
        let ranges = [range(&up, l.p_mode[i]), src, dst];
        downsample::record_level(gpu, &mut enc, k.mode, ranges, level_voxels[i] as u64);
    }
    let enc_bufs = steps.encode.then(|| {
        [
            gpu.zeroed(voxels as u64 * 4),
            gpu.zeroed(n_sub as u64 * 4),
            gpu.zeroed(l.list_len as u64 * 8),
            gpu.zeroed(l.words as u64 * 4),
        ]
    });
    if let Some([index, ns, lists, packed]) = &enc_bufs {
        let b = encode::Buffers {
            params: range(&up, l.p_encode),
            labels: vox,
            index: Range::whole(index),
            counts: Range::whole(ns),
            lists: Range::whole(lists),
            packed: Range::whole(packed),
            slots: range(&up, l.slots),
        };
        encode::record(gpu, &mut enc, k.encode, &b, n_sub);
    }
    let meshes = (steps.surface)
        .map(|cells| surface::count_items(gpu, k.surface, &mut enc, vox, block, n, cells));

    // 3. Back: one staging buffer for everything whose size the host knows.
    let mut reads: Vec<Range> = vec![
        Range::prefix(&bad, 4),
        Range::prefix(&written, 4),
        Range::prefix(&cursor, 4),
    ];
    if let Some([_, ns, _, _]) = &enc_bufs {
        reads.push(Range::prefix(ns, n_sub as u64 * 4));
    }
    let bounded_parts = reads.len();
    if batch.bounded {
        if let Some([_, _, entry_labels, entry_meta]) = &count_bufs {
            reads.push(Range::prefix(entry_labels, l.entries as u64 * 8));
            reads.push(Range::prefix(entry_meta, l.entries as u64 * 8));
        }
        if let Some([_, _, lists, packed]) = &enc_bufs {
            reads.push(Range::prefix(lists, l.list_len as u64 * 8));
            reads.push(Range::prefix(packed, l.words as u64 * 4));
        }
    }
    let levels_read = reads.len();
    for (buffer, &len) in levels.iter().zip(&level_voxels) {
        reads.push(Range::prefix(buffer, len as u64 * 8));
    }
    let vox_read = reads.len();
    if steps.voxels {
        reads.push(vox);
    }
    let meshes_read = reads.len();
    if let Some(m) = &meshes {
        reads.extend(m.reads());
    }
    let (got, at) = gpu.download(enc, &reads)?;
    if let Some(m) = &meshes {
        let sums = &got[at[meshes_read]..];
        out.surfaces
            .extend(surface::emit_indexed(gpu, k.surface, m, sums)?);
    }
    let word = |i: usize| u32::from_le_bytes(got[at[i]..at[i] + 4].try_into().unwrap());
    if batch.bounded && word(0) != 0 {
        return Err(decode::bad_index());
    }
    out.written += word(1) as u64;
    let used = word(2) as usize;
    let ns = steps
        .encode
        .then(|| to_u32s(&got[at[3]..at[3] + n_sub * 4]));
    let span = |i: usize, len: usize| &got[at[i]..at[i] + len];
    out.levels.resize(level_voxels.len(), Vec::new());
    for (i, (level, &len)) in out.levels.iter_mut().zip(&level_voxels).enumerate() {
        level.extend(to_u64s(span(levels_read + i, len * 8)));
    }
    if steps.voxels {
        out.voxels
            .extend(to_u64s(span(vox_read, vox_bytes as usize)));
    }
    if let Some(ns) = &ns
        && let Some(s) = (0..n_sub).find(|&s| ns[s] > l.slot_list[s][1])
    {
        return Err(ComputeError::Device(format!(
            "sub-block {s} holds {} labels, more than the {} it can",
            ns[s], l.slot_list[s][1]
        )));
    }

    // The variable-size outputs: in this download when bounded, else in a second one.
    let dims = [block.x / 8, block.y / 8, block.z / 8];
    if batch.bounded {
        let mut i = bounded_parts;
        if steps.counts {
            let len = l.entries * 8;
            let found = counts::collect(span(i, len), span(i + 1, len), used, l.entries, n)?;
            out.counts.extend(found);
            i += 2;
        }
        if let Some(ns) = &ns {
            let lists = to_u64s(span(i, l.list_len * 8));
            let packed = span(i + 1, l.words * 4);
            let list_at: Vec<usize> = l.slot_list.iter().map(|s| s[0] as usize).collect();
            let pack_at: Vec<usize> = l.slot_list.iter().map(|s| s[2] as usize * 4).collect();
            for b in 0..n {
                let sb = b * nsb..(b + 1) * nsb;
                out.blocks.push(encode::assemble(
                    dims,
                    &ns[sb.clone()],
                    &lists,
                    &list_at[sb.clone()],
                    packed,
                    &pack_at[sb],
                ));
            }
        }
        return Ok(());
    }
    if !(steps.counts || steps.encode) {
        return Ok(());
    }
    let mut reads: Vec<Range> = Vec::new();
    if let Some([_, _, entry_labels, entry_meta]) = &count_bufs {
        if used > l.entries {
            return Err(ComputeError::Device(format!(
                "label counts found {used} entries where at most {} can exist",
                l.entries
            )));
        }
        reads.push(Range::prefix(entry_labels, used as u64 * 8));
        reads.push(Range::prefix(entry_meta, used as u64 * 8));
    }
    let first_list = reads.len();
    if let (Some([_, _, lists, packed]), Some(ns)) = (&enc_bufs, &ns) {
        for (s, slot) in l.slot_list.iter().enumerate() {
            reads.push(Range {
                buffer: lists,
                offset: slot[0] as u64 * 8,
                size: ns[s] as u64 * 8,
            });
        }
        for (s, slot) in l.slot_list.iter().enumerate() {
            reads.push(Range {
                buffer: packed,
                offset: slot[2] as u64 * 4,
                size: encode::packed_bytes(ns[s]) as u64,
            });
        }
    }
    let (got, at) = gpu.download(gpu.encoder(), &reads)?;
    if steps.counts {
        let len = used * 8;
        let labels = &got[at[0]..at[0] + len];
        let meta = &got[at[1]..at[1] + len];
        out.counts
            .extend(counts::collect(labels, meta, used, l.entries, n)?);
    }
    if let Some(ns) = &ns {
        // Lists and packed values lie one after another, each a multiple of 8 bytes.
        let lists_from = at[first_list];
        let packed_from = at[first_list + n_sub];
        let lists = to_u64s(&got[lists_from..packed_from]);
        let list_at: Vec<usize> = (0..n_sub)
            .map(|s| (at[first_list + s] - lists_from) / 8)
            .collect();
        let pack_at: Vec<usize> = (0..n_sub)
            .map(|s| at[first_list + n_sub + s] - packed_from)
            .collect();
        let packed = &got[packed_from..];
        for b in 0..n {
            let sb = b * nsb..(b + 1) * nsb;
            out.blocks.push(encode::assemble(
                dims,
                &ns[sb.clone()],
                &lists,
                &list_at[sb.clone()],
                packed,
                &pack_at[sb],
            ));
        }
    }
    Ok(())
}
