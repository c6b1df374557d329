#!/usr/bin/env bash
# Headless Chromium: the model report tests render `mco model report` / `compare` pages
# and check them in a screenshot. Idempotent: does nothing when chromium is present.
set -euo pipefail

for bin in chromium chromium-browser google-chrome; do
    if command -v "$bin" >/dev/null 2>&1; then
        echo "chromium present: $("$bin" --version 2>/dev/null | head -1)"
        exit 0
    fi
done
export DEBIAN_FRONTEND=noninteractive
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if ! apt-cache show chromium >/dev/null 2>&1; then
    $SUDO apt-get update -q
fi
$SUDO apt-get install -y -q --no-install-recommends chromium
chromium --version | head -1
