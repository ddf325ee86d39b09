# shellcheck shell=bash
# runtime-local.sh — the "local" runtime of scripts/lib/runtime.sh: processes on this machine, beside
# what scripts/run-local.sh started (pids, logs and versions in $LOGPIPE_RUN_DIR, the front door a local
# nginx run as a user process). Sourced by runtime.sh only; every function here is _rt_local_*
# (or ensure_nginx), called through the rt_* verbs.

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
