//go:build linux

package e2e

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/internal/testutil"
)

// The endpoint lab's networks: blue carries the endpoints, red is another
// VNI with an endpoint of its own that must reach none of blue's.
const (
	epBlueCIDR = "10.30.0.0/24"
	epBlueDNS  = "10.30.0.1" // the first usable address: the network's DNS
	epRedCIDR  = "10.31.0.0/24"
)

// epLab is two hosts in tun mode with gossip and DNS, and network
// namespaces (made with ip netns add) attached to their daemons as
// endpoints through the CLI.
type epLab struct {
	*gossipLab
	blue, red [2]string // each host's own address on the networks
}

// epNS is a network namespace made for an endpoint; its Host runs
// programs in it.
type epNS struct {
	*Host
	Path string // /var/run/netns/NS, what overlayd attach is given
	On   int    // the lab host whose daemon attaches it
	Addr string // its overlay address (no prefix), once attached
}

func newEpLab(t *testing.T) *epLab {
	t.Helper()
	el := &epLab{gossipLab: newGossipLab(t, 2, "test")}
	el.start(0)
	el.start(1)
	ctx := context.Background()
	for _, nw := range []api.CreateNetwork{{Name: "blue", CIDR: epBlueCIDR}, {Name: "red", CIDR: epRedCIDR}} {
		if _, err := el.ods[0].Client().CreateNetwork(ctx, nw); err != nil {
			t.Fatal(err)
		}
	}
	for i, o := range el.ods {
		for _, nw := range []string{"blue", "red"} {
			testutil.Eventually(t, 20*time.Second, fmt.Sprintf("%s: join %s", el.lab.Hosts[i].Name, nw), func() error {
				ni, err := o.Client().JoinNetwork(ctx, nw)
				if err != nil {
					return err
				}
				p := netip.MustParsePrefix(ni.Addr)
				if nw == "blue" {
					el.blue[i] = p.Addr().String()
				} else {
					el.red[i] = p.Addr().String()
				}
				return nil
			})
		}
	}
	el.waitRoutes(15*time.Second, "both hosts learn each other's routes", func(int, map[string]string) bool { return el.converged("blue") })
	return el
}

// start runs host i's daemon (again, after a kill: same state directory)
// with DNS on (upstream: nothing, the test asks only overlay names).
func (el *epLab) start(i int) *Overlayd {
	el.t.Helper()
	h, seed := el.lab.Hosts[i], el.lab.Hosts[1-i]
	el.ods[i] = h.StartOverlayd("--mode", "tun",
		"--listen", el.underlay(h, labVXLANPort),
		"--gossip", el.underlay(h, labGossipPort),
		"--join", el.underlay(seed, labGossipPort),
		"--gossip-profile", "test", "--gossip-key-file", el.key,
		"--state-dir", filepath.Join(el.state, h.Name),
		"--dns", "127.0.0.1:5353", "--dns-upstream", "127.0.0.1:5300")
	return el.ods[i]
}

// netns makes a namespace for an endpoint of host on; it is deleted when
// the test ends, also when it fails.
func (el *epLab) netns(t *testing.T, name string, on int) *epNS {
	t.Helper()
	ns := el.lab.prefix + "-" + name
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v\n%s", ns, err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	e := &epNS{Host: &Host{lab: el.lab, Name: name, NS: ns}, Path: "/var/run/netns/" + ns, On: on}
	e.Run("ip", "link", "set", "lo", "up")
	return e
}

// attach runs overlayd attach NAME --netns PATH on e's host and returns
// what it printed as JSON.
func (el *epLab) attach(t *testing.T, e *epNS, name string, flags ...string) api.EndpointInfo {
	t.Helper()
	out := el.cli(t, e.On, append([]string{"attach", name, "--netns", e.Path, "--json"}, flags...)...)
	var in api.EndpointInfo
	if err := json.Unmarshal([]byte(out), &in); err != nil {
		t.Fatalf("overlayd attach %s --json printed %q: %v", name, out, err)
	}
	return in
}

// endpoints runs overlayd endpoints --json on host i.
func (el *epLab) endpoints(t *testing.T, i int) map[string]api.EndpointInfo {
	t.Helper()
	out := el.cli(t, i, "endpoints", "--json")
	var es []api.EndpointInfo
	if err := json.Unmarshal([]byte(out), &es); err != nil {
		t.Fatalf("overlayd endpoints --json printed %q: %v", out, err)
	}
	m := map[string]api.EndpointInfo{}
	for _, e := range es {
		m[e.Name] = e
	}
	return m
}

