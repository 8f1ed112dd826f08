#!/usr/bin/env bash
# Build the official Gateway API conformance suite and its echo-basic backend, unmodified,
# from the Go module sigs.k8s.io/gateway-api/conformance at the version pinned in
# conformance/go.mod (with sigs.k8s.io/gateway-api at the same version: the conformance
# module's own `replace sigs.k8s.io/gateway-api => ../` does not apply to a dependent).
#
# Idempotent, like scripts/build-lab.sh: everything lands in a cache directory OUTSIDE the
# repo, keyed by the suite's version, and a piece already there is not built again.
#
#   RAUTA_LAB_CACHE   cache root (default: $HOME/.cache/rauta-lab)
#   RAUTA_LAB_JOBS    go build parallelism (default: 2; the CI machine has 2 cores)
#
# Pieces, in $RAUTA_LAB_CACHE/conformance-<version>/:
#   bin/echo-basic        go build  sigs.k8s.io/gateway-api/conformance/echo-basic
#   bin/conformance.test  go test -c sigs.k8s.io/gateway-api/conformance
#                         (the package whose conformance_test.go has TestConformance,
#                         which calls conformance.RunConformance; the base and test
#                         manifests are embedded, so the binary is self-contained)
#   features.txt          every feature name of sigs.k8s.io/gateway-api/pkg/features,
#                         from `go run ./featurelist` (conformance/featurelist/main.go
#                         iterates the Go sets and checks they cover AllFeatures)
#   tests.txt             every test of the suite with the features it needs, from
#                         `go run ./testlist` (conformance/testlist/main.go)
#   versions.env
#
# features.txt and tests.txt are also vendored as conformance/{features,tests}-<version>.txt
# (tests/unit/test_features.py and `python -m rauta.features` read them, without Go). When
# a vendored copy is missing or differs, this script rewrites it and says so: commit it.
#
# On success the last line printed is CONFORMANCE_DIR=<the cache directory>.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$REPO/conformance"

NAME=build-conformance
# shellcheck source=scripts/go-env.sh
source "$REPO/scripts/go-env.sh"

modver() { awk -v m="$1" '$1 == m && $2 ~ /^v/ { print $2; exit }' "$SRC/go.mod"; }
SUITE_VERSION="$(modver sigs.k8s.io/gateway-api/conformance)"
GWAPI_VERSION="$(modver sigs.k8s.io/gateway-api)"
[ -n "$SUITE_VERSION" ] && [ -n "$GWAPI_VERSION" ] || {
  echo "build-conformance: cannot read versions from $SRC/go.mod" >&2; exit 2; }
# The suite refuses CRDs whose bundle-version differs from its own consts.BundleVersion,
# and the lab installs the CRDs of lab/go.mod's gateway-api: keep all three equal.
[ "$SUITE_VERSION" = "$GWAPI_VERSION" ] || {
  echo "build-conformance: conformance $SUITE_VERSION != gateway-api $GWAPI_VERSION in $SRC/go.mod" >&2; exit 2; }

OUT="$CACHE/conformance-$SUITE_VERSION"
mkdir -p "$OUT/bin"

now() { date +%s; }
T0=$(now)
echo "build-conformance: gateway-api/conformance $SUITE_VERSION ($(go version | awk '{print $3}'))"
echo "build-conformance: cache $OUT"

piece() {  # piece NAME CMD...: run CMD (which writes $OUT/bin/.NAME.tmp) unless NAME is built
  local name="$1"; shift
  if [ -x "$OUT/bin/$name" ]; then
    echo "build-conformance: $name cached"
    return
  fi
  local t; t=$(now)
  echo "build-conformance: building $name ..."
  (cd "$SRC" && "$@")
  mv -f "$OUT/bin/.$name.tmp" "$OUT/bin/$name"
  echo "build-conformance: $name built in $(( $(now) - t ))s"
}

piece echo-basic \
  go build -p "$JOBS" -trimpath -ldflags "-s -w" -o "$OUT/bin/.echo-basic.tmp" \
  sigs.k8s.io/gateway-api/conformance/echo-basic
piece conformance.test \
  go test -c -p "$JOBS" -trimpath -ldflags "-s -w" -o "$OUT/bin/.conformance.test.tmp" \
  sigs.k8s.io/gateway-api/conformance

if [ ! -s "$OUT/features.txt" ]; then
  (cd "$SRC" && go run -p "$JOBS" -trimpath ./featurelist) > "$OUT/.features.tmp"
  mv -f "$OUT/.features.tmp" "$OUT/features.txt"
  echo "build-conformance: $(wc -l < "$OUT/features.txt") feature names listed"
fi
if [ ! -s "$OUT/tests.txt" ]; then
  (cd "$SRC" && go run -p "$JOBS" -trimpath ./testlist) > "$OUT/.tests.tmp"
  mv -f "$OUT/.tests.tmp" "$OUT/tests.txt"
  echo "build-conformance: $(wc -l < "$OUT/tests.txt") conformance tests listed"
fi
for list in features tests; do
  VENDORED="$SRC/$list-$SUITE_VERSION.txt"
  if ! cmp -s "$OUT/$list.txt" "$VENDORED"; then
    cp "$OUT/$list.txt" "$VENDORED"
    echo "build-conformance: wrote ${VENDORED#"$REPO"/} (changed: commit it)"
  fi
done

cat > "$OUT/versions.env" <<EOT
CONFORMANCE_VERSION=$SUITE_VERSION
GWAPI_VERSION=$GWAPI_VERSION
EOT

echo "build-conformance: done in $(( $(now) - T0 ))s"
echo "CONFORMANCE_DIR=$OUT"
