package dns

// This file holds the serve loops: the host listener pair (Serve), and
// the UDP and TCP loops over sockets handed in, with their access check.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
)

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
