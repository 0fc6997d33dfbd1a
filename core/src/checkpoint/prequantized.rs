//! Pre-quantized NVFP4 checkpoints, read straight into the packed base: codes and block scales as
//! stored, no dequantize-requantize. Two producers write them: llm-compressor / compressed-tensors
//! (`nvfp4-pack-quantized`, [`super::compressed_tensors`]) and NVIDIA ModelOpt (`W4A16_NVFP4`,
//! [`super::modelopt`]). Both store exactly aqn's NVFP4 two-level layout; they differ in tensor
//! names and in the per-tensor scale's convention (docs/formats.md, "Pre-quantized
//! checkpoints"):
//!
//! | | compressed-tensors | ModelOpt | aqn |
//! |---|---|---|---|
//! | codes, u8 `[out, in/2]`, even column in the low nibble | `weight_packed` | `weight` | packed codes |
//! | E4M3 block scales `[out, in/16]`, row-major | `weight_scale` | `weight_scale` | block scales |
//! | per-tensor f32 | `weight_global_scale` `G` = 1/g | `weight_scale_2` = g | `g` |
//!
//! [`PreQuantized`] names a projection's tensors, builds its packed tensor and checks a run's
//! plan against the codes; [`super::quantization_config::detect`] reads a folder's
//! quantization.

use safetensors::tensor::{Dtype, TensorView};

use crate::formats::e4m3::E4M3_NAN;
use crate::formats::spec::NVFP4_BLOCK_SIZE;
use crate::formats::{PackedTensor, QuantFormat, QuantSpec};

/// The `quant.weights` text of the spec the codes were made with.
pub const SPEC_TEXT: &str = "nvfp4";

/// Who wrote the checkpoint, which fixes its tensor names and scale convention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Producer {
    /// llm-compressor / compressed-tensors, `nvfp4-pack-quantized`.
    CompressedTensors,
    /// NVIDIA ModelOpt, `W4A16_NVFP4`.
    ModelOpt,
}

impl Producer {
    /// The suffixes (after the module path) of a projection's codes, block scales and
    /// per-tensor scale.
    pub fn suffixes(self) -> [&'static str; 3] {
        match self {
            Producer::CompressedTensors => ["weight_packed", "weight_scale", "weight_global_scale"],
            Producer::ModelOpt => ["weight", "weight_scale", "weight_scale_2"],
        }
    }

