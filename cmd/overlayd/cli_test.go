package main

import (
	"encoding/base64"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/gossip"
)

// The help texts say what the commands do, in the synopses' own words.
func TestHelpTexts(t *testing.T) {
	code, o, e := run(t, "apply", "--help")
	if code != 0 || !strings.Contains(o, "\n  -f file\n        the YAML file to apply (required)\n") || strings.Contains(o, "--f ") {
		t.Errorf("apply --help = %d, want -f written as the synopsis writes it (-f FILE):\n%s%s", code, o, e)
	}
	for _, args := range [][]string{{"help", "--help"}, {"help", "-h"}, {"help", "help"}} {
		if code, o, e := run(t, args...); code != 0 || o != mainUsage || e != "" {
			t.Errorf("overlayd %q = %d, want the overview on stdout and exit 0:\n%s%s", args, code, o, e)
		}
	}
	if code, o, _ := run(t, "version", "--help"); code != 0 || o != "Usage: overlayd version\n\nPrint overlayd's version.\n" {
		t.Errorf("version --help = %d %q, want no empty Flags: section", code, o)
	}
	if code, o, _ := run(t, "routes", "--help"); code != 0 || strings.Contains(o, "with --json, each network's state digest") ||
		!strings.Contains(o, "and each joined network's state digest (equal on nodes that have converged); --json prints the same as JSON.") {
		t.Errorf("routes --help = %d, want the digest described as printed in both forms:\n%s", code, o)
	}
	if code, o, _ := run(t, "run", "--help"); code != 0 || !strings.Contains(o, "the list flags (--peer,\n--join, --forward, --expose, --dns-upstream) add to the file's lists.") {
		t.Errorf("run --help = %d, want the list flags' merging described:\n%s", code, o)
	}
	for _, cmd := range []string{"run", "status", "network"} {
		if code, o, _ := run(t, cmd, "--help"); code != 0 || !strings.Contains(o, "(env OVERLAYD_CONTROL; else /run/overlayd/overlayd.sock as root, $XDG_RUNTIME_DIR/overlayd.sock, or /tmp/overlayd-UID.sock)") {
			t.Errorf("%s --help = %d, want the control socket's defaults, /tmp/overlayd-UID.sock too:\n%s", cmd, code, o)
		}
	}
}

// A mistake exits 2 wherever it is found: in the arguments before the
// daemon is asked (even with none running), in a configuration file that
// does not parse or does not validate, or by the daemon (a 400).
func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		args      []string
		code      int
		inStderr  string
		notStderr string
	}{
		{[]string{"network", "create", "red", "notacidr", "--control", "/nonexistent/ctl.sock"}, 2,
			`CIDR "notacidr" is not a prefix such as 10.10.0.0/16 or fd00:10::/64`, "no overlayd is running"},
		{[]string{"network", "create", "red", "fd00::/64", "--control", "/nonexistent/ctl.sock"}, 1, "no overlayd is running", ""},
		{[]string{"network", "create", "red", "--cidr", "10.9.0.0/16", "--cidr", "fd00:9::/64", "--control", "/nonexistent/ctl.sock"}, 1, "no overlayd is running", ""},
		{[]string{"network", "create", "red", "10.9.0.0/16", "--cidr", "10.8.0.0/16", "--control", "/nonexistent/ctl.sock"}, 2, "are of one family", ""},
		{[]string{"network", "create", "red", "fd00::/32", "--control", "/nonexistent/ctl.sock"}, 2, "IPv6 CIDR fd00::/32 must be between /48 and /122", ""},
		{[]string{"network", "create", "red", "--control", "/nonexistent/ctl.sock"}, 2, "want: overlayd network create NAME CIDR", ""},
		{[]string{"network", "join", "red", "--cidr", "10.9.0.0/16", "--control", "/nonexistent/ctl.sock"}, 2, "--cidr is for network create", ""},
		{[]string{"network", "create", "red", "10.9.0.0/16", "--control", "/nonexistent/ctl.sock"}, 1, "no overlayd is running", ""},
		{[]string{"network", "create", "red!", "10.9.0.0/16", "--control", "/nonexistent/ctl.sock"}, 2, `network name "red!" is not valid`, "no overlayd is running"},
		{[]string{"network", "join", "r/e/d", "--control", "/nonexistent/ctl.sock"}, 2, `network name "r/e/d" is not valid`, "no overlayd is running"},
		{[]string{"network", "leave", "red", "--control", "/nonexistent/ctl.sock"}, 1, "no overlayd is running", ""},
		{[]string{"run", "--check", "--config", write("parse.yaml", "addr: [\n")}, 2, "parse.yaml: config: line", ""},
		{[]string{"run", "--check", "--config", write("unknown.yaml", "adr: 10.1.1.1/16\n")}, 2, `line 1: unknown key "adr"`, ""},
		{[]string{"run", "--check", "--config", write("invalid.yaml", "addr: 10.1.1.1/16\nmode: kernel\n")}, 2, `line 2: mode: "kernel" is not one of`, ""},
		{[]string{"run", "--check", "--config", filepath.Join(dir, "missing.yaml")}, 2, "no such file", ""},
		// mDNS announces on the gossip address's interface: loopback cannot multicast.
		{[]string{"run", "--check", "--gossip", "127.0.0.1:7946", "--listen", "127.0.0.1:4789", "--discover", "mdns"}, 2, "cannot multicast", ""},
	}
	for _, tt := range tests {
		code, _, e := run(t, tt.args...)
		if code != tt.code || !strings.Contains(e, tt.inStderr) || (tt.notStderr != "" && strings.Contains(e, tt.notStderr)) {
			t.Errorf("overlayd %q = %d\nstderr: %s\nwant %d, stderr containing %q and not %q", tt.args, code, e, tt.code, tt.inStderr, tt.notStderr)
		}
	}
}

