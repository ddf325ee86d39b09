//! Secrets of the real `producer` and `consumer` binaries: every secret-bearing setting
//! (`INGEST_TOKEN`, `LOKI_PASSWORD`, `LOKI_BEARER_TOKEN`, `KAFKA_SASL_PASSWORD`, and a password
//! inside `LOKI_URL`), given in the environment and through `<NAME>_FILE`, reaches the party it
//! is for (the producer enforces the token; the Loki stand-in and the SASL stand-in broker
//! record the credentials the consumer sends) and never appears in the process's stdout or
//! stderr at trace log level, in `/healthz`, `/readyz` or `/metrics`, or in the error of a bad
//! configuration. A `<NAME>_FILE` that does not exist stops the service with an error naming the
//! variable and the path.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use logpipe_security::binaries;
use logpipe_security::loki_stub::LokiStub;
use logpipe_security::sasl_capture::SaslCapture;
use logpipe_security::secret::{self, found_in, leak_forms};
use logpipe_security::topic;
use tempfile::TempDir;
use testkit::broker::{unique_name, Broker};
use testkit::service::{run_to_exit, Readiness, ServiceProcess};

/// Everything, including librdkafka's and the HTTP stack's own logging.
const LOG_LEVEL: &str = "trace";

/// How long a config error may take to be reported.
const EXIT_WITHIN: Duration = Duration::from_secs(30);

/// Where a secret comes from.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// `NAME=value`.
    Env,
    /// `NAME_FILE=path`, the file holding the value and a newline.
    File,
}

/// `NAME=secret` or `NAME_FILE=<file with secret>`.
fn secret_var(source: Source, name: &str, value: &str, dir: &TempDir) -> (String, String) {
    match source {
        Source::Env => (name.to_owned(), value.to_owned()),
        Source::File => {
            let path = write_file(
                dir,
                &format!("{}.secret", name.to_lowercase()),
                &format!("{value}\n"),
            );
            (format!("{name}_FILE"), path.display().to_string())
        }
    }
}

/// Asserts no form of the secrets is in `text` (`where_` says what the text is).
fn assert_no_leak(where_: &str, text: &str, forms: &[String]) {
    let found = found_in(text, forms);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !found_in(l, forms).is_empty())
        .take(5)
        .collect();
    assert!(
        found.is_empty(),
        "{where_} shows a secret ({found:?}) on these lines (first 5):\n{}",
        lines.join("\n")
    );
}

/// Asserts the admin endpoints answer and show no secret.
async fn assert_admin_endpoints_clean(service: &ServiceProcess, forms: &[String]) {
    for path in ["/healthz", "/readyz", "/metrics"] {
        let (status, body) = service.get(path).await.unwrap();
        assert!(
            status == 200 || (path == "/readyz" && status == 503),
            "{path}: {status}"
        );
        assert!(!body.is_empty(), "{path} is empty");
        assert_no_leak(path, &body, forms);
    }
}

/// Stops `service` gracefully and asserts its whole output, logged at trace level, is clean.
async fn assert_stops_with_clean_output(service: &mut ServiceProcess, forms: &[String]) {
    let status = service.terminate(STOP_WITHIN).await.unwrap();
    assert!(
        status.success(),
        "stopped with {status}:\n{}",
        service.log_tail(40)
    );
    let output = service.log_text();
    assert!(
        output.contains("\"level\":\"TRACE\"") || output.contains("\"level\":\"DEBUG\""),
        "no debug or trace line: the leak check would prove nothing:\n{}",
        service.log_tail(20)
    );
    assert_no_leak("the service's stdout/stderr", &output, forms);
}

