package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/internal/fault"
)

// The test binary is also the plugin: run with beThePlugin set, it runs
// main, so the tests drive the real entry point (skel, env, stdin,
// stdout, exit code) without a build.
const beThePlugin = "OVERLAYD_CNI_TEST_BE_PLUGIN"

func TestMain(m *testing.M) {
	if os.Getenv(beThePlugin) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// call is one plugin invocation.
type call struct {
	cmd, containerID, netns, ifname, args string
}

// runPlugin runs the plugin as a runtime does: the command in CNI_*
// variables (and nothing else of the test's environment), conf on stdin.
// It returns stdout and whether the plugin exited 0.
func runPlugin(t *testing.T, c call, conf string) (string, bool) {
	t.Helper()
	env := []string{beThePlugin + "=1", "PATH=" + os.Getenv("PATH"), "CNI_PATH=/nonexistent"}
	for k, v := range map[string]string{"CNI_COMMAND": c.cmd, "CNI_CONTAINERID": c.containerID, "CNI_NETNS": c.netns, "CNI_IFNAME": c.ifname, "CNI_ARGS": c.args} {
		if v != "" {
			env = append(env, k+"="+v)
		}
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = env
	cmd.Stdin = strings.NewReader(conf)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run the plugin: %v", err)
	}
	if errOut.Len() > 0 {
		t.Logf("plugin %s stderr: %s", c.cmd, errOut.String())
	}
	return out.String(), err == nil
}

// cniError decodes the error the plugin printed and checks its code.
func cniError(t *testing.T, what, out string, ok bool, code uint) types.Error {
	t.Helper()
	if ok {
		t.Fatalf("%s succeeded (%s), want CNI error %d", what, out, code)
	}
	var e types.Error
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("%s: output %q is not a CNI error: %v", what, out, err)
	}
	if e.Code != code || e.Msg == "" {
		t.Fatalf("%s: error %+v, want code %d with a message", what, e, code)
	}
	return e
}

// conf is a network configuration for the fake daemon, recording into a
// directory of the test's; extra are more "key": value pairs.
func (f *fakeDaemon) conf(t *testing.T, ver string, extra ...string) string {
	t.Helper()
	s := fmt.Sprintf(`{"cniVersion":%q,"name":"blue","type":"overlayd-cni","control":%q,"dataDir":%q`, ver, f.sock, f.dataDir(t))
	for _, e := range extra {
		s += "," + e
	}
	return s + "}"
}

func (f *fakeDaemon) dataDir(t *testing.T) string {
	return filepath.Join(filepath.Dir(f.sock), "data")
}

// records counts the records in the store of configuration blue.
func (f *fakeDaemon) records(t *testing.T) int {
	t.Helper()
	es, _ := filepath.Glob(filepath.Join(f.dataDir(t), "blue", "*.json"))
	return len(es)
}

func TestVersion(t *testing.T) {
	out, ok := runPlugin(t, call{cmd: "VERSION"}, "")
	if !ok {
		t.Fatalf("VERSION failed: %s", out)
	}
	pi, err := (&version.PluginDecoder{}).Decode([]byte(out))
	if err != nil {
		t.Fatalf("VERSION answered %q: %v", out, err)
	}
	for _, v := range []string{"0.4.0", "1.0.0", "1.1.0"} {
		if !slices.Contains(pi.SupportedVersions(), v) {
			t.Errorf("VERSION supports %v, want %s among them", pi.SupportedVersions(), v)
		}
	}
}

