//! How fast a compute pass can stream through device memory: the roofline of
//! `tessera bench gpu`, measured on the device in the same process as the kernels.

use std::time::Instant;

use super::device::{Gpu, WORKGROUP, to_u32s};
use crate::compute::{ComputeError, Result};

/// What the copy probe measured.
pub struct Bandwidth {
    /// Bytes read plus bytes written per second, median of the repeats.
    pub bytes_per_s: f64,
    /// Bytes copied per repeat.
    pub bytes: u64,
    /// True when timed by pass timestamps, false when by the host clock around a full sync.
    pub device_clock: bool,
}

/// Copies `bytes` (at most one binding) from one buffer to another `repeats` times. The
/// source holds a pattern and the destination starts zeroed, so a copy that skipped words is
/// caught (by checking the last word) rather than measured as fast.
pub fn copy(
    gpu: &Gpu,
    pipe: &wgpu::ComputePipeline,
    bytes: u64,
    repeats: usize,
) -> Result<Bandwidth> {
    let words = (bytes.min(gpu.max_binding) / 16) as usize;
    let bytes = words as u64 * 16;
    let pattern: Vec<u32> = (0..words as u32 * 4)
        .map(|i| i.wrapping_mul(2_654_435_761) | 1)
        .collect();
    let src = gpu.storage(bytemuck::cast_slice(&pattern));
    let dst = gpu.zeroed(bytes);
    let params = gpu.params(&[words as u32]);
    let last = (bytes - 4) / 4 * 4;
    let mut seconds = Vec::with_capacity(repeats);
    for i in 0..=repeats {
        let mut enc = gpu.encoder();
        gpu.dispatch(
            &mut enc,
            pipe,
            &[(0, &params), (1, &src), (2, &dst)],
            words as u64,
            WORKGROUP,
        );
        // Only the last word comes back: the submit and the sync, not a transfer.
        let probe = gpu.zeroed(4);
        enc.copy_buffer_to_buffer(&dst, last, &probe, 0, 4);
        let t = Instant::now();
        let got = gpu.read(enc, &[(&probe, 4)])?;
        let wall = t.elapsed().as_secs_f64();
        if to_u32s(&got[0])[0] != *pattern.last().unwrap() {
            return Err(ComputeError::Device(
                "the bandwidth probe's copy is wrong".into(),
            ));
        }
        let device = gpu.timer.as_ref().map(|t| t.take().0 as f64 * 1e-9);
        if i > 0 {
            seconds.push(device.unwrap_or(wall));
        }
    }
    seconds.sort_by(f64::total_cmp);
    Ok(Bandwidth {
        bytes_per_s: 2.0 * bytes as f64 / seconds[seconds.len() / 2],
        bytes,
        device_clock: gpu.timer.is_some(),
    })
}
