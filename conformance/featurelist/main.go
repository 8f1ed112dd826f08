// Command featurelist prints every Gateway API feature name of the pinned
// sigs.k8s.io/gateway-api module (pkg/features), one per line, sorted:
//
//	<name> <TAB> <support level: core|extended> <TAB> <release channel: standard|experimental> <TAB> <set>
//
// scripts/build-conformance.sh runs it (`go run ./featurelist`) and vendors the output as
// conformance/features-<version>.txt, so that rauta's Python tests can check feature names
// without Go. It fails if the sets below do not cover features.AllFeatures exactly.
package main

import (
	"fmt"
	"os"
	"sort"

	"k8s.io/apimachinery/pkg/util/sets"
	"sigs.k8s.io/gateway-api/pkg/features"
)

type namedSet struct {
	name  string
	level string
	set   sets.Set[features.Feature]
}

func main() {
	all := []namedSet{
		{"GatewayCoreFeatures", "core", features.GatewayCoreFeatures},
		{"GatewayExtendedFeatures", "extended", features.GatewayExtendedFeatures},
		{"ReferenceGrantCoreFeatures", "core", features.ReferenceGrantCoreFeatures},
		{"HTTPRouteCoreFeatures", "core", features.HTTPRouteCoreFeatures},
		{"HTTPRouteExtendedFeatures", "extended", features.HTTPRouteExtendedFeatures},
		{"TLSRouteCoreFeatures", "core", features.TLSRouteCoreFeatures},
		{"TLSRouteExtendedFeatures", "extended", features.TLSRouteExtendedFeatures},
		{"TCPRouteExtendedFeatures", "extended", features.TCPRouteExtendedFeatures},
		{"UDPRouteFeatures", "core", features.UDPRouteFeatures}, // "UDPRoute Conformance (Core)"
		{"MeshCoreFeatures", "core", features.MeshCoreFeatures},
		{"MeshExtendedFeatures", "extended", features.MeshExtendedFeatures},
		{"GRPCRouteCoreFeatures", "core", features.GRPCRouteCoreFeatures},
		{"GRPCRouteExtendedFeatures", "extended", features.GRPCRouteExtendedFeatures},
		{"BackendTLSPolicyCoreFeatures", "core", features.BackendTLSPolicyCoreFeatures},
		{"BackendTLSPolicyExtendedFeatures", "extended", features.BackendTLSPolicyExtendedFeatures},
	}
	seen := map[features.FeatureName]string{}
	var lines []string
	for _, ns := range all {
		for _, f := range ns.set.UnsortedList() {
			if prev, dup := seen[f.Name]; dup {
				fmt.Fprintf(os.Stderr, "featurelist: %s is in both %s and %s\n", f.Name, prev, ns.name)
				os.Exit(1)
			}
			seen[f.Name] = ns.name
			lines = append(lines, fmt.Sprintf("%s\t%s\t%s\t%s", f.Name, ns.level, f.Channel, ns.name))
		}
	}
	if len(seen) != features.AllFeatures.Len() {
		fmt.Fprintf(os.Stderr, "featurelist: %d features listed, features.AllFeatures has %d\n",
			len(seen), features.AllFeatures.Len())
		os.Exit(1)
	}
	for _, f := range features.AllFeatures.UnsortedList() {
		if _, ok := seen[f.Name]; !ok {
			fmt.Fprintf(os.Stderr, "featurelist: %s is in AllFeatures but in no listed set\n", f.Name)
			os.Exit(1)
		}
	}
	sort.Strings(lines)
	for _, l := range lines {
		fmt.Println(l)
	}
}
