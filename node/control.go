package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/catalog"
	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/gossip"
	"github.com/overlayd/overlayd/internal/fault"
	"github.com/overlayd/overlayd/ipam"
	"github.com/overlayd/overlayd/router"
	"github.com/overlayd/overlayd/stack"
	"github.com/overlayd/overlayd/vxlan"
)

// joinTimeout bounds how long a join waits for an address range.
const joinTimeout = 15 * time.Second

// unknownWait is how long a join waits for a network it does not know yet.
const unknownWait = 2 * time.Second

// joinedNet is a network this node is attached to, with its address.
type joinedNet struct {
	Name string       `json:"name"`
	CIDR netip.Prefix `json:"cidr"`
	VNI  uint32       `json:"vni"`
	Addr netip.Addr   `json:"addr"`
}

func (j joinedNet) prefix() netip.Prefix { return netip.PrefixFrom(j.Addr, j.CIDR.Bits()) }

// control is the node's control plane: gossip membership, IPAM, the
// learned routes, and the networks the node is attached to.
type control struct {
	n     *Node
	g     *gossip.Gossip
	ipam  *ipam.IPAM
	log   *zap.Logger
	state *stateDir // nil: nothing is kept
	vtep  netip.AddrPort
	seeds []string

	opMu sync.Mutex // serialises create, join and leave (never held while waiting on gossip)

	// createWindow is how long a create waits, after writing the network,
	// for a creation of the same name made at the same moment on another
	// node to arrive (see confirmCreated).
	createWindow time.Duration
	hooks        controlHooks

	refMu   sync.Mutex               // guards refused and pending
	refused map[string]uint64        // route entries refused, by reason (each entry version once)
	pending map[refusalKey]time.Time // entry versions refused now → since when

	mu         sync.Mutex // guards joined, watches and recovering
	joined     map[string]joinedNet
	watches    map[string]func() // network → stop of its catalog.Watch of routes, ranges and leases
	recovering []joinedNet       // joined networks whose IPAM state file was lost (checkRecovering)
	redefined  map[string]string // joined network → the definition it was last reported lost to (checkDefinitions)

	savedMu sync.Mutex        // guards saved
	saved   map[string][]byte // network → the IPAM export last written to its state file

	kick      chan struct{}
	stop      chan struct{}
	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup
	cancel    context.CancelFunc
}

// controlHooks let tests stop the control plane at a chosen point; nil
// fields do nothing.
type controlHooks struct {
	beforeCreate   func(name string) // createNetwork, after its checks, before it writes (opMu held)
	waitingNetwork func(name string) // joinNetwork starts waiting for a network it does not know (opMu not held)
}

// Create windows by gossip profile: a few times the time a delta takes to
// reach every node (about a second at the default profile, tens of
// milliseconds at the test one).
const (
	createWindowDefault = 2 * time.Second
	createWindowTest    = 750 * time.Millisecond
)

// newControl builds the control plane from cfg; nothing is sent until
// start. It restores the state kept in the state directory.
func newControl(n *Node, cfg config.Config) (_ *control, err error) {
	c := &control{
		n:       n,
		log:     n.log.Named("control"),
		joined:  map[string]joinedNet{},
		watches: map[string]func(){},
		kick:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		refused: map[string]uint64{},
		pending: map[refusalKey]time.Time{},

		createWindow: createWindowDefault,
	}
	if cfg.Gossip.Profile == gossip.ProfileTest {
		c.createWindow = createWindowTest
	}
	for _, s := range cfg.Gossip.Join {
		ap, _ := config.ParseAddrPort(s, config.DefaultGossipPort)
		c.seeds = append(c.seeds, ap.String())
	}
	var keys [][]byte
	if cfg.Gossip.KeyFile != "" {
		if keys, err = gossip.LoadKeyFile(cfg.Gossip.KeyFile); err != nil {
			return nil, err
		}
	}
	if c.vtep, err = advertiseVTEP(cfg, n.ul.LocalAddr(), c.seeds); err != nil {
		return nil, err
	}
	var ipamFiles map[string]ipamFile
	if cfg.StateDir != "" {
		if c.state, err = openStateDir(cfg.StateDir, c.log); err != nil {
			return nil, err
		}
		if ipamFiles, err = c.state.loadIPAM(); err != nil {
			return nil, err
		}
		joined, fs := c.state.loadJoined()
		if fs == stateBad {
			// The node's own leases say where it was.
			joined = joinedFromIPAM(cfg.Name, ipamFiles)
			names := make([]string, len(joined))
			for i, j := range joined {
				names[i] = j.Name + "=" + j.prefix().String()
			}
			c.log.Warn("joined networks recovered from the ipam state files", zap.Strings("networks", names))
			if err := c.state.saveJoined(joined); err != nil {
				return nil, err
			}
		}
		for _, j := range joined {
			c.joined[j.Name] = j
			if _, ok := ipamFiles[j.Name]; !ok {
				c.recovering = append(c.recovering, j)
			}
		}
	}
	c.g, err = gossip.New(gossip.Options{
		Name:     cfg.Name,
		BindAddr: cfg.Gossip.Listen.String(),
		Meta:     gossip.Meta{VTEP: c.vtep, Version: Version},
		Keys:     keys,
		Profile:  cfg.Gossip.Profile,
		Logger:   n.log,

		Transport: n.seams.Transport, // nil but in tests (nodetest.WithTransport)
	})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			c.g.Close()
		}
	}()
	ipamOpts := ipam.Options{Logger: n.log}
	if c.state != nil {
		ipamOpts.OnChange = c.persistIPAM
	}
	if c.ipam, err = ipam.New(c.g, ipamOpts); err != nil {
		return nil, err
	}
	for _, f := range ipamFiles {
		if err := c.ipam.Import(f.raw); err != nil {
			c.ipam.Close()
			return nil, fmt.Errorf("node: state file %s: %w", c.state.ipamPath(f.state.Network.Name), err)
		}
	}
	for _, j := range c.recovering {
		// networks.json lists it, its ipam file is gone: take part in its
		// IPAM again; gossip brings this node's ranges and leases back
		// from the peers (checkRecovering says when).
		c.state.reportMissing(c.state.ipamFile(j.Name), "networks.json lists network "+j.Name,
			"this node's ranges and leases come back from its peers (they are replicated); it keeps "+j.prefix().String())
		if err := c.ipam.Participate(j.Name); err != nil {
			c.ipam.Close()
			return nil, err
		}
	}
	return c, nil
}

