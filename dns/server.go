package dns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
	"go.uber.org/zap"
)

// DefaultAddr is the host listener for laptops (Options.Addr's default).
const DefaultAddr = "127.0.0.1:5353"

// Options configures a Server. Zero fields take the defaults given.
type Options struct {
	// Addr is where Serve listens, over UDP and TCP. Default DefaultAddr;
	// port 0 picks one, reported to OnListen.
	Addr string
	// OnListen is called by Serve with its address once it listens; nil
	// does nothing.
	OnListen func(addr netip.AddrPort)
	// Allowed says which sources may query on Serve's sockets and on conns
	// handed to ServePacket and ServeListener; others get REFUSED over UDP,
	// have their TCP connection closed at accept, and never cause an
	// upstream query. nil allows loopback sources only.
	// ServePacketAllowed and ServeListenerAllowed take their own.
	Allowed func(netip.Addr) bool
	// Forwarder answers names outside the zone; nil answers them REFUSED.
	Forwarder *Forwarder
	// Logger receives serve-loop errors; nil logs nothing.
	Logger *zap.Logger
	// MaxConcurrent bounds the queries waiting on an upstream at once (the
	// Forwarder's MaxInFlight answers SERVFAIL beyond its own bound); a packet
	// socket stops reading while it is reached. Default 1024.
	MaxConcurrent int
	// PacketReaders is the number of goroutines reading each packet conn.
	// Default: 1 on host UDP sockets, which are read in batches (one reader
	// kept up with dnsperf at ~120k qps on loopback and used less CPU per
	// query than two), and GOMAXPROCS, at most 8, on other conns.
	PacketReaders int
	// TCPIdleTimeout closes TCP connections idle this long. Default 10 s.
	TCPIdleTimeout time.Duration
	// MaxTCPConns bounds the open TCP connections of each listener (each
	// has its own, so a full one leaves the others serving); further
	// connections are closed at once. Only allowed sources take one: a
	// refused source's connection is closed before. Default 256.
	MaxTCPConns int
}

// Server answers DNS queries from the overlay zone and its Forwarder over
// any number of packet conns and stream listeners. All methods are safe for
// concurrent use.
type Server struct {
	addr      string
	onListen  func(netip.AddrPort)
	allowed   func(netip.Addr) bool
	fwd       *Forwarder
	log       *zap.Logger
	sem       chan struct{}
	tcpIdle   time.Duration
	readers   int // 0: the default for each conn
	maxTCP    int
	zone      atomic.Pointer[Zone]
	ctx       context.Context // cancelled by Close
	cancel    context.CancelFunc
	wg        sync.WaitGroup // every goroutine the Server started
	closeOnce sync.Once

	mu      sync.Mutex // guards closed and closers
	closed  bool
	closers map[io.Closer]struct{} // sockets to close on Close

	queries [256]atomic.Uint64 // by qtype; [0] counts qtypes >= 256
	rcodes  [24]atomic.Uint64  // by rcode; [23] counts rcodes >= 23
	dropped atomic.Uint64

	tcpRejected atomic.Uint64
	tcpRefused  atomic.Uint64
}

