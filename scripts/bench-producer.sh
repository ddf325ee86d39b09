#!/usr/bin/env bash
# bench-producer.sh — throughput of `producer run --once` against a raw librdkafka baseline.
#
# Generates an NDJSON file with `testkit gen`, starts tansu (memory storage) on a free loopback
# port, sends the file with the raw baseline (crates/producer/examples/raw_produce.rs: lines as
# they are, what `kcat -P -l` does, same librdkafka settings), with the same baseline giving each
# message the producer's key and headers (found by byte search, no parsing), and with
# `producer run --once`, each into its own fresh topic. That is one round; the rounds (--repeat)
# rotate the order of the three, and the report gives each one's median time and rate with the
# range over the rounds, the ratios of the medians, each round's ratio, and the producer's
# maximum RSS. (On a shared 2-core machine one run of either varies by ±15 %.) Then `producer run --follow` catches up with the same file (the time
# until its checkpoint reaches the end of the file: every record acknowledged and the checkpoint
# written), the path whose checkpoint writes a SIGKILL's re-sends depend on. tansu and the
# temporary files are removed on exit, also on failure.
set -euo pipefail

readonly SCRIPT_NAME="${0##*/}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT

usage() {
  cat <<USAGE
Usage: scripts/$SCRIPT_NAME [--records N] [--partitions N] [--repeat N] [--help]

Benchmarks the producer against a raw librdkafka baseline on a local tansu broker.

Options:
  --records N      records in the generated NDJSON file (default: 1000000)
  --partitions N   partitions of each topic (default: 3)
  --repeat N       rounds of the three runs; medians are reported (default: 5: one
                   run of a million records spreads over ±20 % here, startup included)
  -h, --help       show this help

Environment:
  LOGPIPE_CACHE     cache folder (default: \$HOME/.cache/logpipe)
  CARGO_TARGET_DIR  cargo build folder (default: \$LOGPIPE_CACHE/target)
  TANSU_BIN         tansu binary (default: \$LOGPIPE_CACHE/tools/bin/tansu)

Exit status: 0 when every run delivered every record, 1 otherwise, 2 on bad usage.
USAGE
}

log() { printf '[%s] %s\n' "$SCRIPT_NAME" "$*" >&2; }
die() { log "error: $*"; exit 1; }

TANSU_PID=""
FOLLOW_PID=""
FOLLOW_SECS=""
WORK_DIR=""

