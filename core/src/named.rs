//! `named_enum!`: enums with canonical names, parsed with an error that lists the valid names.
//!
//! Every user-facing choice (format, scale mode, schedule kind, preset, RIN policy, SRDD metric,
//! hardware-error model) is one of these. A name that matches nothing is an [`UnknownName`], the
//! one error type of a refused name; the error type given to the macro wraps it (a variant
//! `UnknownName(#[from] UnknownName)`), so every module's error can carry it.

/// A name that is not one of the accepted names: what was parsed, the text, and the valid names.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{value}`; valid choices: {valid}")]
pub struct UnknownName {
    /// What was being parsed (`"format"`, `"RIN policy"`).
    pub what: &'static str,
    /// The rejected text.
    pub value: String,
    /// The accepted names, comma separated.
    pub valid: String,
}

impl UnknownName {
    /// `value` refused as a `what`, with the accepted names.
    pub fn new(what: &'static str, value: impl Into<String>, valid: impl Into<String>) -> Self {
        Self {
            what,
            value: value.into(),
            valid: valid.into(),
        }
    }
}

/// Declares an enum with canonical names (plus optional aliases), `FromStr`/`Display`, serde by
/// name, `ALL`, `name()` and `valid_names()`. Parsing is case-insensitive and ignores surrounding
/// whitespace; a name that matches nothing gives `$err::UnknownName` listing the canonical names.
///
/// ```ignore
/// named_enum! {
///     /// A number format.
///     QuantFormat, "format", FormatError {
///         Mxfp4 => "mxfp4",
///         Fp8 => "fp8" | "e4m3",
///     }
/// }
/// ```
macro_rules! named_enum {
    (
        $(#[$meta:meta])* $name:ident, $what:literal, $err:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal $(| $alias:literal)* ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The canonical name.
            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// The canonical names, comma separated (for error messages and `--help`).
            pub fn valid_names() -> String {
                [$($text),+].join(", ")
            }
        }

        impl core::str::FromStr for $name {
            type Err = $err;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let lower = s.trim().to_ascii_lowercase();
                match lower.as_str() {
                    $( $text $(| $alias)* => Ok($name::$variant), )+
                    _ => Err($err::from($crate::named::UnknownName::new(
                        $what,
                        s,
                        Self::valid_names(),
                    ))),
                }
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl TryFrom<String> for $name {
            type Error = $err;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.name().to_string()
            }
        }
    };
}

pub(crate) use named_enum;
