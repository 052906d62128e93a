package door

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// Dialer connects into the overlay. address is "IP:port" or
// "[IPv6]:port" (the doors resolve names with the Resolver first).
// network is "tcp" or "udp".
// It must honour ctx's deadline and cancellation, and should wrap a
// syscall.Errno (ECONNREFUSED, ENETUNREACH, EHOSTUNREACH, ETIMEDOUT) where
// one fits, so that the doors report the right error to their clients.
// *stack.Netstack implements it.
type Dialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// DialerFunc adapts a function (such as node.Node.Dial) to a Dialer.
type DialerFunc func(ctx context.Context, network, address string) (net.Conn, error)

// DialContext calls f.
func (f DialerFunc) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return f(ctx, network, address)
}

// PacketListener opens overlay UDP sockets; the SOCKS5 door calls
// ListenPacket("udp", ":0") once per UDP association. The returned
// PacketConn's WriteTo takes a *net.UDPAddr and ReadFrom returns one.
// *stack.Netstack and node.Node implement it.
type PacketListener interface {
	ListenPacket(network, address string) (net.PacketConn, error)
}

// Resolver resolves an overlay DNS name to its addresses, of either
// family or both (A and AAAA), in the order the node prefers them. A nil
// Resolver means IP literals only: names are refused.
//
// The doors try a name's addresses in that order, except that those of a
// family the Dialer has no address of (AddressFamilies) go last, since it
// could not reach them; a failed dial moves on to the next address, each
// attempt given an equal share of what is left of DialTimeout (as
// net.Dialer does). A UDP datagram goes to the first address.
type Resolver func(ctx context.Context, host string) ([]netip.Addr, error)

// AddressFamilies is an optional capability of a Dialer (found by type
// assertion): it reports which address families it has a source address
// of, and so can open connections in. *stack.Netstack has it.
type AddressFamilies interface {
	Families() (ipv4, ipv6 bool)
}

// ErrNotAllowed may be returned (wrapped) by a Dialer or Resolver to
// refuse a destination by policy: SOCKS5 replies 0x02, HTTP 403.
var ErrNotAllowed = errors.New("door: destination not allowed")

// errNoResolver is a name given to a door without a Resolver.
var errNoResolver = errors.New("names are not supported (no resolver)")

// Options are shared by every door. The zero value of each field means
// its default.
type Options struct {
	// Dialer reaches the overlay. Required.
	Dialer Dialer
	// PacketListener opens overlay UDP sockets for SOCKS5 UDP ASSOCIATE;
	// nil makes UDP ASSOCIATE "command not supported".
	PacketListener PacketListener
	// Resolver resolves overlay names; nil means IP literals only.
	Resolver Resolver
	// Authenticate, when not nil, makes the SOCKS5 and HTTP doors ask
	// clients for a user name and password (SOCKS5: RFC 1929; HTTP:
	// Proxy-Authorization Basic) and reports whether they are valid. Nil
	// means no authentication. Forwards never authenticate.
	Authenticate func(user, password string) bool
	// Logger receives lifecycle logs and rate-limited error logs; nil
	// means none.
	Logger *zap.Logger
	// MaxConns is the most client connections (UDP forward: sessions) a
	// door serves at once; beyond it new ones are refused in the
	// protocol's way and counted. Default 1024.
	MaxConns int
	// HandshakeTimeout bounds reading a client's SOCKS5 or HTTP request.
	// Default 10s.
	HandshakeTimeout time.Duration
	// DialTimeout bounds resolving and dialing the destination. Default 15s.
	DialTimeout time.Duration
	// IdleTimeout closes a spliced TCP connection with no traffic either
	// way for this long. Default 15 minutes.
	IdleTimeout time.Duration
	// ProgressTimeout closes a spliced TCP connection when a write either
	// way moves no byte for this long: the side being written to stopped
	// taking data (a peer that is gone, a path that stays broken, a flow
	// whose TCP gave up sending), as nginx's send_timeout does. A client
	// that reads slowly keeps its connection; one that stops reading
	// for this long loses it. Default 2 minutes.
	ProgressTimeout time.Duration
	// UDPIdleTimeout ends a UDP forward session with no datagrams either
	// way for this long. (A SOCKS5 UDP association lives as long as its
	// TCP control connection.) Default 2 minutes.
	UDPIdleTimeout time.Duration
}

