#!/usr/bin/env bash
# check-gitlab.sh — runs the quality and test jobs of .gitlab-ci.yml for real, with
# gitlab-ci-local in containers through podman, as a GitLab runner would: each job in its image,
# its services beside it, caches and artifacts passed between jobs. Images that cannot be pulled
# here are stand-ins built on this machine (scripts/lib/containers.sh; the table is printed).
# Everything it starts is stopped and removed on exit, even on failure; the stand-ins' GitLab
# names are taken off again.
set -euo pipefail

readonly SCRIPT_NAME="${0##*/}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT

# The jobs of the quality and test stages, in pipeline order. The MSRV entry of the unit
# matrix is not among them: no Rust toolchain of the MSRV can be had from the registries this
# machine reaches (README, "GitLab CI").
readonly ALL_JOBS=(cargo-tools rustfmt clippy cargo-deny deploy-files pipeline "unit: [1.95]"
  integration e2e script-tests)

usage() {
  cat <<USAGE
Usage: scripts/$SCRIPT_NAME [--no-install] [--jobs LIST] [--help]

Runs GitLab's quality and test jobs (.gitlab-ci.yml) with gitlab-ci-local $GCL_VERSION and
podman, in the order of the pipeline, one at a time (two cores), and fails when any fails:
  ${ALL_JOBS[*]}

Options:
  --no-install   fail instead of installing a missing tool or building a missing image
  --jobs LIST    comma-separated subset of the jobs above (a job's needs must be in the state
                 a former run left, e.g. cargo-tools' artifact)
  -h, --help     show this help

State (caches, artifacts, logs) lives in \$LOGPIPE_CACHE/gitlab; each job's log is kept in
\$LOGPIPE_CACHE/gitlab/logs. Needs root (podman with runc, as ENVIRONMENT.md describes).

Exit status: 0 every job passed, 1 a job failed, 2 bad usage, 3 a tool or image is missing.
USAGE
}

log() { printf '[%s] %s\n' "$SCRIPT_NAME" "$*" >&2; }
err() { printf '[%s] error: %s\n' "$SCRIPT_NAME" "$*" >&2; }

# shellcheck source=scripts/lib/containers.sh
source "$ROOT/scripts/lib/containers.sh"

readonly GCL_VERSION="4.56.0"
readonly GITLAB_DIR="$LOGPIPE_CACHE/gitlab"
TAGGED=0

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  local rc=$?
  # gitlab-ci-local --cleanup removes what each job created. A job killed mid-way leaves its
  # container (a random name) on volumes named gcl-JOB-ID-build and -tmp: those go; the cache
  # volumes (--mount-cache) stay for the next run.
  local id
  for id in $(podman ps -a -q); do
    podman inspect --format '{{range .Mounts}}{{.Name}} {{end}}' "$id" 2>/dev/null \
      | grep -qE '(^| )gcl-[^ ]*-(build|tmp)( |$)' && podman rm -f -t 0 "$id" >/dev/null 2>&1
  done
  podman volume ls --format '{{.Name}}' | grep -E '^gcl-.*-(build|tmp)$' \
    | xargs -r podman volume rm -f >/dev/null 2>&1 || true
  [[ "$TAGGED" == 0 ]] || gitlab_standin_tags remove
  exit "$rc"
}

main() {
  local install=1 jobs=("${ALL_JOBS[@]}") list="" job
  while [[ $# -gt 0 ]]; do
    case "$1" in
      -h|--help) usage; exit 0 ;;
      --no-install) install=0 ;;
      --jobs) [[ -n "${2:-}" ]] || { err "--jobs needs a list"; exit 2; }; list="$2"; shift ;;
      *) err "unknown argument: $1"; usage >&2; exit 2 ;;
    esac
    shift
  done
  if [[ -n "$list" ]]; then
    IFS=',' read -r -a jobs <<<"$list"
    for job in "${jobs[@]}"; do
      [[ " ${ALL_JOBS[*]} " == *" $job "* || "$job" == "unit: [1.95]" ]] \
        || { err "not a quality or test job run here: $job"; exit 2; }
    done
  fi
  [[ "$(id -u)" == 0 ]] || { err "needs root (rootful podman with runc)"; exit 3; }
  cd "$ROOT"
  containers_env
  local t0=$SECONDS
  if [[ "$install" == 1 ]]; then
    ensure_container_tools || exit 3
    ensure_gitlab_ci_local "$GCL_VERSION" || exit 3
    ensure_base_images || exit 3
    log "the release testkit binary (the Loki stand-in)"
    cargo build --release --locked -p logpipe-testkit --bin testkit
    ensure_standin_images || exit 3
    ensure_gitlab_standins || exit 3
  fi
  local gcl="$LOGPIPE_CACHE/node/node_modules/.bin/gitlab-ci-local"
  [[ -x "$gcl" ]] || { err "gitlab-ci-local is missing (run without --no-install)"; exit 3; }
  command -v rsync >/dev/null 2>&1 || { err "rsync is missing (gitlab-ci-local needs it)"; exit 3; }
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  gitlab_standin_tags add || { err "cannot tag the stand-ins"; exit 3; }
  TAGGED=1
  print_standins >&2
  log "set-up took $((SECONDS - t0))s"

  mkdir -p "$GITLAB_DIR/home" "$GITLAB_DIR/logs"
  local rc=0 failed=() start status
  for job in "${jobs[@]}"; do
    start=$SECONDS
    log "== $job"
    status=0
    # A branch pipeline on main, as GitLab would run it on a push; the project is this
    # checkout (gitlab-ci-local copies its git-tracked and untracked files into the job).
    # Artifacts stay in the state folder, where the jobs that need them get them, and are not
    # copied into the checkout (where the next job would find them as untracked files).
    "$gcl" --state-dir "$(realpath --relative-to=. "$GITLAB_DIR/state")" --home "$GITLAB_DIR/home" \
      --container-executable podman --pull-policy if-not-present --mount-cache --cleanup \
      --no-artifacts-to-source \
      --no-color --timestamps --concurrency 1 \
      --variable CI_PIPELINE_SOURCE=push --variable CI_COMMIT_BRANCH=main \
      "$job" >"$GITLAB_DIR/logs/${job//[^a-z0-9.-]/_}.log" 2>&1 || status=$?
    grep -E '^ *(PASS|FAIL|WARN)|finished in|exited with|FAIL ' "$GITLAB_DIR/logs/${job//[^a-z0-9.-]/_}.log" | tail -3 >&2 || true
    if ((status == 0)); then
      log "ok: $job in $((SECONDS - start))s"
    else
      tail -40 "$GITLAB_DIR/logs/${job//[^a-z0-9.-]/_}.log" >&2
      err "FAILED: $job (exit $status) after $((SECONDS - start))s; log: $GITLAB_DIR/logs/${job//[^a-z0-9.-]/_}.log"
      failed+=("$job")
      rc=1
    fi
  done
  if ((rc != 0)); then
    err "failed jobs: ${failed[*]}"
  else
    log "every job passed: ${jobs[*]}"
  fi
  return "$rc"
}

main "$@"
