#!/usr/bin/env bash
# bench.sh — runs the project's benchmarks and records them in docs/benchmarks.md, the only
# writer of that file: the schema hot paths (criterion), the producer against raw librdkafka
# (scripts/bench-producer.sh), the consumer against librdkafka's own consumer
# (scripts/bench-consumer.sh), HTTP ingest under load (scripts/load-test.sh), the container
# images' build times and sizes (scripts/bench-images.sh). Each run is
# appended with its command line, date, machine and load, its figures against the targets
# (the TARGETS table below, the one place they are written down) and the raw outputs; the
# README's benchmark table is rewritten from the same figures. --check fails when a target is
# missed.
set -euo pipefail

readonly SCRIPT_NAME="${0##*/}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
readonly PARTS_ALL="schema,producer,consumer,load,images"

# The targets: figure, comparison, bound, what it is. Figures come from the `result NAME VALUE`
# lines the benchmarks print. Issues #4, #5 and #16 set them.
TARGETS=(
  "schema_ndjson_records_per_s      >= 1000000 read + validate + normalise, NDJSON, one core (records/s)"
  "schema_array_records_per_s       >= 1000000 read + validate + normalise, JSON array, one core (records/s)"
  "loki_encode_entries_per_s        >= 1000000 Loki encode, protobuf + snappy, 1,000-entry batches (entries/s)"
  "producer_ratio_keyed             >= 1.0     producer / raw librdkafka sending the same messages (key, headers)"
  "producer_rss_mib                 <= 64      producer peak RSS (MiB)"
  "consumer_ratio_default           >= 0.95    consumer / librdkafka's consumer with default settings, same broker"
  "consumer_cpu_s_per_million       <= 3.0     consumer CPU seconds per million records drained"
  "consumer_rss_mib                 <= 56      consumer peak RSS over a whole drain (VmHWM, MiB)"
  "consumer_outage_rss_mib          <= 128     consumer RSS during a receiver outage (MiB)"
  "consumer_p99_s                   <= 1.1     Kafka timestamp -> Loki ack at 10k records/s, p99 (s)"
  "ingest_lost                      == 0       HTTP ingest: accepted records missing from Kafka"
  "image_producer_mb                <= 60      producer image size (MB)"
  "image_consumer_mb                <= 60      consumer image size (MB)"
)

usage() {
  cat <<USAGE
Usage: scripts/$SCRIPT_NAME [--records N] [--only PARTS] [--check] [--out FILE] [--help]

Runs the benchmarks and appends the run to docs/benchmarks.md (the README's benchmark table is
rewritten from it).

  --records N   records for the producer and consumer runs (default 1000000)
  --only PARTS  comma-separated subset of: $PARTS_ALL (default: all)
  --check       exit 1 when a measured figure misses its target
  --out FILE    report to append to (default docs/benchmarks.md; the chart goes beside it)
  -h, --help    show this help

Exit status: 0 when every benchmark ran (and, with --check, met its target), 1 when one failed
or missed, 2 on bad usage.
USAGE
}

log() { printf '[%s] %s\n' "$SCRIPT_NAME" "$*" >&2; }

# shellcheck source=scripts/lib/tools.sh
source "$ROOT/scripts/lib/tools.sh"

# criterion NAME N — throughput (elements/s) of one criterion benchmark, from its JSON.
criterion() {
  local f="$CARGO_TARGET_DIR/criterion/$1/new/estimates.json" n="$2"
  [[ -f "$f" ]] || return 0
  python3 -c 'import json,sys; e=json.load(open(sys.argv[1])); print("%.0f" % (int(sys.argv[2]) / (e["mean"]["point_estimate"] / 1e9)))' "$f" "$n"
}

# evaluate RESULTS — the targets table of a run (markdown) to stdout; returns 1
# when a measured figure misses its target.
evaluate() {
  python3 - "$1" "${TARGETS[@]}" <<'PY'
import sys
results = {}
for line in open(sys.argv[1], encoding="utf-8"):
    parts = line.split()
    if len(parts) == 3 and parts[0] == "result":
        results[parts[1]] = parts[2]
missed = False
print("| figure | result | target | |")
print("|---|---|---|---|")
for spec in sys.argv[2:]:
    name, op, bound, about = spec.split(None, 3)
    value = results.get(name)
    if value is None:
        print(f"| {about} | not measured in this run | {op} {bound} | |")
        continue
    try:
        v, b = float(value), float(bound)
    except ValueError:
        print(f"| {about} | {value} | {op} {bound} | **not a number** |")
        missed = True
        continue
    ok = {">=": v >= b, "<=": v <= b, "==": v == b}[op]
    missed |= not ok
    print(f"| {about} | {value} | {op} {bound} | {'met' if ok else '**missed**'} |")
sys.exit(1 if missed else 0)
PY
}

