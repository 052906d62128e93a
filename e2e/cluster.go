package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/node"
	"github.com/overlayd/overlayd/node/nodetest"
)

// Cluster is a set of rootless nodes in this process: netstack
// attachments, VXLAN over UDP on 127.0.0.1 or ::1 (or over the in-memory
// underlay: ClusterOptions.Net), a full mesh of static routes.
type Cluster struct {
	Nodes []*node.Node
}

// ClusterOptions tune NewCluster.
type ClusterOptions struct {
	// Edit, when not nil, changes node i's configuration before it starts.
	Edit func(i int, c *config.Config)
	// Log gives nodes a test logger at this level; nil means no logs.
	Log *zap.AtomicLevel
	// Net is what the nodes talk over; default Loopback.
	Net Net
	// IPv6 gives the nodes IPv6 overlay addresses (NodeAddr6) instead of
	// IPv4 ones.
	IPv6 bool
}

// NodeAddr is node i's overlay address: 10.99.(i+1).1/16.
func NodeAddr(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 99, byte(i + 1), 1}), 16)
}

// NodeAddr6 is node i's IPv6 overlay address: fd00:99::(i+1)/64.
func NodeAddr6(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 0, 0, 0x99, 15: byte(i + 1)}), 64)
}

// NewCluster starts n nodes and stops them when the test ends.
func NewCluster(t testing.TB, n int, opts ClusterOptions) *Cluster {
	t.Helper()
	c := &Cluster{}
	var mem *nodetest.Memory
	if opts.Net == Memory {
		mem = nodetest.NewMemory()
	}
	t.Cleanup(func() {
		for _, nd := range c.Nodes {
			if err := nd.Close(); err != nil {
				t.Errorf("close node: %v", err)
			}
		}
	})
	for i := range n {
		cfg := config.Default()
		cfg.Name = fmt.Sprintf("node%d", i)
		cfg.Mode = config.ModeNetstack
		cfg.Listen = opts.Net.any()
		cfg.Addr = NodeAddr(i)
		if opts.IPv6 {
			cfg.Addr = NodeAddr6(i)
		}
		cfg.Control = ""
		cfg.DNS.Listen = config.DNSOff // tests that want DNS turn it on with their own upstream
		if opts.Edit != nil {
			opts.Edit(i, &cfg)
		}
		var nopts []node.Option
		if opts.Log != nil {
			nopts = append(nopts, node.WithLogger(zaptest.NewLogger(t, zaptest.Level(opts.Log)).Named(cfg.Name)))
		}
		if mem != nil {
			nopts = append(nopts, mem.Attach(&cfg)...)
		}
		nd, err := node.New(cfg, nopts...)
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		c.Nodes = append(c.Nodes, nd)
	}
	for i, nd := range c.Nodes {
		var peers []config.Peer
		for j, other := range c.Nodes {
			if i != j {
				a := other.Addr().Addr()
				peers = append(peers, config.Peer{Prefix: netip.PrefixFrom(a, a.BitLen()), VTEP: other.VTEP()})
			}
		}
		if err := nd.SetStaticRoutes(peers); err != nil {
			t.Fatalf("node %d routes: %v", i, err)
		}
		if err := nd.Start(context.Background()); err != nil {
			t.Fatalf("node %d start: %v", i, err)
		}
	}
	return c
}

// Status returns node i's status.
func (c *Cluster) Status(t testing.TB, i int) api.Status {
	t.Helper()
	st, err := c.Nodes[i].Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}
