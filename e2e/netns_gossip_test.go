package e2e

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/internal/testutil"
)

const (
	labGossipPort = 7946
	labVXLANPort  = 4789
)

// gossipLab runs overlayd in tun mode with gossip on each host of a lab.
type gossipLab struct {
	t       *testing.T
	lab     *Lab
	key     string
	profile string
	state   string
	// v6 puts the daemons' VXLAN and gossip on the hosts' IPv6 underlay
	// addresses.
	v6  bool
	ods []*Overlayd // nil for a host whose daemon is down
}

func newGossipLab(t *testing.T, hosts int, profile string) *gossipLab {
	t.Helper()
	gl := &gossipLab{t: t, lab: NewLab(t, hosts, 1500), profile: profile, state: t.TempDir(), ods: make([]*Overlayd, hosts)}
	gl.key = gl.writeKey("good.key", 7)
	return gl
}

func (gl *gossipLab) writeKey(name string, b byte) string {
	k := make([]byte, 32)
	for i := range k {
		k[i] = b
	}
	p := filepath.Join(gl.state, name)
	if err := os.WriteFile(p, []byte(base64.StdEncoding.EncodeToString(k)+"\n"), 0o600); err != nil {
		gl.t.Fatal(err)
	}
	return p
}

// start runs host i's daemon, joining through host 0 (through host 1 for
// host 0 itself when it restarts), with --join only: no --peer.
func (gl *gossipLab) start(i int, key string) *Overlayd {
	gl.t.Helper()
	h := gl.lab.Hosts[i]
	seed := gl.lab.Hosts[0]
	if i == 0 {
		seed = gl.lab.Hosts[1]
	}
	flags := []string{"--mode", "tun",
		"--listen", gl.underlay(h, labVXLANPort),
		"--gossip", gl.underlay(h, labGossipPort),
		"--join", gl.underlay(seed, labGossipPort),
		"--gossip-profile", gl.profile,
		"--state-dir", filepath.Join(gl.state, h.Name),
	}
	if key != "" {
		flags = append(flags, "--gossip-key-file", key)
	}
	o := h.StartOverlayd(flags...)
	gl.ods[i] = o
	return o
}

// underlay is host h's address and port on the lab's underlay of the
// daemons' family: "198.18.0.N:PORT", or "[2001:2::N]:PORT" when v6.
func (gl *gossipLab) underlay(h *Host, port uint16) string {
	if gl.v6 {
		return netip.AddrPortFrom(h.Underlay6, port).String()
	}
	return netip.AddrPortFrom(h.Underlay, port).String()
}

// routes returns host i's learned routes by owner and its digests.
func (gl *gossipLab) routes(i int) (map[string]string, map[string]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	rs, err := gl.ods[i].Client().Routes(ctx)
	if err != nil {
		return nil, nil, err
	}
	out := map[string]string{}
	for _, r := range rs.Routes {
		out[r.Owner] = r.Prefix
	}
	return out, rs.Digests, nil
}

// live returns the hosts whose daemons are up.
func (gl *gossipLab) live() []int {
	var out []int
	for i, o := range gl.ods {
		if o != nil {
			out = append(out, i)
		}
	}
	return out
}

// waitRoutes waits until cond holds for every live host's routes and
// returns how long that took. On timeout it logs every host's routes and
// digests and fails with the first host that did not satisfy cond.
func (gl *gossipLab) waitRoutes(d time.Duration, what string, cond func(i int, routes map[string]string) bool) time.Duration {
	gl.t.Helper()
	took, err := testutil.Poll(d, func() error {
		for _, i := range gl.live() {
			rs, _, err := gl.routes(i)
			if err != nil {
				return fmt.Errorf("%s: %v", gl.lab.Hosts[i].Name, err)
			}
			if !cond(i, rs) {
				return fmt.Errorf("%s: routes %v", gl.lab.Hosts[i].Name, rs)
			}
		}
		return nil
	})
	if err != nil {
		for _, i := range gl.live() {
			rs, ds, err := gl.routes(i)
			gl.t.Logf("%s: routes %v digests %v %v", gl.lab.Hosts[i].Name, rs, ds, err)
		}
		gl.t.Fatalf("%s: %v", what, err)
	}
	return took
}

// converged: every live host has a route to every other live host and the
// same digest of network.
func (gl *gossipLab) converged(network string) bool {
	var first string
	live := gl.live()
	for k, i := range live {
		rs, ds, err := gl.routes(i)
		if err != nil || len(rs) != len(live)-1 {
			return false
		}
		if k == 0 {
			first = ds[network]
		} else if ds[network] != first || first == "" {
			return false
		}
	}
	return true
}

// setup creates network blue on host 0 and joins every host to it; it
// returns each host's address.
func (gl *gossipLab) setup() []string {
	gl.t.Helper()
	ctx := context.Background()
	if _, err := gl.ods[0].Client().CreateNetwork(ctx, api.CreateNetwork{Name: "blue", CIDR: "10.210.0.0/24"}); err != nil {
		gl.t.Fatal(err)
	}
	addrs := make([]string, len(gl.ods))
	for i, o := range gl.ods {
		if o == nil {
			continue
		}
		testutil.Eventually(gl.t, 20*time.Second, gl.lab.Hosts[i].Name+": join blue", func() error {
			ni, err := o.Client().JoinNetwork(ctx, "blue")
			if err == nil {
				addrs[i] = ni.Addr[:len(ni.Addr)-3] // strip "/24"
			}
			return err
		})
	}
	return addrs
}

