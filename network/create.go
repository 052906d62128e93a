package network

import (
	"context"
	"hash/fnv"
	"net/netip"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/overlayd/overlayd/gossip"
	"github.com/overlayd/overlayd/internal/fault"
	"github.com/overlayd/overlayd/ipam"
)

// maxVNI is the largest VXLAN network identifier (24 bits; vxlan.MaxVNI,
// which network does not import).
const maxVNI = 1<<24 - 1

// CreateRequest asks for a network.
type CreateRequest struct {
	Name string
	// CIDRs are one or two prefixes, at most one per family: an IPv4
	// prefix (/8 to /26), an IPv6 one (/48 to /122), or one of each for a
	// dual-stack network.
	CIDRs []string
	VNI   *uint32 // nil: one no known network uses, derived from the name
}

// ParseCIDRs checks a network's CIDRs as given by a user: one or two
// prefixes, at most one per family, IPv4 from /8 to /26 and IPv6 from /48
// to /122, without host bits. It returns them IPv4 first.
func ParseCIDRs(ss []string) ([]netip.Prefix, error) {
	if len(ss) == 0 {
		return nil, fault.Invalid("a network needs a CIDR, such as 10.10.0.0/16 or fd00:10::/64 (or one of each)")
	}
	if len(ss) > 2 {
		return nil, fault.Invalid("a network has at most two CIDRs, one IPv4 and one IPv6; got %d", len(ss))
	}
	var out []netip.Prefix
	for _, s := range ss {
		cidr, err := netip.ParsePrefix(strings.TrimSpace(s))
		switch {
		case err != nil || cidr.Addr().Zone() != "":
			return nil, fault.Invalid("CIDR %q is not a prefix such as 10.10.0.0/16 or fd00:10::/64", s)
		case cidr.Addr().Is4In6():
			return nil, fault.Invalid("CIDR %v is an IPv4-mapped IPv6 prefix; give it as IPv4, such as %v", cidr, netip.PrefixFrom(cidr.Addr().Unmap(), max(cidr.Bits()-96, 0)))
		case cidr != cidr.Masked():
			return nil, fault.Invalid("CIDR %v has host bits set; did you mean %v?", cidr, cidr.Masked())
		case cidr.Addr().Is4() && (cidr.Bits() > 26 || cidr.Bits() < 8):
			return nil, fault.Invalid("CIDR %v must be between /8 and /26 (at least 64 addresses)", cidr)
		case cidr.Addr().Is6() && (cidr.Bits() > ipam.MaxBits6 || cidr.Bits() < ipam.MinBits6):
			return nil, fault.Invalid("IPv6 CIDR %v must be between /%d and /%d (a /64 is usual)", cidr, ipam.MinBits6, ipam.MaxBits6)
		}
		for _, o := range out {
			if o.Addr().Is4() == cidr.Addr().Is4() {
				return nil, fault.Invalid("CIDRs %v and %v are of one family; a network has at most one IPv4 and one IPv6 CIDR", o, cidr)
			}
		}
		out = append(out, cidr)
	}
	if len(out) == 2 && out[0].Addr().Is6() {
		out[0], out[1] = out[1], out[0]
	}
	return out, nil
}

