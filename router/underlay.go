package router

import "net/netip"

// Underlay is the router's view of the underlay socket, and the one
// definition of it: *udp.Conn implements it, and so does the fake
// *udptest.Conn. Neither package may import router (DESIGN.md), so they
// satisfy it structurally and their tests assert it
// (var _ router.Underlay = (*udp.Conn)(nil)).
//
// ReadBatch is called from one goroutine and WriteBatch from any number;
// after Close both return an error that errors.Is(err, net.ErrClosed).
type Underlay interface {
	// ReadBatch blocks until at least one datagram has arrived, then reads
	// up to len(bufs) datagrams, each into bufs[i][0:] (after GRO each
	// bufs[i] holds exactly one datagram), setting sizes[i] and srcs[i].
	// len(sizes) and len(srcs) >= len(bufs).
	ReadBatch(bufs [][]byte, sizes []int, srcs []netip.AddrPort) (n int, err error)

	// WriteBatch sends bufs[i] (one datagram each: the VXLAN header first)
	// to dsts[i]. flows[i], when flows is not nil, is the hash of the inner
	// flow: the socket uses it to pick the outer UDP source port (RFC 7348
	// §5). It may coalesce runs of datagrams to the same destination into
	// one UDP GSO send; it never writes to bufs. It returns how many
	// datagrams it handed to the kernel.
	WriteBatch(bufs [][]byte, dsts []netip.AddrPort, flows []uint32) (n int, err error)

	// BatchSize is the most datagrams one ReadBatch returns.
	BatchSize() int

	// LocalAddr is the address the socket listens on (the VTEP).
	LocalAddr() netip.AddrPort
}

// KernelDropper is an optional capability of an Underlay: the count of
// datagrams the system dropped at the socket before ReadBatch took them
// (its receive buffer was full), since it was opened. *udp.Conn has it on
// Linux. The router reports it beside its own drops, as kernel_rcvbuf.
type KernelDropper interface {
	KernelDrops() (n uint64, ok bool)
}
