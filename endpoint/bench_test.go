//go:build linux

package endpoint_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/e2e"
	"github.com/overlayd/overlayd/internal/testutil"
	"github.com/overlayd/overlayd/ipam"
	"github.com/overlayd/overlayd/node"
	"github.com/overlayd/overlayd/node/nodetest"
)

// These run a whole node in this process (netstack mode, gossip on
// loopback: e2e.NewGossipCluster) with its real endpoint manager, router
// and IPAM, and attach namespaces the test makes with ip netns add, so
// they need root (for the TUNs inside the namespaces).

const benchCIDR = "10.40.0.0/16"

// rig is one node on network blue, and the namespaces made for it.
type rig struct {
	nd *node.Node
	ns []string // the namespaces' names
}

var rigSeq atomic.Int32

// newRig starts the node and makes n namespaces (deleted at the end, also
// on failure).
func newRig(tb testing.TB, n int) *rig {
	tb.Helper()
	c := e2e.NewGossipCluster(tb, 1, e2e.GossipOptions{})
	r := &rig{nd: c.Node(0)}
	ctx := context.Background()
	if _, err := r.nd.CreateNetwork(ctx, api.CreateNetwork{Name: "blue", CIDR: benchCIDR}); err != nil {
		tb.Fatal(err)
	}
	c.Join(0, "blue")
	prefix := fmt.Sprintf("ovb%d-%d", os.Getpid()%10000, rigSeq.Add(1))
	var add, del strings.Builder
	for i := range n {
		name := fmt.Sprintf("%s-%d", prefix, i)
		r.ns = append(r.ns, name)
		fmt.Fprintf(&add, "netns add %s\n", name)
		fmt.Fprintf(&del, "netns del %s\n", name)
	}
	tb.Cleanup(func() { ipBatch(del.String()) })
	if out, err := ipBatch(add.String()); err != nil {
		tb.Fatalf("ip netns add ×%d: %v\n%s", n, err, out)
	}
	return r
}

// ipBatch runs ip -force -batch over the lines.
func ipBatch(lines string) (string, error) {
	cmd := exec.Command("ip", "-force", "-batch", "-")
	cmd.Stdin = strings.NewReader(lines)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func nsPath(name string) string { return "/var/run/netns/" + name }

// attach attaches namespace i as an endpoint named name.
func (r *rig) attach(name string, i int) (api.EndpointInfo, error) {
	return r.nd.Attach(context.Background(), api.Attach{Name: name, Network: "blue", Netns: nsPath(r.ns[i])})
}

// needRoot skips a benchmark that needs root.
func needRoot(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root (to make network namespaces and TUN devices in them); skipped")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		b.Skip("needs ip (apt-get install iproute2); skipped")
	}
}

// BenchmarkAttachDetach: an endpoint is attached, pings an endpoint
// already attached on the node (switched locally: the reply is the other
// namespace's kernel's), and is detached, in one op. Extra figures: the
// attach call alone, and attach → first echo reply, in ms.
func BenchmarkAttachDetach(b *testing.B) {
	needRoot(b)
	r := newRig(b, 2)
	peer, err := r.attach("peer", 0)
	if err != nil {
		b.Fatal(err)
	}
	dst := netip.MustParsePrefix(peer.Addr).Addr()
	pinger, err := newPinger(nsPath(r.ns[1]))
	if err != nil {
		b.Fatal(err)
	}
	defer pinger.Close()
	var attachTook, firstPing time.Duration
	seq0 := pinger.seq
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		if _, err := r.attach("ep", 1); err != nil {
			b.Fatal(err)
		}
		attached := time.Now()
		if err := pinger.ping(dst, 5*time.Second); err != nil {
			b.Fatalf("first ping %v after attach: %v", dst, err)
		}
		attachTook += attached.Sub(start)
		firstPing += time.Since(start)
		if err := r.nd.Detach(context.Background(), "ep"); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(attachTook.Microseconds())/1e3/float64(b.N), "ms-attach")
	b.ReportMetric(float64(firstPing.Microseconds())/1e3/float64(b.N), "ms-attach-to-ping")
	b.ReportMetric(float64(pinger.seq-seq0)/float64(b.N), "echoes/op") // 1: the first one is answered
}

