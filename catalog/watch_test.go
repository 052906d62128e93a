package catalog

import (
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/overlayd/overlayd/gossip"
	"github.com/overlayd/overlayd/gossip/gossiptest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newGossip(t *testing.T, networks ...string) *gossip.Gossip {
	t.Helper()
	g, err := gossip.New(gossip.Options{Name: "a", Profile: gossip.ProfileTest, Transport: gossiptest.NewNetwork().NewTransport("a")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	for _, nw := range networks {
		if err := g.JoinNetwork(nw); err != nil {
			t.Fatal(err)
		}
	}
	return g
}

func put(t *testing.T, g *gossip.Gossip, table, network, key string) {
	t.Helper()
	if err := g.Put(table, network, key, []byte("v")); err != nil {
		t.Fatal(err)
	}
}

func signalled(t *testing.T, kick <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-kick:
	case <-time.After(10 * time.Second):
		t.Fatalf("no signal within 10s after %s", what)
	}
}

// Watch signals the changes of its tables in its network alone,
// coalesces a burst into one pending signal, and stops when told.
func TestWatch(t *testing.T) {
	g := newGossip(t, "blue", "green")
	kick := make(chan struct{}, 1)
	stop := Watch(g, "blue", kick, ServiceTables()...)
	defer stop()

	put(t, g, TableServices, "blue", "web")
	signalled(t, kick, "a services put")
	put(t, g, TableBackends, "blue", "web/10.0.0.1:80")
	signalled(t, kick, "a backends put")

	// Other tables and other networks are not watched. A probe watching
	// them proves their changes were delivered before kick is checked.
	probe := make(chan struct{}, 1)
	stopProbe := Watch(g, "green", probe, TableServices)
	put(t, g, TableRoutes, "blue", "a")
	put(t, g, TableServices, "green", "web")
	signalled(t, probe, "a green services put")
	stopProbe()
	select {
	case <-kick:
		t.Error("signalled for a change of an unwatched table or network")
	default:
	}

	// A burst while nobody reads leaves one signal pending; the watch
	// never blocks on a full kick.
	for i := range 50 {
		put(t, g, TableServices, "blue", "s"+string(rune('a'+i%26))+string(rune('a'+i/26)))
	}
	signalled(t, kick, "a burst")

	stop()
	stop()              // twice is safe
	for len(kick) > 0 { // a signal of the burst may still have been pending
		<-kick
	}
	probe = make(chan struct{}, 1)
	stopProbe = Watch(g, "blue", probe, TableServices)
	defer stopProbe()
	put(t, g, TableServices, "blue", "after-stop")
	signalled(t, probe, "a put after stop")
	select {
	case <-kick:
		t.Error("signalled after stop")
	default:
	}
}

// The watch ends by itself when the gossip closes.
func TestWatchGossipClosed(t *testing.T) {
	g := newGossip(t, "blue")
	stop := Watch(g, "blue", make(chan struct{}, 1), ZoneTables()...)
	g.Close()
	done := make(chan struct{})
	go func() { stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("stop did not return after the gossip closed")
	}
}
