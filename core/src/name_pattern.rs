//! Glob patterns over parameter and module names (`model.layers.*.mlp.*`), for the exclusion lists
//! of quantization and the targets of AQN.
//!
//! Syntax: `*` matches any run of characters (dots included), `?` exactly one character; every
//! other character matches itself. A pattern must match the **whole** name:
//! `model.layers.1?.input_layernorm.weight` selects layers 10-19, `*.mlp.*` every MLP tensor.

use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A refused pattern.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum NamePatternError {
    /// Empty, or containing whitespace.
    #[error(
        "name pattern `{pattern}` is refused: {reason} (write a glob such as `model.layers.*.mlp.*`, \
         `*` = any characters, `?` = one character)"
    )]
    Invalid {
        /// The pattern as written.
        pattern: String,
        /// Why.
        reason: &'static str,
    },
}

/// A validated glob over names. Serialized as its text.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NamePattern {
    text: String,
}

impl NamePattern {
    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern matches all of `name`.
    pub fn matches(&self, name: &str) -> bool {
        glob_match(self.text.as_bytes(), name.as_bytes())
    }
}

/// Iterative glob matching with single-star backtracking (linear in practice, no recursion).
fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                // Let the last star swallow one more character and retry.
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

impl FromStr for NamePattern {
    type Err = NamePatternError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason| NamePatternError::Invalid {
            pattern: s.to_string(),
            reason,
        };
        if s.is_empty() {
            return Err(bad("it is empty"));
        }
        if s.chars().any(char::is_whitespace) {
            return Err(bad("it contains whitespace"));
        }
        Ok(Self {
            text: s.to_string(),
        })
    }
}

impl TryFrom<String> for NamePattern {
    type Error = NamePatternError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<NamePattern> for String {
    fn from(p: NamePattern) -> String {
        p.text
    }
}

impl fmt::Display for NamePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, n: &str) -> bool {
        p.parse::<NamePattern>().unwrap().matches(n)
    }

    #[test]
    fn globs_match_whole_names() {
        assert!(m(
            "model.layers.*.mlp.*",
            "model.layers.3.mlp.up_proj.weight"
        ));
        assert!(!m(
            "model.layers.*.mlp.*",
            "model.layers.3.self_attn.q_proj.weight"
        ));
        assert!(m(
            "*input_layernorm*",
            "model.layers.12.input_layernorm.weight"
        ));
        assert!(m("model.layers.1?.*", "model.layers.14.mlp.up_proj.weight"));
        assert!(!m("model.layers.1?.*", "model.layers.1.mlp.up_proj.weight"));
        assert!(m("lm_head.weight", "lm_head.weight"));
        assert!(
            !m("lm_head", "lm_head.weight"),
            "a pattern matches the whole name"
        );
        assert!(m("*", ""));
        assert!(m("a*b*c", "axxbyyc") && !m("a*b*c", "axxbyy"));
        assert!(m("**.weight", "x.weight"));
    }

    #[test]
    fn refusals_name_the_pattern() {
        let err = "".parse::<NamePattern>().unwrap_err().to_string();
        assert!(err.contains("``") && err.contains("empty"), "{err}");
        let err = "a b".parse::<NamePattern>().unwrap_err().to_string();
        assert!(err.contains("`a b`") && err.contains("whitespace"), "{err}");
        let err = serde_json::from_str::<NamePattern>("\"\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("empty"), "{err}");
    }
}
