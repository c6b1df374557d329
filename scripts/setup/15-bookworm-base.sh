#!/usr/bin/env bash
# The local base image: Debian bookworm minbase from debootstrap, imported into Docker.
# No registry can be reached, so every image mco builds starts from this one.
# Cached: the image tag carries a hash of this recipe, and the rootfs tarball is kept
# under $MCO_CACHE so a fresh Docker data dir re-imports in seconds.
set -euo pipefail

cache="${MCO_CACHE:-$HOME/.cache/mco}"
recipe_hash=$( (cat "$0"; echo "bookworm minbase python3 ca-certificates") | sha256sum | cut -c1-12)
tag="mco-base/bookworm:${recipe_hash}"
tarball="$cache/bookworm-base-${recipe_hash}.tar"

if docker image inspect "$tag" >/dev/null 2>&1; then
  docker tag "$tag" mco-base/bookworm:latest
  echo "base image: $tag (cached)"
  exit 0
fi

if [ ! -s "$tarball" ]; then
  command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  mkdir -p "$cache"
  root=$(mktemp -d /var/tmp/mco-bookworm.XXXXXX)
  trap 'rm -rf "$root"' EXIT
  # The model server needs python3; ca-certificates for pulls from cloud buckets at startup.
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" \
    http://deb.debian.org/debian >/var/tmp/mco-debootstrap.log 2>&1 || {
      echo "debootstrap failed; see /var/tmp/mco-debootstrap.log" >&2; tail -n 20 /var/tmp/mco-debootstrap.log >&2; exit 1; }
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
fi
docker import "$tarball" "$tag" >/dev/null
docker tag "$tag" mco-base/bookworm:latest
echo "base image: $tag (imported)"
