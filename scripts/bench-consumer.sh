#!/usr/bin/env bash
# bench-consumer.sh: the consumer benchmark of issue 5 ("Performance"). Loads N records into a
# fresh tansu topic (memory storage), reads them with a raw rdkafka baseline (what `kcat -C -e`
# does) and then with the consumer into the Loki-compatible receiver in count-only mode, and
# reports both rates and their ratio, the consumer's RSS at full rate and during a receiver
# outage, and the p99 Kafka-timestamp -> Loki-ack latency at a paced rate. Everything it starts
# is stopped on exit, also on failure.
set -euo pipefail

readonly SCRIPT="${0##*/}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/release"
TANSU="${TANSU_BIN:-$HOME/.cache/logpipe/tools/bin/tansu}"
RECORDS=1000000
OUTAGE_RECORDS=200000
OUTAGE_SECONDS=15
RATE=10000
RATE_SECONDS=30
BUILD=1
WORK=""
PIDS=()

usage() {
  cat <<EOF
Usage: $SCRIPT [options]

Benchmarks the consumer against a raw rdkafka consumer on the same topic (tansu, memory
storage) and the testkit receiver in count-only mode; prints a results table.

Options:
  --records N          records for the throughput run (default $RECORDS)
  --outage-records N   records produced during the receiver outage (default $OUTAGE_RECORDS)
  --outage-seconds S   how long RSS is sampled during the outage (default $OUTAGE_SECONDS)
  --rate R             records/s for the latency run (default $RATE)
  --rate-seconds S     length of the latency run (default $RATE_SECONDS)
  --no-build           use the release binaries already built
  -h, --help           this help

Environment: CARGO_TARGET_DIR (default ./target), TANSU_BIN (default
~/.cache/logpipe/tools/bin/tansu). Needs curl and jq.
EOF
}

die() { echo "$SCRIPT: $*" >&2; exit 1; }
note() { echo "$SCRIPT: $*" >&2; }

cleanup() {
  local status=$? pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [[ -n "$WORK" ]] && ((status == 0)); then rm -rf "$WORK"; fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

now() { date +%s.%N; }

# start NAME CMD...: runs CMD in the background, logging to $WORK/NAME.log; sets LAST_PID.
start() {
  local name="$1"
  shift
  "$@" >>"$WORK/$name.log" 2>&1 &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}

# wait_for SECONDS WHAT CMD...: polls CMD every 50 ms until it succeeds.
wait_for() {
  local deadline what="$2"
  deadline=$(($(date +%s) + $1))
  shift 2
  until "$@"; do
    (($(date +%s) < deadline)) || die "timed out waiting for $what (logs in $WORK)"
    sleep 0.05
  done
}

accepted() {
  curl -sf "http://127.0.0.1:$LOKI_CONTROL/control/stats" | jq -r '.entries_accepted'
}
accepted_at_least() { (($(accepted || echo 0) >= $1)); }

# metric PORT NAME: the sum of the series of NAME on the admin port.
metric() {
  curl -sf "http://127.0.0.1:$1/metrics" |
    awk -v n="$2" '$1 == n || index($1, n "{") == 1 { s += $2 } END { print s + 0 }'
}

# quantile Q PORT HISTOGRAM: the Q quantile, interpolated in the bucket as histogram_quantile does.
quantile() {
  curl -sf "http://127.0.0.1:$2/metrics" | awk -v q="$1" -v n="$3_bucket" '
    index($1, n "{") == 1 { match($1, /le="[^"]*"/); le = substr($1, RSTART + 4, RLENGTH - 5)
                            les[++k] = le; cnt[k] = $2 }
    END { total = cnt[k]; if (total == 0) { print "n/a"; exit }
          rank = q * total; prev_le = 0; prev_c = 0
          for (i = 1; i <= k; i++) { if (cnt[i] >= rank) {
              if (les[i] == "+Inf") { print prev_le "+"; exit }
              printf "%.3f\n", prev_le + (les[i] - prev_le) * (rank - prev_c) / (cnt[i] - prev_c); exit }
            prev_le = les[i]; prev_c = cnt[i] } }'
}

all_assigned() { [[ "$(metric "$CONSUMER_PORT" consumer_assigned_partitions)" == 3 ]]; }

status_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

gen() { # gen FILE RECORDS SEED: records spread over the last 30 minutes
  "$TARGET/testkit" gen --records "$2" --seed "$3" --format ndjson \
    --start "$(date -u -d '-30 min' +%Y-%m-%dT%H:%M:%SZ)" --span-hours 0.5 >"$1"
}

load() { # load FILE [producer args...]: into the topic, through the producer service
  local file="$1"
  shift
  KAFKA_BOOTSTRAP_SERVERS="$KAFKA" KAFKA_TOPIC=bench HTTP_LISTEN="127.0.0.1:$(free_port)" \
    LOG_FORMAT=json LOG_LEVEL=warn "$TARGET/producer" run --input "$file" "$@" \
    >>"$WORK/producer.log" 2>&1 || die "producer failed (see $WORK/producer.log)"
}

start_consumer() {
  CONSUMER_PORT=$(free_port)
  # MALLOC_ARENA_MAX as the consumer image sets it (the consumer target of ./Dockerfile).
  start consumer env MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}" \
    KAFKA_BOOTSTRAP_SERVERS="$KAFKA" KAFKA_TOPIC=bench KAFKA_DLQ_TOPIC=bench-dlq \
    KAFKA_GROUP_ID=bench LOKI_URL="http://127.0.0.1:$LOKI_PORT" \
    HTTP_LISTEN="127.0.0.1:$CONSUMER_PORT" LOG_FORMAT=json LOG_LEVEL=warn "$TARGET/consumer" run
  CONSUMER_PID=$LAST_PID
}

