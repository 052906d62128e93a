package e2e

import (
	"context"
	"crypto/sha512"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/internal/testutil"
)

// cniTools builds overlayd-cni and the CNI project's cnitool (a tool of
// go.mod, at the version of the CNI library the plugin is built on) into
// a directory of the test's: it is CNI_PATH and holds cnitool.
func cniTools(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, pkg := range []string{"github.com/overlayd/overlayd/cmd/overlayd-cni", "github.com/containernetworking/cni/cnitool"} {
		if out, err := exec.Command("go", "build", "-o", dir, pkg).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	return dir
}

// cniHost is a lab host's daemon with a CNI configuration for it.
type cniHost struct {
	t       *testing.T
	tools   string // CNI_PATH, and cnitool
	confDir string // NETCONFPATH
	conf    string // the configuration's JSON
	ver     string // its cniVersion
	od      *Overlayd
}

func newCNIHost(t *testing.T, tools string, od *Overlayd, ver string) *cniHost {
	dir := t.TempDir()
	c := &cniHost{t: t, tools: tools, confDir: dir, ver: ver}
	c.setDaemon(od)
	return c
}

// setDaemon points the configuration at od's control socket (a restarted
// daemon has another); the records stay where they were.
func (c *cniHost) setDaemon(od *Overlayd) {
	c.od = od
	c.conf = fmt.Sprintf(`{"cniVersion":%q,"name":"blue","type":"overlayd-cni","network":"blue","control":%q,"dataDir":%q}`,
		c.ver, od.Control, filepath.Join(c.confDir, "data"))
	if err := os.WriteFile(filepath.Join(c.confDir, "10-blue.conf"), []byte(c.conf), 0o600); err != nil {
		c.t.Fatal(err)
	}
}

// cnitool runs `cnitool CMD blue NETNS` with the pod's name in CNI_ARGS;
// it returns the output and how long cnitool took.
func (c *cniHost) cnitool(cmd, netns, pod string) (string, time.Duration, error) {
	return c.cnitoolArgs(cmd, netns, "K8S_POD_NAME="+pod)
}

// cnitoolArgs runs `cnitool CMD blue NETNS` with CNI_ARGS cniArgs.
func (c *cniHost) cnitoolArgs(cmd, netns, cniArgs string) (string, time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	x := exec.CommandContext(ctx, filepath.Join(c.tools, "cnitool"), cmd, "blue", netns)
	x.Env = append(os.Environ(), "NETCONFPATH="+c.confDir, "CNI_PATH="+c.tools, "CNI_ARGS="+cniArgs)
	start := time.Now()
	out, err := x.CombinedOutput()
	return string(out), time.Since(start), err
}

func (c *cniHost) mustCnitool(cmd, netns, pod string) string {
	c.t.Helper()
	out, _, err := c.cnitool(cmd, netns, pod)
	if err != nil {
		c.t.Fatalf("cnitool %s blue %s: %v\n%s", cmd, netns, err, out)
	}
	return out
}

// plugin runs overlayd-cni itself as a runtime does, for its error JSON.
func (c *cniHost) plugin(cmd, netns, containerID string) (string, time.Duration, error) {
	x := exec.Command(filepath.Join(c.tools, "overlayd-cni"))
	x.Env = []string{"CNI_COMMAND=" + cmd, "CNI_CONTAINERID=" + containerID, "CNI_NETNS=" + netns, "CNI_IFNAME=eth0", "CNI_PATH=" + c.tools}
	x.Stdin = strings.NewReader(c.conf)
	start := time.Now()
	out, err := x.Output()
	return string(out), time.Since(start), err
}

// cniResult is the part of a CNI 1.1.0 result the test checks.
type cniResult struct {
	CNIVersion string `json:"cniVersion"`
	Interfaces []struct {
		Name    string `json:"name"`
		Sandbox string `json:"sandbox"`
		MTU     int    `json:"mtu"`
	} `json:"interfaces"`
	IPs []struct {
		Address   string `json:"address"`
		Interface *int   `json:"interface"`
	} `json:"ips"`
	Routes []struct {
		Dst string `json:"dst"`
	} `json:"routes"`
	DNS struct {
		Nameservers []string `json:"nameservers"`
		Search      []string `json:"search"`
	} `json:"dns"`
}

// cniCacheCleanup: cnitool caches results under /var/lib/cni (libcni's
// default, no flag to move it); remove what it made there when the test
// ends.
func cniCacheCleanup(t *testing.T) {
	if _, err := os.Stat("/var/lib/cni"); os.IsNotExist(err) {
		t.Cleanup(func() {
			os.Remove("/var/lib/cni/results")
			os.Remove("/var/lib/cni")
		})
	}
}

// containerNetns makes a namespace with `ip netns add`, deleted (after a
// cnitool del, and libcni's cached result with it) when the test ends.
func containerNetns(t *testing.T, c *cniHost, name string) string {
	t.Helper()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v\n%s", name, err, out)
	}
	path := "/var/run/netns/" + name
	t.Cleanup(func() {
		c.cnitool("del", path, name)
		exec.Command("ip", "netns", "del", name).Run()
		// cnitool names the container by a hash of the path; libcni
		// caches the result under /var/lib/cni/results.
		h := sha512.Sum512([]byte(path))
		os.Remove(fmt.Sprintf("/var/lib/cni/results/blue-cnitool-%x-eth0", h[:10]))
	})
	return path
}

