package network

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/overlayd/overlayd/internal/fault"
)

// Declare creates what is missing, joins once, says what it did, and
// refuses a network that exists with another CIDR or VNI, naming the line.
func TestDeclare(t *testing.T) {
	ctx := context.Background()
	n := newCluster(t).start("solo", "", Options{})
	var changes []string
	changed := func(format string, args ...any) { changes = append(changes, fmt.Sprintf(format, args...)) }
	vni := uint32(12)
	if err := n.m.Declare(ctx, Declared{Name: "blue", CIDRs: []string{"10.12.0.0/24"}, VNI: &vni, Line: 3}, changed); err != nil {
		t.Fatal(err)
	}
	addr := joinedAddr(t, n, "blue")
	want := []string{"network blue: created (10.12.0.0/24, VNI 12)", "network blue: joined with address " + addr.String()}
	if !slices.Equal(changes, want) {
		t.Errorf("changes %q, want %q", changes, want)
	}
	changes = nil
	if err := n.m.Declare(ctx, Declared{Name: "blue", CIDRs: []string{"10.12.0.0/24"}}, changed); err != nil || len(changes) != 0 {
		t.Errorf("declaring it again: %v, changes %q; want nothing done", err, changes)
	}
	other := uint32(13)
	for _, tc := range []struct {
		d   Declared
		msg string
	}{
		{Declared{Name: "blue", CIDRs: []string{"10.13.0.0/24"}, Line: 5}, "line 5: network blue: exists with CIDR 10.12.0.0/24, not 10.13.0.0/24"},
		{Declared{Name: "blue", VNI: &other, Line: 6}, "line 6: network blue: exists with VNI 12, not 13"},
	} {
		err := n.m.Declare(ctx, tc.d, changed)
		if !errors.Is(err, fault.ErrConflict) || err == nil || err.Error() != tc.msg {
			t.Errorf("Declare(%+v) = %v, want conflict %q", tc.d, err, tc.msg)
		}
	}
}
