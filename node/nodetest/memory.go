package nodetest

import (
	"net/netip"
	"sync"

	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/gossip/gossiptest"
	"github.com/overlayd/overlayd/node"
	"github.com/overlayd/overlayd/udp/udptest"
)

// Memory is an in-memory network for the nodes of one process: an
// underlay (udptest) and a gossip network (gossiptest), so that a cluster
// opens no socket for either. Each node name gets a host address in
// 198.19.0.0/16 (the benchmarking range, never bound), kept when the node
// restarts under the same name, as a host keeps its IP. It is safe for
// concurrent use.
type Memory struct {
	Underlay *udptest.Network
	Gossip   *gossiptest.Network

	mu    sync.Mutex            // guards hosts
	hosts map[string]netip.Addr // node name → its host address
}

// MemoryMTU is the MTU of Memory's underlay, as Ethernet's.
const MemoryMTU = 1500

// NewMemory returns an empty network.
func NewMemory() *Memory {
	return &Memory{Underlay: udptest.NewNetwork(), Gossip: gossiptest.NewNetwork(), hosts: map[string]netip.Addr{}}
}

// Attach puts the node cfg describes on m and returns the options that
// give node.New its parts there: an underlay Conn at the node's host,
// port 4789, which becomes cfg.Listen (the VTEP), and, when cfg turns
// gossip on, a gossip transport whose address becomes cfg.Gossip.Listen.
// An underlay MTU left to be found (0) becomes MemoryMTU. Call it once
// per New, after the node of the same name, if any, has stopped.
func (m *Memory) Attach(cfg *config.Config) []node.Option {
	vtep := netip.AddrPortFrom(m.host(cfg.Name), config.DefaultPort)
	cfg.Listen = vtep
	if cfg.Underlay.MTU == 0 {
		cfg.Underlay.MTU = MemoryMTU
	}
	opts := []node.Option{WithUnderlay(m.Underlay.Conn(vtep))}
	if cfg.Gossip.Enabled() {
		t := m.Gossip.NewTransport(cfg.Name)
		cfg.Gossip.Listen = netip.MustParseAddrPort(m.Gossip.Addr(cfg.Name))
		opts = append(opts, WithTransport(t))
	}
	return opts
}

// host returns the host address of the node called name.
func (m *Memory) host(name string) netip.Addr {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.hosts[name]
	if !ok {
		k := len(m.hosts) + 1
		a = netip.AddrFrom4([4]byte{198, 19, byte(k >> 8), byte(k)})
		m.hosts[name] = a
	}
	return a
}
