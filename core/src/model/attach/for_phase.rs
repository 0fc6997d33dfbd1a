//! The rollout and training models of one optimizer step, made from the same weights.
//!
//! The trainer keeps one model (the weights the optimizer updates) and, at every step, makes
//! `model.for_phase(Phase::Rollout, step)` for generation and
//! `model.for_phase(Phase::Training, step)` for log-probabilities and the update. Both are cheap
//! (Burn modules are values whose tensors are reference-counted) and share the weights, so the
//! gradients of the training model (same parameter ids) update `model` through the optimizer.

use burn::module::Module;

use crate::model::Qwen2ForCausalLM;
use crate::phase::Phase;

impl Qwen2ForCausalLM {
    /// The model for `phase` at optimizer step `step` (1-based):
    ///
    /// - rollout: an inference copy ([`Module::valid`]: no autodiff graph, nothing requires
    ///   gradients, so LoRA dropout is off) with every quantized weight quantized once for the
    ///   whole rollout;
    /// - training: the model itself (gradients flow to its trainable parameters), LoRA dropout on
    ///   with the masks of `step`, trainable weights quantized with the STE at every forward and
    ///   frozen ones once;
    /// - in both, exactly the hardware-error sites configured for this phase are armed, keyed by
    ///   `step` and a fresh call counter (so a phase model replays the same noise when made
    ///   again for the same step: make one per phase and step and use it for all its forwards).
    ///
    /// AQN is applied separately (`crate::aqn::Aqn::apply`), before or after this call.
    pub fn for_phase(&self, phase: Phase, step: u64) -> Self {
        let model = match phase {
            Phase::Rollout => self.valid(),
            Phase::Training => self.clone(),
        };
        model
            .map_linears(|_, mut lin| {
                if let Some(n) = &lin.hooks.noise {
                    lin.hooks.noise = Some(n.activate(phase, step));
                }
                if let Some(l) = &lin.lora {
                    lin.lora = Some(l.for_step(step));
                }
                lin.refresh_quantized_weight()
            })
            .map_attention(|_, mut attn| {
                attn.hooks.scores = attn.hooks.scores.map(|n| n.activate(phase, step));
                attn.hooks.context = attn.hooks.context.map(|n| n.activate(phase, step));
                attn
            })
            .refresh_embedding_quant()
    }
}
