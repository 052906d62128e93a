package gossiptest

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Network connects in-memory transports. Addresses are fake (198.18.x.y:7946,
// the benchmarking range, never bound to a socket); a name keeps its address
// when a node is restarted, as a real host would. All methods are safe for
// concurrent use.
type Network struct {
	mu     sync.Mutex            // guards the fields below
	byAddr map[string]*Transport // current transport per address
	addrs  map[string]string     // name → address
	groups map[string]int        // name → partition group; absent = group 0
	next   int

	packets, bytes atomic.Uint64
}

// NewNetwork returns an empty, fully connected network.
func NewNetwork() *Network {
	return &Network{byAddr: map[string]*Transport{}, addrs: map[string]string{}, groups: map[string]int{}}
}

// NewTransport returns a transport for the node called name, replacing any
// earlier transport of that name (a restart keeps the address).
func (n *Network) NewTransport(name string) *Transport {
	n.mu.Lock()
	defer n.mu.Unlock()
	addr, ok := n.addrs[name]
	if !ok {
		n.next++
		addr = fmt.Sprintf("198.18.%d.%d:7946", n.next/250, n.next%250+1)
		n.addrs[name] = addr
	}
	t := &Transport{
		net:      n,
		name:     name,
		addr:     addr,
		packetCh: make(chan *memberlist.Packet, 4096),
		streamCh: make(chan net.Conn, 64),
	}
	n.byAddr[addr] = t
	return t
}

// Addr returns the address of the node called name ("" if unknown).
func (n *Network) Addr(name string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.addrs[name]
}

// Partition splits the network: nodes in different groups cannot reach each
// other; nodes in no group form one more group together. Streams already
// open are not cut.
func (n *Network) Partition(groups ...[]string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.groups)
	for i, g := range groups {
		for _, name := range g {
			n.groups[name] = i + 1
		}
	}
}

// Isolate cuts the named nodes off from every other node (and each other).
func (n *Network) Isolate(names ...string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for i, name := range names {
		n.groups[name] = -1 - i
	}
}

// Heal makes every node reachable again.
func (n *Network) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.groups)
}

// Traffic returns the packets and bytes carried so far (stream bytes
// included, counted in both directions).
func (n *Network) Traffic() (packets, bytes uint64) {
	return n.packets.Load(), n.bytes.Load()
}

var errUnreachable = errors.New("gossiptest: host unreachable")

// route returns the destination transport for a message from src to addr,
// or an error if it is unknown, shut down or partitioned away.
func (n *Network) route(src *Transport, addr string) (*Transport, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.routeLocked(src, addr)
}

func (n *Network) routeLocked(src *Transport, addr string) (*Transport, error) {
	dst := n.byAddr[addr]
	if dst == nil || dst.closed.Load() {
		return nil, fmt.Errorf("gossiptest: dial %s: connection refused", addr)
	}
	if n.groups[src.name] != n.groups[dst.name] {
		return nil, errUnreachable
	}
	return dst, nil
}

// Transport is one node's end of a Network.
type Transport struct {
	net      *Network
	name     string
	addr     string
	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	closed   atomic.Bool
}

var _ memberlist.Transport = (*Transport)(nil)

type addr string

func (a addr) Network() string { return "gossiptest" }
func (a addr) String() string  { return string(a) }

// FinalAdvertiseAddr returns the transport's fake address.
func (t *Transport) FinalAdvertiseAddr(string, int) (net.IP, int, error) {
	host, port, err := net.SplitHostPort(t.addr)
	if err != nil {
		return nil, 0, err
	}
	var p int
	fmt.Sscan(port, &p)
	return net.ParseIP(host), p, nil
}

// WriteTo delivers a copy of b to addr, or drops it silently as UDP would
// (partition, unknown or closed peer, full receive queue).
func (t *Transport) WriteTo(b []byte, to string) (time.Time, error) {
	now := time.Now()
	if t.closed.Load() {
		return now, net.ErrClosed
	}
	dst, err := t.net.route(t, to)
	if err != nil {
		return now, nil
	}
	p := &memberlist.Packet{Buf: append([]byte(nil), b...), From: addr(t.addr), Timestamp: now}
	select {
	case dst.packetCh <- p:
		t.net.packets.Add(1)
		t.net.bytes.Add(uint64(len(b)))
	default:
	}
	return now, nil
}

// PacketCh returns the channel of received packets.
func (t *Transport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

// DialTimeout opens an in-memory stream (net.Pipe) to addr.
func (t *Transport) DialTimeout(to string, timeout time.Duration) (net.Conn, error) {
	if t.closed.Load() {
		return nil, net.ErrClosed
	}
	// Routed and queued under the network's lock, so a Shutdown of the
	// destination either comes first (refused) or sees the stream and
	// closes it.
	t.net.mu.Lock()
	defer t.net.mu.Unlock()
	dst, err := t.net.routeLocked(t, to)
	if err != nil {
		return nil, err
	}
	a, b := net.Pipe()
	select {
	case dst.streamCh <- &countConn{Conn: a, n: t.net, local: addr(dst.addr), remote: addr(t.addr)}:
	default:
		a.Close()
		b.Close()
		return nil, fmt.Errorf("gossiptest: dial %s: backlog full", to)
	}
	return &countConn{Conn: b, n: t.net, local: addr(t.addr), remote: addr(dst.addr)}, nil
}

// StreamCh returns the channel of accepted streams.
func (t *Transport) StreamCh() <-chan net.Conn { return t.streamCh }

// Shutdown closes the transport: it sends and accepts nothing more. The
// streams dialled to it that nobody accepted are closed, so their writers
// get an error instead of blocking forever (net.Pipe has no buffer; a real
// host's kernel would reset them).
func (t *Transport) Shutdown() error {
	t.net.mu.Lock()
	t.closed.Store(true)
	t.net.mu.Unlock()
	for {
		select {
		case c := <-t.streamCh:
			c.Close()
		default:
			return nil
		}
	}
}

// countConn counts the bytes written into a stream and gives it addresses.
type countConn struct {
	net.Conn
	n             *Network
	local, remote net.Addr
}

func (c *countConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.n.bytes.Add(uint64(n))
	return n, err
}

func (c *countConn) LocalAddr() net.Addr  { return c.local }
func (c *countConn) RemoteAddr() net.Addr { return c.remote }
