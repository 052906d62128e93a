package endpoint

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/overlayd/overlayd/internal/fault"
	"github.com/overlayd/overlayd/internal/statefile"
	"github.com/overlayd/overlayd/ipam"
	"github.com/overlayd/overlayd/stack"
)

// Net is a network this node is on, as the Manager needs it.
type Net struct {
	Name  string
	VNI   uint32
	CIDRs []netip.Prefix // one per family, IPv4 first
	Addrs []netip.Addr   // the node's own addresses there, per CIDR
}

// cidr is the network's CIDR of a's family, if it has one.
func (n Net) cidr(a netip.Addr) (netip.Prefix, bool) {
	for _, c := range n.CIDRs {
		if c.Addr().Is4() == a.Is4() {
			return c.Masked(), true
		}
	}
	return netip.Prefix{}, false
}

// Gossip is the replicated store the routes entries go to. Deleting an
// entry that is not there is not an error.
type Gossip interface {
	Put(table, network, key string, value []byte) error
	Delete(table, network, key string) error
}

// IPAM leases the endpoints' addresses (*ipam.IPAM).
type IPAM interface {
	Allocate(ctx context.Context, network, owner string, f ipam.Family) (netip.Addr, error)
	Claim(network string, a netip.Addr, owner string) error
	Release(network string, a netip.Addr) error
	Lookup(network string, a netip.Addr) (ipam.Lease, bool)
	Leases(network string) []ipam.Lease
}

// Router carries the endpoints' packets (the node adapts *router.Router):
// from AddEndpoint on it owns dev and closes it on RemoveEndpoint; on an
// error the caller keeps dev.
type Router interface {
	AddEndpoint(id string, vni uint32, addrs []netip.Addr, dev stack.Device) error
	RemoveEndpoint(id string) error
}

// Device is an endpoint's device as the Manager holds it: a TUN inside
// the namespace (*stack.NetnsTUN) that tells when its namespace went away.
type Device interface {
	stack.Device
	Gone() bool
}

// Opener makes, re-opens and deletes the devices inside namespaces, with
// the errors of stack.OpenNetnsTUN, AdoptNetnsTUN and DeleteNetnsTUN.
type Opener interface {
	Open(stack.NetnsTUNOptions) (Device, error)
	Adopt(path, name string, log *zap.Logger) (Device, error)
	Delete(path, name string) error
}

// TUNMaker makes *stack.NetnsTUN devices: stack's own functions (this
// process) or a helper process (stack.NetnsHelper).
type TUNMaker interface {
	Open(stack.NetnsTUNOptions) (*stack.NetnsTUN, error)
	Adopt(path, name string, log *zap.Logger) (*stack.NetnsTUN, error)
	Delete(path, name string) error
}

// TUNs is the Opener of t.
func TUNs(t TUNMaker) Opener { return tuns{t} }

type tuns struct{ t TUNMaker }

func (o tuns) Open(opts stack.NetnsTUNOptions) (Device, error) {
	d, err := o.t.Open(opts)
	if err != nil {
		return nil, err // never a nil *NetnsTUN in the interface
	}
	return d, nil
}

func (o tuns) Adopt(path, name string, log *zap.Logger) (Device, error) {
	d, err := o.t.Adopt(path, name, log)
	if err != nil {
		return nil, err
	}
	return d, nil
}

func (o tuns) Delete(path, name string) error { return o.t.Delete(path, name) }

// Direct is the Opener of this process: stack's own functions.
var Direct = TUNs(direct{})

type direct struct{}

func (direct) Open(o stack.NetnsTUNOptions) (*stack.NetnsTUN, error) { return stack.OpenNetnsTUN(o) }
func (direct) Adopt(path, name string, log *zap.Logger) (*stack.NetnsTUN, error) {
	return stack.AdoptNetnsTUN(path, name, log)
}
func (direct) Delete(path, name string) error { return stack.DeleteNetnsTUN(path, name) }

