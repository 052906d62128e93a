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
// exists, is up and holds addr.
func checkLink(netns, ifname string, addr netip.Prefix) error {
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
		as, err := netlink.AddrList(l, netlink.FAMILY_V4)
		if err != nil {
			return fmt.Errorf("addresses of %s in %s: %v", ifname, netns, err)
		}
		var have []string
		for _, a := range as {
			p, ok := prefixOf(a.IPNet)
			if ok && p == addr {
				return nil
			}
			have = append(have, a.IPNet.String())
		}
		if len(have) == 0 {
			return fmt.Errorf("interface %s in %s no longer has its address %s (it has none)", ifname, netns, addr)
		}
		return fmt.Errorf("interface %s in %s no longer has its address %s (it has %v)", ifname, netns, addr, have)
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
