package service

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/overlayd/overlayd/catalog"
	"github.com/overlayd/overlayd/gossip"
	"github.com/overlayd/overlayd/gossip/gossiptest"
	"github.com/overlayd/overlayd/internal/fault"
	"github.com/overlayd/overlayd/internal/statefile"
	"github.com/overlayd/overlayd/internal/testutil"
	"github.com/overlayd/overlayd/ipam"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var blue = Network{Name: "blue", VNI: 7, CIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}, Addrs: []netip.Addr{netip.MustParseAddr("10.1.0.1")}}

// fakeIPAM hands out VIPs from 10.1.255.1 up and remembers its leases.
type fakeIPAM struct {
	mu     sync.Mutex
	self   string
	next   uint8
	leases map[netip.Addr]ipam.Lease
}

func (f *fakeIPAM) Network(name string) (ipam.Network, bool) {
	switch name {
	case blue.Name:
		return ipam.Network{Name: name, CIDRs: blue.CIDRs, VNI: blue.VNI}, true
	case dual.Name:
		return ipam.Network{Name: name, CIDRs: dual.CIDRs, VNI: dual.VNI}, true
	}
	return ipam.Network{}, false
}

func (f *fakeIPAM) Lookup(_ string, a netip.Addr) (ipam.Lease, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.leases[a]
	return l, ok
}

func (f *fakeIPAM) AllocateVIP(_ context.Context, _, owner string, fam ipam.Family) (netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next++
	a := netip.AddrFrom4([4]byte{10, 1, 255, f.next})
	if fam == ipam.IPv6 {
		a = netip.AddrFrom16([16]byte{0xfd, 0, 0, 1, 14: 0xf0, 15: f.next})
	}
	if f.leases == nil {
		f.leases = map[netip.Addr]ipam.Lease{}
	}
	f.leases[a] = ipam.Lease{Addr: a, Owner: owner, Node: f.self}
	return a, nil
}

func (f *fakeIPAM) Release(_ string, a netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.leases, a)
	return nil
}

