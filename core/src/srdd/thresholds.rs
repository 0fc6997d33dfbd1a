//! When SRDD flags a layer: `config.thresholds` of the report, and the default thresholds per
//! format.
//!
//! The original scanner's thresholds (SQNR below 20 dB, deadzone above 5%, relative error above
//! 10%; [`SrddThresholds::SCANNER`]) sit *inside* the error every FP4 format makes on any data:
//! fake-quantizing N(0,1) in rows of 1024 (`aqn-native quant-error --generate normal`) gives
//! MXFP4 18.8 dB, 8.8% deadzone, 21.0% relative error and NVFP4 20.4 dB, 6.8%, 17.9%, and the
//! layer outputs of the built-in tiny model (`aqn-native srdd --model assets/tiny`, 6 prompts)
//! give MXFP4 18.7-19.1 dB, 6.0-8.5%, 17.2-20.4% and NVFP4 20.3-20.4 dB, 5.1-6.9%, 15.5-17.9%.
//! With them every FP4 layer of every model is flagged, which says nothing. So the defaults
//! depend on the format: a layer is flagged when it quantizes clearly worse than well-behaved
//! (Gaussian) data does in that format. For FP4 the limits are 15 dB, 15% and 30%: between the
//! Gaussian figures and those of heavy-tailed data (Laplace(0,1): MXFP4 17.9 dB, 16.4%, 29.8%;
//! NVFP4 20.7 dB, 12.8%, 25.1%), so the tiny model's layer outputs pass and its MXFP4 projection
//! inputs after the SwiGLU gate (17-22% deadzone, 29-33% relative error) are flagged. FP8 (N(0,1):
//! 31.6 dB, 0% deadzone, 2.3%) and BF16 (55.6 dB, 0%, 0.14%) get limits the same distance from
//! their own figures. The saturation limit stays the scanner's 1% for every format.

use serde::{Deserialize, Serialize};

use crate::formats::QuantFormat;

/// `config.thresholds`: a layer is flagged when any of them is crossed.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SrddThresholds {
    /// Flag when `sqnr_db` is below this.
    pub sqnr_db: f64,
    /// Flag when `deadzone_ratio` is above this.
    pub deadzone: f64,
    /// Flag when `saturation_ratio` is above this.
    pub saturation: f64,
    /// Flag when `relative_error` is above this.
    pub relative_error: f64,
}

/// Flag when more than this fraction of the values sit at the largest quantized magnitude (the
/// scanner's limit, for every format).
pub const SATURATION_LIMIT: f64 = 0.01;

impl SrddThresholds {
    /// The original scanner's defaults (20 dB, 5%, 1%, 10%): what reports of the seed's runs carry.
    pub const SCANNER: Self = Self {
        sqnr_db: 20.0,
        deadzone: 0.05,
        saturation: SATURATION_LIMIT,
        relative_error: 0.1,
    };
    /// MXFP4 and NVFP4: 15 dB, 15% deadzone, 30% relative error (module docs).
    pub const FP4: Self = Self {
        sqnr_db: 15.0,
        deadzone: 0.15,
        saturation: SATURATION_LIMIT,
        relative_error: 0.3,
    };
    /// FP8 E4M3: 25 dB, 1% deadzone, 5% relative error.
    pub const FP8: Self = Self {
        sqnr_db: 25.0,
        deadzone: 0.01,
        saturation: SATURATION_LIMIT,
        relative_error: 0.05,
    };
    /// BF16: 45 dB, 0.1% deadzone, 1% relative error.
    pub const BF16: Self = Self {
        sqnr_db: 45.0,
        deadzone: 0.001,
        saturation: SATURATION_LIMIT,
        relative_error: 0.01,
    };

    /// The default thresholds of a scan in `format`.
    pub fn for_format(format: QuantFormat) -> Self {
        match format {
            QuantFormat::Mxfp4 | QuantFormat::Nvfp4 => Self::FP4,
            QuantFormat::Fp8 => Self::FP8,
            QuantFormat::Bf16 => Self::BF16,
        }
    }
}

impl Default for SrddThresholds {
    /// The original scanner's thresholds ([`SrddThresholds::SCANNER`]).
    fn default() -> Self {
        Self::SCANNER
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distributions::Distribution;
    use crate::formats::QuantSpec;
    use crate::quant_error::ErrorMetrics;

    /// The figures the module docs quote, recomputed: Gaussian data passes its format's
    /// thresholds, and the FP4 thresholds lie beyond the FP4 formats' Gaussian error while the
    /// scanner's lie inside it.
    #[test]
    fn gaussian_data_passes_its_formats_thresholds() {
        let x = Distribution::STANDARD_NORMAL.generate(1 << 16, 0).unwrap();
        for format in QuantFormat::ALL {
            let spec = QuantSpec::new(*format);
            let q = spec.fake_quantize_vec(&x, 1024).unwrap();
            let m = ErrorMetrics::compute(&x, &q);
            let t = SrddThresholds::for_format(*format);
            assert!(m.sqnr_db > t.sqnr_db + 3.0, "{format}: {m:?}");
            assert!(m.deadzone_ratio < t.deadzone, "{format}: {m:?}");
            assert!(m.mean_relative_error < t.relative_error, "{format}: {m:?}");
            if matches!(format, QuantFormat::Mxfp4 | QuantFormat::Nvfp4) {
                let s = SrddThresholds::SCANNER;
                assert!(
                    m.deadzone_ratio > s.deadzone && m.mean_relative_error > s.relative_error,
                    "{format}: {m:?}"
                );
            }
        }
    }
}
