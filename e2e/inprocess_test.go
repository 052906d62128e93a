package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/internal/testutil"
	"github.com/overlayd/overlayd/router"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) { RemoveBinary() }))
}

// Every pair of three nodes exchanges TCP and UDP in both directions.
func TestAllPairsTCPUDP(t *testing.T) {
	OnEachNet(t, func(t *testing.T, over Net) { testAllPairsTCPUDP(t, ClusterOptions{Net: over}) })
}

// The same with IPv6 overlay addresses, over each net (the IPv4 underlay,
// the in-memory one and [::1]).
func TestAllPairsTCPUDP6(t *testing.T) {
	OnEachNet(t, func(t *testing.T, over Net) { testAllPairsTCPUDP(t, ClusterOptions{Net: over, IPv6: true}) })
}

func testAllPairsTCPUDP(t *testing.T, opts ClusterOptions) {
	c := NewCluster(t, 3, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	for j, srv := range c.Nodes {
		ln, err := srv.Listen("tcp", ":7000")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				go func() { defer conn.Close(); io.Copy(conn, conn) }()
			}
		}()
		pc, err := srv.ListenPacket("udp", ":7001")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		go func() {
			buf := make([]byte, 2048)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				pc.WriteTo(append([]byte(fmt.Sprintf("node%d:", j)), buf[:n]...), from)
			}
		}()
	}
	for i, cli := range c.Nodes {
		for j, srv := range c.Nodes {
			if i == j {
				continue
			}
			dst := srv.Addr().Addr()
			conn, err := cli.Dial(ctx, "tcp", netip.AddrPortFrom(dst, 7000).String())
			if err != nil {
				t.Fatalf("node%d → node%d tcp dial: %v", i, j, err)
			}
			msg := []byte(fmt.Sprintf("hello from node%d to node%d", i, j))
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := conn.Write(msg); err != nil {
				t.Fatalf("node%d → node%d tcp write: %v", i, j, err)
			}
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(conn, got); err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("node%d → node%d tcp echo = %q, %v; want %q", i, j, got, err, msg)
			}
			conn.Close()

			uc, err := cli.Dial(ctx, "udp", netip.AddrPortFrom(dst, 7001).String())
			if err != nil {
				t.Fatalf("node%d → node%d udp dial: %v", i, j, err)
			}
			want := fmt.Sprintf("node%d:%s", j, msg)
			var reply string
			for try := 0; try < 20 && reply != want; try++ { // UDP may lose the first datagram while ARP resolves
				uc.Write(msg)
				uc.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
				buf := make([]byte, 2048)
				if n, err := uc.Read(buf); err == nil {
					reply = string(buf[:n])
				}
			}
			uc.Close()
			if reply != want {
				t.Fatalf("node%d → node%d udp echo = %q, want %q", i, j, reply, want)
			}
		}
	}
}

// 64 MiB cross the overlay byte-exact, and the counters add up: what one
// node sent is what the other received, plus what the kernel dropped.
// Over real sockets only: the books it balances are a real UDP socket's
// (the kernel's drops at it, its GRO batches). On 127.0.0.1 with IPv4
// inside, and on [::1] with IPv6 inside.
func TestLargeTransferByteExact(t *testing.T) {
	t.Run("loopback", func(t *testing.T) { testLargeTransferByteExact(t, ClusterOptions{}) })
	t.Run("loopback6-ipv6", func(t *testing.T) { testLargeTransferByteExact(t, ClusterOptions{Net: Loopback6, IPv6: true}) })
}

