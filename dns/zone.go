package dns

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	mdns "github.com/miekg/dns"
)

// DefaultDomain is the overlay's domain when ZoneData.Domain is empty.
const DefaultDomain = "overlay."

// DefaultTTL is the TTL of overlay records when ZoneData.TTL is zero.
const DefaultTTL = 5 * time.Second

// ZoneData is the plain description of the overlay's names from which a
// Zone is built. The node rebuilds it from the gossip tables and hands the
// whole of it to Server.SetZone.
type ZoneData struct {
	// Domain is the zone's apex, "overlay." by default.
	Domain string
	// Networks are the overlay networks; their names are the second label.
	Networks []Network
	// Nodes are node addresses: NAME.NETWORK.DOMAIN. A/AAAA.
	Nodes []NodeRecord
	// Services are service VIPs (A/AAAA) and ports (SRV).
	Services []ServiceRecord
	// TTL is the TTL of every record and the negative-cache TTL; 5 s by
	// default, whole seconds.
	TTL time.Duration
}

// Network is one overlay network, of one family: a dual-stack network is
// listed twice, once with its IPv4 CIDR and DNS address and once with its
// IPv6 ones.
type Network struct {
	Name string
	// CIDR is the network's prefix; reverse (PTR) names of addresses in it
	// are answered by the zone.
	CIDR netip.Prefix
	// DNSAddr is the network's DNS address (served by every node); it may be
	// zero and, when set, lies in CIDR.
	DNSAddr netip.Addr
}

// NodeRecord is a node's address on a network. A node with an IPv4 and an
// IPv6 address has two records.
type NodeRecord struct {
	Name    string
	Network string
	Addr    netip.Addr
}

// ServiceRecord is a service's VIP and ports on a network. A dual-stack
// service has two records, one per VIP (A and AAAA at one name, its SRV
// records once).
type ServiceRecord struct {
	Name    string
	Network string
	VIP     netip.Addr
	Ports   []Port
}

// Port is one service port.
type Port struct {
	Port  uint16
	Proto string // "tcp" or "udp"
}

// Zone is an immutable snapshot of the overlay's names. It is safe for
// concurrent use.
type Zone struct {
	domain    string // lower case, fully qualified
	dotDomain string // "." + domain
	ttl       uint32
	names     map[string]*entry // lower-case FQDN -> records; empty entry = empty non-terminal
	ptr       map[netip.Addr][]string
	ptrRRs    map[netip.Addr][]mdns.RR
	soa       *mdns.SOA
	soaRRs    []mdns.RR // {soa}
	reverse   []reverseZone
}

type reverseZone struct {
	prefix netip.Prefix
	soaRRs []mdns.RR // {SOA of the reverse zone}
}

// entry holds the records of one name. The RR slices are built once by
// NewZone and shared by every reply: read-only, and clipped so that an
// append copies.
type entry struct {
	addrs []netip.Addr // A and AAAA, in data order
	srv   []srvTarget

	a, aaaa, srvRRs, srvExtra []mdns.RR
}

type srvTarget struct {
	port   uint16
	target string // FQDN as written (lower case)
}

