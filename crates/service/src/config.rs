//! Layered configuration (DESIGN.md, "Configuration"): built-in defaults < TOML file <
//! environment. Each setting's environment name is its key in upper case (`loki_url` →
//! `LOKI_URL`), so the seed's names work as they are; any setting may instead be read from a file
//! named by `<NAME>_FILE` (for secrets mounted by Docker or Kubernetes).
//!
//! Settings structs are flat, `#[serde(deny_unknown_fields)]`, with a `Default` that holds every
//! default in one place. Loading never touches the process environment directly: callers pass
//! the environment as a map, so tests feed their own.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

/// A configuration that cannot be used. The message names the key and the reason.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("config file {path}: {source}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The config file is not valid TOML. The message names the place, never quotes the line
    /// (it may hold a secret).
    #[error("config file {path}, {place}: {message}")]
    ParseFile {
        /// The file.
        path: PathBuf,
        /// `line L, column C`, followed by `` (key `K`)`` when the line sets a known setting.
        place: String,
        /// The parser's message, on one line, without the source excerpt.
        message: String,
    },
    /// A key that no setting has.
    #[error("config key `{key}` (from {origin}) is not a setting")]
    UnknownKey {
        /// The key.
        key: String,
        /// Where it came from.
        origin: String,
    },
    /// A value of the wrong type or form.
    #[error("config key `{key}` (from {origin}): {reason}")]
    Invalid {
        /// The key.
        key: String,
        /// Where it came from (`environment LOKI_URL`, the file name, `default`).
        origin: String,
        /// Why it is refused.
        reason: String,
    },
    /// A secret file named by `<NAME>_FILE` could not be read.
    #[error("config key `{key}`: cannot read {env} file {path}: {source}")]
    SecretFile {
        /// The key.
        key: String,
        /// The `_FILE` variable.
        env: String,
        /// The path it names.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file named by `<NAME>_FILE` is empty (or holds only a line break): an unset secret
    /// must not turn authentication off silently.
    #[error("config key `{key}`: {env} file {path} is empty")]
    EmptySecretFile {
        /// The key.
        key: String,
        /// The `_FILE` variable.
        env: String,
        /// The path it names.
        path: PathBuf,
    },
}

impl ConfigError {
    /// A validation failure for `key`.
    pub fn invalid(key: &str, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.to_owned(),
            origin: "validation".to_owned(),
            reason: reason.into(),
        }
    }
}

/// A secret setting: deserialised from a string, never printed (Debug shows `[redacted]`, and a
/// value of the wrong type is refused without being quoted).
#[derive(Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Through `Value`, which takes any type, so a wrong one is refused here by its type
        // alone: a typed `String` would build serde's "invalid type: integer `…`", which quotes
        // the value.
        match Value::deserialize(deserializer)? {
            Value::String(s) => Ok(Secret(s)),
            other => Err(refusal("a string", &other)),
        }
    }
}

/// Deserialises a list of strings that may hold secrets (`kafka_extra_properties`, whose
/// entries may be `sasl.password=...`) and, like [`Secret`], refuses a wrongly typed value
/// without quoting it. Use with `#[serde(deserialize_with = "service::config::secret_list")]`.
pub fn secret_list<'de, D: serde::Deserializer<'de>>(
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
fn refusal<E: serde::de::Error>(want: &str, found: &Value) -> E {
    let found = match found {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a table (or a date)",
    };
    E::custom(format!(
        "expected {want}, found {found} (the value may be a secret and is not shown)"
    ))
}

impl Secret {
    /// A secret from a string.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret value; call only where it is sent, never where it is logged.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when unset.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "[unset]"
        } else {
            "[redacted]"
        })
    }
}