// New returns a Server with an empty zone for the default domain.
func New(opts Options) (*Server, error) {
	s := &Server{
		addr:     opts.Addr,
		onListen: opts.OnListen,
		allowed:  opts.Allowed,
		fwd:      opts.Forwarder,
		log:      opts.Logger,
		tcpIdle:  opts.TCPIdleTimeout,
		closers:  make(map[io.Closer]struct{}),
	}
	if s.addr == "" {
		s.addr = DefaultAddr
	}
	if s.allowed == nil {
		s.allowed = netip.Addr.IsLoopback
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	s.log = s.log.Named("dns")
	if s.tcpIdle <= 0 {
		s.tcpIdle = 10 * time.Second
	}
	n := opts.MaxConcurrent
	if n <= 0 {
		n = 1024
	}
	s.sem = make(chan struct{}, n)
	s.maxTCP = opts.MaxTCPConns
	if s.maxTCP <= 0 {
		s.maxTCP = 256
	}
	s.readers = max(opts.PacketReaders, 0)
	z, err := NewZone(ZoneData{})
	if err != nil {
		return nil, err
	}
	s.zone.Store(z)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// SetZone builds a zone from d and swaps it in whole; queries see the old or
// the new zone, never a mix. Invalid records are left out and reported in
// the error while the rest is served (see NewZone); an invalid domain or TTL
// keeps the previous zone.
func (s *Server) SetZone(d ZoneData) error {
	z, err := NewZone(d)
	if z != nil {
		s.zone.Store(z)
	}
	return err
}

// Zone returns the zone being served.
func (s *Server) Zone() *Zone { return s.zone.Load() }

// Stats are a Server's counters.
type Stats struct {
	// Queries counts parsed queries by type ("A", "AAAA", …, "other").
	Queries map[string]uint64
	// Responses counts replies sent by rcode ("NOERROR", "NXDOMAIN", …).
	Responses map[string]uint64
	// Dropped counts packets given no reply: shorter than a header, or
	// responses (QR set).
	Dropped uint64
	// TCPRejected counts TCP connections closed because their listener had
	// MaxTCPConns open.
	TCPRejected uint64
	// TCPRefused counts TCP connections closed at accept because their
	// source may not ask.
	TCPRefused uint64
	// Forwarder holds the forwarder's counters (zero without one).
	Forwarder ForwarderStats
}

// Stats returns the Server's counters.
func (s *Server) Stats() Stats {
	st := Stats{Queries: make(map[string]uint64), Responses: make(map[string]uint64), Dropped: s.dropped.Load(),
		TCPRejected: s.tcpRejected.Load(), TCPRefused: s.tcpRefused.Load()}
	for i := range s.queries {
		if v := s.queries[i].Load(); v > 0 {
			name := mdns.TypeToString[uint16(i)]
			if name == "" || i == 0 {
				name = "other"
			}
			st.Queries[name] += v
		}
	}
	for i := range s.rcodes {
		if v := s.rcodes[i].Load(); v > 0 {
			name := mdns.RcodeToString[i]
			if name == "" || i == len(s.rcodes)-1 {
				name = "other"
			}
			st.Responses[name] += v
		}
	}
	if s.fwd != nil {
		st.Forwarder = s.fwd.Stats()
	}
	return st
}

// track registers c to be closed by Close; false if the Server is closed.
func (s *Server) track(c io.Closer) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.closers[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) untrack(c io.Closer) {
	s.mu.Lock()
	delete(s.closers, c)
	s.mu.Unlock()
	s.wg.Done()
}

// Serve listens on Options.Addr over UDP and TCP and answers until ctx ends
// or Close is called; it then closes both sockets and returns nil.
func (s *Server) Serve(ctx context.Context) error {
	pc, ln, err := listenPair(s.addr)
	if err != nil {
		return err
	}
	if s.onListen != nil {
		s.onListen(pc.LocalAddr().(*net.UDPAddr).AddrPort())
	}
	errc := make(chan error, 2)
	go func() { errc <- s.ServePacket(pc) }()
	go func() { errc <- s.ServeListener(ln) }()
	got := 0
	var first error
	select {
	case <-ctx.Done():
	case <-s.ctx.Done():
	case first = <-errc:
		got++
	}
	pc.Close()
	ln.Close()
	for ; got < 2; got++ {
		if err := <-errc; first == nil {
			first = err
		}
	}
	return first
}

// listenPair listens on addr over UDP and TCP on the same port. With port
// 0 it picks a port free for both.
func listenPair(addr string) (net.PacketConn, net.Listener, error) {
	ap, perr := netip.ParseAddrPort(addr)
	for try := 0; ; try++ {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("dns: %w", err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		// A picked port's TCP twin may be taken: pick again.
		if perr != nil || ap.Port() != 0 || try == 20 {
			return nil, nil, fmt.Errorf("dns: %w", err)
		}
	}
}

// ServePacket answers queries arriving on pc until pc fails or Close is
// called, then returns (nil after Close or once pc is closed). The Server
// owns pc from the call: Close closes it. Several goroutines read pc at once
// (Options.PacketReaders); each answers zone and cached names itself and
// hands queries that need an upstream to a goroutine of their own. Source
// addresses are read from *net.UDPAddr (as host sockets and gVisor's gonet
// give) or parsed from Addr.String(). Sources are checked with
// Options.Allowed.
func (s *Server) ServePacket(pc net.PacketConn) error { return s.ServePacketAllowed(pc, nil) }

// ServePacketAllowed is ServePacket with its own access check: allowed
// says which sources may query on pc (nil: Options.Allowed).
func (s *Server) ServePacketAllowed(pc net.PacketConn, allowed func(netip.Addr) bool) error {
	if allowed == nil {
		allowed = s.allowed
	}
	if !s.track(pc) {
		pc.Close()
		return net.ErrClosed
	}
	defer s.untrack(pc)
	defer pc.Close()
	n := s.readers
	if n == 0 {
		n = min(runtime.GOMAXPROCS(0), 8)
		if _, ok := asBatchConn(pc); ok {
			n = 1
		}
	}
	errc := make(chan error, n)
	for range n {
		go func() { errc <- s.readPackets(pc, allowed) }()
	}
	var first error
	for range n {
		if err := <-errc; err != nil && first == nil {
			first = err
			pc.Close() // stop the other readers
		}
	}
	return first
}

func (s *Server) readPackets(pc net.PacketConn, allowed func(netip.Addr) bool) error {
	if bc, ok := asBatchConn(pc); ok {
		return s.readBatches(pc, bc, allowed)
	}
	buf := make([]byte, mdns.MaxMsgSize)
	obuf := make([]byte, mdns.MaxMsgSize+1)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if s.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("dns: read %v: %w", pc.LocalAddr(), err)
		}
		src, ok := addrOf(from)
		if !ok {
			s.dropped.Add(1)
			continue
		}
		out, later := s.respond(allowed, src, buf[:n], false, obuf)
		if later == nil {
			if out != nil {
				pc.WriteTo(out, from)
			}
			continue
		}
		if !s.later(pc, later, from) {
			return nil
		}
	}
}

// later runs a query that waits on an upstream in a goroutine of its own and
// writes its reply to pc. It waits while MaxConcurrent are running, and
// returns false if the Server is closed meanwhile.
func (s *Server) later(pc net.PacketConn, later func(context.Context) []byte, to net.Addr) bool {
	select {
	case s.sem <- struct{}{}:
	case <-s.ctx.Done():
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() { <-s.sem }()
		if out := later(s.ctx); out != nil {
			pc.WriteTo(out, to)
		}
	}()
	return true
}

// ServeListener answers queries on connections accepted from ln until ln
// fails or Close is called, then returns (nil after Close). The Server owns
// ln and its connections: Close closes them and waits for their goroutines.
// A connection whose source Options.Allowed refuses is closed at accept,
// before it takes one of the listener's MaxTCPConns.
func (s *Server) ServeListener(ln net.Listener) error { return s.ServeListenerAllowed(ln, nil) }

// ServeListenerAllowed is ServeListener with its own access check: allowed
// says which sources may connect (nil: Options.Allowed).
func (s *Server) ServeListenerAllowed(ln net.Listener, allowed func(netip.Addr) bool) error {
	if allowed == nil {
		allowed = s.allowed
	}
	if !s.track(ln) {
		ln.Close()
		return net.ErrClosed
	}
	defer s.untrack(ln)
	defer ln.Close()
	open := new(atomic.Int64) // this listener's connections
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("dns: accept %v: %w", ln.Addr(), err)
		}
		// Access first: a refused source never holds a slot.
		src, ok := addrOf(c.RemoteAddr())
		if !ok || !allowed(src) {
			s.tcpRefused.Add(1)
			c.Close()
			continue
		}
		if open.Add(1) > int64(s.maxTCP) {
			open.Add(-1)
			s.tcpRejected.Add(1)
			c.Close()
			continue
		}
		if !s.track(c) {
			open.Add(-1)
			c.Close()
			return nil
		}
		go s.serveConn(c, src, allowed, open)
	}
}

