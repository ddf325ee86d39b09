#!/usr/bin/env bash
# wait-for-services.sh — waits until every endpoint answers: TCP endpoints (host:port or
# tcp://host:port) accept a connection, HTTP(S) URLs answer 2xx. Gives up after a timeout and
# names what never came up.
set -euo pipefail

readonly SCRIPT_NAME="${0##*/}"

usage() {
  cat <<USAGE
Usage: scripts/$SCRIPT_NAME [--timeout SECONDS] [--interval SECONDS] [--quiet] ENDPOINT...

Waits until every ENDPOINT is up:
  host:port, tcp://host:port   a TCP connection is accepted
  http://..., https://...      a GET answers 2xx (redirects followed)

Options:
  -t, --timeout SECONDS    give up after this long, for all endpoints together [60]
  -i, --interval SECONDS   pause between attempts [0.5]
  -q, --quiet              no progress lines
  -h, --help               show this help

Example: scripts/$SCRIPT_NAME -t 30 127.0.0.1:9092 http://127.0.0.1:8000/readyz

Exit status: 0 every endpoint is up, 1 the timeout passed (the endpoints still down are named on
stderr), 2 bad usage.
USAGE
}

log() { [[ "$QUIET" == 1 ]] || printf '[%s] %s\n' "$SCRIPT_NAME" "$*" >&2; }
err() { printf '[%s] error: %s\n' "$SCRIPT_NAME" "$*" >&2; }
QUIET=0

# probe ENDPOINT — one attempt; succeeds when ENDPOINT is up.
probe() {
  local ep="$1" hostport host port
  case "$ep" in
    http://*|https://*) curl -fsS -L -m 3 -o /dev/null "$ep" 2>/dev/null ;;
    *)
      hostport="${ep#tcp://}"
      host="${hostport%:*}"
      port="${hostport##*:}"
      host="${host#[}"; host="${host%]}"
      # shellcheck disable=SC2016 # expanded by the inner bash, from its arguments
      timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$host" "$port" 2>/dev/null ;;
  esac
}

valid_endpoint() {
  case "$1" in
    http://?*|https://?*) return 0 ;;
  esac
  [[ "${1#tcp://}" =~ ^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9._-]+):[0-9]{1,5}$ ]]
}

# seconds OPTION VALUE — prints VALUE when it is a number of seconds, else exits 2.
seconds() {
  [[ "$2" =~ ^[0-9]+([.][0-9]+)?$ ]] || { err "$1 needs a number of seconds"; exit 2; }
  printf '%s\n' "$2"
}

main() {
  local timeout=60 interval=0.5 endpoints=() pending=() still ep start
  while [[ $# -gt 0 ]]; do
    case "$1" in
      -h|--help) usage; exit 0 ;;
      -t|--timeout) timeout="$(seconds "$1" "${2:-}")"; shift ;;
      -i|--interval) interval="$(seconds "$1" "${2:-}")"; shift ;;
      -q|--quiet) QUIET=1 ;;
      -*) err "unknown option: $1"; usage >&2; exit 2 ;;
      *) valid_endpoint "$1" || { err "not an endpoint (host:port or http(s)://...): $1"; exit 2; }
        endpoints+=("$1") ;;
    esac
    shift
  done
  [[ ${#endpoints[@]} -gt 0 ]] || { err "no endpoint given"; usage >&2; exit 2; }
  pending=("${endpoints[@]}")
  start="$(date +%s.%N)"
  while true; do
    still=()
    for ep in "${pending[@]}"; do
      if probe "$ep"; then log "up: $ep"; else still+=("$ep"); fi
    done
    [[ ${#still[@]} -eq 0 ]] && { log "all ${#endpoints[@]} endpoint(s) up"; exit 0; }
    pending=("${still[@]}")
    if awk -v s="$start" -v n="$(date +%s.%N)" -v t="$timeout" 'BEGIN { exit !(n - s >= t) }'; then
      err "timed out after ${timeout}s; still down: ${pending[*]}"
      exit 1
    fi
    sleep "$interval"
  done
}

main "$@"
