# shellcheck shell=bash
# environment.sh — where an environment's endpoints come from. Sourced, never run.
#
# env_load ENV reads deploy/environments/ENV.env (bash syntax: KEY=VALUE lines, ${VAR:-default}
# expands) into shell variables of the calling script — not exported, so the services a script
# starts never inherit them (an empty INGEST_TOKEN_FILE would break the producer). A key already
# set in the environment wins over the file, so any endpoint can be overridden per run.
# LOGPIPE_ENV_DIR points elsewhere (tests).

ENV_KEYS=(PRODUCER_URL CONSUMER_URL LOKI_URL PROMETHEUS_URL KAFKA_BOOTSTRAP_SERVERS GRAFANA_URL
  LOKI_TENANT_ID INGEST_TOKEN_FILE RUNTIME)

# env_names — the environments that have a file.
env_names() {
  local f
  for f in "${LOGPIPE_ENV_DIR:-$(_env_root)/deploy/environments}"/*.env; do
    [[ -e "$f" ]] && basename "$f" .env
  done
}

_env_root() { cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd; }

# env_load ENV — exports ENV's endpoints (environment variables win). 2 when ENV is unknown.
env_load() {
  local name="$1" file saved=() k kv
  [[ "$name" =~ ^[a-z][a-z0-9_-]*$ ]] || { printf '[%s] error: invalid environment name: %s\n' "${0##*/}" "$name" >&2; return 2; }
  file="${LOGPIPE_ENV_DIR:-$(_env_root)/deploy/environments}/$name.env"
  [[ -f "$file" ]] || { printf '[%s] error: unknown environment %s (no %s)\n' "${0##*/}" "$name" "$file" >&2; return 2; }
  for k in "${ENV_KEYS[@]}"; do
    [[ -n "${!k+x}" ]] && saved+=("$k=${!k}")
  done
  # shellcheck source=/dev/null
  source "$file"
  for kv in "${saved[@]}"; do printf -v "${kv%%=*}" '%s' "${kv#*=}"; done
}
