//! Layered configuration (DESIGN.md, "Configuration"): built-in defaults < TOML file (`--config
//! FILE`, keys in lower case) < environment (each key in upper case, `loki_url` → `LOKI_URL`, so
//! the seed's names work as they are). Any setting may instead be read from a file named by
//! `<NAME>_FILE` (secrets mounted by Docker or Kubernetes): a final line break is dropped, and an
//! empty file is an error. Loading never reads the process environment itself: callers pass it
//! as a map ([`process_env`], once in `main`), so tests feed their own.
//!
//! A service's settings are one struct whose keys are all at the top level, with a `Default`
//! that holds every default in one place; it embeds what both services share, [`KafkaSettings`]
//! and [`ServiceSettings`], with `#[serde(flatten)]`. Secrets are [`Secret`]s.
//!
//! The [`config`] crate holds the layers in order (the defaults with `set_default`,
//! then the file's values and the environment's as one source each), merges them (a later layer
//! replaces a key) and deserialises the result into the settings struct. Its deserialiser
//! converts a scalar to the type a field asks for (a TOML `"5"` for a number, `5` for a text),
//! except inside a flattened struct, which serde feeds from its own buffer; a [`Secret`] takes
//! only a string. What config cannot express is done here, on top of it:
//!
//! - The file layer (`file`): config's TOML source puts the offending line of a syntax error in
//!   its message (the line may hold a secret) and reads a TOML date as a string (a secret given
//!   as an unquoted date would be taken). Ours reports line and column only, and gives every
//!   value its line for later errors.
//! - The environment layer (`env`): config's `Environment` reads every variable of the process
//!   (the seed's names share no prefix to select ours by), knows nothing of `<NAME>_FILE`, and
//!   types a value by its look (with `try_parsing`, a numeric password becomes an integer), not
//!   by its setting. Ours reads exactly the settings' names, each typed by its default.
//! - Unknown keys: serde's `deny_unknown_fields` does not work with `flatten`, so the file layer
//!   checks every key against the settings' keys and refuses another by name and line (the
//!   environment layer reads nothing else).
//! - The key of a bad value: serde reports an error inside a flattened struct without its key,
//!   so when deserialising fails, [`load`] tries each value the file or the environment gave,
//!   alone over the defaults, to name the one that fails.

mod env;
mod file;
mod secret;
mod shared;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use ::config::{Config, Map, Source, Value, ValueKind};
use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;

pub use secrecy::ExposeSecret;
pub use secret::Secret;
pub use shared::{KafkaSettings, OptionalAddr, ServiceSettings};

