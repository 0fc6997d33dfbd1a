//! Tasks and rewards of docs/spec.md section 7: problems (the built-in synthetic task, GSM8K jsonl,
//! verl parquet), the GSM8K prompt, and the rewards (verl's GSM8K scorer, DAPO's +1/-1 with
//! overlong shaping).
//!
//! Pure Rust without Burn (builds for wasm32); the parquet reader is behind the `parquet`
//! feature.
//!
//! | file | concept |
//! |---|---|
//! | [`problem`] | [`Problem`] |
//! | [`dataset`] | the GSM8K prompt template, the jsonl loader and the format dispatch |
//! | [`verl_parquet`] | verl's parquet schema (feature `parquet`) |
//! | [`synthetic`] | the seeded synthetic word problems, levels, splits and vocabulary |
//! | [`gsm8k_reward`] | verl's GSM8K scorer (strict / flexible) |
//! | [`dapo_reward`] | DAPO's +1/-1 reward and overlong shaping |
//! | [`reward`] | [`RewardKind`] and [`RewardConfig`]: the run's reward function |

pub mod dapo_reward;
pub mod dataset;
pub mod error;
pub mod gsm8k_reward;
pub mod problem;
pub mod reward;
pub mod synthetic;
#[cfg(feature = "parquet")]
pub mod verl_parquet;

pub use dapo_reward::{OverlongBufferConfig, compute_dapo_score};
pub use dataset::{
    DataFormat, GSM8K_INSTRUCTION, GSM8K_SOURCE, PromptTemplate, gsm8k_ground_truth, gsm8k_prompt,
    load_jsonl, load_problems, parse_jsonl,
};
pub use error::TaskError;
pub use gsm8k_reward::{ExtractMethod, compute_gsm8k_score, extract_solution};
pub use problem::Problem;
pub use reward::{RewardConfig, RewardKind, RewardOutcome};
pub use synthetic::{
    Difficulty, SYNTHETIC_SOURCE, Split, SyntheticConfig, SyntheticProblem, generate_problem,
    split_of, vocabulary,
};
