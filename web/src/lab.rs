//! The quantization lab: tensors (generated or uploaded), the CPU path, and the GPU kernel plan
//! that `www/gpu.js` follows. Plain Rust with typed results; `lib.rs` wraps it for JavaScript.

use aqn_core::distributions::Distribution;
use aqn_core::error_stats::{BlockPartial, ErrorStats, StatsError, stats_grid};
use aqn_core::formats::QuantSpec;
use aqn_core::npy_file::read_npy;
use aqn_core::tensor_file::{HostTensor, TensorFile};
use aqn_shaders::KernelPlan;
use serde::Serialize;

/// An error for the page: the core's message, shown inline.
pub type LabResult<T> = Result<T, String>;

fn msg(e: impl ToString) -> String {
    e.to_string()
}

/// Parses a seed written as an unsigned 64-bit integer.
pub fn parse_seed(seed: &str) -> LabResult<u64> {
    seed.trim()
        .parse::<u64>()
        .map_err(|_| format!("seed `{seed}` is not an unsigned 64-bit integer"))
}

/// A generated tensor, the same as `aqn-native quant-error --generate DIST --seed SEED`.
pub fn generate(dist: &str, len: usize, seed: &str) -> LabResult<Vec<f32>> {
    let d: Distribution = dist.parse().map_err(msg)?;
    d.generate(len, parse_seed(seed)?).map_err(msg)
}

/// The canonical label of a distribution spec (the CLI's tensor name).
pub fn distribution_label(dist: &str) -> LabResult<String> {
    Ok(dist.parse::<Distribution>().map_err(msg)?.label())
}

/// One tensor of an uploaded file.
#[derive(Serialize, Debug)]
pub struct TensorInfo {
    /// Its name.
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its dtype, or the reason it cannot be read.
    pub dtype: String,
    /// Whether it is a float tensor aqn reads.
    pub readable: bool,
}

fn is_npy(file_name: &str, bytes: &[u8]) -> bool {
    file_name.to_ascii_lowercase().ends_with(".npy")
        || bytes.starts_with(aqn_core::npy_file::NPY_MAGIC)
}

/// The tensors of an uploaded `.safetensors` or `.npy` file.
pub fn list_tensors(bytes: &[u8], file_name: &str) -> LabResult<Vec<TensorInfo>> {
    if is_npy(file_name, bytes) {
        let t = read_npy(bytes, file_name, file_name).map_err(msg)?;
        return Ok(vec![TensorInfo {
            name: file_name.to_string(),
            shape: t.shape,
            dtype: t.dtype.name().to_string(),
            readable: true,
        }]);
    }
    let file = TensorFile::parse(bytes, file_name).map_err(msg)?;
    Ok(file
        .names()
        .iter()
        .map(|name| match (file.float_dtype(name), file.view(name)) {
            (Ok(dtype), Ok(view)) => TensorInfo {
                name: name.clone(),
                shape: view.shape().to_vec(),
                dtype: dtype.name().to_string(),
                readable: true,
            },
            (Err(e), _) | (_, Err(e)) => TensorInfo {
                name: name.clone(),
                shape: Vec::new(),
                dtype: e.to_string(),
                readable: false,
            },
        })
        .collect())
}

/// Reads one tensor of an uploaded file into f32.
pub fn read_tensor(bytes: &[u8], file_name: &str, tensor: &str) -> LabResult<HostTensor> {
    let t = if is_npy(file_name, bytes) {
        read_npy(bytes, file_name, tensor).map_err(msg)?
    } else {
        TensorFile::parse(bytes, file_name)
            .map_err(msg)?
            .read(tensor)
            .map_err(msg)?
    };
    if t.data.is_empty() {
        return Err(format!("tensor `{tensor}` of {file_name} has no elements"));
    }
    Ok(t)
}

/// The row length (quantization axis = last) of a shape: its last dimension, 1 for a scalar.
pub fn row_len_of(shape: &[usize]) -> usize {
    shape.last().copied().unwrap_or(1).max(1)
}

/// The CPU path: fake quantization and both statistics passes in wasm.
pub fn cpu_run(
    spec: &str,
    x: &[f32],
    row_len: usize,
    bins: usize,
) -> LabResult<(Vec<f32>, ErrorStats)> {
    let spec: QuantSpec = spec.parse().map_err(msg)?;
    let q = spec.fake_quantize_vec(x, row_len).map_err(msg)?;
    let grid = stats_grid(&spec, x.len(), row_len).map_err(msg)?;
    let stats = ErrorStats::compute(&grid, x, &q, bins).map_err(msg)?;
    Ok((q, stats))
}

/// The GPU kernel plan of a tensor, or why it runs on the CPU.
pub fn gpu_plan(spec: &str, len: usize, row_len: usize, bins: usize) -> LabResult<KernelPlan> {
    let spec: QuantSpec = spec.parse().map_err(msg)?;
    KernelPlan::new(&spec, len, row_len, bins).map_err(msg)
}

/// Finishes the GPU path from the words the kernels wrote.
pub fn gpu_finish(
    plan: &KernelPlan,
    partial_words: &[u32],
    counts: Vec<u32>,
) -> LabResult<ErrorStats> {
    let partials = BlockPartial::from_word_slice(partial_words).map_err(msg)?;
    ErrorStats::from_partials(plan.grid(), &partials, counts).map_err(|e: StatsError| e.to_string())
}

/// FNV-1a (64-bit) over the bits of `q`, every NaN as 0x7fc00000: equal digests mean
/// bit-identical tensors (NaN payloads aside).
pub fn digest(q: &[f32]) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for v in q {
        let bits = if v.is_nan() { 0x7fc0_0000 } else { v.to_bits() };
        for b in bits.to_le_bytes() {
            h = (h ^ b as u64).wrapping_mul(PRIME);
        }
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_path_matches_the_cli_generator() {
        let x = generate("normal", 4096, "0").unwrap();
        assert_eq!(x, Distribution::STANDARD_NORMAL.generate(4096, 0).unwrap());
        let (q, stats) = cpu_run("mxfp4", &x, 1024, 64).unwrap();
        assert_eq!(q.len(), 4096);
        assert_eq!(stats.metrics.count, 4096);
        assert_eq!(stats.block_error.len(), 4 * 32);
        assert_eq!(
            parse_seed("x").unwrap_err(),
            "seed `x` is not an unsigned 64-bit integer"
        );
        assert!(
            cpu_run("mxfp5", &x, 1024, 64)
                .unwrap_err()
                .contains("unknown format `mxfp5`")
        );
    }

    #[test]
    fn gpu_plan_refuses_what_the_kernels_do_not_cover() {
        assert!(gpu_plan("nvfp4", 4096, 1024, 64).is_ok());
        let err = gpu_plan("nvfp4:sr=1", 4096, 1024, 64).unwrap_err();
        assert!(err.contains("runs on the CPU only"), "{err}");
    }

    #[test]
    fn malformed_uploads_give_the_core_message() {
        let err = list_tensors(b"garbage that is not a tensor file", "w.safetensors").unwrap_err();
        assert!(
            err.starts_with("w.safetensors is not a valid safetensors file"),
            "{err}"
        );
        let err = list_tensors(b"\x93NUMPY\x01\x00", "w.npy").unwrap_err();
        assert!(err.starts_with("w.npy is not a valid .npy file"), "{err}");
    }

    #[test]
    fn digest_is_bitwise() {
        assert_eq!(
            digest(&[1.0, f32::NAN]),
            digest(&[1.0, f32::from_bits(0xffc0_0001)])
        );
        assert_ne!(digest(&[0.0]), digest(&[-0.0]));
    }
}
