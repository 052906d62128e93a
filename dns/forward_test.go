package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/overlayd/overlayd/dns/dnstest"
	"github.com/overlayd/overlayd/internal/testutil"
)

// serveForwarding starts a Server over a loopback UDP socket and TCP listener
// with a Forwarder for upstreams, and returns the Server and its address.
func serveForwarding(t *testing.T, fo ForwarderOptions) (*Server, *Forwarder, string) {
	t.Helper()
	f, err := NewForwarder(fo)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Forwarder: f})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetZone(testZoneData()); err != nil {
		t.Fatal(err)
	}
	pc, ln := dnstest.ListenPair(t)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.ServePacket(pc) }()
	go func() { defer wg.Done(); s.ServeListener(ln) }()
	t.Cleanup(func() { s.Close(); wg.Wait() })
	return s, f, pc.LocalAddr().String()
}

func ask(name string, qtype uint16) *mdns.Msg {
	q := new(mdns.Msg)
	q.SetQuestion(name, qtype)
	return q
}

func TestForwardDnsmasq(t *testing.T) {
	dm := dnstest.StartDnsmasq(t,
		"--local-ttl=60",
		"--address=/example.test/192.0.2.10",
		"--host-record=host.other.test,192.0.2.11,2001:db8::11",
		"--txt-record=txt.other.test,hello overlay",
		"--local=/neg.test/",
		"--local=/other.test/",
	)
	s, _, addr := serveForwarding(t, ForwarderOptions{Upstreams: []netip.AddrPort{dm.Addr}})

	tests := []struct {
		name   string
		qtype  uint16
		rcode  int
		answer []string
	}{
		{"example.test.", mdns.TypeA, mdns.RcodeSuccess, []string{"example.test. 60 A 192.0.2.10"}},
		{"www.EXAMPLE.test.", mdns.TypeA, mdns.RcodeSuccess, []string{"www.EXAMPLE.test. 60 A 192.0.2.10"}},
		{"host.other.test.", mdns.TypeAAAA, mdns.RcodeSuccess, []string{"host.other.test. 60 AAAA 2001:db8::11"}},
		{"txt.other.test.", mdns.TypeTXT, mdns.RcodeSuccess, []string{`txt.other.test. 60 TXT "hello overlay"`}},
		{"x.neg.test.", mdns.TypeA, mdns.RcodeNameError, nil},
		// The zone still answers its own names.
		{"web.default.overlay.", mdns.TypeA, mdns.RcodeSuccess, []string{"web.default.overlay. 5 A 10.200.255.10"}},
	}
	for _, tt := range tests {
		for _, netw := range []string{"udp", "tcp"} {
			q := ask(tt.name, tt.qtype)
			q.SetEdns0(1232, true)
			r := exchange(t, netw, addr, q)
			for _, rr := range r.Answer { // dnsmasq's TTLs count down once cached
				if h := rr.Header(); h.Ttl > 50 && h.Ttl < 60 {
					h.Ttl = 60
				}
			}
			got := rrStrings(r.Answer)
			if r.Rcode != tt.rcode || !slices.Equal(got, tt.answer) || r.Id != q.Id || !r.RecursionAvailable {
				t.Errorf("%s %s %s: rcode %s answer %q RA %v; want %s %q", netw, tt.name, mdns.TypeToString[tt.qtype],
					mdns.RcodeToString[r.Rcode], got, r.RecursionAvailable, mdns.RcodeToString[tt.rcode], tt.answer)
			}
			if opt := r.IsEdns0(); opt == nil || opt.UDPSize() != EDNSSize || !opt.Do() {
				t.Errorf("%s %s: reply OPT %v, want size %d with DO", netw, tt.name, opt, EDNSSize)
			}
		}
	}
	st := s.Stats()
	t.Logf("stats: %+v", st)
	if st.Forwarder.CacheHits == 0 || st.Forwarder.CacheMisses == 0 {
		t.Errorf("forwarder stats %+v: want hits and misses", st.Forwarder)
	}
}

