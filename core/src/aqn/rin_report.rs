//! Where a run's RIN policy gets its per-layer errors (docs/spec.md section 5): the SRDD report named
//! by `rin.report`, or, when the policy reads errors and none is named, a scan of the run's
//! high-precision base model made on the spot ([`Aqn::for_run`]).
//!
//! The scan measures the layer outputs (`SrddCapture::Outputs`) of the first
//! [`SRDD_SCAN_PROMPTS`] training prompts in the run's weight format; a BF16 run has none, so it
//! is scanned in MXFP4, as the seed's scans were. The caller keeps the report it returns (the
//! trainer writes it into the run folder), so the multipliers of the run can be reproduced.

use std::path::Path;

use burn::module::Module;
use burn::tensor::Device;

use super::{Aqn, AqnConfig, AqnError};
use crate::checkpoint::{LoadPlan, load_qwen2_with};
use crate::formats::{QuantFormat, QuantSpec};
use crate::model::{Qwen2ForCausalLM, WeightDtype};
use crate::schedule::RunLength;
use crate::srdd::{SrddCapture, SrddReport, build_report, scan};

/// Prompts the scan of a RIN policy without a report reads.
pub const SRDD_SCAN_PROMPTS: usize = 32;

/// The base model a RIN policy's report is scanned from, when it has to be.
pub struct BaseModelScan<'a> {
    /// The HF checkpoint folder of the high-precision base.
    pub model_dir: &'a Path,
    /// The precision its values are read in.
    pub dtype: WeightDtype,
    /// Where the scan runs.
    pub device: &'a Device,
    /// The run's weight format (`None`: a BF16 run, scanned in MXFP4).
    pub format: Option<QuantSpec>,
    /// The tokenized training prompts (the first [`SRDD_SCAN_PROMPTS`] are read).
    pub prompts: &'a [Vec<u32>],
}

impl BaseModelScan<'_> {
    /// The format the scan measures.
    pub fn spec(&self) -> QuantSpec {
        self.format
            .unwrap_or_else(|| QuantSpec::new(QuantFormat::Mxfp4))
    }

    /// Loads the base (latent, so nothing is quantized before it is measured), scans it, and
    /// drops it.
    pub fn report(&self) -> Result<SrddReport, AqnError> {
        let path = self.model_dir.display().to_string();
        let spec = self.spec();
        let base = load_qwen2_with(
            self.model_dir,
            self.device,
            &LoadPlan {
                packed: None,
                dtype: self.dtype,
            },
        )
        .map_err(|source| AqnError::ScanLoad {
            path: path.clone(),
            source: Box::new(source),
        })?;
        let prompts = &self.prompts[..self.prompts.len().min(SRDD_SCAN_PROMPTS)];
        let metrics = scan(&base.valid(), prompts, SrddCapture::Outputs, &spec, |_| {}).map_err(
            |source| AqnError::Scan {
                stage: "scan",
                path: path.clone(),
                source,
            },
        )?;
        drop(base);
        build_report(
            &path,
            &spec,
            SrddCapture::Outputs,
            Default::default(),
            &metrics,
        )
        .map_err(|source| AqnError::Scan {
            stage: "report",
            path,
            source,
        })
    }
}

impl Aqn {
    /// The AQN of a run: [`Aqn::new`], and when its RIN policy reads per-layer errors but no
    /// report is configured, the report scanned from `base` (returned beside it, to be kept).
    pub fn for_run(
        config: &AqnConfig,
        model: &Qwen2ForCausalLM,
        run: RunLength,
        base: &BaseModelScan,
    ) -> Result<(Self, Option<SrddReport>), AqnError> {
        match Self::new(config, model, run) {
            Err(AqnError::RinNeedsReport { .. }) => {
                let report = base.report()?;
                let aqn = Self::with_report(config, model, run, Some(&report))?;
                Ok((aqn, Some(report)))
            }
            other => Ok((other?, None)),
        }
    }
}

#[cfg(test)]
#[allow(deprecated)] // Device::ndarray: deprecated upstream, still the CPU reference backend.
mod tests {
    use super::*;

    #[test]
    fn a_bf16_run_is_scanned_in_mxfp4_and_a_quantized_run_in_its_format() {
        let device = Device::ndarray();
        let base = |format| BaseModelScan {
            model_dir: Path::new("unused"),
            dtype: WeightDtype::F32,
            device: &device,
            format,
            prompts: &[],
        };
        assert_eq!(base(None).spec(), QuantSpec::new(QuantFormat::Mxfp4));
        let nvfp4 = QuantSpec::new(QuantFormat::Nvfp4);
        assert_eq!(base(Some(nvfp4)).spec(), nvfp4);
    }

    #[test]
    fn a_missing_base_model_is_an_error_naming_the_folder_with_its_source() {
        let device = Device::ndarray();
        let e = BaseModelScan {
            model_dir: Path::new("/nonexistent/base"),
            dtype: WeightDtype::F32,
            device: &device,
            format: None,
            prompts: &[vec![1, 2, 3]],
        }
        .report()
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/base"), "{e}");
        assert!(std::error::Error::source(&e).is_some(), "{e:?}");
    }
}
