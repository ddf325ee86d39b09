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
# local: processes on this machine.

_rt_local_port() {
  local service="$1" colour="$2" var
  case "$colour" in
    base) [[ "$service" == producer ]] && var=PRODUCER_PORT || var=CONSUMER_PORT ;;
    *) var="${colour^^}_${service^^}_PORT" ;;
  esac
  printf '%s\n' "${!var}"
}

_rt_local_name() { [[ "$2" == base ]] && printf '%s\n' "$1" || printf '%s-%s\n' "$1" "$2"; }

_rt_local_pid() {
  local f="$LOGPIPE_RUN_DIR/$1.pid" pid
  [[ -f "$f" ]] || return 1
  pid="$(cat "$f")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && printf '%s\n' "$pid"
}

_rt_local_running() { _rt_local_pid "$(_rt_local_name "$1" "$2")" >/dev/null; }

_rt_local_url() { printf 'http://127.0.0.1:%s\n' "$(_rt_local_port "$1" "$2")"; }

# _rt_local_spawn NAME CMD... — starts CMD in the background with no inherited descriptors
# (stdin from /dev/null, output appended to NAME.log; bats' fd 3 closed), records NAME.pid.
_rt_local_spawn() {
  local name="$1"; shift
  "$@" </dev/null >>"$LOGPIPE_RUN_DIR/$name.log" 2>&1 3>&- &
  echo "$!" >"$LOGPIPE_RUN_DIR/$name.pid"
}

# _rt_local_kill NAME — SIGTERM, wait up to RT_STOP_TIMEOUT, SIGKILL. 1 when it had to kill.
_rt_local_kill() {
  local name="$1" pid deadline rc=0
  pid="$(_rt_local_pid "$name")" || { rm -f "$LOGPIPE_RUN_DIR/$name.pid"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + RT_STOP_TIMEOUT))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    _rt_log "$name (pid $pid) did not stop within ${RT_STOP_TIMEOUT}s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    rc=1
  fi
  rm -f "$LOGPIPE_RUN_DIR/$name.pid"
  return "$rc"
}

# _rt_local_release_env VERSION SERVICE — KEY=VALUE lines of the release's SERVICE.env.
_rt_local_release_env() {
  local f="$LOGPIPE_RELEASES_DIR/$1/$2.env"
  [[ -f "$f" ]] || return 0
  grep -E '^[A-Za-z_][A-Za-z0-9_]*=' "$f" || true
}

_rt_local_start() {
  local service="$1" colour="$2" version="$3" name bin port loki_url envs=()
  name="$(_rt_local_name "$service" "$colour")"
  if _rt_local_running "$service" "$colour"; then
    _rt_log "$name already runs"
    return 1
  fi
  bin="$CARGO_TARGET_DIR/release/$service"
  [[ -x "$LOGPIPE_RELEASES_DIR/$version/bin/$service" ]] && bin="$LOGPIPE_RELEASES_DIR/$version/bin/$service"
  [[ -x "$bin" ]] || { _rt_log "no $service binary at $bin (cargo build --release)"; return 1; }
  port="$(_rt_local_port "$service" "$colour")"
  loki_url="${LOCAL_LOKI_URL:-http://127.0.0.1:$LOKI_PORT}"
  envs=(KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:$KAFKA_PORT" ENVIRONMENT=local LOG_FORMAT=text
    HTTP_LISTEN="127.0.0.1:$port" LOGPIPE_COLOUR="$colour" LOGPIPE_VERSION="$version")
  [[ "$service" == consumer ]] && envs+=(LOKI_URL="$loki_url")
  mapfile -t -O "${#envs[@]}" envs < <(_rt_local_release_env "$version" "$service")
  printf '\n=== %s start %s version %s\n' "$(date -u +%FT%TZ)" "$name" "$version" \
    >>"$LOGPIPE_RUN_DIR/$name.log"
  _rt_local_spawn "$name" env "${envs[@]}" "$bin" run
  echo "$version" >"$LOGPIPE_RUN_DIR/$name.version"
  _rt_log "started $name version $version (pid $(cat "$LOGPIPE_RUN_DIR/$name.pid"), port $port, log $LOGPIPE_RUN_DIR/$name.log)"
}