// checkDefinitions says, once per change, when a joined network's
// definition is no longer the one this node joined: two parts of a
// partitioned cluster each created the name, and when they merged the
// other definition won (confirmCreated catches the race only while both
// are connected). The node's address belongs to the definition that lost;
// it keeps it until told otherwise, and says what to do.
func (c *control) checkDefinitions() {
	for _, j := range c.joinedList() {
		nw, ok := c.ipam.Network(j.Name)
		if !ok {
			continue // not here (yet): a restart before the sync
		}
		c.mu.Lock()
		if c.redefined == nil {
			c.redefined = map[string]string{}
		}
		was := c.redefined[j.Name]
		now := ""
		if nw.CIDR != j.CIDR || nw.VNI != j.VNI {
			now = fmt.Sprintf("%v VNI %d by %s", nw.CIDR, nw.VNI, nw.Creator)
		}
		c.redefined[j.Name] = now
		c.mu.Unlock()
		if now != "" && now != was {
			c.log.Error("a joined network was defined again elsewhere and that definition won; this node's address is from the one that lost: leave the network and join it again",
				zap.String("network", j.Name), zap.Stringer("joined_cidr", j.CIDR), zap.Uint32("joined_vni", j.VNI), zap.Stringer("addr", j.prefix()),
				zap.Stringer("cidr", nw.CIDR), zap.Uint32("vni", nw.VNI), zap.String("creator", nw.Creator))
		}
	}
}

// checkRecovering follows the joined networks whose IPAM state was lost
// (newControl): once the peers have given back this node's lease of its
// address, the state file is written again; if another node holds the
// address now, that is said, once. Called by the loop.
func (c *control) checkRecovering() {
	c.mu.Lock()
	rec := c.recovering
	c.mu.Unlock()
	if len(rec) == 0 {
		return
	}
	var still []joinedNet
	self := c.g.Name()
	for _, j := range rec {
		ls, ok := c.ipam.Lookup(j.Name, j.Addr)
		switch {
		case ok && ls.Node == self:
			c.log.Info("IPAM state recovered from the peers", zap.String("network", j.Name), zap.Stringer("addr", j.prefix()))
			c.persistIPAM(j.Name)
		case ok:
			c.log.Error("this node's address is leased to another node now; leave the network and join it again for a new address",
				zap.String("network", j.Name), zap.Stringer("addr", j.prefix()), zap.String("lease_holder", ls.Node))
		default:
			// No peer has the lease (it had not reached one when the file
			// was lost): make it again if the address is in a range of
			// this node's; otherwise wait for the peers' state.
			if err := c.ipam.Claim(j.Name, j.Addr, self); err == nil {
				c.log.Warn("IPAM lease made again from networks.json (no peer had it)", zap.String("network", j.Name), zap.Stringer("addr", j.prefix()))
				c.persistIPAM(j.Name)
				continue
			}
			still = append(still, j)
		}
	}
	c.mu.Lock()
	c.recovering = still
	c.mu.Unlock()
}

