package node

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/catalog"
	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/gossip"
	"github.com/overlayd/overlayd/gossip/mdns"
	"github.com/overlayd/overlayd/internal/fault"
	"github.com/overlayd/overlayd/internal/statefile"
	"github.com/overlayd/overlayd/ipam"
	"github.com/overlayd/overlayd/network"
	"github.com/overlayd/overlayd/router"
	"github.com/overlayd/overlayd/stack"
	"github.com/overlayd/overlayd/vxlan"
)

// joinTimeout bounds how long a join (and a VIP allocation) waits for an
// address range.
const joinTimeout = network.JoinTimeout

// joinedNet is a network this node is attached to, with its address.
type joinedNet = network.Joined

// control is the node's control plane: gossip membership and the
// networks the node is attached to (network.Manager, with IPAM); the
// reconciler turns their changes into swaps.
type control struct {
	g     *gossip.Gossip
	nets  *network.Manager
	ipam  *ipam.IPAM // nets' IPAM
	log   *zap.Logger
	state *statefile.Dir // nil: nothing is kept (the networks and the services keep their files in it)
	vtep  netip.AddrPort
	seeds []string

	stop      chan struct{}
	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup
	cancel    context.CancelFunc
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
		log:  n.log.Named("control"),
		stop: make(chan struct{}),
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
		if c.state, err = statefile.Open(cfg.StateDir, c.log); err != nil {
			return nil, err
		}
	}
	c.g, err = gossip.New(gossip.Options{
		Name:     cfg.Name,
		BindAddr: cfg.Gossip.Listen.String(),
		Meta:     gossip.Meta{VTEP: c.vtep, Version: Version},
		Keys:     keys,
		Profile:  cfg.Gossip.Profile,
		Logger:   n.gossipLog,

		Transport: n.seams.Transport, // nil but in tests (nodetest.WithTransport)
		Discover:  discoverer(cfg.Gossip, len(c.seeds) > 0, n.log),
	})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			c.g.Close()
		}
	}()
	window := createWindowDefault
	if cfg.Gossip.Profile == gossip.ProfileTest {
		window = createWindowTest
	}
	c.nets, err = network.New(network.Options{
		Gossip:       c.g,
		VTEP:         c.vtep,
		State:        c.state,
		Static:       cfg.Addrs(),
		StaticVNI:    cfg.VNI,
		CreateWindow: window,
		Kick:         n.rec.kick,
		Apply:        n.applyNetworks,
		Log:          n.log,
	})
	if err != nil {
		return nil, err
	}
	c.ipam = c.nets.IPAM()
	return c, nil
}

// discoverer is gossip's discovery for the configuration: with seeds
// (they win), mDNS only announces this node.
func discoverer(g config.Gossip, seeded bool, log *zap.Logger) gossip.Discoverer {
	if g.Discover != config.DiscoverMDNS {
		return nil
	}
	d := mdns.New(mdns.Options{Logger: log})
	if seeded {
		return gossip.AnnounceOnly(d)
	}
	return d
}

