package gossip

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/memberlist"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/overlayd/overlayd/internal/testutil"
)

// realNode starts a node on real UDP and TCP sockets on loopback.
func realNode(t *testing.T, name string, keys [][]byte, log *zap.Logger) *Gossip {
	t.Helper()
	if log == nil {
		log = testLogger()
	}
	g, err := New(Options{
		Name: name, BindAddr: "127.0.0.1:0", Profile: ProfileTest, Keys: keys, Logger: log,
		Meta: Meta{VTEP: netip.MustParseAddrPort("127.0.0.1:4789"), Version: "test"},
	})
	if err != nil {
		t.Fatalf("New(%s): %v", name, err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

// aliveMsg is memberlist's alive message (net.go), encoded as memberlist
// does: the type byte, then msgpack.
type aliveMsg struct {
	Incarnation uint32
	Node        string
	Addr        []byte
	Port        uint16
	Meta        []byte
	Vsn         []uint8
}

const (
	mlAliveMsg    = 4 // memberlist's aliveMsg type byte
	mlCompoundMsg = 7 // memberlist's compoundMsg type byte
)

func encodeAlive(t *testing.T, a aliveMsg) []byte {
	var b bytes.Buffer
	b.WriteByte(mlAliveMsg)
	if err := codec.NewEncoder(&b, &codec.MsgpackHandle{}).Encode(&a); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// compound packs messages into one memberlist compound message.
func compound(msgs ...[]byte) []byte {
	b := []byte{mlCompoundMsg, byte(len(msgs))}
	for _, m := range msgs {
		b = binary.BigEndian.AppendUint16(b, uint16(len(m)))
	}
	for _, m := range msgs {
		b = append(b, m...)
	}
	return b
}

// forgedAlives are alive messages no overlayd node sends: each is refused
// by the guard (none stops at memberlist's own checks before it).
func forgedAlives(t *testing.T, i int) [][]byte {
	lo := []byte{127, 0, 0, 1}
	vsn := []uint8{1, 5, 2, 0, 0, 0}
	meta := Meta{VTEP: netip.MustParseAddrPort("127.0.0.1:4789"), Version: "x"}.encode()
	inc := uint32(i + 1)
	return [][]byte{
		encodeAlive(t, aliveMsg{Incarnation: inc, Node: fmt.Sprintf("\xff\xfe\x00bin%d", i), Addr: lo, Port: 9, Meta: meta, Vsn: vsn}),
		encodeAlive(t, aliveMsg{Incarnation: inc, Node: fmt.Sprintf("noaddr-%d", i), Addr: []byte{1, 2, 3}, Port: 9, Meta: meta, Vsn: vsn}),
		encodeAlive(t, aliveMsg{Incarnation: inc, Node: fmt.Sprintf("garbage-meta-%d", i), Addr: lo, Port: 9, Meta: []byte{9, 9, 9, 9}, Vsn: vsn}),
		encodeAlive(t, aliveMsg{Incarnation: inc, Node: fmt.Sprintf("no-meta-%d", i), Addr: lo, Port: 9, Vsn: vsn}),
		// Protocol 1 only: accepted, it makes every later push/pull
		// fail memberlist's protocol check.
		encodeAlive(t, aliveMsg{Incarnation: inc, Node: fmt.Sprintf("old-proto-%d", i), Addr: lo, Port: 9, Meta: meta, Vsn: []uint8{1, 1, 1, 0, 0, 0}}),
	}
}

// badMembers returns the members of g that are not valid overlayd nodes.
func badMembers(g *Gossip) []string {
	var bad []string
	for _, m := range g.Members() {
		if err := CheckName(m.Name); err != nil || !m.Addr.IsValid() || m.Meta.Version == "" {
			bad = append(bad, fmt.Sprintf("%q (%v, meta %+v)", m.Name, m.Addr, m.Meta))
		}
	}
	return bad
}

func refusedMembers(s Stats) uint64 {
	return s.Drops[refuseName] + s.Drops[refuseAddr] + s.Drops[refuseMeta] + s.Drops[refuseVersion]
}

// TestRandomUDPKeyless: random datagrams and forged alive messages at a
// keyless gossip port add no member, and a new node can still join.
// Before the guard, the forged members stayed alive with binary names and
// no address, and the protocol-1 one made every push/pull (a join
// included) fail: "protocol version (2) is incompatible: [1, 1]".
func TestRandomUDPKeyless(t *testing.T) {
	a := realNode(t, "a", nil, nil)
	b := realNode(t, "b", nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Join(ctx, []string{a.Addr()}); err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("udp", a.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	// Random datagrams, bounded: the alive and compound type bytes come
	// up in 2 of 256, with random bodies.
	const floods = 200_000
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 512)
	for i := range floods {
		n := 1 + rng.IntN(len(buf))
		for j := range n {
			buf[j] = byte(rng.Uint32())
		}
		if i%4 == 0 {
			buf[0] = mlAliveMsg
		}
		conn.Write(buf[:n])
	}
	// Forged alive messages, alone and in compound messages, until the
	// guard has refused enough of them (some datagrams of the flood are
	// lost in the socket buffer) or a bad member shows up.
	testutil.Eventually(t, 20*time.Second, "forged alive messages handled", func() error {
		for i := range 5 {
			fs := forgedAlives(t, rng.IntN(1<<20))
			for _, f := range fs {
				conn.Write(f)
			}
			conn.Write(compound(forgedAlives(t, 1<<20+i)...))
		}
		if bad := badMembers(a); len(bad) > 0 {
			return nil
		}
		if n := refusedMembers(a.Stats()); n < 200 {
			return fmt.Errorf("%d forged members refused", n)
		}
		return nil
	})
	for _, g := range []*Gossip{a, b} {
		if bad := badMembers(g); len(bad) > 0 {
			t.Errorf("%s lists %d members that are not overlayd nodes: %v", g.Name(), len(bad), bad[:min(len(bad), 5)])
		}
	}
	st := a.Stats()
	t.Logf("a refused: name %d, addr %d, meta %d, version %d; memberlist log lines suppressed %d",
		st.Drops[refuseName], st.Drops[refuseAddr], st.Drops[refuseMeta], st.Drops[refuseVersion], st.LogSuppressed)
	for _, r := range []string{refuseName, refuseAddr, refuseMeta, refuseVersion} {
		if st.Drops[r] == 0 {
			t.Errorf("no member refused for %s: %v", r, st.Drops)
		}
	}

	// A new node joins through the flooded one and everyone sees all three.
	c := realNode(t, "c", nil, nil)
	if err := c.Join(ctx, []string{a.Addr()}); err != nil {
		t.Fatalf("a new node cannot join the flooded one: %v", err)
	}
	testutil.Eventually(t, 10*time.Second, "three members everywhere", func() error {
		for _, g := range []*Gossip{a, b, c} {
			if n := aliveCount(g); n != 3 {
				return fmt.Errorf("%s sees %d alive: %v", g.Name(), n, g.Members())
			}
		}
		return nil
	})
}

// TestGuardCheck: what the guard accepts and refuses, and that the node
// itself passes.
func TestGuardCheck(t *testing.T) {
	cfg, err := Options{Name: "self", Meta: Meta{VTEP: netip.MustParseAddrPort("10.0.0.1:4789"), Version: "v1"}}.config()
	if err != nil {
		t.Fatal(err)
	}
	gd := cfg.guard
	good := memberlist.Node{Name: "n1", Addr: net.IP{10, 0, 0, 2}, Port: 7946,
		Meta: Meta{VTEP: netip.MustParseAddrPort("10.0.0.2:4789"), Version: "v1"}.encode(),
		PMin: 1, PMax: 5, PCur: 2}
	self := good
	self.Meta = cfg.Meta.encode()
	self.PMin, self.PMax, self.PCur = memberlist.ProtocolVersionMin, memberlist.ProtocolVersionMax, cfg.ml.ProtocolVersion
	for _, tc := range []struct {
		what   string
		edit   func(*memberlist.Node)
		reason string // "" for accepted
	}{
		{"valid", func(*memberlist.Node) {}, ""},
		{"self", func(n *memberlist.Node) { *n = self }, ""},
		{"no VTEP (library use)", func(n *memberlist.Node) { n.Meta = Meta{}.encode() }, ""},
		{"empty name", func(n *memberlist.Node) { n.Name = "" }, refuseName},
		{"binary name", func(n *memberlist.Node) { n.Name = "a\x00b" }, refuseName},
		{"not UTF-8", func(n *memberlist.Node) { n.Name = "\xff\xfe" }, refuseName},
		{"control character", func(n *memberlist.Node) { n.Name = "a\nb" }, refuseName},
		{"long name", func(n *memberlist.Node) { n.Name = string(bytes.Repeat([]byte{'n'}, MaxNameLen+1)) }, refuseName},
		{"no address", func(n *memberlist.Node) { n.Addr = nil }, refuseAddr},
		{"3-byte address", func(n *memberlist.Node) { n.Addr = net.IP{1, 2, 3} }, refuseAddr},
		{"port 0", func(n *memberlist.Node) { n.Port = 0 }, refuseAddr},
		{"unspecified address", func(n *memberlist.Node) { n.Addr = net.IPv4zero }, refuseAddr},
		{"no metadata", func(n *memberlist.Node) { n.Meta = nil }, refuseMeta},
		{"garbage metadata", func(n *memberlist.Node) { n.Meta = []byte{1, 0, 200} }, refuseMeta},
		{"VTEP port 0", func(n *memberlist.Node) {
			n.Meta = Meta{VTEP: netip.MustParseAddrPort("10.0.0.2:0")}.encode()
		}, refuseMeta},
		{"multicast VTEP", func(n *memberlist.Node) {
			n.Meta = Meta{VTEP: netip.MustParseAddrPort("239.0.0.1:4789")}.encode()
		}, refuseMeta},
		{"binary version", func(n *memberlist.Node) { n.Meta = Meta{Version: "v\x01"}.encode() }, refuseMeta},
		{"no versions", func(n *memberlist.Node) { n.PMin, n.PMax, n.PCur = 0, 0, 0 }, refuseVersion},
		{"protocol 1 only", func(n *memberlist.Node) { n.PMin, n.PMax, n.PCur = 1, 1, 1 }, refuseVersion},
		{"protocol 3", func(n *memberlist.Node) { n.PCur = 3 }, refuseVersion},
		{"min above ours", func(n *memberlist.Node) { n.PMin = 3 }, refuseVersion},
		{"delegate version 1", func(n *memberlist.Node) { n.DMax, n.DCur = 1, 1 }, refuseVersion},
	} {
		n := good
		tc.edit(&n)
		err := gd.check(&n)
		switch {
		case tc.reason == "" && err != nil:
			t.Errorf("%s: check(%+v) = %v, want accepted", tc.what, n, err)
		case tc.reason != "" && (err == nil || err.reason != tc.reason):
			t.Errorf("%s: check(%+v) = %v, want refused for %s", tc.what, n, err, tc.reason)
		}
		if aerr := gd.NotifyAlive(&n); (aerr == nil) != (tc.reason == "") {
			t.Errorf("%s: NotifyAlive = %v", tc.what, aerr)
		}
	}
	bad := good
	bad.Name = "\x00"
	if err := gd.NotifyMerge([]*memberlist.Node{&good, &bad}); err != nil {
		t.Errorf("NotifyMerge with one valid member = %v, want the merge (the bad one is dropped by NotifyAlive)", err)
	}
	if err := gd.NotifyMerge([]*memberlist.Node{&bad}); err == nil {
		t.Errorf("NotifyMerge of a cluster with no overlayd node = nil, want refused")
	}
	if _, err := (Options{Name: "bad\x01name"}).config(); err == nil {
		t.Errorf("config with a control character in the name = nil error")
	}
	if _, err := (Options{Name: "x", Meta: Meta{VTEP: netip.MustParseAddrPort("0.0.0.0:4789")}}).config(); err == nil {
		t.Errorf("config with an unspecified VTEP = nil error")
	}
}

// TestLogLimiter: a burst, then the rate; the line after a gap carries the
// count suppressed.
func TestLogLimiter(t *testing.T) {
	l := newLogLimiter(3, 2)
	t0 := time.Unix(1000, 0)
	for i := range 3 {
		if ok, d := l.allow(t0); !ok || d != 0 {
			t.Fatalf("line %d of the burst: allow = %v, %d", i, ok, d)
		}
	}
	for range 10 {
		if ok, _ := l.allow(t0.Add(time.Millisecond)); ok {
			t.Fatalf("line over the burst allowed")
		}
	}
	if ok, d := l.allow(t0.Add(600 * time.Millisecond)); !ok || d != 10 {
		t.Fatalf("after 600 ms at 2/s: allow = %v, suppressed %d, want true, 10", ok, d)
	}
	if ok, _ := l.allow(t0.Add(700 * time.Millisecond)); ok {
		t.Fatalf("second line within the same half second allowed")
	}
	if ok, d := l.allow(t0.Add(time.Hour)); !ok || d != 1 {
		t.Fatalf("after an hour: allow = %v, %d", ok, d)
	}
	w, s := l.counts()
	if w != 5 || s != 11 {
		t.Errorf("counts = %d written, %d suppressed, want 5, 11", w, s)
	}
	var nilL *logLimiter
	if ok, _ := nilL.allow(t0); !ok {
		t.Errorf("nil limiter refuses")
	}
}

// TestLogFloodKeyed: garbage at a keyed node's gossip port logs one
// memberlist error per datagram ("decrypt packet failed"); the lines
// written stay under the limiter's bound and the rest are counted.
// Before the limiter, every datagram wrote a line.
func TestLogFloodKeyed(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	key := bytes.Repeat([]byte{7}, 32)
	start := time.Now()
	a := realNode(t, "a", [][]byte{key}, zap.New(core))
	conn, err := net.Dial("udp", a.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const floods = 20_000
	rng := rand.New(rand.NewPCG(3, 4))
	buf := make([]byte, 200)
	sent := 0
	// Enough datagrams that the limiter must act: far more than its
	// burst plus what its rate allows over the test.
	testutil.Eventually(t, 30*time.Second, "the flood's log lines suppressed", func() error {
		for range 1000 {
			if sent == floods {
				break
			}
			for j := range buf {
				buf[j] = byte(rng.Uint32())
			}
			conn.Write(buf)
			sent++
		}
		if s := a.Stats().LogSuppressed; s < floods/4 {
			return fmt.Errorf("%d lines suppressed, %d written, %d datagrams sent", s, logs.FilterLoggerName("memberlist").Len(), sent)
		}
		return nil
	})
	elapsed := time.Since(start)
	lines := logs.FilterLoggerName("memberlist").Len()
	bound := logBurst + int(elapsed.Seconds()*logRate) + 1
	t.Logf("%d datagrams: %d memberlist lines written in %v, %d suppressed", sent, lines, elapsed.Round(time.Millisecond), a.Stats().LogSuppressed)
	if lines > bound {
		t.Errorf("%d memberlist log lines in %v, want at most %d", lines, elapsed, bound)
	}
	withCount := 0
	for _, e := range logs.FilterLoggerName("memberlist").All() {
		if _, ok := e.ContextMap()["suppressed"]; ok {
			withCount++
		}
	}
	if lines > logBurst && withCount == 0 {
		t.Errorf("no line after the burst says how many were suppressed")
	}
}

// TestJoinErrors: a node refused by its seed says why, in Join's error,
// in Stats.JoinError and in one WARN line however often Join retries;
// a later success clears it. Before, memberlist's words came back only
// when Join gave up, and nothing was logged.
func TestJoinErrors(t *testing.T) {
	k1 := [][]byte{bytes.Repeat([]byte{1}, 32)}
	k2 := [][]byte{bytes.Repeat([]byte{2}, 32)}
	closed, err := net.ListenPacket("udp", "127.0.0.1:0") // a port where nothing listens on TCP
	if err != nil {
		t.Fatal(err)
	}
	nobody := closed.LocalAddr().String()
	closed.Close()
	for _, tc := range []struct {
		what       string
		seed, self [][]byte
		want       string
	}{
		{"no key", k1, nil, "refused: the cluster encrypts gossip and this node has no key"},
		{"seed has no key", nil, k1, "refused: this node encrypts gossip and the seed does not (it has no key)"},
		{"wrong key", k1, k2, "refused: the seed encrypts gossip with another key"},
		{"nothing there", nil, nil, "nothing listens there (connection refused)"},
	} {
		t.Run(tc.what, func(t *testing.T) {
			target := nobody
			if tc.what != "nothing there" {
				target = realNode(t, "seed", tc.seed, nil).Addr()
			}
			core, logs := observer.New(zapcore.InfoLevel)
			g := realNode(t, "joiner", tc.self, zap.New(core))
			ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
			defer cancel()
			err := g.Join(ctx, []string{target})
			want := "gossip: join " + target + ": " + tc.want
			if err == nil || !strings.HasPrefix(err.Error(), want) {
				t.Fatalf("Join = %v, want %q...", err, want)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Join = %v, does not wrap the context's error", err)
			}
			if js := g.Stats().JoinError; !strings.HasPrefix(js, want) {
				t.Errorf("Stats.JoinError = %q, want %q...", js, want)
			}
			warns := logs.FilterMessage("cannot join the cluster").All()
			if len(warns) != 1 || warns[0].Level != zapcore.WarnLevel || !strings.HasPrefix(fmt.Sprint(warns[0].ContextMap()["error"]), want) {
				t.Errorf("logged %d warnings (want 1, %q): %v", len(warns), want, warns)
			}
		})
	}
	t.Run("success clears it", func(t *testing.T) {
		seed := realNode(t, "seed", nil, nil)
		core, logs := observer.New(zapcore.InfoLevel)
		g := realNode(t, "joiner", nil, zap.New(core))
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		if err := g.Join(ctx, []string{nobody}); err == nil {
			t.Fatal("Join of nobody succeeded")
		}
		if g.Stats().JoinError == "" {
			t.Fatal("no join error kept")
		}
		if err := g.Join(context.Background(), []string{seed.Addr()}); err != nil {
			t.Fatal(err)
		}
		if js := g.Stats().JoinError; js != "" {
			t.Errorf("Stats.JoinError after a successful join = %q", js)
		}
		if logs.FilterMessage("joined the cluster after failed attempts").Len() != 1 {
			t.Errorf("no info line for the join: %v", logs.All())
		}
	})
}

func TestExplainJoin(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, "gossip: join a:1, b:2: no seed answered"},
		{errors.New("boom"), "gossip: join a:1, b:2: boom"},
		{&multiErr{[]error{
			errors.New("failed to join 10.0.0.1:7946: dial tcp 10.0.0.1:7946: i/o timeout"),
			errors.New("failed to resolve nosuch:7946: lookup nosuch: no such host"),
			errors.New("failed to join 10.0.0.2:7946: Node 'x' protocol version (2) is incompatible: [1, 0]"),
		}}, "gossip: join 10.0.0.1:7946: no answer (timed out): check the address and that the port is open; " +
			"join nosuch:7946: cannot resolve the address: lookup nosuch: no such host; " +
			"join 10.0.0.2:7946: refused: the seed's cluster speaks another memberlist protocol version (Node 'x' protocol version (2) is incompatible: [1, 0])"},
	} {
		if got := explainJoin([]string{"a:1", "b:2"}, tc.err).Error(); got != tc.want {
			t.Errorf("explainJoin(%v) =\n%s\nwant\n%s", tc.err, got, tc.want)
		}
	}
}

type multiErr struct{ errs []error }

func (m *multiErr) Error() string          { return fmt.Sprint(m.errs) }
func (m *multiErr) WrappedErrors() []error { return m.errs }

// hangingSeed returns a loopback TCP address whose accept queue is full:
// a dial to it hangs (its SYNs are dropped) until the dialer gives up.
func hangingSeed(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	// Fill the queue (backlog 0 holds one connection); then check that a
	// dial does hang.
	for range 2 {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			t.Cleanup(func() { c.Close() })
		}
	}
	if c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond); err == nil {
		c.Close()
		t.Skip("cannot make a loopback dial hang on this kernel (the accept queue does not fill)")
	}
	return addr
}

// TestCloseBounded: Close returns promptly, and the gossip port can be
// bound again at once, even while a join and a rejoin are dialing a seed
// that does not answer. Before, Close waited for the dial's timeout
// (TCPTimeout: 10 s at the default profile).
func TestCloseBounded(t *testing.T) {
	hang := hangingSeed(t)
	a := realNode(t, "a", nil, nil)
	g, err := New(Options{Name: "b", BindAddr: "127.0.0.1:0", Logger: testLogger(), RejoinInterval: 50 * time.Millisecond,
		Meta: Meta{VTEP: netip.MustParseAddrPort("127.0.0.1:4789"), Version: "test"}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := g.Join(context.Background(), []string{a.Addr()}); err != nil {
		t.Fatal(err)
	}
	joined := make(chan error, 1)
	go func() { joined <- g.Join(context.Background(), []string{hang}) }() // dials hang, and is remembered for rejoins
	// Close while both dials hang, Join's and the rejoin's: wait until
	// two sockets are in SYN_SENT towards the seed.
	testutil.Eventually(t, 5*time.Second, "Join and the rejoin dialing the hanging seed", func() error {
		if n := synSent(t, hang); n < 2 {
			return fmt.Errorf("%d sockets in SYN_SENT towards %s", n, hang)
		}
		return nil
	})
	addr := g.Addr()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- g.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Close = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("Close still waiting after 5 s (a dial of TCPTimeout, 10 s, holds it)")
	}
	took := time.Since(start)
	select {
	case err := <-joined:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("Join during Close = %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("Join still dialing 5 s after Close")
	}
	// The port is free at once, TCP and UDP.
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("rebinding %s (TCP) right after Close: %v", addr, err)
	}
	l.Close()
	p, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatalf("rebinding %s (UDP) right after Close: %v", addr, err)
	}
	p.Close()
	t.Logf("Close took %v with a dial hanging (load %s)", took.Round(time.Millisecond), loadavg())
	a.Close()
	probesDone(t)
}

// probesDone waits for memberlist's probes to end: Shutdown does not wait
// for a probe in progress (up to a probe interval, 1 s at the default
// profile), and TestMain checks for leaked goroutines.
func probesDone(t *testing.T) {
	testutil.Eventually(t, 10*time.Second, "memberlist's probes to end after Shutdown", func() error {
		return goleak.Find()
	})
}

// synSent counts the local sockets in SYN_SENT towards addr.
func synSent(t *testing.T, addr string) int {
	ap := netip.MustParseAddrPort(addr)
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Skipf("no /proc/net/tcp: %v", err)
	}
	want := fmt.Sprintf("0100007F:%04X 02", ap.Port()) // rem_address st (02 = SYN_SENT)
	n := 0
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 3 && f[2]+" "+f[3] == want {
			n++
		}
	}
	return n
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return strings.TrimSpace(string(b))
}