_rt_local_stop() { _rt_local_kill "$(_rt_local_name "$1" "$2")"; }

_rt_local_front_dir() { printf '%s/front-door\n' "$LOGPIPE_RUN_DIR"; }

# ensure_nginx — installs nginx (Debian package) when missing; only the binary is used: the
# system service is never started.
ensure_nginx() {
  command -v nginx >/dev/null 2>&1 && return 0
  [[ -x /usr/sbin/nginx ]] && { PATH="$PATH:/usr/sbin"; return 0; }
  ensure_apt nginx:nginx
}

_rt_local_nginx() {
  local dir
  dir="$(_rt_local_front_dir)"
  nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" "$@"
}

_rt_local_switch_front_door() {
  local colour="$1" dir pid
  ensure_nginx || return 1
  dir="$(_rt_local_front_dir)"
  mkdir -p "$dir/tmp"
  {
    # As root, nginx would switch its workers to "nobody", who cannot write to the run dir.
    [[ "$(id -u)" == 0 ]] && printf 'user root root;\n'
    printf 'daemon off;\nworker_processes 1;\npid %s/nginx.pid;\n' "$dir"
    printf 'error_log %s/error.log warn;\nevents { worker_connections 256; }\nhttp {\n' "$dir"
    printf '  access_log off;\n'
    printf '  client_body_temp_path %s/tmp/body;\n  proxy_temp_path %s/tmp/proxy;\n' "$dir" "$dir"
    printf '  fastcgi_temp_path %s/tmp/fcgi;\n  uwsgi_temp_path %s/tmp/uwsgi;\n' "$dir" "$dir"
    printf '  scgi_temp_path %s/tmp/scgi;\n' "$dir"
    _rt_front_door_conf "$colour" "127.0.0.1:$(_rt_local_port producer "$colour")" \
      "127.0.0.1:$FRONT_DOOR_PORT"
    printf '}\n'
  } >"$dir/nginx.conf.new"
  if ! nginx -t -q -p "$dir" -c "$dir/nginx.conf.new" -e "$dir/error.log" 2>"$dir/config-test.log"; then
    _rt_log "generated front-door config is invalid (see $dir/config-test.log)"
    return 1
  fi
  mv -f "$dir/nginx.conf.new" "$dir/nginx.conf"
  if pid="$(_rt_local_pid front-door)"; then
    kill -HUP "$pid"   # graceful reload: old workers finish their requests
    _rt_log "front door (pid $pid) reloaded: -> $colour"
  else
    _rt_local_spawn front-door nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log"
    _rt_log "front door started on 127.0.0.1:$FRONT_DOOR_PORT (pid $(cat "$LOGPIPE_RUN_DIR/front-door.pid")) -> $colour"
  fi
}

_rt_local_stop_front_door() { _rt_local_kill front-door; }

_rt_local_data_dir() {
  case "$1" in
    broker) printf '%s/tansu\n' "$LOGPIPE_RUN_DIR" ;;
    prometheus) printf '%s/prometheus-data\n' "$LOGPIPE_RUN_DIR" ;;
    loki) printf '%s\n' "${LOKI_DATA_DIR:-}" ;;
    grafana) printf '%s\n' "${GRAFANA_DATA_DIR:-}" ;;
    *) _rt_log "unknown data component '$1'"; return 2 ;;
  esac
}

_rt_local_data_available() {
  local dir
  dir="$(_rt_local_data_dir "$1")" || return 2
  case "$1" in
    loki) [[ -n "$dir" ]] || { echo "the local receiver (testkit loki) keeps entries in memory only; set LOKI_DATA_DIR for a real Loki's data"; return 1; } ;;
    grafana) [[ -n "$dir" ]] || { echo "the local runtime runs no Grafana; set GRAFANA_DATA_DIR for one's data"; return 1; } ;;
  esac
  [[ -d "$dir" ]] || { echo "no data folder at $dir"; return 1; }
}