// ADD returns a spec-valid result of the endpoint the daemon made; DEL
// releases it, and DEL again, or of a container never added, succeeds.
func TestAddDel(t *testing.T) {
	f := startFake(t)
	conf := f.conf(t, "1.0.0")
	add := call{cmd: "ADD", containerID: "0123456789abcdef0123", netns: "/var/run/netns/web", ifname: "eth0", args: "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=Web.1"}
	out, ok := runPlugin(t, add, conf)
	if !ok {
		t.Fatalf("ADD failed: %s", out)
	}
	r := parseResult(t, "1.0.0", out)
	if len(r.Interfaces) != 1 || r.Interfaces[0].Name != "eth0" || r.Interfaces[0].Sandbox != "/var/run/netns/web" || r.Interfaces[0].Mtu != 1370 {
		t.Errorf("ADD interfaces = %v, want eth0 in /var/run/netns/web with MTU 1370", r.Interfaces)
	}
	if len(r.IPs) != 1 || r.IPs[0].Address.String() != "10.40.0.2/24" || r.IPs[0].Interface == nil || *r.IPs[0].Interface != 0 {
		t.Errorf("ADD ips = %v, want 10.40.0.2/24 on interface 0", r.IPs)
	}
	if len(r.Routes) != 1 || r.Routes[0].Dst.String() != "10.40.0.0/24" || r.Routes[0].GW != nil {
		t.Errorf("ADD routes = %v, want 10.40.0.0/24 through the interface", r.Routes)
	}
	if !slices.Equal(r.DNS.Nameservers, []string{"10.40.0.1"}) || !slices.Equal(r.DNS.Search, []string{"blue.overlay"}) {
		t.Errorf("ADD dns = %+v, want nameserver 10.40.0.1, search blue.overlay", r.DNS)
	}
	e, ok := f.endpoint("web-1")
	if !ok || e.Netns != "/var/run/netns/web" {
		t.Fatalf("after ADD the daemon has %v, want endpoint web-1 (the pod's name as a label) in /var/run/netns/web", f.names())
	}
	if n := f.records(t); n != 1 {
		t.Fatalf("after ADD %d records, want 1", n)
	}

	del := add
	del.cmd, del.netns = "DEL", ""
	for i := range 2 {
		if out, ok := runPlugin(t, del, conf); !ok {
			t.Fatalf("DEL %d failed: %s", i+1, out)
		}
		if len(f.names()) != 0 || f.records(t) != 0 {
			t.Fatalf("after DEL %d the daemon has %v and %d records, want none", i+1, f.names(), f.records(t))
		}
	}
	if out, ok := runPlugin(t, call{cmd: "DEL", containerID: "never-added", ifname: "eth0"}, conf); !ok {
		t.Fatalf("DEL of a container never added failed: %s", out)
	}
	if len(f.detaches) != 1 {
		t.Errorf("the daemon was asked %d detaches (%v), want 1", len(f.detaches), f.detaches)
	}
}

func parseResult(t *testing.T, ver, out string) *types100.Result {
	t.Helper()
	var raw map[string]any
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatalf("ADD printed %q: %v", out, err)
	}
	if raw["cniVersion"] != ver {
		t.Fatalf("ADD result has cniVersion %v, want %s", raw["cniVersion"], ver)
	}
	res, err := version.NewResult(ver, []byte(out))
	if err != nil {
		t.Fatalf("ADD result %s does not parse as a %s result: %v", out, ver, err)
	}
	r, err := types100.NewResultFromResult(res)
	if err != nil {
		t.Fatalf("ADD result %s: %v", out, err)
	}
	return r
}

// The result is in the configuration's version, for each one the plugin
// supports.
func TestAddVersions(t *testing.T) {
	f := startFake(t)
	for i, ver := range supported.SupportedVersions() {
		out, ok := runPlugin(t, call{cmd: "ADD", containerID: fmt.Sprintf("c%d", i), netns: fmt.Sprintf("/var/run/netns/v%d", i), ifname: "eth0"}, f.conf(t, ver))
		if !ok {
			t.Fatalf("ADD with cniVersion %s failed: %s", ver, out)
		}
		r := parseResult(t, ver, out)
		if len(r.IPs) != 1 || !fakeNet.Contains(netip.MustParseAddr(r.IPs[0].Address.IP.String())) {
			t.Errorf("cniVersion %s: ips %v, want one address in %s", ver, r.IPs, fakeNet)
		}
	}
	// The name is the container ID where no pod is named.
	if _, ok := f.endpoint("c0"); !ok {
		t.Errorf("the daemon has %v, want endpoint c0 (the short container ID)", f.names())
	}
}

