package main

// The README's examples, run as written: every overlayd command line in
// it parses (run lines pass --check, client lines reach the point of
// asking a daemon), every YAML block passes run --check, the embedding
// excerpt is the example's code and the example prints what the README
// shows, and (as root, in two network namespaces with the README's
// underlay addresses) the front-doors walk-through and the firewall of
// the security section work command for command.

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/overlayd/overlayd/e2e"
	"github.com/overlayd/overlayd/internal/testutil"
)

// mdBlock is a fenced block of README.md.
type mdBlock struct {
	lang    string // the info string: "", "yaml", "go"
	line    int    // of the opening fence
	section string // the last heading before it
	lines   []string
}

func readmeBlocks(t *testing.T) []mdBlock {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var blocks []mdBlock
	var cur *mdBlock
	indent, section := "", ""
	for i, l := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimLeft(l, " ")
		if cur == nil {
			if strings.HasPrefix(l, "#") {
				section = strings.TrimSpace(strings.TrimLeft(l, "#"))
			}
			if strings.HasPrefix(trimmed, "```") {
				indent = l[:len(l)-len(trimmed)]
				cur = &mdBlock{lang: strings.TrimPrefix(trimmed, "```"), line: i + 1, section: section}
			}
			continue
		}
		if trimmed == "```" {
			blocks = append(blocks, *cur)
			cur = nil
			continue
		}
		cur.lines = append(cur.lines, strings.TrimPrefix(l, indent))
	}
	if len(blocks) < 10 {
		t.Fatalf("README.md: found %d code blocks", len(blocks))
	}
	return blocks
}

// mdCommand is a command line of a README block: who runs it (the
// prompt's host, "" for "$ ") and what.
type mdCommand struct {
	host, cmd string
	line      int
	section   string
}

var promptRE = regexp.MustCompile(`^(?:(host [A-Z]|[a-z]+\d+)[#$]|\$) (.*)$`)

