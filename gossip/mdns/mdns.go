package mdns

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"

	"github.com/overlayd/overlayd/gossip"
)

// Service is the DNS-SD service overlayd nodes announce,
// "_overlayd._udp" in the "local." domain.
const Service = "_overlayd._udp.local."

// mDNS timings and limits.
const (
	mdnsPort        = 5353
	mdnsTTL         = 120              // seconds: RFC 6762's for records about a host
	mdnsFirstQuery  = time.Second      // the second query; then doubling
	mdnsMaxInterval = 60 * time.Second // RFC 6762 §5.2 allows an hour; a lost cluster is found sooner
	mdnsMaxPacket   = 9000             // RFC 6762 §17
)

// The mDNS groups of the two families (RFC 6762 §3).
var (
	mdnsGroup4 = netip.MustParseAddr("224.0.0.251")
	mdnsGroup6 = netip.MustParseAddr("ff02::fb")
)

// Options configures New.
type Options struct {
	// Logger receives its logs (named "mdns"). Default zap.NewNop().
	Logger *zap.Logger
}

// New returns the gossip.Discoverer of a LAN: multicast DNS on the interface
// that holds the gossip address, never on the others, in that address's
// family: the group 224.0.0.251 for an IPv4 one, ff02::fb for an IPv6 one
// (unique local or global; so nodes gossiping over IPv6 find only each
// other, as they can gossip only with each other). It
// answers queries for Service with a PTR to this node's instance,
// its SRV, A (or AAAA) and a TXT record "v=1", "name=NODE", "addr=IP:PORT" (the
// gossip address; never the key: nodes with another key are found, and
// memberlist refuses them), announces itself twice at Start, queries at
// Start and then every 1 s, 2 s, 4 s ... up to a minute, and says goodbye
// (TTL 0) at Close. It shares port 5353 with other responders (avahi) by
// SO_REUSEPORT.
func New(opts Options) gossip.Discoverer {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	return &mdns{log: opts.Logger.Named("mdns"), stop: make(chan struct{})}
}

// mdns is New's gossip.Discoverer.
type mdns struct {
	log  *zap.Logger
	stop chan struct{}
	wg   sync.WaitGroup

	// Set by Start, read-only after.
	ifi   *net.Interface
	own   map[netip.Addr]bool // ifi's addresses: a query from one is this host's
	conn  groupConn
	group *net.UDPAddr // the mDNS group of self's family, port 5353
	self  gossip.Found
	inst  string // this node's instance name, LABEL._overlayd._udp.local.
	host  string // its SRV target, LABEL.local.
	found func(gossip.Found)

	mu      sync.Mutex // guards started, closed and sendErr
	started bool
	closed  bool
	sendErr string // the last send error logged
}

var _ gossip.Discoverer = (*mdns)(nil)

func (m *mdns) Start(self gossip.Found, found func(gossip.Found)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || m.started {
		return errors.New("mdns: started twice, or closed")
	}
	self.Addr = netip.AddrPortFrom(self.Addr.Addr().Unmap(), self.Addr.Port())
	ifi, err := interfaceOf(self.Addr.Addr())
	if err != nil {
		return err
	}
	conn, group, err := listenGroup(ifi, self.Addr.Addr().Is6())
	if err != nil {
		return err
	}
	own := map[netip.Addr]bool{}
	if addrs, err := ifi.Addrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok {
					own[ip.Unmap()] = true
				}
			}
		}
	}
	own[self.Addr.Addr()] = true
	label := instanceLabel(self.Name)
	m.ifi, m.own, m.conn, m.group, m.self, m.found = ifi, own, conn, group, self, found
	m.inst, m.host = label+"."+Service, label+".local."
	m.started = true
	m.wg.Add(2)
	go m.readLoop()
	go m.sendLoop()
	m.log.Info("announcing and looking for nodes over mDNS",
		zap.String("interface", ifi.Name), zap.String("service", Service), zap.Stringer("addr", self.Addr))
	return nil
}

