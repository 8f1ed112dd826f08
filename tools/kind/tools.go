//go:build tools

// Package tools pins kind (sigs.k8s.io/kind) for the kind tier (tests/e2e/kind/,
// `make kind-e2e`), built by scripts/build-tools.sh when asked for (BUILD_KIND=1).
// Not shipped.
package tools

import (
	_ "sigs.k8s.io/kind"
)
