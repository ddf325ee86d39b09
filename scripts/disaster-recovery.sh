#!/usr/bin/env bash
# disaster-recovery.sh — the recovery runbook as one command: keep a safety backup of the current
# (possibly broken) state, restore a known-good backup (verified before anything is replaced),
# then wait until the environment is healthy again.
set -euo pipefail

readonly SCRIPT_NAME="${0##*/}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT

usage() {
  cat <<USAGE
Usage: scripts/$SCRIPT_NAME [--env ENV] [--skip-safety-backup] [--health-timeout SECS] BACKUP

  1. scripts/backup-volumes.sh: a safety backup of the current state (skip with
     --skip-safety-backup when the current data is unreadable)
  2. scripts/restore-from-backup.sh BACKUP (a folder, an id, or "latest" — resolved before
     step 1, so "latest" never means the safety backup)
  3. scripts/health-check.sh ENV until it passes or the timeout ends

Options:
  --env ENV               environment to health-check [\$DEPLOY_ENV or local]
  --skip-safety-backup    do not back up the current state first
  --health-timeout SECS   how long the environment may take to become healthy [120]
  -h, --help              show this help

Exit status: 0 restored and healthy, 1 the safety backup failed (nothing restored), 2 bad usage,
3 the backup failed verification (nothing replaced), 4 no such backup, 5 restore failed,
6 restored but the environment is not healthy.
USAGE
}

log() { printf '[%s] %s\n' "$SCRIPT_NAME" "$*" >&2; }
err() { printf '[%s] error: %s\n' "$SCRIPT_NAME" "$*" >&2; }

# shellcheck source=scripts/lib/runtime.sh
source "$ROOT/scripts/lib/runtime.sh"

main() {
  local backup="" env="${DEPLOY_ENV:-local}" safety=1 timeout=120 root dir rc deadline
  while [[ $# -gt 0 ]]; do
    case "$1" in
      -h|--help) usage; exit 0 ;;
      --env) [[ -n "${2:-}" ]] || { err "--env needs a name"; exit 2; }; env="$2"; shift ;;
      --skip-safety-backup) safety=0 ;;
      --health-timeout) [[ "${2:-}" =~ ^[0-9]+$ ]] || { err "$1 needs whole seconds"; exit 2; }
        timeout="$2"; shift ;;
      -*) err "unknown option: $1"; usage >&2; exit 2 ;;
      *) [[ -z "$backup" ]] || { err "one BACKUP only"; exit 2; }; backup="$1" ;;
    esac
    shift
  done
  [[ -n "$backup" ]] || { err "no BACKUP given"; usage >&2; exit 2; }
  [[ -f "$ROOT/deploy/environments/$env.env" || -f "${LOGPIPE_ENV_DIR:-/nonexistent}/$env.env" ]] \
    || { err "unknown environment: $env"; exit 2; }
  rt_init || exit 2
  root="${LOGPIPE_BACKUP_DIR:-$LOGPIPE_CACHE/backups}"
  if [[ "$backup" == latest ]]; then
    dir="$(find "$root" -mindepth 1 -maxdepth 1 -type d -name '[0-9]*Z' 2>/dev/null | sort | tail -1)"
  elif [[ -d "$backup" ]]; then dir="$backup"
  else dir="$root/$backup"; fi
  [[ -n "$dir" && -d "$dir" ]] || { err "no such backup: $backup"; exit 4; }
  log "recovering $env from $dir"
  "$ROOT/scripts/restore-from-backup.sh" --verify-only "$dir" || exit 3
  if [[ "$safety" == 1 ]]; then
    log "step 1: safety backup of the current state"
    "$ROOT/scripts/backup-volumes.sh" >/dev/null || { err "safety backup failed: nothing restored (--skip-safety-backup to go on)"; exit 1; }
  fi
  log "step 2: restore"
  rc=0
  "$ROOT/scripts/restore-from-backup.sh" "$dir" || rc=$?
  case "$rc" in 0) ;; 3) exit 3 ;; 4) exit 4 ;; *) err "restore failed"; exit 5 ;; esac
  log "step 3: health check of $env"
  deadline=$((SECONDS + timeout))
  until "$ROOT/scripts/health-check.sh" "$env" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      "$ROOT/scripts/health-check.sh" "$env" || true
      err "restored, but $env is not healthy after ${timeout}s"
      exit 6
    fi
    sleep 2
  done
  "$ROOT/scripts/health-check.sh" "$env"
  log "recovered $env from $dir"
}

main "$@"
