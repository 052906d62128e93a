package dns

// This file holds Server itself: its options, New, the zone swap, its
// counters and Close. The UDP and TCP serve loops are in serve.go, the
// answering of one query in respond.go.

import (
	"context"
	"io"
	"net/netip"
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