# readme_table RESULTS — rewrites the README's benchmark table (between its bench markers)
# from this run's figures, so every figure there is one recorded in docs/benchmarks.md.
readme_table() {
  python3 - "$ROOT/README.md" "$1" "$2" "$3" <<'PY'
import sys
readme, results_path, stamp, command = sys.argv[1:5]
results = {}
for line in open(results_path, encoding="utf-8"):
    p = line.split()
    if len(p) == 3 and p[0] == "result":
        results[p[1]] = p[2]
text = open(readme, encoding="utf-8").read()
begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
if begin not in text or end not in text:
    sys.exit(0)
head, rest = text.split(begin, 1)
old, tail = rest.split(end, 1)
rows = {}
for line in old.splitlines():
    if line.startswith("| ") and not line.startswith("| what") and not line.startswith("|---"):
        rows[line.split("|")[1].strip()] = line
def fmt(name, spec):
    v = results.get(name)
    return None if v is None else spec.format(float(v))
def row(key, result, command):
    if result is None:
        return rows.get(key)
    return f"| {key} | {result} | `{command}` |"
new = [
    row("read + validate + normalise, NDJSON, one core", fmt("schema_ndjson_records_per_s", "{:,.0f} records/s [≥ 1 M]"), "cargo bench -p logpipe-schema --bench schema"),
    row("the same, pretty JSON array", fmt("schema_array_records_per_s", "{:,.0f} records/s [≥ 1 M]"), "cargo bench -p logpipe-schema --bench schema"),
    row("Loki encode, protobuf + snappy, 1,000-entry batches", fmt("loki_encode_entries_per_s", "{:,.0f} entries/s [≥ 1 M]"), "cargo bench -p logpipe-schema --bench schema"),
    row("producer `run --once` / raw librdkafka sending the same messages", None if "producer_ratio_keyed" not in results else
        f"{float(results['producer_ratio_keyed']):.2f} × ({float(results['producer_records_per_s']):,.0f} records/s) [≥ 1.0 ×]; {float(results['producer_ratio_bare']):.2f} × raw sending the bare lines; peak RSS {float(results['producer_rss_mib']):.1f} MiB [≤ 64]",
        "scripts/bench-producer.sh"),
    row("consumer drain / librdkafka's consumer, default settings", None if "consumer_ratio_default" not in results else
        f"{float(results['consumer_ratio_default']):.2f} × ({float(results['consumer_records_per_s']):,.0f} vs {float(results['raw_consumer_records_per_s']):,.0f} records/s) [≥ 0.95 ×]; {float(results['consumer_cpu_s_per_million']):.2f} CPU-s per million [≤ 3]; peak RSS {float(results['consumer_rss_mib']):.1f} MiB [≤ 56]",
        "scripts/bench-consumer.sh"),
    row("consumer during a receiver outage", fmt("consumer_outage_rss_mib", "RSS {:.1f} MiB [≤ 128]"), "scripts/bench-consumer.sh"),
    row("consumer Kafka timestamp → Loki ack at 10 k records/s", fmt("consumer_p99_s", "p99 {:.3f} s [≤ 1.1 s]"), "scripts/bench-consumer.sh"),
    row("container images (`./Dockerfile`, scratch runtime)", None if "image_producer_mb" not in results else
        f"producer {float(results['image_producer_mb']):.1f} MB, consumer {float(results['image_consumer_mb']):.1f} MB [≤ 60 MB]; cold build {float(results['image_cold_build_s']):.0f} s, after a source-only change {float(results['image_source_rebuild_s']):.0f} s",
        "scripts/bench-images.sh"),
    row("`POST /v1/logs` under load (k6), every accepted record checked in Kafka by id", None if "ingest_records_per_s" not in results else
        f"{float(results['ingest_records_per_s']):,.0f} records/s, {results.get('ingest_lost', '?')} lost",
        "scripts/load-test.sh --duration 20 --no-thresholds"),
]
table = ["", "Each row holds the figures of the latest run that measured them (the latest run:",
         f"{stamp}, `{command}`); every run is recorded in",
         "[docs/benchmarks.md](docs/benchmarks.md). Targets in brackets.", "",
         "| what | result | command |", "|---|---|---|"] + [r for r in new if r] + [""]
open(readme, "w", encoding="utf-8").write(head + begin + "\n".join(table) + end + tail)
PY
}