cleanup() {
  if [[ -n "$FOLLOW_PID" ]] && kill -0 "$FOLLOW_PID" 2>/dev/null; then
    kill "$FOLLOW_PID" 2>/dev/null || true
    wait "$FOLLOW_PID" 2>/dev/null || true
  fi
  if [[ -n "$TANSU_PID" ]] && kill -0 "$TANSU_PID" 2>/dev/null; then
    kill "$TANSU_PID" 2>/dev/null || true
    wait "$TANSU_PID" 2>/dev/null || true
  fi
  if [[ -n "$WORK_DIR" ]]; then
    rm -rf -- "$WORK_DIR"
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

now() { date +%s.%N; }

start_tansu() {
  local port="$1"
  (cd "$WORK_DIR" && exec "$TANSU_BIN" broker \
    --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine memory://tansu/ >"$WORK_DIR/tansu.log" 2>&1) &
  TANSU_PID=$!
  local i
  for i in $(seq 1 100); do
    if grep -q "ready in" "$WORK_DIR/tansu.log" 2>/dev/null; then
      return 0
    fi
    kill -0 "$TANSU_PID" 2>/dev/null || die "tansu exited: $(tail -5 "$WORK_DIR/tansu.log")"
    sleep 0.1
    : "$i"
  done
  die "tansu not ready after 10s"
}

# The offset in a --follow checkpoint file, 0 before there is one. The file's own offset comes
# first; the per-partition Kafka offsets after it (`kafka_from`) are not the file's.
checkpoint_offset() {
  local offset
  offset="$(grep -o '"offset":[0-9]*' "$1" 2>/dev/null | head -n 1 | cut -d: -f2)" || true
  echo "${offset:-0}"
}

# Runs `producer run --follow` on the input until its checkpoint reaches the end of the file (or
# 600 s pass), stops it with SIGTERM and sets FOLLOW_SECS to the seconds it took to get there.
follow_catch_up() {
  local bin="$1" bootstrap="$2" input="$3" checkpoint="$WORK_DIR/bench.checkpoint"
  local size t0 t1
  size="$(stat -c %s "$input")"
  t0="$(now)"
  KAFKA_BOOTSTRAP_SERVERS="$bootstrap" KAFKA_TOPIC=bench-follow HTTP_LISTEN="" \
    LOG_FORMAT=text LOG_LEVEL=warn CHECKPOINT_PATH="$checkpoint" FOLLOW_POLL_INTERVAL=50ms \
    "$bin/producer" run --input "$input" --follow >&2 &
  FOLLOW_PID=$!
  while [[ "$(checkpoint_offset "$checkpoint")" -lt "$size" ]]; do
    kill -0 "$FOLLOW_PID" 2>/dev/null || die "producer --follow exited before catching up"
    if [[ "$(echo "$(now) - $t0 > 600" | bc -l)" == 1 ]]; then
      die "producer --follow did not catch up within 600 s"
    fi
    sleep 0.02
  done
  t1="$(now)"
  kill -TERM "$FOLLOW_PID"
  wait "$FOLLOW_PID" || die "producer --follow did not exit 0 after SIGTERM"
  FOLLOW_PID=""
  FOLLOW_SECS="$(echo "$t1 - $t0" | bc -l)"
}

create_topic() {
  "$TANSU_BIN" topic create --broker "tcp://127.0.0.1:$1" --partitions "$2" "$3" >/dev/null
}

# The median of the numbers given.
median() {
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# "min–max" of the numbers given, two decimals.
range() {
  printf '%.2f–%.2f' "$(printf '%s\n' "$@" | sort -g | head -n 1)" "$(printf '%s\n' "$@" | sort -g | tail -n 1)"
}

RAW_SECS=()
KEYED_SECS=()
PROD_SECS=()
RSS_KB=0

# Runs one of the three senders (raw, keyed, producer) into a fresh topic and records its time.
run_one() {
  local what="$1" round="$2" bin="$3" port="$4" partitions="$5" input="$6"
  local topic="bench-$what-$round" t0 t1 secs rss
  create_topic "$port" "$partitions" "$topic"
  t0="$(now)"
  case "$what" in
    raw)
      "$bin/examples/raw_produce" "127.0.0.1:$port" "$topic" "$input" >&2 ;;
    keyed)
      "$bin/examples/raw_produce" "127.0.0.1:$port" "$topic" "$input" --key --headers >&2 ;;
    producer)
      KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:$port" KAFKA_TOPIC="$topic" HTTP_LISTEN="" \
        LOG_FORMAT=text LOG_LEVEL=warn \
        /usr/bin/time -v -o "$WORK_DIR/time.txt" "$bin/producer" run --input "$input" --once \
        || die "producer run --once failed" ;;
  esac
  t1="$(now)"
  secs="$(echo "$t1 - $t0" | bc -l)"
  case "$what" in
    raw) RAW_SECS+=("$secs") ;;
    keyed) KEYED_SECS+=("$secs") ;;
    producer)
      PROD_SECS+=("$secs")
      rss="$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK_DIR/time.txt")"
      if [[ "$rss" -gt "$RSS_KB" ]]; then RSS_KB="$rss"; fi ;;
  esac
  log "round $round: $what $(printf '%.2f' "$secs") s"
}

# One report line: label, then the median time (and range) and the median rate.
report_line() {
  local label="$1" records="$2"
  shift 2
  local med
  med="$(median "$@")"
  printf '%-28s %.2f s (%s s over %d runs), %.0f records/s\n' "$label" "$med" \
    "$(range "$@")" "$#" "$(echo "$records / $med" | bc -l)"
}