/// The process environment as a map (call once in `main`).
pub fn process_env() -> HashMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// Loads `T`: its defaults, overlaid by the TOML file (when given), overlaid by `env`.
pub fn load<T>(file: Option<&Path>, env: &HashMap<String, String>) -> Result<T, ConfigError>
where
    T: Default + Serialize + DeserializeOwned,
{
    let defaults = match serde_json::to_value(T::default()) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let mut merged = defaults.clone();
    let mut origins: HashMap<String, String> = HashMap::new();

    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
            path: path.to_owned(),
            source,
        })?;
        let table: toml::Table =
            toml::from_str(&text).map_err(|e| toml_error(path, &text, &e, &defaults))?;
        for (key, value) in table {
            if !defaults.contains_key(&key) {
                return Err(ConfigError::UnknownKey {
                    key,
                    origin: path.display().to_string(),
                });
            }
            let value = serde_json::to_value(value).map_err(|e| ConfigError::Invalid {
                key: key.clone(),
                origin: path.display().to_string(),
                reason: e.to_string(),
            })?;
            origins.insert(key.clone(), path.display().to_string());
            merged.insert(key, value);
        }
    }

    for (key, default) in &defaults {
        let name = key.to_ascii_uppercase();
        let file_name = format!("{name}_FILE");
        let (raw, origin) = if let Some(v) = env.get(&name) {
            (v.clone(), format!("environment {name}"))
        } else if let Some(path) = env.get(&file_name) {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::SecretFile {
                key: key.clone(),
                env: file_name.clone(),
                path: PathBuf::from(path),
                source,
            })?;
            let value = text.trim_end_matches(['\n', '\r']);
            // A mounted secret that is empty is a deployment mistake; taken as "unset" it would
            // turn authentication off.
            if value.trim().is_empty() {
                return Err(ConfigError::EmptySecretFile {
                    key: key.clone(),
                    env: file_name.clone(),
                    path: PathBuf::from(path),
                });
            }
            (value.to_owned(), format!("environment {file_name}"))
        } else {
            continue;
        };
        let value = parse_env_value(&raw, default).map_err(|reason| ConfigError::Invalid {
            key: key.clone(),
            origin: origin.clone(),
            reason,
        })?;
        origins.insert(key.clone(), origin);
        merged.insert(key.clone(), value);
    }

    // Deserialise key by key first, so a wrongly typed value is reported with its key.
    for (key, value) in &merged {
        let mut single = Map::new();
        single.insert(key.clone(), value.clone());
        for (k, v) in &defaults {
            if k != key {
                single.insert(k.clone(), v.clone());
            }
        }
        if let Err(e) = serde_json::from_value::<T>(Value::Object(single)) {
            return Err(ConfigError::Invalid {
                key: key.clone(),
                origin: origins
                    .get(key)
                    .cloned()
                    .unwrap_or_else(|| "default".to_owned()),
                reason: e.to_string(),
            });
        }
    }
    serde_json::from_value(Value::Object(merged)).map_err(|e| ConfigError::Invalid {
        key: "(all)".to_owned(),
        origin: "merged configuration".to_owned(),
        reason: e.to_string(),
    })
}

/// A TOML syntax error as one line: where (line, column and, when the line sets a known
/// setting, its key) and the parser's message, without the excerpt of the source that the
/// error's `Display` includes: the line may hold a secret (an unquoted token).
fn toml_error(
    path: &Path,
    text: &str,
    error: &toml::de::Error,
    settings: &Map<String, Value>,
) -> ConfigError {
    let place = match error.span() {
        Some(span) => {
            let start = span.start.min(text.len());
            let before = text.get(..start).unwrap_or_default();
            let line = before.matches('\n').count() + 1;
            let line_start = before.rfind('\n').map_or(0, |i| i + 1);
            let column = before[line_start..].chars().count() + 1;
            let line_text = text[line_start..].lines().next().unwrap_or_default();
            // Only a known setting's name is shown: anything else on the line may be a secret.
            let key = line_text
                .split_once('=')
                .map(|(k, _)| k.trim().trim_matches(['"', '\'']))
                .filter(|k| settings.contains_key(*k));
            match key {
                Some(k) => format!("line {line}, column {column} (key `{k}`)"),
                None => format!("line {line}, column {column}"),
            }
        }
        None => "position unknown".to_owned(),
    };
    let message = error
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    ConfigError::ParseFile {
        path: path.to_owned(),
        place,
        message,
    }
}

/// The `key=value` entries of a list setting such as `kafka_extra_properties`, split and
/// trimmed. An entry that is not `key=value` is refused by its position, never quoted: an entry
/// may hold a secret (`sasl.password=...`, or `sasl.password:...` mistyped).
pub fn key_value_pairs<'a>(
    key: &str,
    entries: &'a [String],
) -> Result<Vec<(&'a str, &'a str)>, ConfigError> {
    let n = entries.len();
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| match entry.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim(), v.trim())),
            Some(_) => Err(ConfigError::invalid(
                key,
                format!("entry {} of {n} has no key before `=` (entries are not shown: they may hold secrets)", i + 1),
            )),
            None => Err(ConfigError::invalid(
                key,
                format!("entry {} of {n} is not key=value (entries are not shown: they may hold secrets)", i + 1),
            )),
        })
        .collect()
}

