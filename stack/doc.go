// Package stack implements the attachments through which local programs
// reach the overlay: a kernel TUN device (wireguard-go's tun), a TAP device
// (songgao/water), an embedded gVisor netstack with Dial and Listen, and a
// TUN device inside another network namespace (an endpoint's, optionally
// persistent across restarts), all behind one batched Device interface.
package stack
