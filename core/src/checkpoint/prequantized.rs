//! Pre-quantized FP4 checkpoints, read straight into the packed base: codes and block scales as
//! stored, no dequantize-requantize. Two producers write them: llm-compressor / compressed-tensors
//! (`nvfp4-pack-quantized` and `mxfp4-pack-quantized`, [`super::compressed_tensors`]) and NVIDIA
//! ModelOpt (`W4A16_NVFP4`, [`super::modelopt`]). Each stores exactly aqn's layout of its format;
//! they differ in tensor names and in the per-tensor scale's convention (docs/formats.md,
//! "Pre-quantized checkpoints"):
//!
//! | | compressed-tensors NVFP4 | ModelOpt NVFP4 | compressed-tensors MXFP4 | aqn |
//! |---|---|---|---|---|
//! | codes, u8 `[out, in/2]`, even column in the low nibble | `weight_packed` | `weight` | `weight_packed` | packed codes |
//! | block scales `[out, in/B]`, row-major | `weight_scale` E4M3 | `weight_scale` E4M3 | `weight_scale` E8M0 (u8) | block scales |
//! | per-tensor f32 | `weight_global_scale` `G` = 1/g | `weight_scale_2` = g | none | `g` (1 for MXFP4) |
//!
//! [`PreQuantized`] names a projection's tensors, builds its packed tensor and checks a run's
//! plan against the codes; [`super::quantization_config::detect`] reads a folder's
//! quantization.

use safetensors::tensor::{Dtype, TensorView};

use crate::formats::e4m3::E4M3_NAN;
use crate::formats::e8m0::E8M0_NAN;
use crate::formats::spec::{MXFP4_BLOCK_SIZE, NVFP4_BLOCK_SIZE};
use crate::formats::{PackedTensor, QuantFormat, QuantSpec};

/// Who wrote the checkpoint, which fixes its tensor names and scale convention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Producer {
    /// llm-compressor / compressed-tensors, `nvfp4-pack-quantized`.
    CompressedTensors,
    /// llm-compressor / compressed-tensors, `mxfp4-pack-quantized`.
    CompressedTensorsMxfp4,
    /// NVIDIA ModelOpt, `W4A16_NVFP4`.
    ModelOpt,
}

impl Producer {
    /// The suffixes (after the module path) of a projection's codes, block scales and, for
    /// NVFP4, per-tensor scale.
    pub fn suffixes(self) -> &'static [&'static str] {
        match self {
            Producer::CompressedTensors => {
                &["weight_packed", "weight_scale", "weight_global_scale"]
            }
            Producer::CompressedTensorsMxfp4 => &["weight_packed", "weight_scale"],
            Producer::ModelOpt => &["weight", "weight_scale", "weight_scale_2"],
        }
    }

    /// Which of the suffixes marks a projection stored packed (ModelOpt's codes share the dense
    /// weight's name).
    fn marker(self) -> usize {
        match self {
            Producer::CompressedTensors | Producer::CompressedTensorsMxfp4 => 0,
            Producer::ModelOpt => 2,
        }
    }

    /// The spec the codes were made with, its `quant.weights` text and what that means.
    fn spec(self) -> (QuantSpec, &'static str, &'static str) {
        match self {
            Producer::CompressedTensorsMxfp4 => (
                QuantSpec::new(QuantFormat::Mxfp4),
                "mxfp4",
                "round to nearest, 1-D blocks of 32, floor scales",
            ),
            _ => (
                QuantSpec::new(QuantFormat::Nvfp4),
                "nvfp4",
                "round to nearest, 1-D blocks of 16, two-level scales",
            ),
        }
    }

    /// How the run's plan names it.
    pub fn label(self) -> &'static str {
        match self {
            Producer::CompressedTensors => "compressed-tensors nvfp4-pack-quantized",
            Producer::CompressedTensorsMxfp4 => "compressed-tensors mxfp4-pack-quantized",
            Producer::ModelOpt => "ModelOpt W4A16_NVFP4",
        }
    }

    /// The stored per-tensor scale's value as aqn's decode scale `g`.
    fn decode_scale(self, stored: f32) -> f32 {
        match self {
            Producer::CompressedTensors => 1.0 / stored,
            _ => stored,
        }
    }
}

/// A checkpoint's quantization as its configuration describes it.
#[derive(Clone, Debug, PartialEq)]
pub struct PreQuantized {
    /// Who wrote it.
    pub producer: Producer,
    /// The weight format the codes were made with (aqn's spec of it).
    pub spec: QuantSpec,
    /// The modules left unquantized, as the configuration lists them.
    pub ignore: Vec<String>,
    /// The producer's version, if recorded.
    pub version: Option<String>,
}

