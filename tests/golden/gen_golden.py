#!/usr/bin/env python3
"""Independent Python oracle for aqn's number formats; writes the golden safetensors files.

Sources of truth: docs/spec.md section 1 and docs/formats.md (followed literally). ml_dtypes casts are used where
they agree with the spec (E2M1 RNE+saturation for non-NaN input, E4M3 RNE for |v| <= 448, BF16 RNE for
non-NaN input, E4M3/E8M0/E2M1 decoding); the places where they do not are worked around and commented.
Every codec result is also checked against a brute-force nearest-grid reference (`ref_*`), so a change in
ml_dtypes' behaviour stops the generator instead of silently changing the goldens.

All arithmetic the spec states in f32 is done in np.float32 scalars/arrays, in the stated order.

Usage (from the repository root):  python3 tests/golden/gen_golden.py
"""
import json
import os
import struct

import ml_dtypes
import numpy as np
from safetensors.numpy import load_file, save

F32 = np.float32
OUT_DIR = os.path.dirname(os.path.abspath(__file__))

E2M1_GRID = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6], F32)  # code 0..7 (magnitude)
E4M3_MAX = F32(448)
NV_SCALE_MIN = F32(2.0 ** -6)
NV_G_MIN = F32(2.0 ** -120)
MX_BLOCK, NV_BLOCK, TILE = 32, 16, 16


# ----------------------------------------------------------------------------------------------------------
# Bit helpers
# ----------------------------------------------------------------------------------------------------------
def f32_bits(x):
    return np.asarray(x, F32).view(np.uint32)


def bits_f32(b):
    return np.asarray(b, np.uint32).view(F32)


def pow2_f32(e):
    """Exact 2^e as f32 (e in [-149, 127]; 2^-127 is an f32 subnormal)."""
    return np.ldexp(F32(1), np.asarray(e, np.int32)).astype(F32)


def sign_bit(x):
    return (f32_bits(x) >> 31).astype(np.uint8)


# ----------------------------------------------------------------------------------------------------------
# Codecs (docs/formats.md "E2M1 element rounding", "E4M3 and E8M0 codecs", "BF16")
# ----------------------------------------------------------------------------------------------------------
def f32_to_e2m1(y):
    """E2M1 code (0..15): RNE, saturate at +-6, sign bit = sign bit of the input (-0.1 -> 0x8).

    ml_dtypes' cast does exactly this for non-NaN input (+-Inf saturate to +-6); it maps NaN to a signed
    zero, so NaN must never reach it (E2M1 has no NaN; NaN blocks are handled by the format code)."""
    y = np.asarray(y, F32)
    assert not np.isnan(y).any(), "E2M1 has no NaN"
    return y.astype(ml_dtypes.float4_e2m1fn).view(np.uint8)


def e2m1_to_f32(codes):
    return np.asarray(codes, np.uint8).view(ml_dtypes.float4_e2m1fn).astype(F32)


def f32_to_e4m3(x):
    """E4M3 "fn" code: RNE (subnormals m*2^-9), finite values saturate to +-448, NaN/+-Inf -> 0x7F | sign.

    Workarounds: SPEC 1 says clamp before converting (ml_dtypes makes NaN above 464); ml_dtypes already maps
    NaN/Inf to 0x7F/0xFF by sign, but we set it explicitly."""
    x = np.asarray(x, F32)
    finite = np.isfinite(x)
    clamped = np.clip(np.where(finite, x, F32(0)), -E4M3_MAX, E4M3_MAX)  # np.clip keeps -0.0
    codes = clamped.astype(ml_dtypes.float8_e4m3fn).view(np.uint8)
    return np.where(finite, codes, np.uint8(0x7F) | (sign_bit(x) << 7)).astype(np.uint8)


def e4m3_to_f32(codes):
    return np.asarray(codes, np.uint8).view(ml_dtypes.float8_e4m3fn).astype(F32)


def e8m0_to_f32(codes):
    """E8M0: 2^(b-127) for b in 0..=254 (b=0 is the f32 subnormal 2^-127), 0xFF NaN."""
    return np.asarray(codes, np.uint8).view(ml_dtypes.float8_e8m0fnu).astype(F32)


def f32_to_bf16_bits(x):
    """BF16 bits: RNE on the top 16 bits, overflow to +-Inf; NaN -> quiet NaN with the sign kept.

    For NaN we emit the canonical 0x7FC0 | sign (what ml_dtypes does). docs/formats.md does not say whether
    payload bits survive, so the goldens only contain NaNs whose high payload bits are 0 (then the common
    "(bits >> 16) | 0x40" convention gives the same code)."""
    x = np.asarray(x, F32)
    with np.errstate(invalid="ignore"):  # NaN input: replaced below
        codes = x.astype(ml_dtypes.bfloat16).view(np.uint16)
    nan_code = np.uint16(0x7FC0) | (sign_bit(x).astype(np.uint16) << 15)
    return np.where(np.isnan(x), nan_code, codes).astype(np.uint16)


# --- brute-force references (exact: every f32, grid value and midpoint is exact in f64) ----------------
def ref_rne_to_grid(x, grid):
    """Index of the nearest grid magnitude to |x| (ties to the even index = even mantissa), saturating."""
    a = np.abs(np.asarray(x, np.float64))
    g = np.asarray(grid, np.float64)
    lo = np.clip(np.searchsorted(g, a, side="right") - 1, 0, len(g) - 1)
    hi = np.minimum(lo + 1, len(g) - 1)
    mid = (g[lo] + g[hi]) / 2
    pick_hi = (a > mid) | ((a == mid) & (hi % 2 == 0))
    return np.where(a >= g[-1], len(g) - 1, np.where(pick_hi, hi, lo))


