#!/usr/bin/env bash
# check-ci.sh — validates the GitLab pipeline (.gitlab-ci.yml) offline, without running a job:
#   schema      check-jsonschema against GitLab's CI schema (vendor.gitlab-ci)
#   expand      gitlab-ci-local --list and --preview parse it and expand extends, !reference,
#               anchors and includes; --list-json evaluates the rules per scenario (the only
#               rule evaluation: ci_invariants.py reads its results)
#   invariants  scripts/lib/ci_invariants.py over the expanded pipeline (pinned images, manual
#               production deploy on main only, needs graph, scripts and artifacts, the test
#               suites run through scripts/test.sh, ...)
#   fixtures    every invariant can fail: each tests/ci/fixtures/pipelines/*.yml goes through the
#               same expansion and checker and must report exactly the codes its `# expect:` names
# Installs missing validators into $LOGPIPE_CACHE (venv: check-jsonschema, PyYAML; node:
# gitlab-ci-local). Nothing is written inside the repository.
set -euo pipefail

readonly SCRIPT_NAME="${0##*/}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
: "${LOGPIPE_CACHE:=$HOME/.cache/logpipe}"
readonly VENV="${LOGPIPE_VENV:-$LOGPIPE_CACHE/venv}"
readonly NODE_PREFIX="${LOGPIPE_NODE:-$LOGPIPE_CACHE/node}"
readonly GCL_VERSION="4.56.0"
readonly CHECK_JSONSCHEMA_VERSION="0.39.0" PYYAML_VERSION="6.0.4"
readonly GCL="$NODE_PREFIX/node_modules/.bin/gitlab-ci-local"
readonly FIXTURES="$ROOT/tests/ci/fixtures"

# Rule-evaluation scenarios for gitlab-ci-local --list-json: LABEL and its --variable flags. A
# label starting with "main" is a main-branch pipeline (ci_invariants.py --gcl-scenario).
readonly SCENARIOS=(
  "main-push|CI_PIPELINE_SOURCE=push CI_COMMIT_BRANCH=main"
  "main-web|CI_PIPELINE_SOURCE=web CI_COMMIT_BRANCH=main"
  "develop-push|CI_PIPELINE_SOURCE=push CI_COMMIT_BRANCH=develop"
  "feature-push|CI_PIPELINE_SOURCE=push CI_COMMIT_BRANCH=feature/x"
  "merge-request|CI_PIPELINE_SOURCE=merge_request_event CI_COMMIT_BRANCH= CI_MERGE_REQUEST_TARGET_BRANCH_NAME=main"
  "schedule|CI_PIPELINE_SOURCE=schedule CI_COMMIT_BRANCH=main"
  "tag|CI_PIPELINE_SOURCE=push CI_COMMIT_BRANCH= CI_COMMIT_TAG=v1.0.0"
)

WORK_DIR=""
FAILED=()

# shellcheck source=scripts/lib/tools.sh
source "$ROOT/scripts/lib/tools.sh"

usage() {
  cat <<USAGE
Usage: scripts/$SCRIPT_NAME [--no-install] [--help]

Validates .gitlab-ci.yml offline: GitLab schema (check-jsonschema), expansion and rule
evaluation (gitlab-ci-local $GCL_VERSION --list, --preview, --list-json; no job is run, no image
is pulled), the pipeline invariants (scripts/lib/ci_invariants.py) and the checker's own
fixtures (tests/ci/fixtures). Every check runs; the failures are listed at the end.

Options:
  --no-install   do not install missing validators (fail instead)
  -h, --help     show this help

Environment: LOGPIPE_CACHE (default \$HOME/.cache/logpipe) holds the venv and node modules.

Exit status: 0 every check passed, 1 a check failed, 2 bad usage or a validator is missing.
USAGE
}

log() { printf '[%s] %s\n' "$SCRIPT_NAME" "$*" >&2; }
err() { printf '[%s] error: %s\n' "$SCRIPT_NAME" "$*" >&2; }

cleanup() { [[ -n "$WORK_DIR" ]] && rm -rf "$WORK_DIR"; return 0; }

