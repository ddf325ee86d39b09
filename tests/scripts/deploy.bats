#!/usr/bin/env bats
# The deploy scripts against a real local pipeline (scripts/run-local.sh: tansu, the Loki
# receiver, Prometheus, consumer, producer), with cooperative rebalancing
# (FEATURE_NEW_CONSUMER=true, LOGPIPE_TEST_NEW_CONSUMER=false for eager). Tests run in order and
# share the pipeline: base (run-local) -> blue v1 -> green v2 -> blue v1 (rollback), then the
# failure paths.

load helpers

setup_file() {
  export FEATURE_NEW_CONSUMER="${LOGPIPE_TEST_NEW_CONSUMER:-true}"
  start_pipeline
}

teardown() {
  dump_on_failure
}

teardown_file() {
  stop_pipeline
}

state() { sed -n "s/^$1=//p" "$LOGPIPE_RUN_DIR/deploy.state"; }
front_colour() {
  curl -fsS -o /dev/null -D - "http://127.0.0.1:$FRONT_DOOR_PORT/healthz" | tr -d '\r' \
    | sed -n 's/^[Xx]-[Ll]ogpipe-[Cc]olour: *//p'
}

@test "health-check (table and --json), smoke-tests and wait-for-services pass against run-local's pipeline" {
  run "$ROOT/scripts/health-check.sh" local
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" == *"producer /readyz       http://127.0.0.1:$PRODUCER_PORT/readyz"*" ok "* ]]
  [[ "$output" == *"kafka broker           127.0.0.1:$KAFKA_PORT"*" ok "* ]]
  [[ "$output" == *"grafana /api/health    -"*"skipped  no GRAFANA_URL configured for local"* ]]
  run "$ROOT/scripts/health-check.sh" --json local
  [ "$status" -eq 0 ]
  [[ "$output" == '{"environment":"local","ok":true,"checks":['* ]]
  run "$ROOT/scripts/smoke-tests.sh" --timeout 30 local
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" == *"returned by Loki's query API"* ]]
  [[ "$output" == *"PASS  consumer_records_pushed_total moved"* ]]
  run "$ROOT/scripts/wait-for-services.sh" --timeout 10 "127.0.0.1:$KAFKA_PORT" \
    "tcp://127.0.0.1:$PROMETHEUS_PORT" "http://127.0.0.1:$LOKI_PORT/ready"
  [ "$status" -eq 0 ]
}

@test "blue-green-deploy v1 takes over from run-local's processes: front door on blue, state recorded, base drained" {
  run "$ROOT/scripts/blue-green-deploy.sh" v1
  echo "$output"
  [ "$status" -eq 0 ]
  [ "$(state ACTIVE_COLOUR)" = blue ]
  [ "$(state ACTIVE_VERSION)" = v1 ]
  [ "$(front_colour)" = blue ]
  [ ! -e "$LOGPIPE_RUN_DIR/producer.pid" ]
  [ ! -e "$LOGPIPE_RUN_DIR/consumer.pid" ]
  run "$ROOT/scripts/health-check.sh" local
  [ "$status" -eq 0 ]
  [[ "$output" == *"http://127.0.0.1:$FRONT_DOOR_PORT/readyz"* ]]
}

@test "blue -> green -> blue under continuous load: every accepted record reaches Loki, no stall over 10 s" {
  wait_quiet 60
  curl -fsS -X POST "$(control reset)"
  [ "$(stored)" -eq 0 ]
  local accepted="$BATS_TEST_TMPDIR/accepted" stop="$BATS_TEST_TMPDIR/stop" gap="$BATS_TEST_TMPDIR/gap"
  : >"$accepted"
  monitor "$gap" "$stop" 3>&- &
  local monitor_pid=$!
  load "http://127.0.0.1:$FRONT_DOOR_PORT" "$accepted" "$stop" 2000 20 3>&- &
  local load_pid=$!
  sleep 3
  run "$ROOT/scripts/blue-green-deploy.sh" v2
  echo "$output"
  [ "$status" -eq 0 ]
  [ "$(front_colour)" = green ]
  sleep 3
  run "$ROOT/scripts/rollback.sh"
  echo "$output"
  [ "$status" -eq 0 ]
  [ "$(front_colour)" = blue ]
  [ "$(state ACTIVE_VERSION)" = v1 ]
  [ "$(state PREVIOUS_VERSION)" = v2 ]
  sleep 3
  touch "$stop"
  wait "$load_pid" "$monitor_pid"
  local sent expected got max_gap
  sent="$(sum_file "$accepted")"
  expected=$((sent + 2))   # + the canaries of the two smoke tests
  echo "accepted by the producers: $sent in $(wc -l <"$accepted") batches; expected in Loki: $expected"
  [ "$sent" -gt 1000 ]
  for _ in $(seq 1 120); do
    got="$(stored)"
    [ "$got" -ge "$expected" ] && break
    sleep 0.5
  done
  echo "stored by the receiver: $got"
  curl -fsS "$(control stats)"; echo
  [ "$got" -eq "$expected" ]
  max_gap="$(cat "$gap")"
  echo "longest delivery stall under load: ${max_gap}s"
  awk -v g="$max_gap" 'BEGIN { exit !(g <= 10) }'
  grep -c '' "$LOGPIPE_RUN_DIR/deploy.history" | grep -qx 3
}

@test "a version with an invalid consumer config fails readiness (exit 3) and blue keeps serving" {
  mkdir -p "$LOGPIPE_RELEASES_DIR/bad-config"
  echo 'LOKI_ENCODING=xml' >"$LOGPIPE_RELEASES_DIR/bad-config/consumer.env"
  run "$ROOT/scripts/blue-green-deploy.sh" --health-timeout 20 bad-config
  echo "$output"
  [ "$status" -eq 3 ]
  [[ "$output" == *"the green consumer exited"* ]]
  [[ "$output" == *"blue (version v1) is still serving"* ]]
  [ "$(state ACTIVE_COLOUR)" = blue ]
  [ "$(state ACTIVE_VERSION)" = v1 ]
  [ "$(front_colour)" = blue ]
  [ ! -e "$LOGPIPE_RUN_DIR/producer-green.pid" ]
  run "$ROOT/scripts/smoke-tests.sh" --timeout 30 local
  [ "$status" -eq 0 ]
}

@test "a version whose canary never reaches Loki fails the smoke test (exit 4) and blue keeps serving" {
  mkdir -p "$LOGPIPE_RELEASES_DIR/wrong-topic"
  # Ready and healthy, but it writes to a topic no consumer reads.
  echo 'KAFKA_TOPIC=logs-dlq' >"$LOGPIPE_RELEASES_DIR/wrong-topic/producer.env"
  run "$ROOT/scripts/blue-green-deploy.sh" --smoke-timeout 6 wrong-topic
  echo "$output"
  [ "$status" -eq 4 ]
  [[ "$output" == *"FAIL  canary"*"not in Loki"* ]]
  [[ "$output" == *"blue (version v1) is still serving"* ]]
  [ "$(state ACTIVE_VERSION)" = v1 ]
  [ "$(front_colour)" = blue ]
  [ ! -e "$LOGPIPE_RUN_DIR/consumer-green.pid" ]
  run "$ROOT/scripts/health-check.sh" local
  [ "$status" -eq 0 ]
}