/// A configuration that cannot be used. The message names the key and the reason, and never a
/// secret's value.
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
        /// Where it came from (`FILE, line L`).
        origin: String,
    },
    /// A value of the wrong type or form.
    #[error("config key `{key}` (from {origin}): {reason}")]
    Invalid {
        /// The key.
        key: String,
        /// Where it came from (`environment LOKI_URL`, `FILE, line L`, `validation`).
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
    /// The settings type cannot describe its own defaults (a bug in the settings struct, e.g. a
    /// default secret that is not empty).
    #[error("the default settings cannot be read: {0}")]
    Defaults(String),
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

/// The process environment as a map (call once in `main`).
pub fn process_env() -> HashMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// Loads `T`: its defaults, overlaid by the TOML `file` (when given), overlaid by `env`.
///
/// The settings and their types are those of `T::default()` serialised, so every setting needs
/// a default (an empty string or list where there is none).
pub fn load<T>(file: Option<&Path>, env: &HashMap<String, String>) -> Result<T, ConfigError>
where
    T: Default + Serialize + DeserializeOwned,
{
    let defaults = defaults(&T::default())?;
    let mut builder = Config::builder();
    for (key, value) in &defaults {
        builder = builder
            .set_default(key.as_str(), value.clone())
            .map_err(|e| not_merged(&e))?;
    }
    let mut given = Vec::new();
    if let Some(path) = file {
        given.push(file::layer(path, &defaults)?);
    }
    given.push(env::layer(env, &defaults)?);
    for layer in &given {
        builder = builder.add_source(layer.clone());
    }
    let merged = builder.build().map_err(|e| not_merged(&e))?;
    merged
        .clone()
        .try_deserialize()
        .map_err(|error| name_the_key::<T>(&merged, &defaults, &given, &error))
}

/// The values one layer gives, by key, each carrying where it came from (its origin).
#[derive(Clone)]
struct Layer(Map<String, Value>);

// The values may be secrets: only the keys are shown.
impl fmt::Debug for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Source for Layer {
    fn clone_into_box(&self) -> Box<dyn Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<Map<String, Value>, ::config::ConfigError> {
        Ok(self.0.clone())
    }
}

/// Every setting of `T` with its default: `value` serialised. (A [`Secret`] serialises only
/// when empty, so a secret cannot hide in a default.)
fn defaults<T: Serialize>(value: &T) -> Result<Map<String, Value>, ConfigError> {
    // Through JSON rather than config's own serialiser, which leaves out an empty list: the
    // setting would be missing, and taken for an unknown key.
    match serde_json::to_value(value) {
        Ok(serde_json::Value::Object(settings)) => Ok(settings
            .into_iter()
            .map(|(key, value)| (key, from_json(value)))
            .collect()),
        Ok(_) => Err(ConfigError::Defaults(
            "the settings are not a struct".to_owned(),
        )),
        Err(e) => Err(ConfigError::Defaults(e.to_string())),
    }
}

/// A JSON value as a config value without origin (a default).
fn from_json(value: serde_json::Value) -> Value {
    use serde_json::Value as Json;
    let kind = match value {
        Json::Null => ValueKind::Nil,
        Json::Bool(b) => ValueKind::Boolean(b),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => ValueKind::I64(i),
            (None, Some(u)) => ValueKind::U64(u),
            (None, None) => ValueKind::Float(n.as_f64().unwrap_or_default()),
        },
        Json::String(s) => ValueKind::String(s),
        Json::Array(items) => ValueKind::Array(items.into_iter().map(from_json).collect()),
        Json::Object(m) => {
            ValueKind::Table(m.into_iter().map(|(k, v)| (k, from_json(v))).collect())
        }
    };
    Value::new(None, kind)
}

/// The error of a configuration that does not deserialise, with the key and origin of the
/// value that fails: each value the layers gave is tried alone over the defaults, in key order.
/// (serde names no key for a field of a flattened struct, and config none for a value whose
/// error came from the field's own deserialiser.)
fn name_the_key<T: DeserializeOwned>(
    merged: &Config,
    defaults: &Map<String, Value>,
    given: &[Layer],
    error: &::config::ConfigError,
) -> ConfigError {
    // Later layers win, as in the merge.
    let origins: BTreeMap<&String, &str> = given
        .iter()
        .flat_map(|layer| &layer.0)
        .map(|(key, value)| (key, value.origin().unwrap_or("default")))
        .collect();
    let values = merged.collect().unwrap_or_default();
    for (key, origin) in origins {
        let Some(value) = values.get(key) else {
            continue;
        };
        let mut alone = defaults.clone();
        alone.insert(key.clone(), value.clone());
        if let Err(e) = Value::new(None, ValueKind::Table(alone)).try_deserialize::<T>() {
            return ConfigError::Invalid {
                key: key.clone(),
                origin: origin.to_owned(),
                reason: reason(&e),
            };
        }
    }
    ConfigError::Invalid {
        key: "(all)".to_owned(),
        origin: "merged configuration".to_owned(),
        reason: reason(error),
    }
}

/// A config error's reason, without the key and origin config appends (ours are named apart).
fn reason(error: &::config::ConfigError) -> String {
    match error {
        ::config::ConfigError::Type {
            unexpected,
            expected,
            ..
        } => format!("invalid type: {unexpected}, expected {expected}"),
        ::config::ConfigError::At { error, .. } => reason(error),
        other => other.to_string(),
    }
}

/// A failure of config's merge itself (it has no input that can fail: keys are plain names).
fn not_merged(error: &::config::ConfigError) -> ConfigError {
    ConfigError::Invalid {
        key: "(all)".to_owned(),
        origin: "merged configuration".to_owned(),
        reason: reason(error),
    }
}