def ref_e2m1(x):
    x = np.asarray(x, F32)
    return (ref_rne_to_grid(x, E2M1_GRID) | (sign_bit(x).astype(np.int64) << 3)).astype(np.uint8)


def ref_e4m3(x):
    x = np.asarray(x, F32)
    grid = e4m3_to_f32(np.arange(0x7F, dtype=np.uint8))  # codes 0x00..0x7E, increasing
    code = ref_rne_to_grid(np.where(np.isfinite(x), x, 0), grid)
    code = np.where(np.isfinite(x), code, 0x7F)
    return (code | (sign_bit(x).astype(np.int64) << 7)).astype(np.uint8)


def ref_bf16(x):
    b = f32_bits(x).astype(np.uint64)
    r = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(np.uint16)  # docs/formats.md BF16 formula
    return np.where(np.isnan(np.asarray(x, F32)), f32_to_bf16_bits(x), r)


def check_codec(name, got, want):
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, f"{name}: ml_dtypes path disagrees with reference at {bad[:10]}"


# ----------------------------------------------------------------------------------------------------------
# Stochastic rounding (docs/formats.md "Stochastic")
# ----------------------------------------------------------------------------------------------------------
M64 = (1 << 64) - 1


def mix64(z):
    z = np.asarray(z, np.uint64)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def uniform(seed, i):
    """uniform(seed, i) = (mix64(seed + (i+1) * 0x9e3779b97f4a7c15) >> 40) * 2^-24, an f32 in [0, 1)."""
    i = np.asarray(i, np.uint64)
    with np.errstate(over="ignore"):
        z = np.uint64(seed & M64) + (i + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
        h = mix64(z)
    return (h >> np.uint64(40)).astype(F32) * F32(2.0 ** -24)


def ref_uniform(seed, i):
    """Pure-Python big-int version of `uniform`, used as a self-check."""
    z = (seed + (i + 1) * 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    z ^= z >> 31
    return (z >> 40) * 2.0 ** -24


def f32_to_e2m1_stochastic(y, flat_index, seed):
    """a = min(|y|, 6); lo = largest grid value <= a, hi = next (hi = lo at 6); p = (a-lo)/(hi-lo) in f32;
    result hi if uniform(seed, i) < p else lo; sign bit from y."""
    y = np.asarray(y, F32)
    assert not np.isnan(y).any()
    a = np.minimum(np.abs(y), F32(6))
    lo = np.searchsorted(E2M1_GRID, a, side="right") - 1
    hi = np.minimum(lo + 1, 7)
    span = E2M1_GRID[hi] - E2M1_GRID[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(span > 0, (a - E2M1_GRID[lo]) / span, F32(0)).astype(F32)
    u = uniform(seed, flat_index)
    mag = np.where(u < p, hi, lo).astype(np.uint8)
    return mag | (sign_bit(y) << 3)


def e2m1_round(y, flat_index, seed):
    return f32_to_e2m1(y) if seed is None else f32_to_e2m1_stochastic(y, flat_index, seed)


# ----------------------------------------------------------------------------------------------------------
# Block layout (docs/formats.md "Layout of a tensor"): partial blocks are zero padded
# ----------------------------------------------------------------------------------------------------------
def blockify(x, layout, block, with_index=False):
    """[rows, L] -> ([nblocks, elems] zero padded, [nblocks, elems] flat index or None, scale shape)."""
    rows, L = x.shape
    idx = np.arange(rows * L, dtype=np.int64).reshape(rows, L) if with_index else None
    if layout == "row":
        nb = -(-L // block)
        pad = ((0, 0), (0, nb * block - L))
        xb = np.pad(x, pad).reshape(rows * nb, block)
        ib = np.pad(idx, pad).reshape(rows * nb, block) if with_index else None
        return xb, ib, (rows, nb)
    assert layout == "tile16x16"
    R, C = -(-rows // TILE), -(-L // TILE)
    pad = ((0, R * TILE - rows), (0, C * TILE - L))

    def tiles(a):
        return np.pad(a, pad).reshape(R, TILE, C, TILE).transpose(0, 2, 1, 3).reshape(R * C, TILE * TILE)

    return tiles(x), (tiles(idx) if with_index else None), (R, C)


def unblockify(yb, shape, layout, block):
    rows, L = shape
    if layout == "row":
        return yb.reshape(rows, -1)[:, :L]
    R, C = -(-rows // TILE), -(-L // TILE)
    full = yb.reshape(R, C, TILE, TILE).transpose(0, 2, 1, 3).reshape(R * TILE, C * TILE)
    return full[:rows, :L]


def block_amax(xb):
    """(amax over the finite elements, block holds NaN/Inf). Padding zeros never raise amax."""
    finite = np.isfinite(xb)
    amax = np.max(np.abs(np.where(finite, xb, F32(0))), axis=1)
    return amax.astype(F32), ~finite.all(axis=1)


def pack_fp4(codes):
    """Element i in byte i/2, even i in the low nibble; an odd count leaves the last high nibble 0."""
    c = np.asarray(codes, np.uint8).reshape(-1)
    if c.size % 2:
        c = np.append(c, np.uint8(0))
    return (c[0::2] | (c[1::2] << 4)).astype(np.uint8)


# ----------------------------------------------------------------------------------------------------------
# MXFP4 (SPEC 1 "MXFP4", docs/formats.md "MXFP4")
# ----------------------------------------------------------------------------------------------------------
def ceil_log2_exact(r):
    """ceil(log2 r) for f32 r >= 0 (subnormals included, exact via frexp); -1000 for r == 0."""
    m, k = np.frexp(np.asarray(r, F32))
    e = np.where(m == F32(0.5), k - 1, k)
    return np.where(r == 0, -1000, e)


def mx_scale_exponent(amax, mode):
    """Block scale exponent e, clamped to [-127, 127]. amax = 0 (or any rule giving < -127) -> -127.

    FLOOR/CEIL/EVEN read floor(log2) from the f32 exponent field (exact for normals; subnormal and zero amax
    give a field of 0, i.e. e <= -128, which clamps to -127 like the exact value would)."""
    bits = f32_bits(amax).astype(np.uint32)
    if mode == "rceil":
        r = np.asarray(amax, F32) / F32(6)  # f32 division, then e = ceil(log2 r) (r may be an f32 subnormal)
        e = ceil_log2_exact(r)
    else:
        if mode == "even":  # round amax to one mantissa bit: bits + 0x200000, & 0xFF800000, then FLOOR
            bits = (bits + np.uint32(0x200000)) & np.uint32(0xFF800000)
        exp_field = ((bits >> 23) & 0xFF).astype(np.int64)
        e = exp_field - 127 - 2  # floor(log2 amax) - 2 (an amax rounded to +Inf by EVEN reads 128)
        if mode == "ceil":
            e = e + ((bits & 0x7FFFFF) != 0)
        else:
            assert mode in ("floor", "even")
    e = np.where(np.asarray(amax) == 0, -127, e)
    return np.clip(e, -127, 127).astype(np.int64)


def mxfp4_block_params(xb, mode):
    amax, bad = block_amax(xb)
    return mx_scale_exponent(amax, mode), bad


def mxfp4_scaled(xb, e):
    """y = v / 2^e (exact power-of-two division in f32)."""
    return (xb / pow2_f32(e)[:, None]).astype(F32)


def mxfp4_quantize(x, mode="floor", seed=None):
    """Returns dict(codes [rows, L] unpacked, scales E8M0 bytes, tensor_scale, dequant)."""
    x = np.asarray(x, F32)
    xb, ib, sshape = blockify(x, "row", MX_BLOCK, seed is not None)
    e, bad = mxfp4_block_params(xb, mode)
    y = np.where(bad[:, None], F32(0), mxfp4_scaled(xb, e))
    codes = np.where(bad[:, None], np.uint8(0), e2m1_round(y, ib, seed))  # NaN/Inf block: codes 0
    scales = np.where(bad, 0xFF, e + 127).astype(np.uint8)
    with np.errstate(over="ignore"):  # p * 2^e; only 6 * 2^126 and 4 * 2^126 overflow (to +-Inf)
        deq = (e2m1_to_f32(codes) * pow2_f32(e)[:, None]).astype(F32)
    deq = np.where(bad[:, None], F32(np.nan), deq)
    return dict(codes=unblockify(codes, x.shape, "row", MX_BLOCK), scales=scales.reshape(sshape),
                tensor_scale=F32(1), dequant=unblockify(deq, x.shape, "row", MX_BLOCK))


def mxfp4_dequantize(codes, scales):
    """Independent decode path: codes [rows, L], scales [rows, nb] -> f32."""
    rows, L = codes.shape
    s = np.repeat(e8m0_to_f32(scales), MX_BLOCK, axis=1)[:, :L]
    with np.errstate(over="ignore"):
        return (e2m1_to_f32(codes) * s).astype(F32)


# ----------------------------------------------------------------------------------------------------------
# NVFP4 (SPEC 1 "NVFP4", docs/formats.md "NVFP4")
# ----------------------------------------------------------------------------------------------------------
def nvfp4_tensor_scale(x, scaling):
    """Two-level: g = amax_t / 2688 (f32) over the finite elements; g < 2^-120 -> 1. Single-level: g = 1."""
    if scaling == "single-level":
        return F32(1)
    x = np.asarray(x, F32)
    fin = x[np.isfinite(x)]
    amax_t = np.max(np.abs(fin)) if fin.size else F32(0)
    g = F32(amax_t) / F32(2688)
    return F32(1) if g < NV_G_MIN else F32(g)


def nvfp4_block_params(xb, g):
    """s = E4M3(clamp((amax_b / 6) / g, 2^-6, 448)); m = (1/g) / s (all f32, in that order)."""
    amax, bad = block_amax(xb)
    s_code = f32_to_e4m3(np.clip((amax / F32(6)) / g, NV_SCALE_MIN, E4M3_MAX))
    s = e4m3_to_f32(s_code)
    m = ((F32(1) / g) / s).astype(F32)
    return s_code, s, m, bad


def nvfp4_scaled(xb, m):
    """y = clamp(v * m, -6, 6) in f32."""
    return np.clip((xb * m[:, None]).astype(F32), F32(-6), F32(6))


def nvfp4_quantize(x, scaling="two-level", layout="row", seed=None):
    x = np.asarray(x, F32)
    g = nvfp4_tensor_scale(x, scaling)
    xb, ib, sshape = blockify(x, layout, NV_BLOCK, seed is not None)
    s_code, s, m, bad = nvfp4_block_params(xb, g)
    y = np.where(bad[:, None], F32(0), nvfp4_scaled(xb, m))
    codes = np.where(bad[:, None], np.uint8(0), e2m1_round(y, ib, seed))
    scales = np.where(bad, np.uint8(0x7F), s_code).astype(np.uint8)  # NaN/Inf block: E4M3 NaN
    deq = ((e2m1_to_f32(codes) * s[:, None]).astype(F32) * g).astype(F32)  # (p * s) * g
    deq = np.where(bad[:, None], F32(np.nan), deq)
    return dict(codes=unblockify(codes, x.shape, layout, NV_BLOCK), scales=scales.reshape(sshape),
                tensor_scale=g, dequant=unblockify(deq, x.shape, layout, NV_BLOCK))


def nvfp4_dequantize(codes, scales, g, layout):
    """Independent decode path: (p * s) * g, NaN where the scale byte is NaN."""
    rows, L = codes.shape
    s = e4m3_to_f32(scales)
    if layout == "row":
        s = np.repeat(s, NV_BLOCK, axis=1)[:, :L]
    else:
        s = np.repeat(np.repeat(s, TILE, axis=0), TILE, axis=1)[:rows, :L]
    return ((e2m1_to_f32(codes) * s).astype(F32) * F32(g)).astype(F32)


# ----------------------------------------------------------------------------------------------------------
# FP8 E4M3 with a per-tensor scale (docs/formats.md "FP8 E4M3")
# ----------------------------------------------------------------------------------------------------------
def fp8_quantize(x):
    """scale = amax_finite / 448 (f32), 0 -> 1; code = E4M3(clamp(v / scale, -448, 448)); NaN/Inf -> NaN."""
    x = np.asarray(x, F32)
    fin = np.isfinite(x)
    amax = np.max(np.abs(x[fin])) if fin.any() else F32(0)
    scale = F32(amax) / E4M3_MAX
    scale = F32(1) if scale == 0 else F32(scale)
    y = np.clip((np.where(fin, x, F32(0)) / scale).astype(F32), -E4M3_MAX, E4M3_MAX)
    codes = np.where(fin, f32_to_e4m3(y), f32_to_e4m3(x))  # non-finite v -> 0x7F | sign
    deq = (e4m3_to_f32(codes) * scale).astype(F32)
    return dict(codes=codes, scales=None, tensor_scale=scale, dequant=deq)


def fake_quantize_mxfp4(x, mode="floor"):
    return mxfp4_quantize(x, mode)["dequant"]


def fake_quantize_nvfp4(x, scaling="two-level"):
    return nvfp4_quantize(x, scaling)["dequant"]


# ----------------------------------------------------------------------------------------------------------
# Codec golden files
# ----------------------------------------------------------------------------------------------------------
def rng_for(tag):
    """A fixed, named random stream (deterministic: the seed is derived from the tag text)."""
    return np.random.default_rng([ord(ch) for ch in tag])


def random_magnitudes(rng, n):
    """n f32 values, random signs, log-uniform magnitudes over 2^-160 .. 2^130 (zeros, subnormals, Inf)."""
    v = np.ldexp(rng.uniform(1, 2, n), rng.integers(-160, 131, n)) * rng.choice([-1, 1], n)
    with np.errstate(over="ignore"):
        return v.astype(F32)


def tie_sweep(grid_pos):
    """Grid values, midpoints between neighbours and the f32 neighbours of both, with both signs."""
    g = np.asarray(grid_pos, F32)
    mids = ((g[:-1].astype(np.float64) + g[1:]) / 2).astype(F32)  # exact in f32 for these formats
    assert np.all(mids.astype(np.float64) * 2 == g[:-1].astype(np.float64) + g[1:])
    pts = np.concatenate([g, mids, np.nextafter(mids, F32(np.inf)), np.nextafter(mids, F32(0)),
                          np.nextafter(g, F32(np.inf)), np.nextafter(g, F32(0))])
    return np.concatenate([pts, -pts]).astype(F32)


F32_SPECIALS = bits_f32(np.array([
    0x00000000, 0x80000000,  # +-0
    0x00000001, 0x80000001, 0x007FFFFF, 0x807FFFFF, 0x00400000,  # f32 subnormals (min, max, 2^-127)
    0x00800000, 0x80800000, 0x7F7FFFFF, 0xFF7FFFFF,  # min normal, max finite
    0x7F800000, 0xFF800000,  # +-Inf
], np.uint32))
F32_NANS = bits_f32(np.array([0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001, 0x7FC00001], np.uint32))
SUBNORMAL_EXAMPLES = np.array([1e-40, -1e-40, 1e-45, -1e-45, 1e-39], F32)


def write(name, tensors, metadata):
    """Write with the safetensors package, then re-emit its JSON header with the metadata keys sorted: the
    package stores metadata in a hash map whose order changes from run to run, and the files must be
    byte-identical on regeneration. Tensor entries and data are kept exactly as the package wrote them."""
    blob = save({k: np.ascontiguousarray(v) for k, v in tensors.items()},
                metadata={k: str(v) for k, v in metadata.items()})
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the format pads the header with spaces to 8-byte alignment
    path = os.path.join(OUT_DIR, name)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(text)) + text + blob[8 + n:])
    back = load_file(path)  # the package must read back what it wrote
    assert all(np.array_equal(back[k].view(np.uint8), np.ascontiguousarray(v).view(np.uint8))
               for k, v in tensors.items())
    return path


def gen_e2m1():
    rng = rng_for("e2m1")
    above = np.array([6.5, 7, 8, 100, 1e30, 3.4e38], F32)
    inp = np.concatenate([tie_sweep(E2M1_GRID), above, -above, F32_SPECIALS, SUBNORMAL_EXAMPLES,
                          random_magnitudes(rng, 1000), rng.uniform(-7, 7, 1000).astype(F32)])
    assert not np.isnan(inp).any()  # E2M1 has no NaN: no NaN in its encode sweep
    codes = f32_to_e2m1(inp)
    check_codec("e2m1", codes, ref_e2m1(inp))
    dc = np.arange(16, dtype=np.uint8)
    write("e2m1.safetensors", dict(decode_codes=dc, decode_values=e2m1_to_f32(dc), encode_input=inp,
                                   encode_codes=codes), dict(format="e2m1"))


def gen_e4m3():
    rng = rng_for("e4m3")
    grid = e4m3_to_f32(np.arange(0x7F, dtype=np.uint8))
    t464 = F32(464)  # the tie between 448 and the would-be 480: RNE keeps 448, above it saturates to 448
    above = np.array([448.5, 449, np.nextafter(t464, F32(0)), t464, np.nextafter(t464, F32(1e9)), 480, 500,
                      1e4, 1e30, 3.4e38], F32)
    below_min = np.array([2.0 ** -10, 2.0 ** -11, 2.0 ** -12, 1e-5, 1e-20], F32)  # 2^-10 ties to 0
    inp = np.concatenate([tie_sweep(grid), above, -above, below_min, -below_min, F32_SPECIALS, F32_NANS,
                          SUBNORMAL_EXAMPLES, random_magnitudes(rng, 1000),
                          rng.uniform(-500, 500, 500).astype(F32), rng.uniform(-0.02, 0.02, 500).astype(F32)])
    codes = f32_to_e4m3(inp)
    check_codec("e4m3", codes, ref_e4m3(inp))
    dc = np.arange(256, dtype=np.uint8)
    write("e4m3.safetensors", dict(decode_codes=dc, decode_values=e4m3_to_f32(dc), encode_input=inp,
                                   encode_codes=codes), dict(format="e4m3"))


def gen_e8m0():
    dc = np.arange(256, dtype=np.uint8)
    vals = e8m0_to_f32(dc)
    want = np.array([2.0 ** (b - 127) for b in range(255)] + [np.nan])
    assert np.array_equal(vals.astype(np.float64), want, equal_nan=True)
    write("e8m0.safetensors", dict(decode_codes=dc, decode_values=vals), dict(format="e8m0"))


def gen_bf16():
    rng = rng_for("bf16")
    # bf16 values over the whole range (subnormals, max) and the f32 ties/neighbours around them
    exps = np.arange(-133, 128, 3)
    base = np.unique(np.concatenate([np.ldexp(rng.uniform(1, 2, exps.size), exps), [2.0 ** -133, 2.0 ** -126]]))
    bfv = f32_bits(base.astype(F32)) & np.uint32(0xFFFF0000)
    bfv = np.concatenate([bfv, [0x7F7F0000, 0x7F7E0000, 0x00010000, 0x00000000]]).astype(np.uint32)
    pts = np.concatenate([bfv, bfv + 0x8000, bfv + 0x7FFF, bfv + 0x8001, bfv + 1])  # bf16, tie, tie-/+1, +1
    sweep = bits_f32(pts.astype(np.uint32))
    sweep = sweep[np.isfinite(sweep)]
    inp = np.concatenate([sweep, -sweep, F32_SPECIALS, F32_NANS, SUBNORMAL_EXAMPLES,
                          random_magnitudes(rng, 1000), rng.standard_normal(1000).astype(F32)])
    codes = f32_to_bf16_bits(inp)
    check_codec("bf16", codes, ref_bf16(inp))
    dc = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    vals = bits_f32(dc.astype(np.uint32) << 16)  # bf16 decode is exact: the code is the top 16 f32 bits
    write("bf16.safetensors", dict(decode_codes=dc, decode_values=vals, encode_input=inp, encode_codes=codes),
          dict(format="bf16"))


# ----------------------------------------------------------------------------------------------------------
# Test inputs for the format files
# ----------------------------------------------------------------------------------------------------------
def normal(rng, shape, std=1.0):
    return (rng.standard_normal(shape) * std).astype(F32)


def weight_like(rng, shape, std=0.02):
    """N(0, std) with 1% of the elements multiplied by 10 (outliers)."""
    w = normal(rng, shape, std)
    out = rng.random(shape) < 0.01
    return np.where(out, w * F32(10), w).astype(F32)


RANDOM_SHAPES = [(1, 32), (4, 64), (3, 100), (7, 33), (17, 48), (1, 1), (2, 15), (33, 20), (16, 16)]


def common_cases():
    """(random cases, edge cases): (desc, x) pairs shared by every FP4 and FP8 file."""
    rng = rng_for("cases")
    randoms = [(f"N(0,1) shape {list(s)}", normal(rng, s)) for s in RANDOM_SHAPES]
    for k in range(-6, 5):
        randoms.append((f"N(0,1) * 1e{k}, shape [3,48]", (rng.standard_normal((3, 48)) * 10.0 ** k).astype(F32)))
    cases = []

    # blocks whose amax mantissa is >= 1.75 (FLOOR saturates them to 6): row r has its anchor at columns
    # 0 and 16, so every MX block (32) and every NV block (16) has that anchor as its amax
    anchors = np.array([7.9, 7.0, 7.5, -7.99, 3.5 * 2 ** 10, 1.75 * 2 ** -10, 1.7499999, 7.9 * 2 ** -20], F32)
    x = (rng.uniform(-0.9, 0.9, (8, 32)) * np.abs(anchors)[:, None]).astype(F32)
    x[:, 0] = anchors
    x[:, 16] = -anchors
    cases.append(("amax mantissa >= 1.75 (7.9, 7, 7.5, -7.99, 1.75*2^k; 1.7499999) per row, [8,32]", x))

    x = normal(rng, (20, 40))
    x[0:16, 0:16] = 0
    x[16:20, :] = 0
    x[0:8, 32:40] = 0
    x[2:5, 3:9] = F32(-0.0)
    x[17, :] = F32(-0.0)
    cases.append(("zero blocks/tiles (some -0.0) mixed with N(0,1), shape [20,40]", x))
    cases.append(("all-zero tensor [2,32]", np.zeros((2, 32), F32)))
    cases.append(("all -0.0 tensor [1,17]", np.full((1, 17), -0.0, F32)))

    x = normal(rng, (20, 40))
    x[0, 5], x[3, 37], x[18, 20], x[19, 39] = np.nan, np.inf, -np.inf, bits_f32(0xFFC00000)
    cases.append(("NaN, +Inf, -Inf, -NaN blocks mixed with normal blocks, shape [20,40]", x))
    x = normal(rng, (2, 16))
    x[0, :] = np.inf
    x[0, ::3] = np.nan
    cases.append(("row 0 all NaN/Inf, row 1 N(0,1), shape [2,16]", x))
    cases.append(("only non-finite values, shape [1,8]", np.array([[np.nan, np.inf, -np.inf, np.nan] * 2], F32)))

    x = normal(rng, (3, 64))
    x[0, 1::7] = F32(1e-40)
    x[1, 2::5] = F32(-1e-45)
    x[2, 32:64] = (rng.uniform(-1, 1, 32) * 1e-39).astype(F32)  # a block of f32 subnormals only
    x[2, 40] = F32(1e-45)
    cases.append(("f32 subnormals (1e-40, -1e-45) mixed in; one block of only subnormals", x))
    cases.append(("whole tensor f32 subnormal, shape [2,32]",
                  (rng.uniform(-1, 1, (2, 32)) * 1e-40).astype(F32)))
    # block amax near the bottom of f32: 1.5*2^-127 and 3*2^-128 are subnormal; under RCEIL amax/6 is an
    # f32 subnormal (4.5*2^-126 / 6 = 1.5*2^-127 -> e = -126)
    tiny = np.array([4.5 * 2.0 ** -126, 2.0 ** -126, 1.5 * 2.0 ** -127, 2.0 ** -120, 7 * 2.0 ** -127,
                     3 * 2.0 ** -128, 6 * 2.0 ** -125, 5 * 2.0 ** -124], F32)
    x = (rng.uniform(-0.9, 0.9, (1, 256)) * np.repeat(tiny, 32)).astype(F32)
    x[0, ::32] = tiny
    x[0, 16::32] = -tiny
    cases.append(("tiny block amax (4.5*2^-126, 2^-126, 1.5*2^-127, 2^-120, ...), f32 subnormals, [1,256]", x))

    x = np.where(rng.random((2, 32)) < 0.5, F32(-0.0), F32(0.0)).astype(F32)
    x[0, 3:6] = [-1e-3, -0.01, 0.02]
    x[1, 30] = F32(1.0)
    cases.append(("negative zeros with a few tiny values, shape [2,32]", x))

    cases.append(("weight-like N(0,0.02), 1% x10, shape [32,64]", weight_like(rng, (32, 64))))
    cases.append(("weight-like N(0,0.02), 1% x10, shape [20,100]", weight_like(rng, (20, 100))))
    cases.append(("weight-like N(0,0.005), shape [16,64]", weight_like(rng, (16, 64), 0.005)))

    big = np.array([3.4028235e38, -3.4028235e38 / 3, 1e38, 2.0 ** 127], F32)
    x = (rng.uniform(-0.9, 0.9, (1, 64))).astype(F32)
    x[0, 0:4] = big
    x[0, 32] = F32(1.7e38)
    cases.append(("near the f32 max (f32 overflow in dequant follows f32 arithmetic), [1,64]", x))
    return randoms, cases


# --- exact ties: solve v so that the format's scaled value is exactly the target ----------------------
TIES = np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5], F32)
GRID_TARGETS = np.array([0.5, 1, 1.5, 2, 3, 4, -0.5, -1, -1.5, -2, -3, -4, 0.0, -0.0], F32)


def scaled_fn(cfg, x):
    """(x in block form, its scaled values y = what E2M1 rounds, f(v, b) = y for candidate values v in
    block b), using the oracle's own block parameters."""
    if cfg["format"] == "mxfp4":
        xb, _, _ = blockify(x, "row", MX_BLOCK)
        e, _ = mxfp4_block_params(xb, cfg["scale_mode"])
        return xb, mxfp4_scaled(xb, e), (lambda v, b: mxfp4_scaled(v[None, :], e[b:b + 1])[0])
    g = nvfp4_tensor_scale(x, cfg["nv_scaling"])
    xb, _, _ = blockify(x, cfg["blocks"], NV_BLOCK)
    _, _, m, _ = nvfp4_block_params(xb, g)
    return xb, nvfp4_scaled(xb, m), (lambda v, b: nvfp4_scaled(v[None, :], m[b:b + 1])[0])


def solve_exact(target, v0, f):
    """The f32 v nearest v0 (within 64 ulps) with f(v) == target bit for bit (so -0.0 counts), or None."""
    up, down = [F32(v0)], [F32(v0)]
    for _ in range(64):
        up.append(np.nextafter(up[-1], F32(np.inf)))
        down.append(np.nextafter(down[-1], F32(-np.inf)))
    cand = np.array([c for pair in zip(up, down) for c in pair], F32)  # v0, then outwards
    ok = np.flatnonzero(f32_bits(f(cand)) == f32_bits(F32(target)))
    return cand[ok[0]] if ok.size else None


def tie_case(cfg, shape, anchors):
    """Each block: element 0 = its anchor (the block amax), then every E2M1 tie (+-), then the grid values
    (+-, +-0), placed so that the *scaled* value is exactly the target; the rest random below the anchor.
    Ties not below the block's scaled amax are skipped (e.g. 5 under CEIL, where amax scales to <= 4)."""
    rng = rng_for("ties" + json.dumps(cfg, sort_keys=True) + str(shape))
    layout = cfg["blocks"] if cfg["format"] == "nvfp4" else "row"
    bsize = MX_BLOCK if cfg["format"] == "mxfp4" else NV_BLOCK
    x = np.zeros(shape, F32)
    xb, _, _ = blockify(x, layout, bsize)
    nblk = xb.shape[0]
    anc = np.resize(np.asarray(anchors, F32), nblk)
    xb = (rng.uniform(-0.9, 0.9, xb.shape) * anc[:, None]).astype(F32)
    xb[:, 0] = anc
    x = unblockify(xb, shape, layout, bsize).copy()
    xb, y, f = scaled_fn(cfg, x)
    before = y[:, 0].copy()
    targets = np.concatenate([TIES, -TIES, GRID_TARGETS])
    is_real = blockify(np.ones(shape, F32), layout, bsize)[0] == 1  # False on the zero padding
    placed = set()
    for b in range(nblk):
        real = list(np.flatnonzero(is_real[b])[1:])  # free real positions after the anchor
        top = abs(float(before[b]))
        for t in targets:
            if abs(float(t)) >= top or not real:
                continue
            v = solve_exact(t, F32(float(t) * abs(float(anc[b])) / top), lambda c, b=b: f(c, b))
            if v is not None:  # NVFP4 with an inexact m: some targets have no f32 v with v*m == t exactly
                xb[b, real.pop(0)] = v
                placed.add(float(t))
    assert all(float(t) in placed for t in TIES if cfg.get("scale_mode") != "ceil" or t < 4), (cfg, placed)
    x = unblockify(xb, shape, layout, bsize).copy()
    _, y2, _ = scaled_fn(cfg, x)
    assert np.array_equal(f32_bits(y2[:, 0]), f32_bits(before)), "tie placement moved a block scale"
    return x


def tie_cases(cfg):
    if cfg["format"] == "mxfp4":
        base = 4.0 if cfg["scale_mode"] == "ceil" else 6.0
        anchors = [base * 2.0 ** k for k in (0, -8, 13, -3, 100, -120, 5, -1)]
        desc = f"every E2M1 tie (+-) and grid value scaled into blocks, amax {base:g}*2^k, shape [4,64]"
        return [(desc, tie_case(cfg, (4, 64), anchors))]
    # anchors = 6 * g * 2^j give a power-of-two block scale s, so m = (1/g)/s is exact and every tie is
    # reachable; the tensor-amax block (s = 448) and the others have an inexact m (ties placed where an exact
    # f32 solution exists); the 2^-7 * 0.5 block is below the 2^-6 scale clamp (amax scales to 3)
    if cfg["nv_scaling"] == "two-level":
        g = 2.0 ** -7  # amax_t = 2688 * 2^-7 = 21
        anchors = [2688 * g] + [6 * g * f for f in (2.0 ** 8, 1, 2.0 ** -6, 8, 96, 2.0 ** -7, 0.375)]
    else:
        anchors = [6 * 2.0 ** 8, 6.0, 6 * 2.0 ** -6, 2688, 6 * 8, 1000, 0.05, 6 * 0.375]
    shape = (32, 40) if cfg["blocks"] == "tile16x16" else (4, 32)
    return [(f"every E2M1 tie (+-) and grid value scaled exactly into blocks (v*m == tie), shape {list(shape)}",
             tie_case(cfg, shape, anchors))]


def e4m3_tie_cases():
    grid = e4m3_to_f32(np.arange(0x7F, dtype=np.uint8))
    sweep = tie_sweep(grid)
    out = []
    for k in (0, -20, 10):
        x = np.concatenate([[F32(448)], sweep]).astype(F32) * F32(2.0 ** k)  # scale = 2^k exactly
        out.append((f"every E4M3 value, midpoint and neighbour, x 2^{k} (amax 448*2^{k}), [1,{x.size}]",
                    x.reshape(1, -1)))
    out.append(("tensor so small that amax/448 underflows to 0 (scale = 1), [1,4]",
                np.array([[1e-45, -1e-45, 0, 1e-45]], F32)))
    return out


STOCH_SEEDS = [0, 1, 12345, 2 ** 63 + 5, 2 ** 64 - 1]


def stochastic_cases(cfg):
    rng = rng_for("stochastic" + cfg["format"])
    cases = [(f"N(0,1) shape [4,64], seed {s}", normal(rng, (4, 64)), s) for s in STOCH_SEEDS]
    cases.append(("N(0,1) shape [3,100] ragged", normal(rng, (3, 100)), 7))
    cases.append(("N(0,1) * 1e-3 shape [7,33]", normal(rng, (7, 33), 1e-3), 2 ** 63 + 5))
    cases.append(("weight-like N(0,0.02), 1% x10, shape [16,64]", weight_like(rng, (16, 64)), 42))
    for desc, x in tie_cases(cfg):
        cases.append((desc + " (grid values stay, ties split by u)", x, 3))
    x = normal(rng, (4, 64)) * F32(100)
    x[0, :32:4] = F32(795)  # saturating elements for MX FLOOR
    x[1, 7], x[2, 40] = np.nan, -np.inf
    cases.append(("N(0,100) with NaN/Inf blocks and saturating elements", x.astype(F32), 2 ** 63 + 5))
    return cases


# ----------------------------------------------------------------------------------------------------------
# Format files
# ----------------------------------------------------------------------------------------------------------
def quantize(cfg, x, seed=None):
    if cfg["format"] == "mxfp4":
        return mxfp4_quantize(x, cfg["scale_mode"], seed)
    if cfg["format"] == "nvfp4":
        return nvfp4_quantize(x, cfg["nv_scaling"], cfg["blocks"], seed)
    assert seed is None
    return fp8_quantize(x)


def check_roundtrip(cfg, x, q):
    """dequant must equal dequantize(codes, scales) bit for bit (NaN where NaN)."""
    if cfg["format"] == "mxfp4":
        d = mxfp4_dequantize(q["codes"], q["scales"])
    elif cfg["format"] == "nvfp4":
        d = nvfp4_dequantize(q["codes"], q["scales"], q["tensor_scale"], cfg["blocks"])
    else:
        d = (e4m3_to_f32(q["codes"]) * q["tensor_scale"]).astype(F32)
    same = (f32_bits(d) == f32_bits(q["dequant"])) | (np.isnan(d) & np.isnan(q["dequant"]))
    assert same.all(), cfg


def write_format_file(name, cfg, cases):
    tensors, meta_cases = {}, []
    for n, (desc, x, seed) in enumerate(cases):
        x = np.ascontiguousarray(x, F32)
        q = quantize(cfg, x, seed)
        check_roundtrip(cfg, x, q)
        c = f"c{n:03d}"
        tensors[f"{c}.input"] = x
        if cfg["format"] == "fp8":
            tensors[f"{c}.codes"] = q["codes"].reshape(-1).astype(np.uint8)
            tensors[f"{c}.scales"] = np.zeros((0,), np.uint8)  # FP8 has no block scales: shape [0]
        else:
            tensors[f"{c}.codes"] = pack_fp4(q["codes"])
            tensors[f"{c}.scales"] = q["scales"].astype(np.uint8)
        tensors[f"{c}.tensor_scale"] = np.array([q["tensor_scale"]], F32)
        tensors[f"{c}.dequant"] = np.ascontiguousarray(q["dequant"], F32)
        meta_cases.append(dict(name=c, desc=desc, rows=int(x.shape[0]), row_len=int(x.shape[1]),
                               seed=None if seed is None else int(seed)))
    meta = dict(cfg)
    meta["rounding"] = "nearest" if all(s is None for _, _, s in cases) else "stochastic"
    meta["cases"] = json.dumps(meta_cases)
    return write(name, tensors, meta)


FORMAT_FILES = [
    ("mxfp4_floor.safetensors", dict(format="mxfp4", scale_mode="floor", blocks="row")),
    ("mxfp4_ceil.safetensors", dict(format="mxfp4", scale_mode="ceil", blocks="row")),
    ("mxfp4_even.safetensors", dict(format="mxfp4", scale_mode="even", blocks="row")),
    ("mxfp4_rceil.safetensors", dict(format="mxfp4", scale_mode="rceil", blocks="row")),
    ("nvfp4_two_level.safetensors", dict(format="nvfp4", nv_scaling="two-level", blocks="row")),
    ("nvfp4_single_level.safetensors", dict(format="nvfp4", nv_scaling="single-level", blocks="row")),
    ("nvfp4_tile16.safetensors", dict(format="nvfp4", nv_scaling="two-level", blocks="tile16x16")),
    ("fp8.safetensors", dict(format="fp8", blocks="row")),
]
STOCHASTIC_FILES = [
    ("mxfp4_stochastic.safetensors", dict(format="mxfp4", scale_mode="floor", blocks="row")),
    ("nvfp4_stochastic.safetensors", dict(format="nvfp4", nv_scaling="two-level", blocks="row")),
]


def self_checks():
    """Spot checks of the oracle against the spec's stated examples."""
    ties = np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5, 7.9, -0.1], F32)
    assert e2m1_to_f32(f32_to_e2m1(ties)).tolist() == [0, 1, 1, 2, 2, 4, 4, 6, -0.0]
    assert f32_to_e2m1(np.array([-0.1], F32))[0] == 0x8
    for s, i in [(0, 0), (1, 5), (2 ** 63 + 5, 123456), (2 ** 64 - 1, 7)]:
        assert float(uniform(s, np.array([i]))[0]) == ref_uniform(s, i)
    x = np.array([[7.9] + [0.0] * 31], F32)  # FLOOR: 7.9 -> 6
    assert mxfp4_quantize(x, "floor")["dequant"][0, 0] == 6
    amax = np.array([1.0, 1.5, 1.75, 7.9, 0.0, 3.0], F32)
    assert mx_scale_exponent(amax, "floor").tolist() == [-2, -2, -2, 0, -127, -1]
    assert mx_scale_exponent(amax, "ceil").tolist() == [-2, -1, -1, 1, -127, 0]
    assert mx_scale_exponent(amax, "even").tolist() == [-2, -2, -1, 1, -127, -1]
    assert mx_scale_exponent(amax, "rceil").tolist() == [-2, -2, -1, 1, -127, -1]
    normal_amax = np.abs(np.random.default_rng(1).standard_normal(1000).astype(F32)) + F32(1e-30)
    assert np.array_equal(mx_scale_exponent(normal_amax, "floor"),
                          np.floor(np.log2(normal_amax.astype(np.float64))).astype(np.int64) - 2)


def main():
    self_checks()
    gen_e2m1()
    gen_e4m3()
    gen_e8m0()
    gen_bf16()
    randoms, edges = common_cases()
    for name, cfg in FORMAT_FILES:
        ties = e4m3_tie_cases() if cfg["format"] == "fp8" else tie_cases(cfg)
        cases = [(d, x, None) for d, x in randoms + ties + edges]
        write_format_file(name, cfg, cases)
    for name, cfg in STOCHASTIC_FILES:
        write_format_file(name, cfg, stochastic_cases(cfg))
    for name in sorted(os.listdir(OUT_DIR)):
        if name.endswith(".safetensors"):
            print(f"{os.path.getsize(os.path.join(OUT_DIR, name)):>9}  {name}")


if __name__ == "__main__":
    main()
