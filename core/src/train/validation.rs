//! The run's held-out evaluation: at step 0, every `eval.test_freq` steps and at the final step,
//! greedy and noise-free, in the quantization mode that is trained (`val/*`); with `eval.bf16`
//! also the same weights without fake quantization (`val_bf16/accuracy`, never the run's
//! score). The generation batches are shared among the workers of a data-parallel run.

use burn::module::Module;

use super::collective::all_gather_json;
use super::error::{Context, TrainError};
use super::evaluate::{EvalPart, EvalResult, evaluate_part};
use super::setup::RunContext;
use crate::model::Qwen2ForCausalLM;
use crate::qat::{QuantConfig, QuantMode};
use crate::run::metric_keys::{
    VAL_ACCURACY, VAL_ACCURACY_FLEXIBLE, VAL_BF16_ACCURACY, VAL_RESPONSE_LENGTH,
};
use crate::run::{RunDir, StepMetrics};

/// Evaluates `policy` (without noise) at `step` and logs the `val/*` metrics.
pub(super) fn validate(
    ctx: &RunContext,
    policy: &Qwen2ForCausalLM,
    dir: &mut RunDir,
    step: u64,
) -> Result<EvalResult, TrainError> {
    let config = ctx.config;
    let model = policy.valid();
    let result = evaluate_sharded(ctx, &model)?;
    let mut metrics = StepMetrics::new();
    metrics.insert(VAL_ACCURACY.into(), result.accuracy);
    metrics.insert(VAL_ACCURACY_FLEXIBLE.into(), result.accuracy_flexible);
    metrics.insert(VAL_RESPONSE_LENGTH.into(), result.mean_response_tokens);
    if config.eval.bf16 && config.quant.mode != QuantMode::Bf16 {
        let bf16 = model
            .with_quantization(&QuantConfig::default())
            .context("BF16 evaluation")?;
        let r = evaluate_sharded(ctx, &bf16)?;
        metrics.insert(VAL_BF16_ACCURACY.into(), r.accuracy);
    }
    dir.log_step(step, &metrics)?;
    Ok(result)
}

/// The evaluation of `model` on the run's evaluation problems, the generation batches shared
/// among the workers (every worker returns the whole result).
fn evaluate_sharded(ctx: &RunContext, model: &Qwen2ForCausalLM) -> Result<EvalResult, TrainError> {
    let c = ctx.collective;
    let problems = ctx.eval_problems();
    let part = evaluate_part(
        model,
        &ctx.tokenizer,
        problems,
        &ctx.generation,
        ctx.config.eval.batch_size,
        (c.rank(), c.world_size()),
        |_| {},
    )?;
    let parts = all_gather_json(c, &part);
    Ok(EvalPart::merge(&parts, problems.len()))
}
