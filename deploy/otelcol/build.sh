#!/usr/bin/env bash
# Build the OpenTelemetry Collector of the end-to-end test (main.go: OTLP receiver, batch
# processor, Kafka exporter; every collector module pinned in go.mod at one release) once, and
# print the binary's path. Cached like the broker's jars: under CANARYSTREAM_OTELCOL_HOME
# (default ~/.cache/canarystream/otelcol), one directory per release and go.sum digest, so a
# second run, or a run after a change that does not touch the modules' pins, builds nothing.
#
#   deploy/otelcol/build.sh            # -> /root/.cache/canarystream/otelcol/v0.165.0-<sum>/otelcol-canarystream
#
# Needs Go (GO, else `go` on PATH, else /usr/local/go/bin/go) and the Go module proxy on the
# first run. The build keeps to one core (GOFLAGS=-p=1, GOMAXPROCS=1 unless set).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
release="$(sed -n 's#^[[:space:]]*go.opentelemetry.io/collector/otelcol \(v[0-9.]*\).*#\1#p' "$here/go.mod")"
if [[ -z "$release" ]]; then
  echo "build.sh: no go.opentelemetry.io/collector/otelcol pin in $here/go.mod" >&2
  exit 1
fi
digest="$(cat "$here/go.mod" "$here/go.sum" "$here/main.go" | sha256sum | cut -c1-12)"
home="${CANARYSTREAM_OTELCOL_HOME:-$HOME/.cache/canarystream/otelcol}"
dir="$home/$release-$digest"
binary="$dir/otelcol-canarystream"
if [[ -x "$binary" ]]; then
  echo "$binary"
  exit 0
fi
go="${GO:-}"
if [[ -z "$go" ]]; then
  go="$(command -v go || true)"
  [[ -n "$go" ]] || go=/usr/local/go/bin/go
fi
if ! [[ -x "$go" ]] && ! command -v "$go" >/dev/null 2>&1; then
  echo "build.sh: no Go toolchain (set GO, or put go on PATH)" >&2
  exit 1
fi
mkdir -p "$dir"
partial="$binary.partial.$$"
trap 'rm -f "$partial"' EXIT
echo "build.sh: building the Collector $release into $dir (a few minutes, once)" >&2
(
  cd "$here"
  GOFLAGS="-p=1 -buildvcs=false -mod=readonly" GOMAXPROCS="${GOMAXPROCS:-1}" CGO_ENABLED=0 \
    GOTOOLCHAIN=local "$go" build -trimpath -ldflags "-s -w -X main.version=$release" \
    -o "$partial" .
)
mv -f "$partial" "$binary"
echo "$binary"
