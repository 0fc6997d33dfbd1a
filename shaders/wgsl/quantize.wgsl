// Fake quantization (quantize, then dequantize) of an f32 tensor, bit-identical to aqn-core's
// `QuantSpec::fake_quantize` (core/src/formats, rules in docs/formats.md): MXFP4 with every scale
// mode, NVFP4 two-level and single-level, FP8 E4M3 with a per-tensor scale, BF16. Row blocks,
// round to nearest; the host sends other specs (tiles, stochastic rounding) to the CPU.
//
// The tensor is [rows, row_len]; each row is cut into blocks of `params.block` elements (32 MXFP4,
// 16 NVFP4, 32 for the per-tensor formats) and one invocation handles one block. x and q hold f32
// bit patterns as u32 so that nothing is flushed on the way.

struct Params {
    n: u32,
    row_len: u32,
    block: u32,
    blocks_per_row: u32,
    num_blocks: u32,
    format: u32, // 0 MXFP4, 1 NVFP4, 2 FP8, 3 BF16
    mode: u32, // MXFP4: 0 floor, 1 ceil, 2 even, 3 rceil; NVFP4: 0 two-level, 1 single-level
    hist_bins: u32,
    sat_threshold: u32, // f32 bits (pass 2)
    hist_scale: u32, // f32 bits (pass 2)
    hist_half: u32, // f32 bits of hist_bins / 2 (pass 2)
    groups_x: u32, // workgroups along x of the dispatch
}

const WORKGROUP_SIZE: u32 = 64u;

const FORMAT_MXFP4: u32 = 0u;
const FORMAT_NVFP4: u32 = 1u;
const FORMAT_FP8: u32 = 2u;
const FORMAT_BF16: u32 = 3u;

const F32_TWO: u32 = 0x40000000u;
const F32_FOUR: u32 = 0x40800000u;
const F32_SIX: u32 = 0x40c00000u; // E2M1 max
const F32_448: u32 = 0x43e00000u; // E4M3 max
const F32_2688: u32 = 0x45280000u; // 448 * 6, the NVFP4 tensor-scale divisor
const F32_E4M3_MIN_NORMAL: u32 = 0x3c800000u; // 2^-6
const F32_NV_MIN_TENSOR_SCALE: u32 = 0x03800000u; // 2^-120
const RCEIL_TO_MIN_EXPONENT: u32 = 0x01400001u; // largest amax with fl(amax / 6) <= 2^-127

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<u32>;
@group(0) @binding(2) var<storage, read_write> q: array<u32>;
// [0] finite amax of x, [1] max |q|, [2] max |q - x|: f32 bits of non-negative values, whose
// order is the order of the u32s.
@group(0) @binding(3) var<storage, read_write> globals: array<atomic<u32>, 4>;
@group(0) @binding(4) var<storage, read_write> partials: array<u32>;
@group(0) @binding(5) var<storage, read_write> hist: array<atomic<u32>>;

// The block of this invocation, or num_blocks when it has none.
fn block_index(wid: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.y * params.groups_x + wid.x) * WORKGROUP_SIZE + lid.x;
}

// [start, end) of block k (blocks never span rows; the last of a row may be partial).
fn block_range(k: u32) -> vec2<u32> {
    let row = k / params.blocks_per_row;
    let col = k % params.blocks_per_row;
    let row_start = row * params.row_len;
    let start = row_start + col * params.block;
    let end = min(start + params.block, row_start + params.row_len);
    return vec2<u32>(start, end);
}

// E2M1 rounding of a non-negative, non-NaN f32 `a` (bits): round to nearest, ties to even
// mantissa, saturating at 6. Returns the magnitude in halves (0, 1, 2, 3, 4, 6, 8, 12).
fn e2m1_half_units(a: u32) -> u32 {
    if (a >= F32_SIX) {
        return 12u;
    }
    let sig = sf_sig(a);
    if (a < F32_TWO) {
        // Step 0.5: RNE(2a) = RNE(sig * 2^(exp + 1)), exp <= -23.
        return rshift_rne(sig, u32(-(sf_exp(a) + 1)), false);
    }
    // [2, 4): step 1, RNE(sig * 2^-22); [4, 6): step 2, RNE(a / 2) = RNE(sig * 2^-22).
    let k = rshift_rne(sig, 22u, false);
    if (a < F32_FOUR) {
        return 2u * k;
    }
    return 4u * k;
}

// The MXFP4 shared exponent e (scale 2^e) of a block with finite amax bits (core mxfp4.rs).
fn mx_scale_exponent(amax: u32, mode: u32) -> i32 {
    let field = i32(amax >> 23u);
    let mant = amax & MANT_MASK;
    var e = -127;
    switch mode {
        case 0u: { // FLOOR: floor(log2 amax) - 2
            if (field != 0) {
                e = field - 129;
            }
        }
        case 1u: { // CEIL: ceil(log2 amax) - 2
            if (field != 0) {
                e = field - 129 + select(0, 1, mant != 0u);
            }
        }
        case 2u: { // EVEN: amax rounded to one mantissa bit, then FLOOR
            let rounded = (amax + 0x00200000u) & 0xff800000u;
            let rf = i32(rounded >> 23u);
            if (rf != 0) {
                e = rf - 129;
            }
        }
        default: {
            // RCEIL: ceil(log2(fl(amax / 6))). fl(amax / 6) <= 2^k exactly when
            // amax <= 1.5 * 2^(k + 2) (no f32 lies strictly between 6 * 2^k and the rounding
            // boundary above it), except at k = -127 whose boundary is one ulp higher.
            if (amax > RCEIL_TO_MIN_EXPONENT) {
                e = field - 129 + select(0, 1, mant > 0x00400000u);
            }
        }
    }
    return clamp(e, -127, 127);
}

