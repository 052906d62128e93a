package vxlan_test

import (
	"fmt"
	"net/netip"

	"github.com/overlayd/overlayd/vxlan"
)

func ExampleEncap() {
	// The attachment read an IP packet at offset 64 of buf, leaving headroom.
	const offset = 64
	buf := make([]byte, 2048)
	size := copy(buf[offset:], []byte{0x45, 0, 0, 20 /* ... */})

	src := vxlan.NodeMAC(netip.MustParseAddr("10.0.0.1"))
	dst := vxlan.NodeMAC(netip.MustParseAddr("10.0.0.2"))
	pkt := vxlan.Encap(buf, offset, size, 42, dst, src, vxlan.EtherTypeIPv4)
	// pkt is the UDP payload for the peer's VTEP.

	vni, frame, err := vxlan.Decap(pkt)
	fmt.Println(len(pkt), vni, err, frame.Src(), frame.Dst(), frame.Payload())
	// Output: 26 42 <nil> 0a:58:0a:00:00:01 0a:58:0a:00:00:02 [69 0 0 20]
}
