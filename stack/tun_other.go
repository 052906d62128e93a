//go:build !linux && !darwin

package stack

import (
	"fmt"
	"net/netip"
	"runtime"
)

const (
	defaultTUNName = "ovl0"
	privHint       = "run with administrator rights, or use --mode netstack"
)

func configureTUN(string, TUNOptions) error {
	return fmt.Errorf("configuring a TUN is not supported on %s; use --mode netstack", runtime.GOOS)
}

// CanCreateTUN reports whether OpenTUN can be expected to work: never on
// this OS.
func CanCreateTUN() bool { return false }

func tunName(name string) string {
	if name == "" {
		return defaultTUNName
	}
	return name
}

func changeAddrs(string, []netip.Prefix, []netip.Prefix) error {
	return fmt.Errorf("changing a TUN's addresses is not supported on %s; use --mode netstack", runtime.GOOS)
}
