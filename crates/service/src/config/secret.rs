//! Secret settings (passwords, tokens): held in [`secrecy`]'s [`SecretString`] (zeroed when
//! dropped, read only through [`ExposeSecret::expose_secret`]), never printed: `Debug` shows
//! `[redacted]`, a set secret refuses to be serialised, and a value of the wrong type is refused
//! by its type alone (serde's own message would quote it: "invalid type: integer `…`").

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A secret setting: a string, empty when unset.
#[derive(Clone, Default)]
pub struct Secret(SecretString);

impl Secret {
    /// A secret from a string.
    pub fn new(value: impl Into<String>) -> Self {
        Self(SecretString::from(value.into()))
    }

    /// True when unset.
    pub fn is_empty(&self) -> bool {
        self.0.expose_secret().is_empty()
    }
}

impl ExposeSecret<str> for Secret {
    /// The secret value; call only where it is sent, never where it is logged.
    fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

/// Equal values: for comparing whole settings (tests, reloads), not for checking credentials
/// (the producer's bearer token check is constant-time, with `subtle`).
impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.expose_secret() == other.expose_secret()
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_empty() {
            "[unset]"
        } else {
            "[redacted]"
        })
    }
}

/// An unset secret serialises as an empty string (the settings' defaults are read that way); a
/// set one refuses, so a secret never leaves by serialisation.
impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.is_empty() {
            serializer.serialize_str("")
        } else {
            Err(serde::ser::Error::custom("a secret is never serialised"))
        }
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // `deserialize_any`, so that a value of another type reaches a `visit_*` below and is
        // refused by its type: asking for a string would let config turn a number into one.
        deserializer.deserialize_any(SecretVisitor)
    }
}

/// Deserialises a list of strings that may hold secrets (`kafka_extra_properties`, whose
/// entries may be `sasl.password=...`) and, like [`Secret`], refuses a wrongly typed value
/// without quoting it. Use with `#[serde(deserialize_with = "secret_list")]`.
pub(crate) fn secret_list<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    deserializer.deserialize_any(ListVisitor)
}

/// The refusal of a value of the wrong type, naming the types only.
fn refusal<E: de::Error>(want: &str, found: &str) -> E {
    E::custom(format!(
        "expected {want}, found {found} (the value may be a secret and is not shown)"
    ))
}

/// Refuses, by type alone, every kind of value a visitor does not take (serde's defaults for
/// these quote the value). `$want` names what the visitor takes.
macro_rules! refuse_by_type {
    ($want:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Err(refusal($want, "a boolean"))
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Err(refusal($want, "an integer"))
        }
        fn visit_i128<E: de::Error>(self, _: i128) -> Result<Self::Value, E> {
            Err(refusal($want, "an integer"))
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Err(refusal($want, "an integer"))
        }
        fn visit_u128<E: de::Error>(self, _: u128) -> Result<Self::Value, E> {
            Err(refusal($want, "an integer"))
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Err(refusal($want, "a number"))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Err(refusal($want, "nothing"))
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Err(refusal($want, "nothing"))
        }
        // A TOML date arrives as a one-key table (see the file layer).
        fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(refusal($want, "a table (or a date)"))
        }
    };
}

/// Takes a string as a [`Secret`].
struct SecretVisitor;

impl<'de> Visitor<'de> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Secret, E> {
        Ok(Secret::new(value))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Secret, E> {
        Ok(Secret::new(value))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Secret, A::Error> {
        Err(refusal("a string", "a list"))
    }

    refuse_by_type!("a string");
}

/// Takes a list of strings.
struct ListVisitor;

impl<'de> Visitor<'de> for ListVisitor {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of strings")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element::<ListItem>()? {
            items.push(item.0);
        }
        Ok(items)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Vec<String>, E> {
        Err(refusal("a list of strings", "a string"))
    }

    refuse_by_type!("a list of strings");
}

/// One string of a [`secret_list`].
struct ListItem(String);

impl<'de> Deserialize<'de> for ListItem {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ListItemVisitor)
    }
}

/// Takes a string as one entry of a list.
struct ListItemVisitor;

impl<'de> Visitor<'de> for ListItemVisitor {
    type Value = ListItem;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<ListItem, E> {
        Ok(ListItem(value.to_owned()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<ListItem, E> {
        Ok(ListItem(value))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<ListItem, A::Error> {
        Err(refusal("a string", "a list"))
    }

    refuse_by_type!("a string");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_whether_a_secret_is_set_but_never_its_value() {
        assert_eq!(format!("{:?}", Secret::default()), "[unset]");
        let s = Secret::new("hunter22");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(s.expose_secret(), "hunter22");
        assert!(!s.is_empty() && Secret::new("").is_empty());
    }

    #[test]
    fn a_secret_of_another_type_is_refused_by_its_type_from_any_deserialiser() {
        for (json, found) in [
            ("7000019877", "an integer"),
            ("7000019877.5", "a number"),
            ("true", "a boolean"),
            ("null", "nothing"),
            ("[\"7000019877\"]", "a list"),
            ("{\"v\":\"7000019877\"}", "a table"),
        ] {
            let e = serde_json::from_str::<Secret>(json)
                .unwrap_err()
                .to_string();
            assert!(e.contains(found), "{json}: {e}");
            assert!(!e.contains("7000019877"), "{json}: {e}");
        }
        let s: Secret = serde_json::from_str("\"7000019877\"").unwrap();
        assert_eq!(s.expose_secret(), "7000019877");
    }
}
