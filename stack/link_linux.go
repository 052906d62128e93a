package stack

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// configureLink sets the interface's MTU (unless 0), adds its addresses,
// brings it up and points routes at it, through netlink.
func configureLink(name string, mtu int, addrs, routes []netip.Prefix) error {
	return configureLinkAt(&netlink.Handle{}, func() error { return enableIPv6(name) }, name, mtu, addrs, routes)
}

// configureLinkAt is configureLink through h, which may be a handle in
// another network namespace (netlink.NewHandleAt). The zero Handle is
// this thread's namespace. enable6 is enableIPv6 for the link, run in
// h's namespace; it is called before the first IPv6 address is added.
func configureLinkAt(h *netlink.Handle, enable6 func() error, name string, mtu int, addrs, routes []netip.Prefix) error {
	link, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find link: %w", err)
	}
	if mtu > 0 {
		if err := h.LinkSetMTU(link, mtu); err != nil {
			return fmt.Errorf("set MTU %d: %w", mtu, err)
		}
	}
	if hasIPv6(addrs) {
		if err := enable6(); err != nil {
			return err
		}
	}
	for _, p := range addrs {
		if err := h.AddrReplace(link, linkAddr(p)); err != nil {
			return addrError(name, p, err)
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("bring up: %w", err)
	}
	for _, p := range routes {
		r := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: prefixNet(p.Masked()), Scope: netlink.SCOPE_LINK}
		if err := h.RouteReplace(r); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("add route %v: %w", p, err)
		}
	}
	return nil
}

func prefixNet(p netip.Prefix) *net.IPNet {
	a := p.Addr().Unmap()
	bits := p.Bits()
	if p.Addr().Is4In6() {
		bits -= 96
	}
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, a.BitLen())}
}

// changeAddrs adds and removes interface addresses through netlink.
func changeAddrs(name string, add, del []netip.Prefix) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find link: %w", err)
	}
	for _, p := range del {
		if err := netlink.AddrDel(link, &netlink.Addr{IPNet: prefixNet(p)}); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("remove address %v: %w", p, err)
		}
	}
	if hasIPv6(add) {
		if err := enableIPv6(name); err != nil {
			return err
		}
	}
	for _, p := range add {
		if err := netlink.AddrReplace(link, linkAddr(p)); err != nil {
			return addrError(name, p, err)
		}
	}
	return nil
}

// linkAddr is the netlink address for p. An IPv6 one is usable at once:
// no duplicate address detection (IFA_F_NODAD) on an overlay device,
// whose addresses IPAM hands out without conflicts; the kernel routes
// its prefix to the link as for IPv4. A host-length IPv6 address (/128)
// is a service address beside the node's own (a network's DNS address):
// it is deprecated (preferred lifetime 0, valid forever), so the kernel
// answers on it but never picks it as a source, which RFC 6724's longest
// matching prefix rule would otherwise do for some destinations (IPv4
// takes the source from the subnet route's primary address instead).
func linkAddr(p netip.Prefix) *netlink.Addr {
	a := &netlink.Addr{IPNet: prefixNet(p)}
	if p.Addr().Is6() && !p.Addr().Is4In6() {
		a.Flags = unix.IFA_F_NODAD
		if p.IsSingleIP() {
			a.PreferedLft, a.ValidLft = 0, math.MaxUint32
		}
	}
	return a
}
