//! The PromQL of a Grafana dashboard: every target of every panel (rows and nested panels
//! included) whose data source is not Loki, with Grafana's template variables replaced by
//! values that make sense against a Prometheus scraping every second: the dashboard's own
//! variables (`templating.list`: current value, "All" as its `allValue` or `.*`) and the
//! built-in ones (`$__rate_interval`, `$__interval`, `$__range`, …).
//! (<https://grafana.com/docs/grafana/latest/dashboards/variables/variable-syntax/>)

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::queries::Expression;

/// Built-in variables and the values used for them (scrapes every second: a rate window of
/// 10 s holds about ten samples).
const BUILT_INS: [(&str, &str); 9] = [
    ("__rate_interval", "10s"),
    ("__interval", "5s"),
    ("__interval_ms", "5000"),
    ("__range", "5m"),
    ("__range_s", "300"),
    ("__range_ms", "300000"),
    ("__auto", "5s"),
    ("__from", "0"),
    ("__to", "0"),
];

/// The Prometheus expressions of the dashboard at `path`, each with the text as written
/// (`expr`), the text to run (`query`, variables replaced) and the problems found on the way
/// (an empty expression, an undefined variable).
pub fn dashboard_expressions(path: &Path, display_name: &str) -> Result<Vec<Expression>> {
    let text = std::fs::read_to_string(path)
        .map_err(Error::io(format!("cannot read {}", path.display())))?;
    let dashboard: Value = serde_json::from_str(&text)
        .map_err(|error| Error::Invalid(format!("{}: not JSON: {error}", path.display())))?;
    let variables = variables(&dashboard);
    let mut out = Vec::new();
    collect(
        dashboard.get("panels"),
        None,
        display_name,
        &variables,
        &mut out,
    );
    Ok(out)
}

fn collect(
    panels: Option<&Value>,
    inherited: Option<&Value>,
    file: &str,
    variables: &BTreeMap<String, String>,
    out: &mut Vec<Expression>,
) {
    let Some(panels) = panels.and_then(Value::as_array) else {
        return;
    };
    for panel in panels {
        let title = panel
            .get("title")
            .and_then(Value::as_str)
            .unwrap_or("(untitled)");
        let panel_source = panel
            .get("datasource")
            .filter(|d| !d.is_null())
            .or(inherited);
        for target in panel
            .get("targets")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let source = target
                .get("datasource")
                .filter(|d| !d.is_null())
                .or(panel_source);
            if source.is_some_and(is_loki) {
                continue;
            }
            let ref_id = target.get("refId").and_then(Value::as_str).unwrap_or("?");
            let expr = target
                .get("expr")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let (query, unknown) = substitute(&expr, variables);
            let mut problems: Vec<String> = unknown
                .into_iter()
                .map(|name| {
                    format!("uses template variable ${name}, which the dashboard does not define")
                })
                .collect();
            if expr.trim().is_empty() {
                problems.push("the target has no PromQL expression".to_owned());
            }
            out.push(Expression {
                file: file.to_owned(),
                context: format!("panel {title:?} target {ref_id}"),
                expr,
                query,
                problems,
            });
        }
        // Rows keep their collapsed panels inside.
        collect(panel.get("panels"), panel_source, file, variables, out);
    }
}

/// Whether a data source reference (`{"type": "loki", "uid": …}` or a name) is Loki.
fn is_loki(source: &Value) -> bool {
    match source {
        Value::String(name) => name.to_ascii_lowercase().contains("loki"),
        Value::Object(reference) => ["type", "uid"].iter().any(|key| {
            reference
                .get(*key)
                .and_then(Value::as_str)
                .is_some_and(|v| v.to_ascii_lowercase().contains("loki"))
        }),
        _ => false,
    }
}

/// The values of the dashboard's variables, built-ins included.
pub fn variables(dashboard: &Value) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BUILT_INS
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let list = dashboard
        .pointer("/templating/list")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for variable in &list {
        let Some(name) = variable.get("name").and_then(Value::as_str) else {
            continue;
        };
        out.insert(name.to_owned(), variable_value(variable));
    }
    out
}

/// One variable's value: its current value ("All" → `allValue`, else `.*`; several values →
/// `(a|b)`), else the first of its options or query, else `.*`.
fn variable_value(variable: &Value) -> String {
    let all = || {
        variable
            .get("allValue")
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .unwrap_or(".*")
            .to_owned()
    };
    let text = |value: &Value| -> Option<String> {
        match value {
            Value::String(s) if s == "$__all" => Some(all()),
            Value::String(s) => Some(s.clone()),
            Value::Array(items) => {
                let values: Vec<String> = items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|s| if s == "$__all" { all() } else { s.to_owned() })
                    .collect();
                match values.as_slice() {
                    [] => None,
                    [one] => Some(one.clone()),
                    many => Some(format!("({})", many.join("|"))),
                }
            }
            _ => None,
        }
    };
    if let Some(value) = variable.pointer("/current/value").and_then(text) {
        return value;
    }
    if let Some(value) = variable.pointer("/options/0/value").and_then(text) {
        return value;
    }
    let kind = variable.get("type").and_then(Value::as_str).unwrap_or("");
    if matches!(kind, "custom" | "interval" | "constant" | "textbox") {
        if let Some(query) = variable.get("query").and_then(Value::as_str) {
            return query
                .split(',')
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned();
        }
    }
    ".*".to_owned()
}

