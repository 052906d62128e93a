package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/internal/testutil"
)

// RequireRoot skips a test that needs root and iproute2, with a clear
// message, on a developer's machine; under CI (CI=true) it fails instead,
// since CI runs as root and must run these tests.
func RequireRoot(t testing.TB, tools ...string) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (to create network namespaces and TUN devices)")
	}
	for _, tool := range append([]string{"ip"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool+" (apt-get install "+debianPackage(tool)+")")
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := "needs " + strings.Join(missing, ", ")
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s; CI runs as root with these installed by .ci/run, so this is a failure", msg)
	}
	t.Skip(msg + "; skipped (run make test as root to include it)")
}

func debianPackage(tool string) string {
	switch tool {
	case "ip":
		return "iproute2"
	case "ping":
		return "iputils-ping"
	case "dig":
		return "dnsutils"
	case "nft":
		return "nftables"
	case "ethtool":
		return "ethtool"
	}
	return tool
}

// Lab is a set of hosts, each a network namespace, on one underlay: a
// bridge in a namespace of its own, with a veth to every host. Underlay
// addresses are 198.18.0.0/24 (RFC 2544 benchmarking space) and
// 2001:2::/64 (RFC 5180's, for IPv6); nothing leaves the namespaces. Close (run by t.Cleanup) kills the lab's processes and
// deletes its namespaces, also when the test fails.
type Lab struct {
	t      testing.TB
	prefix string
	sw     string
	Hosts  []*Host

	mu    sync.Mutex // guards procs
	procs []*Proc
}

// Host is one namespace on the lab's underlay.
type Host struct {
	lab      *Lab
	Name     string     // e.g. "h1"
	NS       string     // the namespace's name
	Underlay netip.Addr // its IPv4 address on the underlay bridge
	// Underlay6 is its IPv6 address on the same bridge (2001:2::N/64,
	// without duplicate address detection, so it is usable at once).
	Underlay6 netip.Addr
}

var labSeq atomic.Int32

// NewLab makes n hosts on a shared underlay with the given underlay MTU.
func NewLab(t testing.TB, n, mtu int) *Lab {
	t.Helper()
	l := &Lab{t: t, prefix: fmt.Sprintf("ovt%d-%d", os.Getpid()%10000, labSeq.Add(1))}
	l.sw = l.prefix + "-sw"
	t.Cleanup(l.Close)
	l.mustRun("ip", "netns", "add", l.sw)
	l.mustRun("ip", "-n", l.sw, "link", "add", "br0", "type", "bridge")
	l.mustRun("ip", "-n", l.sw, "link", "set", "br0", "mtu", fmt.Sprint(mtu), "up")
	for i := range n {
		h := &Host{
			lab:       l,
			Name:      fmt.Sprintf("h%d", i+1),
			NS:        fmt.Sprintf("%s-h%d", l.prefix, i+1),
			Underlay:  netip.AddrFrom4([4]byte{198, 18, 0, byte(i + 1)}),
			Underlay6: netip.AddrFrom16([16]byte{0x20, 0x01, 0, 2, 15: byte(i + 1)}),
		}
		l.Hosts = append(l.Hosts, h)
		port := fmt.Sprintf("v%d", i+1)
		l.mustRun("ip", "netns", "add", h.NS)
		l.mustRun("ip", "-n", l.sw, "link", "add", port, "mtu", fmt.Sprint(mtu), "type", "veth", "peer", "name", "eth0", "netns", h.NS)
		l.mustRun("ip", "-n", l.sw, "link", "set", port, "master", "br0", "up")
		l.mustRun("ip", "-n", h.NS, "link", "set", "lo", "up")
		l.mustRun("ip", "-n", h.NS, "link", "set", "eth0", "mtu", fmt.Sprint(mtu), "up")
		l.mustRun("ip", "-n", h.NS, "addr", "add", h.Underlay.String()+"/24", "dev", "eth0")
		l.mustRun("ip", "-n", h.NS, "addr", "add", h.Underlay6.String()+"/64", "dev", "eth0", "nodad")
	}
	return l
}

