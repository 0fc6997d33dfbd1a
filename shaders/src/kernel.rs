//! What a host needs to run the kernels: the WGSL module, its entry points and bindings, and a
//! [`KernelPlan`] with the uniform words and the dispatch size of one tensor.
//!
//! Sequence (one tensor):
//! 1. upload `x` (f32 bits), zero `globals`, write [`KernelPlan::params`];
//! 2. if [`KernelPlan::needs_tensor_amax`], dispatch [`ENTRY_TENSOR_AMAX`];
//! 3. dispatch [`ENTRY_QUANTIZE`], then [`ENTRY_STATS_PASS1`];
//! 4. read `globals[1..3]` (max |q|, max |q - x|), call [`KernelPlan::set_pass2`], write the
//!    params again, zero `hist`, dispatch [`ENTRY_STATS_PASS2`];
//! 5. read `q`, `partials` and `hist`; `aqn_core::error_stats::ErrorStats::from_partials`
//!    finishes the statistics exactly as on the CPU.
//!
//! Every dispatch is `groups()` workgroups of [`WORKGROUP_SIZE`] invocations, one per block.

use aqn_core::error_stats::{
    HistogramSpec, PARTIAL_WORDS, StatsError, saturation_threshold, stats_grid,
};
use aqn_core::formats::{
    BlockGrid, BlockLayout, MxScaleMode, NvScaling, QuantFormat, QuantSpec, Rounding,
};
use thiserror::Error;

/// The WGSL module: soft-float, quantizers and statistics, in that order (one module, since WGSL
/// has no includes).
pub const WGSL: &str = concat!(
    include_str!("../wgsl/softfloat.wgsl"),
    "\n",
    include_str!("../wgsl/quantize.wgsl"),
    "\n",
    include_str!("../wgsl/error_stats.wgsl"),
);

/// `@workgroup_size` of every entry point.
pub const WORKGROUP_SIZE: u32 = 64;
/// Most workgroups along one dispatch dimension (WebGPU's default limit).
pub const MAX_GROUPS_PER_DIMENSION: u32 = 65_535;
/// The largest tensor the GPU path takes: 16M elements keep `x` and `q` at 64 MiB, under
/// WebGPU's default 128 MiB storage-binding limit.
pub const MAX_GPU_ELEMENTS: usize = 1 << 24;
/// Pass 0: finite tensor amax (NVFP4 two-level, FP8).
pub const ENTRY_TENSOR_AMAX: &str = "tensor_amax";
/// Pass 1: fake quantization.
pub const ENTRY_QUANTIZE: &str = "fake_quantize_blocks";
/// Statistics, pass 1: block sums, maxima, counts.
pub const ENTRY_STATS_PASS1: &str = "stats_pass1";
/// Statistics, pass 2: saturation and histogram.
pub const ENTRY_STATS_PASS2: &str = "stats_pass2";
/// Every entry point, in dispatch order.
pub const ENTRY_POINTS: [&str; 4] = [
    ENTRY_TENSOR_AMAX,
    ENTRY_QUANTIZE,
    ENTRY_STATS_PASS1,
    ENTRY_STATS_PASS2,
];
/// u32 words of the `Params` uniform.
pub const PARAMS_WORDS: usize = 12;
/// u32 words of the `globals` buffer.
pub const GLOBAL_WORDS: usize = 4;

/// Bindings of group 0, in order: params (uniform), x (read-only storage), q, globals, partials,
/// hist (read-write storage).
pub const BINDINGS: [(&str, BindingKind); 6] = [
    ("params", BindingKind::Uniform),
    ("x", BindingKind::ReadOnlyStorage),
    ("q", BindingKind::Storage),
    ("globals", BindingKind::Storage),
    ("partials", BindingKind::Storage),
    ("hist", BindingKind::Storage),
];

/// The kind of a binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindingKind {
    /// `var<uniform>`.
    Uniform,
    /// `var<storage, read>`.
    ReadOnlyStorage,
    /// `var<storage, read_write>`.
    Storage,
}

/// Why a tensor cannot go to the GPU path (the host then quantizes on the CPU and says why).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum GpuPlanError {
    /// A spec the kernels do not cover.
    #[error("{what} runs on the CPU only: the WGSL kernels cover row blocks with round-to-nearest")]
    Unsupported {
        /// The option.
        what: &'static str,
    },
    /// A tensor above [`MAX_GPU_ELEMENTS`].
    #[error("a tensor of {len} elements runs on the CPU only: the GPU path takes at most {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The tensor cannot be cut into blocks, or a bad histogram size.
    #[error(transparent)]
    Stats(#[from] StatsError),
}

/// Uniform words and dispatch size for one tensor (see the module docs for the sequence).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelPlan {
    /// The `Params` uniform (`wgsl/quantize.wgsl`).
    pub params: [u32; PARAMS_WORDS],
    /// Whether pass 0 ([`ENTRY_TENSOR_AMAX`]) must run.
    pub needs_tensor_amax: bool,
    /// Elements.
    pub len: usize,
    /// Blocks (invocations).
    pub num_blocks: usize,
    /// Histogram bins.
    pub bins: usize,
    grid: BlockGrid,
}

