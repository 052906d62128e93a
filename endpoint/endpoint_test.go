package endpoint

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/overlayd/overlayd/catalog"
	"github.com/overlayd/overlayd/internal/fault"
	"github.com/overlayd/overlayd/internal/statefile"
	"github.com/overlayd/overlayd/internal/testutil"
	"github.com/overlayd/overlayd/ipam"
	"github.com/overlayd/overlayd/stack"
	"github.com/overlayd/overlayd/stack/stacktest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	blue = Net{Name: "blue", VNI: 7, CIDRs: []netip.Prefix{netip.MustParsePrefix("10.30.0.0/16")}, Addrs: []netip.Addr{netip.MustParseAddr("10.30.0.2")}}
	vtep = netip.MustParseAddrPort("192.0.2.1:4789")
)

// fakeGossip is the routes table.
type fakeGossip struct {
	mu sync.Mutex
	m  map[string]string // network/key → value
}

func (g *fakeGossip) Put(tbl, network, key string, v []byte) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.m[network+" "+key] = string(v)
	return nil
}

func (g *fakeGossip) Delete(tbl, network, key string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.m, network+" "+key)
	return nil
}

func (g *fakeGossip) get(network, key string) (string, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	v, ok := g.m[network+" "+key]
	return v, ok
}

// fakeIPAM leases from one range of this node covering the network.
type fakeIPAM struct {
	mu      sync.Mutex
	self    string
	leases  map[netip.Addr]ipam.Lease
	next    netip.Addr
	next6   netip.Addr // IPv6 ones (dual's)
	noRange bool       // Claim fails as before the ranges came back from the peers
}

func (p *fakeIPAM) Allocate(_ context.Context, network, owner string, f ipam.Family) (netip.Addr, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		next := &p.next
		if f == ipam.IPv6 {
			next = &p.next6
		}
		a := *next
		*next = a.Next()
		if _, taken := p.leases[a]; !taken && a != blue.Addrs[0] && a != ipam.DNSAddr(blue.CIDRs[0]) {
			p.leases[a] = ipam.Lease{Addr: a, Owner: owner, Node: p.self}
			return a, nil
		}
	}
}

func (p *fakeIPAM) Claim(network string, a netip.Addr, owner string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.noRange {
		return errors.New("ipam: unknown network " + network)
	}
	if ls, ok := p.leases[a]; ok && (ls.Owner != owner || ls.Node != p.self) {
		return errors.New("ipam: leased to " + ls.Owner)
	}
	p.leases[a] = ipam.Lease{Addr: a, Owner: owner, Node: p.self}
	return nil
}

func (p *fakeIPAM) Release(network string, a netip.Addr) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.leases, a)
	return nil
}

func (p *fakeIPAM) Lookup(network string, a netip.Addr) (ipam.Lease, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ls, ok := p.leases[a]
	return ls, ok
}

func (p *fakeIPAM) Leases(network string) []ipam.Lease {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []ipam.Lease
	for _, ls := range p.leases {
		out = append(out, ls)
	}
	return out
}

// fakeRouter records what it carries; it closes a device on removal, as
// the router does.
type fakeRouter struct {
	mu  sync.Mutex
	eps map[string]fakeEP
}

type fakeEP struct {
	vni   uint32
	addrs []netip.Addr
	dev   stack.Device
}

func (r *fakeRouter) AddEndpoint(id string, vni uint32, addr []netip.Addr, dev stack.Device) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.eps[id]; dup {
		return fault.Conflict("router: endpoint %q exists already", id)
	}
	r.eps[id] = fakeEP{vni, addr, dev}
	return nil
}

func (r *fakeRouter) RemoveEndpoint(id string) error {
	r.mu.Lock()
	c, ok := r.eps[id]
	delete(r.eps, id)
	r.mu.Unlock()
	if !ok {
		return fault.NotFound("router: no endpoint %q", id)
	}
	return c.dev.Close()
}

func (r *fakeRouter) has(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.eps[id]
	return ok
}

// fakeDev is a device whose namespace can go.
type fakeDev struct {
	*stacktest.Fake
	gone *atomic.Bool
}

