package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/internal/testutil"
)

func TestDoorFlags(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("name: x\naddr: 10.1.1.1/16\ndoors:\n  socks5: 127.0.0.1:1080\n  forwards:\n    - listen: 127.0.0.1:1080\n      target: 10.1.2.1:80\nmetrics: nowhere\n"), 0o600)
	tests := []struct {
		args     []string
		code     int
		inStdout string
		inStderr string
	}{
		{[]string{"run", "--help"}, 0, "--socks5 IP:PORT", ""},
		{[]string{"run", "--help"}, 0, "--http-proxy IP:PORT", ""},
		{[]string{"run", "--help"}, 0, "--forward LISTEN=HOST:PORT[/udp]", ""},
		{[]string{"run", "--help"}, 0, "--metrics IP:PORT", ""},
		{[]string{"run", "--forward", "8080=10.1.2.1:80"}, 2, "", `listen: "8080": want IP:PORT`},
		{[]string{"run", "--forward", "127.0.0.1:8080=10.1.2.1:80/icmp"}, 2, "", `proto: "icmp" is not tcp or udp`},
		{[]string{"run", "--socks5", "1080", "--addr", "10.1.1.1/16"}, 2, "", `--socks5: "1080": want IP:PORT`},
		{[]string{"run", "--metrics", "host:9464", "--addr", "10.1.1.1/16"}, 2, "", "--metrics"},
		{[]string{"run", "--check", "--addr", "10.1.1.1/16", "--socks5", "127.0.0.1:1080", "--http-proxy", "127.0.0.1:1080"}, 2, "", "doors.http_proxy: 127.0.0.1:1080 is also the address of doors.socks5"},
		{[]string{"run", "--check", "--addr", "10.1.1.1/16", "--socks5", "127.0.0.1:1080", "--http-proxy", "127.0.0.1:8118",
			"--forward", "127.0.0.1:8080=10.1.2.1:80", "--forward", "127.0.0.1:5353=web.default.overlay:53/udp", "--metrics", "127.0.0.1:9464"}, 0, "configuration is valid", ""},
		{[]string{"run", "--check", "--config", bad}, 2, "", "line 6: doors.forwards[0].listen: 127.0.0.1:1080 is also the address of doors.socks5"},
		{[]string{"run", "--check", "--config", bad}, 2, "", `line 8: metrics: "nowhere"`},
		// A --forward adds to the file's forwards (the file's stays, and
		// still conflicts); --socks5 and --metrics replace the file's.
		{[]string{"run", "--check", "--config", bad, "--forward", "127.0.0.1:8080=10.1.2.1:80", "--metrics", ""}, 2, "", "line 6: doors.forwards[0].listen: 127.0.0.1:1080 is also the address of doors.socks5"},
		{[]string{"run", "--check", "--config", bad, "--socks5", "127.0.0.1:1081", "--forward", "127.0.0.1:8080=10.1.2.1:80", "--metrics", ""}, 0, "configuration is valid", ""},
	}
	for _, tt := range tests {
		code, o, e := run(t, tt.args...)
		if code != tt.code || !strings.Contains(o, tt.inStdout) || !strings.Contains(e, tt.inStderr) {
			t.Errorf("overlayd %q = %d\nstdout: %s\nstderr: %s\nwant %d, stdout containing %q, stderr containing %q",
				tt.args, code, o, e, tt.code, tt.inStdout, tt.inStderr)
		}
	}
}

// A daemon run with doors and metrics on port 0 shows where they are in
// status, and serves /metrics there.
func TestRunDoorsStatus(t *testing.T) {
	ctl := filepath.Join(t.TempDir(), "ctl.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var runErr bytes.Buffer
	go func() {
		done <- Main(ctx, []string{"run", "--mode", "netstack", "--listen", "127.0.0.1:0", "--addr", "10.78.1.1/16",
			"--peer", "10.78.2.0/24@127.0.0.1:9", "--control", ctl, "--name", "doors", "--log-level", "warn",
			"--socks5", "127.0.0.1:0", "--forward", "127.0.0.1:0=10.78.2.1:80", "--metrics", "127.0.0.1:0"}, &bytes.Buffer{}, &runErr)
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
	if len(st.Doors) != 2 || st.Doors[0].Kind != "socks5" || st.Doors[1].Target != "10.78.2.1:80" || st.Metrics == "" {
		t.Fatalf("status doors = %+v, metrics %q", st.Doors, st.Metrics)
	}
	code, o, _ := run(t, "status", "--control", ctl)
	for _, want := range []string{"DOOR", "socks5", st.Doors[0].Addr, "forward", "10.78.2.1:80/tcp", "metrics: http://" + st.Metrics + "/metrics"} {
		if code != 0 || !strings.Contains(o, want) {
			t.Errorf("status output lacks %q:\n%s", want, o)
		}
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + st.Metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `overlayd_build_info{mode="netstack",node="doors"`) {
		t.Errorf("/metrics lacks overlayd_build_info:\n%s", body)
	}
}
