# shellcheck shell=bash
# runtime.sh — the one runtime adapter of the ops scripts. Sourced, never run.
#
# Two implementations of the same verbs, chosen by RUNTIME:
#   compose  docker compose on a Docker host (or podman's Docker API on DOCKER_HOST:
#            tests/containers/ops.bats): colours are compose projects (<project>-blue,
#            <project>-green) built from LOGPIPE_COMPOSE_FILES plus a generated overlay; the
#            front door is an nginx container whose upstream names the active colour.
#   local    processes on this machine, beside what scripts/run-local.sh started: binaries from
#            $CARGO_TARGET_DIR/release (or a release folder), pids and logs in $LOGPIPE_RUN_DIR;
#            the front door is a local nginx run as a user process with a generated config.
# Default: compose when `docker info` answers, else local. Scripts call only rt_* functions;
# nothing else here runs docker.
#
# Colours: blue, green, and "base" (what run-local.sh or docker-compose.yml started, before the
# first blue-green deploy). SERVICE is producer or consumer. Data components (backups): broker,
# loki, prometheus, grafana.

RT_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RT_ROOT="$(cd "$RT_LIB_DIR/../.." && pwd)"
# shellcheck source=scripts/lib/tools.sh
source "$RT_LIB_DIR/tools.sh"

_rt_log() { printf '[runtime:%s] %s\n' "${RUNTIME:-?}" "$*" >&2; }

# rt_init — picks the runtime and the state folder; call once before any other rt_* function.
rt_init() {
  if [[ -z "${RUNTIME:-}" ]]; then
    if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
      RUNTIME=compose
    else
      RUNTIME=local
    fi
  fi
  case "$RUNTIME" in
    local|compose) ;;
    *) _rt_log "unknown RUNTIME '$RUNTIME' (compose or local)"; return 2 ;;
  esac
  export RUNTIME
  tools_env
  : "${LOGPIPE_RUN_DIR:=$LOGPIPE_CACHE/run}"
  : "${KAFKA_PORT:=9092}" "${LOKI_PORT:=3100}" "${PROMETHEUS_PORT:=9090}"
  : "${PRODUCER_PORT:=8000}" "${CONSUMER_PORT:=8001}" "${FRONT_DOOR_PORT:=8080}"
  : "${BLUE_PRODUCER_PORT:=$((PRODUCER_PORT + 100))}" "${BLUE_CONSUMER_PORT:=$((CONSUMER_PORT + 100))}"
  : "${GREEN_PRODUCER_PORT:=$((PRODUCER_PORT + 200))}" "${GREEN_CONSUMER_PORT:=$((CONSUMER_PORT + 200))}"
  # Seconds a draining service gets before SIGKILL: the services' SHUTDOWN_TIMEOUT (30s) + margin.
  : "${RT_STOP_TIMEOUT:=45}"
  : "${LOGPIPE_RELEASES_DIR:=$LOGPIPE_RUN_DIR/releases}"
  : "${COMPOSE_PROJECT:=logpipe}" "${LOGPIPE_COMPOSE_FILES:=docker-compose.yml}"
  : "${BACKUP_HELPER_IMAGE:=busybox:1.37.0}" "${FRONT_DOOR_IMAGE:=nginx:1.27.3-alpine}"
  if [[ "$RUNTIME" == local ]]; then
    : "${LOGPIPE_STATE_DIR:=$LOGPIPE_RUN_DIR}"
  else
    : "${LOGPIPE_STATE_DIR:=${XDG_STATE_HOME:-$HOME/.local/state}/logpipe}"
  fi
  export LOGPIPE_RUN_DIR LOGPIPE_STATE_DIR KAFKA_PORT LOKI_PORT PROMETHEUS_PORT PRODUCER_PORT \
    CONSUMER_PORT FRONT_DOOR_PORT
  mkdir -p "$LOGPIPE_STATE_DIR"
  [[ "$RUNTIME" == local ]] && mkdir -p "$LOGPIPE_RUN_DIR"
  return 0
}

_rt_check_service() {
  case "$1" in producer|consumer) ;; *) _rt_log "unknown service '$1'"; return 2 ;; esac
}
_rt_check_colour() {
  case "$1" in blue|green|base) ;; *) _rt_log "unknown colour '$1'"; return 2 ;; esac
}

# ---------------------------------------------------------------------------------------------
# Deployment state: which colour serves, at which version (a KEY=VALUE file, plus a history).

rt_state_file() { printf '%s/deploy.state\n' "$LOGPIPE_STATE_DIR"; }

# rt_state_get KEY — prints KEY's value from the state file (empty when unknown).
rt_state_get() {
  local f
  f="$(rt_state_file)"
  [[ -f "$f" ]] || return 0
  sed -n "s/^$1=//p" "$f" | tail -1
}