// NewZone builds a Zone from d. Records that are invalid (a bad label, an
// unknown network, an invalid address, a port protocol other than tcp/udp,
// a node name that a service on the same network also uses) are left out and
// reported together in the returned error, with the Zone built from the rest:
// one peer's bad entry never takes the other names down. An invalid Domain or
// TTL, or invalid networks, are reported too; a bad Domain or TTL returns a
// nil Zone.
func NewZone(d ZoneData) (*Zone, error) {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("dns: zone: "+format, args...))
	}
	domain := d.Domain
	if domain == "" {
		domain = DefaultDomain
	}
	domain = strings.ToLower(mdns.Fqdn(domain))
	if _, ok := mdns.IsDomainName(domain); !ok || domain == "." {
		return nil, fmt.Errorf("dns: zone: domain %q is not a domain name; use a name such as %q", d.Domain, DefaultDomain)
	}
	ttl := d.TTL
	if ttl == 0 {
		ttl = DefaultTTL
	}
	if ttl < time.Second || ttl > 24*time.Hour {
		return nil, fmt.Errorf("dns: zone: TTL %v is out of range; use between 1s and 24h", d.TTL)
	}
	z := &Zone{
		domain: domain,
		ttl:    uint32(ttl / time.Second),
		names:  make(map[string]*entry),
		ptr:    make(map[netip.Addr][]string),
	}
	z.dotDomain = "." + domain
	z.soa = z.newSOA(domain)
	z.soaRRs = []mdns.RR{z.soa}
	z.names[domain] = &entry{}

	networks := make(map[string]bool)
	listed := make(map[string]bool) // name and family
	for _, n := range d.Networks {
		name := strings.ToLower(n.Name)
		switch {
		case !validLabel(name):
			bad("network %q: name is not a DNS label (letters, digits, hyphens; at most 63)", n.Name)
			continue
		case !n.CIDR.IsValid():
			bad("network %q: CIDR is not set", n.Name)
			continue
		case n.DNSAddr.IsValid() && !n.CIDR.Contains(n.DNSAddr):
			bad("network %q: DNS address %v is outside %v", n.Name, n.DNSAddr, n.CIDR)
		}
		fam := name + "/4"
		if n.CIDR.Addr().Is6() {
			fam = name + "/6"
		}
		if listed[fam] {
			bad("network %q: listed twice with a CIDR of one family", n.Name)
			continue
		}
		listed[fam] = true
		first := !networks[name]
		networks[name] = true
		p := n.CIDR.Masked()
		z.reverse = append(z.reverse, reverseZone{prefix: p, soaRRs: []mdns.RR{z.newSOA(reverseApex(p))}})
		if first {
			z.addENTs(name + "." + domain)
		}
	}

	services := make(map[string]bool) // "name.network" taken by a service
	for _, s := range d.Services {
		name, netName := strings.ToLower(s.Name), strings.ToLower(s.Network)
		if !validLabel(name) {
			bad("service %q on network %q: name is not a DNS label", s.Name, s.Network)
			continue
		}
		if !networks[netName] {
			bad("service %q: unknown network %q", s.Name, s.Network)
			continue
		}
		if !s.VIP.IsValid() {
			bad("service %q on network %q: VIP is not set", s.Name, s.Network)
			continue
		}
		owner := name + "." + netName + "." + domain
		services[name+"."+netName] = true
		z.addAddr(owner, s.VIP.Unmap())
		for _, p := range s.Ports {
			proto := strings.ToLower(p.Proto)
			if proto != "tcp" && proto != "udp" || p.Port == 0 {
				bad("service %q on network %q: port %d/%s: want a non-zero port and tcp or udp", s.Name, s.Network, p.Port, p.Proto)
				continue
			}
			srvName := "_" + strconv.Itoa(int(p.Port)) + "._" + proto + "." + owner
			z.addENTs(srvName)
			e := z.names[srvName]
			t := srvTarget{port: p.Port, target: owner}
			if !slices.Contains(e.srv, t) {
				e.srv = append(e.srv, t)
			}
		}
	}
	for _, n := range d.Nodes {
		name, netName := strings.ToLower(n.Name), strings.ToLower(n.Network)
		if !validLabel(name) {
			bad("node %q on network %q: name is not a DNS label", n.Name, n.Network)
			continue
		}
		if !networks[netName] {
			bad("node %q: unknown network %q", n.Name, n.Network)
			continue
		}
		if !n.Addr.IsValid() {
			bad("node %q on network %q: address is not set", n.Name, n.Network)
			continue
		}
		if services[name+"."+netName] {
			bad("node %q on network %q: a service has that name; the service's VIP is served", n.Name, n.Network)
			continue
		}
		z.addAddr(name+"."+netName+"."+domain, n.Addr.Unmap())
	}
	z.buildRRs()
	return z, errors.Join(errs...)
}

