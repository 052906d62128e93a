package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/network"
)

// Issue 10 §1: symlinked state files are replaced safely. A state file
// that is a symbolic link to a file elsewhere (another user's, or one
// the node must not touch) is replaced by the node's next write: the
// link becomes a regular file with the node's state, and the file it
// pointed to is left as it was, never written through.
func TestStateSymlinkReplacedNotFollowed(t *testing.T) {
	ctx := context.Background()
	n := clusterNode(t, "sym")
	if _, err := n.CreateNetwork(ctx, api.CreateNetwork{Name: "blue", CIDR: "10.31.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.JoinNetwork(ctx, "blue"); err != nil {
		t.Fatal(err)
	}
	if _, err := n.CreateService(ctx, api.CreateService{Name: "web", Ports: []string{"80/tcp"}}); err != nil {
		t.Fatal(err)
	}
	dir := n.cfg.StateDir
	files := []string{network.JoinedFile, "ipam-blue.state", servicesFile}
	waitUntil(t, 10*time.Second, "every state file written", func() error {
		for _, f := range files {
			if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
				return err
			}
		}
		return nil
	})

	// Each state file becomes a link to a victim file outside the state
	// directory, put in place by a rename: the node may write a file
	// meanwhile (its IPAM upkeep), and a remove before the link let such
	// a write in between (symlink: file exists, about 1 run in 40).
	outside := t.TempDir()
	const victim = "not the node's: keep me\n"
	for _, f := range files {
		v := filepath.Join(outside, f+".victim")
		if err := os.WriteFile(v, []byte(victim), 0o644); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, f)
		if err := os.Symlink(v, p+".link"); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(p+".link", p); err != nil {
			t.Fatal(err)
		}
	}

	// Writes of every file: a second network (networks.json and its
	// ipam file, and blue's again as leases change) and a second service.
	if _, err := n.CreateNetwork(ctx, api.CreateNetwork{Name: "red", CIDR: "10.32.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.JoinNetwork(ctx, "red"); err != nil {
		t.Fatal(err)
	}
	if _, err := n.CreateService(ctx, api.CreateService{Name: "api", Network: "blue", Ports: []string{"81/tcp"}}); err != nil {
		t.Fatal(err)
	}
	// blue's ipam file is written again when a lease in blue changes:
	// the service's VIP came from blue.
	waitUntil(t, 10*time.Second, "every state file replaced by a regular file", func() error {
		for _, f := range files {
			fi, err := os.Lstat(filepath.Join(dir, f))
			if err != nil {
				return err
			}
			if !fi.Mode().IsRegular() {
				return fmt.Errorf("%s is still %v", f, fi.Mode())
			}
		}
		return nil
	})
	for _, f := range files {
		v := filepath.Join(outside, f+".victim")
		b, err := os.ReadFile(v)
		if err != nil || string(b) != victim {
			t.Errorf("%s: the file it linked to, %s, now holds %q (%v): written through the link", f, v, b, err)
		}
		if fi, err := os.Stat(v); err != nil || fi.Mode().Perm() != 0o644 {
			t.Errorf("%s: the file it linked to changed mode: %v, %v", f, fi.Mode(), err)
		}
	}
	// The regular files hold the node's state: a restart reads it back.
	joined, ipams, err := readNetworkState(dir)
	if err != nil || len(joined) != 2 {
		t.Errorf("networks.json after the replacement: %+v (%v), want blue and red", joined, err)
	}
	if err != nil || ipams["blue"] == nil || ipams["red"] == nil {
		t.Errorf("ipam state files after the replacement: %v, %v", ipams, err)
	}
}
