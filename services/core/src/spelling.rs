//! One spelling per code.
//!
//! Clients see codes (`AUTHENTIC`, `WARNING`, `NOT_BRAND_OWNER`, …) in GraphQL answers, MQTT
//! receipts and alerts. Each code enum writes its table of spellings once, in [`spelled!`],
//! and `as_str`, `Display`, `FromStr` and serde all read that table, so no adapter spells a
//! code itself (`format!("{:?}")`, string literals) and the spellings cannot drift apart.

/// A string that names no variant of the code enum it was parsed as.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown code {0:?}")]
pub struct UnknownCode(pub String);

/// Gives a fieldless enum its spellings: `ALL`, `as_str`, `Display`, `FromStr` and serde
/// (as the bare string), all from the one table written at the call site.
macro_rules! spelled {
    ($ty:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The stable spelling clients see.
            pub const fn as_str(&self) -> &'static str {
                match self {
                    $($ty::$variant => $text),+
                }
            }
        }

        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $ty {
            type Err = $crate::spelling::UnknownCode;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $ty::ALL
                    .iter()
                    .find(|c| c.as_str() == s)
                    .copied()
                    .ok_or_else(|| $crate::spelling::UnknownCode(s.to_owned()))
            }
        }

        impl ::serde::Serialize for $ty {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $ty {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <::std::borrow::Cow<'de, str> as ::serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(::serde::de::Error::custom)
            }
        }
    };
}

pub(crate) use spelled;
