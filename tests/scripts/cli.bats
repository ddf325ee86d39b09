#!/usr/bin/env bats
# Every ops script: --help documents usage and exit codes; bad arguments exit 2 with the
# script's name on stderr. No services needed.

load helpers

SCRIPTS=(wait-for-services health-check smoke-tests blue-green-deploy rollback backup-volumes
  restore-from-backup disaster-recovery cleanup-logs security-scan update-dependencies check-scripts)

@test "every script answers --help with usage and its exit status" {
  for s in "${SCRIPTS[@]}"; do
    run "$ROOT/scripts/$s.sh" --help
    [ "$status" -eq 0 ] || { echo "$s --help exited $status"; return 1; }
    [[ "$output" == *"Usage: scripts/$s.sh"* ]] || { echo "$s: no usage"; return 1; }
    [[ "$output" == *"Exit status"* ]] || { echo "$s: exit codes undocumented"; return 1; }
  done
}

@test "every script rejects an unknown option with exit 2 and its name on stderr" {
  for s in "${SCRIPTS[@]}"; do
    run --separate-stderr "$ROOT/scripts/$s.sh" --no-such-option
    [ "$status" -eq 2 ] || { echo "$s exited $status"; return 1; }
    [[ "$stderr" == *"[$s.sh]"* ]] || { echo "$s: stderr lacks its name: $stderr"; return 1; }
  done
}

@test "scripts that need an argument exit 2 without it" {
  for s in wait-for-services health-check smoke-tests blue-green-deploy restore-from-backup disaster-recovery; do
    run "$ROOT/scripts/$s.sh"
    [ "$status" -eq 2 ] || { echo "$s without argument exited $status"; return 1; }
  done
}

@test "health-check and smoke-tests refuse an unknown environment" {
  run "$ROOT/scripts/health-check.sh" nowhere
  [ "$status" -eq 2 ]
  [[ "$output" == *"unknown environment nowhere"* ]]
  run "$ROOT/scripts/smoke-tests.sh" nowhere
  [ "$status" -eq 2 ]
}

@test "bad values are usage errors" {
  run "$ROOT/scripts/wait-for-services.sh" --timeout soon 127.0.0.1:1
  [ "$status" -eq 2 ]
  run "$ROOT/scripts/wait-for-services.sh" not-an-endpoint
  [ "$status" -eq 2 ]
  run "$ROOT/scripts/blue-green-deploy.sh" 'v1;rm -rf /'
  [ "$status" -eq 2 ]
  run "$ROOT/scripts/backup-volumes.sh" --only broker,etcd
  [ "$status" -eq 2 ]
  run "$ROOT/scripts/cleanup-logs.sh" --max-size lots
  [ "$status" -eq 2 ]
  run "$ROOT/scripts/security-scan.sh" --only antivirus
  [ "$status" -eq 2 ]
}

@test "wait-for-services times out with exit 1 naming what is down" {
  run --separate-stderr "$ROOT/scripts/wait-for-services.sh" --timeout 1 127.0.0.1:1 http://127.0.0.1:1/
  [ "$status" -eq 1 ]
  [[ "$stderr" == *"still down: 127.0.0.1:1 http://127.0.0.1:1/"* ]]
}

@test "health-check reports failures, grafana skipped, and exits 1 when nothing runs" {
  local p
  p=$(( (RANDOM % 1000) + 41000 ))
  KAFKA_PORT=$p LOKI_PORT=$p PROMETHEUS_PORT=$p PRODUCER_URL=http://127.0.0.1:$p \
    CONSUMER_URL=http://127.0.0.1:$p run "$ROOT/scripts/health-check.sh" --json local
  [ "$status" -eq 1 ]
  [[ "$output" == *'"ok":false'* ]]
  [[ "$output" == *'"check":"grafana /api/health","target":"-","result":"skipped","detail":"no GRAFANA_URL configured for local"'* ]]
}

@test "cleanup-logs applies age and size retention, keeps live logs, and --dry-run deletes nothing" {
  local d="$BATS_TEST_TMPDIR/logs"
  mkdir -p "$d"
  head -c 4000 /dev/zero >"$d/old.log"; touch -d '20 days ago' "$d/old.log"
  head -c 3000 /dev/zero >"$d/a.log.1"; touch -d '3 days ago' "$d/a.log.1"
  head -c 3000 /dev/zero >"$d/b.log.2.gz"; touch -d '2 days ago' "$d/b.log.2.gz"
  head -c 3000 /dev/zero >"$d/live.log"; touch -d '30 days ago' "$d/live.log"
  echo "$$" >"$d/live.pid"
  echo keep >"$d/notes.txt"; touch -d '30 days ago' "$d/notes.txt"
  run "$ROOT/scripts/cleanup-logs.sh" --dry-run --dir "$d" --max-age 14 --max-size 7K
  [ "$status" -eq 0 ]
  [[ "$output" == *"would delete $d/old.log"* ]]
  [[ "$output" == *"would delete $d/a.log.1"* ]]
  [ -f "$d/old.log" ] && [ -f "$d/a.log.1" ]
  run "$ROOT/scripts/cleanup-logs.sh" --dir "$d" --max-age 14 --max-size 7K
  [ "$status" -eq 0 ]
  [ ! -e "$d/old.log" ]     # age
  [ ! -e "$d/a.log.1" ]     # size: the oldest goes until 6000 bytes remain
  [ -f "$d/b.log.2.gz" ]
  [ -f "$d/live.log" ]      # written by a running process
  [ -f "$d/notes.txt" ]     # not a log
}

