package e2e

import "testing"

// Net is what an in-process cluster's nodes talk over.
type Net int

const (
	// Loopback is real sockets on 127.0.0.1: UDP for VXLAN, memberlist's
	// UDP and TCP for gossip.
	Loopback Net = iota
	// Memory is the in-memory fakes (nodetest.Memory: udptest for the
	// underlay, gossiptest for gossip): no socket for either.
	Memory
)

// Nets are the networks an in-process test runs on (OnEachNet).
var Nets = []Net{Loopback, Memory}

func (n Net) String() string {
	if n == Memory {
		return "memory"
	}
	return "loopback"
}

// OnEachNet runs test once on each of Nets, as subtests named after them.
func OnEachNet(t *testing.T, test func(t *testing.T, over Net)) {
	for _, over := range Nets {
		t.Run(over.String(), func(t *testing.T) { test(t, over) })
	}
}