func testLargeTransferByteExact(t *testing.T, opts ClusterOptions) {
	size := 64 << 20
	if testing.Short() {
		size = 8 << 20
	}
	c := NewCluster(t, 2, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	data := make([]byte, size)
	fill(data, 1)
	want := sha256.Sum256(data)
	bytesBefore := c.Status(t, 0).Traffic.Outbound.Bytes

	ln, err := c.Nodes[1].Listen("tcp", ":9000")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		sum [32]byte
		n   int64
		err error
	}
	res := make(chan result, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			res <- result{err: err}
			return
		}
		defer conn.Close()
		h := sha256.New()
		n, err := io.Copy(h, conn)
		var r result
		copy(r.sum[:], h.Sum(nil))
		r.n, r.err = n, err
		res <- r
	}()
	conn, err := c.Nodes[0].Dial(ctx, "tcp", netip.AddrPortFrom(c.Nodes[1].Addr().Addr(), 9000).String())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := conn.Write(data); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	r := <-res
	elapsed := time.Since(start)
	if r.err != nil || r.n != int64(size) || r.sum != want {
		t.Fatalf("received %d bytes (err %v), sha256 match %v; want %d bytes intact", r.n, r.err, r.sum == want, size)
	}
	t.Logf("%d MiB in %v (%.0f Mbit/s, informational)", size>>20, elapsed.Round(time.Millisecond), float64(size)*8/elapsed.Seconds()/1e6)

	// Let the last ACKs and FINs land, then compare the books: what the
	// nodes sent is what they received, plus what they dropped, plus what
	// the kernel dropped at their sockets (kernel_rcvbuf).
	books := func() (s0, s1 api.Status, sent, got, ours, kern uint64) {
		s0, s1 = c.Status(t, 0), c.Status(t, 1)
		sent = s0.Traffic.Outbound.Packets + s1.Traffic.Outbound.Packets
		got = s0.Traffic.Inbound.Packets + s1.Traffic.Inbound.Packets
		for _, st := range []api.Status{s0, s1} {
			for reason, v := range st.Traffic.Drops {
				if reason == router.DropKernelRcvbuf.String() {
					kern += v
				} else {
					ours += v
				}
			}
		}
		return
	}
	// Wait for the books to balance; the checks below say how they do not
	// if they still do not after 5s.
	var s0, s1 api.Status
	var sent, got, ours, kern uint64
	testutil.Poll(5*time.Second, func() error {
		s0, s1, sent, got, ours, kern = books()
		if s0.Traffic.Outbound.Bytes-bytesBefore >= uint64(size) && sent == got+ours+kern {
			return nil
		}
		return errors.New("not balanced")
	})
	for _, st := range []api.Status{s0, s1} {
		for reason, v := range st.Traffic.Drops {
			t.Logf("%s drop %s: %d", st.Name, reason, v)
		}
	}
	if s0.Traffic.Outbound.Bytes < uint64(size) || s1.Traffic.Inbound.Bytes < uint64(size) {
		t.Errorf("node0 sent %d bytes, node1 received %d; want at least %d each", s0.Traffic.Outbound.Bytes, s1.Traffic.Inbound.Bytes, size)
	}
	lost := int64(sent) - int64(got) - int64(ours) - int64(kern)
	t.Logf("sent %d packets, received %d, dropped by us %d, by the kernel %d", sent, got, ours, kern)
	// The kernel counts a coalesced (GRO) batch it drops once; a batch
	// holds at most 64 datagrams.
	if lost < 0 || lost > 63*int64(kern) {
		t.Errorf("counters do not add up: sent %d = received %d + dropped %d + kernel %d does not hold (unaccounted %d)", sent, got, ours, kern, lost)
	}
}

// Garbage and truncated datagrams sprayed at a VTEP are dropped and
// counted, and good traffic keeps flowing meanwhile. Loopback only: the
// spray comes from a host UDP socket, and what it overruns is counted in
// the VTEP socket's kernel buffer (kernel_rcvbuf).
func TestGarbageFloodKeepsTrafficFlowing(t *testing.T) {
	c := NewCluster(t, 2, ClusterOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	victim := c.Nodes[1].VTEP()

	spray, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer spray.Close()
	// Spray a fixed number of datagrams in bursts while echo traffic runs
	// until the spray is done.
	const total = 20000
	sent := 0
	sprayed := make(chan struct{})
	go func() {
		defer close(sprayed)
		rng := rand.New(rand.NewPCG(3, 4))
		buf := make([]byte, 1500)
		for sent < total {
			for range 100 {
				n := rng.IntN(80)
				fill(buf[:n], rng.Uint64())
				switch rng.IntN(4) {
				case 0: // a valid-looking VXLAN header with a foreign VNI
					if n >= 8 {
						buf[0], buf[4], buf[5], buf[6] = 0x08, 0xde, 0xad, 0x01
					}
				case 1: // I flag clear
					if n >= 1 {
						buf[0] = 0
					}
				}
				if _, err := spray.WriteToUDPAddrPort(buf[:n], victim); err == nil {
					sent++
				}
			}
			time.Sleep(500 * time.Microsecond) // a high rate, not a socket-buffer overrun
		}
	}()

	ln, err := c.Nodes[1].Listen("tcp", ":9100")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer conn.Close(); io.Copy(conn, conn) }()
		}
	}()
	payload := bytes.Repeat([]byte("overlay"), 1<<15)
	rounds := 0
	for done := false; !done; rounds++ {
		select {
		case <-sprayed:
			done = true
		default:
		}
		conn, err := c.Nodes[0].Dial(ctx, "tcp", c.Nodes[1].Addr().Addr().String()+":9100")
		if err != nil {
			t.Fatalf("dial under flood (round %d): %v", rounds, err)
		}
		go func() { conn.Write(payload); conn.(interface{ CloseWrite() error }).CloseWrite() }()
		echoed, err := io.ReadAll(conn)
		conn.Close()
		if err != nil || !bytes.Equal(echoed, payload) {
			t.Fatalf("echo under flood (round %d): %d of %d bytes, err %v", rounds, len(echoed), len(payload), err)
		}
	}
	t.Logf("%d echo rounds of %d bytes completed during the flood", rounds, len(payload))

	// Every sprayed datagram is a counted drop (short, flags, unknown VNI
	// or malformed), unless the kernel dropped it first at node1's socket
	// for want of room (kernel_rcvbuf).
	var ours, kern uint64
	testutil.Poll(5*time.Second, func() error {
		ours, kern = dropsOf(t, c, 1)
		if ours+kern >= uint64(sent) {
			return nil
		}
		return errors.New("not all counted")
	})
	t.Logf("sprayed %d datagrams; node1 drops: %v", sent, c.Status(t, 1).Traffic.Drops)
	if ours+kern < uint64(sent) {
		t.Errorf("node1 counted %d drops (+%d in the kernel) for %d garbage datagrams", ours, kern, sent)
	}
	if ours > uint64(sent) {
		t.Errorf("node1 counted %d drops for %d garbage datagrams: good packets were dropped", ours, sent)
	}
}

