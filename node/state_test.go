package node

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/internal/testutil"
	"github.com/overlayd/overlayd/ipam"
	"github.com/overlayd/overlayd/network"
)

// logged waits for a log entry with message msg whose "file" field is
// path ("": any).
func logged(t *testing.T, logs *observer.ObservedLogs, msg, path string) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, fmt.Sprintf("log %q naming %s", msg, path), func() error {
		for _, e := range logs.FilterMessage(msg).All() {
			if path == "" || e.ContextMap()["file"] == path {
				return nil
			}
		}
		return fmt.Errorf("logged: %v", logs.All())
	})
}

func joinedAddr(t *testing.T, n *Node, network string) netip.Prefix {
	t.Helper()
	for _, j := range n.ctl.joinedList() {
		if j.Name == network {
			return j.Prefixes()[0]
		}
	}
	t.Fatalf("%s has not joined %s: %+v", n.cfg.Name, network, n.ctl.joinedList())
	return netip.Prefix{}
}

// A lost (deleted or damaged) ipam-NET.state while networks.json lists
// the network: the node starts, says so naming the file, keeps its
// address, gets its lease back from its peer and writes the file again
// (issue 10 §3 State).
func TestStateIPAMFileLost(t *testing.T) {
	for _, how := range []string{"deleted", "corrupt"} {
		t.Run(how, func(t *testing.T) {
			ctx := context.Background()
			a := clusterNode(t, "a")
			bcfg := clusterConfig(t, "b", a.gossip().Addr())
			b := startNode(t, bcfg)
			waitMembers(t, a, b)
			if _, err := a.CreateNetwork(ctx, api.CreateNetwork{Name: "blue", CIDR: "10.30.0.0/24"}); err != nil {
				t.Fatal(err)
			}
			if _, err := a.JoinNetwork(ctx, "blue"); err != nil {
				t.Fatal(err)
			}
			if _, err := b.JoinNetwork(ctx, "blue"); err != nil {
				t.Fatal(err)
			}
			addr := joinedAddr(t, b, "blue")
			// Its leases are replicated: the peer has b's before b goes.
			testutil.Eventually(t, 10*time.Second, "a knows b's lease", func() error {
				if ls, ok := a.ctl.ipam.Lookup("blue", addr.Addr()); !ok || ls.Node != "b" {
					return fmt.Errorf("lease of %v at a: %+v, %v", addr, ls, ok)
				}
				return nil
			})
			b.crash()
			path := filepath.Join(bcfg.StateDir, "ipam-blue.state")
			if how == "deleted" {
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
			} else if err := os.WriteFile(path, []byte("ovipam\x01garbage"), 0o600); err != nil {
				t.Fatal(err)
			}

			core, logs := observer.New(zapcore.InfoLevel)
			b = startNode(t, bcfg, WithLogger(zap.New(core)))
			if how == "deleted" {
				logged(t, logs, "state file missing", path)
			} else {
				logged(t, logs, "state file unreadable", path)
				if _, err := os.Stat(path + ".corrupt"); err != nil {
					t.Errorf("the damaged file was not moved aside: %v", err)
				}
			}
			if got := joinedAddr(t, b, "blue"); got != addr {
				t.Errorf("after the restart b has %v on blue, want %v", got, addr)
			}
			testutil.Eventually(t, 15*time.Second, "lease recovered from the peer and kept again", func() error {
				if ls, ok := b.ctl.ipam.Lookup("blue", addr.Addr()); !ok || ls.Node != "b" {
					return fmt.Errorf("lease of %v: %+v, %v", addr, ls, ok)
				}
				return fileHoldsLease(path, addr.Addr(), "b")
			})
			logged(t, logs, "IPAM state recovered from the peers", "")
		})
	}
}

