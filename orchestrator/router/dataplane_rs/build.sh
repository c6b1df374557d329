#!/usr/bin/env bash
# Builds mco-dataplane (the router's Rust data plane) once, into
# $MCO_CACHE/mco-dataplane-<hash of Cargo.lock, Cargo.toml and src/*.rs>/mco-dataplane, and prints
# the binary's path. A cached build is reused; a change to any input builds anew, incrementally
# (cargo's target directory is kept in $MCO_CACHE/cargo-target/mco-dataplane). The key is the one
# orchestrator/router/rust.py computes to find the binary. Run by `make setup`
# (scripts/setup/56-dataplane-rs.sh). MCO_CARGO_JOBS (default 2) bounds the build's parallelism.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
MCO_CACHE="${MCO_CACHE:-$HOME/.cache/mco}"
export PATH="$HOME/.cargo/bin:$PATH"
key=$(cd "$here" && LC_ALL=C cat Cargo.lock Cargo.toml $(LC_ALL=C ls src/*.rs) | sha256sum | cut -c1-12)
dir="$MCO_CACHE/mco-dataplane-$key"
if [ -x "$dir/mco-dataplane" ]; then echo "$dir/mco-dataplane"; exit 0; fi
command -v cargo >/dev/null || { echo "mco-dataplane: cargo is required (https://rustup.rs)" >&2; exit 1; }
mkdir -p "$MCO_CACHE"
# One build at a time (setup and a test may race); the loser finds the winner's binary.
exec 9>"$MCO_CACHE/mco-dataplane.lock"
flock 9
if [ ! -x "$dir/mco-dataplane" ]; then
  target="$MCO_CACHE/cargo-target/mco-dataplane"
  (cd "$here" && CARGO_TARGET_DIR="$target" nice -n 10 cargo build --release --locked -j "${MCO_CARGO_JOBS:-2}") >&2
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
  cp "$target/release/mco-dataplane" "$dir.tmp/mco-dataplane"
  mv "$dir.tmp" "$dir"
fi
echo "$dir/mco-dataplane"