// ValidName reports whether s may name a network: letters, digits, '-',
// '_' and '.', 1 to 63 bytes, not starting with '.' or '-'.
func ValidName(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '.' || s[0] == '-' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// pickVNI returns a VNI no known network uses, derived from the name so
// that two nodes creating networks at once rarely pick the same.
func pickVNI(name string, taken map[uint32]bool) uint32 {
	h := fnv.New32a()
	h.Write([]byte(name))
	v := 1000 + h.Sum32()%100000
	for taken[v] {
		v++
		if v > maxVNI {
			v = 1
		}
	}
	return v
}

// Create defines a network cluster-wide. Two nodes may create one name at
// the same moment, each before the other's write reaches it; gossip keeps
// one definition. So after writing, it waits out the create window
// (confirmCreated) and reports a lost race as a conflict naming the
// winner, never as success. ctx bounds that wait.
func (m *Manager) Create(ctx context.Context, req CreateRequest) (Info, error) {
	if !ValidName(req.Name) {
		return Info{}, fault.Invalid("network name %q is not valid: use 1 to 63 letters, digits, '-', '_' or '.'", req.Name)
	}
	cidr, err := ParseCIDRs(req.CIDRs)
	if err != nil {
		return Info{}, err
	}
	if req.VNI != nil && *req.VNI > maxVNI {
		return Info{}, fault.Invalid("VNI %d is out of range (0-%d)", *req.VNI, maxVNI)
	}
	// Watch before writing, so that the competing definition cannot
	// arrive unseen between the write and the wait.
	ch, cancel := ipam.WatchNetworks(m.g)
	defer cancel()
	vni, err := m.writeNetwork(req, cidr)
	if err != nil {
		return Info{}, err
	}
	nw, err := m.confirmCreated(ctx, ch, req, cidr, vni)
	if err != nil {
		return Info{}, err
	}
	m.log.Info("network created", zap.String("network", req.Name), zap.String("cidr", ipam.JoinCIDRs(cidr)), zap.Uint32("vni", vni))
	return m.info(nw), nil
}

// writeNetwork checks req against the networks known here and writes it;
// it returns the VNI.
func (m *Manager) writeNetwork(req CreateRequest, cidr []netip.Prefix) (uint32, error) {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	taken := map[uint32]bool{}
	if len(m.opts.Static) > 0 {
		taken[m.opts.StaticVNI] = true
		for _, static := range m.opts.Static {
			for _, c := range cidr {
				if static.Masked().Overlaps(c) {
					return 0, fault.Conflict("CIDR %v overlaps this node's static network %v", c, static.Masked())
				}
			}
		}
		if req.VNI != nil && *req.VNI == m.opts.StaticVNI {
			return 0, fault.Conflict("VNI %d is taken by this node's static network (--vni)", m.opts.StaticVNI)
		}
	}
	for _, nw := range m.ipam.Networks() {
		switch {
		case nw.Name == req.Name:
			return 0, fault.Conflict("network %q exists already (%s, VNI %d, created by node %s)", nw.Name, ipam.JoinCIDRs(nw.CIDRs), nw.VNI, nw.Creator)
		case ipam.Overlaps(nw.CIDRs, cidr):
			return 0, fault.Conflict("CIDR %s overlaps network %q (%s)", overlapping(cidr, nw.CIDRs), nw.Name, ipam.JoinCIDRs(nw.CIDRs))
		case req.VNI != nil && *req.VNI == nw.VNI:
			return 0, fault.Conflict("VNI %d is taken by network %q", nw.VNI, nw.Name)
		}
		taken[nw.VNI] = true
	}
	vni := pickVNI(req.Name, taken)
	if req.VNI != nil {
		vni = *req.VNI
	}
	if h := m.hooks.beforeCreate; h != nil {
		h(req.Name)
	}
	if err := m.ipam.CreateNetwork(req.Name, cidr, vni); err != nil {
		// A creation of the name elsewhere at once may have arrived since
		// the checks above: alike, it fulfils the request; otherwise this
		// one lost, as confirmCreated would say.
		if nw, ok := m.ipam.Network(req.Name); ok {
			if slices.Equal(nw.CIDRs, cidr) && (req.VNI == nil || *req.VNI == nw.VNI) {
				return nw.VNI, nil
			}
			return 0, lostCreation(req.Name, nw, cidr, vni)
		}
		return 0, fault.Conflict("%v", err)
	}
	return vni, nil
}

// confirmCreated waits out the create window after this node wrote network
// req.Name (ch: a watch of the networks table opened before the write) and
// returns the definition that won. Gossip keeps one definition per name (the
// latest write); a creation made elsewhere before ours reached that node
// arrives within the window. If it won with another CIDR or VNI, ours is
// gone (ipam withdraws its ranges) and the caller is told so, naming the
// winner; if it defines the same network, the request is fulfilled. Alone
// in the cluster there is no one to race with, and no wait.
func (m *Manager) confirmCreated(ctx context.Context, ch <-chan gossip.Event, req CreateRequest, cidr []netip.Prefix, vni uint32) (ipam.Network, error) {
	alone := true
	for _, mb := range m.g.Members() {
		if mb.Name != m.self && (mb.State == gossip.StateAlive || mb.State == gossip.StateSuspect) {
			alone = false
		}
	}
	var window <-chan time.Time
	if !alone {
		t := time.NewTimer(m.opts.CreateWindow)
		defer t.Stop()
		window = t.C
	}
	for {
		nw, ok := m.ipam.Network(req.Name)
		switch {
		case !ok:
			// Only a malformed competing write hides the name.
			return ipam.Network{}, fault.Conflict("network %q: its definition was replaced by an unreadable one while it was being created; try again", req.Name)
		case nw.Creator != m.self && slices.Equal(nw.CIDRs, cidr) && (req.VNI == nil || nw.VNI == vni):
			m.log.Info("network created at the same time elsewhere, alike", zap.String("network", req.Name), zap.String("creator", nw.Creator))
			return nw, nil
		case nw.Creator != m.self:
			m.log.Warn("network creation lost to another node's", zap.String("network", req.Name), zap.String("cidr", ipam.JoinCIDRs(cidr)),
				zap.String("winner", nw.Creator), zap.String("winner_cidr", ipam.JoinCIDRs(nw.CIDRs)), zap.Uint32("winner_vni", nw.VNI))
			return ipam.Network{}, lostCreation(req.Name, nw, cidr, vni)
		case window == nil:
			return nw, nil
		}
		select {
		case _, open := <-ch:
			if !open {
				ch = nil // gossip closed; m.stop ends the wait
			}
		case <-window:
			window = nil // look once more, then done
		case <-ctx.Done():
			return ipam.Network{}, fault.Unavailable("network %q: written, but the wait for a competing creation was interrupted (%v); check it with 'overlayd network ls'", req.Name, ctx.Err())
		case <-m.stop:
			return ipam.Network{}, fault.Unavailable("network %q: the node is stopping", req.Name)
		}
	}
}

// lostCreation is the error of a network creation that lost to another
// node's creation of the same name with another definition, made at the
// same moment.
func lostCreation(name string, winner ipam.Network, cidr []netip.Prefix, vni uint32) error {
	return fault.Conflict(
		"network %q was created at the same moment on node %s with %s (VNI %d), and that definition won; this node's %s (VNI %d) was dropped. Use %q as it is, or create yours under another name",
		name, winner.Creator, ipam.JoinCIDRs(winner.CIDRs), winner.VNI, ipam.JoinCIDRs(cidr), vni, name)
}

// overlapping is the prefix of a that overlaps one of b.
func overlapping(a, b []netip.Prefix) netip.Prefix {
	for _, x := range a {
		if ipam.Overlaps([]netip.Prefix{x}, b) {
			return x
		}
	}
	return netip.Prefix{}
}