# rt_record COLOUR VERSION ACTION — records COLOUR at VERSION as active; the previous active
# colour and version become PREVIOUS_*. Written atomically (temp file + rename).
rt_record() {
  local colour="$1" version="$2" action="$3" f tmp now prev_c prev_v
  f="$(rt_state_file)"
  prev_c="$(rt_state_get ACTIVE_COLOUR)"
  prev_v="$(rt_state_get ACTIVE_VERSION)"
  now="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  tmp="$f.tmp.$$"
  {
    printf 'ACTIVE_COLOUR=%s\nACTIVE_VERSION=%s\n' "$colour" "$version"
    printf 'PREVIOUS_COLOUR=%s\nPREVIOUS_VERSION=%s\n' "$prev_c" "$prev_v"
    printf 'RUNTIME=%s\nUPDATED_AT=%s\nACTION=%s\n' "$RUNTIME" "$now" "$action"
  } >"$tmp"
  mv -f "$tmp" "$f"
  printf '%s %s colour=%s version=%s previous=%s:%s\n' "$now" "$action" "$colour" "$version" \
    "${prev_c:-none}" "${prev_v:-none}" >>"$LOGPIPE_STATE_DIR/deploy.history"
}

# rt_active — prints the serving colour: the recorded one, else "base" when the pre-blue-green
# deployment runs, else nothing.
rt_active() {
  local c
  c="$(rt_state_get ACTIVE_COLOUR)"
  if [[ -n "$c" ]]; then
    printf '%s\n' "$c"
  elif rt_running producer base || rt_running consumer base; then
    printf 'base\n'
  fi
}

# rt_lock / rt_unlock — one deploy at a time (a lock folder holding the owner's pid; a stale
# lock whose owner is gone is taken over).
rt_lock() {
  local d="$LOGPIPE_STATE_DIR/deploy.lock" owner
  if ! mkdir "$d" 2>/dev/null; then
    owner="$(cat "$d/pid" 2>/dev/null || true)"
    if [[ -n "$owner" ]] && kill -0 "$owner" 2>/dev/null; then
      _rt_log "another deploy (pid $owner) holds $d"
      return 1
    fi
    rm -rf "$d"
    mkdir "$d" || return 1
  fi
  echo "$$" >"$d/pid"
}
rt_unlock() { rm -rf "$LOGPIPE_STATE_DIR/deploy.lock"; }

# ---------------------------------------------------------------------------------------------
# Services of a colour.

# rt_start SERVICE COLOUR VERSION — starts SERVICE of COLOUR at VERSION (returns at once; wait
# for health with wait-for-services.sh).
rt_start() {
  _rt_check_service "$1" && _rt_check_colour "$2" || return 2
  [[ "$2" != base ]] || { _rt_log "the base deployment is started by run-local.sh / compose up"; return 2; }
  "_rt_${RUNTIME}_start" "$@"
}

# rt_stop SERVICE COLOUR — graceful stop: SIGTERM (producer: flush; consumer: commit, leave the
# group), SIGKILL after RT_STOP_TIMEOUT seconds. Returns 1 when it had to kill.
rt_stop() {
  _rt_check_service "$1" && _rt_check_colour "$2" || return 2
  "_rt_${RUNTIME}_stop" "$@"
}

# rt_running SERVICE COLOUR — succeeds when SERVICE of COLOUR runs.
rt_running() { "_rt_${RUNTIME}_running" "$@"; }

# rt_log_hint SERVICE COLOUR — where to read SERVICE's output.
rt_log_hint() {
  if [[ "$RUNTIME" == local ]]; then
    printf '%s/%s.log\n' "$LOGPIPE_RUN_DIR" "$(_rt_local_name "$1" "$2")"
  else
    printf 'docker compose -p %s logs %s\n' "$(_rt_compose_project "$2")" "$1"
  fi
}

# rt_drain COLOUR — stops COLOUR's producer (in-flight records flushed to Kafka), then its
# consumer (offsets committed, group left: the other colour's consumer takes the partitions in a
# rebalance, cooperative with FEATURE_NEW_CONSUMER=true).
rt_drain() {
  local colour="$1" rc=0 s
  _rt_check_colour "$colour" || return 2
  for s in producer consumer; do
    if rt_running "$s" "$colour"; then
      _rt_log "draining $s ($colour)"
      rt_stop "$s" "$colour" || rc=1
    fi
  done
  return "$rc"
}

# rt_url SERVICE COLOUR — base URL of SERVICE of COLOUR from this machine. COLOUR "active": the
# front door for the producer (the stable ingest address) and the active colour's consumer.
rt_url() {
  local service="$1" colour="$2"
  _rt_check_service "$service" || return 2
  if [[ "$colour" == active ]]; then
    colour="$(rt_active)"
    [[ -n "$colour" ]] || colour=base
    if [[ "$service" == producer && "$colour" != base ]]; then
      printf 'http://127.0.0.1:%s\n' "$FRONT_DOOR_PORT"
      return 0
    fi
  fi
  _rt_check_colour "$colour" || return 2
  "_rt_${RUNTIME}_url" "$service" "$colour"
}

