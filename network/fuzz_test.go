package network

import (
	"errors"
	"strings"
	"testing"

	"github.com/overlayd/overlayd/internal/fault"
	"github.com/overlayd/overlayd/ipam"
)

// FuzzParseCIDRs: any CIDR list a user gives is refused with an invalid
// error or read as one or two masked prefixes, at most one per family,
// IPv4 first, that ipam lays out; never a panic.
func FuzzParseCIDRs(f *testing.F) {
	f.Add("10.10.0.0/16")
	f.Add("fd00:10::/64")
	f.Add("fd00:10::/64,10.10.0.0/16")
	f.Add("10.10.0.0/16,10.11.0.0/16")
	f.Add("::ffff:10.0.0.0/120")
	f.Add("fe80::%eth0/64")
	f.Fuzz(func(t *testing.T, s string) {
		cidrs, err := ParseCIDRs(strings.Split(s, ","))
		if err != nil {
			if !errors.Is(err, fault.ErrInvalid) {
				t.Fatalf("ParseCIDRs(%q) = %v, want an invalid error", s, err)
			}
			return
		}
		checked, err := ipam.CheckCIDRs(cidrs)
		if err != nil || len(checked) != len(cidrs) {
			t.Fatalf("ParseCIDRs(%q) = %v, which ipam refuses: %v", s, cidrs, err)
		}
		for i, c := range cidrs {
			if c != checked[i] || c != c.Masked() {
				t.Fatalf("ParseCIDRs(%q) = %v, not masked and IPv4 first (%v)", s, cidrs, checked)
			}
		}
	})
}

// FuzzDecodeJoined: networks.json is read strictly: any content is
// refused or gives networks whose addresses lie in their CIDRs, one per
// family, IPv4 first, and that encode back to what they read as.
func FuzzDecodeJoined(f *testing.F) {
	f.Add([]byte(`{"version":1,"joined":[{"name":"blue","cidr":"10.1.0.0/24","vni":7,"addr":"10.1.0.2"}]}`))
	f.Add([]byte(`{"version":1,"joined":[{"name":"dual","cidr":"10.5.0.0/24","vni":9,"addr":"10.5.0.2","cidr6":"fd00:2::/64","addr6":"fd00:2::2"}]}`))
	f.Add([]byte(`{"version":1,"joined":[{"name":"x","cidr":"fd00::/64","vni":7,"addr":"fd00::2","cidr6":"fd01::/64","addr6":"fd01::2"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := decodeJoined(b)
		if err != nil {
			return
		}
		for _, j := range st.Joined {
			if len(j.Addrs) != len(j.CIDRs) || len(j.CIDRs) == 0 || len(j.CIDRs) > 2 {
				t.Fatalf("decodeJoined(%q): %+v", b, j)
			}
			for i, a := range j.Addrs {
				if !j.CIDRs[i].Contains(a) || i == 1 && (!j.CIDRs[0].Addr().Is4() || !j.CIDRs[1].Addr().Is6()) {
					t.Fatalf("decodeJoined(%q): %+v", b, j)
				}
			}
			enc, err := j.MarshalJSON()
			if err != nil {
				t.Fatalf("MarshalJSON(%+v): %v", j, err)
			}
			var again Joined
			if err := again.UnmarshalJSON(enc); err != nil || again.String() != j.String() {
				t.Fatalf("%s reads back as %+v, %v; want %+v", enc, again, err, j)
			}
		}
	})
}
