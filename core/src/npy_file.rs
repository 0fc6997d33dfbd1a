//! Reading NumPy `.npy` arrays (format versions 1.0 to 3.0) into f32, for the playground's upload.
//!
//! Layout: the magic `\x93NUMPY`, a major and a minor version byte, the header length (u16 little
//! endian in 1.0, u32 in 2.0 and 3.0), a Python dict literal `{'descr': '<f4', 'fortran_order':
//! False, 'shape': (3, 4), }`, then the raw data. Float dtypes f2, f4 and f8 of either byte order
//! are read (f8 rounded to nearest f32); C order only.

use thiserror::Error;

use crate::tensor_file::FloatDtype;
use crate::tensor_file::HostTensor;

/// The six magic bytes of every `.npy` file.
pub const NPY_MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Why an `.npy` buffer was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum NpyError {
    /// Not an `.npy` file, or a header that cannot be read.
    #[error("{source_name} is not a valid .npy file: {reason}")]
    Malformed {
        /// Where the bytes came from.
        source_name: String,
        /// What is wrong.
        reason: String,
    },
    /// A dtype that is not a float of 2, 4 or 8 bytes.
    #[error("{source_name} has dtype `{descr}`; supported: <f2, <f4, <f8 (or big endian >f*)")]
    UnsupportedDtype {
        /// Where.
        source_name: String,
        /// The `descr` of the header.
        descr: String,
    },
    /// A Fortran-ordered array.
    #[error("{source_name} is stored in Fortran order; save it with numpy.ascontiguousarray first")]
    FortranOrder {
        /// Where.
        source_name: String,
    },
}

/// The float element types of an `.npy` file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NpyFloat {
    F2,
    F4,
    F8,
}

impl NpyFloat {
    fn size(self) -> usize {
        match self {
            NpyFloat::F2 => 2,
            NpyFloat::F4 => 4,
            NpyFloat::F8 => 8,
        }
    }
}

/// Reads the value of `'key':` in a header dict: the text up to the next top-level `,` or `}`.
fn header_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let start = header
        .find(&format!("'{key}'"))
        .or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = header[start + key.len() + 2..].trim_start();
    let rest = rest.strip_prefix(':')?.trim_start();
    let mut depth = 0i32;
    for (k, c) in rest.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            ',' | '}' if depth == 0 => return Some(rest[..k].trim()),
            _ => {}
        }
    }
    None
}

/// Parses an `.npy` buffer (named `source_name` in errors) into an f32 tensor named `name`.
pub fn read_npy(bytes: &[u8], source_name: &str, name: &str) -> Result<HostTensor, NpyError> {
    let bad = |reason: String| NpyError::Malformed {
        source_name: source_name.to_string(),
        reason,
    };
    if bytes.len() < 10 || &bytes[..6] != NPY_MAGIC {
        return Err(bad("it does not start with the \\x93NUMPY magic".into()));
    }
    let (header_start, data_start) = preamble(bytes, &bad)?;
    let header = core::str::from_utf8(&bytes[header_start..data_start])
        .map_err(|_| bad("the header is not text".into()))?;
    let descr = header_value(header, "descr")
        .ok_or_else(|| bad("the header has no 'descr'".into()))?
        .trim_matches(|c| c == '\'' || c == '"');
    let fortran = header_value(header, "fortran_order")
        .ok_or_else(|| bad("the header has no 'fortran_order'".into()))?;
    let shape_text =
        header_value(header, "shape").ok_or_else(|| bad("the header has no 'shape'".into()))?;
    let unsupported = || NpyError::UnsupportedDtype {
        source_name: source_name.to_string(),
        descr: descr.to_string(),
    };
    let (little, kind) = match descr.as_bytes() {
        [order @ (b'<' | b'>' | b'='), b'f', size] => (
            *order != b'>',
            match size {
                b'2' => NpyFloat::F2,
                b'4' => NpyFloat::F4,
                b'8' => NpyFloat::F8,
                _ => return Err(unsupported()),
            },
        ),
        _ => return Err(unsupported()),
    };
    match fortran {
        "False" => {}
        "True" => {
            return Err(NpyError::FortranOrder {
                source_name: source_name.to_string(),
            });
        }
        other => return Err(bad(format!("fortran_order is `{other}`"))),
    }
    let shape = parse_shape(shape_text, &bad)?;
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad(format!("the shape `{shape_text}` overflows")))?;
    let need = count
        .checked_mul(kind.size())
        .ok_or_else(|| bad(format!("the shape `{shape_text}` overflows")))?;
    let data = &bytes[data_start..];
    if data.len() < need {
        return Err(bad(format!(
            "shape {shape:?} needs {need} data bytes but the file has {}",
            data.len()
        )));
    }
    let values = decode_values(&data[..need], kind, little);
    Ok(HostTensor {
        name: name.to_string(),
        shape,
        dtype: match kind {
            NpyFloat::F2 => FloatDtype::F16,
            // f8 is rounded to f32 on reading; the tensor is f32 from here on.
            NpyFloat::F4 | NpyFloat::F8 => FloatDtype::F32,
        },
        data: values,
    })
}

