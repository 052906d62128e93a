package gossip

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/overlayd/overlayd/internal/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// fakeLAN is an in-memory discovery medium: every Discoverer started on it
// hears every other, as on one LAN. No sockets.
type fakeLAN struct {
	mu    sync.Mutex // guards nodes; found is called with it held
	nodes map[*fakeDiscoverer]bool
}

func newFakeLAN() *fakeLAN { return &fakeLAN{nodes: map[*fakeDiscoverer]bool{}} }

type fakeDiscoverer struct {
	lan      *fakeLAN
	self     Found
	found    func(Found)
	reported int // guarded by lan.mu: how many times found was called
}

var _ Discoverer = (*fakeDiscoverer)(nil)

func (l *fakeLAN) discoverer() *fakeDiscoverer { return &fakeDiscoverer{lan: l} }

func (d *fakeDiscoverer) Start(self Found, found func(Found)) error {
	d.lan.mu.Lock()
	defer d.lan.mu.Unlock()
	d.self, d.found = self, found
	for o := range d.lan.nodes {
		o.found(self)
		o.reported++
		found(o.self)
		d.reported++
	}
	d.lan.nodes[d] = true
	return nil
}

func (d *fakeDiscoverer) Close() error {
	d.lan.mu.Lock()
	defer d.lan.mu.Unlock()
	delete(d.lan.nodes, d)
	return nil
}

// startDiscovering starts a node of c with disc and no seeds.
func (c *cluster) startDiscovering(name string, keys [][]byte, disc Discoverer, log *zap.Logger) *Gossip {
	c.t.Helper()
	if log == nil {
		log = testLogger()
	}
	g, err := New(Options{
		Name:      name,
		Profile:   ProfileTest,
		Keys:      keys,
		Logger:    log,
		Transport: c.net.NewTransport(name),
		Discover:  disc,
	})
	if err != nil {
		c.t.Fatalf("New(%s): %v", name, err)
	}
	c.nodes[name] = g
	return g
}

// TestDiscoverJoins: three nodes with discovery and no seeds form one
// cluster.
func TestDiscoverJoins(t *testing.T) {
	c := newCluster(t)
	lan := newFakeLAN()
	for _, n := range []string{"a", "b", "c"} {
		c.startDiscovering(n, nil, lan.discoverer(), nil)
	}
	c.waitMembers(10 * time.Second)
}

// TestDiscoverAnnounceOnly: a node whose discovery only announces (it has
// seeds) is found and joined, and is told of no one.
func TestDiscoverAnnounceOnly(t *testing.T) {
	c := newCluster(t)
	lan := newFakeLAN()
	c.startDiscovering("seeded", nil, AnnounceOnly(lan.discoverer()), nil)
	c.startDiscovering("plain", nil, lan.discoverer(), nil)
	c.waitMembers(10 * time.Second)

	told := 0 // written under lan.mu, by the fake
	d := AnnounceOnly(lan.discoverer())
	if err := d.Start(Found{Name: "quiet", Addr: netip.MustParseAddrPort("198.18.9.9:7946")}, func(Found) { told++ }); err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	lan.mu.Lock()
	defer lan.mu.Unlock()
	if told != 0 {
		t.Fatalf("AnnounceOnly told of %d nodes, want 0 (two were on the LAN)", told)
	}
}

// TestDiscoverAnotherKey: a node with another gossip key is found but not
// joined, and the log says why, once.
func TestDiscoverAnotherKey(t *testing.T) {
	c := newCluster(t)
	lan := newFakeLAN()
	k1, k2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	a := c.startDiscovering("a", [][]byte{k1}, lan.discoverer(), nil)
	c.startDiscovering("b", [][]byte{k1}, lan.discoverer(), nil)
	core, logs := observer.New(zap.WarnLevel)
	x := c.startDiscovering("x", [][]byte{k2}, lan.discoverer(), zap.New(core))
	// x hears a and b at Start and tries both: two warnings prove the
	// attempts were made and failed.
	testutil.Eventually(t, 10*time.Second, "x's warnings", func() error {
		if n := logs.FilterMessageSnippet("not joining a node found by discovery").Len(); n < 2 {
			return fmt.Errorf("%d warnings", n)
		}
		return nil
	})
	for _, e := range logs.FilterMessageSnippet("not joining").All() {
		err := fmt.Sprint(e.ContextMap()["error"])
		if !strings.Contains(err, "another key") {
			t.Errorf("warning %q: error %q does not say another key", e.Message, err)
		}
	}
	if n := logs.FilterMessageSnippet("not joining").Len(); n != 2 {
		t.Errorf("%d warnings, want 2 (one per node found)", n)
	}
	testutil.Eventually(t, 10*time.Second, "a and b", func() error {
		if n := aliveCount(a); n != 2 {
			return fmt.Errorf("a sees %d alive, want 2", n)
		}
		return nil
	})
	if n := aliveCount(x); n != 1 {
		t.Fatalf("x sees %d alive, want 1 (itself)", n)
	}
	if je := x.Stats().JoinError; !strings.Contains(je, "another key") {
		t.Errorf("x's Stats().JoinError = %q, want why it is alone (another key)", je)
	}
	if je := a.Stats().JoinError; je != "" {
		t.Errorf("a's Stats().JoinError = %q, want none (it is in its cluster; x is another)", je)
	}
}

