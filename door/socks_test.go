package door

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/overlayd/overlayd/internal/testutil"
)

func startSOCKS(t *testing.T, opts Options) *SOCKS5 {
	t.Helper()
	s, err := NewSOCKS5("127.0.0.1:0", opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func connectReq(atyp byte, addr []byte, port uint16) []byte {
	b := []byte{5, cmdConnect, 0, atyp}
	b = append(b, addr...)
	return binary.BigEndian.AppendUint16(b, port)
}

func domain(name string) []byte { return append([]byte{byte(len(name))}, name...) }

var ip4 = []byte{10, 99, 2, 1}

func TestSOCKSReplyCodes(t *testing.T) {
	noLeaks(t)
	opts, d := testOptions(t)
	s := startSOCKS(t, opts)
	noUDP := startSOCKS(t, opts) // no PacketListener: UDP ASSOCIATE unsupported
	noNames := opts
	noNames.Resolver = nil
	noRes := startSOCKS(t, noNames)

	hello := []byte{5, 1, 0}
	tests := []struct {
		name     string
		srv      *SOCKS5
		greeting []byte
		request  []byte
		// wantMethod is the method reply (nil: none, the server closes).
		wantMethod []byte
		// wantRep is the request's reply code, -1 for no reply.
		wantRep int
		// wantDial is the dial the overlay sees, "" for none checked.
		wantDial string
		reason   Reason
	}{
		{name: "connect ipv4", srv: s, greeting: hello, request: connectReq(atypIPv4, ip4, 80),
			wantMethod: []byte{5, 0}, wantRep: 0, wantDial: "tcp 10.99.2.1:80", reason: -1},
		{name: "connect ipv6", srv: s, greeting: hello,
			request:    connectReq(atypIPv6, netip.MustParseAddr("fd00::1").AsSlice(), 443),
			wantMethod: []byte{5, 0}, wantRep: 0, wantDial: "tcp [fd00::1]:443", reason: -1},
		{name: "connect domain", srv: s, greeting: []byte{5, 2, 2, 0}, request: connectReq(atypDomain, domain("echo.test"), 8080),
			wantMethod: []byte{5, 0}, wantRep: 0, wantDial: "tcp 10.99.2.1:8080", reason: -1},
		{name: "connect domain that is an IP literal", srv: noRes, greeting: hello, request: connectReq(atypDomain, domain("10.99.2.1"), 81),
			wantMethod: []byte{5, 0}, wantRep: 0, wantDial: "tcp 10.99.2.1:81", reason: -1},
		{name: "no acceptable method", srv: s, greeting: []byte{5, 1, 2},
			wantMethod: []byte{5, 0xff}, wantRep: -1, reason: ReasonAuth},
		{name: "no methods", srv: s, greeting: []byte{5, 0},
			wantMethod: []byte{5, 0xff}, wantRep: -1, reason: ReasonAuth},
		{name: "socks4 greeting", srv: s, greeting: []byte{4, 1, 0, 80, 10, 99, 2, 1, 0},
			wantRep: -1, reason: ReasonMalformed},
		{name: "request version 4", srv: s, greeting: hello, request: []byte{4, 1, 0, 1, 10, 99, 2, 1, 0, 80},
			wantMethod: []byte{5, 0}, wantRep: 0x01, reason: ReasonMalformed},
		{name: "bind", srv: s, greeting: hello, request: []byte{5, cmdBind, 0, 1, 10, 99, 2, 1, 0, 80},
			wantMethod: []byte{5, 0}, wantRep: 0x07, reason: ReasonUnsupported},
		{name: "unknown command", srv: s, greeting: hello, request: []byte{5, 9, 0, 1, 10, 99, 2, 1, 0, 80},
			wantMethod: []byte{5, 0}, wantRep: 0x07, reason: ReasonUnsupported},
		{name: "udp associate without packet listener", srv: noUDP, greeting: hello, request: []byte{5, cmdAssociate, 0, 1, 0, 0, 0, 0, 0, 0},
			wantMethod: []byte{5, 0}, wantRep: 0x07, reason: ReasonUnsupported},
		{name: "unknown address type", srv: s, greeting: hello, request: []byte{5, 1, 0, 5, 10, 99, 2, 1, 0, 80},
			wantMethod: []byte{5, 0}, wantRep: 0x08, reason: ReasonUnsupported},
		{name: "name without resolver", srv: noRes, greeting: hello, request: connectReq(atypDomain, domain("echo.test"), 80),
			wantMethod: []byte{5, 0}, wantRep: 0x08, reason: ReasonUnsupported},
		{name: "empty name", srv: s, greeting: hello, request: connectReq(atypDomain, domain(""), 80),
			wantMethod: []byte{5, 0}, wantRep: 0x01, reason: ReasonMalformed},
		{name: "name with a slash", srv: s, greeting: hello, request: connectReq(atypDomain, domain("a/b"), 80),
			wantMethod: []byte{5, 0}, wantRep: 0x01, reason: ReasonMalformed},
		{name: "unresolvable name", srv: s, greeting: hello, request: connectReq(atypDomain, domain("nope.test"), 80),
			wantMethod: []byte{5, 0}, wantRep: 0x04, reason: ReasonResolve},
		{name: "refused", srv: s, greeting: hello, request: connectReq(atypIPv4, ip4, portRefused),
			wantMethod: []byte{5, 0}, wantRep: 0x05, reason: ReasonRefused},
		{name: "network unreachable", srv: s, greeting: hello, request: connectReq(atypIPv4, ip4, portNetUnreach),
			wantMethod: []byte{5, 0}, wantRep: 0x03, reason: ReasonUnreachable},
		{name: "host unreachable", srv: s, greeting: hello, request: connectReq(atypIPv4, ip4, portHostUnreach),
			wantMethod: []byte{5, 0}, wantRep: 0x04, reason: ReasonUnreachable},
		{name: "dial timeout", srv: s, greeting: hello, request: connectReq(atypIPv4, ip4, portHang),
			wantMethod: []byte{5, 0}, wantRep: 0x04, reason: ReasonTimeout},
		{name: "not allowed", srv: s, greeting: hello, request: connectReq(atypIPv4, ip4, portNotAllowed),
			wantMethod: []byte{5, 0}, wantRep: 0x02, reason: ReasonNotAllowed},
		{name: "other dial error", srv: s, greeting: hello, request: connectReq(atypIPv4, ip4, portOther),
			wantMethod: []byte{5, 0}, wantRep: 0x01, reason: ReasonDial},
		{name: "truncated request", srv: s, greeting: hello, request: []byte{5, 1, 0, 1, 10},
			wantMethod: []byte{5, 0}, wantRep: -1, reason: ReasonHandshake},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.srv.Stats()
			c, err := net.Dial("tcp", tt.srv.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			c.Write(tt.greeting)
			if tt.wantMethod == nil {
				if b, err := io.ReadAll(c); len(b) != 0 || err != nil {
					t.Fatalf("greeting %x: reply %x, %v; want none and close", tt.greeting, b, err)
				}
			} else {
				got := make([]byte, 2)
				if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, tt.wantMethod) {
					t.Fatalf("greeting %x: method reply %x, %v; want %x", tt.greeting, got, err, tt.wantMethod)
				}
			}
			if tt.request != nil {
				c.Write(tt.request)
				if tt.name == "truncated request" {
					c.(*net.TCPConn).CloseWrite()
				}
			}
			if tt.wantRep < 0 {
				if b, err := io.ReadAll(c); len(b) != 0 || err != nil {
					t.Fatalf("request %x: reply %x, %v; want none and close", tt.request, b, err)
				}
			} else {
				hdr := make([]byte, 4)
				if _, err := io.ReadFull(c, hdr); err != nil {
					t.Fatalf("request %x: reading reply: %v", tt.request, err)
				}
				if hdr[0] != 5 || int(hdr[1]) != tt.wantRep {
					t.Fatalf("request %x: reply %x, want REP %#02x", tt.request, hdr, tt.wantRep)
				}
				if _, err := readAddrAfterATYP(c, hdr[3]); err != nil {
					t.Fatalf("request %x: reply address: %v", tt.request, err)
				}
				if tt.wantRep == 0 {
					msg := []byte("ping " + tt.name)
					c.Write(msg)
					got := make([]byte, len(msg))
					if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
						t.Fatalf("through the tunnel: %q, %v; want %q", got, err, msg)
					}
				} else if b, err := io.ReadAll(c); len(b) != 0 || err != nil {
					t.Fatalf("after failure reply: %x, %v; want close", b, err)
				}
			}
			if tt.wantDial != "" {
				if got := d.lastDial(); got != tt.wantDial {
					t.Errorf("overlay dial = %q, want %q", got, tt.wantDial)
				}
			}
			if tt.reason >= 0 {
				c.Close()
				testutil.EventuallyEqual(t, 5*time.Second, "failure counted as "+tt.reason.String(), func() uint64 { return tt.srv.Stats().Failed[tt.reason] }, before.Failed[tt.reason]+1)
			}
		})
	}
	s.Close()
	noUDP.Close()
	noRes.Close()
	st := s.Stats()
	if st.Active != 0 || st.OutBytes == 0 || st.OutBytes != st.InBytes {
		t.Errorf("stats after close = %+v; want no active connections and as many bytes in as out", st)
	}
}

