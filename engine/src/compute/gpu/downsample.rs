//! 2×2×2 pyramids (label mode and uint8 mean) over z-slabs.
//!
//! A slab whose thickness is a multiple of 2^g and which starts at a multiple of 2^g maps onto
//! whole output planes for g levels, and odd-size padding only happens at the volume's far
//! edge, which is also the last slab's far edge; so slabs are independent and their outputs,
//! concatenated, are the levels. Each slab's levels are one submission with the intermediate
//! levels kept on the device. When 2^levels planes do not fit in one binding, the levels are
//! done in groups, each group starting from the previous group's last level.

use super::device::{Gpu, Range, WORKGROUP, to_u64s};
use crate::compute::{Result, Shape, reference};

/// How a voxel type lives on the device.
#[derive(Clone, Copy)]
enum Voxel {
    /// u64 labels, one `vec2<u32>` each; one invocation per output voxel.
    Label,
    /// u8, four to a u32; one invocation per output word.
    Byte,
}

impl Voxel {
    fn size(self) -> usize {
        match self {
            Voxel::Label => 8,
            Voxel::Byte => 1,
        }
    }

    fn invocations(self, out: Shape) -> u64 {
        match self {
            Voxel::Label => out.voxels() as u64,
            Voxel::Byte => out.voxels().div_ceil(4) as u64,
        }
    }
}

pub fn pyramid_mode(
    gpu: &Gpu,
    pipe: &wgpu::ComputePipeline,
    src: &[u64],
    shape: Shape,
    levels: u32,
) -> Result<Vec<Vec<u64>>> {
    let levels = pyramid(
        gpu,
        pipe,
        Voxel::Label,
        bytemuck::cast_slice(src),
        shape,
        levels,
    )?;
    Ok(levels.iter().map(|l| to_u64s(l)).collect())
}

pub fn pyramid_mean(
    gpu: &Gpu,
    pipe: &wgpu::ComputePipeline,
    src: &[u8],
    shape: Shape,
    levels: u32,
) -> Result<Vec<Vec<u8>>> {
    pyramid(gpu, pipe, Voxel::Byte, src, shape, levels)
}

/// Levels as raw little-endian bytes.
fn pyramid(
    gpu: &Gpu,
    pipe: &wgpu::ComputePipeline,
    voxel: Voxel,
    src: &[u8],
    shape: Shape,
    levels: u32,
) -> Result<Vec<Vec<u8>>> {
    let mut out: Vec<Vec<u8>> = Vec::with_capacity(levels as usize);
    let mut shape = shape;
    while out.len() < levels as usize {
        let input: &[u8] = out.last().map_or(src, |l| l.as_slice());
        let plane = shape.x * shape.y * voxel.size();
        // Padding a byte slab to whole words adds at most 3 bytes.
        let fits = |planes: usize| (plane * planes + 3) as u64 <= gpu.max_binding;
        let remaining = levels as usize - out.len();
        let mut group = remaining.min(16);
        while group > 0 && !fits(1 << group) {
            group -= 1;
        }
        if group == 0 {
            let rest = fallback(voxel, input, shape, remaining as u32);
            out.extend(rest);
            break;
        }
        let unit = 1usize << group;
        let most = (gpu.max_binding as usize - 3) / plane / unit * unit;
        let thickness = most.min(shape.z.next_multiple_of(unit));
        let mut group_out: Vec<Vec<u8>> = vec![Vec::new(); group];
        for z0 in (0..shape.z).step_by(thickness) {
            let z1 = (z0 + thickness).min(shape.z);
            let slab = Shape::new(shape.x, shape.y, z1 - z0);
            let parts = slab_levels(
                gpu,
                pipe,
                voxel,
                &input[z0 * plane..z1 * plane],
                slab,
                group,
            )?;
            for (all, part) in group_out.iter_mut().zip(parts) {
                all.extend_from_slice(&part);
            }
        }
        for _ in 0..group {
            shape = shape.half();
        }
        out.extend(group_out);
    }
    Ok(out)
}

/// The parameters of one level down from `shape`.
pub fn params(shape: Shape) -> [u32; 7] {
    let half = shape.half();
    [
        shape.x as u32,
        shape.y as u32,
        shape.z as u32,
        half.x as u32,
        half.y as u32,
        half.z as u32,
        half.voxels() as u32,
    ]
}

/// Records one level from `src` into `dst` with `invocations` invocations (one per output
/// voxel for labels).
pub fn record_level(
    gpu: &Gpu,
    enc: &mut wgpu::CommandEncoder,
    pipe: &wgpu::ComputePipeline,
    [params, src, dst]: [Range; 3],
    invocations: u64,
) {
    let bindings = [(0, params), (1, src), (2, dst)];
    gpu.dispatch_ranges(enc, pipe, &bindings, invocations, WORKGROUP);
}

/// `levels` levels of one slab in one submission; returns each level's exact bytes.
fn slab_levels(
    gpu: &Gpu,
    pipe: &wgpu::ComputePipeline,
    voxel: Voxel,
    src: &[u8],
    shape: Shape,
    levels: usize,
) -> Result<Vec<Vec<u8>>> {
    let mut enc = gpu.encoder();
    let mut bufs = vec![gpu.storage(src)];
    let mut lens = Vec::with_capacity(levels);
    let mut shape = shape;
    for _ in 0..levels {
        let half = shape.half();
        let dst = gpu.zeroed((half.voxels() * voxel.size()) as u64);
        let params = gpu.params(&params(shape));
        let ranges = [&params, bufs.last().unwrap(), &dst].map(Range::whole);
        record_level(gpu, &mut enc, pipe, ranges, voxel.invocations(half));
        bufs.push(dst);
        lens.push((half.voxels() * voxel.size()) as u64);
        shape = half;
    }
    let reads: Vec<(&wgpu::Buffer, u64)> = bufs[1..].iter().zip(lens).collect();
    gpu.read(enc, &reads)
}

/// Planes too large for one binding: compute on the host.
fn fallback(voxel: Voxel, src: &[u8], shape: Shape, levels: u32) -> Vec<Vec<u8>> {
    match voxel {
        Voxel::Label => {
            let labels = to_u64s(src);
            reference::pyramid(&labels, shape, levels, reference::downsample_mode)
                .into_iter()
                .map(|l| bytemuck::cast_slice(&l).to_vec())
                .collect()
        }
        Voxel::Byte => reference::pyramid(src, shape, levels, reference::downsample_mean),
    }
}
