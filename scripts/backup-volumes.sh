#!/usr/bin/env bash
# backup-volumes.sh — backs up the pipeline's persistent data (broker, Loki, Prometheus, Grafana)
# through the runtime adapter into one folder with a MANIFEST and SHA256SUMS. Every archive is a
# consistent copy: the local broker through SQLite's online backup, every other component by
# stopping its service for the copy and starting it again.
set -euo pipefail

readonly SCRIPT_NAME="${0##*/}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT

usage() {
  cat <<USAGE
Usage: scripts/$SCRIPT_NAME [--dest DIR] [--only COMPONENTS]

Writes DIR/<UTC timestamp>/ with one <component>.tar.gz per component that has data in this
runtime, MANIFEST (what was backed up, from where, and what was skipped and why) and SHA256SUMS
(checked by restore-from-backup.sh before it replaces anything). The folder is written as
<id>.partial and renamed when complete. Prints the backup's path on stdout.

Components: broker (Kafka / tansu), loki, prometheus, grafana. A component without data here
(the local runtime's in-memory Loki receiver, no local Grafana) is listed as skipped.
Consistency: RUNTIME=local copies tansu's SQLite file online (sqlite3 .backup, installed when
missing) and stops Prometheus for its copy; RUNTIME=compose stops each service for its copy.

Options:
  --dest DIR          where backups go [\$LOGPIPE_BACKUP_DIR or \$LOGPIPE_CACHE/backups]
  --only COMPONENTS   comma-separated subset, e.g. broker,prometheus
  -h, --help          show this help

Exit status: 0 backup complete, 1 a component could not be backed up (no backup is left
behind), 2 bad usage.
USAGE
}

log() { printf '[%s] %s\n' "$SCRIPT_NAME" "$*" >&2; }
err() { printf '[%s] error: %s\n' "$SCRIPT_NAME" "$*" >&2; }

# shellcheck source=scripts/lib/runtime.sh
source "$ROOT/scripts/lib/runtime.sh"

backup() {
  local dest="$1" only="$2" id dir c reason bytes
  id="$(date -u +%Y%m%dT%H%M%SZ)"
  dir="$dest/$id"
  [[ ! -e "$dir" ]] || { err "$dir exists"; return 1; }
  mkdir -p "$dir.partial"
  PARTIAL="$dir.partial"
  trap 'rm -rf "$PARTIAL"' EXIT
  {
    printf '# logpipe backup: scripts/restore-from-backup.sh %s\n' "$dir"
    printf 'id=%s\ncreated_at=%s\nruntime=%s\nhost=%s\n' "$id" "$(date -u +%FT%TZ)" "$RUNTIME" "$(hostname)"
    printf 'active_colour=%s\nactive_version=%s\n' "$(rt_state_get ACTIVE_COLOUR)" "$(rt_state_get ACTIVE_VERSION)"
    printf '# component\tfile\tbytes\tstatus\tdetail\n'
  } >"$dir.partial/MANIFEST"
  while read -r c; do
    if [[ -n "$only" && ",$only," != *",$c,"* ]]; then continue; fi
    if ! reason="$(rt_data_available "$c")"; then
      log "$c: skipped ($reason)"
      printf '%s\t-\t0\tskipped\t%s\n' "$c" "$reason" >>"$dir.partial/MANIFEST"
      continue
    fi
    log "$c: backing up"
    rt_data_export "$c" "$dir.partial/$c.tar.gz" || { err "$c: backup failed"; return 1; }
    bytes="$(stat -c %s "$dir.partial/$c.tar.gz")"
    printf '%s\t%s.tar.gz\t%s\tok\t%s\n' "$c" "$c" "$bytes" "$RUNTIME" >>"$dir.partial/MANIFEST"
    log "$c: $bytes bytes"
  done < <(rt_data_components)
  grep -q $'\tok\t' "$dir.partial/MANIFEST" || { err "no component had data to back up"; return 1; }
  (cd "$dir.partial" && sha256sum MANIFEST ./*.tar.gz >SHA256SUMS)
  mv "$dir.partial" "$dir"
  trap - EXIT
  log "backup complete: $dir"
  printf '%s\n' "$dir"
}

main() {
  local dest="" only="" c
  while [[ $# -gt 0 ]]; do
    case "$1" in
      -h|--help) usage; exit 0 ;;
      --dest) [[ -n "${2:-}" ]] || { err "--dest needs a folder"; exit 2; }; dest="$2"; shift ;;
      --only) [[ -n "${2:-}" ]] || { err "--only needs components"; exit 2; }; only="$2"; shift ;;
      *) err "unknown argument: $1"; usage >&2; exit 2 ;;
    esac
    shift
  done
  IFS=',' read -r -a wanted <<<"$only"
  for c in "${wanted[@]}"; do
    case "$c" in broker|loki|prometheus|grafana) ;; *) err "unknown component: $c"; exit 2 ;; esac
  done
  rt_init || exit 2
  dest="${dest:-${LOGPIPE_BACKUP_DIR:-$LOGPIPE_CACHE/backups}}"
  backup "$dest" "$only"
}

main "$@"
