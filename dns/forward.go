package dns

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
)

// EDNSSize is the UDP payload size overlayd advertises, upstream and to
// clients (the DNS Flag Day 2020 value).
const EDNSSize = 1232

// ErrBusy is returned by Forwarder.Exchange when MaxInFlight upstream queries
// are already outstanding; the Server answers SERVFAIL at once.
var ErrBusy = errors.New("dns: forwarder: too many queries in flight")

// ForwarderOptions configures a Forwarder. Zero fields take the defaults
// given.
type ForwarderOptions struct {
	// Upstreams are the resolvers to forward to (at least one), tried in
	// rotation, failing over to the next on error or timeout.
	Upstreams []netip.AddrPort
	// Timeout bounds a whole forwarded query, failover included; past it the
	// client gets SERVFAIL. Default 1.5 s, so SERVFAIL comes within 2 s.
	Timeout time.Duration
	// AttemptTimeout bounds one upstream's try (UDP, then TCP if
	// truncated). Default 500 ms.
	AttemptTimeout time.Duration
	// CacheSize is the number of answers cached (LRU). Default 10000;
	// negative disables the cache.
	CacheSize int
	// MaxTTL caps how long an answer is cached. Default 1 h.
	MaxTTL time.Duration
	// MaxInFlight bounds concurrent upstream queries; beyond it Exchange
	// returns ErrBusy. Default 256.
	MaxInFlight int
	// Now is the clock; time.Now by default.
	Now func() time.Time
}

// Forwarder resolves names outside the overlay zone through upstream
// resolvers, with a cache. It is safe for concurrent use and holds no
// goroutines or sockets between calls, so it needs no Close.
type Forwarder struct {
	upstreams      []netip.AddrPort
	timeout        time.Duration
	attemptTimeout time.Duration
	maxTTL         time.Duration
	cache          *cache
	sem            chan struct{}
	next           atomic.Uint32

	mu    sync.Mutex // guards calls
	calls map[cacheKey]*call

	hits, misses, upstreamErrors, busy, tcpRetries, ignored, coalesced atomic.Uint64
}

// ForwarderStats are the Forwarder's counters.
type ForwarderStats struct {
	CacheHits      uint64 // answers served from the cache
	CacheMisses    uint64 // queries that needed an upstream
	CacheEntries   int    // answers held now
	UpstreamErrors uint64 // failed upstream attempts (timeout, network error, SERVFAIL/REFUSED/NOTIMP answer)
	Busy           uint64 // queries refused because MaxInFlight were outstanding
	TCPRetries     uint64 // truncated UDP answers retried over TCP
	Ignored        uint64 // upstream packets ignored: unparsable, or ID/question mismatch
	Coalesced      uint64 // misses that waited for an identical outstanding query
}

