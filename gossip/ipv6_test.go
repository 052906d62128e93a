package gossip

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/overlayd/overlayd/internal/testutil"
)

// TestIPv6Sockets: three nodes on [::1], without a key and with one,
// join (by a seed in netip's form and by one written otherwise), see
// each other alive at IPv6 addresses with IPv6 VTEPs, and converge on a
// network's entries; a node with another key is refused with the
// sentence that says so.
func TestIPv6Sockets(t *testing.T) {
	key := make([]byte, 32)
	key[3] = 9
	other := make([]byte, 32)
	other[3] = 10
	for _, keys := range [][][]byte{nil, {key}} {
		t.Run(fmt.Sprintf("keys=%d", len(keys)), func(t *testing.T) {
			var gs []*Gossip
			for i := range 3 {
				g, err := New(Options{
					Name: fmt.Sprintf("n%d", i), BindAddr: "[::1]:0", Profile: ProfileTest, Keys: keys, Logger: testLogger(),
					Meta: Meta{VTEP: netip.AddrPortFrom(netip.IPv6Loopback(), uint16(4789+i)), Version: "test"},
				})
				if err != nil {
					if strings.Contains(err.Error(), "cannot assign requested address") {
						t.Skipf("no IPv6 loopback: %v", err)
					}
					t.Fatal(err)
				}
				t.Cleanup(func() { g.Close() })
				gs = append(gs, g)
				if !strings.HasPrefix(g.Addr(), "[::1]:") {
					t.Fatalf("Addr() = %q, want [::1]:PORT", g.Addr())
				}
				if i == 0 {
					continue
				}
				seed := gs[0].Addr()
				if i == 2 {
					seed = strings.Replace(seed, "[::1]", "[0:0::1]", 1) // not netip's form
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				err = g.Join(ctx, []string{seed})
				cancel()
				if err != nil {
					t.Fatalf("Join(%s): %v", seed, err)
				}
				g.mu.Lock()
				seeds := slices.Clone(g.seeds)
				g.mu.Unlock()
				if !slices.Equal(seeds, []string{gs[0].Addr()}) {
					t.Errorf("seeds kept = %q, want %q (canonical, as members' addresses are)", seeds, gs[0].Addr())
				}
			}
			for _, g := range gs {
				if err := g.JoinNetwork("blue"); err != nil {
					t.Fatal(err)
				}
				if err := g.Put("routes", "blue", g.Name(), []byte(g.Addr())); err != nil {
					t.Fatal(err)
				}
			}
			testutil.Eventually(t, 10*time.Second, "convergence over IPv6 sockets", func() error {
				for _, g := range gs {
					if n := len(g.List("routes", "blue")); n != 3 {
						return fmt.Errorf("%s lists %d routes, want 3", g.Name(), n)
					}
					for _, m := range g.Members() {
						if m.State != StateAlive || m.Addr.Addr() != netip.IPv6Loopback() || !m.Meta.VTEP.Addr().Is6() {
							return fmt.Errorf("%s sees %s %v at %v, VTEP %v; want alive on ::1 with an IPv6 VTEP", g.Name(), m.Name, m.State, m.Addr, m.Meta.VTEP)
						}
					}
					if n := aliveCount(g); n != 3 {
						return fmt.Errorf("%s sees %d alive, want 3", g.Name(), n)
					}
				}
				if gs[0].Digest("blue") != gs[1].Digest("blue") || gs[1].Digest("blue") != gs[2].Digest("blue") {
					return errors.New("digests differ")
				}
				return nil
			})
			if keys == nil {
				return
			}
			stranger, err := New(Options{Name: "stranger", BindAddr: "[::1]:0", Profile: ProfileTest, Keys: [][]byte{other}, Logger: testLogger()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { stranger.Close() })
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			err = stranger.Join(ctx, []string{gs[0].Addr()})
			if err == nil || !strings.Contains(err.Error(), "join "+gs[0].Addr()+": refused: the seed encrypts gossip with another key") {
				t.Errorf("Join with another key over IPv6 = %v, want refused for the key", err)
			}
		})
	}
}

// TestPickIPv6: a node bound to [::] tells its peers a unique local
// address first, else a global one; never a link-local, loopback,
// v4-mapped or IPv4 one.
func TestPickIPv6(t *testing.T) {
	addrs := func(ss ...string) []netip.Addr {
		var out []netip.Addr
		for _, s := range ss {
			out = append(out, netip.MustParseAddr(s))
		}
		return out
	}
	for _, tc := range []struct {
		in   []netip.Addr
		want string
	}{
		{addrs("192.0.2.1", "fe80::1", "2001:db8::5", "fd99::1"), "fd99::1"},
		{addrs("2001:db8::5", "2001:db8::6"), "2001:db8::5"},
		{addrs("fe80::1%2", "::1", "::ffff:192.0.2.1", "ff02::1", "10.0.0.1"), ""},
		{nil, ""},
	} {
		got, err := pickIPv6(tc.in)
		if tc.want == "" {
			if !errors.Is(err, errNoIPv6) {
				t.Errorf("pickIPv6(%v) = %v, %v, want errNoIPv6", tc.in, got, err)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("pickIPv6(%v) = %v, %v, want %s", tc.in, got, err, tc.want)
		}
	}
	if !strings.Contains(errNoIPv6.Error(), "give --gossip one of its IPv6 addresses") {
		t.Errorf("errNoIPv6 = %q says nothing to do", errNoIPv6)
	}
}

// TestBindUnspecified6: in a namespace whose one link has a global
// and a unique local address, a node bound to [::] listens there and
// tells peers the unique local one; in one with no IPv6 address New
// says what to give instead.
func TestBindUnspecified6(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("not root under CI=true (CI runs as root)")
		}
		t.Skip("needs root (to create a network namespace); skipped")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("needs ip (apt-get install iproute2): %v", err)
	}
	ns := fmt.Sprintf("ovltest-%d-gossip6", os.Getpid())
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	run("-n", ns, "link", "set", "lo", "up")

	// newIn runs New on a thread in ns: the sockets, and the interfaces
	// New reads, are the namespace's. The thread is never unlocked, so
	// the runtime ends it with its goroutine.
	newIn := func() (*Gossip, error) {
		type result struct {
			g   *Gossip
			err error
		}
		ch := make(chan result)
		go func() {
			runtime.LockOSThread()
			f, err := os.Open("/var/run/netns/" + ns)
			if err == nil {
				err = unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
				f.Close()
			}
			if err != nil {
				ch <- result{err: err}
				return
			}
			g, err := New(Options{Name: "a", BindAddr: "[::]:0", Profile: ProfileTest, Logger: testLogger()})
			ch <- result{g, err}
		}()
		r := <-ch
		return r.g, r.err
	}
	if g, err := newIn(); err == nil {
		g.Close()
		t.Fatalf("New([::]:0) with no IPv6 address advertises %s, want an error", g.Addr())
	} else if !errors.Is(err, errNoIPv6) || !strings.HasPrefix(err.Error(), "gossip: bind address [::]:0: ") {
		t.Fatalf("New([::]:0) with no IPv6 address: %v, want errNoIPv6", err)
	}
	run("-n", ns, "link", "add", "d0", "type", "veth", "peer", "name", "d1")
	run("-n", ns, "addr", "add", "2001:db8::5/64", "dev", "d0", "nodad")
	run("-n", ns, "addr", "add", "fd99::1/64", "dev", "d0", "nodad")
	run("-n", ns, "link", "set", "d0", "up")
	run("-n", ns, "link", "set", "d1", "up")
	g, err := newIn()
	if err != nil {
		t.Fatalf("New([::]:0): %v", err)
	}
	defer g.Close()
	if ap, err := netip.ParseAddrPort(g.Addr()); err != nil || ap.Addr() != netip.MustParseAddr("fd99::1") || ap.Port() == 0 {
		t.Errorf("New([::]:0).Addr() = %q, want [fd99::1]:PORT", g.Addr())
	}
}
