package catalog

import (
	"fmt"
	"net/netip"
	"strings"
)

// TableRoutes is the network-scoped table of learned routes.
const TableRoutes = "overlayd.routes"

// Route is a routes entry's value: a node's address on a network (a /32)
// and the underlay address that hosts it.
type Route struct {
	Prefix netip.Prefix
	VTEP   netip.AddrPort
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

// Encode returns the entry's value, "ADDR/32 VTEP".
func (r Route) Encode() []byte {
	return []byte(r.Prefix.String() + " " + r.VTEP.String())
}

// ParseRoute reads a routes entry's value: one IPv4 prefix (returned
// masked) and a VTEP with a port. Anything else, as a forger may write
// it, is an error.
func ParseRoute(v []byte) (Route, error) {
	p, vt, ok := strings.Cut(string(v), " ")
	if !ok {
		return Route{}, fmt.Errorf("catalog: route value: want \"PREFIX VTEP\"")
	}
	pfx, err := netip.ParsePrefix(p)
	if err != nil {
		return Route{}, fmt.Errorf("catalog: route value: %w", err)
	}
	vtep, err := netip.ParseAddrPort(vt)
	if err != nil {
		return Route{}, fmt.Errorf("catalog: route value: %w", err)
	}
	if !pfx.Addr().Is4() {
		return Route{}, fmt.Errorf("catalog: route value: prefix %s is not IPv4", pfx)
	}
	if vtep.Port() == 0 {
		return Route{}, fmt.Errorf("catalog: route value: VTEP %s has no port", vtep)
	}
	return Route{Prefix: pfx.Masked(), VTEP: vtep}, nil
}
