#!/usr/bin/env bash
# Builds the Kubernetes binaries (kubeadm, kubelet, kubectl, kube-apiserver,
# kube-controller-manager, kube-scheduler, kube-proxy) from the Go module proxy.
#
# k8s.io/kubernetes cannot be `go install`ed: its go.mod points every staging module
# (k8s.io/api, k8s.io/client-go, ...) at ./staging/src/... . So we build through a
# wrapper module that requires k8s.io/kubernetes and replaces each staging module
# with its published v0.MINOR.PATCH twin. The replace list is read from the
# downloaded go.mod, not hand-maintained.
#
# usage: build-k8s.sh OUT_DIR   (writes OUT_DIR/bin/*)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
out="$1"
export PATH="/usr/local/go/bin:$PATH" CGO_ENABLED=0 GOFLAGS="-trimpath -mod=mod"

staging_version="v0.${K8S_VERSION#v1.}"          # v1.34.4 -> v0.34.4
work="$out/wrapper"
mkdir -p "$work" "$out/bin"
cd "$work"

k8s_gomod="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"

{
  echo "module mco.local/k8s-build"
  echo
  grep -m1 '^go ' "$k8s_gomod"
  echo
  echo "require k8s.io/kubernetes $K8S_VERSION"
  echo
  # "	k8s.io/api => ./staging/src/k8s.io/api"  ->  "replace k8s.io/api => k8s.io/api v0.34.4"
  sed -n 's#^[[:space:]]*\(k8s\.io/[^ ]*\) => \./staging/src/.*#replace \1 => \1 '"$staging_version"'#p' "$k8s_gomod"
} > go.mod
grep -c '^replace' go.mod | sed 's/^/staging modules replaced: /'

cmds=(kubeadm kubelet kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy)
pkgs=()
for c in "${cmds[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
go get "${pkgs[@]/%/@$K8S_VERSION}" >/dev/null

# The tag's commit and time come from the proxy's .info record, so `version` reports them truthfully.
info="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Info"])')"
commit="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("Origin",{}).get("Hash",""))' "$info")"
build_date="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["Time"][:19]+"Z")' "$info")"
minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
  ldflags+=" -X $p.gitCommit=$commit -X $p.gitTreeState=clean -X $p.buildDate=$build_date"
done

start=$(date +%s)
go build -ldflags "$ldflags" -o "$out/bin/" "${pkgs[@]}"
echo "k8s binaries built in $(( $(date +%s) - start ))s"
"$out/bin/kubeadm" version -o short
