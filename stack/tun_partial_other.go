//go:build !linux

package stack

import "golang.zx2c4.com/wireguard/tun"

// partialIO is the TUN's own offload path; only Linux has one.
type partialIO struct{}

func newPartialIO(tun.Device) *partialIO { return nil }
