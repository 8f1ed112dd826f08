#!/usr/bin/env bash
# Run the official Gateway API conformance suite (built, unmodified, by
# scripts/build-conformance.sh) against the cluster of $KUBECONFIG, GATEWAY-HTTP profile.
#
#   KUBECONFIG                 required: the cluster rauta controls
#   RAUTA_GATEWAY_CLASS        GatewayClass the suite uses (default: rauta); the suite does
#                              not create it: it must exist and be Accepted by rauta
#   RAUTA_CONFORMANCE_DIR      a built conformance directory (default: build-conformance.sh's)
#   RAUTA_CONFORMANCE_URL      implementation url for the report (default below)
#   RAUTA_CONFORMANCE_CONTACT  implementation contact for the report (default below)
#   PYTHON                     interpreter for rauta.features (default: .venv/bin/python)
#
# Supported features come from rauta's one list: `python -m rauta.features --flag`.
# The report goes to conformance/reports/<suite version>/rauta.yaml. Extra arguments are
# passed to the suite, e.g. --run-test=HTTPRouteSimpleSameNamespace --disable-parallel-tests
# --debug --timeout-config-overrides=NamespacesMustBeReady:40.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ -n "${KUBECONFIG:-}" ] || { echo "run-conformance: set KUBECONFIG" >&2; exit 2; }
[ -f "$KUBECONFIG" ] || { echo "run-conformance: no file KUBECONFIG=$KUBECONFIG" >&2; exit 2; }

if [ -n "${RAUTA_CONFORMANCE_DIR:-}" ]; then
  DIR="$RAUTA_CONFORMANCE_DIR"
else
  DIR="$(bash "$REPO/scripts/build-conformance.sh" | sed -n 's/^CONFORMANCE_DIR=//p' | tail -n 1)"
fi
SUITE="$DIR/bin/conformance.test"
[ -x "$SUITE" ] || { echo "run-conformance: no $SUITE (run scripts/build-conformance.sh)" >&2; exit 2; }
# shellcheck disable=SC1091
. "$DIR/versions.env"   # CONFORMANCE_VERSION, GWAPI_VERSION

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x "$REPO/.venv/bin/python" ]; then PY="$REPO/.venv/bin/python"; else PY=python3; fi
fi
FEATURES="$(cd "$REPO" && PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m rauta.features --flag)"
VERSION="$("$PY" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' \
  "$REPO/pyproject.toml")"

REPORT="$REPO/conformance/reports/$CONFORMANCE_VERSION/rauta.yaml"
mkdir -p "$(dirname "$REPORT")"

echo "run-conformance: suite $CONFORMANCE_VERSION ($SUITE), rauta $VERSION"
echo "run-conformance: supported features: $FEATURES"
exec "$SUITE" \
  -test.run '^TestConformance$' -test.v -test.timeout 60m \
  --kubeconfig="$KUBECONFIG" \
  --gateway-class="${RAUTA_GATEWAY_CLASS:-rauta}" \
  --supported-features="$FEATURES" \
  --conformance-profiles=GATEWAY-HTTP \
  --organization=rauta --project=rauta \
  --url="${RAUTA_CONFORMANCE_URL:-https://example.invalid/rauta}" \
  --version="v$VERSION" \
  --contact="${RAUTA_CONFORMANCE_CONTACT:-rauta-maintainers}" \
  --report-output="$REPORT" \
  "$@"
