//! The PromQL that deploy/ ships (dashboard targets and alert/recording rules), proven against
//! a real Prometheus scraping the real services: every expression must run without error, and
//! every metric it names must be exposed by our services (the names Prometheus scraped from
//! them) or be listed as a third-party metric in deploy/metric-names.txt.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use testkit::prometheus::{Prometheus, PrometheusError};

use crate::error::{Error, Result};
use crate::promql;
use crate::wait;

/// One PromQL expression shipped in deploy/.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expression {
    /// The file it comes from, relative to the repository root.
    pub file: String,
    /// Where in the file: the panel and target, or the rule.
    pub context: String,
    /// The expression as written.
    pub expr: String,
    /// The expression as run (template variables replaced).
    pub query: String,
    /// Problems found while collecting it (undefined variables, empty expression).
    pub problems: Vec<String>,
}

/// An expression that fails the check, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offence {
    /// The expression.
    pub expression: Expression,
    /// What is wrong.
    pub problem: String,
}

impl fmt::Display for Offence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} | {} | {} | {}",
            self.expression.file,
            self.expression.context,
            self.expression
                .expr
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
            self.problem
        )
    }
}

/// What [`check`] found.
#[derive(Debug, Default)]
pub struct Report {
    /// Expressions run.
    pub checked: usize,
    /// Expressions that failed, one entry per problem.
    pub offences: Vec<Offence>,
    /// Expressions that ran but returned no sample (not a failure: alert conditions and
    /// exporter metrics are empty here; listed for the reader).
    pub empty: Vec<Expression>,
}

/// Metric names of deploy/metric-names.txt, by owner.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MetricNames {
    /// Names under a section whose heading names a source file under `crates/` (our services).
    pub ours: BTreeSet<String>,
    /// Names under any other section (Prometheus itself, exporters, Loki).
    pub third_party: BTreeSet<String>,
}

/// Parses deploy/metric-names.txt: a leading comment block, then sections, each a `# heading`
/// line followed by one name per line; blank lines separate sections.
pub fn parse_metric_names(text: &str) -> MetricNames {
    let mut names = MetricNames::default();
    let mut in_preamble = true;
    let mut heading: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if line.is_empty() {
            in_preamble = false;
            heading = None;
        } else if let Some(comment) = line.strip_prefix('#') {
            if !in_preamble && heading.is_none() {
                heading = Some(comment.trim().to_owned());
            }
        } else if !in_preamble {
            let ours = heading.as_deref().is_some_and(|h| h.contains("crates/"));
            let set = if ours {
                &mut names.ours
            } else {
                &mut names.third_party
            };
            set.insert(line.to_owned());
        }
    }
    names
}

/// The Prometheus rule files under `dir` (recursively): YAML files with a top-level `groups:`
/// key. `promtool test rules` files (`rule_files:` and `tests:`) are not rule files.
pub fn rule_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries =
            std::fs::read_dir(&dir).map_err(Error::io(format!("cannot list {}", dir.display())))?;
        for entry in entries {
            let path = entry
                .map_err(Error::io(format!("cannot list {}", dir.display())))?
                .path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let yaml = path.extension().is_some_and(|e| e == "yml" || e == "yaml");
            if !yaml {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .map_err(Error::io(format!("cannot read {}", path.display())))?;
            if text.lines().any(|line| line.starts_with("groups:")) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Every rule Prometheus loaded, as expressions (`file` relative to `root`), once each was
/// evaluated at least once; a rule whose evaluation failed carries that as a problem.
pub async fn rule_expressions(
    prometheus: &Prometheus,
    root: &Path,
    timeout: Duration,
) -> Result<Vec<Expression>> {
    let http = http_client()?;
    let url = format!("{}/api/v1/rules", prometheus.url());
    let groups = wait::until("every rule to be evaluated", timeout, || async {
        let response: Value = match http.get(&url).send().await {
            Ok(response) => response.json().await.map_err(|e| e.to_string())?,
            Err(error) => return Err(error.to_string()),
        };
        let groups = response
            .pointer("/data/groups")
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| format!("unexpected answer {response}"))?;
        let pending = groups
            .iter()
            .flat_map(|g| {
                g.get("rules")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
            })
            .filter(|r| r.get("health").and_then(Value::as_str) == Some("unknown"))
            .count();
        if pending == 0 {
            Ok(groups)
        } else {
            Err(format!("{pending} rules not evaluated yet"))
        }
    })
    .await?;
    let root = std::path::absolute(root).map_err(Error::io("cannot resolve the root"))?;
    let mut out = Vec::new();
    for group in &groups {
        let text =
            |v: &Value, key: &str| v.get(key).and_then(Value::as_str).unwrap_or("").to_owned();
        let file = text(group, "file");
        let file = Path::new(&file)
            .strip_prefix(&root)
            .map(|p| p.display().to_string())
            .unwrap_or(file);
        for rule in group
            .get("rules")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let query = text(rule, "query");
            let mut problems = Vec::new();
            if text(rule, "health") == "err" {
                problems.push(format!(
                    "rule evaluation failed: {}",
                    text(rule, "lastError")
                ));
            }
            out.push(Expression {
                file: file.clone(),
                context: format!(
                    "{} rule {} (group {})",
                    text(rule, "type"),
                    text(rule, "name"),
                    text(group, "name")
                ),
                expr: query.clone(),
                query,
                problems,
            });
        }
    }
    Ok(out)
}

