package udptest

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// Network connects Conns in memory. Datagrams are copied into the
// destination's bounded queue; a full queue drops (counted per Conn).
type Network struct {
	// QueueLen is each Conn's receive queue, in datagrams. 0 means 1024.
	// Set it before the first Conn.
	QueueLen int

	// BatchSize is what each Conn's BatchSize reports and the most one
	// ReadBatch returns. 0 means 128. Set it before the first Conn.
	BatchSize int

	// Hook, when not nil, sees every datagram on its way and returns how
	// many copies to deliver: 0 drops it, 2 duplicates it. b is the
	// network's own copy; the hook may change it to corrupt the datagram.
	// It runs on the writer's goroutine. Set it before the first write.
	Hook func(src, dst netip.AddrPort, b []byte) (copies int)

	mu       sync.Mutex // guards conns and nextPort
	conns    map[netip.AddrPort]*Conn
	nextPort uint16

	unroutable atomic.Uint64
}

// NewNetwork returns an empty network.
func NewNetwork() *Network {
	return &Network{conns: make(map[netip.AddrPort]*Conn), nextPort: 40000}
}

// Conn attaches a Conn at addr; port 0 picks a free one. It panics if
// addr is taken, as a test bug.
func (n *Network) Conn(addr netip.AddrPort) *Conn {
	n.mu.Lock()
	defer n.mu.Unlock()
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	if addr.Port() == 0 {
		for {
			n.nextPort++
			if n.nextPort == 0 {
				n.nextPort = 1024
			}
			a := netip.AddrPortFrom(addr.Addr(), n.nextPort)
			if n.conns[a] == nil {
				addr = a
				break
			}
		}
	}
	if n.conns[addr] != nil {
		panic(fmt.Sprintf("udptest: address %v already in use", addr))
	}
	ql := n.QueueLen
	if ql <= 0 {
		ql = 1024
	}
	bs := n.BatchSize
	if bs <= 0 {
		bs = 128
	}
	c := &Conn{
		net:    n,
		addr:   addr,
		batch:  bs,
		queue:  make(chan packet, ql),
		closed: make(chan struct{}),
	}
	n.conns[addr] = c
	return c
}

// Unroutable counts datagrams sent to an address with no open Conn.
func (n *Network) Unroutable() uint64 { return n.unroutable.Load() }

func (n *Network) lookup(dst netip.AddrPort) *Conn {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.conns[netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())]
}

type packet struct {
	data []byte
	src  netip.AddrPort
}

// Conn is one endpoint of a Network. It implements router.Underlay and
// router.KernelDropper, as udp.Conn does, plus Close (udptest may not
// import router; its test asserts both). ReadBatch is meant for one
// goroutine, WriteBatch for any number; after Close both return an error
// that errors.Is(err, net.ErrClosed).
type Conn struct {
	net   *Network
	addr  netip.AddrPort
	batch int
	queue chan packet

	closeOnce sync.Once
	closed    chan struct{}

	drops atomic.Uint64
}

var errClosed = fmt.Errorf("udptest: %w", net.ErrClosed)

// ReadBatch blocks until a datagram is queued, then returns up to
// min(len(bufs), BatchSize()) of them; a datagram longer than its buffer
// is truncated.
func (c *Conn) ReadBatch(bufs [][]byte, sizes []int, srcs []netip.AddrPort) (int, error) {
	if c.isClosed() {
		return 0, errClosed
	}
	nb := min(len(bufs), c.batch)
	if nb == 0 {
		return 0, nil
	}
	var p packet
	select {
	case p = <-c.queue:
	case <-c.closed:
		return 0, errClosed
	}
	n := 0
	for {
		sizes[n] = copy(bufs[n], p.data)
		srcs[n] = p.src
		n++
		if n == nb {
			return n, nil
		}
		select {
		case p = <-c.queue:
		default:
			return n, nil
		}
	}
}

// WriteBatch copies bufs[i] into the queue of the Conn at dsts[i]. flows
// is ignored. Like UDP, it reports every datagram as sent, whether or not
// it was delivered, except those to the other family's addresses, which
// it refuses as udp.Conn does (a socket carries one family): they are
// not counted in n, and an error says how many there were.
func (c *Conn) WriteBatch(bufs [][]byte, dsts []netip.AddrPort, flows []uint32) (int, error) {
	if c.isClosed() {
		return 0, errClosed
	}
	bad := 0
	for i, b := range bufs {
		if dsts[i].Addr().Unmap().Is4() != c.addr.Addr().Is4() {
			bad++
			continue
		}
		dst := c.net.lookup(dsts[i])
		if dst == nil || dst.isClosed() {
			c.net.unroutable.Add(1)
			continue
		}
		data := append([]byte(nil), b...)
		copies := 1
		if h := c.net.Hook; h != nil {
			copies = h(c.addr, dsts[i], data)
		}
		for k := range copies {
			if k > 0 {
				data = append([]byte(nil), data...)
			}
			select {
			case dst.queue <- packet{data: data, src: c.addr}:
			default:
				dst.drops.Add(1)
			}
		}
	}
	if bad > 0 {
		return len(bufs) - bad, fmt.Errorf("udptest: write: %d datagrams to addresses of the other family than %v", bad, c.addr)
	}
	return len(bufs), nil
}

// BatchSize is the most datagrams one ReadBatch returns.
func (c *Conn) BatchSize() int { return c.batch }

// LocalAddr is the Conn's address on the network.
func (c *Conn) LocalAddr() netip.AddrPort { return c.addr }

// Offload reports no offloads, as udp.Conn does where it has none.
func (c *Conn) Offload() (gso, gro bool) { return false, false }

// Drops counts datagrams dropped because c's queue was full.
func (c *Conn) Drops() uint64 { return c.drops.Load() }

// KernelDrops is udp.Conn's: c's queue stands for the socket's receive
// buffer, so it reports Drops.
func (c *Conn) KernelDrops() (n uint64, ok bool) { return c.drops.Load(), true }

// Close detaches c from the network and wakes a blocked ReadBatch. It is
// safe to call more than once.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		c.net.mu.Lock()
		if c.net.conns[c.addr] == c {
			delete(c.net.conns, c.addr)
		}
		c.net.mu.Unlock()
	})
	return nil
}

func (c *Conn) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}
