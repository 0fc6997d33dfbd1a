//! A native wgpu host for the kernels (the sequence of [`crate::kernel`]), blocking on each step.
//! Used by the tests on Mesa lavapipe; the page's `www/gpu.js` does the same through WebGPU.

use aqn_core::error_stats::{BlockPartial, ErrorStats, StatsError};
use aqn_core::formats::QuantSpec;
use thiserror::Error;
use wgpu::util::DeviceExt;

use crate::kernel::{
    BINDINGS, BindingKind, ENTRY_POINTS, ENTRY_QUANTIZE, ENTRY_STATS_PASS1, ENTRY_STATS_PASS2,
    ENTRY_TENSOR_AMAX, GLOBAL_WORDS, GpuPlanError, KernelPlan, WGSL,
};

/// Why the GPU path failed.
#[derive(Debug, Error)]
pub enum GpuError {
    /// No adapter (on a CPU machine: install Mesa's `mesa-vulkan-drivers` for lavapipe).
    #[error(
        "no GPU adapter: {0} (on a machine without a GPU, install mesa-vulkan-drivers for lavapipe)"
    )]
    NoAdapter(String),
    /// The adapter refused a device.
    #[error("the adapter refused a device: {0}")]
    Device(String),
    /// Mapping a buffer back failed.
    #[error("reading back a GPU buffer failed: {0}")]
    Readback(String),
    /// The tensor or spec cannot take the GPU path.
    #[error(transparent)]
    Plan(#[from] GpuPlanError),
    /// Finishing the statistics failed.
    #[error(transparent)]
    Stats(#[from] StatsError),
}

/// The results of one tensor.
#[derive(Clone, Debug)]
pub struct GpuOutput {
    /// The fake-quantized tensor.
    pub q: Vec<f32>,
    /// The per-block partials as the GPU wrote them.
    pub partials: Vec<BlockPartial>,
    /// The finished statistics.
    pub stats: ErrorStats,
}

/// A device with the four pipelines.
pub struct GpuLab {
    device: wgpu::Device,
    queue: wgpu::Queue,
    layout: wgpu::BindGroupLayout,
    pipelines: Vec<wgpu::ComputePipeline>,
    /// The adapter's name and backend.
    pub adapter: String,
}

fn storage_usage() -> wgpu::BufferUsages {
    wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST
}

impl GpuLab {
    /// Opens the first adapter and compiles the module. A missing adapter is an error.
    pub fn new() -> Result<Self, GpuError> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
        let adapter =
            pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))
                .map_err(|e| GpuError::NoAdapter(e.to_string()))?;
        let info = adapter.get_info();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("aqn-shaders"),
            required_limits: adapter.limits(),
            ..Default::default()
        }))
        .map_err(|e| GpuError::Device(e.to_string()))?;
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("aqn quantize + error stats"),
            source: wgpu::ShaderSource::Wgsl(WGSL.into()),
        });
        let entries: Vec<wgpu::BindGroupLayoutEntry> = BINDINGS
            .iter()
            .enumerate()
            .map(|(i, (_, kind))| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: match kind {
                        BindingKind::Uniform => wgpu::BufferBindingType::Uniform,
                        BindingKind::ReadOnlyStorage => {
                            wgpu::BufferBindingType::Storage { read_only: true }
                        }
                        BindingKind::Storage => {
                            wgpu::BufferBindingType::Storage { read_only: false }
                        }
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            })
            .collect();
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("aqn bindings"),
            entries: &entries,
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("aqn pipeline layout"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipelines = ENTRY_POINTS
            .iter()
            .map(|entry| {
                device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(entry),
                    layout: Some(&pipeline_layout),
                    module: &module,
                    entry_point: Some(entry),
                    compilation_options: Default::default(),
                    cache: None,
                })
            })
            .collect();
        Ok(Self {
            device,
            queue,
            layout,
            pipelines,
            adapter: format!("{} ({:?})", info.name, info.backend),
        })
    }

    fn pipeline(&self, entry: &str) -> &wgpu::ComputePipeline {
        let k = ENTRY_POINTS
            .iter()
            .position(|e| *e == entry)
            .expect("a known entry point");
        &self.pipelines[k]
    }

    fn dispatch(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        group: &wgpu::BindGroup,
        entry: &str,
        groups: (u32, u32),
    ) {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(entry),
            timestamp_writes: None,
        });
        pass.set_pipeline(self.pipeline(entry));
        pass.set_bind_group(0, group, &[]);
        pass.dispatch_workgroups(groups.0, groups.1, 1);
    }

    /// Copies `src` into a mappable buffer and reads it as u32 words.
    fn read_words(&self, src: &wgpu::Buffer) -> Result<Vec<u32>, GpuError> {
        let size = src.size();
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(src, 0, &staging, 0, size);
        self.queue.submit([encoder.finish()]);
        let slice = staging.slice(..);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::Readback(e.to_string()))?;
        rx.recv()
            .map_err(|e| GpuError::Readback(e.to_string()))?
            .map_err(|e| GpuError::Readback(e.to_string()))?;
        let view = slice
            .get_mapped_range()
            .map_err(|e| GpuError::Readback(e.to_string()))?;
        let words = bytemuck::cast_slice::<u8, u32>(&view).to_vec();
        drop(view);
        staging.unmap();
        Ok(words)
    }

    /// Fake-quantizes `x` (rows of `row_len`) with `spec` and reduces its error statistics.
    pub fn run(
        &self,
        spec: &QuantSpec,
        x: &[f32],
        row_len: usize,
        bins: usize,
    ) -> Result<GpuOutput, GpuError> {
        let mut plan = KernelPlan::new(spec, x.len(), row_len, bins)?;
        let d = &self.device;
        // Buffers of at least 4 bytes (an empty tensor still binds).
        let init = |label: &str, words: &[u32], usage: wgpu::BufferUsages| {
            let zero = [0u32];
            let contents: &[u32] = if words.is_empty() { &zero } else { words };
            d.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytemuck::cast_slice(contents),
                usage,
            })
        };
        let x_bits: Vec<u32> = x.iter().map(|v| v.to_bits()).collect();
        let params = init(
            "params",
            &plan.params,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        );
        let xb = init("x", &x_bits, storage_usage());
        let qb = init("q", &vec![0; x.len()], storage_usage());
        let globals = init("globals", &[0; GLOBAL_WORDS], storage_usage());
        let partials = init("partials", &vec![0; plan.partial_words()], storage_usage());
        let hist = init("hist", &vec![0; plan.bins], storage_usage());
        let group = d.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("aqn group"),
            layout: &self.layout,
            entries: &[&params, &xb, &qb, &globals, &partials, &hist]
                .iter()
                .enumerate()
                .map(|(i, b)| wgpu::BindGroupEntry {
                    binding: i as u32,
                    resource: b.as_entire_binding(),
                })
                .collect::<Vec<_>>(),
        });
        let groups = plan.groups();
        let mut encoder = d.create_command_encoder(&Default::default());
        if plan.needs_tensor_amax {
            self.dispatch(&mut encoder, &group, ENTRY_TENSOR_AMAX, groups);
        }
        self.dispatch(&mut encoder, &group, ENTRY_QUANTIZE, groups);
        self.dispatch(&mut encoder, &group, ENTRY_STATS_PASS1, groups);
        self.queue.submit([encoder.finish()]);
        let g = self.read_words(&globals)?;
        plan.set_pass2(g[1], g[2])?;
        self.queue
            .write_buffer(&params, 0, bytemuck::cast_slice(&plan.params));
        let mut encoder = d.create_command_encoder(&Default::default());
        self.dispatch(&mut encoder, &group, ENTRY_STATS_PASS2, groups);
        self.queue.submit([encoder.finish()]);
        let q: Vec<f32> = self.read_words(&qb)?[..x.len()]
            .iter()
            .map(|&b| f32::from_bits(b))
            .collect();
        let words = self.read_words(&partials)?;
        let partials = BlockPartial::from_word_slice(&words[..plan.partial_words()])?;
        let counts = self.read_words(&hist)?;
        let stats = ErrorStats::from_partials(plan.grid(), &partials, counts)?;
        Ok(GpuOutput { q, partials, stats })
    }
}