// cli runs the overlayd CLI on host i (with its daemon's control socket)
// and returns its output; an error fails t.
func (el *epLab) cli(t *testing.T, i int, args ...string) string {
	t.Helper()
	out, err := el.overlayd(i, args...)
	if err != nil {
		t.Fatalf("%s: overlayd %s: %v\n%s", el.lab.Hosts[i].Name, strings.Join(args, " "), err, out)
	}
	return out
}

// routed reports whether host i routes addr as a host route (/32 or
// /128, to the other host's VTEP).
func (el *epLab) routed(i int, addr string) (bool, error) {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	rs, err := el.ods[i].Client().Routes(ctx)
	if err != nil {
		return false, err
	}
	for _, r := range rs.Routes {
		if r.Prefix == netip.PrefixFrom(a, a.BitLen()).String() {
			return true, nil
		}
	}
	return false, nil
}

// waitRouted waits until host i routes addr (want) or does not (!want),
// and returns how long that took.
func (el *epLab) waitRouted(t *testing.T, i int, addr string, want bool, d time.Duration) time.Duration {
	t.Helper()
	return testutil.Eventually(t, d, fmt.Sprintf("%s routes %s: %v", el.lab.Hosts[i].Name, addr, want), func() error {
		ok, err := el.routed(i, addr)
		if err != nil {
			return err
		}
		if ok != want {
			return fmt.Errorf("routed %v", ok)
		}
		return nil
	})
}

func (el *epLab) status(t *testing.T, i int) api.Status {
	t.Helper()
	st, err := el.ods[i].Status()
	if err != nil {
		t.Fatalf("%s: status: %v", el.lab.Hosts[i].Name, err)
	}
	return st
}

// pingCase is a ping that must (or must not) get an answer.
type pingCase struct {
	from *Host
	to   string
	ok   bool
	src  string // the source address to send from (ping -I); empty: the kernel's choice
}

// pings runs the pings at once; each that does not end as it should is
// an error of t.
func pings(t *testing.T, cases []pingCase) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]string, len(cases))
	for k, c := range cases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			args := []string{"ping", "-c", "2", "-i", "0.2", "-W", "2", c.to}
			if !c.ok {
				args = []string{"ping", "-c", "2", "-i", "0.2", "-W", "1", c.to}
			}
			if c.src != "" {
				args = append(args[:len(args)-1], "-I", c.src, c.to)
			}
			out, err := c.from.Try(args...)
			switch {
			case c.ok && err != nil:
				errs[k] = fmt.Sprintf("%s → %s: no answer: %v\n%s", c.from.Name, c.to, err, out)
			case !c.ok && err == nil:
				errs[k] = fmt.Sprintf("%s → %s: answered, want isolation:\n%s", c.from.Name, c.to, out)
			}
		}()
	}
	wg.Wait()
	for _, e := range errs {
		if e != "" {
			t.Error(e)
		}
	}
}

// xfer is one byte-exact TCP transfer of size bytes from src to dst:port.
type xfer struct {
	src, dst *epNS
	port     int
	size     int
}

// transfers runs the transfers at once (each its own sink and source)
// and checks that each arrived byte-exact.
func transfers(t *testing.T, xs []xfer) {
	t.Helper()
	sinks := make([]*Proc, len(xs))
	for k, x := range xs {
		sinks[k] = x.dst.helper("sink", net.JoinHostPort(x.dst.Addr, strconv.Itoa(x.port)))
	}
	for k := range xs {
		sinks[k].WaitOutput(t, 10*time.Second, "listening")
	}
	sources := make([]*Proc, len(xs))
	for k, x := range xs {
		sources[k] = x.src.helper("source", net.JoinHostPort(x.dst.Addr, strconv.Itoa(x.port)), strconv.Itoa(x.size))
	}
	for k, x := range xs {
		if err := sources[k].Wait(time.Minute); err != nil {
			t.Fatalf("%s → %s: source: %v\n%s", x.src.Name, x.dst.Name, err, sources[k].Output())
		}
		if err := sinks[k].Wait(30 * time.Second); err != nil {
			t.Fatalf("%s → %s: sink: %v\n%s", x.src.Name, x.dst.Name, err, sinks[k].Output())
		}
		sent, got := lastLine(sources[k].Output()), lastLine(sinks[k].Output())
		if !strings.HasPrefix(sent, "sha256 ") || sent != got {
			t.Fatalf("%s → %s: sent %q, received %q", x.src.Name, x.dst.Name, sent, got)
		}
	}
}

