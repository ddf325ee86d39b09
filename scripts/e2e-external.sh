#!/usr/bin/env bash
# e2e-external.sh — runs the e2e suite (tests/e2e) in external mode, as GitLab's e2e job does
# against its real Kafka and Loki services: here a tansu broker and a Loki-compatible receiver
# (`testkit loki`) are started apart, as services the tests do not own, and handed to the suite
# through E2E_KAFKA_BOOTSTRAP_SERVERS and E2E_LOKI_URL. The receiver runs with the settings the
# GitLab job gives its Loki (old samples accepted, queries reaching every entry). Both are
# stopped on exit, even on failure.
set -euo pipefail

readonly SCRIPT_NAME="${0##*/}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT

usage() {
  cat <<USAGE
Usage: scripts/$SCRIPT_NAME [--help] [-- NEXTEST_ARGS...]

Starts tansu (memory storage) and \`testkit loki\` on free loopback ports, then runs
\`cargo nextest run -p logpipe-e2e --profile ci\` with E2E_KAFKA_BOOTSTRAP_SERVERS and
E2E_LOKI_URL pointing at them (extra arguments go to nextest). The scenarios that need services
of their own (a Loki outage, a broker restart) say that they are skipped and why.

Needs tansu (\$TANSU_BIN, scripts/test.sh --only install) and builds the binaries it runs.
Both processes carry the logpipe-test- marker in their command lines.

Exit status: nextest's (0 when every test passed), 1 when a service did not start, 2 bad usage.
USAGE
}

log() { printf '[%s] %s\n' "$SCRIPT_NAME" "$*" >&2; }
die() { printf '[%s] error: %s\n' "$SCRIPT_NAME" "$*" >&2; exit 1; }

# shellcheck source=scripts/lib/tools.sh
source "$ROOT/scripts/lib/tools.sh"

TANSU_PID="" LOKI_PID="" WORK_DIR=""

stop() {
  local pid="$1"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  stop "$LOKI_PID"
  stop "$TANSU_PID"
  [[ -z "$WORK_DIR" ]] || rm -rf -- "$WORK_DIR"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# wait_ready PID LOG WHAT CMD... — until CMD succeeds; fails when PID exits or after 30 s.
wait_ready() {
  local pid="$1" logfile="$2" what="$3" deadline=$((SECONDS + 30))
  shift 3
  until "$@" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || die "$what exited: $(tail -5 "$logfile")"
    ((SECONDS < deadline)) || die "$what not ready in 30 s: $(tail -5 "$logfile")"
    sleep 0.1
  done
}

main() {
  while [[ $# -gt 0 ]]; do
    case "$1" in
      -h|--help) usage; exit 0 ;;
      --) shift; break ;;
      *) printf '[%s] error: unknown argument: %s\n' "$SCRIPT_NAME" "$1" >&2; usage >&2; exit 2 ;;
    esac
  done
  tools_env
  [[ -x "$TANSU_BIN" ]] || die "tansu not found at $TANSU_BIN (scripts/test.sh --only install)"
  cd "$ROOT"
  log "building the binaries the suite runs (producer, consumer, testkit)"
  cargo build --locked --workspace --bins
  trap cleanup EXIT
  WORK_DIR="$(mktemp -d -t logpipe-test-e2e-external-XXXXXX)"
  local kafka_port loki_port control_port
  kafka_port="$(free_port)" loki_port="$(free_port)" control_port="$(free_port)"
  (cd "$WORK_DIR" && exec "$TANSU_BIN" broker --cluster-id "logpipe-test-e2e-external-$$" \
    --listener-url "tcp://127.0.0.1:$kafka_port" --advertised-listener-url "tcp://127.0.0.1:$kafka_port" \
    --storage-engine memory://tansu/ </dev/null >"$WORK_DIR/tansu.log" 2>&1) &
  TANSU_PID=$!
  wait_ready "$TANSU_PID" "$WORK_DIR/tansu.log" tansu grep -q "ready in" "$WORK_DIR/tansu.log"
  # The settings GitLab's e2e job gives its Loki (.gitlab-ci.yml, .services-kafka-loki):
  # logs.json is older than Loki's 7 days, and a Loki that has not flushed answers queries
  # older than query_ingesters_within only from its store.
  (exec -a logpipe-test-loki "$CARGO_TARGET_DIR/debug/testkit" loki \
    --listen "127.0.0.1:$loki_port" --control-listen "127.0.0.1:$control_port" \
    --no-reject-old-samples --query-ingesters-within 0s </dev/null >"$WORK_DIR/loki.log" 2>&1) &
  LOKI_PID=$!
  wait_ready "$LOKI_PID" "$WORK_DIR/loki.log" "the receiver" curl -fsS "http://127.0.0.1:$loki_port/ready"
  export E2E_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:$kafka_port"
  export E2E_LOKI_URL="http://127.0.0.1:$loki_port"
  log "tansu on $E2E_KAFKA_BOOTSTRAP_SERVERS and a receiver on $E2E_LOKI_URL, started apart"
  local rc=0
  cargo nextest run --locked -p logpipe-e2e --profile ci "$@" || rc=$?
  kill -0 "$TANSU_PID" 2>/dev/null || { log "tansu died during the run: $(tail -5 "$WORK_DIR/tansu.log")"; rc=1; }
  kill -0 "$LOKI_PID" 2>/dev/null || { log "the receiver died during the run: $(tail -5 "$WORK_DIR/loki.log")"; rc=1; }
  return "$rc"
}

main "$@"
