//! The quantization mode of the projections (docs/spec.md section 2).

use super::QatError;
use crate::named::named_enum;

named_enum! {
    /// What the projections fake-quantize.
    #[derive(Default)]
    QuantMode, "quantization mode", QatError {
        /// Nothing: every matmul in f32 (the high-precision baseline; named after the seed's
        /// BF16 runs).
        #[default]
        Bf16 => "bf16" | "none" | "f32",
        /// Weights fake-quantized, activations in full precision.
        W4A16 => "w4a16",
        /// Weights and the projections' input activations fake-quantized.
        W4A4 => "w4a4",
    }
}

impl QuantMode {
    /// Whether weights are quantized.
    pub fn quantizes_weights(self) -> bool {
        self != QuantMode::Bf16
    }

    /// Whether inputs are quantized.
    pub fn quantizes_activations(self) -> bool {
        self == QuantMode::W4A4
    }
}
