//! Reading and writing tensors in safetensors files (HF checkpoints, quantized outputs).
//!
//! Float tensors of dtype F32, F16 and BF16 are read into f32 (exactly: every f16 and bf16 value
//! is an f32). The safetensors crate checks the header against the buffer (a truncated file, or a
//! header whose offsets or sizes lie, is refused); errors name the source and the tensor.

use core::fmt;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use thiserror::Error;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::non_finite::NonFiniteCounts;

/// Float dtypes aqn reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FloatDtype {
    /// IEEE single.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    Bf16,
}

impl FloatDtype {
    /// Every variant.
    pub const ALL: &'static [FloatDtype] = &[FloatDtype::F32, FloatDtype::F16, FloatDtype::Bf16];

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            FloatDtype::F32 => "f32",
            FloatDtype::F16 => "f16",
            FloatDtype::Bf16 => "bf16",
        }
    }

    fn from_safetensors(d: Dtype) -> Option<Self> {
        match d {
            Dtype::F32 => Some(FloatDtype::F32),
            Dtype::F16 => Some(FloatDtype::F16),
            Dtype::BF16 => Some(FloatDtype::Bf16),
            _ => None,
        }
    }

    fn to_safetensors(self) -> Dtype {
        match self {
            FloatDtype::F32 => Dtype::F32,
            FloatDtype::F16 => Dtype::F16,
            FloatDtype::Bf16 => Dtype::BF16,
        }
    }

    /// Encodes f32 values in this dtype (round to nearest even), little endian.
    pub fn encode(self, values: &[f32]) -> Vec<u8> {
        match self {
            FloatDtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            FloatDtype::F16 => values
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect(),
            FloatDtype::Bf16 => values
                .iter()
                .flat_map(|&v| crate::formats::bf16::f32_to_bf16_bits(v).to_le_bytes())
                .collect(),
        }
    }

    /// Decodes little-endian values of this dtype into f32.
    pub fn decode(self, bytes: &[u8]) -> Vec<f32> {
        match self {
            FloatDtype::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            FloatDtype::F16 => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            FloatDtype::Bf16 => bytes
                .chunks_exact(2)
                .map(|b| crate::formats::bf16::bf16_bits_to_f32(u16::from_le_bytes([b[0], b[1]])))
                .collect(),
        }
    }
}

impl fmt::Display for FloatDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl core::str::FromStr for FloatDtype {
    type Err = TensorFileError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(FloatDtype::F32),
            "f16" | "float16" => Ok(FloatDtype::F16),
            "bf16" | "bfloat16" => Ok(FloatDtype::Bf16),
            _ => Err(TensorFileError::UnknownDtype {
                value: s.to_string(),
            }),
        }
    }
}

/// Why a tensor file could not be read or written.
#[derive(Debug, Error)]
pub enum TensorFileError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Not a valid safetensors file (truncated, header too long or inconsistent with the data).
    #[error("{source_name} is not a valid safetensors file: {reason}")]
    Malformed {
        /// Where the bytes came from.
        source_name: String,
        /// What the parser found.
        reason: String,
    },
    /// A tensor whose dtype aqn does not read.
    #[error(
        "tensor `{tensor}` in {source_name} has dtype {dtype}; supported float dtypes: f32, f16, bf16"
    )]
    UnsupportedDtype {
        /// Where.
        source_name: String,
        /// The tensor.
        tensor: String,
        /// Its dtype.
        dtype: String,
    },
    /// A dtype name that is not one of f32, f16, bf16.
    #[error("unknown dtype `{value}`; valid choices: f32, f16, bf16")]
    UnknownDtype {
        /// The text.
        value: String,
    },
    /// A tensor that is not in the file.
    #[error("tensor `{tensor}` is not in {source_name}")]
    Missing {
        /// Where.
        source_name: String,
        /// The tensor.
        tensor: String,
    },
    /// Writing failed.
    #[error("cannot serialize safetensors: {0}")]
    Write(String),
    /// A tensor holding NaN or infinite values where finite numbers are required (a checkpoint
    /// being loaded into a model).
    #[error(
        "tensor `{tensor}` in {source_name} holds {counts} among its {elements} values; a model \
         with non-finite weights computes nothing meaningful"
    )]
    NonFinite {
        /// Where.
        source_name: String,
        /// The tensor.
        tensor: String,
        /// Its values.
        elements: usize,
        /// How many are NaN, +inf, -inf.
        counts: NonFiniteCounts,
    },
}

