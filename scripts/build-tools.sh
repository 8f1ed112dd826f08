#!/usr/bin/env bash
# Build rauta's render/check tools: kubectl (at the lab's Kubernetes version, from
# tools/kubectl/go.mod) and helm (from tools/helm/go.mod), and kind on request. kubectl renders deploy/
# (`kubectl kustomize`) and checks manifests against the lab (`kubectl apply
# --dry-run=server`); helm renders charts/rauta (`helm template`, `helm lint`).
#
# Idempotent, like scripts/build-lab.sh: the binaries land in a cache directory OUTSIDE
# the repo, keyed by the tool versions, and a binary already there is not built again.
#
#   RAUTA_LAB_CACHE   cache root (default: $HOME/.cache/rauta-lab)
#   RAUTA_LAB_JOBS    go build parallelism (default: 2; the CI machine has 2 cores)
#
#   BUILD_KIND=1      also build kind (tools/kind/go.mod) as bin/kind-<version>
#
# On success the last line printed is TOOLS_DIR=<dir>, which holds bin/kubectl, bin/helm
# (bin/kind-<version> with BUILD_KIND=1) and versions.env.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$REPO/tools"

NAME=build-tools
# shellcheck source=scripts/go-env.sh
source "$REPO/scripts/go-env.sh"

modver() { awk -v m="$2" '($1 == m || ($1 == "require" && $2 == m)) { v = ($1 == m) ? $2 : $3; if (v ~ /^v/) { print v; exit } }' "$SRC/$1/go.mod"; }
K8S_VERSION="$(modver kubectl k8s.io/kubernetes)"
HELM_VERSION="$(modver helm helm.sh/helm/v3)"
LAB_K8S="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ { print $2; exit }' "$REPO/lab/go.mod")"
[ -n "$K8S_VERSION" ] && [ -n "$HELM_VERSION" ] || {
  echo "build-tools: cannot read versions from $SRC/*/go.mod" >&2; exit 2; }
# kubectl is checked against the lab's kube-apiserver: keep it at the same version.
[ "$K8S_VERSION" = "$LAB_K8S" ] || {
  echo "build-tools: tools/kubectl has kubernetes $K8S_VERSION, lab/go.mod $LAB_K8S" >&2; exit 2; }

OUT="$CACHE/tools-kubectl-$K8S_VERSION-helm-$HELM_VERSION"
mkdir -p "$OUT/bin"

now() { date +%s; }
T0=$(now)
echo "build-tools: kubectl $K8S_VERSION, helm $HELM_VERSION ($(go version | awk '{print $3}'))"
echo "build-tools: cache $OUT"

MINOR="${K8S_VERSION#v1.}"; MINOR="${MINOR%%.*}"
VPKG=k8s.io/component-base/version
KLD="-s -w -X $VPKG.gitVersion=$K8S_VERSION -X $VPKG.gitMajor=1 -X $VPKG.gitMinor=$MINOR"
KLD="$KLD -X $VPKG.gitTreeState=clean -X $VPKG.buildDate=1970-01-01T00:00:00Z"
# helm's default Kubernetes version (for `helm template` and `helm lint`) follows its
# client-go, as helm's own Makefile sets it: v0.N.x -> 1.N.
CLIENT_GO="$(cd "$SRC/helm" && go list -m -f '{{.Version}}' k8s.io/client-go)"
HK_MINOR="${CLIENT_GO#v0.}"; HK_MINOR="${HK_MINOR%%.*}"
HLD="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
HLD="$HLD -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for p in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
  HLD="$HLD -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$HK_MINOR"
done

build() {  # build NAME MODULE-DIR PACKAGE LDFLAGS
  local name="$1" dir="$2" pkg="$3" ld="$4"
  if [ -x "$OUT/bin/$name" ]; then
    echo "build-tools: $name cached"
    return
  fi
  local t; t=$(now)
  echo "build-tools: building $name ($pkg) ..."
  (cd "$SRC/$dir" && go mod download && \
   go build -p "$JOBS" -trimpath -ldflags "$ld" -o "$OUT/bin/.$name.tmp" "$pkg")
  mv -f "$OUT/bin/.$name.tmp" "$OUT/bin/$name"
  echo "build-tools: $name built in $(( $(now) - t ))s"
}

build kubectl kubectl k8s.io/kubernetes/cmd/kubectl "$KLD"
build helm helm helm.sh/helm/v3/cmd/helm "$HLD"
# kind only for the kind tier (`make kind-e2e` sets BUILD_KIND=1): bin/kind-<version>.
if [ "${BUILD_KIND:-0}" = 1 ]; then
  KIND_VERSION="$(modver kind sigs.k8s.io/kind)"
  build "kind-$KIND_VERSION" kind sigs.k8s.io/kind "-s -w"
fi

cat > "$OUT/versions.env" <<ENV
K8S_VERSION=$K8S_VERSION
HELM_VERSION=$HELM_VERSION
HELM_KUBE_VERSION=1.$HK_MINOR
ENV

echo "build-tools: done in $(( $(now) - T0 ))s"
echo "TOOLS_DIR=$OUT"