// advertiseVTEP is the VTEP peers send VXLAN to: the listen address, with
// the gossip address's IP (or the IP that routes to the first seed) when
// the listen IP is unspecified.
func advertiseVTEP(cfg config.Config, local netip.AddrPort, seeds []string) (netip.AddrPort, error) {
	if !local.Addr().IsUnspecified() {
		return local, nil
	}
	ip := cfg.Gossip.Listen.Addr()
	if ip.IsUnspecified() && len(seeds) > 0 {
		if c, err := net.Dial("udp", seeds[0]); err == nil {
			if ua, ok := c.LocalAddr().(*net.UDPAddr); ok {
				ip, _ = netip.AddrFromSlice(ua.IP)
				ip = ip.Unmap()
			}
			c.Close()
		}
	}
	if !ip.IsValid() || ip.IsUnspecified() {
		return netip.AddrPort{}, fmt.Errorf("node: the VTEP %v has no IP peers could send to; give --listen IP:PORT (or --gossip IP:PORT) with this host's underlay IP", local)
	}
	return netip.AddrPortFrom(ip, local.Port()), nil
}

// nameMAC is the tunnel MAC of a node with no static address: locally
// administered, from a hash of its name.
func nameMAC(name string) vxlan.MAC {
	h := fnv.New32a()
	h.Write([]byte(name))
	s := h.Sum32()
	return vxlan.MAC{0x0a, 0x59, byte(s >> 24), byte(s >> 16), byte(s >> 8), byte(s)}
}

// joinedList returns the joined networks sorted by name.
func (c *control) joinedList() []joinedNet {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]joinedNet, 0, len(c.joined))
	for _, j := range c.joined {
		out = append(out, j)
	}
	slices.SortFunc(out, func(a, b joinedNet) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// start announces the joined networks, joins the seeds (in the background,
// retrying) and runs the loop that turns table changes into route swaps.
// ctx bounds the start only: the background work runs until close.
func (c *control) start(ctx context.Context) error {
	for _, j := range c.joinedList() {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := c.announce(j); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// The seeds' join lives as long as the control plane: close cancels it.
	ctx, c.cancel = context.WithCancel(context.Background())
	mch, mcancel := c.g.WatchMembers()
	nch, ncancel := ipam.WatchNetworks(c.g)
	c.wg.Add(3)
	go func() { defer c.wg.Done(); forward(c, mch, mcancel) }()
	go func() { defer c.wg.Done(); forward(c, nch, ncancel) }()
	go func() { defer c.wg.Done(); c.loop() }()
	c.startServices()
	if len(c.seeds) > 0 {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			if err := c.g.Join(ctx, c.seeds); err != nil && !errors.Is(err, gossip.ErrClosed) && ctx.Err() == nil {
				c.log.Warn("join", zap.Strings("seeds", c.seeds), zap.Error(err))
			}
		}()
	}
	c.poke()
	return nil
}

// forward turns the events of a watch into kicks of the loop.
func forward[T any](c *control, ch <-chan T, cancel func()) {
	defer cancel()
	for {
		select {
		case <-c.stop:
			return
		case _, ok := <-ch:
			if !ok {
				return
			}
			c.poke()
		}
	}
}

func (c *control) poke() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// loop rebuilds the route table on every change, and once a second.
func (c *control) loop() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-c.kick:
		case <-t.C:
		}
		c.sync()
		c.checkRecovering()
		c.keepIPAM()
		c.checkDefinitions()
	}
}

// keepIPAM writes a joined network's IPAM state file again when the
// node's ranges and leases there differ from what was last written and
// the tables hold the node's lease of its address. ipam reports its own
// changes (OnChange), not the node's lease or range coming back from the
// peers after a restart, so a file written before they came back (an
// export taken while they were not yet visible) would otherwise stay
// without them. Networks still being recovered (checkRecovering) are left
// to it.
func (c *control) keepIPAM() {
	if c.state == nil {
		return
	}
	c.mu.Lock()
	rec := map[string]bool{}
	for _, j := range c.recovering {
		rec[j.Name] = true
	}
	c.mu.Unlock()
	self := c.g.Name()
	for _, j := range c.joinedList() {
		if rec[j.Name] {
			continue
		}
		if ls, ok := c.ipam.Lookup(j.Name, j.Addr); !ok || ls.Node != self {
			continue
		}
		c.saveIPAM(j.Name, true)
	}
}