/// Replaces `$name`, `${name}`, `${name:format}` and `[[name]]` by the variables' values;
/// returns the text and the names not defined (left as written, as Grafana leaves them).
/// `$1`-style regex references (digits only) are never variables.
pub fn substitute(expr: &str, variables: &BTreeMap<String, String>) -> (String, Vec<String>) {
    let mut out = String::with_capacity(expr.len());
    let mut unknown = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find(['$', '[']) {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let (name, written) = if let Some(inner) = tail.strip_prefix("${") {
            match inner.find('}') {
                Some(end) => (
                    inner[..end].split(':').next().unwrap_or(""),
                    &tail[..end + 3],
                ),
                None => ("", &tail[..1]),
            }
        } else if let Some(inner) = tail.strip_prefix("[[") {
            match inner.find("]]") {
                Some(end) => (
                    inner[..end].split(':').next().unwrap_or(""),
                    &tail[..end + 4],
                ),
                None => ("", &tail[..1]),
            }
        } else if let Some(inner) = tail.strip_prefix('$') {
            let end = inner
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(inner.len());
            (&inner[..end], &tail[..end + 1])
        } else {
            ("", &tail[..1])
        };
        match variables.get(name) {
            Some(value) if !name.is_empty() => out.push_str(value),
            _ => {
                if !name.is_empty() && !name.chars().all(|c| c.is_ascii_digit()) {
                    unknown.push(name.to_owned());
                }
                out.push_str(written);
            }
        }
        rest = &tail[written.len()..];
    }
    out.push_str(rest);
    (out, unknown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn replaces_built_in_and_dashboard_variables_in_every_syntax() {
        let dashboard = json!({"templating": {"list": [
            {"name": "job", "type": "custom", "current": {"value": "producer"}},
            {"name": "svc", "type": "query", "includeAll": true, "allValue": ".+",
             "current": {"value": ["$__all"]}},
            {"name": "env", "type": "query", "current": {"value": ["a", "b"]}},
        ]}});
        let vars = variables(&dashboard);
        let (query, unknown) = substitute(
            r#"rate(x{job="$job",service=~"${svc}",env=~"[[env]]"}[$__rate_interval]) + y[${__range:raw}]"#,
            &vars,
        );
        assert_eq!(
            query,
            r#"rate(x{job="producer",service=~".+",env=~"(a|b)"}[10s]) + y[5m]"#
        );
        assert!(unknown.is_empty());
    }

    #[test]
    fn undefined_variables_are_reported_and_regex_references_are_not() {
        let vars = variables(&json!({}));
        let (query, unknown) = substitute(
            r#"label_replace(up{job="$nope"}, "a", "$1", "b", "(.*)")[5m]"#,
            &vars,
        );
        assert_eq!(unknown, ["nope"]);
        assert_eq!(
            query,
            r#"label_replace(up{job="$nope"}, "a", "$1", "b", "(.*)")[5m]"#
        );
    }

    #[test]
    fn collects_prometheus_targets_of_nested_panels_and_skips_loki_ones() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("d.json");
        let dashboard = json!({"panels": [
            {"type": "row", "title": "R", "panels": [
                {"title": "inner", "datasource": {"type": "prometheus", "uid": "prometheus"},
                 "targets": [{"refId": "A", "expr": "up"}]}
            ]},
            {"title": "logs", "datasource": {"type": "loki", "uid": "loki"},
             "targets": [{"refId": "A", "expr": "{service=\"x\"}"}]},
            {"title": "mixed", "datasource": {"uid": "-- Mixed --"}, "targets": [
                {"refId": "A", "datasource": "Loki", "expr": "{a=\"b\"}"},
                {"refId": "B", "datasource": {"type": "prometheus"}, "expr": ""}
            ]}
        ]});
        std::fs::write(&path, dashboard.to_string()).expect("written");
        let found = dashboard_expressions(&path, "d.json").expect("parsed");
        let contexts: Vec<&str> = found.iter().map(|e| e.context.as_str()).collect();
        assert_eq!(
            contexts,
            ["panel \"inner\" target A", "panel \"mixed\" target B"]
        );
        assert!(found[0].problems.is_empty());
        assert_eq!(found[1].problems, ["the target has no PromQL expression"]);
    }
}
