package stack

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// configureLink sets the interface's MTU (unless 0), adds its addresses,
// brings it up and points routes at it, through netlink.
func configureLink(name string, mtu int, addrs, routes []netip.Prefix) error {
	return configureLinkAt(&netlink.Handle{}, name, mtu, addrs, routes)
}

// configureLinkAt is configureLink through h, which may be a handle in
// another network namespace (netlink.NewHandleAt). The zero Handle is
// this thread's namespace.
func configureLinkAt(h *netlink.Handle, name string, mtu int, addrs, routes []netip.Prefix) error {
	link, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find link: %w", err)
	}
	if mtu > 0 {
		if err := h.LinkSetMTU(link, mtu); err != nil {
			return fmt.Errorf("set MTU %d: %w", mtu, err)
		}
	}
	for _, p := range addrs {
		a := &netlink.Addr{IPNet: prefixNet(p)}
		if p.Addr().Is6() {
			// Usable at once: no duplicate address detection on a
			// point-to-point overlay device.
			a.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrReplace(link, a); err != nil {
			return fmt.Errorf("add address %v: %w", p, err)
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
	for _, p := range add {
		a := &netlink.Addr{IPNet: prefixNet(p)}
		if p.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := netlink.AddrReplace(link, a); err != nil {
			return fmt.Errorf("add address %v: %w", p, err)
		}
	}
	return nil
}
