package node

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/gossip"
	"github.com/overlayd/overlayd/ipam"
	"github.com/overlayd/overlayd/router"
	"github.com/overlayd/overlayd/stack"
	"github.com/overlayd/overlayd/vxlan"
)

// tableRoutes is the network-scoped table of learned routes: key the node
// name, value "ADDR/32 VTEP" (the node's address on the network and the
// underlay address that hosts it), owned by that node.
const tableRoutes = "overlayd.routes"

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

	opMu sync.Mutex // serialises create, join and leave

	mu      sync.Mutex // guards joined and watches
	joined  map[string]joinedNet
	watches map[string]func() // network → cancel of its routes watch

	kick      chan struct{}
	stop      chan struct{}
	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup
	cancel    context.CancelFunc
}

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
	if cfg.StateDir != "" {
		if c.state, err = openStateDir(cfg.StateDir); err != nil {
			return nil, err
		}
		joined, err := c.state.loadJoined()
		if err != nil {
			return nil, err
		}
		for _, j := range joined {
			c.joined[j.Name] = j
		}
	}
	c.g, err = gossip.New(gossip.Options{
		Name:     cfg.Name,
		BindAddr: cfg.Gossip.Listen.String(),
		Meta:     gossip.Meta{VTEP: c.vtep, Version: Version},
		Keys:     keys,
		Profile:  cfg.Gossip.Profile,
		Logger:   n.log,
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
	if c.state != nil {
		if err := c.state.importIPAM(c.ipam); err != nil {
			c.ipam.Close()
			return nil, err
		}
	}
	return c, nil
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
func (c *control) start(ctx context.Context) error {
	ctx, c.cancel = context.WithCancel(ctx)
	for _, j := range c.joinedList() {
		if err := c.announce(j); err != nil {
			return err
		}
	}
	mch, mcancel := c.g.WatchMembers()
	nch, ncancel := c.g.Watch("ipam.networks", "")
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
	}
}

// announce makes the node a participant of j's network, writes its route
// entry and watches the network's routes.
func (c *control) announce(j joinedNet) error {
	if err := c.g.JoinNetwork(j.Name); err != nil {
		return fmt.Errorf("node: network %q: %w", j.Name, err)
	}
	v := netip.PrefixFrom(j.Addr, 32).String() + " " + c.vtep.String()
	if err := c.g.Put(tableRoutes, j.Name, c.g.Name(), []byte(v)); err != nil {
		return fmt.Errorf("node: network %q: announce route: %w", j.Name, err)
	}
	ch, cancel := c.g.Watch(tableRoutes, j.Name)
	c.mu.Lock()
	if old := c.watches[j.Name]; old != nil {
		old()
	}
	c.watches[j.Name] = cancel
	c.mu.Unlock()
	c.wg.Add(1)
	go func() { defer c.wg.Done(); forward(c, ch, func() {}) }()
	return nil
}

// parseRoute reads a routes entry's value.
func parseRoute(v []byte) (netip.Prefix, netip.AddrPort, bool) {
	p, vt, ok := strings.Cut(string(v), " ")
	if !ok {
		return netip.Prefix{}, netip.AddrPort{}, false
	}
	pfx, err1 := netip.ParsePrefix(p)
	vtep, err2 := netip.ParseAddrPort(vt)
	if err1 != nil || err2 != nil || !pfx.Addr().Is4() || vtep.Port() == 0 {
		return netip.Prefix{}, netip.AddrPort{}, false
	}
	return pfx.Masked(), vtep, true
}

// learned returns the routes learned from the tables of the joined
// networks, skipping prefixes already in taken.
func (c *control) learned(taken map[netip.Prefix]bool) []router.Route {
	var out []router.Route
	self := c.g.Name()
	for _, j := range c.joinedList() {
		for _, e := range c.g.List(tableRoutes, j.Name) {
			if e.Owner == self || e.Key != e.Owner {
				continue
			}
			pfx, vtep, ok := parseRoute(e.Value)
			if !ok || !j.CIDR.Contains(pfx.Addr()) || taken[pfx] {
				continue
			}
			taken[pfx] = true
			out = append(out, router.Route{Prefix: pfx, VTEP: vtep, VNI: j.VNI, Owner: e.Owner})
		}
	}
	return out
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

var errNoGossip = api.Errorf(http.StatusServiceUnavailable, "this node runs without gossip (static mode); start it with --gossip IP:PORT to use networks and peers")

// createNetwork defines a network cluster-wide.
func (c *control) createNetwork(req api.CreateNetwork) (api.NetworkInfo, error) {
	if !validNetworkName(req.Name) {
		return api.NetworkInfo{}, api.Errorf(http.StatusBadRequest, "network name %q is not valid: use 1 to 63 letters, digits, '-', '_' or '.'", req.Name)
	}
	cidr, err := netip.ParsePrefix(req.CIDR)
	if err != nil || !cidr.Addr().Is4() {
		return api.NetworkInfo{}, api.Errorf(http.StatusBadRequest, "CIDR %q is not an IPv4 prefix such as 10.10.0.0/16", req.CIDR)
	}
	if cidr != cidr.Masked() {
		return api.NetworkInfo{}, api.Errorf(http.StatusBadRequest, "CIDR %v has host bits set; did you mean %v?", cidr, cidr.Masked())
	}
	if cidr.Bits() > 26 || cidr.Bits() < 8 {
		return api.NetworkInfo{}, api.Errorf(http.StatusBadRequest, "CIDR %v must be between /8 and /26 (at least 64 addresses)", cidr)
	}
	if req.VNI != nil && *req.VNI > vxlan.MaxVNI {
		return api.NetworkInfo{}, api.Errorf(http.StatusBadRequest, "VNI %d is out of range (0-%d)", *req.VNI, vxlan.MaxVNI)
	}
	c.opMu.Lock()
	defer c.opMu.Unlock()
	taken := map[uint32]bool{}
	cfg := c.n.cfg
	if cfg.Addr.IsValid() {
		taken[cfg.VNI] = true
		if cfg.Addr.Masked().Overlaps(cidr) {
			return api.NetworkInfo{}, api.Errorf(http.StatusConflict, "CIDR %v overlaps this node's static network %v", cidr, cfg.Addr.Masked())
		}
		if req.VNI != nil && *req.VNI == cfg.VNI {
			return api.NetworkInfo{}, api.Errorf(http.StatusConflict, "VNI %d is taken by this node's static network (--vni)", cfg.VNI)
		}
	}
	for _, nw := range c.ipam.Networks() {
		switch {
		case nw.Name == req.Name:
			return api.NetworkInfo{}, api.Errorf(http.StatusConflict, "network %q exists already (%v, VNI %d)", nw.Name, nw.CIDR, nw.VNI)
		case nw.CIDR.Overlaps(cidr):
			return api.NetworkInfo{}, api.Errorf(http.StatusConflict, "CIDR %v overlaps network %q (%v)", cidr, nw.Name, nw.CIDR)
		case req.VNI != nil && *req.VNI == nw.VNI:
			return api.NetworkInfo{}, api.Errorf(http.StatusConflict, "VNI %d is taken by network %q", nw.VNI, nw.Name)
		}
		taken[nw.VNI] = true
	}
	vni := pickVNI(req.Name, taken)
	if req.VNI != nil {
		vni = *req.VNI
	}
	if err := c.ipam.CreateNetwork(req.Name, cidr, vni); err != nil {
		return api.NetworkInfo{}, api.Errorf(http.StatusConflict, "%v", err)
	}
	c.log.Info("network created", zap.String("network", req.Name), zap.Stringer("cidr", cidr), zap.Uint32("vni", vni))
	nw, _ := c.ipam.Network(req.Name)
	return c.info(nw), nil
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
		ni.Members = len(c.g.List(tableRoutes, nw.Name))
	}
	return ni
}

func (c *control) networks() []api.NetworkInfo {
	out := []api.NetworkInfo{}
	for _, nw := range c.ipam.Networks() {
		out = append(out, c.info(nw))
	}
	return out
}

// joinNetwork attaches the node to a network: an address from IPAM (the
// one it already holds, after a restart), the attachment and the router
// gain it, and the node's route is announced.
func (c *control) joinNetwork(ctx context.Context, name string) (api.NetworkInfo, error) {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	nw, ok := c.ipam.Network(name)
	// A network created on another node a moment ago may still be on its
	// way here.
	for deadline := time.Now().Add(unknownWait); !ok && time.Now().Before(deadline) && ctx.Err() == nil; nw, ok = c.ipam.Network(name) {
		time.Sleep(50 * time.Millisecond)
	}
	if !ok {
		return api.NetworkInfo{}, api.Errorf(http.StatusNotFound, "unknown network %q; create it with 'overlayd network create %s CIDR' (or wait for gossip to bring it)", name, name)
	}
	c.mu.Lock()
	_, already := c.joined[name]
	c.mu.Unlock()
	if already {
		return c.info(nw), nil
	}
	cfg := c.n.cfg
	if cfg.Addr.IsValid() && nw.VNI == cfg.VNI {
		return api.NetworkInfo{}, api.Errorf(http.StatusConflict, "network %q has VNI %d, which this node's static network (--vni) uses", name, nw.VNI)
	}
	for _, j := range c.joinedList() {
		if j.VNI == nw.VNI || j.CIDR.Overlaps(nw.CIDR) {
			return api.NetworkInfo{}, api.Errorf(http.StatusConflict, "network %q clashes with joined network %q (same VNI or overlapping CIDR)", name, j.Name)
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
			return api.NetworkInfo{}, api.Errorf(http.StatusConflict, "network %q has no free address left", name)
		case err != nil:
			return api.NetworkInfo{}, api.Errorf(http.StatusServiceUnavailable, "network %q: no address yet (%v); is the node that owns its free addresses up?", name, err)
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
			return api.Errorf(http.StatusNotFound, "unknown network %q", name)
		}
		return api.Errorf(http.StatusConflict, "this node has not joined network %q", name)
	}
	if err := c.g.Delete(tableRoutes, name, c.g.Name()); err != nil && !errors.Is(err, gossip.ErrNotFound) {
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
func (c *control) persistIPAM(network string) {
	b, err := c.ipam.Export(network)
	if err == nil {
		err = c.state.saveIPAM(network, b)
	}
	if err != nil {
		c.log.Error("keep IPAM state", zap.String("network", network), zap.Error(err))
	}
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