main() {
  local records=1000000 partitions=3 repeat=5
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --records) records="${2:?--records needs a value}"; shift 2 ;;
      --partitions) partitions="${2:?--partitions needs a value}"; shift 2 ;;
      --repeat) repeat="${2:?--repeat needs a value}"; shift 2 ;;
      -h | --help) usage; exit 0 ;;
      *) usage >&2; exit 2 ;;
    esac
  done
  [[ "$repeat" =~ ^[1-9][0-9]*$ ]] || { usage >&2; exit 2; }
  local cache="${LOGPIPE_CACHE:-$HOME/.cache/logpipe}"
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
  TANSU_BIN="${TANSU_BIN:-$cache/tools/bin/tansu}"
  [[ -x "$TANSU_BIN" ]] || die "tansu not found at $TANSU_BIN (scripts/test.sh --only install)"
  [[ -x /usr/bin/time ]] || die "/usr/bin/time not found (apt-get install -y time)"

  trap cleanup EXIT
  WORK_DIR="$(mktemp -d -t logpipe-bench-XXXXXX)"

  log "building (release)"
  (cd "$ROOT" && cargo build --release --quiet -p logpipe-producer --bin producer --example raw_produce \
    -p logpipe-testkit --bin testkit)
  local bin="$CARGO_TARGET_DIR/release"

  local input="$WORK_DIR/bench.ndjson"
  log "generating $records records"
  "$bin/testkit" gen --records "$records" --format ndjson >"$input"
  log "input: $(du -h "$input" | cut -f1), $(wc -l <"$input") lines"

  local port
  port="$(free_port)"
  start_tansu "$port"
  create_topic "$port" "$partitions" bench-follow

  # Each round rotates the order, so no sender always runs first (or right after another).
  local order=(raw keyed producer) round i
  for round in $(seq 1 "$repeat"); do
    for i in 0 1 2; do
      run_one "${order[$(((i + round - 1) % 3))]}" "$round" "$bin" "$port" "$partitions" "$input"
    done
  done

  log "producer run --follow, catching up with the whole file"
  follow_catch_up "$bin" "127.0.0.1:$port" "$input"

  local raw_med keyed_med prod_med ratios=() r
  raw_med="$(median "${RAW_SECS[@]}")"
  keyed_med="$(median "${KEYED_SECS[@]}")"
  prod_med="$(median "${PROD_SECS[@]}")"
  for r in $(seq 0 $((repeat - 1))); do
    ratios+=("$(printf '%.2f' "$(echo "${RAW_SECS[$r]} / ${PROD_SECS[$r]}" | bc -l)")")
  done
  printf 'records:                     %d\n' "$records"
  report_line "raw baseline:" "$records" "${RAW_SECS[@]}"
  report_line "raw baseline, key+headers:" "$records" "${KEYED_SECS[@]}"
  report_line "producer --once:" "$records" "${PROD_SECS[@]}"
  printf 'producer --follow catch-up:  %.2f s, %.0f records/s\n' "$FOLLOW_SECS" "$(echo "$records / $FOLLOW_SECS" | bc -l)"
  printf 'ratio to raw baseline:       %.2fx (of the medians; per round: %s)\n' \
    "$(echo "$raw_med / $prod_med" | bc -l)" "${ratios[*]}"
  printf 'ratio to key+headers:        %.2fx (of the medians)\n' "$(echo "$keyed_med / $prod_med" | bc -l)"
  printf 'producer max RSS:            %.1f MiB\n' "$(echo "$RSS_KB / 1024" | bc -l)"
  # Machine-readable figures for scripts/bench.sh (its targets table).
  printf 'result producer_ratio_keyed %.3f\n' "$(echo "$keyed_med / $prod_med" | bc -l)"
  printf 'result producer_ratio_bare %.3f\n' "$(echo "$raw_med / $prod_med" | bc -l)"
  printf 'result producer_records_per_s %.0f\n' "$(echo "$records / $prod_med" | bc -l)"
  printf 'result producer_rss_mib %.1f\n' "$(echo "$RSS_KB / 1024" | bc -l)"
}

main "$@"
