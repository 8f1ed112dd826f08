#!/usr/bin/env bash
# Build the rauta test lab: kube-apiserver, kube-controller-manager and etcd from the
# versions pinned in lab/go.mod, plus the Gateway API standard-channel CRDs.
#
# Idempotent: everything lands in a cache directory OUTSIDE the repo, keyed by the
# Kubernetes version, and a piece already there is not built again.
#
#   RAUTA_LAB_CACHE   cache root (default: $HOME/.cache/rauta-lab)
#   RAUTA_LAB_JOBS    go build parallelism (default: 2; the CI machine has 2 cores)
#
# On success the last line printed is the lab directory (LAB_DIR=...), which holds:
#   bin/kube-apiserver bin/kube-controller-manager bin/etcd
#   crds/*.yaml (standard channel)  versions.env
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LAB_SRC="$REPO/lab"

NAME=build-lab
# shellcheck source=scripts/go-env.sh
source "$REPO/scripts/go-env.sh"

modver() { awk -v m="$1" '$1 == m && $2 ~ /^v/ { print $2; exit }' "$LAB_SRC/go.mod"; }
K8S_VERSION="$(modver k8s.io/kubernetes)"
GWAPI_VERSION="$(modver sigs.k8s.io/gateway-api)"
ETCD_VERSION="$(modver go.etcd.io/etcd/server/v3)"
[ -n "$K8S_VERSION" ] && [ -n "$GWAPI_VERSION" ] && [ -n "$ETCD_VERSION" ] || {
  echo "build-lab: cannot read versions from $LAB_SRC/go.mod" >&2; exit 2; }

OUT="$CACHE/k8s-$K8S_VERSION-gwapi-$GWAPI_VERSION-etcd-$ETCD_VERSION"
mkdir -p "$OUT/bin"


now() { date +%s; }
T0=$(now)
echo "build-lab: kubernetes $K8S_VERSION, gateway-api $GWAPI_VERSION, etcd $ETCD_VERSION ($(go version | awk '{print $3}'))"
echo "build-lab: cache $OUT"

MINOR="${K8S_VERSION#v1.}"; MINOR="${MINOR%%.*}"
VPKG=k8s.io/component-base/version
LDFLAGS="-s -w -X $VPKG.gitVersion=$K8S_VERSION -X $VPKG.gitMajor=1 -X $VPKG.gitMinor=$MINOR"
LDFLAGS="$LDFLAGS -X $VPKG.gitTreeState=clean -X $VPKG.buildDate=1970-01-01T00:00:00Z"

build() {  # build NAME PACKAGE [extra ldflags]
  local name="$1" pkg="$2" ld="${3:-}"
  if [ -x "$OUT/bin/$name" ]; then
    echo "build-lab: $name cached"
    return
  fi
  local t; t=$(now)
  echo "build-lab: building $name ($pkg) ..."
  (cd "$LAB_SRC" && go build -p "$JOBS" -trimpath -ldflags "$ld" -o "$OUT/bin/.$name.tmp" "$pkg")
  mv -f "$OUT/bin/.$name.tmp" "$OUT/bin/$name"
  echo "build-lab: $name built in $(( $(now) - t ))s"
}

t=$(now)
(cd "$LAB_SRC" && go mod download)
echo "build-lab: modules ready in $(( $(now) - t ))s"

build etcd ./cmd/etcd "-s -w"
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$LDFLAGS"
build kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager "$LDFLAGS"

if [ ! -f "$OUT/crds/.done" ]; then
  GWDIR="$(cd "$LAB_SRC" && go list -m -f '{{.Dir}}' sigs.k8s.io/gateway-api)"
  [ -d "$GWDIR/config/crd/standard" ] || { echo "build-lab: no $GWDIR/config/crd/standard" >&2; exit 2; }
  rm -rf "$OUT/crds"; mkdir -p "$OUT/crds"
  cp "$GWDIR"/config/crd/standard/*.yaml "$OUT/crds/"
  chmod 0644 "$OUT"/crds/*.yaml   # the module cache is read-only
  touch "$OUT/crds/.done"
  echo "build-lab: $(ls "$OUT"/crds/*.yaml | wc -l) standard-channel CRD files copied"
fi

cat > "$OUT/versions.env" <<EOF
K8S_VERSION=$K8S_VERSION
GWAPI_VERSION=$GWAPI_VERSION
ETCD_VERSION=$ETCD_VERSION
EOF

echo "build-lab: done in $(( $(now) - T0 ))s"
echo "LAB_DIR=$OUT"
