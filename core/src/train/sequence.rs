//! Teacher-forced batches of prompt + response sequences and the per-token log-probabilities of
//! the responses: the training side of GRPO (log-probs of the training policy) and of supervised
//! pretraining.
//!
//! Layout (`[batch, P + R]`): each prompt is left-padded to the widest prompt `P`, so every
//! response starts in column `P`; responses are right-padded to `R` columns. Left padding is
//! masked by [`Padding`]; right padding comes after every real token, so causal attention never
//! lets a real token see it. Response token `j` (column `P + j`) is predicted by the logits of
//! column `P + j - 1`.
//!
//! Shared prompts: a GRPO batch holds every prompt `n` times. When rows repeat a prompt, the
//! batch also keeps the distinct prompts, and [`response_logprobs`] runs them once: the prompt
//! pass fills a KV cache, whose rows are then repeated for the responses, so the prompt tokens
//! cost one forward (and backward) per group instead of `n`. The result is the same function of
//! the weights (every op is per row or per token; the attention reads the same keys), and the
//! gradient reaches the prompt positions through the repeated cache rows.

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
    /// The distinct prompts when rows share them (`None`: every row has its own).
    pub shared: Option<SharedPrompts>,
}

/// The distinct prompts of a batch whose rows repeat them.
#[derive(Clone, Debug)]
pub struct SharedPrompts {
    /// `[groups, P]` the distinct prompts, left-padded to `P`.
    pub ids: Tensor<2, Int>,
    /// Their left padding.
    pub padding: Padding,
    /// `[batch]`: the distinct prompt of each row.
    pub row_prompt: Tensor<1, Int>,
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
        // Distinct prompts in order of first appearance, and each row's.
        let mut distinct: Vec<&Vec<u32>> = Vec::new();
        let mut index = std::collections::HashMap::new();
        let row_prompt: Vec<i64> = prompts
            .iter()
            .map(|p| {
                *index.entry(p).or_insert_with(|| {
                    distinct.push(p);
                    distinct.len() as i64 - 1
                })
            })
            .collect();
        let shared = (distinct.len() < batch).then(|| {
            let g = distinct.len();
            let mut ids = Vec::with_capacity(g * p_width);
            for p in &distinct {
                ids.extend(std::iter::repeat_n(pad as i64, p_width - p.len()));
                ids.extend(p.iter().map(|&t| t as i64));
            }
            let lens: Vec<usize> = distinct.iter().map(|p| p.len()).collect();
            SharedPrompts {
                ids: Tensor::from_data(TensorData::new(ids, [g, p_width]), device),
                padding: Padding::left(lens.iter().map(|&n| p_width - n).collect()),
                row_prompt: Tensor::from_data(TensorData::new(row_prompt, [batch]), device),
            }
        });
        Self {
            ids: Tensor::from_data(TensorData::new(ids, [batch, p_width + r_width]), device),
            padding: Padding::from_lengths(&lengths),
            prompt_width: p_width,
            response_ids: Tensor::from_data(TensorData::new(resp, [batch, r_width]), device),
            response_mask: Tensor::from_data(TensorData::new(mask, [batch, r_width]), device),
            response_lengths: responses.iter().map(Vec::len).collect(),
            shared,
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
    let logits = match &batch.shared {
        None => {
            let logits = model.forward(batch.ids.clone(), &batch.padding, None);
            let vocab = logits.dims()[2];
            logits.slice([0..b, p - 1..p - 1 + r, 0..vocab])
        }
        Some(shared) => shared_prompt_logits(model, batch, shared),
    };
    crate::ops::token_logprobs(logits, batch.response_ids.clone(), with_entropy)
}

/// The logits that predict each response token, `[batch, R, vocab]`, with every distinct prompt
/// run once (module docs).
fn shared_prompt_logits(
    model: &Qwen2ForCausalLM,
    batch: &SequenceBatch,
    shared: &SharedPrompts,
) -> Tensor<3> {
    let (p, r) = (batch.prompt_width, batch.response_width());
    let mut cache = model.new_cache(p + r);
    let hidden = model.forward_hidden(shared.ids.clone(), &shared.padding, Some(&mut cache));
    // The last prompt position predicts the first response token.
    let first = model
        .logits(hidden.narrow(1, p - 1, 1))
        .select(0, shared.row_prompt.clone());
    if r == 1 {
        return first;
    }
    cache.retain_rows(&shared.row_prompt);
    let rest = model.forward(
        batch.response_ids.clone().narrow(1, 0, r - 1),
        &batch.padding,
        Some(&mut cache),
    );
    Tensor::cat(vec![first, rest], 1)
}

/// Mean of `values` over the mask's ones (`sum(values * mask) / sum(mask)`; 0 for an empty mask).
pub fn masked_mean(values: Tensor<2>, mask: Tensor<2>) -> Tensor<1> {
    let count = mask.clone().sum().clamp_min(1.0);
    (values * mask).sum() / count
}

#[cfg(test)]
#[allow(deprecated)] // Device::ndarray: deprecated upstream, still the CPU reference backend.
mod tests {
    use super::*;
    use crate::model::Qwen2Config;
    use burn::module::{Module, ModuleVisitor, Param};

    /// Every parameter's gradient, flattened, in visiting order.
    struct Grads<'g>(&'g burn::tensor::Gradients, Vec<Vec<f32>>);

    impl ModuleVisitor for Grads<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let g = param.val().grad(self.0).map_or_else(Vec::new, |g| {
                g.into_data().to_vec::<f32>().expect("f32 gradient")
            });
            self.1.push(g);
        }
    }

    #[test]
    fn shared_prompts_give_the_same_logprobs_and_gradients() {
        let device = Device::ndarray().autodiff();
        let model = Qwen2Config::new(32, 16, 24, 2, 4, 2).init(&device);
        // Two prompts of different lengths, each answered three times; responses of 1..5 tokens.
        let (a, b) = (vec![3u32, 7, 9, 11], vec![5u32, 6]);
        let prompts = vec![a.clone(), a.clone(), a, b.clone(), b.clone(), b];
        let responses: Vec<Vec<u32>> = vec![
            vec![1, 2, 3],
            vec![4],
            vec![5, 6, 7, 8, 9],
            vec![10, 11],
            vec![12, 13, 14],
            vec![15, 16, 17, 18],
        ];
        let shared = SequenceBatch::new(&prompts, &responses, 0, &device);
        assert!(shared.shared.is_some());
        let mut plain = shared.clone();
        plain.shared = None;
        let run = |batch: &SequenceBatch| {
            let (logp, entropy) = response_logprobs(&model, batch, true);
            let mask = batch.response_mask.clone();
            let values = (logp.clone() * mask.clone())
                .into_data()
                .to_vec::<f32>()
                .unwrap();
            let ent = (entropy.unwrap() * mask.clone())
                .into_data()
                .to_vec::<f32>()
                .unwrap();
            let grads = (logp * mask).sum().backward();
            let mut visitor = Grads(&grads, Vec::new());
            model.visit(&mut visitor);
            (values, ent, visitor.1)
        };
        let (v1, e1, g1) = run(&shared);
        let (v2, e2, g2) = run(&plain);
        for (x, y) in v1.iter().zip(&v2).chain(e1.iter().zip(&e2)) {
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
        }
        assert_eq!(g1.len(), g2.len());
        let mut compared = 0;
        for (a, b) in g1.iter().zip(&g2) {
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() <= 1e-5 + 1e-4 * y.abs(), "{x} vs {y}");
                compared += 1;
            }
        }
        assert!(compared > 1000, "only {compared} gradient values compared");
    }
}
