#!/usr/bin/env bash
# promtool from Debian's prometheus package: the tests run `promtool check metrics` on the
# model server's and the router's /metrics (tests/integration/router/test_metrics_promtool.py).
# Idempotent: does nothing when promtool is present.
set -euo pipefail

if command -v promtool >/dev/null 2>&1; then
    echo "promtool present: $(promtool --version 2>&1 | head -1)"
    exit 0
fi
# shellcheck source=lib/apt.sh
. "$(dirname "$0")/lib/apt.sh"
# Only the checker is used: the package's Prometheus service must not start.
apt_install prometheus
promtool --version 2>&1 | head -1
