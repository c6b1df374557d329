#!/usr/bin/env bash
# The Envoy export checker (tools/envoycheck): Envoy's API from go-control-plane, built once
# and cached by a hash of its source. The router tests validate `mco router export --format envoy` with it.
set -euo pipefail
cd "$(dirname "$0")/../.."
start=$(date +%s)
bin=$(bash tools/envoycheck/build.sh)
echo "envoycheck: $bin ($(( $(date +%s) - start ))s)"
