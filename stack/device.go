package stack

import (
	"errors"
	"net/netip"
)

// Layer says what a Device carries.
type Layer int

const (
	// L3 devices carry IP packets with no link header (TUN, the netstack).
	L3 Layer = iota
	// L2 devices carry Ethernet II frames (TAP).
	L2
)

func (l Layer) String() string {
	if l == L2 {
		return "l2"
	}
	return "l3"
}

// Headroom is the offset the router passes to Read and Write. It leaves
// room in front of every packet for the VXLAN and inner Ethernet headers
// (22 bytes) plus a virtio-net header (10 bytes) that a Linux TUN with
// offloads reads and writes in front of the packet.
const Headroom = 64

// ErrClosed is returned by Read and Write after Close.
var ErrClosed = errors.New("stack: device closed")

// Device is an attachment: the host side of the overlay. Its shape is
// wireguard-go's tun.Device. It is defined here only; every
// implementation (TUN, TAP, Netstack) and fake (stacktest.Fake) asserts
// it next to its type (var _ stack.Device = (*Fake)(nil)).
//
// Read and Write may be called concurrently with each other, but Read is
// called from one goroutine only and so is Write. After Close, Read and
// Write return an error that errors.Is(err, ErrClosed) or net.ErrClosed or
// os.ErrClosed; Close is safe to call twice.
type Device interface {
	// Read blocks until at least one packet is available, then reads up to
	// len(bufs) packets (outbound: from the host towards the overlay) into
	// bufs[i][offset:], setting sizes[i], and returns how many it read.
	// len(sizes) >= len(bufs). offset >= Headroom. The device may use
	// bufs[i][:offset] as scratch. The caller owns bufs again on return.
	Read(bufs [][]byte, sizes []int, offset int) (n int, err error)

	// Write delivers packets bufs[i][offset:] (inbound: from the overlay
	// towards the host). The device may scribble on bufs[i][:offset] and, to
	// coalesce packets (GRO), on bufs[i][offset+len:cap]. The caller owns
	// bufs again on return. It returns how many packets it accepted.
	Write(bufs [][]byte, offset int) (int, error)

	// Layer says whether packets are IP packets (L3) or Ethernet frames (L2).
	Layer() Layer
	// MTU is the largest IP packet (L3) or Ethernet payload (L2) the device
	// reads or writes.
	MTU() int
	// BatchSize is the most packets one Read returns; it never changes.
	BatchSize() int
	// Name is the interface name ("ovl0") or a description ("netstack").
	Name() string
	Close() error
}

// AddressSetter is an optional capability of a Device (found by type
// assertion): its own overlay addresses can change while it runs, as the
// node joins and leaves networks.
type AddressSetter interface {
	// SetAddresses makes addrs (each with the prefix it sits in, which is
	// routed to the device) the device's addresses, as a whole snapshot:
	// addresses not in addrs are removed, new ones added, the others kept
	// (connections on them survive). Calling it again with the same set
	// changes nothing. It is safe concurrently with Read and Write.
	SetAddresses(addrs []netip.Prefix) error
}
