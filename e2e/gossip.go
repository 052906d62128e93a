package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/internal/testutil"
	"github.com/overlayd/overlayd/node"
	"github.com/overlayd/overlayd/node/nodetest"
)

// GossipCluster is a set of rootless nodes in this process that find each
// other by gossip (the test profile, real sockets on 127.0.0.1 or ::1) and learn
// their routes: no static routes. Node i is named "gnodeI" and keeps its
// state in its own directory, so it can be crashed and restarted. With
// GossipOptions.Net Memory, the sockets are the in-memory fakes instead.
type GossipCluster struct {
	t    testing.TB
	opts GossipOptions
	mem  *nodetest.Memory // nil on Loopback

	mu    sync.Mutex   // guards Nodes and cfgs
	Nodes []*node.Node // nil for a node that is down
	cfgs  []config.Config
}

// GossipOptions tune NewGossipCluster.
type GossipOptions struct {
	// Edit, when not nil, changes node i's configuration before it starts.
	Edit func(i int, c *config.Config)
	// Log gives nodes a test logger at this level; nil means no logs.
	Log *zap.AtomicLevel
	// Net is what the nodes talk over; default Loopback.
	Net Net
}

// NewGossipCluster starts n nodes, each joining the cluster through node
// 0, and stops them when the test ends.
func NewGossipCluster(t testing.TB, n int, opts GossipOptions) *GossipCluster {
	t.Helper()
	c := &GossipCluster{t: t, opts: opts, Nodes: make([]*node.Node, n), cfgs: make([]config.Config, n)}
	if opts.Net == Memory {
		c.mem = nodetest.NewMemory()
	}
	// Before the Cleanup below, so that it runs after it (cleanups run
	// last first): the nodes stop before their state directories go.
	dir := t.TempDir()
	t.Cleanup(func() {
		c.mu.Lock()
		nodes := slices.Clone(c.Nodes)
		c.mu.Unlock()
		for _, nd := range nodes {
			if nd != nil {
				nodetest.Crash(nd) // no leave: faster, and nobody is left to tell
			}
		}
	})
	for i := range n {
		cfg := config.Default()
		cfg.Name = fmt.Sprintf("gnode%d", i)
		cfg.Mode = config.ModeNetstack
		cfg.Listen = opts.Net.any()
		cfg.Control = ""
		cfg.Gossip.Listen = opts.Net.any()
		cfg.Gossip.Profile = "test"
		cfg.StateDir = filepath.Join(dir, cfg.Name)
		cfg.DNS.Listen = config.DNSOff // tests that want DNS turn it on with their own upstream
		if i > 0 {
			cfg.Gossip.Join = []string{nodetest.Gossip(c.Nodes[0]).Addr()}
		}
		if opts.Edit != nil {
			opts.Edit(i, &cfg)
		}
		c.cfgs[i] = cfg
		c.start(i)
	}
	return c
}

func (c *GossipCluster) start(i int) {
	c.t.Helper()
	c.mu.Lock()
	cfg := c.cfgs[i]
	c.mu.Unlock()
	var nopts []node.Option
	if c.opts.Log != nil {
		nopts = append(nopts, node.WithLogger(zaptest.NewLogger(c.t, zaptest.Level(c.opts.Log)).Named(cfg.Name)))
	}
	if c.mem != nil {
		nopts = append(nopts, c.mem.Attach(&cfg)...)
	}
	nd, err := node.New(cfg, nopts...)
	if err != nil {
		c.t.Fatalf("node %d: %v", i, err)
	}
	if err := nd.Start(context.Background()); err != nil {
		nd.Close()
		c.t.Fatalf("node %d start: %v", i, err)
	}
	c.mu.Lock()
	c.Nodes[i] = nd
	c.mu.Unlock()
}

// Node returns node i, nil while it is down.
func (c *GossipCluster) Node(i int) *node.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Nodes[i]
}

// Live returns the indexes of the nodes that are up.
func (c *GossipCluster) Live() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int
	for i, nd := range c.Nodes {
		if nd != nil {
			out = append(out, i)
		}
	}
	return out
}

// Crash stops node i without telling the cluster (like kill -9).
func (c *GossipCluster) Crash(i int) {
	c.t.Helper()
	c.mu.Lock()
	nd := c.Nodes[i]
	c.Nodes[i] = nil
	c.mu.Unlock()
	if err := nodetest.Crash(nd); err != nil {
		c.t.Errorf("crash node %d: %v", i, err)
	}
}

// Restart starts node i again with the same name and state directory,
// joining through another live node.
func (c *GossipCluster) Restart(i int) {
	c.t.Helper()
	c.mu.Lock()
	var seeds []string
	for j, nd := range c.Nodes {
		if j != i && nd != nil {
			seeds = append(seeds, nodetest.Gossip(nd).Addr())
			break
		}
	}
	c.cfgs[i].Gossip.Join = seeds
	c.mu.Unlock()
	c.start(i)
}

// Name is node i's name.
func (c *GossipCluster) Name(i int) string { return fmt.Sprintf("gnode%d", i) }

// Join has node i join network, retrying while the network is not yet
// known there, and returns its address on it.
func (c *GossipCluster) Join(i int, network string) netip.Prefix {
	c.t.Helper()
	var ni api.NetworkInfo
	testutil.Eventually(c.t, 20*time.Second, fmt.Sprintf("node %d: join %q", i, network), func() (err error) {
		ni, err = c.Node(i).JoinNetwork(context.Background(), network)
		return err
	})
	p, err := netip.ParsePrefix(ni.Addr)
	if err != nil {
		c.t.Fatalf("node %d joined %q with address %q", i, network, ni.Addr)
	}
	return p
}

// RoutesOf returns node i's routes owned by other nodes, by owner.
func (c *GossipCluster) RoutesOf(i int) map[string]api.Route {
	c.t.Helper()
	rs, err := c.Node(i).Routes(context.Background())
	if err != nil {
		c.t.Fatal(err)
	}
	out := map[string]api.Route{}
	for _, r := range rs.Routes {
		out[r.Owner] = r
	}
	return out
}

// Converged reports whether every live node has the same digest for
// network.
func (c *GossipCluster) Converged(network string) bool {
	var first string
	for k, i := range c.Live() {
		d := c.Node(i).Digest(network)
		if k == 0 {
			first = d
		} else if d != first {
			return false
		}
	}
	return true
}

// newNodeErr builds (and closes) a node from cfg, for tests of start-up errors.
func newNodeErr(cfg config.Config) (*node.Node, error) {
	nd, err := node.New(cfg)
	if err == nil {
		nodetest.Crash(nd)
	}
	return nd, err
}