# The data services run-local.sh starts, restarted with the same command lines.
_rt_local_service_of() {
  case "$1" in broker) echo tansu ;; prometheus) echo prometheus ;; *) echo "" ;; esac
}

_rt_local_data_stop() {
  local svc
  svc="$(_rt_local_service_of "$1")"
  [[ -n "$svc" ]] || return 0   # LOKI_DATA_DIR / GRAFANA_DATA_DIR: their owner stops them
  _rt_local_pid "$svc" >/dev/null || { echo 0; return 0; }
  _rt_local_kill "$svc" || true
  echo 1
}

_rt_local_data_start() {
  local svc deadline
  svc="$(_rt_local_service_of "$1")"
  case "$svc" in
    tansu)
      (cd "$LOGPIPE_RUN_DIR/tansu" && _rt_local_spawn tansu "$TANSU_BIN" broker \
        --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
        --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
        --storage-engine sqlite://tansu.db)
      deadline=$((SECONDS + 20))
      until "$TANSU_BIN" topic list --broker "tcp://127.0.0.1:$KAFKA_PORT" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || { _rt_log "tansu did not come back"; return 1; }
        sleep 0.2
      done ;;
    prometheus)
      _rt_local_spawn prometheus prometheus --config.file "$LOGPIPE_RUN_DIR/prometheus.yml" \
        --storage.tsdb.path "$LOGPIPE_RUN_DIR/prometheus-data" \
        --web.listen-address "127.0.0.1:$PROMETHEUS_PORT"
      deadline=$((SECONDS + 30))
      until curl -fsS -o /dev/null "http://127.0.0.1:$PROMETHEUS_PORT/-/ready" 2>/dev/null; do
        ((SECONDS < deadline)) || { _rt_log "prometheus did not come back"; return 1; }
        sleep 0.3
      done ;;
  esac
  return 0
}

_rt_local_data_export() {
  local name="$1" out="$2" dir was rc=0 snap
  dir="$(_rt_local_data_dir "$name")" || return 2
  if [[ "$name" == broker ]]; then
    # Online: SQLite's backup API gives a consistent copy while tansu runs. Restarting tansu under
    # live idempotent producers is what we avoid: tansu 0.6.0's storage task then panics
    # ("idempotent_message_check: more or less than one row") and the broker stops answering.
    ensure_apt sqlite3:sqlite3 || return 1
    snap="$(mktemp -d)"
    if sqlite3 "$dir/tansu.db" ".timeout 10000" ".backup '$snap/tansu.db'" \
        && [[ "$(sqlite3 "$snap/tansu.db" 'pragma integrity_check')" == ok ]]; then
      tar -C "$snap" -czf "$out" . || rc=1
    else
      _rt_log "sqlite backup of $dir/tansu.db failed"; rc=1
    fi
    rm -rf "$snap"
    return "$rc"
  fi
  was="$(_rt_local_data_stop "$name")"
  tar -C "$dir" -czf "$out" . || rc=1
  if [[ "$was" == 1 ]]; then _rt_local_data_start "$name" || rc=1; fi
  return "$rc"
}

# _rt_local_apps_pause — refuses (1) while run-local's own producer or consumer runs (the
# adapter cannot start those again), else _rt_apps_pause.
_rt_local_apps_pause() {
  if _rt_local_running producer base || _rt_local_running consumer base; then
    _rt_log "run-local.sh's producer/consumer run: deploy a colour first (blue-green-deploy.sh) or stop them"
    return 1
  fi
  _rt_apps_pause
}

_rt_local_version() { cat "$LOGPIPE_RUN_DIR/$1-$2.version" 2>/dev/null || echo unknown; }

