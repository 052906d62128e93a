package door

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Forward describes a local port that reaches an overlay address.
type Forward struct {
	// Listen is the host address to listen on, "127.0.0.1:8080"; port 0
	// picks one.
	Listen string
	// Target is the overlay destination, "web.default.overlay:80" or
	// "10.99.2.1:80". A name is resolved for each connection (TCP) or
	// session (UDP).
	Target string
	// Proto is "tcp" (the default when empty) or "udp".
	Proto string
}

func (f Forward) String() string {
	p := f.Proto
	if p == "" {
		p = "tcp"
	}
	return f.Listen + "=" + f.Target + "/" + p
}

// Forwarder serves one Forward. TCP: each connection accepted on Listen
// is spliced to a new overlay connection to Target. UDP: each client
// address that sends to Listen gets its own overlay UDP session to
// Target, whose replies go back to that client; a session ends after
// UDPIdleTimeout without datagrams either way. MaxConns bounds the
// connections or sessions at once: beyond it, TCP connections are closed
// at once and UDP datagrams from new clients dropped, both counted as
// Refused.
type Forwarder struct {
	tcpDoor
	fwd   Forward
	proto string
	host  string
	port  uint16

	pc       *net.UDPConn // UDP only, set by Start
	smu      sync.Mutex
	sessions map[netip.AddrPort]*udpSession // guarded by smu
}

// NewForward checks f and returns its Forwarder, not yet listening.
func NewForward(f Forward, opts Options) (*Forwarder, error) {
	fw := &Forwarder{fwd: f, proto: f.Proto, sessions: map[netip.AddrPort]*udpSession{}}
	if fw.proto == "" {
		fw.proto = "tcp"
	}
	if fw.proto != "tcp" && fw.proto != "udp" {
		return nil, fmt.Errorf("door: forward %s: protocol %q is not tcp or udp", f, f.Proto)
	}
	if _, _, err := net.SplitHostPort(f.Listen); err != nil {
		if herr := bracketHint(f.Listen); herr != nil {
			err = herr
		}
		return nil, fmt.Errorf("door: forward %s: listen address: %w", f, err)
	}
	host, port, err := splitHostPort(f.Target)
	if err != nil {
		return nil, fmt.Errorf("door: forward %s: target %w", f, err)
	}
	fw.host, fw.port = host, port
	if err := fw.init("forward", opts); err != nil {
		return nil, err
	}
	if _, err := netip.ParseAddr(host); err != nil && fw.opts.Resolver == nil {
		return nil, fmt.Errorf("door: forward %s: target is a name but there is no resolver", f)
	}
	fw.log = fw.log.With(zap.String("forward", f.String()))
	fw.listen = f.Listen
	return fw, nil
}

// Start listens on the Forward's Listen address and serves in the
// background until Close; ctx bounds the start only.
func (f *Forwarder) Start(ctx context.Context) error {
	if f.proto == "tcp" {
		return f.startTCP(ctx, f.handleTCP, func(net.Conn) {})
	}
	if err := f.start(); err != nil {
		return err
	}
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(ctx, "udp", f.listen)
	if err != nil {
		return fmt.Errorf("door: forward %s: %w", f.fwd, err)
	}
	if !f.track(pc) {
		return fmt.Errorf("door: forward %s: %w", f.fwd, net.ErrClosed)
	}
	f.mu.Lock()
	f.pc = pc.(*net.UDPConn)
	f.mu.Unlock()
	f.log.Info("listening", zap.Stringer("addr", pc.LocalAddr()))
	f.goDo(f.serveUDP)
	return nil
}

// Addr returns the address the Forwarder listens on, or nil before Start.
func (f *Forwarder) Addr() net.Addr {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pc != nil {
		return f.pc.LocalAddr()
	}
	if f.ln != nil {
		return f.ln.Addr()
	}
	return nil
}

