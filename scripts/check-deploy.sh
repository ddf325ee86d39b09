#!/usr/bin/env bash
# check-deploy.sh — validates the deployment files offline with the tools their users run:
# compose files against the Compose Specification, Prometheus config, rules and rule unit tests
# with promtool, the rendered Kubernetes overlays against the Kubernetes schemas, YAML style,
# every LogQL query of the dashboards with Grafana's LogQL grammar, and every PromQL expression
# of the rules and dashboards against promtool's parser and deploy/metric-names.txt.
# Installs missing validators into $HOME/.cache/logpipe (scripts/lib/deploy-tools.sh).
set -euo pipefail
# extglob: !(*_test).yml below must parse; nullglob: an empty glob is no argument.
shopt -s extglob nullglob

readonly SCRIPT_NAME="${0##*/}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
# shellcheck source=scripts/lib/deploy-tools.sh
source "$ROOT/scripts/lib/deploy-tools.sh"

WORK_DIR=""
FAILED=()

usage() {
  cat <<USAGE
usage: $SCRIPT_NAME [--no-install] [--help]

Validates docker-compose*.yml, deploy/prometheus, deploy/grafana, deploy/k8s (and deploy/loki
as YAML only) offline; exits non-zero when any check fails (all checks run, failures listed).

  --no-install   do not install missing validators (fail instead)
  --help         show this help

Checks: compose (check-jsonschema vendor.compose-spec), prometheus (promtool check config,
check rules, test rules), promql (promtool parses every dashboard expression; their metric
names are checked by the e2e suite against deploy/metric-names.txt and a real Prometheus), logql (@grafana/lezer-logql), kubernetes (kubectl kustomize
of base and overlays, kubernetes-validate --strict), yamllint (.yamllint), hadolint (Dockerfiles).

Environment: LOGPIPE_CACHE (default \$HOME/.cache/logpipe) holds the venv and node modules.
USAGE
}

log() { printf '[%s] %s\n' "$SCRIPT_NAME" "$*"; }
err() { printf '%s: %s\n' "$SCRIPT_NAME" "$*" >&2; }

cleanup() { [[ -n "$WORK_DIR" ]] && rm -rf "$WORK_DIR"; }

# run_check NAME FUNCTION: runs one check, records its failure and goes on.
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

check_compose() {
  local f rc=0
  for f in "$ROOT"/docker-compose*.yml; do
    check-jsonschema --builtin-schema vendor.compose-spec "$f" || rc=1
  done
  return "$rc"
}

check_prometheus() {
  # rule_files in prometheus.yml are relative to the config file; promtool resolves them so.
  promtool check config "$ROOT/deploy/prometheus/prometheus.yml" \
    && promtool check rules "$ROOT"/deploy/prometheus/rules/!(*_test).yml \
    && (cd "$ROOT/deploy/prometheus/rules" && promtool test rules ./*_test.yml)
}

check_promql() {
  # Metric names are checked once, by the e2e suite (tests/e2e/src/promql.rs: every rule and
  # dashboard expression run on a real Prometheus scraping both services, its names against
  # deploy/metric-names.txt). Here promtool's own parser checks the dashboards' expressions,
  # written as recording rules (the rule files are checked in check_prometheus).
  local out="$WORK_DIR/promql-syntax.yml" count
  jq -r -s '
    [ .[] | .. | objects | select(has("targets")) | . as $panel | .targets[]?
      | select((.datasource.type // $panel.datasource.type // "") == "prometheus")
      | .expr // empty ]
    | "groups:\n- name: dashboard-syntax\n  rules:\n"
      + (to_entries | map("  - record: check:expr_\(.key)\n    expr: "
          + (.value | gsub("\\$__(rate_interval|interval|range|auto)(_ms|_s)?"; "5m")
                    | gsub("\\$\\{__[A-Za-z_]+\\}"; "5m") | tojson)) | join("\n"))
  ' "$ROOT"/deploy/grafana/dashboards/*.json >"$out" || return 1
  count="$(grep -c '^  - record:' "$out" || true)"
  if [[ "$count" -eq 0 ]]; then
    err "no Prometheus expression found in the dashboards"
    return 1
  fi
  log "$count dashboard expressions"
  promtool check rules "$out"
}

check_logql() {
  node "$ROOT/scripts/lib/logql-check.cjs" "$ROOT"/deploy/grafana/dashboards/*.json
}

check_kubernetes() {
  command -v kubectl >/dev/null 2>&1 || { err "kubectl is needed to render kustomize"; return 1; }
  local dir name rc=0
  for dir in "$ROOT/deploy/k8s/base" "$ROOT"/deploy/k8s/overlays/*/; do
    dir="${dir%/}"
    name="${dir#"$ROOT/deploy/k8s/"}"
    name="${name//\//-}"
    if ! kubectl kustomize "$dir" >"$WORK_DIR/k8s-$name.yaml"; then
      err "kubectl kustomize $dir failed"
      rc=1
      continue
    fi
    kubernetes-validate --strict --quiet "$WORK_DIR/k8s-$name.yaml" || rc=1
    log "rendered and validated $name ($(grep -c '^kind:' "$WORK_DIR/k8s-$name.yaml") objects)"
  done
  return "$rc"
}

check_yamllint() {
  (cd "$ROOT" && yamllint --strict -c .yamllint .yamllint docker-compose*.yml deploy)
}

check_hadolint() {
  local f rc=0
  # The services' Dockerfile and the stand-in images of the container tests.
  for f in "$ROOT/Dockerfile" "$ROOT"/tests/containers/standins/*.Containerfile; do
    hadolint "$f" || rc=1
  done
  return "$rc"
}

main() {
  local install=1
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --no-install) install=0 ;;
      -h|--help) usage; return 0 ;;
      *) err "unknown argument: $1 (see --help)"; return 64 ;;
    esac
    shift
  done
  if [[ "$install" == 1 ]]; then
    ensure_deploy_tools
  else
    deploy_tools_env
  fi
  WORK_DIR="$(mktemp -d -t logpipe-check-deploy-XXXXXX)"
  trap cleanup EXIT

  run_check compose check_compose
  run_check prometheus check_prometheus
  run_check promql check_promql
  run_check logql check_logql
  run_check kubernetes check_kubernetes
  run_check yamllint check_yamllint
  run_check hadolint check_hadolint

  if [[ ${#FAILED[@]} -gt 0 ]]; then
    err "failed checks: ${FAILED[*]}"
    return 1
  fi
  log "all deployment checks passed"
}

main "$@"