func newGossip(t *testing.T, net *gossiptest.Network, name string) *gossip.Gossip {
	t.Helper()
	g, err := gossip.New(gossip.Options{Name: name, Profile: gossip.ProfileTest, Transport: net.NewTransport(name)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	if err := g.JoinNetwork(blue.Name); err != nil {
		t.Fatal(err)
	}
	return g
}

// newManager starts a manager of g on network blue (this node at addr).
func newManager(t *testing.T, g *gossip.Gossip, addr string, o Options) *Manager {
	t.Helper()
	nw := blue
	nw.Addrs = []netip.Addr{netip.MustParseAddr(addr)}
	o.Gossip = g
	if o.IPAM == nil {
		o.IPAM = &fakeIPAM{self: g.Name()}
	}
	o.Networks = func() []Network { return []Network{nw} }
	m := New(o)
	m.Start()
	t.Cleanup(func() { m.Close() })
	return m
}

// The operations' refusals read as the CLI prints them, of the kind the
// API maps to a status; a service's backends get their state from the
// view.
func TestManagerCRUD(t *testing.T) {
	g := newGossip(t, gossiptest.NewNetwork(), "a")
	var changes atomic.Int32
	m := newManager(t, g, "10.1.0.1", Options{Changed: func() { changes.Add(1) }})
	ctx := context.Background()

	refusals := []struct {
		what string
		err  error
		kind error
		msg  string
	}{
		{"bad name", second(m.Create(ctx, Create{Name: "-x", Ports: []string{"80/tcp"}})), fault.ErrInvalid,
			`service name "-x" is not valid: it is a DNS label, 1 to 63 letters, digits or '-', not starting or ending with '-'`},
		{"no port", second(m.Create(ctx, Create{Name: "web"})), fault.ErrInvalid, "a service needs at least one port: give --port 80/tcp"},
		{"port twice", second(m.Create(ctx, Create{Name: "web", Ports: []string{"80/tcp", "80"}})), fault.ErrInvalid, "port 80/tcp is given twice"},
		{"network not joined", second(m.Create(ctx, Create{Name: "web", Network: "red", Ports: []string{"80"}})), fault.ErrConflict,
			`this node has not joined network "red"; run 'overlayd network join red' first`},
		{"VIP outside", second(m.Create(ctx, Create{Name: "web", Ports: []string{"80"}, VIP: "10.2.0.1"})), fault.ErrInvalid,
			`VIP 10.2.0.1 is outside network "blue" (10.1.0.0/16)`},
		{"backend of no service", second(m.AddBackend(AddBackend{Service: "web", Addr: "10.1.0.1:80", Weight: 1})), fault.ErrNotFound,
			`no service "web" on network "blue"; create it with 'overlayd service create web --network blue --port PORT/PROTO'`},
	}
	for _, r := range refusals {
		if !errors.Is(r.err, r.kind) || r.err.Error() != r.msg {
			t.Errorf("%s: %v, want %v: %q", r.what, r.err, r.kind, r.msg)
		}
	}

	si, err := m.Create(ctx, Create{Name: "web", Ports: []string{"80/tcp"}})
	if err != nil {
		t.Fatal(err)
	}
	if si.VIP != "10.1.255.1" || si.Network != "blue" || si.Creator != "a" || fmt.Sprint(si.Ports) != "[80/tcp]" {
		t.Errorf("Create = %+v, want web on blue at 10.1.255.1, 80/tcp, created by a", si)
	}
	if _, err := m.Create(ctx, Create{Name: "web", Ports: []string{"80/tcp"}}); !errors.Is(err, fault.ErrConflict) ||
		err.Error() != `service "web" exists already on network "blue" (VIP 10.1.255.1)` {
		t.Errorf("Create twice: %v", err)
	}
	if _, err := m.Create(ctx, Create{Name: "api", Ports: []string{"80/tcp"}, VIP: "10.1.255.1"}); !errors.Is(err, fault.ErrConflict) ||
		err.Error() != `VIP 10.1.255.1 is taken by service "web"` {
		t.Errorf("Create on a taken VIP: %v", err)
	}
	for _, tt := range []struct {
		req AddBackend
		msg string
	}{
		{AddBackend{Service: "web", Addr: "10.2.0.1:80", Weight: 1}, `backend 10.2.0.1:80 is outside network "blue" (10.1.0.0/16)`},
		{AddBackend{Service: "web", Addr: "10.1.255.1:80", Weight: 1}, "backend 10.1.255.1:80 is the service's own VIP"},
		{AddBackend{Service: "web", Addr: "10.1.0.2:80", Weight: 70000}, "weight 70000 is out of range (0-65535)"},
		{AddBackend{Service: "web", Addr: "10.1.0.2:80", Check: "icmp"}, `check "icmp": want tcp, udp or none`},
		{AddBackend{Service: "web", Addr: "web:80"}, `backend "web:80": want an overlay address and port such as 10.200.1.1:8080 or [fd00:10::3]:8080`},
		{AddBackend{Service: "web", Addr: "10.1.0.2:80", ServicePort: 81}, "service web: the service has no port 81 (its ports: 80/tcp)"},
	} {
		if _, err := m.AddBackend(tt.req); !errors.Is(err, fault.ErrInvalid) || err.Error() != tt.msg {
			t.Errorf("AddBackend(%+v): %v, want invalid: %q", tt.req, err, tt.msg)
		}
	}
	// Own address: active; another address with no route: unreachable.
	if _, err := m.AddBackend(AddBackend{Service: "web", Addr: "10.1.0.1:8080", Weight: 1}); err != nil {
		t.Fatal(err)
	}
	si, err = m.AddBackend(AddBackend{Service: "web", Addr: "10.1.0.9:8080", Weight: 3, Check: "none"})
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]string{}
	for _, b := range si.Backends {
		states[b.Addr] = b.State + "/" + b.Check + "/" + b.Owner
	}
	if want := map[string]string{"10.1.0.1:8080": "active/none/a", "10.1.0.9:8080": "unreachable/none/a"}; fmt.Sprint(states) != fmt.Sprint(want) {
		t.Errorf("backends %v, want %v", states, want)
	}
	si, err = m.RemoveBackend(BackendRef{Service: "web", Addr: "10.1.0.1:8080"}, true)
	if err != nil || len(si.Backends) != 2 {
		t.Fatalf("drain: %+v, %v", si, err)
	}
	for _, b := range si.Backends {
		if b.Addr == "10.1.0.1:8080" && (b.Weight != 0 || b.State != StateDraining) {
			t.Errorf("drained backend: %+v, want weight 0, draining", b)
		}
	}
	if _, err := m.RemoveBackend(BackendRef{Service: "web", Addr: "10.1.0.7:80"}, false); !errors.Is(err, fault.ErrNotFound) ||
		err.Error() != `service "web" on network "blue" has no backend 10.1.0.7:80` {
		t.Errorf("remove an unknown backend: %v", err)
	}
	if ss := m.Services(); len(ss) != 1 || ss[0].Name != "web" || len(ss[0].Backends) != 2 {
		t.Errorf("Services = %+v, want web with 2 backends", ss)
	}
	if err := m.Remove("", "web"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Service("", "web"); !errors.Is(err, fault.ErrNotFound) || err.Error() != `no service "web" on network "blue"` {
		t.Errorf("Service after Remove: %v", err)
	}
	if n := len(g.List(catalog.TableBackends, "blue")); n != 0 {
		t.Errorf("%d backends entries after Remove, want its backends gone", n)
	}
	if _, ok := m.o.IPAM.Lookup("blue", netip.MustParseAddr("10.1.255.1")); ok {
		t.Error("the VIP is still leased after Remove")
	}
	if got := changes.Load(); got != 5 { // create, 2 adds, drain, remove; nothing for a refusal
		t.Errorf("Changed called %d times, want 5", got)
	}
}

func second[T any](_ T, err error) error { return err }

// Another node's service and backend are refused with an OwnerError
// naming their owner.
func TestManagerOwnership(t *testing.T) {
	net := gossiptest.NewNetwork()
	ga, gb := newGossip(t, net, "a"), newGossip(t, net, "b")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := gb.Join(ctx, []string{ga.Addr()}); err != nil {
		t.Fatal(err)
	}
	a := newManager(t, ga, "10.1.0.1", Options{})
	b := newManager(t, gb, "10.1.0.2", Options{})
	if _, err := a.Create(ctx, Create{Name: "web", Ports: []string{"80/tcp"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.AddBackend(AddBackend{Service: "web", Addr: "10.1.0.1:8080", Weight: 1}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 15*time.Second, "b sees a's service and backend", func() error {
		si, err := b.Service("blue", "web")
		if err == nil && len(si.Backends) != 1 {
			return errors.New("no backend yet")
		}
		return err
	})
	for _, tt := range []struct {
		what, msg string
		err       error
	}{
		{"remove a's service", "service web was created by node a; run the command there", b.Remove("blue", "web")},
		{"remove a's backend", "backend 10.1.0.1:8080 was added by node a; run the command there",
			second(b.RemoveBackend(BackendRef{Service: "web", Addr: "10.1.0.1:8080"}, false))},
		{"drain a's backend", "backend 10.1.0.1:8080 was added by node a; run the command there",
			second(b.RemoveBackend(BackendRef{Service: "web", Addr: "10.1.0.1:8080"}, true))},
	} {
		var oe *fault.OwnerError
		if !errors.As(tt.err, &oe) || oe.Owner != "a" || tt.err.Error() != tt.msg {
			t.Errorf("%s: %v, want an OwnerError: %q", tt.what, tt.err, tt.msg)
		}
	}
}

// This node's entries are kept in the state and come back after a
// restart in a cluster that lost them.
func TestManagerRestore(t *testing.T) {
	st, err := statefile.Open(t.TempDir(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	g := newGossip(t, gossiptest.NewNetwork(), "a")
	m := newManager(t, g, "10.1.0.1", Options{State: st})
	if _, err := m.Create(context.Background(), Create{Name: "web", Ports: []string{"80/tcp"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.AddBackend(AddBackend{Service: "web", Addr: "10.1.0.1:8080", Weight: 2}); err != nil {
		t.Fatal(err)
	}
	m.Close()
	g.Close()

	g2 := newGossip(t, gossiptest.NewNetwork(), "a")
	m2 := newManager(t, g2, "10.1.0.1", Options{State: st})
	si, err := m2.Service("", "web")
	if err != nil || si.VIP != "10.1.255.1" || len(si.Backends) != 1 || si.Backends[0].Weight != 2 {
		t.Errorf("after a restart: %+v, %v; want web at 10.1.255.1 with its backend of weight 2", si, err)
	}
}

// A backend with a check turns unhealthy after checkFailures failed
// probes in a row, and healthy again after one that passes.
func TestHealthCheck(t *testing.T) {
	var fail atomic.Bool
	var changes atomic.Int32
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if fail.Load() {
			return nil, errors.New("connection refused")
		}
		c1, c2 := net.Pipe()
		c2.Close()
		return c1, nil
	}
	g := newGossip(t, gossiptest.NewNetwork(), "a")
	m := New(Options{Gossip: g, IPAM: &fakeIPAM{self: "a"}, Dial: dial, Changed: func() { changes.Add(1) },
		Networks: func() []Network { return []Network{blue} }})
	defer m.Close()
	if _, err := m.Create(context.Background(), Create{Name: "web", Ports: []string{"80/tcp"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.AddBackend(AddBackend{Service: "web", Addr: "10.1.0.1:8080", Weight: 1, Check: "tcp"}); err != nil {
		t.Fatal(err)
	}
	healthy := func() bool {
		si, err := m.Service("", "web")
		if err != nil || len(si.Backends) != 1 {
			t.Fatalf("service web: %+v, %v", si, err)
		}
		return si.Backends[0].Healthy
	}
	before := changes.Load()
	fail.Store(true)
	m.checkAll()
	if !healthy() {
		t.Error("unhealthy after one failed probe, want healthy until the second")
	}
	m.checkAll()
	if healthy() {
		t.Error("healthy after two failed probes")
	}
	fail.Store(false)
	m.checkAll()
	if !healthy() {
		t.Error("unhealthy after a probe that passed")
	}
	if got := changes.Load() - before; got != 2 {
		t.Errorf("Changed called %d times for two health changes", got)
	}
}

// Declare creates a missing service, makes this node's backends exactly
// those listed (but for those keep keeps), and refuses a service whose
// VIP or ports differ, naming the line.
func TestDeclare(t *testing.T) {
	g := newGossip(t, gossiptest.NewNetwork(), "a")
	m := newManager(t, g, "10.1.0.1", Options{})
	ctx := context.Background()
	var changes []string
	changed := func(format string, args ...any) { changes = append(changes, fmt.Sprintf(format, args...)) }
	kept := catalog.BackendKey("web", netip.MustParseAddrPort("10.1.0.1:9000"))
	keep := func(network, key string) bool { return network == "blue" && key == kept }

	d := Declared{Name: "web", Ports: []string{"80/tcp"}, Line: 3, Backends: []DeclaredBackend{
		{Addr: ":8080", Weight: 1, Line: 5},
		{Addr: "10.1.0.3:8080", Weight: 2, Check: "tcp", Line: 6},
	}}
	if err := m.Declare(ctx, d, keep, changed); err != nil {
		t.Fatal(err)
	}
	if _, err := m.AddBackend(AddBackend{Service: "web", Addr: "10.1.0.1:9000", Weight: 1}); err != nil { // an expose's, say
		t.Fatal(err)
	}
	d.Backends = []DeclaredBackend{{Addr: ":8080", Weight: 4, Line: 5}}
	if err := m.Declare(ctx, d, keep, changed); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"service web: created on network blue (VIP 10.1.255.1, ports 80/tcp)",
		"service web: backend 10.1.0.1:8080 added (weight 1, check none)",
		"service web: backend 10.1.0.3:8080 added (weight 2, check tcp)",
		"service web: backend 10.1.0.1:8080 weight 1 → 4",
		"service web: backend 10.1.0.3:8080 removed",
	}
	if fmt.Sprint(changes) != fmt.Sprint(want) {
		t.Errorf("changes:\n%q\nwant\n%q", changes, want)
	}
	si, err := m.Service("", "web")
	if err != nil || len(si.Backends) != 2 {
		t.Errorf("web: %+v, %v; want the declared backend and the kept one", si, err)
	}
	for _, tt := range []struct {
		d   Declared
		msg string
	}{
		{Declared{Name: "web", Ports: []string{"81/tcp"}, Line: 9},
			"line 9: service web: exists with ports 80/tcp, not 81/tcp; remove it with 'overlayd service rm web' on node a to change it"},
		{Declared{Name: "web", VIP: "10.1.255.9", Line: 9},
			"line 9: service web: exists with VIP 10.1.255.1, not 10.1.255.9; remove it with 'overlayd service rm web' on node a to change it"},
		{Declared{Name: "api", Line: 9}, `line 9: service api: no service "api" on network "blue" (yet); give its ports to create it here`},
		{Declared{Name: "web", Line: 9, Backends: []DeclaredBackend{{Addr: "nope", Line: 10}}},
			"line 10: service web: backend nope: want an overlay IP:PORT, or :PORT for this node's address"},
	} {
		if err := m.Declare(ctx, tt.d, nil, changed); err == nil || err.Error() != tt.msg {
			t.Errorf("Declare(%+v) = %v, want %q", tt.d, err, tt.msg)
		}
	}
}

// A backend added on one node for a service created on another a moment
// ago waits for the service to arrive instead of answering "no service"
// (as a join waits for a network).
func TestAddBackendWaitsForService(t *testing.T) {
	net := gossiptest.NewNetwork()
	ga, gb := newGossip(t, net, "a"), newGossip(t, net, "b")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := gb.Join(ctx, []string{ga.Addr()}); err != nil {
		t.Fatal(err)
	}
	a := newManager(t, ga, "10.1.0.1", Options{})
	b := newManager(t, gb, "10.1.0.2", Options{})
	waiting := make(chan struct{})
	b.waiting = func(string, string) { close(waiting) }
	type result struct {
		si  Info
		err error
	}
	done := make(chan result, 1)
	go func() {
		si, err := b.AddBackend(AddBackend{Service: "late", Addr: "10.1.0.2:8080", Weight: 1})
		done <- result{si, err}
	}()
	select {
	case <-waiting:
	case r := <-done:
		t.Fatalf("AddBackend for a service not here yet returned at once: %+v, %v", r.si, r.err)
	}
	if _, err := a.Create(ctx, Create{Name: "late", Ports: []string{"80/tcp"}}); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || r.si.Name != "late" || len(r.si.Backends) != 1 {
		t.Fatalf("AddBackend after the service arrived: %+v, %v; want the backend added", r.si, r.err)
	}
}