// Options configure a Manager. Self, Gossip, IPAM, Router and Networks
// are required.
type Options struct {
	Self     string // this node's name
	Gossip   Gossip
	IPAM     IPAM
	Router   Router
	Networks func() []Net // the joined networks
	VTEP     netip.AddrPort
	// State keeps endpoints.json; nil keeps nothing, and the devices are
	// not persistent (they go when the daemon stops).
	State *statefile.Dir
	// Opener makes the devices; nil: Direct. Helper, if not nil, is tried
	// when Opener is refused for lack of privilege (stack.ErrPermission).
	Opener Opener
	Helper Opener
	// MTU of the endpoints' devices (the attachment's); default 1450.
	MTU int
	// DNS: the networks' DNS addresses are served (EndpointInfo.DNS);
	// Domain is the overlay's DNS domain (default "overlay").
	DNS    bool
	Domain string
	// Changed, if not nil, is called after the endpoints changed.
	Changed func()
	// CheckEvery is how often the namespaces are checked for having gone
	// (and failed re-adoptions retried); default 1 s.
	CheckEvery time.Duration
	Log        *zap.Logger
}

// Info is an endpoint as the Manager has it.
type Info struct {
	Name, Network string
	VNI           uint32
	Netns, IfName string
	Addr          netip.Prefix   // with the network's prefix length: the first of Addrs
	Addrs         []netip.Prefix // one per family of the network, IPv4 first
	MTU           int
	Routes        []netip.Prefix
	DNS           netip.Addr   // zero when DNS is off: the first of DNSAddrs
	DNSAddrs      []netip.Addr // the network's DNS address per family; none when DNS is off
	Search, FQDN  string
	Helper        bool // made through the helper process
	Created       time.Time
	Attached      bool   // carried by the router now
	Error         string // why not, when not
}

// Reservation is an address leased ahead of its endpoint (one family: a
// dual-stack endpoint's runtime reserves one of each).
type Reservation struct {
	Network string
	Addr    netip.Prefix
	DNS     netip.Addr // the network's DNS address (Docker's gateway)
}

// endpoint is one attached (or being re-adopted) endpoint.
type endpoint struct {
	rec Record
	dev Device // nil while not attached
	err string // why not attached, while not
}

// Manager attaches and detaches endpoints. Safe for concurrent use.
type Manager struct {
	o   Options
	log *zap.Logger

	opMu sync.Mutex // serialises attach, detach, reserve and the checks (each writes endpoints.json)
	mu   sync.Mutex // guards eps and res (short reads and swaps)
	eps  map[string]*endpoint
	res  map[resKey]Reservation

	stop    chan struct{}
	kick    chan struct{} // Kick
	done    chan struct{}
	started bool // Start ran (under opMu)
	once    sync.Once
}

// resKey names a reservation.
type resKey struct {
	network string
	addr    netip.Addr
}

// New builds a Manager; Start restores the endpoints kept in the state
// directory.
func New(o Options) (*Manager, error) {
	if o.Self == "" || o.Gossip == nil || o.IPAM == nil || o.Router == nil || o.Networks == nil {
		return nil, fault.Invalid("endpoint: Self, Gossip, IPAM, Router and Networks are required")
	}
	if o.Opener == nil {
		o.Opener = Direct
	}
	if o.MTU == 0 {
		o.MTU = 1450
	}
	if o.Domain == "" {
		o.Domain = "overlay"
	}
	o.Domain = strings.Trim(o.Domain, ".")
	if o.CheckEvery <= 0 {
		o.CheckEvery = time.Second
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	return &Manager{
		o: o, log: o.Log.Named("endpoint"),
		eps: map[string]*endpoint{}, res: map[resKey]Reservation{},
		stop: make(chan struct{}), kick: make(chan struct{}, 1), done: make(chan struct{}),
	}, nil
}

// Start restores the endpoints of endpoints.json (re-adopting their
// devices, finishing the undo of an attach or detach a crash cut short)
// and releases this node's endpoint leases that no endpoint holds, then
// checks the namespaces every CheckEvery until Close.
func (m *Manager) Start() {
	m.restore()
	m.opMu.Lock()
	m.started = true
	m.opMu.Unlock()
	go m.loop()
}

// Close stops the checks. The devices belong to the router, which closes
// them (a persistent one stays for the next start); the routes entries go
// with the node's leaving the cluster. Safe twice.
func (m *Manager) Close() error {
	m.once.Do(func() {
		close(m.stop)
		m.opMu.Lock()
		started := m.started
		m.opMu.Unlock()
		if !started {
			return
		}
		select {
		case <-m.done:
		case <-time.After(10 * time.Second): // a check stuck in a helper: its own timeout ends it
		}
	})
	return nil
}

func (m *Manager) loop() {
	defer close(m.done)
	t := time.NewTicker(m.o.CheckEvery)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			m.check()
		case <-m.kick:
			if m.waiting() {
				m.check()
			}
		}
	}
}

