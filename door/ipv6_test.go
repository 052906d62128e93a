package door_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/overlayd/overlayd/door"
	"github.com/overlayd/overlayd/stack"
	"github.com/overlayd/overlayd/stack/stacktest"
)

var (
	server4 = netip.MustParseAddr("10.0.0.2")
	server6 = netip.MustParseAddr("fd00::2")
	dual    = []netip.Prefix{netip.MustParsePrefix("10.0.0.1/24"), netip.MustParsePrefix("fd00::1/64")}
	only6   = []netip.Prefix{netip.MustParsePrefix("fd00::1/64")}
)

// v6net is a client netstack (the doors' Dialer) and a dual-stack server
// netstack on one link. The server answers on both families: TCP :9000
// writes "from PEER\n" and echoes, HTTP :80 answers "from PEER", UDP
// :9001 echoes. "both.test" resolves to the server's IPv4 then IPv6
// address, "six.test" to its IPv6 one.
type v6net struct {
	client, server *stack.Netstack
	opts           door.Options
}

func newV6Net(t *testing.T, clientAddrs []netip.Prefix) *v6net {
	t.Helper()
	client, err := stack.NewNetstack(stack.NetstackOptions{Addrs: clientAddrs})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := stack.NewNetstack(stack.NetstackOptions{Addrs: []netip.Prefix{netip.PrefixFrom(server4, 24), netip.PrefixFrom(server6, 64)}})
	if err != nil {
		client.Close()
		t.Fatal(err)
	}
	stop := stacktest.Wire(client, srv)
	var wg sync.WaitGroup
	t.Cleanup(func() { stop(); wg.Wait() })

	el, err := srv.Listen("tcp", ":9000")
	if err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := el.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				fmt.Fprintf(c, "from %s\n", c.RemoteAddr())
				io.Copy(c, c)
			}()
		}
	}()
	hl, err := srv.Listen("tcp", ":80")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "from %s to %s", r.RemoteAddr, r.Host)
	})}
	wg.Add(1)
	go func() { defer wg.Done(); hs.Serve(hl) }()
	t.Cleanup(func() { hs.Close() })
	pc, err := srv.ListenPacket("udp", ":9001")
	if err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
	names := map[string][]netip.Addr{"both.test": {server4, server6}, "six.test": {server6}}
	return &v6net{client: client, server: srv, opts: door.Options{
		Dialer:         client,
		PacketListener: client,
		Resolver: func(_ context.Context, host string) ([]netip.Addr, error) {
			if a, ok := names[host]; ok {
				return a, nil
			}
			return nil, fmt.Errorf("%s: no such host", host)
		},
		DialTimeout: 5 * time.Second,
	}}
}

// socksConnect runs a SOCKS5 CONNECT (no authentication) to addr (ATYP
// and its bytes) over a new connection to the door and returns the
// connection and the reply's code and bound address.
func socks5Do(t *testing.T, door net.Addr, cmd, atyp byte, addr []byte, port uint16) (net.Conn, byte, netip.AddrPort) {
	t.Helper()
	c, err := net.Dial("tcp", door.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	req := append([]byte{5, 1, 0, 5, cmd, 0, atyp}, addr...)
	if _, err := c.Write(binary.BigEndian.AppendUint16(req, port)); err != nil {
		t.Fatal(err)
	}
	var rep [4]byte
	if _, err := io.ReadFull(c, rep[:2]); err != nil || rep[1] != 0 {
		t.Fatalf("method reply %x, %v", rep[:2], err)
	}
	if _, err := io.ReadFull(c, rep[:4]); err != nil {
		t.Fatalf("reply: %v", err)
	}
	var bnd netip.AddrPort
	switch rep[3] {
	case 1, 4:
		b := make([]byte, 4+2)
		if rep[3] == 4 {
			b = make([]byte, 16+2)
		}
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatalf("reply address: %v", err)
		}
		ip, _ := netip.AddrFromSlice(b[:len(b)-2])
		bnd = netip.AddrPortFrom(ip, binary.BigEndian.Uint16(b[len(b)-2:]))
	default:
		t.Fatalf("reply ATYP %d", rep[3])
	}
	return c, rep[1], bnd
}

