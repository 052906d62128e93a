package endpoint

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/overlayd/overlayd/ipam"
)

// File is the endpoints' state file in the state directory.
const File = "endpoints.json"

// The phases of a Record. Each step of an attach or a detach is written
// before it is taken, so a start after a crash knows what to undo.
const (
	phaseAttaching = "attaching" // lease, device, router, entry: being made; undone on restart
	phaseAttached  = "attached"  // complete; re-adopted on restart
	phaseDetaching = "detaching" // being removed; finished on restart
)

// Record is an endpoint as endpoints.json keeps it. CIDR and Addr are of
// the network's first family (IPv4, or IPv6 on an IPv6 network), as a
// node without IPv6 wrote them; CIDR6 and Addr6 the IPv6 ones of a
// dual-stack network.
type Record struct {
	Name         string       `json:"name"`
	Network      string       `json:"network"`
	VNI          uint32       `json:"vni"`
	CIDR         netip.Prefix `json:"cidr"`
	Netns        string       `json:"netns"`
	IfName       string       `json:"ifname"`
	Addr         netip.Addr   `json:"addr"` // zero until leased
	DefaultRoute bool         `json:"default_route,omitempty"`
	Helper       bool         `json:"helper,omitempty"` // the device was made through the helper
	Phase        string       `json:"phase"`
	Created      time.Time    `json:"created"`
	CIDR6        netip.Prefix `json:"cidr6,omitzero"`
	Addr6        netip.Addr   `json:"addr6,omitzero"` // zero until leased
}

// cidrs are the record's CIDRs, one per family, IPv4 first.
func (r Record) cidrs() []netip.Prefix {
	out := []netip.Prefix{r.CIDR.Masked()}
	if r.CIDR6.IsValid() {
		out = append(out, r.CIDR6.Masked())
	}
	return out
}

// setCIDRs sets the record's CIDRs (ipam's order: IPv4 first).
func (r *Record) setCIDRs(cidrs []netip.Prefix) {
	r.CIDR, r.CIDR6 = cidrs[0].Masked(), netip.Prefix{}
	if len(cidrs) > 1 {
		r.CIDR6 = cidrs[1].Masked()
	}
}

// addrs are the record's leased addresses, in the order of its CIDRs.
func (r Record) addrs() []netip.Addr {
	var out []netip.Addr
	for _, a := range []netip.Addr{r.Addr, r.Addr6} {
		if a.IsValid() {
			out = append(out, a)
		}
	}
	return out
}

// setAddrs sets the record's addresses, in the order of its CIDRs.
func (r *Record) setAddrs(addrs []netip.Addr) {
	r.Addr, r.Addr6 = netip.Addr{}, netip.Addr{}
	if len(addrs) > 0 {
		r.Addr = addrs[0]
	}
	if len(addrs) > 1 {
		r.Addr6 = addrs[1]
	}
}

// prefixes are the record's addresses with their CIDRs' lengths.
func (r Record) prefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, a := range r.addrs() {
		for _, c := range r.cidrs() {
			if c.Contains(a) {
				out = append(out, netip.PrefixFrom(a, c.Bits()))
			}
		}
	}
	return out
}

// hasAddr reports whether a is one of the record's addresses.
func (r Record) hasAddr(a netip.Addr) bool { return a.IsValid() && (a == r.Addr || a == r.Addr6) }

// routes are the prefixes the device carries in the namespace: the
// network's CIDRs and, with DefaultRoute, the default route of each of
// their families.
func (r Record) routes() []netip.Prefix {
	out := r.cidrs()
	if r.DefaultRoute {
		for _, c := range r.cidrs() {
			if c.Addr().Is4() {
				out = append(out, netip.MustParsePrefix("0.0.0.0/0"))
			} else {
				out = append(out, netip.MustParsePrefix("::/0"))
			}
		}
	}
	return out
}

// resRecord is a reservation as endpoints.json keeps it.
type resRecord struct {
	Network string       `json:"network"`
	Addr    netip.Addr   `json:"addr"`
	CIDR    netip.Prefix `json:"cidr"`
}

type stateFile struct {
	Version      int         `json:"version"`
	Endpoints    []Record    `json:"endpoints"`
	Reservations []resRecord `json:"reservations,omitempty"`
}

