package stack

import (
	"net/netip"

	"go.uber.org/zap"
)

// TAPOptions configure OpenTAP.
type TAPOptions struct {
	// Name is the interface name. Default "ovl0".
	Name string
	// MTU is the largest Ethernet payload. Default 1450.
	MTU int
	// Addrs are assigned to the interface (none for a pure bridge port).
	Addrs []netip.Prefix
	// Logger receives lifecycle logs; nil means none.
	Logger *zap.Logger
}
