#!/usr/bin/env bash
# Builds, without any registry, the images a kind cluster needs:
#   - the control-plane images under the exact names `kubeadm config images list` prints
#     (registry.k8s.io/kube-apiserver:v1.34.4, .../etcd:3.6.5-0, .../coredns/coredns:v1.12.1, ...),
#     saved to one archive that the node imports into containerd on first boot;
#   - the node image (node/Dockerfile) with those archives inside.
# usage: build-images.sh OUT_DIR K8S_DIR COMPONENTS_DIR NODE_TAG
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/versions.env"
out="$1"; k8s_bin="$2/bin"; comp_bin="$3/bin"; node_tag="$4"
base="${MCO_BASE_IMAGE:-mco-base/bookworm:latest}"
mkdir -p "$out"
ctx="$(mktemp -d /var/tmp/mco-kind-images.XXXXXX)"
trap 'rm -rf "$ctx"' EXIT
t0=$(date +%s)

# name:tag for each component, straight from kubeadm
declare -A image_of
while read -r ref; do
  name="${ref%:*}"; name="${name##*/}"
  image_of[$name]="$ref"
done < <("$k8s_bin/kubeadm" config images list --kubernetes-version "$K8S_VERSION" 2>/dev/null)
for want in kube-apiserver kube-controller-manager kube-scheduler kube-proxy etcd coredns pause; do
  [ -n "${image_of[$want]:-}" ] || { echo "kubeadm did not list an image for $want" >&2; exit 1; }
done

build() {  # image_ref dockerfile_text files...
  local ref="$1" dockerfile="$2"; shift 2
  local dir="$ctx/${ref//[\/:]/_}"
  mkdir -p "$dir"
  cp "$@" "$dir/"
  printf '%s\n' "$dockerfile" >"$dir/Dockerfile"
  docker build -q -t "$ref" "$dir" >/dev/null
  echo "built $ref"
}

# Static Go binaries need nothing but themselves; kubeadm's manifests call them by name.
for c in kube-apiserver kube-controller-manager kube-scheduler; do
  build "${image_of[$c]}" "FROM scratch
ENV PATH=/usr/local/bin:/usr/bin:/bin
COPY $c /usr/local/bin/$c
ENTRYPOINT [\"/usr/local/bin/$c\"]" "$k8s_bin/$c"
done
build "${image_of[etcd]}" 'FROM scratch
ENV PATH=/usr/local/bin:/usr/bin:/bin
COPY etcd /usr/local/bin/etcd
ENTRYPOINT ["/usr/local/bin/etcd"]' "$comp_bin/etcd"
build "${image_of[coredns]}" 'FROM scratch
COPY coredns /coredns
EXPOSE 53 53/udp
ENTRYPOINT ["/coredns"]' "$comp_bin/coredns"
build "${image_of[pause]}" 'FROM scratch
COPY pause /pause
USER 65535:65535
ENTRYPOINT ["/pause"]' "$comp_bin/pause"
# kube-proxy programs iptables, so it needs the iptables and conntrack tools.
build "${image_of[kube-proxy]}" "FROM $base
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iptables conntrack >/dev/null && rm -rf /var/lib/apt/lists/*
COPY kube-proxy /usr/local/bin/kube-proxy" "$k8s_bin/kube-proxy"
t1=$(date +%s); echo "control-plane images built in $((t1 - t0))s"

# The node image
node_ctx="$ctx/node"
cp -r "$here/node" "$node_ctx"
mkdir -p "$node_ctx/bin" "$node_ctx/kind/images"
cp "$k8s_bin/kubeadm" "$k8s_bin/kubelet" "$k8s_bin/kubectl" "$comp_bin/crictl" "$node_ctx/bin/"
echo "$K8S_VERSION" >"$node_ctx/kind/version"
echo "$PAUSE_VERSION" >"$node_ctx/kind/pause_version"
docker save "${image_of[@]}" -o "$node_ctx/kind/images/control-plane.tar"
sha256sum "$node_ctx/kind/images/control-plane.tar" | cut -c1-16 >"$node_ctx/kind/images/digest"
docker build -q --build-arg "BASE=$base" -t "$node_tag" "$node_ctx" >/dev/null
t2=$(date +%s); echo "node image $node_tag built in $((t2 - t1))s"
printf '%s\n' "${image_of[@]}" >"$out/control-plane-images.txt"