// readAddrAfterATYP reads a reply's BND.ADDR and BND.PORT.
func readAddrAfterATYP(r io.Reader, atyp byte) (socksAddr, error) {
	return readAddr(io.MultiReader(bytes.NewReader([]byte{atyp}), r), make([]byte, 258))
}

func TestSOCKSHandshakeTimeout(t *testing.T) {
	noLeaks(t)
	opts, _ := testOptions(t)
	opts.HandshakeTimeout = 100 * time.Millisecond
	s := startSOCKS(t, opts)
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte{5, 1}) // and never the methods
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if b, err := io.ReadAll(c); len(b) != 0 || err != nil {
		t.Fatalf("stalled greeting: got %x, %v; want the server to close", b, err)
	}
	testutil.EventuallyEqual(t, 5*time.Second, "handshake failure counted", func() uint64 { return s.Stats().Failed[ReasonHandshake] }, 1)

	// A dial that outlasts the handshake timeout still gets its reply.
	opts.DialTimeout = 300 * time.Millisecond
	slow := startSOCKS(t, opts)
	c2, rep := socksConnect(t, slow.Addr().String(), connectReq(atypIPv4, ip4, portHang))
	c2.Close()
	if rep != RepHostUnreachable {
		t.Fatalf("dial timeout after the handshake timeout: REP %#x, want %#x", rep, RepHostUnreachable)
	}
	s.Close()
	slow.Close()
}

