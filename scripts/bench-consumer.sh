#!/usr/bin/env bash
# bench-consumer.sh — the consumer against librdkafka's own consumer on the same broker, in the
# same run. Loads N records into a fresh tansu topic (memory storage) through the producer, then
# per round drains the whole topic from the start with:
#   1. librdkafka's consumer with its default settings (crates/consumer/examples/raw_consume.rs,
#      what `kcat -C -e` does): the baseline a user compares with;
#   2. the same with the consumer's own fetch settings (how much of the gap is the pipeline);
#   3. the consumer (a fresh group), into the Loki-compatible receiver in count-only mode.
# Rounds rotate the order; medians are reported with each round's ratio. For every drain: wall
# time from process start to the last record, CPU seconds and peak RSS (VmHWM) of the process.
# Then: the same drain with every record in one stream (the best case for several streams per
# push), the consumer's RSS during a receiver outage, and the Kafka-timestamp -> Loki-ack
# latency at a paced rate. Everything it starts is stopped on exit, also on failure.
set -euo pipefail

readonly SCRIPT="${0##*/}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/release"
TANSU="${TANSU_BIN:-${LOGPIPE_CACHE:-$HOME/.cache/logpipe}/tools/bin/tansu}"
RECORDS=1000000
REPEAT=3
OUTAGE_RECORDS=200000
OUTAGE_SECONDS=15
RATE=10000
RATE_SECONDS=30
BUILD=1
WORK=""
PIDS=()
# The consumer's fetch tuning (crates/consumer/src/kafka.rs), for the tuned raw line.
TUNED=(fetch.max.bytes=2097152 fetch.wait.max.ms=100 queued.max.messages.kbytes=8192
  fetch.queue.backoff.ms=20)

usage() {
  cat <<EOF
Usage: $SCRIPT [options]

Benchmarks the consumer against librdkafka's consumer on the same topic (tansu, memory
storage) and the testkit receiver in count-only mode; prints a results table.

Options:
  --records N          records for the drain (default $RECORDS)
  --repeat N           drain rounds; medians are reported (default $REPEAT)
  --outage-records N   records produced during the receiver outage (default $OUTAGE_RECORDS)
  --outage-seconds S   how long RSS is sampled during the outage (default $OUTAGE_SECONDS)
  --rate R             records/s for the latency run (default $RATE)
  --rate-seconds S     length of the latency run (default $RATE_SECONDS)
  --no-build           use the release binaries already built
  -h, --help           this help

Environment: CARGO_TARGET_DIR (default ./target), TANSU_BIN (default
~/.cache/logpipe/tools/bin/tansu). Needs curl, jq and GNU time (/usr/bin/time).

Exit status: 0 when every run delivered every record, 1 otherwise, 2 on bad usage.
EOF
}

die() { echo "$SCRIPT: $*" >&2; exit 1; }
note() { echo "$SCRIPT: $*" >&2; }

cleanup() {
  local status=$? pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ -n "$WORK" ]] && ((status == 0)); then rm -rf "$WORK"; fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

now() { date +%s.%N; }
calc() { echo "$*" | bc -l; }

# start NAME CMD...: runs CMD in the background, logging to $WORK/NAME.log; sets LAST_PID.
start() {
  local name="$1"
  shift
  "$@" >>"$WORK/$name.log" 2>&1 &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}

# wait_for SECONDS WHAT CMD...: polls CMD every 20 ms until it succeeds.
wait_for() {
  local deadline what="$2"
  deadline=$(($(date +%s) + $1))
  shift 2
  until "$@"; do
    (($(date +%s) < deadline)) || die "timed out waiting for $what (logs in $WORK)"
    sleep 0.02
  done
}

accepted() { curl -sf "http://127.0.0.1:$LOKI_CONTROL/control/stats" | jq -r '.entries_accepted'; }
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
# cpu_seconds PID: user + system CPU of a running process.
cpu_seconds() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f\n", ($14 + $15) / hz }' "/proc/$1/stat"; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

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

# start_consumer GROUP [VAR=VALUE...]: the consumer as its image (the consumer target of
# ./Dockerfile) runs it, with MALLOC_ARENA_MAX=2.
start_consumer() {
  local group="$1"
  shift
  CONSUMER_PORT=$(free_port)
  start consumer env MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}" \
    KAFKA_BOOTSTRAP_SERVERS="$KAFKA" KAFKA_TOPIC=bench KAFKA_DLQ_TOPIC=bench-dlq \
    KAFKA_GROUP_ID="$group" LOKI_URL="http://127.0.0.1:$LOKI_PORT" \
    HTTP_LISTEN="127.0.0.1:$CONSUMER_PORT" LOG_FORMAT=json LOG_LEVEL=warn "$@" \
    "$TARGET/consumer" run
  CONSUMER_PID=$LAST_PID
}