func (l *Lab) mustRun(name string, args ...string) string {
	l.t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Close kills every process the lab started and deletes its namespaces.
func (l *Lab) Close() {
	l.mu.Lock()
	procs := l.procs
	l.procs = nil
	l.mu.Unlock()
	for _, p := range procs {
		p.Stop()
	}
	for _, h := range l.Hosts {
		exec.Command("ip", "netns", "del", h.NS).Run()
	}
	exec.Command("ip", "netns", "del", l.sw).Run()
}

// Run runs a command in the host's namespace and returns its combined
// output; it fails the test on error.
func (h *Host) Run(args ...string) string {
	h.lab.t.Helper()
	out, err := h.Try(args...)
	if err != nil {
		h.lab.t.Fatalf("%s: %s: %v\n%s", h.Name, strings.Join(args, " "), err, out)
	}
	return out
}

// Try runs a command in the host's namespace, with a one-minute limit.
func (h *Host) Try(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.NS}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Proc is a long-running process in a host.
type Proc struct {
	Host *Host
	Cmd  *exec.Cmd
	out  *syncWriter
	done chan struct{}
	err  error
	once sync.Once
}

// Start starts a command in the host's namespace; the lab stops it at the
// end of the test. It dies with the test binary (Pdeathsig).
func (h *Host) Start(args ...string) *Proc {
	h.lab.t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", h.NS}, args...)...)
	p := &Proc{Host: h, Cmd: cmd, out: &syncWriter{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		h.lab.t.Fatalf("%s: start %s: %v", h.Name, strings.Join(args, " "), err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	h.lab.mu.Lock()
	h.lab.procs = append(h.lab.procs, p)
	h.lab.mu.Unlock()
	return p
}

// syncWriter collects a process's output for concurrent readers.
type syncWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *syncWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(b)
}

// where names the process's host ("the user" for a rootless user's).
func (p *Proc) where() string {
	if p.Host == nil {
		return "the user"
	}
	return p.Host.Name
}

// Output returns what the process has printed so far.
func (p *Proc) Output() string {
	p.out.mu.Lock()
	defer p.out.mu.Unlock()
	return p.out.buf.String()
}

// WaitOutput waits up to d for the process to print want, failing the
// test with what it printed if it does not, or if it exits first.
func (p *Proc) WaitOutput(t testing.TB, d time.Duration, want string) {
	t.Helper()
	testutil.Eventually(t, d, fmt.Sprintf("%s: %q in the output of %s", p.where(), want, strings.Join(p.Cmd.Args, " ")), func() error {
		out := p.Output()
		if strings.Contains(out, want) {
			return nil
		}
		select {
		case <-p.done:
			t.Fatalf("%s: %s exited (%v) before printing %q:\n%s", p.where(), strings.Join(p.Cmd.Args, " "), p.err, want, out)
		default:
		}
		return fmt.Errorf("printed so far:\n%s", out)
	})
}

// Stop sends SIGTERM, waits up to five seconds, then kills. Safe twice.
func (p *Proc) Stop() error {
	p.once.Do(func() {
		p.Cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			p.Cmd.Process.Kill()
			<-p.done
		}
	})
	return p.err
}

// Kill sends SIGKILL and waits.
func (p *Proc) Kill() {
	p.once.Do(func() {
		p.Cmd.Process.Kill()
		<-p.done
	})
}

// Wait waits for the process to exit, up to d.
func (p *Proc) Wait(d time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(d):
		return fmt.Errorf("%s: still running after %v", p.where(), d)
	}
}

// Overlayd is an overlayd daemon in a host.
type Overlayd struct {
	*Proc
	Control string
}

// binDir holds the overlayd that Binary built; RemoveBinary deletes it.
var binDir atomic.Pointer[string]

// RemoveBinary deletes the overlayd that Binary built, if it built one.
// TestMain calls it when the tests are done.
func RemoveBinary() {
	if d := binDir.Swap(nil); d != nil {
		os.RemoveAll(*d)
	}
}

// Binary builds overlayd once per test binary and returns its path.
var Binary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "overlayd-e2e-")
	if err != nil {
		return "", err
	}
	binDir.Store(&dir)
	bin := filepath.Join(dir, "overlayd")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/overlayd/overlayd/cmd/overlayd").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// StartOverlayd runs `overlayd run` in the host with the given flags (the
