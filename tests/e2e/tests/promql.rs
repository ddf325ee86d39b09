//! Dashboards and rules proven against real data: with the whole pipeline running and scraped
//! by a real Prometheus (jobs named as in deploy/prometheus/prometheus.yml), every PromQL
//! expression of every dashboard panel under deploy/grafana/dashboards/ (Loki targets aside)
//! and of every rule under deploy/prometheus/ must run without error and name only metrics our
//! services expose or deploy/metric-names.txt lists as third-party.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use logpipe_e2e::pipeline::PipelineOptions;
use logpipe_e2e::queries::{self, Expression, Report};
use logpipe_e2e::records::{self, repo_root};
use logpipe_e2e::scraped::ScrapedPipeline;
use logpipe_e2e::{grafana, promql};
use testkit::prometheus::{Prometheus, PrometheusOptions};

/// Our services' scrape jobs (deploy/prometheus/prometheus.yml).
const OUR_JOBS: [&str; 2] = ["producer", "consumer"];

/// Every dashboard's Prometheus expressions, with file names relative to the repository root.
fn dashboard_expressions(root: &Path) -> Vec<Expression> {
    let dir = root.join("deploy/grafana/dashboards");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("dashboards folder")
        .map(|entry| entry.expect("dashboard entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no dashboards in {}", dir.display());
    files
        .iter()
        .flat_map(|path| {
            let name = path
                .strip_prefix(root)
                .unwrap_or(path)
                .display()
                .to_string();
            grafana::dashboard_expressions(path, &name).expect("dashboard parses")
        })
        .collect()
}

fn describe(report: &Report) -> String {
    report
        .offences
        .iter()
        .map(|o| format!("  {o}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_and_rule_expression_runs_on_real_data_and_names_only_real_metrics() {
    let root = repo_root();
    let rule_files = queries::rule_files(&root.join("deploy/prometheus")).expect("rule files");
    assert!(
        !rule_files.is_empty(),
        "no rule files under deploy/prometheus"
    );
    let logs = records::load(&records::logs_json()).expect("logs.json loads");
    let scraped = ScrapedPipeline::start(
        PipelineOptions {
            accept_old_records: true,
            records_between: records::span(&logs),
            ..PipelineOptions::default()
        },
        rule_files.clone(),
    )
    .await
    .expect("pipeline and Prometheus start");

    // Real data: logs.json through the pipeline, then enough scrapes for rates.
    let body = std::fs::read(records::logs_json()).expect("logs.json readable");
    let answer = scraped.post_logs(body).await.expect("POST /v1/logs");
    let n = answer["accepted"].as_u64().expect("accepted count") as usize;
    scraped
        .pipeline
        .wait_stored(n, Duration::from_secs(120))
        .await
        .expect("records reach the receiver");
    scraped
        .wait_scrapes(3, Duration::from_secs(60))
        .await
        .expect("at least 3 scrapes of every target");

    let names_file = std::fs::read_to_string(root.join("deploy/metric-names.txt"))
        .expect("deploy/metric-names.txt");
    let listed = queries::parse_metric_names(&names_file);
    let exposed = queries::scraped_metric_names(&scraped.prometheus, &OUR_JOBS)
        .await
        .expect("scraped names");
    assert!(
        exposed.contains("consumer_records_pushed_total")
            && exposed.contains("producer_records_sent_total"),
        "Prometheus scraped both services: {exposed:?}"
    );
    let allowed: BTreeSet<String> = exposed.union(&listed.third_party).cloned().collect();

    let mut expressions = dashboard_expressions(&root);
    let dashboards = expressions.len();
    let rules = queries::rule_expressions(&scraped.prometheus, &root, Duration::from_secs(60))
        .await
        .expect("rules loaded and evaluated");
    let rule_count = rules.len();
    let rule_sources: BTreeSet<&str> = rules.iter().map(|r| r.file.as_str()).collect();
    assert_eq!(
        rule_sources.len(),
        rule_files.len(),
        "every rule file has rules loaded: {rule_sources:?} vs {rule_files:?}"
    );
    expressions.extend(rules);
    assert!(
        dashboards > 0 && rule_count > 0,
        "{dashboards} dashboard and {rule_count} rule expressions"
    );

    let report = queries::check(&scraped.prometheus, &expressions, &allowed).await;
    eprintln!(
        "checked {} expressions ({dashboards} from dashboards, {rule_count} from rules); {} \
         returned no sample on this run:",
        report.checked,
        report.empty.len()
    );
    for empty in &report.empty {
        eprintln!(
            "  (empty) {} | {} | {}",
            empty.file, empty.context, empty.query
        );
    }
    let mut failures = Vec::new();
    if !report.offences.is_empty() {
        failures.push(format!(
            "{} problems in deploy/ PromQL (file | where | expression | problem):\n{}",
            report.offences.len(),
            describe(&report)
        ));
    }
    // The reverse direction: every name metric-names.txt lists as ours is really exposed, so the
    // list the static checks (scripts/check-deploy.sh) trust is not stale.
    let stale: Vec<&String> = listed.ours.difference(&exposed).collect();
    if !stale.is_empty() {
        failures.push(format!(
            "deploy/metric-names.txt lists metrics our services do not expose: {stale:?}"
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The checker is not vacuous: an unknown metric, a syntax error, an undefined template
/// variable and an unknown metric in a rule are each flagged, with file and place; a valid
/// expression and a Loki target are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checker_flags_unknown_metrics_syntax_errors_and_undefined_variables() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rules = dir.path().join("bad.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: bad\n    rules:\n      - alert: NoSuchMetricAlert\n        \
         expr: rate(no_such_metric_total[5m]) > 0\n      - alert: FineAlert\n        \
         expr: up == 0\n",
    )
    .expect("rules written");
    let dashboard = dir.path().join("bad.json");
    std::fs::write(
        &dashboard,
        serde_json::json!({"panels": [{
            "title": "Bad panel",
            "datasource": {"type": "prometheus", "uid": "prometheus"},
            "targets": [
                {"refId": "A", "expr": "sum(rate(up[$__rate_interval])"},
                {"refId": "B", "expr": "sum(rate(not_exported_total[5m]))"},
                {"refId": "C", "expr": "up{job=\"$undefined\"}"},
                {"refId": "D", "expr": "sum by (job) (up)"},
                {"refId": "E", "datasource": {"type": "loki"}, "expr": "{service=\"x\"} |= \"y\""}
            ]
        }]})
        .to_string(),
    )
    .expect("dashboard written");
    let prometheus = Prometheus::start_with(PrometheusOptions {
        rule_files: vec![rules],
        ..PrometheusOptions::default()
    })
    .await
    .expect("Prometheus starts");
    let mut expressions = grafana::dashboard_expressions(&dashboard, "bad.json").expect("parsed");
    assert_eq!(expressions.len(), 4, "the Loki target is skipped");
    expressions.extend(
        queries::rule_expressions(&prometheus, dir.path(), Duration::from_secs(30))
            .await
            .expect("rules evaluated"),
    );
    let allowed = BTreeSet::from(["up".to_owned()]);
    let report = queries::check(&prometheus, &expressions, &allowed).await;
    let text = describe(&report);
    let flagged = |context: &str, problem: &str| {
        report
            .offences
            .iter()
            .any(|o| o.expression.context.contains(context) && o.problem.contains(problem))
    };
    assert!(
        flagged("target A", "Prometheus rejects it: bad_data"),
        "{text}"
    );
    assert!(flagged("target B", "not_exported_total"), "{text}");
    assert!(flagged("target C", "$undefined"), "{text}");
    assert!(
        flagged("NoSuchMetricAlert", "no_such_metric_total"),
        "{text}"
    );
    assert!(
        report
            .offences
            .iter()
            .all(|o| o.expression.file == "bad.json" || o.expression.file == "bad.yml"),
        "{text}"
    );
    assert!(
        !flagged("target D", ""),
        "a valid expression is not flagged: {text}"
    );
    assert!(
        !flagged("FineAlert", ""),
        "a valid rule is not flagged: {text}"
    );
    assert_eq!(report.offences.len(), 4, "{text}");
    // The tokenizer behind the metric check, on the expression it flagged.
    assert_eq!(
        promql::metric_names("sum(rate(not_exported_total[5m]))"),
        BTreeSet::from(["not_exported_total".to_owned()])
    );
}
