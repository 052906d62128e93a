package dns

import (
	"net"
	"net/netip"
	"slices"
	"sync"

	"go.uber.org/zap"
)

// Way is one way into a served address: a UDP and a TCP socket, and the
// access check of the sources that arrive through them (see
// ServePacketAllowed).
type Way struct {
	Packet  net.PacketConn
	Stream  net.Listener
	Allowed func(netip.Addr) bool
}

// ListenFunc opens the ways into ap. On error it leaves nothing open.
type ListenFunc func(ap netip.AddrPort) ([]Way, error)

// Addrs serves a changing set of addresses (a node's networks' DNS
// addresses) on one Server: Set listens on the new ones, closes the ones
// gone, and tries the ones that failed again. All methods are safe for
// concurrent use.
type Addrs struct {
	srv    *Server
	port   uint16
	listen ListenFunc
	log    *zap.Logger

	mu      sync.Mutex // guards serving, failing, closed
	serving map[netip.Addr][]Way
	failing map[netip.Addr]string // address → the last listen error logged
	closed  bool
	wg      sync.WaitGroup
}

// ServeAddrs returns an empty set of addresses served on port, opened
// with listen; log (nil: none) says which are served and which failed.
func (s *Server) ServeAddrs(port uint16, listen ListenFunc, log *zap.Logger) *Addrs {
	if log == nil {
		log = zap.NewNop()
	}
	return &Addrs{srv: s, port: port, listen: listen, log: log,
		serving: map[netip.Addr][]Way{}, failing: map[netip.Addr]string{}}
}

// Set serves exactly addrs. An address whose listen fails is logged once
// per distinct error and tried again at the next Set: it may not be on
// its device yet, or its port may need a privilege.
func (a *Addrs) Set(addrs []netip.Addr) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return
	}
	want := map[netip.Addr]bool{}
	for _, ad := range addrs {
		want[ad] = true
	}
	for ad, ways := range a.serving {
		if !want[ad] {
			CloseWays(ways)
			delete(a.serving, ad)
			a.log.Info("dns address no longer served", zap.Stringer("addr", ad))
		}
	}
	for ad := range a.failing {
		if !want[ad] {
			delete(a.failing, ad)
		}
	}
	for ad := range want {
		if a.serving[ad] != nil {
			continue
		}
		ways, err := a.listen(netip.AddrPortFrom(ad, a.port))
		if err != nil {
			if a.failing[ad] != err.Error() {
				a.failing[ad] = err.Error()
				a.log.Warn("dns address not served; trying again every second", zap.Stringer("addr", ad), zap.Error(err))
			}
			continue
		}
		delete(a.failing, ad)
		a.serving[ad] = ways
		for _, w := range ways {
			a.wg.Add(2)
			go func() { defer a.wg.Done(); a.srv.ServePacketAllowed(w.Packet, w.Allowed) }()
			go func() { defer a.wg.Done(); a.srv.ServeListenerAllowed(w.Stream, w.Allowed) }()
		}
		a.log.Info("dns address served", zap.Stringer("addr", ad))
	}
}

// List returns the addresses served now, sorted.
func (a *Addrs) List() []netip.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]netip.Addr, 0, len(a.serving))
	for ad := range a.serving {
		out = append(out, ad)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// Close stops serving every address and waits for their serve loops; Set
// does nothing afterwards. Safe to call twice.
func (a *Addrs) Close() {
	a.mu.Lock()
	a.closed = true
	for ad, ways := range a.serving {
		CloseWays(ways)
		delete(a.serving, ad)
	}
	a.mu.Unlock()
	a.wg.Wait()
}

// CloseWays closes ways (for a ListenFunc that fails half way).
func CloseWays(ways []Way) {
	for _, w := range ways {
		w.Packet.Close()
		w.Stream.Close()
	}
}
