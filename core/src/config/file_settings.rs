//! The settings of a TOML configuration file with where each one is written, so that an error
//! about a setting can name the file, the dotted key and the line and column.
//!
//! The typed configuration is resolved from a merged document (profile, preset, file, `--set`s),
//! where the file's spans are lost and serde's message says only `invalid type: string "eight",
//! expected usize`. [`ConfigFile::first_rejected`] finds the setting of the file that a
//! resolution rejects, by resolving the file's settings one more at a time as overrides (the way
//! `TrainConfig::resolve` finds the `--set` that broke the schema), and [`ConfigFile::locate`]
//! names its place: `run.toml line 3, column 5: rollout.n = "eight"`.

use std::collections::BTreeMap;

use thiserror::Error;
use toml::Value;
use toml::de::{DeTable, DeValue};

/// A configuration file that is not TOML.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{path} is not a valid TOML file: {message}")]
pub struct ConfigFileError {
    /// The file.
    pub path: String,
    /// The parser's message (with the line and column).
    pub message: String,
}

/// One setting: a value that is not a table, under its dotted key.
#[derive(Clone, Debug, PartialEq)]
pub struct FileSetting {
    /// `rollout.n`.
    pub key: String,
    /// The value as written.
    pub value: Value,
    /// 1-based line of the value.
    pub line: usize,
    /// 1-based column (in characters) of the value.
    pub column: usize,
}

impl FileSetting {
    /// The setting as a `--set` override (`rollout.n="eight"`), which resolves to the same value.
    pub fn as_override(&self) -> String {
        format!("{}={}", self.key, self.value)
    }
}

/// A parsed configuration file: its path and its settings in the order they are written.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigFile {
    /// The file, as named in messages.
    pub path: String,
    /// Every setting (tables are walked; arrays are settings).
    pub settings: Vec<FileSetting>,
}

impl ConfigFile {
    /// Parses `text` (named `path` in messages).
    pub fn parse(path: &str, text: &str) -> Result<Self, ConfigFileError> {
        let refuse = |message: String| ConfigFileError {
            path: path.to_string(),
            message,
        };
        let spanned = DeTable::parse(text).map_err(|e| refuse(e.to_string()))?;
        let values: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| refuse(e.to_string()))?;
        let mut settings = Vec::new();
        walk(spanned.get_ref(), "", text, &mut settings);
        let by_key: BTreeMap<String, Value> = flatten(&values, "");
        for s in &mut settings {
            if let Some(v) = by_key.get(&s.key) {
                s.value = v.clone();
            }
        }
        settings.sort_by_key(|s| (s.line, s.column));
        Ok(Self {
            path: path.to_string(),
            settings,
        })
    }

    /// `FILE line L, column C: KEY = VALUE`.
    pub fn locate(&self, setting: &FileSetting) -> String {
        format!(
            "{} line {}, column {}: {} = {}",
            self.path, setting.line, setting.column, setting.key, setting.value
        )
    }

    /// The first setting (in file order) whose addition makes `rejects` answer: `rejects` is
    /// called with the settings up to and including each one in turn and returns the rejection
    /// message, or `None` while they are accepted. `None` when every prefix is accepted.
    pub fn first_rejected(
        &self,
        mut rejects: impl FnMut(&[FileSetting]) -> Option<String>,
    ) -> Option<(&FileSetting, String)> {
        (0..self.settings.len())
            .find_map(|i| rejects(&self.settings[..=i]).map(|message| (&self.settings[i], message)))
    }

    /// The setting whose dotted key appears in `message` (the longest such key): an error that
    /// names a setting without saying where it was written.
    pub fn mentioned_in(&self, message: &str) -> Option<&FileSetting> {
        self.settings
            .iter()
            .filter(|s| {
                message.match_indices(&s.key).any(|(i, _)| {
                    let before = message[..i].chars().next_back();
                    let after = message[i + s.key.len()..].chars().next();
                    let part = |c: Option<char>| {
                        c.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.')
                    };
                    !part(before) && !part(after)
                })
            })
            .max_by_key(|s| s.key.len())
    }
}

/// The leaves of `table` under `prefix`, with the place of each value.
fn walk(table: &DeTable<'_>, prefix: &str, text: &str, out: &mut Vec<FileSetting>) {
    for (key, value) in table.iter() {
        let dotted = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        match value.get_ref() {
            DeValue::Table(t) => walk(t, &dotted, text, out),
            _ => {
                let (line, column) = line_column(text, value.span().start);
                out.push(FileSetting {
                    key: dotted,
                    value: Value::Boolean(false),
                    line,
                    column,
                });
            }
        }
    }
}

/// Every non-table value of `table` by its dotted key.
fn flatten(table: &toml::Table, prefix: &str) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for (k, v) in table {
        let dotted = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            Value::Table(t) => out.extend(flatten(t, &dotted)),
            other => {
                out.insert(dotted, other.clone());
            }
        }
    }
    out
}

/// The 1-based line and column (in characters) of byte `offset` of `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# a run\n[rollout]\ntemperature = 0.7\nn = \"eight\"\n\n[algorithm.kl]\ncoef = 0.1\n[trainer]\nsave_freq = 5\nlayers = [1, 2]\n";

    #[test]
    fn settings_with_their_place() {
        let f = ConfigFile::parse("run.toml", TEXT).unwrap();
        let keys: Vec<&str> = f.settings.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "rollout.temperature",
                "rollout.n",
                "algorithm.kl.coef",
                "trainer.save_freq",
                "trainer.layers"
            ]
        );
        let n = &f.settings[1];
        assert_eq!((n.line, n.column), (4, 5));
        assert_eq!(n.value, Value::String("eight".into()));
        assert_eq!(n.as_override(), "rollout.n=\"eight\"");
        assert_eq!(
            f.locate(n),
            "run.toml line 4, column 5: rollout.n = \"eight\""
        );
        assert_eq!(f.settings[4].as_override(), "trainer.layers=[1, 2]");
        // The first prefix that a check rejects names the setting.
        let (bad, why) = f
            .first_rejected(|prefix| {
                prefix
                    .iter()
                    .find(|s| s.value.is_str())
                    .map(|s| format!("{} is a string", s.key))
            })
            .unwrap();
        assert_eq!(
            (bad.key.as_str(), why.as_str()),
            ("rollout.n", "rollout.n is a string")
        );
        assert!(f.first_rejected(|_| None).is_none());
        // A message naming a key finds it, never a longer or shorter key by accident.
        let m = f.mentioned_in("algorithm.kl.coef = 0.1 has no effect with kl.placement = none");
        assert_eq!(m.unwrap().key, "algorithm.kl.coef");
        assert!(f.mentioned_in("rollout.nn is unknown").is_none());
    }

    #[test]
    fn syntax_errors_name_the_file_and_line() {
        let e = ConfigFile::parse("bad.toml", "[rollout]\nn = = 3\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("bad.toml is not a valid TOML file"),
            "{e}"
        );
        assert!(e.to_string().contains("line 2"), "{e}");
    }
}