// control socket is chosen here) and waits until it answers status.
func (h *Host) StartOverlayd(flags ...string) *Overlayd {
	t := h.lab.t
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	ctl := filepath.Join(t.TempDir(), h.Name+".sock")
	// DNS is off unless flags turn it on (with an upstream the test starts).
	args := append([]string{bin, "run", "--name", h.Name, "--control", ctl, "--log-level", "info", "--dns", "off"}, flags...)
	o := &Overlayd{Proc: h.Start(args...), Control: ctl}
	if _, err := testutil.Poll(15*time.Second, func() error {
		_, err := o.Status()
		if err != nil {
			select {
			case <-o.done:
				t.Fatalf("%s: overlayd exited: %v\n%s", h.Name, o.err, o.Output())
			default:
			}
		}
		return err
	}); err != nil {
		t.Fatalf("%s: overlayd did not answer on %s: %v\n%s", h.Name, ctl, err, o.Output())
	}
	return o
}

// Status asks the daemon for its status over the control socket (unix
// sockets are not bound to a network namespace).
func (o *Overlayd) Status() (api.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return api.NewClient(o.Control).Status(ctx)
}

// Drops sums the daemon's drop counters for the given reasons (all when none).
func (o *Overlayd) Drops(reasons ...string) uint64 {
	st, err := o.Status()
	if err != nil {
		return 0
	}
	var n uint64
	for k, v := range st.Traffic.Drops {
		if len(reasons) == 0 {
			n += v
			continue
		}
		for _, r := range reasons {
			if k == r {
				n += v
			}
		}
	}
	return n
}

// KernelVXLAN gives the host a kernel vxlan device vx0 (VNI vni, port
// 4789) with the overlay address addr, sending unknown destinations to
// remote.
func (h *Host) KernelVXLAN(vni uint32, addr netip.Prefix, remote netip.Addr, mtu int) {
	h.lab.t.Helper()
	h.KernelVXLAN6(vni, []netip.Prefix{addr}, remote, mtu)
}

// KernelVXLAN6 is KernelVXLAN with any inner addresses, of either family
// (IPv6 ones without duplicate address detection), over the underlay of
// remote's family: the host's Underlay6 is the local end when remote is
// an IPv6 address.
func (h *Host) KernelVXLAN6(vni uint32, addrs []netip.Prefix, remote netip.Addr, mtu int) {
	h.lab.t.Helper()
	local := h.Underlay
	if remote.Is6() {
		local = h.Underlay6
	}
	h.Run("ip", "link", "add", "vx0", "type", "vxlan", "id", fmt.Sprint(vni), "dstport", "4789",
		"remote", remote.String(), "local", local.String(), "dev", "eth0")
	// A veth never completes a checksum left partial for offload, and the
	// kernel leaves the inner TCP/UDP checksum of a vxlan packet to the
	// lower device; a NIC would fill it in. So make the kernel do it in
	// software, or overlayd receives inner packets with unfinished
	// checksums that the receiving host then drops.
	h.Run("ethtool", "-K", "eth0", "tx", "off")
	h.Run("ip", "link", "set", "vx0", "mtu", fmt.Sprint(mtu))
	for _, a := range addrs {
		args := []string{"ip", "addr", "add", a.String(), "dev", "vx0"}
		if a.Addr().Is6() {
			args = append(args, "nodad")
		}
		h.Run(args...)
	}
	h.Run("ip", "link", "set", "vx0", "up")
}

// Iperf runs an iperf3 server in dst bound to addr and a client in h for
// secs seconds with streams parallel streams, and returns the received
// Gbit/s.
func (h *Host) Iperf(dst *Host, addr string, secs, streams int) (float64, error) {
	srv := dst.Start("iperf3", "-s", "-1", "-B", addr)
	defer srv.Stop()
	g, out, err := IperfClient(h.Try, secs, streams, addr)
	if err != nil {
		return 0, fmt.Errorf("iperf3 %s → %s measured nothing: %v\n%s\nserver: %s", h.Name, addr, err, out, srv.Output())
	}
	return g, nil
}