#[cfg(test)]
mod tests {
    use super::secret::secret_list;
    use super::*;
    use serde::Deserialize;
    use std::net::SocketAddr;
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

    /// A service's settings as the producer and the consumer declare theirs: the shared ones
    /// flattened in, then its own.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    struct Svc {
        #[serde(flatten)]
        kafka: KafkaSettings,
        #[serde(flatten)]
        service: ServiceSettings,
        batch_records: u32,
        token: Secret,
    }

    impl Default for Svc {
        fn default() -> Self {
            Self {
                kafka: KafkaSettings::default(),
                service: ServiceSettings::new(OptionalAddr::from(SocketAddr::from((
                    [0, 0, 0, 0],
                    8000,
                )))),
                batch_records: 100,
                token: Secret::default(),
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
        assert_eq!(d.password.expose_secret(), "s3cret");
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
        assert_eq!(d.password.expose_secret(), "7000019877");
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
    fn feature_flags_accept_common_spellings() {
        for (value, on) in [
            ("TRUE", true),
            ("1", true),
            ("yes", true),
            (" On ", true),
            ("0", false),
            ("false", false),
            ("off", false),
            ("", false),
        ] {
            let d: Demo = load(None, &env(&[("ENABLED", value)])).unwrap();
            assert_eq!(d.enabled, on, "{value:?}");
        }
    }

    #[test]
    fn a_file_value_of_the_wrong_type_names_its_key_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "enabled = true\n\nwait = \"soon\"\n").unwrap();
        let e = load::<Demo>(Some(&f), &env(&[])).unwrap_err().to_string();
        assert!(e.contains("`wait`") && e.contains("c.toml, line 3"), "{e}");
    }

    #[test]
    fn an_unknown_file_key_is_refused_by_name_and_line_next_to_flattened_settings() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        for (text, key, line) in [
            (
                "kafka_topic = \"t\"\nkafka_topik = \"t\"\n",
                "kafka_topik",
                2,
            ),
            ("batch_records = 5\n\n[kafka]\ntopic = \"t\"\n", "kafka", 3),
            ("KAFKA_TOPIC = \"t\"\n", "KAFKA_TOPIC", 1),
            // The Rust field names of the shared settings are not keys.
            ("topic = \"t\"\n", "topic", 1),
        ] {
            std::fs::write(&f, text).unwrap();
            let e = load::<Svc>(Some(&f), &env(&[])).unwrap_err().to_string();
            assert!(
                e.contains(&format!("`{key}`")) && e.contains(&format!("c.toml, line {line}")),
                "{text:?}: {e}"
            );
        }
    }

    #[test]
    fn the_shared_settings_load_flattened_from_the_file_and_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("sasl");
        std::fs::write(&pw, "s4sl-pw\n").unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "kafka_topic = \"from-file\"\nlog_level = \"debug\"\nshutdown_timeout = \"5s\"\n",
        )
        .unwrap();
        let vars = env(&[
            ("KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092"),
            (
                "KAFKA_EXTRA_PROPERTIES",
                "security.protocol=SASL_SSL, sasl.username=u",
            ),
            ("KAFKA_SASL_PASSWORD_FILE", pw.to_str().unwrap()),
            ("LOG_FORMAT", "json"),
            ("ENVIRONMENT", "staging"),
            ("SHUTDOWN_TIMEOUT", "7s"),
            ("FEATURE_ENHANCED_METRICS", "on"),
            ("BATCH_RECORDS", "9"),
            ("HTTP_LISTEN", "127.0.0.1:9000"),
        ]);
        let svc: Svc = load(Some(&f), &vars).unwrap();
        let kafka = KafkaSettings {
            bootstrap_servers: "k1:9092,k2:9092".into(),
            topic: "from-file".into(),
            extra_properties: vec![
                "security.protocol=SASL_SSL".into(),
                "sasl.username=u".into(),
            ],
            sasl_password: Secret::new("s4sl-pw"),
        };
        assert_eq!(svc.kafka, kafka);
        let addr: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        assert_eq!(
            svc.service,
            ServiceSettings {
                http_listen: OptionalAddr::from(addr),
                log_level: "debug".into(),
                log_format: "json".into(),
                environment: "staging".into(),
                shutdown_timeout: Duration::from_secs(7),
                feature_enhanced_metrics: true,
            }
        );
        assert_eq!(svc.batch_records, 9);
        let debug = format!("{svc:?}");
        assert!(!debug.contains("s4sl-pw"), "{debug}");
    }

    #[test]
    fn http_listen_is_an_address_or_empty_for_off() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        // Empty turns the server off, in the environment and in a file.
        let off: Svc = load(None, &env(&[("HTTP_LISTEN", "")])).unwrap();
        assert_eq!(off.service.http_listen, OptionalAddr::OFF);
        assert_eq!(off.service.http_listen.addr(), None);
        std::fs::write(&f, "http_listen = \"\"\n").unwrap();
        let off: Svc = load(Some(&f), &env(&[])).unwrap();
        assert_eq!(off.service.http_listen, OptionalAddr::OFF);
        // Unset, the service's own default.
        let unset: Svc = load(None, &env(&[])).unwrap();
        assert_eq!(
            unset.service.http_listen.addr(),
            Some(SocketAddr::from(([0, 0, 0, 0], 8000)))
        );
        // Set, that address; the environment wins over the file.
        std::fs::write(&f, "http_listen = \"127.0.0.1:9001\"\n").unwrap();
        let set: Svc = load(Some(&f), &env(&[])).unwrap();
        assert_eq!(
            set.service.http_listen.addr(),
            Some(SocketAddr::from(([127, 0, 0, 1], 9001)))
        );
        let set: Svc = load(Some(&f), &env(&[("HTTP_LISTEN", "")])).unwrap();
        assert_eq!(set.service.http_listen, OptionalAddr::OFF);
        // Not an address: refused, naming the key and where it came from.
        for value in ["port 80", "nowhere", "8000"] {
            let e = load::<Svc>(None, &env(&[("HTTP_LISTEN", value)]))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("`http_listen`")
                    && e.contains("environment HTTP_LISTEN")
                    && e.contains("not an address"),
                "{value}: {e}"
            );
            std::fs::write(&f, format!("http_listen = \"{value}\"\n")).unwrap();
            let e = load::<Svc>(Some(&f), &env(&[])).unwrap_err().to_string();
            assert!(
                e.contains("`http_listen`") && e.contains("c.toml, line 1"),
                "{value}: {e}"
            );
        }
    }

    #[test]
    fn a_bad_shared_value_names_its_key_and_origin_though_it_is_flattened() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "batch_records = 5\nshutdown_timeout = \"soon\"\n").unwrap();
        let e = load::<Svc>(Some(&f), &env(&[])).unwrap_err().to_string();
        assert!(
            e.contains("`shutdown_timeout`") && e.contains("c.toml, line 2"),
            "{e}"
        );
        let e = load::<Svc>(None, &env(&[("SHUTDOWN_TIMEOUT", "-1")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`shutdown_timeout`") && e.contains("environment SHUTDOWN_TIMEOUT"),
            "{e}"
        );
        let e = load::<Svc>(None, &env(&[("FEATURE_ENHANCED_METRICS", "maybe")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`feature_enhanced_metrics`"), "{e}");
        // A flattened secret of the wrong type is refused by its type alone.
        std::fs::write(&f, "kafka_sasl_password = 7000019877\n").unwrap();
        let e = load::<Svc>(Some(&f), &env(&[])).unwrap_err().to_string();
        assert!(
            e.contains("`kafka_sasl_password`") && e.contains("an integer"),
            "{e}"
        );
        assert!(!e.contains("7000019877"), "{e}");
        std::fs::write(&f, "kafka_extra_properties = \"sasl.password:hunter22\"\n").unwrap();
        let e = load::<Svc>(Some(&f), &env(&[])).unwrap_err().to_string();
        assert!(e.contains("`kafka_extra_properties`"), "{e}");
        assert!(!e.contains("hunter22"), "{e}");
    }

    #[test]
    fn a_set_secret_is_never_serialised() {
        let mut d = Demo::default();
        assert!(serde_json::to_value(&d).is_ok());
        d.password = Secret::new("hunter22");
        let e = serde_json::to_value(&d).unwrap_err().to_string();
        assert!(!e.contains("hunter22"), "{e}");
    }
}
