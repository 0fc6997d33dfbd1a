//! The GSM8K reward of docs/spec.md section 7, as verl's `verl/utils/reward_score/gsm8k.py` scores it
//! (which follows ReFT, Trung et al., ACL 2024).
//!
//! Only the last [`SOLUTION_CLIP_CHARS`] characters (Unicode scalar values, as Python's `len`
//! counts them) of the response are searched.
//!
//! - **strict**: the *last* match of the regular expression `#### (\-?[0-9\.\,]+)`, with every
//!   `,` and `$` removed, is the answer. `#### 1,000.` gives `1000.`, which does not equal the
//!   ground truth `1000`: the strict method also grades the format.
//! - **flexible**: every match of `(\-?[0-9\.\,]+)`; the answer is the last one that is not `.`
//!   (nothing is removed, so `42,` and `7.` stay as they are). When every match is `.`, verl's
//!   loop leaves the *first* match as the answer; that is reproduced.
//!
//! Score: 0 when there is no answer, `score` (1.0) when the answer equals the ground truth as a
//! string, `format_score` (0.0) otherwise.
//!
//! The two regular expressions are implemented by a hand-written scanner that follows Python's
//! `re.findall` semantics for them: matches are found left to right, do not overlap, and the
//! class `[0-9.,]` is ASCII only; the optional `-` is taken only when a class character follows
//! it (otherwise the match starts at the next character).

use crate::named::named_enum;

use super::error::TaskError;

/// verl's `_SOLUTION_CLIP_CHARS`: only this many trailing characters are searched.
pub const SOLUTION_CLIP_CHARS: usize = 300;
/// The marker that precedes the answer in the strict method (four `#` and one space).
pub const ANSWER_MARKER: &str = "#### ";
/// verl's default score of a correct answer.
pub const DEFAULT_CORRECT_SCORE: f64 = 1.0;
/// verl's default `format_score`: an answer that was found but is wrong.
pub const DEFAULT_FORMAT_SCORE: f64 = 0.0;
/// The score when no answer is found at all (verl returns the integer 0).
pub const NO_ANSWER_SCORE: f64 = 0.0;

named_enum! {
    /// How the answer is extracted from a response.
    ExtractMethod, "GSM8K extraction method", TaskError {
        /// The last `#### N` (verl's default, grades the format too).
        Strict => "strict",
        /// The last number anywhere in the tail.
        Flexible => "flexible",
    }
}

/// The characters of the class `[0-9\.\,]`.
fn is_number_char(c: u8) -> bool {
    c.is_ascii_digit() || c == b'.' || c == b','
}

/// The last [`SOLUTION_CLIP_CHARS`] characters of `text` (all of it when shorter).
pub fn clip_tail(text: &str) -> &str {
    match text.char_indices().rev().nth(SOLUTION_CLIP_CHARS - 1) {
        Some((start, _)) => &text[start..],
        None => text,
    }
}

/// Tries `\-?[0-9\.\,]+` at byte `at`; returns the end of the match.
fn number_at(bytes: &[u8], at: usize) -> Option<usize> {
    let first = match bytes.get(at) {
        Some(b'-') if bytes.get(at + 1).is_some_and(|&c| is_number_char(c)) => at + 1,
        Some(&c) if is_number_char(c) => at,
        _ => return None,
    };
    let mut end = first;
    while end < bytes.len() && is_number_char(bytes[end]) {
        end += 1;
    }
    Some(end)
}

/// Every match of `#### (\-?[0-9\.\,]+)` in `text`, as the captured group, left to right.
pub fn strict_matches(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let marker = ANSWER_MARKER.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i + marker.len() <= bytes.len() {
        if &bytes[i..i + marker.len()] == marker {
            let start = i + marker.len();
            if let Some(end) = number_at(bytes, start) {
                // The group is ASCII, so these are character boundaries.
                found.push(&text[start..end]);
                i = end;
                continue;
            }
        }
        i += 1;
    }
    found
}

/// Every match of `(\-?[0-9\.\,]+)` in `text`, left to right.
pub fn number_matches(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if let Some(end) = number_at(bytes, i) {
            found.push(&text[i..end]);
            i = end;
        } else {
            i += 1;
        }
    }
    found
}

/// verl's `extract_solution`: the answer the `method` finds in the response, if any.
pub fn extract_solution(response: &str, method: ExtractMethod) -> Option<String> {
    let tail = clip_tail(response);
    match method {
        ExtractMethod::Strict => strict_matches(tail)
            .last()
            .map(|m| m.replace([',', '$'], "")),
        ExtractMethod::Flexible => {
            let all = number_matches(tail);
            // verl: `for final_answer in reversed(answer): if final_answer not in ["", "."]: break`;
            // without a break the loop variable is left at the first match.
            all.iter()
                .rev()
                .find(|m| !matches!(**m, "" | "."))
                .or(all.first())
                .map(|m| (*m).to_string())
        }
    }
}

/// verl's `compute_score`: [`NO_ANSWER_SCORE`] without an answer, `score` when the extracted
/// answer equals `ground_truth` (as strings), `format_score` otherwise.
pub fn compute_gsm8k_score(
    response: &str,
    ground_truth: &str,
    method: ExtractMethod,
    format_score: f64,
    score: f64,
) -> f64 {
    match extract_solution(response, method) {
        None => NO_ANSWER_SCORE,
        Some(answer) if answer == ground_truth => score,
        Some(_) => format_score,
    }
}