// TestMDNSStartRefuses: the real mDNS refuses, before opening a socket, an
// address no interface can multicast from (loopback), one no interface
// holds, and IPv6.
func TestMDNSStartRefuses(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		{"127.0.0.1:7946", "cannot multicast"},
		{"192.0.2.77:7946", "no interface holds the gossip address 192.0.2.77"},
		{"[2001:db8::1]:7946", "not IPv4"},
	} {
		d := NewMDNS(MDNSOptions{})
		err := d.Start(Found{Name: "n", Addr: netip.MustParseAddrPort(tc.addr)}, func(Found) {})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Start(%s) = %v, want an error with %q", tc.addr, err, tc.want)
		}
		if err := d.Close(); err != nil {
			t.Errorf("Close after a failed Start = %v", err)
		}
	}
}

func TestParseTXT(t *testing.T) {
	for _, tc := range []struct {
		txt  []string
		want Found
		err  string
	}{
		{[]string{"v=1", "name=h1", "addr=198.18.0.1:7946"}, Found{"h1", netip.MustParseAddrPort("198.18.0.1:7946")}, ""},
		{[]string{"V=1", "Name=h1", "ADDR=198.18.0.1:7946", "later=x", "name=other"}, Found{"h1", netip.MustParseAddrPort("198.18.0.1:7946")}, ""},
		{[]string{"v=2", "name=h1", "addr=198.18.0.1:7946"}, Found{}, "version"},
		{[]string{"name=h1", "addr=198.18.0.1:7946"}, Found{}, "without a version"},
		{[]string{"v=1", "addr=198.18.0.1:7946"}, Found{}, "without a name"},
		{[]string{"v=1", "name=h1"}, Found{}, "without an addr"},
		{[]string{"v=1", "name=", "addr=198.18.0.1:7946"}, Found{}, "name"},
		{[]string{"v=1", "name=h1", "addr=198.18.0.1"}, Found{}, "addr"},
		{[]string{"v=1", "name=h1", "addr=198.18.0.1:0"}, Found{}, "not a unicast"},
		{[]string{"v=1", "name=h1", "addr=224.0.0.251:7946"}, Found{}, "not a unicast"},
		{[]string{"v=1", "name=h1", "addr=0.0.0.0:7946"}, Found{}, "not a unicast"},
		{[]string{"v=1", "name=h1", "addr=[2001:db8::1]:7946"}, Found{}, "not a unicast"},
	} {
		got, err := parseTXT(tc.txt)
		if tc.err == "" && (err != nil || got != tc.want) || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("parseTXT(%q) = %v, %v; want %v, error with %q", tc.txt, got, err, tc.want, tc.err)
		}
	}
}

// TestParseMDNS: what a node answers is what another reads, and a
// goodbye reports no one.
func TestParseMDNS(t *testing.T) {
	self := Found{Name: "h1.example", Addr: netip.MustParseAddrPort("198.18.0.1:7946")}
	m := &mdns{self: self, inst: instanceLabel(self.Name) + "." + MDNSService, host: instanceLabel(self.Name) + ".local."}
	for _, tc := range []struct {
		ttl  uint32
		want int
	}{{mdnsTTL, 1}, {0, 0}} {
		b, err := m.response(tc.ttl, 0, nil).Pack()
		if err != nil {
			t.Fatal(err)
		}
		msg, found, err := parseMDNS(b)
		if err != nil || !msg.Response || len(found) != tc.want || tc.want == 1 && found[0] != self {
			t.Errorf("parseMDNS(response(ttl %d)) = %v, %v; want %d node %v", tc.ttl, found, err, tc.want, self)
		}
	}
	b, _ := m.query().Pack()
	if msg, found, err := parseMDNS(b); err != nil || msg.Response || len(found) != 0 {
		t.Errorf("parseMDNS(query) = %v, %v, %v; want a query, no node", msg, found, err)
	}
}

func TestInstanceLabel(t *testing.T) {
	a, b := instanceLabel("h1.example"), instanceLabel("h1-example")
	if !strings.HasPrefix(a, "h1-example-") || a == b {
		t.Errorf("instanceLabel = %q, %q; want an h1-example- prefix and labels that differ", a, b)
	}
	if l := instanceLabel(strings.Repeat("é", 100)); len(l) > 63 {
		t.Errorf("instanceLabel(long) = %q: %d bytes, more than a DNS label's 63", l, len(l))
	}
}

// FuzzParseMDNS: any packet unpacks or fails without a panic, and every
// node it reports has a TXT that reads back the same.
func FuzzParseMDNS(f *testing.F) {
	self := Found{Name: "h1", Addr: netip.MustParseAddrPort("198.18.0.1:7946")}
	m := &mdns{self: self, inst: instanceLabel("h1") + "." + MDNSService, host: instanceLabel("h1") + ".local."}
	b, _ := m.response(mdnsTTL, 0, nil).Pack()
	f.Add(b)
	q, _ := m.query().Pack()
	f.Add(q)
	f.Fuzz(func(t *testing.T, b []byte) {
		_, found, err := parseMDNS(b)
		if err != nil && len(found) > 0 {
			t.Fatalf("parseMDNS: error %v with %d nodes", err, len(found))
		}
		for _, n := range found {
			if back, err := parseTXT(formatTXT(n)); err != nil || back != n {
				t.Fatalf("parseTXT(formatTXT(%v)) = %v, %v", n, back, err)
			}
		}
	})
}

// FuzzParseTXT: TXT strings (split at newlines) parse or fail without a
// panic; what parses reads back the same.
func FuzzParseTXT(f *testing.F) {
	f.Add("v=1\nname=h1\naddr=198.18.0.1:7946")
	f.Add("v=1\nname=\xff\naddr=1.2.3.4:1")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseTXT(strings.Split(s, "\n"))
		if err != nil {
			return
		}
		if back, err := parseTXT(formatTXT(got)); err != nil || back != got {
			t.Fatalf("parseTXT(formatTXT(%v)) = %v, %v", got, back, err)
		}
	})
}
