# Shared by scripts/setup/50-kind.sh and scripts/kind/*: cache keys and cached builds.
# Every heavy build lands in $MCO_CACHE/<name>-<hash of its recipe>/; a build writes into
# <dir>.tmp and is renamed when it succeeded, so an interrupted build never looks finished.
KIND_RECIPES="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MCO_CACHE="${MCO_CACHE:-$HOME/.cache/mco}"

# recipe_key SCRIPT VAR...: hash of a build script and the version pins it uses
recipe_key() {
  local script="$1"; shift
  { cat "$KIND_RECIPES/$script"; for v in "$@"; do grep "^$v=" "$KIND_RECIPES/versions.env"; done; } \
    | sha256sum | cut -c1-12
}

# cached_build NAME KEY SCRIPT [ARGS...]: run SCRIPT OUT_DIR ARGS unless $MCO_CACHE/NAME-KEY exists
cached_build() {
  local name="$1" key="$2" script="$3"; shift 3
  local dir="$MCO_CACHE/$name-$key" log="$MCO_CACHE/logs/$name-$key.log"
  if [ -d "$dir" ]; then echo "$name: cached ($dir)"; return 0; fi
  mkdir -p "$MCO_CACHE/logs"; rm -rf "$dir.tmp"
  echo "$name: building (log: $log)"
  local start; start=$(date +%s)
  if ! nice -n 10 bash "$KIND_RECIPES/$script" "$dir.tmp" "$@" >"$log" 2>&1; then
    echo "$name: build failed; last lines of $log:" >&2; tail -n 25 "$log" >&2; return 1
  fi
  mv "$dir.tmp" "$dir"
  echo "$name: built in $(( $(date +%s) - start ))s"
}