have_python_tools() {
  [[ -x "$VENV/bin/check-jsonschema" ]] && "$VENV/bin/python" -c 'import yaml' 2>/dev/null
}

have_gcl() {
  local version
  version="$(node -p "require('$NODE_PREFIX/node_modules/gitlab-ci-local/package.json').version" \
    2>/dev/null || true)"
  [[ "$version" == "$GCL_VERSION" && -x "$GCL" ]]
}

ensure_tools() {
  local install="$1"
  # gitlab-ci-local runs on the Node it was built for (20 or newer; Debian 12 has 18).
  ensure_node20 || return 2
  if ! have_python_tools; then
    [[ "$install" == 1 ]] || { err "check-jsonschema / PyYAML missing in $VENV"; return 2; }
    ensure_pip "check-jsonschema==$CHECK_JSONSCHEMA_VERSION" "PyYAML==$PYYAML_VERSION" || return 2
  fi
  if ! have_gcl; then
    [[ "$install" == 1 ]] || { err "gitlab-ci-local $GCL_VERSION missing in $NODE_PREFIX"; return 2; }
    ensure_gitlab_ci_local "$GCL_VERSION" || return 2
  fi
}

# gcl DIR ARGS... — gitlab-ci-local on DIR's .gitlab-ci.yml, its state and home kept in WORK_DIR.
gcl() {
  local dir="$1" state
  shift
  state="$(mktemp -d "$WORK_DIR/gcl-state-XXXXXX")"
  # Run from DIR (gitlab-ci-local wants --cwd relative); --state-dir is relative to it.
  (cd "$dir" && timeout 120 "$GCL" --state-dir "$(realpath --relative-to=. "$state")" \
    --home "$WORK_DIR/gcl-home" --no-color "$@")
}

# expand_pipeline DIR OUT_PREFIX [--fixture] [--no-scenarios] — writes OUT_PREFIX.list (not for
# fixtures), .yml (the preview) and one .SCENARIO.json per scenario; prints the --gcl-scenario
# arguments for ci_invariants.py. Fixtures skip gitlab-ci-local's schema validation (check_schema
# covers the real file) and, unless they concern rules (production-rules, needs-absent), the
# scenarios: each gitlab-ci-local call costs about a second.
expand_pipeline() {
  local dir="$1" out="$2" fixture=0 scenarios=1 entry label flags var args=() opts=()
  shift 2
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --fixture) fixture=1; opts=(--json-schema-validation=false) ;;
      --no-scenarios) scenarios=0 ;;
    esac
    shift
  done
  : >"$out.log"
  if [[ "$fixture" == 0 ]]; then
    gcl "$dir" --list >"$out.list" 2>>"$out.log" || { cat "$out.log" >&2; return 1; }
  fi
  gcl "$dir" "${opts[@]}" --preview >"$out.yml" 2>>"$out.log" || { cat "$out.log" >&2; return 1; }
  grep -q '^stages:' "$out.yml" || { err "gitlab-ci-local --preview printed no pipeline"; return 1; }
  [[ "$scenarios" == 1 ]] || return 0
  for entry in "${SCENARIOS[@]}"; do
    label="${entry%%|*}"
    flags=()
    read -r -a args <<<"${entry#*|}"
    for var in "${args[@]}"; do flags+=(--variable "$var"); done
    gcl "$dir" "${opts[@]}" --list-json "${flags[@]}" >"$out.$label.json" 2>>"$out.log" \
      || { cat "$out.log" >&2; return 1; }
    printf -- '--gcl-scenario\n%s=%s\n' "$label" "$out.$label.json"
  done
}

# The image-pin binary: the project's one rule for pinned images (tests/image-pin/src/lib.rs),
# which the Dockerfile check applies too.
IMAGE_PIN=""
build_image_pin() {
  tools_env
  log "building the image-pin rule (cargo build -p logpipe-image-pin)"
  cargo build --quiet --locked -p logpipe-image-pin --bin image-pin || return 1
  IMAGE_PIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/image-pin"
  [[ -x "$IMAGE_PIN" ]] || { err "cargo built no $IMAGE_PIN"; return 1; }
}

