package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/internal/testutil"
)

// convergeBound is how long a change may take to be usable everywhere: far
// above the target (1 s) and far below push/pull (30 s at the default
// profile), so that a change that gossip missed, and only anti-entropy
// repaired, fails the test.
const convergeBound = 5 * time.Second

// TestNetnsConvergence runs issue 9's item 2 as a user would, at the
// default gossip profile, on 5 hosts in tun mode: cluster formed, network
// joined, then trials of
//
//   - h1$ overlayd service create sK --port 80/tcp
//     h2$ overlayd service add-backend sK ADDR:8080   (an HTTP server on h2)
//     and the time from add-backend's return until curl through the VIP
//     works on every other host;
//     and from create's return until `dig sK.blue.overlay` (each host's
//     own listener) answers the VIP on every host but h1;
//   - hN$ overlayd network leave blue (route and name withdrawn
//     everywhere), then hN$ overlayd network join blue, and the time from
//     join's return until every other host pings hN's new address and
//     resolves hN.blue.overlay to it.
//
// Each must be usable within convergeBound; p50/p99/worst are logged. 20
// trials of each (5 with -short). The pollers' own start (a shell in the
// namespace, ~5 ms) is inside the figures where they start after the
// command (dig after create, ping and dig after join).
func TestNetnsConvergence(t *testing.T) {
	RequireRoot(t, "curl", "ping", "dig")
	trials := 20
	if testing.Short() {
		trials = 5
	}
	const hosts = 5
	gl := newGossipLab(t, hosts, "default")
	for i := range hosts {
		// DNS on each host's loopback; names it does not own go to a
		// port where nothing listens (never the host's resolvers).
		h := gl.lab.Hosts[i]
		gl.ods[i] = h.StartOverlayd("--mode", "tun",
			"--listen", fmt.Sprintf("%s:%d", h.Underlay, labVXLANPort),
			"--gossip", fmt.Sprintf("%s:%d", h.Underlay, labGossipPort),
			"--join", fmt.Sprintf("%s:%d", gl.lab.Hosts[(i+1)%2].Underlay, labGossipPort),
			"--gossip-profile", "default", "--gossip-key-file", gl.key,
			"--state-dir", filepath.Join(gl.state, h.Name),
			"--dns", "127.0.0.1:5353", "--dns-upstream", "127.0.0.1:5300")
	}
	ctx := context.Background()
	// A /16: its VIP range (the top 1/16) holds a VIP per trial.
	if _, err := gl.ods[0].Client().CreateNetwork(ctx, api.CreateNetwork{Name: "blue", CIDR: "10.211.0.0/16"}); err != nil {
		t.Fatal(err)
	}
	addrs := make([]string, hosts)
	for i := range hosts {
		addrs[i] = gl.joinBlue(i, 20*time.Second)
	}
	gl.waitRoutes(30*time.Second, "all hosts learn all routes", func(int, map[string]string) bool { return gl.converged("blue") })
	t.Logf("cluster formed, blue joined: %v (load %s)", addrs, gossipLoad())

	// The backend: one HTTP server on h2, a backend of every trial's service.
	h2 := gl.lab.Hosts[1]
	be := h2.helper("backend", addrs[1]+":8080", h2.Name)
	be.WaitOutput(t, 10*time.Second, "listening")

	var vipTimes, svcTimes, routeTimes, svcNameTimes, nodeNameTimes []time.Duration
	for k := range trials {
		name := fmt.Sprintf("s%d", k)
		out := gl.mustOverlayd(0, "service", "create", name, "--port", "80/tcp")
		created := time.Now()
		vip := vipOf(t, out)
		var diggers []*Proc
		for _, i := range []int{1, 2, 3, 4} {
			diggers = append(diggers, gl.lab.Hosts[i].poll(digIs(name+".blue.overlay", vip)))
		}
		// Every other host polls the VIP from before the backend exists.
		var pollers []*Proc
		for _, i := range []int{0, 2, 3, 4} {
			pollers = append(pollers, gl.lab.Hosts[i].poll("curl -s -o /dev/null --max-time 0.25 http://"+vip+":80/"))
		}
		testutil.Eventually(t, convergeBound-time.Since(created), fmt.Sprintf("trial %d: h2 to know service %s (created on h1)", k, name), func() (err error) {
			if out, err = gl.overlayd(1, "service", "add-backend", name, addrs[1]+":8080"); err != nil {
				return fmt.Errorf("%v\n%s", err, out)
			}
			return nil
		})
		added := time.Now()
		svcTimes = append(svcTimes, added.Sub(created))
		var worst time.Duration
		for j, p := range pollers {
			at, err := p.pollResult(convergeBound + 2*time.Second)
			host := gl.lab.Hosts[[]int{0, 2, 3, 4}[j]].Name
			if err != nil {
				t.Fatalf("trial %d: %s cannot connect to %s (%s) through the VIP: %v", k, host, name, vip, err)
			}
			d := max(at.Sub(added), 0)
			if d > convergeBound {
				t.Errorf("trial %d: %s connected through the VIP %v after add-backend, bound %v", k, host, d.Round(time.Millisecond), convergeBound)
			}
			worst = max(worst, d)
		}
		vipTimes = append(vipTimes, worst)
		svcNameTimes = append(svcNameTimes, gl.worstPoll(k, diggers, []int{1, 2, 3, 4}, created, "resolved "+name+".blue.overlay"))
		t.Logf("trial %d: service %s on h2 %v after create; VIP %s usable everywhere %v after add-backend", k, name, added.Sub(created).Round(time.Millisecond), vip, worst.Round(time.Millisecond))
		gl.mustOverlayd(0, "service", "rm", name)

		// A host leaves and joins again: its route and participation.
		n := 1 + k%(hosts-1)
		gl.mustOverlayd(n, "network", "leave", "blue")
		gl.waitRoutes(convergeBound, fmt.Sprintf("trial %d: %s's route withdrawn", k, gl.lab.Hosts[n].Name), func(i int, rs map[string]string) bool {
			_, ok := rs[gl.lab.Hosts[n].Name]
			return i == n || !ok
		})
		nodeName := gl.lab.Hosts[n].Name + ".blue.overlay"
		for i := range hosts {
			if i != n {
				p := gl.lab.Hosts[i].poll(digIs(nodeName, ""))
				if _, err := p.pollResult(convergeBound + 2*time.Second); err != nil {
					t.Fatalf("trial %d: %s still resolves %s after the leave: %v", k, gl.lab.Hosts[i].Name, nodeName, err)
				}
			}
		}
		addr := gl.joinBlue(n, convergeBound)
		joined := time.Now()
		var rworst time.Duration
		var pingers, diggers2 []*Proc
		var others []int
		for i := range hosts {
			if i != n {
				pingers = append(pingers, gl.lab.Hosts[i].poll("ping -c 1 -W 0.25 "+addr+" >/dev/null"))
				diggers2 = append(diggers2, gl.lab.Hosts[i].poll(digIs(nodeName, addr)))
				others = append(others, i)
			}
		}
		for j, p := range pingers {
			at, err := p.pollResult(convergeBound + 2*time.Second)
			if err != nil {
				t.Fatalf("trial %d: %s cannot ping %s's new address %s: %v", k, gl.lab.Hosts[others[j]].Name, gl.lab.Hosts[n].Name, addr, err)
			}
			d := max(at.Sub(joined), 0)
			if d > convergeBound {
				t.Errorf("trial %d: %s pinged %s's new address %v after the join, bound %v", k, gl.lab.Hosts[others[j]].Name, gl.lab.Hosts[n].Name, d.Round(time.Millisecond), convergeBound)
			}
			rworst = max(rworst, d)
		}
		routeTimes = append(routeTimes, rworst)
		nodeNameTimes = append(nodeNameTimes, gl.worstPoll(k, diggers2, others, joined, "resolved "+nodeName))
		t.Logf("trial %d: %s's new address %s pinged from everywhere %v after the join", k, gl.lab.Hosts[n].Name, addr, rworst.Round(time.Millisecond))
	}
	logPercentiles(t, "service create → add-backend works on h2", svcTimes)
	logPercentiles(t, "add-backend → VIP connect on every other host", vipTimes)
	logPercentiles(t, "network join → ping from every other host", routeTimes)
	logPercentiles(t, "service create → dig NAME.blue.overlay answers the VIP on every other host", svcNameTimes)
	logPercentiles(t, "network join → dig HOST.blue.overlay answers the new address on every other host", nodeNameTimes)
	t.Logf("load %s", gossipLoad())
}