impl PreQuantized {
    /// Weights written by `producer` (in its format).
    pub fn new(producer: Producer, ignore: Vec<String>, version: Option<String>) -> Self {
        Self {
            producer,
            spec: producer.spec().0,
            ignore,
            version,
        }
    }

    /// One line for the run's plan.
    pub fn describe(&self) -> String {
        format!(
            "{} codes and scales read from the checkpoint ({}{})",
            self.spec.label(),
            self.producer.label(),
            self.version
                .as_ref()
                .map(|v| format!(" {v}"))
                .unwrap_or_default()
        )
    }

    /// The names of a projection's codes, block scales and (NVFP4) per-tensor scale, from its
    /// weight name `….weight`.
    pub fn tensor_names(&self, weight_name: &str) -> Option<Vec<String>> {
        let module = weight_name.strip_suffix(".weight")?;
        Some(
            self.producer
                .suffixes()
                .iter()
                .map(|s| format!("{module}.{s}"))
                .collect(),
        )
    }

    /// The name whose presence marks the projection of weight `weight_name` as stored packed.
    pub fn marker(&self, weight_name: &str) -> Option<String> {
        let names = self.tensor_names(weight_name)?;
        Some(names[self.producer.marker()].clone())
    }

    /// Whether a plan that quantizes the stored projection `module` as `spec` (`None`: full
    /// precision) can hold its codes: only the very spec they were made with can.
    pub fn check_plan(&self, module: &str, spec: Option<&QuantSpec>) -> Result<(), String> {
        let (_, text, meaning) = self.producer.spec();
        let stored = format!(
            "`{module}` is stored as {} codes ({})",
            text.to_uppercase(),
            self.producer.label()
        );
        let needs = format!(
            "a pre-quantized checkpoint needs quant.mode = \"w4a16\" (or \"w4a4\") and \
             quant.weights = \"{text}\" ({meaning}: {}), with this projection out of \
             quant.exclude",
            self.spec.label()
        );
        match spec {
            Some(s) if *s == self.spec => Ok(()),
            Some(s) => Err(format!(
                "{stored}, but [quant] quantizes it as {}: {needs}",
                s.label()
            )),
            None => Err(format!(
                "{stored}, but [quant] holds it in full precision: {needs}"
            )),
        }
    }