/// The header's span after the magic and version: `(header_start, data_start)`.
fn preamble(bytes: &[u8], bad: &dyn Fn(String) -> NpyError) -> Result<(usize, usize), NpyError> {
    let major = bytes[6];
    let (header_len, header_start): (usize, usize) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(bad("the file ends inside its preamble".into()));
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => return Err(bad(format!("format version {v} is not 1, 2 or 3"))),
    };
    let data_start = header_start
        .checked_add(header_len)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| {
            bad(format!(
                "the header of {header_len} bytes runs past the file"
            ))
        })?;
    Ok((header_start, data_start))
}

/// The `shape` tuple of the header (`(3, 4)`, `(5,)`, `()`).
fn parse_shape(shape_text: &str, bad: &dyn Fn(String) -> NpyError) -> Result<Vec<usize>, NpyError> {
    let inner = shape_text
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| bad(format!("the shape `{shape_text}` is not a tuple")))?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| bad(format!("the shape `{shape_text}` has a non-integer entry")))
        })
        .collect::<Result<Vec<_>, _>>()
}

/// The data bytes as f32 values (f16 and f32 exact, f64 rounded).
fn decode_values(data: &[u8], kind: NpyFloat, little: bool) -> Vec<f32> {
    match kind {
        NpyFloat::F2 => data
            .chunks_exact(2)
            .map(|b| {
                let b = [b[0], b[1]];
                half::f16::from_bits(if little {
                    u16::from_le_bytes(b)
                } else {
                    u16::from_be_bytes(b)
                })
                .to_f32()
            })
            .collect(),
        NpyFloat::F4 => data
            .chunks_exact(4)
            .map(|b| {
                let b = [b[0], b[1], b[2], b[3]];
                if little {
                    f32::from_le_bytes(b)
                } else {
                    f32::from_be_bytes(b)
                }
            })
            .collect(),
        NpyFloat::F8 => data
            .chunks_exact(8)
            .map(|b| {
                let b: [u8; 8] = b.try_into().expect("chunk of 8");
                (if little {
                    f64::from_le_bytes(b)
                } else {
                    f64::from_be_bytes(b)
                }) as f32
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, shape: &str, fortran: bool, data: &[u8]) -> Vec<u8> {
        let mut header = format!(
            "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
            if fortran { "True" } else { "False" }
        );
        while !(10 + header.len() + 1).is_multiple_of(64) {
            header.push(' ');
        }
        header.push('\n');
        let mut out = NPY_MAGIC.to_vec();
        out.extend([1, 0]);
        out.extend((header.len() as u16).to_le_bytes());
        out.extend(header.as_bytes());
        out.extend(data);
        out
    }

    #[test]
    fn reads_float_dtypes() {
        let vals = [1.0f32, -2.5, 0.125, 3.0, 0.0, 7.0];
        let le: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        let t = read_npy(&npy("<f4", "(2, 3)", false, &le), "a.npy", "a").unwrap();
        assert_eq!(
            (t.shape.clone(), t.data.clone()),
            (vec![2, 3], vals.to_vec())
        );
        let be: Vec<u8> = vals
            .iter()
            .flat_map(|v| (*v as f64).to_be_bytes())
            .collect();
        let t = read_npy(&npy(">f8", "(6,)", false, &be), "b.npy", "b").unwrap();
        assert_eq!(t.data, vals.to_vec());
        let h: Vec<u8> = vals
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect();
        let t = read_npy(&npy("<f2", "(3, 2)", false, &h), "c.npy", "c").unwrap();
        assert_eq!((t.dtype, t.data), (FloatDtype::F16, vals.to_vec()));
        let t = read_npy(&npy("<f4", "()", false, &le[..4]), "s.npy", "s").unwrap();
        assert_eq!((t.shape, t.data), (vec![], vec![1.0]));
    }

    #[test]
    fn errors_name_the_problem() {
        let data = [0u8; 24];
        let err = read_npy(b"PK\x03\x04 not numpy", "x.npy", "x")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "x.npy is not a valid .npy file: it does not start with the \\x93NUMPY magic"
        );
        let err = read_npy(&npy("<i4", "(6,)", false, &data), "i.npy", "i").unwrap_err();
        assert!(
            err.to_string()
                .contains("dtype `<i4`; supported: <f2, <f4, <f8"),
            "{err}"
        );
        let err = read_npy(&npy("<f4", "(2, 3)", true, &data), "f.npy", "f").unwrap_err();
        assert!(matches!(err, NpyError::FortranOrder { .. }));
        let err = read_npy(&npy("<f4", "(7,)", false, &data), "t.npy", "t").unwrap_err();
        assert!(
            err.to_string()
                .contains("needs 28 data bytes but the file has 24"),
            "{err}"
        );
        let mut cut = npy("<f4", "(6,)", false, &data);
        cut.truncate(20);
        let err = read_npy(&cut, "c.npy", "c").unwrap_err().to_string();
        assert!(err.contains("runs past the file"), "{err}");
    }
}