func (m *mdns) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	started := m.started
	m.mu.Unlock()
	close(m.stop)
	if !started {
		return nil
	}
	m.send(m.response(0, 0, nil), nil) // goodbye: caches drop the records
	err := m.conn.Close()
	m.wg.Wait()
	if err != nil {
		return fmt.Errorf("mdns: close: %w", err)
	}
	return nil
}

// groupConn is the mDNS socket of one family: ipv4's or ipv6's
// PacketConn, with the arrival interface of what it reads (ok false when
// the system did not say).
type groupConn interface {
	ReadFrom(b []byte) (n, ifIndex int, ok bool, src net.Addr, err error)
	WriteTo(b []byte, dst net.Addr) (int, error)
	Close() error
}

type conn4 struct{ p *ipv4.PacketConn }

func (c conn4) ReadFrom(b []byte) (int, int, bool, net.Addr, error) {
	n, cm, src, err := c.p.ReadFrom(b)
	if cm == nil {
		return n, 0, false, src, err
	}
	return n, cm.IfIndex, true, src, err
}
func (c conn4) WriteTo(b []byte, dst net.Addr) (int, error) { return c.p.WriteTo(b, nil, dst) }
func (c conn4) Close() error                                { return c.p.Close() }

type conn6 struct{ p *ipv6.PacketConn }

func (c conn6) ReadFrom(b []byte) (int, int, bool, net.Addr, error) {
	n, cm, src, err := c.p.ReadFrom(b)
	if cm == nil {
		return n, 0, false, src, err
	}
	return n, cm.IfIndex, true, src, err
}
func (c conn6) WriteTo(b []byte, dst net.Addr) (int, error) { return c.p.WriteTo(b, nil, dst) }
func (c conn6) Close() error                                { return c.p.Close() }

// listenGroup opens port 5353 of the family (shared with other
// responders), joins its mDNS group on ifi only and sends there, with
// the TTL (hop limit) RFC 6762 asks and multicast looped back, so that
// two nodes on one host find each other.
func listenGroup(ifi *net.Interface, is6 bool) (groupConn, *net.UDPAddr, error) {
	network, bind, group := "udp4", fmt.Sprintf("0.0.0.0:%d", mdnsPort), mdnsGroup4
	if is6 {
		network, bind, group = "udp6", fmt.Sprintf("[::]:%d", mdnsPort), mdnsGroup6
	}
	lc := net.ListenConfig{Control: reusePort}
	c, err := lc.ListenPacket(context.Background(), network, bind)
	if err != nil {
		return nil, nil, fmt.Errorf("mdns: listen on port %d: %w", mdnsPort, err)
	}
	ga := &net.UDPAddr{IP: group.AsSlice()}
	type step struct {
		what string
		err  error
	}
	var steps []step
	var gc groupConn
	if is6 {
		p := ipv6.NewPacketConn(c)
		steps = []step{
			{"join " + group.String(), p.JoinGroup(ifi, ga)},
			{"set the multicast interface", p.SetMulticastInterface(ifi)},
			{"set the multicast hop limit", p.SetMulticastHopLimit(255)},
			{"loop multicast back", p.SetMulticastLoopback(true)},
			{"ask for the arrival interface", p.SetControlMessage(ipv6.FlagInterface, true)},
		}
		gc = conn6{p}
	} else {
		p := ipv4.NewPacketConn(c)
		steps = []step{
			{"join " + group.String(), p.JoinGroup(ifi, ga)},
			{"set the multicast interface", p.SetMulticastInterface(ifi)},
			{"set the multicast TTL", p.SetMulticastTTL(255)},
			{"loop multicast back", p.SetMulticastLoopback(true)},
			{"ask for the arrival interface", p.SetControlMessage(ipv4.FlagInterface, true)},
		}
		gc = conn4{p}
	}
	for _, st := range steps {
		if st.err != nil {
			c.Close()
			return nil, nil, fmt.Errorf("mdns: on %s: %s: %w", ifi.Name, st.what, st.err)
		}
	}
	// No zone on the IPv6 group: the multicast interface set above says
	// where it goes.
	return gc, &net.UDPAddr{IP: group.AsSlice(), Port: mdnsPort}, nil
}

