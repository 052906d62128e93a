package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/overlayd/overlayd/api"
)

// maxLabel is a DNS label's longest.
const maxLabel = 63

// endpointName is the endpoint's name for an attachment: the pod's name
// where the runtime gives it, else the container ID's first 12
// characters (as docker shortens IDs), made a DNS label.
func endpointName(pod, containerID string) string {
	if n := label(pod, maxLabel); n != "" {
		return n
	}
	id := containerID
	if len(id) > 12 {
		id = id[:12]
	}
	if n := label(id, maxLabel); n != "" {
		return n
	}
	return "c-" + shortHash(containerID, "")
}

// fallbackName is the name when another namespace holds base: base and
// eight hex digits of the container ID and interface, within a label.
func fallbackName(base, containerID, ifname string) string {
	h := shortHash(containerID, ifname)
	return strings.TrimRight(label(base, maxLabel-len(h)-1), "-") + "-" + h
}

func shortHash(containerID, ifname string) string {
	s := sha256.Sum256([]byte(containerID + "\x00" + ifname))
	return hex.EncodeToString(s[:4])
}

// label makes s a DNS label of at most limit bytes: lowercase letters,
// digits and '-' (any other byte becomes '-'), neither starting nor
// ending with '-'; "" when nothing of s is left.
func label(s string, limit int) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
		default:
			c = '-'
		}
		b = append(b, c)
	}
	out := strings.Trim(string(b), "-")
	if len(out) > limit {
		out = strings.TrimRight(out[:limit], "-")
	}
	return out
}

// result is the CNI result of an attached endpoint: its interface in the
// sandbox (netns and ifname as the runtime named them), its addresses on
// that interface (one per family of a dual-stack network, each naming
// interface 0), the routes through it and the network's DNS servers.
func result(e api.EndpointInfo, netns, ifname string) (*types100.Result, error) {
	addrs := e.Addrs
	if len(addrs) == 0 { // a daemon without IPv6
		addrs = []string{e.Addr}
	}
	r := &types100.Result{
		CNIVersion: types100.ImplementedSpecVersion,
		Interfaces: []*types100.Interface{{Name: ifname, Mtu: e.MTU, Sandbox: netns}},
	}
	for _, s := range addrs {
		addr, err := netip.ParsePrefix(s)
		if err != nil || addr.Addr().Zone() != "" || addr.Addr().Is4In6() {
			return nil, types.NewError(types.ErrInternal, fmt.Sprintf("overlayd-cni: overlayd answered the address %q for endpoint %s, not an address with its prefix length", s, e.Name), "")
		}
		r.IPs = append(r.IPs, &types100.IPConfig{Interface: types100.Int(0), Address: ipNet(addr)})
	}
	for _, s := range e.Routes {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, types.NewError(types.ErrInternal, fmt.Sprintf("overlayd-cni: overlayd answered the route %q for endpoint %s, not a prefix", s, e.Name), "")
		}
		r.Routes = append(r.Routes, &types.Route{Dst: ipNet(p.Masked())})
	}
	switch {
	case len(e.DNSAddrs) > 0:
		r.DNS.Nameservers = append([]string(nil), e.DNSAddrs...)
	case e.DNS != "":
		r.DNS.Nameservers = []string{e.DNS}
	}
	if e.Search != "" {
		r.DNS.Search = []string{e.Search}
	}
	return r, nil
}

// ipNet is p in the CNI types' form: the address itself (not masked) and
// the prefix's mask.
func ipNet(p netip.Prefix) net.IPNet {
	return net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
