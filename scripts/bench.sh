#!/usr/bin/env bash
# bench.sh — runs the project's benchmarks and writes docs/benchmarks.md: the schema hot paths
# (criterion), the producer against raw librdkafka (scripts/bench-producer.sh), the consumer
# against a raw librdkafka consumer, under a receiver outage and at a paced rate
# (scripts/bench-consumer.sh), the HTTP ingest load test, and the container images' build times
# and sizes (scripts/bench-images.sh); with the machine it ran on and an SVG chart of the
# throughputs.
set -euo pipefail

readonly SCRIPT_NAME="${0##*/}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT

usage() {
  cat <<USAGE
Usage: scripts/$SCRIPT_NAME [--records N] [--out FILE] [--help]

  --records N   records for the producer and consumer runs (default 1000000)
  --out FILE    report to write (default docs/benchmarks.md; the chart goes beside it)

Exit status: 0 when every benchmark ran and the report was written, 1 when one failed,
2 on bad usage. Targets that are missed are reported, not failed.
USAGE
}

log() { printf '[%s] %s\n' "$SCRIPT_NAME" "$*" >&2; }

# shellcheck source=scripts/lib/tools.sh
source "$ROOT/scripts/lib/tools.sh"

# value FILE LABEL — the last number after LABEL (a fixed string) on its first line in FILE (the
# rate, on lines like "raw baseline:   2.45 s (2.30–2.60 s over 3 runs), 408003 records/s").
value() {
  python3 - "$1" "$2" <<'PY'
import re, sys
path, label = sys.argv[1], sys.argv[2]
for line in open(path, encoding="utf-8", errors="replace"):
    if label in line:
        numbers = re.findall(r"[0-9][0-9.]*", line.split(label, 1)[1])
        print(numbers[-1] if numbers else "")
        break
PY
}

# criterion RESULTS NAME — throughput (elements/s) of one criterion benchmark, from its JSON.
criterion() {
  local f="$CARGO_TARGET_DIR/criterion/$1/new/estimates.json" n="$2"
  [[ -f "$f" ]] || { echo "n/a"; return; }
  python3 -c 'import json,sys; e=json.load(open(sys.argv[1])); print("%.0f" % (int(sys.argv[2]) / (e["mean"]["point_estimate"] / 1e9)))' "$f" "$n"
}

chart() {
  local out="$1"; shift
  python3 - "$out" "$@" <<'PY'
import sys
out, pairs = sys.argv[1], sys.argv[2:]
rows = [(pairs[i], float(pairs[i + 1] or 0)) for i in range(0, len(pairs), 2)]
top = max(v for _, v in rows) or 1
h = 40 * len(rows) + 40
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="760" height="{h}" font-family="sans-serif" font-size="13">',
       '<text x="10" y="20" font-weight="bold">Throughput, records/s (same machine, same run)</text>']
for i, (name, v) in enumerate(rows):
    y = 40 + 40 * i
    w = int(420 * v / top)
    svg.append(f'<text x="10" y="{y + 17}">{name}</text>')
    svg.append(f'<rect x="300" y="{y}" width="{w}" height="24" fill="#4e79a7"/>')
    svg.append(f'<text x="{306 + w}" y="{y + 17}">{v:,.0f}</text>')
svg.append('</svg>')
open(out, 'w').write('\n'.join(svg) + '\n')
PY
}

