package node

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"go.uber.org/goleak"

	"github.com/overlayd/overlayd/config"
)

// lifecycleConfig is a gossip node on a static network (addr) with every
// part Start starts: router, balancer, control plane, DNS on a host
// address and, with door, a TCP forward to target.
func lifecycleConfig(t *testing.T, name, addr, target string, door bool, seeds ...string) config.Config {
	cfg := clusterConfig(t, name, seeds...)
	cfg.Addr = netip.MustParsePrefix(addr)
	cfg.DNS.Listen = "127.0.0.1:0"
	cfg.DNS.Upstreams = []string{"127.0.0.1:9"} // never asked: the queries are for the overlay zone
	if door {
		cfg.Doors.Forwards = []config.Forward{{Listen: "127.0.0.1:0", Target: target}}
	}
	return cfg
}

// Start's ctx bounds the start only: cancelled once Start has returned,
// it stops nothing. The host DNS listener answers, the forward door
// accepts, the routers forward and gossip runs, over a window that spans
// a tick of every once-a-second loop; Close then leaves no goroutine.
func TestStartContextBoundsOnlyStart(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	a, err := New(lifecycleConfig(t, "a", "10.77.0.1/24", "10.77.0.2:7", true))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	actx, acancel := context.WithCancel(context.Background())
	if err := a.Start(actx); err != nil {
		t.Fatal(err)
	}
	b, err := New(lifecycleConfig(t, "b", "10.77.0.2/24", "", false, a.ctl.g.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	bctx, bcancel := context.WithCancel(context.Background())
	if err := b.Start(bctx); err != nil {
		t.Fatal(err)
	}
	if err := a.SetStaticRoutes([]config.Peer{{Prefix: netip.MustParsePrefix("10.77.0.2/32"), VTEP: b.VTEP()}}); err != nil {
		t.Fatal(err)
	}
	if err := b.SetStaticRoutes([]config.Peer{{Prefix: netip.MustParsePrefix("10.77.0.1/32"), VTEP: a.VTEP()}}); err != nil {
		t.Fatal(err)
	}

	ln, err := b.Listen("tcp", ":7")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer ln.Close()
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { defer c.Close(); io.Copy(c, c) })
		}
	})

	st, err := a.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.DNS == nil || st.DNS.Listen == "" || len(st.Doors) != 1 || st.Doors[0].Addr == "" {
		t.Fatalf("status: dns %+v, doors %+v; want a host DNS listener and one forward", st.DNS, st.Doors)
	}
	dnsAddr, doorAddr := st.DNS.Listen, st.Doors[0].Addr
	waitMembers(t, a, b)

	// Every part works before the cancel...
	check := func(when string) {
		t.Helper()
		m := new(mdns.Msg)
		m.SetQuestion("a.static.overlay.", mdns.TypeA)
		cl := &mdns.Client{Timeout: 5 * time.Second}
		r, _, err := cl.Exchange(m, dnsAddr)
		if err != nil {
			t.Fatalf("%s: the host DNS listener does not answer: %v", when, err)
		}
		if len(r.Answer) != 1 || r.Answer[0].(*mdns.A).A.String() != "10.77.0.1" {
			t.Fatalf("%s: a.static.overlay. = %v, want 10.77.0.1", when, r.Answer)
		}
		c, err := net.DialTimeout("tcp", doorAddr, 5*time.Second)
		if err != nil {
			t.Fatalf("%s: the forward door does not accept: %v", when, err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatalf("%s: write through the door: %v", when, err)
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("%s: echo through the door and the overlay = %q, %v; want ping", when, buf, err)
		}
		for _, n := range []*Node{a, b} {
			alive := 0
			for _, p := range n.ctl.peerList() {
				if p.State == "alive" {
					alive++
				}
			}
			if alive != 2 {
				t.Fatalf("%s: %s sees %d members alive, want 2", when, n.cfg.Name, alive)
			}
		}
	}
	check("before the cancel")
	acancel()
	bcancel()
	// ...and after it, over more than a second: every loop that could
	// stop on the cancel (the router's, the balancer's sweep, the control
	// and DNS loops, the listeners) has had its turn.
	start := time.Now()
	for i := 0; time.Since(start) < 1500*time.Millisecond; i++ {
		check("after the cancel")
		time.Sleep(100 * time.Millisecond) // spacing of the checks, not ordering
	}
	if got := a.rt.Stats().Inbound.Packets; got == 0 {
		t.Fatal("router a forwarded nothing inbound")
	}
}

// countdownCtx is cancelled at the (k+1)th call of its Err: a ctx that
// expires at a chosen point of Start.
type countdownCtx struct {
	context.Context
	cancel context.CancelFunc
	left   atomic.Int64
}

func newCountdownCtx(k int) *countdownCtx {
	ctx, cancel := context.WithCancel(context.Background())
	c := &countdownCtx{Context: ctx, cancel: cancel}
	c.left.Store(int64(k))
	return c
}

func (c *countdownCtx) Err() error {
	if c.left.Add(-1) < 0 {
		c.cancel()
	}
	return c.Context.Err()
}

// A ctx that is done before Start completes makes Start return its error
// at once, whichever step it expires at; Close then leaves nothing
// running.
func TestStartInterrupted(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	run := func(t *testing.T, cfg config.Config, ctx context.Context) error {
		t.Helper()
		n, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		begin := time.Now()
		err = n.Start(ctx)
		if d := time.Since(begin); d > 10*time.Second {
			t.Errorf("Start took %v", d)
		}
		if err := n.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		goleak.VerifyNone(t, goleak.IgnoreCurrent())
		return err
	}

	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := run(t, lifecycleConfig(t, "a", "10.77.0.1/24", "", false), ctx)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Start with a cancelled ctx = %v, want context.Canceled", err)
		}
	})
	t.Run("expired", func(t *testing.T) {
		ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
		defer cancel()
		err := run(t, lifecycleConfig(t, "a", "10.77.0.1/24", "", false), ctx)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Start with an expired ctx = %v, want context.DeadlineExceeded", err)
		}
	})
	t.Run("at every step", func(t *testing.T) {
		interrupted := 0
		for k := 0; ; k++ {
			if k > 100 {
				t.Fatal("Start never completed")
			}
			ctx := newCountdownCtx(k)
			err := run(t, lifecycleConfig(t, "a", "10.77.0.1/24", "10.77.0.2:7", true), ctx)
			ctx.cancel()
			if err == nil {
				break
			}
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Start with ctx cancelled at its check %d = %v, want context.Canceled", k, err)
			}
			interrupted++
		}
		if interrupted < 3 {
			t.Fatalf("Start checked its ctx only %d times; want one check between each part", interrupted)
		}
	})
}