// announce makes the node a participant of j's network, writes its route
// entry and watches the network's routes.
func (c *control) announce(j joinedNet) error {
	if err := c.g.JoinNetwork(j.Name); err != nil {
		return fmt.Errorf("node: network %q: %w", j.Name, err)
	}
	rt := catalog.Route{Prefix: netip.PrefixFrom(j.Addr, 32), VTEP: c.vtep}
	if err := c.g.Put(catalog.TableRoutes, j.Name, catalog.RouteKey(c.g.Name()), rt.Encode()); err != nil {
		return fmt.Errorf("node: network %q: announce route: %w", j.Name, err)
	}
	// The routes, and the leases and ranges that say which of them to
	// accept (learned): a lease arriving after its route must not wait
	// for the next tick.
	stop := catalog.Watch(c.g, j.Name, c.kick, append([]string{catalog.TableRoutes}, ipam.WatchTables()...)...)
	c.mu.Lock()
	if old := c.watches[j.Name]; old != nil {
		old()
	}
	c.watches[j.Name] = stop
	c.mu.Unlock()
	return nil
}

// Reasons a route entry is refused (the keys of refused, shown in status).
const (
	refuseKey       = "key_not_owner"   // the key is not its writer's name
	refuseMalformed = "malformed"       // the value does not parse
	refuseOutside   = "outside_network" // not one address of the network's CIDR
	refuseLease     = "lease_elsewhere" // another node holds the address's lease
	refuseNoLease   = "no_lease"        // nobody holds the address's lease (yet)
	refuseVTEP      = "vtep_mismatch"   // not the VTEP its writer advertises
)

// refuseGrace is how long an entry may be refused for a reason that can be
// the gossip's ordering (its lease, its range or its writer's metadata not
// here yet) before the refusal is counted and logged.
const refuseGrace = 3 * time.Second

// refusalKey is one version of a refused entry.
type refusalKey struct {
	network, owner, key string
	time                uint64
	reason              string
}

// refusal is what the log says of a refused entry.
type refusal struct{ value, holder string }

// learned returns the routes learned from the tables of the joined
// networks, skipping prefixes already in taken. A route is accepted only
// from the node that holds the IPAM lease of its address (ipam is
// replicated, so every node checks the same), for that one address, at
// the VTEP its writer advertises; every other entry is refused and counted.
// Two entries never compete for one prefix: only the lease holder's passes.
//
// The check trusts gossip's word for who wrote an entry: a member that
// forges another's name (or its lease) is not caught here; per-node
// identity for gossip entries is later work.
func (c *control) learned(taken map[netip.Prefix]bool) []router.Route {
	var out []router.Route
	self := c.g.Name()
	vteps := map[string]netip.AddrPort{}
	for _, m := range c.g.Members() {
		vteps[m.Name] = m.Meta.VTEP
	}
	refusedNow := map[refusalKey]refusal{}
	for _, j := range c.joinedList() {
		holders := c.ipam.Holders(j.Name)
		for _, e := range c.g.List(catalog.TableRoutes, j.Name) {
			if e.Owner == self {
				continue
			}
			rt, err := catalog.ParseRoute(e.Value)
			pfx, vtep, ok := rt.Prefix, rt.VTEP, err == nil
			reason, holder := "", ""
			switch {
			case e.Key != e.Owner:
				reason = refuseKey
			case !ok:
				reason = refuseMalformed
			case pfx.Bits() != 32 || !j.CIDR.Contains(pfx.Addr()):
				reason = refuseOutside
			default:
				ls, held := holders[pfx.Addr()]
				switch {
				case !held:
					reason = refuseNoLease
				case ls.Node != e.Owner || ls.Owner != e.Owner:
					reason, holder = refuseLease, ls.Node
				case vteps[e.Owner] != vtep:
					reason = refuseVTEP
				}
			}
			if reason != "" {
				v := e.Value[:min(len(e.Value), 80)] // what a forger wrote: keep the log line short
				refusedNow[refusalKey{j.Name, e.Owner, e.Key, e.Time, reason}] = refusal{value: string(v), holder: holder}
				continue
			}
			if taken[pfx] {
				continue
			}
			taken[pfx] = true
			out = append(out, router.Route{Prefix: pfx, VTEP: vtep, VNI: j.VNI, Owner: e.Owner})
		}
	}
	c.noteRefused(refusedNow)
	return out
}

// noteRefused counts (once per entry version) and logs the refused route
// entries; those refused for a reason that can be transient only once they
// have been refused for refuseGrace.
func (c *control) noteRefused(now map[refusalKey]refusal) {
	t := time.Now()
	c.refMu.Lock()
	defer c.refMu.Unlock()
	for k, since := range c.pending {
		if _, still := now[k]; !still {
			delete(c.pending, k)
		} else if since.IsZero() {
			delete(now, k) // counted already
		}
	}
	for k, r := range now {
		since, ok := c.pending[k]
		if !ok {
			since = t
			c.pending[k] = t
		}
		if (k.reason == refuseNoLease || k.reason == refuseVTEP) && t.Sub(since) < refuseGrace {
			continue
		}
		c.pending[k] = time.Time{} // counted
		c.refused[k.reason]++
		c.log.Warn("route refused", zap.String("network", k.network), zap.String("owner", k.owner),
			zap.String("route", r.value), zap.String("reason", k.reason), zap.String("lease_holder", r.holder))
	}
}