/// A float tensor read into f32.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    /// Its name in the file.
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its dtype in the file.
    pub dtype: FloatDtype,
    /// Its values, row-major.
    pub data: Vec<f32>,
}

/// A parsed safetensors buffer: names in file order, tensors decoded on demand.
pub struct TensorFile<'a> {
    source_name: String,
    inner: SafeTensors<'a>,
    names: Vec<String>,
    metadata: HashMap<String, String>,
}

impl<'a> TensorFile<'a> {
    /// Parses `bytes` (named `source_name` in errors).
    pub fn parse(bytes: &'a [u8], source_name: &str) -> Result<Self, TensorFileError> {
        let malformed = |e: safetensors::SafeTensorError| TensorFileError::Malformed {
            source_name: source_name.to_string(),
            reason: e.to_string(),
        };
        let (_, meta) = SafeTensors::read_metadata(bytes).map_err(malformed)?;
        let inner = SafeTensors::deserialize(bytes).map_err(malformed)?;
        // Names in data-offset order (the order the file stores them).
        let mut offsets: Vec<(usize, String)> = meta
            .tensors()
            .iter()
            .map(|(name, info)| (info.data_offsets.0, name.clone()))
            .collect();
        offsets.sort();
        Ok(Self {
            source_name: source_name.to_string(),
            names: offsets.into_iter().map(|(_, n)| n).collect(),
            metadata: meta.metadata().clone().unwrap_or_default(),
            inner,
        })
    }

    /// Tensor names in file order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The `__metadata__` map.
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    /// The raw view of a tensor.
    pub fn view(&self, name: &str) -> Result<TensorView<'a>, TensorFileError> {
        self.inner
            .tensor(name)
            .map_err(|_| TensorFileError::Missing {
                source_name: self.source_name.clone(),
                tensor: name.to_string(),
            })
    }

    /// The dtype of a tensor if it is a float dtype aqn reads.
    pub fn float_dtype(&self, name: &str) -> Result<FloatDtype, TensorFileError> {
        let view = self.view(name)?;
        FloatDtype::from_safetensors(view.dtype()).ok_or_else(|| {
            TensorFileError::UnsupportedDtype {
                source_name: self.source_name.clone(),
                tensor: name.to_string(),
                dtype: format!("{:?}", view.dtype()),
            }
        })
    }

    /// Reads a float tensor into f32.
    pub fn read(&self, name: &str) -> Result<HostTensor, TensorFileError> {
        let dtype = self.float_dtype(name)?;
        let view = self.view(name)?;
        Ok(HostTensor {
            name: name.to_string(),
            shape: view.shape().to_vec(),
            dtype,
            data: dtype.decode(view.data()),
        })
    }

    /// [`TensorFile::read`], refusing a tensor with any NaN or infinite value
    /// ([`TensorFileError::NonFinite`] names it and counts each kind).
    pub fn read_finite(&self, name: &str) -> Result<HostTensor, TensorFileError> {
        let t = self.read(name)?;
        let counts = t.non_finite();
        if !counts.is_clean() {
            return Err(TensorFileError::NonFinite {
                source_name: self.source_name.clone(),
                tensor: name.to_string(),
                elements: t.data.len(),
                counts,
            });
        }
        Ok(t)
    }
}

impl HostTensor {
    /// How many of its values are NaN, +inf, -inf.
    pub fn non_finite(&self) -> NonFiniteCounts {
        NonFiniteCounts::of(&self.data)
    }
}