async fn producer_token_case(source: Source) {
    let (broker, topic) = broker_with_topic("secrets", 1).await;
    let logs = work_dir();
    let token = secret::distinctive("ingest");
    let (name, value) = secret_var(source, "INGEST_TOKEN", &token, &logs);
    let env = producer_env(
        &broker,
        &topic,
        &[(&name, &value), ("LOG_LEVEL", LOG_LEVEL)],
    );
    let mut producer = start_producer(env, &logs).await;
    let http = reqwest::Client::new();
    let post = |auth: String, body: String| {
        http.post(producer.url("/v1/logs"))
            .header("authorization", auth)
            .body(body)
            .send()
    };
    let ok = post(format!("Bearer {token}"), ndjson("secret", 0, 2))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200, "the token ({source:?}) is not accepted");
    let wrong = post("Bearer wrong".to_owned(), ndjson("secret", 2, 3))
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401, "a wrong token is accepted");
    let broken = post(format!("Bearer {token}"), "[{\"a\":".to_owned())
        .await
        .unwrap();
    assert_eq!(broken.status(), 400);
    let records = read_to_end(&broker, &topic).await;
    assert_eq!(
        records.len(),
        2,
        "only the two authorised records are in the topic"
    );

    let forms = leak_forms(&token);
    assert_admin_endpoints_clean(&producer, &forms).await;
    assert_stops_with_clean_output(&mut producer, &forms).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingest_token_from_the_environment_is_enforced_and_never_shown() {
    producer_token_case(Source::Env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingest_token_from_a_file_is_enforced_and_never_shown() {
    producer_token_case(Source::File).await;
}

/// A topic with one fresh record, its dead-letter topic, and a Loki stand-in.
struct ConsumerRig {
    broker: Broker,
    topic: String,
    dlq: String,
    loki: LokiStub,
    logs: TempDir,
}

impl ConsumerRig {
    async fn start() -> Self {
        let (broker, topic) = broker_with_topic("secrets", 1).await;
        let dlq = unique_name("secrets-dlq");
        broker.create_topic(&dlq, 1).await.unwrap();
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis();
        let value = format!(
            "{{\"timestamp\":{now_ms},\"level\":\"info\",\"service\":\"svc\",\"message\":\"hello\"}}"
        );
        topic::produce(
            &broker.client_config(),
            &topic,
            &schema::kafka::RECORD_HEADERS,
            &[("svc".to_owned(), value)],
        )
        .await
        .unwrap();
        Self {
            broker,
            topic,
            dlq,
            loki: LokiStub::start().await.unwrap(),
            logs: work_dir(),
        }
    }

    fn env(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut env = vars(&[
            ("KAFKA_BOOTSTRAP_SERVERS", &self.broker.bootstrap_servers()),
            ("KAFKA_TOPIC", &self.topic),
            ("KAFKA_DLQ_TOPIC", &self.dlq),
            ("KAFKA_GROUP_ID", &unique_name("secrets-group")),
            ("LOKI_URL", &self.loki.url()),
            ("LOKI_READY_INTERVAL", "200ms"),
            ("BATCH_MAX_WAIT", "100ms"),
            ("SHUTDOWN_TIMEOUT", "10s"),
            ("LOG_LEVEL", LOG_LEVEL),
            ("LOG_FORMAT", "json"),
        ]);
        env.extend(vars(extra));
        env
    }
}

/// Waits until the Loki stand-in received a push.
async fn wait_for_push(loki: &LokiStub, consumer: &mut ServiceProcess) {
    let deadline = Instant::now() + START_WITHIN;
    while loki.pushes().is_empty() {
        assert!(
            consumer.exit_status().unwrap().is_none(),
            "the consumer exited:\n{}",
            consumer.log_tail(40)
        );
        assert!(
            Instant::now() < deadline,
            "no push reached Loki; requests: {:?}",
            loki.requests()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs a consumer with `credentials` and asserts Loki saw `authorization` on every request
/// and no form of `secrets` leaked.
async fn loki_credentials_case(
    credentials: &[(&str, &str)],
    authorization: &str,
    secrets: &[&str],
) {
    let rig = ConsumerRig::start().await;
    let mut consumer = start_consumer(rig.env(credentials), &rig.logs).await;
    wait_for_push(&rig.loki, &mut consumer).await;
    consumer
        .wait_for_status("/readyz", 200, START_WITHIN)
        .await
        .unwrap();
    let requests = rig.loki.requests();
    let unauthenticated: Vec<_> = requests
        .iter()
        .filter(|r| r.authorization.as_deref() != Some(authorization))
        .collect();
    assert!(
        unauthenticated.is_empty(),
        "requests without the configured credentials: {unauthenticated:?}"
    );
    let mut forms: Vec<String> = secrets.iter().flat_map(|s| leak_forms(s)).collect();
    forms.push(authorization.to_owned());
    if let Some(basic) = authorization.strip_prefix("Basic ") {
        forms.push(basic.to_owned());
    }
    assert_admin_endpoints_clean(&consumer, &forms).await;
    assert_stops_with_clean_output(&mut consumer, &forms).await;
}

async fn loki_password_case(source: Source) {
    let logs = work_dir();
    let password = secret::distinctive("loki");
    let (name, value) = secret_var(source, "LOKI_PASSWORD", &password, &logs);
    let expected = format!(
        "Basic {}",
        secret::base64(format!("loki-user:{password}").as_bytes())
    );
    loki_credentials_case(
        &[("LOKI_USERNAME", "loki-user"), (&name, &value)],
        &expected,
        &[&password],
    )
    .await;
}

async fn loki_bearer_case(source: Source) {
    let logs = work_dir();
    let token = secret::distinctive("bearer");
    let (name, value) = secret_var(source, "LOKI_BEARER_TOKEN", &token, &logs);
    loki_credentials_case(&[(&name, &value)], &format!("Bearer {token}"), &[&token]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loki_password_from_the_environment_is_sent_and_never_shown() {
    loki_password_case(Source::Env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loki_password_from_a_file_is_sent_and_never_shown() {
    loki_password_case(Source::File).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loki_bearer_token_from_the_environment_is_sent_and_never_shown() {
    loki_bearer_case(Source::Env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loki_bearer_token_from_a_file_is_sent_and_never_shown() {
    loki_bearer_case(Source::File).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_inside_the_loki_url_is_sent_and_never_shown() {
    let rig = ConsumerRig::start().await;
    let password = secret::distinctive("urlpw");
    let url = rig
        .loki
        .url()
        .replacen("http://", &format!("http://url-user:{password}@"), 1);
    let expected = format!(
        "Basic {}",
        secret::base64(format!("url-user:{password}").as_bytes())
    );
    let mut consumer = start_consumer(rig.env(&[("LOKI_URL", &url)]), &rig.logs).await;
    wait_for_push(&rig.loki, &mut consumer).await;
    let pushes = rig.loki.pushes();
    assert_eq!(
        pushes[0].authorization.as_deref(),
        Some(expected.as_str()),
        "the credentials in LOKI_URL are not what the push carried"
    );
    let mut forms = leak_forms(&password);
    forms.push(expected.trim_start_matches("Basic ").to_owned());
    assert_admin_endpoints_clean(&consumer, &forms).await;
    assert_stops_with_clean_output(&mut consumer, &forms).await;
}

async fn kafka_sasl_case(source: Source) {
    let capture = SaslCapture::start().await.unwrap();
    let loki = LokiStub::start().await.unwrap();
    let logs = work_dir();
    let password = secret::distinctive("sasl");
    let (name, value) = secret_var(source, "KAFKA_SASL_PASSWORD", &password, &logs);
    let env = vars(&[
        ("KAFKA_BOOTSTRAP_SERVERS", &capture.bootstrap_servers()),
        (
            "KAFKA_EXTRA_PROPERTIES",
            "security.protocol=SASL_PLAINTEXT,sasl.mechanism=PLAIN,sasl.username=kafka-user",
        ),
        (&name, &value),
        ("LOKI_URL", &loki.url()),
        ("LOG_LEVEL", LOG_LEVEL),
        ("LOG_FORMAT", "json"),
    ]);
    let bin = binaries::consumer().unwrap();
    let mut spec = run_spec("consumer", bin, env, &logs);
    spec.readiness = Readiness::Spawned;
    let mut consumer = ServiceProcess::start(spec).await.unwrap();
    let deadline = Instant::now() + START_WITHIN;
    while capture.credentials().is_empty() {
        assert!(
            Instant::now() < deadline,
            "no SASL credentials reached the broker:\n{}",
            consumer.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sent = capture.credentials();
    assert_eq!(sent[0].username, "kafka-user");
    assert_eq!(
        sent[0].password, password,
        "the password ({source:?}) is not what was sent"
    );
    let forms = leak_forms(&password);
    // The consumer may give up on a broker that refuses it; what it said until then counts.
    if consumer.exit_status().unwrap().is_none() {
        if let Ok((_, body)) = consumer.get("/metrics").await {
            assert_no_leak("/metrics", &body, &forms);
        }
        if let Ok((_, body)) = consumer.get("/readyz").await {
            assert_no_leak("/readyz", &body, &forms);
        }
        let _ = consumer.terminate(STOP_WITHIN).await;
    }
    let output = consumer.log_text();
    assert!(
        output.contains("\"level\":\"TRACE\"") || output.contains("\"level\":\"DEBUG\""),
        "no debug or trace line:\n{}",
        consumer.log_tail(20)
    );
    assert_no_leak("the consumer's stdout/stderr", &output, &forms);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kafka_sasl_password_from_the_environment_reaches_the_broker_and_never_shows() {
    kafka_sasl_case(Source::Env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kafka_sasl_password_from_a_file_reaches_the_broker_and_never_shows() {
    kafka_sasl_case(Source::File).await;
}

/// Runs `bin run` with `env` (and, when given, `--config file`) and returns its exit code
/// and stderr, asserting that stdout is empty.
async fn config_error(
    bin: &std::path::Path,
    env: &[(String, String)],
    config: Option<&str>,
) -> (i32, String) {
    let mut args = vec!["run"];
    if let Some(file) = config {
        args.extend(["--config", file]);
    }
    let out = run_to_exit(bin, &args, env, EXIT_WITHIN).await.unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!("{}{}", out.stdout, out.stderr),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_configuration_is_reported_without_the_secrets() {
    let logs = work_dir();
    let producer = binaries::producer().unwrap();
    let consumer = binaries::consumer().unwrap();
    let token = secret::distinctive("cfg");
    let token_file = write_file(&logs, "token", &format!("{token}\n"));
    let token_file = token_file.display().to_string();
    let forms = leak_forms(&token);
    // (binary, environment, the key the error must name)
    let cases = [
        (
            &producer,
            vec![
                ("INGEST_TOKEN", token.as_str()),
                ("KAFKA_COMPRESSION", "brotli"),
            ],
            "kafka_compression",
        ),
        (
            &producer,
            vec![
                ("INGEST_TOKEN_FILE", token_file.as_str()),
                ("HTTP_LISTEN", "nowhere"),
            ],
            "http_listen",
        ),
        (
            &consumer,
            vec![
                ("LOKI_USERNAME", "u"),
                ("LOKI_PASSWORD", token.as_str()),
                ("BATCH_MAX_BYTES", "0"),
            ],
            "batch_max_bytes",
        ),
        (
            &consumer,
            vec![
                ("LOKI_USERNAME", "u"),
                ("LOKI_BEARER_TOKEN", token.as_str()),
            ],
            "loki_bearer_token",
        ),
        (
            &consumer,
            vec![
                ("LOKI_PASSWORD_FILE", token_file.as_str()),
                ("LOKI_URL", "ftp://loki"),
            ],
            "loki_url",
        ),
        (
            &consumer,
            vec![
                ("KAFKA_SASL_PASSWORD", token.as_str()),
                ("KAFKA_AUTO_OFFSET_RESET", "middle"),
            ],
            "kafka_auto_offset_reset",
        ),
    ];
    for (bin, env, key) in cases {
        let mut env = vars(&env);
        env.push(("LOG_LEVEL".into(), LOG_LEVEL.into()));
        let (code, output) = config_error(bin, &env, None).await;
        assert_eq!(code, 78, "{key}: {output}");
        assert!(
            output.contains(key),
            "the error does not name {key}: {output}"
        );
        assert_no_leak(&format!("the error about {key}"), &output, &forms);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_with_a_mistyped_secret_is_reported_without_echoing_it() {
    let logs = work_dir();
    let producer = binaries::producer().unwrap();
    let consumer = binaries::consumer().unwrap();
    let token = secret::distinctive("toml");
    let digits = format!("{}", 7_000_000_000_u64 + u64::from(std::process::id()));
    let cases = [
        (
            &producer,
            "ingest_token",
            format!("ingest_token = {token}\n"),
            token.clone(),
        ),
        (
            &producer,
            "ingest_token",
            format!("ingest_token = {digits}\n"),
            digits.clone(),
        ),
        (
            &consumer,
            "loki_password",
            format!("loki_password = {digits}\n"),
            digits.clone(),
        ),
    ];
    let mut leaks = Vec::new();
    for (i, (bin, key, text, secret_value)) in cases.iter().enumerate() {
        let file = write_file(&logs, &format!("c{i}.toml"), text);
        let (code, output) = config_error(bin, &[], Some(&file.display().to_string())).await;
        assert_eq!(code, 78, "{text}: {output}");
        assert!(
            output.contains(key) || output.contains("line 1"),
            "{text}: {output}"
        );
        if output.contains(secret_value.as_str()) {
            leaks.push(format!(
                "{} with `{}`:\n{output}",
                bin.display(),
                text.trim()
            ));
        }
    }
    assert!(
        leaks.is_empty(),
        "the secret is echoed in the error:\n{}",
        leaks.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_secret_file_is_an_error_naming_the_variable_and_the_path() {
    let logs = work_dir();
    let missing = logs.path().join("no-such-dir/secret").display().to_string();
    let producer = binaries::producer().unwrap();
    let consumer = binaries::consumer().unwrap();
    for (bin, variable) in [
        (&producer, "INGEST_TOKEN_FILE"),
        (&consumer, "LOKI_PASSWORD_FILE"),
        (&consumer, "LOKI_BEARER_TOKEN_FILE"),
        (&consumer, "KAFKA_SASL_PASSWORD_FILE"),
    ] {
        let (code, output) = config_error(bin, &vars(&[(variable, &missing)]), None).await;
        assert_eq!(code, 78, "{variable}: {output}");
        assert!(
            output.contains(variable) && output.contains(&missing),
            "the error does not name {variable} and {missing}: {output}"
        );
        assert_eq!(output.trim().lines().count(), 1, "not one line: {output}");
    }
}
