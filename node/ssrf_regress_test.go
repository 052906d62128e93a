package node_test

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/e2e"
	"github.com/overlayd/overlayd/node"
	"github.com/overlayd/overlayd/stack"
)

// hostTarget is a host program the doors must never reach: a TCP
// listener on every host address (IPv4 and IPv6) that records, in order,
// the first bytes of each connection it accepts.
type hostTarget struct {
	ln   net.Listener
	port uint16
	got  chan string
}

func newHostTarget(t *testing.T) *hostTarget {
	t.Helper()
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	h := &hostTarget{ln: ln, port: uint16(ln.Addr().(*net.TCPAddr).Port), got: make(chan string, 64)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			b := make([]byte, 16)
			n, _ := io.ReadAtLeast(c, b, 1)
			c.Close()
			h.got <- string(b[:n])
		}
	}()
	return h
}

// untouched proves that no connection reached the target before now: a
// marker connection made directly is the first one it accepted (the
// accept queue is in order).
func (h *hostTarget) untouched(t *testing.T) {
	t.Helper()
	c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(h.port))))
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "marker")
	defer c.Close()
	select {
	case first := <-h.got:
		if first != "marker" {
			t.Errorf("a door reached the host program (first connection sent %q)", first)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the host program accepted no connection, not even the marker")
	}
}

// hostAddrs are the host's own non-loopback addresses outside overlay.
func hostAddrs(t *testing.T, overlay netip.Prefix) []netip.Addr {
	ifas, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	var out []netip.Addr
	for _, ifa := range ifas {
		if p, err := netip.ParsePrefix(ifa.String()); err == nil && !p.Addr().IsLoopback() && !p.Addr().IsLinkLocalUnicast() && !overlay.Contains(p.Addr()) {
			out = append(out, p.Addr())
		}
	}
	return out
}

// ssrfHosts are the spellings of "this host" an attacker would try, as
// the host part of HOST:PORT (IPv6 without brackets).
func ssrfHosts(t *testing.T, overlay netip.Prefix) []string {
	hosts := []string{
		"127.0.0.1", "127.0.0.2", "127.1", "0177.0.0.1", "0x7f.0.0.1", "0x7f000001",
		"2130706433", // 127.0.0.1 as one decimal number
		"0.0.0.0", "0", "localhost", "localhost.",
		"::1", "::", "::ffff:127.0.0.1", "::ffff:7f00:1", "0:0:0:0:0:ffff:127.0.0.1", "::127.0.0.1",
	}
	for _, a := range hostAddrs(t, overlay) {
		hosts = append(hosts, a.String())
		if a.Is4() {
			hosts = append(hosts, "::ffff:"+a.String(), strconv.FormatUint(uint64(binary.BigEndian.Uint32(a.AsSlice())), 10))
		}
	}
	return hosts
}

// socksConnect asks the SOCKS5 door at door for host:port: an IP
// address as ATYP 1 or 4, anything else as a name (ATYP 3). It returns
// the reply code (0 is success), or -1 if the door closed without one.
func socksConnect(t *testing.T, door, host string, port uint16, asName bool) int {
	t.Helper()
	c, err := net.Dial("tcp", door)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	c.Write([]byte{5, 1, 0})
	m := make([]byte, 2)
	if _, err := io.ReadFull(c, m); err != nil || m[1] != 0 {
		t.Fatalf("SOCKS5 greeting: %x, %v", m, err)
	}
	req := []byte{5, 1, 0}
	if a, err := netip.ParseAddr(host); err == nil && !asName {
		if a.Is4() {
			req = append(append(req, 1), a.AsSlice()...)
		} else {
			a16 := a.As16()
			req = append(append(req, 4), a16[:]...)
		}
	} else {
		req = append(append(req, 3, byte(len(host))), host...)
	}
	req = binary.BigEndian.AppendUint16(req, port)
	c.Write(req)
	hdr := make([]byte, 2)
	if _, err := io.ReadFull(c, hdr); err != nil {
		return -1
	}
	return int(hdr[1])
}

