//! A sink that a projection writes its input into during a forward pass (SRDD's
//! `--what linear-inputs`). Values are copied to the host as they are recorded.

use std::sync::{Arc, Mutex};

use burn::tensor::Tensor;

/// One recorded input: its shape and values.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedInput {
    /// `[rows, in]`.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub values: Vec<f32>,
}

/// Shared by a projection (which records) and the caller (which takes the records). Clones share
/// the same sink.
#[derive(Clone, Debug, Default)]
pub struct InputRecorder {
    records: Arc<Mutex<Vec<RecordedInput>>>,
}

impl InputRecorder {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// Copies `x` to the host and appends it.
    ///
    /// # Panics
    /// If the tensor's data cannot be read as f32 (a float tensor always can) or another thread
    /// panicked while holding the sink.
    pub fn record(&self, x: &Tensor<2>) {
        let shape = x.dims().to_vec();
        let values = x
            .clone()
            .detach()
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .expect("a float tensor converts to f32");
        self.records
            .lock()
            .expect("recorder not poisoned")
            .push(RecordedInput { shape, values });
    }

    /// Removes and returns everything recorded so far, in call order.
    pub fn take(&self) -> Vec<RecordedInput> {
        std::mem::take(&mut *self.records.lock().expect("recorder not poisoned"))
    }
}