@test "security-scan finds a planted secret, honours the allow marker, says what it skipped" {
  local d="$BATS_TEST_TMPDIR/tree"
  mkdir -p "$d"
  printf 'FROM debian:12-slim\nUSER nobody\n' >"$d/Dockerfile"
  printf 'key = "AKIA%s"\n' ABCDEFGHIJKLMNOP >"$d/leak.toml"
  run "$ROOT/scripts/security-scan.sh" --path "$d" --no-install
  [ "$status" -eq 1 ]
  [[ "$output" == *"possible secret at ./leak.toml:1"* ]]
  [[ "$output" == *"deny       skipped"* ]]
  printf 'key = "AKIA%s" # secret-scan: allow (test fixture)\n' ABCDEFGHIJKLMNOP >"$d/leak.toml"
  run "$ROOT/scripts/security-scan.sh" --path "$d" --only secrets
  [ "$status" -eq 0 ]
  # Without installing: a trivy that is not there is a skipped check, which --strict fails.
  run "$ROOT/scripts/security-scan.sh" --path "$d" --only secrets,trivy --strict --no-install
  if [[ "$output" == *"trivy      skipped"* ]]; then [ "$status" -eq 3 ]; else [ "$status" -ne 2 ]; fi
}

@test "security-scan leaves out what CI keeps in the checkout (CARGO_HOME, tool caches), in a git tree and not" {
  local d="$BATS_TEST_TMPDIR/ci-tree"
  mkdir -p "$d/.cargo/registry/src/dep" "$d/.ci-tools/bin" "$d/src"
  printf 'FROM debian:12-slim\nUSER nobody\n' >"$d/Dockerfile"
  # A dependency's own test key and unpinned Dockerfile, as crates ship them.
  printf 'key = "AKIA%s"\n' ABCDEFGHIJKLMNOP >"$d/.cargo/registry/src/dep/fixture.toml"
  printf 'FROM alpine\n' >"$d/.cargo/registry/src/dep/Dockerfile"
  printf 'key = "AKIA%s"\n' ABCDEFGHIJKLMNOP >"$d/.ci-tools/bin/blob"
  printf 'fn main() {}\n' >"$d/src/main.rs"
  run "$ROOT/scripts/security-scan.sh" --path "$d" --only secrets,hadolint --no-install
  echo "$output"
  [[ "$output" != *".cargo/"* && "$output" != *".ci-tools/"* ]]
  [[ "$output" == *"secrets    ok"* ]]
  git -C "$d" init -q
  run "$ROOT/scripts/security-scan.sh" --path "$d" --only secrets --no-install
  [ "$status" -eq 0 ]
  # The project's own files are still scanned.
  printf 'key = "AKIA%s"\n' ABCDEFGHIJKLMNOP >"$d/src/leak.toml"
  run "$ROOT/scripts/security-scan.sh" --path "$d" --only secrets --no-install
  [ "$status" -eq 1 ]
  [[ "$output" == *"possible secret at src/leak.toml:1"* ]]
}

@test "security-scan of the repository has no findings" {
  run "$ROOT/scripts/security-scan.sh" --only secrets,hadolint
  echo "$output"
  [ "$status" -eq 0 ]
}

@test "update-dependencies updates, tests, reports, and restores Cargo.lock when tests fail" {
  local ws="$BATS_TEST_TMPDIR/ws"
  mkdir -p "$ws/src"
  printf '[package]\nname = "fixture"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\n' >"$ws/Cargo.toml"
  echo 'fn main() {}' >"$ws/src/main.rs"
  run "$ROOT/scripts/update-dependencies.sh" --manifest-path "$ws/Cargo.toml" --test-cmd true \
    --report "$ws/report.txt"
  [ "$status" -eq 0 ]
  grep -q '^tests: passed (true)' "$ws/report.txt"
  echo '# marker' >>"$ws/Cargo.lock"
  run "$ROOT/scripts/update-dependencies.sh" --manifest-path "$ws/Cargo.toml" --test-cmd false \
    --report "$ws/report.txt"
  [ "$status" -eq 1 ]
  grep -q 'FAILED (false); previous Cargo.lock restored' "$ws/report.txt"
  grep -q '# marker' "$ws/Cargo.lock"
  run "$ROOT/scripts/update-dependencies.sh" --manifest-path "$ws/Cargo.toml" --dry-run
  [ "$status" -eq 0 ]
  [[ "$output" == *"skipped (dry run)"* ]]
}

@test "rollback without a recorded previous version exits 8; a held deploy lock exits 7" {
  export LOGPIPE_STATE_DIR="$BATS_TEST_TMPDIR/state" LOGPIPE_RUN_DIR="$BATS_TEST_TMPDIR/run"
  run "$ROOT/scripts/rollback.sh"
  [ "$status" -eq 8 ]
  [[ "$output" == *"no previous version recorded"* ]]
  mkdir -p "$LOGPIPE_STATE_DIR/deploy.lock"
  echo "$$" >"$LOGPIPE_STATE_DIR/deploy.lock/pid"
  run "$ROOT/scripts/blue-green-deploy.sh" v9
  [ "$status" -eq 7 ]
  [[ "$output" == *"another deploy (pid $$)"* ]]
}