/// The metric names Prometheus scraped from the targets of `jobs`
/// (`/api/v1/label/__name__/values` restricted to those jobs).
pub async fn scraped_metric_names(
    prometheus: &Prometheus,
    jobs: &[&str],
) -> Result<BTreeSet<String>> {
    let http = http_client()?;
    let url = format!("{}/api/v1/label/__name__/values", prometheus.url());
    let selector = format!("{{job=~\"{}\"}}", jobs.join("|"));
    let response: Value = http
        .get(&url)
        .query(&[("match[]", selector.as_str())])
        .send()
        .await
        .map_err(Error::http(format!("GET {url}")))?
        .json()
        .await
        .map_err(Error::http(format!("reading {url}")))?;
    let names = response
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::Invalid(format!("unexpected answer from {url}: {response}")))?;
    Ok(names
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect())
}

/// Runs every expression on `prometheus` (an instant query now) and checks the metric names it
/// selects against `allowed`.
pub async fn check(
    prometheus: &Prometheus,
    expressions: &[Expression],
    allowed: &BTreeSet<String>,
) -> Report {
    let mut report = Report::default();
    for expression in expressions {
        let offend = |problem: String| Offence {
            expression: expression.clone(),
            problem,
        };
        report
            .offences
            .extend(expression.problems.iter().cloned().map(offend));
        if expression.query.trim().is_empty() {
            continue;
        }
        report.checked += 1;
        match prometheus.query(&expression.query).await {
            Ok(data) => {
                let empty = match data.get("result") {
                    Some(Value::Array(items)) => items.is_empty(),
                    _ => false,
                };
                if empty {
                    report.empty.push(expression.clone());
                }
            }
            Err(PrometheusError::Api {
                error_type, error, ..
            }) => report.offences.push(offend(format!(
                "Prometheus rejects it: {error_type}: {error}"
            ))),
            Err(other) => report
                .offences
                .push(offend(format!("cannot run it: {other}"))),
        }
        let unknown: Vec<String> = promql::metric_names(&expression.expr)
            .into_iter()
            .filter(|name| !allowed.contains(name))
            .collect();
        if !unknown.is_empty() {
            report.offences.push(offend(format!(
                "names metrics that no service exposes and deploy/metric-names.txt does not list \
                 as third-party: {}",
                unknown.join(", ")
            )));
        }
    }
    report
}

fn http_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(Error::http("cannot build an HTTP client"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_file_sections_are_ours_when_their_heading_names_a_crate() {
        let text = "# Preamble line one\n# crates/ mentioned in the preamble does not count\n\n\
                    # Prometheus itself\nup\n\n# consumer (crates/consumer/src/metrics.rs)\n\
                    consumer_x_total\nkafka_consumer_lag\n\n# kafka-exporter\nkafka_consumergroup_lag\n";
        let names = parse_metric_names(text);
        assert_eq!(
            names.ours,
            BTreeSet::from([
                "consumer_x_total".to_owned(),
                "kafka_consumer_lag".to_owned()
            ])
        );
        assert_eq!(
            names.third_party,
            BTreeSet::from(["up".to_owned(), "kafka_consumergroup_lag".to_owned()])
        );
    }

    #[test]
    fn the_repository_metric_names_file_has_both_kinds() {
        let path = crate::records::repo_root().join("deploy/metric-names.txt");
        let names = parse_metric_names(&std::fs::read_to_string(path).expect("readable"));
        assert!(names.ours.contains("kafka_consumer_lag_sum"), "{names:?}");
        assert!(
            names.third_party.contains("kafka_consumergroup_lag"),
            "{names:?}"
        );
        assert!(names.ours.is_disjoint(&names.third_party));
    }

    #[test]
    fn rule_files_are_found_and_promtool_test_files_are_not() {
        let found =
            rule_files(&crate::records::repo_root().join("deploy/prometheus")).expect("listed");
        let names: Vec<String> = found
            .iter()
            .filter_map(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        assert!(names.contains(&"pipeline.yml".to_owned()), "{names:?}");
        assert!(!names.iter().any(|n| n.ends_with("_test.yml")), "{names:?}");
    }
}
