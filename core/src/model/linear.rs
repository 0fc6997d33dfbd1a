//! `QLinear`: the one linear projection of the model.
//!
//! Every projection of Qwen2 (q/k/v/o, gate/up/down and the lm_head) is a [`QLinear`], and
//! [`QLinear::forward`] is the single place their matmuls happen, so quantization modes (docs/spec.md
//! section 2), LoRA adapters, AQN on linear weights (section 4) and hardware-error injection on
//! matmul outputs (section 6) attach here and nowhere else.
//!
//! The weight is stored as HF/PyTorch store it, `[out, in]` (the transpose of `burn::nn::Linear`),
//! so the reduction axis `in` is the last one: it is the quantization axis of MXFP4/NVFP4 blocks, and
//! a checkpoint's tensors load without transposition.
//!
//! A frozen weight (a LoRA base, a reference policy, an inference model) can instead be held
//! *packed* ([`QLinear::packed`]: codes + scales, [`PackedWeight`]): the layer then has no latent
//! f32 weight at all, and `forward` computes `Q(x) Q(W)^T` from the codes
//! ([`crate::quant::packed_linear`]), bit for bit what the fake-quant path with a cached `Q(W)`
//! computes.
//!
//! What a projection does besides `x W^T + b` is recorded in it by the model-level calls
//! (`with_quantization`, `with_lora`, `with_hw_noise`, `for_phase`): its [`LinearHooks`] (the
//! quantizer and cached `Q(W)`, the hardware-error site, an SRDD input recorder) and its optional
//! [`LoraAdapter`]. A projection with none of them computes exactly what the plain layer did.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::tensor::{Device, Tensor};

use crate::formats::{FormatError, QuantFormat, QuantSpec};
use crate::hw_noise::site::SiteNoise;
use crate::lora::LoraAdapter;
use crate::model::recorder::InputRecorder;
use crate::qat::{LinearQuant, WeightQuantState};
use crate::quant::{PackedWeight, packed_linear};

/// Everything a projection does besides its parameters: not part of the module's parameters
/// (`#[module(skip)]`), carried along by clones.
#[derive(Clone, Debug, Default)]
pub struct LinearHooks {
    /// The weight/input quantizers (none: BF16 mode, plain f32) and the cached `Q(W)`.
    pub quant: WeightQuantState,
    /// Hardware error on the matmul output.
    pub noise: Option<SiteNoise>,
    /// SRDD's recorder of the (unquantized) input.
    pub recorder: Option<InputRecorder>,
}

/// Configuration of a [`QLinear`].
#[derive(Config, Debug)]
pub struct QLinearConfig {
    /// Input features (the reduction axis).
    pub d_input: usize,
    /// Output features.
    pub d_output: usize,
    /// Whether the layer adds a bias (Qwen2: q/k/v yes, o/gate/up/down/lm_head no).
    #[config(default = false)]
    pub bias: bool,
    /// Std of the normal initialization of the weight (HF `initializer_range`); the bias starts at 0.
    #[config(default = 0.02)]
    pub init_std: f64,
}

/// `y = x W^T + b` with `W` of shape `[d_output, d_input]` (HF layout) and an optional bias `b`.
///
/// Created with [`QLinearConfig::init`]; a checkpoint's values replace the initial ones through the
/// loader (`model::loader`).
#[derive(Module, Debug)]
pub struct QLinear {
    /// `[d_output, d_input]`: HF layout; the last axis is the reduction (quantization) axis.
    /// `None` when the layer holds its frozen weight packed (`packed`).
    pub weight: Option<Param<Tensor<2>>>,
    /// `[d_output]`.
    pub bias: Option<Param<Tensor<1>>>,
    /// The LoRA adapter (trainable, in f32, never quantized), if any.
    pub lora: Option<LoraAdapter>,
    /// Quantization, hardware error, recorder.
    #[module(skip)]
    pub hooks: LinearHooks,
    /// The frozen weight as codes + scales, when `weight` is `None`.
    #[module(skip)]
    pub packed: Option<PackedWeight>,
}

