//! The adapter, device and queue, and the few buffer and dispatch helpers every kernel uses.
//!
//! Every kernel follows the same shape: upload inputs (`storage`), record dispatches into one
//! encoder (`dispatch`), then copy results to one staging buffer and wait for it (`read`).
//! Buffers are created per call; wgpu zero-fills new buffers, which the atomic counters and
//! hash tables rely on.
//!
//! Every host→device and device→host transfer goes through `storage`, `params`, `upload` or
//! `download`, which count them (`transfers`).

use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use wgpu::util::DeviceExt;

use super::timer::Timer;
use crate::compute::{ComputeError, Result, Transfers};

/// Invocations per workgroup of every one-thread-per-item kernel (the `@workgroup_size` of the
/// shaders must agree).
pub const WORKGROUP: u32 = 64;

pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    /// Largest storage buffer a kernel may bind, in bytes (a multiple of 256). Kernels chunk
    /// their inputs so that no buffer exceeds it.
    pub max_binding: u64,
    /// Largest buffer (bound or not), in bytes.
    pub max_buffer: u64,
    /// Alignment of a binding's offset inside a buffer that is both storage and uniform.
    pub offset_align: u64,
    max_groups: u32,
    counter: Counter,
    /// Pass timestamps, when opened with `timed` and the adapter has them.
    pub timer: Option<Timer>,
}

/// Transfer counters, shared by every call on the device.
#[derive(Default)]
struct Counter {
    uploads: AtomicU64,
    downloads: AtomicU64,
    upload_bytes: AtomicU64,
    download_bytes: AtomicU64,
}

/// A range of a buffer, as a binding or a copy source.
#[derive(Clone, Copy)]
pub struct Range<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub offset: u64,
    pub size: u64,
}