const (
	defaultMaxConns         = 1024
	defaultHandshakeTimeout = 10 * time.Second
	defaultDialTimeout      = 15 * time.Second
	defaultIdleTimeout      = 15 * time.Minute
	defaultProgressTimeout  = 2 * time.Minute
	defaultUDPIdleTimeout   = 2 * time.Minute
	// refuseTimeout bounds the exchange in which a connection over the
	// limit is told so.
	refuseTimeout = 2 * time.Second
	// maxDatagram is the largest UDP datagram relayed.
	maxDatagram = 65535
)

func (o Options) withDefaults(door string) (Options, error) {
	if o.Dialer == nil {
		return o, fmt.Errorf("door: %s needs a Dialer", door)
	}
	if o.MaxConns <= 0 {
		o.MaxConns = defaultMaxConns
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = defaultHandshakeTimeout
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = defaultDialTimeout
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = defaultIdleTimeout
	}
	if o.ProgressTimeout <= 0 {
		o.ProgressTimeout = defaultProgressTimeout
	}
	if o.UDPIdleTimeout <= 0 {
		o.UDPIdleTimeout = defaultUDPIdleTimeout
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	return o, nil
}

// spliceTimeouts are the bounds of a spliced connection.
func (o Options) spliceTimeouts() spliceTimeouts {
	return spliceTimeouts{idle: o.IdleTimeout, progress: o.ProgressTimeout}
}

// Reason says why a connection failed or a datagram was dropped.
type Reason int

// The reasons counted in Stats.Failed and Stats.Dropped.
const (
	// ReasonHandshake: the client went away, timed out or failed I/O
	// before its request was read.
	ReasonHandshake Reason = iota
	// ReasonMalformed: the request (or datagram header) did not parse.
	ReasonMalformed
	// ReasonUnsupported: a command, method or address type the door does
	// not serve (SOCKS BIND, HTTP GET, names without a Resolver).
	ReasonUnsupported
	// ReasonNotAllowed: the Dialer or Resolver returned ErrNotAllowed.
	ReasonNotAllowed
	// ReasonAuth: the client did not authenticate.
	ReasonAuth
	// ReasonResolve: the name did not resolve.
	ReasonResolve
	// ReasonRefused: the destination refused the connection.
	ReasonRefused
	// ReasonUnreachable: no route to the destination's network or host.
	ReasonUnreachable
	// ReasonTimeout: resolving or dialing took longer than DialTimeout.
	ReasonTimeout
	// ReasonDial: any other failure to reach the destination.
	ReasonDial
	// ReasonFragmented: a SOCKS5 UDP datagram with FRAG ≠ 0 (dropped).
	ReasonFragmented
	// ReasonForeign: a datagram from an address other than the
	// association's client (dropped).
	ReasonForeign
	// ReasonSend: sending a datagram failed (dropped).
	ReasonSend
	numReasons
)

var reasonNames = [numReasons]string{
	ReasonHandshake:   "handshake",
	ReasonMalformed:   "malformed",
	ReasonUnsupported: "unsupported",
	ReasonNotAllowed:  "not-allowed",
	ReasonAuth:        "auth",
	ReasonResolve:     "resolve",
	ReasonRefused:     "refused",
	ReasonUnreachable: "unreachable",
	ReasonTimeout:     "timeout",
	ReasonDial:        "dial",
	ReasonFragmented:  "fragmented",
	ReasonForeign:     "foreign",
	ReasonSend:        "send",
}

// String returns the reason's metric label ("refused", "timeout", ...).
func (r Reason) String() string {
	if r < 0 || r >= numReasons {
		return "reason(" + strconv.Itoa(int(r)) + ")"
	}
	return reasonNames[r]
}

// Door is what every front door offers: SOCKS5, HTTPProxy and Forwarder.
type Door interface {
	// Start opens the door's host socket and serves it in the background
	// until Close; ctx bounds the start only. A door starts once.
	Start(ctx context.Context) error
	// Addr is the host address the door listens on, nil before Start.
	Addr() net.Addr
	// Stats returns a snapshot of the door's counters.
	Stats() Stats
	// Close stops the door, closes every connection through it and waits
	// for its goroutines. Safe to call twice; Start fails afterwards.
	Close() error
}

var (
	_ Door = (*SOCKS5)(nil)
	_ Door = (*HTTPProxy)(nil)
	_ Door = (*Forwarder)(nil)
)

// Stats are a door's counters. Out is client → overlay, In is
// overlay → client.
type Stats struct {
	// Accepted counts client connections (UDP forward: sessions) taken
	// on; Refused those turned away at MaxConns; Active those open now.
	Accepted, Refused uint64
	Active            int64
	// Failed counts accepted connections that ended before being
	// spliced, by reason; reasons with no count are absent.
	Failed map[Reason]uint64
	// OutBytes and InBytes count payload bytes relayed (TCP stream bytes,
	// UDP datagram payloads).
	OutBytes, InBytes uint64
	// OutPackets and InPackets count UDP datagrams relayed.
	OutPackets, InPackets uint64
	// Dropped counts UDP datagrams not relayed, by reason.
	Dropped map[Reason]uint64
}

// counters are a door's live Stats.
type counters struct {
	accepted, refused     atomic.Uint64
	active                atomic.Int64
	failed, dropped       [numReasons]atomic.Uint64
	outBytes, inBytes     atomic.Uint64
	outPackets, inPackets atomic.Uint64
}

func (c *counters) snapshot() Stats {
	s := Stats{
		Accepted:   c.accepted.Load(),
		Refused:    c.refused.Load(),
		Active:     c.active.Load(),
		OutBytes:   c.outBytes.Load(),
		InBytes:    c.inBytes.Load(),
		OutPackets: c.outPackets.Load(),
		InPackets:  c.inPackets.Load(),
		Failed:     map[Reason]uint64{},
		Dropped:    map[Reason]uint64{},
	}
	for r := range numReasons {
		if v := c.failed[r].Load(); v > 0 {
			s.Failed[r] = v
		}
		if v := c.dropped[r].Load(); v > 0 {
			s.Dropped[r] = v
		}
	}
	return s
}

// door is what every front door shares: a context cancelled by Close, the
// set of open connections to close with it, goroutine accounting, limits
// and counters.
type door struct {
	kind string
	opts Options
	log  *zap.Logger
	cnt  counters

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// refusing counts goroutines telling over-limit clients so; it is
	// bounded by MaxConns too, beyond which clients are just closed.
	refusing atomic.Int64

	mu sync.Mutex
	// conns holds every open connection and socket, guarded by mu, so
	// that Close can close them; closed is set by Close.
	conns   map[io.Closer]struct{}
	closed  bool
	started bool

	errLog rateLimiter
}

func (d *door) init(kind string, opts Options) error {
	o, err := opts.withDefaults(kind)
	if err != nil {
		return err
	}
	d.kind = kind
	d.opts = o
	d.log = o.Logger.Named(kind)
	d.ctx, d.cancel = context.WithCancel(context.Background())
	d.conns = map[io.Closer]struct{}{}
	return nil
}

// track registers c to be closed by Close; it returns false (and closes
// c) if the door is already closed.
func (d *door) track(c io.Closer) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		c.Close()
		return false
	}
	d.conns[c] = struct{}{}
	return true
}

