#!/usr/bin/env bats
# The compose implementation of scripts/lib/runtime.sh, checked by its command sequence: a fake
# `docker` on PATH records its arguments (no Docker engine can run here).

load helpers

setup() {
  export DOCKER_LOG="$BATS_TEST_TMPDIR/docker.log"
  export LOGPIPE_STATE_DIR="$BATS_TEST_TMPDIR/state" LOGPIPE_RUN_DIR="$BATS_TEST_TMPDIR/run"
  export FAKE_RUNNING=""
  mkdir -p "$BATS_TEST_TMPDIR/bin"
  cat >"$BATS_TEST_TMPDIR/bin/docker" <<'FAKE'
#!/usr/bin/env bash
# Fake docker: records argv (and IMAGE_TAG for `compose up`), answers what the adapter reads.
printf '%s\n' "$*" >>"$DOCKER_LOG"
[[ "$*" == *" up "* ]] && printf 'IMAGE_TAG=%s\n' "${IMAGE_TAG:-}" >>"$DOCKER_LOG"
case "$*" in
  *" port producer 8000") echo "0.0.0.0:49153" ;;
  *" port consumer 8001") echo "0.0.0.0:49154" ;;
  *" ps --status running -q "*) for s in $FAKE_RUNNING; do [[ "$*" == *" $s" ]] && echo "c0ffee"; done ;;
esac
exit 0
FAKE
  chmod +x "$BATS_TEST_TMPDIR/bin/docker"
  export PATH="$BATS_TEST_TMPDIR/bin:$PATH"
  unset RUNTIME
}

# adapter CMDS — runs CMDS (bash) with the runtime adapter sourced and initialised.
adapter() {
  # shellcheck disable=SC2016 # expanded by the inner bash
  bash -c 'source "$1/scripts/lib/runtime.sh" && rt_init && eval "$2"' _ "$ROOT" "$1"
}

# expected — the log with the repository and state paths abbreviated.
recorded() { sed -e "s#$ROOT#ROOT#g" -e "s#$LOGPIPE_STATE_DIR#STATE#g" -e "s#$BATS_TEST_TMPDIR#TMP#g" "$DOCKER_LOG"; }

@test "compose is chosen when docker answers; a colour starts as its own project with the version's image" {
  run adapter 'echo "$RUNTIME"; rt_start producer blue v2; rt_start consumer blue v2; rt_url producer blue; rt_url consumer blue'
  echo "$output"
  [ "$status" -eq 0 ]
  [ "${lines[0]}" = compose ]
  [[ "$output" == *"http://127.0.0.1:49153"* ]]
  [[ "$output" == *"http://127.0.0.1:49154"* ]]
  run recorded
  echo "$output"
  local f="-p logpipe-blue --project-directory ROOT -f ROOT/docker-compose.yml -f STATE/compose/colour-blue.yml"
  [ "${lines[0]}" = "info" ]
  [ "${lines[1]}" = "compose $f up -d --no-deps --no-build producer" ]
  [ "${lines[2]}" = "IMAGE_TAG=v2" ]
  [ "${lines[3]}" = "compose $f up -d --no-deps --no-build consumer" ]
  [ "${lines[4]}" = "IMAGE_TAG=v2" ]
  [ "${lines[5]}" = "compose $f port producer 8000" ]
  [ "${lines[6]}" = "compose $f port consumer 8001" ]
  local overlay="$LOGPIPE_STATE_DIR/compose/colour-blue.yml"
  grep -q '^    image: logpipe-producer:v2$' "$overlay"
  grep -q '^    image: logpipe-consumer:v2$' "$overlay"
  grep -q 'ports: !override \["127.0.0.1::8000"\]' "$overlay"
  grep -q 'aliases: \[producer-blue\]' "$overlay"
  grep -q '^    name: logpipe_default$' "$overlay"
}

@test "the front door is an nginx container: started with the first colour, reloaded on a switch" {
  run adapter '_rt_compose_switch_front_door blue'
  [ "$status" -eq 0 ]
  grep -q 'server producer-blue:8000' "$LOGPIPE_STATE_DIR/compose/front-door.conf"
  grep -q 'add_header X-Logpipe-Colour blue always' "$LOGPIPE_STATE_DIR/compose/front-door.conf"
  FAKE_RUNNING="front-door" run adapter '_rt_compose_switch_front_door green'
  [ "$status" -eq 0 ]
  grep -q 'server producer-green:8000' "$LOGPIPE_STATE_DIR/compose/front-door.conf"
  run recorded
  echo "$output"
  local f="-p logpipe-front-door --project-directory STATE/compose -f STATE/compose/front-door.yml"
  [ "${lines[1]}" = "compose $f ps --status running -q front-door" ]
  [ "${lines[2]}" = "compose $f up -d front-door" ]
  [ "${lines[5]}" = "compose $f ps --status running -q front-door" ]
  [ "${lines[6]}" = "compose $f exec -T front-door nginx -t -q" ]
  [ "${lines[7]}" = "compose $f exec -T front-door nginx -s reload" ]
}

@test "draining a colour stops the producer before the consumer, each with the grace period, then removes them" {
  FAKE_RUNNING="producer consumer" run adapter 'rt_start producer green v3 >/dev/null; : >"$DOCKER_LOG"; rt_drain green'
  [ "$status" -eq 0 ]
  run recorded
  echo "$output"
  local f="-p logpipe-green --project-directory ROOT -f ROOT/docker-compose.yml -f STATE/compose/colour-green.yml"
  [ "${lines[0]}" = "compose $f ps --status running -q producer" ]
  [ "${lines[1]}" = "compose $f stop --timeout 45 producer" ]
  [ "${lines[2]}" = "compose $f rm -f producer" ]
  [ "${lines[3]}" = "compose $f ps --status running -q consumer" ]
  [ "${lines[4]}" = "compose $f stop --timeout 45 consumer" ]
  [ "${lines[5]}" = "compose $f rm -f consumer" ]
}

@test "a volume backup stops the service, tars the named volume in a helper container, starts it" {
  run adapter "rt_data_export broker '$BATS_TEST_TMPDIR/out/broker.tar.gz'"
  [ "$status" -eq 0 ]
  run recorded
  echo "$output"
  local f="-p logpipe --project-directory ROOT -f ROOT/docker-compose.yml"
  [ "${lines[1]}" = "compose $f stop --timeout 45 kafka" ]
  [ "${lines[2]}" = "run --rm -v logpipe_kafka-data:/data:ro -v TMP/out:/backup busybox:1.37.0 tar -C /data -czf /backup/broker.tar.gz ." ]
  [ "${lines[3]}" = "compose $f start kafka" ]
}

@test "a compose deploy whose new colour never gets ready is stopped and the front door is never touched" {
  FAKE_RUNNING="producer consumer" run "$ROOT/scripts/blue-green-deploy.sh" --env staging --health-timeout 3 v7
  echo "$output"
  [ "$status" -eq 3 ]
  [[ "$output" == *"blue not ready within 3s"* ]]
  run recorded
  echo "$output"
  [[ "$output" == *"stop --timeout 45 producer"* ]]
  [[ "$output" == *"stop --timeout 45 consumer"* ]]
  [[ "$output" != *"front-door"* ]]
  [ ! -e "$LOGPIPE_STATE_DIR/deploy.state" ]
}
