// Command etcd is etcd's own server (etcdmain), built at the version the Kubernetes
// components below were released with, for scripts/test-cluster.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
