#!/usr/bin/env bash
# load-test.sh — local load test of the producer's HTTP ingest (POST /v1/logs) with wrk.
#
# Starts tansu (memory storage) and `producer run` with a bearer token on free loopback ports, or
# uses a producer you name with --url; drives POST /v1/logs with wrk and tests/load/ingest.lua
# (NDJSON batches of the valid records of logs.json, with the token); prints requests/s,
# records/s and the error rate; then reads the topic back and checks that every record the
# producer accepted is in it. The local equivalent of tests/load/ingestion-load-test.js (k6, CI).
set -euo pipefail

readonly SCRIPT_NAME="${0##*/}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT

usage() {
  cat <<USAGE
Usage: scripts/$SCRIPT_NAME [options]

Load-tests POST /v1/logs with wrk and checks that nothing accepted was lost.

Options:
  --duration SECONDS     how long wrk runs (default: 20)
  --connections N        open connections (default: 8)
  --threads N            wrk threads (default: 2)
  --batch N              records per request (default: 100)
  --max-error-rate PCT   fail above this share of failed requests, in percent (default: 1)
  --input FILE           records to send, a JSON array or NDJSON (default: logs.json)
  --url URL              use this producer instead of starting one (token from INGEST_TOKEN)
  --bootstrap HOST:PORT  with --url: the Kafka to count the topic in (no count without it)
  --topic NAME           with --url: the topic the producer writes (default: logs)
  -h, --help             show this help

Environment:
  INGEST_TOKEN        with --url: the producer's bearer token (never passed on a command line)
  LOGPIPE_SKIP_BUILD  1: use the release binaries already built
  CARGO_TARGET_DIR, TANSU_BIN, LOGPIPE_CACHE  as in scripts/lib/tools.sh

Exit status: 0 passed, 1 error rate over --max-error-rate, accepted records missing from the
topic, or a start-up failure, 2 bad usage.
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

# field NAME LINE — the value of NAME=value in LINE.
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

is_number() { [[ "$1" =~ ^[0-9]+([.][0-9]+)?$ ]]; }

# start_pipeline — tansu, the topic and a producer requiring a token; sets URL, BOOTSTRAP, TOPIC.
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

# count_topic BIN — the records in TOPIC, read to the end of every partition.
count_topic() {
  "$1/examples/raw_consume" --bootstrap "$BOOTSTRAP" --topic "$TOPIC" --idle-timeout 30s \
    | sed -n 's/^records=\([0-9]*\) .*/\1/p'
}

main() {
  local duration=20 connections=8 threads=2 batch=100 max_error_rate=1 input="$ROOT/logs.json"
  URL="" BOOTSTRAP="" TOPIC="logs"
  while [[ $# -gt 0 ]]; do
    case "$1" in
      -h|--help) usage; exit 0 ;;
      --duration|--connections|--threads|--batch|--max-error-rate|--input|--url|--bootstrap|--topic)
        [[ -n "${2:-}" ]] || usage_error "$1 needs a value"
        case "$1" in
          --duration) duration="$2" ;; --connections) connections="$2" ;;
          --threads) threads="$2" ;; --batch) batch="$2" ;;
          --max-error-rate) max_error_rate="$2" ;; --input) input="$2" ;;
          --url) URL="${2%/}" ;; --bootstrap) BOOTSTRAP="$2" ;; --topic) TOPIC="$2" ;;
        esac
        shift ;;
      *) usage_error "unknown argument: $1" ;;
    esac
    shift
  done
  local n
  for n in "$duration" "$connections" "$threads" "$batch"; do
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || usage_error "not a positive integer: $n"
  done
  is_number "$max_error_rate" || usage_error "--max-error-rate is not a number: $max_error_rate"
  ((threads <= connections)) || usage_error "--threads must not exceed --connections"
  [[ -r "$input" ]] || usage_error "cannot read --input $input"

  tools_env
  ensure_apt wrk:wrk jq:jq curl:curl || die "cannot install wrk, jq and curl"
  local bin="$CARGO_TARGET_DIR/release"
  if [[ "${LOGPIPE_SKIP_BUILD:-0}" != 1 ]]; then
    log "building the release producer and the topic reader (raw_consume)"
    (cd "$ROOT" && cargo build --release --locked --quiet -p logpipe-producer --bin producer \
      -p logpipe-consumer --example raw_consume) || die "build failed"
  fi
  trap cleanup EXIT
  WORK_DIR="$(mktemp -d -t logpipe-load-XXXXXX)"
  if [[ -z "$URL" ]]; then
    [[ -x "$TANSU_BIN" ]] || die "tansu not found at $TANSU_BIN (scripts/test.sh --only install)"
    start_pipeline "$bin"
  fi
  local records="$WORK_DIR/records.ndjson"
  if [[ "$(tr -d ' \t\r\n' <"$input" | head -c 1)" == "[" ]]; then
    jq -c '.[]' "$input" >"$records" || die "$input is not a JSON array of records"
  else
    grep -v '^[[:space:]]*$' "$input" >"$records"
  fi
  local before=""
  if [[ -n "$BOOTSTRAP" ]]; then
    before="$(count_topic "$bin")"
    [[ -n "$before" ]] || die "cannot count the records of topic $TOPIC"
  fi

  log "wrk: ${duration}s, $connections connections, $threads threads, $batch records per request"
  LOADTEST_TOKEN="${INGEST_TOKEN:-}" wrk --threads "$threads" --connections "$connections" \
    --duration "${duration}s" --timeout 10s --script "$ROOT/tests/load/ingest.lua" \
    "$URL/v1/logs" -- "$records" "$batch" >"$WORK_DIR/wrk.out" 2>&1 \
    || die "wrk failed: $(tail -5 "$WORK_DIR/wrk.out")"
  local line
  line="$(grep '^LOADTEST ' "$WORK_DIR/wrk.out")" || die "no summary from wrk: $(tail -5 "$WORK_DIR/wrk.out")"
  local duration_us answered accepted rejected non2xx socket_errors p50_ms p99_ms statuses
  duration_us="$(field duration_us "$line")" answered="$(field answered "$line")"
  accepted="$(field accepted "$line")" rejected="$(field rejected "$line")"
  non2xx="$(field non2xx "$line")" socket_errors="$(field socket_errors "$line")"
  p50_ms="$(field p50_ms "$line")" p99_ms="$(field p99_ms "$line")"
  statuses="$(field statuses "$line")"

  # The producer answers only after Kafka acknowledged; stopping it flushes requests cut off at
  # the end of the run too, so the count below is final.
  [[ -z "$PRODUCER_PID" ]] || { stop "$PRODUCER_PID"; PRODUCER_PID=""; }
  local delivered="unknown" lost=0 extra=0
  if [[ -n "$BOOTSTRAP" ]]; then
    local after
    after="$(count_topic "$bin")"
    [[ -n "$after" ]] || die "cannot count the records of topic $TOPIC"
    delivered=$((after - before))
    lost=$((accepted > delivered ? accepted - delivered : 0))
    extra=$((delivered > accepted ? delivered - accepted : 0))
  fi
  local failed=$((non2xx + socket_errors)) attempts=$((answered + socket_errors))
  awk -v us="$duration_us" -v ans="$answered" -v acc="$accepted" -v rej="$rejected" \
    -v failed="$failed" -v attempts="$attempts" -v p50="$p50_ms" -v p99="$p99_ms" \
    -v statuses="$statuses" -v del="$delivered" -v lost="$lost" -v extra="$extra" 'BEGIN {
      s = us / 1e6
      printf "duration:          %.1f s\n", s
      printf "requests/s:        %.1f (%d answered)\n", ans / s, ans
      printf "records/s:         %.0f (%d accepted, %d rejected)\n", acc / s, acc, rej
      printf "error rate:        %.3f %% (%d of %d failed; non-2xx %s)\n", \
        (attempts ? 100 * failed / attempts : 0), failed, attempts, statuses
      printf "latency:           p50 %.1f ms, p99 %.1f ms\n", p50, p99
      printf "in the topic:      %s (lost %d, beyond the accepted %d)\n", del, lost, extra
    }'
  local rc=0
  if awk -v f="$failed" -v a="$attempts" -v max="$max_error_rate" 'BEGIN { exit !(a == 0 || 100 * f / a > max) }'; then
    err "error rate over ${max_error_rate}% (or no request answered)"; rc=1
  fi
  if ((lost > 0)); then err "$lost accepted records are not in topic $TOPIC"; rc=1; fi
  # Requests cut off by the end of the run were not counted as accepted, but may have been
  # delivered: at most one batch per connection.
  if ((extra > connections * batch)); then
    err "$extra records in the topic beyond the accepted ones (more than $connections x $batch)"; rc=1
  fi
  [[ -n "$BOOTSTRAP" ]] || log "no --bootstrap: the topic was not checked"
  return "$rc"
}

main "$@"