# raw_drain NAME [--property K=V...]: one raw drain; appends "seconds cpu_s hwm_kib" to $WORK/NAME.
raw_drain() {
  local name="$1"
  shift
  /usr/bin/time -f '%e %U %S %M' -o "$WORK/time.out" \
    "$WORK/raw_consume" --bootstrap "$KAFKA" --topic bench "$@" >>"$WORK/raw.log" 2>&1 \
    || die "raw consumer failed (see $WORK/raw.log)"
  awk '{ printf "%s %.2f %s\n", $1, $2 + $3, $4 }' "$WORK/time.out" >>"$WORK/$name"
}

# consumer_drain NAME GROUP [VAR=VALUE...]: the consumer drains the topic into the receiver
# (reset first); appends "seconds cpu_s hwm_kib" to $WORK/NAME and leaves the process running.
consumer_drain() {
  local name="$1" group="$2" t0 t1
  shift 2
  curl -sf -X POST "http://127.0.0.1:$LOKI_CONTROL/control/reset" >/dev/null
  t0=$(now)
  start_consumer "$group" "$@"
  wait_for 600 "$RECORDS records in the receiver" accepted_at_least "$RECORDS"
  t1=$(now)
  echo "$(calc "$t1 - $t0") $(cpu_seconds "$CONSUMER_PID") $(status_kib "$CONSUMER_PID" VmHWM)" \
    >>"$WORK/$name"
}

stop_consumer() {
  kill -TERM "$CONSUMER_PID"
  wait "$CONSUMER_PID" || die "consumer exited non-zero on SIGTERM"
}

# column NAME N: the Nth column of every line of $WORK/NAME.
column() { awk -v n="$2" '{ print $n }' "$WORK/$1"; }

# report NAME LABEL: the median drain rate, CPU per million records and peak RSS of a series.
report() {
  local secs cpu hwm
  mapfile -t secs < <(column "$1" 1)
  mapfile -t cpu < <(column "$1" 2)
  mapfile -t hwm < <(column "$1" 3)
  printf '%-46s %9.0f records/s  %5.2f CPU-s/M  %6.1f MiB peak RSS  (%s s)\n' "$2" \
    "$(calc "$RECORDS / $(median "${secs[@]}")")" \
    "$(calc "$(median "${cpu[@]}") * 1000000 / $RECORDS")" \
    "$(calc "$(median "${hwm[@]}") / 1024")" "$(echo "${secs[*]}" | tr ' ' '/')"
}

