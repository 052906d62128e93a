//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/internal/testutil"
)

// The dual-stack network of TestNetnsCNIDualStack.
const (
	csCIDR4 = "10.41.0.0/24"
	csCIDR6 = "fd00:41::/64"
)

// TestNetnsCNIDualStack is issue 14's "the CNI result lists both" with
// the real cnitool: two hosts in tun mode whose gossip and VXLAN run over
// the IPv6 underlay, a network with both CIDRs (made with the CLI), and a
// namespace on each host added with cnitool (a 1.0.0 configuration on h1,
// 1.1.0 on h2). Each result lists an address of each family on interface
// 0, a route to each CIDR and both DNS addresses; eth0 holds both; the
// containers ping each other over both families and resolve each other's
// name to A and AAAA; CHECK passes (also once h1's daemon, restarted,
// re-adopted its container with both addresses), and fails once eth0
// lost its IPv6 address; addresses in use are refused per family; DEL
// releases both leases: nothing is left in the endpoints, and a third
// container asking for the released addresses gets them.
func TestNetnsCNIDualStack(t *testing.T) {
	RequireRoot(t, "ping", "dig")
	began := time.Now()
	tools := cniTools(t)
	cniCacheCleanup(t)
	el := &epLab{gossipLab: newGossipLab(t, 2, "test")}
	el.v6 = true
	el.start(0)
	el.start(1)
	out := el.cli(t, 0, "network", "create", "blue", "--cidr", csCIDR4, "--cidr", csCIDR6)
	t.Logf("h1: overlayd network create blue --cidr %s --cidr %s\n%s", csCIDR4, csCIDR6, strings.TrimSpace(out))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var blue api.NetworkInfo
	for i, o := range el.ods {
		testutil.Eventually(t, 20*time.Second, el.lab.Hosts[i].Name+": join blue", func() (err error) {
			blue, err = o.Client().JoinNetwork(ctx, "blue")
			return err
		})
	}
	el.waitRoutes(15*time.Second, "both hosts learn each other's routes", func(int, map[string]string) bool { return el.converged("blue") })
	cidr4, cidr6 := netip.MustParsePrefix(csCIDR4), netip.MustParsePrefix(csCIDR6)
	if len(blue.DNSAddrs) != 2 {
		t.Fatalf("network blue has DNS addresses %v, want one of each family", blue.DNSAddrs)
	}
	dns6 := blue.DNSAddrs[1]

	hosts := []*cniHost{newCNIHost(t, tools, el.ods[0], "1.0.0"), newCNIHost(t, tools, el.ods[1], "1.1.0")}
	pods := []string{el.lab.prefix + "-web1", el.lab.prefix + "-web2"}
	paths := make([]string, 2)
	var ns [2]*Host
	var v4, v6 [2]netip.Prefix
	for i, c := range hosts {
		paths[i] = containerNetns(t, c, pods[i])
		ns[i] = &Host{lab: el.lab, Name: pods[i], NS: pods[i]}
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
		if len(r.IPs) != 2 {
			t.Fatalf("result ips %+v: want two addresses, one of each family", r.IPs)
		}
		for k, ip := range r.IPs {
			p, err := netip.ParsePrefix(ip.Address)
			want := []netip.Prefix{cidr4, cidr6}[k]
			if ip.Interface == nil || *ip.Interface != 0 || err != nil || p.Bits() != want.Bits() || !want.Contains(p.Addr()) || slices.Contains(blue.DNSAddrs, p.Addr().String()) {
				t.Fatalf("result ips[%d] %q (interface %v): want a host address in %s with its prefix length on interface 0, not a DNS address %v", k, ip.Address, ip.Interface, want, blue.DNSAddrs)
			}
			if k == 0 {
				v4[i] = p
			} else {
				v6[i] = p
			}
		}
		var dsts []string
		for _, rt := range r.Routes {
			dsts = append(dsts, rt.Dst)
		}
		if !slices.Contains(dsts, csCIDR4) || !slices.Contains(dsts, csCIDR6) {
			t.Errorf("result routes %v: want %s and %s", dsts, csCIDR4, csCIDR6)
		}
		if !slices.Equal(r.DNS.Nameservers, blue.DNSAddrs) || !slices.Equal(r.DNS.Search, []string{"blue.overlay"}) {
			t.Errorf("result dns %+v: want nameservers %v, search blue.overlay", r.DNS, blue.DNSAddrs)
		}
		got := ns[i].Run("ip", "-o", "addr", "show", "dev", "eth0")
		for _, p := range []netip.Prefix{v4[i], v6[i]} {
			if !strings.Contains(got, " "+p.String()+" ") {
				t.Errorf("eth0 in %s lacks %s:\n%s", pods[i], p, got)
			}
		}
		t.Logf("h%d: %s: %s", i+1, pods[i], strings.TrimSpace(ns[i].Run("ip", "-br", "addr", "show", "dev", "eth0")))
		e, err := c.od.Client().Endpoint(ctx, pods[i])
		if err != nil || e.Netns != paths[i] || !slices.Equal(e.Addrs, []string{v4[i].String(), v6[i].String()}) {
			t.Errorf("h%d: endpoint %s = %+v, %v; want it in %s with %v and %v", i+1, pods[i], e, err, paths[i], v4[i], v6[i])
		}
	}
	for i := range 2 {
		el.waitRouted(t, i, v6[1-i].Addr().String(), true, 15*time.Second)
		el.waitRouted(t, i, v4[1-i].Addr().String(), true, 15*time.Second)
	}
	// The routes to the containers point at the hosts' IPv6 underlay.
	if routes := el.cli(t, 0, "routes"); !strings.Contains(routes, "["+el.lab.Hosts[1].Underlay6.String()+"]:") {
		t.Errorf("h1's routes do not go over the IPv6 underlay:\n%s", routes)
	}
	pings(t, []pingCase{
		{from: ns[0], to: v6[1].Addr().String(), ok: true}, {from: ns[1], to: v6[0].Addr().String(), ok: true},
		{from: ns[0], to: v4[1].Addr().String(), ok: true}, {from: ns[1], to: v4[0].Addr().String(), ok: true},
	})
	if out, err := ns[0].Try("ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", v6[1].Addr().String()); err != nil {
		t.Errorf("%s: ping -6 %s: %v\n%s", pods[0], v6[1].Addr(), err, out)
	} else {
		t.Logf("%s: ping -6 -c 3 %s\n%s", pods[0], v6[1].Addr(), tail(out, 2))
	}
	for i := range 2 {
		j := 1 - i
		name := pods[j] + ".blue.overlay"
		digUntil(t, ns[i], 10*time.Second, v6[j].Addr().String(), "@"+dns6, "AAAA", name)
		digUntil(t, ns[i], 10*time.Second, v4[j].Addr().String(), "@"+blue.DNSAddrs[0], "A", name)
	}
	for i, c := range hosts {
		c.mustCnitool("check", paths[i], pods[i])
	}
	hosts[1].mustCnitool("status", paths[1], pods[1])

	// h1's daemon, restarted, re-adopts web1 with both addresses: CHECK
	// passes and web1 pings web2 over IPv6.
	el.ods[0].Stop()
	hosts[0].setDaemon(el.start(0))
	testutil.Eventually(t, 20*time.Second, "h1, restarted, has web1 with both addresses", func() error {
		e, err := hosts[0].od.Client().Endpoint(ctx, pods[0])
		if err != nil || !e.Attached || !slices.Equal(e.Addrs, []string{v4[0].String(), v6[0].String()}) {
			return fmt.Errorf("endpoint %s: %+v, %v", pods[0], e, err)
		}
		return nil
	})
	testutil.Eventually(t, 20*time.Second, "web1 pings web2 over IPv6 after h1's restart", func() error {
		out, err := ns[0].Try("ping", "-6", "-c", "1", "-W", "1", v6[1].Addr().String())
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	hosts[0].mustCnitool("check", paths[0], pods[0])

	// CHECK fails once eth0 lost its IPv6 address (its IPv4 one kept).
	ns[0].Run("ip", "-6", "addr", "del", v6[0].String(), "dev", "eth0")
	out, _, err := hosts[0].cnitool("check", paths[0], pods[0])
	if err == nil || !strings.Contains(out, "no longer has its address "+v6[0].String()) {
		t.Errorf("cnitool check after eth0 lost %s: %v\n%s", v6[0], err, out)
	}
	t.Logf("cnitool check after ip -6 addr del: %v: %s", err, firstLine(out))

	// A third container on h2 cannot have web2's addresses while web2
	// holds them.
	web3 := el.lab.prefix + "-web3"
	path3 := containerNetns(t, hosts[1], web3)
	ask := fmt.Sprintf("K8S_POD_NAME=%s;IP=%s,%s", web3, v4[1].Addr(), v6[1].Addr())
	out, _, err = hosts[1].cnitoolArgs("add", path3, ask)
	if err == nil {
		t.Fatalf("cnitool add with CNI_ARGS %s while web2 holds them: no error\n%s", ask, out)
	}
	t.Logf("cnitool add with CNI_ARGS %s while web2 holds them: %s", ask, firstLine(out))
	ask6 := fmt.Sprintf("K8S_POD_NAME=%s;IP=10.41.0.200,%s", web3, v6[1].Addr())
	out, _, err = hosts[1].cnitoolArgs("add", path3, ask6)
	if err == nil || !strings.Contains(out, v6[1].Addr().String()+" on network blue is in use") {
		t.Fatalf("cnitool add with CNI_ARGS %s while web2 holds its IPv6 address: %v\n%s", ask6, err, out)
	}
	t.Logf("cnitool add with CNI_ARGS %s: %s", ask6, firstLine(out))

	// DEL releases both leases: no endpoint is left, the names are gone,
	// and the third container asking for web2's addresses gets them.
	for i, c := range hosts {
		c.mustCnitool("del", paths[i], pods[i])
		c.mustCnitool("del", paths[i], pods[i])
		if es, err := c.od.Client().Endpoints(ctx); err != nil || len(es) != 0 {
			t.Errorf("h%d endpoints after DEL: %+v, %v; want none", i+1, es, err)
		}
		if out := el.cli(t, i, "endpoints"); strings.Contains(out, pods[i]) {
			t.Errorf("h%d: overlayd endpoints after DEL still lists %s:\n%s", i+1, pods[i], out)
		}
	}
	digUntil(t, el.lab.Hosts[0], 10*time.Second, "", "@127.0.0.1", "-p", "5353", "AAAA", pods[1]+".blue.overlay")
	out, _, err = hosts[1].cnitoolArgs("add", path3, ask)
	if err != nil {
		t.Fatalf("cnitool add with CNI_ARGS %s (web2's released addresses): %v\n%s", ask, err, out)
	}
	var r cniResult
	if err := json.Unmarshal([]byte(out), &r); err != nil || len(r.IPs) != 2 || r.IPs[0].Address != v4[1].String() || r.IPs[1].Address != v6[1].String() {
		t.Errorf("cnitool add with CNI_ARGS %s: %v\n%s", ask, err, out)
	}
	hosts[1].mustCnitool("del", path3, web3)
	if es, err := hosts[1].od.Client().Endpoints(ctx); err != nil || len(es) != 0 {
		t.Errorf("h2 endpoints after the last DEL: %+v, %v; want none", es, err)
	}
	// Nor did the refused ADD keep the IPv4 address it asked for beside
	// the IPv6 one in use: a container on h1 gets it.
	web4 := el.lab.prefix + "-web4"
	path4 := containerNetns(t, hosts[0], web4)
	free6 := v6[1].Addr().As16() // in h2's range, as its own
	free6[15] = 0xc8
	ask4 := fmt.Sprintf("K8S_POD_NAME=%s;IP=10.41.0.200,%s", web4, netip.AddrFrom16(free6))
	if out, _, err := hosts[1].cnitoolArgs("add", path4, ask4); err != nil {
		t.Errorf("cnitool add with CNI_ARGS %s (the refused ADD's IPv4 address): %v\n%s", ask4, err, out)
	}
	hosts[1].mustCnitool("del", path4, web4)
	t.Logf("took %v", time.Since(began).Round(time.Millisecond))
}

// The dual-stack network of TestDockerPluginDualStack.
const (
	dkCIDR4 = "10.42.0.0/24"
	dkCIDR6 = "fd00:42::/64"
)

// TestDockerPluginDualStack is issue 14's Docker endpoints: two hosts
// whose overlayd gossip and carry VXLAN over the IPv6 underlay, each with
// its own dockerd (Debian's 20.10); `docker network create -d overlayd
// --ipam-driver overlayd --subnet CIDR --ipv6 --subnet CIDR6 blue` on
// both makes one dual-stack overlay network; a container on each host has
// an address of each family on eth0 (the ones Docker reports and the
// endpoint has), the containers ping each other by IPv6 address and by
// name over IPv6 (ping -6: the AAAA from overlay DNS through Docker's
// resolver) and over IPv4; h1's overlayd, restarted, re-adopts its
// container with both addresses; `docker network rm` leaves no endpoint.
// A network with an IPv6 subnet alone is refused on 20.10 (Docker asks
// for an IPv4 pool of every network), saying to give an IPv4 one.
func TestDockerPluginDualStack(t *testing.T) {
	began := time.Now()
	hosts := newDockerLab(t, true)
	h1, h2 := hosts[0], hosts[1]
	// IPv6 alone: Docker 20.10 asks the IPAM driver for an IPv4 pool of
	// every network, which the driver refuses without a subnet, saying
	// to give one (Docker 28 asks for none with --ipv4=false).
	if out, err := h1.tryDocker("network", "create", "-d", "overlayd", "--ipam-driver", "overlayd", "--ipv6", "--subnet", "fd00:43::/64", "green"); err == nil {
		t.Logf("h1: an IPv6-only network was created: %s", out)
		h1.docker(t, "network", "rm", "green")
	} else if !strings.Contains(err.Error(), "give the network's IPv4 subnet") {
		t.Errorf("h1: an IPv6-only network: %v", err)
	} else {
		t.Logf("h1: an IPv6-only network: %v", err)
	}
	create := []string{"network", "create", "-d", "overlayd", "--ipam-driver", "overlayd", "--subnet", dkCIDR4, "--ipv6", "--subnet", dkCIDR6, "blue"}
	blue := createDockerNetwork(t, h1, h2, create...)
	t.Logf("docker %s (on h1, then on h2)", strings.Join(create, " "))
	if !slices.Equal(blue.CIDRs, []string{dkCIDR4, dkCIDR6}) {
		t.Fatalf("overlay network blue has CIDRs %v, want the Docker subnets %s and %s", blue.CIDRs, dkCIDR4, dkCIDR6)
	}
	t.Logf("h2: docker network inspect blue: %s", strings.TrimSpace(h2.docker(t, "network", "inspect", "-f", "{{.EnableIPv6}} {{json .IPAM.Config}}", "blue")))

	var v4, v6 [2]netip.Addr
	for i, d := range hosts {
		name := fmt.Sprintf("web%d", i+1)
		d.docker(t, "run", "-d", "--network", "blue", "--dns", blue.DNS, "--dns-search", "blue.overlay", "--name", name, "ovt-busybox:1", "sleep", "3600")
		var e api.EndpointInfo
		testutil.Eventually(t, 15*time.Second, d.Name+": endpoint "+name+" attached", func() error {
			var ok bool
			e, ok = d.endpoints(t)[name]
			if !ok || !e.Attached || e.Network != "blue" {
				return fmt.Errorf("endpoints: %v", d.endpoints(t))
			}
			return nil
		})
		v4[i], v6[i] = dsAddrs(t, e.Addrs)
		got := d.docker(t, "exec", name, "ip", "addr", "show", "eth0")
		for _, a := range e.Addrs {
			if !strings.Contains(got, " "+a+" ") {
				t.Errorf("%s: eth0 in %s lacks the endpoint's address %s:\n%s", d.Name, name, a, got)
			}
		}
		t.Logf("%s: docker exec %s ip addr show eth0\n%s", d.Name, name, strings.TrimSpace(got))
		// What Docker says the container has is what the IPAM driver gave.
		insp := strings.Fields(d.docker(t, "inspect", "-f", "{{.NetworkSettings.Networks.blue.IPAddress}} {{.NetworkSettings.Networks.blue.GlobalIPv6Address}}", name))
		if len(insp) != 2 || insp[0] != v4[i].String() || insp[1] != v6[i].String() {
			t.Errorf("%s: docker inspect %s: addresses %v, want %v and %v", d.Name, name, insp, v4[i], v6[i])
		}
	}
	for i, d := range hosts {
		self, peer := fmt.Sprintf("web%d", i+1), fmt.Sprintf("web%d", 2-i)
		for _, to := range []string{v6[1-i].String(), peer, v4[1-i].String()} {
			args := []string{"exec", self, "ping", "-6", "-c", "3", "-W", "2", to}
			if to == v4[1-i].String() {
				args = []string{"exec", self, "ping", "-c", "3", "-W", "2", to}
			}
			var out string
			testutil.Eventually(t, 20*time.Second, fmt.Sprintf("%s: docker %s", d.Name, strings.Join(args, " ")), func() (err error) {
				out, err = d.tryDocker(args...)
				return err
			})
			t.Logf("%s: docker %s\n%s", d.Name, strings.Join(args, " "), strings.TrimSpace(out))
			if to == peer && !strings.Contains(out, "("+v6[1-i].String()+")") {
				t.Errorf("%s: ping -6 %s resolved to something else than its IPv6 address %s:\n%s", d.Name, peer, v6[1-i], out)
			}
		}
	}

	// h1's overlayd restarted re-adopts web1 with both addresses.
	h1.od.Stop()
	h1.startOverlayd(t, h2.Host)
	testutil.Eventually(t, 15*time.Second, "h1: web1 attached after the restart", func() error {
		if e, ok := h1.endpoints(t)["web1"]; !ok || !e.Attached || len(e.Addrs) != 2 {
			return fmt.Errorf("endpoints: %v", h1.endpoints(t))
		}
		return nil
	})
	testutil.Eventually(t, 15*time.Second, "web1 pings web2 over IPv6 after h1's restart", func() error {
		_, err := h1.tryDocker("exec", "web1", "ping", "-6", "-c", "1", "-W", "1", v6[1].String())
		return err
	})
	if got := h1.docker(t, "exec", "web1", "ip", "-6", "addr", "show", "eth0"); !strings.Contains(got, " "+v6[0].String()+"/") {
		t.Errorf("h1: web1's eth0 after the restart lacks %s:\n%s", v6[0], got)
	}

	for i, d := range hosts {
		d.docker(t, "rm", "-f", fmt.Sprintf("web%d", i+1))
		d.docker(t, "network", "rm", "blue")
		testutil.Eventually(t, 10*time.Second, d.Name+": no endpoint, network blue left", func() error {
			if es := d.endpoints(t); len(es) > 0 {
				return fmt.Errorf("endpoints: %v", es)
			}
			if n, ok := d.network("blue"); ok && n.Joined {
				return fmt.Errorf("still on blue: %+v", n)
			}
			return nil
		})
	}
	t.Logf("took %v", time.Since(began).Round(time.Millisecond))
}
