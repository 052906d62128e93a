//go:build linux

package udp

// This file holds Conn itself: its limits, construction over the opened
// sockets, and Close. Receive is in recv_linux.go, send in send_linux.go,
// socket options in sockopt_linux.go, and the msghdr pieces both use in
// msghdr_linux.go.

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
)

const (
	// maxGSOSegments is the kernel's limit on segments in one UDP GSO send
	// (UDP_MAX_SEGMENTS); GRO never coalesces more either.
	maxGSOSegments = 64
	// maxGSOPayload4 and maxGSOPayload6 bound one GSO send's payload: the
	// IP length field less the IPv4 and UDP headers (IPv6's payload
	// length does not count its own header).
	maxGSOPayload4 = 1<<16 - 1 - 20 - 8
	maxGSOPayload6 = 1<<16 - 1 - 8
	// maxRead is the largest datagram, coalesced or not, a read can
	// return: a GRO read into a shorter buffer would be truncated.
	maxRead = 1<<16 - 1
	// scratchReads is how many coalesced reads go into the Conn's own
	// buffers when the caller's are shorter than maxRead.
	scratchReads = 8
	// oobLen is the control buffer per message: room for one UDP_GRO or
	// UDP_SEGMENT message (a 4- or 2-byte payload) with margin, and a
	// multiple of 8 so every message's buffer stays aligned.
	oobLen = 64
)

// Conn is a UDP underlay socket: batched receive and send with recvmmsg
// and sendmmsg, UDP GSO on send and UDP GRO on receive where the kernel
// has them. It implements router.Underlay and router.KernelDropper (udp
// may not import router; udp_test asserts both).
//
// ReadBatch is meant for one goroutine (calls are serialized); WriteBatch
// may be called from any number at once. After Close both return an error
// that errors.Is(err, net.ErrClosed).
type Conn struct {
	socks  []sock // send sockets; socks[0] is the listening one
	laddr  netip.AddrPort
	is6    bool
	batch  int
	gro    bool        // set at Listen, never changes
	gso    atomic.Bool // cleared for good if the kernel rejects a GSO send
	closed atomic.Bool

	closeOnce sync.Once
	closeErr  error

	rmu sync.Mutex // guards r
	r   reader

	wmu   sync.Mutex // guards wfree
	wfree []*writer  // idle write states; one per concurrent WriteBatch
}

type sock struct {
	pc *net.UDPConn
	rc syscall.RawConn
}

func newConn(pcs []*net.UDPConn, laddr netip.AddrPort, opts Options) (*Conn, error) {
	c := &Conn{laddr: laddr, is6: laddr.Addr().Is6(), batch: opts.BatchSize}
	for _, pc := range pcs {
		rc, err := pc.SyscallConn()
		if err != nil {
			return nil, err
		}
		c.socks = append(c.socks, sock{pc: pc, rc: rc})
	}
	if !opts.DisableOffload {
		gso, gro := enableOffload(c.socks[0].rc)
		c.gso.Store(gso)
		c.gro = gro
	}
	c.r.init(c)
	c.wfree = append(c.wfree, newWriter(c))
	return c, nil
}

// BatchSize is the most datagrams one ReadBatch returns.
func (c *Conn) BatchSize() int { return c.batch }

// Offload reports whether UDP GSO (send) and UDP GRO (receive) are in use.
// GSO turns off for good if the kernel rejects a GSO send.
func (c *Conn) Offload() (gso, gro bool) { return c.gso.Load(), c.gro }

// Close closes every socket of c; a blocked ReadBatch returns. It is safe
// to call more than once; calls after the first return nil.
func (c *Conn) Close() error {
	err := net.ErrClosed
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		var errs []error
		for _, s := range c.socks {
			errs = append(errs, s.pc.Close())
		}
		c.closeErr = errors.Join(errs...)
		err = c.closeErr
	})
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// opError wraps an error from the socket layer; it keeps net.ErrClosed
// visible to errors.Is.
func (c *Conn) opError(op string, err error) error {
	if c.closed.Load() || errors.Is(err, net.ErrClosed) {
		return errClosed
	}
	return fmt.Errorf("udp: %s: %w", op, err)
}