// buildRRs makes the records every reply shares.
func (z *Zone) buildRRs() {
	for name, e := range z.names {
		e.a = slices.Clip(z.addrRRs(nil, name, e.addrs, mdns.TypeA))
		e.aaaa = slices.Clip(z.addrRRs(nil, name, e.addrs, mdns.TypeAAAA))
		for _, t := range e.srv {
			e.srvRRs = append(e.srvRRs, &mdns.SRV{
				Hdr:    mdns.RR_Header{Name: name, Rrtype: mdns.TypeSRV, Class: mdns.ClassINET, Ttl: z.ttl},
				Port:   t.port,
				Target: t.target,
			})
			if te := z.names[t.target]; te != nil && len(e.srvExtra) == 0 {
				// All of a name's SRV records point at the service itself.
				e.srvExtra = slices.Clip(z.addrRRs(nil, t.target, te.addrs, mdns.TypeANY))
			}
		}
		e.srvRRs = slices.Clip(e.srvRRs)
	}
	z.ptrRRs = make(map[netip.Addr][]mdns.RR, len(z.ptr))
	for addr, names := range z.ptr {
		owner := reverseName(addr)
		var rrs []mdns.RR
		for _, n := range names {
			rrs = append(rrs, &mdns.PTR{
				Hdr: mdns.RR_Header{Name: owner, Rrtype: mdns.TypePTR, Class: mdns.ClassINET, Ttl: z.ttl},
				Ptr: n,
			})
		}
		z.ptrRRs[addr] = slices.Clip(rrs)
	}
}

// reverseName is a's full in-addr.arpa. or ip6.arpa. name.
func reverseName(a netip.Addr) string {
	return reverseApex(netip.PrefixFrom(a, a.BitLen()))
}

func (z *Zone) newSOA(apex string) *mdns.SOA {
	return &mdns.SOA{
		Hdr:     mdns.RR_Header{Name: apex, Rrtype: mdns.TypeSOA, Class: mdns.ClassINET, Ttl: z.ttl},
		Ns:      "ns." + z.domain,
		Mbox:    "hostmaster." + z.domain,
		Serial:  1,
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
		Minttl:  z.ttl,
	}
}

// addAddr adds an address record at owner and its PTR.
func (z *Zone) addAddr(owner string, a netip.Addr) {
	z.addENTs(owner)
	e := z.names[owner]
	if slices.Contains(e.addrs, a) {
		return
	}
	e.addrs = append(e.addrs, a)
	z.ptr[a] = append(z.ptr[a], owner)
}

// addENTs makes name and all its ancestors up to the apex exist.
func (z *Zone) addENTs(name string) {
	for n := name; n != z.domain && n != "."; {
		if _, ok := z.names[n]; !ok {
			z.names[n] = &entry{}
		}
		i := strings.IndexByte(n, '.')
		n = n[i+1:]
	}
}