// socksConnect runs the client side of a request and returns the reply
// code.
func socksConnect(t *testing.T, addr string, req []byte) (net.Conn, byte) {
	t.Helper()
	c, rep, _ := socksRequestReply(t, addr, req)
	return c, rep
}

// socksRequestReply runs the client side of a request and returns the
// reply code and bound address.
func socksRequestReply(t *testing.T, addr string, req []byte) (net.Conn, byte, socksAddr) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte{5, 1, 0})
	m := make([]byte, 2)
	if _, err := io.ReadFull(c, m); err != nil {
		t.Fatalf("method reply: %v", err)
	}
	c.Write(req)
	hdr := make([]byte, 4)
	if _, err := io.ReadFull(c, hdr); err != nil {
		t.Fatalf("reply: %v", err)
	}
	bnd, err := readAddrAfterATYP(c, hdr[3])
	if err != nil {
		t.Fatalf("reply address: %v", err)
	}
	c.SetDeadline(time.Time{})
	return c, hdr[1], bnd
}

func TestSOCKSLimit(t *testing.T) {
	noLeaks(t)
	opts, _ := testOptions(t)
	opts.MaxConns = 2
	s := startSOCKS(t, opts)
	var held []net.Conn
	for i := range 2 {
		c, rep := socksConnect(t, s.Addr().String(), connectReq(atypIPv4, ip4, 80))
		if rep != 0 {
			t.Fatalf("connection %d: REP %#x, want 0", i, rep)
		}
		held = append(held, c)
	}
	c, rep := socksConnect(t, s.Addr().String(), connectReq(atypIPv4, ip4, 80))
	if rep != RepGeneralFailure {
		t.Fatalf("connection over the limit: REP %#x, want %#x", rep, RepGeneralFailure)
	}
	c.Close()
	if st := s.Stats(); st.Refused != 1 || st.Accepted != 2 || st.Active != 2 {
		t.Fatalf("stats = accepted %d refused %d active %d; want 2, 1, 2", st.Accepted, st.Refused, st.Active)
	}
	held[0].Close()
	testutil.EventuallyEqual(t, 5*time.Second, "a slot to free", func() int64 { return s.Stats().Active }, 1)
	c, rep = socksConnect(t, s.Addr().String(), connectReq(atypIPv4, ip4, 80))
	if rep != 0 {
		t.Fatalf("connection after one closed: REP %#x, want 0", rep)
	}
	c.Close()
	held[1].Close()
	// Close with connections still open closes them too.
	held2, _ := socksConnect(t, s.Addr().String(), connectReq(atypIPv4, ip4, 80))
	defer held2.Close()
	s.Close()
	if _, err := held2.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection through a closed server still open")
	}
	if err := s.Start(context.Background()); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Start after Close = %v, want net.ErrClosed", err)
	}
}

