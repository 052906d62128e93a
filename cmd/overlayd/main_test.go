package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/internal/testutil"
)

func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code = Main(ctx, args, &o, &e)
	return code, o.String(), e.String()
}

func TestUsage(t *testing.T) {
	tests := []struct {
		args     []string
		code     int
		inStdout string
		inStderr string
	}{
		{nil, 2, "", "Usage:"},
		{[]string{"--help"}, 0, "Daemon:", ""},
		{[]string{"help"}, 0, "Client", ""},
		{[]string{"help", "run"}, 0, "--peer PREFIX@IP:PORT", ""},
		{[]string{"run", "--help"}, 0, "Usage: overlayd run", ""},
		{[]string{"version"}, 0, "overlayd ", ""},
		{[]string{"--version"}, 0, "overlayd ", ""},
		{[]string{"bogus"}, 2, "", `unknown command "bogus"`},
		{[]string{"run", "--bogus"}, 2, "", "flag provided but not defined: -bogus"},
		{[]string{"run", "--addr", "nope"}, 2, "", `--addr "nope": want an address with prefix`},
		{[]string{"run", "--peer", "10.0.0.0/8"}, 2, "", "want PREFIX@IP:PORT"},
		{[]string{"run", "--vni", "99999999", "--addr", "10.1.1.1/16"}, 2, "", "out of range"},
		{[]string{"run", "--mode", "kernel", "--addr", "10.1.1.1/16"}, 2, "", `mode: "kernel" is not one of`},
		{[]string{"run"}, 2, "", "addr: this node's overlay address is required"},
		{[]string{"run", "stray"}, 2, "", `unexpected argument "stray"`},
		{[]string{"run", "--check", "--addr", "10.1.1.1/16", "--peer", "10.2.0.0/16@192.0.2.1:4789"}, 0, "configuration is valid", ""},
		{[]string{"run", "--config", "/nonexistent/overlayd.yaml"}, 2, "", "no such file"},
		{[]string{"status", "--control", "/nonexistent/ctl.sock"}, 1, "", "no overlayd is running at /nonexistent/ctl.sock"},
		{[]string{"status", "extra"}, 2, "", `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		code, o, e := run(t, tt.args...)
		if code != tt.code || !strings.Contains(o, tt.inStdout) || !strings.Contains(e, tt.inStderr) {
			t.Errorf("overlayd %q = %d\nstdout: %s\nstderr: %s\nwant %d, stdout containing %q, stderr containing %q",
				tt.args, code, o, e, tt.code, tt.inStdout, tt.inStderr)
		}
	}
}

// Flags may stand after positional arguments, and "--" ends them.
func TestParseFlagsInterspersed(t *testing.T) {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	j := fs.Bool("json", false, "")
	c := fs.String("control", "", "")
	pos, err := parseFlags(fs, []string{"a", "--json", "b", "--control", "x", "--", "--json"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if !*j || *c != "x" || strings.Join(pos, " ") != "a b --json" {
		t.Errorf("parseFlags: json=%v control=%q pos=%q", *j, *c, pos)
	}
}

// A daemon started with run answers status, in text and JSON, and stops
// on cancel.
func TestRunAndStatus(t *testing.T) {
	ctl := filepath.Join(t.TempDir(), "ctl.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var runErr bytes.Buffer
	go func() {
		done <- Main(ctx, []string{"run", "--mode", "netstack", "--listen", "127.0.0.1:0", "--addr", "10.77.1.1/16",
			"--peer", "10.77.2.0/24@127.0.0.1:9", "--control", ctl, "--name", "alpha", "--log-level", "warn"}, &bytes.Buffer{}, &runErr)
	}()
	defer func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("run exited %d: %s", code, runErr.String())
		}
	}()
	var st api.Status
	testutil.Eventually(t, 20*time.Second, "status to answer", func() error {
		code, o, e := run(t, "status", "--json", "--control", ctl)
		if code != 0 {
			return fmt.Errorf("exit %d: %s %s", code, e, runErr.String())
		}
		if err := json.Unmarshal([]byte(o), &st); err != nil {
			t.Fatalf("status --json: %v\n%s", err, o)
		}
		return nil
	})
	if st.Name != "alpha" || st.Mode != "netstack" || len(st.Routes) != 1 || st.Routes[0].Prefix != "10.77.2.0/24" {
		t.Errorf("status = %+v", st)
	}
	code, o, _ := run(t, "status", "--control", ctl)
	for _, want := range []string{"alpha", "netstack", "10.77.2.0/24", "127.0.0.1:9", "outbound", "drops"} {
		if code != 0 || !strings.Contains(o, want) {
			t.Errorf("status output lacks %q:\n%s", want, o)
		}
	}
}

func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo starts three gossiping nodes; skipped in -short")
	}
	code, o, e := run(t, "demo")
	if code != 0 || e != "" {
		t.Fatalf("demo = %d\n%s\n%s", code, o, e)
	}
	for _, re := range []string{
		`(?m)^  alpha   10\.99\.\S+ +127\.0\.0\.1:\d+ +127\.0\.0\.1:\d+ +127\.0\.0\.1:\d+ +10\.99\.\S+:80$`,
		`(?m)^dig @127\.0\.0\.1 -p \d+ web\.tour\.overlay → 10\.99\.`,
		`(?m)^60 requests to http://web\.tour\.overlay/`,
		`(?m)^  balanced: every backend served its share`,
		`(?m)^  gamma declared dead and its backend 10\.99\.\S+ withdrawn in `,
		`(?m)^  gamma +0  \(dead\)$`,
		`(?m)^  traffic moved on: none to gamma, the other two served all 30$`,
		`(?m)^tour ok `,
	} {
		if !regexp.MustCompile(re).MatchString(o) {
			t.Errorf("demo output lacks %s:\n%s", re, o)
		}
	}
	// Every backend served before the kill, alpha and beta after it.
	counts := regexp.MustCompile(`(?m)^  (alpha|beta|gamma) +(\d+)  #`).FindAllStringSubmatch(o, -1)
	if len(counts) != 5 {
		t.Errorf("demo output has %d backend counts with a bar, want 5 (3 before the kill, 2 after):\n%s", len(counts), o)
	}
	if code, _, e := run(t, "demo", "--requests", "2"); code != 2 || !strings.Contains(e, "--requests 2 is out of range") {
		t.Errorf("demo --requests 2 = %d, %q", code, e)
	}
}