// A repeated ADD answers the same endpoint; a pod whose name another
// namespace holds gets the name's fallback.
func TestAddNames(t *testing.T) {
	f := startFake(t)
	conf := f.conf(t, "1.1.0")
	a := call{cmd: "ADD", containerID: "aaaa", netns: "/var/run/netns/a", ifname: "eth0", args: "K8S_POD_NAME=web;K8S_POD_NAMESPACE=one"}
	out1, ok := runPlugin(t, a, conf)
	if !ok {
		t.Fatal(out1)
	}
	out2, ok := runPlugin(t, a, conf)
	if !ok || out2 != out1 {
		t.Fatalf("ADD repeated answered %s, want %s again", out2, out1)
	}
	b := call{cmd: "ADD", containerID: "bbbb", netns: "/var/run/netns/b", ifname: "eth0", args: "K8S_POD_NAME=web;K8S_POD_NAMESPACE=two"}
	if out, ok := runPlugin(t, b, conf); !ok {
		t.Fatalf("ADD of a second pod named web failed: %s", out)
	}
	want := fallbackName("web", "bbbb", "eth0")
	if got := f.names(); !slices.Equal(got, []string{"web", want}) {
		t.Fatalf("endpoints %v, want web and %s", got, want)
	}
	// DEL of the first leaves the second alone, and the reverse.
	a.cmd, b.cmd = "DEL", "DEL"
	if out, ok := runPlugin(t, a, conf); !ok {
		t.Fatal(out)
	}
	if got := f.names(); !slices.Equal(got, []string{want}) {
		t.Fatalf("after DEL of the first, endpoints %v, want %s", got, want)
	}
	if out, ok := runPlugin(t, b, conf); !ok || len(f.names()) != 0 {
		t.Fatalf("DEL of the second: %s, endpoints %v", out, f.names())
	}
}

// An address is asked for through the ips capability or CNI_ARGS IP.
func TestAddRequestedIP(t *testing.T) {
	f := startFake(t)
	out, ok := runPlugin(t, call{cmd: "ADD", containerID: "c1", netns: "/n/1", ifname: "eth0"}, f.conf(t, "1.0.0", `"capabilities":{"ips":true}`, `"runtimeConfig":{"ips":["10.40.0.77/24"]}`))
	if !ok || parseResult(t, "1.0.0", out).IPs[0].Address.String() != "10.40.0.77/24" {
		t.Fatalf("ADD with runtimeConfig.ips 10.40.0.77/24: %s", out)
	}
	out, ok = runPlugin(t, call{cmd: "ADD", containerID: "c2", netns: "/n/2", ifname: "eth0", args: "IP=10.40.0.78"}, f.conf(t, "1.0.0"))
	if !ok || parseResult(t, "1.0.0", out).IPs[0].Address.String() != "10.40.0.78/24" {
		t.Fatalf("ADD with CNI_ARGS IP=10.40.0.78: %s", out)
	}
	for _, tc := range []struct {
		what, args string
		extra      []string
		code       uint
		msg        string
	}{
		{"two addresses", "", []string{`"runtimeConfig":{"ips":["10.40.0.5","10.40.0.6"]}`}, types.ErrInvalidNetworkConfig, "of one family"},
		{"three addresses", "IP=10.40.0.5,fd00::1,fd00::2", nil, types.ErrInvalidNetworkConfig, "asks for 3 addresses"},
		{"not an address", "", []string{`"args":{"cni":{"ips":["ten"]}}`}, types.ErrInvalidNetworkConfig, "not an IP address"},
		{"outside the network", "IP=192.0.2.1", nil, types.ErrInvalidNetworkConfig, "not in network blue"},
		{"in use", "IP=10.40.0.77", nil, types.ErrInvalidNetworkConfig, "in use"},
	} {
		out, ok := runPlugin(t, call{cmd: "ADD", containerID: "bad", netns: "/n/bad", ifname: "eth0", args: tc.args}, f.conf(t, "1.0.0", tc.extra...))
		if e := cniError(t, "ADD "+tc.what, out, ok, tc.code); !strings.Contains(e.Msg, tc.msg) {
			t.Errorf("ADD %s: %q, want it to say %q", tc.what, e.Msg, tc.msg)
		}
	}
	if n := f.records(t); n != 2 {
		t.Errorf("%d records after two ADDs and five refused, want 2 (a refused ADD leaves none)", n)
	}
}

