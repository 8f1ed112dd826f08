// Command etcd is the etcd server at the version k8s.io/kubernetes pins in its own
// go.mod (and tests kube-apiserver against), built from the same module graph as the
// lab's kube-apiserver so no separate download is needed.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
