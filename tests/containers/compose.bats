#!/usr/bin/env bats
# The compose files with the real Docker Compose CLI: every file's configuration, then the test
# stack and the development stack (docker-compose.yml, the README's `docker compose up`) brought
# up for real with the stand-ins (tests/containers/standins*.yml): logs.json flows producer ->
# Kafka -> consumer -> receiver with every record exactly once, Prometheus scrapes both
# services, and `down -v` leaves nothing behind. Tests run in order.

load helpers

setup_file() {
  require_engine
  local ports
  mapfile -t ports < <(free_ports 9)
  export KAFKA_PORT="${ports[0]}" LOKI_PORT="${ports[1]}" LOKI_CONTROL_PORT="${ports[2]}"
  export PROMETHEUS_PORT="${ports[3]}" PRODUCER_PORT="${ports[4]}" CONSUMER_PORT="${ports[5]}"
  export T_KAFKA_PORT="${ports[6]}" T_LOKI_PORT="${ports[7]}" T_LOKI_CONTROL_PORT="${ports[8]}"
  export TEST_PROJECT="logpipe-$RUN_ID-test" DEV_PROJECT="logpipe-$RUN_ID-dev"
  # docker-compose.yml names its images logpipe-*:dev; they are the ones under test.
  docker tag "$PRODUCER_IMAGE_REF" logpipe-producer:dev
  docker tag "$CONSUMER_IMAGE_REF" logpipe-consumer:dev
}

teardown_file() {
  test_stack down -v --remove-orphans -t 5 >/dev/null 2>&1 || true
  dev_stack down -v --remove-orphans -t 5 >/dev/null 2>&1 || true
}

# test_stack ARGS — docker compose for the test stack, on host ports of its own.
test_stack() {
  KAFKA_PORT="$T_KAFKA_PORT" LOKI_PORT="$T_LOKI_PORT" LOKI_CONTROL_PORT="$T_LOKI_CONTROL_PORT" \
    docker compose -p "$TEST_PROJECT" --project-directory "$ROOT" \
    -f "$ROOT/docker-compose.test.yml" -f "$ROOT/tests/containers/standins.yml" "$@"
}

dev_stack() {
  docker compose -p "$DEV_PROJECT" --project-directory "$ROOT" -f "$ROOT/docker-compose.yml" \
    -f "$ROOT/tests/containers/standins.yml" -f "$ROOT/tests/containers/standins.dev.yml" "$@"
}

# prom_up JOB — succeeds when Prometheus has a target of JOB and every one is up.
prom_up() {
  curl -fsS -G "http://127.0.0.1:$PROMETHEUS_PORT/api/v1/query" --data-urlencode "query=up{job=\"$1\"}" \
    | jq -e '.data.result | length > 0 and all(.value[1] == "1")'
}

stored() { curl -fsS "http://127.0.0.1:$LOKI_CONTROL_PORT/control/stats" | jq -r .entries_stored; }

# stored_at_least N — the receiver holds at least N entries.
stored_at_least() { local n; n="$(stored)"; [[ -n "$n" ]] && ((n >= $1)); }

# quiet — the receiver's count stayed the same for 3 s.
quiet() {
  local a b
  a="$(stored)"; sleep 3; b="$(stored)"
  [[ -n "$a" && "$a" == "$b" ]]
}

@test "docker compose config accepts all four files with their env files, and the stand-in overlays" {
  cd "$ROOT"
  docker compose -f docker-compose.yml config --quiet
  docker compose -f docker-compose.test.yml config --quiet
  CI_REGISTRY_IMAGE=registry.invalid/logpipe IMAGE_TAG=check \
    docker compose --env-file .env.staging -f docker-compose.staging.yml config --quiet
  CI_REGISTRY_IMAGE=registry.invalid/logpipe IMAGE_TAG=check \
    docker compose --env-file .env.production -f docker-compose.production.yml config --quiet
  test_stack config --quiet
  dev_stack config --quiet
  # One Dockerfile, a target per service.
  run docker compose -f docker-compose.yml config --format json
  [ "$status" -eq 0 ]
  [ "$(jq -r '.services.producer.build | "\(.dockerfile) \(.target)"' <<<"$output")" = "Dockerfile producer" ]
  [ "$(jq -r '.services.consumer.build | "\(.dockerfile) \(.target)"' <<<"$output")" = "Dockerfile consumer" ]
}

@test "the test stack comes up healthy with the stand-ins, with its topics; down -v leaves nothing" {
  # As its header says: the long-running services with --wait, the one-shot topic job after.
  run test_stack up -d --wait --wait-timeout 120 kafka loki
  echo "$output"
  [ "$status" -eq 0 ]
  run test_stack run --rm kafka-init
  echo "$output"
  [ "$status" -eq 0 ]
  run test_stack exec -T kafka tansu topic list --broker tcp://localhost:29092
  echo "$output"
  [[ "$output" == *'"name":"logs"'* && "$output" == *'"name":"logs-dlq"'* ]]
  [ "$(http_code "http://127.0.0.1:$T_LOKI_PORT/ready")" = 200 ]
  run test_stack down -v -t 10
  [ "$status" -eq 0 ]
  run compose_left "$TEST_PROJECT"
  echo "$output"
  [ -z "$output" ]
}

@test "the development stack (the README's docker compose up) comes up healthy; Prometheus has both services up" {
  run dev_stack up -d --wait --wait-timeout 180
  echo "$output"
  [ "$status" -eq 0 ]
  run dev_stack ps --format '{{.Service}} {{.Status}} {{.Health}}'
  echo "$output"
  [[ "$output" == *"producer Up "*" healthy"* ]]
  [[ "$output" == *"consumer Up "*" healthy"* ]]
  [ "$(http_code "http://127.0.0.1:$PRODUCER_PORT/readyz")" = 200 ]
  [ "$(http_code "http://127.0.0.1:$CONSUMER_PORT/readyz")" = 200 ]
  wait_for 90 prom_up producer
  wait_for 90 prom_up consumer
  # The demo feed reaches the receiver.
  wait_for 60 stored_at_least 1
}

@test "logs.json flows producer -> Kafka -> consumer -> receiver in containers, every record exactly once" {
  # The demo feed stops (it replays logs.json too), everything it sent is delivered, then the
  # receiver starts empty and the file goes through once.
  dev_stack stop -t 40 producer
  wait_for 60 quiet
  curl -fsS -X POST "http://127.0.0.1:$LOKI_CONTROL_PORT/control/reset"
  [ "$(stored)" -eq 0 ]
  run timeout 180 docker compose -p "$DEV_PROJECT" --project-directory "$ROOT" \
    -f "$ROOT/docker-compose.yml" -f "$ROOT/tests/containers/standins.yml" \
    -f "$ROOT/tests/containers/standins.dev.yml" \
    run --rm --no-deps producer run --input /data/logs.json --once --rebase-timestamps
  echo "${output: -600}"
  [ "$status" -eq 0 ]
  wait_for 90 stored_at_least 2400
  wait_for 30 quiet
  run records loki --url "http://127.0.0.1:$LOKI_PORT" --expected "$ROOT/logs.json" --id span_id
  echo "$output"
  [ "$status" -eq 0 ]
  [ "$(stored)" -eq 2400 ]
}

@test "down -v leaves no container, network or volume of the stack behind" {
  run dev_stack down -v -t 45
  echo "$output"
  [ "$status" -eq 0 ]
  run compose_left "$DEV_PROJECT"
  echo "$output"
  [ -z "$output" ]
  run podman volume ls --format '{{.Name}}'
  [[ "$output" != *"$DEV_PROJECT"* ]]
}