// TestNetnsEndpoints is issue 12's namespace e2e: two hosts in tun mode
// with gossip, two namespaces attached to each with overlayd attach (and
// one on another network); bad attaches are one clear line and leave
// nothing. Every endpoint pair and endpoint↔node pair
// pings; every endpoint pair moves 16 MiB byte-exact, the pairs on one
// host without the underlay (the status counters show it); names resolve
// from inside the namespaces; a VIP balances over endpoint backends for
// clients in an endpoint and on the other host; the other network's
// endpoint reaches none of them (nor their VIP), and an endpoint's
// packets from an address not its own are dropped; a daemon killed with SIGKILL and
// restarted keeps its endpoints' addresses and devices, and TCP streams
// through it carry on byte-exact; a detach and a deleted namespace are
// withdrawn from the other host within seconds and their leases released,
// also for a namespace that went while its daemon was down.
func TestNetnsEndpoints(t *testing.T) {
	RequireRoot(t, "ping", "dig", "curl")
	began := time.Now()
	el := newEpLab(t)
	ctx := context.Background()

	c1, c2 := el.netns(t, "c1", 0), el.netns(t, "c2", 0)
	c3, c4 := el.netns(t, "c3", 1), el.netns(t, "c4", 1)
	r1 := el.netns(t, "r1", 0)
	c5 := el.netns(t, "c5", 1) // attached later, when c4 detaches
	c6 := el.netns(t, "c6", 1) // and when c4's namespace goes
	eps := []*epNS{c1, c2, c3, c4}
	for _, e := range eps {
		in := el.attach(t, e, e.Name, "--network", "blue")
		p, err := netip.ParsePrefix(in.Addr)
		if err != nil || !netip.MustParsePrefix(epBlueCIDR).Contains(p.Addr()) || p.Bits() != 24 {
			t.Fatalf("attach %s: address %q, want one of %s", e.Name, in.Addr, epBlueCIDR)
		}
		e.Addr = p.Addr().String()
		if in.DNS != epBlueDNS || in.FQDN != e.Name+".blue.overlay." || !in.Attached {
			t.Errorf("attach %s = %+v; want DNS %s, FQDN %s.blue.overlay., attached", e.Name, in, epBlueDNS, e.Name)
		}
		if out := e.Run("ip", "-o", "addr", "show", "dev", "eth0"); !strings.Contains(out, in.Addr) {
			t.Errorf("%s: eth0 lacks %s:\n%s", e.Name, in.Addr, out)
		}
		if out := e.Run("ip", "route", "show", epBlueCIDR); !strings.Contains(out, "dev eth0") {
			t.Errorf("%s: no route to %s on eth0: %q", e.Name, epBlueCIDR, out)
		}
	}
	in := el.attach(t, r1, "r1", "--network", "red")
	r1.Addr = netip.MustParsePrefix(in.Addr).Addr().String()
	t.Logf("endpoints: c1 %s, c2 %s (h1); c3 %s, c4 %s (h2); r1 %s (red, h1); nodes blue %v, red %v",
		c1.Addr, c2.Addr, c3.Addr, c4.Addr, r1.Addr, el.blue, el.red)
	for _, e := range eps {
		el.waitRouted(t, 1-e.On, e.Addr, true, 15*time.Second)
	}
	el.waitRouted(t, 1, r1.Addr, true, 15*time.Second)
	if out, err := el.overlayd(0, "attach", "c1", "--netns", c2.Path, "--network", "blue"); err == nil {
		t.Errorf("a second attach of name c1 (another namespace) succeeded:\n%s", out)
	}

	t.Run("bad input", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "not-a-netns")
		if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		before := el.endpoints(t, 0)
		for _, tc := range []struct {
			args []string
			want string // in the one-line error
		}{
			{[]string{"attach", "x1", "--netns", "/var/run/netns/no-such-ns-" + el.lab.prefix, "--network", "blue"}, "no-such-ns"},
			{[]string{"attach", "x2", "--netns", file, "--network", "blue"}, "not-a-netns"},
			{[]string{"attach", "x3", "--netns", "999999999", "--network", "blue"}, "999999999"},
			{[]string{"attach", "x4", "--netns", c5.Path, "--ip", "10.99.0.5", "--network", "blue"}, "outside"},
			{[]string{"attach", "x5", "--netns", c5.Path, "--network", "green"}, "green"},
			{[]string{"attach", "Not_A_Label", "--netns", c5.Path, "--network", "blue"}, "DNS label"},
			{[]string{"detach", "no-such-endpoint"}, "no-such-endpoint"},
		} {
			out, err := el.overlayd(0, tc.args...)
			// One line, and for a usage error the pointer to --help.
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) == 2 && strings.HasPrefix(lines[1], "Run 'overlayd ") {
				lines = lines[:1]
			}
			if err == nil || !strings.Contains(lines[0], tc.want) || len(lines) != 1 || strings.Contains(out, "goroutine ") {
				t.Errorf("overlayd %s = %v\n%s\nwant one line of error naming %q", strings.Join(tc.args, " "), err, out, tc.want)
			} else {
				t.Logf("overlayd %s: %s", strings.Join(tc.args, " "), lines[0])
			}
		}
		if after := el.endpoints(t, 0); len(after) != len(before) {
			t.Errorf("endpoints after the refused attaches: %v, before: %v", after, before)
		}
		if out := c5.Run("ip", "-o", "link", "show"); strings.Count(strings.TrimSpace(out), "\n") != 0 {
			t.Errorf("a refused attach left a device in c5:\n%s", out)
		}
	})

	t.Run("ping all pairs", func(t *testing.T) {
		var cs []pingCase
		for _, a := range eps {
			for _, b := range eps {
				if a != b {
					cs = append(cs, pingCase{from: a.Host, to: b.Addr, ok: true})
				}
			}
			for i, h := range el.lab.Hosts {
				cs = append(cs, pingCase{from: a.Host, to: el.blue[i], ok: true}, pingCase{from: h, to: a.Addr, ok: true})
			}
		}
		pings(t, cs)
	})

	const size = 16 << 20
	t.Run("local pairs stay off the underlay", func(t *testing.T) {
		before := [2]api.Status{el.status(t, 0), el.status(t, 1)}
		transfers(t, []xfer{{c1, c2, 5001, size}, {c4, c3, 5002, size}})
		after := [2]api.Status{el.status(t, 0), el.status(t, 1)}
		for i := range 2 {
			b, a := before[i].Traffic, after[i].Traffic
			out, inb, local := a.Outbound.Bytes-b.Outbound.Bytes, a.Inbound.Bytes-b.Inbound.Bytes, a.Local.Bytes-b.Local.Bytes
			t.Logf("%s during a local 16 MiB transfer: underlay out %d B, in %d B; switched locally %d B (%d packets)",
				el.lab.Hosts[i].Name, out, inb, local, a.Local.Packets-b.Local.Packets)
			if out > size/16 || inb > size/16 {
				t.Errorf("%s: the underlay carried %d B out and %d B in during a local transfer of %d B", el.lab.Hosts[i].Name, out, inb, size)
			}
			if local < size {
				t.Errorf("%s: traffic.local grew by %d B, want at least the %d B transferred", el.lab.Hosts[i].Name, local, size)
			}
		}
		// The endpoints' own counters: the sender's out, the receiver's in.
		for _, x := range []struct {
			host     int
			src, dst string
		}{{0, "c1", "c2"}, {1, "c4", "c3"}} {
			bs, as := epStats(before[x.host]), epStats(after[x.host])
			if d := as[x.src].OutBytes - bs[x.src].OutBytes; d < size {
				t.Errorf("%s's out_bytes grew by %d, want ≥ %d", x.src, d, size)
			}
			if d := as[x.dst].InBytes - bs[x.dst].InBytes; d < size {
				t.Errorf("%s's in_bytes grew by %d, want ≥ %d", x.dst, d, size)
			}
		}
	})

	t.Run("cross-host pairs", func(t *testing.T) {
		before := el.status(t, 0).Traffic
		transfers(t, []xfer{{c1, c3, 5003, size}, {c4, c1, 5004, size}, {c2, c4, 5005, size}, {c3, c2, 5006, size}})
		after := el.status(t, 0).Traffic
		// The other side of the local check: the counters do see these.
		if out, inb := after.Outbound.Bytes-before.Outbound.Bytes, after.Inbound.Bytes-before.Inbound.Bytes; out < 2*size || inb < 2*size {
			t.Errorf("h1's underlay counters grew by %d B out, %d B in over 2×%d B each way", out, inb, size)
		}
	})

	t.Run("names", func(t *testing.T) {
		digUntil(t, c1.Host, 10*time.Second, c2.Addr, "@"+epBlueDNS, "c2.blue.overlay")
		digUntil(t, c1.Host, 10*time.Second, c3.Addr, "@"+epBlueDNS, "c3.blue.overlay")
		digUntil(t, c4.Host, 10*time.Second, c1.Addr, "+tcp", "@"+epBlueDNS, "c1.blue.overlay")
		digUntil(t, c3.Host, 10*time.Second, el.blue[0], "@"+epBlueDNS, "h1.blue.overlay")
		digUntil(t, el.lab.Hosts[1], 10*time.Second, c2.Addr, "@"+epBlueDNS, "c2.blue.overlay")
		digUntil(t, c3.Host, 10*time.Second, "c2.blue.overlay.", "@"+epBlueDNS, "-x", c2.Addr)
	})

	// The backends serve until the end, so that the isolation checks
	// below would see an answer if a packet got through.
	var vip string
	t.Run("VIP over endpoint backends", func(t *testing.T) {
		vip = vipOf(t, el.cli(t, 0, "service", "create", "web", "--port", "80/tcp", "--network", "blue"))
		for _, b := range []*epNS{c1, c3} {
			p := b.helper("backend", b.Addr+":8080", b.Name)
			p.WaitOutput(t, 10*time.Second, "listening")
			// By the endpoint's name, on its own host (once gossip has
			// brought the service there).
			testutil.Eventually(t, 10*time.Second, b.Name+": add-backend by name", func() error {
				out, err := el.overlayd(b.On, "service", "add-backend", "web", b.Name+":8080", "--check", "tcp")
				if err != nil {
					return fmt.Errorf("%v: %s", err, out)
				}
				return nil
			})
		}
		for i := range 2 {
			testutil.Eventually(t, 15*time.Second, el.lab.Hosts[i].Name+": both endpoint backends in the table", func() error {
				s, err := el.ods[i].Client().Service(ctx, "blue", "web")
				if err != nil {
					return err
				}
				n := 0
				for _, b := range s.Backends {
					if b.InTable {
						n++
					}
				}
				if n != 2 {
					return fmt.Errorf("%d in the table: %+v", n, s.Backends)
				}
				return nil
			})
		}
		for _, cl := range []struct {
			h    *Host
			addr string
		}{{c2.Host, c2.Addr}, {el.lab.Hosts[1], el.blue[1]}, {c4.Host, c4.Addr}} {
			seen := map[string]int{}
			for range 16 {
				out, err := cl.h.Try("curl", "-sS", "--max-time", "5", "http://"+vip+"/")
				f := strings.Fields(out)
				if err != nil || len(f) != 2 || !strings.HasPrefix(f[1], cl.addr+":") {
					t.Fatalf("%s: curl http://%s/ = %q, %v; want a backend's name and the client's address %s", cl.h.Name, vip, out, err, cl.addr)
				}
				seen[f[0]]++
			}
			t.Logf("%s: 16 flows through VIP %s: %v", cl.h.Name, vip, seen)
			if seen["c1"] == 0 || seen["c3"] == 0 {
				t.Errorf("%s: flows reached %v, want both endpoint backends c1 and c3", cl.h.Name, seen)
			}
		}
	})

	t.Run("VNI isolation", func(t *testing.T) {
		// Routes that lead the kernels into the router across networks:
		// r1 (red) to blue's CIDR, c1 (blue) to red's.
		r1.Run("ip", "route", "add", epBlueCIDR, "dev", "eth0")
		c1.Run("ip", "route", "add", epRedCIDR, "dev", "eth0")
		dropsBefore := el.ods[0].Drops()
		cases := []pingCase{
			{from: r1.Host, to: c1.Addr}, {from: r1.Host, to: c2.Addr}, {from: r1.Host, to: c3.Addr},
			{from: r1.Host, to: el.blue[0]}, {from: r1.Host, to: el.blue[1]},
			{from: c1.Host, to: r1.Addr}, {from: c1.Host, to: el.red[0]}, {from: c1.Host, to: el.red[1]},
		}
		if vip != "" {
			cases = append(cases, pingCase{from: r1.Host, to: vip})
			if out, err := r1.Try("curl", "-sS", "--max-time", "2", "http://"+vip+"/"); err == nil {
				t.Errorf("r1 (red) reached blue's VIP %s: %q", vip, out)
			}
		}
		pings(t, cases)
		// The positive event: r1 reaches its own network, both hosts.
		pings(t, []pingCase{{from: r1.Host, to: el.red[0], ok: true}, {from: r1.Host, to: el.red[1], ok: true}})
		st := el.status(t, 0)
		t.Logf("h1 drops after the cross-network pings: %v", st.Traffic.Drops)
		if after := el.ods[0].Drops(); after <= dropsBefore {
			t.Errorf("h1 counted no drops for the cross-network packets (%d before, %d after)", dropsBefore, after)
		}
	})

	t.Run("spoofed source", func(t *testing.T) {
		// c2 sends from an address that is not its own (one no one
		// holds, and c1's): the router drops it at the endpoint's door.
		c2.Run("ip", "addr", "add", "10.30.0.77/32", "dev", "eth0")
		c2.Run("ip", "addr", "add", c1.Addr+"/32", "dev", "eth0")
		defer c2.Run("ip", "addr", "del", "10.30.0.77/32", "dev", "eth0")
		defer c2.Run("ip", "addr", "del", c1.Addr+"/32", "dev", "eth0")
		before := el.ods[0].Drops("spoofed_source")
		var cs []pingCase
		for _, src := range []string{"10.30.0.77", c1.Addr} {
			for _, dst := range []string{c3.Addr, c4.Addr} {
				cs = append(cs, pingCase{from: c2.Host, to: dst, src: src})
			}
		}
		pings(t, cs)
		if got := el.ods[0].Drops("spoofed_source") - before; got < 8 {
			t.Errorf("h1 counted %d spoofed_source drops for c2's 8 echo requests from addresses not its own", got)
		}
		pings(t, []pingCase{{from: c2.Host, to: c3.Addr, ok: true}})
	})

	t.Run("kill -9 and restart keeps endpoints and connections", func(t *testing.T) {
		beforeEps := el.endpoints(t, 0)
		ifindex := map[string]string{}
		for _, e := range []*epNS{c1, c2} {
			ifindex[e.Name] = strings.Fields(e.Run("ip", "-o", "link", "show", "dev", "eth0"))[0]
		}
		// Two streams through h1's daemon: from the other host, and local.
		var streams []*epStream
		for k, src := range []*epNS{c3, c2} {
			streams = append(streams, startStream(t, src, c1, 9001+k))
		}
		for _, s := range streams {
			s.waitGot(t, 1, 10*time.Second)
		}
		el.ods[0].Kill()
		killed := time.Now()
		atKill := make([]int64, len(streams))
		for k, s := range streams {
			atKill[k] = s.sent()
		}
		// Down until each source has written more: bytes sent while no
		// daemon carries them (they wait in the socket).
		for k, s := range streams {
			testutil.Eventually(t, 5*time.Second, s.src.Name+": writes while h1's daemon is down", func() error {
				if n := s.sent(); n <= atKill[k] {
					return fmt.Errorf("%d B sent, %d at the kill", n, atKill[k])
				}
				return nil
			})
		}
		el.start(0)
		testutil.Eventually(t, 15*time.Second, "h1 re-adopts c1 and c2", func() error {
			now := el.endpoints(t, 0)
			for _, name := range []string{"c1", "c2"} {
				if !now[name].Attached {
					return fmt.Errorf("%s: %+v", name, now[name])
				}
			}
			return nil
		})
		t.Logf("kill -9 → restarted with c1, c2 re-adopted in %v", time.Since(killed).Round(time.Millisecond))
		after := el.endpoints(t, 0)
		for _, name := range []string{"c1", "c2", "r1"} {
			if after[name].Addr != beforeEps[name].Addr {
				t.Errorf("%s: address %s after the restart, %s before", name, after[name].Addr, beforeEps[name].Addr)
			}
		}
		for _, e := range []*epNS{c1, c2} {
			if got := strings.Fields(e.Run("ip", "-o", "link", "show", "dev", "eth0"))[0]; got != ifindex[e.Name] {
				t.Errorf("%s: eth0 is interface %s after the restart, %s before: the device was made anew", e.Name, got, ifindex[e.Name])
			}
		}
		for k, s := range streams {
			// Written while the daemon was down (into the socket), then
			// carried on after it came back.
			atRestart := s.got()
			s.waitGot(t, atRestart+1<<20, 30*time.Second)
			t.Logf("stream %s → c1: %d B sent by the kill, %d B received by the re-adoption, then 1 MiB more", s.src.Name, atKill[k], atRestart)
			s.finish(t)
		}
		for k, s := range streams {
			if s.total <= atKill[k] {
				t.Errorf("stream %s → c1 sent nothing after the kill (%d B in all)", s.src.Name, s.total)
			}
		}
	})

	t.Run("detach withdraws and releases", func(t *testing.T) {
		old := c4.Addr
		// While c4 holds it, its address is refused, naming the holder.
		if out, err := el.overlayd(1, "attach", "c5", "--netns", c5.Path, "--network", "blue", "--ip", old); err == nil || !strings.Contains(out, "c4") {
			t.Errorf("attach c5 --ip %s (c4's) = %v\n%s\nwant a refusal naming c4", old, err, out)
		}
		el.cli(t, 1, "detach", "c4")
		took := el.waitRouted(t, 0, old, false, 10*time.Second)
		t.Logf("detach → withdrawn on h1 in %v", took.Round(time.Millisecond))
		if _, err := c4.Try("ip", "link", "show", "dev", "eth0"); err == nil {
			t.Errorf("c4's eth0 is still there after the detach")
		}
		if _, ok := el.endpoints(t, 1)["c4"]; ok {
			t.Errorf("h2 still lists c4 after the detach")
		}
		// The lease is free: another endpoint takes the address.
		in := el.attach(t, c5, "c5", "--network", "blue", "--ip", old)
		if in.Addr != old+"/24" {
			t.Fatalf("attach c5 --ip %s gave %s", old, in.Addr)
		}
		c5.Addr = old
		el.waitRouted(t, 0, old, true, 10*time.Second)
		pings(t, []pingCase{{from: c1.Host, to: old, ok: true}})
	})

	t.Run("deleted namespace is detached", func(t *testing.T) {
		addr := c4.Addr // c5 holds it now, in its own namespace
		c5ns := el.lab.prefix + "-c5"
		gone := time.Now()
		if out, err := exec.Command("ip", "netns", "del", c5ns).CombinedOutput(); err != nil {
			t.Fatalf("ip netns del %s: %v\n%s", c5ns, err, out)
		}
		testutil.Eventually(t, 10*time.Second, "h2 detaches c5", func() error {
			if e, ok := el.endpoints(t, 1)["c5"]; ok {
				return fmt.Errorf("still listed: %+v", e)
			}
			return nil
		})
		el.waitRouted(t, 0, addr, false, 10*time.Second)
		t.Logf("ip netns del → detached and withdrawn on h1 in %v", time.Since(gone).Round(time.Millisecond))
		// Its lease went too: c4's namespace takes the address again.
		if in := el.attach(t, c4, "c4", "--network", "blue", "--ip", addr); in.Addr != addr+"/24" {
			t.Errorf("attach c4 --ip %s after c5's namespace went: %s", addr, in.Addr)
		}
	})

	t.Run("namespace gone while the daemon is down", func(t *testing.T) {
		addr := c4.Addr
		el.ods[1].Kill()
		if out, err := exec.Command("ip", "netns", "del", c4.NS).CombinedOutput(); err != nil {
			t.Fatalf("ip netns del %s: %v\n%s", c4.NS, err, out)
		}
		el.start(1)
		// Until the network's leases are back from gossip, both wait.
		took := testutil.Eventually(t, 15*time.Second, "h2 re-adopts c3 and forgets c4", func() error {
			if es := el.endpoints(t, 1); !es["c3"].Attached || len(es) != 1 {
				return fmt.Errorf("h2 lists %+v", es)
			}
			return nil
		})
		t.Logf("h2 restarted: c3 re-adopted and c4 (namespace gone) forgotten %v after it answered", took.Round(time.Millisecond))
		testutil.Eventually(t, 15*time.Second, "h1 routes c3 again and not c4", func() error {
			c3ok, err := el.routed(0, c3.Addr)
			if err != nil {
				return err
			}
			c4ok, err := el.routed(0, addr)
			if err != nil {
				return err
			}
			if !c3ok || c4ok {
				return fmt.Errorf("c3 routed %v, c4 routed %v", c3ok, c4ok)
			}
			return nil
		})
		// c4's lease went with it: another namespace takes the address.
		if in := el.attach(t, c6, "c6", "--network", "blue", "--ip", addr); in.Addr != addr+"/24" {
			t.Errorf("attach c6 --ip %s: %s", addr, in.Addr)
		}
		el.waitRouted(t, 0, addr, true, 10*time.Second)
		pings(t, []pingCase{{from: c1.Host, to: addr, ok: true}})
	})

	for i := range 2 {
		st := el.status(t, i)
		t.Logf("%s: underlay out %d pkts, in %d pkts; local %d pkts; drops %v", st.Name,
			st.Traffic.Outbound.Packets, st.Traffic.Inbound.Packets, st.Traffic.Local.Packets, st.Traffic.Drops)
	}
	t.Logf("TestNetnsEndpoints ran %v", time.Since(began).Round(time.Millisecond))
}

