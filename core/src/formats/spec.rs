//! The choices that define a quantizer: format, scale mode, scaling levels, rounding, blocks.
//! Every choice is an enum; parsing a name gives an error that lists the valid names.

use super::error::FormatError;
use crate::named::named_enum;
use core::fmt;
use core::str::FromStr;
use serde::{Deserialize, Serialize};

named_enum! {
    /// A number format.
    QuantFormat, "format", FormatError {
        /// OCP MXFP4: E2M1 elements, E8M0 scale per 32.
        Mxfp4 => "mxfp4",
        /// NVIDIA NVFP4: E2M1 elements, E4M3 scale per 16, optional per-tensor scale.
        Nvfp4 => "nvfp4",
        /// FP8 E4M3 with one per-tensor scale.
        Fp8 => "fp8" | "fp8-e4m3" | "e4m3",
        /// BF16 rounding.
        Bf16 => "bf16",
    }
}

named_enum! {
    /// How MXFP4 derives the shared exponent from the block amax (docs/spec.md section 1).
    MxScaleMode, "MX scale mode", FormatError {
        /// `floor(log2 amax) - 2`, the OCP rule (default).
        Floor => "floor",
        /// `ceil(log2 amax) - 2`.
        Ceil => "ceil",
        /// amax rounded to one mantissa bit, then FLOOR.
        Even => "even",
        /// smallest power of two >= amax / 6.
        Rceil => "rceil",
    }
}

named_enum! {
    /// NVFP4 with or without the per-tensor FP32 scale.
    NvScaling, "NVFP4 scaling", FormatError {
        /// Per-tensor scale `g` plus E4M3 block scales (default).
        TwoLevel => "two-level" | "two_level" | "2level",
        /// E4M3 block scales only.
        SingleLevel => "single-level" | "single_level" | "1level",
    }
}

named_enum! {
    /// The shape of a scaling block.
    BlockLayout, "block layout", FormatError {
        /// Consecutive elements along the quantization axis (default).
        Row => "row" | "1d",
        /// 16x16 tiles of a matrix (NVFP4 weights, NVIDIA's training recipe).
        Tile16x16 => "tile16x16" | "2d",
    }
}

/// How element values are rounded onto the FP4 grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Rounding {
    /// Round to nearest, ties to even (default).
    #[default]
    Nearest,
    /// Stochastic rounding driven by a counter hash of `(seed, element index)` (docs/formats.md).
    Stochastic {
        /// The stream seed.
        seed: u64,
    },
}

/// Everything that defines a quantizer. Build with [`QuantSpec::new`] and the `with_*` methods;
/// [`QuantSpec::validate`] refuses combinations the format does not offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct QuantSpec {
    /// The number format.
    pub format: QuantFormat,
    /// MXFP4 scale rule (ignored by other formats).
    #[serde(default = "default_scale_mode")]
    pub scale_mode: MxScaleMode,
    /// NVFP4 scaling levels (ignored by other formats).
    #[serde(default = "default_nv_scaling")]
    pub nv_scaling: NvScaling,
    /// Element rounding.
    #[serde(default)]
    pub rounding: Rounding,
    /// Block shape.
    #[serde(default = "default_blocks")]
    pub blocks: BlockLayout,
}

fn default_scale_mode() -> MxScaleMode {
    MxScaleMode::Floor
}
fn default_nv_scaling() -> NvScaling {
    NvScaling::TwoLevel
}
fn default_blocks() -> BlockLayout {
    BlockLayout::Row
}

/// Elements per MXFP4 block.
pub const MXFP4_BLOCK_SIZE: usize = 32;
/// Elements per NVFP4 block (and the side of a 2-D tile).
pub const NVFP4_BLOCK_SIZE: usize = 16;

impl QuantSpec {
    /// The format's defaults: MX FLOOR, NVFP4 two-level, nearest rounding, 1-D blocks.
    pub fn new(format: QuantFormat) -> Self {
        Self {
            format,
            scale_mode: default_scale_mode(),
            nv_scaling: default_nv_scaling(),
            rounding: Rounding::Nearest,
            blocks: default_blocks(),
        }
    }

