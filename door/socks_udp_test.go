package door

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/overlayd/overlayd/internal/testutil"
)

// hostPackets stands in for the overlay's UDP: sockets on 127.0.0.1.
type hostPackets struct{}

func (hostPackets) ListenPacket(network, address string) (net.PacketConn, error) {
	return net.ListenPacket("udp4", "127.0.0.1:0")
}

func TestSOCKSUDPAssociateDrops(t *testing.T) {
	noLeaks(t)
	opts, d := testOptions(t)
	opts.PacketListener = hostPackets{}
	s := startSOCKS(t, opts)
	echo := netip.MustParseAddrPort(d.udpEcho)

	c, rep, bnd := socksRequestReply(t, s.Addr().String(), []byte{5, cmdAssociate, 0, atypIPv4, 0, 0, 0, 0, 0, 0})
	if rep != 0 {
		t.Fatalf("UDP ASSOCIATE: REP %#x", rep)
	}
	defer c.Close()
	relay := netip.AddrPortFrom(bnd.IP, bnd.Port)
	uc, err := net.Dial("udp", relay.String())
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	hdr := func(frag byte, a socksAddr) []byte {
		h := appendDatagramHeader(nil, a)
		h[2] = frag
		return h
	}
	// A good datagram pins the client and comes back with the echo's
	// address in front.
	msg := []byte("ping")
	uc.Write(append(hdr(0, addrPortToSocks(echo)), msg...))
	uc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	n, err := uc.Read(buf)
	if want := append(hdr(0, addrPortToSocks(echo)), msg...); err != nil || !bytes.Equal(buf[:n], want) {
		t.Fatalf("relayed echo = %x, %v; want %x", buf[:n], err, want)
	}

	drops := []struct {
		what string
		send func()
		r    Reason
	}{
		{"fragment", func() { uc.Write(append(hdr(1, addrPortToSocks(echo)), msg...)) }, ReasonFragmented},
		{"short header", func() { uc.Write([]byte{0, 0}) }, ReasonMalformed},
		{"truncated address", func() { uc.Write([]byte{0, 0, 0, atypIPv6, 1, 2}) }, ReasonMalformed},
		{"unknown address type", func() { uc.Write([]byte{0, 0, 0, 9, 1, 2}) }, ReasonUnsupported},
		{"unresolvable name", func() { uc.Write(append(hdr(0, socksAddr{Name: "nope.test", Port: 53}), msg...)) }, ReasonResolve},
		{"another source", func() {
			other, err := net.Dial("udp", relay.String())
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			other.Write(append(hdr(0, addrPortToSocks(echo)), msg...))
		}, ReasonForeign},
	}
	for _, dr := range drops {
		before := s.Stats().Dropped[dr.r]
		dr.send()
		testutil.EventuallyEqual(t, 5*time.Second, dr.what+" dropped as "+dr.r.String(), func() uint64 { return s.Stats().Dropped[dr.r] }, before+1)
	}
	if st := s.Stats(); st.OutPackets != 1 || st.InPackets != 1 {
		t.Errorf("stats = %+v; want one datagram each way", st)
	}
	c.Close()
	testutil.EventuallyEqual(t, 5*time.Second, "the association to end", func() int64 { return s.Stats().Active }, 0)
}
