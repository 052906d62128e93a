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
// in-memory transport, at the test and the default memberlist profiles,
// for a cluster-wide table (rides memberlist broadcasts) and a network
// table (all N nodes in the network). -short leaves out N=100 and the
// default profile.
func BenchmarkGossipConvergence(b *testing.B) {
	sizes := []int{10, 50, 100}
	profiles := []string{gossip.ProfileTest, gossip.ProfileDefault}
	if testing.Short() {
		sizes, profiles = sizes[:2], profiles[:1]
	}
	for _, profile := range profiles {
		for _, n := range sizes {
			for _, network := range []string{"", "blue"} {
				table := "global"
				if network != "" {
					table = "network"
				}
				name := fmt.Sprintf("profile=%s/N=%d/table=%s", profile, n, table)
				b.Run(name, func(b *testing.B) { benchConverge(b, n, network, profile) })
			}
		}
	}
}

func benchConverge(b *testing.B, n int, network, profile string) {
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
		g, err := gossip.New(gossip.Options{Name: name, Profile: profile, Transport: net.NewTransport(name)})
		if err != nil {
			b.Fatal(err)
		}
		nodes[i] = g
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
	// Nodes join the network once in the cluster, as `overlayd network
	// join` does.
	if network != "" {
		for _, g := range nodes {
			if err := g.JoinNetwork(network); err != nil {
				b.Fatal(err)
			}
		}
	}
	// Forming takes longer at the default profile: what broadcasts miss is
	// repaired by push/pull, every 30 s there.
	form := 30 * time.Second
	if profile == gossip.ProfileDefault {
		form = 90 * time.Second
	}
	deadline := time.Now().Add(form)
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
			var members, parts []int
			for _, g := range nodes {
				members = append(members, len(g.Members()))
				if network != "" {
					parts = append(parts, len(g.Participants(network)))
				}
			}
			b.Fatalf("cluster of %d did not form in %v: members seen %v, participants seen %v", n, form, members, parts)
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
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms-to-converge")
	b.ReportMetric(float64(bytes1-bytes0)/float64(n)/elapsed.Seconds(), "bytes/node/s")
	b.ReportMetric(0, "ns/op")
}