/// Reads a whole file into memory.
pub fn read_bytes(path: &std::path::Path) -> Result<Vec<u8>, TensorFileError> {
    std::fs::read(path).map_err(|source| TensorFileError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// A tensor to write: raw little-endian bytes with their safetensors dtype.
pub struct OutTensor {
    /// Name.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// safetensors dtype.
    pub dtype: Dtype,
    /// Bytes.
    pub data: Vec<u8>,
}

impl OutTensor {
    /// A float tensor encoded in `dtype`.
    pub fn float(
        name: impl Into<String>,
        shape: Vec<usize>,
        dtype: FloatDtype,
        values: &[f32],
    ) -> Self {
        Self {
            name: name.into(),
            shape,
            dtype: dtype.to_safetensors(),
            data: dtype.encode(values),
        }
    }

    /// A u8 tensor.
    pub fn bytes(name: impl Into<String>, shape: Vec<usize>, data: Vec<u8>) -> Self {
        Self {
            name: name.into(),
            shape,
            dtype: Dtype::U8,
            data,
        }
    }
}

/// Serializes tensors (in the given order) and metadata to safetensors bytes.
pub fn serialize(
    tensors: &[OutTensor],
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<u8>, TensorFileError> {
    let views = tensors
        .iter()
        .map(|t| {
            TensorView::new(t.dtype, t.shape.clone(), &t.data)
                .map(|v| (t.name.clone(), v))
                .map_err(|e| TensorFileError::Write(format!("tensor `{}`: {e}", t.name)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let bytes = safetensors::serialize(views, metadata)
        .map_err(|e| TensorFileError::Write(e.to_string()))?;
    Ok(with_sorted_metadata(bytes))
}

/// The same file with its `__metadata__` keys in sorted order: the safetensors writer takes a
/// `HashMap`, whose order changes from process to process, so two runs writing the same tensors
/// and metadata would otherwise give different bytes.
fn with_sorted_metadata(bytes: Vec<u8>) -> Vec<u8> {
    let Some(len) = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    else {
        return bytes;
    };
    let Some(end) = usize::try_from(len).ok().and_then(|n| n.checked_add(8)) else {
        return bytes;
    };
    let Some(Ok(mut header)) = bytes
        .get(8..end)
        .map(serde_json::from_slice::<serde_json::Value>)
    else {
        return bytes;
    };
    let Some(serde_json::Value::Object(meta)) = header.get("__metadata__").cloned() else {
        return bytes;
    };
    let mut keys: Vec<&String> = meta.keys().collect();
    keys.sort();
    let sorted: serde_json::Map<String, serde_json::Value> = keys
        .into_iter()
        .map(|k| (k.clone(), meta[k].clone()))
        .collect();
    header["__metadata__"] = serde_json::Value::Object(sorted);
    let mut text = header.to_string().into_bytes();
    // The data section stays 8-byte aligned (safetensors pads the header with spaces).
    while !text.len().is_multiple_of(8) {
        text.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + text.len() + bytes.len() - end);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[end..]);
    out
}

/// Writes a safetensors file tensor by tensor: the header (from the names, shapes and dtypes,
/// and `metadata` as its `__metadata__`) first, then each tensor's values from
/// `fill(index, &mut values)` encoded in `dtype`, so only one tensor is in memory at a time (a
/// checkpoint of billions of values needs no buffer of its size). The file is written to a
/// temporary name and renamed into place ([`crate::atomic_write`]): an interrupted write never
/// leaves a truncated checkpoint at `path`.
pub fn write_streaming(
    path: &std::path::Path,
    tensors: &[(String, Vec<usize>, FloatDtype)],
    metadata: Option<&HashMap<String, String>>,
    mut fill: impl FnMut(usize, &mut Vec<f32>),
) -> Result<(), TensorFileError> {
    use crate::atomic_write::{AtomicWriteError, WriteFailure, write_atomic_with};
    use std::io::Write;
    let width = |d: FloatDtype| -> usize {
        match d {
            FloatDtype::F32 => 4,
            FloatDtype::F16 | FloatDtype::Bf16 => 2,
        }
    };
    let mut header = serde_json::Map::new();
    if let Some(meta) = metadata {
        header.insert("__metadata__".into(), serde_json::json!(meta));
    }
    let mut offset = 0usize;
    for (name, shape, dtype) in tensors {
        let bytes = shape
            .iter()
            .try_fold(width(*dtype), |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| {
                TensorFileError::Write(format!(
                    "tensor `{name}` of shape {shape:?} has more bytes than this machine can address"
                ))
            })?;
        header.insert(
            name.clone(),
            serde_json::json!({
                "dtype": format!("{:?}", dtype.to_safetensors()),
                "shape": shape,
                "data_offsets": [offset, offset + bytes],
            }),
        );
        offset += bytes;
    }
    let mut text = serde_json::Value::Object(header).to_string().into_bytes();
    // The data section starts 8-byte aligned (safetensors pads the header with spaces).
    while !text.len().is_multiple_of(8) {
        text.push(b' ');
    }
    write_atomic_with(path, |out| {
        out.write_all(&(text.len() as u64).to_le_bytes())
            .map_err(WriteFailure::Io)?;
        out.write_all(&text).map_err(WriteFailure::Io)?;
        let mut values = Vec::new();
        for (i, (name, shape, dtype)) in tensors.iter().enumerate() {
            values.clear();
            fill(i, &mut values);
            let n: usize = shape.iter().product();
            if values.len() != n {
                return Err(WriteFailure::Content(format!(
                    "tensor `{name}` of shape {shape:?} was given {} values",
                    values.len()
                )));
            }
            out.write_all(&dtype.encode(&values))
                .map_err(WriteFailure::Io)?;
        }
        Ok(())
    })
    .map_err(|e| match e {
        AtomicWriteError::Io { path, source } => TensorFileError::Io { path, source },
        AtomicWriteError::Content { reason, .. } => TensorFileError::Write(reason),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_written_in_one_order_whatever_the_map() {
        let tensors = [OutTensor::float("w", vec![2], FloatDtype::F32, &[1.0, 2.0])];
        let keys = ["aqn.writer", "aqn.format", "b", "a", "zz", "m"];
        let written: Vec<Vec<u8>> = (0..4)
            .map(|shift| {
                let mut meta = HashMap::new();
                for k in keys.iter().cycle().skip(shift).take(keys.len()) {
                    meta.insert(k.to_string(), format!("value of {k}"));
                }
                serialize(&tensors, Some(meta)).unwrap()
            })
            .collect();
        assert!(written.windows(2).all(|w| w[0] == w[1]));
        let file = TensorFile::parse(&written[0], "m.safetensors").unwrap();
        assert_eq!(file.read("w").unwrap().data, vec![1.0, 2.0]);
    }

    #[test]
    fn streaming_writer_is_a_valid_file() {
        let dir = std::env::temp_dir().join(format!("aqn-stream-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.safetensors");
        let tensors = vec![
            ("a".to_string(), vec![2, 3], FloatDtype::F16),
            ("b".to_string(), vec![5], FloatDtype::F32),
            ("c".to_string(), vec![1], FloatDtype::Bf16),
        ];
        write_streaming(&path, &tensors, None, |i, v| {
            v.extend((0..[6, 5, 1][i]).map(|k| (i * 10 + k) as f32 * 0.5))
        })
        .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let file = TensorFile::parse(&bytes, "x").unwrap();
        assert_eq!(file.names(), &["a", "b", "c"]);
        assert_eq!(
            file.read("a").unwrap().data,
            vec![0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
        );
        assert_eq!(file.read("b").unwrap().data[4], 7.0);
        assert_eq!(file.read("c").unwrap().shape, vec![1]);
        let err = write_streaming(&path, &tensors, None, |_, v| v.push(1.0)).unwrap_err();
        assert!(err.to_string().contains("`a`"), "{err}");
        // The failed write left the earlier file whole.
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        let meta: HashMap<String, String> = [("aqn.writer".to_string(), "test".to_string())].into();
        write_streaming(&path, &tensors[1..2], Some(&meta), |_, v| v.resize(5, 2.0)).unwrap();
        let again = std::fs::read(&path).unwrap();
        let file = TensorFile::parse(&again, "x").unwrap();
        assert_eq!(file.metadata()["aqn.writer"], "test");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn sample() -> Vec<u8> {
        serialize(
            &[
                OutTensor::float(
                    "w",
                    vec![2, 3],
                    FloatDtype::Bf16,
                    &[1.0, -2.0, 0.5, 3.0, 0.0, 1.5],
                ),
                OutTensor::float("b", vec![3], FloatDtype::F16, &[0.25, 1.0, -1.0]),
                OutTensor::bytes("ids", vec![2], vec![1, 2]),
            ],
            None,
        )
        .unwrap()
    }

    #[test]
    fn round_trip_float_dtypes() {
        let bytes = sample();
        let file = TensorFile::parse(&bytes, "mem").unwrap();
        let w = file.read("w").unwrap();
        assert_eq!((w.shape.clone(), w.dtype), (vec![2, 3], FloatDtype::Bf16));
        assert_eq!(w.data, vec![1.0, -2.0, 0.5, 3.0, 0.0, 1.5]);
        assert_eq!(file.read("b").unwrap().data, vec![0.25, 1.0, -1.0]);
    }

    #[test]
    fn errors_name_the_problem() {
        let bytes = sample();
        let file = TensorFile::parse(&bytes, "mem").unwrap();
        let err = file.read("ids").unwrap_err().to_string();
        assert!(
            err.contains("`ids`") && err.contains("U8") && err.contains("f32, f16, bf16"),
            "{err}"
        );
        let err = file.read("nope").unwrap_err().to_string();
        assert!(err.contains("`nope` is not in mem"), "{err}");
        let err = TensorFile::parse(&bytes[..bytes.len() - 3], "cut.safetensors")
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("cut.safetensors is not a valid safetensors file"),
            "{err}"
        );
        let err = "f8".parse::<FloatDtype>().unwrap_err().to_string();
        assert!(err.contains("`f8`") && err.contains("f32, f16, bf16"));
    }
}