func TestSOCKSRequestRoundTrip(t *testing.T) {
	for _, req := range []socksRequest{
		{Cmd: cmdConnect, Addr: socksAddr{IP: netip.MustParseAddr("10.1.2.3"), Port: 80}},
		{Cmd: cmdConnect, Addr: socksAddr{IP: netip.MustParseAddr("fd00::1"), Port: 65535}},
		{Cmd: cmdAssociate, Addr: socksAddr{Name: "web.default.overlay", Port: 1}},
	} {
		b := appendRequest(nil, req)
		got, err := readRequest(bytes.NewReader(b))
		if err != nil || got != req {
			t.Errorf("readRequest(%x) = %+v, %v; want %+v", b, got, err, req)
		}
	}
}

func FuzzSOCKSRequest(f *testing.F) {
	f.Add(connectReq(atypIPv4, ip4, 80))
	f.Add(connectReq(atypIPv6, make([]byte, 16), 443))
	f.Add(connectReq(atypIPv6, netip.MustParseAddr("fd00::1").AsSlice(), 1))
	f.Add(connectReq(atypIPv6, netip.MustParseAddr("::ffff:10.1.2.3").AsSlice(), 80))
	f.Add(connectReq(atypIPv6, make([]byte, 7), 443)[:12])
	f.Add(connectReq(atypDomain, domain("fd00::1"), 80))
	f.Add(connectReq(atypDomain, domain("[fd00::1]"), 80))
	f.Add(connectReq(atypDomain, domain("web.default.overlay"), 80))
	f.Add([]byte{5, 3, 0, 1, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{5, 2, 0, 9})
	f.Add([]byte{5, 1, 0, 3, 255})
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := readRequest(bytes.NewReader(b))
		if err != nil {
			var se *socksError
			if errors.As(err, &se) {
				switch se.rep {
				case RepGeneralFailure, RepCommandNotSupported, RepAddrTypeNotSupported:
				default:
					t.Fatalf("readRequest(%x): reply %#x for %v", b, se.rep, err)
				}
			}
			return
		}
		// What parsed re-encodes to a request that parses the same.
		again, err := readRequest(bytes.NewReader(appendRequest(nil, req)))
		if err != nil || again != req {
			t.Fatalf("readRequest(%x) = %+v; re-encoded it reads %+v, %v", b, req, again, err)
		}
		if req.Addr.Name == "" && !req.Addr.IP.IsValid() {
			t.Fatalf("readRequest(%x) = %+v: no address", b, req)
		}
	})
}

func FuzzSOCKSDatagram(f *testing.F) {
	f.Add(append([]byte{0, 0, 0}, connectReq(atypIPv4, ip4, 53)[3:]...))
	f.Add(append([]byte{0, 0, 1}, connectReq(atypDomain, domain("dns.test"), 53)[3:]...))
	f.Add([]byte{0, 0, 0, 4, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		frag, dst, payload, err := parseDatagram(b)
		if err != nil {
			return
		}
		if b[0] != 0 || b[1] != 0 || b[3] != atypIPv4 {
			return
		}
		hdr := appendDatagramHeader(nil, dst)
		hdr[2] = frag
		if re := append(hdr, payload...); !bytes.Equal(re, b) {
			t.Fatalf("parseDatagram(%x) = %d %v %x; re-encoded %x", b, frag, dst, payload, re)
		}
	})
}