    /// Sets the MX scale mode.
    pub fn with_scale_mode(mut self, mode: MxScaleMode) -> Self {
        self.scale_mode = mode;
        self
    }

    /// Sets the NVFP4 scaling levels.
    pub fn with_nv_scaling(mut self, scaling: NvScaling) -> Self {
        self.nv_scaling = scaling;
        self
    }

    /// Sets the rounding.
    pub fn with_rounding(mut self, rounding: Rounding) -> Self {
        self.rounding = rounding;
        self
    }

    /// Sets the block layout.
    pub fn with_blocks(mut self, blocks: BlockLayout) -> Self {
        self.blocks = blocks;
        self
    }

    /// Elements per block along a row (1 for the per-tensor formats).
    pub fn block_size(&self) -> usize {
        match self.format {
            QuantFormat::Mxfp4 => MXFP4_BLOCK_SIZE,
            QuantFormat::Nvfp4 => NVFP4_BLOCK_SIZE,
            QuantFormat::Fp8 | QuantFormat::Bf16 => 1,
        }
    }

    /// Whether the elements are FP4 codes.
    pub fn is_fp4(&self) -> bool {
        matches!(self.format, QuantFormat::Mxfp4 | QuantFormat::Nvfp4)
    }

    /// Refuses options the format does not offer.
    pub fn validate(&self) -> Result<(), FormatError> {
        if !self.is_fp4() && matches!(self.rounding, Rounding::Stochastic { .. }) {
            return Err(FormatError::Unsupported {
                option: "stochastic rounding",
                format: self.format.name(),
                hint: "it is offered for mxfp4 and nvfp4",
            });
        }
        if self.format != QuantFormat::Nvfp4 && self.blocks == BlockLayout::Tile16x16 {
            return Err(FormatError::Unsupported {
                option: "16x16 2-D blocks",
                format: self.format.name(),
                hint: "they are offered for nvfp4 only; use the row layout",
            });
        }
        Ok(())
    }

    /// The canonical compact form, which [`FromStr`] parses back: `mxfp4:floor`,
    /// `nvfp4:two-level:tile16x16`, `nvfp4:two-level:sr=7`, `fp8`, `bf16`.
    pub fn label(&self) -> String {
        let mut s = match self.format {
            QuantFormat::Mxfp4 => format!("mxfp4:{}", self.scale_mode),
            QuantFormat::Nvfp4 => format!("nvfp4:{}", self.nv_scaling),
            f => f.name().to_string(),
        };
        if self.blocks == BlockLayout::Tile16x16 {
            s.push_str(":tile16x16");
        }
        if let Rounding::Stochastic { seed } = self.rounding {
            s.push_str(&format!(":sr={seed}"));
        }
        s
    }
}

/// Parses `FORMAT[:OPTION]...`, e.g. `mxfp4`, `mxfp4:rceil`, `nvfp4:single-level:tile16x16`,
/// `nvfp4:sr=42` (stochastic rounding with seed 42). The result is validated.
impl FromStr for QuantSpec {
    type Err = FormatError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split(':');
        let format: QuantFormat = parts.next().unwrap_or_default().parse()?;
        let mut spec = QuantSpec::new(format);
        for opt in parts {
            let lower = opt.trim().to_ascii_lowercase();
            if let Some(seed) = lower.strip_prefix("sr=") {
                let seed = seed.parse::<u64>().map_err(|_| {
                    FormatError::UnknownName(crate::named::UnknownName::new(
                        "stochastic-rounding seed",
                        seed,
                        "an unsigned 64-bit integer",
                    ))
                })?;
                spec.rounding = Rounding::Stochastic { seed };
            } else if let (QuantFormat::Mxfp4, Ok(mode)) = (format, lower.parse::<MxScaleMode>()) {
                spec.scale_mode = mode;
            } else if let (QuantFormat::Nvfp4, Ok(scaling)) = (format, lower.parse::<NvScaling>()) {
                spec.nv_scaling = scaling;
            } else if let Ok(blocks) = lower.parse::<BlockLayout>() {
                spec.blocks = blocks;
            } else {
                let specific = match format {
                    QuantFormat::Mxfp4 => format!("{}, ", MxScaleMode::valid_names()),
                    QuantFormat::Nvfp4 => format!("{}, ", NvScaling::valid_names()),
                    _ => String::new(),
                };
                return Err(FormatError::UnknownName(crate::named::UnknownName::new(
                    "format option",
                    opt,
                    format!("{specific}{}, sr=SEED", BlockLayout::valid_names()),
                )));
            }
        }
        spec.validate()?;
        Ok(spec)
    }
}

