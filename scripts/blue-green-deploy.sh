#!/usr/bin/env bash
# blue-green-deploy.sh — deploys VERSION as the idle colour beside the serving one, proves it
# (ready, health check, smoke test), switches the front door to it, drains the old colour
# gracefully and records the active colour and version. Until the switch nothing serving is
# touched: a failed check stops the new colour and leaves the old one serving.
set -euo pipefail

readonly SCRIPT_NAME="${0##*/}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT

usage() {
  cat <<USAGE
Usage: scripts/$SCRIPT_NAME [options] VERSION
       scripts/$SCRIPT_NAME --status [--env ENV]

Deploys VERSION (an image tag under RUNTIME=compose; a label, or a release folder
\$LOGPIPE_RELEASES_DIR/VERSION with bin/ and producer.env / consumer.env, under RUNTIME=local):
  1. start producer and consumer of the idle colour (blue, or green when blue serves); the new
     consumer joins the group: a rebalance (cooperative-sticky with FEATURE_NEW_CONSUMER=true)
  2. wait until both answer /readyz, then scripts/health-check.sh ENV on the new colour
  3. scripts/smoke-tests.sh ENV: a canary through the new producer must reach Loki
  4. switch the front door (nginx upstream) to the new producer
  5. record the active colour and version (\$LOGPIPE_STATE_DIR/deploy.state, deploy.history)
  6. drain the old colour: producer SIGTERM (flush to Kafka), then consumer SIGTERM (commit,
     leave the group; the new consumer takes its partitions)
A failure in 1-4 stops the new colour gracefully; the old colour keeps serving.

Options:
  --env ENV               environment whose endpoints are checked [\$DEPLOY_ENV or local]
  --health-timeout SECS   how long the new colour may take to become ready [60]
  --smoke-timeout SECS    how long the canary may take to reach Loki [60]
  --reason TEXT           recorded in the history (rollback.sh passes "rollback") [deploy]
  --status                print the recorded state and which colours run, then exit
  -h, --help              show this help

Environment: RUNTIME (compose|local), LOGPIPE_STATE_DIR, RT_STOP_TIMEOUT (seconds a draining
service gets before SIGKILL, 45), DRAIN_GRACE (seconds between the switch and draining, 2),
and the ports of scripts/lib/runtime.sh (FRONT_DOOR_PORT, BLUE_*_PORT, GREEN_*_PORT).

Exit status:
  0  deployed: the new colour serves, the old one drained
  1  the new colour could not be started (old colour still serving)
  2  bad usage or unknown environment
  3  the new colour failed its readiness or health check (old colour still serving)
  4  the new colour failed the smoke test (old colour still serving)
  5  the front door could not be switched (old colour still serving)
  6  deployed and serving, but the old colour had to be killed (it did not drain in time)
  7  another deploy holds the lock
USAGE
}

log() { printf '[%s] %s\n' "$SCRIPT_NAME" "$*" >&2; }
err() { printf '[%s] error: %s\n' "$SCRIPT_NAME" "$*" >&2; }

# shellcheck source=scripts/lib/environment.sh
source "$ROOT/scripts/lib/environment.sh"
# shellcheck source=scripts/lib/runtime.sh
source "$ROOT/scripts/lib/runtime.sh"

# abort CODE TARGET OLD MESSAGE — stops the new colour (gracefully) and exits CODE.
abort() {
  local code="$1" target="$2" old="$3"; shift 3
  err "$*"
  log "stopping the new colour ($target)"
  rt_drain "$target" || true
  if [[ -n "$old" ]]; then
    err "deploy failed; $old (version ${OLD_VERSION:-unknown}) is still serving"
  else
    err "deploy failed; nothing was serving before and nothing serves now"
  fi
  exit "$code"
}

# wait_ready TARGET OLD SECONDS URL... — waits for the URLs, aborting (3) at once when a process
# of TARGET exits (a bad configuration) or when SECONDS pass.
wait_ready() {
  local target="$1" old="$2" secs="$3" deadline=$((SECONDS + $3)) s; shift 3
  until "$ROOT/scripts/wait-for-services.sh" --quiet --timeout 2 "$@" 2>/dev/null; do
    for s in producer consumer; do
      rt_running "$s" "$target" \
        || abort 3 "$target" "$old" "the $target $s exited (see $(rt_log_hint "$s" "$target"))"
    done
    ((SECONDS < deadline)) || abort 3 "$target" "$old" "$target not ready within ${secs}s: $*"
  done
}

