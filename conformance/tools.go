//go:build tools

// Package tools pins, for `go mod tidy`, the packages scripts/build-conformance.sh builds
// from the module cache: the official suite's test package and echo-basic. It is never
// compiled (build tag `tools`). The only Go code of rauta's own here is ./featurelist.
package tools

import (
	_ "sigs.k8s.io/gateway-api/conformance"
	_ "sigs.k8s.io/gateway-api/conformance/echo-basic"
)