// greeting reads the echo server's first line.
func greeting(t *testing.T, c net.Conn) string {
	t.Helper()
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("read the server's greeting: %v", err)
	}
	return strings.TrimSpace(line)
}

func TestSOCKS5IPv6(t *testing.T) {
	n := newV6Net(t, dual)
	s, err := door.NewSOCKS5("127.0.0.1:0", n.opts)
	socks := start(t, s, err)

	// An IPv6 literal (ATYP 4): the reply binds an IPv6 address (ATYP 4).
	c, rep, bnd := socks5Do(t, socks.Addr(), 1, 4, server6.AsSlice(), 9000)
	if rep != 0 || bnd.Addr() != netip.MustParseAddr("fd00::1") || bnd.Port() == 0 {
		t.Fatalf("CONNECT [fd00::2]:9000: reply %d bound %v, want 0 and [fd00::1]:PORT", rep, bnd)
	}
	if got, want := greeting(t, c), "from "+bnd.String(); got != want {
		t.Errorf("server said %q, want %q", got, want)
	}
	io.WriteString(c, "ping6\n")
	if got := greeting(t, c); got != "ping6" {
		t.Errorf("echo %q, want ping6", got)
	}

	// A bracketed literal sent as a name; then names: in the Resolver's
	// order (IPv4 first) on a dual-stack client.
	for _, tc := range []struct{ name, wantFrom string }{
		{"[fd00::2]", "from [fd00::1]:"},
		{"six.test", "from [fd00::1]:"},
		{"both.test", "from 10.0.0.1:"},
	} {
		c, rep, _ := socks5Do(t, socks.Addr(), 1, 3, append([]byte{byte(len(tc.name))}, tc.name...), 9000)
		if got := greeting(t, c); rep != 0 || !strings.HasPrefix(got, tc.wantFrom) {
			t.Errorf("CONNECT %s: reply %d, server said %q, want %q…", tc.name, rep, got, tc.wantFrom)
		}
	}

	// UDP ASSOCIATE to an IPv6 destination: the reply's header names it
	// with ATYP 4.
	ctl, rep, relay := socks5Do(t, socks.Addr(), 3, 1, []byte{0, 0, 0, 0}, 0)
	if rep != 0 {
		t.Fatalf("UDP ASSOCIATE: reply %d", rep)
	}
	defer ctl.Close()
	uc, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(relay))
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	hdr := binary.BigEndian.AppendUint16(append([]byte{0, 0, 0, 4}, server6.AsSlice()...), 9001)
	want := append(append([]byte(nil), hdr...), "datagram over v6"...)
	buf := make([]byte, 2048)
	var got []byte
	for try := 0; try < 5 && got == nil; try++ { // UDP may drop: a few tries
		uc.Write(want)
		uc.SetReadDeadline(time.Now().Add(time.Second))
		if k, err := uc.Read(buf); err == nil {
			got = buf[:k]
		}
	}
	if !bytes.Equal(got, want) {
		t.Errorf("UDP through the association: got %x, want %x", got, want)
	}
}

