package network

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/overlayd/overlayd/gossip"
	"github.com/overlayd/overlayd/internal/statefile"
	"github.com/overlayd/overlayd/ipam"
)

// Joined is a network this node is attached to, with its addresses (one
// per family of the network, in the order of its CIDRs: IPv4 first); it
// is also the entry of networks.json.
type Joined struct {
	Name  string
	CIDRs []netip.Prefix
	VNI   uint32
	Addrs []netip.Addr
}

// Prefixes are the node's addresses with the network's prefix lengths.
func (j Joined) Prefixes() []netip.Prefix {
	out := make([]netip.Prefix, len(j.Addrs))
	for i, a := range j.Addrs {
		out[i] = netip.PrefixFrom(a, j.CIDRs[i].Bits())
	}
	return out
}

// Host are the node's addresses as host prefixes (/32, /128): what its
// route entry says.
func (j Joined) Host() []netip.Prefix {
	out := make([]netip.Prefix, len(j.Addrs))
	for i, a := range j.Addrs {
		out[i] = netip.PrefixFrom(a, a.BitLen())
	}
	return out
}

// String is the addresses with prefixes, "10.1.0.2/24,fd00:10::2/64".
func (j Joined) String() string { return ipam.JoinCIDRs(j.Prefixes()) }

// joinedJSON is networks.json's form of a Joined: "cidr" and "addr" are
// the network's first family (IPv4, or IPv6 on an IPv6 network), as a
// node without IPv6 wrote them; "cidr6" and "addr6" the IPv6 of a
// dual-stack network.
type joinedJSON struct {
	Name  string        `json:"name"`
	CIDR  netip.Prefix  `json:"cidr"`
	VNI   uint32        `json:"vni"`
	Addr  netip.Addr    `json:"addr"`
	CIDR6 *netip.Prefix `json:"cidr6,omitempty"`
	Addr6 *netip.Addr   `json:"addr6,omitempty"`
}

// MarshalJSON writes j in networks.json's form.
func (j Joined) MarshalJSON() ([]byte, error) {
	if len(j.CIDRs) == 0 || len(j.CIDRs) != len(j.Addrs) || len(j.CIDRs) > 2 {
		return nil, fmt.Errorf("network %q: %d CIDRs and %d addresses", j.Name, len(j.CIDRs), len(j.Addrs))
	}
	v := joinedJSON{Name: j.Name, CIDR: j.CIDRs[0], VNI: j.VNI, Addr: j.Addrs[0]}
	if len(j.CIDRs) == 2 {
		v.CIDR6, v.Addr6 = &j.CIDRs[1], &j.Addrs[1]
	}
	return json.Marshal(v)
}

// UnmarshalJSON reads networks.json's form strictly; the addresses must
// lie in their CIDRs, IPv4 first.
func (j *Joined) UnmarshalJSON(b []byte) error {
	var v joinedJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return err
	}
	*j = Joined{Name: v.Name, CIDRs: []netip.Prefix{v.CIDR}, VNI: v.VNI, Addrs: []netip.Addr{v.Addr}}
	if (v.CIDR6 == nil) != (v.Addr6 == nil) {
		return fmt.Errorf("network %q: cidr6 and addr6 go together", v.Name)
	}
	if v.CIDR6 != nil {
		j.CIDRs, j.Addrs = append(j.CIDRs, *v.CIDR6), append(j.Addrs, *v.Addr6)
	}
	cidrs, err := ipam.CheckCIDRs(j.CIDRs)
	if err != nil || !slices.Equal(cidrs, j.CIDRs) {
		return fmt.Errorf("network %q: bad CIDRs %v", v.Name, j.CIDRs)
	}
	for i, a := range j.Addrs {
		if !j.CIDRs[i].Contains(a) {
			return fmt.Errorf("network %q: %v is outside %v", v.Name, a, j.CIDRs[i])
		}
	}
	return nil
}

// Options configure a Manager.
type Options struct {
	// Gossip carries the networks' tables; the Manager builds its IPAM
	// on it. Required; the caller closes it after the Manager.
	Gossip *gossip.Gossip
	// VTEP is the underlay address this node's route entries name.
	VTEP netip.AddrPort
	// State keeps the joined networks and the IPAM state; nil: nothing is
	// kept across restarts.
	State *statefile.Dir
	// Static is the node's static network (--addr, --vni), if any: no
	// network may overlap it or take its VNI.
	Static    []netip.Prefix
	StaticVNI uint32
	// CreateWindow is how long a create waits, after writing the network,
	// for a creation of the same name made at the same moment on another
	// node to arrive: a few times the time a delta takes to reach every
	// node.
	CreateWindow time.Duration
	// Kick, if not nil, is sent to (never blocking) when the joined
	// networks change and when a joined network's routes, ranges or
	// leases change: the owner rebuilds its routes then.
	Kick chan<- struct{}
	// Apply, if not nil, is called after Join or Leave changed the joined
	// networks (Joined has the new set), with the operations lock held:
	// the owner gives its router and attachment the new addresses. A join
	// whose Apply fails is undone.
	Apply func() error
	// Log is the node's logger: the Manager logs to Log.Named("network"),
	// its IPAM to Log.Named("ipam"). Nil: no logs.
	Log *zap.Logger
}