// epStats are a status's endpoint counters by name.
func epStats(st api.Status) map[string]api.EndpointStats {
	m := map[string]api.EndpointStats{}
	for _, e := range st.Endpoints {
		m[e.Name] = e.Traffic
	}
	return m
}

// epStream is a TCP stream from src to dst, paced, until finish: the
// source prints "sent N" and the sink "got N" as they go.
type epStream struct {
	src, dst   *epNS
	sink, from *Proc
	total      int64
}

func startStream(t *testing.T, src, dst *epNS, port int) *epStream {
	t.Helper()
	addr := fmt.Sprintf("%s:%d", dst.Addr, port)
	s := &epStream{src: src, dst: dst, sink: epHelper(dst.Host, "recv", addr)}
	s.sink.WaitOutput(t, 10*time.Second, "listening")
	s.from = epHelper(src.Host, "stream", addr)
	return s
}

func (s *epStream) sent() int64 { return lastCount(s.from.Output(), "sent ") }
func (s *epStream) got() int64  { return lastCount(s.sink.Output(), "got ") }

func (s *epStream) waitGot(t *testing.T, n int64, d time.Duration) {
	t.Helper()
	testutil.Eventually(t, d, fmt.Sprintf("stream %s → %s: %d B received", s.src.Name, s.dst.Name, n), func() error {
		if g := s.got(); g < n {
			return fmt.Errorf("%d B received, %d sent", g, s.sent())
		}
		return nil
	})
}