main() {
  while (($#)); do
    case "$1" in
      --records) RECORDS="$2"; shift 2 ;;
      --outage-records) OUTAGE_RECORDS="$2"; shift 2 ;;
      --outage-seconds) OUTAGE_SECONDS="$2"; shift 2 ;;
      --rate) RATE="$2"; shift 2 ;;
      --rate-seconds) RATE_SECONDS="$2"; shift 2 ;;
      --no-build) BUILD=0; shift ;;
      -h | --help) usage; exit 0 ;;
      *) usage >&2; die "unknown option $1" ;;
    esac
  done
  if ! command -v jq >/dev/null || ! command -v curl >/dev/null; then die "needs curl and jq"; fi
  [[ -x "$TANSU" ]] || die "tansu not found at $TANSU (set TANSU_BIN)"
  WORK=$(mktemp -d)
  trap cleanup EXIT
  trap 'exit 130' INT TERM

  if ((BUILD)); then
    note "building release binaries"
    (cd "$ROOT" && cargo build --release -p logpipe-consumer --bin consumer --example raw_consume \
      -p logpipe-producer --bin producer -p logpipe-testkit --bin testkit)
  fi
  cp "$TARGET/examples/raw_consume" "$WORK/raw_consume"

  local port
  port=$(free_port)
  KAFKA="127.0.0.1:$port"
  start tansu "$TANSU" broker --listener-url "tcp://$KAFKA" --advertised-listener-url "tcp://$KAFKA" \
    --storage-engine memory://tansu/
  wait_for 30 "tansu" "$TANSU" topic create --broker "tcp://$KAFKA" --partitions 3 bench
  "$TANSU" topic create --broker "tcp://$KAFKA" --partitions 1 bench-dlq >/dev/null

  note "generating and loading $RECORDS records"
  gen "$WORK/main.ndjson" "$RECORDS" 1
  local t0 t1 load_s
  t0=$(now); load "$WORK/main.ndjson" --once; t1=$(now)
  load_s=$(echo "$t1 - $t0" | bc -l)

  note "raw baseline"
  local raw_out raw_s raw_rate
  t0=$(now); raw_out=$("$WORK/raw_consume" --bootstrap "$KAFKA" --topic bench); t1=$(now)
  raw_s=$(echo "$t1 - $t0" | bc -l)
  raw_rate=$(echo "$RECORDS / $raw_s" | bc -l)
  note "raw_consume: $raw_out"

  LOKI_PORT=$(free_port)
  LOKI_CONTROL=$(free_port)
  start loki "$TARGET/testkit" loki --count-only --listen "127.0.0.1:$LOKI_PORT" \
    --control-listen "127.0.0.1:$LOKI_CONTROL" --ingestion-rate-mb 1000000 \
    --ingestion-burst-size-mb 1000000 --per-stream-rate-limit-mb 1000000 \
    --per-stream-rate-limit-burst-mb 1000000 --max-streams-per-user 0 --no-reject-old-samples
  wait_for 30 "the receiver" accepted_at_least 0

  note "consumer at full rate"
  local c_s c_rate hwm_full
  t0=$(now); start_consumer
  wait_for 600 "$RECORDS records in the receiver" accepted_at_least "$RECORDS"
  t1=$(now)
  c_s=$(echo "$t1 - $t0" | bc -l)
  c_rate=$(echo "$RECORDS / $c_s" | bc -l)
  hwm_full=$(status_kib "$CONSUMER_PID" VmHWM)
  note "consumer: ${c_s}s, VmHWM ${hwm_full} KiB"

  note "receiver outage with $OUTAGE_RECORDS more records"
  local rss_outage=0 rss deadline paused
  curl -sf -X PUT -H 'content-type: application/json' -d '{"outage":"refuse"}' \
    "http://127.0.0.1:$LOKI_CONTROL/control/faults" >/dev/null
  gen "$WORK/outage.ndjson" "$OUTAGE_RECORDS" 2
  load "$WORK/outage.ndjson" --once
  deadline=$(($(date +%s) + OUTAGE_SECONDS))
  while (($(date +%s) < deadline)); do
    rss=$(status_kib "$CONSUMER_PID" VmRSS)
    ((rss > rss_outage)) && rss_outage=$rss
    sleep 0.2
  done
  paused=$(metric "$CONSUMER_PORT" consumer_paused)
  note "outage: max VmRSS ${rss_outage} KiB, paused=$paused"
  curl -sf -X DELETE "http://127.0.0.1:$LOKI_CONTROL/control/faults" >/dev/null
  wait_for 300 "the outage backlog" accepted_at_least $((RECORDS + OUTAGE_RECORDS))

  note "latency at $RATE records/s for ${RATE_SECONDS}s (fresh consumer process, same group)"
  kill -TERM "$CONSUMER_PID"
  wait "$CONSUMER_PID" || die "consumer exited non-zero on SIGTERM"
  start_consumer
  wait_for 30 "partition assignment" all_assigned
  gen "$WORK/paced.ndjson" $((RATE * RATE_SECONDS)) 3
  load "$WORK/paced.ndjson" --once --rate "$RATE"
  wait_for 60 "the paced records" accepted_at_least $((RECORDS + OUTAGE_RECORDS + RATE * RATE_SECONDS))
  local p99_s p50_s
  p99_s=$(quantile 0.99 "$CONSUMER_PORT" consumer_end_to_end_latency_seconds)
  p50_s=$(quantile 0.5 "$CONSUMER_PORT" consumer_end_to_end_latency_seconds)

  printf '\n%-44s %14s  %s\n' "measure" "value" "target"
  printf '%-44s %14.0f\n' "load via producer (records/s)" "$(echo "$RECORDS / $load_s" | bc -l)"
  printf '%-44s %14.0f\n' "raw rdkafka consumer (records/s)" "$raw_rate"
  printf '%-44s %14.0f\n' "consumer -> receiver (records/s)" "$c_rate"
  printf '%-44s %14.2f  >= 0.80\n' "ratio consumer / raw" "$(echo "$c_rate / $raw_rate" | bc -l)"
  printf '%-44s %14.1f  <= 64\n' "consumer max RSS, full rate (MiB)" "$(echo "$hwm_full / 1024" | bc -l)"
  printf '%-44s %14.1f  <= 128\n' "consumer max RSS, receiver outage (MiB)" "$(echo "$rss_outage / 1024" | bc -l)"
  printf '%-44s %14s\n' "consumer paused during the outage" "$paused"
  printf '%-44s %14s\n' "p50 Kafka ts -> Loki ack at $RATE/s (s)" "$p50_s"
  printf '%-44s %14s  <= 1.1 (1 s batch wait + 100 ms)\n' "p99 Kafka ts -> Loki ack at $RATE/s (s)" "$p99_s"
  printf '(rates: wall time from process start to the last record, both including connecting)\n'
}

main "$@"
