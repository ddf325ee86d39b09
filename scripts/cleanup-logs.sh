#!/usr/bin/env bash
# cleanup-logs.sh — log retention for the pipeline's log folders: deletes log files older than
# the age limit, then the oldest ones until each folder fits the size limit. A log a running
# process still writes (its <name>.pid names a live process) is never deleted.
set -euo pipefail

readonly SCRIPT_NAME="${0##*/}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT

usage() {
  cat <<USAGE
Usage: scripts/$SCRIPT_NAME [--dry-run] [--max-age DAYS] [--max-size SIZE] [--dir DIR]...

Log files are *.log, *.log.N, *.log.gz and *.log.N.gz directly in each DIR (not below).
  1. age:  delete those last modified more than DAYS days ago
  2. size: while a DIR's log files together exceed SIZE, delete its oldest one
Live logs (DIR/<name>.log whose DIR/<name>.pid names a running process) are kept and reported.

Options:
  --dry-run          print what would be deleted, delete nothing
  --max-age DAYS     age limit in whole days [14]
  --max-size SIZE    size limit per folder: bytes or with K, M, G [500M]
  --dir DIR          a folder to clean (repeatable) [\$LOGPIPE_RUN_DIR and \$LOGPIPE_CACHE/logs]
  -h, --help         show this help

Exit status: 0 done (also when nothing was due), 1 a file could not be deleted, 2 bad usage.
USAGE
}

log() { printf '[%s] %s\n' "$SCRIPT_NAME" "$*" >&2; }
err() { printf '[%s] error: %s\n' "$SCRIPT_NAME" "$*" >&2; }

# shellcheck source=scripts/lib/tools.sh
source "$ROOT/scripts/lib/tools.sh"

DRY=0 FAILED=0 DELETED=0 FREED=0

to_bytes() {
  local n="${1%[KkMmGg]}" unit="${1: -1}"
  [[ "$n" =~ ^[0-9]+$ ]] || return 1
  case "$unit" in
    [Kk]) echo $((n * 1024)) ;; [Mm]) echo $((n * 1024 * 1024)) ;; [Gg]) echo $((n * 1024 * 1024 * 1024)) ;;
    *) [[ "$1" =~ ^[0-9]+$ ]] && echo "$1" ;;
  esac
}

# is_live FILE — FILE is written by a running process of the same folder.
is_live() {
  local base="${1%.log}" pid
  [[ "$1" == *.log && -f "$base.pid" ]] || return 1
  pid="$(cat "$base.pid" 2>/dev/null)"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null
}

# logs DIR — "mtime size path" of DIR's log files, oldest first.
logs() {
  find "$1" -maxdepth 1 -type f \( -name '*.log' -o -name '*.log.[0-9]*' -o -name '*.log.gz' \) \
    -printf '%T@ %s %p\n' 2>/dev/null | sort -n
}

remove() {
  local f="$1" size="$2" why="$3"
  if [[ "$DRY" == 1 ]]; then
    printf 'would delete %s (%s bytes, %s)\n' "$f" "$size" "$why"
  elif rm -f -- "$f"; then
    printf 'deleted %s (%s bytes, %s)\n' "$f" "$size" "$why"
  else
    err "cannot delete $f"; FAILED=1; return
  fi
  DELETED=$((DELETED + 1)); FREED=$((FREED + size))
}

clean_dir() {
  local dir="$1" max_age="$2" max_size="$3" now cutoff mtime size f total=0 kept=()
  [[ -d "$dir" ]] || { log "skipping $dir (no such folder)"; return 0; }
  now="$(date +%s)"; cutoff=$((now - max_age * 86400))
  while read -r mtime size f; do
    if is_live "$f"; then
      total=$((total + size))
      log "keeping live log $f ($size bytes)"
    elif ((${mtime%.*} < cutoff)); then
      remove "$f" "$size" "older than $max_age days"
    else
      total=$((total + size)); kept+=("$size $f")
    fi
  done < <(logs "$dir")
  local entry
  for entry in "${kept[@]}"; do
    ((total > max_size)) || break
    size="${entry%% *}"; f="${entry#* }"
    remove "$f" "$size" "folder over $max_size bytes"
    total=$((total - size))
  done
  ((total <= max_size)) || log "$dir still holds $total bytes of live logs (over $max_size)"
}

main() {
  local max_age=14 max_size dirs=() d
  max_size="$(to_bytes 500M)"
  while [[ $# -gt 0 ]]; do
    case "$1" in
      -h|--help) usage; exit 0 ;;
      --dry-run) DRY=1 ;;
      --max-age) [[ "${2:-}" =~ ^[0-9]+$ ]] || { err "--max-age needs whole days"; exit 2; }
        max_age="$2"; shift ;;
      --max-size) max_size="$(to_bytes "${2:-x}")" || { err "--max-size needs a size (e.g. 500M)"; exit 2; }
        shift ;;
      --dir) [[ -n "${2:-}" ]] || { err "--dir needs a folder"; exit 2; }; dirs+=("$2"); shift ;;
      *) err "unknown argument: $1"; usage >&2; exit 2 ;;
    esac
    shift
  done
  [[ ${#dirs[@]} -gt 0 ]] || dirs=("${LOGPIPE_RUN_DIR:-$LOGPIPE_CACHE/run}" "$LOGPIPE_CACHE/logs")
  for d in "${dirs[@]}"; do clean_dir "$d" "$max_age" "$max_size"; done
  if [[ "$DRY" == 1 ]]; then printf 'dry run: %d file(s), %d bytes would be freed\n' "$DELETED" "$FREED"
  else printf '%d file(s) deleted, %d bytes freed\n' "$DELETED" "$FREED"; fi
  return "$FAILED"
}

main "$@"
