#!/usr/bin/env bash
# Builds envoycheck (Envoy's own API types and validation rules, from the Go module proxy) once,
# into $MCO_CACHE/envoycheck-<hash of its source, go.mod and go.sum>/envoycheck, and prints
# the binary's path. A cached build is reused; a change to any input builds anew. Run by
# `make setup` (scripts/setup/55-envoycheck.sh) and, if the binary is missing, by the test.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
MCO_CACHE="${MCO_CACHE:-$HOME/.cache/mco}"
export PATH="/usr/local/go/bin:$PATH"
key=$(cd "$here" && LC_ALL=C cat go.mod go.sum $(LC_ALL=C ls *.go) | sha256sum | cut -c1-12)
dir="$MCO_CACHE/envoycheck-$key"
if [ -x "$dir/envoycheck" ]; then echo "$dir/envoycheck"; exit 0; fi
command -v go >/dev/null || { echo "envoycheck: Go is required (expected /usr/local/go/bin/go)" >&2; exit 1; }
mkdir -p "$MCO_CACHE"
# One build at a time (setup and a test may race); the loser finds the winner's binary.
exec 9>"$MCO_CACHE/envoycheck.lock"
flock 9
if [ ! -x "$dir/envoycheck" ]; then
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
  (cd "$here" && GOFLAGS=-mod=readonly nice -n 10 go build -trimpath -o "$dir.tmp/envoycheck" .) >&2
  mv "$dir.tmp" "$dir"
fi
echo "$dir/envoycheck"