impl QLinearConfig {
    /// A layer with weight `N(0, init_std^2)` and a zero bias.
    ///
    /// # Panics
    /// If a size is 0 or `init_std` is negative (the model config is validated before this).
    pub fn init(&self, device: &Device) -> QLinear {
        assert!(
            self.d_input > 0 && self.d_output > 0,
            "QLinear sizes must be positive, got [{}, {}]",
            self.d_output,
            self.d_input
        );
        assert!(self.init_std >= 0.0, "init_std must be non-negative");
        let weight = Initializer::Normal {
            mean: 0.0,
            std: self.init_std,
        }
        .init_with(
            [self.d_output, self.d_input],
            Some(self.d_input),
            Some(self.d_output),
            device,
        );
        let bias = self
            .bias
            .then(|| Initializer::Zeros.init([self.d_output], device));
        QLinear {
            weight: Some(weight),
            bias,
            lora: None,
            hooks: LinearHooks::default(),
            packed: None,
        }
    }
}

impl QLinear {
    /// A plain projection with the given parameters (no adapter, no hooks).
    pub fn new(weight: Param<Tensor<2>>, bias: Option<Param<Tensor<1>>>) -> Self {
        Self {
            weight: Some(weight),
            bias,
            lora: None,
            hooks: LinearHooks::default(),
            packed: None,
        }
    }

    /// A projection whose frozen weight is `packed` (no latent weight), quantized as `quant`
    /// says: `quant.weights` must be the spec the codes were made with; without a quantizer
    /// the codes must be BF16 (frozen weights stored in bf16, `model.dtype = "bf16"`).
    pub fn packed(
        packed: PackedWeight,
        bias: Option<Param<Tensor<1>>>,
        quant: Option<LinearQuant>,
    ) -> Result<Self, FormatError> {
        check_packed_spec(&packed, quant.as_ref().map(|q| &q.weights))?;
        Ok(Self {
            weight: None,
            bias,
            lora: None,
            hooks: LinearHooks {
                quant: WeightQuantState::new(quant),
                ..LinearHooks::default()
            },
            packed: Some(packed),
        })
    }

    /// The latent weight parameter.
    ///
    /// # Panics
    /// If the layer holds a packed weight (no latent weight exists; see [`Self::is_packed`]).
    pub fn latent(&self) -> &Param<Tensor<2>> {
        self.weight
            .as_ref()
            .expect("this projection holds a packed frozen weight, not a latent one")
    }

    /// Whether the frozen weight is held packed (and there is no latent weight).
    pub fn is_packed(&self) -> bool {
        self.packed.is_some()
    }

    /// Replaces the latent weight by its packed form: the codes of the weight quantizer, or
    /// BF16 codes without one. Refuses a weight that requires gradients (it is not frozen).
    /// A packed layer is returned unchanged.
    pub fn into_packed(self) -> Result<Self, FormatError> {
        let spec = Some(
            self.hooks
                .quant
                .quant()
                .map_or(QuantSpec::new(QuantFormat::Bf16), |q| q.weights),
        );
        self.into_packed_as(spec)
    }

