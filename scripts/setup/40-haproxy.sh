#!/usr/bin/env bash
# HAProxy from Debian: `mco router export --format haproxy` is tested against it, and the
# router benchmark compares mco with it. Idempotent: does nothing when haproxy is present.
set -euo pipefail

if command -v haproxy >/dev/null 2>&1; then
    echo "haproxy present: $(haproxy -v | head -1)"
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if ! apt-cache show haproxy >/dev/null 2>&1; then
    $SUDO apt-get update -q
fi
# The package's own service is not needed (tests run haproxy in the foreground with their
# own config); policy-rc.d keeps the postinst from starting it where invoke-rc.d applies.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get install -y -q --no-install-recommends haproxy
haproxy -v | sed -n 1p  # sed reads it all: head would leave haproxy a SIGPIPE, fatal under pipefail
