package gossip

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/overlayd/overlayd/internal/testutil"
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
