//go:build !linux

package main

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
)

// checkLink needs Linux's network namespaces.
func checkLink(netns, ifname string, addrs []netip.Prefix) error {
	return errors.New("CHECK of an interface in a network namespace needs Linux")
}

// netnsGone says whether path is gone.
func netnsGone(path string) bool {
	_, err := os.Stat(path)
	return errors.Is(err, fs.ErrNotExist)
}