invariants() {
  "$VENV/bin/python" "$ROOT/scripts/lib/ci_invariants.py" --image-pin "$IMAGE_PIN" "$@"
}

check_schema() {
  "$VENV/bin/check-jsonschema" --builtin-schema vendor.gitlab-ci --data-transform gitlab-ci \
    "$ROOT/.gitlab-ci.yml"
}

check_expand() {
  expand_pipeline "$ROOT" "$WORK_DIR/pipeline" >"$WORK_DIR/pipeline.scenarios" || return 1
  log "gitlab-ci-local lists $(($(wc -l <"$WORK_DIR/pipeline.list") - 1)) jobs (for main):"
  cat "$WORK_DIR/pipeline.list"
}

check_invariants() {
  [[ -s "$WORK_DIR/pipeline.yml" ]] || { err "no expanded pipeline (the expand check failed)"; return 1; }
  local scenario_args=()
  mapfile -t scenario_args <"$WORK_DIR/pipeline.scenarios"
  invariants --root "$ROOT" "${scenario_args[@]}" "$WORK_DIR/pipeline.yml"
}

# Each fixture must make the checker report exactly the codes of its `# expect:` line.
check_fixtures() {
  local fixture name dir expected got rc failed=0 extra=() scenario_args=()
  for fixture in "$FIXTURES"/pipelines/*.yml; do
    name="$(basename "$fixture" .yml)"
    dir="$WORK_DIR/fixture-$name"
    mkdir -p "$dir"
    cp "$fixture" "$dir/.gitlab-ci.yml"
    cp "$FIXTURES/base.yml" "$dir/base.yml"
    expected="$(sed -n 's/^# expect: *//p' "$fixture" | head -1)"
    [[ "$expected" == none ]] && expected=""
    extra=(--fixture)
    [[ -z "$expected" || "$expected" == *production-rules* || "$expected" == *needs-absent* ]] \
      || extra+=(--no-scenarios)
    if ! expand_pipeline "$dir" "$dir/out" "${extra[@]}" >"$dir/scenarios"; then
      err "fixture $name: gitlab-ci-local could not expand it"
      failed=1
      continue
    fi
    mapfile -t scenario_args <"$dir/scenarios"
    rc=0
    invariants --root "$FIXTURES/root" "${scenario_args[@]}" "$dir/out.yml" >"$dir/report" 2>&1 \
      || rc=$?
    got="$(sed -n 's/^\[\([a-z-]*\)\].*/\1/p' "$dir/report" | sort -u | xargs)"
    expected="$(printf '%s\n' "$expected" | tr ' ' '\n' | sed '/^$/d' | sort -u | xargs)"
    if [[ "$got" != "$expected" || ( -z "$expected" && "$rc" != 0 ) \
        || ( -n "$expected" && "$rc" != 1 ) ]]; then
      err "fixture $name: expected [${expected:-none}], got [${got:-none}] (exit $rc):"
      cat "$dir/report" >&2
      failed=1
    else
      log "fixture $name: [${got:-none}] as expected"
    fi
  done
  return "$failed"
}

run_check() {
  local name="$1"
  log "== $name"
  if "$2"; then
    log "ok: $name"
  else
    err "FAILED: $name"
    FAILED+=("$name")
  fi
}

main() {
  local install=1
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --no-install) install=0 ;;
      -h|--help) usage; return 0 ;;
      *) err "unknown argument: $1 (see --help)"; return 2 ;;
    esac
    shift
  done
  ensure_tools "$install" || return 2
  build_image_pin || return 2
  WORK_DIR="$(mktemp -d -t logpipe-check-ci-XXXXXX)"
  trap cleanup EXIT

  run_check schema check_schema
  run_check expand check_expand
  run_check invariants check_invariants
  run_check fixtures check_fixtures

  if [[ ${#FAILED[@]} -gt 0 ]]; then
    err "failed checks: ${FAILED[*]}"
    return 1
  fi
  log "the GitLab pipeline passed every check"
}

main "$@"
