package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/overlayd/overlayd/internal/testutil"
)

// startMDNS runs host i's daemon in tun mode with --discover mdns, joining
// seed (a host index) too when seed >= 0, with the given key file.
func (gl *gossipLab) startMDNS(i, seed int, key string) *Overlayd {
	gl.t.Helper()
	h := gl.lab.Hosts[i]
	flags := []string{"--mode", "tun",
		"--listen", fmt.Sprintf("%s:%d", h.Underlay, labVXLANPort),
		"--gossip", fmt.Sprintf("%s:%d", h.Underlay, labGossipPort),
		"--gossip-profile", gl.profile,
		"--gossip-key-file", key,
		"--state-dir", filepath.Join(gl.state, h.Name),
		"--discover", "mdns",
	}
	if seed >= 0 {
		flags = append(flags, "--join", fmt.Sprintf("%s:%d", gl.lab.Hosts[seed].Underlay, labGossipPort))
	}
	return h.StartOverlayd(flags...)
}

// peerNames returns the names of the members o sees, itself included.
func peerNames(o *Overlayd) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ps, err := o.Client().Peers(ctx)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, p := range ps {
		names = append(names, p.Name)
	}
	slices.Sort(names)
	return names, nil
}

// TestNetnsMDNS: ZeroConf on one bridge. h1 and h2 join each other with
// --join (and announce themselves with --discover mdns); h3 has only
// --discover mdns and no seed: it finds them over multicast DNS, becomes a
// member on all three, gets an address on a network and pings the others'
// overlay addresses. h4, with another gossip key and only --discover mdns,
// is found but not joined, and its log says why. Multicast stays inside
// the lab's namespaces.
func TestNetnsMDNS(t *testing.T) {
	RequireRoot(t, "ping")
	gl := newGossipLab(t, 4, "test")
	gl.ods = gl.ods[:3] // h4 is started apart: it is never a member
	gl.ods[0] = gl.startMDNS(0, 1, gl.key)
	gl.ods[1] = gl.startMDNS(1, 0, gl.key)
	gl.ods[2] = gl.startMDNS(2, -1, gl.key)
	hosts := []string{"h1", "h2", "h3"}
	testutil.Eventually(t, 30*time.Second, "h1, h2 and h3 members of one cluster", func() error {
		for i, o := range gl.ods {
			names, err := peerNames(o)
			if err != nil {
				return err
			}
			if !slices.Equal(names, hosts) {
				return fmt.Errorf("%s sees peers %v, want %v", hosts[i], names, hosts)
			}
		}
		return nil
	})
	if out := gl.ods[2].Output(); !strings.Contains(out, "joined a node found by discovery") {
		t.Errorf("h3 does not log the join through mDNS:\n%s", out)
	}
	for i := range 2 {
		if out := gl.ods[i].Output(); strings.Contains(out, "joined a node found by discovery") {
			t.Errorf("%s, given a seed, joined a node found by mDNS (--join wins):\n%s", hosts[i], out)
		}
	}

	for _, l := range strings.Split(gl.ods[2].Output(), "\n") {
		if strings.Contains(l, "mdns") || strings.Contains(l, "discovery") {
			t.Logf("h3: %s", l)
		}
	}
	addrs := gl.setup()
	t.Logf("addresses %v", addrs)
	for _, to := range []int{0, 1} {
		testutil.Eventually(t, 20*time.Second, fmt.Sprintf("h3 pings %s's overlay address", hosts[to]), func() error {
			return gl.ping(2, addrs[to])
		})
	}
	if err := gl.ping(0, addrs[2]); err != nil {
		t.Error(err)
	}
	// h3's endpoints get addresses too, and reach the hosts it found.
	ep := gl.lab.Hosts[2].NS + "-ep"
	if out, err := exec.Command("ip", "netns", "add", ep).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v\n%s", ep, err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ep).Run() })
	t.Log(gl.mustOverlayd(2, "attach", "c3", "--netns", "/var/run/netns/"+ep))
	testutil.Eventually(t, 10*time.Second, "h3's endpoint pings h1", func() error {
		out, err := exec.Command("ip", "netns", "exec", ep, "ping", "-c", "1", "-W", "1", addrs[0]).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v\n%s", err, out)
		}
		return nil
	})

	t.Run("another key", func(t *testing.T) {
		bad := gl.startMDNS(3, -1, gl.writeKey("other.key", 9))
		// The positive event: h4 heard the cluster, tried, and says why.
		bad.WaitOutput(t, 30*time.Second, "not joining a node found by discovery")
		bad.WaitOutput(t, 10*time.Second, "another key")
		for _, l := range strings.Split(bad.Output(), "\n") {
			if strings.Contains(l, "not joining") {
				t.Logf("h4: %s", l)
				break
			}
		}
		st, err := bad.Status()
		if err != nil {
			t.Fatal(err)
		}
		if st.Gossip == nil || st.Gossip.Alive != 1 || !strings.Contains(st.Gossip.JoinError, "refused: the seed encrypts gossip with another key") {
			t.Errorf("h4 (another key) has gossip status %+v, want 1 alive (itself) and why it is alone", st.Gossip)
		}
		for i, o := range gl.ods {
			names, err := peerNames(o)
			if err != nil {
				t.Fatal(err)
			}
			if slices.Contains(names, "h4") {
				t.Errorf("%s's peers %v include h4, which has another key", hosts[i], names)
			}
		}
	})
}
