//! `--set key=value` overrides on a TOML document, before it is deserialized into a typed config.
//!
//! `key` is a dotted path (`algorithm.clip_high`, `aqn.schedule.sigma_start`); `value` is read as
//! a TOML value (`0.28`, `true`, `"nvfp4"`, `[14, 15]`, `{ kind = "linear" }`) and, if that fails,
//! as a bare string (`--set quant.format=nvfp4`). Unknown keys are reported by the typed
//! deserialization that follows (every config struct denies unknown fields), which names them and
//! lists the valid ones.

use thiserror::Error;
use toml::{Table, Value};

/// A malformed override.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum OverrideError {
    /// Not of the form `key=value`.
    #[error("override `{0}` is not of the form key=value (e.g. --set algorithm.clip_high=0.28)")]
    NoEquals(String),
    /// An empty path segment.
    #[error("override `{0}` has an empty key segment")]
    EmptyKey(String),
    /// The path runs through a value that is not a table.
    #[error("override `{text}`: `{prefix}` is a {kind}, not a table, so it has no key `{key}`")]
    NotATable {
        /// The whole override.
        text: String,
        /// The path up to the offending segment.
        prefix: String,
        /// The segment.
        key: String,
        /// What `prefix` is.
        kind: &'static str,
    },
}

/// Parses the value part of an override.
fn parse_value(text: &str) -> Value {
    let doc = format!("v = {text}");
    match doc.parse::<Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| Value::String(text.to_string())),
        Err(_) => Value::String(text.to_string()),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::Integer(_) => "integer",
        Value::Float(_) => "float",
        Value::Boolean(_) => "boolean",
        Value::Datetime(_) => "datetime",
        Value::Array(_) => "array",
        Value::Table(_) => "table",
    }
}

/// Applies one `key=value` override to `doc`, creating missing tables on the way.
pub fn apply_override(doc: &mut Table, text: &str) -> Result<(), OverrideError> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| OverrideError::NoEquals(text.to_string()))?;
    let segments: Vec<&str> = key.trim().split('.').map(str::trim).collect();
    if segments.iter().any(|s| s.is_empty()) {
        return Err(OverrideError::EmptyKey(text.to_string()));
    }
    let (last, parents) = segments
        .split_last()
        .expect("split gives at least one segment");
    let mut table = doc;
    for (i, seg) in parents.iter().enumerate() {
        let entry = table
            .entry(seg.to_string())
            .or_insert_with(|| Value::Table(Table::new()));
        let k = kind(entry);
        table = match entry {
            Value::Table(t) => t,
            _ => {
                return Err(OverrideError::NotATable {
                    text: text.to_string(),
                    prefix: segments[..=i].join("."),
                    key: segments[i + 1].to_string(),
                    kind: k,
                });
            }
        };
    }
    table.insert(last.to_string(), parse_value(value.trim()));
    Ok(())
}

/// Merges `over` into `base` recursively: tables merge key by key, other values replace.
pub fn merge(base: &mut Table, over: Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_paths() {
        let mut doc: Table = "[a]\nx = 1\n".parse().unwrap();
        apply_override(&mut doc, "a.x=2.5").unwrap();
        apply_override(&mut doc, "a.y = nvfp4").unwrap();
        apply_override(&mut doc, "b.c.d=[1, 2]").unwrap();
        apply_override(&mut doc, "a.z=\"quoted\"").unwrap();
        apply_override(&mut doc, "a.w=true").unwrap();
        assert_eq!(doc["a"]["x"].as_float(), Some(2.5));
        assert_eq!(doc["a"]["y"].as_str(), Some("nvfp4"));
        assert_eq!(doc["a"]["z"].as_str(), Some("quoted"));
        assert_eq!(doc["a"]["w"].as_bool(), Some(true));
        assert_eq!(doc["b"]["c"]["d"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn malformed_overrides_name_themselves() {
        let mut doc: Table = "[a]\nx = 1\n".parse().unwrap();
        assert_eq!(
            apply_override(&mut doc, "a.x").unwrap_err().to_string(),
            "override `a.x` is not of the form key=value (e.g. --set algorithm.clip_high=0.28)"
        );
        assert!(
            apply_override(&mut doc, "a..x=1")
                .unwrap_err()
                .to_string()
                .contains("empty key segment")
        );
        let e = apply_override(&mut doc, "a.x.y=1").unwrap_err().to_string();
        assert!(
            e.contains("`a.x` is a integer") || e.contains("`a.x` is a"),
            "{e}"
        );
    }

    #[test]
    fn merge_is_recursive() {
        let mut base: Table = "[a]\nx = 1\ny = 2\n".parse().unwrap();
        merge(&mut base, "[a]\ny = 3\n[b]\nz = 4\n".parse().unwrap());
        assert_eq!(base["a"]["x"].as_integer(), Some(1));
        assert_eq!(base["a"]["y"].as_integer(), Some(3));
        assert_eq!(base["b"]["z"].as_integer(), Some(4));
    }
}
