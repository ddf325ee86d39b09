#!/usr/bin/env bats
# The service images as containers (./Dockerfile, targets producer and consumer): what they
# are made of, how they start without and with Kafka, the user they run as on a read-only root
# file system, their health check, graceful stop and configuration errors. A private network
# holds the stand-in broker (tansu) and receiver (testkit loki); host ports are loopback only.
# Tests run in order and share the containers started here.

load helpers

setup_file() {
  require_engine
  local ports
  mapfile -t ports < <(free_ports 5)
  export P_PORT="${ports[0]}" C_PORT="${ports[1]}" L_PORT="${ports[2]}" LC_PORT="${ports[3]}"
  export H_PORT="${ports[4]}"
  export NET="logpipe-$RUN_ID-img" P="logpipe-$RUN_ID-img-producer" C="logpipe-$RUN_ID-img-consumer"
  export K="logpipe-$RUN_ID-img-kafka" L="logpipe-$RUN_ID-img-loki" H="logpipe-$RUN_ID-img-hang"
  export SENT="$BATS_FILE_TMPDIR/sent.ndjson"
  : >"$SENT"
  docker network create "$NET" >/dev/null
  docker network create "$NET-setup" >/dev/null
}

teardown_file() {
  local c
  for c in "$P" "$C" "$K" "$L" "$H"; do docker rm -f "$c" >/dev/null 2>&1 || true; done
  docker network rm "$NET" "$NET-setup" >/dev/null 2>&1 || true
  [[ -z "$(docker ps -a -q --filter "name=logpipe-$RUN_ID-img")" ]]
}

# The services' settings as a compose file would give them; the image's own health check.
start_service() {
  local name="$1" image="$2" port="$3" inner="$4"; shift 4
  docker run -d --name "$name" --network "$NET" --read-only --security-opt no-new-privileges \
    -e KAFKA_BOOTSTRAP_SERVERS=kafka:29092 -e LOG_LEVEL=info,rdkafka=warn \
    -p "127.0.0.1:$port:$inner" "$@" "$image" >/dev/null
}

@test "both images: scratch-based, uid 10001, health check through the binary, under 60 MB" {
  local image size
  for image in "$PRODUCER_IMAGE_REF" "$CONSUMER_IMAGE_REF"; do
    # podman's own view: its Docker API leaves the image's health check out.
    run podman image inspect --format '{{.Config.User}} {{json .HealthCheck.Test}} {{.Size}}' "$image"
    echo "$image: $output"
    [ "$status" -eq 0 ]
    [[ "$output" == "10001:10001 "* ]]
    [[ "$output" == *'["CMD","'*'","healthcheck"]'* ]]
    size="${output##* }"
    echo "$image: $((size / 1024 / 1024)) MiB"
    [ "$size" -le $((60 * 1000 * 1000)) ]
  done
  # No shell inside: the runtime image holds the binary, its libraries and certificates only.
  run run_once --entrypoint /bin/sh "$PRODUCER_IMAGE_REF" -c true
  [ "$status" -ne 0 ]
}

@test "invalid configuration: exit 78 and one line on stderr naming the key, for both" {
  run --separate-stderr run_once -e KAFKA_COMPRESSION=bogus "$PRODUCER_IMAGE_REF"
  echo "producer: status $status, stderr: $stderr"
  [ "$status" -eq 78 ]
  [ "$(printf '%s\n' "$stderr" | grep -c .)" -eq 1 ]
  [[ "$stderr" == *KAFKA_COMPRESSION* || "$stderr" == *kafka_compression* ]]
  run --separate-stderr run_once -e LOKI_ENCODING=xml "$CONSUMER_IMAGE_REF"
  echo "consumer: status $status, stderr: $stderr"
  [ "$status" -eq 78 ]
  [ "$(printf '%s\n' "$stderr" | grep -c .)" -eq 1 ]
  [[ "$stderr" == *LOKI_ENCODING* || "$stderr" == *loki_encoding* ]]
}

