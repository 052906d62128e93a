package nodetest_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/gossip"
	"github.com/overlayd/overlayd/internal/testutil"
	"github.com/overlayd/overlayd/node"
	"github.com/overlayd/overlayd/node/nodetest"
	"github.com/overlayd/overlayd/stack"
	"github.com/overlayd/overlayd/stack/stacktest"
	"github.com/overlayd/overlayd/udp/udptest"
)

var (
	_ nodetest.Underlay = (*udptest.Conn)(nil)
	_ stack.Device      = (*stacktest.Fake)(nil)
)

// Two gossip nodes on a Memory find each other, agree on a network and
// carry TCP between their netstacks, and open no socket doing so: the
// underlay and gossip are the in-memory fakes.
func TestMemory(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	before, _ := testutil.Sockets()
	mem := nodetest.NewMemory()
	ctx := context.Background()
	var nodes []*node.Node
	defer func() {
		for _, n := range nodes {
			nodetest.Crash(n)
		}
	}()
	for i := range 2 {
		cfg := config.Default()
		cfg.Name = fmt.Sprintf("mem%d", i)
		cfg.Mode = config.ModeNetstack
		cfg.Control = ""
		cfg.DNS.Listen = config.DNSOff
		cfg.Gossip.Listen = netip.MustParseAddrPort("127.0.0.1:0") // turns gossip on; Attach replaces it
		cfg.Gossip.Profile = gossip.ProfileTest
		cfg.StateDir = t.TempDir()
		if i > 0 {
			cfg.Gossip.Join = []string{nodetest.Gossip(nodes[0]).Addr()}
		}
		opts := mem.Attach(&cfg)
		n, err := node.New(cfg, opts...)
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
		if err := n.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if got := n.VTEP(); got != cfg.Listen || !netip.MustParsePrefix("198.19.0.0/16").Contains(got.Addr()) {
			t.Fatalf("node %d: VTEP %v, want the Memory's %v", i, got, cfg.Listen)
		}
		if got := nodetest.Gossip(n).Addr(); got != cfg.Gossip.Listen.String() {
			t.Fatalf("node %d: gossip at %s, want the Memory's %v", i, got, cfg.Gossip.Listen)
		}
	}
	if _, err := nodes[0].CreateNetwork(ctx, api.CreateNetwork{Name: "mem", CIDR: "10.77.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	addrs := make([]netip.Addr, 2)
	for i, n := range nodes {
		testutil.Eventually(t, 20*time.Second, fmt.Sprintf("node %d joins", i), func() error {
			ni, err := n.JoinNetwork(ctx, "mem")
			if err == nil {
				addrs[i] = netip.MustParsePrefix(ni.Addr).Addr()
			}
			return err
		})
	}
	testutil.Eventually(t, 20*time.Second, "each node routes the other", func() error {
		for i, n := range nodes {
			rs, err := n.Routes(ctx)
			if err != nil {
				return err
			}
			if len(rs.Routes) != 1 {
				return fmt.Errorf("node %d routes %+v, want the other's", i, rs.Routes)
			}
		}
		return nil
	})

	ln, err := nodes[1].Listen("tcp", netip.AddrPortFrom(addrs[1], 7000).String())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := nodes[0].Dial(dctx, "tcp", netip.AddrPortFrom(addrs[1], 7000).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	msg := "over memory"
	io.WriteString(c, msg)
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
		t.Fatalf("echo = %q, %v; want %q", got, err, msg)
	}
	if pk, _ := mem.Gossip.Traffic(); pk == 0 {
		t.Error("gossip went past the Memory's network: it carried no packet")
	}
	if s := testutil.NewSockets(before); len(s) > 0 {
		t.Errorf("an in-memory cluster opened sockets: %s", strings.Join(s, " "))
	}
}

// WithDevice and WithUnderlay replace the node's attachment and socket;
// the node closes both.
func TestWithDeviceUnderlay(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	un := udptest.NewNetwork()
	ul := un.Conn(netip.MustParseAddrPort("198.19.9.9:4789"))
	dev := stacktest.New(stacktest.Options{Name: "given"})
	cfg := config.Default()
	cfg.Name = "given"
	cfg.Mode = config.ModeNetstack
	cfg.Addr = netip.MustParsePrefix("10.78.0.1/24")
	cfg.Control = ""
	cfg.DNS.Listen = config.DNSOff
	cfg.Underlay.MTU = 1500
	n, err := node.New(cfg, nodetest.WithDevice(dev), nodetest.WithUnderlay(ul))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		n.Close()
		t.Fatal(err)
	}
	st, err := n.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Device != "given" || st.VTEP != "198.19.9.9:4789" {
		t.Errorf("Status: device %q, VTEP %s; want the given ones", st.Device, st.VTEP)
	}
	if _, err := n.Dial(context.Background(), "tcp", "10.78.0.2:80"); !errors.Is(err, node.ErrNoNetstack) {
		t.Errorf("Dial on a node with a fake device = %v, want ErrNoNetstack", err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	bufs, sizes := [][]byte{make([]byte, 256)}, []int{0}
	if _, err := dev.Read(bufs, sizes, stack.Headroom); err == nil {
		t.Error("the given device is open after Close")
	}
	if _, err := ul.ReadBatch(bufs, sizes, make([]netip.AddrPort, 1)); err == nil {
		t.Error("the given underlay is open after Close")
	}
}
