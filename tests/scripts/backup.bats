#!/usr/bin/env bats
# backup-volumes.sh, restore-from-backup.sh and disaster-recovery.sh against a real local
# pipeline: backup -> wipe -> restore brings the broker's topics and Prometheus' history back.

load helpers

setup_file() {
  start_pipeline
  # Colour-managed apps: a broker restore drains and restarts them.
  "$ROOT/scripts/blue-green-deploy.sh" v1 >/dev/null 2>&1 3>&-
}

teardown() {
  dump_on_failure
}

teardown_file() {
  stop_pipeline
}

topics() { "${TANSU_BIN:-${LOGPIPE_CACHE:-$HOME/.cache/logpipe}/tools/bin/tansu}" topic list --broker "tcp://127.0.0.1:$KAFKA_PORT" 2>/dev/null; }

# prom_at TIME — how many scrape targets Prometheus had at TIME (count(up); empty when its
# history does not reach TIME).
prom_at() {
  curl -fsS -G "http://127.0.0.1:$PROMETHEUS_PORT/api/v1/query" \
    --data-urlencode 'query=count(up)' --data-urlencode "time=$1" \
    | grep -o '"value":\[[^]]*\]' || true
}

# rt VERB ARGS... — a runtime adapter function, in a child bash.
rt() {
  # shellcheck disable=SC2016 # expanded by the inner bash
  bash -c 'source "$1/scripts/lib/runtime.sh" && rt_init && shift && "$@"' _ "$ROOT" "$@" 3>&-
}

wait_healthy() {
  for _ in $(seq 1 60); do
    "$ROOT/scripts/health-check.sh" local >/dev/null 2>&1 && return 0
    sleep 1
  done
  "$ROOT/scripts/health-check.sh" local
}

@test "backup -> wipe -> restore: the broker's topics and Prometheus' history are back, verified" {
  local t value backup
  for _ in $(seq 1 40); do
    t="$(date +%s)"; value="$(prom_at "$t")"
    [[ "$value" == *',"'[1-9]* ]] && break
    sleep 0.5
  done
  echo "prometheus at $t: $value"
  [[ "$value" == *'"value":['*',"'[1-9]* ]]
  [[ "$(topics)" == *'"name":"logs"'* ]]

  run --separate-stderr "$ROOT/scripts/backup-volumes.sh"
  echo "$stderr"
  [ "$status" -eq 0 ]
  backup="$output"
  [ -d "$backup" ]
  grep -qP '^broker\tbroker.tar.gz\t[0-9]+\tok\t' "$backup/MANIFEST"
  grep -qP '^prometheus\tprometheus.tar.gz\t[0-9]+\tok\t' "$backup/MANIFEST"
  grep -qP '^loki\t-\t0\tskipped\tthe local receiver' "$backup/MANIFEST"
  grep -qP '^grafana\t-\t0\tskipped\t' "$backup/MANIFEST"
  (cd "$backup" && sha256sum --strict -c SHA256SUMS)

  # Wipe: both services lose their data (the apps are stopped first, as in a real outage).
  rt rt_drain blue
  rt rt_data_stop broker
  rt rt_data_stop prometheus
  rm -rf "$LOGPIPE_RUN_DIR/tansu" "$LOGPIPE_RUN_DIR/prometheus-data"
  mkdir -p "$LOGPIPE_RUN_DIR/tansu" "$LOGPIPE_RUN_DIR/prometheus-data"
  rt rt_data_start broker
  rt rt_data_start prometheus
  [[ "$(topics)" != *'"name":"logs"'* ]]
  [ -z "$(prom_at "$t")" ]

  run "$ROOT/scripts/restore-from-backup.sh" "$backup"
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" == *"checksums match"* ]]
  [[ "$(topics)" == *'"name":"logs"'* ]]
  [[ "$(topics)" == *'"name":"logs-dlq"'* ]]
  [ "$(prom_at "$t")" = "$value" ]
  run "$ROOT/scripts/blue-green-deploy.sh" v1
  echo "$output"
  [ "$status" -eq 0 ]
  wait_healthy
  run "$ROOT/scripts/smoke-tests.sh" --timeout 30 local
  echo "$output"
  [ "$status" -eq 0 ]
}

@test "restore refuses a tampered backup (exit 3) and replaces nothing" {
  local good bad before
  good="$(find "$LOGPIPE_BACKUP_DIR" -mindepth 1 -maxdepth 1 -type d -name '2*Z' | sort | tail -1)"
  bad="$LOGPIPE_BACKUP_DIR/tampered"
  cp -r "$good" "$bad"
  printf 'x' >>"$bad/broker.tar.gz"
  before="$(cat "$LOGPIPE_RUN_DIR/tansu.pid")"
  run "$ROOT/scripts/restore-from-backup.sh" "$bad"
  echo "$output"
  [ "$status" -eq 3 ]
  [[ "$output" == *"checksums do not match"* ]]
  [[ "$output" == *"nothing was replaced"* ]]
  [ "$(cat "$LOGPIPE_RUN_DIR/tansu.pid")" = "$before" ]
  rm -rf "$bad"
  run "$ROOT/scripts/restore-from-backup.sh" no-such-backup
  [ "$status" -eq 4 ]
}

@test "disaster-recovery takes a safety backup, restores the latest good one and ends healthy" {
  local n_before n_after
  n_before="$(find "$LOGPIPE_BACKUP_DIR" -mindepth 1 -maxdepth 1 -type d | wc -l)"
  sleep 1   # backup ids have a one-second resolution
  run "$ROOT/scripts/disaster-recovery.sh" --health-timeout 90 latest
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" == *"paused for the broker restore: producer green v1;consumer green v1"* ]]
  [[ "$output" == *"local: healthy"* ]]
  run "$ROOT/scripts/smoke-tests.sh" --timeout 30 local
  [ "$status" -eq 0 ]
  n_after="$(find "$LOGPIPE_BACKUP_DIR" -mindepth 1 -maxdepth 1 -type d | wc -l)"
  [ "$n_after" -eq $((n_before + 1)) ]
}