_rt_local_data_import() {
  local name="$1" in="$2" dir was aside apps="" rc=0
  dir="$(_rt_local_data_dir "$name")" || return 2
  [[ -n "$dir" ]] || { _rt_log "$name has no data folder here"; return 1; }
  if [[ "$name" == broker ]]; then
    apps="$(_rt_local_apps_pause)" || return 1
    [[ -z "$apps" ]] || _rt_log "paused for the broker restore: $(printf '%s' "$apps" | tr '\n' ';')"
  fi
  was="$(_rt_local_data_stop "$name")"
  aside="$dir.pre-restore.$$"
  [[ -d "$dir" ]] && mv "$dir" "$aside"
  mkdir -p "$dir"
  if tar -C "$dir" -xzf "$in"; then
    rm -rf "$aside"
  else
    _rt_log "extracting $in failed: the previous $name data is put back"
    rm -rf "$dir"
    [[ -d "$aside" ]] && mv "$aside" "$dir"
    rc=1
  fi
  if [[ "$was" == 1 ]]; then _rt_local_data_start "$name" || rc=1; fi
  [[ -z "$apps" ]] || _rt_apps_resume "$apps" || rc=1
  return "$rc"
}

# ============================================================================================
# compose: docker compose projects on a Docker host (needs Docker Compose >= 2.24.4 for the
# !reset / !override tags of the generated overlays).

_rt_compose_dir() { printf '%s/compose\n' "$LOGPIPE_STATE_DIR"; }

_rt_compose_project() {
  [[ "$1" == base ]] && printf '%s\n' "$COMPOSE_PROJECT" || printf '%s-%s\n' "$COMPOSE_PROJECT" "$1"
}

# _rt_compose COLOUR ARGS... — docker compose for COLOUR's project (base: the repository's
# files; a colour: the same files plus its generated overlay).
_rt_compose() {
  local colour="$1" f args=(); shift
  args=(-p "$(_rt_compose_project "$colour")" --project-directory "$RT_ROOT")
  for f in $LOGPIPE_COMPOSE_FILES; do args+=(-f "$RT_ROOT/$f"); done
  [[ "$colour" == base ]] || args+=(-f "$(_rt_compose_dir)/colour-$colour.yml")
  docker compose "${args[@]}" "$@"
}

_rt_compose_overlay() {
  local colour="$1" version="$2" s port image
  mkdir -p "$(_rt_compose_dir)"
  {
    printf '# Generated by scripts/lib/runtime.sh: the %s colour at version %s.\n' "$colour" "$version"
    printf 'services:\n'
    for s in producer consumer; do
      [[ "$s" == producer ]] && port=8000 || port=8001
      [[ "$s" == producer ]] && image="${PRODUCER_IMAGE:-logpipe-producer}" || image="${CONSUMER_IMAGE:-logpipe-consumer}"
      printf '  %s:\n    image: %s:%s\n    build: !reset null\n' "$s" "$image" "$version"
      printf '    ports: !override ["127.0.0.1::%s"]\n    depends_on: !reset {}\n' "$port"
      printf '    labels: {logpipe.colour: %s, logpipe.version: "%s"}\n' "$colour" "$version"
      printf '    networks:\n      logpipe:\n        aliases: [%s-%s]\n' "$s" "$colour"
    done
    printf 'networks:\n  logpipe:\n    external: true\n    name: %s_default\n' "$COMPOSE_PROJECT"
  } >"$(_rt_compose_dir)/colour-$colour.yml"
}

_rt_compose_start() {
  local service="$1" colour="$2" version="$3"
  _rt_compose_overlay "$colour" "$version"
  IMAGE_TAG="$version" _rt_compose "$colour" up -d --no-deps --no-build "$service"
}

_rt_compose_stop() {
  local service="$1" colour="$2"
  _rt_compose "$colour" stop --timeout "$RT_STOP_TIMEOUT" "$service" || return 1
  [[ "$colour" == base ]] || _rt_compose "$colour" rm -f "$service" >/dev/null
}

_rt_compose_running() {
  [[ "$2" == base || -f "$(_rt_compose_dir)/colour-$2.yml" ]] || return 1
  [[ -n "$(_rt_compose "$2" ps --status running -q "$1" 2>/dev/null)" ]]
}

