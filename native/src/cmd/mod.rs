//! One module per subcommand: its clap `Args` and a `run` function.

pub mod bench;
pub mod eval;
pub mod export;
pub mod pretrain;
pub mod quant_error;
pub mod quantize;
pub mod random_model;
pub mod report;
pub mod schedule;
pub mod serve;
pub mod srdd;
pub mod train;
