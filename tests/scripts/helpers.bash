# shellcheck shell=bash
# helpers.bash — shared by the bats tests of scripts/: the repository root, free ports, the local
# pipeline (scripts/run-local.sh in a temp run dir, stopped in teardown), a load generator and a
# delivery-stall monitor that talk to the Loki receiver's control API.

bats_require_minimum_version 1.5.0

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export ROOT
export DEPLOY_ENV=local RUNTIME=local

# port_free PORT — nothing listens on PORT.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pick_ports — exports the ports of one pipeline: a random base whose every port is free.
# The bases stay below Linux's ephemeral range (32768 and up): a port there can be the local
# end of a client connection in TIME-WAIT (the suites before these make thousands), and
# binding it then fails with "address already in use" although nothing listens on it.
pick_ports() {
  local base p ok
  for _ in $(seq 1 50); do
    base=$((20000 + (RANDOM % 125) * 100))
    ok=1
    for p in 0 2 3 4 10 11 12 110 111 210 211; do port_free $((base + p)) || { ok=0; break; }; done
    if [[ "$ok" == 1 ]]; then
      export KAFKA_PORT=$base LOKI_PORT=$((base + 2)) PROMETHEUS_PORT=$((base + 4))
      export PRODUCER_PORT=$((base + 10)) CONSUMER_PORT=$((base + 11)) FRONT_DOOR_PORT=$((base + 12))
      export BLUE_PRODUCER_PORT=$((base + 110)) BLUE_CONSUMER_PORT=$((base + 111))
      export GREEN_PRODUCER_PORT=$((base + 210)) GREEN_CONSUMER_PORT=$((base + 211))
      return 0
    fi
  done
  echo "no free port range found" >&2
  return 1
}

# start_pipeline — run-local.sh up --detach in a fresh run dir (its path carries the
# "logpipe-test-" marker scripts/test.sh sweeps for). fd 3 is closed: bats waits on it.
start_pipeline() {
  export LOGPIPE_RUN_DIR
  LOGPIPE_RUN_DIR="$(mktemp -d "${TMPDIR:-/tmp}/logpipe-test-scripts.XXXXXX")"
  export LOGPIPE_BACKUP_DIR="$LOGPIPE_RUN_DIR/backups"
  export LOGPIPE_RELEASES_DIR="$LOGPIPE_RUN_DIR/releases"
  export RT_STOP_TIMEOUT=40 DRAIN_GRACE=1 RATE=20
  pick_ports
  if ! "$ROOT/scripts/run-local.sh" up --detach >"$LOGPIPE_RUN_DIR/run-local.out" 2>&1 3>&-; then
    tail -30 "$LOGPIPE_RUN_DIR/run-local.out" >&3
    return 1
  fi
}

