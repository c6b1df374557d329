#!/usr/bin/env bash
# promtool from Debian's prometheus package: the tests run `promtool check metrics` on the
# model server's and the router's /metrics (tests/integration/router/test_metrics_promtool.py).
# Idempotent: does nothing when promtool is present.
set -euo pipefail

if command -v promtool >/dev/null 2>&1; then
    echo "promtool present: $(promtool --version 2>&1 | head -1)"
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if ! apt-cache show prometheus >/dev/null 2>&1; then
    $SUDO apt-get update -q
fi
# Only the checker is used: the package's Prometheus service must not start (policy-rc.d
# keeps the postinst from starting it where invoke-rc.d applies).
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get install -y -q --no-install-recommends prometheus
promtool --version 2>&1 | head -1