// A daemon's refusal is a CNI error carrying its sentence.
func TestAddRefused(t *testing.T) {
	f := startFake(t)
	for _, tc := range []struct {
		err  error
		code uint
	}{
		{fault.Invalid("netns /n/x is not a network namespace"), types.ErrInvalidNetworkConfig},
		{fault.Unavailable("network blue has no address for this node yet"), types.ErrTryAgainLater},
		{errors.New("device: out of memory"), types.ErrInternal},
	} {
		f.mu.Lock()
		f.refuse = tc.err
		f.mu.Unlock()
		out, ok := runPlugin(t, call{cmd: "ADD", containerID: "x", netns: "/n/x", ifname: "eth0"}, f.conf(t, "1.0.0"))
		e := cniError(t, "ADD refused", out, ok, tc.code)
		if !strings.Contains(e.Msg, tc.err.Error()) || !strings.HasPrefix(e.Msg, "overlayd-cni: attach x to network blue: ") {
			t.Errorf("ADD refused with %q: %q, want it to name the attach and carry the daemon's sentence", tc.err, e.Msg)
		}
	}
	if n := f.records(t); n != 0 {
		t.Errorf("%d records after refused ADDs, want none", n)
	}
	// A network the cluster does not have.
	f.mu.Lock()
	f.refuse = nil
	f.mu.Unlock()
	out, ok := runPlugin(t, call{cmd: "ADD", containerID: "x", netns: "/n/x", ifname: "eth0"}, f.conf(t, "1.0.0", `"network":"red"`))
	if e := cniError(t, "ADD to network red", out, ok, types.ErrInvalidNetworkConfig); !strings.Contains(e.Msg, "no network red") {
		t.Errorf("ADD to network red: %q", e.Msg)
	}
}

// Malformed stdin and env get a CNI error with the spec's code, never a
// panic or a hang.
func TestMalformed(t *testing.T) {
	f := startFake(t)
	good := call{cmd: "ADD", containerID: "c", netns: "/n/c", ifname: "eth0"}
	for _, tc := range []struct {
		what string
		c    call
		conf string
		code uint
	}{
		{"stdin not JSON", good, `{"cniVersion":`, types.ErrDecodingFailure},
		{"stdin empty", good, ``, types.ErrDecodingFailure},
		{"stdin an array", good, `[1,2]`, types.ErrDecodingFailure},
		{"no name", good, `{"cniVersion":"1.0.0","type":"overlayd-cni"}`, types.ErrInvalidNetworkConfig},
		{"unknown key", good, f.conf(t, "1.0.0", `"netwrok":"blue"`), types.ErrInvalidNetworkConfig},
		{"network a number", good, f.conf(t, "1.0.0", `"network":5`), types.ErrInvalidNetworkConfig},
		{"control relative", good, `{"cniVersion":"1.0.0","name":"blue","type":"overlayd-cni","control":"ctl.sock"}`, types.ErrInvalidNetworkConfig},
		{"host-local ipam", good, f.conf(t, "1.0.0", `"ipam":{"type":"host-local"}`), types.ErrInvalidNetworkConfig},
		{"unsupported cniVersion", good, f.conf(t, "9.9.9"), types.ErrIncompatibleCNIVersion},
		{"unknown CNI_COMMAND", call{cmd: "BOGUS"}, f.conf(t, "1.0.0"), types.ErrInvalidEnvironmentVariables},
		{"no CNI_NETNS", call{cmd: "ADD", containerID: "c", ifname: "eth0"}, f.conf(t, "1.0.0"), types.ErrInvalidEnvironmentVariables},
		{"bad CNI_CONTAINERID", call{cmd: "ADD", containerID: "../x", netns: "/n/c", ifname: "eth0"}, f.conf(t, "1.0.0"), types.ErrInvalidEnvironmentVariables},
		{"the plugin's own namespace", call{cmd: "ADD", containerID: "c", netns: "/proc/self/ns/net", ifname: "eth0"}, f.conf(t, "1.0.0"), types.ErrInvalidNetNS},
		{"a name that is a path", good, `{"cniVersion":"1.0.0","name":"../x","type":"overlayd-cni"}`, types.ErrInvalidNetworkConfig},
		{"bad CNI_ARGS", call{cmd: "ADD", containerID: "c", netns: "/n/c", ifname: "eth0", args: "K8S_POD_NAME"}, f.conf(t, "1.0.0"), types.ErrInvalidEnvironmentVariables},
		{"CHECK of a 0.3.1 config", call{cmd: "CHECK", containerID: "c", netns: "/n/c", ifname: "eth0"}, f.conf(t, "0.3.1"), types.ErrIncompatibleCNIVersion},
		{"STATUS of a 1.0.0 config", call{cmd: "STATUS"}, f.conf(t, "1.0.0"), types.ErrIncompatibleCNIVersion},
		{"CHECK with a bad prevResult", call{cmd: "CHECK", containerID: "c", netns: "/n/c", ifname: "eth0"}, f.conf(t, "1.0.0", `"prevResult":{"ips":"x"}`), types.ErrDecodingFailure},
	} {
		out, ok := runPlugin(t, tc.c, tc.conf)
		e := cniError(t, tc.what, out, ok, tc.code)
		t.Logf("%s: %d %s", tc.what, e.Code, e.Msg)
	}
	if n := len(f.names()); n != 0 {
		t.Errorf("malformed requests attached %d endpoints", n)
	}
}