# dump_on_failure — in a test's teardown: when the test failed, the last lines of every log of
# the run dir (services, colours, broker) and what the consumers' metrics say about their
# partitions, so a failure seen once (in a GitLab job, say) can be understood from its output.
dump_on_failure() {
  [[ -z "${BATS_TEST_COMPLETED:-}" && -n "${LOGPIPE_RUN_DIR:-}" && -d "$LOGPIPE_RUN_DIR" ]] || return 0
  local f port
  for f in "$LOGPIPE_RUN_DIR"/*.log; do
    [[ -e "$f" ]] || continue
    echo "---- last 30 lines of $f ----"
    tail -n 30 "$f"
  done
  for port in "${BLUE_CONSUMER_PORT:-}" "${GREEN_CONSUMER_PORT:-}"; do
    [[ -n "$port" ]] || continue
    echo "---- consumer metrics on :$port (partitions, lag, commits) ----"
    curl -fsS -m 2 "http://127.0.0.1:$port/metrics" 2>&1 \
      | grep -vE '^#|_bucket|_sum |_count ' | grep -E 'assigned|rebalances|records_(consumed|pushed)|commits|paused|buffered|in_flight|lag|offset' \
      | head -40 || true
  done
}

# stop_pipeline — stops the colours, the front door and everything run-local started (by pid),
# then fails when any process of the run dir is still alive.
stop_pipeline() {
  [[ -n "${LOGPIPE_RUN_DIR:-}" && -d "$LOGPIPE_RUN_DIR" ]] || return 0
  # shellcheck disable=SC2016 # expanded by the inner bash
  bash -c 'source "$1/scripts/lib/runtime.sh" && rt_init && rt_down' _ "$ROOT" >/dev/null 2>&1 3>&- || true
  "$ROOT/scripts/run-local.sh" down >/dev/null 2>&1 3>&- || true
  local f pid left=0
  for f in "$LOGPIPE_RUN_DIR"/*.pid; do
    [[ -e "$f" ]] || continue
    pid="$(cat "$f")"
    if kill -0 "$pid" 2>/dev/null; then
      echo "left running: $f (pid $pid)" >&2
      kill -KILL "$pid" 2>/dev/null || true
      left=1
    fi
  done
  [[ "${KEEP_RUN_DIR:-0}" == 1 ]] || rm -rf "$LOGPIPE_RUN_DIR"
  return "$left"
}

control() { printf 'http://127.0.0.1:%s/control/%s' "$((LOKI_PORT + 1))" "$1"; }

# stored — entries the receiver holds.
stored() { curl -fsS -m 5 "$(control stats)" | grep -o '"entries_stored":[0-9]*' | cut -d: -f2; }

# wait_quiet SECONDS — waits until the receiver's count stayed the same for 3 s.
wait_quiet() {
  local deadline=$((SECONDS + $1)) last="" now same=0
  while ((SECONDS < deadline)); do
    now="$(stored)"
    if [[ "$now" == "$last" ]]; then same=$((same + 1)); else same=0; last="$now"; fi
    ((same >= 6)) && return 0
    sleep 0.5
  done
  return 1
}

# load URL OUT STOP MAX SIZE — posts up to MAX batches of SIZE unique records to URL/v1/logs
# (until the file STOP appears); appends each answer's "accepted" count to OUT.
load() {
  local url="$1" out="$2" stop="$3" max="$4" size="$5" i j body ts resp
  for ((i = 0; i < max; i++)); do
    [[ -e "$stop" ]] && break
    ts="$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)"
    body="["
    for ((j = 0; j < size; j++)); do
      ((j == 0)) || body+=","
      body+="{\"timestamp\":\"$ts\",\"level\":\"info\",\"service\":\"bg-load\",\"message\":\"load $$ batch $i record $j\"}"
    done
    body+="]"
    resp="$(curl -sS -m 20 -H 'Content-Type: application/json' --data-binary "$body" "$url/v1/logs" 2>/dev/null || true)"
    if [[ "$resp" =~ \"accepted\":([0-9]+) ]]; then echo "${BASH_REMATCH[1]}" >>"$out"; else echo 0 >>"$out"; fi
    sleep 0.05
  done
}

# monitor OUT STOP — while STOP does not exist, samples the receiver's count every 0.25 s and
# writes the longest time (seconds) it stood still to OUT.
monitor() {
  local out="$1" stop="$2" last=-1 changed now v gap max=0
  changed="$(date +%s.%N)"
  echo 0 >"$out"
  while [[ ! -e "$stop" ]]; do
    v="$(stored 2>/dev/null || echo "$last")"
    now="$(date +%s.%N)"
    if [[ "$v" != "$last" ]]; then
      changed="$now"; last="$v"
    else
      gap="$(awk -v a="$changed" -v b="$now" 'BEGIN { printf "%.1f", b - a }')"
      if awk -v g="$gap" -v m="$max" 'BEGIN { exit !(g > m) }'; then max="$gap"; echo "$max" >"$out"; fi
    fi
    sleep 0.25
  done
}

sum_file() { awk '{ s += $1 } END { print s + 0 }' "$1"; }