func (d fakeDev) Gone() bool { return d.gone.Load() }

// fakeOpener keeps devices by namespace and name; a namespace in gone
// (or missing from nss) does not exist, one in denied may not be entered.
type fakeOpener struct {
	mu      sync.Mutex
	nss     map[string]*atomic.Bool // namespace path → gone
	devs    map[string]stack.NetnsTUNOptions
	denied  bool
	opened  int
	deleted []string
}

func newOpener(nss ...string) *fakeOpener {
	o := &fakeOpener{nss: map[string]*atomic.Bool{}, devs: map[string]stack.NetnsTUNOptions{}}
	for _, ns := range nss {
		o.nss[ns] = new(atomic.Bool)
	}
	return o
}

func (o *fakeOpener) Open(opts stack.NetnsTUNOptions) (Device, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.denied {
		return nil, errors.Join(stack.ErrPermission, errors.New("stack: may not enter "+opts.Netns))
	}
	g := o.nss[opts.Netns]
	if g == nil || g.Load() {
		return nil, fault.NotFound("stack: network namespace %q does not exist", opts.Netns)
	}
	k := opts.Netns + " " + opts.Name
	if _, dup := o.devs[k]; dup {
		return nil, fault.Conflict("stack: %s exists in %s", opts.Name, opts.Netns)
	}
	o.devs[k] = opts
	o.opened++
	return fakeDev{stacktest.New(stacktest.Options{Name: opts.Name, MTU: opts.MTU}), g}, nil
}

func (o *fakeOpener) Adopt(path, name string, _ *zap.Logger) (Device, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	g := o.nss[path]
	if _, ok := o.devs[path+" "+name]; !ok || g == nil || g.Load() {
		return nil, fault.NotFound("stack: no device %s in %s", name, path)
	}
	return fakeDev{stacktest.New(stacktest.Options{Name: name}), g}, nil
}

func (o *fakeOpener) Delete(path, name string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.deleted = append(o.deleted, path+" "+name)
	if _, ok := o.devs[path+" "+name]; !ok {
		return fault.NotFound("stack: no device %s in %s", name, path)
	}
	delete(o.devs, path+" "+name)
	return nil
}

func (o *fakeOpener) has(path, name string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, ok := o.devs[path+" "+name]
	return ok
}

// world is one node's fakes and its state directory.
type world struct {
	g   *fakeGossip
	ip  *fakeIPAM
	rt  *fakeRouter
	op  *fakeOpener
	dir string
}

func newWorld(t *testing.T, nss ...string) *world {
	return &world{
		g:   &fakeGossip{m: map[string]string{}},
		ip:  &fakeIPAM{self: "n1", leases: map[netip.Addr]ipam.Lease{}, next: netip.MustParseAddr("10.30.0.3"), next6: netip.MustParseAddr("fd00:30::3")},
		rt:  &fakeRouter{eps: map[string]fakeEP{}},
		op:  newOpener(nss...),
		dir: t.TempDir(),
	}
}

