package main

import (
	"strings"
	"testing"
)

// The Docker flags' mistakes are found by --check, before anything starts.
func TestDockerPluginFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--docker-plugin", "--addr", "10.200.1.1/16"}, 2, "--docker-plugin needs the control plane (networks are created and joined through gossip): add --gossip IP:PORT"},
		{[]string{"--docker-plugin", "--gossip", "127.0.0.1:0", "--docker-plugin-socket", "/tmp/x.sock", "--docker-host", "https://192.0.2.1:2376"}, 2, "--docker-host: docker host \"https://192.0.2.1:2376\": TLS"},
		{[]string{"--docker-plugin", "--gossip", "127.0.0.1:0", "--docker-plugin-socket", "/tmp/x.sock", "--docker-host", "unix:///run/docker.sock"}, 0, "configuration is valid"},
		{[]string{"--docker-plugin", "--gossip", "127.0.0.1:0", "--mode", "tap", "--addr", "10.200.1.1/16"}, 2, "--docker-plugin needs an L3 attachment for its endpoints: --mode tun or netstack, not tap"},
	} {
		code, out, errOut := run(t, append([]string{"run", "--check", "--mode", "netstack", "--control", ""}, tc.args...)...)
		if code != tc.code || !strings.Contains(out+errOut, tc.want) {
			t.Errorf("run --check %s = %d\n%s%s\nwant %d with %q", strings.Join(tc.args, " "), code, out, errOut, tc.code, tc.want)
		}
	}
	if code, out, _ := run(t, "help", "run"); code != 0 || !strings.Contains(out, "--docker-plugin") || !strings.Contains(out, "--docker-host URL") {
		t.Errorf("help run = %d, want the Docker flags:\n%s", code, out)
	}
}
