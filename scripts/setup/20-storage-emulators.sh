#!/usr/bin/env bash
# Object-store emulators for `mco local up storage`: one per cloud, real servers on loopback.
#
#   aws    moto's server mode: already in the venv (the dev extra's moto[server]).
#   gcp    fake-gcs-server built with `go install`, cached under $MCO_CACHE by version;
#          without Go the stand-in falls back to gcp-storage-emulator (also in the venv).
#   azure  Azurite from npm, installed under $MCO_CACHE by version.
#
# Decision (measured on this 2-core machine, other builds running):
#   * MinIO via `go install` was abandoned: after 10 minutes it was still compiling its
#     ~1.9 GB of module downloads (hundreds of dependencies). Too heavy for a 60-minute CI,
#     so S3 is moto's server (pure Python, no build). moto does not check Content-MD5 or
#     x-amz-checksum-* on upload; the AWS provider declares that gap and mco still compares
#     the ETag S3 computed with its own md5s after each upload.
#   * fake-gcs-server builds in about 4 minutes from an empty module cache (about 1.5 min
#     when the modules are cached) into a 50 MB binary, cached here, so a second run
#     builds nothing. It speaks GCS's JSON API with resumable uploads, md5Hash and crc32c.
#   * Azurite 3.35.0 is the newest release whose engines field accepts Node 20; install
#     takes about 40 s.
set -euo pipefail
cd "$(dirname "$0")/../.."

cache="${MCO_CACHE:-$HOME/.cache/mco}"
mkdir -p "$cache"
PY=.venv/bin/python
eval "$($PY -m orchestrator.local.storage versions)"   # FAKE_GCS_VERSION, AZURITE_VERSION

# --- aws: moto server (Python, from the dev extra) ----------------------------------------
if [ ! -x .venv/bin/moto_server ]; then
  $PY -m pip install -q 'moto[server]>=5'
fi
echo "storage: moto_server $(.venv/bin/python -c 'import moto; print(moto.__version__)')"

# --- gcp: fake-gcs-server, built once per version ------------------------------------------
fake_dir="$cache/fake-gcs-server-$FAKE_GCS_VERSION"
if [ -x "$fake_dir/fake-gcs-server" ]; then
  echo "storage: fake-gcs-server $FAKE_GCS_VERSION (cached)"
elif command -v go >/dev/null 2>&1; then
  tmp_bin=$(mktemp -d)
  started=$(date +%s)
  if GOBIN="$tmp_bin" GOFLAGS=-trimpath go install -ldflags='-s -w' \
       "github.com/fsouza/fake-gcs-server@$FAKE_GCS_VERSION" >/tmp/mco-fake-gcs-build.log 2>&1; then
    mkdir -p "$fake_dir"
    mv "$tmp_bin/fake-gcs-server" "$fake_dir/fake-gcs-server"
    echo "storage: fake-gcs-server $FAKE_GCS_VERSION built in $(( $(date +%s) - started )) s"
  else
    echo "storage: building fake-gcs-server failed (see /tmp/mco-fake-gcs-build.log);" \
         "the gcp stand-in will use gcp-storage-emulator" >&2
  fi
  rm -rf "$tmp_bin"
else
  echo "storage: Go is not installed; the gcp stand-in will use gcp-storage-emulator"
fi
if [ ! -x .venv/bin/gcp-storage-emulator ]; then
  $PY -m pip install -q 'gcp-storage-emulator>=2024.8'
fi

# --- azure: Azurite from npm ---------------------------------------------------------------
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  if ! apt-cache policy nodejs 2>/dev/null | grep -q Candidate:; then apt-get update -qq; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
az_dir="$cache/azurite-$AZURITE_VERSION"
if [ -x "$az_dir/node_modules/.bin/azurite-blob" ]; then
  echo "storage: azurite $AZURITE_VERSION (cached)"
else
  tmp_dir=$(mktemp -d "$cache/.azurite-XXXXXX")
  chmod 755 "$tmp_dir"
  npm install --prefix "$tmp_dir" --no-audit --no-fund --loglevel=error "azurite@$AZURITE_VERSION" >/dev/null
  rm -rf "$az_dir"
  mv "$tmp_dir" "$az_dir"
  echo "storage: azurite $AZURITE_VERSION installed"
fi
