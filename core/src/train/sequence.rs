//! Teacher-forced batches of prompt + response sequences and the per-token log-probabilities of
//! the responses: the training side of GRPO (log-probs of the training policy) and of supervised
//! pretraining.
//!
//! Layout (`[batch, P + R]`): each prompt is left-padded to the widest prompt `P`, so every
//! response starts in column `P`; responses are right-padded to `R` columns. Left padding is
//! masked by [`Padding`]; right padding comes after every real token, so causal attention never
//! lets a real token see it. Response token `j` (column `P + j`) is predicted by the logits of
//! column `P + j - 1`.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::model::{Padding, Qwen2ForCausalLM};

/// A batch of prompt + response sequences laid out for one teacher-forced forward pass.
#[derive(Clone, Debug)]
pub struct SequenceBatch {
    /// `[batch, P + R]` token ids.
    pub ids: Tensor<2, Int>,
    /// Left padding of each row.
    pub padding: Padding,
    /// `P`: the width of the left-padded prompts.
    pub prompt_width: usize,
    /// `[batch, R]` response token ids (`pad` after a response's end).
    pub response_ids: Tensor<2, Int>,
    /// `[batch, R]`: 1 on real response tokens, 0 on padding.
    pub response_mask: Tensor<2>,
    /// Real response tokens per row.
    pub response_lengths: Vec<usize>,
}

impl SequenceBatch {
    /// Lays out `prompts[b] ++ responses[b]` (responses given without padding) with `pad`.
    ///
    /// # Panics
    /// If the batch is empty, the lengths of `prompts` and `responses` differ, or a prompt is
    /// empty (callers build these from tokenized data; an empty prompt has no position to predict
    /// the first response token from).
    pub fn new(prompts: &[Vec<u32>], responses: &[Vec<u32>], pad: u32, device: &Device) -> Self {
        assert!(
            !prompts.is_empty() && prompts.len() == responses.len(),
            "SequenceBatch: {} prompts, {} responses",
            prompts.len(),
            responses.len()
        );
        assert!(
            prompts.iter().all(|p| !p.is_empty()),
            "SequenceBatch: empty prompt"
        );
        let batch = prompts.len();
        let p_width = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let r_width = responses.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let mut ids = Vec::with_capacity(batch * (p_width + r_width));
        let mut resp = Vec::with_capacity(batch * r_width);
        let mut mask = Vec::with_capacity(batch * r_width);
        for (p, r) in prompts.iter().zip(responses) {
            ids.extend(std::iter::repeat_n(pad as i64, p_width - p.len()));
            ids.extend(p.iter().map(|&t| t as i64));
            for j in 0..r_width {
                let t = r.get(j).copied();
                ids.push(t.unwrap_or(pad) as i64);
                resp.push(t.unwrap_or(pad) as i64);
                mask.push(if t.is_some() { 1.0f32 } else { 0.0 });
            }
        }
        let lengths: Vec<usize> = prompts.iter().map(Vec::len).collect();
        Self {
            ids: Tensor::from_data(TensorData::new(ids, [batch, p_width + r_width]), device),
            padding: Padding::from_lengths(&lengths),
            prompt_width: p_width,
            response_ids: Tensor::from_data(TensorData::new(resp, [batch, r_width]), device),
            response_mask: Tensor::from_data(TensorData::new(mask, [batch, r_width]), device),
            response_lengths: responses.iter().map(Vec::len).collect(),
        }
    }

    /// Rows.
    pub fn batch_size(&self) -> usize {
        self.padding.batch_size()
    }

    /// `R`: response columns.
    pub fn response_width(&self) -> usize {
        self.response_ids.dims()[1]
    }
}

/// Per-token log-probabilities of the responses under `model` (temperature 1), and optionally
/// the entropy of the model's distribution at each response position.
///
/// # Shapes
/// - output: `[batch, R]` (and `[batch, R]`); values on padded positions are meaningless, mask
///   them with [`SequenceBatch::response_mask`].
pub fn response_logprobs(
    model: &Qwen2ForCausalLM,
    batch: &SequenceBatch,
    with_entropy: bool,
) -> (Tensor<2>, Option<Tensor<2>>) {
    let [b, _] = batch.ids.dims();
    let (p, r) = (batch.prompt_width, batch.response_width());
    let logits = model.forward(batch.ids.clone(), &batch.padding, None);
    let vocab = logits.dims()[2];
    let logits = logits.slice([0..b, p - 1..p - 1 + r, 0..vocab]);
    let logp_all = log_softmax(logits, 2);
    let logp = logp_all
        .clone()
        .gather(2, batch.response_ids.clone().unsqueeze_dim::<3>(2))
        .squeeze_dim::<2>(2);
    let entropy = with_entropy.then(|| {
        (logp_all.clone().exp() * logp_all)
            .sum_dim(2)
            .squeeze_dim::<2>(2)
            .neg()
    });
    (logp, entropy)
}

/// Mean of `values` over the mask's ones (`sum(values * mask) / sum(mask)`; 0 for an empty mask).
pub fn masked_mean(values: Tensor<2>, mask: Tensor<2>) -> Tensor<1> {
    let count = mask.clone().sum().clamp_min(1.0);
    (values * mask).sum() / count
}