// pinger sends ICMP echo requests from inside a namespace (a raw socket
// made there) and waits for the reply.
type pinger struct {
	fd  int
	id  uint16
	seq uint16
}

func newPinger(netns string) (*pinger, error) {
	var fd int
	err := inNetns(netns, func() (err error) {
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
		return err
	})
	if err != nil {
		return nil, err
	}
	tv := unix.NsecToTimeval((2 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &pinger{fd: fd, id: uint16(os.Getpid())}, nil
}

func (p *pinger) Close() error { return unix.Close(p.fd) }

// ping sends echo requests to dst, a new one every 2 ms that passes
// without a reply (the route may not be there yet), until one is
// answered or d passes.
func (p *pinger) ping(dst netip.Addr, d time.Duration) error {
	deadline := time.Now().Add(d)
	to := &unix.SockaddrInet4{Addr: dst.As4()}
	buf := make([]byte, 1500)
	var last error
	for time.Now().Before(deadline) {
		p.seq++
		req := echo(p.id, p.seq)
		if err := unix.Sendto(p.fd, req, 0, to); err != nil {
			last = err // no route yet: try again
			time.Sleep(time.Millisecond)
			continue
		}
		for {
			n, _, err := unix.Recvfrom(p.fd, buf, 0)
			if err != nil {
				if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
					break // no reply this round
				}
				return err
			}
			if isReply(buf[:n], p.id, p.seq) {
				return nil
			}
		}
	}
	return fmt.Errorf("no echo reply from %v within %v (last error %v)", dst, d, last)
}

// echo is an ICMP echo request (RFC 792) with an 8-byte payload.
func echo(id, seq uint16) []byte {
	b := make([]byte, 16)
	b[0] = 8 // echo request
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	copy(b[8:], "overlayd")
	binary.BigEndian.PutUint16(b[2:], checksum(b))
	return b
}

// isReply: an IPv4 packet (a raw socket's read has the header) with an
// ICMP echo reply of id and seq.
func isReply(pkt []byte, id, seq uint16) bool {
	if len(pkt) < 20 {
		return false
	}
	ihl := int(pkt[0]&0x0f) * 4
	if len(pkt) < ihl+8 {
		return false
	}
	icmp := pkt[ihl:]
	return icmp[0] == 0 && binary.BigEndian.Uint16(icmp[4:]) == id && binary.BigEndian.Uint16(icmp[6:]) == seq
}

func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

// inNetns runs f on a thread that has entered the namespace at path (a
// socket made there stays in it), then returns the thread to its own;
// a thread that cannot return stays locked and ends with the goroutine.
func inNetns(path string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer self.Close()
		target, err := os.Open(path)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", path, err)
			return
		}
		ferr := f()
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("setns back: %w", err)) // the thread stays locked: it dies with us
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// churnN is how many endpoints the churn attaches and detaches at once.
const churnN = 200