# rt_switch_front_door COLOUR — points the front door at COLOUR's producer (starting the front
# door when it does not run), then waits until it answers from COLOUR.
rt_switch_front_door() {
  _rt_check_colour "$1" || return 2
  "_rt_${RUNTIME}_switch_front_door" "$1" || return 1
  local deadline=$((SECONDS + 15)) seen=""
  while ((SECONDS < deadline)); do
    seen="$(rt_front_door_colour)"
    [[ "$seen" == "$1" ]] && return 0
    sleep 0.2
  done
  _rt_log "front door still answers from '${seen:-nothing}', not $1"
  return 1
}

# rt_front_door_colour — the colour that answers through the front door now (the
# X-Logpipe-Colour header nginx adds), empty when the front door does not answer.
rt_front_door_colour() {
  curl -fsS -m 3 -o /dev/null -D - "http://127.0.0.1:$FRONT_DOOR_PORT/healthz" 2>/dev/null \
    | tr -d '\r' | sed -n 's/^[Xx]-[Ll]ogpipe-[Cc]olour: *//p' | tail -1
}

# rt_down — stops both colours and the front door (not the base deployment or the data
# services).
rt_down() {
  local c rc=0
  for c in blue green; do rt_drain "$c" || rc=1; done
  "_rt_${RUNTIME}_stop_front_door" || rc=1
  return "$rc"
}

# _rt_front_door_conf COLOUR UPSTREAM LISTEN [extra top-level lines] — nginx config routing
# everything to UPSTREAM and naming COLOUR in a response header.
_rt_front_door_conf() {
  local colour="$1" upstream="$2" listen="$3"
  cat <<NGINX
# Generated by scripts/lib/runtime.sh: the front door routes ingest to the $colour producer.
upstream producer {
    server $upstream max_fails=0;
    keepalive 16;
}
server {
    listen $listen;
    client_max_body_size 6m;          # producer INGEST_MAX_BODY_BYTES is 5 MiB
    proxy_request_buffering off;
    location = /nginx-health { return 200 "ok\n"; }
    location / {
        proxy_pass http://producer;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host \$host;
        proxy_read_timeout 60s;
        add_header X-Logpipe-Colour $colour always;
    }
}
NGINX
}

# ---------------------------------------------------------------------------------------------
# Data components (backups).

# rt_data_components — the components a backup covers, in order.
rt_data_components() { printf '%s\n' broker loki prometheus grafana; }

# rt_data_available NAME — succeeds when NAME has persistent data in this runtime; otherwise
# prints why not (the backup manifest records it as skipped).
rt_data_available() { "_rt_${RUNTIME}_data_available" "$1"; }

# rt_data_export NAME TARBALL — writes NAME's data to TARBALL (tar.gz). NAME's service is
# stopped for the copy and started again, so the copy is consistent.
rt_data_export() { "_rt_${RUNTIME}_data_export" "$@"; }

# rt_data_import NAME TARBALL — replaces NAME's data with TARBALL's (verified by the caller):
# stops the service, keeps the current data aside until the new data is in place, starts it.
rt_data_import() { "_rt_${RUNTIME}_data_import" "$@"; }

# rt_data_stop NAME / rt_data_start NAME — stop / start the service that owns NAME's data
# (broker, prometheus; local Loki and Grafana data folders belong to whoever runs them).
rt_data_stop() { "_rt_${RUNTIME}_data_stop" "$1" >/dev/null; }
rt_data_start() { "_rt_${RUNTIME}_data_start" "$1"; }

# _rt_apps_pause — drains every running colour's producer and consumer before the broker stops
# for a copy or a restore, and prints "service colour version" lines for _rt_apps_resume: tansu
# 0.6.0's storage task panics when a live idempotent producer comes back to a restarted broker
# ("idempotent_message_check: more or less than one row"), and a still topic copies consistently.
_rt_apps_pause() {
  local c s
  for c in blue green; do
    for s in producer consumer; do
      rt_running "$s" "$c" || continue
      printf '%s %s %s\n' "$s" "$c" "$("_rt_${RUNTIME}_version" "$s" "$c")"
      rt_stop "$s" "$c" >&2 || true
    done
  done
}

# _rt_apps_resume LINES — starts again what _rt_apps_pause printed.
_rt_apps_resume() {
  local s c v rc=0
  while read -r s c v; do
    [[ -n "$s" ]] || continue
    rt_start "$s" "$c" "$v" || rc=1
  done <<<"$1"
  return "$rc"
}

# ============================================================================================
# The two implementations, each in its own file: every rt_* verb above calls
# _rt_${RUNTIME}_<verb> from one of them.
# shellcheck source=scripts/lib/runtime-local.sh
source "$RT_LIB_DIR/runtime-local.sh"
# shellcheck source=scripts/lib/runtime-compose.sh
source "$RT_LIB_DIR/runtime-compose.sh"
