package catalog

import (
	"encoding/json"
	"fmt"
	"net/netip"

	"github.com/overlayd/overlayd/gossip"
)

// The service tables.
const (
	TableServices = "overlayd.services"
	TableBackends = "overlayd.backends"
)

// Service is a services entry's value. The field order and tags are the
// wire format: keep them.
type Service struct {
	Name    string `json:"name"`
	Network string `json:"network"`
	// VIP is the service's VIP: its IPv4 one (its IPv6 one on an IPv6
	// network).
	VIP   string `json:"vip"`
	Ports []Port `json:"ports"`
	// VIP6 is the IPv6 VIP of a service on a dual-stack network; nodes
	// without IPv6 ignore it.
	VIP6 string `json:"vip6,omitempty"`
}

// VIPs are the service's VIPs that parse, unmapped, VIP first; a VIP6
// that is not IPv6, or VIP6 beside an IPv6 VIP, is left out.
func (s Service) VIPs() []netip.Addr {
	var out []netip.Addr
	if a, err := netip.ParseAddr(s.VIP); err == nil && a.Zone() == "" {
		out = append(out, a.Unmap())
	}
	if a, err := netip.ParseAddr(s.VIP6); err == nil && a.Zone() == "" && a.Is6() && !a.Is4In6() && (len(out) == 0 || out[0].Is4()) {
		out = append(out, a)
	}
	return out
}

// Port is one port of a service.
type Port struct {
	Port  uint16 `json:"port"`
	Proto string `json:"proto"`
}

// Backend is a backends entry's value. The field order and tags are the
// wire format: keep them.
type Backend struct {
	Service string `json:"service"`
	Addr    string `json:"addr"`
	Weight  uint32 `json:"weight"`
	Healthy bool   `json:"healthy"`
	Check   string `json:"check,omitempty"`
	Port    uint16 `json:"port,omitempty"` // the service port it serves; 0: by node's rule
}

// ServiceKey is the key of a service's entry: its name.
func ServiceKey(name string) string { return name }

// BackendKey is the key of a backend's entry: "<service>/<ip:port>".
func BackendKey(service string, addr netip.AddrPort) string {
	return service + "/" + addr.String()
}

// Encode returns the entry's value.
func (s Service) Encode() []byte {
	b, _ := json.Marshal(s) // strings and numbers only: cannot fail
	return b
}

// Encode returns the entry's value.
func (b Backend) Encode() []byte {
	v, _ := json.Marshal(b) // strings, numbers and a bool only: cannot fail
	return v
}

// DecodeService reads a services entry's value.
func DecodeService(v []byte) (Service, error) {
	var s Service
	if err := json.Unmarshal(v, &s); err != nil {
		return Service{}, fmt.Errorf("catalog: service value: %w", err)
	}
	return s, nil
}

// DecodeBackend reads a backends entry's value.
func DecodeBackend(v []byte) (Backend, error) {
	var b Backend
	if err := json.Unmarshal(v, &b); err != nil {
		return Backend{}, fmt.Errorf("catalog: backend value: %w", err)
	}
	return b, nil
}

// ServiceEntry reads a services entry of network: its value must decode
// and name the entry's key and network.
func ServiceEntry(e gossip.Entry, network string) (Service, error) {
	s, err := DecodeService(e.Value)
	if err != nil {
		return Service{}, err
	}
	if s.Name != e.Key || s.Network != network {
		return Service{}, fmt.Errorf("catalog: service entry %q of network %q names %q of network %q", e.Key, network, s.Name, s.Network)
	}
	return s, nil
}

// BackendEntry reads a backends entry: its value must decode, its
// address be an ip:port (IPv4, or IPv6 without a zone, never IPv4-mapped),
// and its key be BackendKey of the two.
func BackendEntry(e gossip.Entry) (Backend, netip.AddrPort, error) {
	b, err := DecodeBackend(e.Value)
	if err != nil {
		return Backend{}, netip.AddrPort{}, err
	}
	a, err := netip.ParseAddrPort(b.Addr)
	if err != nil {
		return Backend{}, netip.AddrPort{}, fmt.Errorf("catalog: backend entry %q: %w", e.Key, err)
	}
	if a.Addr().Is4In6() || a.Addr().Zone() != "" {
		return Backend{}, netip.AddrPort{}, fmt.Errorf("catalog: backend entry %q: address %s is not a plain IPv4 or IPv6 address", e.Key, a)
	}
	if e.Key != BackendKey(b.Service, a) {
		return Backend{}, netip.AddrPort{}, fmt.Errorf("catalog: backend entry %q: key is not %q", e.Key, BackendKey(b.Service, a))
	}
	return b, a, nil
}
