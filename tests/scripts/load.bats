#!/usr/bin/env bats
# scripts/load-test.sh: usage, bad arguments, the script's thresholds against a server that
# refuses every request (and no way to check the records: a failure too), and a short real run
# (tansu + the release producer on free loopback ports) whose accepted records are all found in
# the topic, by request_id.

load helpers

@test "load-test --help documents usage, the result lines and exit status" {
  run "$ROOT/scripts/load-test.sh" --help
  [ "$status" -eq 0 ]
  [[ "$output" == *"Usage: scripts/load-test.sh"* ]]
  [[ "$output" == *"tests/load/ingestion-load-test.js"* ]]
  [[ "$output" == *"result ingest_records_per_s"* ]]
  [[ "$output" == *"result ingest_lost"* ]]
  [[ "$output" == *"Exit status"* ]]
}

@test "load-test rejects bad arguments with exit 2 and its name on stderr" {
  for args in "--no-such-option" "--duration" "--duration 0" "--vus x" "--batch 0" \
      "--spike-stage -1" "--bootstrap 127.0.0.1:9092" "--connections 2"; do
    # shellcheck disable=SC2086 # the arguments are meant to split
    run --separate-stderr "$ROOT/scripts/load-test.sh" $args
    [ "$status" -eq 2 ] || { echo "$args exited $status"; return 1; }
    [[ "$stderr" == *"[load-test.sh] error:"* ]] || { echo "$args: $stderr"; return 1; }
  done
}

@test "load-test fails on the script's thresholds, and when it cannot check the records" {
  local port
  port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
  # python's http.server answers every POST with 501.
  python3 -m http.server --bind 127.0.0.1 "$port" --directory "$BATS_TEST_TMPDIR" \
    </dev/null >/dev/null 2>&1 3>&- &
  local server=$!
  local deadline=$((SECONDS + 10))
  until curl -fsS -o /dev/null "http://127.0.0.1:$port/"; do
    ((SECONDS < deadline)) || { kill "$server"; echo "http.server did not start"; return 1; }
    sleep 0.1
  done
  LOGPIPE_SKIP_BUILD=1 run --separate-stderr "$ROOT/scripts/load-test.sh" \
    --url "http://127.0.0.1:$port" --duration 1 --vus 1 --spike-vus 1 --spike-stage 1
  kill "$server"
  wait "$server" 2>/dev/null || true
  echo "$output"
  echo "$stderr"
  [ "$status" -eq 1 ]
  [[ "$output" == *"error rate:        100 %"* ]]
  [[ "$stderr" == *"a threshold of ingestion-load-test.js failed"* ]]
  [[ "$stderr" == *"cannot check the accepted records: no --bootstrap"* ]]
  [[ "$output" != *"result ingest_lost"* ]]
}

@test "a short load run reports its rates and finds every accepted record in the topic by id" {
  run --separate-stderr "$ROOT/scripts/load-test.sh" --duration 3 --vus 2 --spike-vus 4 \
    --spike-stage 1 --batch 50 --no-thresholds
  echo "$output"
  echo "$stderr" | tail -5
  [ "$status" -eq 0 ]
  [[ "$output" =~ requests/s:\ +[1-9] ]]
  [[ "$output" =~ records/s:\ +[1-9] ]]
  [[ "$output" == *"error rate:        0 %"* ]]
  [[ "$output" =~ records\ expected=([0-9]+)\ once=([0-9]+)\ missing=0\ duplicated=0 ]]
  [ "${BASH_REMATCH[1]}" -gt 0 ]
  [ "${BASH_REMATCH[1]}" -eq "${BASH_REMATCH[2]}" ]
  [[ "$output" =~ result\ ingest_records_per_s\ [1-9][0-9]* ]]
  [[ "$output" == *"result ingest_lost 0"* ]]
}
