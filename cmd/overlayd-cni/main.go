package main

import (
	"os"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"
)

// buildVersion is the build's, set by make (-X main.buildVersion=...).
var buildVersion = "dev"

// supported are the CNI spec versions the plugin speaks: 1.0.0 and 1.1.0
// (STATUS and GC), and 0.3.x and 0.4.0 (CHECK) for older runtimes; the
// result is converted to the configuration's version.
var supported = version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")

func main() {
	p := &plugin{
		stdout:         os.Stdout,
		checkLink:      checkLink,
		netnsGone:      netnsGone,
		attachTimeout:  attachTimeout,
		requestTimeout: requestTimeout,
	}
	skel.PluginMainFuncs(p.funcs(), supported, "overlayd-cni "+buildVersion+": attaches containers to overlayd networks (CNI plugin)")
}