    /// How the run's plan names it.
    pub fn label(self) -> &'static str {
        match self {
            Producer::CompressedTensors => "compressed-tensors nvfp4-pack-quantized",
            Producer::ModelOpt => "ModelOpt W4A16_NVFP4",
        }
    }

    /// The stored per-tensor scale's value as aqn's decode scale `g`.
    fn decode_scale(self, stored: f32) -> f32 {
        match self {
            Producer::CompressedTensors => 1.0 / stored,
            Producer::ModelOpt => stored,
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
    /// NVFP4 weights written by `producer`.
    pub fn nvfp4(producer: Producer, ignore: Vec<String>, version: Option<String>) -> Self {
        Self {
            producer,
            spec: QuantSpec::new(QuantFormat::Nvfp4),
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

    /// The names of a projection's codes, block scales and per-tensor scale, from its weight
    /// name `….weight`. A projection is stored packed when its per-tensor scale is present.
    pub fn tensor_names(&self, weight_name: &str) -> Option<[String; 3]> {
        let module = weight_name.strip_suffix(".weight")?;
        Some(self.producer.suffixes().map(|s| format!("{module}.{s}")))
    }

    /// Whether a plan that quantizes the stored projection `module` as `spec` (`None`: full
    /// precision) can hold its codes: only the very spec they were made with can.
    pub fn check_plan(&self, module: &str, spec: Option<&QuantSpec>) -> Result<(), String> {
        let stored = format!(
            "`{module}` is stored as NVFP4 codes ({})",
            self.producer.label()
        );
        let needs = format!(
            "a pre-quantized checkpoint needs quant.mode = \"w4a16\" (or \"w4a4\") and \
             quant.weights = \"{SPEC_TEXT}\" (round to nearest, 1-D blocks of 16, two-level \
             scales: {}), with this projection out of quant.exclude",
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

    /// The packed NVFP4 tensor of a `[out, inp]` projection from its three stored tensors
    /// (named as [`Self::tensor_names`] gives them), checked: dtypes, shapes, block scales that
    /// are neither NaN nor negative, a finite positive per-tensor scale with a finite inverse.
    pub fn nvfp4_tensor(
        &self,
        names: &[String; 3],
        [packed, scale, global]: [&TensorView<'_>; 3],
        [out, inp]: [usize; 2],
    ) -> Result<PackedTensor, String> {
        if !inp.is_multiple_of(NVFP4_BLOCK_SIZE) {
            return Err(format!(
                "`{}`: {inp} inputs are not whole NVFP4 blocks of {NVFP4_BLOCK_SIZE}",
                names[0]
            ));
        }
        let label = self.producer.label();
        expect(packed, &names[0], Dtype::U8, &[&[out, inp / 2]], label)?;
        let blocks = [out, inp / NVFP4_BLOCK_SIZE];
        expect(scale, &names[1], Dtype::F8_E4M3, &[&blocks], label)?;
        expect(global, &names[2], Dtype::F32, &[&[1], &[]], label)?;
        if let Some(i) = scale
            .data()
            .iter()
            .position(|&b| b & 0x7F == E4M3_NAN || (b & 0x80 != 0 && b != 0x80))
        {
            return Err(format!(
                "`{}` holds a NaN or negative block scale (byte {:#04x} at block {i})",
                names[1],
                scale.data()[i]
            ));
        }
        let bytes: [u8; 4] = global.data().try_into().map_err(|_| {
            format!(
                "`{}` holds {} bytes, not one f32",
                names[2],
                global.data().len()
            )
        })?;
        let stored = f32::from_le_bytes(bytes);
        let g = self.producer.decode_scale(stored);
        if !(stored.is_finite() && stored > 0.0 && g.is_finite() && g > 0.0) {
            return Err(format!(
                "`{}` = {stored}: the per-tensor scale must be a finite positive number with a finite inverse",
                names[2]
            ));
        }
        Ok(PackedTensor {
            spec: self.spec,
            rows: out,
            row_len: inp,
            codes: packed.data().to_vec(),
            scales: scale.data().to_vec(),
            tensor_scale: g,
        })
    }
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
        let ct = PreQuantized::nvfp4(Producer::CompressedTensors, vec![], None);
        let mo = PreQuantized::nvfp4(Producer::ModelOpt, vec![], None);
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
        let t = ct.nvfp4_tensor(&names, [&p, &s, &gv], [2, 32]).unwrap();
        assert_eq!((t.codes.as_slice(), t.scales.as_slice()), (codes, scales));
        assert_eq!(t.tensor_scale, 1.0 / 2688.0);
        t.check().unwrap();
        // ModelOpt stores g itself, as a 0-d tensor.
        let g0 = view(Dtype::F32, vec![], g);
        let t = mo.nvfp4_tensor(&mo_names, [&p, &s, &g0], [2, 32]).unwrap();
        assert_eq!(t.tensor_scale, 2688.0);
        let nan_scale = view(Dtype::F8_E4M3, vec![2, 2], leak(vec![0x38u8, 0x7F, 0, 0]));
        let err = ct
            .nvfp4_tensor(&names, [&p, &nan_scale, &gv], [2, 32])
            .unwrap_err();
        assert!(
            err.contains("weight_scale") && err.contains("0x7f"),
            "{err}"
        );
        let zero = view(Dtype::F32, vec![1], leak(Vec::from(0.0f32.to_le_bytes())));
        let err = ct
            .nvfp4_tensor(&names, [&p, &s, &zero], [2, 32])
            .unwrap_err();
        assert!(err.contains("weight_global_scale` = 0"), "{err}");
        let err = ct.nvfp4_tensor(&names, [&p, &s, &gv], [2, 64]).unwrap_err();
        assert!(err.contains("shape [2, 16]"), "{err}");
        let f32_scales = view(Dtype::F32, vec![2, 2], leak(vec![0u8; 16]));
        let err = ct
            .nvfp4_tensor(&names, [&p, &f32_scales, &gv], [2, 32])
            .unwrap_err();
        assert!(err.contains("dtype F32"), "{err}");
    }
}