// digIs is a shell test: host's own DNS listener answers name with want
// (nothing, for "").
func digIs(name, want string) string {
	return fmt.Sprintf(`[ "$(dig +short +time=1 +tries=1 @127.0.0.1 -p 5353 %s)" = "%s" ]`, name, want)
}

// worstPoll waits for pollers (on hosts) and returns the latest success
// after t0, failing the test if one did not succeed within convergeBound.
func (gl *gossipLab) worstPoll(k int, ps []*Proc, hosts []int, t0 time.Time, what string) time.Duration {
	gl.t.Helper()
	var worst time.Duration
	for j, p := range ps {
		host := gl.lab.Hosts[hosts[j]].Name
		at, err := p.pollResult(convergeBound + 2*time.Second)
		if err != nil {
			gl.t.Fatalf("trial %d: %s has not %s: %v", k, host, what, err)
		}
		d := max(at.Sub(t0), 0)
		if d > convergeBound {
			gl.t.Errorf("trial %d: %s %s %v after the command, bound %v", k, host, what, d.Round(time.Millisecond), convergeBound)
		}
		worst = max(worst, d)
	}
	return worst
}

// joinBlue runs `overlayd network join blue` on host i, retrying while the
// network is not yet known there, and returns the address it got.
func (gl *gossipLab) joinBlue(i int, d time.Duration) string {
	gl.t.Helper()
	var out string
	testutil.Eventually(gl.t, d, gl.lab.Hosts[i].Name+": network join blue", func() (err error) {
		if out, err = gl.overlayd(i, "network", "join", "blue"); err != nil {
			return fmt.Errorf("%v\n%s", err, out)
		}
		return nil
	})
	// "joined blue (VNI N) with address A/B"
	_, rest, ok := strings.Cut(out, "with address ")
	a, _, ok2 := strings.Cut(strings.TrimSpace(rest), "/")
	if !ok || !ok2 {
		gl.t.Fatalf("%s: network join: %q", gl.lab.Hosts[i].Name, out)
	}
	return a
}

