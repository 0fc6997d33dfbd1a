//! How the decoders of `quant/packed` read a weight's storage: [`View`], borrowed from a
//! [`super::PackedWeight`] by its `view()`, and the FP4 layout ([`Fp4View`]). A file of its own so
//! the decoders (`row_decode`, `lanes`) and the weight that calls them need not import each
//! other.

/// The storage as the decoders read it.
#[derive(Clone, Copy)]
pub(super) enum View<'a> {
    /// FP4 codes (see [`Fp4View`]).
    Fp4(Fp4View<'a>),
    /// One FP8 code per byte; the value is `lut[code]`.
    Fp8 { codes: &'a [u8], lut: &'a [f32] },
    /// Little-endian bf16 patterns, two bytes per element.
    Bf16 { bytes: &'a [u8] },
    /// The values.
    F32 { values: &'a [f32] },
}

/// FP4 storage: element `e = r * cols + c` is nibble `e % 2` (low first) of `codes[e / 2]`; its
/// block's scale byte is `scales[(r / tile_rows) * block_cols + c / block]`, and its value is
/// `lut[16 * byte + code]`, which is `p * scale_values[byte]` (MXFP4) or
/// `(p * scale_values[byte]) * g` (NVFP4, `g = Some(tensor scale)`) for the E2M1 value `p`.
#[derive(Clone, Copy)]
pub(super) struct Fp4View<'a> {
    pub codes: &'a [u8],
    pub scales: &'a [u8],
    pub lut: &'a [f32],
    pub scale_values: &'a [f32],
    pub cols: usize,
    pub block: usize,
    pub block_cols: usize,
    pub tile_rows: usize,
    pub g: Option<f32>,
}