// TestSOCKS5PrefersTheClientsFamily: a name with addresses of both
// families is dialed in the family the client netstack has, whatever the
// Resolver's order.
func TestSOCKS5PrefersTheClientsFamily(t *testing.T) {
	n := newV6Net(t, only6)
	if v4, v6 := n.client.Families(); v4 || !v6 {
		t.Fatalf("Families() = %v, %v; want false, true", v4, v6)
	}
	s, err := door.NewSOCKS5("127.0.0.1:0", n.opts)
	socks := start(t, s, err)
	c, rep, _ := socks5Do(t, socks.Addr(), 1, 3, append([]byte{9}, "both.test"...), 9000)
	if got := greeting(t, c); rep != 0 || !strings.HasPrefix(got, "from [fd00::1]:") {
		t.Errorf("CONNECT both.test from an IPv6-only client: reply %d, server said %q, want from [fd00::1]", rep, got)
	}
	// Without the capability, the Resolver's order: IPv4 first, which
	// the client cannot reach, then IPv6.
	opts := n.opts
	opts.Dialer = door.DialerFunc(n.client.DialContext)
	s2, err := door.NewSOCKS5("127.0.0.1:0", opts)
	plain := start(t, s2, err)
	c, rep, _ = socks5Do(t, plain.Addr(), 1, 3, append([]byte{9}, "both.test"...), 9000)
	if got := greeting(t, c); rep != 0 || !strings.HasPrefix(got, "from [fd00::1]:") {
		t.Errorf("CONNECT both.test, IPv4 first and unreachable: reply %d, server said %q, want from [fd00::1]", rep, got)
	}
}

func TestHTTPProxyIPv6(t *testing.T) {
	n := newV6Net(t, dual)
	h, err := door.NewHTTPProxy("127.0.0.1:0", n.opts)
	proxy := start(t, h, err)
	do := func(req string) (string, *bufio.Reader, net.Conn) {
		t.Helper()
		c, err := net.Dial("tcp", proxy.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, req)
		br := bufio.NewReader(c)
		status, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("%q: %v", req, err)
		}
		return strings.TrimSpace(status), br, c
	}
	status, br, c := do("CONNECT [fd00::2]:9000 HTTP/1.1\r\nHost: [fd00::2]:9000\r\n\r\n")
	if status != "HTTP/1.1 200 Connection established" {
		t.Fatalf("CONNECT [fd00::2]:9000: %q", status)
	}
	br.ReadString('\n') // the blank line
	if line, _ := br.ReadString('\n'); !strings.HasPrefix(line, "from [fd00::1]:") {
		t.Errorf("through CONNECT the server said %q, want from [fd00::1]", line)
	}
	c.Close()

	status, br, _ = do("GET http://[fd00::2]/x HTTP/1.1\r\nHost: [fd00::2]\r\n\r\n")
	body, _ := io.ReadAll(br)
	if status != "HTTP/1.1 200 OK" || !bytes.Contains(body, []byte("from [fd00::1]:")) || !bytes.Contains(body, []byte("to [fd00::2]")) {
		t.Errorf("GET http://[fd00::2]/x: %q %q, want 200 from [fd00::1] to [fd00::2]", status, body)
	}

	status, br, _ = do("CONNECT fd00::2:9000 HTTP/1.1\r\nHost: fd00::2:9000\r\n\r\n")
	body, _ = io.ReadAll(br)
	if status != "HTTP/1.1 400 Bad Request" || !bytes.Contains(body, []byte("[fd00::2]:9000")) {
		t.Errorf("CONNECT fd00::2:9000: %q %q, want 400 showing [fd00::2]:9000", status, body)
	}
}

// needLoopback6 skips without an IPv6 loopback on the host (fails under
// CI=true).
func needLoopback6(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err == nil {
		ln.Close()
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("needs an IPv6 loopback ([::1]), and CI=true: %v", err)
	}
	t.Skipf("needs an IPv6 loopback ([::1]): %v", err)
}

