package bench_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/overlayd/overlayd/gossip"
	"github.com/overlayd/overlayd/gossip/gossiptest"
)

// BenchmarkGossipConvergence measures how long one Put takes to reach all
// N nodes (ms-to-converge, mean over b.N puts from rotating writers) and the
// gossip traffic per node per second over the run (bytes/node/s), on the
// in-memory transport at the test profile, for a cluster-wide table (rides
// memberlist broadcasts) and a network table (all N nodes in the network).
func BenchmarkGossipConvergence(b *testing.B) {
	sizes := []int{10, 50, 100}
	if testing.Short() {
		sizes = sizes[:2]
	}
	for _, n := range sizes {
		for _, network := range []string{"", "blue"} {
			name := fmt.Sprintf("N=%d/table=global", n)
			if network != "" {
				name = fmt.Sprintf("N=%d/table=network", n)
			}
			b.Run(name, func(b *testing.B) { benchConverge(b, n, network) })
		}
	}
}

func benchConverge(b *testing.B, n int, network string) {
	net := gossiptest.NewNetwork()
	nodes := make([]*gossip.Gossip, n)
	defer func() {
		for _, g := range nodes {
			if g != nil {
				g.Close()
			}
		}
	}()
	arrived := make(chan string, 4096)
	for i := range nodes {
		name := fmt.Sprintf("n%03d", i)
		g, err := gossip.New(gossip.Options{Name: name, Profile: gossip.ProfileTest, Transport: net.NewTransport(name)})
		if err != nil {
			b.Fatal(err)
		}
		nodes[i] = g
		if network != "" {
			if err := g.JoinNetwork(network); err != nil {
				b.Fatal(err)
			}
		}
		ch, cancel := g.Watch("bench", network)
		defer cancel()
		go func() {
			for ev := range ch {
				if ev.Type == gossip.EventPut {
					arrived <- ev.Entry.Key
				}
			}
		}()
		if i > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			err := g.Join(ctx, []string{nodes[0].Addr()})
			cancel()
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok := true
		for _, g := range nodes {
			if len(g.Members()) != n || network != "" && len(g.Participants(network)) != n {
				ok = false
			}
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("cluster of %d did not form", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, bytes0 := net.Traffic()
	start := time.Now()
	var total time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		key := fmt.Sprintf("k%d", i)
		t0 := time.Now()
		if err := nodes[i%n].Put("bench", network, key, []byte("10.1.0.2")); err != nil {
			b.Fatal(err)
		}
		for got := 0; got < n; {
			select {
			case k := <-arrived:
				if k == key {
					got++
				}
			case <-time.After(20 * time.Second):
				b.Fatalf("put %d reached %d of %d nodes", i, got, n)
			}
		}
		total += time.Since(t0)
	}
	b.StopTimer()
	elapsed := time.Since(start)
	_, bytes1 := net.Traffic()
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms-to-converge")
	b.ReportMetric(float64(bytes1-bytes0)/float64(n)/elapsed.Seconds(), "bytes/node/s")
	b.ReportMetric(0, "ns/op")
}