impl<'a> Range<'a> {
    pub fn whole(buffer: &'a wgpu::Buffer) -> Range<'a> {
        Range {
            buffer,
            offset: 0,
            size: buffer.size(),
        }
    }

    /// The first `size` bytes of `buffer`.
    pub fn prefix(buffer: &'a wgpu::Buffer, size: u64) -> Range<'a> {
        Range {
            buffer,
            offset: 0,
            size,
        }
    }
}

impl Gpu {
    /// Opens the best adapter; `timed` asks for pass timestamps (`timer`), when it has them.
    pub fn open(allow_software: bool, timed: bool) -> Result<Gpu> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            ..Default::default()
        }))
        .map_err(|e| ComputeError::Device(format!("no GPU adapter: {e}")))?;
        let info = adapter.get_info();
        if info.device_type == wgpu::DeviceType::Cpu && !allow_software {
            return Err(ComputeError::Device(format!(
                "software adapter {} found; set {}=1 to use it",
                info.name,
                crate::compute::select::ALLOW_SOFTWARE_ENV
            )));
        }
        // Take everything the adapter offers: the binding size bounds every chunk.
        let limits = adapter.limits();
        let features = match timed {
            true => adapter.features() & wgpu::Features::TIMESTAMP_QUERY,
            false => wgpu::Features::empty(),
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("tessera compute"),
            required_limits: limits.clone(),
            required_features: features,
            ..Default::default()
        }))
        .map_err(|e| ComputeError::Device(format!("{}: cannot open device: {e}", info.name)))?;
        // Capped at 256 MiB so that every index the shaders compute, bit offsets included,
        // fits a u32.
        let max_binding = (limits.max_storage_buffer_binding_size as u64)
            .min(limits.max_buffer_size)
            .min(1 << 28)
            & !255;
        let offset_align = (limits.min_storage_buffer_offset_alignment as u64)
            .max(limits.min_uniform_buffer_offset_alignment as u64);
        let timer = (!features.is_empty()).then(|| Timer::new(&device, &queue));
        Ok(Gpu {
            timer,
            device,
            queue,
            info,
            max_binding,
            max_buffer: limits.max_buffer_size,
            offset_align,
            max_groups: limits.max_compute_workgroups_per_dimension,
            counter: Counter::default(),
        })
    }

    /// Host↔device traffic so far.
    pub fn transfers(&self) -> Transfers {
        let c = &self.counter;
        Transfers {
            uploads: c.uploads.load(Ordering::Relaxed),
            downloads: c.downloads.load(Ordering::Relaxed),
            upload_bytes: c.upload_bytes.load(Ordering::Relaxed),
            download_bytes: c.download_bytes.load(Ordering::Relaxed),
        }
    }

    fn count_upload(&self, bytes: usize) {
        self.counter.uploads.fetch_add(1, Ordering::Relaxed);
        (self.counter.upload_bytes).fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// One buffer of `size` bytes (a multiple of 4) holding `parts` (offset, bytes) and zeros
    /// elsewhere, usable as storage, uniform and copy source: a batch's whole input in one
    /// transfer, bound by ranges. The parts are written straight into the mapped buffer.
    pub fn upload(&self, size: u64, parts: &[(u64, &[u8])]) -> Result<wgpu::Buffer> {
        self.count_upload(size as usize);
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("batch input"),
            size,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::UNIFORM
                | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: true,
        });
        {
            let mut view = buffer
                .slice(..)
                .get_mapped_range_mut()
                .map_err(|e| ComputeError::Device(format!("mapping the batch input: {e}")))?;
            for &(at, bytes) in parts {
                let at = at as usize;
                view.slice(at..at + bytes.len()).copy_from_slice(bytes);
            }
        }
        buffer.unmap();
        Ok(buffer)
    }

    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?})",
            self.info.name, self.info.backend, self.info.device_type
        )
    }

    pub fn pipeline(&self, name: &str, source: &str, entry: &str) -> wgpu::ComputePipeline {
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(name),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            });
        self.device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: None,
                module: &module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            })
    }

    /// A storage buffer holding `bytes`, zero-padded to a whole number of u32 words (and to at
    /// least 16 bytes: empty bindings are not allowed).
    pub fn storage(&self, bytes: &[u8]) -> wgpu::Buffer {
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
        self.count_upload(bytes.len());
        if bytes.len().is_multiple_of(4) && bytes.len() >= 16 {
            return self
                .device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: None,
                    contents: bytes,
                    usage,
                });
        }
        let mut padded = bytes.to_vec();
        padded.resize(bytes.len().next_multiple_of(4).max(16), 0);
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: &padded,
                usage,
            })
    }

    /// A zero-filled storage buffer of at least `size` bytes (a copy may fill it).
    pub fn zeroed(&self, size: u64) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: size.next_multiple_of(4).max(16),
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// A uniform buffer of u32 parameters (padded to 16 bytes as uniforms require).
    pub fn params(&self, words: &[u32]) -> wgpu::Buffer {
        let mut padded = words.to_vec();
        padded.resize(words.len().next_multiple_of(4).max(4), 0);
        self.count_upload(padded.len() * 4);
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: bytemuck::cast_slice(&padded),
                usage: wgpu::BufferUsages::UNIFORM,
            })
    }

    pub fn encoder(&self) -> wgpu::CommandEncoder {
        self.device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None })
    }

    /// Records one dispatch of `pipeline` with `bindings` (binding number, buffer) in group 0,
    /// for `items` invocations of `WORKGROUP` threads each (or `items` workgroups when the
    /// kernel is one workgroup per item: pass `per_group = 1`). Work beyond 65,535 groups goes
    /// into a second dimension; shaders rebuild the linear index from `num_workgroups`.
    pub fn dispatch(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        pipeline: &wgpu::ComputePipeline,
        bindings: &[(u32, &wgpu::Buffer)],
        items: u64,
        per_group: u32,
    ) {
        let ranges: Vec<(u32, Range)> = bindings
            .iter()
            .map(|&(binding, buffer)| (binding, Range::whole(buffer)))
            .collect();
        self.dispatch_ranges(encoder, pipeline, &ranges, items, per_group);
    }

    /// `dispatch` with bindings that are ranges of buffers.
    pub fn dispatch_ranges(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        pipeline: &wgpu::ComputePipeline,
        bindings: &[(u32, Range)],
        items: u64,
        per_group: u32,
    ) {
        if items == 0 {
            return;
        }
        let layout = pipeline.get_bind_group_layout(0);
        let entries: Vec<wgpu::BindGroupEntry> = bindings
            .iter()
            .map(|(binding, r)| wgpu::BindGroupEntry {
                binding: *binding,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: r.buffer,
                    offset: r.offset,
                    size: NonZeroU64::new(r.size),
                }),
            })
            .collect();
        let group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &layout,
            entries: &entries,
        });
        let groups = items.div_ceil(per_group as u64);
        let x = groups.min(self.max_groups as u64) as u32;
        let y = groups.div_ceil(x as u64) as u32;
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: None,
            timestamp_writes: self.timer.as_ref().and_then(Timer::writes),
        });
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, &group, &[]);
        pass.dispatch_workgroups(x, y, 1);
    }

    /// Submits `encoder` with copies of `(buffer, bytes from its start)` to one staging buffer
    /// appended, waits, and returns the bytes of each (exactly the lengths asked for).
    pub fn read(
        &self,
        encoder: wgpu::CommandEncoder,
        reads: &[(&wgpu::Buffer, u64)],
    ) -> Result<Vec<Vec<u8>>> {
        let ranges: Vec<Range> = reads
            .iter()
            .map(|&(buffer, len)| Range::prefix(buffer, len))
            .collect();
        let (bytes, at) = self.download(encoder, &ranges)?;
        Ok(ranges
            .iter()
            .zip(at)
            .map(|(r, at)| bytes[at..at + r.size as usize].to_vec())
            .collect())
    }

    /// Submits `encoder` with copies of every range (offsets and sizes multiples of 4, except
    /// that a size is rounded up to one) into ONE staging buffer appended, maps it once, and
    /// returns its bytes and where each range starts in them. One download.
    pub fn download(
        &self,
        mut encoder: wgpu::CommandEncoder,
        ranges: &[Range],
    ) -> Result<(Vec<u8>, Vec<usize>)> {
        // The timestamps of this submission's passes ride along at the end, uncounted.
        let timestamps = self.timer.as_ref().and_then(|t| t.resolve(&mut encoder));
        let mut at = Vec::with_capacity(ranges.len());
        let mut total = 0u64;
        for r in ranges {
            at.push(total as usize);
            total += r.size.next_multiple_of(4);
        }
        let timed_at = total;
        let size = (total + timestamps.map_or(0, |(_, len)| len)).max(4);
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("staging"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        for (r, &to) in ranges.iter().zip(&at) {
            if r.size > 0 {
                let len = r.size.next_multiple_of(4);
                encoder.copy_buffer_to_buffer(r.buffer, r.offset, &staging, to as u64, len);
            }
        }
        if let Some((buffer, len)) = timestamps {
            encoder.copy_buffer_to_buffer(buffer, 0, &staging, timed_at, len);
        }
        self.queue.submit([encoder.finish()]);
        self.counter.downloads.fetch_add(1, Ordering::Relaxed);
        (self.counter.download_bytes).fetch_add(total, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        staging
            .slice(..)
            .map_async(wgpu::MapMode::Read, move |r| drop(tx.send(r)));
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| ComputeError::Device(format!("waiting for the device: {e}")))?;
        rx.recv()
            .map_err(|e| ComputeError::Device(format!("reading results back: {e}")))?
            .map_err(|e| ComputeError::Device(format!("reading results back: {e}")))?;
        let view = staging
            .get_mapped_range(..)
            .map_err(|e| ComputeError::Device(format!("mapping results: {e}")))?;
        let out = view[..total as usize].to_vec();
        if let (Some(timer), Some((_, len))) = (&self.timer, timestamps) {
            timer.add(&view[timed_at as usize..(timed_at + len) as usize]);
        }
        drop(view);
        staging.unmap();
        Ok((out, at))
    }
}

/// Bytes as u64 words (little-endian, as the device wrote them).
pub fn to_u64s(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

pub fn to_u32s(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}
