package bench_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/overlayd/overlayd/gossip"
	"github.com/overlayd/overlayd/gossip/gossiptest"
)

// BenchmarkGossipConvergence measures, on the in-memory transport, how
// long each change takes to be visible on every live participant: the
// time from the write to the moment the last node sees it. N nodes join
// one by one (one seed, as `overlayd run --join` does) and, at once, the
// network, writing their route, as `overlayd network join` does; the last
// 20 joins are the trials: in each, the newcomer's participation (a
// cluster-wide entry) and route, then a service written by a random older
// node and a backend by another, all within the first second after the
// join. No wait lets push/pull (30 s at the default profile) repair a
// miss: a change not everywhere within 10 s fails the benchmark. It
// prints p50/p99/worst per kind and over all changes, and the gossip
// traffic per node per second. -short leaves out N=50 at the test profile.
//
//	go test -run '^$' -bench GossipConvergence -benchtime 1x ./bench/
func BenchmarkGossipConvergence(b *testing.B) {
	for _, profile := range []string{gossip.ProfileDefault, gossip.ProfileTest} {
		for _, n := range []int{5, 20, 50} {
			if testing.Short() && profile == gossip.ProfileTest && n == 50 {
				continue
			}
			b.Run(fmt.Sprintf("profile=%s/N=%d", profile, n), func(b *testing.B) { benchConverge(b, n, profile) })
		}
	}
}

const (
	benchTrials = 20
	benchMiss   = 10 * time.Second // well under push/pull at the default profile
)

// seen records when each node first saw each change visible.
type seen struct {
	mu    sync.Mutex
	times map[string]map[string]time.Time // change key → node → first visible
	kick  chan struct{}
}

func (s *seen) put(key, node string, t time.Time) {
	s.mu.Lock()
	m := s.times[key]
	if m == nil {
		m = map[string]time.Time{}
		s.times[key] = m
	}
	if _, ok := m[node]; !ok {
		m[node] = t
	}
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// wait returns when every node of on has seen key, and how long after t0
// the last one did; ok is false after benchMiss.
func (s *seen) wait(key string, on []string, t0 time.Time) (time.Duration, []string) {
	deadline := time.After(benchMiss)
	for {
		s.mu.Lock()
		var last time.Time
		var missing []string
		for _, n := range on {
			t, ok := s.times[key][n]
			if !ok {
				missing = append(missing, n)
			} else if t.After(last) {
				last = t
			}
		}
		s.mu.Unlock()
		if len(missing) == 0 {
			return max(last.Sub(t0), 0), nil
		}
		select {
		case <-s.kick:
		case <-time.After(5 * time.Millisecond):
		case <-deadline:
			return 0, missing
		}
	}
}

func benchConverge(b *testing.B, n int, profile string) {
	const network = "blue"
	trials := min(benchTrials, n-1)
	net := gossiptest.NewNetwork()
	s := &seen{times: map[string]map[string]time.Time{}, kick: make(chan struct{}, 1)}
	var nodes []*gossip.Gossip
	var names []string
	defer func() {
		for _, g := range nodes {
			g.Close()
		}
	}()
	samples := map[string][]time.Duration{}
	kinds := []string{"participant", "route", "service", "backend"}
	measure := func(kind, key string, t0 time.Time, on []string) {
		d, missing := s.wait(key, on, t0)
		if missing != nil {
			b.Errorf("%s %s: not visible on %v within %v", kind, key, missing, benchMiss)
			d = benchMiss
		}
		samples[kind] = append(samples[kind], d)
	}
	rng := rand.New(rand.NewPCG(uint64(n), 1))
	_, bytes0 := net.Traffic()
	start := time.Now()
	for i := range n {
		name := fmt.Sprintf("n%03d", i)
		g, err := gossip.New(gossip.Options{Name: name, Profile: profile, Transport: net.NewTransport(name)})
		if err != nil {
			b.Fatal(err)
		}
		nodes = append(nodes, g)
		watch := func(table, nw string, key func(gossip.Entry) string) {
			ch, cancel := g.Watch(table, nw)
			b.Cleanup(cancel)
			go func() {
				for ev := range ch {
					if ev.Type == gossip.EventPut {
						s.put(key(ev.Entry), name, time.Now())
					}
				}
			}()
		}
		watch("gossip.net", "", func(e gossip.Entry) string { return "participant/" + e.Owner })
		for _, t := range []string{"route", "service", "backend"} {
			watch(t, network, func(e gossip.Entry) string { return t + "/" + e.Key })
		}
		if i > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			err := g.Join(ctx, []string{nodes[0].Addr()})
			cancel()
			if err != nil {
				b.Fatal(err)
			}
		}
		names = append(names, name)
		t0 := time.Now()
		if err := g.JoinNetwork(network); err != nil {
			b.Fatal(err)
		}
		if err := g.Put("route", network, name, []byte("10.1.0.2")); err != nil {
			b.Fatal(err)
		}
		if i < n-trials {
			continue
		}
		// A trial: every live participant must see the newcomer, its
		// route, and two changes written right after the join.
		measure("participant", "participant/"+name, t0, names)
		measure("route", "route/"+name, t0, names)
		older := names[:len(names)-1]
		for _, kind := range []string{"service", "backend"} {
			w := nodes[slices.Index(names, older[rng.IntN(len(older))])]
			key := fmt.Sprintf("%s-%d", kind, i)
			t0 := time.Now()
			if err := w.Put(kind, network, key, []byte("x")); err != nil {
				b.Fatal(err)
			}
			measure(kind, kind+"/"+key, t0, names)
		}
	}
	elapsed := time.Since(start)
	_, bytes1 := net.Traffic()
	var all []time.Duration
	for _, k := range kinds {
		p50, p99, worst := percentiles(samples[k])
		b.Logf("%-11s p50 %6.1f ms  p99 %6.1f ms  worst %6.1f ms  (%d trials)", k, ms(p50), ms(p99), ms(worst), len(samples[k]))
		all = append(all, samples[k]...)
	}
	p50, p99, worst := percentiles(all)
	b.Logf("%-11s p50 %6.1f ms  p99 %6.1f ms  worst %6.1f ms  (%d changes)", "all", ms(p50), ms(p99), ms(worst), len(all))
	b.ReportMetric(ms(p50), "p50-ms")
	b.ReportMetric(ms(p99), "p99-ms")
	b.ReportMetric(ms(worst), "worst-ms")
	b.ReportMetric(float64(bytes1-bytes0)/float64(n)/elapsed.Seconds(), "bytes/node/s")
	b.ReportMetric(0, "ns/op")
}

// percentiles returns the 50th and 99th percentiles (nearest rank) and the
// maximum.
func percentiles(ds []time.Duration) (p50, p99, worst time.Duration) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	ds = slices.Clone(ds)
	slices.Sort(ds)
	rank := func(p float64) time.Duration {
		i := int(p*float64(len(ds))+0.999999) - 1
		return ds[max(0, min(i, len(ds)-1))]
	}
	return rank(0.50), rank(0.99), ds[len(ds)-1]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
