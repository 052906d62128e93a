//go:build !linux

package nodedns

import (
	"errors"
	"syscall"
)

// deviceBinding: this system cannot bind a socket to one interface for
// what it receives, so a TUN's DNS address is served on one unbound
// socket (see Service.listen).
const deviceBinding = false

const loopbackDevice = ""

func bindToDevice(string) func(network, address string, c syscall.RawConn) error {
	return func(string, string, syscall.RawConn) error {
		return errors.New("binding a socket to a device is not supported on this system")
	}
}
