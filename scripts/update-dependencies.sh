#!/usr/bin/env bash
# update-dependencies.sh — updates Cargo.lock to the newest versions the manifests allow
# (cargo update), runs the tests against them and writes a report. When the tests fail the
# previous Cargo.lock is put back, so a broken update never stays in the tree.
set -euo pipefail

readonly SCRIPT_NAME="${0##*/}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT

usage() {
  cat <<USAGE
Usage: scripts/$SCRIPT_NAME [--dry-run] [--no-test] [--test-cmd CMD] [--report FILE]
                            [--manifest-path PATH] [--keep-on-failure]

  1. cargo update (--dry-run: cargo update --dry-run, nothing changes)
  2. the test command (also when nothing changed: the report then vouches for the current lock)
  3. a report (changed packages, test result) to FILE and stdout
When the tests fail, the previous Cargo.lock is restored (unless --keep-on-failure).

Options:
  --dry-run             show what would be updated; change nothing
  --no-test             skip the tests
  --test-cmd CMD        test command, run by bash in the workspace [cargo test --workspace --locked]
  --report FILE         where the report goes [maintenance-report.txt in the workspace]
  --manifest-path PATH  the workspace's Cargo.toml [the repository's]
  --keep-on-failure     keep the updated Cargo.lock even when the tests fail
  -h, --help            show this help

Exit status: 0 updated and tested (or nothing to update, or --dry-run), 1 the tests failed
(Cargo.lock restored unless --keep-on-failure), 2 bad usage, 3 cargo update failed.
USAGE
}

log() { printf '[%s] %s\n' "$SCRIPT_NAME" "$*" >&2; }
err() { printf '[%s] error: %s\n' "$SCRIPT_NAME" "$*" >&2; }

# shellcheck source=scripts/lib/tools.sh
source "$ROOT/scripts/lib/tools.sh"

main() {
  local dry=0 test=1 test_cmd="cargo test --workspace --locked" report="" manifest="$ROOT/Cargo.toml"
  local keep=0 ws lock saved out changes result="not run" rc=0
  while [[ $# -gt 0 ]]; do
    case "$1" in
      -h|--help) usage; exit 0 ;;
      --dry-run) dry=1 ;;
      --no-test) test=0 ;;
      --keep-on-failure) keep=1 ;;
      --test-cmd) [[ -n "${2:-}" ]] || { err "--test-cmd needs a command"; exit 2; }; test_cmd="$2"; shift ;;
      --report) [[ -n "${2:-}" ]] || { err "--report needs a file"; exit 2; }; report="$2"; shift ;;
      --manifest-path) [[ -f "${2:-}" ]] || { err "--manifest-path needs an existing Cargo.toml"; exit 2; }
        manifest="$2"; shift ;;
      *) err "unknown argument: $1"; usage >&2; exit 2 ;;
    esac
    shift
  done
  tools_env
  ws="$(cd "$(dirname "$manifest")" && pwd)"
  report="${report:-$ws/maintenance-report.txt}"
  lock="$ws/Cargo.lock"
  saved="$(mktemp)"
  SAVED_LOCK="$saved"
  trap 'rm -f "$SAVED_LOCK"' EXIT
  [[ -f "$lock" ]] && cp "$lock" "$saved"
  local args=(update --manifest-path "$ws/Cargo.toml")
  [[ "$dry" == 0 ]] || args+=(--dry-run)
  log "cargo ${args[*]}"
  out="$(cargo "${args[@]}" 2>&1)" || { printf '%s\n' "$out" >&2; err "cargo update failed"; exit 3; }
  changes="$(printf '%s\n' "$out" | grep -E '^[[:space:]]*(Updating|Adding|Removing|Downgrading)[[:space:]]' \
    | grep -v 'crates.io index\|git repository' | sed 's/^[[:space:]]*/  /' || true)"
  if [[ "$dry" == 1 ]]; then
    result="skipped (dry run)"
  elif [[ "$test" == 0 ]]; then
    result="skipped (--no-test)"
  else
    log "testing: $test_cmd"
    if (cd "$ws" && bash -c "$test_cmd") >&2; then
      result="passed ($test_cmd)"
    else
      rc=1
      result="FAILED ($test_cmd)"
      if [[ "$keep" == 0 && -s "$saved" ]]; then
        cp "$saved" "$lock"
        result="$result; previous Cargo.lock restored"
      fi
    fi
  fi
  {
    printf 'Dependency update report — %s\n' "$(date -u +%FT%TZ)"
    printf 'workspace: %s\nmode: %s\n' "$ws" "$([[ "$dry" == 1 ]] && echo dry-run || echo update)"
    printf 'changes:\n%s\n' "${changes:-  (none)}"
    printf 'tests: %s\n' "$result"
  } | tee "$report"
  log "report written to $report"
  return "$rc"
}

main "$@"
