package door

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// udpHeaderMax is the longest SOCKS5 UDP header with an IP address
// (IPv6): RSV 2, FRAG 1, ATYP 1, 16, PORT 2.
const udpHeaderMax = 22

// parseDatagram splits a SOCKS5 UDP request datagram.
//
//	+----+------+------+----------+----------+----------+
//	|RSV | FRAG | ATYP | DST.ADDR | DST.PORT |   DATA   |
//	+----+------+------+----------+----------+----------+
//	| 2  |  1   |  1   | Variable |    2     | Variable |
//	+----+------+------+----------+----------+----------+
func parseDatagram(b []byte) (frag byte, dst socksAddr, payload []byte, err error) {
	if len(b) < 3 {
		return 0, dst, nil, malformed("datagram of %d bytes", len(b))
	}
	frag = b[2]
	r := bytes.NewReader(b[3:])
	var buf [258]byte
	dst, err = readAddr(r, buf[:])
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = malformed("datagram header truncated")
		}
		return 0, dst, nil, err
	}
	return frag, dst, b[len(b)-r.Len():], nil
}

// appendDatagramHeader appends the header of a datagram from src.
func appendDatagramHeader(b []byte, src socksAddr) []byte {
	return src.appendTo(append(b, 0, 0, 0))
}

// association is one UDP ASSOCIATE: a host UDP socket the client sends
// to, and an overlay UDP socket.
type association struct {
	s        *SOCKS5
	host     *net.UDPConn
	overlay  net.PacketConn
	clientIP netip.Addr
	// wantPort is the client's announced source port, 0 if unknown.
	wantPort uint16
	// client is the client's UDP address, pinned by its first datagram.
	client atomic.Pointer[netip.AddrPort]

	// done is closed when the control connection ends.
	done chan struct{}

	// names caches resolutions for the association's lifetime.
	namesMu sync.Mutex
	names   map[string]netip.Addr
}

const maxCachedNames = 64

func (s *SOCKS5) associate(c net.Conn, want socksAddr) {
	if s.opts.PacketListener == nil {
		s.fail(ReasonUnsupported, c.RemoteAddr(), want.String(), errors.New("socks5: UDP ASSOCIATE needs a PacketListener"))
		c.Write(socksReply(RepCommandNotSupported, socksAddr{}))
		linger(c)
		return
	}
	local, _ := netip.ParseAddrPort(c.LocalAddr().String())
	remote, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	host, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(local.Addr(), 0)))
	if err != nil {
		c.Write(socksReply(RepGeneralFailure, socksAddr{}))
		s.fail(ReasonDial, c.RemoteAddr(), want.String(), err)
		return
	}
	if !s.track(host) {
		return
	}
	defer s.untrack(host)
	overlay, err := s.opts.PacketListener.ListenPacket("udp", ":0")
	if err != nil {
		c.Write(socksReply(RepGeneralFailure, socksAddr{}))
		s.fail(ReasonDial, c.RemoteAddr(), want.String(), err)
		return
	}
	if !s.track(overlay) {
		return
	}
	defer s.untrack(overlay)
	a := &association{
		s:        s,
		host:     host,
		overlay:  overlay,
		clientIP: remote.Addr().Unmap(),
		names:    map[string]netip.Addr{},
		done:     make(chan struct{}),
	}
	if want.Name == "" && want.IP.IsValid() && !want.IP.IsUnspecified() {
		a.clientIP = want.IP
	}
	a.wantPort = want.Port
	bnd, _ := netip.ParseAddrPort(host.LocalAddr().String())
	if _, err := c.Write(socksReply(RepSucceeded, addrPortToSocks(bnd))); err != nil {
		s.fail(ReasonHandshake, c.RemoteAddr(), "", err)
		return
	}
	c.SetDeadline(time.Time{})
	s.log.Debug("udp associate", zap.Stringer("client", c.RemoteAddr()), zap.Stringer("relay", bnd))
	s.goDo(a.outbound)
	s.goDo(a.inbound)
	// The association lives as long as the control connection.
	io.Copy(io.Discard, c)
	close(a.done)
}

