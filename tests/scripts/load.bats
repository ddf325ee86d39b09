#!/usr/bin/env bats
# scripts/load-test.sh: usage, bad arguments, the error-rate gate against a server that refuses
# every request, and a short real run (tansu + the release producer on free loopback ports)
# whose accepted records are all found in the topic.

load helpers

@test "load-test --help documents usage and exit status" {
  run "$ROOT/scripts/load-test.sh" --help
  [ "$status" -eq 0 ]
  [[ "$output" == *"Usage: scripts/load-test.sh"* ]]
  [[ "$output" == *"Exit status"* ]]
}

@test "load-test rejects bad arguments with exit 2 and its name on stderr" {
  for args in "--no-such-option" "--duration" "--duration 0" "--connections x" \
      "--max-error-rate lots" "--threads 4 --connections 2" "--input /nonexistent/records.json"; do
    # shellcheck disable=SC2086 # the arguments are meant to split
    run --separate-stderr "$ROOT/scripts/load-test.sh" $args
    [ "$status" -eq 2 ] || { echo "$args exited $status"; return 1; }
    [[ "$stderr" == *"[load-test.sh] error:"* ]] || { echo "$args: $stderr"; return 1; }
  done
}

@test "load-test fails when the error rate is over the threshold" {
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
    --url "http://127.0.0.1:$port" --duration 1 --connections 2 --threads 1 --max-error-rate 5
  kill "$server"
  wait "$server" 2>/dev/null || true
  [ "$status" -eq 1 ]
  [[ "$output" == *"error rate:        100.000 %"* ]]
  [[ "$stderr" == *"error rate over 5%"* ]]
  [[ "$stderr" == *"the topic was not checked"* ]]
}

@test "a short load run reports its rates and finds every accepted record in the topic" {
  run --separate-stderr "$ROOT/scripts/load-test.sh" --duration 3 --connections 2 --threads 1 --batch 50
  echo "$output"
  echo "$stderr" | tail -5
  [ "$status" -eq 0 ]
  [[ "$output" =~ requests/s:\ +[1-9] ]]
  [[ "$output" =~ records/s:\ +[1-9] ]]
  [[ "$output" == *"error rate:        0.000 %"* ]]
  [[ "$output" == *"(lost 0,"* ]]
}
