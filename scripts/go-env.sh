# Sourced by scripts/build-lab.sh and scripts/build-conformance.sh: the one Go build
# environment of rauta's cached binaries. Set NAME (for messages) before sourcing.
#   RAUTA_LAB_CACHE   cache root (default: $HOME/.cache/rauta-lab) -> $CACHE
#   RAUTA_LAB_JOBS    go build parallelism (default: 2; the CI machine has 2 cores) -> $JOBS

# The official tarball's default place, for shells whose PATH lacks it.
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
  export PATH="/usr/local/go/bin:$PATH"
fi
command -v go >/dev/null 2>&1 || { echo "$NAME: go not found on PATH" >&2; exit 3; }

CACHE="${RAUTA_LAB_CACHE:-$HOME/.cache/rauta-lab}"
JOBS="${RAUTA_LAB_JOBS:-2}"
export GOMAXPROCS="${GOMAXPROCS:-$JOBS}"
export GOFLAGS="-mod=readonly -buildvcs=false"   # go.sum is committed: never rewrite it
export GOTOOLCHAIN=local
export CGO_ENABLED=0
# Peak memory of the link steps stays well under the machine's size; keep the GC tight.
export GOGC="${GOGC:-75}"
