#!/bin/sh
# loki-entrypoint.sh — grafana/loki's command line on the Loki stand-in (gitlab-loki.Containerfile):
# the flags .gitlab-ci.yml gives its Loki service, mapped onto `testkit loki`. The image's
# local-config.yaml is Loki's defaults, which are the receiver's; a flag not known here fails
# the start rather than being ignored.
set -eu
set -- "$@" --end-of-loki-flags
for arg in "$@"; do
  shift
  case "$arg" in
    --end-of-loki-flags) break ;;
    -config.file=/etc/loki/local-config.yaml) ;;
    -validation.reject-old-samples=false) set -- "$@" --no-reject-old-samples ;;
    -querier.query-ingesters-within=*)
      within="${arg#*=}"
      case "$within" in *[0-9]) within="${within}s" ;; esac
      set -- "$@" --query-ingesters-within "$within" ;;
    *) echo "loki-entrypoint.sh: Loki flag not supported by the stand-in: $arg" >&2; exit 64 ;;
  esac
done
exec testkit loki --listen 0.0.0.0:3100 --control-listen 0.0.0.0:3101 "$@"