// NewForwarder returns a Forwarder for opts.
func NewForwarder(opts ForwarderOptions) (*Forwarder, error) {
	if len(opts.Upstreams) == 0 {
		return nil, errors.New("dns: forwarder: no upstream resolvers; give at least one (or read them with ReadResolvConf)")
	}
	for _, u := range opts.Upstreams {
		if !u.IsValid() || u.Port() == 0 {
			return nil, fmt.Errorf("dns: forwarder: upstream %v is not an address:port", u)
		}
	}
	f := &Forwarder{
		upstreams:      append([]netip.AddrPort(nil), opts.Upstreams...),
		timeout:        opts.Timeout,
		attemptTimeout: opts.AttemptTimeout,
		maxTTL:         opts.MaxTTL,
		calls:          make(map[cacheKey]*call),
	}
	if f.timeout <= 0 {
		f.timeout = 1500 * time.Millisecond
	}
	if f.attemptTimeout <= 0 {
		f.attemptTimeout = 500 * time.Millisecond
	}
	if f.maxTTL <= 0 {
		f.maxTTL = time.Hour
	}
	size := opts.CacheSize
	if size == 0 {
		size = 10000
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	f.cache = newCache(size, now)
	inflight := opts.MaxInFlight
	if inflight <= 0 {
		inflight = 256
	}
	f.sem = make(chan struct{}, inflight)
	return f, nil
}

// Stats returns the Forwarder's counters.
func (f *Forwarder) Stats() ForwarderStats {
	return ForwarderStats{
		CacheHits:      f.hits.Load(),
		CacheMisses:    f.misses.Load(),
		CacheEntries:   f.cache.len(),
		UpstreamErrors: f.upstreamErrors.Load(),
		Busy:           f.busy.Load(),
		TCPRetries:     f.tcpRetries.Load(),
		Ignored:        f.ignored.Load(),
		Coalesced:      f.coalesced.Load(),
	}
}

// Exchange answers req's single question from the cache or an upstream. The
// returned message belongs to the caller; its ID, question and OPT record
// are for the caller to set. It returns ErrBusy beyond MaxInFlight, and an
// error when no upstream answered usefully within Timeout (or ctx ended).
func (f *Forwarder) Exchange(ctx context.Context, req *mdns.Msg) (*mdns.Msg, error) {
	if len(req.Question) != 1 {
		return nil, errors.New("dns: forwarder: want exactly one question")
	}
	m, key, ok := f.fromCache(req)
	if ok {
		return m.Copy(), nil
	}
	return f.exchangeMiss(ctx, req, key)
}

// fromCache returns the cached answer to req's one question, if any, and
// the question's cache key. The answer is shared: read-only.
func (f *Forwarder) fromCache(req *mdns.Msg) (*mdns.Msg, cacheKey, bool) {
	q := req.Question[0]
	do := false
	if opt := req.IsEdns0(); opt != nil {
		do = opt.Do()
	}
	key := cacheKey{name: strings.ToLower(q.Name), qtype: q.Qtype, qclass: q.Qclass, do: do, cd: req.CheckingDisabled}
	if m := f.cache.get(key); m != nil {
		f.hits.Add(1)
		return m, key, true
	}
	return nil, key, false
}

// call is one upstream query that identical queries arriving meanwhile
// wait for instead of asking again.
type call struct {
	done chan struct{} // closed when msg and err are set
	msg  *mdns.Msg
	err  error
}

// exchangeMiss asks the upstreams for what the cache did not hold; a query
// identical to one already outstanding waits for its answer.
func (f *Forwarder) exchangeMiss(ctx context.Context, req *mdns.Msg, key cacheKey) (*mdns.Msg, error) {
	f.misses.Add(1)
	f.mu.Lock()
	if c, ok := f.calls[key]; ok {
		f.mu.Unlock()
		f.coalesced.Add(1)
		select {
		case <-c.done:
		case <-ctx.Done():
			return nil, fmt.Errorf("dns: forwarder: %s: %w", req.Question[0].Name, ctx.Err())
		}
		if c.err != nil {
			return nil, c.err
		}
		return c.msg.Copy(), nil
	}
	select {
	case f.sem <- struct{}{}:
	default:
		f.mu.Unlock()
		f.busy.Add(1)
		return nil, ErrBusy
	}
	c := &call{done: make(chan struct{})}
	f.calls[key] = c
	f.mu.Unlock()

	c.msg, c.err = f.ask(ctx, req.Question[0], key)
	f.mu.Lock()
	delete(f.calls, key)
	f.mu.Unlock()
	close(c.done)
	<-f.sem
	if c.err != nil {
		return nil, c.err
	}
	return c.msg.Copy(), nil
}

// ask queries the upstreams and caches the answer, which it returns; the
// answer is shared and must not be modified.
func (f *Forwarder) ask(ctx context.Context, q mdns.Question, key cacheKey) (*mdns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	resp, err := f.query(ctx, q, key.do, key.cd)
	if err != nil {
		return nil, err
	}
	extra := resp.Extra[:0]
	for _, rr := range resp.Extra {
		if rr.Header().Rrtype != mdns.TypeOPT {
			extra = append(extra, rr)
		}
	}
	resp.Extra = extra
	f.cache.put(key, resp, cacheTTL(resp, f.maxTTL))
	return resp, nil
}

// query asks the upstreams in turn, starting from the next in rotation.
// While time remains and some attempt timed out (a lost datagram, not a
// refusal or an error answer), it goes round again.
func (f *Forwarder) query(ctx context.Context, q mdns.Question, do, cd bool) (*mdns.Msg, error) {
	start := int(f.next.Add(1))
	var errs []error
	for again := true; again && ctx.Err() == nil; {
		again = false
		for i := range f.upstreams {
			if ctx.Err() != nil {
				break
			}
			up := f.upstreams[(start+i)%len(f.upstreams)]
			out := new(mdns.Msg)
			out.Id = mdns.Id()
			out.RecursionDesired = true
			out.CheckingDisabled = cd
			out.Question = []mdns.Question{q}
			out.SetEdns0(EDNSSize, do)
			resp, err := f.attempt(ctx, up, out)
			if err == nil {
				switch resp.Rcode {
				case mdns.RcodeServerFailure, mdns.RcodeRefused, mdns.RcodeNotImplemented, mdns.RcodeFormatError:
					err = fmt.Errorf("dns: forwarder: upstream %v answered %s", up, mdns.RcodeToString[resp.Rcode])
				default:
					return resp, nil
				}
			}
			f.upstreamErrors.Add(1)
			errs = append(errs, err)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				again = true
			}
		}
	}
	if err := ctx.Err(); err != nil {
		errs = append(errs, fmt.Errorf("dns: forwarder: %s: %w", q.Name, err))
	}
	return nil, errors.Join(errs...)
}