func validLabel(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' || s[0] == '_' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// reverseApex is the reverse name covering p, rounded out to an octet (IPv4)
// or nibble (IPv6) boundary.
func reverseApex(p netip.Prefix) string {
	b := p.Addr().AsSlice()
	var sb strings.Builder
	if p.Addr().Is4() {
		for i := p.Bits()/8 - 1; i >= 0; i-- {
			sb.WriteString(strconv.Itoa(int(b[i])))
			sb.WriteByte('.')
		}
		sb.WriteString("in-addr.arpa.")
		return sb.String()
	}
	const hex = "0123456789abcdef"
	for i := p.Bits()/4 - 1; i >= 0; i-- {
		nib := b[i/2]
		if i%2 == 0 {
			nib >>= 4
		}
		sb.WriteByte(hex[nib&0xf])
		sb.WriteByte('.')
	}
	sb.WriteString("ip6.arpa.")
	return sb.String()
}

// parseReverse returns the address named by a full in-addr.arpa. or
// ip6.arpa. name (lower case).
func parseReverse(name string) (netip.Addr, bool) {
	if rest, ok := strings.CutSuffix(name, ".in-addr.arpa."); ok {
		parts := strings.Split(rest, ".")
		if len(parts) != 4 {
			return netip.Addr{}, false
		}
		var b [4]byte
		for i, p := range parts {
			if len(p) == 0 || len(p) > 3 || len(p) > 1 && p[0] == '0' || strings.IndexFunc(p, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
				return netip.Addr{}, false // digits only: Atoi would take "+1"
			}
			v, err := strconv.Atoi(p)
			if err != nil || v > 255 {
				return netip.Addr{}, false
			}
			b[3-i] = byte(v)
		}
		return netip.AddrFrom4(b), true
	}
	if rest, ok := strings.CutSuffix(name, ".ip6.arpa."); ok {
		if len(rest) != 63 {
			return netip.Addr{}, false
		}
		var b [16]byte
		for i := 0; i < 32; i++ {
			c := rest[2*i]
			if 2*i+1 < len(rest) && rest[2*i+1] != '.' {
				return netip.Addr{}, false
			}
			var v byte
			switch {
			case '0' <= c && c <= '9':
				v = c - '0'
			case 'a' <= c && c <= 'f':
				v = c - 'a' + 10
			default:
				return netip.Addr{}, false
			}
			n := 31 - i // nibble index from the left
			if n%2 == 0 {
				b[n/2] |= v << 4
			} else {
				b[n/2] |= v
			}
		}
		return netip.AddrFrom16(b), true
	}
	return netip.Addr{}, false
}

// Domain returns the zone's apex, lower case and fully qualified.
func (z *Zone) Domain() string { return z.domain }

// answer is the zone's reply to one question.
type answer struct {
	rcode  int
	answer []mdns.RR
	ns     []mdns.RR
	extra  []mdns.RR
}

// lookup answers q if the zone is authoritative for its name. ok is false for
// names the zone does not hold (to be forwarded). qname must be lower case.
func (z *Zone) lookup(qname string, qtype uint16) (a answer, ok bool) {
	if qname == z.domain || strings.HasSuffix(qname, z.dotDomain) {
		return z.own(qname, qtype), true
	}
	if addr, ok := parseReverse(qname); ok {
		ptrs, has := z.ptrRRs[addr]
		var soa []mdns.RR
		for _, r := range z.reverse {
			if r.prefix.Contains(addr) {
				soa = r.soaRRs
				break
			}
		}
		if !has && soa == nil {
			return answer{}, false
		}
		if soa == nil {
			soa = []mdns.RR{z.newSOA(reverseName(addr))}
		}
		switch {
		case !has:
			return answer{rcode: mdns.RcodeNameError, ns: soa}, true
		case qtype != mdns.TypePTR && qtype != mdns.TypeANY:
			return answer{rcode: mdns.RcodeSuccess, ns: soa}, true
		}
		return answer{answer: ptrs}, true
	}
	return answer{}, false
}

// own answers a name under the zone's domain.
func (z *Zone) own(qname string, qtype uint16) answer {
	e, exists := z.names[qname]
	if !exists {
		return answer{rcode: mdns.RcodeNameError, ns: z.soaRRs}
	}
	var a answer
	switch qtype {
	case mdns.TypeA:
		a.answer = e.a
	case mdns.TypeAAAA:
		a.answer = e.aaaa
	case mdns.TypeSRV:
		a.answer, a.extra = e.srvRRs, e.srvExtra
	case mdns.TypeSOA:
		if qname == z.domain {
			a.answer = z.soaRRs
		}
	case mdns.TypeANY:
		if qname == z.domain {
			a.answer = append(a.answer, z.soa)
		}
		a.answer = append(append(append(a.answer, e.a...), e.aaaa...), e.srvRRs...)
		a.extra = e.srvExtra
	}
	if len(a.answer) == 0 {
		a.answer, a.extra = nil, nil
		a.ns = z.soaRRs
	}
	return a
}

func (z *Zone) addrRRs(rrs []mdns.RR, name string, addrs []netip.Addr, qtype uint16) []mdns.RR {
	for _, ip := range addrs {
		hdr := mdns.RR_Header{Name: name, Class: mdns.ClassINET, Ttl: z.ttl}
		switch {
		case ip.Is4() && qtype != mdns.TypeAAAA:
			hdr.Rrtype = mdns.TypeA
			rrs = append(rrs, &mdns.A{Hdr: hdr, A: ip.AsSlice()})
		case ip.Is6() && qtype != mdns.TypeA:
			hdr.Rrtype = mdns.TypeAAAA
			rrs = append(rrs, &mdns.AAAA{Hdr: hdr, AAAA: ip.AsSlice()})
		}
	}
	return rrs
}
