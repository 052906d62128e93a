//go:build !linux

package udp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// Conn is a UDP underlay socket. On this system it has no batched system
// calls: ReadBatch returns one datagram per call and WriteBatch sends one
// at a time. It implements router.Underlay and router.KernelDropper (udp
// may not import router; udp_test asserts both).
//
// ReadBatch is meant for one goroutine; WriteBatch may be called from any
// number at once. After Close both return an error that
// errors.Is(err, net.ErrClosed).
type Conn struct {
	socks  []*net.UDPConn // send sockets; socks[0] is the listening one
	laddr  netip.AddrPort
	closed atomic.Bool

	closeOnce sync.Once
}

func newConn(pcs []*net.UDPConn, laddr netip.AddrPort, _ Options) (*Conn, error) {
	return &Conn{socks: pcs, laddr: laddr}, nil
}

// setBuffers sets the socket buffers as far as the system allows. A
// non-positive size leaves that buffer alone.
func setBuffers(pc *net.UDPConn, rbuf, wbuf int) error {
	if rbuf > 0 {
		_ = pc.SetReadBuffer(rbuf)
	}
	if wbuf > 0 {
		_ = pc.SetWriteBuffer(wbuf)
	}
	return nil
}

// BatchSize is the most datagrams one ReadBatch returns: 1 here.
func (c *Conn) BatchSize() int { return 1 }

// Offload reports whether UDP GSO and GRO are in use: never here.
func (c *Conn) Offload() (gso, gro bool) { return false, false }

// KernelDrops reports how many datagrams the system dropped at the
// listening socket: not known on this system (ok false).
func (c *Conn) KernelDrops() (n uint64, ok bool) { return 0, false }

// Close closes every socket of c; a blocked ReadBatch returns. It is safe
// to call more than once; calls after the first return nil.
func (c *Conn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		var errs []error
		for _, s := range c.socks {
			errs = append(errs, s.Close())
		}
		err = errors.Join(errs...)
	})
	return err
}

func (c *Conn) opError(op string, err error) error {
	if c.closed.Load() || errors.Is(err, net.ErrClosed) {
		return errClosed
	}
	return fmt.Errorf("udp: %s: %w", op, err)
}

// ReadBatch blocks until a datagram arrives and returns it in
// bufs[0][:sizes[0]] from srcs[0].
func (c *Conn) ReadBatch(bufs [][]byte, sizes []int, srcs []netip.AddrPort) (int, error) {
	if c.closed.Load() {
		return 0, errClosed
	}
	if len(bufs) == 0 {
		return 0, nil
	}
	n, _, _, src, err := c.socks[0].ReadMsgUDPAddrPort(bufs[0], nil)
	if err != nil {
		return 0, c.opError("read", err)
	}
	sizes[0] = n
	srcs[0] = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	return 1, nil
}

// WriteBatch sends bufs[i] to dsts[i], from socket flows[i] % SourcePorts
// when flows is not nil. It returns how many datagrams were sent; a
// datagram the system refuses, or one to the other family's address, is
// skipped and the first error returned.
func (c *Conn) WriteBatch(bufs [][]byte, dsts []netip.AddrPort, flows []uint32) (int, error) {
	if c.closed.Load() {
		return 0, errClosed
	}
	var (
		n        int
		firstErr error
	)
	bad := 0
	for i, b := range bufs {
		if dsts[i].Addr().Unmap().Is4() != c.laddr.Addr().Is4() {
			bad++ // the other family's: the socket carries one (Listen)
			continue
		}
		s := c.socks[0]
		if flows != nil {
			s = c.socks[flows[i]%uint32(len(c.socks))]
		}
		if _, err := s.WriteToUDPAddrPort(b, dsts[i]); err != nil {
			err = c.opError("write", err)
			if errors.Is(err, net.ErrClosed) {
				return n, err
			}
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		n++
	}
	if bad > 0 && firstErr == nil {
		fam := "IPv4"
		if !c.laddr.Addr().Is4() {
			fam = "IPv6"
		}
		firstErr = fmt.Errorf("udp: write: %d datagrams to addresses a %s socket cannot reach", bad, fam)
	}
	return n, firstErr
}