// httpConnect asks the HTTP proxy door at door for CONNECT host:port and
// returns the status code (0 if the door closed without one).
func httpConnect(t *testing.T, door, host string, port uint16) int {
	t.Helper()
	c, err := net.Dial("tcp", door)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	hp := net.JoinHostPort(host, strconv.Itoa(int(port)))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", hp, hp)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// checkNoSSRF tries every spelling of the host (outside the overlay
// network) through both doors of n, then a legitimate overlay
// destination (good, which must work: the refusals are the doors' rules,
// not a broken door), and finally proves the host program saw none of
// it.
func checkNoSSRF(t *testing.T, n *node.Node, overlay netip.Prefix, good netip.AddrPort) {
	st, err := n.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	doors := map[string]string{}
	for _, d := range st.Doors {
		doors[d.Kind] = d.Addr
	}
	if doors["socks5"] == "" || doors["http_proxy"] == "" {
		t.Fatalf("doors %+v, want socks5 and http_proxy", st.Doors)
	}
	target := newHostTarget(t)
	for _, host := range ssrfHosts(t, overlay) {
		var reps []int
		for _, asName := range []bool{false, true} {
			rep := socksConnect(t, doors["socks5"], host, target.port, asName)
			if rep == 0 {
				t.Errorf("SOCKS5 CONNECT %s (as a name: %v) port %d: succeeded, want refused", host, asName, target.port)
			}
			reps = append(reps, rep)
		}
		code := httpConnect(t, doors["http_proxy"], host, target.port)
		if code/100 == 2 {
			t.Errorf("HTTP CONNECT %s port %d: %d, want refused", host, target.port, code)
		}
		t.Logf("%-26s SOCKS5 REP %d (address), %d (name); HTTP %d", host, reps[0], reps[1], code)
	}
	if rep := socksConnect(t, doors["socks5"], good.Addr().String(), good.Port(), false); rep != 0 {
		t.Errorf("SOCKS5 CONNECT to the overlay destination %v: REP %d, want success", good, rep)
	}
	if code := httpConnect(t, doors["http_proxy"], good.Addr().String(), good.Port()); code != 200 {
		t.Errorf("HTTP CONNECT to the overlay destination %v: %d, want 200", good, code)
	}
	target.untouched(t)
	st, _ = n.Status(t.Context())
	t.Logf("door failures: %+v", st.Doors)
}

// serveOverlay accepts and closes TCP connections on ln until it closes.
func serveOverlay(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

// Issue 10 §1: no SSRF through the SOCKS5 or HTTP proxy door. A netstack
// node's doors reach only the overlay: the host's loopback (127.0.0.1,
// ::1, ::ffff:127.0.0.1, 127.1, octal, hex and decimal spellings,
// localhost) and its other addresses are all refused, as IP literals and
// as names, while an overlay destination works.
func TestDoorsNoSSRFNetstack(t *testing.T) {
	c := e2e.NewCluster(t, 2, e2e.ClusterOptions{Edit: func(i int, cfg *config.Config) {
		if i == 0 {
			cfg.Doors = config.Doors{SOCKS5: "127.0.0.1:0", HTTPProxy: "127.0.0.1:0"}
		}
	}})
	ln, err := c.Nodes[1].Listen("tcp", ":9200")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go serveOverlay(ln)
	checkNoSSRF(t, c.Nodes[0], c.Nodes[0].Addr().Masked(), netip.AddrPortFrom(c.Nodes[1].Addr().Addr(), 9200))
}

// The same in tun mode, where the doors dial through the host's own
// sockets and so the refusal is the doors' rule alone (hostDialer): a
// program on the host's loopback is the closest target there is.
func TestDoorsNoSSRFTUN(t *testing.T) {
	if !stack.CanCreateTUN() {
		e2e.Unavailable(t, "CAP_NET_ADMIN and /dev/net/tun to create a TUN device (run as root)")
	}
	cfg := config.Default()
	cfg.Name = "tunssrf"
	cfg.Mode = config.ModeTUN
	cfg.TUNName = "ovlssrf0"
	cfg.Listen = netip.MustParseAddrPort("127.0.0.1:0")
	cfg.Addr = netip.MustParsePrefix("10.214.1.1/16")
	cfg.Control = ""
	cfg.DNS.Listen = config.DNSOff
	cfg.Doors = config.Doors{SOCKS5: "127.0.0.1:0", HTTPProxy: "127.0.0.1:0"}
	n, err := node.New(cfg)
	if err != nil {
		t.Fatalf("tun mode, with a TUN device allowed here: %v", err)
	}
	defer n.Close()
	if err := n.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	// The overlay destination: a host program on the node's own overlay
	// address (in the overlay, so allowed).
	ln, err := net.Listen("tcp", "10.214.1.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go serveOverlay(ln)
	checkNoSSRF(t, n, cfg.Addr.Masked(), ln.Addr().(*net.TCPAddr).AddrPort())
}