// untrack closes c and forgets it.
func (d *door) untrack(c io.Closer) {
	d.mu.Lock()
	delete(d.conns, c)
	d.mu.Unlock()
	c.Close()
}

// start marks the door started; it fails if it was started or closed.
func (d *door) start() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return fmt.Errorf("door: %s: %w", d.kind, net.ErrClosed)
	}
	if d.started {
		return fmt.Errorf("door: %s already started", d.kind)
	}
	d.started = true
	return nil
}

// goDo runs f in a goroutine that Close waits for; once Close has begun
// it runs nothing and returns false.
func (d *door) goDo(f func()) bool {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return false
	}
	d.wg.Add(1)
	d.mu.Unlock()
	go func() {
		defer d.wg.Done()
		f()
	}()
	return true
}

// close cancels the door's context, closes every tracked connection and
// waits for the door's goroutines. Safe to call twice.
func (d *door) close() {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		d.wg.Wait()
		return
	}
	d.closed = true
	d.cancel()
	cs := d.conns
	d.conns = nil
	d.mu.Unlock()
	for c := range cs {
		c.Close()
	}
	d.wg.Wait()
	d.log.Info("closed")
}

// admit counts a new client connection and says whether it is within
// MaxConns; if so, the caller must call release when it ends.
func (d *door) admit() bool {
	if d.cnt.active.Add(1) > int64(d.opts.MaxConns) {
		d.cnt.active.Add(-1)
		d.cnt.refused.Add(1)
		return false
	}
	d.cnt.accepted.Add(1)
	return true
}

