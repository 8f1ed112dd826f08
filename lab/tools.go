//go:build tools

// Package tools pins the commands scripts/build-lab.sh builds, so `go mod tidy`
// keeps their modules (and the Gateway API module whose CRDs the lab applies).
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "sigs.k8s.io/gateway-api/apis/v1"
)