// hooks let the package's tests stop an operation at a chosen point; nil
// fields do nothing. Tests set them before the operation starts.
type hooks struct {
	// beforeCreate runs in Create after its checks, before it writes (the
	// operations lock held).
	beforeCreate func(name string)
	// waitingNetwork runs when Join starts waiting for a network it does
	// not know yet (the operations lock not held).
	waitingNetwork func(name string)
}

// Manager keeps the networks this node is attached to. Its methods may be
// called concurrently.
type Manager struct {
	opts Options
	g    *gossip.Gossip
	ipam *ipam.IPAM
	log  *zap.Logger
	self string

	hooks hooks // tests only

	opMu sync.Mutex // serialises create, join and leave (never held while waiting on gossip)

	refMu   sync.Mutex               // guards refused and pending
	refused map[string]uint64        // route entries refused, by reason (each entry version once)
	pending map[refusalKey]time.Time // entry versions refused now → since when

	mu         sync.Mutex // guards joined, watches, recovering and redefined
	joined     map[string]Joined
	watches    map[string]func() // network → stop of its catalog.Watch of routes, ranges and leases
	recovering []Joined          // joined networks whose IPAM state file was lost (checkRecovering)
	redefined  map[string]string // joined network → the definition it was last reported lost to (checkDefinitions)

	savedMu sync.Mutex        // guards saved
	saved   map[string][]byte // network → the IPAM export last written to its state file

	stop      chan struct{}
	closeOnce sync.Once
}

// New builds a Manager: it restores the joined networks and the IPAM
// state kept in opts.State and takes part in those networks' IPAM again.
// Nothing is announced until Start.
func New(opts Options) (_ *Manager, err error) {
	m := &Manager{
		opts:    opts,
		g:       opts.Gossip,
		self:    opts.Gossip.Name(),
		refused: map[string]uint64{},
		pending: map[refusalKey]time.Time{},
		joined:  map[string]Joined{},
		watches: map[string]func(){},
		stop:    make(chan struct{}),
	}
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	m.opts.Log, m.log = opts.Log, opts.Log.Named("network")
	var files map[string]ipamFile
	if opts.State != nil {
		if files, err = m.loadIPAM(); err != nil {
			return nil, err
		}
		joined, fs := m.loadJoined()
		if fs == statefile.Bad {
			// The node's own leases say where it was.
			joined = joinedFromIPAM(m.self, files)
			names := make([]string, len(joined))
			for i, j := range joined {
				names[i] = j.Name + "=" + j.String()
			}
			m.log.Warn("joined networks recovered from the ipam state files", zap.Strings("networks", names))
			if err := m.writeJoined(joined); err != nil {
				return nil, err
			}
		}
		for _, j := range joined {
			m.joined[j.Name] = j
			if _, ok := files[j.Name]; !ok {
				m.recovering = append(m.recovering, j)
			}
		}
	}
	ipamOpts := ipam.Options{Logger: opts.Log}
	if opts.State != nil {
		ipamOpts.OnChange = m.persistIPAM
	}
	if m.ipam, err = ipam.New(m.g, ipamOpts); err != nil {
		return nil, err
	}
	for _, f := range files {
		if err := m.ipam.Import(f.raw); err != nil {
			m.ipam.Close()
			return nil, fmt.Errorf("node: state file %s: %w", opts.State.File(ipamFileName(f.state.Network.Name)), err)
		}
	}
	for _, j := range m.recovering {
		// networks.json lists it, its ipam file is gone: take part in its
		// IPAM again; gossip brings this node's ranges and leases back
		// from the peers (checkRecovering says when).
		opts.State.ReportMissing(ipamFileName(j.Name), "networks.json lists network "+j.Name,
			"this node's ranges and leases come back from its peers (they are replicated); it keeps "+j.String())
		if err := m.ipam.Participate(j.Name); err != nil {
			m.ipam.Close()
			return nil, err
		}
	}
	return m, nil
}

// IPAM is the address allocator the Manager keeps (services allocate
// their VIPs from it).
func (m *Manager) IPAM() *ipam.IPAM { return m.ipam }

// Start announces the joined networks: the node takes part in each, its
// route entry is written and the network's tables are watched. ctx bounds
// the start.
func (m *Manager) Start(ctx context.Context) error {
	for _, j := range m.Joined() {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := m.announce(j); err != nil {
			return err
		}
	}
	return nil
}

// Close stops the watches and the IPAM and ends the waits of operations
// in progress. The gossip is the caller's to close, after. Safe twice.
func (m *Manager) Close() error {
	m.closeOnce.Do(func() {
		close(m.stop)
		m.mu.Lock()
		for _, cancel := range m.watches {
			cancel()
		}
		clear(m.watches)
		m.mu.Unlock()
		m.ipam.Close()
	})
	return nil
}

// Joined returns the joined networks sorted by name.
func (m *Manager) Joined() []Joined {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Joined, 0, len(m.joined))
	for _, j := range m.joined {
		out = append(out, j)
	}
	slices.SortFunc(out, func(a, b Joined) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// kick tells the owner to rebuild its routes.
func (m *Manager) kick() {
	if m.opts.Kick == nil {
		return
	}
	select {
	case m.opts.Kick <- struct{}{}:
	default:
	}
}

// Maintain is the Manager's periodic work, called by its owner once in a
// while (node: every tick of its loop): it follows the networks whose
// IPAM state file was lost, writes a network's state file again when the
// node's lease shows in the tables and the file differs, and says when a
// joined network was defined again elsewhere.
func (m *Manager) Maintain() {
	m.checkRecovering()
	m.keepIPAM()
	m.checkDefinitions()
}
