#!/usr/bin/env bash
# restore-from-backup.sh — restores a backup made by backup-volumes.sh. It verifies everything
# first (manifest, SHA256SUMS, every archive readable) and replaces nothing unless all of it
# checks out; then each component's service is stopped, its data replaced and started again.
set -euo pipefail

readonly SCRIPT_NAME="${0##*/}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT

usage() {
  cat <<USAGE
Usage: scripts/$SCRIPT_NAME [--verify-only] [--only COMPONENTS] BACKUP

BACKUP: a backup folder, a backup id under the backup folder, or "latest".
  1. verify: MANIFEST and SHA256SUMS present, every checksum matches (sha256sum -c --strict),
     every archive the manifest lists is covered by a checksum and lists as a tar.gz, the
     backup was made by the same runtime
  2. restore each component marked ok in the manifest (or the --only subset): stop its service,
     keep the current data aside, extract, start it; on an extraction error the previous data is
     put back. Restoring the broker first drains the running colours' producers and consumers
     and starts them again afterwards (RUNTIME=local refuses while run-local.sh's own
     producer/consumer run: deploy a colour first)

Options:
  --verify-only       stop after step 1
  --only COMPONENTS   comma-separated subset of broker,loki,prometheus,grafana
  -h, --help          show this help

Environment: LOGPIPE_BACKUP_DIR (where ids and "latest" are looked up), RUNTIME.

Exit status: 0 restored (or verified with --verify-only), 1 a component failed to restore,
2 bad usage, 3 verification failed (nothing was replaced), 4 no such backup.
USAGE
}

log() { printf '[%s] %s\n' "$SCRIPT_NAME" "$*" >&2; }
err() { printf '[%s] error: %s\n' "$SCRIPT_NAME" "$*" >&2; }

# shellcheck source=scripts/lib/runtime.sh
source "$ROOT/scripts/lib/runtime.sh"

resolve() {
  local b="$1" root="${LOGPIPE_BACKUP_DIR:-$LOGPIPE_CACHE/backups}"
  if [[ "$b" == latest ]]; then
    b="$(find "$root" -mindepth 1 -maxdepth 1 -type d -name '[0-9]*Z' 2>/dev/null | sort | tail -1)"
    [[ -n "$b" ]] || return 1
  elif [[ ! -d "$b" && -d "$root/$b" ]]; then
    b="$root/$b"
  fi
  [[ -d "$b" ]] || return 1
  (cd "$b" && pwd)
}

# verify DIR — all checks of step 1; prints each failure.
verify() {
  local dir="$1" bad=0 c file status runtime
  [[ -f "$dir/MANIFEST" ]] || { err "no MANIFEST in $dir"; return 1; }
  [[ -f "$dir/SHA256SUMS" ]] || { err "no SHA256SUMS in $dir"; return 1; }
  if ! (cd "$dir" && sha256sum --quiet --strict -c SHA256SUMS) >&2; then
    err "checksums do not match"; return 1
  fi
  grep -Eq '(^|[ *])(\./)?MANIFEST$' "$dir/SHA256SUMS" || { err "MANIFEST is not covered by SHA256SUMS"; bad=1; }
  runtime="$(sed -n 's/^runtime=//p' "$dir/MANIFEST")"
  [[ "$runtime" == "$RUNTIME" ]] || { err "backup is from runtime '$runtime', this is '$RUNTIME'"; bad=1; }
  while IFS=$'\t' read -r c file _ status _; do
    [[ "$c" == \#* || -z "$c" || "$c" == *=* || "$status" != ok ]] && continue
    grep -Eq "(^|[ *])(\./)?$file\$" "$dir/SHA256SUMS" || { err "$file has no checksum"; bad=1; continue; }
    tar -tzf "$dir/$file" >/dev/null 2>&1 || { err "$file is not a readable tar.gz"; bad=1; }
  done <"$dir/MANIFEST"
  return "$bad"
}

restore() {
  local dir="$1" only="$2" c file status rc=0 n=0
  while IFS=$'\t' read -r c file _ status _; do
    [[ "$c" == \#* || -z "$c" || "$c" == *=* ]] && continue
    if [[ -n "$only" && ",$only," != *",$c,"* ]]; then continue; fi
    if [[ "$status" != ok ]]; then log "$c: not in this backup ($status)"; continue; fi
    log "$c: restoring $file"
    if rt_data_import "$c" "$dir/$file"; then n=$((n + 1)); log "$c: restored"
    else err "$c: restore failed"; rc=1; fi
  done <"$dir/MANIFEST"
  log "$n component(s) restored from $dir"
  return "$rc"
}

main() {
  local backup="" only="" verify_only=0 dir
  while [[ $# -gt 0 ]]; do
    case "$1" in
      -h|--help) usage; exit 0 ;;
      --verify-only) verify_only=1 ;;
      --only) [[ -n "${2:-}" ]] || { err "--only needs components"; exit 2; }; only="$2"; shift ;;
      -*) err "unknown option: $1"; usage >&2; exit 2 ;;
      *) [[ -z "$backup" ]] || { err "one BACKUP only"; exit 2; }; backup="$1" ;;
    esac
    shift
  done
  [[ -n "$backup" ]] || { err "no BACKUP given"; usage >&2; exit 2; }
  rt_init || exit 2
  dir="$(resolve "$backup")" || { err "no such backup: $backup"; exit 4; }
  log "verifying $dir"
  verify "$dir" || { err "verification failed: nothing was replaced"; exit 3; }
  log "verified: $(grep -c $'\tok\t' "$dir/MANIFEST") archive(s), checksums match"
  [[ "$verify_only" == 0 ]] || exit 0
  restore "$dir" "$only"
}

main "$@"