    /// The packed tensor of a `[out, inp]` projection from its stored tensors (`views`, named
    /// as [`Self::tensor_names`] gives them), checked: dtypes, shapes, block scales that are
    /// neither NaN nor (NVFP4) negative, a finite positive per-tensor scale with a finite
    /// inverse.
    pub fn packed_tensor(
        &self,
        names: &[String],
        views: &[&TensorView<'_>],
        [out, inp]: [usize; 2],
    ) -> Result<PackedTensor, String> {
        let mxfp4 = self.spec.format == QuantFormat::Mxfp4;
        let block = if mxfp4 {
            MXFP4_BLOCK_SIZE
        } else {
            NVFP4_BLOCK_SIZE
        };
        if !inp.is_multiple_of(block) {
            return Err(format!(
                "`{}`: {inp} inputs are not whole blocks of {block}",
                names[0]
            ));
        }
        let label = self.producer.label();
        let (codes, scale) = (views[0], views[1]);
        expect(codes, &names[0], Dtype::U8, &[&[out, inp / 2]], label)?;
        let scale_dtype = if mxfp4 { Dtype::U8 } else { Dtype::F8_E4M3 };
        expect(scale, &names[1], scale_dtype, &[&[out, inp / block]], label)?;
        let bad_scale = |b: u8| {
            if mxfp4 {
                b == E8M0_NAN
            } else {
                b & 0x7F == E4M3_NAN || (b & 0x80 != 0 && b != 0x80)
            }
        };
        if let Some(i) = scale.data().iter().position(|&b| bad_scale(b)) {
            return Err(format!(
                "`{}` holds a NaN or negative block scale (byte {:#04x} at block {i})",
                names[1],
                scale.data()[i]
            ));
        }
        let tensor_scale = match views.get(2) {
            Some(global) => self.tensor_scale(&names[2], global, label)?,
            None => 1.0,
        };
        Ok(PackedTensor {
            spec: self.spec,
            rows: out,
            row_len: inp,
            codes: codes.data().to_vec(),
            scales: scale.data().to_vec(),
            tensor_scale,
        })
    }

    /// aqn's `g` from a stored per-tensor scale.
    fn tensor_scale(
        &self,
        name: &str,
        global: &TensorView<'_>,
        label: &str,
    ) -> Result<f32, String> {
        expect(global, name, Dtype::F32, &[&[1], &[]], label)?;
        let bytes: [u8; 4] = global
            .data()
            .try_into()
            .map_err(|_| format!("`{name}` holds {} bytes, not one f32", global.data().len()))?;
        let stored = f32::from_le_bytes(bytes);
        let g = self.producer.decode_scale(stored);
        if !(stored.is_finite() && stored > 0.0 && g.is_finite() && g > 0.0) {
            return Err(format!(
                "`{name}` = {stored}: the per-tensor scale must be a finite positive number with a finite inverse"
            ));
        }
        Ok(g)
    }
}

/// The strings of a JSON array of module names (an `ignore` list); empty when absent. Entries
/// that are not strings are skipped: the list is informational, never used to pick tensors.
pub fn string_list(value: Option<&serde_json::Value>) -> Vec<String> {
    value
        .and_then(serde_json::Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn expect(
    view: &TensorView<'_>,
    name: &str,
    dtype: Dtype,
    shapes: &[&[usize]],
    label: &str,
) -> Result<(), String> {
    if view.dtype() != dtype {
        return Err(format!(
            "`{name}` has dtype {:?}; {label} stores {dtype:?}",
            view.dtype()
        ));
    }
    if !shapes.contains(&view.shape()) {
        return Err(format!(
            "`{name}` has shape {:?}; the projection needs {:?}",
            view.shape(),
            shapes[0]
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensors_are_taken_as_stored_and_bad_ones_refused() {
        let ct = PreQuantized::new(Producer::CompressedTensors, vec![], None);
        let mo = PreQuantized::new(Producer::ModelOpt, vec![], None);
        let names = ct
            .tensor_names("model.layers.0.mlp.up_proj.weight")
            .unwrap();
        assert_eq!(names[0], "model.layers.0.mlp.up_proj.weight_packed");
        let mo_names = mo
            .tensor_names("model.layers.0.mlp.up_proj.weight")
            .unwrap();
        assert_eq!(mo_names[0], "model.layers.0.mlp.up_proj.weight");
        assert_eq!(mo_names[2], "model.layers.0.mlp.up_proj.weight_scale_2");
        let leak = |v: Vec<u8>| -> &'static [u8] { v.leak() };
        let codes = leak((0..2 * 16).map(|i| i as u8).collect());
        let scales = leak(vec![0x38u8, 0x40, 0x00, 0x80]);
        let g = leak(Vec::from(2688.0f32.to_le_bytes()));
        let view = |dtype, shape: Vec<usize>, data: &'static [u8]| {
            TensorView::new(dtype, shape, data).unwrap()
        };
        let p = view(Dtype::U8, vec![2, 16], codes);
        let s = view(Dtype::F8_E4M3, vec![2, 2], scales);
        let gv = view(Dtype::F32, vec![1], g);
        let t = ct.packed_tensor(&names, &[&p, &s, &gv], [2, 32]).unwrap();
        assert_eq!((t.codes.as_slice(), t.scales.as_slice()), (codes, scales));
        assert_eq!(t.tensor_scale, 1.0 / 2688.0);
        t.check().unwrap();
        // ModelOpt stores g itself, as a 0-d tensor.
        let g0 = view(Dtype::F32, vec![], g);
        let t = mo
            .packed_tensor(&mo_names, &[&p, &s, &g0], [2, 32])
            .unwrap();
        assert_eq!(t.tensor_scale, 2688.0);
        let nan_scale = view(Dtype::F8_E4M3, vec![2, 2], leak(vec![0x38u8, 0x7F, 0, 0]));
        let err = ct
            .packed_tensor(&names, &[&p, &nan_scale, &gv], [2, 32])
            .unwrap_err();
        assert!(
            err.contains("weight_scale") && err.contains("0x7f"),
            "{err}"
        );
        let zero = view(Dtype::F32, vec![1], leak(Vec::from(0.0f32.to_le_bytes())));
        let err = ct
            .packed_tensor(&names, &[&p, &s, &zero], [2, 32])
            .unwrap_err();
        assert!(err.contains("weight_global_scale` = 0"), "{err}");
        let err = ct
            .packed_tensor(&names, &[&p, &s, &gv], [2, 64])
            .unwrap_err();
        assert!(err.contains("shape [2, 16]"), "{err}");
        let f32_scales = view(Dtype::F32, vec![2, 2], leak(vec![0u8; 16]));
        let err = ct
            .packed_tensor(&names, &[&p, &f32_scales, &gv], [2, 32])
            .unwrap_err();
        assert!(err.contains("dtype F32"), "{err}");
    }
}
