#!/usr/bin/env bash
# test.sh — the project's one test entry point (README "Test"; .ci/run calls it).
#
# On a fresh Debian 12 machine it installs what is missing (idempotently: anything present is
# skipped), then runs, in order: cargo fmt --check, cargo clippy -D warnings, cargo deny, every
# test suite (unit, property, integration against real tansu / Prometheus processes, e2e), the
# e2e suite again against a Kafka and a Loki it does not own, the file checks, the ops scripts'
# tests, the container stage. Each step installs what it needs, so a GitLab job that runs one
# step (.gitlab-ci.yml) runs what runs here. Everything it or the tests start is stopped on
# exit, even on failure.
set -euo pipefail

readonly SCRIPT_NAME="${0##*/}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT

usage() {
  cat <<USAGE
Usage: scripts/$SCRIPT_NAME [--no-install] [--only STEP] [--help]

Runs every check of the project: formatting, lints, all test suites. Without --only: fmt,
clippy, deny, tests, e2e-external, deploy, ci, scripts, containers, bench-check.

Options:
  --no-install   do not install missing tools (fail instead)
  --only STEP    run one step:
                   install       every tool of the default run
                   cargo-tools   the cargo-installed tools (nextest, cargo-deny, tansu,
                                 gitlab-clippy): GitLab's cargo-tools job
                   fmt clippy deny
                   tests         every test suite: unit + integration + e2e, doc tests
                   unit          the unit tests (libraries and binaries) and doc tests
                   integration   the test targets of every package but the e2e suite
                   e2e           the e2e suite (against E2E_KAFKA_BOOTSTRAP_SERVERS and
                                 E2E_LOKI_URL when set: GitLab's e2e job)
                   e2e-external  the e2e suite against a tansu and a receiver started apart
                                 (scripts/e2e-external.sh)
                   deploy ci scripts containers bench-check
                   gitlab        GitLab's quality and test jobs, run by gitlab-ci-local in
                                 containers (scripts/check-gitlab.sh; not in the default run)
  -h, --help     show this help

Environment:
  LOGPIPE_CACHE        cache folder for tools and builds (default: \$HOME/.cache/logpipe)
  LOGPIPE_TOOLS        where cargo-installed tools go (default: \$LOGPIPE_CACHE/tools)
  CARGO_TARGET_DIR     cargo build folder (default: \$LOGPIPE_CACHE/target)
  TANSU_VERSION        tansu broker version to install (default: 0.6.0)
  CLIPPY_CODE_QUALITY  with the clippy step: also write GitLab's code-quality report there

Exit status: 0 when every step passed, 1 when a step failed, 2 on bad usage.
USAGE
}

log() { printf '[%s] %s\n' "$SCRIPT_NAME" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# shellcheck source=scripts/lib/tools.sh
source "$ROOT/scripts/lib/tools.sh"
# shellcheck source=scripts/lib/deploy-tools.sh
source "$ROOT/scripts/lib/deploy-tools.sh"

# need FUNCTION — runs an install function of scripts/lib/tools.sh unless --no-install.
need() {
  [[ "$INSTALL" == 1 ]] || return 0
  "$@" || die "cannot install what this step needs ($1)"
}

step_fmt() {
  log "cargo fmt --check"
  cargo fmt --all -- --check
}

step_clippy() {
  log "cargo clippy --all-targets -D warnings"
  need ensure_build_tools
  if [[ -z "${CLIPPY_CODE_QUALITY:-}" ]]; then
    cargo clippy --workspace --all-targets --locked -- -D warnings
    return
  fi
  need ensure_gitlab_clippy
  local status=0
  cargo clippy --workspace --all-targets --locked --message-format=json -- -D warnings \
    >"$CLIPPY_CODE_QUALITY.json" || status=$?
  gitlab-clippy <"$CLIPPY_CODE_QUALITY.json" >"$CLIPPY_CODE_QUALITY"
  rm -f "$CLIPPY_CODE_QUALITY.json"
  log "code-quality report: $CLIPPY_CODE_QUALITY"
  if ((status != 0)); then
    cargo clippy --workspace --all-targets --locked -- -D warnings || true
    return "$status"
  fi
}

# The nextest filters of the three parts of the test suites (tests = all three).
readonly FILTER_UNIT='kind(lib) | kind(bin)'
readonly FILTER_E2E='package(logpipe-e2e) & kind(test)'
readonly FILTER_INTEGRATION='not (kind(lib) | kind(bin)) & not package(logpipe-e2e)'

# nextest FILTER ARGS... — the suites matching FILTER, with the ci profile (JUnit report).
nextest() {
  local filter="$1"
  shift
  cargo nextest run --workspace --locked --no-fail-fast --profile ci -E "$filter" "$@"
}

step_tests() {
  log "test suites (nextest: unit, integration, e2e) and doc tests"
  need ensure_test_tools
  nextest "all()"
  cargo test --workspace --locked --doc
}

step_unit() {
  log "unit tests (libraries and binaries) and doc tests"
  need ensure_test_tools
  nextest "$FILTER_UNIT" --lib --bins
  cargo test --workspace --locked --doc
}

step_integration() {
  log "integration tests of every package but the e2e suite"
  need ensure_test_tools
  nextest "$FILTER_INTEGRATION"
}

step_e2e() {
  log "e2e suite${E2E_KAFKA_BOOTSTRAP_SERVERS:+ (Kafka: $E2E_KAFKA_BOOTSTRAP_SERVERS)}${E2E_LOKI_URL:+ (Loki: $E2E_LOKI_URL)}"
  need ensure_test_tools
  # The suite runs the services' binaries, which only building the workspace's bins makes.
  cargo build --workspace --locked --bins
  cargo nextest run --locked --no-fail-fast --profile ci -p logpipe-e2e -E "$FILTER_E2E"
}

step_e2e_external() {
  log "e2e suite against a tansu and a receiver it does not own (external mode)"
  need ensure_test_tools
  "$ROOT/scripts/e2e-external.sh"
}

step_cargo_tools() {
  log "cargo-installed tools into $LOGPIPE_TOOLS: nextest, cargo-deny, tansu, gitlab-clippy"
  need ensure_build_tools
  ensure_nextest && ensure_cargo_deny && ensure_tansu && ensure_gitlab_clippy
}

step_deploy() {
  log "deployment artefacts: compose, Prometheus rules, dashboards, Loki, Kubernetes, Dockerfiles"
  need ensure_kubectl
  need ensure_deploy_tools
  deploy_tools_env
  "$ROOT/scripts/check-deploy.sh" --no-install
}

step_scripts() {
  log "ops scripts: shellcheck and the bats suites (against the local runtime)"
  need ensure_script_tools
  need ensure_build_tools
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
  log "supply chain: cargo deny (licences, bans, sources; advisories: scripts/security-scan.sh)"
  need ensure_cargo_deny
  # cargo deny reads the whole dependency graph, every platform's crates included (windows-sys
  # and the like), while a build fetches only this host's: fetch them all first, or a new
  # machine's cache lacks some and --offline fails (it did once, after a 41-minute run).
  cargo fetch --locked
  cargo deny --offline check bans licenses sources
}

step_bench_check() {
  log "benchmarks compile and run once (no timing asserted)"
  need ensure_build_tools
  cargo bench --workspace --locked --no-run
}

step_gitlab() {
  log "GitLab's quality and test jobs, run by gitlab-ci-local in containers (podman)"
  local flags=()
  [[ "$INSTALL" == 1 ]] || flags+=(--no-install)
  "$ROOT/scripts/check-gitlab.sh" "${flags[@]}"
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
  case "$only" in
    "") need ensure_tools; need ensure_deploy_tools
        step_fmt; step_clippy; step_deny; step_tests; step_e2e_external; step_deploy
        step_ci_pipeline; step_scripts; step_containers; step_bench_check; check_no_leftovers ;;
    install) need ensure_tools; need ensure_deploy_tools ;;
    cargo-tools) step_cargo_tools ;;
    fmt) step_fmt ;;
    clippy) step_clippy ;;
    deny) step_deny ;;
    tests) step_tests; check_no_leftovers ;;
    unit) step_unit; check_no_leftovers ;;
    integration) step_integration; check_no_leftovers ;;
    e2e) step_e2e; check_no_leftovers ;;
    e2e-external) step_e2e_external; check_no_leftovers ;;
    deploy) step_deploy ;;
    ci) step_ci_pipeline ;;
    scripts) step_scripts ;;
    containers) step_containers ;;
    bench-check) step_bench_check ;;
    gitlab) step_gitlab ;;
    *) log "unknown step: $only"; exit 2 ;;
  esac
  log "all checks passed"
}

main "$@"
