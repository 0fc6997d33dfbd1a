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

/// Declares an enum with canonical names (plus optional aliases), `ALL`, `name()`, and through
/// [`named_traits!`] `valid_names()`, `FromStr`/`Display` and serde by name. Parsing is
/// case-insensitive and ignores surrounding whitespace; a name that matches nothing gives
/// `$err::UnknownName` listing the canonical names.
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

            /// The variant of a lowercase name or alias.
            fn from_name(name: &str) -> Option<Self> {
                match name {
                    $( $text $(| $alias)* => Some($name::$variant), )+
                    _ => None,
                }
            }
        }

        $crate::named::named_traits!($name, $what, $err);
    };
}

/// What [`named_enum!`] derives from an enum's `ALL`, `name()` and `from_name(lowercase) ->
/// Option<Self>`, for enums whose names are built otherwise (the hardware-noise sites and the
/// quantized modules, from the projections' names): `valid_names()`, `FromStr` (case-insensitive,
/// trimmed; a name that matches nothing gives `$err::UnknownName` listing `ALL`'s names),
/// `Display`, and the conversions to and from `String` that serde goes through
/// (`#[serde(try_from = "String", into = "String")]`).
macro_rules! named_traits {
    ($name:ident, $what:literal, $err:ident) => {
        impl $name {
            /// The canonical names, comma separated (for error messages and `--help`).
            pub fn valid_names() -> String {
                Self::ALL
                    .iter()
                    .map(|v| v.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        }

        impl core::str::FromStr for $name {
            type Err = $err;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::from_name(&s.trim().to_ascii_lowercase()).ok_or_else(|| {
                    $err::from($crate::named::UnknownName::new(
                        $what,
                        s,
                        Self::valid_names(),
                    ))
                })
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
pub(crate) use named_traits;
