package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/internal/testutil"
)

// Rootless is a machine as an unprivileged user sees it: a user made for
// the test, who runs overlayd nodes in netstack mode (no privilege) and
// rootless "containers" (unshare --user --map-root-user --net, as podman
// rootless and rootlesskit make them), all inside one network namespace
// of the test's (the machine: its loopback is the nodes' underlay; a veth
// pair gives it the default route a user-mode network such as pasta looks
// for). /dev/net/tun is mode 0666 meanwhile, as distributions ship it
// (these machines have 0600). Made by NewRootless as root; everything,
// the user included, goes when the test ends, also when it fails.
type Rootless struct {
	t        testing.TB
	NS       string // the machine's network namespace
	User     string
	UID, GID int
	Dir      string // the user's: the overlayd binary, state directories, sockets
	Bin      string // overlayd, where the user may run it

	mu    sync.Mutex // guards procs
	procs []*UserProc
}

var rootlessSeq atomic.Int32

// NewRootless sets up the machine and its user; it needs root (it skips,
// or fails under CI, without it or the tools).
func NewRootless(t testing.TB, tools ...string) *Rootless {
	t.Helper()
	RequireRoot(t, append([]string{"unshare", "nsenter", "setpriv", "useradd", "userdel"}, tools...)...)
	seq := rootlessSeq.Add(1)
	r := &Rootless{t: t, NS: fmt.Sprintf("ovr%d-%d", os.Getpid()%10000, seq), User: fmt.Sprintf("ovlrl%d-%d", os.Getpid(), seq)}
	if out, err := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", r.User).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v: %s", r.User, err, out)
	}
	// Cleanups run last first: the user goes after its processes.
	t.Cleanup(func() {
		if out, err := exec.Command("userdel", r.User).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v: %s", r.User, err, out)
		}
	})
	u, err := lookupIDs(r.User)
	if err != nil {
		t.Fatal(err)
	}
	r.UID, r.GID = u[0], u[1]
	testutil.OpenDevTUN(t)

	r.mustRun("ip", "netns", "add", r.NS)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", r.NS).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", r.NS, err, out)
		}
	})
	r.mustRun("ip", "-n", r.NS, "link", "set", "lo", "up")
	r.mustRun("ip", "-n", r.NS, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
	r.mustRun("ip", "-n", r.NS, "addr", "add", "192.0.2.1/24", "dev", "eth0")
	r.mustRun("ip", "-n", r.NS, "link", "set", "eth0", "up")
	r.mustRun("ip", "-n", r.NS, "link", "set", "eth1", "up")
	r.mustRun("ip", "-n", r.NS, "route", "add", "default", "via", "192.0.2.254", "dev", "eth0")

	r.Dir, err = os.MkdirTemp("", "overlayd-rootless-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(r.Dir) })
	if err := os.Chown(r.Dir, r.UID, r.GID); err != nil {
		t.Fatal(err)
	}
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	r.Bin = filepath.Join(r.Dir, "overlayd")
	if err := copyFile(bin, r.Bin, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.stopAll)
	return r
}

func (r *Rootless) mustRun(name string, args ...string) {
	r.t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		r.t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// lookupIDs returns the uid and gid of user.
func lookupIDs(user string) ([2]int, error) {
	var ids [2]int
	for i, flag := range []string{"-u", "-g"} {
		out, err := exec.Command("id", flag, user).Output()
		if err != nil {
			return ids, fmt.Errorf("id %s %s: %v", flag, user, err)
		}
		if ids[i], err = strconv.Atoi(strings.TrimSpace(string(out))); err != nil {
			return ids, fmt.Errorf("id %s %s = %q", flag, user, out)
		}
	}
	return ids, nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, mode)
}

// asUser is the command line that runs args as the user, without any
// capability, in the machine's namespace.
func (r *Rootless) asUser(args ...string) []string {
	return append([]string{"ip", "netns", "exec", r.NS, "setpriv",
		fmt.Sprintf("--reuid=%d", r.UID), fmt.Sprintf("--regid=%d", r.GID), "--clear-groups",
		"--inh-caps=-all", "--bounding-set=-all", "--"}, args...)
}

// Try runs args as the user, with a one-minute limit, and returns the
// combined output.
func (r *Rootless) Try(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	argv := r.asUser(args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = r.Dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Run is Try that fails the test on an error.
func (r *Rootless) Run(args ...string) string {
	r.t.Helper()
	out, err := r.Try(args...)
	if err != nil {
		r.t.Fatalf("as %s: %s: %v\n%s", r.User, strings.Join(args, " "), err, out)
	}
	return out
}

// UserProc is a long-running process of the user's.
type UserProc struct{ *Proc } // a Proc of no lab host

// Start starts args as the user; the test stops it at its end. It dies
// with the test binary (Pdeathsig).
func (r *Rootless) Start(args ...string) *UserProc {
	r.t.Helper()
	argv := r.asUser(args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = r.Dir
	p := &UserProc{&Proc{Cmd: cmd, out: &syncWriter{}, done: make(chan struct{})}}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("start %s: %v", strings.Join(args, " "), err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	r.mu.Lock()
	r.procs = append(r.procs, p)
	r.mu.Unlock()
	return p
}

// Exited reports whether the process has exited.
func (p *UserProc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (r *Rootless) stopAll() {
	r.mu.Lock()
	procs := r.procs
	r.procs = nil
	r.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].Stop()
	}
}

// Container is a rootless container's namespaces: a process (sleep) in a
// user namespace of the user's, where the user is root, and a network
// namespace that user namespace owns.
type Container struct {
	r    *Rootless
	Proc *UserProc
	PID  int    // the process in the namespaces
	Path string // its network namespace: /proc/PID/ns/net
}

// Container starts a rootless container (unshare --user --map-root-user
// --net), stopped when the test ends.
func (r *Rootless) Container() *Container {
	r.t.Helper()
	// ip netns exec and setpriv exec in turn; the shell prints its PID
	// once in the new namespaces and becomes sleep.
	p := r.Start("unshare", "--user", "--map-root-user", "--net", "sh", "-c", "echo $$; exec sleep 3600")
	var pid int
	testutil.Eventually(r.t, 10*time.Second, "the container's PID", func() error {
		line, _, ok := strings.Cut(p.Output(), "\n")
		if !ok {
			if p.Exited() {
				r.t.Fatalf("unshare exited: %v: %s", p.err, p.Output())
			}
			return fmt.Errorf("printed %q", p.Output())
		}
		var err error
		pid, err = strconv.Atoi(line)
		return err
	})
	return &Container{r: r, Proc: p, PID: pid, Path: fmt.Sprintf("/proc/%d/ns/net", pid)}
}

// in is the command line that runs args as the user inside the
// container's user and network namespaces.
func (c *Container) in(args ...string) []string {
	return append([]string{"nsenter", "-t", strconv.Itoa(c.PID), "-U", "--preserve-credentials", "-n", "--"}, args...)
}

// Try runs args inside the container and returns the combined output.
func (c *Container) Try(args ...string) (string, error) { return c.r.Try(c.in(args...)...) }

// Run is Try that fails the test on an error.
func (c *Container) Run(args ...string) string {
	c.r.t.Helper()
	return c.r.Run(c.in(args...)...)
}

// Start starts args inside the container, stopped when the test ends.
func (c *Container) Start(args ...string) *UserProc { return c.r.Start(c.in(args...)...) }

// RootlessNode is an overlayd node the user runs in netstack mode, with
// gossip on the machine's loopback.
type RootlessNode struct {
	*UserProc
	Name    string
	Gossip  string // IP:PORT
	Control string
	r       *Rootless
	args    []string
}

// Client talks to the node's control socket (root may connect to the
// user's).
func (n *RootlessNode) Client() *api.Client { return api.NewClient(n.Control) }

// StartNode runs `overlayd run --mode netstack` as the user with gossip
// on loopback (joining join, if not empty), its own ports, state
// directory and control socket, and waits until it answers status.
func (r *Rootless) StartNode(name, join string, flags ...string) *RootlessNode {
	r.t.Helper()
	state := filepath.Join(r.Dir, name)
	if err := os.Mkdir(state, 0o700); err != nil {
		r.t.Fatal(err)
	}
	if err := os.Chown(state, r.UID, r.GID); err != nil {
		r.t.Fatal(err)
	}
	n := &RootlessNode{Name: name, Control: filepath.Join(state, "overlayd.sock")}
	ports := r.freePorts(2)
	n.Gossip = fmt.Sprintf("127.0.0.1:%d", ports[1])
	args := []string{r.Bin, "run", "--name", name, "--mode", "netstack", "--listen", fmt.Sprintf("127.0.0.1:%d", ports[0]),
		"--gossip", n.Gossip, "--gossip-profile", "test", "--state-dir", state, "--control", n.Control, "--dns", "off", "--log-level", "info"}
	if join != "" {
		args = append(args, "--join", join)
	}
	n.r, n.args = r, append(args, flags...)
	n.start()
	return n
}

// Restart stops the node (SIGTERM) and runs it again with the same flags
// and state directory.
func (n *RootlessNode) Restart() {
	n.r.t.Helper()
	n.Stop()
	n.start()
}

func (n *RootlessNode) start() {
	r := n.r
	r.t.Helper()
	n.UserProc = r.Start(n.args...)
	if _, err := testutil.Poll(15*time.Second, func() error {
		if n.Exited() {
			r.t.Fatalf("%s: overlayd exited: %v\n%s", n.Name, n.err, n.Output())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := n.Client().Status(ctx)
		return err
	}); err != nil {
		r.t.Fatalf("%s: overlayd did not answer on %s: %v\n%s", n.Name, n.Control, err, n.Output())
	}
}

// freePorts finds n ports free for both UDP and TCP on the machine's
// loopback (a node's VTEP is UDP, its gossip both).
func (r *Rootless) freePorts(n int) []int {
	r.t.Helper()
	var ports []int
	err := inNetns(r.NS, func() error {
		for len(ports) < n {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return err
			}
			port := l.Addr().(*net.TCPAddr).Port
			u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
			l.Close()
			if err != nil {
				continue
			}
			u.Close()
			ports = append(ports, port)
		}
		return nil
	})
	if err != nil {
		r.t.Fatalf("free ports in %s: %v", r.NS, err)
	}
	return ports
}

// inNetns runs f on a locked OS thread inside the named namespace; the
// thread is never unlocked, so the runtime discards it afterwards.
func inNetns(name string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		ns, err := os.Open("/var/run/netns/" + name)
		if err != nil {
			errc <- err
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		errc <- f()
	}()
	return <-errc
}

// RootlessPair is two rootless nodes on one machine (netstack mode,
// gossip and VXLAN on loopback, run by an unprivileged user), both on
// network blue, with a rootless container attached on each through
// `overlayd attach` (the daemon's helper makes each device).
type RootlessPair struct {
	*Rootless
	Nodes      [2]*RootlessNode
	Containers [2]*Container
	Addrs      [2]netip.Addr // the containers' overlay addresses
}

// NewRootlessPair sets the pair up and waits until each node has the
// other's container's route.
func NewRootlessPair(t testing.TB, tools ...string) *RootlessPair {
	t.Helper()
	p := &RootlessPair{Rootless: NewRootless(t, tools...)}
	p.Nodes[0] = p.StartNode("n1", "")
	p.Nodes[1] = p.StartNode("n2", p.Nodes[0].Gossip)
	p.Run(p.Bin, "network", "create", "blue", "10.30.0.0/16", "--control", p.Nodes[0].Control)
	for _, n := range p.Nodes {
		p.Run(p.Bin, "network", "join", "blue", "--control", n.Control)
	}
	for i, n := range p.Nodes {
		c := p.Container()
		p.Containers[i] = c
		out := p.Run(p.Bin, "attach", fmt.Sprintf("c%d", i+1), "--netns", c.Path, "--network", "blue", "--control", n.Control, "--json")
		var e api.EndpointInfo
		if err := json.Unmarshal([]byte(out), &e); err != nil {
			t.Fatalf("overlayd attach c%d --json = %q: %v", i+1, out, err)
		}
		addr, err := netip.ParsePrefix(e.Addr)
		if err != nil {
			t.Fatalf("overlayd attach c%d: address %q: %v", i+1, e.Addr, err)
		}
		p.Addrs[i] = addr.Addr()
		if e.Device != "tun-helper" {
			t.Errorf("endpoint c%d: device %q, want tun-helper (an unprivileged daemon can make it only through the helper)", i+1, e.Device)
		}
		if got := c.Run("ip", "-o", "-4", "addr", "show", "dev", "eth0"); !strings.Contains(got, e.Addr) {
			t.Fatalf("c%d's eth0 inside the container: %q, want %v", i+1, got, e.Addr)
		}
	}
	// Each node learns the other's container through gossip.
	for i, n := range p.Nodes {
		other := p.Addrs[1-i]
		testutil.Eventually(t, 20*time.Second, fmt.Sprintf("%s: a route to c%d's %v", n.Name, 2-i, other), func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			st, err := n.Client().Status(ctx)
			if err != nil {
				return err
			}
			for _, r := range st.Routes {
				if r.Prefix == other.String()+"/32" {
					return nil
				}
			}
			return fmt.Errorf("routes %v", st.Routes)
		})
	}
	return p
}

// Iperf runs an iperf3 client in c for secs seconds with streams
// parallel streams against a server (started by the caller) at addr, and
// returns the received Gbit/s. It retries while the server does not
// answer yet.
func (c *Container) Iperf(addr string, secs, streams int) (float64, error) {
	g, out, err := IperfClient(c.Try, secs, streams, addr)
	if err != nil {
		return 0, fmt.Errorf("iperf3 → %s measured nothing: %v\n%s", addr, err, out)
	}
	return g, nil
}
