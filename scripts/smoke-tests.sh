#!/usr/bin/env bash
# smoke-tests.sh — proves the pipeline of one environment carries a record end to end: sends a
# canary record with a unique id to the producer's POST /v1/logs, waits until Loki's query API
# returns it, and checks the producer's and the consumers' counters moved.
set -euo pipefail

readonly SCRIPT_NAME="${0##*/}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
readonly CANARY_SERVICE="logpipe-smoke"

usage() {
  cat <<USAGE
Usage: scripts/$SCRIPT_NAME [--timeout SECONDS] ENV

Runs the smoke test against ENV (local, staging, production: deploy/environments/ENV.env;
variables of the same names override it):
  1. reads producer_records_sent_total at PRODUCER_URL and consumer_records_pushed_total at
     every CONSUMER_URL (comma-separated; summed: the canary's partition may belong to any
     member of the consumer group)
  2. POSTs one canary record (service "$CANARY_SERVICE", a unique smoke_id) to
     PRODUCER_URL/v1/logs (bearer token from INGEST_TOKEN or INGEST_TOKEN_FILE when set) and
     expects {"accepted":1}
  3. polls LOKI_URL/loki/api/v1/query_range for {service="$CANARY_SERVICE"} until the canary's
     id shows up (X-Scope-OrgID: LOKI_TENANT_ID when set)
  4. checks both counters moved by at least one
Empty PRODUCER_URL / CONSUMER_URL: the runtime adapter's front door and active consumer.

Options:
  --timeout SECONDS   how long to wait for the canary in Loki [60]
  -h, --help          show this help

Exit status: 0 every step passed, 1 a step failed (the failing step is named), 2 bad usage or
unknown environment.
USAGE
}

log() { printf '[%s] %s\n' "$SCRIPT_NAME" "$*" >&2; }
err() { printf '[%s] error: %s\n' "$SCRIPT_NAME" "$*" >&2; }

# shellcheck source=scripts/lib/environment.sh
source "$ROOT/scripts/lib/environment.sh"
# shellcheck source=scripts/lib/runtime.sh
source "$ROOT/scripts/lib/runtime.sh"

pass() { printf 'PASS  %s\n' "$*"; }
fail() { printf 'FAIL  %s\n' "$*"; FAILED=1; }
FAILED=0

# counter URL NAME — the sum of every series of the counter NAME at URL/metrics (empty when the
# endpoint does not answer).
counter() {
  local body
  body="$(curl -fsS -m 5 "${1%/}/metrics" 2>/dev/null)" || return 0
  printf '%s\n' "$body" | awk -v n="$2" '
    $1 == n || index($1, n "{") == 1 { s += $NF; seen = 1 }
    END { if (seen) printf "%.0f\n", s; else print 0 }'
}

# consumers_pushed URLS — consumer_records_pushed_total summed over the comma-separated URLS.
consumers_pushed() {
  local total=0 u v
  IFS=',' read -r -a us <<<"$1"
  for u in "${us[@]}"; do
    v="$(counter "$u" consumer_records_pushed_total)"
    total=$((total + ${v:-0}))
  done
  echo "$total"
}

auth_args() {
  local token="${INGEST_TOKEN:-}"
  if [[ -z "$token" && -n "${INGEST_TOKEN_FILE:-}" && -r "${INGEST_TOKEN_FILE}" ]]; then
    token="$(<"$INGEST_TOKEN_FILE")"
  fi
  [[ -z "$token" ]] || printf -- '-H\nAuthorization: Bearer %s\n' "$token"
}

# loki_has ID SINCE_NS — succeeds when Loki returns the canary with ID.
loki_has() {
  local id="$1" since="$2" hdr=()
  [[ -z "${LOKI_TENANT_ID:-}" ]] || hdr=(-H "X-Scope-OrgID: $LOKI_TENANT_ID")
  curl -fsS -m 5 -G "${hdr[@]}" "${LOKI_URL%/}/loki/api/v1/query_range" \
    --data-urlencode "query={service=\"$CANARY_SERVICE\"}" \
    --data-urlencode "start=$since" --data-urlencode "limit=1000" 2>/dev/null | grep -q "$id"
}