// With the daemon down every command fails at once with a CNI error
// (STATUS with 50), and DEL succeeds when the namespace is gone.
func TestDaemonDown(t *testing.T) {
	dir := t.TempDir()
	conf := fmt.Sprintf(`{"cniVersion":"1.1.0","name":"blue","type":"overlayd-cni","control":%q,"dataDir":%q}`, filepath.Join(dir, "none.sock"), filepath.Join(dir, "data"))
	start := time.Now()
	out, ok := runPlugin(t, call{cmd: "ADD", containerID: "c", netns: "/n/c", ifname: "eth0"}, conf)
	e := cniError(t, "ADD with the daemon down", out, ok, types.ErrTryAgainLater)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("ADD with the daemon down took %v", took)
	}
	if !strings.Contains(e.Msg, "no overlayd answers at "+filepath.Join(dir, "none.sock")) {
		t.Errorf("ADD with the daemon down: %q", e.Msg)
	}
	out, ok = runPlugin(t, call{cmd: "STATUS"}, conf)
	cniError(t, "STATUS with the daemon down", out, ok, types.ErrPluginNotAvailable)
	out, ok = runPlugin(t, call{cmd: "CHECK", containerID: "c", netns: "/n/c", ifname: "eth0"}, conf)
	cniError(t, "CHECK of an unknown container", out, ok, types.ErrInternal)

	// Records of two attachments: one whose namespace is gone, one whose
	// namespace is there (this process's).
	st, err := openStore(filepath.Join(dir, "data"), "blue")
	if err != nil {
		t.Fatal(err)
	}
	st.put(record{ContainerID: "gone", IfName: "eth0", Network: "blue", Name: "gone", Netns: filepath.Join(dir, "no-netns")})
	st.put(record{ContainerID: "here", IfName: "eth0", Network: "blue", Name: "here", Netns: "/proc/self/ns/net"})
	st.Close()
	if out, ok := runPlugin(t, call{cmd: "DEL", containerID: "gone", ifname: "eth0"}, conf); !ok {
		t.Errorf("DEL with the daemon down and the namespace gone failed: %s", out)
	}
	out, ok = runPlugin(t, call{cmd: "DEL", containerID: "here", ifname: "eth0"}, conf)
	if e := cniError(t, "DEL with the daemon down and the namespace there", out, ok, types.ErrTryAgainLater); !strings.Contains(e.Msg, "start overlayd and DEL again") {
		t.Errorf("DEL with the daemon down: %q", e.Msg)
	}
	if es, _ := filepath.Glob(filepath.Join(dir, "data", "blue", "*.json")); len(es) != 1 {
		t.Errorf("%d records left, want 1 (the one DEL could not release)", len(es))
	}
}

// A daemon that accepts and never answers costs the plugin its timeout,
// then a CNI error.
func TestDaemonHangs(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "hang.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	var out bytes.Buffer
	p := &plugin{stdout: &out, netnsGone: netnsGone, attachTimeout: 300 * time.Millisecond, requestTimeout: 300 * time.Millisecond}
	conf := fmt.Sprintf(`{"cniVersion":"1.1.0","name":"blue","type":"overlayd-cni","control":%q,"dataDir":%q}`, sock, filepath.Join(t.TempDir(), "data"))
	args := &skel.CmdArgs{ContainerID: "c", Netns: "/n/c", IfName: "eth0", StdinData: []byte(conf)}
	for name, f := range map[string]func(*skel.CmdArgs) error{"ADD": p.add, "STATUS": p.status} {
		start := time.Now()
		err := f(args)
		took := time.Since(start)
		var e *types.Error
		if !errors.As(err, &e) || e.Code != types.ErrTryAgainLater && e.Code != types.ErrPluginNotAvailable {
			t.Errorf("%s against a hung daemon: %v, want a CNI error 11 or 50", name, err)
		}
		if took > 3*time.Second {
			t.Errorf("%s against a hung daemon took %v, want about its 300 ms timeout", name, took)
		}
		t.Logf("%s against a hung daemon: %v after %v", name, err, took.Round(time.Millisecond))
	}
}