// advertiseVTEP is the VTEP peers send VXLAN to: the listen address, with
// the gossip address's IP (or the IP that routes to the first seed) when
// the listen IP is unspecified. That IP must be of the listen socket's
// family (an IPv6 one, [::] included, is IPv6-only: package udp).
func advertiseVTEP(cfg config.Config, local netip.AddrPort, seeds []string) (netip.AddrPort, error) {
	if !local.Addr().IsUnspecified() {
		return local, nil
	}
	is6 := local.Addr().Is6()
	ip := cfg.Gossip.Listen.Addr().Unmap()
	if ip.Is6() != is6 {
		ip = netip.Addr{} // the other family's: the seed's route may still say
	}
	if (!ip.IsValid() || ip.IsUnspecified()) && len(seeds) > 0 {
		network := "udp4"
		if is6 {
			network = "udp6"
		}
		if c, err := net.Dial(network, seeds[0]); err == nil {
			if ua, ok := c.LocalAddr().(*net.UDPAddr); ok {
				ip, _ = netip.AddrFromSlice(ua.IP)
				ip = ip.Unmap()
			}
			c.Close()
		}
	}
	if !ip.IsValid() || ip.IsUnspecified() || ip.Is6() != is6 {
		if is6 {
			return netip.AddrPort{}, fmt.Errorf("node: the VTEP %v has no IP peers could send to; give --listen IP:PORT (or --gossip IP:PORT) with this host's underlay IPv6 address (a [::] VTEP takes IPv6 only)", local)
		}
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
func (c *control) joinedList() []joinedNet { return c.nets.Joined() }

// start announces the joined networks, joins the seeds (in the background,
// retrying) and runs the loop that turns table changes into route swaps.
// ctx bounds the start only: the background work runs until close.
func (c *control) start(ctx context.Context) error {
	if err := c.nets.Start(ctx); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// The seeds' join lives as long as the control plane: close cancels it.
	ctx, c.cancel = context.WithCancel(context.Background())
	if len(c.seeds) > 0 {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			if err := c.g.Join(ctx, c.seeds); err != nil && !errors.Is(err, gossip.ErrClosed) && ctx.Err() == nil {
				c.log.Warn("join", zap.Strings("seeds", c.seeds), zap.Error(err))
			}
		}()
	}
	return nil
}

// learned returns the routes learned from snap (network.Manager.Learned),
// skipping prefixes already in taken and marking those it returns.
func (c *control) learned(snap catalog.Snapshot, taken map[netip.Prefix]bool) []router.Route {
	var out []router.Route
	for _, r := range c.nets.Learned(snap) {
		if taken[r.Prefix] {
			continue
		}
		taken[r.Prefix] = true
		out = append(out, router.Route{Prefix: r.Prefix, VTEP: r.VTEP, VNI: r.VNI, Owner: r.Owner})
	}
	return out
}

// refusedRoutes is a copy of the route refusal counters, by reason.
func (c *control) refusedRoutes() map[string]uint64 { return c.nets.Refused() }

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
	c.nets.Close()
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
	if static := n.cfg.Addrs(); len(static) > 0 {
		nets = append(nets, router.Network{VNI: n.cfg.VNI, Addrs: static})
		addrs = append(addrs, static...)
	}
	if n.ctl != nil {
		for _, j := range n.ctl.joinedList() {
			nets = append(nets, n.routerNetwork(j))
			addrs = append(addrs, j.Prefixes()...)
		}
	}
	addrs = append(addrs, n.dnsPrefixes()...)
	if err := n.rt.SetNetworks(nets); err != nil {
		return err
	}
	defer n.rec.poke() // the DNS addresses and the zone follow
	if as, ok := n.dev.(stack.AddressSetter); ok {
		return as.SetAddresses(addrs)
	}
	return nil
}

// routerNetwork is the router's view of joined network j: the node's
// addresses (one per family) and, with DNS, the network's DNS addresses,
// which the endpoints ask (the attachment holds them).
func (n *Node) routerNetwork(j joinedNet) router.Network {
	nw := router.Network{VNI: j.VNI, Addrs: j.Prefixes()}
	if n.dns != nil && n.mode != config.ModeTAP {
		for _, c := range j.CIDRs {
			nw.Local = append(nw.Local, ipam.DNSAddr(c))
		}
	}
	return nw
}

var errNoGossip = fault.Unavailable("this node runs without gossip (static mode); start it with --gossip IP:PORT to use networks and peers")

// createNetwork defines a network cluster-wide (network.Manager.Create).
func (c *control) createNetwork(ctx context.Context, req api.CreateNetwork) (api.NetworkInfo, error) {
	ni, err := c.nets.Create(ctx, network.CreateRequest{Name: req.Name, CIDRs: req.Prefixes(), VNI: req.VNI})
	if err != nil {
		return api.NetworkInfo{}, err
	}
	return apiNetworkInfo(ni), nil
}

// joinNetwork attaches the node to a network (network.Manager.Join).
func (c *control) joinNetwork(ctx context.Context, name string) (api.NetworkInfo, error) {
	ni, err := c.nets.Join(ctx, name)
	if err != nil {
		return api.NetworkInfo{}, err
	}
	return apiNetworkInfo(ni), nil
}

// leaveNetwork detaches the node from a network (network.Manager.Leave).
func (c *control) leaveNetwork(name string) error { return c.nets.Leave(name) }

// networks lists the cluster's networks and the joined ones
// (network.Manager.List).
func (c *control) networks() []api.NetworkInfo {
	out := []api.NetworkInfo{}
	for _, ni := range c.nets.List() {
		out = append(out, apiNetworkInfo(ni))
	}
	return out
}

// apiNetworkInfo is ni as the API says it.
func apiNetworkInfo(ni network.Info) api.NetworkInfo {
	out := api.NetworkInfo{Name: ni.Name, CIDRs: strs(ni.CIDRs), VNI: ni.VNI, Creator: ni.Creator, DNSAddrs: strs(ni.DNS), Joined: ni.Joined, Members: ni.Members}
	if len(out.CIDRs) > 0 {
		out.CIDR = out.CIDRs[0]
	}
	if len(out.DNSAddrs) > 0 {
		out.DNS = out.DNSAddrs[0]
	}
	if ni.Joined && len(ni.Addrs) > 0 {
		out.Addrs = strs(ni.Addrs)
		out.Addr = out.Addrs[0]
	}
	return out
}

// strs is xs as strings.
func strs[T fmt.Stringer](xs []T) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = x.String()
	}
	return out
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
