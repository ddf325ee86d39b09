#!/usr/bin/env bash
# check-scripts.sh — the checks of the ops scripts: shellcheck on every script and library under
# scripts/ and every bats helper under tests/scripts, then the bats suite (tests/scripts), which
# drives the scripts against a real local pipeline. scripts/test.sh calls it.
set -euo pipefail

readonly SCRIPT_NAME="${0##*/}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT

usage() {
  cat <<USAGE
Usage: scripts/$SCRIPT_NAME [--lint-only] [--filter REGEX]

  1. shellcheck -x on scripts/*.sh, scripts/lib/*.sh, tests/scripts/*.bash, tests/containers/*.bash
  2. bats tests/scripts (skipped with --lint-only)

Options:
  --lint-only       only shellcheck
  --filter REGEX    run only the bats tests whose name matches
  -h, --help        show this help

Needs shellcheck and bats (Debian packages; scripts/test.sh installs them) and, for step 2, the
release binaries and tansu that scripts/run-local.sh builds and installs.

Exit status: 0 all passed, 1 shellcheck or a bats test failed, 2 bad usage, 3 shellcheck or bats
is missing.
USAGE
}

log() { printf '[%s] %s\n' "$SCRIPT_NAME" "$*" >&2; }
err() { printf '[%s] error: %s\n' "$SCRIPT_NAME" "$*" >&2; }

main() {
  local lint_only=0 filter="" files=() rc=0
  while [[ $# -gt 0 ]]; do
    case "$1" in
      -h|--help) usage; exit 0 ;;
      --lint-only) lint_only=1 ;;
      --filter) [[ -n "${2:-}" ]] || { err "--filter needs a regex"; exit 2; }; filter="$2"; shift ;;
      *) err "unknown argument: $1"; usage >&2; exit 2 ;;
    esac
    shift
  done
  command -v shellcheck >/dev/null 2>&1 || { err "shellcheck is not installed"; exit 3; }
  cd "$ROOT"
  mapfile -t files < <(find scripts -name '*.sh' -type f | sort; find tests/scripts tests/containers -name '*.bash' -type f | sort)
  log "shellcheck: ${#files[@]} files"
  shellcheck -x "${files[@]}" || rc=1
  [[ "$lint_only" == 0 ]] || exit "$rc"
  command -v bats >/dev/null 2>&1 || { err "bats is not installed"; exit 3; }
  log "bats tests/scripts"
  if [[ -n "$filter" ]]; then bats --filter "$filter" tests/scripts || rc=1
  else bats tests/scripts || rc=1; fi
  exit "$rc"
}

main "$@"
