package network

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/overlayd/overlayd/internal/fault"
)

func TestValidName(t *testing.T) {
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"blue", true}, {"a.b-c_d9", true}, {strings.Repeat("x", 63), true},
		{"", false}, {strings.Repeat("x", 64), false}, {".blue", false}, {"-blue", false},
		{"a/b", false}, {"blü", false}, {"a b", false},
	} {
		if got := ValidName(tc.name); got != tc.want {
			t.Errorf("ValidName(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// pickVNI steps past the VNIs taken, and wraps within the 24 bits.
func TestPickVNI(t *testing.T) {
	v := pickVNI("blue", nil)
	if v < 1000 || v >= 101000 {
		t.Fatalf("pickVNI(blue) = %d, want one of 1000..100999", v)
	}
	if got := pickVNI("blue", map[uint32]bool{v: true, v + 1: true}); got != v+2 {
		t.Errorf("pickVNI(blue) with %d and %d taken = %d, want %d", v, v+1, got, v+2)
	}
}

// Create, Join and Leave refuse with a typed error of the right kind and
// the message the user is shown.
func TestOperationErrors(t *testing.T) {
	ctx := context.Background()
	c := newCluster(t)
	n := c.start("solo", "", Options{Static: []netip.Prefix{netip.MustParsePrefix("10.250.0.1/24")}, StaticVNI: 7})
	vni := uint32(10)
	if _, err := n.m.Create(ctx, CreateRequest{Name: "blue", CIDRs: []string{"10.1.0.0/24"}, VNI: &vni}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.m.Create(ctx, CreateRequest{Name: "red", CIDRs: []string{"10.2.0.0/24"}}); err != nil {
		t.Fatal(err)
	}
	dual, err := n.m.Create(ctx, CreateRequest{Name: "dual", CIDRs: []string{"fd00:2::/64", "10.5.0.0/24"}})
	if err != nil || fmt.Sprint(dual.CIDRs, dual.DNS) != "[10.5.0.0/24 fd00:2::/64] [10.5.0.1 fd00:2::1]" {
		t.Fatalf("Create(dual) = %+v, %v; want IPv4 first and a DNS address per family", dual, err)
	}
	big, seven := uint32(1<<24), uint32(7)
	for _, tc := range []struct {
		req  CreateRequest
		kind *fault.Kind
		msg  string
	}{
		{CreateRequest{Name: "blue", CIDRs: []string{"10.9.0.0/24"}}, fault.ErrConflict, `network "blue" exists already (10.1.0.0/24, VNI 10, created by node solo)`},
		{CreateRequest{Name: "b2", CIDRs: []string{"10.1.0.128/25"}}, fault.ErrConflict, `CIDR 10.1.0.128/25 overlaps network "blue" (10.1.0.0/24)`},
		{CreateRequest{Name: "b3", CIDRs: []string{"10.3.0.0/24"}, VNI: &vni}, fault.ErrConflict, `VNI 10 is taken by network "blue"`},
		{CreateRequest{Name: "b4", CIDRs: []string{"10.3.0.1/24"}}, fault.ErrInvalid, "CIDR 10.3.0.1/24 has host bits set; did you mean 10.3.0.0/24?"},
		{CreateRequest{Name: "b5", CIDRs: []string{"fd00::1"}}, fault.ErrInvalid, `CIDR "fd00::1" is not a prefix such as 10.10.0.0/16 or fd00:10::/64`},
		{CreateRequest{Name: "b5"}, fault.ErrInvalid, `a network needs a CIDR, such as 10.10.0.0/16 or fd00:10::/64 (or one of each)`},
		{CreateRequest{Name: "b5", CIDRs: []string{"10.3.0.0/24", "10.4.0.0/24"}}, fault.ErrInvalid, `CIDRs 10.3.0.0/24 and 10.4.0.0/24 are of one family; a network has at most one IPv4 and one IPv6 CIDR`},
		{CreateRequest{Name: "b5", CIDRs: []string{"fd00::/32"}}, fault.ErrInvalid, `IPv6 CIDR fd00::/32 must be between /48 and /122 (a /64 is usual)`},
		{CreateRequest{Name: "b5", CIDRs: []string{"fd00::/124"}}, fault.ErrInvalid, `IPv6 CIDR fd00::/124 must be between /48 and /122 (a /64 is usual)`},
		{CreateRequest{Name: "b5", CIDRs: []string{"fd00::1/64"}}, fault.ErrInvalid, `CIDR fd00::1/64 has host bits set; did you mean fd00::/64?`},
		{CreateRequest{Name: "b5", CIDRs: []string{"::ffff:10.3.0.0/120"}}, fault.ErrInvalid, `CIDR ::ffff:10.3.0.0/120 is an IPv4-mapped IPv6 prefix; give it as IPv4, such as 10.3.0.0/24`},
		{CreateRequest{Name: "b5", CIDRs: []string{"10.3.0.0/24", "fd00::/64", "fd01::/64"}}, fault.ErrInvalid, `a network has at most two CIDRs, one IPv4 and one IPv6; got 3`},
		{CreateRequest{Name: "d2", CIDRs: []string{"fd00:2::/64"}}, fault.ErrConflict, `CIDR fd00:2::/64 overlaps network "dual" (10.5.0.0/24,fd00:2::/64)`},
		{CreateRequest{Name: "d3", CIDRs: []string{"fd00:2::/64", "10.5.0.0/25"}}, fault.ErrConflict, `CIDR 10.5.0.0/25 overlaps network "dual" (10.5.0.0/24,fd00:2::/64)`},
		{CreateRequest{Name: "b6", CIDRs: []string{"10.3.0.0/30"}}, fault.ErrInvalid, "CIDR 10.3.0.0/30 must be between /8 and /26 (at least 64 addresses)"},
		{CreateRequest{Name: "b7", CIDRs: []string{"10.3.0.0/24"}, VNI: &big}, fault.ErrInvalid, "VNI 16777216 is out of range (0-16777215)"},
		{CreateRequest{Name: "a/b", CIDRs: []string{"10.3.0.0/24"}}, fault.ErrInvalid, `network name "a/b" is not valid: use 1 to 63 letters, digits, '-', '_' or '.'`},
		{CreateRequest{Name: "s1", CIDRs: []string{"10.250.0.0/16"}}, fault.ErrConflict, "CIDR 10.250.0.0/16 overlaps this node's static network 10.250.0.0/24"},
		{CreateRequest{Name: "s2", CIDRs: []string{"10.4.0.0/24"}, VNI: &seven}, fault.ErrConflict, "VNI 7 is taken by this node's static network (--vni)"},
	} {
		_, err := n.m.Create(ctx, tc.req)
		if !errors.Is(err, tc.kind) || err.Error() != tc.msg {
			t.Errorf("Create(%+v) = %v, want %v %q", tc.req, err, tc.kind, tc.msg)
		}
	}
	if _, err := n.m.Join(ctx, "nope"); !errors.Is(err, fault.ErrNotFound) {
		t.Errorf("Join(nope) = %v, want not found", err)
	}
	if err := n.m.Leave("nope"); !errors.Is(err, fault.ErrNotFound) || err.Error() != `unknown network "nope"` {
		t.Errorf("Leave(nope) = %v, want not found", err)
	}
	if err := n.m.Leave("blue"); !errors.Is(err, fault.ErrConflict) || err.Error() != `this node has not joined network "blue"` {
		t.Errorf("Leave(blue) before a join = %v, want a conflict", err)
	}
	ni, err := n.m.Join(ctx, "blue")
	if err != nil || !ni.Joined || fmt.Sprint(ni.Addrs) != "[10.1.0.2/24]" || fmt.Sprint(ni.DNS) != "[10.1.0.1]" || ni.Members != 1 {
		t.Fatalf("Join(blue) = %+v, %v", ni, err)
	}
	if again, err := n.m.Join(ctx, "blue"); err != nil || !slices.Equal(again.Addrs, ni.Addrs) {
		t.Errorf("Join(blue) again = %+v, %v; want the same address", again, err)
	}
	if err := n.m.Leave("blue"); err != nil {
		t.Fatal(err)
	}
	if js := n.m.Joined(); len(js) != 0 {
		t.Errorf("Joined after the leave = %+v", js)
	}
	// A dual-stack network: one address per family, both released on leave.
	ni, err = n.m.Join(ctx, "dual")
	if err != nil || fmt.Sprint(ni.Addrs) != "[10.5.0.2/24 fd00:2::2/64]" {
		t.Fatalf("Join(dual) = %+v, %v; want an address of each family", ni, err)
	}
	if err := n.m.Leave("dual"); err != nil {
		t.Fatal(err)
	}
	if ls := n.m.IPAM().Leases("dual"); len(ls) != 0 {
		t.Errorf("leases after leaving dual: %+v", ls)
	}
}

// A join whose Apply fails is undone, and says why.
func TestJoinApplyFailsUndone(t *testing.T) {
	ctx := context.Background()
	c := newCluster(t)
	var applied [][]Joined
	var n *member
	fail := errors.New("device gone")
	n = c.start("solo", "", Options{Apply: func() error {
		applied = append(applied, n.m.Joined())
		if len(applied) == 1 {
			return fail
		}
		return nil
	}})
	if _, err := n.m.Create(ctx, CreateRequest{Name: "blue", CIDRs: []string{"10.1.0.0/24"}}); err != nil {
		t.Fatal(err)
	}
	_, err := n.m.Join(ctx, "blue")
	if !errors.Is(err, fail) || err.Error() != `node: join "blue": device gone` {
		t.Errorf("Join with a failing Apply = %v", err)
	}
	if len(applied) != 2 || len(applied[0]) != 1 || len(applied[1]) != 0 {
		t.Errorf("Apply saw %+v; want blue, then nothing", applied)
	}
	if js := n.m.Joined(); len(js) != 0 {
		t.Errorf("Joined after the failed join = %+v", js)
	}
}