func (gl *gossipLab) ping(from int, to string) error {
	h := gl.lab.Hosts[from]
	out, err := h.Try("ping", "-c", "2", "-i", "0.2", "-W", "2", to)
	if err != nil {
		return fmt.Errorf("%s → %s: %v\n%s", h.Name, to, err, out)
	}
	return nil
}

// TestNetnsGossip: four hosts in tun mode find each other with --join
// only and carry traffic between all pairs; a host killed with SIGKILL is
// withdrawn everywhere and restored when it restarts, with its address; a
// host partitioned with nftables is withdrawn and comes back when the
// partition heals; a host stopped with SIGTERM restarts on the same ports
// at once; a fifth host with the wrong key, then with none, is refused and
// says why.
func TestNetnsGossip(t *testing.T) {
	RequireRoot(t, "ping", "nft")
	const n = 4
	gl := newGossipLab(t, n+1, "test")
	for i := range n {
		gl.start(i, gl.key)
	}
	addrs := gl.setup()[:n]
	took := gl.waitRoutes(15*time.Second, "all hosts learn all routes", func(int, map[string]string) bool { return gl.converged("blue") })
	t.Logf("addresses %v; converged %v after the joins", addrs, took.Round(time.Millisecond))
	if out := gl.lab.Hosts[1].Run("ip", "-o", "addr", "show", "dev", "ovl0"); !strings.Contains(out, addrs[1]+"/24") {
		t.Fatalf("h2 ovl0 lacks its address %s/24:\n%s", addrs[1], out)
	}

	t.Run("all pairs", func(t *testing.T) {
		for i := range n {
			for j := range n {
				if i != j {
					if err := gl.ping(i, addrs[j]); err != nil {
						t.Error(err)
					}
				}
			}
		}
	})

	t.Run("kill -9 and restart", func(t *testing.T) {
		victim := n - 1
		name := gl.lab.Hosts[victim].Name
		gl.ods[victim].Kill()
		gl.ods[victim] = nil
		took := gl.waitRoutes(20*time.Second, "withdrawn after kill -9", func(_ int, rs map[string]string) bool { _, ok := rs[name]; return !ok })
		t.Logf("kill -9 → withdrawn on all survivors in %v", took.Round(time.Millisecond))
		if err := gl.ping(0, addrs[victim]); err == nil {
			t.Error("ping to the killed host's address succeeded")
		}
		gl.start(victim, gl.key)
		took = gl.waitRoutes(20*time.Second, "restored after restart", func(int, map[string]string) bool { return gl.converged("blue") })
		t.Logf("restart → restored on all in %v", took.Round(time.Millisecond))
		rs, _, _ := gl.routes(0)
		if rs[name] != addrs[victim]+"/32" {
			t.Errorf("h1 routes %s as %q, want its old address %s/32", name, rs[name], addrs[victim])
		}
		if err := gl.ping(0, addrs[victim]); err != nil {
			t.Error(err)
		}
		if err := gl.ping(victim, addrs[1]); err != nil {
			t.Error(err)
		}
	})

	t.Run("partition and heal", func(t *testing.T) {
		p := 2
		h := gl.lab.Hosts[p]
		h.Partition(labGossipPort, labVXLANPort)
		took := gl.waitRoutes(20*time.Second, "partitioned host withdrawn", func(i int, rs map[string]string) bool {
			if i == p {
				return len(rs) == 0
			}
			_, ok := rs[h.Name]
			return !ok
		})
		t.Logf("partition → withdrawn on both sides in %v", took.Round(time.Millisecond))
		h.Heal()
		took = gl.waitRoutes(30*time.Second, "converged after heal", func(int, map[string]string) bool { return gl.converged("blue") })
		t.Logf("heal → converged in %v", took.Round(time.Millisecond))
		if err := gl.ping(0, addrs[p]); err != nil {
			t.Error(err)
		}
		if err := gl.ping(p, addrs[3]); err != nil {
			t.Error(err)
		}
	})

	t.Run("SIGTERM and restart at once", func(t *testing.T) {
		victim := 1
		name := gl.lab.Hosts[victim].Name
		start := time.Now()
		if err := gl.ods[victim].Stop(); err != nil {
			t.Logf("%s exited: %v", name, err)
		}
		took := time.Since(start)
		gl.ods[victim] = nil
		// The same ports at once: the old process released them before
		// it exited (StartOverlayd fails the test if the new one exits,
		// e.g. on "address already in use").
		o := gl.start(victim, gl.key)
		t.Logf("SIGTERM → exited in %v; restarted on the same ports at once (load %s)", took.Round(time.Millisecond), gossipLoad())
		gl.waitRoutes(30*time.Second, "converged after the restart", func(int, map[string]string) bool { return gl.converged("blue") })
		if strings.Contains(o.Output(), "address already in use") {
			t.Errorf("the restarted node logged 'address already in use':\n%s", o.Output())
		}
	})

	// A host with the wrong key, then one with none: each says why it is
	// refused (in status and once in its log) and gets nowhere.
	for _, tc := range []struct {
		name, key, why string
	}{
		{"wrong key refused", gl.writeKey("bad.key", 9), "refused: the seed encrypts gossip with another key"},
		{"no key refused", "", "refused: the cluster encrypts gossip and this node has no key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, _, _ := gl.routes(0)
			bad := gl.start(n, tc.key)
			defer func() { bad.Stop(); gl.ods[n] = nil }()
			// The positive event: the refused host has tried and knows why.
			want := fmt.Sprintf("join %s:%d: %s", gl.lab.Hosts[0].Underlay, labGossipPort, tc.why)
			var st api.Status
			if _, err := testutil.Poll(20*time.Second, func() (err error) {
				if st, err = bad.Status(); err != nil {
					return err
				}
				if st.Gossip == nil || !strings.Contains(st.Gossip.JoinError, want) {
					return fmt.Errorf("status gossip %+v", st.Gossip)
				}
				return nil
			}); err != nil {
				t.Fatalf("the refused host does not say %q: %v\n%s", want, err, bad.Output())
			}
			if st.Gossip.Alive != 1 {
				t.Errorf("the refused host counts %d alive members, want 1 (itself)", st.Gossip.Alive)
			}
			// The log line comes through the process's stderr pipe,
			// maybe after the status said it: wait for it to arrive.
			testutil.Poll(5*time.Second, func() error {
				if !strings.Contains(bad.Output(), "cannot join the cluster") {
					return errors.New("no refusal logged yet")
				}
				return nil
			})
			if n := strings.Count(bad.Output(), "cannot join the cluster"); n != 1 || !strings.Contains(bad.Output(), tc.why) {
				t.Errorf("the refused host logged the refusal %d times (want once, with %q):\n%s", n, tc.why, bad.Output())
			}
			if out := gl.mustOverlayd(n, "status"); !strings.Contains(out, "not joined: "+want) {
				t.Errorf("overlayd status on the refused host lacks %q:\n%s", "not joined: "+want, out)
			}
			ctx := context.Background()
			ps, err := gl.ods[0].Client().Peers(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, p := range ps {
				names = append(names, p.Name)
			}
			sort.Strings(names)
			if slices.Contains(names, gl.lab.Hosts[n].Name) {
				t.Errorf("h1's peers %v include the refused host", names)
			}
			if bp, err := bad.Client().Peers(ctx); err != nil || len(bp) != 1 {
				t.Errorf("the refused host sees %d peers (%v), want only itself", len(bp), err)
			}
			after, _, _ := gl.routes(0)
			if fmt.Sprint(before) != fmt.Sprint(after) {
				t.Errorf("h1's routes changed: %v → %v", before, after)
			}
		})
	}
}

