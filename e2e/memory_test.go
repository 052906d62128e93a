package e2e

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/internal/testutil"
	"github.com/overlayd/overlayd/node"
)

// TestMemoryOpensNoSockets: clusters on the in-memory fakes, a static one
// and a gossip one that creates and joins a network, carry TCP and
// withdraw a crashed node's route without opening a single socket (where
// /proc/self/fd can tell); their VTEPs are the fake underlay's.
func TestMemoryOpensNoSockets(t *testing.T) {
	before, ok := testutil.Sockets()
	if !ok {
		t.Skip("no /proc/self/fd: cannot count this process's sockets")
	}
	s := NewCluster(t, 2, ClusterOptions{Net: Memory})
	if err := echoBetween(s.Nodes[0], s.Nodes[1], netip.AddrPortFrom(s.Nodes[1].Addr().Addr(), 7000)); err != nil {
		t.Fatalf("static cluster: node 0 → node 1: %v", err)
	}

	g := NewGossipCluster(t, 3, GossipOptions{Net: Memory})
	if _, err := g.Node(0).CreateNetwork(context.Background(), api.CreateNetwork{Name: "mem", CIDR: "10.51.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	addrs := make([]netip.Addr, 3)
	for i := range 3 {
		addrs[i] = g.Join(i, "mem").Addr()
	}
	testutil.Eventually(t, 20*time.Second, "3 nodes learn 2 routes each", func() error {
		for i := range 3 {
			if rs := g.RoutesOf(i); len(rs) != 2 {
				return fmt.Errorf("node %d has %d routes: %v", i, len(rs), slices.Sorted(maps.Keys(rs)))
			}
		}
		return nil
	})
	if err := echoBetween(g.Node(0), g.Node(1), netip.AddrPortFrom(addrs[1], 7000)); err != nil {
		t.Fatalf("gossip cluster: node 0 → node 1: %v", err)
	}
	g.Crash(2)
	testutil.Eventually(t, 15*time.Second, "the crashed node's route is withdrawn", func() error {
		for _, i := range g.Live() {
			if r, ok := g.RoutesOf(i)[g.Name(2)]; ok {
				return fmt.Errorf("node %d still routes %+v", i, r)
			}
		}
		return nil
	})

	for _, nd := range append(slices.Clone(s.Nodes), g.Node(0), g.Node(1)) {
		if v := nd.VTEP(); !netip.MustParsePrefix("198.19.0.0/16").Contains(v.Addr()) {
			t.Errorf("VTEP %v, want the in-memory underlay's (198.19.0.0/16)", v)
		}
	}
	if opened := testutil.NewSockets(before); len(opened) > 0 {
		t.Errorf("in-memory clusters opened %d sockets: %s", len(opened), strings.Join(opened, " "))
	}
}

// echoBetween serves one echo connection on dst at addr and checks that
// src reaches it over the overlay.
func echoBetween(src, dst *node.Node, addr netip.AddrPort) error {
	ln, err := dst.Listen("tcp", addr.String())
	if err != nil {
		return err
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		io.Copy(conn, conn)
		conn.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := src.Dial(ctx, "tcp", addr.String())
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	msg := "over the in-memory fakes"
	if _, err := io.WriteString(conn, msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, got); err != nil || string(got) != msg {
		return fmt.Errorf("echo %q (%v), want %q", got, err, msg)
	}
	return nil
}
