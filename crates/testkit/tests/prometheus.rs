//! The Prometheus helper against a real `prometheus` process scraping an endpoint the test
//! serves. Needs `prometheus` on PATH; fails, never skips, without it.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use testkit::prometheus::{Prometheus, PrometheusError, PrometheusOptions, ScrapeTarget};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(30);
const INTERVAL: Duration = Duration::from_millis(250);

const METRICS: &str = "# HELP harness_test_total A counter the test serves.\n\
                       # TYPE harness_test_total counter\n\
                       harness_test_total 42\n";

/// Serves `METRICS` on `http://<addr>/metrics` until the task is aborted.
async fn serve_metrics() -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("loopback bind succeeds");
    let addr = listener
        .local_addr()
        .expect("bound listener has an address");
    let server = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0_u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{METRICS}",
                    METRICS.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (addr, server)
}

#[tokio::test]
async fn prometheus_scrapes_a_test_endpoint_and_a_query_returns_its_counter() {
    let (addr, server) = serve_metrics().await;
    let prometheus = Prometheus::start(&[ScrapeTarget::new("harness", addr)], INTERVAL)
        .await
        .unwrap();
    prometheus.wait_scraped("harness", WAIT).await.unwrap();

    let data = prometheus.query("harness_test_total").await.unwrap();
    assert_eq!(data["resultType"], "vector");
    assert_eq!(data["result"][0]["value"][1], "42", "{data}");
    assert_eq!(
        prometheus.query_scalar("harness_test_total").await.unwrap(),
        Some(42.0)
    );
    let samples = prometheus.query_vector("harness_test_total").await.unwrap();
    assert_eq!(samples.len(), 1);
    assert_eq!(samples[0].labels["job"], "harness");
    assert_eq!(samples[0].labels["instance"], addr.to_string());
    assert_eq!(
        prometheus
            .query_scalar("absent_metric_total")
            .await
            .unwrap(),
        None
    );
    server.abort();
}

#[tokio::test]
async fn recording_rules_from_extra_rule_files_are_evaluated() {
    let (addr, server) = serve_metrics().await;
    let rules = tempfile::tempdir().unwrap();
    let rule_file = rules.path().join("harness.yml");
    std::fs::write(
        &rule_file,
        "groups:\n  - name: harness\n    rules:\n      - record: job:harness_test_total:doubled\n        \
         expr: 2 * sum by (job) (harness_test_total)\n",
    )
    .unwrap();
    let prometheus = Prometheus::start_with(PrometheusOptions {
        targets: vec![ScrapeTarget::new("harness", addr)],
        scrape_interval: INTERVAL,
        rule_files: vec![rule_file],
        ..PrometheusOptions::default()
    })
    .await
    .unwrap();
    let value = prometheus
        .wait_until("job:harness_test_total:doubled", WAIT, |v| v == 84.0)
        .await
        .unwrap();
    assert_eq!(value, 84.0);
    server.abort();
}

#[tokio::test]
async fn waiting_for_a_dead_target_times_out_with_its_scrape_error() {
    // A port nobody listens on: bound, then released.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let prometheus = Prometheus::start(&[ScrapeTarget::new("dead", dead)], INTERVAL)
        .await
        .unwrap();
    let error = prometheus
        .wait_scraped("dead", Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(matches!(error, PrometheusError::Timeout { .. }), "{error}");
    assert!(error.to_string().contains("connection refused"), "{error}");
}

#[tokio::test]
async fn a_malformed_query_is_reported_as_an_api_error() {
    let prometheus = Prometheus::start(&[], INTERVAL).await.unwrap();
    let error = prometheus.query("sum(").await.unwrap_err();
    match error {
        PrometheusError::Api { error_type, .. } => assert_eq!(error_type, "bad_data"),
        other => panic!("expected an api error, got {other}"),
    }
}

#[tokio::test]
async fn the_prometheus_process_is_gone_after_drop() {
    let prometheus = Prometheus::start(&[], INTERVAL).await.unwrap();
    let pid = prometheus.pid();
    let proc_dir = format!("/proc/{pid}");
    assert!(Path::new(&proc_dir).exists());
    let cmdline = std::fs::read_to_string(format!("{proc_dir}/cmdline")).unwrap();
    assert!(cmdline.contains("logpipe-test-"), "{cmdline:?}");
    let dir = prometheus.dir().to_path_buf();
    drop(prometheus);
    assert!(!Path::new(&proc_dir).exists());
    assert!(!dir.exists());
}