// Largest finite |x| of block k (bits), and whether the block holds NaN or Inf.
fn block_amax(r: vec2<u32>) -> u32 {
    var amax = 0u;
    for (var i = r.x; i < r.y; i = i + 1u) {
        amax = max(amax, x[i] & ABS_MASK);
    }
    return amax;
}

fn quantize_mxfp4(r: vec2<u32>) {
    let amax = block_amax(r);
    if (amax >= INF_BITS) {
        for (var i = r.x; i < r.y; i = i + 1u) {
            q[i] = QNAN_BITS;
        }
        return;
    }
    let e = mx_scale_exponent(amax, params.mode);
    let inv = pow2_bits(-e);
    for (var i = r.x; i < r.y; i = i + 1u) {
        let v = x[i];
        let halves = e2m1_half_units(sf_mul(v & ABS_MASK, inv));
        q[i] = sf_pack(v & SIGN_BIT, halves, e - 1, false); // halves * 2^(e-1), exact
    }
}

// The NVFP4 per-tensor scale g (core nvfp4.rs `tensor_scale`).
fn nv_tensor_scale() -> u32 {
    if (params.mode == 1u) {
        return ONE_BITS;
    }
    let g = sf_div(atomicLoad(&globals[0]), F32_2688);
    if (g < F32_NV_MIN_TENSOR_SCALE) {
        return ONE_BITS;
    }
    return g;
}

// E4M3 rounding of a value in its normal range [2^-6, 448] (core e4m3.rs `round_normal_to_e4m3`).
fn round_normal_to_e4m3(a: u32) -> u32 {
    return (a + 0x0007ffffu + ((a >> 20u) & 1u)) & 0xfff00000u;
}

fn quantize_nvfp4(r: vec2<u32>) {
    let amax = block_amax(r);
    if (amax >= INF_BITS) {
        for (var i = r.x; i < r.y; i = i + 1u) {
            q[i] = QNAN_BITS;
        }
        return;
    }
    let g = nv_tensor_scale();
    // s = E4M3(clamp((amax_b / 6) / g, 2^-6, 448)); m = (1 / g) / s.
    let ratio = clamp(sf_div(sf_div(amax, F32_SIX), g), F32_E4M3_MIN_NORMAL, F32_448);
    let s = round_normal_to_e4m3(ratio);
    let m = sf_div(sf_div(ONE_BITS, g), s);
    for (var i = r.x; i < r.y; i = i + 1u) {
        let v = x[i];
        let halves = e2m1_half_units(sf_mul(v & ABS_MASK, m));
        let p = sf_pack(0u, halves, -1, false);
        q[i] = sf_mul(sf_mul(p, s), g) | (v & SIGN_BIT);
    }
}

// E4M3 value (f32 bits) of a magnitude in [0, 448]: RNE, subnormal step 2^-9.
fn e4m3_round_magnitude(a: u32) -> u32 {
    if (a < F32_E4M3_MIN_NORMAL) {
        // RNE(a * 2^9) = RNE(sig * 2^(exp + 9)), exp <= -30.
        let k = rshift_rne(sf_sig(a), u32(-(sf_exp(a) + 9)), false);
        return sf_pack(0u, k, -9, false);
    }
    return round_normal_to_e4m3(a);
}

fn quantize_fp8(r: vec2<u32>) {
    var scale = sf_div(atomicLoad(&globals[0]), F32_448);
    if ((scale & ABS_MASK) == 0u) {
        scale = ONE_BITS;
    }
    for (var i = r.x; i < r.y; i = i + 1u) {
        let v = x[i];
        if (!is_finite_bits(v)) {
            q[i] = QNAN_BITS;
            continue;
        }
        let y = sf_div(v, scale);
        let a = min(y & ABS_MASK, F32_448);
        q[i] = sf_mul(e4m3_round_magnitude(a) | (y & SIGN_BIT), scale);
    }
}

fn quantize_bf16(r: vec2<u32>) {
    for (var i = r.x; i < r.y; i = i + 1u) {
        let v = x[i];
        if ((v & ABS_MASK) > INF_BITS) {
            q[i] = (v | 0x00400000u) & 0xffff0000u; // quiet NaN, sign kept
        } else {
            q[i] = ((v + 0x7fffu + ((v >> 16u) & 1u)) >> 16u) << 16u;
        }
    }
}

// Pass 0 (NVFP4 two-level and FP8): the largest finite |x| of the tensor into globals[0].
@compute @workgroup_size(64)
fn tensor_amax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let k = block_index(wid, lid);
    if (k >= params.num_blocks) {
        return;
    }
    let r = block_range(k);
    var amax = 0u;
    for (var i = r.x; i < r.y; i = i + 1u) {
        let m = x[i] & ABS_MASK;
        if (m < INF_BITS) {
            amax = max(amax, m);
        }
    }
    atomicMax(&globals[0], amax);
}

// Pass 1: q = fake_quantize(x), one block per invocation.
@compute @workgroup_size(64)
fn fake_quantize_blocks(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let k = block_index(wid, lid);
    if (k >= params.num_blocks) {
        return;
    }
    let r = block_range(k);
    switch params.format {
        case 0u: {
            quantize_mxfp4(r);
        }
        case 1u: {
            quantize_nvfp4(r);
        }
        case 2u: {
            quantize_fp8(r);
        }
        default: {
            quantize_bf16(r);
        }
    }
}
