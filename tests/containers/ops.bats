#!/usr/bin/env bats
# The ops scripts on real containers (RUNTIME=compose, scripts/lib/runtime.sh): the development
# stack (docker-compose.yml with the stand-ins) as the base deployment, then health-check,
# smoke-tests, blue-green-deploy (base -> blue v1 -> green v2 -> blue v1 by rollback.sh, under
# continuous load, every accepted record checked in the receiver), and backup-volumes ->
# wipe -> restore-from-backup, then disaster-recovery, with the topic's records compared by
# content. Tests run in order and share the stack.

load helpers

setup_file() {
  require_engine
  docker image inspect "$CT_NGINX_IMAGE" >/dev/null
  local ports
  mapfile -t ports < <(free_ports 7)
  export KAFKA_PORT="${ports[0]}" LOKI_PORT="${ports[1]}" LOKI_CONTROL_PORT="${ports[2]}"
  export PROMETHEUS_PORT="${ports[3]}" PRODUCER_PORT="${ports[4]}" CONSUMER_PORT="${ports[5]}"
  export FRONT_DOOR_PORT="${ports[6]}"
  export RUNTIME=compose COMPOSE_PROJECT="logpipe-$RUN_ID-ops"
  export LOGPIPE_COMPOSE_FILES="docker-compose.yml tests/containers/standins.yml tests/containers/standins.dev.yml tests/containers/ingest-only.yml"
  export LOGPIPE_STATE_DIR="$BATS_FILE_TMPDIR/state" LOGPIPE_BACKUP_DIR="$BATS_FILE_TMPDIR/backups"
  export FRONT_DOOR_IMAGE="$CT_NGINX_IMAGE" BACKUP_HELPER_IMAGE="$CT_BASE_IMAGE"
  export RT_STOP_TIMEOUT=45 DRAIN_GRACE=1
  # The endpoints as this machine sees them (environment.sh reads LOGPIPE_ENV_DIR/ct.env).
  export LOGPIPE_ENV_DIR="$BATS_FILE_TMPDIR/env" DEPLOY_ENV=ct
  mkdir -p "$LOGPIPE_ENV_DIR"
  cat >"$LOGPIPE_ENV_DIR/ct.env" <<ENV
RUNTIME=compose
PRODUCER_URL=
CONSUMER_URL=
LOKI_URL=http://127.0.0.1:$LOKI_PORT
PROMETHEUS_URL=http://127.0.0.1:$PROMETHEUS_PORT
KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_PORT
GRAFANA_URL=
LOKI_TENANT_ID=
INGEST_TOKEN_FILE=
ENV
  local v
  for v in dev v1 v2; do
    docker tag "$PRODUCER_IMAGE_REF" "logpipe-producer:$v"
    docker tag "$CONSUMER_IMAGE_REF" "logpipe-consumer:$v"
  done
  export NET="${COMPOSE_PROJECT}_default" SENT="$BATS_FILE_TMPDIR/sent.ndjson"
  base up -d --wait --wait-timeout 180 >"$BATS_FILE_TMPDIR/up.log" 2>&1 \
    || { cat "$BATS_FILE_TMPDIR/up.log" >&3; return 1; }
}

teardown_file() {
  # shellcheck disable=SC2016 # expanded by the inner bash
  bash -c 'source "$1/scripts/lib/runtime.sh" && rt_init && rt_down' _ "$ROOT" >/dev/null 2>&1 3>&- || true
  base down -v --remove-orphans -t 10 >/dev/null 2>&1 || true
  local p
  for p in "$COMPOSE_PROJECT" "$COMPOSE_PROJECT-blue" "$COMPOSE_PROJECT-green" "$COMPOSE_PROJECT-front-door"; do
    [[ -z "$(compose_left "$p")" ]] || { echo "left behind by $p: $(compose_left "$p")" >&2; return 1; }
  done
}

# base ARGS — docker compose for the base deployment (the project the runtime calls "base").
base() {
  local f args=(-p "$COMPOSE_PROJECT" --project-directory "$ROOT")
  for f in $LOGPIPE_COMPOSE_FILES; do args+=(-f "$ROOT/$f"); done
  docker compose "${args[@]}" "$@"
}

state() { sed -n "s/^$1=//p" "$LOGPIPE_STATE_DIR/deploy.state"; }

front_colour() {
  curl -fsS -o /dev/null -D - "http://127.0.0.1:$FRONT_DOOR_PORT/healthz" | tr -d '\r' \
    | sed -n 's/^[Xx]-[Ll]ogpipe-[Cc]olour: *//p'
}

# colour_image COLOUR SERVICE — the image (as named) of COLOUR's running SERVICE container.
colour_image() {
  local id
  id="$(docker ps -q --filter "label=com.docker.compose.project=$COMPOSE_PROJECT-$1" \
    --filter "label=com.docker.compose.service=$2")"
  [[ -z "$id" ]] || docker inspect --format '{{.Config.Image}}' "$id"
}

@test "health-check and smoke-tests pass against the compose stack (RUNTIME=compose)" {
  run "$ROOT/scripts/health-check.sh" ct
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" == *"producer /readyz"*"127.0.0.1:$PRODUCER_PORT"*" ok "* ]]
  [[ "$output" == *"kafka broker"*"127.0.0.1:$KAFKA_PORT"*" ok "* ]]
  run "$ROOT/scripts/smoke-tests.sh" --timeout 60 ct
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" == *"returned by Loki's query API"* ]]
}

