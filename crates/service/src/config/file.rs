//! The config file layer: a TOML file of settings, keys in lower case, every one a setting's.
//! Parsed here rather than by config's TOML source (see the module above for why); each value
//! carries its origin as `FILE, line L`, so a later error names the line.

use std::path::Path;

use ::config::{Map, Value, ValueKind};
use toml::de::{DeTable, DeValue};

use super::{ConfigError, Layer};

/// The key a TOML date is kept under: a one-key table, so that no setting takes it for a string
/// (a secret written as an unquoted date is refused as such, and its value never shown).
const DATETIME: &str = "toml datetime";

/// Reads the settings in `path`; a key that is not one of `settings` is refused with its line.
pub(super) fn layer(path: &Path, settings: &Map<String, Value>) -> Result<Layer, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    let table = DeTable::parse(&text)
        .map_err(|e| syntax_error(path, &text, &e, settings))?
        .into_inner();
    // In the file's order, so the first unknown key is the one reported.
    let mut entries: Vec<_> = table.into_iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    let mut values = Map::new();
    for (key, value) in entries {
        let (line, _) = line_and_column(&text, key.span().start);
        let origin = format!("{}, line {line}", path.display());
        let key = key.into_inner().into_owned();
        if !settings.contains_key(&key) {
            return Err(ConfigError::UnknownKey { key, origin });
        }
        let value =
            convert(value.into_inner(), &origin).map_err(|reason| ConfigError::Invalid {
                key: key.clone(),
                origin: origin.clone(),
                reason,
            })?;
        values.insert(key, value);
    }
    Ok(Layer(values))
}

/// A TOML value as a config value from `origin`. The error names the problem, not the value.
fn convert(value: DeValue<'_>, origin: &String) -> Result<Value, String> {
    let kind = match value {
        DeValue::String(s) => ValueKind::String(s.into_owned()),
        DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => ValueKind::I64(n),
            Err(_) => u64::from_str_radix(i.as_str(), i.radix())
                .map(ValueKind::U64)
                .map_err(|_| "the integer is out of range".to_owned())?,
        },
        DeValue::Float(f) => f
            .as_str()
            .parse::<f64>()
            .map(ValueKind::Float)
            .map_err(|_| "the number is out of range".to_owned())?,
        DeValue::Boolean(b) => ValueKind::Boolean(b),
        DeValue::Datetime(d) => {
            let mut date = Map::new();
            date.insert(DATETIME.to_owned(), Value::new(Some(origin), d.to_string()));
            ValueKind::Table(date)
        }
        DeValue::Array(items) => ValueKind::Array(
            items
                .into_iter()
                .map(|item| convert(item.into_inner(), origin))
                .collect::<Result<_, _>>()?,
        ),
        DeValue::Table(table) => ValueKind::Table(
            table
                .into_iter()
                .map(|(k, v)| {
                    Ok((
                        k.into_inner().into_owned(),
                        convert(v.into_inner(), origin)?,
                    ))
                })
                .collect::<Result<_, String>>()?,
        ),
    };
    Ok(Value::new(Some(origin), kind))
}

/// Line and column (from 1) of byte `offset` in `text`.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or_default();
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

/// A TOML syntax error as one line: where (line, column and, when the line sets a known
/// setting, its key) and the parser's message, without the excerpt of the source that the
/// error's `Display` includes: the line may hold a secret (an unquoted token).
fn syntax_error(
    path: &Path,
    text: &str,
    error: &toml::de::Error,
    settings: &Map<String, Value>,
) -> ConfigError {
    let place = match error.span() {
        Some(span) => {
            let (line, column) = line_and_column(text, span.start);
            let line_text = text.lines().nth(line - 1).unwrap_or_default();
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