main() {
  local records=1000000 out="$ROOT/docs/benchmarks.md"
  while [[ $# -gt 0 ]]; do
    case "$1" in
      -h|--help) usage; exit 0 ;;
      --records) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; records="$2"; shift ;;
      --out) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; out="$2"; shift ;;
      *) log "unknown argument: $1"; usage >&2; exit 2 ;;
    esac
    shift
  done
  [[ "$records" =~ ^[0-9]+$ ]] || { log "--records must be a number"; exit 2; }
  tools_env
  WORK_DIR="$(mktemp -d)"
  trap 'rm -rf "$WORK_DIR"' EXIT
  local work="$WORK_DIR"
  mkdir -p "$(dirname "$out")"

  log "schema benchmarks (criterion)"
  cargo bench --locked -p logpipe-schema --bench schema -- --warm-up-time 2 --measurement-time 8 \
    >"$work/schema.txt" 2>&1 || { tail -20 "$work/schema.txt" >&2; exit 1; }
  log "producer benchmark ($records records)"
  "$ROOT/scripts/bench-producer.sh" --records "$records" >"$work/producer.txt" \
    || { tail -20 "$work/producer.txt" >&2; exit 1; }
  log "consumer benchmark ($records records)"
  "$ROOT/scripts/bench-consumer.sh" --records "$records" >"$work/consumer.txt" \
    || { tail -20 "$work/consumer.txt" >&2; exit 1; }
  log "HTTP ingest load test (20 s, wrk)"
  LOGPIPE_SKIP_BUILD=1 "$ROOT/scripts/load-test.sh" --duration 20 >"$work/load.txt" 2>&1 \
    || { tail -20 "$work/load.txt" >&2; exit 1; }
  log "container images: cold and warm builds, sizes (podman)"
  "$ROOT/scripts/bench-images.sh" >"$work/images.txt" \
    || { tail -20 "$work/images.txt" >&2; exit 1; }

  local nd ar pb raw_p prod_p raw_c cons_c
  nd="$(criterion read_validate_normalise/ndjson_291B 100000)"
  ar="$(criterion read_validate_normalise/array_294B 100000)"
  pb="$(criterion loki_encode/protobuf_snappy_1000 1000)"
  raw_p="$(value "$work/producer.txt" "raw baseline:")"
  prod_p="$(value "$work/producer.txt" "producer --once:")"
  raw_c="$(value "$work/consumer.txt" "raw rdkafka consumer (records/s)")"
  cons_c="$(value "$work/consumer.txt" "consumer -> receiver (records/s)")"
  chart "${out%.md}.svg" "raw librdkafka producer" "$raw_p" "producer run --once" "$prod_p" \
    "raw librdkafka consumer" "$raw_c" "consumer -> Loki receiver" "$cons_c"

  {
    echo "# Benchmarks"
    echo
    echo "Written by \`scripts/bench.sh --records $records\` on $(date -u +%Y-%m-%dT%H:%MZ)."
    echo
    echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)),"
    echo "$(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr), load average before the run:"
    echo "$(cut -d' ' -f1-3 /proc/loadavg)."
    echo
    echo "![throughput]($(basename "${out%.md}.svg"))"
    echo
    echo "| benchmark | result | target |"
    echo "|---|---|---|"
    echo "| read + validate + normalise, NDJSON | $nd records/s | ≥ 1,000,000 |"
    echo "| read + validate + normalise, JSON array | $ar records/s | ≥ 1,000,000 |"
    echo "| Loki encode, protobuf + snappy, 1,000-entry batches | $pb entries/s | ≥ 1,000,000 |"
    echo
    echo "## Producer (\`scripts/bench-producer.sh\`)"
    echo
    echo '```'
    cat "$work/producer.txt"
    echo '```'
    echo
    echo "## Consumer (\`scripts/bench-consumer.sh\`)"
    echo
    echo '```'
    cat "$work/consumer.txt"
    echo '```'
    echo
    echo "## HTTP ingest under load (\`scripts/load-test.sh --duration 20\`, wrk)"
    echo
    echo '```'
    grep -v '^\[' "$work/load.txt" || cat "$work/load.txt"
    echo '```'
    echo
    echo "## Container images (\`scripts/bench-images.sh\`, podman, ./Dockerfile)"
    echo
    echo "Both targets (\`producer\`, \`consumer\`) share the builder stage; target: each image"
    echo "≤ 60 MB. \"Cold\" has no layer cache but the crates are already downloaded (registry cache"
    echo "mount); the source-only rebuild is checked to take the dependency layer from the cache."
    echo
    echo '```'
    cat "$work/images.txt"
    echo '```'
  } >"$out"
  log "wrote $out and ${out%.md}.svg"
}

main "$@"
