//! Device time of the compute passes, from timestamp queries, so that `tessera bench gpu` can
//! report a kernel's own time apart from the host↔device transfers around it.
//!
//! Every pass recorded while the timer is on writes a timestamp at its start and its end; the
//! submission that reads results back (`Gpu::download`, the only place that submits) resolves
//! them into its staging buffer, and the busy time (the sum of the passes' durations) is added
//! up. Indices are handed out per submission, so the timer assumes one caller at a time: the
//! bench is, and the server never turns it on.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

/// Passes timed per submission; later passes of a very long submission run untimed (counted).
const PASSES: u32 = 2048;

pub struct Timer {
    queries: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    period_ns: f64,
    /// Timestamp pairs handed out since the last submission.
    next: Mutex<u32>,
    busy_ns: AtomicU64,
    untimed: AtomicU64,
}

impl Timer {
    pub fn new(device: &wgpu::Device, queue: &wgpu::Queue) -> Timer {
        Timer {
            queries: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("pass timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: 2 * PASSES,
            }),
            resolve: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("resolved timestamps"),
                size: 2 * PASSES as u64 * 8,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
            period_ns: queue.get_timestamp_period() as f64,
            next: Mutex::new(0),
            busy_ns: AtomicU64::new(0),
            untimed: AtomicU64::new(0),
        }
    }

    /// The timestamp writes of the next pass, or `None` when this submission has used them all.
    pub fn writes(&self) -> Option<wgpu::ComputePassTimestampWrites<'_>> {
        let mut next = self.next.lock();
        if *next == PASSES {
            self.untimed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let at = 2 * *next;
        *next += 1;
        Some(wgpu::ComputePassTimestampWrites {
            query_set: &self.queries,
            beginning_of_pass_write_index: Some(at),
            end_of_pass_write_index: Some(at + 1),
        })
    }

    /// Records the resolve of this submission's timestamps and returns the buffer and the
    /// bytes of it to read back with the results (none when no pass was timed).
    pub fn resolve(&self, encoder: &mut wgpu::CommandEncoder) -> Option<(&wgpu::Buffer, u64)> {
        let pairs = std::mem::take(&mut *self.next.lock());
        if pairs == 0 {
            return None;
        }
        encoder.resolve_query_set(&self.queries, 0..2 * pairs, &self.resolve, 0);
        Some((&self.resolve, pairs as u64 * 16))
    }

    /// Adds the passes of resolved timestamps (begin, end pairs of u64 ticks) to the busy time.
    pub fn add(&self, resolved: &[u8]) {
        let ticks: u64 = resolved
            .chunks_exact(16)
            .map(|p| {
                let begin = u64::from_le_bytes(p[..8].try_into().unwrap());
                let end = u64::from_le_bytes(p[8..].try_into().unwrap());
                end.saturating_sub(begin)
            })
            .sum();
        let ns = (ticks as f64 * self.period_ns).round() as u64;
        self.busy_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Busy nanoseconds and untimed passes since the last call.
    pub fn take(&self) -> (u64, u64) {
        (
            self.busy_ns.swap(0, Ordering::Relaxed),
            self.untimed.swap(0, Ordering::Relaxed),
        )
    }
}