/// Whether the response's answer (by `method`) equals the ground truth.
pub fn is_correct(response: &str, ground_truth: &str, method: ExtractMethod) -> bool {
    extract_solution(response, method).is_some_and(|a| a == ground_truth)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict(s: &str) -> Option<String> {
        extract_solution(s, ExtractMethod::Strict)
    }

    fn flexible(s: &str) -> Option<String> {
        extract_solution(s, ExtractMethod::Flexible)
    }

    #[test]
    fn strict_takes_the_last_marked_number_and_strips_commas() {
        assert_eq!(strict("3 + 4 = 7. #### 7"), Some("7".into()));
        assert_eq!(strict("#### 5 then #### 6"), Some("6".into()));
        assert_eq!(strict("#### 1,000"), Some("1000".into()));
        // The trailing period is part of the class: the format costs the reward.
        assert_eq!(strict("#### 1,000."), Some("1000.".into()));
        assert_eq!(strict("#### -12"), Some("-12".into()));
        assert_eq!(strict("#### 3.50"), Some("3.50".into()));
        // A '$' is not in the class, so the match fails right after the marker.
        assert_eq!(strict("#### $5"), None);
        // Exactly one space after four '#': "####5" and "####  5" do not match.
        assert_eq!(strict("####5"), None);
        assert_eq!(strict("####  5"), None);
        // Five '#' still contain "#### " from the second one.
        assert_eq!(strict("##### 8"), Some("8".into()));
        // "-" not followed by a digit: no match there, the search goes on.
        assert_eq!(strict("#### - 4 #### 9"), Some("9".into()));
        assert_eq!(strict("#### --4"), None);
        assert_eq!(strict("no marker 42"), None);
        assert_eq!(strict(""), None);
        // A lone '.' or ',' is a match of the class.
        assert_eq!(strict("#### ."), Some(".".into()));
        assert_eq!(strict("#### ,"), Some("".into()));
        // The minus sign is only optional at the start: "1-2" stops at '-'.
        assert_eq!(strict("#### 1-2"), Some("1".into()));
    }

    #[test]
    fn flexible_takes_the_last_number_that_is_not_a_dot() {
        assert_eq!(flexible("so 3 + 4 = 7."), Some("7.".into()));
        assert_eq!(flexible("the answer is 5, ok"), Some("5,".into()));
        assert_eq!(flexible("12 apples and 3 pears"), Some("3".into()));
        assert_eq!(flexible("it is 9. ."), Some("9.".into()));
        assert_eq!(flexible("1 then . and ."), Some("1".into()));
        assert_eq!(flexible("3-4"), Some("-4".into()));
        assert_eq!(flexible("x = -7"), Some("-7".into()));
        assert_eq!(flexible("#### 1,000"), Some("1,000".into()));
        assert_eq!(flexible("no digits"), None);
        // "-." is not one of verl's invalid strings.
        assert_eq!(flexible("a . b -. c ."), Some("-.".into()));
        // Only dots: verl's loop ends on the first match.
        assert_eq!(flexible("a . b ."), Some(".".into()));
    }

    #[test]
    fn only_the_last_300_characters_count() {
        let pad = "x".repeat(SOLUTION_CLIP_CHARS - 6);
        // "#### 7" is 6 characters: exactly inside the window.
        assert_eq!(strict(&format!("#### 7{pad}")), Some("7".into()));
        // One character more pushes the first '#' out: "### 7" no longer matches.
        assert_eq!(strict(&format!("#### 7{pad}x")), None);
        // The window counts characters, not bytes.
        let wide = "é".repeat(SOLUTION_CLIP_CHARS - 6);
        assert_eq!(strict(&format!("#### 7{wide}")), Some("7".into()));
        assert_eq!(strict(&format!("#### 7{wide}é")), None);
        assert_eq!(clip_tail("abc"), "abc");
        assert_eq!(clip_tail(&"y".repeat(1000)).len(), SOLUTION_CLIP_CHARS);
        // The window can cut a number: only its tail is seen.
        let cut = format!("#### 12345{}", "z".repeat(SOLUTION_CLIP_CHARS - 2));
        assert_eq!(flexible(&cut), Some("45".into()));
    }

    #[test]
    fn scores() {
        let s = |r: &str, gt: &str, m| {
            compute_gsm8k_score(r, gt, m, DEFAULT_FORMAT_SCORE, DEFAULT_CORRECT_SCORE)
        };
        assert_eq!(s("#### 72", "72", ExtractMethod::Strict), 1.0);
        assert_eq!(s("#### 72.", "72", ExtractMethod::Strict), 0.0);
        assert_eq!(s("#### 1,000", "1000", ExtractMethod::Strict), 1.0);
        assert_eq!(s("the answer is 72", "72", ExtractMethod::Strict), 0.0);
        assert_eq!(s("the answer is 72", "72", ExtractMethod::Flexible), 1.0);
        // format_score is paid for a wrong answer, never for a missing one.
        let f = |r: &str| compute_gsm8k_score(r, "72", ExtractMethod::Strict, 0.1, 1.0);
        assert_eq!(f("#### 71"), 0.1);
        assert_eq!(f("71"), NO_ANSWER_SCORE);
        assert!(is_correct("#### 72", "72", ExtractMethod::Strict));
        assert!(!is_correct("#### 720", "72", ExtractMethod::Strict));
    }

    #[test]
    fn method_names() {
        assert_eq!("strict".parse::<ExtractMethod>(), Ok(ExtractMethod::Strict));
        let err = "loose".parse::<ExtractMethod>().unwrap_err().to_string();
        assert!(err.contains("strict, flexible"), "{err}");
    }
}