// reusePort lets the socket share port 5353 with other mDNS responders.
func reusePort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
		if serr == nil {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// CheckAddr says why gossip address ip cannot announce on the LAN (an
// IPv6 link-local one, on no interface, or on one that is down or cannot
// multicast), or nil; Start refuses the same, 'overlayd run --check' asks
// before.
func CheckAddr(ip netip.Addr) error {
	_, err := interfaceOf(ip.Unmap())
	return err
}

// interfaceOf returns the multicast-capable interface that holds ip.
func interfaceOf(ip netip.Addr) (*net.Interface, error) {
	if ip.Is6() && (ip.IsLinkLocalUnicast() || ip.IsMulticast() || ip.IsUnspecified() || ip.Zone() != "") {
		return nil, fmt.Errorf("mdns: the gossip address %v is not a unicast address of the LAN that peers can join; give --gossip a unique local or global IPv6 address (or an IPv4 one)", ip)
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("mdns: list interfaces: %w", err)
	}
	for i := range ifs {
		addrs, err := ifs[i].Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			n, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			if got, ok := netip.AddrFromSlice(n.IP); ok && got.Unmap() == ip {
				if ifs[i].Flags&net.FlagMulticast == 0 || ifs[i].Flags&net.FlagUp == 0 {
					return nil, fmt.Errorf("mdns: the gossip address %v is on %s, which is down or cannot multicast; give --gossip IP:PORT with this host's LAN address", ip, ifs[i].Name)
				}
				return &ifs[i], nil
			}
		}
	}
	return nil, fmt.Errorf("mdns: no interface holds the gossip address %v; give --gossip IP:PORT with this host's LAN address", ip)
}