    /// [`Self::into_packed`] with the storage given: `spec`'s codes, or f32 values (`None`,
    /// unquantized layers only).
    pub fn into_packed_as(mut self, spec: Option<QuantSpec>) -> Result<Self, FormatError> {
        if self.weight.is_none() {
            return Ok(self);
        }
        let weight = self.weight.take().expect("checked");
        if weight.is_require_grad() {
            return Err(FormatError::PackedWeight {
                what: "packing a trainable weight".into(),
                reason: "only frozen weights (no gradient) are held packed".into(),
            });
        }
        let [o, i] = weight.dims();
        let values = weight
            .val()
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| FormatError::BadPacked(format!("{e:?}")))?;
        let packed = match spec {
            Some(spec) => PackedWeight::quantize(&values, o, i, &spec)?,
            None => PackedWeight::f32(values, o, i)?,
        };
        check_packed_spec(&packed, self.hooks.quant.quant().map(|q| &q.weights))?;
        self.packed = Some(packed);
        self.hooks.quant = WeightQuantState::new(self.hooks.quant.quant().copied());
        Ok(self)
    }

    /// Applies `Q(x) Q(W)^T + b + lora(x)`, where `Q` is the identity unless a quantized mode is
    /// set, the hardware error (if wired and active) perturbs the matmul output before the bias,
    /// and the LoRA term reads the unquantized input.
    ///
    /// # Shapes
    /// - `x`: `[..., d_input]`
    /// - output: `[..., d_output]`
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let [d_output, d_input] = [self.d_output(), self.d_input()];
        let mut out_dims = x.dims();
        assert_eq!(
            out_dims[D - 1],
            d_input,
            "QLinear expects {d_input} input features, got {:?}",
            out_dims
        );
        out_dims[D - 1] = d_output;
        let rows = x.shape().num_elements() / d_input;
        let x = x.reshape([rows, d_input]);
        if let Some(recorder) = &self.hooks.recorder {
            recorder.record(&x);
        }
        let xq = match self.hooks.quant.quant() {
            Some(q) => q.quantize_input(x.clone()),
            None => x.clone(),
        };
        let y = match (&self.packed, &self.weight) {
            (Some(packed), _) => packed_linear(xq, packed),
            (None, Some(weight)) => {
                crate::ops::linear(xq, self.hooks.quant.effective(weight.val()))
            }
            (None, None) => unreachable!("a QLinear holds a latent or a packed weight"),
        };
        let y = match &self.hooks.noise {
            Some(noise) => noise.apply(y),
            None => y,
        };
        let y = match &self.bias {
            Some(b) => crate::ops::add_bias(y, b.val()),
            None => y,
        };
        let y = match &self.lora {
            Some(lora) => crate::ops::add(y, lora.forward(x)),
            None => y,
        };
        y.reshape(out_dims)
    }

    /// The quantizer of this projection, if a quantized mode is set.
    pub fn quantization(&self) -> Option<&LinearQuant> {
        self.hooks.quant.quant()
    }

    /// Recomputes the cached `Q(W)` from the current weight (see [`WeightQuantState`]).
    /// A packed layer has no cache: its codes are the quantized weight.
    pub fn refresh_quantized_weight(mut self) -> Self {
        if let Some(weight) = &self.weight {
            let w = weight.val();
            self.hooks.quant.refresh(&w);
        }
        self
    }

    /// `[d_output, d_input]`.
    pub fn dims(&self) -> [usize; 2] {
        match (&self.packed, &self.weight) {
            (Some(p), _) => p.dims(),
            (None, Some(w)) => w.lazy_shape().dims::<2>(),
            (None, None) => unreachable!("a QLinear holds a latent or a packed weight"),
        }
    }

    /// Input features.
    pub fn d_input(&self) -> usize {
        self.dims()[1]
    }

    /// Output features.
    pub fn d_output(&self) -> usize {
        self.dims()[0]
    }

    /// Bytes the weight occupies: 4 per element for a latent f32 weight (and 4 more for a cached
    /// `Q(W)`), the codes and scales of a packed one.
    pub fn weight_bytes(&self) -> usize {
        let [o, i] = self.dims();
        match &self.packed {
            Some(p) => p.storage_bytes(),
            None => 4 * o * i * (1 + usize::from(self.hooks.quant.is_cached())),
        }
    }
}