// manager starts a Manager over w; it is closed with the test.
func (w *world) manager(t *testing.T, edit ...func(*Options)) *Manager {
	t.Helper()
	st, err := statefile.Open(w.dir, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Self: "n1", Gossip: w.g, IPAM: w.ip, Router: w.rt, Networks: func() []Net { return []Net{blue} },
		VTEP: vtep, State: st, Opener: w.op, MTU: 1400, DNS: true, CheckEvery: 20 * time.Millisecond}
	for _, e := range edit {
		e(&o)
	}
	m, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	m.Start()
	t.Cleanup(func() { m.Close() })
	return m
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// An attach leases an address under NODE/NAME, makes the device with it,
// hands it to the router and writes the routes entry; the Info says what
// the namespace needs. A detach undoes every part.
func TestAttachDetach(t *testing.T) {
	w := newWorld(t, "/run/netns/c1")
	m := w.manager(t)
	in, err := m.Attach(context.Background(), Request{Name: "c1", Netns: "/run/netns/c1"})
	must(t, err)
	if in.Addr != netip.MustParsePrefix("10.30.0.3/16") || in.Network != "blue" || in.VNI != 7 || in.IfName != "eth0" || in.MTU != 1400 ||
		in.DNS != netip.MustParseAddr("10.30.0.1") || in.Search != "blue.overlay" || in.FQDN != "c1.blue.overlay." || !in.Attached {
		t.Errorf("Info = %+v", in)
	}
	if ls, _ := w.ip.Lookup("blue", in.Addr.Addr()); ls.Owner != "n1/c1" {
		t.Errorf("lease owner %q, want n1/c1", ls.Owner)
	}
	if v, _ := w.g.get("blue", catalog.EndpointRouteKey("n1", "c1")); v != "10.30.0.3/32 192.0.2.1:4789" {
		t.Errorf("routes entry %q", v)
	}
	opts := w.op.devs["/run/netns/c1 eth0"]
	if !w.rt.has("c1") || opts.MTU != 1400 || len(opts.Addrs) != 1 || opts.Addrs[0] != in.Addr || !opts.Persist {
		t.Errorf("router has c1: %v; device options %+v", w.rt.has("c1"), opts)
	}
	again, err := m.Attach(context.Background(), Request{Name: "c1", Netns: "/run/netns/c1"})
	if err != nil || again.Addr != in.Addr || w.op.opened != 1 {
		t.Errorf("the same attach again: %+v, %v (devices made: %d)", again, err, w.op.opened)
	}
	b, _ := os.ReadFile(filepath.Join(w.dir, File))
	if !strings.Contains(string(b), `"phase": "attached"`) {
		t.Errorf("endpoints.json:\n%s", b)
	}

	must(t, m.Detach("c1"))
	if _, held := w.ip.Lookup("blue", in.Addr.Addr()); held || w.rt.has("c1") || w.op.has("/run/netns/c1", "eth0") {
		t.Errorf("after detach: lease %v, router %v, device %v", held, w.rt.has("c1"), w.op.has("/run/netns/c1", "eth0"))
	}
	if _, ok := w.g.get("blue", "n1/c1"); ok {
		t.Error("the routes entry stayed")
	}
	if len(m.List()) != 0 {
		t.Errorf("List after detach: %v", m.List())
	}
	if err := m.Detach("c1"); !errors.Is(err, fault.ErrNotFound) {
		t.Errorf("second detach: %v, want ErrNotFound", err)
	}
}

// Each mistake is refused with one sentence, and a refused or failed
// attach leaves no lease, device, router entry or record behind.
func TestAttachRefusals(t *testing.T) {
	w := newWorld(t, "/run/netns/c1", "/run/netns/c2")
	m := w.manager(t)
	must2 := func(in Info, err error) Info { t.Helper(); must(t, err); return in }
	c1 := must2(m.Attach(context.Background(), Request{Name: "c1", Netns: "/run/netns/c1"}))
	for _, tt := range []struct {
		req  Request
		kind *fault.Kind
		want string
	}{
		{Request{Name: "C_1", Netns: "/run/netns/c2"}, fault.ErrInvalid, "want a DNS label"},
		{Request{Name: "c2", Netns: "netns/c2"}, fault.ErrInvalid, "absolute path"},
		{Request{Name: "c2"}, fault.ErrInvalid, "a network namespace is required"},
		{Request{Name: "c2", Netns: "/run/netns/c2", IfName: "a-very-long-name-x"}, fault.ErrInvalid, "at most 15"},
		{Request{Name: "c2", Netns: "/run/netns/c2", Network: "red"}, fault.ErrNotFound, "not on network \"red\""},
		{Request{Name: "c1", Netns: "/run/netns/c2"}, fault.ErrConflict, "attached already"},
		{Request{Name: "c2", Netns: "/run/netns/c1"}, fault.ErrConflict, "has interface eth0 of endpoint \"c1\""},
		{Request{Name: "c2", Netns: "/run/netns/c2", IPs: []netip.Addr{c1.Addr.Addr()}}, fault.ErrConflict, "in use by endpoint c1 on node n1"},
		{Request{Name: "c2", Netns: "/run/netns/c2", IPs: []netip.Addr{blue.Addrs[0]}}, fault.ErrConflict, "this node's own address"},
		{Request{Name: "c2", Netns: "/run/netns/c2", IPs: []netip.Addr{netip.MustParseAddr("10.30.0.1")}}, fault.ErrConflict, "DNS address"},
		{Request{Name: "c2", Netns: "/run/netns/c2", IPs: []netip.Addr{netip.MustParseAddr("10.31.0.5")}}, fault.ErrInvalid, "outside network blue"},
		{Request{Name: "c2", Netns: "/run/netns/c2", IPs: []netip.Addr{netip.MustParseAddr("10.30.255.255")}}, fault.ErrInvalid, "broadcast"},
		{Request{Name: "c2", Netns: "/run/netns/gone"}, fault.ErrNotFound, "does not exist"},
	} {
		_, err := m.Attach(context.Background(), tt.req)
		if !errors.Is(err, tt.kind) || err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Attach(%+v) = %v, want a %v error with %q", tt.req, err, tt.kind, tt.want)
		}
	}
	if n := len(w.ip.Leases("blue")); n != 1 {
		t.Errorf("%d leases after the refusals, want c1's alone: %v", n, w.ip.Leases("blue"))
	}
	if len(m.List()) != 1 || w.op.opened != 1 {
		t.Errorf("endpoints %v, devices made %d", m.List(), w.op.opened)
	}
	b, _ := os.ReadFile(filepath.Join(w.dir, File))
	if strings.Contains(string(b), `"c2"`) {
		t.Errorf("a refused attach stayed in endpoints.json:\n%s", b)
	}
}