// instanceLabel is a node's DNS-SD instance label: its name, with what is
// not a letter, digit or '-' as '-', cut to 40 bytes, and a hash of the
// whole name (names that differ give labels that differ).
func instanceLabel(name string) string {
	var b strings.Builder
	for _, r := range name {
		if b.Len() >= 40 {
			break
		}
		if r < 0x80 && (r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	h := fnv.New32a()
	h.Write([]byte(name))
	return fmt.Sprintf("%s-%08x", b.String(), h.Sum32())
}

// sendLoop announces twice, one second apart (RFC 6762 §8.3), and
// queries at doubling intervals up to mdnsMaxInterval.
func (m *mdns) sendLoop() {
	defer m.wg.Done()
	m.send(m.response(mdnsTTL, 0, nil), nil)
	m.send(m.query(), nil)
	interval := mdnsFirstQuery
	announce := true
	for {
		select {
		case <-m.stop:
			return
		case <-time.After(interval):
		}
		if announce {
			m.send(m.response(mdnsTTL, 0, nil), nil)
			announce = false
		}
		m.send(m.query(), nil)
		interval = min(2*interval, mdnsMaxInterval)
	}
}

// readLoop answers queries for this node and reports the nodes heard, on
// m.ifi only (the socket hears every interface's groups).
func (m *mdns) readLoop() {
	defer m.wg.Done()
	buf := make([]byte, mdnsMaxPacket)
	for {
		n, ifIndex, known, src, err := m.conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			select {
			case <-m.stop:
				return
			default:
			}
			m.log.Debug("read", zap.Error(err))
			continue
		}
		if known && ifIndex != m.ifi.Index {
			continue
		}
		msg, found, err := parseMDNS(buf[:n])
		if err != nil {
			continue // not DNS, or not ours: the group carries every service
		}
		if !msg.Response {
			if ua, ok := src.(*net.UDPAddr); !ok || !m.isSelf(ua) {
				m.answer(msg, src) // not our own query, looped back
			}
			continue
		}
		for _, f := range found {
			if f.Name != m.self.Name {
				m.found(f)
			}
		}
	}
}

// isSelf reports whether src is this node's own mDNS socket: port 5353
// at an address of its interface (over IPv6 the kernel sends to the
// link-local group from the interface's link-local address, not the
// gossip one).
func (m *mdns) isSelf(src *net.UDPAddr) bool {
	ip, _ := netip.AddrFromSlice(src.IP)
	return src.Port == mdnsPort && m.own[ip.Unmap()]
}

// answer replies to a query that asks for this node's records: by
// multicast, or to the asker (with its ID and question) when it did not
// ask from port 5353 (RFC 6762 §6.7, a one-shot resolver).
func (m *mdns) answer(q *dns.Msg, src net.Addr) {
	asks := false
	for _, qq := range q.Question {
		name := strings.ToLower(qq.Name)
		if qq.Qclass&^(1<<15) != dns.ClassINET && qq.Qclass&^(1<<15) != dns.ClassANY {
			continue
		}
		if name == Service && (qq.Qtype == dns.TypePTR || qq.Qtype == dns.TypeANY) ||
			name == strings.ToLower(m.inst) {
			asks = true
		}
	}
	if !asks {
		return
	}
	if ua, ok := src.(*net.UDPAddr); ok && ua.Port != mdnsPort {
		m.send(m.response(mdnsTTL, q.Id, q.Question), ua)
		return
	}
	m.send(m.response(mdnsTTL, 0, nil), nil)
}

// query asks for every node of the service.
func (m *mdns) query() *dns.Msg {
	q := new(dns.Msg)
	q.Question = []dns.Question{{Name: Service, Qtype: dns.TypePTR, Qclass: dns.ClassINET}}
	return q
}

// response holds this node's records with ttl (0: goodbye); id and
// question are a one-shot resolver's, echoed.
func (m *mdns) response(ttl uint32, id uint16, question []dns.Question) *dns.Msg {
	const flush = 1 << 15 // cache-flush: these records are this node's alone
	r := new(dns.Msg)
	r.Id, r.Response, r.Authoritative, r.Question = id, true, true, question
	hdr := func(name string, t uint16, class uint16) dns.RR_Header {
		return dns.RR_Header{Name: name, Rrtype: t, Class: class, Ttl: ttl}
	}
	r.Answer = []dns.RR{
		&dns.PTR{Hdr: hdr(Service, dns.TypePTR, dns.ClassINET), Ptr: m.inst},
		&dns.TXT{Hdr: hdr(m.inst, dns.TypeTXT, dns.ClassINET|flush), Txt: formatTXT(m.self)},
		&dns.SRV{Hdr: hdr(m.inst, dns.TypeSRV, dns.ClassINET|flush), Port: m.self.Addr.Port(), Target: m.host},
	}
	if ip := m.self.Addr.Addr(); ip.Is6() {
		r.Extra = []dns.RR{&dns.AAAA{Hdr: hdr(m.host, dns.TypeAAAA, dns.ClassINET|flush), AAAA: ip.AsSlice()}}
	} else {
		r.Extra = []dns.RR{&dns.A{Hdr: hdr(m.host, dns.TypeA, dns.ClassINET|flush), A: ip.AsSlice()}}
	}
	return r
}

// send packs msg and sends it to the group, or to dst. A failure is
// logged at WARN when it differs from the last one, at DEBUG otherwise.
func (m *mdns) send(msg *dns.Msg, dst *net.UDPAddr) {
	b, err := msg.Pack()
	if err == nil {
		if dst == nil {
			dst = m.group
		}
		_, err = m.conn.WriteTo(b, dst)
	}
	if err == nil || errors.Is(err, net.ErrClosed) {
		return
	}
	m.mu.Lock()
	changed := m.sendErr != err.Error()
	m.sendErr = err.Error()
	m.mu.Unlock()
	if changed {
		m.log.Warn("cannot send over mDNS", zap.String("interface", m.ifi.Name), zap.Error(err))
	} else {
		m.log.Debug("cannot send over mDNS", zap.Error(err))
	}
}

// formatTXT is the TXT record of f (RFC 6763 §6: key=value strings).
func formatTXT(f gossip.Found) []string {
	return []string{"v=1", "name=" + f.Name, "addr=" + f.Addr.String()}
}

// parseTXT reads a TXT record formatTXT wrote: version 1, a valid node
// name and a unicast address with a port: IPv4, or IPv6 unique local or
// global (no link-local one, which would need a zone; no v4-mapped one).
// Keys are case-insensitive,
// unknown keys are ignored (a later version may add some), and the first
// of a repeated key wins (RFC 6763 §6.4).
func parseTXT(txt []string) (gossip.Found, error) {
	var f gossip.Found
	var seen struct{ v, name, addr bool }
	for _, s := range txt {
		k, v, _ := strings.Cut(s, "=")
		switch strings.ToLower(k) {
		case "v":
			if seen.v {
				continue
			}
			seen.v = true
			if v != "1" {
				return gossip.Found{}, fmt.Errorf("mdns: TXT version %q, want 1", v)
			}
		case "name":
			if seen.name {
				continue
			}
			seen.name = true
			if err := gossip.CheckName(v); err != nil {
				return gossip.Found{}, fmt.Errorf("mdns: TXT name: %w", err)
			}
			f.Name = v
		case "addr":
			if seen.addr {
				continue
			}
			seen.addr = true
			ap, err := netip.ParseAddrPort(v)
			if err != nil {
				return gossip.Found{}, fmt.Errorf("mdns: TXT addr: %w", err)
			}
			ip := ap.Addr()
			ok4 := ip.Is4() && !ip.IsUnspecified() && !ip.IsMulticast() && ip != netip.AddrFrom4([4]byte{255, 255, 255, 255})
			ok6 := ip.Is6() && !ip.Is4In6() && ip.Zone() == "" && ip.IsGlobalUnicast()
			if ap.Port() == 0 || !ok4 && !ok6 {
				return gossip.Found{}, fmt.Errorf("mdns: TXT addr %v is not a unicast address with a port (IPv4, or IPv6 unique local or global)", ap)
			}
			f.Addr = ap
		}
	}
	switch {
	case !seen.v:
		return gossip.Found{}, errors.New("mdns: TXT without a version")
	case !seen.name:
		return gossip.Found{}, errors.New("mdns: TXT without a name")
	case !seen.addr:
		return gossip.Found{}, errors.New("mdns: TXT without an addr")
	}
	return f, nil
}

// parseMDNS unpacks an mDNS message and, for a response, the nodes its
// TXT records of Service announce (goodbyes, TTL 0, are skipped; so
// are records that do not parse).
func parseMDNS(b []byte) (*dns.Msg, []gossip.Found, error) {
	msg := new(dns.Msg)
	if err := msg.Unpack(b); err != nil {
		return nil, nil, err
	}
	if !msg.Response {
		return msg, nil, nil
	}
	var out []gossip.Found
	for _, rrs := range [][]dns.RR{msg.Answer, msg.Extra} {
		for _, rr := range rrs {
			t, ok := rr.(*dns.TXT)
			if !ok || t.Hdr.Ttl == 0 || !strings.HasSuffix(strings.ToLower(t.Hdr.Name), "."+Service) {
				continue
			}
			if f, err := parseTXT(t.Txt); err == nil {
				out = append(out, f)
			}
		}
	}
	return msg, out, nil
}
