//! `named_enum!`: enums with canonical names, parsed with an error that lists the valid names.
//!
//! Every user-facing choice (format, scale mode, schedule kind, preset, RIN policy, SRDD metric,
//! hardware-error model) is one of these. The error type given to the macro must have a variant
//! `UnknownName { what: &'static str, value: String, valid: String }`.

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
                    _ => Err($err::UnknownName {
                        what: $what,
                        value: s.to_string(),
                        valid: Self::valid_names(),
                    }),
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
