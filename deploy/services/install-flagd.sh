#!/usr/bin/env bash
# Build flagd (OpenFeature's flag daemon), the real service behind the flagd flag provider's
# tests, with Go from the Go module proxy, and print the binary's path.
#   FLAGD_VERSION       pinned module version (default below)
#   CANARYSTREAM_CACHE  cache folder (default ~/.cache/canarystream); the binary goes to bin/
# Idempotent: an existing binary is kept. Exits non-zero, saying why, when Go is missing or
# the build fails.
set -euo pipefail
version="${FLAGD_VERSION:-v0.16.1}"
module="github.com/open-feature/flagd/flagd"
bin_dir="${CANARYSTREAM_CACHE:-$HOME/.cache/canarystream}/bin"
binary="$bin_dir/flagd"

if [[ -x "$binary" ]]; then
  echo "$binary"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "install-flagd: go is not installed; it is needed to build $module@$version" >&2
  exit 1
fi
mkdir -p "$bin_dir"
echo "install-flagd: building $module@$version (a few minutes on first use)" >&2
if ! GOBIN="$bin_dir" go install "$module@$version" >&2; then
  echo "install-flagd: could not build $module@$version (see the go error above)" >&2
  exit 1
fi
echo "$binary"
