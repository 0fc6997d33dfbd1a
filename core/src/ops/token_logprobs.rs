//! The log-probability of each taken token and the entropy of each position's distribution,
//! from the logits (the policy's log-probs of GRPO/DAPO, docs/spec.md section 7).

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};

use super::fused;

/// The log-probability of each target token under `logits` (temperature 1), and optionally the
/// entropy of each position's distribution: one fused kernel on the CPU backend
/// ([`crate::cpu::token_logprobs`]), [`token_logprobs_reference`] elsewhere.
///
/// # Shapes
/// - `logits`: `[batch, positions, vocab]`, `targets`: `[batch, positions]`
/// - outputs: `[batch, positions]`
pub fn token_logprobs(
    logits: Tensor<3>,
    targets: Tensor<2, Int>,
    with_entropy: bool,
) -> (Tensor<2>, Option<Tensor<2>>) {
    if !fused(&logits) {
        return token_logprobs_reference(logits, targets, with_entropy);
    }
    let ids: Vec<u32> = targets
        .into_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .expect("integer targets")
        .into_iter()
        .map(|t| t as u32)
        .collect();
    let both = crate::cpu::token_logprobs(logits, std::sync::Arc::new(ids));
    let logp = both.clone().narrow(2, 0, 1).squeeze_dim::<2>(2);
    let entropy = with_entropy.then(|| both.narrow(2, 1, 1).squeeze_dim::<2>(2));
    (logp, entropy)
}

/// [`token_logprobs`] as composed tensor operations (`log_softmax`, `gather`, and
/// `-sum(exp(logp) logp)`): the plain reference of the fused kernel, and the path of every other
/// backend.
pub fn token_logprobs_reference(
    logits: Tensor<3>,
    targets: Tensor<2, Int>,
    with_entropy: bool,
) -> (Tensor<2>, Option<Tensor<2>>) {
    let logp_all = log_softmax(logits, 2);
    let logp = logp_all
        .clone()
        .gather(2, targets.unsqueeze_dim::<3>(2))
        .squeeze_dim::<2>(2);
    let entropy = with_entropy.then(|| {
        (logp_all.clone().exp() * logp_all)
            .sum_dim(2)
            .squeeze_dim::<2>(2)
            .neg()
    });
    (logp, entropy)
}