// run --check reads the gossip key file and the state directory as the
// start does, and fails with the start's own message.
func TestRunCheckReadsFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key32 := write("good.key", []byte(base64.StdEncoding.EncodeToString(make([]byte, 32))+"\n"))
	gossipRun := []string{"run", "--check", "--mode", "netstack", "--listen", "127.0.0.1:0", "--gossip", "127.0.0.1:0",
		"--control", filepath.Join(dir, "ctl.sock")}
	for _, tt := range []struct {
		name string
		key  string
	}{
		{"missing", filepath.Join(dir, "missing.key")},
		{"not base64", write("text.key", []byte("not base64!\n"))},
		{"16 bytes", write("short.key", []byte(base64.StdEncoding.EncodeToString(make([]byte, 16))+"\n"))},
		{"empty", write("empty.key", []byte("# no key\n"))},
	} {
		_, startErr := gossip.LoadKeyFile(tt.key) // what the start reports
		if startErr == nil {
			t.Fatalf("%s: the key file loads", tt.name)
		}
		code, o, e := run(t, append(gossipRun, "--gossip-key-file", tt.key)...)
		if code != 2 || !strings.Contains(e, startErr.Error()) || strings.Contains(o, "valid") {
			t.Errorf("%s key: run --check = %d\nstdout: %s\nstderr: %s\nwant 2 and the start's message %q", tt.name, code, o, e, startErr)
		}
	}
	if code, o, e := run(t, append(gossipRun, "--gossip-key-file", key32)...); code != 0 || o != "configuration is valid\n" {
		t.Errorf("good key: run --check = %d\n%s%s", code, o, e)
	}

	file := write("a-file", []byte("x"))
	open := filepath.Join(dir, "open")
	if err := os.MkdirAll(open, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil { // past the umask
		t.Fatal(err)
	}
	for _, tt := range []struct {
		stateDir string
		inStderr string
	}{
		{file, "node: state directory " + file + ": not a directory"},
		{filepath.Join(file, "sub"), "cannot be created: " + file + " is not a directory"},
		{open, "node: state directory " + open + " is writable by every user (mode 0777)"},
	} {
		code, o, e := run(t, append(gossipRun, "--state-dir", tt.stateDir)...)
		if code != 2 || !strings.Contains(e, tt.inStderr) {
			t.Errorf("--state-dir %s: run --check = %d\nstdout: %s\nstderr: %s\nwant 2 and %q", tt.stateDir, code, o, e, tt.inStderr)
		}
	}
	// State files the start cannot use: it moves them aside and recovers
	// (it does not stop), so --check warns and passes, touching nothing.
	corruptDir := filepath.Join(dir, "corrupt")
	if err := os.MkdirAll(corruptDir, 0o700); err != nil {
		t.Fatal(err)
	}
	write("corrupt/networks.json", []byte("{not json"))
	write("corrupt/ipam-blue.state", []byte("garbage"))
	code, o, e := run(t, append(gossipRun, "--state-dir", corruptDir)...)
	for _, f := range []string{"networks.json", "ipam-blue.state"} {
		path := filepath.Join(corruptDir, f)
		if code != 0 || !strings.Contains(e, "overlayd run: warning: state file "+path+" cannot be used (") || !strings.Contains(o, "configuration is valid") {
			t.Errorf("corrupt %s: run --check = %d\nstdout: %s\nstderr: %s\nwant 0 and a warning naming it", f, code, o, e)
		}
		if _, err := os.Stat(path); err != nil {
			t.Errorf("run --check moved or removed %s: %v", path, err)
		}
	}
	// A state directory that does not exist yet is made at start.
	if code, o, e := run(t, append(gossipRun, "--state-dir", filepath.Join(dir, "new", "state"))...); code != 0 {
		t.Errorf("new state dir: run --check = %d\n%s%s", code, o, e)
	}
	if _, err := os.Stat(filepath.Join(dir, "new")); err == nil {
		t.Errorf("run --check created the state directory; it must leave no trace")
	}
	// Peers must be told a VTEP they can send to.
	code, _, e = run(t, "run", "--check", "--mode", "netstack", "--gossip", "0.0.0.0:7946", "--control", "")
	if code != 2 || !strings.Contains(e, "has no IP peers could send to") {
		t.Errorf("unspecified VTEP: run --check = %d\n%s", code, e)
	}
}

