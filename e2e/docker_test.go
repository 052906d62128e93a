package e2e

import (
	"archive/tar"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/internal/testutil"
)

// dockerHost is a lab host with its own dockerd: one mount namespace per
// host (held by a sleeping process, in the host's network namespace)
// where /run/docker is the host's own directory, so each dockerd finds
// its own overlayd at /run/docker/plugins/overlayd.sock, and the overlayd
// beside it sees the namespaces that dockerd mounts under
// /run/docker/netns, as on a real host where both live in the root mount
// namespace.
type dockerHost struct {
	*Host
	dir     string // the host's files: run-docker/, data/, exec/, docker.sock
	holder  *exec.Cmd
	dockerd *Proc
	od      *Overlayd
	v6      bool // overlayd's VXLAN and gossip on the IPv6 underlay
}

// newDockerHost makes h's mount namespace and directories.
func newDockerHost(t *testing.T, h *Host) *dockerHost {
	t.Helper()
	dir, err := os.MkdirTemp("", "ovt-docker-"+h.Name+"-")
	if err != nil {
		t.Fatal(err)
	}
	d := &dockerHost{Host: h, dir: dir}
	t.Cleanup(func() { os.RemoveAll(dir) }) // last: after dockerd and the holder are gone
	for _, sub := range []string{"data", "exec"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// ip netns exec would remount /sys, hiding the cgroup mounts dockerd
	// needs; nsenter enters only the network namespace. Slave
	// propagation: the host's mounts reach the namespace, its own stay in.
	d.holder = exec.Command("unshare", "--mount", "--propagation", "slave",
		"nsenter", "--net=/run/netns/"+h.NS, "sleep", "3600")
	d.holder.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := d.holder.Start(); err != nil {
		t.Fatalf("%s: start the mount namespace: %v", h.Name, err)
	}
	t.Cleanup(func() {
		d.holder.Process.Kill()
		d.holder.Wait()
	})
	// The holder has its namespaces once sleep runs.
	testutil.Eventually(t, 5*time.Second, h.Name+": the mount namespace", func() error {
		self, _ := os.Readlink("/proc/self/ns/mnt")
		its, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", d.holder.Process.Pid))
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", d.holder.Process.Pid))
		if err != nil || its == self || !strings.HasSuffix(exe, "/sleep") {
			return fmt.Errorf("not yet: %s %s", its, exe)
		}
		return nil
	})
	// /run/docker is the host's own; so is /run/containerd, kept empty,
	// so that dockerd starts a containerd of its own even where a system
	// one runs.
	for _, m := range [][2]string{{"run-docker", "/run/docker"}, {"run-containerd", "/run/containerd"}} {
		if err := os.MkdirAll(filepath.Join(dir, m[0]), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(m[1], 0o755); err != nil {
			t.Fatal(err)
		}
		d.run(t, "mount", "--bind", filepath.Join(dir, m[0]), m[1])
	}
	return d
}

// nsenter is the command line that runs args in the host's network and
// mount namespaces.
func (d *dockerHost) nsenter(args ...string) []string {
	return append([]string{"nsenter", "-t", fmt.Sprint(d.holder.Process.Pid), "--mount", "--net", "--"}, args...)
}

// run runs a command in the host's namespaces.
func (d *dockerHost) run(t *testing.T, args ...string) string {
	t.Helper()
	a := d.nsenter(args...)
	out, err := exec.Command(a[0], a[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %s: %v\n%s", d.Name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// start starts a long-running command in the host's namespaces; the lab
// stops it at the end of the test.
func (d *dockerHost) start(t *testing.T, args ...string) *Proc {
	t.Helper()
	a := d.nsenter(args...)
	cmd := exec.Command(a[0], a[1:]...)
	p := &Proc{Host: d.Host, Cmd: cmd, out: &syncWriter{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: start %s: %v", d.Name, strings.Join(args, " "), err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	d.lab.mu.Lock()
	d.lab.procs = append(d.lab.procs, p)
	d.lab.mu.Unlock()
	return p
}

func (d *dockerHost) dockerSock() string { return "unix://" + filepath.Join(d.dir, "docker.sock") }

// startOverlayd runs overlayd with the Docker plugin, joining seed.
func (d *dockerHost) startOverlayd(t *testing.T, seed *Host) {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	ctl := filepath.Join(d.dir, "overlayd.sock")
	self, other := d.Underlay, seed.Underlay
	if d.v6 {
		self, other = d.Underlay6, seed.Underlay6
	}
	d.od = &Overlayd{Control: ctl, Proc: d.start(t, bin, "run", "--name", d.Name, "--control", ctl, "--log-level", "info",
		"--mode", "tun",
		"--listen", netip.AddrPortFrom(self, labVXLANPort).String(),
		"--gossip", netip.AddrPortFrom(self, labGossipPort).String(),
		"--join", netip.AddrPortFrom(other, labGossipPort).String(),
		"--gossip-profile", "test",
		"--state-dir", filepath.Join(d.dir, "state"),
		"--dns", "127.0.0.1:5353", "--dns-upstream", "127.0.0.1:5300",
		"--docker-plugin", "--docker-host", d.dockerSock())}
	d.od.WaitOutput(t, 15*time.Second, "docker plugin listening")
}

// startDockerd runs the host's dockerd and waits for its API.
func (d *dockerHost) startDockerd(t *testing.T) {
	t.Helper()
	d.dockerd = d.start(t, "dockerd", "--iptables=false", "--ip6tables=false", "--bridge=none", "--storage-driver=vfs",
		"--data-root", filepath.Join(d.dir, "data"), "--exec-root", filepath.Join(d.dir, "exec"),
		"--pidfile", filepath.Join(d.dir, "dockerd.pid"), "-H", d.dockerSock())
	t.Cleanup(func() {
		// Containers first, while dockerd runs, then dockerd (SIGTERM: it
		// stops its containerd), before the lab stops overlayd.
		if ids, err := d.tryDocker("ps", "-aq"); err == nil && strings.TrimSpace(ids) != "" {
			d.tryDocker(append([]string{"rm", "-f"}, strings.Fields(ids)...)...)
		}
		d.dockerd.Cmd.Process.Signal(syscall.SIGTERM)
		if d.dockerd.Wait(20*time.Second) != nil {
			d.dockerd.Kill()
		}
		if d.od != nil {
			d.od.Stop()
		}
		if t.Failed() {
			t.Logf("%s: dockerd's log:\n%s", d.Name, tail(d.dockerd.Output(), 40))
			t.Logf("%s: overlayd's log:\n%s", d.Name, tail(d.od.Output(), 40))
		}
	})
	testutil.Eventually(t, 30*time.Second, d.Name+": dockerd answers", func() error {
		select {
		case <-d.dockerd.done:
			t.Fatalf("%s: dockerd exited: %v\n%s", d.Name, d.dockerd.err, tail(d.dockerd.Output(), 30))
		default:
		}
		_, err := d.tryDocker("version")
		return err
	})
}

// tryDocker runs the docker client against the host's dockerd.
func (d *dockerHost) tryDocker(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", append([]string{"-H", d.dockerSock()}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func (d *dockerHost) docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := d.tryDocker(args...)
	if err != nil {
		t.Fatalf("%s: %v", d.Name, err)
	}
	return out
}

// endpoints returns the host's overlayd endpoints by name.
func (d *dockerHost) endpoints(t *testing.T) map[string]api.EndpointInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	es, err := d.od.Client().Endpoints(ctx)
	if err != nil {
		t.Fatalf("%s: endpoints: %v", d.Name, err)
	}
	m := map[string]api.EndpointInfo{}
	for _, e := range es {
		m[e.Name] = e
	}
	return m
}

// network returns the host's view of overlay network name.
func (d *dockerHost) network(name string) (api.NetworkInfo, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ns, err := d.od.Client().Networks(ctx)
	if err != nil {
		return api.NetworkInfo{}, false
	}
	for _, n := range ns {
		if n.Name == name {
			return n, true
		}
	}
	return api.NetworkInfo{}, false
}

// busyboxImage writes a root file system of a static busybox and its
// applets as a tar file, for docker import.
func busyboxImage(t *testing.T) string {
	t.Helper()
	const bin = "/bin/busybox"
	f, err := elf.Open(bin)
	if err != nil {
		Unavailable(t, "a static busybox at /bin/busybox (apt-get install busybox-static)")
	}
	static := !slices.ContainsFunc(f.Progs, func(p *elf.Prog) bool { return p.Type == elf.PT_INTERP })
	f.Close()
	if !static {
		Unavailable(t, "a static busybox (apt-get install busybox-static): /bin/busybox is dynamically linked")
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "busybox.tar")
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	tw := tar.NewWriter(out)
	for _, dir := range []string{"bin/", "etc/", "tmp/", "proc/", "sys/", "dev/"} {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755})
	}
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: int64(len(data))})
	tw.Write(data)
	for _, applet := range []string{"sh", "sleep", "ping", "ping6", "nslookup", "ip", "cat", "wget", "httpd", "hostname"} {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + applet, Linkname: "busybox", Mode: 0o777})
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// newDockerLab makes two hosts, each running overlayd with the Docker
// plugin (over the IPv6 underlay when v6) and its own dockerd with the
// busybox image ovt-busybox:1; it skips (fails under CI) without root,
// Docker or a static busybox.
// createDockerNetwork runs the `docker network create` args on h1, and
// on h2 once it knows the overlay network, which it then joins rather than
// creating another; it returns the overlay network as h2 sees it.
func createDockerNetwork(t *testing.T, h1, h2 *dockerHost, args ...string) api.NetworkInfo {
	t.Helper()
	h1.docker(t, args...)
	testutil.Eventually(t, 15*time.Second, "h1: overlay network blue joined", func() error {
		if n, ok := h1.network("blue"); !ok || !n.Joined {
			return fmt.Errorf("blue: %+v", n)
		}
		return nil
	})
	testutil.Eventually(t, 15*time.Second, "h2 knows the overlay network blue", func() error {
		if _, ok := h2.network("blue"); !ok {
			return errors.New("not yet")
		}
		return nil
	})
	h2.docker(t, args...)
	var blue api.NetworkInfo
	testutil.Eventually(t, 15*time.Second, "h2: overlay network blue joined", func() error {
		n, ok := h2.network("blue")
		if !ok || !n.Joined {
			return fmt.Errorf("blue: %+v", n)
		}
		blue = n
		return nil
	})
	return blue
}

func newDockerLab(t *testing.T, v6 bool) []*dockerHost {
	t.Helper()
	RequireRoot(t, "unshare", "nsenter")
	for _, tool := range []string{"dockerd", "docker"} {
		if _, err := exec.LookPath(tool); err != nil {
			Unavailable(t, tool+" (apt-get install docker.io)")
		}
	}
	image := busyboxImage(t)
	lab := NewLab(t, 2, 1500)
	hosts := []*dockerHost{newDockerHost(t, lab.Hosts[0]), newDockerHost(t, lab.Hosts[1])}
	for i, d := range hosts {
		d.v6 = v6
		d.startOverlayd(t, lab.Hosts[1-i])
	}
	for _, d := range hosts {
		d.startDockerd(t)
		d.docker(t, "import", image, "ovt-busybox:1")
	}
	return hosts
}

// TestDockerPlugin: two hosts, each with overlayd --docker-plugin and its
// own dockerd (Debian's docker.io, --iptables=false --bridge=none, a
// busybox image made with docker import). `docker network create -d
// overlayd --ipam-driver overlayd --subnet 10.30.0.0/16 blue` on both
// makes one overlay network; a container on each host pings the other by
// name (Docker's embedded resolver forwards to the network's DNS address,
// given with --dns, and the search domain blue.overlay completes the
// name); `docker network rm blue` leaves the network with no endpoint.
func TestDockerPlugin(t *testing.T) {
	hosts := newDockerLab(t, false)
	h1, h2 := hosts[0], hosts[1]

	create := []string{"network", "create", "-d", "overlayd", "--ipam-driver", "overlayd", "--subnet", "10.30.0.0/16", "blue"}
	blue := createDockerNetwork(t, h1, h2, create...)
	if blue.CIDR != "10.30.0.0/16" {
		t.Fatalf("overlay network blue has CIDR %s, want the Docker subnet 10.30.0.0/16", blue.CIDR)
	}

	dns := []string{"--dns", blue.DNS, "--dns-search", "blue.overlay"}
	for i, d := range hosts {
		name := fmt.Sprintf("web%d", i+1)
		d.docker(t, append(append([]string{"run", "-d", "--network", "blue"}, dns...), "--name", name, "ovt-busybox:1", "sleep", "3600")...)
		testutil.Eventually(t, 15*time.Second, d.Name+": endpoint "+name+" attached", func() error {
			e, ok := d.endpoints(t)[name]
			if !ok || !e.Attached || e.Network != "blue" {
				return fmt.Errorf("endpoints: %v", d.endpoints(t))
			}
			return nil
		})
		t.Logf("%s: %s", d.Name, strings.TrimSpace(d.docker(t, "exec", name, "ip", "-4", "addr", "show", "eth0")))
	}
	for i, d := range hosts {
		self, peer := fmt.Sprintf("web%d", i+1), fmt.Sprintf("web%d", 2-i)
		var out string
		testutil.Eventually(t, 20*time.Second, fmt.Sprintf("%s pings %s by name", self, peer), func() error {
			var err error
			out, err = d.tryDocker("exec", self, "ping", "-c", "3", "-W", "2", peer)
			return err
		})
		t.Logf("%s: docker exec %s ping -c 3 %s\n%s", d.Name, self, peer, out)
		want := hosts[1-i].endpoints(t)[peer].Addr
		if ip, _, _ := strings.Cut(want, "/"); !strings.Contains(out, "("+ip+")") {
			t.Errorf("%s: ping %s resolved to something else than its address %s:\n%s", d.Name, peer, want, out)
		}
	}

	// The names came from overlay DNS (Docker's resolver knows only its own
	// host's containers, and forwards the rest to --dns).
	for _, d := range hosts {
		st, err := d.od.Status()
		if err != nil || st.DNS == nil || st.DNS.Responses["NOERROR"] == 0 {
			t.Errorf("%s: overlay DNS answered nothing (%v): %+v", d.Name, err, st.DNS)
			continue
		}
		t.Logf("%s: overlay DNS queries %v, responses %v", d.Name, st.DNS.Queries, st.DNS.Responses)
	}

	// A restart of h1's overlayd: the endpoint is re-adopted, and the
	// plugin remembers Docker's network and endpoint (Docker does not
	// tell a restarted plugin again), so the removals below still work.
	t0 := time.Now()
	h1.od.Stop()
	t.Logf("h1: overlayd stopped in %v", time.Since(t0).Round(time.Millisecond))
	h1.startOverlayd(t, h2.Host)
	t.Logf("h1: overlayd restarted in %v", time.Since(t0).Round(time.Millisecond))
	testutil.Eventually(t, 15*time.Second, "h1: web1 attached after the restart", func() error {
		if e, ok := h1.endpoints(t)["web1"]; !ok || !e.Attached {
			return fmt.Errorf("endpoints: %v", h1.endpoints(t))
		}
		return nil
	})
	testutil.Eventually(t, 15*time.Second, "web1 pings web2 after h1's restart", func() error {
		_, err := h1.tryDocker("exec", "web1", "ping", "-c", "1", "-W", "1", "web2")
		return err
	})

	// docker rm, docker network rm: no endpoint left, the network left.
	for i, d := range hosts {
		d.docker(t, "rm", "-f", fmt.Sprintf("web%d", i+1))
		d.docker(t, "network", "rm", "blue")
		testutil.Eventually(t, 10*time.Second, d.Name+": no endpoint, network blue left", func() error {
			if es := d.endpoints(t); len(es) > 0 {
				return fmt.Errorf("endpoints: %v", es)
			}
			if n, ok := d.network("blue"); ok && n.Joined {
				return fmt.Errorf("still on blue: %+v", n)
			}
			return nil
		})
	}
}
