package bench_test

import (
	"fmt"
	"testing"

	"github.com/overlayd/overlayd/vxlan"
)

// innerSizes are the inner packet sizes the VXLAN benchmarks run at: a
// minimal frame, a mid-size packet, a full 1450-MTU packet, and a jumbo /
// GSO-sized one. Encap and Decap do not touch the payload, so their time
// should not grow with size.
var innerSizes = []int{64, 512, 1400, 8192}

// headroom is the offset of the inner packet in each buffer, as the router
// reserves it (any value >= vxlan.EncapLen).
const headroom = 64

var (
	benchDst = vxlan.MAC{0x0a, 0x58, 10, 0, 0, 2}
	benchSrc = vxlan.MAC{0x0a, 0x58, 10, 0, 0, 1}
)

func innerBuf(size int) []byte {
	buf := make([]byte, headroom+size)
	buf[headroom] = 0x45
	return buf
}

func BenchmarkEncap(b *testing.B) {
	for _, size := range innerSizes {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			buf := innerBuf(size)
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				vxlan.Encap(buf, headroom, size, 42, benchDst, benchSrc, vxlan.EtherTypeIPv4)
			}
		})
	}
}

func BenchmarkDecap(b *testing.B) {
	for _, size := range innerSizes {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			pkt := vxlan.Encap(innerBuf(size), headroom, size, 42, benchDst, benchSrc, vxlan.EtherTypeIPv4)
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				vni, frame, err := vxlan.Decap(pkt)
				if err != nil || vni != 42 || frame.Type() != vxlan.EtherTypeIPv4 {
					b.Fatalf("Decap = %d, %v, want 42, nil", vni, err)
				}
			}
		})
	}
}

// BenchmarkEncapDecap is one packet's VXLAN work on both nodes: encapsulate
// on the sender, check and strip on the receiver.
func BenchmarkEncapDecap(b *testing.B) {
	for _, size := range innerSizes {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			buf := innerBuf(size)
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				pkt := vxlan.Encap(buf, headroom, size, 42, benchDst, benchSrc, vxlan.EtherTypeIPv4)
				vni, frame, err := vxlan.Decap(pkt)
				if err != nil || vni != 42 || frame.Dst() != benchDst || len(frame.Payload()) != size {
					b.Fatalf("Decap(Encap) = %d, %v, want 42, nil", vni, err)
				}
			}
		})
	}
}
