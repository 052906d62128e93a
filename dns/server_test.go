package dns

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/overlayd/overlayd/dns/dnstest"
	"github.com/overlayd/overlayd/internal/testutil"
)

var loopback = netip.MustParseAddr("127.0.0.1")

func pack(t testing.TB, m *mdns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestHandlerSafety(t *testing.T) {
	s := newTestServer(t, testZoneData())
	q := new(mdns.Msg)
	q.SetQuestion("web.default.overlay.", mdns.TypeA)
	good := pack(t, q)

	resp := q.Copy()
	resp.Response = true
	notify := q.Copy()
	notify.Opcode = mdns.OpcodeNotify
	update := q.Copy()
	update.Opcode = mdns.OpcodeUpdate
	two := q.Copy()
	two.Question = append(two.Question, mdns.Question{Name: "n1.default.overlay.", Qtype: mdns.TypeA, Qclass: mdns.ClassINET})
	none := q.Copy()
	none.Question = nil
	edns1 := q.Copy()
	edns1.SetEdns0(1232, false)
	edns1.IsEdns0().SetVersion(1)
	chaos := q.Copy()
	chaos.Question[0].Qclass = mdns.ClassCHAOS
	axfr := q.Copy()
	axfr.Question[0] = mdns.Question{Name: "overlay.", Qtype: mdns.TypeAXFR, Qclass: mdns.ClassINET}
	forwarded := q.Copy()
	forwarded.Question[0].Name = "example.com."

	tests := []struct {
		name  string
		src   string
		in    []byte
		rcode int // -1: no reply
	}{
		{"good", "127.0.0.1", good, mdns.RcodeSuccess},
		{"good v6 loopback", "::1", good, mdns.RcodeSuccess},
		{"empty", "127.0.0.1", nil, -1},
		{"short", "127.0.0.1", good[:11], -1},
		{"response", "127.0.0.1", pack(t, resp), -1},
		{"response from outside", "192.0.2.1", pack(t, resp), -1},
		{"not allowed", "192.0.2.1", good, mdns.RcodeRefused},
		{"not allowed, forwardable", "192.0.2.1", pack(t, forwarded), mdns.RcodeRefused},
		{"notify", "127.0.0.1", pack(t, notify), mdns.RcodeNotImplemented},
		{"update", "127.0.0.1", pack(t, update), mdns.RcodeNotImplemented},
		{"two questions", "127.0.0.1", pack(t, two), mdns.RcodeFormatError},
		{"no question", "127.0.0.1", pack(t, none), mdns.RcodeFormatError},
		{"header only", "127.0.0.1", good[:12], mdns.RcodeFormatError},
		{"cut question", "127.0.0.1", good[:20], mdns.RcodeFormatError},
		{"garbage", "127.0.0.1", append(good[:12:12], 0xff, 0xff, 0xff, 0xff, 0xff), mdns.RcodeFormatError},
		{"edns version 1", "127.0.0.1", pack(t, edns1), mdns.RcodeBadVers},
		{"chaos class in zone", "127.0.0.1", pack(t, chaos), mdns.RcodeRefused},
		{"axfr", "127.0.0.1", pack(t, axfr), mdns.RcodeRefused},
		{"no forwarder", "127.0.0.1", pack(t, forwarded), mdns.RcodeRefused},
	}
	for _, tt := range tests {
		out := s.handle(context.Background(), netip.MustParseAddr(tt.src), tt.in, false)
		if tt.rcode == -1 {
			if out != nil {
				t.Errorf("%s: got a %d-byte reply, want none", tt.name, len(out))
			}
			continue
		}
		r := new(mdns.Msg)
		if err := r.Unpack(out); err != nil {
			t.Errorf("%s: reply does not parse: %v", tt.name, err)
			continue
		}
		if r.Rcode != tt.rcode || !r.Response || r.Id != binary.BigEndian.Uint16(tt.in) {
			t.Errorf("%s: reply rcode %s QR %v ID %d, want %s, true, %d", tt.name, mdns.RcodeToString[r.Rcode], r.Response, r.Id, mdns.RcodeToString[tt.rcode], binary.BigEndian.Uint16(tt.in))
		}
		if tt.rcode == mdns.RcodeRefused && len(r.Answer) > 0 {
			t.Errorf("%s: REFUSED with answers %v", tt.name, r.Answer)
		}
	}
	st := s.Stats()
	if st.Dropped != 4 || st.Responses["REFUSED"] != 5 || st.Responses["NOTIMP"] != 2 || st.Responses["FORMERR"] != 5 || st.Queries["A"] < 2 {
		t.Errorf("Stats() = %+v", st)
	}
}

func TestHandlerAllowed(t *testing.T) {
	overlay := netip.MustParsePrefix("10.200.0.0/16")
	s, err := New(Options{Allowed: overlay.Contains})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.SetZone(testZoneData())
	q := new(mdns.Msg)
	q.SetQuestion("web.default.overlay.", mdns.TypeA)
	for src, want := range map[string]int{"10.200.1.1": mdns.RcodeSuccess, "127.0.0.1": mdns.RcodeRefused, "10.201.0.1": mdns.RcodeRefused} {
		r := new(mdns.Msg)
		if err := r.Unpack(s.handle(context.Background(), netip.MustParseAddr(src), pack(t, q), false)); err != nil || r.Rcode != want {
			t.Errorf("query from %s: rcode %s (%v), want %s", src, mdns.RcodeToString[r.Rcode], err, mdns.RcodeToString[want])
		}
	}
}

func TestHandlerTruncation(t *testing.T) {
	d := testZoneData()
	d.Services = nil
	for i := range 60 {
		d.Nodes = append(d.Nodes, NodeRecord{Name: "many", Network: "default", Addr: netip.AddrFrom4([4]byte{10, 200, 100, byte(i)})})
	}
	s := newTestServer(t, d)
	for _, tt := range []struct {
		edns    int // 0: none
		tcp     bool
		wantTC  bool
		maxSize int
	}{
		{0, false, true, 512},
		{4096, false, false, EDNSSize},
		{1232, false, false, EDNSSize},
		{0, true, false, 65535},
	} {
		q := new(mdns.Msg)
		q.SetQuestion("many.default.overlay.", mdns.TypeA)
		if tt.edns > 0 {
			q.SetEdns0(uint16(tt.edns), false)
		}
		out := s.handle(context.Background(), loopback, pack(t, q), tt.tcp)
		r := new(mdns.Msg)
		if err := r.Unpack(out); err != nil {
			t.Fatal(err)
		}
		if r.Truncated != tt.wantTC || len(out) > tt.maxSize {
			t.Errorf("edns %d tcp %v: TC %v, %d bytes (%d answers); want TC %v, at most %d bytes", tt.edns, tt.tcp, r.Truncated, len(out), len(r.Answer), tt.wantTC, tt.maxSize)
		}
		if !tt.wantTC && len(r.Answer) != 60 {
			t.Errorf("edns %d tcp %v: %d answers, want 60", tt.edns, tt.tcp, len(r.Answer))
		}
		if (tt.edns > 0) != (r.IsEdns0() != nil) {
			t.Errorf("edns %d: reply OPT %v", tt.edns, r.IsEdns0())
		}
	}
}

func FuzzHandler(f *testing.F) {
	up := dnstest.NewUpstream(f, func(req *mdns.Msg, tcp bool) []*mdns.Msg {
		q := req.Question[0]
		if q.Qtype == mdns.TypeA && q.Qclass == mdns.ClassINET {
			return []*mdns.Msg{dnstest.Reply(req, mdns.Fqdn(q.Name)+" 60 IN A 192.0.2.1")}
		}
		m := dnstest.Reply(req)
		soa, _ := mdns.NewRR("test. 60 IN SOA ns.test. h.test. 1 2 3 4 5")
		m.Ns = []mdns.RR{soa}
		return []*mdns.Msg{m}
	})
	fwd, err := NewForwarder(ForwarderOptions{Upstreams: []netip.AddrPort{up.Addr}, Timeout: 200 * time.Millisecond})
	if err != nil {
		f.Fatal(err)
	}
	var servers []*Server
	for _, o := range []Options{{}, {Forwarder: fwd}} {
		s, err := New(o)
		if err != nil {
			f.Fatal(err)
		}
		defer s.Close()
		s.SetZone(testZoneData())
		servers = append(servers, s)
	}
	for _, name := range []string{"web.default.overlay.", "_80._tcp.web.default.overlay.", "1.1.200.10.in-addr.arpa.", "default.overlay.", "nope.overlay.", "example.com.", "EXAMPLE.com."} {
		for _, qt := range []uint16{mdns.TypeA, mdns.TypeAAAA, mdns.TypeSRV, mdns.TypePTR, mdns.TypeANY} {
			q := new(mdns.Msg)
			q.SetQuestion(name, qt)
			q.SetEdns0(512, true)
			f.Add(pack(f, q), false, true, true)
		}
	}
	f.Add([]byte{}, false, true, false)
	f.Add(make([]byte, 12), true, false, false)
	f.Fuzz(func(t *testing.T, b []byte, tcp, allowed, forward bool) {
		src := loopback
		if !allowed {
			src = netip.MustParseAddr("192.0.2.1")
		}
		s := servers[0]
		if forward {
			s = servers[1]
		}
		out := s.handle(context.Background(), src, b, tcp)
		if out == nil {
			return
		}
		if len(b) < headerSize {
			t.Fatalf("reply to a %d-byte packet", len(b))
		}
		r := new(mdns.Msg)
		if err := r.Unpack(out); err != nil {
			t.Fatalf("reply %x does not parse: %v", out, err)
		}
		if r.Id != binary.BigEndian.Uint16(b) || !r.Response {
			t.Fatalf("reply ID %d QR %v, want %d, true", r.Id, r.Response, binary.BigEndian.Uint16(b))
		}
		if !tcp && len(out) > EDNSSize && len(out) > 512 {
			t.Fatalf("%d-byte UDP reply", len(out))
		}
	})
}

// exchange sends q over net ("udp" or "tcp") to addr with miekg's client.
func exchange(t testing.TB, netw, addr string, q *mdns.Msg) *mdns.Msg {
	t.Helper()
	c := &mdns.Client{Net: netw, Timeout: 3 * time.Second}
	r, _, err := c.Exchange(q, addr)
	if err != nil {
		t.Fatalf("%s exchange with %s: %v", netw, addr, err)
	}
	return r
}

// plainConns hide the host socket types, as gVisor's gonet conns would: the
// Server then reads one datagram at a time instead of batches.
type plainPacketConn struct{ net.PacketConn }
type plainListener struct{ net.Listener }

func TestServeSockets(t *testing.T) {
	for _, plain := range []bool{false, true} {
		t.Run(fmt.Sprintf("plain=%v", plain), func(t *testing.T) { testServeSockets(t, plain) })
	}
}

func testServeSockets(t *testing.T, plain bool) {
	s := newTestServer(t, testZoneData())
	var pc net.PacketConn
	var ln net.Listener
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if plain {
		pc, ln = plainPacketConn{pc}, plainListener{ln}
	}
	if _, batched := asBatchConn(pc); batched == plain {
		t.Fatalf("plain=%v: batched %v", plain, batched)
	}
	errc := make(chan error, 2)
	go func() { errc <- s.ServePacket(pc) }()
	go func() { errc <- s.ServeListener(ln) }()
	// Many queries at once, each answered with its own ID.
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q := ask(fmt.Sprintf("n%d.default.overlay.", i%3), mdns.TypeA)
			c := &mdns.Client{Timeout: 3 * time.Second}
			r, _, err := c.Exchange(q, pc.LocalAddr().String())
			if err != nil || r.Id != q.Id {
				t.Errorf("concurrent query %d: %v, %v", i, r, err)
			}
		}()
	}
	wg.Wait()

	q := new(mdns.Msg)
	q.SetQuestion("web.default.overlay.", mdns.TypeA)
	for _, tc := range []struct{ netw, addr string }{{"udp", pc.LocalAddr().String()}, {"tcp", ln.Addr().String()}} {
		r := exchange(t, tc.netw, tc.addr, q)
		if len(r.Answer) != 1 || r.Answer[0].(*mdns.A).A.String() != "10.200.255.10" {
			t.Errorf("%s: answer %v", tc.netw, r.Answer)
		}
	}
	// A TCP connection with several queries.
	c, err := mdns.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		q.Id = uint16(100 + i)
		if err := c.WriteMsg(q); err != nil {
			t.Fatal(err)
		}
		r, err := c.ReadMsg()
		if err != nil || r.Id != q.Id {
			t.Fatalf("tcp query %d: %v, %v", i, r, err)
		}
	}
	// Close with a client connection still open: must not hang or leak.
	s.Close()
	c.Close()
	for range 2 {
		if err := <-errc; err != nil {
			t.Errorf("serve returned %v after Close, want nil", err)
		}
	}
	if err := s.ServePacket(pc); err == nil {
		t.Error("ServePacket after Close = nil, want an error")
	}
	s.Close()
}