// attempt asks one upstream over UDP, and over TCP if the answer is truncated.
func (f *Forwarder) attempt(ctx context.Context, up netip.AddrPort, out *mdns.Msg) (*mdns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, f.attemptTimeout)
	defer cancel()
	wire, err := out.Pack()
	if err != nil {
		return nil, fmt.Errorf("dns: forwarder: pack query: %w", err)
	}
	resp, err := f.exchangeUDP(ctx, up, out, wire)
	if err != nil || !resp.Truncated {
		return resp, err
	}
	f.tcpRetries.Add(1)
	return f.exchangeTCP(ctx, up, out, wire)
}

func (f *Forwarder) matches(out, in *mdns.Msg) bool {
	if in.Id != out.Id || !in.Response || len(in.Question) != 1 {
		return false
	}
	a, b := in.Question[0], out.Question[0]
	return a.Qtype == b.Qtype && a.Qclass == b.Qclass && strings.EqualFold(a.Name, b.Name)
}

func (f *Forwarder) exchangeUDP(ctx context.Context, up netip.AddrPort, out *mdns.Msg, wire []byte) (*mdns.Msg, error) {
	// A connected socket on a fresh random port: the kernel drops datagrams
	// from other sources, and the ID and question are checked below.
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(up))
	if err != nil {
		return nil, fmt.Errorf("dns: forwarder: upstream %v: %w", up, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if d, ok := ctx.Deadline(); ok {
		c.SetDeadline(d)
	}
	if _, err := c.Write(wire); err != nil {
		return nil, fmt.Errorf("dns: forwarder: upstream %v: %w", up, err)
	}
	buf := make([]byte, 65535)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return nil, fmt.Errorf("dns: forwarder: upstream %v over udp: %w", up, err)
		}
		in := new(mdns.Msg)
		if err := in.Unpack(buf[:n]); err != nil || !f.matches(out, in) {
			// Forged, late or garbled: keep waiting for the real answer.
			f.ignored.Add(1)
			continue
		}
		return in, nil
	}
}

func (f *Forwarder) exchangeTCP(ctx context.Context, up netip.AddrPort, out *mdns.Msg, wire []byte) (*mdns.Msg, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", up.String())
	if err != nil {
		return nil, fmt.Errorf("dns: forwarder: upstream %v over tcp: %w", up, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if d, ok := ctx.Deadline(); ok {
		c.SetDeadline(d)
	}
	msg := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(wire)), uint16(len(wire)))
	if _, err := c.Write(append(msg, wire...)); err != nil {
		return nil, fmt.Errorf("dns: forwarder: upstream %v over tcp: %w", up, err)
	}
	for {
		b, err := readTCPMsg(c)
		if err != nil {
			return nil, fmt.Errorf("dns: forwarder: upstream %v over tcp: %w", up, err)
		}
		in := new(mdns.Msg)
		if err := in.Unpack(b); err != nil || !f.matches(out, in) {
			f.ignored.Add(1)
			continue
		}
		return in, nil
	}
}

// readTCPMsg reads one length-prefixed DNS message (RFC 1035 §4.2.2).
func readTCPMsg(r io.Reader) ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}

// ReadResolvConf returns the nameservers listed in a resolv.conf(5) file
// (port 53). It does not decide whether to use them: a resolv.conf pointing at
// overlayd's own listener would loop, which the caller must rule out.
func ReadResolvConf(path string) ([]netip.AddrPort, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("dns: %w", err)
	}
	defer f.Close()
	var ns []netip.AddrPort
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || fields[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(fields[1])
		if err != nil {
			continue
		}
		ns = append(ns, netip.AddrPortFrom(a.Unmap(), 53))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("dns: read %s: %w", path, err)
	}
	if len(ns) == 0 {
		return nil, fmt.Errorf("dns: %s lists no nameservers", path)
	}
	return ns, nil
}
