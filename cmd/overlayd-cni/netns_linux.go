package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
)

// checkLink says whether the interface ifname in the namespace at netns
// exists, is up and holds every one of addrs (one per family on a
// dual-stack network).
func checkLink(netns, ifname string, addrs []netip.Prefix) error {
	err := ns.WithNetNSPath(netns, func(ns.NetNS) error {
		l, err := netlink.LinkByName(ifname)
		if err != nil {
			var nf netlink.LinkNotFoundError
			if errors.As(err, &nf) {
				return fmt.Errorf("interface %s is gone from %s", ifname, netns)
			}
			return fmt.Errorf("interface %s in %s: %v", ifname, netns, err)
		}
		if l.Attrs().Flags&net.FlagUp == 0 {
			return fmt.Errorf("interface %s in %s is down", ifname, netns)
		}
		as, err := netlink.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			return fmt.Errorf("addresses of %s in %s: %v", ifname, netns, err)
		}
		return missingAddr(netns, ifname, addrs, as)
	})
	var ne ns.NSPathNotExistErr
	var nn ns.NSPathNotNSErr
	switch {
	case errors.As(err, &ne):
		return fmt.Errorf("the namespace %s is gone", netns)
	case errors.As(err, &nn):
		return fmt.Errorf("%s is not a network namespace", netns)
	}
	return err
}

// missingAddr says which of addrs the interface's addresses as lack,
// listing those it has of that family (link-local ones left out).
func missingAddr(netns, ifname string, addrs []netip.Prefix, as []netlink.Addr) error {
	for _, addr := range addrs {
		var have []string
		found := false
		for _, a := range as {
			p, ok := prefixOf(a.IPNet)
			if !ok || p.Addr().Is4() != addr.Addr().Is4() || p.Addr().IsLinkLocalUnicast() {
				continue
			}
			if p == addr {
				found = true
				break
			}
			have = append(have, p.String())
		}
		switch {
		case found:
		case len(have) == 0:
			return fmt.Errorf("interface %s in %s no longer has its address %s (it has none of its family)", ifname, netns, addr)
		default:
			return fmt.Errorf("interface %s in %s no longer has its address %s (it has %v)", ifname, netns, addr, have)
		}
	}
	return nil
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	bits, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), bits), true
}

// netnsGone says whether path no longer names a network namespace (the
// file is gone, or the namespace bound there is: an unmounted
// /var/run/netns/NAME is an empty file).
func netnsGone(path string) bool {
	if path == "" {
		return true
	}
	err := ns.IsNSorErr(path)
	var ne ns.NSPathNotExistErr
	var nn ns.NSPathNotNSErr
	return errors.As(err, &ne) || errors.As(err, &nn)
}
