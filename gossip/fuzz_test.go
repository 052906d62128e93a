package gossip

import (
	"net/netip"
	"testing"

	"github.com/hashicorp/memberlist"
)

func FuzzDecodeMeta(f *testing.F) {
	f.Add(Meta{VTEP: netip.MustParseAddrPort("10.0.0.1:4789"), Version: "v1"}.encode())
	f.Add(Meta{VTEP: netip.MustParseAddrPort("[fe80::1%eth0]:4789"), leaving: true}.encode())
	f.Add(Meta{}.encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMeta(b)
		if err != nil || len(b) == 0 {
			return
		}
		again, err := decodeMeta(m.encode())
		if err != nil || again != m {
			t.Fatalf("decodeMeta(%x) = %+v; re-encoded it decodes to %+v, %v", b, m, again, err)
		}
	})
}

// FuzzGuard: whatever memberlist hands the guard, it answers without
// panicking, and what it accepts is a valid overlayd member.
func FuzzGuard(f *testing.F) {
	cfg, err := Options{Name: "self"}.config()
	if err != nil {
		f.Fatal(err)
	}
	gd := cfg.guard
	meta := Meta{VTEP: netip.MustParseAddrPort("10.0.0.1:4789"), Version: "v1"}.encode()
	f.Add("n1", []byte{10, 0, 0, 1}, uint16(7946), meta, []byte{1, 5, 2, 0, 0, 0})
	f.Add("\xff", []byte{1, 2, 3}, uint16(0), []byte{1}, []byte{})
	f.Fuzz(func(t *testing.T, name string, addr []byte, port uint16, meta, vsn []byte) {
		n := &memberlist.Node{Name: name, Addr: addr, Port: port, Meta: meta}
		if len(vsn) >= 6 {
			n.PMin, n.PMax, n.PCur, n.DMin, n.DMax, n.DCur = vsn[0], vsn[1], vsn[2], vsn[3], vsn[4], vsn[5]
		}
		if gd.NotifyAlive(n) != nil {
			return
		}
		m, err := decodeMeta(meta)
		if CheckName(name) != nil || err != nil || m.check() != nil || !nodeAddr(n).IsValid() || port == 0 || n.PCur != cfg.ml.ProtocolVersion {
			t.Fatalf("accepted %+v", n)
		}
		gd.NotifyMerge([]*memberlist.Node{n})
	})
}