/// Whether `packed` serves a projection quantized with `weights`: codes made with that spec, or
/// for an unquantized projection (`None`) f32 values or BF16 codes (bf16 storage).
pub fn check_packed_spec(
    packed: &PackedWeight,
    weights: Option<&QuantSpec>,
) -> Result<(), FormatError> {
    let ok = match (weights, packed.spec()) {
        (Some(w), Some(p)) => w == p,
        (Some(_), None) => false,
        (None, p) => p.is_none_or(|p| p.format == QuantFormat::Bf16),
    };
    if ok {
        Ok(())
    } else {
        Err(FormatError::PackedWeight {
            what: format!("a weight held as {}", packed.label()),
            reason: format!(
                "the projection is quantized as {}; packed codes cannot be re-quantized (load the \
                 model with its latent weights: model.base_storage = \"latent\")",
                weights.map_or("bf16 (none)".to_string(), |w| w.label())
            ),
        })
    }
}

#[cfg(test)]
#[allow(deprecated)] // Device::ndarray: deprecated upstream, still the CPU reference backend.
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    #[test]
    fn forward_is_x_wt_plus_b() {
        let device = Device::ndarray();
        let layer = QLinear::new(
            Param::from_data(
                TensorData::new(vec![1.0f32, 2.0, 3.0, -1.0, 0.5, 0.0], [2, 3]),
                &device,
            ),
            Some(Param::from_data(
                TensorData::new(vec![0.25f32, -0.5], [2]),
                &device,
            )),
        );
        assert_eq!((layer.d_output(), layer.d_input()), (2, 3));
        let x = Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, 1.0, 1.0, 2.0, 0.0, -1.0], [2, 3]),
            &device,
        );
        let y = layer.forward(x).into_data().to_vec::<f32>().unwrap();
        // Row 1: [1+2+3, -1+0.5+0] + b; row 2: [2-3, -2+0] + b.
        assert_eq!(y, vec![6.25, -1.0, -0.75, -2.5]);
    }

    #[test]
    fn both_matmul_orientations_agree() {
        let device = Device::ndarray();
        let layer = QLinearConfig::new(48, 40)
            .with_bias(true)
            .with_init_std(0.5)
            .init(&device);
        let layer = QLinear {
            bias: layer.bias.map(|b| b.map(|t| t + 0.25)),
            ..layer
        };
        // 2 rows take (W x^T)^T, 64 rows take x W^T; row r of both batches is the same vector.
        let rows: Vec<f32> = (0..64 * 48)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
            .collect();
        let many = Tensor::<3>::from_data(TensorData::new(rows.clone(), [4, 16, 48]), &device);
        let few = Tensor::<3>::from_data(
            TensorData::new(rows[..2 * 48].to_vec(), [1, 2, 48]),
            &device,
        );
        let y_many = layer.forward(many).into_data().to_vec::<f32>().unwrap();
        let y_few = layer.forward(few).into_data().to_vec::<f32>().unwrap();
        // A plain loop is the reference.
        let w = layer.latent().val().into_data().to_vec::<f32>().unwrap();
        let b = layer
            .bias
            .as_ref()
            .unwrap()
            .val()
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        for r in 0..64 {
            for o in 0..40 {
                let want: f32 = b[o]
                    + (0..48)
                        .map(|i| rows[r * 48 + i] * w[o * 48 + i])
                        .sum::<f32>();
                assert!((y_many[r * 40 + o] - want).abs() < 1e-4, "row {r} out {o}");
                if r < 2 {
                    assert!((y_few[r * 40 + o] - want).abs() < 1e-4, "row {r} out {o}");
                }
            }
        }
    }

    #[test]
    fn init_shapes_and_statistics() {
        let device = Device::ndarray();
        let layer = QLinearConfig::new(256, 128)
            .with_bias(true)
            .with_init_std(0.1)
            .init(&device);
        assert_eq!(layer.dims(), [128, 256]);
        let w = layer.latent().val().into_data().to_vec::<f32>().unwrap();
        let n = w.len() as f64;
        let mean = w.iter().map(|&v| v as f64).sum::<f64>() / n;
        let std = (w.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
        assert!(
            mean.abs() < 0.005 && (std - 0.1).abs() < 0.005,
            "{mean} {std}"
        );
        let b = layer
            .bias
            .unwrap()
            .val()
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        assert!(b.iter().all(|&v| v == 0.0));
    }
}
