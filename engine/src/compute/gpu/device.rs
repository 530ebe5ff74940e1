//! The adapter, device and queue, and the few buffer and dispatch helpers every kernel uses.
//!
//! Every kernel follows the same shape: upload inputs (`storage`), record dispatches into one
//! encoder (`dispatch`), then copy results to staging buffers and wait for them (`read`).
//! Buffers are created per call; wgpu zero-fills new buffers, which the atomic counters and
//! hash tables rely on.

use std::sync::mpsc;

use wgpu::util::DeviceExt;

use crate::compute::{ComputeError, Result};

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
    max_groups: u32,
}

impl Gpu {
    pub fn open(allow_software: bool) -> Result<Gpu> {
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
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("tessera compute"),
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| ComputeError::Device(format!("{}: cannot open device: {e}", info.name)))?;
        // Capped at 256 MiB so that every index the shaders compute, bit offsets included,
        // fits a u32.
        let max_binding = (limits.max_storage_buffer_binding_size as u64)
            .min(limits.max_buffer_size)
            .min(1 << 28)
            & !255;
        Ok(Gpu {
            device,
            queue,
            info,
            max_binding,
            max_groups: limits.max_compute_workgroups_per_dimension,
        })
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

    /// A zero-filled storage buffer of at least `size` bytes.
    pub fn zeroed(&self, size: u64) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: size.next_multiple_of(4).max(16),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        })
    }

    /// A uniform buffer of u32 parameters (padded to 16 bytes as uniforms require).
    pub fn params(&self, words: &[u32]) -> wgpu::Buffer {
        let mut padded = words.to_vec();
        padded.resize(words.len().next_multiple_of(4).max(4), 0);
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
        if items == 0 {
            return;
        }
        let layout = pipeline.get_bind_group_layout(0);
        let entries: Vec<wgpu::BindGroupEntry> = bindings
            .iter()
            .map(|&(binding, buffer)| wgpu::BindGroupEntry {
                binding,
                resource: buffer.as_entire_binding(),
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
            timestamp_writes: None,
        });
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, &group, &[]);
        pass.dispatch_workgroups(x, y, 1);
    }

    /// Submits `encoder` with copies of `(buffer, bytes from its start)` to staging buffers
    /// appended, waits, and returns the bytes of each (exactly the lengths asked for).
    pub fn read(
        &self,
        mut encoder: wgpu::CommandEncoder,
        reads: &[(&wgpu::Buffer, u64)],
    ) -> Result<Vec<Vec<u8>>> {
        let staging: Vec<wgpu::Buffer> = reads
            .iter()
            .map(|&(buffer, len)| {
                let size = len.next_multiple_of(4).max(4);
                let s = self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: None,
                    size,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                if len > 0 {
                    encoder.copy_buffer_to_buffer(buffer, 0, &s, 0, size);
                }
                s
            })
            .collect();
        self.queue.submit([encoder.finish()]);
        let (tx, rx) = mpsc::channel();
        for (i, s) in staging.iter().enumerate() {
            let tx = tx.clone();
            s.slice(..)
                .map_async(wgpu::MapMode::Read, move |r| drop(tx.send((i, r))));
        }
        drop(tx);
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| ComputeError::Device(format!("waiting for the device: {e}")))?;
        for (i, r) in rx.iter() {
            r.map_err(|e| ComputeError::Device(format!("reading result {i} back: {e}")))?;
        }
        staging
            .iter()
            .zip(reads)
            .map(|(s, &(_, len))| {
                let view = s
                    .get_mapped_range(..)
                    .map_err(|e| ComputeError::Device(format!("mapping a result: {e}")))?;
                let out = view[..len as usize].to_vec();
                drop(view);
                s.unmap();
                Ok(out)
            })
            .collect()
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