// refusedRoutes is a copy of the refusal counters.
func (c *control) refusedRoutes() map[string]uint64 {
	c.refMu.Lock()
	defer c.refMu.Unlock()
	if len(c.refused) == 0 {
		return nil
	}
	return maps.Clone(c.refused)
}

// peers are the VTEPs of the live members.
func (c *control) peers() []netip.AddrPort {
	var out []netip.AddrPort
	for _, m := range c.g.Members() {
		if m.Name == c.g.Name() || (m.State != gossip.StateAlive && m.State != gossip.StateSuspect) || !m.Meta.VTEP.IsValid() {
			continue
		}
		out = append(out, m.Meta.VTEP)
	}
	return out
}

// sync swaps the router's route table for static + learned routes.
func (c *control) sync() {
	if err := c.n.syncRoutes(); err != nil {
		c.log.Warn("route table", zap.Error(err))
	}
}

// close stops the loop and the gossip: with leave, the cluster is told
// (peers withdraw this node's routes at once); without, peers find out by
// failure detection, as after a crash.
func (c *control) close(leave bool) error {
	c.closeOnce.Do(func() { c.closeErr = c.shutdown(leave) })
	return c.closeErr
}

func (c *control) shutdown(leave bool) error {
	if c.cancel != nil {
		c.cancel()
	}
	close(c.stop)
	c.mu.Lock()
	for _, cancel := range c.watches {
		cancel()
	}
	clear(c.watches)
	c.mu.Unlock()
	c.ipam.Close()
	if leave {
		if err := c.g.Leave(time.Second); err != nil {
			c.log.Debug("leave", zap.Error(err))
		}
	}
	err := c.g.Close()
	c.wg.Wait()
	return err
}

// applyNetworks gives the router and the attachment the static network
// plus the joined ones.
func (n *Node) applyNetworks() error {
	n.syncMu.Lock()
	defer n.syncMu.Unlock()
	var nets []router.Network
	var addrs []netip.Prefix
	if n.cfg.Addr.IsValid() {
		nets = append(nets, router.Network{VNI: n.cfg.VNI, Addr: n.cfg.Addr})
		addrs = append(addrs, n.cfg.Addr)
	}
	if n.ctl != nil {
		for _, j := range n.ctl.joinedList() {
			nets = append(nets, router.Network{VNI: j.VNI, Addr: j.prefix()})
			addrs = append(addrs, j.prefix())
		}
	}
	addrs = append(addrs, n.dnsPrefixes()...)
	if err := n.rt.SetNetworks(nets); err != nil {
		return err
	}
	if n.dns != nil {
		defer n.dns.poke()
	}
	if as, ok := n.dev.(stack.AddressSetter); ok {
		return as.SetAddresses(addrs)
	}
	return nil
}

