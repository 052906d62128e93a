package e2e

import (
	"net"
	"net/netip"
	"testing"
)

// Net is what an in-process cluster's nodes talk over.
type Net int

const (
	// Loopback is real sockets on 127.0.0.1: UDP for VXLAN, memberlist's
	// UDP and TCP for gossip.
	Loopback Net = iota
	// Memory is the in-memory fakes (nodetest.Memory: udptest for the
	// underlay, gossiptest for gossip): no socket for either.
	Memory
	// Loopback6 is Loopback on [::1]: an IPv6 underlay, gossip over IPv6.
	Loopback6
)

// Nets are the networks an in-process test runs on (OnEachNet).
var Nets = []Net{Loopback, Memory, Loopback6}

func (n Net) String() string {
	switch n {
	case Memory:
		return "memory"
	case Loopback6:
		return "loopback6"
	}
	return "loopback"
}

// any is the address, port 0, that a node binds its sockets to on n:
// 127.0.0.1, or ::1 on Loopback6 (the in-memory fakes attach their own).
func (n Net) any() netip.AddrPort {
	if n == Loopback6 {
		return netip.AddrPortFrom(netip.IPv6Loopback(), 0)
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), 0)
}

// OnEachNet runs test once on each of Nets, as subtests named after them.
func OnEachNet(t *testing.T, test func(t *testing.T, over Net)) {
	for _, over := range Nets {
		t.Run(over.String(), func(t *testing.T) { test(t, over) })
	}
}

// sendUnderlay sends one datagram b to vtep from the underlay IP of a
// live node other than vtep's, on a port of its own: from 127.0.0.1 on
// Loopback, from a Conn of the in-memory underlay on Memory.
func (c *GossipCluster) sendUnderlay(t testing.TB, vtep netip.AddrPort, b []byte) {
	t.Helper()
	if c.mem == nil {
		conn, err := net.Dial("udp", vtep.String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.Write(b); err != nil {
			t.Fatal(err)
		}
		return
	}
	var from netip.Addr
	for _, i := range c.Live() {
		if v := c.Node(i).VTEP(); v != vtep {
			from = v.Addr()
			break
		}
	}
	conn := c.mem.Underlay.Conn(netip.AddrPortFrom(from, 0))
	defer conn.Close()
	if _, err := conn.WriteBatch([][]byte{b}, []netip.AddrPort{vtep}, nil); err != nil {
		t.Fatal(err)
	}
}
