#!/usr/bin/env bash
# The local base image: Debian bookworm minbase from debootstrap, imported into Docker.
# No registry can be reached, so every image mco builds starts from this one.
# Cached twice: the debootstrap rootfs tarball under $MCO_CACHE (keyed by the debootstrap
# recipe, so a fresh Docker data dir re-imports in seconds), and the image whose tag
# carries a hash of this whole script.
set -euo pipefail

cache="${MCO_CACHE:-$HOME/.cache/mco}"
# The model server needs python3 (+venv for the image build); ca-certificates for pulls
# from cloud buckets at startup.
packages="python3,python3-venv,ca-certificates"
rootfs_hash=$(echo "debootstrap minbase bookworm $packages" | sha256sum | cut -c1-12)
rootfs_tar="$cache/bookworm-rootfs-${rootfs_hash}.tar"
recipe_hash=$(sha256sum "$0" | cut -c1-12)
tag="mco-base/bookworm:${recipe_hash}"

if docker image inspect "$tag" >/dev/null 2>&1; then
  docker tag "$tag" mco-base/bookworm:latest
  echo "base image: $tag (cached)"
  exit 0
fi

work=$(mktemp -d /var/tmp/mco-bookworm.XXXXXX)
trap 'rm -rf "$work"' EXIT
if [ ! -s "$rootfs_tar" ]; then
  command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  mkdir -p "$cache"
  debootstrap --variant=minbase --include="$packages" bookworm "$work/root" \
    http://deb.debian.org/debian >/var/tmp/mco-debootstrap.log 2>&1 || {
      echo "debootstrap failed; see /var/tmp/mco-debootstrap.log" >&2; tail -n 20 /var/tmp/mco-debootstrap.log >&2; exit 1; }
  rm -rf "$work"/root/var/cache/apt/archives/*.deb "$work"/root/var/lib/apt/lists/*
  tar -C "$work/root" -cf "$rootfs_tar.tmp" .
  mv "$rootfs_tar.tmp" "$rootfs_tar"
  rm -rf "$work/root"
fi

# Trim what a server never reads (docs, man pages, translations: about 50 MB), so every
# image is smaller and every push compresses less. The dpkg database stays intact.
mkdir -p "$work/trim"
tar -C "$work/trim" -xf "$rootfs_tar"
rm -rf "$work"/trim/usr/share/doc/* "$work"/trim/usr/share/man/* "$work"/trim/usr/share/info/* \
       "$work"/trim/usr/share/locale/* "$work"/trim/var/cache/debconf/*-old "$work"/trim/var/log/*.log
tar -C "$work/trim" -cf - . | docker import - "$tag" >/dev/null
docker tag "$tag" mco-base/bookworm:latest
echo "base image: $tag (imported)"
