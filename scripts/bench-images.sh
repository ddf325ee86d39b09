#!/usr/bin/env bash
# bench-images.sh — how long the service images take to build from ./Dockerfile and how big they
# are: a cold build (no layer cache; crates already downloaded in the registry cache mount), a
# rebuild after a source-only change (the dependency layer must come from the cache: checked,
# the run fails otherwise), a rebuild with nothing changed, and the size of each image.
# scripts/bench.sh calls it for docs/benchmarks.md. Builds with podman (scripts/lib/containers.sh
# sets it up), in a copy of the tree, so the checkout is never touched.
set -euo pipefail

readonly SCRIPT_NAME="${0##*/}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT

usage() {
  cat <<USAGE
Usage: scripts/$SCRIPT_NAME [--tag TAG]

  --tag TAG   tag of the images it builds (default: bench)

Prints one line per measurement:
  cold build (both images, no layer cache): S s
  rebuild after a source-only change: S s (dependency layer from the cache)
  rebuild with nothing changed: S s
  image logpipe-producer:TAG: N MB / image logpipe-consumer:TAG: N MB

Exit status: 0 measured, 1 a build failed or a source-only change rebuilt the dependencies,
2 bad usage.
USAGE
}

log() { printf '[%s] %s\n' "$SCRIPT_NAME" "$*" >&2; }
die() { printf '[%s] error: %s\n' "$SCRIPT_NAME" "$*" >&2; exit 1; }

# shellcheck source=scripts/lib/containers.sh
source "$ROOT/scripts/lib/containers.sh"

WORK=""
cleanup() { [[ -z "$WORK" ]] || rm -rf -- "$WORK"; }

# build CONTEXT TAG LOG [FLAGS...] — both targets, FLAGS for the first one only (the second
# reuses the shared builder, as any build does); prints the seconds it took.
build() {
  local ctx="$1" tag="$2" logf="$3" t0 target flags; shift 3
  flags=("$@")
  t0=$SECONDS
  for target in producer consumer; do
    podman build --format docker --pull=never --network=host ${flags[@]+"${flags[@]}"} \
      --target "$target" -t "logpipe-$target:$tag" -f "$ctx/Dockerfile" "$ctx" >>"$logf" 2>&1 \
      || { tail -30 "$logf" >&2; die "building $target failed (log: $logf)"; }
    flags=()
  done
  echo $((SECONDS - t0))
}

main() {
  local tag=bench cold source_only unchanged
  while [[ $# -gt 0 ]]; do
    case "$1" in
      -h|--help) usage; exit 0 ;;
      --tag) [[ "${2:-}" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]*$ ]] || { usage >&2; exit 2; }; tag="$2"; shift ;;
      *) log "unknown argument: $1"; usage >&2; exit 2 ;;
    esac
    shift
  done
  ensure_container_tools
  ensure_base_images
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/logpipe-bench-images.XXXXXX")"
  trap cleanup EXIT
  # The build context as git has it (what CI builds), without build output.
  git -C "$ROOT" ls-files -z --cached --others --exclude-standard \
    | (cd "$ROOT" && xargs -0 cp --parents -t "$WORK/" 2>/dev/null) || true
  [[ -f "$WORK/Dockerfile" && -f "$WORK/Cargo.lock" ]] || die "could not copy the tree to $WORK"
  log "cold build (no layer cache; the second target reuses the first one's builder)"
  cold="$(build "$WORK" "$tag" "$WORK/cold.log" --no-cache)"
  log "rebuild after a source-only change"
  printf '\n// bench-images.sh: a source-only change\n' >>"$WORK/crates/producer/src/main.rs"
  source_only="$(build "$WORK" "$tag" "$WORK/source.log")"
  # The dependency layer (the placeholder build) must have come from the cache: the only crates
  # compiled are the workspace's own.
  if grep -E '^ *Compiling ' "$WORK/source.log" | grep -vqE 'Compiling logpipe-'; then
    grep -E '^ *Compiling ' "$WORK/source.log" | grep -vE 'Compiling logpipe-' | head -5 >&2
    die "a source-only change recompiled dependencies: the dependency layer was not cached"
  fi
  grep -q 'Compiling logpipe-producer' "$WORK/source.log" || die "the source change was not built"
  log "rebuild with nothing changed"
  unchanged="$(build "$WORK" "$tag" "$WORK/unchanged.log")"
  grep -q 'Compiling' "$WORK/unchanged.log" && die "an unchanged tree compiled something"
  printf 'cold build (both images, no layer cache): %s s\n' "$cold"
  printf 'rebuild after a source-only change: %s s (dependency layer from the cache; compiled: %s)\n' \
    "$source_only" "$(grep -oE 'Compiling logpipe-[a-z]+' "$WORK/source.log" | sort -u | cut -d' ' -f2 | paste -sd, -)"
  printf 'rebuild with nothing changed: %s s\n' "$unchanged"
  local t size
  for t in producer consumer; do
    size="$(podman image inspect --format '{{.Size}}' "logpipe-$t:$tag" | awk '{printf "%.1f", $1 / 1e6}')"
    printf 'image logpipe-%s:%s: %s MB\n' "$t" "$tag" "$size"
    # Machine-readable figures for scripts/bench.sh (its targets table).
    printf 'result image_%s_mb %s\n' "$t" "$size"
  done
  printf 'result image_cold_build_s %s\nresult image_source_rebuild_s %s\n' "$cold" "$source_only"
}

main "$@"