func (f *Forwarder) handleTCP(c net.Conn) {
	oc, err := f.dial("tcp", f.host, f.port)
	if err != nil {
		f.fail(classify(err), c.RemoteAddr(), f.fwd.Target, err)
		return
	}
	if !f.track(oc) {
		return
	}
	defer f.untrack(oc)
	splice(c, nil, oc, f.opts.spliceTimeouts(), &f.cnt)
}

// udpSession is one client's traffic through a UDP forward.
type udpSession struct {
	f      *Forwarder
	client netip.AddrPort
	// queue holds the client's datagrams until the overlay socket is up
	// and while it is busy; full means drop.
	queue chan []byte
	stop  chan struct{}
	last  atomic.Int64 // unix nanos of the last datagram either way
	once  sync.Once
	// conn is set once dialed, before the reader starts.
	conn net.Conn
}

const sessionQueue = 64

func (f *Forwarder) serveUDP() {
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := f.pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || f.ctx.Err() != nil {
				return
			}
			continue
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		f.smu.Lock()
		s := f.sessions[from]
		if s == nil {
			if !f.admit() {
				f.smu.Unlock()
				continue
			}
			s = &udpSession{f: f, client: from, queue: make(chan []byte, sessionQueue), stop: make(chan struct{})}
			s.last.Store(time.Now().UnixNano())
			if !f.goDo(s.run) {
				f.release()
				f.smu.Unlock()
				return
			}
			f.sessions[from] = s
		}
		f.smu.Unlock()
		select {
		case s.queue <- append([]byte(nil), buf[:n]...):
		default:
			f.cnt.dropped[ReasonSend].Add(1)
		}
	}
}

// run dials the overlay, then relays the client's datagrams to it while
// a second goroutine relays replies back.
func (s *udpSession) run() {
	f := s.f
	defer s.end()
	c, err := f.dial("udp", f.host, f.port)
	if err != nil {
		f.fail(classify(err), net.UDPAddrFromAddrPort(s.client), f.fwd.Target, err)
		return
	}
	if !f.track(c) {
		return
	}
	s.conn = c
	f.goDo(s.replies)
	for {
		select {
		case b := <-s.queue:
			if _, err := c.Write(b); err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				f.cnt.dropped[ReasonSend].Add(1)
				continue
			}
			s.last.Store(time.Now().UnixNano())
			f.cnt.outPackets.Add(1)
			f.cnt.outBytes.Add(uint64(len(b)))
		case <-s.stop:
			return
		case <-f.ctx.Done():
			return
		}
	}
}

// replies relays overlay datagrams to the client until the session has
// been idle for UDPIdleTimeout or ends.
func (s *udpSession) replies() {
	f := s.f
	defer s.end()
	idle := f.opts.UDPIdleTimeout
	buf := make([]byte, maxDatagram)
	for {
		s.conn.SetReadDeadline(time.Unix(0, s.last.Load()).Add(idle))
		n, err := s.conn.Read(buf)
		if err != nil {
			if isTimeout(err) {
				if time.Since(time.Unix(0, s.last.Load())) >= idle {
					return
				}
				continue
			}
			// Closed, or an ICMP error (port unreachable) on the
			// connected socket: the session ends, and the client's next
			// datagram starts a new one.
			return
		}
		s.last.Store(time.Now().UnixNano())
		if _, err := f.pc.WriteToUDPAddrPort(buf[:n], s.client); err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			f.cnt.dropped[ReasonSend].Add(1)
			continue
		}
		f.cnt.inPackets.Add(1)
		f.cnt.inBytes.Add(uint64(n))
	}
}

// end forgets the session, closes its overlay socket and releases its
// slot; it runs once, from whichever goroutine ends first.
func (s *udpSession) end() {
	s.once.Do(func() {
		f := s.f
		f.smu.Lock()
		if f.sessions[s.client] == s {
			delete(f.sessions, s.client)
		}
		f.smu.Unlock()
		close(s.stop)
		if s.conn != nil {
			f.untrack(s.conn)
		}
		f.release()
	})
}
