package main

import (
	"context"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/internal/fault"
)

// fakeDaemon is a daemon's control API over a fake backend: one network
// (blue, 10.40.0.0/24, DNS 10.40.0.1), endpoints kept in a map with the
// daemon's rules (a name is one namespace's; an address one endpoint's).
type fakeDaemon struct {
	sock string

	mu       sync.Mutex // guards the fields below
	joined   bool
	eps      map[string]api.EndpointInfo
	attaches []api.Attach // every Attach asked, in order
	detaches []string
	refuse   error // when set, Attach answers it
}

var (
	_ api.ControlBackend  = (*fakeDaemon)(nil)
	_ api.EndpointBackend = (*fakeDaemon)(nil)
)

var fakeNet = netip.MustParsePrefix("10.40.0.0/24")

// startFake serves a fake daemon on a socket in a temporary directory
// until the test ends.
func startFake(t *testing.T) *fakeDaemon {
	t.Helper()
	f := &fakeDaemon{sock: filepath.Join(t.TempDir(), "ctl.sock"), joined: true, eps: map[string]api.EndpointInfo{}}
	s, err := api.Listen(f.sock, f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return f
}

func (f *fakeDaemon) Status(context.Context) (api.Status, error) {
	return api.Status{Name: "fake"}, nil
}

func (f *fakeDaemon) Networks(context.Context) ([]api.NetworkInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return []api.NetworkInfo{{Name: "blue", CIDR: fakeNet.String(), VNI: 42, DNS: "10.40.0.1", Joined: f.joined}}, nil
}

func (f *fakeDaemon) CreateNetwork(context.Context, api.CreateNetwork) (api.NetworkInfo, error) {
	return api.NetworkInfo{}, fault.Unavailable("not in the fake")
}

func (f *fakeDaemon) JoinNetwork(context.Context, string) (api.NetworkInfo, error) {
	return api.NetworkInfo{}, fault.Unavailable("not in the fake")
}

func (f *fakeDaemon) LeaveNetwork(context.Context, string) error {
	return fault.Unavailable("not in the fake")
}

func (f *fakeDaemon) Peers(context.Context) ([]api.Peer, error) { return nil, nil }

func (f *fakeDaemon) Routes(context.Context) (api.Routes, error) { return api.Routes{}, nil }

func (f *fakeDaemon) Endpoints(context.Context) ([]api.EndpointInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var es []api.EndpointInfo
	for _, e := range f.eps {
		es = append(es, e)
	}
	return es, nil
}

func (f *fakeDaemon) Endpoint(_ context.Context, name string) (api.EndpointInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.eps[name]
	if !ok {
		return e, fault.NotFound("no endpoint %s", name)
	}
	return e, nil
}

func (f *fakeDaemon) Attach(_ context.Context, req api.Attach) (api.EndpointInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attaches = append(f.attaches, req)
	if f.refuse != nil {
		return api.EndpointInfo{}, f.refuse
	}
	if req.Network != "blue" {
		return api.EndpointInfo{}, fault.NotFound("no network %s", req.Network)
	}
	if req.IfName == "" {
		req.IfName = "eth0"
	}
	if e, ok := f.eps[req.Name]; ok {
		if e.Netns == req.Netns && e.IfName == req.IfName {
			return e, nil
		}
		return api.EndpointInfo{}, fault.Conflict("endpoint %s is attached to %s", req.Name, e.Netns)
	}
	used := map[netip.Addr]bool{}
	for _, e := range f.eps {
		used[netip.MustParsePrefix(e.Addr).Addr()] = true
	}
	var addr netip.Addr
	if req.IP == "" && len(req.IPs) > 0 {
		req.IP = req.IPs[0]
	}
	if req.IP != "" {
		a, err := netip.ParseAddr(req.IP)
		if err != nil || !fakeNet.Contains(a) {
			return api.EndpointInfo{}, fault.Invalid("address %s is not in network blue (%s)", req.IP, fakeNet)
		}
		if used[a] {
			return api.EndpointInfo{}, fault.Conflict("address %s is in use", a)
		}
		addr = a
	} else {
		for a := netip.MustParseAddr("10.40.0.2"); fakeNet.Contains(a); a = a.Next() {
			if !used[a] {
				addr = a
				break
			}
		}
	}
	routes := []string{fakeNet.String()}
	if req.DefaultRoute {
		routes = append(routes, "0.0.0.0/0")
	}
	e := api.EndpointInfo{
		Name: req.Name, Network: "blue", VNI: 42, Netns: req.Netns, IfName: req.IfName,
		Addr: netip.PrefixFrom(addr, fakeNet.Bits()).String(), MTU: 1370, Routes: routes,
		DNS: "10.40.0.1", Search: "blue.overlay", FQDN: req.Name + ".blue.overlay", Device: "tun", Attached: true,
	}
	f.eps[req.Name] = e
	return e, nil
}

func (f *fakeDaemon) Detach(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.eps[name]; !ok {
		return fault.NotFound("no endpoint %s", name)
	}
	delete(f.eps, name)
	f.detaches = append(f.detaches, name)
	return nil
}

func (f *fakeDaemon) Reserve(context.Context, string, string, int) (api.Reservation, error) {
	return api.Reservation{}, fault.Unavailable("not in the fake")
}

func (f *fakeDaemon) Unreserve(context.Context, string, string) error { return nil }

// endpoint returns the endpoint name, ok false when it is not attached.
func (f *fakeDaemon) endpoint(name string) (api.EndpointInfo, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.eps[name]
	return e, ok
}

func (f *fakeDaemon) names() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ns []string
	for n := range f.eps {
		ns = append(ns, n)
	}
	slices.Sort(ns)
	return ns
}
