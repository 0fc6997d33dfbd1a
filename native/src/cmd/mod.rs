//! One module per subcommand: its clap `Args` and a `run` function.

pub mod quant_error;
pub mod quantize;
pub mod schedule;
pub mod serve;