// finish stops the source (SIGUSR1: it closes the connection) and checks
// that the sink received exactly what it sent.
func (s *epStream) finish(t *testing.T) {
	t.Helper()
	s.from.Cmd.Process.Signal(syscall.SIGUSR1)
	if err := s.from.Wait(30 * time.Second); err != nil {
		t.Fatalf("stream %s → %s: source: %v\n%s", s.src.Name, s.dst.Name, err, s.from.Output())
	}
	if err := s.sink.Wait(30 * time.Second); err != nil {
		t.Fatalf("stream %s → %s: sink: %v\n%s", s.src.Name, s.dst.Name, err, s.sink.Output())
	}
	sent, got := lastLine(s.from.Output()), lastLine(s.sink.Output())
	if !strings.HasPrefix(sent, "sha256 ") || sent != got {
		t.Fatalf("stream %s → %s: sent %q, received %q", s.src.Name, s.dst.Name, sent, got)
	}
	f := strings.Fields(sent)
	s.total, _ = strconv.ParseInt(f[len(f)-1], 10, 64)
}

// lastCount is the number on the last line of out that starts with prefix.
func lastCount(out, prefix string) int64 {
	lines := strings.Split(out, "\n")
	for k := len(lines) - 1; k >= 0; k-- {
		if v, ok := strings.CutPrefix(lines[k], prefix); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err == nil {
				return n
			}
		}
	}
	return 0
}