// decodeState reads endpoints.json strictly: a record that could not
// have been written is an error (the file is then set aside).
func decodeState(b []byte) (stateFile, error) {
	var st stateFile
	if err := json.Unmarshal(b, &st); err != nil {
		return st, err
	}
	if st.Version != 1 {
		return st, fmt.Errorf("version %d, want 1", st.Version)
	}
	seen := map[string]bool{}
	for _, r := range st.Endpoints {
		switch {
		case !ValidName(r.Name) || seen[r.Name]:
			return st, fmt.Errorf("bad or repeated endpoint name %q", r.Name)
		case r.Network == "" || !r.CIDR.IsValid() || r.Netns == "" || r.IfName == "":
			return st, fmt.Errorf("endpoint %q: incomplete record", r.Name)
		case r.Addr.IsValid() && !r.CIDR.Contains(r.Addr):
			return st, fmt.Errorf("endpoint %q: %v is outside %v", r.Name, r.Addr, r.CIDR)
		case r.CIDR6.IsValid() && (!r.CIDR.Addr().Is4() || !r.CIDR6.Addr().Is6()):
			return st, fmt.Errorf("endpoint %q: CIDRs %v and %v are not an IPv4 and an IPv6 one", r.Name, r.CIDR, r.CIDR6)
		case r.Addr6.IsValid() && !r.CIDR6.Contains(r.Addr6):
			return st, fmt.Errorf("endpoint %q: %v is outside %v", r.Name, r.Addr6, r.CIDR6)
		case r.Phase == phaseAttached && r.CIDR6.IsValid() && !r.Addr6.IsValid():
			return st, fmt.Errorf("endpoint %q: attached without an IPv6 address", r.Name)
		case r.Phase != phaseAttaching && r.Phase != phaseAttached && r.Phase != phaseDetaching:
			return st, fmt.Errorf("endpoint %q: unknown phase %q", r.Name, r.Phase)
		case r.Phase == phaseAttached && !r.Addr.IsValid():
			return st, fmt.Errorf("endpoint %q: attached without an address", r.Name)
		}
		seen[r.Name] = true
	}
	for _, r := range st.Reservations {
		if r.Network == "" || !r.CIDR.IsValid() || !r.CIDR.Contains(r.Addr) {
			return st, fmt.Errorf("bad reservation %+v", r)
		}
	}
	return st, nil
}

// load reads endpoints.json (nothing without a state directory, or when
// the file is missing or was set aside as unreadable).
func (m *Manager) load() stateFile {
	var st stateFile
	if m.o.State == nil {
		return st
	}
	m.o.State.Read(File, "the endpoints it held are not re-adopted; their devices stay in their namespaces and their leases are released", func(b []byte) error {
		var err error
		st, err = decodeState(b)
		return err
	})
	return st
}

// save writes endpoints.json from the records in memory plus pending,
// which replaces (or adds) the record of its name; m.opMu is held.
func (m *Manager) save(pending ...Record) error {
	if m.o.State == nil {
		return nil
	}
	m.mu.Lock()
	byName := map[string]Record{}
	for n, e := range m.eps {
		byName[n] = e.rec
	}
	st := stateFile{Version: 1, Endpoints: []Record{}}
	for _, r := range m.res {
		st.Reservations = append(st.Reservations, resRecord{Network: r.Network, Addr: r.Addr.Addr(), CIDR: r.Addr.Masked()})
	}
	m.mu.Unlock()
	for _, r := range pending {
		byName[r.Name] = r
	}
	for _, r := range byName {
		st.Endpoints = append(st.Endpoints, r)
	}
	slices.SortFunc(st.Endpoints, func(a, b Record) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(st.Reservations, func(a, b resRecord) int { return a.Addr.Compare(b.Addr) })
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := m.o.State.Write(File, append(b, '\n')); err != nil {
		return fmt.Errorf("endpoint: keep %s: %w", File, err)
	}
	return nil
}

// ValidName reports whether s can name an endpoint: a DNS label
// (letters, digits, hyphens; 1 to 63; not starting or ending with a
// hyphen), since NAME.NET.overlay resolves to it.
func ValidName(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

func netipPrefix(a netip.Addr, cidr netip.Prefix) netip.Prefix {
	return netip.PrefixFrom(a, cidr.Bits())
}

func dnsAddr(cidr netip.Prefix) netip.Addr { return ipam.DNSAddr(cidr) }
