#!/usr/bin/env bash
# run-local.sh — runs the whole pipeline on this machine without Docker: tansu (durable), the
# topics, a Loki-compatible receiver (or LOKI_URL), Prometheus scraping both services, the
# consumer, and the producer replaying logs.json in --loop mode. Ctrl-C or
# `scripts/run-local.sh down` stops everything it started, and nothing else.
set -euo pipefail

readonly SCRIPT_NAME="${0##*/}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT

usage() {
  cat <<USAGE
Usage: scripts/$SCRIPT_NAME [up|down|status] [--detach] [--help]

  up        build (release), start everything, print where to look, wait for Ctrl-C (default)
  down      stop what a previous 'up' started (by the pids it recorded)
  status    show what is running
  --detach  with 'up': return once everything is ready, leave it running ('down' stops it)

Environment (defaults in brackets):
  KAFKA_PORT [9092]  LOKI_PORT [3100] (receiver; control API on LOKI_PORT+1)
  PROMETHEUS_PORT [9090]  PRODUCER_PORT [8000]  CONSUMER_PORT [8001]
  LOKI_URL           use this Loki instead of starting the receiver (e.g. a real Loki)
  RATE [50]          records/s the producer replays
  LOGPIPE_RUN_DIR    state, logs and data [\$HOME/.cache/logpipe/run]
  LOGPIPE_SKIP_BUILD=1  use the release binaries already built (no cargo build)

Exit status: 0 on success (and after Ctrl-C), 1 when something failed to start, 2 on bad usage.
USAGE
}