main() {
  local records=1000000 out="$ROOT/docs/benchmarks.md" parts="$PARTS_ALL" check=0
  local command="scripts/$SCRIPT_NAME $*"
  while [[ $# -gt 0 ]]; do
    case "$1" in
      -h|--help) usage; exit 0 ;;
      --records) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; records="$2"; shift ;;
      --only) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; parts="$2"; shift ;;
      --out) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; out="$2"; shift ;;
      --check) check=1 ;;
      *) log "unknown argument: $1"; usage >&2; exit 2 ;;
    esac
    shift
  done
  [[ "$records" =~ ^[0-9]+$ ]] || { log "--records must be a number"; exit 2; }
  local part
  for part in ${parts//,/ }; do
    [[ ",$PARTS_ALL," == *",$part,"* ]] || { log "unknown part: $part"; usage >&2; exit 2; }
  done
  tools_env
  WORK_DIR="$(mktemp -d)"
  trap 'rm -rf "$WORK_DIR"' EXIT
  local work="$WORK_DIR" stamp load
  stamp="$(date -u +%Y-%m-%dT%H:%MZ)"
  load="$(cut -d' ' -f1-3 /proc/loadavg)"
  mkdir -p "$(dirname "$out")"
  : >"$work/results"

  if [[ ",$parts," == *",schema,"* ]]; then
    log "schema benchmarks (criterion)"
    cargo bench --locked -p logpipe-schema --bench schema -- --warm-up-time 2 --measurement-time 8 \
      >"$work/schema.txt" 2>&1 || { tail -20 "$work/schema.txt" >&2; exit 1; }
    {
      echo "result schema_ndjson_records_per_s $(criterion read_validate_normalise/ndjson_291B 100000)"
      echo "result schema_array_records_per_s $(criterion read_validate_normalise/array_294B 100000)"
      echo "result loki_encode_entries_per_s $(criterion loki_encode/protobuf_snappy_1000 1000)"
    } | awk 'NF == 3' >>"$work/results"
  fi
  if [[ ",$parts," == *",producer,"* ]]; then
    log "producer benchmark ($records records)"
    "$ROOT/scripts/bench-producer.sh" --records "$records" >"$work/producer.txt" \
      || { tail -20 "$work/producer.txt" >&2; exit 1; }
    grep '^result ' "$work/producer.txt" >>"$work/results" || true
  fi
  if [[ ",$parts," == *",consumer,"* ]]; then
    log "consumer benchmark ($records records)"
    "$ROOT/scripts/bench-consumer.sh" --records "$records" >"$work/consumer.txt" \
      || { tail -20 "$work/consumer.txt" >&2; exit 1; }
    grep '^result ' "$work/consumer.txt" >>"$work/results" || true
  fi
  if [[ ",$parts," == *",load,"* ]]; then
    log "HTTP ingest load test (k6, 20 s steady and a spike)"
    LOGPIPE_SKIP_BUILD=1 "$ROOT/scripts/load-test.sh" --duration 20 --no-thresholds >"$work/load.txt" 2>&1 \
      || { tail -20 "$work/load.txt" >&2; exit 1; }
    grep '^result ' "$work/load.txt" >>"$work/results" || true
  fi
  if [[ ",$parts," == *",images,"* ]]; then
    log "container images: cold and warm builds, sizes (podman)"
    "$ROOT/scripts/bench-images.sh" >"$work/images.txt" 2>&1 \
      || { tail -20 "$work/images.txt" >&2; exit 1; }
    grep '^result ' "$work/images.txt" >>"$work/results" || true
  fi

  local verdict=0
  evaluate "$work/results" >"$work/table.md" || verdict=1
  if [[ ! -f "$out" ]] || ! head -1 "$out" | grep -q '^# Benchmarks (written by scripts/bench.sh)'; then
    {
      echo "# Benchmarks (written by scripts/bench.sh)"
      echo
      echo "Every run of \`scripts/bench.sh\` is appended below, newest last, with its command line,"
      echo "date, machine and load; nothing here is written by hand. Targets live in one place, the"
      echo "TARGETS table of scripts/bench.sh; \`scripts/bench.sh --check\` fails when one is missed."
      echo "Runs recorded before this format are in the file's git history."
    } >"$out"
  fi
  {
    echo
    echo "## Run of $stamp: \`$command\`"
    echo
    echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)),"
    echo "$(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr); load average before the run: $load."
    echo
    cat "$work/table.md"
    local name file
    for name in producer consumer load images; do
      file="$work/$name.txt"
      [[ -f "$file" ]] || continue
      echo
      echo "<details><summary>$name output</summary>"
      echo
      echo '```'
      grep -v -e '^result ' -e '^\[' "$file" || true
      echo '```'
      echo
      echo "</details>"
    done
  } >>"$out"
  readme_table "$work/results" "$stamp" "$command"
  log "appended the run to $out; README's benchmark table rewritten from it"
  if ((check)) && ((verdict)); then
    log "a target was missed (see the table in $out)"
    exit 1
  fi
}

main "$@"
