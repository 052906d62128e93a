// Package stack implements the attachments through which local programs
// reach the overlay: a kernel TUN device (wireguard-go's tun), a TAP device
// (songgao/water), and an embedded gVisor netstack with Dial and Listen, all
// behind one batched Device interface.
package stack