// readmeCommands returns the prompted command lines of the plain blocks (lines
// continued with a backslash joined, heredocs kept whole), without their
// trailing comments.
func readmeCommands(blocks []mdBlock) []mdCommand {
	var out []mdCommand
	for _, b := range blocks {
		if b.lang != "" {
			continue
		}
		for i := 0; i < len(b.lines); i++ {
			m := promptRE.FindStringSubmatch(b.lines[i])
			if m == nil {
				continue
			}
			c := mdCommand{host: m[1], cmd: m[2], line: b.line + 1 + i, section: b.section}
			for strings.HasSuffix(c.cmd, `\`) && i+1 < len(b.lines) {
				i++
				c.cmd = strings.TrimSuffix(c.cmd, `\`) + " " + strings.TrimSpace(b.lines[i])
			}
			if strings.Contains(c.cmd, "<<'EOF'") { // a heredoc: up to EOF
				for i+1 < len(b.lines) {
					i++
					c.cmd += "\n" + b.lines[i]
					if b.lines[i] == "EOF" {
						break
					}
				}
			} else if j := strings.Index(c.cmd, "  #"); j >= 0 {
				c.cmd = strings.TrimSpace(c.cmd[:j])
			}
			out = append(out, c)
		}
	}
	return out
}

func writeTemp(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// readmeFiles stands in for the files the README's commands name.
func readmeFiles(t *testing.T, blocks []mdBlock) map[string]string {
	key := writeTemp(t, "gossip.key", base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))+"\n")
	apply := ""
	for _, b := range blocks {
		if b.lang == "yaml" && strings.HasPrefix(strings.Join(b.lines, "\n"), "networks:") {
			apply = writeTemp(t, "overlayd.yaml", strings.Join(b.lines, "\n")+"\n")
		}
	}
	if apply == "" {
		t.Fatal("README.md has no networks/services YAML block for 'overlayd apply -f'")
	}
	return map[string]string{
		"/etc/overlayd/gossip.key":    key,
		"/var/lib/overlayd":           filepath.Join(t.TempDir(), "state"),
		"/etc/overlayd/overlayd.yaml": apply,
	}
}

// Every overlayd command line of the README parses as written: a run line
// passes --check, a client command gets as far as asking the daemon (here
// none: "no overlayd is running", exit 1, never a usage mistake).
func TestREADMECommandsParse(t *testing.T) {
	blocks := readmeBlocks(t)
	files := readmeFiles(t, blocks)
	ctl := filepath.Join(t.TempDir(), "none.sock")
	n := 0
	for _, c := range readmeCommands(blocks) {
		for _, one := range regexp.MustCompile(`;|&&`).Split(c.cmd, -1) {
			args := strings.Fields(one)
			if len(args) < 2 || (args[0] != "overlayd" && args[0] != "./bin/overlayd") ||
				strings.Contains(one, "...") || strings.Contains(one, "…") || args[1] == "demo" {
				continue
			}
			args = args[1:]
			for i, a := range args {
				if f, ok := files[a]; ok {
					args[i] = f
				}
			}
			n++
			what := fmt.Sprintf("README.md:%d (%s): %s", c.line, c.section, one)
			if args[0] == "run" {
				code, o, e := run(t, append(args, "--check", "--control", ctl)...)
				if code != 0 || o != "configuration is valid\n" {
					t.Errorf("%s\n  run --check = %d\n%s%s", what, code, o, e)
				}
				continue
			}
			code, o, e := run(t, append(args, "--control", ctl)...)
			if code == 2 || (code == 1 && !strings.Contains(e, "no overlayd is running")) {
				t.Errorf("%s\n  = %d (want a command that parses: 0, or 1 for want of a daemon)\n%s%s", what, code, o, e)
			}
		}
	}
	t.Logf("%d overlayd commands of the README parse", n)
	if n < 25 {
		t.Errorf("checked only %d overlayd commands of the README", n)
	}
}

// Every YAML block of the README passes run --check (a fragment with the
// least it needs to be a whole configuration: --gossip for networks and
// services, --addr otherwise), and the errors the README quotes are the
// ones the file's mistakes give.
func TestREADMEConfigBlocks(t *testing.T) {
	blocks := readmeBlocks(t)
	files := readmeFiles(t, blocks)
	n := 0
	var config []string
	for _, b := range blocks {
		if b.lang != "yaml" {
			continue
		}
		n++
		text := strings.Join(b.lines, "\n") + "\n"
		if strings.HasPrefix(text, "name: alpha\n") {
			config = b.lines
		}
		args := []string{"run", "--check", "--config", writeTemp(t, "block.yaml", text), "--control", filepath.Join(t.TempDir(), "ctl.sock")}
		switch {
		case strings.Contains(text, "\naddr:") || strings.HasPrefix(text, "addr:") || strings.Contains(text, "gossip:"):
		case strings.Contains(text, "networks:") || strings.Contains(text, "services:") || strings.Contains(text, "exposes:"):
			args = append(args, "--gossip", "127.0.0.1:7946")
		default:
			args = append(args, "--addr", "10.200.1.1/16")
		}
		for path := range files {
			if strings.Contains(text, path) {
				t.Fatalf("README.md:%d: the block names %s; give the test a stand-in", b.line, path)
			}
		}
		if code, o, e := run(t, args...); code != 0 || o != "configuration is valid\n" {
			t.Errorf("README.md:%d (%s): the YAML block fails run --check = %d\n%s%s\n%s", b.line, b.section, code, o, e, text)
		}
	}
	if n < 3 || config == nil {
		t.Fatalf("found %d YAML blocks (want the configuration file's, the doors', apply's)", n)
	}
	// The quoted messages, from the configuration block with one mistake.
	mutate := func(from, to string) string {
		text := strings.Join(config, "\n") + "\n"
		if !strings.Contains(text, from) {
			t.Fatalf("the configuration block has no %q", from)
		}
		return writeTemp(t, "bad.yaml", strings.Replace(text, from, to, 1))
	}
	readme, _ := os.ReadFile("../../README.md")
	flat := strings.Join(strings.Fields(string(readme)), " ")
	for _, tt := range []struct{ file, quoted string }{
		{mutate("10.200.2.0/24@192.0.2.2:4789", "10.200.2.0/24"), `config: line 7: peers[0]: peer "10.200.2.0/24": want PREFIX@IP:PORT`},
		{mutate("addr: 10.200.1.1/16", "addr: 10.200.1.1"), `config: line 4: addr: "10.200.1.1": want an address with prefix, e.g. 10.200.1.1/16`},
		{mutate("level: info", "level: loud"), `line 11: log.level: "loud" is not one of debug, info, warn, error`},
	} {
		if !strings.Contains(flat, "`"+tt.quoted) {
			t.Errorf("README.md no longer quotes %q", tt.quoted)
		}
		code, _, e := run(t, "run", "--check", "--config", tt.file)
		if code != 2 || !strings.Contains(e, tt.quoted) {
			t.Errorf("the README quotes %q; run --check gives %d:\n%s", tt.quoted, code, e)
		}
	}
}

// The README's embedding excerpt is examples/embed's code, and the
// example prints what the README says it prints.
func TestREADMEEmbedding(t *testing.T) {
	blocks := readmeBlocks(t)
	src, err := os.ReadFile("../../examples/embed/main.go")
	if err != nil {
		t.Fatal(err)
	}
	var excerpt []string
	var want string
	for i, b := range blocks {
		if b.lang == "go" && b.section == "Embedding (the Go API)" {
			excerpt = b.lines
			if i+1 < len(blocks) && len(blocks[i+1].lines) == 2 && blocks[i+1].lines[0] == "$ go run ./examples/embed" {
				want = blocks[i+1].lines[1] + "\n"
			}
		}
	}
	if excerpt == nil || want == "" {
		t.Fatal("README.md: no Go excerpt followed by '$ go run ./examples/embed' and its output in the Embedding section")
	}
	rest := string(src)
	for _, l := range excerpt {
		l = strings.TrimSpace(l)
		if l == "..." || l == "" {
			continue
		}
		i := strings.Index(rest, l)
		if i < 0 {
			t.Errorf("README's embedding excerpt line %q is not (in this order) in examples/embed/main.go", l)
			continue
		}
		rest = rest[i+len(l):]
	}
	if testing.Short() {
		t.Skip("go run builds the example")
	}
	cmd := exec.Command("go", "run", "./examples/embed")
	cmd.Dir = "../.."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || string(out) != want {
		t.Errorf("go run ./examples/embed = %v, printed %q, want %q\n%s", err, out, want, stderr.String())
	}
}

// TestREADMEHelperHTTP is not a test: it is the server on host B's overlay
// address in TestREADMEFrontDoors ("any server on the overlay address"),
// started in B's namespace as this test binary.
func TestREADMEHelperHTTP(t *testing.T) {
	addr := os.Getenv("OVERLAYD_README_HTTP")
	if addr == "" {
		t.Skip("the helper process of TestREADMEFrontDoors")
	}
	var ln net.Listener
	// The TUN's address may be a moment behind the daemon.
	testutil.Eventually(t, 10*time.Second, "listening on "+addr, func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	})
	fmt.Println("listening")
	http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s from %s\n", r.RemoteAddr, addr)
	}))
}