// serveConn answers length-prefixed queries from src on c, one at a time,
// and gives back c's slot in open when it ends. Each query is checked with
// allowed again (the node's networks change).
func (s *Server) serveConn(c net.Conn, src netip.Addr, allowed func(netip.Addr) bool, open *atomic.Int64) {
	defer open.Add(-1)
	defer s.untrack(c)
	defer c.Close()
	for {
		c.SetReadDeadline(time.Now().Add(s.tcpIdle))
		req, err := readTCPMsg(c)
		if err != nil {
			return
		}
		out := s.handleAllowed(s.ctx, allowed, src, req, true)
		if out == nil {
			continue
		}
		msg := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(out)), uint16(len(out)))
		c.SetWriteDeadline(time.Now().Add(s.tcpIdle))
		if _, err := c.Write(append(msg, out...)); err != nil {
			return
		}
	}
}

// Close stops every serve loop, closes the sockets handed to the Server,
// cancels forwarded queries and waits for all goroutines. Safe to call twice.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		s.mu.Lock()
		s.closed = true
		for c := range s.closers {
			c.Close()
		}
		s.mu.Unlock()
	})
	s.wg.Wait()
	return nil
}

func addrOf(a net.Addr) (netip.Addr, bool) {
	switch a := a.(type) {
	case *net.UDPAddr:
		ap := a.AddrPort()
		return ap.Addr().Unmap(), ap.Addr().IsValid()
	case *net.TCPAddr:
		ap := a.AddrPort()
		return ap.Addr().Unmap(), ap.Addr().IsValid()
	case nil:
		return netip.Addr{}, false
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap(), true
}

const headerSize = 12

// handle answers one query from src, checked with Options.Allowed, and
// returns the reply's wire form, or nil when no reply is due. It never
// panics on any input.
func (s *Server) handle(ctx context.Context, src netip.Addr, b []byte, tcp bool) []byte {
	return s.handleAllowed(ctx, s.allowed, src, b, tcp)
}

func (s *Server) handleAllowed(ctx context.Context, allowed func(netip.Addr) bool, src netip.Addr, b []byte, tcp bool) []byte {
	out, later := s.respond(allowed, src, b, tcp, nil)
	if later != nil {
		return later(ctx)
	}
	return out
}

// respond answers b from src without blocking; sources allowed refuses
// get REFUSED. When an upstream must be asked, it returns later instead,
// which asks and returns the reply; later does not keep b. The reply may
// be packed into buf.
func (s *Server) respond(allowed func(netip.Addr) bool, src netip.Addr, b []byte, tcp bool, buf []byte) (out []byte, later func(context.Context) []byte) {
	if len(b) < headerSize {
		s.dropped.Add(1)
		return nil, nil
	}
	flags := binary.BigEndian.Uint16(b[2:])
	if flags&(1<<15) != 0 { // QR: a response, perhaps reflected at us
		s.dropped.Add(1)
		return nil, nil
	}
	if !allowed(src) {
		return s.headerReply(b, mdns.RcodeRefused), nil
	}
	if opcode := int(flags>>11) & 0xf; opcode != mdns.OpcodeQuery {
		return s.headerReply(b, mdns.RcodeNotImplemented), nil
	}
	req := new(mdns.Msg)
	if err := req.Unpack(b); err != nil || len(req.Question) != 1 {
		return s.headerReply(b, mdns.RcodeFormatError), nil
	}
	q := req.Question[0]
	if q.Qtype < uint16(len(s.queries)) {
		s.queries[q.Qtype].Add(1)
	} else {
		s.queries[0].Add(1)
	}
	resp := new(mdns.Msg)
	resp.SetReply(req)
	resp.RecursionAvailable = s.fwd != nil
	opt := req.IsEdns0()
	size := mdns.MinMsgSize
	switch {
	case tcp:
		size = mdns.MaxMsgSize
	case opt != nil:
		size = min(max(int(opt.UDPSize()), mdns.MinMsgSize), EDNSSize)
	}
	if opt != nil && opt.Version() != 0 {
		resp.Rcode = mdns.RcodeBadVers
		resp.SetEdns0(EDNSSize, opt.Do())
		return s.pack(resp, size, buf), nil
	}

	name := strings.ToLower(q.Name)
	z := s.zone.Load()
	if a, ok := z.lookup(name, q.Qtype); ok {
		resp.Authoritative = true
		switch {
		case q.Qclass != mdns.ClassINET && q.Qclass != mdns.ClassANY,
			q.Qtype == mdns.TypeAXFR || q.Qtype == mdns.TypeIXFR:
			resp.Authoritative = false
			resp.Rcode = mdns.RcodeRefused
		default:
			resp.Rcode, resp.Answer, resp.Ns, resp.Extra = a.rcode, a.answer, a.ns, a.extra
		}
		return s.finish(req, resp, size, buf), nil
	}
	if s.fwd == nil {
		resp.Rcode = mdns.RcodeRefused
		return s.finish(req, resp, size, buf), nil
	}
	m, key, ok := s.fwd.fromCache(req)
	if ok {
		s.forwarded(req, resp, m, nil)
		return s.finish(req, resp, size, buf), nil
	}
	return nil, func(ctx context.Context) []byte {
		m, err := s.fwd.exchangeMiss(ctx, req, key)
		s.forwarded(req, resp, m, err)
		return s.finish(req, resp, size, nil)
	}
}

// forwarded fills resp from the forwarder's answer m (or SERVFAIL on err).
// m may be shared with other queries (a cache hit) and is not modified.
func (s *Server) forwarded(req, resp, m *mdns.Msg, err error) {
	if err != nil {
		resp.Rcode = mdns.RcodeServerFailure
		return
	}
	resp.Rcode, resp.Answer, resp.Ns, resp.Extra = m.Rcode, m.Answer, m.Ns, m.Extra
	opt := req.IsEdns0()
	resp.AuthenticatedData = m.AuthenticatedData && (req.AuthenticatedData || opt != nil && opt.Do())
	// A cached answer may carry another client's spelling of the name:
	// answer with the asker's, on copies.
	q := req.Question[0]
	cloned := false
	for i, rr := range resp.Answer {
		if h := rr.Header(); h.Name != q.Name && strings.EqualFold(h.Name, q.Name) {
			if !cloned {
				resp.Answer, cloned = slices.Clone(resp.Answer), true
			}
			rr = mdns.Copy(rr)
			rr.Header().Name = q.Name
			resp.Answer[i] = rr
		}
	}
}

// finish adds the OPT record the client's EDNS0 calls for and packs resp.
func (s *Server) finish(req, resp *mdns.Msg, size int, buf []byte) []byte {
	if opt := req.IsEdns0(); opt != nil {
		resp.SetEdns0(EDNSSize, opt.Do())
	}
	return s.pack(resp, size, buf)
}

func (s *Server) pack(resp *mdns.Msg, size int, buf []byte) []byte {
	resp.Truncate(size) // compresses only when the reply would not fit otherwise
	out, err := resp.PackBuffer(buf)
	if err != nil {
		s.countRcode(mdns.RcodeServerFailure)
		bare := new(mdns.Msg)
		bare.MsgHdr = resp.MsgHdr
		bare.Rcode = mdns.RcodeServerFailure
		out, _ = bare.Pack()
		return out
	}
	s.countRcode(resp.Rcode)
	return out
}

func (s *Server) countRcode(rcode int) {
	if rcode >= 0 && rcode < len(s.rcodes)-1 {
		s.rcodes[rcode].Add(1)
	} else {
		s.rcodes[len(s.rcodes)-1].Add(1)
	}
}

// headerReply is a bare reply to the query header in req: same ID and
// opcode, RD copied, QR set, no sections.
func (s *Server) headerReply(req []byte, rcode int) []byte {
	s.countRcode(rcode)
	out := make([]byte, headerSize)
	copy(out, req[:2])
	flags := binary.BigEndian.Uint16(req[2:])
	flags = 1<<15 | flags&(0xf<<11|1<<8) | uint16(rcode&0xf)
	binary.BigEndian.PutUint16(out[2:], flags)
	return out
}
