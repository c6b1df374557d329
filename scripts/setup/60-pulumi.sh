#!/usr/bin/env bash
# The Pulumi engine for `pulumi preview` / `pulumi up` of infra/, built by default.
#
# The unit tests of infra/ use Pulumi's mocks; tests/integration/infra/ and tests/e2e/infra/
# run the real engine and skip without it, so `make setup` builds it: CI on a fresh machine
# then runs every test. What the engine needs, and what this machine's Go module proxy
# serves (checked 2026-11-21):
#   - the CLI, github.com/pulumi/pulumi/pkg/v3/cmd/pulumi: served at some versions
#     (v3.250.0 yes; v3.270.0 and v3.272.0 refused with 403), so it is built here;
#   - the Python language host, module .../sdk/python/cmd/pulumi-language-python/v3:
#     refused at every version tried, so mco ships its own small host
#     (scripts/pulumi/langhost), built on the SDK module, which is served;
#   - resource plugins (pulumi-kubernetes, -aws, -gcp, -azure-native): refused; without
#     them a program that registers their resources cannot be previewed. Users with
#     internet get them from `pulumi plugin install`.
#
# Building the CLI took 4 min 13 s on a fresh 2-core machine (about 19 min when the cores
# were busy with other builds); see README, 'Pulumi'. A finished build is cached under
# $MCO_CACHE/pulumi-<hash of this recipe>/ and linked into .venv/bin on every later run.
# A failed build stops `make setup` with the reason, rather than leaving the engine tests
# to skip. MCO_BUILD_PULUMI=0 opts out (the engine tests then skip, saying so).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PULUMI_VERSION=v3.250.0
CACHE=${MCO_CACHE:-$HOME/.cache/mco}
HASH=$(cat "${BASH_SOURCE[0]}" "$ROOT/scripts/pulumi/langhost/main.go" | sha256sum | cut -c1-12)
OUT=$CACHE/pulumi-$HASH
BIN=$OUT/bin
VENV_BIN=$ROOT/.venv/bin

skip() {
  echo "pulumi: skipped: $*" >&2
  echo "pulumi: the engine tests (tests/integration/infra/, tests/e2e/infra/) will skip; see README, 'Pulumi'" >&2
  exit 0
}

fail() {
  echo "pulumi: failed: $*" >&2
  echo "pulumi: the engine tests need it; MCO_BUILD_PULUMI=0 skips the build (and those tests); see README, 'Pulumi'" >&2
  exit 1
}

link() {
  [ -d "$VENV_BIN" ] || fail "no .venv yet (run make setup)"
  for f in pulumi pulumi-language-python pulumi-language-python-exec; do
    ln -sf "$BIN/$f" "$VENV_BIN/$f"
  done
  # Python dynamic providers (the Release and KindImageLoad resources of infra/) run as
  # this plugin: the venv's Python serving pulumi.dynamic.
  # infra/ is on the path so the providers, pickled by reference, unpickle as components.*.
  cat > "$VENV_BIN/pulumi-resource-pulumi-python" <<EOS
#!/bin/sh
# Pulumi's Python dynamic-resource provider, run with this venv's interpreter (written by 60-pulumi.sh).
PYTHONPATH="$ROOT/infra\${PYTHONPATH:+:\$PYTHONPATH}" exec "$VENV_BIN/python" -u -m pulumi.dynamic "\$@"
EOS
  chmod +x "$VENV_BIN/pulumi-resource-pulumi-python"
}

if [ -x "$BIN/pulumi" ] && [ -x "$BIN/pulumi-language-python" ] && [ -f "$BIN/pulumi-language-python-exec" ]; then
  link
  echo "pulumi: cached in $OUT ($("$BIN/pulumi" version 2>/dev/null))"
  exit 0
fi

if [ "${MCO_BUILD_PULUMI:-1}" = "0" ]; then
  skip "MCO_BUILD_PULUMI=0: not building the CLI $PULUMI_VERSION"
fi
export PATH="/usr/local/go/bin:$PATH"
command -v go >/dev/null 2>&1 || fail "no Go toolchain on PATH (expected /usr/local/go/bin/go)"

WORK=$OUT.work
rm -rf "$WORK" && mkdir -p "$WORK/cmd/pulumi-language-python" "$BIN" || fail "cannot create $WORK"
# A wrapper module: `go install pkg@version` refuses modules whose go.mod has replace
# directives, and pkg/v3 has them. Its one non-local replace is repeated here.
cat > "$WORK/go.mod" <<EOF
module mco.invalid/pulumi-engine

go 1.25.11

require github.com/pulumi/pulumi/pkg/v3 $PULUMI_VERSION

replace github.com/atotto/clipboard => github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e
EOF
cp "$ROOT/scripts/pulumi/langhost/main.go" "$WORK/cmd/pulumi-language-python/main.go"
cd "$WORK" || fail "cannot enter $WORK"

total_start=$(date +%s)
echo "pulumi: resolving github.com/pulumi/pulumi/pkg/v3@$PULUMI_VERSION and its dependencies"
timeout 900 go get "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi@$PULUMI_VERSION" >get.log 2>&1 \
  || fail "the Go module proxy did not serve pulumi $PULUMI_VERSION or a dependency: $(grep -m1 -E '403|error|not' get.log)"

SDK_DIR=$(go list -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3) || fail "the Pulumi SDK module is missing"
SDK_VERSION=$(go list -m -f '{{.Version}}' github.com/pulumi/pulumi/sdk/v3)
LDFLAGS="-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$PULUMI_VERSION"

echo "pulumi: building the CLI (nice -n 10; log: $WORK/build.log)"
start=$(date +%s)
timeout "${MCO_PULUMI_BUILD_TIMEOUT:-3600}" nice -n 10 go build -trimpath -ldflags "$LDFLAGS" -o "$BIN/pulumi" \
  github.com/pulumi/pulumi/pkg/v3/cmd/pulumi >build.log 2>&1 \
  || fail "building the CLI failed or exceeded ${MCO_PULUMI_BUILD_TIMEOUT:-3600} s: $(tail -n 3 build.log | tr '\n' ' ')"
echo "pulumi: CLI built in $(( $(date +%s) - start )) s"

nice -n 10 go build -mod=mod -trimpath -ldflags "-s -w -X main.version=${SDK_VERSION#v}" \
  -o "$BIN/pulumi-language-python" ./cmd/pulumi-language-python >>build.log 2>&1 \
  || fail "building mco's Python language host failed: $(tail -n 3 build.log | tr '\n' ' ')"
# The SDK's own entry point that runs a program under the engine (it comes with the SDK module).
install -m 0755 "$SDK_DIR/python/cmd/pulumi-language-python-exec" "$BIN/pulumi-language-python-exec" \
  || fail "the SDK module has no python/cmd/pulumi-language-python-exec"

link
echo "pulumi: $("$BIN/pulumi" version) in $OUT, linked into .venv/bin (built in $(( $(date +%s) - total_start )) s)"