status() {
  local c s
  printf 'runtime: %s\nstate:   %s\n' "$RUNTIME" "$(rt_state_file)"
  if [[ -f "$(rt_state_file)" ]]; then sed 's/^/  /' "$(rt_state_file)"; else echo "  (no deploy recorded)"; fi
  for c in base blue green; do
    for s in producer consumer; do
      if rt_running "$s" "$c"; then printf '%-6s %-9s running  %s\n' "$c" "$s" "$(rt_url "$s" "$c" 2>/dev/null || true)"; fi
    done
  done
  printf 'front door: %s\n' "$(rt_front_door_colour || true)"
}

deploy() {
  local version="$1" env="$2" health_timeout="$3" smoke_timeout="$4" reason="$5"
  local old target p_url c_url old_c="" consumers rc=0
  old="$(rt_active)"
  OLD_VERSION="$(rt_state_get ACTIVE_VERSION)"
  [[ "$old" == blue ]] && target=green || target=blue
  log "deploying $version as $target (serving now: ${old:-nothing}${OLD_VERSION:+ at $OLD_VERSION}; env $env, runtime $RUNTIME)"
  if rt_running producer "$target" || rt_running consumer "$target"; then
    log "$target has leftovers of an earlier attempt: draining them first"
    rt_drain "$target" || true
  fi
  rt_start producer "$target" "$version" || abort 1 "$target" "$old" "could not start the $target producer"
  rt_start consumer "$target" "$version" || abort 1 "$target" "$old" "could not start the $target consumer"
  p_url="$(rt_url producer "$target")" || abort 1 "$target" "$old" "no URL for the $target producer"
  c_url="$(rt_url consumer "$target")" || abort 1 "$target" "$old" "no URL for the $target consumer"
  wait_ready "$target" "$old" "$health_timeout" "$p_url/readyz" "$c_url/readyz"
  PRODUCER_URL="$p_url" CONSUMER_URL="$c_url" "$ROOT/scripts/health-check.sh" "$env" >&2 \
    || abort 3 "$target" "$old" "$target failed the health check"
  consumers="$c_url"
  if [[ -n "$old" ]]; then
    old_c="$(rt_url consumer "$old" 2>/dev/null || true)"
    [[ -z "$old_c" ]] || consumers="$c_url,$old_c"
  fi
  PRODUCER_URL="$p_url" CONSUMER_URL="$consumers" \
    "$ROOT/scripts/smoke-tests.sh" --timeout "$smoke_timeout" "$env" >&2 \
    || abort 4 "$target" "$old" "$target failed the smoke test"
  if ! rt_switch_front_door "$target"; then
    if [[ -n "$old" && "$old" != base ]]; then rt_switch_front_door "$old" || err "could not switch the front door back to $old"; fi
    abort 5 "$target" "$old" "could not switch the front door to $target"
  fi
  rt_record "$target" "$version" "$reason"
  log "front door -> $target ($version); recorded in $(rt_state_file)"
  if [[ -n "$old" ]]; then
    sleep "${DRAIN_GRACE:-2}"   # requests already inside the old nginx workers finish first
    if ! rt_drain "$old"; then
      err "$old did not drain within ${RT_STOP_TIMEOUT}s and was killed (its uncommitted records are re-read: nothing is lost)"
      rc=6
    fi
  fi
  log "deployed $version: $target serves"
  return "$rc"
}

main() {
  local version="" env="${DEPLOY_ENV:-local}" health_timeout=60 smoke_timeout=60 reason=deploy show=0
  while [[ $# -gt 0 ]]; do
    case "$1" in
      -h|--help) usage; exit 0 ;;
      --status) show=1 ;;
      --env) [[ -n "${2:-}" ]] || { err "--env needs a name"; exit 2; }; env="$2"; shift ;;
      --health-timeout|--smoke-timeout)
        [[ "${2:-}" =~ ^[0-9]+$ ]] || { err "$1 needs whole seconds"; exit 2; }
        if [[ "$1" == --health-timeout ]]; then health_timeout="$2"; else smoke_timeout="$2"; fi
        shift ;;
      --reason) [[ -n "${2:-}" ]] || { err "--reason needs text"; exit 2; }; reason="$2"; shift ;;
      -*) err "unknown option: $1"; usage >&2; exit 2 ;;
      *) [[ -z "$version" ]] || { err "one VERSION only"; exit 2; }; version="$1" ;;
    esac
    shift
  done
  env_load "$env" || exit 2
  rt_init || exit 2
  if [[ "$show" == 1 ]]; then status; exit 0; fi
  [[ -n "$version" ]] || { err "no VERSION given"; usage >&2; exit 2; }
  [[ "$version" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || { err "invalid VERSION: $version"; exit 2; }
  rt_lock || exit 7
  trap rt_unlock EXIT
  deploy "$version" "$env" "$health_timeout" "$smoke_timeout" "$reason"
}

main "$@"
