package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/overlayd/overlayd/internal/testutil"
)

// TestRootlessContainers: an unprivileged user runs two overlayd nodes
// in netstack mode on one machine and a rootless container beside each;
// `overlayd attach` puts each container on network blue (through the
// daemon's helper: neither daemon may enter the containers' namespaces),
// and the containers ping each other and move a byte-exact TCP transfer.
func TestRootlessContainers(t *testing.T) {
	p := NewRootlessPair(t, "ping", "nc")
	c1, c2 := p.Containers[0], p.Containers[1]

	for i, c := range p.Containers {
		dst := p.Addrs[1-i]
		if out, err := c.Try("ping", "-n", "-c", "3", "-i", "0.2", "-w", "10", dst.String()); err != nil {
			t.Fatalf("ping c%d → %v: %v\n%s\nn1:\n%s\nn2:\n%s", i+1, dst, err, out, p.Nodes[0].Output(), p.Nodes[1].Output())
		}
	}

	// 1 MiB, c1 → c2, through nc (netcat-openbsd) on each side.
	data := make([]byte, 1<<20)
	rand.Read(data)
	in := filepath.Join(p.Dir, "in")
	if err := os.WriteFile(in, data, 0o644); err != nil {
		t.Fatal(err)
	}
	srv := c2.Start("sh", "-c", fmt.Sprintf("exec nc -l %s 5001 > %s/out", p.Addrs[1], p.Dir))
	var out string
	var err error
	testutil.Eventually(t, 10*time.Second, "nc c1 → c2", func() error {
		out, err = c1.Try("sh", "-c", fmt.Sprintf("exec nc -N %s 5001 < %s", p.Addrs[1], in))
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	testutil.Eventually(t, 10*time.Second, "nc in c2 to exit", func() error {
		if !srv.Exited() {
			return fmt.Errorf("still running")
		}
		return nil
	})
	got, err := os.ReadFile(filepath.Join(p.Dir, "out"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("c2 received %d bytes, not the %d c1 sent (or not the same)", len(got), len(data))
	}

	// A restart of n2's daemon re-adopts c2's device through the helper
	// (it is persistent): the same address, and c1 reaches it again.
	// ip -o link: "2: eth0: <...> mtu 65485 ..."; the index and the MTU
	// say it is the same device, as it was.
	link := func() string {
		f := strings.Fields(c2.Run("ip", "-o", "link", "show", "dev", "eth0"))
		return strings.Join(f[:5], " ")
	}
	before := link()
	p.Nodes[1].Restart()
	testutil.Eventually(t, 20*time.Second, "c2 attached again after n2's restart", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		e, err := p.Nodes[1].Client().Endpoint(ctx, "c2")
		if err != nil {
			return err
		}
		if !e.Attached || e.Device != "tun-helper" || e.Addr != p.Addrs[1].String()+"/16" {
			return fmt.Errorf("%+v", e)
		}
		return nil
	})
	if after := link(); after != before {
		t.Errorf("c2's eth0 changed over the restart:\n%s\n%s", before, after)
	}
	if out, err := c1.Try("ping", "-n", "-c", "1", "-w", "20", p.Addrs[1].String()); err != nil {
		t.Fatalf("ping c1 → c2 after n2's restart: %v\n%s\nn2:\n%s", err, out, p.Nodes[1].Output())
	}

	// The daemons hold the devices: a detach removes c1's interface.
	p.Run(p.Bin, "detach", "c1", "--control", p.Nodes[0].Control)
	if out, err := c1.Try("ip", "link", "show", "dev", "eth0"); err == nil {
		t.Errorf("c1's eth0 after detach: %s", out)
	}
}