run_smoke() {
  local env="$1" timeout="$2" producer consumers p0 c0 p1 c1 id now since body resp code deadline
  producer="${PRODUCER_URL:-}"
  consumers="${CONSUMER_URL:-}"
  if [[ -z "$producer" || -z "$consumers" ]]; then
    rt_init >/dev/null
    [[ -n "$producer" ]] || producer="$(rt_url producer active)"
    [[ -n "$consumers" ]] || consumers="$(rt_url consumer active)"
  fi
  [[ -n "${LOKI_URL:-}" ]] || { fail "LOKI_URL is not set for $env"; return; }
  p0="$(counter "$producer" producer_records_sent_total)"
  c0="$(consumers_pushed "$consumers")"
  id="smoke-$(date -u +%Y%m%dT%H%M%S)-$$-$RANDOM$RANDOM"
  now="$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)"
  since="$(( $(date +%s) - 120 ))000000000"
  body="$(printf '[{"timestamp":"%s","level":"info","service":"%s","message":"smoke canary %s","smoke_id":"%s","environment_checked":"%s"}]' \
    "$now" "$CANARY_SERVICE" "$id" "$id" "$env")"
  local auth=()
  mapfile -t auth < <(auth_args)
  resp="$(curl -sS -m 30 -w '\n%{http_code}' -H 'Content-Type: application/json' "${auth[@]}" \
    --data-binary "$body" "${producer%/}/v1/logs" 2>&1)" || true
  code="${resp##*$'\n'}"
  resp="${resp%$'\n'*}"
  if [[ "$code" == 200 && "$resp" =~ \"accepted\":1[,}] ]]; then
    pass "canary $id accepted by $producer"
  else
    fail "canary not accepted by ${producer%/}/v1/logs: HTTP $code ${resp:0:200}"
    return
  fi
  deadline=$((SECONDS + timeout))
  until loki_has "$id" "$since"; do
    if ((SECONDS >= deadline)); then
      fail "canary $id not in Loki ($LOKI_URL) after ${timeout}s"
      return
    fi
    sleep 0.5
  done
  pass "canary $id returned by Loki's query API ($LOKI_URL)"
  p1="$(counter "$producer" producer_records_sent_total)"
  deadline=$((SECONDS + 10))
  c1="$(consumers_pushed "$consumers")"
  while ((c1 <= c0 && SECONDS < deadline)); do sleep 0.5; c1="$(consumers_pushed "$consumers")"; done
  if ((p1 > p0)); then pass "producer_records_sent_total moved ($p0 -> $p1)"
  else fail "producer_records_sent_total did not move ($p0 -> $p1) at $producer"; fi
  if ((c1 > c0)); then pass "consumer_records_pushed_total moved ($c0 -> $c1) over $consumers"
  else fail "consumer_records_pushed_total did not move ($c0 -> $c1) over $consumers"; fi
}

main() {
  local env="" timeout=60
  while [[ $# -gt 0 ]]; do
    case "$1" in
      -h|--help) usage; exit 0 ;;
      --timeout)
        [[ "${2:-}" =~ ^[0-9]+$ ]] || { err "--timeout needs whole seconds"; exit 2; }
        timeout="$2"; shift ;;
      -*) err "unknown option: $1"; usage >&2; exit 2 ;;
      *) [[ -z "$env" ]] || { err "one environment only"; exit 2; }; env="$1" ;;
    esac
    shift
  done
  [[ -n "$env" ]] || { err "no environment given (one of: $(env_names | tr '\n' ' '))"; usage >&2; exit 2; }
  env_load "$env" || exit 2
  log "smoke test of $env"
  run_smoke "$env" "$timeout"
  if [[ "$FAILED" == 0 ]]; then printf '%s: smoke test passed\n' "$env"
  else printf '%s: smoke test FAILED\n' "$env"; exit 1; fi
}

main "$@"
