package dns

import (
	"net"
	"net/netip"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// holdTCP opens n TCP connections to addr from the local address from and
// keeps them open until the test ends.
func holdTCP(t *testing.T, from, addr string, n int) []net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 3 * time.Second}
	var conns []net.Conn
	for range n {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial %s from %s: %v", addr, from, err)
		}
		t.Cleanup(func() { c.Close() })
		conns = append(conns, c)
	}
	return conns
}

// tcpAnswer sends one query over a new TCP connection and returns the
// reply's rcode, or an error.
func tcpAnswer(addr string) (int, error) {
	c := &mdns.Client{Net: "tcp", Timeout: 3 * time.Second}
	r, _, err := c.Exchange(ask("web.default.overlay.", mdns.TypeA), addr)
	if err != nil {
		return 0, err
	}
	return r.Rcode, nil
}

// serveTCP serves ln on s with allowed (nil: the Server's) until the test ends.
func serveTCP(t *testing.T, s *Server, allowed func(netip.Addr) bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); s.ServeListenerAllowed(ln, allowed) }()
	t.Cleanup(func() { s.Close(); <-done })
	return ln.Addr().String()
}

// TestServeTCPRefusedTakesNoSlot: connections from sources that may not
// ask are closed at accept and never take one of the listener's slots, so
// many of them held open do not keep an allowed client out (issue 10 §3:
// 300 connections from an underlay neighbour blocked dig +tcp).
func TestServeTCPRefusedTakesNoSlot(t *testing.T) {
	s, err := New(Options{MaxTCPConns: 4, Allowed: func(a netip.Addr) bool { return a == loopback }})
	if err != nil {
		t.Fatal(err)
	}
	s.SetZone(testZoneData())
	addr := serveTCP(t, s, nil)
	held := holdTCP(t, "127.0.0.2", addr, 20) // more than MaxTCPConns, from a refused source
	if rcode, err := tcpAnswer(addr); err != nil || rcode != mdns.RcodeSuccess {
		t.Fatalf("allowed client with 20 refused connections open: rcode %d, %v; want an answer", rcode, err)
	}
	// Each refused connection is closed at once and counted.
	for _, c := range held {
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		if n, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Fatalf("a refused connection was kept open: read %d, %v", n, err)
		}
	}
	if st := s.Stats(); st.TCPRefused != 20 || st.TCPRejected != 0 {
		t.Errorf("TCPRefused %d, TCPRejected %d; want 20 and 0", st.TCPRefused, st.TCPRejected)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestServeTCPLimitPerListener: each listener has its own MaxTCPConns, so
// a full listener leaves the others serving.
func TestServeTCPLimitPerListener(t *testing.T) {
	s, err := New(Options{MaxTCPConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	s.SetZone(testZoneData())
	a, b := serveTCP(t, s, nil), serveTCP(t, s, nil)
	for range 2 {
		c, err := mdns.Dial("tcp", a)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// A round trip makes sure the server holds this connection.
		if err := c.WriteMsg(ask("web.default.overlay.", mdns.TypeA)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.ReadMsg(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tcpAnswer(a); err == nil {
		t.Errorf("listener a answered a third connection, want it full (MaxTCPConns 2)")
	}
	if rcode, err := tcpAnswer(b); err != nil || rcode != mdns.RcodeSuccess {
		t.Errorf("listener b with listener a full: rcode %d, %v; want an answer", rcode, err)
	}
}

// TestServeAllowedPerConn: a conn's own access check replaces the
// Server's: REFUSED over UDP, closed over TCP, for sources it refuses.
func TestServeAllowedPerConn(t *testing.T) {
	s, err := New(Options{}) // the Server's own: loopback only
	if err != nil {
		t.Fatal(err)
	}
	s.SetZone(testZoneData())
	none := func(netip.Addr) bool { return false }
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); s.ServePacketAllowed(pc, none) }()
	t.Cleanup(func() { s.Close(); <-done })
	r := exchange(t, "udp", pc.LocalAddr().String(), ask("web.default.overlay.", mdns.TypeA))
	if r.Rcode != mdns.RcodeRefused || len(r.Answer) != 0 {
		t.Errorf("udp with a conn that allows no one: %v, want REFUSED", r)
	}
	if _, err := tcpAnswer(serveTCP(t, s, none)); err == nil {
		t.Error("tcp with a listener that allows no one answered, want the connection closed")
	}
	if rcode, err := tcpAnswer(serveTCP(t, s, nil)); err != nil || rcode != mdns.RcodeSuccess {
		t.Errorf("tcp with the Server's access (loopback): rcode %d, %v; want an answer", rcode, err)
	}
}