// TestNetnsCNI: the CNI project's cnitool drives overlayd-cni against two
// hosts (tun mode, gossip): ADD gives a namespace made with `ip netns add`
// a spec-valid result (its interface in the sandbox, an address in the
// network's CIDR, the route, the network's DNS server and search domain),
// the two namespaces on two hosts ping each other and resolve each
// other's names (the pods' names) through that DNS server, CHECK and
// STATUS pass; CHECK fails once the interface lost its address, and once
// it is deleted; DEL releases the endpoint and succeeds again; with the daemon down ADD fails at once
// with a CNI error code, and DEL until the namespace is gone; the daemon,
// restarted, detaches the endpoint whose namespace went meanwhile.
func TestNetnsCNI(t *testing.T) {
	RequireRoot(t, "ping", "dig")
	tools := cniTools(t)
	cniCacheCleanup(t)
	gl := newGossipLab(t, 2, "test")
	start := func(i int) *Overlayd {
		// DNS on, so that the endpoints get the network's DNS address
		// (nothing here is forwarded upstream).
		h, seed := gl.lab.Hosts[i], gl.lab.Hosts[1-i]
		gl.ods[i] = h.StartOverlayd("--mode", "tun",
			"--listen", fmt.Sprintf("%s:%d", h.Underlay, labVXLANPort),
			"--gossip", fmt.Sprintf("%s:%d", h.Underlay, labGossipPort),
			"--join", fmt.Sprintf("%s:%d", seed.Underlay, labGossipPort),
			"--gossip-profile", "test", "--gossip-key-file", gl.key,
			"--state-dir", filepath.Join(gl.state, h.Name),
			"--dns", "127.0.0.1:5353", "--dns-upstream", "127.0.0.1:5300")
		return gl.ods[i]
	}
	for i := range 2 {
		start(i)
	}
	gl.setup()
	gl.waitRoutes(15*time.Second, "both hosts learn both routes", func(int, map[string]string) bool { return gl.converged("blue") })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nets, err := gl.ods[0].Client().Networks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var blue api.NetworkInfo
	for _, n := range nets {
		if n.Name == "blue" {
			blue = n
		}
	}
	cidr := netip.MustParsePrefix(blue.CIDR)

	// h1's configuration is of spec 1.0.0, h2's of 1.1.0 (STATUS is 1.1.0's).
	hosts := []*cniHost{newCNIHost(t, tools, gl.ods[0], "1.0.0"), newCNIHost(t, tools, gl.ods[1], "1.1.0")}
	pods := []string{gl.lab.prefix + "-web1", gl.lab.prefix + "-web2"}
	paths := make([]string, 2)
	addrs := make([]netip.Addr, 2)
	for i, c := range hosts {
		paths[i] = containerNetns(t, c, pods[i])
		out, took, err := c.cnitool("add", paths[i], pods[i])
		if err != nil {
			t.Fatalf("cnitool add blue %s: %v\n%s", paths[i], err, out)
		}
		t.Logf("h%d: cnitool add blue %s (%v):\n%s", i+1, paths[i], took.Round(time.Millisecond), out)
		var r cniResult
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("cnitool add printed %q: %v", out, err)
		}
		if r.CNIVersion != c.ver || len(r.Interfaces) != 1 || r.Interfaces[0].Name != "eth0" || r.Interfaces[0].Sandbox != paths[i] {
			t.Errorf("result %+v: want cniVersion %s and one interface eth0 in sandbox %s", r, c.ver, paths[i])
		}
		if len(r.IPs) != 1 || r.IPs[0].Interface == nil || *r.IPs[0].Interface != 0 {
			t.Fatalf("result ips %+v: want one address on interface 0", r.IPs)
		}
		p, err := netip.ParsePrefix(r.IPs[0].Address)
		if err != nil || p.Bits() != cidr.Bits() || !cidr.Contains(p.Addr()) || p.Addr() == netip.MustParseAddr(blue.DNS) {
			t.Fatalf("result address %q: want a host address in %s with its prefix length, not the DNS address %s", r.IPs[0].Address, cidr, blue.DNS)
		}
		addrs[i] = p.Addr()
		if !slices.ContainsFunc(r.Routes, func(rt struct {
			Dst string `json:"dst"`
		}) bool {
			return rt.Dst == cidr.String()
		}) {
			t.Errorf("result routes %+v: want %s", r.Routes, cidr)
		}
		if !slices.Equal(r.DNS.Nameservers, []string{blue.DNS}) || !slices.Equal(r.DNS.Search, []string{"blue.overlay"}) {
			t.Errorf("result dns %+v: want nameserver %s, search blue.overlay", r.DNS, blue.DNS)
		}
		if got := cniRun(t, "ip", "-n", pods[i], "-o", "-4", "addr", "show", "dev", "eth0"); !strings.Contains(got, p.String()) {
			t.Errorf("eth0 in %s lacks %s:\n%s", pods[i], p, got)
		}
		e, err := c.od.Client().Endpoint(ctx, pods[i])
		if err != nil || e.Netns != paths[i] {
			t.Errorf("h%d: endpoint %s = %+v, %v; want it in %s", i+1, pods[i], e, err, paths[i])
		}
	}

	// Each pings the other across the hosts (polled: the other host may
	// learn the endpoint's route a gossip round after its ADD).
	for i := range 2 {
		j := 1 - i
		if _, err := testutil.Poll(10*time.Second, func() error {
			out, err := exec.Command("ip", "netns", "exec", pods[i], "ping", "-c", "2", "-i", "0.2", "-W", "1", addrs[j].String()).CombinedOutput()
			if err != nil {
				return fmt.Errorf("ping from %s (h%d) to %s (h%d): %v\n%s", pods[i], i+1, addrs[j], j+1, err, out)
			}
			return nil
		}); err != nil {
			t.Error(err)
		}
	}
	// Each resolves the other's name through the DNS server of its result.
	for i := range 2 {
		j := 1 - i
		name := pods[j] + ".blue.overlay"
		if _, err := testutil.Poll(10*time.Second, func() error {
			out, err := exec.Command("ip", "netns", "exec", pods[i], "dig", "+short", "+time=1", "+tries=1", "@"+blue.DNS, name).CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != addrs[j].String() {
				return fmt.Errorf("dig %s from %s: %v: %q, want %s", name, pods[i], err, out, addrs[j])
			}
			return nil
		}); err != nil {
			t.Error(err)
		}
	}
	for i, c := range hosts {
		c.mustCnitool("check", paths[i], pods[i])
	}
	hosts[1].mustCnitool("status", paths[1], pods[1])

	// CHECK fails once the interface has lost its address.
	cniRun(t, "ip", "-n", pods[0], "addr", "flush", "dev", "eth0")
	out, _, err := hosts[0].cnitool("check", paths[0], pods[0])
	if err == nil || !strings.Contains(out, "no longer has its address "+netip.PrefixFrom(addrs[0], cidr.Bits()).String()) {
		t.Errorf("cnitool check after the address was flushed: %v\n%s", err, out)
	}
	t.Logf("cnitool check after ip addr flush: %v: %s", err, firstLine(out))
	// And once the interface is deleted: the plugin finds it gone (or the
	// daemon has noticed first and detached the endpoint).
	cniRun(t, "ip", "-n", pods[0], "link", "del", "eth0")
	out, _, err = hosts[0].cnitool("check", paths[0], pods[0])
	if err == nil || !strings.Contains(out, "interface eth0 is gone from "+paths[0]) && !strings.Contains(out, "is no longer attached") {
		t.Errorf("cnitool check after the interface was deleted: %v\n%s", err, out)
	}
	t.Logf("cnitool check after ip link del: %v: %s", err, firstLine(out))

	// DEL releases the endpoint, and succeeds again.
	for k := range 2 {
		if out, _, err := hosts[1].cnitool("del", paths[1], pods[1]); err != nil {
			t.Fatalf("cnitool del %d: %v\n%s", k+1, err, out)
		}
	}
	if _, err := hosts[1].od.Client().Endpoint(ctx, pods[1]); !cniNotFound(err) {
		t.Errorf("after DEL endpoint %s: %v, want not found", pods[1], err)
	}
	if out, err := exec.Command("ip", "-n", pods[1], "link", "show", "eth0").CombinedOutput(); err == nil {
		t.Errorf("after DEL %s still has eth0:\n%s", pods[1], out)
	}
	if err := gl.ping(0, addrs[1].String()); err == nil {
		t.Errorf("h1 still reaches %s after its DEL", addrs[1])
	}

	// With h2's daemon down, ADD fails at once with a CNI error: the
	// plugin's own JSON carries code 11 (try again later).
	web3 := gl.lab.prefix + "-web3"
	path3 := containerNetns(t, hosts[1], web3)
	hosts[1].mustCnitool("add", path3, web3)
	gl.ods[1].Stop()
	out, took, err := hosts[1].cnitool("add", paths[1], pods[1])
	if err == nil || !strings.Contains(out, "no overlayd answers at "+hosts[1].od.Control) || took > 5*time.Second {
		t.Errorf("cnitool add with the daemon down: %v after %v\n%s", err, took, out)
	}
	t.Logf("cnitool add with the daemon down (%v): %s", took.Round(time.Millisecond), firstLine(out))
	out, took, err = hosts[1].plugin("ADD", paths[1], "down")
	var e struct {
		Code uint   `json:"code"`
		Msg  string `json:"msg"`
	}
	if err == nil || json.Unmarshal([]byte(out), &e) != nil || e.Code != 11 || took > 5*time.Second {
		t.Errorf("overlayd-cni ADD with the daemon down: %v after %v: %s, want CNI error code 11", err, took, out)
	}
	out, _, err = hosts[1].plugin("STATUS", "", "")
	if err == nil || json.Unmarshal([]byte(out), &e) != nil || e.Code != 50 {
		t.Errorf("overlayd-cni STATUS with the daemon down: %v: %s, want CNI error code 50", err, out)
	}

	// DEL with the daemon down is refused while the namespace is there
	// (only the daemon can release the address) and done once it is
	// gone; the daemon, back, detaches the endpoint whose namespace went.
	out, _, err = hosts[1].cnitool("del", path3, web3)
	if err == nil || !strings.Contains(out, "start overlayd and DEL again") {
		t.Errorf("cnitool del with the daemon down and the namespace there: %v\n%s", err, out)
	}
	cniRun(t, "ip", "netns", "del", web3)
	hosts[1].mustCnitool("del", path3, web3)
	hosts[1].setDaemon(start(1))
	took = testutil.Eventually(t, 20*time.Second, "h2, restarted, detaches "+web3+", whose namespace went while it was down", func() error {
		if _, err := gl.ods[1].Client().Endpoint(ctx, web3); !cniNotFound(err) {
			return fmt.Errorf("endpoint %s: %v", web3, err)
		}
		return nil
	})
	t.Logf("h2 restarted: %s detached within %v", web3, took.Round(time.Millisecond))
	testutil.Eventually(t, 20*time.Second, "cnitool status on h2 after its restart", func() error {
		if out, _, err := hosts[1].cnitool("status", paths[1], pods[1]); err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})

	// DEL on h1 (daemon up) releases the last endpoint.
	hosts[0].mustCnitool("del", paths[0], pods[0])
	hosts[0].mustCnitool("del", paths[0], pods[0])
	if es, err := hosts[0].od.Client().Endpoints(ctx); err != nil || len(es) != 0 {
		t.Errorf("h1 endpoints after DEL: %+v, %v; want none", es, err)
	}
}

func cniNotFound(err error) bool {
	re, ok := err.(*api.RemoteError)
	return ok && re.Code == 404
}

func cniRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// firstLine is cnitool's error line, without the usage cobra prints after it.
func firstLine(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return l
}
