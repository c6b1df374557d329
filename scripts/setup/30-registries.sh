#!/usr/bin/env bash
# Local OCI registries for `mco local up registries`: Debian's docker-registry (the CNCF
# distribution registry) and htpasswd (apache2-utils) for the one with basic auth.
# mco starts its own instances on loopback; the packaged system service is not used.
set -euo pipefail

missing=()
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
command -v htpasswd >/dev/null 2>&1 || missing+=(apache2-utils)
if [ ${#missing[@]} -eq 0 ]; then
  echo "registries: docker-registry and htpasswd already installed"
  exit 0
fi
if ! apt-cache policy docker-registry 2>/dev/null | grep -q 'Candidate: [0-9]'; then apt-get update -qq; fi
# policy-rc.d: do not start the packaged registry service on :5000; mco runs its own.
printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d.mco && chmod +x /usr/sbin/policy-rc.d.mco
restore=""
if [ ! -e /usr/sbin/policy-rc.d ]; then cp /usr/sbin/policy-rc.d.mco /usr/sbin/policy-rc.d; restore=1; fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
[ -n "$restore" ] && rm -f /usr/sbin/policy-rc.d
rm -f /usr/sbin/policy-rc.d.mco
echo "registries: installed ${missing[*]}"