/// Parses an environment string into the JSON type of the setting's default.
fn parse_env_value(raw: &str, default: &Value) -> Result<Value, String> {
    match default {
        Value::Bool(_) => match raw.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(Value::Bool(true)),
            "0" | "false" | "no" | "off" | "" => Ok(Value::Bool(false)),
            other => Err(format!("expected true or false, got {other:?}")),
        },
        Value::Number(n) if n.is_u64() || n.is_i64() => raw
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| format!("expected an integer, got {raw:?}")),
        Value::Number(_) => raw
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("expected a number, got {raw:?}")),
        Value::Array(_) => Ok(Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_owned()))
                .collect(),
        )),
        _ => Ok(Value::String(raw.to_owned())),
    }
}

/// True when a feature flag value is on (`1`, `true`, `yes`, `on`).
pub fn flag_on(value: Option<&String>) -> bool {
    value.is_some_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Demo {
        kafka_bootstrap_servers: String,
        batch_records: u32,
        ratio: f64,
        enabled: bool,
        #[serde(with = "humantime_serde")]
        wait: Duration,
        labels: Vec<String>,
        password: Secret,
        #[serde(deserialize_with = "secret_list")]
        props: Vec<String>,
    }

    impl Default for Demo {
        fn default() -> Self {
            Self {
                kafka_bootstrap_servers: "localhost:9092".into(),
                batch_records: 100,
                ratio: 0.5,
                enabled: false,
                wait: Duration::from_secs(1),
                labels: vec!["service".into()],
                password: Secret::default(),
                props: Vec::new(),
            }
        }
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn default_config_loads() {
        let d: Demo = load(None, &env(&[])).unwrap();
        assert_eq!(d, Demo::default());
    }

    #[test]
    fn environment_overrides_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "batch_records = 5\nwait = \"250ms\"\nenabled = true\n").unwrap();
        let d: Demo = load(
            Some(&f),
            &env(&[
                ("BATCH_RECORDS", "7"),
                ("LABELS", "service, level"),
                ("RATIO", "0.25"),
            ]),
        )
        .unwrap();
        assert_eq!(d.batch_records, 7);
        assert_eq!(d.wait, Duration::from_millis(250));
        assert!(d.enabled);
        assert_eq!(d.labels, ["service", "level"]);
        assert_eq!(d.ratio, 0.25);
    }

    #[test]
    fn secrets_come_from_file_variables_and_never_print() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "s3cret\n").unwrap();
        let d: Demo = load(None, &env(&[("PASSWORD_FILE", f.to_str().unwrap())])).unwrap();
        assert_eq!(d.password.expose(), "s3cret");
        assert!(!format!("{d:?}").contains("s3cret"));
    }

    #[test]
    fn unknown_file_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "batch_recordz = 5\n").unwrap();
        let e = load::<Demo>(Some(&f), &env(&[])).unwrap_err().to_string();
        assert!(e.contains("`batch_recordz`"), "{e}");
    }

    #[test]
    fn wrongly_typed_environment_value_names_the_variable() {
        let e = load::<Demo>(None, &env(&[("BATCH_RECORDS", "many")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("batch_records") && e.contains("BATCH_RECORDS"),
            "{e}"
        );
        let e = load::<Demo>(None, &env(&[("WAIT", "soon")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`wait`"), "{e}");
        let e = load::<Demo>(None, &env(&[("ENABLED", "maybe")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`enabled`"), "{e}");
    }

    #[test]
    fn missing_secret_file_is_an_error_naming_the_variable() {
        let e = load::<Demo>(None, &env(&[("PASSWORD_FILE", "/nonexistent/pw")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("PASSWORD_FILE"), "{e}");
    }

    #[test]
    fn a_toml_syntax_error_names_the_line_and_key_without_quoting_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        let secret = "SxhunterQ1N2Z3K";
        for (text, line, key) in [
            (
                format!("batch_records = 5\npassword = {secret}\n"),
                2,
                Some("password"),
            ),
            (
                format!("password = \"{secret}\nenabled = true\n"),
                1,
                Some("password"),
            ),
            (format!("password = '{secret}\n"), 1, Some("password")),
            (format!("{secret}\n"), 1, None),
            (format!("[{secret}\n"), 1, None),
            (format!("password = [{secret}]\n"), 1, Some("password")),
        ] {
            std::fs::write(&f, &text).unwrap();
            let e = load::<Demo>(Some(&f), &env(&[])).unwrap_err().to_string();
            assert!(
                !e.contains(secret),
                "{text:?}: the error quotes the secret: {e}"
            );
            assert!(
                e.contains(&format!("line {line}, column ")),
                "{text:?}: {e}"
            );
            assert!(e.contains("c.toml"), "{text:?}: {e}");
            if let Some(key) = key {
                assert!(e.contains(&format!("(key `{key}`)")), "{text:?}: {e}");
            }
            assert_eq!(e.lines().count(), 1, "{text:?}: not one line: {e}");
        }
    }

    #[test]
    fn a_secret_of_the_wrong_type_is_refused_without_its_value() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        for (value, kind) in [
            ("7000019877", "an integer"),
            ("-7000019877", "an integer"),
            ("7000019877.5", "a number"),
            ("true", "a boolean"),
            ("[\"7000019877\"]", "a list"),
            ("{ v = \"7000019877\" }", "a table"),
            ("1979-05-27T07:32:00Z", "a date"),
        ] {
            std::fs::write(&f, format!("password = {value}\n")).unwrap();
            let e = load::<Demo>(Some(&f), &env(&[])).unwrap_err().to_string();
            assert!(e.contains("`password`") && e.contains(kind), "{value}: {e}");
            assert!(
                !e.contains("7000019877") && !e.contains("1979"),
                "{value}: {e}"
            );
        }
        // A string is still a secret's value, and other settings still show theirs.
        std::fs::write(&f, "password = \"7000019877\"\n").unwrap();
        let d: Demo = load(Some(&f), &env(&[])).unwrap();
        assert_eq!(d.password.expose(), "7000019877");
        std::fs::write(&f, "batch_records = \"many\"\n").unwrap();
        let e = load::<Demo>(Some(&f), &env(&[])).unwrap_err().to_string();
        assert!(e.contains("`batch_records`") && e.contains("many"), "{e}");
    }

    #[test]
    fn a_secret_list_of_the_wrong_type_is_refused_without_its_values() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        for (value, found) in [
            ("\"sasl.password:hunter22\"", "found a string"),
            ("[\"a=b\", 7000019877]", "found an integer"),
            ("[[\"sasl.password=hunter22\"]]", "found a list"),
            ("{ sasl = \"hunter22\" }", "found a table"),
        ] {
            std::fs::write(&f, format!("props = {value}\n")).unwrap();
            let e = load::<Demo>(Some(&f), &env(&[])).unwrap_err().to_string();
            assert!(e.contains("`props`") && e.contains(found), "{value}: {e}");
            assert!(
                !e.contains("hunter22") && !e.contains("7000019877"),
                "{value}: {e}"
            );
        }
        std::fs::write(&f, "props = [\"a=b\", \"c=d\"]\n").unwrap();
        let d: Demo = load(Some(&f), &env(&[("PASSWORD", "x")])).unwrap();
        assert_eq!(d.props, ["a=b", "c=d"]);
        let d: Demo = load(None, &env(&[("PROPS", "a=b, c=d")])).unwrap();
        assert_eq!(d.props, ["a=b", "c=d"]);
    }

    #[test]
    fn an_empty_file_variable_is_an_error_naming_the_variable_and_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        for content in ["", "\n", "\r\n", "  \n"] {
            std::fs::write(&f, content).unwrap();
            let path = f.to_str().unwrap();
            let e = load::<Demo>(None, &env(&[("PASSWORD_FILE", path)]))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("`password`") && e.contains("PASSWORD_FILE") && e.contains(path),
                "{content:?}: {e}"
            );
            assert!(e.contains("empty"), "{content:?}: {e}");
        }
        // Set empty in the environment itself, the value stays an explicit "none".
        let d: Demo = load(None, &env(&[("PASSWORD", "")])).unwrap();
        assert!(d.password.is_empty());
    }

    #[test]
    fn key_value_entries_are_split_and_bad_ones_refused_without_quoting_them() {
        let entries = vec![
            "security.protocol = SASL_SSL".to_owned(),
            "sasl.jaas=a=b".to_owned(),
        ];
        assert_eq!(
            key_value_pairs("extra", &entries).unwrap(),
            [("security.protocol", "SASL_SSL"), ("sasl.jaas", "a=b")]
        );
        for (bad, what) in [
            ("sasl.password:hunter22", "entry 2 of 2 is not key=value"),
            ("=hunter22", "entry 2 of 2 has no key"),
        ] {
            let entries = vec!["security.protocol=SASL_SSL".to_owned(), bad.to_owned()];
            let e = key_value_pairs("extra", &entries).unwrap_err().to_string();
            assert!(e.contains("`extra`") && e.contains(what), "{e}");
            assert!(!e.contains("hunter22"), "{e}");
        }
    }

    #[test]
    fn feature_flags_accept_common_spellings() {
        assert!(flag_on(Some(&"TRUE".to_string())));
        assert!(flag_on(Some(&"1".to_string())));
        assert!(!flag_on(Some(&"0".to_string())));
        assert!(!flag_on(None));
    }
}
