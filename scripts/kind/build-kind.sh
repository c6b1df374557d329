#!/usr/bin/env bash
# Builds the kind CLI from the Go module proxy.  usage: build-kind.sh OUT_DIR  (writes OUT_DIR/bin/kind)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/versions.env"
out="$1"
export PATH="/usr/local/go/bin:$PATH" CGO_ENABLED=0 GOFLAGS="-trimpath" GOBIN="$out/bin"
mkdir -p "$out/bin"
start=$(date +%s)
go install -ldflags "-s -w" "sigs.k8s.io/kind@$KIND_VERSION"
echo "kind built in $(( $(date +%s) - start ))s"
"$out/bin/kind" version