// epHelper runs the test binary as an endpoint helper in h (helperMain
// hands "recv" and "stream" to epHelperMain).
func epHelper(h *Host, args ...string) *Proc { return h.helper(args...) }

// epHelperMain: "recv ADDR" accepts one TCP connection, prints "got N"
// as bytes arrive (every 64 KiB) and the SHA-256 and length at the end;
// "stream ADDR" sends seeded pseudo-random bytes, 4 KiB every 5 ms,
// printing "sent N" after each write, until SIGUSR1, then closes and
// prints the same.
func epHelperMain(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("usage: recv ADDR | stream ADDR")
	}
	out := bufio.NewWriter(os.Stdout)
	say := func(format string, a ...any) { fmt.Fprintf(out, format+"\n", a...); out.Flush() }
	switch args[0] {
	case "recv":
		ln, err := net.Listen("tcp", args[1])
		if err != nil {
			return err
		}
		say("listening")
		conn, err := ln.Accept()
		if err != nil {
			return err
		}
		h := sha256.New()
		buf := make([]byte, 64<<10)
		var n, told int64
		for {
			k, err := conn.Read(buf)
			h.Write(buf[:k])
			n += int64(k)
			if n-told >= 64<<10 {
				say("got %d", n)
				told = n
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
		}
		say("got %d", n)
		say("sha256 %x %d", h.Sum(nil), n)
		return nil
	case "stream":
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, syscall.SIGUSR1)
		var conn net.Conn
		if _, err := testutil.Poll(10*time.Second, func() (err error) {
			conn, err = net.DialTimeout("tcp", args[1], 5*time.Second)
			return err
		}); err != nil {
			return err
		}
		// Room for what is written while the path is down: the kernel's
		// autotuned buffer of a slow stream holds a few KiB only.
		if err := conn.(*net.TCPConn).SetWriteBuffer(1 << 20); err != nil {
			return err
		}
		h := sha256.New()
		chunk := make([]byte, 4<<10)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		var n int64
		for seq := uint64(1); ; seq++ {
			select {
			case <-stop:
				if err := conn.Close(); err != nil {
					return err
				}
				say("sent %d", n)
				say("sha256 %x %d", h.Sum(nil), n)
				return nil
			case <-tick.C:
			}
			fill(chunk, seq)
			if _, err := conn.Write(chunk); err != nil {
				return err
			}
			h.Write(chunk)
			n += int64(len(chunk))
			say("sent %d", n)
		}
	}
	return fmt.Errorf("unknown helper %q (want recv or stream)", args)
}
