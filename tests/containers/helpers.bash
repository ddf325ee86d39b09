# shellcheck shell=bash
# helpers.bash — shared by the container tests (tests/containers/*.bats), which
# scripts/check-containers.sh runs with podman's Docker-compatible API on DOCKER_HOST, the images
# built (logpipe-producer:$LOGPIPE_IMAGE_TAG, logpipe-consumer:…, the stand-ins) and the
# health-check ticker running. Everything here goes through the Docker CLI and the real Docker
# Compose CLI, as a user's commands would.

bats_require_minimum_version 1.5.0

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export ROOT
# shellcheck source=scripts/lib/containers.sh
source "$ROOT/scripts/lib/containers.sh"
containers_env

# Names of everything a run creates carry its id, so a run cleans up only its own.
: "${LOGPIPE_CT_RUN:=ct$$}" "${LOGPIPE_IMAGE_TAG:=test}"
RUN_ID="$LOGPIPE_CT_RUN"
export RUN_ID LOGPIPE_CT_RUN
PRODUCER_IMAGE_REF="logpipe-producer:$LOGPIPE_IMAGE_TAG"
CONSUMER_IMAGE_REF="logpipe-consumer:$LOGPIPE_IMAGE_TAG"
export LOGPIPE_IMAGE_TAG PRODUCER_IMAGE_REF CONSUMER_IMAGE_REF

# require_engine — fails (never skips) when no container engine answers on DOCKER_HOST.
require_engine() {
  if [[ -z "${DOCKER_HOST:-}" ]] || ! docker version >/dev/null 2>&1; then
    echo "no container engine on DOCKER_HOST='${DOCKER_HOST:-}': run scripts/check-containers.sh" >&2
    return 1
  fi
  local image
  for image in "$PRODUCER_IMAGE_REF" "$CONSUMER_IMAGE_REF" "$CT_KAFKA_IMAGE" "$CT_LOKI_IMAGE"; do
    docker image inspect "$image" >/dev/null 2>&1 || { echo "image $image is missing" >&2; return 1; }
  done
}

# port_free PORT — nothing listens on 127.0.0.1:PORT.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_ports N — N free loopback ports, one per line (a random base below the ephemeral range;
# each port is checked).
free_ports() {
  local n="$1" base p ok
  for _ in $(seq 1 50); do
    base=$((20000 + (RANDOM % 120) * 100))
    ok=1
    for ((p = 0; p < n; p++)); do port_free $((base + p)) || { ok=0; break; }; done
    if [[ "$ok" == 1 ]]; then seq "$base" $((base + n - 1)); return 0; fi
  done
  echo "no $n free ports found" >&2
  return 1
}

# wait_for SECONDS CMD... — runs CMD every 0.5 s until it succeeds; fails (printing CMD's last
# output) after SECONDS.
wait_for() {
  local secs="$1" deadline out; shift
  deadline=$((SECONDS + secs))
  until out="$("$@" 2>&1)"; do
    if ((SECONDS >= deadline)); then
      printf 'not within %ss: %s\n%s\n' "$secs" "$*" "$out" >&2
      return 1
    fi
    sleep 0.5
  done
}

# http_code URL — the HTTP status of GET URL (000 when nothing answers).
http_code() { curl -s -o /dev/null -m 5 -w '%{http_code}' "$1" || true; }

# http_is URL CODE — GET URL answers CODE (for wait_for, which runs it again each time).
http_is() { [[ "$(http_code "$1")" == "$2" ]]; }

# health NAME — the container's health status (starting, healthy, unhealthy).
health() { docker inspect --format '{{.State.Health.Status}}' "$1"; }

# is_health NAME STATUS — succeeds when NAME's health is STATUS.
is_health() { [[ "$(health "$1")" == "$2" ]]; }

# host_uids NAME — the real, effective, saved and filesystem uids of NAME's main process as the
# host's kernel sees them (/proc/PID/status).
host_uids() {
  local pid
  pid="$(docker inspect --format '{{.State.Pid}}' "$1")"
  awk '/^Uid:/ { print $2, $3, $4, $5 }' "/proc/$pid/status"
}

# post_batch URL SERVICE PREFIX N — posts N records whose messages are PREFIX-1 … PREFIX-N (unique
# ids), appends the sent records (NDJSON) to the file $SENT and prints the producer's answer.
post_batch() {
  local url="$1" service="$2" prefix="$3" n="$4" ts body i
  ts="$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)"
  body=""
  for ((i = 1; i <= n; i++)); do
    body+="{\"timestamp\":\"$ts\",\"level\":\"info\",\"service\":\"$service\",\"message\":\"$prefix-$i\",\"load_id\":\"$prefix-$i\"}"$'\n'
  done
  printf '%s' "$body" >>"$SENT"
  curl -sS -m 30 -H 'Content-Type: application/x-ndjson' --data-binary "$body" "$url/v1/logs"
}

# run_once ARGS... — `docker run ARGS` in the foreground, then removes the container; returns
# docker run's status (the container's, or 125-127 when it could not run). Not
# `docker run --rm`: through podman 4.3's Docker API the CLI then always returns 0.
run_once() {
  local name="logpipe-$RUN_ID-once-$RANDOM$RANDOM" rc=0
  docker run --name "$name" "$@" || rc=$?
  docker rm -f "$name" >/dev/null 2>&1 || true
  return "$rc"
}

# topic_dump NETWORK TOPIC — every message value of TOPIC, one per line, read by `testkit topic`
# from a container on NETWORK (the broker advertises itself by its name there).
topic_dump() {
  run_once --network "$1" --entrypoint testkit "$CT_LOKI_IMAGE" topic --bootstrap kafka:29092 "$2"
}

# records ARGS — scripts/lib/records.py: per-record identity checks.
records() { python3 "$ROOT/scripts/lib/records.py" "$@"; }

# compose_left PROJECT — what of PROJECT still exists (containers, networks, volumes), asked of
# the engine by the compose project label; empty when nothing.
compose_left() {
  local label="label=com.docker.compose.project=$1"
  docker ps -a --filter "$label" --format 'container {{.Names}}'
  docker network ls --filter "$label" --format 'network {{.Name}}'
  docker volume ls --filter "$label" --format 'volume {{.Name}}'
}
