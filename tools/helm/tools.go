//go:build tools

// Package tools pins helm (helm.sh/helm/v3/cmd/helm) for scripts/build-tools.sh: it
// renders charts/rauta (helm template, helm lint). Not shipped.
package tools

import (
	_ "helm.sh/helm/v3/cmd/helm"
)