impl KernelPlan {
    /// The plan for `len` elements in rows of `row_len`, quantized with `spec`, with a histogram
    /// of `bins` bins; refuses what the kernels do not cover.
    pub fn new(
        spec: &QuantSpec,
        len: usize,
        row_len: usize,
        bins: usize,
    ) -> Result<Self, GpuPlanError> {
        if let Rounding::Stochastic { .. } = spec.rounding {
            return Err(GpuPlanError::Unsupported {
                what: "stochastic rounding",
            });
        }
        if spec.blocks == BlockLayout::Tile16x16 {
            return Err(GpuPlanError::Unsupported {
                what: "the 16x16 tile layout",
            });
        }
        if len > MAX_GPU_ELEMENTS {
            return Err(GpuPlanError::TooLarge {
                len,
                max: MAX_GPU_ELEMENTS,
            });
        }
        let grid = stats_grid(spec, len, row_len)?;
        HistogramSpec::new(bins, 0.0)?;
        let (format, mode) = match spec.format {
            QuantFormat::Mxfp4 => (
                0,
                match spec.scale_mode {
                    MxScaleMode::Floor => 0,
                    MxScaleMode::Ceil => 1,
                    MxScaleMode::Even => 2,
                    MxScaleMode::Rceil => 3,
                },
            ),
            QuantFormat::Nvfp4 => (
                1,
                match spec.nv_scaling {
                    NvScaling::TwoLevel => 0,
                    NvScaling::SingleLevel => 1,
                },
            ),
            QuantFormat::Fp8 => (2, 0),
            QuantFormat::Bf16 => (3, 0),
        };
        let num_blocks = grid.num_blocks();
        let groups = num_blocks.div_ceil(WORKGROUP_SIZE as usize) as u32;
        let groups_x = groups.clamp(1, MAX_GROUPS_PER_DIMENSION);
        let params = [
            len as u32,
            grid.row_len as u32,
            grid.block as u32,
            grid.block_cols() as u32,
            num_blocks as u32,
            format,
            mode,
            bins as u32,
            f32::INFINITY.to_bits(),
            0,
            (bins as f32 * 0.5).to_bits(),
            groups_x,
        ];
        Ok(Self {
            params,
            needs_tensor_amax: matches!(
                (spec.format, spec.nv_scaling),
                (QuantFormat::Fp8, _) | (QuantFormat::Nvfp4, NvScaling::TwoLevel)
            ),
            len,
            num_blocks,
            bins,
            grid,
        })
    }

    /// Workgroups of every dispatch, `(x, y)`.
    pub fn groups(&self) -> (u32, u32) {
        let groups = self.num_blocks.div_ceil(WORKGROUP_SIZE as usize) as u32;
        let x = self.params[11];
        (x, groups.div_ceil(x).max(1))
    }

    /// u32 words of the `partials` buffer.
    pub fn partial_words(&self) -> usize {
        self.num_blocks * PARTIAL_WORDS
    }

    /// The statistics grid.
    pub fn grid(&self) -> &BlockGrid {
        &self.grid
    }

    /// Sets the pass-2 uniforms from the global maxima of pass 1 (f32 bits of max |q| and
    /// max |q - x|), with the same functions as the CPU path.
    pub fn set_pass2(&mut self, max_q_bits: u32, max_err_bits: u32) -> Result<(), StatsError> {
        let hist = HistogramSpec::new(self.bins, f32::from_bits(max_err_bits))?;
        self.params[8] = saturation_threshold(f32::from_bits(max_q_bits)).to_bits();
        self.params[9] = hist.scale.to_bits();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_cover_the_row_formats_and_refuse_the_rest() {
        let plan = KernelPlan::new(&"mxfp4:rceil".parse().unwrap(), 1 << 20, 1024, 64).unwrap();
        assert_eq!(plan.num_blocks, 1 << 15);
        assert_eq!(plan.groups(), (512, 1));
        assert_eq!(
            &plan.params[..8],
            &[1 << 20, 1024, 32, 32, 1 << 15, 0, 3, 64]
        );
        assert!(!plan.needs_tensor_amax);
        let plan = KernelPlan::new(&"fp8".parse().unwrap(), 100, 50, 16).unwrap();
        assert_eq!(
            (plan.params[2], plan.params[3], plan.num_blocks),
            (32, 2, 4)
        );
        assert!(plan.needs_tensor_amax);
        let big = KernelPlan::new(&"nvfp4".parse().unwrap(), 1 << 24, 1 << 12, 64).unwrap();
        assert_eq!(big.groups(), (16_384, 1));
        let err = KernelPlan::new(&"nvfp4:tile16x16".parse().unwrap(), 256, 16, 64).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the 16x16 tile layout runs on the CPU only: the WGSL kernels cover row blocks with round-to-nearest"
        );
        assert!(KernelPlan::new(&"mxfp4:sr=1".parse().unwrap(), 64, 32, 64).is_err());
        assert!(KernelPlan::new(&"mxfp4".parse().unwrap(), 65, 32, 64).is_err());
    }
}
