package network

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/overlayd/overlayd/internal/statefile"
	"github.com/overlayd/overlayd/internal/testutil"
	"github.com/overlayd/overlayd/ipam"
)

// A state file last written from an export that did not hold the node's
// lease (taken while its lease and range were not visible yet, as right
// after a restart) is written again once the tables hold the lease: ipam
// reports only its own changes, not a lease that comes back from the
// peers. (TestKillDuringJoinKeepsAddresses found a file left without the
// lease for good.)
func TestStateIPAMFileRewrittenWhenLeaseShows(t *testing.T) {
	ctx := context.Background()
	c := newCluster(t)
	a := c.start("a", stateDir(t), Options{})
	b := c.start("b", stateDir(t), Options{}, "a")
	waitMembers(t, a, b)
	if _, err := a.m.Create(ctx, CreateRequest{Name: "blue", CIDRs: []string{"10.30.0.0/24"}}); err != nil {
		t.Fatal(err)
	}
	// An export of the network before b took part: no lease of b's.
	stale, err := a.m.IPAM().Export("blue")
	if err != nil {
		t.Fatal(err)
	}
	if st, err := ipam.DecodeState(stale); err != nil || len(st.Leases) != 0 {
		t.Fatalf("the stale export holds %+v, %v; want no leases", st, err)
	}
	if _, err := b.m.Join(ctx, "blue"); err != nil {
		t.Fatal(err)
	}
	addr := joinedAddr(t, b, "blue")
	path := filepath.Join(b.dir, "ipam-blue.state")
	// The last write b made, as far as b knows, is that export.
	b.m.savedMu.Lock()
	if err := b.m.opts.State.Write(ipamFileName("blue"), stale); err != nil {
		b.m.savedMu.Unlock()
		t.Fatal(err)
	}
	b.m.saved["blue"] = stale
	b.m.savedMu.Unlock()
	testutil.Eventually(t, 10*time.Second, "b's state file holds its lease again", func() error {
		return fileHoldsLease(path, addr.Addr(), "b")
	})
}

// A damaged networks.json does not stop the Manager: it is reported
// naming it, moved aside, and the joined networks come back from the
// node's own leases in its ipam-NET.state files, and are written again.
func TestStateJoinedFileRecoveredFromIPAM(t *testing.T) {
	ctx := context.Background()
	c := newCluster(t)
	dir := stateDir(t)
	n := c.start("solo", dir, Options{})
	if _, err := n.m.Create(ctx, CreateRequest{Name: "blue", CIDRs: []string{"10.31.0.0/24"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.m.Join(ctx, "blue"); err != nil {
		t.Fatal(err)
	}
	addr := joinedAddr(t, n, "blue")
	n.crash()
	path := filepath.Join(dir, JoinedFile)
	if err := os.WriteFile(path, []byte(`{"version": 1, "joined": [`), 0o600); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.InfoLevel)
	n = c.start("solo", dir, Options{Log: zap.New(core)})
	if logs.FilterMessage("state file unreadable").FilterField(zap.String("file", path)).Len() != 1 {
		t.Errorf("not reported naming %s: %v", path, logs.All())
	}
	if logs.FilterMessage("joined networks recovered from the ipam state files").Len() != 1 {
		t.Errorf("the recovery is not said: %v", logs.All())
	}
	if got := joinedAddr(t, n, "blue"); got != addr {
		t.Errorf("after the restart: %v on blue, want %v", got, addr)
	}
	if _, err := os.Stat(path + ".corrupt"); err != nil {
		t.Errorf("the damaged file was not moved aside: %v", err)
	}
	js, fs := n.m.loadJoined()
	if fs != statefile.OK || len(js) != 1 || js[0].Prefixes()[0] != addr {
		t.Errorf("networks.json written again: %+v, %v", js, fs)
	}
	if w, err := CheckStateDir(dir); err != nil || len(w) != 0 {
		t.Errorf("CheckStateDir after the recovery = %v, %v", w, err)
	}
}

// CheckStateDir warns of each state file the start could not use, and
// touches none.
func TestCheckStateDir(t *testing.T) {
	dir := t.TempDir()
	if w, err := CheckStateDir(dir); err != nil || len(w) != 0 {
		t.Fatalf("CheckStateDir(empty) = %v, %v", w, err)
	}
	bad := map[string]string{
		JoinedFile:        `{"version": 2, "joined": []}`,
		"ipam-blue.state": "ovipam\x01garbage",
	}
	for name, content := range bad {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	w, err := CheckStateDir(dir)
	if err != nil || len(w) != len(bad) {
		t.Errorf("CheckStateDir = %q, %v; want %d warnings", w, err, len(bad))
	}
	for name := range bad {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s: %v after the check", name, err)
		}
	}
}

// networks.json: an entry of a node without IPv6 reads as before, a
// dual-stack one keeps both addresses (cidr6, addr6), and entries whose
// addresses lie outside their CIDRs or whose families clash are refused.
func TestJoinedJSON(t *testing.T) {
	old := `{"version":1,"joined":[{"name":"blue","cidr":"10.1.0.0/24","vni":7,"addr":"10.1.0.2"}]}`
	st, err := decodeJoined([]byte(old))
	if err != nil || len(st.Joined) != 1 || st.Joined[0].String() != "10.1.0.2/24" {
		t.Fatalf("decodeJoined(old) = %+v, %v", st, err)
	}
	if b, err := json.Marshal(st); err != nil || string(b) != old {
		t.Errorf("Marshal(old) = %s, %v; want it unchanged", b, err)
	}
	dual := Joined{Name: "dual", CIDRs: []netip.Prefix{netip.MustParsePrefix("10.5.0.0/24"), netip.MustParsePrefix("fd00:2::/64")}, VNI: 9,
		Addrs: []netip.Addr{netip.MustParseAddr("10.5.0.2"), netip.MustParseAddr("fd00:2::2")}}
	b, err := json.Marshal(joinedState{Version: 1, Joined: []Joined{dual}})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"version":1,"joined":[{"name":"dual","cidr":"10.5.0.0/24","vni":9,"addr":"10.5.0.2","cidr6":"fd00:2::/64","addr6":"fd00:2::2"}]}`; string(b) != want {
		t.Errorf("Marshal(dual) = %s, want %s", b, want)
	}
	if st, err := decodeJoined(b); err != nil || st.Joined[0].String() != "10.5.0.2/24,fd00:2::2/64" {
		t.Errorf("decodeJoined(dual) = %+v, %v", st, err)
	}
	for _, bad := range []string{
		`{"version":1,"joined":[{"name":"x","cidr":"10.1.0.0/24","vni":7,"addr":"10.2.0.2"}]}`,
		`{"version":1,"joined":[{"name":"x","cidr":"10.1.0.0/24","vni":7,"addr":"10.1.0.2","cidr6":"fd00::/64"}]}`,
		`{"version":1,"joined":[{"name":"x","cidr":"10.1.0.0/24","vni":7,"addr":"10.1.0.2","cidr6":"10.2.0.0/24","addr6":"10.2.0.2"}]}`,
		`{"version":1,"joined":[{"name":"x","cidr":"fd00::/64","vni":7,"addr":"fd00::2","cidr6":"fd01::/64","addr6":"fd01::2"}]}`,
		`{"version":1,"joined":[{"name":"x","cidr":"10.1.0.0/24","vni":7,"addr":"10.1.0.2","extra":1}]}`,
	} {
		if st, err := decodeJoined([]byte(bad)); err == nil {
			t.Errorf("decodeJoined(%s) = %+v, want an error", bad, st)
		}
	}
}
