package dockerplugin

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/internal/fault"
)

// fakeBackend is a node's networks and endpoints in memory.
type fakeBackend struct {
	mu       sync.Mutex
	nets     map[string]*api.NetworkInfo
	reserved map[string]bool // network/addr
	attached map[string]api.Attach
	next     int
	calls    []string
	// attachErr fails the next Attach.
	attachErr error
}

var _ Backend = (*fakeBackend)(nil)

func newFakeBackend() *fakeBackend {
	return &fakeBackend{nets: map[string]*api.NetworkInfo{}, reserved: map[string]bool{}, attached: map[string]api.Attach{}, next: 2}
}

func (f *fakeBackend) log(format string, args ...any) {
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

func (f *fakeBackend) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeBackend) Networks(context.Context) ([]api.NetworkInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []api.NetworkInfo
	for _, n := range f.nets {
		out = append(out, *n)
	}
	return out, nil
}

func (f *fakeBackend) CreateNetwork(_ context.Context, req api.CreateNetwork) (api.NetworkInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cidrs := req.Prefixes()
	f.log("create %s %s", req.Name, strings.Join(cidrs, ","))
	if _, ok := f.nets[req.Name]; ok {
		return api.NetworkInfo{}, fault.Conflict("network %s exists", req.Name)
	}
	cidr := netip.MustParsePrefix(cidrs[0])
	n := &api.NetworkInfo{Name: req.Name, CIDR: cidrs[0], CIDRs: cidrs, DNS: cidr.Addr().Next().String()}
	f.nets[req.Name] = n
	return *n, nil
}

func (f *fakeBackend) JoinNetwork(_ context.Context, name string) (api.NetworkInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log("join %s", name)
	n, ok := f.nets[name]
	if !ok {
		return api.NetworkInfo{}, fault.NotFound("no network %s", name)
	}
	n.Joined = true
	return *n, nil
}

func (f *fakeBackend) LeaveNetwork(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log("leave %s", name)
	n, ok := f.nets[name]
	if !ok || !n.Joined {
		return fault.NotFound("not on network %s", name)
	}
	n.Joined = false
	return nil
}

func (f *fakeBackend) Attach(_ context.Context, req api.Attach) (api.EndpointInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log("attach %s %s %s %s %s", req.Name, req.Network, req.Netns, strings.Join(append([]string{req.IP}, req.IPs...), ","), req.IfName)
	if err := f.attachErr; err != nil {
		f.attachErr = nil
		return api.EndpointInfo{}, err
	}
	if _, ok := f.attached[req.Name]; ok {
		return api.EndpointInfo{}, fault.Conflict("endpoint %s exists", req.Name)
	}
	f.attached[req.Name] = req
	delete(f.reserved, req.Network+"/"+req.IP)
	return api.EndpointInfo{Name: req.Name, Network: req.Network, Addr: req.IP + "/16"}, nil
}

func (f *fakeBackend) Detach(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log("detach %s", name)
	if _, ok := f.attached[name]; !ok {
		return fault.NotFound("no endpoint %s", name)
	}
	delete(f.attached, name)
	return nil
}

func (f *fakeBackend) Reserve(_ context.Context, network, addr string, family int) (api.Reservation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log("reserve %s %s", network, addr)
	n, ok := f.nets[network]
	if !ok {
		return api.Reservation{}, fault.NotFound("no network %s", network)
	}
	cidr := netip.MustParsePrefix(n.CIDR)
	for _, c := range n.CIDRs {
		if p := netip.MustParsePrefix(c); p.Addr().Is6() == (family == 6) {
			cidr = p
		}
	}
	if addr == "" && cidr.Addr().Is6() {
		b := cidr.Addr().As16()
		b[15] = byte(f.next)
		addr = netip.AddrFrom16(b).String()
		f.next++
	} else if addr == "" {
		addr = netip.AddrFrom4([4]byte{cidr.Addr().As4()[0], cidr.Addr().As4()[1], 0, byte(f.next)}).String()
		f.next++
	}
	if f.reserved[network+"/"+addr] {
		return api.Reservation{}, fault.Conflict("address %s is reserved", addr)
	}
	f.reserved[network+"/"+addr] = true
	return api.Reservation{Network: network, Addr: addr + "/" + fmt.Sprint(cidr.Bits()), DNS: n.DNS}, nil
}

func (f *fakeBackend) Unreserve(_ context.Context, network, addr string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log("unreserve %s %s", network, addr)
	delete(f.reserved, network+"/"+addr)
	return nil
}

// fakeNames is the Docker API's names: a network shows after notYet
// look-ups (Docker stores it after CreateNetwork returns).
type fakeNames struct {
	mu        sync.Mutex
	networks  map[string]string
	endpoints map[string]string // container names by endpoint ID
	notYet    int
	asked     int
}

var _ Names = (*fakeNames)(nil)

func (f *fakeNames) NetworkName(_ context.Context, id string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked++
	if f.asked <= f.notYet {
		return "", fault.NotFound("no network %s yet", id)
	}
	if n, ok := f.networks[id]; ok {
		return n, nil
	}
	return "", fault.NotFound("no network %s", id)
}

func (f *fakeNames) EndpointName(_ context.Context, networkID, endpointID string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n, ok := f.endpoints[endpointID]; ok && f.networks[networkID] != "" {
		return n, nil
	}
	return "", fault.NotFound("no endpoint %s", endpointID)
}
