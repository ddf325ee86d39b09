#!/usr/bin/env bash
# rollback.sh — puts an earlier version back into service: a blue-green deploy of VERSION (by
# default the version that served before the current one, from the recorded deploy state), with
# every check of a deploy; a failed check leaves the current colour serving.
set -euo pipefail

readonly SCRIPT_NAME="${0##*/}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT

usage() {
  cat <<USAGE
Usage: scripts/$SCRIPT_NAME [--env ENV] [--health-timeout SECS] [--smoke-timeout SECS] [VERSION]

Rolls back to VERSION, by default PREVIOUS_VERSION of the deploy state
(\$LOGPIPE_STATE_DIR/deploy.state). It is a blue-green deploy (scripts/blue-green-deploy.sh,
recorded as "rollback"): the version starts as the idle colour, must be ready, healthy and pass
the smoke test before the front door switches, and the current colour is then drained.

Options:
  --env ENV               environment whose endpoints are checked [\$DEPLOY_ENV or local]
  --health-timeout SECS   passed to blue-green-deploy.sh [60]
  --smoke-timeout SECS    passed to blue-green-deploy.sh [60]
  -h, --help              show this help

Exit status: those of blue-green-deploy.sh (0 rolled back; 1 could not start; 2 bad usage;
3 health, 4 smoke, 5 front-door failure, each leaving the current colour serving; 6 rolled back
but the old colour was killed; 7 another deploy runs), and 8 when no VERSION was given and no
previous version is recorded.
USAGE
}

err() { printf '[%s] error: %s\n' "$SCRIPT_NAME" "$*" >&2; }

# shellcheck source=scripts/lib/environment.sh
source "$ROOT/scripts/lib/environment.sh"
# shellcheck source=scripts/lib/runtime.sh
source "$ROOT/scripts/lib/runtime.sh"

main() {
  local version="" env="${DEPLOY_ENV:-local}" pass=() current
  while [[ $# -gt 0 ]]; do
    case "$1" in
      -h|--help) usage; exit 0 ;;
      --env) [[ -n "${2:-}" ]] || { err "--env needs a name"; exit 2; }; env="$2"; shift ;;
      --health-timeout|--smoke-timeout)
        [[ "${2:-}" =~ ^[0-9]+$ ]] || { err "$1 needs whole seconds"; exit 2; }
        pass+=("$1" "$2"); shift ;;
      -*) err "unknown option: $1"; usage >&2; exit 2 ;;
      *) [[ -z "$version" ]] || { err "one VERSION only"; exit 2; }; version="$1" ;;
    esac
    shift
  done
  env_load "$env" || exit 2
  rt_init || exit 2
  if [[ -z "$version" ]]; then
    version="$(rt_state_get PREVIOUS_VERSION)"
    [[ -n "$version" ]] || { err "no previous version recorded in $(rt_state_file); name the VERSION to roll back to"; exit 8; }
  fi
  current="$(rt_state_get ACTIVE_VERSION)"
  printf '[%s] rolling back from %s to %s\n' "$SCRIPT_NAME" "${current:-unknown}" "$version" >&2
  exec "$ROOT/scripts/blue-green-deploy.sh" --env "$env" --reason rollback "${pass[@]}" "$version"
}

main "$@"
