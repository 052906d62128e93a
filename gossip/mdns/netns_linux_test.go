package mdns

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/overlayd/overlayd/gossip"
	"github.com/overlayd/overlayd/internal/testutil"
)

// TestNetnsDiscover: two nodes in two network namespaces joined by a
// veth find each other over multicast DNS, IPv6 (ff02::fb, AAAA) as IPv4
// (224.0.0.251, A), each from the announcements and answers of the
// other; the multicast stays inside the namespaces.
func TestNetnsDiscover(t *testing.T) {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (to create network namespaces)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		missing = append(missing, "ip (apt-get install iproute2)")
	}
	if len(missing) > 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("needs %s; CI runs as root with iproute2 (.ci/run), so this is a failure", strings.Join(missing, ", "))
		}
		t.Skipf("needs %s; skipped", strings.Join(missing, ", "))
	}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	ns := []string{fmt.Sprintf("ovltest-%d-mdnsa", os.Getpid()), fmt.Sprintf("ovltest-%d-mdnsb", os.Getpid())}
	for _, n := range ns {
		run("netns", "add", n)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", n).Run() })
	}
	run("-n", ns[0], "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", ns[1])
	for i, n := range ns {
		run("-n", n, "link", "set", "lo", "up")
		run("-n", n, "addr", "add", fmt.Sprintf("fd99::%d/64", i+1), "dev", "eth0", "nodad")
		run("-n", n, "addr", "add", fmt.Sprintf("198.18.99.%d/24", i+1), "dev", "eth0")
		run("-n", n, "link", "set", "eth0", "up")
	}
	for _, fam := range [][2]string{{"[fd99::1]:7946", "[fd99::2]:7946"}, {"198.18.99.1:7946", "198.18.99.2:7946"}} {
		t.Run(fam[0], func(t *testing.T) {
			var mu sync.Mutex
			heard := map[string]gossip.Found{} // by the node that heard
			for i, n := range ns {
				self := gossip.Found{Name: fmt.Sprintf("n%d", i+1), Addr: netip.MustParseAddrPort(fam[i])}
				d := New(Options{})
				// Start on a thread in the namespace: the socket and the
				// interfaces Start reads are its. The thread is never
				// unlocked, so the runtime ends it with its goroutine.
				errc := make(chan error)
				go func() {
					runtime.LockOSThread()
					f, err := os.Open("/var/run/netns/" + n)
					if err == nil {
						err = unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
						f.Close()
					}
					if err == nil {
						err = d.Start(self, func(f gossip.Found) {
							mu.Lock()
							heard[self.Name] = f
							mu.Unlock()
						})
					}
					errc <- err
				}()
				if err := <-errc; err != nil {
					t.Fatalf("Start(%v) in %s: %v", self.Addr, n, err)
				}
				t.Cleanup(func() { d.Close() })
			}
			testutil.Eventually(t, 10*time.Second, "each node hearing the other", func() error {
				mu.Lock()
				a, b := heard["n1"], heard["n2"]
				mu.Unlock()
				if a.Name != "n2" || a.Addr.String() != fam[1] || b.Name != "n1" || b.Addr.String() != fam[0] {
					return fmt.Errorf("n1 heard %v, n2 heard %v; want each the other at %v and %v", a, b, fam[1], fam[0])
				}
				return nil
			})
		})
	}
}
