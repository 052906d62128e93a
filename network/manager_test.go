package network

import (
	"context"
	"fmt"
	"hash/fnv"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/overlayd/overlayd/gossip"
	"github.com/overlayd/overlayd/gossip/gossiptest"
	"github.com/overlayd/overlayd/internal/statefile"
	"github.com/overlayd/overlayd/internal/testutil"
	"github.com/overlayd/overlayd/ipam"
)

// TestMain checks for leaks. A deadline timer of gossiptest's net.Pipe
// firing as the check runs is not one (ipam's tests saw it under load).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("net.(*pipeDeadline).set.func1"))
}

// cluster is a set of Managers on one in-memory gossip network.
type cluster struct {
	t   testing.TB
	net *gossiptest.Network
}

func newCluster(t testing.TB) *cluster { return &cluster{t: t, net: gossiptest.NewNetwork()} }

// member is one node's gossip and Manager, with the loop that calls
// Maintain (node's control loop, reduced).
type member struct {
	name string
	vtep netip.AddrPort
	g    *gossip.Gossip
	m    *Manager
	dir  string // the state directory; "" for none
	stop chan struct{}
	done chan struct{}
}

// vtepOf is a member's VTEP: one per name.
func vtepOf(name string) netip.AddrPort {
	h := fnv.New32a()
	h.Write([]byte(name))
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(10000+h.Sum32()%50000))
}

// start starts (or, with the same dir, restarts) a member that joins
// seeds; opts fills in the Manager's options beyond the gossip, VTEP,
// state and kick. It crashes at the end of the test.
func (c *cluster) start(name, dir string, opts Options, seeds ...string) *member {
	c.t.Helper()
	mb := &member{name: name, vtep: vtepOf(name), dir: dir, stop: make(chan struct{}), done: make(chan struct{})}
	g, err := gossip.New(gossip.Options{
		Name: name, Profile: gossip.ProfileTest, Transport: c.net.NewTransport(name),
		Meta: gossip.Meta{VTEP: mb.vtep}, Logger: zap.NewNop(),
	})
	if err != nil {
		c.t.Fatal(err)
	}
	mb.g = g
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if dir != "" {
		if opts.State, err = statefile.Open(dir, opts.Log.Named("control")); err != nil {
			g.Close()
			c.t.Fatal(err)
		}
	}
	kick := make(chan struct{}, 1)
	opts.Gossip, opts.VTEP, opts.Kick = g, mb.vtep, kick
	if opts.CreateWindow == 0 {
		opts.CreateWindow = 750 * time.Millisecond
	}
	if mb.m, err = New(opts); err != nil {
		g.Close()
		c.t.Fatal(err)
	}
	if err := mb.m.Start(context.Background()); err != nil {
		mb.crash()
		c.t.Fatal(err)
	}
	go func() {
		defer close(mb.done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-mb.stop:
				return
			case <-kick:
			case <-t.C:
			}
			mb.m.Maintain()
		}
	}()
	c.t.Cleanup(mb.crash)
	if len(seeds) > 0 {
		var addrs []string
		for _, s := range seeds {
			addrs = append(addrs, c.net.Addr(s))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := g.Join(ctx, addrs); err != nil {
			c.t.Fatalf("%s: Join(%v): %v", name, seeds, err)
		}
	}
	return mb
}

// crash stops the member without leaving the cluster. Safe twice.
func (mb *member) crash() {
	select {
	case <-mb.stop:
		return
	default:
	}
	close(mb.stop)
	<-mb.done
	mb.m.Close()
	mb.g.Close()
}

// waitMembers waits until every member sees every other alive.
func waitMembers(t testing.TB, ms ...*member) {
	t.Helper()
	testutil.Eventually(t, 15*time.Second, "cluster formed", func() error {
		for _, mb := range ms {
			alive := 0
			for _, x := range mb.g.Members() {
				if x.State == gossip.StateAlive {
					alive++
				}
			}
			if alive != len(ms) {
				return fmt.Errorf("%s sees %d alive members, want %d", mb.name, alive, len(ms))
			}
		}
		return nil
	})
}

// joinedAddr is mb's address on network.
func joinedAddr(t testing.TB, mb *member, network string) netip.Prefix {
	t.Helper()
	for _, j := range mb.m.Joined() {
		if j.Name == network {
			return j.Prefixes()[0]
		}
	}
	t.Fatalf("%s has not joined %s: %+v", mb.name, network, mb.m.Joined())
	return netip.Prefix{}
}

// fileHoldsLease reports (nil) whether the ipam state file at path holds
// a lease of addr for owner.
func fileHoldsLease(path string, addr netip.Addr, owner string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	st, err := ipam.DecodeState(raw)
	if err != nil {
		return err
	}
	for _, ls := range st.Leases {
		if ls.Addr == addr && ls.Owner == owner {
			return nil
		}
	}
	return fmt.Errorf("%s holds %+v", path, st.Leases)
}

// stateDir is a fresh state directory.
func stateDir(t testing.TB) string { return filepath.Join(t.TempDir(), "state") }

var zapNop = zap.NewNop()
