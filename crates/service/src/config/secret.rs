//! Secret settings (passwords, tokens): held in [`secrecy`]'s [`SecretString`] (zeroed when
//! dropped, read only through [`ExposeSecret::expose_secret`]), never printed: `Debug` shows
//! `[redacted]`, a set secret refuses to be serialised, and a value of the wrong type is refused
//! by its type alone (serde's own message would quote it: "invalid type: integer `…`").

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

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
        // Through `Value`, which takes any type, so a wrong one is refused here by its type
        // alone: asking for a string would let config turn a number into one, and serde's
        // refusal of a typed `String` quotes the value ("invalid type: integer `…`").
        match Value::deserialize(deserializer)? {
            Value::String(s) => Ok(Secret::new(s)),
            other => Err(refusal("a string", &other)),
        }
    }
}

/// Deserialises a list of strings that may hold secrets (`kafka_extra_properties`, whose
/// entries may be `sasl.password=...`) and, like [`Secret`], refuses a wrongly typed value
/// without quoting it. Use with `#[serde(deserialize_with = "secret_list")]`.
pub(crate) fn secret_list<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    match Value::deserialize(deserializer)? {
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::String(s) => Ok(s),
                other => Err(refusal("a string", &other)),
            })
            .collect(),
        other => Err(refusal("a list of strings", &other)),
    }
}

/// The refusal of a value of the wrong type, naming the types only.
fn refusal<E: de::Error>(want: &str, found: &Value) -> E {
    let found = match found {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        // A TOML date arrives as a one-key table (see the file layer).
        Value::Object(_) => "a table (or a date)",
    };
    E::custom(format!(
        "expected {want}, found {found} (the value may be a secret and is not shown)"
    ))
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