// A daemon killed during an attach (the record says attaching) or a
// detach leaves, after the next start, neither the device nor the lease;
// an attached endpoint is re-adopted and announced again; a lease of an
// endpoint with no record at all is released; an endpoint whose network
// was left goes.
func TestRestoreAfterCrash(t *testing.T) {
	w := newWorld(t, "/run/netns/a", "/run/netns/b", "/run/netns/c", "/run/netns/d")
	m := w.manager(t)
	ctx := context.Background()
	a, err := m.Attach(ctx, Request{Name: "a", Netns: "/run/netns/a"})
	must(t, err)
	_, err = m.Attach(ctx, Request{Name: "b", Netns: "/run/netns/b"})
	must(t, err)
	_, err = m.Attach(ctx, Request{Name: "c", Netns: "/run/netns/c"})
	must(t, err)
	m.Close()
	// The crash: the state as three interrupted operations left it.
	m.mu.Lock()
	m.eps["b"].rec.Phase = phaseAttaching
	m.eps["c"].rec.Phase = phaseDetaching
	m.mu.Unlock()
	must(t, m.save())
	orphan := netip.MustParseAddr("10.30.9.9")
	w.ip.leases[orphan] = ipam.Lease{Addr: orphan, Owner: "n1/lost", Node: "n1"}
	other := netip.MustParseAddr("10.30.9.10")
	w.ip.leases[other] = ipam.Lease{Addr: other, Owner: "n2", Node: "n2"}
	w.g.m = map[string]string{} // the cluster forgot the entries of the dead node
	w.rt.eps = map[string]fakeEP{}

	m2 := w.manager(t)
	got := m2.List()
	if len(got) != 1 || got[0].Name != "a" || got[0].Addr != a.Addr || !got[0].Attached {
		t.Fatalf("after the restart: %+v, want a alone, attached at %v", got, a.Addr)
	}
	if !w.rt.has("a") || w.rt.has("b") || w.rt.has("c") {
		t.Error("the router carries the wrong endpoints")
	}
	if _, ok := w.g.get("blue", "n1/a"); !ok {
		t.Error("a's routes entry is not announced again")
	}
	for _, n := range []string{"b", "c"} {
		if w.op.has("/run/netns/"+n, "eth0") {
			t.Errorf("%s's device stayed", n)
		}
	}
	leases := map[string]bool{}
	for _, ls := range w.ip.Leases("blue") {
		leases[ls.Owner] = true
	}
	if !leases["n1/a"] || leases["n1/b"] || leases["n1/c"] || leases["n1/lost"] || !leases["n2"] {
		t.Errorf("leases after the restart: %v; want n1/a and n2's only", leases)
	}

	// A start on a node that left blue meanwhile detaches a.
	m2.Close()
	w.rt.eps = map[string]fakeEP{}
	m3 := w.manager(t, func(o *Options) { o.Networks = func() []Net { return nil } })
	if len(m3.List()) != 0 || w.op.has("/run/netns/a", "eth0") {
		t.Errorf("an endpoint of a network left: %v, device %v", m3.List(), w.op.has("/run/netns/a", "eth0"))
	}
}