// ended reports whether the association is over: its control connection
// ended or the door closed.
func (a *association) ended() bool {
	select {
	case <-a.done:
		return true
	case <-a.s.ctx.Done():
		return true
	default:
		return false
	}
}

// outbound relays client datagrams into the overlay.
func (a *association) outbound() {
	cnt := &a.s.cnt
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := a.host.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || a.ended() {
				return
			}
			continue
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		if from.Addr() != a.clientIP || a.wantPort != 0 && from.Port() != a.wantPort {
			cnt.dropped[ReasonForeign].Add(1)
			continue
		}
		if p := a.client.Load(); p == nil {
			a.client.Store(&from)
		} else if *p != from {
			cnt.dropped[ReasonForeign].Add(1)
			continue
		}
		frag, dst, payload, err := parseDatagram(buf[:n])
		if err != nil {
			var se *socksError
			r := ReasonMalformed
			if errors.As(err, &se) {
				r = se.reason
			}
			cnt.dropped[r].Add(1)
			continue
		}
		if frag != 0 {
			cnt.dropped[ReasonFragmented].Add(1)
			continue
		}
		ap, err := a.resolve(dst)
		if err != nil {
			cnt.dropped[classify(err)].Add(1)
			continue
		}
		if _, err := a.overlay.WriteTo(payload, net.UDPAddrFromAddrPort(ap)); err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			cnt.dropped[ReasonSend].Add(1)
			continue
		}
		cnt.outPackets.Add(1)
		cnt.outBytes.Add(uint64(len(payload)))
	}
}

func (a *association) resolve(dst socksAddr) (netip.AddrPort, error) {
	if dst.Name == "" {
		return netip.AddrPortFrom(dst.IP, dst.Port), nil
	}
	a.namesMu.Lock()
	ip, ok := a.names[dst.Name]
	a.namesMu.Unlock()
	if ok {
		return netip.AddrPortFrom(ip, dst.Port), nil
	}
	ctx, cancel := context.WithTimeout(a.s.ctx, a.s.opts.DialTimeout)
	defer cancel()
	aps, err := a.s.resolve(ctx, dst.Name, dst.Port)
	if err != nil {
		return netip.AddrPort{}, err
	}
	ap := aps[0]
	a.namesMu.Lock()
	if len(a.names) >= maxCachedNames {
		clear(a.names)
	}
	a.names[dst.Name] = ap.Addr()
	a.namesMu.Unlock()
	return ap, nil
}

// inbound relays overlay datagrams to the client, each with a header
// naming its source.
func (a *association) inbound() {
	cnt := &a.s.cnt
	buf := make([]byte, udpHeaderMax+maxDatagram)
	for {
		n, from, err := a.overlay.ReadFrom(buf[udpHeaderMax:])
		if err != nil {
			if errors.Is(err, net.ErrClosed) || a.ended() {
				return
			}
			// gonet reports a closed endpoint with its own errors.
			var oe *net.OpError
			if errors.As(err, &oe) && !oe.Temporary() && !oe.Timeout() {
				return
			}
			continue
		}
		client := a.client.Load()
		if client == nil {
			cnt.dropped[ReasonSend].Add(1)
			continue
		}
		src, err := netip.ParseAddrPort(from.String())
		if err != nil {
			cnt.dropped[ReasonMalformed].Add(1)
			continue
		}
		hdr := appendDatagramHeader(make([]byte, 0, udpHeaderMax), addrPortToSocks(src))
		start := udpHeaderMax - len(hdr)
		copy(buf[start:], hdr)
		if _, err := a.host.WriteToUDPAddrPort(buf[start:udpHeaderMax+n], *client); err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			cnt.dropped[ReasonSend].Add(1)
			continue
		}
		cnt.inPackets.Add(1)
		cnt.inBytes.Add(uint64(n))
	}
}