func TestForwardAndExposeIPv6(t *testing.T) {
	needLoopback6(t)
	n := newV6Net(t, dual)
	for _, proto := range []string{"tcp", "udp"} {
		target := "[fd00::2]:9000"
		if proto == "udp" {
			target = "[fd00::2]:9001"
		}
		f, err := door.NewForward(door.Forward{Listen: "[::1]:0", Target: target, Proto: proto}, n.opts)
		fw := start(t, f, err)
		c, err := net.Dial(proto, fw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if proto == "tcp" {
			if got := greeting(t, c); !strings.HasPrefix(got, "from [fd00::1]:") {
				t.Errorf("forward [::1] → %s: server said %q, want from [fd00::1]", target, got)
			}
			continue
		}
		buf := make([]byte, 64)
		var got string
		for try := 0; try < 5 && got == ""; try++ {
			c.Write([]byte("udp6 forward"))
			c.SetReadDeadline(time.Now().Add(time.Second))
			if k, err := c.Read(buf); err == nil {
				got = string(buf[:k])
			}
		}
		if got != "udp6 forward" {
			t.Errorf("UDP forward [::1] → %s: echo %q", target, got)
		}
	}

	// Expose: an overlay listener on the client's IPv6 address spliced
	// to a host server on [::1].
	host, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	go func() {
		for {
			c, err := host.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "host saw %s\n", c.RemoteAddr())
			c.Close()
		}
	}()
	ln, err := n.client.Listen("tcp6", "[fd00::1]:7000")
	if err != nil {
		t.Fatal(err)
	}
	e, err := door.NewExpose(ln, host.Addr().String(), door.Options{Dialer: &net.Dialer{}})
	start(t, e, err)
	// The server netstack plays the overlay client.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	oc, err := n.server.DialContext(ctx, "tcp6", "[fd00::1]:7000")
	if err != nil {
		t.Fatalf("dial the exposed [fd00::1]:7000: %v", err)
	}
	defer oc.Close()
	oc.SetDeadline(time.Now().Add(10 * time.Second))
	if got := greeting(t, oc); !strings.HasPrefix(got, "host saw [::1]:") {
		t.Errorf("through the expose the host server said %q, want it saw [::1]", got)
	}
	if _, err := door.NewExpose(ln, "::1:7000", door.Options{Dialer: &net.Dialer{}}); err == nil || !strings.Contains(err.Error(), "[::1]:7000") {
		t.Errorf("NewExpose(::1:7000) = %v, want the bracketed form shown", err)
	}
}

// TestSOCKS5OnIPv6Loopback: the door itself on [::1]: a CONNECT to an
// IPv4 destination, and a UDP association whose relay is on [::1] (ATYP
// 4 in the reply) and takes the client's datagrams from [::1].
func TestSOCKS5OnIPv6Loopback(t *testing.T) {
	needLoopback6(t)
	n := newV6Net(t, dual)
	s, err := door.NewSOCKS5("[::1]:0", n.opts)
	socks := start(t, s, err)
	c, rep, _ := socks5Do(t, socks.Addr(), 1, 1, server4.AsSlice(), 9000)
	if got := greeting(t, c); rep != 0 || !strings.HasPrefix(got, "from 10.0.0.1:") {
		t.Errorf("CONNECT 10.0.0.2:9000 through [::1]: reply %d, server said %q", rep, got)
	}
	ctl, rep, relay := socks5Do(t, socks.Addr(), 3, 4, make([]byte, 16), 0)
	defer ctl.Close()
	if rep != 0 || relay.Addr() != netip.IPv6Loopback() {
		t.Fatalf("UDP ASSOCIATE on [::1]: reply %d relay %v, want 0 and [::1]:PORT", rep, relay)
	}
	uc, err := net.DialUDP("udp6", nil, net.UDPAddrFromAddrPort(relay))
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	hdr := binary.BigEndian.AppendUint16(append([]byte{0, 0, 0, 1}, server4.AsSlice()...), 9001)
	want := append(append([]byte(nil), hdr...), "v4 datagram via a v6 relay"...)
	buf := make([]byte, 2048)
	var got []byte
	for try := 0; try < 5 && got == nil; try++ {
		uc.Write(want)
		uc.SetReadDeadline(time.Now().Add(time.Second))
		if k, err := uc.Read(buf); err == nil {
			got = buf[:k]
		}
	}
	if !bytes.Equal(got, want) {
		t.Errorf("UDP through the [::1] relay: got %x, want %x", got, want)
	}
}