@test "without Kafka both stay live (healthy, /healthz 200) and not ready (/readyz 503: kafka), then get ready when it comes" {
  start_service "$P" "$PRODUCER_IMAGE_REF" "$P_PORT" 8000
  start_service "$C" "$CONSUMER_IMAGE_REF" "$C_PORT" 8001 -e LOKI_URL=http://loki:3100
  wait_for 30 is_health "$P" healthy
  wait_for 30 is_health "$C" healthy
  [ "$(http_code "http://127.0.0.1:$P_PORT/healthz")" = 200 ]
  [ "$(http_code "http://127.0.0.1:$C_PORT/healthz")" = 200 ]
  run curl -s "http://127.0.0.1:$P_PORT/readyz"
  echo "producer /readyz: $output"
  [ "$(http_code "http://127.0.0.1:$P_PORT/readyz")" = 503 ]
  [[ "$output" == *kafka* ]]
  run curl -s "http://127.0.0.1:$C_PORT/readyz"
  echo "consumer /readyz: $output"
  [ "$(http_code "http://127.0.0.1:$C_PORT/readyz")" = 503 ]
  [[ "$output" == *kafka* ]]
  # Past the old 10-second give-up: still running, still live.
  sleep 12
  [ "$(docker inspect --format '{{.State.Running}}' "$P")" = true ]
  [ "$(docker inspect --format '{{.State.Running}}' "$C")" = true ]
  [ "$(health "$P")" = healthy ]
  [ "$(health "$C")" = healthy ]
  # Kafka arrives with its topics (made on a network of its own first: a broker without them
  # is a configuration error, exit 78), and Loki: both services get ready by themselves.
  docker run -d --name "$K" --network "$NET-setup" "$CT_KAFKA_IMAGE" >/dev/null
  wait_for 30 docker exec "$K" tansu topic list --broker tcp://localhost:29092
  docker exec "$K" tansu topic create --broker tcp://localhost:29092 --partitions 3 logs >/dev/null
  docker exec "$K" tansu topic create --broker tcp://localhost:29092 --partitions 1 logs-dlq >/dev/null
  docker network connect --alias kafka "$NET" "$K"
  docker run -d --name "$L" --network "$NET" --network-alias loki \
    -p "127.0.0.1:$L_PORT:3100" -p "127.0.0.1:$LC_PORT:3101" "$CT_LOKI_IMAGE" >/dev/null
  wait_for 60 http_is "http://127.0.0.1:$P_PORT/readyz" 200 \
    || { docker logs "$P" 2>&1 | tail -20; return 1; }
  wait_for 60 http_is "http://127.0.0.1:$C_PORT/readyz" 200 \
    || { docker logs "$C" 2>&1 | tail -20; return 1; }
}

@test "they run as uid 10001 on a read-only root file system, and records flow through them" {
  local c
  for c in "$P" "$C"; do
    [ "$(docker inspect --format '{{.HostConfig.ReadonlyRootfs}}' "$c")" = true ]
    run host_uids "$c"
    echo "$c uids: $output"
    [ "$output" = "10001 10001 10001 10001" ]
  done
  run post_batch "http://127.0.0.1:$P_PORT" img-test flow 50
  echo "$output"
  [[ "$output" == *'"accepted":50'* ]]
  wait_for 60 records loki --url "http://127.0.0.1:$L_PORT" --query '{service="img-test"}' \
    --expected "$SENT" --id load_id
  run records lines --actual <(topic_dump "$NET" logs) --expected "$SENT" --id load_id
  echo "$output"
  [ "$status" -eq 0 ]
}

@test "the health check turns unhealthy when the process hangs, and healthy again when it resumes" {
  # The image's check, every second (podman's own CLI: its Docker API drops --health-* flags
  # that do not restate the command, and the Docker CLI can only restate it through a shell).
  podman run -d --name "$H" --network "$NET" --read-only -e KAFKA_BOOTSTRAP_SERVERS=kafka:29092 \
    --health-cmd '["producer", "healthcheck"]' --health-interval 1s --health-retries 2 \
    --health-timeout 2s --health-start-period 0s -p "127.0.0.1:$H_PORT:8000" \
    "$PRODUCER_IMAGE_REF" >/dev/null 2>&1
  wait_for 30 is_health "$H" healthy
  local pid
  pid="$(docker inspect --format '{{.State.Pid}}' "$H")"
  kill -STOP "$pid"
  wait_for 30 is_health "$H" unhealthy
  kill -CONT "$pid"
  wait_for 30 is_health "$H" healthy
  docker rm -f "$H" >/dev/null
}

@test "SIGTERM: the producer drains what it accepted, the consumer commits; both exit 0 within the grace period" {
  local stop="$BATS_TEST_TMPDIR/stop" i=0 started elapsed
  # Records keep arriving while the producer is stopped; every one it accepted must be in Kafka.
  (
    while [[ ! -e "$stop" ]]; do
      i=$((i + 1))
      printf 'drain-%s %s\n' "$i" \
        "$(post_batch "http://127.0.0.1:$P_PORT" img-test "drain-$i" 20 2>&1 | tr -d '\n')" \
        >>"$BATS_TEST_TMPDIR/answers"
    done
  ) 3>&- &
  local loader=$!
  sleep 2
  started=$SECONDS
  docker stop -t 40 "$P" >/dev/null
  elapsed=$((SECONDS - started))
  touch "$stop"
  wait "$loader"
  echo "producer stopped in ${elapsed}s, exit $(docker inspect --format '{{.State.ExitCode}}' "$P")"
  [ "$(docker inspect --format '{{.State.ExitCode}}' "$P")" -eq 0 ]
  [ "$elapsed" -lt 40 ]
  docker logs "$P" 2>&1 | grep -q 'everything in flight was acknowledged by kafka'
  # What was sent but refused (connection closed at shutdown) is not expected in Kafka.
  python3 - "$SENT" "$BATS_TEST_TMPDIR/answers" "$BATS_TEST_TMPDIR/accepted.ndjson" <<'PY'
import json, sys
sent = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
answers = dict(l.split(" ", 1) for l in open(sys.argv[2]).read().splitlines() if " " in l)
# post_batch appends a batch to SENT before posting; keep the batches whose answer accepted all.
batches = {}
for r in sent:
    batches.setdefault(r["load_id"].rsplit("-", 1)[0], []).append(r)
drain = [k for k in batches if k.startswith("drain-")]
ok = [k for k in drain if '"accepted":20' in answers.get(k, "")]
with open(sys.argv[3], "w") as out:
    for k in ["flow"] + ok:
        for r in batches[k]:
            out.write(json.dumps(r) + "\n")
print(f"{len(ok)} of {len(drain)} drain batches accepted")
PY
  run records lines --actual <(topic_dump "$NET" logs) --expected "$BATS_TEST_TMPDIR/accepted.ndjson" --id load_id
  echo "$output"
  [ "$status" -eq 0 ]
  started=$SECONDS
  docker stop -t 40 "$C" >/dev/null
  elapsed=$((SECONDS - started))
  echo "consumer stopped in ${elapsed}s, exit $(docker inspect --format '{{.State.ExitCode}}' "$C")"
  [ "$(docker inspect --format '{{.State.ExitCode}}' "$C")" -eq 0 ]
  [ "$elapsed" -lt 40 ]
}
