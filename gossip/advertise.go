package gossip

// This file holds the choice of the address a node bound to [::] tells
// its peers.

import (
	"errors"
	"net"
	"net/netip"
)

// ulaPrefix is IPv6's private space (RFC 4193), as memberlist prefers
// RFC 1918 addresses for a node bound to 0.0.0.0.
var ulaPrefix = netip.MustParsePrefix("fc00::/7")

// errNoIPv6 is advertiseIPv6's error when the host has nothing to offer.
var errNoIPv6 = errors.New("this host has no IPv6 address to tell peers (none unique local or global on an interface that is up); give --gossip one of its IPv6 addresses, e.g. [2001:db8::1]:7946")

// advertiseIPv6 picks the address of a node bound to [::]: the host's
// first unique local address, else its first global one, on interfaces
// that are up and not loopback, in the system's order.
func advertiseIPv6() (netip.Addr, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return netip.Addr{}, err
	}
	var addrs []netip.Addr
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		as, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range as {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok {
					addrs = append(addrs, ip)
				}
			}
		}
	}
	return pickIPv6(addrs)
}

// pickIPv6 is advertiseIPv6's rule over a list of addresses.
func pickIPv6(addrs []netip.Addr) (netip.Addr, error) {
	var global netip.Addr
	for _, ip := range addrs {
		if !ip.Is6() || ip.Is4In6() || !ip.IsGlobalUnicast() || ip.Zone() != "" {
			continue
		}
		if ulaPrefix.Contains(ip) {
			return ip, nil
		}
		if !global.IsValid() {
			global = ip
		}
	}
	if !global.IsValid() {
		return netip.Addr{}, errNoIPv6
	}
	return global, nil
}
