//! A set of decoder-layer indices written as ranges: `14-17`, `10-13,18-21`, `0,27`.

use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Serialize};

use super::RinError;

/// Layer indices as inclusive ranges, in the order written. Serialized as its text form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LayerSet {
    ranges: Vec<(usize, usize)>,
}

impl LayerSet {
    /// The inclusive range `first..=last` (`first <= last`).
    pub fn range(first: usize, last: usize) -> Result<Self, RinError> {
        if first > last {
            return Err(RinError::BadLayerList {
                text: format!("{first}-{last}"),
                why: format!("the range {first}-{last} is empty (first > last)"),
            });
        }
        Ok(Self {
            ranges: vec![(first, last)],
        })
    }

    /// Whether `layer` is in the set.
    pub fn contains(&self, layer: usize) -> bool {
        self.ranges.iter().any(|&(a, b)| (a..=b).contains(&layer))
    }

    /// Refuses any index that a model of `num_layers` layers does not have.
    pub fn check(&self, num_layers: usize) -> Result<(), RinError> {
        match self.ranges.iter().map(|&(_, b)| b).max() {
            Some(last) if last >= num_layers => Err(RinError::LayerOutOfRange {
                layer: last,
                num_layers,
            }),
            _ => Ok(()),
        }
    }

    /// The indices, ascending and without duplicates.
    pub fn indices(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self.ranges.iter().flat_map(|&(a, b)| a..=b).collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

impl FromStr for LayerSet {
    type Err = RinError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: String| RinError::BadLayerList {
            text: s.to_string(),
            why,
        };
        let index = |t: &str| {
            t.trim()
                .parse::<usize>()
                .map_err(|_| bad(format!("`{}` is not a layer index", t.trim())))
        };
        let mut ranges = Vec::new();
        for part in s.split(',') {
            if part.trim().is_empty() {
                return Err(bad("an empty entry".into()));
            }
            let (a, b) = match part.split_once('-') {
                Some((a, b)) => (index(a)?, index(b)?),
                None => {
                    let i = index(part)?;
                    (i, i)
                }
            };
            if a > b {
                return Err(bad(format!("the range {a}-{b} is empty (first > last)")));
            }
            ranges.push((a, b));
        }
        Ok(Self { ranges })
    }
}

impl fmt::Display for LayerSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .ranges
            .iter()
            .map(|&(a, b)| {
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                }
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

impl TryFrom<String> for LayerSet {
    type Error = RinError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<LayerSet> for String {
    fn from(v: LayerSet) -> String {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_display_contains() {
        let s: LayerSet = "10-13, 18-21,27".parse().unwrap();
        assert_eq!(s.to_string(), "10-13,18-21,27");
        assert!(s.contains(10) && s.contains(21) && s.contains(27));
        assert!(!s.contains(14) && !s.contains(9));
        assert_eq!(s.indices().len(), 9);
        s.check(28).unwrap();
        let err = s.check(27).unwrap_err().to_string();
        assert!(
            err.contains("layer 27 is out of range") && err.contains("27 layers"),
            "{err}"
        );
    }

    #[test]
    fn refusals_name_the_text() {
        for (text, needle) in [
            ("17-14", "17-14"),
            ("a-3", "`a`"),
            ("1,,2", "empty entry"),
            ("", "empty entry"),
            ("-3", "``"),
        ] {
            let err = text.parse::<LayerSet>().unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