func TestStatus(t *testing.T) {
	f := startFake(t)
	if out, ok := runPlugin(t, call{cmd: "STATUS"}, f.conf(t, "1.1.0")); !ok {
		t.Fatalf("STATUS with the network joined failed: %s", out)
	}
	out, ok := runPlugin(t, call{cmd: "STATUS"}, f.conf(t, "1.1.0", `"network":"red"`))
	if e := cniError(t, "STATUS of an unknown network", out, ok, types.ErrPluginNotAvailable); !strings.Contains(e.Msg, "overlayd network create red") {
		t.Errorf("STATUS of an unknown network: %q", e.Msg)
	}
	f.mu.Lock()
	f.joined = false
	f.mu.Unlock()
	out, ok = runPlugin(t, call{cmd: "STATUS"}, f.conf(t, "1.1.0"))
	if e := cniError(t, "STATUS with the network not joined", out, ok, types.ErrPluginNotAvailable); !strings.Contains(e.Msg, "overlayd network join blue") {
		t.Errorf("STATUS with the network not joined: %q", e.Msg)
	}
}

// CHECK holds while the endpoint is as ADD left it, and says what is
// wrong when it is not. The namespace is the fake's (checkLink stood in
// for); TestCheckLink checks a real one.
func TestCheck(t *testing.T) {
	f := startFake(t)
	linkErr := error(nil)
	var out bytes.Buffer
	p := &plugin{
		stdout:         &out,
		checkLink:      func(netns, ifname string, addrs []netip.Prefix) error { return linkErr },
		netnsGone:      netnsGone,
		attachTimeout:  time.Second,
		requestTimeout: time.Second,
	}
	conf := f.conf(t, "1.0.0")
	args := &skel.CmdArgs{ContainerID: "c", Netns: "/n/c", IfName: "eth0", StdinData: []byte(conf)}
	if err := p.add(args); err != nil {
		t.Fatal(err)
	}
	prev := out.String()
	checkArgs := *args
	checkArgs.StdinData = []byte(strings.TrimSuffix(conf, "}") + `,"prevResult":` + prev + "}")
	if err := p.check(&checkArgs); err != nil {
		t.Fatalf("CHECK after ADD: %v", err)
	}
	if err := p.check(args); err != nil {
		t.Fatalf("CHECK without a prevResult: %v", err)
	}
	wrongPrev := strings.Replace(prev, "10.40.0.2/24", "10.40.0.9/24", 1)
	bad := *args
	bad.StdinData = []byte(strings.TrimSuffix(conf, "}") + `,"prevResult":` + wrongPrev + "}")
	wantCheckErr(t, "CHECK with another address in prevResult", p.check(&bad), "the previous result gave eth0 in /n/c the address 10.40.0.9/24")

	linkErr = errors.New("interface eth0 is gone from /n/c")
	wantCheckErr(t, "CHECK with the interface gone", p.check(args), "interface eth0 is gone from /n/c")
	linkErr = nil

	f.Detach(t.Context(), "c")
	wantCheckErr(t, "CHECK with the endpoint detached", p.check(args), "endpoint c of container c is no longer attached")

	other := *args
	other.ContainerID = "other"
	wantCheckErr(t, "CHECK of a container never added", p.check(&other), "no attachment of container other")
}

func wantCheckErr(t *testing.T, what string, err error, msg string) {
	t.Helper()
	var e *types.Error
	if !errors.As(err, &e) || e.Code != types.ErrInternal || !strings.Contains(e.Msg, msg) {
		t.Errorf("%s: %v, want a CNI error saying %q", what, err, msg)
	}
}