func TestServeContext(t *testing.T) {
	listening := make(chan netip.AddrPort, 1)
	s, err := New(Options{Addr: "127.0.0.1:0", OnListen: func(a netip.AddrPort) { listening <- a }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.SetZone(testZoneData())
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ctx) }()
	addr := <-listening
	for _, netw := range []string{"udp", "tcp"} {
		if r := exchange(t, netw, addr.String(), ask("web.default.overlay.", mdns.TypeA)); len(r.Answer) != 1 {
			t.Errorf("Serve over %s: answer %v", netw, r.Answer)
		}
	}
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("Serve after cancel = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
	// A taken address is a clear error.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	s2, _ := New(Options{Addr: pc.LocalAddr().String()})
	defer s2.Close()
	if err := s2.Serve(context.Background()); err == nil {
		t.Errorf("Serve on a taken address = nil")
	} else {
		t.Logf("taken address: %v", err)
	}
}

func TestStatsNames(t *testing.T) {
	s := newTestServer(t, testZoneData())
	query(t, s, "web.default.overlay.", mdns.TypeA)
	query(t, s, "nope.default.overlay.", mdns.TypeAAAA)
	query(t, s, "web.default.overlay.", 65000)
	st := s.Stats()
	want := fmt.Sprint(map[string]uint64{"A": 1, "AAAA": 1, "other": 1})
	if got := fmt.Sprint(st.Queries); got != want {
		t.Errorf("Queries = %s, want %s", got, want)
	}
	if st.Responses["NOERROR"] != 2 || st.Responses["NXDOMAIN"] != 1 {
		t.Errorf("Responses = %v", st.Responses)
	}
}

func TestServeTCPLimit(t *testing.T) {
	s, err := New(Options{MaxTCPConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.SetZone(testZoneData())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); s.ServeListener(ln) }()
	var conns []*mdns.Conn
	for range 2 {
		c, err := mdns.Dial("tcp", ln.Addr().String())
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
		conns = append(conns, c)
	}
	c, err := mdns.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	c.WriteMsg(ask("web.default.overlay.", mdns.TypeA))
	if r, err := c.ReadMsg(); err == nil {
		t.Errorf("third connection answered %v, want it closed", r)
	}
	if st := s.Stats(); st.TCPRejected != 1 {
		t.Errorf("TCPRejected = %d, want 1", st.TCPRejected)
	}
	// Closing one makes room again.
	conns[0].Close()
	testutil.Eventually(t, 5*time.Second, "room for a new connection after one closed", func() error {
		c, err := mdns.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Second))
		c.WriteMsg(ask("web.default.overlay.", mdns.TypeA))
		_, err = c.ReadMsg()
		return err
	})
	s.Close()
	<-done
}