// TestForwardCacheTTL: an answer is served from the cache while the upstream
// is down, and only until its TTL runs out.
func TestForwardCacheTTL(t *testing.T) {
	dm := dnstest.StartDnsmasq(t, "--local-ttl=2", "--address=/cache.test/192.0.2.20")
	f, err := NewForwarder(ForwarderOptions{Upstreams: []netip.AddrPort{dm.Addr}, AttemptTimeout: 200 * time.Millisecond, Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	asked := time.Now() // the answer is cached at or after this
	r, err := f.Exchange(ctx, ask("a.cache.test.", mdns.TypeA))
	if err != nil || len(r.Answer) != 1 || r.Answer[0].Header().Ttl != 2 {
		t.Fatalf("first answer %v, %v; want one A with TTL 2", r, err)
	}
	dm.Stop()
	r, err = f.Exchange(ctx, ask("A.Cache.Test.", mdns.TypeA))
	if err != nil || len(r.Answer) != 1 {
		t.Fatalf("with the upstream stopped: %v, %v; want the cached A", r, err)
	}
	if st := f.Stats(); st.CacheHits != 1 || st.CacheMisses != 1 {
		t.Errorf("stats %+v, want 1 hit and 1 miss", st)
	}
	testutil.Eventually(t, 10*time.Second, "the cached answer to expire", func() error {
		r, err = f.Exchange(ctx, ask("a.cache.test.", mdns.TypeA))
		if err != nil {
			return nil
		}
		ttl := r.Answer[0].Header().Ttl
		if ttl > 2 {
			t.Fatalf("cached TTL %d grew", ttl)
		}
		return fmt.Errorf("still served from the cache, TTL %d", ttl)
	})
	age := time.Since(asked)
	t.Logf("cached answer expired after %v (TTL 2s); then: %v", age, err)
	if age < 1900*time.Millisecond {
		t.Errorf("cached answer expired after %v, before its 2 s TTL", age)
	}
}

func TestForwardTruncationTCP(t *testing.T) {
	var rrs []string
	for i := range 100 {
		rrs = append(rrs, fmt.Sprintf("big.test. 60 IN A 192.0.2.%d", i))
	}
	up := dnstest.NewUpstream(t, func(req *mdns.Msg, tcp bool) []*mdns.Msg {
		if !tcp {
			m := dnstest.Reply(req)
			m.Truncated = true
			return []*mdns.Msg{m}
		}
		return []*mdns.Msg{dnstest.Reply(req, rrs...)}
	})
	_, f, addr := serveForwarding(t, ForwarderOptions{Upstreams: []netip.AddrPort{up.Addr}})

	// Over UDP our reply does not fit 1232 bytes either: TC, then the
	// client's TCP retry gets all 100 (from the cache).
	q := ask("big.test.", mdns.TypeA)
	q.SetEdns0(1232, false)
	r := exchange(t, "udp", addr, q)
	if !r.Truncated || len(r.Answer) == 100 {
		t.Errorf("udp: TC %v with %d answers, want TC and fewer than 100", r.Truncated, len(r.Answer))
	}
	r = exchange(t, "tcp", addr, q)
	if r.Truncated || len(r.Answer) != 100 {
		t.Errorf("tcp: TC %v with %d answers, want all 100", r.Truncated, len(r.Answer))
	}
	if u, c, st := up.UDPQueries.Load(), up.TCPQueries.Load(), f.Stats(); u != 1 || c != 1 || st.TCPRetries != 1 {
		t.Errorf("upstream saw %d UDP and %d TCP queries, stats %+v; want 1, 1 and one TCP retry", u, c, st)
	}
}

// TestForwardDeadUpstreams: with every upstream dead (refusing or silent),
// the client gets SERVFAIL within 2 s.
func TestForwardDeadUpstreams(t *testing.T) {
	var ups []netip.AddrPort
	// Silent: bound sockets that never read.
	for range 4 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		ups = append(ups, pc.LocalAddr().(*net.UDPAddr).AddrPort())
	}
	// Refusing: a port nobody listens on.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ups = append(ups, pc.LocalAddr().(*net.UDPAddr).AddrPort())
	pc.Close()

	s, _, addr := serveForwarding(t, ForwarderOptions{Upstreams: ups})
	start := time.Now()
	r := exchange(t, "udp", addr, ask("dead.test.", mdns.TypeA))
	took := time.Since(start)
	t.Logf("all upstreams dead: %s after %v", mdns.RcodeToString[r.Rcode], took)
	if r.Rcode != mdns.RcodeServerFailure {
		t.Errorf("rcode %s, want SERVFAIL", mdns.RcodeToString[r.Rcode])
	}
	if took > 2500*time.Millisecond {
		t.Errorf("SERVFAIL after %v, want about 2 s at most", took)
	}
	if st := s.Stats(); st.Forwarder.UpstreamErrors == 0 || st.Responses["SERVFAIL"] != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestForwardForged: answers with the wrong ID or question are ignored and
// the real one, sent after them, is used.
func TestForwardForged(t *testing.T) {
	up := dnstest.NewUpstream(t, func(req *mdns.Msg, tcp bool) []*mdns.Msg {
		wrongID := dnstest.Reply(req, req.Question[0].Name+" 60 IN A 6.6.6.6")
		wrongID.Id++
		wrongQ := dnstest.Reply(req, "other.test. 60 IN A 6.6.6.7")
		wrongQ.Question[0].Name = "other.test."
		wrongType := dnstest.Reply(req)
		wrongType.Question[0].Qtype = mdns.TypeTXT
		notResp := dnstest.Reply(req, req.Question[0].Name+" 60 IN A 6.6.6.8")
		notResp.Response = false
		return []*mdns.Msg{wrongID, wrongQ, wrongType, notResp, dnstest.Reply(req, req.Question[0].Name+" 60 IN A 192.0.2.55")}
	})
	f, err := NewForwarder(ForwarderOptions{Upstreams: []netip.AddrPort{up.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	r, err := f.Exchange(context.Background(), ask("real.TEST.", mdns.TypeA))
	if err != nil || len(r.Answer) != 1 || r.Answer[0].(*mdns.A).A.String() != "192.0.2.55" {
		t.Fatalf("Exchange = %v, %v; want the genuine 192.0.2.55", r, err)
	}
	if st := f.Stats(); st.Ignored != 4 {
		t.Errorf("ignored %d packets, want 4", st.Ignored)
	}
}

// TestForwardQueryShape: upstream queries carry random IDs, EDNS0 with a
// 1232-byte size, and the client's DO bit.
func TestForwardQueryShape(t *testing.T) {
	var mu sync.Mutex
	var ids []uint16
	var dos []bool
	up := dnstest.NewUpstream(t, func(req *mdns.Msg, tcp bool) []*mdns.Msg {
		opt := req.IsEdns0()
		mu.Lock()
		ids = append(ids, req.Id)
		dos = append(dos, opt != nil && opt.Do())
		mu.Unlock()
		if opt == nil || opt.UDPSize() != EDNSSize {
			return nil // no answer: the test sees a failure
		}
		return []*mdns.Msg{dnstest.Reply(req, req.Question[0].Name+" 60 IN A 192.0.2.1")}
	})
	f, err := NewForwarder(ForwarderOptions{Upstreams: []netip.AddrPort{up.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 32 {
		q := ask(fmt.Sprintf("n%d.test.", i), mdns.TypeA)
		q.SetEdns0(4096, i%2 == 1)
		if _, err := f.Exchange(context.Background(), q); err != nil {
			t.Fatalf("query %d: %v", i, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for i, do := range dos {
		if do != (i%2 == 1) {
			t.Errorf("query %d: DO %v upstream, want %v", i, do, i%2 == 1)
		}
	}
	distinct := map[uint16]bool{}
	sequential := 0
	for i, id := range ids {
		distinct[id] = true
		if i > 0 && id == ids[i-1]+1 {
			sequential++
		}
	}
	if len(distinct) < 28 || sequential > 3 {
		t.Errorf("upstream IDs %v: %d distinct, %d sequential; want random", ids, len(distinct), sequential)
	}
}

func TestForwardFailoverAndRotation(t *testing.T) {
	bad := dnstest.NewUpstream(t, func(req *mdns.Msg, tcp bool) []*mdns.Msg {
		m := dnstest.Reply(req)
		m.Rcode = mdns.RcodeServerFailure
		return []*mdns.Msg{m}
	})
	answer := func(req *mdns.Msg, tcp bool) []*mdns.Msg {
		return []*mdns.Msg{dnstest.Reply(req, req.Question[0].Name+" 60 IN A 192.0.2.1")}
	}
	good1, good2 := dnstest.NewUpstream(t, answer), dnstest.NewUpstream(t, answer)
	f, err := NewForwarder(ForwarderOptions{Upstreams: []netip.AddrPort{bad.Addr, good1.Addr, good2.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		if r, err := f.Exchange(context.Background(), ask(fmt.Sprintf("r%d.test.", i), mdns.TypeA)); err != nil || len(r.Answer) != 1 {
			t.Fatalf("query %d: %v, %v", i, r, err)
		}
	}
	b, g1, g2 := bad.UDPQueries.Load(), good1.UDPQueries.Load(), good2.UDPQueries.Load()
	t.Logf("queries: failing %d, good %d and %d", b, g1, g2)
	if b == 0 || g1 < 5 || g2 < 5 || f.Stats().UpstreamErrors != uint64(b) {
		t.Errorf("queries: failing %d, good %d and %d, upstream errors %d; want rotation across all and failover past the failing one", b, g1, g2, f.Stats().UpstreamErrors)
	}
}

// TestForwardInFlightBound: beyond MaxInFlight outstanding upstream queries,
// Exchange fails at once with ErrBusy and the Server answers SERVFAIL.
func TestForwardInFlightBound(t *testing.T) {
	up := dnstest.NewUpstream(t, func(req *mdns.Msg, tcp bool) []*mdns.Msg { return nil })
	s, f, addr := serveForwarding(t, ForwarderOptions{Upstreams: []netip.AddrPort{up.Addr}, MaxInFlight: 2, Timeout: time.Second, AttemptTimeout: time.Second})
	var wg sync.WaitGroup
	var failed atomic.Int32
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := f.Exchange(context.Background(), ask(fmt.Sprintf("slow%d.test.", i), mdns.TypeA)); err != nil && !errors.Is(err, ErrBusy) {
				failed.Add(1)
			}
		}()
	}
	testutil.Eventually(t, 5*time.Second, "the upstream to see the two slow queries", func() error {
		if n := up.UDPQueries.Load(); n < 2 {
			return fmt.Errorf("it saw %d", n)
		}
		return nil
	})
	start := time.Now()
	_, err := f.Exchange(context.Background(), ask("third.test.", mdns.TypeA))
	if !errors.Is(err, ErrBusy) {
		t.Errorf("third query: %v, want ErrBusy", err)
	}
	r := exchange(t, "udp", addr, ask("fourth.test.", mdns.TypeA))
	took := time.Since(start)
	if r.Rcode != mdns.RcodeServerFailure || took > 500*time.Millisecond {
		t.Errorf("over the bound: %s after %v, want SERVFAIL at once", mdns.RcodeToString[r.Rcode], took)
	}
	wg.Wait()
	if failed.Load() != 2 || s.Stats().Forwarder.Busy != 2 {
		t.Errorf("slow queries failed %d, busy %d; want 2 and 2", failed.Load(), s.Stats().Forwarder.Busy)
	}
}

// TestForwardNegativeCache: NXDOMAIN is cached for min(SOA TTL, MINIMUM)
// (RFC 2308); a negative answer without an SOA is not cached.
func TestForwardNegativeCache(t *testing.T) {
	up := dnstest.NewUpstream(t, func(req *mdns.Msg, tcp bool) []*mdns.Msg {
		m := dnstest.Reply(req)
		m.Rcode = mdns.RcodeNameError
		if req.Question[0].Name == "withsoa.test." {
			soa, _ := mdns.NewRR("test. 3600 IN SOA ns.test. h.test. 1 2 3 4 30")
			m.Ns = []mdns.RR{soa}
		}
		return []*mdns.Msg{m}
	})
	var mu sync.Mutex // guards now
	now := time.Unix(1e9, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	f, err := NewForwarder(ForwarderOptions{Upstreams: []netip.AddrPort{up.Addr}, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	x := func(name string, wantUpstream int64) {
		t.Helper()
		r, err := f.Exchange(context.Background(), ask(name, mdns.TypeA))
		if err != nil || r.Rcode != mdns.RcodeNameError {
			t.Fatalf("%s: %v, %v; want NXDOMAIN", name, r, err)
		}
		if n := up.UDPQueries.Load(); n != wantUpstream {
			t.Errorf("%s: upstream has seen %d queries, want %d", name, n, wantUpstream)
		}
	}
	x("withsoa.test.", 1)
	advance(29 * time.Second)
	x("withsoa.test.", 1) // cached for MINIMUM, 30 s
	advance(time.Second)
	x("withsoa.test.", 2) // expired
	x("nosoa.test.", 3)
	x("nosoa.test.", 4) // without an SOA: not cached
}

func TestCache(t *testing.T) {
	now := time.Unix(1000, 0)
	c := newCache(2, func() time.Time { return now })
	msg := func(ttl uint32) *mdns.Msg {
		m := new(mdns.Msg)
		rr, _ := mdns.NewRR(fmt.Sprintf("a.test. %d IN A 192.0.2.1", ttl))
		m.Answer = []mdns.RR{rr}
		return m
	}
	k := func(n string) cacheKey { return cacheKey{name: n, qtype: mdns.TypeA, qclass: mdns.ClassINET} }
	c.put(k("a"), msg(10), 10*time.Second)
	now = now.Add(3 * time.Second)
	if m := c.get(k("a")); m == nil || m.Answer[0].Header().Ttl != 7 {
		t.Errorf("get after 3 s = %v, want TTL 7", m)
	}
	c.put(k("b"), msg(10), 10*time.Second)
	c.get(k("a"))                          // a is now the most recent
	c.put(k("c"), msg(10), 10*time.Second) // evicts b
	if c.get(k("b")) != nil || c.get(k("a")) == nil || c.get(k("c")) == nil || c.len() != 2 {
		t.Errorf("LRU: b kept or a/c lost (len %d)", c.len())
	}
	now = now.Add(7 * time.Second)
	if c.get(k("a")) != nil {
		t.Error("a served at its expiry")
	}
	c.put(k("z"), msg(0), 0)
	if c.get(k("z")) != nil {
		t.Error("TTL 0 answer cached")
	}

	soa, _ := mdns.NewRR("test. 300 IN SOA ns.test. h.test. 1 2 3 4 30")
	for _, tt := range []struct {
		m    *mdns.Msg
		want time.Duration
	}{
		{msg(100), 100 * time.Second},
		{msg(7200), time.Hour},
		{&mdns.Msg{MsgHdr: mdns.MsgHdr{Rcode: mdns.RcodeNameError}, Ns: []mdns.RR{soa}}, 30 * time.Second},
		{&mdns.Msg{Ns: []mdns.RR{soa}}, 30 * time.Second},
		{&mdns.Msg{MsgHdr: mdns.MsgHdr{Rcode: mdns.RcodeNameError}}, 0},
		{&mdns.Msg{MsgHdr: mdns.MsgHdr{Rcode: mdns.RcodeServerFailure}}, 0},
		{&mdns.Msg{MsgHdr: mdns.MsgHdr{Truncated: true}, Answer: msg(100).Answer}, 0},
	} {
		if got := cacheTTL(tt.m, time.Hour); got != tt.want {
			t.Errorf("cacheTTL(%v) = %v, want %v", tt.m, got, tt.want)
		}
	}
}

func TestReadResolvConf(t *testing.T) {
	p := filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(p, []byte("# comment\nsearch example.com\nnameserver 192.0.2.53\nnameserver  2001:db8::53\nnameserver fe80::1%eth0\nnameserver bogus\noptions ndots:2\n"), 0o644)
	got, err := ReadResolvConf(p)
	want := []netip.AddrPort{netip.MustParseAddrPort("192.0.2.53:53"), netip.MustParseAddrPort("[2001:db8::53]:53"), netip.MustParseAddrPort("[fe80::1%eth0]:53")}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("ReadResolvConf = %v, %v; want %v", got, err, want)
	}
	os.WriteFile(p, []byte("search x\n"), 0o644)
	if _, err := ReadResolvConf(p); err == nil {
		t.Error("ReadResolvConf(no nameservers) = nil error")
	}
	if _, err := ReadResolvConf(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("ReadResolvConf(missing) = nil error")
	}
}

// TestForwardNotForOutsiders: a source that is not Allowed gets REFUSED and
// causes no upstream query, over UDP and TCP.
func TestForwardNotForOutsiders(t *testing.T) {
	up := dnstest.NewUpstream(t, func(req *mdns.Msg, tcp bool) []*mdns.Msg {
		return []*mdns.Msg{dnstest.Reply(req, req.Question[0].Name+" 60 IN A 192.0.2.1")}
	})
	f, err := NewForwarder(ForwarderOptions{Upstreams: []netip.AddrPort{up.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Forwarder: f, Allowed: netip.MustParsePrefix("10.200.0.0/16").Contains})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, tcp := range []bool{false, true} {
		out := s.handle(context.Background(), netip.MustParseAddr("198.51.100.7"), pack(t, ask("open.resolver.test.", mdns.TypeA)), tcp)
		r := new(mdns.Msg)
		if err := r.Unpack(out); err != nil || r.Rcode != mdns.RcodeRefused || len(r.Answer) > 0 {
			t.Errorf("tcp=%v: reply %v, %v; want REFUSED", tcp, r, err)
		}
	}
	if n := up.UDPQueries.Load() + up.TCPQueries.Load(); n != 0 {
		t.Errorf("upstream saw %d queries from an outsider's request, want 0", n)
	}
	out := s.handle(context.Background(), netip.MustParseAddr("10.200.1.1"), pack(t, ask("open.resolver.test.", mdns.TypeA)), false)
	if r := new(mdns.Msg); r.Unpack(out) != nil || len(r.Answer) != 1 || up.UDPQueries.Load() != 1 {
		t.Errorf("member's query: %x, upstream queries %d", out, up.UDPQueries.Load())
	}
}

// TestForwardCoalesce: identical queries that miss the cache at the same
// time cause one upstream query.
func TestForwardCoalesce(t *testing.T) {
	release := make(chan struct{})
	up := dnstest.NewUpstream(t, func(req *mdns.Msg, tcp bool) []*mdns.Msg {
		<-release
		return []*mdns.Msg{dnstest.Reply(req, req.Question[0].Name+" 60 IN A 192.0.2.1")}
	})
	f, err := NewForwarder(ForwarderOptions{Upstreams: []netip.AddrPort{up.Addr}, MaxInFlight: 1, Timeout: 5 * time.Second, AttemptTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := "same.test."
			if i%2 == 1 {
				name = "SAME.test."
			}
			r, err := f.Exchange(context.Background(), ask(name, mdns.TypeA))
			if err != nil || len(r.Answer) != 1 {
				t.Errorf("query %d: %v, %v", i, r, err)
			}
		}()
	}
	testutil.Eventually(t, 5*time.Second, "the queries to be coalesced", func() error {
		if st := f.Stats(); st.Coalesced < 9 {
			return fmt.Errorf("stats %+v", st)
		}
		return nil
	})
	close(release)
	wg.Wait()
	if n := up.UDPQueries.Load(); n != 1 {
		t.Errorf("upstream saw %d queries, want 1", n)
	}
}

// TestForwardSharedCacheConcurrent: cache hits share one aged copy of the
// answer; concurrent replies with other spellings, EDNS sizes and
// truncation must not disturb each other (run with -race).
func TestForwardSharedCacheConcurrent(t *testing.T) {
	var rrs []string
	for i := range 40 {
		rrs = append(rrs, fmt.Sprintf("many.test. 60 IN A 192.0.2.%d", i))
	}
	up := dnstest.NewUpstream(t, func(req *mdns.Msg, tcp bool) []*mdns.Msg {
		return []*mdns.Msg{dnstest.Reply(req, rrs...)}
	})
	f, err := NewForwarder(ForwarderOptions{Upstreams: []netip.AddrPort{up.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Forwarder: f})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	names := []string{"many.test.", "MANY.test.", "Many.Test."}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				name := names[(g+i)%len(names)]
				q := ask(name, mdns.TypeA)
				if g%2 == 0 {
					q.SetEdns0(1232, false)
				}
				r := new(mdns.Msg)
				if err := r.Unpack(s.handle(context.Background(), loopback, pack(t, q), g%4 == 1)); err != nil {
					t.Errorf("reply: %v", err)
					return
				}
				if len(r.Answer) == 0 || r.Answer[0].Header().Name != name {
					t.Errorf("%s: answer %v", name, r.Answer)
					return
				}
				if g%4 == 1 && len(r.Answer) != 40 || g%2 == 0 && r.IsEdns0() == nil {
					t.Errorf("%s (tcp %v): %d answers, OPT %v", name, g%4 == 1, len(r.Answer), r.IsEdns0())
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := up.UDPQueries.Load(); n != 1 {
		t.Errorf("upstream saw %d queries, want 1", n)
	}
}

// TestForwardRetryLost: with one upstream, a lost datagram is retried while
// the query's time lasts.
func TestForwardRetryLost(t *testing.T) {
	var n atomic.Int32
	up := dnstest.NewUpstream(t, func(req *mdns.Msg, tcp bool) []*mdns.Msg {
		if n.Add(1) == 1 {
			return nil // lost
		}
		return []*mdns.Msg{dnstest.Reply(req, req.Question[0].Name+" 60 IN A 192.0.2.1")}
	})
	f, err := NewForwarder(ForwarderOptions{Upstreams: []netip.AddrPort{up.Addr}, AttemptTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r, err := f.Exchange(context.Background(), ask("lost.test.", mdns.TypeA))
	if err != nil || len(r.Answer) != 1 || up.UDPQueries.Load() != 2 {
		t.Errorf("Exchange = %v, %v after %d upstream queries; want the answer after 2", r, err, up.UDPQueries.Load())
	}
}