// Kick tells the Manager that the cluster's tables changed: an endpoint
// whose re-adoption waits for its lease to come back from the peers
// (after a restart) is retried now rather than at the next check. It
// never blocks.
func (m *Manager) Kick() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// waiting reports whether an endpoint waits to be re-adopted.
func (m *Manager) waiting() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range m.eps {
		if e.dev == nil {
			return true
		}
	}
	return false
}

// List returns the endpoints, sorted by name.
func (m *Manager) List() []Info {
	m.mu.Lock()
	out := make([]Info, 0, len(m.eps))
	for _, e := range m.eps {
		out = append(out, m.info(e))
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b Info) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Get returns one endpoint; an unknown name is an ErrNotFound.
func (m *Manager) Get(name string) (Info, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.eps[name]
	if e == nil {
		return Info{}, fault.NotFound("no endpoint %q on this node", name)
	}
	return m.info(e), nil
}

// Addrs are the addresses of the endpoints the router carries now, by
// network name: this node's, for the balancer (a backend there is
// switched locally).
func (m *Manager) Addrs() map[string][]netip.Addr {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string][]netip.Addr{}
	for _, e := range m.eps {
		if e.dev != nil {
			out[e.rec.Network] = append(out[e.rec.Network], e.rec.addrs()...)
		}
	}
	return out
}

// OnNetwork names the endpoints (and reservations) on network, sorted: a
// network with endpoints may not be left.
func (m *Manager) OnNetwork(network string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, e := range m.eps {
		if e.rec.Network == network {
			out = append(out, e.rec.Name)
		}
	}
	for k := range m.res {
		if k.network == network {
			out = append(out, "reserved "+k.addr.String())
		}
	}
	slices.Sort(out)
	return out
}

// info describes e; m.mu is held.
func (m *Manager) info(e *endpoint) Info {
	r := e.rec
	in := Info{
		Name: r.Name, Network: r.Network, VNI: r.VNI, Netns: r.Netns, IfName: r.IfName,
		Addr: netip.PrefixFrom(r.Addr, r.CIDR.Bits()), Addrs: r.prefixes(), MTU: m.o.MTU, Routes: r.routes(),
		Search: r.Network + "." + m.o.Domain, FQDN: r.Name + "." + r.Network + "." + m.o.Domain + ".",
		Helper: r.Helper, Created: r.Created, Attached: e.dev != nil, Error: e.err,
	}
	if m.o.DNS {
		in.DNS = ipam.DNSAddr(r.CIDR)
		for _, c := range r.cidrs() {
			in.DNSAddrs = append(in.DNSAddrs, ipam.DNSAddr(c))
		}
	}
	return in
}

// network finds the joined network name (empty: the only one).
func (m *Manager) network(name string) (Net, error) {
	nets := m.o.Networks()
	if name == "" {
		switch len(nets) {
		case 1:
			return nets[0], nil
		case 0:
			return Net{}, fault.NotFound("this node is on no network; join one first (overlayd network join NAME)")
		default:
			names := make([]string, len(nets))
			for i, n := range nets {
				names[i] = n.Name
			}
			return Net{}, fault.Invalid("this node is on several networks (%s): say which with --network", strings.Join(names, ", "))
		}
	}
	for _, n := range nets {
		if n.Name == name {
			return n, nil
		}
	}
	return Net{}, fault.NotFound("this node is not on network %q; join it first (overlayd network join %s)", name, name)
}

// changed tells the owner.
func (m *Manager) changed() {
	if m.o.Changed != nil {
		m.o.Changed()
	}
}