// The list flags add to the configuration file's lists (one given in both
// counts once); the other flags replace the file's value.
func TestListFlagsMerge(t *testing.T) {
	f := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(f, []byte(`addr: 10.200.1.1/16
peers: [10.200.2.0/24@192.0.2.2:4789]
gossip:
  listen: 127.0.0.1:7946
  join: [192.0.2.9:7946]
dns:
  upstreams: [192.0.2.53]
doors:
  forwards:
    - {listen: 127.0.0.1:8080, target: 10.200.2.1:80}
exposes:
  - {service: web, port: 80/tcp, target: 127.0.0.1:3000}
name: file
`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(f)
	if err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	apply, _, _ := runFlags(fs)
	if err := fs.Parse([]string{
		"--forward", "127.0.0.1:8081=10.200.2.1:81", "--forward", "127.0.0.1:8080=10.200.2.1:80",
		"--peer", "10.200.3.0/24@192.0.2.3:4789", "--expose", "api:90/tcp=127.0.0.1:4000",
		"--join", "192.0.2.8:7946,192.0.2.9:7946", "--join", "192.0.2.7", "--dns-upstream", "192.0.2.54", "--name", "flag",
	}); err != nil {
		t.Fatal(err)
	}
	if err := apply(&cfg); err != nil {
		t.Fatal(err)
	}
	str := func(xs []string) string { return strings.Join(xs, " ") }
	var forwards, peers, exposes []string
	for _, x := range cfg.Doors.Forwards {
		forwards = append(forwards, x.String())
	}
	for _, x := range cfg.Peers {
		peers = append(peers, x.String())
	}
	for _, x := range cfg.Exposes {
		exposes = append(exposes, x.String())
	}
	for _, c := range []struct{ what, got, want string }{
		{"doors.forwards", str(forwards), "127.0.0.1:8080=10.200.2.1:80 127.0.0.1:8081=10.200.2.1:81"},
		{"peers", str(peers), "10.200.2.0/24@192.0.2.2:4789 10.200.3.0/24@192.0.2.3:4789"},
		{"exposes", str(exposes), "web:80/tcp=127.0.0.1:3000 api:90/tcp=127.0.0.1:4000"},
		{"gossip.join", str(cfg.Gossip.Join), "192.0.2.9:7946 192.0.2.8:7946 192.0.2.7"},
		{"dns.upstreams", str(cfg.DNS.Upstreams), "192.0.2.53 192.0.2.54"},
		{"name", cfg.Name, "flag"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
		}
	}
	if !slices.ContainsFunc(cfg.Doors.Forwards, func(x config.Forward) bool { return x.Listen == "127.0.0.1:8080" }) {
		t.Errorf("the file's forward was dropped")
	}
}

// The demo's commands to try name the program as the user ran it.
func TestInvokedAs(t *testing.T) {
	for argv0, want := range map[string]string{
		"./bin/overlayd":                      "./bin/overlayd",
		"/usr/local/bin/overlayd":             "/usr/local/bin/overlayd",
		"overlayd":                            "overlayd",
		"/tmp/go-build1234/b001/exe/overlayd": "go run ./cmd/overlayd",
		"/tmp/x/overlayd.test":                "overlayd",
	} {
		if got := invokedAs(argv0); got != want {
			t.Errorf("invokedAs(%q) = %q, want %q", argv0, got, want)
		}
	}
	if code, _, e := run(t, "run", "--metrics", "nowhere", "--addr", "10.1.1.1/16"); code != 2 || !strings.Contains(e, `--metrics: "nowhere": want IP:PORT, e.g. 127.0.0.1:9464`) {
		t.Errorf("--metrics nowhere = %d %s, want the metrics port in the example", code, e)
	}
}
