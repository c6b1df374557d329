#!/usr/bin/env bash
# The router's Rust data plane (orchestrator/router/dataplane_rs, `router.dataplane: rust`): built
# once with cargo and cached by a hash of Cargo.lock and its sources, so a warm cache builds nothing.
# Without cargo this step says so and goes on: the Python data plane (the default) needs nothing.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v cargo >/dev/null; then
  echo "dataplane-rs: cargo not found; skipped (router.dataplane: rust needs it: https://rustup.rs)"
  exit 0
fi
start=$(date +%s)
bin=$(bash orchestrator/router/dataplane_rs/build.sh)
echo "dataplane-rs: $bin ($(( $(date +%s) - start ))s)"
