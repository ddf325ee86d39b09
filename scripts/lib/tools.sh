#!/usr/bin/env bash
# tools.sh — sourced by scripts: where tools and builds are cached, and idempotent installs of
# everything the tests and the local run need. Nothing here writes inside the repository.

: "${LOGPIPE_CACHE:=$HOME/.cache/logpipe}"
: "${LOGPIPE_TOOLS:=$LOGPIPE_CACHE/tools}"
: "${TANSU_VERSION:=0.6.0}"
export LOGPIPE_CACHE LOGPIPE_TOOLS TANSU_VERSION

# Exports PATH and cargo settings so builds are cached outside the clone.
tools_env() {
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$LOGPIPE_CACHE/target}"
  export PATH="$LOGPIPE_TOOLS/bin:$LOGPIPE_CACHE/venv/bin:$HOME/.cargo/bin:$PATH"
  export TANSU_BIN="$LOGPIPE_TOOLS/bin/tansu"
  export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
  mkdir -p "$LOGPIPE_TOOLS" "$LOGPIPE_CACHE/logs"
}

_tools_log() { printf '[tools] %s\n' "$*" >&2; }

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

# The tansu broker (a Kafka-compatible broker from crates.io), built once into the cache.
ensure_tansu() {
  if "$LOGPIPE_TOOLS/bin/tansu" --version >/dev/null 2>&1; then
    return 0
  fi
  _tools_log "installing tansu $TANSU_VERSION (about 10-15 minutes, once)"
  local log="$LOGPIPE_CACHE/logs/tansu-install.log"
  if ! _cargo_install tansu --version "$TANSU_VERSION" --locked --features dynostore,libsql \
      --root "$LOGPIPE_TOOLS" >"$log" 2>&1; then
    _tools_log "--locked install failed, retrying without --locked"
    _cargo_install tansu --version "$TANSU_VERSION" --features dynostore,libsql \
      --root "$LOGPIPE_TOOLS" >>"$log" 2>&1 || { tail -30 "$log" >&2; return 1; }
  fi
}

ensure_nextest() {
  command -v cargo-nextest >/dev/null 2>&1 && return 0
  _tools_log "installing cargo-nextest"
  _cargo_install cargo-nextest --locked --root "$LOGPIPE_TOOLS" \
    >"$LOGPIPE_CACHE/logs/nextest-install.log" 2>&1
}

# cargo-deny: licences, bans and sources of every dependency (tests/security's supply-chain check).
ensure_cargo_deny() {
  command -v cargo-deny >/dev/null 2>&1 && return 0
  _tools_log "installing cargo-deny (a few minutes, once)"
  _cargo_install cargo-deny --locked --root "$LOGPIPE_TOOLS" \
    >"$LOGPIPE_CACHE/logs/cargo-deny-install.log" 2>&1 \
    || { tail -30 "$LOGPIPE_CACHE/logs/cargo-deny-install.log" >&2; return 1; }
}

ensure_tools() {
  # cmake: rdkafka's bundled librdkafka build; pkg-config: finds OpenSSL for it; protoc:
  # independent protobuf check; prometheus/promtool: metrics tests; shellcheck/bats: script checks;
  # wrk: the local load test (scripts/load-test.sh).
  ensure_apt cmake:cmake pkg-config:pkg-config protoc:protobuf-compiler prometheus:prometheus \
    promtool:prometheus shellcheck:shellcheck bats:bats curl:curl nginx:nginx-light \
    sqlite3:sqlite3 jq:jq wrk:wrk
  [[ -f /usr/include/google/protobuf/timestamp.proto ]] || ensure_apt __none__:libprotobuf-dev
  # OpenSSL headers: librdkafka is built with SSL and SASL/SCRAM (rdkafka's `ssl` feature),
  # linked against the system libssl.
  [[ -f /usr/include/openssl/ssl.h ]] || ensure_apt __none__:libssl-dev
  # librdkafka 2.12's cmake build includes curl/curl.h even with curl disabled
  # (confluentinc/librdkafka#5135): only the header is needed.
  [[ -f /usr/include/x86_64-linux-gnu/curl/curl.h || -f /usr/include/curl/curl.h ]] \
    || ensure_apt __none__:libcurl4-openssl-dev
  ensure_nextest
  ensure_cargo_deny
  ensure_tansu
}
