package catalog

import (
	"fmt"
	"net/netip"
	"strings"
)

// TableRoutes is the network-scoped table of learned routes.
const TableRoutes = "overlayd.routes"

// Route is a routes entry's value: a node's (or endpoint's) addresses on
// a network, one host prefix per family of the network (a /32, a /128,
// IPv4 first), and the underlay address that hosts them.
type Route struct {
	Prefixes []netip.Prefix
	VTEP     netip.AddrPort
}

// RouteKey is the key of node's routes entry: its name.
func RouteKey(node string) string { return node }

// EndpointRouteKey is the key of the routes entry of node's endpoint
// name: "NODE/NAME". It is also the owner string of the endpoint's IPAM
// lease, which is how a reader checks the entry (its writer holds the
// lease for that very key).
func EndpointRouteKey(node, name string) string { return node + "/" + name }

// RouteName is what a routes entry written by owner names: the node
// itself (endpoint empty) or one of its endpoints. ok is false for a key
// that is neither (a forger's).
func RouteName(owner, key string) (endpoint string, ok bool) {
	if key == owner {
		return "", true
	}
	ep, found := strings.CutPrefix(key, owner+"/")
	if !found || ep == "" || strings.Contains(ep, "/") {
		return "", false
	}
	return ep, true
}

// Encode returns the entry's value, "ADDR/32 VTEP", or "ADDR/32
// ADDR6/128 VTEP" on a dual-stack network ("ADDR6/128 VTEP" on an IPv6
// one). An IPv4 route's value is what nodes without IPv6 wrote; they
// refuse the others as malformed.
func (r Route) Encode() []byte {
	var b []byte
	for _, p := range r.Prefixes {
		b = append(append(b, p.String()...), ' ')
	}
	return append(b, r.VTEP.String()...)
}

// ParseRoute reads a routes entry's value: one or two prefixes, at most
// one per family, IPv4 first (returned masked), and a VTEP with a port.
// Anything else, as a forger may write it, is an error.
func ParseRoute(v []byte) (Route, error) {
	f := strings.Split(string(v), " ")
	if len(f) < 2 || len(f) > 3 {
		return Route{}, fmt.Errorf("catalog: route value: want \"PREFIX [PREFIX6] VTEP\"")
	}
	var r Route
	for i, p := range f[:len(f)-1] {
		pfx, err := netip.ParsePrefix(p)
		switch {
		case err != nil:
			return Route{}, fmt.Errorf("catalog: route value: %w", err)
		case pfx.Addr().Zone() != "" || pfx.Addr().Is4In6():
			return Route{}, fmt.Errorf("catalog: route value: prefix %s is not a plain IPv4 or IPv6 prefix", pfx)
		case i == 1 && (pfx.Addr().Is4() || r.Prefixes[0].Addr().Is6()):
			return Route{}, fmt.Errorf("catalog: route value: two prefixes must be an IPv4 one and an IPv6 one, in that order")
		}
		r.Prefixes = append(r.Prefixes, pfx.Masked())
	}
	vtep, err := netip.ParseAddrPort(f[len(f)-1])
	if err != nil {
		return Route{}, fmt.Errorf("catalog: route value: %w", err)
	}
	if vtep.Port() == 0 {
		return Route{}, fmt.Errorf("catalog: route value: VTEP %s has no port", vtep)
	}
	r.VTEP = vtep
	return r, nil
}