// The front-doors walk-through, command for command, on the README's own
// underlay addresses (192.0.2.1 and 192.0.2.2, in two network namespaces
// on a veth), with the security section's firewall on both hosts.
func TestREADMEFrontDoors(t *testing.T) {
	if testing.Short() {
		t.Skip("network namespaces; skipped in -short")
	}
	e2e.RequireRoot(t, "curl", "nft", "sh", "grep")
	blocks := readmeBlocks(t)
	var doors []mdCommand
	var firewall string
	for _, c := range readmeCommands(blocks) {
		switch {
		case c.section == "Front doors (rootless access from the host)":
			doors = append(doors, c)
		case c.section == "Security" && strings.HasPrefix(c.cmd, "nft -f - <<'EOF'"):
			firewall = c.cmd
		}
	}
	if len(doors) < 6 || firewall == "" {
		t.Fatalf("README.md: found %d front-door commands and firewall %q", len(doors), firewall)
	}

	// The hosts: A and B, 192.0.2.1 and 192.0.2.2 on a veth.
	id := fmt.Sprintf("ovrd%d", os.Getpid()%100000)
	ns := map[string]string{"host A": id + "-a", "host B": id + "-b"}
	sh := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	t.Cleanup(func() {
		for _, n := range ns {
			exec.Command("ip", "netns", "del", n).Run()
		}
	})
	sh("ip", "netns", "add", ns["host A"])
	sh("ip", "netns", "add", ns["host B"])
	sh("ip", "-n", ns["host A"], "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", ns["host B"])
	for host, ip := range map[string]string{"host A": "192.0.2.1/24", "host B": "192.0.2.2/24"} {
		sh("ip", "-n", ns[host], "link", "set", "lo", "up")
		sh("ip", "-n", ns[host], "addr", "add", ip, "dev", "eth0")
		sh("ip", "-n", ns[host], "link", "set", "eth0", "up")
	}

	// overlayd on PATH as the README calls it; a control socket each.
	bin := t.TempDir()
	if out, err := exec.Command("go", "build", "-o", filepath.Join(bin, "overlayd"), ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dir := t.TempDir()
	env := func(host string) []string {
		return append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"),
			"OVERLAYD_CONTROL="+filepath.Join(dir, strings.ReplaceAll(host, " ", "-")+".sock"))
	}
	command := func(ctx context.Context, host, line string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns[host], "sh", "-c", line)
		cmd.Env = env(host)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		return cmd
	}
	// exec1 runs one command line and returns its stdout (with its stderr
	// when it fails).
	exec1 := func(host, line string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var stderr bytes.Buffer
		cmd := command(ctx, host, line)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return string(out) + stderr.String(), err
		}
		return string(out), nil
	}
	for _, host := range []string{"host A", "host B"} {
		if out, err := exec1(host, firewall); err != nil {
			t.Fatalf("%s: the security section's firewall: %v\n%s", host, err, out)
		}
	}

	var daemons []*exec.Cmd
	t.Cleanup(func() {
		for _, d := range daemons {
			d.Process.Signal(syscall.SIGTERM)
		}
		for _, d := range daemons {
			done := make(chan struct{})
			go func() { d.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				d.Process.Kill()
				<-done
			}
		}
	})
	start := func(host string, cmd *exec.Cmd) *bytes.Buffer {
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		daemons = append(daemons, cmd)
		return &out
	}
	waitStatus := func(host string, log *bytes.Buffer) {
		t.Helper()
		if _, err := testutil.Poll(30*time.Second, func() error {
			_, err := exec1(host, "overlayd status")
			return err
		}); err != nil {
			t.Fatalf("%s: overlayd status: %v\n%s", host, err, log.String())
		}
	}
	curls := 0
	for _, c := range doors {
		what := fmt.Sprintf("README.md:%d: %s$ %s", c.line, c.host, c.cmd)
		switch {
		case strings.HasPrefix(c.cmd, "overlayd run "):
			log := start(c.host, command(context.Background(), c.host, "exec "+c.cmd))
			waitStatus(c.host, log)
		case strings.Contains(c.cmd, "http.server"): // "any server": this test's own
			m := regexp.MustCompile(`--bind (\S+) (\d+)`).FindStringSubmatch(c.cmd)
			if m == nil {
				t.Fatalf("%s: no --bind ADDR PORT", what)
			}
			self, _ := os.Executable()
			cmd := exec.Command("ip", "netns", "exec", ns[c.host], self, "-test.run=^TestREADMEHelperHTTP$", "-test.v")
			cmd.Env = append(os.Environ(), "OVERLAYD_README_HTTP="+net.JoinHostPort(m[1], m[2]))
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
			log := start(c.host, cmd)
			testutil.Eventually(t, 30*time.Second, what+": the server to listen", func() error {
				if !strings.Contains(log.String(), "listening") {
					return fmt.Errorf("its output so far:\n%s", log.String())
				}
				return nil
			})
		case strings.HasPrefix(c.cmd, "curl "):
			// The first request may meet a route or an ARP answer still
			// on its way: retry it, within a bound; the others once.
			var out string
			try := func() (err error) {
				out, err = exec1(c.host, c.cmd)
				return err
			}
			err := try()
			if err != nil && curls == 0 {
				_, err = testutil.Poll(20*time.Second, try)
			}
			curls++
			switch {
			case err != nil:
				t.Errorf("%s: %v\n%s", what, err, out)
			case strings.Contains(c.cmd, "/metrics"):
				if !strings.Contains(out, `overlayd_door_connections_total{door="socks5"`) {
					t.Errorf("%s printed %q, want the doors' connection counters", what, out)
				}
			case !strings.HasPrefix(out, "hello 10.200.1.1:") || !strings.HasSuffix(out, " from 10.200.2.1:8000\n"):
				t.Errorf("%s printed %q, want the answer of the server on 10.200.2.1:8000 to 10.200.1.1", what, out)
			}
		case c.cmd == "overlayd status":
			out, err := exec1(c.host, c.cmd)
			if err != nil {
				t.Fatalf("%s: %v\n%s", what, err, out)
			}
			t.Logf("%s:\n%s", what, out)
			// The README's doors table: its header as it is, and each
			// door's kind, address and target.
			var table []string
			for _, b := range blocks {
				if b.section == c.section && b.lang == "" {
					for _, l := range b.lines {
						if strings.HasPrefix(l, "DOOR ") || strings.HasPrefix(l, "socks5 ") || strings.HasPrefix(l, "http-proxy ") ||
							strings.HasPrefix(l, "forward ") || strings.HasPrefix(l, "metrics: ") {
							table = append(table, l)
						}
					}
				}
			}
			if len(table) != 5 {
				t.Fatalf("README.md: the doors table has %d lines, want a header, three doors and metrics", len(table))
			}
			lines := strings.Split(out, "\n")
			for i, want := range table {
				f := strings.Fields(want)
				if i == 0 || strings.HasPrefix(want, "metrics: ") {
					if !strings.Contains(out, "\n"+want+"\n") {
						t.Errorf("%s: status lacks the README's line %q:\n%s", what, want, out)
					}
					continue
				}
				found := false
				for _, l := range lines {
					g := strings.Fields(l)
					found = found || len(g) >= 3 && g[0] == f[0] && g[1] == f[1] && g[2] == f[2]
				}
				if !found {
					t.Errorf("%s: status has no door %s %s %s:\n%s", what, f[0], f[1], f[2], out)
				}
			}
		default:
			t.Errorf("%s: a command this test does not know how to run", what)
		}
	}
	if curls != 4 {
		t.Errorf("ran %d curl commands of the front-doors section, want 4", curls)
	}
}
