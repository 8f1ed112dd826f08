// Command testlist prints every test of the pinned conformance suite
// (sigs.k8s.io/gateway-api/conformance/tests.ConformanceTests), one per line, sorted:
//
//	<ShortName> <TAB> <features it needs, comma-separated, sorted> <TAB> <provisional: true|false>
//
// scripts/build-conformance.sh runs it (`go run ./testlist`) and vendors the output as
// conformance/tests-<version>.txt, so that `python -m rauta.features` can tell which
// tests exercised a feature when it renders the README's table from a report, with no Go.
package main

import (
	"fmt"
	"sort"
	"strings"

	"sigs.k8s.io/gateway-api/conformance/tests"
)

func main() {
	var lines []string
	for _, t := range tests.ConformanceTests {
		names := make([]string, 0, len(t.Features))
		for _, f := range t.Features {
			names = append(names, string(f))
		}
		sort.Strings(names)
		lines = append(lines, fmt.Sprintf("%s\t%s\t%t", t.ShortName, strings.Join(names, ","), t.Provisional))
	}
	sort.Strings(lines)
	for _, l := range lines {
		fmt.Println(l)
	}
}
