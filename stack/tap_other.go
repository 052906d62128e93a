//go:build !linux

package stack

import (
	"fmt"
	"runtime"
)

// TAP is a kernel TAP device; it exists on Linux only. Elsewhere OpenTAP
// fails and a TAP value does nothing.
type TAP struct{}

var _ Device = (*TAP)(nil)

// OpenTAP fails: TAP devices are supported on Linux only.
func OpenTAP(opts TAPOptions) (*TAP, error) {
	return nil, fmt.Errorf("stack: create TAP %q: not supported on %s; use --mode tun or --mode netstack", opts.Name, runtime.GOOS)
}

// Read implements Device; it always fails with ErrClosed.
func (*TAP) Read([][]byte, []int, int) (int, error) { return 0, ErrClosed }

// Write implements Device; it always fails with ErrClosed.
func (*TAP) Write([][]byte, int) (int, error) { return 0, ErrClosed }

// Layer implements Device: L2.
func (*TAP) Layer() Layer { return L2 }

// MTU implements Device.
func (*TAP) MTU() int { return 0 }

// BatchSize implements Device.
func (*TAP) BatchSize() int { return 1 }

// Name implements Device.
func (*TAP) Name() string { return "tap" }

// Close implements Device.
func (*TAP) Close() error { return nil }