// A damaged networks.json does not stop the node: it is reported naming
// it, moved aside, and the joined networks come back from the node's own
// leases in its ipam-NET.state files.
func TestStateJoinedFileCorrupt(t *testing.T) {
	ctx := context.Background()
	cfg := clusterConfig(t, "solo")
	n := startNode(t, cfg)
	if _, err := n.CreateNetwork(ctx, api.CreateNetwork{Name: "blue", CIDR: "10.31.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.JoinNetwork(ctx, "blue"); err != nil {
		t.Fatal(err)
	}
	addr := joinedAddr(t, n, "blue")
	n.crash()
	path := filepath.Join(cfg.StateDir, network.JoinedFile)
	if err := os.WriteFile(path, []byte(`{"version": 1, "joined": [`), 0o600); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.InfoLevel)
	n = startNode(t, cfg, WithLogger(zap.New(core)))
	logged(t, logs, "state file unreadable", path)
	if got := joinedAddr(t, n, "blue"); got != addr {
		t.Errorf("after the restart: %v on blue, want %v", got, addr)
	}
	if _, err := os.Stat(path + ".corrupt"); err != nil {
		t.Errorf("the damaged file was not moved aside: %v", err)
	}
	js, _, err := readNetworkState(cfg.StateDir)
	if err != nil || len(js) != 1 || js[0].Prefixes()[0] != addr {
		t.Errorf("networks.json written again: %+v, %v", js, err)
	}
}

// A dual-stack network's addresses survive a restart, from networks.json
// and, when it is damaged, from the node's leases in ipam-NET.state.
func TestStateDualStackRestart(t *testing.T) {
	ctx := context.Background()
	cfg := clusterConfig(t, "solo")
	n := startNode(t, cfg)
	if _, err := n.CreateNetwork(ctx, api.CreateNetwork{Name: "blue", CIDRs: []string{"fd00:31::/64", "10.31.0.0/24"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.JoinNetwork(ctx, "blue"); err != nil {
		t.Fatal(err)
	}
	addrs := func(n *Node) string {
		for _, j := range n.ctl.joinedList() {
			if j.Name == "blue" {
				return j.String()
			}
		}
		return "none"
	}
	want := addrs(n)
	if want != "10.31.0.2/24,fd00:31::2/64" {
		t.Fatalf("joined with %s, want an address of each family", want)
	}
	n.crash()
	n = startNode(t, cfg)
	if got := addrs(n); got != want {
		t.Errorf("after a restart: %s, want %s", got, want)
	}
	n.crash()
	if err := os.WriteFile(filepath.Join(cfg.StateDir, network.JoinedFile), []byte(`{"version": 1, "joined": [`), 0o600); err != nil {
		t.Fatal(err)
	}
	n = startNode(t, cfg)
	if got := addrs(n); got != want {
		t.Errorf("after a restart with networks.json damaged: %s, want %s", got, want)
	}
}

// A state directory every user may write is refused, naming it; one its
// group may write is accepted with a warning.
func TestStateDirPermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o777)
	cfg := clusterConfig(t, "perm")
	cfg.StateDir = dir
	if n, err := New(cfg); err == nil || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "writable by every user") {
		if n != nil {
			n.Close()
		}
		t.Errorf("New with a world-writable state directory: %v", err)
	}
	os.Chmod(dir, 0o770)
	core, logs := observer.New(zapcore.InfoLevel)
	n, err := New(cfg, WithLogger(zap.New(core)))
	if err != nil {
		t.Fatal(err)
	}
	n.Close()
	if logs.FilterMessageSnippet("writable by its group").Len() != 1 {
		t.Errorf("no warning for a group-writable state directory: %v", logs.All())
	}
}