// GC releases the endpoints of attachments not among the valid ones, and
// only those.
func TestGC(t *testing.T) {
	f := startFake(t)
	for _, id := range []string{"keep", "drop1", "drop2"} {
		if out, ok := runPlugin(t, call{cmd: "ADD", containerID: id, netns: "/n/" + id, ifname: "eth0"}, f.conf(t, "1.1.0")); !ok {
			t.Fatal(out)
		}
	}
	// An endpoint the plugin did not make is not its to collect.
	f.Attach(t.Context(), apiAttach("manual", "/n/manual"))
	out, ok := runPlugin(t, call{cmd: "GC"}, f.conf(t, "1.1.0", `"cni.dev/valid-attachments":[{"containerID":"keep","ifname":"eth0"},{"containerID":"drop1","ifname":"eth1"}]`))
	if !ok {
		t.Fatalf("GC failed: %s", out)
	}
	if got := f.names(); !slices.Equal(got, []string{"keep", "manual"}) {
		t.Errorf("after GC endpoints %v, want keep and manual", got)
	}
	if n := f.records(t); n != 1 {
		t.Errorf("after GC %d records, want 1", n)
	}
}

func TestEndpointName(t *testing.T) {
	for _, tc := range []struct{ pod, id, want string }{
		{"web", "0123456789abcdef", "web"},
		{"Web.Frontend_1", "x", "web-frontend-1"},
		{"", "0123456789ABCDEF", "0123456789ab"},
		{"", "cnitool-6d1f2f1c88b1b1f1a1f0", "cnitool-6d1f"},
		{"---", "_x_", "x"},
		{strings.Repeat("a", 80), "x", strings.Repeat("a", 63)},
		{"", "___", "c-" + shortHash("___", "")},
	} {
		if got := endpointName(tc.pod, tc.id); got != tc.want {
			t.Errorf("endpointName(%q, %q) = %q, want %q", tc.pod, tc.id, got, tc.want)
		}
	}
	if got := fallbackName(strings.Repeat("a", 63), "id", "eth0"); len(got) != 63 || !strings.HasSuffix(got, "-"+shortHash("id", "eth0")) {
		t.Errorf("fallbackName of a 63-byte name = %q (%d bytes), want 63 bytes ending in its hash", got, len(got))
	}
}

// On a dual-stack network the CNI result lists both addresses, each on
// interface 0, a route to each CIDR (and both default routes when asked)
// and both DNS addresses; cniVersion 1.0.0 holds them (IPConfig has no
// version field since 0.3.0).
func TestResultDualStack(t *testing.T) {
	e := api.EndpointInfo{Name: "c1", Addr: "10.40.0.2/24", Addrs: []string{"10.40.0.2/24", "fd00:40::2/64"}, MTU: 1450,
		Routes: []string{"10.40.0.0/24", "fd00:40::/64", "0.0.0.0/0", "::/0"}, DNS: "10.40.0.1", DNSAddrs: []string{"10.40.0.1", "fd00:40::1"}, Search: "blue.overlay"}
	r, err := result(e, "/n/1", "eth0")
	if err != nil {
		t.Fatal(err)
	}
	var ips, routes []string
	for _, ip := range r.IPs {
		ips = append(ips, fmt.Sprintf("%s@%d", ip.Address.String(), *ip.Interface))
	}
	for _, rt := range r.Routes {
		routes = append(routes, rt.Dst.String())
	}
	if got := fmt.Sprint(ips, routes, r.DNS.Nameservers); got != "[10.40.0.2/24@0 fd00:40::2/64@0] [10.40.0.0/24 fd00:40::/64 0.0.0.0/0 ::/0] [10.40.0.1 fd00:40::1]" {
		t.Errorf("result = %s", got)
	}
	v1, err := r.GetAsVersion("1.0.0")
	if err != nil {
		t.Fatalf("the dual-stack result as CNI 1.0.0: %v", err)
	}
	if err := v1.PrintTo(io.Discard); err != nil || v1.Version() != "1.0.0" {
		t.Errorf("the dual-stack result does not print as CNI 1.0.0: %v", err)
	}
	e.Addrs = []string{"10.40.0.2/24", "::ffff:10.40.0.3/120"}
	if _, err := result(e, "/n/1", "eth0"); err == nil {
		t.Error("an IPv4-mapped address was put in the result")
	}
}
