//! The C allocator's settings for tensor-sized buffers (glibc on Linux).
//!
//! Every operation of the CPU backend returns a new buffer of activation size (megabytes at
//! training shapes), and frees its inputs' soon after. glibc's defaults hand such buffers back to
//! the kernel: allocations from 128 KiB (raised on the fly, up to 32 MiB) get their own `mmap`,
//! and free memory above 128 KiB at the top of the heap is returned. The next buffer of the same
//! size then faults in fresh zeroed pages, a page fault per 4 KiB. [`configure_allocator`] keeps
//! buffers under [`MMAP_THRESHOLD`] on the heap and up to [`TRIM_THRESHOLD`] of free heap for
//! reuse: `cargo bench -p aqn-core --bench qwen2_train` (forward_backward, 2 threads) went from
//! 6.2k to 7.1k tokens/s with it (the same settings through glibc's `MALLOC_*_` variables).

/// Allocations from this size get their own memory map (returned to the kernel when freed):
/// glibc's own upper bound for its dynamic threshold. Larger ones are rare (a whole
/// large-vocabulary logits tensor) and live long enough that a map costs little.
pub const MMAP_THRESHOLD: usize = 32 << 20;

/// Free memory at the top of the heap kept for reuse, at most (the excess is returned).
pub const TRIM_THRESHOLD: usize = 256 << 20;

/// The glibc environment variables that set the same; when any is set, the user's choice stands.
const GLIBC_VARIABLES: [&str; 3] = [
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
];

/// Sets glibc's `M_MMAP_THRESHOLD` to [`MMAP_THRESHOLD`] and `M_TRIM_THRESHOLD` to
/// [`TRIM_THRESHOLD`], unless one of glibc's `MALLOC_*_` variables is set; returns whether it did.
/// Call it at the start of a program. A no-op elsewhere than Linux with glibc.
pub fn configure_allocator() -> bool {
    if GLIBC_VARIABLES
        .iter()
        .any(|v| std::env::var_os(v).is_some())
    {
        return false;
    }
    set_thresholds()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_thresholds() -> bool {
    let as_int = |v: usize| libc::c_int::try_from(v).expect("thresholds fit a C int");
    // SAFETY: mallopt only changes the allocator's parameters; any value is valid.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, as_int(MMAP_THRESHOLD)) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, as_int(TRIM_THRESHOLD)) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_thresholds() -> bool {
    false
}
