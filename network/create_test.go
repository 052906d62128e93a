package network

import (
	"context"
	"errors"
	"net/netip"
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
	n := c.start("solo", "", Options{Static: netip.MustParsePrefix("10.250.0.1/24"), StaticVNI: 7})
	vni := uint32(10)
	if _, err := n.m.Create(ctx, CreateRequest{Name: "blue", CIDR: "10.1.0.0/24", VNI: &vni}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.m.Create(ctx, CreateRequest{Name: "red", CIDR: "10.2.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	big, seven := uint32(1<<24), uint32(7)
	for _, tc := range []struct {
		req  CreateRequest
		kind *fault.Kind
		msg  string
	}{
		{CreateRequest{Name: "blue", CIDR: "10.9.0.0/24"}, fault.ErrConflict, `network "blue" exists already (10.1.0.0/24, VNI 10, created by node solo)`},
		{CreateRequest{Name: "b2", CIDR: "10.1.0.128/25"}, fault.ErrConflict, `CIDR 10.1.0.128/25 overlaps network "blue" (10.1.0.0/24)`},
		{CreateRequest{Name: "b3", CIDR: "10.3.0.0/24", VNI: &vni}, fault.ErrConflict, `VNI 10 is taken by network "blue"`},
		{CreateRequest{Name: "b4", CIDR: "10.3.0.1/24"}, fault.ErrInvalid, "CIDR 10.3.0.1/24 has host bits set; did you mean 10.3.0.0/24?"},
		{CreateRequest{Name: "b5", CIDR: "fd00::/64"}, fault.ErrInvalid, `CIDR "fd00::/64" is not an IPv4 prefix such as 10.10.0.0/16`},
		{CreateRequest{Name: "b6", CIDR: "10.3.0.0/30"}, fault.ErrInvalid, "CIDR 10.3.0.0/30 must be between /8 and /26 (at least 64 addresses)"},
		{CreateRequest{Name: "b7", CIDR: "10.3.0.0/24", VNI: &big}, fault.ErrInvalid, "VNI 16777216 is out of range (0-16777215)"},
		{CreateRequest{Name: "a/b", CIDR: "10.3.0.0/24"}, fault.ErrInvalid, `network name "a/b" is not valid: use 1 to 63 letters, digits, '-', '_' or '.'`},
		{CreateRequest{Name: "s1", CIDR: "10.250.0.0/16"}, fault.ErrConflict, "CIDR 10.250.0.0/16 overlaps this node's static network 10.250.0.0/24"},
		{CreateRequest{Name: "s2", CIDR: "10.4.0.0/24", VNI: &seven}, fault.ErrConflict, "VNI 7 is taken by this node's static network (--vni)"},
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
	if err != nil || !ni.Joined || ni.Addr != netip.MustParsePrefix("10.1.0.2/24") || ni.DNS != netip.MustParseAddr("10.1.0.1") || ni.Members != 1 {
		t.Fatalf("Join(blue) = %+v, %v", ni, err)
	}
	if again, err := n.m.Join(ctx, "blue"); err != nil || again.Addr != ni.Addr {
		t.Errorf("Join(blue) again = %+v, %v; want the same address", again, err)
	}
	if err := n.m.Leave("blue"); err != nil {
		t.Fatal(err)
	}
	if js := n.m.Joined(); len(js) != 0 {
		t.Errorf("Joined after the leave = %+v", js)
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
	if _, err := n.m.Create(ctx, CreateRequest{Name: "blue", CIDR: "10.1.0.0/24"}); err != nil {
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