// IperfClient runs an iperf3 client through try ("iperf3 -c" then
// server, such as ADDR or ADDR -p PORT) for secs seconds with streams
// streams, and returns the received Gbit/s, or why it measured nothing
// with the client's output. The server may not listen (or its path not be
// up) yet; iperf3 -J exits 0 even then and says so in "error": it retries
// for up to iperfStart.
func IperfClient(try func(args ...string) (string, error), secs, streams int, server ...string) (float64, string, error) {
	var res struct {
		Error string `json:"error"`
		End   struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	var out string
	var err error
	testutil.Poll(iperfStart, func() error {
		args := append(append([]string{"iperf3", "-c"}, server...), "-t", strconv.Itoa(secs), "-P", strconv.Itoa(streams), "-J")
		out, err = try(args...)
		res.Error = ""
		return iperfRan(out, err, &res, &res.Error)
	})
	switch {
	case err != nil:
		return 0, out, err
	case res.Error != "":
		return 0, out, errors.New(res.Error)
	case res.End.SumReceived.BitsPerSecond <= 0:
		return 0, out, errors.New("no bytes received")
	}
	return res.End.SumReceived.BitsPerSecond / 1e9, out, nil
}

// iperfStart bounds how long an iperf3 client retries a server that does
// not listen yet.
const iperfStart = 20 * time.Second

// iperfRan decodes iperf3 -J output into res and says why the run did
// not measure, if it did not: the command failed, its output is not
// JSON, or iperf3 reported an error (in *errField, part of res).
func iperfRan(out string, err error, res any, errField *string) error {
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(out), res); err != nil {
		return err
	}
	if *errField != "" {
		return errors.New(*errField)
	}
	return nil
}

// IperfUDP sends UDP with iperf3 from h to an iperf3 server in dst bound
// to addr, at rate (e.g. "200M") for secs seconds, and returns the bytes
// the server received and the loss in percent.
func (h *Host) IperfUDP(dst *Host, addr, rate string, secs int) (bytes int64, lostPercent float64, err error) {
	srv := dst.Start("iperf3", "-s", "-1", "-B", addr)
	defer srv.Stop()
	var res struct {
		Error string `json:"error"`
		End   struct {
			Sum struct {
				Bytes       int64   `json:"bytes"`
				LostPercent float64 `json:"lost_percent"`
			} `json:"sum"`
		} `json:"end"`
	}
	var out string
	testutil.Poll(iperfStart, func() error {
		out, err = h.Try("iperf3", "-u", "-c", addr, "-b", rate, "-t", strconv.Itoa(secs), "-J")
		res.Error = ""
		return iperfRan(out, err, &res, &res.Error)
	})
	if err != nil || res.Error != "" {
		return 0, 0, fmt.Errorf("iperf3 -u %s → %s: %v %s\n%s", h.Name, addr, err, res.Error, out)
	}
	return res.End.Sum.Bytes, res.End.Sum.LostPercent, nil
}

// Client is an API client for the daemon's control socket.
func (o *Overlayd) Client() *api.Client { return api.NewClient(o.Control) }

// Partition drops the host's gossip (UDP and TCP) and VXLAN traffic both
// ways with nftables, in its namespace only; Heal removes the rules.
func (h *Host) Partition(gossipPort, vxlanPort int) {
	h.lab.t.Helper()
	rules := fmt.Sprintf(`table inet ovtpart {
	chain in {
		type filter hook input priority 0; policy accept;
		udp dport { %[1]d, %[2]d } drop
		tcp dport %[1]d drop
		udp sport { %[1]d, %[2]d } drop
		tcp sport %[1]d drop
	}
	chain out {
		type filter hook output priority 0; policy accept;
		udp dport { %[1]d, %[2]d } drop
		tcp dport %[1]d drop
		udp sport { %[1]d, %[2]d } drop
		tcp sport %[1]d drop
	}
}
`, gossipPort, vxlanPort)
	f := filepath.Join(h.lab.t.TempDir(), h.Name+"-partition.nft")
	if err := os.WriteFile(f, []byte(rules), 0o644); err != nil {
		h.lab.t.Fatal(err)
	}
	h.Run("nft", "-f", f)
}

// Heal removes the rules Partition added.
func (h *Host) Heal() {
	h.lab.t.Helper()
	h.Run("nft", "delete", "table", "inet", "ovtpart")
}