impl fmt::Display for QuantSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_compact_spec() {
        let s: QuantSpec = "mxfp4:rceil".parse().unwrap();
        assert_eq!(
            s,
            QuantSpec::new(QuantFormat::Mxfp4).with_scale_mode(MxScaleMode::Rceil)
        );
        let s: QuantSpec = "NVFP4:single-level:tile16x16:sr=7".parse().unwrap();
        assert_eq!(s.nv_scaling, NvScaling::SingleLevel);
        assert_eq!(s.blocks, BlockLayout::Tile16x16);
        assert_eq!(s.rounding, Rounding::Stochastic { seed: 7 });
        let err = "nvfp4:rceil".parse::<QuantSpec>().unwrap_err().to_string();
        assert!(
            err.contains("`rceil`") && err.contains("two-level, single-level"),
            "{err}"
        );
        let err = "fp8:sr=1".parse::<QuantSpec>().unwrap_err().to_string();
        assert!(
            err.contains("stochastic rounding is not offered for fp8"),
            "{err}"
        );
        let err = "mxfp4:sr=x".parse::<QuantSpec>().unwrap_err().to_string();
        assert!(err.contains("`x`"), "{err}");
        for text in [
            "mxfp4:ceil",
            "nvfp4:single-level:tile16x16:sr=3",
            "fp8",
            "bf16",
        ] {
            assert_eq!(text.parse::<QuantSpec>().unwrap().label(), text);
        }
    }

    #[test]
    fn parse_lists_valid_names() {
        assert_eq!("MXFP4".parse::<QuantFormat>().unwrap(), QuantFormat::Mxfp4);
        assert_eq!("e4m3".parse::<QuantFormat>().unwrap(), QuantFormat::Fp8);
        let err = "mxfp5".parse::<QuantFormat>().unwrap_err().to_string();
        assert!(err.contains("`mxfp5`"), "{err}");
        assert!(err.contains("mxfp4, nvfp4, fp8, bf16"), "{err}");
        let err = "round".parse::<MxScaleMode>().unwrap_err().to_string();
        assert!(err.contains("floor, ceil, even, rceil"), "{err}");
    }

    #[test]
    fn refuses_unsupported_options() {
        let sr = Rounding::Stochastic { seed: 1 };
        let err = QuantSpec::new(QuantFormat::Fp8)
            .with_rounding(sr)
            .validate()
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("stochastic rounding is not offered for fp8")
        );
        let err = QuantSpec::new(QuantFormat::Mxfp4)
            .with_blocks(BlockLayout::Tile16x16)
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("nvfp4 only"));
        QuantSpec::new(QuantFormat::Nvfp4)
            .with_blocks(BlockLayout::Tile16x16)
            .with_rounding(sr)
            .validate()
            .unwrap();
    }

    #[test]
    fn serde_by_name() {
        let spec = QuantSpec::new(QuantFormat::Nvfp4).with_nv_scaling(NvScaling::SingleLevel);
        let json = serde_json::to_string(&spec).unwrap();
        assert!(json.contains("\"single-level\""), "{json}");
        let back: QuantSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, spec);
        let bad = serde_json::from_str::<QuantSpec>(r#"{"format":"int4"}"#).unwrap_err();
        assert!(bad.to_string().contains("unknown format `int4`"), "{bad}");
    }
}