// validNetworkName: letters, digits, '-', '_' and '.', 1 to 63 bytes, not
// starting with '.' or '-'.
func validNetworkName(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '.' || s[0] == '-' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// pickVNI returns a VNI no known network uses, derived from the name so
// that two nodes creating networks at once rarely pick the same.
func pickVNI(name string, taken map[uint32]bool) uint32 {
	h := fnv.New32a()
	h.Write([]byte(name))
	v := 1000 + h.Sum32()%100000
	for taken[v] {
		v++
		if v > vxlan.MaxVNI {
			v = 1
		}
	}
	return v
}

var errNoGossip = fault.Unavailable("this node runs without gossip (static mode); start it with --gossip IP:PORT to use networks and peers")

// createNetwork defines a network cluster-wide. Two nodes may create one
// name at the same moment, each before the other's write reaches it; gossip
// keeps one definition. So after writing, it waits out the create window
// (confirmCreated) and reports a lost race as a conflict naming the winner,
// never as success.
func (c *control) createNetwork(ctx context.Context, req api.CreateNetwork) (api.NetworkInfo, error) {
	if !validNetworkName(req.Name) {
		return api.NetworkInfo{}, fault.Invalid("network name %q is not valid: use 1 to 63 letters, digits, '-', '_' or '.'", req.Name)
	}
	cidr, err := netip.ParsePrefix(req.CIDR)
	if err != nil || !cidr.Addr().Is4() {
		return api.NetworkInfo{}, fault.Invalid("CIDR %q is not an IPv4 prefix such as 10.10.0.0/16", req.CIDR)
	}
	if cidr != cidr.Masked() {
		return api.NetworkInfo{}, fault.Invalid("CIDR %v has host bits set; did you mean %v?", cidr, cidr.Masked())
	}
	if cidr.Bits() > 26 || cidr.Bits() < 8 {
		return api.NetworkInfo{}, fault.Invalid("CIDR %v must be between /8 and /26 (at least 64 addresses)", cidr)
	}
	if req.VNI != nil && *req.VNI > vxlan.MaxVNI {
		return api.NetworkInfo{}, fault.Invalid("VNI %d is out of range (0-%d)", *req.VNI, vxlan.MaxVNI)
	}
	// Watch before writing, so that the competing definition cannot
	// arrive unseen between the write and the wait.
	ch, cancel := ipam.WatchNetworks(c.g)
	defer cancel()
	vni, err := c.writeNetwork(req, cidr)
	if err != nil {
		return api.NetworkInfo{}, err
	}
	nw, err := c.confirmCreated(ctx, ch, req, cidr, vni)
	if err != nil {
		return api.NetworkInfo{}, err
	}
	c.log.Info("network created", zap.String("network", req.Name), zap.Stringer("cidr", cidr), zap.Uint32("vni", vni))
	return c.info(nw), nil
}

// writeNetwork checks req against the networks known here and writes it;
// it returns the VNI.
func (c *control) writeNetwork(req api.CreateNetwork, cidr netip.Prefix) (uint32, error) {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	taken := map[uint32]bool{}
	cfg := c.n.cfg
	if cfg.Addr.IsValid() {
		taken[cfg.VNI] = true
		if cfg.Addr.Masked().Overlaps(cidr) {
			return 0, fault.Conflict("CIDR %v overlaps this node's static network %v", cidr, cfg.Addr.Masked())
		}
		if req.VNI != nil && *req.VNI == cfg.VNI {
			return 0, fault.Conflict("VNI %d is taken by this node's static network (--vni)", cfg.VNI)
		}
	}
	for _, nw := range c.ipam.Networks() {
		switch {
		case nw.Name == req.Name:
			return 0, fault.Conflict("network %q exists already (%v, VNI %d, created by node %s)", nw.Name, nw.CIDR, nw.VNI, nw.Creator)
		case nw.CIDR.Overlaps(cidr):
			return 0, fault.Conflict("CIDR %v overlaps network %q (%v)", cidr, nw.Name, nw.CIDR)
		case req.VNI != nil && *req.VNI == nw.VNI:
			return 0, fault.Conflict("VNI %d is taken by network %q", nw.VNI, nw.Name)
		}
		taken[nw.VNI] = true
	}
	vni := pickVNI(req.Name, taken)
	if req.VNI != nil {
		vni = *req.VNI
	}
	if h := c.hooks.beforeCreate; h != nil {
		h(req.Name)
	}
	if err := c.ipam.CreateNetwork(req.Name, cidr, vni); err != nil {
		// A creation of the name elsewhere at once may have arrived since
		// the checks above: alike, it fulfils the request; otherwise this
		// one lost, as confirmCreated would say.
		if nw, ok := c.ipam.Network(req.Name); ok {
			if nw.CIDR == cidr.Masked() && (req.VNI == nil || *req.VNI == nw.VNI) {
				return nw.VNI, nil
			}
			return 0, lostCreation(req.Name, nw, cidr, vni)
		}
		return 0, fault.Conflict("%v", err)
	}
	return vni, nil
}

// confirmCreated waits out the create window after this node wrote network
// req.Name (ch: a watch of the networks table opened before the write) and
// returns the definition that won. Gossip keeps one definition per name (the
// latest write); a creation made elsewhere before ours reached that node
// arrives within the window. If it won with another CIDR or VNI, ours is
// gone (ipam withdraws its ranges) and the caller is told so, naming the
// winner; if it defines the same network, the request is fulfilled. Alone
// in the cluster there is no one to race with, and no wait.
func (c *control) confirmCreated(ctx context.Context, ch <-chan gossip.Event, req api.CreateNetwork, cidr netip.Prefix, vni uint32) (ipam.Network, error) {
	self := c.g.Name()
	alone := true
	for _, m := range c.g.Members() {
		if m.Name != self && (m.State == gossip.StateAlive || m.State == gossip.StateSuspect) {
			alone = false
		}
	}
	var window <-chan time.Time
	if !alone {
		t := time.NewTimer(c.createWindow)
		defer t.Stop()
		window = t.C
	}
	for {
		nw, ok := c.ipam.Network(req.Name)
		switch {
		case !ok:
			// Only a malformed competing write hides the name.
			return ipam.Network{}, fault.Conflict("network %q: its definition was replaced by an unreadable one while it was being created; try again", req.Name)
		case nw.Creator != self && nw.CIDR == cidr && (req.VNI == nil || nw.VNI == vni):
			c.log.Info("network created at the same time elsewhere, alike", zap.String("network", req.Name), zap.String("creator", nw.Creator))
			return nw, nil
		case nw.Creator != self:
			c.log.Warn("network creation lost to another node's", zap.String("network", req.Name), zap.Stringer("cidr", cidr),
				zap.String("winner", nw.Creator), zap.Stringer("winner_cidr", nw.CIDR), zap.Uint32("winner_vni", nw.VNI))
			return ipam.Network{}, lostCreation(req.Name, nw, cidr, vni)
		case window == nil:
			return nw, nil
		}
		select {
		case _, open := <-ch:
			if !open {
				ch = nil // gossip closed; c.stop ends the wait
			}
		case <-window:
			window = nil // look once more, then done
		case <-ctx.Done():
			return ipam.Network{}, fault.Unavailable("network %q: written, but the wait for a competing creation was interrupted (%v); check it with 'overlayd network ls'", req.Name, ctx.Err())
		case <-c.stop:
			return ipam.Network{}, fault.Unavailable("network %q: the node is stopping", req.Name)
		}
	}
}

// info describes a network.
func (c *control) info(nw ipam.Network) api.NetworkInfo {
	ni := api.NetworkInfo{Name: nw.Name, CIDR: nw.CIDR.String(), VNI: nw.VNI, Creator: nw.Creator, DNS: nw.DNS.String()}
	c.mu.Lock()
	j, ok := c.joined[nw.Name]
	c.mu.Unlock()
	if ok {
		ni.Joined, ni.Addr = true, j.prefix().String()
		// The lists of a network this node does not take part in are empty.
		ni.Members = len(c.g.List(catalog.TableRoutes, nw.Name))
	}
	return ni
}

// networks lists the networks the cluster defines and, beside them, the
// joined networks whose definitions have not arrived yet (right after a
// restart, before gossip brought them): a joined network is never missing
// from the list.
func (c *control) networks() []api.NetworkInfo {
	out := []api.NetworkInfo{}
	known := map[string]bool{}
	for _, nw := range c.ipam.Networks() {
		known[nw.Name] = true
		out = append(out, c.info(nw))
	}
	for _, j := range c.joinedList() {
		if known[j.Name] {
			continue
		}
		if nw, err := ipam.Describe(j.Name, j.CIDR, j.VNI); err == nil {
			out = append(out, c.info(nw))
		}
	}
	return out
}

// joinNetwork attaches the node to a network: an address from IPAM (the
// one it already holds, after a restart), the attachment and the router
// gain it, and the node's route is announced.
func (c *control) joinNetwork(ctx context.Context, name string) (api.NetworkInfo, error) {
	// A network created on another node a moment ago may still be on its
	// way here: wait for it without holding opMu.
	if _, ok := c.ipam.Network(name); !ok {
		c.waitNetwork(ctx, name)
	}
	c.opMu.Lock()
	defer c.opMu.Unlock()
	nw, ok := c.ipam.Network(name)
	if !ok {
		return api.NetworkInfo{}, fault.NotFound("unknown network %q; create it with 'overlayd network create %s CIDR' (or wait for gossip to bring it)", name, name)
	}
	c.mu.Lock()
	_, already := c.joined[name]
	c.mu.Unlock()
	if already {
		return c.info(nw), nil
	}
	cfg := c.n.cfg
	if cfg.Addr.IsValid() && nw.VNI == cfg.VNI {
		return api.NetworkInfo{}, fault.Conflict("network %q has VNI %d, which this node's static network (--vni) uses", name, nw.VNI)
	}
	for _, j := range c.joinedList() {
		if j.VNI == nw.VNI || j.CIDR.Overlaps(nw.CIDR) {
			return api.NetworkInfo{}, fault.Conflict("network %q clashes with joined network %q (same VNI or overlapping CIDR)", name, j.Name)
		}
	}
	self := c.g.Name()
	var addr netip.Addr
	for _, l := range c.ipam.Leases(name) {
		if l.Node == self && l.Owner == self {
			addr = l.Addr
			break
		}
	}
	if !addr.IsValid() {
		actx, cancel := context.WithTimeout(ctx, joinTimeout)
		a, err := c.ipam.Allocate(actx, name, self)
		cancel()
		switch {
		case errors.Is(err, ipam.ErrExhausted):
			return api.NetworkInfo{}, fault.Conflict("network %q has no free address left", name)
		case err != nil:
			return api.NetworkInfo{}, fault.Unavailable("network %q: no address yet (%v); is the node that owns its free addresses up?", name, err)
		}
		addr = a
	}
	j := joinedNet{Name: name, CIDR: nw.CIDR, VNI: nw.VNI, Addr: addr}
	c.mu.Lock()
	c.joined[name] = j
	c.mu.Unlock()
	if err := c.n.applyNetworks(); err != nil {
		c.mu.Lock()
		delete(c.joined, name)
		c.mu.Unlock()
		c.n.applyNetworks()
		return api.NetworkInfo{}, fmt.Errorf("node: join %q: %w", name, err)
	}
	if err := c.saveJoined(); err != nil {
		return api.NetworkInfo{}, err
	}
	if err := c.announce(j); err != nil {
		return api.NetworkInfo{}, err
	}
	c.log.Info("joined network", zap.String("network", name), zap.Uint32("vni", j.VNI), zap.Stringer("addr", j.prefix()))
	c.poke()
	return c.info(nw), nil
}

// waitNetwork waits, at most unknownWait and while ctx lasts, for the
// definition of network name to arrive, woken by the networks table's
// changes.
func (c *control) waitNetwork(ctx context.Context, name string) {
	ch, cancel := ipam.WatchNetworks(c.g)
	defer cancel()
	t := time.NewTimer(unknownWait)
	defer t.Stop()
	if h := c.hooks.waitingNetwork; h != nil {
		h(name)
	}
	for {
		if _, ok := c.ipam.Network(name); ok {
			return
		}
		select {
		case _, open := <-ch:
			if !open {
				return // gossip closed
			}
		case <-t.C:
			return
		case <-ctx.Done():
			return
		case <-c.stop:
			return
		}
	}
}

// leaveNetwork detaches the node: its route is withdrawn, its address
// released. The node stays a gossip participant of the network so that
// the address ranges it owns stay served.
func (c *control) leaveNetwork(name string) error {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	c.mu.Lock()
	j, ok := c.joined[name]
	c.mu.Unlock()
	if !ok {
		if _, known := c.ipam.Network(name); !known {
			return fault.NotFound("unknown network %q", name)
		}
		return fault.Conflict("this node has not joined network %q", name)
	}
	if err := c.g.Delete(catalog.TableRoutes, name, catalog.RouteKey(c.g.Name())); err != nil && !errors.Is(err, gossip.ErrNotFound) {
		return fmt.Errorf("node: leave %q: %w", name, err)
	}
	c.mu.Lock()
	delete(c.joined, name)
	if cancel := c.watches[name]; cancel != nil {
		cancel()
		delete(c.watches, name)
	}
	c.mu.Unlock()
	if err := c.n.applyNetworks(); err != nil {
		return fmt.Errorf("node: leave %q: %w", name, err)
	}
	if err := c.ipam.Release(name, j.Addr); err != nil {
		c.log.Warn("release address", zap.String("network", name), zap.Error(err))
	}
	if err := c.saveJoined(); err != nil {
		return err
	}
	c.log.Info("left network", zap.String("network", name))
	c.poke()
	return nil
}

func (c *control) saveJoined() error {
	if c.state == nil {
		return nil
	}
	return c.state.saveJoined(c.joinedList())
}

// persistIPAM is ipam's OnChange: keep the node's ranges and leases.
func (c *control) persistIPAM(network string) { c.saveIPAM(network, false) }

// saveIPAM exports the network's IPAM state and writes it to its state
// file (onlyChanged: unless it is what was written last). Export and write
// happen under savedMu, so two writers never put an older export over a
// newer one.
func (c *control) saveIPAM(network string, onlyChanged bool) {
	c.savedMu.Lock()
	defer c.savedMu.Unlock()
	b, err := c.ipam.Export(network)
	if err == nil && onlyChanged && bytes.Equal(c.saved[network], b) {
		return
	}
	if err == nil {
		err = c.state.saveIPAM(network, b)
	}
	if err != nil {
		c.log.Error("keep IPAM state", zap.String("network", network), zap.Error(err))
		return
	}
	if c.saved == nil {
		c.saved = map[string][]byte{}
	}
	c.saved[network] = b
}

func (c *control) peerList() []api.Peer {
	out := []api.Peer{}
	for _, m := range c.g.Members() {
		p := api.Peer{Name: m.Name, Addr: m.Addr.String(), State: m.State.String(), Version: m.Meta.Version, Self: m.Name == c.g.Name()}
		if m.Meta.VTEP.IsValid() {
			p.VTEP = m.Meta.VTEP.String()
		}
		out = append(out, p)
	}
	return out
}

// lostCreation is the error of a network creation that lost to another
// node's creation of the same name with another definition, made at the
// same moment.
func lostCreation(name string, winner ipam.Network, cidr netip.Prefix, vni uint32) error {
	return fault.Conflict(
		"network %q was created at the same moment on node %s with %v (VNI %d), and that definition won; this node's %v (VNI %d) was dropped. Use %q as it is, or create yours under another name",
		name, winner.Creator, winner.CIDR, winner.VNI, cidr, vni, name)
}
