//! Sizes the commands check before they allocate anything: a value the user gives (`--steps`,
//! `--elements`, a `config.json`'s sizes, an input file) that would make a command grow past what
//! it can print or the machine can hold is refused with the flag, the value and the limit, instead
//! of growing until the allocator aborts.
//!
//! Two kinds of limit: fixed ones for outputs meant to be read ([`ensure_at_most`]: a schedule of
//! ten billion printed steps is never what was meant), and the machine's physical memory for
//! buffers ([`ensure_fits_memory`]: a tensor of 10^10 values cannot be generated on a 24 GB
//! machine, whatever the flag allows).

use std::path::Path;

use anyhow::{Result, bail};

/// Refuses `value` of `what` (a flag or setting, named as the user wrote it) above `limit`
/// `unit`s; `why` says what the limit protects.
pub fn ensure_at_most(what: &str, value: u128, limit: u128, unit: &str, why: &str) -> Result<()> {
    if value > limit {
        bail!("{what} = {value} is above the limit of {limit} {unit}: {why}");
    }
    Ok(())
}

/// The machine's physical memory in bytes (`MemTotal` of `/proc/meminfo`); `None` where it cannot
/// be read (the memory checks are then skipped).
pub fn physical_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line
        .trim_start_matches("MemTotal:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

/// `bytes` as GB with two decimals.
pub fn gb(bytes: u128) -> String {
    format!("{:.2} GB", bytes as f64 / 1e9)
}

/// Refuses a buffer of `bytes` (for `what`, with the flag or file that asks for it) larger than
/// the machine's physical memory.
pub fn ensure_fits_memory(what: &str, bytes: u128) -> Result<()> {
    if let Some(total) = physical_memory()
        && bytes > u128::from(total)
    {
        bail!(
            "{what} needs {} of memory, more than this machine has ({}); give a smaller size",
            gb(bytes),
            gb(u128::from(total))
        );
    }
    Ok(())
}

/// Refuses an input file (given as `flag`) that a command reads whole into memory when it is
/// larger than the machine's physical memory (times `copies`, the buffers the command holds per
/// byte of the file).
pub fn ensure_file_fits(flag: &str, path: &Path, copies: u128) -> Result<()> {
    if let Ok(meta) = std::fs::metadata(path)
        && meta.is_file()
    {
        ensure_fits_memory(
            &format!(
                "{flag} {} ({} on disk, read whole)",
                path.display(),
                gb(u128::from(meta.len()))
            ),
            u128::from(meta.len()) * copies,
        )?;
    }
    Ok(())
}

/// The product of `dims` (the elements of a tensor of that shape), or `None` when it overflows.
pub fn checked_elements(dims: &[usize]) -> Option<u128> {
    dims.iter()
        .try_fold(1u128, |acc, &d| acc.checked_mul(d as u128))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_name_the_value_and_the_limit() {
        ensure_at_most("--steps", 10, 10, "steps", "x").unwrap();
        let e = ensure_at_most("--steps", 11, 10, "steps", "the table is printed")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "--steps = 11 is above the limit of 10 steps: the table is printed"
        );
        assert!(physical_memory().is_some_and(|m| m > 1 << 20));
        let e = ensure_fits_memory("--elements 1e30", 1u128 << 100)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--elements 1e30") && e.contains("GB"), "{e}");
        assert_eq!(checked_elements(&[2, 3, 4]), Some(24));
        assert_eq!(
            checked_elements(&[usize::MAX, usize::MAX, usize::MAX]),
            None
        );
    }
}
