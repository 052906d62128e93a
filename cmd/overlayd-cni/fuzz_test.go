package main

import (
	"errors"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/overlayd/overlayd/api"
)

func apiAttach(name, netns string) api.Attach {
	return api.Attach{Name: name, Network: "blue", Netns: netns, IfName: "eth0"}
}

// FuzzParseConfig: any stdin is a configuration or a CNI error of code 6
// or 7, never a panic; a configuration has a network and absolute paths,
// and the addresses it asks for (with any CNI_ARGS) are at most one per
// family, unmapped.
func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		`{"cniVersion":"1.0.0","name":"blue","type":"overlayd-cni","network":"blue","control":"/run/overlayd/overlayd.sock"}`,
		`{"cniVersion":"1.1.0","name":"blue","type":"overlayd-cni","cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}]}`,
		`{"cniVersion":"1.0.0","name":"n","type":"overlayd-cni","capabilities":{"ips":true},"runtimeConfig":{"ips":["10.1.0.5/24"]}}`,
		`{"cniVersion":"1.0.0","name":"n","args":{"cni":{"ips":["10.1.0.5"]}},"defaultRoute":true,"dataDir":"/tmp/x"}`,
		`{"cniVersion":"1.0.0","name":"n","prevResult":{"cniVersion":"1.0.0","ips":[{"address":"10.1.0.5/24"}]}}`,
		`{"name":"n","ipam":{"type":"host-local"}}`,
		`{"name":"n","network":"a/b"}`,
		`{"name":"n","control":"rel"}`,
		`{"name":"n","netwrok":"x"}`,
		`{"name":"../etc","type":"overlayd-cni"}`,
		`{"name":5}`,
		`[]`, `null`, `{`, ``,
	} {
		f.Add([]byte(s), "K8S_POD_NAME=web;IP=10.1.0.9")
	}
	f.Fuzz(func(t *testing.T, stdin []byte, cniArgsEnv string) {
		c, err := parseConfig(stdin)
		if err != nil {
			var e *types.Error
			if !errors.As(err, &e) || e.Code != types.ErrDecodingFailure && e.Code != types.ErrInvalidNetworkConfig || e.Msg == "" {
				t.Fatalf("parseConfig(%q) = %v, want a CNI error of code 6 or 7", stdin, err)
			}
			return
		}
		if c.Name == "" || strings.ContainsAny(c.Name, "/\x00") || c.Name == "." || c.Name == ".." || c.Network == "" || !filepath.IsAbs(c.Control) || !filepath.IsAbs(c.DataDir) {
			t.Fatalf("parseConfig(%q) = name %q network %q control %q dataDir %q", stdin, c.Name, c.Network, c.Control, c.DataDir)
		}
		a, err := parseArgs(cniArgsEnv)
		if err != nil {
			var e *types.Error
			if !errors.As(err, &e) || e.Code != types.ErrInvalidEnvironmentVariables {
				t.Fatalf("parseArgs(%q) = %v, want a CNI error of code 4", cniArgsEnv, err)
			}
			return
		}
		ips, err := c.requestedIPs(a)
		if err != nil {
			var e *types.Error
			if !errors.As(err, &e) || e.Code != types.ErrInvalidNetworkConfig {
				t.Fatalf("requestedIPs = %v, want a CNI error of code 7", err)
			}
			return
		}
		var fams [2]int
		for _, ip := range ips {
			a, err := netip.ParseAddr(ip)
			if err != nil || a.Is4In6() || a.Zone() != "" {
				t.Fatalf("requestedIPs = %q: %q is not a plain address", ips, ip)
			}
			if a.Is6() {
				fams[1]++
			} else {
				fams[0]++
			}
		}
		if fams[0] > 1 || fams[1] > 1 {
			t.Fatalf("requestedIPs = %q: two of one family", ips)
		}
	})
}

// FuzzEndpointName: every pod name and container ID gives a DNS label,
// and so does its fallback.
func FuzzEndpointName(f *testing.F) {
	f.Add("web", "0123456789abcdef")
	f.Add("", "cnitool-6d1f2f1c88b1b1f1a1f0")
	f.Add("Ünïcode.pod_name", "_")
	f.Fuzz(func(t *testing.T, pod, id string) {
		for _, n := range []string{endpointName(pod, id), fallbackName(endpointName(pod, id), id, "eth0")} {
			if !isLabel(n) {
				t.Fatalf("endpointName(%q, %q) gave %q, not a DNS label", pod, id, n)
			}
		}
	})
}

func isLabel(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