log() { printf '[%s] %s\n' "$SCRIPT_NAME" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# shellcheck source=scripts/lib/tools.sh
source "$ROOT/scripts/lib/tools.sh"

: "${KAFKA_PORT:=9092}" "${LOKI_PORT:=3100}" "${PROMETHEUS_PORT:=9090}"
: "${PRODUCER_PORT:=8000}" "${CONSUMER_PORT:=8001}" "${RATE:=50}"
: "${LOGPIPE_RUN_DIR:=$LOGPIPE_CACHE/run}"
RUN="$LOGPIPE_RUN_DIR"

# start NAME CMD... — starts a process in the background, records its pid, logs to RUN/NAME.log.
start() {
  local name="$1"; shift
  # No inherited stdin or extra descriptors: a caller waiting on them (bats) would hang.
  "$@" </dev/null >"$RUN/$name.log" 2>&1 3>&- &
  echo "$!" >"$RUN/$name.pid"
  log "started $name (pid $!, log $RUN/$name.log)"
}

# wait_http NAME URL SECONDS — waits for a 200 from URL.
wait_http() {
  local name="$1" url="$2" deadline=$((SECONDS + $3))
  until curl -fsS -o /dev/null "$url" 2>/dev/null; do
    if [[ -f "$RUN/$name.pid" ]] && ! kill -0 "$(cat "$RUN/$name.pid")" 2>/dev/null; then
      tail -20 "$RUN/$name.log" >&2
      die "$name exited"
    fi
    ((SECONDS < deadline)) || { tail -20 "$RUN/$name.log" >&2; die "$name not ready at $url"; }
    sleep 0.3
  done
}

stop_all() {
  local f pid
  # Colours started by blue-green-deploy.sh (scripts/lib/runtime.sh) use the same pid files.
  for f in front-door producer-blue producer-green consumer-blue consumer-green \
      producer consumer prometheus loki tansu; do
    [[ -f "$RUN/$f.pid" ]] || continue
    pid="$(cat "$RUN/$f.pid")"
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
      log "stopped $f (pid $pid)"
    fi
    rm -f "$RUN/$f.pid"
  done
}

status() {
  local f
  for f in tansu loki prometheus consumer producer; do
    if [[ -f "$RUN/$f.pid" ]] && kill -0 "$(cat "$RUN/$f.pid")" 2>/dev/null; then
      printf '%-11s running (pid %s)\n' "$f" "$(cat "$RUN/$f.pid")"
    else
      printf '%-11s stopped\n' "$f"
    fi
  done
}

prometheus_config() {
  # The base processes and the blue/green colours (ports +100 and +200, scripts/lib/runtime.sh).
  local p="127.0.0.1:$PRODUCER_PORT" c="127.0.0.1:$CONSUMER_PORT"
  local pb="127.0.0.1:$((PRODUCER_PORT + 100))" pg="127.0.0.1:$((PRODUCER_PORT + 200))"
  local cb="127.0.0.1:$((CONSUMER_PORT + 100))" cg="127.0.0.1:$((CONSUMER_PORT + 200))"
  cat >"$RUN/prometheus.yml" <<YAML
global: {scrape_interval: 5s, evaluation_interval: 5s}
scrape_configs:
  - {job_name: producer, static_configs: [{targets: ['$p', '$pb', '$pg']}]}
  - {job_name: consumer, static_configs: [{targets: ['$c', '$cb', '$cg']}]}
YAML
  [[ -n "${LOKI_URL:-}" ]] || cat >>"$RUN/prometheus.yml" <<YAML
  - {job_name: loki, static_configs: [{targets: ['127.0.0.1:$LOKI_PORT']}]}
YAML
}

up() {
  local detach="$1" bin loki_url
  mkdir -p "$RUN/tansu" "$RUN/prometheus-data"
  if [[ -f "$RUN/tansu.pid" ]] && kill -0 "$(cat "$RUN/tansu.pid")" 2>/dev/null; then
    die "already running (scripts/$SCRIPT_NAME down first)"
  fi
  tools_env
  ensure_tools
  if [[ "${LOGPIPE_SKIP_BUILD:-0}" == 1 ]]; then
    log "LOGPIPE_SKIP_BUILD=1: using the release binaries already built"
  else
    log "building release binaries"
    cargo build --release --locked -p logpipe-producer -p logpipe-consumer -p logpipe-testkit >&2
  fi
  bin="$CARGO_TARGET_DIR/release"
  trap 'stop_all' EXIT
  (cd "$RUN/tansu" && start tansu "$TANSU_BIN" broker \
    --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --storage-engine sqlite://tansu.db)
  local deadline=$((SECONDS + 20))
  until "$TANSU_BIN" topic list --broker "tcp://127.0.0.1:$KAFKA_PORT" >/dev/null 2>&1 \
      || (exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_PORT") 2>/dev/null; do
    ((SECONDS < deadline)) || die "tansu did not start (log $RUN/tansu.log)"
    sleep 0.2
  done
  for spec in logs:3 logs-dlq:1; do
    "$TANSU_BIN" topic create --broker "tcp://127.0.0.1:$KAFKA_PORT" \
      --partitions "${spec#*:}" "${spec%%:*}" >/dev/null 2>&1 || true
  done
  if [[ -n "${LOKI_URL:-}" ]]; then
    loki_url="$LOKI_URL"
  else
    start loki "$bin/testkit" loki --listen "127.0.0.1:$LOKI_PORT" \
      --control-listen "127.0.0.1:$((LOKI_PORT + 1))"
    loki_url="http://127.0.0.1:$LOKI_PORT"
  fi
  wait_http loki "$loki_url/ready" 20
  prometheus_config
  start prometheus prometheus --config.file "$RUN/prometheus.yml" \
    --storage.tsdb.path "$RUN/prometheus-data" \
    --web.listen-address "127.0.0.1:$PROMETHEUS_PORT"
  export KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:$KAFKA_PORT" LOG_FORMAT=text ENVIRONMENT=local
  # MALLOC_ARENA_MAX as the consumer image sets it (the consumer target of ./Dockerfile).
  MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}" HTTP_LISTEN="127.0.0.1:$CONSUMER_PORT" \
    LOKI_URL="$loki_url" start consumer "$bin/consumer" run
  HTTP_LISTEN="127.0.0.1:$PRODUCER_PORT" start producer "$bin/producer" run \
    --input "$ROOT/logs.json" --loop --rate "$RATE"
  wait_http consumer "http://127.0.0.1:$CONSUMER_PORT/readyz" 60
  wait_http producer "http://127.0.0.1:$PRODUCER_PORT/readyz" 60
  wait_http prometheus "http://127.0.0.1:$PROMETHEUS_PORT/-/ready" 30
  local q="$loki_url/loki/api/v1/query_range?query=%7Bsource%3D%22kafka%22%7D&limit=5"
  deadline=$((SECONDS + 60))
  until curl -fsS "$q" 2>/dev/null | grep -q '"values":\[\['; do
    ((SECONDS < deadline)) || die "no records reached Loki within 60 s (logs in $RUN)"
    sleep 1
  done
  cat <<INFO

logpipe is running (state and logs: $RUN)
  Loki query   : curl -s '$q'
  Prometheus   : http://127.0.0.1:$PROMETHEUS_PORT  (try: rate(consumer_records_pushed_total[1m]))
  producer     : http://127.0.0.1:$PRODUCER_PORT/metrics  (POST /v1/logs to ingest)
  consumer     : http://127.0.0.1:$CONSUMER_PORT/metrics
  stop         : Ctrl-C, or scripts/$SCRIPT_NAME down
INFO
  if [[ "$detach" == 1 ]]; then
    trap - EXIT
    return 0
  fi
  trap 'log "stopping"; stop_all; exit 0' INT TERM
  while kill -0 "$(cat "$RUN/consumer.pid")" 2>/dev/null; do sleep 1; done
  die "the consumer exited (log $RUN/consumer.log)"
}

main() {
  local cmd="up" detach=0
  while [[ $# -gt 0 ]]; do
    case "$1" in
      -h|--help) usage; exit 0 ;;
      up|down|status) cmd="$1" ;;
      --detach) detach=1 ;;
      *) log "unknown argument: $1"; usage >&2; exit 2 ;;
    esac
    shift
  done
  mkdir -p "$RUN"
  case "$cmd" in
    up) up "$detach" ;;
    down) stop_all ;;
    status) status ;;
  esac
}

main "$@"
