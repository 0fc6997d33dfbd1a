// Error statistics of x against its fake-quantized q, in two passes over the blocks, bit-identical
// to the plain Rust reference core/src/error_stats.rs (see its module docs for the definitions and
// for how the f32 block sums relate to the f64 metrics of `ErrorMetrics::compute`).
//
// partials: PARTIAL_WORDS = 10 u32 per block: count, non_finite, deadzone, saturated, then the
// f32 bits of max |q|, max |q - x|, sum x^2, sum (q - x)^2, sum |q - x|, sum |q - x| / (|x| + 1e-10).

const PARTIAL_WORDS: u32 = 10u;
const F32_RELATIVE_EPS: u32 = 0x2edbe6ffu; // 1e-10f32

// Pass 1 per block: sums in f32 in element order, maxima, counts.
@compute @workgroup_size(64)
fn stats_pass1(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let k = block_index(wid, lid);
    if (k >= params.num_blocks) {
        return;
    }
    let r = block_range(k);
    var count = 0u;
    var non_finite = 0u;
    var deadzone = 0u;
    var max_q = 0u;
    var max_err = 0u;
    var sum_x2 = 0u;
    var sum_err2 = 0u;
    var sum_abs = 0u;
    var sum_rel = 0u;
    for (var i = r.x; i < r.y; i = i + 1u) {
        let a = x[i];
        let b = q[i];
        if (!is_finite_bits(a) || !is_finite_bits(b)) {
            non_finite = non_finite + 1u;
            continue;
        }
        count = count + 1u;
        let e = sf_add(b, a ^ SIGN_BIT) & ABS_MASK;
        sum_x2 = sf_add(sum_x2, sf_mul(a, a));
        sum_err2 = sf_add(sum_err2, sf_mul(e, e));
        sum_abs = sf_add(sum_abs, e);
        sum_rel = sf_add(sum_rel, sf_div(e, sf_add(a & ABS_MASK, F32_RELATIVE_EPS)));
        max_err = max(max_err, e);
        max_q = max(max_q, b & ABS_MASK);
        if ((a & ABS_MASK) != 0u && (b & ABS_MASK) == 0u) {
            deadzone = deadzone + 1u;
        }
    }
    let o = k * PARTIAL_WORDS;
    partials[o] = count;
    partials[o + 1u] = non_finite;
    partials[o + 2u] = deadzone;
    partials[o + 3u] = 0u;
    partials[o + 4u] = max_q;
    partials[o + 5u] = max_err;
    partials[o + 6u] = sum_x2;
    partials[o + 7u] = sum_err2;
    partials[o + 8u] = sum_abs;
    partials[o + 9u] = sum_rel;
    atomicMax(&globals[1], max_q);
    atomicMax(&globals[2], max_err);
}

// floor(t) clamped to [0, bins - 1] for f32 bits t (not NaN).
fn bin_of(t: u32, bins: u32) -> u32 {
    if ((t & SIGN_BIT) != 0u || t < ONE_BITS) {
        return 0u;
    }
    let e = (t >> 23u) - 127u; // t >= 1
    if (e >= 11u) {
        return bins - 1u; // t >= 2048 > MAX_HISTOGRAM_BINS
    }
    return min(sf_sig(t) >> (23u - e), bins - 1u);
}

// Pass 2 per block, after the host has read the global maxima: saturation count and histogram of
// d = q - x, bin floor(d * scale + bins / 2).
@compute @workgroup_size(64)
fn stats_pass2(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let k = block_index(wid, lid);
    if (k >= params.num_blocks) {
        return;
    }
    let r = block_range(k);
    var saturated = 0u;
    for (var i = r.x; i < r.y; i = i + 1u) {
        let a = x[i];
        let b = q[i];
        if (!is_finite_bits(a) || !is_finite_bits(b)) {
            continue;
        }
        if ((b & ABS_MASK) >= params.sat_threshold) {
            saturated = saturated + 1u;
        }
        let d = sf_add(b, a ^ SIGN_BIT);
        let t = sf_add(sf_mul(d, params.hist_scale), params.hist_half);
        atomicAdd(&hist[bin_of(t, params.hist_bins)], 1u);
    }
    partials[k * PARTIAL_WORDS + 3u] = saturated;
}