// After a restart on a node whose lease is not back from the peers yet,
// the endpoint waits (listed, with why) and is re-adopted as soon as the
// owner kicks, not at the next check.
func TestReadoptOnKick(t *testing.T) {
	w := newWorld(t, "/run/netns/c1")
	m := w.manager(t)
	in, err := m.Attach(context.Background(), Request{Name: "c1", Netns: "/run/netns/c1"})
	must(t, err)
	m.Close()
	w.rt.eps = map[string]fakeEP{}
	w.ip.mu.Lock()
	w.ip.leases = map[netip.Addr]ipam.Lease{}
	w.ip.noRange = true
	w.ip.mu.Unlock()
	m2 := w.manager(t, func(o *Options) { o.CheckEvery = time.Hour })
	got := m2.List()
	if len(got) != 1 || got[0].Attached || !strings.Contains(got[0].Error, "lease is not back yet") {
		t.Fatalf("while the lease is away: %+v", got)
	}
	w.ip.mu.Lock()
	w.ip.noRange = false
	w.ip.mu.Unlock()
	m2.Kick()
	testutil.Eventually(t, 2*time.Second, "c1 re-adopted on the kick", func() error {
		if l := m2.List(); len(l) != 1 || !l[0].Attached || l[0].Addr != in.Addr {
			return fmt.Errorf("%+v", l)
		}
		return nil
	})
	if !w.rt.has("c1") {
		t.Error("the router does not carry c1")
	}
}

// A namespace that goes away (the container exited) is detached within a
// few check intervals: lease, entry and router entry go.
func TestNamespaceGone(t *testing.T) {
	w := newWorld(t, "/run/netns/c1")
	m := w.manager(t)
	in, err := m.Attach(context.Background(), Request{Name: "c1", Netns: "/run/netns/c1"})
	must(t, err)
	w.op.nss["/run/netns/c1"].Store(true)
	testutil.Eventually(t, 2*time.Second, "c1 detached", func() error {
		if len(m.List()) != 0 {
			return errors.New("still listed")
		}
		return nil
	})
	if _, held := w.ip.Lookup("blue", in.Addr.Addr()); held || w.rt.has("c1") {
		t.Errorf("lease %v, router %v after the namespace went", held, w.rt.has("c1"))
	}
	if _, ok := w.g.get("blue", "n1/c1"); ok {
		t.Error("the routes entry stayed")
	}
}

// Where this process may not make the device, the helper does; the
// endpoint remembers it, so that its device is deleted through the helper
// too.
func TestHelperFallback(t *testing.T) {
	w := newWorld(t)
	w.op.denied = true
	h := newOpener("/proc/42/ns/net")
	m := w.manager(t, func(o *Options) { o.Helper = h })
	in, err := m.Attach(context.Background(), Request{Name: "r1", Netns: "/proc/42/ns/net"})
	must(t, err)
	if !in.Helper || !h.has("/proc/42/ns/net", "eth0") {
		t.Fatalf("Info %+v; helper has the device: %v", in, h.has("/proc/42/ns/net", "eth0"))
	}
	must(t, m.Detach("r1"))
	if h.has("/proc/42/ns/net", "eth0") || len(w.op.deleted) != 0 {
		t.Errorf("the helper's device stayed, or was deleted directly: %v", w.op.deleted)
	}
	// Without a helper, the permission error is the answer.
	w2 := newWorld(t)
	w2.op.denied = true
	m2 := w2.manager(t)
	if _, err := m2.Attach(context.Background(), Request{Name: "r1", Netns: "/proc/42/ns/net"}); !errors.Is(err, stack.ErrPermission) {
		t.Errorf("no helper: %v, want ErrPermission", err)
	}
	if len(w2.ip.Leases("blue")) != 0 {
		t.Error("a refused attach kept its lease")
	}
}

