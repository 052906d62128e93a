package dns

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"

	mdns "github.com/miekg/dns"
)

// Addrs serves what Set names, closes what it no longer names, tries a
// failed listen again at the next Set, and Close closes the rest.
func TestAddrs(t *testing.T) {
	s := newTestServer(t, testZoneData())
	a1, a2 := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
	opened := map[netip.Addr][]Way{}
	fail := map[netip.Addr]bool{a2: true}
	listen := func(ap netip.AddrPort) ([]Way, error) {
		if fail[ap.Addr()] {
			return nil, errors.New("not yet")
		}
		// Port 0: the test reads the port the kernel picked.
		pc, err := net.ListenPacket("udp", netip.AddrPortFrom(ap.Addr(), 0).String())
		if err != nil {
			return nil, err
		}
		ln, err := net.Listen("tcp", netip.AddrPortFrom(ap.Addr(), 0).String())
		if err != nil {
			pc.Close()
			return nil, err
		}
		w := []Way{{Packet: pc, Stream: ln, Allowed: func(netip.Addr) bool { return true }}}
		opened[ap.Addr()] = w
		return w, nil
	}
	as := s.ServeAddrs(53, listen, nil)
	as.Set([]netip.Addr{a1, a2})
	if got := as.List(); !slices.Equal(got, []netip.Addr{a1}) {
		t.Fatalf("served %v, want [%v] (%v's listen fails)", got, a1, a2)
	}
	w1 := opened[a1][0]
	if r := exchange(t, "udp", w1.Packet.LocalAddr().String(), ask("web.default.overlay.", mdns.TypeA)); len(r.Answer) != 1 {
		t.Errorf("answer over a served way: %v", r)
	}
	fail[a2] = false
	as.Set([]netip.Addr{a1, a2})
	if got := as.List(); !slices.Equal(got, []netip.Addr{a1, a2}) {
		t.Fatalf("served %v after the retry, want both", got)
	}
	as.Set([]netip.Addr{a2})
	if got := as.List(); !slices.Equal(got, []netip.Addr{a2}) {
		t.Fatalf("served %v, want [%v]", got, a2)
	}
	if _, err := w1.Packet.WriteTo([]byte{0}, w1.Packet.LocalAddr()); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write on a dropped address's socket: %v, want it closed", err)
	}
	as.Close()
	w2 := opened[a2][0]
	if _, err := w2.Stream.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("accept after Close: %v, want it closed", err)
	}
	as.Set([]netip.Addr{a1})
	if got := as.List(); len(got) != 0 {
		t.Errorf("served %v after Close", got)
	}
}
