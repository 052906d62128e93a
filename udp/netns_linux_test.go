package udp_test

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/overlayd/overlayd/udp"
)

// The tests here run the batch paths over a real device: a veth pair
// between two network namespaces they create, with IPv6 addresses
// (fd99::1/64 and fd99::2/64, no duplicate address detection) and IPv4
// ones for comparison (198.18.99.1/24, .2), MTU 1500. On loopback the
// MTU is 64 KiB and GSO segments are never cut; on the veth the kernel
// segments a GSO send into datagrams that fit its MTU, as on a NIC.

// needRoot skips without root or iproute2, but fails under CI=true,
// where the privileged tests must run.
func needRoot(t *testing.T) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (to create network namespaces)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		missing = append(missing, "ip (apt-get install iproute2)")
	}
	if len(missing) == 0 {
		return
	}
	msg := "needs " + strings.Join(missing, ", ")
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s; CI runs as root with iproute2 (.ci/run), so this is a failure", msg)
	}
	t.Skip(msg + "; skipped")
}

var netnsSeq atomic.Int32

// vethPair makes two namespaces joined by a veth pair with the
// addresses above; both are deleted when the test ends, also when it
// fails. It returns the namespaces' names.
func vethPair(t *testing.T) (a, b string) {
	t.Helper()
	needRoot(t)
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	seq := netnsSeq.Add(1)
	a = fmt.Sprintf("ovltest-%d-udp%da", os.Getpid(), seq)
	b = fmt.Sprintf("ovltest-%d-udp%db", os.Getpid(), seq)
	for _, ns := range []string{a, b} {
		run("netns", "add", ns)
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Errorf("ip netns del %s: %v: %s", ns, err, out)
			}
		})
	}
	run("-n", a, "link", "add", "eth0", "mtu", "1500", "type", "veth", "peer", "name", "eth0", "netns", b)
	for i, ns := range []string{a, b} {
		run("-n", ns, "link", "set", "lo", "up")
		run("-n", ns, "addr", "add", fmt.Sprintf("fd99::%d/64", i+1), "dev", "eth0", "nodad")
		run("-n", ns, "addr", "add", fmt.Sprintf("198.18.99.%d/24", i+1), "dev", "eth0")
		run("-n", ns, "link", "set", "eth0", "up")
	}
	return a, b
}

// listenIn opens a Conn inside namespace ns: the socket belongs to the
// namespace it was created in, whichever thread uses it later.
func listenIn(t *testing.T, ns string, addr netip.AddrPort, opts udp.Options) *udp.Conn {
	t.Helper()
	type result struct {
		c   *udp.Conn
		err error
	}
	ch := make(chan result)
	go func() {
		// The thread is left in ns and never unlocked: the runtime ends
		// it with the goroutine rather than reuse it in the namespace.
		runtime.LockOSThread()
		f, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("setns %s: %w", ns, err)}
			return
		}
		c, err := udp.Listen(addr, opts)
		ch <- result{c, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("Listen(%v) in %s: %v", addr, ns, r.err)
	}
	t.Cleanup(func() { r.c.Close() })
	return r.c
}

