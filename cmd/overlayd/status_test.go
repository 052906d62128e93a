package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/router"
)

// status names each network, shows the VTEP peers send to beside the
// listen address, heads the doors' limit column apart from their
// failures, and says what each drop reason counts.
func TestStatusWording(t *testing.T) {
	st := api.Status{
		Name: "a", Version: "dev", Mode: "tun", Device: "ovl0", MTU: 1450, PathMTU: 1450,
		VTEP: "0.0.0.0:4789", VTEPAdvertised: "192.0.2.1:4789",
		Networks: []api.Network{{VNI: 42, Addr: "10.200.1.1/16"}, {Name: "blue", VNI: 51541, Addr: "10.10.0.2/16"}},
		Doors:    []api.Door{{Kind: "socks5", Addr: "127.0.0.1:1080", Accepted: 5, Refused: 0, Failed: map[string]uint64{"refused": 3}}},
		Traffic:  api.Traffic{Drops: map[string]uint64{"unsupported": 3, "not_for_us": 1}},
	}
	var b bytes.Buffer
	printStatus(&b, st)
	out := b.String()
	for _, want := range []string{
		"network  static: vni 42, address 10.200.1.1/16\n",
		"network  blue: vni 51541, address 10.10.0.2/16\n",
		"vtep     0.0.0.0:4789, peers send to 192.0.2.1:4789 (GSO off, GRO off, 0 source ports)\n",
		"DOOR    LISTEN          TARGET  ACCEPTED  OVER LIMIT  ACTIVE  OUT BYTES  IN BYTES  FAILED\n",
		"socks5  127.0.0.1:1080  -       5         0           0       0          0         refused 3\n",
		"  not_for_us   1  to an overlay address (or MAC) this node does not hold\n",
		"  unsupported  3  neither IP (4 or 6) nor ARP: another EtherType or IP version; the overlay carries IPv4 and IPv6\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "REFUSED") || strings.Contains(out, "network  vni") {
		t.Errorf("status has the old wording:\n%s", out)
	}
	// Without gossip (or when the listen IP is the one advertised) the
	// VTEP is printed once.
	st.VTEPAdvertised = ""
	b.Reset()
	printStatus(&b, st)
	if !strings.Contains(b.String(), "vtep     0.0.0.0:4789 (GSO") {
		t.Errorf("status without an advertised VTEP:\n%s", b.String())
	}
}

// Every drop reason the router counts has its meaning in status.
func TestEveryDropReasonExplained(t *testing.T) {
	for r := router.DropReason(1); r < router.NumDropReasons; r++ {
		if dropMeaning[r.String()] == "" {
			t.Errorf("drop reason %s has no meaning in status (dropMeaning)", r)
		}
	}
}
