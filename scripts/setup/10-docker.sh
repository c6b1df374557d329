#!/usr/bin/env bash
# Docker engine from Debian's docker.io, started in the background if none is running.
# No registry can be reached here, so images are built from local bases (15-bookworm-base.sh).
set -euo pipefail

if ! command -v dockerd >/dev/null 2>&1; then
  if ! apt-cache policy docker.io 2>/dev/null | grep -q Candidate:; then apt-get update -qq; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi

if docker info >/dev/null 2>&1; then
  echo "docker: engine already running"
  exit 0
fi

mkdir -p /var/log/mco
# setsid: the engine outlives this script and the make that ran it.
setsid dockerd --host unix:///var/run/docker.sock >/var/log/mco/dockerd.log 2>&1 < /dev/null &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then echo "docker: engine started"; exit 0; fi
  sleep 1
done
echo "docker: dockerd did not come up; see /var/log/mco/dockerd.log" >&2
tail -n 20 /var/log/mco/dockerd.log >&2 || true
exit 1