// TestChurnNoLeak attaches churnN endpoints (one namespace each) to one
// node and detaches them all, and checks that nothing is left: no
// interface but lo in any namespace, no lease of the node's but its own,
// no goroutine and no file descriptor more than before (a leak of one per
// endpoint would show churnN). A warm-up attach and detach goes first, so
// that what the first endpoint starts once for all is in the baseline.
func TestChurnNoLeak(t *testing.T) {
	e2e.RequireRoot(t)
	r := newRig(t, churnN)
	ctx := context.Background()
	if _, err := r.attach("warm", 0); err != nil {
		t.Fatal(err)
	}
	if err := r.nd.Detach(ctx, "warm"); err != nil {
		t.Fatal(err)
	}
	view, err := ipam.New(nodetest.Gossip(r.nd), ipam.Options{}) // reads the node's leases from gossip
	if err != nil {
		t.Fatal(err)
	}
	defer view.Close()
	leases0 := endpointLeases(view)
	gor0, fds0 := runtime.NumGoroutine(), openFDs(t)

	start := time.Now()
	for i := range churnN {
		in, err := r.attach(fmt.Sprintf("ep%d", i), i)
		if err != nil {
			t.Fatalf("attach %d: %v", i, err)
		}
		if !in.Attached {
			t.Fatalf("attach %d: %+v", i, in)
		}
	}
	attached := time.Since(start)
	es, err := r.nd.Endpoints(ctx)
	if err != nil || len(es) != churnN {
		t.Fatalf("%d endpoints listed (%v), want %d", len(es), err, churnN)
	}
	if n := len(endpointLeases(view)); n != churnN+len(leases0) {
		t.Errorf("%d endpoint leases with %d endpoints attached", n, churnN)
	}
	gorUp, fdsUp := runtime.NumGoroutine(), openFDs(t)
	start = time.Now()
	for i := range churnN {
		if err := r.nd.Detach(ctx, fmt.Sprintf("ep%d", i)); err != nil {
			t.Fatalf("detach %d: %v", i, err)
		}
	}
	detached := time.Since(start)
	t.Logf("%d endpoints: attached in %v (%v each), detached in %v (%v each); with them up: %d goroutines (%d before), %d fds (%d before)",
		churnN, attached.Round(time.Millisecond), (attached / churnN).Round(time.Microsecond),
		detached.Round(time.Millisecond), (detached / churnN).Round(time.Microsecond), gorUp, gor0, fdsUp, fds0)

	if es, _ := r.nd.Endpoints(ctx); len(es) != 0 {
		t.Errorf("%d endpoints listed after detaching all", len(es))
	}
	if ls := endpointLeases(view); len(ls) != len(leases0) {
		t.Errorf("endpoint leases after the churn: %v, before: %v", ls, leases0)
	}
	var batch strings.Builder
	for _, ns := range r.ns {
		fmt.Fprintf(&batch, "netns exec %s ip -o link show\n", ns)
	}
	if out, err := ipBatch(batch.String()); err != nil {
		t.Errorf("ip link in the namespaces: %v\n%s", err, out)
	} else if n := strings.Count(out, "\n") - strings.Count(out, ": lo: "); n != 0 {
		t.Errorf("%d links other than lo left in the namespaces:\n%s", n, out)
	}
	// Goroutines and descriptors end a little after Detach returns (a
	// read loop sees its device closed): poll.
	const slack = 5 // the node's own background work comes and goes
	var gor, fds int
	if _, err := testutil.Poll(5*time.Second, func() error {
		gor, fds = runtime.NumGoroutine(), openFDs(t)
		if gor > gor0+slack || fds > fds0+slack {
			return fmt.Errorf("%d goroutines (%d before), %d fds (%d before)", gor, gor0, fds, fds0)
		}
		return nil
	}); err != nil {
		t.Errorf("after detaching %d endpoints: %v", churnN, err)
	}
	t.Logf("after the churn: %d goroutines (%d before), %d fds (%d before), %d endpoint leases", gor, gor0, fds, fds0, len(endpointLeases(view)))
}

// endpointLeases are the leases of blue held for endpoints ("NODE/NAME").
func endpointLeases(view *ipam.IPAM) []ipam.Lease {
	var out []ipam.Lease
	for _, ls := range view.Leases("blue") {
		if strings.Contains(ls.Owner, "/") {
			out = append(out, ls)
		}
	}
	return out
}

func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// BenchmarkChurn: churnN endpoints attached (one namespace each), then
// all detached, in one op; per-endpoint figures in ms.
func BenchmarkChurn(b *testing.B) {
	needRoot(b)
	r := newRig(b, churnN)
	ctx := context.Background()
	var att, det time.Duration
	for b.Loop() {
		start := time.Now()
		for i := range churnN {
			if _, err := r.attach(fmt.Sprintf("ep%d", i), i); err != nil {
				b.Fatalf("attach %d: %v", i, err)
			}
		}
		mid := time.Now()
		for i := range churnN {
			if err := r.nd.Detach(ctx, fmt.Sprintf("ep%d", i)); err != nil {
				b.Fatalf("detach %d: %v", i, err)
			}
		}
		att += mid.Sub(start)
		det += time.Since(mid)
	}
	b.ReportMetric(float64(att.Microseconds())/1e3/float64(b.N*churnN), "ms-attach/endpoint")
	b.ReportMetric(float64(det.Microseconds())/1e3/float64(b.N*churnN), "ms-detach/endpoint")
}
