//! The SwiGLU feed-forward block (Shazeer, "GLU Variants Improve Transformer", 2020) of Qwen2.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::linear::{QLinear, QLinearConfig};

/// Configuration of an [`Mlp`].
#[derive(Config, Debug)]
pub struct MlpConfig {
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the gated hidden layer.
    pub intermediate_size: usize,
    /// Std of the weight initialization.
    #[config(default = 0.02)]
    pub init_std: f64,
}

/// `down(silu(gate(x)) * up(x))`, no biases.
#[derive(Module, Debug)]
pub struct Mlp {
    /// `[intermediate, hidden]`.
    pub gate_proj: QLinear,
    /// `[intermediate, hidden]`.
    pub up_proj: QLinear,
    /// `[hidden, intermediate]`.
    pub down_proj: QLinear,
}

impl MlpConfig {
    /// The three projections.
    pub fn init(&self, device: &Device) -> Mlp {
        let proj = |d_in: usize, d_out: usize| {
            QLinearConfig::new(d_in, d_out)
                .with_init_std(self.init_std)
                .init(device)
        };
        Mlp {
            gate_proj: proj(self.hidden_size, self.intermediate_size),
            up_proj: proj(self.hidden_size, self.intermediate_size),
            down_proj: proj(self.intermediate_size, self.hidden_size),
        }
    }
}

impl Mlp {
    /// # Shapes
    /// - `x`: `[batch, seq, hidden]`
    /// - output: `[batch, seq, hidden]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let gate = self.gate_proj.forward(x.clone());
        let up = self.up_proj.forward(x);
        self.down_proj.forward(crate::ops::swiglu(gate, up))
    }
}
