#!/usr/bin/env bash
# test.sh — the project's one test entry point (README "Test"; .ci/run calls it).
#
# On a fresh Debian 12 machine it installs what is missing (idempotently: anything present is
# skipped), then runs, in order: cargo fmt --check, cargo clippy -D warnings, every test suite
# (unit, property, integration against real tansu / Prometheus processes), the file checks.
# Everything it or the tests start is stopped on exit, even on failure.
set -euo pipefail

readonly SCRIPT_NAME="${0##*/}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT

usage() {
  cat <<USAGE
Usage: scripts/$SCRIPT_NAME [--no-install] [--only STEP] [--help]

Runs every check of the project: formatting, lints, all test suites.

Options:
  --no-install   do not install missing tools (fail instead)
  --only STEP    run one step: install, fmt, clippy, tests, deploy, ci, scripts, containers,
                 deny, bench-check
  -h, --help     show this help

Environment:
  LOGPIPE_CACHE     cache folder for tools and builds (default: \$HOME/.cache/logpipe)
  CARGO_TARGET_DIR  cargo build folder (default: \$LOGPIPE_CACHE/target)
  TANSU_VERSION     tansu broker version to install (default: 0.6.0)

Exit status: 0 when every step passed, 1 when a step failed, 2 on bad usage.
USAGE
}

log() { printf '[%s] %s\n' "$SCRIPT_NAME" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# shellcheck source=scripts/lib/tools.sh
source "$ROOT/scripts/lib/tools.sh"
# shellcheck source=scripts/lib/deploy-tools.sh
source "$ROOT/scripts/lib/deploy-tools.sh"

step_fmt() {
  log "cargo fmt --check"
  cargo fmt --all -- --check
}

step_clippy() {
  log "cargo clippy --all-targets -D warnings"
  cargo clippy --workspace --all-targets --locked -- -D warnings
}

step_tests() {
  log "test suites (nextest) and doc tests"
  if command -v cargo-nextest >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast --profile ci
  else
    cargo test --workspace --locked --no-fail-fast
  fi
  cargo test --workspace --locked --doc
}

step_deploy() {
  log "deployment artefacts: compose, Prometheus rules, dashboards, Loki, Kubernetes, Dockerfiles"
  deploy_tools_env
  "$ROOT/scripts/check-deploy.sh" --no-install
}

step_scripts() {
  log "ops scripts: shellcheck and the bats suites (against the local runtime)"
  cargo build --release --locked -p logpipe-producer -p logpipe-consumer -p logpipe-testkit \
    --bins --example raw_consume
  LOGPIPE_SKIP_BUILD=1 "$ROOT/scripts/check-scripts.sh"
}

step_containers() {
  log "containers: the images from ./Dockerfile, compose stacks with stand-ins, ops scripts on"
  log "RUNTIME=compose and k6, on podman through the Docker and Docker Compose CLIs"
  local flags=()
  [[ "$INSTALL" == 1 ]] || flags+=(--no-install)
  "$ROOT/scripts/check-containers.sh" "${flags[@]}"
}

step_ci_pipeline() {
  log "GitLab pipeline: schema, gitlab-ci-local expansion, invariants"
  local flags=()
  [[ "$INSTALL" == 1 ]] || flags+=(--no-install)
  "$ROOT/scripts/check-ci.sh" "${flags[@]}"
}

step_deny() {
  log "supply chain: cargo deny (licences, bans, sources; advisories need the network)"
  # cargo deny reads the whole dependency graph, every platform's crates included (windows-sys
  # and the like), while a build fetches only this host's: fetch them all first, or a new
  # machine's cache lacks some and --offline fails (it did once, after a 41-minute run).
  cargo fetch --locked
  cargo deny --offline check bans licenses sources
}

step_bench_check() {
  log "benchmarks compile and run once (no timing asserted)"
  cargo bench --workspace --locked --no-run
}

# This run's id: every process it starts inherits it in its environment, so the checks and the
# cleanup below touch this run's processes only, not another run's on the same machine.
LOGPIPE_TEST_RUN="${LOGPIPE_TEST_RUN:-$$-$(date +%s%N)}"
export LOGPIPE_TEST_RUN

# The pids of this run's harness processes (tansu, Prometheus, services under test: they carry
# the `logpipe-test-` marker or are tansu) that are still alive.
own_leftovers() {
  local pid
  for pid in $(pgrep -f "$LOGPIPE_TOOLS/bin/tansu|logpipe-test-" || true); do
    [[ "$pid" == "$$" ]] && continue
    if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "LOGPIPE_TEST_RUN=$LOGPIPE_TEST_RUN"; then
      echo "$pid"
    fi
  done
}

# Fails when a process started by the tests outlived them.
check_no_leftovers() {
  local left pid
  left="$(own_leftovers)"
  if [[ -n "$left" ]]; then
    log "processes left behind by the tests:"
    for pid in $left; do ps -o pid=,args= -p "$pid" >&2 || true; done
    return 1
  fi
}

cleanup() {
  local rc=$? pid
  # None of this run's harness processes may outlive it, even when a test was killed mid-way.
  for pid in $(own_leftovers); do kill -KILL "$pid" 2>/dev/null || true; done
  exit "$rc"
}

main() {
  local only=""
  INSTALL=1
  while [[ $# -gt 0 ]]; do
    case "$1" in
      -h|--help) usage; exit 0 ;;
      --no-install) INSTALL=0 ;;
      --only) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; only="$2"; shift ;;
      *) log "unknown argument: $1"; usage >&2; exit 2 ;;
    esac
    shift
  done
  trap cleanup EXIT
  cd "$ROOT"
  tools_env
  if [[ "$INSTALL" == 1 ]]; then
    ensure_tools
    ensure_deploy_tools
  fi
  case "$only" in
    "") step_fmt; step_clippy; step_deny; step_tests; step_deploy; step_ci_pipeline
        step_scripts; step_containers; step_bench_check; check_no_leftovers ;;
    install) ensure_tools; ensure_deploy_tools ;;
    deploy) step_deploy ;;
    scripts) step_scripts ;;
    containers) step_containers ;;
    ci) step_ci_pipeline ;;
    fmt) step_fmt ;;
    clippy) step_clippy ;;
    tests) step_tests; check_no_leftovers ;;
    deny) step_deny ;;
    bench-check) step_bench_check ;;
    *) log "unknown step: $only"; exit 2 ;;
  esac
  log "all checks passed"
}

main "$@"