main() {
  while (($#)); do
    case "$1" in
      --records) RECORDS="$2"; shift 2 ;;
      --repeat) REPEAT="$2"; shift 2 ;;
      --outage-records) OUTAGE_RECORDS="$2"; shift 2 ;;
      --outage-seconds) OUTAGE_SECONDS="$2"; shift 2 ;;
      --rate) RATE="$2"; shift 2 ;;
      --rate-seconds) RATE_SECONDS="$2"; shift 2 ;;
      --no-build) BUILD=0; shift ;;
      -h | --help) usage; exit 0 ;;
      *) usage >&2; echo "$SCRIPT: unknown option $1" >&2; exit 2 ;;
    esac
  done
  [[ "$REPEAT" =~ ^[1-9][0-9]*$ && "$RECORDS" =~ ^[1-9][0-9]*$ ]] || { usage >&2; exit 2; }
  for tool in jq curl bc /usr/bin/time; do
    command -v "$tool" >/dev/null || die "needs $tool"
  done
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
  load_s=$(calc "$t1 - $t0")

  LOKI_PORT=$(free_port)
  LOKI_CONTROL=$(free_port)
  start loki "$TARGET/testkit" loki --count-only --listen "127.0.0.1:$LOKI_PORT" \
    --control-listen "127.0.0.1:$LOKI_CONTROL" --ingestion-rate-mb 1000000 \
    --ingestion-burst-size-mb 1000000 --per-stream-rate-limit-mb 1000000 \
    --per-stream-rate-limit-burst-mb 1000000 --max-streams-per-user 0 --no-reject-old-samples
  wait_for 30 "the receiver" accepted_at_least 0

  local round ratios=() tuned_props=()
  for p in "${TUNED[@]}"; do tuned_props+=(--property "$p"); done
  for round in $(seq 1 "$REPEAT"); do
    note "round $round of $REPEAT"
    # Rotate the order, so no drain always runs first (or right after the load).
    local order=(raw tuned consumer) i
    for ((i = 0; i < (round - 1) % 3; i++)); do order=("${order[@]:1}" "${order[0]}"); done
    for kind in "${order[@]}"; do
      case "$kind" in
        raw) raw_drain raw ;;
        tuned) raw_drain tuned "${tuned_props[@]}" ;;
        consumer) consumer_drain consumer "bench-$round"; stop_consumer ;;
      esac
    done
    ratios+=("$(calc "$(tail -1 "$WORK/raw" | cut -d' ' -f1) / $(tail -1 "$WORK/consumer" | cut -d' ' -f1)")")
  done

  note "one stream for every record (LABEL_FIELDS empty)"
  consumer_drain onestream bench-onestream LABEL_FIELDS=
  stop_consumer

  note "receiver outage with $OUTAGE_RECORDS more records"
  consumer_drain outage_drain bench-outage
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
  curl -sf -X DELETE "http://127.0.0.1:$LOKI_CONTROL/control/faults" >/dev/null
  wait_for 300 "the outage backlog" accepted_at_least $((RECORDS + OUTAGE_RECORDS))

  note "latency at $RATE records/s for ${RATE_SECONDS}s (fresh consumer process, same group)"
  stop_consumer
  start_consumer bench-outage
  wait_for 30 "partition assignment" all_assigned
  gen "$WORK/paced.ndjson" $((RATE * RATE_SECONDS)) 3
  load "$WORK/paced.ndjson" --once --rate "$RATE"
  wait_for 60 "the paced records" accepted_at_least $((RECORDS + OUTAGE_RECORDS + RATE * RATE_SECONDS))
  local p99_s p50_s pushes
  p99_s=$(quantile 0.99 "$CONSUMER_PORT" consumer_end_to_end_latency_seconds)
  p50_s=$(quantile 0.5 "$CONSUMER_PORT" consumer_end_to_end_latency_seconds)
  pushes=$(metric "$CONSUMER_PORT" loki_push_requests_total)

  local raw_med cons_med raw_secs cons_secs
  mapfile -t raw_secs < <(column raw 1)
  mapfile -t cons_secs < <(column consumer 1)
  raw_med=$(median "${raw_secs[@]}")
  cons_med=$(median "${cons_secs[@]}")
  printf '\nrecords: %s, rounds: %s; load via the producer: %.0f records/s\n' "$RECORDS" "$REPEAT" \
    "$(calc "$RECORDS / $load_s")"
  report raw "librdkafka consumer, default settings:"
  report tuned "librdkafka consumer, the consumer's fetch settings:"
  report consumer "consumer -> receiver:"
  report onestream "consumer, every record in one stream:"
  printf 'ratio consumer / librdkafka default:          %.2fx (of the medians; per round: %s)\n' \
    "$(calc "$raw_med / $cons_med")" "$(printf '%.2f ' "${ratios[@]}")"
  printf 'consumer max RSS, receiver outage:            %.1f MiB (paused: %s)\n' \
    "$(calc "$rss_outage / 1024")" "$paused"
  printf 'Kafka ts -> Loki ack at %s records/s:       p50 %s s, p99 %s s (%s pushes in the latency run)\n' \
    "$RATE" "$p50_s" "$p99_s" "$pushes"
  printf '(wall time from process start to the last record; CPU and peak RSS (VmHWM) of that process;\n'
  printf ' the consumer runs with MALLOC_ARENA_MAX=2, as its image sets it)\n'
  # Machine-readable figures for scripts/bench.sh (its targets table).
  local cpu hwm
  mapfile -t cpu < <(column consumer 2)
  mapfile -t hwm < <(column consumer 3)
  printf 'result consumer_ratio_default %.3f\n' "$(calc "$raw_med / $cons_med")"
  printf 'result consumer_records_per_s %.0f\n' "$(calc "$RECORDS / $cons_med")"
  printf 'result raw_consumer_records_per_s %.0f\n' "$(calc "$RECORDS / $raw_med")"
  printf 'result consumer_cpu_s_per_million %.2f\n' "$(calc "$(median "${cpu[@]}") * 1000000 / $RECORDS")"
  # Peak RSS: the highest of the rounds, not the median.
  printf 'result consumer_rss_mib %.1f\n' \
    "$(calc "$(printf '%s\n' "${hwm[@]}" | sort -g | tail -1) / 1024")"
  printf 'result consumer_outage_rss_mib %.1f\n' "$(calc "$rss_outage / 1024")"
  printf 'result consumer_p99_s %s\n' "$p99_s"
}

main "$@"
