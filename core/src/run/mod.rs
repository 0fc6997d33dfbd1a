//! What a training run writes: TensorBoard event files (more to come: run folder, checkpoints).

pub mod tensorboard;
