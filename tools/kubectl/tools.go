//go:build tools

// Package tools pins kubectl (k8s.io/kubernetes/cmd/kubectl, at the lab's Kubernetes
// version) for scripts/build-tools.sh: it renders deploy/ (kubectl kustomize) and
// checks every manifest against the lab (kubectl apply --dry-run=server). Not shipped.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kubectl"
)
