//! The environment layer: for each setting, the variable named by its key in upper case, or
//! else `<NAME>_FILE` naming a file that holds the value (Docker and Kubernetes secrets). Read
//! here rather than by config's `Environment` (see the module above for why): only the settings'
//! names are read, and each value is typed by its setting's default.

use std::collections::HashMap;
use std::path::PathBuf;

use ::config::{Map, Value, ValueKind};

use super::{ConfigError, Layer};

/// The values `env` gives for `settings`, each carrying its origin (`environment NAME`).
pub(super) fn layer(
    env: &HashMap<String, String>,
    settings: &Map<String, Value>,
) -> Result<Layer, ConfigError> {
    // In key order, so that of two bad variables the same one is always reported.
    let mut keys: Vec<&String> = settings.keys().collect();
    keys.sort();
    let mut values = Map::new();
    for key in keys {
        let Some((raw, origin)) = read(key, env)? else {
            continue;
        };
        let kind =
            typed(&raw, &settings[key].kind, &origin).map_err(|reason| ConfigError::Invalid {
                key: key.clone(),
                origin: origin.clone(),
                reason,
            })?;
        values.insert(key.clone(), Value::new(Some(&origin), kind));
    }
    Ok(Layer(values))
}

/// The raw value of `key` and its origin: `NAME`, else the content of the file `NAME_FILE`
/// names, without its final line break; `None` when neither is set.
fn read(key: &str, env: &HashMap<String, String>) -> Result<Option<(String, String)>, ConfigError> {
    let name = key.to_ascii_uppercase();
    if let Some(value) = env.get(&name) {
        return Ok(Some((value.clone(), format!("environment {name}"))));
    }
    let file_name = format!("{name}_FILE");
    let Some(path) = env.get(&file_name) else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::SecretFile {
        key: key.to_owned(),
        env: file_name.clone(),
        path: PathBuf::from(path),
        source,
    })?;
    let value = text.trim_end_matches(['\n', '\r']);
    // A mounted secret that is empty is a deployment mistake; taken as "unset" it would turn
    // authentication off.
    if value.trim().is_empty() {
        return Err(ConfigError::EmptySecretFile {
            key: key.to_owned(),
            env: file_name,
            path: PathBuf::from(path),
        });
    }
    Ok(Some((value.to_owned(), format!("environment {file_name}"))))
}

/// `raw` as the kind of the setting's `default`: a flag (`1 true yes on`, `0 false no off` or
/// empty, in any case), an integer, a number, a comma-separated list (entries trimmed, empty ones
/// dropped) or, for anything else, the string as it is. An error quotes `raw` only for a flag or
/// a number, never for a string setting (a secret).
fn typed(raw: &str, default: &ValueKind, origin: &String) -> Result<ValueKind, String> {
    match default {
        ValueKind::Boolean(_) => match raw.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(ValueKind::Boolean(true)),
            "0" | "false" | "no" | "off" | "" => Ok(ValueKind::Boolean(false)),
            other => Err(format!("expected true or false, got {other:?}")),
        },
        ValueKind::I64(_) | ValueKind::I128(_) | ValueKind::U64(_) | ValueKind::U128(_) => {
            let text = raw.trim();
            text.parse::<i64>()
                .map(ValueKind::I64)
                .or_else(|_| text.parse::<u64>().map(ValueKind::U64))
                .map_err(|_| format!("expected an integer, got {raw:?}"))
        }
        ValueKind::Float(_) => raw
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(ValueKind::Float)
            .ok_or_else(|| format!("expected a number, got {raw:?}")),
        ValueKind::Array(_) => Ok(ValueKind::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::new(Some(origin), s))
                .collect(),
        )),
        ValueKind::Nil | ValueKind::String(_) | ValueKind::Table(_) => {
            Ok(ValueKind::String(raw.to_owned()))
        }
    }
}
