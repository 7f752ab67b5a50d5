// Command coredns is CoreDNS with only the plugins the test cluster's DNS needs: the
// kubernetes plugin for cluster.local and the template plugin answering NXDOMAIN for every
// other name. No forward/grpc/etcd/... plugin is compiled in, so it cannot send a query to
// the machine's resolver or any upstream. The custom-main way CoreDNS documents for
// choosing plugins at compile time (see ../../coredns.py for the Corefile).
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/template"
	_ "github.com/coredns/coredns/plugin/whoami"
)

// The subset of upstream's plugin.cfg order (core/dnsserver/zdirectives.go) that we use.
var directives = []string{
	"bind",
	"ready",
	"health",
	"errors",
	"log",
	"cache",
	"template",
	"kubernetes",
	"whoami",
}

func init() {
	dnsserver.Directives = directives
}

func main() {
	coremain.Run()
}
