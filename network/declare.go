package network

import (
	"context"
	"slices"

	"github.com/overlayd/overlayd/internal/fault"
	"github.com/overlayd/overlayd/ipam"
)

// Declared is a network as a declarative file names it ('overlayd apply
// -f', the configuration's networks section).
type Declared struct {
	Name  string
	CIDRs []string // none: the network must exist already (created elsewhere)
	VNI   *uint32  // nil: any
	Line  int      // its line in the file; 0 when not from a file
}

// Declare makes the node a member of d's network: it creates the network
// when it is missing and d gives a CIDR, refuses one that exists with
// another CIDR or VNI, and joins it unless joined already. changed is told
// each change made, in the words 'apply' prints. Errors name d's line.
func (m *Manager) Declare(ctx context.Context, d Declared, changed func(format string, args ...any)) error {
	what := "network " + d.Name
	known, ok := m.ipam.Network(d.Name)
	switch {
	case !ok && len(d.CIDRs) > 0:
		info, err := m.Create(ctx, CreateRequest{Name: d.Name, CIDRs: d.CIDRs, VNI: d.VNI})
		if err != nil {
			return fault.AtLine(d.Line, what, err)
		}
		changed("network %s: created (%s, VNI %d)", d.Name, ipam.JoinCIDRs(info.CIDRs), info.VNI)
	case ok && len(d.CIDRs) > 0:
		want, err := ParseCIDRs(d.CIDRs)
		if err != nil {
			return fault.AtLine(d.Line, what, err)
		}
		if !slices.Equal(want, known.CIDRs) {
			return fault.AtLine(d.Line, what, fault.Conflict("exists with CIDR %s, not %s", ipam.JoinCIDRs(known.CIDRs), ipam.JoinCIDRs(want)))
		}
	}
	if ok && d.VNI != nil && known.VNI != *d.VNI {
		return fault.AtLine(d.Line, what, fault.Conflict("exists with VNI %d, not %d", known.VNI, *d.VNI))
	}
	if slices.ContainsFunc(m.Joined(), func(j Joined) bool { return j.Name == d.Name }) {
		return nil
	}
	info, err := m.Join(ctx, d.Name)
	if err != nil {
		return fault.AtLine(d.Line, what, err)
	}
	changed("network %s: joined with address %s", d.Name, ipam.JoinCIDRs(info.Addrs))
	return nil
}