// TestCloseWithQueriesInFlight: Close returns promptly while forwarded
// queries wait on a silent upstream, and leaves nothing running (goleak).
func TestCloseWithQueriesInFlight(t *testing.T) {
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	f, err := NewForwarder(ForwarderOptions{Upstreams: []netip.AddrPort{silent.LocalAddr().(*net.UDPAddr).AddrPort()}, Timeout: time.Minute, AttemptTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Forwarder: f})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); s.ServePacket(pc) }()
	c, err := net.Dial("udp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 5 {
		c.Write(pack(t, ask(fmt.Sprintf("q%d.test.", i), mdns.TypeA)))
	}
	buf := make([]byte, 64)
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().Forwarder.CacheMisses < 5 {
		silent.SetReadDeadline(deadline)
		if _, _, err := silent.ReadFrom(buf); err != nil {
			t.Fatalf("upstream saw %d queries: %v", s.Stats().Forwarder.CacheMisses, err)
		}
	}
	start := time.Now()
	s.Close()
	<-done
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Close took %v with queries in flight", took)
	}
}

// BenchmarkHandle measures the handler alone (no sockets): parse, zone or
// cache lookup, pack.
func BenchmarkHandle(b *testing.B) {
	up := dnstest.NewUpstream(b, func(req *mdns.Msg, tcp bool) []*mdns.Msg {
		return []*mdns.Msg{dnstest.Reply(req, req.Question[0].Name+" 3600 IN A 192.0.2.1")}
	})
	f, err := NewForwarder(ForwarderOptions{Upstreams: []netip.AddrPort{up.Addr}})
	if err != nil {
		b.Fatal(err)
	}
	s, err := New(Options{Forwarder: f})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	s.SetZone(testZoneData())
	for _, tc := range []struct{ label, name string }{
		{"overlay-A", "web.default.overlay."},
		{"overlay-NXDOMAIN", "nope.default.overlay."},
		{"cached-forward", "www.example.test."},
	} {
		b.Run(tc.label, func(b *testing.B) {
			q := ask(tc.name, mdns.TypeA)
			q.SetEdns0(1232, false)
			wire := pack(b, q)
			buf := make([]byte, mdns.MaxMsgSize+1)
			s.handle(context.Background(), loopback, wire, false) // warm the cache
			b.ReportAllocs()
			for b.Loop() {
				out, later := s.respond(s.allowed, loopback, wire, false, buf)
				if out == nil || later != nil {
					b.Fatal("not answered inline")
				}
			}
		})
	}
}
