#!/usr/bin/env bash
# health-check.sh — checks one environment end to end: producer and consumer liveness and
# readiness, Loki, Prometheus, every Kafka bootstrap broker (TCP), Grafana. Prints a table (or
# JSON) saying what was checked and what it answered; fails when anything required failed.
set -euo pipefail

readonly SCRIPT_NAME="${0##*/}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT

usage() {
  cat <<USAGE
Usage: scripts/$SCRIPT_NAME [--json] [--timeout SECONDS] ENV

Checks the environment ENV (local, staging, production: deploy/environments/ENV.env; any
endpoint there can be overridden by the variable of the same name):
  producer   PRODUCER_URL  /healthz and /readyz   (empty: the runtime's front door / run-local's)
  consumer   CONSUMER_URL  /healthz and /readyz   (comma-separated for several; empty: the
                                                   runtime's active consumer)
  loki       LOKI_URL      /ready
  prometheus PROMETHEUS_URL /-/ready
  kafka      KAFKA_BOOTSTRAP_SERVERS   a TCP connection to every broker
  grafana    GRAFANA_URL   /api/health   (reported "skipped", not failed, when GRAFANA_URL is
                                          empty: no Grafana is configured for ENV)

Options:
  --json               print JSON instead of the table
  --timeout SECONDS    per-check timeout [5]
  -h, --help           show this help

Exit status: 0 every required check passed, 1 a required check failed, 2 bad usage or unknown
environment.
USAGE
}

err() { printf '[%s] error: %s\n' "$SCRIPT_NAME" "$*" >&2; }

# shellcheck source=scripts/lib/environment.sh
source "$ROOT/scripts/lib/environment.sh"
# shellcheck source=scripts/lib/runtime.sh
source "$ROOT/scripts/lib/runtime.sh"

NAMES=() TARGETS=() RESULTS=() DETAILS=()
TIMEOUT=5

add() { NAMES+=("$1"); TARGETS+=("$2"); RESULTS+=("$3"); DETAILS+=("$4"); }

# check_http NAME URL — GET URL; ok on 2xx.
check_http() {
  local name="$1" url="$2" out code ms body
  body="$(mktemp)"
  if out="$(curl -sS -m "$TIMEOUT" -o "$body" -w '%{http_code} %{time_total}' "$url" 2>&1)"; then
    code="${out%% *}"
    ms="$(awk -v t="${out##* }" 'BEGIN { printf "%d", t * 1000 }')"
    if [[ "$code" =~ ^2 ]]; then
      add "$name" "$url" ok "$code in ${ms} ms"
    else
      add "$name" "$url" fail "$code: $(head -c 120 "$body" | tr -s '\n\r\t' '   ')"
    fi
  else
    add "$name" "$url" fail "$(printf '%s' "$out" | sed 's/^curl: ([0-9]*) //' | head -1)"
  fi
  rm -f "$body"
}

# check_tcp NAME HOST:PORT — a TCP connection is accepted.
check_tcp() {
  local name="$1" hp="$2" host port
  host="${hp%:*}"; port="${hp##*:}"
  # shellcheck disable=SC2016 # expanded by the inner bash, from its arguments
  if timeout "$TIMEOUT" bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$host" "$port" 2>/dev/null; then
    add "$name" "$hp" ok "tcp connect"
  else
    add "$name" "$hp" fail "tcp connect refused or timed out"
  fi
}

check_all() {
  local env="$1" url b producer consumers
  producer="${PRODUCER_URL:-}"
  consumers="${CONSUMER_URL:-}"
  if [[ -z "$producer" || -z "$consumers" ]]; then
    rt_init >/dev/null
    [[ -n "$producer" ]] || producer="$(rt_url producer active)"
    [[ -n "$consumers" ]] || consumers="$(rt_url consumer active)"
  fi
  check_http "producer /healthz" "${producer%/}/healthz"
  check_http "producer /readyz" "${producer%/}/readyz"
  IFS=',' read -r -a urls <<<"$consumers"
  for url in "${urls[@]}"; do
    check_http "consumer /healthz" "${url%/}/healthz"
    check_http "consumer /readyz" "${url%/}/readyz"
  done
  if [[ -n "${LOKI_URL:-}" ]]; then check_http "loki /ready" "${LOKI_URL%/}/ready"
  else add "loki /ready" "-" fail "LOKI_URL is not set for $env"; fi
  if [[ -n "${PROMETHEUS_URL:-}" ]]; then check_http "prometheus /-/ready" "${PROMETHEUS_URL%/}/-/ready"
  else add "prometheus /-/ready" "-" fail "PROMETHEUS_URL is not set for $env"; fi
  if [[ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ]]; then
    IFS=',' read -r -a brokers <<<"$KAFKA_BOOTSTRAP_SERVERS"
    for b in "${brokers[@]}"; do check_tcp "kafka broker" "${b// /}"; done
  else
    add "kafka broker" "-" fail "KAFKA_BOOTSTRAP_SERVERS is not set for $env"
  fi
  if [[ -n "${GRAFANA_URL:-}" ]]; then check_http "grafana /api/health" "${GRAFANA_URL%/}/api/health"
  else add "grafana /api/health" "-" skipped "no GRAFANA_URL configured for $env"; fi
}

json_str() {
  local s="$1"
  s="${s//\\/\\\\}"; s="${s//\"/\\\"}"; s="${s//$'\n'/\\n}"; s="${s//$'\r'/}"; s="${s//$'\t'/ }"
  printf '"%s"' "$s"
}

print_json() {
  local env="$1" ok="$2" i sep=""
  printf '{"environment":%s,"ok":%s,"checks":[' "$(json_str "$env")" "$ok"
  for i in "${!NAMES[@]}"; do
    printf '%s{"check":%s,"target":%s,"result":%s,"detail":%s}' "$sep" \
      "$(json_str "${NAMES[$i]}")" "$(json_str "${TARGETS[$i]}")" \
      "$(json_str "${RESULTS[$i]}")" "$(json_str "${DETAILS[$i]}")"
    sep=","
  done
  printf ']}\n'
}

print_table() {
  local env="$1" ok="$2" i
  printf '%-22s %-44s %-8s %s\n' CHECK TARGET RESULT DETAIL
  for i in "${!NAMES[@]}"; do
    printf '%-22s %-44s %-8s %s\n' "${NAMES[$i]}" "${TARGETS[$i]}" "${RESULTS[$i]}" "${DETAILS[$i]}"
  done
  if [[ "$ok" == true ]]; then printf '\n%s: healthy\n' "$env"
  else printf '\n%s: UNHEALTHY\n' "$env"; fi
}

main() {
  local json=0 env="" ok=true r
  while [[ $# -gt 0 ]]; do
    case "$1" in
      -h|--help) usage; exit 0 ;;
      --json) json=1 ;;
      --timeout)
        [[ "${2:-}" =~ ^[0-9]+$ ]] || { err "--timeout needs whole seconds"; exit 2; }
        TIMEOUT="$2"; shift ;;
      -*) err "unknown option: $1"; usage >&2; exit 2 ;;
      *) [[ -z "$env" ]] || { err "one environment only"; exit 2; }; env="$1" ;;
    esac
    shift
  done
  [[ -n "$env" ]] || { err "no environment given (one of: $(env_names | tr '\n' ' '))"; usage >&2; exit 2; }
  env_load "$env" || exit 2
  check_all "$env"
  for r in "${RESULTS[@]}"; do [[ "$r" != fail ]] || ok=false; done
  if [[ "$json" == 1 ]]; then print_json "$env" "$ok"; else print_table "$env" "$ok"; fi
  [[ "$ok" == true ]]
}

main "$@"