// TestLeaveBounded: Leave returns within its timeout, and the peers record
// the node as left, not dead.
func TestLeaveBounded(t *testing.T) {
	var nodes []*Gossip
	for _, name := range []string{"a", "b", "c"} {
		g, err := New(Options{Name: name, BindAddr: "127.0.0.1:0", Logger: testLogger(),
			Meta: Meta{VTEP: netip.MustParseAddrPort("127.0.0.1:4789"), Version: "test"}})
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		if len(nodes) > 0 {
			if err := g.Join(context.Background(), []string{nodes[0].Addr()}); err != nil {
				t.Fatal(err)
			}
		}
		nodes = append(nodes, g)
	}
	testutil.Eventually(t, 10*time.Second, "three members", func() error {
		for _, g := range nodes {
			if n := aliveCount(g); n != 3 {
				return fmt.Errorf("%s sees %d alive", g.Name(), n)
			}
		}
		return nil
	})
	c := nodes[2]
	const timeout = time.Second
	start := time.Now()
	err := c.Leave(timeout)
	took := time.Since(start)
	t.Logf("Leave(%v) took %v, %v (load %s)", timeout, took.Round(time.Millisecond), err, loadavg())
	if took > timeout+500*time.Millisecond {
		t.Errorf("Leave(%v) took %v", timeout, took)
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	if err := c.Leave(timeout); !errors.Is(err, ErrClosed) {
		t.Errorf("Leave after Close = %v, want ErrClosed", err)
	}
	testutil.Eventually(t, 10*time.Second, "c recorded as left", func() error {
		for _, g := range nodes[:2] {
			for _, m := range g.Members() {
				if m.Name == "c" && m.State != StateLeft {
					return fmt.Errorf("%s sees c %v", g.Name(), m.State)
				}
			}
		}
		return nil
	})
	for _, g := range nodes {
		g.Close()
	}
	probesDone(t)
}
