#!/usr/bin/env bash
# Local kind clusters without a registry: builds kind, the Kubernetes binaries, etcd,
# coredns, crictl, pause, the control-plane images and a kind node image, all from the Go
# module proxy and Debian packages (recipes in scripts/kind/). Everything is cached by a
# hash of its recipe, so a second run only checks that the results exist.
# Links kind and kubectl into .venv/bin.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/kind/lib.sh

# gcc (static libc) builds the pause binary.
if ! command -v gcc >/dev/null || ! command -v strip >/dev/null || [ ! -e /usr/lib/x86_64-linux-gnu/libc.a ]; then
  apt-cache policy gcc 2>/dev/null | grep -q 'Candidate: [0-9]' || apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libc6-dev binutils >/dev/null
fi
export PATH="/usr/local/go/bin:$PATH"
command -v go >/dev/null || { echo "kind: Go is required (expected /usr/local/go/bin/go)" >&2; exit 1; }

kind_key=$(recipe_key build-kind.sh KIND_VERSION)
k8s_key=$(recipe_key build-k8s.sh K8S_VERSION)
comp_key=$(recipe_key build-components.sh K8S_VERSION ETCD_VERSION COREDNS_VERSION PAUSE_VERSION CRICTL_VERSION)

# The three builds are independent; run them side by side and wait for all.
pids=()
cached_build kind "$kind_key" build-kind.sh & pids+=($!)
cached_build k8s "$k8s_key" build-k8s.sh & pids+=($!)
cached_build components "$comp_key" build-components.sh & pids+=($!)
rc=0; for p in "${pids[@]}"; do wait "$p" || rc=1; done
[ "$rc" = 0 ] || exit 1

k8s_dir="$MCO_CACHE/k8s-$k8s_key"; comp_dir="$MCO_CACHE/components-$comp_key"
mkdir -p .venv/bin
ln -sf "$MCO_CACHE/kind-$kind_key/bin/kind" .venv/bin/kind
ln -sf "$k8s_dir/bin/kubectl" .venv/bin/kubectl

# Images: keyed by the binaries' keys, the image recipes and the base image.
source scripts/kind/versions.env
base_id=$(docker image inspect -f '{{.Id}}' mco-base/bookworm:latest 2>/dev/null) || {
  echo "kind: the base image mco-base/bookworm:latest is missing; run scripts/setup/15-bookworm-base.sh first" >&2
  exit 1; }
images_key=$( { echo "$k8s_key $comp_key $base_id"; cat scripts/kind/build-images.sh;
                find scripts/kind/node -type f | sort | xargs cat; } | sha256sum | cut -c1-12)
node_tag="mco-kind/node:$K8S_VERSION-$images_key"
if docker image inspect "$node_tag" >/dev/null 2>&1; then
  echo "node image: $node_tag (cached)"
else
  cached_build images "$images_key" build-images.sh "$k8s_dir" "$comp_dir" "$node_tag"
  docker image inspect "$node_tag" >/dev/null 2>&1 || {
    # The cache dir survived but Docker lost the image (e.g. a new data dir): build again.
    rm -rf "$MCO_CACHE/images-$images_key"
    cached_build images "$images_key" build-images.sh "$k8s_dir" "$comp_dir" "$node_tag"; }
fi
docker tag "$node_tag" mco-kind/node:latest
# Node images of earlier recipes are 1+ GB each: drop their tags (running nodes keep theirs).
docker image ls --format '{{.Repository}}:{{.Tag}}' mco-kind/node \
  | grep -vx -e "$node_tag" -e mco-kind/node:latest | xargs -r docker rmi >/dev/null 2>&1 || true
echo "kind: $(.venv/bin/kind version); kubectl $(.venv/bin/kubectl version --client -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])'); node image $node_tag"