func TestSOCKSIdleTimeout(t *testing.T) {
	noLeaks(t)
	opts, _ := testOptions(t)
	opts.IdleTimeout = 400 * time.Millisecond
	s := startSOCKS(t, opts)

	// A connection that keeps moving outlives the idle timeout several
	// times over, even while one direction is quiet.
	busy, rep := socksConnect(t, s.Addr().String(), connectReq(atypIPv4, ip4, 80))
	if rep != 0 {
		t.Fatalf("REP %#x", rep)
	}
	defer busy.Close()
	busy.SetDeadline(time.Now().Add(10 * time.Second))
	for i := range 20 {
		busy.Write([]byte{byte(i)})
		if _, err := io.ReadFull(busy, make([]byte, 1)); err != nil {
			t.Fatalf("busy connection closed after %d round trips: %v", i, err)
		}
		time.Sleep(50 * time.Millisecond) // traffic every 50ms for 1s, idle limit 400ms
	}

	idle, rep := socksConnect(t, s.Addr().String(), connectReq(atypIPv4, ip4, 80))
	if rep != 0 {
		t.Fatalf("REP %#x", rep)
	}
	defer idle.Close()
	idle.SetDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	if n, err := idle.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("idle connection read %d, %v; want it closed", n, err)
	}
	if el := time.Since(start); el < 350*time.Millisecond {
		t.Fatalf("idle connection closed after %v, before the 400ms timeout", el)
	}
}

func TestSOCKSUserPass(t *testing.T) {
	noLeaks(t)
	opts, _ := testOptions(t)
	opts.Authenticate = func(user, password string) bool { return user == "alice" && password == "s3cret" }
	s := startSOCKS(t, opts)
	userPass := func(u, p string) []byte {
		b := append([]byte{1, byte(len(u))}, u...)
		return append(append(b, byte(len(p))), p...)
	}
	for _, tt := range []struct {
		name     string
		greeting []byte
		auth     []byte
		want     []byte // method reply, then the auth reply
		ok       bool
	}{
		{"good", []byte{5, 2, 0, 2}, userPass("alice", "s3cret"), []byte{5, 2, 1, 0}, true},
		{"bad password", []byte{5, 1, 2}, userPass("alice", "guess"), []byte{5, 2, 1, 1}, false},
		{"empty", []byte{5, 1, 2}, userPass("", ""), []byte{5, 2, 1, 1}, false},
		{"no auth offered", []byte{5, 1, 0}, nil, []byte{5, 0xff}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := s.Stats().Failed[ReasonAuth]
			c, err := net.Dial("tcp", s.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			c.Write(append(tt.greeting, tt.auth...))
			got := make([]byte, len(tt.want))
			if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, tt.want) {
				t.Fatalf("replies %x, %v; want %x", got, err, tt.want)
			}
			if !tt.ok {
				if b, err := io.ReadAll(c); len(b) != 0 || err != nil {
					t.Fatalf("after refusal: %x, %v; want close", b, err)
				}
				testutil.EventuallyEqual(t, 5*time.Second, "auth failure counted", func() uint64 { return s.Stats().Failed[ReasonAuth] }, before+1)
				return
			}
			c.Write(connectReq(atypIPv4, ip4, 80))
			hdr := make([]byte, 4)
			if _, err := io.ReadFull(c, hdr); err != nil || hdr[1] != 0 {
				t.Fatalf("request after auth: %x, %v", hdr, err)
			}
		})
	}
}

// Many clients at once, each with its own byte-exact echo.
func TestSOCKSConcurrent(t *testing.T) {
	noLeaks(t)
	opts, _ := testOptions(t)
	s := startSOCKS(t, opts)
	const clients, size = 32, 64 << 10
	errs := make(chan error, clients)
	for i := range clients {
		go func() {
			errs <- func() error {
				c, err := net.Dial("tcp", s.Addr().String())
				if err != nil {
					return err
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(20 * time.Second))
				c.Write(append([]byte{5, 1, 0}, connectReq(atypDomain, domain("echo.test"), uint16(1000+i))...))
				reply := make([]byte, 2+10)
				if _, err := io.ReadFull(c, reply); err != nil || reply[3] != 0 {
					return fmt.Errorf("client %d: reply %x, %v", i, reply, err)
				}
				data := bytes.Repeat([]byte{byte(i)}, size)
				go func() {
					c.Write(data)
					c.(*net.TCPConn).CloseWrite()
				}()
				got, err := io.ReadAll(c)
				if err != nil || !bytes.Equal(got, data) {
					return fmt.Errorf("client %d: echo of %d bytes came back as %d, %v", i, size, len(got), err)
				}
				return nil
			}()
		}()
	}
	for range clients {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	testutil.EventuallyEqual(t, 5*time.Second, "all connections to end", func() int64 { return s.Stats().Active }, 0)
	if st := s.Stats(); st.Accepted != clients || st.OutBytes != clients*size || st.InBytes != clients*size {
		t.Errorf("stats = %+v; want %d connections, %d bytes each way", st, clients, clients*size)
	}
}