// dropsOf sums node i's drop counters: those it counted itself, and the
// kernel's at its socket (kernel_rcvbuf).
func dropsOf(t *testing.T, c *Cluster, i int) (ours, kern uint64) {
	t.Helper()
	for reason, v := range c.Status(t, i).Traffic.Drops {
		if reason == router.DropKernelRcvbuf.String() {
			kern += v
		} else {
			ours += v
		}
	}
	return ours, kern
}

// fill writes seeded pseudo-random bytes into b.
func fill(b []byte, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 0x6f766c))
	for i := 0; i < len(b); i += 8 {
		v := r.Uint64()
		for k := 0; k < 8 && i+k < len(b); k++ {
			b[i+k] = byte(v >> (8 * k))
		}
	}
}

// A flood faster than a node reads loses datagrams in the kernel's socket
// buffer; they are counted all the same (kernel_rcvbuf, the socket's own
// count), so every datagram sent is accounted for exactly. Loopback only:
// the kernel's socket buffer is what it tests.
func TestFloodKernelDropsCounted(t *testing.T) {
	c := NewCluster(t, 2, ClusterOptions{})
	spray, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer spray.Close()
	// 200,000 datagrams of 8000 bytes with the VXLAN I flag clear, as
	// fast as one socket sends (1.6 GB: far more than node 1's 7 MiB
	// receive buffer takes while it reads): each is a flags drop if node 1
	// reads it, a kernel drop if not.
	const total = 200000
	buf := make([]byte, 8000)
	sent := 0
	for range total {
		if _, err := spray.WriteToUDPAddrPort(buf, c.Nodes[1].VTEP()); err == nil {
			sent++
		}
	}
	var ours, kern uint64
	testutil.Poll(10*time.Second, func() error {
		ours, kern = dropsOf(t, c, 1)
		if ours+kern == uint64(sent) {
			return nil
		}
		return errors.New("not all counted")
	})
	t.Logf("sent %d datagrams: node 1 dropped %d, the kernel %d at its socket", sent, ours, kern)
	if ours+kern != uint64(sent) {
		t.Errorf("node 1 counted %d drops and %d kernel drops for %d datagrams sent, want them to add up", ours, kern, sent)
	}
}

// A name with an address of each family is dialed at the one of the
// family the node has: nodes with IPv6 addresses alone reach a name whose
// resolver lists an IPv4 address first.
func TestDialNameOfBothFamilies(t *testing.T) {
	c := NewCluster(t, 2, ClusterOptions{IPv6: true})
	ln, err := c.Nodes[1].Listen("tcp", ":7100")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.Write([]byte("node1\n"))
			conn.Close()
		}
	}()
	c.Nodes[0].SetResolver(func(_ context.Context, host string) ([]netip.Addr, error) {
		if host == "web.blue.overlay" {
			return []netip.Addr{netip.MustParseAddr("10.99.2.1"), c.Nodes[1].Addr().Addr()}, nil
		}
		return nil, fmt.Errorf("%s: no such name", host)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := c.Nodes[0].Dial(ctx, "tcp", "web.blue.overlay:7100")
	if err != nil {
		t.Fatalf("dial web.blue.overlay:7100: %v", err)
	}
	defer conn.Close()
	got, err := io.ReadAll(conn)
	if string(got) != "node1\n" || err != nil {
		t.Fatalf("read %q, %v; want node1's answer", got, err)
	}
	if r := conn.RemoteAddr().String(); r != netip.AddrPortFrom(c.Nodes[1].Addr().Addr(), 7100).String() {
		t.Errorf("connected to %s, want node1's IPv6 address", r)
	}
}