_rt_compose_url() {
  local service="$1" colour="$2" port hostport
  [[ "$service" == producer ]] && port=8000 || port=8001
  hostport="$(_rt_compose "$colour" port "$service" "$port" 2>/dev/null | head -1)"
  [[ -n "$hostport" ]] || { _rt_log "$service ($colour) publishes no port"; return 1; }
  printf 'http://%s\n' "${hostport/0.0.0.0/127.0.0.1}"
}

_rt_compose_front_door() {
  docker compose -p "$COMPOSE_PROJECT-front-door" --project-directory "$(_rt_compose_dir)" \
    -f "$(_rt_compose_dir)/front-door.yml" "$@"
}

_rt_compose_switch_front_door() {
  local colour="$1" dir
  dir="$(_rt_compose_dir)"
  mkdir -p "$dir"
  _rt_front_door_conf "$colour" "producer-$colour:8000" 8080 >"$dir/front-door.conf"
  cat >"$dir/front-door.yml" <<YAML
# Generated by scripts/lib/runtime.sh: the stable ingest address in front of the colours.
services:
  front-door:
    image: $FRONT_DOOR_IMAGE
    ports: ["127.0.0.1:$FRONT_DOOR_PORT:8080"]
    volumes: ["./front-door.conf:/etc/nginx/conf.d/default.conf:ro"]
    networks: [logpipe]
    restart: unless-stopped
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/nginx-health"]
      interval: 10s
      timeout: 5s
      retries: 3
networks:
  logpipe:
    external: true
    name: ${COMPOSE_PROJECT}_default
YAML
  if [[ -n "$(_rt_compose_front_door ps --status running -q front-door 2>/dev/null)" ]]; then
    _rt_compose_front_door exec -T front-door nginx -t -q || return 1
    _rt_compose_front_door exec -T front-door nginx -s reload
  else
    _rt_compose_front_door up -d front-door
  fi
}

_rt_compose_stop_front_door() {
  [[ -f "$(_rt_compose_dir)/front-door.yml" ]] || return 0
  _rt_compose_front_door down
}

_rt_compose_volume() {
  case "$1" in
    broker) echo "${COMPOSE_PROJECT}_kafka-data" ;;
    loki) echo "${COMPOSE_PROJECT}_loki-data" ;;
    prometheus) echo "${COMPOSE_PROJECT}_prometheus-data" ;;
    grafana) echo "${COMPOSE_PROJECT}_grafana-data" ;;
    *) _rt_log "unknown data component '$1'"; return 2 ;;
  esac
}

_rt_compose_service_of() {
  case "$1" in broker) echo kafka ;; *) echo "$1" ;; esac
}

_rt_compose_data_available() {
  local vol
  vol="$(_rt_compose_volume "$1")" || return 2
  docker volume inspect "$vol" >/dev/null 2>&1 || { echo "no volume $vol"; return 1; }
}

_rt_compose_data_stop() {
  _rt_compose base stop --timeout "$RT_STOP_TIMEOUT" "$(_rt_compose_service_of "$1")" && echo 1
}
_rt_compose_data_start() { _rt_compose base start "$(_rt_compose_service_of "$1")"; }

# _rt_run_helper ARGS... — `docker run ARGS` of a one-shot helper (the backup tar), removed
# afterwards; returns its exit status. Not `docker run --rm`: against podman's Docker API the CLI
# loses the status then, and a failed tar would pass for a good one.
_rt_run_helper() {
  local name rc
  name="logpipe-helper-$$-$RANDOM$RANDOM"
  docker run --name "$name" "$@" || true
  rc="$(docker inspect --format '{{.State.ExitCode}}' "$name" 2>/dev/null || echo 125)"
  docker rm -f "$name" >/dev/null 2>&1 || true
  return "$rc"
}

_rt_compose_version() {
  local id
  id="$(_rt_compose "$2" ps -q "$1" 2>/dev/null | head -1)"
  [[ -n "$id" ]] || { echo unknown; return 0; }
  docker inspect --format '{{ index .Config.Labels "logpipe.version" }}' "$id"
}

