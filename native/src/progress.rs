//! Progress bars on stderr (hidden when stderr is not a terminal, so logs and tests stay clean).

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `len` items with a message, elapsed time and ETA.
pub fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg:>12} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

/// Prints a line above the bar, or plainly on stderr when the bar is hidden (not a terminal), so
/// logs keep every line.
pub fn line(pb: &ProgressBar, msg: impl AsRef<str>) {
    if pb.is_hidden() {
        eprintln!("{}", msg.as_ref());
    } else {
        pb.println(msg.as_ref());
    }
}
