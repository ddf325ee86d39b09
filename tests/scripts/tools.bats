#!/usr/bin/env bats
# scripts/lib/tools.sh's tansu install: the stamp beside the binary decides whether the patched
# tansu is rebuilt. The build itself (~10 minutes) is replaced by a stand-in that records its
# calls and installs a fake binary; everything else is the real ensure_tansu. No services.

load helpers

setup() {
  SANDBOX="$(mktemp -d)"
  export LOGPIPE_CACHE="$SANDBOX/cache" LOGPIPE_TOOLS="$SANDBOX/cache/tools"
  mkdir -p "$LOGPIPE_CACHE/logs"
  # shellcheck source=scripts/lib/tools.sh
  source "$ROOT/scripts/lib/tools.sh"
  BUILDS="$SANDBOX/builds"
  : >"$BUILDS"
  # The stand-in build: what _tansu_build leaves behind, a tansu in the tool-build folder.
  # shellcheck disable=SC2317 # called by ensure_tansu
  _tansu_build() {
    echo "build with $(($# - 1)) patch(es)" >>"$BUILDS"
    mkdir -p "$LOGPIPE_CACHE/tool-build/release"
    printf '#!/bin/sh\necho "tansu %s"\n' "$TANSU_VERSION" >"$LOGPIPE_CACHE/tool-build/release/tansu"
    chmod +x "$LOGPIPE_CACHE/tool-build/release/tansu"
  }
  PATCHES=("$ROOT/scripts/lib/patches/tansu-$TANSU_VERSION-"*.patch)
  WANT="tansu $TANSU_VERSION $(cat "${PATCHES[@]}" | sha256sum | cut -d' ' -f1)"
}

teardown() {
  rm -rf "$SANDBOX"
}

@test "the patches exist, and a machine without tansu builds it with all of them and stamps it" {
  [ "${#PATCHES[@]}" -ge 2 ]
  run ensure_tansu
  [ "$status" -eq 0 ]
  [ "$(cat "$BUILDS")" = "build with ${#PATCHES[@]} patch(es)" ]
  [ "$("$LOGPIPE_TOOLS/bin/tansu" --version)" = "tansu $TANSU_VERSION" ]
  [ "$(cat "$LOGPIPE_TOOLS/bin/tansu.patches")" = "$WANT" ]
}

@test "a tansu stamped with the current patches is kept" {
  ensure_tansu
  : >"$BUILDS"
  run ensure_tansu
  [ "$status" -eq 0 ]
  [ ! -s "$BUILDS" ]
}

@test "a tansu built without the patches, or with other ones, is rebuilt" {
  ensure_tansu
  : >"$BUILDS"
  # A tansu installed by `cargo install tansu` (no stamp).
  rm "$LOGPIPE_TOOLS/bin/tansu.patches"
  run ensure_tansu
  [ "$status" -eq 0 ]
  [ "$(wc -l <"$BUILDS")" -eq 1 ]
  # One built with an older set of patches.
  echo "tansu $TANSU_VERSION 0000" >"$LOGPIPE_TOOLS/bin/tansu.patches"
  run ensure_tansu
  [ "$status" -eq 0 ]
  [ "$(wc -l <"$BUILDS")" -eq 2 ]
  [ "$(cat "$LOGPIPE_TOOLS/bin/tansu.patches")" = "$WANT" ]
}

@test "a failed build installs nothing and says why" {
  # shellcheck disable=SC2317 # called by ensure_tansu
  _tansu_build() { echo "error: could not compile tansu-broker"; return 1; }
  run --separate-stderr ensure_tansu
  [ "$status" -eq 1 ]
  [[ "$stderr" == *"could not compile tansu-broker"* ]]
  [ ! -e "$LOGPIPE_TOOLS/bin/tansu" ]
  [ ! -e "$LOGPIPE_TOOLS/bin/tansu.patches" ]
}
