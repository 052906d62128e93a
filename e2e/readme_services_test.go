package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/internal/testutil"
)

// readmeBlock returns the first code block after the README heading.
func readmeBlock(t *testing.T, heading string) []string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "\n"+heading+"\n")
	_, rest, ok2 := strings.Cut(rest, "```\n")
	block, _, ok3 := strings.Cut(rest, "```\n")
	if !ok || !ok2 || !ok3 {
		t.Fatalf("README: no code block under %q", heading)
	}
	return strings.Split(strings.TrimSuffix(block, "\n"), "\n")
}

var readmePrompt = regexp.MustCompile(`^(n\d)# overlayd (.*?)(\s+#.*)?$`)

// TestREADMEServices runs the README's Services example as written, on
// three nodes named n0, n1 and n2 that joined network blue
// (10.70.0.0/16) in that order, through the overlayd CLI, and compares
// what each command prints with the README (a "..." line stands for
// lines left out). issue 10, §4: the README's first VIP was …240.1 where
// the code hands out …240.0. Loopback only: what it checks is the README's
// text, which no Net changes, and a second run would cost ~5 s.
func TestREADMEServices(t *testing.T) {
	lines := readmeBlock(t, "## Services (VIPs, Maglev load balancing)")
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ctl := func(i int) string { return filepath.Join(dir, fmt.Sprintf("n%d.sock", i)) }
	c := NewGossipCluster(t, 3, GossipOptions{Edit: func(i int, cfg *config.Config) {
		cfg.Name = fmt.Sprintf("n%d", i)
		cfg.Control = ctl(i)
	}})
	if _, err := c.Node(0).CreateNetwork(context.Background(), api.CreateNetwork{Name: "blue", CIDR: "10.70.0.0/16"}); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"10.70.0.2/16", "10.70.120.1/16", "10.70.60.1/16"} {
		if got := c.Join(i, "blue").String(); got != want {
			t.Fatalf("n%d joined blue with %s; the README's example assumes %s", i, got, want)
		}
	}
	testutil.Eventually(t, 20*time.Second, "routes converge", c.routesConverged(3))
	run := func(node, args string) string {
		var i int
		fmt.Sscanf(node, "n%d", &i)
		out, _ := exec.Command(bin, append(strings.Fields(args), "--control", ctl(i))...).CombinedOutput()
		return string(out)
	}
	// matches: the README's output lines are the command's (after "...":
	// its last lines).
	matches := func(out string, want []string) bool {
		got := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if len(want) > 0 && want[0] == "..." {
			want = want[1:]
			if len(got) < len(want) {
				return false
			}
			got = got[len(got)-len(want):]
		}
		if len(got) != len(want) {
			return false
		}
		for k := range want {
			if strings.TrimRight(got[k], " ") != strings.TrimRight(want[k], " ") {
				return false
			}
		}
		return true
	}
	for k := 0; k < len(lines); k++ {
		m := readmePrompt.FindStringSubmatch(lines[k])
		if m == nil {
			t.Fatalf("README line %q: not a command of n0, n1 or n2", lines[k])
		}
		var want []string
		for k+1 < len(lines) && !readmePrompt.MatchString(lines[k+1]) {
			k++
			want = append(want, lines[k])
		}
		for _, args := range strings.Split(m[2], "; overlayd ") {
			var out string
			// What a node shows converges (gossip, health checks): a
			// command that only reads is retried until its output is the
			// README's, within a bound.
			readOnly := strings.HasPrefix(args, "service show") || strings.HasPrefix(args, "service ls") || strings.HasPrefix(args, "conntrack")
			// The check below says how it differs if it still does after 15s.
			testutil.Poll(15*time.Second, func() error {
				out = run(m[1], args)
				if !readOnly || want == nil || matches(out, want) {
					return nil
				}
				return errors.New("not the README's output")
			})
			t.Logf("%s# overlayd %s\n%s", m[1], args, out)
			if want != nil && !matches(out, want) {
				t.Errorf("%s# overlayd %s printed\n%s\nthe README says\n%s", m[1], args, out, strings.Join(want, "\n"))
			}
		}
	}
}
