//! The whole pipeline as operators run it, scraped by a real Prometheus: the `consumer`, the
//! `producer` serving HTTP ingest (so it stays up to be scraped; records come in through
//! `POST /v1/logs`), Kafka, Loki, and Prometheus scraping the producer (job `producer`), the
//! consumer (job `consumer`) and Loki (job `loki`) every second, as
//! deploy/prometheus/prometheus.yml names the jobs.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use testkit::prometheus::{Prometheus, PrometheusOptions, ScrapeTarget};
use testkit::service::{Readiness, ServiceProcess};

use crate::error::{Error, Result};
use crate::pipeline::{Pipeline, PipelineOptions};
use crate::wait;

/// Scrape (and rule evaluation) interval.
pub const SCRAPE_INTERVAL: Duration = Duration::from_secs(1);

/// How long services may take to report ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running, scraped pipeline. Fields drop in order: Prometheus and the services stop before
/// the broker and the receiver they talk to.
#[derive(Debug)]
pub struct ScrapedPipeline {
    /// Prometheus scraping jobs `producer`, `consumer` and `loki`.
    pub prometheus: Prometheus,
    /// `producer run` (HTTP ingest only).
    pub producer: ServiceProcess,
    /// `consumer run`.
    pub consumer: ServiceProcess,
    /// Broker, topics and receiver.
    pub pipeline: Pipeline,
    http: reqwest::Client,
}

impl ScrapedPipeline {
    /// Starts everything, with Prometheus loading `rule_files`, and returns once both services
    /// report ready (`/readyz`) and every job was scraped successfully.
    pub async fn start(options: PipelineOptions, rule_files: Vec<PathBuf>) -> Result<Self> {
        let pipeline = Pipeline::start(options).await?;
        let consumer = pipeline.start_consumer("consumer").await?;
        let producer = pipeline
            .start_producer("producer", &["run"], Readiness::Healthz)
            .await?;
        let prometheus = Prometheus::start_with(PrometheusOptions {
            targets: vec![
                ScrapeTarget::new("producer", producer.admin_addr()),
                ScrapeTarget::new("consumer", consumer.admin_addr()),
                ScrapeTarget::new("loki", pipeline.loki.metrics_addr()),
            ],
            scrape_interval: SCRAPE_INTERVAL,
            rule_files,
            ..PrometheusOptions::default()
        })
        .await?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(Error::http("cannot build an HTTP client"))?;
        let mut scraped = Self {
            prometheus,
            producer,
            consumer,
            pipeline,
            http,
        };
        for service in [&mut scraped.producer, &mut scraped.consumer] {
            service
                .wait_for_status("/readyz", 200, READY_TIMEOUT)
                .await?;
        }
        for job in ["producer", "consumer", "loki"] {
            scraped
                .prometheus
                .wait_scraped(job, Duration::from_secs(60))
                .await?;
        }
        Ok(scraped)
    }

    /// `POST /v1/logs` with `body` (a JSON array or NDJSON) to the producer; returns the answer
    /// (`{accepted, rejected, errors}`), failing on any status but 200.
    pub async fn post_logs(&self, body: Vec<u8>) -> Result<Value> {
        let url = self.producer.url("/v1/logs");
        let response = self
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(Error::http(format!("POST {url}")))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(Error::http(format!("reading the answer of POST {url}")))?;
        if !status.is_success() {
            return Err(Error::Invalid(format!(
                "POST {url} answered {status}: {text}"
            )));
        }
        serde_json::from_str(&text)
            .map_err(|error| Error::Invalid(format!("POST {url} answered {text:?}: {error}")))
    }

    /// Waits until Prometheus holds at least `n` successful scrapes of every target of every
    /// job (`min(count_over_time(up[5m]))`).
    pub async fn wait_scrapes(&self, n: usize, timeout: Duration) -> Result<()> {
        let prometheus = &self.prometheus;
        wait::until(
            &format!("{n} scrapes of every target"),
            timeout,
            || async move {
                match prometheus.query_scalar("min(sum_over_time(up[5m]))").await {
                    Ok(Some(scrapes)) if scrapes >= n as f64 => Ok(()),
                    Ok(other) => Err(format!("fewest successful scrapes: {other:?}")),
                    Err(error) => Err(error.to_string()),
                }
            },
        )
        .await
    }

    /// Polls the PromQL `query` (a single sample) until it equals `want`; returns the last value
    /// seen on timeout.
    pub async fn wait_promql(&self, query: &str, want: f64, timeout: Duration) -> Result<()> {
        let prometheus = &self.prometheus;
        wait::until(&format!("{query} == {want}"), timeout, || async move {
            match prometheus.query_scalar(query).await {
                Ok(Some(value)) if value == want => Ok(()),
                Ok(other) => Err(format!("{other:?}")),
                Err(error) => Err(error.to_string()),
            }
        })
        .await
    }
}