// An empty services.json (issue 10 §3) follows the same rule: reported
// naming it, moved aside, and the node's service comes back from its peer.
func TestStateServicesFileEmpty(t *testing.T) {
	ctx := context.Background()
	a := clusterNode(t, "a")
	bcfg := clusterConfig(t, "b", a.gossip().Addr())
	b := startNode(t, bcfg)
	waitMembers(t, a, b)
	if _, err := a.CreateNetwork(ctx, api.CreateNetwork{Name: "blue", CIDR: "10.32.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*Node{a, b} {
		if _, err := n.JoinNetwork(ctx, "blue"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.CreateService(ctx, api.CreateService{Name: "web", Network: "blue", Ports: []string{"80/tcp"}}); err != nil {
		t.Fatal(err)
	}
	has := func(n *Node) error {
		ss, err := n.Services(ctx)
		if err != nil {
			return err
		}
		for _, s := range ss {
			if s.Name == "web" && s.Creator == "b" {
				return nil
			}
		}
		return fmt.Errorf("%s: services %+v", n.cfg.Name, ss)
	}
	testutil.Eventually(t, 10*time.Second, "a knows b's service", func() error { return has(a) })
	b.crash()
	path := filepath.Join(bcfg.StateDir, "services.json")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.InfoLevel)
	b = startNode(t, bcfg, WithLogger(zap.New(core)))
	logged(t, logs, "state file unreadable", path)
	if _, err := os.Stat(path + ".corrupt"); err != nil {
		t.Errorf("the empty file was not moved aside: %v", err)
	}
	testutil.Eventually(t, 10*time.Second, "b has its service back", func() error { return has(b) })
}

// fileHoldsLease reports (nil) whether the ipam state file at path holds
// a lease of addr for owner.
func fileHoldsLease(path string, addr netip.Addr, owner string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	st, err := ipam.DecodeState(raw)
	if err != nil {
		return err
	}
	for _, ls := range st.Leases {
		if ls.Addr == addr && ls.Owner == owner {
			return nil
		}
	}
	return fmt.Errorf("%s holds %+v", path, st.Leases)
}

// A node restarted while the network's creator is away lists the network
// it joined, with its address, before the definition arrives by gossip
// (network ls used to show nothing until then).
func TestJoinedNetworkListedBeforeDefinition(t *testing.T) {
	ctx := context.Background()
	a := clusterNode(t, "a")
	bcfg := clusterConfig(t, "b", a.gossip().Addr())
	b := startNode(t, bcfg)
	waitMembers(t, a, b)
	if _, err := a.CreateNetwork(ctx, api.CreateNetwork{Name: "blue", CIDR: "10.30.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.JoinNetwork(ctx, "blue"); err != nil {
		t.Fatal(err)
	}
	addr := joinedAddr(t, b, "blue")
	b.crash()
	a.crash()
	b = startNode(t, bcfg)
	nets, err := b.Networks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(nets) != 1 || nets[0].Name != "blue" || !nets[0].Joined || nets[0].Addr != addr.String() || nets[0].CIDR != "10.30.0.0/24" || nets[0].DNS != "10.30.0.1" {
		t.Errorf("Networks() after a restart alone = %+v, want blue joined with %v (DNS 10.30.0.1)", nets, addr)
	}
}

// readNetworkState reads the networks' state files in dir as a restart
// would take them (network.CheckStateDir finds none it could not use):
// the joined networks of networks.json and the ipam-NET.state files, by
// network.
func readNetworkState(dir string) ([]network.Joined, map[string]*ipam.State, error) {
	if w, err := network.CheckStateDir(dir); err != nil || len(w) > 0 {
		return nil, nil, fmt.Errorf("state directory %s: %v %v", dir, w, err)
	}
	b, err := os.ReadFile(filepath.Join(dir, network.JoinedFile))
	if err != nil {
		return nil, nil, err
	}
	var st struct{ Joined []network.Joined }
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, nil, err
	}
	paths, _ := filepath.Glob(filepath.Join(dir, "ipam-*.state"))
	ipams := map[string]*ipam.State{}
	for _, path := range paths {
		raw, err := os.ReadFile(path)
		if err != nil {
			return nil, nil, err
		}
		is, err := ipam.DecodeState(raw)
		if err != nil {
			return nil, nil, err
		}
		ipams[is.Network.Name] = is
	}
	return st.Joined, ipams, nil
}