func gossipLoad() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return strings.TrimSpace(string(b))
}

// TestNetnsKillWithdrawTiming measures, over 10 trials per profile, the
// time from kill -9 of one host to its route's withdrawal on every
// survivor (4 hosts). Logged, not asserted. The default profile takes
// about 70 s (failure detection is 5 to 7 s per trial); -short skips it.
func TestNetnsKillWithdrawTiming(t *testing.T) {
	RequireRoot(t, "nft")
	for _, profile := range []string{"test", "default"} {
		t.Run(profile, func(t *testing.T) {
			if profile == "default" && testing.Short() {
				t.Skip("default profile: about 70 s of failure detection; skipped with -short")
			}
			const n, trials = 4, 10
			gl := newGossipLab(t, n, profile)
			for i := range n {
				gl.start(i, gl.key)
			}
			gl.setup()
			gl.waitRoutes(30*time.Second, "converged", func(int, map[string]string) bool { return gl.converged("blue") })
			var ds []time.Duration
			for trial := range trials {
				victim := 1 + trial%(n-1)
				name := gl.lab.Hosts[victim].Name
				gl.ods[victim].Kill()
				killed := time.Now()
				gl.ods[victim] = nil
				gl.waitRoutes(60*time.Second, "withdrawn", func(_ int, rs map[string]string) bool { _, ok := rs[name]; return !ok })
				ds = append(ds, time.Since(killed))
				gl.start(victim, gl.key)
				t.Logf("trial %d: %s withdrawn in %v", trial, name, ds[len(ds)-1].Round(time.Millisecond))
				gl.waitRoutes(60*time.Second, "restored", func(int, map[string]string) bool { return gl.converged("blue") })
			}
			slices.Sort(ds)
			t.Logf("profile %s: kill -9 → withdrawn on all %d survivors, %d trials: median %v, max %v, min %v",
				profile, n-1, trials, ds[len(ds)/2].Round(time.Millisecond), ds[len(ds)-1].Round(time.Millisecond), ds[0].Round(time.Millisecond))
		})
	}
}