// poll starts, in host h, a loop that runs the shell command cmd every
// 10 ms until it succeeds (for at most convergeBound and a second), and
// prints the time (Unix ns) it did. Each try is bounded by its own timeout
// (a quarter second), which is the resolution of a try that hangs.
func (h *Host) poll(cmd string) *Proc {
	script := fmt.Sprintf(`echo polling; end=$(( $(date +%%s) + %d ))
while [ $(date +%%s) -le $end ]; do
  if %s; then echo "ok $(date +%%s%%N)"; exit 0; fi
  sleep 0.01
done
echo timeout; exit 1`, int((convergeBound+time.Second)/time.Second), cmd)
	p := h.Start("sh", "-c", script)
	p.WaitOutput(h.lab.t, 5*time.Second, "polling")
	return p
}

// pollResult waits for a poll loop and returns when it connected.
func (p *Proc) pollResult(d time.Duration) (time.Time, error) {
	if err := p.Wait(d); err != nil {
		return time.Time{}, fmt.Errorf("%v: %s", err, strings.TrimSpace(p.Output()))
	}
	for _, l := range strings.Split(p.Output(), "\n") {
		if ns, ok := strings.CutPrefix(l, "ok "); ok {
			v, err := strconv.ParseInt(strings.TrimSpace(ns), 10, 64)
			if err != nil {
				return time.Time{}, err
			}
			return time.Unix(0, v), nil
		}
	}
	return time.Time{}, fmt.Errorf("no result: %s", p.Output())
}

// logPercentiles logs p50, p99 (nearest rank) and the worst of ds.
func logPercentiles(t *testing.T, what string, ds []time.Duration) {
	t.Helper()
	if len(ds) == 0 {
		return
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := func(p float64) time.Duration { return s[max(0, min(len(s)-1, int(p*float64(len(s))+0.999999)-1))] }
	t.Logf("%s: p50 %v, p99 %v, worst %v (%d trials)", what, rank(0.5).Round(time.Millisecond), rank(0.99).Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond), len(s))
}
