package service

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/overlayd/overlayd/catalog"
	"github.com/overlayd/overlayd/gossip"
	"github.com/overlayd/overlayd/internal/statefile"
	"github.com/overlayd/overlayd/ipam"
	"github.com/overlayd/overlayd/lb"
)

// Gossip is the part of the gossip tables the manager reads and writes.
type Gossip interface {
	catalog.Reader
	Name() string
	Get(table, network, key string) (gossip.Entry, bool)
	Put(table, network, key string, value []byte) error
	Delete(table, network, key string) error
	Watch(table, network string) (<-chan gossip.Event, func())
}

var _ Gossip = (*gossip.Gossip)(nil)

// IPAM is the part of the address allocator the manager uses for VIPs.
type IPAM interface {
	Network(name string) (ipam.Network, bool)
	Lookup(network string, a netip.Addr) (ipam.Lease, bool)
	AllocateVIP(ctx context.Context, network, owner string, f ipam.Family) (netip.Addr, error)
	Release(network string, a netip.Addr) error
}

var _ IPAM = (*ipam.IPAM)(nil)

// Setter takes the balancer's services as one snapshot: a service it
// refuses is named in a *lb.SetError and left out alone.
type Setter interface {
	Set([]lb.Service) error
}

// Figures are the balancer's counters that 'service ls' shows beside each
// service and backend.
type Figures interface {
	Stats() lb.Stats
	Flows() []lb.FlowInfo
}

var (
	_ Setter  = (*lb.Balancer)(nil)
	_ Figures = (*lb.Balancer)(nil)
)

// Network is a network this node has joined, with its addresses there
// (one per CIDR, IPv4 first).
type Network struct {
	Name  string
	VNI   uint32
	CIDRs []netip.Prefix
	Addrs []netip.Addr
}

// Route is one route of the router's table, as far as a backend's
// reachability goes: Owner is the node it leads to, or "static".
type Route struct {
	Prefix netip.Prefix
	VNI    uint32
	Owner  string
}

// View is what the balancer's services depend on besides the service
// tables: the joined networks, this node's other addresses, its
// endpoints' addresses and the router's routes. The live members come
// with the snapshot.
type View struct {
	Networks []Network
	Own      []netip.Addr // this node's addresses besides those of Networks
	// Local are the addresses of the endpoints this node carries, by
	// network name: reachable, and balanced to (the router switches a
	// DNATed packet to a local endpoint), unlike Own.
	Local  map[string][]netip.Addr
	Routes []Route
}

// Options configure a Manager. Gossip and IPAM are required.
type Options struct {
	Gossip Gossip
	IPAM   IPAM
	// State is the state directory, where this node's entries of the
	// service tables are kept across a restart (StateFile); nil keeps
	// nothing.
	State *statefile.Dir
	// Networks returns the joined networks, sorted by name; nil: none.
	Networks func() []Network
	// Routes returns the router's routes; nil: none.
	Routes func() []Route
	// Own are this node's addresses outside the joined networks (a
	// static network's).
	Own []netip.Addr
	// Local returns the addresses of this node's endpoints by network
	// (View.Local); nil: none.
	Local func() map[string][]netip.Addr
	// Figures gives the balancer's counters; nil shows none.
	Figures Figures
	// Dial opens a health check's connection to a backend; nil dials
	// with the host's sockets.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Changed, when set, is called after every change of this node's
	// entries (a write here or a health change): the balancer's services
	// are to be rebuilt.
	Changed func()
	// Checked, when set, is called after every round of health checks.
	Checked func()
	// Log receives the manager's logs; nil: none.
	Log *zap.Logger
}

// Health checking of this node's backends.
const (
	checkInterval = 2 * time.Second
	checkTimeout  = time.Second
	checkFailures = 2 // consecutive failed probes before a backend is unhealthy
)

// vipTimeout bounds how long a create waits for a VIP from IPAM.
const vipTimeout = 15 * time.Second

// Manager keeps this node's services and backends. Its methods are safe
// for concurrent use; after Close, a write still goes to the tables but
// nothing waits and no health check runs.
type Manager struct {
	o   Options
	log *zap.Logger

	opMu sync.Mutex // serialises the writes of this node's entries

	rmu      sync.Mutex           // guards rejected
	rejected map[[2]string]string // network, service → why this node does not balance it (last Apply)

	fails map[string]int // backend key (network + "\x00" + key) → consecutive failed probes; checker only

	startOnce sync.Once
	closeOnce sync.Once
	stop      chan struct{}
	wg        sync.WaitGroup

	// waiting, set by this package's tests before an operation, is
	// called when AddBackend starts waiting for an unknown service.
	waiting func(network, name string)
}

// New returns a manager; nothing runs until Start.
func New(o Options) *Manager {
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.Networks == nil {
		o.Networks = func() []Network { return nil }
	}
	if o.Routes == nil {
		o.Routes = func() []Route { return nil }
	}
	return &Manager{o: o, log: o.Log.Named("services"), rejected: map[[2]string]string{}, fails: map[string]int{},
		stop: make(chan struct{})}
}

// Start puts back the entries kept in the state (in the networks joined
// now) and starts checking this node's backends. Only the first call
// does anything.
func (m *Manager) Start() {
	m.startOnce.Do(func() {
		m.restore()
		m.wg.Add(1)
		go func() { defer m.wg.Done(); m.checkLoop() }()
	})
}

// Close stops the health checks and any wait for a backend, and waits
// for them. Safe to call twice.
func (m *Manager) Close() error {
	m.closeOnce.Do(func() {
		m.startOnce.Do(func() {}) // a Start after Close starts nothing
		close(m.stop)
		m.wg.Wait()
	})
	return nil
}

// View returns the view of now: the joined networks, own addresses and routes.
func (m *Manager) View() View {
	v := View{Networks: m.o.Networks(), Own: m.o.Own, Routes: m.o.Routes()}
	if m.o.Local != nil {
		v.Local = m.o.Local()
	}
	return v
}

// changed is called after every write of this node's entries.
func (m *Manager) changed() {
	m.save()
	m.notify()
}

func (m *Manager) notify() {
	if m.o.Changed != nil {
		m.o.Changed()
	}
}

// figures returns the balancer's counters by network, service and
// backend, and its stats.
func (m *Manager) figures() (map[[3]string]int, lb.Stats) {
	flows := map[[3]string]int{}
	if m.o.Figures == nil {
		return flows, lb.Stats{}
	}
	for _, f := range m.o.Figures.Flows() {
		flows[[3]string{f.Network, serviceOf(f.Service), f.BackendID}]++
	}
	return flows, m.o.Figures.Stats()
}