// TestNetnsVeth: over a veth, IPv6 as IPv4, with offload on and off and
// reads into long and short buffers, a batch of 64 datagrams of the
// largest size that fits the 1500-byte MTU (1452 bytes over IPv6, 1472
// over IPv4: a 1430- or 1450-byte overlay packet and its 22 bytes of
// VXLAN and Ethernet) and a short tail reaches the peer exactly, from
// the sender's VTEP, and the kernel takes it as GSO sends; with
// several source ports every port carries some, all from the sender's
// IP; and the steady state allocates nothing.
func TestNetnsVeth(t *testing.T) {
	nsA, nsB := vethPair(t)
	for _, fam := range []struct {
		a, b string
		seg  int
	}{{"[fd99::1]:0", "[fd99::2]:0", 1500 - 40 - 8}, {"198.18.99.1:0", "198.18.99.2:0", 1500 - 20 - 8}} {
		for _, disable := range []bool{false, true} {
			opts := udp.Options{DisableOffload: disable}
			t.Run(fmt.Sprintf("%s/%s", fam.a, offloadName(disable)), func(t *testing.T) {
				tx := listenIn(t, nsA, netip.MustParseAddrPort(fam.a), opts)
				rx := listenIn(t, nsB, netip.MustParseAddrPort(fam.b), opts)
				gso, gro := tx.Offload()
				t.Logf("%v: gso=%v gro=%v", tx.LocalAddr(), gso, gro)
				for _, bufSize := range []int{65535, 1500} {
					var bufs [][]byte
					var dsts []netip.AddrPort
					for i := range 64 {
						bufs = append(bufs, payload(i, fam.seg))
						dsts = append(dsts, rx.LocalAddr())
					}
					bufs = append(bufs, payload(64, 300))
					dsts = append(dsts, rx.LocalAddr())
					if n, err := tx.WriteBatch(bufs, dsts, nil); n != len(bufs) || err != nil {
						t.Fatalf("WriteBatch = %d, %v, want %d, nil", n, err, len(bufs))
					}
					got := collect(t, rx, len(bufs), bufSize, 128)
					for i, d := range got {
						if !bytes.Equal(d.data, bufs[i]) || d.src != tx.LocalAddr() {
							t.Fatalf("buf=%d: datagram %d: %d bytes from %v, want %d bytes from %v", bufSize, i, len(d.data), d.src, len(bufs[i]), tx.LocalAddr())
						}
					}
				}
				if gso2, _ := tx.Offload(); gso2 != gso {
					t.Errorf("GSO went from %v to %v: the kernel refused a GSO send on the veth", gso, gso2)
				}
			})
		}
		t.Run(fam.a+"/source-ports", func(t *testing.T) {
			const ports = 4
			tx := listenIn(t, nsA, netip.MustParseAddrPort(fam.a), udp.Options{SourcePorts: ports})
			rx := listenIn(t, nsB, netip.MustParseAddrPort(fam.b), udp.Options{})
			var bufs [][]byte
			var dsts []netip.AddrPort
			var flows []uint32
			for i := range 8 * ports {
				bufs = append(bufs, payload(i, 1000))
				dsts = append(dsts, rx.LocalAddr())
				flows = append(flows, uint32(i))
			}
			if n, err := tx.WriteBatch(bufs, dsts, flows); n != len(bufs) || err != nil {
				t.Fatalf("WriteBatch = %d, %v", n, err)
			}
			seen := map[netip.AddrPort]int{}
			for _, d := range collect(t, rx, len(bufs), 65535, 128) {
				if d.src.Addr() != tx.LocalAddr().Addr() {
					t.Fatalf("datagram from %v, want IP %v", d.src, tx.LocalAddr().Addr())
				}
				seen[d.src]++
			}
			if len(seen) != ports {
				t.Errorf("datagrams came from %d ports (%v), want %d", len(seen), seen, ports)
			}
		})
		t.Run(fam.a+"/allocs", func(t *testing.T) {
			const batch = 64
			tx := listenIn(t, nsA, netip.MustParseAddrPort(fam.a), udp.Options{SourcePorts: 2})
			rx := listenIn(t, nsB, netip.MustParseAddrPort(fam.b), udp.Options{})
			out, dsts, flows := make([][]byte, batch), make([]netip.AddrPort, batch), make([]uint32, batch)
			in, sizes, srcs := make([][]byte, batch), make([]int, batch), make([]netip.AddrPort, batch)
			for i := range out {
				out[i], dsts[i], flows[i] = payload(i, 1400), rx.LocalAddr(), uint32(i%3)
				in[i] = make([]byte, 65535)
			}
			var failed error
			roundTrip := func() {
				if n, err := tx.WriteBatch(out, dsts, flows); n != batch || err != nil {
					failed = fmt.Errorf("WriteBatch = %d, %v", n, err)
					return
				}
				for got := 0; got < batch; {
					n, err := rx.ReadBatch(in, sizes, srcs)
					if err != nil {
						failed = fmt.Errorf("ReadBatch: %v", err)
						return
					}
					got += n
				}
			}
			roundTrip()
			allocs := testing.AllocsPerRun(50, roundTrip)
			if failed != nil {
				t.Fatal(failed)
			}
			if allocs != 0 {
				t.Errorf("WriteBatch+ReadBatch of %d datagrams over the veth: %v allocs/op, want 0", batch, allocs)
			}
		})
	}
}