# _rt_compose_apps_pause — the base deployment's producer and consumer stopped (compose stop) and
# the colours drained, before the broker stops; prints what _rt_compose_apps_resume restarts.
_rt_compose_apps_pause() {
  local s
  for s in producer consumer; do
    _rt_compose_running "$s" base || continue
    printf '%s base -\n' "$s"
    _rt_compose base stop --timeout "$RT_STOP_TIMEOUT" "$s" >&2 || true
  done
  _rt_apps_pause
}

_rt_compose_apps_resume() {
  local s c v rc=0
  while read -r s c v; do
    [[ "$c" == base ]] || continue
    _rt_compose base start "$s" >&2 || rc=1
  done <<<"$1"
  _rt_apps_resume "$(grep -v '^[a-z]* base ' <<<"$1" || true)" || rc=1
  # nginx resolved the colour's producer when it loaded its config; the restarted container
  # has another address, so the front door reloads (and resolves it again).
  if grep -q '^producer [bg]' <<<"$1" \
      && [[ -n "$(_rt_compose_front_door ps --status running -q front-door 2>/dev/null)" ]]; then
    _rt_compose_front_door exec -T front-door nginx -s reload >&2 || rc=1
  fi
  return "$rc"
}

_rt_compose_data_export() {
  local name="$1" out="$2" vol svc rc=0 apps=""
  vol="$(_rt_compose_volume "$name")" || return 2
  svc="$(_rt_compose_service_of "$name")"
  if [[ "$name" == broker ]]; then
    apps="$(_rt_compose_apps_pause)"
    [[ -z "$apps" ]] || _rt_log "paused for the broker backup: $(printf '%s' "$apps" | tr '\n' ';')"
  fi
  if _rt_compose base stop --timeout "$RT_STOP_TIMEOUT" "$svc"; then
    _rt_run_helper -v "$vol:/data:ro" -v "$(dirname "$out"):/backup" "$BACKUP_HELPER_IMAGE" \
      tar -C /data -czf "/backup/$(basename "$out")" . || rc=1
    _rt_compose base start "$svc" || rc=1
  else
    rc=1
  fi
  [[ -z "$apps" ]] || _rt_compose_apps_resume "$apps" || rc=1
  return "$rc"
}

_rt_compose_data_import() {
  local name="$1" in="$2" vol svc rc=0 aside apps=""
  vol="$(_rt_compose_volume "$name")" || return 2
  svc="$(_rt_compose_service_of "$name")"
  aside="$(dirname "$in")/$name.pre-restore.$$.tar.gz"
  if [[ "$name" == broker ]]; then
    apps="$(_rt_compose_apps_pause)"
    [[ -z "$apps" ]] || _rt_log "paused for the broker restore: $(printf '%s' "$apps" | tr '\n' ';')"
  fi
  if ! _rt_compose base stop --timeout "$RT_STOP_TIMEOUT" "$svc"; then
    [[ -z "$apps" ]] || _rt_compose_apps_resume "$apps" || true
    return 1
  fi
  # Keep the current data until the new data is in place.
  if ! _rt_run_helper -v "$vol:/data:ro" -v "$(dirname "$in"):/backup" "$BACKUP_HELPER_IMAGE" \
      tar -C /data -czf "/backup/$(basename "$aside")" .; then
    _rt_compose base start "$svc" || true
    [[ -z "$apps" ]] || _rt_compose_apps_resume "$apps" || true
    return 1
  fi
  if ! _rt_run_helper -v "$vol:/data" -v "$(dirname "$in"):/backup:ro" "$BACKUP_HELPER_IMAGE" \
      sh -c "find /data -mindepth 1 -delete && tar -C /data -xzf /backup/$(basename "$in")"; then
    _rt_log "extracting into $vol failed: putting the previous data back"
    _rt_run_helper -v "$vol:/data" -v "$(dirname "$in"):/backup:ro" "$BACKUP_HELPER_IMAGE" \
      sh -c "find /data -mindepth 1 -delete && tar -C /data -xzf /backup/$(basename "$aside")" || true
    rc=1
  fi
  rm -f "$aside"
  _rt_compose base start "$svc" || rc=1
  [[ -z "$apps" ]] || _rt_compose_apps_resume "$apps" || rc=1
  return "$rc"
}
