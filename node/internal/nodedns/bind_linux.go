package nodedns

import (
	"fmt"
	"syscall"
)

// deviceBinding: host sockets can be bound to one interface, so a packet
// that came in on another never reaches them (SO_BINDTODEVICE). Needs
// Linux 5.7 or CAP_NET_RAW.
const deviceBinding = true

// loopbackDevice is the loopback interface: where packets from the host's
// own programs to its own addresses come in.
const loopbackDevice = "lo"

// bindToDevice is a net.ListenConfig Control that binds the socket to dev.
func bindToDevice(dev string) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptString(int(fd), syscall.SOL_SOCKET, syscall.SO_BINDTODEVICE, dev)
		}); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("bind to device %s (SO_BINDTODEVICE needs Linux 5.7 or CAP_NET_RAW): %w", dev, serr)
		}
		return nil
	}
}