@test "blue-green-deploy v1 takes over from the compose stack's own producer and consumer" {
  run "$ROOT/scripts/blue-green-deploy.sh" --health-timeout 120 v1
  echo "$output"
  [ "$status" -eq 0 ]
  [ "$(state ACTIVE_COLOUR)" = blue ]
  [ "$(state ACTIVE_VERSION)" = v1 ]
  [ "$(front_colour)" = blue ]
  [[ "$(colour_image blue producer)" == *logpipe-producer:v1 ]]
  [ -z "$(base ps -q --status running producer)" ]
  [ -z "$(base ps -q --status running consumer)" ]
}

@test "blue -> green -> blue (rollback) under continuous load: every accepted record in the receiver exactly once" {
  local stop="$BATS_TEST_TMPDIR/stop" answers="$BATS_TEST_TMPDIR/answers"
  : >"$SENT"
  (
    i=0
    while [[ ! -e "$stop" ]] && ((i < 1500)); do
      i=$((i + 1))
      printf 'bg-%s %s\n' "$i" \
        "$(post_batch "http://127.0.0.1:$FRONT_DOOR_PORT" bg-load "bg-$i" 10 2>&1 | tr -d '\n')" >>"$answers"
      sleep 0.1
    done
  ) 3>&- &
  local loader=$!
  sleep 3
  run "$ROOT/scripts/blue-green-deploy.sh" --health-timeout 120 v2
  echo "$output"
  [ "$status" -eq 0 ]
  [ "$(front_colour)" = green ]
  [[ "$(colour_image green producer)" == *logpipe-producer:v2 ]]
  sleep 3
  run "$ROOT/scripts/rollback.sh"
  echo "$output"
  [ "$status" -eq 0 ]
  [ "$(front_colour)" = blue ]
  [ "$(state ACTIVE_VERSION)" = v1 ]
  [ "$(state PREVIOUS_VERSION)" = v2 ]
  [[ "$(colour_image blue producer)" == *logpipe-producer:v1 ]]
  [ -z "$(colour_image green producer)" ]
  sleep 3
  touch "$stop"
  wait "$loader"
  # The batches the front door accepted in full; any other answer (none expected) is a failure.
  run awk '!/"accepted":10[,}]/' "$answers"
  echo "batches not accepted in full: $output"
  [ -z "$output" ]
  echo "accepted: $(grep -c . "$answers") batches, $(grep -c . "$SENT") records"
  [ "$(grep -c . "$SENT")" -gt 500 ]
  wait_for 120 records loki --url "http://127.0.0.1:$LOKI_PORT" --query '{service="bg-load"}' \
    --expected "$SENT" --id load_id
  run records loki --url "http://127.0.0.1:$LOKI_PORT" --query '{service="bg-load"}' \
    --expected "$SENT" --id load_id
  echo "$output"
  [ "$status" -eq 0 ]
}

@test "backup-volumes -> wipe -> restore-from-backup: the topic's records come back, compared by content" {
  local backup before after
  # A still topic: the apps drain first, so the copy and the comparison see the same records.
  bash -c 'source "$1/scripts/lib/runtime.sh" && rt_init && rt_drain blue' _ "$ROOT" 3>&-
  before="$BATS_TEST_TMPDIR/before.ndjson" after="$BATS_TEST_TMPDIR/after.ndjson"
  topic_dump "$NET" logs >"$before"
  echo "records in the topic: $(grep -c . "$before")"
  [ "$(grep -c . "$before")" -gt 500 ]

  run --separate-stderr "$ROOT/scripts/backup-volumes.sh"
  echo "$stderr"
  [ "$status" -eq 0 ]
  backup="$output"
  grep -qP '^broker\tbroker.tar.gz\t[0-9]+\tok\tcompose' "$backup/MANIFEST"
  grep -qP '^prometheus\tprometheus.tar.gz\t[0-9]+\tok\tcompose' "$backup/MANIFEST"
  grep -qP '^grafana\t-\t0\tskipped\t' "$backup/MANIFEST"
  (cd "$backup" && sha256sum --strict -c SHA256SUMS)

  # Wipe: the broker's volume emptied, the broker started on nothing.
  base stop -t 30 kafka
  run_once -v "${COMPOSE_PROJECT}_kafka-data:/data" "$CT_BASE_IMAGE" find /data -mindepth 1 -delete
  base start kafka
  wait_for 60 base exec -T kafka tansu topic list --broker tcp://localhost:29092
  run base exec -T kafka tansu topic list --broker tcp://localhost:29092
  [[ "$output" != *'"name":"logs"'* ]]

  run "$ROOT/scripts/restore-from-backup.sh" "$backup"
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" == *"checksums match"* ]]
  wait_for 60 base exec -T kafka tansu topic list --broker tcp://localhost:29092
  topic_dump "$NET" logs >"$after"
  cmp "$before" "$after"

  run "$ROOT/scripts/blue-green-deploy.sh" --health-timeout 120 v1
  echo "$output"
  [ "$status" -eq 0 ]
  run "$ROOT/scripts/smoke-tests.sh" --timeout 60 ct
  echo "$output"
  [ "$status" -eq 0 ]
}

@test "disaster-recovery takes a safety backup, restores the latest good one and ends healthy" {
  local n_before n_after
  n_before="$(find "$LOGPIPE_BACKUP_DIR" -mindepth 1 -maxdepth 1 -type d | wc -l)"
  sleep 1   # backup ids have a one-second resolution
  run "$ROOT/scripts/disaster-recovery.sh" --env ct --health-timeout 120 latest
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" == *"ct: healthy"* ]]
  n_after="$(find "$LOGPIPE_BACKUP_DIR" -mindepth 1 -maxdepth 1 -type d | wc -l)"
  [ "$n_after" -eq $((n_before + 1)) ]
  run "$ROOT/scripts/smoke-tests.sh" --timeout 60 ct
  echo "$output"
  [ "$status" -eq 0 ]
}
