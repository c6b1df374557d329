#!/usr/bin/env bash
# HAProxy from Debian: `mco router export --format haproxy` is tested against it, and the
# router benchmark compares mco with it. Idempotent: does nothing when haproxy is present.
set -euo pipefail

if command -v haproxy >/dev/null 2>&1; then
    echo "haproxy present: $(haproxy -v | head -1)"
    exit 0
fi
# shellcheck source=lib/apt.sh
. "$(dirname "$0")/lib/apt.sh"
apt_install haproxy
haproxy -v | sed -n 1p  # sed reads it all: head would leave haproxy a SIGPIPE, fatal under pipefail