func (d *door) release() { d.cnt.active.Add(-1) }

// refuse runs tell (which reports "over the limit" to the client in its
// protocol) in a goroutine bounded by MaxConns, or just closes c.
func (d *door) refuse(c net.Conn, tell func(net.Conn)) {
	if d.refusing.Add(1) > int64(d.opts.MaxConns) || !d.track(c) {
		d.refusing.Add(-1)
		c.Close()
		return
	}
	if !d.goDo(func() {
		defer d.refusing.Add(-1)
		defer d.untrack(c)
		c.SetDeadline(time.Now().Add(refuseTimeout))
		tell(c)
	}) {
		d.refusing.Add(-1)
		d.untrack(c)
	}
}

// fail counts a failed connection and logs it, rate-limited.
func (d *door) fail(r Reason, client net.Addr, target string, err error) {
	d.cnt.failed[r].Add(1)
	if d.errLog.allow() {
		d.log.Debug("connection failed", zap.Stringer("client", client), zap.String("target", target),
			zap.Stringer("reason", r), zap.Error(err))
	}
}

// serveListener accepts on ln until Close, handing each admitted
// connection to handle and each refused one to tell.
func (d *door) serveListener(ln net.Listener, handle func(net.Conn), tell func(net.Conn)) {
	d.goDo(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				if d.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
					return
				}
				// Out of file descriptors and the like: back off.
				if d.errLog.allow() {
					d.log.Warn("accept", zap.Error(err))
				}
				select {
				case <-time.After(100 * time.Millisecond):
					continue
				case <-d.ctx.Done():
					return
				}
			}
			if !d.admit() {
				d.refuse(c, tell)
				continue
			}
			if !d.track(c) {
				d.release()
				return
			}
			if !d.goDo(func() {
				defer d.release()
				defer d.untrack(c)
				handle(c)
			}) {
				d.release()
				d.untrack(c)
				return
			}
		}
	})
}

// classify says why a dial (or resolve) failed.
func classify(err error) Reason {
	var re *resolveError
	switch {
	case errors.Is(err, ErrNotAllowed):
		return ReasonNotAllowed
	case errors.Is(err, errNoResolver):
		return ReasonUnsupported
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, syscall.ETIMEDOUT), isTimeout(err):
		return ReasonTimeout
	case errors.As(err, &re):
		return ReasonResolve
	case errors.Is(err, syscall.ECONNREFUSED):
		return ReasonRefused
	case errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTUNREACH):
		return ReasonUnreachable
	}
	return ReasonDial
}

// rateLimiter allows one event per second, for error logs.
type rateLimiter struct{ last atomic.Int64 }

func (r *rateLimiter) allow() bool {
	now := time.Now().UnixNano()
	last := r.last.Load()
	return now-last >= int64(time.Second) && r.last.CompareAndSwap(last, now)
}

// lingerTimeout bounds linger.
const lingerTimeout = time.Second

// linger half-closes c after an error reply and discards what the client
// still sends for a moment, so that closing c with unread input does not
// reset the connection before the client has read the reply.
func linger(c net.Conn) {
	cw, ok := c.(closeWriter)
	if !ok {
		return
	}
	if cw.CloseWrite() != nil {
		return
	}
	c.SetReadDeadline(time.Now().Add(lingerTimeout))
	io.Copy(io.Discard, io.LimitReader(c, 64<<10))
}
