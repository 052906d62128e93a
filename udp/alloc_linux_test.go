package udp_test

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/overlayd/overlayd/udp"
)

// TestZeroAllocs: in the steady state WriteBatch and ReadBatch allocate
// nothing, with and without offload and with several source ports, over
// IPv4 and IPv6.
func TestZeroAllocs(t *testing.T) {
	for _, lo := range loopbacks {
		t.Run(lo.Addr().String(), func(t *testing.T) { testZeroAllocs(t, lo) })
	}
}

func testZeroAllocs(t *testing.T, lo netip.AddrPort) {
	const batch = 64
	for _, tc := range []struct {
		disable bool
		ports   int
		size    int
	}{{false, 1, 1400}, {true, 1, 1400}, {false, 4, 1400}, {true, 4, 1400}, {false, 1, 100}} {
		t.Run(fmt.Sprintf("%s/ports=%d/size=%d", offloadName(tc.disable), tc.ports, tc.size), func(t *testing.T) {
			opts := udp.Options{DisableOffload: tc.disable, SourcePorts: tc.ports}
			rx := listen(t, lo, opts)
			tx := listen(t, lo, opts)
			out := make([][]byte, batch)
			dsts := make([]netip.AddrPort, batch)
			flows := make([]uint32, batch)
			for i := range out {
				out[i] = payload(i, tc.size)
				dsts[i] = rx.LocalAddr()
				flows[i] = uint32(i % 3)
			}
			in := make([][]byte, batch)
			for i := range in {
				in[i] = make([]byte, 65535)
			}
			sizes := make([]int, batch)
			srcs := make([]netip.AddrPort, batch)
			var failed error
			roundTrip := func() {
				if n, err := tx.WriteBatch(out, dsts, flows); n != batch || err != nil {
					failed = fmt.Errorf("WriteBatch = %d, %v", n, err)
					return
				}
				for got := 0; got < batch; {
					n, err := rx.ReadBatch(in, sizes, srcs)
					if err != nil {
						failed = fmt.Errorf("ReadBatch: %v", err)
						return
					}
					got += n
				}
			}
			roundTrip() // warm up
			allocs := testing.AllocsPerRun(200, roundTrip)
			if failed != nil {
				t.Fatal(failed)
			}
			if allocs != 0 {
				t.Errorf("WriteBatch+ReadBatch of %d datagrams: %v allocs/op, want 0", batch, allocs)
			}
			writeOnly := testing.AllocsPerRun(50, func() { tx.WriteBatch(out, dsts, flows) })
			if writeOnly != 0 {
				t.Errorf("WriteBatch of %d datagrams: %v allocs/op, want 0", batch, writeOnly)
			}
		})
	}
}