// A reservation (a runtime's IPAM step) holds an address; an attach that
// asks for it takes it over, and a reservation survives a restart.
func TestReservations(t *testing.T) {
	w := newWorld(t, "/run/netns/c1")
	m := w.manager(t)
	r, err := m.Reserve(context.Background(), "", netip.Addr{}, 0)
	must(t, err)
	if r.Network != "blue" || r.DNS != netip.MustParseAddr("10.30.0.1") || !blue.CIDRs[0].Contains(r.Addr.Addr()) {
		t.Errorf("Reservation = %+v", r)
	}
	if ls, _ := w.ip.Lookup("blue", r.Addr.Addr()); ls.Owner != "n1/:reserved" {
		t.Errorf("reservation lease owner %q", ls.Owner)
	}
	if on := m.OnNetwork("blue"); len(on) != 1 {
		t.Errorf("OnNetwork = %v", on)
	}
	m.Close()
	m = w.manager(t)
	in, err := m.Attach(context.Background(), Request{Name: "c1", Netns: "/run/netns/c1", IPs: []netip.Addr{r.Addr.Addr()}})
	must(t, err)
	if in.Addr != r.Addr {
		t.Errorf("attached at %v, want the reserved %v", in.Addr, r.Addr)
	}
	if ls, _ := w.ip.Lookup("blue", r.Addr.Addr()); ls.Owner != "n1/c1" {
		t.Errorf("lease owner after the take-over %q", ls.Owner)
	}
	must(t, m.Unreserve("blue", r.Addr.Addr())) // taken over already: not an error, and the endpoint keeps it
	if ls, _ := w.ip.Lookup("blue", r.Addr.Addr()); ls.Owner != "n1/c1" {
		t.Errorf("Unreserve of a taken-over reservation released the endpoint's lease (%q)", ls.Owner)
	}
	r2, err := m.Reserve(context.Background(), "blue", netip.MustParseAddr("10.30.7.7"), 0)
	must(t, err)
	must(t, m.Unreserve("blue", r2.Addr.Addr()))
	if _, held := w.ip.Lookup("blue", r2.Addr.Addr()); held {
		t.Error("Unreserve kept the lease")
	}
}

// endpoints.json is read strictly; nothing in it makes decodeState panic.
func FuzzDecodeState(f *testing.F) {
	f.Add([]byte(`{"version":1,"endpoints":[{"name":"c1","network":"blue","vni":7,"cidr":"10.30.0.0/16","netns":"/run/netns/c1","ifname":"eth0","addr":"10.30.0.3","phase":"attached","created":"2026-12-01T00:00:00Z"}],"reservations":[{"network":"blue","addr":"10.30.0.9","cidr":"10.30.0.0/16"}]}`))
	f.Add([]byte(`{"version":1,"endpoints":[{"name":"c1","phase":"attaching"}]}`))
	f.Add([]byte(`{"version":1,"endpoints":[{"name":"c1","network":"dual","vni":7,"cidr":"10.30.0.0/16","netns":"/run/netns/c1","ifname":"eth0","addr":"10.30.0.3","phase":"attached","created":"2026-12-01T00:00:00Z","cidr6":"fd00:30::/64","addr6":"fd00:30::3"}]}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := decodeState(b)
		if err != nil {
			return
		}
		for _, r := range st.Endpoints {
			if !ValidName(r.Name) || (r.Addr.IsValid() && !r.CIDR.Contains(r.Addr)) || (r.Addr6.IsValid() && !r.CIDR6.Contains(r.Addr6)) ||
				r.CIDR6.IsValid() && !r.CIDR6.Addr().Is6() || len(r.prefixes()) != len(r.addrs()) {
				t.Fatalf("accepted a bad record %+v", r)
			}
		}
	})
}
